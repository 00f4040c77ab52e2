//! Tensors that hold or receive data (placeholders, variables, constants), what can be asked
//! of any tensor (its shape, dtype, value), and compiling graphs: `function` and `gradients`.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use keras_backend_api::DType;
use parking_lot::RwLock;

use super::config::floatx;
use crate::{
    array::Array,
    autodiff,
    error::{Error, Result},
    exec::{Function, current_backend, plan},
    graph::{Dim, Tensor, VarState, known, shape_string},
    ops::{Op, source, special},
};

/// A static shape in which any dimension may be unknown (`None`), for [`placeholder`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShapeSpec(pub Vec<Dim>);

impl From<Vec<Dim>> for ShapeSpec {
    fn from(dims: Vec<Dim>) -> ShapeSpec {
        ShapeSpec(dims)
    }
}
impl From<&[Dim]> for ShapeSpec {
    fn from(dims: &[Dim]) -> ShapeSpec {
        ShapeSpec(dims.to_vec())
    }
}
impl<const N: usize> From<[Dim; N]> for ShapeSpec {
    fn from(dims: [Dim; N]) -> ShapeSpec {
        ShapeSpec(dims.to_vec())
    }
}
impl From<Vec<usize>> for ShapeSpec {
    fn from(dims: Vec<usize>) -> ShapeSpec {
        ShapeSpec(known(&dims))
    }
}
impl From<&[usize]> for ShapeSpec {
    fn from(dims: &[usize]) -> ShapeSpec {
        ShapeSpec(known(dims))
    }
}
impl<const N: usize> From<[usize; N]> for ShapeSpec {
    fn from(dims: [usize; N]) -> ShapeSpec {
        ShapeSpec(known(&dims))
    }
}

/// A placeholder of `shape` (`None` dims are given when fed) and dtype [`floatx`].
pub fn placeholder(shape: impl Into<ShapeSpec>) -> Tensor {
    source::placeholder(shape.into().0, floatx(), None)
}

/// A placeholder of rank `ndim` with every dimension unknown.
pub fn placeholder_ndim(ndim: usize) -> Tensor {
    source::placeholder(vec![None; ndim], floatx(), None)
}

/// A placeholder with an explicit dtype (`None`: [`floatx`]) and name.
pub fn placeholder_with(shape: impl Into<ShapeSpec>, dtype: Option<DType>, name: Option<&str>) -> Tensor {
    source::placeholder(shape.into().0, dtype.unwrap_or_else(floatx), name.map(str::to_string))
}

/// The learning phase: a `bool` scalar placeholder, fed 0 (test) by every [`Function`] unless
/// it is one of the function's inputs.
pub fn learning_phase() -> Tensor {
    source::learning_phase()
}

/// A variable holding `value` converted to [`floatx`], on the current backend.
pub fn variable(value: impl Into<Array>) -> Result<Tensor> {
    variable_with(value, None, None)
}

/// A variable holding `value` converted to `dtype` (`None`: [`floatx`]), with an optional name.
pub fn variable_with(value: impl Into<Array>, dtype: Option<DType>, name: Option<&str>) -> Result<Tensor> {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let value = value.into();
    let dtype = dtype.unwrap_or_else(floatx);
    let value = convert(&value, dtype);
    let backend = current_backend()?;
    let buffer = plan::upload(&backend, &value)?;
    let name = name.map_or_else(|| format!("variable_{}", COUNT.fetch_add(1, Ordering::Relaxed)), str::to_string);
    let state = VarState {
        shape: value.shape().to_vec(),
        dtype,
        name: name.clone(),
        backend,
        value: RwLock::new(Arc::new(buffer)),
    };
    Ok(Tensor::with_shape(Op::Variable(Arc::new(state)), Vec::new(), known(value.shape()), dtype, Some(name)))
}

fn convert(value: &Array, dtype: DType) -> Array {
    if value.dtype() == dtype {
        return value.clone();
    }
    Array::from_f64s(dtype, value.shape(), &value.to_f64_vec()).unwrap_or_else(|_| Array::full(dtype, &[], 0.0))
}

/// A constant tensor holding `value` (uploaded when a function using it is compiled).
pub fn constant(value: impl Into<Array>) -> Tensor {
    source::constant(value.into())
}

/// A variable of zeros of `shape` and dtype `dtype` (`None`: [`floatx`]).
pub fn zeros(shape: &[usize], dtype: Option<DType>) -> Result<Tensor> {
    let dtype = dtype.unwrap_or_else(floatx);
    variable_with(filled("zeros", dtype, shape, 0.0)?, Some(dtype), None)
}

/// A variable of ones of `shape` and dtype `dtype` (`None`: [`floatx`]).
pub fn ones(shape: &[usize], dtype: Option<DType>) -> Result<Tensor> {
    let dtype = dtype.unwrap_or_else(floatx);
    variable_with(filled("ones", dtype, shape, 1.0)?, Some(dtype), None)
}

/// A variable holding the `size`×`size` identity matrix.
pub fn eye(size: usize, dtype: Option<DType>) -> Result<Tensor> {
    let dtype = dtype.unwrap_or_else(floatx);
    let mut bytes = filled("eye", dtype, &[size, size], 0.0)?.into_bytes();
    let one = crate::array::encode_f64(dtype, 1.0);
    for i in 0..size {
        let at = (i * size + i) * one.len();
        bytes[at..at + one.len()].copy_from_slice(&one);
    }
    variable_with(Array::from_bytes(dtype, &[size, size], bytes)?, Some(dtype), None)
}

/// A host array of `shape` filled with `value`: an error naming `function` and the shape when
/// it cannot be held in memory.
fn filled(function: &str, dtype: DType, shape: &[usize], value: f64) -> Result<Array> {
    Array::try_full(dtype, shape, value).map_err(|e| Error::graph(function, format!("shape {shape:?}: {e}")))
}

/// Zeros with `x`'s shape and `dtype` (`None`: `x`'s dtype).
pub fn zeros_like(x: &Tensor, dtype: Option<DType>) -> Tensor {
    source::fill_like(0.0, x, dtype.unwrap_or(x.dtype()))
}

/// Ones with `x`'s shape and `dtype` (`None`: `x`'s dtype).
pub fn ones_like(x: &Tensor, dtype: Option<DType>) -> Tensor {
    source::fill_like(1.0, x, dtype.unwrap_or(x.dtype()))
}

/// The shape of `x` as a symbolic `int32` vector (known sizes become constants).
pub fn shape(x: &Tensor) -> Result<Tensor> {
    source::shape_of(x)
}

/// The static shape of `x`, `None` where unknown until fed (Keras's `int_shape`).
pub fn int_shape(x: &Tensor) -> Vec<Dim> {
    x.shape().to_vec()
}

/// Number of axes of `x`.
pub fn ndim(x: &Tensor) -> usize {
    x.ndim()
}

/// The dtype of `x`.
pub fn dtype(x: &Tensor) -> DType {
    x.dtype()
}

/// Evaluates `x`, which must not depend on placeholders other than the learning phase.
pub fn eval(x: &Tensor) -> Result<Array> {
    let mut values = Function::new(&[], std::slice::from_ref(x), &[])?.call(&[])?;
    Ok(values.remove(0))
}

fn variable_state<'a>(function: &str, x: &'a Tensor) -> Result<&'a Arc<VarState>> {
    x.variable().ok_or_else(|| Error::graph(function, format!("{:?} is not a variable", x)))
}

/// The value of variable `x`.
pub fn get_value(x: &Tensor) -> Result<Array> {
    let state = variable_state("get_value", x)?;
    plan::download(&state.current(), state.dtype, &state.shape)
}

/// The values of several variables.
pub fn batch_get_value(xs: &[Tensor]) -> Result<Vec<Array>> {
    xs.iter().map(get_value).collect()
}

/// The state of variable `x` when `value` has its shape.
fn fitting_state<'a>(function: &str, x: &'a Tensor, value: &Array) -> Result<&'a Arc<VarState>> {
    let state = variable_state(function, x)?;
    if value.shape() != state.shape.as_slice() {
        return Err(Error::graph(
            function,
            format!(
                "variable `{}` has shape {}, the value has shape {}",
                state.name,
                shape_string(&known(&state.shape)),
                shape_string(&known(value.shape()))
            ),
        ));
    }
    Ok(state)
}

/// Replaces the value of variable `x`; `value` must have `x`'s shape (its dtype is converted).
pub fn set_value(x: &Tensor, value: impl Into<Array>) -> Result<()> {
    let value = value.into();
    let state = fitting_state("set_value", x, &value)?;
    let buffer = plan::upload(&state.backend, &convert(&value, state.dtype))?;
    state.replace(Arc::new(buffer));
    Ok(())
}

/// Sets several variables; nothing is changed if any pair does not fit.
pub fn batch_set_value(pairs: &[(Tensor, Array)]) -> Result<()> {
    for (x, value) in pairs {
        fitting_state("batch_set_value", x, value)?;
    }
    pairs.iter().try_for_each(|(x, value)| set_value(x, value.clone()))
}

/// Number of scalars in `x` (its shape must be fully known).
pub fn count_params(x: &Tensor) -> Result<usize> {
    x.static_shape().map(|s| s.iter().product()).ok_or_else(|| {
        Error::graph("count_params", format!("the shape {} is not fully known", shape_string(x.shape())))
    })
}

/// Compiles a function from placeholders to outputs; after computing the outputs, each
/// `(variable, new_value)` update replaces the variable (every update reads the values from
/// before the call).
pub fn function(inputs: &[Tensor], outputs: &[Tensor], updates: &[(Tensor, Tensor)]) -> Result<Function> {
    Function::new(inputs, outputs, updates)
}

/// The gradient of `sum(loss)` with respect to each of `variables` (any tensors: variables,
/// placeholders or intermediate results); zeros where the loss does not depend on one.
pub fn gradients(loss: &Tensor, variables: &[Tensor]) -> Result<Vec<Tensor>> {
    autodiff::gradients(loss, variables)
}

/// `x` unchanged, but a constant for [`gradients`].
pub fn stop_gradient(x: &Tensor) -> Result<Tensor> {
    special::stop_gradient(x)
}

/// `x` unchanged; prints `message` followed by the value whenever it is evaluated.
pub fn print_tensor(x: &Tensor, message: &str) -> Result<Tensor> {
    special::print(x, message)
}
