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
use crate::gpu::{BackendChoice, Gpu, MatmulVariant, TuneMode};
use crate::model::{keras, Architecture, Channels, Dims, Layer};
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
    /// Everything the experiment's flags set, each flag's help and default on its field, as
    /// the metrics file records it (`config`). A setting a file does not record came after the
    /// build that wrote it, which ran it at its default; a setting this build does not know is
    /// refused. Flags that every subcommand takes are global.
    #[derive(Clone, Debug, clap::Args, serde::Serialize, serde::Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub struct Config {
        /// Graphics API to run on.
        #[arg(long, value_enum, default_value = "auto", global = true)]
        pub backend: BackendChoice => Device,
        /// Kernel family: auto picks `subgroup` (texture-fed kernels, subgroup matrix product) on
        /// CPU drivers such as lavapipe, `tiled` (buffer-fed kernels) on GPUs.
        #[arg(long, value_enum, default_value = "auto", global = true)]
        pub matmul: MatmulVariant => Device,
        /// Where a kernel has several entries that give the same bits (the matrix product's
        /// tiles), time them on this device and run the fastest: `cached` times what the cache
        /// in $XDG_CACHE_HOME/kd-wgpu (~/.cache/kd-wgpu) lacks, `full` times everything again,
        /// `off` runs the built-in defaults.
        #[arg(long, value_enum, default_value = "cached", global = true)]
        pub tune: TuneMode => None,
        /// Where the data set is read from; the run state records the data's digest instead.
        #[command(flatten)]
        #[serde(skip)]
        pub data: LoadOptions => Device,
        /// Keep the frozen teacher's logits tables in this directory and read them back in
        /// later runs of the same teacher weights, images, device and kernel family (the same
        /// bits either way), e.g. ~/.cache/kd-wgpu.
        #[arg(long, value_name = "DIR", global = true)]
        #[serde(skip)]
        pub logits_cache: Option<PathBuf> => None,
        /// Keep the frozen teacher's outputs at a feature term's layer for every training image
        /// in memory, up to this many GiB, so that the students' steps do not run the teacher
        /// (the same bits either way); a larger table, or 0, runs the teacher at every step. (The
        /// seed teacher's `conv2d_1` for the 60,000 training images takes 5.6 GiB.)
        #[arg(long, value_name = "GIB", default_value_t = 8.0, allow_negative_numbers = true, global = true)]
        #[serde(skip)]
        pub feature_table_gib: f64 => None,
        #[arg(long, value_name = "N", default_value_t = 5, global = true)]
        pub teacher_epochs: usize => Teacher,
        /// Epochs of the distilled and the scratch student alike.
        #[arg(long, value_name = "N", default_value_t = 3, global = true)]
        pub student_epochs: usize => Scratch,
        /// Keras's default, as the seed's `fit` uses it.
        #[arg(long, value_name = "N", default_value_t = 32, global = true)]
        pub batch_size: usize => Scratch,
        /// Weight of the hard-label loss in distillation, in [0, 1].
        #[arg(long, value_name = "A", default_value_t = 0.1, allow_negative_numbers = true, global = true)]
        pub alpha: f32 => Distilled,
        /// Distillation temperature, above 0.
        #[arg(long, value_name = "T", default_value_t = 10.0, allow_negative_numbers = true, global = true)]
        pub temperature: f32 => Distilled,
        /// Adam's step size.
        #[arg(long, value_name = "LR", default_value_t = 1e-3, allow_negative_numbers = true, global = true)]
        pub learning_rate: f32 => Scratch,
        /// Seed of the initial weights and the shuffles.
        #[arg(long, value_name = "S", default_value_t = 1, global = true)]
        pub seed: u64 => Scratch,
        /// Train on the first N training images only.
        #[arg(long, value_name = "N", global = true)]
        pub train_limit: Option<usize> => Scratch,
        /// Evaluate on the first N test images only.
        #[arg(long, value_name = "N", global = true)]
        pub test_limit: Option<usize> => Scratch,
        /// Keep the file order instead of reshuffling every epoch.
        #[arg(long = "no-shuffle", action = clap::ArgAction::SetFalse, global = true)]
        pub shuffle: bool => Scratch,
        /// Metric readbacks per epoch (progress and NaN checks).
        #[arg(long, default_value_t = 10, hide = true, global = true)]
        pub sync_points: usize => None,
        /// Train the distilled and the scratch student N times over seeds, with one teacher,
        /// and report means, deviations and the paired difference with its 95% confidence
        /// interval; run r's seeds follow from r alone.
        #[arg(long, value_name = "N", default_value_t = 1)]
        pub runs: usize => Extent,
        /// Also distil students over these alphas (comma-separated), from the same teacher; a
        /// list left empty while the other is given takes the single --alpha or --temperature.
        #[arg(long, value_name = "A,A,..", value_delimiter = ',', allow_negative_numbers = true)]
        pub sweep_alpha: Vec<f32> => Distilled,
        /// Also distil students over these temperatures (comma-separated); with --sweep-alpha,
        /// the grid.
        #[arg(long, value_name = "T,T,..", value_delimiter = ',', allow_negative_numbers = true)]
        pub sweep_temperature: Vec<f32> => Distilled,
        /// Filters of the teacher's two convolutions (the seed's network).
        #[arg(long, value_name = "C1,C2", default_value = "256,512", value_parser = channels, global = true)]
        pub teacher_channels: [usize; 2] => Teacher,
        /// Filters of the students' two convolutions.
        #[arg(long, value_name = "C1,C2", default_value = "16,32", value_parser = channels, global = true)]
        pub student_channels: [usize; 2] => Scratch,
        /// The teacher's layers from a Keras model file (the JSON of `model.to_json()` for a
        /// Sequential) instead of the seed's network.
        #[arg(long, value_name = "FILE", value_parser = layers_file, conflicts_with = "teacher_channels", global = true)]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub teacher_layers: Option<::std::vec::Vec<Layer>> => Teacher,
        /// The students' layers from a Keras model file, as --teacher-layers.
        #[arg(long, value_name = "FILE", value_parser = layers_file, conflicts_with = "student_channels", global = true)]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub student_layers: Option<::std::vec::Vec<Layer>> => Scratch,
        /// `frozen`: distillation as intended, the teacher stays as trained. `trainable`: what
        /// the seed program computes under Keras 3, whose Distiller trains the teacher along with
        /// the student by one Adam (each distilled student gets its own copy of the teacher).
        #[arg(long, value_enum, default_value = "frozen")]
        pub distill_teacher: DistillTeacher => Distilled,
        /// A distillation loss, as keras.distillation composes them (repeat for several):
        /// `logits` (KL of the softened distributions times T^2), `logits:mse` (MSE of the
        /// logits divided by T) or `feature:TEACHER_LAYER:STUDENT_LAYER[:project]`.
        #[arg(long = "distill", value_name = "SPEC", default_value = "logits", global = true)]
        pub distill: Vec<DistillTerm> => Distilled,
        /// Weights of the --distill losses, in order (keras's distillation_loss_weights; 1 each
        /// when not given).
        #[arg(long, value_name = "W,W,..", value_delimiter = ',', allow_negative_numbers = true, global = true)]
        pub distill_weights: Vec<f32> => Distilled,
        /// Only N training images, a seeded class-balanced subset, keep their labels: the
        /// distilled student's cross-entropy covers those, its distillation terms every image,
        /// and the scratch student trains on the N alone for as many steps. The teacher keeps all.
        #[arg(long, value_name = "N", global = true)]
        pub labelled: Option<usize> => Scratch,
        /// Train only shard I of K of the runs (run r belongs to shard r mod K + 1) and of the
        /// sweep's cells, with a teacher from --teacher; `kd-wgpu merge` puts the shards together.
        #[arg(long, value_name = "I/K")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub shard: Option<Shard> => Extent,
        /// Train the teacher on its images moved by up to PIXELS pixels each way (random per
        /// image and step, border 0, as Keras's RandomTranslation on whole pixels).
        #[arg(long, value_name = "PIXELS", default_value_t = 0, global = true)]
        pub teacher_augment: u32 => Teacher,
        /// The same for both students' training (needs a teacher that sees the moved images).
        #[arg(long, value_name = "PIXELS", default_value_t = 0)]
        pub student_augment: u32 => Scratch,
        /// Take each run's scratch student from this earlier experiment's --metrics-out (the
        /// same seed, student, epochs, batch, learning rate, labels and device) instead of
        /// training it again: it never sees the teacher, so regimes of one student share it.
        #[arg(long, value_name = "METRICS.json")]
        #[serde(skip_serializing_if = "Option::is_none")]
        pub scratch_from: Option<PathBuf> => Extent,
    }
}

/// `--teacher-channels`, `--student-channels`: "C1,C2".
fn channels(text: &str) -> Result<[usize; 2], String> {
    text.parse::<Channels>().map(|c| c.0)
}

/// `--teacher-layers`, `--student-layers`: a Keras model file's layers.
fn layers_file(path: &str) -> Result<Vec<Layer>, String> {
    keras::read_layers(std::path::Path::new(path)).map_err(|e| format!("{e:#}"))
}

/// The largest --teacher-augment / --student-augment (13): a shift of half an image or more
/// can leave no pixel of it.
pub const MAX_AUGMENT: u32 = IMAGE_SIDE as u32 / 2 - 1;

impl Default for Config {
    /// The seed program's settings: every flag at its default.
    fn default() -> Config {
        use clap::{Args, FromArgMatches};
        let flags = Config::augment_args(clap::Command::new("kd-wgpu")).no_binary_name(true);
        let matches = flags.try_get_matches_from(std::iter::empty::<&str>()).expect("the defaults parse");
        Config::from_arg_matches(&matches).expect("the defaults make settings")
    }
}

impl Config {
    /// The device the settings name (`--backend`, `--matmul`), tuned as `--tune` says.
    pub fn open_gpu(&self) -> Result<Gpu> {
        Ok(Gpu::new(self.backend, self.matmul)?.tuned(self.tune))
    }

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
#[derive(Clone, Debug, Default, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightFiles {
    /// Save teacher.safetensors, student.safetensors (distilled) and scratch.safetensors here,
    /// each when its training ends (the directory is created if needed).
    #[arg(long, value_name = "DIR")]
    pub save_dir: Option<PathBuf>,
    /// A trained teacher's weights: its training is skipped (it is still evaluated).
    #[arg(long, value_name = "PATH", conflicts_with = "teacher_init", global = true)]
    pub teacher: Option<PathBuf>,
    /// Start the teacher's training from these weights instead of random ones.
    #[arg(long, value_name = "PATH")]
    pub teacher_init: Option<PathBuf>,
    /// Start both students (distilled and scratch) from these weights instead of random ones,
    /// so that they differ only in what the teacher taught.
    #[arg(long, value_name = "PATH", conflicts_with = "scratch_from")]
    pub student_init: Option<PathBuf>,
}
