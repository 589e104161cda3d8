//! The SVG for `--bench-svg`: each run's phases stacked (where the time goes, and how
//! steady it is), and the distribution of whole-run wall times beneath.

use crate::bench::{phase_names, stats, RunRecord};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// Drawing errors come from plotters and its SVG backend, in several types.
type DrawError = Box<dyn std::error::Error + Send + Sync>;

/// The chart could not be drawn or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--bench-svg {}", .path.display())]
    Draw {
        path: PathBuf,
        #[source]
        source: DrawError,
    },
}

pub fn write(records: &[RunRecord], path: &Path) -> Result<(), Error> {
    draw(records, path).map_err(|source| Error::Draw { path: path.into(), source })
}

fn draw(records: &[RunRecord], path: &Path) -> Result<(), DrawError> {
    let root = SVGBackend::new(path, (1100, 760)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(480);
    let names = phase_names(records);
    let n = records.len().max(1);
    let total = |r: &RunRecord| r.phases.iter().map(|(_, t)| t).sum::<f64>();
    let ymax = records.iter().map(total).fold(1.0, f64::max) * 1.05;

    let mut chart = ChartBuilder::on(&top)
        .caption("virt-sandbox: phases of each run", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .right_y_label_area_size(10)
        .build_cartesian_2d(0f64..n as f64, 0f64..ymax)?;
    chart.configure_mesh().x_desc("run").y_desc("milliseconds").disable_x_mesh().draw()?;
    for (pi, name) in names.iter().enumerate() {
        let color = Palette99::pick(pi).to_rgba();
        let bars: Vec<Rectangle<(f64, f64)>> = records
            .iter()
            .enumerate()
            .filter_map(|(ri, r)| {
                let took = r.phases.iter().find(|(p, _)| p == name)?.1;
                let base: f64 =
                    names[..pi].iter().filter_map(|b| r.phases.iter().find(|(p, _)| p == b).map(|(_, t)| *t)).sum();
                Some(Rectangle::new([(ri as f64 + 0.12, base), (ri as f64 + 0.88, base + took)], color.filled()))
            })
            .collect();
        chart
            .draw_series(bars)?
            .label(name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 11))
        .draw()?;

    // Distribution of wall times: a histogram with the median marked.
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
    let mut hist = ChartBuilder::on(&bottom)
        .caption(format!("wall time per run: median {median:.0} ms, p95 {p95:.0} ms"), ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(lo..lo + width * bins as f64, 0u32..cmax)?;
    hist.configure_mesh().x_desc("milliseconds").y_desc("runs").disable_x_mesh().draw()?;
    hist.draw_series(counts.iter().enumerate().map(|(i, c)| {
        let x0 = lo + i as f64 * width;
        Rectangle::new([(x0 + width * 0.05, 0), (x0 + width * 0.95, *c)], BLUE.mix(0.6).filled())
    }))?;
    hist.draw_series(std::iter::once(PathElement::new(vec![(median, 0), (median, cmax)], RED.stroke_width(2))))?
        .label("median")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 12, y)], RED.stroke_width(2)));
    hist.configure_series_labels().position(SeriesLabelPosition::UpperRight).border_style(BLACK.mix(0.3)).draw()?;
    root.present()?;
    Ok(())
}
