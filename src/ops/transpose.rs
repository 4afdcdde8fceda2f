//! Matrix transpose (`transpose.wgsl`).

use crate::gpu::texture::texels;
use crate::gpu::{grid_1d, Dispatch, Gpu, Tensor};
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
    if gpu.texture_inputs() && rows.is_multiple_of(4) {
        let xt = texels(gpu, x, rows * cols)?;
        let res = [uniform.as_entire_binding(), xt.binding(), y.binding()];
        let d = Dispatch::new(gpu, &shader!("transpose"), "transpose_texture", &res, grid_1d(rows * cols / 4, 256))?;
        return Ok(d.with_uploads(vec![xt]));
    }
    let groups = [cols.div_ceil(16) as u32, rows.div_ceil(16) as u32, 1];
    Dispatch::new(
        gpu,
        &shader!("transpose"),
        "transpose",
        &[uniform.as_entire_binding(), x.binding(), y.binding()],
        groups,
    )
}
