//! Decompression of kernel modules, and of the formats a kernel image is packed in.
//!
//! Distributions ship modules as `.ko.zst`, `.ko.xz` or `.ko.gz`, and the guest kernel
//! might not have the matching in-kernel decompressor; so the host unpacks every module
//! before it goes into the initrd. The same decoders serve to pull the ELF `vmlinux` out
//! of a bzImage (xz on Debian's generic kernel, LZ4 "legacy" on its cloud kernel), which
//! boots much faster under TCG than letting the guest decompress itself.
//!
//! All decoders are pure Rust, so the crate builds without a C toolchain. Each decodes
//! the first stream and any further streams of the same format that directly follow, and
//! ignores other trailing bytes: a bzImage payload ends with 4 bytes holding the
//! uncompressed size, which no format's own framing accounts for.

use std::fmt;
use std::io::{self, Read};
use std::path::Path;

use crate::Error;

const ELF_MAGIC: &[u8] = b"\x7fELF";
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0];
const ZSTD_MAGIC: u32 = 0xFD2F_B528;
/// Zstd skippable frames have magics 0x184D2A50..=0x184D2A5F.
const ZSTD_SKIPPABLE_MASK: u32 = 0xFFFF_FFF0;
const ZSTD_SKIPPABLE: u32 = 0x184D_2A50;
const LZ4_LEGACY_MAGIC: u32 = 0x184C_2102;
/// Every block of the LZ4 legacy format decompresses to at most 8 MiB.
const LZ4_LEGACY_BLOCK: usize = 8 << 20;
/// `LZ4_compressBound(8 MiB)`: no legacy block can be larger when compressed.
const LZ4_LEGACY_MAX_CHUNK: usize = LZ4_LEGACY_BLOCK + LZ4_LEGACY_BLOCK / 255 + 16;

/// A compression format, as found by suffix or magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Not compressed.
    Plain,
    /// gzip (RFC 1952), the format of `.ko.gz`.
    Gzip,
    /// xz, the format of `.ko.xz` and of Debian's generic kernel payload.
    Xz,
    /// Zstandard, the format of `.ko.zst`.
    Zstd,
    /// The LZ4 "legacy" format (`lz4 -l`) the kernel's build uses for its payload.
    Lz4Legacy,
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::Plain => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
            Compression::Lz4Legacy => "LZ4 legacy",
        })
    }
}

impl Compression {
    /// The compressed format that `data` starts with, by its magic bytes; `None` when
    /// it starts with none of them (which does not prove it is uncompressed).
    pub fn detect(data: &[u8]) -> Option<Compression> {
        let le32 = data.get(..4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        if data.starts_with(GZIP_MAGIC) {
            Some(Compression::Gzip)
        } else if data.starts_with(XZ_MAGIC) {
            Some(Compression::Xz)
        } else if le32 == Some(ZSTD_MAGIC) {
            Some(Compression::Zstd)
        } else if le32 == Some(LZ4_LEGACY_MAGIC) {
            Some(Compression::Lz4Legacy)
        } else {
            None
        }
    }

    /// The format a module file's name says it has; `None` for a name that is no module.
    fn of_module(path: &Path) -> Option<Compression> {
        let name = path.file_name()?.to_str()?;
        [
            (".ko", Compression::Plain),
            (".ko.gz", Compression::Gzip),
            (".ko.xz", Compression::Xz),
            (".ko.zst", Compression::Zstd),
        ]
        .into_iter()
        .find(|(suffix, _)| name.ends_with(suffix))
        .map(|(_, format)| format)
    }
}

/// Reads the kernel module at `path` and returns it uncompressed.
///
/// The format comes from the suffix (`.ko`, `.ko.gz`, `.ko.xz`, `.ko.zst`) and must be
/// confirmed by the content's magic bytes, and the result must be an ELF object: a
/// mislabelled module fails here, with its path, instead of in the guest's
/// `finit_module` with only an errno.
pub fn module_bytes(path: &Path) -> Result<Vec<u8>, Error> {
    let raw = std::fs::read(path).map_err(|source| Error::ReadModule { path: path.to_owned(), source })?;
    module_bytes_from(path, &raw)
}

/// [`module_bytes`] on content already read from `path`.
pub(crate) fn module_bytes_from(path: &Path, raw: &[u8]) -> Result<Vec<u8>, Error> {
    let format = Compression::of_module(path).ok_or_else(|| Error::ModuleSuffix { path: path.to_owned() })?;
    let found = Compression::detect(raw).unwrap_or(Compression::Plain);
    let magic_ok = match format {
        Compression::Plain => raw.starts_with(ELF_MAGIC),
        _ => found == format,
    };
    if !magic_ok {
        return Err(Error::ModuleMagic { path: path.to_owned(), expected: format });
    }
    if format == Compression::Plain {
        return Ok(raw.to_vec());
    }
    let bytes =
        decode(format, raw, 0).map_err(|source| Error::DecompressModule { path: path.to_owned(), format, source })?;
    if !bytes.starts_with(ELF_MAGIC) {
        return Err(Error::ModuleNotElf { path: path.to_owned() });
    }
    Ok(bytes)
}

/// Decompresses `data` in `format` (a copy of it for [`Compression::Plain`]).
pub fn decompress(format: Compression, data: &[u8]) -> Result<Vec<u8>, Error> {
    decompress_expecting(format, data, 0)
}

/// [`decompress`] when the result's size is known beforehand (a bzImage says it): the
/// output is allocated once, and LZ4 blocks decode straight into place. Only a hint:
/// the result is whatever the data holds.
pub fn decompress_expecting(format: Compression, data: &[u8], size: usize) -> Result<Vec<u8>, Error> {
    decode(format, data, size).map_err(|source| Error::Decompress { format, source })
}

/// Decompresses gzip data: one member and any members that directly follow.
pub fn gunzip(data: &[u8]) -> Result<Vec<u8>, Error> {
    decompress(Compression::Gzip, data)
}

/// Decompresses xz data: one stream (any check type and filter chain, including the
/// kernel's x86 BCJ) and any streams that follow after stream padding.
pub fn unxz(data: &[u8]) -> Result<Vec<u8>, Error> {
    decompress(Compression::Xz, data)
}

/// Decompresses zstd data: one frame and any frames (or skippable frames) that follow.
/// A frame's content checksum, when it has one, is verified.
pub fn unzstd(data: &[u8]) -> Result<Vec<u8>, Error> {
    decompress(Compression::Zstd, data)
}

/// Decompresses the LZ4 legacy format: the magic 0x184C2102 (little-endian), then blocks
/// of `[u32 LE compressed size][LZ4 block]`, each at most 8 MiB once decompressed.
///
/// The data ends at its end, or where a size is no plausible block (0, or more than an
/// 8 MiB block can compress to): that is where a bzImage's trailing 4-byte length sits.
/// A repeated magic (concatenated archives) is skipped.
pub fn unlz4_legacy(data: &[u8]) -> Result<Vec<u8>, Error> {
    decompress(Compression::Lz4Legacy, data)
}

fn decode(format: Compression, data: &[u8], size_hint: usize) -> io::Result<Vec<u8>> {
    // Room for the whole result up front: growing a 50 MB vector copies it again.
    let out = || Vec::with_capacity(size_hint.max(data.len() * 4));
    match format {
        Compression::Plain => Ok(data.to_vec()),
        Compression::Gzip => decode_gzip(data, out()),
        Compression::Xz => decode_xz(data, out()),
        Compression::Zstd => decode_zstd(data, out()),
        Compression::Lz4Legacy => decode_lz4_legacy(data, size_hint),
    }
}

fn invalid(message: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn decode_gzip(data: &[u8], mut out: Vec<u8>) -> io::Result<Vec<u8>> {
    let mut rest = data;
    loop {
        // The bufread decoder consumes exactly one member, so `rest` is what follows.
        let mut member = flate2::bufread::GzDecoder::new(rest);
        member.read_to_end(&mut out)?;
        rest = member.into_inner();
        if !rest.starts_with(GZIP_MAGIC) {
            return Ok(out);
        }
    }
}

fn decode_xz(data: &[u8], mut out: Vec<u8>) -> io::Result<Vec<u8>> {
    let mut rest = data;
    loop {
        // One stream at a time: the reader's own multi-stream mode rejects trailing
        // bytes that are not padding, like a bzImage's size field.
        let mut stream = lzma_rust2::XzReader::new(rest, false);
        stream.read_to_end(&mut out)?;
        rest = stream.into_inner();
        // Stream padding is a multiple of 4 zero bytes.
        while rest.starts_with(&[0; 4]) {
            rest = &rest[4..];
        }
        if !rest.starts_with(XZ_MAGIC) {
            return Ok(out);
        }
    }
}

fn decode_zstd(data: &[u8], mut out: Vec<u8>) -> io::Result<Vec<u8>> {
    let mut rest = data;
    let mut first = true;
    loop {
        let magic = match rest.get(..8) {
            Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            None if first => return Err(invalid("the data is too short for a zstd frame")),
            None => return Ok(out),
        };
        if magic & ZSTD_SKIPPABLE_MASK == ZSTD_SKIPPABLE {
            let len = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
            rest = rest.get(8 + len..).ok_or_else(|| invalid("a zstd skippable frame runs past the end"))?;
            continue;
        }
        if magic != ZSTD_MAGIC && !first {
            return Ok(out);
        }
        first = false;
        let mut frame = ruzstd::decoding::StreamingDecoder::new(&mut rest).map_err(invalid)?;
        frame.read_to_end(&mut out)?;
        let decoder = &frame.decoder;
        if let (Some(stored), Some(computed)) = (decoder.get_checksum_from_data(), decoder.get_calculated_checksum()) {
            if stored != computed {
                return Err(invalid("the zstd frame's content checksum does not match"));
            }
        }
    }
}

fn decode_lz4_legacy(data: &[u8], size_hint: usize) -> io::Result<Vec<u8>> {
    let le32 = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    if data.len() < 4 || le32(data) != LZ4_LEGACY_MAGIC {
        return Err(invalid("the data does not start with the LZ4 legacy magic"));
    }
    let mut rest = &data[4..];
    // Zeroed by the allocator (fresh pages, touched only as blocks land in them), so
    // every block decodes straight into its place: no staging copy.
    let mut out = vec![0u8; size_hint];
    let mut len = 0;
    // A 4-byte size with no data after it cannot start a block: that is trailing data.
    while rest.len() > 4 {
        let size = le32(rest);
        if size == LZ4_LEGACY_MAGIC {
            rest = &rest[4..];
            continue;
        }
        let size = size as usize;
        if size == 0 || size > LZ4_LEGACY_MAX_CHUNK {
            break;
        }
        let chunk =
            rest.get(4..4 + size).ok_or_else(|| invalid("an LZ4 legacy block runs past the end of the data"))?;
        if out.len() < len + LZ4_LEGACY_BLOCK {
            out.resize(len + LZ4_LEGACY_BLOCK, 0);
        }
        len += lz4_flex::block::decompress_into(chunk, &mut out[len..len + LZ4_LEGACY_BLOCK]).map_err(invalid)?;
        rest = &rest[4 + size..];
    }
    out.truncate(len);
    Ok(out)
}

#[cfg(test)]
#[path = "decompress_tests.rs"]
mod tests;
