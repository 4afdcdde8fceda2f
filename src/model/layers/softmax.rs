//! Softmax after the logits: `Dense(10, activation="softmax")` or a last
//! `Activation("softmax")`. The losses are computed from logits (Keras's `from_logits=True`),
//! so they apply the softmax themselves: this layer passes the logits through, in every mode,
//! with no stage, no buffer and no gradient of its own. It can only come last, after the
//! Dense(10) (`Architecture::new` checks); Keras files written back keep it.

use super::{Gradients, Kind, Mode, Names, Planned, Reference, ReferenceGradients, Route};
use crate::gpu::Dispatch;
use crate::model::Dims;
use anyhow::Result;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Softmax;

impl Kind for Softmax {
    fn names(&self) -> Names {
        Names { keras_class: "Activation", keras_stem: "activation", stem: "softmax" }
    }

    fn keras_config(&self) -> serde_json::Value {
        serde_json::json!({"activation": "softmax"})
    }

    fn describe(&self) -> String {
        "Activation(\"softmax\")".into()
    }

    fn output(&self, input: Dims) -> Result<Dims, String> {
        match input {
            Dims::Vector(_) => Ok(input),
            Dims::Image { .. } => Err("a softmax reads the logits, a vector, but its input is an image".into()),
        }
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

    /// The logits: the losses apply the softmax.
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
