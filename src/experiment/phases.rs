//! The experiment's phases: training models (one, or several side by side), evaluating them,
//! the frozen teacher's logits table, the students of each run and of the sweep.

use super::classes::ClassResults;
use super::config::{Config, StartingWeights};
use super::results::{RunResult, StudentPair, SweepPoint, Tested};
use super::resume::{self, Checkpoints, Interrupted, SavedTraining, Training};
use super::scratch_from::EarlierScratch;
use super::seeds::{sample_orders, subset_orders, StudentSeeds};
use super::shards;
use crate::checkpoint;
use crate::data::NUM_CLASSES;
use crate::gpu::{timing, Force, Gpu, Tensor};
use crate::model::Architecture;
use crate::ops::adam::AdamConfig;
use crate::progress::{self, EpochProgress, PhaseProgress};
use crate::train::{
    check_batch_fits, run_epochs, DeviceData, DeviceSplit, Distiller, Epoch, EpochStats, FeatureDistiller, FeatureSpec,
    FeatureTable, FeatureTeacher, Feed, Loss, Model, Plan, PlanPosition,
};
use anyhow::{anyhow, ensure, Context, Result};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

fn identity(samples: usize) -> Vec<u32> {
    (0..samples as u32).collect()
}

/// One model of a group trained side by side.
pub struct FitJob<'a> {
    pub name: String,
    pub model: &'a Model,
    pub loss: Loss,
    /// Where a distilled model's teacher logits come from.
    pub teacher: JobTeacher<'a>,
    /// Seed of the model's epoch shuffles.
    pub order_seed: u64,
    /// Which training images and labels it learns from.
    pub images: TrainImages<'a>,
}

/// The training images a job learns from (they differ only under `--labelled`).
#[derive(Clone, Copy)]
pub enum TrainImages<'a> {
    /// Every image, with its label.
    All,
    /// Every image, but only the labelled subset's labels (a distilled student).
    PartlyLabelled,
    /// The labelled subset alone, passed over again and again for as many steps as `All`
    /// takes (the scratch student under `--labelled`).
    Subset(&'a [u32]),
}

/// A training job's teacher.
#[derive(Clone, Copy)]
pub enum JobTeacher<'a> {
    None,
    /// A frozen teacher's logits for the training images.
    Table(&'a Tensor),
    /// A teacher trained along with the student (the seed's Distiller).
    CoTrained(&'a Model),
    /// A frozen teacher's feature term (and its logits): from its feature table and logits
    /// table where it has them, otherwise run at every step.
    Features {
        teacher: &'a Model,
        feature: FeatureSpec,
        projection: Option<&'a Model>,
        tables: Option<(&'a Arc<FeatureTable>, &'a Tensor)>,
    },
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
    /// The test split's labels, for the results per class.
    pub test_labels: &'a [u8],
    /// With `--checkpoint-dir` or `--resume`: the run's state, written as it goes.
    pub checkpoints: Option<&'a Checkpoints>,
    /// Under `--labelled`: the training images that keep their labels.
    pub labelled: Option<&'a [u32]>,
}

impl Phases<'_> {
    fn feed<'b>(&'b self, split: &'b DeviceSplit, teacher_logits: Option<&'b Tensor>) -> Feed<'b> {
        Feed { data: self.data, split, teacher_logits }
    }

    /// Trains `job.model` for `epochs`, printing Keras-like lines; returns per-epoch stats.
    pub fn fit(&self, group: &str, job: FitJob, epochs: usize, metric: &'static str) -> Result<Vec<EpochStats>> {
        Ok(self.fit_together(group, &[job], epochs, metric)?.remove(0))
    }

    /// Trains several models at once, every step of all of them in one submission (see
    /// [`run_epochs`]); one Keras-like line per model and epoch. Each model's result is what it
    /// would be trained alone: the plans share no buffer. With checkpoints, the state of the
    /// group (`group` names it) is written at every epoch's end and at the step boundaries
    /// [`Checkpoints::due`] asks for, and an interrupted group goes on where it stopped.
    pub fn fit_together(
        &self,
        group: &str,
        jobs: &[FitJob],
        epochs: usize,
        metric: &'static str,
    ) -> Result<Vec<Vec<EpochStats>>> {
        let (cfg, gpu) = (self.cfg, self.gpu);
        let plans = self.training_plans(jobs)?;
        let plan_refs: Vec<&Plan> = plans.iter().collect();
        let group_state = GroupState { group, jobs, plans: &plan_refs };
        let saved = match self.checkpoints {
            Some(c) => c.take_training(group)?,
            None => None,
        };
        let samples = self.data.train.samples;
        let mut shuffles: Vec<Box<dyn Iterator<Item = Vec<u32>>>> = jobs
            .iter()
            .map(|j| match j.images {
                TrainImages::Subset(subset) => {
                    Box::new(subset_orders(j.order_seed, subset.to_vec(), samples, cfg.shuffle))
                        as Box<dyn Iterator<Item = _>>
                }
                TrainImages::All | TrainImages::PartlyLabelled => {
                    Box::new(sample_orders(j.order_seed, samples, cfg.shuffle))
                }
            })
            .collect();
        let names = jobs.iter().map(|j| j.name.as_str()).collect::<Vec<_>>().join(" + ");
        let mut stats = vec![Vec::with_capacity(epochs); jobs.len()];
        let mut resume_at = None;
        if let Some(saved) = saved {
            group_state.restore(gpu, &saved)?;
            stats = saved.training.epochs;
            // The finished epochs' shuffles, drawn again, leave each generator where it was.
            for _ in 0..stats[0].len() {
                shuffles.iter_mut().for_each(|o| drop(o.next()));
            }
            println!("{names}: resumed at epoch {}, step {}", stats[0].len() + 1, saved.positions[0].step);
            resume_at = Some(saved.positions);
        }
        let started = std::time::Instant::now();
        let first_epoch = stats[0].len() + 1;
        // Steps run in this process: `steps_here` counts the gaps between steps (pause points
        // are named by it), `steps_timed` every step, each epoch's last one included (the pace).
        let (mut steps_here, mut steps_timed) = (0, 0);
        for epoch in first_epoch..=epochs {
            let orders: Vec<Vec<u32>> = shuffles.iter_mut().map(|o| o.next().expect("one order an epoch")).collect();
            let order_refs: Vec<&[u32]> = orders.iter().map(Vec::as_slice).collect();
            let resume = resume_at.take();
            let resumed_step = resume.as_ref().map_or(0, |r| r[0].step as usize);
            let bar = EpochProgress::new(Some(format!("Epoch {epoch}/{epochs}")), plans[0].steps, metric)
                .resumed_at(resumed_step);
            let run = Epoch {
                plans: &plan_refs,
                orders: &order_refs,
                resume: resume.as_deref(),
                sync_points: cfg.sync_points,
            };
            let s = run_epochs(
                gpu,
                &run,
                |done, m| bar.update(done, m[0].0, m[0].1),
                |done| {
                    steps_here += 1;
                    resume::pause_point(|| format!("{group}:step:{steps_here}"));
                    match self.checkpoints {
                        Some(c) if c.due() => group_state.save(gpu, c, &stats, done),
                        _ => Ok(()),
                    }
                },
            )
            .with_context(|| format!("training {names}, epoch {epoch}"))?;
            if jobs.len() == 1 {
                bar.finish(s[0].loss, s[0].accuracy);
            } else {
                let rows: Vec<(&str, f64, f64)> =
                    jobs.iter().zip(&s).map(|(j, e)| (j.name.as_str(), e.loss, e.accuracy)).collect();
                bar.finish_group(&rows);
            }
            for (job, e) in jobs.iter().zip(&s) {
                if !e.terms.is_empty() {
                    let terms: Vec<String> = e.terms.iter().map(|(k, v)| format!("{k}: {v:.4}")).collect();
                    println!("  {} terms (unweighted): {}", job.name, terms.join(" - "));
                }
            }
            for (all, e) in stats.iter_mut().zip(s) {
                all.push(e);
            }
            if let Some(c) = self.checkpoints {
                group_state.save(gpu, c, &stats, plans[0].steps)?;
            }
            steps_timed += plans[0].steps - resumed_step;
            progress::time_left(
                &format!("{names}: epoch {epoch} of {epochs} done"),
                steps_timed,
                (epochs - epoch) * plans[0].steps,
                started.elapsed().as_secs_f64(),
            );
        }
        Ok(stats)
    }

    /// A training plan for each job: a Distiller for a co-trained teacher, otherwise the
    /// model's own step (reading a frozen teacher's logits table for distillation).
    fn training_plans(&self, jobs: &[FitJob]) -> Result<Vec<Plan>> {
        let (cfg, gpu) = (self.cfg, self.gpu);
        let adam = AdamConfig { learning_rate: cfg.learning_rate, ..AdamConfig::default() };
        jobs.iter()
            .map(|j| {
                let split = match j.images {
                    TrainImages::PartlyLabelled => self
                        .data
                        .partly_labelled
                        .as_ref()
                        .context("--labelled: the labelled subset is not on the device")?,
                    // A subset's images are picked by the sample order alone.
                    TrainImages::All | TrainImages::Subset(_) => &self.data.train,
                };
                match (j.teacher, j.loss) {
                    (JobTeacher::CoTrained(teacher), Loss::Distillation(distill)) => {
                        let distiller = Distiller { student: j.model, teacher, distill };
                        Plan::distiller(gpu, &j.name, &distiller, &self.feed(split, None), cfg.batch_size, &adam)
                    }
                    (JobTeacher::Features { teacher, feature, projection, tables }, Loss::Distillation(distill)) => {
                        let (teacher, logits) = match tables {
                            Some((features, logits)) => (FeatureTeacher::Table(&teacher.arch, features), Some(logits)),
                            None => (FeatureTeacher::EachStep(teacher), None),
                        };
                        let fd = FeatureDistiller { student: j.model, teacher, distill, feature, projection };
                        let feed = self.feed(split, logits);
                        Plan::feature_distiller(gpu, &j.name, &fd, &feed, cfg.batch_size, &adam)
                    }
                    (JobTeacher::Table(table), _) => {
                        let feed = self.feed(split, Some(table));
                        Plan::train(gpu, &j.name, j.model, j.loss, &feed, cfg.batch_size, &adam)
                    }
                    _ => Plan::train(gpu, &j.name, j.model, j.loss, &self.feed(split, None), cfg.batch_size, &adam),
                }
            })
            .collect()
    }

    /// The step-boundary hook of phases that keep no state (evaluations, logits tables): a
    /// signal stops the run there, and the last state written stands.
    fn stop_if_asked(&self) -> Result<()> {
        match self.checkpoints {
            Some(_) if resume::stop_requested() => Err(Interrupted.into()),
            _ => Ok(()),
        }
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
    ) -> Result<Tested> {
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
    ) -> Result<Tested> {
        let feed = self.feed(&self.data.test, teacher_table);
        let plan = Plan::evaluate(self.gpu, name, model, loss, &feed, self.cfg.batch_size)?;
        let line = metric.map(|m| EpochProgress::new(None, plan.steps, m));
        let order = identity(self.data.test.samples);
        let run = Epoch { plans: &[&plan], orders: &[&order], resume: None, sync_points: 1 };
        // Without Keras's line, progress still shows where the phase is long.
        let quiet = line.is_none().then(|| PhaseProgress::new(format!("{name}: evaluation"), plan.steps));
        let update = |done: usize, m: &[(f64, f64)]| {
            line.iter().for_each(|l| l.update(done, m[0].0, m[0].1));
            quiet.iter().for_each(|q| q.update(done));
        };
        let stats = run_epochs(self.gpu, &run, update, |_| self.stop_if_asked())
            .with_context(|| format!("evaluating {name}"))?
            .remove(0);
        if let Some(q) = quiet {
            q.finish();
        }
        if let Some(line) = line {
            line.finish(stats.loss, stats.accuracy);
        }
        let logits = plan.logits_table().expect("an evaluation keeps its logits").clone();
        let classes = ClassResults::from_logits(&logits.read_f32(self.gpu)?, self.test_labels);
        Ok(Tested { stats, classes, logits })
    }

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
        let network = serde_json::to_vec(&model.arch)?;
        let digest: String = Sha256::digest(&network)[..6].iter().map(|b| format!("{b:02x}")).collect();
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

/// A training group's models and plans, as its checkpoints save and restore them.
struct GroupState<'a> {
    group: &'a str,
    jobs: &'a [FitJob<'a>],
    plans: &'a [&'a Plan],
}

impl GroupState<'_> {
    /// Every model the group trains, with its plan and its index in the plan (a co-trained
    /// teacher after its student).
    fn models(&self) -> Vec<(&Plan, usize, &Model)> {
        let mut models = Vec::new();
        for (job, plan) in self.jobs.iter().zip(self.plans) {
            models.push((*plan, 0, job.model));
            if let JobTeacher::CoTrained(teacher) = job.teacher {
                models.push((*plan, 1, teacher));
            }
        }
        models
    }

    /// Writes the group's state after `done` steps of the current epoch (`epochs`: the
    /// finished epochs' figures); stops the run if a signal asked.
    fn save(&self, gpu: &Gpu, checkpoints: &Checkpoints, epochs: &[Vec<EpochStats>], done: usize) -> Result<()> {
        // The steps in flight finish first: their time is the steps', not the state's.
        gpu.wait()?;
        let since = std::time::Instant::now();
        let positions = self.plans.iter().map(|p| p.position(gpu, done)).collect::<Result<Vec<PlanPosition>>>()?;
        let mut tensors = BTreeMap::new();
        for (k, (plan, which, model)) in self.models().into_iter().enumerate() {
            let (m, v) = plan.adam_moments(which).context("a trained model has Adam's moments")?;
            tensors.insert(format!("model {k} weights"), model.read_flat(gpu)?);
            tensors.insert(format!("model {k} adam m"), m.read_f32(gpu)?);
            tensors.insert(format!("model {k} adam v"), v.read_f32(gpu)?);
        }
        for (i, plan) in self.plans.iter().enumerate() {
            if let Some((w, m, v)) = plan.projection() {
                for (what, tensor) in [("weights", w), ("adam m", m), ("adam v", v)] {
                    tensors.insert(format!("projection {i} {what}"), tensor.read_f32(gpu)?);
                }
            }
        }
        let training = Training {
            group: self.group.to_string(),
            epochs: epochs.to_vec(),
            positions: positions.iter().map(|p| (p.step, p.adam_t)).collect(),
        };
        checkpoints.save_training(training, &positions, tensors, since)?;
        if resume::stop_requested() {
            return Err(Interrupted.into());
        }
        Ok(())
    }

    /// Puts the saved weights and Adam moments back on the device.
    fn restore(&self, gpu: &Gpu, saved: &SavedTraining) -> Result<()> {
        ensure!(
            saved.positions.len() == self.plans.len() && saved.training.epochs.len() == self.jobs.len(),
            "the run state of `{}` holds {} models, the run trains {}",
            self.group,
            saved.training.epochs.len(),
            self.jobs.len()
        );
        for (k, (plan, which, model)) in self.models().into_iter().enumerate() {
            let (m, v) = plan.adam_moments(which).context("a trained model has Adam's moments")?;
            for (what, tensor) in [("weights", &model.weights), ("adam m", m), ("adam v", v)] {
                let name = format!("model {k} {what}");
                let values = saved.tensors.get(&name).with_context(|| format!("the run state has no `{name}`"))?;
                ensure!(
                    values.len() == tensor.len(),
                    "the run state's `{name}` holds {} values; the {} needs {}",
                    values.len(),
                    model.arch.name(),
                    tensor.len()
                );
                tensor.write_f32(gpu, values);
            }
        }
        for (i, plan) in self.plans.iter().enumerate() {
            if let Some((w, m, v)) = plan.projection() {
                for (what, tensor) in [("weights", w), ("adam m", m), ("adam v", v)] {
                    let name = format!("projection {i} {what}");
                    let values = saved.tensors.get(&name).with_context(|| format!("the run state has no `{name}`"))?;
                    ensure!(values.len() == tensor.len(), "the run state's `{name}` holds {} values", values.len());
                    tensor.write_f32(gpu, values);
                }
            }
        }
        Ok(())
    }
}

/// The teacher every distilled student learns from.
pub enum Teacher<'a> {
    /// Frozen: its logits for both splits, computed once, which every distilled student reads;
    /// the teacher, and a feature term's table of its layer's outputs where one is kept
    /// (without one, the teacher runs at every step).
    Frozen { train: Tensor, test: Tensor, model: &'a Model, features: Option<Arc<FeatureTable>> },
    /// The seed's Distiller: each distilled student trains its own copy of these weights along.
    CoTrained { arch: &'a Architecture, weights: Vec<f32> },
}

/// One student to train: its name, starting weights, loss and files to save.
pub struct StudentSpec {
    pub name: String,
    pub init: Vec<f32>,
    /// The distillation loss; None trains on plain cross-entropy (the scratch student).
    pub distill: Option<Loss>,
    pub order_seed: u64,
    /// The student's file, and (co-trained teacher) the file of its teacher after training.
    pub save_as: Option<(String, String)>,
}

/// Mixed into a distilled student's order seed for its feature term's projection.
const PROJECTION_SEED: u64 = 0x7072_6f6a_6563_7469;

/// The frozen teacher's layers (a feature term distils from one of them).
fn teacher_layers(teacher: &Teacher) -> Result<Vec<crate::model::PlacedLayer>> {
    match teacher {
        Teacher::Frozen { model, .. } => Ok(model.arch.walk()),
        Teacher::CoTrained { .. } => anyhow::bail!("a feature term needs a frozen teacher"),
    }
}

/// A trained student's record and, where its teacher trained along, the teacher's after it.
pub struct StudentOutcome {
    pub student: RunResult,
    pub teacher_after: Option<RunResult>,
}

impl Phases<'_> {
    /// Trains the students side by side, saves those with a file name, and evaluates each on
    /// the test set (a distilled one with its combined loss, against its teacher as it ends).
    pub fn train_students(
        &self,
        group: &str,
        student: &Architecture,
        teacher: &Teacher,
        specs: &[StudentSpec],
        saver: &WeightSaver,
    ) -> Result<Vec<StudentOutcome>> {
        let gpu = self.gpu;
        // Dropout and the shifts draw from the student's sample-order seed: paired students
        // draw the same masks and see the same images.
        let shift = self.cfg.student_augment;
        let models = specs
            .iter()
            .map(|s| Model::new(gpu, student, &s.init).map(|m| m.seeded(s.order_seed).augmented(shift)))
            .collect::<Result<Vec<_>>>()?;
        // A co-trained teacher diverges with its student: every distilled student gets a copy.
        let copies = specs
            .iter()
            .map(|s| match (teacher, s.distill) {
                (Teacher::CoTrained { arch, weights }, Some(_)) => Model::new(gpu, arch, weights).map(Some),
                _ => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        // A feature term's projection, per distilled student (drawn from its order seed).
        let feature = self.cfg.feature()?;
        let projections = specs
            .iter()
            .map(|s| match (feature, s.distill) {
                (Some(f), Some(_)) if f.project => {
                    let (t, st) = (&teacher_layers(teacher)?[f.teacher_layer], &student.walk()[f.student_layer]);
                    Model::projection(gpu, st.output, t.output.channels(), s.order_seed ^ PROJECTION_SEED).map(Some)
                }
                _ => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        let jobs: Vec<FitJob> = specs
            .iter()
            .zip(&models)
            .zip(&copies)
            .zip(&projections)
            .map(|(((s, model), copy), projection)| FitJob {
                name: s.name.clone(),
                model,
                loss: s.distill.unwrap_or(Loss::CrossEntropy),
                teacher: match (teacher, copy, s.distill, feature) {
                    (_, Some(copy), _, _) => JobTeacher::CoTrained(copy),
                    (Teacher::Frozen { model, features, train, .. }, None, Some(_), Some(feature)) => {
                        let tables = features.as_ref().map(|f| (f, train));
                        JobTeacher::Features { teacher: model, feature, projection: projection.as_ref(), tables }
                    }
                    (Teacher::Frozen { train, .. }, None, Some(_), None) => JobTeacher::Table(train),
                    _ => JobTeacher::None,
                },
                order_seed: s.order_seed,
                images: match (self.labelled, s.distill) {
                    (None, _) => TrainImages::All,
                    (Some(_), Some(_)) => TrainImages::PartlyLabelled,
                    (Some(subset), None) => TrainImages::Subset(subset),
                },
            })
            .collect();
        let all_epochs = self.fit_together(group, &jobs, self.cfg.student_epochs, "acc")?;
        let mut outcomes = Vec::with_capacity(specs.len());
        for (((spec, model), copy), epochs) in specs.iter().zip(&models).zip(&copies).zip(all_epochs) {
            outcomes.push(self.finish_student(teacher, spec, model, copy.as_ref(), epochs, saver)?);
        }
        Ok(outcomes)
    }

    /// Saves a trained student (and its co-trained teacher) and evaluates them.
    fn finish_student(
        &self,
        teacher: &Teacher,
        spec: &StudentSpec,
        model: &Model,
        copy: Option<&Model>,
        epochs: Vec<EpochStats>,
        saver: &WeightSaver,
    ) -> Result<StudentOutcome> {
        if let Some((file, teacher_file)) = &spec.save_as {
            saver.save(self.gpu, file, model)?;
            if let Some(copy) = copy {
                saver.save(self.gpu, teacher_file, copy)?;
            }
        }
        let teacher_after = match copy {
            Some(copy) => {
                println!("{}: its teacher after distillation", spec.name);
                let test = self.evaluate("teacher after distillation", copy, Loss::CrossEntropy, None, "accuracy")?;
                // Its test logits are what the student's combined loss is measured against.
                let (ce, logits) = (test.stats.loss, test.logits.clone());
                Some((RunResult::from_epochs("teacher after", Vec::new(), test, ce, 0), logits))
            }
            None => None,
        };
        println!("{}: evaluation", spec.name);
        let loss = spec.distill.unwrap_or(Loss::CrossEntropy);
        let test_table = match (&teacher_after, teacher) {
            (Some((_, table)), _) => Some(table),
            (None, Teacher::Frozen { test, .. }) if spec.distill.is_some() => Some(test),
            _ => None,
        };
        let test = self.evaluate(&spec.name, model, loss, test_table, "acc")?;
        // The combined loss is not comparable with plain cross-entropy: report that too.
        let ce = match spec.distill {
            None => test.stats.loss,
            Some(_) => self.test(&spec.name, model, Loss::CrossEntropy, None, None)?.stats.loss,
        };
        let label = if spec.distill.is_some() { "distilled" } else { "scratch" };
        Ok(StudentOutcome {
            student: RunResult::from_epochs(label, epochs, test, ce, self.data.train.samples),
            teacher_after: teacher_after.map(|(r, _)| r),
        })
    }

    /// The distilled and the scratch student, `--runs` times over seeds, with one teacher; the
    /// scratch students from `earlier` where given (`--scratch-from`), not trained again.
    pub fn student_runs(
        &self,
        student: &Architecture,
        teacher: &Teacher,
        starting: &StartingWeights,
        earlier: Option<&EarlierScratch>,
        saver: &WeightSaver,
    ) -> Result<Vec<StudentPair>> {
        let (cfg, runs) = (self.cfg, self.cfg.runs.max(1));
        // All runs, or a shard's share; seeds and file names follow each run's own index.
        let indices = shards::run_indices(cfg);
        let here = indices.len();
        // Runs finished before an interruption.
        let mut pairs = self.checkpoints.map(|c| c.progress().pairs).unwrap_or_default();
        let first = pairs.len();
        // Only whole runs done here set the pace: a run resumed part-way is not one.
        let part_way = self.checkpoints.is_some_and(|c| c.has_pending_training());
        let timed_from = first + usize::from(part_way);
        let mut started = std::time::Instant::now();
        for (k, &r) in indices.iter().enumerate().skip(first) {
            if k == timed_from {
                started = std::time::Instant::now();
            }
            progress::time_left(
                &format!("students' runs: {k} of {here} done"),
                k.saturating_sub(timed_from),
                here - k,
                started.elapsed().as_secs_f64(),
            );
            // With several runs (or --student-init) the two students of a run are paired (see
            // StudentSeeds); a single run keeps the seed program's fresh initialisation of the
            // scratch student (Keras's clone_model).
            let paired = runs > 1 || starting.student_init.is_some();
            let seeds = StudentSeeds::of(cfg.seed, r, paired);
            if runs > 1 {
                println!("Students, run {}/{runs} (seed {})", r + 1, seeds.run);
            }
            let init = |seed| starting.student_init.clone().unwrap_or_else(|| student.init_glorot(seed));
            let (distilled_init, scratch_init) = (init(seeds.distilled_init), init(seeds.scratch_init));
            let suffix = if r == 0 { String::new() } else { format!("-run{}", r + 1) };
            let files = |name: &str| {
                Some((format!("{name}{suffix}.safetensors"), format!("teacher-after-distillation{suffix}.safetensors")))
            };
            let mut specs = vec![StudentSpec {
                name: "distilled student".into(),
                init: distilled_init,
                distill: Some(Loss::Distillation(cfg.distill_loss(cfg.alpha, cfg.temperature))),
                order_seed: seeds.distilled_order,
                save_as: files("student"),
            }];
            if earlier.is_none() {
                specs.push(StudentSpec {
                    name: "scratch student".into(),
                    init: scratch_init,
                    distill: None,
                    order_seed: seeds.scratch_order,
                    save_as: files("scratch"),
                });
            }
            let group = format!("students run {}", r + 1);
            let mut outcomes = self.train_students(&group, student, teacher, &specs, saver)?.into_iter();
            let distilled = outcomes.next().expect("the distilled student");
            let scratch = match earlier {
                Some(earlier) => {
                    println!("scratch student: from {} (run {})", earlier.path().display(), r + 1);
                    earlier.scratch(r).clone()
                }
                None => outcomes.next().expect("the scratch student").student,
            };
            pairs.push(StudentPair {
                seed: seeds.run,
                distilled: distilled.student,
                scratch,
                teacher_after_distillation: distilled.teacher_after,
            });
            if let Some(c) = self.checkpoints {
                c.phase_done(&group, |p| p.pairs = pairs.clone(), Vec::new())?;
            }
        }
        Ok(pairs)
    }

    /// Distilled students over the --sweep-alpha x --sweep-temperature grid, all from the first
    /// run's initial weights and sample order, so that only alpha and the temperature differ.
    pub fn sweep(
        &self,
        student: &Architecture,
        teacher: &Teacher,
        starting: &StartingWeights,
        saver: &WeightSaver,
    ) -> Result<Vec<SweepPoint>> {
        // The whole grid, or a shard's cells of it.
        let grid: Vec<(f32, f32)> = shards::sweep_cells(self.cfg).into_iter().map(|(_, cell)| cell).collect();
        if grid.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(done) = self.checkpoints.and_then(|c| c.progress().sweep) {
            return Ok(done);
        }
        // The first run's distilled student's start and order.
        let seeds = StudentSeeds::of(self.cfg.seed, 0, false);
        let init = starting.student_init.clone().unwrap_or_else(|| student.init_glorot(seeds.distilled_init));
        println!("Sweep: {} distilled students side by side", grid.len());
        let specs: Vec<StudentSpec> = grid
            .iter()
            .map(|&(alpha, temperature)| StudentSpec {
                name: format!("distilled (alpha {alpha}, T {temperature})"),
                init: init.clone(),
                distill: Some(Loss::Distillation(self.cfg.distill_loss(alpha, temperature))),
                order_seed: seeds.distilled_order,
                save_as: None,
            })
            .collect();
        let outcomes = self.train_students("sweep", student, teacher, &specs, saver)?;
        let points: Vec<SweepPoint> = grid
            .iter()
            .zip(outcomes)
            .map(|(&(alpha, temperature), o)| SweepPoint {
                alpha,
                temperature,
                result: o.student,
                teacher_after_distillation: o.teacher_after,
            })
            .collect();
        if let Some(c) = self.checkpoints {
            c.phase_done("sweep", |p| p.sweep = Some(points.clone()), Vec::new())?;
        }
        Ok(points)
    }
}
