// Adam in Keras's form, over every parameter of a model at once (one flat buffer):
//   m += (g - m)(1 - beta1);  v += (g^2 - v)(1 - beta2)
//   w -= lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + epsilon)
// t counts steps from 1 and lives in the step state on the device, so steps need no upload.

#include "common.wgsl"

struct Params {
    len: u32,
    learning_rate: f32,
    beta1: f32,
    beta2: f32,
    epsilon: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> state: StepState;

// One body for both families (common.wgsl): a buffer-fed invocation updates one parameter in
// place; a texture-fed one four (len a multiple of 4), reading the old weights, m and v from
// texture copies taken before the dispatch while it writes the buffers.
#if buffers
@group(0) @binding(2) var<storage, read_write> weights: array<f32>;
@group(0) @binding(3) var<storage, read> grads: array<f32>;
@group(0) @binding(4) var<storage, read_write> m: array<f32>;
@group(0) @binding(5) var<storage, read_write> v: array<f32>;
fn load_grad(i: u32) -> Value {
    return grads[i];
}
fn load_weight(i: u32) -> Value {
    return weights[i];
}
fn load_m(i: u32) -> Value {
    return m[i];
}
fn load_v(i: u32) -> Value {
    return v[i];
}
#endif
#if textures
@group(0) @binding(2) var<storage, read_write> weights: array<vec4<f32>>;
@group(0) @binding(3) var grads_tex: texture_2d<f32>;
@group(0) @binding(4) var<storage, read_write> m: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> v: array<vec4<f32>>;
@group(0) @binding(6) var weights_tex: texture_2d<f32>;
@group(0) @binding(7) var m_tex: texture_2d<f32>;
@group(0) @binding(8) var v_tex: texture_2d<f32>;
fn load_grad(i: u32) -> Value {
    return texel(grads_tex, i);
}
fn load_weight(i: u32) -> Value {
    return texel(weights_tex, i);
}
fn load_m(i: u32) -> Value {
    return texel(m_tex, i);
}
fn load_v(i: u32) -> Value {
    return texel(v_tex, i);
}
#endif

@compute @workgroup_size(256)
fn adam(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wg, nwg, lid, 256u);
    if (i >= p.len / LANES) {
        return;
    }
    let t = f32(state.adam_t);
    let step_size = p.learning_rate * sqrt(1.0 - pow(p.beta2, t)) / (1.0 - pow(p.beta1, t));
    let g = load_grad(i);
    let m_old = load_m(i);
    let v_old = load_v(i);
    let m_new = m_old + (g - m_old) * (1.0 - p.beta1);
    let v_new = v_old + (g * g - v_old) * (1.0 - p.beta2);
    m[i] = m_new;
    v[i] = v_new;
    weights[i] = load_weight(i) - step_size * m_new / (sqrt(v_new) + p.epsilon);
}
