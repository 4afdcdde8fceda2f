//! A whole training step on the device against the whole network's CPU reference
//! (`model::reference`), as llm.c checks its training step: the same weights and batch, three
//! consecutive steps of one epoch (the last one short), for the teacher with cross-entropy and
//! two students with the distillation loss, on every kernel family. Each step compares the
//! loss, every parameter's gradient, and every parameter and Adam moment after the update.
//!
//! Each step starts the reference from the device's weights and moments as they were before
//! it, so a difference shows in the step that makes it rather than compounding. Max-pooling
//! windows whose two largest inputs are equal up to rounding may pick either: the reference
//! routes the gradient through the device's winners, after checking that each is a maximum
//! of its window within rounding.

mod common;

use common::max_rel_error;
use kd_wgpu::data::{Split, IMAGE_SIDE, NUM_CLASSES};
use kd_wgpu::gpu::{Gpu, Tensor};
use kd_wgpu::model::reference::{self, Batch, TrainState};
use kd_wgpu::model::{Architecture, Op};
use kd_wgpu::ops::adam::AdamConfig;
use kd_wgpu::train::{DeviceData, Feed, Loss, Model, Plan};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Largest relative error allowed (|device - reference| / max(|reference|, mean |reference|),
/// per tensor): the batch's mean loss, every gradient, Adam's moments after the update, and
/// the weights after it. Seen on lavapipe: loss 2e-6, gradients 2.3e-5, moments 2e-5, weights
/// 4.8e-4. The weights' bound is wider because Adam divides m by sqrt(v) + 1e-7: where a
/// gradient is a few millionths, its f32 rounding moves the step up to ~80 times as much.
const LOSS_BOUND: f64 = 1e-5;
const GRADIENT_BOUND: f64 = 1e-4;
const MOMENT_BOUND: f64 = 1e-4;
const WEIGHT_BOUND: f64 = 2e-3;
/// A device's pooling winner may differ from the reference's where the two inputs are equal
/// within this (relative to the window's maximum, floored by the layer's mean magnitude).
const TIE_BOUND: f64 = 1e-5;

struct Case {
    arch: Architecture,
    loss: Loss,
    samples: usize,
    batch: usize,
}

/// Glorot kernels and small non-zero biases, so that every tensor's update shows.
fn initial_weights(arch: &Architecture, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let mut flat = arch.init_glorot(rng.random());
    for p in arch.params().iter().filter(|p| p.fans.is_none()) {
        for v in &mut flat[p.range()] {
            *v = rng.random_range(-0.05..0.05);
        }
    }
    flat
}

/// The device's winners of pooling layer `i` for the batch's rows, each checked to be a
/// maximum of its window within rounding; returns them and how many differ from the reference's.
fn checked_winners(plan: &Plan, gpu: &Gpu, i: usize, fwd: &reference::Forward, batch: &Batch) -> (Vec<u32>, usize) {
    let ours = fwd.winners[i].as_ref().expect("a pooling layer");
    let device = plan.saved(i).expect("winners").read_u32(gpu).unwrap()[..ours.len()].to_vec();
    let input = fwd.input(batch, i);
    let mean = input.iter().map(|v| v.abs() as f64).sum::<f64>() / input.len() as f64;
    let mut ties = 0;
    for (o, (&d, &r)) in device.iter().zip(ours).enumerate() {
        if d != r {
            let (dv, rv) = (input[d as usize] as f64, input[r as usize] as f64);
            let gap = (rv - dv) / rv.abs().max(mean);
            assert!(
                gap <= TIE_BOUND,
                "pool layer {i}, output {o}: device winner {d} ({dv}) is not a maximum ({rv} at {r})"
            );
            ties += 1;
        }
    }
    (device, ties)
}

/// Compares one tensor family (gradients, weights, moments) tensor by tensor; returns the
/// largest error.
fn compare(what: &str, arch: &Architecture, got: &[f32], want: &[f32], bound: f64) -> f64 {
    let mut worst: f64 = 0.0;
    for p in arch.params() {
        let e = max_rel_error(&got[p.range()], &want[p.range()]);
        assert!(e <= bound, "{what} of {}: max relative error {e:.3e} exceeds {bound:.0e}", p.name);
        worst = worst.max(e);
    }
    worst
}

fn run_case(gpu: &Gpu, case: &Case, rng: &mut ChaCha8Rng) {
    let (arch, samples, b) = (&case.arch, case.samples, case.batch);
    let split = |rng: &mut ChaCha8Rng| Split {
        images: (0..samples * IMAGE_SIDE * IMAGE_SIDE).map(|_| rng.random()).collect(),
        labels: (0..samples).map(|_| rng.random_range(0..NUM_CLASSES as u8)).collect(),
    };
    let (train, test) = (split(rng), split(rng));
    let data = DeviceData::upload(gpu, &train, &test).unwrap();
    let table: Vec<f32> = (0..samples * NUM_CLASSES).map(|_| rng.random_range(-6.0..6.0)).collect();
    let table_t = Tensor::from_f32(gpu, "teacher logits", &[samples, NUM_CLASSES], &table).unwrap();
    let distils = matches!(case.loss, Loss::Distillation { .. });
    let feed = Feed { data: &data, split: &data.train, teacher_logits: distils.then_some(&table_t) };
    let adam = AdamConfig::default();
    let model = Model::new(gpu, arch, &initial_weights(arch, rng)).unwrap();
    let plan = Plan::train(gpu, "whole step", &model, case.loss, &feed, b, &adam).unwrap();
    let mut order: Vec<u32> = (0..samples as u32).collect();
    order.shuffle(rng);
    plan.begin_epoch(gpu, &order).unwrap();
    let (m_dev, v_dev) = plan.adam_moments().unwrap();
    let pools: Vec<usize> =
        arch.walk().iter().enumerate().filter(|(_, l)| matches!(l.op(1), Op::Pool(_))).map(|(i, _)| i).collect();

    let mut worst = [0f64; 4];
    for step in 0..samples.div_ceil(b) {
        let rows = b.min(samples - step * b);
        let picked = &order[step * b..step * b + rows];
        // The device scales a byte by a table of f32(byte) / 255.
        let images: Vec<f32> = picked
            .iter()
            .flat_map(|&s| train.images[s as usize * 784..][..784].iter().map(|&p| p as f32 / 255.0))
            .collect();
        let labels: Vec<u32> = picked.iter().map(|&s| train.labels[s as usize] as u32).collect();
        let teacher: Vec<f32> =
            picked.iter().flat_map(|&s| table[s as usize * NUM_CLASSES..][..NUM_CLASSES].to_vec()).collect();
        let batch = Batch { images: &images, labels: &labels, teacher_logits: distils.then_some(&teacher[..]), rows };

        let mut state = TrainState {
            weights: model.read_flat(gpu).unwrap(),
            m: m_dev.read_f32(gpu).unwrap(),
            v: v_dev.read_f32(gpu).unwrap(),
            t: step as u32 + 1,
        };
        plan.step(gpu).unwrap();
        gpu.wait().unwrap();

        let fwd = reference::forward(arch, &state.weights, &batch);
        let mut winners = fwd.winners.clone();
        let mut ties = 0;
        for &i in &pools {
            let (device, n) = checked_winners(&plan, gpu, i, &fwd, &batch);
            winners[i] = Some(device);
            ties += n;
        }
        let want = reference::train_step(arch, &mut state, &batch, case.loss, &adam, Some(&winners));

        let metrics = plan.read_metrics(gpu, step + 1).unwrap();
        let loss = metrics[2 * step] as f64 / rows as f64;
        let loss_error = (loss - want.loss).abs() / want.loss.abs();
        assert!(loss_error <= LOSS_BOUND, "step {}: loss {loss} against {} ", step + 1, want.loss);
        let grads = plan.gradients().unwrap().read_f32(gpu).unwrap();
        let errors = [
            loss_error,
            compare("gradient", arch, &grads, &want.grads, GRADIENT_BOUND),
            compare("updated weight", arch, &model.read_flat(gpu).unwrap(), &state.weights, WEIGHT_BOUND),
            compare("Adam moment m", arch, &m_dev.read_f32(gpu).unwrap(), &state.m, MOMENT_BOUND).max(compare(
                "Adam moment v",
                arch,
                &v_dev.read_f32(gpu).unwrap(),
                &state.v,
                MOMENT_BOUND,
            )),
        ];
        for (w, e) in worst.iter_mut().zip(errors) {
            *w = w.max(e);
        }
        println!("{} step {}: {rows} rows, loss {loss:.6}, pooling ties {ties}", arch.name(), step + 1);
    }
    println!(
        "{} ({:?}, {:?}): largest relative errors: loss {:.1e}, gradients {:.1e}, weights {:.1e}, moments {:.1e}",
        arch.name(),
        gpu.family(),
        case.loss,
        worst[0],
        worst[1],
        worst[2],
        worst[3]
    );
}

#[test]
fn three_training_steps_match_the_cpu_reference() {
    let mut rng = common::rng("whole step");
    let distillation = Loss::Distillation { alpha: 0.1, temperature: 10.0 };
    let cases = [
        Case { arch: Architecture::teacher(), loss: Loss::CrossEntropy, samples: 13, batch: 5 },
        Case { arch: Architecture::seed("student", [8, 12]).unwrap(), loss: distillation, samples: 70, batch: 32 },
        Case { arch: Architecture::seed("student", [3, 5]).unwrap(), loss: distillation, samples: 11, batch: 4 },
    ];
    for gpu in common::variants() {
        for case in &cases {
            run_case(gpu, case, &mut rng);
        }
    }
}
