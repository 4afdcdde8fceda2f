// LeakyReLU: y = x for x > 0, slope * x otherwise (Keras: negative_slope).
// The backward pass reads the activation's output y (y > 0 exactly when x > 0 for slope > 0),
// so the pre-activation need not be kept; at x = 0 the gradient is slope, as in TensorFlow.

#include "common.wgsl"

struct Params {
    len: u32,
    slope: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@group(0) @binding(1) var<storage, read> activation: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(256)
fn leaky_relu_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wg, nwg, lid, 256u);
    if (i < p.len) {
        let v = x[i];
        y[i] = select(v * p.slope, v, v > 0.0);
    }
}

@compute @workgroup_size(256)
fn leaky_relu_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wg, nwg, lid, 256u);
    if (i < p.len) {
        let g = dy[i];
        dx[i] = select(g * p.slope, g, activation[i] > 0.0);
    }
}

// Texture-fed entry for CPU drivers (lavapipe; see matmul_texture.wgsl): len a multiple of 4,
// one invocation per four elements.
@group(0) @binding(1) var activation_tex: texture_2d<f32>;
@group(0) @binding(2) var dy_tex: texture_2d<f32>;
@group(0) @binding(3) var<storage, read_write> dx4: array<vec4<f32>>;

@compute @workgroup_size(256)
fn leaky_relu_backward_texture(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                               @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wg, nwg, lid, 256u);
    if (i < p.len / 4u) {
        let at = texel_at(i);
        let g = textureLoad(dy_tex, at, 0);
        dx4[i] = select(g * p.slope, g, textureLoad(activation_tex, at, 0) > vec4<f32>(0.0));
    }
}
