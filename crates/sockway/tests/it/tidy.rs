//! Repository checks that run with the tests: module docs on every Rust file, and tests that
//! neither sleep to synchronise nor use fixed ports.

use std::path::{Path, PathBuf};

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn rust_files(directory: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(directory).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') && name != "node_modules" {
                rust_files(&path, found);
            }
        } else if name.ends_with(".rs") {
            found.push(path);
        }
    }
}

fn workspace_rust_files() -> Vec<PathBuf> {
    let mut found = Vec::new();
    rust_files(&repository_root().join("crates"), &mut found);
    assert!(found.len() > 10, "tidy found the sources");
    found
}

#[test]
fn every_rust_file_starts_with_module_docs() {
    let missing: Vec<PathBuf> = workspace_rust_files()
        .into_iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            !text.trim_start().starts_with("//!")
        })
        .collect();
    assert!(
        missing.is_empty(),
        "files without a //! module doc: {missing:#?}"
    );
}

#[test]
fn tests_do_not_sleep_or_use_fixed_ports() {
    let mut offenders = Vec::new();
    for path in workspace_rust_files() {
        let relative = path.to_string_lossy().into_owned();
        // This file spells out the patterns it looks for.
        if !relative.contains("/tests/") || relative.ends_with("tests/it/tidy.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (number, line) in text.lines().enumerate() {
            let trimmed = line.trim_start();
            if trimmed.starts_with("//") {
                continue;
            }
            let sleeps = ["sleep(", "sleep_until("]
                .iter()
                .any(|call| trimmed.contains(call))
                && !trimmed.contains("\"sleep(");
            let fixed_port = trimmed.contains("127.0.0.1:")
                && !trimmed.contains("127.0.0.1:0")
                && !trimmed.contains("127.0.0.1:\"");
            if sleeps || fixed_port {
                offenders.push(format!("{relative}:{}: {trimmed}", number + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "tests must wait for events and bind port 0:\n{}",
        offenders.join("\n")
    );
}
