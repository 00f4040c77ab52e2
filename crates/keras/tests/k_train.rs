//! Models trained only with the K API: `gradients` builds the SGD updates, `function` applies
//! them, and the loss ends where theory says it must.

use keras::{Array, backend as K};

/// A small deterministic generator (numbers in [0, 1)).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Mean logistic loss of weights `w`, bias `b` on the data, computed on the host in f64.
fn host_loss(x: &[[f64; 2]], y: &[f64], w: [f64; 2], b: f64) -> f64 {
    let total: f64 = x
        .iter()
        .zip(y)
        .map(|(xi, &yi)| {
            let p = sigmoid(w[0] * xi[0] + w[1] * xi[1] + b);
            -(yi * p.ln() + (1.0 - yi) * (1.0 - p).ln())
        })
        .sum();
    total / x.len() as f64
}

#[test]
fn logistic_regression_reaches_the_maximum_likelihood_loss() {
    // Labels drawn from a known logistic model: the fitted model's loss on this sample can be
    // no higher than the true parameters' loss (the fit maximises the likelihood).
    let (true_w, true_b) = ([2.0, -3.0], 0.5);
    let mut rng = Lcg(7);
    let n = 400;
    let x: Vec<[f64; 2]> = (0..n).map(|_| [rng.next() * 2.0 - 1.0, rng.next() * 2.0 - 1.0]).collect();
    let y: Vec<f64> = x
        .iter()
        .map(|xi| (rng.next() < sigmoid(true_w[0] * xi[0] + true_w[1] * xi[1] + true_b)) as u8 as f64)
        .collect();

    let inputs = K::placeholder([None, Some(2)]);
    let targets = K::placeholder([None, Some(1)]);
    let w = K::variable(Array::from([[0.0f32], [0.0]])).unwrap();
    let b = K::variable(Array::from([0.0f32])).unwrap();
    let logits = (K::dot(&inputs, &w).unwrap() + &b).unwrap();
    let loss = K::mean(&K::binary_crossentropy(&logits, &targets, true).unwrap(), K::Axes::All, false).unwrap();
    let grads = K::gradients(&loss, &[w.clone(), b.clone()]).unwrap();
    let lr = 2.0;
    let updates = vec![
        (w.clone(), (&w - (&grads[0] * lr).unwrap()).unwrap()),
        (b.clone(), (&b - (&grads[1] * lr).unwrap()).unwrap()),
    ];
    let step = K::function(&[inputs, targets], std::slice::from_ref(&loss), &updates).unwrap();

    let x_array = Array::from_f64s(K::DType::F32, &[n, 2], &x.iter().flatten().copied().collect::<Vec<_>>()).unwrap();
    let y_array = Array::from_f64s(K::DType::F32, &[n, 1], &y).unwrap();
    let mut losses = Vec::new();
    for _ in 0..400 {
        losses.push(step.call(&[x_array.clone(), y_array.clone()]).unwrap()[0].to_f64_vec()[0]);
    }
    let fitted_w = K::get_value(&w).unwrap().to_f64_vec();
    let fitted_b = K::get_value(&b).unwrap().to_f64_vec()[0];
    let fitted = host_loss(&x, &y, [fitted_w[0], fitted_w[1]], fitted_b);
    let truth = host_loss(&x, &y, true_w, true_b);

    assert!((losses[0] - std::f64::consts::LN_2).abs() < 1e-6, "zero weights give log 2, got {}", losses[0]);
    assert!(losses.windows(2).all(|p| p[1] <= p[0] + 1e-6), "gradient descent never raises the loss");
    assert!((losses[399] - fitted).abs() < 1e-4, "the reported loss is the host's: {} vs {fitted}", losses[399]);
    assert!(fitted <= truth + 1e-3, "fitted loss {fitted} above the true model's {truth}");
    assert!((fitted_w[0] - true_w[0]).abs() < 1.0 && (fitted_w[1] - true_w[1]).abs() < 1.0, "weights {fitted_w:?}");
}

#[test]
fn a_small_mlp_learns_xor() {
    let x_values = [[0.0f32, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]];
    let t_values = [[1.0f32, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]];
    let mut rng = Lcg(3);
    let mut init = |rows: usize, cols: usize| {
        let values: Vec<f32> = (0..rows * cols).map(|_| (rng.next() * 2.0 - 1.0) as f32).collect();
        K::variable(Array::from_vec(&[rows, cols], values).unwrap()).unwrap()
    };
    let (w1, w2) = (init(2, 8), init(8, 2));
    let b1 = K::variable(Array::from(vec![0.0f32; 8])).unwrap();
    let b2 = K::variable(Array::from(vec![0.0f32; 2])).unwrap();

    let x = K::placeholder([None, Some(2)]);
    let t = K::placeholder([None, Some(2)]);
    let hidden = K::tanh(&(K::dot(&x, &w1).unwrap() + &b1).unwrap()).unwrap();
    let p = K::softmax(&(K::dot(&hidden, &w2).unwrap() + &b2).unwrap()).unwrap();
    let loss = K::mean(&K::categorical_crossentropy(&p, &t, false).unwrap(), K::Axes::All, false).unwrap();
    let params = [w1, b1, w2, b2];
    let grads = K::gradients(&loss, &params).unwrap();
    let updates: Vec<_> =
        params.iter().zip(&grads).map(|(v, g)| (v.clone(), (v - (g * 0.5).unwrap()).unwrap())).collect();
    let step = K::function(&[x.clone(), t.clone()], &[loss], &updates).unwrap();
    let predict = K::function(&[x], &[K::argmax(&p, -1).unwrap()], &[]).unwrap();

    let feeds = [Array::from(x_values), Array::from(t_values)];
    let first = step.call(&feeds).unwrap()[0].to_f64_vec()[0];
    let mut last = first;
    for _ in 0..1500 {
        last = step.call(&feeds).unwrap()[0].to_f64_vec()[0];
    }
    assert!(last < 0.05 && last < first / 10.0, "loss went from {first} to {last}");
    let classes = predict.call(&feeds[..1]).unwrap()[0].to_vec::<i64>().unwrap();
    assert_eq!(classes, [0, 1, 1, 0]);
}
