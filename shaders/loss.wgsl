// Losses from logits, value and gradient in one pass, one invocation per row.
//
// Only the batch's first `valid` rows are real (the last batch of an epoch may be short); the
// rest get zero loss and zero gradient, and the gradient is divided by `valid`, as Keras's
// mean over the batch.
//
// cross_entropy: sparse softmax cross-entropy. loss = logsumexp(z) - z[y];
//                dz = (softmax(z) - onehot(y)) / valid.
// distillation:  keras.distillation.Distiller's loss on the logits,
//                alpha * CE(y, s) + (1 - alpha) * (w_kl * T^2 * KL + w_mse * MSE), where
//                KL = KL(clip(p_t) || clip(p_s)), p = softmax(logits / T), with Keras's clip of
//                both distributions to [1e-7, 1], and MSE = mean_j (t_j / T - s_j / T)^2
//                (LogitsDistillation with another loss: on the scaled logits, no T^2).
//                Where p_s is clipped its gradient is zero (TensorFlow's clip gradient), so
//                ds_j = [alpha (q_j - onehot_j) + (1 - alpha) (w_kl T (p_s,j S - p_t,j mask_j)
//                        + w_mse 2 (s_j - t_j) / (T^2 C))] / valid
//                with q = softmax(s), mask_j = (p_s,j >= 1e-7), S = sum_c p_t,c mask_c
//                (S = 1 without clipping, giving the textbook (1 - alpha) T (p_s - p_t)).
//                A label with the UNLABELLED bit set (--labelled) takes no part in the hard
//                term: CE is the mean over the batch's labelled rows (zero if it has none), so
//                a labelled row's CE counts valid / labelled times in the row mean.
// distillation_teacher_grad: the same, and the gradient with respect to the teacher's logits
//                (the seed's Distiller trains the teacher too). Only the soft terms depend on
//                them; where p_t is clipped its gradient is zero, so with
//                g_j = (ln clip(p_t,j) - ln clip(p_s,j) + 1) mask_t,j and G = sum_c p_t,c g_c,
//                dt_j = (1 - alpha) [w_kl T p_t,j (g_j - G) + w_mse 2 (t_j - s_j) / (T^2 C)]
//                / valid, mask_t,j = (p_t,j >= 1e-7).
// All record per-row loss and whether argmax(z) == y (first maximum wins, as tf.argmax); the
// distillation entries also record each term's row value (CE as counted in the row mean,
// T^2 KL, MSE) for the per-term figures.

#include "common.wgsl"

struct Params {
    rows: u32,
    classes: u32,
    alpha: f32,
    temperature: f32,
    kl_weight: f32,
    mse_weight: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> state: StepState;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read> labels: array<u32>;
@group(0) @binding(4) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(5) var<storage, read_write> row_loss: array<f32>;
@group(0) @binding(6) var<storage, read_write> row_correct: array<f32>;
@group(0) @binding(7) var<storage, read> teacher_logits: array<f32>;
@group(0) @binding(8) var<storage, read_write> row_terms: array<f32>;
@group(0) @binding(9) var<storage, read_write> dteacher: array<f32>;

const CLIP: f32 = 1e-7;
// Set in a label whose image keeps no label (--labelled); the low bits still hold the class,
// for the training accuracy.
const UNLABELLED: u32 = 0x10000u;
// row_terms has a column per term: CE, T^2 KL, MSE, then a feature term's, which
// feature.wgsl writes after this kernel (zero here).
fn term_columns() -> u32 {
    return arrayLength(&row_terms) / p.rows;
}

fn valid_rows() -> u32 {
    let start = state.step * state.batch;
    if (start >= state.samples) {
        return 0u;
    }
    return min(p.rows, state.samples - start);
}

fn class_of(r: u32) -> u32 {
    return labels[r] & (UNLABELLED - 1u);
}

fn labelled_rows(valid: u32) -> u32 {
    var n = 0u;
    for (var r = 0u; r < valid; r++) {
        n += select(0u, 1u, labels[r] < UNLABELLED);
    }
    return n;
}

fn row_max(base: u32, scale: f32) -> f32 {
    var top = logits[base] * scale;
    for (var j = 1u; j < p.classes; j++) {
        top = max(top, logits[base + j] * scale);
    }
    return top;
}

fn argmax_is(base: u32, label: u32) -> f32 {
    var best = 0u;
    for (var j = 1u; j < p.classes; j++) {
        if (logits[base + j] > logits[base + best]) {
            best = j;
        }
    }
    return select(0.0, 1.0, best == label);
}

fn zero_row(r: u32) {
    for (var j = 0u; j < p.classes; j++) {
        dlogits[r * p.classes + j] = 0.0;
    }
    row_loss[r] = 0.0;
    row_correct[r] = 0.0;
}

@compute @workgroup_size(64)
fn cross_entropy(@builtin(global_invocation_id) id: vec3<u32>) {
    let r = id.x;
    if (r >= p.rows) {
        return;
    }
    let valid = valid_rows();
    if (r >= valid) {
        zero_row(r);
        return;
    }
    let base = r * p.classes;
    let label = labels[r];
    let top = row_max(base, 1.0);
    var sum = 0.0;
    for (var j = 0u; j < p.classes; j++) {
        sum += exp(logits[base + j] - top);
    }
    let inv = 1.0 / f32(valid);
    for (var j = 0u; j < p.classes; j++) {
        let q = exp(logits[base + j] - top) / sum;
        dlogits[base + j] = (q - select(0.0, 1.0, j == label)) * inv;
    }
    row_loss[r] = log(sum) + top - logits[base + label];
    row_correct[r] = argmax_is(base, label);
}

/// The row maxima of the softened student and teacher logits, and their sums of exp.
struct Softened {
    s_top: f32,
    t_top: f32,
    s_sum: f32,
    t_sum: f32,
}

fn softened(base: u32) -> Softened {
    let t = p.temperature;
    var s_top = logits[base] / t;
    var t_top = teacher_logits[base] / t;
    for (var j = 1u; j < p.classes; j++) {
        s_top = max(s_top, logits[base + j] / t);
        t_top = max(t_top, teacher_logits[base + j] / t);
    }
    var s_sum = 0.0;
    var t_sum = 0.0;
    for (var j = 0u; j < p.classes; j++) {
        s_sum += exp(logits[base + j] / t - s_top);
        t_sum += exp(teacher_logits[base + j] / t - t_top);
    }
    return Softened(s_top, t_top, s_sum, t_sum);
}

fn zero_terms(r: u32) {
    let terms = term_columns();
    for (var k = 0u; k < terms; k++) {
        row_terms[r * terms + k] = 0.0;
    }
}

// The distillation loss of row r, its terms and its gradient with respect to the student's logits.
fn distillation_row(r: u32, valid: u32) {
    let base = r * p.classes;
    let label = class_of(r);
    let t = p.temperature;

    // Plain softmax of the student (the hard-label term).
    let top = row_max(base, 1.0);
    var sum = 0.0;
    for (var j = 0u; j < p.classes; j++) {
        sum += exp(logits[base + j] - top);
    }
    // Softened student and teacher distributions.
    let soft = softened(base);
    let s_top = soft.s_top;
    let t_top = soft.t_top;
    let s_sum = soft.s_sum;
    let t_sum = soft.t_sum;
    var kl = 0.0;
    var mse = 0.0;
    var kept = 0.0; // S: teacher mass over the classes where p_s is not clipped
    for (var j = 0u; j < p.classes; j++) {
        let ps = exp(logits[base + j] / t - s_top) / s_sum;
        let pt = clamp(exp(teacher_logits[base + j] / t - t_top) / t_sum, CLIP, 1.0);
        kl += pt * log(pt / clamp(ps, CLIP, 1.0));
        if (ps >= CLIP) {
            kept += pt;
        }
        let d = teacher_logits[base + j] / t - logits[base + j] / t;
        mse += d * d;
    }
    mse /= f32(p.classes);
    // The hard term's weight in this row: valid / labelled for a labelled row, else 0.
    let labelled = labels[r] < UNLABELLED;
    let hard_share = select(0.0, f32(valid) / f32(max(labelled_rows(valid), 1u)), labelled);
    let inv = 1.0 / f32(valid);
    let mse_scale = 2.0 / (t * t * f32(p.classes));
    for (var j = 0u; j < p.classes; j++) {
        let q = exp(logits[base + j] - top) / sum;
        let ps = exp(logits[base + j] / t - s_top) / s_sum;
        let pt = clamp(exp(teacher_logits[base + j] / t - t_top) / t_sum, CLIP, 1.0);
        let soft = p.kl_weight * (ps * kept - select(0.0, pt, ps >= CLIP));
        let mse_grad = mse_scale * (logits[base + j] - teacher_logits[base + j]);
        let hard = (q - select(0.0, 1.0, j == label)) * hard_share;
        // Grouped as before the MSE term existed, so that the seed's loss keeps its bits.
        let g = p.alpha * hard + (1.0 - p.alpha) * t * soft + (1.0 - p.alpha) * p.mse_weight * mse_grad;
        dlogits[base + j] = g * inv;
    }
    let ce = (log(sum) + top - logits[base + label]) * hard_share;
    let soft_loss = (1.0 - p.alpha) * (p.kl_weight * kl) * t * t + (1.0 - p.alpha) * p.mse_weight * mse;
    row_loss[r] = p.alpha * ce + soft_loss;
    row_correct[r] = argmax_is(base, label);
    zero_terms(r);
    let terms = term_columns();
    row_terms[r * terms] = ce;
    row_terms[r * terms + 1u] = kl * t * t;
    row_terms[r * terms + 2u] = mse;
}

@compute @workgroup_size(64)
fn distillation(@builtin(global_invocation_id) id: vec3<u32>) {
    let r = id.x;
    if (r >= p.rows) {
        return;
    }
    let valid = valid_rows();
    if (r >= valid) {
        zero_row(r);
        zero_terms(r);
        return;
    }
    distillation_row(r, valid);
}

@compute @workgroup_size(64)
fn distillation_teacher_grad(@builtin(global_invocation_id) id: vec3<u32>) {
    let r = id.x;
    if (r >= p.rows) {
        return;
    }
    let valid = valid_rows();
    let base = r * p.classes;
    if (r >= valid) {
        zero_row(r);
        zero_terms(r);
        for (var j = 0u; j < p.classes; j++) {
            dteacher[base + j] = 0.0;
        }
        return;
    }
    distillation_row(r, valid);
    let soft = softened(base);
    var total = 0.0; // G = sum_c p_t,c g_c
    for (var j = 0u; j < p.classes; j++) {
        let term = teacher_term(base + j, soft);
        total += term.x * term.y;
    }
    let t = p.temperature;
    let mse_scale = 2.0 / (t * t * f32(p.classes));
    let scale = (1.0 - p.alpha) * t / f32(valid);
    let mse_share = (1.0 - p.alpha) * p.mse_weight / f32(valid);
    for (var j = 0u; j < p.classes; j++) {
        let term = teacher_term(base + j, soft);
        let mse_grad = mse_scale * (teacher_logits[base + j] - logits[base + j]);
        dteacher[base + j] = scale * (p.kl_weight * term.x) * (term.y - total) + mse_share * mse_grad;
    }
}

// (p_t, g) of one logit: the teacher's softened probability and d KL / d p_t (zero where
// p_t is clipped).
fn teacher_term(at: u32, soft: Softened) -> vec2<f32> {
    let t = p.temperature;
    let pt = exp(teacher_logits[at] / t - soft.t_top) / soft.t_sum;
    let ps = exp(logits[at] / t - soft.s_top) / soft.s_sum;
    let g = select(0.0, log(clamp(pt, CLIP, 1.0)) - log(clamp(ps, CLIP, 1.0)) + 1.0, pt >= CLIP);
    return vec2<f32>(pt, g);
}
