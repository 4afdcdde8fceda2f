// Adam in Keras's form, over every parameter of a model at once (one flat buffer):
//   m += (g - m)(1 - beta1);  v += (g^2 - v)(1 - beta2)
//   w -= lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + epsilon)
// t counts steps from 1 and lives in the step state on the device, so steps need no upload.

struct StepState {
    step: u32,
    adam_t: u32,
    samples: u32,
    batch: u32,
}

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
    let i = (wg.y * nwg.x + wg.x) * 256u + lid.x;
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
