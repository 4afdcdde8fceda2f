//! Dropout's mask and scale (`dropout.wgsl`): one kernel serves the forward pass (on the
//! layer's input) and the backward pass (on its output's gradient).

use crate::gpu::{grid_1d, Dispatch, Gpu, Tensor};
use crate::shader;
use anyhow::Result;

crate::wgsl_struct! {
    pub(super) struct Params {
        len: u32,
        seed: u32,
        layer: u32,
        threshold: u32,
        scale: f32,
        _pad: [u32; 3],
    }
}

/// What identifies a Dropout layer's masks besides the step: the model's seed and the
/// layer's place in its list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Draw {
    pub seed: u32,
    pub layer: u32,
}

/// An element is kept when its 24 random bits are at least this: round(rate * 2^24).
pub fn threshold(rate: f32) -> u32 {
    (rate as f64 * 16_777_216.0).round() as u32
}

/// What a kept element is multiplied by: 1 / (1 - rate), in f32 as Keras computes it.
pub fn scale(rate: f32) -> f32 {
    1.0 / (1.0 - rate)
}

/// out = x * scale where kept, 0 where dropped, for the step in `state` (Adam's t).
pub fn apply(gpu: &Gpu, rate: f32, draw: Draw, state: &Tensor, x: &Tensor, out: &Tensor) -> Result<Dispatch> {
    let len = x.len();
    let params = Params {
        len: len as u32,
        seed: draw.seed,
        layer: draw.layer,
        threshold: threshold(rate),
        scale: scale(rate),
        _pad: [0; 3],
    };
    let u = gpu.uniform("dropout params", &params);
    let res = [u.as_entire_binding(), state.binding(), x.binding(), out.binding()];
    Dispatch::new(gpu, &shader!("dropout"), "dropout_apply", &res, grid_1d(len, 256))
}

pub mod reference {
    use super::{scale, threshold, Draw};

    /// The shader's pcg4d, word for word.
    pub fn pcg4d(input: [u32; 4]) -> [u32; 4] {
        let mut v = input.map(|w| w.wrapping_mul(1664525).wrapping_add(1013904223));
        let mix = |v: &mut [u32; 4]| {
            v[0] = v[0].wrapping_add(v[1].wrapping_mul(v[3]));
            v[1] = v[1].wrapping_add(v[2].wrapping_mul(v[0]));
            v[2] = v[2].wrapping_add(v[0].wrapping_mul(v[1]));
            v[3] = v[3].wrapping_add(v[1].wrapping_mul(v[2]));
        };
        mix(&mut v);
        v = v.map(|w| w ^ (w >> 16));
        mix(&mut v);
        v
    }

    /// Whether element `i` is kept at Adam's t `step`.
    pub fn kept(rate: f32, draw: Draw, step: u32, i: usize) -> bool {
        pcg4d([i as u32, step, draw.seed, draw.layer])[0] >> 8 >= threshold(rate)
    }

    pub fn apply(rate: f32, draw: Draw, step: u32, x: &[f32]) -> Vec<f32> {
        let s = scale(rate);
        x.iter().enumerate().map(|(i, &v)| if kept(rate, draw, step, i) { v * s } else { 0.0 }).collect()
    }
}
