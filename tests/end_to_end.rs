//! The whole program on a slice of the real Fashion-MNIST (CI installs `dataset-fashion-mnist`),
//! and the refusals of bad input.

use kd_wgpu::checkpoint;
use kd_wgpu::config::{Config, DistillTeacher, WeightFiles};
use kd_wgpu::data::{self, LoadOptions, NUM_CLASSES};
use kd_wgpu::gpu::{BackendChoice, Gpu, MatmulVariant, TuneMode};
use kd_wgpu::model::reference::{self, Batch, Run};
use kd_wgpu::model::Architecture;
use kd_wgpu::ops::loss::{self as loss_ops, Distill, Loss};
use kd_wgpu::results::Report;
use kd_wgpu::run;
use std::process::Command;

/// The seed's settings on a slice, with a smaller teacher (widths that are multiples of no
/// tile size) so that the run stays short.
fn config() -> Config {
    Config {
        data: LoadOptions { offline: true, ..LoadOptions::default() },
        teacher_epochs: 1,
        seed: 7,
        train_limit: Some(640),
        test_limit: Some(320),
        sync_points: 3,
        teacher_channels: [24, 44],
        student_channels: [8, 12],
        // Tuning never changes a bit (tests/tuning.rs); off, the runs compile fewer kernels.
        tune: TuneMode::Off,
        ..Config::default()
    }
}

fn figures(r: &Report) -> Vec<f64> {
    let mut v = vec![];
    for run in [&r.teacher, &r.distilled, &r.scratch] {
        for e in &run.epochs {
            v.extend([e.loss, e.accuracy]);
        }
        v.extend([run.test_loss, run.test_accuracy, run.test_cross_entropy]);
    }
    v
}

#[test]
fn three_models_learn_and_the_same_seed_gives_the_same_figures() {
    // Two runs of the students exercise the paired statistics; a 2 x 1 sweep the grid.
    let cfg = Config { runs: 2, sweep_alpha: vec![0.5, 1.0], sweep_temperature: vec![4.0], ..config() };
    let first = run::run(&cfg).expect("experiment runs");
    print!("{}", first.render());
    // Chance is 0.10; one teacher epoch and three student epochs on 640 images get far past it.
    let students = first.runs.iter().flat_map(|p| [&p.distilled, &p.scratch]);
    for run in std::iter::once(&first.teacher).chain(students) {
        assert!(run.test_accuracy > 0.4, "{} test accuracy {:.3} is too close to chance", run.name, run.test_accuracy);
        assert!(run.test_cross_entropy < 2.0, "{} test loss {:.3}", run.name, run.test_cross_entropy);
    }
    assert_eq!(first.teacher.epochs.len(), 1);
    assert_eq!(first.scratch.epochs.len(), 3);
    assert_eq!(first.runs.len(), 2);
    let st = first.statistics.as_ref().expect("statistics over two runs");
    let diffs: Vec<f64> = first.runs.iter().map(|p| p.distilled.test_accuracy - p.scratch.test_accuracy).collect();
    assert!((st.difference_mean - (diffs[0] + diffs[1]) / 2.0).abs() < 1e-12);
    assert!(st.difference_ci95.0 <= st.difference_mean && st.difference_mean <= st.difference_ci95.1);
    let grid: Vec<(f32, f32)> = first.sweep.iter().map(|p| (p.alpha, p.temperature)).collect();
    assert_eq!(grid, [(0.5, 4.0), (1.0, 4.0)]);
    // alpha = 1 is plain cross-entropy: from the same weights and order as the first run's
    // distilled student, it must learn like a scratch student (well past chance).
    assert!(first.sweep.iter().all(|p| p.result.test_accuracy > 0.4));
    assert!(first.render().contains("Sweep: test accuracy"));
    // Per class: counted from the logits read back once, they agree with the device's count.
    for run in [&first.teacher, &first.distilled, &first.scratch] {
        let n = cfg.test_limit.unwrap() as u64;
        assert_eq!(run.classes.samples(), n, "{}: every test image in the confusion matrix", run.name);
        assert_eq!(run.classes.correct() as f64 / n as f64, run.test_accuracy, "{}: the same correct count", run.name);
    }
    assert_eq!(st.per_class.len(), 10);
    assert!(first.render().contains("Test accuracy per class") && first.render().contains("Ankle boot"));
    let classes_svg = kd_wgpu::results::plot::classes_svg(&first).expect("the plot per class draws");
    assert!(classes_svg.contains("Pullover") && classes_svg.matches("<polyline").count() >= 3);
    let svg = kd_wgpu::results::plot::curves_svg(&first).expect("the plot draws");
    assert!(svg.starts_with("<svg") && svg.contains("teacher") && svg.contains("scratch"));
    assert!(svg.matches("<polyline").count() >= 6, "a loss and an accuracy line per model");
    let sweep_svg = kd_wgpu::results::plot::sweep_svg(&first).unwrap().expect("a sweep plot");
    assert!(sweep_svg.contains("alpha 0.5") && sweep_svg.contains("alpha 1"));
    let second = run::run(&cfg).expect("experiment runs again");
    assert_eq!(figures(&first), figures(&second), "same seed, same device: identical figures");
}

/// The seed's own Distiller (Keras 3 trains the teacher too): each distilled student trains
/// its own copy of the teacher, which is saved, evaluated, and is what the student's combined
/// test loss is computed against.
#[test]
fn the_seeds_distiller_trains_each_students_own_copy_of_the_teacher() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        distill_teacher: DistillTeacher::Trainable,
        student_epochs: 1,
        runs: 2,
        sweep_alpha: vec![0.5],
        ..config()
    };
    let files = WeightFiles { save_dir: Some(dir.path().to_path_buf()), ..Default::default() };
    let report = run::run_with(&cfg, &files).expect("experiment runs");
    print!("{}", report.render());
    assert!(report.render().contains("teacher after"), "the report shows the teacher after distillation");
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.contains(r#""distill_teacher":"Trainable""#), "the metrics name the mode");
    assert!(report.runs.iter().all(|p| p.teacher_after_distillation.is_some()));
    assert!(report.sweep.iter().all(|p| p.teacher_after_distillation.is_some()));

    let teacher = cfg.teacher().unwrap();
    let load = |name: &str| checkpoint::load(&dir.path().join(name), &teacher).unwrap();
    let before = load("teacher.safetensors");
    let (after, after_run2) =
        (load("teacher-after-distillation.safetensors"), load("teacher-after-distillation-run2.safetensors"));
    assert_ne!(before, after, "the teacher learned during distillation");
    assert_ne!(after, after_run2, "each run's student trained its own copy of the teacher");

    // The distilled student's combined test loss and the teacher's test results, recomputed on
    // the CPU from the saved files.
    let student = cfg.student().unwrap();
    let student_flat = checkpoint::load(&dir.path().join("student.safetensors"), &student).unwrap();
    let mut ds = data::load(&cfg.data).unwrap();
    ds.test.truncate(cfg.test_limit.unwrap());
    let n = ds.test.len();
    let images: Vec<f32> = ds.test.images.iter().map(|&b| b as f32 / 255.0).collect();
    let labels: Vec<u32> = ds.test.labels.iter().map(|&l| l as u32).collect();
    let logits = |arch: &Architecture, flat: &[f32]| {
        let batch = Batch { images: &images, labels: &labels, teacher_logits: None, rows: n };
        reference::forward(arch, flat, &batch, Run::EVALUATE).logits().to_vec()
    };
    let teacher_logits = logits(&teacher, &after);
    let batch = Batch { images: &images, labels: &labels, teacher_logits: Some(&teacher_logits), rows: n };
    let (combined, _) =
        reference::loss_gradient(&logits(&student, &student_flat), &batch, Loss::Distillation(Distill::kl(0.1, 10.0)));
    assert!(
        (report.distilled.test_loss - combined).abs() < 1e-4 * combined,
        "{} against {combined}",
        report.distilled.test_loss
    );
    let rows = loss_ops::reference::cross_entropy(&teacher_logits, &labels, NUM_CLASSES, n);
    let accuracy = rows.correct.iter().filter(|&&c| c).count() as f64 / n as f64;
    let after_result = report.teacher_after_distillation.as_ref().unwrap();
    assert!((after_result.test_accuracy - accuracy).abs() < 1e-9, "{} against {accuracy}", after_result.test_accuracy);
    assert!((after_result.test_loss - loss_ops::reference::batch_loss(&rows, n)).abs() < 1e-4);
}

fn refused(cfg: Config, expect: &str) {
    let err = run::run(&cfg).expect_err("bad input must be refused");
    let msg = format!("{err:#}");
    assert!(msg.contains(expect), "error `{msg}` should mention `{expect}`");
}

#[test]
fn out_of_range_settings_are_refused_before_any_work() {
    refused(Config { alpha: 1.5, ..config() }, "--alpha");
    refused(Config { alpha: -0.1, ..config() }, "--alpha");
    refused(Config { temperature: 0.0, ..config() }, "--temperature");
    refused(Config { temperature: f32::NAN, ..config() }, "--temperature");
    refused(Config { batch_size: 0, ..config() }, "--batch-size");
    refused(Config { learning_rate: -1.0, ..config() }, "--learning-rate");
    refused(Config { train_limit: Some(0), ..config() }, "--train-limit");
    refused(Config { runs: 0, ..config() }, "--runs");
    refused(Config { sweep_alpha: vec![0.5, 1.5], ..config() }, "--sweep-alpha 1.5");
    refused(Config { sweep_temperature: vec![0.0], ..config() }, "--sweep-temperature");
    refused(Config { feature_table_gib: -1.0, ..config() }, "--feature-table-gib");
    refused(Config { feature_table_gib: f64::INFINITY, ..config() }, "--feature-table-gib");
}

#[test]
fn a_batch_beyond_the_binding_limit_is_refused_with_the_limit() {
    // The teacher's im2col matrix alone is 451 KiB a sample.
    refused(Config { batch_size: 1_000_000, ..config() }, "--batch-size");
}

#[test]
fn an_explicit_data_dir_without_the_files_is_an_error_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        data: LoadOptions { data_dir: Some(dir.path().to_path_buf()), offline: true, ..LoadOptions::default() },
        ..config()
    };
    refused(cfg, "train-images-idx3-ubyte");
}

#[test]
fn a_backend_without_an_adapter_names_the_backend_and_the_fix() {
    #[cfg(not(target_os = "macos"))]
    {
        let err = Gpu::new(BackendChoice::Metal, MatmulVariant::Auto).err().expect("no Metal adapter here");
        let msg = format!("{err:#}");
        assert!(msg.contains("metal") && msg.contains("Fix"), "{msg}");
    }
}

#[test]
fn the_command_line_refuses_bad_flags_with_a_message_and_no_panic() {
    let exe = env!("CARGO_BIN_EXE_kd-wgpu");
    for (args, expect) in [
        (vec!["--alpha", "2"], "--alpha"),
        (vec!["--temperature", "-1"], "--temperature"),
        (vec!["--batch-size", "0"], "--batch-size"),
        (vec!["--backend", "vulkan", "--batch-size", "abc"], "invalid value"),
    ] {
        let out = Command::new(exe).args(["--tune", "off"]).args(&args).arg("--offline").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must fail");
        assert!(stderr.contains(expect), "{args:?}: stderr `{stderr}` should mention `{expect}`");
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    }
    let out = Command::new(exe).args(["--tune", "off"]).arg("--list-adapters").output().unwrap();
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).trim().is_empty(), "at least one adapter is listed");
}

/// keras.distillation's losses, few labels and moved images: settings that cannot work are
/// refused, each with a message naming it, before any work (the labelled subset against the
/// training images right after the data is read, before any training).
#[test]
fn bad_distillation_settings_are_refused_before_any_work() {
    let exe = env!("CARGO_BIN_EXE_kd-wgpu");
    for (args, expect) in [
        (vec!["--distill", "feature:conv2d_1:conv2d_9:project"], "the student has no layer `conv2d_9`"),
        (vec!["--distill", "feature:dense_7:conv2d_1"], "the teacher has no layer `dense_7`"),
        (vec!["--distill", "feature:conv2d_1:conv2d_1"], "add `:project`"),
        (vec!["--distill", "feature:max_pooling2d:conv2d_1:project"], "same height and width"),
        (vec!["--distill", "feature:conv2d:conv2d_1:project"], "`conv2d` cannot be distilled"),
        (vec!["--distill", "feature:x"], "unknown distillation loss `feature:x`"),
        (vec!["--distill", "logits", "--distill", "logits"], "given twice"),
        (vec!["--distill", "logits", "--distill", "logits:mse", "--distill-weights", "1"], "--distill-weights gives 1"),
        (vec!["--distill-weights", "-1"], "--distill-weights -1"),
        (vec!["--distill", "feature:conv2d_1:conv2d_1:project", "--distill-teacher", "trainable"], "frozen teacher"),
        (vec!["--labelled", "9"], "--labelled 9 is below the 10 classes"),
        (vec!["--labelled", "500", "--train-limit", "100"], "--labelled 500 is more than the 100 training images"),
        (vec!["--student-augment", "2"], "--student-augment needs a teacher that sees the moved images"),
        (vec!["--shard", "3/2", "--teacher", "t.safetensors"], "--shard"),
    ] {
        let out = Command::new(exe).args(["--tune", "off"]).args(&args).arg("--offline").output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success(), "{args:?} must fail");
        assert!(stderr.contains(expect), "{args:?}: stderr `{stderr}` should mention `{expect}`");
        assert!(!stdout.contains("Adapter:") && !stderr.contains("panicked"), "{args:?} started work: {stdout}");
    }
    // Only the data says whether each class has its share: the first 30 training images hold
    // a single Bag, and 30 labelled images need three of each class.
    let args = ["--train-limit", "30", "--labelled", "30", "--teacher-epochs", "1", "--test-limit", "10"];
    let out = Command::new(exe).args(["--tune", "off"]).args(args).arg("--offline").output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success() && stderr.contains("--labelled 30 needs 3 images of class"), "{stderr}");
    assert!(!stdout.contains("Epoch"), "a labelled subset the data cannot give trained: {stdout}");
}

/// A run must not train for hours and only then find that it cannot write its results.
#[test]
fn unwritable_outputs_are_refused_before_any_work() {
    let exe = env!("CARGO_BIN_EXE_kd-wgpu");
    let dir = tempfile::tempdir().unwrap();
    let a_file = dir.path().join("a-file");
    std::fs::write(&a_file, "not a directory").unwrap();
    let (dir_s, under_file) = (dir.path().display().to_string(), a_file.join("runs").display().to_string());
    for (args, expect) in [
        (vec!["--metrics-out", "/proc/x.json"], "--metrics-out /proc/x.json: cannot write"),
        (vec!["--plot", "/nonexistent-dir/curves.svg"], "--plot /nonexistent-dir/curves.svg"),
        (vec!["--metrics-out", &dir_s], "is a directory"),
        (vec!["--save-dir", &under_file], "--save-dir"),
        (vec!["evaluate", "--weights", "missing.safetensors", "--logits-out", "/proc/l.npy"], "--logits-out"),
        (vec!["bench", "--json", "/proc/b.json"], "--json /proc/b.json"),
    ] {
        let out = Command::new(exe).args(["--tune", "off"]).args(&args).arg("--offline").output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success(), "{args:?} must fail");
        assert!(stderr.contains(expect), "{args:?}: stderr `{stderr}` should mention `{expect}`");
        assert!(!stdout.contains("Adapter:") && !stderr.contains("panicked"), "{args:?} started work: {stdout}");
    }
}

/// A student read from a Keras model file (written by Keras 3 with `model.to_json()`: ReLU as
/// an option and as a layer, Dropout, a hidden Dense) trains, is saved with its layer list,
/// and `evaluate` rebuilds it from the file and gives the report's test figures.
#[test]
fn a_network_from_a_keras_file_trains_saves_and_evaluates() {
    let exe = env!("CARGO_BIN_EXE_kd-wgpu");
    let dir = tempfile::tempdir().unwrap();
    let keras_file = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/keras-small.json");
    let limits = ["--offline", "--train-limit", "960", "--test-limit", "160"];
    let (stdout, report) = train_keras_student(dir.path(), keras_file, &limits, "3");
    assert!(stdout.contains("dropout_1 (Dropout)"), "the summary lists Keras's layers:\n{stdout}");
    let layers = &report["config"]["student_layers"];
    assert_eq!(layers.as_array().map(Vec::len), Some(11), "{layers}");
    let scratch_accuracy = report["scratch"]["test_accuracy"].as_f64().unwrap();
    assert!(scratch_accuracy > 0.4, "the scratch student learned: {scratch_accuracy}");

    evaluate_gives(&dir.path().join("scratch.safetensors"), &limits, scratch_accuracy);

    // A file with a layer the engine does not have is refused with its name, before any work.
    let bad = dir.path().join("bad.json");
    let text = std::fs::read_to_string(keras_file).unwrap().replace("\"Dropout\"", "\"GaussianNoise\"");
    std::fs::write(&bad, text).unwrap();
    let out =
        Command::new(exe).args(["--tune", "off"]).arg("--student-layers").arg(&bad).args(limits).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("layer 6 `dropout` (GaussianNoise): GaussianNoise is not a supported layer"), "{stderr}");
}

/// keras.io's "Simple MNIST convnet" as Keras 3 writes it (`model.to_json()`: "valid" padding,
/// 2x2 pools at stride 2, Dropout, a softmax on the last Dense) trains as a student, with
/// Keras's shapes and parameter count; its weights file keeps the softmax in its Keras model,
/// and `evaluate` reads it back to the report's figures. A softmax before the last layer and a
/// pool larger than its input are refused by name before any work.
#[test]
fn keras_ios_mnist_convnet_trains_as_a_student() {
    let exe = env!("CARGO_BIN_EXE_kd-wgpu");
    let dir = tempfile::tempdir().unwrap();
    let keras_file = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/keras-mnist-convnet.json");
    let limits = ["--offline", "--train-limit", "640", "--test-limit", "160"];
    let (stdout, report) = train_keras_student(dir.path(), keras_file, &limits, "1");
    for line in [
        "conv2d (Conv2D)                 (None, 26, 26, 32)                   320",
        "max_pooling2d (MaxPooling2D)    (None, 13, 13, 32)                     0",
        "conv2d_1 (Conv2D)               (None, 11, 11, 64)                18,496",
        "max_pooling2d_1 (MaxPooling2D)  (None, 5, 5, 64)                       0",
        "flatten (Flatten)               (None, 1600)                           0",
        "dense (Dense)                   (None, 10)                        16,010",
        "activation (Activation)         (None, 10)                             0",
        "Total params: 34,826",
        "The last softmax is applied by the losses",
    ] {
        assert!(stdout.contains(line), "the summary lacks `{line}`:\n{stdout}");
    }
    let scratch_accuracy = report["scratch"]["test_accuracy"].as_f64().unwrap();
    assert!(scratch_accuracy > 0.3, "the scratch student learned: {scratch_accuracy}");

    // The weights file's Keras model keeps the softmax and the padding.
    let weights = dir.path().join("scratch.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let keras_model = header["__metadata__"]["keras_model"].as_str().unwrap();
    assert!(keras_model.contains(r#""activation":"softmax""#), "{keras_model}");
    assert!(keras_model.contains(r#""padding":"valid""#), "{keras_model}");
    evaluate_gives(&weights, &limits, scratch_accuracy);

    let refused = |from: &str, to: &str, why: &str| {
        let bad = dir.path().join("bad.json");
        let text = std::fs::read_to_string(keras_file).unwrap();
        assert!(text.contains(from), "{from}");
        std::fs::write(&bad, text.replacen(from, to, 1)).unwrap();
        let out =
            Command::new(exe).args(["--tune", "off"]).arg("--student-layers").arg(&bad).args(limits).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains(why), "{stderr}");
        assert!(!stderr.contains("Epoch"), "refused before any work: {stderr}");
    };
    // A softmax on the first convolution, before the last layer.
    refused(
        r#""activation": "relu""#,
        r#""activation": "softmax""#,
        "layer 2 `conv2d` (Conv2D): a softmax can only come right after the Dense(10) logits",
    );
    // The second pool, 12x12 "valid" on an 11x11 input.
    refused(
        r#""name": "max_pooling2d_1", "trainable": true, "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": null}, "pool_size": [2, 2]"#,
        r#""name": "max_pooling2d_1", "trainable": true, "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": null}, "pool_size": [12, 12]"#,
        "layer 5 `max_pooling2d_1` (MaxPooling2D): MaxPooling2D(12, strides=2, padding=\"valid\"): its 12x12 pool \
         window with padding \"valid\" is larger than its 11x11x64 input: the output would be 0x0",
    );
}

/// Trains a small teacher and the students of `keras_file` for `epochs` on `limits`, saving
/// into `dir`: the program's output and its metrics.
fn train_keras_student(
    dir: &std::path::Path,
    keras_file: &str,
    limits: &[&str],
    epochs: &str,
) -> (String, serde_json::Value) {
    let metrics = dir.join("metrics.json");
    let out = Command::new(env!("CARGO_BIN_EXE_kd-wgpu"))
        .args(["--tune", "off"])
        .args(["--student-layers", keras_file, "--teacher-channels", "8,12", "--teacher-epochs", "1"])
        .args(["--student-epochs", epochs, "--save-dir"])
        .arg(dir)
        .arg("--metrics-out")
        .arg(&metrics)
        .args(limits)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    (stdout, serde_json::from_slice(&std::fs::read(&metrics).unwrap()).unwrap())
}

/// `kd-wgpu evaluate` of `weights` on `limits` (160 test images) gives `accuracy`.
fn evaluate_gives(weights: &std::path::Path, limits: &[&str], accuracy: f64) {
    let out = Command::new(env!("CARGO_BIN_EXE_kd-wgpu"))
        .args(["--tune", "off", "evaluate", "--weights"])
        .arg(weights)
        .args(limits)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let expected = format!("accuracy: {accuracy:.4} on 160 images");
    assert!(stdout.contains(&expected), "evaluate gives the report's accuracy ({expected}):\n{stdout}");
}

/// The program on a small slice (one teacher epoch, small networks, 160 test images) with
/// `args`, saving into `save`: whether it succeeded, its output, the distilled student's file
/// (empty if none was written).
fn run_small(save: &std::path::Path, args: &[&str]) -> (bool, String, Vec<u8>) {
    let out = Command::new(env!("CARGO_BIN_EXE_kd-wgpu"))
        .args(["--tune", "off", "--offline", "--test-limit", "160", "--teacher-epochs", "1"])
        .args(["--teacher-channels", "8,12", "--student-channels", "3,5"])
        .args(args)
        .arg("--save-dir")
        .arg(save)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text, std::fs::read(save.join("student.safetensors")).unwrap_or_default())
}

/// `--logits-cache`: the first run keeps the frozen teacher's tables, the next reads them and
/// trains the same distilled student to the byte; a corrupt file costs a warning and is
/// computed and written again; another teacher gets a file of its own; a directory that
/// cannot be made is refused before any work.
#[test]
fn the_teachers_logits_are_kept_and_read_back_to_the_same_bits() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let run = |name: &str, cache: &std::path::Path, extra: &[&str]| {
        let cache = cache.to_str().unwrap();
        let args = [&["--train-limit", "320", "--student-epochs", "1", "--logits-cache", cache][..], extra].concat();
        run_small(&dir.path().join(name), &args)
    };
    let files = || -> Vec<std::path::PathBuf> {
        let mut f: Vec<_> = std::fs::read_dir(&cache).unwrap().map(|e| e.unwrap().path()).collect();
        f.sort();
        f
    };
    let (ok, first, student) = run("first", &cache, &[]);
    assert!(ok && first.contains("Teacher logits for"), "{first}");
    let kept = files();
    assert_eq!(kept.len(), 1, "one file for one teacher: {kept:?}");

    let (ok, second, again) = run("second", &cache, &[]);
    assert!(ok && second.contains("Teacher logits: read from") && !second.contains("Teacher logits for"), "{second}");
    assert!(!student.is_empty() && again == student, "the distilled student differs with the tables read back");

    std::fs::write(&kept[0], b"not a safetensors file").unwrap();
    let (ok, third, again) = run("third", &cache, &[]);
    assert!(ok && third.contains("warning: ignoring the teacher's logits cache"), "{third}");
    assert!(third.contains("Teacher logits for") && again == student, "{third}");
    let (_, fourth, _) = run("fourth", &cache, &[]);
    assert!(fourth.contains("Teacher logits: read from"), "the corrupt file was written again:\n{fourth}");

    let (ok, other, _) = run("other", &cache, &["--seed", "2"]);
    assert!(ok && other.contains("Teacher logits for"), "{other}");
    assert_eq!(files().len(), 2, "another teacher, another file");

    let blocker = dir.path().join("a file");
    std::fs::write(&blocker, b"").unwrap();
    let (ok, refused, _) = run("refused", &blocker.join("cache"), &[]);
    assert!(!ok && refused.contains("--logits-cache") && !refused.contains("Epoch 1/"), "{refused}");
}

/// A feature term's teacher outputs kept in memory (`--feature-table-gib`, on by default at
/// these sizes) train the same students to the byte as the teacher run at every step
/// (`--feature-table-gib 0`), with all labels and with few; the batch leaves a short last one.
#[test]
fn a_feature_table_trains_the_same_students_as_the_teacher_run_at_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, extra: &[&str]| {
        let feature = ["--train-limit", "330", "--batch-size", "24", "--student-epochs", "2", "--distill", "logits"];
        let args = [&feature[..], &["--distill", "feature:conv2d_1:conv2d_1:project"], extra].concat();
        let (ok, text, student) = run_small(&dir.path().join(name), &args);
        assert!(ok && !student.is_empty(), "{name}:\n{text}");
        // The per-epoch lines (loss, accuracy, each term) without their times.
        let epochs: Vec<String> = text
            .lines()
            .filter(|l| l.contains("terms (unweighted)") || l.contains("distilled student: evaluation"))
            .map(str::to_string)
            .collect();
        (text, student, epochs)
    };
    for labelled in [&[][..], &["--labelled", "40"]] {
        let (kept, student, epochs) = run("kept", labelled);
        assert!(kept.contains("kept in memory"), "{kept}");
        let (each, again, epochs_again) = run("each", &[labelled, &["--feature-table-gib", "0"]].concat());
        assert!(each.contains("the teacher runs at every step") && !each.contains("kept in memory"), "{each}");
        assert!(student == again, "{labelled:?}: the distilled student differs with the teacher run at every step");
        assert!(!epochs.is_empty() && epochs == epochs_again, "{epochs:?}\n{epochs_again:?}");
    }
}

/// `--scratch-from`: scratch students taken from an earlier experiment pair with the distilled
/// students as the ones trained again would (the same metrics, figure for figure, the distilled
/// student the same bytes), with all labels and with few; a file whose scratch students are
/// not this run's is refused, naming what differs.
#[test]
fn scratch_students_from_an_earlier_experiment_are_the_ones_trained_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let (ok, text, _) = run_small(&dir.path().join("teacher"), &["--train-limit", "320", "--student-epochs", "1"]);
    assert!(ok, "{text}");
    let teacher = path("teacher/teacher.safetensors");
    let run = |name: &str, extra: &[&str]| {
        let metrics = path(&format!("{name}.json"));
        let common = [
            "--train-limit",
            "320",
            "--student-epochs",
            "1",
            "--runs",
            "2",
            "--teacher",
            &teacher,
            "--metrics-out",
            &metrics,
        ];
        let (ok, text, student) = run_small(&dir.path().join(name), &[&common[..], extra].concat());
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&metrics).unwrap_or_default()).unwrap_or(serde_json::Value::Null);
        (ok, text, student, json)
    };
    // The runs' and statistics' figures, without times.
    let results = |mut v: serde_json::Value| {
        fn strip(v: &mut serde_json::Value) {
            match v {
                serde_json::Value::Object(map) => {
                    map.retain(|k, _| !k.contains("second"));
                    map.values_mut().for_each(strip);
                }
                serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
                _ => {}
            }
        }
        strip(&mut v);
        (v["runs"].clone(), v["statistics"].clone())
    };
    for labelled in [&[][..], &["--labelled", "40"]] {
        let (ok, text, _, first) = run("first", &[labelled, &["--alpha", "0.1"]].concat());
        assert!(ok, "{text}");
        let earlier = path("first.json");
        let other = [labelled, &["--alpha", "0.6", "--temperature", "2"]].concat();
        let (ok, text, student, taken) = run("taken", &[&other[..], &["--scratch-from", &earlier]].concat());
        assert!(ok && text.contains("scratch student: from"), "{text}");
        assert!(!dir.path().join("taken/scratch.safetensors").exists(), "a scratch student was trained");
        let (ok, text, student_again, trained) = run("trained", &other);
        assert!(ok, "{text}");
        // The same weights (the files' metadata record each run's settings, --scratch-from among them).
        let weights = |name: &str| {
            let file = dir.path().join(name).join("student.safetensors");
            checkpoint::load(&file, &checkpoint::read_architecture(&file).unwrap()).unwrap()
        };
        assert!(!student.is_empty() && !student_again.is_empty());
        assert!(weights("taken") == weights("trained"), "{labelled:?}: the distilled student differs");
        assert_eq!(results(taken.clone()), results(trained), "{labelled:?}");
        assert_eq!(taken["config"]["scratch_from"], earlier.as_str());
        assert_eq!(first["runs"][1]["scratch"], taken["runs"][1]["scratch"]);
    }

    // Files whose scratch students are not this run's, refused before any training.
    let first = std::fs::read_to_string(path("first.json")).unwrap();
    let edited = |name: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let mut v: serde_json::Value = serde_json::from_str(&first).unwrap();
        edit(&mut v);
        std::fs::write(path(name), v.to_string()).unwrap();
        path(name)
    };
    let device = edited("device.json", &|v| v["adapter"] = "another GPU".into());
    let seeds = edited("seeds.json", &|v| v["runs"][1]["seed"] = 5.into());
    std::fs::write(path("cut.json"), &first[..first.len() / 2]).unwrap();
    let few = ["--labelled", "40", "--runs", "2", "--student-epochs", "1"];
    for (file, extra, expect) in [
        (path("first.json"), [&few[..], &["--seed", "2"]].concat(), "--seed: 1 there, 2 here"),
        (path("first.json"), vec!["--labelled", "40", "--runs", "2"], "--student-epochs: 1 there, 3 here"),
        (path("first.json"), vec!["--runs", "2", "--student-epochs", "1"], "--labelled: 40 there, none here"),
        (
            path("first.json"),
            vec!["--labelled", "40", "--runs", "3", "--student-epochs", "1"],
            "it holds 2 run(s), this run needs 3",
        ),
        (device, few.to_vec(), "its students were trained on another GPU, not on this device"),
        (seeds, few.to_vec(), "its run 2 has seed 5, this one 1001"),
        (path("cut.json"), few.to_vec(), "cut.json is not valid JSON (truncated or corrupt?)"),
    ] {
        let given = ["--train-limit", "320", "--teacher", &teacher, "--scratch-from", &file];
        let args = [&given[..], &extra].concat();
        let (ok, text, _) = run_small(&dir.path().join("refused"), &args);
        assert!(!ok && text.contains(expect), "`{expect}`:\n{text}");
        assert!(!text.contains("panicked") && !text.contains("Epoch 1/"), "{text}");
    }
}
