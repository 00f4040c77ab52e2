//! Neural-network functions and control flow end to end on the built-in backend, against
//! values computed by hand or by an independent formula (README Appendix A.7 and A.9).

use keras::{Array, backend as K};
use keras_backend_api::{DType, Distribution, random::sample};

fn f32s(a: &Array) -> Vec<f32> {
    a.to_vec::<f32>().unwrap()
}

fn bools(a: &Array) -> Vec<bool> {
    assert_eq!(a.dtype(), DType::Bool);
    a.to_f64_vec().iter().map(|&v| v != 0.0).collect()
}

fn assert_close(actual: &[f32], expected: &[f64], tol: f64) {
    assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        assert!((f64::from(a) - e).abs() <= tol * (1.0 + e.abs()), "element {i}: {a} vs {e} ({actual:?})");
    }
}

/// Runs `outputs` of a function of `inputs` fed `feeds`.
fn run(inputs: &[K::Tensor], outputs: &[K::Tensor], feeds: &[Array]) -> Vec<Array> {
    K::function(inputs, outputs, &[]).unwrap().call(feeds).unwrap()
}

fn softmax_row(row: &[f64]) -> Vec<f64> {
    let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let total: f64 = row.iter().map(|v| (v - max).exp()).sum();
    row.iter().map(|v| (v - max).exp() / total).collect()
}

fn log_sum_exp(row: &[f64]) -> f64 {
    let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln()
}

// ----- softmax -----

#[test]
fn softmax_over_the_last_axis_of_a_3d_input() {
    let x = K::placeholder([None, Some(2), Some(3)]);
    let values = [1.0f32, 2.0, 3.0, -1.0, 0.0, 1.0, 1000.0, 1000.0, 999.0, 0.5, 0.5, 0.5];
    let out = run(
        std::slice::from_ref(&x),
        &[K::softmax(&x).unwrap()],
        &[Array::from_vec(&[2, 2, 3], values.to_vec()).unwrap()],
    );
    assert_eq!(out[0].shape(), [2, 2, 3]);
    let expected: Vec<f64> =
        values.chunks(3).flat_map(|r| softmax_row(&r.iter().map(|&v| f64::from(v)).collect::<Vec<_>>())).collect();
    assert_close(&f32s(&out[0]), &expected, 1e-6);
}

#[test]
fn softmax_of_a_scalar_is_an_error() {
    let err = K::softmax(&K::placeholder(Vec::<usize>::new())).unwrap_err().to_string();
    assert!(err.starts_with("softmax:"), "{err}");
}

// ----- categorical cross-entropy -----

#[test]
fn categorical_crossentropy_normalises_then_clips() {
    let output = K::placeholder([None, Some(3)]);
    let target = K::placeholder([None, Some(3)]);
    let loss = K::categorical_crossentropy(&output, &target, false).unwrap();
    assert_eq!(loss.shape(), [None]);
    let out = run(
        &[output, target],
        &[loss],
        &[
            Array::from([[0.2f32, 0.3, 0.5], [1.0, 1.0, 2.0], [1.0, 0.0, 0.0]]),
            Array::from([[0.0f32, 0.0, 1.0], [0.5, 0.0, 0.5], [0.0, 1.0, 0.0]]),
        ],
    );
    let eps = f64::from(1e-7f32);
    let expected = [-(0.5f64.ln()), -(0.5 * 0.25f64.ln() + 0.5 * 0.5f64.ln()), -eps.ln()];
    assert_close(&f32s(&out[0]), &expected, 1e-6);
}

#[test]
fn categorical_crossentropy_from_logits() {
    let output = K::placeholder([2, 3]);
    let target = K::placeholder([2, 3]);
    let loss = K::categorical_crossentropy(&output, &target, true).unwrap();
    let logits = [[1.0, 2.0, 3.0], [100.0, -100.0, 0.0]];
    let weights = [[0.0, 1.0, 0.0], [0.25, 0.25, 0.5]];
    let out = run(
        &[output, target],
        &[loss],
        &[Array::from(logits.map(|r| r.map(|v| v as f32))), Array::from(weights.map(|r| r.map(|v| v as f32)))],
    );
    let expected: Vec<f64> = logits
        .iter()
        .zip(&weights)
        .map(|(x, t)| {
            let lse = log_sum_exp(x);
            x.iter().zip(t).map(|(x, t)| t * (lse - x)).sum()
        })
        .collect();
    assert_close(&f32s(&out[0]), &expected, 1e-6);
}

#[test]
fn gradient_of_crossentropy_of_softmax_is_softmax_minus_target_over_batch() {
    let x = K::placeholder([None, Some(3)]);
    let t = K::placeholder([None, Some(3)]);
    let loss = K::mean(&K::categorical_crossentropy(&K::softmax(&x).unwrap(), &t, false).unwrap(), K::Axes::All, false)
        .unwrap();
    let grad = K::gradients(&loss, std::slice::from_ref(&x)).unwrap().remove(0);
    let xs = [[1.0, 2.0, 0.5], [-1.0, 0.0, 3.0]];
    let ts = [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]];
    let out = run(
        &[x, t],
        &[loss, grad],
        &[Array::from(xs.map(|r| r.map(|v| v as f32))), Array::from(ts.map(|r| r.map(|v| v as f32)))],
    );
    let softmaxes: Vec<Vec<f64>> = xs.iter().map(|r| softmax_row(r)).collect();
    let expected_loss = -(softmaxes[0][1].ln() + softmaxes[1][0].ln()) / 2.0;
    assert_close(&f32s(&out[0]), &[expected_loss], 1e-6);
    let expected: Vec<f64> = softmaxes
        .iter()
        .zip(&ts)
        .flat_map(|(s, t)| s.iter().zip(t).map(|(s, t)| (s - t) / 2.0).collect::<Vec<_>>())
        .collect();
    assert_close(&f32s(&out[1]), &expected, 1e-6);
}

// ----- sparse categorical cross-entropy -----

/// TensorFlow's rule: `log(Σ_j clip(p_j)) − log(clip(p_t))`.
fn sparse_expected(rows: &[[f64; 3]], labels: &[usize]) -> Vec<f64> {
    let clip = |p: f64| p.clamp(f64::from(1e-7f32), f64::from(1.0f32 - 1e-7f32));
    rows.iter().zip(labels).map(|(r, &t)| r.iter().map(|&p| clip(p)).sum::<f64>().ln() - clip(r[t]).ln()).collect()
}

const PROBS: [[f64; 3]; 3] = [[0.2, 0.3, 0.5], [0.1, 0.1, 0.1], [1.0, 0.0, 0.0]];

fn probs_array() -> Array {
    Array::from(PROBS.map(|r| r.map(|v| v as f32)))
}

#[test]
fn sparse_categorical_crossentropy_with_int_targets_of_shape_b() {
    let output = K::placeholder([None, Some(3)]);
    let target = K::placeholder_with([None], Some(DType::I32), None);
    let loss = K::sparse_categorical_crossentropy(&output, &target, false).unwrap();
    let out = run(&[output, target], &[loss], &[probs_array(), Array::from(vec![2i32, 0, 1])]);
    assert_eq!(out[0].shape(), [3]);
    assert_close(&f32s(&out[0]), &sparse_expected(&PROBS, &[2, 0, 1]), 1e-6);
}

#[test]
fn sparse_categorical_crossentropy_truncates_float_targets_of_shape_b_1() {
    let output = K::placeholder([3, 3]);
    let target = K::placeholder([3, 1]);
    let loss = K::sparse_categorical_crossentropy(&output, &target, false).unwrap();
    // 2.9 → 2, 0.99 → 0, 1.5 → 1.
    let out = run(&[output, target], &[loss], &[probs_array(), Array::from([[2.9f32], [0.99], [1.5]])]);
    assert_eq!(out[0].shape(), [3]);
    assert_close(&f32s(&out[0]), &sparse_expected(&PROBS, &[2, 0, 1]), 1e-6);
}

#[test]
fn sparse_categorical_crossentropy_of_a_3d_output_keeps_the_leading_shape() {
    let output = K::placeholder([None, None, Some(3)]);
    let target = K::placeholder([None, None]);
    let loss = K::sparse_categorical_crossentropy(&output, &target, true).unwrap();
    assert_eq!(loss.shape(), [None, None]);
    let logits = [[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [5.0, -5.0, 1.0], [-1.0, 2.0, 0.5]];
    let labels = [0usize, 2, 0, 1];
    let flat: Vec<f32> = logits.iter().flatten().map(|&v| v as f32).collect();
    let out = run(
        &[output, target],
        &[loss],
        &[
            Array::from_vec(&[2, 2, 3], flat).unwrap(),
            Array::from_vec(&[2, 2], labels.iter().map(|&l| l as f32).collect()).unwrap(),
        ],
    );
    assert_eq!(out[0].shape(), [2, 2]);
    let expected: Vec<f64> = logits.iter().zip(labels).map(|(r, t)| log_sum_exp(r) - r[t]).collect();
    assert_close(&f32s(&out[0]), &expected, 1e-6);
}

#[test]
fn sparse_categorical_crossentropy_needs_known_classes_and_matching_counts() {
    let target = K::placeholder([3]);
    let err =
        K::sparse_categorical_crossentropy(&K::placeholder([Some(3), None]), &target, false).unwrap_err().to_string();
    assert!(err.starts_with("sparse_categorical_crossentropy:") && err.contains("classes"), "{err}");
    let err = K::sparse_categorical_crossentropy(&K::placeholder([4, 2]), &target, false).unwrap_err().to_string();
    assert!(err.contains("4 rows") && err.contains("3 labels"), "{err}");
}

// ----- binary cross-entropy -----

#[test]
fn binary_crossentropy_clips_with_float32_bounds() {
    let output = K::placeholder([4]);
    let target = K::placeholder([4]);
    let loss = K::binary_crossentropy(&output, &target, false).unwrap();
    let out =
        run(&[output, target], &[loss], &[Array::from([1.0f32, 0.5, 0.0, 0.9]), Array::from([0.0f32, 1.0, 0.0, 0.3])]);
    let got = f32s(&out[0]);
    // −log(1 − 0.99999988): float32 1 − ε is 0.99999988, not 0.9999999 (which gives 16.118).
    assert!((got[0] - 15.942385).abs() < 2e-5, "{got:?}");
    assert_close(
        &got[1..],
        &[2f64.ln(), -(1.0 - f64::from(1e-7f32)).ln(), -(0.3 * 0.9f64.ln() + 0.7 * 0.1f64.ln())],
        1e-5,
    );
}

#[test]
fn binary_crossentropy_from_logits() {
    let output = K::placeholder([None]);
    let target = K::placeholder([None]);
    let loss = K::binary_crossentropy(&output, &target, true).unwrap();
    let zs: [f64; 4] = [0.0, 2.0, -3.0, 50.0];
    let ts: [f64; 4] = [1.0, 1.0, 0.25, 0.0];
    let out = run(
        &[output, target],
        &[loss],
        &[Array::from(zs.map(|v| v as f32).to_vec()), Array::from(ts.map(|v| v as f32).to_vec())],
    );
    let expected: Vec<f64> =
        zs.iter().zip(&ts).map(|(z, t)| z.max(0.0) - z * t + (1.0 + (-z.abs()).exp()).ln()).collect();
    assert_close(&f32s(&out[0]), &expected, 1e-6);
}

// ----- l2_normalize -----

#[test]
fn l2_normalize_gives_zeros_for_a_zero_slice() {
    let x = K::placeholder([None, Some(2)]);
    let rows = K::l2_normalize(&x, -1).unwrap();
    let columns = K::l2_normalize(&x, 0).unwrap();
    let out = run(&[x], &[rows, columns], &[Array::from([[3.0f32, 4.0], [0.0, 0.0], [1.0, 0.0]])]);
    assert_close(&f32s(&out[0]), &[0.6, 0.8, 0.0, 0.0, 1.0, 0.0], 1e-6);
    let n0 = 10f64.sqrt();
    assert_close(&f32s(&out[1]), &[3.0 / n0, 1.0, 0.0, 0.0, 1.0 / n0, 0.0], 1e-6);
    let err = K::l2_normalize(&K::placeholder([2]), 1).unwrap_err().to_string();
    assert!(err.starts_with("l2_normalize:"), "{err}");
}

// ----- in_top_k -----

#[test]
fn in_top_k_counts_strictly_larger_predictions_so_ties_favour_the_target() {
    // Classes known when building, and only when fed.
    for classes in [Some(4), None] {
        let predictions = K::placeholder([None, classes]);
        let targets = K::placeholder_with([None], Some(DType::I64), None);
        let outputs: Vec<K::Tensor> = (1..=4).map(|k| K::in_top_k(&predictions, &targets, k).unwrap()).collect();
        let preds = Array::from([
            [0.1f32, 0.5, 0.5, 0.2],
            [0.9, 0.05, 0.05, 0.0],
            [1.0, 2.0, 3.0, 4.0],
            [1.0, f32::NAN, 0.0, 0.0],
            [1.0, 2.0, 3.0, 4.0],
        ]);
        let out = run(&[predictions, targets], &outputs, &[preds, Array::from(vec![2i64, 1, 0, 0, 7])]);
        // Larger-than-target counts: 0, 1, 3; a NaN row and an out-of-range target give false.
        assert_eq!(bools(&out[0]), [true, false, false, false, false]);
        assert_eq!(bools(&out[1]), [true, true, false, false, false]);
        assert_eq!(bools(&out[2]), [true, true, false, false, false]);
        assert_eq!(bools(&out[3]), [true, true, true, false, false]);
    }
}

#[test]
fn in_top_k_checks_ranks_and_dtypes() {
    let err = K::in_top_k(&K::placeholder([2, 3]), &K::placeholder([2]), 1).unwrap_err().to_string();
    assert!(err.starts_with("in_top_k:") && err.contains("targets"), "{err}");
    let targets = K::placeholder_with([3], Some(DType::I32), None);
    let err = K::in_top_k(&K::placeholder([2, 3]), &targets, 1).unwrap_err().to_string();
    assert!(err.contains("batch size"), "{err}");
}

// ----- batch normalization -----

#[test]
fn batch_normalization_broadcasts_parameters() {
    let x = K::placeholder([None, Some(2)]);
    let mean = K::variable(Array::from([[1.0f32, -1.0]])).unwrap();
    let var = K::variable(Array::from([[4.0f32, 0.25]])).unwrap();
    let beta = K::variable(Array::from([[0.5f32, 0.0]])).unwrap();
    let gamma = K::variable(Array::from([[2.0f32, 1.0]])).unwrap();
    let y = K::batch_normalization(&x, &mean, &var, &beta, &gamma, 1e-3).unwrap();
    let out = run(&[x], &[y], &[Array::from([[3.0f32, 0.0], [1.0, -2.0]])]);
    let (s0, s1) = ((4.0f64 + 1e-3).sqrt(), (0.25f64 + 1e-3).sqrt());
    let expected = [2.0 / s0 * 2.0 + 0.5, 1.0 / s1, 0.5, -1.0 / s1];
    assert_close(&f32s(&out[0]), &expected, 1e-6);
}

#[test]
fn normalize_batch_in_training_over_all_but_the_last_axis() {
    let x = K::placeholder([None, Some(2)]);
    let gamma = K::variable(Array::from([1.0f32, 2.0])).unwrap();
    let beta = K::variable(Array::from([0.0f32, 1.0])).unwrap();
    let (normed, mean, var) = K::normalize_batch_in_training(&x, &gamma, &beta, &[0], 1e-3).unwrap();
    let out = run(&[x], &[normed, mean, var], &[Array::from([[1.0f32, 2.0], [3.0, 6.0]])]);
    assert_close(&f32s(&out[1]), &[2.0, 4.0], 1e-6);
    // The plain biased variance, without + epsilon (TensorFlow).
    assert_close(&f32s(&out[2]), &[1.0, 4.0], 1e-6);
    let (s0, s1) = ((1.0f64 + 1e-3).sqrt(), (4.0f64 + 1e-3).sqrt());
    assert_close(&f32s(&out[0]), &[-1.0 / s0, -4.0 / s1 + 1.0, 1.0 / s0, 4.0 / s1 + 1.0], 1e-6);
}

#[test]
fn normalize_batch_in_training_reshapes_parameters_for_channels_first() {
    // (B, C, H, W) = (2, 2, 1, 2), statistics per channel over [0, 2, 3].
    let x = K::placeholder([None, Some(2), Some(1), Some(2)]);
    let gamma = K::variable(Array::from([1.0f32, 0.5])).unwrap();
    let beta = K::variable(Array::from([0.0f32, -1.0])).unwrap();
    let (normed, mean, var) = K::normalize_batch_in_training(&x, &gamma, &beta, &[0, 2, 3], 0.0).unwrap();
    assert_eq!(mean.shape(), [Some(2)]);
    let values = vec![1.0f32, 3.0, 10.0, 10.0, 5.0, 7.0, 20.0, 20.0];
    let out = run(&[x], &[normed, mean, var], &[Array::from_vec(&[2, 2, 1, 2], values.clone()).unwrap()]);
    // Channel 0: 1, 3, 5, 7 (mean 4, var 5); channel 1: 10, 10, 20, 20 (mean 15, var 25).
    assert_close(&f32s(&out[1]), &[4.0, 15.0], 1e-6);
    assert_close(&f32s(&out[2]), &[5.0, 25.0], 1e-6);
    let expected: Vec<f64> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let v = f64::from(v);
            if (i / 2) % 2 == 0 { (v - 4.0) / 5f64.sqrt() } else { (v - 15.0) / 5.0 * 0.5 - 1.0 }
        })
        .collect();
    assert_close(&f32s(&out[0]), &expected, 1e-6);
    let err = K::normalize_batch_in_training(&K::placeholder([2, 2]), &gamma, &beta, &[2], 1e-3).unwrap_err();
    assert!(err.to_string().contains("reduction axis 2"), "{err}");
}

// ----- dropout -----

fn ones(n: usize) -> Array {
    Array::from(vec![1.0f32; n])
}

#[test]
fn dropout_with_a_seed_gives_the_same_masks_in_two_functions_and_follows_the_stream() {
    let x = K::placeholder([None]);
    let f1 = K::function(std::slice::from_ref(&x), &[K::dropout(&x, 0.5, None, Some(42)).unwrap()], &[]).unwrap();
    let f2 = K::function(std::slice::from_ref(&x), &[K::dropout(&x, 0.5, None, Some(42)).unwrap()], &[]).unwrap();
    let n = 64;
    let first = [f1.call(&[ones(n)]).unwrap().remove(0), f2.call(&[ones(n)]).unwrap().remove(0)];
    let second = [f1.call(&[ones(n)]).unwrap().remove(0), f2.call(&[ones(n)]).unwrap().remove(0)];
    assert_eq!(f32s(&first[0]), f32s(&first[1]));
    assert_eq!(f32s(&second[0]), f32s(&second[1]));
    // Each call draws the next mask of the stream (seed 42, counter = call number).
    assert_ne!(f32s(&first[0]), f32s(&second[0]));
    for (counter, call) in [&first[0], &second[0]].into_iter().enumerate() {
        let expected: Vec<f64> =
            (0..n as u64).map(|i| sample(Distribution::Bernoulli { p: 0.5 }, 42, counter as u64, i) * 2.0).collect();
        assert_close(&f32s(call), &expected, 0.0);
    }
}

#[test]
fn dropout_keeps_the_expected_fraction_and_scales_the_kept() {
    let x = K::placeholder([100, 100]);
    let y = K::dropout(&x, 0.3, None, Some(7)).unwrap();
    let out = run(&[x], &[y], &[Array::full(DType::F32, &[100, 100], 1.0)]);
    let values = f32s(&out[0]);
    let kept = values.iter().filter(|&&v| v != 0.0).count() as f64 / values.len() as f64;
    assert!((kept - 0.7).abs() < 0.02, "kept fraction {kept}");
    assert!(values.iter().all(|&v| v == 0.0 || (f64::from(v) - 1.0 / 0.7).abs() < 1e-6));
}

#[test]
fn dropout_without_a_seed_uses_a_new_seed_each_time() {
    let x = K::placeholder([None]);
    let a = K::dropout(&x, 0.5, None, None).unwrap();
    let b = K::dropout(&x, 0.5, None, None).unwrap();
    let out = run(&[x], &[a, b], &[ones(256)]);
    assert_ne!(f32s(&out[0]), f32s(&out[1]));
}

#[test]
fn dropout_noise_shape_broadcasts_one_draw_per_row() {
    let x = K::placeholder([4, 5]);
    let y = K::dropout(&x, 0.5, Some(&[4, 1]), Some(3)).unwrap();
    let out = run(&[x], &[y], &[Array::full(DType::F32, &[4, 5], 1.0)]);
    let values = f32s(&out[0]);
    for (r, row) in values.chunks(5).enumerate() {
        let expected = sample(Distribution::Bernoulli { p: 0.5 }, 3, 0, r as u64) as f32 * 2.0;
        assert!(row.iter().all(|&v| v == expected), "row {r}: {row:?}");
    }
    let err = K::dropout(&K::placeholder([4, 5]), 0.5, Some(&[3, 1]), None).unwrap_err().to_string();
    assert!(err.starts_with("dropout:") && err.contains("noise_shape"), "{err}");
}

#[test]
fn dropout_level_outside_zero_to_one_is_an_error() {
    let x = K::placeholder([3]);
    for level in [-0.1, 1.0, 1.5, f64::NAN] {
        let err = K::dropout(&x, level, None, Some(1)).unwrap_err().to_string();
        assert!(err.starts_with("dropout:") && err.contains("level"), "{level}: {err}");
    }
    // Level 0 keeps everything.
    let out =
        run(std::slice::from_ref(&x), &[K::dropout(&x, 0.0, None, None).unwrap()], &[Array::from([1.0f32, 2.0, 3.0])]);
    assert_eq!(f32s(&out[0]), [1.0, 2.0, 3.0]);
}

#[test]
fn dropout_gradient_is_the_scaled_mask() {
    let x = K::placeholder([None]);
    let y = K::dropout(&x, 0.25, None, Some(11)).unwrap();
    let grad = K::gradients(&K::sum(&y, K::Axes::All, false).unwrap(), std::slice::from_ref(&x)).unwrap().remove(0);
    let out = run(&[x], &[y, grad], &[Array::from(vec![2.0f32; 32])]);
    let (values, grads) = (f32s(&out[0]), f32s(&out[1]));
    assert!(values.contains(&0.0) && grads.contains(&0.0));
    for (v, g) in values.iter().zip(&grads) {
        assert!((v / 2.0 - g).abs() < 1e-6, "{values:?} {grads:?}");
    }
}

// ----- switch and the learning phase -----

#[test]
fn switch_with_a_scalar_condition_picks_a_whole_tensor() {
    let c = K::placeholder(Vec::<usize>::new());
    let a = K::placeholder([2]);
    let b = K::placeholder([2]);
    let y = K::switch(&c, &a, &b).unwrap();
    let f = K::function(&[c, a, b], &[y], &[]).unwrap();
    for (cond, expected) in [(1.0f32, [1.0f32, 2.0]), (0.0, [3.0, 4.0]), (-0.5, [1.0, 2.0])] {
        let out = f.call(&[Array::scalar(cond), Array::from([1.0f32, 2.0]), Array::from([3.0f32, 4.0])]).unwrap();
        assert_eq!(f32s(&out[0]), expected);
    }
}

#[test]
fn switch_with_an_elementwise_condition_selects_elementwise() {
    let c = K::placeholder([4]);
    let a = K::placeholder([4]);
    let b = K::placeholder([1]);
    let out = run(
        &[c.clone(), a.clone(), b.clone()],
        &[K::switch(&c, &a, &b).unwrap()],
        &[Array::from([1.0f32, 0.0, 2.0, -1.0]), Array::from([1.0f32, 2.0, 3.0, 4.0]), Array::from([9.0f32])],
    );
    assert_eq!(f32s(&out[0]), [1.0, 9.0, 3.0, 4.0]);
    let err = K::switch(&c, &a, &K::placeholder([3])).unwrap_err().to_string();
    assert!(err.starts_with("switch:"), "{err}");
}

#[test]
fn learning_phase_selectors_fed_and_default() {
    let x = K::placeholder([None]);
    let twice = (&x * 2.0).unwrap();
    let thrice = (&x * 3.0).unwrap();
    let outs = [K::in_train_phase(&twice, &thrice).unwrap(), K::in_test_phase(&twice, &thrice).unwrap()];
    let f = K::function(&[x.clone(), K::learning_phase()], &outs, &[]).unwrap();
    let xs = Array::from([1.0f32, -2.0]);
    let phase1 = f.call(&[xs.clone(), Array::scalar(1i32)]).unwrap();
    assert_eq!(f32s(&phase1[0]), [2.0, -4.0]);
    assert_eq!(f32s(&phase1[1]), [3.0, -6.0]);
    let phase0 = f.call(&[xs.clone(), Array::scalar(0i32)]).unwrap();
    assert_eq!(f32s(&phase0[0]), [3.0, -6.0]);
    assert_eq!(f32s(&phase0[1]), [2.0, -4.0]);
    // Not an input: the test phase.
    let default = run(&[x], &outs, &[xs]);
    assert_eq!(f32s(&default[0]), [3.0, -6.0]);
    assert_eq!(f32s(&default[1]), [2.0, -4.0]);
}

// ----- map_fn, foldl, foldr -----

const ELEMS: [[f32; 2]; 3] = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]];

#[test]
fn map_fn_with_static_and_unknown_leading_dims() {
    for shape in [[Some(3), Some(2)], [None, Some(2)], [None, None]] {
        let elems = K::placeholder(shape);
        let squares = K::map_fn(|r| r * r, &elems).unwrap();
        let sums = K::map_fn(|r| K::sum(r, K::Axes::All, false), &elems).unwrap();
        assert_eq!(squares.shape(), [shape[0], shape[1]]);
        assert_eq!(sums.shape(), [shape[0]]);
        let out = run(&[elems], &[squares, sums], &[Array::from(ELEMS)]);
        assert_eq!(out[0].shape(), [3, 2]);
        assert_eq!(f32s(&out[0]), [1.0, 4.0, 9.0, 16.0, 25.0, 36.0]);
        assert_eq!(f32s(&out[1]), [3.0, 7.0, 11.0]);
    }
}

#[test]
fn map_fn_over_a_fed_length_reruns_for_each_length() {
    let elems = K::placeholder([None]);
    let f =
        K::function(std::slice::from_ref(&elems), &[K::map_fn(|r| (r * 2.0)? + 1.0, &elems).unwrap()], &[]).unwrap();
    assert_eq!(f32s(&f.call(&[Array::from(vec![1.0f32, 2.0, 3.0])]).unwrap()[0]), [3.0, 5.0, 7.0]);
    assert_eq!(f32s(&f.call(&[Array::from(vec![-1.0f32])]).unwrap()[0]), [-1.0]);
    let empty = f.call(&[Array::from(Vec::<f32>::new())]).unwrap();
    assert_eq!(empty[0].shape(), [0]);
}

#[test]
fn foldl_and_foldr_without_an_initializer() {
    for shape in [[Some(3), Some(2)], [None, Some(2)]] {
        let elems = K::placeholder(shape);
        let total = K::foldl(|acc, x| acc + x, &elems, None).unwrap();
        let difference = K::foldr(|acc, x| acc - x, &elems, None).unwrap();
        assert_eq!(total.shape(), [Some(2)]);
        let out = run(&[elems], &[total, difference], &[Array::from(ELEMS)]);
        assert_eq!(f32s(&out[0]), [9.0, 12.0]);
        // acc = [5, 6]; − [3, 4]; − [1, 2].
        assert_eq!(f32s(&out[1]), [1.0, 0.0]);
    }
}

#[test]
fn foldl_and_foldr_with_an_initializer() {
    let elems = K::placeholder([None, Some(2)]);
    let init = K::placeholder([2]);
    let left = K::foldl(|acc, x| (acc * 0.5)? + x, &elems, Some(&init)).unwrap();
    let right = K::foldr(|acc, x| (acc * 0.5)? + x, &elems, Some(&init)).unwrap();
    let out = run(&[elems, init], &[left, right], &[Array::from(ELEMS), Array::from([8.0f32, 0.0])]);
    // Left: 8 → 4+1=5 → 2.5+3=5.5 → 2.75+5=7.75; 0 → 2 → 5 → 8.5.
    assert_eq!(f32s(&out[0]), [7.75, 8.5]);
    // Right: 8 → 4+5=9 → 4.5+3=7.5 → 3.75+1=4.75; 0 → 6 → 7 → 5.5.
    assert_eq!(f32s(&out[1]), [4.75, 5.5]);
}

#[test]
fn folds_of_an_empty_fed_sequence() {
    let elems = K::placeholder([None, Some(2)]);
    let init = K::placeholder([2]);
    let with_init = K::foldl(|acc, x| acc + x, &elems, Some(&init)).unwrap();
    let empty = Array::from_vec(&[0, 2], Vec::<f32>::new()).unwrap();
    let out = run(&[elems.clone(), init], &[with_init], &[empty.clone(), Array::from([1.0f32, 2.0])]);
    assert_eq!(f32s(&out[0]), [1.0, 2.0]);
    let without = K::foldl(|acc, x| acc + x, &elems, None).unwrap();
    let err = K::function(&[elems], &[without], &[]).unwrap().call(&[empty]).unwrap_err().to_string();
    assert!(err.starts_with("foldl:") && err.contains("empty"), "{err}");
    let err = K::foldr(|acc, x| acc + x, &K::placeholder([0, 2]), None).unwrap_err().to_string();
    assert!(err.starts_with("foldr:") && err.contains("empty"), "{err}");
}

#[test]
fn fold_body_must_keep_the_accumulator_type() {
    let err = K::foldl(|acc, _| K::sum(acc, K::Axes::All, false), &K::placeholder([None, Some(2)]), None)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("foldl:") && err.contains("accumulator"), "{err}");
}

#[test]
fn gradients_through_map_fn_and_foldl() {
    for shape in [[Some(3), Some(2)], [None, Some(2)]] {
        let elems = K::placeholder(shape);
        let squares = K::map_fn(K::square, &elems).unwrap();
        let product = K::foldl(|acc, x| acc * x, &elems, None).unwrap();
        let g_map =
            K::gradients(&K::sum(&squares, K::Axes::All, false).unwrap(), std::slice::from_ref(&elems)).unwrap();
        let g_fold =
            K::gradients(&K::sum(&product, K::Axes::All, false).unwrap(), std::slice::from_ref(&elems)).unwrap();
        let out = run(&[elems], &[product, g_map[0].clone(), g_fold[0].clone()], &[Array::from(ELEMS)]);
        assert_eq!(f32s(&out[0]), [15.0, 48.0]);
        assert_eq!(f32s(&out[1]), [2.0, 4.0, 6.0, 8.0, 10.0, 12.0]);
        // d(x0·x1·x2)/dx_i = product / x_i per column.
        assert_eq!(f32s(&out[2]), [15.0, 24.0, 5.0, 12.0, 3.0, 8.0]);
    }
}

#[test]
fn gradients_reach_tensors_the_loop_body_captures() {
    for shape in [[Some(3), Some(2)], [None, Some(2)]] {
        let elems = K::placeholder(shape);
        let w = K::variable(Array::from([0.5f32, -1.0])).unwrap();
        let init = K::placeholder([2]);
        let captured = w.clone();
        let scaled = K::map_fn(move |r| r * &captured, &elems).unwrap();
        let folded = K::foldl(|acc, x| (acc * 0.5)? + x, &elems, Some(&init)).unwrap();
        let loss =
            (K::sum(&scaled, K::Axes::All, false).unwrap() + K::sum(&folded, K::Axes::All, false).unwrap()).unwrap();
        let grads = K::gradients(&loss, &[w.clone(), elems.clone(), init.clone()]).unwrap();
        let out = run(&[elems, init], &grads, &[Array::from(ELEMS), Array::from([0.0f32, 0.0])]);
        // d/dw: column sums; d/delems: w + 0.5^(n-1-i); d/dinit: 0.5^3.
        assert_eq!(f32s(&out[0]), [9.0, 12.0]);
        assert_eq!(f32s(&out[1]), [0.75, -0.75, 1.0, -0.5, 1.5, 0.0]);
        assert_eq!(f32s(&out[2]), [0.125, 0.125]);
    }
}

#[test]
fn gradients_reach_placeholders_and_intermediates_the_loop_body_captures() {
    for shape in [[Some(3), Some(2)], [None, Some(2)]] {
        let elems = K::placeholder(shape);
        let p = K::placeholder([None]);
        let scale = (&p * 2.0).unwrap();
        let scaled = K::map_fn(move |r| r * &scale, &elems).unwrap();
        let loss = K::sum(&scaled, K::Axes::All, false).unwrap();
        let grads = K::gradients(&loss, &[p.clone(), elems.clone()]).unwrap();
        let out = run(
            &[elems, p],
            &[scaled, grads[0].clone(), grads[1].clone()],
            &[Array::from(ELEMS), Array::from([1.0f32, -0.5])],
        );
        assert_eq!(f32s(&out[0]), [2.0, -2.0, 6.0, -4.0, 10.0, -6.0]);
        // d/dp: 2 · column sums; d/delems: 2p on every row.
        assert_eq!(f32s(&out[1]), [18.0, 24.0]);
        assert_eq!(f32s(&out[2]), [2.0, -1.0, 2.0, -1.0, 2.0, -1.0]);
    }
}
