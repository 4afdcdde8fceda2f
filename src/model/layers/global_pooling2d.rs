//! GlobalAveragePooling2D and GlobalMaxPooling2D (`ops::globalpool`), Keras's defaults
//! (channels_last, keepdims=False): (h, w, c) -> (c), no parameters. The max keeps each
//! channel's winner for its backward pass.

use super::{At, Gradients, Kind, Names, Planned, Reference, ReferenceGradients, Route};
use crate::gpu::{Dispatch, Gpu};
use crate::model::Dims;
use crate::ops::globalpool::{self, GlobalShape};
use anyhow::Result;

/// The mean of each channel over all pixels.
pub struct GlobalAveragePooling2D;

/// The max of each channel over all pixels; its gradient goes to the first maximum.
pub struct GlobalMaxPooling2D;

fn shape(at: &At) -> GlobalShape {
    let Dims::Image { h, w, c } = at.input else { panic!("a global pool takes an image, not {:?}", at.input) };
    GlobalShape { batch: at.batch, in_h: h, in_w: w, channels: c }
}

fn output(input: Dims) -> Result<Dims, String> {
    match input {
        Dims::Image { c, .. } => Ok(Dims::Vector(c)),
        Dims::Vector(_) => Err("takes an image, but its input was flattened".into()),
    }
}

fn keras_config() -> serde_json::Value {
    serde_json::json!({"data_format": "channels_last", "keepdims": false})
}

fn dx<'a>(g: &Gradients<'a>) -> &'a crate::gpu::Tensor {
    g.dx.expect("a layer above the first with parameters passes a gradient on")
}

impl Kind for GlobalAveragePooling2D {
    fn names(&self) -> Names {
        Names { keras_class: "GlobalAveragePooling2D", keras_stem: "global_average_pooling2d", stem: "gap" }
    }

    fn keras_config(&self) -> serde_json::Value {
        keras_config()
    }

    fn output(&self, input: Dims) -> Result<Dims, String> {
        output(input)
    }

    fn forward(&self, p: &Planned, _: Option<f32>) -> Result<Vec<Dispatch>> {
        Ok(vec![globalpool::average_forward(p.gpu, &shape(&p.at), p.x, p.y)?])
    }

    fn backward(&self, p: &Planned, g: &Gradients) -> Result<Vec<Dispatch>> {
        Ok(vec![globalpool::average_backward(p.gpu, &shape(&p.at), g.dy, dx(g))?])
    }

    fn reference_forward(&self, r: &Reference, x: &[f32]) -> (Vec<f32>, Route) {
        (globalpool::reference::average_forward(&shape(&r.at), x), Route::Fixed)
    }

    fn reference_backward(&self, r: &Reference, _: &[f32], _: &Route, dy: &[f32], _: bool) -> ReferenceGradients {
        ReferenceGradients { dx: Some(globalpool::reference::average_backward(&shape(&r.at), dy)), params: Vec::new() }
    }
}

impl Kind for GlobalMaxPooling2D {
    fn names(&self) -> Names {
        Names { keras_class: "GlobalMaxPooling2D", keras_stem: "global_max_pooling2d", stem: "gmp" }
    }

    fn keras_config(&self) -> serde_json::Value {
        keras_config()
    }

    fn output(&self, input: Dims) -> Result<Dims, String> {
        output(input)
    }

    /// The winners: one flat input index (u32) per output.
    fn saved_len(&self, _: &Gpu, at: &At) -> Option<(&'static str, usize)> {
        Some(("winners", shape(at).output_len()))
    }

    fn forward(&self, p: &Planned, _: Option<f32>) -> Result<Vec<Dispatch>> {
        let winners = p.saved.expect("a global max pool keeps its winners");
        Ok(vec![globalpool::max_forward(p.gpu, &shape(&p.at), p.x, p.y, winners)?])
    }

    fn backward(&self, p: &Planned, g: &Gradients) -> Result<Vec<Dispatch>> {
        let winners = p.saved.expect("a global max pool keeps its winners");
        Ok(vec![globalpool::max_backward(p.gpu, &shape(&p.at), g.dy, winners, dx(g))?])
    }

    fn reference_forward(&self, r: &Reference, x: &[f32]) -> (Vec<f32>, Route) {
        let (y, winners) = globalpool::reference::max_forward(&shape(&r.at), x);
        (y, Route::Winners(winners))
    }

    fn reference_backward(&self, r: &Reference, _: &[f32], route: &Route, dy: &[f32], _: bool) -> ReferenceGradients {
        let Route::Winners(w) = route else { panic!("a global max pool routes by winners, not {route:?}") };
        ReferenceGradients { dx: Some(globalpool::reference::max_backward(&shape(&r.at), dy, w)), params: Vec::new() }
    }
}
