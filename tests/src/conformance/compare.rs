//! Judging one output against its reference (README section 3 step 4 and section 9): shape,
//! dtype class, then exact integers and bools, or floats within `atol + rtol·|expected|` with
//! NaN matching only NaN and an infinity only the same infinity.

use keras::{Array, backend::DType};
use serde::Serialize;

/// The dtype classes whose members may stand for each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DTypeClass {
    /// float16, float32, float64.
    Float,
    /// int32, int64, uint8.
    Integer,
    /// bool.
    Bool,
}

/// The class of `dtype`.
pub fn class(dtype: DType) -> DTypeClass {
    match dtype {
        DType::Bool => DTypeClass::Bool,
        d if d.is_float() => DTypeClass::Float,
        _ => DTypeClass::Integer,
    }
}

/// `|actual − expected| ≤ atol + rtol·|expected|`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Tolerance {
    /// Absolute part.
    pub atol: f64,
    /// Relative part.
    pub rtol: f64,
}

impl Tolerance {
    /// Whether `actual` is within tolerance of `expected`, NaN and infinities included.
    pub fn accepts(&self, actual: f64, expected: f64) -> bool {
        if expected.is_nan() {
            return actual.is_nan();
        }
        if expected.is_infinite() {
            return actual == expected;
        }
        (actual - expected).abs() <= self.atol + self.rtol * expected.abs()
    }
}

/// The tolerance of README section 9 for an output of `function` whose reference is `dtype`:
/// 1e-5/1e-5, except float32 outputs of `rnn` cases (atol 1e-4, Keras's own rnn tolerance).
pub fn tolerance(function: &str, dtype: DType) -> Tolerance {
    let atol = if function == "rnn" && dtype != DType::F64 { 1e-4 } else { 1e-5 };
    Tolerance { atol, rtol: 1e-5 }
}

/// Why an output does not match: a message, plus the largest errors for value mismatches.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Mismatch {
    /// The output label.
    pub label: String,
    /// One line: what differs.
    pub message: String,
    /// Largest `|actual − expected|` over the elements (infinite where one side is not finite).
    pub max_abs: Option<f64>,
    /// Largest `|actual − expected| / |expected|`.
    pub max_rel: Option<f64>,
}

/// Compares output `label`; `Ok` when it matches.
pub fn compare(label: &str, actual: &Array, expected: &Array, tolerance: Tolerance) -> Result<(), Mismatch> {
    let mismatch = |message: String, max_abs, max_rel| Mismatch { label: label.to_string(), message, max_abs, max_rel };
    if actual.shape() != expected.shape() {
        return Err(mismatch(format!("shape {:?}, expected {:?}", actual.shape(), expected.shape()), None, None));
    }
    let (actual_class, expected_class) = (class(actual.dtype()), class(expected.dtype()));
    if actual_class != expected_class {
        let message =
            format!("dtype {} ({actual_class:?}), expected {} ({expected_class:?})", actual.dtype(), expected.dtype());
        return Err(mismatch(message, None, None));
    }
    let exact = expected_class != DTypeClass::Float;
    let rule = if exact { Tolerance { atol: 0.0, rtol: 0.0 } } else { tolerance };
    let (a, e) = (actual.to_f64_vec(), expected.to_f64_vec());
    let (mut max_abs, mut max_rel, mut bad, mut first) = (0.0f64, 0.0f64, 0usize, None);
    for (i, (&x, &y)) in a.iter().zip(&e).enumerate() {
        let same_special = (x.is_nan() && y.is_nan()) || (x.is_infinite() && x == y);
        let abs = if same_special { 0.0 } else { (x - y).abs() };
        let abs = if abs.is_nan() { f64::INFINITY } else { abs };
        let rel = if abs == 0.0 { 0.0 } else { abs / y.abs() };
        max_abs = max_abs.max(abs);
        max_rel = max_rel.max(if rel.is_nan() { f64::INFINITY } else { rel });
        if !rule.accepts(x, y) {
            bad += 1;
            first.get_or_insert((i, x, y));
        }
    }
    match first {
        None => Ok(()),
        Some((i, x, y)) => {
            let what = if exact { "elements differ" } else { "elements out of tolerance" };
            let message = format!(
                "max abs error {max_abs:.3e}, max rel error {max_rel:.3e}: {bad} of {} {what} (first at flat index {i}: got {x}, expected {y})",
                a.len()
            );
            Err(mismatch(message, Some(max_abs), Some(max_rel)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: Tolerance = Tolerance { atol: 1e-5, rtol: 1e-5 };

    fn f32s(values: &[f32]) -> Array {
        Array::from_vec(&[values.len()], values.to_vec()).unwrap()
    }

    #[test]
    fn nan_matches_only_nan_and_infinities_only_themselves() {
        let expected = f32s(&[f32::NAN, f32::NEG_INFINITY, 1.0]);
        assert!(compare("out", &f32s(&[f32::NAN, f32::NEG_INFINITY, 1.0]), &expected, TOL).is_ok());
        let error = compare("out", &f32s(&[0.0, f32::NEG_INFINITY, 1.0]), &expected, TOL).unwrap_err();
        assert!(error.message.contains("1 of 3"), "{}", error.message);
        assert!(compare("out", &f32s(&[f32::NAN, f32::INFINITY, 1.0]), &expected, TOL).is_err());
        assert!(compare("out", &f32s(&[f32::NAN, -1e30, 1.0]), &expected, TOL).is_err());
        assert!(compare("out", &f32s(&[1.0]), &f32s(&[f32::NAN]), TOL).is_err());
    }

    #[test]
    fn floats_pass_within_atol_plus_rtol_times_expected() {
        let expected = f32s(&[100.0, 0.0]);
        // 100 · 1e-5 + 1e-5 = 1.01e-3 allowed at 100; 1e-5 at 0.
        assert!(compare("out", &f32s(&[100.001, 9e-6]), &expected, TOL).is_ok());
        let error = compare("out", &f32s(&[100.0015, 0.0]), &expected, TOL).unwrap_err();
        assert_eq!(error.label, "out");
        assert!((error.max_abs.unwrap() - 1.5e-3).abs() < 1e-5);
        assert!((error.max_rel.unwrap() - 1.5e-5).abs() < 1e-7);
    }

    #[test]
    fn the_dtype_class_must_match_but_not_the_exact_dtype() {
        let int64 = Array::from_vec(&[2], vec![1i64, 3]).unwrap();
        let int32 = Array::from_vec(&[2], vec![1i32, 3]).unwrap();
        assert!(compare("out", &int32, &int64, TOL).is_ok(), "int32 stands for int64 (argmax)");
        let uint8 = Array::from_vec(&[2], vec![1u8, 0]).unwrap();
        let bools = Array::from_bools(&[2], &[true, false]).unwrap();
        let error = compare("out", &bools, &uint8, TOL).unwrap_err();
        assert!(error.message.contains("Bool") && error.message.contains("Integer"), "{}", error.message);
        assert!(compare("out", &f32s(&[1.0, 3.0]), &int32, TOL).is_err());
    }

    #[test]
    fn integers_and_bools_are_exact_and_shapes_must_match() {
        let expected = Array::from_vec(&[2], vec![1i32, 3]).unwrap();
        assert!(compare("out", &Array::from_vec(&[2], vec![1i32, 4]).unwrap(), &expected, TOL).is_err());
        let scalar = Array::scalar(2.0f32);
        let vector = f32s(&[2.0]);
        let error = compare("out", &vector, &scalar, TOL).unwrap_err();
        assert!(error.message.contains("shape [1], expected []"), "{}", error.message);
        assert!(compare("out", &scalar, &Array::scalar(2.0f64), TOL).is_ok());
    }

    #[test]
    fn rnn_cases_get_the_looser_float32_atol() {
        assert_eq!(tolerance("rnn", DType::F32).atol, 1e-4);
        assert_eq!(tolerance("rnn", DType::F64).atol, 1e-5);
        assert_eq!(tolerance("conv2d", DType::F32), TOL);
    }
}
