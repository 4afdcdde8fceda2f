//! Keras-like epoch lines: a live bar on a terminal, plain lines otherwise. Where the output
//! is not a terminal (a log file, `nohup`, CI) a long phase still prints a line at least every
//! 30 s, so that a log shows the run is alive and how far it got.

use indicatif::{ProgressBar, ProgressStyle};
use std::cell::Cell;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How long a phase may go without a line when the output is not a terminal, less the
/// longest gap between two progress updates (`train::PACE_SECONDS`).
const QUIET_LINE_SECONDS: u64 = 20;

/// A live bar on a terminal; otherwise the time of the last line printed.
enum Display {
    Bar(ProgressBar),
    Lines { last: Cell<Instant> },
}

impl Display {
    fn new(steps: usize) -> Display {
        if std::io::stdout().is_terminal() {
            let bar = ProgressBar::new(steps as u64);
            bar.set_style(
                ProgressStyle::with_template("{pos:>5}/{len} {bar:20} {elapsed} {msg}").expect("valid template"),
            );
            Display::Bar(bar)
        } else {
            Display::Lines { last: Cell::new(Instant::now()) }
        }
    }

    /// Shows `done` of `steps` and `message` on the bar, or prints `line()` if the log has
    /// been quiet long enough and the phase's own last line is not next.
    /// Returns whether it printed.
    fn update(
        &self,
        done: usize,
        steps: usize,
        message: impl FnOnce() -> String,
        line: impl FnOnce() -> String,
    ) -> bool {
        match self {
            Display::Bar(bar) => {
                bar.set_position(done as u64);
                bar.set_message(message());
                false
            }
            Display::Lines { last }
                if done < steps && last.get().elapsed() >= Duration::from_secs(QUIET_LINE_SECONDS) =>
            {
                println!("{}", line());
                last.set(Instant::now());
                true
            }
            Display::Lines { .. } => false,
        }
    }

    fn clear(&self) {
        if let Display::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// Progress of a phase that has no loss to show (the teacher's logits): lines such as
/// `Teacher logits: 400/1875 steps, 1 min 5 s, about 3 min 57 s left`.
pub struct PhaseProgress {
    what: String,
    steps: usize,
    display: Display,
    start: Instant,
}

impl PhaseProgress {
    pub fn new(what: impl Into<String>, steps: usize) -> PhaseProgress {
        PhaseProgress { what: what.into(), steps, display: Display::new(steps), start: Instant::now() }
    }

    pub fn update(&self, done: usize) {
        let secs = self.start.elapsed().as_secs_f64();
        let left = secs / done.max(1) as f64 * self.steps.saturating_sub(done) as f64;
        let _ = self.display.update(
            done,
            self.steps,
            || self.what.clone(),
            || format!("{}: {done}/{} steps, {}, about {} left", self.what, self.steps, duration(secs), duration(left)),
        );
    }

    pub fn finish(self) {
        self.display.clear();
    }
}

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
    display: Display,
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
        EpochProgress { display: Display::new(steps), steps, first_step: 0, metric, start: Instant::now() }
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
        let means = || format!("loss: {loss:.4} - {}: {accuracy:.4}", self.metric);
        let _ = self.display.update(
            done,
            self.steps,
            || format!("- {}", means()),
            || {
                let secs = self.start.elapsed().as_secs_f64();
                let timed = done.saturating_sub(self.first_step).max(1);
                let left = secs / timed as f64 * self.steps.saturating_sub(done) as f64;
                format!("{done:>5}/{} - {} - {} (about {} left)", self.steps, duration(secs), means(), duration(left))
            },
        );
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
        self.display.clear();
        println!("{line}");
    }

    /// The final lines of models trained side by side: one per model, prefixed by its name.
    pub fn finish_group(self, rows: &[(&str, f64, f64)]) {
        let secs = self.start.elapsed().as_secs_f64();
        self.display.clear();
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
    use super::*;

    /// Without a terminal, a line comes once the log has been quiet for QUIET_LINE_SECONDS,
    /// then not again until it has been quiet that long once more; never for the last step,
    /// whose own line follows.
    #[test]
    fn a_log_gets_a_line_when_it_has_been_quiet_long_enough() {
        let quiet = Duration::from_secs(QUIET_LINE_SECONDS + 1);
        let lines = Display::Lines { last: Cell::new(Instant::now() - quiet) };
        let update = |done| lines.update(done, 10, String::new, || format!("{done}/10"));
        assert!(update(3));
        assert!(!update(4), "a second line right after the first");
        if let Display::Lines { last } = &lines {
            last.set(Instant::now() - quiet);
        }
        assert!(!update(10), "the last step's line is the phase's own");
        assert!(update(9));
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration(44.6), "45 s");
        assert_eq!(duration(725.0), "12 min 5 s");
        assert_eq!(duration(7380.0), "2 h 3 min");
    }
}
