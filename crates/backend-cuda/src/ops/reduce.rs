//! reduce, arg_reduce and softmax.
use keras_backend_api::{ArgReduceOp, BackendError, ReduceOp, TensorRef};

use crate::{Device, Result};

pub fn reduce(_d: &Device, _op: ReduceOp, _x: TensorRef<'_>, _axes: &[usize], _out: TensorRef<'_>) -> Result<()> {
    Err(BackendError::unsupported("reduce"))
}
pub fn arg_reduce(_d: &Device, _op: ArgReduceOp, _x: TensorRef<'_>, _axis: usize, _out: TensorRef<'_>) -> Result<()> {
    Err(BackendError::unsupported("arg_reduce"))
}
pub fn softmax(_d: &Device, _x: TensorRef<'_>, _axis: usize, _log: bool, _out: TensorRef<'_>) -> Result<()> {
    Err(BackendError::unsupported("softmax"))
}
