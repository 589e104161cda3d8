//! The one error type of kernel discovery and vmlinux extraction.
//!
//! Variants that come from a file carry its path. The byte-level parsers
//! ([`SetupHeader::parse`](super::SetupHeader::parse),
//! [`extract_vmlinux`](super::extract_vmlinux)) work on a buffer and cannot know where it
//! came from; when discovery reads a file it wraps their error in [`Error::BadImage`] so
//! the path is still named once, and a caller of `extract_vmlinux` adds the path as
//! context. Messages are sentences that do not repeat their source: the binary prints
//! the chain.

use std::io;
use std::path::PathBuf;

/// What went wrong while finding, reading or unpacking a kernel image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--kernel` names a path that is not there.
    #[error("--kernel {} does not exist; pass the path of a bzImage or ELF vmlinux", .path.display())]
    KernelArgMissing { path: PathBuf },

    /// `VIRT_SANDBOX_KERNEL` names a path that is not there.
    #[error("VIRT_SANDBOX_KERNEL={} does not exist; point it at a kernel image or unset it", .path.display())]
    EnvKernelMissing { path: PathBuf },

    /// A relative kernel or module path could not be resolved against the cwd.
    #[error("cannot resolve the relative path {} without a current directory; pass an absolute path", .path.display())]
    CurrentDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// No candidate in the search order exists.
    #[error("no kernel image found (looked in {}); install one or pass --kernel PATH", crate::exit::paths_list(.looked))]
    NoKernel { looked: Vec<PathBuf> },

    /// The boot directory exists but cannot be listed.
    #[error("cannot list {} to find a kernel image; fix its permissions or pass --kernel PATH", .path.display())]
    ListBoot {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The kernel image exists but cannot be read.
    #[error("cannot read the kernel image {}; check that it is a readable file or pass another with --kernel", .path.display())]
    ReadImage {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The file was read but is neither a usable bzImage nor an x86_64 ELF vmlinux.
    #[error("{} is not a usable kernel image; pass a bzImage or an x86_64 ELF vmlinux with --kernel", .path.display())]
    BadImage {
        path: PathBuf,
        #[source]
        source: Box<Error>,
    },

    /// An ELF vmlinux (or a bzImage without a version string) has no version to find
    /// its modules by.
    #[error("{} records no kernel version; pass --kernver VERSION (and --kmodpath DIR if its modules are elsewhere)", .path.display())]
    NeedKernver { path: PathBuf },

    /// The buffer does not carry the boot protocol's "HdrS" magic at 0x202.
    #[error("no \"HdrS\" setup header at offset 0x202, so this is not an x86 bzImage; pass a bzImage")]
    NotBzImage,

    /// The buffer ends before a field the header says is there.
    #[error("the image ends at byte {len} but its setup header needs {need} bytes; the file is truncated, reinstall the kernel")]
    Truncated { need: usize, len: usize },

    /// The boot protocol predates the `payload_offset` field (2.08, Linux 2.6.26).
    #[error("boot protocol {}.{:02} is older than 2.08; pass a newer kernel", .version >> 8, .version & 0xff)]
    OldProtocol { version: u16 },

    /// `kernel_version` points outside the setup code or at an unterminated string.
    #[error("the setup header's kernel_version pointer {offset:#x} lies outside the setup code; the image is damaged, pass --kernver VERSION")]
    VersionOutOfRange { offset: u16 },

    /// `payload_offset`/`payload_length` point past the end of the image.
    #[error("the compressed payload (bytes {start}..{end}) runs past the end of the {len}-byte image; the image is truncated, reinstall the kernel")]
    PayloadOutOfRange { start: usize, end: usize, len: usize },

    /// The payload uses a compressor we have no decoder for.
    #[error("the kernel payload uses an unsupported compression (magic {magic}); boot the bzImage itself instead")]
    UnsupportedCompression { magic: String },

    /// The decoder rejected the payload.
    #[error("cannot decompress the kernel's {format} payload; boot the bzImage itself instead")]
    Decompress {
        format: virt_sandbox_initrd::decompress::Compression,
        #[source]
        source: virt_sandbox_initrd::Error,
    },

    /// The payload decoded to a size other than the one the kernel build recorded.
    #[error("the kernel payload decompressed to {got} bytes but the image records {expected}; the image is damaged, boot the bzImage itself instead")]
    SizeMismatch { expected: u32, got: usize },

    /// The decompressed payload is not a 64-bit little-endian x86-64 ELF file.
    #[error("the decompressed kernel is not an x86_64 ELF vmlinux; boot the bzImage itself instead")]
    NotX86_64Elf,

    /// The vmlinux has no PVH entry point, which is the only way QEMU boots an ELF kernel.
    #[error("the vmlinux has no PVH entry note (built without CONFIG_PVH); boot the bzImage itself instead")]
    NoPvhEntry,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_kernel_lists_every_place_and_the_fix() {
        let err = Error::NoKernel { looked: vec!["/boot".into(), "/usr/lib/modules".into()] };
        assert_eq!(
            err.to_string(),
            "no kernel image found (looked in /boot, /usr/lib/modules); install one or pass --kernel PATH"
        );
    }

    #[test]
    fn old_protocol_prints_as_major_minor() {
        let err = Error::OldProtocol { version: 0x0206 };
        assert!(err.to_string().starts_with("boot protocol 2.06 "), "{err}");
    }
}
