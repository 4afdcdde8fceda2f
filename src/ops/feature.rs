//! Feature distillation (`feature.wgsl`): keras.distillation's `FeatureDistillation` with the
//! MSE loss between a layer of the frozen teacher and one of the student, and the elementwise
//! sum that joins a projection's input gradient to the student's.

use crate::gpu::{grid_1d, Dispatch, Gpu, Tensor};
use crate::shader;
use anyhow::Result;

crate::wgsl_struct! {
    pub(super) struct Params {
        rows: u32,
        features: u32,
        scale: f32,
        column: u32,
        accumulate: u32,
        _pad: [u32; 3],
    }
}

/// What the feature loss reads and writes; `student` and `teacher` are rows x features.
pub struct FeatureBuffers<'a> {
    pub state: &'a Tensor,
    pub student: &'a Tensor,
    pub teacher: &'a Tensor,
    /// The gradient with respect to `student`: written, or added to with `accumulate`.
    pub grad: &'a Tensor,
    pub row_loss: &'a Tensor,
    /// rows x columns: the loss's per-row terms, this one's in `column`.
    pub row_terms: &'a Tensor,
}

/// How the term enters the loss: `scale` = (1 - alpha) * its weight, its row values in
/// `column` of the row terms; `accumulate` adds its gradient to `grad` instead of writing it.
#[derive(Clone, Copy, Debug)]
pub struct FeatureTerm {
    pub scale: f32,
    pub column: usize,
    pub accumulate: bool,
}

/// The mean squared error of each real row (the step state says how many), added to the
/// row's loss times `scale`, and its gradient.
pub fn mse(gpu: &Gpu, (rows, features): (usize, usize), term: FeatureTerm, b: &FeatureBuffers) -> Result<Dispatch> {
    let params = Params {
        rows: rows as u32,
        features: features as u32,
        scale: term.scale,
        column: term.column as u32,
        accumulate: term.accumulate as u32,
        _pad: [0; 3],
    };
    let u = gpu.uniform("feature params", &params);
    let res = [
        u.as_entire_binding(),
        b.state.binding(),
        b.student.binding(),
        b.teacher.binding(),
        b.grad.binding(),
        b.row_loss.binding(),
        b.row_terms.binding(),
    ];
    Dispatch::new(gpu, &shader!("feature"), "feature_mse", &res, [rows as u32, 1, 1])
}

/// total += addend, elementwise (the lengths must match).
pub fn accumulate(gpu: &Gpu, addend: &Tensor, total: &Tensor) -> Result<Dispatch> {
    anyhow::ensure!(addend.len() == total.len(), "accumulate: {} values into {}", addend.len(), total.len());
    let res = [addend.binding(), total.binding()];
    Dispatch::new(gpu, &shader!("feature"), "accumulate", &res, grid_1d(total.len(), 256))
}

pub mod reference {
    /// Per row of the first `valid`: the mean squared error of `student` against `teacher`
    /// (rows x features), and the gradient of `scale` times their mean over the rows with
    /// respect to `student` (zero past `valid`).
    pub fn mse(student: &[f32], teacher: &[f32], features: usize, valid: usize, scale: f64) -> (Vec<f64>, Vec<f64>) {
        let mut rows = Vec::with_capacity(valid);
        let mut grad = vec![0.0; student.len()];
        for r in 0..valid {
            let at = r * features..(r + 1) * features;
            let mut sum = 0.0;
            for j in at {
                let d = student[j] as f64 - teacher[j] as f64;
                sum += d * d;
                grad[j] = 2.0 * scale * d / (valid * features) as f64;
            }
            rows.push(sum / features as f64);
        }
        (rows, grad)
    }
}
