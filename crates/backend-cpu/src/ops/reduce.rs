//! Reductions over axis sets, and arg-reductions.
//!
//! A reduction first coalesces `x`'s shape into alternating kept and reduced groups (dropping
//! axes of length 1), then picks a loop by the pattern: reduced axes trailing (`Plan::Rows`,
//! contiguous rows), one reduced group followed by kept axes (`Plan::Columns`, accumulated
//! row by row in cache-friendly vectors), or anything else (`Plan::General`, offsets from
//! `StridedIndex`). Float sums accumulate in `f64`; integer sums and products wrap.

use half::f16;
use keras_backend_api::{ArgReduceOp, BackendError, DType, ReduceOp, shape};
use rayon::prelude::*;

use super::element::{
    CHUNK, Element, Number, PAR_THRESHOLD, for_dtype, narrow_f16, view, view_mut, widen_f16, worth_splitting,
};
use super::{Tensor, TensorMut};
use crate::simd::vectorized;
use crate::{CpuStorage, Result, layout::StridedIndex};

/// Columns per task in the column loop: the accumulators stay in L1.
const COLUMNS: usize = 1024;

/// Reduces `x` over the distinct `axes` into `out`, whose shape is `x`'s with those axes
/// removed or kept as 1. `Sum`, `Prod`, `Max`, `Min` and `Mean` keep the numeric dtype (integer
/// `Mean` truncates toward zero); `Any` and `All` take and give `Bool`. An empty reduction gives
/// the identity; an empty `axes` copies `x`.
pub fn reduce(op: ReduceOp, x: Tensor<'_>, axes: &[usize], out: TensorMut<'_>) -> Result<()> {
    let kernel = format!("reduce({op:?})");
    let drop = shape::reduced(x.shape, axes, false)
        .map_err(|e| BackendError::invalid(format!("{kernel}: {e} (x has shape {:?})", x.shape)))?;
    let keep = shape::reduced(x.shape, axes, true)
        .map_err(|e| BackendError::invalid(format!("{kernel}: {e} (x has shape {:?})", x.shape)))?;
    if out.shape != drop && out.shape != keep {
        return Err(BackendError::invalid(format!(
            "{kernel}: out has shape {:?}, but reducing {:?} over axes {axes:?} gives {drop:?} (or {keep:?} keeping dims)",
            out.shape, x.shape
        )));
    }
    let dtype = x.data.dtype();
    if out.data.dtype() != dtype {
        return Err(BackendError::invalid(format!(
            "{kernel}: out is {} but `x` is {dtype}; they must match",
            out.data.dtype()
        )));
    }
    let plan = Plan::new(x.shape, axes);
    match (op, x.data) {
        (ReduceOp::Any, CpuStorage::Bool(xs)) => run(&AnyR, &plan, xs, view_mut(out.data, &kernel, "out")?),
        (ReduceOp::All, CpuStorage::Bool(xs)) => run(&AllR, &plan, xs, view_mut(out.data, &kernel, "out")?),
        (ReduceOp::Any | ReduceOp::All, _) => {
            return Err(BackendError::invalid(format!("{kernel}: takes bool tensors, got {dtype}")));
        }
        (_, CpuStorage::Bool(_)) => {
            return Err(BackendError::invalid(format!("{kernel}: not defined for bool tensors (cast them first)")));
        }
        (_, CpuStorage::F16(xs)) => {
            let o = view_mut::<f16>(out.data, &kernel, "out")?;
            let mut result = vec![0f32; o.len()];
            numeric(op, &plan, &widen_f16(xs), &mut result);
            narrow_f16(&result, o);
        }
        (_, CpuStorage::F32(xs)) => numeric(op, &plan, xs, view_mut(out.data, &kernel, "out")?),
        (_, CpuStorage::F64(xs)) => numeric(op, &plan, xs, view_mut(out.data, &kernel, "out")?),
        (_, CpuStorage::I32(xs)) => numeric(op, &plan, xs, view_mut(out.data, &kernel, "out")?),
        (_, CpuStorage::I64(xs)) => numeric(op, &plan, xs, view_mut(out.data, &kernel, "out")?),
        (_, CpuStorage::U8(xs)) => numeric(op, &plan, xs, view_mut(out.data, &kernel, "out")?),
    }
    Ok(())
}

fn numeric<T: Number>(op: ReduceOp, plan: &Plan, x: &[T], out: &mut [T]) {
    match op {
        ReduceOp::Sum => run(&SumR, plan, x, out),
        ReduceOp::Prod => run(&ProdR, plan, x, out),
        ReduceOp::Max => run(&MaxR, plan, x, out),
        ReduceOp::Min => run(&MinR, plan, x, out),
        ReduceOp::Mean => run(&MeanR, plan, x, out),
        // `reduce` routes Any and All to the bool kernels before calling this.
        ReduceOp::Any | ReduceOp::All => {}
    }
}

/// One reduction: an accumulator folded over the elements, merged across tasks, then
/// finished with the element count.
trait Reducer<T>: Sync {
    type Acc: Copy + Send + Sync;
    fn init(&self) -> Self::Acc;
    fn step(&self, acc: Self::Acc, x: T) -> Self::Acc;
    fn combine(&self, a: Self::Acc, b: Self::Acc) -> Self::Acc;
    fn finish(&self, acc: Self::Acc, n: usize) -> T;
}

struct SumR;
struct ProdR;
struct MeanR;
struct MaxR;
struct MinR;
struct AnyR;
struct AllR;

/// Sum, product and mean fold in `T::Acc` and differ only in the identity, the fold and how
/// the result is finished from the total and the count.
macro_rules! accumulating_reducer {
    ($name:ident, $identity:ident, $fold:ident, |$acc:ident, $n:pat_param| $finish:expr) => {
        impl<T: Number> Reducer<T> for $name {
            type Acc = T::Acc;
            fn init(&self) -> T::Acc {
                <T::Acc as Number>::$identity
            }
            fn step(&self, acc: T::Acc, x: T) -> T::Acc {
                acc.$fold(x.to_acc())
            }
            fn combine(&self, a: T::Acc, b: T::Acc) -> T::Acc {
                a.$fold(b)
            }
            fn finish(&self, $acc: T::Acc, $n: usize) -> T {
                $finish
            }
        }
    };
}
accumulating_reducer!(SumR, ZERO, add, |acc, _| T::from_acc(acc));
accumulating_reducer!(ProdR, ONE, mul, |acc, _| T::from_acc(acc));
accumulating_reducer!(MeanR, ZERO, add, |acc, n| T::mean(acc, n));

impl<T: Number> Reducer<T> for MaxR {
    type Acc = T;
    fn init(&self) -> T {
        T::LOWEST
    }
    fn step(&self, acc: T, x: T) -> T {
        // A NaN accumulator fails every comparison, so once seen it sticks.
        if x.is_nan() || x > acc { x } else { acc }
    }
    fn combine(&self, a: T, b: T) -> T {
        Reducer::<T>::step(self, a, b)
    }
    fn finish(&self, acc: T, _: usize) -> T {
        acc
    }
}

impl<T: Number> Reducer<T> for MinR {
    type Acc = T;
    fn init(&self) -> T {
        T::HIGHEST
    }
    fn step(&self, acc: T, x: T) -> T {
        if x.is_nan() || x < acc { x } else { acc }
    }
    fn combine(&self, a: T, b: T) -> T {
        Reducer::<T>::step(self, a, b)
    }
    fn finish(&self, acc: T, _: usize) -> T {
        acc
    }
}

impl Reducer<bool> for AnyR {
    type Acc = bool;
    fn init(&self) -> bool {
        false
    }
    fn step(&self, acc: bool, x: bool) -> bool {
        acc || x
    }
    fn combine(&self, a: bool, b: bool) -> bool {
        a || b
    }
    fn finish(&self, acc: bool, _: usize) -> bool {
        acc
    }
}

impl Reducer<bool> for AllR {
    type Acc = bool;
    fn init(&self) -> bool {
        true
    }
    fn step(&self, acc: bool, x: bool) -> bool {
        acc && x
    }
    fn combine(&self, a: bool, b: bool) -> bool {
        a && b
    }
    fn finish(&self, acc: bool, _: usize) -> bool {
        acc
    }
}

/// The loop a reduction runs, from the coalesced layout of `x`. `n` is the number of elements
/// reduced into each output.
#[derive(Debug, PartialEq)]
enum Plan {
    /// `x` has no element: every output is the identity.
    Empty,
    /// `x` is `[outputs, n]`: each output reduces one contiguous row.
    Rows { n: usize },
    /// `x` is `[outer, n, inner]`; output `(o, j)` reduces `x[o, .., j]`.
    Columns { n: usize, inner: usize },
    /// Anything else: output `k` reduces `x[bases[k] + offsets[i]]` over `i`.
    General { bases: Vec<usize>, offsets: Vec<usize> },
}

impl Plan {
    /// `axes` are checked (distinct and in range).
    fn new(shape: &[usize], axes: &[usize]) -> Plan {
        if shape.contains(&0) {
            return Plan::Empty;
        }
        // Groups of adjacent axes of the same kind (reduced or kept), axes of length 1 dropped.
        let mut groups: Vec<(usize, bool)> = Vec::new();
        for (axis, &d) in shape.iter().enumerate() {
            let reduced = axes.contains(&axis);
            match groups.last_mut() {
                _ if d == 1 => {}
                Some((len, kind)) if *kind == reduced => *len *= d,
                _ => groups.push((d, reduced)),
            }
        }
        let reduced_groups = groups.iter().filter(|g| g.1).count();
        let n: usize = groups.iter().filter(|g| g.1).map(|g| g.0).product();
        match (reduced_groups, groups.iter().position(|g| g.1)) {
            (0, _) => Plan::Rows { n: 1 },
            (1, Some(p)) if p + 1 == groups.len() => Plan::Rows { n },
            (1, Some(p)) => Plan::Columns { n, inner: groups[p + 1..].iter().map(|g| g.0).product() },
            _ => {
                let dims: Vec<usize> = groups.iter().map(|g| g.0).collect();
                let strides = crate::layout::dense_strides(&dims);
                let pick = |want: bool| -> (Vec<usize>, Vec<isize>) {
                    groups.iter().zip(&strides).filter(|(g, _)| g.1 == want).map(|(g, &s)| (g.0, s)).unzip()
                };
                let (kept_shape, kept_strides) = pick(false);
                let (red_shape, red_strides) = pick(true);
                Plan::General {
                    bases: StridedIndex::new(&kept_shape, &kept_strides, 0).collect(),
                    offsets: StridedIndex::new(&red_shape, &red_strides, 0).collect(),
                }
            }
        }
    }
}

fn run<T: Copy + Send + Sync, R: Reducer<T>>(r: &R, plan: &Plan, x: &[T], out: &mut [T]) {
    let parallel = worth_splitting(x.len());
    match plan {
        Plan::Empty => out.iter_mut().for_each(|o| *o = r.finish(r.init(), 0)),
        Plan::Rows { n } => {
            let body = |(o, row): (&mut T, &[T])| *o = r.finish(fold_slice(r, row), *n);
            if parallel {
                out.par_iter_mut().zip(x.par_chunks(*n)).for_each(body);
            } else {
                out.iter_mut().zip(x.chunks(*n)).for_each(body);
            }
        }
        Plan::Columns { n, inner } => reduce_columns(r, x, *n, *inner, out),
        Plan::General { bases, offsets } => {
            let body = |(o, &base): (&mut T, &usize)| {
                let acc = offsets.iter().fold(r.init(), |acc, &k| r.step(acc, x[base + k]));
                *o = r.finish(acc, offsets.len());
            };
            if parallel {
                out.par_iter_mut().zip(bases.par_iter()).for_each(body);
            } else {
                out.iter_mut().zip(bases).for_each(body);
            }
        }
    }
}

/// Folds a contiguous run; long runs fold in chunks on the pool, merged in a fixed order so
/// that float results do not depend on scheduling.
fn fold_slice<T: Copy + Send + Sync, R: Reducer<T>>(r: &R, row: &[T]) -> R::Acc {
    let seq = |c: &[T]| c.iter().fold(r.init(), |acc, &v| r.step(acc, v));
    if worth_splitting(row.len()) {
        let partials: Vec<R::Acc> = row.par_chunks(CHUNK).map(seq).collect();
        partials.into_iter().fold(r.init(), |a, b| r.combine(a, b))
    } else {
        seq(row)
    }
}

/// Accumulates rows `rows` of the `[n, inner]` block `x` over the columns `cols`.
fn fold_columns<T: Copy, R: Reducer<T>>(
    r: &R,
    x: &[T],
    inner: usize,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
) -> Vec<R::Acc> {
    // The narrow outputs of bias gradients (16 to 64 channels) fold in a fixed-size local
    // array, which stays in registers; a `Vec` of accumulators is reloaded for every row.
    match cols.len() {
        16 => fold_fixed_columns::<T, R, 16>(r, x, inner, rows, cols.start),
        32 => fold_fixed_columns::<T, R, 32>(r, x, inner, rows, cols.start),
        64 => fold_fixed_columns::<T, R, 64>(r, x, inner, rows, cols.start),
        _ => {
            let mut acc = vec![r.init(); cols.len()];
            for i in rows {
                let row = &x[i * inner + cols.start..i * inner + cols.end];
                acc.iter_mut().zip(row).for_each(|(a, &v)| *a = r.step(*a, v));
            }
            acc
        }
    }
}

/// [`fold_columns`] over the `W` columns from `start` on.
fn fold_fixed_columns<T: Copy, R: Reducer<T>, const W: usize>(
    r: &R,
    x: &[T],
    inner: usize,
    rows: std::ops::Range<usize>,
    start: usize,
) -> Vec<R::Acc> {
    vectorized(
        #[inline(always)]
        || {
            let mut acc = [r.init(); W];
            for i in rows {
                let row = &x[i * inner + start..][..W];
                acc.iter_mut().zip(row).for_each(|(a, &v)| *a = r.step(*a, v));
            }
            acc.to_vec()
        },
    )
}

fn reduce_columns<T: Copy + Send + Sync, R: Reducer<T>>(r: &R, x: &[T], n: usize, inner: usize, out: &mut [T]) {
    let parallel = worth_splitting(x.len());
    // A narrow output (the bias gradient: sum over the batch of [N, C]) cannot keep the pool
    // busy by columns, so the rows are split too and the partial accumulators merged.
    let row_tasks = if parallel && out.len() < PAR_THRESHOLD { (n * inner / CHUNK).clamp(1, n) } else { 1 };
    let block = |xb: &[T], dst: &mut [T]| {
        if row_tasks > 1 {
            let per = n.div_ceil(row_tasks);
            let partials: Vec<Vec<R::Acc>> = (0..n.div_ceil(per))
                .into_par_iter()
                .map(|t| fold_columns(r, xb, inner, t * per..n.min((t + 1) * per), 0..inner))
                .collect();
            let mut acc = vec![r.init(); inner];
            for p in partials {
                acc.iter_mut().zip(p).for_each(|(a, b)| *a = r.combine(*a, b));
            }
            dst.iter_mut().zip(acc).for_each(|(d, a)| *d = r.finish(a, n));
        } else {
            let cols = |(c, d): (usize, &mut [T])| {
                let acc = fold_columns(r, xb, inner, 0..n, c * COLUMNS..c * COLUMNS + d.len());
                d.iter_mut().zip(acc).for_each(|(d, a)| *d = r.finish(a, n));
            };
            if parallel {
                dst.par_chunks_mut(COLUMNS).enumerate().for_each(cols);
            } else {
                dst.chunks_mut(COLUMNS).enumerate().for_each(cols);
            }
        }
    };
    if parallel {
        out.par_chunks_mut(inner).zip(x.par_chunks(n * inner)).for_each(|(d, xb)| block(xb, d));
    } else {
        out.chunks_mut(inner).zip(x.chunks(n * inner)).for_each(|(d, xb)| block(xb, d));
    }
}

/// Index of the maximum (or minimum) along `axis`, written as `I64` or `I32` (`out`'s dtype);
/// `out`'s shape is `x`'s without `axis` or with it as 1. Ties give the first index; a NaN
/// counts as the extreme (the first NaN wins), as in NumPy.
pub fn arg_reduce(op: ArgReduceOp, x: Tensor<'_>, axis: usize, out: TensorMut<'_>) -> Result<()> {
    let kernel = format!("arg_reduce({op:?})");
    let (Some(&n), Ok(drop), Ok(keep)) =
        (x.shape.get(axis), shape::reduced(x.shape, &[axis], false), shape::reduced(x.shape, &[axis], true))
    else {
        return Err(BackendError::invalid(format!(
            "{kernel}: axis {axis} is out of range for `x` of shape {:?}",
            x.shape
        )));
    };
    if n == 0 {
        return Err(BackendError::invalid(format!(
            "{kernel}: axis {axis} of `x` {:?} has length 0, so there is no extreme to index",
            x.shape
        )));
    }
    if out.shape != drop && out.shape != keep {
        return Err(BackendError::invalid(format!(
            "{kernel}: out has shape {:?}, but `x` {:?} along axis {axis} gives {drop:?} (or {keep:?})",
            out.shape, x.shape
        )));
    }
    let dtype = x.data.dtype();
    if dtype == DType::Bool {
        return Err(BackendError::invalid(format!("{kernel}: takes numeric tensors, got bool")));
    }
    let inner: usize = x.shape[axis + 1..].iter().product();
    let is_max = op == ArgReduceOp::ArgMax;
    for_dtype!(dtype, T => {
        let xs = view::<T>(x.data, &kernel, "x")?;
        match out.data {
            CpuStorage::I64(o) => arg_typed::<T, i64>(xs, n, inner, is_max, o),
            CpuStorage::I32(o) if n <= i32::MAX as usize => arg_typed::<T, i32>(xs, n, inner, is_max, o),
            CpuStorage::I32(_) => {
                return Err(BackendError::invalid(format!(
                    "{kernel}: axis {axis} has {n} entries, too many for int32 indices"
                )));
            }
            other => {
                return Err(BackendError::invalid(format!("{kernel}: out is {} but must be int64 or int32", other.dtype())));
            }
        }
    });
    Ok(())
}

/// Whether `v` replaces `best`: strictly more extreme, or the first NaN.
fn better<T: Element>(v: T, best: T, is_max: bool) -> bool {
    !best.is_nan() && (v.is_nan() || if is_max { v > best } else { v < best })
}

fn arg_typed<T: Element, O: Element>(x: &[T], n: usize, inner: usize, is_max: bool, out: &mut [O]) {
    if out.is_empty() {
        return;
    }
    let parallel = worth_splitting(x.len());
    if inner == 1 {
        let body = |(o, row): (&mut O, &[T])| {
            let mut best = 0;
            for (i, &v) in row.iter().enumerate().skip(1) {
                if better(v, row[best], is_max) {
                    best = i;
                }
            }
            *o = O::from_i64(best as i64);
        };
        if parallel {
            out.par_iter_mut().zip(x.par_chunks(n)).for_each(body);
        } else {
            out.iter_mut().zip(x.chunks(n)).for_each(body);
        }
        return;
    }
    // Track a best value and index per column, scanning the block row by row.
    let block = |(dst, xb): (&mut [O], &[T])| {
        let mut best: Vec<T> = xb[..inner].to_vec();
        let mut index = vec![0usize; inner];
        for i in 1..n {
            let row = &xb[i * inner..(i + 1) * inner];
            for ((b, k), &v) in best.iter_mut().zip(index.iter_mut()).zip(row) {
                if better(v, *b, is_max) {
                    *b = v;
                    *k = i;
                }
            }
        }
        dst.iter_mut().zip(index).for_each(|(d, k)| *d = O::from_i64(k as i64));
    };
    if parallel {
        out.par_chunks_mut(inner).zip(x.par_chunks(n * inner)).for_each(block);
    } else {
        out.chunks_mut(inner).zip(x.chunks(n * inner)).for_each(block);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keras_backend_api::ErrorKind;

    fn run_reduce(op: ReduceOp, x: &CpuStorage, shape: &[usize], axes: &[usize], keepdims: bool) -> CpuStorage {
        let out_shape = shape::reduced(shape, axes, keepdims).unwrap();
        let mut o = CpuStorage::zeros(x.dtype(), out_shape.iter().product());
        reduce(op, Tensor { data: x, shape }, axes, TensorMut { data: &mut o, shape: &out_shape }).unwrap();
        o
    }

    /// Reference: for every output index, walk every input element and keep those that map
    /// to it (a completely different loop from the kernel's).
    fn naive(op: ReduceOp, x: &[f64], shape: &[usize], axes: &[usize]) -> Vec<f64> {
        let out_shape = shape::reduced(shape, axes, true).unwrap();
        let out_len: usize = out_shape.iter().product();
        let mut groups: Vec<Vec<f64>> = vec![Vec::new(); out_len];
        for (i, &v) in x.iter().enumerate() {
            let mut rem = i;
            let mut idx = vec![0; shape.len()];
            for k in (0..shape.len()).rev() {
                idx[k] = rem % shape[k];
                rem /= shape[k];
            }
            let mut o = 0;
            for k in 0..shape.len() {
                o = o * out_shape[k] + if axes.contains(&k) { 0 } else { idx[k] };
            }
            groups[o].push(v);
        }
        groups
            .into_iter()
            .map(|g| match op {
                ReduceOp::Sum => g.iter().sum(),
                ReduceOp::Prod => g.iter().product(),
                ReduceOp::Max => {
                    g.iter().fold(f64::NEG_INFINITY, |a, &b| if a.is_nan() || b.is_nan() { f64::NAN } else { a.max(b) })
                }
                ReduceOp::Min => {
                    g.iter().fold(f64::INFINITY, |a, &b| if a.is_nan() || b.is_nan() { f64::NAN } else { a.min(b) })
                }
                ReduceOp::Mean => g.iter().sum::<f64>() / g.len() as f64,
                ReduceOp::Any => f64::from(u8::from(g.iter().any(|&v| v != 0.0))),
                ReduceOp::All => f64::from(u8::from(g.iter().all(|&v| v != 0.0))),
            })
            .collect()
    }

    fn f64s(s: &CpuStorage) -> Vec<f64> {
        crate::with_storage!(s, v => v.iter().map(|x| x.to_f64()).collect())
    }

    /// A small deterministic generator, so the test needs no dependency.
    fn lcg(state: &mut u64) -> u64 {
        *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        *state >> 33
    }

    /// Leading axes reduced, the last kept, at the widths that fold in fixed-size arrays
    /// (16, 32, 64) and one that does not (33), in f32, f64 and i64.
    #[test]
    fn bias_gradient_widths_match_the_naive_reference() {
        let mut state = 7;
        for inner in [16, 32, 33, 64] {
            for rows in [1, 5, 300] {
                let shape = [rows, 2, inner];
                let len = rows * 2 * inner;
                let data: Vec<f64> = (0..len).map(|_| (lcg(&mut state) % 11) as f64 / 4.0 - 1.0).collect();
                for op in [ReduceOp::Sum, ReduceOp::Prod, ReduceOp::Max, ReduceOp::Min, ReduceOp::Mean] {
                    let want = naive(op, &data, &shape, &[0, 1]);
                    let f32s = CpuStorage::F32(data.iter().map(|&v| v as f32).collect());
                    let ints = CpuStorage::I64(data.iter().map(|&v| (v * 4.0) as i64).collect());
                    // Integer means truncate.
                    let int_want: Vec<f64> =
                        naive(op, &data.iter().map(|&v| (v * 4.0) as i64 as f64).collect::<Vec<_>>(), &shape, &[0, 1])
                            .into_iter()
                            .map(|w| if op == ReduceOp::Mean { w.trunc() } else { w })
                            .collect();
                    let mut inputs = vec![(CpuStorage::F64(data.clone()), &want)];
                    // Products of hundreds of factors leave f32's and i64's range.
                    if op != ReduceOp::Prod {
                        inputs.extend([(f32s, &want), (ints, &int_want)]);
                    }
                    for (x, want) in inputs {
                        let got = f64s(&run_reduce(op, &x, &shape, &[0, 1], false));
                        for (g, w) in got.iter().zip(want) {
                            assert!(
                                (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                                "{op:?} {:?} {shape:?}: {g} vs {w}",
                                x.dtype()
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn random_axis_sets_match_the_naive_reference() {
        let mut state = 42;
        for case in 0..150 {
            let rank = (lcg(&mut state) % 5) as usize;
            let big = case % 10 == 0;
            let shape: Vec<usize> =
                (0..rank).map(|_| (lcg(&mut state) % if big { 40 } else { 4 }) as usize + 1).collect();
            let axes: Vec<usize> = (0..rank).filter(|_| lcg(&mut state).is_multiple_of(2)).collect();
            let len: usize = shape.iter().product();
            let data: Vec<f64> = (0..len).map(|_| (lcg(&mut state) % 11) as f64 / 4.0 - 1.0).collect();
            for op in [ReduceOp::Sum, ReduceOp::Prod, ReduceOp::Max, ReduceOp::Min, ReduceOp::Mean] {
                let want = naive(op, &data, &shape, &axes);
                for keepdims in [false, true] {
                    let got = f64s(&run_reduce(op, &CpuStorage::F64(data.clone()), &shape, &axes, keepdims));
                    assert_eq!(got.len(), want.len());
                    for (g, w) in got.iter().zip(&want) {
                        assert!((g - w).abs() <= 1e-9 * (1.0 + w.abs()), "{op:?} {shape:?} {axes:?}: {g} vs {w}");
                    }
                }
                let ints: Vec<i64> = data.iter().map(|&v| (v * 4.0) as i64).collect();
                let got = f64s(&run_reduce(op, &CpuStorage::I64(ints.clone()), &shape, &axes, false));
                let want: Vec<f64> = naive(op, &ints.iter().map(|&v| v as f64).collect::<Vec<_>>(), &shape, &axes)
                    .into_iter()
                    .map(|w| if op == ReduceOp::Mean { w.trunc() } else { w })
                    .collect();
                if op != ReduceOp::Prod {
                    assert_eq!(got, want, "int {op:?} {shape:?} {axes:?}");
                }
            }
            let bools: Vec<bool> = data.iter().map(|&v| v > 0.0).collect();
            let as_f: Vec<f64> = bools.iter().map(|&b| f64::from(u8::from(b))).collect();
            for op in [ReduceOp::Any, ReduceOp::All] {
                let got = f64s(&run_reduce(op, &CpuStorage::Bool(bools.clone()), &shape, &axes, true));
                assert_eq!(got, naive(op, &as_f, &shape, &axes), "{op:?} {shape:?} {axes:?}");
            }
        }
    }

    #[test]
    fn large_reductions_use_every_plan() {
        let shape = [300, 500];
        let data: Vec<f32> = (0..150_000).map(|i| ((i * 7919) % 1000) as f32 / 100.0).collect();
        let wide: Vec<f64> = data.iter().map(|&v| f64::from(v)).collect();
        for axes in [&[0usize, 1][..], &[1], &[0]] {
            let got = f64s(&run_reduce(ReduceOp::Sum, &CpuStorage::F32(data.clone()), &shape, axes, false));
            let want = naive(ReduceOp::Sum, &wide, &shape, axes);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-6 * w.abs(), "{axes:?}: {g} vs {w}");
            }
        }
        let shape3 = [50, 60, 50];
        let got = f64s(&run_reduce(ReduceOp::Max, &CpuStorage::F32(data.clone()), &shape3, &[0, 2], true));
        assert_eq!(got, naive(ReduceOp::Max, &wide, &shape3, &[0, 2]));
    }

    #[test]
    fn f32_sums_accumulate_in_f64() {
        // 1e8 + 1 + 1 ... : an f32 accumulator would lose every 1.
        let mut data = vec![1.0f32; 1001];
        data[0] = 1e8;
        let got = run_reduce(ReduceOp::Sum, &CpuStorage::F32(data), &[1001], &[0], false);
        assert_eq!(got, CpuStorage::F32(vec![1e8 + 1000.0]));
    }

    #[test]
    fn empty_reductions_give_identities() {
        let x = CpuStorage::F32(vec![]);
        let cases = [
            (ReduceOp::Sum, 0.0),
            (ReduceOp::Prod, 1.0),
            (ReduceOp::Max, f32::NEG_INFINITY),
            (ReduceOp::Min, f32::INFINITY),
        ];
        for (op, want) in cases {
            assert_eq!(run_reduce(op, &x, &[2, 0], &[1], false), CpuStorage::F32(vec![want; 2]), "{op:?}");
        }
        let CpuStorage::F32(m) = run_reduce(ReduceOp::Mean, &x, &[0, 3], &[0], true) else { panic!() };
        assert!(m.len() == 3 && m.iter().all(|v| v.is_nan()));
        let i = CpuStorage::I32(vec![]);
        assert_eq!(run_reduce(ReduceOp::Mean, &i, &[0], &[0], false), CpuStorage::I32(vec![0]));
        assert_eq!(run_reduce(ReduceOp::Max, &i, &[0], &[0], false), CpuStorage::I32(vec![i32::MIN]));
        assert_eq!(run_reduce(ReduceOp::Min, &CpuStorage::U8(vec![]), &[0], &[0], false), CpuStorage::U8(vec![255]));
        let b = CpuStorage::Bool(vec![]);
        assert_eq!(run_reduce(ReduceOp::Any, &b, &[0], &[0], false), CpuStorage::Bool(vec![false]));
        assert_eq!(run_reduce(ReduceOp::All, &b, &[0], &[0], false), CpuStorage::Bool(vec![true]));
        // Empty output: nothing to write.
        assert_eq!(run_reduce(ReduceOp::Sum, &x, &[0, 4], &[1], false), CpuStorage::F32(vec![]));
    }

    #[test]
    fn empty_axes_copy_and_scalars() {
        let x = CpuStorage::I64(vec![5, -3, 2]);
        assert_eq!(run_reduce(ReduceOp::Mean, &x, &[3], &[], false), x);
        assert_eq!(run_reduce(ReduceOp::Sum, &CpuStorage::F64(vec![2.5]), &[], &[], false), CpuStorage::F64(vec![2.5]));
        assert_eq!(run_reduce(ReduceOp::Mean, &x, &[3], &[0], false), CpuStorage::I64(vec![1]));
        assert_eq!(
            run_reduce(ReduceOp::Mean, &CpuStorage::I32(vec![-7, 0]), &[2], &[0], false),
            CpuStorage::I32(vec![-3])
        );
    }

    #[test]
    fn nan_propagates_through_max_min_sum() {
        let x = CpuStorage::F32(vec![1.0, f32::NAN, 3.0, 4.0, 5.0, 6.0]);
        for op in [ReduceOp::Max, ReduceOp::Min, ReduceOp::Sum, ReduceOp::Mean] {
            let CpuStorage::F32(r) = run_reduce(op, &x, &[2, 3], &[1], false) else { panic!() };
            assert!(r[0].is_nan() && !r[1].is_nan(), "{op:?}: {r:?}");
        }
        let CpuStorage::F32(r) = run_reduce(ReduceOp::Max, &x, &[2, 3], &[0], false) else { panic!() };
        assert_eq!(r[0], 4.0);
        assert!(r[1].is_nan());
    }

    #[test]
    fn f16_and_u8_reductions() {
        let x = CpuStorage::F16([1.0f32, 2.0, 3.5, -1.0].map(f16::from_f32).to_vec());
        assert_eq!(
            run_reduce(ReduceOp::Sum, &x, &[2, 2], &[1], false),
            CpuStorage::F16(vec![f16::from_f32(3.0), f16::from_f32(2.5)])
        );
        let u = CpuStorage::U8(vec![200, 100, 3]);
        assert_eq!(run_reduce(ReduceOp::Sum, &u, &[3], &[0], false), CpuStorage::U8(vec![47]));
        assert_eq!(run_reduce(ReduceOp::Mean, &u, &[3], &[0], false), CpuStorage::U8(vec![101]));
    }

    #[test]
    fn reduce_errors() {
        let x = CpuStorage::F32(vec![0.0; 6]);
        let mut o = CpuStorage::zeros(DType::F32, 3);
        let e =
            reduce(ReduceOp::Sum, Tensor { data: &x, shape: &[2, 3] }, &[2], TensorMut { data: &mut o, shape: &[3] })
                .unwrap_err();
        assert!(e.message.contains("axis 2") && e.message.contains("[2, 3]"), "{}", e.message);
        let e = reduce(
            ReduceOp::Sum,
            Tensor { data: &x, shape: &[2, 3] },
            &[0, 0],
            TensorMut { data: &mut o, shape: &[3] },
        )
        .unwrap_err();
        assert!(e.message.contains("repeated"), "{}", e.message);
        let e =
            reduce(ReduceOp::Sum, Tensor { data: &x, shape: &[2, 3] }, &[1], TensorMut { data: &mut o, shape: &[3] })
                .unwrap_err();
        assert!(e.message.contains("[2]") && e.message.contains("[3]"), "{}", e.message);
        let mut ob = CpuStorage::zeros(DType::Bool, 3);
        let e =
            reduce(ReduceOp::Any, Tensor { data: &x, shape: &[2, 3] }, &[0], TensorMut { data: &mut ob, shape: &[3] })
                .unwrap_err();
        assert!(e.message.contains("float32"), "{}", e.message);
        let b = CpuStorage::Bool(vec![true; 6]);
        let e =
            reduce(ReduceOp::Sum, Tensor { data: &b, shape: &[2, 3] }, &[0], TensorMut { data: &mut ob, shape: &[3] })
                .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert!(e.message.contains("bool"), "{}", e.message);
    }

    fn run_arg(op: ArgReduceOp, x: &CpuStorage, shape: &[usize], axis: usize) -> Vec<i64> {
        let out_shape = shape::reduced(shape, &[axis], false).unwrap();
        let mut o = CpuStorage::zeros(DType::I64, out_shape.iter().product());
        arg_reduce(op, Tensor { data: x, shape }, axis, TensorMut { data: &mut o, shape: &out_shape }).unwrap();
        let CpuStorage::I64(v) = o else { unreachable!() };
        v
    }

    #[test]
    fn arg_reduce_ties_nan_and_axes() {
        let x = CpuStorage::F32(vec![1.0, 3.0, 3.0, 0.0, 0.0, -1.0]);
        assert_eq!(run_arg(ArgReduceOp::ArgMax, &x, &[2, 3], 1), vec![1, 0]);
        assert_eq!(run_arg(ArgReduceOp::ArgMin, &x, &[2, 3], 1), vec![0, 2]);
        assert_eq!(run_arg(ArgReduceOp::ArgMax, &x, &[2, 3], 0), vec![0, 0, 0]);
        assert_eq!(run_arg(ArgReduceOp::ArgMin, &x, &[2, 3], 0), vec![1, 1, 1]);
        let nan = CpuStorage::F64(vec![1.0, f64::NAN, 5.0, f64::NAN, 2.0, 7.0]);
        assert_eq!(run_arg(ArgReduceOp::ArgMax, &nan, &[6], 0), vec![1]);
        assert_eq!(run_arg(ArgReduceOp::ArgMin, &nan, &[6], 0), vec![1]);
        assert_eq!(run_arg(ArgReduceOp::ArgMax, &nan, &[3, 2], 0), vec![1, 0]);
        let ints = CpuStorage::I32(vec![4, 9, 9, 1, 2, 9]);
        assert_eq!(run_arg(ArgReduceOp::ArgMax, &ints, &[2, 3], 1), vec![1, 2]);
        let h = CpuStorage::F16([0.5f32, -2.0].map(f16::from_f32).to_vec());
        assert_eq!(run_arg(ArgReduceOp::ArgMin, &h, &[2], 0), vec![1]);
        let mut o32 = CpuStorage::zeros(DType::I32, 2);
        arg_reduce(
            ArgReduceOp::ArgMax,
            Tensor { data: &x, shape: &[2, 3] },
            1,
            TensorMut { data: &mut o32, shape: &[2, 1] },
        )
        .unwrap();
        assert_eq!(o32, CpuStorage::I32(vec![1, 0]));
    }

    #[test]
    fn large_arg_reduce_matches_a_scan() {
        let data: Vec<f32> = (0..200_000).map(|i| ((i * 7919) % 10007) as f32).collect();
        for (shape, axis) in [([400usize, 500], 1usize), ([400, 500], 0)] {
            let got = run_arg(ArgReduceOp::ArgMax, &CpuStorage::F32(data.clone()), &shape, axis);
            let (outer, n, inner) = if axis == 1 { (400, 500, 1) } else { (1, 400, 500) };
            let mut want = Vec::new();
            for o in 0..outer {
                for j in 0..inner {
                    let vals: Vec<f32> = (0..n).map(|i| data[o * n * inner + i * inner + j]).collect();
                    let m = vals.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    want.push(vals.iter().position(|&v| v == m).unwrap() as i64);
                }
            }
            assert_eq!(got, want, "axis {axis}");
        }
    }

    #[test]
    fn arg_reduce_errors() {
        let x = CpuStorage::F32(vec![]);
        let mut o = CpuStorage::zeros(DType::I64, 2);
        let e = arg_reduce(
            ArgReduceOp::ArgMax,
            Tensor { data: &x, shape: &[2, 0] },
            1,
            TensorMut { data: &mut o, shape: &[2] },
        )
        .unwrap_err();
        assert!(e.message.contains("length 0"), "{}", e.message);
        let x = CpuStorage::F32(vec![0.0; 6]);
        let e = arg_reduce(
            ArgReduceOp::ArgMax,
            Tensor { data: &x, shape: &[2, 3] },
            2,
            TensorMut { data: &mut o, shape: &[2] },
        )
        .unwrap_err();
        assert!(e.message.contains("axis 2"), "{}", e.message);
        let e = arg_reduce(
            ArgReduceOp::ArgMax,
            Tensor { data: &x, shape: &[2, 3] },
            0,
            TensorMut { data: &mut o, shape: &[2] },
        )
        .unwrap_err();
        assert!(e.message.contains("[3]") && e.message.contains("[2]"), "{}", e.message);
        let mut of = CpuStorage::zeros(DType::F32, 2);
        let e = arg_reduce(
            ArgReduceOp::ArgMin,
            Tensor { data: &x, shape: &[2, 3] },
            1,
            TensorMut { data: &mut of, shape: &[2] },
        )
        .unwrap_err();
        assert!(e.message.contains("int64 or int32"), "{}", e.message);
    }
}
