//! The conformance runner: runs the Keras 1 reference cases (`tests/conformance/keras1/`, format
//! in `tests/conformance/README.md`) on one or several backends and judges every output, the
//! gradients, the `_meta` probes, and the agreement between backends.
//!
//! ```no_run
//! use keras_tests::conformance::{self as c, Options};
//!
//! let cases = c::load_cases(std::path::Path::new(c::DEFAULT_CASES)).unwrap();
//! let targets = c::targets(vec![keras::registry::load("cpu").unwrap()]);
//! let report = c::run_all(&cases, &targets, &Options { gradients: true, ..Options::default() });
//! report.print_text(&mut std::io::stdout(), false).unwrap();
//! ```

pub mod build;
pub mod calls;
pub mod compare;
pub mod ctc;
pub mod gradcheck;
pub mod known;
pub mod kwargs;
pub mod manifest;
pub mod meta;
pub mod npy;
pub mod options;
pub mod recipes;
pub mod report;

use std::panic::{AssertUnwindSafe, catch_unwind};

use keras::{Array, Backend, backend::with_backend};

pub use manifest::{Case, CaseSet, load_cases};
pub use report::{CaseResult, Check, Report, Status};

use compare::{Mismatch, compare, tolerance};

/// The project's own case folder.
pub const DEFAULT_CASES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/conformance/keras1");

/// What a run includes.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Only results whose name contains this text.
    pub filter: Option<String>,
    /// Run the gradient checks (`<case>.grad`).
    pub gradients: bool,
}

impl Options {
    fn selects(&self, name: &str) -> bool {
        self.filter.as_deref().is_none_or(|f| name.contains(f))
    }
}

/// A backend and the label its results carry.
#[derive(Clone, Debug)]
pub struct Target {
    /// Its name, or `name (file)` when two backends share a name.
    pub label: String,
    /// The backend.
    pub backend: Backend,
}

/// Labels `backends`: the name, made unique with the library file (or `built-in`) when needed.
pub fn targets(backends: Vec<Backend>) -> Vec<Target> {
    let names: Vec<String> = backends.iter().map(|b| b.name().to_string()).collect();
    backends
        .into_iter()
        .map(|backend| {
            let mut label = backend.name().to_string();
            if names.iter().filter(|n| **n == label).count() > 1 {
                let file = backend.library_path().and_then(|p| p.file_name()).map(|f| f.to_string_lossy().into_owned());
                label = format!("{label} ({})", file.unwrap_or_else(|| "built-in".into()));
            }
            Target { label, backend }
        })
        .collect()
}

/// Runs `body`, turning a panic into an error, so one broken case cannot stop the run.
fn guarded<T>(body: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a non-text panic".into());
        Err(format!("panicked inside the K API: {message}"))
    })
}

fn is_beam_search(case: &Case) -> bool {
    case.function() == "ctc_decode" && case.record.kwargs.get("greedy").and_then(|v| v.as_bool()) == Some(false)
}

/// Compares a case's outputs with its reference files; one mismatch per output that differs.
fn judge_outputs(case: &Case, actual: &[(String, Array)]) -> Result<Vec<Mismatch>, String> {
    let expected = case
        .record
        .outputs
        .iter()
        .map(|o| Ok((o.label.clone(), npy::read(&case.dir.join(&o.file))?)))
        .collect::<Result<Vec<_>, String>>()?;
    if is_beam_search(case) {
        let top_paths = case.record.kwargs.get("top_paths").and_then(|v| v.as_u64()).unwrap_or(1) as usize;
        return ctc::judge_beam(case, actual, &expected, top_paths);
    }
    let missing = |label: &str, message: &str| Mismatch {
        label: label.to_string(),
        message: message.to_string(),
        max_abs: None,
        max_rel: None,
    };
    let mut mismatches = Vec::new();
    for (label, reference) in &expected {
        match actual.iter().find(|(l, _)| l == label) {
            None => mismatches.push(missing(label, "no such output")),
            Some((_, value)) => {
                let rule = tolerance(case.function(), reference.dtype());
                mismatches.extend(compare(label, value, reference, rule).err());
            }
        }
    }
    for (label, _) in actual.iter().filter(|(l, _)| !expected.iter().any(|(e, _)| e == l)) {
        mismatches.push(missing(label, "an output the reference does not have"));
    }
    Ok(mismatches)
}

/// Runs one case on the current backend and judges it against the reference.
fn judge_case(case: &Case, label: &str) -> CaseResult {
    let result = CaseResult::new(case.name(), case.function(), Check::Case, label, Status::Pass);
    if let Some(reason) = &case.skip {
        return CaseResult { status: Status::Skip, ..result }.because(reason);
    }
    let values = match guarded(|| build::evaluate(case, None)) {
        Ok(values) => values,
        Err(reason) => return CaseResult { status: Status::Fail, ..result }.because(reason),
    };
    let mut result = match guarded(|| judge_outputs(case, &values)) {
        Ok(mismatches) if mismatches.is_empty() => result,
        Ok(mismatches) => CaseResult { status: Status::Fail, mismatches, ..result },
        Err(reason) => CaseResult { status: Status::Fail, ..result }.because(reason),
    };
    result.outputs = values;
    result
}

/// The gradient check of a case on the current backend (`forward`: the case's own result).
fn judge_gradients(case: &Case, label: &str, forward: &CaseResult) -> CaseResult {
    let result = CaseResult::new(format!("{}.grad", case.name()), case.function(), Check::Grad, label, Status::Pass);
    let skip = |reason: String| CaseResult { status: Status::Skip, ..result.clone() }.because(reason);
    let wrt = match gradcheck::differentiable_inputs(case) {
        Ok(wrt) => wrt,
        Err(reason) => return skip(reason),
    };
    if forward.status == Status::Fail && forward.outputs.is_empty() {
        return skip(format!("the case itself does not run: {}", forward.reason.as_deref().unwrap_or("")));
    }
    match guarded(|| gradcheck::check(case, &wrt)) {
        Err(reason) => CaseResult { status: Status::Fail, ..result }.because(reason),
        Ok(outcome) => {
            let note = format!(
                "{} elements checked, {} kinks and {} singular points skipped",
                outcome.checked, outcome.kinks, outcome.singular
            );
            if outcome.failed > 0 {
                let mismatches = outcome
                    .failures
                    .iter()
                    .map(|m| Mismatch { label: "grad".into(), message: m.clone(), max_abs: None, max_rel: None })
                    .collect();
                let reason =
                    format!("{} of {} elements disagree with finite differences", outcome.failed, outcome.checked);
                CaseResult { status: Status::Fail, mismatches, note: Some(note), ..result }.because(reason)
            } else if outcome.checked == 0 {
                skip(format!("no element could be checked: {note}"))
            } else {
                CaseResult { note: Some(note), ..result }
            }
        }
    }
}

/// Runs one case (and its gradient check when `options.gradients`) on `backend`.
pub fn run_case(case: &Case, backend: &Backend, label: &str, options: &Options) -> Vec<CaseResult> {
    with_backend(backend, || {
        let forward = judge_case(case, label);
        let grad = options.gradients.then(|| judge_gradients(case, label, &forward));
        std::iter::once(forward).chain(grad).collect()
    })
}

/// The `_meta` probes of `set` on `backend`, as results `_meta.<probe>`.
pub fn run_meta(set: &CaseSet, backend: &Backend, label: &str, options: &Options) -> Vec<CaseResult> {
    let Some(meta) = &set.meta else { return Vec::new() };
    with_backend(backend, || {
        let probes = meta.probes.iter().filter(|(name, _)| options.selects(&format!("_meta.{name}")));
        probes
            .map(|(name, expected)| {
                let result = CaseResult::new(format!("_meta.{name}"), "_meta", Check::Meta, label, Status::Pass);
                match guarded(|| meta::probe(name, expected)) {
                    Ok(None) => result,
                    Ok(Some(reason)) => CaseResult { status: Status::Skip, ..result }.because(reason),
                    Err(reason) => CaseResult { status: Status::Fail, ..result }.because(reason),
                }
            })
            .collect()
    })
}

/// Every selected case and probe of `set` on one target.
pub fn run_target(set: &CaseSet, target: &Target, options: &Options) -> Vec<CaseResult> {
    let mut results = run_meta(set, &target.backend, &target.label, options);
    for case in set.cases.iter().filter(|c| options.selects(c.name())) {
        results.extend(run_case(case, &target.backend, &target.label, options));
    }
    results
}

/// Cross-backend agreement: each case's outputs on every pair of targets, compared with the
/// case's tolerance; results `<case> [a vs b]`.
pub fn agreement(results: &[CaseResult], labels: &[String]) -> Vec<CaseResult> {
    let mut agreement = Vec::new();
    let cases: Vec<&CaseResult> = results.iter().filter(|r| r.check == Check::Case && !r.outputs.is_empty()).collect();
    for (i, a) in labels.iter().enumerate() {
        for b in &labels[i + 1..] {
            for left in cases.iter().filter(|r| &r.backend == a) {
                let Some(right) = cases.iter().find(|r| &r.backend == b && r.name == left.name) else { continue };
                let name = format!("{} [{a} vs {b}]", left.name);
                let mut result =
                    CaseResult::new(name, &left.function, Check::Agreement, &format!("{a} vs {b}"), Status::Pass);
                for (label, value) in &left.outputs {
                    match right.outputs.iter().find(|(l, _)| l == label) {
                        None => result.mismatches.push(Mismatch {
                            label: label.clone(),
                            message: format!("{b} has no such output"),
                            max_abs: None,
                            max_rel: None,
                        }),
                        Some((_, other)) => {
                            let rule = tolerance(&left.function, value.dtype());
                            result.mismatches.extend(compare(label, other, value, rule).err());
                        }
                    }
                }
                if !result.mismatches.is_empty() {
                    result.status = Status::Fail;
                }
                agreement.push(result);
            }
        }
    }
    agreement
}

/// Runs `set` on every target (one thread per target) and, with several targets, checks that
/// they agree with each other.
pub fn run_all(set: &CaseSet, targets: &[Target], options: &Options) -> Report {
    let per_target: Vec<Vec<CaseResult>> = std::thread::scope(|scope| {
        let handles: Vec<_> = targets.iter().map(|t| scope.spawn(move || run_target(set, t, options))).collect();
        handles
            .into_iter()
            .zip(targets)
            .map(|(handle, target)| {
                handle.join().unwrap_or_else(|_| {
                    let failed = CaseResult::new("_run", "_run", Check::Case, &target.label, Status::Fail);
                    vec![failed.because("the run on this backend panicked outside any case")]
                })
            })
            .collect()
    });
    let labels: Vec<String> = targets.iter().map(|t| t.label.clone()).collect();
    let mut results: Vec<CaseResult> = per_target.into_iter().flatten().collect();
    let cross = agreement(&results, &labels);
    results.extend(cross);
    Report { backends: labels, results }
}
