//! Batched matrix product, and the one GEMM entry point other kernels (convolution) call.
//!
//! Every GEMM goes through [`gemm()`], which checks the views and hands the product to a
//! [`GemmEngine`]: [`RustGemm`] (f32 products on the direct convolution's register tiles,
//! the rest on the `gemm` crate) for the `cpu` backend, or whatever engine a
//! backend built on these kernels supplies (OpenBLAS for `blas`), so that such a backend reuses
//! the batching, broadcasting and im2col logic here instead of copying it.

use std::{cell::RefCell, ops::Range, thread::LocalKey};

use keras_backend_api::{BackendError, shape};
use rayon::prelude::*;

use super::conv_direct::{BLOCK, MIN_LANES, PixelStep, Run, TileOut, avx512, forward_tile, max_rows, split};
use super::element::several_threads;
use super::{Tensor, TensorMut};
use crate::{
    CpuStorage, Result,
    layout::{StridedIndex, broadcast_strides},
    storage::unsupported_dtype,
};

/// Element types the GEMM runs on.
pub trait GemmScalar: Copy + Send + Sync + 'static + num_traits::Zero + num_traits::One {
    /// Hands `problem` to `engine`'s kernel for this element type.
    fn run_on(engine: &dyn GemmEngine, problem: GemmProblem<'_, Self>);
}

impl GemmScalar for f32 {
    fn run_on(engine: &dyn GemmEngine, problem: GemmProblem<'_, f32>) {
        engine.gemm_f32(problem);
    }
}

impl GemmScalar for f64 {
    fn run_on(engine: &dyn GemmEngine, problem: GemmProblem<'_, f64>) {
        engine.gemm_f64(problem);
    }
}

/// The matrix-product kernels behind [`gemm()`], one per element type. A backend built on this
/// crate passes its own to [`CpuBackend::with_gemm`](crate::CpuBackend::with_gemm); every
/// matmul and convolution of that backend then runs on it.
pub trait GemmEngine: Send + Sync {
    /// Computes an `f32` product (see [`GemmProblem`] for what is already checked).
    fn gemm_f32(&self, problem: GemmProblem<'_, f32>);

    /// Computes an `f64` product.
    fn gemm_f64(&self, problem: GemmProblem<'_, f64>);

    /// The engine in words for the backend's device description (library, version, kernels),
    /// or `None` when there is nothing to add to the CPU model.
    fn describe(&self) -> Option<String> {
        None
    }

    /// Threads a large product runs on.
    fn threads(&self) -> usize {
        rayon::current_num_threads()
    }
}

/// The engine of the `cpu` backend, on rayon's pool: f32 products on the direct register
/// tiles where they take it (AVX-512, `k` up to 2048, and 16 columns or more, or 8 to 15 in a
/// small product), everything else on the `gemm` crate.
#[derive(Clone, Copy, Debug, Default)]
pub struct RustGemm;

impl GemmEngine for RustGemm {
    fn gemm_f32(&self, mut problem: GemmProblem<'_, f32>) {
        if !direct_f32(&mut problem) {
            rust_gemm(problem);
        }
    }

    fn gemm_f64(&self, problem: GemmProblem<'_, f64>) {
        rust_gemm(problem);
    }
}

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

    /// Whether every element the view addresses lies in `data`. Checked arithmetic: engines
    /// hand these views to unchecked code, so a stride that overflows must not pass.
    fn fits(&self) -> bool {
        if self.rows == 0 || self.cols == 0 {
            return true;
        }
        (self.rows - 1)
            .checked_mul(self.row_stride)
            .zip((self.cols - 1).checked_mul(self.col_stride))
            .and_then(|(r, c)| r.checked_add(c))
            .is_some_and(|last| last < self.data.len())
    }
}

/// One product that [`gemm()`] has checked: `dst = lhs · rhs`, or `dst += lhs · rhs` when
/// [`accumulate`](Self::accumulate), where `dst` is a row-major `m × n` matrix whose rows are
/// [`dst_row_stride`](Self::dst_row_stride) apart.
///
/// Only [`gemm()`] makes one, and only when `m`, `n` and `k` are all at least 1, `lhs` is
/// `m × k`, `rhs` is `k × n`, every element either view addresses lies in its data, `dst`
/// holds the `m × n` block, and `dst_row_stride >= n` when `m > 1`. An engine may rely on
/// these facts (to pass raw pointers to a library) without checking them again.
#[derive(Debug)]
pub struct GemmProblem<'a, T> {
    lhs: MatView<'a, T>,
    rhs: MatView<'a, T>,
    dst: &'a mut [T],
    dst_row_stride: usize,
    accumulate: bool,
}

impl<'a, T: Copy> GemmProblem<'a, T> {
    /// The `m × k` left operand.
    pub fn lhs(&self) -> MatView<'a, T> {
        self.lhs
    }

    /// The `k × n` right operand.
    pub fn rhs(&self) -> MatView<'a, T> {
        self.rhs
    }

    /// The destination; its first element is `(0, 0)`.
    pub fn dst(&mut self) -> &mut [T] {
        self.dst
    }

    /// Elements between consecutive rows of the destination.
    pub fn dst_row_stride(&self) -> usize {
        self.dst_row_stride
    }

    /// Whether the product is added to the destination instead of replacing it.
    pub fn accumulate(&self) -> bool {
        self.accumulate
    }

    /// Rows of the result.
    pub fn m(&self) -> usize {
        self.lhs.rows
    }

    /// Columns of the result.
    pub fn n(&self) -> usize {
        self.rhs.cols
    }

    /// The contracted dimension.
    pub fn k(&self) -> usize {
        self.lhs.cols
    }
}

/// Work (m·n·k) above which the GEMM uses rayon's pool.
const PARALLEL_WORK: usize = 64 * 64 * 64;

/// `dst = lhs · rhs` (or `dst += lhs · rhs` when `accumulate`) on `engine`, where `dst` is a
/// row-major `lhs.rows × rhs.cols` matrix whose rows are `dst_row_stride` apart.
pub fn gemm<T: GemmScalar>(
    engine: &dyn GemmEngine,
    lhs: MatView<'_, T>,
    rhs: MatView<'_, T>,
    dst: &mut [T],
    dst_row_stride: usize,
    accumulate: bool,
) -> Result<()> {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    let dst_fits = m == 0
        || n == 0
        || (m - 1)
            .checked_mul(dst_row_stride)
            .and_then(|last_row| last_row.checked_add(n))
            .is_some_and(|end| end <= dst.len());
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
    T::run_on(engine, GemmProblem { lhs, rhs, dst, dst_row_stride, accumulate });
    Ok(())
}

/// [`RustGemm`]'s kernel: the `gemm` crate, on rayon's pool for large products.
fn rust_gemm<T: GemmScalar>(problem: GemmProblem<'_, T>) {
    let GemmProblem { lhs, rhs, dst, dst_row_stride, accumulate } = problem;
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    let parallelism = if m.saturating_mul(n).saturating_mul(k) >= PARALLEL_WORK && several_threads() {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: a `GemmProblem` exists only after `gemm` bounds-checked every view for the
    // extents the GEMM reads and writes, and `dst` is borrowed mutably, so it cannot overlap
    // the inputs.
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
}

/// Largest `k` [`direct_f32`] takes: one packed panel of `rhs` (`k × BLOCK` floats, 512 KiB
/// here) must stay in L2 while every row tile of a task streams it; longer products go to the
/// `gemm` crate, which blocks `k`.
const DIRECT_MAX_K: usize = 2048;

thread_local! {
    /// [`direct_f32`]'s packed panel of `rhs` on each thread, kept between calls so that a
    /// training step's GEMMs do not allocate and fault it in again each time; at most
    /// `DIRECT_MAX_K × BLOCK` floats.
    static PACKED_PANEL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `dst`'s pointer, lent to the panel split's tasks, each of which makes from it a [`TileOut`]
/// over the lanes of its own panel.
struct SharedOutput(*mut f32);

impl SharedOutput {
    /// The pointer `n` floats further on (not dereferenced here).
    fn at(&self, n: usize) -> *mut f32 {
        self.0.wrapping_add(n)
    }
}

// SAFETY: the pointer is only offset, never dereferenced, until a task makes its `TileOut`,
// whose own safety condition is the task's.
unsafe impl Sync for SharedOutput {}

/// Products of 8 to 15 columns the direct tiles take only up to this much work (m·n·k). There
/// they beat the `gemm` crate (128×512×10 on one Zen 4 core: 20 µs against 28), which would
/// also keep a 1 MiB packing buffer per thread for them (the MLP step's last layer); larger
/// ones leave too many lanes idle (4096×1024×8: 2.3 ms against 1.6), and fewer columns still
/// more (a matrix-vector product of 1024×1024: 0.52 ms against 0.04).
const NARROW_DIRECT_MAX_WORK: usize = 1 << 21;

/// `problem` on the register tiles of the direct convolution, when this CPU has AVX-512 and
/// the product is one it takes: no `accumulate`, at least [`MIN_LANES`] columns (or half as
/// many, up to [`NARROW_DIRECT_MAX_WORK`]) and `k` up to [`DIRECT_MAX_K`]. Returns `false`,
/// having written nothing, otherwise.
///
/// A product `lhs · rhs` is a convolution with a 1×1 window: rows of `lhs` are the pixels,
/// `k` the reduction rows, `rhs` the kernel. So `rhs` is packed into panels of [`BLOCK`]
/// columns, `k` rows of `BLOCK` floats each (what a tile reads as kernel rows, whatever the
/// strides of `rhs`), and the tiles broadcast `lhs` where it lies, along its column stride:
/// `lhs` is never packed, and a transposed operand costs no more than its packing.
///
/// On several threads each task owns whole panels: it packs them (a panel packed on one core
/// and read on another was about 12 % slower on the MLP step's products) and computes their
/// columns of every row, so `rhs` is packed once. When the panels do not share out evenly
/// among the threads the rows are split instead, each task packing every panel for its own
/// rows, except where the panels were split before this rule (`k` > `m`, at least as many
/// panels as threads). Owning panels took the MLP step on two threads from 2.62–2.87 to
/// 2.51–2.55 ms (best call of each run), where only its products with `k` > `m` used to.
fn direct_f32(problem: &mut GemmProblem<'_, f32>) -> bool {
    let (m, k, n) = (problem.m(), problem.k(), problem.n());
    let work = m.saturating_mul(n).saturating_mul(k);
    let narrow_taken = n >= MIN_LANES / 2 && work <= NARROW_DIRECT_MAX_WORK;
    if problem.accumulate || (n < MIN_LANES && !narrow_taken) || k > DIRECT_MAX_K || !avx512() {
        return false;
    }
    let (lhs, rhs, ldc) = (problem.lhs, problem.rhs, problem.dst_row_stride);
    let panels = n.div_ceil(BLOCK);
    let panel_len = k * BLOCK;
    let width_of = |p: usize| (n - p * BLOCK).min(BLOCK);
    let pack = |p: usize, panel: &mut [f32]| {
        let (first, width) = (p * BLOCK, width_of(p));
        if rhs.col_stride == 1 {
            for (i, row) in panel.chunks_exact_mut(BLOCK).enumerate() {
                let at = i * rhs.row_stride + first;
                row[..width].copy_from_slice(&rhs.data[at..at + width]);
            }
        } else {
            // A transposed `rhs` (its columns contiguous): 16 rows of the panel at a time, so
            // that the 4 KiB they span stay in L1 while every column writes into them.
            for rows in (0..k).step_by(16) {
                let rows = rows..(rows + 16).min(k);
                for j in 0..width {
                    let column = (first + j) * rhs.col_stride;
                    for i in rows.clone() {
                        panel[i * BLOCK + j] = rhs.data[column + i * rhs.row_stride];
                    }
                }
            }
        }
    };
    // Rows `rows` of panel `p` into `out`, whose first row is row `rows.start`, rows `ldo` apart.
    let multiply = |p: usize, panel: &[f32], rows: Range<usize>, mut out: TileOut<'_>, ldo: usize| {
        let width = width_of(p);
        let nv = width.div_ceil(16);
        let step = PixelStep { x: lhs.row_stride, y: ldo };
        for tile in split(rows.clone(), max_rows(nv)) {
            let run = Run { x: tile.start * lhs.row_stride, x_step: lhs.col_stride, k: 0, len: k };
            let out_tile = out.skip((tile.start - rows.start) * ldo);
            forward_tile(tile.len(), nv, lhs.data, step, panel, BLOCK, &[run], out_tile, width);
        }
    };
    let threads = rayon::current_num_threads();
    let dst = &mut *problem.dst;
    // Rows `rows` of the result into `dst_rows` (whose first row is `rows.start`), one panel
    // after another through this thread's packing buffer.
    let row_block = |rows: Range<usize>, dst_rows: &mut [f32]| {
        with_scratch(&PACKED_PANEL, panel_len, |panel| {
            for p in 0..panels {
                pack(p, panel);
                multiply(p, panel, rows.clone(), (&mut dst_rows[p * BLOCK..]).into(), ldc);
            }
        })
    };
    let split_panels = panels.is_multiple_of(threads) || (k > m && panels >= threads);
    if threads == 1 || work < PARALLEL_WORK {
        row_block(0..m, dst);
    } else if !split_panels {
        // Each task packs every panel for its own rows: (threads - 1) extra packings of `rhs`.
        let block_rows = m.div_ceil(threads).max(max_rows(1));
        dst.par_chunks_mut(block_rows * ldc).enumerate().for_each(|(b, dst_rows)| {
            let rows = (b * block_rows).min(m)..((b + 1) * block_rows).min(m);
            if !rows.is_empty() {
                row_block(rows, dst_rows);
            }
        });
    } else {
        // A task owns a panel (packed by it, so in its core's L2) and computes its columns of
        // every row. Those lanes of `dst` are the task's alone, but interleaved with the other
        // tasks' along each row, so the tiles write through a pointer, not a borrowed slice.
        let (shared, len) = (SharedOutput(dst.as_mut_ptr()), dst.len());
        (0..panels).into_par_iter().for_each(|p| {
            with_scratch(&PACKED_PANEL, panel_len, |panel| {
                pack(p, panel);
                let first = p * BLOCK;
                // SAFETY: `first` < n <= dst.len(), so the `len - first` floats from it are in
                // `dst`, which stays borrowed until every task has ended. Through them the tiles
                // write lanes p·BLOCK..p·BLOCK + width of each row, panel p's columns, which no
                // other task writes, and nothing reads `dst` meanwhile.
                let out = unsafe { TileOut::shared(shared.at(first), len - first) };
                multiply(p, panel, 0..m, out, ldc);
            })
        });
    }
    true
}

/// Calls `body` with `len` floats of this thread's `scratch` buffer (content unspecified), or,
/// when the thread is already using it (a GEMM inside a task of another one), with a new
/// buffer.
pub(super) fn with_scratch(scratch: &'static LocalKey<RefCell<Vec<f32>>>, len: usize, body: impl FnOnce(&mut [f32])) {
    scratch.with(|cell| {
        let mut own = Vec::new();
        let mut borrowed = cell.try_borrow_mut();
        let buffer: &mut Vec<f32> = match borrowed.as_deref_mut() {
            Ok(kept) => kept,
            Err(_) => &mut own,
        };
        if buffer.len() < len {
            buffer.resize(len, 0.0);
        }
        body(&mut buffer[..len]);
    })
}

/// `out = op(a) · op(b)` with batch broadcasting, where `op` transposes the last two dims when
/// its flag is set ([`keras_backend_api::shape::matmul`] gives the shape). `F32` or `F64`, all
/// three tensors of the same dtype; the products run on `engine`.
pub fn matmul(
    engine: &dyn GemmEngine,
    a: Tensor<'_>,
    b: Tensor<'_>,
    out: TensorMut<'_>,
    transpose_a: bool,
    transpose_b: bool,
) -> Result<()> {
    let expected = shape::matmul(a.shape, b.shape, transpose_a, transpose_b).map_err(|e| {
        BackendError::invalid(format!("matmul: {e} (a {:?}, b {:?}, out {:?})", a.shape, b.shape, out.shape))
    })?;
    if expected.as_slice() != out.shape {
        return Err(BackendError::invalid(format!(
            "matmul: out has shape {:?} but a {:?} and b {:?} (transpose_a {transpose_a}, transpose_b {transpose_b}) \
             give {expected:?}",
            out.shape, a.shape, b.shape
        )));
    }
    let problem = BatchedProblem::new(a.shape, b.shape, out.shape, transpose_a, transpose_b);
    match (a.data, b.data, &mut *out.data) {
        (CpuStorage::F32(a), CpuStorage::F32(b), CpuStorage::F32(out)) => problem.run(engine, a, b, out),
        (CpuStorage::F64(a), CpuStorage::F64(b), CpuStorage::F64(out)) => problem.run(engine, a, b, out),
        (a, b, out) if a.dtype() == b.dtype() && b.dtype() == out.dtype() => {
            Err(unsupported_dtype("matmul", a.dtype()))
        }
        (a, b, out) => Err(BackendError::invalid(format!(
            "matmul: dtypes differ (a {}, b {}, out {}); this kernel needs them equal",
            a.dtype(),
            b.dtype(),
            out.dtype()
        ))),
    }
}

/// A validated batched product: per batch, an `m × k` times `k × n` GEMM.
struct BatchedProblem {
    m: usize,
    k: usize,
    n: usize,
    /// Stored (untransposed) matrix dims of `a` and `b`.
    a_dims: (usize, usize),
    b_dims: (usize, usize),
    transpose_a: bool,
    transpose_b: bool,
    /// Element offset of each batch's matrix in `a` and `b`, in `out`'s batch order
    /// (broadcast batches repeat an offset).
    a_offsets: Vec<usize>,
    b_offsets: Vec<usize>,
    /// `a` has one matrix per output batch, laid out in output order.
    a_dense: bool,
}

impl BatchedProblem {
    /// Precomputes the per-batch offsets. The shapes have passed `shape::matmul`.
    fn new(a: &[usize], b: &[usize], out: &[usize], transpose_a: bool, transpose_b: bool) -> Self {
        let (a_batch, a_dims) = split_matrix(a);
        let (b_batch, b_dims) = split_matrix(b);
        let (out_batch, _) = split_matrix(out);
        let (m, k) = if transpose_a { (a_dims.1, a_dims.0) } else { a_dims };
        let n = if transpose_b { b_dims.0 } else { b_dims.1 };
        let offsets = |batch: &[usize], matrix: usize| -> Vec<usize> {
            let strides: Vec<isize> =
                broadcast_strides(batch, out_batch).into_iter().map(|s| s * matrix as isize).collect();
            StridedIndex::new(out_batch, &strides, 0).collect()
        };
        // Without broadcasting, `a`'s batch dims (padded with leading 1s) equal `out`'s, so its
        // matrices are already in output order.
        let a_dense = a_batch.iter().product::<usize>() == out_batch.iter().product::<usize>();
        BatchedProblem {
            m,
            k,
            n,
            a_dims,
            b_dims,
            transpose_a,
            transpose_b,
            a_offsets: offsets(a_batch, a_dims.0 * a_dims.1),
            b_offsets: offsets(b_batch, b_dims.0 * b_dims.1),
            a_dense,
        }
    }

    fn view<'a, T>(data: &'a [T], offset: usize, dims: (usize, usize), transpose: bool) -> Result<MatView<'a, T>> {
        let matrix = data.get(offset..offset + dims.0 * dims.1).ok_or_else(|| {
            BackendError::internal(format!("matmul: matrix at offset {offset} lies outside {} elements", data.len()))
        })?;
        let view = MatView::row_major(matrix, dims.0, dims.1);
        Ok(if transpose { view.t() } else { view })
    }

    fn run<T: GemmScalar>(&self, engine: &dyn GemmEngine, a: &[T], b: &[T], out: &mut [T]) -> Result<()> {
        let (m, n) = (self.m, self.n);
        if m == 0 || n == 0 || self.a_offsets.is_empty() {
            return Ok(());
        }
        let batches = self.a_offsets.len();
        let single_b = self.b_offsets.iter().all(|&o| o == 0);
        if batches > 1 && single_b && self.a_dense && !self.transpose_a {
            // Dense-layer case: stacking the batches of `a` gives one (batch·m) × k matrix that
            // shares `b`, and one large GEMM beats many small ones.
            let lhs = MatView::row_major(a, batches * m, self.k);
            let rhs = Self::view(b, 0, self.b_dims, self.transpose_b)?;
            return gemm(engine, lhs, rhs, out, n, false);
        }
        let one = |(dst, (&a_off, &b_off)): (&mut [T], (&usize, &usize))| {
            let lhs = Self::view(a, a_off, self.a_dims, self.transpose_a)?;
            let rhs = Self::view(b, b_off, self.b_dims, self.transpose_b)?;
            gemm(engine, lhs, rhs, dst, n, false)
        };
        let pairs = self.a_offsets.iter().zip(&self.b_offsets);
        let work = m.saturating_mul(n).saturating_mul(self.k);
        if work < PARALLEL_WORK && work.saturating_mul(batches) >= PARALLEL_WORK && several_threads() {
            // Each GEMM is too small to parallelise internally, but together they are worth
            // spreading over the pool.
            let pairs: Vec<_> = pairs.collect();
            out.par_chunks_mut(m * n).zip(pairs).try_for_each(one)
        } else {
            out.chunks_mut(m * n).zip(pairs).try_for_each(one)
        }
    }
}

/// Splits a rank >= 2 shape into its batch dims and its matrix dims.
fn split_matrix(shape: &[usize]) -> (&[usize], (usize, usize)) {
    match shape {
        [batch @ .., rows, cols] => (batch, (*rows, *cols)),
        // Unreachable after `shape::matmul`; a degenerate answer keeps this total.
        _ => (shape, (0, 0)),
    }
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
        gemm(&RustGemm, MatView::row_major(&a, 2, 3), MatView::row_major(&b, 3, 2), &mut c, 2, false).unwrap();
        assert_eq!(c, [4., 5., 10., 11.]);
        // accumulate, with a transposed lhs view: aᵀ of [[1,4],[2,5],[3,6]] is a.
        let at = [1.0f32, 4., 2., 5., 3., 6.];
        gemm(&RustGemm, MatView::row_major(&at, 3, 2).t(), MatView::row_major(&b, 3, 2), &mut c, 2, true).unwrap();
        assert_eq!(c, [8., 10., 20., 22.]);
    }

    /// Deterministic values in [-1, 1) that are not a simple pattern.
    fn data(len: usize, seed: u64) -> Vec<f64> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 11) as f64 / (1u64 << 52) as f64 - 1.0
            })
            .collect()
    }

    /// Reference batched product by the definition, in f64, with broadcasting done by index.
    fn naive(a: &[f64], a_shape: &[usize], b: &[f64], b_shape: &[usize], ta: bool, tb: bool) -> (Vec<f64>, Vec<usize>) {
        let out_shape = shape::matmul(a_shape, b_shape, ta, tb).unwrap();
        let rank = out_shape.len();
        let (m, n) = (out_shape[rank - 2], out_shape[rank - 1]);
        let (ar, ac) = (a_shape[a_shape.len() - 2], a_shape[a_shape.len() - 1]);
        let (br, bc) = (b_shape[b_shape.len() - 2], b_shape[b_shape.len() - 1]);
        let k = if ta { ar } else { ac };
        let batch_shape = &out_shape[..rank - 2];
        let batches: usize = batch_shape.iter().product();
        // Flat batch index of `operand` for output batch `i`: drop the broadcast coordinates.
        let batch_of = |i: usize, operand: &[usize]| {
            let op_batch = &operand[..operand.len() - 2];
            let lead = batch_shape.len() - op_batch.len();
            let mut rest = i;
            let mut coords = vec![0; batch_shape.len()];
            for d in (0..batch_shape.len()).rev() {
                coords[d] = rest % batch_shape[d];
                rest /= batch_shape[d];
            }
            op_batch
                .iter()
                .enumerate()
                .fold(0, |acc, (d, &dim)| acc * dim + if dim == 1 { 0 } else { coords[d + lead] })
        };
        let mut out = vec![0.0; batches * m * n];
        for i in 0..batches {
            let (ab, bb) = (batch_of(i, a_shape) * ar * ac, batch_of(i, b_shape) * br * bc);
            for r in 0..m {
                for c in 0..n {
                    let mut acc = 0.0;
                    for p in 0..k {
                        let x = if ta { a[ab + p * ac + r] } else { a[ab + r * ac + p] };
                        let y = if tb { b[bb + c * bc + p] } else { b[bb + p * bc + c] };
                        acc += x * y;
                    }
                    out[i * m * n + r * n + c] = acc;
                }
            }
        }
        (out, out_shape)
    }

    /// Runs the kernel in f32 and compares with the f64 reference.
    fn check_f32(a_shape: &[usize], b_shape: &[usize], ta: bool, tb: bool) {
        let a = data(a_shape.iter().product(), 1);
        let b = data(b_shape.iter().product(), 2);
        let (want, out_shape) = naive(&a, a_shape, &b, b_shape, ta, tb);
        let a32 = CpuStorage::F32(a.iter().map(|&v| v as f32).collect());
        let b32 = CpuStorage::F32(b.iter().map(|&v| v as f32).collect());
        let mut out = CpuStorage::F32(vec![f32::NAN; want.len()]);
        matmul(
            &RustGemm,
            Tensor { data: &a32, shape: a_shape },
            Tensor { data: &b32, shape: b_shape },
            TensorMut { data: &mut out, shape: &out_shape },
            ta,
            tb,
        )
        .unwrap();
        let CpuStorage::F32(got) = out else { unreachable!() };
        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g as f64 - w).abs() <= 1e-4 * (1.0 + w.abs()),
                "{a_shape:?}·{b_shape:?} ({ta}, {tb}) at {i}: {g} vs {w}"
            );
        }
    }

    fn run_f32(
        a: &[f32],
        a_shape: &[usize],
        b: &[f32],
        b_shape: &[usize],
        out_shape: &[usize],
        ta: bool,
        tb: bool,
    ) -> Result<Vec<f32>> {
        let (a, b) = (CpuStorage::F32(a.to_vec()), CpuStorage::F32(b.to_vec()));
        let mut out = CpuStorage::F32(vec![f32::NAN; out_shape.iter().product()]);
        matmul(
            &RustGemm,
            Tensor { data: &a, shape: a_shape },
            Tensor { data: &b, shape: b_shape },
            TensorMut { data: &mut out, shape: out_shape },
            ta,
            tb,
        )?;
        let CpuStorage::F32(out) = out else { unreachable!() };
        Ok(out)
    }

    #[test]
    fn matmul_by_hand() {
        // [[1,2,3],[4,5,6]] · [[7,8],[9,10],[11,12]] = [[58,64],[139,154]]
        let a = [1.0, 2., 3., 4., 5., 6.];
        let b = [7.0, 8., 9., 10., 11., 12.];
        assert_eq!(run_f32(&a, &[2, 3], &b, &[3, 2], &[2, 2], false, false).unwrap(), [58., 64., 139., 154.]);
        // aᵀ·bᵀ with a read as [3, 2] and b as [2, 3]: aᵀ = [[1,3,5],[2,4,6]], bᵀ = [[7,10],[8,11],[9,12]].
        assert_eq!(run_f32(&a, &[3, 2], &b, &[2, 3], &[2, 2], true, true).unwrap(), [76., 103., 100., 136.]);
        // a · bᵀ with b read as [2, 3]: bᵀ = [[7,10],[8,11],[9,12]].
        assert_eq!(run_f32(&a, &[2, 3], &b, &[2, 3], &[2, 2], false, true).unwrap(), [50., 68., 122., 167.]);
    }

    #[test]
    fn matmul_transposes_and_sizes_match_reference() {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let (m, k, n) = (17, 33, 9);
            let a_shape = if ta { [k, m] } else { [m, k] };
            let b_shape = if tb { [n, k] } else { [k, n] };
            check_f32(&a_shape, &b_shape, ta, tb);
            let (m, k, n) = (130, 70, 65);
            let a_shape = if ta { [k, m] } else { [m, k] };
            let b_shape = if tb { [n, k] } else { [k, n] };
            check_f32(&a_shape, &b_shape, ta, tb);
        }
    }

    /// The direct kernel against an f64 product by the definition, on one thread and on two,
    /// through each way of splitting the work: panels (a multiple of the threads, or at least
    /// as many and a long k) and rows (the others). `dst` rows are wider than the result, and
    /// the columns between must keep their values.
    #[test]
    fn direct_gemm_matches_reference_on_every_split() {
        if !avx512() {
            eprintln!("skipped: this CPU has no AVX-512, so the direct GEMM never runs");
            return;
        }
        let shapes =
            [(130, 70, 65), (20, 300, 200), (200, 300, 40), (7, 5, 16), (1, 2048, 17), (128, 512, 10), (9, 33, 8)];
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            for (m, k, n) in shapes {
                for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                    let a: Vec<f32> = data(m * k, 3).iter().map(|&v| v as f32).collect();
                    let b: Vec<f32> = data(k * n, 4).iter().map(|&v| v as f32).collect();
                    let lhs = if ta { MatView::row_major(&a, k, m).t() } else { MatView::row_major(&a, m, k) };
                    let rhs = if tb { MatView::row_major(&b, n, k).t() } else { MatView::row_major(&b, k, n) };
                    let ldc = n + 5;
                    let mut dst = vec![-7.0f32; (m - 1) * ldc + n];
                    let problem = GemmProblem { lhs, rhs, dst: &mut dst, dst_row_stride: ldc, accumulate: false };
                    assert!(pool.install(|| direct_f32(&mut { problem })), "{m}x{k}x{n} was declined");
                    for r in 0..m {
                        for c in 0..ldc.min(dst.len() - r * ldc) {
                            let got = dst[r * ldc + c];
                            if c >= n {
                                assert_eq!(got, -7.0, "{m}x{k}x{n} wrote between rows at ({r}, {c})");
                                continue;
                            }
                            let want: f64 = (0..k)
                                .map(|i| {
                                    lhs.data[r * lhs.row_stride + i * lhs.col_stride] as f64
                                        * rhs.data[i * rhs.row_stride + c * rhs.col_stride] as f64
                                })
                                .sum();
                            assert!(
                                (got as f64 - want).abs() <= 1e-4 * (1.0 + want.abs()),
                                "{m}x{k}x{n} ({ta}, {tb}) on {threads} threads at ({r}, {c}): {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// What the direct kernel does not take it leaves to the `gemm` crate, untouched.
    #[test]
    fn direct_gemm_declines_without_writing() {
        let a = vec![1.0f32; 4 * (DIRECT_MAX_K + 1)];
        let b = vec![1.0f32; (DIRECT_MAX_K + 1) * 16];
        let mut dst = vec![-7.0f32; 4 * 16];
        for (k, n, accumulate) in [(8, 16, true), (8, 7, false), (DIRECT_MAX_K + 1, 16, false)] {
            let lhs = MatView::row_major(&a[..4 * k], 4, k);
            let rhs = MatView::row_major(&b[..k * n], k, n);
            let mut problem = GemmProblem { lhs, rhs, dst: &mut dst[..4 * n], dst_row_stride: n, accumulate };
            assert!(!direct_f32(&mut problem), "k {k}, n {n}, accumulate {accumulate} was taken");
            assert!(dst.iter().all(|&v| v == -7.0));
        }
        // Fewer than 16 columns past NARROW_DIRECT_MAX_WORK.
        let (m, k, n) = (300, 1024, 8);
        assert!(m * k * n > NARROW_DIRECT_MAX_WORK);
        let (a, b) = (vec![1.0f32; m * k], vec![1.0f32; k * n]);
        let mut dst = vec![-7.0f32; m * n];
        let (lhs, rhs) = (MatView::row_major(&a, m, k), MatView::row_major(&b, k, n));
        let mut problem = GemmProblem { lhs, rhs, dst: &mut dst, dst_row_stride: n, accumulate: false };
        assert!(!direct_f32(&mut problem), "{m}x{k}x{n} was taken");
        assert!(dst.iter().all(|&v| v == -7.0));
    }

    #[test]
    fn matmul_batch_broadcasts_both_sides() {
        // folded dense-layer path, and the same with a transposed lhs (not foldable)
        check_f32(&[5, 2, 3], &[3, 4], false, false);
        check_f32(&[5, 3, 2], &[1, 3, 4], true, false);
        check_f32(&[2, 1, 3, 4], &[5, 4, 6], false, false);
        check_f32(&[3, 4], &[2, 5, 4, 6], false, false);
        check_f32(&[2, 1, 6, 4], &[3, 5, 6], true, true);
        check_f32(&[4, 7, 9], &[4, 9, 3], false, false);
        // many small batches, spread over rayon's pool
        check_f32(&[300, 8, 16], &[300, 8, 16], false, true);
        check_f32(&[300, 16, 8], &[1, 16, 8], true, false);
        // enough batches of large matrices to take the sequential path with parallel GEMMs
        check_f32(&[3, 70, 80], &[3, 80, 60], false, false);
    }

    #[test]
    fn matmul_f64_matches_reference() {
        let (a_shape, b_shape) = ([2, 3, 17, 33], [33, 9]);
        let a = data(2 * 3 * 17 * 33, 3);
        let b = data(33 * 9, 4);
        let (want, out_shape) = naive(&a, &a_shape, &b, &b_shape, false, false);
        let (a, b) = (CpuStorage::F64(a), CpuStorage::F64(b));
        let mut out = CpuStorage::F64(vec![0.0; want.len()]);
        matmul(
            &RustGemm,
            Tensor { data: &a, shape: &a_shape },
            Tensor { data: &b, shape: &b_shape },
            TensorMut { data: &mut out, shape: &out_shape },
            false,
            false,
        )
        .unwrap();
        let CpuStorage::F64(got) = out else { unreachable!() };
        assert!(got.iter().zip(&want).all(|(g, w)| (g - w).abs() < 1e-12));
    }

    #[test]
    fn matmul_empty_contraction_gives_zeros() {
        assert_eq!(run_f32(&[], &[2, 0], &[], &[0, 3], &[2, 3], false, false).unwrap(), [0.0; 6]);
        assert_eq!(run_f32(&[], &[4, 2, 0], &[], &[0, 3], &[4, 2, 3], false, false).unwrap(), [0.0; 24]);
        assert_eq!(run_f32(&[], &[4, 0, 2], &[], &[4, 0, 3], &[4, 2, 3], true, false).unwrap(), [0.0; 24]);
        assert!(run_f32(&[], &[0, 2, 3], &[1.0; 6], &[3, 2], &[0, 2, 2], false, false).unwrap().is_empty());
    }

    #[test]
    fn matmul_refuses_bad_shapes_and_dtypes() {
        let err = run_f32(&[0.0; 6], &[2, 3], &[0.0; 6], &[2, 3], &[2, 3], false, false).unwrap_err();
        assert!(err.message.contains("[2, 3]") && err.message.starts_with("matmul"), "{}", err.message);
        let err = run_f32(&[0.0; 6], &[2, 3], &[0.0; 6], &[3, 2], &[3, 3], false, false).unwrap_err();
        assert!(err.message.contains("[2, 3]") && err.message.contains("[3, 2]") && err.message.contains("[3, 3]"));
        assert!(run_f32(&[0.0; 6], &[6], &[0.0; 6], &[6, 1], &[1], false, false).is_err());
        let err = run_f32(&[0.0; 12], &[2, 2, 3], &[0.0; 18], &[3, 3, 2], &[3, 2, 2], false, false).unwrap_err();
        assert!(err.message.contains("batch"), "{}", err.message);

        let (a, b) = (CpuStorage::F32(vec![0.0; 4]), CpuStorage::F64(vec![0.0; 4]));
        let mut out = CpuStorage::F32(vec![0.0; 4]);
        let t = |data| Tensor { data, shape: &[2, 2] };
        let err =
            matmul(&RustGemm, t(&a), t(&b), TensorMut { data: &mut out, shape: &[2, 2] }, false, false).unwrap_err();
        assert!(err.message.contains("float64"), "{}", err.message);
        let ints = CpuStorage::I32(vec![0; 4]);
        let mut out = CpuStorage::I32(vec![0; 4]);
        let err = matmul(&RustGemm, t(&ints), t(&ints), TensorMut { data: &mut out, shape: &[2, 2] }, false, false)
            .unwrap_err();
        assert!(err.is_unsupported());
    }

    #[test]
    fn gemm_refuses_bad_views() {
        let a = [1.0f64; 6];
        let mut c = [0.0f64; 4];
        assert!(gemm(&RustGemm, MatView::row_major(&a, 2, 3), MatView::row_major(&a, 2, 3), &mut c, 2, false).is_err());
    }
}
