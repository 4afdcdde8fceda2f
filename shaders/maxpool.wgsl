// Max pooling, NHWC, TensorFlow "same" padding or "valid" (pad_top = pad_left = 0, out_h and
// out_w as the host computes them; input rows and columns no window reaches get no gradient).
// Padded cells never win.
// Ties: the first maximum in row-major window order wins (strict >), and only it receives
// the gradient. The forward pass records the winner's flat input index; the backward pass
// gathers, for each input cell, the gradients of the windows it won, in a fixed order.
// When a LeakyReLU comes before the pool, the backward pass goes through it too (`leaky` set):
// the pool's input is the LeakyReLU's output, whose sign is its input's (slope >= 0), so the
// gradient is scaled by the slope where that input is not positive, saving a pass.

#include "common.wgsl"

struct Pool {
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
    // backward only: 1 = go through the LeakyReLU before the pool, with `leaky_slope`
    leaky: u32,
    leaky_slope: f32,
}

@group(0) @binding(0) var<uniform> p: Pool;

// One body per entry for both families (common.wgsl): a buffer-fed invocation handles one
// channel, a texture-fed one four channels of a pixel (one texel; channels a multiple of 4),
// with the same comparisons and sums in the same order.
#if buffers
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> argmax: array<u32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> winners: array<u32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;
// The pool's input (the activation's output); any buffer when `leaky` is 0.
@group(0) @binding(4) var<storage, read> pool_in: array<f32>;
fn load_x(at: u32) -> Value {
    return x[at];
}
fn load_dy(at: u32) -> Value {
    return dy[at];
}
fn load_winners(at: u32) -> Index {
    return winners[at];
}
fn load_pool_in(at: u32) -> Value {
    return pool_in[at];
}
#endif
#if textures
@group(0) @binding(1) var x_tex: texture_2d<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> argmax: array<vec4<u32>>;
@group(0) @binding(1) var dy_tex: texture_2d<f32>;
@group(0) @binding(2) var winners_tex: texture_2d<u32>;
@group(0) @binding(3) var<storage, read_write> dx: array<vec4<f32>>;
@group(0) @binding(4) var pool_in_tex: texture_2d<f32>;
fn load_x(at: u32) -> Value {
    return texel(x_tex, at / 4u);
}
fn load_dy(at: u32) -> Value {
    return texel(dy_tex, at / 4u);
}
fn load_winners(at: u32) -> Index {
    return textureLoad(winners_tex, texel_at(at / 4u), 0);
}
fn load_pool_in(at: u32) -> Value {
    return texel(pool_in_tex, at / 4u);
}
#endif

@compute @workgroup_size(256)
fn maxpool_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = flat_index(wg, nwg, lid, 256u);
    let c_lanes = p.channels / LANES;
    if (idx >= p.batch * p.out_h * p.out_w * c_lanes) {
        return;
    }
    let c = (idx % c_lanes) * LANES;
    let ow = (idx / c_lanes) % p.out_w;
    let oh = (idx / (c_lanes * p.out_w)) % p.out_h;
    let b = idx / (c_lanes * p.out_w * p.out_h);
    let none = Index(0xffffffffu);
    var best = Value(0.0);
    var best_at = none;
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
            let at = ((b * p.in_h + u32(ih)) * p.in_w + u32(iw)) * p.channels + c;
            let v = load_x(at);
            let better = (best_at == none) | (v > best);
            best = select(best, v, better);
            best_at = select(best_at, lane_indices(at), better);
        }
    }
    y[idx] = best;
    argmax[idx] = best_at;
}

@compute @workgroup_size(256)
fn maxpool_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = flat_index(wg, nwg, lid, 256u);
    let c_lanes = p.channels / LANES;
    if (idx >= p.batch * p.in_h * p.in_w * c_lanes) {
        return;
    }
    let c = (idx % c_lanes) * LANES;
    let iw = (idx / c_lanes) % p.in_w;
    let ih = (idx / (c_lanes * p.in_w)) % p.in_h;
    let b = idx / (c_lanes * p.in_w * p.in_h);
    let me = lane_indices(idx * LANES);
    var sum = Value(0.0);
    for (var dy_ = 0u; dy_ < p.size; dy_++) {
        let th = i32(ih + p.pad_top) - i32(dy_);
        if (th < 0 || th % i32(p.stride) != 0 || th / i32(p.stride) >= i32(p.out_h)) {
            continue;
        }
        let oh = u32(th) / p.stride;
        for (var dx_ = 0u; dx_ < p.size; dx_++) {
            let tw = i32(iw + p.pad_left) - i32(dx_);
            if (tw < 0 || tw % i32(p.stride) != 0 || tw / i32(p.stride) >= i32(p.out_w)) {
                continue;
            }
            let ow = u32(tw) / p.stride;
            let o = ((b * p.out_h + oh) * p.out_w + ow) * p.channels + c;
            sum = select(sum, sum + load_dy(o), load_winners(o) == me);
        }
    }
    if (p.leaky != 0u) {
        sum = select(sum * p.leaky_slope, sum, load_pool_in(idx * LANES) > Value(0.0));
    }
    dx[idx] = sum;
}
