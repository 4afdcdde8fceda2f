//! 2-D convolution, NHWC, TensorFlow "same" or "valid" padding ([`Padding`]), as im2col + matrix product
//! (`conv2d.wgsl` for the layout kernels, [`super::matmul`] for the arithmetic).
//!
//! With cols = im2col(x) (M x K, M = batch * out_h * out_w, K = kernel^2 * in_c) and the Keras
//! kernel W (kh, kw, in, out) read as a K x out_c matrix:
//!   forward          y = cols * W + b                 (LeakyReLU optionally fused)
//!   input gradient   dx = col2im(dy * W^T)
//!   kernel gradient  dW = cols^T * dy,  db = column sums of dy
//! The forward pass keeps `cols` for the kernel gradient. On GPUs, where the input's channels
//! come in quads, cols is never written: both products gather it from the input ([`Cols`]).
//! A 1x1 convolution at stride 1 (a pointwise one) has its input as its im2col matrix: its
//! products read the input as it is, and its input gradient is dcols itself.
//! The input gradient stays a product into dcols and a col2im gather: as one product gathering
//! from dy it would multiply every input pixel by every tap, four times the work at stride 2.

use super::common::Conv;
use super::matmul::{ALayout, Matmul};
use super::{reduce, transpose::transpose, KernelBias, Padding};
use crate::gpu::{Dispatch, Gpu, KernelFamily, Tensor, TexelFit};
use crate::shader;
use anyhow::{ensure, Result};

/// Geometry of one convolution layer (square kernel, equal strides).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub in_c: usize,
    pub out_c: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: Padding,
}

impl ConvShape {
    pub fn out_h(&self) -> usize {
        self.padding.along(self.in_h, self.kernel, self.stride).0
    }
    pub fn out_w(&self) -> usize {
        self.padding.along(self.in_w, self.kernel, self.stride).0
    }
    pub fn pad_top(&self) -> usize {
        self.padding.along(self.in_h, self.kernel, self.stride).1
    }
    pub fn pad_left(&self) -> usize {
        self.padding.along(self.in_w, self.kernel, self.stride).1
    }
    /// Rows of the im2col matrix: one per output pixel.
    pub fn m(&self) -> usize {
        self.batch * self.out_h() * self.out_w()
    }
    /// Columns of the im2col matrix: one per kernel tap and input channel.
    pub fn k(&self) -> usize {
        self.kernel * self.kernel * self.in_c
    }
    pub fn input_len(&self) -> usize {
        self.batch * self.in_h * self.in_w * self.in_c
    }
    pub fn output_len(&self) -> usize {
        self.m() * self.out_c
    }
    pub fn kernel_len(&self) -> usize {
        self.k() * self.out_c
    }
    /// Scratch the kernel gradient needs: split-K parts, then the bias sums.
    pub fn kernel_grad_scratch(&self) -> usize {
        super::matmul::split_scratch_len(self.k(), self.out_c, self.m())
            .max(super::reduce::column_sum_scratch(self.m(), self.out_c))
    }

    /// Whether its im2col matrix is its input as it is: a 1x1 kernel at stride 1 (neither
    /// padding adds anything).
    pub fn is_pointwise(&self) -> bool {
        self.kernel == 1 && self.stride == 1
    }

    /// Floating-point operations of one matrix product of this layer.
    pub fn flops(&self) -> f64 {
        2.0 * self.m() as f64 * self.k() as f64 * self.out_c as f64
    }

    /// The shaders' `Conv` struct (common.wgsl): `conv2d.wgsl`'s parameters, and what the
    /// products that gather the im2col matrix ([`ALayout::Im2col`]) read it from.
    pub fn geometry(&self) -> Conv {
        Conv {
            batch: self.batch as u32,
            in_h: self.in_h as u32,
            in_w: self.in_w as u32,
            in_c: self.in_c as u32,
            out_h: self.out_h() as u32,
            out_w: self.out_w() as u32,
            kernel: self.kernel as u32,
            stride: self.stride as u32,
            pad_top: self.pad_top() as u32,
            pad_left: self.pad_left() as u32,
            _pad: [0; 2],
        }
    }

    fn uniform(&self, gpu: &Gpu) -> wgpu::Buffer {
        gpu.uniform("conv params", &self.geometry())
    }
}

/// The texture-fed im2col and col2im move four input channels of a tap at a time.
fn texel_fit(s: &ConvShape) -> TexelFit {
    TexelFit::fours(&[("input channels", s.in_c)])
}

pub fn im2col(gpu: &Gpu, s: &ConvShape, x: &Tensor, cols: &Tensor) -> Result<Dispatch> {
    let u = s.uniform(gpu);
    let launch = gpu.family().launch(gpu, &texel_fit(s));
    let xin = launch.input(x, s.input_len())?;
    let res = [u.as_entire_binding(), xin.binding(), cols.binding()];
    let grid = launch.grid(s.m() * s.k(), 256);
    launch.dispatch_body(&shader!("conv2d"), "im2col", &res, grid)
}

pub fn col2im(gpu: &Gpu, s: &ConvShape, dcols: &Tensor, dx: &Tensor) -> Result<Dispatch> {
    let u = s.uniform(gpu);
    let launch = gpu.family().launch(gpu, &texel_fit(s));
    let din = launch.input(dcols, s.m() * s.k())?;
    let res = [u.as_entire_binding(), din.binding(), dx.binding()];
    let grid = launch.grid(s.input_len(), 256);
    launch.dispatch_body(&shader!("conv2d"), "col2im", &res, grid)
}

/// The im2col matrix of a layer's input as its products read it.
#[derive(Clone, Copy)]
pub enum Cols<'a> {
    /// Written out by [`im2col`] into this buffer (M x K) in the forward pass, and kept there
    /// for the kernel gradient.
    Written(&'a Tensor),
    /// Never written: the four-wide products gather it from the input as they load.
    Gathered,
    /// The input itself, read as it is ([`ConvShape::is_pointwise`]).
    Input,
}

/// Whether the products of `s` gather their im2col matrix from the input (GPUs: the four-wide
/// entries, when the input has whole quads of channels) instead of reading it written out.
/// The same sums in the same order either way; gathering saves the im2col pass, its M x K
/// buffer and the traffic through it.
pub fn gathers_im2col(gpu: &Gpu, s: &ConvShape) -> bool {
    gpu.family() == KernelFamily::Buffers && s.in_c.is_multiple_of(4) && s.out_c.is_multiple_of(4)
}

/// y = conv(x) + b, then LeakyReLU if `leaky_slope`; fills `cols` on the way when written.
pub fn forward(
    gpu: &Gpu,
    s: &ConvShape,
    x: &Tensor,
    weights: KernelBias,
    leaky_slope: Option<f32>,
    cols: Cols,
    y: &Tensor,
) -> Result<Vec<Dispatch>> {
    let mut d = Vec::new();
    if let Cols::Written(cols) = cols {
        d.push(im2col(gpu, s, x, cols)?);
    }
    d.extend(forward_product(s, x, cols, weights, leaky_slope, y).dispatch(gpu)?);
    Ok(d)
}

/// A, the im2col matrix of `x`, as the products read it (M x K, or K x M `transposed`).
fn im2col_operand<'a>(s: &ConvShape, x: &'a Tensor, cols: Cols<'a>, transposed: bool) -> (&'a Tensor, ALayout) {
    match (cols, transposed) {
        (Cols::Written(t), false) => (t, ALayout::Normal),
        (Cols::Written(t), true) => (t, ALayout::Transposed),
        (Cols::Gathered, false) => (x, ALayout::Im2col(s.geometry())),
        (Cols::Gathered, true) => (x, ALayout::Im2colTransposed(s.geometry())),
        (Cols::Input, false) => (x, ALayout::Normal),
        (Cols::Input, true) => (x, ALayout::Transposed),
    }
}

/// The forward pass's product: y = cols * W + b [then LeakyReLU].
pub fn forward_product<'a>(
    s: &ConvShape,
    x: &'a Tensor,
    cols: Cols<'a>,
    weights: KernelBias<'a>,
    leaky_slope: Option<f32>,
    y: &'a Tensor,
) -> Matmul<'a> {
    let (a, a_layout) = im2col_operand(s, x, cols, false);
    Matmul {
        m: s.m(),
        n: s.out_c,
        k: s.k(),
        a,
        a_layout,
        b: weights.kernel,
        bias: Some(weights.bias),
        leaky_slope,
        c: y,
        split_scratch: None,
    }
}

/// dx = col2im(dy * W^T), through scratch `w_t` (out_c x K) and `dcols` (M x K); without
/// `dcols` (a pointwise convolution, whose dcols is dx), dx = dy * W^T.
pub fn backward_input(
    gpu: &Gpu,
    s: &ConvShape,
    dy: &Tensor,
    w: &Tensor,
    w_t: &Tensor,
    dcols: Option<&Tensor>,
    dx: &Tensor,
) -> Result<Vec<Dispatch>> {
    let mut d = vec![transpose(gpu, w, w_t, s.k(), s.out_c)?];
    match dcols {
        Some(dcols) => {
            d.extend(input_product(s, dy, w_t, dcols).dispatch(gpu)?);
            d.push(col2im(gpu, s, dcols, dx)?);
        }
        None => {
            ensure!(s.is_pointwise(), "a {0}x{0} convolution at stride {1} needs its dcols", s.kernel, s.stride);
            d.extend(input_product(s, dy, w_t, dx).dispatch(gpu)?);
        }
    }
    Ok(d)
}

/// The input gradient's product: dcols = dy * W^T.
pub fn input_product<'a>(s: &ConvShape, dy: &'a Tensor, w_t: &'a Tensor, dcols: &'a Tensor) -> Matmul<'a> {
    Matmul {
        m: s.m(),
        n: s.k(),
        k: s.out_c,
        a: dy,
        a_layout: ALayout::Normal,
        b: w_t,
        bias: None,
        leaky_slope: None,
        c: dcols,
        split_scratch: None,
    }
}

/// dW = cols^T * dy and db = column sums of dy (into `grads`), through `scratch`
/// ([`ConvShape::kernel_grad_scratch`] elements); `x` is the layer's input.
pub fn backward_kernel(
    gpu: &Gpu,
    s: &ConvShape,
    x: &Tensor,
    cols: Cols,
    dy: &Tensor,
    grads: KernelBias,
    scratch: &Tensor,
) -> Result<Vec<Dispatch>> {
    let mut d = kernel_product(s, x, cols, dy, grads.kernel, scratch).dispatch(gpu)?;
    d.extend(reduce::column_sum(gpu, dy, s.m(), s.out_c, scratch, grads.bias)?);
    Ok(d)
}

/// The kernel gradient's product: dW = cols^T * dy, split over K into `scratch`.
pub fn kernel_product<'a>(
    s: &ConvShape,
    x: &'a Tensor,
    cols: Cols<'a>,
    dy: &'a Tensor,
    dw: &'a Tensor,
    scratch: &'a Tensor,
) -> Matmul<'a> {
    let (a, a_layout) = im2col_operand(s, x, cols, true);
    Matmul {
        m: s.k(),
        n: s.out_c,
        k: s.m(),
        a,
        a_layout,
        b: dy,
        bias: None,
        leaky_slope: None,
        c: dw,
        split_scratch: Some(scratch),
    }
}

/// Direct convolution loops (no im2col), so that they check the GPU path independently.
pub mod reference {
    use super::ConvShape;

    /// Calls `f(output index, input index, kernel index without out channel)` for every
    /// (output pixel, tap, input channel) that reads a real (unpadded) input pixel.
    fn for_each_tap(s: &ConvShape, mut f: impl FnMut(usize, usize, usize)) {
        let (oh_n, ow_n, pt, pl) = (s.out_h(), s.out_w(), s.pad_top() as isize, s.pad_left() as isize);
        for b in 0..s.batch {
            for oh in 0..oh_n {
                for ow in 0..ow_n {
                    let m = (b * oh_n + oh) * ow_n + ow;
                    for ky in 0..s.kernel {
                        let ih = (oh * s.stride + ky) as isize - pt;
                        if ih < 0 || ih >= s.in_h as isize {
                            continue;
                        }
                        for kx in 0..s.kernel {
                            let iw = (ow * s.stride + kx) as isize - pl;
                            if iw < 0 || iw >= s.in_w as isize {
                                continue;
                            }
                            for ci in 0..s.in_c {
                                let xi = ((b * s.in_h + ih as usize) * s.in_w + iw as usize) * s.in_c + ci;
                                f(m, xi, (ky * s.kernel + kx) * s.in_c + ci);
                            }
                        }
                    }
                }
            }
        }
    }

    /// y[m, o] = b[o] + sum x * w, then LeakyReLU if `leaky_slope`.
    pub fn forward(s: &ConvShape, x: &[f32], w: &[f32], b: &[f32], leaky_slope: Option<f32>) -> Vec<f32> {
        let oc = s.out_c;
        let mut acc = vec![0f64; s.m() * oc];
        for_each_tap(s, |m, xi, wi| {
            for o in 0..oc {
                acc[m * oc + o] += x[xi] as f64 * w[wi * oc + o] as f64;
            }
        });
        acc.iter()
            .enumerate()
            .map(|(i, &v)| {
                let v = (v + b[i % oc] as f64) as f32;
                match leaky_slope {
                    Some(a) if v <= 0.0 => v * a,
                    _ => v,
                }
            })
            .collect()
    }

    pub fn backward_input(s: &ConvShape, dy: &[f32], w: &[f32]) -> Vec<f32> {
        let oc = s.out_c;
        let mut dx = vec![0f64; s.input_len()];
        for_each_tap(s, |m, xi, wi| {
            for o in 0..oc {
                dx[xi] += dy[m * oc + o] as f64 * w[wi * oc + o] as f64;
            }
        });
        dx.into_iter().map(|v| v as f32).collect()
    }

    /// (dW, db).
    pub fn backward_kernel(s: &ConvShape, x: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let oc = s.out_c;
        let mut dw = vec![0f64; s.kernel_len()];
        for_each_tap(s, |m, xi, wi| {
            for o in 0..oc {
                dw[wi * oc + o] += x[xi] as f64 * dy[m * oc + o] as f64;
            }
        });
        let db = super::super::reduce::reference::column_sum(dy, s.m(), oc);
        (dw.into_iter().map(|v| v as f32).collect(), db)
    }
}
