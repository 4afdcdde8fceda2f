// Global pooling, NHWC: each sample's channel reduced over all its h * w pixels to one value
// (Keras's GlobalAveragePooling2D and GlobalMaxPooling2D, keepdims=False). One invocation per
// output (batch, channel) forward, per input cell backward; the same entries serve both kernel
// families (their reads are one channel a pixel apart, so texture copies would not help).
// Average: the sum in row-major pixel order, divided by h * w; each input cell's gradient is
// its channel's output gradient divided by h * w.
// Max: the first maximum in row-major pixel order wins (strict >) and records its flat input
// index; only it receives the gradient.

#include "common.wgsl"

struct GlobalPool {
    batch: u32,
    // h * w
    pixels: u32,
    channels: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: GlobalPool;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> argmax: array<u32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> winners: array<u32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;
// The average's backward pass reads no winners: its gradient is the second binding.
@group(0) @binding(2) var<storage, read_write> average_dx: array<f32>;

@compute @workgroup_size(256)
fn global_average_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = flat_index(wg, nwg, lid, 256u);
    if (idx >= p.batch * p.channels) {
        return;
    }
    let c = idx % p.channels;
    let b = idx / p.channels;
    var sum = 0.0;
    for (var i = 0u; i < p.pixels; i++) {
        sum += x[(b * p.pixels + i) * p.channels + c];
    }
    y[idx] = sum / f32(p.pixels);
}

@compute @workgroup_size(256)
fn global_average_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = flat_index(wg, nwg, lid, 256u);
    if (idx >= p.batch * p.pixels * p.channels) {
        return;
    }
    let c = idx % p.channels;
    let b = idx / (p.channels * p.pixels);
    average_dx[idx] = dy[b * p.channels + c] / f32(p.pixels);
}

@compute @workgroup_size(256)
fn global_max_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = flat_index(wg, nwg, lid, 256u);
    if (idx >= p.batch * p.channels) {
        return;
    }
    let c = idx % p.channels;
    let b = idx / p.channels;
    var best_at = b * p.pixels * p.channels + c;
    var best = x[best_at];
    for (var i = 1u; i < p.pixels; i++) {
        let at = (b * p.pixels + i) * p.channels + c;
        let v = x[at];
        let better = v > best;
        best = select(best, v, better);
        best_at = select(best_at, at, better);
    }
    y[idx] = best;
    argmax[idx] = best_at;
}

@compute @workgroup_size(256)
fn global_max_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = flat_index(wg, nwg, lid, 256u);
    if (idx >= p.batch * p.pixels * p.channels) {
        return;
    }
    let o = idx / (p.channels * p.pixels) * p.channels + idx % p.channels;
    dx[idx] = select(0.0, dy[o], winners[o] == idx);
}
