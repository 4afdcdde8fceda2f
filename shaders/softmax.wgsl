// Row-wise softmax with temperature: probs = softmax(logits / T), stable (the row maximum
// is subtracted before exp). One invocation per row; rows are short (10 classes).

struct Params {
    rows: u32,
    cols: u32,
    temperature: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> probs: array<f32>;

@compute @workgroup_size(64)
fn softmax_temperature(@builtin(global_invocation_id) id: vec3<u32>) {
    let r = id.x;
    if (r >= p.rows) {
        return;
    }
    let base = r * p.cols;
    var top = logits[base] / p.temperature;
    for (var j = 1u; j < p.cols; j++) {
        top = max(top, logits[base + j] / p.temperature);
    }
    var sum = 0.0;
    for (var j = 0u; j < p.cols; j++) {
        sum += exp(logits[base + j] / p.temperature - top);
    }
    for (var j = 0u; j < p.cols; j++) {
        probs[base + j] = exp(logits[base + j] / p.temperature - top) / sum;
    }
}
