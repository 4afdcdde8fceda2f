//! Global average and max pooling, NHWC (`globalpool.wgsl`): each sample's channel over all its
//! pixels, (h, w, c) -> (c). The max pool's ties go to the first maximum in row-major pixel
//! order, in the kernels and in the reference alike. The buffer-fed entries serve both kernel
//! families.

use crate::gpu::{Dispatch, Gpu, KernelFamily, Tensor, TexelFit};
use crate::shader;
use anyhow::Result;

crate::wgsl_struct! {
    /// The shader's parameters.
    pub(super) struct GlobalPool {
        batch: u32,
        pixels: u32,
        channels: u32,
        _pad: u32,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobalShape {
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub channels: usize,
}

impl GlobalShape {
    pub fn pixels(&self) -> usize {
        self.in_h * self.in_w
    }
    pub fn input_len(&self) -> usize {
        self.batch * self.pixels() * self.channels
    }
    pub fn output_len(&self) -> usize {
        self.batch * self.channels
    }
    fn uniform(&self, gpu: &Gpu) -> wgpu::Buffer {
        let p = GlobalPool {
            batch: self.batch as u32,
            pixels: self.pixels() as u32,
            channels: self.channels as u32,
            _pad: 0,
        };
        gpu.uniform("global pool params", &p)
    }
}

/// The dispatch of `entry` over `items` invocations, binding `tensors` from slot 1 on: the
/// buffer-fed entry, in either family.
fn dispatch(gpu: &Gpu, s: &GlobalShape, entry: &'static str, tensors: &[&Tensor], items: usize) -> Result<Dispatch> {
    let u = s.uniform(gpu);
    let launch = KernelFamily::Buffers.launch(gpu, &TexelFit::default());
    let res: Vec<_> = std::iter::once(u.as_entire_binding()).chain(tensors.iter().map(|t| t.binding())).collect();
    let grid = launch.grid(items, 256);
    launch.dispatch_body(&shader!("globalpool"), entry, &res, grid)
}

/// y = the mean of each sample's channel over its pixels.
pub fn average_forward(gpu: &Gpu, s: &GlobalShape, x: &Tensor, y: &Tensor) -> Result<Dispatch> {
    dispatch(gpu, s, "global_average_forward", &[x, y], s.output_len())
}

/// dx = the gradient of the cell's channel's output / (h * w).
pub fn average_backward(gpu: &Gpu, s: &GlobalShape, dy: &Tensor, dx: &Tensor) -> Result<Dispatch> {
    dispatch(gpu, s, "global_average_backward", &[dy, dx], s.input_len())
}

/// y = the max of each sample's channel over its pixels; `argmax` (u32) gets the winner's flat
/// input index.
pub fn max_forward(gpu: &Gpu, s: &GlobalShape, x: &Tensor, y: &Tensor, argmax: &Tensor) -> Result<Dispatch> {
    dispatch(gpu, s, "global_max_forward", &[x, y, argmax], s.output_len())
}

/// dx = the output's gradient at each winner, 0 elsewhere.
pub fn max_backward(gpu: &Gpu, s: &GlobalShape, dy: &Tensor, argmax: &Tensor, dx: &Tensor) -> Result<Dispatch> {
    dispatch(gpu, s, "global_max_backward", &[dy, argmax, dx], s.input_len())
}

pub mod reference {
    use super::GlobalShape;

    /// The mean: the f32 sum in row-major pixel order over h * w, as the kernel computes it.
    pub fn average_forward(s: &GlobalShape, x: &[f32]) -> Vec<f32> {
        let (n, c_n) = (s.pixels(), s.channels);
        let mut y = Vec::with_capacity(s.output_len());
        for b in 0..s.batch {
            for c in 0..c_n {
                let sum = (0..n).fold(0f32, |sum, i| sum + x[(b * n + i) * c_n + c]);
                y.push(sum / n as f32);
            }
        }
        y
    }

    pub fn average_backward(s: &GlobalShape, dy: &[f32]) -> Vec<f32> {
        let (n, c_n) = (s.pixels(), s.channels);
        (0..s.input_len()).map(|at| dy[at / (c_n * n) * c_n + at % c_n] / n as f32).collect()
    }

    /// (y, argmax as flat input indices): the first maximum in row-major pixel order.
    pub fn max_forward(s: &GlobalShape, x: &[f32]) -> (Vec<f32>, Vec<u32>) {
        let (n, c_n) = (s.pixels(), s.channels);
        let (mut y, mut arg) = (Vec::with_capacity(s.output_len()), Vec::with_capacity(s.output_len()));
        for b in 0..s.batch {
            for c in 0..c_n {
                let mut best = b * n * c_n + c;
                for i in 1..n {
                    let at = (b * n + i) * c_n + c;
                    if x[at] > x[best] {
                        best = at;
                    }
                }
                y.push(x[best]);
                arg.push(best as u32);
            }
        }
        (y, arg)
    }

    pub fn max_backward(s: &GlobalShape, dy: &[f32], argmax: &[u32]) -> Vec<f32> {
        let mut dx = vec![0f32; s.input_len()];
        for (o, &at) in argmax.iter().enumerate() {
            dx[at as usize] = dy[o];
        }
        dx
    }
}
