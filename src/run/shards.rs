//! Experiments split across machines: `--shard I/K` runs the I-th of K shares of the students'
//! runs and of the sweep's cells, each with exactly the seeds it has in the one-process
//! experiment, from a teacher given as a file; [`crate::results::merge`] puts the shards' metrics back
//! together. Run `r` (from 0) and sweep cell `c` (from 0, in grid order) belong to shard
//! `r mod K + 1` and `c mod K + 1`, so that every shard gets a like share of a long sweep too.

use super::weights::StartingWeights;
use crate::config::{Config, WeightFiles};
use crate::digest::weights_digest;
use crate::results::ShardRecord;
use anyhow::{bail, Context, Result};

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

/// What a shard's metrics record of its place in the experiment (None without `--shard`).
pub fn record(cfg: &Config, starting: &StartingWeights) -> Result<Option<ShardRecord>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Shard;

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
