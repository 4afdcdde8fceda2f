//! The records of trained models: what the phases produce, the state files keep, the
//! statistics read and the report renders.

use super::classes::ClassResults;
use crate::gpu::Tensor;
use crate::train::EpochStats;

/// A model's results on the test split: Keras's evaluate figures, the results per class, and
/// its logits for the test images (on the device).
pub struct Tested {
    pub stats: EpochStats,
    pub classes: ClassResults,
    pub logits: Tensor,
}

/// One trained model's record.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
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
    /// The record of `epochs` of training on `samples` images, then a test evaluation.
    pub fn from_epochs(name: &str, epochs: Vec<EpochStats>, tested: Tested, test_ce: f64, samples: usize) -> Self {
        let test = tested.stats;
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
            classes: tested.classes,
        }
    }
}

/// One distilled student of the sweep.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SweepPoint {
    pub alpha: f32,
    pub temperature: f32,
    pub result: RunResult,
    /// With --distill-teacher trainable: its teacher as it ended.
    pub teacher_after_distillation: Option<RunResult>,
}

/// One run's two students.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct StudentPair {
    pub seed: u64,
    pub distilled: RunResult,
    pub scratch: RunResult,
    /// With --distill-teacher trainable: the distilled student's teacher as it ended.
    pub teacher_after_distillation: Option<RunResult>,
}
