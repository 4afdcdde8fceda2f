//! Row-wise softmax with temperature (`softmax.wgsl`).

use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::shader;
use anyhow::Result;

crate::wgsl_struct! {
    pub(super) struct Params {
        rows: u32,
        cols: u32,
        temperature: f32,
        _pad: u32,
    }
}

pub fn softmax(
    gpu: &Gpu,
    rows: usize,
    cols: usize,
    temperature: f32,
    logits: &Tensor,
    probs: &Tensor,
) -> Result<Dispatch> {
    let u = gpu.uniform("softmax params", &Params { rows: rows as u32, cols: cols as u32, temperature, _pad: 0 });
    let res = [u.as_entire_binding(), logits.binding(), probs.binding()];
    Dispatch::new(gpu, &shader!("softmax"), "softmax_temperature", &res, [rows.div_ceil(64) as u32, 1, 1])
}

pub mod reference {
    /// softmax(row / t) of each row, in f64.
    pub fn softmax(logits: &[f32], cols: usize, temperature: f32) -> Vec<f64> {
        let t = temperature as f64;
        logits
            .chunks(cols)
            .flat_map(|row| {
                let top = row.iter().map(|&v| v as f64 / t).fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = row.iter().map(|&v| (v as f64 / t - top).exp()).collect();
                let sum: f64 = e.iter().sum();
                e.into_iter().map(move |v| v / sum)
            })
            .collect()
    }
}
