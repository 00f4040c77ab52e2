//! Strided index spaces, the host half of `kernels/common.cuh`'s `Space` and `View`.
//!
//! A kernel walks a row-major iteration [`Space`] (usually the output's shape) by linear index;
//! each operand is a [`View`] of its buffer: an element offset plus one stride per axis of the
//! space (0 broadcasts, negative reverses). Permute, slice, reverse, broadcast, tile, repeat,
//! pad and concat are all one strided copy with the right views, so the device needs one copy
//! kernel per element size rather than one per op.

use cudarc::driver::DeviceRepr;
use keras_backend_api::{BackendError, shape::contiguous_strides};

use crate::Result;

/// The most axes a [`Space`] can have (tile doubles the rank of its input, so this is twice
/// the largest tensor rank the host builds).
pub const MAX_RANK: usize = 16;

/// A row-major iteration space. Mirrors `struct Space` in `common.cuh`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Space {
    /// Number of axes in use.
    pub rank: i32,
    /// Extent of each axis; unused axes are 1.
    pub dims: [i64; MAX_RANK],
}

/// Where the elements of an operand sit for each point of a [`Space`]. Mirrors `struct View`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct View {
    /// Element offset of the space's origin.
    pub offset: i64,
    /// Element stride per axis of the space.
    pub strides: [i64; MAX_RANK],
}

// SAFETY: both are plain `#[repr(C)]` data with the layout of their C counterparts.
unsafe impl DeviceRepr for Space {}
// SAFETY: as above.
unsafe impl DeviceRepr for View {}

impl Space {
    /// The space of `shape`; `kernel` names the caller in the error for a rank over [`MAX_RANK`].
    pub fn new(kernel: &str, shape: &[usize]) -> Result<Space> {
        check_rank(kernel, shape.len())?;
        let mut dims = [1i64; MAX_RANK];
        for (d, &n) in dims.iter_mut().zip(shape) {
            *d = n as i64;
        }
        Ok(Space { rank: shape.len() as i32, dims })
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.dims[..self.rank as usize].iter().product::<i64>() as usize
    }

    /// `true` when the space has no points.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl View {
    /// A view at `offset` with `strides` (one per axis of the space it is used with).
    pub fn new(kernel: &str, offset: usize, strides: &[isize]) -> Result<View> {
        check_rank(kernel, strides.len())?;
        let mut all = [0i64; MAX_RANK];
        for (s, &v) in all.iter_mut().zip(strides) {
            *s = v as i64;
        }
        Ok(View { offset: offset as i64, strides: all })
    }

    /// The dense row-major view of a tensor of `shape`, walked over the space of `shape`.
    pub fn dense(kernel: &str, shape: &[usize]) -> Result<View> {
        let strides: Vec<isize> = contiguous_strides(shape).into_iter().map(|s| s as isize).collect();
        View::new(kernel, 0, &strides)
    }

    /// A dense tensor of `src` shape broadcast over the space of `dst` shape (NumPy rules; the
    /// shapes have been checked to broadcast).
    pub fn broadcast(kernel: &str, src: &[usize], dst: &[usize]) -> Result<View> {
        View::new(kernel, 0, &keras_backend_api::shape::broadcast_strides(src, dst))
    }
}

fn check_rank(kernel: &str, rank: usize) -> Result<()> {
    if rank > MAX_RANK {
        return Err(BackendError::invalid(format!(
            "{kernel}: rank {rank} is above the cuda backend's limit of {MAX_RANK} axes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_view_has_zero_strides_on_expanded_axes() {
        let v = View::broadcast("t", &[3, 1], &[2, 3, 4]).unwrap();
        assert_eq!(&v.strides[..3], &[0, 1, 0]);
        assert_eq!(Space::new("t", &[2, 3, 4]).unwrap().len(), 24);
    }

    #[test]
    fn rank_over_the_limit_is_an_error_naming_the_kernel() {
        let e = Space::new("permute", &[1; 17]).unwrap_err();
        assert!(e.message.contains("permute") && e.message.contains("17"), "{}", e.message);
    }
}
