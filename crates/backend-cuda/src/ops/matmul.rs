//! matmul on cuBLAS.
use keras_backend_api::{BackendError, TensorRef};

use crate::{Device, Result};

pub fn matmul(
    _d: &Device,
    _a: TensorRef<'_>,
    _b: TensorRef<'_>,
    _out: TensorRef<'_>,
    _ta: bool,
    _tb: bool,
) -> Result<()> {
    Err(BackendError::unsupported("matmul"))
}
