//! Shaders, entry points and recorded dispatches.

use super::{texture::TexelCopy, Gpu};
use anyhow::{bail, Result};
use std::sync::Arc;

/// One WGSL file of `shaders/`, compiled into the binary.
pub struct Shader {
    pub name: &'static str,
    pub source: &'static str,
}

/// `shader!("conv2d")` embeds `shaders/conv2d.wgsl`.
#[macro_export]
macro_rules! shader {
    ($name:literal) => {
        $crate::gpu::Shader {
            name: $name,
            source: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/", $name, ".wgsl")),
        }
    };
}

/// One kernel launch with its bind group, built once when a step is planned and recorded
/// into every step's compute pass without further allocation.
pub struct Dispatch {
    pub kernel: String,
    /// The layer or stage it belongs to, for reports ("conv2 forward", ...).
    pub layer: String,
    /// Floating-point operations and bytes moved, for the benchmark's rates (0 when not modelled).
    pub flops: f64,
    pub bytes: f64,
    pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    pub workgroups: [u32; 3],
    /// Texture copies of its operands, recorded just before the pass that runs it.
    uploads: Vec<Arc<TexelCopy>>,
}

impl Dispatch {
    /// `resources[i]` is bound at `@group(0) @binding(i)`. The bind group keeps its buffers
    /// (the launch's uniform among them) alive.
    pub fn new(
        gpu: &Gpu,
        shader: &Shader,
        entry: &'static str,
        resources: &[wgpu::BindingResource<'_>],
        workgroups: [u32; 3],
    ) -> Result<Dispatch> {
        let kernel = format!("{}::{entry}", shader.name);
        let max = gpu.limits.max_compute_workgroups_per_dimension;
        if workgroups.iter().any(|&w| w > max) {
            bail!(
                "kernel {kernel}: {workgroups:?} workgroups exceed the device limit of {max} per dimension; \
                 use a smaller --batch-size"
            );
        }
        let pipeline = gpu.pipeline(shader, entry)?;
        let entries: Vec<wgpu::BindGroupEntry> = resources
            .iter()
            .enumerate()
            .map(|(i, r)| wgpu::BindGroupEntry { binding: i as u32, resource: r.clone() })
            .collect();
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&kernel),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            bail!("kernel {kernel}: binding its buffers failed: {e}");
        }
        Ok(Dispatch {
            kernel,
            layer: String::new(),
            flops: 0.0,
            bytes: 0.0,
            pipeline,
            bind_group,
            workgroups,
            uploads: Vec::new(),
        })
    }

    pub fn with_cost(mut self, flops: f64, bytes: f64) -> Dispatch {
        self.flops = flops;
        self.bytes = bytes;
        self
    }

    pub fn with_uploads(mut self, uploads: Vec<Arc<TexelCopy>>) -> Dispatch {
        self.uploads = uploads;
        self
    }

    fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        let [x, y, z] = self.workgroups;
        pass.dispatch_workgroups(x, y, z);
    }
}

/// Records `dispatches` in order into as few compute passes as their texture copies allow
/// (copies happen between passes). With `timestamps`, query 0 is written before the first
/// copy or dispatch and query 1 when the last pass ends.
pub fn record_all(encoder: &mut wgpu::CommandEncoder, dispatches: &[&Dispatch], timestamps: Option<&wgpu::QuerySet>) {
    let mut starts = vec![0];
    starts.extend((1..dispatches.len()).filter(|&i| !dispatches[i].uploads.is_empty()));
    let uploads_first = dispatches.first().is_some_and(|d| !d.uploads.is_empty());
    if let (Some(query_set), true) = (timestamps, uploads_first) {
        // An empty pass marks the start, so that the first copies are timed too.
        encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: None,
            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                query_set,
                beginning_of_pass_write_index: Some(0),
                end_of_pass_write_index: None,
            }),
        });
    }
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(dispatches.len());
        for upload in dispatches.get(start).map_or(&[][..], |d| &d.uploads[..]) {
            upload.record(encoder);
        }
        let begin = (i == 0 && !uploads_first).then_some(0);
        let finish = (i + 1 == starts.len()).then_some(1);
        let timestamp_writes = timestamps.filter(|_| begin.is_some() || finish.is_some()).map(|query_set| {
            wgpu::ComputePassTimestampWrites {
                query_set,
                beginning_of_pass_write_index: begin,
                end_of_pass_write_index: finish,
            }
        });
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes });
        for d in &dispatches[start..end] {
            d.record(&mut pass);
        }
    }
}

/// Workgroup counts covering `items` invocations of a 1-D kernel of `workgroup_size`, folded
/// into two dimensions past 32,768 groups. Kernels recover the flat index as
/// `(wg.y * num_wg.x + wg.x) * workgroup_size + local` and skip indices past the end.
pub fn grid_1d(items: usize, workgroup_size: u32) -> [u32; 3] {
    let groups = items.div_ceil(workgroup_size as usize).max(1) as u32;
    const FOLD: u32 = 32_768;
    if groups <= FOLD {
        [groups, 1, 1]
    } else {
        [FOLD, groups.div_ceil(FOLD), 1]
    }
}

/// Labels every dispatch of a layer.
pub fn tag(layer: &str, dispatches: Vec<Dispatch>) -> Vec<Dispatch> {
    dispatches
        .into_iter()
        .map(|mut d| {
            d.layer = layer.to_string();
            d
        })
        .collect()
}
