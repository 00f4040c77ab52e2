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
