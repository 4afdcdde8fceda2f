//! Dense layer y = x W + b (`dense.wgsl`, with the split-K parts summed by [`super::reduce`]).

use super::{reduce, KernelBias};
use crate::gpu::{grid_1d, Dispatch, Gpu, Tensor, TexelFit};
use crate::shader;
use anyhow::Result;

/// Inputs per part of the split reduction in the forward pass.
pub const CHUNK: usize = 256;

crate::wgsl_struct! {
    /// The shader's parameters.
    pub(super) struct Dense {
        batch: u32,
        inputs: u32,
        units: u32,
        parts: u32,
        chunk: u32,
        _pad: [u32; 3],
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DenseShape {
    pub batch: usize,
    pub inputs: usize,
    pub units: usize,
}

impl DenseShape {
    pub fn parts(&self) -> usize {
        self.inputs.div_ceil(CHUNK)
    }
    /// Scratch elements the forward pass needs (also enough for the bias gradient's sums).
    pub fn scratch_len(&self) -> usize {
        (self.parts() * self.batch * self.units).max(reduce::column_sum_scratch(self.batch, self.units))
    }
    /// The texture-fed entries are written for 10 units (four rows of W are ten texels) and
    /// read four inputs at a time and two rows of dy (five texels) at a time.
    fn texel_fit(&self) -> TexelFit {
        TexelFit::fours(&[("inputs", self.inputs), ("twice the batch", 2 * self.batch)])
            .and_exactly("units", self.units, 10)
    }

    fn uniform(&self, gpu: &Gpu) -> wgpu::Buffer {
        let p = Dense {
            batch: self.batch as u32,
            inputs: self.inputs as u32,
            units: self.units as u32,
            parts: self.parts() as u32,
            chunk: CHUNK as u32,
            _pad: [0; 3],
        };
        gpu.uniform("dense params", &p)
    }
}

pub fn forward(
    gpu: &Gpu,
    s: &DenseShape,
    x: &Tensor,
    weights: KernelBias,
    scratch: &Tensor,
    y: &Tensor,
) -> Result<Vec<Dispatch>> {
    let (w, b) = (weights.kernel, weights.bias);
    let u = s.uniform(gpu);
    let launch = gpu.family().launch(gpu, &s.texel_fit());
    let (xin, win) = (launch.input(x, s.batch * s.inputs)?, launch.input(w, s.inputs * s.units)?);
    let res = [u.as_entire_binding(), xin.binding(), win.binding(), scratch.binding()];
    // The texture-fed entry computes all ten units of a (part, row) per invocation.
    let grid = launch.pick(grid_1d(s.parts() * s.batch * s.units, 256), grid_1d(s.parts() * s.batch, 64));
    let partial = launch.dispatch(&shader!("dense"), ("dense_forward_partial", "dense_forward_texture"), &res, grid)?;
    Ok(vec![partial, reduce::sum_parts(gpu, scratch, s.parts(), s.batch * s.units, Some(b), y)?])
}

/// What the backward pass writes: the parameters' gradients and, when given, the input's.
pub struct DenseGrads<'a> {
    pub params: KernelBias<'a>,
    pub input: Option<&'a Tensor>,
}

/// dW = x^T dy and db = column sums of dy, and dx = dy W^T when `grads.input` is given.
pub fn backward(
    gpu: &Gpu,
    s: &DenseShape,
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    grads: DenseGrads,
    scratch: &Tensor,
) -> Result<Vec<Dispatch>> {
    let (dw, db, dx) = (grads.params.kernel, grads.params.bias, grads.input);
    let u = s.uniform(gpu);
    let mut d = Vec::new();
    let fit = s.texel_fit();
    // The texture-fed entries give four inputs (all their units) per invocation.
    let grid = |launch: &crate::gpu::family::Launch, buffer_items: usize| {
        launch.pick(grid_1d(buffer_items, 256), grid_1d(s.inputs / 4, 64))
    };
    if let Some(dx) = dx {
        let launch = gpu.family().launch(gpu, &fit);
        let (dyin, win) = (launch.input(dy, s.batch * s.units)?, launch.input(w, s.inputs * s.units)?);
        let res = [u.as_entire_binding(), dyin.binding(), win.binding(), dx.binding()];
        let grid = grid(&launch, s.batch * s.inputs);
        let entries = ("dense_backward_input", "dense_backward_input_texture");
        d.push(launch.dispatch(&shader!("dense"), entries, &res, grid)?);
    }
    let launch = gpu.family().launch(gpu, &fit);
    let (xin, dyin) = (launch.input(x, s.batch * s.inputs)?, launch.input(dy, s.batch * s.units)?);
    let res = [u.as_entire_binding(), xin.binding(), dyin.binding(), dw.binding()];
    let grid = grid(&launch, s.inputs * s.units);
    let entries = ("dense_backward_weight", "dense_backward_weight_texture");
    d.push(launch.dispatch(&shader!("dense"), entries, &res, grid)?);
    d.extend(reduce::column_sum(gpu, dy, s.batch, s.units, scratch, db)?);
    Ok(d)
}

pub mod reference {
    use super::DenseShape;
    use crate::ops::matmul::reference::{matmul, transpose};
    use crate::ops::reduce::reference::column_sum;

    pub fn forward(s: &DenseShape, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
        let mut acc = vec![0f64; s.batch * s.units];
        for r in 0..s.batch {
            for n in 0..s.units {
                let mut v = b[n] as f64;
                for k in 0..s.inputs {
                    v += x[r * s.inputs + k] as f64 * w[k * s.units + n] as f64;
                }
                acc[r * s.units + n] = v;
            }
        }
        acc.into_iter().map(|v| v as f32).collect()
    }

    /// (dx, dW, db).
    pub fn backward(s: &DenseShape, x: &[f32], w: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let dx = matmul(dy, &transpose(w, s.inputs, s.units), s.batch, s.units, s.inputs);
        let dw = matmul(&transpose(x, s.batch, s.inputs), dy, s.inputs, s.batch, s.units);
        (dx, dw, column_sum(dy, s.batch, s.units))
    }
}
