//! Keras-like epoch lines: a live bar on a terminal, plain lines otherwise.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::Instant;

/// A duration for people: "45 s", "12 min 5 s", "2 h 3 min".
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

/// Prints `status` and how long the `left` units of work (steps, runs) should take, at the
/// pace of the `timed` units this process did in `seconds`. Work done before a resume is not
/// timed: only what this process ran sets the pace.
pub fn time_left(status: &str, timed: usize, left: usize, seconds: f64) {
    if timed > 0 && left > 0 {
        println!("{status}, about {} left", duration(seconds / timed as f64 * left as f64));
    }
}

pub struct EpochProgress {
    bar: Option<ProgressBar>,
    steps: usize,
    /// Steps done before this process took the epoch up (resumed part-way), not timed.
    first_step: usize,
    metric: &'static str,
    start: Instant,
}

impl EpochProgress {
    /// `metric` is the accuracy's Keras name (`sparse_categorical_accuracy`, `acc`, ...).
    pub fn new(title: Option<String>, steps: usize, metric: &'static str) -> EpochProgress {
        if let Some(t) = title {
            println!("{t}");
        }
        let bar = std::io::stdout().is_terminal().then(|| {
            let bar = ProgressBar::new(steps as u64);
            bar.set_style(
                ProgressStyle::with_template("{pos:>5}/{len} {bar:20} {elapsed} {msg}").expect("valid template"),
            );
            bar
        });
        EpochProgress { bar, steps, first_step: 0, metric, start: Instant::now() }
    }

    /// An epoch resumed at `step`: its ms/step counts only the steps run from there.
    pub fn resumed_at(mut self, step: usize) -> EpochProgress {
        self.first_step = step.min(self.steps.saturating_sub(1));
        self
    }

    fn ms_per_step(&self, secs: f64) -> f64 {
        1000.0 * secs / (self.steps - self.first_step).max(1) as f64
    }

    /// Called at the epoch's sync points with the running means.
    pub fn update(&self, done: usize, loss: f64, accuracy: f64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
            bar.set_message(format!("- loss: {loss:.4} - {}: {accuracy:.4}", self.metric));
        }
    }

    /// The final line, as Keras prints it: steps, seconds, ms/step, loss, accuracy.
    pub fn finish(self, loss: f64, accuracy: f64) {
        let secs = self.start.elapsed().as_secs_f64();
        let line = format!(
            "{s}/{s} - {secs:.0}s {ms:.0}ms/step - loss: {loss:.4} - {m}: {accuracy:.4}",
            s = self.steps,
            ms = self.ms_per_step(secs),
            m = self.metric
        );
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        println!("{line}");
    }

    /// The final lines of models trained side by side: one per model, prefixed by its name.
    pub fn finish_group(self, rows: &[(&str, f64, f64)]) {
        let secs = self.start.elapsed().as_secs_f64();
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        for (name, loss, accuracy) in rows {
            println!(
                "{name}: {s}/{s} - {secs:.0}s {ms:.0}ms/step (together) - loss: {loss:.4} - {m}: {accuracy:.4}",
                s = self.steps,
                ms = self.ms_per_step(secs),
                m = self.metric
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::duration;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration(44.6), "45 s");
        assert_eq!(duration(725.0), "12 min 5 s");
        assert_eq!(duration(7380.0), "2 h 3 min");
    }
}
