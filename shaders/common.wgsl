// Declarations shared by the kernels. A shader takes them with the line
//
//     #include "common.wgsl"
//
// which the pipeline cache (src/gpu/kernel.rs, Shader::expanded) replaces by this file's
// text, preceded by `const TEXTURE_WIDTH: u32 = ...;` generated from TEXTURE_WIDTH in
// src/gpu/texture.rs. A plain const written from the Rust value, rather than an override
// constant, keeps one source of truth while the expanded text stays complete WGSL on its own
// (no pipeline constants to supply, and the compiler folds the divisions as before).

// The two structs below have Rust mirrors in src/ops/common.rs, checked against this text by
// the tests (src/ops/mod.rs), as is every kernel's parameter block.

// The training step's counters, kept on the device so that a planned step can be recorded
// again and again (batch.wgsl's advance_step moves them on).
struct StepState {
    step: u32,
    adam_t: u32,
    samples: u32,
    batch: u32,
}

// A convolution's geometry (filled by ConvShape::geometry, src/ops/conv2d.rs), NHWC,
// TensorFlow "same" padding: conv2d.wgsl's parameters, and the im2col matrix that
// matmul.wgsl's products gather.
struct Conv {
    batch: u32,
    in_h: u32,
    in_w: u32,
    in_c: u32,
    out_h: u32,
    out_w: u32,
    kernel: u32,
    stride: u32,
    pad_top: u32,
    pad_left: u32,
    _pad0: u32,
    _pad1: u32,
}

// One kernel body for both kernel families (src/gpu/family.rs): the text between `#if buffers`
// and `#endif` is compiled for the buffer-fed family only, `#if textures` for the texture-fed
// one (src/gpu/kernel.rs, Shader::expanded). A buffer-fed invocation handles one element, a
// texture-fed one four (a texel, four channels or columns): `Value` is what it computes,
// `LANES` how many elements that is, `lane_indices` their flat indices from the first.
#if buffers
alias Value = f32;
alias Index = u32;
const LANES: u32 = 1u;
fn lane_indices(first: u32) -> Index {
    return first;
}
#endif
#if textures
alias Value = vec4<f32>;
alias Index = vec4<u32>;
const LANES: u32 = 4u;
fn lane_indices(first: u32) -> Index {
    return vec4<u32>(first) + vec4<u32>(0u, 1u, 2u, 3u);
}
#endif

// The flat index of an invocation of a 1-D kernel launched over grid_1d's workgroups (folded
// into two dimensions past 32,768 groups; src/gpu/kernel.rs). `workgroup_size` must be the
// entry point's @workgroup_size.
fn flat_index(wg: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>, workgroup_size: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * workgroup_size + lid.x;
}

// Where texel t of a texture copy lies: a tensor's elements in order, four per rgba32float
// texel, TEXTURE_WIDTH texels per row (src/gpu/texture.rs).
fn texel_at(t: u32) -> vec2<u32> {
    return vec2<u32>(t % TEXTURE_WIDTH, t / TEXTURE_WIDTH);
}

// Texel t of a texture copy.
fn texel(tex: texture_2d<f32>, t: u32) -> vec4<f32> {
    return textureLoad(tex, texel_at(t), 0);
}
