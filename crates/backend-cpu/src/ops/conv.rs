//! N-d convolution (1-3 spatial dims), forward and both backward kernels, both layouts.

use keras_backend_api::{BackendError, ConvParams};

use super::{Tensor, TensorMut};
use crate::Result;

/// Forward convolution.
pub fn conv(x: Tensor<'_>, kernel: Tensor<'_>, out: TensorMut<'_>, params: &ConvParams<'_>) -> Result<()> {
    let _ = (x, kernel, out, params);
    Err(BackendError::unsupported("conv"))
}

/// Gradient with respect to the input.
pub fn conv_backward_data(
    dy: Tensor<'_>,
    kernel: Tensor<'_>,
    dx: TensorMut<'_>,
    params: &ConvParams<'_>,
) -> Result<()> {
    let _ = (dy, kernel, dx, params);
    Err(BackendError::unsupported("conv_backward_data"))
}

/// Gradient with respect to the kernel.
pub fn conv_backward_filter(
    x: Tensor<'_>,
    dy: Tensor<'_>,
    dkernel: TensorMut<'_>,
    params: &ConvParams<'_>,
) -> Result<()> {
    let _ = (x, dy, dkernel, params);
    Err(BackendError::unsupported("conv_backward_filter"))
}
