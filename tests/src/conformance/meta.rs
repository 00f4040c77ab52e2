//! The `_meta` probes (README section 6): static-shape and dtype queries, each answered by the
//! K API on the current backend and compared with the reference engine's answer.

use keras::{
    Array,
    backend::{self as K, DType, Dim},
};
use serde_json::{Value, json};

use super::calls::k_error;

fn dims_json(dims: &[Dim]) -> Value {
    json!(dims)
}

fn zeros(shape: &[usize], dtype: DType) -> Result<keras::Tensor, String> {
    K::variable_with(Array::full(dtype, shape, 0.0), Some(dtype), None).map_err(k_error)
}

/// The K API's answer to probe `name`, as the JSON the manifest records; `Ok(None)` for a
/// probe the runner does not know.
fn answer(name: &str) -> Result<Option<Value>, String> {
    let placeholder = || K::placeholder([Some(2), None, Some(5)]);
    Ok(Some(match name {
        "int_shape_placeholder" => dims_json(&K::int_shape(&placeholder())),
        "int_shape_variable" => dims_json(&K::int_shape(&zeros(&[2, 3], DType::F32)?)),
        "int_shape_of_dot_result" => {
            let product = K::dot(&K::placeholder([2usize, 3]), &zeros(&[3, 4], DType::F32)?).map_err(k_error)?;
            dims_json(&K::int_shape(&product))
        }
        "ndim_placeholder" => json!(K::ndim(&placeholder())),
        "dtype_placeholder_default" => json!(K::dtype(&placeholder()).name()),
        "dtype_variable_int" => json!(K::dtype(&zeros(&[2], DType::I32)?).name()),
        "count_params" => json!(K::count_params(&zeros(&[3, 4], DType::F32)?).map_err(k_error)?),
        "get_variable_shape" => dims_json(&K::int_shape(&zeros(&[3, 4], DType::F32)?)),
        "eval_variable" => {
            let v = K::variable(Array::from([[1.0f32, 2.0], [3.0, 4.0]])).map_err(k_error)?;
            let value = K::eval(&v).map_err(k_error)?;
            let width = value.shape().last().copied().unwrap_or(1).max(1);
            Value::Array(value.to_f64_vec().chunks(width).map(|row| json!(row)).collect())
        }
        "learning_phase_type" => json!(K::dtype(&K::learning_phase()).name()),
        _ => return Ok(None),
    }))
}

/// How the reference answer is read: TensorFlow reports variable dtypes as `int32_ref`, and the
/// learning phase as the repr of a bool placeholder (Theano as its name).
fn expected_answer(name: &str, expected: &Value) -> Value {
    match (name, expected.as_str()) {
        ("dtype_variable_int", Some(text)) => json!(text.trim_end_matches("_ref")),
        ("learning_phase_type", Some(text)) if text.contains("bool") || text.contains("learning_phase") => {
            json!("bool")
        }
        _ => expected.clone(),
    }
}

/// Runs probe `name` against the reference answer `expected`: `Ok(None)` when it matches,
/// `Ok(Some(reason))` to skip it, `Err` when it does not match.
pub fn probe(name: &str, expected: &Value) -> Result<Option<String>, String> {
    if name == "int_shape_of_dot_result" && expected.is_string() {
        return Ok(Some(format!("the reference engine could not answer: {expected}")));
    }
    let Some(actual) = answer(name)? else {
        return Ok(Some(format!("the runner does not know the probe `{name}`")));
    };
    let expected = expected_answer(name, expected);
    if values_equal(&actual, &expected) { Ok(None) } else { Err(format!("K gives {actual}, expected {expected}")) }
}

/// JSON equality with numbers compared as numbers (`1` equals `1.0`).
fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| values_equal(a, b)),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_answers_are_read_engine_independently() {
        assert_eq!(expected_answer("dtype_variable_int", &json!("int32_ref")), json!("int32"));
        assert_eq!(expected_answer("learning_phase_type", &json!("keras_learning_phase")), json!("bool"));
        assert!(values_equal(&json!([[1, 2]]), &json!([[1.0, 2.0]])));
        assert!(!values_equal(&json!([2, null, 5]), &json!([2, 5])));
    }

    #[test]
    fn unknown_probes_and_engine_errors_are_skipped() {
        assert!(probe("no_such_probe", &json!(1)).unwrap().unwrap().contains("does not know"));
        assert!(probe("int_shape_of_dot_result", &json!("TypeError: ...")).unwrap().is_some());
    }
}
