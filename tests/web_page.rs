//! The web page (web/) in a real browser: headless Chromium with WebGPU on its CPU backend
//! (SwiftShader) runs an export of the students' plans, and what it computes is compared with
//! the same plans run natively (lavapipe, buffer kernel family).
//!
//! Needs node, Chromium (`/usr/bin/chromium`, or `$CHROMIUM`) and playwright-core
//! (`npm ci --prefix tests/browser`); `.ci/run` installs them. Without them the test says so
//! and passes, except under CI (`CI` set), where it fails.

use kd_wgpu::config::Config;
use kd_wgpu::data::LoadOptions;
use kd_wgpu::train::{run_epochs_together, Plan};
use kd_wgpu::web::{self, Export};
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Steps of both students compared one by one.
const STEPS: usize = 20;

fn config() -> Config {
    Config {
        data: LoadOptions { offline: true, ..LoadOptions::default() },
        teacher_epochs: 1,
        student_epochs: 1,
        seed: 5,
        // 22 steps an epoch: the compared steps lie in the first.
        train_limit: Some(704),
        test_limit: Some(160),
        teacher_channels: [24, 44],
        student_channels: [8, 12],
        ..Config::default()
    }
}

/// What is missing to run the browser, if anything.
fn missing_tools() -> Option<String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let playwright = Path::new(ROOT).join("tests/browser/node_modules/playwright-core");
    if Command::new("node").arg("--version").output().is_err() {
        Some("node is not installed".into())
    } else if !Path::new(&chromium).exists() {
        Some(format!("{chromium} does not exist (apt-get install chromium)"))
    } else if !playwright.exists() {
        Some(format!("{} is missing (npm ci --prefix tests/browser)", playwright.display()))
    } else {
        None
    }
}

/// Whether the browser test can run; without its tools it is skipped with a message, except
/// under CI, where it fails.
fn browser_ready() -> bool {
    let Some(missing) = missing_tools() else { return true };
    assert!(std::env::var_os("CI").is_none(), "the browser test cannot run under CI: {missing}");
    eprintln!("skipped: {missing}");
    false
}

/// Runs the page on the export in `dir` (`steps`: stop after that many training steps) and
/// returns what it published.
fn run_page(dir: &Path, steps: Option<usize>, screenshot: &Path) -> serde_json::Value {
    let out = dir.join("page.json");
    let mut node = Command::new("node");
    node.arg(Path::new(ROOT).join("tests/browser/run-page.mjs"))
        .args(["--web", &format!("{ROOT}/web"), "--export", dir.to_str().unwrap()])
        .args(["--out", out.to_str().unwrap(), "--screenshot", screenshot.to_str().unwrap()]);
    if let Some(n) = steps {
        node.args(["--steps", &n.to_string()]);
    }
    let output = node.output().expect("node runs");
    let log = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    println!("{log}");
    assert!(output.status.success(), "the page did not finish:\n{log}");
    serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().expect("an array").iter().map(|x| x.as_f64().expect("a number") as f32).collect()
}

/// Largest |a - b| / max(|a|, |b|, floor) over the two arrays.
fn max_relative(a: &[f32], b: &[f32], floor: f32) -> (f32, usize) {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .enumerate()
        .map(|(i, (x, y))| ((x - y).abs() / x.abs().max(y.abs()).max(floor), i))
        .fold((0.0, 0), |best, e| if e.0 > best.0 { e } else { best })
}

fn train_plans(export: &Export) -> [&Plan; 2] {
    [&export.plans[0], &export.plans[1]]
}

#[test]
fn the_page_computes_what_the_native_plans_compute() {
    if !browser_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));

    // 1. Twenty steps of both students, step by step, and the weights they reach.
    let export = web::export(&config(), None, dir.path()).expect("the export is written");
    let gpu = &export.gpu;
    let plans = train_plans(&export);
    for (plan, orders) in plans.iter().zip(&export.orders) {
        plan.begin_epoch(gpu, &orders[0]).unwrap();
    }
    let refs: Vec<_> = plans.iter().flat_map(|p| p.dispatches()).collect();
    for _ in 0..STEPS {
        gpu.submit(&refs).unwrap();
    }
    let page = run_page(dir.path(), Some(STEPS), &shots.join("web-page-20-steps.png"));
    assert_eq!(page["steps"], STEPS, "the page ran the steps asked for");
    for (i, student) in ["distilled", "scratch"].iter().enumerate() {
        let native_metrics = plans[i].read_metrics(gpu, STEPS).unwrap();
        let native_weights = export.students[i].read_flat(gpu).unwrap();
        let page_metrics = floats(&page["students"][student]["metrics"]);
        let page_weights = floats(&page["students"][student]["weights"]);
        let losses = |m: &[f32]| m.iter().step_by(2).copied().collect::<Vec<f32>>();
        let corrects = |m: &[f32]| m.iter().skip(1).step_by(2).copied().collect::<Vec<f32>>();
        let (loss_err, step) = max_relative(&losses(&page_metrics), &losses(&native_metrics), 1e-6);
        println!(
            "{student}: {STEPS} per-step loss sums, largest relative difference {loss_err:.2e} (step {}); \
             per-step correct counts {}",
            step + 1,
            if corrects(&page_metrics) == corrects(&native_metrics) { "equal" } else { "differ" }
        );
        assert!(
            loss_err <= 1e-4,
            "{student}: step {} loss sum {} on the page, {} natively",
            step + 1,
            losses(&page_metrics)[step],
            losses(&native_metrics)[step]
        );
        // Weights: each parameter tensor's largest difference relative to its largest weight.
        // (Element by element, weights that Adam moved from near zero differ by ~4e-7
        // absolute: its 1/(sqrt(v) + eps) amplifies the last bits of tiny gradients.)
        for (name, _, offset) in &export.file.parameters {
            let len = export.students[i].arch.param(name).unwrap().len();
            let (a, b) = (&page_weights[*offset..offset + len], &native_weights[*offset..offset + len]);
            let largest = b.iter().fold(0f32, |m, w| m.max(w.abs()));
            let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            let (elementwise, _) = max_relative(a, b, 1e-3);
            println!(
                "  {name}: {len} weights after {STEPS} steps, largest difference {diff:.2e} = {:.2e} of the \
                 largest weight (element by element, relative to max(|w|, 1e-3): {elementwise:.2e})",
                diff / largest
            );
            assert!(diff <= 1e-4 * largest, "{student} {name}: weights differ by {diff} (largest weight {largest})");
        }
    }

    // 2. The whole page: an epoch of both students and their evaluations, against the same
    //    plans run natively by the engine's own epoch loop.
    let dir = tempfile::tempdir().unwrap();
    let export = web::export(&config(), None, dir.path()).expect("the export is written");
    let gpu = &export.gpu;
    let orders: Vec<&[u32]> = export.orders.iter().map(|o| o[0].as_slice()).collect();
    let trained = run_epochs_together(gpu, &train_plans(&export), &orders, 3, |_, _| {}).unwrap();
    let shot = shots.join("web-page.png");
    let page = run_page(dir.path(), None, &shot);
    println!("screenshot of the finished page: {}", shot.display());
    let native_ms = 1000.0 * trained[0].seconds / trained[0].steps as f64;
    let page_ms = page["msPerStep"].as_f64().unwrap();
    println!("a step of both students: {page_ms:.1} ms on the page, {native_ms:.1} ms natively (the same plans)");
    for (i, student) in ["distilled", "scratch"].iter().enumerate() {
        let epoch = &page["epochs"][student][0];
        let (loss, accuracy) = (epoch["loss"].as_f64().unwrap(), epoch["accuracy"].as_f64().unwrap());
        assert!(
            (loss - trained[i].loss).abs() <= 1e-4 * trained[i].loss.abs(),
            "{student}: epoch loss {loss} vs {}",
            trained[i].loss
        );
        assert_eq!(accuracy, trained[i].accuracy, "{student}: the same training accuracy");
        let eval = &export.plans[2 + i];
        let identity: Vec<u32> = (0..eval.samples as u32).collect();
        let native = eval.run_epoch(gpu, &identity, 1, |_, _, _| {}).unwrap();
        let test = &page["test"][i];
        assert_eq!(test["student"], *student);
        let n = eval.samples as f64;
        let (page_acc, page_loss) = (test["accuracy"].as_f64().unwrap(), test["loss"].as_f64().unwrap());
        println!(
            "{student}: test accuracy {page_acc:.4} on the page, {:.4} natively; loss {page_loss:.5} / {:.5}",
            native.accuracy, native.loss
        );
        assert!(
            (page_acc - native.accuracy).abs() * n <= 1.0 + 1e-9,
            "{student}: test accuracy {page_acc} vs {}",
            native.accuracy
        );
        assert!(
            (page_loss - native.loss).abs() <= 1e-4 * native.loss,
            "{student}: test loss {page_loss} vs {}",
            native.loss
        );
    }
    let diff = page["difference"].as_f64().unwrap();
    let accuracies: Vec<f64> = (0..2).map(|i| page["test"][i]["accuracy"].as_f64().unwrap()).collect();
    assert!((diff - (accuracies[0] - accuracies[1])).abs() < 1e-12, "the closing difference");
}

/// Runs the page where it cannot work (`extra` flags for the driver) and returns its message.
fn page_error(export: &Path, extra: &[&str]) -> String {
    let out = tempfile::NamedTempFile::new().unwrap();
    let output = Command::new("node")
        .arg(Path::new(ROOT).join("tests/browser/run-page.mjs"))
        .args(["--web", &format!("{ROOT}/web"), "--export", export.to_str().unwrap()])
        .args(["--out", out.path().to_str().unwrap(), "--timeout", "120"])
        .args(extra)
        .output()
        .expect("node runs");
    assert!(!output.status.success(), "the page must fail: {}", String::from_utf8_lossy(&output.stdout));
    let result: serde_json::Value = serde_json::from_slice(&std::fs::read(out.path()).unwrap()).unwrap();
    result["error"].as_str().expect("the page published its message").to_string()
}

#[test]
fn the_page_says_what_is_missing() {
    if !browser_ready() {
        return;
    }
    let nowhere = tempfile::tempdir().unwrap();
    let message = page_error(nowhere.path(), &[]);
    assert!(
        message.contains("export.json") && message.contains("HTTP 404") && message.contains("export-web"),
        "{message}"
    );
    // A valid export in a browser whose WebGPU offers no adapter.
    let dir = tempfile::tempdir().unwrap();
    web::export(&Config { student_epochs: 1, ..config() }, None, dir.path()).expect("the export is written");
    let message = page_error(dir.path(), &["--no-webgpu"]);
    assert!(message.contains("WebGPU") && message.contains("no adapter"), "{message}");
}
