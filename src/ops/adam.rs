//! Adam in Keras's form over a whole flat parameter buffer (`adam.wgsl`).

use crate::gpu::{Dispatch, Gpu, Tensor, TexelFit};
use crate::shader;
use anyhow::Result;

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct AdamConfig {
    pub learning_rate: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub epsilon: f32,
}

impl Default for AdamConfig {
    /// Keras's defaults.
    fn default() -> Self {
        AdamConfig { learning_rate: 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 }
    }
}

crate::wgsl_struct! {
    pub(super) struct Params {
        len: u32,
        learning_rate: f32,
        beta1: f32,
        beta2: f32,
        epsilon: f32,
        _pad: [u32; 3],
    }
}

/// One Adam update of `weights` from `grads`, with step t read from `state`.
pub fn step(
    gpu: &Gpu,
    cfg: &AdamConfig,
    state: &Tensor,
    weights: &Tensor,
    grads: &Tensor,
    m: &Tensor,
    v: &Tensor,
) -> Result<Dispatch> {
    let params = Params {
        len: weights.len() as u32,
        learning_rate: cfg.learning_rate,
        beta1: cfg.beta1,
        beta2: cfg.beta2,
        epsilon: cfg.epsilon,
        _pad: [0; 3],
    };
    let u = gpu.uniform("adam params", &params);
    let len = weights.len();
    let launch = gpu.family().launch(gpu, &TexelFit::fours(&[("parameters", len)]));
    // The texture-fed entry reads w, m and v from copies while it writes the buffers.
    let copies = launch.texture_copies(&[weights, m, v], len)?;
    let g = launch.input(grads, len)?;
    let mut res =
        vec![u.as_entire_binding(), state.binding(), weights.binding(), g.binding(), m.binding(), v.binding()];
    res.extend(copies.iter().map(|c| c.binding()));
    let grid = launch.grid(len, 256);
    launch.dispatch_body(&shader!("adam"), "adam", &res, grid)
}

pub mod reference {
    use super::AdamConfig;

    /// One step at t (from 1), in f64, updating w, m, v in place.
    pub fn step(cfg: &AdamConfig, t: u32, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        let (b1, b2) = (cfg.beta1 as f64, cfg.beta2 as f64);
        let a = cfg.learning_rate as f64 * (1.0 - b2.powi(t as i32)).sqrt() / (1.0 - b1.powi(t as i32));
        for i in 0..w.len() {
            let gi = g[i] as f64;
            let mi = m[i] as f64 + (gi - m[i] as f64) * (1.0 - b1);
            let vi = v[i] as f64 + (gi * gi - v[i] as f64) * (1.0 - b2);
            m[i] = mi as f32;
            v[i] = vi as f32;
            w[i] = (w[i] as f64 - a * mi / (vi.sqrt() + cfg.epsilon as f64)) as f32;
        }
    }
}
