//! The scheduler: plans a model's forward pass, loss, backward pass and Adam update from its
//! layer list as one list of dispatches with every buffer and bind group made up front
//! ([`plan`]), then records that list once per step into one compute pass and one
//! submission. The step index and Adam's t live on the device (see `shaders/batch.wgsl`), so
//! steps need no uploads; per-step metrics stay on the device and are read back only at a few
//! sync points per epoch.

mod feature;
mod lower;
mod plan;

pub use crate::model::FeatureSpec;
pub use crate::ops::loss::Loss;
pub use feature::{check_layer as check_feature_layer, FeatureTable};
pub use plan::{check_batch_fits, Distiller, FeatureDistiller, FeatureTeacher, Feed, Plan};

use crate::data::{Split, IMAGE_SIDE};
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::model::{Architecture, PlacedLayer};
use crate::ops::batch::{self, ImageSource, StepState};
use crate::ops::loss::UNLABELLED;
use crate::ops::metrics;
use anyhow::{bail, ensure, Context, Result};
use std::collections::BTreeMap;
use std::time::Instant;

/// One split of the data resident on the device: pixels as packed bytes, labels as u32.
pub struct DeviceSplit {
    pub images: Tensor,
    pub labels: Tensor,
    pub samples: usize,
}

/// Both splits plus the byte -> f32 scale table, uploaded once.
pub struct DeviceData {
    pub train: DeviceSplit,
    pub test: DeviceSplit,
    pub scale: Tensor,
    /// Under `--labelled`: the training images with only the subset's labels kept (the others
    /// flagged [`crate::ops::loss::UNLABELLED`]), as the distilled students see them.
    pub partly_labelled: Option<DeviceSplit>,
}

impl DeviceData {
    pub fn upload(gpu: &Gpu, train: &Split, test: &Split) -> Result<DeviceData> {
        let split = |s: &Split, name: &str| -> Result<DeviceSplit> {
            let words = batch::pack_bytes(&s.images);
            let labels: Vec<u32> = s.labels.iter().map(|&l| l as u32).collect();
            Ok(DeviceSplit {
                images: Tensor::from_u32(gpu, &format!("{name} images"), &[words.len()], &words)?,
                labels: Tensor::from_u32(gpu, &format!("{name} labels"), &[labels.len()], &labels)?,
                samples: s.len(),
            })
        };
        Ok(DeviceData {
            train: split(train, "train")?,
            test: split(test, "test")?,
            scale: Tensor::from_f32(gpu, "scale table", &[256], &batch::scale_table())?,
            partly_labelled: None,
        })
    }

    /// Keeps the labels of the training images in `subset` only, for the distilled students
    /// (see [`DeviceData::partly_labelled`]); the images themselves are shared.
    pub fn keep_labels_of(&mut self, gpu: &Gpu, train: &Split, subset: &[u32]) -> Result<()> {
        let mut labels: Vec<u32> = train.labels.iter().map(|&l| l as u32 | UNLABELLED).collect();
        for &i in subset {
            labels[i as usize] &= !UNLABELLED;
        }
        self.partly_labelled = Some(DeviceSplit {
            images: self.train.images.clone(),
            labels: Tensor::from_u32(gpu, "partly labelled train labels", &[labels.len()], &labels)?,
            samples: self.train.samples,
        });
        Ok(())
    }

    fn source<'a>(&'a self, split: &'a DeviceSplit) -> ImageSource<'a> {
        ImageSource {
            images: &split.images,
            labels: &split.labels,
            scale: &self.scale,
            pixels: IMAGE_SIDE * IMAGE_SIDE,
        }
    }
}

/// A model's parameters on the device: one flat buffer in the layout of [`Architecture::params`].
pub struct Model {
    pub arch: Architecture,
    pub weights: Tensor,
    /// What its Dropout layers draw their masks from (with Adam's t, the layer and the
    /// element): 0 unless [`Model::seeded`].
    pub seed: u32,
    /// Its training batches' random translations, up to this many pixels either way, drawn
    /// from `seed` too (0: none; see [`Model::augmented`]).
    pub shift: u32,
}

impl Model {
    pub fn new(gpu: &Gpu, arch: &Architecture, flat: &[f32]) -> Result<Model> {
        ensure!(
            flat.len() == arch.flat_len(),
            "{} weights: {} values given, {} expected",
            arch.name(),
            flat.len(),
            arch.flat_len()
        );
        let weights = Tensor::from_f32(gpu, &format!("{} weights", arch.name()), &[flat.len()], flat)?;
        Ok(Model { arch: arch.clone(), weights, seed: 0, shift: 0 })
    }

    /// The same model, its Dropout masks drawn from `seed`.
    pub fn seeded(self, seed: u64) -> Model {
        Model { seed: seed as u32 ^ (seed >> 32) as u32, ..self }
    }

    /// The same model, trained on its images moved by up to `pixels` pixels each way (each
    /// image of each step anew; evaluations and logits tables see them as they are).
    pub fn augmented(self, pixels: u32) -> Model {
        Model { shift: pixels, ..self }
    }

    /// The parameter tensor `name` as a view of `of` (the weights, or a buffer in their layout).
    fn param_view(&self, of: &Tensor, name: &str) -> Result<Tensor> {
        let p = self.arch.param(name).with_context(|| format!("{} has no tensor {name}", self.arch.name()))?;
        of.view(name, p.offset, &p.shape)
    }

    /// `layer`'s parameter tensors, in its kind's order, as views of `of`.
    fn layer_params(&self, of: &Tensor, layer: &PlacedLayer) -> Result<Vec<Tensor>> {
        let suffixes = layer.kind().params(layer.input);
        suffixes.iter().map(|p| self.param_view(of, &format!("{}.{}", layer.name, p.suffix))).collect()
    }

    pub fn read_flat(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        self.weights.read_f32(gpu)
    }
}

/// Per-epoch results of a plan.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochStats {
    pub loss: f64,
    pub accuracy: f64,
    pub steps: usize,
    pub seconds: f64,
    /// A distillation loss's terms, each unweighted, as means like `loss` (see
    /// [`crate::ops::loss::TERMS`] and [`crate::ops::loss::FEATURE_TERM`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub terms: BTreeMap<String, f64>,
}

impl EpochStats {
    /// The stats of `samples` rows from a plan's column sums (loss, correct, then those of
    /// the terms named `terms`).
    fn from_sums(sums: &[f64], terms: &[&str], samples: usize, steps: usize, seconds: f64) -> EpochStats {
        let n = samples as f64;
        let terms = terms.iter().zip(&sums[2..]).map(|(name, sum)| (name.to_string(), sum / n)).collect();
        EpochStats { loss: sums[0] / n, accuracy: sums[1] / n, steps, seconds, terms }
    }
}

/// The longest a run goes between two metric readbacks, at the pace of its steps so far (a
/// readback waits for the device: progress reports and NaN checks happen there).
const PACE_SECONDS: f64 = 10.0;

/// One epoch of several plans run side by side (see [`run_epochs`]).
pub struct Epoch<'a> {
    pub plans: &'a [&'a Plan],
    /// Plan i's sample order, a permutation of its split.
    pub orders: &'a [&'a [u32]],
    /// Where an interrupted epoch stopped, one position per plan (None: from its first step).
    pub resume: Option<&'a [PlanPosition]>,
    /// Metric readbacks per epoch (progress and NaN checks).
    pub sync_points: usize,
}

/// Runs one epoch of several plans side by side: every step records all the plans'
/// dispatches into one compute pass and one submission, so that small models (students of a
/// sweep or of several runs) share the device instead of taking turns. The plans must have the
/// same number of steps; `orders[i]` is plan i's sample order. `progress(done, means)` gets each
/// plan's running (loss, accuracy) at the sync points (`sync_points` evenly spaced, and at
/// least one every [`PACE_SECONDS`]); `at_step(done)` runs after every step
/// is submitted (a checkpoint may be written there; an error stops the epoch). Each plan's
/// statistics carry the shared wall time.
pub fn run_epochs(
    gpu: &Gpu,
    epoch: &Epoch,
    mut progress: impl FnMut(usize, &[(f64, f64)]),
    mut at_step: impl FnMut(usize) -> Result<()>,
) -> Result<Vec<EpochStats>> {
    let Epoch { plans, orders, resume, sync_points } = *epoch;
    ensure!(!plans.is_empty() && plans.len() == orders.len(), "one sample order per plan");
    let steps = plans[0].steps;
    ensure!(plans.iter().all(|p| p.steps == steps), "plans run together must have the same number of steps");
    let start = Instant::now();
    let first = match resume {
        None => {
            for (plan, order) in plans.iter().zip(orders) {
                plan.begin_epoch(gpu, order)?;
            }
            0
        }
        Some(positions) => {
            ensure!(positions.len() == plans.len(), "one saved position per plan");
            for ((plan, order), at) in plans.iter().zip(orders).zip(positions) {
                plan.restore(gpu, order, at)?;
            }
            positions[0].step as usize
        }
    };
    let every = steps.div_ceil(sync_points.max(1));
    let refs: Vec<&Dispatch> = plans.iter().flat_map(|p| p.dispatches.iter()).collect();
    let mut checked = first;
    let mut totals: Vec<Vec<f64>> = plans.iter().map(|p| vec![0.0; p.metrics_width]).collect();
    // Besides the evenly spaced sync points, one at least every PACE_SECONDS at the pace
    // measured so far (the first step sets it), so that progress never goes quiet for long.
    let (mut synced_at, mut next_paced) = (Instant::now(), first + 1);
    for step in first..steps {
        for (plan, order) in plans.iter().zip(orders) {
            plan.write_step_rows(gpu, order, step)?;
        }
        gpu.submit(&refs).with_context(|| format!("{}: step {}", plans[0].name, step + 1))?;
        let done = step + 1;
        if done.is_multiple_of(every) || done == steps || done >= next_paced {
            for (plan, total) in plans.iter().zip(&mut totals) {
                *total = plan.sync(gpu, done, checked)?;
            }
            let per_step = synced_at.elapsed().as_secs_f64() / (done - checked) as f64;
            next_paced = done + ((PACE_SECONDS / per_step) as usize).max(1);
            synced_at = Instant::now();
            checked = done;
            let means: Vec<(f64, f64)> = plans
                .iter()
                .zip(&totals)
                .map(|(p, t)| {
                    let seen = (done * p.batch).min(p.samples) as f64;
                    (t[0] / seen, t[1] / seen)
                })
                .collect();
            progress(done, &means);
        }
        if done < steps {
            at_step(done)?;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(plans.iter().zip(&totals).map(|(p, t)| EpochStats::from_sums(t, &p.terms, p.samples, steps, seconds)).collect())
}

/// [`run_epochs`] from the epoch's first step, with no work between steps.
pub fn run_epochs_together(
    gpu: &Gpu,
    plans: &[&Plan],
    orders: &[&[u32]],
    sync_points: usize,
    progress: impl FnMut(usize, &[(f64, f64)]),
) -> Result<Vec<EpochStats>> {
    let epoch = Epoch { plans, orders, resume: None, sync_points };
    run_epochs(gpu, &epoch, progress, |_| Ok(()))
}

/// Where a plan stands between two steps: what its device step state holds, and the metrics
/// of the epoch's steps so far. With the weights and Adam's moments, all a run needs to go on
/// with the same bits.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanPosition {
    /// Steps of the epoch done.
    pub step: u32,
    /// Adam's step count of the next update.
    pub adam_t: u32,
    /// Per step done: the sum of its rows' losses, its correct count and, for a distillation
    /// loss, its terms' sums.
    pub metrics: Vec<f32>,
}

impl Plan {
    /// Runs one epoch in the sample order `order` (a permutation of the split), one
    /// submission per step, reading metrics back at about `sync_points` evenly spaced steps
    /// (and the last). `progress(steps done, loss so far, accuracy so far)` is called at each.
    pub fn run_epoch(
        &self,
        gpu: &Gpu,
        order: &[u32],
        sync_points: usize,
        mut progress: impl FnMut(usize, f64, f64),
    ) -> Result<EpochStats> {
        let mut stats =
            run_epochs_together(gpu, &[self], &[order], sync_points, |done, m| progress(done, m[0].0, m[0].1))?;
        Ok(stats.remove(0))
    }

    /// Values per step in the metrics buffer: loss sum, correct count, then for a
    /// distillation loss its terms' sums.
    pub fn metrics_width(&self) -> usize {
        self.metrics_width
    }

    /// One step, submitted without waiting (after [`Plan::begin_epoch`]); a plan whose host
    /// writes rows before each step runs through [`run_epochs`], which knows the order.
    pub fn step(&self, gpu: &Gpu) -> Result<()> {
        ensure!(self.host_rows.is_none(), "{}: a step with a feature table runs through run_epochs", self.name);
        gpu.submit(&self.dispatches.iter().collect::<Vec<_>>()).map(|_| ())
    }

    /// Starts an epoch: the sample order, and the step index back to 0 (Adam's t carries on).
    pub fn begin_epoch(&self, gpu: &Gpu, order: &[u32]) -> Result<()> {
        ensure!(
            order.len() == self.samples,
            "{}: order has {} entries for {} samples",
            self.name,
            order.len(),
            self.samples
        );
        self.perm.write_u32(gpu, order);
        self.state.write_u32(gpu, &[0]);
        Ok(())
    }

    /// Where the plan goes on from after `done` steps of the epoch (every submitted step
    /// finished); after the last step, the start of the next epoch.
    pub fn position(&self, gpu: &Gpu, done: usize) -> Result<PlanPosition> {
        let state = self.state.read_u32(gpu)?;
        ensure!(
            state[0] as usize == done,
            "{}: the device is at step {} of the epoch, not {done}",
            self.name,
            state[0]
        );
        if done == self.steps {
            return Ok(PlanPosition { step: 0, adam_t: state[1], metrics: Vec::new() });
        }
        Ok(PlanPosition { step: done as u32, adam_t: state[1], metrics: self.read_metrics(gpu, done)? })
    }

    /// Puts the plan back where [`Plan::position`] found it, in the epoch of sample order `order`.
    pub fn restore(&self, gpu: &Gpu, order: &[u32], at: &PlanPosition) -> Result<()> {
        ensure!(
            at.step as usize <= self.steps && at.metrics.len() == self.metrics_width * at.step as usize,
            "{}: a saved position at step {} with {} metric values does not fit an epoch of {} steps",
            self.name,
            at.step,
            at.metrics.len(),
            self.steps
        );
        self.begin_epoch(gpu, order)?;
        let state =
            StepState { step: at.step, adam_t: at.adam_t, samples: self.samples as u32, batch: self.batch as u32 };
        self.state.write_u32(gpu, bytemuck::cast_slice(std::slice::from_ref(&state)));
        if !at.metrics.is_empty() {
            self.metrics.view("metrics so far", 0, &[at.metrics.len()])?.write_f32(gpu, &at.metrics);
        }
        Ok(())
    }

    /// Reads the metrics of the first `done` steps; fails on a non-finite loss from step
    /// `checked` on. Returns the column sums (loss, correct, terms).
    fn sync(&self, gpu: &Gpu, done: usize, checked: usize) -> Result<Vec<f64>> {
        let m = self.read_metrics(gpu, done)?;
        for (s, pair) in m.chunks(self.metrics_width).enumerate().skip(checked) {
            if !pair[0].is_finite() {
                bail!(
                    "{}: the loss became {} at step {} of the epoch (batch of samples {}..{}); \
                     try a lower --learning-rate",
                    self.name,
                    pair[0],
                    s + 1,
                    s * self.batch,
                    ((s + 1) * self.batch).min(self.samples)
                );
            }
        }
        Ok(metrics::total(&m, done, self.metrics_width))
    }

    /// The metrics of the epoch's first `steps` steps: per step, the sum of its rows' losses,
    /// its number of correct predictions and, for a distillation loss, its terms' sums.
    pub fn read_metrics(&self, gpu: &Gpu, steps: usize) -> Result<Vec<f32>> {
        let bytes = (steps * self.metrics_width * 4) as u64;
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(self.metrics.buffer(), self.metrics.offset_bytes(), &self.staging, 0, bytes);
        gpu.queue.submit([encoder.finish()]);
        let all = crate::gpu::read_staging(gpu, &self.staging)?;
        Ok(bytemuck::cast_slice(&all[..bytes as usize]).to_vec())
    }
}
