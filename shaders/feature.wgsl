// Feature distillation: keras.distillation's FeatureDistillation with loss="mse", the mean over
// a batch's real rows and every element of (s - t)^2 between the student's layer output s
// (through a learned 1x1 projection to the teacher's channels with `:project`, FitNets'
// regressor) and the frozen teacher's t. Its gradient joins the student's backward pass where
// the gradient from the logits reaches that layer.
//
// feature_mse: one workgroup per row. The row's squared error is summed in a fixed order
//              (each invocation a strided share, then a tree), so the result is deterministic;
//              row value mse = sum / features goes to row_terms' column `column` and, times
//              `scale` = (1 - alpha) * weight, onto the row's loss. The gradient
//              2 scale (s - t) / (valid features) is written to `grad`, or added to it with
//              `accumulate` (no projection: `grad` is the student's own gradient there).
//              Rows past the batch's real ones: gradient 0 written (or nothing added).
// accumulate:  total += addend, elementwise (the projection's input gradient into the
//              student's).

#include "common.wgsl"

struct Params {
    rows: u32,
    features: u32,
    scale: f32,
    column: u32,
    accumulate: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> state: StepState;
@group(0) @binding(2) var<storage, read> student: array<f32>;
@group(0) @binding(3) var<storage, read> teacher: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;
@group(0) @binding(5) var<storage, read_write> row_loss: array<f32>;
@group(0) @binding(6) var<storage, read_write> row_terms: array<f32>;

@group(0) @binding(0) var<storage, read> addend: array<f32>;
@group(0) @binding(1) var<storage, read_write> total: array<f32>;

const GROUP: u32 = 64u;
var<workgroup> partial: array<f32, GROUP>;

fn valid_rows() -> u32 {
    let start = state.step * state.batch;
    if (start >= state.samples) {
        return 0u;
    }
    return min(p.rows, state.samples - start);
}

@compute @workgroup_size(64)
fn feature_mse(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) i: u32) {
    let r = group.x;
    let base = r * p.features;
    let valid = valid_rows();
    if (r >= valid) {
        if (p.accumulate == 0u) {
            for (var j = i; j < p.features; j += GROUP) {
                grad[base + j] = 0.0;
            }
        }
        return;
    }
    let g = 2.0 * p.scale / (f32(valid) * f32(p.features));
    var sum = 0.0;
    for (var j = i; j < p.features; j += GROUP) {
        let d = student[base + j] - teacher[base + j];
        sum += d * d;
        if (p.accumulate == 0u) {
            grad[base + j] = g * d;
        } else {
            grad[base + j] += g * d;
        }
    }
    partial[i] = sum;
    workgroupBarrier();
    for (var half = GROUP / 2u; half > 0u; half /= 2u) {
        if (i < half) {
            partial[i] += partial[i + half];
        }
        workgroupBarrier();
    }
    if (i == 0u) {
        let mse = partial[0] / f32(p.features);
        let terms = arrayLength(&row_terms) / p.rows;
        row_terms[r * terms + p.column] = mse;
        row_loss[r] += p.scale * mse;
    }
}

@compute @workgroup_size(256)
fn accumulate(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wg, nwg, lid, 256u);
    if (i < arrayLength(&total)) {
        total[i] += addend[i];
    }
}
