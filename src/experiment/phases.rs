//! The experiment's phases: training models (one, or several side by side), evaluating them,
//! the frozen teacher's logits table, the students of each run and of the sweep.

use super::config::{Config, StartingWeights};
use super::report::{RunResult, StudentPair, SweepPoint};
use crate::checkpoint;
use crate::data::NUM_CLASSES;
use crate::gpu::{Gpu, Tensor};
use crate::model::Architecture;
use crate::ops::adam::AdamConfig;
use crate::progress::EpochProgress;
use crate::train::{run_epochs_together, DeviceData, DeviceSplit, EpochStats, Feed, Loss, Model, Plan};
use anyhow::{Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;

/// The epoch's sample order: a seeded shuffle, or the file order with `--no-shuffle`.
fn epoch_order(rng: &mut ChaCha8Rng, samples: usize, shuffle: bool) -> Vec<u32> {
    let mut order = identity(samples);
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

/// Where `--save-dir` puts weight files, and the configuration they record.
pub struct WeightSaver {
    pub dir: Option<PathBuf>,
    pub config_json: String,
}

impl WeightSaver {
    pub fn save(&self, gpu: &Gpu, file: &str, model: &Model) -> Result<()> {
        if let Some(dir) = &self.dir {
            let path = dir.join(file);
            checkpoint::save(&path, &model.arch, &model.read_flat(gpu)?, &self.config_json)?;
            println!("Saved {}", path.display());
        }
        Ok(())
    }
}

/// The device, the settings and the resident data every phase works with.
pub struct Phases<'a> {
    pub gpu: &'a Gpu,
    pub cfg: &'a Config,
    pub data: &'a DeviceData,
}

impl Phases<'_> {
    fn feed<'b>(&'b self, split: &'b DeviceSplit, teacher_logits: Option<&'b Tensor>) -> Feed<'b> {
        Feed { data: self.data, split, teacher_logits }
    }

    /// Trains `job.model` for `epochs`, printing Keras-like lines; returns per-epoch stats.
    pub fn fit(&self, job: FitJob, epochs: usize, metric: &'static str) -> Result<Vec<EpochStats>> {
        Ok(self.fit_together(&[job], epochs, metric)?.remove(0))
    }

    /// Trains several models at once, every step of all of them in one submission (see
    /// [`run_epochs_together`]); one Keras-like line per model and epoch. Each model's result
    /// is what it would be trained alone: the plans share no buffer.
    pub fn fit_together(&self, jobs: &[FitJob], epochs: usize, metric: &'static str) -> Result<Vec<Vec<EpochStats>>> {
        let (cfg, gpu) = (self.cfg, self.gpu);
        let adam = AdamConfig { learning_rate: cfg.learning_rate, ..AdamConfig::default() };
        let plans = jobs
            .iter()
            .map(|j| {
                let feed = self.feed(&self.data.train, j.teacher_table);
                Plan::train(gpu, &j.name, j.model, j.loss, &feed, cfg.batch_size, &adam)
            })
            .collect::<Result<Vec<_>>>()?;
        let plan_refs: Vec<&Plan> = plans.iter().collect();
        let mut rngs: Vec<ChaCha8Rng> = jobs.iter().map(|j| ChaCha8Rng::seed_from_u64(j.order_seed)).collect();
        let names = jobs.iter().map(|j| j.name.as_str()).collect::<Vec<_>>().join(" + ");
        let mut stats = vec![Vec::with_capacity(epochs); jobs.len()];
        for epoch in 1..=epochs {
            let samples = self.data.train.samples;
            let orders: Vec<Vec<u32>> = rngs.iter_mut().map(|r| epoch_order(r, samples, cfg.shuffle)).collect();
            let order_refs: Vec<&[u32]> = orders.iter().map(Vec::as_slice).collect();
            let bar = EpochProgress::new(Some(format!("Epoch {epoch}/{epochs}")), plans[0].steps, metric);
            let s = run_epochs_together(gpu, &plan_refs, &order_refs, cfg.sync_points, |done, m| {
                bar.update(done, m[0].0, m[0].1)
            })
            .with_context(|| format!("training {names}, epoch {epoch}"))?;
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

    /// Evaluates on the test split in file order, printing Keras's evaluate line (`metric`
    /// names the accuracy as the seed's compile call does).
    pub fn evaluate(
        &self,
        name: &str,
        model: &Model,
        loss: Loss,
        teacher_table: Option<&Tensor>,
        metric: &'static str,
    ) -> Result<EpochStats> {
        self.test(name, model, loss, teacher_table, Some(metric))
    }

    /// Loss and accuracy on the test split; with `metric`, Keras's evaluate line is printed.
    fn test(
        &self,
        name: &str,
        model: &Model,
        loss: Loss,
        teacher_table: Option<&Tensor>,
        metric: Option<&'static str>,
    ) -> Result<EpochStats> {
        let feed = self.feed(&self.data.test, teacher_table);
        let plan = Plan::evaluate(self.gpu, name, model, loss, &feed, self.cfg.batch_size)?;
        let line = metric.map(|m| EpochProgress::new(None, plan.steps, m));
        let s = plan
            .run_epoch(self.gpu, &identity(self.data.test.samples), 1, |_, _, _| {})
            .with_context(|| format!("evaluating {name}"))?;
        if let Some(line) = line {
            line.finish(s.loss, s.accuracy);
        }
        Ok(s)
    }

    /// The model's logits for every image of `split`, as a samples x 10 table on the device.
    pub fn logits_table(&self, model: &Model, split: &DeviceSplit) -> Result<Tensor> {
        let table = Tensor::zeros(self.gpu, "logits table", &[split.samples, NUM_CLASSES])?;
        let plan = Plan::logits(self.gpu, "logits", model, &self.feed(split, None), &table, self.cfg.batch_size)?;
        plan.run_epoch(self.gpu, &identity(split.samples), 1, |_, _, _| {})?;
        Ok(table)
    }
}

/// The frozen teacher's logits for both splits, which every distilled student reads.
pub struct TeacherTables {
    pub train: Tensor,
    pub test: Tensor,
}

/// One student to train: its name, starting weights, loss and file to save.
pub struct StudentSpec {
    pub name: String,
    pub init: Vec<f32>,
    /// The distillation loss; None trains on plain cross-entropy (the scratch student).
    pub distill: Option<Loss>,
    pub order_seed: u64,
    pub save_as: Option<String>,
}

impl Phases<'_> {
    /// Trains the students side by side, saves those with a file name, and evaluates each on
    /// the test set.
    pub fn train_students(
        &self,
        student: &Architecture,
        tables: &TeacherTables,
        specs: &[StudentSpec],
        saver: &WeightSaver,
    ) -> Result<Vec<RunResult>> {
        let models = specs.iter().map(|s| Model::new(self.gpu, student, &s.init)).collect::<Result<Vec<_>>>()?;
        let jobs: Vec<FitJob> = specs
            .iter()
            .zip(&models)
            .map(|(s, model)| FitJob {
                name: s.name.clone(),
                model,
                loss: s.distill.unwrap_or(Loss::CrossEntropy),
                teacher_table: s.distill.map(|_| &tables.train),
                order_seed: s.order_seed,
            })
            .collect();
        let all_epochs = self.fit_together(&jobs, self.cfg.student_epochs, "acc")?;
        let mut results = Vec::with_capacity(specs.len());
        for ((spec, model), epochs) in specs.iter().zip(&models).zip(all_epochs) {
            if let Some(file) = &spec.save_as {
                saver.save(self.gpu, file, model)?;
            }
            println!("{}: evaluation", spec.name);
            let loss = spec.distill.unwrap_or(Loss::CrossEntropy);
            let test = self.evaluate(&spec.name, model, loss, spec.distill.map(|_| &tables.test), "acc")?;
            // The combined loss is not comparable with plain cross-entropy: report that too.
            let ce = match spec.distill {
                None => test.loss,
                Some(_) => self.test(&spec.name, model, Loss::CrossEntropy, None, None)?.loss,
            };
            let label = if spec.distill.is_some() { "distilled" } else { "scratch" };
            results.push(RunResult::from_epochs(label, epochs, test, ce, self.data.train.samples));
        }
        Ok(results)
    }

    /// The distilled and the scratch student, `--runs` times over seeds, with one teacher.
    pub fn student_runs(
        &self,
        student: &Architecture,
        tables: &TeacherTables,
        starting: &StartingWeights,
        saver: &WeightSaver,
    ) -> Result<Vec<StudentPair>> {
        let (cfg, runs) = (self.cfg, self.cfg.runs.max(1));
        let mut pairs = Vec::with_capacity(runs);
        for r in 0..runs {
            let seed = cfg.seed.wrapping_add(1000 * r as u64);
            if runs > 1 {
                println!("Students, run {}/{runs} (seed {seed})", r + 1);
            }
            // With several runs (or --student-init) the two students of a run start from the
            // same weights and see the same sample order, so their difference is the teacher's
            // doing and the runs' differences pair up. A single run keeps the seed program's
            // fresh initialisation of the scratch student (Keras's clone_model).
            let paired = runs > 1 || starting.student_init.is_some();
            let distilled_init =
                starting.student_init.clone().unwrap_or_else(|| student.init_glorot(seed.wrapping_add(1)));
            let scratch_init = if paired { distilled_init.clone() } else { student.init_glorot(seed.wrapping_add(2)) };
            let suffix = if r == 0 { String::new() } else { format!("-run{}", r + 1) };
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
                    order_seed: if paired { seed.wrapping_add(1) } else { seed.wrapping_add(2) },
                    save_as: Some(format!("scratch{suffix}.safetensors")),
                },
            ];
            let [distilled, scratch]: [RunResult; 2] =
                self.train_students(student, tables, &specs, saver)?.try_into().expect("two students");
            pairs.push(StudentPair { seed, distilled, scratch });
        }
        Ok(pairs)
    }

    /// Distilled students over the --sweep-alpha x --sweep-temperature grid, all from the first
    /// run's initial weights and sample order, so that only alpha and the temperature differ.
    pub fn sweep(
        &self,
        student: &Architecture,
        tables: &TeacherTables,
        starting: &StartingWeights,
        saver: &WeightSaver,
    ) -> Result<Vec<SweepPoint>> {
        let grid = self.cfg.sweep_grid();
        if grid.is_empty() {
            return Ok(Vec::new());
        }
        let seed = self.cfg.seed;
        let init = starting.student_init.clone().unwrap_or_else(|| student.init_glorot(seed.wrapping_add(1)));
        println!("Sweep: {} distilled students side by side", grid.len());
        let specs: Vec<StudentSpec> = grid
            .iter()
            .map(|&(alpha, temperature)| StudentSpec {
                name: format!("distilled (alpha {alpha}, T {temperature})"),
                init: init.clone(),
                distill: Some(Loss::Distillation { alpha, temperature }),
                order_seed: seed.wrapping_add(1),
                save_as: None,
            })
            .collect();
        let results = self.train_students(student, tables, &specs, saver)?;
        Ok(grid
            .iter()
            .zip(results)
            .map(|(&(alpha, temperature), result)| SweepPoint { alpha, temperature, result })
            .collect())
    }
}
