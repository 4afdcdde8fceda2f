//! The metrics file (`--metrics-out`): what an experiment found, and its one reader.

use super::records::{RunResult, ShardRecord, StudentPair, SweepPoint};
use super::statistics::Statistics;
use crate::config::{Config, WeightFiles};
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::Path;

/// The metrics file's format; a file of another is refused by [`read`] with its name.
pub const FORMAT: &str = "kd-wgpu-metrics/1";

fn format() -> String {
    FORMAT.to_string()
}

/// A field derived from others: skipped when read, and computed again from them.
fn derived<'de, D: serde::Deserializer<'de>, T>(d: D) -> std::result::Result<Option<T>, D::Error> {
    serde::de::IgnoredAny::deserialize(d)?;
    Ok(None)
}

/// What an experiment found: the metrics file, as `--metrics-out` writes it and every
/// subcommand that reads finished experiments reads it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// [`FORMAT`]; absent from files written before it was named, which are of format 1.
    #[serde(default = "format")]
    pub format: String,
    pub adapter: String,
    pub config: Config,
    pub weights: WeightFiles,
    pub teacher: RunResult,
    /// The first run's students.
    pub distilled: RunResult,
    pub scratch: RunResult,
    /// With --distill-teacher trainable, the first run's teacher after distillation (the
    /// distilled student's combined test loss is computed against it, as Keras does).
    pub teacher_after_distillation: Option<RunResult>,
    /// Every run's students (`--runs`), the first included.
    pub runs: Vec<StudentPair>,
    /// Over the runs, when there are several. Derived from `runs`: computed again when a
    /// file is read, not read from it.
    #[serde(default, deserialize_with = "derived")]
    pub statistics: Option<Statistics>,
    /// Distilled students over the --sweep-alpha x --sweep-temperature grid.
    pub sweep: Vec<SweepPoint>,
    /// The frozen teacher's tables: its logits and, with a feature term, its layer's outputs
    /// where they are kept in memory (`--feature-table-gib`).
    pub teacher_logits_seconds: f64,
    pub data_seconds: f64,
    /// The run's work, over all its parts when it was resumed.
    pub total_seconds: f64,
    /// Where the run was resumed (`--resume`), each time it was; the times of the phases
    /// then add the parts before and after each interruption.
    #[serde(default)]
    pub resumed_from: Vec<String>,
    /// With `--shard I/K`: the shard, its runs and sweep cells, and its teacher's digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardRecord>,
    /// Written by `kd-wgpu merge`: the shards it put together.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_shards: Vec<MergedShard>,
}

/// One shard of a merged experiment.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergedShard {
    /// Its metrics file, as given to `merge`.
    pub file: String,
    /// `I/K`.
    pub shard: String,
    pub total_seconds: f64,
}

/// Reads a metrics file (`--metrics-out`, or `merge`'s), refusing with one message a file that
/// is not one (`give` says what to give instead) and one of another format version.
pub fn read(path: &Path, give: &str) -> Result<Report> {
    let name = path.display();
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {name}"))?;
    let json: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{name} is not valid JSON (truncated or corrupt?); {give}"))?;
    match json.get("format").and_then(|f| f.as_str()) {
        None | Some(FORMAT) => {}
        Some(other) => bail!(
            "{name} is a metrics file of format {other}; this build (kd-wgpu {}) reads {FORMAT}: read it with the \
             build that wrote it",
            env!("CARGO_PKG_VERSION")
        ),
    }
    // From the text, not the value: an f32 setting reads back from its shortest decimal.
    let mut report: Report = serde_json::from_slice(&bytes)
        .with_context(|| format!("{name} is not a kd-wgpu metrics file of format {FORMAT}; {give}"))?;
    report.statistics = (report.runs.len() > 1).then(|| Statistics::of(&report.runs));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metrics_file_in_docs_reads_and_writes_back_the_same() {
        let mut read_any = 0;
        for entry in std::fs::read_dir("docs").unwrap() {
            let path = entry.unwrap().path();
            // The first full run's file predates the results per class, which every reader needs
            // (it never loaded in `compare` or as `--scratch-from`); its figures are in docs as text.
            if path.extension().is_none_or(|e| e != "json") || path.ends_with("full-run-lavapipe.json") {
                continue;
            }
            let report = read(&path, "").unwrap_or_else(|e| panic!("{e:#}"));
            // Written again, then read: the same settings and runs (format and statistics aside,
            // which the file may lack and the reader derives).
            let text = serde_json::to_string(&report).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let again_path = dir.path().join("again.json");
            std::fs::write(&again_path, &text).unwrap();
            let again = read(&again_path, "").unwrap();
            assert_eq!(serde_json::to_string(&again).unwrap(), text, "{}", path.display());
            read_any += 1;
        }
        assert!(read_any >= 10, "docs/ holds the committed experiments' metrics");
    }

    #[test]
    fn unknown_fields_and_other_formats_are_refused_by_name() {
        let text = std::fs::read_to_string("docs/runs10-keras-defaults-lavapipe.json").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let refused = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
            edit(&mut json);
            let path = dir.path().join("edited.json");
            std::fs::write(&path, json.to_string()).unwrap();
            format!("{:#}", read(&path, "give X").expect_err("refused"))
        };
        let msg = refused(&|j| j["config"]["warmup_epochs"] = 3.into());
        assert!(msg.contains("not a kd-wgpu metrics file of format") && msg.contains("warmup_epochs"), "{msg}");
        assert!(msg.contains("give X"), "{msg}");
        let msg = refused(&|j| j["runs"][0]["distilled"]["flops"] = 1.into());
        assert!(msg.contains("flops"), "{msg}");
        let msg = refused(&|j| j["format"] = "kd-wgpu-metrics/2".into());
        assert!(msg.contains("of format kd-wgpu-metrics/2") && msg.contains(FORMAT), "{msg}");
        // A setting the file does not record ran at its default.
        let path = dir.path().join("old.json");
        let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
        json["config"].as_object_mut().unwrap().remove("labelled");
        std::fs::write(&path, json.to_string()).unwrap();
        assert_eq!(read(&path, "").unwrap().config.labelled, None);
    }
}
