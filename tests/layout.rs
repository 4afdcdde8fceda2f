//! The folders of src/ import downwards only, so that the engine never reaches into the
//! program around it, and what reads finished experiments never into what runs them.

use std::collections::BTreeMap;
use std::path::Path;

/// Each top-level module of the crate and its level: a module may import only modules of a
/// lower level.
const LEVELS: [(&str, u32); 13] = [
    ("digest", 0),
    ("progress", 0),
    ("data", 1),
    ("gpu", 1),
    ("ops", 2),
    ("model", 3),
    ("train", 4),
    ("checkpoint", 4),
    ("config", 5),
    ("results", 6),
    ("run", 7),
    ("bench", 8),
    ("web", 8),
];

/// The code of a Rust file without its comments and its unit tests.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap();
    text.lines().map(|l| l.split("//").next().unwrap()).collect::<Vec<_>>().join("\n")
}

/// Every `.rs` file under `dir`.
fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn modules_import_only_modules_below_them() {
    let levels: BTreeMap<&str, u32> = LEVELS.into_iter().collect();
    let src = Path::new("src");
    let mut all = Vec::new();
    files(src, &mut all);
    let mut wrong = Vec::new();
    for path in all {
        let rel = path.strip_prefix(src).unwrap();
        let top = rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let level = *levels.get(top.as_str()).unwrap_or_else(|| panic!("src/{top} has no level in LEVELS"));
        let code = code(&path);
        for (i, _) in code.match_indices("crate::") {
            let name: String = code[i + 7..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            match levels.get(name.as_str()) {
                Some(&other) if name != top && other >= level => {
                    wrong.push(format!("{} imports crate::{name}", path.display()))
                }
                _ => {}
            }
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(wrong.is_empty(), "imports against the layering:\n{}", wrong.join("\n"));
}
