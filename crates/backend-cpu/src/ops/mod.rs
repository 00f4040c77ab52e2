//! The kernels, one module per primitive family. Each kernel takes typed views of already
//! locked buffers, checks its shape rule (from `keras_backend_api::shape`) and dtypes, and
//! writes `out`.

pub mod conv;
pub mod conv_direct;
pub mod conv_direct_nchw;
pub mod element;
pub mod elementwise;
pub mod fused;
pub mod matmul;
pub mod movement;
pub mod pool;
pub mod random;
pub mod reduce;
pub mod vmath;
pub mod window;
pub mod winograd;

use crate::CpuStorage;

/// A read-only tensor: a buffer and the shape it is viewed with (the element count matches;
/// the dispatch layer has checked it).
#[derive(Clone, Copy, Debug)]
pub struct Tensor<'a> {
    /// The elements, row-major.
    pub data: &'a CpuStorage,
    /// The dimensions.
    pub shape: &'a [usize],
}

/// A tensor a kernel writes.
#[derive(Debug)]
pub struct TensorMut<'a> {
    /// The elements, row-major.
    pub data: &'a mut CpuStorage,
    /// The dimensions.
    pub shape: &'a [usize],
}

impl Tensor<'_> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// `true` when there is no element.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}
