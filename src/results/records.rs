//! The records of trained models: what a run produces, its state keeps, and the metrics file
//! holds.

use super::classes::ClassResults;
use crate::config::Shard;
use crate::train::EpochStats;

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
