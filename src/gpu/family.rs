//! The kernel family: the one place that decides which entry point serves a launch and how
//! its inputs are bound.
//!
//! - `Buffers`, the design for GPUs, runs everywhere: kernels read storage buffers.
//! - `Textures`, for CPU drivers (lavapipe), where a texel fetch costs about a seventh of a
//!   storage-buffer load: the kernels that read much read texture copies of their inputs, four
//!   elements a texel (see `texture.rs`), and the matrix product shares A across an 8-lane
//!   subgroup.
//!
//! A texture-fed entry reads rows four elements at a time, so it serves a launch only when
//! each such row holds whole texels; a few are also written for one size. An op states those
//! facts as a [`TexelFit`]; where they fail, the buffer-fed entry runs, in either family.

use super::texture::TexelCopy;
use super::{grid_1d, Dispatch, Gpu, Shader, Tensor};
use anyhow::Result;
use std::cell::RefCell;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum KernelFamily {
    Buffers,
    Textures,
}

/// What a texture-fed entry needs of a launch's shape.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TexelFit {
    /// Lengths it reads or steps through four elements at a time: each must be a multiple of 4.
    fours: Vec<(&'static str, usize)>,
    /// Sizes it is written for: (what, the launch's size, the size it serves).
    exact: Vec<(&'static str, usize, usize)>,
}

impl TexelFit {
    /// Each of `lengths` (named for messages) must be a positive multiple of 4.
    pub fn fours(lengths: &[(&'static str, usize)]) -> TexelFit {
        TexelFit { fours: lengths.to_vec(), exact: Vec::new() }
    }

    /// The entry is written for `what` == `serves` only.
    pub fn and_exactly(mut self, what: &'static str, size: usize, serves: usize) -> TexelFit {
        self.exact.push((what, size, serves));
        self
    }

    /// Why a texture-fed entry cannot serve this launch; None when it can.
    pub fn misfit(&self) -> Option<String> {
        let mut reasons: Vec<String> = self
            .fours
            .iter()
            .filter(|(_, n)| *n == 0 || !n.is_multiple_of(4))
            .map(|(what, n)| format!("{what} = {n} is not a multiple of 4"))
            .collect();
        reasons.extend(
            self.exact.iter().filter(|(_, n, s)| n != s).map(|(what, n, s)| format!("{what} = {n}, written for {s}")),
        );
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }
}

impl KernelFamily {
    /// Whether the family's CPU-driver variant serves a launch that needs `fit`.
    pub fn serves(self, fit: &TexelFit) -> bool {
        self == KernelFamily::Textures && fit.misfit().is_none()
    }

    /// The choice for one launch of a kernel that has a buffer-fed entry and a texture-fed twin.
    pub fn launch<'g>(self, gpu: &'g Gpu, fit: &TexelFit) -> Launch<'g> {
        Launch { gpu, textures: self.serves(fit), uploads: RefCell::new(Vec::new()) }
    }
}

/// An input as a launch binds it: its buffer, or a texture copy made just before the pass.
pub enum Input {
    Buffer(Tensor),
    Texels(Arc<TexelCopy>),
}

impl Input {
    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        match self {
            Input::Buffer(t) => t.binding(),
            Input::Texels(t) => t.binding(),
        }
    }
}

/// One launch as the family chose it: which entry, how inputs bind, how many workgroups.
pub struct Launch<'g> {
    gpu: &'g Gpu,
    textures: bool,
    uploads: RefCell<Vec<Arc<TexelCopy>>>,
}

impl Launch<'_> {
    pub fn reads_textures(&self) -> bool {
        self.textures
    }

    /// `buffers` for the buffer-fed entry, `textures` for its twin.
    pub fn pick<T>(&self, buffers: T, textures: T) -> T {
        if self.textures {
            textures
        } else {
            buffers
        }
    }

    /// The first `elements` f32 of `t` as the chosen entry reads them.
    pub fn input(&self, t: &Tensor, elements: usize) -> Result<Input> {
        self.bind(t, || TexelCopy::new(self.gpu, t, elements))
    }

    /// The same for a tensor of u32.
    pub fn input_u32(&self, t: &Tensor, elements: usize) -> Result<Input> {
        self.bind(t, || TexelCopy::new_u32(self.gpu, t, elements))
    }

    /// Texture copies of `tensors` when the twin runs (it reads them besides writing them in
    /// place), nothing for the buffer-fed entry.
    pub fn texture_copies(&self, tensors: &[&Tensor], elements: usize) -> Result<Vec<Input>> {
        tensors.iter().filter(|_| self.textures).map(|t| self.input(t, elements)).collect()
    }

    fn bind(&self, t: &Tensor, copy: impl FnOnce() -> Result<TexelCopy>) -> Result<Input> {
        if !self.textures {
            return Ok(Input::Buffer(t.clone()));
        }
        let texels = Arc::new(copy()?);
        self.uploads.borrow_mut().push(texels.clone());
        Ok(Input::Texels(texels))
    }

    /// Workgroups for a kernel over `items` elements: one element per invocation from
    /// buffers, one texel (four elements) per invocation from textures.
    pub fn grid(&self, items: usize, workgroup_size: u32) -> [u32; 3] {
        grid_1d(if self.textures { items / 4 } else { items }, workgroup_size)
    }

    /// The dispatch of `entry`, written once for both families (the shader's `#if` blocks,
    /// see common.wgsl), as the chosen family compiles it, with the texture copies its inputs
    /// need recorded before it.
    pub fn dispatch_body(
        self,
        shader: &Shader,
        entry: &'static str,
        resources: &[wgpu::BindingResource<'_>],
        workgroups: [u32; 3],
    ) -> Result<Dispatch> {
        self.dispatch(shader, (entry, entry), resources, workgroups)
    }

    /// The dispatch of `entries.0` (buffers) or `entries.1` (textures), with the texture
    /// copies its inputs need recorded before it. Entries written for one family alone (the
    /// dense layer's ten-unit texture-fed kernels, the transposes, the products) are separate
    /// functions; the shader is compiled as the chosen family compiles it either way.
    pub fn dispatch(
        self,
        shader: &Shader,
        entries: (&'static str, &'static str),
        resources: &[wgpu::BindingResource<'_>],
        workgroups: [u32; 3],
    ) -> Result<Dispatch> {
        let entry = self.pick(entries.0, entries.1);
        let shader = shader.for_family(self.pick(KernelFamily::Buffers, KernelFamily::Textures));
        Ok(Dispatch::new(self.gpu, &shader, entry, resources, workgroups)?.with_uploads(self.uploads.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texture_entries_serve_whole_texels_only() {
        let fit = TexelFit::fours(&[("channels", 16), ("rows", 8)]);
        assert_eq!(fit.misfit(), None);
        assert!(KernelFamily::Textures.serves(&fit));
        assert!(!KernelFamily::Buffers.serves(&fit), "the buffer family never reads textures");
        let odd = TexelFit::fours(&[("channels", 17), ("rows", 8)]);
        assert_eq!(odd.misfit().as_deref(), Some("channels = 17 is not a multiple of 4"));
        assert!(!KernelFamily::Textures.serves(&odd));
        assert!(TexelFit::fours(&[("empty", 0)]).misfit().is_some());
    }

    #[test]
    fn a_twin_written_for_one_size_serves_that_size_only() {
        let dense = |units| TexelFit::fours(&[("inputs", 1568)]).and_exactly("units", units, 10);
        assert!(KernelFamily::Textures.serves(&dense(10)));
        assert_eq!(dense(12).misfit().as_deref(), Some("units = 12, written for 10"));
    }
}
