//! Matrix product with an optional bias + LeakyReLU epilogue (`matmul.wgsl` for GPUs;
//! `matmul_texture.wgsl` and `matmul_subgroup.wgsl` for CPU drivers).
//!
//! The buffer family's entries: `matmul_vec4_wide` (128x128 tiles) and `matmul_vec4` (64x64)
//! where N and A's unit-stride length are multiples of 4, `matmul_tiled` for every other shape.
//! The texture family's: `matmul_texture_RxC` in two tiles where the operands fit in texels,
//! else `matmul_subgroup_strided` or `matmul_tiled`. Every entry adds the products over k in
//! the same order, so the choice never changes a bit: where a shape has more than one, the
//! device's tuner times them ([`crate::gpu::tune`]) and [`Matmul::entry`] runs the fastest.

use super::common::Conv;
use super::reduce;
use crate::gpu::{timing, Dispatch, Gpu, KernelFamily, Tensor, TexelFit};
use crate::shader;
use anyhow::{bail, Result};
use bytemuck::Zeroable;

crate::wgsl_struct! {
    /// The parameters of `matmul.wgsl`, `matmul_subgroup.wgsl` and `matmul_texture.wgsl` alike.
    pub(super) struct Params {
        m: u32,
        n: u32,
        k: u32,
        a_row_stride: u32,
        a_col_stride: u32,
        /// Bit 0: add bias[n]; bit 1: apply LeakyReLU with `slope`.
        epilogue: u32,
        slope: f32,
        k_chunk: u32,
        /// The convolution whose im2col matrix A is, gathered from the image as it loads;
        /// all 0 when A is in memory.
        conv: Conv,
    }
}

/// A tile of C per 8-lane workgroup of `matmul_texture.wgsl`, and its two entry points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextureTile {
    pub rows: usize,
    pub cols: usize,
    /// For A row-major, and A transposed.
    entries: (&'static str, &'static str),
}

/// The tiles `matmul_texture.wgsl` holds (TILES in scripts/gen_matmul_lavapipe.py). The first
/// is the default: 64x32 was the fastest to compile among the fast ones on the AMD EPYCs.
pub const TEXTURE_TILES: [TextureTile; 2] = [
    TextureTile { rows: 64, cols: 32, entries: ("matmul_texture_64x32", "matmul_texture_at_64x32") },
    TextureTile { rows: 32, cols: 32, entries: ("matmul_texture_32x32", "matmul_texture_at_32x32") },
];

/// Tile of C per 8-lane workgroup of `matmul_subgroup.wgsl`.
pub const SUBGROUP_TILE_ROWS: usize = 32;
pub const SUBGROUP_TILE_COLS: usize = 32;

/// Workgroup memory `matmul_vec4_wide` stages: 16-deep slices of A and B, 128 wide each.
pub const WIDE_TILE_BYTES: u32 = 2 * 16 * 128 * 4;

/// Fewest 128x128 tiles (times split-K parts) for which the wide tile is chosen: below this,
/// the 64x64 tile's four times as many workgroups spread better over a GPU's cores. A first
/// estimate, to be set from `bench`'s "product entries" table on real GPUs.
pub const WIDE_MIN_TILES: usize = 96;

/// The entry points of the matrix product, one per design (see `matmul.wgsl` and the
/// texture/subgroup files).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Buffers, any shape: 64x64 tiles, 4x4 per invocation, scalar loads.
    Tiled,
    /// Buffers, four-wide operands: 64x64 tiles, 4x4 per invocation.
    Vec4,
    /// Buffers, four-wide operands: 128x128 tiles, 8x8 per invocation.
    Vec4Wide,
    /// CPU drivers: A and B from texture copies, A shared across a subgroup.
    Texture(TextureTile),
    /// CPU drivers: A from its buffer, shared across a subgroup; N a multiple of 4.
    Subgroup,
}

impl Entry {
    /// Rows x columns of C per workgroup.
    pub fn tile(self) -> (usize, usize) {
        match self {
            Entry::Tiled | Entry::Vec4 => (64, 64),
            Entry::Vec4Wide => (128, 128),
            Entry::Texture(t) => (t.rows, t.cols),
            Entry::Subgroup => (SUBGROUP_TILE_ROWS, SUBGROUP_TILE_COLS),
        }
    }

    /// The entry's name in tuning caches and reports.
    pub fn name(self) -> String {
        match self {
            Entry::Tiled => "tiled".into(),
            Entry::Vec4 => "vec4 64x64".into(),
            Entry::Vec4Wide => "vec4 128x128".into(),
            Entry::Texture(t) => format!("texture {}x{}", t.rows, t.cols),
            Entry::Subgroup => "subgroup".into(),
        }
    }
}

/// How A is stored: `Normal` is M x K row-major; `Transposed` is K x M row-major (A = a^T).
/// The im2col layouts store nothing: A is the im2col matrix of the convolution's NHWC input
/// `a` (M = output pixels, K = taps x input channels), or its transpose, gathered by the
/// four-wide entries as they load. They carry the shaders' geometry ([`Conv`], from
/// `ConvShape::geometry`) so that this module needs nothing from `conv2d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ALayout {
    Normal,
    Transposed,
    Im2col(Conv),
    Im2colTransposed(Conv),
}

impl ALayout {
    /// The convolution whose im2col matrix A is, if it is one.
    fn implicit(self) -> Option<Conv> {
        match self {
            ALayout::Im2col(s) | ALayout::Im2colTransposed(s) => Some(s),
            ALayout::Normal | ALayout::Transposed => None,
        }
    }

    /// Whether A's unit-stride direction runs along its rows (k), as in `Normal`.
    fn along_k(self) -> bool {
        matches!(self, ALayout::Normal | ALayout::Im2col(_))
    }
}

/// How many parts K is split into: products whose C is only a few tiles but whose K is long
/// (the kernel gradients: C is 9 x 256 for the teacher's first layer, K = 6,272) would keep a
/// handful of workgroups busy, so their K is cut into chunks computed side by side and summed.
/// Depends on the shape alone, so every device sums in the same order.
pub fn split_parts(m: usize, n: usize, k: usize) -> usize {
    let tiles = m.div_ceil(64) * n.div_ceil(64);
    if tiles >= 32 || k < 1024 {
        return 1;
    }
    let parts = (k / 512).clamp(1, 4 * 32usize.div_ceil(tiles));
    k.div_ceil(split_chunk(k, parts))
}

/// K per part: a multiple of 16 (a whole number of tiled-kernel steps and of vec4s).
fn split_chunk(k: usize, parts: usize) -> usize {
    k.div_ceil(parts).next_multiple_of(16)
}

/// Scratch elements a product of this shape needs for its split-K parts (0 if not split).
pub fn split_scratch_len(m: usize, n: usize, k: usize) -> usize {
    match split_parts(m, n, k) {
        1 => 0,
        parts => parts * m * n,
    }
}

/// Operands of C (M x N) = A (M x K) * B (K x N, row-major) [+ bias] [then LeakyReLU].
pub struct Matmul<'a> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: &'a Tensor,
    pub a_layout: ALayout,
    pub b: &'a Tensor,
    pub bias: Option<&'a Tensor>,
    pub leaky_slope: Option<f32>,
    pub c: &'a Tensor,
    /// Scratch for split-K parts ([`split_scratch_len`] elements); None never splits.
    pub split_scratch: Option<&'a Tensor>,
}

impl Matmul<'_> {
    /// What `matmul_texture.wgsl` needs: every texel holds four elements of one row of B and
    /// of one row of A (or, transposed, of one step of k), and k advances four steps at a time.
    fn texture_fit(&self) -> TexelFit {
        if self.a_layout.along_k() {
            TexelFit::fours(&[("N", self.n), ("K", self.k)])
        } else {
            TexelFit::fours(&[("N", self.n), ("K", self.k), ("M", self.m)])
        }
    }

    /// What the four-wide buffer entries need: whole vec4s along B's rows and along A's
    /// unit-stride direction (k, or the rows of a transposed A; an implicit im2col matrix
    /// reads four channels of a pixel at a time).
    fn vec4_fit(&self) -> TexelFit {
        match (self.a_layout.implicit(), self.a_layout.along_k()) {
            (Some(s), _) => TexelFit::fours(&[("N", self.n), ("input channels", s.in_c as usize)]),
            (None, true) => TexelFit::fours(&[("N", self.n), ("K", self.k)]),
            (None, false) => TexelFit::fours(&[("N", self.n), ("M", self.m)]),
        }
    }

    /// What `matmul_subgroup.wgsl` needs: it reads B four columns at a time from its buffer.
    fn strided_fit(&self) -> TexelFit {
        TexelFit::fours(&[("N", self.n)])
    }

    /// Split-K parts: only with scratch to hold them.
    fn parts(&self) -> usize {
        if self.split_scratch.is_some() {
            split_parts(self.m, self.n, self.k)
        } else {
            1
        }
    }

    /// The entry the device's kernel family runs for this shape without tuning. On CPU
    /// drivers: A and B from textures in the 64x32 tile where the shape allows, else A from its
    /// buffer shared by subgroup broadcast. On GPUs: the four-wide entries, the 128x128 tile
    /// where the adapter's workgroup memory holds it and the product has enough such tiles.
    /// `Tiled`, every family's fallback, for the rest.
    pub fn default_entry(&self, gpu: &Gpu) -> Entry {
        let fits = |fit: TexelFit| fit.misfit().is_none();
        match gpu.family() {
            KernelFamily::Textures if fits(self.texture_fit()) => Entry::Texture(TEXTURE_TILES[0]),
            KernelFamily::Textures if fits(self.strided_fit()) => Entry::Subgroup,
            KernelFamily::Buffers if fits(self.vec4_fit()) => {
                let wide_tiles = self.m.div_ceil(128) * self.n.div_ceil(128) * self.parts();
                if wide_tile_fits(&gpu.limits) && wide_tiles >= WIDE_MIN_TILES {
                    Entry::Vec4Wide
                } else {
                    Entry::Vec4
                }
            }
            _ => Entry::Tiled,
        }
    }

    /// The entries the tuner times for this shape, the default among them: on CPU drivers
    /// the texture tiles where the operands fit in texels, else the default alone (on lavapipe
    /// the subgroup entry runs 4x slower than the texture tiles, and `Tiled` 7 to 40 times
    /// slower than the subgroup entry: timing them would only cost time); on GPUs the buffer
    /// entries that fit.
    pub fn candidates(&self, gpu: &Gpu) -> Vec<Entry> {
        let all: Vec<Entry> = match gpu.family() {
            KernelFamily::Textures if self.texture_fit().misfit().is_none() => {
                TEXTURE_TILES.iter().map(|&t| Entry::Texture(t)).collect()
            }
            KernelFamily::Textures => vec![self.default_entry(gpu)],
            KernelFamily::Buffers => vec![Entry::Tiled, Entry::Vec4, Entry::Vec4Wide],
        };
        all.into_iter().filter(|&e| self.misfit(gpu, e).is_none()).collect()
    }

    /// The entry this product runs: the default, or the tuner's pick among the candidates,
    /// timed on operands of the same sizes (never this product's own, which may hold data).
    pub fn entry(&self, gpu: &Gpu) -> Result<Entry> {
        let default = self.default_entry(gpu);
        let candidates = self.candidates(gpu);
        let Some(default_index) = candidates.iter().position(|&e| e == default) else {
            return Ok(default);
        };
        let names: Vec<String> = candidates.iter().map(|e| e.name()).collect();
        let mut timed = None;
        let i = gpu.tuner().choose(&self.tuning_key(), &names, default_index, |i| {
            let twins = match &mut timed {
                Some(twins) => twins,
                None => timed.insert(self.timing_twins(gpu, &candidates)?),
            };
            timing::seconds_once(gpu, &twins[i].iter().collect::<Vec<_>>())
        })?;
        Ok(candidates[i])
    }

    /// What sets a product's speed: its sizes, A's layout, the split and the epilogue.
    fn tuning_key(&self) -> String {
        format!(
            "matmul {}x{}x{} {:?} parts {} bias {} leaky {}",
            self.m,
            self.n,
            self.k,
            self.a_layout,
            self.parts(),
            self.bias.is_some(),
            self.leaky_slope.is_some()
        )
    }

    /// This product's dispatches in each of `entries`, on fresh operands of the same sizes
    /// (the dispatches keep them alive).
    fn timing_twins(&self, gpu: &Gpu, entries: &[Entry]) -> Result<Vec<Vec<Dispatch>>> {
        let zeros = |t: &Tensor, what: &str| Tensor::zeros(gpu, what, &[t.len()]);
        let (a, b, c) = (zeros(self.a, "tuning A")?, zeros(self.b, "tuning B")?, zeros(self.c, "tuning C")?);
        let bias = self.bias.map(|t| zeros(t, "tuning bias")).transpose()?;
        let scratch = self.split_scratch.map(|t| zeros(t, "tuning scratch")).transpose()?;
        let twin = Matmul { a: &a, b: &b, c: &c, bias: bias.as_ref(), split_scratch: scratch.as_ref(), ..*self };
        entries.iter().map(|&e| twin.dispatch_as(gpu, e)).collect()
    }

    /// Why `entry` cannot run this product on `gpu`; None when it can.
    pub fn misfit(&self, gpu: &Gpu, entry: Entry) -> Option<String> {
        let textures = gpu.family() == KernelFamily::Textures;
        let implicit = self.a_layout.implicit().is_some();
        match entry {
            Entry::Tiled | Entry::Texture(_) | Entry::Subgroup if implicit => {
                Some("an implicit im2col matrix is read by the four-wide entries only".into())
            }
            Entry::Tiled => None,
            Entry::Vec4 => self.vec4_fit().misfit(),
            Entry::Vec4Wide if !wide_tile_fits(&gpu.limits) => Some(format!(
                "the adapter offers {} bytes of workgroup memory, the 128x128 tile needs {WIDE_TILE_BYTES}",
                gpu.limits.max_compute_workgroup_storage_size
            )),
            Entry::Vec4Wide => self.vec4_fit().misfit(),
            Entry::Texture(_) | Entry::Subgroup if !textures => Some("a CPU-driver entry (--matmul subgroup)".into()),
            Entry::Texture(_) => self.texture_fit().misfit(),
            Entry::Subgroup => self.strided_fit().misfit(),
        }
    }

    /// The product's dispatches in the entry [`Matmul::entry`] picks: the product, then, with
    /// split K, the sum of its parts.
    pub fn dispatch(&self, gpu: &Gpu) -> Result<Vec<Dispatch>> {
        self.dispatch_as(gpu, self.entry(gpu)?)
    }

    /// The same in a given entry (the benchmark compares them); refused where it cannot run.
    pub fn dispatch_as(&self, gpu: &Gpu, entry: Entry) -> Result<Vec<Dispatch>> {
        let (m, n, k) = (self.m, self.n, self.k);
        if let Some(why) = self.misfit(gpu, entry) {
            bail!("matmul {m}x{n}x{k}: entry {entry:?} cannot run it: {why}");
        }
        let parts = self.parts();
        let a_len = self.a_layout.implicit().map_or(m * k, |s| s.input_len());
        for (t, len, name) in [(self.a, a_len, "A"), (self.b, k * n, "B"), (self.c, m * n, "C")] {
            if t.len() < len {
                bail!("matmul {m}x{n}x{k}: operand {name} `{}` holds {} elements, needs {len}", t.label, t.len());
            }
        }
        let (a_row_stride, a_col_stride) = if self.a_layout.along_k() { (k as u32, 1) } else { (1, m as u32) };
        let conv = self.a_layout.implicit().unwrap_or_else(Conv::zeroed);
        let (k_chunk, out) = match (parts, self.split_scratch) {
            (1, _) | (_, None) => (k, self.c),
            (_, Some(scratch)) => {
                if self.bias.is_some() || self.leaky_slope.is_some() {
                    bail!("matmul {m}x{n}x{k}: a split product takes no epilogue");
                }
                if scratch.len() < parts * m * n {
                    bail!(
                        "matmul {m}x{n}x{k}: split scratch `{}` holds {}, needs {}",
                        scratch.label,
                        scratch.len(),
                        parts * m * n
                    );
                }
                (split_chunk(k, parts), scratch)
            }
        };
        let params = Params {
            m: m as u32,
            n: n as u32,
            k: k as u32,
            a_row_stride,
            a_col_stride,
            epilogue: self.bias.is_some() as u32 | (self.leaky_slope.is_some() as u32) << 1,
            slope: self.leaky_slope.unwrap_or(0.0),
            k_chunk: k_chunk as u32,
            conv,
        };
        let uniform = gpu.uniform("matmul params", &params);
        let d = self.product(gpu, entry, &uniform, out, parts)?;
        let (mf, nf, kf) = (m as f64, n as f64, k as f64);
        let bytes = 4.0 * (a_len as f64 + kf * nf + parts as f64 * mf * nf);
        let mut d = vec![d.with_cost(2.0 * mf * nf * kf, bytes)];
        if parts > 1 {
            d.push(reduce::sum_parts(gpu, out, parts, m * n, None, self.c)?);
        }
        Ok(d)
    }

    /// The product's one dispatch in `entry`, writing `out` in `parts`.
    fn product(&self, gpu: &Gpu, entry: Entry, uniform: &wgpu::Buffer, out: &Tensor, parts: usize) -> Result<Dispatch> {
        let (m, n, k) = (self.m, self.n, self.k);
        let (rows, cols) = entry.tile();
        let groups = [n.div_ceil(cols) as u32, m.div_ceil(rows) as u32, parts as u32];
        // An unused bias slot still needs a binding: B is read-only like it, so no conflict.
        let bias = self.bias.unwrap_or(self.b);
        let resources =
            [uniform.as_entire_binding(), self.a.binding(), self.b.binding(), bias.binding(), out.binding()];
        let (shader, name) = match entry {
            Entry::Tiled => (shader!("matmul"), "matmul_tiled"),
            Entry::Vec4 => (shader!("matmul"), "matmul_vec4"),
            Entry::Vec4Wide => (shader!("matmul"), "matmul_vec4_wide"),
            Entry::Subgroup => (shader!("matmul_subgroup"), "matmul_subgroup_strided"),
            Entry::Texture(tile) => {
                let launch = gpu.family().launch(gpu, &self.texture_fit());
                let (a, b) = (launch.input(self.a, m * k)?, launch.input(self.b, k * n)?);
                let resources = [uniform.as_entire_binding(), a.binding(), b.binding(), bias.binding(), out.binding()];
                let name = if self.a_layout.along_k() { tile.entries.0 } else { tile.entries.1 };
                return launch.dispatch(&shader!("matmul_texture"), (name, name), &resources, groups);
            }
        };
        Dispatch::new(gpu, &shader, name, &resources, groups)
    }
}

/// Whether the adapter's workgroup memory holds the 128x128 tile (WebGPU's default limit
/// does; downlevel devices such as OpenGL ES offer a little less).
pub fn wide_tile_fits(limits: &wgpu::Limits) -> bool {
    limits.max_compute_workgroup_storage_size >= WIDE_TILE_BYTES
}

pub mod reference {
    /// C = A * B for row-major A (m x k) and B (k x n), accumulated in f64.
    pub fn matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0f64;
                for kk in 0..k {
                    s += a[i * k + kk] as f64 * b[kk * n + j] as f64;
                }
                c[i * n + j] = s as f32;
            }
        }
        c
    }

    /// Transpose of a row-major rows x cols matrix.
    pub fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        let mut y = vec![0f32; rows * cols];
        for r in 0..rows {
            for c in 0..cols {
                y[c * rows + r] = x[r * cols + c];
            }
        }
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// WebGPU's default limits hold the wide tile; the downlevel ones (OpenGL ES) do not, and
    /// the four-wide products fall back to 64x64 tiles there.
    #[test]
    fn the_wide_tile_needs_the_default_workgroup_memory() {
        assert!(wide_tile_fits(&wgpu::Limits::default()));
        assert!(!wide_tile_fits(&wgpu::Limits::downlevel_defaults()));
        assert_eq!(Entry::Vec4Wide.tile(), (128, 128));
        assert_eq!(Entry::Vec4.tile(), (64, 64));
    }
}
