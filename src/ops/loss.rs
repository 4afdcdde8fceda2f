//! Losses from logits with their gradients (`loss.wgsl`): sparse softmax cross-entropy and
//! the distillation loss of the Keras Distiller.

use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::shader;
use anyhow::Result;

crate::wgsl_struct! {
    pub(super) struct Params {
        rows: u32,
        classes: u32,
        alpha: f32,
        temperature: f32,
    }
}

/// The loss a plan optimises or reports.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub enum Loss {
    CrossEntropy,
    /// The Distiller's alpha * CE + (1 - alpha) * T^2 * KL, against the rows of a teacher-logits table.
    Distillation {
        alpha: f32,
        temperature: f32,
    },
}

/// Buffers a loss kernel writes: dlogits (rows x classes), per-row loss and correctness.
pub struct LossOutputs<'a> {
    pub dlogits: &'a Tensor,
    pub row_loss: &'a Tensor,
    pub row_correct: &'a Tensor,
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
        alpha: f32,
        temperature: f32,
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
    let (alpha, temperature) = match objective {
        Objective::CrossEntropy => (1.0, 1.0),
        Objective::Distillation { alpha, temperature, .. } => (*alpha, *temperature),
    };
    let params = Params { rows: rows as u32, classes: classes as u32, alpha, temperature };
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
        Objective::Distillation { teacher_logits, teacher_grad: None, .. } => {
            res.push(teacher_logits.binding());
            "distillation"
        }
        Objective::Distillation { teacher_logits, teacher_grad: Some(dteacher), .. } => {
            res.extend([teacher_logits.binding(), dteacher.binding()]);
            "distillation_teacher_grad"
        }
    };
    Dispatch::new(gpu, &shader!("loss"), entry, &res, [rows.div_ceil(64) as u32, 1, 1])
}

/// Per-row results of the reference: losses, gradients with respect to the student's and the
/// teacher's logits (already divided by `valid`; the latter zero without a teacher), correctness.
pub struct RowLosses {
    pub loss: Vec<f64>,
    pub dlogits: Vec<f64>,
    pub dteacher: Vec<f64>,
    pub correct: Vec<bool>,
}

pub mod reference {
    use super::RowLosses;
    use crate::ops::argmax;
    use crate::ops::softmax::reference::softmax;

    pub const CLIP: f64 = 1e-7;

    /// Sparse softmax cross-entropy of the first `valid` rows; other rows are zero.
    pub fn cross_entropy(logits: &[f32], labels: &[u32], classes: usize, valid: usize) -> RowLosses {
        distillation(logits, None, labels, classes, valid, 1.0, 1.0)
    }

    /// alpha * CE + (1 - alpha) * T^2 * KL(clip(p_t) || clip(p_s)), gradients through Keras's
    /// clip (zero where p_s or p_t < 1e-7). With `teacher = None` only the CE term is formed.
    pub fn distillation(
        logits: &[f32],
        teacher: Option<&[f32]>,
        labels: &[u32],
        classes: usize,
        valid: usize,
        alpha: f64,
        temperature: f64,
    ) -> RowLosses {
        let rows = logits.len() / classes;
        let zeros = vec![0.0; rows * classes];
        let mut out =
            RowLosses { loss: vec![0.0; rows], dlogits: zeros.clone(), dteacher: zeros, correct: vec![false; rows] };
        let q = softmax(logits, classes, 1.0);
        let ps = softmax(logits, classes, temperature as f32);
        let pt = teacher.map(|t| softmax(t, classes, temperature as f32));
        for r in 0..valid {
            let row = r * classes..(r + 1) * classes;
            let y = labels[r] as usize;
            let ce = -q[r * classes + y].ln();
            let mut loss = alpha * ce;
            let mut grad: Vec<f64> =
                (0..classes).map(|j| alpha * (q[r * classes + j] - if j == y { 1.0 } else { 0.0 })).collect();
            if let Some(pt) = &pt {
                let t = temperature;
                let clip = |v: f64| v.clamp(CLIP, 1.0);
                let mut kl = 0.0;
                let mut kept = 0.0;
                for j in 0..classes {
                    let (s, tj) = (ps[r * classes + j], clip(pt[r * classes + j]));
                    kl += tj * (tj / clip(s)).ln();
                    if s >= CLIP {
                        kept += tj;
                    }
                }
                loss += (1.0 - alpha) * kl * t * t;
                for (j, g) in grad.iter_mut().enumerate() {
                    let (s, tj) = (ps[r * classes + j], clip(pt[r * classes + j]));
                    let soft = s * kept - if s >= CLIP { tj } else { 0.0 };
                    *g += (1.0 - alpha) * t * soft;
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
                    let d = (1.0 - alpha) * t * pt[r * classes + j] * (g[j] - total);
                    out.dteacher[r * classes + j] = d / valid as f64;
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
