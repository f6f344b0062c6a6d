//! `--plot FILE.svg`: latency over time (p50, p99 and max per time bucket, log scale)
//! above the latency distribution (a histogram up to the 99.9th percentile), drawn with
//! plotters' SVG backend.

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::record::Point;

/// Bars of the distribution.
const BINS: usize = 60;

/// Draws the plot to `path`.
pub fn draw(path: &Path, title: &str, series: &[Point], latency: &Histogram<u64>) -> Result<()> {
    let failed = |e: &dyn std::fmt::Display| Error::io(format!("drawing {}", path.display()), e);
    let root = SVGBackend::new(path, (1000, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(&e))?;
    let (top, bottom) = root.split_vertically(420);
    over_time(&top, title, series).map_err(|e| failed(&e))?;
    distribution(&bottom, latency).map_err(|e| failed(&e))?;
    root.present().map_err(|e| failed(&e))?;
    Ok(())
}

/// A line of the over-time chart: its label, colour and value.
type Line = (&'static str, RGBColor, fn(&Point) -> u64);
type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type Drawn<'a> =
    std::result::Result<(), DrawingAreaErrorKind<<SVGBackend<'a> as DrawingBackend>::ErrorType>>;

fn over_time<'a>(area: &Area<'a>, title: &str, series: &[Point]) -> Drawn<'a> {
    let points: Vec<&Point> = series.iter().filter(|p| p.count > 0).collect();
    let t_max = series.last().map_or(1.0, |p| p.t_s).max(0.1);
    let y_max = points.iter().map(|p| p.max_us).max().unwrap_or(1).max(10) as f64 * 1.5;
    let y_min = (points.iter().map(|p| p.p50_us).min().unwrap_or(1) as f64 / 2.0).max(1.0);
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{title}: latency over time"), ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..t_max, (y_min..y_max).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("latency (µs)")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    let lines: [Line; 3] = [
        ("p50", BLUE, |p| p.p50_us),
        ("p99", RED, |p| p.p99_us),
        ("max", BLACK, |p| p.max_us),
    ];
    for (label, color, value) in lines {
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|p| (p.t_s, value(p).max(1) as f64)),
                color.stroke_width(2),
            ))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn distribution<'a>(area: &Area<'a>, latency: &Histogram<u64>) -> Drawn<'a> {
    let (cap, bins) = bins(latency);
    let tallest = bins.iter().copied().max().unwrap_or(1).max(1) as f64;
    let width = cap / BINS as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(
            "latency distribution (up to p99.9; the last bar holds the rest)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..cap, 0f64..tallest * 1.1)?;
    chart
        .configure_mesh()
        .x_desc("latency (µs)")
        .y_desc("requests")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    chart.draw_series(bins.iter().enumerate().map(|(i, count)| {
        let x = i as f64 * width;
        Rectangle::new(
            [(x, 0.0), (x + width, *count as f64)],
            BLUE.mix(0.6).filled(),
        )
    }))?;
    Ok(())
}

/// Counts in [`BINS`] equal bins from 0 to the 99.9th percentile (the last bin also
/// holds everything above); returns the upper bound and the counts.
fn bins(latency: &Histogram<u64>) -> (f64, Vec<u64>) {
    let mut counts = vec![0u64; BINS];
    if latency.is_empty() {
        return (1.0, counts);
    }
    let cap = latency.value_at_quantile(0.999).max(1) as f64;
    for v in latency.iter_recorded() {
        let value = v.value_iterated_to() as f64;
        let bin = ((value / cap * BINS as f64) as usize).min(BINS - 1);
        counts[bin] += v.count_at_value();
    }
    (cap, counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_lands_in_a_bin() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for v in 1..=1000 {
            h.record(v).unwrap();
        }
        h.record(1_000_000).unwrap();
        let (cap, counts) = bins(&h);
        assert!((999.0..1_100.0).contains(&cap), "{cap}");
        assert_eq!(counts.iter().sum::<u64>(), 1001);
    }

    #[test]
    fn a_plot_is_written() {
        let path = std::env::temp_dir().join(format!("hv-plot-{}.svg", std::process::id()));
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        h.record(120).unwrap();
        h.record(450).unwrap();
        let series = [
            Point {
                t_s: 0.1,
                count: 1,
                p50_us: 120,
                p99_us: 120,
                max_us: 120,
            },
            Point {
                t_s: 0.2,
                count: 0,
                p50_us: 0,
                p99_us: 0,
                max_us: 0,
            },
            Point {
                t_s: 0.3,
                count: 1,
                p50_us: 450,
                p99_us: 450,
                max_us: 450,
            },
        ];
        draw(&path, "ping", &series, &h).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("latency over time"));
        std::fs::remove_file(path).ok();
    }
}
