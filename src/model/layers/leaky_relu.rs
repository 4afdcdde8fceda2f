//! LeakyReLU (Keras's `negative_slope`): an elementwise activation (`ops::activation`).

use super::{Gradients, Kind, Names, Planned, Reference, ReferenceGradients, Route};
use crate::gpu::Dispatch;
use crate::model::Dims;
use anyhow::Result;

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LeakyReLU {
    pub slope: f32,
}

impl Kind for LeakyReLU {
    fn names(&self) -> Names {
        Names { keras_class: "LeakyReLU", keras_stem: "leaky_re_lu", stem: "leaky" }
    }

    fn describe(&self) -> String {
        format!("LeakyReLU(negative_slope={})", self.slope)
    }

    fn keras_config(&self) -> serde_json::Value {
        serde_json::json!({"negative_slope": self.slope})
    }

    fn output(&self, input: Dims) -> Result<Dims, String> {
        // The backward pass reads the output's sign for the input's (see leaky_relu.wgsl).
        if !(self.slope >= 0.0 && self.slope.is_finite()) {
            return Err(format!("the slope must be 0 or more, not {}", self.slope));
        }
        Ok(input)
    }

    fn activation_slope(&self) -> Option<f32> {
        Some(self.slope)
    }

    fn forward(&self, p: &Planned, _: Option<f32>) -> Result<Vec<Dispatch>> {
        super::activation_forward(p, self.slope)
    }

    fn backward(&self, p: &Planned, g: &Gradients) -> Result<Vec<Dispatch>> {
        super::activation_backward(p, g, self.slope)
    }

    fn reference_forward(&self, _: &Reference, x: &[f32]) -> (Vec<f32>, Route) {
        super::activation_reference_forward(x, self.slope)
    }

    fn reference_backward(&self, _: &Reference, _: &[f32], route: &Route, dy: &[f32], _: bool) -> ReferenceGradients {
        super::activation_reference_backward(self.slope, route, dy)
    }
}
