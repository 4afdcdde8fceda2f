//! Average pooling, NHWC, "same" or "valid" padding (`avgpool.wgsl`), on the max pool's
//! [`PoolShape`]. A window's average is over its real cells only (TensorFlow's "same" average
//! pool). The buffer-fed entries serve both kernel families.

use super::maxpool::PoolShape;
use crate::gpu::{Dispatch, Gpu, KernelFamily, Tensor, TexelFit};
use crate::shader;
use anyhow::Result;

crate::wgsl_struct! {
    /// The shader's parameters.
    pub(super) struct AvgPool {
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
        _pad0: u32,
        _pad1: u32,
    }
}

fn dispatch(
    gpu: &Gpu,
    s: &PoolShape,
    entry: &'static str,
    input: &Tensor,
    out: &Tensor,
    items: usize,
) -> Result<Dispatch> {
    let p = AvgPool {
        batch: s.batch as u32,
        in_h: s.in_h as u32,
        in_w: s.in_w as u32,
        channels: s.channels as u32,
        out_h: s.out_h() as u32,
        out_w: s.out_w() as u32,
        size: s.size as u32,
        stride: s.stride as u32,
        pad_top: s.pad_top() as u32,
        pad_left: s.pad_left() as u32,
        _pad0: 0,
        _pad1: 0,
    };
    let u = gpu.uniform("avgpool params", &p);
    let launch = KernelFamily::Buffers.launch(gpu, &TexelFit::default());
    let res = [u.as_entire_binding(), input.binding(), out.binding()];
    let grid = launch.grid(items, 256);
    launch.dispatch_body(&shader!("avgpool"), entry, &res, grid)
}

/// y = the average of each window's real cells.
pub fn forward(gpu: &Gpu, s: &PoolShape, x: &Tensor, y: &Tensor) -> Result<Dispatch> {
    dispatch(gpu, s, "avgpool_forward", x, y, s.output_len())
}

/// dx = for each input cell, the sum over the windows that cover it of their gradient divided
/// by their count.
pub fn backward(gpu: &Gpu, s: &PoolShape, dy: &Tensor, dx: &Tensor) -> Result<Dispatch> {
    dispatch(gpu, s, "avgpool_backward", dy, dx, s.input_len())
}

pub mod reference {
    use super::PoolShape;

    /// The real cells along one axis of the window starting at `start`.
    fn covered(start: isize, size: usize, len: usize) -> usize {
        ((start + size as isize).min(len as isize) - start.max(0)) as usize
    }

    /// The window of output (oh, ow): its top-left corner in input coordinates and its count.
    fn window(s: &PoolShape, oh: usize, ow: usize) -> (isize, isize, usize) {
        let top = (oh * s.stride) as isize - s.pad_top() as isize;
        let left = (ow * s.stride) as isize - s.pad_left() as isize;
        (top, left, covered(top, s.size, s.in_h) * covered(left, s.size, s.in_w))
    }

    /// The f32 sum in row-major window order over the real cells, divided by their number.
    pub fn forward(s: &PoolShape, x: &[f32]) -> Vec<f32> {
        let mut y = Vec::with_capacity(s.output_len());
        for b in 0..s.batch {
            for oh in 0..s.out_h() {
                for ow in 0..s.out_w() {
                    let (top, left, count) = window(s, oh, ow);
                    for c in 0..s.channels {
                        let mut sum = 0f32;
                        for ih in top.max(0)..(top + s.size as isize).min(s.in_h as isize) {
                            for iw in left.max(0)..(left + s.size as isize).min(s.in_w as isize) {
                                sum += x[((b * s.in_h + ih as usize) * s.in_w + iw as usize) * s.channels + c];
                            }
                        }
                        y.push(sum / count as f32);
                    }
                }
            }
        }
        y
    }

    /// Each window's gradient spread evenly over its real cells (f64 accumulation).
    pub fn backward(s: &PoolShape, dy: &[f32]) -> Vec<f32> {
        let mut dx = vec![0f64; s.input_len()];
        for b in 0..s.batch {
            for oh in 0..s.out_h() {
                for ow in 0..s.out_w() {
                    let (top, left, count) = window(s, oh, ow);
                    for c in 0..s.channels {
                        let g = dy[((b * s.out_h() + oh) * s.out_w() + ow) * s.channels + c] as f64 / count as f64;
                        for ih in top.max(0)..(top + s.size as isize).min(s.in_h as isize) {
                            for iw in left.max(0)..(left + s.size as isize).min(s.in_w as isize) {
                                dx[((b * s.in_h + ih as usize) * s.in_w + iw as usize) * s.channels + c] += g;
                            }
                        }
                    }
                }
            }
        }
        dx.into_iter().map(|v| v as f32).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{reference, PoolShape};
    use crate::ops::Padding;

    /// Keras 3.15 (TensorFlow 2.21) on x = 1..=9 in a 3x3 image: `AveragePooling2D(2, strides=1,
    /// padding="same")` and `AveragePooling2D(2, padding="same")`, whose border windows average
    /// their real cells only.
    #[test]
    fn same_padding_averages_real_cells_as_keras_does() {
        let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let pool =
            |stride| PoolShape { batch: 1, in_h: 3, in_w: 3, channels: 1, size: 2, stride, padding: Padding::Same };
        assert_eq!(reference::forward(&pool(1), &x), [3.0, 4.0, 4.5, 6.0, 7.0, 7.5, 7.5, 8.5, 9.0]);
        assert_eq!(reference::forward(&pool(2), &x), [3.0, 4.5, 7.5, 9.0]);
        // Each window's gradient is spread over its real cells: 4 over 4, 2 over 2, and the last
        // window, the corner alone, gives it all of its 3.
        let dx = reference::backward(&pool(2), &[4.0, 2.0, 2.0, 3.0]);
        assert_eq!(dx, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 3.0]);
    }
}
