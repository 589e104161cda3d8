//! A writer for "newc" cpio archives, the format the Linux kernel unpacks as initramfs.
//!
//! Written here rather than taken from a crate because the format is a few dozen lines
//! and we need exact control over the bytes: every entry has uid/gid 0 and mtime 0, and
//! inode numbers count up from 1, so the same input always gives the same archive (and
//! so the same cache key downstream, and reproducible images).
//!
//! Each entry is a 110-byte ASCII header (`070701` then 13 fields of 8 hex digits), the
//! NUL-terminated path, padding to a multiple of 4, the data, padding to a multiple of 4.
//! The archive ends with an entry named `TRAILER!!!`. The kernel's unpacker is in
//! `init/initramfs.c`.

use crate::Error;

/// The newc magic: "new ASCII" format without checksums.
const MAGIC: &[u8; 6] = b"070701";
/// The name of the record that ends every archive.
const TRAILER: &str = "TRAILER!!!";

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFCHR: u32 = 0o020_000;

/// Builds a newc cpio archive in memory.
///
/// Paths are relative to the archive root, without a leading `/` (`dev/console`), as
/// the kernel expects; parents must be added before their children, since the kernel
/// creates entries in archive order and does not make missing directories.
#[derive(Debug)]
pub struct CpioWriter {
    out: Vec<u8>,
    next_ino: u32,
}

impl Default for CpioWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl CpioWriter {
    /// An empty archive.
    pub fn new() -> Self {
        Self { out: Vec::new(), next_ino: 1 }
    }

    /// Adds a directory with permission bits `mode` (e.g. `0o755`).
    pub fn directory(&mut self, path: &str, mode: u32) -> Result<(), Error> {
        check_path(path)?;
        self.entry(path, S_IFDIR | (mode & 0o7777), 2, (0, 0), b"");
        Ok(())
    }

    /// Adds a regular file with permission bits `mode` (e.g. `0o644`) and content `data`.
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<(), Error> {
        check_path(path)?;
        if u32::try_from(data.len()).is_err() {
            return Err(Error::CpioTooLarge { name: path.to_owned(), size: data.len() as u64 });
        }
        self.entry(path, S_IFREG | (mode & 0o7777), 1, (0, 0), data);
        Ok(())
    }

    /// Adds a character device node `major:minor` (e.g. `/dev/console` is 5:1).
    ///
    /// The kernel needs `/dev/console` before it runs `/init`, to give init its stdio;
    /// putting the node in the archive means no devtmpfs mount is needed for that.
    pub fn char_device(&mut self, path: &str, mode: u32, major: u32, minor: u32) -> Result<(), Error> {
        check_path(path)?;
        self.entry(path, S_IFCHR | (mode & 0o7777), 1, (major, minor), b"");
        Ok(())
    }

    /// Appends the trailer record and returns the archive's bytes.
    pub fn finish(mut self) -> Vec<u8> {
        // Inode 0 and nlink 1, as in GNU cpio's output; the kernel only reads its name.
        self.header(0, TRAILER, 0, 1, (0, 0), b"");
        self.out
    }

    /// Writes an entry under the next inode number. Unique numbers matter: the kernel
    /// takes entries with the same inode and nlink > 1 for hard links of each other.
    fn entry(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.header(ino, name, mode, nlink, rdev, data);
    }

    fn header(&mut self, ino: u32, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        // Sizes were checked by the callers: a name is at most PATH_MAX, data < 4 GiB.
        let fields: [u32; 13] = [
            ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            data.len() as u32,
            0, // dev major
            0, // dev minor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1, // with its NUL
            0,                     // check, unused by newc
        ];
        self.out.extend_from_slice(MAGIC);
        for field in fields {
            self.out.extend_from_slice(format!("{field:08X}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad4();
        self.out.extend_from_slice(data);
        self.pad4();
    }

    fn pad4(&mut self) {
        let len = self.out.len().next_multiple_of(4);
        self.out.resize(len, 0);
    }
}

/// Rejects a path the kernel would refuse or that could land outside the archive root.
fn check_path(path: &str) -> Result<(), Error> {
    let reason = if path.is_empty() {
        Some("it is empty")
    } else if path.starts_with('/') {
        Some("it must be relative to the archive root")
    } else if path.len() >= 4096 {
        Some("it is longer than PATH_MAX")
    } else if path.contains('\0') {
        Some("it contains a NUL byte")
    } else if path.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
        Some("it has an empty, `.` or `..` component")
    } else if path == TRAILER {
        Some("that name ends the archive")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::CpioName { name: path.to_owned(), reason }),
        None => Ok(()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    /// Runs the system `cpio` with `args`, the archive on stdin, in `dir`.
    pub(crate) fn system_cpio(archive: &[u8], args: &[&str], dir: &std::path::Path) -> String {
        let mut child = Command::new("cpio")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the `cpio` tool runs (apt-get install cpio)");
        child.stdin.take().unwrap().write_all(archive).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "cpio {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn sample() -> Vec<u8> {
        let mut w = CpioWriter::new();
        w.file("init", 0o755, b"#!/bin/true\n").unwrap();
        w.directory("dev", 0o755).unwrap();
        w.char_device("dev/console", 0o600, 5, 1).unwrap();
        w.directory("modules", 0o755).unwrap();
        w.file("modules/empty", 0o644, b"").unwrap();
        w.file("modules/odd", 0o644, b"12345").unwrap();
        w.finish()
    }

    #[test]
    fn header_layout_is_newc() {
        let mut w = CpioWriter::new();
        w.file("a", 0o644, b"xyz").unwrap();
        let bytes = w.finish();
        let header = std::str::from_utf8(&bytes[..110]).unwrap();
        assert_eq!(&header[..6], "070701");
        assert_eq!(&header[6..14], "00000001", "first inode");
        assert_eq!(&header[14..22], "000081A4", "regular file 0644");
        assert_eq!(&header[54..62], "00000003", "file size");
        assert_eq!(&header[94..102], "00000002", "name size with NUL");
        // 110 + "a\0" = 112, already aligned; data "xyz" + 1 pad byte.
        assert_eq!(&bytes[110..112], b"a\0");
        assert_eq!(&bytes[112..116], b"xyz\0");
        assert_eq!(bytes.len() % 4, 0);
        assert!(bytes.windows(10).any(|w| w == b"TRAILER!!!"));
    }

    #[test]
    fn same_input_gives_same_bytes() {
        assert_eq!(sample(), sample());
    }

    #[test]
    fn rejects_bad_paths() {
        let mut w = CpioWriter::new();
        for bad in ["", "/init", "a/../b", "a//b", "./a", "a\0b", "TRAILER!!!", "a/"] {
            assert!(matches!(w.file(bad, 0o644, b""), Err(Error::CpioName { .. })), "{bad:?} accepted");
        }
    }

    #[test]
    fn system_cpio_lists_entries_modes_and_device() {
        let dir = tempfile::tempdir().unwrap();
        let archive = sample();
        let names = system_cpio(&archive, &["-t", "--quiet"], dir.path());
        assert_eq!(
            names.lines().collect::<Vec<_>>(),
            ["init", "dev", "dev/console", "modules", "modules/empty", "modules/odd"]
        );
        let long = system_cpio(&archive, &["-tv", "--quiet"], dir.path());
        let line = |name: &str| {
            long.lines()
                .find(|l| l.ends_with(&format!(" {name}")))
                .unwrap_or_else(|| panic!("{name} not in {long}"))
                .to_owned()
        };
        assert!(line("init").starts_with("-rwxr-xr-x"), "{long}");
        assert!(line("dev").starts_with("drwxr-xr-x"), "{long}");
        let console = line("dev/console");
        assert!(console.starts_with("crw-------"), "{console}");
        assert!(console.contains("5,") && console.contains(" 1 "), "{console}");
        assert!(console.contains("root"), "uid/gid 0: {console}");
        assert!(line("modules/odd").starts_with("-rw-r--r--"), "{long}");
    }

    #[test]
    fn system_cpio_extracts_same_content() {
        use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let archive = sample();
        // Making a device node needs root; elsewhere leave it out of the extraction.
        let root = crate::cache::euid() == 0;
        let args: &[&str] = if root { &["-idm", "--quiet"] } else { &["-idm", "--quiet", "-f", "dev/console"] };
        system_cpio(&archive, args, dir.path());
        let p = dir.path();
        assert_eq!(std::fs::read(p.join("init")).unwrap(), b"#!/bin/true\n");
        assert_eq!(std::fs::read(p.join("modules/empty")).unwrap(), b"");
        assert_eq!(std::fs::read(p.join("modules/odd")).unwrap(), b"12345");
        let mode = |f: &str| std::fs::metadata(p.join(f)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode("init"), 0o755);
        assert_eq!(mode("modules/odd"), 0o644);
        let mtime = std::fs::metadata(p.join("init")).unwrap().mtime();
        assert_eq!(mtime, 0, "-m keeps the archive's mtime 0");
        if root {
            let console = std::fs::metadata(p.join("dev/console")).unwrap();
            assert!(console.file_type().is_char_device());
            assert_eq!(console.rdev(), libc::makedev(5, 1));
        }
    }
}
