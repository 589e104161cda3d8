//! Test-only builders for what a bzImage wraps: a minimal x86_64 ELF with notes, and the
//! compressed formats written the trivial way (stored / literal-only / raw blocks), so the
//! extraction path runs end to end without a compressor dependency or a real kernel.

/// Appends the uncompressed size as the x86 kernel build does after every payload.
pub(super) fn with_size(payload: &[u8], size: usize) -> Vec<u8> {
    let mut out = payload.to_vec();
    out.extend_from_slice(&(size as u32).to_le_bytes());
    out
}

/// A minimal x86_64 ELF: a PT_LOAD and a PT_NOTE program header; the notes are a GNU
/// build id, a Xen note of another type, and (if `pvh_entry`) the PVH entry note,
/// padded to `align` (4 or 8).
pub(super) fn synthetic_elf(pvh_entry: Option<u64>, align: u64) -> Vec<u8> {
    let mut notes = Vec::new();
    push_note(&mut notes, align, b"GNU\0", 3, &[0xab; 20]);
    push_note(&mut notes, align, b"Xen\0", 1, &0xffff_ffff_8100_0000u64.to_le_bytes());
    if let Some(entry) = pvh_entry {
        push_note(&mut notes, align, b"Xen\0", 18, &entry.to_le_bytes());
    }
    let notes_at = 64 + 2 * 56;
    let mut elf = vec![0u8; notes_at];
    elf[..4].copy_from_slice(b"\x7fELF");
    elf[4] = 2; // ELFCLASS64
    elf[5] = 1; // ELFDATA2LSB
    elf[6] = 1; // EV_CURRENT
    elf[0x10..0x12].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf[0x12..0x14].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    elf[0x14..0x18].copy_from_slice(&1u32.to_le_bytes());
    elf[0x20..0x28].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    elf[0x34..0x36].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    elf[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes()); // e_phnum
    let load = &mut elf[64..120];
    load[0..4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD, empty
    let note = &mut elf[120..176];
    note[0..4].copy_from_slice(&4u32.to_le_bytes()); // PT_NOTE
    note[8..16].copy_from_slice(&(notes_at as u64).to_le_bytes());
    note[32..40].copy_from_slice(&(notes.len() as u64).to_le_bytes());
    note[40..48].copy_from_slice(&(notes.len() as u64).to_le_bytes());
    note[48..56].copy_from_slice(&align.to_le_bytes());
    elf.extend_from_slice(&notes);
    elf
}

fn push_note(out: &mut Vec<u8>, align: u64, name: &[u8], kind: u32, desc: &[u8]) {
    let pad = |out: &mut Vec<u8>| out.resize(out.len().next_multiple_of(align as usize), 0);
    out.extend_from_slice(&(name.len() as u32).to_le_bytes());
    out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(name);
    pad(out);
    out.extend_from_slice(desc);
    pad(out);
}

/// gzip (RFC 1952) with deflate "stored" blocks (RFC 1951 3.2.4).
pub(super) fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut chunks: Vec<&[u8]> = data.chunks(0xffff).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    let last = chunks.len() - 1;
    for (i, chunk) in chunks.into_iter().enumerate() {
        out.push(u8::from(i == last)); // BFINAL, BTYPE 00
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// The LZ4 legacy frame (magic, then u32-length-prefixed blocks of at most 8 MiB
/// output), each block a single literal-only sequence.
pub(super) fn lz4_legacy_literals(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x02, 0x21, 0x4c, 0x18];
    for chunk in data.chunks(8 << 20) {
        let mut block = Vec::with_capacity(chunk.len() + chunk.len() / 255 + 2);
        block.push((chunk.len().min(15) as u8) << 4);
        if chunk.len() >= 15 {
            let mut rest = chunk.len() - 15;
            while rest >= 255 {
                block.push(255);
                rest -= 255;
            }
            block.push(rest as u8);
        }
        block.extend_from_slice(chunk);
        out.extend_from_slice(&(block.len() as u32).to_le_bytes());
        out.extend_from_slice(&block);
    }
    out
}

/// A zstd frame (RFC 8878) with a 128 KiB window and raw blocks.
pub(super) fn zstd_raw(data: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 128 << 10;
    // Frame header descriptor 0 (window descriptor follows, no checksum, no dictionary);
    // window descriptor exponent 7: 2^(10+7) = 128 KiB.
    let mut out = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 7 << 3];
    let mut chunks: Vec<&[u8]> = data.chunks(BLOCK).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    let last = chunks.len() - 1;
    for (i, chunk) in chunks.into_iter().enumerate() {
        let header = u32::from(i == last) | ((chunk.len() as u32) << 3); // block type 0: raw
        out.extend_from_slice(&header.to_le_bytes()[..3]);
        out.extend_from_slice(chunk);
    }
    out
}

/// CRC-32 (IEEE, reflected), bit by bit: fast enough for test data.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[test]
fn crc32_matches_the_check_value() {
    assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
}
