//! Results of a conformance run and how they are printed: every failure with its reason, a
//! per-function table, and the closing line `N passed, M failed, K skipped` (or, with
//! `--json`, one JSON object per result and a summary object).

use std::{collections::BTreeMap, io::Write};

use keras::Array;
use serde::Serialize;
use serde_json::json;

use super::compare::Mismatch;

/// Outcome of one result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Matched.
    Pass,
    /// Did not match, or could not run.
    Fail,
    /// Not judged; `reason` says why.
    Skip,
}

/// What a result checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Check {
    /// A case's outputs against the reference.
    Case,
    /// `K.gradients` against finite differences (`<case>.grad`).
    Grad,
    /// A `_meta` probe (`_meta.<probe>`).
    Meta,
    /// A case's outputs on two backends against each other (`<case> [a vs b]`).
    Agreement,
}

/// One judged item.
#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    /// The result's name: the case, `<case>.grad`, `_meta.<probe>` or `<case> [a vs b]`.
    pub name: String,
    /// The K function of the case (`_meta` for probes).
    pub function: String,
    /// What is checked.
    pub check: Check,
    /// The backend label (`a vs b` for agreement).
    pub backend: String,
    /// Pass, fail or skip.
    pub status: Status,
    /// Why it failed as a whole (an error) or was skipped.
    pub reason: Option<String>,
    /// Each output that did not match.
    pub mismatches: Vec<Mismatch>,
    /// Extra information (gradient checks: elements checked, kinks skipped).
    pub note: Option<String>,
    /// The outputs computed, kept for cross-backend agreement.
    #[serde(skip)]
    pub outputs: Vec<(String, Array)>,
}

impl CaseResult {
    /// A result with no mismatches yet.
    pub fn new(name: impl Into<String>, function: &str, check: Check, backend: &str, status: Status) -> CaseResult {
        CaseResult {
            name: name.into(),
            function: function.to_string(),
            check,
            backend: backend.to_string(),
            status,
            reason: None,
            mismatches: Vec::new(),
            note: None,
            outputs: Vec::new(),
        }
    }

    /// This result with `reason` set.
    pub fn because(mut self, reason: impl Into<String>) -> CaseResult {
        self.reason = Some(reason.into());
        self
    }

    /// One line per failure (the reason, or one per mismatching output).
    pub fn failure_lines(&self, show_backend: bool) -> Vec<String> {
        let at = if show_backend { format!(" [{}]", self.backend) } else { String::new() };
        let mut lines: Vec<String> =
            self.reason.iter().map(|reason| format!("FAIL {}{at}: {reason}", self.name)).collect();
        lines.extend(self.mismatches.iter().map(|m| format!("FAIL {}{at} {}: {}", self.name, m.label, m.message)));
        lines
    }
}

/// Every result of a run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The backend labels, in run order.
    pub backends: Vec<String>,
    /// The results, in run order.
    pub results: Vec<CaseResult>,
}

impl Report {
    /// `(passed, failed, skipped)`.
    pub fn counts(&self) -> (usize, usize, usize) {
        let count = |s| self.results.iter().filter(|r| r.status == s).count();
        (count(Status::Pass), count(Status::Fail), count(Status::Skip))
    }

    /// Whether any result failed.
    pub fn has_failures(&self) -> bool {
        self.results.iter().any(|r| r.status == Status::Fail)
    }

    /// `N passed, M failed, K skipped`.
    pub fn summary_line(&self) -> String {
        let (passed, failed, skipped) = self.counts();
        format!("{passed} passed, {failed} failed, {skipped} skipped")
    }

    /// `function → (passed, failed, skipped)`, by function name.
    pub fn per_function(&self) -> BTreeMap<&str, (usize, usize, usize)> {
        let mut table: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
        for result in &self.results {
            let row = table.entry(result.function.as_str()).or_default();
            match result.status {
                Status::Pass => row.0 += 1,
                Status::Fail => row.1 += 1,
                Status::Skip => row.2 += 1,
            }
        }
        table
    }

    /// The text report: failures, then (with `verbose`) skips and notes, then the
    /// per-function table, then the summary line last.
    pub fn print_text(&self, out: &mut impl Write, verbose: bool) -> std::io::Result<()> {
        let show_backend = self.backends.len() > 1;
        writeln!(out, "backends: {}", self.backends.join(", "))?;
        for result in self.results.iter().filter(|r| r.status == Status::Fail) {
            for line in result.failure_lines(show_backend) {
                writeln!(out, "{line}")?;
            }
        }
        if verbose {
            for result in &self.results {
                let at = if show_backend { format!(" [{}]", result.backend) } else { String::new() };
                match (result.status, &result.reason, &result.note) {
                    (Status::Skip, Some(reason), _) => writeln!(out, "SKIP {}{at}: {reason}", result.name)?,
                    (Status::Pass, _, Some(note)) => writeln!(out, "PASS {}{at}: {note}", result.name)?,
                    _ => {}
                }
            }
        }
        let table = self.per_function();
        let width = table.keys().map(|f| f.len()).max().unwrap_or(8).max(8);
        writeln!(out)?;
        writeln!(out, "{:<width$}  {:>6}  {:>6}  {:>7}", "function", "passed", "failed", "skipped")?;
        for (function, (passed, failed, skipped)) in &table {
            writeln!(out, "{function:<width$}  {passed:>6}  {failed:>6}  {skipped:>7}")?;
        }
        writeln!(out, "{}", self.summary_line())
    }

    /// One JSON object per result per line, then `{"summary": {...}}`.
    pub fn print_json(&self, out: &mut impl Write) -> std::io::Result<()> {
        for result in &self.results {
            writeln!(out, "{}", serde_json::to_string(result).map_err(std::io::Error::other)?)?;
        }
        let (passed, failed, skipped) = self.counts();
        let summary = json!({"summary": {"passed": passed, "failed": failed, "skipped": skipped,
            "backends": self.backends, "line": self.summary_line()}});
        writeln!(out, "{summary}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let mut failing = CaseResult::new("sum_all", "sum", Check::Case, "cpu", Status::Fail);
        failing.mismatches.push(Mismatch {
            label: "out".into(),
            message: "max abs error 1e-3".into(),
            max_abs: Some(1e-3),
            max_rel: Some(1e-4),
        });
        Report {
            backends: vec!["cpu".into()],
            results: vec![
                failing,
                CaseResult::new("sum_axis1", "sum", Check::Case, "cpu", Status::Pass),
                CaseResult::new("sum_axis1.grad", "sum", Check::Grad, "cpu", Status::Skip).because("no float input"),
                CaseResult::new("_meta.ndim_placeholder", "_meta", Check::Meta, "cpu", Status::Pass),
            ],
        }
    }

    #[test]
    fn the_text_report_ends_with_the_summary_line() {
        let mut text = Vec::new();
        report().print_text(&mut text, true).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("FAIL sum_all out: max abs error 1e-3"), "{text}");
        assert!(text.contains("SKIP sum_axis1.grad: no float input"), "{text}");
        assert!(text.lines().any(|l| l.split_whitespace().eq(["sum", "1", "1", "1"])), "{text}");
        assert_eq!(text.lines().last(), Some("2 passed, 1 failed, 1 skipped"));
    }

    #[test]
    fn json_has_one_object_per_result_and_a_summary() {
        let mut text = Vec::new();
        report().print_json(&mut text).unwrap();
        let lines: Vec<serde_json::Value> =
            String::from_utf8(text).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[0]["status"], "fail");
        assert_eq!(lines[0]["mismatches"][0]["label"], "out");
        assert_eq!(lines[4]["summary"]["failed"], 1);
    }
}
