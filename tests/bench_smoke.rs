//! `kd-wgpu bench` runs end to end and writes its JSON (a smoke test: no timing assertions).

use std::process::Command;

#[test]
fn bench_runs_and_writes_json() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    // Narrower models than the seed's keep the smoke test quick, and check that the bench
    // takes the channel flags.
    let out = Command::new(env!("CARGO_BIN_EXE_kd-wgpu"))
        .args(["bench", "--reps", "1", "--steps", "1", "--teacher-channels", "24,44", "--student-channels", "3,5"])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bench failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    for expect in ["conv2 forward", "train step", "CPU f32 matrix product"] {
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
}
