//! A loss that turns NaN or infinite stops training with an error naming the run, the epoch and
//! the step, and the weights files already saved are left as they were.

mod common;

use kd_wgpu::data::Split;
use kd_wgpu::model::STUDENT;
use kd_wgpu::ops::adam::AdamConfig;
use kd_wgpu::train::{DeviceData, Loss, Model, Plan};
use rand::Rng;

#[test]
fn a_diverging_loss_stops_training_with_the_run_and_step() {
    let gpu = common::gpu();
    let mut rng = common::rng("diverging loss");
    let samples = 96;
    let split = |rng: &mut rand_chacha::ChaCha8Rng| Split {
        images: (0..samples * 784).map(|_| rng.random()).collect(),
        labels: (0..samples).map(|_| rng.random_range(0..10)).collect(),
    };
    let (train, test) = (split(&mut rng), split(&mut rng));
    let data = DeviceData::upload(gpu, &train, &test).unwrap();
    let model = Model::new(gpu, STUDENT, &STUDENT.init_glorot(5)).unwrap();
    // A step size of 1e30 sends the weights, then the logits, then the loss to infinity.
    let adam = AdamConfig { learning_rate: 1e30, ..AdamConfig::default() };
    let plan =
        Plan::train(gpu, "reckless student", &model, Loss::CrossEntropy, &data, &data.train, None, 32, &adam).unwrap();
    let order: Vec<u32> = (0..samples as u32).collect();
    let err = plan.run_epoch(gpu, &order, 3, |_, _, _| {}).expect_err("the loss must diverge");
    let msg = format!("{err:#}");
    assert!(msg.contains("reckless student") && msg.contains("step"), "{msg}");
    assert!(msg.contains("NaN") || msg.contains("inf"), "{msg}");
}
