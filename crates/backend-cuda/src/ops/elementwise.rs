//! fill, unary, binary, select, cast and batch_norm.
use keras_backend_api::{BackendError, BinaryOp, TensorRef, UnaryOp};

use crate::{Device, Result};

pub fn fill(_d: &Device, _out: TensorRef<'_>, _value: f64) -> Result<()> {
    Err(BackendError::unsupported("fill"))
}
pub fn unary(_d: &Device, _op: UnaryOp, _x: TensorRef<'_>, _out: TensorRef<'_>) -> Result<()> {
    Err(BackendError::unsupported("unary"))
}
pub fn binary(_d: &Device, _op: BinaryOp, _a: TensorRef<'_>, _b: TensorRef<'_>, _out: TensorRef<'_>) -> Result<()> {
    Err(BackendError::unsupported("binary"))
}
pub fn select(_d: &Device, _c: TensorRef<'_>, _t: TensorRef<'_>, _f: TensorRef<'_>, _out: TensorRef<'_>) -> Result<()> {
    Err(BackendError::unsupported("select"))
}
pub fn cast(_d: &Device, _x: TensorRef<'_>, _out: TensorRef<'_>) -> Result<()> {
    Err(BackendError::unsupported("cast"))
}
#[allow(clippy::too_many_arguments)]
pub fn batch_norm(
    _d: &Device,
    _x: TensorRef<'_>,
    _mean: TensorRef<'_>,
    _var: TensorRef<'_>,
    _beta: TensorRef<'_>,
    _gamma: TensorRef<'_>,
    _epsilon: f64,
    _out: TensorRef<'_>,
) -> Result<()> {
    Err(BackendError::unsupported("batch_norm"))
}
