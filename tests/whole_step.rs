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
use kd_wgpu::model::{
    Architecture, AveragePooling2D, Conv2D, Dense, Dims, Dropout, Layer, LeakyReLU, MaxPooling2D, Mode, Padding,
};
use kd_wgpu::ops::adam::AdamConfig;
use kd_wgpu::ops::batch::reference::{offsets, translate};
use kd_wgpu::ops::batch::Shift;
use kd_wgpu::ops::loss::{Distill, UNLABELLED};
use kd_wgpu::train::{DeviceData, Distiller, FeatureDistiller, FeatureSpec, FeatureTeacher, Feed, Loss, Model, Plan};
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
/// The scale below which a loss's error is taken as absolute: a distillation loss between two
/// networks that both start near uniform can be ~1e-3 (a batch without labelled rows has only
/// the KL term), while f32 rounds its p·log p sums, of order 1, to ~1e-7.
const LOSS_FLOOR: f64 = 1e-2;

/// The loss's error relative to the reference's, or to [`LOSS_FLOOR`] below it.
fn loss_error(got: f64, want: f64) -> f64 {
    (got - want).abs() / want.abs().max(LOSS_FLOOR)
}
const GRADIENT_BOUND: f64 = 2e-4;
const MOMENT_BOUND: f64 = 2e-4;
/// A co-trained teacher learns from the distillation term alone: the difference of two nearly
/// equal softened distributions (both networks start near uniform), whose cancellation
/// magnifies f32 rounding in its gradient (in 44 random seeds up to 4.9e-4 of the mean
/// magnitude, at the last step's single row; the student's stay below 1e-5). Its gradient and
/// moment bounds are this many times the student's: a wrong element is still off by far more.
const CO_TRAINED_TEACHER_SLACK: f64 = 10.0;
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
    /// Only this many random samples keep their labels (the distillation loss's --labelled).
    labelled: Option<usize>,
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
/// f32(byte) / 255) and moved by `shift`'s offsets (Adam's t is step + 1), labels (from
/// `labels`, flags included), and the teacher's rows of the logits table.
fn batch_rows(
    train: &Split,
    labels: &[u32],
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
    let labels = picked.iter().map(|&s| labels[s as usize]).collect();
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
    let mut data = DeviceData::upload(gpu, &train, &test).unwrap();
    // The labels the loss reads: all, or the labelled subset's with the others flagged.
    let mut labels: Vec<u32> = train.labels.iter().map(|&l| l as u32).collect();
    if let Some(n) = case.labelled {
        let mut subset: Vec<u32> = (0..samples as u32).collect();
        subset.shuffle(rng);
        subset.truncate(n);
        data.keep_labels_of(gpu, &train, &subset).unwrap();
        for (i, l) in labels.iter_mut().enumerate() {
            if !subset.contains(&(i as u32)) {
                *l |= UNLABELLED;
            }
        }
    }
    let split = data.partly_labelled.as_ref().unwrap_or(&data.train);
    let table: Vec<f32> = (0..samples * NUM_CLASSES).map(|_| rng.random_range(-6.0..6.0)).collect();
    let table_t = Tensor::from_f32(gpu, "teacher logits", &[samples, NUM_CLASSES], &table).unwrap();
    let from_table = matches!(case.loss, Loss::Distillation { .. }) && case.co_trained.is_none();
    let feed = Feed { data: &data, split, teacher_logits: from_table.then_some(&table_t) };
    let adam = AdamConfig::default();
    let mut models =
        vec![Model::new(gpu, arch, &initial_weights(arch, rng)).unwrap().seeded(rng.random()).augmented(shift)];
    if let Some(teacher) = &case.co_trained {
        models.push(Model::new(gpu, teacher, &initial_weights(teacher, rng)).unwrap().seeded(rng.random()));
    }
    let plan = match (&case.co_trained, case.loss) {
        (Some(_), Loss::Distillation(distill)) => {
            let distiller = Distiller { student: &models[0], teacher: &models[1], distill };
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
        let (images, labels, teacher) = batch_rows(&train, &labels, &table, &order, (step, b), shift);
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
            ([student, teacher], Loss::Distillation(distill)) => {
                let routes = [Some(&routes[0][..]), Some(&routes[1][..])];
                Vec::from(reference::distiller_step(student, teacher, &batch, &distill, &adam, routes))
            }
            ([model], loss) => vec![reference::train_step(model, &batch, loss, &adam, Some(&routes[0]))],
            _ => unreachable!("one model, or a student and its co-trained teacher"),
        };

        let metrics = plan.read_metrics(gpu, step + 1).unwrap();
        let loss = metrics[plan.metrics_width() * step] as f64 / rows as f64;
        let loss_error = loss_error(loss, outcomes[0].loss);
        assert!(loss_error <= LOSS_BOUND, "step {}: loss {loss} against {}", step + 1, outcomes[0].loss);
        for (w, ((model, state), want)) in models.iter().zip(&states).zip(&outcomes).enumerate() {
            let a = &model.arch;
            let (m, v) = plan.adam_moments(w).unwrap();
            let grads = plan.gradients(w).unwrap().read_f32(gpu).unwrap();
            let slack = if w == 1 { CO_TRAINED_TEACHER_SLACK } else { 1.0 };
            let errors =
                [
                    loss_error,
                    compare("gradient", a, &grads, &want.grads, slack * GRADIENT_BOUND),
                    compare("updated weight", a, &model.read_flat(gpu).unwrap(), &state.weights, WEIGHT_BOUND),
                    compare("Adam moment m", a, &m.read_f32(gpu).unwrap(), &state.m, slack * MOMENT_BOUND)
                        .max(compare("Adam moment v", a, &v.read_f32(gpu).unwrap(), &state.v, slack * MOMENT_BOUND)),
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
    let distillation = Loss::Distillation(Distill::kl(0.1, 10.0));
    let mixed = Loss::Distillation(Distill { alpha: 0.4, temperature: 3.0, kl: 0.7, mse: 0.5 });
    let student = |c: [usize; 2]| Architecture::seed("student", c).unwrap();
    let cases = [
        Case {
            arch: Architecture::teacher(),
            loss: Loss::CrossEntropy,
            samples: 13,
            batch: 5,
            co_trained: None,
            labelled: None,
        },
        Case { arch: student([8, 12]), loss: distillation, samples: 70, batch: 32, co_trained: None, labelled: None },
        Case { arch: student([3, 5]), loss: distillation, samples: 11, batch: 4, co_trained: None, labelled: None },
        // The seed's Distiller: the teacher learns too (a narrower one keeps the reference quick).
        Case {
            arch: student([8, 12]),
            loss: distillation,
            samples: 70,
            batch: 32,
            co_trained: Some(Architecture::seed("teacher", [24, 44]).unwrap()),
            labelled: None,
        },
        // keras.distillation's terms beside the KL one, and few labels: the hard term over a
        // batch's labelled rows only (--labelled).
        Case { arch: student([8, 12]), loss: mixed, samples: 70, batch: 32, co_trained: None, labelled: Some(9) },
        Case {
            arch: student([3, 5]),
            loss: mixed,
            samples: 11,
            batch: 4,
            co_trained: Some(Architecture::seed("teacher", [6, 10]).unwrap()),
            labelled: Some(3),
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
        Layer::Conv2D(Conv2D { filters: 8, kernel: 3, stride: 2, padding: Padding::Same }),
        Layer::ReLU,
        Layer::MaxPooling2D(MaxPooling2D { size: 2, stride: 1, padding: Padding::Same }),
        Layer::Conv2D(Conv2D { filters: 6, kernel: 3, stride: 2, padding: Padding::Same }),
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
        Layer::Conv2D(Conv2D { filters: 4, kernel: 5, stride: 2, padding: Padding::Same }),
        Layer::LeakyReLU(LeakyReLU { slope: 0.2 }),
        Layer::Conv2D(Conv2D { filters: 12, kernel: 3, stride: 2, padding: Padding::Same }),
        Layer::ReLU,
        Layer::Flatten,
        Layer::Dense(Dense { units: 10 }),
    ];
    Architecture::new("poolless net", layers).unwrap()
}

#[test]
fn three_training_steps_of_other_networks_match_the_cpu_reference() {
    let mut rng = common::rng("whole step, other networks");
    let distillation = Loss::Distillation(Distill::kl(0.3, 4.0));
    let cases = [
        Case {
            arch: dropout_network(),
            loss: Loss::CrossEntropy,
            samples: 21,
            batch: 8,
            co_trained: None,
            labelled: None,
        },
        Case { arch: poolless_network(), loss: distillation, samples: 13, batch: 6, co_trained: None, labelled: None },
        // A co-trained teacher with Dropout runs it as the identity (training=False).
        Case {
            arch: poolless_network(),
            loss: distillation,
            samples: 13,
            batch: 6,
            co_trained: Some(dropout_network()),
            labelled: None,
        },
    ];
    for gpu in common::variants() {
        for case in &cases {
            run_case(gpu, case, &mut rng);
        }
    }
}

/// Global average pooling in place of Flatten: Conv2D ("valid") -> ReLU (in the product's
/// epilogue) -> GlobalAveragePooling2D -> Dense(10).
fn global_average_network() -> Architecture {
    let layers = vec![
        Layer::Conv2D(Conv2D { filters: 8, kernel: 3, stride: 1, padding: Padding::Valid }),
        Layer::ReLU,
        Layer::GlobalAveragePooling2D,
        Layer::Dense(Dense { units: 10 }),
    ];
    Architecture::new("global average net", layers).unwrap()
}

/// Global max pooling after two convolutions, a Flatten after it (a no-op, as in Keras) and a
/// hidden Dense layer.
fn global_max_network() -> Architecture {
    let layers = vec![
        Layer::Conv2D(Conv2D { filters: 6, kernel: 3, stride: 2, padding: Padding::Same }),
        Layer::LeakyReLU(LeakyReLU { slope: 0.2 }),
        Layer::Conv2D(Conv2D { filters: 12, kernel: 3, stride: 2, padding: Padding::Valid }),
        Layer::GlobalMaxPooling2D,
        Layer::Flatten,
        Layer::Dense(Dense { units: 16 }),
        Layer::ReLU,
        Layer::Dense(Dense { units: 10 }),
    ];
    Architecture::new("global max net", layers).unwrap()
}

/// Average pools: "same" after a LeakyReLU (border windows of fewer cells), "valid" at stride 2
/// after a ReLU (the last row and column unread).
fn average_pooling_network() -> Architecture {
    let (same, valid) = (Padding::Same, Padding::Valid);
    let layers = vec![
        Layer::Conv2D(Conv2D { filters: 6, kernel: 3, stride: 2, padding: same }),
        Layer::LeakyReLU(LeakyReLU { slope: 0.2 }),
        Layer::AveragePooling2D(AveragePooling2D { size: 3, stride: 2, padding: same }),
        Layer::Conv2D(Conv2D { filters: 8, kernel: 3, stride: 1, padding: valid }),
        Layer::ReLU,
        Layer::AveragePooling2D(AveragePooling2D { size: 2, stride: 2, padding: valid }),
        Layer::Flatten,
        Layer::Dense(Dense { units: 10 }),
    ];
    Architecture::new("average pooling net", layers).unwrap()
}

#[test]
fn three_training_steps_of_average_and_global_pooling_networks_match_the_cpu_reference() {
    let mut rng = common::rng("whole step, average and global pooling");
    let distillation = Loss::Distillation(Distill::kl(0.3, 4.0));
    let gap = global_average_network();
    let dims: Vec<Dims> = gap.walk().iter().map(|l| l.output).collect();
    assert_eq!(dims[1], Dims::Image { h: 26, w: 26, c: 8 });
    assert_eq!(dims[2], Dims::Vector(8));
    assert_eq!(global_max_network().walk()[3].output, Dims::Vector(12));
    let avg: Vec<Dims> = average_pooling_network().walk().iter().map(|l| l.output).collect();
    assert_eq!((avg[2], avg[5]), (Dims::Image { h: 7, w: 7, c: 6 }, Dims::Image { h: 2, w: 2, c: 8 }));
    let cases = [
        Case { arch: gap, loss: Loss::CrossEntropy, samples: 21, batch: 8, co_trained: None, labelled: None },
        Case {
            arch: global_max_network(),
            loss: distillation,
            samples: 13,
            batch: 6,
            co_trained: None,
            labelled: None,
        },
        Case {
            arch: global_average_network(),
            loss: distillation,
            samples: 13,
            batch: 6,
            co_trained: Some(global_max_network()),
            labelled: None,
        },
        Case {
            arch: average_pooling_network(),
            loss: Loss::CrossEntropy,
            samples: 21,
            batch: 8,
            co_trained: None,
            labelled: None,
        },
    ];
    for gpu in common::variants() {
        for case in &cases {
            run_case(gpu, case, &mut rng);
        }
    }
}

/// keras.io's "Simple MNIST convnet", narrower: "valid" padding, 2x2 pools at stride 2 (the
/// second leaves its input's last row and column unread), Dropout, and the final softmax that
/// the losses apply to the logits.
fn valid_network() -> Architecture {
    let valid = Padding::Valid;
    let layers = vec![
        Layer::Conv2D(Conv2D { filters: 8, kernel: 3, stride: 1, padding: valid }),
        Layer::ReLU,
        Layer::MaxPooling2D(MaxPooling2D { size: 2, stride: 2, padding: valid }),
        Layer::Conv2D(Conv2D { filters: 12, kernel: 3, stride: 1, padding: valid }),
        Layer::ReLU,
        Layer::MaxPooling2D(MaxPooling2D { size: 2, stride: 2, padding: valid }),
        Layer::Flatten,
        Layer::Dropout(Dropout { rate: 0.5 }),
        Layer::Dense(Dense { units: 10 }),
        Layer::Softmax,
    ];
    Architecture::new("valid net", layers).unwrap()
}

/// "valid" windows that leave input rows unread: a 5x5 kernel at stride 2 (28 -> 12), a 3x3
/// pool at stride 2 (12 -> 5, through a LeakyReLU), a "same" convolution, a 2x2 pool at
/// stride 2 (5 -> 2).
fn odd_valid_network() -> Architecture {
    let (valid, same) = (Padding::Valid, Padding::Same);
    let layers = vec![
        Layer::Conv2D(Conv2D { filters: 5, kernel: 5, stride: 2, padding: valid }),
        Layer::LeakyReLU(LeakyReLU { slope: 0.2 }),
        Layer::MaxPooling2D(MaxPooling2D { size: 3, stride: 2, padding: valid }),
        Layer::Conv2D(Conv2D { filters: 6, kernel: 2, stride: 1, padding: same }),
        Layer::MaxPooling2D(MaxPooling2D { size: 2, stride: 2, padding: valid }),
        Layer::Flatten,
        Layer::Dense(Dense { units: 10 }),
    ];
    Architecture::new("odd valid net", layers).unwrap()
}

#[test]
fn three_training_steps_of_valid_padding_networks_match_the_cpu_reference() {
    let mut rng = common::rng("whole step, valid padding");
    let distillation = Loss::Distillation(Distill::kl(0.3, 4.0));
    let arch = valid_network();
    let dims: Vec<Dims> = arch.walk().iter().map(|l| l.output).collect();
    assert_eq!(dims[2], Dims::Image { h: 13, w: 13, c: 8 });
    assert_eq!(dims[5], Dims::Image { h: 5, w: 5, c: 12 });
    assert_eq!(odd_valid_network().walk()[4].output, Dims::Image { h: 2, w: 2, c: 6 });
    let cases = [
        Case { arch, loss: Loss::CrossEntropy, samples: 21, batch: 8, co_trained: None, labelled: None },
        Case { arch: odd_valid_network(), loss: distillation, samples: 13, batch: 6, co_trained: None, labelled: None },
        // The softmax's network as a co-trained teacher: its logits, not its probabilities.
        Case {
            arch: odd_valid_network(),
            loss: distillation,
            samples: 13,
            batch: 6,
            co_trained: Some(valid_network()),
            labelled: None,
        },
    ];
    for gpu in common::variants() {
        for case in &cases {
            run_case(gpu, case, &mut rng);
        }
    }
}

/// keras.distillation's Distiller with a feature term beside the logits terms: the frozen
/// teacher run at every step, the feature MSE (through the learned projection, or between
/// layers of one shape), its gradient joining the student's at its layer, Adam for the student
/// and the projection, against the CPU network.
#[test]
fn three_feature_distillation_steps_match_the_cpu_reference() {
    let mut rng = common::rng("whole step, feature term");
    let net = |name: &str, c: [usize; 2]| Architecture::seed(name, c).unwrap();
    let distill = Distill { alpha: 0.4, temperature: 3.0, kl: 1.0, mse: 0.3 };
    // (student, teacher, feature, samples, batch, labelled): conv2d_1 (layer 3) through a
    // projection of 12 to 44 channels (texel-sized), and of 5 to 10 (not); the pooled maps of
    // equal shape (layer 2) without one.
    let projected = FeatureSpec { teacher_layer: 3, student_layer: 3, weight: 0.5, project: true };
    let direct = FeatureSpec { teacher_layer: 2, student_layer: 2, weight: 2.0, project: false };
    let cases = [
        (net("student", [8, 12]), net("teacher", [24, 44]), projected, 70, 32, None),
        (net("student", [6, 5]), net("teacher", [6, 10]), direct, 11, 4, Some(3)),
        (net("student", [6, 5]), net("teacher", [6, 10]), projected, 13, 5, None),
    ];
    for gpu in common::variants() {
        for (student_arch, teacher_arch, feature, samples, b, labelled) in &cases {
            let (samples, b) = (*samples, *b);
            let split = |rng: &mut ChaCha8Rng| Split {
                images: (0..samples * IMAGE_SIDE * IMAGE_SIDE).map(|_| rng.random()).collect(),
                labels: (0..samples).map(|_| rng.random_range(0..NUM_CLASSES as u8)).collect(),
            };
            let (train, test) = (split(&mut rng), split(&mut rng));
            let mut data = DeviceData::upload(gpu, &train, &test).unwrap();
            let mut labels: Vec<u32> = train.labels.iter().map(|&l| l as u32).collect();
            if let Some(n) = labelled {
                let subset: Vec<u32> = (0..*n as u32).map(|i| i * 3).collect();
                data.keep_labels_of(gpu, &train, &subset).unwrap();
                labels.iter_mut().enumerate().filter(|(i, _)| !subset.contains(&(*i as u32))).for_each(|(_, l)| {
                    *l |= UNLABELLED;
                });
            }
            let split = data.partly_labelled.as_ref().unwrap_or(&data.train);
            let feed = Feed { data: &data, split, teacher_logits: None };
            let student = Model::new(gpu, student_arch, &initial_weights(student_arch, &mut rng)).unwrap();
            let teacher = Model::new(gpu, teacher_arch, &initial_weights(teacher_arch, &mut rng)).unwrap();
            let (s_dims, t_dims) =
                (student_arch.walk()[feature.student_layer].output, teacher_arch.walk()[feature.teacher_layer].output);
            let projection =
                feature.project.then(|| Model::projection(gpu, s_dims, t_dims.channels(), rng.random()).unwrap());
            let fd = FeatureDistiller {
                student: &student,
                teacher: FeatureTeacher::EachStep(&teacher),
                distill,
                feature: *feature,
                projection: projection.as_ref(),
            };
            let adam = AdamConfig::default();
            let plan = Plan::feature_distiller(gpu, "feature step", &fd, &feed, b, &adam).unwrap();
            let mut order: Vec<u32> = (0..samples as u32).collect();
            order.shuffle(&mut rng);
            plan.begin_epoch(gpu, &order).unwrap();
            let teacher_state = frozen_state(gpu, &teacher);
            let table = vec![0.0; samples * NUM_CLASSES];
            for step in 0..samples.div_ceil(b).min(3) {
                let (images, labels, _) =
                    batch_rows(&train, &labels, &table, &order, (step, b), Shift { pixels: 0, seed: 0 });
                let rows = labels.len();
                let batch = Batch { images: &images, labels: &labels, teacher_logits: None, rows };
                let mut state = device_state(gpu, &plan, &student, 0, step as u32 + 1);
                let which = plan.projection_index();
                let mut proj_state =
                    projection.as_ref().map(|p| device_state(gpu, &plan, p, which.unwrap(), step as u32 + 1));
                plan.step(gpu).unwrap();
                gpu.wait().unwrap();
                let (routes, _) = device_routes(gpu, &plan, 0, &state, &batch);
                let (want, proj_grads) = reference::feature_distiller_step(
                    &mut state,
                    &teacher_state,
                    proj_state.as_mut(),
                    &batch,
                    (&distill, feature),
                    &adam,
                    Some(&routes),
                );
                let metrics = plan.read_metrics(gpu, step + 1).unwrap();
                let width = plan.metrics_width();
                let loss = metrics[width * step] as f64 / rows as f64;
                let loss_error = loss_error(loss, want.loss);
                let name =
                    format!("{} <- {} {:?}, step {}", student_arch.name(), teacher_arch.name(), feature, step + 1);
                assert!(loss_error <= LOSS_BOUND, "{name}: loss {loss} against {}", want.loss);
                let grads = plan.gradients(0).unwrap().read_f32(gpu).unwrap();
                compare("gradient", student_arch, &grads, &want.grads, GRADIENT_BOUND);
                compare("updated weight", student_arch, &student.read_flat(gpu).unwrap(), &state.weights, WEIGHT_BOUND);
                if let (Some((w, _, _)), Some(p)) = (plan.projection(), &proj_state) {
                    let got = w.read_f32(gpu).unwrap();
                    let e = max_rel_error(&got, &p.weights);
                    assert!(e <= WEIGHT_BOUND, "{name}: projection weights off by {e:.3e}");
                    assert!(
                        !proj_grads.is_empty() && proj_grads.iter().any(|&g| g != 0.0),
                        "{name}: no projection gradient"
                    );
                    // The projection trains as a model of the plan: its gradient and Adam step.
                    let grads = plan.gradients(which.unwrap()).unwrap().read_f32(gpu).unwrap();
                    compare("projection gradient", &p.arch, &grads, &proj_grads, GRADIENT_BOUND);
                    compare("projection weight", &p.arch, &got, &p.weights, WEIGHT_BOUND);
                    let (m, v) = plan.adam_moments(which.unwrap()).unwrap();
                    compare("projection adam m", &p.arch, &m.read_f32(gpu).unwrap(), &p.m, MOMENT_BOUND);
                    compare("projection adam v", &p.arch, &v.read_f32(gpu).unwrap(), &p.v, MOMENT_BOUND);
                }
                // The feature term's figure is recorded beside the logits terms.
                assert!(metrics[width * step + width - 1] > 0.0, "{name}: no feature term recorded");
                println!("{name}: loss {loss:.6} against {:.6}", want.loss);
            }
        }
    }
}

/// A frozen model's weights as the reference takes them (it never takes an Adam step).
fn frozen_state(gpu: &Gpu, model: &Model) -> TrainState {
    let n = model.arch.flat_len();
    TrainState {
        arch: model.arch.clone(),
        seed: model.seed,
        weights: model.read_flat(gpu).unwrap(),
        m: vec![0.0; n],
        v: vec![0.0; n],
        t: 1,
    }
}

/// Random translations in the whole step: the device's moved images are the reference's (the
/// same offsets, from the model's seed and Adam's t), through a plain step and the seed's
/// Distiller, whose teacher reads the student's moved batch.
#[test]
fn three_augmented_training_steps_match_the_cpu_reference() {
    let mut rng = common::rng("whole step, augmented");
    let distillation = Loss::Distillation(Distill::kl(0.3, 4.0));
    let cases = [
        (
            Case {
                arch: poolless_network(),
                loss: Loss::CrossEntropy,
                samples: 13,
                batch: 6,
                co_trained: None,
                labelled: None,
            },
            3,
        ),
        (
            Case {
                arch: poolless_network(),
                loss: distillation,
                samples: 13,
                batch: 6,
                co_trained: Some(Architecture::seed("teacher", [6, 10]).unwrap()),
                labelled: None,
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
