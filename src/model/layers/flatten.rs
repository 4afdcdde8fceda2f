//! Flatten: NHWC is already the order Keras flattens in, so it is a no-op in memory.

use super::{Gradients, Kind, Mode, Names, Planned, Reference, ReferenceGradients, Route};
use crate::gpu::Dispatch;
use crate::model::Dims;
use anyhow::Result;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Flatten;

impl Kind for Flatten {
    fn names(&self) -> Names {
        Names { keras_class: "Flatten", keras_stem: "flatten", stem: "flatten" }
    }

    fn output(&self, input: Dims) -> Result<Dims, String> {
        Ok(Dims::Vector(input.len()))
    }

    fn passes_through(&self, _: Mode) -> bool {
        true
    }

    fn forward(&self, _: &Planned, _: Option<f32>) -> Result<Vec<Dispatch>> {
        Ok(Vec::new())
    }

    fn backward(&self, _: &Planned, _: &Gradients) -> Result<Vec<Dispatch>> {
        Ok(Vec::new())
    }

    fn reference_forward(&self, _: &Reference, x: &[f32]) -> (Vec<f32>, Route) {
        (x.to_vec(), Route::Fixed)
    }

    fn reference_backward(
        &self,
        _: &Reference,
        _: &[f32],
        _: &Route,
        dy: &[f32],
        needs_dx: bool,
    ) -> ReferenceGradients {
        ReferenceGradients { dx: needs_dx.then(|| dy.to_vec()), params: Vec::new() }
    }
}
