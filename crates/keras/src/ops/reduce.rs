//! Reductions over axes, arg-reductions, and the (log-)softmax along one axis.

use keras_backend_api::{ArgReduceOp, BinaryOp, DType, ReduceOp, UnaryOp};

use super::{
    Inferred, Op,
    elementwise::{binary, broadcast_like, cast, unary},
    movement::{gather, insert_axes},
    source,
};
use crate::{
    array::Array,
    error::Result,
    graph::{Dim, Tensor},
};

pub(crate) fn reduce(op: ReduceOp, x: &Tensor, axes: &[usize], keepdims: bool) -> Result<Tensor> {
    let mut axes = axes.to_vec();
    axes.sort_unstable();
    Tensor::new(Op::Reduce { op, axes, keepdims }, vec![x.clone()])
}

pub(crate) fn arg_reduce(op: ArgReduceOp, x: &Tensor, axis: usize) -> Result<Tensor> {
    Tensor::new(Op::ArgReduce { op, axis }, vec![x.clone()])
}

pub(crate) fn softmax(x: &Tensor, axis: usize, log: bool) -> Result<Tensor> {
    Tensor::new(Op::Softmax { axis, log }, vec![x.clone()])
}

fn check_axes(axes: &[usize], rank: usize) -> std::result::Result<(), String> {
    keras_backend_api::shape::check_axes(axes, rank)
}

pub(crate) fn infer(op: &Op, inputs: &[Tensor]) -> Inferred {
    let x = &inputs[0];
    match op {
        Op::Reduce { op, axes, keepdims } => {
            check_axes(axes, x.ndim())?;
            let logical = matches!(op, ReduceOp::Any | ReduceOp::All);
            if logical != (x.dtype() == DType::Bool) {
                return Err(format!("{op:?} is not defined for {}", x.dtype()));
            }
            Ok((reduced_dims(x.shape(), axes, *keepdims), x.dtype()))
        }
        Op::ArgReduce { axis, .. } => {
            check_axes(&[*axis], x.ndim())?;
            Ok((reduced_dims(x.shape(), &[*axis], false), DType::I64))
        }
        Op::Softmax { axis, .. } => {
            check_axes(&[*axis], x.ndim())?;
            if !x.dtype().is_float() {
                return Err(format!("softmax needs a float input, got {}", x.dtype()));
            }
            Ok((x.shape().to_vec(), x.dtype()))
        }
        _ => unreachable!("not a reduction"),
    }
}

pub(crate) fn reduced_dims(shape: &[Dim], axes: &[usize], keepdims: bool) -> Vec<Dim> {
    let reduced = |i: &usize| axes.contains(i);
    shape
        .iter()
        .enumerate()
        .filter_map(|(i, &d)| match (reduced(&i), keepdims) {
            (false, _) => Some(d),
            (true, true) => Some(Some(1)),
            (true, false) => None,
        })
        .collect()
}

/// The number of elements each output of a reduction over `axes` of `x` combines, as a scalar
/// of `x`'s dtype (known at build time when those dims are, else read from `x`'s shape).
pub(crate) fn reduced_count(x: &Tensor, axes: &[usize]) -> Result<Tensor> {
    let dims: Option<Vec<usize>> = axes.iter().map(|&a| x.shape()[a]).collect();
    if let Some(dims) = dims {
        return source::scalar(dims.iter().product::<usize>() as f64, x.dtype());
    }
    let axes_i32 = axes.iter().map(|&a| a as i32).collect();
    let picked = gather(&source::shape_of(x)?, &source::constant(Array::from_vec(&[axes.len()], axes_i32)?), 0)?;
    cast(&reduce(ReduceOp::Prod, &picked, &[0], false)?, x.dtype())
}

pub(crate) fn vjp(op: &Op, inputs: &[Tensor], y: &Tensor, dy: &Tensor) -> Result<Vec<Option<Tensor>>> {
    let x = &inputs[0];
    if !x.dtype().is_float() {
        return Ok(vec![None]);
    }
    let mul = |a: &Tensor, b: &Tensor| binary(BinaryOp::Mul, a, b);
    match op {
        Op::Reduce { op, axes, keepdims } => {
            // Bring the output and its cotangent back to the input's rank.
            let kept = |t: &Tensor| if *keepdims { Ok(t.clone()) } else { insert_axes(t, axes) };
            let dy_full = broadcast_like(&kept(dy)?, x)?;
            let dx = match op {
                ReduceOp::Sum => dy_full,
                ReduceOp::Mean => binary(BinaryOp::Div, &dy_full, &reduced_count(x, axes)?)?,
                // y / x: exact away from zeros, where the product's derivative needs the
                // product of the others (not computed here).
                ReduceOp::Prod => mul(&dy_full, &binary(BinaryOp::Div, &broadcast_like(&kept(y)?, x)?, x)?)?,
                ReduceOp::Max | ReduceOp::Min => {
                    // Ties share the gradient evenly, as TensorFlow does.
                    let is_extreme = binary(BinaryOp::Equal, x, &kept(y)?)?;
                    let ones = cast(&is_extreme, x.dtype())?;
                    let count = reduce(ReduceOp::Sum, &ones, axes, true)?;
                    mul(&dy_full, &binary(BinaryOp::Div, &ones, &count)?)?
                }
                ReduceOp::Any | ReduceOp::All => return Ok(vec![None]),
            };
            Ok(vec![Some(dx)])
        }
        Op::ArgReduce { .. } => Ok(vec![None]),
        Op::Softmax { axis, log } => {
            let dx = if *log {
                let total = reduce(ReduceOp::Sum, dy, &[*axis], true)?;
                binary(BinaryOp::Sub, dy, &mul(&unary(UnaryOp::Exp, y)?, &total)?)?
            } else {
                let weighted = reduce(ReduceOp::Sum, &mul(dy, y)?, &[*axis], true)?;
                mul(y, &binary(BinaryOp::Sub, dy, &weighted)?)?
            };
            Ok(vec![Some(dx)])
        }
        _ => unreachable!("not a reduction"),
    }
}
