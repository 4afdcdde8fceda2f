//! The experiment's settings: what each flag sets, which results each one changes
//! ([`Scope`]), their validation, and the weight files the experiment starts from.
//!
//! - [`distill`]: how students distil (`--distill-teacher`, `--distill`);
//! - [`shard`]: `--shard I/K`.

pub mod distill;
pub mod shard;

pub use distill::{DistillTeacher, DistillTerm};
pub use shard::Shard;

use crate::data::{LoadOptions, IMAGE_SIDE, NUM_CLASSES};
use crate::gpu::{BackendChoice, MatmulVariant, TuneMode};
use crate::model::{Architecture, Dims, Layer, STUDENT_CHANNELS, TEACHER_CHANNELS};
use crate::ops::loss::Distill;
use crate::train::{check_feature_layer, FeatureSpec};
use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};
use std::path::PathBuf;

/// Which results a setting changes. Every consumer of settings reads it from here: a resumed
/// run must match its state in every setting but `None`'s and `Device`'s (whose choices it
/// compares instead: the adapter, the kernel family, the data's digest); the shards of one
/// experiment in every setting of `Device`, `Teacher`, `Distilled` and `Scratch` (and in
/// `--runs`); an earlier experiment's scratch students (`--scratch-from`) are this run's where
/// `Device`'s and `Scratch`'s settings agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Changes no bit of any result: how the work is driven (tuning, readbacks, caches).
    None,
    /// What the work runs on and reads (the backend, the kernel family, the data files): it
    /// changes results through what it picks, which the results record.
    Device,
    /// Which of an experiment's runs a process computes, and where its scratch students come
    /// from: never a bit of any one run.
    Extent,
    /// The teacher's results, and with them the distilled students'.
    Teacher,
    /// The distilled students' results alone.
    Distilled,
    /// The scratch student's results, and with them the distilled students' (and most also
    /// the teacher's): every setting a student trained without a teacher depends on.
    Scratch,
}

/// Declares [`Config`] with each setting's [`Scope`] after its type (`name: Type => Scope`):
/// which results a setting changes is said once, on the setting itself.
macro_rules! settings {
    (
        $(#[$meta:meta])*
        pub struct Config { $( $(#[$attr:meta])* pub $field:ident: $ty:ty => $scope:ident, )* }
    ) => {
        $(#[$meta])*
        pub struct Config { $( $(#[$attr])* pub $field: $ty, )* }

        impl Config {
            /// The scope of the setting a metrics file records as `name` (None: no setting).
            pub fn scope(name: &str) -> Option<Scope> {
                match name {
                    $( stringify!($field) => Some(Scope::$scope), )*
                    _ => None,
                }
            }
        }
    };
}

settings! {
    /// Everything the experiment's flags set, as the metrics file records it (`config`). A
    /// setting a file does not record came after the build that wrote it, which ran it at its
    /// default; a setting this build does not know is refused.
    #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub struct Config {
        pub backend: BackendChoice => Device,
        pub matmul: MatmulVariant => Device,
        pub tune: TuneMode => None,
        /// Where the data set is read from; the run state records the data's digest instead.
        #[serde(skip)]
        pub data: LoadOptions => Device,
        /// Where the frozen teacher's logits tables are kept between runs (`--logits-cache`);
        /// none: computed by every run.
        #[serde(skip)]
        pub logits_cache: Option<PathBuf> => None,
        /// The largest table of the frozen teacher's feature-layer outputs kept in host memory,
        /// in GiB (`--feature-table-gib`); a larger one, or 0, runs the teacher at every step.
        #[serde(skip)]
        pub feature_table_gib: f64 => None,
        pub teacher_epochs: usize => Teacher,
        pub student_epochs: usize => Scratch,
        pub batch_size: usize => Scratch,
        pub alpha: f32 => Distilled,
        pub temperature: f32 => Distilled,
        pub learning_rate: f32 => Scratch,
        pub seed: u64 => Scratch,
        pub train_limit: Option<usize> => Scratch,
        pub test_limit: Option<usize> => Scratch,
        pub shuffle: bool => Scratch,
        /// Metric readbacks per epoch (progress updates and NaN checks).
        pub sync_points: usize => None,
        /// Distilled and scratch students trained this many times (over seeds) with one
        /// teacher; run r's seeds follow from r alone.
        pub runs: usize => Extent,
        /// A grid of distilled students over these alphas and temperatures (empty: none); a
        /// list left empty while the other is given takes the single --alpha or --temperature.
        pub sweep_alpha: Vec<f32> => Distilled,
        pub sweep_temperature: Vec<f32> => Distilled,
        /// Filters of the seed network's two convolutions, for the teacher and the students.
        pub teacher_channels: [usize; 2] => Teacher,
        pub student_channels: [usize; 2] => Scratch,
        /// Layer lists read from Keras model files (`--teacher-layers`, `--student-layers`),
        /// instead of the seed's network with the channels above.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub teacher_layers: Option<Vec<Layer>> => Teacher,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub student_layers: Option<Vec<Layer>> => Scratch,
        pub distill_teacher: DistillTeacher => Distilled,
        /// keras.distillation's losses (`--distill`), weighed by `distill_weights`
        /// (`distillation_loss_weights`; empty: 1 each). `alpha` is `student_loss_weight`.
        pub distill: Vec<DistillTerm> => Distilled,
        pub distill_weights: Vec<f32> => Distilled,
        /// Only this many training images, a seeded class-balanced subset, keep their labels
        /// (`--labelled`); the teacher keeps all.
        pub labelled: Option<usize> => Scratch,
        /// `--shard I/K`: train only this shard's share of the runs and of the sweep.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub shard: Option<Shard> => Extent,
        /// Random translations of the teacher's / the students' training images, up to this
        /// many pixels each way (0: none).
        pub teacher_augment: u32 => Teacher,
        pub student_augment: u32 => Scratch,
        /// Each run's scratch student from this earlier experiment's metrics, not trained
        /// again (`--scratch-from`, checked to be this run's).
        #[serde(skip_serializing_if = "Option::is_none")]
        pub scratch_from: Option<PathBuf> => Extent,
    }
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
    /// The settings as the metrics file records them, by name: through the text, which writes
    /// an f32 as its shortest decimal (0.1, not 0.10000000149011612).
    pub fn recorded(&self) -> Map<String, Value> {
        let text = serde_json::to_string(self).expect("settings serialize");
        match serde_json::from_str(&text).expect("JSON reads back") {
            Value::Object(fields) => fields,
            _ => unreachable!("a struct serializes as an object"),
        }
    }

    /// The recorded settings in `scopes` where `self` and `other` differ: (name, self's value,
    /// other's value), by name; an unrecorded optional setting is `null`.
    pub fn differences(&self, other: &Config, scopes: &[Scope]) -> Vec<(String, Value, Value)> {
        let (a, b) = (self.recorded(), other.recorded());
        let names: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        names
            .into_iter()
            .filter(|name| Config::scope(name).is_some_and(|s| scopes.contains(&s)))
            .filter_map(|name| {
                let (x, y) = (a.get(name).unwrap_or(&Value::Null), b.get(name).unwrap_or(&Value::Null));
                (x != y).then(|| (name.clone(), x.clone(), y.clone()))
            })
            .collect()
    }

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
    /// follow their loss).
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
        format!("alpha {}, T {}, {}", self.alpha, self.temperature, terms.join(" + "))
    }

    /// What sets an experiment's distilled students apart, in words (`kd-wgpu compare`'s
    /// settings column): the loss, labelled images, moved images, a co-trained teacher.
    pub fn describe_regime(&self) -> String {
        let mut s = self.describe_losses();
        if let Some(n) = self.labelled {
            s += &format!(", {n} labelled");
        }
        if self.teacher_augment > 0 {
            s += &format!(", teacher moved {} px, {} epochs", self.teacher_augment, self.teacher_epochs);
        }
        if self.student_augment > 0 {
            s += &format!(", students moved {} px", self.student_augment);
        }
        if self.distill_teacher == DistillTeacher::Trainable {
            s += ", co-trained teacher";
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
