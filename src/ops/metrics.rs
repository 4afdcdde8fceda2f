//! Per-step loss sums and correct counts kept on the device (`metrics.wgsl`), with the sums of
//! a distillation loss's terms.

use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::ops::loss::TERMS;
use crate::shader;
use anyhow::Result;

/// Values a step records: loss sum and correct count, then with `terms` the sums of the
/// distillation loss's [`TERMS`].
pub fn width(terms: bool) -> usize {
    if terms {
        2 + TERMS.len()
    } else {
        2
    }
}

/// metrics[w * step] = sum of row losses, metrics[w * step + 1] = number correct, then with
/// `row_terms` (rows x 3) the sum of each column (w = [`width`]).
pub fn record(
    gpu: &Gpu,
    state: &Tensor,
    row_loss: &Tensor,
    row_correct: &Tensor,
    row_terms: Option<&Tensor>,
    metrics: &Tensor,
) -> Result<Dispatch> {
    let mut res = vec![state.binding(), row_loss.binding(), row_correct.binding(), metrics.binding()];
    // It reads the step's row results and writes one row of the epoch's table.
    let mut bytes = state.bytes() + row_loss.bytes() + row_correct.bytes() + 4 * width(row_terms.is_some()) as u64;
    let entry = match row_terms {
        None => "record_metrics",
        Some(terms) => {
            res.push(terms.binding());
            bytes += terms.bytes();
            "record_metrics_terms"
        }
    };
    Ok(Dispatch::new(gpu, &shader!("metrics"), entry, &res, [1, 1, 1])?.with_bytes(bytes as f64))
}

/// Sums recorded steps in f64, column by column: loss sum, correct count, then the terms'.
pub fn total(metrics: &[f32], steps: usize, width: usize) -> Vec<f64> {
    let mut sums = vec![0.0; width];
    for step in metrics[..width * steps].chunks(width) {
        for (sum, &v) in sums.iter_mut().zip(step) {
            *sum += v as f64;
        }
    }
    sums
}
