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
// Both record per-row loss and whether argmax(z) == y (first maximum wins, as tf.argmax).

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
    let base = r * p.classes;
    let label = labels[r];
    let t = p.temperature;
    let inv_t = 1.0 / t;

    // Plain softmax of the student (the hard-label term).
    let top = row_max(base, 1.0);
    var sum = 0.0;
    for (var j = 0u; j < p.classes; j++) {
        sum += exp(logits[base + j] - top);
    }
    // Softened student and teacher distributions.
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
