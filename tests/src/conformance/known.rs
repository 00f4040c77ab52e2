//! Known-failures lists (`tests/conformance/known-failures/<backend>.txt`), used only by the
//! project's own test run: one result name per line, `name  # reason`. The test fails on a
//! failure that is not listed and on a listed name that passes, so a list only shrinks.

use std::collections::BTreeMap;

use super::report::{CaseResult, Status};

/// Parses a list: blank lines and lines starting with `#` are ignored; every other line is a
/// result name (no spaces) followed by `# reason`. The error names the line.
pub fn parse(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut entries = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, reason) = line.split_once('#').ok_or_else(|| format!("line {}: no `# reason`: {line}", n + 1))?;
        let (name, reason) = (name.trim(), reason.trim());
        if name.contains(char::is_whitespace) || reason.is_empty() {
            return Err(format!("line {}: expected `case_name  # reason`, got: {line}", n + 1));
        }
        if entries.insert(name.to_string(), reason.to_string()).is_some() {
            return Err(format!("line {}: {name} is listed twice", n + 1));
        }
    }
    Ok(entries)
}

/// What a run says about a known-failures list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Failure lines of results that are not listed.
    pub unexpected: Vec<String>,
    /// Listed names whose result passed: remove them from the list.
    pub now_passing: Vec<String>,
}

impl Verdict {
    /// Whether the run agrees with the list.
    pub fn is_clean(&self) -> bool {
        self.unexpected.is_empty() && self.now_passing.is_empty()
    }
}

/// Compares `results` (of one backend) with its list.
pub fn check<'a>(results: impl IntoIterator<Item = &'a CaseResult>, known: &BTreeMap<String, String>) -> Verdict {
    let mut verdict = Verdict::default();
    for result in results {
        let listed = known.contains_key(&result.name);
        match result.status {
            Status::Fail if !listed => verdict.unexpected.extend(result.failure_lines(true)),
            Status::Pass if listed => verdict.now_passing.push(format!("{} [{}]", result.name, result.backend)),
            _ => {}
        }
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::super::report::Check;
    use super::*;

    #[test]
    fn parses_names_and_reasons_and_ignores_comments() {
        let text = "# header\n\nconv2d_tf_x7  # issue 9: conv2d not implemented yet\npool2d_a #x\n";
        let list = parse(text).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list["conv2d_tf_x7"], "issue 9: conv2d not implemented yet");
        assert_eq!(list["pool2d_a"], "x");
    }

    #[test]
    fn refuses_lines_without_a_reason_and_duplicates() {
        assert!(parse("conv2d_a\n").unwrap_err().contains("line 1"));
        assert!(parse("conv2d_a #\n").is_err());
        assert!(parse("conv 2d # r\n").is_err());
        assert!(parse("a # r\nb # r\na # s\n").unwrap_err().contains("line 3: a is listed twice"));
    }

    #[test]
    fn unlisted_failures_and_listed_passes_are_reported() {
        let known = parse("a # r\nb # r\nc # r\n").unwrap();
        let results = [
            CaseResult::new("a", "f", Check::Case, "cpu", Status::Fail).because("boom"),
            CaseResult::new("b", "f", Check::Case, "cpu", Status::Pass),
            CaseResult::new("d", "f", Check::Case, "cpu", Status::Fail).because("new bug"),
            CaseResult::new("c", "f", Check::Case, "cpu", Status::Skip),
        ];
        let verdict = check(&results, &known);
        assert_eq!(verdict.unexpected, ["FAIL d [cpu]: new bug"]);
        assert_eq!(verdict.now_passing, ["b [cpu]"]);
        assert!(!verdict.is_clean());
    }
}
