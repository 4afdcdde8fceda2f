//! `kd-wgpu export-web DIR`: the students' part of the program as data for the page in `web/`.
//!
//! A planned step is already data: a fixed list of dispatches over buffers, with the step
//! index on the device. The export writes that list for four plans (the distilled and the
//! scratch student's training step and their evaluation step), in the buffer-only kernel
//! family that every WebGPU implementation runs, with each buffer's size and initial contents
//! (weights, the data slice, the frozen teacher's logits, the launches' parameters), and each
//! training plan's sample order per epoch. The page creates the same buffers, pipelines and
//! bind groups and records the same dispatches; it computes what this engine computes.
//!
//! Files: `export.json` (format [`FORMAT`], described in docs/browser.md) and `buffers.bin` (every
//! initial content and sample order the JSON points into, little-endian).

use crate::checkpoint;
use crate::config::{Config, DistillTeacher, WeightFiles};
use crate::data::NUM_CLASSES;
use crate::gpu::{self, Bound, Gpu, MatmulVariant, Tensor};
use crate::ops::adam::AdamConfig;
use crate::run::seeds::{sample_orders, StudentSeeds};
use crate::run::{self, load_data, StartingWeights};
use crate::train::{check_batch_fits, DeviceData, Feed, Loss, Model, Plan};
use anyhow::{bail, ensure, Result};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The version of the export's layout; the page refuses any other.
pub const FORMAT: &str = "kd-wgpu-web/1";
/// Storage-buffer offsets every WebGPU implementation accepts.
const OFFSET_ALIGNMENT: u64 = 256;

/// A byte range of one buffer of the export.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Range {
    pub buffer: usize,
    pub offset: u64,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct BufferInfo {
    pub label: String,
    pub bytes: u64,
    /// `storage` or `uniform`.
    pub usage: &'static str,
    /// Where its initial contents are in `buffers.bin` (offset, bytes); none: zeros.
    pub init: Option<[u64; 2]>,
}

#[derive(Debug, Serialize)]
pub struct DispatchInfo {
    pub shader: &'static str,
    pub entry: &'static str,
    pub workgroups: [u32; 3],
    /// `bindings[i]` is bound at `@group(0) @binding(i)`.
    pub bindings: Vec<Range>,
}

#[derive(Debug, Serialize)]
pub struct PlanInfo {
    pub name: String,
    /// `train` or `evaluate`.
    pub role: &'static str,
    /// `distilled` or `scratch`.
    pub student: &'static str,
    pub steps: usize,
    pub batch: usize,
    pub samples: usize,
    /// u32 x 4: step of the epoch, Adam's t, samples, batch. An epoch starts by writing 0 to
    /// the step (Adam's t carries on).
    pub state: Range,
    /// u32 per sample: the epoch's order, written before its first step.
    pub order: Range,
    /// f32 x `metrics_width` per step: the sum of the batch's losses, its number of correct
    /// predictions, then a distillation loss's terms' sums.
    pub metrics: Range,
    pub metrics_width: usize,
    /// The student's weights (f32, the layout of its parameters).
    pub weights: Range,
    /// Per epoch, `samples` u32 in `buffers.bin` from this offset (an evaluation: one epoch,
    /// the file order).
    pub orders: [u64; 2],
    pub dispatches: Vec<DispatchInfo>,
}

#[derive(Debug, Serialize)]
pub struct ExportFile {
    pub format: &'static str,
    /// The settings it was made with (as `--metrics-out` writes them).
    pub config: Config,
    pub adapter: String,
    pub epochs: usize,
    /// Metric readbacks per epoch, as the native program does them.
    pub sync_points: usize,
    /// The WGSL of every shader a dispatch names (`#include`s expanded).
    pub shaders: BTreeMap<&'static str, String>,
    pub buffers: Vec<BufferInfo>,
    /// Distilled and scratch training, then their evaluations.
    pub plans: Vec<PlanInfo>,
    /// The students' parameters: (name, shape, offset in floats) in the weights' layout.
    pub parameters: Vec<(String, Vec<usize>, usize)>,
}

/// An export, and the device objects it describes, which [`export`] leaves unrun: the tests
/// run them natively to compare with the page.
pub struct Export {
    pub gpu: Gpu,
    pub file: ExportFile,
    /// In the order of `file.plans`.
    pub plans: Vec<Plan>,
    /// The distilled and the scratch student.
    pub students: [Model; 2],
    /// Per training plan, per epoch, its sample order.
    pub orders: [Vec<Vec<u32>>; 2],
    _data: DeviceData,
    _table: Tensor,
}

/// Builds the students' plans (the teacher from `teacher` or trained first, as the program
/// does), writes `DIR/export.json` and `DIR/buffers.bin`, and returns the unrun plans.
pub fn export(cfg: &Config, teacher: Option<&Path>, dir: &Path) -> Result<Export> {
    let cfg = Config { distill_teacher: DistillTeacher::Frozen, ..cfg.clone() };
    cfg.validate()?;
    anyhow::ensure!(
        cfg.labelled.is_none(),
        "export-web trains on every label: --labelled is for the experiment itself"
    );
    anyhow::ensure!(
        cfg.feature()?.is_none(),
        "export-web distils from the teacher's logits table: a feature term is for the experiment itself"
    );
    checkpoint::check_writable_dir("export-web", dir)?;
    let (teacher_arch, student_arch) = (cfg.teacher()?, cfg.student()?);
    let files = WeightFiles { teacher: teacher.map(PathBuf::from), ..WeightFiles::default() };
    let starting = StartingWeights::load(&files, &teacher_arch, &student_arch)?;
    let ds = load_data(&cfg)?;
    let train_logits = run::frozen_teacher_logits(&cfg, &files, &starting, &ds)?;

    // The students' plans in the buffer family, which every WebGPU implementation runs.
    let cfg = Config { matmul: MatmulVariant::Tiled, ..cfg };
    let gpu = Gpu::new(cfg.backend, MatmulVariant::Tiled)?;
    println!("Students' plans on: {}", gpu::describe(&gpu.info));
    check_batch_fits(&gpu, &student_arch, cfg.batch_size)?;
    let data = DeviceData::upload(&gpu, &ds.train, &ds.test)?;
    let train_table = Tensor::from_f32(&gpu, "teacher logits", &[data.train.samples, NUM_CLASSES], &train_logits)?;

    // A single run of the program: its seeds for the students' weights, orders and masks.
    let seeds = StudentSeeds::of(cfg.seed, 0, false);
    let student = |init, order| -> Result<Model> {
        Ok(Model::new(&gpu, &student_arch, &student_arch.init_glorot(init))?.seeded(order))
    };
    let distilled = student(seeds.distilled_init, seeds.distilled_order)?;
    let scratch = student(seeds.scratch_init, seeds.scratch_order)?;
    let adam = AdamConfig { learning_rate: cfg.learning_rate, ..AdamConfig::default() };
    let feed = |split, table| Feed { data: &data, split, teacher_logits: table };
    let distill = Loss::Distillation(cfg.distill_loss(cfg.alpha, cfg.temperature));
    let b = cfg.batch_size;
    let plans = vec![
        Plan::train(&gpu, "distilled student", &distilled, distill, &feed(&data.train, Some(&train_table)), b, &adam)?,
        Plan::train(&gpu, "scratch student", &scratch, Loss::CrossEntropy, &feed(&data.train, None), b, &adam)?,
        Plan::evaluate(&gpu, "distilled student", &distilled, Loss::CrossEntropy, &feed(&data.test, None), b)?,
        Plan::evaluate(&gpu, "scratch student", &scratch, Loss::CrossEntropy, &feed(&data.test, None), b)?,
    ];
    let orders = [seeds.distilled_order, seeds.scratch_order]
        .map(|s| sample_orders(s, data.train.samples, cfg.shuffle).take(cfg.student_epochs).collect::<Vec<_>>());

    let mut writer = Writer::default();
    let mut infos = Vec::new();
    for (i, plan) in plans.iter().enumerate() {
        let (student, weights) = if i % 2 == 0 { ("distilled", &distilled) } else { ("scratch", &scratch) };
        let (role, plan_orders) = match i {
            0 | 1 => ("train", orders[i].clone()),
            _ => ("evaluate", vec![(0..plan.samples as u32).collect()]),
        };
        infos.push(writer.plan(&gpu, plan, role, student, &weights.weights, &plan_orders)?);
    }
    let shaders = plans
        .iter()
        .flat_map(|p| p.dispatches())
        .map(|d| Ok((d.shader.name, d.shader.expanded()?)))
        .collect::<Result<BTreeMap<_, _>>>()?;
    let parameters = student_arch.params().into_iter().map(|p| (p.name.clone(), p.shape.clone(), p.offset)).collect();
    let file = ExportFile {
        format: FORMAT,
        config: cfg.clone(),
        adapter: gpu::describe(&gpu.info),
        epochs: cfg.student_epochs,
        sync_points: cfg.sync_points,
        shaders,
        buffers: writer.buffers,
        plans: infos,
        parameters,
    };
    checkpoint::write_atomic(&dir.join("buffers.bin"), &writer.blob)?;
    checkpoint::write_atomic(&dir.join("export.json"), serde_json::to_string_pretty(&file)?.as_bytes())?;
    println!(
        "Wrote {} (4 plans, {} buffers) and {} ({:.1} MB)",
        dir.join("export.json").display(),
        file.buffers.len(),
        dir.join("buffers.bin").display(),
        writer.blob.len() as f64 / 1e6
    );
    Ok(Export { gpu, file, plans, students: [distilled, scratch], orders, _data: data, _table: train_table })
}

/// Numbers the buffers the plans use, in order of first use, and gathers `buffers.bin`.
#[derive(Default)]
struct Writer {
    ids: HashMap<wgpu::Buffer, usize>,
    buffers: Vec<BufferInfo>,
    blob: Vec<u8>,
}

impl Writer {
    /// Appends `bytes` to the blob, 4-byte aligned; returns (offset, length).
    fn append(&mut self, bytes: &[u8]) -> [u64; 2] {
        let offset = self.blob.len() as u64;
        self.blob.extend_from_slice(bytes);
        self.blob.resize(self.blob.len().next_multiple_of(4), 0);
        [offset, bytes.len() as u64]
    }

    /// The buffer's number, reading its contents the first time (before any step runs: they
    /// are what the page starts from).
    fn buffer(&mut self, gpu: &Gpu, buffer: &wgpu::Buffer, label: &str) -> Result<usize> {
        if let Some(&id) = self.ids.get(buffer) {
            return Ok(id);
        }
        let contents = gpu::read_buffer(gpu, buffer)?;
        let init = contents.iter().any(|&b| b != 0).then(|| self.append(&contents));
        let usage = if buffer.usage().contains(wgpu::BufferUsages::UNIFORM) { "uniform" } else { "storage" };
        self.buffers.push(BufferInfo { label: label.to_string(), bytes: buffer.size(), usage, init });
        self.ids.insert(buffer.clone(), self.buffers.len() - 1);
        Ok(self.buffers.len() - 1)
    }

    fn tensor(&mut self, gpu: &Gpu, t: &Tensor) -> Result<Range> {
        Ok(Range { buffer: self.buffer(gpu, t.buffer(), &t.label)?, offset: t.offset_bytes(), bytes: t.bytes() })
    }

    fn plan(
        &mut self,
        gpu: &Gpu,
        plan: &Plan,
        role: &'static str,
        student: &'static str,
        weights: &Tensor,
        orders: &[Vec<u32>],
    ) -> Result<PlanInfo> {
        let [state, order, metrics] = plan.host_buffers();
        let (state, order, metrics, weights) = (
            self.tensor(gpu, state)?,
            self.tensor(gpu, order)?,
            self.tensor(gpu, metrics)?,
            self.tensor(gpu, weights)?,
        );
        let mut dispatches = Vec::new();
        for d in plan.dispatches() {
            let mut bindings = Vec::new();
            for (i, bound) in d.bindings.iter().enumerate() {
                let Bound::Buffer { buffer, offset, size } = bound else {
                    bail!("{}: binding {i} is a texture; the export uses the buffer family", d.kernel)
                };
                ensure!(
                    offset % OFFSET_ALIGNMENT == 0,
                    "{}: binding {i} starts at byte {offset}, not a multiple of {OFFSET_ALIGNMENT}",
                    d.kernel
                );
                let label = format!("{} binding {i}", d.kernel);
                let bytes = size.unwrap_or(buffer.size() - offset);
                bindings.push(Range { buffer: self.buffer(gpu, buffer, &label)?, offset: *offset, bytes });
            }
            dispatches.push(DispatchInfo { shader: d.shader.name, entry: d.entry, workgroups: d.workgroups, bindings });
        }
        let flat: Vec<u32> = orders.concat();
        let [start, _] = self.append(bytemuck::cast_slice(&flat));
        Ok(PlanInfo {
            name: plan.name.clone(),
            role,
            student,
            steps: plan.steps,
            batch: plan.batch,
            samples: plan.samples,
            state,
            order,
            metrics,
            metrics_width: plan.metrics_width(),
            weights,
            orders: [start, orders.len() as u64],
            dispatches,
        })
    }
}
