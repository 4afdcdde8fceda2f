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
@group(0) @binding(2) var<storage, read_write> weights: array<f32>;
@group(0) @binding(3) var<storage, read> grads: array<f32>;
@group(0) @binding(4) var<storage, read_write> m: array<f32>;
@group(0) @binding(5) var<storage, read_write> v: array<f32>;

@compute @workgroup_size(256)
fn adam(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wg, nwg, lid, 256u);
    if (i >= p.len) {
        return;
    }
    let t = f32(state.adam_t);
    let step_size = p.learning_rate * sqrt(1.0 - pow(p.beta2, t)) / (1.0 - pow(p.beta1, t));
    let g = grads[i];
    let m_new = m[i] + (g - m[i]) * (1.0 - p.beta1);
    let v_new = v[i] + (g * g - v[i]) * (1.0 - p.beta2);
    m[i] = m_new;
    v[i] = v_new;
    weights[i] = weights[i] - step_size * m_new / (sqrt(v_new) + p.epsilon);
}

// Texture-fed entry for CPU drivers (lavapipe), where a texel fetch costs a fraction of a
// storage-buffer load (see matmul_texture.wgsl): len a multiple of 4, one invocation per four
// parameters; the old weights, m and v come from texture copies taken before the dispatch.
@group(0) @binding(2) var<storage, read_write> weights4: array<vec4<f32>>;
@group(0) @binding(3) var grads_tex: texture_2d<f32>;
@group(0) @binding(4) var<storage, read_write> m4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> v4: array<vec4<f32>>;
@group(0) @binding(6) var weights_tex: texture_2d<f32>;
@group(0) @binding(7) var m_tex: texture_2d<f32>;
@group(0) @binding(8) var v_tex: texture_2d<f32>;

@compute @workgroup_size(256)
fn adam_texture(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wg, nwg, lid, 256u);
    if (i >= p.len / 4u) {
        return;
    }
    let t = f32(state.adam_t);
    let step_size = p.learning_rate * sqrt(1.0 - pow(p.beta2, t)) / (1.0 - pow(p.beta1, t));
    let at = texel_at(i);
    let g = textureLoad(grads_tex, at, 0);
    let m_old = textureLoad(m_tex, at, 0);
    let v_old = textureLoad(v_tex, at, 0);
    let m_new = m_old + (g - m_old) * (1.0 - p.beta1);
    let v_new = v_old + (g * g - v_old) * (1.0 - p.beta2);
    m4[i] = m_new;
    v4[i] = v_new;
    weights4[i] = textureLoad(weights_tex, at, 0) - step_size * m_new / (sqrt(v_new) + p.epsilon);
}
