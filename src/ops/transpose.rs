//! Matrix transpose (`transpose.wgsl`).

use crate::gpu::{Dispatch, Gpu, Tensor, TexelFit};
use crate::shader;
use anyhow::Result;

crate::wgsl_struct! {
    pub(super) struct Params {
        rows: u32,
        cols: u32,
    }
}

/// y (cols x rows) = x^T for x (rows x cols).
pub fn transpose(gpu: &Gpu, x: &Tensor, y: &Tensor, rows: usize, cols: usize) -> Result<Dispatch> {
    let uniform = gpu.uniform("transpose params", &Params { rows: rows as u32, cols: cols as u32 });
    // The texture-fed entry writes four rows of x (one texel of y) per invocation.
    let launch = gpu.family().launch(gpu, &TexelFit::fours(&[("rows", rows)]));
    let xin = launch.input(x, rows * cols)?;
    let res = [uniform.as_entire_binding(), xin.binding(), y.binding()];
    let grid = launch.pick([cols.div_ceil(16) as u32, rows.div_ceil(16) as u32, 1], launch.grid(rows * cols, 256));
    launch.dispatch(&shader!("transpose"), ("transpose", "transpose_texture"), &res, grid)
}
