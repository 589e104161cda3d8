//! virt-sandbox as cargo's test runner (`CARGO_TARGET_<TRIPLE>_RUNNER`, or `runner` in
//! `.cargo/config.toml`): a crate's tests run inside the sandbox and cargo sees their
//! result, wherever the crate is kept. The crate is `tests/fixtures/cargo-runner`, copied
//! out; its tests pass only inside a sandbox (hostname, a read-only crate, the crate's
//! own binary run from the target directory), as does its doctest, which rustdoc builds
//! in the host's /tmp. A run of cargo test runs two binaries, so two sandboxes: the
//! integration tests and the (merged) doctests.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use virt_sandbox_tests::{bin, on_each_backend, output, Backend, Run, Scratch};

const TRIPLE_RUNNER: &str = "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER";

/// How the runner is given to cargo: the two forms the README shows.
#[derive(Clone, Copy)]
enum Form {
    /// `CARGO_TARGET_..._RUNNER="virt-sandbox ... --"`, split on whitespace.
    EnvVar,
    /// `runner = ["virt-sandbox", ..., "--"]` in the crate's `.cargo/config.toml`.
    ConfigToml,
}

/// The runner's words: the launcher, the backend's options, and `--` before the test
/// binary that cargo appends.
fn runner(backend: Backend) -> Vec<OsString> {
    let mut words = vec![bin().into_os_string()];
    words.extend(backend.args());
    words.push("--".into());
    words
}

/// A copy of the fixture crate at `to` (which must not exist).
fn copy_fixture(to: &Path) {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.file_name() == "target" {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                copy(&e.path(), &to.join(e.file_name()));
            } else {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }
    copy(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/cargo-runner"), to);
}

/// `cargo test` in `krate`, offline, through the sandbox; `target`: its
/// CARGO_TARGET_DIR, or cargo's default (`target` in the crate).
fn cargo_test(backend: Backend, krate: &Path, target: Option<&Path>, form: Form, extra: &[&str]) -> Run {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(host.trim(), "sandbox", "the host's own hostname would prove nothing");
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(krate).args(["test", "--offline", "--locked"]).args(extra);
    // Only what this test sets: not the flags or runner of whoever runs the suite.
    c.env_remove(TRIPLE_RUNNER).env_remove("RUSTFLAGS").env_remove("CARGO_BUILD_TARGET");
    match target {
        Some(t) => c.env("CARGO_TARGET_DIR", t),
        None => c.env_remove("CARGO_TARGET_DIR"),
    };
    let words = runner(backend);
    match form {
        Form::EnvVar => {
            let words: Vec<&str> = words.iter().map(|w| w.to_str().unwrap()).collect();
            assert!(words.iter().all(|w| !w.contains(char::is_whitespace)), "{words:?}");
            c.env(TRIPLE_RUNNER, words.join(" "));
        }
        Form::ConfigToml => {
            let quoted: Vec<String> = words.iter().map(|w| toml_string(w.to_str().unwrap())).collect();
            let config = format!("[target.x86_64-unknown-linux-gnu]\nrunner = [{}]\n", quoted.join(", "));
            std::fs::create_dir_all(krate.join(".cargo")).unwrap();
            std::fs::write(krate.join(".cargo/config.toml"), config).unwrap();
        }
    }
    output(&mut c)
}

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

const PASSED: &str = "test result: ok. 4 passed; 0 failed";

fn assert_inside(run: &Run) {
    assert_eq!(run.code, 0, "{run:?}");
    let out = run.stdout_str();
    assert!(out.contains("test runs_in_the_sandbox ... ok"), "{run:?}");
    assert!(out.contains("test the_crates_binary_runs_from_its_target_directory ... ok"), "{run:?}");
    assert!(out.contains(PASSED), "{run:?}");
    let doctest =
        |l: &str| l.starts_with("test ") && l.contains("src/lib.rs - hostname (line ") && l.ends_with(" ... ok");
    assert!(out.lines().any(doctest), "{run:?}");
}

/// In the sandbox's fresh /tmp, in a directory with a space, its target directory
/// elsewhere in /tmp: both shown read-only without an option.
fn crate_in_tmp_with_a_space_and_a_target_dir_elsewhere(backend: Backend) {
    let tmp = Scratch::under(Path::new("/tmp"), &format!("cargo runner {backend:?}"));
    let krate = tmp.path().join("my crate");
    copy_fixture(&krate);
    let target = tmp.path().join("build output");
    assert_inside(&cargo_test(backend, &krate, Some(&target), Form::EnvVar, &[]));
}

/// Under the user's home, with cargo's own target directory and the runner in the
/// crate's `.cargo/config.toml`.
fn crate_in_the_home_with_the_runner_in_its_config(backend: Backend) {
    let home = PathBuf::from(std::env::var_os("HOME").expect("HOME"));
    assert!(home.is_dir() && !home.starts_with("/tmp"), "{}", home.display());
    let dir = Scratch::under(&home, &format!(".virt-sandbox-cargo-runner-{backend:?}"));
    let krate = dir.path().join("crate");
    copy_fixture(&krate);
    assert_inside(&cargo_test(backend, &krate, None, Form::ConfigToml, &[]));
}

/// A failing test makes `cargo test` fail, and its message reaches the user.
fn a_failing_test_fails_cargo_test(backend: Backend) {
    let tmp = Scratch::under(Path::new("/tmp"), &format!("cargo-runner-fail-{backend:?}"));
    let krate = tmp.path().join("crate");
    copy_fixture(&krate);
    let run = cargo_test(backend, &krate, None, Form::EnvVar, &["--features", "fail"]);
    assert_eq!(run.code, 101, "{run:?}");
    let out = run.stdout_str();
    assert!(out.contains("test fails_on_purpose ... FAILED"), "{run:?}");
    assert!(out.contains("deliberate failure from the cargo-runner fixture"), "{run:?}");
    assert!(out.contains("test result: FAILED. 4 passed; 1 failed"), "{run:?}");
    assert!(run.stderr.contains("error: test failed, to rerun pass `--test inside`"), "{run:?}");
}

/// A member of a workspace in /tmp: the workspace's target directory is beside its
/// Cargo.toml, and the whole workspace is shown. The container only: the launcher
/// decides what to show the same way for both backends.
#[test]
fn a_workspace_member_in_tmp() {
    let tmp = Scratch::under(Path::new("/tmp"), "cargo-runner-workspace");
    let member = tmp.path().join("member");
    copy_fixture(&member);
    let manifest = std::fs::read_to_string(member.join("Cargo.toml")).unwrap();
    std::fs::write(member.join("Cargo.toml"), manifest.replace("\n[workspace]\n", "\n")).unwrap();
    std::fs::rename(member.join("Cargo.lock"), tmp.path().join("Cargo.lock")).unwrap();
    std::fs::write(tmp.path().join("Cargo.toml"), "[workspace]\nmembers = [\"member\"]\nresolver = \"3\"\n").unwrap();
    let run = cargo_test(Backend::Container, &member, None, Form::EnvVar, &[]);
    assert!(tmp.path().join("target/debug/cargo-runner-fixture").is_file(), "{run:?}");
    assert_inside(&run);
    // What cargo ran, again with -v: the launcher says it showed the whole workspace.
    let deps = tmp.path().join("target/debug/deps");
    let test = std::fs::read_dir(&deps).unwrap().flatten().map(|e| e.path()).find(|p| {
        let name = p.file_name().unwrap().to_string_lossy();
        name.starts_with("inside-") && !name.ends_with(".d")
    });
    let mut again = Backend::Container.command(["-v", "--"]);
    again.arg(test.expect("the test binary")).arg("--list").current_dir(&member);
    let run = output(&mut again);
    assert_eq!(run.code, 0, "{run:?}");
    let said = format!("the command's cargo workspace {} is shown read-only", tmp.path().display());
    assert!(run.stderr.contains(&said), "{run:?}");
}

on_each_backend!(
    crate_in_tmp_with_a_space_and_a_target_dir_elsewhere,
    crate_in_the_home_with_the_runner_in_its_config,
    a_failing_test_fails_cargo_test,
);
