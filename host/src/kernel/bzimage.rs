//! The x86 boot protocol setup header of a bzImage (Documentation/arch/x86/boot.rst).
//!
//! Discovery reads the kernel version from it, so the modules can be found without
//! trusting the file name, and extraction reads where the compressed `vmlinux` sits.
//! An ELF `vmlinux` is accepted too (it is what `--kernel` gets when a developer points at
//! a build tree); it has no setup header, so its version must come from `--kernver`.

use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::path::Path;

use super::le::{u16_at, u32_at};
use super::Error;

/// Byte offset of the "HdrS" magic.
const MAGIC_OFFSET: usize = 0x202;
const MAGIC: &[u8; 4] = b"HdrS";
/// Boot protocol version, e.g. 0x020f for 2.15.
const PROTOCOL_OFFSET: usize = 0x206;
/// Number of 512-byte setup sectors after the boot sector; 0 means 4.
const SETUP_SECTS_OFFSET: usize = 0x1f1;
/// Pointer to the version string, relative to 0x200.
const KERNEL_VERSION_OFFSET: usize = 0x20e;
const PAYLOAD_OFFSET_OFFSET: usize = 0x248;
const PAYLOAD_LENGTH_OFFSET: usize = 0x24c;
/// The header is complete once `payload_length` is.
const HEADER_END: usize = PAYLOAD_LENGTH_OFFSET + 4;
/// First protocol with `payload_offset`/`payload_length`.
const MIN_PROTOCOL: u16 = 0x0208;
const SECTOR: usize = 512;
/// The largest setup area (`setup_sects` is a byte): the version string lies inside it,
/// so reading this much of a file is enough to identify it.
const MAX_SETUP_LEN: usize = (u8::MAX as usize + 1) * SECTOR;

const ELF_MAGIC: &[u8; 4] = b"\x7fELF";

/// The fields of a bzImage's setup header that the launcher uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupHeader {
    /// Boot protocol version, e.g. 0x020f for 2.15.
    pub protocol: u16,
    /// Setup sectors after the boot sector, with the legacy 0 already turned into 4.
    pub setup_sects: u8,
    /// First token of the version string ("6.1.0-56-cloud-amd64"), `None` if the header
    /// records none.
    pub version: Option<String>,
    /// Offset of the compressed payload from the start of the protected-mode code.
    pub payload_offset: u32,
    /// Length of the compressed payload, including the 4 size bytes the build appends.
    pub payload_length: u32,
}

impl SetupHeader {
    /// Parses the header at the start of `image`, which may be the whole file or only
    /// its first [`MAX_SETUP_LEN`] bytes (the payload is not looked at here).
    pub fn parse(image: &[u8]) -> Result<Self, Error> {
        if image.get(MAGIC_OFFSET..MAGIC_OFFSET + MAGIC.len()) != Some(MAGIC.as_slice()) {
            // A file too short to hold the magic is no bzImage either.
            return Err(Error::NotBzImage);
        }
        let truncated = || Error::Truncated { need: HEADER_END, len: image.len() };
        let protocol = u16_at(image, PROTOCOL_OFFSET).ok_or_else(truncated)?;
        if protocol < MIN_PROTOCOL {
            return Err(Error::OldProtocol { version: protocol });
        }
        let payload_offset = u32_at(image, PAYLOAD_OFFSET_OFFSET).ok_or_else(truncated)?;
        let payload_length = u32_at(image, PAYLOAD_LENGTH_OFFSET).ok_or_else(truncated)?;
        let setup_sects = match image[SETUP_SECTS_OFFSET] {
            0 => 4,
            n => n,
        };
        let mut header = SetupHeader { protocol, setup_sects, version: None, payload_offset, payload_length };
        let setup_len = header.protected_mode_offset();
        if image.len() < setup_len {
            return Err(Error::Truncated { need: setup_len, len: image.len() });
        }
        let pointer = u16_at(image, KERNEL_VERSION_OFFSET).ok_or_else(truncated)?;
        header.version = version_at(&image[..setup_len], pointer)?;
        Ok(header)
    }

    /// Where the protected-mode code starts: after the boot sector and the setup sectors.
    pub fn protected_mode_offset(&self) -> usize {
        (usize::from(self.setup_sects) + 1) * SECTOR
    }

    /// The byte range of the compressed payload within the whole image file.
    pub fn payload_range(&self) -> Range<usize> {
        let start = self.protected_mode_offset() + self.payload_offset as usize;
        start..start + self.payload_length as usize
    }
}

/// The first whitespace-separated token of the NUL-terminated string that
/// `kernel_version` points at (`pointer + 0x200`), which must lie inside the setup code.
/// A zero pointer means the kernel recorded no version.
fn version_at(setup: &[u8], pointer: u16) -> Result<Option<String>, Error> {
    if pointer == 0 {
        return Ok(None);
    }
    let out_of_range = Error::VersionOutOfRange { offset: pointer };
    let Some(rest) = setup.get(usize::from(pointer) + 0x200..) else {
        return Err(out_of_range);
    };
    let Some(end) = rest.iter().position(|&b| b == 0) else {
        return Err(out_of_range);
    };
    let text = String::from_utf8_lossy(&rest[..end]);
    Ok(text.split_whitespace().next().map(str::to_owned))
}

/// What kind of kernel image a file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageKind {
    /// A compressed bzImage, with its header.
    BzImage(SetupHeader),
    /// An uncompressed x86_64 ELF vmlinux: bootable only through its PVH entry, and
    /// carrying no version string the launcher can read.
    ElfVmlinux,
}

impl ImageKind {
    /// Identifies the image from its first bytes (at least the setup area).
    pub fn identify(start: &[u8]) -> Result<Self, Error> {
        if start.starts_with(ELF_MAGIC) {
            return if is_x86_64_elf(start) { Ok(ImageKind::ElfVmlinux) } else { Err(Error::NotX86_64Elf) };
        }
        SetupHeader::parse(start).map(ImageKind::BzImage)
    }

    /// The version the header records, if any.
    pub fn version(&self) -> Option<&str> {
        match self {
            ImageKind::BzImage(header) => header.version.as_deref(),
            ImageKind::ElfVmlinux => None,
        }
    }
}

/// Whether `elf` starts with the ident and machine of a 64-bit little-endian x86-64 ELF.
pub(super) fn is_x86_64_elf(elf: &[u8]) -> bool {
    const ELFCLASS64: u8 = 2;
    const ELFDATA2LSB: u8 = 1;
    const EM_X86_64: u16 = 62;
    elf.starts_with(ELF_MAGIC)
        && elf.get(4) == Some(&ELFCLASS64)
        && elf.get(5) == Some(&ELFDATA2LSB)
        && u16_at(elf, 0x12) == Some(EM_X86_64)
}

/// Reads just enough of the file at `path` to identify it (the setup area, not the
/// multi-megabyte payload), naming the path in any error.
pub fn read_image_kind(path: &Path) -> Result<ImageKind, Error> {
    let read_error = |source| Error::ReadImage { path: path.to_owned(), source };
    let file = File::open(path).map_err(read_error)?;
    let mut start = Vec::with_capacity(MAX_SETUP_LEN);
    file.take(MAX_SETUP_LEN as u64).read_to_end(&mut start).map_err(read_error)?;
    ImageKind::identify(&start).map_err(|source| Error::BadImage { path: path.to_owned(), source: Box::new(source) })
}

/// A minimal bzImage for tests: a protocol 2.15 header, `banner` as the version string,
/// one setup sector (`setup_sects` = 1, so the protected-mode code starts at 1024) and
/// `payload` at `payload_offset` 16 within it.
#[cfg(test)]
pub(super) fn synthetic_bzimage(banner: &str, payload: &[u8]) -> Vec<u8> {
    const VERSION_AT: usize = 0x300;
    const PAYLOAD_OFFSET: usize = 16;
    let mut image = vec![0u8; 2 * SECTOR + PAYLOAD_OFFSET];
    image[SETUP_SECTS_OFFSET] = 1;
    image[MAGIC_OFFSET..MAGIC_OFFSET + 4].copy_from_slice(MAGIC);
    image[PROTOCOL_OFFSET..PROTOCOL_OFFSET + 2].copy_from_slice(&0x020fu16.to_le_bytes());
    let pointer = (VERSION_AT - 0x200) as u16;
    image[KERNEL_VERSION_OFFSET..KERNEL_VERSION_OFFSET + 2].copy_from_slice(&pointer.to_le_bytes());
    image[VERSION_AT..VERSION_AT + banner.len()].copy_from_slice(banner.as_bytes());
    let offset = (PAYLOAD_OFFSET as u32).to_le_bytes();
    image[PAYLOAD_OFFSET_OFFSET..PAYLOAD_OFFSET_OFFSET + 4].copy_from_slice(&offset);
    let length = (payload.len() as u32).to_le_bytes();
    image[PAYLOAD_LENGTH_OFFSET..PAYLOAD_LENGTH_OFFSET + 4].copy_from_slice(&length);
    image.extend_from_slice(payload);
    image
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::installed_kernels;

    const BANNER: &str = "6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP";

    #[test]
    fn parses_a_synthetic_header() {
        let image = synthetic_bzimage(BANNER, b"payload!");
        let header = SetupHeader::parse(&image).unwrap();
        assert_eq!(header.version.as_deref(), Some("6.1.0-56-cloud-amd64"));
        assert_eq!(header.protocol, 0x020f);
        assert_eq!(header.setup_sects, 1);
        assert_eq!(header.protected_mode_offset(), 1024);
        assert_eq!(&image[header.payload_range()], b"payload!");
    }

    #[test]
    fn zero_setup_sects_means_four() {
        let mut image = synthetic_bzimage(BANNER, b"");
        image[SETUP_SECTS_OFFSET] = 0;
        image.resize(5 * SECTOR, 0);
        let header = SetupHeader::parse(&image).unwrap();
        assert_eq!(header.setup_sects, 4);
        assert_eq!(header.protected_mode_offset(), 5 * SECTOR);
    }

    #[test]
    fn rejects_a_bad_magic_and_a_tiny_file() {
        let mut image = synthetic_bzimage(BANNER, b"");
        image[MAGIC_OFFSET] = b'X';
        assert!(matches!(SetupHeader::parse(&image), Err(Error::NotBzImage)));
        assert!(matches!(SetupHeader::parse(b"#!/bin/sh\n"), Err(Error::NotBzImage)));
    }

    #[test]
    fn rejects_a_truncated_file() {
        let image = synthetic_bzimage(BANNER, b"");
        let err = SetupHeader::parse(&image[..0x240]).unwrap_err();
        assert!(matches!(err, Error::Truncated { need: 0x250, len: 0x240 }), "{err:?}");
        // The header is whole but the setup sector it announces is cut short.
        let err = SetupHeader::parse(&image[..0x300]).unwrap_err();
        assert!(matches!(err, Error::Truncated { need: 1024, .. }), "{err:?}");
    }

    #[test]
    fn rejects_a_version_pointer_out_of_range() {
        let mut image = synthetic_bzimage(BANNER, b"");
        // Points past the setup code (which ends at 1024 = 0x200 + 0x200).
        image[KERNEL_VERSION_OFFSET..KERNEL_VERSION_OFFSET + 2].copy_from_slice(&0x0210u16.to_le_bytes());
        let err = SetupHeader::parse(&image).unwrap_err();
        assert!(matches!(err, Error::VersionOutOfRange { offset: 0x210 }), "{err:?}");
    }

    #[test]
    fn rejects_an_unterminated_version() {
        let mut image = synthetic_bzimage(BANNER, b"");
        image[0x300..1024].fill(b'x');
        let err = SetupHeader::parse(&image).unwrap_err();
        assert!(matches!(err, Error::VersionOutOfRange { .. }), "{err:?}");
    }

    #[test]
    fn zero_version_pointer_means_no_version() {
        let mut image = synthetic_bzimage(BANNER, b"");
        image[KERNEL_VERSION_OFFSET..KERNEL_VERSION_OFFSET + 2].fill(0);
        assert_eq!(SetupHeader::parse(&image).unwrap().version, None);
    }

    #[test]
    fn rejects_a_protocol_without_payload_fields() {
        let mut image = synthetic_bzimage(BANNER, b"");
        image[PROTOCOL_OFFSET..PROTOCOL_OFFSET + 2].copy_from_slice(&0x0206u16.to_le_bytes());
        assert!(matches!(SetupHeader::parse(&image), Err(Error::OldProtocol { version: 0x0206 })));
    }

    #[test]
    fn identifies_an_elf_vmlinux_and_rejects_other_elves() {
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(ELF_MAGIC);
        elf[4] = 2;
        elf[5] = 1;
        elf[0x12] = 62;
        assert_eq!(ImageKind::identify(&elf).unwrap(), ImageKind::ElfVmlinux);
        elf[0x12] = 183; // aarch64
        assert!(matches!(ImageKind::identify(&elf), Err(Error::NotX86_64Elf)));
    }

    #[test]
    fn read_image_kind_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vmlinuz-bogus");
        std::fs::write(&path, b"not a kernel").unwrap();
        let err = read_image_kind(&path).unwrap_err();
        assert!(matches!(&err, Error::BadImage { path: p, .. } if *p == path), "{err:?}");
        assert!(err.to_string().contains("vmlinuz-bogus"), "{err}");
        let missing = dir.path().join("missing");
        assert!(matches!(read_image_kind(&missing), Err(Error::ReadImage { .. })));
    }

    #[test]
    fn reads_the_real_kernels_headers() {
        for kernel in [installed_kernels::cloud(), installed_kernels::generic()] {
            let path = kernel.image.as_path();
            let kind = read_image_kind(path).unwrap();
            assert_eq!(kind.version(), Some(kernel.version.as_str()));
            let ImageKind::BzImage(header) = kind else { panic!("{} is not a bzImage", path.display()) };
            let len = std::fs::metadata(path).unwrap().len() as usize;
            assert!(header.payload_range().end <= len, "{header:?}");
            println!("{}: {header:?}", path.display());
        }
    }
}
