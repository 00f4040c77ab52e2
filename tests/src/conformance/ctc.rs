//! Judging beam-search `ctc_decode` cases by properties (README Appendix B): the project
//! implements a correct prefix beam search, not TensorFlow 1.0.1's defective one, so its paths
//! and scores are checked against the exact CTC probabilities instead of TF's output.

use keras::Array;

use super::{compare::Mismatch, manifest::Case, npy};

const SCORE_ATOL: f64 = 1e-4;

fn log_add(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY {
        return b;
    }
    if b == f64::NEG_INFINITY {
        return a;
    }
    a.max(b) + (-(a - b).abs()).exp().ln_1p()
}

/// `log p(labels | probs)` by the CTC forward algorithm: `probs` is `T` rows of `C`
/// probabilities, blank = `C − 1`, repeated outputs merged.
pub fn ctc_log_probability(probs: &[Vec<f64>], labels: &[usize]) -> f64 {
    let Some(classes) = probs.first().map(Vec::len) else {
        return if labels.is_empty() { 0.0 } else { f64::NEG_INFINITY };
    };
    let blank = classes - 1;
    let extended: Vec<usize> = std::iter::once(blank).chain(labels.iter().flat_map(|&l| [l, blank])).collect();
    let log_y = |t: usize, c: usize| probs[t][c].ln();
    let mut alpha = vec![f64::NEG_INFINITY; extended.len()];
    alpha[0] = log_y(0, blank);
    if extended.len() > 1 {
        alpha[1] = log_y(0, extended[1]);
    }
    for t in 1..probs.len() {
        let previous = alpha.clone();
        for (s, &label) in extended.iter().enumerate() {
            let mut sum = previous[s];
            if s >= 1 {
                sum = log_add(sum, previous[s - 1]);
            }
            if s >= 2 && label != blank && label != extended[s - 2] {
                sum = log_add(sum, previous[s - 2]);
            }
            alpha[s] = sum + log_y(t, label);
        }
    }
    let last = extended.len() - 1;
    if last == 0 { alpha[0] } else { log_add(alpha[last], alpha[last - 1]) }
}

/// The labels of row `b` of a dense path array: values before the −1 padding; `Err` when the
/// row is not a valid label sequence followed only by padding.
fn row_labels(path: &Array, b: usize, classes: usize) -> Result<Vec<usize>, String> {
    let width = path.shape().get(1).copied().unwrap_or(0);
    let row = &path.to_f64_vec()[b * width..(b + 1) * width];
    let length = row.iter().position(|&v| v == -1.0).unwrap_or(width);
    if row[length..].iter().any(|&v| v != -1.0) {
        return Err(format!("item {b}: a label follows the -1 padding: {row:?}"));
    }
    row[..length]
        .iter()
        .map(|&v| {
            let label = v as usize;
            if v >= 0.0 && v.fract() == 0.0 && label + 1 < classes {
                Ok(label)
            } else {
                Err(format!("item {b}: {v} is not a label in [0, {}) (blank excluded): {row:?}", classes - 1))
            }
        })
        .collect()
}

/// Checks Appendix B's four properties; `actual` and `expected` are the labelled outputs
/// (`0.0` … `0.{P-1}` paths, `1` scores). Each violated property is one mismatch.
pub fn judge_beam(
    case: &Case,
    actual: &[(String, Array)],
    expected: &[(String, Array)],
    top_paths: usize,
) -> Result<Vec<Mismatch>, String> {
    let input = |name: &str| {
        let spec = case.record.inputs.get(name).ok_or_else(|| format!("the case has no input `{name}`"))?;
        npy::read(&case.dir.join(&spec.file))
    };
    let (y_pred, lengths) = (input("y_pred")?, input("input_length")?.to_f64_vec());
    let (batch, steps, classes) = match y_pred.shape() {
        &[b, t, c] => (b, t, c),
        other => return Err(format!("y_pred has shape {other:?}, not (batch, time, classes)")),
    };
    let y = y_pred.to_f64_vec();
    let probs = |b: usize| -> Vec<Vec<f64>> {
        let t_max = (lengths[b].max(0.0) as usize).min(steps);
        (0..t_max).map(|t| y[(b * steps + t) * classes..(b * steps + t + 1) * classes].to_vec()).collect()
    };
    let find =
        |outputs: &[(String, Array)], label: &str| outputs.iter().find(|(l, _)| l == label).map(|(_, a)| a.clone());
    let mut mismatches = Vec::new();
    let mut fail = |label: &str, message: String| {
        mismatches.push(Mismatch { label: label.to_string(), message, max_abs: None, max_rel: None })
    };
    let paths: Vec<Option<Array>> = (0..top_paths).map(|k| find(actual, &format!("0.{k}"))).collect();
    let Some(scores) = find(actual, "1").filter(|s| s.shape() == [batch, top_paths]) else {
        fail("1", format!("expected scores of shape [{batch}, {top_paths}]"));
        return Ok(mismatches);
    };
    let scores = scores.to_f64_vec();
    let reference_top = find(expected, "0.0").ok_or("the reference has no output 0.0")?;
    for b in 0..batch {
        let probs = probs(b);
        let mut sequences: Vec<Vec<usize>> = Vec::new();
        for (k, path) in paths.iter().enumerate() {
            let label = format!("0.{k}");
            let Some(path) = path.as_ref().filter(|p| p.ndim() == 2 && p.shape()[0] == batch) else {
                fail(&label, format!("missing, or not a (batch, length) array: {:?}", path.as_ref().map(Array::shape)));
                return Ok(mismatches);
            };
            match row_labels(path, b, classes) {
                Err(message) => fail(&label, message),
                Ok(sequence) => {
                    let (exact, score) = (ctc_log_probability(&probs, &sequence), scores[b * top_paths + k]);
                    if !((exact - score).abs() <= SCORE_ATOL || exact == score) {
                        fail(
                            "1",
                            format!("item {b} path {k} {sequence:?}: score {score}, exact log-probability {exact}"),
                        );
                    }
                    if sequences.contains(&sequence) {
                        fail(&label, format!("item {b}: path {sequence:?} is returned twice"));
                    }
                    sequences.push(sequence);
                }
            }
        }
        let item_scores = &scores[b * top_paths..(b + 1) * top_paths];
        if item_scores.windows(2).any(|w| w[1] > w[0]) {
            fail("1", format!("item {b}: scores {item_scores:?} are not in non-increasing order"));
        }
        let reference = row_labels(&reference_top, b, classes)?;
        let (found, best) = (item_scores[0], ctc_log_probability(&probs, &reference));
        if found < best - SCORE_ATOL {
            fail(
                "0.0",
                format!("item {b}: top path scores {found}, TF's top path {reference:?} has log-probability {best}"),
            );
        }
    }
    Ok(mismatches)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_algorithm_sums_every_alignment() {
        // Two steps, classes {0, blank}: label [0] has alignments (0,0), (0,b), (b,0).
        let probs = vec![vec![0.6, 0.4], vec![0.3, 0.7]];
        let expected = 0.6 * 0.3 + 0.6 * 0.7 + 0.4 * 0.3;
        assert!((ctc_log_probability(&probs, &[0]) - f64::ln(expected)).abs() < 1e-12);
        assert!((ctc_log_probability(&probs, &[]) - f64::ln(0.4 * 0.7)).abs() < 1e-12);
        // [0, 0] needs a blank between: impossible in two steps.
        assert_eq!(ctc_log_probability(&probs, &[0, 0]), f64::NEG_INFINITY);
    }

    #[test]
    fn rows_are_labels_then_padding() {
        let path = Array::from_vec(&[2, 3], vec![1i64, 0, -1, 2, -1, 0]).unwrap();
        assert_eq!(row_labels(&path, 0, 4).unwrap(), [1, 0]);
        assert!(row_labels(&path, 1, 4).unwrap_err().contains("follows"));
        let blank = Array::from_vec(&[1, 1], vec![3i64]).unwrap();
        assert!(row_labels(&blank, 0, 4).is_err(), "the blank is not a label");
    }
}
