//! The core of the K API end to end on the built-in backend: build, compile, call, update,
//! differentiate.

use keras::{Array, backend as K};

fn f32s(a: &Array) -> Vec<f32> {
    a.to_vec::<f32>().unwrap()
}

#[test]
fn arithmetic_with_broadcasting_and_scalars() {
    let a = K::placeholder([None, Some(3)]);
    let b = K::placeholder([3]);
    let y = ((&a * &b).unwrap() + 1.0).unwrap();
    let z = (2.0 - &y).unwrap();
    let f = K::function(&[a, b], &[y, z], &[]).unwrap();
    let out = f.call(&[Array::from([[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]]), Array::from([1.0f32, 0.0, -1.0])]).unwrap();
    assert_eq!(out[0].shape(), [2, 3]);
    assert_eq!(f32s(&out[0]), [2.0, 1.0, -2.0, 5.0, 1.0, -5.0]);
    assert_eq!(f32s(&out[1]), [0.0, 1.0, 4.0, -3.0, 1.0, 7.0]);
}

#[test]
fn shape_mismatch_is_an_error_naming_both_shapes() {
    let a = K::placeholder([2, 3]);
    let b = K::placeholder([4]);
    let err = (&a + &b).unwrap_err().to_string();
    assert!(err.contains("operator +") && err.contains("(2, 3)") && err.contains("(4,)"), "{err}");
}

#[test]
fn updates_read_values_from_before_the_call() {
    let v = K::variable(Array::from([1.0f32, 2.0, 3.0])).unwrap();
    let x = K::placeholder([3]);
    let f = K::function(
        std::slice::from_ref(&x),
        &[(&v * 2.0).unwrap(), (&x + &v).unwrap()],
        &[(v.clone(), (&v + &x).unwrap())],
    )
    .unwrap();
    let o1 = f.call(&[Array::from([10.0f32, 20.0, 30.0])]).unwrap();
    assert_eq!(f32s(&o1[0]), [2.0, 4.0, 6.0]);
    assert_eq!(f32s(&o1[1]), [11.0, 22.0, 33.0]);
    let o2 = f.call(&[Array::from([1.0f32, 1.0, 1.0])]).unwrap();
    assert_eq!(f32s(&o2[0]), [22.0, 44.0, 66.0]);
    assert_eq!(f32s(&K::get_value(&v).unwrap()), [12.0, 23.0, 34.0]);
}

#[test]
fn gradients_of_a_small_expression() {
    let x = K::placeholder([2, 2]);
    let loss = K::sum(&(K::square(&x).unwrap() * K::stop_gradient(&x).unwrap()).unwrap(), K::Axes::All, false).unwrap();
    let g = K::gradients(&loss, std::slice::from_ref(&x)).unwrap();
    let f = K::function(&[x], &[loss, g[0].clone()], &[]).unwrap();
    let out = f.call(&[Array::from([[1.0f32, 2.0], [3.0, -1.0]])]).unwrap();
    assert_eq!(f32s(&out[0]), [1.0 + 8.0 + 27.0 - 1.0]);
    assert_eq!(f32s(&out[1]), [2.0, 8.0, 18.0, 2.0]);
}

#[test]
fn reductions_and_their_gradients() {
    let x = K::placeholder([None, Some(3)]);
    let m = K::mean(&x, 1, false).unwrap();
    let s = K::max(&x, [0, 1], true).unwrap();
    let g = K::gradients(
        &(K::sum(&m, K::Axes::All, false).unwrap() + K::sum(&s, K::Axes::All, false)).unwrap(),
        std::slice::from_ref(&x),
    )
    .unwrap();
    let f = K::function(&[x], &[m, s, g[0].clone()], &[]).unwrap();
    let out = f.call(&[Array::from([[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]])]).unwrap();
    assert_eq!(f32s(&out[0]), [2.0, 5.0]);
    assert_eq!(out[1].shape(), [1, 1]);
    assert_eq!(f32s(&out[1]), [6.0]);
    let third = 1.0f32 / 3.0;
    assert_eq!(f32s(&out[2]), [third, third, third, third, third, third + 1.0]);
}

#[test]
fn values_of_variables_and_queries_of_tensors() {
    let v = K::variable(Array::from([[1.0f32, 2.0], [3.0, 4.0]])).unwrap();
    assert_eq!(K::int_shape(&v), [Some(2), Some(2)]);
    assert_eq!(K::count_params(&v).unwrap(), 4);
    assert_eq!(f32s(&K::eval(&v).unwrap()), [1.0, 2.0, 3.0, 4.0]);
    K::set_value(&v, Array::from([[0.0f64, 1.0], [2.0, 3.0]])).unwrap();
    assert_eq!(f32s(&K::get_value(&v).unwrap()), [0.0, 1.0, 2.0, 3.0], "the value is converted to float32");
    let err = K::set_value(&v, Array::from([1.0f32, 2.0])).unwrap_err().to_string();
    assert!(err.contains("set_value") && err.contains("(2, 2)") && err.contains("(2,)"), "{err}");
    let w = K::variable(Array::from([5.0f32])).unwrap();
    let bad = [(w.clone(), Array::from([6.0f32])), (v.clone(), Array::from([1.0f32]))];
    assert!(K::batch_set_value(&bad).is_err());
    assert_eq!(f32s(&K::get_value(&w).unwrap()), [5.0], "nothing changes when one pair does not fit");
    K::batch_set_value(&[(w.clone(), Array::from([6.0f32]))]).unwrap();
    assert_eq!(f32s(&K::batch_get_value(std::slice::from_ref(&w)).unwrap()[0]), [6.0]);

    let x = K::placeholder([None, Some(4), Some(5)]);
    assert_eq!(K::ndim(&x), 3);
    assert_eq!(K::dtype(&x), K::DType::F32);
    assert!(K::count_params(&x).is_err());
    let shape = K::function(std::slice::from_ref(&x), &[K::shape(&x).unwrap()], &[]).unwrap();
    let fed = Array::from_vec(&[3, 4, 5], vec![0.0f32; 60]).unwrap();
    assert_eq!(shape.call(&[fed]).unwrap()[0].to_vec::<i32>().unwrap(), [3, 4, 5]);
}

#[test]
fn function_refuses_what_it_cannot_run() {
    let x = K::placeholder([2]);
    let y = K::placeholder([2]);
    let sum = (&x + &y).unwrap();
    let err = K::function(std::slice::from_ref(&x), std::slice::from_ref(&sum), &[]).err().unwrap().to_string();
    assert!(err.contains("function") && err.contains("not among the inputs"), "{err}");
    let err = K::function(&[x.clone(), y.clone()], &[], &[(x.clone(), sum.clone())]).err().unwrap().to_string();
    assert!(err.contains("not a variable"), "{err}");
    let f = K::function(&[x.clone(), y.clone()], std::slice::from_ref(&sum), &[]).unwrap();
    let err = f.call(&[Array::from([1.0f32, 2.0])]).unwrap_err().to_string();
    assert!(err.contains("expects 2 input arrays, 1 given"), "{err}");
    let err = f.call(&[Array::from([1.0f32, 2.0, 3.0]), Array::from([1.0f32, 2.0])]).unwrap_err().to_string();
    assert!(err.contains("input 0") && err.contains("(3,)"), "{err}");
    assert!(K::eval(&sum).is_err(), "eval needs every placeholder fed");
}

#[test]
fn the_learning_phase_is_zero_unless_fed() {
    let x = K::placeholder([1]);
    let picked = K::in_train_phase(&(&x * 2.0).unwrap(), &(&x * 3.0).unwrap()).unwrap();
    let default = K::function(std::slice::from_ref(&x), std::slice::from_ref(&picked), &[]).unwrap();
    assert_eq!(f32s(&default.call(&[Array::from([1.0f32])]).unwrap()[0]), [3.0]);
    let fed = K::function(&[x, K::learning_phase()], &[picked], &[]).unwrap();
    assert_eq!(f32s(&fed.call(&[Array::from([1.0f32]), Array::scalar(1i32)]).unwrap()[0]), [2.0]);
    assert_eq!(f32s(&fed.call(&[Array::from([1.0f32]), Array::scalar(0i32)]).unwrap()[0]), [3.0]);
}

#[test]
fn plans_are_cached_per_shape_and_buffers_are_released() {
    let backend = K::current_backend().unwrap();
    let x = K::placeholder([None]);
    let y = K::sum(&K::exp(&(&x * 2.0).unwrap()).unwrap(), K::Axes::All, false).unwrap();
    let f = K::function(&[x], &[y], &[]).unwrap();
    let before = backend.live_buffers();
    for n in [3usize, 5, 3] {
        let out = f.call(&[Array::from(vec![0.0f32; n])]).unwrap();
        assert_eq!(f32s(&out[0]), [n as f32]);
    }
    // Other tests of this binary run concurrently on the same backend, so only a bound holds.
    assert!(backend.live_buffers() <= before + 8, "buffers of finished calls are freed");
}

#[test]
fn peak_live_bytes_follows_allocation_aliasing_in_place_reuse_and_release() {
    // x (4000 B) is fed; exp(x) is written over x (its last use), abs(y) over that, and the
    // reshape aliases it; the variable (2000 B) is held for the whole call, and the sum's
    // 4-byte result is allocated while the rest is alive.
    let v = K::variable(Array::from_vec(&[500], vec![1.0f32; 500]).unwrap()).unwrap();
    let x = K::placeholder([1000]);
    let y = K::exp(&x).unwrap();
    let z = K::reshape(&K::abs(&y).unwrap(), &[10, 100]).unwrap();
    let f = K::function(std::slice::from_ref(&x), &[z, K::sum(&v, K::Axes::All, false).unwrap()], &[]).unwrap();
    let feed = Array::from_vec(&[1000], vec![0.5f32; 1000]).unwrap();
    assert_eq!(f.peak_live_bytes(std::slice::from_ref(&feed)).unwrap(), 2000 + 4000 + 4);
    // exp(x) cannot overwrite x, which -x reads later: both are alive at once; -x is then
    // written over x.
    let g = K::function(std::slice::from_ref(&x), &[K::exp(&x).unwrap(), (-&x).unwrap()], &[]).unwrap();
    assert_eq!(g.peak_live_bytes(std::slice::from_ref(&feed)).unwrap(), 8000);
    let err = g.peak_live_bytes(&[]).unwrap_err().to_string();
    assert!(err.contains("expects 1 input arrays, 0 given"), "{err}");
}
