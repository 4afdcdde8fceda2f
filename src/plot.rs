//! `--plot PATH.svg`: the three runs' training curves (loss and accuracy per epoch) with their
//! test results marked (beside it, the test accuracy per class and a sweep's accuracies), drawn with plotters' SVG backend (no font files needed: SVG text is laid
//! out by the viewer).

use crate::experiment::{Report, RunResult};
use anyhow::{anyhow, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

const COLOURS: [RGBColor; 3] = [RGBColor(31, 119, 180), RGBColor(255, 127, 14), RGBColor(44, 160, 44)];

/// The SVG document: loss on the left, accuracy on the right; lines are per-epoch training
/// figures, crosses the test results (placed at the last epoch).
pub fn curves_svg(report: &Report) -> Result<String> {
    let runs: [&RunResult; 3] = [&report.teacher, &report.distilled, &report.scratch];
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let (left, right) = root.split_horizontally(500);
        let epochs = runs.iter().map(|r| r.epochs.len()).max().unwrap_or(0).max(1);
        type Series = fn(&RunResult) -> Vec<f64>;
        type Point = fn(&RunResult) -> f64;
        let panels: [(&DrawingArea<_, _>, &str, Series, Point, SeriesLabelPosition); 2] = [
            (
                &left,
                "loss (test: cross-entropy)",
                |r| r.epochs.iter().map(|e| e.loss).collect(),
                |r| r.test_cross_entropy,
                SeriesLabelPosition::UpperRight,
            ),
            (
                &right,
                "accuracy",
                |r| r.epochs.iter().map(|e| e.accuracy).collect(),
                |r| r.test_accuracy,
                SeriesLabelPosition::LowerRight,
            ),
        ];
        for (area, title, train, test, legend_at) in panels {
            let values: Vec<f64> = runs.iter().flat_map(|r| train(r).into_iter().chain([test(r)])).collect();
            let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
            let pad = ((hi - lo) * 0.1).max(1e-3);
            let mut chart = ChartBuilder::on(area)
                .caption(title, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(32)
                .y_label_area_size(48)
                .build_cartesian_2d(0.5f64..epochs as f64 + 0.5, (lo - pad)..(hi + pad))
                .map_err(plot_error)?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .x_labels(epochs + 1)
                .x_label_formatter(&|x| format!("{x:.0}"))
                .draw()
                .map_err(plot_error)?;
            for (run, colour) in runs.iter().zip(COLOURS) {
                let points: Vec<(f64, f64)> =
                    train(run).into_iter().enumerate().map(|(i, v)| ((i + 1) as f64, v)).collect();
                line_with_points(&mut chart, points, colour, legend(run), 3)?;
                let at = (run.epochs.len().max(1) as f64, test(run));
                chart.draw_series([Cross::new(at, 7, colour.stroke_width(2))]).map_err(plot_error)?;
            }
            series_box(&mut chart, legend_at)?;
        }
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// The distilled student's training loss is the combined distillation loss, not cross-entropy.
fn legend(run: &RunResult) -> String {
    match run.name.as_str() {
        "distilled" => "distilled (training loss: combined)".into(),
        name => name.into(),
    }
}

fn plot_error<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing the plot failed: {e}")
}

/// The sweep's test accuracies: one line per alpha across the temperatures, the scratch
/// student's accuracy as a grey reference line. None without a sweep.
pub fn sweep_svg(report: &Report) -> Result<Option<String>> {
    if report.sweep.is_empty() {
        return Ok(None);
    }
    let mut alphas: Vec<f32> = report.sweep.iter().map(|p| p.alpha).collect();
    alphas.dedup();
    let temps: Vec<f64> = report.sweep.iter().map(|p| p.temperature as f64).collect();
    let (t_lo, t_hi) = temps.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
    let accs: Vec<f64> =
        report.sweep.iter().map(|p| p.result.test_accuracy).chain([report.scratch.test_accuracy]).collect();
    let (a_lo, a_hi) = accs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
    let (t_pad, a_pad) = (((t_hi - t_lo) * 0.05).max(0.5), ((a_hi - a_lo) * 0.1).max(0.005));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (640, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("distilled students: test accuracy", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(52)
            .build_cartesian_2d((t_lo - t_pad)..(t_hi + t_pad), (a_lo - a_pad)..(a_hi + a_pad))
            .map_err(plot_error)?;
        chart.configure_mesh().x_desc("temperature").draw().map_err(plot_error)?;
        let scratch = report.scratch.test_accuracy;
        chart
            .draw_series(LineSeries::new([(t_lo - t_pad, scratch), (t_hi + t_pad, scratch)], RGBColor(150, 150, 150)))
            .map_err(plot_error)?
            .label("scratch student")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], RGBColor(150, 150, 150)));
        for (i, alpha) in alphas.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let mut points: Vec<(f64, f64)> = report
                .sweep
                .iter()
                .filter(|p| p.alpha == *alpha)
                .map(|p| (p.temperature as f64, p.result.test_accuracy))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            line_with_points(&mut chart, points, colour, format!("alpha {alpha}"), 4)?;
        }
        series_box(&mut chart, SeriesLabelPosition::LowerRight)?;
        root.present().map_err(plot_error)?;
    }
    Ok(Some(svg))
}

/// A chart of f64 against f64 drawn into an SVG string.
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A labelled line through `points` with a dot of radius `dot` at each.
fn line_with_points<'a, 'b: 'a>(
    chart: &mut Chart<'a, 'b>,
    points: Vec<(f64, f64)>,
    colour: RGBColor,
    label: String,
    dot: i32,
) -> Result<()> {
    chart
        .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
        .map_err(plot_error)?
        .label(label)
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(2)));
    chart.draw_series(points.iter().map(|&p| Circle::new(p, dot, colour.filled()))).map_err(plot_error)?;
    Ok(())
}

/// The series' labels in a framed box at `position`.
fn series_box<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>, position: SeriesLabelPosition) -> Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)
}

/// Test accuracy per class of the teacher and the two students (with several runs, the first
/// run's students): a line with points per model across the ten classes.
pub fn classes_svg(report: &Report) -> Result<String> {
    let runs: [&RunResult; 3] = [&report.teacher, &report.distilled, &report.scratch];
    let names = &report.teacher.classes.names;
    let values: Vec<f64> =
        runs.iter().flat_map(|r| r.classes.accuracy.iter().copied()).filter(|v| v.is_finite()).collect();
    let lo = values.iter().copied().fold(1.0f64, f64::min);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 440)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("test accuracy per class", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(-0.5f64..names.len() as f64 - 0.5, (lo - 0.05).max(0.0)..1.0)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_labels(names.len())
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 {
                    names.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .draw()
            .map_err(plot_error)?;
        for (run, colour) in runs.iter().zip(COLOURS) {
            let points: Vec<(f64, f64)> = run
                .classes
                .accuracy
                .iter()
                .enumerate()
                .filter(|(_, v)| v.is_finite())
                .map(|(c, &v)| (c as f64, v))
                .collect();
            line_with_points(&mut chart, points, colour, run.name.clone(), 4)?;
        }
        series_box(&mut chart, SeriesLabelPosition::LowerLeft)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// Where the sweep's plot goes beside `--plot PATH.svg`: `PATH-sweep.svg`.
pub fn sweep_path(path: &std::path::Path) -> std::path::PathBuf {
    beside(path, "sweep")
}

/// Where the plot per class goes beside `--plot PATH.svg`: `PATH-classes.svg`.
pub fn classes_path(path: &std::path::Path) -> std::path::PathBuf {
    beside(path, "classes")
}

fn beside(path: &std::path::Path, what: &str) -> std::path::PathBuf {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!("{stem}-{what}.svg"))
}
