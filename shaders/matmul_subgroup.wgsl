// Matrix product C = A * B (+ bias, + LeakyReLU) for CPU Vulkan drivers (lavapipe), reading
// A from a storage buffer one scalar per step of k, in any layout: the fallback for shapes
// that matmul_texture.wgsl cannot hold in texels (K, or M for transposed A, not a multiple
// of 4: the first convolution's products, K = 9).
//
// llvmpipe runs an 8-invocation subgroup as one 8-wide SIMD vector. Arithmetic is fast there,
// but every load from a storage buffer is slow (about 70 ns per scalar and 250 ns per vec4
// per subgroup, Mesa 22.3.6), so the kernel loads as few floats per FMA as registers allow
// and shares loaded values through subgroupBroadcast, a register shuffle: a workgroup is one
// 8-lane subgroup computing 64 rows x 64 columns of C. Each lane loads A for 8 of the rows
// and 2 vec4s of B per step; every A value reaches all lanes by broadcast, and each lane keeps
// 64 rows x 2 vec4 accumulators.
//
// The accumulators are only ever indexed by constants (the lines below are written out):
// lavapipe keeps an array that a loop variable indexes in memory, where every access is a
// slow load again. Rows past M and columns past N are clamped onto real ones instead of
// branching in the inner loop, and their results dropped when storing.
//
// Same parameters as matmul.wgsl (split K over workgroup z included), but N must be a
// multiple of 4 (B, bias and C are read as vec4 rows) and subgroups at least 8 lanes wide.

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
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> c: array<vec4<f32>>;

// One step of k: row r of the tile gets A(r, k) (from lane r % 8 of a{r / 8}) times this lane's B.
fn step(acc: ptr<function, array<vec4<f32>, 128>>, a0: f32, a1: f32, a2: f32, a3: f32, a4: f32, a5: f32, a6: f32, a7: f32, b0: vec4<f32>, b1: vec4<f32>) {
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
    let s32 = vec4<f32>(subgroupBroadcast(a4, 0u));
    (*acc)[64] = fma(s32, b0, (*acc)[64]);
    (*acc)[65] = fma(s32, b1, (*acc)[65]);
    let s33 = vec4<f32>(subgroupBroadcast(a4, 1u));
    (*acc)[66] = fma(s33, b0, (*acc)[66]);
    (*acc)[67] = fma(s33, b1, (*acc)[67]);
    let s34 = vec4<f32>(subgroupBroadcast(a4, 2u));
    (*acc)[68] = fma(s34, b0, (*acc)[68]);
    (*acc)[69] = fma(s34, b1, (*acc)[69]);
    let s35 = vec4<f32>(subgroupBroadcast(a4, 3u));
    (*acc)[70] = fma(s35, b0, (*acc)[70]);
    (*acc)[71] = fma(s35, b1, (*acc)[71]);
    let s36 = vec4<f32>(subgroupBroadcast(a4, 4u));
    (*acc)[72] = fma(s36, b0, (*acc)[72]);
    (*acc)[73] = fma(s36, b1, (*acc)[73]);
    let s37 = vec4<f32>(subgroupBroadcast(a4, 5u));
    (*acc)[74] = fma(s37, b0, (*acc)[74]);
    (*acc)[75] = fma(s37, b1, (*acc)[75]);
    let s38 = vec4<f32>(subgroupBroadcast(a4, 6u));
    (*acc)[76] = fma(s38, b0, (*acc)[76]);
    (*acc)[77] = fma(s38, b1, (*acc)[77]);
    let s39 = vec4<f32>(subgroupBroadcast(a4, 7u));
    (*acc)[78] = fma(s39, b0, (*acc)[78]);
    (*acc)[79] = fma(s39, b1, (*acc)[79]);
    let s40 = vec4<f32>(subgroupBroadcast(a5, 0u));
    (*acc)[80] = fma(s40, b0, (*acc)[80]);
    (*acc)[81] = fma(s40, b1, (*acc)[81]);
    let s41 = vec4<f32>(subgroupBroadcast(a5, 1u));
    (*acc)[82] = fma(s41, b0, (*acc)[82]);
    (*acc)[83] = fma(s41, b1, (*acc)[83]);
    let s42 = vec4<f32>(subgroupBroadcast(a5, 2u));
    (*acc)[84] = fma(s42, b0, (*acc)[84]);
    (*acc)[85] = fma(s42, b1, (*acc)[85]);
    let s43 = vec4<f32>(subgroupBroadcast(a5, 3u));
    (*acc)[86] = fma(s43, b0, (*acc)[86]);
    (*acc)[87] = fma(s43, b1, (*acc)[87]);
    let s44 = vec4<f32>(subgroupBroadcast(a5, 4u));
    (*acc)[88] = fma(s44, b0, (*acc)[88]);
    (*acc)[89] = fma(s44, b1, (*acc)[89]);
    let s45 = vec4<f32>(subgroupBroadcast(a5, 5u));
    (*acc)[90] = fma(s45, b0, (*acc)[90]);
    (*acc)[91] = fma(s45, b1, (*acc)[91]);
    let s46 = vec4<f32>(subgroupBroadcast(a5, 6u));
    (*acc)[92] = fma(s46, b0, (*acc)[92]);
    (*acc)[93] = fma(s46, b1, (*acc)[93]);
    let s47 = vec4<f32>(subgroupBroadcast(a5, 7u));
    (*acc)[94] = fma(s47, b0, (*acc)[94]);
    (*acc)[95] = fma(s47, b1, (*acc)[95]);
    let s48 = vec4<f32>(subgroupBroadcast(a6, 0u));
    (*acc)[96] = fma(s48, b0, (*acc)[96]);
    (*acc)[97] = fma(s48, b1, (*acc)[97]);
    let s49 = vec4<f32>(subgroupBroadcast(a6, 1u));
    (*acc)[98] = fma(s49, b0, (*acc)[98]);
    (*acc)[99] = fma(s49, b1, (*acc)[99]);
    let s50 = vec4<f32>(subgroupBroadcast(a6, 2u));
    (*acc)[100] = fma(s50, b0, (*acc)[100]);
    (*acc)[101] = fma(s50, b1, (*acc)[101]);
    let s51 = vec4<f32>(subgroupBroadcast(a6, 3u));
    (*acc)[102] = fma(s51, b0, (*acc)[102]);
    (*acc)[103] = fma(s51, b1, (*acc)[103]);
    let s52 = vec4<f32>(subgroupBroadcast(a6, 4u));
    (*acc)[104] = fma(s52, b0, (*acc)[104]);
    (*acc)[105] = fma(s52, b1, (*acc)[105]);
    let s53 = vec4<f32>(subgroupBroadcast(a6, 5u));
    (*acc)[106] = fma(s53, b0, (*acc)[106]);
    (*acc)[107] = fma(s53, b1, (*acc)[107]);
    let s54 = vec4<f32>(subgroupBroadcast(a6, 6u));
    (*acc)[108] = fma(s54, b0, (*acc)[108]);
    (*acc)[109] = fma(s54, b1, (*acc)[109]);
    let s55 = vec4<f32>(subgroupBroadcast(a6, 7u));
    (*acc)[110] = fma(s55, b0, (*acc)[110]);
    (*acc)[111] = fma(s55, b1, (*acc)[111]);
    let s56 = vec4<f32>(subgroupBroadcast(a7, 0u));
    (*acc)[112] = fma(s56, b0, (*acc)[112]);
    (*acc)[113] = fma(s56, b1, (*acc)[113]);
    let s57 = vec4<f32>(subgroupBroadcast(a7, 1u));
    (*acc)[114] = fma(s57, b0, (*acc)[114]);
    (*acc)[115] = fma(s57, b1, (*acc)[115]);
    let s58 = vec4<f32>(subgroupBroadcast(a7, 2u));
    (*acc)[116] = fma(s58, b0, (*acc)[116]);
    (*acc)[117] = fma(s58, b1, (*acc)[117]);
    let s59 = vec4<f32>(subgroupBroadcast(a7, 3u));
    (*acc)[118] = fma(s59, b0, (*acc)[118]);
    (*acc)[119] = fma(s59, b1, (*acc)[119]);
    let s60 = vec4<f32>(subgroupBroadcast(a7, 4u));
    (*acc)[120] = fma(s60, b0, (*acc)[120]);
    (*acc)[121] = fma(s60, b1, (*acc)[121]);
    let s61 = vec4<f32>(subgroupBroadcast(a7, 5u));
    (*acc)[122] = fma(s61, b0, (*acc)[122]);
    (*acc)[123] = fma(s61, b1, (*acc)[123]);
    let s62 = vec4<f32>(subgroupBroadcast(a7, 6u));
    (*acc)[124] = fma(s62, b0, (*acc)[124]);
    (*acc)[125] = fma(s62, b1, (*acc)[125]);
    let s63 = vec4<f32>(subgroupBroadcast(a7, 7u));
    (*acc)[126] = fma(s63, b0, (*acc)[126]);
    (*acc)[127] = fma(s63, b1, (*acc)[127]);
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

fn store_tile(part: u32, row0: u32, col4: u32, acc: ptr<function, array<vec4<f32>, 128>>) {
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
    store_vec(part, row0 + 32u, col4 + 0u, (*acc)[64]);
    store_vec(part, row0 + 32u, col4 + 1u, (*acc)[65]);
    store_vec(part, row0 + 33u, col4 + 0u, (*acc)[66]);
    store_vec(part, row0 + 33u, col4 + 1u, (*acc)[67]);
    store_vec(part, row0 + 34u, col4 + 0u, (*acc)[68]);
    store_vec(part, row0 + 34u, col4 + 1u, (*acc)[69]);
    store_vec(part, row0 + 35u, col4 + 0u, (*acc)[70]);
    store_vec(part, row0 + 35u, col4 + 1u, (*acc)[71]);
    store_vec(part, row0 + 36u, col4 + 0u, (*acc)[72]);
    store_vec(part, row0 + 36u, col4 + 1u, (*acc)[73]);
    store_vec(part, row0 + 37u, col4 + 0u, (*acc)[74]);
    store_vec(part, row0 + 37u, col4 + 1u, (*acc)[75]);
    store_vec(part, row0 + 38u, col4 + 0u, (*acc)[76]);
    store_vec(part, row0 + 38u, col4 + 1u, (*acc)[77]);
    store_vec(part, row0 + 39u, col4 + 0u, (*acc)[78]);
    store_vec(part, row0 + 39u, col4 + 1u, (*acc)[79]);
    store_vec(part, row0 + 40u, col4 + 0u, (*acc)[80]);
    store_vec(part, row0 + 40u, col4 + 1u, (*acc)[81]);
    store_vec(part, row0 + 41u, col4 + 0u, (*acc)[82]);
    store_vec(part, row0 + 41u, col4 + 1u, (*acc)[83]);
    store_vec(part, row0 + 42u, col4 + 0u, (*acc)[84]);
    store_vec(part, row0 + 42u, col4 + 1u, (*acc)[85]);
    store_vec(part, row0 + 43u, col4 + 0u, (*acc)[86]);
    store_vec(part, row0 + 43u, col4 + 1u, (*acc)[87]);
    store_vec(part, row0 + 44u, col4 + 0u, (*acc)[88]);
    store_vec(part, row0 + 44u, col4 + 1u, (*acc)[89]);
    store_vec(part, row0 + 45u, col4 + 0u, (*acc)[90]);
    store_vec(part, row0 + 45u, col4 + 1u, (*acc)[91]);
    store_vec(part, row0 + 46u, col4 + 0u, (*acc)[92]);
    store_vec(part, row0 + 46u, col4 + 1u, (*acc)[93]);
    store_vec(part, row0 + 47u, col4 + 0u, (*acc)[94]);
    store_vec(part, row0 + 47u, col4 + 1u, (*acc)[95]);
    store_vec(part, row0 + 48u, col4 + 0u, (*acc)[96]);
    store_vec(part, row0 + 48u, col4 + 1u, (*acc)[97]);
    store_vec(part, row0 + 49u, col4 + 0u, (*acc)[98]);
    store_vec(part, row0 + 49u, col4 + 1u, (*acc)[99]);
    store_vec(part, row0 + 50u, col4 + 0u, (*acc)[100]);
    store_vec(part, row0 + 50u, col4 + 1u, (*acc)[101]);
    store_vec(part, row0 + 51u, col4 + 0u, (*acc)[102]);
    store_vec(part, row0 + 51u, col4 + 1u, (*acc)[103]);
    store_vec(part, row0 + 52u, col4 + 0u, (*acc)[104]);
    store_vec(part, row0 + 52u, col4 + 1u, (*acc)[105]);
    store_vec(part, row0 + 53u, col4 + 0u, (*acc)[106]);
    store_vec(part, row0 + 53u, col4 + 1u, (*acc)[107]);
    store_vec(part, row0 + 54u, col4 + 0u, (*acc)[108]);
    store_vec(part, row0 + 54u, col4 + 1u, (*acc)[109]);
    store_vec(part, row0 + 55u, col4 + 0u, (*acc)[110]);
    store_vec(part, row0 + 55u, col4 + 1u, (*acc)[111]);
    store_vec(part, row0 + 56u, col4 + 0u, (*acc)[112]);
    store_vec(part, row0 + 56u, col4 + 1u, (*acc)[113]);
    store_vec(part, row0 + 57u, col4 + 0u, (*acc)[114]);
    store_vec(part, row0 + 57u, col4 + 1u, (*acc)[115]);
    store_vec(part, row0 + 58u, col4 + 0u, (*acc)[116]);
    store_vec(part, row0 + 58u, col4 + 1u, (*acc)[117]);
    store_vec(part, row0 + 59u, col4 + 0u, (*acc)[118]);
    store_vec(part, row0 + 59u, col4 + 1u, (*acc)[119]);
    store_vec(part, row0 + 60u, col4 + 0u, (*acc)[120]);
    store_vec(part, row0 + 60u, col4 + 1u, (*acc)[121]);
    store_vec(part, row0 + 61u, col4 + 0u, (*acc)[122]);
    store_vec(part, row0 + 61u, col4 + 1u, (*acc)[123]);
    store_vec(part, row0 + 62u, col4 + 0u, (*acc)[124]);
    store_vec(part, row0 + 62u, col4 + 1u, (*acc)[125]);
    store_vec(part, row0 + 63u, col4 + 0u, (*acc)[126]);
    store_vec(part, row0 + 63u, col4 + 1u, (*acc)[127]);
}

// Any layout of A: one scalar load per step of k.
@compute @workgroup_size(8)
fn matmul_subgroup_strided(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let row0 = wg.y * 64u;
    let n4 = p.n / 4u;
    let col4 = (wg.x * 8u + lane) * 2u;
    let a_at0 = min(row0 + 0u + lane, p.m - 1u) * p.a_row_stride;
    let a_at1 = min(row0 + 8u + lane, p.m - 1u) * p.a_row_stride;
    let a_at2 = min(row0 + 16u + lane, p.m - 1u) * p.a_row_stride;
    let a_at3 = min(row0 + 24u + lane, p.m - 1u) * p.a_row_stride;
    let a_at4 = min(row0 + 32u + lane, p.m - 1u) * p.a_row_stride;
    let a_at5 = min(row0 + 40u + lane, p.m - 1u) * p.a_row_stride;
    let a_at6 = min(row0 + 48u + lane, p.m - 1u) * p.a_row_stride;
    let a_at7 = min(row0 + 56u + lane, p.m - 1u) * p.a_row_stride;
    let b_at0 = min(col4 + 0u, n4 - 1u);
    let b_at1 = min(col4 + 1u, n4 - 1u);
    let k_begin = wg.z * p.k_chunk;
    let k_end = min(p.k, k_begin + p.k_chunk);
    var acc: array<vec4<f32>, 128>;
    for (var k = k_begin; k < k_end; k++) {
        step(&acc, a[a_at0 + k * p.a_col_stride], a[a_at1 + k * p.a_col_stride], a[a_at2 + k * p.a_col_stride], a[a_at3 + k * p.a_col_stride], a[a_at4 + k * p.a_col_stride], a[a_at5 + k * p.a_col_stride], a[a_at6 + k * p.a_col_stride], a[a_at7 + k * p.a_col_stride], b[k * n4 + b_at0], b[k * n4 + b_at1]);
    }
    store_tile(wg.z, row0, col4, &acc);
}
