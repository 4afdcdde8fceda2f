//! A whole training step on the device against the whole network's CPU reference
//! (`model::reference`), as llm.c checks its training step: the same weights and batch, three
//! consecutive steps of one epoch (the last one short), for the teacher with cross-entropy and
//! two students with the distillation loss (from a teacher's logits table, and with the teacher
//! trained along as the seed's Distiller does), on every kernel family. Each step compares the
//! loss, every parameter's gradient, and every parameter and Adam moment after the update, of
//! every model the step trains.
//!
//! Each step starts the reference from the device's weights and moments as they were before
//! it, so a difference shows in the step that makes it rather than compounding. Where the
//! backward pass depends on a comparison of forward values (a pooling window's two largest
//! inputs, a LeakyReLU input's sign), values equal up to rounding may decide either way: the
//! reference routes the gradient by the device's decisions, after checking that each one that
//! differs from its own is such a tie.

mod common;

use common::max_rel_error;
use kd_wgpu::data::{Split, IMAGE_SIDE, NUM_CLASSES};
use kd_wgpu::gpu::{Gpu, Tensor};
use kd_wgpu::model::reference::{self, Batch, Route, TrainState};
use kd_wgpu::model::{Architecture, Conv2D, Dense, Dropout, Layer, LeakyReLU, MaxPooling2D, Mode};
use kd_wgpu::ops::adam::AdamConfig;
use kd_wgpu::ops::batch::reference::{offsets, translate};
use kd_wgpu::ops::batch::Shift;
use kd_wgpu::train::{DeviceData, Distiller, Feed, Loss, Model, Plan};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Largest relative error allowed (|device - reference| / max(|reference|, mean |reference|),
/// per tensor): the batch's mean loss, every gradient, Adam's moments after the update, and
/// the weights after it. Largest seen on lavapipe over seven runs: loss 2.7e-5, gradients
/// 7.8e-5, moments 7.6e-5, weights 7.0e-4. The distillation terms subtract nearly equal f32
/// numbers (p_s - p_t, and ln p_t - ln p_s for the teacher's gradient), which an untrained
/// pair at T = 10 makes nearly equal indeed. The weights' bound is wider because Adam divides
/// m by sqrt(v) + 1e-7: where a gradient is a few millionths, its rounding moves the step up
/// to ~80 times as much.
const LOSS_BOUND: f64 = 1e-4;
const GRADIENT_BOUND: f64 = 2e-4;
const MOMENT_BOUND: f64 = 2e-4;
const WEIGHT_BOUND: f64 = 2e-3;
/// A device's decision may differ from the reference's where the values compared are equal
/// within this, relative to their magnitude floored by the layer's mean input magnitude.
const TIE_BOUND: f64 = 1e-5;

struct Case {
    arch: Architecture,
    loss: Loss,
    samples: usize,
    batch: usize,
    /// A teacher trained along with the student, as the seed's Distiller does.
    co_trained: Option<Architecture>,
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

/// The device's routing decisions for model `which`, each checked against the reference's
/// forward pass from the same weights: a pooling winner that differs must be a maximum of its
/// window within rounding, a LeakyReLU sign that differs must belong to an input within
/// rounding of zero. Returns the device's routes and how many of its decisions were such ties.
fn device_routes(gpu: &Gpu, plan: &Plan, which: usize, state: &TrainState, batch: &Batch) -> (Vec<Route>, usize) {
    // The co-trained teacher runs as the Distiller calls it, with training=False.
    let mode = if which == 0 { Mode::Train } else { Mode::Evaluate };
    let fwd = reference::forward(&state.arch, &state.weights, batch, state.run(mode));
    let mut routes = fwd.routes.clone();
    let mut ties = 0;
    for (i, route) in routes.iter_mut().enumerate() {
        let input = fwd.input(batch, i);
        let mean = input.iter().map(|v| v.abs() as f64).sum::<f64>() / input.len() as f64;
        match route {
            Route::Winners(ours) => {
                let device = plan.saved(which, i).unwrap().read_u32(gpu).unwrap()[..ours.len()].to_vec();
                for (o, (&d, &r)) in device.iter().zip(ours.iter()).enumerate() {
                    if d != r {
                        let (dv, rv) = (input[d as usize] as f64, input[r as usize] as f64);
                        let gap = (rv - dv) / rv.abs().max(mean);
                        assert!(
                            gap <= TIE_BOUND,
                            "layer {i}, output {o}: device winner {d} ({dv}) is no maximum ({rv})"
                        );
                        ties += 1;
                    }
                }
                *ours = device;
            }
            Route::Positive(ours) => {
                let output = plan.output(which, i).unwrap().read_f32(gpu).unwrap();
                let device: Vec<bool> = output[..ours.len()].iter().map(|&y| y > 0.0).collect();
                for (o, (&d, &r)) in device.iter().zip(ours.iter()).enumerate() {
                    if d != r {
                        let x = input[o] as f64;
                        assert!(x.abs() <= TIE_BOUND * mean, "layer {i}, element {o}: sign differs at {x}");
                        ties += 1;
                    }
                }
                *ours = device;
            }
            Route::Fixed => {}
        }
    }
    (routes, ties)
}

/// Compares one tensor family (gradients, weights, moments) tensor by tensor; returns the
/// largest error.
fn compare(what: &str, arch: &Architecture, got: &[f32], want: &[f32], bound: f64) -> f64 {
    let mut worst: f64 = 0.0;
    for p in arch.params() {
        let e = max_rel_error(&got[p.range()], &want[p.range()]);
        assert!(e <= bound, "{what} of {} {}: max relative error {e:.3e} exceeds {bound:.0e}", arch.name(), p.name);
        worst = worst.max(e);
    }
    worst
}

/// The batch of `step` in `order`: images scaled as the device scales them (a table of
/// f32(byte) / 255) and moved by `shift`'s offsets (Adam's t is step + 1), labels, and the
/// teacher's rows of the logits table.
fn batch_rows(
    train: &Split,
    table: &[f32],
    order: &[u32],
    (step, b): (usize, usize),
    shift: Shift,
) -> (Vec<f32>, Vec<u32>, Vec<f32>) {
    let rows = b.min(order.len() - step * b);
    let picked = &order[step * b..step * b + rows];
    let pixels = IMAGE_SIDE * IMAGE_SIDE;
    let images = picked
        .iter()
        .enumerate()
        .flat_map(|(i, &s)| {
            let image: Vec<f32> =
                train.images[s as usize * pixels..][..pixels].iter().map(|&p| p as f32 / 255.0).collect();
            match shift.pixels {
                0 => image,
                _ => translate(&image, IMAGE_SIDE, offsets(shift, step as u32 + 1, i)),
            }
        })
        .collect();
    let labels = picked.iter().map(|&s| train.labels[s as usize] as u32).collect();
    let teacher = picked.iter().flat_map(|&s| table[s as usize * NUM_CLASSES..][..NUM_CLASSES].to_vec()).collect();
    (images, labels, teacher)
}

/// Model `which` of the plan as it stands: weights, moments, and t for the coming step.
fn device_state(gpu: &Gpu, plan: &Plan, model: &Model, which: usize, t: u32) -> TrainState {
    let (m, v) = plan.adam_moments(which).unwrap();
    TrainState {
        arch: model.arch.clone(),
        seed: model.seed,
        weights: model.read_flat(gpu).unwrap(),
        m: m.read_f32(gpu).unwrap(),
        v: v.read_f32(gpu).unwrap(),
        t,
    }
}

fn run_case(gpu: &Gpu, case: &Case, rng: &mut ChaCha8Rng) {
    run_shifted_case(gpu, case, 0, rng)
}

/// `case` with its (student's) training images moved by up to `shift` pixels.
fn run_shifted_case(gpu: &Gpu, case: &Case, shift: u32, rng: &mut ChaCha8Rng) {
    let (arch, samples, b) = (&case.arch, case.samples, case.batch);
    let split = |rng: &mut ChaCha8Rng| Split {
        images: (0..samples * IMAGE_SIDE * IMAGE_SIDE).map(|_| rng.random()).collect(),
        labels: (0..samples).map(|_| rng.random_range(0..NUM_CLASSES as u8)).collect(),
    };
    let (train, test) = (split(rng), split(rng));
    let data = DeviceData::upload(gpu, &train, &test).unwrap();
    let table: Vec<f32> = (0..samples * NUM_CLASSES).map(|_| rng.random_range(-6.0..6.0)).collect();
    let table_t = Tensor::from_f32(gpu, "teacher logits", &[samples, NUM_CLASSES], &table).unwrap();
    let from_table = matches!(case.loss, Loss::Distillation { .. }) && case.co_trained.is_none();
    let feed = Feed { data: &data, split: &data.train, teacher_logits: from_table.then_some(&table_t) };
    let adam = AdamConfig::default();
    let mut models =
        vec![Model::new(gpu, arch, &initial_weights(arch, rng)).unwrap().seeded(rng.random()).augmented(shift)];
    if let Some(teacher) = &case.co_trained {
        models.push(Model::new(gpu, teacher, &initial_weights(teacher, rng)).unwrap().seeded(rng.random()));
    }
    let plan = match (&case.co_trained, case.loss) {
        (Some(_), Loss::Distillation { alpha, temperature }) => {
            let distiller = Distiller { student: &models[0], teacher: &models[1], alpha, temperature };
            Plan::distiller(gpu, "whole step", &distiller, &feed, b, &adam).unwrap()
        }
        _ => Plan::train(gpu, "whole step", &models[0], case.loss, &feed, b, &adam).unwrap(),
    };
    let mut order: Vec<u32> = (0..samples as u32).collect();
    order.shuffle(rng);
    plan.begin_epoch(gpu, &order).unwrap();

    let mut worst = vec![[0f64; 4]; models.len()];
    for step in 0..samples.div_ceil(b) {
        let shift = Shift { pixels: shift, seed: models[0].seed };
        let (images, labels, teacher) = batch_rows(&train, &table, &order, (step, b), shift);
        let rows = labels.len();
        let batch =
            Batch { images: &images, labels: &labels, teacher_logits: from_table.then_some(&teacher[..]), rows };
        let mut states: Vec<TrainState> =
            models.iter().enumerate().map(|(w, m)| device_state(gpu, &plan, m, w, step as u32 + 1)).collect();
        plan.step(gpu).unwrap();
        gpu.wait().unwrap();

        let (routes, ties): (Vec<_>, Vec<usize>) =
            states.iter().enumerate().map(|(w, s)| device_routes(gpu, &plan, w, s, &batch)).unzip();
        let outcomes = match (states.as_mut_slice(), case.loss) {
            ([student, teacher], Loss::Distillation { alpha, temperature }) => {
                let routes = [Some(&routes[0][..]), Some(&routes[1][..])];
                Vec::from(reference::distiller_step(student, teacher, &batch, (alpha, temperature), &adam, routes))
            }
            ([model], loss) => vec![reference::train_step(model, &batch, loss, &adam, Some(&routes[0]))],
            _ => unreachable!("one model, or a student and its co-trained teacher"),
        };

        let metrics = plan.read_metrics(gpu, step + 1).unwrap();
        let loss = metrics[2 * step] as f64 / rows as f64;
        let loss_error = (loss - outcomes[0].loss).abs() / outcomes[0].loss.abs();
        assert!(loss_error <= LOSS_BOUND, "step {}: loss {loss} against {}", step + 1, outcomes[0].loss);
        for (w, ((model, state), want)) in models.iter().zip(&states).zip(&outcomes).enumerate() {
            let a = &model.arch;
            let (m, v) = plan.adam_moments(w).unwrap();
            let grads = plan.gradients(w).unwrap().read_f32(gpu).unwrap();
            let errors = [
                loss_error,
                compare("gradient", a, &grads, &want.grads, GRADIENT_BOUND),
                compare("updated weight", a, &model.read_flat(gpu).unwrap(), &state.weights, WEIGHT_BOUND),
                compare("Adam moment m", a, &m.read_f32(gpu).unwrap(), &state.m, MOMENT_BOUND).max(compare(
                    "Adam moment v",
                    a,
                    &v.read_f32(gpu).unwrap(),
                    &state.v,
                    MOMENT_BOUND,
                )),
            ];
            for (worst, e) in worst[w].iter_mut().zip(errors) {
                *worst = worst.max(e);
            }
        }
        println!("{} step {}: {rows} rows, loss {loss:.6}, ties {ties:?}", arch.name(), step + 1);
    }
    for (model, worst) in models.iter().zip(&worst) {
        println!(
            "{} ({:?}, {:?}{}): largest relative errors: loss {:.1e}, gradients {:.1e}, weights {:.1e}, moments {:.1e}",
            model.arch.name(),
            gpu.family(),
            case.loss,
            if case.co_trained.is_some() { ", teacher co-trained" } else { "" },
            worst[0],
            worst[1],
            worst[2],
            worst[3]
        );
    }
}

#[test]
fn three_training_steps_match_the_cpu_reference() {
    let mut rng = common::rng("whole step");
    let distillation = Loss::Distillation { alpha: 0.1, temperature: 10.0 };
    let student = |c: [usize; 2]| Architecture::seed("student", c).unwrap();
    let cases = [
        Case { arch: Architecture::teacher(), loss: Loss::CrossEntropy, samples: 13, batch: 5, co_trained: None },
        Case { arch: student([8, 12]), loss: distillation, samples: 70, batch: 32, co_trained: None },
        Case { arch: student([3, 5]), loss: distillation, samples: 11, batch: 4, co_trained: None },
        // The seed's Distiller: the teacher learns too (a narrower one keeps the reference quick).
        Case {
            arch: student([8, 12]),
            loss: distillation,
            samples: 70,
            batch: 32,
            co_trained: Some(Architecture::seed("teacher", [24, 44]).unwrap()),
        },
    ];
    for gpu in common::variants() {
        for case in &cases {
            run_case(gpu, case, &mut rng);
        }
    }
}

/// Beyond the seed's list: ReLU (fused into a convolution, and after a Dense), Dropout in
/// training (the device's masks against the reference's, drawn from the same seed and step), a
/// hidden Dense, a LeakyReLU on its own, and a pool whose backward pass goes through a ReLU.
fn dropout_network() -> Architecture {
    let layers = vec![
        Layer::Conv2D(Conv2D { filters: 8, kernel: 3, stride: 2 }),
        Layer::ReLU,
        Layer::MaxPooling2D(MaxPooling2D { size: 2, stride: 1 }),
        Layer::Conv2D(Conv2D { filters: 6, kernel: 3, stride: 2 }),
        Layer::Dropout(Dropout { rate: 0.3 }),
        Layer::LeakyReLU(LeakyReLU { slope: 0.1 }),
        Layer::Flatten,
        Layer::Dense(Dense { units: 24 }),
        Layer::ReLU,
        Layer::Dropout(Dropout { rate: 0.5 }),
        Layer::Dense(Dense { units: 10 }),
    ];
    Architecture::new("dropout net", layers).unwrap()
}

/// No pooling: two strided convolutions, the second with a ReLU in its epilogue, and a 5x5 kernel.
fn poolless_network() -> Architecture {
    let layers = vec![
        Layer::Conv2D(Conv2D { filters: 4, kernel: 5, stride: 2 }),
        Layer::LeakyReLU(LeakyReLU { slope: 0.2 }),
        Layer::Conv2D(Conv2D { filters: 12, kernel: 3, stride: 2 }),
        Layer::ReLU,
        Layer::Flatten,
        Layer::Dense(Dense { units: 10 }),
    ];
    Architecture::new("poolless net", layers).unwrap()
}

#[test]
fn three_training_steps_of_other_networks_match_the_cpu_reference() {
    let mut rng = common::rng("whole step, other networks");
    let distillation = Loss::Distillation { alpha: 0.3, temperature: 4.0 };
    let cases = [
        Case { arch: dropout_network(), loss: Loss::CrossEntropy, samples: 21, batch: 8, co_trained: None },
        Case { arch: poolless_network(), loss: distillation, samples: 13, batch: 6, co_trained: None },
        // A co-trained teacher with Dropout runs it as the identity (training=False).
        Case {
            arch: poolless_network(),
            loss: distillation,
            samples: 13,
            batch: 6,
            co_trained: Some(dropout_network()),
        },
    ];
    for gpu in common::variants() {
        for case in &cases {
            run_case(gpu, case, &mut rng);
        }
    }
}

/// Random translations in the whole step: the device's moved images are the reference's (the
/// same offsets, from the model's seed and Adam's t), through a plain step and the seed's
/// Distiller, whose teacher reads the student's moved batch.
#[test]
fn three_augmented_training_steps_match_the_cpu_reference() {
    let mut rng = common::rng("whole step, augmented");
    let distillation = Loss::Distillation { alpha: 0.3, temperature: 4.0 };
    let cases = [
        (Case { arch: poolless_network(), loss: Loss::CrossEntropy, samples: 13, batch: 6, co_trained: None }, 3),
        (
            Case {
                arch: poolless_network(),
                loss: distillation,
                samples: 13,
                batch: 6,
                co_trained: Some(Architecture::seed("teacher", [6, 10]).unwrap()),
            },
            2,
        ),
    ];
    for gpu in common::variants() {
        for (case, shift) in &cases {
            run_shifted_case(gpu, case, *shift, &mut rng);
        }
    }
}
