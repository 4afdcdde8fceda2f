//! `--scratch-from METRICS.json`: each run's scratch student taken from an earlier experiment's
//! metrics instead of trained again. The scratch student never sees the teacher: its starting
//! weights, sample order, labels and steps follow from the seed and the student's settings
//! alone, so every regime of one student (other teachers, alphas, temperatures, distillation
//! terms) trains the same scratch students, to the last bit on one device. Taking them from
//! the first regime's file leaves the distilled student alone on the device.
//!
//! The earlier file is accepted only where its scratch students are the ones this run would
//! train: the same settings of scopes [`Scope::Device`] and [`Scope::Scratch`], the same
//! adapter, and each run's seed there.

use super::seeds::StudentSeeds;
use crate::config::{Config, Scope};
use crate::results::{RunResult, StudentPair};
use anyhow::{bail, ensure, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The earlier experiment's scratch students, checked against this run's settings.
pub struct EarlierScratch {
    path: PathBuf,
    adapter: String,
    runs: Vec<StudentPair>,
}

/// A setting's value as the messages give it: `none` for null, strings without quotes.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "none".into(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

impl EarlierScratch {
    /// Reads the file and refuses it, before any work, unless its settings give this run's
    /// scratch students (the adapter is checked once the device is open: [`Self::check_adapter`]).
    pub fn read(path: &Path, cfg: &Config) -> Result<EarlierScratch> {
        let name = path.display();
        let metrics = crate::results::read(path, "give an earlier run's --metrics-out")
            .map_err(|e| e.context(format!("--scratch-from {name}")))?;
        ensure!(
            metrics.shard.is_none(),
            "--scratch-from {name}: one shard's metrics (--shard I/K) lack the other shards' runs; give the file \
             `kd-wgpu merge` wrote"
        );
        let differ: Vec<String> = metrics
            .config
            .differences(cfg, &[Scope::Device, Scope::Scratch])
            .into_iter()
            .map(|(k, then, here)| format!("--{}: {} there, {} here", k.replace('_', "-"), text(&then), text(&here)))
            .collect();
        if !differ.is_empty() {
            bail!(
                "--scratch-from {name}: its scratch students were trained with other settings ({}); they are not \
                 this run's",
                differ.join("; ")
            );
        }
        let (here, there) = (cfg.runs.max(1), metrics.runs.len());
        // One run keeps the seed program's fresh initialisation of the scratch student, several
        // pair it with the distilled one (StudentSeeds): other starting weights.
        ensure!(
            (here > 1) == (there > 1) && there >= here,
            "--scratch-from {name}: it holds {there} run(s), this run needs {here} with {} students",
            if here > 1 { "paired" } else { "unpaired (one run)" }
        );
        // Each run's seed as this run draws it (paired students with several runs; --student-init,
        // which would pair them too, is refused beside --scratch-from).
        let paired = here > 1;
        for r in super::shards::run_indices(cfg) {
            let (seed, theirs) = (StudentSeeds::of(cfg.seed, r, paired).run, metrics.runs[r].seed);
            ensure!(seed == theirs, "--scratch-from {name}: its run {} has seed {theirs}, this one {seed}", r + 1);
        }
        Ok(EarlierScratch { path: path.to_path_buf(), adapter: metrics.adapter, runs: metrics.runs })
    }

    /// Refuses scratch students trained on another device, whose bits may differ.
    pub fn check_adapter(&self, adapter: &str) -> Result<()> {
        ensure!(
            self.adapter == adapter,
            "--scratch-from {}: its students were trained on {}, not on this device ({adapter})",
            self.path.display(),
            self.adapter
        );
        Ok(())
    }

    /// Run `r`'s scratch student (its seed checked by [`Self::read`]).
    pub fn scratch(&self, r: usize) -> &RunResult {
        &self.runs[r].scratch
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
