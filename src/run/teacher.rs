//! The teacher's phases: its training (or its file), its evaluation, and what distilled
//! students learn from it: the frozen teacher's logits tables (computed, cached or taken
//! from the run's state) and a feature term's table of its layer's outputs.

use super::fit::{identity, FitJob, JobTeacher, Phases, TrainImages};
use super::logits_cache::LogitsCache;
use super::weights::{StartingWeights, WeightSaver};
use crate::config::{Config, DistillTeacher, WeightFiles};
use crate::data::{Dataset, NUM_CLASSES};
use crate::digest::Hasher;
use crate::gpu::{self, timing, Force, Tensor};
use crate::model::Architecture;
use crate::progress::PhaseProgress;
use crate::results::RunResult;
use crate::train::{check_batch_fits, run_epochs, DeviceData, DeviceSplit, Epoch, FeatureTable, Loss, Model, Plan};
use anyhow::{anyhow, Context, Result};
use std::sync::Arc;
use std::time::Instant;

/// The teacher every distilled student learns from.
pub enum Teacher<'a> {
    /// Frozen: its logits for both splits, computed once, which every distilled student reads;
    /// the teacher, and a feature term's table of its layer's outputs where one is kept
    /// (without one, the teacher runs at every step).
    Frozen { train: Tensor, test: Tensor, model: &'a Model, features: Option<Arc<FeatureTable>> },
    /// The seed's Distiller: each distilled student trains its own copy of these weights along.
    CoTrained { arch: &'a Architecture, weights: Vec<f32> },
}

impl Phases<'_> {
    /// The model's logits for every image of `split`, as a samples x 10 table on the device;
    /// `what` names the phase in progress lines.
    pub fn logits_table(&self, what: &str, model: &Model, split: &DeviceSplit) -> Result<Tensor> {
        let table = Tensor::zeros(self.gpu, "logits table", &[split.samples, NUM_CLASSES])?;
        let batch = self.forward_batch(model, split, &table)?;
        let plan = Plan::logits(self.gpu, "logits", model, &self.feed(split, None), &table, batch)?;
        let order = identity(split.samples);
        let run = Epoch { plans: &[&plan], orders: &[&order], resume: None, sync_points: 1 };
        let progress = PhaseProgress::new(what, plan.steps);
        run_epochs(self.gpu, &run, |done, _| progress.update(done), |_| self.stop_if_asked())?;
        progress.finish();
        Ok(table)
    }

    /// A feature term's table: the frozen teacher's outputs at its layer for every training
    /// image, in file order, where `--feature-table-gib` holds them and the students see the
    /// images as they are (with `--student-augment` the teacher must see the moved ones).
    /// None: the teacher runs at every step of the feature term.
    pub fn feature_table(&self, teacher: &Model) -> Result<Option<FeatureTable>> {
        let (gpu, cfg, split) = (self.gpu, self.cfg, &self.data.train);
        let Some(feature) = cfg.feature()? else {
            return Ok(None);
        };
        let layer = &teacher.arch.walk()[feature.teacher_layer];
        let (width, samples) = (layer.output.len(), split.samples);
        let gib = FeatureTable::bytes(samples, width) as f64 / (1u64 << 30) as f64;
        let what = format!("the teacher's `{}` outputs for {samples} images", layer.keras_name);
        if cfg.student_augment > 0 {
            println!("Feature term: the teacher runs at every step, on the students' moved images");
            return Ok(None);
        }
        if gib > cfg.feature_table_gib {
            println!(
                "Feature term: the teacher runs at every step ({what} take {gib:.2} GiB, over --feature-table-gib {})",
                cfg.feature_table_gib
            );
            return Ok(None);
        }
        let t = std::time::Instant::now();
        let mut rows = Vec::new();
        rows.try_reserve_exact(samples * width).map_err(|_| {
            anyhow!(
                "{what} need {gib:.2} GiB of memory, which could not be had; give a --feature-table-gib below \
                 {gib:.2} (0: never kept) to run the teacher at every step instead"
            )
        })?;
        // A logits plan's forward pass, its layer's output read back after each step.
        let logits = Tensor::zeros(gpu, "logits (unused)", &[samples, NUM_CLASSES])?;
        let batch = self.forward_batch(teacher, split, &logits)?;
        let plan = Plan::logits(gpu, "feature table", teacher, &self.feed(split, None), &logits, batch)?;
        let output = plan.output(0, feature.teacher_layer).context("the teacher's feature layer")?.clone();
        let keep = |rows: &mut Vec<f32>, done: usize| -> Result<()> {
            let values = output.read_f32(gpu)?;
            let kept = ((done - 1) * batch..(done * batch).min(samples)).len();
            rows.extend_from_slice(&values[..kept * width]);
            Ok(())
        };
        let order = identity(samples);
        let run = Epoch { plans: &[&plan], orders: &[&order], resume: None, sync_points: 1 };
        let progress = PhaseProgress::new(format!("Teacher's `{}` outputs", layer.keras_name), plan.steps);
        run_epochs(
            gpu,
            &run,
            |done, _| progress.update(done),
            |done| {
                keep(&mut rows, done)?;
                self.stop_if_asked()
            },
        )?;
        // The hook runs between steps: the last step's rows are read here.
        keep(&mut rows, plan.steps)?;
        progress.finish();
        println!("Feature term: {what} kept in memory ({gib:.2} GiB), computed in {:.1}s", t.elapsed().as_secs_f64());
        Ok(Some(FeatureTable { width, rows }))
    }

    /// The batch the logits of `split` are computed in: an image's logits do not depend on
    /// it (each sum runs over that image's own pixels and channels, in the same order in every
    /// entry), so the tuner times a step at the configured batch and at 4 times it (where the
    /// device and the split hold it) and keeps the faster per image. The products in those
    /// trial plans run their default entries. (On lavapipe, 2-core AMD EPYC, AVX2, the seed's
    /// teacher: 7.2, 7.2, 6.8 and 6.7 ms an image at batch 32, 64, 128 and 256; more
    /// candidates cost more tuning time than they save.)
    fn forward_batch(&self, model: &Model, split: &DeviceSplit, table: &Tensor) -> Result<usize> {
        let (gpu, base) = (self.gpu, self.cfg.batch_size);
        let batches: Vec<usize> = [1, 4]
            .into_iter()
            .map(|f| f * base)
            .filter(|&b| b == base || (b <= split.samples && check_batch_fits(gpu, &model.arch, b).is_ok()))
            .collect();
        let names: Vec<String> = batches.iter().map(|b| format!("batch {b}")).collect();
        let digest = Hasher::new().update(serde_json::to_vec(&model.arch)?).short_hex(6);
        let key = format!("forward pass of network {digest} ({} parameters), per image", model.arch.param_count());
        let feed = self.feed(split, None);
        let order = identity(split.samples);
        let mut plans: Vec<Option<Plan>> = batches.iter().map(|_| None).collect();
        let i = gpu.tuner().choose(&key, &names, 0, |i| {
            let plan = match &mut plans[i] {
                Some(plan) => plan,
                slot => {
                    gpu.tuner().force(Some(Force::Default));
                    let plan = Plan::logits(gpu, "logits batch trial", model, &feed, table, batches[i]);
                    gpu.tuner().force(None);
                    slot.insert(plan?)
                }
            };
            plan.begin_epoch(gpu, &order)?;
            Ok(timing::seconds_once(gpu, &plan.dispatches().iter().collect::<Vec<_>>())? / batches[i] as f64)
        })?;
        Ok(batches[i])
    }
}

/// What distilled students learn from: the frozen teacher's logits for every training and
/// test image, computed once (or read from `cache`, and kept there), the teacher itself, and
/// for a feature term its layer's outputs for every training image where they fit in
/// `--feature-table-gib` (otherwise it runs at every step); or, for the seed's Distiller, the
/// teacher's weights to copy.
pub(super) fn distillation_teacher<'a>(
    phases: &Phases,
    arch: &'a Architecture,
    teacher: &'a Model,
    cache: Option<&LogitsCache>,
) -> Result<Teacher<'a>> {
    Ok(match phases.cfg.distill_teacher {
        DistillTeacher::Frozen => {
            let (train, test) = frozen_logits(phases, teacher, cache)?;
            let features = phases.feature_table(teacher)?.map(std::sync::Arc::new);
            Teacher::Frozen { train, test, model: teacher, features }
        }
        DistillTeacher::Trainable => {
            println!("Each distilled student trains its own copy of the teacher along (the seed's Distiller)");
            Teacher::CoTrained { arch, weights: teacher.read_flat(phases.gpu)? }
        }
    })
}

/// The frozen teacher's logits tables (training images, test images) on the device: from the
/// run's state after an interruption, from `cache`, or computed (and kept in both).
fn frozen_logits(phases: &Phases, teacher: &Model, cache: Option<&LogitsCache>) -> Result<(Tensor, Tensor)> {
    let (gpu, data) = (phases.gpu, phases.data);
    let table = |split: &crate::train::DeviceSplit, values: &[f32]| {
        Tensor::from_f32(gpu, "logits table", &[split.samples, NUM_CLASSES], values)
    };
    let saved = phases.checkpoints.and_then(|c| c.tensor("teacher logits train").zip(c.tensor("teacher logits test")));
    if let Some((train, test)) = saved {
        println!("Teacher logits: computed before the interruption");
        return Ok((table(&data.train, &train)?, table(&data.test, &test)?));
    }
    let t = Instant::now();
    // The tables on the host, where the cache or the run state keeps them.
    let (train, test, kept) = match cache.and_then(|c| c.read().map(|tables| (c, tables))) {
        Some((c, (train, test))) => {
            println!("Teacher logits: read from {}", c.path.display());
            (table(&data.train, &train)?, table(&data.test, &test)?, Some((train, test)))
        }
        None => {
            let train = phases.logits_table("Teacher logits, training images", teacher, &data.train)?;
            let test = phases.logits_table("Teacher logits, test images", teacher, &data.test)?;
            let (n, m) = (data.train.samples, data.test.samples);
            println!("Teacher logits for {n} + {m} images in {:.1}s", t.elapsed().as_secs_f64());
            let kept = match cache.is_some() || phases.checkpoints.is_some() {
                true => Some((train.read_f32(gpu)?, test.read_f32(gpu)?)),
                false => None,
            };
            if let (Some(c), Some((train, test))) = (cache, &kept) {
                c.write(train, test);
            }
            (train, test, kept)
        }
    };
    if let (Some(c), Some((train_values, test_values))) = (phases.checkpoints, kept) {
        let secs = t.elapsed().as_secs_f64();
        let tables = vec![("teacher logits train".into(), train_values), ("teacher logits test".into(), test_values)];
        c.phase_done("teacher logits", |p| p.teacher_logits_seconds = Some(secs), tables)?;
    }
    Ok((train, test))
}

/// The teacher: trained from random weights or `--teacher-init`, or given trained by
/// `--teacher`; saved, then evaluated, and recorded in the run's state. A run resumed after
/// this phase takes the teacher and its record from the state instead.
pub(super) fn train_teacher(
    phases: &Phases,
    arch: &Architecture,
    files: &WeightFiles,
    starting: &StartingWeights,
    saver: &WeightSaver,
) -> Result<(Model, RunResult)> {
    let (gpu, cfg) = (phases.gpu, phases.cfg);
    let done = phases.checkpoints.and_then(|c| c.progress().teacher.zip(c.tensor("teacher")));
    if let Some((result, weights)) = done {
        println!("Teacher: trained and evaluated before the interruption");
        return Ok((Model::new(gpu, arch, &weights)?, result));
    }
    println!("{}", arch.summary());
    let metric = "sparse_categorical_accuracy";
    let teacher = match starting.teacher.as_ref().or(starting.teacher_init.as_ref()) {
        Some(flat) => Model::new(gpu, arch, flat)?,
        None => Model::new(gpu, arch, &arch.init_glorot(cfg.seed))?,
    }
    .seeded(cfg.seed)
    .augmented(cfg.teacher_augment);
    let epochs = match &files.teacher {
        Some(path) => {
            println!("Teacher weights from {} (not trained)", path.display());
            Vec::new()
        }
        None => {
            let job = FitJob {
                name: "teacher".into(),
                model: &teacher,
                loss: Loss::CrossEntropy,
                teacher: JobTeacher::None,
                order_seed: cfg.seed,
                images: TrainImages::All,
            };
            phases.fit("teacher", job, cfg.teacher_epochs, metric)?
        }
    };
    saver.save(gpu, "teacher.safetensors", &teacher)?;
    let test = phases.evaluate("teacher", &teacher, Loss::CrossEntropy, None, metric)?;
    let ce = test.stats.loss;
    let result = RunResult::from_epochs("teacher", epochs, test.record(), ce, phases.data.train.samples);
    if let Some(c) = phases.checkpoints {
        let weights = teacher.read_flat(gpu)?;
        c.phase_done("teacher", |p| p.teacher = Some(result.clone()), vec![("teacher".into(), weights)])?;
    }
    Ok((teacher, result))
}

/// The frozen teacher's logits for the training images (`export-web`'s table), computed on
/// the configured kernel family (the fastest here): the teacher from `files.teacher`, or
/// trained as the program trains it (and evaluated, as it does).
pub fn frozen_teacher_logits(
    cfg: &Config,
    files: &WeightFiles,
    starting: &StartingWeights,
    ds: &Dataset,
) -> Result<Vec<f32>> {
    let teacher_arch = cfg.teacher()?;
    let gpu = cfg.open_gpu()?;
    println!("Teacher on: {}", gpu::describe(&gpu.info));
    check_batch_fits(&gpu, &teacher_arch, cfg.batch_size)?;
    let data = DeviceData::upload(&gpu, &ds.train, &ds.test)?;
    let phases =
        Phases { gpu: &gpu, cfg, data: &data, test_labels: &ds.test.labels, checkpoints: None, labelled: None };
    let saver = WeightSaver { dir: None, config_json: String::new() };
    let (teacher, _) = train_teacher(&phases, &teacher_arch, files, starting, &saver)?;
    let (train, _) = frozen_logits(&phases, &teacher, None)?;
    train.read_f32(&gpu)
}
