//! Source primitives: placeholders, the learning phase, constants, fills, shapes and random
//! numbers. None of them has a derivative.

use std::sync::{Arc, OnceLock, atomic::AtomicU64};

use keras_backend_api::{DType, Distribution};

use super::{Inferred, Op};
use crate::{
    array::Array,
    error::Result,
    graph::{Dim, Tensor, known},
};

pub(crate) fn placeholder(shape: Vec<Dim>, dtype: DType, name: Option<String>) -> Tensor {
    Tensor::with_shape(Op::Placeholder, Vec::new(), shape, dtype, name)
}

/// The one learning-phase tensor of the process (a `Bool` scalar).
pub(crate) fn learning_phase() -> Tensor {
    static PHASE: OnceLock<Tensor> = OnceLock::new();
    PHASE
        .get_or_init(|| {
            Tensor::with_shape(
                Op::LearningPhase,
                Vec::new(),
                Vec::new(),
                DType::Bool,
                Some("keras_learning_phase".into()),
            )
        })
        .clone()
}

pub(crate) fn constant(array: Array) -> Tensor {
    let (shape, dtype) = (known(array.shape()), array.dtype());
    Tensor::with_shape(Op::Constant(Arc::new(array)), Vec::new(), shape, dtype, None)
}

/// A tensor of `shape` filled with `value`.
pub(crate) fn fill(value: f64, dtype: DType, shape: &[usize]) -> Tensor {
    Tensor::with_shape(Op::Fill { value }, Vec::new(), known(shape), dtype, None)
}

/// A 0-d tensor holding `value`.
pub(crate) fn scalar(value: f64, dtype: DType) -> Result<Tensor> {
    Ok(fill(value, dtype, &[]))
}

/// A tensor of `like`'s shape filled with `value` (the shape may be unknown until fed).
pub(crate) fn fill_like(value: f64, like: &Tensor, dtype: DType) -> Tensor {
    if let Some(shape) = like.static_shape() {
        return fill(value, dtype, &shape);
    }
    Tensor::with_shape(Op::Fill { value }, vec![like.clone()], like.shape().to_vec(), dtype, None)
}

pub(crate) fn shape_of(x: &Tensor) -> Result<Tensor> {
    if let Some(shape) = x.static_shape() {
        let values = shape.iter().map(|&n| n as i32).collect();
        return Ok(constant(Array::from_vec(&[shape.len()], values)?));
    }
    Tensor::new(Op::ShapeOf, vec![x.clone()])
}

/// Random numbers of `like`'s shape (or `shape` when given), drawn afresh at each evaluation.
pub(crate) fn random(
    dist: Distribution,
    seed: u64,
    dtype: DType,
    shape: Option<&[usize]>,
    like: Option<&Tensor>,
) -> Tensor {
    let op = Op::Random { dist, seed, calls: Arc::new(AtomicU64::new(0)) };
    match (shape, like) {
        (Some(shape), _) => Tensor::with_shape(op, Vec::new(), known(shape), dtype, None),
        (None, Some(like)) => Tensor::with_shape(op, vec![like.clone()], like.shape().to_vec(), dtype, None),
        (None, None) => Tensor::with_shape(op, Vec::new(), Vec::new(), dtype, None),
    }
}

pub(crate) fn infer(op: &Op, inputs: &[Tensor]) -> Inferred {
    match op {
        Op::ShapeOf => Ok((vec![Some(inputs[0].ndim())], DType::I32)),
        Op::Fill { .. } | Op::Random { .. } => Err("fill and random take their shape at creation".to_string()),
        _ => unreachable!("not a source op with a shape rule"),
    }
}
