//! N-d max / average pooling and its backward kernel, both layouts.

use keras_backend_api::{BackendError, PoolParams};

use super::{Tensor, TensorMut};
use crate::Result;

/// Forward pooling.
pub fn pool(x: Tensor<'_>, out: TensorMut<'_>, params: &PoolParams<'_>) -> Result<()> {
    let _ = (x, out, params);
    Err(BackendError::unsupported("pool"))
}

/// Gradient with respect to the input.
pub fn pool_backward(x: Tensor<'_>, dy: Tensor<'_>, dx: TensorMut<'_>, params: &PoolParams<'_>) -> Result<()> {
    let _ = (x, dy, dx, params);
    Err(BackendError::unsupported("pool_backward"))
}
