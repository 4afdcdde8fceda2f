//! Experiments split across machines: `--shard I/K` runs the I-th of K shares of the students'
//! runs and of the sweep's cells, each with exactly the seeds it has in the one-process
//! experiment, from a teacher given as a file; [`super::merge`] puts the shards' metrics back
//! together. Run `r` (from 0) and sweep cell `c` (from 0, in grid order) belong to shard
//! `r mod K + 1` and `c mod K + 1`, so that every shard gets a like share of a long sweep too.

use super::config::{Config, StartingWeights, WeightFiles};
use super::resume::weights_digest;
use anyhow::{bail, ensure, Context, Result};
use std::fmt;
use std::str::FromStr;

/// `--shard I/K`: shard `index` (from 1) of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl FromStr for Shard {
    type Err = anyhow::Error;

    /// `I/K`, as the flag takes it; every refusal says what the form is.
    fn from_str(text: &str) -> Result<Shard> {
        let form = "give I/K, shard I of K, with 1 <= I <= K (for example 2/4)";
        let Some((i, k)) = text.split_once('/') else { bail!("`{text}` is not of the form I/K; {form}") };
        let number = |part: &str| part.trim().parse::<usize>().ok();
        let (Some(index), Some(count)) = (number(i), number(k)) else {
            bail!("`{text}` is not two whole numbers I/K; {form}")
        };
        ensure!(count >= 1, "K = 0 in `{text}`: there must be at least one shard; {form}");
        ensure!((1..=count).contains(&index), "there is no shard {index} of {count}; {form}");
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// As the flag spells it (`"2/4"`), in the metrics and in the run state's settings.
impl serde::Serialize for Shard {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Shard {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Shard, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(|e: anyhow::Error| serde::de::Error::custom(e))
    }
}

impl Shard {
    /// Whether item `i` (a run or a sweep cell, from 0) belongs to this shard.
    pub fn holds(&self, i: usize) -> bool {
        i % self.count == self.index - 1
    }

    /// This shard's items among `0..n`, in order.
    pub fn share(&self, n: usize) -> Vec<usize> {
        (0..n).filter(|&i| self.holds(i)).collect()
    }

    /// Refuses a shard that does not exist (as `--shard` parses none), and a split that leaves
    /// a shard without a run: its report would have no students.
    pub fn check(&self, runs: usize) -> Result<()> {
        ensure!(
            (1..=self.count).contains(&self.index),
            "--shard {self}: there is no shard {} of {}; I counts the shards from 1 to K",
            self.index,
            self.count
        );
        ensure!(
            self.count <= runs,
            "--shard {self}: with --runs {runs}, some of {} shards would hold no run (shard I holds runs I, I+K, \
             I+2K, ..); give K at most {runs}",
            self.count
        );
        Ok(())
    }
}

/// Refuses a shard without `--teacher`: a teacher trained in each shard would be a different
/// teacher in each, and the merged runs would not share one.
pub fn check_teacher(cfg: &Config, files: &WeightFiles) -> Result<()> {
    if let (Some(shard), None) = (cfg.shard, &files.teacher) {
        bail!(
            "--shard {shard} needs --teacher FILE: every shard must distil from the same teacher, so it is trained \
             once (a run with --save-dir writes teacher.safetensors) and given to each shard"
        );
    }
    Ok(())
}

/// The students' runs this process trains (indices from 0): all `--runs`, or the shard's share.
pub fn run_indices(cfg: &Config) -> Vec<usize> {
    let runs = cfg.runs.max(1);
    cfg.shard.map_or_else(|| (0..runs).collect(), |s| s.share(runs))
}

/// The sweep cells this process trains, with their index in [`Config::sweep_grid`]: all, or
/// the shard's share.
pub fn sweep_cells(cfg: &Config) -> Vec<(usize, (f32, f32))> {
    let grid = cfg.sweep_grid().into_iter().enumerate();
    grid.filter(|(c, _)| cfg.shard.is_none_or(|s| s.holds(*c))).collect()
}

/// What a shard's metrics record of its place in the experiment, for `kd-wgpu merge`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShardRecord {
    /// I of `--shard I/K`.
    pub index: usize,
    /// K.
    pub count: usize,
    /// The runs it trained, counted from 0, in the order of its `runs`.
    pub run_indices: Vec<usize>,
    /// The sweep cells it trained (from 0, in grid order: alphas, then temperatures within
    /// each), in the order of its `sweep`.
    pub sweep_cells: Vec<usize>,
    /// SHA-256 of the `--teacher` weights as loaded (f32, little-endian), as the run state's
    /// settings record them: the same weights in files with other metadata match.
    pub teacher_weights_sha256: String,
    /// The same for `--student-init`, when given.
    pub student_init_weights_sha256: Option<String>,
}

impl ShardRecord {
    pub fn of(cfg: &Config, starting: &StartingWeights) -> Result<Option<ShardRecord>> {
        let Some(shard) = cfg.shard else { return Ok(None) };
        let teacher = starting.teacher.as_deref().context("a shard's teacher comes from --teacher")?;
        Ok(Some(ShardRecord {
            index: shard.index,
            count: shard.count,
            run_indices: run_indices(cfg),
            sweep_cells: sweep_cells(cfg).into_iter().map(|(c, _)| c).collect(),
            teacher_weights_sha256: weights_digest(teacher),
            student_init_weights_sha256: starting.student_init.as_deref().map(weights_digest),
        }))
    }

    pub fn shard(&self) -> Shard {
        Shard { index: self.index, count: self.count }
    }

    /// Its runs, numbered from 1 as the report numbers them, e.g. `runs 1, 3 and 5 of 5`.
    pub fn describe(&self, runs: usize) -> String {
        let numbers: Vec<String> = self.run_indices.iter().map(|r| (r + 1).to_string()).collect();
        let cells = match self.sweep_cells.len() {
            0 => String::new(),
            n => format!(" and {n} sweep cell(s)"),
        };
        format!("shard {}: runs {} of {runs}{cells}", self.shard(), numbers.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_split_runs_round_robin() {
        let s: Shard = "2/3".parse().unwrap();
        assert_eq!(s, Shard { index: 2, count: 3 });
        assert_eq!(s.share(8), [1, 4, 7]);
        assert_eq!(s.to_string(), "2/3");
        assert_eq!(serde_json::to_string(&s).unwrap(), r#""2/3""#);
        assert_eq!(serde_json::from_str::<Shard>(r#""2/3""#).unwrap(), s);
        let all: Vec<usize> = (1..=3).flat_map(|i| Shard { index: i, count: 3 }.share(8)).collect();
        assert_eq!(all.len(), 8, "every run in exactly one shard");
        for (text, expect) in [("3/2", "no shard 3 of 2"), ("0/2", "no shard 0 of 2"), ("1/0", "K = 0"), ("1-2", "I/K")]
        {
            let msg = text.parse::<Shard>().unwrap_err().to_string();
            assert!(msg.contains(expect), "`{text}`: {msg}");
        }
        assert!("a/2".parse::<Shard>().is_err() && "".parse::<Shard>().is_err() && "1/2/3".parse::<Shard>().is_err());
        assert!(Shard { index: 1, count: 4 }.check(3).unwrap_err().to_string().contains("K at most 3"));
        assert!(Shard { index: 0, count: 2 }.check(3).unwrap_err().to_string().contains("no shard 0 of 2"));
        assert!(Shard { index: 1, count: 0 }.check(3).is_err());
    }

    #[test]
    fn a_shard_trains_its_own_runs_and_sweep_cells() {
        let cfg = Config {
            runs: 5,
            sweep_alpha: vec![0.1, 0.5],
            sweep_temperature: vec![2.0, 4.0, 8.0],
            shard: Some(Shard { index: 2, count: 2 }),
            ..Config::default()
        };
        assert_eq!(run_indices(&cfg), [1, 3]);
        let cells = sweep_cells(&cfg);
        assert_eq!(cells, [(1, (0.1, 4.0)), (3, (0.5, 2.0)), (5, (0.5, 8.0))]);
        let whole = Config { shard: None, ..cfg };
        assert_eq!(run_indices(&whole), [0, 1, 2, 3, 4]);
        assert_eq!(sweep_cells(&whole).len(), 6);
    }
}
