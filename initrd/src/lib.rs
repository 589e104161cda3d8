//! The initrd of a virt-sandbox VM: which kernel modules it needs, in what order, and
//! the archive that carries them with the init binary to the guest kernel.
//!
//! - [`modules`]: resolve module names and aliases against `/lib/modules/<version>`
//!   into a load order, through the kernel's own `modules.dep`/`modules.builtin`.
//! - [`decompress`]: unpack `.ko.zst`/`.ko.xz`/`.ko.gz` modules, and the xz/LZ4/zstd/gzip
//!   payloads of kernel images.
//! - [`cpio`]: the newc cpio writer the kernel's initramfs unpacker reads.
//! - [`build`] lays out the image (see there); [`lookup_or_build`] keeps built images
//!   keyed by content so a launch usually only hashes its inputs, and [`stage`] writes
//!   cache entries that a launch can use before they are published.
//!
//! The host launcher uses all of it; the guest only sees the result, at the paths in
//! [`MODULES_DIR`] and [`MODULE_ORDER_FILE`].

pub mod cache;
pub mod cpio;
pub mod decompress;
mod error;
mod eviction;
mod image;
// The tests' real kernels, found as the end-to-end tests find them (each crate uses a
// part of that file).
#[cfg(test)]
#[allow(dead_code)]
#[path = "../../tests/src/installed_kernels.rs"]
mod installed_kernels;
pub mod modules;
mod store;
mod versions;

pub use cache::{default_cache_dir, ensure_dir as ensure_cache_dir, lookup_or_build, Cached};
pub use error::Error;
pub use eviction::mark_used;
pub use image::{build, build_with, strip_signature, BuildOptions, MODULES_DIR, MODULE_ORDER_FILE};
pub use modules::{Availability, ModuleTree, ResolvedModule};
pub use store::{stage, Staged};
pub use versions::compare_versions;
