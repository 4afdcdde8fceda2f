//! `kd-wgpu bench`: every kernel of a training step at the models' real shapes, whole steps,
//! and a CPU matrix product of the teacher's main shape on the same machine for scale.

use crate::data::{Split, IMAGE_SIDE, NUM_CLASSES};
use crate::gpu::{self, timing, tune::TuneSummary, Force, Gpu, Tensor};
use crate::model::{Architecture, Layer};
use crate::ops::adam::AdamConfig;
use crate::ops::conv2d::{self, Cols};
use crate::ops::loss::Distill;
use crate::ops::KernelBias;
use crate::train::{DeviceData, FeatureDistiller, FeatureSpec, FeatureTable, FeatureTeacher, Feed, Loss, Model, Plan};
use anyhow::Result;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Debug, serde::Serialize)]
pub struct KernelTime {
    pub model: String,
    pub layer: String,
    pub kernel: String,
    pub workgroups: [u32; 3],
    pub seconds: f64,
    pub gflops: f64,
    pub gbytes_per_second: f64,
}

/// One matrix product of the teacher's largest convolution in one entry of the product.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ProductTime {
    pub product: String,
    pub entry: String,
    /// Whether the training plan runs this entry for this product on this device.
    pub chosen: bool,
    pub seconds: f64,
    pub gflops: f64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct StepTime {
    pub model: String,
    pub what: String,
    pub batch: usize,
    pub seconds: f64,
    pub samples_per_second: f64,
    pub gflops: f64,
}

/// A whole training step timed as one submission, against its kernels timed one by one.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StepParts {
    pub model: String,
    /// The kernels' times from the table, summed (each with its own texture copies).
    pub kernels_one_by_one_seconds: f64,
    #[serde(flatten)]
    pub step: timing::StepBreakdown,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchReport {
    pub adapter: String,
    pub family: gpu::KernelFamily,
    pub timestamps: bool,
    pub kernels: Vec<KernelTime>,
    /// The teacher's largest convolution's products in every entry of the device's family.
    pub products: Vec<ProductTime>,
    pub steps: Vec<StepTime>,
    /// Where a training step's time goes (device timestamps only).
    pub step_parts: Vec<StepParts>,
    /// What the tuner chose for the plans above, with each candidate's time when it was tuned.
    pub tuning: TuneSummary,
    /// CPU f32 matrix product at the teacher's conv2 shape (1568 x 512 x 2304), all cores.
    pub cpu_matmul_gflops: f64,
    /// From process start until the first `warmup_steps` teacher steps are done.
    pub startup_seconds: f64,
    pub warmup_steps: usize,
}

fn synthetic(samples: usize, seed: u64) -> Split {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Split {
        images: (0..samples * IMAGE_SIDE * IMAGE_SIDE).map(|_| rng.random()).collect(),
        labels: (0..samples).map(|_| rng.random_range(0..NUM_CLASSES as u8)).collect(),
    }
}

/// Times every kernel, then whole training and inference steps, of each model in `archs`.
/// `started` is when the process began: start-up time runs until the first model's first
/// steps are done.
pub fn run(
    gpu: &Gpu,
    archs: &[Architecture],
    batch: usize,
    reps: usize,
    steps: usize,
    feature: Option<(FeatureSpec, Distill)>,
    started: Instant,
) -> Result<BenchReport> {
    let mut startup_seconds = 0.0;
    let samples = batch * steps.max(1);
    let data = DeviceData::upload(gpu, &synthetic(samples, 1), &synthetic(samples, 2))?;
    let mut kernels = Vec::new();
    let mut step_times = Vec::new();
    let mut step_parts = Vec::new();
    let feed = Feed { data: &data, split: &data.train, teacher_logits: None };
    for arch in archs {
        let model = Model::new(gpu, arch, &arch.init_glorot(3))?;
        let plan = Plan::train(gpu, arch.name(), &model, Loss::CrossEntropy, &feed, batch, &AdamConfig::default())?;
        let order: Vec<u32> = (0..samples as u32).collect();
        plan.run_epoch(gpu, &order, 1, |_, _, _| {})?; // warm-up and a sane step state
        if startup_seconds == 0.0 {
            startup_seconds = started.elapsed().as_secs_f64();
        }
        time_dispatches(gpu, arch.name(), &plan, reps, &mut kernels, &mut step_parts)?;
        let stats = plan.run_epoch(gpu, &order, 1, |_, _, _| {})?;
        step_times.push(step_time(
            arch,
            "train step",
            batch,
            stats.seconds / stats.steps as f64,
            arch.train_flops(batch),
        ));
        let table = Tensor::zeros(gpu, "logits", &[samples, NUM_CLASSES])?;
        let infer = Plan::logits(gpu, "inference", &model, &feed, &table, batch)?;
        infer.run_epoch(gpu, &order, 1, |_, _, _| {})?;
        let stats = infer.run_epoch(gpu, &order, 1, |_, _, _| {})?;
        let seconds = stats.seconds / stats.steps as f64;
        step_times.push(step_time(arch, "forward step", batch, seconds, arch.forward_flops(batch)));
        // The same steps with every op in its built-in default, for the tuning's gain.
        if gpu.tuner().mode() != gpu::TuneMode::Off {
            gpu.tuner().force(Some(Force::Default));
            let untuned =
                Plan::train(gpu, arch.name(), &model, Loss::CrossEntropy, &feed, batch, &AdamConfig::default());
            gpu.tuner().force(None);
            let untuned = untuned?;
            untuned.run_epoch(gpu, &order, 1, |_, _, _| {})?;
            let stats = untuned.run_epoch(gpu, &order, 1, |_, _, _| {})?;
            let seconds = stats.seconds / stats.steps as f64;
            step_times.push(step_time(arch, "train step, untuned", batch, seconds, arch.train_flops(batch)));
        }
    }
    if let (Some((spec, distill)), [teacher, student, ..]) = (feature, archs) {
        let (teacher, student) =
            (Model::new(gpu, teacher, &teacher.init_glorot(3))?, Model::new(gpu, student, &student.init_glorot(4))?);
        let (t_layer, s_layer) = (&teacher.arch.walk()[spec.teacher_layer], &student.arch.walk()[spec.student_layer]);
        let projection = match spec.project {
            true => Some(Model::projection(gpu, s_layer.output, t_layer.output.channels(), 5)?),
            false => None,
        };
        let fd = FeatureDistiller {
            student: &student,
            teacher: FeatureTeacher::EachStep(&teacher),
            distill,
            feature: spec,
            projection: projection.as_ref(),
        };
        let plan = Plan::feature_distiller(gpu, "feature step", &fd, &feed, batch, &AdamConfig::default())?;
        let order: Vec<u32> = (0..samples as u32).collect();
        plan.run_epoch(gpu, &order, 1, |_, _, _| {})?;
        let what = format!("feature {}", s_layer.keras_name);
        time_dispatches(gpu, &what, &plan, reps, &mut kernels, &mut step_parts)?;
        let stats = plan.run_epoch(gpu, &order, 1, |_, _, _| {})?;
        let seconds = stats.seconds / stats.steps as f64;
        // The frozen teacher's forward pass and the student's training step.
        let flops = teacher.arch.forward_flops(batch) + student.arch.train_flops(batch);
        step_times.push(step_time(&student.arch, "feature distiller step", batch, seconds, flops));
        // The same step with the teacher's outputs from a table in memory (--feature-table-gib).
        let width = t_layer.output.len();
        let features = Arc::new(FeatureTable { width, rows: vec![0.5; samples * width] });
        let logits = Tensor::zeros(gpu, "logits", &[samples, NUM_CLASSES])?;
        let fd = FeatureDistiller { teacher: FeatureTeacher::Table(&teacher.arch, &features), ..fd };
        let feed = Feed { teacher_logits: Some(&logits), ..feed };
        let plan = Plan::feature_distiller(gpu, "feature step", &fd, &feed, batch, &AdamConfig::default())?;
        plan.run_epoch(gpu, &order, 1, |_, _, _| {})?;
        let stats = plan.run_epoch(gpu, &order, 1, |_, _, _| {})?;
        let seconds = stats.seconds / stats.steps as f64;
        let what = "feature distiller step, teacher outputs from memory";
        step_times.push(step_time(&student.arch, what, batch, seconds, student.arch.train_flops(batch)));
    }
    let products = match archs.first() {
        Some(arch) => product_entries(gpu, arch, batch, reps)?,
        None => Vec::new(),
    };
    Ok(BenchReport {
        adapter: gpu::describe(&gpu.info),
        family: gpu.family(),
        timestamps: gpu.has_timestamps(),
        kernels,
        products,
        steps: step_times,
        step_parts,
        tuning: gpu.tuner().summary(),
        cpu_matmul_gflops: cpu_matmul_gflops(),
        startup_seconds,
        warmup_steps: steps.max(1),
    })
}

/// Each dispatch of `plan`'s step timed alone into `kernels` (as `model`), and where the time of
/// the whole step goes into `step_parts`.
fn time_dispatches(
    gpu: &Gpu,
    model: &str,
    plan: &Plan,
    reps: usize,
    kernels: &mut Vec<KernelTime>,
    step_parts: &mut Vec<StepParts>,
) -> Result<()> {
    let first_kernel = kernels.len();
    for d in plan.dispatches() {
        let s = timing::median_seconds(gpu, &[d], reps)?;
        kernels.push(KernelTime {
            model: model.into(),
            layer: d.layer.clone(),
            kernel: d.kernel.clone(),
            workgroups: d.workgroups,
            seconds: s,
            gflops: d.flops / s / 1e9,
            gbytes_per_second: d.bytes / s / 1e9,
        });
    }
    let one_by_one = kernels[first_kernel..].iter().map(|k| k.seconds).sum();
    let all: Vec<&gpu::Dispatch> = plan.dispatches().iter().collect();
    if let Some(step) = timing::step_breakdown(gpu, &all, reps)? {
        step_parts.push(StepParts { model: model.into(), kernels_one_by_one_seconds: one_by_one, step });
    }
    Ok(())
}

/// The three products of `arch`'s largest convolution (forward, input and kernel gradients),
/// each in every entry the tuner may choose for it, reading the im2col
/// matrix written out or gathering it: the figures that set the tile rule of `ops::matmul` and
/// `conv2d::gathers_im2col`. Operands are zeros: the time does not depend on the values.
fn product_entries(gpu: &Gpu, arch: &Architecture, batch: usize, reps: usize) -> Result<Vec<ProductTime>> {
    let convs = arch.walk().into_iter().filter_map(|l| match l.layer {
        Layer::Conv2D(c) => Some((l.name, c.shape(l.input, batch))),
        _ => None,
    });
    let Some((name, s)) = convs.max_by(|a, b| a.1.flops().total_cmp(&b.1.flops())) else {
        return Ok(Vec::new());
    };
    let zeros = |len: usize| Tensor::zeros(gpu, "bench operand", &[len]);
    let (x, cols, w, bias) = (zeros(s.input_len())?, zeros(s.m() * s.k())?, zeros(s.kernel_len())?, zeros(s.out_c)?);
    let (y, scratch) = (zeros(s.output_len())?, zeros(s.kernel_grad_scratch())?);
    let (dcols, dw) = (zeros(s.m() * s.k())?, zeros(s.kernel_len())?);
    let weights = KernelBias { kernel: &w, bias: &bias };
    let gathers = conv2d::gathers_im2col(gpu, &s);
    let mut products = Vec::new();
    for (how, im2col) in [("", Cols::Written(&cols)), (", im2col gathered", Cols::Gathered)] {
        let planned = gathers == matches!(im2col, Cols::Gathered);
        products.push(("forward", how, planned, conv2d::forward_product(&s, &x, im2col, weights, Some(0.2), &y)));
        products.push(("kernel gradient", how, planned, conv2d::kernel_product(&s, &x, im2col, &y, &dw, &scratch)));
    }
    products.push(("input gradient", "", true, conv2d::input_product(&s, &y, &w, &dcols)));
    let mut times = Vec::new();
    for (what, how, planned, product) in &products {
        let chosen = product.entry(gpu)?;
        for entry in product.candidates(gpu) {
            let d = product.dispatch_as(gpu, entry)?;
            let seconds = timing::median_seconds(gpu, &d.iter().collect::<Vec<_>>(), reps)?;
            times.push(ProductTime {
                product: format!("{name} {what} {}x{}x{}{how}", product.m, product.n, product.k),
                entry: d[0].kernel.clone(),
                chosen: *planned && entry == chosen,
                seconds,
                gflops: d[0].flops / seconds / 1e9,
            });
        }
    }
    Ok(times)
}

fn step_time(arch: &Architecture, what: &str, batch: usize, seconds: f64, flops: f64) -> StepTime {
    StepTime {
        model: arch.name().into(),
        what: what.into(),
        batch,
        seconds,
        samples_per_second: batch as f64 / seconds,
        gflops: flops / seconds / 1e9,
    }
}

/// Best of three f32 products of the teacher's conv2 shape with `matrixmultiply` on all cores.
pub fn cpu_matmul_gflops() -> f64 {
    let (m, k, n) = (1568, 2304, 512);
    let a = vec![0.5f32; m * k];
    let b = vec![0.25f32; k * n];
    let mut c = vec![0f32; m * n];
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        // SAFETY: the pointers and strides describe the row-major buffers above exactly.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a.as_ptr(),
                k as isize,
                1,
                b.as_ptr(),
                n as isize,
                1,
                0.0,
                c.as_mut_ptr(),
                n as isize,
                1,
            );
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    assert!((c[0] - 0.125 * k as f32).abs() < 1.0, "CPU product is wrong");
    2.0 * (m * k * n) as f64 / best / 1e9
}

impl BenchReport {
    pub fn render(&self) -> String {
        let mut s = format!(
            "Adapter: {}\nKernel family: {:?}; timing: {}\n\n",
            self.adapter,
            self.family,
            if self.timestamps { "device timestamps" } else { "wall clock" }
        );
        s += &format!(
            "{:<8} {:<18} {:<44} {:>10} {:>9} {:>9}\n",
            "model", "layer", "kernel", "time (ms)", "GFLOP/s", "GB/s"
        );
        for k in &self.kernels {
            let rate = |v: f64| if v > 0.0 { format!("{v:.1}") } else { "-".into() };
            s += &format!(
                "{:<8} {:<18} {:<44} {:>10.3} {:>9} {:>9}\n",
                k.model,
                k.layer,
                k.kernel,
                1e3 * k.seconds,
                rate(k.gflops),
                rate(k.gbytes_per_second)
            );
        }
        s += "\nProduct entries (the teacher's largest convolution; * = the one the plan runs):\n";
        for p in &self.products {
            s += &format!(
                "{:<38} {:<44}{} {:>9.3} ms {:>9.1} GFLOP/s\n",
                p.product,
                p.entry,
                if p.chosen { "*" } else { " " },
                1e3 * p.seconds,
                p.gflops
            );
        }
        let tuning = &self.tuning;
        s += &format!(
            "\nTuning ({}; {} op(s) timed by this process in {:.1} s; cache {}):\n",
            tuning.mode,
            tuning.timed,
            tuning.seconds,
            tuning.file.as_ref().map_or("none".into(), |f| f.display().to_string())
        );
        s += &format!("{:<60} {:<14} {:>9} {:<14} {:>9} {:>6}\n", "op", "default", "ms", "tuned", "ms", "gain");
        for c in &tuning.choices {
            let ms = |entry: &str| c.seconds_of(entry).map_or("-".into(), |s| format!("{:.3}", 1e3 * s));
            let gain = match (c.seconds_of(&c.default), c.seconds_of(&c.chosen)) {
                (Some(d), Some(t)) if t > 0.0 => format!("{:.2}x", d / t),
                _ => "-".into(),
            };
            let op = c.op.split(" [").next().unwrap_or(&c.op);
            s += &format!(
                "{op:<60} {:<14} {:>9} {:<14} {:>9} {gain:>6}\n",
                c.default,
                ms(&c.default),
                c.chosen,
                ms(&c.chosen)
            );
        }
        s += "\n";
        for t in &self.steps {
            s += &format!(
                "{:<8} {:<20} batch {:<4} {:>9.2} ms {:>9.0} samples/s {:>8.1} GFLOP/s\n",
                t.model,
                t.what,
                t.batch,
                1e3 * t.seconds,
                t.samples_per_second,
                t.gflops
            );
        }
        for p in &self.step_parts {
            let ms = |s: f64| 1e3 * s;
            let b = &p.step;
            s += &format!(
                "{} step as one submission: {:.1} ms from recording to done; recording and submitting {:.1} ms; \
                 on the device {:.1} ms = {:.1} ms in {} compute passes + {:.1} ms between them (texture copies); \
                 its kernels timed one by one: {:.1} ms\n",
                p.model,
                ms(b.wall_seconds),
                ms(b.recording_seconds),
                ms(b.device_seconds),
                ms(b.in_passes_seconds),
                b.passes,
                ms(b.between_passes_seconds),
                ms(p.kernels_one_by_one_seconds)
            );
        }
        s += &format!(
            "\nCPU f32 matrix product 1568x512x2304 (matrixmultiply, all cores): {:.1} GFLOP/s\n",
            self.cpu_matmul_gflops
        );
        s += &format!(
            "Start-up (device, pipelines, the bench's first {} teacher step(s) done): {:.2} s\n",
            self.warmup_steps, self.startup_seconds
        );
        s
    }
}
