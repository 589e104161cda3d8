use super::*;
use crate::installed_kernels::{self, InstalledKernel};

/// A tree like Debian's generic kernel: virtio and 9p as modules, one built-in, and
/// modules.dep lines in an order that is not load order.
fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write(
        "modules.dep",
        "kernel/fs/9p/9p.ko.xz: kernel/fs/netfs/netfs.ko.xz kernel/net/9p/9pnet.ko.xz \
         kernel/fs/fscache/fscache.ko.xz\n\
         kernel/fs/fscache/fscache.ko.xz: kernel/fs/netfs/netfs.ko.xz\n\
         kernel/fs/netfs/netfs.ko.xz:\n\
         kernel/net/9p/9pnet_virtio.ko.zst: kernel/drivers/virtio/virtio_ring.ko \
         kernel/net/9p/9pnet.ko.xz kernel/drivers/virtio/virtio.ko\n\
         kernel/net/9p/9pnet.ko.xz:\n\
         kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio_ring.ko \
         kernel/drivers/virtio/virtio.ko\n\
         kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n\
         kernel/drivers/virtio/virtio_ring.ko:\n\
         kernel/drivers/char/virtio-console.ko.gz: kernel/drivers/virtio/virtio.ko \
         kernel/drivers/virtio/virtio_ring.ko\n",
    );
    write("modules.builtin", "kernel/fs/fuse/fuse.ko\nkernel/fs/fuse/virtiofs.ko\n");
    write("modules.builtin.modinfo", "virtiofs.alias=fs-virtiofs\0virtiofs.license=GPL\0");
    write(
        "modules.alias",
        "# Aliases extracted from modules themselves.\n\
         alias fs-9p 9p\n\
         alias virtio:d00000009v* 9pnet_virtio\n\
         alias virtio:d00000003v* virtio_console\n",
    );
    dir
}

fn names(order: &[ResolvedModule]) -> Vec<&str> {
    order.iter().map(|m| m.name.as_str()).collect()
}

/// Asserts that every module comes after every dependency modules.dep gives it.
fn assert_deps_first(tree: &ModuleTree, order: &[ResolvedModule]) {
    let pos = |n: &str| order.iter().position(|m| m.name == n);
    for (i, m) in order.iter().enumerate() {
        for dep in &tree.loadable[&m.name].deps {
            let at = pos(dep).unwrap_or_else(|| panic!("{dep} (for {}) not loaded", m.name));
            assert!(at < i, "{dep} must come before {}: {:?}", m.name, names(order));
        }
    }
    let unique: HashSet<_> = order.iter().map(|m| &m.name).collect();
    assert_eq!(unique.len(), order.len(), "each once: {:?}", names(order));
}

#[test]
fn availability_by_name_and_alias() {
    let dir = fixture();
    let tree = ModuleTree::open(dir.path()).unwrap();
    let module = |rel: &str| Availability::Module(dir.path().join(rel));
    assert_eq!(tree.availability("virtiofs"), Availability::Builtin);
    assert_eq!(tree.availability("fs-virtiofs"), Availability::Builtin);
    assert_eq!(tree.availability("fuse"), Availability::Builtin);
    assert_eq!(tree.availability("fs-9p"), module("kernel/fs/9p/9p.ko.xz"));
    assert_eq!(tree.availability("virtio:d00000009v00001AF4"), module("kernel/net/9p/9pnet_virtio.ko.zst"));
    assert_eq!(tree.availability("virtio_console"), module("kernel/drivers/char/virtio-console.ko.gz"));
    assert_eq!(tree.availability("9pnet-virtio"), tree.availability("9pnet_virtio"));
    assert_eq!(tree.availability("vsock"), Availability::Missing);
    assert_eq!(tree.availability("fs-ext4"), Availability::Missing);
}

#[test]
fn resolve_orders_dependencies_first_once_without_builtins() {
    let dir = fixture();
    let tree = ModuleTree::open(dir.path()).unwrap();
    let order = tree.resolve(&["virtio_mmio", "virtio-console", "fs-virtiofs", "9pnet_virtio", "fs-9p"]).unwrap();
    assert_deps_first(&tree, &order);
    assert_eq!(
        names(&order),
        ["virtio_ring", "virtio", "virtio_mmio", "virtio_console", "9pnet", "9pnet_virtio", "netfs", "fscache", "9p"]
    );
    assert_eq!(order[8].path, dir.path().join("kernel/fs/9p/9p.ko.xz"));
}

#[test]
fn missing_module_names_itself_and_the_directory() {
    let dir = fixture();
    let tree = ModuleTree::open(dir.path()).unwrap();
    let err = tree.resolve(&["virtio_mmio", "vhost_vsock"]).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("`vhost_vsock`"), "{text}");
    assert!(text.contains(&dir.path().display().to_string()), "{text}");
}

#[test]
fn missing_modules_dep_is_an_error_and_a_cycle_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let err = ModuleTree::open(dir.path()).unwrap_err();
    assert!(matches!(err, Error::ReadModuleIndex { .. }), "{err}");

    std::fs::write(dir.path().join("modules.dep"), "a.ko: b.ko\nb.ko: a.ko\n").unwrap();
    let tree = ModuleTree::open(dir.path()).unwrap();
    assert!(matches!(tree.resolve(&["a"]), Err(Error::ModuleDepCycle { .. })));

    std::fs::write(dir.path().join("modules.dep"), "a.ko b.ko\n").unwrap();
    let err = ModuleTree::open(dir.path()).unwrap_err();
    assert!(matches!(err, Error::ParseModuleDep { line: 1, .. }), "{err}");
}

#[test]
fn globs_match_like_fnmatch() {
    let m = |p: &str, t: &str| glob_match(p.as_bytes(), t.as_bytes());
    assert!(m("virtio:d00000009v*", "virtio:d00000009v00001AF4"));
    assert!(!m("virtio:d00000009v*", "virtio:d0000001Av00001AF4"));
    assert!(m("pci:v*d*sv*", "pci:v1AF4d1000sv0000"));
    assert!(m("a?c", "abc") && !m("a?c", "ac"));
    assert!(m("x[0-9]y", "x5y") && !m("x[0-9]y", "xay"));
    assert!(m("x[!0-9]y", "xay") && !m("x[^0-9]y", "x5y"));
    assert!(m("*", "") && m("a*", "a") && !m("a", "ab"));
    assert!(m("*ab*ab", "xxabyyab") && !m("*ab*ab", "xxabyya"));
    assert_eq!(normalise_alias("fs-9p"), "fs_9p");
    assert_eq!(normalise_alias("x[0-9]-y"), "x[0-9]_y");
}

/// Resolves on an installed kernel's modules directory.
fn real(kernel: InstalledKernel, wanted: &[&str], before: &[(&str, &str)]) {
    let version = &kernel.version;
    let tree = ModuleTree::open(&kernel.modules).unwrap();
    let order = tree.resolve(wanted).unwrap();
    println!("{version} {wanted:?} load order: {:?}", names(&order));
    assert_deps_first(&tree, &order);
    let pos = |n: &str| order.iter().position(|m| m.name == n);
    for (first, then) in before {
        match (pos(first), pos(then)) {
            (Some(a), Some(b)) => assert!(a < b, "{first} before {then}: {:?}", names(&order)),
            // A built-in needs no ordering; the other one must then be loaded or built in.
            _ => assert!(
                [first, then].iter().all(|n| pos(n).is_some() || tree.availability(n) == Availability::Builtin),
                "{first}/{then} neither loaded nor built in: {:?}",
                names(&order)
            ),
        }
    }
    for m in &order {
        assert!(m.path.is_file(), "{} exists", m.path.display());
    }
}

#[test]
fn real_cloud_kernel_virtiofs() {
    real(
        installed_kernels::cloud(),
        &["virtio_mmio", "virtio_console", "virtiofs"],
        &[("virtio_ring", "virtio"), ("virtio", "virtio_mmio"), ("fuse", "virtiofs")],
    );
}

#[test]
fn real_generic_kernel_9p() {
    real(
        installed_kernels::generic(),
        &["virtio_mmio", "virtio_console", "9pnet_virtio", "9p"],
        &[
            ("virtio_ring", "virtio"),
            ("virtio", "virtio_mmio"),
            ("9pnet", "9pnet_virtio"),
            ("netfs", "9p"),
            ("fscache", "9p"),
        ],
    );
}
