//! Dense: y = x W + b over a flattened input, anywhere after a Flatten (`ops::dense`).

use super::{At, Gradients, Kind, Names, ParamShape, Planned, Reference, ReferenceGradients, Route};
use crate::gpu::Dispatch;
use crate::model::Dims;
use crate::ops::dense::{self, DenseGrads, DenseShape};
use crate::ops::KernelBias;
use anyhow::Result;

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Dense {
    pub units: usize,
}

impl Dense {
    fn shape(&self, at: &At) -> DenseShape {
        DenseShape { batch: at.batch, inputs: at.input.len(), units: self.units }
    }
}

impl Kind for Dense {
    fn names(&self) -> Names {
        Names { keras_class: "Dense", keras_stem: "dense", stem: "dense" }
    }

    fn describe(&self) -> String {
        format!("Dense({})", self.units)
    }

    fn keras_config(&self) -> serde_json::Value {
        serde_json::json!({"units": self.units})
    }

    fn output(&self, input: Dims) -> Result<Dims, String> {
        match input {
            Dims::Image { .. } => Err("needs a Flatten before it".into()),
            Dims::Vector(_) if self.units == 0 => Err("units must be at least 1".into()),
            Dims::Vector(_) => {
                super::check_limits(&[("units", self.units, super::MAX_UNITS)]).map(|()| Dims::Vector(self.units))
            }
        }
    }

    fn params(&self, input: Dims) -> Vec<ParamShape> {
        let (i, u) = (input.len(), self.units);
        vec![
            ParamShape { suffix: "kernel", shape: vec![i, u], fans: Some(i + u) },
            ParamShape { suffix: "bias", shape: vec![u], fans: None },
        ]
    }

    fn product_flops(&self, at: &At) -> f64 {
        2.0 * (at.batch * at.input.len() * self.units) as f64
    }

    fn scratch_len(&self, at: &At) -> usize {
        self.shape(at).scratch_len()
    }

    fn forward(&self, p: &Planned, _: Option<f32>) -> Result<Vec<Dispatch>> {
        let weights = KernelBias { kernel: &p.params[0], bias: &p.params[1] };
        dense::forward(p.gpu, &self.shape(&p.at), p.x, weights, p.scratch, p.y)
    }

    fn backward(&self, p: &Planned, g: &Gradients) -> Result<Vec<Dispatch>> {
        let grads = DenseGrads { params: KernelBias { kernel: &g.params[0], bias: &g.params[1] }, input: g.dx };
        let d = dense::backward(p.gpu, &self.shape(&p.at), p.x, &p.params[0], g.dy, grads, p.scratch)?;
        Ok(d)
    }

    fn reference_forward(&self, r: &Reference, x: &[f32]) -> (Vec<f32>, Route) {
        (dense::reference::forward(&self.shape(&r.at), x, r.params[0], r.params[1]), Route::Fixed)
    }

    fn reference_backward(
        &self,
        r: &Reference,
        x: &[f32],
        _: &Route,
        dy: &[f32],
        needs_dx: bool,
    ) -> ReferenceGradients {
        let (dx, dw, db) = dense::reference::backward(&self.shape(&r.at), x, r.params[0], dy);
        ReferenceGradients { dx: needs_dx.then_some(dx), params: vec![dw, db] }
    }
}
