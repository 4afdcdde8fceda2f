//! The seed program end to end: load data, train the teacher, distil it into the student,
//! train the same student architecture from scratch, evaluate all three, report.
//!
//! - [`config`]: the settings, their validation, the weight files to start from;
//! - [`phases`]: training and evaluating models, the teacher's logits, the students' runs and sweep;
//! - [`logits_cache`]: the frozen teacher's logits tables kept between runs (`--logits-cache`);
//! - [`statistics`]: paired statistics over several runs;
//! - [`report`]: the results and the closing report;
//! - [`resume`]: the run's state on disk, for resuming an interrupted run;
//! - [`shards`], [`merge`]: an experiment split across machines (`--shard I/K`), and its
//!   shards' metrics put back together (`kd-wgpu merge`);
//! - [`scratch_from`]: scratch students taken from an earlier experiment (`--scratch-from`);
//! - [`compare`]: several experiments' paired results side by side (`kd-wgpu compare`).

pub mod classes;
pub mod compare;
pub mod config;
pub mod logits_cache;
pub mod merge;
pub mod phases;
pub mod report;
pub mod results;
pub mod resume;
pub mod scratch_from;
pub mod seeds;
pub mod shards;
pub mod statistics;

pub use config::{Config, DistillTeacher, DistillTerm, WeightFiles};
pub use report::Report;
pub use results::{RunResult, StudentPair, SweepPoint};
pub use statistics::Statistics;

use crate::checkpoint;
use crate::data::{self, Dataset, NUM_CLASSES};
use crate::gpu::{self, Gpu, Tensor};
use crate::model::Architecture;
use crate::train::{check_batch_fits, DeviceData, Loss, Model};
use anyhow::{ensure, Result};
use config::StartingWeights;
use logits_cache::LogitsCache;
use phases::{FitJob, JobTeacher, Phases, Teacher, TrainImages, WeightSaver};
use results::Tested;
use resume::{Checkpoints, Fingerprint, SavedState};
use scratch_from::EarlierScratch;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Loads the data set, applies the limits and prints what the seed prints about it.
pub fn load_data(cfg: &Config) -> Result<Dataset> {
    let mut ds = data::load(&cfg.data)?;
    println!("Data from {}", ds.source.display());
    let (train_n, test_n) = (ds.train.len(), ds.test.len());
    // The seed prints the raw arrays, then the scaled ones (with the training split's max and min).
    let train_max = ds.train.images.iter().copied().max().unwrap_or(0);
    let train_min = ds.train.images.iter().copied().min().unwrap_or(0);
    println!("({train_n}, 28, 28) ({test_n}, 28, 28) uint8 {train_max} {train_min}");
    println!(
        "({train_n}, 28, 28, 1) ({test_n}, 28, 28, 1) float32 {:?} {:?}",
        train_max as f32 / 255.0,
        train_min as f32 / 255.0
    );
    if let Some(n) = cfg.train_limit {
        ds.train.truncate(n);
    }
    if let Some(n) = cfg.test_limit {
        ds.test.truncate(n);
    }
    if cfg.train_limit.is_some() || cfg.test_limit.is_some() {
        println!("Using the first {} training and {} test images", ds.train.len(), ds.test.len());
    }
    Ok(ds)
}

/// Runs the whole program from random weights, saving nothing.
pub fn run(cfg: &Config) -> Result<Report> {
    run_with(cfg, &WeightFiles::default())
}

/// Runs the whole program, starting from or saving the weight files in `files`.
pub fn run_with(cfg: &Config, files: &WeightFiles) -> Result<Report> {
    run_resumable(cfg, files, None)
}

/// Where a resumable run keeps its state (`--checkpoint-dir`, or `--resume` to go on from it).
#[derive(Clone, Debug)]
pub struct Checkpointing {
    pub dir: PathBuf,
    /// Go on from the state in `dir` instead of starting anew.
    pub resume: bool,
    /// Also write the state at the first step boundary this long after the last write.
    pub every: Duration,
}

impl Checkpointing {
    /// Refuses, before any work, a directory the run could not use: a new run's must be
    /// writable and hold no state; a resumed run's state must be readable and intact.
    fn check(&self) -> Result<Option<SavedState>> {
        if self.resume {
            let saved = SavedState::read(&self.dir)?;
            checkpoint::check_writable_dir("--resume", &self.dir)?;
            Ok(Some(saved))
        } else {
            resume::check_new_dir(&self.dir)?;
            Ok(None)
        }
    }
}

/// The device the settings name, tuned as they say.
fn open_gpu(cfg: &Config) -> Result<Gpu> {
    Ok(Gpu::new(cfg.backend, cfg.matmul)?.tuned(cfg.tune))
}

/// [`run_with`], keeping the run's state in `checkpointing`'s directory as it goes (see
/// [`resume`]); with `resume`, going on from the state found there. A signal ends the run with
/// [`resume::Interrupted`] once the state is written.
pub fn run_resumable(cfg: &Config, files: &WeightFiles, checkpointing: Option<&Checkpointing>) -> Result<Report> {
    cfg.validate()?;
    shards::check_teacher(cfg, files)?;
    if let Some(dir) = &cfg.logits_cache {
        checkpoint::check_writable_dir("--logits-cache", dir)?;
    }
    let start = Instant::now();
    let (teacher_arch, student_arch) = (cfg.teacher()?, cfg.student()?);
    let saved = checkpointing.map(Checkpointing::check).transpose()?.flatten();
    let starting = StartingWeights::load(files, &teacher_arch, &student_arch)?;
    let shard = shards::ShardRecord::of(cfg, &starting)?;
    ensure!(
        cfg.scratch_from.is_none() || files.student_init.is_none(),
        "--scratch-from cannot tell whether the earlier run's students started from the same --student-init \
         weights; give one or the other"
    );
    let earlier_scratch = cfg.scratch_from.as_deref().map(|p| EarlierScratch::read(p, cfg)).transpose()?;
    let saver = WeightSaver { dir: files.save_dir.clone(), config_json: serde_json::to_string(cfg)? };
    let gpu = open_gpu(cfg)?;
    println!("Adapter: {}", gpu::describe(&gpu.info));
    println!("Kernel family: {:?}", gpu.family());
    if let Some(earlier) = &earlier_scratch {
        earlier.check_adapter(&gpu::describe(&gpu.info))?;
    }
    for arch in [&teacher_arch, &student_arch] {
        check_batch_fits(&gpu, arch, cfg.batch_size)?;
    }

    let t = Instant::now();
    let ds = load_data(cfg)?;
    let mut data = DeviceData::upload(&gpu, &ds.train, &ds.test)?;
    let labelled = cfg.labelled.map(|n| seeds::labelled_subset(&ds.train.labels, n, cfg.seed)).transpose()?;
    if let Some(subset) = &labelled {
        data.keep_labels_of(&gpu, &ds.train, subset)?;
        println!(
            "Labelled: {} of the {} training images keep their labels (class-balanced, seeded); the teacher keeps all",
            subset.len(),
            ds.train.len()
        );
    }
    let data_seconds = t.elapsed().as_secs_f64();
    let checkpoints = match checkpointing {
        None => None,
        Some(c) => {
            let given = [&starting.teacher, &starting.teacher_init, &starting.student_init].map(|w| w.as_deref());
            let fingerprint = Fingerprint::of(cfg, given, &ds, &gpu);
            Some(match saved {
                Some(saved) => {
                    println!("Resuming the run in {} from {}", c.dir.display(), saved.describe());
                    Checkpoints::resume(&c.dir, c.every, fingerprint, saved)?
                }
                None => Checkpoints::start(&c.dir, c.every, fingerprint)?,
            })
        }
    };
    if let Some(c) = checkpointing {
        let (state, minutes) = (c.dir.join(resume::STATE_FILE), c.every.as_secs_f64() / 60.0);
        println!("Run state: {} (written at each epoch's end and every {minutes} min)", state.display());
    }
    let phases = Phases {
        gpu: &gpu,
        cfg,
        data: &data,
        test_labels: &ds.test.labels,
        checkpoints: checkpoints.as_ref(),
        labelled: labelled.as_deref(),
    };

    let done = checkpoints.as_ref().map(Checkpoints::progress).unwrap_or_default();
    let (teacher, teacher_result) = train_teacher(&phases, &teacher_arch, files, &starting, &saver)?;

    let t = Instant::now();
    let cache = match &cfg.logits_cache {
        Some(dir) if cfg.distill_teacher == DistillTeacher::Frozen => {
            Some(LogitsCache::new(dir, (&teacher_arch, &teacher.read_flat(&gpu)?), &ds, &gpu)?)
        }
        _ => None,
    };
    let distill_from = distillation_teacher(&phases, &teacher_arch, &teacher, cache.as_ref())?;
    let teacher_logits_seconds = done.teacher_logits_seconds.unwrap_or(t.elapsed().as_secs_f64());

    println!("{}", student_arch.summary());
    let pairs = phases.student_runs(&student_arch, &distill_from, &starting, earlier_scratch.as_ref(), &saver)?;
    let statistics = (pairs.len() > 1).then(|| Statistics::of(&pairs));
    let sweep = phases.sweep(&student_arch, &distill_from, &starting, &saver)?;

    let tuning = gpu.tuner().summary();
    if tuning.timed > 0 {
        println!(
            "Tuning: {} kernel shapes timed on this device in {:.1}s, kept for later runs",
            tuning.timed, tuning.seconds
        );
    }
    if let Some(c) = &checkpoints {
        let (writes, largest, seconds) = c.cost();
        println!(
            "Run state: written {writes} times by this process, {:.1} MB at most, {seconds:.2}s in all ({:.3}% of its time)",
            largest as f64 / 1e6,
            100.0 * seconds / start.elapsed().as_secs_f64()
        );
    }
    Ok(Report {
        adapter: gpu::describe(&gpu.info),
        config: cfg.clone(),
        weights: files.clone(),
        teacher: teacher_result,
        distilled: pairs[0].distilled.clone(),
        scratch: pairs[0].scratch.clone(),
        teacher_after_distillation: pairs[0].teacher_after_distillation.clone(),
        runs: pairs,
        statistics,
        sweep,
        teacher_logits_seconds,
        data_seconds,
        total_seconds: checkpoints.as_ref().map_or(start.elapsed().as_secs_f64(), Checkpoints::seconds),
        resumed_from: checkpoints.map(|c| c.progress().resumed).unwrap_or_default(),
        shard,
    })
}

/// What distilled students learn from: the frozen teacher's logits for every training and
/// test image, computed once (or read from `cache`, and kept there), the teacher itself, and
/// for a feature term its layer's outputs for every training image where they fit in
/// `--feature-table-gib` (otherwise it runs at every step); or, for the seed's Distiller, the
/// teacher's weights to copy.
fn distillation_teacher<'a>(
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
fn train_teacher(
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
    let result = RunResult::from_epochs("teacher", epochs, test, ce, phases.data.train.samples);
    if let Some(c) = phases.checkpoints {
        let weights = teacher.read_flat(gpu)?;
        c.phase_done("teacher", |p| p.teacher = Some(result.clone()), vec![("teacher".into(), weights)])?;
    }
    Ok((teacher, result))
}

/// What `kd-wgpu evaluate` reports.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Evaluation {
    pub samples: usize,
    /// Mean cross-entropy over the test images.
    pub loss: f64,
    pub accuracy: f64,
    pub classes: classes::ClassResults,
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
    let gpu = open_gpu(cfg)?;
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

/// `kd-wgpu evaluate`: loads `weights` (the network its metadata names; with `expected`, it
/// must be that one), reports its test loss and accuracy, and with `logits_out` writes its
/// test logits as a float32 (N, 10) .npy file.
pub fn evaluate_file(
    cfg: &Config,
    expected: Option<&Architecture>,
    weights: &Path,
    logits_out: Option<&Path>,
) -> Result<Evaluation> {
    cfg.validate()?;
    let arch = match expected {
        Some(arch) => arch.clone(),
        None => checkpoint::read_architecture(weights)?,
    };
    let flat = checkpoint::load(weights, &arch)?;
    let gpu = open_gpu(cfg)?;
    println!("Adapter: {}", gpu::describe(&gpu.info));
    check_batch_fits(&gpu, &arch, cfg.batch_size)?;
    let mut ds = load_data(cfg)?;
    // Only the test split is used; one training image keeps the upload small.
    ds.train.truncate(1);
    let data = DeviceData::upload(&gpu, &ds.train, &ds.test)?;
    let model = Model::new(&gpu, &arch, &flat)?;
    println!("{} weights from {}", checkpoint::describe(&arch), weights.display());
    let phases =
        Phases { gpu: &gpu, cfg, data: &data, test_labels: &ds.test.labels, checkpoints: None, labelled: None };
    let Tested { stats: test, classes, logits } =
        phases.evaluate(arch.name(), &model, Loss::CrossEntropy, None, "accuracy")?;
    let n = data.test.samples;
    println!("Test loss (cross-entropy): {:.4}, accuracy: {:.4} on {n} images", test.loss, test.accuracy);
    print!("{}", classes.render());
    if let Some(path) = logits_out {
        let mut values = logits.read_f32(&gpu)?;
        values.truncate(n * NUM_CLASSES);
        checkpoint::write_atomic(path, &checkpoint::npy_f32(&[n, NUM_CLASSES], &values)?)?;
        println!("Wrote test logits ({n} x {NUM_CLASSES}, float32) to {}", path.display());
    }
    Ok(Evaluation { samples: n, loss: test.loss, accuracy: test.accuracy, classes })
}
