// Losses from logits, value and gradient in one pass, one invocation per row.
//
// Only the batch's first `valid` rows are real (the last batch of an epoch may be short); the
// rest get zero loss and zero gradient, and the gradient is divided by `valid`, as Keras's
// mean over the batch.
//
// cross_entropy: sparse softmax cross-entropy. loss = logsumexp(z) - z[y];
//                dz = (softmax(z) - onehot(y)) / valid.
// distillation:  alpha * CE(y, s) + (1 - alpha) * T^2 * KL(clip(p_t) || clip(p_s)), with
//                p = softmax(logits / T) and Keras's clip of both distributions to [1e-7, 1].
//                Where p_s is clipped its gradient is zero (TensorFlow's clip gradient), so
//                ds_j = [alpha (q_j - onehot_j) + (1 - alpha) T (p_s,j S - p_t,j mask_j)] / valid
//                with q = softmax(s), mask_j = (p_s,j >= 1e-7), S = sum_c p_t,c mask_c
//                (S = 1 without clipping, giving the textbook (1 - alpha) T (p_s - p_t)).
// distillation_teacher_grad: the same, and the gradient with respect to the teacher's logits
//                (the seed's Distiller trains the teacher too). Only the KL term depends on
//                them; where p_t is clipped its gradient is zero, so with
//                g_j = (ln clip(p_t,j) - ln clip(p_s,j) + 1) mask_t,j and G = sum_c p_t,c g_c,
//                dt_j = (1 - alpha) T p_t,j (g_j - G) / valid, mask_t,j = (p_t,j >= 1e-7).
// All record per-row loss and whether argmax(z) == y (first maximum wins, as tf.argmax).

#include "common.wgsl"

struct Params {
    rows: u32,
    classes: u32,
    alpha: f32,
    temperature: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> state: StepState;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read> labels: array<u32>;
@group(0) @binding(4) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(5) var<storage, read_write> row_loss: array<f32>;
@group(0) @binding(6) var<storage, read_write> row_correct: array<f32>;
@group(0) @binding(7) var<storage, read> teacher_logits: array<f32>;
@group(0) @binding(8) var<storage, read_write> dteacher: array<f32>;

const CLIP: f32 = 1e-7;

fn valid_rows() -> u32 {
    let start = state.step * state.batch;
    if (start >= state.samples) {
        return 0u;
    }
    return min(p.rows, state.samples - start);
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

// The distillation loss of row r and its gradient with respect to the student's logits.
fn distillation_row(r: u32, valid: u32) {
    let base = r * p.classes;
    let label = labels[r];
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
    var kept = 0.0; // S: teacher mass over the classes where p_s is not clipped
    for (var j = 0u; j < p.classes; j++) {
        let ps = exp(logits[base + j] / t - s_top) / s_sum;
        let pt = clamp(exp(teacher_logits[base + j] / t - t_top) / t_sum, CLIP, 1.0);
        kl += pt * log(pt / clamp(ps, CLIP, 1.0));
        if (ps >= CLIP) {
            kept += pt;
        }
    }
    let inv = 1.0 / f32(valid);
    for (var j = 0u; j < p.classes; j++) {
        let q = exp(logits[base + j] - top) / sum;
        let ps = exp(logits[base + j] / t - s_top) / s_sum;
        let pt = clamp(exp(teacher_logits[base + j] / t - t_top) / t_sum, CLIP, 1.0);
        let soft = ps * kept - select(0.0, pt, ps >= CLIP);
        let hard = q - select(0.0, 1.0, j == label);
        dlogits[base + j] = (p.alpha * hard + (1.0 - p.alpha) * t * soft) * inv;
    }
    let ce = log(sum) + top - logits[base + label];
    row_loss[r] = p.alpha * ce + (1.0 - p.alpha) * kl * t * t;
    row_correct[r] = argmax_is(base, label);
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
    let scale = (1.0 - p.alpha) * p.temperature / f32(valid);
    for (var j = 0u; j < p.classes; j++) {
        let term = teacher_term(base + j, soft);
        dteacher[base + j] = scale * term.x * (term.y - total);
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
