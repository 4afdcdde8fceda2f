//! `kd-wgpu compare` over the experiments in docs/: README's "When does distillation help?"
//! table is what it prints, row for row, and docs/regimes-lavapipe.svg what it draws.

use std::process::Command;

/// README's rows, in its order: each row's label and the metrics file it comes from.
const REGIMES: [(&str, &str); 9] = [
    ("the seed's", "docs/runs10-frozen-lavapipe.json"),
    ("the seed's, co-trained teacher", "docs/runs10-trainable-lavapipe.json"),
    ("keras.distillation's defaults", "docs/runs10-keras-defaults-lavapipe.json"),
    ("600 labels", "docs/runs10-labelled600-lavapipe.json"),
    ("3,000 labels", "docs/runs10-labelled3000-lavapipe.json"),
    ("a feature term on `conv2d_1` with a projection", "docs/runs10-feature-conv2d_1-lavapipe.json"),
    ("a teacher trained on moved images, the seed's settings", "docs/runs10-teacher-aug2-lavapipe.json"),
    ("the same teacher, its sweep's best alpha and T", "docs/runs10-teacher-aug2-best-lavapipe.json"),
    ("the best combination: 600 labels, its sweep's best alpha and T", "docs/runs10-labelled600-best-lavapipe.json"),
];

#[test]
fn the_readme_regimes_table_and_its_chart_are_what_compare_writes() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("regimes.svg");
    let out = Command::new(env!("CARGO_BIN_EXE_kd-wgpu"))
        .arg("compare")
        .args(REGIMES.iter().map(|(label, file)| format!("{label}={file}")))
        .arg("--plot")
        .arg(&svg)
        .output()
        .expect("the program starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let table: Vec<&str> = stdout.lines().filter(|l| l.starts_with('|')).collect();
    assert_eq!(table.len(), 2 + REGIMES.len(), "{stdout}");
    let readme = std::fs::read_to_string("README.md").unwrap();
    let at = |row: &str| readme.lines().position(|l| l == row);
    let places: Vec<Option<usize>> = table.iter().map(|row| at(row)).collect();
    for (row, place) in table.iter().zip(&places) {
        assert!(place.is_some(), "README.md lacks the row `kd-wgpu compare` prints:\n{row}");
    }
    assert!(
        places.windows(2).all(|w| w[1] == w[0].map(|p| p + 1)),
        "README's rows are not together in compare's order"
    );
    let drawn = std::fs::read_to_string(&svg).unwrap();
    let committed = std::fs::read_to_string("docs/regimes-lavapipe.svg").unwrap();
    assert!(
        drawn == committed,
        "docs/regimes-lavapipe.svg is not what `kd-wgpu compare --plot` draws from the metrics in docs/; \
         write it again with the command in README.md"
    );
}
