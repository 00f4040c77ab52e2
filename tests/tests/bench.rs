//! The shape of `keras-cli bench`'s output (fields, units, work counts, thread plumbing), run
//! with one or two timed calls: a test of the command, not of speed.

use keras_tests::{assert_one_line, run_cli};
use serde_json::Value;

/// Runs `keras-cli bench ARGS --json` on the cpu backend and returns its rows.
fn bench_rows(args: &[&str]) -> Vec<Value> {
    let home = tempfile::tempdir().unwrap();
    let mut full = vec!["bench", "--json"];
    full.extend_from_slice(args);
    let run = run_cli(home.path(), &[("KERAS_BACKEND", "cpu")], &full);
    assert!(run.success, "{run:?}");
    run.stdout.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))).collect()
}

#[test]
fn dispatch_json_row_has_every_field_and_a_consistent_rate() {
    let rows = bench_rows(&["--workload", "dispatch", "--repeats", "2", "--warmup", "1"]);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row["workload"], "dispatch");
    assert_eq!(row["backend"], "cpu");
    assert!(row["ordering"].is_null(), "{row}");
    assert_eq!(row["repeats"], 2);
    assert_eq!(row["warmup"], 1);
    assert_eq!(row["rate_unit"], "ns/op");
    assert_eq!(row["work_per_call"], 1000.0);
    assert!(row["threads"].as_u64().unwrap() >= 1, "{row}");
    assert!(row["device"].as_str().is_some_and(|d| !d.is_empty()), "{row}");
    let (min, median, max) =
        (row["min_s"].as_f64().unwrap(), row["median_s"].as_f64().unwrap(), row["max_s"].as_f64().unwrap());
    assert!(0.0 < min && min <= median && median <= max, "{row}");
    // Time per op: the median call over the graph's 1000 ops, in nanoseconds.
    let rate = row["rate"].as_f64().unwrap();
    assert!((rate - median / 1000.0 * 1e9).abs() <= 1e-9 * rate, "{row}");
    // At least the executable itself is resident.
    assert!(row["peak_rss_bytes"].as_u64().unwrap() > 1 << 20, "{row}");
}

#[test]
fn threads_reach_the_backend_before_it_starts() {
    for threads in ["1", "3"] {
        let rows = bench_rows(&["--workload", "dispatch", "--repeats", "1", "--threads", threads]);
        assert_eq!(rows[0]["threads"].to_string(), threads, "{rows:?}");
    }
}

#[test]
fn conv2d_rows_come_in_both_orderings_with_their_flop_counts() {
    let rows = bench_rows(&["--workload", "conv2d-fwd,conv2d-bwd", "--repeats", "1", "--warmup", "0"]);
    let found: Vec<(String, String)> =
        rows.iter().map(|r| (r["workload"].as_str().unwrap().into(), r["ordering"].as_str().unwrap().into())).collect();
    let expected = [("conv2d-fwd", "tf"), ("conv2d-fwd", "th"), ("conv2d-bwd", "tf"), ("conv2d-bwd", "th")];
    assert_eq!(found, expected.map(|(w, o)| (w.to_string(), o.to_string())));
    // 2 · batch 32 · 64 × 64 outputs · 64 out · 64 in · 3 × 3 taps; backward is data + filter.
    let forward = 2.0 * 32.0 * 64.0 * 64.0 * 64.0 * 64.0 * 9.0;
    for row in &rows {
        let work = if row["workload"] == "conv2d-fwd" { forward } else { 2.0 * forward };
        assert_eq!(row["work_per_call"], work, "{row}");
        assert_eq!(row["rate_unit"], "GFLOP/s");
        let rate = row["rate"].as_f64().unwrap();
        assert!((rate - work / row["median_s"].as_f64().unwrap() / 1e9).abs() <= 1e-9 * rate, "{row}");
    }
}

#[test]
fn text_mode_prints_a_table_and_the_device() {
    let home = tempfile::tempdir().unwrap();
    let args = ["bench", "--workload", "dispatch", "--repeats", "1"];
    let run = run_cli(home.path(), &[("KERAS_BACKEND", "cpu")], &args);
    assert!(run.success, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{run:?}");
    assert!(lines[0].starts_with("backend") && lines[0].contains("median") && lines[0].contains("peak RSS"), "{run:?}");
    assert!(lines[1].starts_with("cpu") && lines[1].contains("dispatch") && lines[1].contains("ns/op"), "{run:?}");
    assert!(lines[2].starts_with("cpu: "), "{run:?}");
}

#[test]
fn an_unknown_backend_fails_once_in_one_line() {
    let home = tempfile::tempdir().unwrap();
    let run = run_cli(home.path(), &[], &["bench", "--backend", "nosuch", "--workload", "dispatch"]);
    assert!(!run.success, "{run:?}");
    assert_one_line(&run.stderr);
    assert!(run.stderr.starts_with("error: unknown backend `nosuch`"), "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
}

#[test]
fn train_memory_row_reports_rss_over_the_steps_against_the_live_set() {
    let rows = bench_rows(&["--workload", "train-memory", "--repeats", "3", "--warmup", "1"]);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row["workload"], "train-memory");
    assert_eq!(row["steps"], 3, "{row}");
    // The step holds at least its parameters: 784·512 + 512 + 512·512 + 512 + 512·10 + 10 floats.
    let params = 4 * (784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10);
    let live = row["live_set_bytes"].as_u64().unwrap();
    assert!(live > params && live < 4 * params, "{row}");
    for key in ["baseline_rss_bytes", "rss_after_warmup_bytes", "rss_after_steps_bytes", "peak_rss_bytes"] {
        assert!(row[key].as_u64().is_some_and(|b| b > 0), "{key}: {row}");
    }
    assert!(row["peak_over_live_set"].as_f64().is_some_and(|r| r > 0.0), "{row}");
}

/// The GPU-sized workloads, which run only when `--workload` names them.
const GPU_ONLY: [&str; 4] = ["matmul-4096", "matmul-8192", "conv2d-fwd-large", "conv2d-bwd-large"];

/// The cases `keras-cli bench --list ARGS` would run; `KERAS_BACKEND` names no backend, as
/// `--list` loads none.
fn listed_cases(args: &[&str]) -> Vec<String> {
    let home = tempfile::tempdir().unwrap();
    let mut full = vec!["bench", "--list"];
    full.extend_from_slice(args);
    let run = run_cli(home.path(), &[("KERAS_BACKEND", "nosuch")], &full);
    assert!(run.success, "{run:?}");
    run.stdout.lines().map(str::to_string).collect()
}

#[test]
fn gpu_sized_workloads_run_only_when_named() {
    let default = listed_cases(&[]);
    for case in ["matmul-1024", "conv2d-bwd:th", "cnn-train-step:tf", "dispatch", "train-memory"] {
        assert!(default.iter().any(|c| c == case), "{case} not in {default:?}");
    }
    for workload in GPU_ONLY {
        assert!(!default.iter().any(|c| c.split(':').next() == Some(workload)), "{workload} in {default:?}");
    }
    // Accepted by name (clap checks the names), in run order whatever the order asked.
    let named =
        listed_cases(&["--workload", "conv2d-bwd-large,matmul-8192,conv2d-fwd-large", "--workload", "matmul-4096"]);
    let expected = [
        "matmul-4096",
        "matmul-8192",
        "conv2d-fwd-large:tf",
        "conv2d-fwd-large:th",
        "conv2d-bwd-large:tf",
        "conv2d-bwd-large:th",
    ];
    assert_eq!(named, expected);
    let home = tempfile::tempdir().unwrap();
    let run = run_cli(home.path(), &[], &["bench", "--list", "--workload", "matmul-16384"]);
    assert!(!run.success && run.stderr.contains("invalid value"), "{run:?}");
}

#[test]
fn the_python_references_list_the_same_cases() {
    // bench/reference/common.py keeps its own copy of the workload list (ours has
    // `train-memory` too); bench.py --list imports no framework, only the standard library.
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/reference/bench.py");
    let python = |args: &[&str]| -> Option<Vec<String>> {
        let output = std::process::Command::new("python3").arg(&script).arg("--list").args(args).output().ok()?;
        assert!(output.status.success(), "{output:?}");
        Some(String::from_utf8_lossy(&output.stdout).lines().map(str::to_string).collect())
    };
    let ours =
        |args: &[&str]| -> Vec<String> { listed_cases(args).into_iter().filter(|c| c != "train-memory").collect() };
    let Some(default) = python(&[]) else {
        eprintln!("skipped: python3 does not run");
        return;
    };
    assert_eq!(default, ours(&[]));
    let every = ours(&["--workload", &GPU_ONLY.join(",")]);
    assert_eq!(python(&["--workload", &GPU_ONLY.join(",")]).unwrap(), every);
}
