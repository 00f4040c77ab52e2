//! # backend-blas: the `blas` backend of keras-rs
//!
//! `libkeras_backend_blas.so` is [`backend_cpu`]'s backend with one part swapped: every GEMM
//! (matmul with its batch and transpose flags, so `dot` and `batch_dot` too, and the GEMMs the
//! three convolution kernels are lowered to) runs on the system OpenBLAS through
//! `cblas_sgemm` / `cblas_dgemm` ([`OpenBlas`]). Every other kernel, and all argument checking,
//! is backend-cpu's, linked from its rlib through [`CpuBackend::with_gemm`].
//!
//! OpenBLAS is linked dynamically from the system (Debian's `libopenblas-dev`; the README's
//! "Backends: blas" says what other systems install). It sizes its thread pool from
//! `OPENBLAS_NUM_THREADS` (else the core count) when it loads, and picks its kernels for the
//! CPU it finds (`OPENBLAS_CORETYPE` overrides that). The backend's `info` reports both, with
//! OpenBLAS's version and build configuration, in its device description.
//!
//! CBLAS is called directly (`cblas-sys`) rather than through ndarray's `blas` feature: cargo
//! unifies that feature across a workspace build, which made the `cpu` plugin need
//! `cblas_sgemm` too and fail to load.

// Nothing of blas-src is used, and the link directives of an unused crate are dropped; naming
// it keeps the `-lopenblas` that openblas-src's build script emits.
use blas_src as _;

use std::ffi::{CStr, c_char, c_int};

use backend_cpu::{CpuBackend, GemmEngine, GemmProblem, MatView, RustGemm, ops::matmul::GemmScalar};
use cblas_sys::{CBLAS_TRANSPOSE, CblasNoTrans, CblasRowMajor, CblasTrans};
use keras_backend_api::BackendError;

/// Large buffers share their pages across sizes, as in the `cpu` plugin (`backend_cpu::pages`).
#[global_allocator]
static ALLOCATOR: backend_cpu::pages::PageAllocator = backend_cpu::pages::PageAllocator;

keras_backend_api::export_backend!(name: "blas", constructor: new_backend);

/// The `blas` backend: backend-cpu's kernels with their GEMMs on [`OpenBlas`]. Never fails;
/// a missing OpenBLAS already stops the library from loading.
pub fn new_backend() -> Result<CpuBackend, BackendError> {
    Ok(CpuBackend::with_gemm("blas", env!("CARGO_PKG_VERSION"), OpenBlas))
}

/// OpenBLAS's own entry points, beyond CBLAS (declared in its `cblas.h`).
mod ffi {
    use std::ffi::{c_char, c_int};

    unsafe extern "C" {
        pub fn openblas_get_config() -> *const c_char;
        pub fn openblas_get_corename() -> *const c_char;
        pub fn openblas_get_num_threads() -> c_int;
        pub fn openblas_set_num_threads(num_threads: c_int);
    }
}

/// A static C string from OpenBLAS, or `"unknown"` for a null pointer.
fn openblas_string(s: *const c_char) -> String {
    if s.is_null() {
        return "unknown".to_string();
    }
    // SAFETY: OpenBLAS returns a pointer to a nul-terminated string in static storage.
    unsafe { CStr::from_ptr(s) }.to_string_lossy().trim().to_string()
}

/// OpenBLAS's version and build configuration, for example
/// `OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64`.
pub fn config() -> String {
    // SAFETY: no arguments; returns a static string.
    openblas_string(unsafe { ffi::openblas_get_config() })
}

/// The core type whose kernels OpenBLAS runs, for example `Haswell`.
pub fn core_name() -> String {
    // SAFETY: no arguments; returns a static string.
    openblas_string(unsafe { ffi::openblas_get_corename() })
}

/// Threads OpenBLAS runs a large GEMM on.
pub fn num_threads() -> usize {
    // SAFETY: no arguments.
    let threads = unsafe { ffi::openblas_get_num_threads() };
    usize::try_from(threads).unwrap_or(1).max(1)
}

/// Sets the threads OpenBLAS runs a large GEMM on, for the whole process. For measurements;
/// users set `OPENBLAS_NUM_THREADS` instead.
pub fn set_num_threads(threads: usize) {
    let threads = c_int::try_from(threads.max(1)).unwrap_or(c_int::MAX);
    // SAFETY: any positive count is accepted (OpenBLAS caps it at its MAX_THREADS).
    unsafe { ffi::openblas_set_num_threads(threads) }
}

/// The [`GemmEngine`] of the `blas` backend: `cblas_sgemm` and `cblas_dgemm`.
///
/// A view that CBLAS cannot describe with a transpose flag and a leading dimension (one whose
/// rows and columns are both strided, or that repeats elements), or dimensions beyond a C
/// `int`, runs on [`RustGemm`] instead; the kernels of backend-cpu never make one today.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenBlas;

impl GemmEngine for OpenBlas {
    fn gemm_f32(&self, problem: GemmProblem<'_, f32>) {
        cblas_gemm(problem);
    }

    fn gemm_f64(&self, problem: GemmProblem<'_, f64>) {
        cblas_gemm(problem);
    }

    fn describe(&self) -> Option<String> {
        let (config, core) = (config(), core_name());
        // A DYNAMIC_ARCH build already names its core in the configuration.
        Some(if config.split_whitespace().any(|word| word.eq_ignore_ascii_case(&core)) {
            config
        } else {
            format!("{config} core {core}")
        })
    }

    fn threads(&self) -> usize {
        num_threads()
    }
}

/// How CBLAS (row-major) reads one operand: as stored, or transposed, with rows `ld` apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Operand {
    transposed: bool,
    ld: c_int,
}

impl Operand {
    /// The CBLAS reading of `view`, if there is one. A one-row or one-column view has no
    /// meaningful stride in that direction, so it gets the smallest leading dimension CBLAS
    /// accepts there.
    fn of<T>(view: &MatView<'_, T>) -> Option<Operand> {
        let (rows, cols) = (view.rows, view.cols);
        // Row-major storage: element (r, c) at r·ld + c.
        if view.col_stride == 1 || cols == 1 {
            let ld = if rows == 1 { cols } else { view.row_stride };
            if ld >= cols.max(1) {
                return Some(Operand { transposed: false, ld: c_int::try_from(ld).ok()? });
            }
        }
        // The transpose of a row-major `cols × rows` matrix: element (r, c) at c·ld + r.
        if view.row_stride == 1 || rows == 1 {
            let ld = if cols == 1 { rows } else { view.col_stride };
            if ld >= rows.max(1) {
                return Some(Operand { transposed: true, ld: c_int::try_from(ld).ok()? });
            }
        }
        None
    }

    fn flag(self) -> CBLAS_TRANSPOSE {
        if self.transposed { CblasTrans } else { CblasNoTrans }
    }
}

/// One `?gemm` call's integer arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Plan {
    m: c_int,
    n: c_int,
    k: c_int,
    a: Operand,
    b: Operand,
    ldc: c_int,
}

impl Plan {
    /// The CBLAS call for `problem`, or `None` when CBLAS cannot express it.
    fn of<T: Copy>(problem: &GemmProblem<'_, T>) -> Option<Plan> {
        let (m, n) = (problem.m(), problem.n());
        let ldc = if m == 1 { n } else { problem.dst_row_stride() };
        Some(Plan {
            m: c_int::try_from(m).ok()?,
            n: c_int::try_from(n).ok()?,
            k: c_int::try_from(problem.k()).ok()?,
            a: Operand::of(&problem.lhs())?,
            b: Operand::of(&problem.rhs())?,
            ldc: c_int::try_from(ldc).ok()?,
        })
    }
}

/// The element types CBLAS has a GEMM for.
trait Cblas: GemmScalar {
    /// `?gemm`, row-major, with `alpha` 1 and `beta` 1 when `accumulate`, else 0.
    ///
    /// # Safety
    /// `plan` must describe `a`, `b` and `c` within their allocations.
    unsafe fn gemm(plan: Plan, a: *const Self, b: *const Self, accumulate: bool, c: *mut Self);
}

/// One `Cblas` impl per element type: the two differ only in the CBLAS routine called.
macro_rules! cblas_gemm {
    ($($ty:ty => $routine:path),*) => {$(
        impl Cblas for $ty {
            unsafe fn gemm(plan: Plan, a: *const $ty, b: *const $ty, accumulate: bool, c: *mut $ty) {
                let beta = if accumulate { 1.0 } else { 0.0 };
                let Plan { m, n, k, a: op_a, b: op_b, ldc } = plan;
                // SAFETY: the caller's contract.
                unsafe {
                    $routine(
                        CblasRowMajor, op_a.flag(), op_b.flag(), m, n, k, 1.0, a, op_a.ld, b, op_b.ld, beta, c, ldc,
                    )
                }
            }
        }
    )*};
}

cblas_gemm!(f32 => cblas_sys::cblas_sgemm, f64 => cblas_sys::cblas_dgemm);

/// [`OpenBlas`]'s kernel.
fn cblas_gemm<T: Cblas>(mut problem: GemmProblem<'_, T>) {
    let Some(plan) = Plan::of(&problem) else {
        return T::run_on(&RustGemm, problem);
    };
    let (lhs, rhs, accumulate) = (problem.lhs(), problem.rhs(), problem.accumulate());
    // SAFETY: a `GemmProblem` guarantees m, n, k >= 1, views in bounds for every element they
    // address, and a destination holding the m × n block with rows `dst_row_stride` apart
    // (`ldc`, or n for one row). `Plan::of` maps each view to exactly the elements it
    // addresses, with leading dimensions CBLAS accepts. With beta 0, OpenBLAS overwrites C
    // without reading it, so stale values (NaN included) do not leak into the result.
    unsafe { T::gemm(plan, lhs.data.as_ptr(), rhs.data.as_ptr(), accumulate, problem.dst().as_mut_ptr()) }
}

#[cfg(test)]
mod tests;
