//! The seed program's network, teacher and student alike:
//! Conv2D(c1, 3x3, stride 2, same) -> LeakyReLU(0.2) -> MaxPool(2x2, stride 1, same)
//! -> Conv2D(c2, 3x3, stride 2, same) -> Flatten (NHWC) -> Dense(10).
//!
//! All parameters of a model live in one flat f32 buffer, each tensor in Keras's layout at an
//! offset aligned for binding, so that Adam updates a whole model in one dispatch and a
//! checkpoint is one readback.

use crate::data::{IMAGE_SIDE, NUM_CLASSES};
use crate::ops::conv2d::ConvShape;
use crate::ops::dense::DenseShape;
use crate::ops::maxpool::PoolShape;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub const LEAKY_SLOPE: f32 = 0.2;

/// Parameter offsets are multiples of this many floats: 256 bytes, the largest storage-offset
/// alignment WebGPU allows, so the layout is the same on every device.
pub const ALIGN_FLOATS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Architecture {
    pub name: &'static str,
    pub conv1: usize,
    pub conv2: usize,
}

pub const TEACHER: Architecture = Architecture { name: "teacher", conv1: 256, conv2: 512 };
pub const STUDENT: Architecture = Architecture { name: "student", conv1: 16, conv2: 32 };

/// One parameter tensor: its name (as in checkpoints), Keras shape and place in the flat buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    pub name: &'static str,
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
}

impl Architecture {
    pub fn conv1_shape(&self, batch: usize) -> ConvShape {
        ConvShape { batch, in_h: IMAGE_SIDE, in_w: IMAGE_SIDE, in_c: 1, out_c: self.conv1, kernel: 3, stride: 2 }
    }

    pub fn pool_shape(&self, batch: usize) -> PoolShape {
        let c1 = self.conv1_shape(batch);
        PoolShape { batch, in_h: c1.out_h(), in_w: c1.out_w(), channels: self.conv1, size: 2, stride: 1 }
    }

    pub fn conv2_shape(&self, batch: usize) -> ConvShape {
        let p = self.pool_shape(batch);
        ConvShape { batch, in_h: p.out_h(), in_w: p.out_w(), in_c: self.conv1, out_c: self.conv2, kernel: 3, stride: 2 }
    }

    pub fn dense_shape(&self, batch: usize) -> DenseShape {
        let c2 = self.conv2_shape(batch);
        DenseShape { batch, inputs: c2.out_h() * c2.out_w() * self.conv2, units: NUM_CLASSES }
    }

    /// The six parameter tensors in Keras's layouts: conv kernels (kh, kw, in, out), dense (in, out).
    pub fn params(&self) -> Vec<ParamSpec> {
        let (c1, c2, d) = (self.conv1_shape(1), self.conv2_shape(1), self.dense_shape(1));
        let shapes: [(&'static str, Vec<usize>, Option<usize>); 6] = [
            ("conv1.kernel", vec![3, 3, 1, c1.out_c], Some(9 * c1.in_c + 9 * c1.out_c)),
            ("conv1.bias", vec![c1.out_c], None),
            ("conv2.kernel", vec![3, 3, c2.in_c, c2.out_c], Some(9 * c2.in_c + 9 * c2.out_c)),
            ("conv2.bias", vec![c2.out_c], None),
            ("dense.kernel", vec![d.inputs, d.units], Some(d.inputs + d.units)),
            ("dense.bias", vec![d.units], None),
        ];
        let mut offset = 0;
        shapes
            .into_iter()
            .map(|(name, shape, fans)| {
                let spec = ParamSpec { name, shape, offset, fans };
                offset = (offset + spec.len()).next_multiple_of(ALIGN_FLOATS);
                spec
            })
            .collect()
    }

    /// Length of the flat parameter buffer, alignment padding included (a whole number of
    /// alignment blocks, so that kernels may read it four floats at a time).
    pub fn flat_len(&self) -> usize {
        let last = self.params().pop().expect("six tensors");
        (last.offset + last.len()).next_multiple_of(ALIGN_FLOATS)
    }

    /// Trainable parameters (1,433,610 for the teacher, 20,490 for the student).
    pub fn param_count(&self) -> usize {
        self.params().iter().map(ParamSpec::len).sum()
    }

    pub fn param(&self, name: &str) -> ParamSpec {
        self.params().into_iter().find(|p| p.name == name).expect("known parameter name")
    }

    /// Keras's glorot_uniform kernels (limit sqrt(6 / (fan_in + fan_out))) and zero biases,
    /// from a seeded generator, in the flat layout.
    pub fn init_glorot(&self, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut flat = vec![0f32; self.flat_len()];
        for p in self.params() {
            if let Some(fans) = p.fans {
                let limit = (6.0 / fans as f64).sqrt() as f32;
                for v in &mut flat[p.offset..p.offset + p.len()] {
                    *v = rng.random_range(-limit..=limit);
                }
            }
        }
        flat
    }

    /// Floating-point operations of one training step (forward and backward) at `batch`.
    pub fn train_flops(&self, batch: usize) -> f64 {
        let (c1, c2, d) = (self.conv1_shape(batch), self.conv2_shape(batch), self.dense_shape(batch));
        let dense = 2.0 * (d.batch * d.inputs * d.units) as f64;
        // conv1: forward + kernel gradient (the image needs no gradient); conv2 and dense: all three.
        2.0 * c1.flops() + 3.0 * c2.flops() + 3.0 * dense
    }

    pub fn forward_flops(&self, batch: usize) -> f64 {
        let d = self.dense_shape(batch);
        self.conv1_shape(batch).flops() + self.conv2_shape(batch).flops() + 2.0 * (d.batch * d.inputs * d.units) as f64
    }

    /// A Keras-style summary: layer, output shape, parameters.
    pub fn summary(&self) -> String {
        let (c1, c2, d) = (self.conv1_shape(1), self.conv2_shape(1), self.dense_shape(1));
        let p = |name: &str| self.param(name).len();
        let rows = [
            (
                "conv2d (Conv2D)",
                format!("(None, {}, {}, {})", c1.out_h(), c1.out_w(), c1.out_c),
                p("conv1.kernel") + p("conv1.bias"),
            ),
            ("leaky_re_lu (LeakyReLU)", format!("(None, {}, {}, {})", c1.out_h(), c1.out_w(), c1.out_c), 0),
            ("max_pooling2d (MaxPooling2D)", format!("(None, {}, {}, {})", c1.out_h(), c1.out_w(), c1.out_c), 0),
            (
                "conv2d_1 (Conv2D)",
                format!("(None, {}, {}, {})", c2.out_h(), c2.out_w(), c2.out_c),
                p("conv2.kernel") + p("conv2.bias"),
            ),
            ("flatten (Flatten)", format!("(None, {})", d.inputs), 0),
            ("dense (Dense)", format!("(None, {})", d.units), p("dense.kernel") + p("dense.bias")),
        ];
        let mut s = format!("Model: \"{}\"\n", self.name);
        let rule = "─".repeat(72);
        s += &format!("{rule}\n{:<32}{:<26}{:>14}\n{rule}\n", "Layer (type)", "Output Shape", "Param #");
        for (layer, shape, n) in rows {
            s += &format!("{layer:<32}{shape:<26}{:>14}\n", group_thousands(n));
        }
        s += &format!(
            "{rule}\n Total params: {}\n Trainable params: {}\n Non-trainable params: 0\n",
            group_thousands(self.param_count()),
            group_thousands(self.param_count())
        );
        s
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts_match_keras() {
        assert_eq!(TEACHER.param_count(), 1_433_610);
        assert_eq!(STUDENT.param_count(), 20_490);
        let sizes: Vec<usize> = TEACHER.params().iter().map(ParamSpec::len).collect();
        assert_eq!(sizes, [2_304, 256, 1_179_648, 512, 250_880, 10]);
        assert!(TEACHER.summary().contains("Total params: 1,433,610"));
        assert!(STUDENT.summary().contains("(None, 7, 7, 32)"));
    }

    #[test]
    fn layout_is_aligned_and_disjoint() {
        for arch in [TEACHER, STUDENT] {
            let params = arch.params();
            for w in params.windows(2) {
                assert_eq!(w[1].offset % ALIGN_FLOATS, 0);
                assert!(w[0].offset + w[0].len() <= w[1].offset);
            }
        }
    }

    #[test]
    fn glorot_respects_limits_and_seed() {
        let a = STUDENT.init_glorot(7);
        assert_eq!(a, STUDENT.init_glorot(7));
        assert_ne!(a, STUDENT.init_glorot(8));
        for p in STUDENT.params() {
            let vals = &a[p.offset..p.offset + p.len()];
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
