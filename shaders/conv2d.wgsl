// Convolution as a matrix product, NHWC, TensorFlow "same" padding (the extra row and column
// of padding, when the total is odd, go after: bottom and right) or "valid" (no padding:
// pad_top = pad_left = 0; the host gives out_h and out_w, and input pixels no output reads
// get a zero gradient).
//
// im2col: cols[m, (ky * kernel + kx) * in_c + ci] = x[b, oh*stride + ky - pad_top,
//         ow*stride + kx - pad_left, ci] (0 outside the image), with m = (b * out_h + oh) * out_w + ow.
//         The column order matches a Keras kernel (kh, kw, in, out) read as a (K, out) matrix, so
//         forward is cols * kernel and the kernel gradient is cols^T * dy.
// col2im: the adjoint, gathered: dx[b, ih, iw, ci] sums dcols over every (output, tap) that read
//         that pixel, in a fixed order (no atomics). The taps that read input row ih are
//         ky = (ih + pad_top) mod stride, then every stride-th (output row (ih + pad_top - ky) /
//         stride, when below out_h): the loops step through those alone, in ascending order,
//         instead of testing all kernel^2 taps with divisions.

#include "common.wgsl"

@group(0) @binding(0) var<uniform> p: Conv;

// One body per entry for both families (common.wgsl): a buffer-fed invocation handles one
// element, a texture-fed one four input channels of a tap (one texel; in_c a multiple of 4),
// with the same arithmetic in the same order.
#if buffers
@group(0) @binding(1) var<storage, read> image: array<f32>;
@group(0) @binding(1) var<storage, read> dcols: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
fn load_image(at: u32) -> Value {
    return image[at];
}
fn load_dcols(at: u32) -> Value {
    return dcols[at];
}
#endif
#if textures
@group(0) @binding(1) var image_tex: texture_2d<f32>;
@group(0) @binding(1) var dcols_tex: texture_2d<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<vec4<f32>>;
fn load_image(at: u32) -> Value {
    return texel(image_tex, at / 4u);
}
fn load_dcols(at: u32) -> Value {
    return texel(dcols_tex, at / 4u);
}
#endif

// out = cols (M x K), LANES columns an invocation.
@compute @workgroup_size(256)
fn im2col(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = flat_index(wg, nwg, lid, 256u);
    let k_lanes = p.kernel * p.kernel * p.in_c / LANES;
    if (idx >= p.batch * p.out_h * p.out_w * k_lanes) {
        return;
    }
    let m = idx / k_lanes;
    let kk = (idx % k_lanes) * LANES;
    let ci = kk % p.in_c;
    let kx = (kk / p.in_c) % p.kernel;
    let ky = kk / (p.in_c * p.kernel);
    let ow = m % p.out_w;
    let oh = (m / p.out_w) % p.out_h;
    let b = m / (p.out_w * p.out_h);
    let ih = i32(oh * p.stride + ky) - i32(p.pad_top);
    let iw = i32(ow * p.stride + kx) - i32(p.pad_left);
    var v = Value(0.0);
    if (ih >= 0 && ih < i32(p.in_h) && iw >= 0 && iw < i32(p.in_w)) {
        v = load_image(((b * p.in_h + u32(ih)) * p.in_w + u32(iw)) * p.in_c + ci);
    }
    out[idx] = v;
}

// out = dimage (NHWC), LANES channels an invocation.
@compute @workgroup_size(256)
fn col2im(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = flat_index(wg, nwg, lid, 256u);
    let c_lanes = p.in_c / LANES;
    if (idx >= p.batch * p.in_h * p.in_w * c_lanes) {
        return;
    }
    let ci = (idx % c_lanes) * LANES;
    let iw = (idx / c_lanes) % p.in_w;
    let ih = (idx / (c_lanes * p.in_w)) % p.in_h;
    let b = idx / (c_lanes * p.in_w * p.in_h);
    let k_len = p.kernel * p.kernel * p.in_c;
    let th = ih + p.pad_top;
    let tw = iw + p.pad_left;
    var sum = Value(0.0);
    for (var ky = th % p.stride; ky < p.kernel && ky <= th; ky += p.stride) {
        let oh = (th - ky) / p.stride;
        if (oh >= p.out_h) {
            continue;
        }
        for (var kx = tw % p.stride; kx < p.kernel && kx <= tw; kx += p.stride) {
            let ow = (tw - kx) / p.stride;
            if (ow < p.out_w) {
                let m = (b * p.out_h + oh) * p.out_w + ow;
                sum += load_dcols(m * k_len + (ky * p.kernel + kx) * p.in_c + ci);
            }
        }
    }
    out[idx] = sum;
}
