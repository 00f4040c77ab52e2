//! The project's conformance run (issue 3 items 5-7): every public case of
//! `tests/conformance/keras1/` and its gradient check, on the built-in `cpu` backend and on each
//! workspace plugin library built in `target/debug`, plus their agreement with each other.
//! Failures are judged against `tests/conformance/known-failures/<backend>.txt`: a failure not
//! listed fails the test, and so does a listed result that passes (the lists only shrink).
//!
//! The other tests run `keras-cli conformance` on small case folders written here, so the
//! runner's own behaviour (failure lines, exit status, unknown arguments) is checked whatever
//! the K API's progress.

use std::{
    collections::{BTreeMap, HashMap},
    fs,
    path::Path,
};

use keras::{Array, registry};
use keras_tests::{
    BUILD_FIRST,
    conformance::{self as c, Check, Options, known, npy},
    run_cli, target_dir,
};
use serde_json::{Value, json};

fn known_failures(backend: &str) -> BTreeMap<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("conformance/known-failures/{backend}.txt"));
    match fs::read_to_string(&path) {
        Ok(text) => known::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        Err(_) => BTreeMap::new(),
    }
}

/// The built-in cpu backend and every workspace plugin library that is built.
fn backends() -> Vec<keras::Backend> {
    let mut backends = vec![registry::load_in("cpu", &[]).expect("the built-in cpu backend")];
    for name in ["cpu", "blas"] {
        let path = target_dir().join(registry::library_file_name(name));
        if !path.is_file() {
            println!("skipping the {name} plugin: {} is not built (`{BUILD_FIRST}`)", path.display());
            continue;
        }
        let backend = registry::load(path.to_str().expect("a UTF-8 target path"));
        backends.push(backend.unwrap_or_else(|e| panic!("{} is built but does not load: {e}", path.display())));
    }
    backends
}

#[test]
fn every_public_case_passes_on_every_backend_except_the_known_failures() {
    let cases = c::load_cases(Path::new(c::DEFAULT_CASES)).expect("the project's case folder");
    let targets = c::targets(backends());
    let report = c::run_all(&cases, &targets, &Options { filter: None, gradients: true });
    report.print_text(&mut std::io::stdout(), false).unwrap();

    let names: HashMap<&str, &str> = targets.iter().map(|t| (t.label.as_str(), t.backend.name())).collect();
    let mut offenders = Vec::new();
    for target in &targets {
        let list = known_failures(target.backend.name());
        let own = report.results.iter().filter(|r| r.backend == target.label && r.check != Check::Agreement);
        let verdict = known::check(own, &list);
        offenders.extend(verdict.unexpected);
        offenders.extend(verdict.now_passing.iter().map(|n| {
            format!("PASSES but is listed in known-failures/{}.txt (remove it): {n}", names[target.label.as_str()])
        }));
    }
    // Backends must agree wherever both produce outputs: no list applies.
    let agreement = report.results.iter().filter(|r| r.check == Check::Agreement);
    offenders.extend(known::check(agreement, &BTreeMap::new()).unexpected);
    let grads = report.results.iter().filter(|r| r.check == Check::Grad && r.status == c::Status::Pass).count();
    assert!(grads > 100, "only {grads} gradient checks passed: the gradient checks did not run");
    assert!(offenders.is_empty(), "{} offenders:\n{}", offenders.len(), offenders.join("\n"));
}

/// Writes an engine folder with `records` (their `inputs`/`outputs` files given as arrays).
fn write_cases(dir: &Path, records: &[(Value, Vec<(&str, Array)>)]) {
    let mut manifest = String::new();
    for (record, files) in records {
        for (file, array) in files {
            npy::write(&dir.join(file), array).unwrap();
        }
        manifest.push_str(&format!("{record}\n"));
    }
    manifest.push_str(&format!("{}\n", json!({"case": "_meta", "status": "meta", "probes": {"ndim_placeholder": 3}})));
    fs::write(dir.join("manifest.jsonl"), manifest).unwrap();
}

fn case(name: &str, function: &str, kwargs: Value, output: Array) -> (Value, Vec<(&'static str, Array)>) {
    let input_file: &'static str = format!("{name}.in.x.npy").leak();
    let output_file: &'static str = format!("{name}.out.out.npy").leak();
    let shape = json!(output.shape());
    let dtype = output.dtype().name();
    let record = json!({"case": name, "function": function, "args": ["x"], "kwargs": kwargs, "custom_call": false,
        "status": "ok", "inputs": {"x": {"file": input_file, "kind": "ph", "shape": [3], "dtype": "float32"}},
        "outputs": [{"label": "out", "file": output_file, "shape": shape, "dtype": dtype}]});
    let x = Array::from(vec![-1.5f32, 0.25, 2.0]);
    (record, vec![(input_file, x), (output_file, output)])
}

#[test]
fn the_cli_prints_each_failure_a_table_and_the_summary_last_and_exits_non_zero() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_cases(
        dir.path(),
        &[
            case("abs_ok", "abs", json!({}), Array::from(vec![1.5f32, 0.25, 2.0])),
            case("abs_wrong", "abs", json!({}), Array::from(vec![1.5f32, 0.25, 2.5])),
            case("sum_mystery", "sum", json!({"mystery": 1}), Array::scalar(0.75f32)),
            case("sum_int", "sum", json!({}), Array::scalar(1i32)),
        ],
    );
    let cases = dir.path().to_str().unwrap();
    let run = run_cli(home.path(), &[], &["conformance", "--backend", "cpu", "--cases", cases, "--no-grad"]);
    assert!(!run.success, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.last(), Some(&"2 passed, 3 failed, 0 skipped"), "{run:?}");
    assert!(lines.iter().any(|l| l.starts_with("FAIL abs_wrong out: max abs error 5.000e-1, max rel error 2.000e-1")));
    assert!(lines.iter().any(|l| l.contains("FAIL sum_mystery") && l.contains("`mystery` = 1")), "{run:?}");
    assert!(lines.iter().any(|l| l.contains("FAIL sum_int out: dtype float32 (Float), expected int32")), "{run:?}");
    assert!(lines.iter().any(|l| l.split_whitespace().eq(["abs", "1", "1", "0"])), "{run:?}");
    assert!(lines.iter().any(|l| l.split_whitespace().eq(["_meta", "1", "0", "0"])), "{run:?}");

    let ok = run_cli(home.path(), &[], &["conformance", "--backend", "cpu", "--cases", cases, "--filter", "abs_ok"]);
    assert!(ok.success, "{ok:?}");
    assert_eq!(ok.stdout.lines().last(), Some("2 passed, 0 failed, 0 skipped"), "{ok:?}");
}

#[test]
fn json_output_has_one_object_per_result_with_gradient_checks() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_cases(dir.path(), &[case("square_ok", "square", json!({}), Array::from(vec![2.25f32, 0.0625, 4.0]))]);
    let args = ["conformance", "--backend", "cpu", "--cases", dir.path().to_str().unwrap(), "--json"];
    let run = run_cli(home.path(), &[], &args);
    assert!(run.success, "{run:?}");
    let rows: Vec<Value> = run.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let find = |name: &str| rows.iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("{name}: {rows:?}"));
    assert_eq!(find("square_ok")["status"], "pass");
    assert_eq!(find("square_ok.grad")["status"], "pass");
    assert!(find("square_ok.grad")["note"].as_str().unwrap().starts_with("3 elements checked"));
    assert_eq!(rows.last().unwrap()["summary"]["line"], "3 passed, 0 failed, 0 skipped");
}

#[test]
fn a_case_folder_without_a_manifest_is_an_error_naming_it() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = run_cli(home.path(), &[], &["conformance", "--cases", dir.path().to_str().unwrap()]);
    assert!(!run.success, "{run:?}");
    assert!(run.stderr.starts_with("error: ") && run.stderr.contains("no manifest.jsonl"), "{run:?}");
}
