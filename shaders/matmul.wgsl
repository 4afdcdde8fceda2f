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
