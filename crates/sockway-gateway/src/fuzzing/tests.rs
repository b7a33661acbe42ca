//! Replays every committed corpus file under `fuzz/corpus/{target}/` through its target's
//! checks, so the corpora stay honest without libFuzzer.

use std::path::{Path, PathBuf};

use super::TARGETS;

fn corpus_directory(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

#[test]
fn every_corpus_input_passes_its_target() {
    for (target, check) in TARGETS {
        let directory = corpus_directory(target);
        let entries = std::fs::read_dir(&directory)
            .unwrap_or_else(|error| panic!("{}: {error}", directory.display()));
        let mut replayed = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            let input = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&input));
            assert!(outcome.is_ok(), "{target}: {} fails", path.display());
            replayed += 1;
        }
        assert!(replayed > 0, "{target}: the corpus is empty");
    }
}

#[test]
fn every_target_has_a_fuzz_target_file() {
    for (target, _) in TARGETS {
        let file = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/fuzz_targets")
            .join(format!("{target}.rs"));
        assert!(file.is_file(), "{} is missing", file.display());
    }
}

#[test]
fn the_sigv4_corpus_holds_requests_that_verify() {
    let verifying = std::fs::read_dir(corpus_directory("sigv4"))
        .unwrap()
        .filter(|entry| {
            super::sigv4::verifies(&std::fs::read(entry.as_ref().unwrap().path()).unwrap())
        })
        .count();
    assert!(
        verifying > 0,
        "no corpus request reaches a successful verification"
    );
}
