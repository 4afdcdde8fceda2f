//! Resumable runs, tried as a user meets them: the program is killed (SIGKILL) at chosen
//! points, or stopped by SIGINT, then resumed; its weights files must be the same bytes, and
//! its metrics file the same figures, as those of a run never interrupted. And the refusals of
//! a state that cannot be resumed.
//!
//! The program stops at a point when `KD_WGPU_PAUSE_AT` names it (see
//! `kd_wgpu::run::resume::pause_point`); the test then kills it from outside.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_kd-wgpu");

/// A short run with every phase: two teacher epochs, two runs of the students, a sweep.
fn run_args(mode: &str, train_limit: usize) -> Vec<String> {
    let a = format!(
        "--offline --train-limit {train_limit} --test-limit 160 --teacher-epochs 2 --student-epochs 2 \
         --teacher-channels 24,44 --student-channels 8,12 --runs 2 --sweep-alpha 0.5,0.9 --sync-points 3 \
         --seed 11 --distill-teacher {mode}"
    );
    a.split_whitespace().map(String::from).collect()
}

fn command(args: &[String], extra: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    // Tuning never changes a bit (tests/tuning.rs); off, the runs compile fewer kernels.
    c.args(args).args(extra).args(["--tune", "off"]);
    c
}

/// Runs to the end; returns (exit status, stdout + stderr).
fn run(mut c: Command) -> (i32, String) {
    let out = c.output().expect("the program starts");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

fn run_ok(c: Command) -> String {
    let (code, text) = run(c);
    assert_eq!(code, 0, "the run failed:\n{text}");
    text
}

/// Starts the program with stderr going to `log`.
fn spawn(mut c: Command, log: &Path) -> Child {
    let err = std::fs::File::create(log).unwrap();
    c.stdout(Stdio::null()).stderr(err).spawn().expect("the program starts")
}

/// Waits until `log` contains `text`, failing if the program ends first or takes too long.
fn wait_for(child: &mut Child, log: &Path, text: &str) {
    let start = Instant::now();
    loop {
        if std::fs::read_to_string(log).unwrap_or_default().contains(text) {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the program ended ({status}) before `{text}`:\n{}", std::fs::read_to_string(log).unwrap());
        }
        assert!(start.elapsed() < Duration::from_secs(300), "no `{text}` after 5 minutes");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The metrics file without what may differ: times, the resume record, the output paths.
fn figures(path: &Path) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                map.retain(|k, _| {
                    !k.contains("seconds") && !k.contains("per_second") && k != "resumed_from" && k != "weights"
                });
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    strip(&mut v);
    v
}

/// An uninterrupted run's outputs: its --save-dir and --metrics-out.
struct Outputs {
    weights: PathBuf,
    metrics: PathBuf,
}

impl Outputs {
    fn in_dir(dir: &Path, name: &str) -> Outputs {
        Outputs { weights: dir.join(format!("{name}-weights")), metrics: dir.join(format!("{name}.json")) }
    }

    fn flags(&self) -> Vec<String> {
        let (w, m) = (self.weights.display(), self.metrics.display());
        vec!["--save-dir".into(), w.to_string(), "--metrics-out".into(), m.to_string()]
    }

    /// Asserts the same weights files, byte for byte, and the same figures.
    fn assert_same_as(&self, other: &Outputs, what: &str) {
        let mut names: Vec<_> = std::fs::read_dir(&other.weights).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        let mut ours: Vec<_> = std::fs::read_dir(&self.weights).unwrap().map(|e| e.unwrap().file_name()).collect();
        ours.sort();
        assert_eq!(ours, names, "{what}: the same weights files");
        for name in &names {
            let (a, b) =
                (std::fs::read(self.weights.join(name)).unwrap(), std::fs::read(other.weights.join(name)).unwrap());
            assert!(a == b, "{what}: {} differs from the uninterrupted run's", name.to_string_lossy());
        }
        assert_eq!(figures(&self.metrics), figures(&other.metrics), "{what}: the same figures");
    }
}

/// The uninterrupted run of `args`.
fn baseline(dir: &Path, args: &[String]) -> Outputs {
    let out = Outputs::in_dir(dir, "uninterrupted");
    let flags = out.flags();
    run_ok(command(args, &flags.iter().map(String::as_str).collect::<Vec<_>>()));
    out
}

/// Kills the run with SIGKILL at each point in turn (resuming after each kill but the last),
/// then resumes it to the end; returns its outputs.
fn killed_and_resumed(dir: &Path, args: &[String], name: &str, points: &[&str]) -> Outputs {
    let (out, state) = (Outputs::in_dir(dir, name), dir.join(format!("{name}-state")));
    let state_flag = state.display().to_string();
    let mut flags = out.flags();
    flags.extend(["--checkpoint-every".into(), "0".into()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let log = dir.join(format!("{name}.log"));
    for (i, point) in points.iter().enumerate() {
        let how = if i == 0 { "--checkpoint-dir" } else { "--resume" };
        let mut c = command(args, &flags);
        c.args([how, &state_flag]).env("KD_WGPU_PAUSE_AT", point);
        let mut child = spawn(c, &log);
        wait_for(&mut child, &log, &format!("paused at {point}"));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let mut c = command(args, &flags);
    c.args(["--resume", &state_flag]);
    let text = run_ok(c);
    assert!(text.contains("Resuming the run in"), "{name}: the run says it resumed:\n{text}");
    assert!(text.contains("resumed 1 time(s)") || points.len() > 1, "{name}: the report says so:\n{text}");
    out
}

#[test]
fn killed_anywhere_then_resumed_gives_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let args = run_args("frozen", 320);
    let expected = baseline(dir.path(), &args);
    // Points within the teacher's first epoch and its second, between phases, within the
    // students' second run and the sweep, and halfway through a state file's write.
    let cases: [(&str, &[&str]); 7] = [
        ("teacher-mid-epoch", &["teacher:step:4"]),
        ("teacher-second-epoch", &["teacher:step:12"]),
        ("after-teacher", &["phase:teacher"]),
        ("after-logits", &["phase:teacher logits"]),
        ("students", &["students run 2:step:7"]),
        ("sweep", &["sweep:step:3"]),
        ("state-write", &["state-write:9"]),
    ];
    for (name, points) in cases {
        let got = killed_and_resumed(dir.path(), &args, name, points);
        got.assert_same_as(&expected, name);
    }
    // A kill while the killed run's state is being written leaves the previous state whole.
    let got = killed_and_resumed(dir.path(), &args, "twice", &["teacher:step:6", "state-write:3"]);
    got.assert_same_as(&expected, "killed twice");
}

#[test]
fn the_seeds_distiller_resumes_with_its_teachers_adam_state() {
    let dir = tempfile::tempdir().unwrap();
    let args = run_args("trainable", 320);
    let expected = baseline(dir.path(), &args);
    for (name, point) in [("co-trained", "students run 1:step:5"), ("co-trained-sweep", "sweep:step:6")] {
        killed_and_resumed(dir.path(), &args, name, &[point]).assert_same_as(&expected, name);
    }
}

/// Networks with Dropout (read from a Keras file) draw their masks from Adam's t, which the
/// state keeps: killed in the teacher's second epoch or in the students', a resumed run draws
/// the same masks and ends with the same bytes.
#[test]
fn dropout_draws_the_same_masks_after_a_resume() {
    let dir = tempfile::tempdir().unwrap();
    let keras_file = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/keras-small.json");
    let args: Vec<String> = format!(
        "--offline --train-limit 320 --test-limit 160 --teacher-epochs 2 --student-epochs 2 --sync-points 3 \
         --seed 11 --teacher-layers {keras_file} --student-layers {keras_file}"
    )
    .split_whitespace()
    .map(String::from)
    .collect();
    let expected = baseline(dir.path(), &args);
    for (name, point) in [("dropout-teacher", "teacher:step:12"), ("dropout-students", "students run 1:step:13")] {
        killed_and_resumed(dir.path(), &args, name, &[point]).assert_same_as(&expected, name);
    }
}

/// Random translations draw their offsets from Adam's t, which the state keeps: killed in the
/// teacher's second epoch or in the paired students' (the seed's Distiller: --student-augment
/// needs it), a resumed run moves the same images alike and ends with the same bytes; a
/// resume with another --teacher-augment is refused.
#[test]
fn augmented_runs_resume_with_the_same_shifts() {
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = "--offline --train-limit 320 --test-limit 160 --teacher-epochs 2 --student-epochs 2 \
         --teacher-channels 24,44 --student-channels 8,12 --runs 2 --sync-points 3 --seed 11 \
         --distill-teacher trainable --teacher-augment 2 --student-augment 3"
        .split_whitespace()
        .map(String::from)
        .collect();
    let expected = baseline(dir.path(), &args);
    for (name, point) in [("augmented-teacher", "teacher:step:12"), ("augmented-students", "students run 2:step:7")] {
        killed_and_resumed(dir.path(), &args, name, &[point]).assert_same_as(&expected, name);
    }
    let state = interrupted_state(dir.path(), &args);
    let resume = ["--resume", state.to_str().unwrap()];
    refused(command(&with(&args, "--teacher-augment", "1"), &resume), &["--teacher-augment: 2 in the state, 1 now"]);
}

/// keras.distillation's terms with a feature term and its projection, and few labels: the
/// projection's weights and Adam moments are in the state, so a run killed in the students'
/// epochs ends with the same bytes (student files, per-term figures) as one never killed.
#[test]
fn feature_terms_and_few_labels_resume_to_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = "--offline --train-limit 320 --test-limit 160 --teacher-epochs 1 --student-epochs 2 \
         --teacher-channels 24,44 --student-channels 8,12 --runs 2 --sync-points 3 --seed 12 --alpha 0.5 \
         --temperature 3 --distill logits --distill logits:mse --distill feature:conv2d_1:conv2d_1:project \
         --distill-weights 1,0.5,0.25 --labelled 40"
        .split_whitespace()
        .map(String::from)
        .collect();
    let expected = baseline(dir.path(), &args);
    let metrics = std::fs::read_to_string(&expected.metrics).unwrap();
    assert!(metrics.contains("\"feature_mse\"") && metrics.contains("\"logits_mse\""), "per-term figures recorded");
    killed_and_resumed(dir.path(), &args, "feature-students", &["students run 2:step:5"])
        .assert_same_as(&expected, "feature-students");
}

/// Starts the run with checkpoints, sends `signal` once `marker` is in its output, checks
/// that it exits with 130 after printing the command that resumes it, runs that command as a
/// user would paste it, and compares the result with the uninterrupted run.
fn signal_then_resume(dir: &Path, args: &[String], expected: &Outputs, signal: &str, marker: &str) {
    let name = signal.to_lowercase();
    let out = Outputs::in_dir(dir, &name);
    let state = dir.join(format!("{name}-state"));
    let flags = out.flags();
    let mut c = command(args, &flags.iter().map(String::as_str).collect::<Vec<_>>());
    c.arg("--checkpoint-dir").arg(&state);
    let log = dir.join(format!("{name}.log"));
    let err = std::fs::File::create(&log).unwrap();
    let mut child = c.stdout(err.try_clone().unwrap()).stderr(err).spawn().unwrap();
    wait_for(&mut child, &log, marker);
    let sent = Command::new("sh").args(["-c", &format!("kill -{signal} {}", child.id())]).status().unwrap();
    assert!(sent.success());
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(130), "exit status after SIG{signal}:\n{text}");
    let resume_line = text
        .lines()
        .skip_while(|l| !l.contains("To go on where it stopped, run:"))
        .nth(1)
        .unwrap_or_else(|| panic!("no resume command in:\n{text}"));
    assert!(resume_line.contains(&format!("--resume {}", state.display())), "{resume_line}");
    assert!(!resume_line.contains("--checkpoint-dir"), "{resume_line}");
    let mut sh = Command::new("sh");
    sh.args(["-c", resume_line.trim()]).current_dir(dir);
    let (code, resumed) = run(sh);
    assert_eq!(code, 0, "{resumed}");
    assert!(resumed.contains("Resuming the run in"), "{resumed}");
    out.assert_same_as(expected, &format!("after SIG{signal}"));
}

#[test]
fn sigint_and_sigterm_write_the_state_exit_130_and_print_the_command_that_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let args = run_args("frozen", 2000);
    let expected = baseline(dir.path(), &args);
    // Ctrl-C in the teacher's first epoch; SIGTERM in the students' second run.
    signal_then_resume(dir.path(), &args, &expected, "INT", "Epoch 1/2");
    signal_then_resume(dir.path(), &args, &expected, "TERM", "Students, run 2/2");
}

/// A state to refuse things with: a run killed in its teacher's training.
fn interrupted_state(dir: &Path, args: &[String]) -> PathBuf {
    let state = dir.join("state");
    let mut c = command(args, &["--checkpoint-every", "0", "--checkpoint-dir", state.to_str().unwrap()]);
    c.env("KD_WGPU_PAUSE_AT", "teacher:step:3");
    let log = dir.join("refusals.log");
    let mut child = spawn(c, &log);
    wait_for(&mut child, &log, "paused at teacher:step:3");
    child.kill().unwrap();
    child.wait().unwrap();
    state
}

/// `args` with `flag`'s value replaced.
fn with(args: &[String], flag: &str, value: &str) -> Vec<String> {
    let mut changed = args.to_vec();
    let i = changed.iter().position(|a| a == flag).expect("the flag is given");
    changed[i + 1] = value.into();
    changed
}

/// Runs `c`, which must fail with a message containing each of `expected`.
fn refused(c: Command, expected: &[&str]) {
    let (code, text) = run(c);
    assert_eq!(code, 1, "must be refused:\n{text}");
    for e in expected {
        assert!(text.contains(e), "the message should contain `{e}`:\n{text}");
    }
    assert!(!text.contains("panicked"), "{text}");
}

#[test]
fn states_that_cannot_be_resumed_are_refused_and_left_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let args = run_args("frozen", 320);
    let state = interrupted_state(dir.path(), &args);
    let file = state.join("state.safetensors");
    let good = std::fs::read(&file).unwrap();
    let resume = ["--resume", state.to_str().unwrap()];

    // Other settings: each difference is named.
    let mut c = command(&with(&with(&args, "--seed", "12"), "--student-channels", "8,13"), &resume);
    c.args(["--alpha", "0.3"]);
    refused(c, &["--seed: 11 in the state, 12 now", "--alpha: 0.1 in the state, 0.3 now", "--student-channels"]);
    let other_data = with(&args, "--train-limit", "300");
    refused(command(&other_data, &resume), &["--train-limit: 320 in the state, 300 now", "training data"]);
    refused(command(&run_args("trainable", 320), &resume), &["--distill-teacher: frozen in the state, trainable now"]);
    assert_eq!(std::fs::read(&file).unwrap(), good, "a refused resume leaves the state as it was");

    // A new run must not overwrite a state.
    refused(
        command(&args, &["--checkpoint-dir", state.to_str().unwrap()]),
        &["already holds a run's state", "--resume"],
    );
    assert_eq!(std::fs::read(&file).unwrap(), good);

    // Missing, truncated, corrupt, written by another layout.
    let missing = dir.path().join("nothing-here");
    refused(command(&args, &["--resume", missing.to_str().unwrap()]), &["no run state to resume", "state.safetensors"]);
    let broken = dir.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    let broken_resume = ["--resume", broken.to_str().unwrap()];
    let broken_file = broken.join("state.safetensors");
    std::fs::write(&broken_file, &good[..good.len() / 2]).unwrap();
    refused(command(&args, &broken_resume), &["broken/state.safetensors", "truncated or corrupt"]);
    let mut flipped = good.clone();
    let last = flipped.len() - 5;
    flipped[last] ^= 0x40;
    std::fs::write(&broken_file, &flipped).unwrap();
    refused(command(&args, &broken_resume), &["broken/state.safetensors", "corrupt", "SHA-256"]);
    std::fs::write(&broken_file, b"not a state at all").unwrap();
    refused(command(&args, &broken_resume), &["broken/state.safetensors"]);
    let header_len = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&good[8..8 + header_len]).unwrap();
    let other_format = header.replacen("\"format\":\"3\"", "\"format\":\"9\"", 1);
    assert_ne!(other_format, header, "the state records its format");
    let mut bytes = good[..8].to_vec();
    bytes.extend_from_slice(other_format.as_bytes());
    bytes.extend_from_slice(&good[8 + header_len..]);
    std::fs::write(&broken_file, &bytes).unwrap();
    refused(command(&args, &broken_resume), &["state format 9", "reads format 3"]);

    // Unusable directories and flags, refused before any work.
    refused(command(&args, &["--checkpoint-dir", "/proc/kd-wgpu-state"]), &["--checkpoint-dir /proc/kd-wgpu-state"]);
    refused(
        command(&args, &["--checkpoint-dir", state.to_str().unwrap(), "--checkpoint-every", "-1"]),
        &["--checkpoint-every -1"],
    );
    // The first state still resumes after all that, to the same end as an uninterrupted run.
    let expected = baseline(dir.path(), &args);
    let out = Outputs::in_dir(dir.path(), "resumed");
    let flags = out.flags();
    let mut c = command(&args, &flags.iter().map(String::as_str).collect::<Vec<_>>());
    c.args(resume);
    run_ok(c);
    out.assert_same_as(&expected, "resumed after the refusals");
}
