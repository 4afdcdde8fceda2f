//! Timing groups of dispatches: device timestamps around their compute passes where the adapter
//! has them, else wall-clock time of a submit-and-wait.

use super::kernel::{record_all, timed_passes, Timestamps};
use super::{Dispatch, Gpu};
use anyhow::Result;
use std::time::Instant;

/// Median seconds of `reps` runs of `dispatches` recorded as in training, after one warm-up run.
pub fn median_seconds(gpu: &Gpu, dispatches: &[&Dispatch], reps: usize) -> Result<f64> {
    gpu.run(dispatches)?; // warm-up: pipeline creation and first-use costs stay out
    let mut times: Vec<f64> = (0..reps.max(1)).map(|_| seconds_once(gpu, dispatches)).collect::<Result<_>>()?;
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Seconds of one run of `dispatches` as in training (the first run of a pipeline includes
/// its compilation).
pub fn seconds_once(gpu: &Gpu, dispatches: &[&Dispatch]) -> Result<f64> {
    if !gpu.has_timestamps() {
        let t = Instant::now();
        gpu.run(dispatches)?;
        return Ok(t.elapsed().as_secs_f64());
    }
    let ticks = timestamps(gpu, dispatches, false)?;
    Ok(ticks[1].saturating_sub(ticks[0]) as f64 * tick_seconds(gpu))
}

fn tick_seconds(gpu: &Gpu) -> f64 {
    gpu.queue.get_timestamp_period() as f64 * 1e-9
}

/// Runs `dispatches` once with timestamps around the whole run, or around `every_pass`; their
/// ticks.
fn timestamps(gpu: &Gpu, dispatches: &[&Dispatch], every_pass: bool) -> Result<Vec<u64>> {
    let count = if every_pass { 2 * timed_passes(dispatches) as u32 } else { 2 };
    let queries = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
        label: Some("timing"),
        ty: wgpu::QueryType::Timestamp,
        count,
    });
    let bytes = 8 * count as u64;
    let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("timestamps"),
        size: bytes,
        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("timestamps readback"),
        size: bytes,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    let mode = if every_pass { Timestamps::EveryPass(&queries) } else { Timestamps::Span(&queries) };
    record_all(&mut encoder, dispatches, mode);
    encoder.resolve_query_set(&queries, 0..count, &resolve, 0);
    encoder.copy_buffer_to_buffer(&resolve, 0, &staging, 0, bytes);
    gpu.queue.submit([encoder.finish()]);
    let bytes = super::read_staging(gpu, &staging)?;
    Ok(bytemuck::cast_slice(&bytes).to_vec())
}

/// Where the time of one whole step goes, dispatches recorded as in training.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct StepBreakdown {
    /// From recording to completion, without timestamps (median of the runs).
    pub wall_seconds: f64,
    /// Recording the step's passes and submitting them (CPU, median).
    pub recording_seconds: f64,
    /// The device's span: the first pass's beginning to the last one's end (median).
    pub device_seconds: f64,
    pub passes: usize,
    /// Inside the compute passes, summed (median).
    pub in_passes_seconds: f64,
    /// Between passes: texture copies and pass changes (median of the device span less the
    /// passes).
    pub between_passes_seconds: f64,
}

/// [`StepBreakdown`] of `dispatches` over `reps` runs after a warm-up; None without timestamps.
pub fn step_breakdown(gpu: &Gpu, dispatches: &[&Dispatch], reps: usize) -> Result<Option<StepBreakdown>> {
    if !gpu.has_timestamps() {
        return Ok(None);
    }
    gpu.run(dispatches)?;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (mut wall, mut recording, mut device, mut inside) = (vec![], vec![], vec![], vec![]);
    let passes = timed_passes(dispatches);
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        record_all(&mut encoder, dispatches, Timestamps::None);
        gpu.queue.submit([encoder.finish()]);
        recording.push(t.elapsed().as_secs_f64());
        gpu.wait()?;
        wall.push(t.elapsed().as_secs_f64());
        let ticks = timestamps(gpu, dispatches, true)?;
        let span = |a: u64, b: u64| b.saturating_sub(a) as f64 * tick_seconds(gpu);
        device.push(span(ticks[0], ticks[2 * passes - 1]));
        inside.push(ticks.chunks(2).map(|p| span(p[0], p[1])).sum());
    }
    let (device, inside) = (median(device), median(inside));
    Ok(Some(StepBreakdown {
        wall_seconds: median(wall),
        recording_seconds: median(recording),
        device_seconds: device,
        passes,
        in_passes_seconds: inside,
        between_passes_seconds: device - inside,
    }))
}
