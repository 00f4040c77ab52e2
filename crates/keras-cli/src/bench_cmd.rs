//! `keras-cli bench`: times a fixed set of workloads (matmul, conv2d forward and backward in
//! both dim orderings, an MLP and a CNN training step, two element-wise passes over 2^24
//! floats, and the per-op dispatch cost) on one backend or on all of them, in float32.
//! Larger matmul and conv2d workloads sized for a GPU (`workloads::GPU_ONLY`) run only when
//! `--workload` names them, so that the default run stays short on a CPU; `--list` prints the
//! cases a run would time without running them.
//!
//! Each workload is a graph built with the K API and compiled once with `K::function`; the
//! timed region is one `Function::call` followed by the download of a one-element "fence"
//! variable the call updated, so that on an asynchronous (GPU) backend the time includes the
//! kernels and not only their launches (the training steps' loss is their fence), repeated
//! after untimed warm-up calls (the first call specialises and plans the graph). How each one
//! is built, what its FLOPs or bytes are and what crosses the host boundary is documented in
//! `bench/workloads.rs`: operands are variables and results replace variables, so only the
//! training steps move data to and from the host (their batch in, their loss out), as a Keras
//! training loop does.
//!
//! Every (backend, workload) pair runs in a child process of its own (this executable, with
//! the hidden `--case` option), so that:
//! * `peak_rss_bytes` (the child's `VmHWM`) is that workload's peak, not the run's so far;
//! * `--threads N` reaches the backend before it starts: the children get
//!   `RAYON_NUM_THREADS`, `OPENBLAS_NUM_THREADS` and `OMP_NUM_THREADS` set to N, which the
//!   thread pools read once, when the backend library first uses them;
//! * a backend that crashes on one workload does not stop the others.
//!
//! `train-memory` runs the MLP step [`workloads::SOAK_STEPS`] times (or `--repeats`) and adds
//! its RSS after the warm-up, at the end and at its peak over the steps, against the live set
//! of the step (`Function::peak_live_bytes`); every row has `live_set_bytes`.
//!
//! Convolution rows share a workload name and differ by their `ordering` field (`tf` or `th`);
//! `--workload conv2d-fwd` runs both. The `cnn-train-step` row is `tf`-ordered.

#[path = "bench/measure.rs"]
mod measure;
#[path = "bench/workloads.rs"]
mod workloads;

use std::{
    io::Write,
    process::{Command, Stdio},
};

use clap::{Args, builder::PossibleValuesParser};
use keras::{
    Error,
    backend::{self as K, DType},
    registry::{self, Backend},
};
use serde_json::{Value, json};
use workloads::{Case, WORKLOADS, all_cases, bench_error, runs_by_default};

/// The variables the thread pools of the backends read when they start.
const THREAD_ENV: [&str; 3] = ["RAYON_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"];

/// Arguments of `keras-cli bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// A backend name (cpu, blas, ...), a plugin library path, or `all` for every backend found
    /// that loads. Default: the active backend (KERAS_BACKEND, keras.json, else cpu).
    #[arg(long)]
    backend: Option<String>,

    /// The workloads to run (comma-separated, or the option repeated). Default: all of them but
    /// the GPU-sized ones (matmul-4096, matmul-8192, conv2d-fwd-large, conv2d-bwd-large), which
    /// run only when named.
    #[arg(long, value_delimiter = ',', value_parser = PossibleValuesParser::new(WORKLOADS))]
    workload: Vec<String>,

    /// Print the cases the run would time (`workload` or `workload:ordering`, one a line) and
    /// exit, without loading a backend.
    #[arg(long)]
    list: bool,

    /// Worker threads of the backend (sets RAYON_NUM_THREADS, OPENBLAS_NUM_THREADS and
    /// OMP_NUM_THREADS for the runs). Default: the backend's own choice, usually every core.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    threads: Option<u32>,

    /// One JSON object per line per workload and backend instead of a table.
    #[arg(long)]
    json: bool,

    /// Timed calls per workload. Default: at least 5, more until one second is spent, at most
    /// 200.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    repeats: Option<u32>,

    /// Untimed calls before the timed ones.
    #[arg(long, default_value_t = 2)]
    warmup: u32,

    /// Internal: run this one case (`workload` or `workload:ordering`) in this process and
    /// print its JSON row; the parent run starts one such child per row.
    #[arg(long, hide = true)]
    case: Option<String>,
}

/// Runs `keras-cli bench`; fails (after printing every row that ran) when a run failed.
pub fn run(args: BenchArgs) -> Result<(), Error> {
    if let Some(id) = &args.case {
        return run_case(&args, id);
    }
    let cases: Vec<Case> = all_cases()
        .into_iter()
        .filter(|case| {
            if args.workload.is_empty() {
                runs_by_default(case.workload)
            } else {
                args.workload.iter().any(|w| w == case.workload)
            }
        })
        .collect();
    if args.list {
        return cases.iter().try_for_each(|case| print_line(&case.id()));
    }
    let mut out = Output { json: args.json, devices: Vec::new() };
    let targets = targets(args.backend.as_deref(), &mut out)?;
    out.header()?;
    let mut failed = 0;
    for target in &targets {
        for case in &cases {
            match run_child(&args, target.spec.as_deref(), *case) {
                Ok(row) => out.row(&row)?,
                Err(message) => {
                    failed += 1;
                    out.note(&format!("backend {} workload {} failed: {message}", target.name, case.id()))?;
                }
            }
        }
    }
    out.footer()?;
    if failed > 0 {
        let total = cases.len() * targets.len();
        return Err(bench_error(format!("{failed} of {total} runs failed")));
    }
    Ok(())
}

/// A backend to run every case on: its name, and what the children pass to `--backend`
/// (`None`: the active backend).
struct Target {
    name: String,
    spec: Option<String>,
}

/// The backends to run, each checked to load here first: a backend that does not load is an
/// error, except with `all`, where it is named with the reason and skipped.
fn targets(backend: Option<&str>, out: &mut Output) -> Result<Vec<Target>, Error> {
    match backend {
        None => {
            let backend = registry::active()?;
            Ok(vec![Target { name: backend.name().to_string(), spec: None }])
        }
        Some("all") => {
            let mut targets: Vec<Target> = Vec::new();
            for found in registry::discover() {
                if let Some(first) = targets.iter().find(|t| t.name == found.name) {
                    // A name resolves to the first backend found by it; the later one is the
                    // same backend (the built-in cpu after libkeras_backend_cpu.so).
                    let first = first.spec.clone().unwrap_or_default();
                    out.note(&format!("backend {} found again, run once (from {first})", found.name))?;
                    continue;
                }
                match found.load() {
                    Ok(_) => {
                        let spec = found.path.as_ref().map_or_else(|| found.name.clone(), |p| p.display().to_string());
                        targets.push(Target { name: found.name.clone(), spec: Some(spec) });
                    }
                    Err(error) => out.note(&format!("backend {} does not load, not run: {error}", found.name))?,
                }
            }
            Ok(targets)
        }
        Some(spec) => {
            let backend = registry::load(spec)?;
            Ok(vec![Target { name: backend.name().to_string(), spec: Some(spec.to_string()) }])
        }
    }
}

/// Runs one case in a child process and returns its JSON row, or why it failed.
fn run_child(args: &BenchArgs, spec: Option<&str>, case: Case) -> Result<Value, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let mut command = Command::new(exe);
    command.args(["bench", "--case", &case.id(), "--warmup", &args.warmup.to_string()]);
    if let Some(repeats) = args.repeats {
        command.args(["--repeats", &repeats.to_string()]);
    }
    if let Some(spec) = spec {
        command.args(["--backend", spec]);
    }
    if let Some(threads) = args.threads {
        for name in THREAD_ENV {
            command.env(name, threads.to_string());
        }
    }
    let output = command.stdin(Stdio::null()).output().map_err(|e| format!("cannot start the run: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
        return Err(last.map_or_else(|| format!("the run ended with {}", output.status), str::to_string));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    serde_json::from_str(line).map_err(|e| format!("the run printed no JSON row ({e}): {line:?}"))
}

/// The child side: loads the backend, builds, warms up and times `id`, prints one JSON row.
fn run_case(args: &BenchArgs, id: &str) -> Result<(), Error> {
    let case = Case::from_id(id).ok_or_else(|| bench_error(format!("unknown case `{id}`")))?;
    let backend = match args.backend.as_deref() {
        Some(spec) => registry::load(spec)?,
        None => registry::active()?,
    };
    // The workloads are defined in float32 whatever keras.json's floatx says.
    K::set_floatx(DType::F32)?;
    let (baseline_rss, baseline_anon) = (measure::rss_bytes(), measure::anon_rss_bytes());
    let (prepared, timing, soak) = K::with_backend(&backend, || {
        let prepared = workloads::prepare(case)?;
        let warmup = args.warmup as usize;
        let (timing, soak) = if case.workload == "train-memory" {
            let steps = args.repeats.map_or(workloads::SOAK_STEPS, |n| n as usize);
            let (timing, soak) = measure::soak(&prepared, warmup, steps)?;
            (timing, Some(soak))
        } else {
            (measure::time_calls(&prepared, warmup, args.repeats.map(|n| n as usize))?, None)
        };
        Ok::<_, Error>((prepared, timing, soak))
    })?;
    let live_set = K::with_backend(&backend, || prepared.function.peak_live_bytes(&prepared.feeds))?;
    let mut row = case_row(case, &backend, &prepared, &timing);
    row["baseline_rss_bytes"] = json!(baseline_rss);
    row["baseline_anon_rss_bytes"] = json!(baseline_anon);
    row["live_set_bytes"] = json!(live_set);
    if let Some(soak) = soak {
        row["steps"] = json!(soak.steps);
        row["heap_released_before_run_bytes"] = json!(soak.heap_released);
        row["mapped_populated"] = json!(soak.mapped_populated);
        row["rss_after_warmup_bytes"] = json!(soak.rss_after_warmup);
        row["rss_after_steps_bytes"] = json!(soak.rss_after_steps);
        row["peak_rss_bytes"] = json!(soak.peak_rss);
        row["mapped_rss_after_warmup_bytes"] = json!(soak.mapped_rss_after_warmup);
        row["mapped_rss_after_steps_bytes"] = json!(soak.mapped_rss_after_steps);
        row["peak_anon_rss_bytes"] = json!(soak.peak_anon_rss);
        // What the run holds above the process it started in, per byte it cannot do without:
        // all of it, and anonymous memory alone (without the pages of code the kernels fault in).
        let over_live_set =
            |peak: Option<u64>, base: Option<u64>| Some(peak?.saturating_sub(base?) as f64 / live_set.max(1) as f64);
        row["peak_over_live_set"] = json!(over_live_set(soak.peak_rss, baseline_rss));
        row["peak_anon_over_live_set"] = json!(over_live_set(soak.peak_anon_rss, baseline_anon));
    }
    print_line(&row.to_string())
}

/// The JSON row of one timed case (the `--json` output line).
fn case_row(case: Case, backend: &Backend, prepared: &workloads::Prepared, timing: &measure::Timing) -> Value {
    let info = backend.info();
    json!({
        "workload": case.workload,
        "ordering": case.ordering.map(|o| o.name()),
        "backend": backend.name(),
        "library": backend.library_path().map(|p| p.display().to_string()),
        "device": info.device,
        "threads": info.threads,
        "warmup": timing.warmup,
        "repeats": timing.repeats,
        "median_s": timing.median_s,
        "min_s": timing.min_s,
        "max_s": timing.max_s,
        "rate": prepared.unit.rate(prepared.work, timing.median_s),
        "rate_unit": prepared.unit.name(),
        "work_per_call": prepared.work,
        "peak_rss_bytes": measure::peak_rss_bytes(),
    })
}

/// Prints to stdout, a failure to write (a closed pipe) being an error rather than a panic.
fn print_line(line: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).map_err(|e| Error::Config {
        path: "<stdout>".into(),
        field: None,
        message: format!("cannot write the results: {e}"),
    })
}

/// Column widths of the text table, in the order of [`Output::header`].
const WIDTHS: [usize; 11] = [8, 16, 3, 7, 11, 11, 11, 9, 7, 9, 4];

/// Where rows go: JSON lines, or an aligned table printed row by row, followed by each
/// backend's device; notes go to stderr with `--json` so that stdout stays JSON.
struct Output {
    json: bool,
    devices: Vec<(String, String, String)>,
}

impl Output {
    fn header(&self) -> Result<(), Error> {
        if self.json {
            return Ok(());
        }
        let names = ["backend", "workload", "ord", "threads", "median", "min", "max", "rate", "unit", "peak RSS", "n"];
        print_line(&table_line(&names.map(str::to_string)))
    }

    fn row(&mut self, row: &Value) -> Result<(), Error> {
        if self.json {
            return print_line(&row.to_string());
        }
        let text = |key: &str| row[key].as_str().unwrap_or("-").to_string();
        let seconds = |key: &str| row[key].as_f64().map_or_else(|| "-".to_string(), format_seconds);
        let device = (text("backend"), text("device"), text("library"));
        if !self.devices.contains(&device) {
            self.devices.push(device);
        }
        let cells = [
            text("backend"),
            text("workload"),
            text("ordering"),
            row["threads"].to_string(),
            seconds("median_s"),
            seconds("min_s"),
            seconds("max_s"),
            row["rate"].as_f64().map_or_else(|| "-".to_string(), |r| format!("{r:.1}")),
            text("rate_unit"),
            row["peak_rss_bytes"].as_f64().map_or_else(|| "-".to_string(), |b| format!("{:.0} MiB", b / 1048576.0)),
            row["repeats"].to_string(),
        ];
        print_line(&table_line(&cells))?;
        if let Some(ratio) = row["peak_over_live_set"].as_f64() {
            let mib =
                |key: &str| row[key].as_f64().map_or_else(|| "-".to_string(), |b| format!("{:.1}", b / 1048576.0));
            print_line(&format!(
                "  memory over {} steps: RSS {} MiB after the warm-up, {} MiB at the end, peak {} MiB; \
                 peak above the {} MiB baseline = {ratio:.2}x the live set of {} MiB, mapped files included",
                row["steps"],
                mib("rss_after_warmup_bytes"),
                mib("rss_after_steps_bytes"),
                mib("peak_rss_bytes"),
                mib("baseline_rss_bytes"),
                mib("live_set_bytes"),
            ))?;
            if let Some(anon_ratio) = row["peak_anon_over_live_set"].as_f64() {
                let exactness = if row["mapped_populated"] == true {
                    "exact, mapped files made resident first"
                } else {
                    "upper bound"
                };
                print_line(&format!(
                    "  anonymous memory (heap, stacks): peak {} MiB ({exactness}), {} MiB before the workload = \
                     {anon_ratio:.2}x the live set; {} MiB of heap freed by the set-up returned before the run; \
                     mapped code and data {} MiB after the warm-up, {} MiB at the end",
                    mib("peak_anon_rss_bytes"),
                    mib("baseline_anon_rss_bytes"),
                    mib("heap_released_before_run_bytes"),
                    mib("mapped_rss_after_warmup_bytes"),
                    mib("mapped_rss_after_steps_bytes"),
                ))?;
            }
        }
        Ok(())
    }

    fn note(&self, line: &str) -> Result<(), Error> {
        if self.json {
            eprintln!("{line}");
            Ok(())
        } else {
            print_line(line)
        }
    }

    fn footer(&self) -> Result<(), Error> {
        if self.json {
            return Ok(());
        }
        for (backend, device, library) in &self.devices {
            let library = if library == "-" { "built-in" } else { library };
            print_line(&format!("{backend}: {device}; {library}"))?;
        }
        Ok(())
    }
}

/// One table line: text columns left-aligned, the others right-aligned, to [`WIDTHS`].
fn table_line(cells: &[String; 11]) -> String {
    let mut line = String::new();
    for (k, (cell, width)) in cells.iter().zip(WIDTHS).enumerate() {
        let left = k < 3 || k == 8;
        if k > 0 {
            line.push_str("  ");
        }
        if left {
            line.push_str(&format!("{cell:<width$}"));
        } else {
            line.push_str(&format!("{cell:>width$}"));
        }
    }
    line.trim_end().to_string()
}

/// A duration in the unit that keeps three significant digits readable: s, ms or µs.
fn format_seconds(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.3} s")
    } else if s >= 1e-3 {
        format!("{:.3} ms", s * 1e3)
    } else {
        format!("{:.2} µs", s * 1e6)
    }
}
