// Convolution as a matrix product, NHWC, TensorFlow "same" padding (the extra row and column
// of padding, when the total is odd, go after: bottom and right).
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
@group(0) @binding(1) var<storage, read> image: array<f32>;
@group(0) @binding(2) var<storage, read_write> cols: array<f32>;

@group(0) @binding(1) var<storage, read> dcols: array<f32>;
@group(0) @binding(2) var<storage, read_write> dimage: array<f32>;

@compute @workgroup_size(256)
fn im2col(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = flat_index(wg, nwg, lid, 256u);
    let k_len = p.kernel * p.kernel * p.in_c;
    if (idx >= p.batch * p.out_h * p.out_w * k_len) {
        return;
    }
    let m = idx / k_len;
    let kk = idx % k_len;
    let ci = kk % p.in_c;
    let kx = (kk / p.in_c) % p.kernel;
    let ky = kk / (p.in_c * p.kernel);
    let ow = m % p.out_w;
    let oh = (m / p.out_w) % p.out_h;
    let b = m / (p.out_w * p.out_h);
    let ih = i32(oh * p.stride + ky) - i32(p.pad_top);
    let iw = i32(ow * p.stride + kx) - i32(p.pad_left);
    var v = 0.0;
    if (ih >= 0 && ih < i32(p.in_h) && iw >= 0 && iw < i32(p.in_w)) {
        v = image[((b * p.in_h + u32(ih)) * p.in_w + u32(iw)) * p.in_c + ci];
    }
    cols[idx] = v;
}

@compute @workgroup_size(256)
fn col2im(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = flat_index(wg, nwg, lid, 256u);
    if (idx >= p.batch * p.in_h * p.in_w * p.in_c) {
        return;
    }
    let ci = idx % p.in_c;
    let iw = (idx / p.in_c) % p.in_w;
    let ih = (idx / (p.in_c * p.in_w)) % p.in_h;
    let b = idx / (p.in_c * p.in_w * p.in_h);
    let k_len = p.kernel * p.kernel * p.in_c;
    let th = ih + p.pad_top;
    let tw = iw + p.pad_left;
    var sum = 0.0;
    for (var ky = th % p.stride; ky < p.kernel && ky <= th; ky += p.stride) {
        let oh = (th - ky) / p.stride;
        if (oh >= p.out_h) {
            continue;
        }
        for (var kx = tw % p.stride; kx < p.kernel && kx <= tw; kx += p.stride) {
            let ow = (tw - kx) / p.stride;
            if (ow < p.out_w) {
                let m = (b * p.out_h + oh) * p.out_w + ow;
                sum += dcols[m * k_len + (ky * p.kernel + kx) * p.in_c + ci];
            }
        }
    }
    dimage[idx] = sum;
}

// Texture-fed entries for CPU drivers (lavapipe), where a texel fetch costs a fraction of a
// storage-buffer load (see matmul_texture.wgsl): in_c a multiple of 4, one invocation per
// four channels (one texel), the same arithmetic in the same order as above.
@group(0) @binding(1) var image_tex: texture_2d<f32>;
@group(0) @binding(1) var dcols_tex: texture_2d<f32>;
@group(0) @binding(2) var<storage, read_write> out4: array<vec4<f32>>;

@compute @workgroup_size(256)
fn im2col_texture(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = flat_index(wg, nwg, lid, 256u);
    let k4_len = p.kernel * p.kernel * p.in_c / 4u;
    if (idx >= p.batch * p.out_h * p.out_w * k4_len) {
        return;
    }
    let m = idx / k4_len;
    let kk = (idx % k4_len) * 4u;
    let ci = kk % p.in_c;
    let kx = (kk / p.in_c) % p.kernel;
    let ky = kk / (p.in_c * p.kernel);
    let ow = m % p.out_w;
    let oh = (m / p.out_w) % p.out_h;
    let b = m / (p.out_w * p.out_h);
    let ih = i32(oh * p.stride + ky) - i32(p.pad_top);
    let iw = i32(ow * p.stride + kx) - i32(p.pad_left);
    var v = vec4<f32>(0.0);
    if (ih >= 0 && ih < i32(p.in_h) && iw >= 0 && iw < i32(p.in_w)) {
        v = texel(image_tex, (((b * p.in_h + u32(ih)) * p.in_w + u32(iw)) * p.in_c + ci) / 4u);
    }
    out4[idx] = v;
}

@compute @workgroup_size(256)
fn col2im_texture(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = flat_index(wg, nwg, lid, 256u);
    let c4 = p.in_c / 4u;
    if (idx >= p.batch * p.in_h * p.in_w * c4) {
        return;
    }
    let ci = (idx % c4) * 4u;
    let iw = (idx / c4) % p.in_w;
    let ih = (idx / (c4 * p.in_w)) % p.in_h;
    let b = idx / (c4 * p.in_w * p.in_h);
    let k_len = p.kernel * p.kernel * p.in_c;
    let th = ih + p.pad_top;
    let tw = iw + p.pad_left;
    var sum = vec4<f32>(0.0);
    for (var ky = th % p.stride; ky < p.kernel && ky <= th; ky += p.stride) {
        let oh = (th - ky) / p.stride;
        if (oh >= p.out_h) {
            continue;
        }
        for (var kx = tw % p.stride; kx < p.kernel && kx <= tw; kx += p.stride) {
            let ow = (tw - kx) / p.stride;
            if (ow < p.out_w) {
                let m = (b * p.out_h + oh) * p.out_w + ow;
                sum += texel(dcols_tex, (m * k_len + (ky * p.kernel + kx) * p.in_c + ci) / 4u);
            }
        }
    }
    out4[idx] = sum;
}
