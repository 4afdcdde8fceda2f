//! Read-only copies of tensors as rgba32float textures, for kernels on CPU drivers.
//!
//! On lavapipe (Mesa 22.3) a texel fetch costs about a seventh of a storage-buffer load (see
//! `shaders/matmul_texture.wgsl`), so there the kernels that read much take texture copies of
//! their inputs (the `Textures` kernel family, see `family.rs`). A texture holds a tensor's elements in order, four per
//! texel, `TEXTURE_WIDTH` texels per row; a dispatch records its copies just before the pass
//! that runs it (`Dispatch::with_uploads`), so they see what the dispatches before wrote.

use super::{Gpu, Tensor};
use anyhow::{bail, Result};

/// Texels per texture row (the WGSL side hard-codes the same number).
pub const TEXTURE_WIDTH: usize = 4096;

pub struct TexelCopy {
    source: Tensor,
    texels: usize,
    texture: wgpu::Texture,
    view: wgpu::TextureView,
}

impl TexelCopy {
    /// A texture (`texture_2d<f32>`) for the first `elements` elements of `source`, a multiple of 4.
    pub fn new(gpu: &Gpu, source: &Tensor, elements: usize) -> Result<TexelCopy> {
        Self::with_format(gpu, source, elements, wgpu::TextureFormat::Rgba32Float)
    }

    /// The same for a tensor of u32 (`texture_2d<u32>`).
    pub fn new_u32(gpu: &Gpu, source: &Tensor, elements: usize) -> Result<TexelCopy> {
        Self::with_format(gpu, source, elements, wgpu::TextureFormat::Rgba32Uint)
    }

    fn with_format(gpu: &Gpu, source: &Tensor, elements: usize, format: wgpu::TextureFormat) -> Result<TexelCopy> {
        let label = format!("{} (texels)", source.label);
        if !elements.is_multiple_of(4) || elements == 0 || elements > source.len() {
            bail!(
                "texture copy of `{}`: {elements} elements is not a positive multiple of 4 within its {}",
                source.label,
                source.len()
            );
        }
        let texels = elements / 4;
        let rows = texels.div_ceil(TEXTURE_WIDTH);
        let max = gpu.limits.max_texture_dimension_2d as usize;
        if rows > max {
            bail!(
                "tensor `{}` of {elements} elements needs a texture of {rows} rows, more than this device's \
                 {max}; reduce --batch-size",
                source.label
            );
        }
        // Every texture is a full TEXTURE_WIDTH wide and a power of two high where the device
        // allows: llvmpipe compiles a kernel anew for each combination of power-of-two and
        // other sizes among the textures it reads (part of its shader variant key), about 3 s
        // for a product's entry, so uniform shapes spare those compilations. The texels past
        // the tensor are never read.
        let height = Some(rows.next_power_of_two()).filter(|&h| h <= max).unwrap_or(rows);
        let texture = gpu.device.create_texture(&wgpu::TextureDescriptor {
            label: Some(&label),
            size: wgpu::Extent3d { width: TEXTURE_WIDTH as u32, height: height as u32, depth_or_array_layers: 1 },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format,
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        });
        let view = texture.create_view(&Default::default());
        Ok(TexelCopy { source: source.clone(), texels, texture, view })
    }

    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::TextureView(&self.view)
    }

    /// Copies the source into the texture: the whole rows, then the partial last row.
    pub fn record(&self, encoder: &mut wgpu::CommandEncoder) {
        const TEXEL_BYTES: u64 = 16;
        let full_rows = self.texels / TEXTURE_WIDTH;
        let rest = self.texels % TEXTURE_WIDTH;
        let row_bytes = TEXTURE_WIDTH as u64 * TEXEL_BYTES;
        let mut copy = |row: usize, width: usize, height: usize| {
            encoder.copy_buffer_to_texture(
                wgpu::TexelCopyBufferInfo {
                    buffer: self.source.buffer(),
                    layout: wgpu::TexelCopyBufferLayout {
                        offset: self.source.offset_bytes() + row as u64 * row_bytes,
                        bytes_per_row: Some(row_bytes as u32),
                        rows_per_image: None,
                    },
                },
                wgpu::TexelCopyTextureInfo {
                    texture: &self.texture,
                    mip_level: 0,
                    origin: wgpu::Origin3d { x: 0, y: row as u32, z: 0 },
                    aspect: wgpu::TextureAspect::All,
                },
                wgpu::Extent3d { width: width as u32, height: height as u32, depth_or_array_layers: 1 },
            );
        };
        if full_rows > 0 {
            copy(0, TEXTURE_WIDTH, full_rows);
        }
        if rest > 0 {
            copy(full_rows, rest, 1);
        }
    }
}
