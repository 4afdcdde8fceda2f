//! ReLU: the activation of slope 0 (Keras's ReLU() with its defaults, or activation="relu"),
//! run by the same kernels, epilogue and fused pool backward as LeakyReLU.

use super::{Gradients, Kind, Names, Planned, Reference, ReferenceGradients, Route};
use crate::gpu::Dispatch;
use crate::model::Dims;
use anyhow::Result;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReLU;

impl Kind for ReLU {
    fn names(&self) -> Names {
        Names { keras_class: "ReLU", keras_stem: "re_lu", stem: "relu" }
    }

    fn output(&self, input: Dims) -> Result<Dims, String> {
        Ok(input)
    }

    fn activation_slope(&self) -> Option<f32> {
        Some(0.0)
    }

    fn forward(&self, p: &Planned, _: Option<f32>) -> Result<Vec<Dispatch>> {
        super::activation_forward(p, 0.0)
    }

    fn backward(&self, p: &Planned, g: &Gradients) -> Result<Vec<Dispatch>> {
        super::activation_backward(p, g, 0.0)
    }

    fn reference_forward(&self, _: &Reference, x: &[f32]) -> (Vec<f32>, Route) {
        super::activation_reference_forward(x, 0.0)
    }

    fn reference_backward(&self, _: &Reference, _: &[f32], route: &Route, dy: &[f32], _: bool) -> ReferenceGradients {
        super::activation_reference_backward(0.0, route, dy)
    }
}
