//! The crate's one error type.
//!
//! One variant per step that can fail, named after that step, each carrying the path or
//! name it was working on, so the message alone says where it broke. Messages are
//! sentences that do not repeat their source: the binary prints the chain once.

use std::io;
use std::path::PathBuf;

use crate::decompress::Compression;

/// Everything that can go wrong while resolving modules, building or caching an initrd.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `modules.*` index file under the modules directory could not be read.
    #[error("cannot read the module index {path}")]
    ReadModuleIndex {
        /// The index file.
        path: PathBuf,
        /// Why reading failed.
        #[source]
        source: io::Error,
    },

    /// A line of `modules.dep` is not `path: dep dep ...`.
    #[error("line {line} of {path} is not of the form `module.ko: dependency.ko ...`")]
    ParseModuleDep {
        /// The `modules.dep` file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },

    /// A wanted module (or alias) is neither built into the kernel nor a module file.
    #[error(
        "the kernel module `{name}` is neither built into the kernel nor listed in \
         {dir}/modules.dep; install the modules of this kernel or choose a kernel that has it"
    )]
    MissingModule {
        /// The name or alias that was asked for.
        name: String,
        /// The modules directory, `/lib/modules/<version>`.
        dir: PathBuf,
    },

    /// `modules.dep` makes a module depend on itself, which depmod never writes.
    #[error("the dependencies of kernel module `{name}` in {dir}/modules.dep form a cycle")]
    ModuleDepCycle {
        /// A module on the cycle.
        name: String,
        /// The modules directory.
        dir: PathBuf,
    },

    /// A kernel module file could not be read.
    #[error("cannot read the kernel module {path}")]
    ReadModule {
        /// The module file.
        path: PathBuf,
        /// Why reading failed.
        #[source]
        source: io::Error,
    },

    /// A module's file name ends in a suffix that is not `.ko`, `.ko.gz`, `.ko.xz` or `.ko.zst`.
    #[error("the kernel module {path} does not end in .ko, .ko.gz, .ko.xz or .ko.zst")]
    ModuleSuffix {
        /// The module file.
        path: PathBuf,
    },

    /// A module's content does not start with the magic bytes its suffix promises.
    #[error("the kernel module {path} does not hold {expected} data, as its name says")]
    ModuleMagic {
        /// The module file.
        path: PathBuf,
        /// The format its suffix names.
        expected: Compression,
    },

    /// A compressed module could not be decompressed.
    #[error("cannot decompress the {format} kernel module {path}")]
    DecompressModule {
        /// The module file.
        path: PathBuf,
        /// Its compression.
        format: Compression,
        /// The decoder's complaint.
        #[source]
        source: io::Error,
    },

    /// A module decompressed to something that is not an ELF object.
    #[error("the kernel module {path} is not an ELF object once decompressed")]
    ModuleNotElf {
        /// The module file.
        path: PathBuf,
    },

    /// Compressed data given to one of the general decoders is corrupt or truncated.
    #[error("cannot decompress the {format} data")]
    Decompress {
        /// The format that was being decoded.
        format: Compression,
        /// The decoder's complaint.
        #[source]
        source: io::Error,
    },

    /// A path in the archive is empty, absolute, has `.`/`..` or NUL, or is too long.
    #[error("`{name}` cannot be a path in the initrd: {reason}")]
    CpioName {
        /// The offending path.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A file is larger than the 4 GiB that the newc header can describe.
    #[error("`{name}` is {size} bytes, more than a newc cpio entry can hold (4 GiB)")]
    CpioTooLarge {
        /// The archive path.
        name: String,
        /// Its size in bytes.
        size: u64,
    },

    /// A resolved module's name would not make a single file name in `/modules`.
    #[error("`{name}` is not a kernel module name (letters, digits, `_` and `-` only)")]
    ModuleName {
        /// The offending name.
        name: String,
    },

    /// The cache directory could not be created or is unsafe to use.
    #[error("cannot use the cache directory {dir}; fix its permissions or set XDG_CACHE_HOME")]
    CacheDir {
        /// The cache directory.
        dir: PathBuf,
        /// Why it cannot be used.
        #[source]
        source: io::Error,
    },

    /// A file could not be written into the cache directory (disk full, permissions).
    #[error(
        "cannot write {file_name} into the cache directory {dir}; free some space or fix \
         its permissions"
    )]
    CacheWrite {
        /// The cache directory.
        dir: PathBuf,
        /// The file that was being stored.
        file_name: String,
        /// Why writing failed.
        #[source]
        source: io::Error,
    },
}
