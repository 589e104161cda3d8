use super::*;
use std::io::Write;
use std::process::{Command, Stdio};

/// Compresses `data` with a system tool reading stdin and writing stdout.
fn system_compress(tool: &[&str], data: &[u8]) -> Vec<u8> {
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
fn sample(len: usize) -> Vec<u8> {
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

/// Decompresses the payload of the installed kernels' bzImages (LZ4 in the cloud one,
/// XZ in the generic one), as the kernel's boot stub would: `(setup_sects + 1) * 512 +
/// payload_offset`, length `payload_length`, ending in the 4-byte uncompressed size.
#[test]
fn real_bzimage_payloads() {
    for kernel in [crate::installed_kernels::cloud(), crate::installed_kernels::generic()] {
        let image = kernel.image.display();
        let bz = std::fs::read(&kernel.image).unwrap_or_else(|e| panic!("{image}: {e}"));
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
