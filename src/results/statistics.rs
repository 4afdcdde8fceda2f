//! Paired statistics over several runs of the two students.

use super::records::StudentPair;
use statrs::distribution::{ContinuousCDF, StudentsT};

/// Test accuracy over several runs: each student's mean and standard deviation, and the paired
/// difference (distilled - scratch) with a 95% confidence interval from Student's t.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Statistics {
    pub runs: usize,
    pub distilled_mean: f64,
    pub distilled_std: f64,
    pub scratch_mean: f64,
    pub scratch_std: f64,
    pub difference_mean: f64,
    pub difference_std: f64,
    pub difference_ci95: (f64, f64),
    /// The same paired comparison of each class's test accuracy.
    pub per_class: Vec<ClassDifference>,
}

/// One class's test accuracy over the runs: each student's mean, and the paired difference
/// (distilled - scratch) with its 95% confidence interval.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ClassDifference {
    pub class: String,
    pub distilled_mean: f64,
    pub scratch_mean: f64,
    pub difference_mean: f64,
    pub difference_ci95: (f64, f64),
}

/// Paired samples: (mean, sd) of each side and of the differences, and the differences'
/// two-sided 95% interval.
struct Paired {
    distilled: (f64, f64),
    scratch: (f64, f64),
    difference: (f64, f64),
    ci95: (f64, f64),
}

fn paired(d: &[f64], s: &[f64]) -> Paired {
    let diff: Vec<f64> = d.iter().zip(s).map(|(a, b)| a - b).collect();
    let (fm, fs) = mean_std(&diff);
    let half = t_quantile_975(diff.len().saturating_sub(1)) * fs / (diff.len() as f64).sqrt();
    Paired { distilled: mean_std(d), scratch: mean_std(s), difference: (fm, fs), ci95: (fm - half, fm + half) }
}

/// Mean and sample standard deviation (0 for a single value).
fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

/// The 97.5% quantile of Student's t with `df` degrees of freedom (two-sided 95%); infinite
/// for none.
pub fn t_quantile_975(df: usize) -> f64 {
    match StudentsT::new(0.0, 1.0, df as f64) {
        Ok(t) if df > 0 => t.inverse_cdf(0.975),
        _ => f64::INFINITY,
    }
}

impl Statistics {
    pub fn of(pairs: &[StudentPair]) -> Statistics {
        let d: Vec<f64> = pairs.iter().map(|p| p.distilled.test_accuracy).collect();
        let s: Vec<f64> = pairs.iter().map(|p| p.scratch.test_accuracy).collect();
        let all = paired(&d, &s);
        let names = pairs.first().map(|p| p.distilled.classes.names.clone()).unwrap_or_default();
        let per_class = names
            .into_iter()
            .enumerate()
            .map(|(c, class)| {
                let d: Vec<f64> = pairs.iter().map(|p| p.distilled.classes.accuracy[c]).collect();
                let s: Vec<f64> = pairs.iter().map(|p| p.scratch.classes.accuracy[c]).collect();
                let p = paired(&d, &s);
                ClassDifference {
                    class,
                    distilled_mean: p.distilled.0,
                    scratch_mean: p.scratch.0,
                    difference_mean: p.difference.0,
                    difference_ci95: p.ci95,
                }
            })
            .collect();
        Statistics {
            runs: pairs.len(),
            distilled_mean: all.distilled.0,
            distilled_std: all.distilled.1,
            scratch_mean: all.scratch.0,
            scratch_std: all.scratch.1,
            difference_mean: all.difference.0,
            difference_std: all.difference.1,
            difference_ci95: all.ci95,
            per_class,
        }
    }

    /// The classes whose interval excludes zero.
    pub fn classes_with_a_difference(&self) -> Vec<&ClassDifference> {
        self.per_class.iter().filter(|c| c.difference_ci95.0 > 0.0 || c.difference_ci95.1 < 0.0).collect()
    }

    /// Whether the interval excludes zero, in words.
    pub fn verdict(&self) -> &'static str {
        let (lo, hi) = self.difference_ci95;
        if lo > 0.0 {
            "distillation helped (the 95% interval is above zero)"
        } else if hi < 0.0 {
            "distillation hurt (the 95% interval is below zero)"
        } else {
            "no evidence either way (the 95% interval contains zero)"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::CLASS_NAMES;
    use crate::results::ClassResults;
    use crate::results::RunResult;

    /// A result of accuracy `acc` in every class but Trouser's, which is `trouser`.
    fn run(acc: f64, trouser: f64) -> RunResult {
        let mut accuracy = vec![acc; 10];
        accuracy[1] = trouser;
        RunResult {
            name: String::new(),
            epochs: vec![],
            test_loss: 0.0,
            test_accuracy: acc,
            test_cross_entropy: 0.0,
            train_seconds: 0.0,
            evaluate_seconds: 0.0,
            train_samples_per_second: 0.0,
            classes: ClassResults {
                names: CLASS_NAMES.iter().map(|s| s.to_string()).collect(),
                confusion: vec![vec![0; 10]; 10],
                accuracy,
            },
        }
    }

    #[test]
    fn paired_statistics_match_a_hand_computation() {
        let runs = [(0.86, 0.85, 0.80), (0.87, 0.85, 0.81), (0.85, 0.86, 0.79), (0.88, 0.86, 0.80)];
        let pairs: Vec<StudentPair> = runs
            .iter()
            .enumerate()
            .map(|(i, &(d, s, trouser))| StudentPair {
                seed: i as u64,
                distilled: run(d, 0.9),
                scratch: run(s, trouser),
                teacher_after_distillation: None,
            })
            .collect();
        let st = Statistics::of(&pairs);
        // Differences 0.01, 0.02, -0.01, 0.02: mean 0.01, sd sqrt(0.0006 / 3) = 0.014142;
        // t(3) at 97.5% is 3.182 (tables).
        assert!((st.difference_mean - 0.01).abs() < 1e-12);
        assert!((st.difference_std - 0.014142135).abs() < 1e-8);
        let half = 3.182446 * 0.014142135 / 2.0;
        assert!((st.difference_ci95.0 - (0.01 - half)).abs() < 1e-6);
        assert!((st.difference_ci95.1 - (0.01 + half)).abs() < 1e-6);
        assert!(st.verdict().starts_with("no evidence"));
        assert!((st.distilled_mean - 0.865).abs() < 1e-12);
        assert!((st.scratch_std - 0.005773503).abs() < 1e-8);
        // Per class: most classes repeat the overall comparison; Trouser's differences
        // 0.10, 0.09, 0.11, 0.10 (sd 0.008165) put its interval well above zero.
        assert_eq!(st.per_class.len(), 10);
        assert!((st.per_class[0].difference_mean - 0.01).abs() < 1e-12);
        assert!((st.per_class[1].difference_mean - 0.10).abs() < 1e-12);
        let trouser_half = 3.182446 * 0.0081649658 / 2.0;
        assert!((st.per_class[1].difference_ci95.0 - (0.10 - trouser_half)).abs() < 1e-6);
        let named: Vec<&str> = st.classes_with_a_difference().iter().map(|c| c.class.as_str()).collect();
        assert_eq!(named, ["Trouser"]);
    }

    #[test]
    fn t_quantiles_match_tables_and_fall_towards_the_normal_one() {
        for (df, table) in [(1, 12.706), (2, 4.303), (9, 2.262), (30, 2.042), (60, 2.000)] {
            assert!((t_quantile_975(df) - table).abs() < 5e-4, "df {df}: {}", t_quantile_975(df));
        }
        assert!((t_quantile_975(100_000) - 1.95996).abs() < 1e-4);
        assert!(t_quantile_975(0).is_infinite());
    }
}
