//! permute, slice, concat, pad, reverse, gather, scatter_add, tile, repeat, one_hot, resize_nearest.
use keras_backend_api::{BackendError, Layout, TensorRef};

use crate::{Device, Result};

pub fn permute(_d: &Device, _x: TensorRef<'_>, _perm: &[usize], _out: TensorRef<'_>) -> Result<()> {
    Err(BackendError::unsupported("permute"))
}
pub fn slice(_d: &Device, _x: TensorRef<'_>, _starts: &[usize], _steps: &[isize], _out: TensorRef<'_>) -> Result<()> {
    Err(BackendError::unsupported("slice"))
}
pub fn concat(_d: &Device, _inputs: &[TensorRef<'_>], _axis: usize, _out: TensorRef<'_>) -> Result<()> {
    Err(BackendError::unsupported("concat"))
}
pub fn pad(
    _d: &Device,
    _x: TensorRef<'_>,
    _before: &[usize],
    _after: &[usize],
    _value: f64,
    _out: TensorRef<'_>,
) -> Result<()> {
    Err(BackendError::unsupported("pad"))
}
pub fn reverse(_d: &Device, _x: TensorRef<'_>, _axes: &[usize], _out: TensorRef<'_>) -> Result<()> {
    Err(BackendError::unsupported("reverse"))
}
pub fn gather(
    _d: &Device,
    _x: TensorRef<'_>,
    _indices: TensorRef<'_>,
    _axis: usize,
    _out: TensorRef<'_>,
) -> Result<()> {
    Err(BackendError::unsupported("gather"))
}
pub fn scatter_add(
    _d: &Device,
    _updates: TensorRef<'_>,
    _indices: TensorRef<'_>,
    _axis: usize,
    _out: TensorRef<'_>,
) -> Result<()> {
    Err(BackendError::unsupported("scatter_add"))
}
pub fn tile(_d: &Device, _x: TensorRef<'_>, _out: TensorRef<'_>) -> Result<()> {
    Err(BackendError::unsupported("tile"))
}
pub fn repeat(_d: &Device, _x: TensorRef<'_>, _axis: usize, _repeats: usize, _out: TensorRef<'_>) -> Result<()> {
    Err(BackendError::unsupported("repeat"))
}
pub fn one_hot(_d: &Device, _indices: TensorRef<'_>, _out: TensorRef<'_>) -> Result<()> {
    Err(BackendError::unsupported("one_hot"))
}
pub fn resize_nearest(_d: &Device, _x: TensorRef<'_>, _out: TensorRef<'_>, _layout: Layout) -> Result<()> {
    Err(BackendError::unsupported("resize_nearest"))
}
