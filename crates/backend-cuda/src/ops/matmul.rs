//! matmul on cuBLAS (`cublas{S,D}gemmStridedBatched`).
//!
//! cuBLAS is column-major. A row-major `m × n` matrix is the column-major `n × m` matrix of its
//! transpose, so the row-major product `C = op(A)·op(B)` is computed as the column-major
//! `Cᵀ = op(B)ᵀ·op(A)ᵀ`: `B` goes first, and each operand's transpose flag carries over as is.
//!
//! Leading batch dims broadcast. An operand with one matrix per output batch (in output order)
//! or a single matrix for all of them is a constant batch stride (0 for the single matrix);
//! any other broadcast (`[2, 1]` against `[1, 3]`) is first copied into a dense scratch buffer
//! with one matrix per output batch (`broadcast_copy_*` in `kernels/reduce.cu`).

use cudarc::cublas::{result as cublas, result::CublasError, sys as cublas_sys};
use keras_backend_api::{BackendError, DType, ErrorKind, TensorRef, shape};

use crate::{
    Device, Result,
    device::{Kernel, Operand, driver_error, grid_1d},
    index::{Space, View},
    ops::{dtype_suffix, refuse_alias},
};

const KERNEL: &str = "matmul";

/// The most batches one cuBLAS call takes (its batch count is an `int`).
const MAX_BATCH: usize = i32::MAX as usize;

/// How an operand's matrices are laid out over the output's batches.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Batches {
    /// Matrix `p` of the output batch order sits `stride` elements after matrix 0 (0: one
    /// matrix shared by every batch).
    Strided(usize),
    /// The operand broadcasts along some batch dims but not all: copy it densely first. The
    /// strides are the element strides of the operand's matrices over the output's batch dims.
    Copy(Vec<isize>),
}

impl Batches {
    /// The layout of an operand whose batch dims are `batch` (already checked to broadcast to
    /// `out_batch`) and whose matrices hold `matrix` elements each.
    fn new(batch: &[usize], out_batch: &[usize], matrix: usize) -> Batches {
        let count: usize = batch.iter().product();
        let total: usize = out_batch.iter().product();
        if count == total {
            // Equal counts (and a non-empty output) mean equal dims after padding with 1s on
            // the left, so the matrices are already in output order.
            Batches::Strided(matrix)
        } else if count == 1 {
            Batches::Strided(0)
        } else {
            Batches::Copy(shape::broadcast_strides(batch, out_batch).into_iter().map(|s| s * matrix as isize).collect())
        }
    }
}

/// One `cublas<t>gemmStridedBatched` call without its pointers and batch count, in cuBLAS's
/// column-major terms: `C = op(first)·op(second)` with `first` our `b` and `second` our `a`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GemmCall {
    transpose_first: bool,
    transpose_second: bool,
    m: i32,
    n: i32,
    k: i32,
    ld_first: i32,
    ld_second: i32,
    ldc: i32,
    stride_first: i64,
    stride_second: i64,
    stride_c: i64,
}

/// Converts a GEMM size to cuBLAS's `int`.
fn int(what: &str, value: usize) -> Result<i32> {
    i32::try_from(value).map_err(|_| {
        BackendError::invalid(format!("{KERNEL}: {what} = {value} is above cuBLAS's limit of {}", i32::MAX))
    })
}

/// Converts a batch stride to cuBLAS's `long long`.
fn long(what: &str, value: usize) -> Result<i64> {
    i64::try_from(value).map_err(|_| BackendError::invalid(format!("{KERNEL}: {what} = {value} overflows i64")))
}

impl GemmCall {
    /// The call for row-major `out (m × n) = op(a) · op(b)`, where `a` is stored
    /// `a_rows × a_cols`, `b` is stored `b_rows × b_cols`, and the batch strides are in
    /// elements. All of `m`, `n`, `k` are at least 1.
    #[allow(clippy::too_many_arguments)]
    fn new(
        (a_rows, a_cols): (usize, usize),
        (b_rows, b_cols): (usize, usize),
        transpose_a: bool,
        transpose_b: bool,
        stride_a: usize,
        stride_b: usize,
    ) -> Result<GemmCall> {
        let (m, k) = if transpose_a { (a_cols, a_rows) } else { (a_rows, a_cols) };
        let n = if transpose_b { b_rows } else { b_cols };
        // Row-major `b` is column-major `bᵀ` with leading dimension `b_cols`: that is
        // op(b)ᵀ itself when `b` is not transposed, and needs cuBLAS's transpose otherwise.
        // The same holds for `a`.
        Ok(GemmCall {
            transpose_first: transpose_b,
            transpose_second: transpose_a,
            m: int("n (columns of out)", n)?,
            n: int("m (rows of out)", m)?,
            k: int("k (the contracted dim)", k)?,
            ld_first: int("the row length of b", b_cols)?,
            ld_second: int("the row length of a", a_cols)?,
            ldc: int("n (columns of out)", n)?,
            stride_first: long("b's batch stride", stride_b)?,
            stride_second: long("a's batch stride", stride_a)?,
            stride_c: long("out's batch stride", m.saturating_mul(n))?,
        })
    }
}

/// The name of the strided copy kernel for `dtype`.
pub(crate) fn copy_kernel_name(dtype: DType) -> String {
    format!("broadcast_copy_{}", dtype_suffix(dtype))
}

/// A cuBLAS failure as the backend's error: allocation failures are `OutOfMemory`.
fn blas_error(call: &str, e: CublasError) -> BackendError {
    let kind = if e.0 == cublas_sys::cublasStatus_t::CUBLAS_STATUS_ALLOC_FAILED {
        ErrorKind::OutOfMemory
    } else {
        ErrorKind::Internal
    };
    BackendError::new(kind, format!("{KERNEL}: cuBLAS {call} failed with {:?}", e.0))
}

fn op(transpose: bool) -> cublas_sys::cublasOperation_t {
    if transpose { cublas_sys::cublasOperation_t::CUBLAS_OP_T } else { cublas_sys::cublasOperation_t::CUBLAS_OP_N }
}

/// `out = op(a) · op(b)` with batch broadcasting, where `op` transposes the last two dims when
/// its flag is set ([`keras_backend_api::shape::matmul`] gives the shape). `F32` or `F64`, all
/// three tensors of the same dtype. FP32 stays FP32 (cuBLAS's default math mode: no TF32).
pub fn matmul(
    device: &Device,
    a: TensorRef<'_>,
    b: TensorRef<'_>,
    out: TensorRef<'_>,
    transpose_a: bool,
    transpose_b: bool,
) -> Result<()> {
    refuse_alias(KERNEL, &[a, b], out)?;
    let ao = device.operand(KERNEL, "a", a)?;
    let bo = device.operand(KERNEL, "b", b)?;
    let oo = device.operand(KERNEL, "out", out)?;
    let (a_shape, b_shape, out_shape) = (a.shape.as_slice(), b.shape.as_slice(), out.shape.as_slice());
    let expected = shape::matmul(a_shape, b_shape, transpose_a, transpose_b).map_err(|e| {
        BackendError::invalid(format!("{KERNEL}: {e} (a {a_shape:?}, b {b_shape:?}, out {out_shape:?})"))
    })?;
    if expected.as_slice() != out_shape {
        return Err(BackendError::invalid(format!(
            "{KERNEL}: out has shape {out_shape:?} but a {a_shape:?} and b {b_shape:?} (transpose_a {transpose_a}, \
             transpose_b {transpose_b}) give {expected:?}"
        )));
    }
    let dtype = ao.dtype;
    if bo.dtype != dtype || oo.dtype != dtype {
        return Err(BackendError::invalid(format!(
            "{KERNEL}: dtypes differ (a {dtype}, b {}, out {}); this kernel needs them equal",
            bo.dtype, oo.dtype
        )));
    }
    if !matches!(dtype, DType::F32 | DType::F64) {
        return Err(BackendError::unsupported(format!("{KERNEL} on {dtype}")));
    }
    if oo.len == 0 {
        return Ok(());
    }
    // `shape::matmul` has checked both ranks >= 2.
    let (a_batch, a_dims) = a_shape.split_at(a_shape.len() - 2);
    let (b_batch, b_dims) = b_shape.split_at(b_shape.len() - 2);
    let out_batch = &out_shape[..out_shape.len() - 2];
    let (a_dims, b_dims) = ((a_dims[0], a_dims[1]), (b_dims[0], b_dims[1]));
    let k = if transpose_a { a_dims.0 } else { a_dims.1 };
    if k == 0 {
        // An empty sum: zeros (cuBLAS is not asked to decide what k = 0 means).
        return device.zero(KERNEL, oo.ptr, oo.len * dtype.size_in_bytes());
    }
    let batch: usize = out_batch.iter().product();
    let a_matrix = a_dims.0 * a_dims.1;
    let b_matrix = b_dims.0 * b_dims.1;
    // Scratch copies stay alive (in these bindings) until the GEMMs are issued.
    let (a_ptr, stride_a, _a_copy) = batched(device, &ao, a_batch, out_batch, a_matrix)?;
    let (b_ptr, stride_b, _b_copy) = batched(device, &bo, b_batch, out_batch, b_matrix)?;
    let call = GemmCall::new(a_dims, b_dims, transpose_a, transpose_b, stride_a, stride_b)?;
    let size = dtype.size_in_bytes() as u64;
    let blas = device.blas.lock();
    device.context().bind_to_thread().map_err(|e| driver_error(KERNEL, "binding the context", e))?;
    let handle = *blas.handle();
    // SAFETY: the handle is valid while `blas` is locked.
    unsafe { cublas_sys::cublasSetMathMode(handle, cublas_sys::cublasMath_t::CUBLAS_DEFAULT_MATH) }
        .result()
        .map_err(|e| blas_error("cublasSetMathMode", e))?;
    for start in (0..batch).step_by(MAX_BATCH) {
        let count = int("the batch count", (batch - start).min(MAX_BATCH))?;
        let start = start as u64;
        // Element offsets of this chunk's first matrices; all inside their buffers.
        let first = b_ptr + start * call.stride_first as u64 * size;
        let second = a_ptr + start * call.stride_second as u64 * size;
        let c = oo.ptr + start * call.stride_c as u64 * size;
        // SAFETY: `first`, `second` and `c` address `count` matrices at the call's strides
        // inside live device buffers (checked shapes, operands held); `c` does not overlap the
        // inputs (aliasing refused); alpha and beta are host values, cuBLAS's default pointer
        // mode; the handle is bound to the device's one stream.
        let result = unsafe {
            match dtype {
                DType::F32 => {
                    let (alpha, beta) = (1f32, 0f32);
                    cublas::sgemm_strided_batched(
                        handle,
                        op(call.transpose_first),
                        op(call.transpose_second),
                        call.m,
                        call.n,
                        call.k,
                        &alpha,
                        first as *const f32,
                        call.ld_first,
                        call.stride_first,
                        second as *const f32,
                        call.ld_second,
                        call.stride_second,
                        &beta,
                        c as *mut f32,
                        call.ldc,
                        call.stride_c,
                        count,
                    )
                }
                _ => {
                    let (alpha, beta) = (1f64, 0f64);
                    cublas::dgemm_strided_batched(
                        handle,
                        op(call.transpose_first),
                        op(call.transpose_second),
                        call.m,
                        call.n,
                        call.k,
                        &alpha,
                        first as *const f64,
                        call.ld_first,
                        call.stride_first,
                        second as *const f64,
                        call.ld_second,
                        call.stride_second,
                        &beta,
                        c as *mut f64,
                        call.ldc,
                        call.stride_c,
                        count,
                    )
                }
            }
        };
        result.map_err(|e| {
            let name = if dtype == DType::F32 { "cublasSgemmStridedBatched" } else { "cublasDgemmStridedBatched" };
            blas_error(name, e)
        })?;
    }
    Ok(())
}

/// The device address and batch stride (elements) cuBLAS reads an operand's matrices at,
/// copying it densely first when its broadcast is not a constant stride; the copy is returned
/// so that the caller keeps it alive.
fn batched(
    device: &Device,
    operand: &Operand,
    batch: &[usize],
    out_batch: &[usize],
    matrix: usize,
) -> Result<(u64, usize, Option<Operand>)> {
    match Batches::new(batch, out_batch, matrix) {
        Batches::Strided(stride) => Ok((operand.ptr, stride, None)),
        Batches::Copy(strides) => {
            let total: usize = out_batch.iter().product();
            let len = total.checked_mul(matrix).filter(|&n| n.checked_mul(operand.dtype.size_in_bytes()).is_some());
            let Some(len) = len else {
                return Err(BackendError::invalid(format!(
                    "{KERNEL}: broadcasting a batch of {total} matrices of {matrix} elements overflows"
                )));
            };
            let copy = device.scratch(KERNEL, operand.dtype, len)?;
            let dims: Vec<usize> = out_batch.iter().copied().chain([matrix]).collect();
            let strides: Vec<isize> = strides.into_iter().chain([1]).collect();
            let space = Space::new(KERNEL, &dims)?;
            let view = View::new(KERNEL, 0, &strides)?;
            let n = len as i64;
            let name = copy_kernel_name(operand.dtype);
            crate::launch!(device, Kernel { module: "reduce", function: &name }, grid_1d(len);
                copy.ptr, operand.ptr, space, view, n)?;
            Ok((copy.ptr, matrix, Some(copy)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_layouts() {
        // One matrix per output batch: dense.
        assert_eq!(Batches::new(&[2, 3], &[2, 3], 12), Batches::Strided(12));
        assert_eq!(Batches::new(&[1, 6], &[6], 12), Batches::Strided(12));
        assert_eq!(Batches::new(&[6], &[1, 6], 12), Batches::Strided(12));
        // One matrix for every batch: stride 0.
        assert_eq!(Batches::new(&[], &[4, 5], 12), Batches::Strided(0));
        assert_eq!(Batches::new(&[1, 1], &[4, 5], 12), Batches::Strided(0));
        // No batch at all.
        assert_eq!(Batches::new(&[], &[], 12), Batches::Strided(12));
        // Partial broadcasts are copied.
        assert_eq!(Batches::new(&[2, 1], &[2, 3], 10), Batches::Copy(vec![10, 0]));
        assert_eq!(Batches::new(&[3], &[2, 3], 10), Batches::Copy(vec![0, 10]));
    }

    /// cuBLAS's strided-batched GEMM on the host, column-major, as its documentation defines it.
    #[allow(clippy::too_many_arguments)]
    fn reference_gemm(call: &GemmCall, batch: usize, first: &[f64], second: &[f64], c: &mut [f64]) {
        let (m, n, k) = (call.m as usize, call.n as usize, call.k as usize);
        for p in 0..batch {
            let f = &first[p * call.stride_first as usize..];
            let s = &second[p * call.stride_second as usize..];
            let cp = &mut c[p * call.stride_c as usize..];
            for i in 0..m {
                for j in 0..n {
                    let mut acc = 0.0;
                    for l in 0..k {
                        let x = if call.transpose_first {
                            f[l + i * call.ld_first as usize]
                        } else {
                            f[i + l * call.ld_first as usize]
                        };
                        let y = if call.transpose_second {
                            s[j + l * call.ld_second as usize]
                        } else {
                            s[l + j * call.ld_second as usize]
                        };
                        acc += x * y;
                    }
                    cp[i + j * call.ldc as usize] = acc;
                }
            }
        }
    }

    /// Row-major `op(a)·op(b)` for one batch, directly from the definition.
    fn naive(a: &[f64], b: &[f64], a_dims: (usize, usize), b_dims: (usize, usize), ta: bool, tb: bool) -> Vec<f64> {
        let at = |r: usize, c: usize| if ta { a[c * a_dims.1 + r] } else { a[r * a_dims.1 + c] };
        let bt = |r: usize, c: usize| if tb { b[c * b_dims.1 + r] } else { b[r * b_dims.1 + c] };
        let (m, k) = if ta { (a_dims.1, a_dims.0) } else { a_dims };
        let n = if tb { b_dims.0 } else { b_dims.1 };
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|l| at(i, l) * bt(l, j)).sum();
            }
        }
        out
    }

    #[test]
    fn column_major_call_computes_the_row_major_product() {
        let (m, k, n, batch) = (3usize, 4usize, 5usize, 2usize);
        for ta in [false, true] {
            for tb in [false, true] {
                let a_dims = if ta { (k, m) } else { (m, k) };
                let b_dims = if tb { (n, k) } else { (k, n) };
                let a: Vec<f64> = (0..batch * m * k).map(|i| (i * 7 % 11) as f64 - 5.0).collect();
                let b: Vec<f64> = (0..batch * k * n).map(|i| (i * 5 % 13) as f64 - 6.0).collect();
                for (sa, sb) in [(m * k, k * n), (0, k * n), (m * k, 0)] {
                    let call = GemmCall::new(a_dims, b_dims, ta, tb, sa, sb).unwrap();
                    let mut c = vec![f64::NAN; batch * m * n];
                    reference_gemm(&call, batch, &b, &a, &mut c);
                    for p in 0..batch {
                        let want = naive(&a[p * sa..], &b[p * sb..], a_dims, b_dims, ta, tb);
                        assert_eq!(&c[p * m * n..(p + 1) * m * n], want.as_slice(), "ta {ta} tb {tb} p {p}");
                    }
                }
            }
        }
    }

    #[test]
    fn sizes_above_cublas_int_are_refused() {
        let big = i32::MAX as usize + 1;
        let e = GemmCall::new((2, big), (big, 3), false, false, 0, 0).unwrap_err();
        assert!(e.message.contains("matmul") && e.message.contains(&big.to_string()), "{}", e.message);
        assert_eq!(copy_kernel_name(DType::F64), "broadcast_copy_f64");
    }
}
