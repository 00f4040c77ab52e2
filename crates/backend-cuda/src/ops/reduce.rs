//! reduce, arg_reduce and softmax (kernels in `kernels/reduce.cu`).
//!
//! The arithmetic is the cpu backend's: float sums, products and means accumulate in `f64`,
//! integer ones in 64 bits with wrap-around, max and min propagate NaN, integer means truncate.
//! Every kernel comes as a `_block` variant (one block of [`THREADS`] threads per output, a
//! shared-memory tree) and a `_thread` variant (one thread per output); [`one_thread_per_output`]
//! picks by size.

use cudarc::driver::LaunchConfig;
use keras_backend_api::{ArgReduceOp, BackendError, DType, ReduceOp, TensorRef, shape};

use crate::{
    Device, Result,
    device::{Kernel, grid_1d},
    index::{Space, View},
    ops::{dtype_suffix, refuse_alias},
};

/// The module of this family's kernels.
const MODULE: &str = "reduce";

/// Threads per block of the `_block` kernels (`REDUCE_THREADS` in `reduce.cu`).
const THREADS: u32 = 256;

/// The most blocks a `_block` launch uses; the kernels loop over the outputs beyond that.
const MAX_BLOCKS: usize = 65_535;

/// Whether each output gets one thread (a sequential loop over its elements) rather than a
/// block: when there are few elements per output, or enough outputs to fill the device with
/// threads that each have a moderate loop.
fn one_thread_per_output(outputs: usize, per_output: usize) -> bool {
    per_output <= 32 || (outputs >= 16_384 && per_output <= 1_024)
}

/// The launch of a `_block` kernel over `outputs` outputs.
fn block_grid(outputs: usize) -> LaunchConfig {
    let blocks = outputs.clamp(1, MAX_BLOCKS) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }
}

/// `x`'s axes split into the kept ones (walked by output index) and the reduced ones, each
/// with `x`'s element strides. Axes of length 1 are dropped and adjacent axes of the same kind
/// merged, so that a typical reduction has one reduced axis.
#[derive(Debug, PartialEq, Eq)]
struct Split {
    kept_dims: Vec<usize>,
    kept_strides: Vec<isize>,
    reduced_dims: Vec<usize>,
    reduced_strides: Vec<isize>,
}

impl Split {
    /// `axes` have been checked (distinct, below `shape.len()`).
    fn new(shape: &[usize], axes: &[usize]) -> Split {
        let strides = shape::contiguous_strides(shape);
        // (length, stride, reduced) of each group of adjacent axes.
        let mut groups: Vec<(usize, usize, bool)> = Vec::new();
        for (axis, (&d, &s)) in shape.iter().zip(&strides).enumerate() {
            let reduced = axes.contains(&axis);
            if d == 1 {
                continue;
            }
            match groups.last_mut() {
                // Dense row-major: the previous group's stride is this axis's stride times
                // its length, so the two walk as one axis (checked, not assumed).
                Some(last) if last.2 == reduced && last.1 == s.saturating_mul(d) => {
                    last.0 *= d;
                    last.1 = s;
                }
                _ => groups.push((d, s, reduced)),
            }
        }
        let pick = |want: bool| -> (Vec<usize>, Vec<isize>) {
            groups.iter().filter(|g| g.2 == want).map(|g| (g.0, g.1 as isize)).unzip()
        };
        let (kept_dims, kept_strides) = pick(false);
        let (reduced_dims, reduced_strides) = pick(true);
        Split { kept_dims, kept_strides, reduced_dims, reduced_strides }
    }
}

/// The name of the reduce kernel for `op` on `dtype`, `_block` or `_thread`.
fn reduce_kernel_name(op: ReduceOp, dtype: DType, block: bool) -> String {
    let op = match op {
        ReduceOp::Sum => "sum",
        ReduceOp::Prod => "prod",
        ReduceOp::Max => "max",
        ReduceOp::Min => "min",
        ReduceOp::Mean => "mean",
        ReduceOp::Any => "any",
        ReduceOp::All => "all",
    };
    format!("reduce_{}_{op}_{}", if block { "block" } else { "thread" }, dtype_suffix(dtype))
}

/// The name of the arg-reduce kernel for `op` on `dtype` writing `out` indices.
fn arg_kernel_name(op: ArgReduceOp, dtype: DType, out: DType, block: bool) -> String {
    let op = match op {
        ArgReduceOp::ArgMax => "argmax",
        ArgReduceOp::ArgMin => "argmin",
    };
    format!("arg_{}_{op}_{}_{}", if block { "block" } else { "thread" }, dtype_suffix(dtype), dtype_suffix(out))
}

/// The name of the softmax kernel for `dtype`.
fn softmax_kernel_name(dtype: DType, block: bool) -> String {
    format!("softmax_{}_{}", if block { "block" } else { "thread" }, dtype_suffix(dtype))
}

/// Reduces `x` over the distinct `axes` into `out`, whose shape is `x`'s with those axes
/// removed or kept as 1. `Sum`, `Prod`, `Max`, `Min` and `Mean` keep the numeric dtype
/// (integer `Mean` truncates toward zero); `Any` and `All` take and give `Bool`. An empty
/// reduction gives the identity; an empty `axes` copies `x`.
pub fn reduce(device: &Device, op: ReduceOp, x: TensorRef<'_>, axes: &[usize], out: TensorRef<'_>) -> Result<()> {
    refuse_alias("reduce", &[x], out)?;
    let xo = device.operand("reduce", "x", x)?;
    let oo = device.operand("reduce", "out", out)?;
    let kernel = format!("reduce({op:?})");
    let drop = shape::reduced(&x.shape, axes, false)
        .map_err(|e| BackendError::invalid(format!("{kernel}: {e} (x has shape {:?})", x.shape.as_slice())))?;
    let keep = shape::reduced(&x.shape, axes, true)
        .map_err(|e| BackendError::invalid(format!("{kernel}: {e} (x has shape {:?})", x.shape.as_slice())))?;
    if out.shape.as_slice() != drop && out.shape.as_slice() != keep {
        return Err(BackendError::invalid(format!(
            "{kernel}: out has shape {:?}, but reducing {:?} over axes {axes:?} gives {drop:?} (or {keep:?} keeping dims)",
            out.shape.as_slice(),
            x.shape.as_slice()
        )));
    }
    let dtype = xo.dtype;
    if oo.dtype != dtype {
        return Err(BackendError::invalid(format!(
            "{kernel}: out is {} but `x` is {dtype}; they must match",
            oo.dtype
        )));
    }
    match (op, dtype) {
        (ReduceOp::Any | ReduceOp::All, DType::Bool) => {}
        (ReduceOp::Any | ReduceOp::All, _) => {
            return Err(BackendError::invalid(format!("{kernel}: takes bool tensors, got {dtype}")));
        }
        (_, DType::Bool) => {
            return Err(BackendError::invalid(format!("{kernel}: not defined for bool tensors (cast them first)")));
        }
        // F16 too: the cpu backend reduces it (in f32), so this backend does the same.
        _ => {}
    }
    if oo.len == 0 {
        return Ok(());
    }
    if axes.is_empty() {
        // A reduction of one element is that element for every op (exact through f64/i64).
        return device.copy(&kernel, oo.ptr, xo.ptr, xo.len * dtype.size_in_bytes());
    }
    let split = Split::new(&x.shape, axes);
    let ks = Space::new(&kernel, &split.kept_dims)?;
    let kv = View::new(&kernel, 0, &split.kept_strides)?;
    let rs = Space::new(&kernel, &split.reduced_dims)?;
    let rv = View::new(&kernel, 0, &split.reduced_strides)?;
    // An empty `x` with a non-empty `out` reduces empty sets: the kernels give the identity.
    let reduced_len = if xo.len == 0 { 0 } else { xo.len / oo.len };
    let n_out = oo.len as i64;
    let n_red = reduced_len as i64;
    let block = !one_thread_per_output(oo.len, reduced_len);
    let name = reduce_kernel_name(op, dtype, block);
    let cfg = if block { block_grid(oo.len) } else { grid_1d(oo.len) };
    crate::launch!(device, Kernel { module: MODULE, function: &name }, cfg;
        oo.ptr, xo.ptr, ks, kv, rs, rv, n_out, n_red)
}

/// `x` as `[outer, n, inner]` around `axis` (`axis` < rank).
fn around_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    (outer, shape[axis], inner)
}

/// Index of the maximum (or minimum) along `axis`, written as `I64` or `I32` (`out`'s dtype);
/// `out`'s shape is `x`'s without `axis` or with it as 1. Ties give the first index; a NaN
/// counts as the extreme (the first NaN wins), as in NumPy and the cpu backend.
pub fn arg_reduce(device: &Device, op: ArgReduceOp, x: TensorRef<'_>, axis: usize, out: TensorRef<'_>) -> Result<()> {
    refuse_alias("arg_reduce", &[x], out)?;
    let xo = device.operand("arg_reduce", "x", x)?;
    let oo = device.operand("arg_reduce", "out", out)?;
    let kernel = format!("arg_reduce({op:?})");
    let (Some(&n), Ok(drop), Ok(keep)) =
        (x.shape.get(axis), shape::reduced(&x.shape, &[axis], false), shape::reduced(&x.shape, &[axis], true))
    else {
        return Err(BackendError::invalid(format!(
            "{kernel}: axis {axis} is out of range for `x` of shape {:?}",
            x.shape.as_slice()
        )));
    };
    if n == 0 {
        return Err(BackendError::invalid(format!(
            "{kernel}: axis {axis} of `x` {:?} has length 0, so there is no extreme to index",
            x.shape.as_slice()
        )));
    }
    if out.shape.as_slice() != drop && out.shape.as_slice() != keep {
        return Err(BackendError::invalid(format!(
            "{kernel}: out has shape {:?}, but `x` {:?} along axis {axis} gives {drop:?} (or {keep:?})",
            out.shape.as_slice(),
            x.shape.as_slice()
        )));
    }
    if xo.dtype == DType::Bool {
        return Err(BackendError::invalid(format!("{kernel}: takes numeric tensors, got bool")));
    }
    match oo.dtype {
        DType::I64 => {}
        DType::I32 if n <= i32::MAX as usize => {}
        DType::I32 => {
            return Err(BackendError::invalid(format!(
                "{kernel}: axis {axis} has {n} entries, too many for int32 indices"
            )));
        }
        other => {
            return Err(BackendError::invalid(format!("{kernel}: out is {other} but must be int64 or int32")));
        }
    }
    if oo.len == 0 {
        return Ok(());
    }
    let (_, n, inner) = around_axis(&x.shape, axis);
    let block = !one_thread_per_output(oo.len, n);
    let name = arg_kernel_name(op, xo.dtype, oo.dtype, block);
    let cfg = if block { block_grid(oo.len) } else { grid_1d(oo.len) };
    let (n_out, n, inner) = (oo.len as i64, n as i64, inner as i64);
    crate::launch!(device, Kernel { module: MODULE, function: &name }, cfg; oo.ptr, xo.ptr, n_out, n, inner)
}

/// Softmax (or log-softmax when `log`) of `x` along `axis` into `out` (same shape and dtype,
/// `F32` or `F64`). Stable: each slice is shifted by its maximum before `exp`, the sum runs in
/// `f64`, and log-softmax is `x - max - ln Σ exp(x - max)`, as on the cpu backend.
pub fn softmax(device: &Device, x: TensorRef<'_>, axis: usize, log: bool, out: TensorRef<'_>) -> Result<()> {
    refuse_alias("softmax", &[x], out)?;
    let xo = device.operand("softmax", "x", x)?;
    let oo = device.operand("softmax", "out", out)?;
    let kernel = if log { "softmax(log)" } else { "softmax" };
    if axis >= x.shape.len() {
        return Err(BackendError::invalid(format!(
            "{kernel}: axis {axis} is out of range for `x` of shape {:?}",
            x.shape.as_slice()
        )));
    }
    if x.shape.as_slice() != out.shape.as_slice() {
        return Err(BackendError::invalid(format!(
            "{kernel}: out has shape {:?} but `x` has shape {:?}; they must be equal",
            out.shape.as_slice(),
            x.shape.as_slice()
        )));
    }
    match xo.dtype {
        DType::F32 | DType::F64 => {}
        DType::F16 => return Err(BackendError::unsupported(format!("{kernel} on {}", DType::F16))),
        other => return Err(BackendError::invalid(format!("{kernel}: takes float tensors, got {other}"))),
    }
    if oo.dtype != xo.dtype {
        return Err(BackendError::invalid(format!("{kernel}: `out` is {} but must be {} here", oo.dtype, xo.dtype)));
    }
    if oo.len == 0 {
        return Ok(());
    }
    let (outer, n, inner) = around_axis(&x.shape, axis);
    let rows = outer * inner;
    let block = !one_thread_per_output(rows, n);
    let name = softmax_kernel_name(xo.dtype, block);
    let cfg = if block { block_grid(rows) } else { grid_1d(rows) };
    let (rows, n, inner, log_softmax) = (rows as i64, n as i64, inner as i64, i32::from(log));
    crate::launch!(device, Kernel { module: MODULE, function: &name }, cfg;
        oo.ptr, xo.ptr, rows, n, inner, log_softmax)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(shape: &[usize], axes: &[usize]) -> (Vec<usize>, Vec<isize>, Vec<usize>, Vec<isize>) {
        let s = Split::new(shape, axes);
        (s.kept_dims, s.kept_strides, s.reduced_dims, s.reduced_strides)
    }

    #[test]
    fn adjacent_axes_of_a_kind_merge_and_ones_drop() {
        // Trailing axes: rows.
        assert_eq!(split(&[4, 5, 6], &[1, 2]), (vec![4], vec![30], vec![30], vec![1]));
        // Leading axes: columns.
        assert_eq!(split(&[4, 5, 6], &[0, 1]), (vec![6], vec![1], vec![20], vec![6]));
        // Middle axis, with length-1 axes dropped on the way.
        assert_eq!(split(&[2, 1, 3, 1, 4], &[2]), (vec![2, 4], vec![12, 1], vec![3], vec![4]));
        // Alternating kinds stay separate.
        assert_eq!(split(&[2, 3, 4, 5], &[0, 2]), (vec![3, 5], vec![20, 1], vec![2, 4], vec![60, 5]));
        // A length-1 axis between two kept axes does not stop them merging.
        assert_eq!(split(&[2, 1, 3], &[1]), (vec![6], vec![1], vec![], vec![]));
        // Everything reduced; a scalar.
        assert_eq!(split(&[3, 4], &[0, 1]), (vec![], vec![], vec![12], vec![1]));
        assert_eq!(split(&[], &[]), (vec![], vec![], vec![], vec![]));
    }

    /// Walks the split the way the kernels do and checks that every element of `x` is visited
    /// exactly once, by the output the naive index mapping gives it.
    #[test]
    fn split_visits_each_element_once_for_its_output() {
        let cases: &[(&[usize], &[usize])] = &[
            (&[2, 3, 4], &[1]),
            (&[2, 3, 4], &[0, 2]),
            (&[1, 3, 1, 2], &[0, 3]),
            (&[5, 1, 2, 3], &[1, 2]),
            (&[2, 2, 2, 2, 2], &[0, 2, 4]),
        ];
        for &(shape, axes) in cases {
            let s = Split::new(shape, axes);
            let len: usize = shape.iter().product();
            let out_len: usize = s.kept_dims.iter().product();
            let red_len: usize = s.reduced_dims.iter().product();
            assert_eq!(out_len * red_len, len);
            let offset = |dims: &[usize], strides: &[isize], mut linear: usize| -> isize {
                let mut off = 0;
                for (&d, &st) in dims.iter().zip(strides).rev() {
                    off += (linear % d) as isize * st;
                    linear /= d;
                }
                off
            };
            let keep_shape = shape::reduced(shape, axes, true).unwrap();
            let mut seen = vec![false; len];
            for o in 0..out_len {
                for r in 0..red_len {
                    let e = (offset(&s.kept_dims, &s.kept_strides, o) + offset(&s.reduced_dims, &s.reduced_strides, r))
                        as usize;
                    assert!(!std::mem::replace(&mut seen[e], true), "{shape:?} {axes:?}: {e} twice");
                    // The output of element e: its index with the reduced axes zeroed.
                    let mut rem = e;
                    let mut idx = vec![0; shape.len()];
                    for k in (0..shape.len()).rev() {
                        idx[k] = rem % shape[k];
                        rem /= shape[k];
                    }
                    let want = (0..shape.len())
                        .fold(0, |acc, k| acc * keep_shape[k] + if axes.contains(&k) { 0 } else { idx[k] });
                    assert_eq!(want, o, "{shape:?} {axes:?}: element {e}");
                }
            }
            assert!(seen.iter().all(|&v| v));
        }
    }

    #[test]
    fn kernel_choice_and_names() {
        assert!(one_thread_per_output(10, 3));
        assert!(one_thread_per_output(100_000, 500));
        assert!(!one_thread_per_output(4_096, 1_000));
        assert!(!one_thread_per_output(1, 1_000_000));
        assert_eq!(reduce_kernel_name(ReduceOp::Mean, DType::I32, true), "reduce_block_mean_i32");
        assert_eq!(reduce_kernel_name(ReduceOp::Any, DType::Bool, false), "reduce_thread_any_bool");
        assert_eq!(block_grid(1_000_000).grid_dim.0, 65_535);
        assert_eq!(block_grid(7).grid_dim.0, 7);
        assert_eq!(around_axis(&[2, 3, 4], 1), (2, 3, 4));
        assert_eq!(around_axis(&[5], 0), (1, 5, 1));
    }

    /// Every kernel name the host can ask for is an entry of the compiled module (skipped
    /// without NVRTC, like `tests/kernel_sources.rs`).
    #[test]
    fn every_named_kernel_is_an_entry_of_the_module() {
        if !crate::libraries::nvrtc_present() {
            eprintln!("skipped: NVRTC is not on the library path");
            return;
        }
        let ptx = crate::kernels::compile(crate::kernels::source(MODULE).unwrap(), "sm_80").unwrap().to_src();
        let numeric = [DType::F16, DType::F32, DType::F64, DType::I32, DType::I64, DType::U8];
        let mut names = Vec::new();
        for block in [false, true] {
            for op in [ReduceOp::Sum, ReduceOp::Prod, ReduceOp::Max, ReduceOp::Min, ReduceOp::Mean] {
                names.extend(numeric.iter().map(|&d| reduce_kernel_name(op, d, block)));
            }
            names.extend([ReduceOp::Any, ReduceOp::All].map(|op| reduce_kernel_name(op, DType::Bool, block)));
            for op in [ArgReduceOp::ArgMax, ArgReduceOp::ArgMin] {
                for out in [DType::I64, DType::I32] {
                    names.extend(numeric.iter().map(|&d| arg_kernel_name(op, d, out, block)));
                }
            }
            names.extend([DType::F32, DType::F64].map(|d| softmax_kernel_name(d, block)));
        }
        names.extend([DType::F32, DType::F64].map(crate::ops::matmul::copy_kernel_name));
        for name in names {
            assert!(ptx.contains(&format!(".entry {name}(")), "{name} is not in the PTX");
        }
    }
}
