//! The closing report: a finished experiment's metrics rendered as Markdown tables, so that
//! they paste into notes as they are.

use super::metrics::Report;
use super::statistics::Statistics;
use crate::config::{DistillTeacher, DistillTerm};
use comfy_table::{presets, CellAlignment, Table};

/// A Markdown table with `header`; columns after the first are right-aligned numbers.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_preset(presets::ASCII_MARKDOWN).set_header(header.to_vec());
    for row in rows {
        t.add_row(row);
    }
    for column in t.column_iter_mut().skip(1) {
        column.set_cell_alignment(CellAlignment::Right);
    }
    format!("{t}\n")
}

impl Report {
    /// Test accuracy of the sweep's students: alphas down, temperatures across.
    fn render_sweep(&self) -> String {
        let mut alphas: Vec<f32> = self.sweep.iter().map(|p| p.alpha).collect();
        let mut temps: Vec<f32> = self.sweep.iter().map(|p| p.temperature).collect();
        alphas.dedup();
        temps.sort_by(f32::total_cmp);
        temps.dedup();
        let header: Vec<String> =
            std::iter::once("alpha".to_string()).chain(temps.iter().map(|t| format!("T={t}"))).collect();
        let rows = alphas
            .iter()
            .map(|a| {
                let cells =
                    temps.iter().map(|t| match self.sweep.iter().find(|p| p.alpha == *a && p.temperature == *t) {
                        Some(p) => format!("{:.4}", p.result.test_accuracy),
                        None => "-".into(),
                    });
                std::iter::once(a.to_string()).chain(cells).collect()
            })
            .collect();
        let header: Vec<&str> = header.iter().map(String::as_str).collect();
        format!(
            "\nSweep: test accuracy of distilled students (scratch: {:.4})\n{}",
            self.scratch.test_accuracy,
            table(&header, rows)
        )
    }

    /// Test accuracy per class of the teacher and the students, and distilled - scratch (over
    /// several runs: the students' means and the paired difference with its 95% interval).
    fn render_classes(&self) -> String {
        let after = self.teacher_after_distillation.as_ref();
        let mut header = vec!["class", "teacher"];
        if after.is_some() {
            header.push("teacher after");
        }
        header.extend(["distilled", "scratch", "distilled - scratch"]);
        if self.statistics.is_some() {
            header.push("95% interval");
        }
        let rows = (0..self.teacher.classes.names.len())
            .map(|c| {
                let mut row =
                    vec![self.teacher.classes.names[c].clone(), format!("{:.4}", self.teacher.classes.accuracy[c])];
                if let Some(a) = after {
                    row.push(format!("{:.4}", a.classes.accuracy[c]));
                }
                match &self.statistics {
                    None => {
                        let (d, s) = (self.distilled.classes.accuracy[c], self.scratch.classes.accuracy[c]);
                        row.extend([format!("{d:.4}"), format!("{s:.4}"), format!("{:+.4}", d - s)]);
                    }
                    Some(st) => {
                        let k = &st.per_class[c];
                        row.extend([
                            format!("{:.4}", k.distilled_mean),
                            format!("{:.4}", k.scratch_mean),
                            format!("{:+.4}", k.difference_mean),
                            format!("[{:+.4}, {:+.4}]", k.difference_ci95.0, k.difference_ci95.1),
                        ]);
                    }
                }
                row
            })
            .collect();
        let over = match &self.statistics {
            None => String::new(),
            Some(st) => format!(", students' means over {} runs", st.runs),
        };
        format!("\nTest accuracy per class{over}\n{}", table(&header, rows))
    }

    fn render_runs(&self, st: &Statistics) -> String {
        let rows = self
            .runs
            .iter()
            .map(|p| {
                let (d, c) = (p.distilled.test_accuracy, p.scratch.test_accuracy);
                vec![p.seed.to_string(), format!("{d:.4}"), format!("{c:.4}"), format!("{:+.4}", d - c)]
            })
            .collect();
        let mut s = format!("\n{}", table(&["seed", "distilled", "scratch", "difference"], rows));
        s += &format!(
            "over {} runs: distilled {:.4} ± {:.4}, scratch {:.4} ± {:.4} (mean ± sd)\n",
            st.runs, st.distilled_mean, st.distilled_std, st.scratch_mean, st.scratch_std
        );
        s += &format!(
            "paired difference {:+.4}, 95% CI [{:+.4}, {:+.4}]: {}\n",
            st.difference_mean,
            st.difference_ci95.0,
            st.difference_ci95.1,
            st.verdict()
        );
        let classes: Vec<&str> = st.classes_with_a_difference().iter().map(|c| c.class.as_str()).collect();
        s += &match classes[..] {
            [] => "no class's interval excludes zero\n".to_string(),
            _ => format!("classes whose interval excludes zero: {}\n", classes.join(", ")),
        };
        s
    }

    /// The closing report.
    pub fn render(&self) -> String {
        let models =
            [Some(&self.teacher), self.teacher_after_distillation.as_ref(), Some(&self.distilled), Some(&self.scratch)];
        let rows = models
            .iter()
            .flatten()
            .map(|r| {
                vec![
                    r.name.clone(),
                    format!("{:.4}", r.test_accuracy),
                    format!("{:.4}", r.test_loss),
                    format!("{:.4}", r.test_cross_entropy),
                    // Not trained in this run: a --teacher file, or the teacher after distillation.
                    if r.epochs.is_empty() { "-".into() } else { format!("{:.1}s", r.train_seconds) },
                    if r.epochs.is_empty() { "-".into() } else { format!("{:.0}", r.train_samples_per_second) },
                ]
            })
            .collect();
        let header = ["model", "accuracy", "loss", "test CE", "train time", "samples/s"];
        let mode = match self.config.distill_teacher {
            DistillTeacher::Frozen => "frozen teacher",
            DistillTeacher::Trainable => "the teacher trained along (the seed's Distiller under Keras 3)",
        };
        let moved: Vec<String> = [("teacher", self.config.teacher_augment), ("students", self.config.student_augment)]
            .into_iter()
            .filter(|&(_, pixels)| pixels > 0)
            .map(|(who, pixels)| format!("{who} up to {pixels} px"))
            .collect();
        let augment =
            if moved.is_empty() { String::new() } else { format!("; training images moved: {}", moved.join(", ")) };
        let mut losses = self.config.describe_losses();
        if let Some(n) = self.config.labelled {
            losses += &format!("; {n} labelled images");
        }
        let mut s =
            format!("\nResults on the test set (distillation: {mode}; {losses}{augment})\n{}", table(&header, rows));
        if let Some(shard) = &self.shard {
            s += &format!(
                "{}: these figures are this shard's alone; `kd-wgpu merge` puts the shards' --metrics-out \
                 files together\n",
                shard.describe(self.config.runs)
            );
        }
        match &self.statistics {
            None => {
                let diff = self.distilled.test_accuracy - self.scratch.test_accuracy;
                s += &format!("distilled - scratch accuracy: {diff:+.4} ({:+.2} points, one seed)\n", 100.0 * diff);
            }
            Some(st) => s += &self.render_runs(st),
        }
        s += &self.render_classes();
        if !self.sweep.is_empty() {
            s += &self.render_sweep();
        }
        let logits = match self.config.distill_teacher {
            DistillTeacher::Frozen if self.config.distill.iter().any(|t| matches!(t, DistillTerm::Feature { .. })) => {
                format!("teacher logits and feature outputs {:.1}s", self.teacher_logits_seconds)
            }
            DistillTeacher::Frozen => format!("teacher logits {:.1}s", self.teacher_logits_seconds),
            DistillTeacher::Trainable => "no logits table (the teacher runs at every step)".into(),
        };
        let (students, evaluated) = match &self.config.scratch_from {
            None => ("distilled and scratch side by side", self.runs.iter().map(|p| p.scratch.evaluate_seconds).sum()),
            Some(_) => ("the distilled alone", 0.0),
        };
        s += &format!(
            "phases: data {:.1}s, teacher fit {:.1}s + evaluate {:.1}s, {logits}, \
             students fit {:.1}s ({students}) + evaluate {:.1}s; total {:.1}s\n",
            self.data_seconds,
            self.teacher.train_seconds,
            self.teacher.evaluate_seconds,
            // A run's two students share their training time.
            self.runs.iter().map(|p| p.distilled.train_seconds).sum::<f64>(),
            self.runs.iter().map(|p| p.distilled.evaluate_seconds).sum::<f64>() + evaluated,
            self.total_seconds
        );
        if let Some(path) = &self.config.scratch_from {
            s += &format!(
                "scratch students: from {} (--scratch-from), trained there, not here; their times are that run's\n",
                path.display()
            );
        }
        if !self.resumed_from.is_empty() {
            s += &format!(
                "resumed {} time(s), from: {}; times add the parts before and after (work lost to an \
                 interruption and done again counts once)\n",
                self.resumed_from.len(),
                self.resumed_from.join("; ")
            );
        }
        s
    }
}
