//! `kd-wgpu compare`: several experiments' paired results side by side, one row each, as
//! README's "When does distillation help?" table: the regime's settings as its metrics file
//! records them, the teacher's test accuracy (and its file, where `--teacher` gave one), each
//! student's mean and standard deviation, the paired difference with its 95% interval, and the
//! classes whose paired difference has an interval clear of zero. The statistics are
//! recomputed from the file's runs by the code that computes them in one process (as `merge`
//! does). `--plot` draws the same rows ([`crate::plot::compare_svg`]). `--against LABEL` adds
//! a second table: each experiment's distilled students against LABEL's, run by run, where
//! the runs pair (the same seeds, and scratch students equal to the last digit: the same
//! starting weights and order).

use super::metrics::Report;
use super::records::StudentPair;
use super::statistics::Statistics;
use anyhow::{bail, ensure, Result};
use std::path::PathBuf;

/// One experiment of the comparison.
pub struct Regime {
    pub label: String,
    pub path: PathBuf,
    /// The settings that make the regime, in words ([`crate::config::Config::describe_regime`]).
    pub settings: String,
    pub teacher_accuracy: f64,
    /// The `--teacher` file's name without `.safetensors`, where the teacher came from one.
    pub teacher_file: Option<String>,
    pub statistics: Statistics,
    /// Each run's students, for pairing with another experiment's ([`against`]).
    pub runs: Vec<StudentPair>,
}

impl Regime {
    /// Reads `LABEL=PATH` (split at the last `=`, so that labels may hold one), or `PATH`
    /// alone (labelled by its file name without `.json`).
    pub fn read(arg: &str) -> Result<Regime> {
        let (label, path) = match arg.rsplit_once('=') {
            Some((label, path)) if !label.is_empty() => (label.to_string(), PathBuf::from(path)),
            _ => {
                let path = PathBuf::from(arg);
                let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                (stem, path)
            }
        };
        let metrics: Report = super::metrics::read(&path, "give the files that --metrics-out or merge wrote")?;
        let name = path.display();
        ensure!(
            metrics.shard.is_none(),
            "{name} holds one shard of an experiment (--shard I/K): put its shards together with `kd-wgpu merge` \
             first and compare the merged file"
        );
        ensure!(
            metrics.runs.len() >= 2,
            "{name} holds {} run(s): compare puts paired runs side by side; give the --metrics-out file of an \
             experiment run with --runs 2 or more",
            metrics.runs.len()
        );
        Ok(Regime {
            label,
            settings: metrics.config.describe_regime(),
            teacher_accuracy: metrics.teacher.test_accuracy,
            teacher_file: metrics.weights.teacher.and_then(|t| t.file_stem().map(|s| s.to_string_lossy().into_owned())),
            statistics: Statistics::of(&metrics.runs),
            runs: metrics.runs,
            path,
        })
    }
}

/// Reads every `LABEL=PATH` and checks that they can stand side by side: the same classes.
pub fn read_all(args: &[String]) -> Result<Vec<Regime>> {
    ensure!(!args.is_empty(), "compare needs the metrics files of one or more --runs experiments");
    let regimes = args.iter().map(|a| Regime::read(a)).collect::<Result<Vec<_>>>()?;
    let names = |r: &Regime| r.statistics.per_class.iter().map(|c| c.class.clone()).collect::<Vec<_>>();
    for r in &regimes[1..] {
        if names(r) != names(&regimes[0]) {
            bail!(
                "{} and {} were tested on different classes ({:?} and {:?}); compare experiments on one data set",
                regimes[0].path.display(),
                r.path.display(),
                names(&regimes[0]),
                names(r)
            );
        }
    }
    Ok(regimes)
}

/// A difference of accuracies in percentage points, signed.
pub fn points(v: f64) -> String {
    format!("{:+.2}", 100.0 * v)
}

/// The classes whose paired difference has an interval clear of zero, with the difference.
fn moved(st: &Statistics) -> String {
    let moved: Vec<String> =
        st.classes_with_a_difference().iter().map(|c| format!("{} {}", c.class, points(c.difference_mean))).collect();
    if moved.is_empty() {
        "none".to_string()
    } else {
        moved.join(", ")
    }
}

/// The Markdown table, a row per regime (rows are left unpadded: the classes column is long).
pub fn table(regimes: &[Regime]) -> String {
    let mut out = String::from(
        "| regime | settings | teacher | distilled | scratch | distilled - scratch, points [95%] | classes that moved (points) |\n\
         | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in regimes {
        let st = &r.statistics;
        let (lo, hi) = st.difference_ci95;
        let cells = [
            r.label.clone(),
            r.settings.clone(),
            match &r.teacher_file {
                Some(file) => format!("{:.4} ({file})", r.teacher_accuracy),
                None => format!("{:.4}", r.teacher_accuracy),
            },
            format!("{:.4} ± {:.4}", st.distilled_mean, st.distilled_std),
            format!("{:.4} ± {:.4}", st.scratch_mean, st.scratch_std),
            format!("{} [{}, {}]", points(st.difference_mean), points(lo), points(hi)),
            moved(st),
        ];
        out += &format!("| {} |\n", cells.join(" | "));
    }
    out
}

/// Why `other`'s runs do not pair with `base`'s, if they do not.
fn unpaired(base: &Regime, other: &Regime) -> Option<String> {
    if base.runs.len() != other.runs.len() {
        return Some(format!("{} runs against {}", other.runs.len(), base.runs.len()));
    }
    for (i, (b, o)) in base.runs.iter().zip(&other.runs).enumerate() {
        if b.seed != o.seed {
            return Some(format!("run {} has seed {} against {}", i + 1, o.seed, b.seed));
        }
        if b.scratch.test_accuracy != o.scratch.test_accuracy {
            return Some(format!(
                "run {}'s scratch students differ ({:.4} against {:.4}): other starting weights, order or labels",
                i + 1,
                o.scratch.test_accuracy,
                b.scratch.test_accuracy
            ));
        }
    }
    None
}

/// The second table of `--against LABEL`: every other experiment's distilled students against
/// the distilled students of the one labelled `label`, run by run, by the paired statistics
/// of [`Statistics::of`] (the base's distilled students in the place of the scratch ones).
pub fn against(regimes: &[Regime], label: &str) -> Result<String> {
    let Some(base) = regimes.iter().find(|r| r.label == label) else {
        let labels: Vec<&str> = regimes.iter().map(|r| r.label.as_str()).collect();
        bail!("--against {label:?}: no experiment is labelled so; the labels are {labels:?}")
    };
    let mut out = format!(
        "\nDistilled students against those of {label}, run by run (the same seeds, starting weights and order):\n\n\
         | regime | distilled | distilled, {label} | difference, points [95%] | runs above, below | classes that moved (points) |\n\
         | --- | --- | --- | --- | --- | --- |\n"
    );
    for r in regimes.iter().filter(|r| r.label != label) {
        let cells = match unpaired(base, r) {
            Some(why) => vec![
                r.label.clone(),
                format!("not paired: {why}"),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ],
            None => {
                let pairs: Vec<StudentPair> = r
                    .runs
                    .iter()
                    .zip(&base.runs)
                    .map(|(o, b)| StudentPair { scratch: b.distilled.clone(), ..o.clone() })
                    .collect();
                let st = Statistics::of(&pairs);
                let (lo, hi) = st.difference_ci95;
                let accuracies = pairs.iter().map(|p| (p.distilled.test_accuracy, p.scratch.test_accuracy));
                let above = accuracies.clone().filter(|(o, b)| o > b).count();
                let below = accuracies.filter(|(o, b)| o < b).count();
                vec![
                    r.label.clone(),
                    format!("{:.4} ± {:.4}", st.distilled_mean, st.distilled_std),
                    format!("{:.4} ± {:.4}", st.scratch_mean, st.scratch_std),
                    format!("{} [{}, {}]", points(st.difference_mean), points(lo), points(hi)),
                    format!("{above}, {below}"),
                    moved(&st),
                ]
            }
        };
        out += &format!("| {} |\n", cells.join(" | "));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::Config;
    use serde_json::Value;
    use std::path::Path;

    fn config(json: &str) -> Config {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn settings_name_what_sets_a_regime_apart() {
        // A file from before the distillation terms and --labelled: the seed's logits term.
        assert_eq!(
            config(r#"{"alpha": 0.1, "temperature": 10.0, "distill_teacher": "Frozen"}"#).describe_regime(),
            "alpha 0.1, T 10, logits"
        );
        assert_eq!(
            config(
                r#"{"alpha": 0.5, "temperature": 3.0, "distill": ["logits", "feature:conv2d_1:conv2d_1:project"],
                    "distill_weights": [1.0, 100.0], "labelled": 600, "teacher_augment": 2, "teacher_epochs": 10,
                    "student_augment": 1, "distill_teacher": "Trainable"}"#
            )
            .describe_regime(),
            "alpha 0.5, T 3, logits + feature:conv2d_1:conv2d_1:project x100, 600 labelled, teacher moved 2 px, \
             10 epochs, students moved 1 px, co-trained teacher"
        );
    }

    /// A committed experiment's metrics, ten runs of the real format.
    fn committed() -> Value {
        serde_json::from_slice(&std::fs::read("docs/runs10-keras-defaults-lavapipe.json").unwrap()).unwrap()
    }

    /// Writes `text` into `dir` as `name` and returns its path.
    fn write(dir: &Path, name: &str, text: &str) -> String {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    #[test]
    fn bad_files_are_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| write(dir.path(), name, text);
        let error = |arg: &str| format!("{:#}", Regime::read(arg).err().expect("refused"));
        assert!(error(&write("cut.json", "{\"config\": {")).contains("not valid JSON"));
        assert!(error(&write("other.json", "{\"a\": 1}")).contains("not a kd-wgpu metrics file"));
        assert!(error(&dir.path().join("absent.json").display().to_string()).contains("cannot read"));
        // One run of the real format: the first run of a committed experiment.
        let full = committed();
        let mut one = full.clone();
        one["runs"] = Value::Array(vec![full["runs"][0].clone()]);
        assert!(error(&write("one.json", &one.to_string())).contains("holds 1 run(s)"));
        let mut shard = full.clone();
        shard["shard"] = serde_json::json!({"index": 1, "count": 2, "run_indices": [0, 2, 4, 6, 8], "sweep_cells": [],
            "teacher_weights_sha256": "ab", "student_init_weights_sha256": null});
        assert!(error(&write("shard.json", &shard.to_string())).contains("kd-wgpu merge"));
        // Experiments on other classes do not stand side by side.
        let mut renamed = full.clone();
        for run in renamed["runs"].as_array_mut().unwrap() {
            for student in ["distilled", "scratch"] {
                run[student]["classes"]["names"][0] = "Top".into();
            }
        }
        let (a, b) = (write("a.json", &full.to_string()), write("b.json", &renamed.to_string()));
        let refused = format!("{:#}", read_all(&[a.clone(), b]).err().expect("refused"));
        assert!(refused.contains("tested on different classes"), "{refused}");
        assert_eq!(read_all(&[a.clone(), a.clone()]).unwrap().len(), 2);
        // A class without test images (null accuracies, as a --test-limit slice may give) is
        // drawn as such, not as a number.
        let mut no_bags = full.clone();
        for run in no_bags["runs"].as_array_mut().unwrap() {
            for student in ["distilled", "scratch"] {
                run[student]["classes"]["accuracy"][8] = Value::Null;
            }
        }
        let regimes = read_all(&[write("no-bags.json", &no_bags.to_string())]).unwrap();
        let svg = crate::results::plot::compare_svg(&regimes).unwrap();
        assert!(svg.contains("n/a") && !svg.contains("NaN"), "{svg}");
        // The whole file is read, labelled by the name before '=' or by its file name.
        let whole = write("keras-defaults.json", &full.to_string());
        assert_eq!(Regime::read(&whole).unwrap().label, "keras-defaults");
        // The teacher column names the --teacher file, where there was one.
        let regimes = read_all(std::slice::from_ref(&whole)).unwrap();
        assert!(table(&regimes).contains("| 0.8891 (teacher-seed1) |"), "{}", table(&regimes));
        let mut trained_here = full.clone();
        trained_here["weights"]["teacher"] = Value::Null;
        let regimes = read_all(&[write("trained-here.json", &trained_here.to_string())]).unwrap();
        assert!(table(&regimes).contains("| 0.8891 |"), "{}", table(&regimes));
        let labelled = Regime::read(&format!("defaults, alpha=0.5={whole}")).unwrap();
        assert_eq!(labelled.label, "defaults, alpha=0.5");
    }

    #[test]
    fn against_pairs_only_runs_of_the_same_seeds_and_scratch_students() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| write(dir.path(), name, text);
        let full = committed();
        let a = write("a.json", &full.to_string());
        // The same runs with every distilled student 0.1 points higher pair with them; other
        // scratch students or seeds do not.
        let shifted = |edit: &dyn Fn(&mut Value)| {
            let mut v = full.clone();
            for run in v["runs"].as_array_mut().unwrap() {
                edit(run);
            }
            v.to_string()
        };
        let up = write(
            "up.json",
            &shifted(&|run| {
                run["distilled"]["test_accuracy"] = (run["distilled"]["test_accuracy"].as_f64().unwrap() + 0.001).into()
            }),
        );
        let scratch = write("scratch.json", &shifted(&|run| run["scratch"]["test_accuracy"] = 0.5.into()));
        let seeds = write("seeds.json", &shifted(&|run| run["seed"] = (run["seed"].as_u64().unwrap() + 1).into()));
        let regimes = read_all(&[
            format!("base={a}"),
            format!("up={up}"),
            format!("scratch={scratch}"),
            format!("seeds={seeds}"),
        ])
        .unwrap();
        let paired = against(&regimes, "base").unwrap();
        let row = |label: &str| paired.lines().find(|l| l.starts_with(&format!("| {label} |"))).unwrap().to_string();
        assert!(row("up").contains("| +0.10 [+0.10, +0.10] | 10, 0 |"), "{paired}");
        assert!(row("scratch").contains("not paired: run 1's scratch students differ"), "{paired}");
        assert!(row("seeds").contains("not paired: run 1 has seed 2 against 1"), "{paired}");
        assert!(!paired.contains("| base |"), "{paired}");
        let refused = format!("{:#}", against(&regimes, "other").expect_err("refused"));
        assert!(refused.contains("--against \"other\": no experiment is labelled so"), "{refused}");
    }
}
