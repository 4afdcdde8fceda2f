//! Deterministic two-pass sums (`reduce.wgsl`): column sums for bias gradients, and the sum
//! of split-K parts.

use crate::gpu::{grid_1d, Dispatch, Gpu, Tensor, TexelFit};
use crate::shader;
use anyhow::Result;

/// Rows per part of a column sum.
pub const CHUNK: usize = 64;

crate::wgsl_struct! {
    /// Shared by both entries: `column_sum_partial` reads rows, cols, chunk and parts;
    /// `sum_parts` reads cols (the length summed), parts and bias_len.
    pub(super) struct Params {
        rows: u32,
        cols: u32,
        chunk: u32,
        parts: u32,
        bias_len: u32,
        _pad: [u32; 3],
    }
}

/// Elements of scratch that [`column_sum`] needs for a rows x cols matrix.
pub fn column_sum_scratch(rows: usize, cols: usize) -> usize {
    rows.div_ceil(CHUNK) * cols
}

/// out[j] = sum over i of x[i, j] (x is rows x cols), through `scratch`.
pub fn column_sum(
    gpu: &Gpu,
    x: &Tensor,
    rows: usize,
    cols: usize,
    scratch: &Tensor,
    out: &Tensor,
) -> Result<Vec<Dispatch>> {
    let parts = rows.div_ceil(CHUNK);
    let params = Params {
        rows: rows as u32,
        cols: cols as u32,
        chunk: CHUNK as u32,
        parts: parts as u32,
        bias_len: 0,
        _pad: [0; 3],
    };
    let uniform = gpu.uniform("column_sum params", &params);
    let launch = gpu.family().launch(gpu, &TexelFit::fours(&[("columns", cols)]));
    let xin = launch.input(x, rows * cols)?;
    let res = [uniform.as_entire_binding(), xin.binding(), scratch.binding()];
    let grid = launch.grid(parts * cols, 256);
    let partial = launch.dispatch_body(&shader!("reduce"), "column_sum_partial", &res, grid)?;
    Ok(vec![partial, sum_parts(gpu, scratch, parts, cols, None, out)?])
}

/// out[j] = bias[j % bias.len()] + sum over s < parts of partial[s * len + j].
pub fn sum_parts(
    gpu: &Gpu,
    partial: &Tensor,
    parts: usize,
    len: usize,
    bias: Option<&Tensor>,
    out: &Tensor,
) -> Result<Dispatch> {
    let params = Params {
        rows: 0,
        cols: len as u32,
        chunk: 0,
        parts: parts as u32,
        bias_len: bias.map_or(0, |b| b.len() as u32),
        _pad: [0; 3],
    };
    let uniform = gpu.uniform("sum_parts params", &params);
    Dispatch::new(
        gpu,
        &shader!("reduce"),
        "sum_parts",
        &[uniform.as_entire_binding(), partial.binding(), bias.unwrap_or(partial).binding(), out.binding()],
        grid_1d(len, 256),
    )
}

pub mod reference {
    /// Column sums of a rows x cols matrix, in f64.
    pub fn column_sum(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        (0..cols).map(|j| (0..rows).map(|i| x[i * cols + j] as f64).sum::<f64>() as f32).collect()
    }
}
