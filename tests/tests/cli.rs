//! End-to-end runs of the built `keras-cli backend`, each in a throw-away `KERAS_HOME`.

use std::fs;

use keras::config;
use keras_tests::{assert_one_line, cpu_model, plugin, run_cli};

#[test]
fn backend_list_shows_cpu_ok() {
    let home = tempfile::tempdir().unwrap();
    let run = run_cli(home.path(), &[], &["backend", "list"]);
    assert!(run.success, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines.iter().any(|l| l.starts_with("cpu ok ")), "{run:?}");
    assert!(lines.iter().any(|l| l.starts_with("cpu ok ") && l.ends_with(" built-in")), "{run:?}");
    assert!(lines.iter().any(|l| l.starts_with("test_mismatched failed: ")), "{run:?}");
    assert!(lines.iter().any(|l| l.starts_with("test_future failed: ")), "{run:?}");

    let json = run_cli(home.path(), &[], &["backend", "list", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert!(rows.iter().any(|r| r["name"] == "cpu" && r["status"] == "ok" && r["path"].is_null()), "{rows:?}");
}

#[test]
fn keras_backend_cpu_shows_the_library_and_the_cpu_model() {
    let home = tempfile::tempdir().unwrap();
    let run = run_cli(home.path(), &[("KERAS_BACKEND", "cpu")], &["backend"]);
    assert!(run.success, "{run:?}");
    assert!(run.stdout.contains(&plugin("cpu").display().to_string()), "{run:?}");
    assert!(run.stdout.contains("chosen by: env KERAS_BACKEND=cpu"), "{run:?}");
    if let Some(model) = cpu_model() {
        assert!(run.stdout.contains(&model), "{run:?} should name {model}");
    }
    assert!(run.stderr.is_empty(), "{run:?}");
}

#[test]
fn an_unknown_backend_is_one_line_on_stderr_naming_the_folders_searched() {
    let home = tempfile::tempdir().unwrap();
    let run = run_cli(home.path(), &[("KERAS_BACKEND", "nosuch")], &["backend"]);
    assert!(!run.success, "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert!(run.stderr.starts_with("error: unknown backend `nosuch`"), "{run:?}");
    assert!(run.stderr.contains(&home.path().join("backends").display().to_string()), "{run:?}");
    assert!(run.stderr.contains(&keras_tests::target_dir().display().to_string()), "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
}

#[test]
fn keras_backend_may_be_a_library_path() {
    let home = tempfile::tempdir().unwrap();
    let library = plugin("cpu");
    let run = run_cli(home.path(), &[("KERAS_BACKEND", library.to_str().unwrap())], &["backend", "--json"]);
    assert!(run.success, "{run:?}");
    let shown: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(shown["name"], "cpu");
    assert_eq!(shown["library"], library.to_str().unwrap());
    assert_eq!(shown["source"]["kind"], "env");
}

#[test]
fn env_beats_keras_json_beats_default_end_to_end() {
    let home = tempfile::tempdir().unwrap();
    let file = config::config_path(home.path());

    let run = run_cli(home.path(), &[], &["backend"]);
    assert!(run.stdout.contains("chosen by: default"), "{run:?}");
    assert!(file.is_file(), "the defaults were written");

    fs::write(&file, r#"{"backend": "test_panicking", "floatx": "float32"}"#).unwrap();
    let run = run_cli(home.path(), &[], &["backend"]);
    assert!(run.stdout.contains("backend:   test_panicking"), "{run:?}");
    assert!(run.stdout.contains(&format!("chosen by: keras.json ({})", file.display())), "{run:?}");

    let run = run_cli(home.path(), &[("KERAS_BACKEND", "cpu")], &["backend"]);
    assert!(run.stdout.contains("backend:   cpu"), "{run:?}");
    let run = run_cli(home.path(), &[("KERAS_BACKEND", "")], &["backend"]);
    assert!(run.stdout.contains("backend:   test_panicking"), "empty KERAS_BACKEND is unset: {run:?}");
}

#[test]
fn a_malformed_keras_json_fails_with_the_file_and_field() {
    let home = tempfile::tempdir().unwrap();
    let file = config::config_path(home.path());
    fs::write(&file, r#"{"epsilon": -1}"#).unwrap();
    let run = run_cli(home.path(), &[], &["backend"]);
    assert!(!run.success);
    assert_one_line(&run.stderr);
    assert_eq!(
        run.stderr.trim_end(),
        format!("error: {}: field `epsilon` is -1; allowed: a number greater than 0", file.display())
    );
}

#[test]
fn backend_use_writes_keras_json_keeping_other_fields() {
    let home = tempfile::tempdir().unwrap();
    let file = config::config_path(home.path());
    fs::write(&file, r#"{"backend": "blas", "floatx": "float64", "epsilon": 0.001, "custom": [1, 2]}"#).unwrap();

    let run = run_cli(home.path(), &[], &["backend", "use", "cpu"]);
    assert!(run.success, "{run:?}");
    let written: serde_json::Value = serde_json::from_str(&fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(written["backend"], "cpu");
    assert_eq!(written["floatx"], "float64");
    assert_eq!(written["epsilon"], 0.001);
    assert_eq!(written["custom"], serde_json::json!([1, 2]));

    // A backend that does not load is not written.
    let run = run_cli(home.path(), &[], &["backend", "use", "test_mismatched"]);
    assert!(!run.success, "{run:?}");
    assert_one_line(&run.stderr);
    let written: serde_json::Value = serde_json::from_str(&fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(written["backend"], "cpu");
}

#[test]
fn cuda_without_a_usable_gpu_fails_to_start_in_one_line_and_is_listed_with_the_reason() {
    let home = tempfile::tempdir().unwrap();
    let run = run_cli(home.path(), &[("KERAS_BACKEND", "cuda")], &["backend"]);
    if run.success {
        eprintln!("skipped: this machine runs the cuda backend, so its load error cannot be seen here");
        return;
    }
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert!(run.stderr.starts_with("error: backend `cuda` failed to start: cuda: "), "{run:?}");
    let reasons = ["no CUDA driver found (libcuda.so.1)", "NVRTC not found", "cuBLAS not found", "failed:"];
    assert!(reasons.iter().any(|r| run.stderr.contains(r)), "{run:?} gives none of the known reasons");
    let reason = run.stderr.trim_end().trim_start_matches("error: backend `cuda` failed to start: ");

    let list = run_cli(home.path(), &[], &["backend", "list"]);
    assert!(list.success, "{list:?}");
    let line = list.stdout.lines().find(|l| l.starts_with("cuda failed: ")).unwrap_or_else(|| panic!("{list:?}"));
    assert!(line.contains(reason), "{line} should give the reason {reason}");
}
