//! Shared helpers of the integration tests: where cargo put the plugin libraries and the
//! `keras-cli` binary, and a way to run it in a throw-away Keras home.
//!
//! The tests load real cdylibs and run the real binary, which `cargo test` does not build for
//! another package; a missing file fails the test with the command that builds it.

use std::{
    env::consts::{DLL_PREFIX, DLL_SUFFIX},
    path::{Path, PathBuf},
    process::Command,
};

/// The command that builds every file these tests need.
pub const BUILD_FIRST: &str = "cargo build --workspace --lib --bins --examples";

/// `target/<profile>`: the test binary runs from its `deps` folder.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its own path");
    let deps = exe.parent().expect("the test binary is in a folder");
    deps.parent().expect("the deps folder has a parent").to_path_buf()
}

/// Every backend a cross-backend test runs on: the built-in `cpu`, then each workspace plugin
/// library that is built (`libkeras_backend_cpu.so`, `libkeras_backend_blas.so`).
pub fn backends_found() -> Vec<keras::Backend> {
    let mut list = vec![keras::registry::load_in("cpu", &[]).expect("the built-in cpu backend loads")];
    for name in ["cpu", "blas"] {
        let path = target_dir().join(keras::registry::library_file_name(name));
        if path.is_file() {
            let spec = path.to_str().expect("the target folder's path is UTF-8");
            list.push(keras::registry::load(spec).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
        }
    }
    list
}

/// `target_dir()/relative`, which must exist: else the test fails saying how to build it.
pub fn artifact(relative: impl AsRef<Path>) -> PathBuf {
    let path = target_dir().join(relative);
    assert!(path.is_file(), "{} is missing: run `{BUILD_FIRST}` first", path.display());
    path
}

/// The built library of the workspace plugin `name` (`libkeras_backend_<name>.so`).
pub fn plugin(name: &str) -> PathBuf {
    artifact(format!("{DLL_PREFIX}keras_backend_{name}{DLL_SUFFIX}"))
}

/// The example plugin of keras-backend-api (`examples/libnull_plugin.so`).
pub fn null_plugin() -> PathBuf {
    artifact(Path::new("examples").join(format!("{DLL_PREFIX}null_plugin{DLL_SUFFIX}")))
}

/// The `keras-cli` binary.
pub fn keras_cli() -> PathBuf {
    artifact(format!("keras-cli{}", std::env::consts::EXE_SUFFIX))
}

/// What a `keras-cli` run printed.
#[derive(Debug)]
pub struct CliRun {
    /// Whether it exited with status 0.
    pub success: bool,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Runs `keras-cli args` with `KERAS_HOME=home` (so the user's `~/.keras` is never touched),
/// no inherited `KERAS_BACKEND`, `KERAS_BACKEND_PATH` or `RUST_LOG`, plus `env`.
pub fn run_cli(home: &Path, env: &[(&str, &str)], args: &[&str]) -> CliRun {
    let mut command = Command::new(keras_cli());
    command
        .args(args)
        .env("KERAS_HOME", home)
        .env_remove("KERAS_BACKEND")
        .env_remove("KERAS_BACKEND_PATH")
        .env_remove("RUST_LOG");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("keras-cli runs");
    CliRun {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The CPU model as `/proc/cpuinfo` names it, when it does.
pub fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_string())
}

/// Asserts that `message` is a single line, showing it otherwise.
pub fn assert_one_line(message: &str) {
    assert!(!message.trim_end().contains('\n'), "expected one line, got:\n{message}");
}

pub mod conformance;
