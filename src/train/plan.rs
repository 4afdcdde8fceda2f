//! A step planned from the layer list: every buffer and bind group made up front, the
//! dispatches in recording order.
//!
//! The list is first lowered into stages ([`super::lower`]), which decide every fusion; each
//! stage's dispatches come from its layer's kind ([`crate::model::Kind`]). Forward, stage by
//! stage; backward, in reverse from the last layer down to the first layer with parameters:
//! each stage turns the gradient of its output into the gradient of its input (not needed
//! below the first layer with parameters) and of its parameters, which are views into one flat
//! gradient buffer in the layout of the weights, so that Adam updates the whole model in one
//! dispatch.

use super::feature::FeatureTable;
use super::lower::{lower, BackwardStage, ForwardStage, Lowered};
use super::{DeviceData, DeviceSplit, Loss, Model};
use crate::data::{IMAGE_SIDE, NUM_CLASSES};
use crate::gpu::{tag, Dispatch, Gpu, Tensor};
use crate::model::layers::{Draw, Gradients, Planned};
use crate::model::{Architecture, FeatureSpec, Mode, PlacedLayer};
use crate::ops::adam::{self, AdamConfig};
use crate::ops::batch::{self, Shift, StepState};
use crate::ops::feature::{self as feature_ops, FeatureBuffers, FeatureTerm};
use crate::ops::loss::{self, Distill, LossInputs, LossOutputs, Objective, FEATURE_TERM};
use crate::ops::metrics;
use anyhow::{bail, ensure, Context, Result};
use std::sync::Arc;

/// What a plan reads at each step: a split of the resident data and, for distillation, the
/// teacher's logits for every sample of that split.
#[derive(Clone, Copy)]
pub struct Feed<'a> {
    pub data: &'a DeviceData,
    pub split: &'a DeviceSplit,
    pub teacher_logits: Option<&'a Tensor>,
}

/// What one layer's forward pass writes, and keeps for its backward pass.
struct LayerBuffers {
    /// Its output; a layer that passes its input through, or an activation fused into the
    /// product before it, shares the buffer of what it reads.
    output: Tensor,
    /// What its kind keeps ([`crate::model::Kind::saved_len`]): a convolution's im2col matrix
    /// (unless its products gather it), a pooling layer's winners.
    saved: Option<Tensor>,
}

/// What a model's first layer reads.
#[derive(Clone, Copy)]
enum Reads<'a> {
    /// The batch's images, which the plan gathers into its own buffer.
    Images,
    /// The images (and labels) of another model of the plan: a teacher sees the student's batch.
    ImagesOf(&'a Activations),
    /// The output of a layer of another model of the plan, which it passes a gradient back
    /// (a feature term's projection reads the student's layer).
    Output(&'a Activations, usize),
}

/// Forward-pass buffers of one model at one batch size.
struct Activations {
    batch: usize,
    /// The model's stages in the plan's mode (training or evaluation), which decide the
    /// layers that have buffers of their own.
    stages: Lowered,
    x: Tensor,
    labels: Tensor,
    teacher_logits: Tensor,
    layers: Vec<LayerBuffers>,
    /// One scratch buffer serves every split reduction of a step (they run one after another).
    scratch: Tensor,
}

/// Elements of the largest buffers a training step of `arch` needs at `batch` (those
/// [`Activations::new`] and the backward pass allocate), named, for the check against the
/// device's binding limit.
fn step_buffer_sizes(arch: &Architecture, batch: usize) -> Vec<(String, usize)> {
    let mut sizes =
        vec![("weights".to_string(), arch.flat_len()), ("reduction scratch".into(), scratch_len(arch, batch))];
    for layer in arch.walk() {
        let at = layer.at(batch);
        sizes.push((format!("{} output", layer.name), batch * layer.output.len()));
        sizes.extend(layer.kind().buffer_sizes(&at).into_iter().map(|(what, n)| (format!("{} {what}", layer.name), n)));
    }
    sizes
}

fn scratch_len(arch: &Architecture, batch: usize) -> usize {
    arch.walk().iter().map(|l| l.kind().scratch_len(&l.at(batch))).max().unwrap_or(0).max(1)
}

/// Checks before any work that every buffer of a training step fits the device's binding limit.
pub fn check_batch_fits(gpu: &Gpu, arch: &Architecture, batch: usize) -> Result<()> {
    let (name, largest) = step_buffer_sizes(arch, batch).into_iter().max_by_key(|(_, n)| *n).unwrap_or_default();
    let bytes = largest as u64 * 4;
    if bytes > gpu.max_binding_bytes() {
        let per_sample = bytes / batch as u64;
        bail!(
            "--batch-size {batch} is too large for this device: the {}'s {name} needs a {:.1} MiB buffer, but \
             adapter {} binds at most {:.1} MiB; use --batch-size {} or less",
            arch.name(),
            bytes as f64 / 1048576.0,
            gpu.info.name,
            gpu.max_binding_bytes() as f64 / 1048576.0,
            (gpu.max_binding_bytes() / per_sample.max(1)).max(1)
        );
    }
    Ok(())
}

impl Activations {
    /// Buffers for `arch` at batch `b` in `mode`, whose first layer reads `reads`.
    fn new(gpu: &Gpu, arch: &Architecture, b: usize, mode: Mode, reads: Reads) -> Result<Activations> {
        let t = |label: &str, len: usize| Tensor::zeros(gpu, &format!("{} {label}", arch.name()), &[len]);
        let (x, labels) = match reads {
            Reads::Images => (t("input", b * IMAGE_SIDE * IMAGE_SIDE)?, t("labels", b)?),
            Reads::ImagesOf(other) => (other.x.clone(), other.labels.clone()),
            Reads::Output(other, layer) => (other.layers[layer].output.clone(), other.labels.clone()),
        };
        let walk = arch.walk();
        let stages = lower(&walk, mode, matches!(reads, Reads::Output(..)));
        let mut layers: Vec<LayerBuffers> = Vec::with_capacity(walk.len());
        for (layer, &shares) in walk.iter().zip(&stages.shares_input) {
            let output = match (shares, layers.last()) {
                (true, Some(before)) => before.output.clone(),
                (true, None) => x.clone(),
                (false, _) => t(&format!("{} output", layer.name), b * layer.output.len())?,
            };
            let saved = match layer.kind().saved_len(gpu, &layer.at(b)) {
                Some((what, len)) => Some(t(&format!("{} {what}", layer.name), len)?),
                None => None,
            };
            layers.push(LayerBuffers { output, saved });
        }
        Ok(Activations {
            batch: b,
            stages,
            x,
            labels,
            teacher_logits: t("teacher logits", b * NUM_CLASSES)?,
            layers,
            scratch: t("reduction scratch", scratch_len(arch, b))?,
        })
    }

    /// What layer `i` reads: the model's input, or the output of the layer before.
    fn input(&self, i: usize) -> &Tensor {
        if i == 0 {
            &self.x
        } else {
            &self.layers[i - 1].output
        }
    }

    fn logits(&self) -> &Tensor {
        &self.layers.last().expect("a network has layers").output
    }
}

/// Adam's state for one model: gradients and moments, in the layout of the weights.
struct OptimizerState {
    grads: Tensor,
    m: Tensor,
    v: Tensor,
}

/// One model's buffers in a plan: its activations and, when the plan trains it, Adam's state.
struct PlannedModel {
    activations: Activations,
    optimizer: Option<OptimizerState>,
}

/// The seed's Distiller as Keras 3 runs it: the student learns from the teacher's logits,
/// and the teacher from the distillation terms ((1 - alpha) * T^2 * KL in the seed), both by
/// one Adam (one step count for both, a moment pair each, fresh when the plan is made).
pub struct Distiller<'a> {
    pub student: &'a Model,
    pub teacher: &'a Model,
    pub distill: Distill,
}

/// keras.distillation's Distiller with a feature term beside its logits terms: the frozen
/// teacher's layer output and logits (as the Distiller computes them, with training=False);
/// the student learns from both, and with `:project` the projection from its channels to the
/// teacher's ([`Model::projection`]) learns with it (same Adam step count).
pub struct FeatureDistiller<'a> {
    pub student: &'a Model,
    pub teacher: FeatureTeacher<'a>,
    pub distill: Distill,
    pub feature: FeatureSpec,
    pub projection: Option<&'a Model>,
}

/// Where a feature term's teacher outputs come from. Both give the same bits: an image's
/// outputs do not depend on the batch it runs in.
#[derive(Clone, Copy)]
pub enum FeatureTeacher<'a> {
    /// The teacher runs at every step, for its layer's output and its logits.
    EachStep(&'a Model),
    /// Its layer's outputs for every training image, in host memory, whose batch rows the host
    /// writes before each step; its logits from the feed's table. The step runs the student alone.
    Table(&'a Architecture, &'a Arc<FeatureTable>),
}

impl FeatureTeacher<'_> {
    pub fn arch(&self) -> &Architecture {
        match self {
            FeatureTeacher::EachStep(model) => &model.arch,
            FeatureTeacher::Table(arch, _) => arch,
        }
    }
}

/// Rows the host writes before each step: a [`FeatureTable`]'s rows of the step's batch.
pub(super) struct HostRows {
    table: Arc<FeatureTable>,
    dest: Tensor,
}

/// What an [`Injection`] records, given the gradient buffer it joins.
type InjectedDispatches<'a> = Box<dyn FnMut(&Tensor) -> Result<Vec<Dispatch>> + 'a>;

/// Dispatches that run inside a backward pass where the gradient of `layer`'s output is
/// formed (before that layer's own stage), given that gradient's buffer.
struct Injection<'a> {
    layer: usize,
    dispatches: InjectedDispatches<'a>,
}

/// A planned step: the dispatch list, its step state, sample order and metrics buffer.
pub struct Plan {
    pub name: String,
    pub(super) dispatches: Vec<Dispatch>,
    pub(super) state: Tensor,
    pub(super) perm: Tensor,
    pub(super) metrics: Tensor,
    /// Values per step in `metrics`: loss sum, correct count, then the sums of the loss's
    /// terms, named by `terms`.
    pub(super) metrics_width: usize,
    pub(super) terms: Vec<&'static str>,
    /// The loss kernel's per-row outputs, which the metrics record sums.
    rows: Option<RowBuffers>,
    pub(super) staging: wgpu::Buffer,
    pub batch: usize,
    pub samples: usize,
    pub steps: usize,
    /// The model the plan runs (whose loss and accuracy it records), then a teacher run beside
    /// it (co-trained, or frozen for a feature term), then a feature term's projection (planned
    /// after the loss, which takes model 1 for the teacher).
    models: Vec<PlannedModel>,
    /// An evaluation's logits for every sample, in order, read back once at its end.
    logits: Option<Tensor>,
    /// A feature term's projection, trained with the student: its place in `models`, and its
    /// weights.
    projection: Option<(usize, Tensor)>,
    /// A feature term's teacher outputs, written by the host before each step.
    pub(super) host_rows: Option<HostRows>,
}

/// A loss kernel's per-row outputs.
#[derive(Clone)]
struct RowBuffers {
    loss: Tensor,
    correct: Tensor,
    terms: Option<Tensor>,
}

/// The terms a loss records per row ([`loss::TERMS`] for distillation).
fn loss_terms(loss: Loss) -> Vec<&'static str> {
    match loss {
        Loss::CrossEntropy => Vec::new(),
        Loss::Distillation(_) => loss::TERMS.to_vec(),
    }
}

impl Plan {
    fn new(
        gpu: &Gpu,
        name: &str,
        arch: &Architecture,
        (batch, samples): (usize, usize),
        mode: Mode,
        terms: Vec<&'static str>,
    ) -> Result<Plan> {
        ensure!(batch > 0, "batch size must be at least 1");
        ensure!(samples > 0, "{name}: no samples to run on");
        let steps = samples.div_ceil(batch);
        let state = StepState { step: 0, adam_t: 1, samples: samples as u32, batch: batch as u32 }
            .upload(gpu, &format!("{name} state"))?;
        let metrics_width = 2 + terms.len();
        let metrics = Tensor::zeros(gpu, &format!("{name} metrics"), &[metrics_width * steps])?;
        let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("metrics readback"),
            size: metrics.bytes(),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let activations = Activations::new(gpu, arch, batch, mode, Reads::Images)?;
        Ok(Plan {
            name: name.to_string(),
            dispatches: Vec::new(),
            state,
            perm: Tensor::zeros(gpu, &format!("{name} order"), &[samples])?,
            metrics,
            metrics_width,
            terms,
            rows: None,
            staging,
            batch,
            samples,
            steps,
            models: vec![PlannedModel { activations, optimizer: None }],
            logits: None,
            projection: None,
            host_rows: None,
        })
    }

    /// The batch's images and labels, and with a logits table the teacher's rows of it; with
    /// `shift` (training a [`Model::augmented`]), the images moved by it.
    fn gather(&mut self, gpu: &Gpu, feed: &Feed, shift: Option<Shift>) -> Result<()> {
        let (act, b) = (&self.models[0].activations, self.batch);
        let source = feed.data.source(feed.split);
        let (state, perm, x, labels) = (&self.state, &self.perm, &act.x, &act.labels);
        let images = match shift {
            // A table's rows are the logits of the images as they are, not as moved.
            Some(s) if s.pixels > 0 => {
                ensure!(feed.teacher_logits.is_none(), "{}: a logits table cannot follow moved images", self.name);
                batch::gather_shifted_images(gpu, b, s, state, perm, &source, x, labels)?
            }
            _ => batch::gather_images(gpu, b, state, perm, &source, x, labels)?,
        };
        let mut d = vec![images];
        if let Some(table) = feed.teacher_logits {
            d.push(batch::gather_rows(gpu, b, NUM_CLASSES, &self.state, &self.perm, table, &act.teacher_logits)?);
        }
        self.dispatches.extend(tag("batch", d));
        Ok(())
    }

    /// Every forward stage's dispatches of model `which` of the plan.
    fn forward(&mut self, gpu: &Gpu, model: &Model, which: usize) -> Result<()> {
        let act = &self.models[which].activations;
        let walk = model.arch.walk();
        let mut dispatches = Vec::new();
        for &ForwardStage { layer: i, epilogue } in &act.stages.forward {
            let params = model.layer_params(&model.weights, &walk[i])?;
            // A fused activation's output is this buffer too: the stage writes the activation's.
            let y = &act.layers[epilogue.map_or(i, |(e, _)| e)].output;
            let p = self.planned(gpu, model, which, (i, &walk[i]), &params, y);
            let d = walk[i].kind().forward(&p, epilogue.map(|(_, slope)| slope))?;
            dispatches.extend(tag(&format!("{} forward", walk[i].name), d));
        }
        self.dispatches.extend(dispatches);
        Ok(())
    }

    /// Layer `i` of model `which` as its kind plans it, writing `y`.
    fn planned<'a>(
        &'a self,
        gpu: &'a Gpu,
        model: &Model,
        which: usize,
        (i, layer): (usize, &PlacedLayer),
        params: &'a [Tensor],
        y: &'a Tensor,
    ) -> Planned<'a> {
        let act = &self.models[which].activations;
        Planned {
            gpu,
            at: layer.at(act.batch),
            label: format!("{} {}", model.arch.name(), layer.name),
            draw: Draw { seed: model.seed, layer: i as u32 },
            state: &self.state,
            x: act.input(i),
            y,
            saved: act.layers[i].saved.as_ref(),
            params,
            scratch: &act.scratch,
        }
    }

    /// The loss kernel of the plan's model; returns the logit gradient the backward pass
    /// reads. With a co-trained teacher the kernel also writes `teacher_grad`, the gradient of
    /// the loss with respect to the teacher's logits. [`Plan::record_metrics`] sums its rows.
    fn loss(&mut self, gpu: &Gpu, arch: &Architecture, loss: Loss, teacher_grad: Option<&Tensor>) -> Result<Tensor> {
        let t = |label: &str, len: usize| Tensor::zeros(gpu, &format!("{} {label}", arch.name()), &[len]);
        let act = &self.models[0].activations;
        let dlogits = t("logit gradient", self.batch * NUM_CLASSES)?;
        let (row_loss, row_correct) = (t("row loss", self.batch)?, t("row correct", self.batch)?);
        let row_terms = match loss {
            Loss::Distillation(_) => Some(t("row loss terms", self.batch * self.terms.len())?),
            Loss::CrossEntropy => None,
        };
        let out = &LossOutputs {
            dlogits: &dlogits,
            row_loss: &row_loss,
            row_correct: &row_correct,
            row_terms: row_terms.as_ref(),
        };
        let objective = match loss {
            Loss::CrossEntropy => Objective::CrossEntropy,
            Loss::Distillation(distill) => {
                // The co-trained teacher's logits come from its forward pass, not from a table.
                let teacher_logits = match self.models.get(1) {
                    Some(teacher) => teacher.activations.logits(),
                    None => &act.teacher_logits,
                };
                Objective::Distillation { teacher_logits, distill, teacher_grad }
            }
        };
        let input = LossInputs { state: &self.state, logits: act.logits(), labels: &act.labels };
        let l = loss::loss(gpu, &objective, (self.batch, NUM_CLASSES), &input, out)?;
        self.dispatches.extend(tag("loss", vec![l]));
        self.rows = Some(RowBuffers { loss: row_loss, correct: row_correct, terms: row_terms });
        Ok(dlogits)
    }

    /// The step's loss sum, correct count and terms' sums into the metrics table.
    fn record_metrics(&mut self, gpu: &Gpu) -> Result<()> {
        let rows = self.rows.as_ref().context("the metrics record follows the loss")?;
        let m = metrics::record(gpu, &self.state, &rows.loss, &rows.correct, rows.terms.as_ref(), &self.metrics)?;
        self.dispatches.extend(tag("loss", vec![m]));
        Ok(())
    }

    /// Model `which`'s backward pass from `dlogits` (the gradient of its output), then its
    /// Adam update (Adam's t is the plan's step count, shared by every model the plan trains).
    /// Returns the gradient of its input where its stages write it (a head's).
    fn optimise(
        &mut self,
        gpu: &Gpu,
        model: &Model,
        which: usize,
        dlogits: Tensor,
        adam: &AdamConfig,
        inject: Option<Injection<'_>>,
    ) -> Result<Option<Tensor>> {
        let arch = &model.arch;
        let t = |label: &str| Tensor::zeros(gpu, &format!("{} {label}", arch.name()), &[arch.flat_len()]);
        let opt = OptimizerState { grads: t("gradients")?, m: t("adam m")?, v: t("adam v")? };
        let dx = self.backward(gpu, model, which, dlogits, &opt.grads, inject)?;
        let step = adam::step(gpu, adam, &self.state, &model.weights, &opt.grads, &opt.m, &opt.v)?;
        self.dispatches.extend(tag("adam", vec![step]));
        self.models[which].optimizer = Some(opt);
        Ok(dx)
    }

    /// Every backward stage's dispatches, the list in reverse, from `dlogits` into `grads`;
    /// `inject`'s dispatches run where the gradient of its layer's output is formed. Returns
    /// the gradient of the model's input where the last stage writes it.
    fn backward(
        &mut self,
        gpu: &Gpu,
        model: &Model,
        which: usize,
        dlogits: Tensor,
        grads: &Tensor,
        mut inject: Option<Injection<'_>>,
    ) -> Result<Option<Tensor>> {
        let walk = model.arch.walk();
        // The gradient of the output of the layer being processed.
        let mut dy = dlogits;
        let mut dispatches = Vec::new();
        for stage in &self.models[which].activations.stages.backward {
            let BackwardStage { layer: i, through, needs_dx } = *stage;
            if let Some(mut injection) = inject.take_if(|j| j.layer == i) {
                dispatches.extend(tag(&format!("{} feature term", walk[i].name), (injection.dispatches)(&dy)?));
            }
            let (layer, reaches) = (&walk[i], &walk[stage.lowest()]);
            let dx = match needs_dx {
                true => {
                    let label = format!("{} {} input gradient", model.arch.name(), reaches.name);
                    Some(Tensor::zeros(gpu, &label, &[self.batch * reaches.input.len()])?)
                }
                false => None,
            };
            let (params, param_grads) = (model.layer_params(&model.weights, layer)?, model.layer_params(grads, layer)?);
            let y = &self.models[which].activations.layers[i].output;
            let p = self.planned(gpu, model, which, (i, &walk[i]), &params, y);
            let g = Gradients { dy: &dy, params: &param_grads, dx: dx.as_ref(), through: through.map(|(_, s)| s) };
            let label = match through {
                Some((a, _)) => format!("{} + {} backward", layer.name, walk[a].name),
                None => format!("{} backward", layer.name),
            };
            for mut d in layer.kind().backward(&p, &g)? {
                d.layer = if d.layer.is_empty() { label.clone() } else { format!("{} {}", layer.name, d.layer) };
                dispatches.push(d);
            }
            if let Some(dx) = dx {
                dy = dx;
            }
        }
        ensure!(inject.is_none(), "{}: no backward stage forms the gradient of the distilled layer", self.name);
        self.dispatches.extend(dispatches);
        let stages = &self.models[which].activations.stages.backward;
        Ok(stages.last().is_some_and(|s| s.needs_dx).then_some(dy))
    }

    /// A training step: forward, loss, backward, Adam, next step.
    pub fn train(
        gpu: &Gpu,
        name: &str,
        model: &Model,
        loss: Loss,
        feed: &Feed,
        batch: usize,
        adam: &AdamConfig,
    ) -> Result<Plan> {
        check_batch_fits(gpu, &model.arch, batch)?;
        let split = (batch, feed.split.samples);
        let mut plan = Plan::new(gpu, name, &model.arch, split, Mode::Train, loss_terms(loss))?;
        plan.gather(gpu, feed, Some(Shift { pixels: model.shift, seed: model.seed }))?;
        plan.forward(gpu, model, 0)?;
        let dlogits = plan.loss(gpu, &model.arch, loss, None)?;
        plan.record_metrics(gpu)?;
        plan.optimise(gpu, model, 0, dlogits, adam, None)?;
        plan.dispatches.extend(tag("batch", vec![batch::advance(gpu, &plan.state)?]));
        Ok(plan)
    }

    /// A step of the seed's Distiller: the teacher's and the student's forward passes, the
    /// distillation loss with its gradients for both, both backward passes, Adam for both.
    pub fn distiller(
        gpu: &Gpu,
        name: &str,
        distiller: &Distiller,
        feed: &Feed,
        batch: usize,
        adam: &AdamConfig,
    ) -> Result<Plan> {
        let (student, teacher) = (distiller.student, distiller.teacher);
        let loss = Loss::Distillation(distiller.distill);
        let mut plan = Plan::with_teacher(gpu, name, (student, teacher), feed, batch, loss_terms(loss))?;
        let dteacher = Tensor::zeros(gpu, &format!("{name} teacher logit gradient"), &[batch * NUM_CLASSES])?;
        let dlogits = plan.loss(gpu, &student.arch, loss, Some(&dteacher))?;
        plan.record_metrics(gpu)?;
        plan.optimise(gpu, student, 0, dlogits, adam, None)?;
        plan.optimise(gpu, teacher, 1, dteacher, adam, None)?;
        plan.dispatches.extend(tag("batch", vec![batch::advance(gpu, &plan.state)?]));
        Ok(plan)
    }

    /// The start of a step in which a teacher runs beside the student (model 1 of the plan):
    /// the student's batch (moved or not) and both forward passes, the teacher's as the
    /// Distiller calls it, with training=False (its Dropout layers keep everything). Its
    /// logits come from that pass, not from a table.
    fn with_teacher(
        gpu: &Gpu,
        name: &str,
        (student, teacher): (&Model, &Model),
        feed: &Feed,
        batch: usize,
        terms: Vec<&'static str>,
    ) -> Result<Plan> {
        ensure!(feed.teacher_logits.is_none(), "{name}: the teacher computes its logits at every step");
        check_batch_fits(gpu, &student.arch, batch)?;
        check_batch_fits(gpu, &teacher.arch, batch)?;
        let mut plan = Plan::new(gpu, name, &student.arch, (batch, feed.split.samples), Mode::Train, terms)?;
        let student_batch = Reads::ImagesOf(&plan.models[0].activations);
        let activations = Activations::new(gpu, &teacher.arch, batch, Mode::Evaluate, student_batch)?;
        plan.models.push(PlannedModel { activations, optimizer: None });
        plan.gather(gpu, feed, Some(Shift { pixels: student.shift, seed: student.seed }))?;
        plan.forward(gpu, teacher, 1)?;
        plan.forward(gpu, student, 0)?;
        Ok(plan)
    }

    /// A step of [`FeatureDistiller`]: the teacher's and the student's forward passes, the
    /// logits terms, the feature term (through the projection's forward and backward passes and
    /// Adam), the student's backward pass with the feature term's gradient joining it at its
    /// layer, Adam for the student.
    pub fn feature_distiller(
        gpu: &Gpu,
        name: &str,
        fd: &FeatureDistiller,
        feed: &Feed,
        batch: usize,
        adam: &AdamConfig,
    ) -> Result<Plan> {
        let student = fd.student;
        let loss = Loss::Distillation(fd.distill);
        let terms = [&loss::TERMS[..], &[FEATURE_TERM]].concat();
        let mut plan = match fd.teacher {
            FeatureTeacher::EachStep(teacher) => Plan::with_teacher(gpu, name, (student, teacher), feed, batch, terms)?,
            FeatureTeacher::Table(arch, table) => {
                let width = arch.walk()[fd.feature.teacher_layer].output.len();
                ensure!(
                    table.width == width && table.samples() == feed.split.samples,
                    "{name}: a feature table of {} x {} values for a layer of {width} and {} images",
                    table.samples(),
                    table.width,
                    feed.split.samples
                );
                ensure!(feed.teacher_logits.is_some(), "{name}: a feature table goes with the teacher's logits table");
                check_batch_fits(gpu, &student.arch, batch)?;
                let mut plan = Plan::new(gpu, name, &student.arch, (batch, feed.split.samples), Mode::Train, terms)?;
                // Refuses moved images: the table holds the images as they are.
                plan.gather(gpu, feed, Some(Shift { pixels: student.shift, seed: student.seed }))?;
                plan.forward(gpu, student, 0)?;
                let dest = Tensor::zeros(gpu, &format!("{name} teacher features"), &[batch * width])?;
                plan.host_rows = Some(HostRows { table: Arc::clone(table), dest });
                plan
            }
        };
        let dlogits = plan.loss(gpu, &student.arch, loss, None)?;
        let inject = plan.feature_term(gpu, fd, adam)?;
        plan.optimise(gpu, student, 0, dlogits, adam, Some(inject))?;
        // After the feature term, which adds its rows' values.
        plan.record_metrics(gpu)?;
        plan.dispatches.extend(tag("batch", vec![batch::advance(gpu, &plan.state)?]));
        Ok(plan)
    }

    /// The feature term: the MSE between the teacher's layer and the student's (or, with a
    /// projection, the projection's output: its forward pass, then the MSE's gradient through
    /// its backward pass into its parameters, which Adam updates, and into the student's layer).
    /// Returns what runs where the student's layer's gradient is formed: the term's gradient
    /// added to it.
    fn feature_term<'a>(&mut self, gpu: &'a Gpu, fd: &FeatureDistiller, adam: &AdamConfig) -> Result<Injection<'a>> {
        let FeatureSpec { teacher_layer, student_layer, weight, project } = fd.feature;
        let (t_dims, s_dims) =
            (fd.teacher.arch().walk()[teacher_layer].output, fd.student.arch.walk()[student_layer].output);
        let (b, features) = (self.batch, t_dims.len());
        let t_out = match &self.host_rows {
            Some(rows) => rows.dest.clone(),
            None => self.models[1].activations.layers[teacher_layer].output.clone(),
        };
        let s_out = self.models[0].activations.layers[student_layer].output.clone();
        let rows = self.rows.clone().context("the feature term follows the loss")?;
        let row_terms = rows.terms.clone().context("a distillation loss records its terms")?;
        let state = self.state.clone();
        let scale = (1.0 - fd.distill.alpha) * weight;
        let term = move |accumulate| FeatureTerm { scale, column: loss::TERMS.len(), accumulate };
        if !project {
            ensure!(
                s_dims == t_dims,
                "{}: the feature layers' outputs differ ({s_dims:?} and {t_dims:?}) without a projection",
                self.name
            );
            // The term's gradient is added to the student's own.
            let dispatches = move |dy: &Tensor| -> Result<Vec<Dispatch>> {
                let buffers = FeatureBuffers {
                    state: &state,
                    student: &s_out,
                    teacher: &t_out,
                    grad: dy,
                    row_loss: &rows.loss,
                    row_terms: &row_terms,
                };
                Ok(vec![feature_ops::mse(gpu, (b, features), term(true), &buffers)?])
            };
            return Ok(Injection { layer: student_layer, dispatches: Box::new(dispatches) });
        }
        let projection = fd.projection.context("`:project` needs its projection")?;
        let arch = &projection.arch;
        ensure!(
            (arch.input().channels(), arch.input().len()) == (s_dims.channels(), s_dims.len())
                && arch.output().len() == features,
            "{}: a projection of {:?} to {:?} does not map {s_dims:?} onto {t_dims:?}",
            self.name,
            arch.input(),
            arch.output()
        );
        check_batch_fits(gpu, arch, b)?;
        let which = self.models.len();
        let reads = Reads::Output(&self.models[0].activations, student_layer);
        let activations = Activations::new(gpu, arch, b, Mode::Train, reads)?;
        self.models.push(PlannedModel { activations, optimizer: None });
        // Labelled as the term's, at the student's layer: "conv2 feature term: projection conv1 forward".
        let relabel = |dispatches: &mut [Dispatch], prefix: &str| {
            dispatches.iter_mut().for_each(|d| d.layer = format!("{prefix}{}", d.layer));
        };
        let first = self.dispatches.len();
        self.forward(gpu, projection, which)?;
        relabel(&mut self.dispatches[first..], &format!("{} ", arch.name()));
        // The term's gradient is the projection output's, whose input gradient joins the student's.
        let doutput = Tensor::zeros(gpu, &format!("{} {} output gradient", self.name, arch.name()), &[b * features])?;
        let buffers = FeatureBuffers {
            state: &state,
            student: self.models[which].activations.logits(),
            teacher: &t_out,
            grad: &doutput,
            row_loss: &rows.loss,
            row_terms: &row_terms,
        };
        let mse = feature_ops::mse(gpu, (b, features), term(false), &buffers)?;
        self.dispatches.extend(tag("mse", vec![mse]));
        let backward = self.dispatches.len();
        let dinput = self.optimise(gpu, projection, which, doutput, adam, None)?;
        let dinput = dinput.context("a projection passes its input a gradient")?;
        relabel(&mut self.dispatches[backward..], &format!("{} ", arch.name()));
        let student_name = &fd.student.arch.walk()[student_layer].name;
        relabel(&mut self.dispatches[first..], &format!("{student_name} feature term: "));
        self.projection = Some((which, projection.weights.clone()));
        let dispatches = move |dy: &Tensor| Ok(vec![feature_ops::accumulate(gpu, &dinput, dy)?]);
        Ok(Injection { layer: student_layer, dispatches: Box::new(dispatches) })
    }

    /// A feature term's projection as the plan trains it: (weights, Adam's m, v).
    pub fn projection(&self) -> Option<(&Tensor, &Tensor, &Tensor)> {
        let (which, weights) = self.projection.as_ref()?;
        let (m, v) = self.adam_moments(*which)?;
        Some((weights, m, v))
    }

    /// The projection's place among the plan's models (for [`Plan::gradients`] and the rest).
    pub fn projection_index(&self) -> Option<usize> {
        self.projection.as_ref().map(|(which, _)| *which)
    }

    /// Loss and accuracy over the feed's split without training (Keras's evaluate); the
    /// logits of every sample are kept for [`Plan::read_logits`] (the split in file order).
    pub fn evaluate(gpu: &Gpu, name: &str, model: &Model, loss: Loss, feed: &Feed, batch: usize) -> Result<Plan> {
        let split = (batch, feed.split.samples);
        let mut plan = Plan::new(gpu, name, &model.arch, split, Mode::Evaluate, loss_terms(loss))?;
        plan.gather(gpu, feed, None)?;
        plan.forward(gpu, model, 0)?;
        plan.loss(gpu, &model.arch, loss, None)?;
        plan.record_metrics(gpu)?;
        let table = Tensor::zeros(gpu, &format!("{name} logits"), &[feed.split.samples, NUM_CLASSES])?;
        let logits = plan.models[0].activations.logits();
        plan.dispatches.push(batch::store_rows(gpu, batch, NUM_CLASSES, &plan.state, logits, &table)?);
        plan.dispatches.push(batch::advance(gpu, &plan.state)?);
        plan.logits = Some(table);
        Ok(plan)
    }

    /// An evaluation's logits on the device (samples x 10, in the order the epoch ran).
    pub fn logits_table(&self) -> Option<&Tensor> {
        self.logits.as_ref()
    }

    /// Writes the model's logits for every sample of the feed's split, in order, into `table`
    /// (samples x 10): the frozen teacher's outputs, computed once for distillation.
    pub fn logits(gpu: &Gpu, name: &str, model: &Model, feed: &Feed, table: &Tensor, batch: usize) -> Result<Plan> {
        ensure!(table.len() >= feed.split.samples * NUM_CLASSES, "logits table too small");
        let split = (batch, feed.split.samples);
        let mut plan = Plan::new(gpu, name, &model.arch, split, Mode::Evaluate, Vec::new())?;
        plan.gather(gpu, feed, None)?;
        plan.forward(gpu, model, 0)?;
        let logits = plan.models[0].activations.logits();
        let store = batch::store_rows(gpu, batch, NUM_CLASSES, &plan.state, logits, table)?;
        plan.dispatches.push(store);
        plan.dispatches.push(batch::advance(gpu, &plan.state)?);
        Ok(plan)
    }

    /// What the host writes before step `step` of the epoch in sample order `order`: a
    /// feature table's rows of the step's batch (zeros past the end of the split, as
    /// `gather_rows` writes them). Written into the queue's staging memory directly.
    pub fn write_step_rows(&self, gpu: &Gpu, order: &[u32], step: usize) -> Result<()> {
        let Some(HostRows { table, dest }) = &self.host_rows else {
            return Ok(());
        };
        let row_bytes = table.width * 4;
        let size = std::num::NonZeroU64::new(dest.bytes()).context("an empty feature batch")?;
        let mut view = gpu
            .queue
            .write_buffer_with(dest.buffer(), dest.offset_bytes(), size)
            .with_context(|| format!("{}: the teacher's feature rows cannot be written", self.name))?;
        let first = step * self.batch;
        for i in 0..self.batch {
            let at = i * row_bytes..(i + 1) * row_bytes;
            match order.get(first + i) {
                Some(&sample) => view.slice(at).copy_from_slice(bytemuck::cast_slice(table.row(sample as usize))),
                None => view.slice(at).fill(0),
            }
        }
        Ok(())
    }

    pub fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }

    /// What the host writes or reads between steps: the step state (step of the epoch, Adam's
    /// t, samples, batch), the epoch's sample order, and the per-step metrics (loss sum and
    /// correct count).
    pub fn host_buffers(&self) -> [&Tensor; 3] {
        [&self.state, &self.perm, &self.metrics]
    }

    /// Model `which`'s gradients of the last step, in the layout of its weights (0: the model
    /// the plan trains; 1: the teacher a [`Distiller`] trains with it; a feature term's
    /// projection at [`Plan::projection_index`]).
    pub fn gradients(&self, which: usize) -> Option<&Tensor> {
        self.models.get(which)?.optimizer.as_ref().map(|o| &o.grads)
    }

    /// Model `which`'s Adam moments (m, v), in the layout of its weights.
    pub fn adam_moments(&self, which: usize) -> Option<(&Tensor, &Tensor)> {
        self.models.get(which)?.optimizer.as_ref().map(|o| (&o.m, &o.v))
    }

    /// The output of layer `i` of model `which` at the last step (a fused LeakyReLU's is its
    /// convolution's buffer).
    pub fn output(&self, which: usize, i: usize) -> Option<&Tensor> {
        Some(&self.models.get(which)?.activations.layers.get(i)?.output)
    }

    /// What layer `i` of model `which` keeps for its backward pass: a convolution's im2col
    /// matrix, a pooling layer's winners (flat input indices, u32).
    pub fn saved(&self, which: usize, i: usize) -> Option<&Tensor> {
        self.models.get(which)?.activations.layers.get(i)?.saved.as_ref()
    }
}
