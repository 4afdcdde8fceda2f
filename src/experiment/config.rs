//! The experiment's settings, their validation, and the weight files it starts from.

use crate::checkpoint;
use crate::data::{LoadOptions, IMAGE_SIDE};
use crate::gpu::{BackendChoice, MatmulVariant, TuneMode};
use crate::model::{Architecture, Layer, STUDENT_CHANNELS, TEACHER_CHANNELS};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

/// What the teacher does while a student distils from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum DistillTeacher {
    /// Distillation as intended (and as keras.distillation.Distiller does it): the teacher
    /// stays as trained; its logits are computed once.
    Frozen,
    /// What the seed program computes under Keras 3: its Distiller tracks the teacher, so the
    /// teacher learns from the KL term along with the student, by the distiller's one Adam.
    Trainable,
}

/// Everything the experiment's flags set.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Config {
    pub backend: BackendChoice,
    pub matmul: MatmulVariant,
    pub tune: TuneMode,
    #[serde(skip)]
    pub data: LoadOptions,
    pub teacher_epochs: usize,
    pub student_epochs: usize,
    pub batch_size: usize,
    pub alpha: f32,
    pub temperature: f32,
    pub learning_rate: f32,
    pub seed: u64,
    pub train_limit: Option<usize>,
    pub test_limit: Option<usize>,
    pub shuffle: bool,
    /// Metric readbacks per epoch (progress updates and NaN checks).
    pub sync_points: usize,
    /// Distilled and scratch students trained this many times (over seeds) with one teacher.
    pub runs: usize,
    /// A grid of distilled students over these alphas and temperatures (empty: none); a list
    /// left empty while the other is given takes the single --alpha or --temperature.
    pub sweep_alpha: Vec<f32>,
    pub sweep_temperature: Vec<f32>,
    /// Filters of the seed network's two convolutions, for the teacher and the students.
    pub teacher_channels: [usize; 2],
    pub student_channels: [usize; 2],
    /// Layer lists read from Keras model files (`--teacher-layers`, `--student-layers`),
    /// instead of the seed's network with the channels above.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub teacher_layers: Option<Vec<Layer>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub student_layers: Option<Vec<Layer>>,
    pub distill_teacher: DistillTeacher,
    /// Random translations of the teacher's / the students' training images, up to this many
    /// pixels each way (0: none).
    pub teacher_augment: u32,
    pub student_augment: u32,
}

/// The largest --teacher-augment / --student-augment (13): a shift of half an image or more
/// can leave no pixel of it.
pub const MAX_AUGMENT: u32 = IMAGE_SIDE as u32 / 2 - 1;

impl Default for Config {
    /// The seed program's settings.
    fn default() -> Config {
        Config {
            backend: BackendChoice::Auto,
            matmul: MatmulVariant::Auto,
            tune: TuneMode::Cached,
            data: LoadOptions::default(),
            teacher_epochs: 5,
            student_epochs: 3,
            batch_size: 32,
            alpha: 0.1,
            temperature: 10.0,
            learning_rate: 1e-3,
            seed: 1,
            train_limit: None,
            test_limit: None,
            shuffle: true,
            sync_points: 10,
            runs: 1,
            sweep_alpha: Vec::new(),
            sweep_temperature: Vec::new(),
            teacher_channels: TEACHER_CHANNELS,
            student_channels: STUDENT_CHANNELS,
            teacher_layers: None,
            student_layers: None,
            distill_teacher: DistillTeacher::Frozen,
            teacher_augment: 0,
            student_augment: 0,
        }
    }
}

impl Config {
    /// The (alpha, temperature) grid of `--sweep-alpha` x `--sweep-temperature`.
    pub fn sweep_grid(&self) -> Vec<(f32, f32)> {
        if self.sweep_alpha.is_empty() && self.sweep_temperature.is_empty() {
            return Vec::new();
        }
        let alphas = if self.sweep_alpha.is_empty() { vec![self.alpha] } else { self.sweep_alpha.clone() };
        let temps =
            if self.sweep_temperature.is_empty() { vec![self.temperature] } else { self.sweep_temperature.clone() };
        alphas.iter().flat_map(|&a| temps.iter().map(move |&t| (a, t))).collect()
    }

    pub fn teacher(&self) -> Result<Architecture> {
        match &self.teacher_layers {
            Some(layers) => Architecture::new("teacher", layers.clone()).context("--teacher-layers"),
            None => Architecture::seed("teacher", self.teacher_channels).context("--teacher-channels"),
        }
    }

    pub fn student(&self) -> Result<Architecture> {
        match &self.student_layers {
            Some(layers) => Architecture::new("student", layers.clone()).context("--student-layers"),
            None => Architecture::seed("student", self.student_channels).context("--student-channels"),
        }
    }

    /// Refuses out-of-range settings before any work starts.
    pub fn validate(&self) -> Result<()> {
        let alphas =
            std::iter::once(("--alpha", self.alpha)).chain(self.sweep_alpha.iter().map(|&a| ("--sweep-alpha", a)));
        for (flag, alpha) in alphas {
            if !(0.0..=1.0).contains(&alpha) {
                bail!("{flag} {alpha} is outside [0, 1]: it weighs the hard-label loss against the distillation loss");
            }
        }
        let temps = std::iter::once(("--temperature", self.temperature))
            .chain(self.sweep_temperature.iter().map(|&t| ("--sweep-temperature", t)));
        for (flag, t) in temps {
            if !(t > 0.0 && t.is_finite()) {
                bail!("{flag} {t} must be a finite number above 0");
            }
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            bail!("--learning-rate {} must be a finite number above 0", self.learning_rate);
        }
        if self.batch_size == 0 {
            bail!("--batch-size must be at least 1");
        }
        if self.runs == 0 {
            bail!("--runs must be at least 1");
        }
        if self.train_limit == Some(0) || self.test_limit == Some(0) {
            bail!("--train-limit and --test-limit must be at least 1 when given");
        }
        let augments = [("--teacher-augment", self.teacher_augment), ("--student-augment", self.student_augment)];
        for (flag, pixels) in augments {
            if pixels > MAX_AUGMENT {
                bail!("{flag} {pixels} is too large: an image is {IMAGE_SIDE} pixels wide; shift by at most {MAX_AUGMENT}");
            }
        }
        if self.student_augment > 0 && self.distill_teacher == DistillTeacher::Frozen {
            bail!(
                "--student-augment needs --distill-teacher trainable: a frozen teacher's logits are computed once, \
                 on the images as they are, so a distilled student would learn a moved image's logits from the \
                 unmoved one's"
            );
        }
        self.teacher()?;
        self.student()?;
        Ok(())
    }
}

/// Weight files the experiment starts from or saves to (`--teacher`, `--teacher-init`,
/// `--student-init`, `--save-dir`).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct WeightFiles {
    /// Writes `teacher.safetensors`, `student.safetensors` (distilled) and `scratch.safetensors`.
    pub save_dir: Option<PathBuf>,
    /// A trained teacher: its training is skipped.
    pub teacher: Option<PathBuf>,
    /// The teacher's initial weights instead of random ones.
    pub teacher_init: Option<PathBuf>,
    /// The initial weights of both students, so that they differ only in what the teacher taught.
    pub student_init: Option<PathBuf>,
}

/// The weights named by [`WeightFiles`], loaded and checked against the configured networks.
pub struct StartingWeights {
    pub teacher: Option<Vec<f32>>,
    pub teacher_init: Option<Vec<f32>>,
    pub student_init: Option<Vec<f32>>,
}

impl StartingWeights {
    /// Loads every given weight file, so that a bad one is refused before any training.
    pub fn load(files: &WeightFiles, teacher: &Architecture, student: &Architecture) -> Result<StartingWeights> {
        if files.teacher.is_some() && files.teacher_init.is_some() {
            bail!(
                "--teacher (a trained teacher, not trained again) and --teacher-init (a starting point for \
                 training) exclude each other"
            );
        }
        let load = |flag: &str, path: &Option<PathBuf>, arch: &Architecture| -> Result<Option<Vec<f32>>> {
            path.as_deref()
                .map(|p| checkpoint::load(p, arch).with_context(|| format!("{flag} {}", p.display())))
                .transpose()
        };
        let weights = StartingWeights {
            teacher: load("--teacher", &files.teacher, teacher)?,
            teacher_init: load("--teacher-init", &files.teacher_init, teacher)?,
            student_init: load("--student-init", &files.student_init, student)?,
        };
        if let Some(dir) = &files.save_dir {
            checkpoint::check_writable_dir("--save-dir", dir)?;
        }
        Ok(weights)
    }
}
