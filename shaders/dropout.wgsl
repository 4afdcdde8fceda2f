// Dropout in training (Keras's inverted dropout): y = x * scale where the element is kept,
// 0 where it is dropped, scale = 1 / (1 - rate). The backward pass is the same map on the
// gradient. The mask is drawn, not stored: element i of a step keeps its value when
// pcg4d(i, Adam's t, seed, layer).x >> 8 (24 uniform bits) is at least `threshold`
// (round(rate * 2^24)), so both passes, a resumed run and the CPU reference
// (src/ops/dropout.rs) draw the same mask.

#include "common.wgsl"
#include "random.wgsl"

struct Params {
    len: u32,
    seed: u32,
    layer: u32,
    threshold: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> state: StepState;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn dropout_apply(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wg, nwg, lid, 256u);
    if (i < p.len) {
        let bits = pcg4d(vec4<u32>(i, state.adam_t, p.seed, p.layer)).x >> 8u;
        y[i] = select(0.0, x[i] * p.scale, bits >= p.threshold);
    }
}
