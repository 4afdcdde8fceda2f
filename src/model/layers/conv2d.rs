//! Conv2D: "same" or "valid" padding, square kernel and stride, with bias; products over im2col
//! (`ops::conv2d`), an activation after it run in the forward product's epilogue. A 1x1
//! kernel at stride 1 (a feature term's projection) reads its input as its im2col matrix.

use super::{At, Gradients, Kind, Names, ParamShape, Planned, Reference, ReferenceGradients, Route};
use crate::gpu::{tag, Dispatch, Gpu, Tensor};
use crate::model::Dims;
use crate::ops::conv2d::{self, Cols, ConvShape};
use crate::ops::{KernelBias, Padding};
use anyhow::Result;

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Conv2D {
    pub filters: usize,
    pub kernel: usize,
    pub stride: usize,
    /// Left out of layer lists when "same" (lists written before "valid" read the same).
    #[serde(default, skip_serializing_if = "Padding::is_same")]
    pub padding: Padding,
}

impl Conv2D {
    /// Its convolution over `batch` samples of `input` (an image).
    pub fn shape(&self, input: Dims, batch: usize) -> ConvShape {
        let Dims::Image { h, w, c } = input else { panic!("a Conv2D takes an image, not {input:?}") };
        let (kernel, stride, padding) = (self.kernel, self.stride, self.padding);
        ConvShape { batch, in_h: h, in_w: w, in_c: c, out_c: self.filters, kernel, stride, padding }
    }

    /// The im2col matrix as its products read it: the input of a pointwise convolution, else
    /// kept in `saved` when written out.
    fn cols<'a>(s: &ConvShape, saved: Option<&'a Tensor>) -> Cols<'a> {
        match saved {
            _ if s.is_pointwise() => Cols::Input,
            Some(cols) => Cols::Written(cols),
            None => Cols::Gathered,
        }
    }
}

impl Kind for Conv2D {
    fn names(&self) -> Names {
        Names { keras_class: "Conv2D", keras_stem: "conv2d", stem: "conv" }
    }

    fn describe(&self) -> String {
        let (f, k, s, p) = (self.filters, self.kernel, self.stride, self.padding.keras());
        format!("Conv2D({f}, {k}, strides={s}, padding=\"{p}\")")
    }

    fn keras_config(&self) -> serde_json::Value {
        let (k, s, p) = (self.kernel, self.stride, self.padding.keras());
        serde_json::json!({"filters": self.filters, "kernel_size": [k, k], "strides": [s, s], "padding": p})
    }

    fn output(&self, input: Dims) -> Result<Dims, String> {
        let Dims::Image { h, w, c } = input else { return Err("takes an image, but its input was flattened".into()) };
        if self.filters == 0 || self.kernel == 0 || self.stride == 0 {
            return Err("sizes must be at least 1".into());
        }
        super::check_limits(&[
            ("filters", self.filters, super::MAX_UNITS),
            ("kernel", self.kernel, super::MAX_WINDOW),
            ("strides", self.stride, super::MAX_WINDOW),
        ])?;
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        let (out_h, out_w) = (p.along(h, k, s).0, p.along(w, k, s).0);
        super::check_window("kernel", k, (h, w, c), (out_h, out_w), p)?;
        Ok(Dims::Image { h: out_h, w: out_w, c: self.filters })
    }

    fn params(&self, input: Dims) -> Vec<ParamShape> {
        let (k, f, c) = (self.kernel, self.filters, input.channels());
        vec![
            ParamShape { suffix: "kernel", shape: vec![k, k, c, f], fans: Some(k * k * (c + f)) },
            ParamShape { suffix: "bias", shape: vec![f], fans: None },
        ]
    }

    fn product_flops(&self, at: &At) -> f64 {
        self.shape(at.input, at.batch).flops()
    }

    fn fuses_activation_after(&self) -> bool {
        true
    }

    /// The im2col matrix, unless the products gather it or it is the input.
    fn saved_len(&self, gpu: &Gpu, at: &At) -> Option<(&'static str, usize)> {
        let s = self.shape(at.input, at.batch);
        (!s.is_pointwise() && !conv2d::gathers_im2col(gpu, &s)).then(|| ("im2col", s.m() * s.k()))
    }

    fn scratch_len(&self, at: &At) -> usize {
        self.shape(at.input, at.batch).kernel_grad_scratch()
    }

    fn buffer_sizes(&self, at: &At) -> Vec<(&'static str, usize)> {
        let s = self.shape(at.input, at.batch);
        let im2col = (!s.is_pointwise()).then(|| ("im2col", s.m() * s.k()));
        im2col.into_iter().chain([("kernel transposed", s.kernel_len())]).collect()
    }

    fn forward(&self, p: &Planned, epilogue: Option<f32>) -> Result<Vec<Dispatch>> {
        let s = self.shape(p.at.input, p.at.batch);
        let weights = KernelBias { kernel: &p.params[0], bias: &p.params[1] };
        conv2d::forward(p.gpu, &s, p.x, weights, epilogue, Self::cols(&s, p.saved), p.y)
    }

    fn backward(&self, p: &Planned, g: &Gradients) -> Result<Vec<Dispatch>> {
        let s = self.shape(p.at.input, p.at.batch);
        let mut d = Vec::new();
        if let Some(dx) = g.dx {
            let t = |what: &str, len| Tensor::zeros(p.gpu, &format!("{} {what}", p.label), &[len]);
            let w_t = t("kernel transposed", s.kernel_len())?;
            let dcols = match s.is_pointwise() {
                true => None,
                false => Some(t("im2col gradient", s.m() * s.k())?),
            };
            let input = conv2d::backward_input(p.gpu, &s, g.dy, &p.params[0], &w_t, dcols.as_ref(), dx)?;
            d.extend(tag("input grad", input));
        }
        let grads = KernelBias { kernel: &g.params[0], bias: &g.params[1] };
        let kernel = conv2d::backward_kernel(p.gpu, &s, p.x, Self::cols(&s, p.saved), g.dy, grads, p.scratch)?;
        d.extend(tag("kernel grad", kernel));
        Ok(d)
    }

    fn reference_forward(&self, r: &Reference, x: &[f32]) -> (Vec<f32>, Route) {
        let s = self.shape(r.at.input, r.at.batch);
        (conv2d::reference::forward(&s, x, r.params[0], r.params[1], None), Route::Fixed)
    }

    fn reference_backward(
        &self,
        r: &Reference,
        x: &[f32],
        _: &Route,
        dy: &[f32],
        needs_dx: bool,
    ) -> ReferenceGradients {
        let s = self.shape(r.at.input, r.at.batch);
        let (dw, db) = conv2d::reference::backward_kernel(&s, x, dy);
        let dx = needs_dx.then(|| conv2d::reference::backward_input(&s, dy, r.params[0]));
        ReferenceGradients { dx, params: vec![dw, db] }
    }
}
