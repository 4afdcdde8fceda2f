//! What runs an experiment: the seed program end to end (load data, train the teacher, distil
//! it into the student, train the same student from scratch, evaluate all three) and its
//! record, the [`Report`] that [`crate::results`] reads.
//!
//! - [`fit`]: fitting and evaluating models, side by side, saving and restoring their state;
//! - [`teacher`]: the teacher's training, its logits tables and feature table;
//! - [`students`]: each run's distilled and scratch student;
//! - [`sweep`]: distilled students over an alpha x temperature grid;
//! - [`weights`]: the weight files a run starts from and saves;
//! - [`seeds`]: each model's seeds and sample orders;
//! - [`resume`]: the run's state on disk, for resuming an interrupted run;
//! - [`logits_cache`]: the frozen teacher's logits tables kept between runs (`--logits-cache`);
//! - [`shards`]: an experiment split across machines (`--shard I/K`);
//! - [`scratch_from`]: scratch students taken from an earlier experiment (`--scratch-from`).

pub mod fit;
pub mod logits_cache;
pub mod resume;
pub mod scratch_from;
pub mod seeds;
pub mod shards;
pub mod students;
pub mod sweep;
pub mod teacher;
pub mod weights;

pub use teacher::frozen_teacher_logits;
pub use weights::StartingWeights;

use crate::checkpoint;
use crate::config::{Config, DistillTeacher, WeightFiles};
use crate::data::{self, Dataset, NUM_CLASSES};
use crate::gpu;
use crate::model::Architecture;
use crate::results::{classes::ClassResults, Report, Statistics, FORMAT};
use crate::train::{check_batch_fits, DeviceData, Loss, Model};
use anyhow::{ensure, Result};
use fit::{Phases, Tested};
use logits_cache::LogitsCache;
use resume::{Checkpoints, Fingerprint, SavedState};
use scratch_from::EarlierScratch;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use teacher::{distillation_teacher, train_teacher};
use weights::WeightSaver;

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
    let shard = shards::record(cfg, &starting)?;
    ensure!(
        cfg.scratch_from.is_none() || files.student_init.is_none(),
        "--scratch-from cannot tell whether the earlier run's students started from the same --student-init \
         weights; give one or the other"
    );
    let earlier_scratch = cfg.scratch_from.as_deref().map(|p| EarlierScratch::read(p, cfg)).transpose()?;
    let saver = WeightSaver { dir: files.save_dir.clone(), config_json: serde_json::to_string(cfg)? };
    let gpu = cfg.open_gpu()?;
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
        format: FORMAT.to_string(),
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
        merged_shards: Vec::new(),
    })
}

/// What `kd-wgpu evaluate` reports.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Evaluation {
    pub samples: usize,
    /// Mean cross-entropy over the test images.
    pub loss: f64,
    pub accuracy: f64,
    pub classes: ClassResults,
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
    let gpu = cfg.open_gpu()?;
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
