//! An experiment split across machines (`--shard I/K`, `kd-wgpu merge`), on a slice of the real
//! data with small networks: the merged shards give the one-process experiment's metrics and
//! report, a shard resumes as any run does, and bad shards and bad merges are refused before
//! any work or any file written.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_kd-wgpu");

/// A slice and networks small enough that each run takes seconds.
const TINY: &str = "--offline --tune off --train-limit 320 --test-limit 160 --teacher-channels 8,12 \
                    --student-channels 4,8 --student-epochs 1";

fn command(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(TINY.split_whitespace()).args(args);
    c
}

/// Runs to the end and returns stdout, failing with the output if the program failed.
fn run_ok(mut c: Command) -> String {
    let out = c.output().expect("the program starts");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the run failed:\n{stdout}\n{stderr}");
    stdout.into_owned()
}

/// Runs a command that must be refused: its stderr names `expect`, with no panic and no work.
fn refused(mut c: Command, expect: &str) {
    let out = c.output().expect("the program starts");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "must be refused (`{expect}`):\n{stdout}");
    assert!(stderr.contains(expect), "stderr `{stderr}` should mention `{expect}`");
    assert!(!stderr.contains("panicked"), "panicked: {stderr}");
    assert!(!stdout.contains("Adapter:") && !stdout.contains("Wrote"), "refused after starting work:\n{stdout}");
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// The metrics without what is measured rather than computed: times, where a run was resumed,
/// and the merge's list of its shards' files and times.
fn figures(mut v: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(map) => {
                map.retain(|k, _| {
                    !k.contains("seconds") && !k.contains("per_second") && k != "merged_shards" && k != "resumed_from"
                });
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

/// The closing report's result lines: from its first table to the line of phase times, with
/// the models table's time columns (train time, samples/s) left out.
fn result_lines(stdout: &str) -> Vec<String> {
    let start = stdout.rfind("Results on the test set").expect("a closing report");
    let mut in_models_table = true;
    let mut lines = Vec::new();
    for line in stdout[start..].lines().skip(1) {
        if line.starts_with("phases:") {
            return lines;
        }
        in_models_table &= line.starts_with('|');
        lines.push(match in_models_table {
            true => line.split('|').take(5).collect::<Vec<_>>().join("|"),
            false => line.to_string(),
        });
    }
    panic!("no line of phase times in:\n{stdout}")
}

/// Shard 1 of 2 with a checkpoint directory, killed after its first run (run 1), resumed and
/// killed after its second, which must be run 3, and resumed to its end.
fn interrupted_and_resumed_shard(experiment: &[&str], state: &Path, metrics: &Path) {
    let log = state.with_extension("log");
    for (flag, point) in [("--checkpoint-dir", "phase:students run 1"), ("--resume", "phase:students run 3")] {
        let mut c = command(experiment);
        c.args(["--shard", "1/2", flag, path(state), "--metrics-out", path(metrics)]);
        c.env("KD_WGPU_PAUSE_AT", point).stdout(Stdio::null());
        c.stderr(std::fs::File::create(&log).unwrap());
        let mut child: Child = c.spawn().expect("the program starts");
        let start = Instant::now();
        while !std::fs::read_to_string(&log).unwrap_or_default().contains("paused at") {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the shard ended ({status}) before {point}:\n{}", std::fs::read_to_string(&log).unwrap());
            }
            assert!(start.elapsed() < Duration::from_secs(300), "no pause at {point} after 5 minutes");
            std::thread::sleep(Duration::from_millis(50));
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let mut c = command(experiment);
    c.args(["--shard", "1/2", "--resume", path(state), "--metrics-out", path(metrics)]);
    let stdout = run_ok(c);
    assert!(stdout.contains("from the end of the students' run 3"), "{stdout}");
}

#[test]
fn shards_merge_into_the_one_process_experiment() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name);
    run_ok(command(&["--teacher-epochs", "1", "--save-dir", path(&file("t"))]));
    let teacher = file("t").join("teacher.safetensors");
    // Three runs split 2 + 1, and a sweep of two cells split 1 + 1 (0.3 is no exact float).
    let experiment = ["--teacher", path(&teacher), "--runs", "3", "--sweep-alpha", "0.3,1.0"];

    let mut one = command(&experiment);
    one.args(["--metrics-out", path(&file("one.json"))]);
    let one_stdout = run_ok(one);
    interrupted_and_resumed_shard(&experiment, &file("state"), &file("shard-1.json"));
    let mut second = command(&experiment);
    second.args(["--shard", "2/2", "--metrics-out", path(&file("shard-2.json"))]);
    let second_stdout = run_ok(second);
    assert!(second_stdout.contains("shard 2/2: runs 2 of 3 and 1 sweep cell(s)"), "{second_stdout}");

    let (first_shard, second_shard) = (read_json(&file("shard-1.json")), read_json(&file("shard-2.json")));
    assert_eq!(first_shard["config"]["shard"], "1/2");
    assert_eq!(first_shard["shard"]["run_indices"], serde_json::json!([0, 2]));
    assert_eq!(first_shard["shard"]["sweep_cells"], serde_json::json!([0]));
    assert_eq!(second_shard["shard"]["run_indices"], serde_json::json!([1]));
    let digest = &first_shard["shard"]["teacher_weights_sha256"];
    assert!(
        digest.as_str().is_some_and(|d| d.len() == 64) && *digest == second_shard["shard"]["teacher_weights_sha256"]
    );
    // Run 2 of shard 2 has the seeds it has in the one process (paired, as over 3 runs).
    assert_eq!(figures(second_shard["runs"][0].clone()), figures(read_json(&file("one.json"))["runs"][1].clone()));

    // Given in any order.
    let merged = file("merged.json");
    let mut merge = Command::new(BIN);
    merge.arg("merge").args([&file("shard-2.json"), &file("shard-1.json")]).arg("--metrics-out").arg(&merged);
    merge.arg("--plot").arg(file("merged.svg"));
    let merged_stdout = run_ok(merge);
    let merged_json = read_json(&merged);
    assert_eq!(merged_json["merged_shards"].as_array().map(Vec::len), Some(2));
    let resumed = ["shard 1/2: the end of the students' run 1", "shard 1/2: the end of the students' run 3"];
    assert_eq!(merged_json["resumed_from"], serde_json::json!(resumed));
    assert_eq!(figures(merged_json), figures(read_json(&file("one.json"))), "every figure as in one process");
    assert_eq!(result_lines(&merged_stdout), result_lines(&one_stdout));
    assert!(merged_stdout.contains("merged from 2 shards"), "{merged_stdout}");
    assert!(file("merged-sweep.svg").exists() && file("merged-classes.svg").exists());
    // `compare` reads the merged file as the one-process file, and refuses a shard.
    let compare = |metrics: &Path| {
        let mut c = Command::new(BIN);
        c.arg("compare").arg(format!("three runs={}", path(metrics)));
        run_ok(c)
    };
    assert_eq!(compare(&merged), compare(&file("one.json")));
    assert!(compare(&merged).contains("| three runs | alpha 0.1, T 10, logits | "));
    let mut c = Command::new(BIN);
    c.arg("compare").arg(file("shard-1.json"));
    refused(c, "put its shards together with `kd-wgpu merge`");

    // A shard's state does not resume as another shard.
    let mut other = command(&experiment);
    other.args(["--shard", "2/2", "--resume", path(&file("state"))]);
    let out = other.output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--shard: 1/2 in the state, 2/2 now"));

    // Bad merges, refused before anything is written.
    let edited = |name: &str, edit: &dyn Fn(&mut Value)| {
        let mut v = second_shard.clone();
        edit(&mut v);
        std::fs::write(file(name), serde_json::to_vec(&v).unwrap()).unwrap();
        file(name)
    };
    let seed = edited("seed.json", &|v| v["config"]["seed"] = 2.into());
    let teacher_digest = edited("digest.json", &|v| v["shard"]["teacher_weights_sha256"] = "00".into());
    let tuned = edited("tuned.json", &|v| v["config"]["tune"] = "Full".into());
    let of_three = edited("of-three.json", &|v| v["shard"]["count"] = 3.into());
    let truncated = file("truncated.json");
    let text = std::fs::read(file("shard-2.json")).unwrap();
    std::fs::write(&truncated, &text[..text.len() / 2]).unwrap();
    std::fs::write(file("other.json"), r#"{"runs": [1, 2]}"#).unwrap();
    let (s1, s2) = (file("shard-1.json"), file("shard-2.json"));
    let out = file("out.json");
    let missing = file("missing.json");
    for (files, expect) in [
        (vec![&s1], "shard 2/2 missing".to_string()),
        (vec![&s1, &s1, &s2], format!("{} and {} are both shard 1/2", s1.display(), s1.display())),
        (vec![&s1, &of_three], "splits into 2 and 3 shards".into()),
        (
            vec![&s1, &teacher_digest],
            format!("{} and {} distilled from different teachers", s1.display(), teacher_digest.display()),
        ),
        (vec![&s1, &seed], format!("--seed: 1 in {}, 2 in {}", s1.display(), seed.display())),
        (vec![&s1, &file("one.json")], "holds the metrics of a whole experiment, not of a shard".into()),
        (vec![&s1, &truncated], format!("{} is not valid JSON", truncated.display())),
        (vec![&s1, &file("other.json")], "is not a kd-wgpu metrics file".into()),
        (vec![&s1, &missing], format!("cannot read {}", missing.display())),
    ] {
        let mut c = Command::new(BIN);
        c.arg("merge").args(&files).arg("--metrics-out").arg(&out);
        refused(c, &expect);
        assert!(!out.exists(), "a refused merge wrote {}", out.display());
    }
    // A setting that changes no result may differ.
    let mut c = Command::new(BIN);
    c.arg("merge").args([&s1, &tuned]);
    run_ok(c);
}

#[test]
fn bad_shards_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    // Never read: every refusal comes first.
    let teacher: PathBuf = dir.path().join("teacher.safetensors");
    let with_teacher = |shard: &str, runs: &str| {
        let mut c = command(&["--runs", runs, "--shard", shard]);
        c.arg("--teacher").arg(&teacher);
        c
    };
    for (shard, expect) in [
        ("3/2", "there is no shard 3 of 2"),
        ("0/2", "there is no shard 0 of 2"),
        ("1/0", "K = 0"),
        ("1-2", "is not of the form I/K"),
        ("one/2", "is not two whole numbers"),
    ] {
        refused(with_teacher(shard, "4"), expect);
        refused(with_teacher(shard, "4"), "--shard");
    }
    refused(with_teacher("2/4", "3"), "--shard 2/4: with --runs 3, some of 4 shards would hold no run");
    refused(command(&["--runs", "4", "--shard", "1/2"]), "--shard 1/2 needs --teacher FILE");
    let mut no_files = Command::new(BIN);
    no_files.arg("merge");
    refused(no_files, "SHARD.json");
}
