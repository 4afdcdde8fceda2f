//! Max pooling, NHWC, "same" or "valid" padding (`maxpool.wgsl`). Ties go to the first maximum in
//! row-major window order, in the kernels and in the reference alike.

use super::Padding;
use crate::gpu::{Dispatch, Gpu, Tensor, TexelFit};
use crate::shader;
use anyhow::Result;

crate::wgsl_struct! {
    /// The shader's parameters.
    pub(super) struct Pool {
        batch: u32,
        in_h: u32,
        in_w: u32,
        channels: u32,
        out_h: u32,
        out_w: u32,
        size: u32,
        stride: u32,
        pad_top: u32,
        pad_left: u32,
        /// Backward only: 1 = go through the LeakyReLU before the pool, with `leaky_slope`.
        leaky: u32,
        leaky_slope: f32,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolShape {
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub channels: usize,
    pub size: usize,
    pub stride: usize,
    pub padding: Padding,
}

impl PoolShape {
    pub fn out_h(&self) -> usize {
        self.padding.along(self.in_h, self.size, self.stride).0
    }
    pub fn out_w(&self) -> usize {
        self.padding.along(self.in_w, self.size, self.stride).0
    }
    /// Padding rows above and columns left of the input.
    pub fn pad_top(&self) -> usize {
        self.padding.along(self.in_h, self.size, self.stride).1
    }
    pub fn pad_left(&self) -> usize {
        self.padding.along(self.in_w, self.size, self.stride).1
    }
    pub fn input_len(&self) -> usize {
        self.batch * self.in_h * self.in_w * self.channels
    }
    pub fn output_len(&self) -> usize {
        self.batch * self.out_h() * self.out_w() * self.channels
    }
    /// The shader's parameters; `leaky_slope` for a backward pass that goes through the
    /// LeakyReLU before the pool.
    fn uniform(&self, gpu: &Gpu, leaky_slope: Option<f32>) -> wgpu::Buffer {
        let p = Pool {
            batch: self.batch as u32,
            in_h: self.in_h as u32,
            in_w: self.in_w as u32,
            channels: self.channels as u32,
            out_h: self.out_h() as u32,
            out_w: self.out_w() as u32,
            size: self.size as u32,
            stride: self.stride as u32,
            pad_top: self.pad_top() as u32,
            pad_left: self.pad_left() as u32,
            leaky: leaky_slope.is_some() as u32,
            leaky_slope: leaky_slope.unwrap_or(0.0),
        };
        gpu.uniform("pool params", &p)
    }

    /// The texture-fed entries read (and write) four channels of a pixel at a time.
    fn texel_fit(&self) -> TexelFit {
        TexelFit::fours(&[("channels", self.channels)])
    }
}

/// y = maxpool(x); `argmax` (u32) gets each window's winning flat input index.
pub fn forward(gpu: &Gpu, s: &PoolShape, x: &Tensor, y: &Tensor, argmax: &Tensor) -> Result<Dispatch> {
    let u = s.uniform(gpu, None);
    let launch = gpu.family().launch(gpu, &s.texel_fit());
    let xin = launch.input(x, s.input_len())?;
    let res = [u.as_entire_binding(), xin.binding(), y.binding(), argmax.binding()];
    let grid = launch.grid(s.output_len(), 256);
    launch.dispatch_body(&shader!("maxpool"), "maxpool_forward", &res, grid)
}

/// A LeakyReLU right before the pool, whose backward pass the pool's runs too.
#[derive(Clone, Copy)]
pub struct LeakyBefore<'a> {
    pub slope: f32,
    /// Its output: the pool's input.
    pub output: &'a Tensor,
}

/// dx = the gradient of the pool's input: each input cell receives the gradients of the windows
/// it won; with `leaky`, the gradient of that LeakyReLU's input instead.
pub fn backward(
    gpu: &Gpu,
    s: &PoolShape,
    dy: &Tensor,
    argmax: &Tensor,
    leaky: Option<LeakyBefore>,
    dx: &Tensor,
) -> Result<Dispatch> {
    let u = s.uniform(gpu, leaky.map(|l| l.slope));
    let launch = gpu.family().launch(gpu, &s.texel_fit());
    let (dyin, winners) = (launch.input(dy, s.output_len())?, launch.input_u32(argmax, s.output_len())?);
    let pool_in = leaky.map(|l| launch.input(l.output, s.input_len())).transpose()?;
    // Without a LeakyReLU the kernel never reads that slot: the gradient is bound there again.
    let pool_in = pool_in.as_ref().unwrap_or(&dyin);
    let res = [u.as_entire_binding(), dyin.binding(), winners.binding(), dx.binding(), pool_in.binding()];
    let grid = launch.grid(s.input_len(), 256);
    launch.dispatch_body(&shader!("maxpool"), "maxpool_backward", &res, grid)
}

pub mod reference {
    use super::PoolShape;

    /// (y, argmax as flat input indices).
    pub fn forward(s: &PoolShape, x: &[f32]) -> (Vec<f32>, Vec<u32>) {
        let (oh_n, pt) = (s.out_h(), s.pad_top());
        let (ow_n, pl) = (s.out_w(), s.pad_left());
        let mut y = Vec::with_capacity(s.output_len());
        let mut arg = Vec::with_capacity(s.output_len());
        for b in 0..s.batch {
            for oh in 0..oh_n {
                for ow in 0..ow_n {
                    for c in 0..s.channels {
                        let mut best: Option<(f32, usize)> = None;
                        for dy in 0..s.size {
                            let ih = (oh * s.stride + dy) as isize - pt as isize;
                            for dx in 0..s.size {
                                let iw = (ow * s.stride + dx) as isize - pl as isize;
                                if ih < 0 || iw < 0 || ih >= s.in_h as isize || iw >= s.in_w as isize {
                                    continue;
                                }
                                let at = ((b * s.in_h + ih as usize) * s.in_w + iw as usize) * s.channels + c;
                                if best.is_none_or(|(v, _)| x[at] > v) {
                                    best = Some((x[at], at));
                                }
                            }
                        }
                        let (v, at) =
                            best.expect("a window always covers a real cell (padding is less than the window)");
                        y.push(v);
                        arg.push(at as u32);
                    }
                }
            }
        }
        (y, arg)
    }

    pub fn backward(s: &PoolShape, dy: &[f32], argmax: &[u32]) -> Vec<f32> {
        let mut dx = vec![0f64; s.input_len()];
        for (o, &at) in argmax.iter().enumerate() {
            dx[at as usize] += dy[o] as f64;
        }
        dx.into_iter().map(|v| v as f32).collect()
    }
}
