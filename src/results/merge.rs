//! `kd-wgpu merge`: the `--metrics-out` files of an experiment's shards (`--shard I/K`) put
//! back together into the metrics that one process running every run would have written: the
//! runs in run order, the sweep's cells in grid order, the statistics recomputed over all runs
//! by the code that computes them in one process, and the teacher's figures, which every
//! shard must report alike. Every check comes before anything is written.
//!
//! Times are not re-measured: each run's and sweep cell's times are its shard's; the teacher's
//! evaluation time is the first shard's; `data_seconds`, `teacher_logits_seconds` and
//! `total_seconds` add up all shards' (the work done on all machines, not any one's wall time);
//! `merged_shards` lists each shard's file and its own total.

use super::metrics::{MergedShard, Report, FORMAT};
use super::records::{RunResult, ShardRecord, StudentPair, SweepPoint};
use super::statistics::Statistics;
use crate::config::Scope;
use anyhow::{bail, ensure, Context, Result};
use std::path::{Path, PathBuf};

/// The settings the shards of one experiment share: all that change a bit of any result (the
/// shard itself, tuning, readbacks and where scratch students come from may differ), and
/// `--runs`, checked on its own.
const SHARED: [Scope; 4] = [Scope::Device, Scope::Teacher, Scope::Distilled, Scope::Scratch];

/// One shard's metrics file, read and checked on its own.
struct ShardFile {
    path: PathBuf,
    metrics: Report,
    record: ShardRecord,
}

impl ShardFile {
    fn read(path: &Path) -> Result<ShardFile> {
        let name = path.display();
        let metrics = super::metrics::read(path, "give the --metrics-out files the shards wrote")?;
        let Some(record) = metrics.shard.clone() else {
            bail!(
                "{name} holds the metrics of a whole experiment, not of a shard (it has no `shard` record): merge \
                 reads the --metrics-out files of runs started with --shard I/K"
            )
        };
        let runs = metrics.config.runs;
        ensure!(
            (1..=record.count).contains(&record.index) && record.run_indices == record.shard().share(runs),
            "{name} is damaged: its shard record (shard {}/{}, runs {:?}) is not a share of its --runs {runs}",
            record.index,
            record.count,
            record.run_indices
        );
        ensure!(
            record.run_indices.len() == metrics.runs.len() && record.sweep_cells.len() == metrics.sweep.len(),
            "{name} is damaged: its shard record lists {} runs and {} sweep cells, it holds {} and {}",
            record.run_indices.len(),
            record.sweep_cells.len(),
            metrics.runs.len(),
            metrics.sweep.len()
        );
        Ok(ShardFile { path: path.to_path_buf(), metrics, record })
    }
}

/// An experiment's merged metrics: as `--metrics-out` writes them, with the first shard's
/// settings (but `--shard`) and weight files, every result merged, and `merged_shards`.
pub struct Merged {
    pub report: Report,
}

impl Merged {
    /// Where the merged report's times come from, to print after it.
    pub fn times(&self) -> String {
        format!(
            "merged from {} shards: each run's times are its shard's, the teacher's evaluation shard 1's; data, \
             teacher logits and total add up all shards' (the work on all machines, not a wall time)\n",
            self.report.merged_shards.len()
        )
    }
}

/// Reads the shards' metrics files, checks that they are all the shards of one experiment,
/// and merges them.
pub fn merge(paths: &[PathBuf]) -> Result<Merged> {
    ensure!(!paths.is_empty(), "merge needs the --metrics-out files of an experiment's shards");
    let mut files = paths.iter().map(|p| ShardFile::read(p)).collect::<Result<Vec<_>>>()?;
    check_all_shards_once(&files)?;
    files.sort_by_key(|f| f.record.index);
    for f in &files[1..] {
        check_same_experiment(&files[0], f)?;
    }
    let first = &files[0].metrics;

    let mut runs: Vec<Option<StudentPair>> = vec![None; first.config.runs];
    let mut cells: Vec<Option<SweepPoint>> = vec![None; files.iter().map(|f| f.metrics.sweep.len()).sum()];
    for f in &files {
        for (&r, pair) in f.record.run_indices.iter().zip(&f.metrics.runs) {
            runs[r] = Some(pair.clone());
        }
        ensure!(
            f.record.sweep_cells == f.record.shard().share(cells.len()),
            "{} is damaged: its sweep cells {:?} are not shard {}'s share of the {} cells of the shards given",
            f.path.display(),
            f.record.sweep_cells,
            f.record.shard(),
            cells.len()
        );
        for (&c, point) in f.record.sweep_cells.iter().zip(&f.metrics.sweep) {
            cells[c] = Some(point.clone());
        }
    }
    let runs: Vec<StudentPair> = runs.into_iter().collect::<Option<_>>().context("the shards miss a run")?;
    let sweep: Vec<SweepPoint> = cells.into_iter().collect::<Option<_>>().context("the shards miss a sweep cell")?;
    let first_run = runs.first().context("the shards hold no run")?.clone();
    let sum = |seconds: fn(&Report) -> f64| files.iter().map(|f| seconds(&f.metrics)).sum::<f64>();
    let mut config = first.config.clone();
    config.shard = None;
    let report = Report {
        format: FORMAT.to_string(),
        adapter: first.adapter.clone(),
        config,
        weights: first.weights.clone(),
        teacher: first.teacher.clone(),
        distilled: first_run.distilled,
        scratch: first_run.scratch,
        teacher_after_distillation: first_run.teacher_after_distillation,
        // As one process computes them, over the same runs in the same order.
        statistics: (runs.len() > 1).then(|| Statistics::of(&runs)),
        runs,
        sweep,
        teacher_logits_seconds: sum(|m| m.teacher_logits_seconds),
        data_seconds: sum(|m| m.data_seconds),
        total_seconds: sum(|m| m.total_seconds),
        resumed_from: files
            .iter()
            .flat_map(|f| f.metrics.resumed_from.iter().map(|r| format!("shard {}: {r}", f.record.shard())))
            .collect(),
        shard: None,
        merged_shards: files
            .iter()
            .map(|f| MergedShard {
                file: f.path.display().to_string(),
                shard: f.record.shard().to_string(),
                total_seconds: f.metrics.total_seconds,
            })
            .collect(),
    };
    Ok(Merged { report })
}

/// Refuses files of different splits (K), a shard given twice, and a missing shard.
fn check_all_shards_once(files: &[ShardFile]) -> Result<()> {
    let name = |f: &ShardFile| format!("{} (shard {})", f.path.display(), f.record.shard());
    let count = files[0].record.count;
    if let Some(f) = files.iter().find(|f| f.record.count != count) {
        bail!(
            "{} and {} are shards of splits into {count} and {} shards: give the files of one experiment, all run \
             with the same K in --shard I/K",
            name(&files[0]),
            name(f),
            f.record.count
        );
    }
    let mut by_index: Vec<Option<&ShardFile>> = vec![None; count];
    for f in files {
        if let Some(other) = by_index[f.record.index - 1] {
            bail!(
                "{} and {} are both shard {}: give each shard's file once",
                other.path.display(),
                f.path.display(),
                f.record.shard()
            );
        }
        by_index[f.record.index - 1] = Some(f);
    }
    let missing: Vec<String> =
        (1..=count).filter(|i| by_index[i - 1].is_none()).map(|i| format!("{i}/{count}")).collect();
    ensure!(
        missing.is_empty(),
        "shard {} missing: merge needs the metrics files of all {count} shards (given: {})",
        missing.join(", "),
        files.iter().map(name).collect::<Vec<_>>().join(", ")
    );
    Ok(())
}

/// Refuses two shards of different experiments: other teachers or starting weights, other
/// settings, another device, or (which the rest should exclude) other teacher figures.
fn check_same_experiment(a: &ShardFile, b: &ShardFile) -> Result<()> {
    let (an, bn) = (a.path.display(), b.path.display());
    let (ar, br) = (&a.record, &b.record);
    if ar.teacher_weights_sha256 != br.teacher_weights_sha256 {
        bail!(
            "{an} and {bn} distilled from different teachers (weights SHA-256 {} and {}): every shard must be \
             given the same --teacher file",
            ar.teacher_weights_sha256,
            br.teacher_weights_sha256
        );
    }
    if ar.student_init_weights_sha256 != br.student_init_weights_sha256 {
        let digest = |d: &Option<String>| d.clone().unwrap_or_else(|| "none".into());
        bail!(
            "{an} and {bn} started their students from different --student-init weights (SHA-256 {} and {}): \
             every shard must be given the same file, or none",
            digest(&ar.student_init_weights_sha256),
            digest(&br.student_init_weights_sha256)
        );
    }
    let (ac, bc) = (&a.metrics.config, &b.metrics.config);
    let mut differences: Vec<String> = ac
        .differences(bc, &SHARED)
        .into_iter()
        .map(|(name, x, y)| format!("--{}: {x} in {an}, {y} in {bn}", name.replace('_', "-")))
        .collect();
    if ac.runs != bc.runs {
        differences.push(format!("--runs: {} in {an}, {} in {bn}", ac.runs, bc.runs));
    }
    if a.metrics.adapter != b.metrics.adapter {
        differences.push(format!("adapter: {} in {an}, {} in {bn}", a.metrics.adapter, b.metrics.adapter));
    }
    if !differences.is_empty() {
        bail!(
            "{an} and {bn} were run with different settings, so their runs are not one experiment's:\n  {}\nrun \
             every shard with the same flags but --shard, on the same kind of device",
            differences.join("\n  ")
        );
    }
    if !same_figures(&a.metrics.teacher, &b.metrics.teacher) {
        bail!(
            "{an} and {bn} report different test figures for the same teacher (accuracy {} and {}): their devices \
             computed different bits, so their runs cannot be merged as one experiment's",
            a.metrics.teacher.test_accuracy,
            b.metrics.teacher.test_accuracy
        );
    }
    Ok(())
}

/// Whether two records hold the same figures, times aside.
fn same_figures(a: &RunResult, b: &RunResult) -> bool {
    let epochs = |r: &RunResult| r.epochs.iter().map(|e| (e.loss, e.accuracy, e.steps)).collect::<Vec<_>>();
    (a.test_loss, a.test_accuracy, a.test_cross_entropy) == (b.test_loss, b.test_accuracy, b.test_cross_entropy)
        && a.classes.confusion == b.classes.confusion
        && epochs(a) == epochs(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Shard, WeightFiles};
    use crate::data::CLASS_NAMES;
    use crate::results::ClassResults;
    use crate::train::EpochStats;
    use serde_json::Value;

    /// A record whose figures all derive from `x`; class 9 has no test images (NaN, null in JSON).
    fn result(name: &str, x: f64) -> RunResult {
        let mut accuracy: Vec<f64> = (0..10).map(|c| x + 0.01 * c as f64).collect();
        accuracy[9] = f64::NAN;
        RunResult {
            name: name.into(),
            epochs: vec![EpochStats { loss: 1.0 - x, accuracy: x, steps: 10, seconds: x, terms: Default::default() }],
            test_loss: 2.0 - x,
            test_accuracy: x,
            test_cross_entropy: 3.0 - x,
            train_seconds: x,
            evaluate_seconds: x / 10.0,
            train_samples_per_second: 100.0 * x,
            classes: ClassResults {
                names: CLASS_NAMES.iter().map(|s| s.to_string()).collect(),
                confusion: vec![vec![(100.0 * x) as u64; 10]; 10],
                accuracy,
            },
        }
    }

    /// The report of one process over `runs` and `sweep`, or of `shard`'s share of them.
    fn report(cfg: &Config, runs: &[StudentPair], sweep: &[SweepPoint], shard: Option<Shard>) -> Report {
        let mine = |n: usize| shard.map_or_else(|| (0..n).collect(), |s| s.share(n));
        let (run_indices, sweep_cells) = (mine(runs.len()), mine(sweep.len()));
        let runs: Vec<StudentPair> = run_indices.iter().map(|&r| runs[r].clone()).collect();
        Report {
            format: FORMAT.into(),
            adapter: "lavapipe".into(),
            config: Config { shard, ..cfg.clone() },
            weights: WeightFiles::default(),
            teacher: result("teacher", 0.8),
            distilled: runs[0].distilled.clone(),
            scratch: runs[0].scratch.clone(),
            teacher_after_distillation: runs[0].teacher_after_distillation.clone(),
            statistics: (runs.len() > 1).then(|| Statistics::of(&runs)),
            runs,
            sweep: sweep_cells.iter().map(|&c| sweep[c].clone()).collect(),
            teacher_logits_seconds: 1.0,
            data_seconds: 2.0,
            total_seconds: 3.0,
            resumed_from: Vec::new(),
            shard: shard.map(|s| ShardRecord {
                index: s.index,
                count: s.count,
                run_indices,
                sweep_cells,
                teacher_weights_sha256: "ab".repeat(32),
                student_init_weights_sha256: None,
            }),
            merged_shards: Vec::new(),
        }
    }

    fn without_times(v: &mut Value) {
        match v {
            Value::Object(map) => {
                map.retain(|k, _| !k.contains("seconds") && k != "merged_shards");
                map.values_mut().for_each(without_times);
            }
            Value::Array(items) => items.iter_mut().for_each(without_times),
            _ => {}
        }
    }

    #[test]
    fn merged_shards_give_the_one_process_metrics() {
        let cfg = Config { runs: 5, sweep_alpha: vec![0.1, 0.5, 0.9], ..Config::default() };
        let runs: Vec<StudentPair> = (0..5)
            .map(|r| StudentPair {
                seed: 1 + 1000 * r as u64,
                distilled: result("distilled", 0.5 + 0.03 * r as f64),
                scratch: result("scratch", 0.52 + 0.01 * (r * r) as f64),
                teacher_after_distillation: Some(result("teacher after", 0.7 + 0.01 * r as f64)),
            })
            .collect();
        let sweep: Vec<SweepPoint> = cfg
            .sweep_grid()
            .into_iter()
            .enumerate()
            .map(|(c, (alpha, temperature))| SweepPoint {
                alpha,
                temperature,
                result: result("distilled", 0.4 + 0.1 * c as f64),
                teacher_after_distillation: None,
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = [3, 1, 2]
            .into_iter()
            .map(|i| {
                let path = dir.path().join(format!("shard-{i}.json"));
                let shard = report(&cfg, &runs, &sweep, Some(Shard { index: i, count: 3 }));
                std::fs::write(&path, serde_json::to_string_pretty(&shard).unwrap()).unwrap();
                path
            })
            .collect();
        let merged = merge(&paths).unwrap();
        let mut one: Value =
            serde_json::from_str(&serde_json::to_string(&report(&cfg, &runs, &sweep, None)).unwrap()).unwrap();
        let mut json: Value = serde_json::from_str(&serde_json::to_string(&merged.report).unwrap()).unwrap();
        assert_eq!(json["total_seconds"], 9.0, "the shards' work added up");
        assert_eq!(json["merged_shards"][0]["shard"], "1/3");
        without_times(&mut one);
        without_times(&mut json);
        assert_eq!(json, one);
        // The report too, but for its line of phase times (the shards' added up).
        let results = |text: String| text.lines().filter(|l| !l.starts_with("phases:")).collect::<Vec<_>>().join("\n");
        assert_eq!(results(merged.report.render()), results(report(&cfg, &runs, &sweep, None).render()));
    }
}
