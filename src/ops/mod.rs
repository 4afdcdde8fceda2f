//! One module per WGSL file in `shaders/`: the launchers that turn tensors into
//! [`Dispatch`](crate::gpu::Dispatch)es, and beside them the plain CPU reference (f64
//! accumulation) that the tests compare against.

pub mod activation;
pub mod adam;
pub mod batch;
pub mod conv2d;
pub mod dense;
pub mod dropout;
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

/// TensorFlow "same" padding along one axis: (output size, padding before, padding after).
/// out = ceil(in / stride); the odd pixel of padding goes after (bottom / right).
pub fn same_padding(input: usize, kernel: usize, stride: usize) -> (usize, usize, usize) {
    let out = input.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(input);
    (out, total / 2, total - total / 2)
}

#[cfg(test)]
mod tests {
    use super::same_padding;

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
}
