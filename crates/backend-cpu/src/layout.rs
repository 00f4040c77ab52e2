//! Strided views: the one index helper behind broadcasting, permutation, slicing and reversal.
//!
//! A view reads a dense source buffer through an `offset` and per-axis `strides` (in elements,
//! possibly 0 for a broadcast axis or negative for a reversed one) and is walked in row-major
//! order of its own `shape`.

use keras_backend_api::shape::contiguous_strides;

// Broadcasting strides are a shape rule every backend needs: one copy, in the contract crate.
pub use keras_backend_api::shape::broadcast_strides;

/// The dense (row-major) strides of `shape` as `isize`.
pub fn dense_strides(shape: &[usize]) -> Vec<isize> {
    contiguous_strides(shape).into_iter().map(|s| s as isize).collect()
}

/// Iterator over the source offsets of a strided view, in row-major order of `shape`.
#[derive(Clone, Debug)]
pub struct StridedIndex {
    shape: Vec<usize>,
    strides: Vec<isize>,
    position: Vec<usize>,
    next: Option<isize>,
}

impl StridedIndex {
    /// A walk over `shape` starting at `offset` with `strides` (one per axis).
    pub fn new(shape: &[usize], strides: &[isize], offset: usize) -> Self {
        debug_assert_eq!(shape.len(), strides.len());
        let empty = shape.contains(&0);
        StridedIndex {
            shape: shape.to_vec(),
            strides: strides.to_vec(),
            position: vec![0; shape.len()],
            next: if empty { None } else { Some(offset as isize) },
        }
    }
}

impl Iterator for StridedIndex {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let current = self.next?;
        // Advance the odometer: bump the last axis, carrying into earlier ones.
        let mut next = Some(current);
        for axis in (0..self.shape.len()).rev() {
            self.position[axis] += 1;
            next = next.map(|o| o + self.strides[axis]);
            if self.position[axis] < self.shape[axis] {
                break;
            }
            next = next.map(|o| o - self.strides[axis] * self.shape[axis] as isize);
            self.position[axis] = 0;
            if axis == 0 {
                next = None;
            }
        }
        if self.shape.is_empty() {
            next = None;
        }
        self.next = next;
        Some(current as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_walk_is_identity() {
        let idx: Vec<usize> = StridedIndex::new(&[2, 3], &dense_strides(&[2, 3]), 0).collect();
        assert_eq!(idx, vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn scalar_and_empty() {
        assert_eq!(StridedIndex::new(&[], &[], 4).collect::<Vec<_>>(), vec![4]);
        assert_eq!(StridedIndex::new(&[2, 0], &[1, 1], 0).count(), 0);
    }

    #[test]
    fn broadcast_transpose_and_reverse() {
        // [3] broadcast to [2, 3]
        let b: Vec<usize> = StridedIndex::new(&[2, 3], &broadcast_strides(&[3], &[2, 3]), 0).collect();
        assert_eq!(b, vec![0, 1, 2, 0, 1, 2]);
        // [2, 1] broadcast to [2, 3]
        let c: Vec<usize> = StridedIndex::new(&[2, 3], &broadcast_strides(&[2, 1], &[2, 3]), 0).collect();
        assert_eq!(c, vec![0, 0, 0, 1, 1, 1]);
        // transpose of a [2, 3] tensor: shape [3, 2], strides [1, 3]
        let t: Vec<usize> = StridedIndex::new(&[3, 2], &[1, 3], 0).collect();
        assert_eq!(t, vec![0, 3, 1, 4, 2, 5]);
        // reverse axis 1 of [2, 3]: offset 2, strides [3, -1]
        let r: Vec<usize> = StridedIndex::new(&[2, 3], &[3, -1], 2).collect();
        assert_eq!(r, vec![2, 1, 0, 5, 4, 3]);
    }
}
