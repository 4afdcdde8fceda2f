// Matrix product C = A * B (+ bias, + LeakyReLU) for CPU Vulkan drivers (lavapipe).
//
// llvmpipe runs an 8-invocation subgroup as one 8-wide SIMD vector. Arithmetic is fast there
// (about 50 GFLOP/s of register-only FMAs on our 2 cores), but every load from a storage
// buffer or workgroup memory is slow: about 250 ns per vec4 load instruction per subgroup,
// whether or not the lanes share the address (measured with Mesa 22.3.6). So the kernel does
// as many FMAs per load instruction as registers allow and shares loaded values through
// subgroupBroadcast, a register shuffle (about 2 ns): a workgroup is one 8-lane subgroup
// computing 32 rows x 64 columns of C. Each lane loads A for 4 of the rows (one vec4 covering
// four steps of k when A is row-major with K a multiple of 4, else one scalar per step) and
// 2 vec4s of B per step; every A value reaches all lanes by broadcast, and each lane keeps
// 32 rows x 2 vec4 accumulators.
//
// The accumulators are only ever indexed by constants (the lines below are written out):
// lavapipe keeps an array that a loop variable indexes in memory, where every access is a
// slow load again. Rows past M and columns past N are clamped onto real ones instead of
// branching in the inner loop, and their results dropped when storing.
//
// Same parameters as matmul.wgsl (split K over workgroup z included; the vec4 path needs
// k_chunk and K multiples of 4), but N must be a multiple of 4 (B, bias and C are read as vec4
// rows) and subgroups at least 8 lanes wide.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    a_row_stride: u32,
    a_col_stride: u32,
    epilogue: u32,
    slope: f32,
    k_chunk: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> c: array<vec4<f32>>;

// One step of k: row r of the tile gets A(r, k) (from lane r % 8 of a{r / 8}) times this lane's B.
fn step(acc: ptr<function, array<vec4<f32>, 64>>, a0: f32, a1: f32, a2: f32, a3: f32, b0: vec4<f32>, b1: vec4<f32>) {
    let s0 = vec4<f32>(subgroupBroadcast(a0, 0u));
    (*acc)[0] = fma(s0, b0, (*acc)[0]);
    (*acc)[1] = fma(s0, b1, (*acc)[1]);
    let s1 = vec4<f32>(subgroupBroadcast(a0, 1u));
    (*acc)[2] = fma(s1, b0, (*acc)[2]);
    (*acc)[3] = fma(s1, b1, (*acc)[3]);
    let s2 = vec4<f32>(subgroupBroadcast(a0, 2u));
    (*acc)[4] = fma(s2, b0, (*acc)[4]);
    (*acc)[5] = fma(s2, b1, (*acc)[5]);
    let s3 = vec4<f32>(subgroupBroadcast(a0, 3u));
    (*acc)[6] = fma(s3, b0, (*acc)[6]);
    (*acc)[7] = fma(s3, b1, (*acc)[7]);
    let s4 = vec4<f32>(subgroupBroadcast(a0, 4u));
    (*acc)[8] = fma(s4, b0, (*acc)[8]);
    (*acc)[9] = fma(s4, b1, (*acc)[9]);
    let s5 = vec4<f32>(subgroupBroadcast(a0, 5u));
    (*acc)[10] = fma(s5, b0, (*acc)[10]);
    (*acc)[11] = fma(s5, b1, (*acc)[11]);
    let s6 = vec4<f32>(subgroupBroadcast(a0, 6u));
    (*acc)[12] = fma(s6, b0, (*acc)[12]);
    (*acc)[13] = fma(s6, b1, (*acc)[13]);
    let s7 = vec4<f32>(subgroupBroadcast(a0, 7u));
    (*acc)[14] = fma(s7, b0, (*acc)[14]);
    (*acc)[15] = fma(s7, b1, (*acc)[15]);
    let s8 = vec4<f32>(subgroupBroadcast(a1, 0u));
    (*acc)[16] = fma(s8, b0, (*acc)[16]);
    (*acc)[17] = fma(s8, b1, (*acc)[17]);
    let s9 = vec4<f32>(subgroupBroadcast(a1, 1u));
    (*acc)[18] = fma(s9, b0, (*acc)[18]);
    (*acc)[19] = fma(s9, b1, (*acc)[19]);
    let s10 = vec4<f32>(subgroupBroadcast(a1, 2u));
    (*acc)[20] = fma(s10, b0, (*acc)[20]);
    (*acc)[21] = fma(s10, b1, (*acc)[21]);
    let s11 = vec4<f32>(subgroupBroadcast(a1, 3u));
    (*acc)[22] = fma(s11, b0, (*acc)[22]);
    (*acc)[23] = fma(s11, b1, (*acc)[23]);
    let s12 = vec4<f32>(subgroupBroadcast(a1, 4u));
    (*acc)[24] = fma(s12, b0, (*acc)[24]);
    (*acc)[25] = fma(s12, b1, (*acc)[25]);
    let s13 = vec4<f32>(subgroupBroadcast(a1, 5u));
    (*acc)[26] = fma(s13, b0, (*acc)[26]);
    (*acc)[27] = fma(s13, b1, (*acc)[27]);
    let s14 = vec4<f32>(subgroupBroadcast(a1, 6u));
    (*acc)[28] = fma(s14, b0, (*acc)[28]);
    (*acc)[29] = fma(s14, b1, (*acc)[29]);
    let s15 = vec4<f32>(subgroupBroadcast(a1, 7u));
    (*acc)[30] = fma(s15, b0, (*acc)[30]);
    (*acc)[31] = fma(s15, b1, (*acc)[31]);
    let s16 = vec4<f32>(subgroupBroadcast(a2, 0u));
    (*acc)[32] = fma(s16, b0, (*acc)[32]);
    (*acc)[33] = fma(s16, b1, (*acc)[33]);
    let s17 = vec4<f32>(subgroupBroadcast(a2, 1u));
    (*acc)[34] = fma(s17, b0, (*acc)[34]);
    (*acc)[35] = fma(s17, b1, (*acc)[35]);
    let s18 = vec4<f32>(subgroupBroadcast(a2, 2u));
    (*acc)[36] = fma(s18, b0, (*acc)[36]);
    (*acc)[37] = fma(s18, b1, (*acc)[37]);
    let s19 = vec4<f32>(subgroupBroadcast(a2, 3u));
    (*acc)[38] = fma(s19, b0, (*acc)[38]);
    (*acc)[39] = fma(s19, b1, (*acc)[39]);
    let s20 = vec4<f32>(subgroupBroadcast(a2, 4u));
    (*acc)[40] = fma(s20, b0, (*acc)[40]);
    (*acc)[41] = fma(s20, b1, (*acc)[41]);
    let s21 = vec4<f32>(subgroupBroadcast(a2, 5u));
    (*acc)[42] = fma(s21, b0, (*acc)[42]);
    (*acc)[43] = fma(s21, b1, (*acc)[43]);
    let s22 = vec4<f32>(subgroupBroadcast(a2, 6u));
    (*acc)[44] = fma(s22, b0, (*acc)[44]);
    (*acc)[45] = fma(s22, b1, (*acc)[45]);
    let s23 = vec4<f32>(subgroupBroadcast(a2, 7u));
    (*acc)[46] = fma(s23, b0, (*acc)[46]);
    (*acc)[47] = fma(s23, b1, (*acc)[47]);
    let s24 = vec4<f32>(subgroupBroadcast(a3, 0u));
    (*acc)[48] = fma(s24, b0, (*acc)[48]);
    (*acc)[49] = fma(s24, b1, (*acc)[49]);
    let s25 = vec4<f32>(subgroupBroadcast(a3, 1u));
    (*acc)[50] = fma(s25, b0, (*acc)[50]);
    (*acc)[51] = fma(s25, b1, (*acc)[51]);
    let s26 = vec4<f32>(subgroupBroadcast(a3, 2u));
    (*acc)[52] = fma(s26, b0, (*acc)[52]);
    (*acc)[53] = fma(s26, b1, (*acc)[53]);
    let s27 = vec4<f32>(subgroupBroadcast(a3, 3u));
    (*acc)[54] = fma(s27, b0, (*acc)[54]);
    (*acc)[55] = fma(s27, b1, (*acc)[55]);
    let s28 = vec4<f32>(subgroupBroadcast(a3, 4u));
    (*acc)[56] = fma(s28, b0, (*acc)[56]);
    (*acc)[57] = fma(s28, b1, (*acc)[57]);
    let s29 = vec4<f32>(subgroupBroadcast(a3, 5u));
    (*acc)[58] = fma(s29, b0, (*acc)[58]);
    (*acc)[59] = fma(s29, b1, (*acc)[59]);
    let s30 = vec4<f32>(subgroupBroadcast(a3, 6u));
    (*acc)[60] = fma(s30, b0, (*acc)[60]);
    (*acc)[61] = fma(s30, b1, (*acc)[61]);
    let s31 = vec4<f32>(subgroupBroadcast(a3, 7u));
    (*acc)[62] = fma(s31, b0, (*acc)[62]);
    (*acc)[63] = fma(s31, b1, (*acc)[63]);
}

fn epilogue(v: vec4<f32>, col4: u32) -> vec4<f32> {
    var r = v;
    if ((p.epilogue & 1u) != 0u) {
        r += bias[col4];
    }
    if ((p.epilogue & 2u) != 0u) {
        r = select(r, r * p.slope, r < vec4<f32>(0.0));
    }
    return r;
}

fn store_vec(part: u32, row: u32, col4: u32, v: vec4<f32>) {
    if (row < p.m && col4 < p.n / 4u) {
        c[(part * p.m + row) * (p.n / 4u) + col4] = epilogue(v, col4);
    }
}

fn store_tile(part: u32, row0: u32, col4: u32, acc: ptr<function, array<vec4<f32>, 64>>) {
    store_vec(part, row0 + 0u, col4 + 0u, (*acc)[0]);
    store_vec(part, row0 + 0u, col4 + 1u, (*acc)[1]);
    store_vec(part, row0 + 1u, col4 + 0u, (*acc)[2]);
    store_vec(part, row0 + 1u, col4 + 1u, (*acc)[3]);
    store_vec(part, row0 + 2u, col4 + 0u, (*acc)[4]);
    store_vec(part, row0 + 2u, col4 + 1u, (*acc)[5]);
    store_vec(part, row0 + 3u, col4 + 0u, (*acc)[6]);
    store_vec(part, row0 + 3u, col4 + 1u, (*acc)[7]);
    store_vec(part, row0 + 4u, col4 + 0u, (*acc)[8]);
    store_vec(part, row0 + 4u, col4 + 1u, (*acc)[9]);
    store_vec(part, row0 + 5u, col4 + 0u, (*acc)[10]);
    store_vec(part, row0 + 5u, col4 + 1u, (*acc)[11]);
    store_vec(part, row0 + 6u, col4 + 0u, (*acc)[12]);
    store_vec(part, row0 + 6u, col4 + 1u, (*acc)[13]);
    store_vec(part, row0 + 7u, col4 + 0u, (*acc)[14]);
    store_vec(part, row0 + 7u, col4 + 1u, (*acc)[15]);
    store_vec(part, row0 + 8u, col4 + 0u, (*acc)[16]);
    store_vec(part, row0 + 8u, col4 + 1u, (*acc)[17]);
    store_vec(part, row0 + 9u, col4 + 0u, (*acc)[18]);
    store_vec(part, row0 + 9u, col4 + 1u, (*acc)[19]);
    store_vec(part, row0 + 10u, col4 + 0u, (*acc)[20]);
    store_vec(part, row0 + 10u, col4 + 1u, (*acc)[21]);
    store_vec(part, row0 + 11u, col4 + 0u, (*acc)[22]);
    store_vec(part, row0 + 11u, col4 + 1u, (*acc)[23]);
    store_vec(part, row0 + 12u, col4 + 0u, (*acc)[24]);
    store_vec(part, row0 + 12u, col4 + 1u, (*acc)[25]);
    store_vec(part, row0 + 13u, col4 + 0u, (*acc)[26]);
    store_vec(part, row0 + 13u, col4 + 1u, (*acc)[27]);
    store_vec(part, row0 + 14u, col4 + 0u, (*acc)[28]);
    store_vec(part, row0 + 14u, col4 + 1u, (*acc)[29]);
    store_vec(part, row0 + 15u, col4 + 0u, (*acc)[30]);
    store_vec(part, row0 + 15u, col4 + 1u, (*acc)[31]);
    store_vec(part, row0 + 16u, col4 + 0u, (*acc)[32]);
    store_vec(part, row0 + 16u, col4 + 1u, (*acc)[33]);
    store_vec(part, row0 + 17u, col4 + 0u, (*acc)[34]);
    store_vec(part, row0 + 17u, col4 + 1u, (*acc)[35]);
    store_vec(part, row0 + 18u, col4 + 0u, (*acc)[36]);
    store_vec(part, row0 + 18u, col4 + 1u, (*acc)[37]);
    store_vec(part, row0 + 19u, col4 + 0u, (*acc)[38]);
    store_vec(part, row0 + 19u, col4 + 1u, (*acc)[39]);
    store_vec(part, row0 + 20u, col4 + 0u, (*acc)[40]);
    store_vec(part, row0 + 20u, col4 + 1u, (*acc)[41]);
    store_vec(part, row0 + 21u, col4 + 0u, (*acc)[42]);
    store_vec(part, row0 + 21u, col4 + 1u, (*acc)[43]);
    store_vec(part, row0 + 22u, col4 + 0u, (*acc)[44]);
    store_vec(part, row0 + 22u, col4 + 1u, (*acc)[45]);
    store_vec(part, row0 + 23u, col4 + 0u, (*acc)[46]);
    store_vec(part, row0 + 23u, col4 + 1u, (*acc)[47]);
    store_vec(part, row0 + 24u, col4 + 0u, (*acc)[48]);
    store_vec(part, row0 + 24u, col4 + 1u, (*acc)[49]);
    store_vec(part, row0 + 25u, col4 + 0u, (*acc)[50]);
    store_vec(part, row0 + 25u, col4 + 1u, (*acc)[51]);
    store_vec(part, row0 + 26u, col4 + 0u, (*acc)[52]);
    store_vec(part, row0 + 26u, col4 + 1u, (*acc)[53]);
    store_vec(part, row0 + 27u, col4 + 0u, (*acc)[54]);
    store_vec(part, row0 + 27u, col4 + 1u, (*acc)[55]);
    store_vec(part, row0 + 28u, col4 + 0u, (*acc)[56]);
    store_vec(part, row0 + 28u, col4 + 1u, (*acc)[57]);
    store_vec(part, row0 + 29u, col4 + 0u, (*acc)[58]);
    store_vec(part, row0 + 29u, col4 + 1u, (*acc)[59]);
    store_vec(part, row0 + 30u, col4 + 0u, (*acc)[60]);
    store_vec(part, row0 + 30u, col4 + 1u, (*acc)[61]);
    store_vec(part, row0 + 31u, col4 + 0u, (*acc)[62]);
    store_vec(part, row0 + 31u, col4 + 1u, (*acc)[63]);
}

// A row-major, K and the row stride multiples of 4: one vec4 load of A per four steps of k.
@compute @workgroup_size(8)
fn matmul_subgroup(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let row0 = wg.y * 32u;
    let n4 = p.n / 4u;
    let col4 = (wg.x * 8u + lane) * 2u;
    let a_at0 = min(row0 + 0u + lane, p.m - 1u) * (p.a_row_stride / 4u);
    let a_at1 = min(row0 + 8u + lane, p.m - 1u) * (p.a_row_stride / 4u);
    let a_at2 = min(row0 + 16u + lane, p.m - 1u) * (p.a_row_stride / 4u);
    let a_at3 = min(row0 + 24u + lane, p.m - 1u) * (p.a_row_stride / 4u);
    let b_at0 = min(col4 + 0u, n4 - 1u);
    let b_at1 = min(col4 + 1u, n4 - 1u);
    let k_begin = wg.z * p.k_chunk;
    let k_end = min(p.k, k_begin + p.k_chunk);
    var acc: array<vec4<f32>, 64>;
    for (var k4 = k_begin / 4u; k4 < k_end / 4u; k4++) {
        let a0 = a4[a_at0 + k4];
        let a1 = a4[a_at1 + k4];
        let a2 = a4[a_at2 + k4];
        let a3 = a4[a_at3 + k4];
        let k0 = 4u * k4 + 0u;
        step(&acc, a0.x, a1.x, a2.x, a3.x, b[k0 * n4 + b_at0], b[k0 * n4 + b_at1]);
        let k1 = 4u * k4 + 1u;
        step(&acc, a0.y, a1.y, a2.y, a3.y, b[k1 * n4 + b_at0], b[k1 * n4 + b_at1]);
        let k2 = 4u * k4 + 2u;
        step(&acc, a0.z, a1.z, a2.z, a3.z, b[k2 * n4 + b_at0], b[k2 * n4 + b_at1]);
        let k3 = 4u * k4 + 3u;
        step(&acc, a0.w, a1.w, a2.w, a3.w, b[k3 * n4 + b_at0], b[k3 * n4 + b_at1]);
    }
    store_tile(wg.z, row0, col4, &acc);
}

// Any layout of A: one scalar load per step of k.
@compute @workgroup_size(8)
fn matmul_subgroup_strided(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let row0 = wg.y * 32u;
    let n4 = p.n / 4u;
    let col4 = (wg.x * 8u + lane) * 2u;
    let a_at0 = min(row0 + 0u + lane, p.m - 1u) * p.a_row_stride;
    let a_at1 = min(row0 + 8u + lane, p.m - 1u) * p.a_row_stride;
    let a_at2 = min(row0 + 16u + lane, p.m - 1u) * p.a_row_stride;
    let a_at3 = min(row0 + 24u + lane, p.m - 1u) * p.a_row_stride;
    let b_at0 = min(col4 + 0u, n4 - 1u);
    let b_at1 = min(col4 + 1u, n4 - 1u);
    let k_begin = wg.z * p.k_chunk;
    let k_end = min(p.k, k_begin + p.k_chunk);
    var acc: array<vec4<f32>, 64>;
    for (var k = k_begin; k < k_end; k++) {
        step(&acc, a[a_at0 + k * p.a_col_stride], a[a_at1 + k * p.a_col_stride], a[a_at2 + k * p.a_col_stride], a[a_at3 + k * p.a_col_stride], b[k * n4 + b_at0], b[k * n4 + b_at1]);
    }
    store_tile(wg.z, row0, col4, &acc);
}
