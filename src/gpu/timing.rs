//! Timing groups of dispatches: device timestamps around their compute passes where the adapter
//! has them, else wall-clock time of a submit-and-wait.

use super::{Dispatch, Gpu};
use anyhow::Result;
use std::time::Instant;

/// Median seconds of `reps` runs of `dispatches` recorded as in training, after one warm-up run.
pub fn median_seconds(gpu: &Gpu, dispatches: &[&Dispatch], reps: usize) -> Result<f64> {
    gpu.run(dispatches)?; // warm-up: pipeline creation and first-use costs stay out
    let mut times: Vec<f64> = (0..reps.max(1)).map(|_| one_run(gpu, dispatches)).collect::<Result<_>>()?;
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Seconds of one run of `dispatches` as in training (the first run of a pipeline includes
/// its compilation).
pub fn seconds_once(gpu: &Gpu, dispatches: &[&Dispatch]) -> Result<f64> {
    one_run(gpu, dispatches)
}

fn one_run(gpu: &Gpu, dispatches: &[&Dispatch]) -> Result<f64> {
    if !gpu.has_timestamps() {
        let t = Instant::now();
        gpu.run(dispatches)?;
        return Ok(t.elapsed().as_secs_f64());
    }
    let queries = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
        label: Some("timing"),
        ty: wgpu::QueryType::Timestamp,
        count: 2,
    });
    let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("timestamps"),
        size: 16,
        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("timestamps readback"),
        size: 16,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    super::kernel::record_all(&mut encoder, dispatches, Some(&queries));
    encoder.resolve_query_set(&queries, 0..2, &resolve, 0);
    encoder.copy_buffer_to_buffer(&resolve, 0, &staging, 0, 16);
    gpu.queue.submit([encoder.finish()]);
    let bytes = super::read_staging(gpu, &staging)?;
    let ticks: &[u64] = bytemuck::cast_slice(&bytes);
    Ok(ticks[1].saturating_sub(ticks[0]) as f64 * gpu.queue.get_timestamp_period() as f64 * 1e-9)
}
