//! One module per layer kind. A kind ([`Kind`]) holds everything the engine knows of it: its
//! Keras names, its size rule and parameters, what it keeps for its backward pass, its
//! planned forward and backward dispatches, and its plain CPU reference. [`Layer`] is the
//! list of kinds as data (what checkpoints record), and [`Layer::kind`] the one place that
//! maps a layer to its kind.
//!
//! Adding a kind: a file here with a struct that implements [`Kind`], a variant of [`Layer`]
//! and its arm in [`Layer::kind`], a shader if it needs one, and its Keras class in
//! `keras.rs` if Keras files may name it.

mod average_pooling2d;
mod conv2d;
mod dense;
mod dropout;
mod flatten;
mod global_pooling2d;
mod leaky_relu;
mod max_pooling2d;
mod relu;
mod softmax;

pub use average_pooling2d::AveragePooling2D;
pub use conv2d::Conv2D;
pub use dense::Dense;
pub use dropout::Dropout;
pub use flatten::Flatten;
pub use global_pooling2d::{GlobalAveragePooling2D, GlobalMaxPooling2D};
pub use leaky_relu::LeakyReLU;
pub use max_pooling2d::MaxPooling2D;
pub use relu::ReLU;
pub use softmax::Softmax;

use super::Dims;
use crate::gpu::{Dispatch, Gpu, Tensor};
pub use crate::ops::dropout::Draw;
use crate::ops::{activation, Padding};
use anyhow::Result;

/// One layer, with Keras's meaning. Convolutions and pooling pad "same" (as the seed does) or
/// "valid".
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Layer {
    Conv2D(Conv2D),
    LeakyReLU(LeakyReLU),
    MaxPooling2D(MaxPooling2D),
    /// NHWC order, a no-op in memory.
    Flatten,
    Dense(Dense),
    ReLU,
    Dropout(Dropout),
    /// The softmax over the logits, last: the losses apply it ([`Softmax`]).
    Softmax,
    /// (h, w, c) -> (c): each channel's mean over its pixels.
    GlobalAveragePooling2D,
    /// (h, w, c) -> (c): each channel's max over its pixels.
    GlobalMaxPooling2D,
    AveragePooling2D(AveragePooling2D),
}

impl Layer {
    /// What the layer does: the one match over the kinds.
    pub fn kind(&self) -> &dyn Kind {
        match self {
            Layer::Conv2D(k) => k,
            Layer::LeakyReLU(k) => k,
            Layer::MaxPooling2D(k) => k,
            Layer::Flatten => &Flatten,
            Layer::Dense(k) => k,
            Layer::ReLU => &ReLU,
            Layer::Dropout(k) => k,
            Layer::Softmax => &Softmax,
            Layer::GlobalAveragePooling2D => &GlobalAveragePooling2D,
            Layer::GlobalMaxPooling2D => &GlobalMaxPooling2D,
            Layer::AveragePooling2D(k) => k,
        }
    }
}

/// The largest filter or unit count, and the largest kernel, pool or stride side, a layer may
/// have: far beyond a 28 x 28 image, and small enough that no size derived from them
/// overflows before `Architecture::new` checks the tensors against what the kernels index.
pub const MAX_UNITS: usize = 1 << 20;
pub const MAX_WINDOW: usize = 64;

/// Refuses any `(what, value, limit)` above its limit.
fn check_limits(sizes: &[(&str, usize, usize)]) -> Result<(), String> {
    match sizes.iter().find(|(_, v, limit)| v > limit) {
        Some((what, v, limit)) => Err(format!("{what} {v} is more than the {limit} supported")),
        None => Ok(()),
    }
}

/// Refuses a window (a kernel or a pool) that leaves no output: with "valid" padding, one
/// larger than its input.
fn check_window(
    what: &str,
    size: usize,
    (h, w, c): (usize, usize, usize),
    out: (usize, usize),
    p: Padding,
) -> Result<(), String> {
    match out {
        (0, _) | (_, 0) => Err(format!(
            "its {size}x{size} {what} window with padding \"{}\" is larger than its {h}x{w}x{c} input: the output \
             would be {}x{}",
            p.keras(),
            out.0,
            out.1
        )),
        _ => Ok(()),
    }
}

/// A pool's output (MaxPooling2D, AveragePooling2D): `size` x `size` windows every `stride`
/// pixels with `padding`, channels kept.
fn pool_output(input: Dims, size: usize, stride: usize, padding: Padding) -> Result<Dims, String> {
    let Dims::Image { h, w, c } = input else { return Err("takes an image, but its input was flattened".into()) };
    if size == 0 || stride == 0 {
        return Err("sizes must be at least 1".into());
    }
    check_limits(&[("pool size", size, MAX_WINDOW), ("strides", stride, MAX_WINDOW)])?;
    let (out_h, out_w) = (padding.along(h, size, stride).0, padding.along(w, size, stride).0);
    check_window("pool", size, (h, w, c), (out_h, out_w), padding)?;
    Ok(Dims::Image { h: out_h, w: out_w, c })
}

/// Training or evaluation, as Keras's `training` argument: Dropout drops only in training.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Train,
    Evaluate,
}

/// A layer's sizes at one batch size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct At {
    pub batch: usize,
    /// One sample's input and output.
    pub input: Dims,
    pub output: Dims,
}

/// What a kind is called.
pub struct Names {
    /// Keras's class name: `Conv2D`.
    pub keras_class: &'static str,
    /// The stem of Keras's default layer names: `conv2d`, then `conv2d_1`, ..
    pub keras_stem: &'static str,
    /// The stem of our names for it, in parameter names and reports: `conv` gives conv1,
    /// conv2, ..; the others are numbered from their second: dense, dense2.
    pub stem: &'static str,
}

/// One parameter tensor of a kind: its name within the layer, Keras shape, and glorot
/// fan-in + fan-out (None for biases, initialised to zero).
pub struct ParamShape {
    pub suffix: &'static str,
    pub shape: Vec<usize>,
    pub fans: Option<usize>,
}

/// A planned layer's buffers and settings, for its forward and backward dispatches.
pub struct Planned<'a> {
    pub gpu: &'a Gpu,
    pub at: At,
    /// For buffer labels: the model's and the layer's names ("teacher conv2").
    pub label: String,
    pub draw: Draw,
    /// The step state (`common.wgsl`, StepState): Dropout draws its masks from Adam's t.
    pub state: &'a Tensor,
    /// Its input, its output, and what its forward pass keeps ([`Kind::saved_len`]).
    pub x: &'a Tensor,
    pub y: &'a Tensor,
    pub saved: Option<&'a Tensor>,
    /// Its parameters, as views of the model's weights in [`Kind::params`] order.
    pub params: &'a [Tensor],
    /// Scratch space shared by every layer's split reductions (they run one after another).
    pub scratch: &'a Tensor,
}

/// What a backward pass writes, from `dy`, the gradient of the layer's output.
pub struct Gradients<'a> {
    pub dy: &'a Tensor,
    /// Its parameters' gradients: views of the model's gradient buffer, as `Planned::params`.
    pub params: &'a [Tensor],
    /// The gradient of its input; None for the first layer with parameters (nothing below
    /// needs it). With `through`, the gradient of that activation's input.
    pub dx: Option<&'a Tensor>,
    /// An activation right before the layer whose backward pass this one runs too
    /// ([`Kind::fuses_activation_before`]): its slope. Its output is the layer's input `x`.
    pub through: Option<f32>,
}

/// The CPU reference's view of one layer at one step.
pub struct Reference<'a> {
    pub at: At,
    pub mode: Mode,
    pub draw: Draw,
    /// Adam's t of the step (Dropout's masks depend on it).
    pub step: u32,
    /// Its parameters in [`Kind::params`] order.
    pub params: Vec<&'a [f32]>,
}

/// How a layer routes its gradient where that depends on its forward values. Values equal up
/// to rounding may decide differently on another device; the whole-step test gives the
/// reference's backward pass the device's decisions once it has checked that they are such ties.
#[derive(Clone, Debug, PartialEq)]
pub enum Route {
    /// The gradient does not depend on the forward values.
    Fixed,
    /// A pooling layer's winners: flat input indices, the first maximum in window order.
    Winners(Vec<u32>),
    /// An activation's positive inputs, which pass the gradient unscaled.
    Positive(Vec<bool>),
}

/// What a layer's reference backward pass gives: its input's gradient (when asked for) and
/// its parameters' gradients in [`Kind::params`] order.
pub struct ReferenceGradients {
    pub dx: Option<Vec<f32>>,
    pub params: Vec<Vec<f32>>,
}

/// Everything about one kind of layer.
pub trait Kind {
    /// Its names: Keras's and ours.
    fn names(&self) -> Names;
    fn keras_class(&self) -> &'static str {
        self.names().keras_class
    }
    fn keras_stem(&self) -> &'static str {
        self.names().keras_stem
    }
    fn stem(&self) -> &'static str {
        self.names().stem
    }
    /// Its options as Keras's `get_config()` names them (the rest at Keras's defaults), for
    /// the Keras model file a checkpoint carries.
    fn keras_config(&self) -> serde_json::Value {
        serde_json::json!({})
    }
    /// The layer as Keras's constructor would read: `Conv2D(16, 3, strides=2)`.
    fn describe(&self) -> String {
        format!("{}()", self.keras_class())
    }

    /// One sample's output size for `input`, or what is wrong with the layer there.
    fn output(&self, input: Dims) -> Result<Dims, String>;

    /// Its parameter tensors in Keras's layouts.
    fn params(&self, _input: Dims) -> Vec<ParamShape> {
        Vec::new()
    }

    /// Floating-point operations of its forward matrix product (0 for the rest).
    fn product_flops(&self, _at: &At) -> f64 {
        0.0
    }

    /// As an elementwise activation, the factor it applies to inputs that are not positive
    /// (what a product's epilogue or a pool's backward pass can apply for it); None otherwise.
    fn activation_slope(&self) -> Option<f32> {
        None
    }

    /// Whether its forward pass can run the activation right after it in its epilogue.
    fn fuses_activation_after(&self) -> bool {
        false
    }

    /// Whether its backward pass can go on through the activation right before it.
    fn fuses_activation_before(&self) -> bool {
        false
    }

    /// Whether, in `mode`, its output is its input unchanged, in the same buffer (Flatten in
    /// NHWC; Dropout in evaluation). Its backward pass then passes the gradient on as it is.
    fn passes_through(&self, _mode: Mode) -> bool {
        false
    }

    /// What its forward pass keeps for its backward pass, if anything: its name and elements.
    fn saved_len(&self, _gpu: &Gpu, _at: &At) -> Option<(&'static str, usize)> {
        None
    }

    /// Elements of reduction scratch its kernels need.
    fn scratch_len(&self, _at: &At) -> usize {
        0
    }

    /// Its largest buffers besides its output, named, for the check against the device's
    /// binding limit.
    fn buffer_sizes(&self, _at: &At) -> Vec<(&'static str, usize)> {
        Vec::new()
    }

    /// Its forward dispatches; with `epilogue`, the slope of the activation after it, which
    /// it applies to its output ([`Kind::fuses_activation_after`]).
    fn forward(&self, p: &Planned, epilogue: Option<f32>) -> Result<Vec<Dispatch>>;

    /// Its backward dispatches.
    fn backward(&self, p: &Planned, g: &Gradients) -> Result<Vec<Dispatch>>;

    /// The CPU reference's forward pass over `x`, with the decisions its gradient follows.
    fn reference_forward(&self, r: &Reference, x: &[f32]) -> (Vec<f32>, Route);

    /// The CPU reference's backward pass from `dy`, routed by `route` (its own forward's, or
    /// a device's decisions on ties); the input gradient only where `needs_dx`.
    fn reference_backward(
        &self,
        r: &Reference,
        x: &[f32],
        route: &Route,
        dy: &[f32],
        needs_dx: bool,
    ) -> ReferenceGradients;
}

// The planned passes and references shared by the elementwise activations (LeakyReLU, ReLU).

fn activation_forward(p: &Planned, slope: f32) -> Result<Vec<Dispatch>> {
    Ok(vec![activation::leaky_relu_forward(p.gpu, slope, p.x, p.y)?])
}

/// Reads its output's sign for its input's (the same for slope >= 0): a fused activation's
/// output is the buffer of the product before it.
fn activation_backward(p: &Planned, g: &Gradients, slope: f32) -> Result<Vec<Dispatch>> {
    let dx = g.dx.expect("a layer above the first with parameters passes a gradient on");
    Ok(vec![activation::leaky_relu_backward(p.gpu, slope, p.y, g.dy, dx)?])
}

fn activation_reference_forward(x: &[f32], slope: f32) -> (Vec<f32>, Route) {
    (activation::reference::forward(x, slope), Route::Positive(x.iter().map(|&v| v > 0.0).collect()))
}

/// The gradient routed by the inputs' signs (the forward pass's, or a device's).
fn activation_reference_backward(slope: f32, route: &Route, dy: &[f32]) -> ReferenceGradients {
    let dx = match route {
        Route::Positive(p) => dy.iter().zip(p).map(|(&g, &pos)| if pos { g } else { g * slope }).collect(),
        r => panic!("an activation routes by sign, not {r:?}"),
    };
    ReferenceGradients { dx: Some(dx), params: Vec::new() }
}
