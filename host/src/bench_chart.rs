//! The SVG for `--bench-svg`: each run's phases stacked (where the time goes, and how
//! steady it is), and the distribution of whole-run wall times beneath.
//!
//! Made to be read at a glance: runs are numbered 1 to N on the axis, the legend stands
//! beside the plot (never over the bars), and each phase's colour says whose time it
//! is — blues for the launcher, orange for the kernel's boot, greens for init, purples
//! for the command itself — with a shade of its own within that family.

use crate::bench::{phase_names, stats, RunRecord};
use plotters::coord::ranged1d::SegmentValue;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::{Path, PathBuf};

/// Drawing errors come from plotters and its SVG backend, in several types.
type DrawError = Box<dyn std::error::Error + Send + Sync>;

/// The chart could not be drawn or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--bench-svg {}: drawing the chart", .path.display())]
    Draw {
        path: PathBuf,
        #[source]
        source: DrawError,
    },

    #[error("--bench-svg {}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub fn write(records: &[RunRecord], path: &Path) -> Result<(), Error> {
    let svg = svg(records).map_err(|source| Error::Draw { path: path.into(), source })?;
    std::fs::write(path, svg).map_err(|source| Error::Write { path: path.into(), source })
}

/// Whose time a phase is: what its colour family says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// The launcher's own work, and its waits for the helpers it starts (QEMU,
    /// virtiofsd, the container's clone) and for the sandbox to go.
    Launcher,
    /// A VM's kernel, from QEMU's start to init's first instruction.
    KernelBoot,
    /// init's phases, up to the command and after it.
    Init,
    /// The command: its exec (loading included) and its run.
    Command,
    /// A phase this chart does not know.
    Other,
}

const FAMILIES: [Family; 5] = [Family::Launcher, Family::KernelBoot, Family::Init, Family::Command, Family::Other];

impl Family {
    /// `vm`: the runs booted a kernel, whose boot ends when init starts; a container's
    /// init starts straight from the launcher's clone.
    fn of(phase: &str, vm: bool) -> Family {
        match phase {
            "guest: init started" if vm => Family::KernelBoot,
            "guest: command started" | "guest: command exited" => Family::Command,
            p if p.starts_with("guest: ") => Family::Init,
            "launcher setup"
            | "kernel, accelerator and devices chosen"
            | "kernel image ready"
            | "QEMU spawned"
            | "virtiofsd started"
            | "QEMU connected"
            | "control channel connected"
            | "init and seccomp programs ready"
            | "namespaces created, init started"
            | "exit status received"
            | "sandbox gone" => Family::Launcher,
            p if p.starts_with("initrd") => Family::Launcher,
            _ => Family::Other,
        }
    }

    fn title(self, vm: bool) -> &'static str {
        match self {
            Family::Launcher if vm => "launcher (with QEMU's and virtiofsd's start)",
            Family::Launcher => "launcher (with the container's creation)",
            Family::KernelBoot => "kernel boot",
            Family::Init => "init",
            Family::Command => "the command",
            Family::Other => "other",
        }
    }

    /// (hue, saturation) of the family; its members differ in lightness.
    fn hue(self) -> (f64, f64) {
        match self {
            Family::Launcher => (0.60, 0.70),
            Family::KernelBoot => (0.07, 0.85),
            Family::Init => (0.35, 0.60),
            Family::Command => (0.79, 0.55),
            Family::Other => (0.0, 0.0),
        }
    }

    /// The colour of the `nth` member of this family: lightness spread by the golden
    /// ratio from a middle tone, so that members next to each other in a stack differ
    /// most and a family of one is its plain colour.
    fn shade(self, nth: usize) -> HSLColor {
        let (h, s) = self.hue();
        let t = (0.5 + nth as f64 * 0.618_034).fract();
        HSLColor(h + (t - 0.5) * 0.04, s, 0.30 + 0.42 * t)
    }

    /// The family's heading in the legend: its darkest shade, readable as text.
    fn ink(self) -> HSLColor {
        let (h, s) = self.hue();
        HSLColor(h, s, 0.28)
    }
}

/// Each phase (in the order of `names`) with its family and colour.
fn palette(names: &[String], vm: bool) -> Vec<(Family, HSLColor)> {
    let mut seen = [0usize; FAMILIES.len()];
    names
        .iter()
        .map(|n| {
            let f = Family::of(n, vm);
            let i = FAMILIES.iter().position(|x| *x == f).unwrap_or(FAMILIES.len() - 1);
            seen[i] += 1;
            (f, f.shade(seen[i] - 1))
        })
        .collect()
}

const SIZE: (u32, u32) = (1200, 780);
const TOP: u32 = 490;
/// The legend's column, right of the plot.
const LEGEND_W: u32 = 340;

fn svg(records: &[RunRecord]) -> Result<String, DrawError> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let (top, bottom) = root.split_vertically(TOP);
        let (plot, legend) = top.split_horizontally(SIZE.0 - LEGEND_W);
        phases(records, &plot, &legend)?;
        walls(records, &bottom)?;
        root.present()?;
    }
    Ok(out)
}

fn took(r: &RunRecord, name: &str) -> Option<f64> {
    r.phases.iter().find(|(p, _)| p == name).map(|(_, t)| *t)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

fn phases(records: &[RunRecord], plot: &Area, legend: &Area) -> Result<(), DrawError> {
    let names = phase_names(records);
    let vm = names.iter().any(|n| n.starts_with("QEMU"));
    let colours = palette(&names, vm);
    let n = records.len().max(1) as u32;
    let total = |r: &RunRecord| r.phases.iter().map(|(_, t)| t).sum::<f64>();
    let ymax = records.iter().map(total).fold(1.0, f64::max) * 1.05;

    // Runs are whole numbers: one segment each, labelled at its middle.
    let mut chart = ChartBuilder::on(plot)
        .caption("virt-sandbox: phases of each run", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d((1u32..n).into_segmented(), 0f64..ymax)?;
    let run_label = |v: &SegmentValue<u32>| match v {
        SegmentValue::Exact(i) | SegmentValue::CenterOf(i) => i.to_string(),
        SegmentValue::Last => String::new(),
    };
    chart
        .configure_mesh()
        .x_desc("run")
        .y_desc("milliseconds")
        .disable_x_mesh()
        .x_labels(n.min(25) as usize)
        .x_label_formatter(&run_label)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    let gap = (chart.plotting_area().dim_in_pixel().0 as f64 / n as f64 * 0.12) as u32;
    for (pi, name) in names.iter().enumerate() {
        let colour = colours[pi].1.filled();
        let bars = records.iter().zip(1u32..).filter_map(|(r, run)| {
            let took = took(r, name)?;
            let base: f64 = names[..pi].iter().filter_map(|b| self::took(r, b)).sum();
            let right = if run < n { SegmentValue::Exact(run + 1) } else { SegmentValue::Last };
            let mut bar = Rectangle::new([(SegmentValue::Exact(run), base), (right, base + took)], colour);
            bar.set_margin(0, 0, gap, gap);
            Some(bar)
        });
        chart.draw_series(bars)?;
    }
    draw_legend(records, &names, &colours, vm, legend)
}

/// Beside the plot: the families in order, each phase under its own with its median.
fn draw_legend(
    records: &[RunRecord],
    names: &[String],
    colours: &[(Family, HSLColor)],
    vm: bool,
    area: &Area,
) -> Result<(), DrawError> {
    let families: Vec<Family> = FAMILIES.into_iter().filter(|f| colours.iter().any(|(g, _)| g == f)).collect();
    // Fit every line into the column: smaller steps for a long list.
    let lines = (names.len() + families.len()) as i32;
    let step = ((TOP as i32 - 60) / lines.max(1)).clamp(10, 16);
    let (x, mut y) = (8, 48);
    // Each phase's median, right-aligned in a column of its own.
    let right = area.dim_in_pixel().0 as i32 - 12;
    let figure = TextStyle::from(("sans-serif", 11).into_font()).pos(Pos::new(HPos::Right, VPos::Top));
    area.draw(&Text::new("median", (right, y - 18), figure.clone()))?;
    for family in families {
        let heading = ("sans-serif", 13).into_font().style(FontStyle::Bold).color(&family.ink());
        area.draw(&Text::new(family.title(vm), (x, y), heading))?;
        y += step + 2;
        for (name, (_, colour)) in names.iter().zip(colours).filter(|(_, (f, _))| *f == family) {
            let v: Vec<f64> = records.iter().filter_map(|r| took(r, name)).collect();
            area.draw(&Rectangle::new([(x + 4, y + 1), (x + 16, y + 11)], colour.filled()))?;
            area.draw(&Text::new(name.as_str(), (x + 22, y), ("sans-serif", 11).into_font()))?;
            area.draw(&Text::new(ms(stats(&v).1), (right, y), figure.clone()))?;
            y += step;
        }
        y += 4;
    }
    Ok(())
}

/// A median for the legend: whole milliseconds, tenths below 10.
fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.0} ms")
    }
}

/// Distribution of wall times: a histogram with the median marked.
fn walls(records: &[RunRecord], area: &Area) -> Result<(), DrawError> {
    let walls: Vec<f64> = records.iter().map(|r| r.wall_ms).collect();
    let (min, median, p95, max) = stats(&walls);
    let bins = 20usize;
    let lo = min.floor();
    let width = ((max - lo) / bins as f64).max(0.5);
    let mut counts = vec![0u32; bins];
    for w in &walls {
        counts[(((w - lo) / width) as usize).min(bins - 1)] += 1;
    }
    let cmax = counts.iter().copied().max().unwrap_or(1) + 1;
    let mut hist = ChartBuilder::on(area)
        .caption(format!("wall time per run: median {median:.0} ms (red), p95 {p95:.0} ms"), ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(lo..lo + width * bins as f64, 0u32..cmax)?;
    hist.configure_mesh()
        .x_desc("milliseconds")
        .y_desc("runs")
        .disable_x_mesh()
        .x_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    hist.draw_series(counts.iter().enumerate().map(|(i, c)| {
        let x0 = lo + i as f64 * width;
        Rectangle::new([(x0 + width * 0.05, 0), (x0 + width * 0.95, *c)], RGBColor(120, 120, 140).filled())
    }))?;
    // Named in the caption: a legend box would cover the bars at its corner.
    hist.draw_series(std::iter::once(PathElement::new(vec![(median, 0), (median, cmax)], RED.stroke_width(2))))?;
    Ok(())
}

#[cfg(test)]
#[path = "bench_chart_tests.rs"]
mod tests;
