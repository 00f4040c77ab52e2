//! `floatx` decides the dtype of new placeholders, variables and constants of every float
//! width. One test in its own binary: `set_floatx` is process-wide.

use keras::{Array, backend as K};

#[test]
fn every_float_width_honours_floatx() {
    for dtype in [K::DType::F16, K::DType::F64, K::DType::F32] {
        K::set_floatx(dtype).unwrap();
        assert_eq!(K::floatx(), dtype);
        let x = K::placeholder([None, Some(2)]);
        let w = K::variable(Array::from([[1.0f64, -1.0], [0.5, 2.0]])).unwrap();
        assert_eq!((K::dtype(&x), K::dtype(&w)), (dtype, dtype));
        let y = K::softmax(&K::dot(&x, &w).unwrap()).unwrap();
        let loss = K::sum(&y, 0, false).unwrap();
        let grad =
            K::gradients(&K::sum(&(&y * &y).unwrap(), K::Axes::All, false).unwrap(), std::slice::from_ref(&w)).unwrap();
        let f = K::function(std::slice::from_ref(&x), &[y.clone(), loss, grad[0].clone()], &[]).unwrap();
        let out = f.call(&[Array::from([[1.0f64, 2.0], [0.0, 0.0]])]).unwrap();
        assert!(out.iter().all(|o| o.dtype() == dtype), "outputs in {dtype}");
        let probabilities = out[0].to_f64_vec();
        // Row 0: logits (2, 3); row 1: (0, 0).
        let tolerance = if dtype == K::DType::F16 { 2e-3 } else { 1e-6 };
        let p = 1.0 / (1.0 + 1f64.exp());
        for (got, want) in probabilities.iter().zip([p, 1.0 - p, 0.5, 0.5]) {
            assert!((got - want).abs() < tolerance, "{dtype}: {got} vs {want}");
        }
        assert_eq!(K::cast_to_floatx(&Array::from([1i32, 2])).unwrap().dtype(), dtype);
    }
    assert!(K::set_floatx(K::DType::I32).unwrap_err().to_string().contains("set_floatx"));
}
