//! LeakyReLU (`leaky_relu.wgsl`). The network fuses the forward pass into its first
//! convolution's epilogue; the standalone forward kernel serves other layouts and the tests.

use crate::gpu::{grid_1d, Dispatch, Gpu, Tensor, TexelFit};
use crate::shader;
use anyhow::Result;

crate::wgsl_struct! {
    pub(super) struct Params {
        len: u32,
        slope: f32,
        _pad: [u32; 2],
    }
}

pub fn leaky_relu_forward(gpu: &Gpu, slope: f32, x: &Tensor, y: &Tensor) -> Result<Dispatch> {
    let u = gpu.uniform("leaky params", &Params { len: x.len() as u32, slope, _pad: [0; 2] });
    let res = [u.as_entire_binding(), x.binding(), y.binding()];
    Dispatch::new(gpu, &shader!("leaky_relu"), "leaky_relu_forward", &res, grid_1d(x.len(), 256))
}

/// dx = dy where the activation's output y > 0, slope * dy elsewhere.
pub fn leaky_relu_backward(gpu: &Gpu, slope: f32, y: &Tensor, dy: &Tensor, dx: &Tensor) -> Result<Dispatch> {
    let len = y.len();
    let u = gpu.uniform("leaky params", &Params { len: len as u32, slope, _pad: [0; 2] });
    let launch = gpu.family().launch(gpu, &TexelFit::fours(&[("elements", len)]));
    let (yin, dyin) = (launch.input(y, len)?, launch.input(dy, len)?);
    let res = [u.as_entire_binding(), yin.binding(), dyin.binding(), dx.binding()];
    let grid = launch.grid(len, 256);
    launch.dispatch_body(&shader!("leaky_relu"), "leaky_relu_backward", &res, grid)
}

pub mod reference {
    pub fn forward(x: &[f32], slope: f32) -> Vec<f32> {
        x.iter().map(|&v| if v > 0.0 { v } else { v * slope }).collect()
    }

    /// Gradient through LeakyReLU given its input x (or output: same sign for slope > 0).
    pub fn backward(x: &[f32], dy: &[f32], slope: f32) -> Vec<f32> {
        x.iter().zip(dy).map(|(&v, &g)| if v > 0.0 { g } else { g * slope }).collect()
    }
}
