// Dense layer y = x * W + b, x (batch x inputs), W (inputs x units) as Keras stores it.
//
// The teacher's layer has 25,088 inputs but only 10 units: one invocation per output would
// leave the device idle, so the forward pass splits the reduction over `parts` chunks of the
// inputs (dense_forward_partial) and reduce.wgsl's sum_parts adds the parts and the bias in a
// fixed order.

#include "common.wgsl"

struct Dense {
    batch: u32,
    inputs: u32,
    units: u32,
    parts: u32,
    chunk: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Dense;
// dense_forward_partial
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;
// dense_backward_input: dx = dy * W^T
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;
// dense_backward_weight: dW = x^T * dy
@group(0) @binding(2) var<storage, read> dy_w: array<f32>;
@group(0) @binding(3) var<storage, read_write> dw: array<f32>;

@compute @workgroup_size(256)
fn dense_forward_partial(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = flat_index(wg, nwg, lid, 256u);
    if (idx >= p.parts * p.batch * p.units) {
        return;
    }
    let n = idx % p.units;
    let b = (idx / p.units) % p.batch;
    let s = idx / (p.units * p.batch);
    let end = min(p.inputs, (s + 1u) * p.chunk);
    var sum = 0.0;
    for (var k = s * p.chunk; k < end; k++) {
        sum = fma(x[b * p.inputs + k], w[k * p.units + n], sum);
    }
    partial[idx] = sum;
}

@compute @workgroup_size(256)
fn dense_backward_input(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = flat_index(wg, nwg, lid, 256u);
    if (idx >= p.batch * p.inputs) {
        return;
    }
    let k = idx % p.inputs;
    let b = idx / p.inputs;
    var sum = 0.0;
    for (var n = 0u; n < p.units; n++) {
        sum = fma(dy[b * p.units + n], w[k * p.units + n], sum);
    }
    dx[idx] = sum;
}

@compute @workgroup_size(256)
fn dense_backward_weight(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = flat_index(wg, nwg, lid, 256u);
    if (idx >= p.inputs * p.units) {
        return;
    }
    let n = idx % p.units;
    let k = idx / p.units;
    var sum = 0.0;
    for (var b = 0u; b < p.batch; b++) {
        sum = fma(x[b * p.inputs + k], dy_w[b * p.units + n], sum);
    }
    dw[idx] = sum;
}

// Texture-fed entries for CPU drivers (lavapipe), where a texel fetch costs a fraction of a
// storage-buffer load (see matmul_texture.wgsl). x, W and dy are read from rgba32float
// textures holding their elements in order, four per texel. They need 10 units (the models'
// classes: 4 rows of W are then exactly 10 texels) and inputs a multiple of 4.
// dense_forward_texture: x_tex, w_tex, partial. dense_backward_input_texture: dy_in_tex,
// w_tex, out4 (dx). dense_backward_weight_texture: x_tex, dy_w_tex, out4 (dW).
@group(0) @binding(1) var x_tex: texture_2d<f32>;
@group(0) @binding(1) var dy_in_tex: texture_2d<f32>;
@group(0) @binding(2) var w_tex: texture_2d<f32>;
@group(0) @binding(2) var dy_w_tex: texture_2d<f32>;
@group(0) @binding(3) var<storage, read_write> out4: array<vec4<f32>>;

// Rows 4 * k4 .. 4 * k4 + 3 of W (10 columns): row j is w[3j], w[3j + 1], w[3j + 2].xy.
fn w_rows(k4: u32) -> array<vec4<f32>, 12> {
    let t0 = texel(w_tex, 10u * k4);
    let t1 = texel(w_tex, 10u * k4 + 1u);
    let t2 = texel(w_tex, 10u * k4 + 2u);
    let t3 = texel(w_tex, 10u * k4 + 3u);
    let t4 = texel(w_tex, 10u * k4 + 4u);
    let t5 = texel(w_tex, 10u * k4 + 5u);
    let t6 = texel(w_tex, 10u * k4 + 6u);
    let t7 = texel(w_tex, 10u * k4 + 7u);
    let t8 = texel(w_tex, 10u * k4 + 8u);
    let t9 = texel(w_tex, 10u * k4 + 9u);
    return array<vec4<f32>, 12>(
        t0, t1, vec4<f32>(t2.xy, 0.0, 0.0),
        vec4<f32>(t2.zw, t3.xy), vec4<f32>(t3.zw, t4.xy), vec4<f32>(t4.zw, 0.0, 0.0),
        t5, t6, vec4<f32>(t7.xy, 0.0, 0.0),
        vec4<f32>(t7.zw, t8.xy), vec4<f32>(t8.zw, t9.xy), vec4<f32>(t9.zw, 0.0, 0.0),
    );
}

// Row b of dy (10 columns) as three vec4s, the last two lanes zero.
fn dy_row(dy_tex: texture_2d<f32>, b: u32) -> array<vec4<f32>, 3> {
    let q = (10u * b) / 4u;
    let t0 = texel(dy_tex, q);
    let t1 = texel(dy_tex, q + 1u);
    let t2 = texel(dy_tex, q + 2u);
    if (b % 2u == 0u) {
        return array<vec4<f32>, 3>(t0, t1, vec4<f32>(t2.xy, 0.0, 0.0));
    }
    return array<vec4<f32>, 3>(vec4<f32>(t0.zw, t1.xy), vec4<f32>(t1.zw, t2.xy), vec4<f32>(t2.zw, 0.0, 0.0));
}

// One invocation per (part, row of x): the 10 partial sums over the part's inputs.
@compute @workgroup_size(64)
fn dense_forward_texture(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = flat_index(wg, nwg, lid, 64u);
    if (idx >= p.parts * p.batch) {
        return;
    }
    let b = idx % p.batch;
    let s = idx / p.batch;
    let end = min(p.inputs, (s + 1u) * p.chunk);
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    for (var k4 = s * p.chunk / 4u; k4 < end / 4u; k4++) {
        let xv = texel(x_tex, b * (p.inputs / 4u) + k4);
        let w = w_rows(k4);
        acc0 = fma(vec4<f32>(xv.x), w[0], acc0);
        acc1 = fma(vec4<f32>(xv.x), w[1], acc1);
        acc2 = fma(vec4<f32>(xv.x), w[2], acc2);
        acc0 = fma(vec4<f32>(xv.y), w[3], acc0);
        acc1 = fma(vec4<f32>(xv.y), w[4], acc1);
        acc2 = fma(vec4<f32>(xv.y), w[5], acc2);
        acc0 = fma(vec4<f32>(xv.z), w[6], acc0);
        acc1 = fma(vec4<f32>(xv.z), w[7], acc1);
        acc2 = fma(vec4<f32>(xv.z), w[8], acc2);
        acc0 = fma(vec4<f32>(xv.w), w[9], acc0);
        acc1 = fma(vec4<f32>(xv.w), w[10], acc1);
        acc2 = fma(vec4<f32>(xv.w), w[11], acc2);
    }
    let o = (s * p.batch + b) * 10u;
    partial[o] = acc0.x;
    partial[o + 1u] = acc0.y;
    partial[o + 2u] = acc0.z;
    partial[o + 3u] = acc0.w;
    partial[o + 4u] = acc1.x;
    partial[o + 5u] = acc1.y;
    partial[o + 6u] = acc1.z;
    partial[o + 7u] = acc1.w;
    partial[o + 8u] = acc2.x;
    partial[o + 9u] = acc2.y;
}

// One invocation per four inputs: dx[b, 4 * k4 ..] = dy[b, :] . W[4 * k4 .., :] for every row b.
@compute @workgroup_size(64)
fn dense_backward_input_texture(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                @builtin(local_invocation_id) lid: vec3<u32>) {
    let k4 = flat_index(wg, nwg, lid, 64u);
    if (k4 >= p.inputs / 4u) {
        return;
    }
    let w = w_rows(k4);
    for (var b = 0u; b < p.batch; b++) {
        let d = dy_row(dy_in_tex, b);
        out4[b * (p.inputs / 4u) + k4] = vec4<f32>(
            dot(d[0], w[0]) + dot(d[1], w[1]) + dot(d[2], w[2]),
            dot(d[0], w[3]) + dot(d[1], w[4]) + dot(d[2], w[5]),
            dot(d[0], w[6]) + dot(d[1], w[7]) + dot(d[2], w[8]),
            dot(d[0], w[9]) + dot(d[1], w[10]) + dot(d[2], w[11]),
        );
    }
}

// One invocation per four inputs: rows 4 * k4 .. of dW = x^T dy, summed over b in order.
@compute @workgroup_size(64)
fn dense_backward_weight_texture(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                 @builtin(local_invocation_id) lid: vec3<u32>) {
    let k4 = flat_index(wg, nwg, lid, 64u);
    if (k4 >= p.inputs / 4u) {
        return;
    }
    var a: array<vec4<f32>, 12>;
    for (var b = 0u; b < p.batch; b++) {
        let xv = texel(x_tex, b * (p.inputs / 4u) + k4);
        let d = dy_row(dy_w_tex, b);
        a[0] = fma(vec4<f32>(xv.x), d[0], a[0]);
        a[1] = fma(vec4<f32>(xv.x), d[1], a[1]);
        a[2] = fma(vec4<f32>(xv.x), d[2], a[2]);
        a[3] = fma(vec4<f32>(xv.y), d[0], a[3]);
        a[4] = fma(vec4<f32>(xv.y), d[1], a[4]);
        a[5] = fma(vec4<f32>(xv.y), d[2], a[5]);
        a[6] = fma(vec4<f32>(xv.z), d[0], a[6]);
        a[7] = fma(vec4<f32>(xv.z), d[1], a[7]);
        a[8] = fma(vec4<f32>(xv.z), d[2], a[8]);
        a[9] = fma(vec4<f32>(xv.w), d[0], a[9]);
        a[10] = fma(vec4<f32>(xv.w), d[1], a[10]);
        a[11] = fma(vec4<f32>(xv.w), d[2], a[11]);
    }
    let o = 10u * k4;
    out4[o] = a[0];
    out4[o + 1u] = a[1];
    out4[o + 2u] = vec4<f32>(a[2].xy, a[3].xy);
    out4[o + 3u] = vec4<f32>(a[3].zw, a[4].xy);
    out4[o + 4u] = vec4<f32>(a[4].zw, a[5].xy);
    out4[o + 5u] = a[6];
    out4[o + 6u] = a[7];
    out4[o + 7u] = vec4<f32>(a[8].xy, a[9].xy);
    out4[o + 8u] = vec4<f32>(a[9].zw, a[10].xy);
    out4[o + 9u] = vec4<f32>(a[10].zw, a[11].xy);
}
