//! `--plot PATH.svg`: the three runs' training curves (loss and accuracy per epoch) with their
//! test results marked (beside it, the test accuracy per class and a sweep's accuracies), drawn with plotters' SVG backend (no font files needed: SVG text is laid
//! out by the viewer).

use super::compare::{points, Regime};
use super::metrics::Report;
use super::records::RunResult;
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

/// `kd-wgpu compare --plot`: a row per regime. Left, the paired difference of test accuracy
/// (distilled - scratch, points) with its 95% interval: green where the interval is above
/// zero, red below, grey across it. Right, the same per class, a cell per class: green or red
/// as the difference, strong where its interval is clear of zero and faint where not.
pub fn compare_svg(regimes: &[Regime]) -> Result<String> {
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    const ROW: u32 = 44;
    let n = regimes.len() as f64;
    let classes: Vec<&str> =
        regimes.first().map(|r| r.statistics.per_class.iter().map(|c| c.class.as_str()).collect()).unwrap_or_default();
    // Each panel: the regimes' rows from the top, and a header row above them.
    let row_top = |i: usize| n - i as f64;
    let (helped, hurt, neither) = (RGBColor(44, 140, 44), RGBColor(200, 40, 40), RGBColor(120, 120, 120));
    let colour_of = |(lo, hi): (f64, f64)| {
        if lo > 0.0 {
            helped
        } else if hi < 0.0 {
            hurt
        } else {
            neither
        }
    };
    let (lo, hi) = regimes.iter().fold((0.0f64, 0.0f64), |(l, h), r| {
        (l.min(100.0 * r.statistics.difference_ci95.0), h.max(100.0 * r.statistics.difference_ci95.1))
    });
    let pad = ((hi - lo) * 0.05).max(0.1);
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (1240, 110 + ROW * (regimes.len() as u32 + 1))).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let (left, right) = root.split_horizontally(600);
        let build = |area, caption: &str, x: std::ops::Range<f64>| {
            ChartBuilder::on(area)
                .caption(caption, ("sans-serif", 17))
                .margin(12)
                .x_label_area_size(40)
                .build_cartesian_2d(x, 0.0..n + 1.0)
                .map_err(plot_error)
        };

        let mut forest =
            build(&left, "distilled - scratch, test accuracy (points, 95% interval)", (lo - pad)..(hi + pad))?;
        forest
            .configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .x_max_light_lines(0)
            .x_desc("points")
            .draw()
            .map_err(plot_error)?;
        forest
            .draw_series([PathElement::new([(0.0, 0.0), (0.0, n)], RGBColor(90, 90, 90).stroke_width(1))])
            .map_err(plot_error)?;
        let label_style = TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Left, VPos::Top));
        for (i, r) in regimes.iter().enumerate() {
            let st = &r.statistics;
            let (l, h) = (100.0 * st.difference_ci95.0, 100.0 * st.difference_ci95.1);
            let (top, y) = (row_top(i), row_top(i) - 0.68);
            let colour = colour_of(st.difference_ci95);
            let text = format!(
                "{}: {} [{}, {}]",
                r.label,
                points(st.difference_mean),
                points(st.difference_ci95.0),
                points(st.difference_ci95.1)
            );
            forest
                .draw_series([Text::new(text, (lo - pad * 0.8, top - 0.08), label_style.clone())])
                .map_err(plot_error)?;
            forest.draw_series([PathElement::new([(l, y), (h, y)], colour.stroke_width(3))]).map_err(plot_error)?;
            forest
                .draw_series([Circle::new((100.0 * st.difference_mean, y), 5, colour.filled())])
                .map_err(plot_error)?;
        }

        let mut cells =
            build(&right, "per class (points; faint where the 95% interval holds zero)", 0.0..classes.len() as f64)?;
        cells.configure_mesh().disable_mesh().disable_axes().draw().map_err(plot_error)?;
        let centred =
            |size| TextStyle::from(("sans-serif", size).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
        for (c, name) in classes.iter().enumerate() {
            // Two lines where the name has a break ("T-shirt/top", "Ankle boot"), to fit the column.
            let (first, second) = match name.find(['/', ' ']) {
                Some(at) => (&name[..=at], name[at + 1..].trim()),
                None => (*name, ""),
            };
            let x = c as f64 + 0.5;
            for (line, y) in [(first, n + 0.66), (second, n + 0.3)] {
                cells.draw_series([Text::new(line.trim().to_string(), (x, y), centred(12))]).map_err(plot_error)?;
            }
        }
        for (i, r) in regimes.iter().enumerate() {
            let top = row_top(i);
            for (c, class) in r.statistics.per_class.iter().enumerate() {
                let v = 100.0 * class.difference_mean;
                let (x0, x1, y0, y1) = (c as f64 + 0.03, c as f64 + 0.97, top - 0.94, top - 0.06);
                if !v.is_finite() {
                    // A class without test images (a --test-limit slice) has no accuracy.
                    let fill = RGBColor(235, 235, 235).filled();
                    cells.draw_series([Rectangle::new([(x0, y0), (x1, y1)], fill)]).map_err(plot_error)?;
                    let text = Text::new("n/a", (c as f64 + 0.5, top - 0.5), centred(12));
                    cells.draw_series([text]).map_err(plot_error)?;
                    continue;
                }
                let clear = class.difference_ci95.0 > 0.0 || class.difference_ci95.1 < 0.0;
                // Saturates at 10 points; a difference whose interval holds zero is drawn at a third.
                let strength = (v.abs() / 10.0).min(1.0) * if clear { 1.0 } else { 0.33 };
                let base = if v >= 0.0 { helped } else { hurt };
                let fill = base.mix(strength.max(0.02));
                cells.draw_series([Rectangle::new([(x0, y0), (x1, y1)], fill.filled())]).map_err(plot_error)?;
                let ink = if !clear {
                    RGBColor(110, 110, 110)
                } else if strength > 0.55 {
                    WHITE
                } else {
                    BLACK
                };
                cells
                    .draw_series([Text::new(format!("{v:+.1}"), (c as f64 + 0.5, top - 0.5), centred(12).color(&ink))])
                    .map_err(plot_error)?;
            }
        }
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}
