//! The whole network on the CPU, walked from the same layer list as the device plan: forward,
//! loss, backward and Keras's Adam, each layer by its op's plain reference (f64 accumulation,
//! f32 between layers as on the device, no fusion, no im2col). The whole-step test
//! (`tests/whole_step.rs`) gives it the device plan's weights and batch and compares.

pub use super::layers::Route;
use super::layers::{Draw, Mode, Reference};
use super::{Architecture, FeatureSpec, ParamSpec, PlacedLayer};
use crate::data::NUM_CLASSES;
use crate::ops::adam::{self, AdamConfig};
use crate::ops::feature;
use crate::ops::loss::{self, Distill, Loss};

/// One batch: `rows` images (28 x 28 x 1, scaled to [0, 1]), their labels and, for
/// distillation, the teacher's logits for them. A head's batch holds, in place of the images,
/// the rows of the layer output it reads.
pub struct Batch<'a> {
    pub images: &'a [f32],
    pub labels: &'a [u32],
    pub teacher_logits: Option<&'a [f32]>,
    pub rows: usize,
}

/// How a model runs: training or evaluation, and what its Dropout layers draw their masks
/// from (the model's seed and Adam's t of the step).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub mode: Mode,
    pub seed: u32,
    pub step: u32,
}

impl Run {
    /// Evaluation: no Dropout, so nothing to draw.
    pub const EVALUATE: Run = Run { mode: Mode::Evaluate, seed: 0, step: 0 };
}

/// Where layer `layer`'s parameters lie in the flat layout, in its kind's order.
fn param_ranges(specs: &[ParamSpec], layer: &PlacedLayer) -> Vec<std::ops::Range<usize>> {
    let prefix = format!("{}.", layer.name);
    specs.iter().filter(|p| p.name.starts_with(&prefix)).map(ParamSpec::range).collect()
}

/// Layer `i`'s reference view: sizes, mode, Dropout draw and parameters.
fn layer_view<'a>(
    specs: &[ParamSpec],
    flat: &'a [f32],
    batch: &Batch,
    run: Run,
    (i, layer): (usize, &PlacedLayer),
) -> Reference<'a> {
    Reference {
        at: layer.at(batch.rows),
        mode: run.mode,
        draw: Draw { seed: run.seed, layer: i as u32 },
        step: run.step,
        params: param_ranges(specs, layer).into_iter().map(|r| &flat[r]).collect(),
    }
}

/// What the forward pass computed.
pub struct Forward {
    /// Each layer's output for the batch's rows.
    pub outputs: Vec<Vec<f32>>,
    /// Each layer's routing of the gradient, as this forward pass decided it.
    pub routes: Vec<Route>,
}

impl Forward {
    /// What layer `i` read.
    pub fn input<'a>(&'a self, batch: &'a Batch, i: usize) -> &'a [f32] {
        if i == 0 {
            batch.images
        } else {
            &self.outputs[i - 1]
        }
    }

    pub fn logits(&self) -> &[f32] {
        self.output()
    }

    /// The last layer's output: a classifier's logits, a head's values.
    pub fn output(&self) -> &[f32] {
        self.outputs.last().expect("a network has layers")
    }
}

pub fn forward(arch: &Architecture, flat: &[f32], batch: &Batch, run: Run) -> Forward {
    let (mut fwd, specs) = (Forward { outputs: Vec::new(), routes: Vec::new() }, arch.params());
    for (i, layer) in arch.walk().iter().enumerate() {
        let r = layer_view(&specs, flat, batch, run, (i, layer));
        let (output, route) = layer.kind().reference_forward(&r, fwd.input(batch, i));
        fwd.outputs.push(output);
        fwd.routes.push(route);
    }
    fwd
}

/// The batch's mean loss and the gradient of the loss with respect to the logits.
pub fn loss_gradient(logits: &[f32], batch: &Batch, loss: Loss) -> (f64, Vec<f32>) {
    let (distill, teacher) = match loss {
        Loss::CrossEntropy => (Distill { alpha: 1.0, temperature: 1.0, kl: 0.0, mse: 0.0 }, None),
        Loss::Distillation(d) => (d, batch.teacher_logits),
    };
    let rows = loss::reference::distillation(logits, teacher, batch.labels, NUM_CLASSES, batch.rows, &distill);
    (loss::reference::batch_loss(&rows, batch.rows), rows.dlogits.iter().map(|&g| g as f32).collect())
}

/// The gradient of every parameter, in the flat layout of `arch`, from the gradient of the
/// logits, the list in reverse, routed by `routes` (the forward pass's own, or another
/// device's decisions on ties).
pub fn backward(
    arch: &Architecture,
    flat: &[f32],
    batch: &Batch,
    run: Run,
    fwd: &Forward,
    routes: &[Route],
    dlogits: &[f32],
) -> Vec<f32> {
    backward_joined(arch, flat, batch, run, (fwd, routes), dlogits, None, false).0
}

/// [`backward`] from the gradient `dy` of the network's output, with `join`'s gradient
/// (layer, values) added to the gradient of that layer's output (a feature term's); with
/// `input_gradient`, it goes on to the gradient of the network's input (a head's), which it
/// returns beside the parameters' gradients.
#[allow(clippy::too_many_arguments)]
pub fn backward_joined(
    arch: &Architecture,
    flat: &[f32],
    batch: &Batch,
    run: Run,
    (fwd, routes): (&Forward, &[Route]),
    dy: &[f32],
    join: Option<(usize, &[f32])>,
    input_gradient: bool,
) -> (Vec<f32>, Option<Vec<f32>>) {
    let (mut grads, specs, walk) = (vec![0f32; arch.flat_len()], arch.params(), arch.walk());
    // The lowest layer the pass reaches.
    let first = match input_gradient {
        true => 0,
        false => match walk.iter().position(|l| l.has_params()) {
            Some(first) => first,
            None => return (grads, None),
        },
    };
    let mut dy = dy.to_vec();
    for i in (first..walk.len()).rev() {
        if let Some((_, extra)) = join.filter(|(at, _)| *at == i) {
            dy.iter_mut().zip(extra).for_each(|(d, e)| *d += e);
        }
        let layer = &walk[i];
        let r = layer_view(&specs, flat, batch, run, (i, layer));
        let needs_dx = input_gradient || i > first;
        let g = layer.kind().reference_backward(&r, fwd.input(batch, i), &routes[i], &dy, needs_dx);
        for (range, values) in param_ranges(&specs, layer).into_iter().zip(&g.params) {
            grads[range].copy_from_slice(values);
        }
        match g.dx {
            Some(dx) => dy = dx,
            None => return (grads, None),
        }
    }
    (grads, input_gradient.then_some(dy))
}

/// A model in training: its network, weights, Adam's moments and the next step's t (from 1).
pub struct TrainState {
    pub arch: Architecture,
    /// What its Dropout layers draw their masks from.
    pub seed: u32,
    pub weights: Vec<f32>,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    pub t: u32,
}

impl TrainState {
    /// How its coming step runs.
    pub fn run(&self, mode: Mode) -> Run {
        Run { mode, seed: self.seed, step: self.t }
    }

    /// The gradients from `dlogits`, then Keras's Adam step.
    fn update(
        &mut self,
        mode: Mode,
        batch: &Batch,
        forward: &Forward,
        routes: &[Route],
        dlogits: &[f32],
        adam_cfg: &AdamConfig,
    ) -> Vec<f32> {
        let run = self.run(mode);
        let grads = backward(&self.arch, &self.weights, batch, run, forward, routes, dlogits);
        adam::reference::step(adam_cfg, self.t, &mut self.weights, &grads, &mut self.m, &mut self.v);
        self.t += 1;
        grads
    }
}

/// What one step computed for one model.
pub struct StepOutcome {
    /// The batch's mean loss (the distiller's combined loss, for both of its models).
    pub loss: f64,
    pub grads: Vec<f32>,
    pub forward: Forward,
}

/// A whole training step: forward, loss, backward, Adam. `routes` overrides the forward
/// pass's own routing of the gradient (see [`Route`]).
pub fn train_step(
    state: &mut TrainState,
    batch: &Batch,
    loss: Loss,
    adam_cfg: &AdamConfig,
    routes: Option<&[Route]>,
) -> StepOutcome {
    let forward = forward(&state.arch, &state.weights, batch, state.run(Mode::Train));
    let (loss, dlogits) = loss_gradient(forward.logits(), batch, loss);
    let grads = state.update(Mode::Train, batch, &forward, routes.unwrap_or(&forward.routes), &dlogits, adam_cfg);
    StepOutcome { loss, grads, forward }
}

/// A step of keras.distillation's Distiller with a feature term (the device's
/// `FeatureDistiller`): the frozen teacher's forward pass (evaluation mode) for its logits and
/// its layer's output, the logits terms, the feature MSE (through `projection`'s network, a
/// head on the student's layer, with `feature.project`), its gradient joined to the student's
/// at its layer, and an Adam step for the student and the projection (the same t). Returns the
/// student's outcome, with the batch loss including the feature term, and the projection's
/// gradients.
pub fn feature_distiller_step(
    student: &mut TrainState,
    teacher: &TrainState,
    projection: Option<&mut TrainState>,
    batch: &Batch,
    (distill, feature): (&Distill, &FeatureSpec),
    adam_cfg: &AdamConfig,
    routes: Option<&[Route]>,
) -> (StepOutcome, Vec<f32>) {
    let teacher_forward = forward(&teacher.arch, &teacher.weights, batch, teacher.run(Mode::Evaluate));
    let student_forward = forward(&student.arch, &student.weights, batch, student.run(Mode::Train));
    let valid = batch.rows;
    let rows = loss::reference::distillation(
        student_forward.logits(),
        Some(teacher_forward.logits()),
        batch.labels,
        NUM_CLASSES,
        valid,
        distill,
    );
    let (s_out, t_out) =
        (&student_forward.outputs[feature.student_layer], &teacher_forward.outputs[feature.teacher_layer]);
    let features = t_out.len() / valid;
    let scale = (1.0 - distill.alpha as f64) * feature.weight as f64;
    let to_f32 = |v: &[f64]| v.iter().map(|&g| g as f32).collect::<Vec<f32>>();
    let (row_mse, ds, projection_grads) = match (feature.project, projection) {
        (true, Some(p)) => {
            assert_eq!(p.t, student.t, "the projection takes its Adam steps with the student");
            let input = Batch { images: s_out, labels: batch.labels, teacher_logits: None, rows: valid };
            let run = p.run(Mode::Train);
            let fwd = forward(&p.arch, &p.weights, &input, run);
            let (row_mse, dp) = feature::reference::mse(fwd.output(), t_out, features, valid, scale);
            let (grads, ds) =
                backward_joined(&p.arch, &p.weights, &input, run, (&fwd, &fwd.routes), &to_f32(&dp), None, true);
            adam::reference::step(adam_cfg, p.t, &mut p.weights, &grads, &mut p.m, &mut p.v);
            p.t += 1;
            (row_mse, ds.expect("a head passes its input a gradient"), grads)
        }
        (false, None) => {
            let (row_mse, ds) = feature::reference::mse(s_out, t_out, features, valid, scale);
            (row_mse, to_f32(&ds), Vec::new())
        }
        (project, p) => panic!("a projection goes with `project`: project {project}, projection {}", p.is_some()),
    };
    let loss = loss::reference::batch_loss(&rows, valid) + scale * row_mse.iter().sum::<f64>() / valid as f64;
    let dlogits = to_f32(&rows.dlogits);
    let run = student.run(Mode::Train);
    let routes = routes.unwrap_or(&student_forward.routes);
    let join = Some((feature.student_layer, &ds[..]));
    let (grads, _) =
        backward_joined(&student.arch, &student.weights, batch, run, (&student_forward, routes), &dlogits, join, false);
    adam::reference::step(adam_cfg, student.t, &mut student.weights, &grads, &mut student.m, &mut student.v);
    student.t += 1;
    (StepOutcome { loss, grads, forward: student_forward }, projection_grads)
}

/// A step of the seed's Distiller (Keras 3): the teacher's logits from its forward pass (in
/// evaluation mode, as the Distiller calls it with training=False), the distillation loss, its
/// gradient into both models (the teacher's through the distillation terms alone), and an Adam
/// step for each. Returns the student's outcome, then the teacher's.
pub fn distiller_step(
    student: &mut TrainState,
    teacher: &mut TrainState,
    batch: &Batch,
    distill: &Distill,
    adam_cfg: &AdamConfig,
    routes: [Option<&[Route]>; 2],
) -> [StepOutcome; 2] {
    let teacher_forward = forward(&teacher.arch, &teacher.weights, batch, teacher.run(Mode::Evaluate));
    let student_forward = forward(&student.arch, &student.weights, batch, student.run(Mode::Train));
    let rows = loss::reference::distillation(
        student_forward.logits(),
        Some(teacher_forward.logits()),
        batch.labels,
        NUM_CLASSES,
        batch.rows,
        distill,
    );
    let loss = loss::reference::batch_loss(&rows, batch.rows);
    let to_f32 = |v: &[f64]| v.iter().map(|&g| g as f32).collect::<Vec<f32>>();
    let (dstudent, dteacher) = (to_f32(&rows.dlogits), to_f32(&rows.dteacher));
    let student_routes = routes[0].unwrap_or(&student_forward.routes);
    let student_grads = student.update(Mode::Train, batch, &student_forward, student_routes, &dstudent, adam_cfg);
    let teacher_routes = routes[1].unwrap_or(&teacher_forward.routes);
    let teacher_grads = teacher.update(Mode::Evaluate, batch, &teacher_forward, teacher_routes, &dteacher, adam_cfg);
    [
        StepOutcome { loss, grads: student_grads, forward: student_forward },
        StepOutcome { loss, grads: teacher_grads, forward: teacher_forward },
    ]
}
