// out (cols x rows) = transpose of x (rows x cols), both row-major. The subgroup matrix
// product needs its B operand row-major, so a convolution's input gradient multiplies by a
// transposed copy of the kernel (cheap next to the product itself).

#include "common.wgsl"

struct Params {
    rows: u32,
    cols: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(16, 16)
fn transpose(@builtin(global_invocation_id) id: vec3<u32>) {
    let r = id.y;
    let c = id.x;
    if (r < p.rows && c < p.cols) {
        y[c * p.rows + r] = x[r * p.cols + c];
    }
}

// Texture-fed entry for CPU drivers (lavapipe; see matmul_texture.wgsl): rows a multiple of 4,
// one invocation per four consecutive outputs y[c, r .. r + 3], gathered from four texels.
@group(0) @binding(1) var x_tex: texture_2d<f32>;
@group(0) @binding(2) var<storage, read_write> y4: array<vec4<f32>>;

fn x_at(r: u32, c: u32) -> f32 {
    let e = r * p.cols + c;
    let t = e / 4u;
    return texel(x_tex, t)[e % 4u];
}

@compute @workgroup_size(256)
fn transpose_texture(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wg, nwg, lid, 256u);
    let rows4 = p.rows / 4u;
    if (i >= p.cols * rows4) {
        return;
    }
    let c = i / rows4;
    let r = (i % rows4) * 4u;
    y4[i] = vec4<f32>(x_at(r, c), x_at(r + 1u, c), x_at(r + 2u, c), x_at(r + 3u, c));
}
