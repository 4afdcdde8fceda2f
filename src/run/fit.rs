//! Fitting and evaluating models: one, or several side by side in one submission a step, with
//! the run's state saved and restored as they go.

use super::resume::{self, Checkpoints, Interrupted, SavedTraining, Training};
use super::seeds::{sample_orders, subset_orders};
use crate::config::Config;
use crate::gpu::{Gpu, Tensor};
use crate::ops::adam::AdamConfig;
use crate::progress::{self, EpochProgress, PhaseProgress};
use crate::results::ClassResults;
use crate::train::{
    run_epochs, DeviceData, DeviceSplit, Distiller, Epoch, EpochStats, FeatureDistiller, FeatureSpec, FeatureTable,
    FeatureTeacher, Feed, Loss, Model, Plan, PlanPosition,
};
use anyhow::{ensure, Context, Result};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A model's results on the test split: Keras's evaluate figures, the results per class, and
/// its logits for the test images (on the device).
pub struct Tested {
    pub stats: EpochStats,
    pub classes: ClassResults,
    pub logits: Tensor,
}

impl Tested {
    /// The figures a [`crate::results::RunResult`] records.
    pub fn record(self) -> (EpochStats, ClassResults) {
        (self.stats, self.classes)
    }
}

/// Every sample in file order.
pub(super) fn identity(samples: usize) -> Vec<u32> {
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
    pub(super) fn feed<'b>(&'b self, split: &'b DeviceSplit, teacher_logits: Option<&'b Tensor>) -> Feed<'b> {
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
    pub(super) fn stop_if_asked(&self) -> Result<()> {
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
    pub(super) fn test(
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
