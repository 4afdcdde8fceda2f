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

@group(0) @binding(1) var<storage, read> parts_in: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// column_sum_partial, one body for both families (common.wgsl): a buffer-fed invocation sums
// one column of a part, a texture-fed one four (cols a multiple of 4), the same sums in the
// same order.
#if buffers
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> partial: array<f32>;
fn load_x(at: u32) -> Value {
    return x[at];
}
#endif
#if textures
@group(0) @binding(1) var x_tex: texture_2d<f32>;
@group(0) @binding(2) var<storage, read_write> partial: array<vec4<f32>>;
fn load_x(at: u32) -> Value {
    return texel(x_tex, at / 4u);
}
#endif

@compute @workgroup_size(256)
fn column_sum_partial(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = flat_index(wg, nwg, lid, 256u);
    let c_lanes = p.cols / LANES;
    if (idx >= p.parts * c_lanes) {
        return;
    }
    let j = (idx % c_lanes) * LANES;
    let s = idx / c_lanes;
    let end = min(p.rows, (s + 1u) * p.chunk);
    var sum = Value(0.0);
    for (var i = s * p.chunk; i < end; i++) {
        sum += load_x(i * p.cols + j);
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
