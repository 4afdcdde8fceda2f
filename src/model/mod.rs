//! A network is a list of layers, as in Keras's `Sequential`. The seed program's teacher and
//! student are the same list with different widths:
//! Conv2D(c1, 3x3, stride 2, same) -> LeakyReLU(0.2) -> MaxPooling2D(2x2, stride 1, same)
//! -> Conv2D(c2, 3x3, stride 2, same) -> Flatten (NHWC) -> Dense(10).
//!
//! Everything else is derived by walking the list ([`Architecture::walk`]): each layer's input
//! and output sizes, parameter names, shapes and offsets, the glorot initialisation, the
//! Keras-style summary and the FLOPs of a step; the scheduler (`train`) builds a step's
//! dispatches from the same walk, and [`reference`] a plain CPU version of the whole step.
//!
//! All parameters of a model live in one flat f32 buffer, each tensor in Keras's layout at an
//! offset aligned for binding, so that Adam updates a whole model in one dispatch and a
//! checkpoint is one readback.
//!
//! A head ([`Architecture::head`]) is a list of layers over another network's layer output
//! instead of the image: a feature term's learned projection ([`Architecture::projection`]).

pub mod keras;
pub mod layers;
pub mod reference;

pub use crate::ops::Padding;
use layers::At;
pub use layers::{AveragePooling2D, Conv2D, Dense, Dropout, Kind, Layer, LeakyReLU, MaxPooling2D, Mode};

use crate::data::{IMAGE_SIDE, NUM_CLASSES};
use anyhow::{ensure, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub const LEAKY_SLOPE: f32 = 0.2;

/// Filters of the two convolutions of the seed's teacher and student.
pub const TEACHER_CHANNELS: [usize; 2] = [256, 512];
pub const STUDENT_CHANNELS: [usize; 2] = [16, 32];

/// The largest tensor a sample may have, and the most parameters a layer may have: the
/// kernels index a batch's tensors with u32, so this leaves room for batches of up to 256.
pub const MAX_SAMPLE_LEN: usize = (u32::MAX as usize) / 256;

/// Parameter offsets are multiples of this many floats: 256 bytes, the largest storage-offset
/// alignment WebGPU allows, so the layout is the same on every device.
pub const ALIGN_FLOATS: usize = 64;

/// The size of one sample's tensor between two layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Dims {
    Image { h: usize, w: usize, c: usize },
    Vector(usize),
}

/// A classifier's input: one 28 x 28 greyscale image.
pub const IMAGE_INPUT: Dims = Dims::Image { h: IMAGE_SIDE, w: IMAGE_SIDE, c: 1 };

impl Dims {
    pub fn len(&self) -> usize {
        match *self {
            Dims::Image { h, w, c } => h * w * c,
            Dims::Vector(n) => n,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An image's channels; a vector's length.
    pub fn channels(&self) -> usize {
        match *self {
            Dims::Image { c, .. } => c,
            Dims::Vector(n) => n,
        }
    }

    /// As Keras prints it in a summary.
    pub fn keras(&self) -> String {
        match *self {
            Dims::Image { h, w, c } => format!("(None, {h}, {w}, {c})"),
            Dims::Vector(n) => format!("(None, {n})"),
        }
    }
}

/// One layer in place: its input and output sizes and its names.
#[derive(Clone, Debug, PartialEq)]
pub struct PlacedLayer {
    pub layer: Layer,
    /// Prefix of its parameter names and its label in reports: conv1, conv2, .., pool, leaky,
    /// flatten, dense (a second layer of a kind other than Conv2D gets a number: dense2).
    pub name: String,
    /// Keras's default layer name: conv2d, conv2d_1, leaky_re_lu, max_pooling2d, flatten, dense.
    pub keras_name: String,
    pub input: Dims,
    pub output: Dims,
}

impl PlacedLayer {
    pub fn kind(&self) -> &dyn Kind {
        self.layer.kind()
    }

    /// Its sizes over a batch of `batch` samples.
    pub fn at(&self, batch: usize) -> At {
        At { batch, input: self.input, output: self.output }
    }

    pub fn has_params(&self) -> bool {
        !self.kind().params(self.input).is_empty()
    }
}

/// One parameter tensor: its name (as in checkpoints), Keras shape and place in the flat buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub offset: usize,
    /// Glorot fan-in + fan-out for kernels; None for biases (initialised to zero).
    pub fans: Option<usize>,
}

impl ParamSpec {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// A named, checked list of layers: a classifier over 28 x 28 x 1 images, ending in 10
/// logits, or a head over another network's layer output.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Architecture {
    name: String,
    layers: Vec<Layer>,
    /// One sample's input: [`IMAGE_INPUT`] for a classifier (left out of its serialisation,
    /// which names networks in tuning keys, so that those stay as they were).
    #[serde(skip_serializing_if = "reads_images")]
    input: Dims,
}

fn reads_images(input: &Dims) -> bool {
    *input == IMAGE_INPUT
}

impl Architecture {
    /// A classifier. Checks that each layer fits what comes before it (its kind's size
    /// rule), that every size fits the u32 the kernels index with, and that the last layer is
    /// Dense(10) (the logits the losses read).
    pub fn new(name: &str, layers: Vec<Layer>) -> Result<Architecture> {
        let arch = Architecture::head(name, IMAGE_INPUT, layers)?;
        let logits = match arch.layers.split_last() {
            Some((Layer::Softmax, before)) => before.last(),
            _ => arch.layers.last(),
        };
        ensure!(
            logits == Some(&Layer::Dense(Dense { units: NUM_CLASSES })),
            "{name}: the last layer must be Dense({NUM_CLASSES}), the logits of the ten classes (a softmax may follow it)"
        );
        Ok(arch)
    }

    /// A head: layers over `input`, another network's layer output, with the checks of
    /// [`Architecture::new`] but the last.
    pub fn head(name: &str, input: Dims, layers: Vec<Layer>) -> Result<Architecture> {
        let mut dims = input;
        for (i, layer) in layers.iter().enumerate() {
            let at = || format!("{name}: layer {} ({})", i + 1, layer.kind().describe());
            ensure!(
                *layer != Layer::Softmax || i + 1 == layers.len(),
                "{}: a softmax can only be the last layer, after the logits (the losses apply it to them)",
                at()
            );
            let output = layer.kind().output(dims).map_err(|why| anyhow::anyhow!("{}: {why}", at()))?;
            let params: usize = layer.kind().params(dims).iter().map(|p| p.shape.iter().product::<usize>()).sum();
            dims = output;
            ensure!(
                dims.len() <= MAX_SAMPLE_LEN && params <= MAX_SAMPLE_LEN,
                "{}: {} values a sample and {params} parameters; at most {MAX_SAMPLE_LEN} each",
                at(),
                dims.len()
            );
        }
        Ok(Architecture { name: name.to_string(), layers, input })
    }

    /// A feature term's learned projection (FitNets' regressor) of a layer output `input` onto
    /// `channels` channels: one Conv2D with a 1x1 kernel at stride 1, which maps every pixel's
    /// channels alike (a vector is one pixel of its values).
    pub fn projection(input: Dims, channels: usize) -> Result<Architecture> {
        let input = match input {
            Dims::Vector(n) => Dims::Image { h: 1, w: 1, c: n },
            image => image,
        };
        let conv = Layer::Conv2D(Conv2D { filters: channels, kernel: 1, stride: 1, padding: Padding::Same });
        Architecture::head("projection", input, vec![conv])
    }

    /// The seed program's network with `channels` filters in its two convolutions.
    pub fn seed(name: &str, channels: [usize; 2]) -> Result<Architecture> {
        ensure!(channels.iter().all(|&c| c > 0), "{name}: channel counts must be at least 1, not {channels:?}");
        Architecture::new(
            name,
            vec![
                Layer::Conv2D(Conv2D { filters: channels[0], kernel: 3, stride: 2, padding: Padding::Same }),
                Layer::LeakyReLU(LeakyReLU { slope: LEAKY_SLOPE }),
                Layer::MaxPooling2D(MaxPooling2D { size: 2, stride: 1, padding: Padding::Same }),
                Layer::Conv2D(Conv2D { filters: channels[1], kernel: 3, stride: 2, padding: Padding::Same }),
                Layer::Flatten,
                Layer::Dense(Dense { units: NUM_CLASSES }),
            ],
        )
    }

    /// The seed's teacher (256 and 512 channels, 1,433,610 parameters).
    pub fn teacher() -> Architecture {
        Architecture::seed("teacher", TEACHER_CHANNELS).expect("the seed's teacher is valid")
    }

    /// The seed's student (16 and 32 channels, 20,490 parameters).
    pub fn student() -> Architecture {
        Architecture::seed("student", STUDENT_CHANNELS).expect("the seed's student is valid")
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// One sample's input: [`IMAGE_INPUT`], or a head's layer output.
    pub fn input(&self) -> Dims {
        self.input
    }

    /// One sample's output: a classifier's logits, a head's values.
    pub fn output(&self) -> Dims {
        self.walk().last().map_or(self.input, |l| l.output)
    }

    /// The same layers under another name (for reports and buffer labels).
    pub fn renamed(&self, name: &str) -> Architecture {
        Architecture { name: name.to_string(), ..self.clone() }
    }

    /// Filters of each convolution, in order (what checkpoints record as conv1, conv2, ..).
    pub fn channels(&self) -> Vec<usize> {
        self.layers
            .iter()
            .filter_map(|l| match l {
                Layer::Conv2D(c) => Some(c.filters),
                _ => None,
            })
            .collect()
    }

    /// Every layer with its sizes and names: the one walk everything else derives from.
    pub fn walk(&self) -> Vec<PlacedLayer> {
        let mut dims = self.input;
        let mut seen: Vec<&'static str> = Vec::new();
        let mut placed = Vec::with_capacity(self.layers.len());
        for &layer in &self.layers {
            let kind = layer.kind();
            let count = seen.iter().filter(|&&k| k == kind.stem()).count();
            seen.push(kind.stem());
            let name = match (kind.stem(), count) {
                ("conv", n) => format!("conv{}", n + 1),
                (k, 0) => k.to_string(),
                (k, n) => format!("{k}{}", n + 1),
            };
            let keras = kind.keras_stem();
            let keras_name = if count == 0 { keras.to_string() } else { format!("{keras}_{count}") };
            let output = kind.output(dims).expect("checked by Architecture::new");
            placed.push(PlacedLayer { layer, name, keras_name, input: dims, output });
            dims = output;
        }
        placed
    }

    /// The parameter tensors in layer order, at aligned offsets in the flat buffer.
    pub fn params(&self) -> Vec<ParamSpec> {
        let mut offset = 0;
        let mut specs = Vec::new();
        for layer in self.walk() {
            for p in layer.kind().params(layer.input) {
                let spec =
                    ParamSpec { name: format!("{}.{}", layer.name, p.suffix), shape: p.shape, offset, fans: p.fans };
                offset = (offset + spec.len()).next_multiple_of(ALIGN_FLOATS);
                specs.push(spec);
            }
        }
        specs
    }

    /// Length of the flat parameter buffer, alignment padding included (a whole number of
    /// alignment blocks, so that kernels may read it four floats at a time).
    pub fn flat_len(&self) -> usize {
        self.params().last().map_or(0, |p| (p.offset + p.len()).next_multiple_of(ALIGN_FLOATS))
    }

    /// Whether it ends in a softmax over its logits, which the losses apply ([`layers::Softmax`]).
    pub fn ends_in_softmax(&self) -> bool {
        self.layers.last() == Some(&Layer::Softmax)
    }

    /// Trainable parameters (1,433,610 for the teacher, 20,490 for the student).
    pub fn param_count(&self) -> usize {
        self.params().iter().map(ParamSpec::len).sum()
    }

    /// The tensor called `name`, if the network has one.
    pub fn param(&self, name: &str) -> Option<ParamSpec> {
        self.params().into_iter().find(|p| p.name == name)
    }

    /// Keras's glorot_uniform kernels (limit sqrt(6 / (fan_in + fan_out))) and zero biases,
    /// from a seeded generator, in the flat layout.
    pub fn init_glorot(&self, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut flat = vec![0f32; self.flat_len()];
        for p in self.params() {
            if let Some(fans) = p.fans {
                let limit = (6.0 / fans as f64).sqrt() as f32;
                for v in &mut flat[p.range()] {
                    *v = rng.random_range(-limit..=limit);
                }
            }
        }
        flat
    }

    /// Floating-point operations of one training step (forward and backward) at `batch`:
    /// every product forward and for its kernel gradient, and for its input gradient unless
    /// nothing before it has parameters (the image needs no gradient).
    pub fn train_flops(&self, batch: usize) -> f64 {
        let mut params_before = false;
        let mut flops = 0.0;
        for layer in self.walk() {
            let f = layer.kind().product_flops(&layer.at(batch));
            flops += f * if params_before { 3.0 } else { 2.0 };
            params_before |= layer.has_params();
        }
        flops
    }

    pub fn forward_flops(&self, batch: usize) -> f64 {
        self.walk().iter().map(|l| l.kind().product_flops(&l.at(batch))).sum()
    }

    /// A Keras-style summary: layer, output shape, parameters.
    pub fn summary(&self) -> String {
        let params = self.params();
        let mut s = format!("Model: \"{}\"\n", self.name);
        let rule = "─".repeat(72);
        s += &format!("{rule}\n{:<32}{:<26}{:>14}\n{rule}\n", "Layer (type)", "Output Shape", "Param #");
        for layer in self.walk() {
            let prefix = format!("{}.", layer.name);
            let n: usize = params.iter().filter(|p| p.name.starts_with(&prefix)).map(ParamSpec::len).sum();
            let title = format!("{} ({})", layer.keras_name, layer.kind().keras_class());
            s += &format!("{title:<32}{:<26}{:>14}\n", layer.output.keras(), group_thousands(n));
        }
        let total = group_thousands(self.param_count());
        s += &format!("{rule}\n Total params: {total}\n Trainable params: {total}\n Non-trainable params: 0\n");
        if self.ends_in_softmax() {
            s += " The last softmax is applied by the losses, which read the logits before it.\n";
        }
        s
    }
}

/// keras.distillation's `FeatureDistillation(loss="mse")` between layer `teacher_layer` of the
/// frozen teacher and `student_layer` of the student (indices into their layer lists).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FeatureSpec {
    pub teacher_layer: usize,
    pub student_layer: usize,
    /// Its `distillation_loss_weights` entry.
    pub weight: f32,
    /// Through a learned projection to the teacher's channels ([`Architecture::projection`]).
    pub project: bool,
}

pub fn group_thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// The two convolutions' filters of the seed's network, as `--teacher-channels` and
/// `--student-channels` read and print them: "C1,C2".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Channels(pub [usize; 2]);

impl std::fmt::Display for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{},{}", self.0[0], self.0[1])
    }
}

impl std::str::FromStr for Channels {
    type Err = String;

    /// Two positive counts, "C1,C2".
    fn from_str(text: &str) -> Result<Channels, String> {
        let parts: Vec<&str> = text.split(',').map(str::trim).collect();
        let counts: Vec<usize> = parts
            .iter()
            .map(|p| p.parse::<usize>().map_err(|_| format!("`{p}` is not a whole number")))
            .collect::<Result<_, _>>()?;
        match counts[..] {
            [c1, c2] if c1 > 0 && c2 > 0 => Ok(Channels([c1, c2])),
            [_, _] => Err("channel counts must be at least 1".into()),
            _ => Err(format!("give the two convolutions' channels as C1,C2 (for example 16,32), not `{text}`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts_and_summary_match_keras() {
        let (teacher, student) = (Architecture::teacher(), Architecture::student());
        assert_eq!(teacher.param_count(), 1_433_610);
        assert_eq!(student.param_count(), 20_490);
        let sizes: Vec<usize> = teacher.params().iter().map(ParamSpec::len).collect();
        assert_eq!(sizes, [2_304, 256, 1_179_648, 512, 250_880, 10]);
        let names: Vec<String> = teacher.params().into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["conv1.kernel", "conv1.bias", "conv2.kernel", "conv2.bias", "dense.kernel", "dense.bias"]);
        let summary = teacher.summary();
        assert!(summary.contains("Total params: 1,433,610"), "{summary}");
        for line in [
            "conv2d (Conv2D)                 (None, 14, 14, 256)",
            "leaky_re_lu (LeakyReLU)         (None, 14, 14, 256)",
            "max_pooling2d (MaxPooling2D)    (None, 14, 14, 256)",
            "conv2d_1 (Conv2D)               (None, 7, 7, 512)",
            "flatten (Flatten)               (None, 25088)",
            "dense (Dense)                   (None, 10)",
        ] {
            assert!(summary.contains(line), "summary lacks `{line}`:\n{summary}");
        }
        assert!(student.summary().contains("(None, 7, 7, 32)"));
    }

    #[test]
    fn flops_follow_the_layer_list() {
        // conv1: forward + kernel gradient; conv2 and dense: forward and both gradients.
        let t = Architecture::teacher();
        let (c1, c2, d) =
            (2.0 * 32.0 * 196.0 * 9.0 * 256.0, 2.0 * 32.0 * 49.0 * 2304.0 * 512.0, 2.0 * 32.0 * 25088.0 * 10.0);
        assert_eq!(t.train_flops(32), 2.0 * c1 + 3.0 * c2 + 3.0 * d);
        assert_eq!(t.forward_flops(32), c1 + c2 + d);
    }

    #[test]
    fn widths_change_shapes_and_names_stay() {
        let a = Architecture::seed("narrow", [3, 5]).unwrap();
        let shapes: Vec<(String, Vec<usize>)> = a.params().into_iter().map(|p| (p.name, p.shape)).collect();
        assert_eq!(shapes[2], ("conv2.kernel".to_string(), vec![3, 3, 3, 5]));
        assert_eq!(shapes[4], ("dense.kernel".to_string(), vec![7 * 7 * 5, 10]));
        assert_eq!(a.channels(), [3, 5]);
    }

    #[test]
    fn a_list_that_does_not_fit_is_refused() {
        let conv = Layer::Conv2D(Conv2D { filters: 4, kernel: 3, stride: 2, padding: Padding::Same });
        let dense = Layer::Dense(Dense { units: 10 });
        let err = |layers: Vec<Layer>| Architecture::new("m", layers).unwrap_err().to_string();
        assert!(err(vec![conv, dense]).contains("Flatten"));
        assert!(err(vec![Layer::Flatten, conv, Layer::Flatten, dense]).contains("flattened"));
        assert!(err(vec![conv, Layer::Flatten, Layer::Dense(Dense { units: 7 })]).contains("Dense(10)"));
        assert!(err(vec![Layer::LeakyReLU(LeakyReLU { slope: -0.1 }), Layer::Flatten, dense]).contains("slope"));
        assert!(Architecture::seed("m", [0, 4]).is_err());
        // Sizes that would overflow, or exceed what the kernels index, are refused by name.
        let huge = |filters| Architecture::seed("m", [filters, 4]).unwrap_err().to_string();
        assert!(huge(usize::MAX).contains("filters 18446744073709551615 is more than"), "{}", huge(usize::MAX));
        assert!(huge(1 << 20).contains("values a sample"), "{}", huge(1 << 20));
        // Parameters count from the layer's input: 784 x 20,000 (+ bias) fit, 20,000 x 20,000 would not.
        let wide = Layer::Dense(Dense { units: 20_000 });
        assert!(Architecture::new("wide", vec![Layer::Flatten, wide, dense]).is_ok());
        let wider = Architecture::new("wider", vec![Layer::Flatten, Layer::Dense(Dense { units: 30_000 }), dense]);
        let why = wider.unwrap_err().to_string();
        assert!(why.contains("23550000 parameters"), "{why}");
        let window = Layer::MaxPooling2D(MaxPooling2D { size: 1000, stride: 1, padding: Padding::Same });
        assert!(err(vec![window, Layer::Flatten, dense]).contains("pool size 1000 is more than the 64"));
        // A new layer of a known kind is one more entry in the list.
        let deeper =
            Architecture::new("deeper", vec![conv, conv, Layer::Flatten, Layer::Dense(Dense { units: 12 }), dense]);
        let names: Vec<String> = deeper.unwrap().params().into_iter().map(|p| p.name).collect();
        assert_eq!(names[..4], ["conv1.kernel", "conv1.bias", "conv2.kernel", "conv2.bias"]);
        assert_eq!(names[4..], ["dense.kernel", "dense.bias", "dense2.kernel", "dense2.bias"]);
    }

    #[test]
    fn a_projection_is_a_pointwise_head() {
        let projection = Architecture::projection(Dims::Image { h: 7, w: 7, c: 32 }, 512).unwrap();
        assert_eq!(projection.output(), Dims::Image { h: 7, w: 7, c: 512 });
        // The kernel, then the bias at the next aligned offset; Glorot's fans are 32 + 512.
        let params: Vec<_> = projection.params().into_iter().map(|p| (p.name, p.shape, p.offset, p.fans)).collect();
        assert_eq!(
            params,
            [
                ("conv1.kernel".to_string(), vec![1, 1, 32, 512], 0, Some(544)),
                ("conv1.bias".to_string(), vec![512], 16_384, None)
            ]
        );
        // A vector is one pixel of its values.
        let dense = Architecture::projection(Dims::Vector(10), 20).unwrap();
        assert_eq!(
            (dense.input(), dense.output()),
            (Dims::Image { h: 1, w: 1, c: 10 }, Dims::Image { h: 1, w: 1, c: 20 })
        );
        // A classifier's serialisation (part of tuning keys) names no input; a head's does.
        assert!(!serde_json::to_string(&Architecture::student()).unwrap().contains("input"));
        assert!(serde_json::to_string(&projection).unwrap().contains("\"input\""));
        assert!(Architecture::projection(Dims::Vector(10), 0).is_err());
    }

    #[test]
    fn channels_parse_print_and_refuse() {
        let parse = |t: &str| t.parse::<Channels>();
        assert_eq!(parse("8,12"), Ok(Channels([8, 12])));
        assert_eq!(parse(" 3, 5 "), Ok(Channels([3, 5])));
        assert_eq!(Channels(STUDENT_CHANNELS).to_string().parse(), Ok(Channels(STUDENT_CHANNELS)));
        assert!(parse("8").unwrap_err().contains("C1,C2"));
        assert!(parse("8,x").unwrap_err().contains("`x`"));
        assert!(parse("0,4").unwrap_err().contains("at least 1"));
    }

    #[test]
    fn layout_is_aligned_and_disjoint() {
        for arch in [Architecture::teacher(), Architecture::student(), Architecture::seed("odd", [3, 5]).unwrap()] {
            let params = arch.params();
            for w in params.windows(2) {
                assert_eq!(w[1].offset % ALIGN_FLOATS, 0);
                assert!(w[0].offset + w[0].len() <= w[1].offset);
            }
            assert_eq!(arch.flat_len() % ALIGN_FLOATS, 0);
        }
    }

    #[test]
    fn glorot_respects_limits_and_seed() {
        let student = Architecture::student();
        let a = student.init_glorot(7);
        assert_eq!(a, student.init_glorot(7));
        assert_ne!(a, student.init_glorot(8));
        for p in student.params() {
            let vals = &a[p.range()];
            match p.fans {
                None => assert!(vals.iter().all(|&v| v == 0.0), "{} zero", p.name),
                Some(f) => {
                    let limit = (6.0 / f as f32).sqrt();
                    assert!(vals.iter().all(|v| v.abs() <= limit), "{} within limit", p.name);
                    let mean_abs = vals.iter().map(|v| v.abs()).sum::<f32>() / vals.len() as f32;
                    assert!((mean_abs - limit / 2.0).abs() < limit * 0.15, "{} uniform", p.name);
                }
            }
        }
    }
}
