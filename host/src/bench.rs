//! `--bench N`: runs the same sandbox N times and says where the time goes, phase by
//! phase (min / median / p95 / max), with a JSON record and an SVG chart on request.
//!
//! Each run is a child `virt-sandbox --timings=json` with the same options, so every run
//! starts cold as a user's would, and the command's output goes to /dev/null.

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

/// Why the runs could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Each run is this binary again, which must be found first.
    #[error("cannot find the launcher's own binary")]
    CurrentExe(#[source] io::Error),

    #[error("cannot start run {run}")]
    StartRun {
        run: u32,
        #[source]
        source: io::Error,
    },

    /// A run ended without its `--timings=json` line: its own error says why.
    #[error("run {run} reported no timings; its stderr was:\n{stderr}")]
    NoTimings { run: u32, stderr: String },
}

pub struct BenchOptions {
    pub runs: u32,
    pub json: Option<PathBuf>,
    pub svg: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct RunRecord {
    pub wall_ms: f64,
    pub exit: i32,
    /// (phase, took_ms) in order.
    pub phases: Vec<(String, f64)>,
}

/// The raw arguments without the `--bench*` options (only those before the command).
pub fn child_args(raw: &[OsString], command_len: usize) -> Vec<OsString> {
    let opts_end = raw.len().saturating_sub(command_len);
    let mut out = Vec::new();
    let mut i = 1;
    while i < opts_end {
        let a = raw[i].to_string_lossy();
        if a == "--bench" || a == "--bench-json" || a == "--bench-svg" {
            i += 2;
            continue;
        }
        if a.starts_with("--bench=")
            || a.starts_with("--bench-json=")
            || a.starts_with("--bench-svg=")
            || a.starts_with("--timings")
        {
            i += 1;
            continue;
        }
        out.push(raw[i].clone());
        i += 1;
    }
    out.push("--timings=json".into());
    out.extend(raw[opts_end..].iter().cloned());
    // --timings=json must come before the command: move the command (and a `--`) last.
    let cmd: Vec<OsString> = out.drain(out.len() - command_len..).collect();
    let ddash = out.iter().position(|a| a == "--");
    if let Some(p) = ddash {
        out.remove(p);
        out.push("--".into());
    }
    out.extend(cmd);
    out
}

pub fn run(opts: &BenchOptions, args: &[OsString]) -> Result<Vec<RunRecord>, Error> {
    let exe = std::env::current_exe().map_err(Error::CurrentExe)?;
    let mut records = Vec::new();
    for i in 0..opts.runs {
        let start = Instant::now();
        let out = Command::new(&exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|source| Error::StartRun { run: i + 1, source })?;
        let wall_ms = start.elapsed().as_secs_f64() * 1000.0;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let line = stderr
            .lines()
            .rev()
            .find(|l| l.starts_with("{\"timings\""))
            .ok_or_else(|| Error::NoTimings { run: i + 1, stderr: stderr.trim_end().into() })?;
        records.push(RunRecord { wall_ms, exit: out.status.code().unwrap_or(-1), phases: parse_phases(line) });
    }
    Ok(records)
}

/// Reads the `phase`/`took_ms` pairs of one `--timings=json` line.
fn parse_phases(line: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for part in line.split("{\"phase\":").skip(1) {
        let Some(name_end) = find_string_end(part) else { continue };
        let name = part[1..name_end].replace("\\\"", "\"").replace("\\\\", "\\");
        let took = part
            .split("\"took_ms\":")
            .nth(1)
            .and_then(|t| t.split(['}', ',']).next())
            .and_then(|t| t.parse::<f64>().ok())
            .unwrap_or(0.0);
        out.push((name, took));
    }
    out
}

fn find_string_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// (min, median, p95, max) of `v`.
pub fn stats(v: &[f64]) -> (f64, f64, f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0, 0.0, 0.0);
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 };
    let p95 = s[((n as f64 * 0.95).ceil() as usize).clamp(1, n) - 1];
    (s[0], median, p95, s[n - 1])
}

/// Phase names in the order of their first appearance.
pub fn phase_names(records: &[RunRecord]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for r in records {
        for (n, _) in &r.phases {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
    }
    names
}

pub fn report(records: &[RunRecord]) -> String {
    let mut out = format!("virt-sandbox bench: {} runs (ms)\n", records.len());
    out.push_str(&format!("  {:<42} {:>9} {:>9} {:>9} {:>9}\n", "phase", "min", "median", "p95", "max"));
    for name in phase_names(records) {
        let v: Vec<f64> =
            records.iter().filter_map(|r| r.phases.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)).collect();
        let (a, b, c, d) = stats(&v);
        out.push_str(&format!("  {name:<42} {a:>9.1} {b:>9.1} {c:>9.1} {d:>9.1}\n"));
    }
    let walls: Vec<f64> = records.iter().map(|r| r.wall_ms).collect();
    let (a, b, c, d) = stats(&walls);
    out.push_str(&format!("  {:<42} {a:>9.1} {b:>9.1} {c:>9.1} {d:>9.1}\n", "wall (whole launcher)"));
    let failed = records.iter().filter(|r| r.exit != records[0].exit).count();
    if failed > 0 {
        out.push_str(&format!("  note: {failed} runs exited differently from the first ({})\n", records[0].exit));
    }
    out
}

pub fn json(records: &[RunRecord]) -> String {
    let runs: Vec<String> = records
        .iter()
        .map(|r| {
            let phases: Vec<String> =
                r.phases.iter().map(|(n, t)| format!("{{\"phase\":{n:?},\"took_ms\":{t:.3}}}")).collect();
            format!("{{\"wall_ms\":{:.3},\"exit\":{},\"phases\":[{}]}}", r.wall_ms, r.exit, phases.join(","))
        })
        .collect();
    let summary: Vec<String> = phase_names(records)
        .into_iter()
        .chain(std::iter::once("wall".to_string()))
        .map(|name| {
            let v: Vec<f64> = if name == "wall" {
                records.iter().map(|r| r.wall_ms).collect()
            } else {
                records.iter().filter_map(|r| r.phases.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)).collect()
            };
            let (a, b, c, d) = stats(&v);
            format!("{{\"phase\":{name:?},\"min\":{a:.3},\"median\":{b:.3},\"p95\":{c:.3},\"max\":{d:.3}}}")
        })
        .collect();
    format!("{{\"runs\":[{}],\"summary\":[{}]}}\n", runs.join(","), summary.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_options_are_removed_and_timings_added_before_the_command() {
        let raw: Vec<OsString> =
            ["virt-sandbox", "--bench", "5", "-c", "lxc:///", "--bench-svg=x.svg", "--", "ls", "-l"]
                .iter()
                .map(OsString::from)
                .collect();
        let a = child_args(&raw, 2);
        assert_eq!(a, ["-c", "lxc:///", "--timings=json", "--", "ls", "-l"].map(OsString::from));
        let raw: Vec<OsString> = ["virt-sandbox", "--bench=3", "true"].iter().map(OsString::from).collect();
        assert_eq!(child_args(&raw, 1), ["--timings=json", "true"].map(OsString::from));
    }

    #[test]
    fn phases_parse_from_the_json_line() {
        let line = r#"{"timings":[{"phase":"launcher setup","end_ms":0.5,"took_ms":0.5},{"phase":"a \"q\"","end_ms":2.0,"took_ms":1.5}],"peak_rss_kib":10}"#;
        assert_eq!(parse_phases(line), vec![("launcher setup".to_string(), 0.5), ("a \"q\"".to_string(), 1.5)]);
    }

    #[test]
    fn statistics() {
        assert_eq!(stats(&[3.0, 1.0, 2.0]), (1.0, 2.0, 3.0, 3.0));
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(stats(&v), (1.0, 10.5, 19.0, 20.0));
    }
}
