// Batches are gathered on the device from data uploaded once: images stay as bytes (four
// pixels per u32 word) and are scaled through a 256-entry table holding Keras's exact
// f32(byte) / 255. `perm` is the epoch's sample order; the step index lives in the step
// state and advance_step moves it on, so one planned step is recorded again and again.
// Rows past the end of the data (a short last batch) are zero.
//
// With `shift` above 0, gather_images moves each image by (dx, dy), each drawn uniformly from
// -shift..=shift, the vacated border 0 (Keras's RandomTranslation with fill_mode="constant",
// fill_value=0, on whole pixels): the content at (row, col) comes from (row - dy, col - dx).
// The offsets are drawn, not uploaded: pcg4d(row of the batch, Adam's t, seed, SHIFT_STREAM),
// x and y words modulo 2 * shift + 1, so a resumed run and the CPU reference
// (src/ops/batch.rs) draw the same ones.

#include "common.wgsl"
#include "random.wgsl"

// The fourth word of the shifts' hash: Dropout's is a layer index, far below this.
const SHIFT_STREAM: u32 = 0xffffffffu;

struct Params {
    batch: u32,
    width: u32, // values per sample: pixels for gather_images, classes for the row copies
    side: u32, // gather_images: the images' side (width = side * side); read only with a shift
    shift: u32, // gather_images: the largest offset either way, in pixels (0: none)
    seed: u32, // gather_images: what the offsets are drawn from besides the row and Adam's t
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> state: StepState;
@group(0) @binding(2) var<storage, read> perm: array<u32>;
// gather_images
@group(0) @binding(3) var<storage, read> images: array<u32>;
@group(0) @binding(4) var<storage, read> all_labels: array<u32>;
@group(0) @binding(5) var<storage, read> scale: array<f32, 256>;
@group(0) @binding(6) var<storage, read_write> x: array<f32>;
@group(0) @binding(7) var<storage, read_write> labels: array<u32>;
// gather_rows: dest[i] = source[perm[step * batch + i]]
@group(0) @binding(3) var<storage, read> source: array<f32>;
@group(0) @binding(4) var<storage, read_write> dest: array<f32>;
// store_rows: table[step * batch + i] = rows[i]
@group(0) @binding(2) var<storage, read> rows: array<f32>;
@group(0) @binding(3) var<storage, read_write> table: array<f32>;
// advance_step
@group(0) @binding(0) var<storage, read_write> state_rw: StepState;

fn valid_rows() -> u32 {
    let start = state.step * state.batch;
    if (start >= state.samples) {
        return 0u;
    }
    return min(p.batch, state.samples - start);
}

@compute @workgroup_size(256)
fn gather_images(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = flat_index(wg, nwg, lid, 256u);
    if (idx >= p.batch * p.width) {
        return;
    }
    let i = idx / p.width;
    let pixel = idx % p.width;
    if (i >= valid_rows()) {
        x[idx] = 0.0;
        if (pixel == 0u) {
            labels[i] = 0u;
        }
        return;
    }
    let sample = perm[state.step * state.batch + i];
    if (pixel == 0u) {
        labels[i] = all_labels[sample];
    }
    var from_pixel = pixel;
    if (p.shift > 0u) {
        let span = 2u * p.shift + 1u;
        let bits = pcg4d(vec4<u32>(i, state.adam_t, p.seed, SHIFT_STREAM));
        let dx = i32(bits.x % span) - i32(p.shift);
        let dy = i32(bits.y % span) - i32(p.shift);
        let row = i32(pixel / p.side) - dy;
        let col = i32(pixel % p.side) - dx;
        let side = i32(p.side);
        if (row < 0 || row >= side || col < 0 || col >= side) {
            x[idx] = 0.0;
            return;
        }
        from_pixel = u32(row) * p.side + u32(col);
    }
    let byte_at = sample * p.width + from_pixel;
    let byte = (images[byte_at / 4u] >> (8u * (byte_at % 4u))) & 255u;
    x[idx] = scale[byte];
}

@compute @workgroup_size(256)
fn gather_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = flat_index(wg, nwg, lid, 256u);
    if (idx >= p.batch * p.width) {
        return;
    }
    let i = idx / p.width;
    if (i >= valid_rows()) {
        dest[idx] = 0.0;
        return;
    }
    let sample = perm[state.step * state.batch + i];
    dest[idx] = source[sample * p.width + idx % p.width];
}

@compute @workgroup_size(256)
fn store_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = flat_index(wg, nwg, lid, 256u);
    if (idx >= valid_rows() * p.width) {
        return;
    }
    table[state.step * state.batch * p.width + idx] = rows[idx];
}

@compute @workgroup_size(1)
fn advance_step() {
    state_rw.step += 1u;
    state_rw.adam_t += 1u;
}
