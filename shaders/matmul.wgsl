// Matrix product C = A * B (+ bias, + LeakyReLU), the portable design: a 16x16 workgroup
// computes a 64x64 tile of C, staging 16-deep slices of A and B in workgroup memory, each
// invocation accumulating a 4x4 block. Right for real GPUs; correct everywhere.
//
// A(i, k) = a[i * a_row_stride + k * a_col_stride], so A may be a transposed view (the kernel
// gradient of a convolution reads the im2col matrix transposed). B is K x N row-major,
// C is M x N row-major. Every shape is allowed: loads past the edges read 0, stores are masked.
//
// Split K: workgroup z covers k in [z * k_chunk, (z + 1) * k_chunk) and writes its partial
// product to C + z * M * N (reduce.wgsl's sum_parts adds the parts), so that products with a
// small C and a long K (kernel gradients) still fill the device. Without a split, k_chunk = K.

#include "common.wgsl"

struct Params {
    m: u32,
    n: u32,
    k: u32,
    a_row_stride: u32,
    a_col_stride: u32,
    // bit 0: add bias[n]; bit 1: apply LeakyReLU with `slope`
    epilogue: u32,
    slope: f32,
    k_chunk: u32,
    // With conv.in_c > 0, A is the im2col matrix of the NHWC image bound as `a`, never written
    // out: the four-wide entries gather it as they load (see `im2col_quad`). All 0 otherwise.
    conv: Conv,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

const TILE: u32 = 64u;
const DEPTH: u32 = 16u;

var<workgroup> a_tile: array<array<f32, 64>, 16>; // [k][row]
var<workgroup> b_tile: array<array<f32, 64>, 16>; // [k][col]

fn load_a(row: u32, k: u32, k_end: u32) -> f32 {
    if (row < p.m && k < k_end) {
        return a[row * p.a_row_stride + k * p.a_col_stride];
    }
    return 0.0;
}

@compute @workgroup_size(16, 16)
fn matmul_tiled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    let row0 = wg.y * TILE;
    let col0 = wg.x * TILE;
    let k_begin = wg.z * p.k_chunk;
    let k_end = min(p.k, k_begin + p.k_chunk);
    var acc: array<array<f32, 4>, 4>;
    for (var k0 = k_begin; k0 < k_end; k0 += DEPTH) {
        // 1024 elements of each tile, 4 per invocation. Neighbouring invocations walk the
        // unit-stride direction of A, whichever it is, so that loads coalesce.
        for (var i = 0u; i < 4u; i++) {
            let e = li + i * 256u;
            if (p.a_col_stride == 1u) {
                a_tile[e % DEPTH][e / DEPTH] = load_a(row0 + e / DEPTH, k0 + e % DEPTH, k_end);
            } else {
                a_tile[e / TILE][e % TILE] = load_a(row0 + e % TILE, k0 + e / TILE, k_end);
            }
            let kb = k0 + e / TILE;
            let cb = col0 + e % TILE;
            var w = 0.0;
            if (kb < k_end && cb < p.n) {
                w = b[kb * p.n + cb];
            }
            b_tile[e / TILE][e % TILE] = w;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < DEPTH; kk++) {
            var av: array<f32, 4>;
            var bv: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                av[i] = a_tile[kk][lid.y + 16u * i];
                bv[i] = b_tile[kk][lid.x + 16u * i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i][j] = fma(av[i], bv[j], acc[i][j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let row = row0 + lid.y + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            let col = col0 + lid.x + 16u * j;
            if (row < p.m && col < p.n) {
                var v = acc[i][j];
                if ((p.epilogue & 1u) != 0u) {
                    v += bias[col];
                }
                if ((p.epilogue & 2u) != 0u && v < 0.0) {
                    v *= p.slope;
                }
                c[wg.z * p.m * p.n + row * p.n + col] = v;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The four-wide products, for GPUs: the same product where N and the unit-stride length of A
// (K, or M when A is transposed) are multiples of 4, so that every operand moves as vec4:
// loads from memory, reads from workgroup memory, stores. Each invocation keeps a block of C
// in registers, as four-by-four outer products (`outer`):
//   matmul_vec4_wide  128x128 tile, 8x8 per invocation, 16 KiB of workgroup memory;
//   matmul_vec4       64x64 tile, 4x4 per invocation, 8 KiB (small products, small limits).
// Both stage 16-deep slices of A and B, rows of a tile's A stored as [k][row / 4] and B as
// [k][col / 4]; src/ops/matmul.rs picks the tile from the adapter's limits and the shape.
// Every output sums fma over k in ascending order, as matmul_tiled does, so the three entries
// give the same bits. Split K and the epilogue as above. A may also be a convolution's im2col
// matrix that is never written out: the loads gather it from the image (`im2col_quad`).

@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> c4: array<vec4<f32>>;

var<workgroup> wide_a: array<vec4<f32>, 512>; // [16 k][32 quads of rows]
var<workgroup> wide_b: array<vec4<f32>, 512>; // [16 k][32 quads of columns]
var<workgroup> quad_a: array<vec4<f32>, 256>; // [16 k][16 quads of rows]
var<workgroup> quad_b: array<vec4<f32>, 256>; // [16 k][16 quads of columns]

// Four columns tc..tc+4 of row `pixel` of the implicit im2col matrix (conv2d.wgsl's layout:
// pixel = (b * out_h + oh) * out_w + ow, tc = (ky * kernel + kx) * in_c + ci): four channels
// of one input pixel, contiguous in the NHWC image (in_c a multiple of 4); 0 in the padding.
fn im2col_quad(pixel: u32, tc: u32) -> vec4<f32> {
    let ci = tc % p.conv.in_c;
    let tap = tc / p.conv.in_c;
    let ow = pixel % p.conv.out_w;
    let oh = (pixel / p.conv.out_w) % p.conv.out_h;
    let b = pixel / (p.conv.out_w * p.conv.out_h);
    let ih = i32(oh * p.conv.stride + tap / p.conv.kernel) - i32(p.conv.pad_top);
    let iw = i32(ow * p.conv.stride + tap % p.conv.kernel) - i32(p.conv.pad_left);
    if (ih < 0 || ih >= i32(p.conv.in_h) || iw < 0 || iw >= i32(p.conv.in_w)) {
        return vec4<f32>(0.0);
    }
    return a4[(((b * p.conv.in_h + u32(ih)) * p.conv.in_w + u32(iw)) * p.conv.in_c + ci) / 4u];
}

// A(row, k..k+4) for row-major A (K a multiple of 4), 0 past the edges.
fn a_along_k(row: u32, k: u32, k_end: u32) -> vec4<f32> {
    if (row >= p.m || k >= k_end) {
        return vec4<f32>(0.0);
    }
    if (p.conv.in_c != 0u) {
        return im2col_quad(row, k);
    }
    return a4[(row * p.k + k) / 4u];
}

// A(row..row+4, k) for transposed A, stored K x M (M a multiple of 4), 0 past the edges.
fn a_along_m(row: u32, k: u32, k_end: u32) -> vec4<f32> {
    if (row >= p.m || k >= k_end) {
        return vec4<f32>(0.0);
    }
    if (p.conv.in_c != 0u) {
        return im2col_quad(k, row);
    }
    return a4[(k * p.m + row) / 4u];
}

// B(k, col..col+4), 0 past the edges.
fn b_quad(k: u32, col: u32, k_end: u32) -> vec4<f32> {
    if (k < k_end && col < p.n) {
        return b4[(k * p.n + col) / 4u];
    }
    return vec4<f32>(0.0);
}

// The 4x4 block `acc` (acc[r] = row r, four columns) plus the outer product of a and b.
fn outer(a: vec4<f32>, b: vec4<f32>, acc: mat4x4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(fma(vec4<f32>(a.x), b, acc[0]), fma(vec4<f32>(a.y), b, acc[1]),
                       fma(vec4<f32>(a.z), b, acc[2]), fma(vec4<f32>(a.w), b, acc[3]));
}

// Rows row..row+4 of a block, columns col..col+4, with the epilogue; masked at the edges.
fn store_block(part: u32, row: u32, col: u32, block: mat4x4<f32>) {
    if (col >= p.n) {
        return;
    }
    var extra = vec4<f32>(0.0);
    if ((p.epilogue & 1u) != 0u) {
        extra = bias4[col / 4u];
    }
    for (var r = 0u; r < 4u; r++) {
        if (row + r < p.m) {
            var v = block[r];
            if ((p.epilogue & 1u) != 0u) {
                v += extra;
            }
            if ((p.epilogue & 2u) != 0u) {
                v = select(v, v * p.slope, v < vec4<f32>(0.0));
            }
            c4[((part * p.m + row + r) * p.n + col) / 4u] = v;
        }
    }
}

@compute @workgroup_size(16, 16)
fn matmul_vec4_wide(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                    @builtin(local_invocation_index) li: u32) {
    let row0 = wg.y * 128u;
    let col0 = wg.x * 128u;
    let k_begin = wg.z * p.k_chunk;
    let k_end = min(p.k, k_begin + p.k_chunk);
    // Rows row0 + 4 * ty + {0..3} and + 64; columns likewise with tx: neighbouring
    // invocations store neighbouring quads.
    var acc00 = mat4x4<f32>();
    var acc01 = mat4x4<f32>();
    var acc10 = mat4x4<f32>();
    var acc11 = mat4x4<f32>();
    for (var k0 = k_begin; k0 < k_end; k0 += 16u) {
        for (var t = 0u; t < 2u; t++) {
            let e = li + 256u * t;
            if (p.a_col_stride == 1u) {
                // 128 rows x 4 quads of k, turned to [k][row] on the way in.
                let row = e / 4u;
                let kq = e % 4u;
                let v = a_along_k(row0 + row, k0 + 4u * kq, k_end);
                for (var i = 0u; i < 4u; i++) {
                    wide_a[(4u * kq + i) * 32u + row / 4u][row % 4u] = v[i];
                }
            } else {
                wide_a[e] = a_along_m(row0 + 4u * (e % 32u), k0 + e / 32u, k_end);
            }
            wide_b[e] = b_quad(k0 + e / 32u, col0 + 4u * (e % 32u), k_end);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < 16u; kk++) {
            let a0 = wide_a[kk * 32u + lid.y];
            let a1 = wide_a[kk * 32u + 16u + lid.y];
            let b0 = wide_b[kk * 32u + lid.x];
            let b1 = wide_b[kk * 32u + 16u + lid.x];
            acc00 = outer(a0, b0, acc00);
            acc01 = outer(a0, b1, acc01);
            acc10 = outer(a1, b0, acc10);
            acc11 = outer(a1, b1, acc11);
        }
        workgroupBarrier();
    }
    let row = row0 + 4u * lid.y;
    let col = col0 + 4u * lid.x;
    store_block(wg.z, row, col, acc00);
    store_block(wg.z, row, col + 64u, acc01);
    store_block(wg.z, row + 64u, col, acc10);
    store_block(wg.z, row + 64u, col + 64u, acc11);
}

@compute @workgroup_size(16, 16)
fn matmul_vec4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let row0 = wg.y * 64u;
    let col0 = wg.x * 64u;
    let k_begin = wg.z * p.k_chunk;
    let k_end = min(p.k, k_begin + p.k_chunk);
    var acc = mat4x4<f32>();
    for (var k0 = k_begin; k0 < k_end; k0 += 16u) {
        if (p.a_col_stride == 1u) {
            // 64 rows x 4 quads of k, turned to [k][row] on the way in.
            let row = li / 4u;
            let kq = li % 4u;
            let v = a_along_k(row0 + row, k0 + 4u * kq, k_end);
            for (var i = 0u; i < 4u; i++) {
                quad_a[(4u * kq + i) * 16u + row / 4u][row % 4u] = v[i];
            }
        } else {
            quad_a[li] = a_along_m(row0 + 4u * (li % 16u), k0 + li / 16u, k_end);
        }
        quad_b[li] = b_quad(k0 + li / 16u, col0 + 4u * (li % 16u), k_end);
        workgroupBarrier();
        for (var kk = 0u; kk < 16u; kk++) {
            acc = outer(quad_a[kk * 16u + lid.y], quad_b[kk * 16u + lid.x], acc);
        }
        workgroupBarrier();
    }
    store_block(wg.z, row0 + 4u * lid.y, col0 + 4u * lid.x, acc);
}
