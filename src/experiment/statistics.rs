//! Paired statistics over several runs of the two students.

use super::report::StudentPair;
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
        let diff: Vec<f64> = d.iter().zip(&s).map(|(a, b)| a - b).collect();
        let ((dm, ds), (sm, ss), (fm, fs)) = (mean_std(&d), mean_std(&s), mean_std(&diff));
        let half = t_quantile_975(pairs.len().saturating_sub(1)) * fs / (pairs.len() as f64).sqrt();
        Statistics {
            runs: pairs.len(),
            distilled_mean: dm,
            distilled_std: ds,
            scratch_mean: sm,
            scratch_std: ss,
            difference_mean: fm,
            difference_std: fs,
            difference_ci95: (fm - half, fm + half),
        }
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
    use crate::experiment::report::RunResult;

    fn run(acc: f64) -> RunResult {
        RunResult {
            name: String::new(),
            epochs: vec![],
            test_loss: 0.0,
            test_accuracy: acc,
            test_cross_entropy: 0.0,
            train_seconds: 0.0,
            evaluate_seconds: 0.0,
            train_samples_per_second: 0.0,
        }
    }

    #[test]
    fn paired_statistics_match_a_hand_computation() {
        let pairs: Vec<StudentPair> = [(0.86, 0.85), (0.87, 0.85), (0.85, 0.86), (0.88, 0.86)]
            .iter()
            .enumerate()
            .map(|(i, &(d, s))| StudentPair {
                seed: i as u64,
                distilled: run(d),
                scratch: run(s),
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
