//! Batch gathering on the device and the step state (`batch.wgsl`).

use crate::gpu::{grid_1d, Dispatch, Gpu, Tensor};
use crate::shader;
use anyhow::Result;

pub use super::common::StepState;

crate::wgsl_struct! {
    pub(super) struct Params {
        batch: u32,
        /// Values per sample: pixels for gather_images, classes for the row copies.
        width: u32,
        _pad: [u32; 2],
    }
}

/// Exact f32(byte) / 255, as Keras computes `x.astype("float32") / 255.0`.
pub fn scale_table() -> Vec<f32> {
    (0..256).map(|b| b as f32 / 255.0).collect()
}

/// Packs bytes four to a little-endian u32 word (the images' device layout).
pub fn pack_bytes(bytes: &[u8]) -> Vec<u32> {
    bytes.chunks(4).map(|c| c.iter().enumerate().fold(0u32, |w, (i, &b)| w | (b as u32) << (8 * i))).collect()
}

fn params(gpu: &Gpu, batch: usize, width: usize) -> wgpu::Buffer {
    gpu.uniform("batch params", &Params { batch: batch as u32, width: width as u32, _pad: [0; 2] })
}

/// Device-resident images (packed bytes), labels (u32) and the scale table.
pub struct ImageSource<'a> {
    pub images: &'a Tensor,
    pub labels: &'a Tensor,
    pub scale: &'a Tensor,
    pub pixels: usize,
}

/// x[i] = scale[images[perm[step * batch + i]]], labels likewise.
pub fn gather_images(
    gpu: &Gpu,
    batch: usize,
    state: &Tensor,
    perm: &Tensor,
    src: &ImageSource,
    x: &Tensor,
    labels: &Tensor,
) -> Result<Dispatch> {
    let u = params(gpu, batch, src.pixels);
    let res = [
        u.as_entire_binding(),
        state.binding(),
        perm.binding(),
        src.images.binding(),
        src.labels.binding(),
        src.scale.binding(),
        x.binding(),
        labels.binding(),
    ];
    // Per row: its index, its packed pixels and label, the f32 pixels and label it writes.
    let bytes = batch * (4 + src.pixels + 4 + 4 * src.pixels + 4) + src.scale.bytes() as usize;
    Ok(Dispatch::new(gpu, &shader!("batch"), "gather_images", &res, grid_1d(batch * src.pixels, 256))?
        .with_bytes(bytes as f64))
}

/// dest[i] = source row perm[step * batch + i] (rows of `width`).
pub fn gather_rows(
    gpu: &Gpu,
    batch: usize,
    width: usize,
    state: &Tensor,
    perm: &Tensor,
    source: &Tensor,
    dest: &Tensor,
) -> Result<Dispatch> {
    let u = params(gpu, batch, width);
    let res = [u.as_entire_binding(), state.binding(), perm.binding(), source.binding(), dest.binding()];
    let bytes = batch * (4 + 8 * width);
    Ok(Dispatch::new(gpu, &shader!("batch"), "gather_rows", &res, grid_1d(batch * width, 256))?
        .with_bytes(bytes as f64))
}

/// table row step * batch + i = rows[i], for the real rows of the step.
pub fn store_rows(
    gpu: &Gpu,
    batch: usize,
    width: usize,
    state: &Tensor,
    rows: &Tensor,
    table: &Tensor,
) -> Result<Dispatch> {
    let u = params(gpu, batch, width);
    let res = [u.as_entire_binding(), state.binding(), rows.binding(), table.binding()];
    Ok(Dispatch::new(gpu, &shader!("batch"), "store_rows", &res, grid_1d(batch * width, 256))?
        .with_bytes((8 * batch * width) as f64))
}

/// step += 1 and adam_t += 1, on the device.
pub fn advance(gpu: &Gpu, state: &Tensor) -> Result<Dispatch> {
    Dispatch::new(gpu, &shader!("batch"), "advance_step", &[state.binding()], [1, 1, 1])
}
