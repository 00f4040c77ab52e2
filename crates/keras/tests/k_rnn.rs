//! `K::rnn` end to end on the built-in backend, against a host loop written here in f64 (README
//! section 4's rnn and lstm recipes, 8(k), Appendix A.9), and its gradients against central
//! finite differences.

use keras::{Array, Result, backend as K};
use keras_backend_api::DType;

// ----- data and the host reference -----

/// Deterministic values in [-1, 1) (a 64-bit LCG), different for each `seed`.
fn values(seed: u64, n: usize) -> Vec<f64> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect()
}

fn array(dtype: DType, shape: &[usize], values: &[f64]) -> Array {
    Array::from_f64s(dtype, shape, values).unwrap()
}

/// `row · m` for a row-major `m` of `row.len()` rows.
fn vec_mat(row: &[f64], m: &[f64]) -> Vec<f64> {
    let cols = m.len() / row.len();
    (0..cols).map(|j| row.iter().enumerate().map(|(i, v)| v * m[i * cols + j]).sum()).collect()
}

fn add(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

/// One batch row's step result: the output and the new states.
type HostStepResult = (Vec<f64>, Vec<Vec<f64>>);

/// One batch row's step: `(x_t, states) -> (output, new states)`.
type HostStep<'a> = &'a dyn Fn(&[f64], &[Vec<f64>]) -> HostStepResult;

/// The host loop's results, flattened row-major like the K outputs.
struct HostRun {
    last: Vec<f64>,
    outputs: Vec<f64>,
    states: Vec<Vec<f64>>,
}

/// Keras's `rnn` on the host, one batch row at a time: `x` is `(batch, time, dim)`, each
/// initial state `(batch, width)`, `mask` `(batch, time)`. A masked step keeps the states and
/// outputs the previous output (zeros at first) with `unroll`, else `states[0]` (README 8(k)).
fn host_rnn(
    x: &[f64],
    [batch, time, dim]: [usize; 3],
    initial: &[Vec<f64>],
    mask: Option<&[f64]>,
    go_backwards: bool,
    unroll: bool,
    step: HostStep,
) -> HostRun {
    let mut run = HostRun { last: Vec::new(), outputs: Vec::new(), states: vec![Vec::new(); initial.len()] };
    for b in 0..batch {
        let mut states: Vec<Vec<f64>> = initial
            .iter()
            .map(|s| {
                let width = s.len() / batch;
                s[b * width..(b + 1) * width].to_vec()
            })
            .collect();
        let mut previous: Option<Vec<f64>> = None;
        let order: Vec<usize> = if go_backwards { (0..time).rev().collect() } else { (0..time).collect() };
        for t in order {
            let x_t = &x[(b * time + t) * dim..(b * time + t + 1) * dim];
            let (mut output, mut new_states) = step(x_t, &states);
            if mask.is_some_and(|m| m[b * time + t] == 0.0) {
                output = match (unroll, &previous) {
                    (true, Some(p)) => p.clone(),
                    (true, None) => vec![0.0; output.len()],
                    (false, _) => states[0].clone(),
                };
                new_states = states.clone();
            }
            run.outputs.extend_from_slice(&output);
            previous = Some(output);
            states = new_states;
        }
        run.last.extend(previous.unwrap());
        for (k, s) in states.iter().enumerate() {
            run.states[k].extend_from_slice(s);
        }
    }
    run
}

/// The section-4 rnn recipe on the host: `h = tanh(x_t·W + h·U)`.
fn host_simple(w: &[f64], u: &[f64]) -> impl Fn(&[f64], &[Vec<f64>]) -> HostStepResult {
    move |x_t, states| {
        let h: Vec<f64> = add(&vec_mat(x_t, w), &vec_mat(&states[0], u)).iter().map(|v| v.tanh()).collect();
        (h.clone(), vec![h])
    }
}

/// The section-4 lstm recipe on the host (gates i, f, g, o in that order).
fn host_lstm(w: &[f64], u: &[f64]) -> impl Fn(&[f64], &[Vec<f64>]) -> HostStepResult {
    move |x_t, states| {
        let (h, c) = (&states[0], &states[1]);
        let units = h.len();
        let z = add(&vec_mat(x_t, w), &vec_mat(h, u));
        let gate = |k: usize| &z[k * units..(k + 1) * units];
        let mut new_c = Vec::with_capacity(units);
        let mut new_h = Vec::with_capacity(units);
        for j in 0..units {
            let (i, f, g, o) = (sigmoid(gate(0)[j]), sigmoid(gate(1)[j]), gate(2)[j].tanh(), sigmoid(gate(3)[j]));
            new_c.push(f * c[j] + i * g);
            new_h.push(o * new_c[j].tanh());
        }
        (new_h.clone(), vec![new_h, new_c])
    }
}

// ----- the K side -----

/// The section-4 rnn recipe: `h = tanh(dot(x_t, W) + dot(states[0], U))`.
fn simple_step(
    w: &K::Tensor,
    u: &K::Tensor,
) -> impl Fn(&K::Tensor, &[K::Tensor]) -> Result<(K::Tensor, Vec<K::Tensor>)> + Send + Sync + 'static + use<> {
    let (w, u) = (w.clone(), u.clone());
    move |x_t, states| {
        let h = K::tanh(&(K::dot(x_t, &w)? + K::dot(&states[0], &u)?)?)?;
        Ok((h.clone(), vec![h]))
    }
}

/// The section-4 lstm recipe.
fn lstm_step(
    w: &K::Tensor,
    u: &K::Tensor,
) -> impl Fn(&K::Tensor, &[K::Tensor]) -> Result<(K::Tensor, Vec<K::Tensor>)> + Send + Sync + 'static + use<> {
    let (w, u) = (w.clone(), u.clone());
    move |x_t, states| {
        let (h, c) = (&states[0], &states[1]);
        let units = h.shape()[1].unwrap() as isize;
        let z = (K::dot(x_t, &w)? + K::dot(h, &u)?)?;
        let gate = |k: isize| K::slice(&z, &[(0, None), (k * units, Some((k + 1) * units))]);
        let (i, f, g, o) =
            (K::sigmoid(&gate(0)?)?, K::sigmoid(&gate(1)?)?, K::tanh(&gate(2)?)?, K::sigmoid(&gate(3)?)?);
        let c = ((&f * c)? + (&i * &g)?)?;
        let h = (&o * K::tanh(&c)?)?;
        Ok((h.clone(), vec![h, c]))
    }
}

fn run(inputs: &[K::Tensor], outputs: &[K::Tensor], feeds: &[Array]) -> Vec<Vec<f64>> {
    let out = K::function(inputs, outputs, &[]).unwrap().call(feeds).unwrap();
    out.iter().map(Array::to_f64_vec).collect()
}

fn assert_close(actual: &[f64], expected: &[f64], tol: f64, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: {actual:?} vs {expected:?}");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!((a - e).abs() <= tol * (1.0 + e.abs()), "{what}, element {i}: {a} vs {e}\n{actual:?}\n{expected:?}");
    }
}

/// Masks of README's rnn cases for batch 2, time 4: a kept tail, a kept head, a hole.
const MASKS: [(&str, [f64; 8]); 3] = [
    ("pre", [0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0]),
    ("post", [1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0]),
    ("mid", [1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0]),
];

const X_SHAPE: [usize; 3] = [2, 4, 3];
const UNITS: usize = 5;

#[test]
fn simple_rnn_matches_the_host_loop_for_every_flag_and_mask() {
    let (x_v, w_v, u_v) = (values(1, 24), values(2, 3 * UNITS), values(3, UNITS * UNITS));
    let host_step = host_simple(&w_v, &u_v);
    let masks: Vec<Option<&[f64]>> = std::iter::once(None).chain(MASKS.iter().map(|(_, m)| Some(&m[..]))).collect();
    for h0_v in [vec![0.0; 2 * UNITS], values(4, 2 * UNITS)] {
        for &mask_v in &masks {
            for go_backwards in [false, true] {
                for unroll in [false, true] {
                    let x = K::placeholder(X_SHAPE);
                    let h0 = K::placeholder([2, UNITS]);
                    let w = K::variable(array(DType::F32, &[3, UNITS], &w_v)).unwrap();
                    let u = K::variable(array(DType::F32, &[UNITS, UNITS], &u_v)).unwrap();
                    let mask = K::placeholder([2, 4]);
                    let (last, outputs, states) = K::rnn(
                        simple_step(&w, &u),
                        &x,
                        std::slice::from_ref(&h0),
                        go_backwards,
                        mask_v.map(|_| &mask),
                        &[],
                        unroll,
                        unroll.then_some(4),
                    )
                    .unwrap();
                    assert_eq!(outputs.shape(), [Some(2), Some(4), Some(UNITS)]);
                    let mut inputs = vec![x, h0];
                    let mut feeds = vec![array(DType::F32, &X_SHAPE, &x_v), array(DType::F32, &[2, UNITS], &h0_v)];
                    if let Some(m) = mask_v {
                        inputs.push(mask);
                        feeds.push(array(DType::F32, &[2, 4], m));
                    }
                    let out = run(&inputs, &[last, outputs, states[0].clone()], &feeds);
                    let expected =
                        host_rnn(&x_v, X_SHAPE, std::slice::from_ref(&h0_v), mask_v, go_backwards, unroll, &host_step);
                    let what = format!("mask {mask_v:?} backwards {go_backwards} unroll {unroll} h0 {:?}", &h0_v[..2]);
                    assert_close(&out[0], &expected.last, 1e-5, &what);
                    assert_close(&out[1], &expected.outputs, 1e-5, &what);
                    assert_close(&out[2], &expected.states[0], 1e-5, &what);
                }
            }
        }
    }
}

#[test]
fn masked_first_steps_repeat_h0_without_unroll_and_zeros_with_it() {
    // README 8(k): both rows masked at their first processed step, h0 non-zero.
    let x = K::placeholder([2, 3, 1]);
    let h0 = K::placeholder([2, 1]);
    let mask = K::placeholder([2, 3]);
    let w = K::variable(Array::from([[1.0f32]])).unwrap();
    let u = K::variable(Array::from([[0.5f32]])).unwrap();
    let feeds = [
        Array::from_vec(&[2, 3, 1], vec![1.0f32, 2.0, -1.0, 0.5, 0.0, 3.0]).unwrap(),
        Array::from([[0.25f32], [-0.5]]),
        Array::from([[0.0f32, 1.0, 1.0], [0.0, 0.0, 1.0]]),
    ];
    let outputs_for = |unroll: bool| {
        let (_, outputs, states) =
            K::rnn(simple_step(&w, &u), &x, std::slice::from_ref(&h0), false, Some(&mask), &[], unroll, None).unwrap();
        run(&[x.clone(), h0.clone(), mask.clone()], &[outputs, states[0].clone()], &feeds)
    };
    let (rolled, unrolled) = (outputs_for(false), outputs_for(true));
    let h = |x: f64, prev: f64| (x + 0.5 * prev).tanh();
    let row0 = [h(2.0, 0.25), h(-1.0, h(2.0, 0.25))];
    let row1 = h(3.0, -0.5);
    assert_close(&rolled[0], &[0.25, row0[0], row0[1], -0.5, -0.5, row1], 1e-6, "unroll=false");
    assert_close(&unrolled[0], &[0.0, row0[0], row0[1], 0.0, 0.0, row1], 1e-6, "unroll=true");
    // The states are the same either way.
    assert_close(&rolled[1], &[row0[1], row1], 1e-6, "state, unroll=false");
    assert_close(&unrolled[1], &[row0[1], row1], 1e-6, "state, unroll=true");
}

#[test]
fn lstm_matches_the_host_loop_with_masks_and_both_directions() {
    let units = 3;
    let (x_v, w_v, u_v) = (values(11, 24), values(12, 3 * 4 * units), values(13, units * 4 * units));
    let (h0_v, c0_v) = (values(14, 2 * units), values(15, 2 * units));
    let host_step = host_lstm(&w_v, &u_v);
    for mask_v in [None, Some(&MASKS[0].1[..]), Some(&MASKS[2].1[..])] {
        for go_backwards in [false, true] {
            for unroll in [false, true] {
                let x = K::placeholder(X_SHAPE);
                let (h0, c0) = (K::placeholder([2, units]), K::placeholder([2, units]));
                let w = K::variable(array(DType::F32, &[3, 4 * units], &w_v)).unwrap();
                let u = K::variable(array(DType::F32, &[units, 4 * units], &u_v)).unwrap();
                let mask = K::placeholder([2, 4]);
                let (last, outputs, states) = K::rnn(
                    lstm_step(&w, &u),
                    &x,
                    &[h0.clone(), c0.clone()],
                    go_backwards,
                    mask_v.map(|_| &mask),
                    &[],
                    unroll,
                    None,
                )
                .unwrap();
                assert_eq!(states.len(), 2);
                let mut inputs = vec![x, h0, c0];
                let mut feeds = vec![
                    array(DType::F32, &X_SHAPE, &x_v),
                    array(DType::F32, &[2, units], &h0_v),
                    array(DType::F32, &[2, units], &c0_v),
                ];
                if let Some(m) = mask_v {
                    inputs.push(mask);
                    feeds.push(array(DType::F32, &[2, 4], m));
                }
                let out = run(&inputs, &[last, outputs, states[0].clone(), states[1].clone()], &feeds);
                let expected =
                    host_rnn(&x_v, X_SHAPE, &[h0_v.clone(), c0_v.clone()], mask_v, go_backwards, unroll, &host_step);
                let what = format!("lstm mask {mask_v:?} backwards {go_backwards} unroll {unroll}");
                assert_close(&out[0], &expected.last, 1e-5, &what);
                assert_close(&out[1], &expected.outputs, 1e-5, &what);
                assert_close(&out[2], &expected.states[0], 1e-5, &what);
                assert_close(&out[3], &expected.states[1], 1e-5, &what);
            }
        }
    }
}

#[test]
fn constants_follow_the_states_and_several_states_are_carried() {
    // states = [h, total], constants = [bias, scale]: h = tanh(x·W + h·U + bias), total += h,
    // output = h · scale (a different shape role from the states).
    let (x_v, w_v, u_v) = (values(21, 24), values(22, 3 * UNITS), values(23, UNITS * UNITS));
    let (bias_v, h0_v) = (values(24, UNITS), values(25, 2 * UNITS));
    let x = K::placeholder(X_SHAPE);
    let h0 = K::placeholder([2, UNITS]);
    let total0 = K::placeholder([2, UNITS]);
    let bias = K::placeholder([UNITS]);
    let scale = K::placeholder(Vec::<usize>::new());
    let w = K::variable(array(DType::F32, &[3, UNITS], &w_v)).unwrap();
    let u = K::variable(array(DType::F32, &[UNITS, UNITS], &u_v)).unwrap();
    let step = {
        let (w, u) = (w.clone(), u.clone());
        move |x_t: &K::Tensor, args: &[K::Tensor]| -> Result<(K::Tensor, Vec<K::Tensor>)> {
            assert_eq!(args.len(), 4);
            let h = K::tanh(&((K::dot(x_t, &w)? + K::dot(&args[0], &u)?)? + &args[2])?)?;
            let total = (&args[1] + &h)?;
            Ok(((&h * &args[3])?, vec![h, total]))
        }
    };
    let mask_v = MASKS[2].1;
    let mask = K::placeholder([2, 4]);
    let (last, outputs, states) =
        K::rnn(step, &x, &[h0.clone(), total0.clone()], true, Some(&mask), &[bias.clone(), scale.clone()], true, None)
            .unwrap();
    let out = run(
        &[x, h0, total0, bias, scale, mask],
        &[last, outputs, states[0].clone(), states[1].clone()],
        &[
            array(DType::F32, &X_SHAPE, &x_v),
            array(DType::F32, &[2, UNITS], &h0_v),
            array(DType::F32, &[2, UNITS], &[1.0; 2 * UNITS]),
            array(DType::F32, &[UNITS], &bias_v),
            Array::scalar(-2.0f32),
            array(DType::F32, &[2, 4], &mask_v),
        ],
    );
    let host_step = |x_t: &[f64], s: &[Vec<f64>]| {
        let h: Vec<f64> =
            add(&add(&vec_mat(x_t, &w_v), &vec_mat(&s[0], &u_v)), &bias_v).iter().map(|v| v.tanh()).collect();
        (h.iter().map(|v| v * -2.0).collect(), vec![h.clone(), add(&s[1], &h)])
    };
    let expected =
        host_rnn(&x_v, X_SHAPE, &[h0_v.clone(), vec![1.0; 2 * UNITS]], Some(&mask_v), true, true, &host_step);
    assert_close(&out[0], &expected.last, 1e-5, "last");
    assert_close(&out[1], &expected.outputs, 1e-5, "outputs");
    assert_close(&out[2], &expected.states[0], 1e-5, "h");
    assert_close(&out[3], &expected.states[1], 1e-5, "total");
}

#[test]
fn an_unknown_time_length_is_unrolled_for_each_fed_length() {
    let (w_v, u_v) = (values(31, 3 * UNITS), values(32, UNITS * UNITS));
    let h0_v = values(33, 2 * UNITS);
    let host_step = host_simple(&w_v, &u_v);
    for unroll in [false, true] {
        let x = K::placeholder([Some(2), None, Some(3)]);
        let mask = K::placeholder([Some(2), None]);
        let h0 = K::placeholder([2, UNITS]);
        let w = K::variable(array(DType::F32, &[3, UNITS], &w_v)).unwrap();
        let u = K::variable(array(DType::F32, &[UNITS, UNITS], &u_v)).unwrap();
        let (last, outputs, states) =
            K::rnn(simple_step(&w, &u), &x, std::slice::from_ref(&h0), true, Some(&mask), &[], unroll, None).unwrap();
        assert_eq!(outputs.shape(), [Some(2), None, Some(UNITS)]);
        assert_eq!(last.shape(), [Some(2), Some(UNITS)]);
        assert_eq!(states[0].shape(), [Some(2), Some(UNITS)]);
        let f = K::function(&[x, h0, mask], &[last, outputs, states[0].clone()], &[]).unwrap();
        for (time, mask_v) in [(4, MASKS[0].1.to_vec()), (2, vec![0.0, 1.0, 1.0, 0.0]), (4, MASKS[1].1.to_vec())] {
            let x_v = values(34 + time as u64, 2 * time * 3);
            let out = f
                .call(&[
                    array(DType::F32, &[2, time, 3], &x_v),
                    array(DType::F32, &[2, UNITS], &h0_v),
                    array(DType::F32, &[2, time], &mask_v),
                ])
                .unwrap();
            assert_eq!(out[1].shape(), [2, time, UNITS]);
            let expected =
                host_rnn(&x_v, [2, time, 3], std::slice::from_ref(&h0_v), Some(&mask_v), true, unroll, &host_step);
            let what = format!("time {time} unroll {unroll}");
            assert_close(&out[0].to_f64_vec(), &expected.last, 1e-5, &what);
            assert_close(&out[1].to_f64_vec(), &expected.outputs, 1e-5, &what);
            assert_close(&out[2].to_f64_vec(), &expected.states[0], 1e-5, &what);
        }
    }
}

#[test]
fn an_unknown_batch_and_time_with_input_length() {
    let x = K::placeholder([None, None, Some(1)]);
    let h0 = K::placeholder([None, Some(1)]);
    let w = K::variable(Array::from([[1.0f32]])).unwrap();
    let u = K::variable(Array::from([[1.0f32]])).unwrap();
    // A linear step: h = x + h, so the outputs are running sums.
    let step = {
        let (w, u) = (w.clone(), u.clone());
        move |x_t: &K::Tensor, s: &[K::Tensor]| -> Result<(K::Tensor, Vec<K::Tensor>)> {
            let h = (K::dot(x_t, &w)? + K::dot(&s[0], &u)?)?;
            Ok((h.clone(), vec![h]))
        }
    };
    let (last, outputs, _) = K::rnn(step, &x, std::slice::from_ref(&h0), false, None, &[], true, Some(3)).unwrap();
    assert_eq!(outputs.shape(), [None, Some(3), Some(1)]);
    let f = K::function(&[x, h0], &[last, outputs], &[]).unwrap();
    let out =
        f.call(&[Array::from_vec(&[1, 3, 1], vec![1.0f32, 2.0, 3.0]).unwrap(), Array::from([[10.0f32]])]).unwrap();
    assert_eq!(out[0].to_vec::<f32>().unwrap(), [16.0]);
    assert_eq!(out[1].to_vec::<f32>().unwrap(), [11.0, 13.0, 16.0]);
    let err = f
        .call(&[Array::from_vec(&[1, 2, 1], vec![1.0f32, 2.0]).unwrap(), Array::from([[10.0f32]])])
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("rnn:") && err.contains("input_length 3"), "{err}");
}

// ----- gradients -----

/// `loss = Σ outputs·R + Σ last² + Σ state·S` of the rnn recipe in float64, and its gradients
/// with respect to x, W, U and h0 against central differences.
fn check_gradients(time_known: bool, masked: bool, go_backwards: bool, unroll: bool) {
    let shape = [2usize, 3, 3];
    let (x_v, w_v, u_v, h0_v) = (values(41, 18), values(42, 12), values(43, 16), values(44, 8));
    let (r_v, s_v) = (values(45, 24), values(46, 8));
    let mask_v = [0.0, 1.0, 1.0, 1.0, 0.0, 1.0];
    let x = K::placeholder_with(
        if time_known { [Some(2), Some(3), Some(3)] } else { [Some(2), None, Some(3)] },
        Some(DType::F64),
        None,
    );
    let h0 = K::placeholder_with([2, 4], Some(DType::F64), None);
    let mask = K::placeholder_with([Some(2), x.shape()[1]], Some(DType::F64), None);
    let w = K::variable_with(array(DType::F64, &[3, 4], &w_v), Some(DType::F64), None).unwrap();
    let u = K::variable_with(array(DType::F64, &[4, 4], &u_v), Some(DType::F64), None).unwrap();
    let r = K::constant(array(DType::F64, &[2, 3, 4], &r_v));
    let s = K::constant(array(DType::F64, &[2, 4], &s_v));
    let (last, outputs, states) = K::rnn(
        simple_step(&w, &u),
        &x,
        std::slice::from_ref(&h0),
        go_backwards,
        masked.then_some(&mask),
        &[],
        unroll,
        None,
    )
    .unwrap();
    let all = K::Axes::All;
    let loss = ((K::sum(&(&outputs * &r).unwrap(), all.clone(), false).unwrap()
        + K::sum(&K::square(&last).unwrap(), all.clone(), false).unwrap())
    .unwrap()
        + K::sum(&(&states[0] * &s).unwrap(), all, false).unwrap())
    .unwrap();
    let grads = K::gradients(&loss, &[x.clone(), w.clone(), u.clone(), h0.clone()]).unwrap();
    let mut outs = vec![loss];
    outs.extend(grads);
    let f = K::function(&[x, h0, mask], &outs, &[]).unwrap();
    let call = |x_v: &[f64], h0_v: &[f64]| -> Vec<Vec<f64>> {
        let feeds =
            [array(DType::F64, &shape, x_v), array(DType::F64, &[2, 4], h0_v), array(DType::F64, &[2, 3], &mask_v)];
        f.call(&feeds).unwrap().iter().map(Array::to_f64_vec).collect()
    };
    let analytic = call(&x_v, &h0_v);
    let what = format!("time known {time_known} masked {masked} backwards {go_backwards} unroll {unroll}");
    let h = 1e-6;
    // Each argument perturbed in turn; W and U through their variables.
    let numeric = |which: usize, base: &[f64]| -> Vec<f64> {
        (0..base.len())
            .map(|i| {
                let loss_at = |delta: f64| {
                    let mut v = base.to_vec();
                    v[i] += delta;
                    match which {
                        0 => call(&v, &h0_v)[0][0],
                        3 => call(&x_v, &v)[0][0],
                        _ => {
                            let (var, dims) = if which == 1 { (&w, [3, 4]) } else { (&u, [4, 4]) };
                            K::set_value(var, array(DType::F64, &dims, &v)).unwrap();
                            let value = call(&x_v, &h0_v)[0][0];
                            K::set_value(var, array(DType::F64, &dims, base)).unwrap();
                            value
                        }
                    }
                };
                (loss_at(h) - loss_at(-h)) / (2.0 * h)
            })
            .collect()
    };
    for (which, base, name) in [(0, &x_v, "x"), (1, &w_v, "W"), (2, &u_v, "U"), (3, &h0_v, "h0")] {
        let expected = numeric(which, base);
        assert!(expected.iter().any(|g| g.abs() > 1e-3), "{what}: d/d{name} is all but zero: {expected:?}");
        assert_close(&analytic[1 + which], &expected, 1e-6, &format!("{what}: d/d{name}"));
    }
}

#[test]
fn gradients_through_time_match_finite_differences_with_a_known_length() {
    check_gradients(true, false, false, true);
    check_gradients(true, true, true, false);
    check_gradients(true, true, false, true);
}

#[test]
fn gradients_through_time_match_finite_differences_with_an_unknown_length() {
    check_gradients(false, false, true, false);
    check_gradients(false, true, false, false);
    check_gradients(false, true, true, true);
}

// ----- errors -----

#[test]
fn bad_arguments_are_errors_naming_rnn() {
    let w = K::variable(Array::from([[1.0f32, 0.0], [0.0, 1.0]])).unwrap();
    let x = K::placeholder([2, 3, 2]);
    let h0 = K::placeholder([2, 2]);
    let states = std::slice::from_ref(&h0);
    let step = |w: &K::Tensor| simple_step(w, w);
    let message =
        |r: Result<(K::Tensor, K::Tensor, Vec<K::Tensor>)>| r.err().map(|e| e.to_string()).unwrap_or_default();
    let checks = [
        (message(K::rnn(step(&w), &K::placeholder([2, 2]), states, false, None, &[], false, None)), "3-D"),
        (message(K::rnn(step(&w), &x, states, false, Some(&K::placeholder([2, 4])), &[], false, None)), "mask"),
        (message(K::rnn(step(&w), &x, states, false, None, &[], true, Some(4))), "input_length 4"),
        (
            message(K::rnn(
                |x_t, _| Ok((x_t.clone(), Vec::new())),
                &x,
                &[],
                false,
                Some(&K::placeholder([2, 3])),
                &[],
                false,
                None,
            )),
            "initial states",
        ),
        (
            message(K::rnn(|x_t, _| Ok((x_t.clone(), Vec::new())), &x, states, false, None, &[], false, None)),
            "returned 0 states for 1",
        ),
        (
            message(K::rnn(
                |x_t, s| Ok((x_t.clone(), vec![K::sum(&s[0], K::Axes::All, false)?])),
                &x,
                states,
                false,
                None,
                &[],
                false,
                None,
            )),
            "new state 0",
        ),
        (message(K::rnn(step(&w), &K::placeholder([2, 0, 2]), states, false, None, &[], false, None)), "no time steps"),
    ];
    for (err, needle) in checks {
        assert!(err.starts_with("rnn:") && err.contains(needle), "expected {needle:?} in {err:?}");
    }
}
