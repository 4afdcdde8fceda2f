//! Autotuning: where an op has more than one entry point that gives the same bits (the matrix
//! product's tiles, the frozen teacher's logits batch), the candidates are timed on the device
//! at first use and the fastest is kept, as cuDNN's benchmark mode and Burn's autotune do.
//! What was chosen is cached per adapter, driver and kernel family in the platform's cache
//! directory (`$XDG_CACHE_HOME/kd-wgpu`, `~/.cache/kd-wgpu`, ...), so a device is tuned once.
//!
//! Only choices that cannot change a bit are tuned: an op offers as candidates the entries
//! that add in the same order. What would change bits (how many parts a product's K is split
//! into, the batch of a training step or an evaluation) is fixed by the shape and the
//! settings, never timed.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// `--tune`: how entries are chosen where an op has several that give the same bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub enum TuneMode {
    /// Every op runs its built-in default; nothing is timed, read or written.
    Off,
    /// Choices come from the cache; what is missing is timed on the device and added.
    #[default]
    Cached,
    /// Everything is timed again and the cache rewritten.
    Full,
}

/// Timed runs of each candidate, interleaved: at most ROUNDS, fewer once a candidate's runs
/// add up to ENOUGH_SECONDS (a long run is its own average; a short one needs repeats).
const ROUNDS: usize = 3;
const ENOUGH_SECONDS: f64 = 0.5;

/// How much faster than the default a candidate must be, in every round, to replace it:
/// smaller differences are within what a busy machine's timings wander by.
const MIN_GAIN: f64 = 1.05;

/// Bumped when the file's layout or the meaning of its keys changes.
const FORMAT: u32 = 1;

/// One tuned op: each candidate's time and the one kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// The op and its shape, e.g. `matmul 1568x512x2304 Normal ...`.
    pub op: String,
    pub chosen: String,
    /// What runs without tuning.
    pub default: String,
    /// Seconds per candidate (the fastest of its timed runs), in the op's order.
    pub seconds: Vec<(String, f64)>,
    /// What choosing took, pipeline compilation included.
    #[serde(default)]
    pub tuning_seconds: f64,
}

impl Choice {
    pub fn seconds_of(&self, candidate: &str) -> Option<f64> {
        self.seconds.iter().find(|(c, _)| c == candidate).map(|&(_, s)| s)
    }
}

/// The cache file of one device: whose it is, and its choices by key.
#[derive(Serialize, Deserialize)]
struct CacheFile {
    format: u32,
    program: String,
    device: String,
    choices: BTreeMap<String, Choice>,
}

/// The tuner of one device. `Gpu` holds it; ops call [`Tuner::choose`].
pub struct Tuner {
    mode: TuneMode,
    /// Adapter, backend, driver and kernel family: whose timings the cache holds.
    device: String,
    file: Option<PathBuf>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Choices known: read from the file and timed by this process.
    choices: BTreeMap<String, Choice>,
    read: bool,
    /// Keys timed by this process (`Full` times each key once).
    timed: BTreeSet<String>,
    /// Keys this process used, in first-use order, for reports.
    used: Vec<String>,
    seconds: f64,
    forced: Option<Force>,
    write_warned: bool,
}

/// An answer [`Tuner::choose`] gives whatever the mode and the cache say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Force {
    /// Every op's built-in default: the untuned program, for comparisons.
    Default,
    /// Every op's candidate of this index (its last where it has fewer): how the tests show
    /// that each candidate gives the same bytes.
    Candidate(usize),
}

/// What tuning did in this process.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TuneSummary {
    pub mode: String,
    pub file: Option<PathBuf>,
    /// Ops timed by this process, and the seconds that took (pipeline compilation included).
    pub timed: usize,
    pub seconds: f64,
    /// Every tuned op this process ran, from the cache or timed.
    pub choices: Vec<Choice>,
}

impl Tuner {
    /// A tuner that always answers the default (tests, exported plans).
    pub fn off() -> Tuner {
        Tuner { mode: TuneMode::Off, device: String::new(), file: None, state: Mutex::default() }
    }

    /// The tuner of the device that `device` describes, its cache in `dir` (None: the
    /// platform's cache directory; where there is none, choices live for this process only).
    pub fn new(mode: TuneMode, device: String, dir: Option<PathBuf>) -> Tuner {
        let dir = dir.or_else(|| dirs::cache_dir().map(|d| d.join("kd-wgpu")));
        let name = format!("tune-{}.json", crate::digest::Hasher::new().update(&device).short_hex(8));
        Tuner { mode, file: dir.map(|d| d.join(name)), device, state: Mutex::default() }
    }

    pub fn mode(&self) -> TuneMode {
        self.mode
    }

    /// Makes every choice `force`'s until called with None.
    pub fn force(&self, force: Option<Force>) {
        self.state.lock().unwrap().forced = force;
    }

    /// The index among `candidates` that op `key` runs: `default` when tuning is off or there
    /// is nothing to choose, the cached choice, or the fastest by `time(index)`, which runs
    /// candidate `index` once and returns its seconds.
    pub fn choose(
        &self,
        key: &str,
        candidates: &[String],
        default: usize,
        mut time: impl FnMut(usize) -> Result<f64>,
    ) -> Result<usize> {
        let mut state = self.state.lock().unwrap();
        match state.forced {
            Some(Force::Candidate(i)) => return Ok(i.min(candidates.len() - 1)),
            Some(Force::Default) => return Ok(default),
            None => {}
        }
        if self.mode == TuneMode::Off || candidates.len() < 2 {
            return Ok(default);
        }
        // The candidates are part of the key: a program with other entries tunes afresh.
        let key = format!("{key} [{}]", candidates.join(", "));
        if !state.read {
            state.read = true;
            if self.mode == TuneMode::Cached {
                state.choices = self.read_file();
            }
        }
        if !state.used.contains(&key) {
            state.used.push(key.clone());
        }
        let reuse = self.mode == TuneMode::Cached || state.timed.contains(&key);
        if let Some(c) = state.choices.get(&key).filter(|_| reuse) {
            if let Some(i) = candidates.iter().position(|name| *name == c.chosen) {
                return Ok(i);
            }
        }
        if state.timed.is_empty() {
            let kept = self.file.as_ref().map_or("for this run only".into(), |f| format!("kept in {}", f.display()));
            println!("Tuning: timing the kernels' equivalent entries on this device ({kept})");
        }
        // Timing may build plans whose ops ask the tuner in turn: the lock is not held.
        drop(state);
        let start = Instant::now();
        // One untimed run each (it compiles the pipeline), then rounds over the candidates in
        // turn, keeping each one's fastest: the machine's own noise (other processes, clock
        // changes) only ever adds time, and interleaving spreads it over the candidates.
        for i in 0..candidates.len() {
            time(i)?;
        }
        // rounds[r][i]: candidate i's time in round r, None once its runs were enough.
        let mut rounds: Vec<Vec<Option<f64>>> = Vec::new();
        let mut spent = vec![0.0; candidates.len()];
        for _ in 0..ROUNDS {
            let mut round = vec![None; candidates.len()];
            for (i, slot) in round.iter_mut().enumerate() {
                if spent[i] < ENOUGH_SECONDS {
                    let t = time(i)?;
                    *slot = Some(t);
                    spent[i] += t;
                }
            }
            rounds.push(round);
        }
        let best_seconds =
            (0..candidates.len()).map(|i| rounds.iter().filter_map(|r| r[i]).fold(f64::INFINITY, f64::min));
        let seconds: Vec<(String, f64)> = candidates.iter().cloned().zip(best_seconds).collect();
        let best = paired_winner(&rounds, default);
        let tuning_seconds = start.elapsed().as_secs_f64();
        let (chosen, default) = (candidates[best].clone(), candidates[default].clone());
        let choice = Choice { op: key.clone(), chosen, default, seconds, tuning_seconds };
        let mut state = self.state.lock().unwrap();
        state.seconds += tuning_seconds;
        state.timed.insert(key.clone());
        state.choices.insert(key, choice);
        self.write_file(&mut state);
        Ok(best)
    }

    /// What this process tuned and ran.
    pub fn summary(&self) -> TuneSummary {
        let state = self.state.lock().unwrap();
        TuneSummary {
            mode: format!("{:?}", self.mode).to_lowercase(),
            file: self.file.clone(),
            timed: state.timed.len(),
            seconds: state.seconds,
            choices: state.used.iter().filter_map(|k| state.choices.get(k).cloned()).collect(),
        }
    }

    /// The cache's choices; an unreadable, corrupt, foreign or outdated file costs one warning
    /// and is rewritten at the next choice.
    fn read_file(&self) -> BTreeMap<String, Choice> {
        self.parse_file().unwrap_or_else(|why| {
            let path = self.file.as_deref().unwrap_or(Path::new(""));
            eprintln!("warning: ignoring the tuning cache {}: {why}; it will be rewritten", path.display());
            BTreeMap::new()
        })
    }

    /// The file's choices, none where there is no file; Err says why the file is not usable.
    fn parse_file(&self) -> Result<BTreeMap<String, Choice>, String> {
        let Some(path) = &self.file else { return Ok(BTreeMap::new()) };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(format!("it cannot be read ({e})")),
        };
        let file: CacheFile = serde_json::from_str(&text).map_err(|e| format!("it is not a tuning cache ({e})"))?;
        let program = env!("CARGO_PKG_VERSION");
        if file.format != FORMAT || file.program != program {
            return Err(format!(
                "it was written by kd-wgpu {} (cache format {}), this is {program} (format {FORMAT})",
                file.program, file.format
            ));
        }
        if file.device != self.device {
            return Err(format!("it holds the timings of another device ({})", file.device));
        }
        Ok(file.choices)
    }

    /// Writes every known choice, with those other processes added to the file meanwhile,
    /// atomically (a temporary file renamed over the old one); a directory that cannot be
    /// written costs one warning, not the run.
    fn write_file(&self, state: &mut State) {
        let Some(path) = &self.file else { return };
        let mut choices = self.parse_file().unwrap_or_default();
        choices.extend(state.choices.iter().map(|(k, c)| (k.clone(), c.clone())));
        let file = CacheFile {
            format: FORMAT,
            program: env!("CARGO_PKG_VERSION").into(),
            device: self.device.clone(),
            choices,
        };
        if let Err(e) = write_atomically(path, &serde_json::to_vec_pretty(&file).expect("choices serialize")) {
            if !state.write_warned {
                state.write_warned = true;
                eprintln!(
                    "warning: the tuning cache {} cannot be written ({e:#}); kernels will be timed again next run",
                    path.display()
                );
            }
        }
    }
}

/// The candidate that beat `default` by MIN_GAIN in every round where both ran, by the most
/// in its worst such round; `default` if none did. Each round times the candidates back to
/// back, so a slow spell of the machine weighs on both sides of a comparison.
fn paired_winner(rounds: &[Vec<Option<f64>>], default: usize) -> usize {
    let worst_gain = |i: usize| {
        let gains = rounds.iter().filter_map(|r| Some(r[default]? / r[i]?));
        gains.fold(None, |worst: Option<f64>, g| Some(worst.map_or(g, |w| w.min(g))))
    };
    let count = rounds.first().map_or(0, Vec::len);
    (0..count)
        .filter(|&i| i != default)
        .filter_map(|i| worst_gain(i).map(|g| (i, g)))
        .filter(|&(_, g)| g >= MIN_GAIN)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(default, |(i, _)| i)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    use anyhow::Context;
    let dir = path.parent().context("the cache path has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // A name no other process or thread writes at the same time.
    static WRITES: AtomicUsize = AtomicUsize::new(0);
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_extension(format!("json.{}-{n}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("entry {i}")).collect()
    }

    #[test]
    fn the_fastest_candidate_is_kept_and_cached() {
        let dir = tempfile::tempdir().unwrap();
        let tuner = Tuner::new(TuneMode::Cached, "device A".into(), Some(dir.path().into()));
        let times = [3.0, 1.0, 2.0];
        assert_eq!(tuner.choose("op", &names(3), 0, |i| Ok(times[i])).unwrap(), 1);
        // The same key again, in this process and in the next: no timing.
        assert_eq!(tuner.choose("op", &names(3), 0, |_| panic!("timed twice")).unwrap(), 1);
        let again = Tuner::new(TuneMode::Cached, "device A".into(), Some(dir.path().into()));
        assert_eq!(again.choose("op", &names(3), 0, |_| panic!("the cache was not used")).unwrap(), 1);
        let summary = again.summary();
        assert_eq!((summary.timed, summary.choices.len()), (0, 1));
        assert_eq!(summary.choices[0].seconds_of("entry 2"), Some(2.0));
        // Other candidates are another key.
        assert_eq!(again.choose("op", &names(2), 0, |i| Ok(times[i])).unwrap(), 1);
        // `Full` times again once per process; `Off` never.
        let full = Tuner::new(TuneMode::Full, "device A".into(), Some(dir.path().into()));
        assert_eq!(full.choose("op", &names(3), 0, |i| Ok([1.0, 3.0, 2.0][i])).unwrap(), 0);
        assert_eq!(full.choose("op", &names(3), 0, |_| panic!("timed twice")).unwrap(), 0);
        let off = Tuner::new(TuneMode::Off, "device A".into(), Some(dir.path().into()));
        assert_eq!(off.choose("op", &names(3), 2, |_| panic!("timed with tuning off")).unwrap(), 2);
    }

    /// A candidate that is faster at its best but not in every round keeps the default.
    #[test]
    fn a_candidate_must_win_every_round() {
        let tuner = Tuner::new(TuneMode::Cached, "device".into(), None);
        let mut runs = [0; 2];
        // Warm-up, then three rounds: candidate 1 wins twice by far, loses once.
        let times = [[9.0, 0.10, 0.10, 0.10], [9.0, 0.05, 0.12, 0.05]];
        let mut time = |i: usize| {
            runs[i] += 1;
            Ok(times[i][runs[i] - 1])
        };
        assert_eq!(tuner.choose("op", &names(2), 0, &mut time).unwrap(), 0);
        let c = &tuner.summary().choices[0];
        assert_eq!((c.seconds_of("entry 0"), c.seconds_of("entry 1")), (Some(0.10), Some(0.05)));
        assert_eq!(paired_winner(&[vec![Some(1.0), Some(0.9)], vec![Some(1.2), Some(1.1)]], 0), 1);
        assert_eq!(paired_winner(&[vec![Some(1.0), Some(0.9)], vec![Some(1.0), None]], 0), 1);
    }

    #[test]
    fn near_ties_keep_the_default_and_forcing_overrides_everything() {
        let tuner = Tuner::new(TuneMode::Cached, "device".into(), None);
        assert_eq!(tuner.choose("op", &names(3), 2, |i| Ok([0.97, 1.0, 1.0][i])).unwrap(), 2);
        tuner.force(Some(Force::Candidate(5)));
        assert_eq!(tuner.choose("op", &names(3), 0, |_| panic!("timed while forced")).unwrap(), 2);
        tuner.force(Some(Force::Default));
        assert_eq!(tuner.choose("op", &names(3), 1, |_| panic!("timed while forced")).unwrap(), 1);
        tuner.force(None);
        assert_eq!(tuner.choose("op", &names(3), 0, |_| panic!("timed twice")).unwrap(), 2);
    }

    #[test]
    fn corrupt_foreign_or_outdated_caches_are_ignored_and_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let tuner = Tuner::new(TuneMode::Cached, "device A".into(), Some(dir.path().into()));
        let path = tuner.file.clone().unwrap();
        tuner.choose("op", &names(2), 0, |i| Ok([2.0, 1.0][i])).unwrap();
        let good = std::fs::read_to_string(&path).unwrap();
        let foreign = good.replace("\"device A\"", "\"device B\"");
        let outdated = good.replace(&format!("\"format\": {FORMAT}"), "\"format\": 0");
        for bad in ["{ not json", &foreign[..], &outdated[..], &good[..good.len() / 2]] {
            std::fs::write(&path, bad).unwrap();
            let tuner = Tuner::new(TuneMode::Cached, "device A".into(), Some(dir.path().into()));
            let mut timed = false;
            let i = tuner.choose("op", &names(2), 0, |i| {
                timed = true;
                Ok([2.0, 1.0][i])
            });
            assert_eq!(i.unwrap(), 1);
            assert!(timed, "a bad cache must not be trusted: {bad:.40}");
            let rewritten = tuner.parse_file().expect("the cache was rewritten");
            assert_eq!(rewritten.values().map(|c| c.chosen.as_str()).collect::<Vec<_>>(), ["entry 1"]);
        }
    }

    #[test]
    fn an_unwritable_cache_directory_costs_a_warning_not_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("a file, not a directory");
        std::fs::write(&blocker, b"").unwrap();
        let tuner = Tuner::new(TuneMode::Cached, "device".into(), Some(blocker.join("kd-wgpu")));
        assert_eq!(tuner.choose("op", &names(2), 0, |i| Ok([2.0, 1.0][i])).unwrap(), 1);
        assert_eq!(tuner.choose("op", &names(2), 0, |_| panic!("timed twice")).unwrap(), 1);
    }
}
