// Per-step metrics kept on the device so that an epoch needs no readback per step: per step,
// `width` values: the sum of the batch's row losses, the correct count, and for a
// distillation loss the sums of its terms' row values (`loss.wgsl`'s row_terms), summed in
// row order by one invocation (deterministic). The host adds the steps in f64.

#include "common.wgsl"

@group(0) @binding(0) var<storage, read> state: StepState;
@group(0) @binding(1) var<storage, read> row_loss: array<f32>;
@group(0) @binding(2) var<storage, read> row_correct: array<f32>;
@group(0) @binding(3) var<storage, read_write> metrics: array<f32>;
@group(0) @binding(4) var<storage, read> row_terms: array<f32>;

@compute @workgroup_size(1)
fn record_metrics() {
    let rows = arrayLength(&row_loss);
    var loss = 0.0;
    var correct = 0.0;
    for (var r = 0u; r < rows; r++) {
        loss += row_loss[r];
        correct += row_correct[r];
    }
    metrics[2u * state.step] = loss;
    metrics[2u * state.step + 1u] = correct;
}

@compute @workgroup_size(1)
fn record_metrics_terms() {
    let rows = arrayLength(&row_loss);
    // A column per term (loss.wgsl's, then a feature term's).
    let terms = arrayLength(&row_terms) / rows;
    let at = (2u + terms) * state.step;
    var loss = 0.0;
    var correct = 0.0;
    for (var r = 0u; r < rows; r++) {
        loss += row_loss[r];
        correct += row_correct[r];
    }
    metrics[at] = loss;
    metrics[at + 1u] = correct;
    for (var k = 0u; k < terms; k++) {
        var sum = 0.0;
        for (var r = 0u; r < rows; r++) {
            sum += row_terms[r * terms + k];
        }
        metrics[at + 2u + k] = sum;
    }
}
