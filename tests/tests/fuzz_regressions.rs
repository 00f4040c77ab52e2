//! Replays every input of `fuzz/regressions/<target>/` (inputs with which `cargo fuzz` found a
//! bug, kept once fixed) through the fuzz targets' own code, compiled here from `fuzz/src`,
//! so the project's test run keeps them fixed without nightly or libFuzzer.

use std::{fs, path::PathBuf};

use keras::{Backend, registry};

#[path = "../../fuzz/src/graph.rs"]
#[allow(dead_code)]
mod graph;
#[path = "../../fuzz/src/keras_json.rs"]
mod keras_json;
#[path = "../../fuzz/src/npy.rs"]
mod npy;

/// The saved inputs of one target, by file name.
fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions").join(target);
    let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            (path.file_name().unwrap().to_string_lossy().into_owned(), fs::read(&path).unwrap())
        })
        .filter(|(name, _)| !name.starts_with('.') && name != "README.md")
        .collect();
    files.sort();
    files
}

/// Runs `check` on every saved input of `target` (none when its fuzzer found nothing), naming
/// the file that fails.
fn replay(target: &str, check: impl Fn(&[u8])) {
    for (name, data) in inputs(target) {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&data))).is_err() {
            panic!("fuzz/regressions/{target}/{name} fails again");
        }
    }
}

#[test]
fn keras_json_regressions() {
    replay("keras_json", keras_json::run);
}

#[test]
fn npy_regressions() {
    replay("npy", npy::run);
}

#[test]
fn graph_regressions() {
    let mut backends: Vec<Backend> = vec![registry::load_in("cpu", &[]).unwrap()];
    let blas = keras_tests::target_dir().join(registry::library_file_name("blas"));
    if blas.is_file() {
        backends.push(registry::load(blas.to_str().unwrap()).unwrap());
    }
    replay("graph", |data| graph::run(data, &backends));
}
