//! Weight files: safetensors round trips, files written in Keras's layout by other tools,
//! atomic saves, refusals of bad files, and `kd-wgpu evaluate` through the binary.

mod common;

use kd_wgpu::checkpoint::{self, load, load_bytes, save};
use kd_wgpu::config::{self, WeightFiles};
use kd_wgpu::data::{LoadOptions, Split, IMAGE_SIDE, NUM_CLASSES};
use kd_wgpu::gpu::{Gpu, Tensor};
use kd_wgpu::model::{reference, Architecture, STUDENT_CHANNELS};
use kd_wgpu::run;
use kd_wgpu::train::{DeviceData, Feed, Model, Plan};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

fn student() -> Architecture {
    Architecture::student()
}

fn teacher() -> Architecture {
    Architecture::teacher()
}

/// A fresh directory for one test, removed when dropped.
fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Weights of `arch` with every tensor non-zero (biases included), in the flat layout.
fn random_weights(arch: &Architecture, seed: u64) -> Vec<f32> {
    let mut flat = arch.init_glorot(seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    for p in arch.params().iter().filter(|p| p.fans.is_none()) {
        for v in &mut flat[p.range()] {
            *v = rng.random_range(-0.1..0.1);
        }
    }
    flat
}

fn random_student(seed: u64) -> Vec<f32> {
    random_weights(&student(), seed)
}

fn synthetic(samples: usize, seed: u64) -> Split {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Split {
        images: (0..samples * IMAGE_SIDE * IMAGE_SIDE).map(|_| rng.random()).collect(),
        labels: (0..samples).map(|_| rng.random_range(0..NUM_CLASSES as u8)).collect(),
    }
}

/// The model's logits for every test image, in order, computed on the device.
fn gpu_logits(gpu: &Gpu, arch: &Architecture, flat: &[f32], data: &DeviceData) -> Vec<f32> {
    let model = Model::new(gpu, arch, flat).unwrap();
    let n = data.test.samples;
    let table = Tensor::zeros(gpu, "logits", &[n, NUM_CLASSES]).unwrap();
    let feed = Feed { data, split: &data.test, teacher_logits: None };
    let plan = Plan::logits(gpu, "logits", &model, &feed, &table, 8).unwrap();
    plan.run_epoch(gpu, &(0..n as u32).collect::<Vec<_>>(), 1, |_, _, _| {}).unwrap();
    let mut out = table.read_f32(gpu).unwrap();
    out.truncate(n * NUM_CLASSES);
    out
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// One tensor of a hand-made file: name, shape, dtype, raw little-endian bytes.
type RawTensor = (String, Vec<usize>, Dtype, Vec<u8>);

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The six tensors of `flat` as another tool would write them (no help from `save`).
fn raw_tensors(arch: &Architecture, flat: &[f32]) -> Vec<RawTensor> {
    arch.params()
        .into_iter()
        .map(|p| (p.name.to_string(), p.shape.clone(), Dtype::F32, f32_bytes(&flat[p.range()])))
        .collect()
}

/// Serialises tensors with the safetensors crate directly.
fn serialize(tensors: &[RawTensor], metadata: Option<HashMap<String, String>>) -> Vec<u8> {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(name, shape, dtype, bytes)| (name.clone(), TensorView::new(*dtype, shape.clone(), bytes).unwrap()))
        .collect();
    safetensors::serialize(views, metadata).unwrap()
}

#[test]
fn save_then_load_gives_identical_weights_and_predictions() {
    let gpu = common::gpu();
    let dir = temp_dir();
    let path = dir.path().join("student.safetensors");
    let flat = random_student(11);
    save(&path, &student(), &flat, r#"{"seed":11}"#).unwrap();
    let loaded = load(&path, &student()).unwrap();
    assert_eq!(bits(&loaded), bits(&flat), "weights survive the round trip bit for bit");

    let data = DeviceData::upload(gpu, &synthetic(4, 1), &synthetic(20, 2)).unwrap();
    let before = gpu_logits(gpu, &student(), &flat, &data);
    let after = gpu_logits(gpu, &student(), &loaded, &data);
    assert!(before.iter().all(|v| v.is_finite()));
    assert_eq!(bits(&after), bits(&before), "identical predictions");

    // The metadata says what the file holds.
    let bytes = std::fs::read(&path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().as_ref().expect("metadata");
    assert_eq!(meta["architecture"], "student");
    assert_eq!((meta["conv1"].as_str(), meta["conv2"].as_str()), ("16", "32"));
    assert!(meta["layers"].starts_with(r#"[{"Conv2D":{"filters":16,"kernel":3,"stride":2}}"#), "{}", meta["layers"]);
    assert_eq!(meta["config"], r#"{"seed":11}"#);
}

/// The whole network's CPU reference, layer by layer.
fn cpu_forward(arch: &Architecture, flat: &[f32], images: &[u8], n: usize) -> Vec<f32> {
    let x: Vec<f32> = images.iter().map(|&b| b as f32 / 255.0).collect();
    let batch = reference::Batch { images: &x, labels: &vec![0; n], teacher_logits: None, rows: n };
    reference::forward(arch, flat, &batch, reference::Run::EVALUATE).logits().to_vec()
}

#[test]
fn a_file_in_keras_layout_predicts_what_the_cpu_references_predict() {
    let gpu = common::gpu();
    let mut rng = common::rng("keras layout");
    let dir = temp_dir();
    // Built tensor by tensor in Keras's shapes, as scripts/keras_to_safetensors.py writes them.
    let [c1, c2] = STUDENT_CHANNELS;
    let tensors: Vec<RawTensor> = [
        ("conv1.kernel", vec![3, 3, 1, c1], 0.5),
        ("conv1.bias", vec![c1], 0.1),
        ("conv2.kernel", vec![3, 3, c1, c2], 0.15),
        ("conv2.bias", vec![c2], 0.1),
        ("dense.kernel", vec![7 * 7 * c2, 10], 0.06),
        ("dense.bias", vec![10], 0.1),
    ]
    .into_iter()
    .map(|(name, shape, limit)| {
        let values = common::uniform(&mut rng, shape.iter().product(), -limit, limit);
        (name.to_string(), shape, Dtype::F32, f32_bytes(&values))
    })
    .collect();
    let path = dir.path().join("from-keras.safetensors");
    std::fs::write(&path, serialize(&tensors, None)).unwrap();

    let flat = load(&path, &student()).unwrap();
    let n = 12;
    let test = synthetic(n, 3);
    let data = DeviceData::upload(gpu, &synthetic(4, 4), &test).unwrap();
    let got = gpu_logits(gpu, &student(), &flat, &data);
    let want = cpu_forward(&student(), &flat, &test.images, n);
    common::check("logits from a Keras-layout file", &got, &want, common::F32_BOUND);
}

#[test]
fn a_failed_save_keeps_the_previous_file_and_leaves_no_temporary() {
    let dir = temp_dir();
    let path = dir.path().join("student.safetensors");
    save(&path, &student(), &random_student(1), "{}").unwrap();
    let good = std::fs::read(&path).unwrap();

    // The temporary file cannot be created: a directory stands in its place.
    let tmp = checkpoint::temp_path(&path).unwrap();
    std::fs::create_dir(&tmp).unwrap();
    let err = save(&path, &student(), &random_student(2), "{}").expect_err("save must fail");
    assert!(format!("{err:#}").contains(&path.display().to_string()), "{err:#}");
    std::fs::remove_dir(&tmp).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), good, "the previous file is unchanged");
    assert_eq!(bits(&load(&path, &student()).unwrap()), bits(&random_student(1)), "and still loads");

    // The temporary is written but the rename fails (the target is a non-empty directory):
    // the temporary must be removed.
    let blocked = dir.path().join("blocked.safetensors");
    std::fs::create_dir_all(blocked.join("inside")).unwrap();
    assert!(save(&blocked, &student(), &random_student(3), "{}").is_err());
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(left.is_empty(), "temporary files left behind: {left:?}");

    // Non-finite weights are refused before anything is written.
    let mut bad = random_student(4);
    bad[student().param("dense.bias").unwrap().offset] = f32::NAN;
    let err = save(&path, &student(), &bad, "{}").expect_err("NaN weights are not saved");
    assert!(format!("{err:#}").contains("dense.bias"), "{err:#}");
    assert_eq!(std::fs::read(&path).unwrap(), good);
}

/// `load` must refuse `bytes` (written to `path`) with a message containing every one of `expect`.
fn refused(path: &Path, bytes: &[u8], arch: &Architecture, expect: &[&str]) {
    std::fs::write(path, bytes).unwrap();
    let err = load(path, arch).expect_err("bad file must be refused");
    let msg = format!("{err:#}");
    assert!(msg.contains(&path.display().to_string()), "`{msg}` should name the file");
    for e in expect {
        assert!(msg.contains(e), "`{msg}` should mention `{e}`");
    }
}

#[test]
fn bad_files_are_refused_naming_the_file_and_the_tensor() {
    let dir = temp_dir();
    let flat = random_student(5);
    let good = raw_tensors(&student(), &flat);
    let f = |name: &str| dir.path().join(name);

    let missing = f("does-not-exist.safetensors");
    let msg = format!("{:#}", load(&missing, &student()).unwrap_err());
    assert!(msg.contains(&missing.display().to_string()), "{msg}");

    refused(&f("text.safetensors"), b"this is not a safetensors file at all", &student(), &["safetensors"]);
    let whole = serialize(&good, None);
    refused(&f("truncated.safetensors"), &whole[..whole.len() - 7], &student(), &["truncated or corrupt"]);

    let without: Vec<RawTensor> = good.iter().filter(|t| t.0 != "dense.bias").cloned().collect();
    refused(&f("missing-tensor.safetensors"), &serialize(&without, None), &student(), &["dense.bias", "missing"]);

    let mut extra = good.clone();
    extra.push(("batch_norm.gamma".into(), vec![16], Dtype::F32, f32_bytes(&[1.0; 16])));
    refused(&f("extra-tensor.safetensors"), &serialize(&extra, None), &student(), &["batch_norm.gamma", "unexpected"]);

    // A dense kernel stored (out, in), as PyTorch would.
    let mut transposed = good.clone();
    transposed[4].1 = vec![10, 1568];
    refused(
        &f("shape.safetensors"),
        &serialize(&transposed, None),
        &student(),
        &["dense.kernel", "[10, 1568]", "[1568, 10]"],
    );

    let mut f64s = good.clone();
    f64s[1] = ("conv1.bias".into(), vec![16], Dtype::F64, vec![0; 16 * 8]);
    refused(&f("dtype.safetensors"), &serialize(&f64s, None), &student(), &["conv1.bias", "F64", "F32"]);

    for (value, label) in [(f32::NAN, "NaN"), (f32::INFINITY, "inf")] {
        let mut nonfinite = good.clone();
        let mut k = flat[student().param("conv2.kernel").unwrap().range()].to_vec();
        k[100] = value;
        nonfinite[2].3 = f32_bytes(&k);
        refused(
            &f("nonfinite.safetensors"),
            &serialize(&nonfinite, None),
            &student(),
            &["conv2.kernel", label, "index 100"],
        );
    }

    // A student file where a teacher is expected: from the metadata, or from the shapes alone.
    let student_file = f("student.safetensors");
    save(&student_file, &student(), &flat, "{}").unwrap();
    let msg = format!("{:#}", load(&student_file, &teacher()).unwrap_err());
    assert!(msg.contains("holds a student") && msg.contains("teacher") && msg.contains("student.safetensors"), "{msg}");
    refused(
        &f("student-no-metadata.safetensors"),
        &serialize(&good, None),
        &teacher(),
        &["conv1.kernel", "looks like a student"],
    );
    // And the other way round.
    let teacher_meta = HashMap::from([("architecture".to_string(), "teacher".to_string())]);
    refused(
        &f("teacher-label.safetensors"),
        &serialize(&good, Some(teacher_meta)),
        &student(),
        &["holds a teacher", "student"],
    );
}

#[test]
fn no_bytes_make_load_panic() {
    let dir = temp_dir();
    let mut rng = ChaCha8Rng::seed_from_u64(20_260_101);
    let valid = serialize(&raw_tensors(&student(), &random_student(6)), None);
    let check = |case: &str, bytes: &[u8]| {
        let outcome = std::panic::catch_unwind(|| load_bytes(bytes, &student()));
        match outcome {
            Ok(r) => r,
            Err(_) => panic!("load panicked on {case}"),
        }
    };
    // Every truncation of a valid file.
    for len in 0..valid.len() {
        assert!(check(&format!("the first {len} bytes"), &valid[..len]).is_err(), "a {len}-byte prefix was accepted");
    }
    // Random byte strings, some starting with a plausible header length.
    for case in 0..3000 {
        let len = rng.random_range(0..512);
        let mut bytes = vec![0u8; len];
        rng.fill_bytes(&mut bytes);
        if case % 2 == 0 && len >= 8 {
            let n = rng.random_range(0..len as u64);
            bytes[..8].copy_from_slice(&n.to_le_bytes());
        }
        assert!(check(&format!("random case {case}"), &bytes).is_err(), "random case {case} was accepted");
    }
    // Random corruptions of a valid file may load (a changed weight) but must never panic.
    for case in 0..500 {
        let mut bytes = valid.clone();
        for _ in 0..rng.random_range(1..8) {
            let at = rng.random_range(0..bytes.len().min(1024));
            bytes[at] = rng.random();
        }
        let _ = check(&format!("corruption {case}"), &bytes);
    }
    // And through the file path: a sample of the same inputs from disk.
    let path = dir.path().join("fuzz.safetensors");
    for len in (0..valid.len()).step_by(4099) {
        std::fs::write(&path, &valid[..len]).unwrap();
        assert!(load(&path, &student()).is_err());
    }
}

#[test]
fn evaluate_subcommand_reports_and_writes_logits() {
    let dir = temp_dir();
    let weights = dir.path().join("student.safetensors");
    save(&weights, &student(), &student().init_glorot(1), "{}").unwrap();
    let npy = dir.path().join("logits.npy");
    let out = Command::new(env!("CARGO_BIN_EXE_kd-wgpu"))
        .args(["--tune", "off"])
        .args(["evaluate", "--model", "student", "--test-limit", "64", "--offline", "--weights"])
        .arg(&weights)
        .arg("--logits-out")
        .arg(&npy)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "evaluate failed\nstdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("Test loss (cross-entropy): ") && stdout.contains("on 64 images"), "{stdout}");
    assert!(stdout.contains("| Ankle boot "), "the accuracy per class is printed: {stdout}");
    let line = stdout.lines().find(|l| l.starts_with("Test loss")).unwrap();
    let accuracy: f64 = line.split("accuracy: ").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert!((0.0..=1.0).contains(&accuracy), "{line}");

    let bytes = std::fs::read(&npy).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + hlen) % 64, 0, "header aligned to 64 bytes");
    assert!(std::str::from_utf8(&bytes[10..10 + hlen]).unwrap().contains("'shape': (64, 10)"));
    assert_eq!(bytes.len(), 10 + hlen + 64 * 10 * 4);
    let logits: Vec<f32> =
        bytes[10 + hlen..].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    assert!(logits.iter().all(|v| v.is_finite()) && logits.iter().any(|&v| v != 0.0));

    // A teacher file given as a student is refused, plainly and without a panic.
    let out = Command::new(env!("CARGO_BIN_EXE_kd-wgpu"))
        .args(["--tune", "off"])
        .args(["evaluate", "--model", "teacher", "--offline", "--weights"])
        .arg(&weights)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("holds a student") && !stderr.contains("panicked"), "{stderr}");
}

fn tiny_config() -> config::Config {
    config::Config {
        data: LoadOptions { offline: true, ..LoadOptions::default() },
        teacher_epochs: 0,
        student_epochs: 0,
        seed: 3,
        train_limit: Some(32),
        test_limit: Some(32),
        sync_points: 1,
        tune: kd_wgpu::gpu::TuneMode::Off,
        ..Default::default()
    }
}

#[test]
fn the_experiment_starts_from_and_saves_weight_files() {
    let dir = temp_dir();
    let (teacher_file, student_file) = (dir.path().join("t.safetensors"), dir.path().join("s.safetensors"));
    let (teacher_flat, student_flat) = (teacher().init_glorot(21), random_student(22));
    save(&teacher_file, &teacher(), &teacher_flat, "{}").unwrap();
    save(&student_file, &student(), &student_flat, "{}").unwrap();

    // Bad files and flags are refused before any work.
    let refused = |files: WeightFiles, expect: &[&str]| {
        let msg = format!("{:#}", run::run_with(&tiny_config(), &files).expect_err("must be refused"));
        for e in expect {
            assert!(msg.contains(e), "`{msg}` should mention `{e}`");
        }
    };
    refused(
        WeightFiles { student_init: Some(teacher_file.clone()), ..Default::default() },
        &["--student-init", "t.safetensors", "holds a teacher"],
    );
    refused(
        WeightFiles { teacher: Some(dir.path().join("none.safetensors")), ..Default::default() },
        &["--teacher", "none.safetensors"],
    );
    refused(
        WeightFiles {
            teacher: Some(teacher_file.clone()),
            teacher_init: Some(teacher_file.clone()),
            ..Default::default()
        },
        &["--teacher-init"],
    );
    let out = Command::new(env!("CARGO_BIN_EXE_kd-wgpu"))
        .args(["--tune", "off"])
        .args(["--offline", "--teacher-init"])
        .arg(&student_file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("--teacher-init") && stderr.contains("holds a student"),
        "{stderr}"
    );

    // Zero epochs: every saved model must be exactly its starting point, both students the same one.
    let saved = dir.path().join("saved");
    let files = WeightFiles {
        save_dir: Some(saved.clone()),
        teacher_init: Some(teacher_file.clone()),
        student_init: Some(student_file.clone()),
        ..Default::default()
    };
    let report = run::run_with(&tiny_config(), &files).unwrap();
    assert_eq!(bits(&load(&saved.join("teacher.safetensors"), &teacher()).unwrap()), bits(&teacher_flat));
    for name in ["student.safetensors", "scratch.safetensors"] {
        assert_eq!(bits(&load(&saved.join(name), &student()).unwrap()), bits(&student_flat), "{name}");
    }
    assert_eq!(report.distilled.test_accuracy, report.scratch.test_accuracy, "same weights, same predictions");
    let bytes = std::fs::read(saved.join("student.safetensors")).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let config = &header.metadata().as_ref().unwrap()["config"];
    assert!(config.contains("\"seed\":3") && config.contains("\"student_epochs\":0"), "{config}");

    // --teacher skips the teacher's training even with epochs asked for.
    let cfg = config::Config { teacher_epochs: 1, ..tiny_config() };
    let report =
        run::run_with(&cfg, &WeightFiles { teacher: Some(teacher_file.clone()), ..Default::default() }).unwrap();
    assert!(report.teacher.epochs.is_empty());
    assert!((0.0..=1.0).contains(&report.teacher.test_accuracy));
}

#[test]
fn evaluate_reads_the_network_from_the_file() {
    let dir = temp_dir();
    let narrow = Architecture::seed("student", [3, 5]).unwrap();
    let weights = dir.path().join("narrow.safetensors");
    save(&weights, &narrow, &random_weights(&narrow, 8), "{}").unwrap();
    assert_eq!(checkpoint::read_architecture(&weights).unwrap().layers(), narrow.layers());
    // Files from before the layer list (channels only) and from other tools (no metadata).
    let raw = raw_tensors(&narrow, &random_weights(&narrow, 9));
    let channels_only = HashMap::from([("conv1".to_string(), "3".to_string()), ("conv2".to_string(), "5".to_string())]);
    for (name, meta) in [("channels.safetensors", Some(channels_only)), ("bare.safetensors", None)] {
        let path = dir.path().join(name);
        std::fs::write(&path, serialize(&raw, meta)).unwrap();
        assert_eq!(checkpoint::read_architecture(&path).unwrap().layers(), narrow.layers(), "{name}");
    }

    let evaluate = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_kd-wgpu"))
            .args(["--tune", "off"])
            .args(["evaluate", "--test-limit", "40", "--offline", "--weights"])
            .arg(&weights)
            .args(extra)
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!text.contains("panicked"), "{text}");
        (out.status.success(), text)
    };
    let (ok, text) = evaluate(&[]);
    assert!(ok && text.contains("conv3-5 (3 and 5 channels)") && text.contains("on 40 images"), "{text}");
    // Asked for the default student, the file is refused naming both networks.
    let (ok, text) = evaluate(&["--model", "student"]);
    assert!(!ok && text.contains("holds a conv3-5 (3 and 5 channels)"), "{text}");
    assert!(text.contains("student (16 and 32 channels) is expected"), "{text}");
    let (ok, text) = evaluate(&["--model", "student", "--student-channels", "3,5"]);
    assert!(ok, "{text}");
    let (ok, text) = evaluate(&["--student-channels", "3"]);
    assert!(!ok && text.contains("C1,C2"), "{text}");
}
