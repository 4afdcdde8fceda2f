//! The structs of `common.wgsl`, which several kernels share. They live apart from their
//! users so that `conv2d` (which builds a [`Conv`]) and `matmul` (whose products gather the
//! im2col matrix a [`Conv`] describes) need not import each other.

use crate::gpu::{Gpu, Tensor};
use anyhow::Result;

crate::wgsl_struct! {
    /// A convolution's geometry, NHWC, its padding's offsets and output size ([`ConvShape::geometry`]):
    /// `conv2d.wgsl`'s parameters, and the im2col matrix that `matmul.wgsl`'s products gather.
    ///
    /// [`ConvShape::geometry`]: super::conv2d::ConvShape::geometry
    #[derive(PartialEq, Eq)]
    pub struct Conv {
        pub batch: u32,
        pub in_h: u32,
        pub in_w: u32,
        pub in_c: u32,
        pub out_h: u32,
        pub out_w: u32,
        pub kernel: u32,
        pub stride: u32,
        pub pad_top: u32,
        pub pad_left: u32,
        pub(crate) _pad: [u32; 2],
    }
}

impl Conv {
    /// Elements of the NHWC input.
    pub fn input_len(&self) -> usize {
        [self.batch, self.in_h, self.in_w, self.in_c].iter().map(|&v| v as usize).product()
    }
}

crate::wgsl_struct! {
    /// Lives in a 4-word storage buffer per plan: the step within the epoch (which batch to
    /// gather, where to record metrics), Adam's t, and the data size, so that the same recorded
    /// step serves every step of an epoch (`batch.wgsl`'s `advance_step` moves it on).
    #[derive(PartialEq, Eq)]
    pub struct StepState {
        pub step: u32,
        pub adam_t: u32,
        pub samples: u32,
        pub batch: u32,
    }
}

impl StepState {
    pub fn upload(&self, gpu: &Gpu, label: &str) -> Result<Tensor> {
        Tensor::from_u32(gpu, label, &[4], bytemuck::cast_slice(std::slice::from_ref(self)))
    }
}
