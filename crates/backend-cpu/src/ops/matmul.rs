//! Batched matrix product on the `gemm` crate, and the one GEMM entry point other kernels
//! (convolution) call.

use keras_backend_api::BackendError;

use super::{Tensor, TensorMut};
use crate::Result;

/// Element types the GEMM runs on.
pub trait GemmScalar: Copy + Send + Sync + 'static + num_traits::Zero + num_traits::One {}
impl GemmScalar for f32 {}
impl GemmScalar for f64 {}

/// A read-only matrix view: element `(r, c)` is `data[r * row_stride + c * col_stride]`.
#[derive(Clone, Copy, Debug)]
pub struct MatView<'a, T> {
    /// Backing elements.
    pub data: &'a [T],
    /// Row count.
    pub rows: usize,
    /// Column count.
    pub cols: usize,
    /// Elements between consecutive rows.
    pub row_stride: usize,
    /// Elements between consecutive columns.
    pub col_stride: usize,
}

impl<'a, T> MatView<'a, T> {
    /// A dense row-major `rows × cols` matrix.
    pub fn row_major(data: &'a [T], rows: usize, cols: usize) -> Self {
        MatView { data, rows, cols, row_stride: cols, col_stride: 1 }
    }

    /// The transpose, without moving data.
    pub fn t(self) -> Self {
        MatView { rows: self.cols, cols: self.rows, row_stride: self.col_stride, col_stride: self.row_stride, ..self }
    }

    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride < self.data.len()
    }
}

/// Work (m·n·k) above which the GEMM uses rayon's pool.
const PARALLEL_WORK: usize = 64 * 64 * 64;

/// `dst = lhs · rhs` (or `dst += lhs · rhs` when `accumulate`), where `dst` is a row-major
/// `lhs.rows × rhs.cols` matrix whose rows are `dst_row_stride` apart.
pub fn gemm<T: GemmScalar>(
    lhs: MatView<'_, T>,
    rhs: MatView<'_, T>,
    dst: &mut [T],
    dst_row_stride: usize,
    accumulate: bool,
) -> Result<()> {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    let dst_fits = m == 0 || n == 0 || (m - 1) * dst_row_stride + n <= dst.len();
    if rhs.rows != k || !lhs.fits() || !rhs.fits() || !dst_fits || (m > 1 && dst_row_stride < n) {
        return Err(BackendError::internal(format!(
            "gemm: inconsistent views lhs {}x{} rhs {}x{} dst {} elements (row stride {dst_row_stride})",
            lhs.rows,
            lhs.cols,
            rhs.rows,
            rhs.cols,
            dst.len()
        )));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                dst[r * dst_row_stride..r * dst_row_stride + n].fill(T::zero());
            }
        }
        return Ok(());
    }
    let parallelism = if m.saturating_mul(n).saturating_mul(k) >= PARALLEL_WORK && rayon::current_num_threads() > 1 {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: every view was bounds-checked above for the extents the GEMM reads and writes,
    // and `dst` is borrowed mutably, so it cannot overlap the inputs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_row_stride as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
}

/// `out = op(a) · op(b)` with batch broadcasting.
pub fn matmul(a: Tensor<'_>, b: Tensor<'_>, out: TensorMut<'_>, transpose_a: bool, transpose_b: bool) -> Result<()> {
    let _ = (a, b, out, transpose_a, transpose_b);
    Err(BackendError::unsupported("matmul"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemm_small_by_hand() {
        // [[1,2,3],[4,5,6]] · [[1,0],[0,1],[1,1]] = [[4,5],[10,11]]
        let a = [1.0f32, 2., 3., 4., 5., 6.];
        let b = [1.0f32, 0., 0., 1., 1., 1.];
        let mut c = [0.0f32; 4];
        gemm(MatView::row_major(&a, 2, 3), MatView::row_major(&b, 3, 2), &mut c, 2, false).unwrap();
        assert_eq!(c, [4., 5., 10., 11.]);
        // accumulate, with a transposed lhs view: aᵀ of [[1,4],[2,5],[3,6]] is a.
        let at = [1.0f32, 4., 2., 5., 3., 6.];
        gemm(MatView::row_major(&at, 3, 2).t(), MatView::row_major(&b, 3, 2), &mut c, 2, true).unwrap();
        assert_eq!(c, [8., 10., 20., 22.]);
    }

    #[test]
    fn gemm_refuses_bad_views() {
        let a = [1.0f64; 6];
        let mut c = [0.0f64; 4];
        assert!(gemm(MatView::row_major(&a, 2, 3), MatView::row_major(&a, 2, 3), &mut c, 2, false).is_err());
    }
}
