//! Training plans: models trained side by side give what they give alone, a loss that turns
//! NaN or infinite stops training with an error naming the run and the step, and only training
//! plans move an augmented model's images.

mod common;

use kd_wgpu::data::Split;
use kd_wgpu::gpu::Tensor;
use kd_wgpu::model::Architecture;
use kd_wgpu::ops::adam::AdamConfig;
use kd_wgpu::ops::loss::Distill;
use kd_wgpu::train::{run_epochs_together, DeviceData, Feed, Loss, Model, Plan};
use rand::seq::SliceRandom;
use rand::Rng;

fn synthetic_data(rng: &mut rand_chacha::ChaCha8Rng, samples: usize) -> DeviceData {
    let mut split = || Split {
        images: (0..samples * 784).map(|_| rng.random()).collect(),
        labels: (0..samples).map(|_| rng.random_range(0..10)).collect(),
    };
    let (train, test) = (split(), split());
    DeviceData::upload(common::gpu(), &train, &test).unwrap()
}

#[test]
fn students_trained_side_by_side_match_training_alone() {
    let gpu = common::gpu();
    let mut rng = common::rng("side by side");
    let samples = 70;
    let data = synthetic_data(&mut rng, samples);
    let table_values: Vec<f32> = (0..samples * 10).map(|_| rng.random_range(-5.0..5.0)).collect();
    let table = Tensor::from_f32(gpu, "teacher logits", &[samples, 10], &table_values).unwrap();
    let losses = [Loss::CrossEntropy, Loss::Distillation(Distill::kl(0.1, 10.0))];
    let student = Architecture::seed("student", [3, 5]).unwrap();
    let inits = [student.init_glorot(rng.random()), student.init_glorot(rng.random())];
    let orders: Vec<Vec<u32>> = (0..2)
        .map(|_| {
            let mut o: Vec<u32> = (0..samples as u32).collect();
            o.shuffle(&mut rng);
            o
        })
        .collect();
    let train = |models: &[Model]| -> Vec<Plan> {
        models
            .iter()
            .zip(losses)
            .map(|(m, l)| {
                let teacher_logits = matches!(l, Loss::Distillation { .. }).then_some(&table);
                let feed = Feed { data: &data, split: &data.train, teacher_logits };
                Plan::train(gpu, "student", m, l, &feed, 32, &AdamConfig::default()).unwrap()
            })
            .collect()
    };
    let weights = |models: &[Model]| -> Vec<Vec<u32>> {
        models.iter().map(|m| m.read_flat(gpu).unwrap().iter().map(|v| v.to_bits()).collect()).collect()
    };

    let alone: Vec<Model> = inits.iter().map(|w| Model::new(gpu, &student, w).unwrap()).collect();
    for (plan, order) in train(&alone).iter().zip(&orders) {
        for _ in 0..2 {
            plan.run_epoch(gpu, order, 2, |_, _, _| {}).unwrap();
        }
    }
    let together: Vec<Model> = inits.iter().map(|w| Model::new(gpu, &student, w).unwrap()).collect();
    let plans = train(&together);
    let (plan_refs, order_refs): (Vec<&Plan>, Vec<&[u32]>) =
        plans.iter().zip(&orders).map(|(p, o)| (p, o.as_slice())).unzip();
    for _ in 0..2 {
        let stats = run_epochs_together(gpu, &plan_refs, &order_refs, 2, |_, m| assert_eq!(m.len(), 2)).unwrap();
        assert!(stats.iter().all(|s| s.loss.is_finite() && s.steps == 3));
    }
    assert_eq!(weights(&alone), weights(&together), "two epochs side by side give the same bits as alone");
    assert_ne!(
        weights(&together)[0],
        inits[0].iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        "training moved the weights"
    );
}

#[test]
fn a_diverging_loss_stops_training_with_the_run_and_step() {
    let gpu = common::gpu();
    let mut rng = common::rng("diverging loss");
    let samples = 96;
    let data = synthetic_data(&mut rng, samples);
    let student = Architecture::student();
    let model = Model::new(gpu, &student, &student.init_glorot(5)).unwrap();
    // A step size of 1e30 sends the weights, then the logits, then the loss to infinity.
    let adam = AdamConfig { learning_rate: 1e30, ..AdamConfig::default() };
    let feed = Feed { data: &data, split: &data.train, teacher_logits: None };
    let plan = Plan::train(gpu, "reckless student", &model, Loss::CrossEntropy, &feed, 32, &adam).unwrap();
    let order: Vec<u32> = (0..samples as u32).collect();
    let err = plan.run_epoch(gpu, &order, 3, |_, _, _| {}).expect_err("the loss must diverge");
    let msg = format!("{err:#}");
    assert!(msg.contains("reckless student") && msg.contains("step"), "{msg}");
    assert!(msg.contains("NaN") || msg.contains("inf"), "{msg}");
}

/// Random translations touch only the training plans of the model that has them: an augmented
/// model's evaluation and logits table are those of its images as they are; its training step
/// moves them without a dispatch of its own, and refuses a logits table (whose rows are of
/// unmoved images).
#[test]
fn only_training_plans_move_images() {
    let gpu = common::gpu();
    let mut rng = common::rng("augmented plans");
    let samples = 20;
    let data = synthetic_data(&mut rng, samples);
    let student = Architecture::seed("student", [3, 5]).unwrap();
    let (init, seed): (Vec<f32>, u64) = (student.init_glorot(rng.random()), rng.random());
    let model = |shift| Model::new(gpu, &student, &init).unwrap().seeded(seed).augmented(shift);
    let (plain, moved) = (model(0), model(3));
    let feed = |split, teacher_logits| Feed { data: &data, split, teacher_logits };
    let order: Vec<u32> = (0..samples as u32).collect();
    let bits = |v: Vec<f32>| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();

    let evaluated = |m: &Model| {
        let plan = Plan::evaluate(gpu, "evaluate", m, Loss::CrossEntropy, &feed(&data.test, None), 8).unwrap();
        plan.run_epoch(gpu, &order, 1, |_, _, _| {}).unwrap();
        bits(plan.logits_table().unwrap().read_f32(gpu).unwrap())
    };
    assert_eq!(evaluated(&moved), evaluated(&plain), "an evaluation sees the images as they are");
    let table = |m: &Model| {
        let t = Tensor::zeros(gpu, "logits table", &[samples, 10]).unwrap();
        let plan = Plan::logits(gpu, "logits", m, &feed(&data.train, None), &t, 8).unwrap();
        plan.run_epoch(gpu, &order, 1, |_, _, _| {}).unwrap();
        bits(t.read_f32(gpu).unwrap())
    };
    assert_eq!(table(&moved), table(&plain), "a logits table is of the images as they are");

    let adam = AdamConfig::default();
    let train = |m: &Model| Plan::train(gpu, "train", m, Loss::CrossEntropy, &feed(&data.train, None), 8, &adam);
    let (plain_plan, moved_plan) = (train(&plain).unwrap(), train(&moved).unwrap());
    let kernels = |p: &Plan| p.dispatches().iter().map(|d| (d.entry, d.workgroups)).collect::<Vec<_>>();
    assert_eq!(kernels(&moved_plan), kernels(&plain_plan), "the same dispatches");
    plain_plan.run_epoch(gpu, &order, 1, |_, _, _| {}).unwrap();
    moved_plan.run_epoch(gpu, &order, 1, |_, _, _| {}).unwrap();
    assert_ne!(bits(moved.read_flat(gpu).unwrap()), bits(plain.read_flat(gpu).unwrap()), "moved images train apart");

    let logits = Tensor::zeros(gpu, "teacher logits", &[samples, 10]).unwrap();
    let distill = Loss::Distillation(Distill::kl(0.1, 10.0));
    let refused = Plan::train(gpu, "distilled", &moved, distill, &feed(&data.train, Some(&logits)), 8, &adam);
    let message = refused.err().expect("a logits table with moved images is refused").to_string();
    assert!(message.contains("cannot follow moved images"), "{message}");
}
