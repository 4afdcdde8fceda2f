//! AveragePooling2D, "same" or "valid" padding (`ops::avgpool`): each window's real cells
//! averaged, as TensorFlow does for "same".

use super::{At, Gradients, Kind, Names, Planned, Reference, ReferenceGradients, Route};
use crate::gpu::Dispatch;
use crate::model::Dims;
use crate::ops::avgpool;
use crate::ops::maxpool::PoolShape;
use crate::ops::Padding;
use anyhow::Result;

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AveragePooling2D {
    pub size: usize,
    pub stride: usize,
    #[serde(default, skip_serializing_if = "Padding::is_same")]
    pub padding: Padding,
}

impl AveragePooling2D {
    fn shape(&self, at: &At) -> PoolShape {
        let Dims::Image { h, w, c } = at.input else {
            panic!("an AveragePooling2D takes an image, not {:?}", at.input)
        };
        let (size, stride, padding) = (self.size, self.stride, self.padding);
        PoolShape { batch: at.batch, in_h: h, in_w: w, channels: c, size, stride, padding }
    }
}

impl Kind for AveragePooling2D {
    fn names(&self) -> Names {
        Names { keras_class: "AveragePooling2D", keras_stem: "average_pooling2d", stem: "avgpool" }
    }

    fn describe(&self) -> String {
        format!("AveragePooling2D({}, strides={}, padding=\"{}\")", self.size, self.stride, self.padding.keras())
    }

    fn keras_config(&self) -> serde_json::Value {
        let (p, s) = (self.size, self.stride);
        serde_json::json!({"pool_size": [p, p], "strides": [s, s], "padding": self.padding.keras()})
    }

    fn output(&self, input: Dims) -> Result<Dims, String> {
        super::pool_output(input, self.size, self.stride, self.padding)
    }

    fn forward(&self, p: &Planned, _: Option<f32>) -> Result<Vec<Dispatch>> {
        Ok(vec![avgpool::forward(p.gpu, &self.shape(&p.at), p.x, p.y)?])
    }

    fn backward(&self, p: &Planned, g: &Gradients) -> Result<Vec<Dispatch>> {
        let dx = g.dx.expect("a layer above the first with parameters passes a gradient on");
        Ok(vec![avgpool::backward(p.gpu, &self.shape(&p.at), g.dy, dx)?])
    }

    fn reference_forward(&self, r: &Reference, x: &[f32]) -> (Vec<f32>, Route) {
        (avgpool::reference::forward(&self.shape(&r.at), x), Route::Fixed)
    }

    fn reference_backward(&self, r: &Reference, _: &[f32], _: &Route, dy: &[f32], _: bool) -> ReferenceGradients {
        ReferenceGradients { dx: Some(avgpool::reference::backward(&self.shape(&r.at), dy)), params: Vec::new() }
    }
}
