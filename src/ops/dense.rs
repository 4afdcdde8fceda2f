//! Dense layer y = x W + b (`dense.wgsl`, with the split-K parts summed by [`super::reduce`]).

use super::reduce;
use crate::gpu::texture::texels;
use crate::gpu::{grid_1d, Dispatch, Gpu, Tensor};
use crate::shader;
use anyhow::Result;

/// Inputs per part of the split reduction in the forward pass.
pub const CHUNK: usize = 256;

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
    /// Whether the texture-fed kernels (CPU drivers) take this shape: 10 units, so that four
    /// rows of W are whole texels, inputs a multiple of 4 and an even batch (whole texels of dy).
    fn use_textures(&self, gpu: &Gpu) -> bool {
        gpu.texture_inputs() && self.units == 10 && self.inputs.is_multiple_of(4) && self.batch.is_multiple_of(2)
    }

    fn uniform(&self, gpu: &Gpu) -> wgpu::Buffer {
        let p = [self.batch, self.inputs, self.units, self.parts(), CHUNK, 0, 0, 0].map(|v| v as u32);
        gpu.uniform("dense params", &p)
    }
}

pub fn forward(
    gpu: &Gpu,
    s: &DenseShape,
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    scratch: &Tensor,
    y: &Tensor,
) -> Result<Vec<Dispatch>> {
    let u = s.uniform(gpu);
    let sum = reduce::sum_parts(gpu, scratch, s.parts(), s.batch * s.units, Some(b), y)?;
    if s.use_textures(gpu) {
        let (xt, wt) = (texels(gpu, x, s.batch * s.inputs)?, texels(gpu, w, s.inputs * s.units)?);
        let res = [u.as_entire_binding(), xt.binding(), wt.binding(), scratch.binding()];
        let grid = grid_1d(s.parts() * s.batch, 64);
        let partial = Dispatch::new(gpu, &shader!("dense"), "dense_forward_texture", &res, grid)?;
        return Ok(vec![partial.with_uploads(vec![xt, wt]), sum]);
    }
    let res = [u.as_entire_binding(), x.binding(), w.binding(), scratch.binding()];
    let partial = Dispatch::new(
        gpu,
        &shader!("dense"),
        "dense_forward_partial",
        &res,
        grid_1d(s.parts() * s.batch * s.units, 256),
    )?;
    Ok(vec![partial, sum])
}

/// dW = x^T dy, db = column sums of dy, and dx = dy W^T when `dx` is given.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    gpu: &Gpu,
    s: &DenseShape,
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    dx: Option<&Tensor>,
    dw: &Tensor,
    db: &Tensor,
    scratch: &Tensor,
) -> Result<Vec<Dispatch>> {
    let u = s.uniform(gpu);
    let mut d = Vec::new();
    if s.use_textures(gpu) {
        let dyt = texels(gpu, dy, s.batch * s.units)?;
        let grid = grid_1d(s.inputs / 4, 64);
        if let Some(dx) = dx {
            let wt = texels(gpu, w, s.inputs * s.units)?;
            let res = [u.as_entire_binding(), dyt.binding(), wt.binding(), dx.binding()];
            let dispatch = Dispatch::new(gpu, &shader!("dense"), "dense_backward_input_texture", &res, grid)?;
            d.push(dispatch.with_uploads(vec![dyt.clone(), wt]));
        }
        let xt = texels(gpu, x, s.batch * s.inputs)?;
        let res = [u.as_entire_binding(), xt.binding(), dyt.binding(), dw.binding()];
        let dispatch = Dispatch::new(gpu, &shader!("dense"), "dense_backward_weight_texture", &res, grid)?;
        d.push(dispatch.with_uploads(vec![xt, dyt]));
    } else {
        if let Some(dx) = dx {
            let res = [u.as_entire_binding(), dy.binding(), w.binding(), dx.binding()];
            let grid = grid_1d(s.batch * s.inputs, 256);
            d.push(Dispatch::new(gpu, &shader!("dense"), "dense_backward_input", &res, grid)?);
        }
        let res = [u.as_entire_binding(), x.binding(), dy.binding(), dw.binding()];
        d.push(Dispatch::new(gpu, &shader!("dense"), "dense_backward_weight", &res, grid_1d(s.inputs * s.units, 256))?);
    }
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
