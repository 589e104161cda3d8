//! `virt-sandbox`: CLI -> validated spec -> backend -> exit status, nothing else.

use clap::Parser;
use std::io::IsTerminal;
use std::process::ExitCode;
use virt_sandbox::backend;
use virt_sandbox::cli::{Cli, TimingsFormat};
use virt_sandbox::exit::{Outcome, SANDBOX_FAILED};
use virt_sandbox::identity::{current_groups, HostUsers};
use virt_sandbox::spec::{self, Caller};
use virt_sandbox::timings::Timeline;

fn main() -> ExitCode {
    let mut timeline = Timeline::new(std::time::Instant::now());
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line, like every other usage error: clap's first line without its
            // "error: " prefix, and where to look for more.
            let text = e.render().to_string();
            let first = text.split("\n\n").next().unwrap_or("invalid arguments");
            let first = first.split_whitespace().collect::<Vec<_>>().join(" ");
            eprintln!("virt-sandbox: {} (see virt-sandbox --help)", first.trim_start_matches("error: "));
            return ExitCode::from(SANDBOX_FAILED);
        }
    };
    if let Some(runs) = cli.bench {
        return bench(&cli, runs);
    }
    // A directory that is gone (or unreadable) must not quietly become `/`.
    let cwd = match std::env::current_dir() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("virt-sandbox: the current directory cannot be read ({e}): run from an existing directory");
            return ExitCode::from(SANDBOX_FAILED);
        }
    };
    let caller = Caller {
        // SAFETY: getuid/getgid cannot fail.
        uid: unsafe { libc::getuid() },
        // SAFETY: as above.
        gid: unsafe { libc::getgid() },
        groups: current_groups(),
        env: std::env::vars_os().collect(),
        cwd,
        pid: std::process::id(),
        users: &HostUsers,
        host_memory: host_memory(),
    };
    let spec = match spec::build(cli, &caller) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("virt-sandbox: {}", virt_sandbox::exit::describe(&e));
            return ExitCode::from(SANDBOX_FAILED);
        }
    };
    // Notices (kernel fallback, TCG) go to a terminal or with -v only: in a pipeline the
    // launcher's stderr should be the command's.
    let show_notices = spec.verbose || std::io::stderr().is_terminal();
    let notice = |msg: &str| {
        if show_notices {
            eprintln!("virt-sandbox: {msg}");
        }
    };
    for n in &spec.notices {
        if spec.verbose || (show_notices && !n.verbose_only) {
            notice(&n.text);
        }
    }
    timeline.mark("launcher setup");
    let mut cx = backend::Context { notice: &notice, timeline: &mut timeline };
    let outcome: Outcome = backend::run(backend::of(&spec), &spec, &mut cx);
    let argv0 = spec.argv.first().map(|a| a.to_string_lossy().into_owned()).unwrap_or_default();
    if let Some(msg) = outcome.message(&argv0) {
        eprintln!("{msg}");
    }
    match spec.timings {
        Some(TimingsFormat::Text) => eprint!("{}", timeline.text_with_rss()),
        Some(TimingsFormat::Json) => eprintln!("{}", timeline.json()),
        None => {}
    }
    ExitCode::from(outcome.code())
}

/// The host's physical memory in bytes (`MemTotal`), None if /proc does not say.
fn host_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    kib.checked_mul(1024)
}

/// `--bench N`: the same invocation N times in child launchers.
fn bench(cli: &Cli, runs: u32) -> ExitCode {
    use virt_sandbox::{bench, bench_chart};
    let raw: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let args = bench::child_args(&raw, cli.command.len());
    let opts = bench::BenchOptions { runs, json: cli.bench_json.clone(), svg: cli.bench_svg.clone() };
    let records = match bench::run(&opts, &args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("virt-sandbox: --bench: {e}");
            return ExitCode::from(SANDBOX_FAILED);
        }
    };
    eprint!("{}", bench::report(&records));
    if let Some(path) = &opts.json {
        if let Err(e) = std::fs::write(path, bench::json(&records)) {
            eprintln!("virt-sandbox: --bench-json {}: {e}", path.display());
            return ExitCode::from(SANDBOX_FAILED);
        }
    }
    if let Some(path) = &opts.svg {
        if let Err(e) = bench_chart::write(&records, path) {
            eprintln!("virt-sandbox: {e}");
            return ExitCode::from(SANDBOX_FAILED);
        }
    }
    ExitCode::SUCCESS
}
