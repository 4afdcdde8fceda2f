//! The CPU references' backward passes against central finite differences of their own
//! forward passes, for every element of every input and parameter on small shapes. The GPU
//! kernels are checked against these references elsewhere (tests/kernels.rs); this file checks
//! that the references themselves are the gradients of the forward passes.
//!
//! Layers: the scalar objective is L = sum_i y_i r_i for fixed random r, so dL/dy = r and the
//! analytic gradient is the backward reference fed dy = r. Losses: the objective is the batch
//! loss itself, whose gradient the reference returns as `dlogits`.

mod common;

use common::{rng, uniform};
use kd_wgpu::model::reference::{self, Batch, Run};
use kd_wgpu::model::{Architecture, Dims, Mode};
use kd_wgpu::ops::avgpool;
use kd_wgpu::ops::conv2d::{self, ConvShape};
use kd_wgpu::ops::dense::{self, DenseShape};
use kd_wgpu::ops::feature;
use kd_wgpu::ops::globalpool::{self, GlobalShape};
use kd_wgpu::ops::loss::{Distill, UNLABELLED};
use kd_wgpu::ops::maxpool::{self, PoolShape};
use kd_wgpu::ops::softmax::reference::softmax;
use kd_wgpu::ops::{activation, loss, Padding};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Step for the layers' f32 inputs. Every layer here is linear (conv, dense) or piecewise
/// linear away from its kinks (LeakyReLU, max), so central differences carry no truncation
/// error; the only error is the f32 rounding of the outputs that L is summed from, divided by
/// 2h. A large step keeps that small; the inputs are built so that no step crosses a kink.
const H_LAYER: f32 = 1e-2;

/// Layers: the f32 rounding of ~100-250 outputs of magnitude ~1-5 puts up to ~1e-6 of noise
/// into L, i.e. up to ~1e-4 absolute after dividing by 2h, against gradients of mean magnitude
/// ~1 (measured: worst ~4e-5 relative over 30 seeds). 1e-3 leaves margin for unlucky draws, while a wrong
/// index, a missed or extra tap, a wrong padding offset or slope gives errors of order 1.
const LAYER_BOUND: f64 = 1e-3;

/// Step for the logits: the losses are smooth and computed in f64, so the truncation error
/// h^2/6 * |f'''| (with |f'''| = O(1) for softmax-based losses at these temperatures) is
/// ~1e-7 absolute, and f64 rounding of L divided by 2h is ~1e-12.
const H_LOSS: f32 = 1e-3;

/// Losses: a truncation bound of ~1e-7 against gradients of mean magnitude ~1e-2 (they are
/// divided by the number of valid rows) gives ~1e-5; measured errors are ~1e-7. 1e-4 keeps
/// margin and still catches any wrong term: a missing T factor, 1/valid or clip is an error of
/// order 1 (a gradient that ignores the clip scores 1.0 on the +-30 case).
const LOSS_BOUND: f64 = 1e-4;

/// Central differences of `f` with respect to every element of `p`. The divisor is the step
/// actually taken after rounding p +- h to f32 (which differs from 2h by up to ulp(p) / h,
/// ~2e-3 for logits near 30), so that rounding of the inputs does not count as error.
fn numeric_grad(p: &[f32], h: f32, mut f: impl FnMut(&[f32]) -> f64) -> Vec<f64> {
    let mut q = p.to_vec();
    (0..p.len())
        .map(|i| {
            let (up, down) = (p[i] + h, p[i] - h);
            q[i] = up;
            let f_up = f(&q);
            q[i] = down;
            let f_down = f(&q);
            q[i] = p[i];
            (f_up - f_down) / (up as f64 - down as f64)
        })
        .collect()
}

/// sum_i y_i r_i in f64.
fn dot(y: &[f32], r: &[f32]) -> f64 {
    assert_eq!(y.len(), r.len());
    y.iter().zip(r).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// Largest |analytic - numeric| / max(|analytic|, mean |analytic|), printed and asserted.
/// The mean magnitude is the floor so that near-zero elements do not dominate.
fn check(name: &str, analytic: &[f64], numeric: &[f64], bound: f64) -> f64 {
    assert_eq!(analytic.len(), numeric.len(), "{name}: length mismatch");
    let mean = analytic.iter().map(|v| v.abs()).sum::<f64>() / analytic.len() as f64;
    assert!(mean > 0.0, "{name}: analytic gradient is all zero, the check would be vacuous");
    let mut worst = (0f64, 0usize);
    for (i, (&a, &n)) in analytic.iter().zip(numeric).enumerate() {
        let e = (a - n).abs() / a.abs().max(mean);
        if e.is_nan() || e > worst.0 {
            worst = (e, i);
        }
    }
    let (e, i) = worst;
    println!("{name}: max relative error {e:.3e} (n = {})", analytic.len());
    assert!(
        e <= bound,
        "{name}: element {i}: analytic {} vs numeric {}: relative error {e:.3e} > {bound:.0e}",
        analytic[i],
        numeric[i]
    );
    e
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Values in +-[lo, 1) with a random sign: at least `lo` away from the LeakyReLU kink.
fn away_from_zero(rng: &mut ChaCha8Rng, n: usize, lo: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..1.0) * if rng.random_bool(0.5) { 1.0 } else { -1.0 }).collect()
}

fn conv(batch: usize, in_hw: (usize, usize), in_c: usize, out_c: usize, stride: usize) -> ConvShape {
    ConvShape { batch, in_h: in_hw.0, in_w: in_hw.1, in_c, out_c, kernel: 3, stride, padding: Padding::Same }
}

fn conv_valid(batch: usize, in_hw: (usize, usize), in_c: usize, out_c: usize, stride: usize) -> ConvShape {
    ConvShape { padding: Padding::Valid, ..conv(batch, in_hw, in_c, out_c, stride) }
}

#[test]
fn conv2d_backward_is_gradient_of_forward() {
    use conv2d::reference::{backward_input, backward_kernel, forward};
    let mut r = rng("conv2d gradients");
    // 5x6 pads (1, 1) / (0, 1) at stride 2 and (1, 1) at stride 1; 28 -> 14 and 14 -> 7 are
    // the models' padding pattern (nothing before, one after) at small channel counts.
    let shapes = [
        ("5x6 c3->4 s2", conv(2, (5, 6), 3, 4, 2)),
        ("5x6 c3->4 s1", conv(2, (5, 6), 3, 4, 1)),
        ("28x28 c1->2 s2", conv(2, (28, 28), 1, 2, 2)),
        ("14x14 c2->3 s2", conv(2, (14, 14), 2, 3, 2)),
        // "valid": no padding; at stride 2 on 8 columns the last column is read by no output.
        ("valid 7x8 c2->3 s2", conv_valid(2, (7, 8), 2, 3, 2)),
        ("valid 6x5 c3->2 s1", conv_valid(2, (6, 5), 3, 2, 1)),
    ];
    for (name, s) in shapes {
        let x = uniform(&mut r, s.input_len(), -1.0, 1.0);
        let w = uniform(&mut r, s.kernel_len(), -1.0, 1.0);
        let b = uniform(&mut r, s.out_c, -1.0, 1.0);
        let dy = uniform(&mut r, s.output_len(), -1.0, 1.0);
        let dx = backward_input(&s, &dy, &w);
        let (dw, db) = backward_kernel(&s, &x, &dy);
        let num_dx = numeric_grad(&x, H_LAYER, |x| dot(&forward(&s, x, &w, &b, None), &dy));
        let num_dw = numeric_grad(&w, H_LAYER, |w| dot(&forward(&s, &x, w, &b, None), &dy));
        let num_db = numeric_grad(&b, H_LAYER, |b| dot(&forward(&s, &x, &w, b, None), &dy));
        check(&format!("conv {name} dx"), &f64s(&dx), &num_dx, LAYER_BOUND);
        check(&format!("conv {name} dw"), &f64s(&dw), &num_dw, LAYER_BOUND);
        check(&format!("conv {name} db"), &f64s(&db), &num_db, LAYER_BOUND);

        // The fused LeakyReLU is the standalone one applied to the plain output (whose
        // gradient `leaky_relu_backward_is_gradient_of_forward` checks), bit for bit; checking
        // through it by differences would need every pre-activation to stay clear of 0.
        let plain = forward(&s, &x, &w, &b, None);
        assert_eq!(
            forward(&s, &x, &w, &b, Some(0.2)),
            activation::reference::forward(&plain, 0.2),
            "conv {name}: fused leaky"
        );
    }
}

/// A feature term through its projection as the CPU reference runs it: a head (one pointwise
/// Conv2D on the student's layer output) whose backward pass goes on to its input. The MSE's
/// gradient through it must be the gradient of the term with respect to the student's layer
/// and to the projection's parameters. The term is quadratic in each, so central differences
/// are exact up to rounding.
#[test]
fn the_feature_term_through_its_projection_is_the_gradient_of_its_mse() {
    let mut r = rng("projection gradients");
    let (rows, input, channels) = (3, Dims::Image { h: 2, w: 3, c: 4 }, 5);
    let arch = Architecture::projection(input, channels).unwrap();
    let mut flat = arch.init_glorot(r.random());
    let bias = arch.param("conv1.bias").unwrap();
    flat[bias.range()].iter_mut().for_each(|v| *v = r.random_range(-0.5..0.5));
    let features = arch.output().len();
    let student = uniform(&mut r, rows * input.len(), -1.0, 1.0);
    let teacher = uniform(&mut r, rows * features, -1.0, 1.0);
    // A short batch: its last row carries no term.
    let (valid, scale) = (rows - 1, 0.7);
    let run = Run { mode: Mode::Train, seed: 0, step: 1 };
    fn batch(layer: &[f32], rows: usize) -> Batch<'_> {
        Batch { images: layer, labels: &[], teacher_logits: None, rows }
    }
    let term = |layer: &[f32], flat: &[f32]| {
        let projected = reference::forward(&arch, flat, &batch(layer, rows), run);
        let (row_mse, _) = feature::reference::mse(projected.output(), &teacher, features, valid, scale);
        scale * row_mse.iter().sum::<f64>() / valid as f64
    };
    let fwd = reference::forward(&arch, &flat, &batch(&student, rows), run);
    let (_, dprojected) = feature::reference::mse(fwd.output(), &teacher, features, valid, scale);
    let dprojected: Vec<f32> = dprojected.iter().map(|&g| g as f32).collect();
    let (grads, dstudent) = reference::backward_joined(
        &arch,
        &flat,
        &batch(&student, rows),
        run,
        (&fwd, &fwd.routes),
        &dprojected,
        None,
        true,
    );
    let dstudent = dstudent.expect("a head passes its input a gradient");
    let numeric = numeric_grad(&student, H_LAYER, |layer| term(layer, &flat));
    check("projection input", &f64s(&dstudent), &numeric, LAYER_BOUND);
    let numeric = numeric_grad(&flat, H_LAYER, |flat| term(&student, flat));
    for p in arch.params() {
        check(&format!("projection {}", p.name), &f64s(&grads[p.range()]), &numeric[p.range()], LAYER_BOUND);
    }
}

#[test]
fn leaky_relu_backward_is_gradient_of_forward() {
    use activation::reference::{backward, forward};
    let mut r = rng("leaky relu gradients");
    let slope = 0.2;
    // |x| > 2h: no step crosses the kink at 0.
    let x = away_from_zero(&mut r, 200, 2.0 * H_LAYER);
    let dy = uniform(&mut r, x.len(), -1.0, 1.0);
    let dx = backward(&x, &dy, slope);
    let num = numeric_grad(&x, H_LAYER, |x| dot(&forward(x, slope), &dy));
    check("leaky relu dx", &f64s(&dx), &num, LAYER_BOUND);
    // Documented: the output gives the same gradient as the input (same sign for slope > 0).
    assert_eq!(backward(&forward(&x, slope), &dy, slope), dx, "leaky relu: gradient from the output");
}

#[test]
fn dense_backward_is_gradient_of_forward() {
    use dense::reference::{backward, forward};
    let mut r = rng("dense gradients");
    let s = DenseShape { batch: 3, inputs: 7, units: 5 };
    let x = uniform(&mut r, s.batch * s.inputs, -1.0, 1.0);
    let w = uniform(&mut r, s.inputs * s.units, -1.0, 1.0);
    let b = uniform(&mut r, s.units, -1.0, 1.0);
    let dy = uniform(&mut r, s.batch * s.units, -1.0, 1.0);
    let (dx, dw, db) = backward(&s, &x, &w, &dy);
    check("dense dx", &f64s(&dx), &numeric_grad(&x, H_LAYER, |x| dot(&forward(&s, x, &w, &b), &dy)), LAYER_BOUND);
    check("dense dw", &f64s(&dw), &numeric_grad(&w, H_LAYER, |w| dot(&forward(&s, &x, w, &b), &dy)), LAYER_BOUND);
    check("dense db", &f64s(&db), &numeric_grad(&b, H_LAYER, |b| dot(&forward(&s, &x, &w, b), &dy)), LAYER_BOUND);
}

#[test]
fn maxpool_backward_is_gradient_of_forward() {
    use maxpool::reference::{backward, forward};
    let mut r = rng("maxpool gradients");
    let pool =
        |in_h, in_w, size, stride, padding| PoolShape { batch: 2, in_h, in_w, channels: 3, size, stride, padding };
    let (same, valid) = (Padding::Same, Padding::Valid);
    // 2x2 stride 1 pads one after; 3x3 stride 2 on 7x6 pads (1, 1) rows and (0, 1) columns.
    // "valid" 2x2 stride 2 on 7x6 leaves the last row unread; 3x3 stride 2 on 8x7 the last row.
    for (name, s) in [
        ("2x2 s1 on 5x6", pool(5, 6, 2, 1, same)),
        ("3x3 s2 on 7x6", pool(7, 6, 3, 2, same)),
        ("valid 2x2 s2 on 7x6", pool(7, 6, 2, 2, valid)),
        ("valid 3x3 s2 on 8x7", pool(8, 7, 3, 2, valid)),
        ("valid 2x2 s3 on 8x8", pool(8, 8, 2, 3, valid)),
    ] {
        // Distinct values 0.1 apart (> 2h): every window has a unique max that no step
        // changes, so the pool is linear around x and its gradient exists.
        let mut x: Vec<f32> = (0..s.input_len()).map(|k| k as f32 * 0.1).collect();
        x.shuffle(&mut r);
        let dy = uniform(&mut r, s.output_len(), -1.0, 1.0);
        let (_, argmax) = forward(&s, &x);
        let dx = backward(&s, &dy, &argmax);
        let num = numeric_grad(&x, H_LAYER, |x| dot(&forward(&s, x).0, &dy));
        check(&format!("maxpool {name} dx"), &f64s(&dx), &num, LAYER_BOUND);
    }
}

#[test]
fn avgpool_backward_is_gradient_of_forward() {
    use avgpool::reference::{backward, forward};
    let mut r = rng("avgpool gradients");
    let pool =
        |in_h, in_w, size, stride, padding| PoolShape { batch: 2, in_h, in_w, channels: 3, size, stride, padding };
    let (same, valid) = (Padding::Same, Padding::Valid);
    // "same" border windows of fewer real cells, overlapping windows (stride 1), windows that
    // skip cells (stride 3), and "valid" windows that leave the last row unread.
    for (name, s) in [
        ("2x2 s1 on 5x6", pool(5, 6, 2, 1, same)),
        ("3x3 s2 on 7x6", pool(7, 6, 3, 2, same)),
        ("2x2 s3 on 7x8", pool(7, 8, 2, 3, same)),
        ("valid 2x2 s2 on 7x6", pool(7, 6, 2, 2, valid)),
        ("valid 3x3 s2 on 8x7", pool(8, 7, 3, 2, valid)),
    ] {
        let x = uniform(&mut r, s.input_len(), -1.0, 1.0);
        let dy = uniform(&mut r, s.output_len(), -1.0, 1.0);
        let num = numeric_grad(&x, H_LAYER, |x| dot(&forward(&s, x), &dy));
        check(&format!("avgpool {name} dx"), &f64s(&backward(&s, &dy)), &num, LAYER_BOUND);
    }
}

#[test]
fn global_pool_backward_is_gradient_of_forward() {
    use globalpool::reference::{average_backward, average_forward, max_backward, max_forward};
    let mut r = rng("global pool gradients");
    let shape = |batch, in_h, in_w, channels| GlobalShape { batch, in_h, in_w, channels };
    // Few pixels a window, so that the average's gradient (dy / (h * w)) stays well above the
    // f32 rounding of its outputs; 1x1 pixels pass the gradient through unchanged.
    for s in [shape(2, 3, 3, 3), shape(1, 2, 5, 4), shape(3, 1, 1, 5), shape(2, 4, 3, 1)] {
        let name = format!("{}x{}x{}x{}", s.batch, s.in_h, s.in_w, s.channels);
        let x = uniform(&mut r, s.input_len(), -1.0, 1.0);
        let dy = uniform(&mut r, s.output_len(), -1.0, 1.0);
        let num = numeric_grad(&x, H_LAYER, |x| dot(&average_forward(&s, x), &dy));
        check(&format!("global average {name} dx"), &f64s(&average_backward(&s, &dy)), &num, LAYER_BOUND);
        // Distinct values 0.1 apart (> 2h): each channel has a unique max that no step changes.
        let mut x: Vec<f32> = (0..s.input_len()).map(|k| k as f32 * 0.1).collect();
        x.shuffle(&mut r);
        let (_, argmax) = max_forward(&s, &x);
        let num = numeric_grad(&x, H_LAYER, |x| dot(&max_forward(&s, x).0, &dy));
        check(&format!("global max {name} dx"), &f64s(&max_backward(&s, &dy, &argmax)), &num, LAYER_BOUND);
    }
}

/// Whether every student probability softmax(logits / T) is at least `margin` away from the
/// clip 1e-7 in log space. d ln p_j / d z_k = (delta_jk - p_k) / T has magnitude below 1 / T,
/// so a step of h on one logit moves every ln p_j by less than h / T <= h (T >= 1): with
/// margin > h no step in the difference moves a probability across the clip.
fn clear_of_clip(logits: &[f32], classes: usize, t: f64, margin: f64) -> bool {
    softmax(logits, classes, t as f32).iter().all(|&p| (p.ln() - loss::reference::CLIP.ln()).abs() > margin)
}

/// One loss check: 6 rows of 10 logits drawn in [-spread, spread], the first `valid` real;
/// with a teacher, that distillation loss; the first `unlabelled` rows without a label.
struct LossCase {
    name: &'static str,
    valid: usize,
    spread: f32,
    teacher: Option<Distill>,
    unlabelled: usize,
}

impl LossCase {
    fn cross_entropy(name: &'static str, valid: usize, spread: f32) -> LossCase {
        LossCase { name, valid, spread, teacher: None, unlabelled: 0 }
    }

    fn distillation(name: &'static str, valid: usize, spread: f32, alpha: f32, t: f32) -> LossCase {
        LossCase { name, valid, spread, teacher: Some(Distill::kl(alpha, t)), unlabelled: 0 }
    }
}

/// Checks `dlogits` of the distillation reference (or cross-entropy without a teacher)
/// against differences of its batch loss; returns how many student probabilities are clipped.
fn check_loss(case: LossCase, r: &mut ChaCha8Rng) -> usize {
    let (name, valid, spread, rows, classes) = (case.name, case.valid, case.spread, 6, 10);
    let d = case.teacher.unwrap_or(Distill { alpha: 1.0, temperature: 1.0, kl: 0.0, mse: 0.0 });
    let t = d.temperature as f64;
    use loss::reference::{batch_loss, distillation};
    // Redraw the (rare) logits with a probability within 10h of the clip in log space.
    let logits = loop {
        let l = uniform(r, rows * classes, -spread, spread);
        if clear_of_clip(&l, classes, t, 10.0 * H_LOSS as f64) {
            break l;
        }
    };
    let teacher = uniform(r, rows * classes, -spread, spread);
    let teacher = case.teacher.map(|_| &teacher[..]);
    let labels: Vec<u32> = (0..rows)
        .map(|i| r.random_range(0..classes as u32) | if i < case.unlabelled { UNLABELLED } else { 0 })
        .collect();
    let f = |l: &[f32]| batch_loss(&distillation(l, teacher, &labels, classes, valid, &d), valid);
    let analytic = distillation(&logits, teacher, &labels, classes, valid, &d).dlogits;
    assert!(analytic[valid * classes..].iter().all(|&g| g == 0.0), "{name}: rows past valid have a gradient");
    check(name, &analytic, &numeric_grad(&logits, H_LOSS, f), LOSS_BOUND);
    let p = softmax(&logits[..valid * classes], classes, t as f32);
    p.iter().filter(|&&p| p < loss::reference::CLIP).count()
}

#[test]
fn cross_entropy_dlogits_is_gradient_of_batch_loss() {
    let mut r = rng("cross-entropy gradients");
    check_loss(LossCase::cross_entropy("cross-entropy all valid", 6, 3.0), &mut r);
    check_loss(LossCase::cross_entropy("cross-entropy 4 of 6 valid", 4, 3.0), &mut r);
    // Confident logits: probabilities down to ~e^-60 (not clipped in plain cross-entropy).
    check_loss(LossCase::cross_entropy("cross-entropy logits +-30", 5, 30.0), &mut r);
}

#[test]
fn distillation_dlogits_is_gradient_of_batch_loss() {
    let mut r = rng("distillation gradients");
    check_loss(LossCase::distillation("distillation a=0.1 T=10", 6, 5.0, 0.1, 10.0), &mut r);
    check_loss(LossCase::distillation("distillation a=0.1 T=10 4 of 6 valid", 4, 5.0, 0.1, 10.0), &mut r);
    check_loss(LossCase::distillation("distillation a=0.5 T=4 5 of 6 valid", 5, 5.0, 0.5, 4.0), &mut r);
    // Logits spread +-30 at T = 1 push student probabilities far below 1e-7. Keras clips them
    // (and the teacher's) to [1e-7, 1] inside the KL, so the KL term of a clipped class is
    // constant and contributes no gradient; the reference follows that, and so do the
    // differences as long as no step moves a probability across the clip, which `check_loss`
    // guarantees by drawing logits whose log-probabilities are 10h clear of it.
    let clipped =
        check_loss(LossCase::distillation("distillation a=0.1 T=1 logits +-30 (clipped)", 5, 30.0, 0.1, 1.0), &mut r);
    assert!(clipped > 0, "the +-30 case clipped no student probability: it checks nothing about the clip");
    println!("clipped student probabilities in the +-30 case: {clipped}");
    check_loss(LossCase::distillation("distillation a=0.5 T=1 logits +-30 (clipped)", 6, 30.0, 0.5, 1.0), &mut r);
    // keras.distillation's MSE term, with and beside the KL one, and rows without a label
    // (--labelled): the hard term is the mean over the labelled rows.
    let mixed = Distill { alpha: 0.4, temperature: 3.0, kl: 0.7, mse: 0.5 };
    let mse_only = Distill { alpha: 0.2, temperature: 2.0, kl: 0.0, mse: 1.0 };
    for (name, teacher, unlabelled) in [
        ("distillation KL + MSE", mixed, 0),
        ("distillation MSE alone, 3 of 5 rows unlabelled", mse_only, 3),
        ("distillation KL + MSE, 4 of 5 rows unlabelled", mixed, 4),
        ("distillation KL + MSE, no row labelled", mixed, 6),
    ] {
        check_loss(LossCase { name, valid: 5, spread: 5.0, teacher: Some(teacher), unlabelled }, &mut r);
    }
}

/// The seed's Distiller also trains the teacher: the gradient with respect to the teacher's
/// logits against differences of the batch loss, with Keras's clip of p_t (no gradient where
/// it clips) exercised by confident logits at T = 1.
#[test]
fn distillation_teacher_gradient_is_gradient_of_batch_loss() {
    use loss::reference::{batch_loss, distillation};
    let mut r = rng("distillation teacher gradients");
    let (rows, classes) = (6, 10);
    for (name, valid, spread, d) in [
        ("teacher grad a=0.1 T=10", 6, 5.0, Distill::kl(0.1, 10.0)),
        ("teacher grad a=0.5 T=4 4 of 6 valid", 4, 5.0, Distill::kl(0.5, 4.0)),
        ("teacher grad a=0.1 T=1 logits +-30 (clipped)", 5, 30.0, Distill::kl(0.1, 1.0)),
        ("teacher grad KL + MSE", 5, 5.0, Distill { alpha: 0.4, temperature: 3.0, kl: 0.7, mse: 0.5 }),
    ] {
        let t = d.temperature as f64;
        // Both distributions clear of the clip by 10h in log space, so no step crosses it.
        let draw = |r: &mut ChaCha8Rng| loop {
            let l = uniform(r, rows * classes, -spread, spread);
            if clear_of_clip(&l, classes, t, 10.0 * H_LOSS as f64) {
                break l;
            }
        };
        let (student, teacher) = (draw(&mut r), draw(&mut r));
        let labels: Vec<u32> = (0..rows).map(|_| r.random_range(0..classes as u32)).collect();
        let f = |tl: &[f32]| batch_loss(&distillation(&student, Some(tl), &labels, classes, valid, &d), valid);
        let analytic = distillation(&student, Some(&teacher), &labels, classes, valid, &d).dteacher;
        assert!(analytic[valid * classes..].iter().all(|&g| g == 0.0), "{name}: rows past valid have a gradient");
        check(name, &analytic, &numeric_grad(&teacher, H_LOSS, f), LOSS_BOUND);
        let clipped = softmax(&teacher[..valid * classes], classes, t as f32)
            .iter()
            .filter(|&&p| p < loss::reference::CLIP)
            .count();
        if spread > 10.0 {
            assert!(clipped > 0, "{name}: no teacher probability was clipped, so the clip went unchecked");
            println!("{name}: {clipped} clipped teacher probabilities");
        }
    }
}
