// Deterministic sums in two passes, with no atomics: the same inputs always give the same bits.
//
// column_sum_partial: partial[s, j] = sum of x[i, j] over rows i of chunk s (x is rows x cols).
// sum_parts:          out[j] = bias[j % bias_len] (if bias_len > 0) + sum over s of partial[s, j],
//                     in order of s. Used for bias gradients and for the split-K dense forward.

#include "common.wgsl"

struct Params {
    rows: u32,
    cols: u32,
    chunk: u32,
    parts: u32,
    bias_len: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> partial: array<f32>;

@group(0) @binding(1) var<storage, read> parts_in: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn column_sum_partial(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = flat_index(wg, nwg, lid, 256u);
    if (idx >= p.parts * p.cols) {
        return;
    }
    let j = idx % p.cols;
    let s = idx / p.cols;
    let end = min(p.rows, (s + 1u) * p.chunk);
    var sum = 0.0;
    for (var i = s * p.chunk; i < end; i++) {
        sum += x[i * p.cols + j];
    }
    partial[idx] = sum;
}

@compute @workgroup_size(256)
fn sum_parts(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
    let j = flat_index(wg, nwg, lid, 256u);
    if (j >= p.cols) {
        return;
    }
    var sum = 0.0;
    if (p.bias_len > 0u) {
        sum = bias[j % p.bias_len];
    }
    for (var s = 0u; s < p.parts; s++) {
        sum += parts_in[s * p.cols + j];
    }
    out[j] = sum;
}

// Texture-fed column_sum_partial for CPU drivers (lavapipe; see matmul_texture.wgsl): cols a
// multiple of 4, one invocation per four columns of a part, the same sums in the same order.
@group(0) @binding(1) var x_tex: texture_2d<f32>;
@group(0) @binding(2) var<storage, read_write> partial4: array<vec4<f32>>;

@compute @workgroup_size(256)
fn column_sum_partial_texture(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                              @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = flat_index(wg, nwg, lid, 256u);
    let cols4 = p.cols / 4u;
    if (idx >= p.parts * cols4) {
        return;
    }
    let j4 = idx % cols4;
    let s = idx / cols4;
    let end = min(p.rows, (s + 1u) * p.chunk);
    var sum = vec4<f32>(0.0);
    for (var i = s * p.chunk; i < end; i++) {
        let t = i * cols4 + j4;
        sum += texel(x_tex, t);
    }
    partial4[idx] = sum;
}
