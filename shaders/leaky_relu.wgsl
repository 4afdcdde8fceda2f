// LeakyReLU: y = x for x > 0, slope * x otherwise (Keras: negative_slope); ReLU is slope 0.
// The backward pass reads the activation's output y (y > 0 exactly when x > 0 for slope >= 0),
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

@compute @workgroup_size(256)
fn leaky_relu_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wg, nwg, lid, 256u);
    if (i < p.len) {
        let v = x[i];
        y[i] = select(v * p.slope, v, v > 0.0);
    }
}

// The backward pass, one body for both families (common.wgsl): LANES elements an invocation;
// the texture-fed family needs len a multiple of 4.
#if buffers
@group(0) @binding(1) var<storage, read> activation: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;
fn load_activation(i: u32) -> Value {
    return activation[i];
}
fn load_dy(i: u32) -> Value {
    return dy[i];
}
#endif
#if textures
@group(0) @binding(1) var activation_tex: texture_2d<f32>;
@group(0) @binding(2) var dy_tex: texture_2d<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<vec4<f32>>;
fn load_activation(i: u32) -> Value {
    return texel(activation_tex, i);
}
fn load_dy(i: u32) -> Value {
    return texel(dy_tex, i);
}
#endif

@compute @workgroup_size(256)
fn leaky_relu_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wg, nwg, lid, 256u);
    if (i < p.len / LANES) {
        let g = load_dy(i);
        dx[i] = select(g * p.slope, g, load_activation(i) > Value(0.0));
    }
}
