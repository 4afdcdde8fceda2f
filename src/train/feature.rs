//! Feature distillation in a plan: which layers may take part, the learned 1x1 projection
//! from the student's channels to the teacher's (FitNets' regressor) as a model of its own,
//! which trains with the student but is no part of the saved student, and the teacher's
//! outputs kept in memory.

use super::lower::lower;
use super::Model;
use crate::gpu::Gpu;
use crate::model::{Architecture, Dims, Layer, Mode};
use anyhow::{bail, Result};

/// Where a layer's output can be distilled: the teacher's must be kept by its forward pass
/// (not overwritten by an activation run in the layer's epilogue); the student's too, and its
/// gradient must be formed by its backward pass (the layer has a backward stage of its own),
/// where the feature term's gradient joins it.
pub fn check_layer(arch: &Architecture, layer: usize, student: bool) -> Result<()> {
    let walk = arch.walk();
    let mode = if student { Mode::Train } else { Mode::Evaluate };
    let stages = lower(&walk, mode, false);
    let name = &walk[layer].keras_name;
    if walk[layer].layer == Layer::Softmax {
        bail!(
            "the {}'s layer `{name}` cannot be distilled: it is the softmax the losses apply to the logits; \
             distill the Dense before it",
            arch.name()
        );
    }
    let ok = |i: usize| {
        let kept =
            walk[i].layer != Layer::Softmax && !stages.forward.iter().any(|s| s.layer == i && s.epilogue.is_some());
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

impl Model {
    /// A feature term's learned projection of the student's layer output `input` onto the
    /// teacher's `channels` ([`Architecture::projection`]), Glorot-initialised from `seed` as
    /// Keras would: it trains with the student but is no part of the saved student.
    pub fn projection(gpu: &Gpu, input: Dims, channels: usize, seed: u64) -> Result<Model> {
        let arch = Architecture::projection(input, channels)?;
        Model::new(gpu, &arch, &arch.init_glorot(seed))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::keras::layers_from_json;

    #[test]
    fn a_final_softmax_is_no_feature_layer() {
        let layers = layers_from_json(include_str!("../../tests/data/keras-mnist-convnet.json")).unwrap();
        let arch = Architecture::new("convnet", layers).unwrap();
        let softmax = arch.layers().len() - 1;
        assert_eq!(arch.layers()[softmax], Layer::Softmax);
        for student in [false, true] {
            let why = check_layer(&arch, softmax, student).unwrap_err().to_string();
            assert!(why.contains("`activation` cannot be distilled: it is the softmax"), "{why}");
            check_layer(&arch, softmax - 1, student).unwrap();
        }
        // Nor is it among the layers a refusal offers.
        let why = check_layer(&arch, 0, false).unwrap_err().to_string();
        assert!(why.contains("layers that can: re_lu, ") && why.ends_with(", dropout, dense"), "{why}");
    }
}
