//! Every WGSL kernel against its CPU reference, on fresh random inputs, at the models' real
//! shapes and at awkward ones, with outputs poisoned (NaN) before each dispatch.

mod common;

use common::*;
use kd_wgpu::gpu::{Gpu, KernelFamily, Tensor};
use kd_wgpu::ops::adam::{self, AdamConfig};
use kd_wgpu::ops::avgpool;
use kd_wgpu::ops::batch::{self, ImageSource, Shift, StepState};
use kd_wgpu::ops::conv2d::{self, Cols, ConvShape};
use kd_wgpu::ops::dense::{self, DenseGrads, DenseShape};
use kd_wgpu::ops::dropout::{self, Draw};
use kd_wgpu::ops::feature::{self, FeatureBuffers, FeatureTerm};
use kd_wgpu::ops::globalpool::{self, GlobalShape};
use kd_wgpu::ops::loss::{self, Distill, LossInputs, LossOutputs, Objective, UNLABELLED};
use kd_wgpu::ops::matmul::{reference as mm_ref, split_parts, split_scratch_len, ALayout, Entry, Matmul};
use kd_wgpu::ops::maxpool::{self, LeakyBefore, PoolShape};
use kd_wgpu::ops::{activation, metrics, reduce, softmax, transpose, KernelBias, Padding};
use rand::seq::SliceRandom;
use rand::Rng;

fn conv(batch: usize, in_hw: (usize, usize), in_c: usize, out_c: usize, kernel: usize, stride: usize) -> ConvShape {
    ConvShape { batch, in_h: in_hw.0, in_w: in_hw.1, in_c, out_c, kernel, stride, padding: Padding::Same }
}

/// The same with "valid" padding.
fn valid(batch: usize, in_hw: (usize, usize), in_c: usize, out_c: usize, kernel: usize, stride: usize) -> ConvShape {
    ConvShape { padding: Padding::Valid, ..conv(batch, in_hw, in_c, out_c, kernel, stride) }
}

// The models' layers (teacher 256/512 channels, student 16/32) and awkward shapes: batch 1,
// 3 and 17 channels, odd image sizes, stride 1 and 2, kernel 1 and 3.
fn conv_shapes() -> Vec<(&'static str, ConvShape)> {
    vec![
        ("teacher conv1", conv(8, (28, 28), 1, 256, 3, 2)),
        ("teacher conv2", conv(32, (14, 14), 256, 512, 3, 2)),
        ("student conv1", conv(32, (28, 28), 1, 16, 3, 2)),
        ("student conv2", conv(32, (14, 14), 16, 32, 3, 2)),
        ("batch1 odd", conv(1, (9, 7), 3, 17, 3, 2)),
        ("stride1 c17->20", conv(2, (5, 6), 17, 20, 3, 1)),
        ("1x1 c3->12", conv(3, (4, 5), 3, 12, 1, 1)),
        // Channels a multiple of 4: the texture-fed im2col/col2im on CPU drivers.
        ("odd c8->12", conv(3, (9, 7), 8, 12, 3, 2)),
        ("stride1 c4->20", conv(2, (5, 6), 4, 20, 3, 1)),
        // "valid" padding: keras.io's MNIST convnet (28 -> 26, 13 -> 11) at a small batch, and
        // strides that leave input rows and columns no output reads (9x8 at stride 2: the
        // last column; 11x10, 5x5 kernel at stride 3: the last two columns).
        ("valid mnist conv1", valid(3, (28, 28), 1, 32, 3, 1)),
        ("valid mnist conv2", valid(3, (13, 13), 32, 64, 3, 1)),
        ("valid odd c3->17 s2", valid(2, (9, 8), 3, 17, 3, 2)),
        ("valid c8->12 k5 s3", valid(3, (11, 10), 8, 12, 5, 3)),
        ("valid 1x1 c4->6 s2", valid(2, (7, 5), 4, 6, 1, 2)),
    ]
}

/// The entries a device may run for a shape: every candidate the tuner may choose (each is
/// compared with the reference and, bit for bit, with the first).
fn entries(gpu: &Gpu, mm: &Matmul) -> Vec<Entry> {
    let candidates = mm.candidates(gpu);
    assert!(candidates.contains(&mm.default_entry(gpu)), "the default is among the candidates");
    candidates
}

#[test]
fn matmul_matches_reference() {
    let mut r = rng("matmul");
    // (m, n, k): tiles are 64x64 and 128x128 (buffers), 64x32 and 32x32 (texture) and 32x32
    // (strided);
    // most of these shapes are no multiple of them. N and K multiples of 4 (and M for
    // transposed A) take the four-wide entries, other shapes the scalar ones. The last five
    // split K (a small C, a long K): the teacher's first kernel gradient among them.
    for (m, n, k) in [
        (4, 4, 4),
        (68, 132, 128),
        (1, 4, 1),
        (17, 20, 13),
        (33, 68, 129),
        (70, 132, 5),
        (5, 17, 9),
        (130, 3, 31),
        (37, 36, 24),
        (9, 8, 4),
        (65, 196, 100),
        (260, 136, 52),
        (132, 260, 36),
        (9, 256, 6272),
        (21, 36, 3001),
        (3, 5, 2050),
        (260, 72, 1028),
        (12, 36, 3004),
    ] {
        let a = uniform(&mut r, m * k, -1.0, 1.0);
        let b = uniform(&mut r, k * n, -1.0, 1.0);
        let bias = uniform(&mut r, n, -1.0, 1.0);
        let plain = mm_ref::matmul(&a, &b, m, k, n);
        let with_epilogue: Vec<f32> = plain
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let v = v + bias[i % n];
                if v < 0.0 {
                    v * 0.2
                } else {
                    v
                }
            })
            .collect();
        let a_t = mm_ref::transpose(&a, m, k);
        for gpu in variants() {
            let (ta, tat, tb, tbias) =
                (upload(gpu, "a", &a), upload(gpu, "a_t", &a_t), upload(gpu, "b", &b), upload(gpu, "bias", &bias));
            let scratch = poisoned(gpu, "split scratch", split_scratch_len(m, n, k).max(1));
            for (layout, at, epi) in
                [(ALayout::Normal, &ta, false), (ALayout::Transposed, &tat, false), (ALayout::Normal, &ta, true)]
            {
                let c = poisoned(gpu, "c", m * n);
                let mm = Matmul {
                    m,
                    n,
                    k,
                    a: at,
                    a_layout: layout,
                    b: &tb,
                    bias: epi.then_some(&tbias),
                    leaky_slope: epi.then_some(0.2),
                    c: &c,
                    split_scratch: (!epi).then_some(&scratch),
                };
                let mut first: Option<(String, Vec<f32>)> = None;
                for entry in entries(gpu, &mm) {
                    c.poison(gpu);
                    scratch.poison(gpu);
                    let d = mm.dispatch_as(gpu, entry).unwrap();
                    gpu.run(&d.iter().collect::<Vec<_>>()).unwrap();
                    let want = if epi { &with_epilogue } else { &plain };
                    let split = if epi { 1 } else { split_parts(m, n, k) };
                    let name = format!(
                        "matmul[{}] {m}x{n}x{k} {layout:?}{}{}",
                        d[0].kernel,
                        if epi { " +bias+leaky" } else { "" },
                        if split > 1 { format!(" split {split}") } else { String::new() }
                    );
                    let got = c.read_f32(gpu).unwrap();
                    check(&name, &got, want, F32_BOUND);
                    match &first {
                        None => first = Some((name, got)),
                        Some((first_name, bits)) => assert!(
                            got.iter().zip(bits).all(|(x, y)| x.to_bits() == y.to_bits()),
                            "{name} differs in some bit from {first_name}: the entries must add in the same order"
                        ),
                    }
                }
            }
        }
    }
}

/// The ways a device's products may read a convolution's im2col matrix: written out (the
/// forward pass fills `cols`), gathered from the input where the device does that, and the
/// input as it is for a pointwise convolution.
fn im2col_ways<'a>(gpu: &Gpu, s: &ConvShape, cols: &'a Tensor) -> Vec<Cols<'a>> {
    let mut ways = vec![Cols::Written(cols)];
    if conv2d::gathers_im2col(gpu, s) {
        ways.push(Cols::Gathered);
    }
    if s.is_pointwise() {
        ways.push(Cols::Input);
    }
    ways
}

fn way(cols: Cols) -> &'static str {
    match cols {
        Cols::Written(_) => "",
        Cols::Gathered => ", im2col gathered",
        Cols::Input => ", im2col the input",
    }
}

/// The gathered im2col gives the same bits as the written one: the same sums in the same order.
fn same_bits(name: &str, first: &mut Option<Vec<f32>>, got: Vec<f32>) {
    match first {
        None => *first = Some(got),
        Some(bits) => assert!(
            got.iter().zip(bits.iter()).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{name}: differs in some bit from the written im2col"
        ),
    }
}

#[test]
fn conv2d_forward_matches_reference() {
    let mut r = rng("conv2d forward");
    for (name, s) in conv_shapes() {
        let x = uniform(&mut r, s.input_len(), 0.0, 1.0);
        let w = uniform(&mut r, s.kernel_len(), -0.2, 0.2);
        let b = uniform(&mut r, s.out_c, -0.1, 0.1);
        let want = conv2d::reference::forward(&s, &x, &w, &b, Some(0.2));
        for gpu in variants() {
            let (tx, tw, tb) = (upload(gpu, "x", &x), upload(gpu, "w", &w), upload(gpu, "b", &b));
            let cols = poisoned(gpu, "cols", s.m() * s.k());
            let mut written: Option<Vec<f32>> = None;
            for im2col in im2col_ways(gpu, &s, &cols) {
                let y = poisoned(gpu, "y", s.output_len());
                let weights = KernelBias { kernel: &tw, bias: &tb };
                let d = conv2d::forward(gpu, &s, &tx, weights, Some(0.2), im2col, &y).unwrap();
                gpu.run(&d.iter().collect::<Vec<_>>()).unwrap();
                let got = y.read_f32(gpu).unwrap();
                let how = format!("[{:?}{}] {name}", gpu.matmul, way(im2col));
                check(&format!("conv2d forward+leaky {how}"), &got, &want, F32_BOUND);
                same_bits(&how, &mut written, got);
            }
        }
    }
}

#[test]
fn conv2d_backward_matches_reference() {
    let mut r = rng("conv2d backward");
    for (name, s) in conv_shapes() {
        let x = uniform(&mut r, s.input_len(), 0.0, 1.0);
        let w = uniform(&mut r, s.kernel_len(), -0.2, 0.2);
        let dy = uniform(&mut r, s.output_len(), -1.0, 1.0);
        let want_dx = conv2d::reference::backward_input(&s, &dy, &w);
        let (want_dw, want_db) = conv2d::reference::backward_kernel(&s, &x, &dy);
        for gpu in variants() {
            let (tx, tw, tdy) = (upload(gpu, "x", &x), upload(gpu, "w", &w), upload(gpu, "dy", &dy));
            let cols = poisoned(gpu, "cols", s.m() * s.k());
            let im2col = conv2d::im2col(gpu, &s, &tx, &cols).unwrap();
            let w_t = poisoned(gpu, "w_t", s.kernel_len());
            let dcols = poisoned(gpu, "dcols", s.m() * s.k());
            let dx = poisoned(gpu, "dx", s.input_len());
            let scratch = poisoned(gpu, "scratch", s.kernel_grad_scratch());
            let mut d = vec![im2col];
            d.extend(conv2d::backward_input(gpu, &s, &tdy, &tw, &w_t, Some(&dcols), &dx).unwrap());
            gpu.run(&d.iter().collect::<Vec<_>>()).unwrap();
            let v = gpu.matmul;
            let got_dx = dx.read_f32(gpu).unwrap();
            check(&format!("conv2d input grad [{v:?}] {name}"), &got_dx, &want_dx, F32_BOUND);
            if s.is_pointwise() {
                // Its dcols is dx: the product writes it directly, the same bits as through col2im.
                let direct = poisoned(gpu, "dx direct", s.input_len());
                let d = conv2d::backward_input(gpu, &s, &tdy, &tw, &w_t, None, &direct).unwrap();
                gpu.run(&d.iter().collect::<Vec<_>>()).unwrap();
                same_bits(
                    &format!("conv2d input grad [{v:?}] {name}, no col2im"),
                    &mut Some(got_dx),
                    direct.read_f32(gpu).unwrap(),
                );
            } else {
                assert!(conv2d::backward_input(gpu, &s, &tdy, &tw, &w_t, None, &dx).is_err(), "{name} needs dcols");
            }
            let mut written: Option<Vec<f32>> = None;
            for im2col in im2col_ways(gpu, &s, &cols) {
                let (dw, db) = (poisoned(gpu, "dw", s.kernel_len()), poisoned(gpu, "db", s.out_c));
                scratch.poison(gpu);
                let grads = KernelBias { kernel: &dw, bias: &db };
                let d = conv2d::backward_kernel(gpu, &s, &tx, im2col, &tdy, grads, &scratch).unwrap();
                gpu.run(&d.iter().collect::<Vec<_>>()).unwrap();
                let got = dw.read_f32(gpu).unwrap();
                let how = format!("[{v:?}{}] {name}", way(im2col));
                check(&format!("conv2d kernel grad {how}"), &got, &want_dw, F32_BOUND);
                check(&format!("conv2d bias grad {how}"), &db.read_f32(gpu).unwrap(), &want_db, F32_BOUND);
                same_bits(&how, &mut written, got);
            }
        }
    }
}

#[test]
fn transpose_and_column_sum_match_reference() {
    let mut r = rng("transpose");
    for gpu in variants() {
        for (rows, cols) in [(1, 1), (17, 3), (2304, 512), (65, 129), (68, 129), (130, 12)] {
            let x = uniform(&mut r, rows * cols, -1.0, 1.0);
            let tx = upload(gpu, "x", &x);
            let y = poisoned(gpu, "y", rows * cols);
            let sums = poisoned(gpu, "sums", cols);
            let scratch = poisoned(gpu, "scratch", reduce::column_sum_scratch(rows, cols));
            let mut d = vec![transpose::transpose(gpu, &tx, &y, rows, cols).unwrap()];
            d.extend(reduce::column_sum(gpu, &tx, rows, cols, &scratch, &sums).unwrap());
            gpu.run(&d.iter().collect::<Vec<_>>()).unwrap();
            assert_eq!(y.read_f32(gpu).unwrap(), mm_ref::transpose(&x, rows, cols), "{} {rows}x{cols}", d[0].kernel);
            check(
                &format!("{} {rows}x{cols}", d[1].kernel),
                &sums.read_f32(gpu).unwrap(),
                &reduce::reference::column_sum(&x, rows, cols),
                F32_BOUND,
            );
        }
    }
}

#[test]
fn maxpool_matches_reference() {
    let mut r = rng("maxpool");
    // Channels a multiple of 4 take the texture-fed kernels on CPU drivers.
    let shapes = [
        PoolShape { batch: 4, in_h: 14, in_w: 14, channels: 256, size: 2, stride: 1, padding: Padding::Same },
        PoolShape { batch: 32, in_h: 14, in_w: 14, channels: 16, size: 2, stride: 1, padding: Padding::Same },
        PoolShape { batch: 1, in_h: 5, in_w: 7, channels: 3, size: 2, stride: 1, padding: Padding::Same },
        PoolShape { batch: 2, in_h: 9, in_w: 6, channels: 17, size: 3, stride: 2, padding: Padding::Same },
        PoolShape { batch: 2, in_h: 7, in_w: 7, channels: 5, size: 2, stride: 2, padding: Padding::Same },
        PoolShape { batch: 2, in_h: 9, in_w: 6, channels: 12, size: 3, stride: 2, padding: Padding::Same },
        PoolShape { batch: 1, in_h: 5, in_w: 7, channels: 4, size: 2, stride: 1, padding: Padding::Same },
        PoolShape { batch: 2, in_h: 8, in_w: 7, channels: 4, size: 2, stride: 3, padding: Padding::Same },
        // "valid" padding, strides other than 1: keras.io's MNIST convnet (26 -> 13, 11 -> 5,
        // the last row and column unread) and odd shapes in both families.
        PoolShape { batch: 2, in_h: 26, in_w: 26, channels: 32, size: 2, stride: 2, padding: Padding::Valid },
        PoolShape { batch: 3, in_h: 11, in_w: 11, channels: 64, size: 2, stride: 2, padding: Padding::Valid },
        PoolShape { batch: 2, in_h: 9, in_w: 7, channels: 5, size: 3, stride: 2, padding: Padding::Valid },
        PoolShape { batch: 1, in_h: 7, in_w: 8, channels: 12, size: 3, stride: 3, padding: Padding::Valid },
        PoolShape { batch: 3, in_h: 5, in_w: 6, channels: 3, size: 2, stride: 1, padding: Padding::Valid },
    ];
    for (s, gpu) in shapes.into_iter().flat_map(|s| variants().into_iter().map(move |g| (s, g))) {
        // Values on a coarse grid, so that ties are frequent and the tie rule is exercised.
        for coarse in [false, true] {
            let x: Vec<f32> = (0..s.input_len())
                .map(|_| if coarse { r.random_range(0..4) as f32 } else { r.random_range(-1.0..1.0) })
                .collect();
            let dy = uniform(&mut r, s.output_len(), -1.0, 1.0);
            let (want_y, want_arg) = maxpool::reference::forward(&s, &x);
            let want_dx = maxpool::reference::backward(&s, &dy, &want_arg);
            let (tx, tdy) = (upload(gpu, "x", &x), upload(gpu, "dy", &dy));
            let y = poisoned(gpu, "y", s.output_len());
            let arg = poisoned(gpu, "argmax", s.output_len());
            let dx = poisoned(gpu, "dx", s.input_len());
            // The pass that goes on through a LeakyReLU before the pool: x is that LeakyReLU's
            // output, zeros among its values.
            let leaky = LeakyBefore { slope: 0.2, output: &tx };
            let dx_leaky = poisoned(gpu, "dx through leaky", s.input_len());
            let f = maxpool::forward(gpu, &s, &tx, &y, &arg).unwrap();
            let b = maxpool::backward(gpu, &s, &tdy, &arg, None, &dx).unwrap();
            let bl = maxpool::backward(gpu, &s, &tdy, &arg, Some(leaky), &dx_leaky).unwrap();
            gpu.run(&[&f, &b, &bl]).unwrap();
            let name = format!(
                "maxpool[{}] {}x{}x{} k{} s{}{}",
                f.kernel,
                s.in_h,
                s.in_w,
                s.channels,
                s.size,
                s.stride,
                if coarse { " ties" } else { "" }
            );
            assert_eq!(y.read_f32(gpu).unwrap(), want_y, "{name} forward");
            assert_eq!(arg.read_u32(gpu).unwrap(), want_arg, "{name} argmax");
            check(&format!("{name} backward"), &dx.read_f32(gpu).unwrap(), &want_dx, F32_BOUND);
            let want = activation::reference::backward(&x, &want_dx, 0.2);
            check(&format!("{name} backward + leaky"), &dx_leaky.read_f32(gpu).unwrap(), &want, F32_BOUND);
        }
    }
}

#[test]
fn avgpool_matches_reference() {
    let mut r = rng("avgpool");
    let pool = |batch, in_h, in_w, channels, size, stride, padding| PoolShape {
        batch,
        in_h,
        in_w,
        channels,
        size,
        stride,
        padding,
    };
    let (same, valid) = (Padding::Same, Padding::Valid);
    // "same" windows at the borders hold fewer real cells (the divisor is their count); strides
    // that skip cells and leave the last rows unread; 1x1 windows; sizes no multiple of 256.
    let shapes = [
        pool(2, 5, 7, 3, 2, 1, same),
        pool(1, 1, 1, 17, 2, 2, same),
        pool(2, 13, 13, 64, 3, 2, same),
        pool(3, 9, 6, 5, 3, 3, same),
        pool(2, 7, 8, 4, 4, 3, same),
        pool(2, 26, 26, 8, 2, 2, valid),
        pool(2, 9, 7, 5, 3, 2, valid),
        pool(1, 8, 8, 12, 2, 3, valid),
        pool(3, 5, 6, 3, 1, 2, valid),
    ];
    for (s, gpu) in shapes.into_iter().flat_map(|s| variants().into_iter().map(move |g| (s, g))) {
        let x = uniform(&mut r, s.input_len(), -1.0, 1.0);
        let dy = uniform(&mut r, s.output_len(), -1.0, 1.0);
        let (tx, tdy) = (upload(gpu, "x", &x), upload(gpu, "dy", &dy));
        let (y, dx) = (poisoned(gpu, "y", s.output_len()), poisoned(gpu, "dx", s.input_len()));
        let f = avgpool::forward(gpu, &s, &tx, &y).unwrap();
        let b = avgpool::backward(gpu, &s, &tdy, &dx).unwrap();
        gpu.run(&[&f, &b]).unwrap();
        let name = format!(
            "avgpool [{:?}] {}x{}x{} k{} s{} {}",
            gpu.family(),
            s.in_h,
            s.in_w,
            s.channels,
            s.size,
            s.stride,
            s.padding.keras()
        );
        check(&format!("{name} forward"), &y.read_f32(gpu).unwrap(), &avgpool::reference::forward(&s, &x), F32_BOUND);
        check(
            &format!("{name} backward"),
            &dx.read_f32(gpu).unwrap(),
            &avgpool::reference::backward(&s, &dy),
            F32_BOUND,
        );
    }
}

#[test]
fn global_pools_match_reference() {
    let mut r = rng("global pools");
    let shape = |batch, in_h, in_w, channels| GlobalShape { batch, in_h, in_w, channels };
    // No size is a multiple of the 256-wide workgroup; 1x1 pixels, one channel, many channels.
    let shapes = [shape(2, 5, 7, 3), shape(3, 1, 1, 17), shape(2, 13, 13, 64), shape(1, 26, 26, 4), shape(5, 3, 2, 1)];
    for (s, gpu) in shapes.into_iter().flat_map(|s| variants().into_iter().map(move |g| (s, g))) {
        // Values on a coarse grid, so that ties are frequent and the first-maximum rule is exercised.
        for coarse in [false, true] {
            let x: Vec<f32> = (0..s.input_len())
                .map(|_| if coarse { r.random_range(0..4) as f32 } else { r.random_range(-1.0..1.0) })
                .collect();
            let dy = uniform(&mut r, s.output_len(), -1.0, 1.0);
            let (tx, tdy) = (upload(gpu, "x", &x), upload(gpu, "dy", &dy));
            let (avg, avg_dx) = (poisoned(gpu, "avg", s.output_len()), poisoned(gpu, "avg dx", s.input_len()));
            let (max, arg) = (poisoned(gpu, "max", s.output_len()), poisoned(gpu, "argmax", s.output_len()));
            let max_dx = poisoned(gpu, "max dx", s.input_len());
            let dispatches = [
                globalpool::average_forward(gpu, &s, &tx, &avg).unwrap(),
                globalpool::average_backward(gpu, &s, &tdy, &avg_dx).unwrap(),
                globalpool::max_forward(gpu, &s, &tx, &max, &arg).unwrap(),
                globalpool::max_backward(gpu, &s, &tdy, &arg, &max_dx).unwrap(),
            ];
            gpu.run(&dispatches.iter().collect::<Vec<_>>()).unwrap();
            let name = format!(
                "global pools [{:?}] {}x{}x{}x{}{}",
                gpu.family(),
                s.batch,
                s.in_h,
                s.in_w,
                s.channels,
                if coarse { " ties" } else { "" }
            );
            let want_avg = globalpool::reference::average_forward(&s, &x);
            check(&format!("{name} average forward"), &avg.read_f32(gpu).unwrap(), &want_avg, F32_BOUND);
            let want_avg_dx = globalpool::reference::average_backward(&s, &dy);
            check(&format!("{name} average backward"), &avg_dx.read_f32(gpu).unwrap(), &want_avg_dx, F32_BOUND);
            let (want_max, want_arg) = globalpool::reference::max_forward(&s, &x);
            assert_eq!(max.read_f32(gpu).unwrap(), want_max, "{name} max forward");
            assert_eq!(arg.read_u32(gpu).unwrap(), want_arg, "{name} argmax");
            let want_max_dx = globalpool::reference::max_backward(&s, &dy, &want_arg);
            assert_eq!(max_dx.read_f32(gpu).unwrap(), want_max_dx, "{name} max backward");
        }
    }
}

#[test]
fn leaky_relu_matches_reference() {
    let mut r = rng("leaky_relu");
    for gpu in variants() {
        for (n, slope) in [(1, 0.2), (1000, 0.2), (32 * 14 * 14 * 256, 0.2), (777, 0.01)] {
            let mut x = uniform(&mut r, n, -1.0, 1.0);
            x[0] = 0.0;
            let dy = uniform(&mut r, n, -1.0, 1.0);
            let (tx, tdy) = (upload(gpu, "x", &x), upload(gpu, "dy", &dy));
            let y = poisoned(gpu, "y", n);
            let dx = poisoned(gpu, "dx", n);
            let f = activation::leaky_relu_forward(gpu, slope, &tx, &y).unwrap();
            let b = activation::leaky_relu_backward(gpu, slope, &y, &tdy, &dx).unwrap();
            gpu.run(&[&f, &b]).unwrap();
            let want_y = activation::reference::forward(&x, slope);
            check(&format!("leaky_relu forward n={n}"), &y.read_f32(gpu).unwrap(), &want_y, 0.0);
            let want_dx = activation::reference::backward(&x, &dy, slope);
            check(&format!("{} n={n}", b.kernel), &dx.read_f32(gpu).unwrap(), &want_dx, 0.0);
        }
    }
}

#[test]
fn dropout_draws_the_references_mask() {
    let mut r = rng("dropout");
    for gpu in variants() {
        // Rates at and away from the ends, lengths no multiple of the workgroup, seeds and
        // steps across the whole u32 range.
        for (n, rate) in [(1, 0.5), (1000, 0.3), (32 * 14 * 14 * 16, 0.5), (777, 0.0), (300, 0.95)] {
            let draw = Draw { seed: r.random(), layer: r.random_range(0..40) };
            let step: u32 = r.random_range(1..u32::MAX);
            let state = StepState { step: 0, adam_t: step, samples: 1, batch: 1 }.upload(gpu, "state").unwrap();
            let x = uniform(&mut r, n, -1.0, 1.0);
            let (tx, y) = (upload(gpu, "x", &x), poisoned(gpu, "y", n));
            gpu.run(&[&dropout::apply(gpu, rate, draw, &state, &tx, &y).unwrap()]).unwrap();
            let want = dropout::reference::apply(rate, draw, step, &x);
            check(&format!("dropout n={n} rate={rate} {draw:?} step {step}"), &y.read_f32(gpu).unwrap(), &want, 0.0);
            let kept = want.iter().filter(|&&v| v != 0.0).count() as f64 / n as f64;
            if n > 10_000 {
                assert!((kept - (1.0 - rate as f64)).abs() < 0.01, "rate {rate}: {kept} kept");
            }
        }
    }
}

#[test]
fn dense_matches_reference() {
    let mut r = rng("dense");
    // On CPU drivers 10 units, inputs a multiple of 4 and an even batch take the texture
    // kernels (300 inputs: a last part shorter than the chunk); the rest the buffer ones.
    let shapes = [
        DenseShape { batch: 32, inputs: 25088, units: 10 },
        DenseShape { batch: 32, inputs: 1568, units: 10 },
        DenseShape { batch: 6, inputs: 300, units: 10 },
        DenseShape { batch: 5, inputs: 300, units: 10 },
        DenseShape { batch: 1, inputs: 37, units: 5 },
        DenseShape { batch: 3, inputs: 300, units: 17 },
    ];
    for (s, gpu) in shapes.into_iter().flat_map(|s| variants().into_iter().map(move |g| (s, g))) {
        let x = uniform(&mut r, s.batch * s.inputs, -1.0, 1.0);
        let w = uniform(&mut r, s.inputs * s.units, -0.05, 0.05);
        let b = uniform(&mut r, s.units, -0.1, 0.1);
        let dy = uniform(&mut r, s.batch * s.units, -1.0, 1.0);
        let (tx, tw, tb, tdy) =
            (upload(gpu, "x", &x), upload(gpu, "w", &w), upload(gpu, "b", &b), upload(gpu, "dy", &dy));
        let scratch = poisoned(gpu, "scratch", s.scratch_len());
        let y = poisoned(gpu, "y", s.batch * s.units);
        let f = dense::forward(gpu, &s, &tx, KernelBias { kernel: &tw, bias: &tb }, &scratch, &y).unwrap();
        gpu.run(&f.iter().collect::<Vec<_>>()).unwrap();
        let name = format!("dense[{}] {}x{}x{}", f[0].kernel, s.batch, s.inputs, s.units);
        check(
            &format!("{name} forward"),
            &y.read_f32(gpu).unwrap(),
            &dense::reference::forward(&s, &x, &w, &b),
            F32_BOUND,
        );

        let dx = poisoned(gpu, "dx", s.batch * s.inputs);
        let dw = poisoned(gpu, "dw", s.inputs * s.units);
        let db = poisoned(gpu, "db", s.units);
        let grads = DenseGrads { params: KernelBias { kernel: &dw, bias: &db }, input: Some(&dx) };
        let bw = dense::backward(gpu, &s, &tx, &tw, &tdy, grads, &scratch).unwrap();
        gpu.run(&bw.iter().collect::<Vec<_>>()).unwrap();
        let (want_dx, want_dw, want_db) = dense::reference::backward(&s, &x, &w, &dy);
        check(&format!("{name} input grad"), &dx.read_f32(gpu).unwrap(), &want_dx, F32_BOUND);
        check(&format!("{name} kernel grad"), &dw.read_f32(gpu).unwrap(), &want_dw, F32_BOUND);
        check(&format!("{name} bias grad"), &db.read_f32(gpu).unwrap(), &want_db, F32_BOUND);
    }
}

#[test]
fn softmax_matches_reference() {
    let mut r = rng("softmax");
    let gpu = gpu();
    for (rows, cols, t) in [(1, 10, 1.0), (32, 10, 10.0), (65, 7, 0.5), (3, 1, 2.0)] {
        // Large logits: a stable softmax must not overflow.
        let logits = uniform(&mut r, rows * cols, -60.0, 60.0);
        let tl = upload(gpu, "logits", &logits);
        let probs = poisoned(gpu, "probs", rows * cols);
        let d = softmax::softmax(gpu, rows, cols, t, &tl, &probs).unwrap();
        gpu.run(&[&d]).unwrap();
        let want: Vec<f32> = softmax::reference::softmax(&logits, cols, t).iter().map(|&v| v as f32).collect();
        // Probabilities near 1e-26 carry exp's relative error; compare on the mean floor.
        check(&format!("softmax {rows}x{cols} T={t}"), &probs.read_f32(gpu).unwrap(), &want, F32_BOUND);
    }
}

/// A loss kernel's outputs, read back.
struct LossRows {
    dlogits: Vec<f32>,
    loss: Vec<f32>,
    correct: Vec<f32>,
    /// Rows x 3 for a distillation loss, else empty.
    terms: Vec<f32>,
}

/// Runs a loss kernel on poisoned outputs and reads them back.
fn run_loss(
    gpu: &Gpu,
    objective: &Objective,
    logits: &[f32],
    labels: &[u32],
    classes: usize,
    valid: usize,
) -> LossRows {
    let rows = labels.len();
    let state =
        StepState { step: 0, adam_t: 1, samples: valid as u32, batch: rows as u32 }.upload(gpu, "state").unwrap();
    let tl = upload(gpu, "logits", logits);
    let tlab = Tensor::from_u32(gpu, "labels", &[rows], labels).unwrap();
    let terms = matches!(objective, Objective::Distillation { .. })
        .then(|| poisoned(gpu, "row_terms", rows * loss::TERMS.len()));
    let out = LossOutputs {
        dlogits: &poisoned(gpu, "dlogits", rows * classes),
        row_loss: &poisoned(gpu, "row_loss", rows),
        row_correct: &poisoned(gpu, "row_correct", rows),
        row_terms: terms.as_ref(),
    };
    let input = LossInputs { state: &state, logits: &tl, labels: &tlab };
    let d = loss::loss(gpu, objective, (rows, classes), &input, &out).unwrap();
    gpu.run(&[&d]).unwrap();
    LossRows {
        dlogits: out.dlogits.read_f32(gpu).unwrap(),
        loss: out.row_loss.read_f32(gpu).unwrap(),
        correct: out.row_correct.read_f32(gpu).unwrap(),
        terms: terms.map(|t| t.read_f32(gpu).unwrap()).unwrap_or_default(),
    }
}

fn as_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

#[test]
fn cross_entropy_matches_reference() {
    let mut r = rng("cross_entropy");
    let gpu = gpu();
    // (rows, classes, valid rows): a full batch, a short last batch, batch 1, odd classes.
    for (rows, classes, valid) in [(32, 10, 32), (32, 10, 16), (1, 10, 1), (70, 3, 69)] {
        let logits = uniform(&mut r, rows * classes, -8.0, 8.0);
        let labels: Vec<u32> = (0..rows).map(|_| r.random_range(0..classes as u32)).collect();
        let got = run_loss(gpu, &Objective::CrossEntropy, &logits, &labels, classes, valid);
        let want = loss::reference::cross_entropy(&logits, &labels, classes, valid);
        let name = format!("cross_entropy {rows}x{classes} valid {valid}");
        check(&format!("{name} grad"), &got.dlogits, &as_f32(&want.dlogits), F32_BOUND);
        check(&format!("{name} loss"), &got.loss, &as_f32(&want.loss), F32_BOUND);
        let want_correct: Vec<f32> = want.correct.iter().map(|&c| c as u8 as f32).collect();
        assert_eq!(got.correct, want_correct, "{name} correct");
    }
}

#[test]
fn distillation_matches_reference() {
    let mut r = rng("distillation");
    let gpu = gpu();
    // The fourth case has confident teachers and students at T=1, so probabilities fall below
    // Keras's 1e-7 clip and the clipped branch of the gradient is exercised. Then
    // keras.distillation's MSE term beside (or instead of) the KL one, and --labelled's rows
    // without a label: some, nearly all, and all of a batch's.
    for (rows, classes, valid, (alpha, t, kl, mse), spread, unlabelled) in [
        (32, 10, 32, (0.1, 10.0, 1.0, 0.0), 8.0, 0.0),
        (32, 10, 21, (0.5, 4.0, 1.0, 0.0), 8.0, 0.0),
        (1, 10, 1, (0.9, 1.0, 1.0, 0.0), 3.0, 0.0),
        (40, 10, 40, (0.1, 1.0, 1.0, 0.0), 30.0, 0.0),
        (37, 10, 30, (0.5, 3.0, 0.7, 0.4), 8.0, 0.0),
        (33, 10, 33, (0.3, 2.0, 0.0, 1.0), 8.0, 0.5),
        (32, 10, 25, (0.5, 3.0, 1.0, 0.0), 8.0, 0.97),
        (20, 10, 20, (0.5, 3.0, 1.0, 0.5), 8.0, 1.0),
    ] {
        let logits = uniform(&mut r, rows * classes, -spread, spread);
        let teacher = uniform(&mut r, rows * classes, -spread, spread);
        let mut labels: Vec<u32> = (0..rows).map(|_| r.random_range(0..classes as u32)).collect();
        for l in labels.iter_mut().filter(|_| r.random_bool(unlabelled)) {
            *l |= UNLABELLED;
        }
        let tt = upload(gpu, "teacher", &teacher);
        let distill = Distill { alpha, temperature: t, kl, mse };
        let want = loss::reference::distillation(&logits, Some(&teacher), &labels, classes, valid, &distill);
        let want_correct: Vec<f32> = want.correct.iter().map(|&c| c as u8 as f32).collect();
        // Both entries: the frozen teacher's, and the one that also gives the teacher's gradient.
        let dteacher = poisoned(gpu, "dteacher", rows * classes);
        for teacher_grad in [None, Some(&dteacher)] {
            let objective = Objective::Distillation { teacher_logits: &tt, distill, teacher_grad };
            let got = run_loss(gpu, &objective, &logits, &labels, classes, valid);
            let with = if teacher_grad.is_some() { " (teacher gradient)" } else { "" };
            let name = format!("distillation{with} {rows}x{classes} valid {valid} {distill:?} unlabelled {unlabelled}");
            // The soft term subtracts nearly equal probabilities (p_s - p_t); at T=10 they agree
            // to ~1e-2, so f32 exp/divide rounding (~1e-7 relative to p) shows up magnified.
            check(&format!("{name} grad"), &got.dlogits, &as_f32(&want.dlogits), 2e-4);
            check(&format!("{name} loss"), &got.loss, &as_f32(&want.loss), F32_BOUND);
            check(&format!("{name} terms"), &got.terms, &as_f32(&want.terms), F32_BOUND);
            assert_eq!(got.correct, want_correct, "{name} correct");
        }
        // The teacher's gradient has the same subtraction (g_j - G), and ln p near the clip.
        let name = format!("distillation teacher grad {rows}x{classes} valid {valid} {distill:?}");
        check(&name, &dteacher.read_f32(gpu).unwrap(), &as_f32(&want.dteacher), 2e-4);
    }
}

#[test]
fn adam_matches_reference() {
    let mut r = rng("adam");
    for gpu in variants() {
        let cfg = AdamConfig::default();
        for n in [1, 1000, 20_490, 20_492] {
            let mut w = uniform(&mut r, n, -1.0, 1.0);
            let (mut m, mut v) = (vec![0f32; n], vec![0f32; n]);
            let (tw, tm, tv) = (upload(gpu, "w", &w), upload(gpu, "m", &m), upload(gpu, "v", &v));
            let tg = upload(gpu, "g", &vec![0.0; n]);
            let state = StepState { step: 0, adam_t: 1, samples: 1, batch: 1 }.upload(gpu, "state").unwrap();
            let step = adam::step(gpu, &cfg, &state, &tw, &tg, &tm, &tv).unwrap();
            let advance = batch::advance(gpu, &state).unwrap();
            for t in 1..=5 {
                let g = uniform(&mut r, n, -1.0, 1.0);
                tg.write_f32(gpu, &g);
                gpu.run(&[&step, &advance]).unwrap();
                adam::reference::step(&cfg, t, &mut w, &g, &mut m, &mut v);
            }
            check(&format!("{} n={n} after 5 steps", step.kernel), &tw.read_f32(gpu).unwrap(), &w, F32_BOUND);
            check(&format!("adam n={n} m"), &tm.read_f32(gpu).unwrap(), &m, F32_BOUND);
            check(&format!("adam n={n} v"), &tv.read_f32(gpu).unwrap(), &v, F32_BOUND);
            assert_eq!(state.read_u32(gpu).unwrap()[..2], [5, 6], "step and t advance once per step");
        }
    }
}

#[test]
fn batch_gather_and_metrics_follow_the_step_state() {
    let mut r = rng("batch");
    let gpu = gpu();
    let (samples, pixels, batch, width) = (45, 7, 16, 3);
    let images: Vec<u8> = (0..samples * pixels).map(|_| r.random()).collect();
    let labels: Vec<u32> = (0..samples).map(|_| r.random_range(0..10)).collect();
    let table = uniform(&mut r, samples * width, -1.0, 1.0);
    let mut perm: Vec<u32> = (0..samples as u32).collect();
    perm.reverse();
    perm.swap(3, 40);

    let scale = batch::scale_table();
    let t_images = Tensor::from_u32(gpu, "images", &[images.len().div_ceil(4)], &batch::pack_bytes(&images)).unwrap();
    let t_labels = Tensor::from_u32(gpu, "labels", &[samples], &labels).unwrap();
    let t_scale = upload(gpu, "scale", &scale);
    let t_perm = Tensor::from_u32(gpu, "perm", &[samples], &perm).unwrap();
    let t_table = upload(gpu, "table", &table);
    let state =
        StepState { step: 0, adam_t: 1, samples: samples as u32, batch: batch as u32 }.upload(gpu, "state").unwrap();
    let x = poisoned(gpu, "x", batch * pixels);
    let y = poisoned(gpu, "y", batch);
    let rows = poisoned(gpu, "rows", batch * width);
    let copy = poisoned(gpu, "copy", samples * width);
    let row_loss = poisoned(gpu, "row_loss", batch);
    let row_correct = poisoned(gpu, "row_correct", batch);
    let metrics_buf = poisoned(gpu, "metrics", 2 * 3);
    // A distillation loss's record: its terms' sums after the pair.
    let terms = loss::TERMS.len();
    let row_terms = poisoned(gpu, "row_terms", batch * terms);
    let terms_buf = poisoned(gpu, "metrics with terms", (2 + terms) * 3);
    let src = ImageSource { images: &t_images, labels: &t_labels, scale: &t_scale, pixels };
    let gather = batch::gather_images(gpu, batch, &state, &t_perm, &src, &x, &y).unwrap();
    let gather_rows = batch::gather_rows(gpu, batch, width, &state, &t_perm, &t_table, &rows).unwrap();
    let store = batch::store_rows(gpu, batch, width, &state, &rows, &copy).unwrap();
    let record = metrics::record(gpu, &state, &row_loss, &row_correct, None, &metrics_buf).unwrap();
    let record_terms = metrics::record(gpu, &state, &row_loss, &row_correct, Some(&row_terms), &terms_buf).unwrap();
    let advance = batch::advance(gpu, &state).unwrap();

    let (mut want_metrics, mut want_terms) = (vec![], vec![]);
    for step in 0..3 {
        let valid = batch.min(samples - step * batch);
        let losses = uniform(&mut r, batch, 0.0, 2.0);
        let correct: Vec<f32> = (0..batch).map(|_| r.random_range(0..2) as f32).collect();
        let term_rows = uniform(&mut r, batch * terms, 0.0, 3.0);
        row_loss.write_f32(gpu, &losses);
        row_correct.write_f32(gpu, &correct);
        row_terms.write_f32(gpu, &term_rows);
        gpu.run(&[&gather, &gather_rows, &store, &record, &record_terms, &advance]).unwrap();
        let (gx, gy, grows) = (x.read_f32(gpu).unwrap(), y.read_u32(gpu).unwrap(), rows.read_f32(gpu).unwrap());
        for i in 0..batch {
            let real = i < valid;
            let sample = perm.get(step * batch + i).copied().unwrap_or(0) as usize;
            for p in 0..pixels {
                let want = if real { scale[images[sample * pixels + p] as usize] } else { 0.0 };
                assert_eq!(gx[i * pixels + p], want, "step {step} row {i} pixel {p}");
            }
            assert_eq!(gy[i], if real { labels[sample] } else { 0 }, "step {step} label {i}");
            for j in 0..width {
                let want = if real { table[sample * width + j] } else { 0.0 };
                assert_eq!(grows[i * width + j], want, "step {step} gathered row {i}");
            }
        }
        want_metrics.push(losses.iter().map(|&v| v as f64).sum::<f64>() as f32);
        want_metrics.push(correct.iter().sum());
        want_terms.extend_from_slice(&want_metrics[want_metrics.len() - 2..]);
        for k in 0..terms {
            want_terms.push((0..batch).map(|i| term_rows[i * terms + k] as f64).sum::<f64>() as f32);
        }
    }
    // store_rows wrote each step's gathered rows back in order: the table permuted.
    let want_copy: Vec<f32> = (0..samples).flat_map(|i| table[perm[i] as usize * width..][..width].to_vec()).collect();
    assert_eq!(copy.read_f32(gpu).unwrap(), want_copy);
    check("metrics per step", &metrics_buf.read_f32(gpu).unwrap(), &want_metrics, 1e-6);
    check("metrics with terms per step", &terms_buf.read_f32(gpu).unwrap(), &want_terms, 1e-6);
    assert_eq!(scale[255], 1.0);
    assert_eq!(scale[51], 51f32 / 255f32);
}

/// The shifted gather against its reference, bit for bit: the real 28x28 images and an odd
/// 9x9, batches whose pixels are no multiple of the workgroup, a full step and the short last
/// one, Adam's t and the seed anywhere in u32; shift 0 is the plain gather.
#[test]
fn shifted_gather_matches_reference() {
    let mut r = rng("shifted gather");
    let gpu = gpu();
    for (side, samples, batch) in [(28, 50, 7), (9, 23, 5)] {
        let pixels = side * side;
        let images: Vec<u8> = (0..samples * pixels).map(|_| r.random()).collect();
        let labels: Vec<u32> = (0..samples).map(|_| r.random_range(0..10)).collect();
        let mut perm: Vec<u32> = (0..samples as u32).collect();
        perm.shuffle(&mut r);
        let t_images =
            Tensor::from_u32(gpu, "images", &[images.len().div_ceil(4)], &batch::pack_bytes(&images)).unwrap();
        let t_labels = Tensor::from_u32(gpu, "labels", &[samples], &labels).unwrap();
        let t_scale = upload(gpu, "scale", &batch::scale_table());
        let t_perm = Tensor::from_u32(gpu, "perm", &[samples], &perm).unwrap();
        let src = ImageSource { images: &t_images, labels: &t_labels, scale: &t_scale, pixels };
        let last = (samples.div_ceil(batch) - 1) as u32;
        for shift_pixels in [0, 1, 2, 3] {
            for step in [r.random_range(0..last), last] {
                let shift = Shift { pixels: shift_pixels, seed: r.random() };
                let state = StepState { step, adam_t: r.random(), samples: samples as u32, batch: batch as u32 };
                let t_state = state.upload(gpu, "state").unwrap();
                let (x, y) = (poisoned(gpu, "x", batch * pixels), poisoned(gpu, "y", batch));
                let gather = batch::gather_shifted_images(gpu, batch, shift, &t_state, &t_perm, &src, &x, &y).unwrap();
                gpu.run(&[&gather]).unwrap();
                let name = format!("{side}x{side}, batch {batch}, {shift:?}, {state:?}");
                let (want_x, want_y) = batch::reference::gather(&images, &labels, &perm, state, side, shift);
                let got_x = x.read_f32(gpu).unwrap();
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
                assert_eq!(bits(&got_x), bits(&want_x), "{name}: images");
                assert_eq!(y.read_u32(gpu).unwrap(), want_y, "{name}: labels");
                let unmoved =
                    batch::reference::gather(&images, &labels, &perm, state, side, Shift { pixels: 0, ..shift });
                if shift_pixels == 0 {
                    let plain = batch::gather_images(gpu, batch, &t_state, &t_perm, &src, &x, &y).unwrap();
                    x.poison(gpu);
                    gpu.run(&[&plain]).unwrap();
                    assert_eq!(bits(&x.read_f32(gpu).unwrap()), bits(&got_x), "{name}: the plain gather");
                    assert_eq!(got_x, unmoved.0, "{name}: shift 0 moves nothing");
                } else {
                    // Random bytes: a row whose offsets are not both 0 differs from its image.
                    let moved =
                        (0..batch).filter(|&i| got_x[i * pixels..][..pixels] != unmoved.0[i * pixels..][..pixels]);
                    let drawn = (0..batch).filter(|&i| batch::reference::offsets(shift, state.adam_t, i) != (0, 0));
                    let real = (samples - step as usize * batch).min(batch);
                    assert_eq!(moved.count(), drawn.take_while(|&i| i < real).count(), "{name}: rows moved");
                }
            }
        }
    }
}

/// The offsets cover -pixels..=pixels evenly, dx and dy independently, and change from row to
/// row, from step to step and from seed to seed.
#[test]
fn shifts_are_uniform_over_their_range() {
    let mut r = rng("shift distribution");
    for pixels in [1, 2, 3, 13] {
        let shift = Shift { pixels, seed: r.random() };
        let span = 2 * pixels as usize + 1;
        let (rows, steps) = (64, 2000);
        let mut counts = vec![0usize; span * span];
        for t in 1..=steps {
            for i in 0..rows {
                let (dx, dy) = batch::reference::offsets(shift, t, i);
                assert!(dx.unsigned_abs() <= pixels && dy.unsigned_abs() <= pixels, "{shift:?}: ({dx}, {dy})");
                counts[(dy + pixels as i32) as usize * span + (dx + pixels as i32) as usize] += 1;
            }
        }
        // Every (dx, dy) pair, and so both offsets and their independence, within 5 standard
        // deviations of its expected count (a false alarm about once in a thousand runs).
        let expected = (rows * steps as usize) as f64 / (span * span) as f64;
        for (at, &n) in counts.iter().enumerate() {
            let (dx, dy) = ((at % span) as i32 - pixels as i32, (at / span) as i32 - pixels as i32);
            assert!(
                (n as f64 - expected).abs() < 5.0 * expected.sqrt(),
                "{shift:?}: ({dx}, {dy}) drawn {n} times, {expected:.0} expected"
            );
        }
        let row0: Vec<(i32, i32)> = (1..=20).map(|t| batch::reference::offsets(shift, t, 0)).collect();
        assert!(row0.iter().any(|&o| o != row0[0]), "{shift:?}: row 0 moves alike at every step");
        let other = Shift { seed: shift.seed ^ 1, ..shift };
        let by_seed: Vec<(i32, i32)> = (0..20).map(|i| batch::reference::offsets(other, 1, i)).collect();
        assert_ne!(
            by_seed,
            (0..20).map(|i| batch::reference::offsets(shift, 1, i)).collect::<Vec<_>>(),
            "{shift:?}: seeds"
        );
    }
}

/// A shift that would move a whole image out of its frame, or a non-square image, is an error.
#[test]
fn shifted_gather_refuses_impossible_shifts() {
    let gpu = gpu();
    let t = |len| Tensor::zeros(gpu, "t", &[len]).unwrap();
    let (images, labels, scale, perm, state) = (t(49), t(1), t(256), t(1), t(4));
    let (x, y) = (t(196), t(1));
    for (pixels, shift, message) in [(196, 14, "out of its frame"), (195, 1, "must be square")] {
        let src = ImageSource { images: &images, labels: &labels, scale: &scale, pixels };
        let err = batch::gather_shifted_images(gpu, 1, Shift { pixels: shift, seed: 0 }, &state, &perm, &src, &x, &y)
            .err()
            .expect("refused");
        assert!(err.to_string().contains(message), "{err}");
    }
}

#[test]
fn device_validation_errors_are_errors_naming_the_kernel() {
    let gpu = gpu();
    let x = upload(gpu, "x", &[1.0; 8]);
    // A uniform buffer where the kernel declares storage: wgpu rejects the bind group.
    let wrong = gpu.uniform("wrong", &[0u32; 4]);
    let err = kd_wgpu::gpu::Dispatch::new(
        gpu,
        &kd_wgpu::shader!("leaky_relu"),
        "leaky_relu_forward",
        &[x.binding(), x.binding(), wrong.as_entire_binding()],
        [1, 1, 1],
    )
    .err()
    .expect("a mismatched binding must be refused");
    let msg = format!("{err:#}");
    assert!(msg.contains("leaky_relu::leaky_relu_forward"), "{msg}");
    assert!(gpu.check("after the refused binding").is_ok(), "the error was captured, not left pending");
}

/// The kernel family picks the texture-fed entry only where its rule holds, and the buffer
/// entry otherwise; the buffer family never reads textures.
#[test]
fn the_family_chooses_the_entry_from_the_shape() {
    for gpu in variants() {
        let textures = gpu.family() == KernelFamily::Textures;
        let t = |len: usize| poisoned(gpu, "t", len);
        let pool = |channels: usize| {
            let s = PoolShape { batch: 2, in_h: 5, in_w: 5, channels, size: 2, stride: 1, padding: Padding::Same };
            maxpool::forward(gpu, &s, &t(s.input_len()), &t(s.output_len()), &t(s.output_len())).unwrap().kernel
        };
        // The global pools' buffer-fed entries serve both families.
        let global = |channels: usize| {
            let s = GlobalShape { batch: 2, in_h: 5, in_w: 5, channels };
            globalpool::max_forward(gpu, &s, &t(s.input_len()), &t(s.output_len()), &t(s.output_len())).unwrap().kernel
        };
        let dense = |units: usize| {
            let s = DenseShape { batch: 4, inputs: 64, units };
            let (w, b) = (t(64 * units), t(units));
            let d = dense::forward(
                gpu,
                &s,
                &t(4 * 64),
                KernelBias { kernel: &w, bias: &b },
                &t(s.scratch_len()),
                &t(4 * units),
            );
            d.unwrap()[0].kernel.clone()
        };
        let product = |m: usize, n: usize, k: usize| {
            let (a, b, c) = (t(m * k), t(k * n), t(m * n));
            let mm = Matmul {
                m,
                n,
                k,
                a: &a,
                a_layout: ALayout::Normal,
                b: &b,
                bias: None,
                leaky_slope: None,
                c: &c,
                split_scratch: None,
            };
            mm.dispatch(gpu).unwrap()[0].kernel.clone()
        };
        let cases = [
            (pool(16), "maxpool::maxpool_forward (textures)", "maxpool::maxpool_forward"),
            (pool(17), "maxpool::maxpool_forward", "maxpool::maxpool_forward"),
            (global(16), "globalpool::global_max_forward", "globalpool::global_max_forward"),
            (dense(10), "dense::dense_forward_texture", "dense::dense_forward_partial"),
            (dense(12), "dense::dense_forward_partial", "dense::dense_forward_partial"),
            (product(33, 20, 12), "matmul_texture::matmul_texture_64x32", "matmul::matmul_vec4"),
            (product(1536, 1024, 12), "matmul_texture::matmul_texture_64x32", "matmul::matmul_vec4_wide"),
            (product(33, 20, 13), "matmul_subgroup::matmul_subgroup_strided", "matmul::matmul_tiled"),
            (product(33, 17, 12), "matmul::matmul_tiled", "matmul::matmul_tiled"),
        ];
        for (got, on_textures, on_buffers) in cases {
            let want = if textures { on_textures } else { on_buffers };
            assert_eq!(got, want, "{:?} family", gpu.family());
        }
    }
}

#[test]
fn feature_mse_matches_reference() {
    let mut r = rng("feature mse");
    let gpu = gpu();
    // (rows, valid, features): a short batch, features not a multiple of the workgroup's 64,
    // and a row longer than many strides.
    for (rows, valid, features) in [(5, 4, 101), (3, 3, 64), (2, 1, 1000)] {
        let student = uniform(&mut r, rows * features, -2.0, 2.0);
        let teacher = uniform(&mut r, rows * features, -2.0, 2.0);
        let (columns, column, scale) = (4, 3, 0.35);
        let (ts, tt) = (upload(gpu, "student", &student), upload(gpu, "teacher", &teacher));
        let state =
            StepState { step: 0, adam_t: 1, samples: valid as u32, batch: rows as u32 }.upload(gpu, "state").unwrap();
        let (want_rows, want_grad) = feature::reference::mse(&student, &teacher, features, valid, scale);
        for accumulate in [false, true] {
            // Accumulating adds to what is there; writing must cover every row, poison included.
            let before = uniform(&mut r, rows * features, -1.0, 1.0);
            let grad = if accumulate { upload(gpu, "grad", &before) } else { poisoned(gpu, "grad", rows * features) };
            let base_loss = uniform(&mut r, rows, 0.0, 1.0);
            let row_loss = upload(gpu, "row loss", &base_loss);
            let row_terms = upload(gpu, "row terms", &vec![0.0; rows * columns]);
            let term = FeatureTerm { scale: scale as f32, column, accumulate };
            let b = FeatureBuffers {
                state: &state,
                student: &ts,
                teacher: &tt,
                grad: &grad,
                row_loss: &row_loss,
                row_terms: &row_terms,
            };
            gpu.run(&[&feature::mse(gpu, (rows, features), term, &b).unwrap()]).unwrap();
            let name = format!("feature mse {rows}x{features} valid {valid} accumulate {accumulate}");
            let want: Vec<f32> =
                (0..rows * features).map(|i| want_grad[i] as f32 + if accumulate { before[i] } else { 0.0 }).collect();
            check(&format!("{name} grad"), &grad.read_f32(gpu).unwrap(), &want, F32_BOUND);
            let terms = row_terms.read_f32(gpu).unwrap();
            let losses = row_loss.read_f32(gpu).unwrap();
            for row in 0..rows {
                let mse = want_rows.get(row).copied().unwrap_or(0.0);
                let got = terms[row * columns + column] as f64;
                assert!((got - mse).abs() <= 1e-5 * mse.max(1.0), "{name} row {row}: mse {got} against {mse}");
                let loss = base_loss[row] as f64 + scale * mse;
                assert!((losses[row] as f64 - loss).abs() <= 1e-5 * loss.max(1.0), "{name} row {row} loss");
            }
            assert!(terms.iter().enumerate().all(|(i, &v)| i % columns == column || v == 0.0), "{name}: other columns");
        }
    }
    // The projection's input gradient joins the student's.
    let (x, y) = (uniform(&mut r, 1001, -1.0, 1.0), uniform(&mut r, 1001, -1.0, 1.0));
    let (tx, ty) = (upload(gpu, "addend", &x), upload(gpu, "total", &y));
    gpu.run(&[&feature::accumulate(gpu, &tx, &ty).unwrap()]).unwrap();
    let want: Vec<f32> = x.iter().zip(&y).map(|(a, b)| a + b).collect();
    assert_eq!(ty.read_f32(gpu).unwrap(), want, "accumulate");
}
