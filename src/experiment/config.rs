//! The experiment's settings, their validation, and the weight files it starts from.

use super::shards::Shard;
use crate::checkpoint;
use crate::data::{LoadOptions, IMAGE_SIDE, NUM_CLASSES};
use crate::gpu::{BackendChoice, MatmulVariant, TuneMode};
use crate::model::{Architecture, Dims, Layer, STUDENT_CHANNELS, TEACHER_CHANNELS};
use crate::ops::loss::Distill;
use crate::train::{check_feature_layer, FeatureSpec};
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

/// One of keras.distillation's losses (`--distill SPEC`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DistillTerm {
    /// `logits`: `LogitsDistillation(T, KLDivergence())`, KL of the softened distributions times T^2.
    Logits,
    /// `logits:mse`: `LogitsDistillation(T, "mse")`, the MSE of the logits divided by T.
    LogitsMse,
    /// `feature:TEACHER_LAYER:STUDENT_LAYER[:project]`: `FeatureDistillation("mse", ...)`
    /// between two layers' outputs (Keras's layer names), through a learned 1x1 projection
    /// to the teacher's channels with `:project`.
    Feature { teacher: String, student: String, project: bool },
}

impl std::str::FromStr for DistillTerm {
    type Err = String;

    fn from_str(spec: &str) -> Result<DistillTerm, String> {
        match spec {
            "logits" | "logits:kl" => Ok(DistillTerm::Logits),
            "logits:mse" => Ok(DistillTerm::LogitsMse),
            _ => match spec.split(':').collect::<Vec<_>>()[..] {
                ["feature", teacher, student] | ["feature", teacher, student, "project"]
                    if !teacher.is_empty() && !student.is_empty() =>
                {
                    let project = spec.ends_with(":project");
                    Ok(DistillTerm::Feature { teacher: teacher.into(), student: student.into(), project })
                }
                _ => Err(format!(
                    "unknown distillation loss `{spec}`: give `logits` (KL times T^2), `logits:mse` or \
                     `feature:TEACHER_LAYER:STUDENT_LAYER[:project]` (Keras's layer names, e.g. conv2d_1)"
                )),
            },
        }
    }
}

impl std::fmt::Display for DistillTerm {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            DistillTerm::Logits => f.write_str("logits"),
            DistillTerm::LogitsMse => f.write_str("logits:mse"),
            DistillTerm::Feature { teacher, student, project } => {
                write!(f, "feature:{teacher}:{student}{}", if *project { ":project" } else { "" })
            }
        }
    }
}

impl serde::Serialize for DistillTerm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Everything the experiment's flags set.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Config {
    pub backend: BackendChoice,
    pub matmul: MatmulVariant,
    pub tune: TuneMode,
    #[serde(skip)]
    pub data: LoadOptions,
    /// Where the frozen teacher's logits tables are kept between runs (`--logits-cache`);
    /// none: computed by every run. Changes no bit of the results.
    #[serde(skip)]
    pub logits_cache: Option<PathBuf>,
    /// The largest table of the frozen teacher's feature-layer outputs kept in host memory, in
    /// GiB (`--feature-table-gib`); a larger one, or 0, runs the teacher at every step instead.
    /// Changes no bit of the results.
    #[serde(skip)]
    pub feature_table_gib: f64,
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
    /// keras.distillation's losses (`--distill`), weighed by `distill_weights`
    /// (`distillation_loss_weights`; empty: 1 each). `alpha` is `student_loss_weight`.
    pub distill: Vec<DistillTerm>,
    pub distill_weights: Vec<f32>,
    /// Only this many training images, a seeded class-balanced subset, keep their labels
    /// (`--labelled`); the teacher keeps all.
    pub labelled: Option<usize>,
    /// `--shard I/K`: train only this shard's share of the runs and of the sweep.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// Random translations of the teacher's / the students' training images, up to this many
    /// pixels each way (0: none).
    pub teacher_augment: u32,
    pub student_augment: u32,
    /// Each run's scratch student from this earlier experiment's metrics, not trained again
    /// (`--scratch-from`, see [`super::scratch_from`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scratch_from: Option<PathBuf>,
}

/// `--feature-table-gib`'s default: the seed teacher's `conv2d_1` for the 60,000 training
/// images takes 5.6 GiB.
pub const DEFAULT_FEATURE_TABLE_GIB: f64 = 8.0;

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
            logits_cache: None,
            feature_table_gib: DEFAULT_FEATURE_TABLE_GIB,
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
            distill: vec![DistillTerm::Logits],
            distill_weights: Vec::new(),
            labelled: None,
            shard: None,
            teacher_augment: 0,
            student_augment: 0,
            scratch_from: None,
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

    /// The distillation loss at `alpha` and `temperature` with the configured terms.
    pub fn distill_loss(&self, alpha: f32, temperature: f32) -> Distill {
        let mut d = Distill { alpha, temperature, kl: 0.0, mse: 0.0 };
        for (i, term) in self.distill.iter().enumerate() {
            let weight = self.distill_weights.get(i).copied().unwrap_or(1.0);
            match term {
                DistillTerm::Logits => d.kl += weight,
                DistillTerm::LogitsMse => d.mse += weight,
                DistillTerm::Feature { .. } => {}
            }
        }
        d
    }

    /// The feature term, its layers found in the two networks (checked by [`Config::validate`]).
    pub fn feature(&self) -> Result<Option<FeatureSpec>> {
        let Some((i, (teacher, student, project))) = self.distill.iter().enumerate().find_map(|(i, t)| match t {
            DistillTerm::Feature { teacher, student, project } => Some((i, (teacher, student, *project))),
            _ => None,
        }) else {
            return Ok(None);
        };
        let find = |arch: &Architecture, name: &str| -> Result<usize> {
            let walk = arch.walk();
            walk.iter().position(|l| l.keras_name == name).with_context(|| {
                let names: Vec<&str> = walk.iter().map(|l| l.keras_name.as_str()).collect();
                format!("--distill: the {} has no layer `{name}`; its layers: {}", arch.name(), names.join(", "))
            })
        };
        Ok(Some(FeatureSpec {
            teacher_layer: find(&self.teacher()?, teacher)?,
            student_layer: find(&self.student()?, student)?,
            weight: self.distill_weights.get(i).copied().unwrap_or(1.0),
            project,
        }))
    }

    /// The distillation's loss in words: `alpha 0.1, T 10, logits` (weights other than 1
    /// follow their loss), and the labelled images under `--labelled`.
    pub fn describe_losses(&self) -> String {
        let terms: Vec<String> = self
            .distill
            .iter()
            .enumerate()
            .map(|(i, t)| match self.distill_weights.get(i) {
                Some(&w) if w != 1.0 => format!("{t} x{w}"),
                _ => t.to_string(),
            })
            .collect();
        let mut s = format!("alpha {}, T {}, {}", self.alpha, self.temperature, terms.join(" + "));
        if let Some(n) = self.labelled {
            s += &format!("; {n} labelled images");
        }
        s
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
        if !(self.feature_table_gib >= 0.0 && self.feature_table_gib.is_finite()) {
            bail!("--feature-table-gib {} must be a finite number of GiB, 0 or more", self.feature_table_gib);
        }
        if let Some(shard) = self.shard {
            shard.check(self.runs)?;
        }
        if self.train_limit == Some(0) || self.test_limit == Some(0) {
            bail!("--train-limit and --test-limit must be at least 1 when given");
        }
        if let Some(n) = self.labelled {
            if n < NUM_CLASSES {
                bail!("--labelled {n} is below the {NUM_CLASSES} classes: give at least one labelled image per class");
            }
            if let Some(limit) = self.train_limit.filter(|&l| n > l) {
                bail!("--labelled {n} is more than the {limit} training images of --train-limit {limit}");
            }
        }
        let augments = [("--teacher-augment", self.teacher_augment), ("--student-augment", self.student_augment)];
        for (flag, pixels) in augments {
            if pixels > MAX_AUGMENT {
                bail!("{flag} {pixels} is too large: an image is {IMAGE_SIDE} pixels wide; shift by at most {MAX_AUGMENT}");
            }
        }
        if self.student_augment > 0 && self.distill_teacher == DistillTeacher::Frozen && self.feature()?.is_none() {
            bail!(
                "--student-augment needs a teacher that sees the moved images: --distill-teacher trainable, or a \
                 feature term (--distill feature:..), which runs the frozen teacher at every step; a frozen \
                 teacher's logits table is computed once, on the images as they are, so a distilled student would \
                 learn a moved image's logits from the unmoved one's"
            );
        }
        self.validate_distill()?;
        self.teacher()?;
        self.student()?;
        Ok(())
    }

    fn validate_distill(&self) -> Result<()> {
        if self.distill.is_empty() {
            bail!("--distill needs at least one loss (`logits`, `logits:mse`, `feature:..`)");
        }
        for (i, term) in self.distill.iter().enumerate() {
            if self.distill[..i].contains(term) {
                bail!("--distill {term} is given twice: give it once, with its weight in --distill-weights");
            }
        }
        if !self.distill_weights.is_empty() && self.distill_weights.len() != self.distill.len() {
            bail!(
                "--distill-weights gives {} weights for {} --distill losses ({}): give one weight per loss, in order",
                self.distill_weights.len(),
                self.distill.len(),
                self.distill.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
            );
        }
        if let Some(w) = self.distill_weights.iter().find(|w| !(w.is_finite() && **w >= 0.0)) {
            bail!("--distill-weights {w} must be a finite number, 0 or more");
        }
        if self.distill.iter().filter(|t| matches!(t, DistillTerm::Feature { .. })).count() > 1 {
            bail!("--distill: one feature term at a time");
        }
        let Some(f) = self.feature()? else { return Ok(()) };
        if self.distill_teacher == DistillTeacher::Trainable {
            bail!(
                "--distill feature:..: a feature term needs a frozen teacher, as keras.distillation's Distiller \
                 (give --distill-teacher frozen)"
            );
        }
        let (teacher, student) = (self.teacher()?, self.student()?);
        check_feature_layer(&teacher, f.teacher_layer, false).context("--distill")?;
        check_feature_layer(&student, f.student_layer, true).context("--distill")?;
        let (tl, sl) = (&teacher.walk()[f.teacher_layer], &student.walk()[f.student_layer]);
        let (t, s) = (tl.output, sl.output);
        let pixels = |d: Dims| d.len() / d.channels().max(1);
        if f.project && pixels(t) != pixels(s) {
            bail!(
                "--distill: a 1x1 projection maps channels only, but `{}` of the teacher is {} and `{}` of the \
                 student {}: pick layers of the same height and width",
                tl.keras_name,
                t.keras(),
                sl.keras_name,
                s.keras()
            );
        }
        if !f.project && t != s {
            bail!(
                "--distill: the teacher's `{}` is {} and the student's `{}` {}; Keras refuses features of \
                 different shapes: add `:project` for a learned 1x1 projection to the teacher's channels",
                tl.keras_name,
                t.keras(),
                sl.keras_name,
                s.keras()
            );
        }
        Ok(())
    }
}

/// Weight files the experiment starts from or saves to (`--teacher`, `--teacher-init`,
/// `--student-init`, `--save-dir`).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
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
