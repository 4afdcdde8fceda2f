//! What reads finished experiments: the metrics file (`--metrics-out`), its one reader
//! ([`read`]), and what is made of it: the closing report, paired statistics, merged shards,
//! comparisons of experiments and plots.
//!
//! - [`report`]: the closing report's tables;
//! - [`classes`]: results per class;
//! - [`statistics`]: paired statistics over several runs;
//! - [`merge`]: an experiment's shards put together (`kd-wgpu merge`);
//! - [`compare`]: several experiments side by side (`kd-wgpu compare`);
//! - [`plot`]: the SVG charts.

pub mod classes;
pub mod compare;
pub mod merge;
pub mod plot;
pub mod report;
pub mod statistics;

pub use classes::ClassResults;
pub use statistics::Statistics;

use crate::config::{Config, Shard, WeightFiles};
use crate::train::EpochStats;
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::Path;

/// The metrics file's format; a file of another is refused by [`read`] with its name.
pub const FORMAT: &str = "kd-wgpu-metrics/1";

fn format() -> String {
    FORMAT.to_string()
}

/// A field derived from others: skipped when read, and computed again from them.
fn derived<'de, D: serde::Deserializer<'de>, T>(d: D) -> std::result::Result<Option<T>, D::Error> {
    serde::de::IgnoredAny::deserialize(d)?;
    Ok(None)
}

/// What an experiment found: the metrics file, as `--metrics-out` writes it and every
/// subcommand that reads finished experiments reads it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// [`FORMAT`]; absent from files written before it was named, which are of format 1.
    #[serde(default = "format")]
    pub format: String,
    pub adapter: String,
    pub config: Config,
    pub weights: WeightFiles,
    pub teacher: RunResult,
    /// The first run's students.
    pub distilled: RunResult,
    pub scratch: RunResult,
    /// With --distill-teacher trainable, the first run's teacher after distillation (the
    /// distilled student's combined test loss is computed against it, as Keras does).
    pub teacher_after_distillation: Option<RunResult>,
    /// Every run's students (`--runs`), the first included.
    pub runs: Vec<StudentPair>,
    /// Over the runs, when there are several. Derived from `runs`: computed again when a
    /// file is read, not read from it.
    #[serde(default, deserialize_with = "derived")]
    pub statistics: Option<Statistics>,
    /// Distilled students over the --sweep-alpha x --sweep-temperature grid.
    pub sweep: Vec<SweepPoint>,
    /// The frozen teacher's tables: its logits and, with a feature term, its layer's outputs
    /// where they are kept in memory (`--feature-table-gib`).
    pub teacher_logits_seconds: f64,
    pub data_seconds: f64,
    /// The run's work, over all its parts when it was resumed.
    pub total_seconds: f64,
    /// Where the run was resumed (`--resume`), each time it was; the times of the phases
    /// then add the parts before and after each interruption.
    #[serde(default)]
    pub resumed_from: Vec<String>,
    /// With `--shard I/K`: the shard, its runs and sweep cells, and its teacher's digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardRecord>,
    /// Written by `kd-wgpu merge`: the shards it put together.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_shards: Vec<MergedShard>,
}

/// One shard of a merged experiment.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergedShard {
    /// Its metrics file, as given to `merge`.
    pub file: String,
    /// `I/K`.
    pub shard: String,
    pub total_seconds: f64,
}

/// Reads a metrics file (`--metrics-out`, or `merge`'s), refusing with one message a file that
/// is not one (`give` says what to give instead) and one of another format version.
pub fn read(path: &Path, give: &str) -> Result<Report> {
    let name = path.display();
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {name}"))?;
    let json: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{name} is not valid JSON (truncated or corrupt?); {give}"))?;
    match json.get("format").and_then(|f| f.as_str()) {
        None | Some(FORMAT) => {}
        Some(other) => bail!(
            "{name} is a metrics file of format {other}; this build (kd-wgpu {}) reads {FORMAT}: read it with the \
             build that wrote it",
            env!("CARGO_PKG_VERSION")
        ),
    }
    // From the text, not the value: an f32 setting reads back from its shortest decimal.
    let mut report: Report = serde_json::from_slice(&bytes)
        .with_context(|| format!("{name} is not a kd-wgpu metrics file of format {FORMAT}; {give}"))?;
    report.statistics = (report.runs.len() > 1).then(|| Statistics::of(&report.runs));
    Ok(report)
}

/// One trained model's record.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunResult {
    pub name: String,
    pub epochs: Vec<EpochStats>,
    /// Test loss as Keras's evaluate reports it (the combined loss for the distiller).
    pub test_loss: f64,
    pub test_accuracy: f64,
    /// Plain cross-entropy on the test set, comparable across the three runs.
    pub test_cross_entropy: f64,
    pub train_seconds: f64,
    pub evaluate_seconds: f64,
    pub train_samples_per_second: f64,
    /// Test accuracy per class and the confusion matrix.
    pub classes: ClassResults,
}

impl RunResult {
    /// The record of `epochs` of training on `samples` images, then a test evaluation (`test`,
    /// with its results per class).
    pub fn from_epochs(
        name: &str,
        epochs: Vec<EpochStats>,
        (test, classes): (EpochStats, ClassResults),
        test_ce: f64,
        samples: usize,
    ) -> Self {
        // A fold from +0.0: an empty f64 sum is -0.0, printed "-0.0s" for a teacher given by --teacher.
        let train_seconds = epochs.iter().fold(0.0, |t, e| t + e.seconds);
        let n = epochs.len();
        RunResult {
            name: name.to_string(),
            epochs,
            test_loss: test.loss,
            test_accuracy: test.accuracy,
            test_cross_entropy: test_ce,
            train_seconds,
            evaluate_seconds: test.seconds,
            train_samples_per_second: (samples * n) as f64 / train_seconds.max(1e-9),
            classes,
        }
    }
}

/// One distilled student of the sweep.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepPoint {
    pub alpha: f32,
    pub temperature: f32,
    pub result: RunResult,
    /// With --distill-teacher trainable: its teacher as it ended.
    pub teacher_after_distillation: Option<RunResult>,
}

/// One run's two students.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudentPair {
    pub seed: u64,
    pub distilled: RunResult,
    pub scratch: RunResult,
    /// With --distill-teacher trainable: the distilled student's teacher as it ended.
    pub teacher_after_distillation: Option<RunResult>,
}

/// What a shard's metrics record of its place in the experiment, for `kd-wgpu merge`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardRecord {
    /// I of `--shard I/K`.
    pub index: usize,
    /// K.
    pub count: usize,
    /// The runs it trained, counted from 0, in the order of its `runs`.
    pub run_indices: Vec<usize>,
    /// The sweep cells it trained (from 0, in grid order: alphas, then temperatures within
    /// each), in the order of its `sweep`.
    pub sweep_cells: Vec<usize>,
    /// SHA-256 of the `--teacher` weights as loaded (f32, little-endian), as the run state's
    /// settings record them: the same weights in files with other metadata match.
    pub teacher_weights_sha256: String,
    /// The same for `--student-init`, when given.
    pub student_init_weights_sha256: Option<String>,
}

impl ShardRecord {
    pub fn shard(&self) -> Shard {
        Shard { index: self.index, count: self.count }
    }

    /// Its runs, numbered from 1 as the report numbers them, e.g. `runs 1, 3 and 5 of 5`.
    pub fn describe(&self, runs: usize) -> String {
        let numbers: Vec<String> = self.run_indices.iter().map(|r| (r + 1).to_string()).collect();
        let cells = match self.sweep_cells.len() {
            0 => String::new(),
            n => format!(" and {n} sweep cell(s)"),
        };
        format!("shard {}: runs {} of {runs}{cells}", self.shard(), numbers.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metrics_file_in_docs_reads_and_writes_back_the_same() {
        let mut read_any = 0;
        for entry in std::fs::read_dir("docs").unwrap() {
            let path = entry.unwrap().path();
            // The first full run's file predates the results per class, which every reader needs
            // (it never loaded in `compare` or as `--scratch-from`); its figures are in docs as text.
            if path.extension().is_none_or(|e| e != "json") || path.ends_with("full-run-lavapipe.json") {
                continue;
            }
            let report = read(&path, "").unwrap_or_else(|e| panic!("{e:#}"));
            // Written again, then read: the same settings and runs (format and statistics aside,
            // which the file may lack and the reader derives).
            let text = serde_json::to_string(&report).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let again_path = dir.path().join("again.json");
            std::fs::write(&again_path, &text).unwrap();
            let again = read(&again_path, "").unwrap();
            assert_eq!(serde_json::to_string(&again).unwrap(), text, "{}", path.display());
            read_any += 1;
        }
        assert!(read_any >= 10, "docs/ holds the committed experiments' metrics");
    }

    #[test]
    fn unknown_fields_and_other_formats_are_refused_by_name() {
        let text = std::fs::read_to_string("docs/runs10-keras-defaults-lavapipe.json").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let refused = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
            edit(&mut json);
            let path = dir.path().join("edited.json");
            std::fs::write(&path, json.to_string()).unwrap();
            format!("{:#}", read(&path, "give X").expect_err("refused"))
        };
        let msg = refused(&|j| j["config"]["warmup_epochs"] = 3.into());
        assert!(msg.contains("not a kd-wgpu metrics file of format") && msg.contains("warmup_epochs"), "{msg}");
        assert!(msg.contains("give X"), "{msg}");
        let msg = refused(&|j| j["runs"][0]["distilled"]["flops"] = 1.into());
        assert!(msg.contains("flops"), "{msg}");
        let msg = refused(&|j| j["format"] = "kd-wgpu-metrics/2".into());
        assert!(msg.contains("of format kd-wgpu-metrics/2") && msg.contains(FORMAT), "{msg}");
        // A setting the file does not record ran at its default.
        let path = dir.path().join("old.json");
        let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
        json["config"].as_object_mut().unwrap().remove("labelled");
        std::fs::write(&path, json.to_string()).unwrap();
        assert_eq!(read(&path, "").unwrap().config.labelled, None);
    }
}
