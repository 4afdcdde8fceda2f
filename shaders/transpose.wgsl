// out (cols x rows) = transpose of x (rows x cols), both row-major. The subgroup matrix
// product needs its B operand row-major, so a convolution's input gradient multiplies by a
// transposed copy of the kernel (cheap next to the product itself).

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
