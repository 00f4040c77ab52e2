//! Buffers, tensor views and backend information.

use abi_stable::{
    StableAbi,
    std_types::{RSlice, RString, RVec},
};

use crate::DType;

/// An opaque handle to a buffer that lives on the backend's device.
///
/// The backend chooses the value; the host only passes it back. A handle is valid from
/// [`Backend::alloc`](crate::Backend::alloc) until [`Backend::free`](crate::Backend::free);
/// a backend must answer a stale or unknown handle with
/// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument), never with a crash.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BufferId(pub u64);

/// A buffer viewed as a dense, row-major (C order) tensor of `shape`.
///
/// The product of `shape` must equal the buffer's element count; the backend checks it. A
/// rank-0 shape (`[]`) is a scalar holding one element. The same buffer may be viewed with
/// different shapes by different calls (a reshape costs nothing).
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct TensorRef<'a> {
    /// The buffer holding the elements.
    pub buffer: BufferId,
    /// The dimensions, outermost first.
    pub shape: RSlice<'a, usize>,
}

impl<'a> TensorRef<'a> {
    /// A view of `buffer` with `shape`.
    pub fn new(buffer: BufferId, shape: &'a [usize]) -> Self {
        TensorRef { buffer, shape: RSlice::from_slice(shape) }
    }

    /// Number of elements the shape describes.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// `true` when the shape has a zero dimension.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a backend says about itself.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct BackendInfo {
    /// The name the backend is selected by (`cpu`, `blas`, `cuda`, ...).
    pub name: RString,
    /// The plugin's own version (its crate version, for example).
    pub version: RString,
    /// The device in words: CPU model and thread count, or GPU name and memory.
    pub device: RString,
    /// Worker threads the backend uses (1 for a single-threaded backend; 0 if not meaningful).
    pub threads: u32,
    /// The dtypes buffers may hold on this backend.
    pub dtypes: RVec<DType>,
}
