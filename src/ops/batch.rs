//! Batch gathering on the device and the step state (`batch.wgsl`).

use crate::gpu::{grid_1d, Dispatch, Gpu, Tensor};
use crate::shader;
use anyhow::{ensure, Result};

pub use super::common::StepState;

crate::wgsl_struct! {
    pub(super) struct Params {
        batch: u32,
        /// Values per sample: pixels for gather_images, classes for the row copies.
        width: u32,
        /// gather_images with a shift: the images' side (width = side * side).
        side: u32,
        /// gather_images: the largest offset either way, in pixels (0: no shift).
        shift: u32,
        seed: u32,
        _pad: [u32; 3],
    }
}

/// Random translations of the gathered images: each row of each step moves by (dx, dy), both
/// drawn uniformly from -pixels..=pixels, the vacated border 0 (see `batch.wgsl`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shift {
    /// The largest offset either way; 0 gathers the images as they are.
    pub pixels: u32,
    /// What the offsets are drawn from besides the row and Adam's t.
    pub seed: u32,
}

/// The fourth word of the offsets' hash (`batch.wgsl`'s SHIFT_STREAM): Dropout's is a layer
/// index, so the two never draw the same numbers.
pub const SHIFT_STREAM: u32 = u32::MAX;

/// Exact f32(byte) / 255, as Keras computes `x.astype("float32") / 255.0`.
pub fn scale_table() -> Vec<f32> {
    (0..256).map(|b| b as f32 / 255.0).collect()
}

/// Packs bytes four to a little-endian u32 word (the images' device layout).
pub fn pack_bytes(bytes: &[u8]) -> Vec<u32> {
    bytes.chunks(4).map(|c| c.iter().enumerate().fold(0u32, |w, (i, &b)| w | (b as u32) << (8 * i))).collect()
}

fn params(gpu: &Gpu, batch: usize, width: usize) -> wgpu::Buffer {
    shifted_params(gpu, batch, width, 0, Shift { pixels: 0, seed: 0 })
}

fn shifted_params(gpu: &Gpu, batch: usize, width: usize, side: usize, shift: Shift) -> wgpu::Buffer {
    let (batch, width, side) = (batch as u32, width as u32, side as u32);
    gpu.uniform("batch params", &Params { batch, width, side, shift: shift.pixels, seed: shift.seed, _pad: [0; 3] })
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
    gather(gpu, batch, params(gpu, batch, src.pixels), state, perm, src, x, labels)
}

/// [`gather_images`], each row's image (square) moved by its [`Shift`] offsets for the step
/// in `state` (Adam's t); with `shift.pixels` 0, the plain gather.
#[allow(clippy::too_many_arguments)]
pub fn gather_shifted_images(
    gpu: &Gpu,
    batch: usize,
    shift: Shift,
    state: &Tensor,
    perm: &Tensor,
    src: &ImageSource,
    x: &Tensor,
    labels: &Tensor,
) -> Result<Dispatch> {
    let side = src.pixels.isqrt();
    ensure!(side * side == src.pixels, "shifted images must be square; these have {} pixels", src.pixels);
    ensure!(
        (shift.pixels as usize) < side,
        "a shift of up to {} pixels would move a {side}x{side} image out of its frame",
        shift.pixels
    );
    gather(gpu, batch, shifted_params(gpu, batch, src.pixels, side, shift), state, perm, src, x, labels)
}

#[allow(clippy::too_many_arguments)]
fn gather(
    gpu: &Gpu,
    batch: usize,
    u: wgpu::Buffer,
    state: &Tensor,
    perm: &Tensor,
    src: &ImageSource,
    x: &Tensor,
    labels: &Tensor,
) -> Result<Dispatch> {
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

pub mod reference {
    use super::{Shift, StepState, SHIFT_STREAM};
    use crate::ops::dropout::reference::pcg4d;

    /// (dx, dy) of row `row` of the batch at Adam's t `step`: the shader's draw.
    pub fn offsets(shift: Shift, step: u32, row: usize) -> (i32, i32) {
        let bits = pcg4d([row as u32, step, shift.seed, SHIFT_STREAM]);
        let span = 2 * shift.pixels + 1;
        ((bits[0] % span) as i32 - shift.pixels as i32, (bits[1] % span) as i32 - shift.pixels as i32)
    }

    /// A square image moved by (dx, dy): the value at (row, col) comes from (row - dy, col - dx),
    /// 0 where that is outside.
    pub fn translate(image: &[f32], side: usize, (dx, dy): (i32, i32)) -> Vec<f32> {
        let side_i = side as i32;
        (0..side * side)
            .map(|at| {
                let (row, col) = ((at / side) as i32 - dy, (at % side) as i32 - dx);
                let inside = (0..side_i).contains(&row) && (0..side_i).contains(&col);
                if inside {
                    image[(row * side_i + col) as usize]
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// One step's gathered images and labels (`batch` rows; those past the data zero), each
    /// image of `side` x `side` bytes scaled by /255 and moved by its offsets.
    pub fn gather(
        images: &[u8],
        labels: &[u32],
        perm: &[u32],
        state: StepState,
        side: usize,
        shift: Shift,
    ) -> (Vec<f32>, Vec<u32>) {
        let (pixels, batch) = (side * side, state.batch as usize);
        let scale = super::scale_table();
        let start = state.step as usize * batch;
        let mut x = Vec::with_capacity(batch * pixels);
        let mut y = Vec::with_capacity(batch);
        for i in 0..batch {
            if start + i >= state.samples as usize {
                x.extend(std::iter::repeat_n(0.0, pixels));
                y.push(0);
                continue;
            }
            let sample = perm[start + i] as usize;
            let image: Vec<f32> = images[sample * pixels..][..pixels].iter().map(|&b| scale[b as usize]).collect();
            let moved = match shift.pixels {
                0 => image,
                _ => translate(&image, side, offsets(shift, state.adam_t, i)),
            };
            x.extend(moved);
            y.push(labels[sample]);
        }
        (x, y)
    }
}
