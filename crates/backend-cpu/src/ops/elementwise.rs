//! Element-wise kernels: fill, unary, binary with broadcasting, select, cast.

use keras_backend_api::{BackendError, BinaryOp, UnaryOp};

use super::{Tensor, TensorMut};
use crate::Result;

/// Sets every element of `out` to `value` converted to its dtype.
pub fn fill(out: TensorMut<'_>, value: f64) -> Result<()> {
    let _ = (out, value);
    Err(BackendError::unsupported("fill"))
}

/// `out = op(x)`.
pub fn unary(op: UnaryOp, x: Tensor<'_>, out: TensorMut<'_>) -> Result<()> {
    let _ = (op, x, out);
    Err(BackendError::unsupported("unary"))
}

/// `out = op(out)`, in place.
pub fn unary_in_place(op: UnaryOp, out: TensorMut<'_>) -> Result<()> {
    let _ = (op, out);
    Err(BackendError::unsupported("unary"))
}

/// `out = op(a, b)` with broadcasting.
pub fn binary(op: BinaryOp, a: Tensor<'_>, b: Tensor<'_>, out: TensorMut<'_>) -> Result<()> {
    let _ = (op, a, b, out);
    Err(BackendError::unsupported("binary"))
}

/// In place: `out = op(out, other)` when `out_is_lhs`, else `out = op(other, out)`. `out` has
/// the output shape; `other` broadcasts to it.
pub fn binary_in_place(op: BinaryOp, other: Tensor<'_>, out: TensorMut<'_>, out_is_lhs: bool) -> Result<()> {
    let _ = (op, other, out, out_is_lhs);
    Err(BackendError::unsupported("binary"))
}

/// `out = cond ? on_true : on_false` with broadcasting.
pub fn select(cond: Tensor<'_>, on_true: Tensor<'_>, on_false: Tensor<'_>, out: TensorMut<'_>) -> Result<()> {
    let _ = (cond, on_true, on_false, out);
    Err(BackendError::unsupported("select"))
}

/// Converts `x` into `out`'s dtype.
pub fn cast(x: Tensor<'_>, out: TensorMut<'_>) -> Result<()> {
    let _ = (x, out);
    Err(BackendError::unsupported("cast"))
}
