//! Reductions over axis sets, and arg-reductions.

use keras_backend_api::{ArgReduceOp, BackendError, ReduceOp};

use super::{Tensor, TensorMut};
use crate::Result;

/// Reduces `x` over `axes` into `out`.
pub fn reduce(op: ReduceOp, x: Tensor<'_>, axes: &[usize], out: TensorMut<'_>) -> Result<()> {
    let _ = (op, x, axes, out);
    Err(BackendError::unsupported("reduce"))
}

/// Arg-max / arg-min along `axis`.
pub fn arg_reduce(op: ArgReduceOp, x: Tensor<'_>, axis: usize, out: TensorMut<'_>) -> Result<()> {
    let _ = (op, x, axis, out);
    Err(BackendError::unsupported("arg_reduce"))
}
