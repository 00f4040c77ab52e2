//! conv, conv_backward_data, conv_backward_filter: cuDNN or own implicit GEMM.
use keras_backend_api::{BackendError, ConvParams, TensorRef};

use crate::{Device, Result};

pub fn conv(_d: &Device, _x: TensorRef<'_>, _k: TensorRef<'_>, _out: TensorRef<'_>, _p: &ConvParams<'_>) -> Result<()> {
    Err(BackendError::unsupported("conv"))
}
pub fn conv_backward_data(
    _d: &Device,
    _dy: TensorRef<'_>,
    _k: TensorRef<'_>,
    _dx: TensorRef<'_>,
    _p: &ConvParams<'_>,
) -> Result<()> {
    Err(BackendError::unsupported("conv_backward_data"))
}
pub fn conv_backward_filter(
    _d: &Device,
    _x: TensorRef<'_>,
    _dy: TensorRef<'_>,
    _dk: TensorRef<'_>,
    _p: &ConvParams<'_>,
) -> Result<()> {
    Err(BackendError::unsupported("conv_backward_filter"))
}
