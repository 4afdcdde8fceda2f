//! One module per WGSL file in `shaders/`: the launchers that turn tensors into
//! [`Dispatch`](crate::gpu::Dispatch)es, and beside them the plain CPU reference (f64
//! accumulation) that the tests compare against.

pub mod activation;
pub mod adam;
pub mod avgpool;
pub mod batch;
pub mod common;
pub mod conv2d;
pub mod dense;
pub mod dropout;
pub mod feature;
pub mod globalpool;
pub mod loss;
pub mod matmul;
pub mod maxpool;
pub mod metrics;
pub mod reduce;
pub mod softmax;
pub mod transpose;

use crate::gpu::Tensor;

/// A layer's two parameter tensors (or their gradients): Conv2D and Dense alike.
#[derive(Clone, Copy)]
pub struct KernelBias<'a> {
    pub kernel: &'a Tensor,
    pub bias: &'a Tensor,
}

/// The index of a row's largest value, the first one on ties (as tf.argmax, and as the loss
/// kernel counts a correct prediction).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (j, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = j;
        }
    }
    best
}

/// How a convolution or a pool pads its input: Keras's `padding`. Serialised as Keras writes
/// it ("same", "valid"); layer lists leave "same" out, so that those written before "valid"
/// existed read back, and name the same networks, as they did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Padding {
    /// TensorFlow's "same": [`same_padding`].
    #[default]
    Same,
    /// No padding: [`valid_padding`].
    Valid,
}

impl Padding {
    pub fn is_same(&self) -> bool {
        *self == Padding::Same
    }

    /// Keras's name for it.
    pub fn keras(self) -> &'static str {
        match self {
            Padding::Same => "same",
            Padding::Valid => "valid",
        }
    }

    /// Along one axis: (output size, padding before, padding after).
    pub fn along(self, input: usize, kernel: usize, stride: usize) -> (usize, usize, usize) {
        match self {
            Padding::Same => same_padding(input, kernel, stride),
            Padding::Valid => valid_padding(input, kernel, stride),
        }
    }
}

/// "valid" padding along one axis: (output size, 0, 0), out = floor((in - kernel) / stride) + 1,
/// 0 when the window is larger than the input.
pub fn valid_padding(input: usize, kernel: usize, stride: usize) -> (usize, usize, usize) {
    let out = match input.checked_sub(kernel) {
        Some(room) => room / stride + 1,
        None => 0,
    };
    (out, 0, 0)
}

/// TensorFlow "same" padding along one axis: (output size, padding before, padding after).
/// out = ceil(in / stride); the odd pixel of padding goes after (bottom / right).
pub fn same_padding(input: usize, kernel: usize, stride: usize) -> (usize, usize, usize) {
    let out = input.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(input);
    (out, total / 2, total - total / 2)
}

#[cfg(test)]
mod tests {
    use super::{same_padding, valid_padding, Padding};
    use crate::gpu::params::check::{check, Target};
    use crate::shader;

    /// Every Rust mirror of a shader struct, checked against naga's reading of the shader as
    /// compiled (`common.wgsl` included): (shader name, result).
    fn mirrors() -> Vec<(&'static str, Result<(), String>)> {
        use super::*;
        use Target::{Struct, Uniform};
        macro_rules! pair {
            ($shader:literal, $rust:ty, $target:expr) => {
                ($shader, check::<$rust>(&shader!($shader), $target))
            };
        }
        vec![
            pair!("leaky_relu", activation::Params, Uniform),
            pair!("adam", adam::Params, Uniform),
            pair!("avgpool", avgpool::AvgPool, Uniform),
            pair!("batch", batch::Params, Uniform),
            pair!("batch", common::StepState, Struct("StepState")),
            pair!("conv2d", common::Conv, Uniform),
            pair!("dense", dense::Dense, Uniform),
            pair!("dropout", dropout::Params, Uniform),
            pair!("feature", feature::Params, Uniform),
            pair!("loss", loss::Params, Uniform),
            pair!("matmul", matmul::Params, Uniform),
            pair!("matmul_subgroup", matmul::Params, Uniform),
            pair!("matmul_texture", matmul::Params, Uniform),
            pair!("globalpool", globalpool::GlobalPool, Uniform),
            pair!("maxpool", maxpool::Pool, Uniform),
            pair!("reduce", reduce::Params, Uniform),
            pair!("softmax", softmax::Params, Uniform),
            pair!("transpose", transpose::Params, Uniform),
        ]
    }

    #[test]
    fn parameter_structs_match_their_shaders() {
        let failures: Vec<String> = mirrors().into_iter().filter_map(|(_, r)| r.err()).collect();
        assert!(failures.is_empty(), "Rust and WGSL structs differ:\n{}", failures.join("\n"));
    }

    /// A new shader with a uniform block needs its mirror in [`mirrors`].
    #[test]
    fn every_uniform_block_has_a_mirror() {
        let covered: Vec<&str> = mirrors().into_iter().map(|(name, _)| name).collect();
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let Some(stem) = path.file_name().unwrap().to_str().unwrap().strip_suffix(".wgsl") else { continue };
            let text = std::fs::read_to_string(&path).unwrap();
            if text.contains("var<uniform>") {
                assert!(covered.contains(&stem), "shaders/{stem}.wgsl has a uniform block but no Rust mirror checked");
            }
        }
    }

    #[test]
    fn same_padding_matches_tensorflow() {
        // 28 -> 14 and 14 -> 7 with k=3, s=2: nothing before, one after.
        assert_eq!(same_padding(28, 3, 2), (14, 0, 1));
        assert_eq!(same_padding(14, 3, 2), (7, 0, 1));
        // 2x2 stride-1 pool on 14: one after.
        assert_eq!(same_padding(14, 2, 1), (14, 0, 1));
        // k=3 s=1 pads both sides.
        assert_eq!(same_padding(5, 3, 1), (5, 1, 1));
        assert_eq!(same_padding(7, 3, 2), (4, 1, 1));
    }

    #[test]
    fn valid_padding_matches_keras() {
        // keras.io's MNIST convnet: 28 -> 26 (3x3), 26 -> 13 (pool 2), 13 -> 11, 11 -> 5.
        assert_eq!(valid_padding(28, 3, 1), (26, 0, 0));
        assert_eq!(valid_padding(26, 2, 2), (13, 0, 0));
        assert_eq!(valid_padding(13, 3, 1), (11, 0, 0));
        assert_eq!(valid_padding(11, 2, 2), (5, 0, 0));
        assert_eq!(valid_padding(7, 3, 2), (3, 0, 0));
        assert_eq!(valid_padding(3, 3, 5), (1, 0, 0));
        // A window larger than its input leaves nothing.
        assert_eq!(valid_padding(2, 3, 1), (0, 0, 0));
        assert_eq!(Padding::Valid.along(5, 2, 2), (2, 0, 0));
        assert_eq!(Padding::Same.along(5, 2, 2), (3, 0, 1));
    }
}
