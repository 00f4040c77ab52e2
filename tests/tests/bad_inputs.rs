//! The bad-input table of `docs/bad-inputs.md`, one test per row, named after the row: what a
//! user gets for each kind of bad input. Every call runs under `catch_unwind`, so a panic that
//! escapes the library fails the test as loudly as a wrong message.

use std::{
    fs,
    panic::{AssertUnwindSafe, catch_unwind},
    path::Path,
};

use keras::{
    Array, Backend, Config, Error, LoadFailure,
    backend::{self as K, BorderMode, DType, ImageDimOrdering, PoolMode, Tensor},
    config::config_path,
    registry,
};
use keras_tests::{assert_one_line, plugin};

/// Runs `body`, which must neither panic nor succeed: its error is one line and contains every
/// one of `parts` (the function, the argument, the shapes).
fn refused<T>(what: &str, parts: &[&str], body: impl FnOnce() -> keras::Result<T>) -> Error {
    let error = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(_)) => panic!("{what}: accepted, expected an error containing {parts:?}"),
        Ok(Err(error)) => error,
        Err(_) => panic!("{what}: a panic escaped the library"),
    };
    let message = error.to_string();
    assert_one_line(&message);
    for part in parts {
        assert!(message.contains(part), "{what}: {message:?} should contain {part:?}");
    }
    error
}

/// Runs `body`, which must neither panic nor fail.
fn accepted<T>(what: &str, body: impl FnOnce() -> keras::Result<T>) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => value,
        Ok(Err(error)) => panic!("{what}: refused: {error}"),
        Err(_) => panic!("{what}: a panic escaped the library"),
    }
}

/// The message of a refusal, which must be exactly `expected`.
fn refused_exactly<T>(expected: &str, body: impl FnOnce() -> keras::Result<T>) {
    let message = refused(expected, &[], body).to_string();
    assert_eq!(message, expected);
}

fn ph(shape: &[usize]) -> Tensor {
    K::placeholder(shape)
}

fn f32s(array: &Array) -> Vec<f32> {
    array.to_vec::<f32>().unwrap()
}

/// Compiles `outputs` of `inputs` and calls it with `feeds`, all under one `Result`.
fn run(inputs: &[Tensor], outputs: &[Tensor], feeds: &[Array]) -> keras::Result<Vec<Array>> {
    K::function(inputs, outputs, &[])?.call(feeds)
}

// ----- shape mismatches, one row per family -----

#[test]
fn dot_with_inner_dimensions_that_differ() {
    refused_exactly("dot: shapes (2, 3) and (4, 5) are not aligned: axis 1 of x has size 3, axis 0 of y 4", || {
        K::dot(&ph(&[2, 3]), &ph(&[4, 5]))
    });
    refused_exactly("dot: shapes (2, 3) and (4, 5, 6) are not aligned: axis 1 of x has size 3, axis 1 of y 5", || {
        K::dot(&ph(&[2, 3]), &ph(&[4, 5, 6]))
    });
}

#[test]
fn batch_dot_with_contracted_or_batch_sizes_that_differ() {
    refused_exactly(
        "batch_dot: shapes (2, 3, 4) and (2, 5, 6) are not aligned: axis 2 of x has size 4, axis 1 of y 5",
        || K::batch_dot(&ph(&[2, 3, 4]), &ph(&[2, 5, 6]), None),
    );
    refused_exactly(
        "batch_dot: shapes (2, 3, 4) and (3, 4, 4) differ in batch size: axis 0 of x has size 2, axis 0 of y 3",
        || K::batch_dot(&ph(&[2, 3, 4]), &ph(&[3, 4, 4]), None),
    );
    refused_exactly("batch_dot: shapes (2, 3) and (2, 3) do not have axes (2, 1)", || {
        K::batch_dot(&ph(&[2, 3]), &ph(&[2, 3]), Some((2, 1)))
    });
}

#[test]
fn conv_kernel_whose_input_channels_differ_from_the_input() {
    let tf = Some(ImageDimOrdering::Tf);
    refused_exactly(
        "conv2d: conv: the kernel's input channels differ from the input's: 4 vs 3 (shapes (1, 5, 5, 3) and (3, 3, 4, 8))",
        || K::conv2d(&ph(&[1, 5, 5, 3]), &ph(&[3, 3, 4, 8]), (1, 1), BorderMode::Valid, tf, (1, 1)),
    );
    let th = Some(ImageDimOrdering::Th);
    refused("conv2d th", &["conv2d", "input channels", "4 vs 3", "(1, 3, 5, 5)", "(8, 4, 3, 3)"], || {
        K::conv2d(&ph(&[1, 3, 5, 5]), &ph(&[8, 4, 3, 3]), (1, 1), BorderMode::Same, th, (1, 1))
    });
    refused("conv1d", &["conv1d", "`kernel` must be 3-D", "(3, 2)"], || {
        K::conv1d(&ph(&[1, 5, 2]), &ph(&[3, 2]), 1, BorderMode::Valid)
    });
}

#[test]
fn concatenate_with_sizes_that_differ_off_the_axis() {
    refused_exactly("concatenate: shapes (2, 3) and (4, 5) differ off axis 0", || {
        K::concatenate(&[ph(&[2, 3]), ph(&[4, 5])], 0)
    });
    refused("rank", &["concatenate", "differ in rank or dtype", "(2, 3) and (2, 3, 1)"], || {
        K::concatenate(&[ph(&[2, 3]), ph(&[2, 3, 1])], 0)
    });
    refused_exactly("concatenate: needs at least one tensor", || K::concatenate(&[], 0));
}

#[test]
fn reshape_to_another_element_count() {
    refused_exactly("reshape: cannot reshape (2, 3) (6 elements) to [4, 2]", || K::reshape(&ph(&[2, 3]), &[4, 2]));
    refused_exactly("reshape: target shape [-1, -1] may hold at most one -1 and no other negative size", || {
        K::reshape(&ph(&[2, 3]), &[-1, -1])
    });
}

#[test]
fn shapes_that_do_not_broadcast() {
    refused_exactly("operator +: shapes (2, 3) and (4, 5) do not broadcast", || &ph(&[2, 3]) + &ph(&[4, 5]));
    refused_exactly("maximum: binary: shapes (2, 3) and (2,) do not broadcast", || K::maximum(&ph(&[2, 3]), &ph(&[2])));
    refused("switch", &["switch", "(3,) and (2,)", "do not broadcast"], || K::switch(&ph(&[3]), &ph(&[2]), &ph(&[2])));
}

#[test]
fn fed_sizes_that_do_not_fit_an_unknown_dimension() {
    // Unknown sizes are checked when the function is called with real arrays.
    let x = K::placeholder([None, None]);
    let w = K::constant(Array::from([[1.0f32, 2.0], [3.0, 4.0], [5.0, 6.0]]));
    let y = K::dot(&x, &w).unwrap();
    refused("dot", &["matmul", "inner dimensions differ (4 vs 3)", "(1, 4) and (3, 2)"], || {
        run(std::slice::from_ref(&x), std::slice::from_ref(&y), &[Array::from([[1.0f32, 2.0, 3.0, 4.0]])])
    });
    let c = K::placeholder([None, Some(3)]);
    let sum = (&x + &c).unwrap();
    refused("add", &["binary", "(1, 2) and (1, 3) do not broadcast"], || {
        run(&[x.clone(), c.clone()], &[sum], &[Array::from([[1.0f32, 2.0]]), Array::from([[1.0f32, 2.0, 3.0]])])
    });
    // Batch sizes that differ are refused, never broadcast silently.
    let (a, b) = (K::placeholder([None, Some(3), Some(4)]), K::placeholder([None, Some(4), Some(5)]));
    let product = K::batch_dot(&a, &b, None).unwrap();
    let feeds = [
        Array::from_vec(&[1, 3, 4], vec![1.0f32; 12]).unwrap(),
        Array::from_vec(&[2, 4, 5], vec![1.0f32; 40]).unwrap(),
    ];
    refused_exactly(
        "batch_dot: shapes (1, 3, 4) and (2, 4, 5) differ in batch size: axis 0 of x has size 1, axis 0 of y 2",
        || run(&[a.clone(), b.clone()], &[product], &feeds),
    );
    // An empty axis contracted with a full one (found by the `graph` fuzzer): the reshapes
    // inside could not tell, and an empty result came back instead of an error.
    let e = K::placeholder([None, None, None]);
    let square = K::batch_dot(&e, &e, None).unwrap();
    refused_exactly(
        "batch_dot: shapes (4, 2, 0) and (4, 2, 0) are not aligned: axis 2 of x has size 0, axis 1 of y 2",
        || run(std::slice::from_ref(&e), &[square], &[Array::from_vec::<f32>(&[4, 2, 0], vec![]).unwrap()]),
    );
    // The function still works with sizes that fit.
    let out = accepted("fits", || run(std::slice::from_ref(&x), &[y], &[Array::from([[1.0f32, 0.0, 1.0]])]));
    assert_eq!(f32s(&out[0]), [6.0, 8.0]);
}

// ----- bad axes -----

#[test]
fn axes_out_of_range_or_repeated() {
    let x = ph(&[2, 3]);
    refused_exactly("sum: axis 5 is out of range for rank 2 (input (2, 3))", || K::sum(&x, 5, false));
    refused_exactly("mean: axis -3 is out of range for rank 2 (input (2, 3))", || K::mean(&x, -3, false));
    refused_exactly("max: axis Some([0, -2]) lists an axis twice (input (2, 3))", || K::max(&x, [0, -2], false));
    refused_exactly("argmax: axis 2 is out of range for rank 2 (input (2, 3))", || K::argmax(&x, 2));
    refused_exactly("concatenate: axis 2 is out of range for rank 2 (input (2, 3))", || {
        K::concatenate(&[x.clone(), x.clone()], 2)
    });
    refused_exactly("expand_dims: dim 5: axis 5 is out of range for rank 3 (input (2, 3))", || K::expand_dims(&x, 5));
    refused_exactly("squeeze: axis 0 of (2, 3) has size 2, not 1", || K::squeeze(&x, 0));
    refused_exactly("permute_dimensions: pattern [0, 0] is not a permutation: axis 0 is repeated in [0, 0]", || {
        K::permute_dimensions(&x, &[0, 0])
    });
    refused_exactly("permute_dimensions: the pattern has 3 entries for an input of rank 2", || {
        K::permute_dimensions(&x, &[0, 1, 2])
    });
    refused_exactly("reverse: axis 3 is out of range for rank 2 (input (2, 3))", || K::reverse(&x, 3));
    refused("softmax 0-d", &["softmax", "()"], || K::softmax(&ph(&[])));
    refused("repeat_elements", &["repeat_elements", "axis -3", "(2, 3)"], || K::repeat_elements(&x, 2, -3));
    refused("tile", &["tile", "n [2]", "(2, 3)"], || K::tile(&x, &[2]));
}

// ----- wrong dtypes -----

#[test]
fn an_integer_tensor_into_exp() {
    let i = K::placeholder_with([3], Some(DType::I32), Some("i"));
    refused_exactly("exp: unary: Exp is not defined for int32 (input `i` (3,))", || K::exp(&i));
    refused_exactly("log: unary: Log is not defined for int32 (input `i` (3,))", || K::log(&i));
    refused("softmax", &["softmax", "float", "int32"], || {
        K::softmax(&K::placeholder_with([2, 3], Some(DType::I32), None))
    });
}

#[test]
fn float_indices_into_gather() {
    let reference = ph(&[4, 2]);
    let indices = K::placeholder_with([2], Some(DType::F32), Some("idx"));
    refused_exactly("gather: indices `idx` (2,) must be int32 or int64, got float32", || {
        K::gather(&reference, &indices)
    });
    refused_exactly("one_hot: indices `idx` (2,) must be int32 or int64, got float32", || K::one_hot(&indices, 3));
}

#[test]
fn operands_of_two_dtypes() {
    let (a, b) = (ph(&[2]), K::placeholder_with([2], Some(DType::F64), Some("b")));
    refused_exactly("operator +: Add needs one dtype, got (2,) float32 and `b` (2,) float64", || &a + &b);
    refused_exactly("dot: shapes (2, 3) and (3, 2) need two float tensors of one dtype, got float32 and int32", || {
        K::dot(&ph(&[2, 3]), &K::placeholder_with([3, 2], Some(DType::I32), None))
    });
}

// ----- feeding a function -----

#[test]
fn a_placeholder_fed_the_wrong_rank() {
    let x = K::placeholder_with([None, Some(3)], None, Some("x"));
    let f = K::function(std::slice::from_ref(&x), &[K::sum(&x, K::Axes::All, false).unwrap()], &[]).unwrap();
    refused_exactly("function: input 0 (`x` (None, 3)) was fed an array of shape (3,)", || {
        f.call(&[Array::from([1.0f32, 2.0, 3.0])])
    });
    refused_exactly("function: input 0 (`x` (None, 3)) was fed an array of shape (1, 1, 3)", || {
        f.call(&[Array::from_vec(&[1, 1, 3], vec![1.0f32; 3]).unwrap()])
    });
}

#[test]
fn a_placeholder_fed_a_size_that_contradicts_a_known_dimension() {
    let x = K::placeholder_with([None, Some(3)], None, Some("x"));
    let f = K::function(std::slice::from_ref(&x), &[K::sum(&x, K::Axes::All, false).unwrap()], &[]).unwrap();
    refused_exactly("function: input 0 (`x` (None, 3)) was fed an array of shape (1, 2)", || {
        f.call(&[Array::from([[1.0f32, 2.0]])])
    });
}

#[test]
fn a_placeholder_fed_another_dtype_is_converted_as_keras_does() {
    // Keras converts the NumPy array with `astype`: float to integer truncates toward zero,
    // anything to bool is `!= 0`, float64 to float32 rounds.
    let f = K::placeholder([3]);
    let i = K::placeholder_with([3], Some(DType::I32), None);
    let b = K::placeholder_with([3], Some(DType::Bool), None);
    let outputs = [(&f * 1.0).unwrap(), (&i * 1).unwrap(), K::cast(&b, DType::F32).unwrap()];
    let function = K::function(&[f, i, b], &outputs, &[]).unwrap();
    let out = accepted("converted", || {
        function.call(&[
            Array::from([0.1f64, 1e300, -2.5]),
            Array::from([2.7f32, -2.7, 0.5]),
            Array::from([0.0f64, 3.0, -0.5]),
        ])
    });
    assert_eq!(f32s(&out[0]), [0.1f32, f32::INFINITY, -2.5]);
    assert_eq!(out[1].to_vec::<i32>().unwrap(), [2, -2, 0]);
    assert_eq!(f32s(&out[2]), [0.0, 1.0, 1.0]);
}

#[test]
fn a_wrong_number_of_feeds() {
    let x = ph(&[2]);
    let f = K::function(std::slice::from_ref(&x), std::slice::from_ref(&x), &[]).unwrap();
    refused_exactly("function: expects 1 input arrays, 0 given", || f.call(&[]));
    refused_exactly("function: expects 1 input arrays, 2 given", || {
        f.call(&[Array::from([1.0f32, 2.0]), Array::from([1.0f32, 2.0])])
    });
}

#[test]
fn a_missing_feed() {
    let x = ph(&[3]);
    let q = K::placeholder_with([3], None, Some("q"));
    refused_exactly("function: the outputs depend on placeholder `q` (3,), which is not among the inputs", || {
        K::function(std::slice::from_ref(&x), &[(&x + &q).unwrap()], &[])
    });
    refused_exactly("function: the outputs depend on placeholder `q` (3,), which is not among the inputs", || {
        K::eval(&(&q * 2.0).unwrap())
    });
}

#[test]
fn feeding_a_tensor_that_is_not_a_placeholder() {
    let x = ph(&[3]);
    refused_exactly(
        "function: input 0 (Tensor(binary, (3,), float32)) is not a placeholder; only placeholders can be fed",
        || K::function(&[(&x * 2.0).unwrap()], std::slice::from_ref(&x), &[]),
    );
    refused_exactly("function: input 1 ((3,)) is listed twice", || {
        K::function(&[x.clone(), x.clone()], std::slice::from_ref(&x), &[])
    });
}

// ----- updates -----

#[test]
fn a_function_given_a_variable_it_cannot_update() {
    let v = K::variable_with(Array::from([1.0f32, 2.0]), None, Some("v")).unwrap();
    let c = K::constant(Array::from([1.0f32, 2.0]));
    let p = ph(&[2]);
    refused_exactly("function: update 0 targets Tensor(constant, (2,), float32), which is not a variable", || {
        K::function(&[], std::slice::from_ref(&v), &[(c.clone(), (&c * 2.0).unwrap())])
    });
    refused_exactly("function: update 0 targets Tensor(placeholder, (2,), float32), which is not a variable", || {
        K::function(std::slice::from_ref(&p), std::slice::from_ref(&v), &[(p.clone(), (&v * 2.0).unwrap())])
    });
    refused_exactly("function: update 1 targets Tensor(binary, (2,), float32), which is not a variable", || {
        K::function(&[], std::slice::from_ref(&v), &[(v.clone(), v.clone()), ((&v * 2.0).unwrap(), v.clone())])
    });
    refused_exactly(
        "function: update 0 gives variable `v` of shape (2,) float32 a value of shape (3,) float32",
        || K::function(&[], std::slice::from_ref(&v), &[(v.clone(), K::constant(Array::from([1.0f32, 2.0, 3.0])))]),
    );
    refused_exactly(
        "function: update 0 gives variable `v` of shape (2,) float32 a value of shape (2,) float64",
        || K::function(&[], std::slice::from_ref(&v), &[(v.clone(), K::constant(Array::from([1.0f64, 2.0])))]),
    );
    refused_exactly("set_value: variable `v` has shape (2,), the value has shape (3,)", || {
        K::set_value(&v, Array::from([1.0f32, 2.0, 3.0]))
    });
    refused("get_value", &["get_value", "is not a variable"], || K::get_value(&c));
    assert_eq!(f32s(&K::get_value(&v).unwrap()), [1.0, 2.0], "nothing refused changed the variable");
}

#[test]
fn a_variable_of_another_backend_instance() {
    // Regression: the check compared backend names, and a built-in `cpu` variable used by a
    // function on the `cpu` plugin read the plugin's buffer of the same handle: a silently
    // wrong value.
    let builtin = registry::load_in("cpu", &[]).unwrap();
    let plugin_cpu = registry::load(plugin("cpu").to_str().unwrap()).unwrap();
    let v = K::with_backend(&builtin, || K::variable_with(Array::from([1.0f32, 2.0]), None, Some("v"))).unwrap();
    let _w = K::with_backend(&plugin_cpu, || K::variable(Array::from([10.0f32, 20.0]))).unwrap();
    refused(
        "other instance",
        &[
            "function: variable `v` lives on backend `cpu` (built-in), the function runs on another backend `cpu` (",
            "libkeras_backend_cpu.so)",
        ],
        || K::with_backend(&plugin_cpu, || run(&[], &[(&v * 1.0).unwrap()], &[])),
    );
    let out = accepted("same instance", || K::with_backend(&builtin, || run(&[], &[(&v * 1.0).unwrap()], &[])));
    assert_eq!(f32s(&out[0]), [1.0, 2.0]);
}

// ----- values -----

#[test]
fn nan_and_inf_propagate_as_ieee_says() {
    let x = ph(&[6]);
    let zero = K::zeros_like(&x, None);
    let row = K::reshape(&x, &[1, 6]).unwrap();
    let outputs = [
        K::exp(&x).unwrap(),
        K::log(&x).unwrap(),
        (1.0 / &x).unwrap(),
        (&x - &x).unwrap(),
        K::maximum(&x, &zero).unwrap(),
        K::minimum(&zero, &x).unwrap(),
        K::relu(&x, 0.0, None).unwrap(),
        K::sqrt(&x).unwrap(),
        K::sigmoid(&x).unwrap(),
        K::tanh(&x).unwrap(),
        K::sum(&x, K::Axes::All, false).unwrap(),
        K::max(&x, K::Axes::All, false).unwrap(),
        K::softmax(&row).unwrap(),
        K::dot(&row, &K::reshape(&x, &[6, 1]).unwrap()).unwrap(),
        K::cast(&K::not_equal(&x, &x).unwrap(), DType::F32).unwrap(),
        K::cast(&K::argmax(&x, 0).unwrap(), DType::F32).unwrap(),
    ];
    let loss = K::sum(&K::square(&x).unwrap(), K::Axes::All, false).unwrap();
    let mut all = outputs.to_vec();
    all.extend(K::gradients(&loss, std::slice::from_ref(&x)).unwrap());
    let f = K::function(std::slice::from_ref(&x), &all, &[]).unwrap();
    let (nan, inf) = (f32::NAN, f32::INFINITY);
    let out = accepted("specials", || f.call(&[Array::from([nan, inf, -inf, 0.0, -1.0, 2.0])]));
    let same = |k: usize, expected: &[f32]| {
        let got = f32s(&out[k]);
        let equal =
            got.len() == expected.len() && got.iter().zip(expected).all(|(a, b)| a == b || (a.is_nan() && b.is_nan()));
        assert!(equal, "output {k}: {got:?}, expected {expected:?}");
    };
    let e2 = 2.0f32.exp();
    same(0, &[nan, inf, 0.0, 1.0, (-1.0f32).exp(), e2]);
    same(1, &[nan, inf, nan, -inf, nan, 2.0f32.ln()]);
    same(2, &[nan, 0.0, -0.0, inf, -1.0, 0.5]);
    same(3, &[nan, nan, nan, 0.0, 0.0, 0.0]);
    same(4, &[nan, inf, 0.0, 0.0, 0.0, 2.0]);
    same(5, &[nan, 0.0, -inf, 0.0, -1.0, 0.0]);
    same(6, &[nan, inf, 0.0, 0.0, 0.0, 2.0]);
    same(7, &[nan, inf, 0.0, 0.0, 0.0, 2.0f32.sqrt()]);
    same(8, &[nan, 1.0, 0.0, 0.5, 1.0 / (1.0 + 1.0f32.exp()), 1.0 / (1.0 + (-2.0f32).exp())]);
    same(9, &[nan, 1.0, -1.0, 0.0, (-1.0f32).tanh(), 2.0f32.tanh()]);
    same(10, &[nan]);
    same(11, &[nan]);
    same(12, &[nan; 6]);
    same(13, &[nan]);
    same(14, &[1.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    // argmax: the first NaN wins, as in NumPy.
    same(15, &[0.0]);
    same(16, &[nan, inf, -inf, 0.0, -2.0, 4.0]);
}

/// A row of the empty-tensor test: name, tensor, expected shape, expected values (if checked).
type EmptyCase = (&'static str, keras::Result<Tensor>, Vec<usize>, Option<Vec<f32>>);

#[test]
fn empty_tensors_through_every_family() {
    let x = ph(&[0, 3]);
    let y = ph(&[2, 0]);
    let xv = Array::from_vec::<f32>(&[0, 3], vec![]).unwrap();
    let yv = Array::from_vec::<f32>(&[2, 0], vec![]).unwrap();
    let idx = K::placeholder_with([0], Some(DType::I32), None);
    let idxv = Array::from_vec::<i32>(&[0], vec![]).unwrap();
    let table = K::constant(Array::from([[1.0f32, 2.0], [3.0, 4.0], [5.0, 6.0]]));
    let tf = Some(ImageDimOrdering::Tf);
    let image = K::placeholder([0, 4, 4, 2]);
    let imagev = Array::from_vec::<f32>(&[0, 4, 4, 2], vec![]).unwrap();
    let kernel = K::constant(Array::from_vec(&[3, 3, 2, 5], vec![0.5f32; 90]).unwrap());
    // Ones of a shape, depending on no placeholder.
    let c = |shape: &[usize]| K::ones_like(&ph(shape), None);

    let cases: Vec<EmptyCase> = vec![
        ("unary", K::exp(&x), vec![0, 3], None),
        ("binary broadcast", &x + &c(&[3]), vec![0, 3], None),
        ("broadcast to 0", &c(&[0, 1]) + &c(&[1, 4]), vec![0, 4], None),
        ("comparison", K::cast(&K::greater(&x, &x).unwrap(), DType::F32), vec![0, 3], None),
        ("sum over the empty axis", K::sum(&x, 0, false), vec![3], Some(vec![0.0; 3])),
        ("prod over the empty axis", K::prod(&x, 0, false), vec![3], Some(vec![1.0; 3])),
        ("max over the empty axis", K::max(&x, 0, false), vec![3], Some(vec![f32::NEG_INFINITY; 3])),
        ("mean over the empty axis", K::mean(&x, 0, false), vec![3], Some(vec![f32::NAN; 3])),
        ("sum of all", K::sum(&y, K::Axes::All, false), vec![], Some(vec![0.0])),
        ("argmax over a non-empty axis", K::cast(&K::argmax(&x, 1).unwrap(), DType::F32), vec![0], None),
        ("softmax", K::softmax(&y), vec![2, 0], None),
        ("dot with an empty row count", K::dot(&x, &c(&[3, 2])), vec![0, 2], None),
        ("dot contracting an empty axis", K::dot(&y, &c(&[0, 4])), vec![2, 4], Some(vec![0.0; 8])),
        ("batch_dot with an empty batch", K::batch_dot(&c(&[0, 2, 3]), &c(&[0, 3, 4]), None), vec![0, 2, 4], None),
        ("reshape", K::reshape(&x, &[3, -1]), vec![3, 0], None),
        ("permute", K::permute_dimensions(&x, &[1, 0]), vec![3, 0], None),
        ("slice", K::slice(&x, &[(0, Some(5)), (1, None)]), vec![0, 2], None),
        ("concatenate", K::concatenate(&[x.clone(), c(&[1, 3])], 0), vec![1, 3], Some(vec![1.0; 3])),
        ("pad", K::temporal_padding(&c(&[1, 0, 2]), 1), vec![1, 2, 2], Some(vec![0.0; 4])),
        ("reverse", K::reverse(&x, 0), vec![0, 3], None),
        ("tile", K::tile(&x, &[2, 2]), vec![0, 6], None),
        ("repeat_elements", K::repeat_elements(&y, 3, 0), vec![6, 0], None),
        ("gather of no index", K::gather(&table, &idx), vec![0, 2], None),
        ("one_hot of no index", K::one_hot(&idx, 4), vec![0, 4], None),
        ("flatten", K::flatten(&x), vec![0], None),
        ("batch_flatten", K::batch_flatten(&y), vec![2, 0], None),
        ("expand_dims", K::expand_dims(&x, 0), vec![1, 0, 3], None),
        (
            "conv2d of an empty batch",
            K::conv2d(&image, &kernel, (1, 1), BorderMode::Same, tf, (1, 1)),
            vec![0, 4, 4, 5],
            None,
        ),
        (
            "pool2d of an empty batch",
            K::pool2d(&image, (2, 2), (2, 2), BorderMode::Valid, tf, PoolMode::Max),
            vec![0, 2, 2, 2],
            None,
        ),
        ("resize_images", K::resize_images(&image, 2, 2, tf), vec![0, 8, 8, 2], None),
        // `same` over an empty spatial axis has no output position and no padding (it gave 1
        // position of padding alone; found by the `graph` fuzzer).
        (
            "same pool2d of empty rows",
            K::pool2d(&c(&[1, 0, 0, 2]), (2, 2), (2, 2), BorderMode::Same, tf, PoolMode::Avg),
            vec![1, 0, 0, 2],
            None,
        ),
        (
            "same conv2d of empty rows",
            K::conv2d(&c(&[1, 0, 3, 2]), &kernel, (1, 1), BorderMode::Same, tf, (1, 1)),
            vec![1, 0, 3, 5],
            None,
        ),
        ("map_fn over no element", K::map_fn(K::square, &x), vec![0, 3], None),
        ("switch", K::switch(&K::ones_like(&x, None), &x, &x), vec![0, 3], None),
    ];
    let names: Vec<&str> = cases.iter().map(|c| c.0).collect();
    let mut outputs = Vec::new();
    for (name, tensor, _, _) in &cases {
        outputs.push(match tensor {
            Ok(t) => t.clone(),
            Err(e) => panic!("{name}: refused: {e}"),
        });
    }
    // Gradients flow through empty tensors too.
    let loss =
        K::sum(&K::concatenate(&[K::flatten(&x).unwrap(), K::flatten(&y).unwrap()], 0).unwrap(), K::Axes::All, false)
            .unwrap();
    outputs.extend(K::gradients(&loss, &[x.clone(), y.clone()]).unwrap());
    let f = accepted("compile", || K::function(&[x.clone(), y.clone(), idx.clone(), image.clone()], &outputs, &[]));
    let out = accepted("call", || f.call(&[xv.clone(), yv.clone(), idxv.clone(), imagev.clone()]));
    for (k, (_, _, shape, values)) in cases.iter().enumerate() {
        assert_eq!(out[k].shape(), shape.as_slice(), "{}", names[k]);
        if let Some(values) = values {
            let got = f32s(&out[k]);
            let equal = got.iter().zip(values).all(|(a, b)| a == b || (a.is_nan() && b.is_nan()));
            assert!(equal && got.len() == values.len(), "{}: {got:?}", names[k]);
        }
    }
    assert_eq!(out[cases.len()].shape(), [0, 3]);
    assert_eq!(out[cases.len() + 1].shape(), [2, 0]);

    // Where an empty tensor has no answer, the error says so.
    let z = ph(&[0, 3]);
    refused("argmax over the empty axis", &["arg_reduce", "[0, 3]", "length 0"], || {
        run(std::slice::from_ref(&z), &[K::argmax(&z, 0).unwrap()], std::slice::from_ref(&xv))
    });
    refused("gather from an empty table", &["gather", "index 0 is out of range for axis 0 of length 0"], || {
        let i = K::placeholder_with([1], Some(DType::I32), None);
        run(&[z.clone(), i.clone()], &[K::gather(&z, &i).unwrap()], &[xv.clone(), Array::from([0i32])])
    });
}

#[test]
fn indices_out_of_range() {
    let table = K::constant(Array::from([1.0f32, 2.0, 3.0]));
    let i = K::placeholder_with([2], Some(DType::I32), None);
    let gather = K::function(std::slice::from_ref(&i), &[K::gather(&table, &i).unwrap()], &[]).unwrap();
    refused("gather", &["gather", "index 5 is out of range for axis 0 of length 3"], || {
        gather.call(&[Array::from([5i32, 0])])
    });
    refused("gather", &["gather", "index -4 is out of range for axis 0 of length 3"], || {
        gather.call(&[Array::from([-4i32, 0])])
    });
    // A negative index counts from the end (NumPy's and Theano's rule).
    assert_eq!(f32s(&gather.call(&[Array::from([-1i32, 0])]).unwrap()[0]), [3.0, 1.0]);
    // one_hot: an index outside [0, n) gives an all-zero row (TensorFlow's rule).
    let one_hot = K::function(std::slice::from_ref(&i), &[K::one_hot(&i, 3).unwrap()], &[]).unwrap();
    assert_eq!(f32s(&accepted("one_hot", || one_hot.call(&[Array::from([5i32, -1])]))[0]), [0.0; 6]);
}

#[test]
fn shapes_too_large_for_memory() {
    const HUGE: usize = 1 << 40;
    refused("zeros", &["zeros", "shape [1099511627776, 1099511627776]", "more elements than memory can hold"], || {
        K::zeros(&[HUGE, HUGE], None)
    });
    // No overflow, but 4 TiB: the allocation fails as an error, not an abort.
    refused("ones", &["ones", "shape [1048576, 1048576]", "more than can be allocated"], || {
        K::ones(&[1 << 20, 1 << 20], None)
    });
    refused("eye", &["eye", "shape [4294967296, 4294967296]"], || K::eye(1 << 32, None));
    refused("tile", &["tile", "overflows"], || K::tile(&ph(&[2, 2]), &[usize::MAX, 2]));
    refused("tile", &["tile", "more elements than memory can hold"], || K::tile(&ph(&[2, 2]), &[HUGE, HUGE]));
    refused("reshape", &["reshape", "more elements than memory can hold"], || {
        K::reshape(&ph(&[3]), &[1 << 62, 1 << 62])
    });
    refused("repeat_elements", &["repeat_elements", "overflows"], || K::repeat_elements(&ph(&[3]), usize::MAX, 0));
    refused("concatenate", &["concatenate", "overflows"], || {
        K::concatenate(&[K::placeholder([Some(usize::MAX)]), ph(&[3])], 0)
    });
    refused("placeholder", &["fill", "more elements than memory can hold"], || {
        K::eval(&K::zeros_like(&ph(&[HUGE, HUGE]), None))
    });
    refused("a kernel output", &["alloc failed", "out of memory"], || {
        K::eval(&K::tile(&K::zeros(&[2, 2], None).unwrap(), &[1 << 20, 1 << 20]).unwrap())
    });
    // Loops are unrolled: one over 2^40 steps (of nothing: the shape holds no element) is
    // refused rather than built until memory runs out (found by the `graph` fuzzer).
    refused("map_fn", &["map_fn", "axis 0 of (1099511627776, 0) has 1099511627776 steps", "at most 1048576"], || {
        K::map_fn(K::square, &ph(&[HUGE, 0]))
    });
    refused("foldl", &["foldl", "1099511627776 steps"], || K::foldl(|a, b| a + b, &ph(&[HUGE, 0]), None));
    // A placeholder's dim beyond isize::MAX wrapped negative in Python's slice rule, and the
    // clamp panicked (found by the `graph` fuzzer): slicing it is fine, only feeding is not.
    let sliced = accepted("slice", || K::slice(&K::placeholder([Some(usize::MAX)]), &[(-2, None)]));
    assert_eq!(sliced.shape(), [Some(2)]);
    // The same machinery still works at a sane size.
    assert_eq!(accepted("small", || K::eval(&K::tile(&K::ones(&[1, 1], None)?, &[2, 2])?)).shape(), [2, 2]);
}

// ----- configuration and plugins -----

#[test]
fn a_malformed_keras_json() {
    let cases = [
        ("{\"floatx\": ", None, "not valid JSON"),
        ("[1, 2]", None, "expected a JSON object"),
        ("\u{0}\u{ff}", None, "not valid JSON"),
        (r#"{"floatx": "float8"}"#, Some("floatx"), "field `floatx` is \"float8\"; allowed: float16, float32, float64"),
        (r#"{"epsilon": -1}"#, Some("epsilon"), "field `epsilon` is -1; allowed: a number greater than 0"),
        (r#"{"backend": 3}"#, Some("backend"), "field `backend` is 3; allowed: a backend name"),
        (r#"{"image_dim_ordering": "xy"}"#, Some("image_dim_ordering"), "allowed: th, tf"),
    ];
    for (text, field, expected) in cases {
        let home = tempfile::tempdir().unwrap();
        fs::write(config_path(home.path()), text).unwrap();
        let error = refused(text, &[expected], || Config::load_from(home.path(), None));
        let path = config_path(home.path()).display().to_string();
        assert!(error.to_string().starts_with(&format!("{path}: ")), "{error}");
        match error {
            Error::Config { field: got, .. } => assert_eq!(got.as_deref(), field, "{text}"),
            other => panic!("{text}: not a configuration error: {other:?}"),
        }
    }
    let home = tempfile::tempdir().unwrap();
    fs::write(config_path(home.path()), [0xff, 0xfe, b'{']).unwrap();
    refused("invalid UTF-8", &["cannot read the file"], || Config::load_from(home.path(), None));
}

#[test]
fn an_unknown_backend() {
    let dir = tempfile::tempdir().unwrap();
    let error = refused("unknown", &["unknown backend `nosuch`", &dir.path().display().to_string()], || {
        registry::load_in("nosuch", &[dir.path().to_path_buf()])
    });
    assert_eq!(error.load_failure(), Some(LoadFailure::NotFound));
    let error = refused("invalid name", &["invalid backend name \"a b\""], || registry::load_in("a b", &[]));
    assert_eq!(error.load_failure(), Some(LoadFailure::NotFound));
    let error = refused("missing path", &["no such plugin library file"], || {
        registry::load(&dir.path().join("libkeras_backend_gone.so").display().to_string())
    });
    assert_eq!(error.load_failure(), Some(LoadFailure::OpenFailed));
}

#[test]
fn a_broken_plugin() {
    // A kernel that panics: an error from the call, the backend answers the next call.
    let backend: Backend = registry::load(plugin("test_panicking").to_str().unwrap()).unwrap();
    let x = ph(&[2]);
    let (exp, twice) = K::with_backend(&backend, || {
        let exp = K::function(std::slice::from_ref(&x), &[K::exp(&x).unwrap()], &[]).unwrap();
        (exp, K::function(std::slice::from_ref(&x), &[(&x * 2.0).unwrap()], &[]).unwrap())
    });
    let before = backend.live_buffers();
    refused(
        "panicking kernel",
        &["backend `test_panicking`: unary failed", "the backend panicked", "on purpose"],
        || exp.call(&[Array::from([1.0f32, 2.0])]),
    );
    assert_eq!(backend.live_buffers(), before, "the failed call freed its buffers");
    assert_eq!(f32s(&accepted("next call", || twice.call(&[Array::from([1.0f32, 2.0])]))[0]), [2.0, 4.0]);
    // Plugins built against another contract are refused before any of their code runs.
    let error = refused("layout", &["contract layout mismatch"], || {
        registry::load(plugin("test_mismatched").to_str().unwrap())
    });
    assert_eq!(error.load_failure(), Some(LoadFailure::ContractLayout));
    let error =
        refused("future", &["backend contract 2.0"], || registry::load(plugin("test_future").to_str().unwrap()));
    assert_eq!(error.load_failure(), Some(LoadFailure::ContractVersion));
}

#[test]
fn a_truncated_plugin_file() {
    let whole = fs::read(plugin("cpu")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (k, cut) in [whole.len() / 2, whole.len() - 1, 4096, 64, 10].into_iter().enumerate() {
        let path = dir.path().join(format!("libkeras_backend_cut{k}.so"));
        fs::write(&path, &whole[..cut]).unwrap();
        let error = refused("truncated", &[&path.display().to_string()], || registry::load(path.to_str().unwrap()));
        assert_eq!(error.load_failure(), Some(LoadFailure::OpenFailed), "{error}");
    }
}

#[test]
fn a_plugin_file_that_is_not_a_library() {
    let dir = tempfile::tempdir().unwrap();
    let contents: [&[u8]; 4] = [b"", b"just text\n", b"\x7fELF", &[0xff; 4096]];
    for (k, bytes) in contents.into_iter().enumerate() {
        let path = dir.path().join(format!("libkeras_backend_junk{k}.so"));
        fs::write(&path, bytes).unwrap();
        let error = refused("junk", &[&path.display().to_string(), "cannot open as a shared library"], || {
            registry::load(path.to_str().unwrap())
        });
        assert_eq!(error.load_failure(), Some(LoadFailure::OpenFailed), "{error}");
    }
    // A real shared library that is not a keras-rs plugin: the test's own libc.
    let maps = fs::read_to_string("/proc/self/maps").unwrap();
    let libc = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| Path::new(path).file_name().is_some_and(|n| n.to_string_lossy().starts_with("libc.so")))
        .expect("the test maps a libc");
    let error = refused("libc", &["not a keras-rs plugin", libc], || registry::load(libc));
    assert_eq!(error.load_failure(), Some(LoadFailure::NotAPlugin));
}
