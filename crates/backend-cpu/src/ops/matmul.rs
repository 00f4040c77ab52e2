//! Batched matrix product on the `gemm` crate.

use keras_backend_api::BackendError;

use super::{Tensor, TensorMut};
use crate::Result;

/// `out = op(a) · op(b)` with batch broadcasting.
pub fn matmul(a: Tensor<'_>, b: Tensor<'_>, out: TensorMut<'_>, transpose_a: bool, transpose_b: bool) -> Result<()> {
    let _ = (a, b, out, transpose_a, transpose_b);
    Err(BackendError::unsupported("matmul"))
}
