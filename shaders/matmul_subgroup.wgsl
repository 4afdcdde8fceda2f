// Matrix product C = A * B (+ bias, + LeakyReLU) for CPU Vulkan drivers (lavapipe).
//
// llvmpipe runs a subgroup of 8 invocations as one SIMD vector but turns every buffer or
// workgroup-memory access into a loop over the lanes, so what pays is arithmetic per load,
// not data reuse through workgroup memory. A workgroup here is one 8-lane subgroup computing
// 16 rows x 64 columns of C: per step of k, lane l loads A(row0 + l, k) and A(row0 + 8 + l, k)
// and two vec4s of B, and the A values reach every lane by subgroupBroadcast. Each lane keeps
// 16 rows x 2 vec4 accumulators in registers.
//
// Same parameters as matmul.wgsl, but N must be a multiple of 4 (B, bias and C are read as
// vec4 rows) and the subgroup at least 8 lanes wide. M and K are free.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    a_row_stride: u32,
    a_col_stride: u32,
    epilogue: u32,
    slope: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> c: array<vec4<f32>>;

const ROWS: u32 = 16u;
const VECS: u32 = 2u; // vec4 columns per lane

fn accumulate_row(acc: ptr<function, array<vec4<f32>, 32>>, r: u32, a_rk: f32,
                  bv: ptr<function, array<vec4<f32>, 2>>) {
    let s = vec4<f32>(a_rk);
    (*acc)[r * VECS] = fma(s, (*bv)[0], (*acc)[r * VECS]);
    (*acc)[r * VECS + 1u] = fma(s, (*bv)[1], (*acc)[r * VECS + 1u]);
}

@compute @workgroup_size(8)
fn matmul_subgroup(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let row0 = wg.y * ROWS;
    let n4 = p.n / 4u;
    let col4 = (wg.x * 8u + lane) * VECS;
    let row_lo = row0 + lane;
    let row_hi = row0 + 8u + lane;
    var acc: array<vec4<f32>, 32>;
    for (var k = 0u; k < p.k; k++) {
        var a_lo = 0.0;
        var a_hi = 0.0;
        if (row_lo < p.m) {
            a_lo = a[row_lo * p.a_row_stride + k * p.a_col_stride];
        }
        if (row_hi < p.m) {
            a_hi = a[row_hi * p.a_row_stride + k * p.a_col_stride];
        }
        var bv: array<vec4<f32>, 2>;
        for (var j = 0u; j < VECS; j++) {
            if (col4 + j < n4) {
                bv[j] = b[k * n4 + col4 + j];
            }
        }
        accumulate_row(&acc, 0u, subgroupBroadcast(a_lo, 0u), &bv);
        accumulate_row(&acc, 1u, subgroupBroadcast(a_lo, 1u), &bv);
        accumulate_row(&acc, 2u, subgroupBroadcast(a_lo, 2u), &bv);
        accumulate_row(&acc, 3u, subgroupBroadcast(a_lo, 3u), &bv);
        accumulate_row(&acc, 4u, subgroupBroadcast(a_lo, 4u), &bv);
        accumulate_row(&acc, 5u, subgroupBroadcast(a_lo, 5u), &bv);
        accumulate_row(&acc, 6u, subgroupBroadcast(a_lo, 6u), &bv);
        accumulate_row(&acc, 7u, subgroupBroadcast(a_lo, 7u), &bv);
        accumulate_row(&acc, 8u, subgroupBroadcast(a_hi, 0u), &bv);
        accumulate_row(&acc, 9u, subgroupBroadcast(a_hi, 1u), &bv);
        accumulate_row(&acc, 10u, subgroupBroadcast(a_hi, 2u), &bv);
        accumulate_row(&acc, 11u, subgroupBroadcast(a_hi, 3u), &bv);
        accumulate_row(&acc, 12u, subgroupBroadcast(a_hi, 4u), &bv);
        accumulate_row(&acc, 13u, subgroupBroadcast(a_hi, 5u), &bv);
        accumulate_row(&acc, 14u, subgroupBroadcast(a_hi, 6u), &bv);
        accumulate_row(&acc, 15u, subgroupBroadcast(a_hi, 7u), &bv);
    }
    for (var r = 0u; r < ROWS; r++) {
        let row = row0 + r;
        for (var j = 0u; j < VECS; j++) {
            if (row < p.m && col4 + j < n4) {
                var v = acc[r * VECS + j];
                if ((p.epilogue & 1u) != 0u) {
                    v += bias[col4 + j];
                }
                if ((p.epilogue & 2u) != 0u) {
                    v = select(v, v * p.slope, v < vec4<f32>(0.0));
                }
                c[row * n4 + col4 + j] = v;
            }
        }
    }
}
