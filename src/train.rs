//! The scheduler: plans a model's forward pass, loss, backward pass and Adam update as one
//! list of dispatches with every buffer and bind group made up front, then records that list
//! once per step into one compute pass and one submission. The step index and Adam's t live on
//! the device (see `shaders/batch.wgsl`), so steps need no uploads; per-step metrics stay on
//! the device and are read back only at a few sync points per epoch.

use crate::data::{Split, IMAGE_SIDE, NUM_CLASSES};
use crate::gpu::{tag, Dispatch, Gpu, Tensor};
use crate::model::{Architecture, LEAKY_SLOPE};
use crate::ops::adam::{self, AdamConfig};
use crate::ops::batch::{self, ImageSource, StepState};
use crate::ops::loss::{self, LossOutputs, Objective};
use crate::ops::{activation, conv2d, dense, maxpool, metrics};
use anyhow::{bail, ensure, Context, Result};
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
        })
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
}

impl Model {
    pub fn new(gpu: &Gpu, arch: Architecture, flat: &[f32]) -> Result<Model> {
        ensure!(
            flat.len() == arch.flat_len(),
            "{} weights: {} values given, {} expected",
            arch.name,
            flat.len(),
            arch.flat_len()
        );
        Ok(Model { arch, weights: Tensor::from_f32(gpu, &format!("{} weights", arch.name), &[flat.len()], flat)? })
    }

    fn view(&self, of: &Tensor, name: &str) -> Result<Tensor> {
        let p = self.arch.param(name);
        of.view(name, p.offset, &p.shape)
    }

    pub fn read_flat(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        self.weights.read_f32(gpu)
    }
}

/// The loss a plan optimises or reports.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub enum Loss {
    CrossEntropy,
    /// The Distiller's alpha * CE + (1 - alpha) * T^2 * KL, against the rows of a teacher-logits table.
    Distillation {
        alpha: f32,
        temperature: f32,
    },
}

/// Forward-pass buffers of one model at one batch size.
struct Activations {
    x: Tensor,
    labels: Tensor,
    cols1: Tensor,
    a1: Tensor,
    p1: Tensor,
    argmax1: Tensor,
    cols2: Tensor,
    z2: Tensor,
    logits: Tensor,
    teacher_logits: Tensor,
    scratch: Tensor,
}

impl Activations {
    fn new(gpu: &Gpu, arch: &Architecture, b: usize) -> Result<Activations> {
        let (c1, p, c2) = (arch.conv1_shape(b), arch.pool_shape(b), arch.conv2_shape(b));
        let t = |label: &str, len: usize| Tensor::zeros(gpu, &format!("{} {label}", arch.name), &[len]);
        Ok(Activations {
            x: t("input", c1.input_len())?,
            labels: t("labels", b)?,
            cols1: t("conv1 im2col", c1.m() * c1.k())?,
            a1: t("conv1 output", c1.output_len())?,
            p1: t("pool output", p.output_len())?,
            argmax1: t("pool argmax", p.output_len())?,
            cols2: t("conv2 im2col", c2.m() * c2.k())?,
            z2: t("conv2 output", c2.output_len())?,
            logits: t("logits", b * NUM_CLASSES)?,
            teacher_logits: t("teacher logits", b * NUM_CLASSES)?,
            scratch: t("reduction scratch", scratch_len(arch, b))?,
        })
    }
}

/// One scratch buffer serves every split reduction of a step (they run one after another).
fn scratch_len(arch: &Architecture, b: usize) -> usize {
    let (c1, c2, d) = (arch.conv1_shape(b), arch.conv2_shape(b), arch.dense_shape(b));
    d.scratch_len().max(c1.kernel_grad_scratch()).max(c2.kernel_grad_scratch())
}

/// Checks before any work that every buffer of a training step fits the device's binding limit.
pub fn check_batch_fits(gpu: &Gpu, arch: &Architecture, batch: usize) -> Result<()> {
    let (c1, c2) = (arch.conv1_shape(batch), arch.conv2_shape(batch));
    let largest =
        [c1.m() * c1.k(), c1.output_len(), c2.m() * c2.k(), c2.output_len(), scratch_len(arch, batch), arch.flat_len()]
            .into_iter()
            .max()
            .unwrap_or(0) as u64
            * 4;
    if largest > gpu.max_binding_bytes() {
        let per_sample = largest / batch as u64;
        bail!(
            "--batch-size {batch} is too large for this device: the {} needs a {:.1} MiB buffer, but adapter {} \
             binds at most {:.1} MiB; use --batch-size {} or less",
            arch.name,
            largest as f64 / 1048576.0,
            gpu.info.name,
            gpu.max_binding_bytes() as f64 / 1048576.0,
            (gpu.max_binding_bytes() / per_sample.max(1)).max(1)
        );
    }
    Ok(())
}

/// Per-epoch results of a plan.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct EpochStats {
    pub loss: f64,
    pub accuracy: f64,
    pub steps: usize,
    pub seconds: f64,
}

/// Runs one epoch of several plans side by side: every step records all the plans'
/// dispatches into one compute pass and one submission, so that small models (students of a
/// sweep or of several runs) share the device instead of taking turns. The plans must have the
/// same number of steps; `orders[i]` is plan i's sample order. `progress(done, means)` gets each
/// plan's running (loss, accuracy) at the sync points. Each plan's statistics carry the shared
/// wall time.
pub fn run_epochs_together(
    gpu: &Gpu,
    plans: &[&Plan],
    orders: &[&[u32]],
    sync_points: usize,
    mut progress: impl FnMut(usize, &[(f64, f64)]),
) -> Result<Vec<EpochStats>> {
    ensure!(!plans.is_empty() && plans.len() == orders.len(), "one sample order per plan");
    let steps = plans[0].steps;
    ensure!(plans.iter().all(|p| p.steps == steps), "plans run together must have the same number of steps");
    let start = Instant::now();
    for (plan, order) in plans.iter().zip(orders) {
        plan.begin_epoch(gpu, order)?;
    }
    let every = steps.div_ceil(sync_points.max(1));
    let refs: Vec<&Dispatch> = plans.iter().flat_map(|p| p.dispatches.iter()).collect();
    let mut checked = 0;
    let mut totals = vec![(0.0, 0.0); plans.len()];
    for step in 0..steps {
        gpu.submit(&refs).with_context(|| format!("{}: step {}", plans[0].name, step + 1))?;
        let done = step + 1;
        if done % every == 0 || done == steps {
            for (plan, total) in plans.iter().zip(&mut totals) {
                *total = plan.sync(gpu, done, checked)?;
            }
            checked = done;
            let means: Vec<(f64, f64)> = plans
                .iter()
                .zip(&totals)
                .map(|(p, t)| {
                    let seen = (done * p.batch).min(p.samples) as f64;
                    (t.0 / seen, t.1 / seen)
                })
                .collect();
            progress(done, &means);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(plans
        .iter()
        .zip(&totals)
        .map(|(p, t)| {
            let n = p.samples as f64;
            EpochStats { loss: t.0 / n, accuracy: t.1 / n, steps, seconds }
        })
        .collect())
}

/// A planned step: the dispatch list, its step state, sample order and metrics buffer.
pub struct Plan {
    pub name: String,
    dispatches: Vec<Dispatch>,
    state: Tensor,
    perm: Tensor,
    metrics: Tensor,
    staging: wgpu::Buffer,
    pub batch: usize,
    pub samples: usize,
    pub steps: usize,
}

/// Adam's state for one model: gradients, moments.
struct OptimizerState {
    grads: Tensor,
    m: Tensor,
    v: Tensor,
}

impl Plan {
    fn new(gpu: &Gpu, name: &str, batch: usize, samples: usize) -> Result<Plan> {
        ensure!(batch > 0, "batch size must be at least 1");
        ensure!(samples > 0, "{name}: no samples to run on");
        let steps = samples.div_ceil(batch);
        let state = StepState { step: 0, adam_t: 1, samples: samples as u32, batch: batch as u32 }
            .upload(gpu, &format!("{name} state"))?;
        let metrics = Tensor::zeros(gpu, &format!("{name} metrics"), &[2 * steps])?;
        let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("metrics readback"),
            size: metrics.bytes(),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(Plan {
            name: name.to_string(),
            dispatches: Vec::new(),
            state,
            perm: Tensor::zeros(gpu, &format!("{name} order"), &[samples])?,
            metrics,
            staging,
            batch,
            samples,
            steps,
        })
    }

    /// Gather, forward, loss and metrics: the part every plan shares.
    fn forward(
        &mut self,
        gpu: &Gpu,
        model: &Model,
        data: &DeviceData,
        split: &DeviceSplit,
        act: &Activations,
        teacher_table: Option<&Tensor>,
    ) -> Result<()> {
        let (arch, b) = (&model.arch, self.batch);
        let w = |n: &str| model.view(&model.weights, n);
        let d = &mut self.dispatches;
        d.extend(tag(
            "batch",
            vec![batch::gather_images(gpu, b, &self.state, &self.perm, &data.source(split), &act.x, &act.labels)?],
        ));
        if let Some(table) = teacher_table {
            d.extend(tag(
                "batch",
                vec![batch::gather_rows(gpu, b, NUM_CLASSES, &self.state, &self.perm, table, &act.teacher_logits)?],
            ));
        }
        d.extend(tag(
            "conv1 forward",
            conv2d::forward(
                gpu,
                &arch.conv1_shape(b),
                &act.x,
                &w("conv1.kernel")?,
                &w("conv1.bias")?,
                Some(LEAKY_SLOPE),
                &act.cols1,
                &act.a1,
            )?,
        ));
        d.extend(tag(
            "pool forward",
            vec![maxpool::forward(gpu, &arch.pool_shape(b), &act.a1, &act.p1, &act.argmax1)?],
        ));
        d.extend(tag(
            "conv2 forward",
            conv2d::forward(
                gpu,
                &arch.conv2_shape(b),
                &act.p1,
                &w("conv2.kernel")?,
                &w("conv2.bias")?,
                None,
                &act.cols2,
                &act.z2,
            )?,
        ));
        d.extend(tag(
            "dense forward",
            dense::forward(
                gpu,
                &arch.dense_shape(b),
                &act.z2,
                &w("dense.kernel")?,
                &w("dense.bias")?,
                &act.scratch,
                &act.logits,
            )?,
        ));
        Ok(())
    }

    /// The loss kernel and the metrics record; returns the logit gradient the backward pass reads.
    fn loss(&mut self, gpu: &Gpu, arch: &Architecture, loss: Loss, act: &Activations) -> Result<Tensor> {
        let t = |label: &str, len: usize| Tensor::zeros(gpu, &format!("{} {label}", arch.name), &[len]);
        let dlogits = t("logit gradient", self.batch * NUM_CLASSES)?;
        let (row_loss, row_correct) = (t("row loss", self.batch)?, t("row correct", self.batch)?);
        let out = &LossOutputs { dlogits: &dlogits, row_loss: &row_loss, row_correct: &row_correct };
        let objective = match loss {
            Loss::CrossEntropy => Objective::CrossEntropy,
            Loss::Distillation { alpha, temperature } => {
                Objective::Distillation { teacher_logits: &act.teacher_logits, alpha, temperature }
            }
        };
        let l = loss::loss(gpu, &objective, self.batch, NUM_CLASSES, &self.state, &act.logits, &act.labels, out)?;
        let m = metrics::record(gpu, &self.state, out.row_loss, out.row_correct, &self.metrics)?;
        self.dispatches.extend(tag("loss", vec![l, m]));
        Ok(dlogits)
    }

    /// A training step: forward, loss, backward, Adam. `teacher_table` holds the teacher's
    /// logits for every sample of `split` (distillation only).
    #[allow(clippy::too_many_arguments)]
    pub fn train(
        gpu: &Gpu,
        name: &str,
        model: &Model,
        loss: Loss,
        data: &DeviceData,
        split: &DeviceSplit,
        teacher_table: Option<&Tensor>,
        batch: usize,
        adam_cfg: &AdamConfig,
    ) -> Result<Plan> {
        let mut plan = Plan::new(gpu, name, batch, split.samples)?;
        let (arch, b) = (model.arch, batch);
        check_batch_fits(gpu, &arch, b)?;
        let act = Activations::new(gpu, &arch, b)?;
        plan.forward(gpu, model, data, split, &act, teacher_table)?;

        let t = |label: &str, len: usize| Tensor::zeros(gpu, &format!("{} {label}", arch.name), &[len]);
        let (c1, p, c2, d) = (arch.conv1_shape(b), arch.pool_shape(b), arch.conv2_shape(b), arch.dense_shape(b));
        let dlogits = plan.loss(gpu, &arch, loss, &act)?;

        let opt = OptimizerState {
            grads: t("gradients", arch.flat_len())?,
            m: t("adam m", arch.flat_len())?,
            v: t("adam v", arch.flat_len())?,
        };
        let w = |n: &str| model.view(&model.weights, n);
        let g = |n: &str| model.view(&opt.grads, n);
        let dz2 = t("conv2 output gradient", c2.output_len())?;
        let w2t = t("conv2 kernel transposed", c2.kernel_len())?;
        let dcols2 = t("conv2 im2col gradient", c2.m() * c2.k())?;
        let dp1 = t("pool output gradient", p.output_len())?;
        let da1 = t("conv1 output gradient", c1.output_len())?;
        let dz1 = t("conv1 pre-activation gradient", c1.output_len())?;
        let ds = &mut plan.dispatches;
        ds.extend(tag(
            "dense backward",
            dense::backward(
                gpu,
                &d,
                &act.z2,
                &w("dense.kernel")?,
                &dlogits,
                Some(&dz2),
                &g("dense.kernel")?,
                &g("dense.bias")?,
                &act.scratch,
            )?,
        ));
        ds.extend(tag(
            "conv2 input grad",
            conv2d::backward_input(gpu, &c2, &dz2, &w("conv2.kernel")?, &w2t, &dcols2, &dp1)?,
        ));
        ds.extend(tag(
            "conv2 kernel grad",
            conv2d::backward_kernel(gpu, &c2, &act.cols2, &dz2, &g("conv2.kernel")?, &g("conv2.bias")?, &act.scratch)?,
        ));
        ds.extend(tag("pool backward", vec![maxpool::backward(gpu, &p, &dp1, &act.argmax1, &da1)?]));
        ds.extend(tag("leaky backward", vec![activation::leaky_relu_backward(gpu, LEAKY_SLOPE, &act.a1, &da1, &dz1)?]));
        ds.extend(tag(
            "conv1 kernel grad",
            conv2d::backward_kernel(gpu, &c1, &act.cols1, &dz1, &g("conv1.kernel")?, &g("conv1.bias")?, &act.scratch)?,
        ));
        ds.extend(tag(
            "adam",
            vec![adam::step(gpu, adam_cfg, &plan.state, &model.weights, &opt.grads, &opt.m, &opt.v)?],
        ));
        ds.extend(tag("batch", vec![batch::advance(gpu, &plan.state)?]));
        Ok(plan)
    }

    /// Loss and accuracy over `split` without training (Keras's evaluate).
    #[allow(clippy::too_many_arguments)]
    pub fn evaluate(
        gpu: &Gpu,
        name: &str,
        model: &Model,
        loss: Loss,
        data: &DeviceData,
        split: &DeviceSplit,
        teacher_table: Option<&Tensor>,
        batch: usize,
    ) -> Result<Plan> {
        let mut plan = Plan::new(gpu, name, batch, split.samples)?;
        let arch = model.arch;
        let act = Activations::new(gpu, &arch, batch)?;
        plan.forward(gpu, model, data, split, &act, teacher_table)?;
        plan.loss(gpu, &arch, loss, &act)?;
        plan.dispatches.push(batch::advance(gpu, &plan.state)?);
        Ok(plan)
    }

    /// Writes the model's logits for every sample of `split`, in order, into `table`
    /// (samples x 10): the frozen teacher's outputs, computed once for distillation.
    pub fn logits(
        gpu: &Gpu,
        name: &str,
        model: &Model,
        data: &DeviceData,
        split: &DeviceSplit,
        table: &Tensor,
        batch: usize,
    ) -> Result<Plan> {
        ensure!(table.len() >= split.samples * NUM_CLASSES, "logits table too small");
        let mut plan = Plan::new(gpu, name, batch, split.samples)?;
        let act = Activations::new(gpu, &model.arch, batch)?;
        plan.forward(gpu, model, data, split, &act, None)?;
        plan.dispatches.push(batch::store_rows(gpu, batch, NUM_CLASSES, &plan.state, &act.logits, table)?);
        plan.dispatches.push(batch::advance(gpu, &plan.state)?);
        Ok(plan)
    }

    /// Kernel names in recording order (for the benchmark and error messages).
    pub fn kernels(&self) -> Vec<&str> {
        self.dispatches.iter().map(|d| d.kernel.as_str()).collect()
    }

    pub fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }

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
        let stats = run_epochs_together(gpu, &[self], &[order], sync_points, |done, m| progress(done, m[0].0, m[0].1))?;
        Ok(stats[0])
    }

    /// Starts an epoch: the sample order, and the step index back to 0 (Adam's t carries on).
    fn begin_epoch(&self, gpu: &Gpu, order: &[u32]) -> Result<()> {
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

    /// Reads the metrics of the first `done` steps; fails on a non-finite loss from step
    /// `checked` on. Returns the (loss, correct) sums.
    fn sync(&self, gpu: &Gpu, done: usize, checked: usize) -> Result<(f64, f64)> {
        let m = self.read_metrics(gpu, done)?;
        for (s, pair) in m.chunks(2).enumerate().skip(checked) {
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
        Ok(metrics::total(&m, done))
    }

    fn read_metrics(&self, gpu: &Gpu, steps: usize) -> Result<Vec<f32>> {
        let bytes = (steps * 2 * 4) as u64;
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(self.metrics.buffer(), self.metrics.offset_bytes(), &self.staging, 0, bytes);
        gpu.queue.submit([encoder.finish()]);
        let all = crate::gpu::read_staging(gpu, &self.staging)?;
        Ok(bytemuck::cast_slice(&all[..bytes as usize]).to_vec())
    }
}
