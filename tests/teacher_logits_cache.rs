//! Distillation reads the frozen teacher's logits from a table computed once, in file order.
//! That is only right if the teacher gives each image the same logits whatever batch it comes
//! in and wherever it sits in that batch; this checks it bit for bit.

mod common;

use kd_wgpu::data::{Split, NUM_CLASSES};
use kd_wgpu::gpu::Tensor;
use kd_wgpu::model::Architecture;
use kd_wgpu::train::{DeviceData, Feed, Model, Plan};
use rand::seq::SliceRandom;
use rand::Rng;

#[test]
fn cached_teacher_logits_equal_recomputing_them_in_shuffled_batches() {
    let gpu = common::gpu();
    let mut rng = common::rng("teacher logits cache");
    let samples = 37; // not a multiple of either batch: the last batch is short
    let split = |rng: &mut rand_chacha::ChaCha8Rng| Split {
        images: (0..samples * 784).map(|_| rng.random()).collect(),
        labels: (0..samples).map(|_| rng.random_range(0..10)).collect(),
    };
    let (train, test) = (split(&mut rng), split(&mut rng));
    let data = DeviceData::upload(gpu, &train, &test).unwrap();
    let feed = Feed { data: &data, split: &data.train, teacher_logits: None };
    for (arch, batch) in [(Architecture::student(), 32), (Architecture::teacher(), 16)] {
        let model = Model::new(gpu, &arch, &arch.init_glorot(rng.random())).unwrap();
        let in_order = Tensor::zeros(gpu, "cached", &[samples, NUM_CLASSES]).unwrap();
        let plan = Plan::logits(gpu, "cache", &model, &feed, &in_order, batch).unwrap();
        plan.run_epoch(gpu, &(0..samples as u32).collect::<Vec<_>>(), 1, |_, _, _| {}).unwrap();

        // As at a training step: batches gathered in a shuffled order, logits recomputed.
        let mut order: Vec<u32> = (0..samples as u32).collect();
        order.shuffle(&mut rng);
        let shuffled = Tensor::zeros(gpu, "recomputed", &[samples, NUM_CLASSES]).unwrap();
        let plan = Plan::logits(gpu, "recompute", &model, &feed, &shuffled, batch).unwrap();
        plan.run_epoch(gpu, &order, 1, |_, _, _| {}).unwrap();

        let (cached, recomputed) = (in_order.read_f32(gpu).unwrap(), shuffled.read_f32(gpu).unwrap());
        assert!(cached.iter().all(|v| v.is_finite()));
        for (pos, &sample) in order.iter().enumerate() {
            let want = &cached[sample as usize * NUM_CLASSES..][..NUM_CLASSES];
            let got = &recomputed[pos * NUM_CLASSES..][..NUM_CLASSES];
            assert_eq!(
                got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{}: sample {sample} at position {pos}",
                arch.name()
            );
        }
    }
}
