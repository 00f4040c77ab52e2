//! Property tests (proptest) of the K API on every backend found (the built-in `cpu`, and the
//! `cpu` and `blas` plugin libraries when built): broadcasting, reductions over random axis
//! sets, reshape and permute round trips, and gradients of random compositions against finite
//! differences. Each property is checked against an independent reference written here
//! (index arithmetic on flat vectors), not against the library itself.

use std::sync::OnceLock;

use keras::{
    Array, Backend,
    backend::{self as K, DType, Tensor},
};
use proptest::prelude::*;

/// Every backend found: the built-in one, then the workspace plugins that are built.
fn backends() -> &'static [Backend] {
    static BACKENDS: OnceLock<Vec<Backend>> = OnceLock::new();
    BACKENDS.get_or_init(keras_tests::backends_found)
}

/// Runs `outputs` of `inputs` fed `feeds` on `backend`.
fn run(backend: &Backend, inputs: &[Tensor], outputs: &[Tensor], feeds: &[Array]) -> Vec<Array> {
    K::with_backend(backend, || K::function(inputs, outputs, &[])?.call(feeds))
        .unwrap_or_else(|e| panic!("{}: {e}", backend.name()))
}

/// A K reduction: tensor, axes, keepdims.
type Reduction = fn(&Tensor, K::Axes, bool) -> keras::Result<Tensor>;

fn config() -> ProptestConfig {
    // Fast enough for every `cargo test` in a debug build; failures are reported with the
    // shrunk case, which a regression test then pins down.
    ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() }
}

fn len(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Row-major strides of `shape`.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

/// The multi-index of flat position `flat` in `shape`.
fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for (i, stride) in strides(shape).into_iter().enumerate() {
        index[i] = flat / stride;
        flat %= stride;
    }
    index
}

/// A dim of 1 to 3, sometimes 0.
fn dim() -> impl Strategy<Value = usize> {
    prop_oneof![1 => Just(0usize), 8 => 1usize..4]
}

/// `n` small integers in `-bound..=bound` as floats: sums stay exact, and so do products for
/// `bound` 2 (powers of two, at most 2^81 in 81 elements, within float32's range).
fn values(n: usize, bound: i8) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec((-bound..=bound).prop_map(f32::from), n)
}

/// `(2, 3)`, `(2,)`, `()`: a shape as error messages write it.
fn shape_string(shape: &[usize]) -> String {
    match shape {
        [d] => format!("({d},)"),
        _ => format!("({})", shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
    }
}

/// An output shape and two operand shapes that broadcast to it: each operand keeps a suffix
/// of the axes, with some dims replaced by 1.
fn broadcast_case() -> impl Strategy<Value = (Vec<usize>, Vec<usize>, Vec<usize>)> {
    prop::collection::vec(dim(), 0..4).prop_flat_map(|out| {
        let rank = out.len();
        let operand = move |out: Vec<usize>| {
            (0..=rank, prop::collection::vec(any::<bool>(), rank)).prop_map(move |(keep, ones)| {
                (rank - keep..rank).map(|i| if ones[i] { 1 } else { out[i] }).collect::<Vec<usize>>()
            })
        };
        (Just(out.clone()), operand(out.clone()), operand(out))
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn broadcasting_follows_numpy(
        (_, a_shape, b_shape) in broadcast_case(),
        seed in values(64, 4),
    ) {
        // NumPy's result shape: aligned on the right, each dim the one that is not 1.
        let rank = a_shape.len().max(b_shape.len());
        let aligned = |s: &[usize], i: usize| if i + s.len() >= rank { s[i + s.len() - rank] } else { 1 };
        let out: Vec<usize> = (0..rank).map(|i| if aligned(&a_shape, i) == 1 { aligned(&b_shape, i) } else { aligned(&a_shape, i) }).collect();
        let a_values: Vec<f32> = (0..len(&a_shape)).map(|i| seed[i % 64]).collect();
        let b_values: Vec<f32> = (0..len(&b_shape)).map(|i| seed[(i * 7 + 3) % 64]).collect();
        // The reference: each output index reads each operand at the index aligned on the
        // right, 0 where the operand's dim is 1.
        let at = |shape: &[usize], values: &[f32], index: &[usize]| {
            let offset = index.len() - shape.len();
            let flat: usize = shape.iter().zip(strides(shape)).enumerate()
                .map(|(i, (&d, s))| if d == 1 { 0 } else { index[offset + i] * s }).sum();
            values[flat]
        };
        let pairs: Vec<(f32, f32)> = (0..len(&out))
            .map(|k| { let index = unravel(k, &out); (at(&a_shape, &a_values, &index), at(&b_shape, &b_values, &index)) })
            .collect();
        let (a, b) = (K::placeholder(a_shape.as_slice()), K::placeholder(b_shape.as_slice()));
        let outputs = [(&a + &b).unwrap(), (&a * &b).unwrap(), K::maximum(&a, &b).unwrap(), K::cast(&K::greater(&a, &b).unwrap(), DType::F32).unwrap()];
        let feeds = [Array::from_vec(&a_shape, a_values.clone()).unwrap(), Array::from_vec(&b_shape, b_values.clone()).unwrap()];
        for backend in backends() {
            let got = run(backend, &[a.clone(), b.clone()], &outputs, &feeds);
            let ops: [fn(f32, f32) -> f32; 4] = [|p, q| p + q, |p, q| p * q, f32::max, |p, q| f32::from(p > q)];
            for (k, op) in ops.iter().enumerate() {
                prop_assert_eq!(got[k].shape(), out.as_slice());
                let expected: Vec<f32> = pairs.iter().map(|&(p, q)| op(p, q)).collect();
                prop_assert_eq!(got[k].to_vec::<f32>().unwrap(), expected, "{} output {}", backend.name(), k);
            }
        }
    }

    #[test]
    fn shapes_that_do_not_broadcast_are_refused_naming_both(
        shape in prop::collection::vec(2usize..5, 1..4),
        axis in any::<prop::sample::Index>(),
    ) {
        let mut other = shape.clone();
        let axis = axis.index(shape.len());
        other[axis] += 1;
        let (a, b) = (K::placeholder(shape.as_slice()), K::placeholder(other.as_slice()));
        let message = (&a + &b).unwrap_err().to_string();
        prop_assert!(message.contains(&shape_string(&shape)) && message.contains(&shape_string(&other)), "{}", message);
        prop_assert!(message.starts_with("operator +: "), "{}", message);
    }

    #[test]
    fn reductions_over_random_axis_sets(
        (shape, x) in prop::collection::vec(dim(), 1..5).prop_flat_map(|s| { let n = len(&s); (Just(s), values(n, 2)) }),
        chosen in prop::collection::vec(any::<bool>(), 4),
        negative in prop::collection::vec(any::<bool>(), 4),
        keepdims in any::<bool>(),
    ) {
        let rank = shape.len();
        let axes: Vec<usize> = (0..rank).filter(|&i| chosen[i]).collect();
        // Each axis named either way: i or i - rank.
        let named: Vec<isize> = axes.iter().map(|&i| if negative[i] { i as isize - rank as isize } else { i as isize }).collect();
        let kept: Vec<usize> = (0..rank).filter(|i| !axes.contains(i)).collect();
        let out_shape: Vec<usize> = kept.iter().map(|&i| shape[i]).collect();
        // The reference: fold every input element into the output cell of its kept indices.
        let fold = |init: f64, op: fn(f64, f64) -> f64| {
            let mut out = vec![init; len(&out_shape)];
            let out_strides = strides(&out_shape);
            for (k, &v) in x.iter().enumerate() {
                let index = unravel(k, &shape);
                let cell: usize = kept.iter().zip(&out_strides).map(|(&i, s)| index[i] * s).sum();
                out[cell] = op(out[cell], f64::from(v));
            }
            out
        };
        let count: usize = axes.iter().map(|&i| shape[i]).product();
        let sums = fold(0.0, |a, b| a + b);
        let expected = [
            sums.clone(),
            fold(1.0, |a, b| a * b),
            fold(f64::NEG_INFINITY, f64::max),
            fold(f64::INFINITY, f64::min),
            sums.iter().map(|s| s / count as f64).collect(),
        ];
        let t = K::placeholder(shape.as_slice());
        let reduce: [Reduction; 5] =
            [|t, a, k| K::sum(t, a, k), |t, a, k| K::prod(t, a, k), |t, a, k| K::max(t, a, k), |t, a, k| K::min(t, a, k), |t, a, k| K::mean(t, a, k)];
        let outputs: Vec<Tensor> = reduce.iter().map(|f| f(&t, K::Axes::Some(named.clone()), keepdims).unwrap()).collect();
        let expected_shape: Vec<usize> = if keepdims {
            (0..rank).map(|i| if axes.contains(&i) { 1 } else { shape[i] }).collect()
        } else {
            out_shape.clone()
        };
        for backend in backends() {
            let got = run(backend, std::slice::from_ref(&t), &outputs, &[Array::from_vec(&shape, x.clone()).unwrap()]);
            for (k, expected) in expected.iter().enumerate() {
                prop_assert_eq!(got[k].shape(), expected_shape.as_slice(), "{} reduction {} over {:?}", backend.name(), k, named);
                for (g, e) in got[k].to_f64_vec().into_iter().zip(expected) {
                    let close = (g.is_nan() && e.is_nan()) || g == *e || (g - e).abs() <= 1e-6 * e.abs().max(1.0);
                    prop_assert!(close, "{} reduction {} over {:?} of {:?}: {} vs {}", backend.name(), k, named, shape, g, e);
                }
            }
        }
    }

    #[test]
    fn reshape_and_permute_round_trips(
        (shape, x) in prop::collection::vec(dim(), 1..5).prop_flat_map(|s| { let n = len(&s); (Just(s), values(n, 4)) }),
        order in Just(vec![0usize, 1, 2, 3]).prop_shuffle(),
        split in 0usize..4,
    ) {
        let rank = shape.len();
        let perm: Vec<usize> = order.into_iter().filter(|&p| p < rank).collect();
        let mut inverse = vec![0; rank];
        for (i, &p) in perm.iter().enumerate() {
            inverse[p] = i;
        }
        let permuted_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
        // The reference permutation: output index j reads input index with j[i] at axis perm[i].
        let expected_permuted: Vec<f32> = (0..len(&shape)).map(|k| {
            let out_index = unravel(k, &permuted_shape);
            let mut index = vec![0; rank];
            for (i, &p) in perm.iter().enumerate() {
                index[p] = out_index[i];
            }
            x[index.iter().zip(strides(&shape)).map(|(i, s)| i * s).sum::<usize>()]
        }).collect();
        // A reshape to a two-axis view split after `split` axes, with -1 for one side when
        // that is unambiguous.
        let cut = split.min(rank);
        let (front, back) = (len(&shape[..cut]), len(&shape[cut..]));
        let view: Vec<isize> = if back > 0 { vec![-1, back as isize] } else { vec![front as isize, 0] };

        let t = K::placeholder(shape.as_slice());
        let dims: Vec<isize> = shape.iter().map(|&d| d as isize).collect();
        let permuted = K::permute_dimensions(&t, &perm).unwrap();
        let outputs = [
            permuted.clone(),
            K::permute_dimensions(&permuted, &inverse).unwrap(),
            K::reshape(&K::reshape(&t, &view).unwrap(), &dims).unwrap(),
            K::reshape(&K::flatten(&permuted).unwrap(), &permuted_shape.iter().map(|&d| d as isize).collect::<Vec<_>>()).unwrap(),
            K::transpose(&K::transpose(&t).unwrap()).unwrap(),
        ];
        for backend in backends() {
            let got = run(backend, std::slice::from_ref(&t), &outputs, &[Array::from_vec(&shape, x.clone()).unwrap()]);
            prop_assert_eq!(got[0].shape(), permuted_shape.as_slice());
            prop_assert_eq!(got[0].to_vec::<f32>().unwrap(), expected_permuted.clone(), "{} {:?}", backend.name(), perm);
            for k in [1, 2, 4] {
                prop_assert_eq!(got[k].shape(), shape.as_slice(), "{} round trip {}", backend.name(), k);
                prop_assert_eq!(got[k].to_vec::<f32>().unwrap(), x.clone(), "{} round trip {}", backend.name(), k);
            }
            prop_assert_eq!(got[3].shape(), permuted_shape.as_slice());
            prop_assert_eq!(got[3].to_vec::<f32>().unwrap(), expected_permuted.clone());
        }
    }

    #[test]
    fn gradients_of_random_compositions_match_finite_differences(
        shape in prop::collection::vec(1usize..4, 1..4),
        steps in prop::collection::vec((0u8..12, any::<prop::sample::Index>()), 1..5),
        seed in prop::collection::vec(-2.0f64..2.0, 64),
        unknown in prop::collection::vec(any::<bool>(), 3),
    ) {
        let n = len(&shape);
        // Some dims unknown until fed: products and their derivatives are then built late.
        let spec: Vec<Option<usize>> = shape.iter().zip(&unknown).map(|(&d, &u)| (!u).then_some(d)).collect();
        let x = K::placeholder_with(spec.clone(), Some(DType::F64), None);
        let y = K::placeholder_with(spec, Some(DType::F64), None);
        let last = *shape.last().unwrap();
        let w = K::constant(Array::from_vec(&[last, last], (0..last * last).map(|i| 0.5 * (i as f64 * 0.9).cos()).collect()).unwrap());
        // Smooth pieces only (no max, relu or abs), so that finite differences are meaningful.
        let mut t = x.clone();
        for &(op, axis) in &steps {
            let axis = axis.index(shape.len()) as isize;
            t = match op {
                0 => K::tanh(&t),
                1 => K::sigmoid(&t),
                2 => K::sin(&t),
                3 => K::softplus(&t),
                4 => K::square(&t),
                5 => &t * &y,
                6 => (&t - &y).and_then(|d| d * 0.5),
                7 => K::square(&y).and_then(|s| s + 1.0).and_then(|d| &t / &d),
                8 => K::softmax(&t),
                9 => K::mean(&t, axis, true).and_then(|m| &m * &y),
                10 => K::dot(&t, &w),
                _ => K::sum(&t, axis, true).and_then(|s| K::exp(&(K::tanh(&s)? * 0.5)?)).and_then(|e| &e + &t),
            }.unwrap();
        }
        let loss = K::sum(&(&t * &K::sin(&y).unwrap()).unwrap(), K::Axes::All, false).unwrap();
        let grads = K::gradients(&loss, &[x.clone(), y.clone()]).unwrap();
        let xv: Vec<f64> = seed[..n].to_vec();
        let yv: Vec<f64> = seed[32..32 + n].to_vec();
        let feed = |v: &[f64]| Array::from_vec(&shape, v.to_vec()).unwrap();
        for backend in backends() {
            let inputs = [x.clone(), y.clone()];
            let analytic = run(backend, &inputs, &grads, &[feed(&xv), feed(&yv)]);
            let f = K::with_backend(backend, || K::function(&inputs, std::slice::from_ref(&loss), &[])).unwrap();
            let value = |a: &[f64], b: &[f64]| f.call(&[feed(a), feed(b)]).unwrap()[0].to_vec::<f64>().unwrap()[0];
            for (which, grad) in analytic.iter().enumerate() {
                let grad = grad.to_vec::<f64>().unwrap();
                for i in 0..n {
                    let point = if which == 0 { &xv } else { &yv };
                    let h = 1e-6 * point[i].abs().max(1.0);
                    let (mut up, mut down) = (point.clone(), point.clone());
                    up[i] += h;
                    down[i] -= h;
                    let numeric = if which == 0 {
                        (value(&up, &yv) - value(&down, &yv)) / (2.0 * h)
                    } else {
                        (value(&xv, &up) - value(&xv, &down)) / (2.0 * h)
                    };
                    let close = (grad[i] - numeric).abs() <= 1e-5 * numeric.abs().max(grad[i].abs()).max(1.0);
                    prop_assert!(close, "{}: d loss / d {}[{}] = {} analytic, {} numeric; steps {:?}", backend.name(), ["x", "y"][which], i, grad[i], numeric, steps);
                }
            }
        }
    }
}

#[test]
fn a_tensor_used_twice_by_a_product_built_late_gets_its_gradient_once() {
    // Regression (found by the `graph` fuzzer): with unknown dims, `dot` and `batch_dot` are
    // built when fed, and the derivative of such a node differentiated with respect to its
    // inputs as tensors, not as positions: a tensor passed twice got its whole gradient at
    // both, and an input computed from the other got the other's path again, so
    // `d sum(x·x)` and `d sum(|x|·x)` came out wrong.
    let value: Vec<f64> = vec![1.0, 2.0, 3.0, 4.0];
    for backend in backends() {
        let mut gradients = Vec::new();
        for spec in [vec![Some(1), Some(2), Some(2)], vec![None, None, None]] {
            let x = K::placeholder_with(spec, Some(DType::F64), None);
            // And an input computed from the other: d sum(|x|·x) = sign(x)·x·1 + 1·|x| terms.
            let products = [
                K::dot(&x, &x).unwrap(),
                K::batch_dot(&x, &x, None).unwrap(),
                K::batch_dot(&K::abs(&x).unwrap(), &x, None).unwrap(),
            ];
            let grads: Vec<Tensor> = products
                .iter()
                .map(|p| {
                    K::gradients(&K::sum(p, K::Axes::All, false).unwrap(), std::slice::from_ref(&x)).unwrap().remove(0)
                })
                .collect();
            let out =
                run(backend, std::slice::from_ref(&x), &grads, &[Array::from_vec(&[1, 2, 2], value.clone()).unwrap()]);
            gradients.push(out.iter().map(|a| a.to_vec::<f64>().unwrap()).collect::<Vec<_>>());
        }
        // By hand: d sum(A·A) / dA = 1·Aᵀ + Aᵀ·1 = [[3, 7], [3, 7]] + [[4, 4], [6, 6]], and
        // A is positive, so |A| = A.
        let expected = vec![7.0, 11.0, 9.0, 13.0];
        let all = [expected.clone(), expected.clone(), expected];
        assert_eq!(gradients[0], all, "{}: known shapes", backend.name());
        assert_eq!(gradients[1], all, "{}: unknown shapes", backend.name());
    }
}
