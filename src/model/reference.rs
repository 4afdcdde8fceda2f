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

/// What the forward pass computed.
pub struct Forward {
    /// Each layer's output for the batch's rows.
    pub outputs: Vec<Vec<f32>>,
    /// Each pooling layer's winners (flat input indices, first maximum in window order).
    pub winners: Vec<Option<Vec<u32>>>,
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
    let mut fwd = Forward { outputs: Vec::new(), winners: Vec::new() };
    for (i, layer) in arch.walk().iter().enumerate() {
        let input = fwd.input(batch, i);
        let p = |t: &str| tensor(arch, flat, &format!("{}.{t}", layer.name));
        let (output, winners) = match layer.op(batch.rows) {
            Op::Conv(s) => (conv2d::reference::forward(&s, input, p("kernel"), p("bias"), None), None),
            Op::LeakyReLU { slope, .. } => (activation::reference::forward(input, slope), None),
            Op::Pool(s) => {
                let (y, w) = maxpool::reference::forward(&s, input);
                (y, Some(w))
            }
            Op::Flatten => (input.to_vec(), None),
            Op::Dense(d) => (dense::reference::forward(&d, input, p("kernel"), p("bias")), None),
        };
        fwd.outputs.push(output);
        fwd.winners.push(winners);
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
/// logits, the list in reverse. `winners` routes each pooling layer's gradient (the forward
/// pass's own, or another's that picks equal maxima).
pub fn backward(
    arch: &Architecture,
    flat: &[f32],
    batch: &Batch,
    fwd: &Forward,
    winners: &[Option<Vec<u32>>],
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
            Op::Pool(s) => {
                let routes = winners[i].as_ref().expect("a pooling layer's winners");
                maxpool::reference::backward(&s, &dy, routes)
            }
            Op::LeakyReLU { slope, .. } => activation::reference::backward(input, &dy, slope),
            Op::Flatten => dy,
        };
        dy = dx;
    }
    grads
}

/// Model state for Keras's Adam: weights, moments and the next step's t (from 1).
pub struct TrainState {
    pub weights: Vec<f32>,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    pub t: u32,
}

/// What one step computed.
pub struct StepOutcome {
    pub loss: f64,
    pub grads: Vec<f32>,
    pub forward: Forward,
}

/// A whole training step: forward, loss, backward, Adam. `winners` overrides the pooling
/// layers' routing (see [`backward`]); None uses the forward pass's own.
pub fn train_step(
    arch: &Architecture,
    state: &mut TrainState,
    batch: &Batch,
    loss: Loss,
    adam_cfg: &AdamConfig,
    winners: Option<&[Option<Vec<u32>>]>,
) -> StepOutcome {
    let forward = forward(arch, &state.weights, batch);
    let (loss, dlogits) = loss_gradient(forward.logits(), batch, loss);
    let routes = winners.unwrap_or(&forward.winners);
    let grads = backward(arch, &state.weights, batch, &forward, routes, &dlogits);
    adam::reference::step(adam_cfg, state.t, &mut state.weights, &grads, &mut state.m, &mut state.v);
    state.t += 1;
    StepOutcome { loss, grads, forward }
}
