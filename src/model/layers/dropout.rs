//! Dropout(rate), as Keras: in training each element is kept with probability 1 - rate and
//! scaled by 1 / (1 - rate) (inverted dropout), in evaluation the layer is the identity. The
//! mask is a function of the model's seed, the layer, Adam's t and the element
//! (`ops::dropout`), so the backward pass draws it again instead of keeping it, a resumed run
//! draws the same masks, and the CPU reference draws them too.

use super::{Gradients, Kind, Mode, Names, Planned, Reference, ReferenceGradients, Route};
use crate::gpu::Dispatch;
use crate::model::Dims;
use crate::ops::dropout;
use anyhow::Result;

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Dropout {
    pub rate: f32,
}

impl Kind for Dropout {
    fn names(&self) -> Names {
        Names { keras_class: "Dropout", keras_stem: "dropout", stem: "dropout" }
    }

    fn describe(&self) -> String {
        format!("Dropout({})", self.rate)
    }

    fn keras_config(&self) -> serde_json::Value {
        serde_json::json!({"rate": self.rate})
    }

    fn output(&self, input: Dims) -> Result<Dims, String> {
        if !(0.0..1.0).contains(&self.rate) {
            return Err(format!("the rate must be in [0, 1), not {}", self.rate));
        }
        Ok(input)
    }

    fn passes_through(&self, mode: Mode) -> bool {
        mode == Mode::Evaluate
    }

    fn forward(&self, p: &Planned, _: Option<f32>) -> Result<Vec<Dispatch>> {
        Ok(vec![dropout::apply(p.gpu, self.rate, p.draw, p.state, p.x, p.y)?])
    }

    fn backward(&self, p: &Planned, g: &Gradients) -> Result<Vec<Dispatch>> {
        let dx = g.dx.expect("a layer above the first with parameters passes a gradient on");
        Ok(vec![dropout::apply(p.gpu, self.rate, p.draw, p.state, g.dy, dx)?])
    }

    fn reference_forward(&self, r: &Reference, x: &[f32]) -> (Vec<f32>, Route) {
        match r.mode {
            Mode::Train => (dropout::reference::apply(self.rate, r.draw, r.step, x), Route::Fixed),
            Mode::Evaluate => (x.to_vec(), Route::Fixed),
        }
    }

    fn reference_backward(&self, r: &Reference, _: &[f32], _: &Route, dy: &[f32], _: bool) -> ReferenceGradients {
        let dx = match r.mode {
            Mode::Train => dropout::reference::apply(self.rate, r.draw, r.step, dy),
            Mode::Evaluate => dy.to_vec(),
        };
        ReferenceGradients { dx: Some(dx), params: Vec::new() }
    }
}
