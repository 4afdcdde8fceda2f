//! shaders/matmul_texture.wgsl and shaders/matmul_subgroup.wgsl are written by
//! scripts/gen_matmul_lavapipe.py: the checked-in files must be exactly what it writes now.
//! Needs python3 (CI installs it).

use std::path::Path;
use std::process::Command;

const GENERATED: [&str; 2] = ["matmul_texture.wgsl", "matmul_subgroup.wgsl"];
const REGENERATE: &str = "run `python3 scripts/gen_matmul_lavapipe.py` from the repository root and commit the result";

/// The first line where `checked_in` and `generated` differ, described; None when they are
/// byte for byte the same.
fn first_difference(checked_in: &[u8], generated: &[u8]) -> Option<String> {
    if checked_in == generated {
        return None;
    }
    let a = String::from_utf8_lossy(checked_in);
    let b = String::from_utf8_lossy(generated);
    let mut a_lines = a.split_inclusive('\n');
    let mut b_lines = b.split_inclusive('\n');
    let mut number = 1;
    loop {
        match (a_lines.next(), b_lines.next()) {
            (Some(x), Some(y)) if x == y => number += 1,
            (Some(x), Some(y)) => return Some(format!("line {number}: checked in {x:?}, generated {y:?}")),
            (Some(x), None) => {
                return Some(format!("line {number}: checked in {x:?}, the generated file ends before it"))
            }
            (None, Some(y)) => {
                return Some(format!("line {number}: generated {y:?}, the checked-in file ends before it"))
            }
            // Equal text from unequal bytes: invalid UTF-8 replaced alike.
            (None, None) => return Some("the files differ in bytes that are not valid UTF-8".to_string()),
        }
    }
}

#[test]
fn generated_shaders_are_what_the_generator_writes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().expect("creating a temporary directory");
    let script = root.join("scripts/gen_matmul_lavapipe.py");
    let run = Command::new("python3")
        .arg(&script)
        .arg("--out")
        .arg(out.path())
        .current_dir(root)
        // The script reads these to try other tiles; the checked-in files use its defaults.
        .env_remove("ROWS")
        .env_remove("VECS")
        .env_remove("UNROLL")
        .output();
    let run = match run {
        Ok(run) => run,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "python3 was not found ({e}); this test runs {} to check the generated shaders. \
             Install python3 (Debian/Ubuntu: `apt-get install python3`; .ci/run does).",
            script.display()
        ),
        Err(e) => panic!("could not run python3 {}: {e}", script.display()),
    };
    assert!(
        run.status.success(),
        "python3 {} --out {} failed ({}):\n{}",
        script.display(),
        out.path().display(),
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    let mut stale = Vec::new();
    for name in GENERATED {
        let read = |path: &Path| std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let checked_in = read(&root.join("shaders").join(name));
        let generated = read(&out.path().join(name));
        if let Some(difference) = first_difference(&checked_in, &generated) {
            stale.push(format!("shaders/{name} is not what the generator writes; first difference at {difference}"));
        }
    }
    assert!(stale.is_empty(), "{}\nTo regenerate: {REGENERATE}.", stale.join("\n"));
}

#[test]
fn first_difference_names_the_line() {
    assert_eq!(first_difference(b"a\nb\n", b"a\nb\n"), None);
    assert_eq!(first_difference(b"a\nb\nc\n", b"a\nB\nc\n").unwrap(), r#"line 2: checked in "b\n", generated "B\n""#);
    assert_eq!(first_difference(b"a\r\n", b"a\n").unwrap(), r#"line 1: checked in "a\r\n", generated "a\n""#);
    assert!(first_difference(b"a\n", b"a\nb\n").unwrap().starts_with("line 2: generated \"b\\n\", the checked-in"));
    assert!(first_difference(b"a\nb", b"a\n").unwrap().starts_with("line 2: checked in \"b\", the generated"));
}
