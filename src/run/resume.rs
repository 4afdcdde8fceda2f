//! Resumable runs. With `--checkpoint-dir DIR` the whole state of the run is kept in one file,
//! `DIR/state.safetensors`, rewritten atomically (a temporary file, fsync, rename) at the end of
//! every epoch and of every phase, every `--checkpoint-every` minutes at a step boundary, and
//! when SIGINT or SIGTERM asks the run to stop. `--resume DIR` goes on from it: steps are
//! deterministic, so the resumed run ends with the same bits as one never interrupted.
//!
//! The file's tensors are the finished phases' results that later phases read (the trained
//! teacher, the frozen teacher's logits tables) and, for the group of models in training,
//! each model's weights and Adam moments and each plan's metrics of the epoch so far. Its
//! metadata `state` is a JSON [`Header`]: the settings the results depend on, the finished
//! phases' records, and where the training group stands (epoch, step, Adam's t). The sample
//! order needs no saving: each model's shuffles come from a seeded generator, replayed.

use crate::checkpoint;
use crate::config::{Config, Scope, Shard};
use crate::data::Dataset;
use crate::digest::{weights_digest, Hasher};
use crate::gpu::{self, Gpu};
use crate::results::{RunResult, StudentPair, SweepPoint};
use crate::train::{EpochStats, PlanPosition};
use anyhow::{bail, ensure, Context, Result};
use safetensors::{Dtype, SafeTensors};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The state file in a checkpoint directory.
pub const STATE_FILE: &str = "state.safetensors";
/// The layout of the state file; a build that lays it out differently refuses older files.
const FORMAT: u32 = 3;

/// The run stopped on SIGINT or SIGTERM, its state saved; the program exits with status 130.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stopped by a signal")
    }
}

impl std::error::Error for Interrupted {}

static STOP: AtomicBool = AtomicBool::new(false);

/// From now on SIGINT and SIGTERM ask the run to stop at the next step boundary, after
/// writing its state; a second signal stops it at once (the last state written stands).
pub fn catch_signals() -> Result<()> {
    ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            eprintln!("\nstopping at once; the last state written stands");
            std::process::exit(130);
        }
        eprintln!("\nstopping after this step, once the state is written (a second Ctrl-C stops at once)");
    })
    .context("cannot install the SIGINT/SIGTERM handler")
}

/// Whether a signal asked the run to stop.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// For the tests of resumable runs: `KD_WGPU_PAUSE_AT=NAME` makes the program print
/// `paused at NAME` on stderr when it reaches the point `NAME` and wait there to be killed.
/// Points: `GROUP:step:N` (N steps of a training group done in this process; groups are
/// `teacher`, `students run K`, `sweep`), `phase:NAME` (a phase's end written: `teacher`,
/// `teacher logits`, `students run K`, `sweep`), `state-write:N` (halfway through the N-th
/// state file written by this process).
pub fn pause_point(name: impl FnOnce() -> String) {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    let Some(at) = AT.get_or_init(|| std::env::var("KD_WGPU_PAUSE_AT").ok()) else { return };
    if *at == name() {
        eprintln!("paused at {at}");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

/// The settings a run's results depend on, by flag, each as text; two runs with equal
/// fingerprints compute the same bits.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Fingerprint(BTreeMap<String, String>);

impl Fingerprint {
    /// Every setting of `cfg` a resumed run must share, by its flag ([`settings`]); then what else the results depend on: `starting`, the
    /// weights of `--teacher`, `--teacher-init`, `--student-init`, the data, and the device.
    pub fn of(cfg: &Config, starting: [Option<&[f32]>; 3], data: &Dataset, gpu: &Gpu) -> Fingerprint {
        let file = |w: Option<&[f32]>| w.map_or("none".into(), |w| format!("weights {}", weights_digest(w)));
        let split = |s: &crate::data::Split| {
            let mut h = Hasher::new();
            h.update(&s.images).update(&s.labels);
            format!("{} images, {}", s.len(), h.hex())
        };
        let others = [
            ("--teacher".to_string(), file(starting[0])),
            ("--teacher-init".into(), file(starting[1])),
            ("--student-init".into(), file(starting[2])),
            ("training data".into(), split(&data.train)),
            ("test data".into(), split(&data.test)),
            ("adapter".into(), gpu::describe(&gpu.info)),
            ("kernel family (--matmul)".into(), format!("{:?}", gpu.family())),
        ];
        Fingerprint(settings(cfg).into_iter().chain(others).collect())
    }

    /// One line per setting that differs: `--seed: 1 in the state, 2 now`. A setting the state
    /// does not record came after the build that wrote it, which ran it at its default: at
    /// the default now, it is no difference.
    pub fn differences(&self, now: &Fingerprint) -> Vec<String> {
        let none = String::from("(not recorded)");
        let defaults = settings(&Config::default());
        let keys: std::collections::BTreeSet<&String> = self.0.keys().chain(now.0.keys()).collect();
        keys.into_iter()
            .filter(|k| self.0.contains_key(*k) || defaults.get(*k).is_none_or(|d| now.0.get(*k) != Some(d)))
            .filter_map(|k| {
                let (then, now) = (self.0.get(k).unwrap_or(&none), now.0.get(k).unwrap_or(&none));
                (then != now).then(|| format!("{k}: {then} in the state, {now} now"))
            })
            .collect()
    }
}

/// Every setting of `cfg` that a resumed run must share, by its flag, each as text: all but
/// those of [`Scope::None`], which change no bit, and of [`Scope::Device`], whose choices (the
/// adapter, the kernel family, the data) the fingerprint records instead.
fn settings(cfg: &Config) -> BTreeMap<String, String> {
    cfg.recorded()
        .into_iter()
        .filter(|(k, _)| Config::scope(k).is_some_and(|s| !matches!(s, Scope::None | Scope::Device)))
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::Null => "none".to_string(),
                // Enums as their flags spell them (`frozen`).
                serde_json::Value::String(s) => s.to_lowercase(),
                v => v.to_string(),
            };
            (format!("--{}", k.replace('_', "-")), text)
        })
        .collect()
}

/// The finished phases' records.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    /// The teacher, trained (or given) and evaluated; its weights are the tensor `teacher`.
    pub teacher: Option<RunResult>,
    /// The frozen teacher's logits tables (tensors `teacher logits train`, `teacher logits
    /// test`) and the seconds they took.
    pub teacher_logits_seconds: Option<f64>,
    /// The students' runs finished.
    pub pairs: Vec<StudentPair>,
    pub sweep: Option<Vec<SweepPoint>>,
    /// Seconds of work up to this state, over every part of the run.
    pub seconds: f64,
    /// Where the run was resumed, each time it was.
    pub resumed: Vec<String>,
}

/// Where a group of models trained side by side stands.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Training {
    /// `teacher`, `students run K`, `sweep`.
    pub group: String,
    /// Per model: the finished epochs' figures (as many as epochs done).
    pub epochs: Vec<Vec<EpochStats>>,
    /// Per plan: steps of the current epoch done, and Adam's t of the next update (the
    /// epoch's metrics so far are the tensor `plan I metrics`).
    pub positions: Vec<(u32, u32)>,
}

/// The state file's metadata.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
/// (Its format number and the version that wrote it are metadata entries of their own, read
/// before this.)
struct Header {
    fingerprint: Fingerprint,
    progress: Progress,
    training: Option<Training>,
}

/// A training group's saved state, as [`Checkpoints::take_training`] hands it back.
pub struct SavedTraining {
    pub training: Training,
    /// Per plan, its position (metrics included).
    pub positions: Vec<PlanPosition>,
    /// `model I weights`, `model I adam m`, `model I adam v` (I counts the group's models,
    /// co-trained teachers after their students), and `projection P weights`, .. for plan P's
    /// feature-term projection.
    pub tensors: BTreeMap<String, Vec<f32>>,
}

/// A state file, read and checked for integrity.
pub struct SavedState {
    path: PathBuf,
    header: Header,
    tensors: BTreeMap<String, Vec<f32>>,
}

impl SavedState {
    /// Reads `DIR/state.safetensors`; a missing, truncated, corrupt or foreign file is an
    /// error naming it.
    pub fn read(dir: &Path) -> Result<SavedState> {
        let path = dir.join(STATE_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "--resume {}: there is no run state to resume ({} does not exist); a run writes it when \
                 started with --checkpoint-dir {}",
                dir.display(),
                path.display(),
                dir.display()
            ),
            Err(e) => return Err(e).with_context(|| format!("cannot read the run state {}", path.display())),
        };
        Self::parse(&bytes)
            .with_context(|| format!("cannot resume from the run state {}", path.display()))
            .map(|(header, tensors)| SavedState { path, header, tensors })
    }

    fn parse(bytes: &[u8]) -> Result<(Header, BTreeMap<String, Vec<f32>>)> {
        let corrupt = |e: safetensors::SafeTensorError| {
            anyhow::anyhow!("it is truncated or corrupt ({e}); the run must start again, in a new --checkpoint-dir")
        };
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(corrupt)?;
        let meta = meta.metadata().clone().unwrap_or_default();
        let format = meta.get("format").and_then(|f| f.parse::<u32>().ok());
        let version = meta.get("version").map_or("an unknown version", String::as_str);
        match format {
            Some(FORMAT) => {}
            Some(f) => bail!(
                "it was written by kd-wgpu {version} in state format {f}; this build (kd-wgpu {}) reads format \
                 {FORMAT}: finish the run with the build that started it",
                env!("CARGO_PKG_VERSION")
            ),
            None => bail!("it is not a kd-wgpu run state (its metadata has no format)"),
        }
        let st = SafeTensors::deserialize(bytes).map_err(corrupt)?;
        let mut names = st.names();
        names.sort_unstable();
        let mut digest = Hasher::new();
        let mut tensors = BTreeMap::new();
        for name in names {
            let t = st.tensor(name).map_err(corrupt)?;
            ensure!(t.dtype() == Dtype::F32, "tensor `{name}` is {:?}, not F32", t.dtype());
            digest.update(t.data());
            let values = t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            tensors.insert(name.to_string(), values);
        }
        let json = meta.get("state").context("its metadata has no `state`")?;
        digest.update(json.as_bytes());
        let expected = meta.get("sha256").context("its metadata has no checksum")?;
        let found = digest.hex();
        ensure!(
            *expected == found,
            "it is corrupt (the SHA-256 of its tensors and state is {found}, the file records {expected}); the \
             run must start again, in a new --checkpoint-dir"
        );
        let header: Header = serde_json::from_str(json).context("its `state` metadata is not valid")?;
        Ok((header, tensors))
    }

    /// The configuration differences that forbid resuming, one per line.
    pub fn check(&self, now: &Fingerprint) -> Result<()> {
        let diffs = self.header.fingerprint.differences(now);
        if !diffs.is_empty() {
            bail!(
                "the run state {} was written with other settings, so the resumed run could not end as the \
                 interrupted one would have:\n  {}\nresume with the settings of the interrupted run, or start \
                 a new run in another --checkpoint-dir",
                self.path.display(),
                diffs.join("\n  ")
            );
        }
        Ok(())
    }

    /// The number (from 1) of the `n`-th run its process trains: a shard I/K trains runs I, I+K, ..
    fn run_number(&self, n: usize) -> usize {
        let shard = self.header.fingerprint.0.get("--shard").and_then(|s| s.parse::<Shard>().ok());
        shard.map_or(n, |s| s.index + (n - 1) * s.count)
    }

    /// Where the state stands, for messages.
    pub fn describe(&self) -> String {
        match &self.header.training {
            Some(t) => {
                let step = t.positions.first().map_or(0, |p| p.0);
                let epochs_done = t.epochs.first().map_or(0, Vec::len);
                format!("{}, epoch {}, step {step}", t.group, epochs_done + 1)
            }
            None => {
                let p = &self.header.progress;
                match (&p.teacher, p.pairs.len(), &p.sweep) {
                    (None, ..) => "the start".into(),
                    (Some(_), 0, None) => "the end of the teacher's phase".into(),
                    (Some(_), n, None) => format!("the end of the students' run {}", self.run_number(n)),
                    (Some(_), _, Some(_)) => "the end of the sweep".into(),
                }
            }
        }
    }
}

/// The run's checkpoints: what is finished so far, and the writer of the state file.
pub struct Checkpoints {
    dir: PathBuf,
    every: Duration,
    fingerprint: Fingerprint,
    started: Instant,
    /// Seconds of work before this process (a resumed run's earlier parts).
    seconds_before: f64,
    last_write: Cell<Instant>,
    writes: Cell<usize>,
    largest: Cell<usize>,
    write_seconds: Cell<f64>,
    progress: RefCell<Progress>,
    /// Finished phases' tensors that later phases read.
    tensors: RefCell<BTreeMap<String, Vec<f32>>>,
    /// The interrupted training group, until its phase takes it back.
    pending: RefCell<Option<SavedTraining>>,
}

impl Checkpoints {
    /// Checkpoints of a new run into `dir`, which [`check_new_dir`] accepted.
    pub fn start(dir: &Path, every: Duration, fingerprint: Fingerprint) -> Result<Checkpoints> {
        let checkpoints = Self::with(dir, every, fingerprint, Progress::default(), BTreeMap::new(), None);
        // From now on the directory always holds a state to resume.
        checkpoints.write(None, BTreeMap::new(), Instant::now())?;
        Ok(checkpoints)
    }

    /// Checkpoints of a resumed run, from its saved state in `dir` (found writable before),
    /// which must have been written with the same `fingerprint`.
    pub fn resume(dir: &Path, every: Duration, fingerprint: Fingerprint, saved: SavedState) -> Result<Checkpoints> {
        saved.check(&fingerprint)?;
        let from = saved.describe();
        let SavedState { header, mut tensors, .. } = saved;
        let mut progress = header.progress;
        progress.resumed.push(from);
        let pending = match header.training {
            Some(training) => {
                let mut positions = Vec::new();
                for (i, &(step, adam_t)) in training.positions.iter().enumerate() {
                    let name = format!("plan {i} metrics");
                    let metrics = tensors.remove(&name).with_context(|| format!("the state has no tensor `{name}`"))?;
                    positions.push(PlanPosition { step, adam_t, metrics });
                }
                let (models, phases) = std::mem::take(&mut tensors)
                    .into_iter()
                    .partition(|(k, _)| k.starts_with("model ") || k.starts_with("projection "));
                tensors = phases;
                Some(SavedTraining { training, positions, tensors: models })
            }
            None => None,
        };
        Ok(Self::with(dir, every, fingerprint, progress, tensors, pending))
    }

    fn with(
        dir: &Path,
        every: Duration,
        fingerprint: Fingerprint,
        progress: Progress,
        tensors: BTreeMap<String, Vec<f32>>,
        pending: Option<SavedTraining>,
    ) -> Checkpoints {
        remove_stale_temporaries(dir);
        Checkpoints {
            dir: dir.to_path_buf(),
            every,
            fingerprint,
            started: Instant::now(),
            seconds_before: progress.seconds,
            last_write: Cell::new(Instant::now()),
            writes: Cell::new(0),
            largest: Cell::new(0),
            write_seconds: Cell::new(0.0),
            progress: RefCell::new(progress),
            tensors: RefCell::new(tensors),
            pending: RefCell::new(pending),
        }
    }

    /// The finished phases' records so far.
    pub fn progress(&self) -> Progress {
        self.progress.borrow().clone()
    }

    /// A finished phase's tensor (`teacher`, `teacher logits train`, ...).
    pub fn tensor(&self, name: &str) -> Option<Vec<f32>> {
        self.tensors.borrow().get(name).cloned()
    }

    /// Whether a group's training, stopped part-way, waits to be resumed.
    pub fn has_pending_training(&self) -> bool {
        self.pending.borrow().is_some()
    }

    /// Seconds of work of the whole run so far, its earlier parts included.
    pub fn seconds(&self) -> f64 {
        self.seconds_before + self.started.elapsed().as_secs_f64()
    }

    /// Records a finished phase (`update` changes the records, `tensors` are kept for later
    /// phases) and writes the state; then pauses at `phase:NAME` when a test asks.
    pub fn phase_done(
        &self,
        name: &str,
        update: impl FnOnce(&mut Progress),
        tensors: Vec<(String, Vec<f32>)>,
    ) -> Result<()> {
        update(&mut self.progress.borrow_mut());
        self.tensors.borrow_mut().extend(tensors);
        self.write(None, BTreeMap::new(), Instant::now())?;
        pause_point(|| format!("phase:{name}"));
        Ok(())
    }

    /// The saved state of training group `group`, if the run was interrupted in it. Any other
    /// interrupted group here means the state does not belong to this sequence of phases.
    pub fn take_training(&self, group: &str) -> Result<Option<SavedTraining>> {
        let mut pending = self.pending.borrow_mut();
        match pending.as_ref() {
            None => Ok(None),
            Some(s) if s.training.group == group => Ok(pending.take()),
            Some(s) => {
                bail!("the run state was written in training group `{}`, but the run is at `{group}`", s.training.group)
            }
        }
    }

    /// Whether a step boundary should write the state: a signal asked to stop, or
    /// `--checkpoint-every` has passed since the last write.
    pub fn due(&self) -> bool {
        stop_requested() || self.last_write.get().elapsed() >= self.every
    }

    /// Writes the state of a training group: `positions` per plan, `tensors` named as in
    /// [`SavedTraining::tensors`]; `since` is when reading them from the device began (the
    /// time the run spends on its state counts from there).
    pub fn save_training(
        &self,
        training: Training,
        positions: &[PlanPosition],
        mut tensors: BTreeMap<String, Vec<f32>>,
        since: Instant,
    ) -> Result<()> {
        for (i, p) in positions.iter().enumerate() {
            tensors.insert(format!("plan {i} metrics"), p.metrics.clone());
        }
        self.write(Some(training), tensors, since)
    }

    /// How many states this process wrote, the largest's bytes, and the seconds they took.
    pub fn cost(&self) -> (usize, usize, f64) {
        (self.writes.get(), self.largest.get(), self.write_seconds.get())
    }

    fn write(
        &self,
        training: Option<Training>,
        group_tensors: BTreeMap<String, Vec<f32>>,
        since: Instant,
    ) -> Result<()> {
        let path = self.dir.join(STATE_FILE);
        let mut progress = self.progress.borrow().clone();
        progress.seconds = self.seconds();
        let header = Header { fingerprint: self.fingerprint.clone(), progress, training };
        let json = serde_json::to_string(&header)?;
        let kept = self.tensors.borrow();
        let all: BTreeMap<&str, &Vec<f32>> =
            kept.iter().chain(group_tensors.iter()).map(|(k, v)| (k.as_str(), v)).collect();
        let mut digest = Hasher::new();
        let shapes: Vec<[usize; 1]> = all.values().map(|v| [v.len()]).collect();
        let mut tensors = Vec::with_capacity(all.len());
        for ((name, values), shape) in all.iter().zip(&shapes) {
            digest.update(bytemuck::cast_slice::<f32, u8>(values));
            tensors.push((*name, shape.as_slice(), values.as_slice()));
        }
        digest.update(json.as_bytes());
        let metadata = BTreeMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
            ("sha256".to_string(), digest.hex()),
            ("state".to_string(), json),
        ]);
        let bytes = checkpoint::safetensors_bytes(&tensors, &metadata)?;
        let n = self.writes.get() + 1;
        self.writes.set(n);
        checkpoint::write_atomic_with(&path, &bytes, || pause_point(|| format!("state-write:{n}")))
            .context("cannot write the run state")?;
        self.last_write.set(Instant::now());
        self.largest.set(self.largest.get().max(bytes.len()));
        self.write_seconds.set(self.write_seconds.get() + since.elapsed().as_secs_f64());
        Ok(())
    }
}

/// Refuses a new run's checkpoint directory unless it can be created and written and holds
/// no run state (which the new run would overwrite).
pub fn check_new_dir(dir: &Path) -> Result<()> {
    if dir.join(STATE_FILE).exists() {
        bail!(
            "--checkpoint-dir {}: it already holds a run's state ({STATE_FILE}); resume that run with --resume {}, \
             or give another directory",
            dir.display(),
            dir.display()
        );
    }
    checkpoint::check_writable_dir("--checkpoint-dir", dir)
}

/// Temporary files of state writes that a killed process left behind.
fn remove_stale_temporaries(dir: &Path) {
    let prefix = format!(".{STATE_FILE}.tmp-");
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// The command that resumes this run: its own arguments with `--checkpoint-dir DIR` made
/// `--resume DIR`, quoted for a POSIX shell.
pub fn resume_command() -> String {
    let mut args: Vec<String> = std::env::args().collect();
    for i in 0..args.len() {
        if args[i] == "--checkpoint-dir" {
            args[i] = "--resume".into();
        } else if let Some(dir) = args[i].strip_prefix("--checkpoint-dir=") {
            args[i] = format!("--resume={dir}");
        }
    }
    args.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ")
}

fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=,:+@%".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state written before a setting existed ran it at its default: resuming at the default
    /// is allowed, at another value refused; recorded settings compare as always.
    #[test]
    fn settings_newer_than_the_state_compare_with_their_defaults() {
        let now = |cfg: &Config| Fingerprint(settings(cfg));
        let mut older = now(&Config::default());
        older.0.remove("--teacher-augment");
        assert_eq!(older.differences(&now(&Config::default())), Vec::<String>::new());
        let augmented = Config { teacher_augment: 2, ..Config::default() };
        assert_eq!(older.differences(&now(&augmented)), ["--teacher-augment: (not recorded) in the state, 2 now"]);
        let reseeded = Config { seed: 2, ..Config::default() };
        assert_eq!(now(&Config::default()).differences(&now(&reseeded)), ["--seed: 1 in the state, 2 now"]);
    }
}
