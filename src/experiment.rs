//! The seed program end to end: load data, train the teacher, distil it into the student,
//! train the same student architecture from scratch, evaluate all three, report.

use crate::checkpoint;
use crate::data::{self, Dataset, LoadOptions, NUM_CLASSES};
use crate::gpu::{self, BackendChoice, Gpu, MatmulVariant, Tensor};
use crate::model::{Architecture, STUDENT, TEACHER};
use crate::ops::adam::AdamConfig;
use crate::progress::EpochProgress;
use crate::train::{check_batch_fits, run_epochs_together, DeviceData, DeviceSplit, EpochStats, Loss, Model, Plan};
use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Everything the experiment's flags set.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Config {
    pub backend: BackendChoice,
    pub matmul: MatmulVariant,
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

/// The weights named by [`WeightFiles`], loaded and checked.
struct StartingWeights {
    teacher: Option<Vec<f32>>,
    teacher_init: Option<Vec<f32>>,
    student_init: Option<Vec<f32>>,
}

/// Loads every given weight file, so that a bad one is refused before any training.
fn load_starting_weights(files: &WeightFiles) -> Result<StartingWeights> {
    if files.teacher.is_some() && files.teacher_init.is_some() {
        bail!("--teacher (a trained teacher, not trained again) and --teacher-init (a starting point for training) exclude each other");
    }
    let load = |flag: &str, path: &Option<PathBuf>, arch: &Architecture| -> Result<Option<Vec<f32>>> {
        path.as_deref()
            .map(|p| checkpoint::load(p, arch).with_context(|| format!("{flag} {}", p.display())))
            .transpose()
    };
    let weights = StartingWeights {
        teacher: load("--teacher", &files.teacher, &TEACHER)?,
        teacher_init: load("--teacher-init", &files.teacher_init, &TEACHER)?,
        student_init: load("--student-init", &files.student_init, &STUDENT)?,
    };
    if let Some(dir) = &files.save_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--save-dir {}: cannot create the directory", dir.display()))?;
    }
    Ok(weights)
}

/// Refuses out-of-range settings before any work starts.
pub fn validate(cfg: &Config) -> Result<()> {
    for (flag, alpha) in
        std::iter::once(("--alpha", cfg.alpha)).chain(cfg.sweep_alpha.iter().map(|&a| ("--sweep-alpha", a)))
    {
        if !(0.0..=1.0).contains(&alpha) {
            bail!("{flag} {alpha} is outside [0, 1]: it weighs the hard-label loss against the distillation loss");
        }
    }
    let temps = std::iter::once(("--temperature", cfg.temperature))
        .chain(cfg.sweep_temperature.iter().map(|&t| ("--sweep-temperature", t)));
    for (flag, t) in temps {
        if !(t > 0.0 && t.is_finite()) {
            bail!("{flag} {t} must be a finite number above 0");
        }
    }
    if !(cfg.learning_rate > 0.0 && cfg.learning_rate.is_finite()) {
        bail!("--learning-rate {} must be a finite number above 0", cfg.learning_rate);
    }
    if cfg.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    if cfg.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if cfg.train_limit == Some(0) || cfg.test_limit == Some(0) {
        bail!("--train-limit and --test-limit must be at least 1 when given");
    }
    Ok(())
}

/// One trained model's record.
#[derive(Clone, Debug, serde::Serialize)]
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
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    pub adapter: String,
    pub config: Config,
    pub weights: WeightFiles,
    pub teacher: RunResult,
    /// The first run's students.
    pub distilled: RunResult,
    pub scratch: RunResult,
    /// Every run's students (`--runs`), the first included.
    pub runs: Vec<StudentPair>,
    /// Over the runs, when there are several.
    pub statistics: Option<Statistics>,
    /// Distilled students over the --sweep-alpha x --sweep-temperature grid.
    pub sweep: Vec<SweepPoint>,
    pub teacher_logits_seconds: f64,
    pub data_seconds: f64,
    pub total_seconds: f64,
}

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

/// The epoch's sample order: a seeded shuffle, or the file order with `--no-shuffle`.
fn epoch_order(rng: &mut ChaCha8Rng, samples: usize, shuffle: bool) -> Vec<u32> {
    let mut order: Vec<u32> = (0..samples as u32).collect();
    if shuffle {
        order.shuffle(rng);
    }
    order
}

fn identity(samples: usize) -> Vec<u32> {
    (0..samples as u32).collect()
}

/// One model of a group trained side by side.
pub struct FitJob<'a> {
    pub name: String,
    pub model: &'a Model,
    pub loss: Loss,
    /// The teacher's logits for the training images (distillation only).
    pub teacher_table: Option<&'a Tensor>,
    /// Seed of the model's epoch shuffles.
    pub order_seed: u64,
}

/// Trains `model` for `epochs`, printing Keras-like lines; returns per-epoch stats.
pub fn fit(
    gpu: &Gpu,
    cfg: &Config,
    data: &DeviceData,
    job: FitJob,
    epochs: usize,
    metric: &'static str,
) -> Result<Vec<EpochStats>> {
    Ok(fit_together(gpu, cfg, data, &[job], epochs, metric)?.remove(0))
}

/// Trains several models at once, every step of all of them in one submission (see
/// [`run_epochs_together`]); one Keras-like line per model and epoch. Each model's result is
/// what it would be trained alone: the plans share no buffer.
pub fn fit_together(
    gpu: &Gpu,
    cfg: &Config,
    data: &DeviceData,
    jobs: &[FitJob],
    epochs: usize,
    metric: &'static str,
) -> Result<Vec<Vec<EpochStats>>> {
    let adam = AdamConfig { learning_rate: cfg.learning_rate, ..AdamConfig::default() };
    let plans = jobs
        .iter()
        .map(|j| Plan::train(gpu, &j.name, j.model, j.loss, data, &data.train, j.teacher_table, cfg.batch_size, &adam))
        .collect::<Result<Vec<_>>>()?;
    let plan_refs: Vec<&Plan> = plans.iter().collect();
    let mut rngs: Vec<ChaCha8Rng> = jobs.iter().map(|j| ChaCha8Rng::seed_from_u64(j.order_seed)).collect();
    let mut stats = vec![Vec::with_capacity(epochs); jobs.len()];
    for epoch in 1..=epochs {
        let orders: Vec<Vec<u32>> = rngs.iter_mut().map(|r| epoch_order(r, data.train.samples, cfg.shuffle)).collect();
        let order_refs: Vec<&[u32]> = orders.iter().map(Vec::as_slice).collect();
        let bar = EpochProgress::new(Some(format!("Epoch {epoch}/{epochs}")), plans[0].steps, metric);
        let s = run_epochs_together(gpu, &plan_refs, &order_refs, cfg.sync_points, |done, m| {
            bar.update(done, m[0].0, m[0].1)
        })
        .with_context(|| {
            format!("training {}, epoch {epoch}", jobs.iter().map(|j| j.name.as_str()).collect::<Vec<_>>().join(" + "))
        })?;
        if jobs.len() == 1 {
            bar.finish(s[0].loss, s[0].accuracy);
        } else {
            let rows: Vec<(&str, f64, f64)> =
                jobs.iter().zip(&s).map(|(j, e)| (j.name.as_str(), e.loss, e.accuracy)).collect();
            bar.finish_group(&rows);
        }
        for (all, e) in stats.iter_mut().zip(s) {
            all.push(e);
        }
    }
    Ok(stats)
}

/// Evaluates on the test split in file order, printing Keras's evaluate line.
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    gpu: &Gpu,
    cfg: &Config,
    run: &str,
    model: &Model,
    loss: Loss,
    data: &DeviceData,
    split: &DeviceSplit,
    teacher_table: Option<&Tensor>,
    metric: &'static str,
) -> Result<EpochStats> {
    let plan = Plan::evaluate(gpu, run, model, loss, data, split, teacher_table, cfg.batch_size)?;
    let bar = EpochProgress::new(None, plan.steps, metric);
    let s =
        plan.run_epoch(gpu, &identity(split.samples), 1, |_, _, _| {}).with_context(|| format!("evaluating {run}"))?;
    bar.finish(s.loss, s.accuracy);
    Ok(s)
}

fn result(name: &str, epochs: Vec<EpochStats>, test: EpochStats, test_ce: f64, samples: usize) -> RunResult {
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
    }
}

/// Runs the whole program from random weights, saving nothing.
pub fn run(cfg: &Config) -> Result<Report> {
    run_with(cfg, &WeightFiles::default())
}

/// Runs the whole program, starting from or saving the weight files in `files`.
pub fn run_with(cfg: &Config, files: &WeightFiles) -> Result<Report> {
    validate(cfg)?;
    let start = Instant::now();
    let starting = load_starting_weights(files)?;
    let config_json = serde_json::to_string(cfg)?;
    let save = |gpu: &Gpu, file: &str, model: &Model| -> Result<()> {
        if let Some(dir) = &files.save_dir {
            let path = dir.join(file);
            checkpoint::save(&path, &model.arch, &model.read_flat(gpu)?, &config_json)?;
            println!("Saved {}", path.display());
        }
        Ok(())
    };
    let gpu = Gpu::new(cfg.backend, cfg.matmul)?;
    println!("Adapter: {}", gpu::describe(&gpu.info));
    println!("Matrix-product kernel: {:?}", gpu.matmul);
    check_batch_fits(&gpu, &TEACHER, cfg.batch_size)?;

    let t = Instant::now();
    let ds = load_data(cfg)?;
    let data = DeviceData::upload(&gpu, &ds.train, &ds.test)?;
    let data_seconds = t.elapsed().as_secs_f64();

    // Teacher.
    println!("{}", TEACHER.summary());
    let metric = "sparse_categorical_accuracy";
    let teacher = match starting.teacher.as_ref().or(starting.teacher_init.as_ref()) {
        Some(flat) => Model::new(&gpu, TEACHER, flat)?,
        None => Model::new(&gpu, TEACHER, &TEACHER.init_glorot(cfg.seed))?,
    };
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
                teacher_table: None,
                order_seed: cfg.seed,
            };
            fit(&gpu, cfg, &data, job, cfg.teacher_epochs, metric)?
        }
    };
    save(&gpu, "teacher.safetensors", &teacher)?;
    let test = evaluate(&gpu, cfg, "teacher", &teacher, Loss::CrossEntropy, &data, &data.test, None, metric)?;
    let teacher_result = result("teacher", epochs, test, test.loss, data.train.samples);

    // The frozen teacher's logits, once for every training and test image.
    let t = Instant::now();
    let train_table = teacher_logits(&gpu, cfg, &teacher, &data, &data.train)?;
    let test_table = teacher_logits(&gpu, cfg, &teacher, &data, &data.test)?;
    let teacher_logits_seconds = t.elapsed().as_secs_f64();
    println!(
        "Teacher logits for {} + {} images in {teacher_logits_seconds:.1}s",
        data.train.samples, data.test.samples
    );

    // The students: one distilled and one from scratch, `--runs` times over different seeds.
    println!("{}", student_named("student").summary());
    let runs = cfg.runs.max(1);
    let mut pairs = Vec::with_capacity(runs);
    for r in 0..runs {
        let seed = cfg.seed.wrapping_add(1000 * r as u64);
        if runs > 1 {
            println!("Students, run {}/{runs} (seed {seed})", r + 1);
        }
        // With several runs (or --student-init) the two students of a run start from the same
        // weights and see the same sample order, so their difference is the teacher's doing and
        // the runs' differences pair up. A single run keeps the seed program's fresh
        // initialisation of the scratch student (Keras's clone_model).
        let paired = runs > 1 || starting.student_init.is_some();
        let distilled_init = starting.student_init.clone().unwrap_or_else(|| STUDENT.init_glorot(seed.wrapping_add(1)));
        let scratch_init = if paired { distilled_init.clone() } else { STUDENT.init_glorot(seed.wrapping_add(2)) };
        let scratch_order_seed = if paired { seed.wrapping_add(1) } else { seed.wrapping_add(2) };
        let suffix = if r == 0 { String::new() } else { format!("-run{}", r + 1) };
        let students = Students { data: &data, train_table: &train_table, test_table: &test_table };
        let specs = [
            StudentSpec {
                name: "distilled student".into(),
                init: distilled_init,
                distill: Some(Loss::Distillation { alpha: cfg.alpha, temperature: cfg.temperature }),
                order_seed: seed.wrapping_add(1),
                save_as: Some(format!("student{suffix}.safetensors")),
            },
            StudentSpec {
                name: "scratch student".into(),
                init: scratch_init,
                distill: None,
                order_seed: scratch_order_seed,
                save_as: Some(format!("scratch{suffix}.safetensors")),
            },
        ];
        let mut trained = students.train(&gpu, cfg, &specs, save)?.into_iter();
        let (distilled, scratch) = (trained.next().expect("two students"), trained.next().expect("two students"));
        pairs.push(StudentPair { seed, distilled, scratch });
    }
    let statistics = (runs > 1).then(|| Statistics::of(&pairs));
    let first = pairs[0].clone();

    // The sweep: distilled students over the grid, all from the first run's initial weights and
    // sample order, so that only alpha and the temperature differ.
    let grid = cfg.sweep_grid();
    let mut sweep = Vec::with_capacity(grid.len());
    if !grid.is_empty() {
        let init = starting.student_init.clone().unwrap_or_else(|| STUDENT.init_glorot(cfg.seed.wrapping_add(1)));
        let students = Students { data: &data, train_table: &train_table, test_table: &test_table };
        println!("Sweep: {} distilled students side by side", grid.len());
        let specs: Vec<StudentSpec> = grid
            .iter()
            .map(|&(alpha, temperature)| StudentSpec {
                name: format!("distilled (alpha {alpha}, T {temperature})"),
                init: init.clone(),
                distill: Some(Loss::Distillation { alpha, temperature }),
                order_seed: cfg.seed.wrapping_add(1),
                save_as: None,
            })
            .collect();
        let results = students.train(&gpu, cfg, &specs, save)?;
        for (&(alpha, temperature), result) in grid.iter().zip(results) {
            sweep.push(SweepPoint { alpha, temperature, result });
        }
    }

    Ok(Report {
        adapter: gpu::describe(&gpu.info),
        config: cfg.clone(),
        weights: files.clone(),
        teacher: teacher_result,
        distilled: first.distilled,
        scratch: first.scratch,
        runs: pairs,
        statistics,
        sweep,
        teacher_logits_seconds,
        data_seconds,
        total_seconds: start.elapsed().as_secs_f64(),
    })
}

/// What `kd-wgpu evaluate` reports.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Evaluation {
    pub samples: usize,
    /// Mean cross-entropy over the test images.
    pub loss: f64,
    pub accuracy: f64,
}

/// `kd-wgpu evaluate`: loads `weights` as an `arch` model, reports its test loss and accuracy,
/// and with `logits_out` writes its test logits as a float32 (N, 10) .npy file.
pub fn evaluate_file(
    cfg: &Config,
    arch: &Architecture,
    weights: &Path,
    logits_out: Option<&Path>,
) -> Result<Evaluation> {
    validate(cfg)?;
    let flat = checkpoint::load(weights, arch)?;
    let gpu = Gpu::new(cfg.backend, cfg.matmul)?;
    println!("Adapter: {}", gpu::describe(&gpu.info));
    check_batch_fits(&gpu, arch, cfg.batch_size)?;
    let mut ds = load_data(cfg)?;
    // Only the test split is used; one training image keeps the upload small.
    ds.train.truncate(1);
    let data = DeviceData::upload(&gpu, &ds.train, &ds.test)?;
    let model = Model::new(&gpu, *arch, &flat)?;
    println!("{} weights from {}", arch.name, weights.display());
    let test = evaluate(&gpu, cfg, arch.name, &model, Loss::CrossEntropy, &data, &data.test, None, "accuracy")?;
    let n = data.test.samples;
    println!("Test loss (cross-entropy): {:.4}, accuracy: {:.4} on {n} images", test.loss, test.accuracy);
    if let Some(path) = logits_out {
        let table = Tensor::zeros(&gpu, "logits table", &[n, NUM_CLASSES])?;
        Plan::logits(&gpu, "logits", &model, &data, &data.test, &table, cfg.batch_size)?.run_epoch(
            &gpu,
            &identity(n),
            1,
            |_, _, _| {},
        )?;
        let mut logits = table.read_f32(&gpu)?;
        logits.truncate(n * NUM_CLASSES);
        checkpoint::write_atomic(path, &checkpoint::npy_f32(&[n, NUM_CLASSES], &logits)?)?;
        println!("Wrote test logits ({n} x {NUM_CLASSES}, float32) to {}", path.display());
    }
    Ok(Evaluation { samples: n, loss: test.loss, accuracy: test.accuracy })
}

/// The teacher's logits tables and the data the students train on.
struct Students<'a> {
    data: &'a DeviceData,
    train_table: &'a Tensor,
    test_table: &'a Tensor,
}

/// One student to train: its name, starting weights, loss and file to save.
struct StudentSpec {
    name: String,
    init: Vec<f32>,
    /// The distillation loss; None trains on plain cross-entropy (the scratch student).
    distill: Option<Loss>,
    order_seed: u64,
    save_as: Option<String>,
}

impl Students<'_> {
    /// Trains the students side by side, saves those with a file name, and evaluates each on
    /// the test set.
    fn train(
        &self,
        gpu: &Gpu,
        cfg: &Config,
        specs: &[StudentSpec],
        save: impl Fn(&Gpu, &str, &Model) -> Result<()>,
    ) -> Result<Vec<RunResult>> {
        let (data, samples) = (self.data, self.data.train.samples);
        let models = specs.iter().map(|s| Model::new(gpu, STUDENT, &s.init)).collect::<Result<Vec<_>>>()?;
        let losses: Vec<(Loss, Option<&Tensor>, Option<&Tensor>)> = specs
            .iter()
            .map(|s| match s.distill {
                Some(l) => (l, Some(self.train_table), Some(self.test_table)),
                None => (Loss::CrossEntropy, None, None),
            })
            .collect();
        let jobs: Vec<FitJob> = specs
            .iter()
            .zip(&models)
            .zip(&losses)
            .map(|((s, m), l)| FitJob {
                name: s.name.clone(),
                model: m,
                loss: l.0,
                teacher_table: l.1,
                order_seed: s.order_seed,
            })
            .collect();
        let all_epochs = fit_together(gpu, cfg, data, &jobs, cfg.student_epochs, "acc")?;
        let mut results = Vec::with_capacity(specs.len());
        for (((spec, model), (loss, _, test_table)), epochs) in specs.iter().zip(&models).zip(&losses).zip(all_epochs) {
            if let Some(file) = &spec.save_as {
                save(gpu, file, model)?;
            }
            println!("{}: evaluation", spec.name);
            let test = evaluate(gpu, cfg, &spec.name, model, *loss, data, &data.test, *test_table, "acc")?;
            // The combined loss is not comparable with plain cross-entropy: report that too.
            let ce = match spec.distill {
                None => test.loss,
                Some(_) => {
                    Plan::evaluate(gpu, &spec.name, model, Loss::CrossEntropy, data, &data.test, None, cfg.batch_size)?
                        .run_epoch(gpu, &identity(data.test.samples), 1, |_, _, _| {})?
                        .loss
                }
            };
            let label = if spec.distill.is_some() { "distilled" } else { "scratch" };
            results.push(result(label, epochs, test, ce, samples));
        }
        Ok(results)
    }
}

/// One distilled student of the sweep.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SweepPoint {
    pub alpha: f32,
    pub temperature: f32,
    pub result: RunResult,
}

/// One run's two students.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StudentPair {
    pub seed: u64,
    pub distilled: RunResult,
    pub scratch: RunResult,
}

/// Test accuracy over several runs: each student's mean and standard deviation, and the paired
/// difference (distilled - scratch) with a 95% confidence interval from Student's t.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Statistics {
    pub runs: usize,
    pub distilled_mean: f64,
    pub distilled_std: f64,
    pub scratch_mean: f64,
    pub scratch_std: f64,
    pub difference_mean: f64,
    pub difference_std: f64,
    pub difference_ci95: (f64, f64),
}

/// Mean and sample standard deviation (0 for a single value).
fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

/// The 97.5% quantile of Student's t with `df` degrees of freedom (two-sided 95%).
pub fn t_quantile_975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        1..=30 => TABLE[df - 1],
        // Beyond the table: the normal quantile plus the first term of its expansion in 1/df.
        _ => 1.959_964 * (1.0 + (1.0 + 1.959_964 * 1.959_964) / (4.0 * df as f64)),
    }
}

impl Statistics {
    pub fn of(pairs: &[StudentPair]) -> Statistics {
        let d: Vec<f64> = pairs.iter().map(|p| p.distilled.test_accuracy).collect();
        let s: Vec<f64> = pairs.iter().map(|p| p.scratch.test_accuracy).collect();
        let diff: Vec<f64> = d.iter().zip(&s).map(|(a, b)| a - b).collect();
        let ((dm, ds), (sm, ss), (fm, fs)) = (mean_std(&d), mean_std(&s), mean_std(&diff));
        let half = t_quantile_975(pairs.len().saturating_sub(1)) * fs / (pairs.len() as f64).sqrt();
        Statistics {
            runs: pairs.len(),
            distilled_mean: dm,
            distilled_std: ds,
            scratch_mean: sm,
            scratch_std: ss,
            difference_mean: fm,
            difference_std: fs,
            difference_ci95: (fm - half, fm + half),
        }
    }

    /// Whether the interval excludes zero, in words.
    pub fn verdict(&self) -> &'static str {
        let (lo, hi) = self.difference_ci95;
        if lo > 0.0 {
            "distillation helped (the 95% interval is above zero)"
        } else if hi < 0.0 {
            "distillation hurt (the 95% interval is below zero)"
        } else {
            "no evidence either way (the 95% interval contains zero)"
        }
    }
}

fn student_named(name: &'static str) -> Architecture {
    Architecture { name, ..STUDENT }
}

/// The model's logits for every image of `split`, as a samples x 10 table on the device.
pub fn teacher_logits(
    gpu: &Gpu,
    cfg: &Config,
    model: &Model,
    data: &DeviceData,
    split: &DeviceSplit,
) -> Result<Tensor> {
    let table = Tensor::zeros(gpu, "teacher logits table", &[split.samples, NUM_CLASSES])?;
    let plan = Plan::logits(gpu, "teacher logits", model, data, split, &table, cfg.batch_size)?;
    plan.run_epoch(gpu, &identity(split.samples), 1, |_, _, _| {})?;
    Ok(table)
}

impl Report {
    /// Test accuracy of the sweep's students: alphas down, temperatures across.
    fn render_sweep(&self) -> String {
        let mut alphas: Vec<f32> = self.sweep.iter().map(|p| p.alpha).collect();
        let mut temps: Vec<f32> = self.sweep.iter().map(|p| p.temperature).collect();
        alphas.dedup();
        temps.sort_by(f32::total_cmp);
        temps.dedup();
        let mut s =
            format!("\nSweep: test accuracy of distilled students (scratch: {:.4})\n", self.scratch.test_accuracy);
        s += &format!("{:>8}", "alpha");
        for t in &temps {
            s += &format!(" {:>9}", format!("T={t}"));
        }
        s += "\n";
        for a in &alphas {
            s += &format!("{a:>8}");
            for t in &temps {
                match self.sweep.iter().find(|p| p.alpha == *a && p.temperature == *t) {
                    Some(p) => s += &format!(" {:>9.4}", p.result.test_accuracy),
                    None => s += &format!(" {:>9}", "-"),
                }
            }
            s += "\n";
        }
        s
    }

    /// The closing table.
    pub fn render(&self) -> String {
        let mut s = String::from("\nResults on the test set\n");
        s += &format!(
            "{:<10} {:>10} {:>10} {:>10} {:>12} {:>12}\n",
            "model", "accuracy", "loss", "test CE", "train time", "samples/s"
        );
        for r in [&self.teacher, &self.distilled, &self.scratch] {
            s += &format!(
                "{:<10} {:>10.4} {:>10.4} {:>10.4} {:>11.1}s {:>12.0}\n",
                r.name, r.test_accuracy, r.test_loss, r.test_cross_entropy, r.train_seconds, r.train_samples_per_second
            );
        }
        match &self.statistics {
            None => {
                let diff = self.distilled.test_accuracy - self.scratch.test_accuracy;
                s += &format!("distilled - scratch accuracy: {diff:+.4} ({:+.2} points, one seed)\n", 100.0 * diff);
            }
            Some(st) => {
                s += &format!("\n{:<6} {:>10} {:>10} {:>12}\n", "seed", "distilled", "scratch", "difference");
                for p in &self.runs {
                    let (d, c) = (p.distilled.test_accuracy, p.scratch.test_accuracy);
                    s += &format!("{:<6} {d:>10.4} {c:>10.4} {:>+12.4}\n", p.seed, d - c);
                }
                s += &format!(
                    "over {} runs: distilled {:.4} ± {:.4}, scratch {:.4} ± {:.4} (mean ± sd)\n",
                    st.runs, st.distilled_mean, st.distilled_std, st.scratch_mean, st.scratch_std
                );
                s += &format!(
                    "paired difference {:+.4}, 95% CI [{:+.4}, {:+.4}]: {}\n",
                    st.difference_mean,
                    st.difference_ci95.0,
                    st.difference_ci95.1,
                    st.verdict()
                );
            }
        }
        if !self.sweep.is_empty() {
            s += &self.render_sweep();
        }
        s += &format!(
            "phases: data {:.1}s, teacher fit {:.1}s + evaluate {:.1}s, teacher logits {:.1}s, \
             students fit {:.1}s (distilled and scratch side by side) + evaluate {:.1}s; total {:.1}s\n",
            self.data_seconds,
            self.teacher.train_seconds,
            self.teacher.evaluate_seconds,
            self.teacher_logits_seconds,
            // A run's two students share their training time.
            self.runs.iter().map(|p| p.distilled.train_seconds).sum::<f64>(),
            self.runs.iter().map(|p| p.distilled.evaluate_seconds + p.scratch.evaluate_seconds).sum::<f64>(),
            self.total_seconds
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(acc: f64) -> RunResult {
        RunResult {
            name: String::new(),
            epochs: vec![],
            test_loss: 0.0,
            test_accuracy: acc,
            test_cross_entropy: 0.0,
            train_seconds: 0.0,
            evaluate_seconds: 0.0,
            train_samples_per_second: 0.0,
        }
    }

    #[test]
    fn paired_statistics_match_a_hand_computation() {
        let pairs: Vec<StudentPair> = [(0.86, 0.85), (0.87, 0.85), (0.85, 0.86), (0.88, 0.86)]
            .iter()
            .enumerate()
            .map(|(i, &(d, s))| StudentPair { seed: i as u64, distilled: run(d), scratch: run(s) })
            .collect();
        let st = Statistics::of(&pairs);
        // Differences 0.01, 0.02, -0.01, 0.02: mean 0.01, sd sqrt(0.0006 / 3) = 0.014142.
        assert!((st.difference_mean - 0.01).abs() < 1e-12);
        assert!((st.difference_std - 0.014142135).abs() < 1e-8);
        let half = 3.182 * 0.014142135 / 2.0;
        assert!((st.difference_ci95.0 - (0.01 - half)).abs() < 1e-8);
        assert!((st.difference_ci95.1 - (0.01 + half)).abs() < 1e-8);
        assert!(st.verdict().starts_with("no evidence"));
        assert!((st.distilled_mean - 0.865).abs() < 1e-12);
        assert!((st.scratch_std - 0.005773503).abs() < 1e-8);
    }

    #[test]
    fn t_quantiles_fall_towards_the_normal_one() {
        assert_eq!(t_quantile_975(1), 12.706);
        assert_eq!(t_quantile_975(30), 2.042);
        assert!((t_quantile_975(60) - 2.000).abs() < 0.005);
        assert!((t_quantile_975(1000) - 1.962).abs() < 0.002);
        assert!(t_quantile_975(0).is_infinite());
    }
}
