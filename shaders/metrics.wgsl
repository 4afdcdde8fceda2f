// Per-step metrics kept on the device so that an epoch needs no readback per step:
// metrics[2 * step] = sum of the batch's row losses, metrics[2 * step + 1] = correct count,
// summed in row order by one invocation (deterministic). The host adds the steps in f64.

#include "common.wgsl"

@group(0) @binding(0) var<storage, read> state: StepState;
@group(0) @binding(1) var<storage, read> row_loss: array<f32>;
@group(0) @binding(2) var<storage, read> row_correct: array<f32>;
@group(0) @binding(3) var<storage, read_write> metrics: array<f32>;

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
