//! LeakyReLU (`leaky_relu.wgsl`). The network fuses the forward pass into its first
//! convolution's epilogue; the standalone forward kernel serves other layouts and the tests.

use crate::gpu::texture::texels;
use crate::gpu::{grid_1d, Dispatch, Gpu, Tensor};
use crate::shader;
use anyhow::Result;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    slope: f32,
    _pad: [u32; 2],
}

pub fn leaky_relu_forward(gpu: &Gpu, slope: f32, x: &Tensor, y: &Tensor) -> Result<Dispatch> {
    let u = gpu.uniform("leaky params", &Params { len: x.len() as u32, slope, _pad: [0; 2] });
    let res = [u.as_entire_binding(), x.binding(), y.binding()];
    Dispatch::new(gpu, &shader!("leaky_relu"), "leaky_relu_forward", &res, grid_1d(x.len(), 256))
}

/// dx = dy where the activation's output y > 0, slope * dy elsewhere.
pub fn leaky_relu_backward(gpu: &Gpu, slope: f32, y: &Tensor, dy: &Tensor, dx: &Tensor) -> Result<Dispatch> {
    let u = gpu.uniform("leaky params", &Params { len: y.len() as u32, slope, _pad: [0; 2] });
    if gpu.texture_inputs() && y.len().is_multiple_of(4) {
        let (yt, dyt) = (texels(gpu, y, y.len())?, texels(gpu, dy, y.len())?);
        let res = [u.as_entire_binding(), yt.binding(), dyt.binding(), dx.binding()];
        let grid = grid_1d(y.len() / 4, 256);
        let d = Dispatch::new(gpu, &shader!("leaky_relu"), "leaky_relu_backward_texture", &res, grid)?;
        return Ok(d.with_uploads(vec![yt, dyt]));
    }
    let res = [u.as_entire_binding(), y.binding(), dy.binding(), dx.binding()];
    Dispatch::new(gpu, &shader!("leaky_relu"), "leaky_relu_backward", &res, grid_1d(y.len(), 256))
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
