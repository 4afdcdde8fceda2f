//! Results per class: the confusion matrix of a model on the test set, counted from its logits
//! (read back once after the evaluation) with the device's rule for a prediction (the first
//! maximum wins), so the counts are exact and the same on every run.

use crate::data::{CLASS_NAMES, NUM_CLASSES};
use crate::ops::argmax;

/// `confusion[true class][predicted class]` counts, and each class's accuracy (recall).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClassResults {
    pub names: Vec<String>,
    pub confusion: Vec<Vec<u64>>,
    /// NaN for a class without test images, which JSON writes as null.
    #[serde(deserialize_with = "nan_for_null")]
    pub accuracy: Vec<f64>,
}

/// Reads back the accuracies JSON wrote, a NaN as null.
fn nan_for_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    let values: Vec<Option<f64>> = serde::Deserialize::deserialize(d)?;
    Ok(values.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

impl ClassResults {
    /// From the logits (samples x 10, in file order) and the labels of the same samples.
    pub fn from_logits(logits: &[f32], labels: &[u8]) -> ClassResults {
        let mut confusion = vec![vec![0u64; NUM_CLASSES]; NUM_CLASSES];
        for (row, &label) in logits.chunks(NUM_CLASSES).zip(labels) {
            confusion[label as usize][argmax(row)] += 1;
        }
        let accuracy = confusion
            .iter()
            .enumerate()
            .map(|(c, row)| {
                let total: u64 = row.iter().sum();
                if total == 0 {
                    f64::NAN
                } else {
                    row[c] as f64 / total as f64
                }
            })
            .collect();
        ClassResults { names: CLASS_NAMES.iter().map(|s| s.to_string()).collect(), confusion, accuracy }
    }

    /// Correct predictions over all classes.
    pub fn correct(&self) -> u64 {
        (0..NUM_CLASSES).map(|c| self.confusion[c][c]).sum()
    }

    pub fn samples(&self) -> u64 {
        self.confusion.iter().flatten().sum()
    }

    /// Accuracy per class with its counts, as a Markdown table.
    pub fn render(&self) -> String {
        let mut t = comfy_table::Table::new();
        t.load_preset(comfy_table::presets::ASCII_MARKDOWN).set_header(["class", "accuracy", "correct", "images"]);
        for (c, name) in self.names.iter().enumerate() {
            let total: u64 = self.confusion[c].iter().sum();
            t.add_row([
                name.clone(),
                format!("{:.4}", self.accuracy[c]),
                self.confusion[c][c].to_string(),
                total.to_string(),
            ]);
        }
        for column in t.column_iter_mut().skip(1) {
            column.set_cell_alignment(comfy_table::CellAlignment::Right);
        }
        format!("{t}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_the_first_maximum_and_the_labels() {
        let mut logits = vec![0.0f32; 4 * NUM_CLASSES];
        logits[3] = 1.0; // sample 0 predicts 3
        logits[NUM_CLASSES + 9] = 2.0; // sample 1 predicts 9
                                       // sample 2: all equal, the first maximum (class 0) wins; sample 3 predicts 0 as well
        logits[3 * NUM_CLASSES] = 5.0;
        let r = ClassResults::from_logits(&logits, &[3, 8, 0, 1]);
        assert_eq!(r.confusion[3][3], 1);
        assert_eq!(r.confusion[8][9], 1);
        assert_eq!(r.confusion[0][0], 1);
        assert_eq!(r.confusion[1][0], 1);
        assert_eq!((r.correct(), r.samples()), (2, 4));
        assert_eq!((r.accuracy[3], r.accuracy[8], r.accuracy[0], r.accuracy[1]), (1.0, 0.0, 1.0, 0.0));
        assert!(r.accuracy[5].is_nan(), "a class without samples has no accuracy");
        assert_eq!(r.names[9], "Ankle boot");
    }
}
