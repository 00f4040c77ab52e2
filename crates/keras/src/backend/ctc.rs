//! Connectionist temporal classification: the loss `ctc_batch_cost` and the decoder
//! `ctc_decode` (greedy, prefix beam search, dictionary-constrained).
//!
//! Both work on `x_t = log(y_pred[b, t, :] + 1e-8)` for the first `input_length[b]` steps of
//! each item, with blank = the last class `C − 1` (TensorFlow 1.0.1 under Keras 1.2.2).
//!
//! The loss is composed from primitives (the forward recursion unrolled over time once the
//! number of steps is known), so [`gradients`](super::gradients) differentiates it. The
//! decoder's paths have data-dependent lengths: they are computed on the host after the call
//! and can only be outputs of a [`Function`](super::Function).

use std::{collections::HashMap, sync::Arc};

use keras_backend_api::{BinaryOp, DType, ReduceOp, UnaryOp};

use super::math::named;
use crate::{
    array::Array,
    error::{Error, Result},
    exec::plan::{HostFn, host_outputs},
    graph::{Dim, Tensor, shape_string},
    ops::{
        Expander,
        elementwise::{binary, cast, select, unary},
        linalg::matmul,
        movement::{concat, insert_axes, one_hot, pad, remove_axes, reshape, slice},
        reduce::{reduce, softmax},
        source, special,
    },
};

/// Added to `y_pred` before the logarithm, as TensorFlow's Keras does.
const LOG_OFFSET: f64 = 1e-8;

/// Stands for `log 0` in the loss's recursion: finite, so that no `inf − inf` poisons the
/// gradient, and so large that `exp(NEG − m)` is exactly 0 next to any reachable value.
const NEG: f64 = -1e30;

/// The CTC loss of each batch item, shape `(batch, 1)` in `y_pred`'s dtype:
/// `−log p(label | y_pred[b, :input_length[b]])` (TensorFlow's value).
///
/// * `y_true` `(batch, max_label_length)`: labels in `0 … C−2` (int32, or float32 holding
///   integers); entries at or after `label_length[b]` are padding and never read.
/// * `y_pred` `(batch, time, C)`: per-step class probabilities; blank = `C − 1`. As in
///   TensorFlow, the probabilities used are `(y + 1e-8) / Σ_c (y + 1e-8)`.
/// * `input_length`, `label_length` `(batch, 1)` (integers).
///
/// A label sequence that cannot fit in `input_length` steps gets a loss of about `1e30`
/// rather than `inf`, so that its gradient stays finite (zero).
pub fn ctc_batch_cost(
    y_true: &Tensor,
    y_pred: &Tensor,
    input_length: &Tensor,
    label_length: &Tensor,
) -> Result<Tensor> {
    const NAME: &str = "ctc_batch_cost";
    let inputs = [y_true.clone(), y_pred.clone(), input_length.clone(), label_length.clone()];
    CtcCost.infer(&inputs).map_err(|message| Error::graph(NAME, message))?;
    named(NAME, special::expand(Arc::new(CtcCost), &inputs).map(|mut outputs| outputs.remove(0)))
}

/// Decodes `y_pred` `(batch, time, C)` into label sequences: `(paths, scores)`.
///
/// Each path is a dense int64 `(batch, L)` tensor padded with −1, `L` the longest sequence
/// of that rank in the batch (known only after the call: these tensors can only be outputs of
/// a [`function`](super::function)). `input_length` is `(batch,)` or `(batch, 1)`.
///
/// * `greedy`: TensorFlow's best-path decoder: one path, the arg-max class of each step with
///   repeats of the previous step's class and blanks dropped; scores `(batch, 1)` hold
///   `−Σ_t max_c log(y_pred[b, t, c] + 1e-8)`. The other arguments are ignored.
/// * otherwise, without a dictionary: a CTC prefix beam search keeping `beam_width` prefixes;
///   the `top_paths` most probable distinct sequences of the final beam, with scores
///   `(batch, top_paths)` equal to each sequence's exact CTC log-probability (≤ 0), in
///   non-increasing order. When the beam ends with fewer than `top_paths` prefixes (very few
///   steps), the shortest other sequences fill in, with their exact (often `−inf`) scores.
/// * otherwise, with a dictionary (`dict_values`, the label sequences concatenated, and
///   `dict_seq_lens`, their lengths): the `top_paths` most probable dictionary entries,
///   each scored exactly (so `beam_width` does not limit the search).
///
/// Keras's defaults are `greedy = true, beam_width = 100, top_paths = 1`, no dictionary. A
/// `top_paths` of 0 or above `beam_width`, or a dictionary whose lengths do not add up, whose
/// labels are not classes below the blank, or with fewer distinct entries than `top_paths`,
/// is an error; so is an `input_length` outside `0 ..= time` when the function is called.
pub fn ctc_decode(
    y_pred: &Tensor,
    input_length: &Tensor,
    greedy: bool,
    beam_width: usize,
    top_paths: usize,
    dict_seq_lens: Option<&[usize]>,
    dict_values: Option<&[usize]>,
) -> Result<(Vec<Tensor>, Tensor)> {
    const NAME: &str = "ctc_decode";
    let fail = |message: String| Err(Error::graph(NAME, message));
    let search = if greedy {
        Search::Greedy
    } else {
        if top_paths == 0 {
            return fail("top_paths must be at least 1".to_string());
        }
        match (dict_seq_lens, dict_values) {
            (None, None) => {
                if beam_width < top_paths {
                    return fail(format!("top_paths ({top_paths}) must not exceed beam_width ({beam_width})"));
                }
                Search::Beam { width: beam_width, top_paths }
            }
            (Some(lengths), Some(values)) => {
                let entries = dictionary(lengths, values)?;
                if top_paths > entries.len() {
                    return fail(format!(
                        "top_paths ({top_paths}) exceeds the {} distinct dictionary entries",
                        entries.len()
                    ));
                }
                Search::Dictionary { entries, top_paths }
            }
            _ => return fail("dict_seq_lens and dict_values must be given together".to_string()),
        }
    };
    let decoder = Decoder { search };
    let mut outputs = host_outputs(Arc::new(decoder), &[y_pred.clone(), input_length.clone()])?;
    let scores = outputs.pop().ok_or_else(|| Error::graph(NAME, "internal: no scores output"))?;
    Ok((outputs, scores))
}

// ----------------------------------------------------------------------------------------
// The loss: the forward recursion as a graph.

/// `ctc_batch_cost` as a late-built subgraph: its loop needs the number of steps and the
/// longest label. Inputs: `y_true`, `y_pred`, `input_length`, `label_length`.
struct CtcCost;

impl Expander for CtcCost {
    fn name(&self) -> &'static str {
        "ctc_batch_cost"
    }

    fn infer(&self, inputs: &[Tensor]) -> std::result::Result<Vec<(Vec<Dim>, DType)>, String> {
        let [y_true, y_pred, input_length, label_length] = inputs else {
            return Err(format!("expects 4 inputs, got {}", inputs.len()));
        };
        check_y_pred(y_pred)?;
        if y_true.ndim() != 2 || y_true.dtype() == DType::Bool {
            return Err(format!(
                "y_true must be numeric labels (batch, max_label_length), got {} {}",
                shape_string(y_true.shape()),
                y_true.dtype()
            ));
        }
        for (what, t) in [("input_length", input_length), ("label_length", label_length)] {
            if t.ndim() != 2 || t.shape()[1].is_some_and(|n| n != 1) || t.dtype() == DType::Bool {
                return Err(format!(
                    "{what} must be numeric of shape (batch, 1), got {} {}",
                    shape_string(t.shape()),
                    t.dtype()
                ));
            }
        }
        let batch = same_batch(&[y_true, y_pred, input_length, label_length])?;
        Ok(vec![(vec![batch, Some(1)], y_pred.dtype())])
    }

    fn expand(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        Ok(vec![cost_graph(&inputs[0], &inputs[1], &inputs[2], &inputs[3])?])
    }
}

/// `y_pred` must be `(batch, time, classes)` floats with at least the blank class.
fn check_y_pred(y_pred: &Tensor) -> std::result::Result<(), String> {
    if y_pred.ndim() != 3 || !y_pred.dtype().is_float() || y_pred.shape()[2] == Some(0) {
        return Err(format!(
            "y_pred must be a float tensor (batch, time, classes) with at least one class (the blank), got {} {}",
            shape_string(y_pred.shape()),
            y_pred.dtype()
        ));
    }
    Ok(())
}

/// The batch size the tensors agree on (their axis 0), or why they do not.
fn same_batch(tensors: &[&Tensor]) -> std::result::Result<Dim, String> {
    let mut batch: Dim = None;
    for t in tensors {
        match (batch, t.shape()[0]) {
            (Some(a), Some(b)) if a != b => {
                let shapes: Vec<String> = tensors.iter().map(|t| shape_string(t.shape())).collect();
                return Err(format!("the batch sizes differ: {}", shapes.join(", ")));
            }
            (None, b) => batch = b,
            _ => {}
        }
    }
    Ok(batch)
}

/// A host constant of `dtype` and `shape`.
fn constant(dtype: DType, shape: &[usize], values: &[f64]) -> Result<Tensor> {
    Ok(source::constant(Array::from_f64s(dtype, shape, values)?))
}

/// `x[:, start..start + 1]` of a rank-2 or rank-3 tensor, keeping the axis.
fn column(x: &Tensor, start: usize) -> Result<Tensor> {
    slice(x, &[(0, None), (start as isize, Some(start as isize + 1))])
}

/// `x` (batch, n) moved `k` places right along axis 1, `fill` entering on the left.
fn shift_right(x: &Tensor, k: usize, fill: f64) -> Result<Tensor> {
    let shape = x.static_shape().unwrap_or_default();
    if k >= shape[1] {
        return Ok(source::fill(fill, x.dtype(), &shape));
    }
    let kept = slice(x, &[(0, None), (0, Some((shape[1] - k) as isize))])?;
    pad(&kept, &[0, k], &[0, 0], fill)
}

/// `log Σ exp(x)` over `axis` (kept), shifted by the maximum; the shift is a constant for
/// the derivative, which is then exactly the softmax weights.
fn logsumexp(x: &Tensor, axis: usize) -> Result<Tensor> {
    let top = special::stop_gradient(&reduce(ReduceOp::Max, x, &[axis], true)?)?;
    let shifted = unary(UnaryOp::Exp, &binary(BinaryOp::Sub, x, &top)?)?;
    binary(BinaryOp::Add, &top, &unary(UnaryOp::Log, &reduce(ReduceOp::Sum, &shifted, &[axis], true)?)?)
}

/// The loss on fully shaped inputs. The extended label sequence `l'` of each item (blanks
/// around and between its labels, length `S = 2·max_label_length + 1`) is scored step by
/// step: `α_t[s] = logsumexp(α_{t−1}[s], α_{t−1}[s−1], α_{t−1}[s−2] if l'[s] ≠ l'[s−2]) +
/// log p_t(l'[s])`, starting from `α_{−1} = [0, NEG, …]`; steps past an item's
/// `input_length` keep `α`. The loss is `−logsumexp` of `α` at positions `2L−1` and `2L`.
fn cost_graph(y_true: &Tensor, y_pred: &Tensor, input_length: &Tensor, label_length: &Tensor) -> Result<Tensor> {
    let dtype = y_pred.dtype();
    let dims = y_pred.static_shape().unwrap_or_default();
    let (batch, steps, classes) = (dims[0], dims[1], dims[2]);
    let max_labels = y_true.shape()[1].unwrap_or(0);
    let positions = 2 * max_labels + 1;
    let blank = (classes - 1) as f64;
    let int = |t: &Tensor| cast(t, DType::I32);

    let logits = unary(UnaryOp::Log, &binary(BinaryOp::Add, y_pred, &source::scalar(LOG_OFFSET, dtype)?)?)?;
    let log_probs = softmax(&logits, 2, true)?;

    // l' (batch, S): padding labels become blanks, so every index is a valid class.
    let label_index = constant(DType::I32, &[1, max_labels], &(0..max_labels).map(|i| i as f64).collect::<Vec<_>>())?;
    let in_label = binary(BinaryOp::Less, &label_index, &int(label_length)?)?;
    let labels = select(&in_label, &int(y_true)?, &source::scalar(blank, DType::I32)?)?;
    let with_blanks = pad(&insert_axes(&labels, &[2])?, &[0, 0, 1], &[0, 0, 0], blank)?;
    let extended = pad(&reshape(&with_blanks, &[batch as isize, 2 * max_labels as isize])?, &[0, 0], &[0, 1], blank)?;
    // log p_t(l'[s]) for every (item, step, position): (batch, time, S).
    let emissions = matmul(&log_probs, &one_hot(&extended, classes, dtype)?, false, true)?;
    let can_skip = binary(BinaryOp::NotEqual, &extended, &shift_right(&extended, 2, blank)?)?;

    let step_index = constant(DType::I32, &[1, steps], &(0..steps).map(|t| t as f64).collect::<Vec<_>>())?;
    let running = binary(BinaryOp::Less, &step_index, &int(input_length)?)?;
    let neg = source::scalar(NEG, dtype)?;
    let start: Vec<f64> = (0..batch * positions).map(|i| if i % positions == 0 { 0.0 } else { NEG }).collect();
    let mut alpha = constant(dtype, &[batch, positions], &start)?;
    for t in 0..steps {
        let stay = insert_axes(&alpha, &[2])?;
        let advance = insert_axes(&shift_right(&alpha, 1, NEG)?, &[2])?;
        let skip = insert_axes(&select(&can_skip, &shift_right(&alpha, 2, NEG)?, &neg)?, &[2])?;
        let joined = remove_axes(&logsumexp(&concat(&[stay, advance, skip], 2)?, 2)?, &[2])?;
        let next = binary(BinaryOp::Add, &joined, &remove_axes(&column(&emissions, t)?, &[1])?)?;
        alpha = select(&column(&running, t)?, &next, &alpha)?;
    }

    // Positions 2L − 1 and 2L are those with ceil(s / 2) = L.
    let half =
        constant(DType::I32, &[1, positions], &(0..positions).map(|s| s.div_ceil(2) as f64).collect::<Vec<_>>())?;
    let is_end = binary(BinaryOp::Equal, &half, &int(label_length)?)?;
    let log_likelihood = logsumexp(&select(&is_end, &alpha, &neg)?, 1)?;
    unary(UnaryOp::Neg, &log_likelihood)
}

// ----------------------------------------------------------------------------------------
// The decoder: host computations.

/// The checked dictionary: one label sequence per entry, duplicates dropped (first kept).
fn dictionary(lengths: &[usize], values: &[usize]) -> Result<Vec<Vec<usize>>> {
    let total: usize = lengths.iter().sum();
    if total != values.len() {
        return Err(Error::graph(
            "ctc_decode",
            format!("dict_seq_lens add up to {total} but dict_values holds {} labels", values.len()),
        ));
    }
    let mut entries: Vec<Vec<usize>> = Vec::with_capacity(lengths.len());
    let mut rest = values;
    for &n in lengths {
        let (entry, tail) = rest.split_at(n);
        rest = tail;
        if !entries.iter().any(|e| e == entry) {
            entries.push(entry.to_vec());
        }
    }
    if entries.is_empty() {
        return Err(Error::graph("ctc_decode", "the dictionary (dict_seq_lens) is empty"));
    }
    Ok(entries)
}

/// Which decoder `ctc_decode` runs.
enum Search {
    /// TensorFlow's best path.
    Greedy,
    /// Prefix beam search, then exact rescoring of the final beam.
    Beam { width: usize, top_paths: usize },
    /// Exact scoring of every dictionary entry.
    Dictionary { entries: Vec<Vec<usize>>, top_paths: usize },
}

/// `ctc_decode` on the host. Inputs: `y_pred`, `input_length`; outputs: the paths, then the
/// scores.
struct Decoder {
    search: Search,
}

/// One batch item's decoded sequences (best first) and their scores.
type Decoded = (Vec<Vec<usize>>, Vec<f64>);

impl Decoder {
    /// The number of decoded paths returned.
    fn paths(&self) -> usize {
        match self.search {
            Search::Greedy => 1,
            Search::Beam { top_paths, .. } | Search::Dictionary { top_paths, .. } => top_paths,
        }
    }

    /// Every dictionary label must be a non-blank class of `classes`.
    fn check_labels(&self, classes: usize) -> std::result::Result<(), String> {
        if let Search::Dictionary { entries, .. } = &self.search
            && let Some(bad) = entries.iter().flatten().find(|&&l| l + 1 >= classes)
        {
            return Err(format!(
                "dictionary label {bad} is not a label of y_pred's {classes} classes (blank = {})",
                classes.saturating_sub(1)
            ));
        }
        Ok(())
    }

    /// One item's paths and scores from its `input_length` rows of `y_pred` (float32).
    fn decode_item(&self, rows: &[f32], classes: usize) -> Result<Decoded> {
        // The `count` best sequences by exact score; equal scores keep the candidates' order.
        let top = |candidates: Vec<Vec<usize>>, probs: &[f64], count: usize| {
            let mut scored: Vec<(Vec<usize>, f64)> = candidates
                .into_iter()
                .map(|p| {
                    let score = sequence_log_prob(probs, classes, &p);
                    (p, score)
                })
                .collect();
            scored.sort_by(|a, b| b.1.total_cmp(&a.1));
            scored.truncate(count);
            scored.into_iter().unzip()
        };
        Ok(match &self.search {
            Search::Greedy => {
                let (path, score) = greedy(rows, classes);
                (vec![path], vec![score])
            }
            Search::Beam { width, top_paths } => {
                let log_probs = normalised_log_probs(rows, classes);
                let probs: Vec<f64> = log_probs.iter().map(|p| p.exp()).collect();
                let mut candidates = beam_search(&log_probs, classes, *width);
                if candidates.len() < *top_paths {
                    let extra = shortest_sequences(&candidates, *top_paths - candidates.len(), classes - 1)?;
                    candidates.extend(extra);
                }
                top(candidates, &probs, *top_paths)
            }
            Search::Dictionary { entries, top_paths } => {
                let probs: Vec<f64> = normalised_log_probs(rows, classes).iter().map(|p| p.exp()).collect();
                top(entries.clone(), &probs, *top_paths)
            }
        })
    }
}

impl HostFn for Decoder {
    fn name(&self) -> &'static str {
        "ctc_decode"
    }

    fn infer(&self, inputs: &[Tensor]) -> std::result::Result<Vec<(Vec<Dim>, DType)>, String> {
        let [y_pred, input_length] = inputs else {
            return Err(format!("expects 2 inputs, got {}", inputs.len()));
        };
        check_y_pred(y_pred)?;
        let vector = input_length.ndim() == 1 || (input_length.ndim() == 2 && input_length.shape()[1] == Some(1));
        if !vector || input_length.dtype() == DType::Bool {
            return Err(format!(
                "input_length must be numeric of shape (batch,) or (batch, 1), got {} {}",
                shape_string(input_length.shape()),
                input_length.dtype()
            ));
        }
        let batch = same_batch(&[y_pred, input_length])?;
        if let Some(classes) = y_pred.shape()[2] {
            self.check_labels(classes)?;
        }
        let mut outputs = vec![(vec![batch, None], DType::I64); self.paths()];
        outputs.push((vec![batch, Some(self.paths())], y_pred.dtype()));
        Ok(outputs)
    }

    fn compute(&self, inputs: &[Array]) -> Result<Vec<Array>> {
        let (y_pred, input_length) = (&inputs[0], &inputs[1]);
        let (batch, steps, classes) = match *y_pred.shape() {
            [batch, steps, classes] if classes > 0 => (batch, steps, classes),
            _ => {
                return Err(Error::graph(
                    "ctc_decode",
                    format!("y_pred has shape {:?}, not (batch, time, classes ≥ 1)", y_pred.shape()),
                ));
            }
        };
        self.check_labels(classes).map_err(|message| Error::graph("ctc_decode", message))?;
        let lengths = input_length.to_f64_vec();
        if lengths.len() != batch {
            return Err(Error::graph(
                "ctc_decode",
                format!("input_length holds {} values for a batch of {batch}", lengths.len()),
            ));
        }
        if let Some((b, length)) =
            lengths.iter().enumerate().find(|(_, n)| !(**n >= 0.0 && **n <= steps as f64 && n.fract() == 0.0))
        {
            return Err(Error::graph(
                "ctc_decode",
                format!("input_length[{b}] = {length} is not a step count in 0..={steps}"),
            ));
        }
        // The decoders work on float32 values, as TensorFlow's.
        let values: Vec<f32> = y_pred.to_f64_vec().iter().map(|&v| v as f32).collect();
        let decoded = per_item(batch, |b| {
            self.decode_item(&values[b * steps * classes..][..lengths[b] as usize * classes], classes)
        })?;
        let mut outputs = Vec::with_capacity(self.paths() + 1);
        for k in 0..self.paths() {
            outputs.push(dense_paths(decoded.iter().map(|(paths, _)| &paths[k]))?);
        }
        let scores: Vec<f64> = decoded.iter().flat_map(|(_, scores)| scores.iter().copied()).collect();
        outputs.push(Array::from_f64s(y_pred.dtype(), &[batch, self.paths()], &scores)?);
        Ok(outputs)
    }
}

/// `decode(b)` for every item `b < count`, on several threads when there are several items.
fn per_item<T: Send>(count: usize, decode: impl Fn(usize) -> Result<T> + Sync) -> Result<Vec<T>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(count);
    if threads <= 1 {
        return (0..count).map(decode).collect();
    }
    let chunk = count.div_ceil(threads);
    let decode = &decode;
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..count)
            .step_by(chunk)
            .map(|start| {
                scope.spawn(move || (start..(start + chunk).min(count)).map(decode).collect::<Result<Vec<T>>>())
            })
            .collect();
        let mut all = Vec::with_capacity(count);
        for worker in workers {
            let part = worker.join().map_err(|_| Error::graph("ctc_decode", "internal: a decoding thread panicked"))?;
            all.extend(part?);
        }
        Ok(all)
    })
}

/// `count` label sequences (labels `0 … labels−1`) not among `taken`, shortest first: the
/// fillers when the final beam holds fewer than `top_paths` prefixes (an item of few steps).
/// Their scores are exact too, usually `−inf` (too long for the steps).
fn shortest_sequences(taken: &[Vec<usize>], count: usize, labels: usize) -> Result<Vec<Vec<usize>>> {
    if labels == 0 {
        return Err(Error::graph(
            "ctc_decode",
            "y_pred has only the blank class, so the empty sequence is the only path; top_paths must be 1",
        ));
    }
    let mut found = Vec::with_capacity(count);
    let mut length = 0u32;
    while found.len() < count {
        // Every sequence of this length, in counting order.
        for code in 0..labels.pow(length) {
            let sequence: Vec<usize> = (0..length).rev().map(|i| code / labels.pow(i) % labels).collect();
            if !taken.contains(&sequence) {
                found.push(sequence);
                if found.len() == count {
                    break;
                }
            }
        }
        length += 1;
    }
    Ok(found)
}

/// Sequences as a dense int64 `(batch, longest)` array padded with −1.
fn dense_paths<'a>(paths: impl ExactSizeIterator<Item = &'a Vec<usize>> + Clone) -> Result<Array> {
    let batch = paths.len();
    let longest = paths.clone().map(Vec::len).max().unwrap_or(0);
    let mut values = vec![-1i64; batch * longest];
    for (b, path) in paths.enumerate() {
        for (i, &label) in path.iter().enumerate() {
            values[b * longest + i] = label as i64;
        }
    }
    Array::from_vec(&[batch, longest], values)
}

/// TensorFlow's greedy decoder on one item's rows (`steps × classes`, float32): the arg-max
/// of each `x_t = log(y + 1e-8)` (first on ties) with blanks and repeats of the previous
/// step's arg-max dropped, and `−Σ_t max x_t`.
fn greedy(rows: &[f32], classes: usize) -> (Vec<usize>, f64) {
    let blank = classes - 1;
    let mut path = Vec::new();
    let mut previous = None;
    let mut score = 0.0f64;
    for row in rows.chunks_exact(classes) {
        let (mut best, mut best_value) = (0, f32::NEG_INFINITY);
        for (c, &y) in row.iter().enumerate() {
            let x = (y + LOG_OFFSET as f32).ln();
            if x > best_value || c == 0 {
                (best, best_value) = (c, x);
            }
        }
        score -= f64::from(best_value);
        if best != blank && previous != Some(best) {
            path.push(best);
        }
        previous = Some(best);
    }
    (path, score)
}

/// Per-step log-probabilities, in float64: `log_softmax(log(y + 1e-8))`, the distribution
/// the loss uses.
fn normalised_log_probs(rows: &[f32], classes: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows.chunks_exact(classes) {
        let logits: Vec<f64> = row.iter().map(|&y| (f64::from(y + LOG_OFFSET as f32)).ln()).collect();
        let top = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let total = top + logits.iter().map(|&x| (x - top).exp()).sum::<f64>().ln();
        out.extend(logits.iter().map(|&x| x - total));
    }
    out
}

/// `log(e^a + e^b)`, exact at −∞.
fn log_add(a: f64, b: f64) -> f64 {
    let (high, low) = if a >= b { (a, b) } else { (b, a) };
    if low == f64::NEG_INFINITY { high } else { high + (low - high).exp().ln_1p() }
}

/// The exact CTC log-probability of `labels` under `probs` (`steps × classes`, normalised):
/// the forward algorithm over the extended sequence, `−inf` when the labels cannot fit.
/// It runs in probability space rescaled at every step (the scales' logarithms add up),
/// which is exact to rounding and much cheaper than log-space sums.
fn sequence_log_prob(probs: &[f64], classes: usize, labels: &[usize]) -> f64 {
    let blank = classes - 1;
    let extended: Vec<usize> = std::iter::once(blank).chain(labels.iter().flat_map(|&l| [l, blank])).collect();
    let n = extended.len();
    // Before the first step all mass sits at position 0, from which a step reaches 0 and 1.
    let mut alpha = vec![0.0; n];
    alpha[0] = 1.0;
    let mut next = vec![0.0; n];
    let mut log_scale = 0.0;
    for (t, row) in probs.chunks_exact(classes).enumerate() {
        // Step t reaches no position beyond 2t + 1.
        let reach = (2 * t + 2).min(n);
        for s in 0..reach {
            let mut total = alpha[s];
            if s >= 1 {
                total += alpha[s - 1];
            }
            if s >= 2 && extended[s] != blank && extended[s] != extended[s - 2] {
                total += alpha[s - 2];
            }
            next[s] = total * row[extended[s]];
        }
        let scale: f64 = next[..reach].iter().sum();
        if scale <= 0.0 {
            return f64::NEG_INFINITY;
        }
        log_scale += scale.ln();
        for (a, b) in alpha.iter_mut().zip(&next[..reach]) {
            *a = b / scale;
        }
    }
    let end = alpha[n - 1] + if n >= 2 { alpha[n - 2] } else { 0.0 };
    log_scale + end.ln()
}

/// Prefixes as nodes of a tree: each node is its parent's prefix plus one label.
struct PrefixTree {
    parent: Vec<usize>,
    label: Vec<Option<usize>>,
    children: HashMap<(usize, usize), usize>,
}

impl PrefixTree {
    const ROOT: usize = 0;

    fn new() -> PrefixTree {
        PrefixTree { parent: vec![0], label: vec![None], children: HashMap::new() }
    }

    fn child(&mut self, node: usize, label: usize) -> usize {
        let next = self.parent.len();
        let id = *self.children.entry((node, label)).or_insert(next);
        if id == next {
            self.parent.push(node);
            self.label.push(Some(label));
        }
        id
    }

    fn sequence(&self, mut node: usize) -> Vec<usize> {
        let mut labels = Vec::new();
        while let Some(label) = self.label[node] {
            labels.push(label);
            node = self.parent[node];
        }
        labels.reverse();
        labels
    }
}

/// A prefix the next beam may hold: a member of the current beam (by position) or one of
/// them extended by a label.
#[derive(Clone, Copy)]
enum Candidate {
    Kept(usize),
    Extended(usize, usize),
}

/// A CTC prefix beam search on `log_probs` (`steps × classes`, normalised) keeping `width`
/// prefixes: each prefix's probability is split into alignments ending in a blank and in its
/// last label, and the extensions that reach one prefix are merged. Returns the final beam's
/// prefixes, most probable first.
fn beam_search(log_probs: &[f64], classes: usize, width: usize) -> Vec<Vec<usize>> {
    let blank = classes - 1;
    let mut tree = PrefixTree::new();
    // (node, log p ending in a blank, log p ending in its last label)
    let mut beam: Vec<(usize, f64, f64)> = vec![(PrefixTree::ROOT, 0.0, f64::NEG_INFINITY)];
    for row in log_probs.chunks_exact(classes) {
        let mut kept = Vec::with_capacity(beam.len());
        // Label-ending mass of each member extended by each label, at `member · blank + label`.
        let mut extended = vec![f64::NEG_INFINITY; beam.len() * blank];
        for (i, &(node, blank_end, label_end)) in beam.iter().enumerate() {
            let total = log_add(blank_end, label_end);
            let last = tree.label[node];
            // The last label held is still the same prefix.
            let held = last.map_or(f64::NEG_INFINITY, |l| label_end + row[l]);
            kept.push((total + row[blank], held));
            for c in 0..blank {
                // A repeat of the last label only extends the prefix after a blank.
                let reach = if last == Some(c) { blank_end } else { total };
                extended[i * blank + c] = reach + row[c];
            }
        }
        // A member that is another member extended by one label receives that extension.
        let position: HashMap<usize, usize> = beam.iter().enumerate().map(|(i, &(node, _, _))| (node, i)).collect();
        let mut merged = vec![false; extended.len()];
        for (j, &(node, _, _)) in beam.iter().enumerate() {
            if let (Some(label), Some(&i)) = (tree.label[node], position.get(&tree.parent[node])) {
                kept[j].1 = log_add(kept[j].1, extended[i * blank + label]);
                merged[i * blank + label] = true;
            }
        }
        let mut candidates: Vec<(f64, Candidate)> =
            kept.iter().enumerate().map(|(j, &(b, l))| (log_add(b, l), Candidate::Kept(j))).collect();
        candidates.extend(
            extended
                .iter()
                .enumerate()
                .filter(|&(k, _)| !merged[k])
                .map(|(k, &l)| (l, Candidate::Extended(k / blank, k % blank))),
        );
        // Best first; equal scores in candidate order, so the search is deterministic.
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        let better = |a: &usize, b: &usize| candidates[*b].0.total_cmp(&candidates[*a].0).then(a.cmp(b));
        if order.len() > width {
            order.select_nth_unstable_by(width - 1, better);
            order.truncate(width);
        }
        order.sort_unstable_by(better);
        beam = order
            .iter()
            .map(|&k| match candidates[k].1 {
                Candidate::Kept(j) => (beam[j].0, kept[j].0, kept[j].1),
                Candidate::Extended(i, c) => (tree.child(beam[i].0, c), f64::NEG_INFINITY, extended[i * blank + c]),
            })
            .collect();
    }
    beam.iter().map(|&(node, _, _)| tree.sequence(node)).collect()
}
