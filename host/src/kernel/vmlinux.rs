//! Unpacking the uncompressed ELF `vmlinux` from a bzImage, for a PVH boot.
//!
//! Under TCG the guest spends most of a cold boot decompressing itself (measured: a
//! trivial boot of the generic XZ kernel drops from ~4.4 s to ~1.8 s, the LZ4 cloud
//! kernel from ~1.9 s to ~1.57 s). QEMU boots an ELF kernel only through the PVH entry
//! point the kernel announces in an ELF note, so extraction verifies that note too: an
//! image that fails any step here is still bootable as a bzImage, and every error says so.
//! The caller extracts once and caches the result beside the initrd.

use virt_sandbox_initrd::decompress::{decompress_expecting, Compression};

use super::bzimage::{is_x86_64_elf, SetupHeader};
use super::le::{slice_at, u16_at, u32_at, u64_at};
use super::Error;

/// `PT_NOTE`: a program header whose segment holds ELF notes.
const PT_NOTE: u32 = 4;
/// `XEN_ELFNOTE_PHYS32_ENTRY`: the 32-bit physical address of the PVH entry point.
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// Size of an ELF64 program header entry.
const PHDR_LEN: usize = 56;
/// The x86 build appends the uncompressed size (u32 LE) to every compressed payload.
const SIZE_TRAILER: usize = 4;

/// The compressed payload of a whole bzImage file, size trailer included.
pub fn payload(bzimage: &[u8]) -> Result<&[u8], Error> {
    let range = SetupHeader::parse(bzimage)?.payload_range();
    bzimage.get(range.clone()).ok_or(Error::PayloadOutOfRange {
        start: range.start,
        end: range.end,
        len: bzimage.len(),
    })
}

/// Decompresses the ELF `vmlinux` from a whole bzImage file and checks that QEMU can
/// boot it: an x86_64 ELF with a PVH entry note. Any error means "boot the bzImage".
///
/// The result may end with the kernel's relocation table (the build compresses
/// `vmlinux.bin` with `vmlinux.relocs` appended); loaders read only the ELF's segments.
pub fn extract_vmlinux(bzimage: &[u8]) -> Result<Vec<u8>, Error> {
    let payload = payload(bzimage)?;
    // gzip, xz, zstd or LZ4 legacy; bzip2, lzma and lzo kernels are rare and refused.
    let compression =
        Compression::detect(payload).ok_or_else(|| Error::UnsupportedCompression { magic: hex_prefix(payload) })?;
    // The 4 trailing size bytes are not part of the stream (the decoders would stop
    // before them anyway); they say how long the result must be.
    let (stream, trailer) = payload.split_at(payload.len().saturating_sub(SIZE_TRAILER));
    let expected = u32_at(trailer, 0).unwrap_or_default();
    let elf = decompress_expecting(compression, stream, expected as usize)
        .map_err(|source| Error::Decompress { format: compression, source })?;
    if elf.len() != expected as usize {
        return Err(Error::SizeMismatch { expected, got: elf.len() });
    }
    if !is_x86_64_elf(&elf) {
        return Err(Error::NotX86_64Elf);
    }
    if !has_pvh_entry(&elf) {
        return Err(Error::NoPvhEntry);
    }
    Ok(elf)
}

/// Whether `elf` is an x86_64 ELF that announces a PVH entry point, which is what QEMU
/// needs to boot it with `-kernel`.
pub fn has_pvh_entry(elf: &[u8]) -> bool {
    pvh_entry(elf).is_some()
}

/// The PVH entry point's physical address, from the first `Xen` note of type
/// `XEN_ELFNOTE_PHYS32_ENTRY` in a `PT_NOTE` segment. Every offset is bounds-checked:
/// `None` for anything malformed.
pub fn pvh_entry(elf: &[u8]) -> Option<u64> {
    if !is_x86_64_elf(elf) {
        return None;
    }
    let phoff = usize::try_from(u64_at(elf, 0x20)?).ok()?;
    let phentsize = usize::from(u16_at(elf, 0x36)?);
    let phnum = usize::from(u16_at(elf, 0x38)?);
    if phentsize < PHDR_LEN {
        return None;
    }
    (0..phnum).find_map(|i| {
        let phdr = slice_at(elf, phoff.checked_add(i.checked_mul(phentsize)?)?, PHDR_LEN)?;
        if u32_at(phdr, 0)? != PT_NOTE {
            return None;
        }
        let offset = usize::try_from(u64_at(phdr, 8)?).ok()?;
        let size = usize::try_from(u64_at(phdr, 32)?).ok()?;
        let align = u64_at(phdr, 48)?;
        find_pvh_note(slice_at(elf, offset, size)?, align)
    })
}

/// Walks the notes of one segment: each is namesz, descsz, type (u32 each), then the
/// name and the descriptor, each ending padded to the segment's alignment (4, or 8
/// where the segment says so), counted from the note's start as readelf does.
fn find_pvh_note(notes: &[u8], segment_align: u64) -> Option<u64> {
    let align = if segment_align == 8 { 8 } else { 4 };
    let pad = |n: usize| n.checked_add(align - 1).map(|n| n & !(align - 1));
    let mut pos = 0;
    while pos < notes.len() {
        let namesz = u32_at(notes, pos)? as usize;
        let descsz = u32_at(notes, pos + 4)? as usize;
        let kind = u32_at(notes, pos + 8)?;
        let name_at = pos.checked_add(12)?;
        let desc_at = pad(name_at.checked_add(namesz)?)?;
        let name = slice_at(notes, name_at, namesz)?;
        let desc = slice_at(notes, desc_at, descsz)?;
        if kind == XEN_ELFNOTE_PHYS32_ENTRY && name == b"Xen\0" {
            // Linux writes the address as a pointer-sized value; QEMU accepts 4 or 8 bytes.
            return match descsz {
                4 => u32_at(desc, 0).map(u64::from),
                8 => u64_at(desc, 0),
                _ => None,
            };
        }
        pos = pad(desc_at.checked_add(descsz)?)?;
    }
    None
}

/// The first bytes of the payload in hex, for the "unsupported compression" message.
fn hex_prefix(payload: &[u8]) -> String {
    let shown: Vec<String> = payload.iter().take(6).map(|b| format!("{b:02x}")).collect();
    if shown.is_empty() {
        "none: the payload is empty".to_owned()
    } else {
        shown.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::bzimage::synthetic_bzimage;
    use super::super::installed_kernels;
    use super::super::test_payloads::{gzip_stored, lz4_legacy_literals, synthetic_elf, with_size, zstd_raw};
    use super::*;

    const BANNER: &str = "6.9.0-test (nobody@example) #1";
    const ENTRY: u64 = 0x0100_0000 + 0x1234;

    #[test]
    fn finds_the_pvh_note_after_other_notes() {
        let elf = synthetic_elf(Some(ENTRY), 4);
        assert_eq!(pvh_entry(&elf), Some(ENTRY));
        assert!(has_pvh_entry(&elf));
        assert_eq!(pvh_entry(&synthetic_elf(Some(ENTRY), 8)), Some(ENTRY));
    }

    #[test]
    fn no_pvh_note_or_a_broken_elf_is_no_entry() {
        assert!(!has_pvh_entry(&synthetic_elf(None, 4)));
        let elf = synthetic_elf(Some(ENTRY), 4);
        // Cut inside the notes, inside the program headers, inside the ELF header.
        for len in [elf.len() - 4, 100, 40, 0] {
            assert!(!has_pvh_entry(&elf[..len]), "len {len}");
        }
        let mut huge_phoff = elf.clone();
        huge_phoff[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(!has_pvh_entry(&huge_phoff));
    }

    #[test]
    fn refuses_unsupported_compression_with_the_magic() {
        let image = synthetic_bzimage(BANNER, &with_size(&[0x5d, 0, 0, 0x80, 0, 0xff], 1));
        let err = extract_vmlinux(&image).unwrap_err();
        assert!(matches!(&err, Error::UnsupportedCompression { magic } if magic == "5d 00 00 80 00 ff"), "{err:?}");
        assert!(err.to_string().contains("boot the bzImage itself"), "{err}");
    }

    #[test]
    fn refuses_a_payload_past_the_end() {
        let mut image = synthetic_bzimage(BANNER, b"0123456789");
        image.truncate(image.len() - 3);
        assert!(matches!(
            extract_vmlinux(&image),
            Err(Error::PayloadOutOfRange { end, len, .. }) if end == len + 3
        ));
    }

    #[test]
    fn extracts_from_each_synthetic_payload() {
        let elf = synthetic_elf(Some(ENTRY), 4);
        for payload in [gzip_stored(&elf), lz4_legacy_literals(&elf), zstd_raw(&elf)] {
            let image = synthetic_bzimage(BANNER, &with_size(&payload, elf.len()));
            let name = Compression::detect(&payload).unwrap();
            let got = extract_vmlinux(&image).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert_eq!(got, elf, "{name}");
        }
    }

    #[test]
    fn checks_size_elf_and_pvh_after_decompressing() {
        let elf = synthetic_elf(Some(ENTRY), 4);
        let wrong_size = synthetic_bzimage(BANNER, &with_size(&lz4_legacy_literals(&elf), 7));
        assert!(matches!(extract_vmlinux(&wrong_size), Err(Error::SizeMismatch { expected: 7, .. })));
        let text = b"not an elf at all".repeat(8);
        let not_elf = synthetic_bzimage(BANNER, &with_size(&lz4_legacy_literals(&text), text.len()));
        assert!(matches!(extract_vmlinux(&not_elf), Err(Error::NotX86_64Elf)));
        let bare = synthetic_elf(None, 4);
        let no_pvh = synthetic_bzimage(BANNER, &with_size(&lz4_legacy_literals(&bare), bare.len()));
        assert!(matches!(extract_vmlinux(&no_pvh), Err(Error::NoPvhEntry)));
    }

    #[test]
    fn extracts_the_real_kernels() {
        for kernel in [installed_kernels::cloud(), installed_kernels::generic()] {
            let path = kernel.image.as_path();
            let image = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let compression = Compression::detect(payload(&image).unwrap()).unwrap();
            let started = Instant::now();
            let elf = extract_vmlinux(&image).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
            let took = started.elapsed();
            assert!(elf.starts_with(b"\x7fELF"));
            let entry = pvh_entry(&elf).unwrap();
            println!(
                "{}: {} payload, {} -> {} bytes in {:.2?}, PVH entry {entry:#x}",
                path.display(),
                compression,
                image.len(),
                elf.len(),
                took
            );
        }
    }
}
