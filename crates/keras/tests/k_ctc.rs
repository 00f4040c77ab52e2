//! CTC end to end: `ctc_batch_cost` (values, gradient) and `ctc_decode` (greedy, beam search,
//! dictionary), checked against independent float64 references written here: the forward
//! algorithm in probability space and brute-force enumeration of every alignment.

use std::collections::HashMap;

use K::DType;
use keras::{Array, Tensor, backend as K};

/// A small deterministic generator (xorshift64*), so cases are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        ((self.next() * n as f64) as usize).min(n - 1)
    }
}

/// `batch × steps` rows of softmax probabilities over `classes`, rounded to float32.
fn random_probs(rng: &mut Rng, batch: usize, steps: usize, classes: usize, peak: f64) -> Vec<f32> {
    let mut out = Vec::new();
    for _ in 0..batch * steps {
        let logits: Vec<f64> = (0..classes).map(|_| peak * (rng.next() * 2.0 - 1.0)).collect();
        let total: f64 = logits.iter().map(|l| l.exp()).sum();
        out.extend(logits.iter().map(|l| (l.exp() / total) as f32));
    }
    out
}

/// The distribution the engine uses for one item: `(y + 1e-8) / Σ (y + 1e-8)` per step, with
/// `y + 1e-8` rounded to float32 as TensorFlow adds it.
fn step_probs(y: &[f32], classes: usize, steps: usize) -> Vec<Vec<f64>> {
    y.chunks(classes)
        .take(steps)
        .map(|row| {
            let shifted: Vec<f64> = row.iter().map(|&v| f64::from(v + 1e-8f32)).collect();
            let total: f64 = shifted.iter().sum();
            shifted.iter().map(|v| v / total).collect()
        })
        .collect()
}

/// `p(labels | probs)` by the forward algorithm in probability space (blank = last class).
fn forward_prob(probs: &[Vec<f64>], labels: &[usize]) -> f64 {
    let classes = probs.first().map_or(1, Vec::len);
    let blank = classes - 1;
    let mut ext = vec![blank];
    for &l in labels {
        ext.extend([l, blank]);
    }
    let n = ext.len();
    if probs.is_empty() {
        return if labels.is_empty() { 1.0 } else { 0.0 };
    }
    let mut alpha = vec![0.0; n];
    alpha[0] = probs[0][ext[0]];
    if n > 1 {
        alpha[1] = probs[0][ext[1]];
    }
    for row in &probs[1..] {
        let mut next = vec![0.0; n];
        for s in 0..n {
            let mut a = alpha[s];
            if s >= 1 {
                a += alpha[s - 1];
            }
            if s >= 2 && ext[s] != blank && ext[s] != ext[s - 2] {
                a += alpha[s - 2];
            }
            next[s] = a * row[ext[s]];
        }
        alpha = next;
    }
    alpha[n - 1] + if n > 1 { alpha[n - 2] } else { 0.0 }
}

/// The labels an alignment emits: repeats merged, then blanks dropped.
fn collapse(alignment: &[usize], blank: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut previous = None;
    for &a in alignment {
        if a != blank && previous != Some(a) {
            out.push(a);
        }
        previous = Some(a);
    }
    out
}

/// The probability of every label sequence, summing all `classes^steps` alignments.
fn brute_force(probs: &[Vec<f64>]) -> HashMap<Vec<usize>, f64> {
    let steps = probs.len();
    let classes = probs.first().map_or(1, Vec::len);
    let mut totals = HashMap::new();
    for code in 0..classes.pow(steps as u32) {
        let alignment: Vec<usize> = (0..steps).map(|t| code / classes.pow(t as u32) % classes).collect();
        let p: f64 = alignment.iter().enumerate().map(|(t, &c)| probs[t][c]).product();
        *totals.entry(collapse(&alignment, classes - 1)).or_insert(0.0) += p;
    }
    totals
}

fn placeholder(shape: &[Option<usize>], dtype: DType) -> Tensor {
    K::placeholder_with(shape.to_vec(), Some(dtype), None)
}

fn close(actual: f64, expected: f64, tolerance: f64) -> bool {
    actual == expected || (actual - expected).abs() <= tolerance * (1.0 + expected.abs())
}

/// A decoded `(batch, L)` array as one label sequence per item, checking the −1 padding.
fn rows(paths: &Array) -> Vec<Vec<usize>> {
    let values = paths.to_vec::<i64>().unwrap();
    let width = paths.shape()[1];
    let mut out = Vec::new();
    for b in 0..paths.shape()[0] {
        let row = &values[b * width..(b + 1) * width];
        let length = row.iter().position(|&v| v == -1).unwrap_or(width);
        assert!(row[length..].iter().all(|&v| v == -1), "padding must be trailing -1s: {row:?}");
        out.push(row[..length].iter().map(|&v| usize::try_from(v).unwrap()).collect());
    }
    let longest = out.iter().map(Vec::len).max().unwrap_or(0);
    assert_eq!(width, longest, "the width must be the longest path");
    out
}

#[test]
fn cost_matches_the_forward_algorithm_and_brute_force() {
    let (batch, steps, classes, max_labels) = (4, 4, 4, 3);
    let mut rng = Rng(7);
    let y = random_probs(&mut rng, batch, steps, classes, 2.0);
    // Repeated labels (which need a blank between them), an empty label, and short inputs.
    let labels = [[1, 1, 0], [2, 0, 1], [0, 0, 0], [2, 1, 2]];
    let label_lengths = [2, 3, 0, 2];
    let input_lengths = [4, 4, 2, 3];
    let expected: Vec<f64> = (0..batch)
        .map(|b| {
            let probs = step_probs(&y[b * steps * classes..], classes, input_lengths[b]);
            let label = &labels[b][..label_lengths[b]];
            let exact = forward_prob(&probs, label);
            let enumerated = brute_force(&probs).get(label).copied().unwrap_or(0.0);
            assert!(close(exact, enumerated, 1e-12), "reference algorithms disagree: {exact} vs {enumerated}");
            -exact.ln()
        })
        .collect();

    let feeds = [
        Array::from_vec(&[batch, max_labels], labels.iter().flatten().map(|&l| l as i32).collect()).unwrap(),
        Array::from_vec(&[batch, steps, classes], y.clone()).unwrap(),
        Array::from_vec(&[batch, 1], input_lengths.iter().map(|&n| n as i32).collect()).unwrap(),
        Array::from_vec(&[batch, 1], label_lengths.iter().map(|&n| n as i32).collect()).unwrap(),
    ];
    // Fully known shapes (built at once), unknown batch and time (built when fed), and float
    // labels must all agree.
    let variants: [[Vec<Option<usize>>; 2]; 2] = [
        [vec![Some(batch), Some(steps), Some(classes)], vec![Some(batch), Some(max_labels)]],
        [vec![None, None, Some(classes)], vec![None, None]],
    ];
    for [pred_shape, true_shape] in &variants {
        for label_dtype in [DType::I32, DType::F32] {
            let y_true = placeholder(true_shape, label_dtype);
            let y_pred = placeholder(pred_shape, DType::F32);
            let input_length = placeholder(&[None, Some(1)], DType::I32);
            let label_length = placeholder(&[None, Some(1)], DType::I32);
            let cost = K::ctc_batch_cost(&y_true, &y_pred, &input_length, &label_length).unwrap();
            assert_eq!(K::int_shape(&cost), [true_shape[0].or(pred_shape[0]), Some(1)]);
            assert_eq!(cost.dtype(), DType::F32);
            let f = K::function(&[y_true, y_pred, input_length, label_length], &[cost], &[]).unwrap();
            let mut fed = feeds.clone();
            fed[0] = Array::from_f64s(label_dtype, fed[0].shape(), &fed[0].to_f64_vec()).unwrap();
            let out = f.call(&fed).unwrap();
            assert_eq!(out[0].shape(), [batch, 1]);
            for (b, (&got, &want)) in out[0].to_vec::<f32>().unwrap().iter().zip(&expected).enumerate() {
                assert!(close(f64::from(got), want, 1e-5), "item {b}: {got} vs {want}");
            }
        }
    }
}

#[test]
fn cost_ignores_padding_labels_and_normalises_like_tensorflow() {
    // Padding entries hold garbage (-1, 7); y_pred rows do not sum to 1 and are normalised.
    let y: Vec<f32> = vec![0.2, 0.6, 0.2, 1.0, 1.0, 2.0, 0.5, 0.25, 0.25];
    let y_true = K::constant(Array::from([[1i32, -1, 7]]));
    let y_pred = K::constant(Array::from_vec(&[1, 3, 3], y.clone()).unwrap());
    let lengths = K::constant(Array::from([[3i32]]));
    let label_length = K::constant(Array::from([[1i32]]));
    let cost = K::eval(&K::ctc_batch_cost(&y_true, &y_pred, &lengths, &label_length).unwrap()).unwrap();
    let expected = -forward_prob(&step_probs(&y, 3, 3), &[1]).ln();
    let got = f64::from(cost.to_vec::<f32>().unwrap()[0]);
    assert!(close(got, expected, 1e-6), "{got} vs {expected}");
}

#[test]
fn cost_gradient_matches_finite_differences() {
    let (batch, steps, classes) = (2, 5, 4);
    let mut rng = Rng(11);
    let y: Vec<f64> = (0..batch * steps * classes).map(|_| 0.05 + rng.next()).collect();
    let y_true = K::constant(Array::from([[0i32, 1, 1], [2, 2, 0]]));
    let input_length = K::constant(Array::from([[5i32], [4]]));
    let label_length = K::constant(Array::from([[3i32], [1]]));
    let y_pred = placeholder(&[Some(batch), Some(steps), Some(classes)], DType::F64);
    let cost = K::ctc_batch_cost(&y_true, &y_pred, &input_length, &label_length).unwrap();
    assert_eq!(cost.dtype(), DType::F64);
    // Weight the items differently so each item's gradient is checked on its own scale.
    let weights = K::constant(Array::from([[1.0f64], [3.0]]));
    let loss = K::sum(&(&cost * &weights).unwrap(), K::Axes::All, false).unwrap();
    let grad = K::gradients(&loss, std::slice::from_ref(&y_pred)).unwrap().remove(0);
    let f = K::function(std::slice::from_ref(&y_pred), &[loss, grad], &[]).unwrap();
    let feed = |values: &[f64]| Array::from_vec(&[batch, steps, classes], values.to_vec()).unwrap();
    let out = f.call(&[feed(&y)]).unwrap();
    let analytic = out[1].to_vec::<f64>().unwrap();
    let h = 1e-6;
    for i in 0..y.len() {
        let mut plus = y.clone();
        plus[i] += h;
        let mut minus = y.clone();
        minus[i] -= h;
        let at = |v: &[f64]| f.call(&[feed(v)]).unwrap()[0].to_vec::<f64>().unwrap()[0];
        let numeric = (at(&plus) - at(&minus)) / (2.0 * h);
        assert!(close(analytic[i], numeric, 1e-6), "element {i}: {} vs {numeric}", analytic[i]);
    }
    // Item 1 only uses 4 steps: its last step has no influence.
    let last_step = &analytic[(steps + 4) * classes..(steps + 5) * classes];
    assert!(last_step.iter().all(|&g| g == 0.0), "{last_step:?}");
}

#[test]
fn cost_gradient_with_unknown_shapes_matches_known_shapes() {
    let (batch, steps, classes) = (2, 4, 3);
    let mut rng = Rng(13);
    let y = random_probs(&mut rng, batch, steps, classes, 1.0);
    let feeds = [
        Array::from([[0i32, 1], [1, 0]]),
        Array::from_vec(&[batch, steps, classes], y).unwrap(),
        Array::from([[4i32], [3]]),
        Array::from([[2i32], [1]]),
    ];
    let gradient_for = |pred_shape: &[Option<usize>], true_shape: &[Option<usize>]| {
        let y_true = placeholder(true_shape, DType::I32);
        let y_pred = placeholder(pred_shape, DType::F32);
        let input_length = placeholder(&[None, Some(1)], DType::I32);
        let label_length = placeholder(&[None, Some(1)], DType::I32);
        let cost = K::ctc_batch_cost(&y_true, &y_pred, &input_length, &label_length).unwrap();
        let grad = K::gradients(&cost, std::slice::from_ref(&y_pred)).unwrap().remove(0);
        assert_eq!(K::int_shape(&grad), pred_shape);
        let f = K::function(&[y_true, y_pred, input_length, label_length], &[grad], &[]).unwrap();
        f.call(&feeds).unwrap().remove(0).to_vec::<f32>().unwrap()
    };
    let known = gradient_for(&[Some(batch), Some(steps), Some(classes)], &[Some(batch), Some(2)]);
    let unknown = gradient_for(&[None, None, Some(classes)], &[None, None]);
    assert!(known.iter().any(|&g| g != 0.0));
    assert_eq!(known, unknown);
}

#[test]
fn greedy_follows_tensorflow() {
    // Classes 0..2 and blank 3. Item 0's arg-maxes: 1 1 3 1 0 0 → [1, 1, 0] (a, a → a; a, blank,
    // a → a a). Item 1: 2 3 2 2 with input_length 3 → [2, 2]; its 4th step is ignored.
    // Item 2: ties (0.4, 0.4) take the lowest index: 0 3 0 0 3 3 → [0, 0].
    let peak = |c: usize| {
        let mut row = [0.05f32; 4];
        row[c] = 0.85;
        row
    };
    let tie = [0.4f32, 0.4, 0.1, 0.1];
    let items: [Vec<[f32; 4]>; 3] = [
        vec![peak(1), peak(1), peak(3), peak(1), peak(0), peak(0)],
        vec![peak(2), peak(3), peak(2), peak(2), peak(0), peak(0)],
        vec![tie, peak(3), tie, tie, peak(3), peak(3)],
    ];
    let y: Vec<f32> = items.iter().flatten().flatten().copied().collect();
    let input_lengths = [6i32, 3, 6];
    let y_pred = placeholder(&[None, Some(6), Some(4)], DType::F32);
    let input_length = placeholder(&[None], DType::I32);
    let (paths, scores) = K::ctc_decode(&y_pred, &input_length, true, 100, 1, None, None).unwrap();
    assert_eq!(paths.len(), 1);
    assert_eq!(K::int_shape(&paths[0]), [None, None]);
    assert_eq!(K::int_shape(&scores), [None, Some(1)]);
    let f = K::function(&[y_pred, input_length], &[paths[0].clone(), scores], &[]).unwrap();
    let out = f.call(&[Array::from_vec(&[3, 6, 4], y.clone()).unwrap(), Array::from(input_lengths.to_vec())]).unwrap();
    assert_eq!(out[0].dtype(), DType::I64);
    assert_eq!(out[0].shape(), [3, 3]);
    assert_eq!(out[0].to_vec::<i64>().unwrap(), [1, 1, 0, 2, 2, -1, 0, 0, -1]);
    let scores = out[1].to_vec::<f32>().unwrap();
    for (b, item) in items.iter().enumerate() {
        let expected: f64 = -item[..input_lengths[b] as usize]
            .iter()
            .map(|row| f64::from(row.iter().fold(f32::MIN, |m, &v| m.max(v)) + 1e-8).ln())
            .sum::<f64>();
        assert!(close(f64::from(scores[b]), expected, 1e-6), "item {b}: {} vs {expected}", scores[b]);
    }
}

#[test]
fn greedy_of_empty_paths_has_width_zero() {
    let y_pred = K::constant(
        Array::from_vec(&[2, 2, 3], vec![0.1f32, 0.1, 0.8, 0.2, 0.2, 0.6, 0.1, 0.1, 0.8, 0.9, 0.05, 0.05]).unwrap(),
    );
    // Item 1's only non-blank step is past its input_length.
    let input_length = K::constant(Array::from([[2i32], [1]]));
    let (paths, _) = K::ctc_decode(&y_pred, &input_length, true, 100, 1, None, None).unwrap();
    let out = K::eval(&paths[0]).unwrap();
    assert_eq!(out.shape(), [2, 0]);
}

/// Checks the properties every beam result must have (Appendix B of the conformance notes)
/// and returns each item's paths with their scores.
fn check_beam_result(
    out: &[Array],
    y: &[f32],
    input_lengths: &[usize],
    shape: [usize; 3],
) -> Vec<Vec<(Vec<usize>, f64)>> {
    let [batch, steps, classes] = shape;
    let top_paths = out.len() - 1;
    let scores = out[top_paths].to_vec::<f32>().unwrap();
    assert_eq!(out[top_paths].shape(), [batch, top_paths]);
    let decoded: Vec<Vec<Vec<usize>>> = out[..top_paths].iter().map(rows).collect();
    (0..batch)
        .map(|b| {
            let probs = step_probs(&y[b * steps * classes..], classes, input_lengths[b]);
            let item: Vec<(Vec<usize>, f64)> =
                (0..top_paths).map(|k| (decoded[k][b].clone(), f64::from(scores[b * top_paths + k]))).collect();
            for (k, (path, score)) in item.iter().enumerate() {
                assert!(path.iter().all(|&l| l < classes - 1), "item {b} path {k} holds a blank: {path:?}");
                let exact = forward_prob(&probs, path).ln();
                assert!(*score <= 0.0 && close(*score, exact, 1e-5), "item {b} path {k}: {score} vs exact {exact}");
                if k > 0 {
                    assert!(*score <= item[k - 1].1, "item {b}: scores not in order: {item:?}");
                    assert!(item[..k].iter().all(|(p, _)| p != path), "item {b}: repeated path {path:?}");
                }
            }
            item
        })
        .collect()
}

#[test]
fn beam_search_finds_the_most_probable_sequences() {
    let mut rng = Rng(3);
    for case in 0..12 {
        let (batch, steps) = (2, 1 + case % 4);
        let classes = 3 + case % 2;
        let peak = [0.5, 2.0, 4.0][case % 3];
        let y = random_probs(&mut rng, batch, steps, classes, peak);
        let input_lengths = [steps, rng.below(steps + 1)];
        let (top_paths, beam_width) = (3, 16);
        let y_pred = placeholder(&[Some(batch), Some(steps), Some(classes)], DType::F32);
        let input_length = placeholder(&[Some(batch), Some(1)], DType::I32);
        let (paths, scores) = K::ctc_decode(&y_pred, &input_length, false, beam_width, top_paths, None, None).unwrap();
        assert_eq!(paths.len(), top_paths);
        let mut outputs = paths;
        outputs.push(scores);
        let f = K::function(&[y_pred, input_length], &outputs, &[]).unwrap();
        let lengths = Array::from_vec(&[batch, 1], input_lengths.iter().map(|&n| n as i32).collect()).unwrap();
        let out = f.call(&[Array::from_vec(&[batch, steps, classes], y.clone()).unwrap(), lengths]).unwrap();
        let results = check_beam_result(&out, &y, &input_lengths, [batch, steps, classes]);
        for (b, item) in results.iter().enumerate() {
            let probs = step_probs(&y[b * steps * classes..], classes, input_lengths[b]);
            let mut all: Vec<(Vec<usize>, f64)> = brute_force(&probs).into_iter().collect();
            all.sort_by(|a, b| b.1.total_cmp(&a.1));
            // The k-th path has the k-th best probability (ties may swap equal sequences).
            for (k, (path, score)) in item.iter().enumerate() {
                let best = all.get(k).map_or(f64::NEG_INFINITY, |(_, p)| p.ln());
                assert!(
                    close(*score, best, 1e-5),
                    "case {case} item {b} path {k} {path:?}: {score} vs best {best} ({all:?})"
                );
            }
        }
    }
}

#[test]
fn beam_search_fills_missing_paths_with_the_shortest_other_sequences() {
    // Two classes (label 0 and the blank) and one step: only [] and [0] are possible; the third
    // path is [0, 0], impossible in one step.
    let y = vec![0.3f32, 0.7];
    let y_pred = K::constant(Array::from_vec(&[1, 1, 2], y.clone()).unwrap());
    let input_length = K::constant(Array::from(vec![1i32]));
    let (paths, scores) = K::ctc_decode(&y_pred, &input_length, false, 4, 3, None, None).unwrap();
    let mut outputs = paths;
    outputs.push(scores);
    let out = K::function(&[], &outputs, &[]).unwrap().call(&[]).unwrap();
    assert_eq!(rows(&out[0]), [Vec::<usize>::new()]);
    assert_eq!(rows(&out[1]), [vec![0]]);
    assert_eq!(rows(&out[2]), [vec![0, 0]]);
    let scores = out[3].to_vec::<f32>().unwrap();
    assert!(close(f64::from(scores[0]), f64::from(0.7f32 + 1e-8).ln(), 1e-6), "{scores:?}");
    assert!(close(f64::from(scores[1]), f64::from(0.3f32 + 1e-8).ln(), 1e-6), "{scores:?}");
    assert_eq!(scores[2], f32::NEG_INFINITY);
}

#[test]
fn dictionary_decode_returns_the_best_entries() {
    let (batch, steps, classes) = (2, 5, 4);
    let mut rng = Rng(5);
    let y = random_probs(&mut rng, batch, steps, classes, 3.0);
    let entries: Vec<Vec<usize>> = vec![vec![0, 1], vec![2], vec![1, 1, 2], vec![], vec![2, 0, 2, 1], vec![0, 1]];
    let lens: Vec<usize> = entries.iter().map(Vec::len).collect();
    let values: Vec<usize> = entries.iter().flatten().copied().collect();
    let input_lengths = [5usize, 3];
    let y_pred = placeholder(&[None, Some(steps), Some(classes)], DType::F32);
    let input_length = placeholder(&[None], DType::I32);
    let top_paths = 3;
    let (paths, scores) =
        K::ctc_decode(&y_pred, &input_length, false, 1, top_paths, Some(&lens), Some(&values)).unwrap();
    let mut outputs = paths;
    outputs.push(scores);
    let f = K::function(&[y_pred, input_length], &outputs, &[]).unwrap();
    let lengths = Array::from(input_lengths.iter().map(|&n| n as i32).collect::<Vec<_>>());
    let out = f.call(&[Array::from_vec(&[batch, steps, classes], y.clone()).unwrap(), lengths]).unwrap();
    let results = check_beam_result(&out, &y, &input_lengths, [batch, steps, classes]);
    for (b, item) in results.iter().enumerate() {
        let probs = step_probs(&y[b * steps * classes..], classes, input_lengths[b]);
        let mut ranked: Vec<(Vec<usize>, f64)> =
            entries[..5].iter().map(|e| (e.clone(), forward_prob(&probs, e).ln())).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (k, (path, score)) in item.iter().enumerate() {
            assert_eq!(path, &ranked[k].0, "item {b} rank {k}: {item:?} vs {ranked:?}");
            assert!(close(*score, ranked[k].1, 1e-5));
        }
    }
}

#[test]
fn decode_outputs_mix_with_device_outputs_and_cannot_be_consumed() {
    let y_pred = placeholder(&[Some(1), Some(2), Some(3)], DType::F32);
    let input_length = placeholder(&[Some(1)], DType::I32);
    let (paths, scores) = K::ctc_decode(&y_pred, &input_length, true, 100, 1, None, None).unwrap();
    let doubled = (&y_pred * 2.0).unwrap();
    let f = K::function(&[y_pred.clone(), input_length.clone()], &[doubled, paths[0].clone(), scores.clone()], &[])
        .unwrap();
    let y = vec![0.8f32, 0.1, 0.1, 0.1, 0.1, 0.8];
    let out = f.call(&[Array::from_vec(&[1, 2, 3], y).unwrap(), Array::from(vec![2i32])]).unwrap();
    assert_eq!(out[0].to_vec::<f32>().unwrap(), [1.6, 0.2, 0.2, 0.2, 0.2, 1.6]);
    assert_eq!(out[1].to_vec::<i64>().unwrap(), [0]);

    // Scores computed on the host cannot feed another node, nor an update.
    let used = (&scores + 1.0).unwrap();
    let err = K::function(&[y_pred.clone(), input_length.clone()], &[used], &[]).err().unwrap().to_string();
    assert!(err.contains("ctc_decode") && err.contains("output of `function`"), "{err}");
    let v = K::variable(Array::from([[0.0f32]])).unwrap();
    let err = K::function(&[y_pred, input_length], &[], &[(v, scores)]).err().unwrap().to_string();
    assert!(err.contains("ctc_decode") && err.contains("update"), "{err}");

    // Out-of-range input lengths are refused when fed.
    let err = f.call(&[Array::from_vec(&[1, 2, 3], vec![0.3f32; 6]).unwrap(), Array::from(vec![3i32])]).unwrap_err();
    assert!(err.to_string().contains("input_length[0] = 3"), "{err}");
}

#[test]
fn bad_arguments_are_errors_naming_the_function() {
    let labels = placeholder(&[Some(2), Some(3)], DType::I32);
    let y_pred = placeholder(&[Some(2), Some(6), Some(5)], DType::F32);
    let lengths = placeholder(&[Some(2), Some(1)], DType::I32);
    let cost_err = |y_true: &Tensor, y_pred: &Tensor, input_length: &Tensor, label_length: &Tensor| {
        K::ctc_batch_cost(y_true, y_pred, input_length, label_length).unwrap_err().to_string()
    };
    let err = cost_err(&labels, &placeholder(&[Some(2), Some(6)], DType::F32), &lengths, &lengths);
    assert!(err.starts_with("ctc_batch_cost:") && err.contains("y_pred") && err.contains("(2, 6)"), "{err}");
    let err = cost_err(&labels, &y_pred, &placeholder(&[Some(2), Some(2)], DType::I32), &lengths);
    assert!(err.contains("input_length") && err.contains("(2, 2)"), "{err}");
    let err = cost_err(&placeholder(&[Some(3), Some(3)], DType::I32), &y_pred, &lengths, &lengths);
    assert!(err.contains("batch sizes differ") && err.contains("(3, 3)"), "{err}");
    let err = cost_err(&labels, &placeholder(&[Some(2), Some(6), Some(5)], DType::I32), &lengths, &lengths);
    assert!(err.contains("float"), "{err}");

    let vector = placeholder(&[Some(2)], DType::I32);
    let decode_err =
        |input_length: &Tensor, greedy, beam_width, top_paths, lens: Option<&[usize]>, values: Option<&[usize]>| {
            K::ctc_decode(&y_pred, input_length, greedy, beam_width, top_paths, lens, values).unwrap_err().to_string()
        };
    let err = decode_err(&placeholder(&[Some(2), Some(3)], DType::I32), true, 1, 1, None, None);
    assert!(err.starts_with("ctc_decode:") && err.contains("input_length") && err.contains("(2, 3)"), "{err}");
    let err = decode_err(&vector, false, 2, 3, None, None);
    assert!(err.contains("top_paths (3)") && err.contains("beam_width (2)"), "{err}");
    let err = decode_err(&vector, false, 2, 0, None, None);
    assert!(err.contains("top_paths"), "{err}");
    let err = decode_err(&vector, false, 2, 1, Some(&[1, 2]), Some(&[0, 1]));
    assert!(err.contains("add up to 3") && err.contains("2 labels"), "{err}");
    let err = decode_err(&vector, false, 2, 1, Some(&[1]), None);
    assert!(err.contains("together"), "{err}");
    let err = decode_err(&vector, false, 2, 1, Some(&[2]), Some(&[0, 4]));
    assert!(err.contains("dictionary label 4"), "{err}");
    let err = decode_err(&vector, false, 2, 2, Some(&[1, 1]), Some(&[0, 0]));
    assert!(err.contains("top_paths (2)") && err.contains("1 distinct"), "{err}");
}
