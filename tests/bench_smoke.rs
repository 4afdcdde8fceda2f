//! `kd-wgpu bench` runs end to end and writes its JSON (a smoke test: no timing assertions),
//! and tunes the kernels once: a second run takes every choice from the cache.

use std::path::Path;
use std::process::{Command, Output};

/// The bench on narrower models than the seed's (quick, and it takes the channel flags), with
/// the tuning cache under `cache` (XDG_CACHE_HOME: the platform's cache directory on Linux).
fn bench(cache: &Path, json: &Path) -> Output {
    bench_with(cache, json, &[])
}

fn bench_with(cache: &Path, json: &Path, flags: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kd-wgpu"))
        .args(flags)
        .args(["bench", "--reps", "1", "--steps", "1", "--teacher-channels", "24,44", "--student-channels", "3,5"])
        .arg("--json")
        .arg(json)
        .env("XDG_CACHE_HOME", cache)
        .output()
        .unwrap()
}

#[test]
fn bench_runs_and_writes_json() {
    let dir = tempfile::tempdir().unwrap();
    let (json, cache) = (dir.path().join("bench.json"), dir.path().join("cache"));
    let out = bench(&cache, &json);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bench failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    for expect in ["conv2 forward", "train step", "train step, untuned", "CPU f32 matrix product", "Tuning ("] {
        assert!(stdout.contains(expect), "bench output lacks `{expect}`:\n{stdout}");
    }
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert!(report["adapter"].as_str().is_some_and(|a| !a.is_empty()));
    let kernels = report["kernels"].as_array().unwrap();
    assert!(kernels.len() > 20, "every kernel of both models is timed");
    assert!(kernels.iter().all(|k| k["seconds"].as_f64().is_some_and(|s| s > 0.0)));
    // Every kernel has a bandwidth figure (bytes from its shapes), not only the products.
    for k in kernels {
        assert!(k["gbytes_per_second"].as_f64().is_some_and(|g| g > 0.0), "no GB/s for {k}");
    }
    // The teacher's conv2 products in every entry of the device's family, the plan's pick
    // marked once for each of the three products.
    let products = report["products"].as_array().unwrap();
    for what in ["conv2 forward", "conv2 input gradient", "conv2 kernel gradient"] {
        let rows: Vec<_> = products.iter().filter(|p| p["product"].as_str().unwrap().starts_with(what)).collect();
        assert!(rows.len() >= 2, "{what}: two entries of the family at least: {rows:?}");
        assert_eq!(rows.iter().filter(|p| p["chosen"] == true).count(), 1, "{what}: {rows:?}");
        assert!(rows.iter().all(|p| p["gflops"].as_f64().is_some_and(|g| g > 0.0)), "{rows:?}");
    }

    // The first run timed every product with a choice and cached it (Linux: under
    // XDG_CACHE_HOME); the second times nothing and makes the same choices.
    #[cfg(target_os = "linux")]
    {
        let tuning = &report["tuning"];
        let choices = tuning["choices"].as_array().unwrap();
        assert!(tuning["timed"].as_u64().unwrap() > 0 && tuning["timed"].as_u64().unwrap() as usize == choices.len());
        assert!(stdout.contains("Tuning: timing"), "{stdout}");
        let files: Vec<_> = std::fs::read_dir(cache.join("kd-wgpu")).unwrap().collect();
        assert_eq!(files.len(), 1, "one cache file per device: {files:?}");
        let out = bench(&cache, &json);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(!String::from_utf8_lossy(&out.stdout).contains("Tuning: timing"), "the second run tuned again");
        let again: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        assert_eq!(again["tuning"]["timed"], 0);
        assert_eq!(&again["tuning"]["choices"], &report["tuning"]["choices"]);

        // A corrupt cache costs one warning and is rewritten.
        let file = files[0].as_ref().unwrap().path();
        std::fs::write(&file, "not json").unwrap();
        let out = bench(&cache, &json);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && stderr.matches("warning: ignoring the tuning cache").count() == 1, "{stderr}");
        assert!(std::fs::read_to_string(&file).unwrap().starts_with('{'), "the cache was rewritten");
    }
}

/// With a feature term the bench times the feature distiller's step too, kernel by kernel,
/// its projection among them.
#[test]
fn bench_times_the_feature_distiller_step() {
    let dir = tempfile::tempdir().unwrap();
    let (json, cache) = (dir.path().join("bench.json"), dir.path().join("cache"));
    let flags = ["--distill", "logits", "--distill", "feature:conv2d_1:conv2d_1:project"];
    let out = bench_with(&cache, &json, &flags);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bench failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("feature distiller step"), "{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let kernels = report["kernels"].as_array().unwrap();
    let feature: Vec<_> = kernels.iter().filter(|k| k["model"] == "feature conv2d_1").collect();
    let term: Vec<_> = feature.iter().filter(|k| k["layer"].as_str().unwrap().contains("feature term")).collect();
    assert!(term.iter().any(|k| k["kernel"] == "feature::feature_mse"), "{term:?}");
    assert!(term.iter().filter(|k| k["kernel"].as_str().unwrap().starts_with("matmul")).count() == 3, "{term:?}");
    assert!(feature.iter().all(|k| k["seconds"].as_f64().is_some_and(|s| s > 0.0)));
    if report["timestamps"] == true {
        let parts = report["step_parts"].as_array().unwrap();
        assert!(parts.iter().any(|p| p["model"] == "feature conv2d_1"), "{parts:?}");
    }
}
