//! Data movement: permute, slice, concat, pad, reverse, gather, scatter-add, tile, repeat,
//! one-hot, nearest resize. Every dtype.
//!
//! Permute, slice, reverse, tile and repeat are all strided views of their input, copied out
//! by `copy_strided`; gather, scatter-add and resize move whole blocks along one axis.

use std::borrow::Cow;

use keras_backend_api::{BackendError, Layout, shape};

use super::element::{Element, Number};
use super::{Tensor, TensorMut};
use crate::{
    CpuStorage, Result,
    layout::{StridedIndex, dense_strides},
    storage::dtype_mismatch,
    with_same_dtype, with_storage,
};

/// Checks that every offset of the strided view lies in a buffer of `len` elements, so the
/// copy loops below index without failing.
fn check_view(kernel: &str, len: usize, shape: &[usize], strides: &[isize], offset: usize) -> Result<()> {
    if shape.len() == strides.len() && shape.contains(&0) {
        return Ok(());
    }
    let (mut low, mut high) = (offset as i128, offset as i128);
    for (&dim, &stride) in shape.iter().zip(strides) {
        let reach = (dim as i128 - 1) * stride as i128;
        if reach < 0 { low += reach } else { high += reach }
    }
    if shape.len() != strides.len() || low < 0 || high >= len as i128 {
        return Err(BackendError::internal(format!(
            "{kernel}: strided view {shape:?} / {strides:?} at offset {offset} leaves a buffer of {len} elements"
        )));
    }
    Ok(())
}

/// Copies the strided view (`shape`, `strides`, `offset`) of `src` into the dense `dst`, in
/// row-major order of `shape`. The last axis is copied as a run: a slice copy when it is
/// contiguous, a fill when it is broadcast.
fn copy_strided<T: Copy>(
    kernel: &str,
    src: &[T],
    shape: &[usize],
    strides: &[isize],
    offset: usize,
    dst: &mut [T],
) -> Result<()> {
    check_view(kernel, src.len(), shape, strides, offset)?;
    let expected = shape.iter().product::<usize>();
    if dst.len() != expected {
        return Err(BackendError::internal(format!(
            "{kernel}: {} destination elements for a view of shape {shape:?}",
            dst.len()
        )));
    }
    let (Some((&run, outer_shape)), Some((&step, outer_strides))) = (shape.split_last(), strides.split_last()) else {
        // A 0-d view is one element.
        if let (Some(d), Some(&s)) = (dst.first_mut(), src.get(offset)) {
            *d = s;
        }
        return Ok(());
    };
    if run == 0 {
        return Ok(());
    }
    for (row, start) in dst.chunks_exact_mut(run).zip(StridedIndex::new(outer_shape, outer_strides, offset)) {
        match step {
            1 => row.copy_from_slice(&src[start..start + run]),
            0 => row.fill(src[start]),
            _ => {
                for (j, d) in row.iter_mut().enumerate() {
                    *d = src[(start as isize + j as isize * step) as usize];
                }
            }
        }
    }
    Ok(())
}

/// Checks that `out` has the `expected` shape.
fn check_out_shape(kernel: &str, out: &[usize], expected: &[usize], from: impl std::fmt::Display) -> Result<()> {
    if out != expected {
        return Err(BackendError::invalid(format!("{kernel}: out has shape {out:?} but {from} gives {expected:?}")));
    }
    Ok(())
}

/// Prefixes a shape-rule message with the kernel name.
fn rule(kernel: &str) -> impl Fn(String) -> BackendError + '_ {
    move |e| BackendError::invalid(format!("{kernel}: {e}"))
}

/// Product of `dims`.
fn volume(dims: &[usize]) -> usize {
    dims.iter().product()
}

/// `out[i₀, ...]` = `x` with its axes reordered: out's axis `k` is x's axis `perm[k]`.
pub fn permute(x: Tensor<'_>, perm: &[usize], out: TensorMut<'_>) -> Result<()> {
    let expected = shape::permuted(x.shape, perm).map_err(rule("permute"))?;
    check_out_shape("permute", out.shape, &expected, format_args!("permuting x {:?} by {perm:?}", x.shape))?;
    let x_strides = dense_strides(x.shape);
    let strides: Vec<isize> = perm.iter().map(|&p| x_strides[p]).collect();
    let identity = perm.iter().enumerate().all(|(k, &p)| k == p);
    with_same_dtype!("permute", (x.data, &mut *out.data), (x, o) => if identity {
        o.copy_from_slice(x);
        Ok(())
    } else {
        copy_strided("permute", x, out.shape, &strides, 0, o)
    })
}

/// Strided slice: `out[j₀, j₁, ...] = x[start₀ + j₀·step₀, ...]`, `out`'s shape giving the count
/// per axis. Steps may be negative but not zero; every index read must lie in `x`.
pub fn slice(x: Tensor<'_>, starts: &[usize], steps: &[isize], out: TensorMut<'_>) -> Result<()> {
    let rank = x.shape.len();
    if starts.len() != rank || steps.len() != rank || out.shape.len() != rank {
        return Err(BackendError::invalid(format!(
            "slice: x {:?} has rank {rank} but starts {starts:?}, steps {steps:?} and out {:?} have lengths {}, {} \
             and {}",
            x.shape,
            out.shape,
            starts.len(),
            steps.len(),
            out.shape.len()
        )));
    }
    let x_strides = dense_strides(x.shape);
    let mut offset = 0usize;
    let mut strides = Vec::with_capacity(rank);
    for axis in 0..rank {
        let (dim, start, step, count) = (x.shape[axis], starts[axis], steps[axis], out.shape[axis]);
        let last = start as i128 + (count as i128 - 1) * step as i128;
        if step == 0 || (count > 0 && (start >= dim || last < 0 || last >= dim as i128)) {
            return Err(BackendError::invalid(format!(
                "slice: axis {axis}: start {start}, step {step}, count {count} reads outside x of shape {:?}",
                x.shape
            )));
        }
        // Axes read at most once never move, so their step (possibly huge) never multiplies.
        if count > 0 {
            offset += start * x_strides[axis] as usize;
        }
        strides.push(if count > 1 { x_strides[axis] * step } else { 0 });
    }
    with_same_dtype!("slice", (x.data, &mut *out.data), (x, o) => copy_strided("slice", x, out.shape, &strides, offset, o))
}

/// Concatenation of `inputs` along `axis`: same dtype, shapes agreeing off `axis`.
pub fn concat(inputs: &[Tensor<'_>], axis: usize, out: TensorMut<'_>) -> Result<()> {
    let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape).collect();
    let expected = shape::concat(&shapes, axis).map_err(rule("concat"))?;
    check_out_shape("concat", out.shape, &expected, format_args!("concatenating {shapes:?} along axis {axis}"))?;
    if let Some(t) = inputs.iter().find(|t| t.data.dtype() != out.data.dtype()) {
        return Err(dtype_mismatch("concat", t.data.dtype(), out.data.dtype()));
    }
    let outer = volume(&out.shape[..axis]);
    with_storage!(&mut *out.data, o => concat_typed(inputs, axis, outer, o))
}

fn concat_typed<T: Element>(inputs: &[Tensor<'_>], axis: usize, outer: usize, out: &mut [T]) -> Result<()> {
    // Each input is `outer` contiguous blocks of `dim(axis) · inner` elements; out interleaves them.
    let parts = inputs
        .iter()
        .map(|t| {
            let data = T::view(t.data).ok_or_else(|| BackendError::internal("concat: an input changed dtype"))?;
            Ok((data, volume(&t.shape[axis..])))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut at = 0;
    for o in 0..outer {
        for &(data, block) in &parts {
            out[at..at + block].copy_from_slice(&data[o * block..(o + 1) * block]);
            at += block;
        }
    }
    Ok(())
}

/// Constant padding: `out` dim `k` is `before[k] + x dim k + after[k]`; the new elements are
/// `value` converted to the dtype (saturating for integers, `value != 0` for `Bool`).
pub fn pad(x: Tensor<'_>, before: &[usize], after: &[usize], value: f64, out: TensorMut<'_>) -> Result<()> {
    let rank = x.shape.len();
    if before.len() != rank || after.len() != rank {
        return Err(BackendError::invalid(format!(
            "pad: x {:?} has rank {rank} but before {before:?} and after {after:?} have lengths {} and {}",
            x.shape,
            before.len(),
            after.len()
        )));
    }
    let expected = x
        .shape
        .iter()
        .zip(before.iter().zip(after))
        .map(|(&d, (&b, &a))| d.checked_add(b)?.checked_add(a))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| {
            BackendError::invalid(format!("pad: x {:?} padded by {before:?} and {after:?} overflows", x.shape))
        })?;
    check_out_shape("pad", out.shape, &expected, format_args!("x {:?} padded by {before:?} and {after:?}", x.shape))?;
    let out_strides = dense_strides(out.shape);
    // x lands in out as a dense block starting at the `before` corner.
    let corner = before.iter().zip(&out_strides).map(|(&b, &s)| b * s as usize).sum();
    with_same_dtype!("pad", (x.data, &mut *out.data), (x_data, o) => {
        pad_typed(x_data, x.shape, &out_strides, corner, value, o)
    })
}

fn pad_typed<T: Element>(
    x: &[T],
    x_shape: &[usize],
    out_strides: &[isize],
    corner: usize,
    value: f64,
    out: &mut [T],
) -> Result<()> {
    out.fill(T::from_f64(value));
    let Some((&run, outer_shape)) = x_shape.split_last() else {
        // 0-d: nothing to pad, the one element is copied.
        out.copy_from_slice(x);
        return Ok(());
    };
    if x.is_empty() {
        return Ok(());
    }
    let outer_strides = &out_strides[..out_strides.len() - 1];
    for (row, start) in x.chunks_exact(run).zip(StridedIndex::new(outer_shape, outer_strides, corner)) {
        out[start..start + run].copy_from_slice(row);
    }
    Ok(())
}

/// Reverses `x` along each of the distinct `axes`.
pub fn reverse(x: Tensor<'_>, axes: &[usize], out: TensorMut<'_>) -> Result<()> {
    shape::check_axes(axes, x.shape.len()).map_err(rule("reverse"))?;
    check_out_shape("reverse", out.shape, x.shape, format_args!("reversing x {:?} along {axes:?}", x.shape))?;
    // A reversed axis starts at its last element and walks backwards.
    let mut strides = dense_strides(x.shape);
    let mut offset = 0;
    for &axis in axes {
        offset += x.shape[axis].saturating_sub(1) * strides[axis] as usize;
        strides[axis] = -strides[axis];
    }
    with_same_dtype!("reverse", (x.data, &mut *out.data), (x, o) => copy_strided("reverse", x, out.shape, &strides, offset, o))
}

/// The values of an `I32` or `I64` index tensor as `i64`.
fn index_values<'a>(kernel: &str, indices: Tensor<'a>) -> Result<Cow<'a, [i64]>> {
    match indices.data {
        CpuStorage::I64(v) => Ok(Cow::Borrowed(v)),
        CpuStorage::I32(v) => Ok(Cow::Owned(v.iter().map(|&i| i64::from(i)).collect())),
        other => Err(BackendError::invalid(format!("{kernel}: indices must be int32 or int64, got {}", other.dtype()))),
    }
}

/// The indices into an axis of length `dim`, negative ones counted from the end; any other
/// value out of range is an error.
fn resolve_indices(kernel: &str, indices: Tensor<'_>, axis: usize, dim: usize) -> Result<Vec<usize>> {
    index_values(kernel, indices)?
        .iter()
        .map(|&i| {
            let resolved = if i < 0 { i as i128 + dim as i128 } else { i as i128 };
            if (0..dim as i128).contains(&resolved) {
                Ok(resolved as usize)
            } else {
                Err(BackendError::invalid(format!(
                    "{kernel}: index {i} is out of range for axis {axis} of length {dim}"
                )))
            }
        })
        .collect()
}

/// `dst[o, j, :] = src[o, idx[j], :]` where `src` is `[outer, dim, inner]`, `dst` is
/// `[outer, idx.len(), inner]` and every index is below `dim`.
fn take_blocks<T: Copy>(src: &[T], dim: usize, inner: usize, idx: &[usize], dst: &mut [T]) {
    if inner == 0 || dim == 0 || idx.is_empty() {
        return;
    }
    for (dst, src) in dst.chunks_exact_mut(idx.len() * inner).zip(src.chunks_exact(dim * inner)) {
        if inner == 1 {
            for (d, &i) in dst.iter_mut().zip(idx) {
                *d = src[i];
            }
        } else {
            for (d, &i) in dst.chunks_exact_mut(inner).zip(idx) {
                d.copy_from_slice(&src[i * inner..(i + 1) * inner]);
            }
        }
    }
}

/// `out = take(x, indices, axis)`: `out` has shape `x.shape[..axis] ++ indices.shape ++
/// x.shape[axis + 1..]`. Indices are `I32` or `I64` of any shape; negative ones count from the
/// end; any other out of range is an error.
pub fn gather(x: Tensor<'_>, indices: Tensor<'_>, axis: usize, out: TensorMut<'_>) -> Result<()> {
    let expected = shape::gather(x.shape, indices.shape, axis).map_err(rule("gather"))?;
    check_out_shape(
        "gather",
        out.shape,
        &expected,
        format_args!("x {:?} with indices {:?} along axis {axis}", x.shape, indices.shape),
    )?;
    let dim = x.shape[axis];
    let idx = resolve_indices("gather", indices, axis, dim)?;
    let inner = volume(&x.shape[axis + 1..]);
    with_same_dtype!("gather", (x.data, &mut *out.data), (x, o) => {
        take_blocks(x, dim, inner, &idx, o);
        Ok(())
    })
}

/// The adjoint of [`gather`]: `out` is zeroed, then for each index position `j` (indices
/// flattened), `out[.., indices[j], ..] += updates[.., j, ..]`; repeated indices accumulate.
/// Numeric dtypes; integers wrap on overflow.
pub fn scatter_add(updates: Tensor<'_>, indices: Tensor<'_>, axis: usize, out: TensorMut<'_>) -> Result<()> {
    let expected = shape::gather(out.shape, indices.shape, axis).map_err(rule("scatter_add"))?;
    if updates.shape != expected.as_slice() {
        return Err(BackendError::invalid(format!(
            "scatter_add: updates has shape {:?} but out {:?} with indices {:?} along axis {axis} needs {expected:?}",
            updates.shape, out.shape, indices.shape
        )));
    }
    let dim = out.shape[axis];
    let idx = resolve_indices("scatter_add", indices, axis, dim)?;
    let inner = volume(&out.shape[axis + 1..]);
    match (updates.data, &mut *out.data) {
        // `f16` is no `Number` (the arithmetic kernels widen it); half's `+` rounds each sum.
        (CpuStorage::F16(u), CpuStorage::F16(o)) => add_blocks(u, dim, inner, &idx, o, |a, b| a + b),
        (CpuStorage::F32(u), CpuStorage::F32(o)) => add_blocks(u, dim, inner, &idx, o, Number::add),
        (CpuStorage::F64(u), CpuStorage::F64(o)) => add_blocks(u, dim, inner, &idx, o, Number::add),
        (CpuStorage::I32(u), CpuStorage::I32(o)) => add_blocks(u, dim, inner, &idx, o, Number::add),
        (CpuStorage::I64(u), CpuStorage::I64(o)) => add_blocks(u, dim, inner, &idx, o, Number::add),
        (CpuStorage::U8(u), CpuStorage::U8(o)) => add_blocks(u, dim, inner, &idx, o, Number::add),
        (CpuStorage::Bool(_), CpuStorage::Bool(_)) => {
            Err(BackendError::invalid("scatter_add: bool tensors cannot be added; use a numeric dtype"))
        }
        (u, o) => Err(dtype_mismatch("scatter_add", u.dtype(), o.dtype())),
    }
}

/// `dst[o, idx[j], :] = add(dst[o, idx[j], :], src[o, j, :])` after zeroing `dst`: the
/// transpose of [`take_blocks`]. `add` wraps for integers ([`Number::add`]).
fn add_blocks<T: Element>(
    src: &[T],
    dim: usize,
    inner: usize,
    idx: &[usize],
    dst: &mut [T],
    add: impl Fn(T, T) -> T,
) -> Result<()> {
    dst.fill(T::from_f64(0.0));
    if inner == 0 || dim == 0 || idx.is_empty() {
        return Ok(());
    }
    for (dst, src) in dst.chunks_exact_mut(dim * inner).zip(src.chunks_exact(idx.len() * inner)) {
        for (s, &i) in src.chunks_exact(inner).zip(idx) {
            for (d, &v) in dst[i * inner..(i + 1) * inner].iter_mut().zip(s) {
                *d = add(*d, v);
            }
        }
    }
    Ok(())
}

/// Tiles `x`: `out` has the same rank, each dim a multiple of `x`'s, and
/// `out[i] = x[i mod x.shape]`.
pub fn tile(x: Tensor<'_>, out: TensorMut<'_>) -> Result<()> {
    if out.shape.len() != x.shape.len() {
        return Err(BackendError::invalid(format!(
            "tile: out {:?} and x {:?} must have the same rank",
            out.shape, x.shape
        )));
    }
    // out viewed as [reps₀, x₀, reps₁, x₁, ...] is x broadcast along every reps axis.
    let x_strides = dense_strides(x.shape);
    let mut shape = Vec::with_capacity(2 * x.shape.len());
    let mut strides = Vec::with_capacity(2 * x.shape.len());
    for (axis, (&xd, &od)) in x.shape.iter().zip(out.shape).enumerate() {
        let reps = match (xd, od) {
            (0, 0) => 0,
            (0, _) => return Err(tile_error(axis, x.shape, out.shape)),
            _ if od % xd == 0 => od / xd,
            _ => return Err(tile_error(axis, x.shape, out.shape)),
        };
        shape.extend([reps, xd]);
        strides.extend([0, x_strides[axis]]);
    }
    with_same_dtype!("tile", (x.data, &mut *out.data), (x, o) => copy_strided("tile", x, &shape, &strides, 0, o))
}

#[cold]
fn tile_error(axis: usize, x: &[usize], out: &[usize]) -> BackendError {
    BackendError::invalid(format!(
        "tile: out dim {} on axis {axis} is not a multiple of x dim {} (x {x:?}, out {out:?})",
        out[axis], x[axis]
    ))
}

/// Repeats each element of `x` `repeats` times along `axis` (NumPy's `repeat`).
pub fn repeat(x: Tensor<'_>, axis: usize, repeats: usize, out: TensorMut<'_>) -> Result<()> {
    let Some(&dim) = x.shape.get(axis) else {
        return Err(BackendError::invalid(format!("repeat: axis {axis} is out of range for x {:?}", x.shape)));
    };
    let mut expected = x.shape.to_vec();
    expected[axis] = dim.checked_mul(repeats).ok_or_else(|| {
        BackendError::invalid(format!("repeat: {repeats} repeats of axis {axis} of x {:?} overflow", x.shape))
    })?;
    check_out_shape(
        "repeat",
        out.shape,
        &expected,
        format_args!("x {:?} repeated {repeats} times along axis {axis}", x.shape),
    )?;
    // out viewed as [x₀, ..., x_axis, repeats, ...] is x broadcast along the inserted axis.
    let mut shape = x.shape.to_vec();
    let mut strides = dense_strides(x.shape);
    shape.insert(axis + 1, repeats);
    strides.insert(axis + 1, 0);
    with_same_dtype!("repeat", (x.data, &mut *out.data), (x, o) => copy_strided("repeat", x, &shape, &strides, 0, o))
}

/// One-hot encoding: `out` has shape `indices.shape ++ [depth]`; `out[.., k]` is 1 (`true`)
/// where `k == indices[..]`, else 0; an index outside `0..depth` gives an all-zero row.
/// `indices` are `I32` or `I64`; `out` has any dtype.
pub fn one_hot(indices: Tensor<'_>, out: TensorMut<'_>) -> Result<()> {
    let Some((&depth, lead)) = out.shape.split_last() else {
        return Err(BackendError::invalid("one_hot: out is 0-d; it needs shape indices.shape ++ [depth]"));
    };
    if lead != indices.shape {
        return Err(BackendError::invalid(format!(
            "one_hot: out has shape {:?} but indices {:?} need indices.shape ++ [depth]",
            out.shape, indices.shape
        )));
    }
    let values = index_values("one_hot", indices)?;
    with_storage!(&mut *out.data, o => {
        one_hot_typed(&values, depth, o);
        Ok(())
    })
}

fn one_hot_typed<T: Element>(values: &[i64], depth: usize, out: &mut [T]) {
    out.fill(T::from_f64(0.0));
    if depth == 0 {
        return;
    }
    let one = T::from_f64(1.0);
    for (row, &v) in out.chunks_exact_mut(depth).zip(values) {
        if let Some(slot) = usize::try_from(v).ok().and_then(|k| row.get_mut(k)) {
            *slot = one;
        }
    }
}

/// Nearest-neighbour resize of the spatial dims: `out[.., p, ..] = x[.., floor(p · in / out), ..]`
/// per spatial dim; batch (axis 0) and channels (axis 1, or the last axis for `ChannelsLast`)
/// are unchanged. Rank >= 3.
pub fn resize_nearest(x: Tensor<'_>, out: TensorMut<'_>, layout: Layout) -> Result<()> {
    let rank = x.shape.len();
    if rank < 3 || out.shape.len() != rank {
        return Err(BackendError::invalid(format!(
            "resize_nearest: x {:?} and out {:?} must have the same rank >= 3",
            x.shape, out.shape
        )));
    }
    let (channels, spatial) = match layout {
        Layout::ChannelsFirst => (1, 2..rank),
        Layout::ChannelsLast => (rank - 1, 1..rank - 1),
    };
    for axis in [0, channels] {
        if x.shape[axis] != out.shape[axis] {
            return Err(BackendError::invalid(format!(
                "resize_nearest: batch and channels must not change ({layout:?}), but axis {axis} of x {:?} and out {:?} \
                 differ",
                x.shape, out.shape
            )));
        }
    }
    if let Some(axis) = spatial.clone().find(|&a| x.shape[a] == 0 && out.shape[a] > 0) {
        return Err(BackendError::invalid(format!(
            "resize_nearest: spatial axis {axis} of x {:?} is empty and cannot fill out {:?}",
            x.shape, out.shape
        )));
    }
    let axes: Vec<usize> = spatial.filter(|&a| x.shape[a] != out.shape[a]).collect();
    with_same_dtype!("resize_nearest", (x.data, &mut *out.data), (x_data, o) => {
        resize_typed(x_data, x.shape, out.shape, &axes, o);
        Ok(())
    })
}

/// Resizes the spatial `axes` one after the other, each pass a gather along one axis.
fn resize_typed<T: Copy>(x: &[T], x_shape: &[usize], out_shape: &[usize], axes: &[usize], out: &mut [T]) {
    let Some(&fill) = x.first() else {
        // x is empty, so out is too (the caller refused filling from an empty axis).
        return;
    };
    let Some((&last, passes)) = axes.split_last() else {
        out.copy_from_slice(x);
        return;
    };
    let mut current = Cow::Borrowed(x);
    let mut shape = x_shape.to_vec();
    for &axis in passes {
        let mut next = vec![fill; volume(&shape[..axis]) * out_shape[axis] * volume(&shape[axis + 1..])];
        resize_axis(&current, &mut shape, axis, out_shape[axis], &mut next);
        current = Cow::Owned(next);
    }
    resize_axis(&current, &mut shape, last, out_shape[last], out);
}

/// One resize pass: `dst` is `src` (of `shape`) with `axis` resized to `to` by nearest
/// neighbour; `shape` is updated to `dst`'s.
fn resize_axis<T: Copy>(src: &[T], shape: &mut [usize], axis: usize, to: usize, dst: &mut [T]) {
    let from = shape[axis];
    // p < to, so p · from / to < from; u128 keeps the product exact.
    let idx: Vec<usize> = (0..to).map(|p| (p as u128 * from as u128 / to as u128) as usize).collect();
    take_blocks(src, from, volume(&shape[axis + 1..]), &idx, dst);
    shape[axis] = to;
}

#[cfg(test)]
mod tests {
    use half::f16;

    use super::*;

    fn t<'a>(data: &'a CpuStorage, shape: &'a [usize]) -> Tensor<'a> {
        Tensor { data, shape }
    }

    /// Runs `kernel` into `out` viewed with `shape`, and returns `out`.
    fn call(
        mut out: CpuStorage,
        shape: &[usize],
        kernel: impl FnOnce(TensorMut<'_>) -> Result<()>,
    ) -> Result<CpuStorage> {
        kernel(TensorMut { data: &mut out, shape })?;
        Ok(out)
    }

    /// `0, 1, 2, ...` as f32.
    fn arange(n: usize) -> CpuStorage {
        CpuStorage::F32((0..n).map(|i| i as f32).collect())
    }

    fn f32s(storage: CpuStorage) -> Vec<f32> {
        let CpuStorage::F32(v) = storage else { panic!("expected f32, got {:?}", storage.dtype()) };
        v
    }

    fn sentinel(n: usize) -> CpuStorage {
        CpuStorage::F32(vec![-1.0; n])
    }

    fn message<T: std::fmt::Debug>(result: Result<T>) -> String {
        result.unwrap_err().message.to_string()
    }

    #[test]
    fn permute_3d_against_index_formula() {
        let x = arange(24);
        let out = call(sentinel(24), &[4, 2, 3], |o| permute(t(&x, &[2, 3, 4]), &[2, 0, 1], o)).unwrap();
        let out = f32s(out);
        for k in 0..4 {
            for i in 0..2 {
                for j in 0..3 {
                    assert_eq!(out[k * 6 + i * 3 + j], (i * 12 + j * 4 + k) as f32);
                }
            }
        }
    }

    #[test]
    fn permute_identity_scalar_empty_and_other_dtypes() {
        let x = arange(6);
        assert_eq!(call(sentinel(6), &[2, 3], |o| permute(t(&x, &[2, 3]), &[0, 1], o)).unwrap(), x);
        let s = CpuStorage::I64(vec![7]);
        assert_eq!(call(CpuStorage::I64(vec![0]), &[], |o| permute(t(&s, &[]), &[], o)).unwrap(), s);
        let e = CpuStorage::F32(vec![]);
        assert!(call(CpuStorage::F32(vec![]), &[3, 0, 2], |o| permute(t(&e, &[2, 0, 3]), &[2, 1, 0], o)).is_ok());
        let b = CpuStorage::Bool(vec![true, false, false, true, true, false]);
        let out = call(CpuStorage::Bool(vec![false; 6]), &[3, 2], |o| permute(t(&b, &[2, 3]), &[1, 0], o)).unwrap();
        assert_eq!(out, CpuStorage::Bool(vec![true, true, false, true, false, false]));
        let h = CpuStorage::F16((0..6).map(|i| f16::from_f32(i as f32)).collect());
        let out =
            call(CpuStorage::zeros(keras_backend_api::DType::F16, 6), &[3, 2], |o| permute(t(&h, &[2, 3]), &[1, 0], o))
                .unwrap();
        let CpuStorage::F16(out) = out else { unreachable!() };
        assert_eq!(out.iter().map(|v| v.to_f32()).collect::<Vec<_>>(), [0., 3., 1., 4., 2., 5.]);
    }

    #[test]
    fn permute_refuses_bad_arguments() {
        let x = arange(6);
        assert!(message(call(sentinel(6), &[2, 3], |o| permute(t(&x, &[2, 3]), &[0, 0], o))).contains("repeated"));
        assert!(message(call(sentinel(6), &[2, 3], |o| permute(t(&x, &[2, 3]), &[1, 0], o))).contains("[3, 2]"));
        assert!(call(sentinel(6), &[3, 2], |o| permute(t(&x, &[2, 3]), &[1], o)).is_err());
        let ints = CpuStorage::I32(vec![0; 6]);
        assert!(message(call(sentinel(6), &[3, 2], |o| permute(t(&ints, &[2, 3]), &[1, 0], o))).contains("int32"));
    }

    #[test]
    fn slice_positive_and_negative_steps() {
        let x = arange(12); // [3, 4]
        let out = call(sentinel(4), &[2, 2], |o| slice(t(&x, &[3, 4]), &[1, 0], &[1, 2], o)).unwrap();
        assert_eq!(f32s(out), [4., 6., 8., 10.]);
        let out = call(sentinel(6), &[3, 2], |o| slice(t(&x, &[3, 4]), &[2, 3], &[-1, -3], o)).unwrap();
        assert_eq!(f32s(out), [11., 8., 7., 4., 3., 0.]);
        // one element per axis, with a step that would overflow if it were ever applied
        let out = call(sentinel(1), &[1, 1], |o| slice(t(&x, &[3, 4]), &[2, 1], &[isize::MAX, isize::MIN], o)).unwrap();
        assert_eq!(f32s(out), [9.]);
        // nothing read: the start of an empty axis does not matter
        assert!(call(sentinel(0), &[0, 4], |o| slice(t(&x, &[3, 4]), &[9, 0], &[1, 1], o)).is_ok());
        let u = CpuStorage::U8((0..10).collect());
        let out = call(CpuStorage::U8(vec![0; 4]), &[4], |o| slice(t(&u, &[10]), &[9], &[-3], o)).unwrap();
        assert_eq!(out, CpuStorage::U8(vec![9, 6, 3, 0]));
        let i = CpuStorage::I32(vec![5]);
        assert_eq!(call(CpuStorage::I32(vec![0]), &[], |o| slice(t(&i, &[]), &[], &[], o)).unwrap(), i);
    }

    #[test]
    fn slice_refuses_reads_outside_x() {
        let x = arange(12);
        let err = message(call(sentinel(8), &[2, 4], |o| slice(t(&x, &[3, 4]), &[2, 0], &[1, 1], o)));
        assert!(err.contains("axis 0") && err.contains("start 2") && err.contains("[3, 4]"), "{err}");
        assert!(call(sentinel(12), &[3, 4], |o| slice(t(&x, &[3, 4]), &[1, 0], &[-1, 1], o)).is_err());
        assert!(call(sentinel(4), &[1, 4], |o| slice(t(&x, &[3, 4]), &[3, 0], &[1, 1], o)).is_err());
        assert!(message(call(sentinel(4), &[1, 4], |o| slice(t(&x, &[3, 4]), &[0, 0], &[1, 0], o))).contains("step 0"));
        assert!(call(sentinel(4), &[1, 4], |o| slice(t(&x, &[3, 4]), &[0], &[1, 1], o)).is_err());
        let big = message(call(sentinel(2), &[1, 2], |o| slice(t(&x, &[3, 4]), &[0, 3], &[1, isize::MAX], o)));
        assert!(big.contains("axis 1"), "{big}");
    }

    #[test]
    fn concat_along_each_axis() {
        let (a, b) = (arange(2), CpuStorage::F32(vec![10., 11., 12., 13.]));
        let out = call(sentinel(6), &[3, 2], |o| concat(&[t(&a, &[1, 2]), t(&b, &[2, 2])], 0, o)).unwrap();
        assert_eq!(f32s(out), [0., 1., 10., 11., 12., 13.]);
        let out = call(sentinel(6), &[2, 3], |o| concat(&[t(&a, &[2, 1]), t(&b, &[2, 2])], 1, o)).unwrap();
        assert_eq!(f32s(out), [0., 10., 11., 1., 12., 13.]);
        let (c, d) = (arange(4), CpuStorage::F32((10..18).map(|v| v as f32).collect()));
        let out = call(sentinel(12), &[2, 2, 3], |o| concat(&[t(&c, &[2, 2, 1]), t(&d, &[2, 2, 2])], 2, o)).unwrap();
        assert_eq!(f32s(out), [0., 10., 11., 1., 12., 13., 2., 14., 15., 3., 16., 17.]);
        // an empty input contributes nothing
        let e = CpuStorage::F32(vec![]);
        let out = call(sentinel(4), &[2, 2], |o| concat(&[t(&e, &[2, 0]), t(&b, &[2, 2])], 1, o)).unwrap();
        assert_eq!(f32s(out), [10., 11., 12., 13.]);
        let (p, q) = (CpuStorage::Bool(vec![true]), CpuStorage::Bool(vec![false, true]));
        let out = call(CpuStorage::Bool(vec![false; 3]), &[3], |o| concat(&[t(&p, &[1]), t(&q, &[2])], 0, o)).unwrap();
        assert_eq!(out, CpuStorage::Bool(vec![true, false, true]));
    }

    #[test]
    fn concat_refuses_bad_arguments() {
        let (a, b) = (arange(2), CpuStorage::I32(vec![1, 2]));
        let err = message(call(sentinel(4), &[4], |o| concat(&[t(&a, &[2]), t(&b, &[2])], 0, o)));
        assert!(err.contains("int32") && err.contains("float32"), "{err}");
        assert!(call(sentinel(4), &[2, 2], |o| concat(&[t(&a, &[1, 2]), t(&a, &[2, 1])], 0, o)).is_err());
        assert!(call(sentinel(4), &[4], |o| concat(&[t(&a, &[2]), t(&a, &[2])], 1, o)).is_err());
        assert!(message(call(sentinel(0), &[0], |o| concat(&[], 0, o))).contains("nothing"));
        assert!(message(call(sentinel(4), &[2, 2], |o| concat(&[t(&a, &[2]), t(&a, &[2])], 0, o))).contains("[4]"));
    }

    #[test]
    fn pad_with_converted_values() {
        let x = CpuStorage::F32(vec![1., 2., 3., 4.]);
        let out = call(sentinel(9), &[3, 3], |o| pad(t(&x, &[2, 2]), &[1, 0], &[0, 1], 9.0, o)).unwrap();
        assert_eq!(f32s(out), [9., 9., 9., 1., 2., 9., 3., 4., 9.]);
        let i = CpuStorage::I32(vec![5]);
        let out = call(CpuStorage::I32(vec![0; 3]), &[3], |o| pad(t(&i, &[1]), &[1], &[1], 1e20, o)).unwrap();
        assert_eq!(out, CpuStorage::I32(vec![i32::MAX, 5, i32::MAX]));
        let u = CpuStorage::U8(vec![5]);
        let out = call(CpuStorage::U8(vec![1; 2]), &[2], |o| pad(t(&u, &[1]), &[0], &[1], -5.0, o)).unwrap();
        assert_eq!(out, CpuStorage::U8(vec![5, 0]));
        let b = CpuStorage::Bool(vec![false]);
        let out = call(CpuStorage::Bool(vec![false; 3]), &[1, 3], |o| pad(t(&b, &[1, 1]), &[0, 2], &[0, 0], 0.5, o));
        assert_eq!(out.unwrap(), CpuStorage::Bool(vec![true, true, false]));
        let h = CpuStorage::F16(vec![f16::ONE]);
        let out =
            call(CpuStorage::zeros(keras_backend_api::DType::F16, 2), &[2], |o| pad(t(&h, &[1]), &[1], &[0], 1.5, o));
        assert_eq!(out.unwrap(), CpuStorage::F16(vec![f16::from_f32(1.5), f16::ONE]));
        // 0-d, and an empty x that becomes all padding
        let s = CpuStorage::F32(vec![3.0]);
        assert_eq!(f32s(call(sentinel(1), &[], |o| pad(t(&s, &[]), &[], &[], 0.0, o)).unwrap()), [3.]);
        let e = CpuStorage::F32(vec![]);
        let out = call(sentinel(2), &[1, 2], |o| pad(t(&e, &[0, 2]), &[1, 0], &[0, 0], 7.0, o)).unwrap();
        assert_eq!(f32s(out), [7., 7.]);
    }

    #[test]
    fn pad_refuses_bad_arguments() {
        let x = arange(4);
        assert!(message(call(sentinel(9), &[3, 3], |o| pad(t(&x, &[2, 2]), &[1], &[1], 0.0, o))).contains("rank"));
        assert!(
            message(call(sentinel(8), &[4, 2], |o| pad(t(&x, &[2, 2]), &[1, 0], &[0, 1], 0.0, o))).contains("[3, 3]")
        );
        assert!(call(sentinel(8), &[4, 2], |o| pad(t(&x, &[2, 2]), &[usize::MAX, 0], &[1, 0], 0.0, o)).is_err());
    }

    #[test]
    fn reverse_several_axes() {
        let x = arange(6);
        assert_eq!(
            f32s(call(sentinel(6), &[2, 3], |o| reverse(t(&x, &[2, 3]), &[1], o)).unwrap()),
            [2., 1., 0., 5., 4., 3.]
        );
        assert_eq!(
            f32s(call(sentinel(6), &[2, 3], |o| reverse(t(&x, &[2, 3]), &[1, 0], o)).unwrap()),
            [5., 4., 3., 2., 1., 0.]
        );
        assert_eq!(call(sentinel(6), &[2, 3], |o| reverse(t(&x, &[2, 3]), &[], o)).unwrap(), x);
        let y = arange(8);
        let out = f32s(call(sentinel(8), &[2, 2, 2], |o| reverse(t(&y, &[2, 2, 2]), &[0, 2], o)).unwrap());
        for (i, j, k) in (0..8).map(|n| (n / 4, n / 2 % 2, n % 2)) {
            assert_eq!(out[i * 4 + j * 2 + k], ((1 - i) * 4 + j * 2 + (1 - k)) as f32);
        }
        let b = CpuStorage::Bool(vec![true, false, false]);
        let out = call(CpuStorage::Bool(vec![false; 3]), &[3], |o| reverse(t(&b, &[3]), &[0], o)).unwrap();
        assert_eq!(out, CpuStorage::Bool(vec![false, false, true]));
        let e = CpuStorage::I64(vec![]);
        assert!(call(CpuStorage::I64(vec![]), &[0, 3], |o| reverse(t(&e, &[0, 3]), &[0, 1], o)).is_ok());
        assert!(message(call(sentinel(6), &[2, 3], |o| reverse(t(&x, &[2, 3]), &[1, 1], o))).contains("repeated"));
        assert!(call(sentinel(6), &[2, 3], |o| reverse(t(&x, &[2, 3]), &[2], o)).is_err());
        assert!(call(sentinel(6), &[3, 2], |o| reverse(t(&x, &[2, 3]), &[0], o)).is_err());
    }

    #[test]
    fn gather_rows_with_negative_indices() {
        let x = arange(6); // [3, 2]
        let idx = CpuStorage::I32(vec![2, -1, 0]);
        let out = call(sentinel(6), &[3, 2], |o| gather(t(&x, &[3, 2]), t(&idx, &[3]), 0, o)).unwrap();
        assert_eq!(f32s(out), [4., 5., 4., 5., 0., 1.]);
        // 0-d I64 index along axis 1 drops the axis
        let idx = CpuStorage::I64(vec![-2]);
        let out = call(sentinel(3), &[3], |o| gather(t(&x, &[3, 2]), t(&idx, &[]), 1, o)).unwrap();
        assert_eq!(f32s(out), [0., 2., 4.]);
    }

    #[test]
    fn gather_2d_indices_and_other_dtypes() {
        let x = CpuStorage::I64((0..6).map(|v| v * 10).collect()); // [2, 3]
        let raw = [2i64, 0, -2, 2];
        let idx = CpuStorage::I64(raw.to_vec());
        let out = call(CpuStorage::I64(vec![0; 8]), &[2, 2, 2], |o| gather(t(&x, &[2, 3]), t(&idx, &[2, 2]), 1, o));
        let CpuStorage::I64(out) = out.unwrap() else { unreachable!() };
        for i in 0..2 {
            for (j, &k) in raw.iter().enumerate() {
                assert_eq!(out[i * 4 + j], (i as i64 * 3 + k.rem_euclid(3)) * 10);
            }
        }
        let b = CpuStorage::Bool(vec![true, false]);
        let idx = CpuStorage::I32(vec![1, 1, 0]);
        let out = call(CpuStorage::Bool(vec![false; 3]), &[3], |o| gather(t(&b, &[2]), t(&idx, &[3]), 0, o)).unwrap();
        assert_eq!(out, CpuStorage::Bool(vec![false, false, true]));
        let u = CpuStorage::U8(vec![1, 2, 3, 4]);
        let idx = CpuStorage::I32(vec![]);
        let out = call(CpuStorage::U8(vec![]), &[2, 0], |o| gather(t(&u, &[2, 2]), t(&idx, &[0]), 1, o)).unwrap();
        assert_eq!(out, CpuStorage::U8(vec![]));
    }

    #[test]
    fn gather_refuses_bad_indices() {
        let x = arange(6);
        let idx = CpuStorage::I32(vec![0, 3]);
        let err = message(call(sentinel(4), &[2, 2], |o| gather(t(&x, &[3, 2]), t(&idx, &[2]), 0, o)));
        assert!(err.contains("index 3") && err.contains("axis 0") && err.contains("length 3"), "{err}");
        let idx = CpuStorage::I64(vec![-4]);
        assert!(message(call(sentinel(2), &[2], |o| gather(t(&x, &[3, 2]), t(&idx, &[]), 0, o))).contains("index -4"));
        let idx = CpuStorage::F32(vec![0.0]);
        assert!(message(call(sentinel(2), &[2], |o| gather(t(&x, &[3, 2]), t(&idx, &[]), 0, o))).contains("int32"));
        let idx = CpuStorage::I32(vec![0]);
        assert!(call(sentinel(2), &[2], |o| gather(t(&x, &[3, 2]), t(&idx, &[]), 2, o)).is_err());
        assert!(call(sentinel(3), &[3], |o| gather(t(&x, &[3, 2]), t(&idx, &[]), 0, o)).is_err());
        let empty = CpuStorage::F32(vec![]);
        assert!(call(sentinel(2), &[2, 1], |o| gather(t(&empty, &[2, 0]), t(&idx, &[1]), 1, o)).is_err());
    }

    #[test]
    fn scatter_add_accumulates_repeated_indices() {
        let u = CpuStorage::F32(vec![1., 2., 3., 4.]);
        let idx = CpuStorage::I32(vec![1, 3, 1, -1]);
        let out = call(sentinel(4), &[4], |o| scatter_add(t(&u, &[4]), t(&idx, &[4]), 0, o)).unwrap();
        assert_eq!(f32s(out), [0., 4., 0., 6.]);
        let u = CpuStorage::I32(vec![1, 2, 3, 4]);
        let idx = CpuStorage::I64(vec![0, 0]);
        let out = call(CpuStorage::I32(vec![9; 6]), &[2, 3], |o| scatter_add(t(&u, &[2, 2]), t(&idx, &[2]), 1, o));
        assert_eq!(out.unwrap(), CpuStorage::I32(vec![3, 0, 0, 7, 0, 0]));
        // u8 wraps instead of panicking
        let u = CpuStorage::U8(vec![200, 100]);
        let idx = CpuStorage::I32(vec![0, 0]);
        let out = call(CpuStorage::U8(vec![0]), &[1], |o| scatter_add(t(&u, &[2]), t(&idx, &[2]), 0, o));
        assert_eq!(out.unwrap(), CpuStorage::U8(vec![44]));
        // 0-d index: updates lack the axis
        let u = CpuStorage::F64(vec![1., 2.]);
        let idx = CpuStorage::I32(vec![-1]);
        let out = call(CpuStorage::F64(vec![5.; 4]), &[2, 2], |o| scatter_add(t(&u, &[2]), t(&idx, &[]), 1, o));
        assert_eq!(out.unwrap(), CpuStorage::F64(vec![0., 1., 0., 2.]));
    }

    #[test]
    fn scatter_add_is_the_adjoint_of_gather() {
        // <gather(x), u> == <x, scatter_add(u)> for x [3, 4], indices [5] along axis 1.
        let xs: Vec<f64> = (0..12).map(|i| ((i * 7) % 5) as f64 - 2.0).collect();
        let us: Vec<f64> = (0..15).map(|i| ((i * 3) % 7) as f64 - 3.0).collect();
        let (x, u) = (CpuStorage::F64(xs.clone()), CpuStorage::F64(us.clone()));
        let idx = CpuStorage::I64(vec![2, -1, 0, 2, 1]);
        let gx = call(CpuStorage::F64(vec![0.; 15]), &[3, 5], |o| gather(t(&x, &[3, 4]), t(&idx, &[5]), 1, o));
        let su = call(CpuStorage::F64(vec![0.; 12]), &[3, 4], |o| scatter_add(t(&u, &[3, 5]), t(&idx, &[5]), 1, o));
        let (CpuStorage::F64(gx), CpuStorage::F64(su)) = (gx.unwrap(), su.unwrap()) else { unreachable!() };
        let lhs: f64 = gx.iter().zip(&us).map(|(a, b)| a * b).sum();
        let rhs: f64 = xs.iter().zip(&su).map(|(a, b)| a * b).sum();
        assert_eq!(lhs, rhs);
        assert!(lhs != 0.0);
    }

    #[test]
    fn scatter_add_refuses_bad_arguments() {
        let b = CpuStorage::Bool(vec![true]);
        let idx = CpuStorage::I32(vec![0]);
        let err = message(call(CpuStorage::Bool(vec![false]), &[1], |o| scatter_add(t(&b, &[1]), t(&idx, &[1]), 0, o)));
        assert!(err.contains("bool"), "{err}");
        let u = arange(3);
        let err = message(call(sentinel(4), &[4], |o| scatter_add(t(&u, &[3]), t(&idx, &[1]), 0, o)));
        assert!(err.contains("[3]") && err.contains("[1]"), "{err}");
        let idx = CpuStorage::I32(vec![0, 1, 4]);
        assert!(
            message(call(sentinel(4), &[4], |o| scatter_add(t(&u, &[3]), t(&idx, &[3]), 0, o))).contains("index 4")
        );
        let i = CpuStorage::I32(vec![0; 3]);
        assert!(call(sentinel(4), &[4], |o| scatter_add(t(&i, &[3]), t(&idx, &[3]), 0, o)).is_err());
    }

    #[test]
    fn tile_against_modulo_formula() {
        let x = arange(6); // [2, 3]
        let out = f32s(call(sentinel(36), &[4, 9], |o| tile(t(&x, &[2, 3]), o)).unwrap());
        for i in 0..4 {
            for j in 0..9 {
                assert_eq!(out[i * 9 + j], ((i % 2) * 3 + j % 3) as f32);
            }
        }
        let b = CpuStorage::Bool(vec![true, false]);
        let out = call(CpuStorage::Bool(vec![false; 6]), &[6], |o| tile(t(&b, &[2]), o)).unwrap();
        assert_eq!(out, CpuStorage::Bool(vec![true, false, true, false, true, false]));
        let i = CpuStorage::I32(vec![4]);
        assert_eq!(call(CpuStorage::I32(vec![0]), &[], |o| tile(t(&i, &[]), o)).unwrap(), i);
        let e = CpuStorage::F32(vec![]);
        assert!(call(sentinel(0), &[0, 4], |o| tile(t(&e, &[0, 2]), o)).is_ok());
    }

    #[test]
    fn tile_refuses_bad_shapes() {
        let x = arange(6);
        assert!(message(call(sentinel(8), &[2, 4], |o| tile(t(&x, &[2, 3]), o))).contains("axis 1"));
        assert!(message(call(sentinel(6), &[6], |o| tile(t(&x, &[2, 3]), o))).contains("rank"));
        let e = CpuStorage::F32(vec![]);
        assert!(call(sentinel(3), &[3], |o| tile(t(&e, &[0]), o)).is_err());
    }

    #[test]
    fn repeat_each_element() {
        let x = CpuStorage::I64(vec![1, 2, 3, 4]);
        let out = call(CpuStorage::I64(vec![0; 8]), &[4, 2], |o| repeat(t(&x, &[2, 2]), 0, 2, o)).unwrap();
        assert_eq!(out, CpuStorage::I64(vec![1, 2, 1, 2, 3, 4, 3, 4]));
        let out = call(CpuStorage::I64(vec![0; 12]), &[2, 6], |o| repeat(t(&x, &[2, 2]), 1, 3, o)).unwrap();
        assert_eq!(out, CpuStorage::I64(vec![1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]));
        assert!(call(CpuStorage::I64(vec![]), &[2, 0], |o| repeat(t(&x, &[2, 2]), 1, 0, o)).is_ok());
        let b = CpuStorage::Bool(vec![true, false]);
        let out = call(CpuStorage::Bool(vec![false; 4]), &[4], |o| repeat(t(&b, &[2]), 0, 2, o)).unwrap();
        assert_eq!(out, CpuStorage::Bool(vec![true, true, false, false]));
        assert!(
            message(call(CpuStorage::I64(vec![0; 8]), &[4, 2], |o| repeat(t(&x, &[2, 2]), 2, 2, o))).contains("axis 2")
        );
        assert!(
            message(call(CpuStorage::I64(vec![0; 8]), &[2, 4], |o| repeat(t(&x, &[2, 2]), 0, 2, o))).contains("[4, 2]")
        );
        assert!(call(CpuStorage::I64(vec![0; 8]), &[2, 4], |o| repeat(t(&x, &[2, 2]), 0, usize::MAX, o)).is_err());
    }

    #[test]
    fn one_hot_rows() {
        let idx = CpuStorage::I32(vec![0, 2, -1, 3]);
        let out = f32s(call(sentinel(12), &[4, 3], |o| one_hot(t(&idx, &[4]), o)).unwrap());
        assert_eq!(out, [1., 0., 0., 0., 0., 1., 0., 0., 0., 0., 0., 0.]);
        let idx = CpuStorage::I64(vec![1, 0, 1, 1]);
        let out = call(CpuStorage::Bool(vec![true; 8]), &[2, 2, 2], |o| one_hot(t(&idx, &[2, 2]), o)).unwrap();
        assert_eq!(out, CpuStorage::Bool(vec![false, true, true, false, false, true, false, true]));
        let idx = CpuStorage::I64(vec![i64::MAX]);
        let out = call(CpuStorage::U8(vec![7; 2]), &[2], |o| one_hot(t(&idx, &[]), o)).unwrap();
        assert_eq!(out, CpuStorage::U8(vec![0, 0]));
        let idx = CpuStorage::I32(vec![1]);
        assert_eq!(
            call(CpuStorage::U8(vec![7; 2]), &[2], |o| one_hot(t(&idx, &[]), o)).unwrap(),
            CpuStorage::U8(vec![0, 1])
        );
        assert!(message(call(sentinel(6), &[3, 2], |o| one_hot(t(&idx, &[1]), o))).contains("[1]"));
        assert!(call(sentinel(1), &[], |o| one_hot(t(&idx, &[]), o)).is_err());
        let f = CpuStorage::F32(vec![1.0]);
        assert!(message(call(sentinel(2), &[2], |o| one_hot(t(&f, &[]), o))).contains("float32"));
    }

    /// `x` repeated `factor` times along each of `axes`, by the repeat kernel.
    fn repeat_axes(x: &CpuStorage, shape: &[usize], axes: &[usize], factor: usize) -> (CpuStorage, Vec<usize>) {
        let (mut data, mut shape) = (x.clone(), shape.to_vec());
        for &axis in axes {
            let mut bigger = shape.clone();
            bigger[axis] *= factor;
            data = call(CpuStorage::zeros(data.dtype(), data.len() * factor), &bigger, |o| {
                repeat(t(&data, &shape), axis, factor, o)
            })
            .unwrap();
            shape = bigger;
        }
        (data, shape)
    }

    #[test]
    fn resize_nearest_upsampling_is_repeat() {
        let x = CpuStorage::F32(vec![1., 2., 3., 4.]);
        let out = f32s(
            call(sentinel(16), &[1, 4, 4, 1], |o| resize_nearest(t(&x, &[1, 2, 2, 1]), o, Layout::ChannelsLast))
                .unwrap(),
        );
        assert_eq!(out, [1., 1., 2., 2., 1., 1., 2., 2., 3., 3., 4., 4., 3., 3., 4., 4.]);
        let x = arange(2 * 3 * 2 * 3);
        let (want, shape) = repeat_axes(&x, &[2, 3, 2, 3], &[2, 3], 2);
        let got =
            call(sentinel(want.len()), &shape, |o| resize_nearest(t(&x, &[2, 3, 2, 3]), o, Layout::ChannelsFirst));
        assert_eq!(got.unwrap(), want);
        let x = CpuStorage::I32((0..2 * 2 * 3 * 3).collect());
        let (want, shape) = repeat_axes(&x, &[2, 2, 3, 3], &[1, 2], 2);
        let got = call(CpuStorage::I32(vec![0; want.len()]), &shape, |o| {
            resize_nearest(t(&x, &[2, 2, 3, 3]), o, Layout::ChannelsLast)
        });
        assert_eq!(got.unwrap(), want);
    }

    #[test]
    fn resize_nearest_downsampling_and_odd_ratios() {
        let x = arange(4);
        let out = call(sentinel(2), &[1, 1, 2], |o| resize_nearest(t(&x, &[1, 1, 4]), o, Layout::ChannelsFirst));
        assert_eq!(f32s(out.unwrap()), [0., 2.]);
        let x = arange(3);
        let out = call(sentinel(5), &[1, 5, 1], |o| resize_nearest(t(&x, &[1, 3, 1]), o, Layout::ChannelsLast));
        assert_eq!(f32s(out.unwrap()), [0., 0., 1., 1., 2.]);
        // 3-d spatial, mixed: one axis shrinks, one grows, one stays
        let x = arange(2 * 3 * 4);
        let out = f32s(
            call(sentinel(36), &[1, 1, 4, 3, 3], |o| resize_nearest(t(&x, &[1, 1, 2, 3, 4]), o, Layout::ChannelsFirst))
                .unwrap(),
        );
        for (a, b, c) in (0..36).map(|n| (n / 9, n / 3 % 3, n % 3)) {
            assert_eq!(out[a * 9 + b * 3 + c], ((a * 2 / 4) * 12 + b * 4 + c * 4 / 3) as f32);
        }
        let b = CpuStorage::Bool(vec![true, false]);
        let out = call(CpuStorage::Bool(vec![false; 4]), &[1, 1, 4], |o| {
            resize_nearest(t(&b, &[1, 1, 2]), o, Layout::ChannelsFirst)
        });
        assert_eq!(out.unwrap(), CpuStorage::Bool(vec![true, true, false, false]));
    }

    #[test]
    fn resize_nearest_refuses_bad_shapes() {
        let x = arange(8);
        let err = message(call(sentinel(16), &[1, 4, 4], |o| resize_nearest(t(&x, &[2, 4]), o, Layout::ChannelsLast)));
        assert!(err.contains("rank"), "{err}");
        let err =
            message(call(sentinel(16), &[1, 4, 4], |o| resize_nearest(t(&x, &[1, 2, 4]), o, Layout::ChannelsFirst)));
        assert!(err.contains("axis 1"), "{err}");
        let err =
            message(call(sentinel(8), &[1, 4, 2], |o| resize_nearest(t(&x, &[1, 2, 4]), o, Layout::ChannelsLast)));
        assert!(err.contains("axis 2"), "{err}");
        let e = CpuStorage::F32(vec![]);
        let err =
            message(call(sentinel(4), &[1, 4, 1], |o| resize_nearest(t(&e, &[1, 0, 1]), o, Layout::ChannelsLast)));
        assert!(err.contains("empty"), "{err}");
        assert!(call(sentinel(0), &[1, 0, 1], |o| resize_nearest(t(&e, &[1, 0, 1]), o, Layout::ChannelsLast)).is_ok());
        let i = CpuStorage::I32(vec![0; 8]);
        assert!(call(sentinel(8), &[1, 2, 4], |o| resize_nearest(t(&i, &[1, 2, 4]), o, Layout::ChannelsLast)).is_err());
    }
}
