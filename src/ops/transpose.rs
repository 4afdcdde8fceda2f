//! Matrix transpose (`transpose.wgsl`).

use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::shader;
use anyhow::Result;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
}

/// y (cols x rows) = x^T for x (rows x cols).
pub fn transpose(gpu: &Gpu, x: &Tensor, y: &Tensor, rows: usize, cols: usize) -> Result<Dispatch> {
    let uniform = gpu.uniform("transpose params", &Params { rows: rows as u32, cols: cols as u32 });
    let groups = [cols.div_ceil(16) as u32, rows.div_ceil(16) as u32, 1];
    Dispatch::new(
        gpu,
        &shader!("transpose"),
        "transpose",
        &[uniform.as_entire_binding(), x.binding(), y.binding()],
        groups,
    )
}
