//! The seed program end to end: load data, train the teacher, distil it into the student,
//! train the same student architecture from scratch, evaluate all three, report.

use crate::data::{self, Dataset, LoadOptions, NUM_CLASSES};
use crate::gpu::{self, BackendChoice, Gpu, MatmulVariant, Tensor};
use crate::model::{Architecture, STUDENT, TEACHER};
use crate::ops::adam::AdamConfig;
use crate::progress::EpochProgress;
use crate::train::{check_batch_fits, DeviceData, DeviceSplit, EpochStats, Loss, Model, Plan};
use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
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
}

/// Refuses out-of-range settings before any work starts.
pub fn validate(cfg: &Config) -> Result<()> {
    if !(0.0..=1.0).contains(&cfg.alpha) {
        bail!("--alpha {} is outside [0, 1]: it weighs the hard-label loss against the distillation loss", cfg.alpha);
    }
    if !(cfg.temperature > 0.0 && cfg.temperature.is_finite()) {
        bail!("--temperature {} must be a finite number above 0", cfg.temperature);
    }
    if !(cfg.learning_rate > 0.0 && cfg.learning_rate.is_finite()) {
        bail!("--learning-rate {} must be a finite number above 0", cfg.learning_rate);
    }
    if cfg.batch_size == 0 {
        bail!("--batch-size must be at least 1");
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
    pub teacher: RunResult,
    pub distilled: RunResult,
    pub scratch: RunResult,
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

/// Trains `model` for `epochs`, printing Keras-like lines; returns per-epoch stats.
#[allow(clippy::too_many_arguments)]
pub fn fit(
    gpu: &Gpu,
    cfg: &Config,
    run: &str,
    model: &Model,
    loss: Loss,
    data: &DeviceData,
    teacher_table: Option<&Tensor>,
    epochs: usize,
    metric: &'static str,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<EpochStats>> {
    let adam = AdamConfig { learning_rate: cfg.learning_rate, ..AdamConfig::default() };
    let plan = Plan::train(gpu, run, model, loss, data, &data.train, teacher_table, cfg.batch_size, &adam)?;
    let mut stats = Vec::new();
    for epoch in 1..=epochs {
        let order = epoch_order(rng, data.train.samples, cfg.shuffle);
        let bar = EpochProgress::new(Some(format!("Epoch {epoch}/{epochs}")), plan.steps, metric);
        let s = plan
            .run_epoch(gpu, &order, cfg.sync_points, |done, l, a| bar.update(done, l, a))
            .with_context(|| format!("training {run}, epoch {epoch}"))?;
        bar.finish(s.loss, s.accuracy);
        stats.push(s);
    }
    Ok(stats)
}

/// Evaluates on the test split in file order, printing Keras's evaluate line.
pub fn evaluate(gpu: &Gpu, cfg: &Config, run: &str, model: &Model, loss: Loss, data: &DeviceData, split: &DeviceSplit, teacher_table: Option<&Tensor>, metric: &'static str) -> Result<EpochStats> {
    let plan = Plan::evaluate(gpu, run, model, loss, data, split, teacher_table, cfg.batch_size)?;
    let bar = EpochProgress::new(None, plan.steps, metric);
    let s = plan.run_epoch(gpu, &identity(split.samples), 1, |_, _, _| {}).with_context(|| format!("evaluating {run}"))?;
    bar.finish(s.loss, s.accuracy);
    Ok(s)
}

fn result(name: &str, epochs: Vec<EpochStats>, test: EpochStats, test_ce: f64, samples: usize) -> RunResult {
    let train_seconds: f64 = epochs.iter().map(|e| e.seconds).sum();
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

/// Runs the whole program.
pub fn run(cfg: &Config) -> Result<Report> {
    validate(cfg)?;
    let start = Instant::now();
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
    let teacher = Model::new(&gpu, TEACHER, &TEACHER.init_glorot(cfg.seed))?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let metric = "sparse_categorical_accuracy";
    let epochs = fit(&gpu, cfg, "teacher", &teacher, Loss::CrossEntropy, &data, None, cfg.teacher_epochs, metric, &mut rng)?;
    let test = evaluate(&gpu, cfg, "teacher", &teacher, Loss::CrossEntropy, &data, &data.test, None, metric)?;
    let teacher_result = result("teacher", epochs, test, test.loss, data.train.samples);

    // The frozen teacher's logits, once for every training and test image.
    let t = Instant::now();
    let train_table = teacher_logits(&gpu, cfg, &teacher, &data, &data.train)?;
    let test_table = teacher_logits(&gpu, cfg, &teacher, &data, &data.test)?;
    let teacher_logits_seconds = t.elapsed().as_secs_f64();
    println!("Teacher logits for {} + {} images in {teacher_logits_seconds:.1}s", data.train.samples, data.test.samples);

    // Distilled student.
    println!("{}", student_named("student").summary());
    let distill = Loss::Distillation { alpha: cfg.alpha, temperature: cfg.temperature };
    let student = Model::new(&gpu, STUDENT, &STUDENT.init_glorot(cfg.seed.wrapping_add(1)))?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_add(1));
    let epochs = fit(&gpu, cfg, "distilled student", &student, distill, &data, Some(&train_table), cfg.student_epochs, "acc", &mut rng)?;
    let test = evaluate(&gpu, cfg, "distilled student", &student, distill, &data, &data.test, Some(&test_table), "acc")?;
    let ce = Plan::evaluate(&gpu, "distilled student (CE)", &student, Loss::CrossEntropy, &data, &data.test, None, cfg.batch_size)?
        .run_epoch(&gpu, &identity(data.test.samples), 1, |_, _, _| {})?;
    let distilled_result = result("distilled", epochs, test, ce.loss, data.train.samples);

    // The same architecture from scratch.
    let scratch = Model::new(&gpu, STUDENT, &STUDENT.init_glorot(cfg.seed.wrapping_add(2)))?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_add(2));
    println!("Student from scratch");
    let epochs = fit(&gpu, cfg, "scratch student", &scratch, Loss::CrossEntropy, &data, None, cfg.student_epochs, "acc", &mut rng)?;
    let test = evaluate(&gpu, cfg, "scratch student", &scratch, Loss::CrossEntropy, &data, &data.test, None, "acc")?;
    let scratch_result = result("scratch", epochs, test, test.loss, data.train.samples);

    Ok(Report {
        adapter: gpu::describe(&gpu.info),
        config: cfg.clone(),
        teacher: teacher_result,
        distilled: distilled_result,
        scratch: scratch_result,
        teacher_logits_seconds,
        data_seconds,
        total_seconds: start.elapsed().as_secs_f64(),
    })
}

fn student_named(name: &'static str) -> Architecture {
    Architecture { name, ..STUDENT }
}

/// The model's logits for every image of `split`, as a samples x 10 table on the device.
pub fn teacher_logits(gpu: &Gpu, cfg: &Config, model: &Model, data: &DeviceData, split: &DeviceSplit) -> Result<Tensor> {
    let table = Tensor::zeros(gpu, "teacher logits table", &[split.samples, NUM_CLASSES])?;
    let plan = Plan::logits(gpu, "teacher logits", model, data, split, &table, cfg.batch_size)?;
    plan.run_epoch(gpu, &identity(split.samples), 1, |_, _, _| {})?;
    Ok(table)
}

impl Report {
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
        let diff = self.distilled.test_accuracy - self.scratch.test_accuracy;
        s += &format!("distilled - scratch accuracy: {diff:+.4} ({:+.2} points, one seed)\n", 100.0 * diff);
        s += &format!(
            "phases: data {:.1}s, teacher fit {:.1}s + evaluate {:.1}s, teacher logits {:.1}s, distillation {:.1}s + {:.1}s, scratch {:.1}s + {:.1}s; total {:.1}s\n",
            self.data_seconds,
            self.teacher.train_seconds,
            self.teacher.evaluate_seconds,
            self.teacher_logits_seconds,
            self.distilled.train_seconds,
            self.distilled.evaluate_seconds,
            self.scratch.train_seconds,
            self.scratch.evaluate_seconds,
            self.total_seconds
        );
        s
    }
}
