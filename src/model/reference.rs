//! The whole network on the CPU, walked from the same layer list as the device plan: forward,
//! loss, backward and Keras's Adam, each layer by its op's plain reference (f64 accumulation,
//! f32 between layers as on the device, no fusion, no im2col). The whole-step test
//! (`tests/whole_step.rs`) gives it the device plan's weights and batch and compares.

use super::{Architecture, Op};
use crate::data::NUM_CLASSES;
use crate::ops::adam::{self, AdamConfig};
use crate::ops::loss::{self, Loss};
use crate::ops::{activation, conv2d, dense, maxpool};

/// One batch: `rows` images (28 x 28 x 1, scaled to [0, 1]), their labels and, for
/// distillation, the teacher's logits for them.
pub struct Batch<'a> {
    pub images: &'a [f32],
    pub labels: &'a [u32],
    pub teacher_logits: Option<&'a [f32]>,
    pub rows: usize,
}

/// How a layer routes its gradient where that depends on its forward values. Values equal up
/// to rounding may decide differently on another device; the whole-step test gives the
/// backward pass the device's decisions once it has checked that they are such ties.
#[derive(Clone, Debug, PartialEq)]
pub enum Route {
    /// The gradient does not depend on the forward values.
    Fixed,
    /// A pooling layer's winners: flat input indices, the first maximum in window order.
    Winners(Vec<u32>),
    /// A LeakyReLU's positive inputs, which pass the gradient unscaled.
    Positive(Vec<bool>),
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
        self.outputs.last().expect("a network has layers")
    }
}

fn tensor<'a>(arch: &Architecture, flat: &'a [f32], name: &str) -> &'a [f32] {
    &flat[arch.param(name).unwrap_or_else(|| panic!("{} has no tensor {name}", arch.name())).range()]
}

pub fn forward(arch: &Architecture, flat: &[f32], batch: &Batch) -> Forward {
    let mut fwd = Forward { outputs: Vec::new(), routes: Vec::new() };
    for (i, layer) in arch.walk().iter().enumerate() {
        let input = fwd.input(batch, i);
        let p = |t: &str| tensor(arch, flat, &format!("{}.{t}", layer.name));
        let (output, route) = match layer.op(batch.rows) {
            Op::Conv(s) => (conv2d::reference::forward(&s, input, p("kernel"), p("bias"), None), Route::Fixed),
            Op::LeakyReLU { slope, .. } => {
                let positive = input.iter().map(|&v| v > 0.0).collect();
                (activation::reference::forward(input, slope), Route::Positive(positive))
            }
            Op::Pool(s) => {
                let (y, w) = maxpool::reference::forward(&s, input);
                (y, Route::Winners(w))
            }
            Op::Flatten => (input.to_vec(), Route::Fixed),
            Op::Dense(d) => (dense::reference::forward(&d, input, p("kernel"), p("bias")), Route::Fixed),
        };
        fwd.outputs.push(output);
        fwd.routes.push(route);
    }
    fwd
}

/// The batch's mean loss and the gradient of the loss with respect to the logits.
pub fn loss_gradient(logits: &[f32], batch: &Batch, loss: Loss) -> (f64, Vec<f32>) {
    let (alpha, temperature) = match loss {
        Loss::CrossEntropy => (1.0, 1.0),
        Loss::Distillation { alpha, temperature } => (alpha as f64, temperature as f64),
    };
    let teacher = batch.teacher_logits.filter(|_| matches!(loss, Loss::Distillation { .. }));
    let rows =
        loss::reference::distillation(logits, teacher, batch.labels, NUM_CLASSES, batch.rows, alpha, temperature);
    (loss::reference::batch_loss(&rows, batch.rows), rows.dlogits.iter().map(|&g| g as f32).collect())
}

/// The gradient of every parameter, in the flat layout of `arch`, from the gradient of the
/// logits, the list in reverse, routed by `routes` (the forward pass's own, or another
/// device's decisions on ties).
pub fn backward(
    arch: &Architecture,
    flat: &[f32],
    batch: &Batch,
    fwd: &Forward,
    routes: &[Route],
    dlogits: &[f32],
) -> Vec<f32> {
    let mut grads = vec![0f32; arch.flat_len()];
    let mut put = |name: String, values: &[f32]| {
        let range = arch.param(&name).expect("a tensor of the walk").range();
        grads[range].copy_from_slice(values);
    };
    let walk = arch.walk();
    let Some(first) = walk.iter().position(|l| l.has_params()) else { return grads };
    let mut dy = dlogits.to_vec();
    for i in (first..walk.len()).rev() {
        let (layer, input) = (&walk[i], fwd.input(batch, i));
        let w = |t: &str| tensor(arch, flat, &format!("{}.{t}", layer.name));
        let dx = match layer.op(batch.rows) {
            Op::Dense(d) => {
                let (dx, dw, db) = dense::reference::backward(&d, input, w("kernel"), &dy);
                put(format!("{}.kernel", layer.name), &dw);
                put(format!("{}.bias", layer.name), &db);
                dx
            }
            Op::Conv(s) => {
                let (dw, db) = conv2d::reference::backward_kernel(&s, input, &dy);
                put(format!("{}.kernel", layer.name), &dw);
                put(format!("{}.bias", layer.name), &db);
                if i == first {
                    break;
                }
                conv2d::reference::backward_input(&s, &dy, w("kernel"))
            }
            Op::Pool(s) => match &routes[i] {
                Route::Winners(w) => maxpool::reference::backward(&s, &dy, w),
                r => panic!("{}: a pooling layer routes by winners, not {r:?}", layer.name),
            },
            Op::LeakyReLU { slope, .. } => match &routes[i] {
                Route::Positive(p) => dy.iter().zip(p).map(|(&g, &pos)| if pos { g } else { g * slope }).collect(),
                r => panic!("{}: a LeakyReLU routes by sign, not {r:?}", layer.name),
            },
            Op::Flatten => dy,
        };
        dy = dx;
    }
    grads
}

/// A model in training: its network, weights, Adam's moments and the next step's t (from 1).
pub struct TrainState {
    pub arch: Architecture,
    pub weights: Vec<f32>,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    pub t: u32,
}

impl TrainState {
    /// The gradients from `dlogits`, then Keras's Adam step.
    fn update(
        &mut self,
        batch: &Batch,
        forward: &Forward,
        routes: &[Route],
        dlogits: &[f32],
        adam_cfg: &AdamConfig,
    ) -> Vec<f32> {
        let grads = backward(&self.arch, &self.weights, batch, forward, routes, dlogits);
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
    let forward = forward(&state.arch, &state.weights, batch);
    let (loss, dlogits) = loss_gradient(forward.logits(), batch, loss);
    let grads = state.update(batch, &forward, routes.unwrap_or(&forward.routes), &dlogits, adam_cfg);
    StepOutcome { loss, grads, forward }
}

/// A step of the seed's Distiller (Keras 3): the teacher's logits from its forward pass, the
/// distillation loss, its gradient into both models (the teacher's through the KL term
/// alone), and an Adam step for each. Returns the student's outcome, then the teacher's.
pub fn distiller_step(
    student: &mut TrainState,
    teacher: &mut TrainState,
    batch: &Batch,
    (alpha, temperature): (f32, f32),
    adam_cfg: &AdamConfig,
    routes: [Option<&[Route]>; 2],
) -> [StepOutcome; 2] {
    let teacher_forward = forward(&teacher.arch, &teacher.weights, batch);
    let student_forward = forward(&student.arch, &student.weights, batch);
    let rows = loss::reference::distillation(
        student_forward.logits(),
        Some(teacher_forward.logits()),
        batch.labels,
        NUM_CLASSES,
        batch.rows,
        alpha as f64,
        temperature as f64,
    );
    let loss = loss::reference::batch_loss(&rows, batch.rows);
    let to_f32 = |v: &[f64]| v.iter().map(|&g| g as f32).collect::<Vec<f32>>();
    let (dstudent, dteacher) = (to_f32(&rows.dlogits), to_f32(&rows.dteacher));
    let student_routes = routes[0].unwrap_or(&student_forward.routes);
    let student_grads = student.update(batch, &student_forward, student_routes, &dstudent, adam_cfg);
    let teacher_routes = routes[1].unwrap_or(&teacher_forward.routes);
    let teacher_grads = teacher.update(batch, &teacher_forward, teacher_routes, &dteacher, adam_cfg);
    [
        StepOutcome { loss, grads: student_grads, forward: student_forward },
        StepOutcome { loss, grads: teacher_grads, forward: teacher_forward },
    ]
}
