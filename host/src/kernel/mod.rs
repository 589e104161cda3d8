//! Which kernel the VM boots and how: discovery of the image, its version and its
//! modules (DESIGN.md, boot path step 1), the bzImage setup header, and extraction of
//! the uncompressed `vmlinux` that QEMU boots through its PVH entry (much faster under
//! TCG than letting the guest decompress itself).

mod bzimage;
mod discover;
mod error;
// The tests' real kernels, found as the end-to-end tests find them (each crate uses a
// part of that file).
#[cfg(test)]
#[allow(dead_code)]
#[path = "../../../tests/src/installed_kernels.rs"]
mod installed_kernels;
mod le;
#[cfg(test)]
mod test_payloads;
mod vmlinux;

pub use bzimage::{read_image_kind, ImageKind, SetupHeader};
pub use discover::{compare_versions, discover, running_release, ImageFormat, Kernel, KernelRequest, Roots};
pub use error::Error;
pub use vmlinux::{extract_vmlinux, has_pvh_entry, payload, pvh_entry};
