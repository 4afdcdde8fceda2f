//! Autotuning never changes a bit: training steps with every op forced to each of its
//! candidate entries in turn give the same weights and losses, in each kernel family.

use kd_wgpu::data::Split;
use kd_wgpu::gpu::{BackendChoice, Force, Gpu, MatmulVariant, Tensor, TuneMode};
use kd_wgpu::model::Architecture;
use kd_wgpu::ops::adam::AdamConfig;
use kd_wgpu::train::{DeviceData, Feed, Loss, Model, Plan};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;

/// Weights and per-step losses after two epochs, and the kernels the plan ran.
struct Trained {
    weights: Vec<u32>,
    metrics: Vec<u32>,
    kernels: BTreeSet<String>,
}

fn train(gpu: &Gpu, arch: &Architecture, data: &DeviceData, init: &[f32], order: &[u32]) -> Trained {
    let model = Model::new(gpu, arch, init).unwrap();
    let feed = Feed { data, split: &data.train, teacher_logits: None };
    let plan = Plan::train(gpu, arch.name(), &model, Loss::CrossEntropy, &feed, 16, &AdamConfig::default()).unwrap();
    let mut metrics = Vec::new();
    for _ in 0..2 {
        plan.run_epoch(gpu, order, 1, |_, _, _| {}).unwrap();
        let steps = order.len().div_ceil(16);
        metrics.extend(plan.read_metrics(gpu, steps).unwrap().iter().map(|v| v.to_bits()));
    }
    Trained {
        weights: model.read_flat(gpu).unwrap().iter().map(|v| v.to_bits()).collect(),
        metrics,
        kernels: plan.dispatches().iter().map(|d| d.kernel.clone()).collect(),
    }
}

#[test]
fn every_candidate_entry_trains_to_the_same_bytes() {
    let mut rng = ChaCha8Rng::seed_from_u64(rand::random());
    let samples = 40;
    let split = Split {
        images: (0..samples * 784).map(|_| rng.random()).collect(),
        labels: (0..samples).map(|_| rng.random_range(0..10)).collect(),
    };
    let order: Vec<u32> = (0..samples as u32).rev().collect();
    // Channels that are multiples of 4 (the texture-fed entries) and a first layer whose K = 9
    // is not (the buffer-fed ones).
    let arch = Architecture::seed("teacher", [8, 12]).unwrap();
    let init = arch.init_glorot(rng.random());
    let mut families = 0;
    for variant in [MatmulVariant::Tiled, MatmulVariant::Subgroup] {
        // A device of its own: forcing is per device, and other test binaries share theirs.
        let Ok(gpu) = Gpu::new(BackendChoice::Auto, variant) else { continue };
        let gpu = gpu.tuned(TuneMode::Off);
        families += 1;
        let data = DeviceData::upload(&gpu, &split, &split).unwrap();
        let runs: Vec<Trained> = (0..3)
            .map(|i| {
                gpu.tuner().force(Some(Force::Candidate(i)));
                train(&gpu, &arch, &data, &init, &order)
            })
            .collect();
        let family = format!("{:?}", gpu.family());
        assert_ne!(runs[0].kernels, runs[1].kernels, "{family}: forcing changed no entry, so the test shows nothing");
        for (i, run) in runs.iter().enumerate().skip(1) {
            let kernels: Vec<_> = run.kernels.difference(&runs[0].kernels).collect();
            assert_eq!(run.weights, runs[0].weights, "{family}: weights differ with candidate {i} ({kernels:?})");
            assert_eq!(run.metrics, runs[0].metrics, "{family}: losses differ with candidate {i} ({kernels:?})");
        }
    }
    assert!(families > 0, "no device to run on (install mesa-vulkan-drivers)");
}

/// The frozen teacher's logits phase runs at a tuned batch: every image's logits must be the
/// same bits at every batch, the last batch partly filled or not.
#[test]
fn logits_are_the_same_bits_at_every_batch() {
    let mut rng = ChaCha8Rng::seed_from_u64(rand::random());
    let samples = 300;
    let split = Split {
        images: (0..samples * 784).map(|_| rng.random()).collect(),
        labels: (0..samples).map(|_| rng.random_range(0..10)).collect(),
    };
    let order: Vec<u32> = (0..samples as u32).collect();
    let arch = Architecture::seed("teacher", [8, 12]).unwrap();
    let init = arch.init_glorot(rng.random());
    for variant in [MatmulVariant::Tiled, MatmulVariant::Subgroup] {
        let Ok(gpu) = Gpu::new(BackendChoice::Auto, variant) else { continue };
        let data = DeviceData::upload(&gpu, &split, &split).unwrap();
        let model = Model::new(&gpu, &arch, &init).unwrap();
        let feed = Feed { data: &data, split: &data.train, teacher_logits: None };
        let logits = |batch: usize| {
            let table = Tensor::zeros(&gpu, "logits", &[samples, 10]).unwrap();
            table.poison(&gpu);
            let plan = Plan::logits(&gpu, "logits", &model, &feed, &table, batch).unwrap();
            plan.run_epoch(&gpu, &order, 1, |_, _, _| {}).unwrap();
            table.read_f32(&gpu).unwrap().iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
        };
        let at_32 = logits(32);
        assert!(at_32.iter().all(|&b| f32::from_bits(b).is_finite()), "every row written");
        for batch in [64, 128, 256] {
            assert!(logits(batch) == at_32, "{:?}: logits at batch {batch} differ from batch 32", gpu.family());
        }
    }
}
