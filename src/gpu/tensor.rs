//! A device buffer (or an aligned slice of one) with a shape. Elements are 4 bytes: f32, or u32
//! for labels, indices and packed pixel bytes.

use super::Gpu;
use anyhow::{anyhow, bail, Result};
use std::sync::Arc;

#[derive(Clone)]
pub struct Tensor {
    buffer: Arc<wgpu::Buffer>,
    offset: u64,
    pub shape: Vec<usize>,
    pub label: String,
}

const USAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC).union(wgpu::BufferUsages::COPY_DST);

impl Tensor {
    /// A zero-filled tensor. Refuses sizes the device cannot bind to one kernel argument.
    pub fn zeros(gpu: &Gpu, label: &str, shape: &[usize]) -> Result<Tensor> {
        let len: usize = shape.iter().product();
        let bytes = (len.max(1) * 4) as u64;
        if bytes > gpu.max_binding_bytes() {
            bail!(
                "tensor `{label}` of shape {shape:?} needs {:.1} MiB, more than the {:.1} MiB this device \
                 can bind to one kernel argument (adapter {}); reduce --batch-size",
                bytes as f64 / 1048576.0,
                gpu.max_binding_bytes() as f64 / 1048576.0,
                gpu.info.name
            );
        }
        let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.next_multiple_of(4),
            usage: USAGE,
            mapped_at_creation: false,
        });
        Ok(Tensor { buffer: Arc::new(buffer), offset: 0, shape: shape.to_vec(), label: label.to_string() })
    }

    pub fn from_f32(gpu: &Gpu, label: &str, shape: &[usize], data: &[f32]) -> Result<Tensor> {
        Self::from_words(gpu, label, shape, bytemuck::cast_slice(data))
    }

    pub fn from_u32(gpu: &Gpu, label: &str, shape: &[usize], data: &[u32]) -> Result<Tensor> {
        Self::from_words(gpu, label, shape, bytemuck::cast_slice(data))
    }

    fn from_words(gpu: &Gpu, label: &str, shape: &[usize], bytes: &[u8]) -> Result<Tensor> {
        let t = Self::zeros(gpu, label, shape)?;
        if bytes.len() != t.bytes() as usize {
            bail!("tensor `{label}`: {} bytes given for shape {shape:?}", bytes.len());
        }
        t.write_bytes(gpu, bytes);
        Ok(t)
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn bytes(&self) -> u64 {
        self.len() as u64 * 4
    }

    /// A view of `shape` starting `offset` elements in. The offset must meet the device's
    /// storage-offset alignment (the parameter layout pads to it).
    pub fn view(&self, label: &str, offset: usize, shape: &[usize]) -> Result<Tensor> {
        let len: usize = shape.iter().product();
        if offset + len > self.len() {
            bail!("view `{label}` [{offset}, {}) is outside `{}` of {} elements", offset + len, self.label, self.len());
        }
        Ok(Tensor {
            buffer: self.buffer.clone(),
            offset: self.offset + offset as u64 * 4,
            shape: shape.to_vec(),
            label: label.to_string(),
        })
    }

    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: self.offset,
            size: std::num::NonZeroU64::new(self.bytes().max(4)),
        })
    }

    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    pub fn offset_bytes(&self) -> u64 {
        self.offset
    }

    pub fn write_bytes(&self, gpu: &Gpu, bytes: &[u8]) {
        debug_assert!(bytes.len() as u64 <= self.bytes());
        gpu.queue.write_buffer(&self.buffer, self.offset, bytes);
    }

    pub fn write_f32(&self, gpu: &Gpu, data: &[f32]) {
        self.write_bytes(gpu, bytemuck::cast_slice(data));
    }

    pub fn write_u32(&self, gpu: &Gpu, data: &[u32]) {
        self.write_bytes(gpu, bytemuck::cast_slice(data));
    }

    /// Fills with NaN so that a kernel that leaves an element unwritten is caught.
    pub fn poison(&self, gpu: &Gpu) {
        self.write_f32(gpu, &vec![f32::NAN; self.len()]);
    }

    pub fn read_f32(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        Ok(bytemuck::cast_slice(&self.read_bytes(gpu)?).to_vec())
    }

    pub fn read_u32(&self, gpu: &Gpu) -> Result<Vec<u32>> {
        Ok(bytemuck::cast_slice(&self.read_bytes(gpu)?).to_vec())
    }

    /// Copies to a staging buffer and waits: for metrics, checkpoints and tests only.
    pub fn read_bytes(&self, gpu: &Gpu) -> Result<Vec<u8>> {
        read_range(gpu, &self.buffer, self.offset, self.bytes())
    }
}

/// A whole buffer's contents (it must allow COPY_SRC), waiting for the device.
pub fn read_buffer(gpu: &Gpu, buffer: &wgpu::Buffer) -> Result<Vec<u8>> {
    read_range(gpu, buffer, 0, buffer.size())
}

fn read_range(gpu: &Gpu, buffer: &wgpu::Buffer, offset: u64, size: u64) -> Result<Vec<u8>> {
    let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(buffer, offset, &staging, 0, size);
    gpu.queue.submit([encoder.finish()]);
    read_staging(gpu, &staging)
}

/// Maps a MAP_READ buffer (after its copy was submitted) and returns its contents.
pub fn read_staging(gpu: &Gpu, staging: &wgpu::Buffer) -> Result<Vec<u8>> {
    let slice = staging.slice(..);
    let (sender, receiver) = futures_intrusive::channel::shared::oneshot_channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = sender.send(r);
    });
    gpu.wait()?;
    pollster::block_on(receiver.receive())
        .ok_or_else(|| anyhow!("readback was cancelled"))?
        .map_err(|e| anyhow!("readback failed: {e}"))?;
    let data = slice.get_mapped_range().map_err(|e| anyhow!("readback mapping failed: {e}"))?.to_vec();
    staging.unmap();
    Ok(data)
}
