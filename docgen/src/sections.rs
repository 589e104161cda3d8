//! The man page's sections that clap has no words for. Numbers and search orders come
//! from the launcher's code (`exit`, `initfile`), so the page cannot drift from them.

use std::path::Path;
use virt_sandbox::exit::{paths_list, CANNOT_EXECUTE, NOT_FOUND, SANDBOX_FAILED, TIMED_OUT};
use virt_sandbox::initfile;

pub struct Section {
    pub title: &'static str,
    pub blocks: Vec<Block>,
}

pub enum Block {
    Para(String),
    /// A term (bold) and what it means.
    Item(String, String),
    /// What it does, then the command lines, literal.
    Example(String, String),
}

fn para(s: &str) -> Block {
    Block::Para(s.to_owned())
}

fn item(term: impl Into<String>, text: impl Into<String>) -> Block {
    Block::Item(term.into(), text.into())
}

fn example(text: &str, code: &str) -> Block {
    Block::Example(text.to_owned(), code.to_owned())
}

pub fn all() -> Vec<Section> {
    vec![exit_status(), environment(), files(), examples(), see_also()]
}

fn exit_status() -> Section {
    Section {
        title: "EXIT STATUS",
        blocks: vec![
            para(
                "The command's own exit status. The launcher's own conditions use the numbers that \
                 env(1), timeout(1) and docker run use:",
            ),
            item(
                "128+N",
                "The command was killed by signal N (137 when a container's --memory limit \
                 killed it, which the launcher says). SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to the \
                 launcher are forwarded to the command; a second one, or the command still running 10 s \
                 after the first, tears the sandbox down with 128+N.",
            ),
            item(
                TIMED_OUT.to_string(),
                "--timeout expired: the command's process group was killed, and what \
                 it wrote before arrived.",
            ),
            item(
                SANDBOX_FAILED.to_string(),
                "The sandbox itself failed, or the command line is wrong: one line \
                 on stderr says why (with the tail of the guest console when it helps), and nothing is left \
                 behind.",
            ),
            item(CANNOT_EXECUTE.to_string(), "The command was found but cannot be executed."),
            item(NOT_FOUND.to_string(), "The command was not found."),
        ],
    }
}

fn environment() -> Section {
    Section {
        title: "ENVIRONMENT",
        blocks: vec![
            para(
                "The command does not see the launcher's environment: it gets PATH, TERM, LANG, LANGUAGE \
                  and LC_* from it, HOME, USER and LOGNAME from the user database, and what -e or \
                  --inherit-env add. The launcher itself reads:",
            ),
            item("VIRT_SANDBOX_KERNEL", "The kernel image to boot, as --kernel (which wins)."),
            item(
                "VIRT_SANDBOX_INIT",
                "The init binary to put in the sandbox (a static x86-64 executable), \
                 instead of looking for it (see FILES).",
            ),
            item("VIRT_SANDBOX_QEMU", "The QEMU binary (default: qemu-system-x86_64 on PATH)."),
            item(
                "VIRTIOFSD",
                "The virtiofsd binary (default: on PATH, /usr/libexec/virtiofsd, \
                 /usr/local/bin/virtiofsd, ~/.cargo/bin/virtiofsd).",
            ),
            item(
                "VHOST_DEVICE_VSOCK",
                "The vhost-device-vsock binary (looked for as virtiofsd is); when set, \
                 --transport vsock uses it even where /dev/vhost-vsock exists.",
            ),
            item(
                "VIRT_SANDBOX_NET_HELPER",
                "The container's -N helper: pasta or slirp4netns, or a path to one \
                 (default: pasta where both are installed).",
            ),
            item(
                "VIRT_SANDBOX_CACHE_DIR",
                "The initrd and kernel cache (default: see FILES); an empty \
                 directory makes a cold start.",
            ),
            item(
                "VIRT_SANDBOX_BOOT_TIMEOUT",
                "How long a VM may take to reach init before the launcher gives \
                 up with 125 (default 30s under TCG, 10s with KVM; e.g. 60s on a loaded machine).",
            ),
            item("XDG_CACHE_HOME, HOME", "Where a user's cache lives (see FILES)."),
            item(
                "XDG_RUNTIME_DIR, TMPDIR",
                "Where a launch's sockets live for the moment QEMU and its helpers \
                 take to connect (XDG_RUNTIME_DIR, else TMPDIR, else /tmp), and the temporary directories \
                 behind an empty host-bind: source (TMPDIR, else /tmp).",
            ),
        ],
    }
}

fn files() -> Section {
    let prefix = Path::new("PREFIX/bin/virt-sandbox");
    let init_places = paths_list(&initfile::candidates(prefix, None));
    Section {
        title: "FILES",
        blocks: vec![
            item(
                "/var/cache/virt-sandbox/ (root), $XDG_CACHE_HOME/virt-sandbox/ or ~/.cache/virt-sandbox/",
                "The cache: initrds (the init and the kernel modules the chosen devices need, \
                  initrd-HASH.cpio) and decompressed kernels (vmlinux-HASH.elf), each built once and named by \
                  its content. Entries unused for 30 days are removed when a new one is stored; deleting \
                  the directory is safe.",
            ),
            item(
                "/boot/vmlinuz-VERSION, /usr/lib/modules/VERSION/vmlinuz",
                "The kernels a VM boots: --kernel, else $VIRT_SANDBOX_KERNEL, else the running kernel's \
                  /boot/vmlinuz-$(uname -r) or /usr/lib/modules/$(uname -r)/vmlinuz, else the newest \
                  /boot/vmlinuz-* (with a notice). The version is read from the image's header.",
            ),
            item(
                "/lib/modules/VERSION/",
                "That kernel's modules (modules.dep, modules.builtin): those the sandbox needs go into the \
                  initrd. /boot/config-VERSION says whether the kernel insists on signed modules.",
            ),
            item(
                "PREFIX/lib/virt-sandbox/virt-sandbox-init",
                format!(
                    "The static init, PID 1 of every sandbox. For a launcher installed as \
                  PREFIX/bin/virt-sandbox it is looked for in {init_places}; $VIRT_SANDBOX_INIT comes first, \
                  and a launcher in a cargo build tree also looks in that tree."
                ),
            ),
            item(
                "$XDG_RUNTIME_DIR/virt-sandbox-run-PID-*",
                "A launch's sockets, removed as soon as QEMU and its helpers have connected; one left by a \
                  killed launcher is removed by the next.",
            ),
            item(
                "/dev/kvm, /dev/vhost-vsock",
                "KVM, when it can boot a stock kernel (else TCG); the kernel's vsock, when it can be opened.",
            ),
            item(
                "/etc/passwd, /etc/group",
                "Users and groups (-S, the caller's HOME); getent(1) is asked for those held elsewhere \
                  (LDAP, sssd).",
            ),
        ],
    }
}

fn examples() -> Section {
    Section {
        title: "EXAMPLES",
        blocks: vec![
            example(
                "Run a command; its output, input and exit status are its own (this prints hello and exits 7):",
                "virt-sandbox -- sh -c 'echo hello; exit 7'",
            ),
            example(
                "A one-shot untrusted script, in a VM with its own kernel, an empty home and /tmp, no network \
                 but lo, nothing of the host writable, and five minutes at most. The script comes on stdin, \
                 its result goes to stdout:",
                "virt-sandbox -M --timeout 5m -- python3 - < untrusted.py > result.txt",
            ),
            example(
                "An interactive shell, at a terminal: the shell gets a terminal of the sandbox's own (line \
                 editing, job control, Ctrl-C and the window size are its), and the caller's terminal is \
                 put back as it was when it exits. With a user-mode network as well, the host's \
                 loopback at 10.0.2.2:",
                "virt-sandbox -- bash\n\
                 virt-sandbox -N user -- bash",
            ),
            example(
                "A CI job: the checkout writable, the rest of the host read-only, in a container (it starts in \
                 milliseconds) with memory, process and time limits. The job's exit status is the test \
                 suite's; 124 means it timed out, 125 that the sandbox could not be made:",
                "virt-sandbox -c lxc:/// --rw . --memory 4G --pids 1024 --timeout 30m -- make test",
            ),
            example(
                "Cargo's runner: every test binary and cargo run's program runs in a sandbox of its own. A VM, \
                 or with -c lxc:/// a container (faster):",
                "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER=\"virt-sandbox --\" cargo test\n\
                 CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER=\"virt-sandbox -c lxc:/// --\" cargo test",
            ),
            example(
                "The same in .cargo/config.toml:",
                "[target.x86_64-unknown-linux-gnu]\nrunner = [\"virt-sandbox\", \"-c\", \"lxc:///\", \"--\"]",
            ),
            example(
                "Benchmarking: where one run's time goes, then 20 runs with each phase's min, median, p95 and \
                 max, as JSON and an SVG chart as well:",
                "virt-sandbox --timings -- true\n\
                 virt-sandbox --bench 20 --bench-json runs.json --bench-svg runs.svg -- true",
            ),
        ],
    }
}

fn see_also() -> Section {
    Section {
        title: "SEE ALSO",
        blocks: vec![para(
            "qemu-system-x86_64(1), virtiofsd(1), unshare(1), bwrap(1), timeout(1), and the README and \
             docs/SECURITY.md of the source tree.",
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &Section) -> String {
        s.blocks
            .iter()
            .map(|b| match b {
                Block::Para(t) => t.clone(),
                Block::Item(a, b) | Block::Example(a, b) => format!("{a}\n{b}"),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn every_exit_status_of_the_launcher_is_explained() {
        let s = text(&exit_status());
        for code in [TIMED_OUT, SANDBOX_FAILED, CANNOT_EXECUTE, NOT_FOUND] {
            assert!(s.contains(&format!("{code}\n")), "{code} missing");
        }
    }

    #[test]
    fn every_variable_the_launcher_reads_is_documented() {
        // Every `var_os("NAME")` and clap `env = "NAME"` in the launcher and the initrd
        // crate: a new one without a line in ENVIRONMENT fails here.
        let s = text(&environment());
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut found = Vec::new();
        for dir in ["host/src", "initrd/src"] {
            collect_vars(&root.join(dir), &mut found);
        }
        assert!(found.iter().any(|v| v == "VIRT_SANDBOX_KERNEL"), "the scan finds nothing: {found:?}");
        for var in found {
            assert!(s.contains(&var), "{var} is read by the launcher but not in ENVIRONMENT");
        }
    }

    fn collect_vars(dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                collect_vars(&path, out);
                continue;
            }
            let src = std::fs::read_to_string(&path).unwrap_or_default();
            for pat in ["var_os(\"", "env::var(\"", "env = \""] {
                for piece in src.split(pat).skip(1) {
                    let name: String = piece.chars().take_while(|c| c.is_ascii_uppercase() || *c == '_').collect();
                    if !name.is_empty() && !out.contains(&name) && !path.to_string_lossy().contains("tests") {
                        out.push(name);
                    }
                }
            }
        }
    }

    #[test]
    fn the_init_search_order_is_the_launchers() {
        let s = text(&files());
        assert!(s.contains("PREFIX/lib/virt-sandbox/virt-sandbox-init, /usr/local/lib/virt-sandbox"), "{s}");
    }
}
