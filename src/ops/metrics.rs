//! Per-step loss sums and correct counts kept on the device (`metrics.wgsl`).

use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::shader;
use anyhow::Result;

/// metrics[2 * step] = sum of row losses, metrics[2 * step + 1] = number correct.
pub fn record(
    gpu: &Gpu,
    state: &Tensor,
    row_loss: &Tensor,
    row_correct: &Tensor,
    metrics: &Tensor,
) -> Result<Dispatch> {
    let res = [state.binding(), row_loss.binding(), row_correct.binding(), metrics.binding()];
    // It reads the step's row results and writes one pair of the epoch's table.
    let bytes = state.bytes() + row_loss.bytes() + row_correct.bytes() + 8;
    Ok(Dispatch::new(gpu, &shader!("metrics"), "record_metrics", &res, [1, 1, 1])?.with_bytes(bytes as f64))
}

/// Sums recorded steps in f64: (loss sum, correct count).
pub fn total(metrics: &[f32], steps: usize) -> (f64, f64) {
    metrics[..2 * steps].chunks(2).fold((0.0, 0.0), |(l, c), s| (l + s[0] as f64, c + s[1] as f64))
}
