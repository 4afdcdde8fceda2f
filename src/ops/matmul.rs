//! Matrix product with an optional bias + LeakyReLU epilogue (`matmul.wgsl`, `matmul_subgroup.wgsl`).

use crate::gpu::{Dispatch, Gpu, MatmulVariant, Tensor};
use crate::shader;
use anyhow::{bail, Result};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    a_row_stride: u32,
    a_col_stride: u32,
    epilogue: u32,
    slope: f32,
    _pad: u32,
}

/// Tile of C per 8-lane workgroup of `matmul_subgroup.wgsl`.
pub const SUBGROUP_TILE_ROWS: usize = 32;
pub const SUBGROUP_TILE_COLS: usize = 64;

/// How A is stored: `Normal` is M x K row-major; `Transposed` is K x M row-major (A = a^T).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ALayout {
    Normal,
    Transposed,
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
}

impl Matmul<'_> {
    /// The variant the device prefers, falling back to `Tiled` where `Subgroup` cannot run this shape.
    pub fn dispatch(&self, gpu: &Gpu) -> Result<Dispatch> {
        self.dispatch_with(gpu, gpu.matmul)
    }

    pub fn dispatch_with(&self, gpu: &Gpu, variant: MatmulVariant) -> Result<Dispatch> {
        let (m, n, k) = (self.m, self.n, self.k);
        for (t, len, name) in [(self.a, m * k, "A"), (self.b, k * n, "B"), (self.c, m * n, "C")] {
            if t.len() < len {
                bail!("matmul {m}x{n}x{k}: operand {name} `{}` holds {} elements, needs {len}", t.label, t.len());
            }
        }
        let (a_row_stride, a_col_stride) = match self.a_layout {
            ALayout::Normal => (k as u32, 1),
            ALayout::Transposed => (1, m as u32),
        };
        let params = Params {
            m: m as u32,
            n: n as u32,
            k: k as u32,
            a_row_stride,
            a_col_stride,
            epilogue: self.bias.is_some() as u32 | (self.leaky_slope.is_some() as u32) << 1,
            slope: self.leaky_slope.unwrap_or(0.0),
            _pad: 0,
        };
        let uniform = gpu.uniform("matmul params", &params);
        // An unused bias slot still needs a binding: B is read-only like it, so no conflict.
        let bias = self.bias.unwrap_or(self.b);
        let resources = [
            uniform.as_entire_binding(),
            self.a.binding(),
            self.b.binding(),
            bias.binding(),
            self.c.binding(),
        ];
        let use_subgroup = variant == MatmulVariant::Subgroup && n % 4 == 0;
        let d = if use_subgroup {
            let groups = [n.div_ceil(SUBGROUP_TILE_COLS) as u32, m.div_ceil(SUBGROUP_TILE_ROWS) as u32, 1];
            // The vec4 path needs every row of A to start on a 16-byte boundary.
            let entry = if a_col_stride == 1 && k % 4 == 0 && a_row_stride % 4 == 0 { "matmul_subgroup" } else { "matmul_subgroup_strided" };
            Dispatch::new(gpu, &shader!("matmul_subgroup"), entry, &resources, groups)?
        } else {
            let groups = [n.div_ceil(64) as u32, m.div_ceil(64) as u32, 1];
            Dispatch::new(gpu, &shader!("matmul"), "matmul_tiled", &resources, groups)?
        };
        let (m, n, k) = (m as f64, n as f64, k as f64);
        Ok(d.with_cost(2.0 * m * n * k, 4.0 * (m * k + k * n + m * n)))
    }
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
