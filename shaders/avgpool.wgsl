// Average pooling, NHWC, TensorFlow "same" padding or "valid" (pad_top = pad_left = 0, out_h and
// out_w as the host computes them). Each output is the sum of its window's real (unpadded)
// cells in row-major window order, divided by their number, as TensorFlow's "same" average pool
// does. The backward pass gathers, for each input cell, the gradient of every window that
// covers it divided by that window's count, in a fixed order. Input rows and columns no
// window reaches get a zero gradient. The buffer-fed entries serve both kernel families.

#include "common.wgsl"

struct AvgPool {
    batch: u32,
    in_h: u32,
    in_w: u32,
    channels: u32,
    out_h: u32,
    out_w: u32,
    size: u32,
    stride: u32,
    pad_top: u32,
    pad_left: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: AvgPool;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;

// The real cells along one axis of the window starting at `start` (padding counted in).
fn covered(start: i32, size: u32, len: u32) -> u32 {
    let lo = max(start, 0);
    let hi = min(start + i32(size), i32(len));
    return u32(hi - lo);
}

@compute @workgroup_size(256)
fn avgpool_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = flat_index(wg, nwg, lid, 256u);
    if (idx >= p.batch * p.out_h * p.out_w * p.channels) {
        return;
    }
    let c = idx % p.channels;
    let ow = (idx / p.channels) % p.out_w;
    let oh = (idx / (p.channels * p.out_w)) % p.out_h;
    let b = idx / (p.channels * p.out_w * p.out_h);
    var sum = 0.0;
    for (var dy_ = 0u; dy_ < p.size; dy_++) {
        let ih = i32(oh * p.stride + dy_) - i32(p.pad_top);
        if (ih < 0 || ih >= i32(p.in_h)) {
            continue;
        }
        for (var dx_ = 0u; dx_ < p.size; dx_++) {
            let iw = i32(ow * p.stride + dx_) - i32(p.pad_left);
            if (iw < 0 || iw >= i32(p.in_w)) {
                continue;
            }
            sum += x[((b * p.in_h + u32(ih)) * p.in_w + u32(iw)) * p.channels + c];
        }
    }
    let top = i32(oh * p.stride) - i32(p.pad_top);
    let left = i32(ow * p.stride) - i32(p.pad_left);
    y[idx] = sum / f32(covered(top, p.size, p.in_h) * covered(left, p.size, p.in_w));
}

@compute @workgroup_size(256)
fn avgpool_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = flat_index(wg, nwg, lid, 256u);
    if (idx >= p.batch * p.in_h * p.in_w * p.channels) {
        return;
    }
    let c = idx % p.channels;
    let iw = (idx / p.channels) % p.in_w;
    let ih = (idx / (p.channels * p.in_w)) % p.in_h;
    let b = idx / (p.channels * p.in_w * p.in_h);
    var sum = 0.0;
    for (var dy_ = 0u; dy_ < p.size; dy_++) {
        let th = i32(ih + p.pad_top) - i32(dy_);
        if (th < 0 || th % i32(p.stride) != 0 || th / i32(p.stride) >= i32(p.out_h)) {
            continue;
        }
        let oh = u32(th) / p.stride;
        let rows = covered(th - i32(p.pad_top), p.size, p.in_h);
        for (var dx_ = 0u; dx_ < p.size; dx_++) {
            let tw = i32(iw + p.pad_left) - i32(dx_);
            if (tw < 0 || tw % i32(p.stride) != 0 || tw / i32(p.stride) >= i32(p.out_w)) {
                continue;
            }
            let ow = u32(tw) / p.stride;
            let count = rows * covered(tw - i32(p.pad_left), p.size, p.in_w);
            sum += dy[((b * p.out_h + oh) * p.out_w + ow) * p.channels + c] / f32(count);
        }
    }
    dx[idx] = sum;
}
