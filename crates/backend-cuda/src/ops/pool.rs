//! pool and pool_backward: cuDNN or own kernels.
use keras_backend_api::{BackendError, PoolParams, TensorRef};

use crate::{Device, Result};

pub fn pool(_d: &Device, _x: TensorRef<'_>, _out: TensorRef<'_>, _p: &PoolParams<'_>) -> Result<()> {
    Err(BackendError::unsupported("pool"))
}
pub fn pool_backward(
    _d: &Device,
    _x: TensorRef<'_>,
    _dy: TensorRef<'_>,
    _dx: TensorRef<'_>,
    _p: &PoolParams<'_>,
) -> Result<()> {
    Err(BackendError::unsupported("pool_backward"))
}
