//! `virt-sandbox`: CLI -> validated spec -> backend -> exit status, nothing else.

use clap::Parser;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use virt_sandbox::backend;
use virt_sandbox::cli::{Cli, TimingsFormat};
use virt_sandbox::exit::{describe, Outcome, SANDBOX_FAILED};
use virt_sandbox::identity::{current_groups, HostUsers};
use virt_sandbox::spec::{self, Caller};
use virt_sandbox::timings::Timeline;
use virt_sandbox::{bench, bench_chart};

/// Why the launcher stops before a sandbox has an outcome; printed once, by `main`.
#[derive(Debug, thiserror::Error)]
enum Error {
    /// A directory that is gone (or unreadable) must not quietly become `/`.
    #[error("the current directory cannot be read; run from an existing directory")]
    CurrentDir(#[source] std::io::Error),

    /// A usage error; the message names the option.
    #[error(transparent)]
    Spec(spec::Error),

    #[error("--bench")]
    Bench(#[source] bench::Error),

    #[error("--bench-json {}", .path.display())]
    WriteBenchJson {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The message names `--bench-svg` and the file.
    #[error(transparent)]
    DrawBenchChart(bench_chart::Error),
}

/// Writes a line to stderr. A reader of our stderr that went away (`2>&1 | head`) must
/// not turn the command's exit status into a panic's 101: what cannot be said is dropped.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// As [`say!`], without the newline.
macro_rules! say_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

fn main() -> ExitCode {
    let timeline = Timeline::new(std::time::Instant::now());
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
            say!("virt-sandbox: {} (see virt-sandbox --help)", first.trim_start_matches("error: "));
            return ExitCode::from(SANDBOX_FAILED);
        }
    };
    let result = match cli.bench {
        Some(runs) => bench(&cli, runs).map(|()| ExitCode::SUCCESS),
        None => run(cli, timeline),
    };
    result.unwrap_or_else(|e| {
        say!("virt-sandbox: {}", describe(&e));
        ExitCode::from(SANDBOX_FAILED)
    })
}

/// One sandbox: the spec, the backend's run, the outcome said and mapped to a status.
fn run(cli: Cli, mut timeline: Timeline) -> Result<ExitCode, Error> {
    let cwd = std::env::current_dir().map_err(Error::CurrentDir)?;
    let caller = Caller {
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
        groups: current_groups(),
        env: std::env::vars_os().collect(),
        cwd,
        pid: std::process::id(),
        users: &HostUsers,
        host_memory: host_memory(),
        terminal: virt_sandbox::terminal::Facts::of_this_process(),
    };
    let spec = spec::build(cli, &caller).map_err(Error::Spec)?;
    // Notices (kernel fallback, TCG) go to a terminal or with -v only: in a pipeline the
    // launcher's stderr should be the command's.
    let show_notices = spec.verbose || std::io::stderr().is_terminal();
    let notice = |msg: &str| {
        if show_notices {
            say!("virt-sandbox: {msg}");
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
        say!("{msg}");
    }
    match spec.timings {
        Some(TimingsFormat::Text) => say_raw!("{}", timeline.text_with_rss()),
        Some(TimingsFormat::Json) => say!("{}", timeline.json()),
        None => {}
    }
    Ok(ExitCode::from(outcome.code()))
}

/// The host's physical memory in bytes (`MemTotal`), None if /proc does not say.
fn host_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    kib.checked_mul(1024)
}

/// `--bench N`: the same invocation N times in child launchers.
fn bench(cli: &Cli, runs: u32) -> Result<(), Error> {
    let raw: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let args = bench::child_args(&raw, cli.command.len());
    let opts = bench::BenchOptions { runs, json: cli.bench_json.clone(), svg: cli.bench_svg.clone() };
    let records = bench::run(&opts, &args).map_err(Error::Bench)?;
    say_raw!("{}", bench::report(&records));
    if let Some(path) = &opts.json {
        std::fs::write(path, bench::json(&records))
            .map_err(|source| Error::WriteBenchJson { path: path.clone(), source })?;
    }
    if let Some(path) = &opts.svg {
        bench_chart::write(&records, path).map_err(Error::DrawBenchChart)?;
    }
    Ok(())
}
