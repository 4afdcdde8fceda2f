//! MaxPooling2D, "same" or "valid" padding (`ops::maxpool`). It keeps each window's winner for its
//! backward pass, which goes on through an activation right before it (one pass less).

use super::{At, Gradients, Kind, Names, Planned, Reference, ReferenceGradients, Route};
use crate::gpu::{Dispatch, Gpu};
use crate::model::Dims;
use crate::ops::maxpool::{self, LeakyBefore, PoolShape};
use crate::ops::Padding;
use anyhow::Result;

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MaxPooling2D {
    pub size: usize,
    pub stride: usize,
    /// Left out of layer lists when "same" (lists written before "valid" read the same).
    #[serde(default, skip_serializing_if = "Padding::is_same")]
    pub padding: Padding,
}

impl MaxPooling2D {
    fn shape(&self, at: &At) -> PoolShape {
        let Dims::Image { h, w, c } = at.input else { panic!("a MaxPooling2D takes an image, not {:?}", at.input) };
        let (size, stride, padding) = (self.size, self.stride, self.padding);
        PoolShape { batch: at.batch, in_h: h, in_w: w, channels: c, size, stride, padding }
    }
}

impl Kind for MaxPooling2D {
    fn names(&self) -> Names {
        Names { keras_class: "MaxPooling2D", keras_stem: "max_pooling2d", stem: "pool" }
    }

    fn describe(&self) -> String {
        format!("MaxPooling2D({}, strides={}, padding=\"{}\")", self.size, self.stride, self.padding.keras())
    }

    fn keras_config(&self) -> serde_json::Value {
        let (p, s) = (self.size, self.stride);
        serde_json::json!({"pool_size": [p, p], "strides": [s, s], "padding": self.padding.keras()})
    }

    fn output(&self, input: Dims) -> Result<Dims, String> {
        super::pool_output(input, self.size, self.stride, self.padding)
    }

    fn fuses_activation_before(&self) -> bool {
        true
    }

    /// The winners: one flat input index (u32) per output.
    fn saved_len(&self, _: &Gpu, at: &At) -> Option<(&'static str, usize)> {
        Some(("winners", self.shape(at).output_len()))
    }

    fn forward(&self, p: &Planned, _: Option<f32>) -> Result<Vec<Dispatch>> {
        let winners = p.saved.expect("a pooling layer keeps its winners");
        Ok(vec![maxpool::forward(p.gpu, &self.shape(&p.at), p.x, p.y, winners)?])
    }

    fn backward(&self, p: &Planned, g: &Gradients) -> Result<Vec<Dispatch>> {
        let winners = p.saved.expect("a pooling layer keeps its winners");
        let dx = g.dx.expect("a layer above the first with parameters passes a gradient on");
        let before = g.through.map(|slope| LeakyBefore { slope, output: p.x });
        Ok(vec![maxpool::backward(p.gpu, &self.shape(&p.at), g.dy, winners, before, dx)?])
    }

    fn reference_forward(&self, r: &Reference, x: &[f32]) -> (Vec<f32>, Route) {
        let (y, winners) = maxpool::reference::forward(&self.shape(&r.at), x);
        (y, Route::Winners(winners))
    }

    fn reference_backward(&self, r: &Reference, _: &[f32], route: &Route, dy: &[f32], _: bool) -> ReferenceGradients {
        let Route::Winners(w) = route else { panic!("a pooling layer routes by winners, not {route:?}") };
        ReferenceGradients { dx: Some(maxpool::reference::backward(&self.shape(&r.at), dy, w)), params: Vec::new() }
    }
}
