//! Losses from logits with their gradients (`loss.wgsl`): sparse softmax cross-entropy and
//! the distillation loss of `keras.distillation.Distiller` on the logits (the seed's
//! Distiller is its KL term alone).

use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::shader;
use anyhow::{Context, Result};

crate::wgsl_struct! {
    pub(super) struct Params {
        rows: u32,
        classes: u32,
        alpha: f32,
        temperature: f32,
        kl_weight: f32,
        mse_weight: f32,
    }
}

/// Set in a label whose image keeps no label (`--labelled`): the image takes part in the
/// distillation terms only. The low bits still hold the class, for the training accuracy.
pub const UNLABELLED: u32 = 0x10000;

/// The per-row values a distillation loss records besides its total, in this order: the
/// hard-label cross-entropy (mean over the batch's labelled rows), T^2 KL and the MSE of the
/// scaled logits (each unweighted).
pub const TERMS: [&str; 3] = ["cross_entropy", "logits_kl", "logits_mse"];

/// A feature term's column after [`TERMS`] (`feature.wgsl` writes it).
pub const FEATURE_TERM: &str = "feature_mse";

/// keras.distillation.Distiller's loss on the logits: `alpha` is its `student_loss_weight`,
/// `kl` and `mse` the `distillation_loss_weights` of a `LogitsDistillation(T, KLDivergence())`
/// and a `LogitsDistillation(T, "mse")` term (0: the term is absent). The whole loss is
/// alpha * CE + (1 - alpha) * (kl * T^2 KL(p_t || p_s) + mse * MSE(t / T, s / T)).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Distill {
    pub alpha: f32,
    pub temperature: f32,
    pub kl: f32,
    pub mse: f32,
}

impl Distill {
    /// The seed's loss: the KL term alone.
    pub fn kl(alpha: f32, temperature: f32) -> Distill {
        Distill { alpha, temperature, kl: 1.0, mse: 0.0 }
    }
}

/// The loss a plan optimises or reports.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub enum Loss {
    CrossEntropy,
    /// The Distiller's loss against the rows of a teacher-logits table (or a co-trained
    /// teacher's logits).
    Distillation(Distill),
}

/// Buffers a loss kernel writes: dlogits (rows x classes), per-row loss and correctness, and
/// for distillation the per-row [`TERMS`] (rows x columns: a feature term's column after
/// them, zero here, which `feature.wgsl` writes).
pub struct LossOutputs<'a> {
    pub dlogits: &'a Tensor,
    pub row_loss: &'a Tensor,
    pub row_correct: &'a Tensor,
    pub row_terms: Option<&'a Tensor>,
}

/// What a loss kernel reads: the step state (how many rows are real), logits and labels.
pub struct LossInputs<'a> {
    pub state: &'a Tensor,
    pub logits: &'a Tensor,
    pub labels: &'a Tensor,
}

pub enum Objective<'a> {
    CrossEntropy,
    /// With `teacher_grad`, the kernel also writes the gradient with respect to the teacher's
    /// logits there (seed-exact distillation, where the teacher learns too).
    Distillation {
        teacher_logits: &'a Tensor,
        distill: Distill,
        teacher_grad: Option<&'a Tensor>,
    },
}

/// The step state says how many of the `rows` are real (the last batch may be short).
pub fn loss(
    gpu: &Gpu,
    objective: &Objective,
    (rows, classes): (usize, usize),
    input: &LossInputs,
    out: &LossOutputs,
) -> Result<Dispatch> {
    let LossInputs { state, logits, labels } = input;
    let d = match objective {
        Objective::CrossEntropy => Distill { alpha: 1.0, temperature: 1.0, kl: 0.0, mse: 0.0 },
        Objective::Distillation { distill, .. } => *distill,
    };
    let params = Params {
        rows: rows as u32,
        classes: classes as u32,
        alpha: d.alpha,
        temperature: d.temperature,
        kl_weight: d.kl,
        mse_weight: d.mse,
    };
    let u = gpu.uniform("loss params", &params);
    let mut res = vec![
        u.as_entire_binding(),
        state.binding(),
        logits.binding(),
        labels.binding(),
        out.dlogits.binding(),
        out.row_loss.binding(),
        out.row_correct.binding(),
    ];
    let entry = match objective {
        Objective::CrossEntropy => "cross_entropy",
        Objective::Distillation { teacher_logits, teacher_grad, .. } => {
            let terms = out.row_terms.context("a distillation loss records its terms")?;
            res.extend([teacher_logits.binding(), terms.binding()]);
            match teacher_grad {
                None => "distillation",
                Some(dteacher) => {
                    res.push(dteacher.binding());
                    "distillation_teacher_grad"
                }
            }
        }
    };
    Dispatch::new(gpu, &shader!("loss"), entry, &res, [rows.div_ceil(64) as u32, 1, 1])
}

/// Per-row results of the reference: losses, gradients with respect to the student's and the
/// teacher's logits (already divided by `valid`; the latter zero without a teacher), the
/// [`TERMS`] (rows x 3; the CE alone without a teacher), correctness.
pub struct RowLosses {
    pub loss: Vec<f64>,
    pub dlogits: Vec<f64>,
    pub dteacher: Vec<f64>,
    pub terms: Vec<f64>,
    pub correct: Vec<bool>,
}

pub mod reference {
    use super::{Distill, RowLosses, TERMS, UNLABELLED};
    use crate::ops::argmax;
    use crate::ops::softmax::reference::softmax;

    pub const CLIP: f64 = 1e-7;

    /// Sparse softmax cross-entropy of the first `valid` rows; other rows are zero.
    pub fn cross_entropy(logits: &[f32], labels: &[u32], classes: usize, valid: usize) -> RowLosses {
        let ce = Distill { alpha: 1.0, temperature: 1.0, kl: 0.0, mse: 0.0 };
        distillation(logits, None, labels, classes, valid, &ce)
    }

    /// alpha * CE + (1 - alpha) * (kl * T^2 * KL(clip(p_t) || clip(p_s)) + mse * MSE(t / T, s / T)),
    /// gradients through Keras's clip (zero where p_s or p_t < 1e-7). CE is the mean over the
    /// rows whose label lacks [`UNLABELLED`]. With `teacher = None` only the CE term is formed.
    pub fn distillation(
        logits: &[f32],
        teacher: Option<&[f32]>,
        labels: &[u32],
        classes: usize,
        valid: usize,
        d: &Distill,
    ) -> RowLosses {
        let (alpha, t) = (d.alpha as f64, d.temperature as f64);
        let (w_kl, w_mse) = (d.kl as f64, d.mse as f64);
        let rows = logits.len() / classes;
        let zeros = vec![0.0; rows * classes];
        let mut out = RowLosses {
            loss: vec![0.0; rows],
            dlogits: zeros.clone(),
            dteacher: zeros,
            terms: vec![0.0; rows * TERMS.len()],
            correct: vec![false; rows],
        };
        let q = softmax(logits, classes, 1.0);
        let ps = softmax(logits, classes, d.temperature);
        let pt = teacher.map(|t| softmax(t, classes, d.temperature));
        let labelled = labels[..valid].iter().filter(|&&l| l < UNLABELLED).count();
        for r in 0..valid {
            let row = r * classes..(r + 1) * classes;
            let y = (labels[r] % UNLABELLED) as usize;
            // A labelled row's CE counts valid / labelled times in the mean over the rows.
            let share = if labels[r] < UNLABELLED { valid as f64 / labelled as f64 } else { 0.0 };
            let ce = -q[r * classes + y].ln() * share;
            let mut loss = alpha * ce;
            let mut grad: Vec<f64> =
                (0..classes).map(|j| alpha * share * (q[r * classes + j] - if j == y { 1.0 } else { 0.0 })).collect();
            out.terms[r * TERMS.len()] = ce;
            if let (Some(pt), Some(tl)) = (&pt, teacher) {
                let clip = |v: f64| v.clamp(CLIP, 1.0);
                let (mut kl, mut kept, mut mse) = (0.0, 0.0, 0.0);
                for j in 0..classes {
                    let (s, tj) = (ps[r * classes + j], clip(pt[r * classes + j]));
                    kl += tj * (tj / clip(s)).ln();
                    if s >= CLIP {
                        kept += tj;
                    }
                    mse += ((tl[r * classes + j] as f64 - logits[r * classes + j] as f64) / t).powi(2);
                }
                mse /= classes as f64;
                loss += (1.0 - alpha) * (w_kl * kl * t * t + w_mse * mse);
                out.terms[r * TERMS.len() + 1] = kl * t * t;
                out.terms[r * TERMS.len() + 2] = mse;
                // d MSE / d s_j; the teacher's is its negative.
                let mse_grad = |j: usize| {
                    2.0 * (logits[r * classes + j] as f64 - tl[r * classes + j] as f64) / (t * t * classes as f64)
                };
                for (j, g) in grad.iter_mut().enumerate() {
                    let (s, tj) = (ps[r * classes + j], clip(pt[r * classes + j]));
                    let soft = s * kept - if s >= CLIP { tj } else { 0.0 };
                    *g += (1.0 - alpha) * (w_kl * t * soft + w_mse * mse_grad(j));
                }
                // d KL / d p_t,j = ln clip(p_t,j) - ln clip(p_s,j) + 1 where p_t,j is not
                // clipped; then through the softmax of logits / T.
                let g: Vec<f64> = (0..classes)
                    .map(|j| {
                        let (s, tj) = (ps[r * classes + j], pt[r * classes + j]);
                        if tj >= CLIP {
                            clip(tj).ln() - clip(s).ln() + 1.0
                        } else {
                            0.0
                        }
                    })
                    .collect();
                let total: f64 = (0..classes).map(|j| pt[r * classes + j] * g[j]).sum();
                for j in 0..classes {
                    let kl_part = w_kl * t * pt[r * classes + j] * (g[j] - total);
                    out.dteacher[r * classes + j] = (1.0 - alpha) * (kl_part - w_mse * mse_grad(j)) / valid as f64;
                }
            }
            out.loss[r] = loss;
            for (d, g) in out.dlogits[row.clone()].iter_mut().zip(grad) {
                *d = g / valid as f64;
            }
            out.correct[r] = argmax(&logits[row]) == y;
        }
        out
    }

    /// The batch loss Keras reports: mean of the row losses over the real rows.
    pub fn batch_loss(l: &RowLosses, valid: usize) -> f64 {
        l.loss[..valid].iter().sum::<f64>() / valid as f64
    }
}
