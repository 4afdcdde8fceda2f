//! Feature distillation in a plan: which layers may take part, and the learned 1x1 projection
//! from the student's channels to the teacher's (FitNets' regressor), which trains with the
//! student but is no part of the saved student.

use super::lower::lower;
use crate::gpu::{Gpu, Tensor};
use crate::model::{Architecture, Mode, ALIGN_FLOATS};
use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// keras.distillation's `FeatureDistillation(loss="mse")` between layer `teacher_layer` of the
/// frozen teacher and `student_layer` of the student (indices into their layer lists).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FeatureSpec {
    pub teacher_layer: usize,
    pub student_layer: usize,
    /// Its `distillation_loss_weights` entry.
    pub weight: f32,
    /// Through a learned 1x1 projection to the teacher's channels.
    pub project: bool,
}

/// Where a layer's output can be distilled: the teacher's must be kept by its forward pass
/// (not overwritten by an activation run in the layer's epilogue); the student's too, and its
/// gradient must be formed by its backward pass (the layer has a backward stage of its own),
/// where the feature term's gradient joins it.
pub fn check_layer(arch: &Architecture, layer: usize, student: bool) -> Result<()> {
    let walk = arch.walk();
    let mode = if student { Mode::Train } else { Mode::Evaluate };
    let stages = lower(&walk, mode);
    let name = &walk[layer].keras_name;
    let ok = |i: usize| {
        let kept = !stages.forward.iter().any(|s| s.layer == i && s.epilogue.is_some());
        let graded = stages.backward.iter().any(|s| s.layer == i);
        kept && (!student || graded)
    };
    if ok(layer) {
        return Ok(());
    }
    let usable: Vec<&str> = (0..walk.len()).filter(|&i| ok(i)).map(|i| walk[i].keras_name.as_str()).collect();
    let why = if student {
        "its output or its gradient is not kept by the step (an activation runs in its epilogue, or its \
         backward pass runs through another layer's)"
    } else {
        "its output is not kept by the forward pass (the activation after it runs in its epilogue)"
    };
    bail!("the {}'s layer `{name}` cannot be distilled: {why}; layers that can: {}", arch.name(), usable.join(", "))
}

/// The projection's parameters: W (inputs x units, Glorot uniform as Keras's Dense) then,
/// at the next aligned offset ([`Projection::bias_offset`]), the bias (zeros), in one buffer so
/// that one Adam dispatch updates both.
pub struct Projection {
    pub inputs: usize,
    pub units: usize,
    pub weights: Tensor,
}

impl Projection {
    pub fn new(gpu: &Gpu, inputs: usize, units: usize, seed: u64) -> Result<Projection> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let limit = (6.0 / (inputs + units) as f64).sqrt() as f32;
        let mut flat: Vec<f32> = (0..inputs * units).map(|_| rng.random_range(-limit..=limit)).collect();
        flat.resize(Projection::bias_offset(inputs, units) + units, 0.0);
        Ok(Projection { inputs, units, weights: Tensor::from_f32(gpu, "projection", &[flat.len()], &flat)? })
    }

    /// Where the bias starts: W's end rounded up to the binding alignment, as in a model's
    /// parameter layout (the padding stays zero: its gradient is zero).
    pub fn bias_offset(inputs: usize, units: usize) -> usize {
        (inputs * units).next_multiple_of(ALIGN_FLOATS)
    }

    pub fn len(&self) -> usize {
        Projection::bias_offset(self.inputs, self.units) + self.units
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (kernel, bias) as views of `of` (the weights, or a buffer in their layout).
    pub fn parts(&self, of: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((
            of.view("projection kernel", 0, &[self.inputs, self.units])?,
            of.view("projection bias", Projection::bias_offset(self.inputs, self.units), &[self.units])?,
        ))
    }
}

/// The frozen teacher's output at one layer for every training image, in file order, kept in
/// host memory, so that a feature term reads its batch's rows instead of running the teacher
/// at every step ([`super::plan::FeatureTeacher::Table`]).
pub struct FeatureTable {
    /// Values per image: the layer's output length.
    pub width: usize,
    /// samples x width.
    pub rows: Vec<f32>,
}

impl FeatureTable {
    /// The bytes a table of `samples` images of `width` values takes.
    pub fn bytes(samples: usize, width: usize) -> u64 {
        samples as u64 * width as u64 * 4
    }

    pub fn samples(&self) -> usize {
        self.rows.len() / self.width.max(1)
    }

    pub fn row(&self, sample: usize) -> &[f32] {
        &self.rows[sample * self.width..(sample + 1) * self.width]
    }
}
