// The device's random numbers: a counter-based hash, so that a draw is a function of what
// identifies it (an element, Adam's t, a seed, a stream) rather than of a stored state, the
// same in every pass that needs it, after a resume, and in the CPU references
// (src/ops/dropout.rs, reference::pcg4d). Taken with `#include "random.wgsl"`.

// Jarzynski and Olano, "Hash Functions for GPU Rendering" (JCGT 2020): a counter-based
// generator, four 32-bit words in, four well-mixed words out.
fn pcg4d(input: vec4<u32>) -> vec4<u32> {
    var v = input * 1664525u + 1013904223u;
    v.x += v.y * v.w;
    v.y += v.z * v.x;
    v.z += v.x * v.y;
    v.w += v.y * v.z;
    v ^= v >> vec4<u32>(16u);
    v.x += v.y * v.w;
    v.y += v.z * v.x;
    v.z += v.x * v.y;
    v.w += v.y * v.z;
    return v;
}
