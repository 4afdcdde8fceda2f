// Dense layer y = x * W + b, x (batch x inputs), W (inputs x units) as Keras stores it.
//
// The teacher's layer has 25,088 inputs but only 10 units: one invocation per output would
// leave the device idle, so the forward pass splits the reduction over `parts` chunks of the
// inputs (dense_forward_partial) and reduce.wgsl's sum_parts adds the parts and the bias in a
// fixed order.

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

fn flat_index(wg: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wg.y * nwg.x + wg.x) * 256u + lid.x;
}

@compute @workgroup_size(256)
fn dense_forward_partial(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = flat_index(wg, nwg, lid);
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
    let idx = flat_index(wg, nwg, lid);
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
    let idx = flat_index(wg, nwg, lid);
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
