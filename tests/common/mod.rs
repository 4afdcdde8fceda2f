//! Shared test support: one device per matmul variant for the whole test binary (lavapipe
//! leaks memory per device), fresh random inputs with a printed seed, and error measures.
#![allow(dead_code)]

use kd_wgpu::gpu::{BackendChoice, Gpu, MatmulVariant, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::OnceLock;

static TILED: OnceLock<Gpu> = OnceLock::new();
static SUBGROUP: OnceLock<Option<Gpu>> = OnceLock::new();

fn open(variant: MatmulVariant) -> anyhow::Result<Gpu> {
    Gpu::new(BackendChoice::Auto, variant)
}

/// The device with the portable kernels.
pub fn gpu() -> &'static Gpu {
    TILED.get_or_init(|| open(MatmulVariant::Tiled).expect("a GPU adapter (install mesa-vulkan-drivers)"))
}

/// Every matmul variant this machine can run, each on its own device.
pub fn variants() -> Vec<&'static Gpu> {
    let mut v = vec![gpu()];
    if let Some(g) = SUBGROUP.get_or_init(|| open(MatmulVariant::Subgroup).ok()) {
        v.push(g);
    }
    v
}

/// A generator seeded freshly each run (or from KD_TEST_SEED); the seed is printed so a
/// failure can be replayed.
pub fn rng(test: &str) -> ChaCha8Rng {
    let seed = std::env::var("KD_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random::<u64>);
    eprintln!("{test}: KD_TEST_SEED={seed}");
    ChaCha8Rng::seed_from_u64(seed)
}

pub fn uniform(rng: &mut ChaCha8Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

pub fn upload(gpu: &Gpu, label: &str, data: &[f32]) -> Tensor {
    Tensor::from_f32(gpu, label, &[data.len()], data).unwrap()
}

/// An output tensor filled with NaN, so that unwritten elements fail the comparison.
pub fn poisoned(gpu: &Gpu, label: &str, len: usize) -> Tensor {
    let t = Tensor::zeros(gpu, label, &[len]).unwrap();
    t.poison(gpu);
    t
}

/// Largest |got - want| / max(|want|, mean |want|): relative per element, with the mean
/// magnitude as the floor so that sums that cancel to nearly zero do not dominate.
/// NaN anywhere (an unwritten element) gives infinity.
pub fn max_rel_error(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len(), "length mismatch");
    let mean = want.iter().map(|v| v.abs() as f64).sum::<f64>() / want.len().max(1) as f64;
    let floor = mean.max(1e-30);
    let mut worst = 0f64;
    for (&g, &w) in got.iter().zip(want) {
        if !g.is_finite() {
            return f64::INFINITY;
        }
        let e = (g as f64 - w as f64).abs() / (w.abs() as f64).max(floor);
        worst = worst.max(e);
    }
    worst
}

/// Asserts the bound and prints the error for the record.
pub fn check(name: &str, got: &[f32], want: &[f32], bound: f64) {
    let e = max_rel_error(got, want);
    println!("max relative error {name}: {e:.3e}");
    assert!(e <= bound, "{name}: max relative error {e:.3e} exceeds {bound:.0e}");
}

pub const F32_BOUND: f64 = 1e-4;
