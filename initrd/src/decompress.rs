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
    let raw = std::fs::read(path).map_err(|source| Error::ReadModule {
        path: path.to_owned(),
        source,
    })?;
    module_bytes_from(path, &raw)
}

/// [`module_bytes`] on content already read from `path`.
pub(crate) fn module_bytes_from(path: &Path, raw: &[u8]) -> Result<Vec<u8>, Error> {
    let format = Compression::of_module(path).ok_or_else(|| Error::ModuleSuffix {
        path: path.to_owned(),
    })?;
    let found = Compression::detect(raw).unwrap_or(Compression::Plain);
    let magic_ok = match format {
        Compression::Plain => raw.starts_with(ELF_MAGIC),
        _ => found == format,
    };
    if !magic_ok {
        return Err(Error::ModuleMagic {
            path: path.to_owned(),
            expected: format,
        });
    }
    if format == Compression::Plain {
        return Ok(raw.to_vec());
    }
    let bytes = decode(format, raw).map_err(|source| Error::DecompressModule {
        path: path.to_owned(),
        format,
        source,
    })?;
    if !bytes.starts_with(ELF_MAGIC) {
        return Err(Error::ModuleNotElf {
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}

/// Decompresses `data` in `format` (a copy of it for [`Compression::Plain`]).
pub fn decompress(format: Compression, data: &[u8]) -> Result<Vec<u8>, Error> {
    decode(format, data).map_err(|source| Error::Decompress { format, source })
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

fn decode(format: Compression, data: &[u8]) -> io::Result<Vec<u8>> {
    match format {
        Compression::Plain => Ok(data.to_vec()),
        Compression::Gzip => decode_gzip(data),
        Compression::Xz => decode_xz(data),
        Compression::Zstd => decode_zstd(data),
        Compression::Lz4Legacy => decode_lz4_legacy(data),
    }
}

fn invalid(message: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn decode_gzip(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() * 4);
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

fn decode_xz(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() * 4);
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

fn decode_zstd(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() * 4);
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
            rest = rest
                .get(8 + len..)
                .ok_or_else(|| invalid("a zstd skippable frame runs past the end"))?;
            continue;
        }
        if magic != ZSTD_MAGIC && !first {
            return Ok(out);
        }
        first = false;
        let mut frame = ruzstd::decoding::StreamingDecoder::new(&mut rest).map_err(invalid)?;
        frame.read_to_end(&mut out)?;
        let decoder = &frame.decoder;
        if let (Some(stored), Some(computed)) = (
            decoder.get_checksum_from_data(),
            decoder.get_calculated_checksum(),
        ) {
            if stored != computed {
                return Err(invalid("the zstd frame's content checksum does not match"));
            }
        }
    }
}

fn decode_lz4_legacy(data: &[u8]) -> io::Result<Vec<u8>> {
    let le32 = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    if data.len() < 4 || le32(data) != LZ4_LEGACY_MAGIC {
        return Err(invalid("the data does not start with the LZ4 legacy magic"));
    }
    let mut rest = &data[4..];
    let mut out = Vec::with_capacity(data.len() * 3);
    let mut block = vec![0u8; LZ4_LEGACY_BLOCK];
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
        let chunk = rest
            .get(4..4 + size)
            .ok_or_else(|| invalid("an LZ4 legacy block runs past the end of the data"))?;
        let n = lz4_flex::block::decompress_into(chunk, &mut block).map_err(invalid)?;
        out.extend_from_slice(&block[..n]);
        rest = &rest[4 + size..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    /// Compresses `data` with a system tool reading stdin and writing stdout.
    pub(crate) fn system_compress(tool: &[&str], data: &[u8]) -> Vec<u8> {
        let mut child = Command::new(tool[0])
            .args(&tool[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{} runs (apt-get install zstd lz4 xz-utils): {e}", tool[0]));
        let mut stdin = child.stdin.take().unwrap();
        let input = data.to_vec();
        // Feed stdin from a thread: the tool's output pipe would fill up otherwise.
        let feeder = std::thread::spawn(move || stdin.write_all(&input));
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap().unwrap();
        assert!(out.status.success(), "{tool:?} failed");
        out.stdout
    }

    /// Deterministic data that compresses some but not trivially: text-like runs
    /// mixed with pseudo-random bytes.
    pub(crate) fn sample(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            if x >> 62 == 0 {
                out.extend_from_slice(&x.to_le_bytes());
            } else {
                out.extend_from_slice(b"virtio_ring virtio virtio_mmio ");
            }
        }
        out.truncate(len);
        out
    }

    /// As the kernel's `size_append`: the uncompressed length as 4 bytes LE.
    fn with_size(mut packed: Vec<u8>, len: usize) -> Vec<u8> {
        packed.extend_from_slice(&(len as u32).to_le_bytes());
        packed
    }

    #[test]
    fn gzip_members_and_trailing_bytes() {
        let data = sample(300_000);
        let packed = system_compress(&["gzip", "-c", "-9"], &data);
        assert_eq!(Compression::detect(&packed), Some(Compression::Gzip));
        assert_eq!(gunzip(&packed).unwrap(), data);
        assert_eq!(gunzip(&with_size(packed.clone(), data.len())).unwrap(), data);
        let twice = [packed.clone(), packed.clone()].concat();
        assert_eq!(gunzip(&twice).unwrap(), [data.clone(), data].concat());
        let mut corrupt = packed;
        let mid = corrupt.len() / 2;
        corrupt[mid] ^= 0xff;
        assert!(matches!(gunzip(&corrupt), Err(Error::Decompress { format: Compression::Gzip, .. })));
    }

    #[test]
    fn xz_as_the_kernel_packs_it_and_with_other_checks() {
        let data = sample(300_000);
        // scripts/xz_wrap.sh: CRC32 check, x86 BCJ filter, then LZMA2.
        let kernel = system_compress(&["xz", "-c", "--check=crc32", "--x86", "--lzma2=dict=1MiB"], &data);
        assert_eq!(Compression::detect(&kernel), Some(Compression::Xz));
        assert_eq!(unxz(&with_size(kernel, data.len())).unwrap(), data);
        for check in ["--check=none", "--check=crc64", "--check=sha256"] {
            let packed = system_compress(&["xz", "-c", check], &data);
            assert_eq!(unxz(&packed).unwrap(), data, "{check}");
        }
        let packed = system_compress(&["xz", "-c"], &data);
        let padded = [packed.clone(), vec![0; 8], packed.clone()].concat();
        assert_eq!(unxz(&padded).unwrap(), [data.clone(), data].concat());
        assert!(unxz(&packed[..packed.len() - 20]).is_err(), "truncated");
    }

    #[test]
    fn zstd_frames_checksums_and_trailing_bytes() {
        let data = sample(300_000);
        let packed = system_compress(&["zstd", "-c", "-q", "--check", "-19"], &data);
        assert_eq!(Compression::detect(&packed), Some(Compression::Zstd));
        assert_eq!(unzstd(&with_size(packed.clone(), data.len())).unwrap(), data);
        let unchecked = system_compress(&["zstd", "-c", "-q", "--no-check"], &data);
        let skippable = [0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3];
        let joined = [unchecked, skippable.to_vec(), packed.clone()].concat();
        assert_eq!(unzstd(&joined).unwrap(), [data.clone(), data].concat());
        // The checksum is the frame's last 4 bytes.
        let mut corrupt = packed;
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        assert!(unzstd(&corrupt).is_err(), "a bad checksum is caught");
    }

    #[test]
    fn lz4_legacy_blocks_and_trailing_size() {
        // Over two 8 MiB blocks, so the block loop and the short last block are covered.
        let data = sample(17 << 20);
        let packed = system_compress(&["lz4", "-l", "-c", "-q"], &data);
        assert_eq!(Compression::detect(&packed), Some(Compression::Lz4Legacy));
        assert_eq!(unlz4_legacy(&packed).unwrap(), data);
        let sized = with_size(packed.clone(), data.len());
        assert_eq!(unlz4_legacy(&sized).unwrap(), data);
        // A small payload's size field is a plausible block size, yet nothing follows it.
        let small = sample(1000);
        let small_packed = system_compress(&["lz4", "-l", "-c", "-q"], &small);
        assert_eq!(unlz4_legacy(&with_size(small_packed, small.len())).unwrap(), small);
        assert!(unlz4_legacy(&packed[..packed.len() / 2]).is_err(), "truncated");
        assert!(unlz4_legacy(b"not lz4").is_err());
    }

    #[test]
    fn module_bytes_by_suffix_checked_by_magic() {
        let dir = tempfile::tempdir().unwrap();
        let elf = [ELF_MAGIC, &sample(50_000)].concat();
        let put = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        };
        let gz = system_compress(&["gzip", "-c"], &elf);
        let xz = system_compress(&["xz", "-c", "--check=crc32"], &elf);
        let zst = system_compress(&["zstd", "-c", "-q"], &elf);
        for (name, bytes) in [("a.ko", &elf), ("b.ko.gz", &gz), ("c.ko.xz", &xz), ("d.ko.zst", &zst)] {
            assert_eq!(module_bytes(&put(name, bytes)).unwrap(), elf, "{name}");
        }
        let err = module_bytes(&put("e.ko.xz", &gz)).unwrap_err();
        assert!(matches!(err, Error::ModuleMagic { expected: Compression::Xz, .. }), "{err}");
        let err = module_bytes(&put("f.ko", &zst)).unwrap_err();
        assert!(matches!(err, Error::ModuleMagic { expected: Compression::Plain, .. }), "{err}");
        let err = module_bytes(&put("g.ko.bz2", &elf)).unwrap_err();
        assert!(matches!(err, Error::ModuleSuffix { .. }), "{err}");
        let not_elf = system_compress(&["gzip", "-c"], b"plain text");
        let err = module_bytes(&put("h.ko.gz", &not_elf)).unwrap_err();
        assert!(matches!(err, Error::ModuleNotElf { .. }), "{err}");
        let err = module_bytes(&dir.path().join("absent.ko")).unwrap_err();
        assert!(err.to_string().contains("absent.ko"), "{err}");
    }

    /// Decompresses the payload of a real bzImage, as the kernel's boot stub would, when
    /// the kernel is installed here: `(setup_sects + 1) * 512 + payload_offset`, length
    /// `payload_length`, ending in the 4-byte uncompressed size.
    #[test]
    fn real_bzimage_payloads() {
        for image in ["/boot/vmlinuz-6.1.0-56-cloud-amd64", "/boot/vmlinuz-6.1.0-56-amd64"] {
            let Ok(bz) = std::fs::read(image) else {
                println!("skipped: {image} is not installed here");
                continue;
            };
            let le32 = |at: usize| u32::from_le_bytes(bz[at..at + 4].try_into().unwrap()) as usize;
            let setup_sects = match bz[0x1f1] {
                0 => 4,
                n => n as usize,
            };
            let start = (setup_sects + 1) * 512 + le32(0x248);
            let payload = &bz[start..start + le32(0x24c)];
            let size = u32::from_le_bytes(payload[payload.len() - 4..].try_into().unwrap());
            let format = Compression::detect(payload).expect("a known payload format");
            let started = std::time::Instant::now();
            let vmlinux = decompress(format, payload).unwrap();
            println!(
                "{image}: {format} payload of {} bytes -> {} bytes in {:?}",
                payload.len(),
                vmlinux.len(),
                started.elapsed()
            );
            assert!(vmlinux.starts_with(ELF_MAGIC));
            assert_eq!(vmlinux.len(), size as usize);
        }
    }
}
