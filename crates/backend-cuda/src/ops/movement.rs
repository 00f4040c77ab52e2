//! permute, slice, concat, pad, reverse, gather, scatter_add, tile, repeat, one_hot, resize_nearest.
//!
//! Permute, slice, concat, pad, reverse, tile and repeat are one strided copy each
//! (`copy_<bits>` in `kernels/movement.cu`): the output and the input are [`StridedView`]s over
//! one iteration space. The views come from the pure `*_plan` functions below, which also do
//! the argument checks and are unit-tested on the host. Gather and scatter-add validate their
//! indices in a checking launch before anything is written, then move whole rows along the
//! axis; one-hot and nearest resize have a kernel each.
//!
//! Every check, message and dtype rule mirrors the cpu backend (`backend-cpu/src/ops/movement.rs`
//! and its dispatch in `backend-cpu/src/lib.rs`), including its refusal to let `out` be one of
//! the inputs.

use std::fmt::Display;

use keras_backend_api::{BackendError, DType, Layout, TensorRef, shape};

// Pad fills its border with `fill` itself, and one-hot writes its 1 with fill's conversion.
use super::elementwise::{fill_bits, fill_operand};
use super::{bits_suffix, dtype_suffix, refuse_alias};
use crate::{
    Device, Result,
    device::{Kernel, Operand, driver_error, grid_1d},
    index::{Space, View},
};

/// The kernel source of this module.
const MODULE: &str = "movement";

// ----- views -----

/// Where an operand's elements sit for each point of an iteration space: an element offset and
/// one stride per axis of the space (0 broadcasts, negative walks backwards).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StridedView {
    /// Element offset of the space's origin.
    pub offset: usize,
    /// Element stride per axis of the space.
    pub strides: Vec<isize>,
}

impl StridedView {
    /// The dense row-major layout of a tensor of `shape`, walked over the space of `shape`.
    pub fn dense(shape: &[usize]) -> StridedView {
        StridedView { offset: 0, strides: dense_strides(shape) }
    }
}

/// Row-major strides of `shape`. Saturating, so that an empty tensor's (never used) strides
/// cannot overflow; for a non-empty tensor every stride is below its element count and exact.
fn dense_strides(shape: &[usize]) -> Vec<isize> {
    let mut strides = vec![1isize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        let dim = isize::try_from(shape[i + 1]).unwrap_or(isize::MAX);
        strides[i] = strides[i + 1].saturating_mul(dim);
    }
    strides
}

/// Product of `dims`, saturating (only the product of a non-empty tensor's dims is used).
fn volume(dims: &[usize]) -> usize {
    dims.iter().fold(1usize, |acc, &d| acc.saturating_mul(d))
}

/// Checks that every offset of `view` walked over `space` lies in a buffer of `len` elements:
/// a last guard before a kernel writes or reads device memory. A failure is a bug here, not bad
/// input (the plans below have already checked the arguments).
fn check_view(kernel: &str, what: &str, len: usize, space: &[usize], view: &StridedView) -> Result<()> {
    if space.len() == view.strides.len() && space.contains(&0) {
        return Ok(());
    }
    let (mut low, mut high) = (view.offset as i128, view.offset as i128);
    for (&dim, &stride) in space.iter().zip(&view.strides) {
        let reach = (dim as i128 - 1) * stride as i128;
        if reach < 0 {
            low += reach;
        } else {
            high += reach;
        }
    }
    if space.len() != view.strides.len() || low < 0 || high >= len as i128 {
        return Err(BackendError::internal(format!(
            "{kernel}: the view of `{what}` ({space:?} / {:?} at offset {}) leaves its buffer of {len} elements",
            view.strides, view.offset
        )));
    }
    Ok(())
}

// ----- argument checks shared with the cpu backend -----

/// Checks that `out` has the `expected` shape.
fn check_out_shape(kernel: &str, out: &[usize], expected: &[usize], from: impl Display) -> Result<()> {
    if out != expected {
        return Err(BackendError::invalid(format!("{kernel}: out has shape {out:?} but {from} gives {expected:?}")));
    }
    Ok(())
}

/// Prefixes a shape-rule message with the kernel name.
fn rule(kernel: &str) -> impl Fn(String) -> BackendError + '_ {
    move |e| BackendError::invalid(format!("{kernel}: {e}"))
}

fn dtype_mismatch(kernel: &str, a: DType, b: DType) -> BackendError {
    BackendError::invalid(format!("{kernel}: dtypes differ ({a} and {b}); this kernel needs them equal"))
}

fn same_dtype(kernel: &str, x: DType, out: DType) -> Result<()> {
    if x != out {
        return Err(dtype_mismatch(kernel, x, out));
    }
    Ok(())
}

/// Index tensors are `I32` or `I64`.
fn check_index_dtype(kernel: &str, dtype: DType) -> Result<()> {
    match dtype {
        DType::I32 | DType::I64 => Ok(()),
        other => Err(BackendError::invalid(format!("{kernel}: indices must be int32 or int64, got {other}"))),
    }
}

// ----- plans: argument checks and views, pure -----

/// permute: the view of `x` over `out`'s space (out's axis `k` walks x's axis `perm[k]`).
fn permute_plan(x_shape: &[usize], perm: &[usize], out_shape: &[usize]) -> Result<StridedView> {
    let expected = shape::permuted(x_shape, perm).map_err(rule("permute"))?;
    check_out_shape("permute", out_shape, &expected, format_args!("permuting x {x_shape:?} by {perm:?}"))?;
    let x_strides = dense_strides(x_shape);
    Ok(StridedView { offset: 0, strides: perm.iter().map(|&p| x_strides[p]).collect() })
}

/// slice: the view of `x` over `out`'s space: offset `Σ start·stride`, strides `stride·step`.
fn slice_plan(x_shape: &[usize], starts: &[usize], steps: &[isize], out_shape: &[usize]) -> Result<StridedView> {
    let rank = x_shape.len();
    if starts.len() != rank || steps.len() != rank || out_shape.len() != rank {
        return Err(BackendError::invalid(format!(
            "slice: x {x_shape:?} has rank {rank} but starts {starts:?}, steps {steps:?} and out {out_shape:?} have \
             lengths {}, {} and {}",
            starts.len(),
            steps.len(),
            out_shape.len()
        )));
    }
    let x_strides = dense_strides(x_shape);
    let mut offset = 0usize;
    let mut strides = Vec::with_capacity(rank);
    for axis in 0..rank {
        let (dim, start, step, count) = (x_shape[axis], starts[axis], steps[axis], out_shape[axis]);
        let last = start as i128 + (count as i128 - 1) * step as i128;
        if step == 0 || (count > 0 && (start >= dim || last < 0 || last >= dim as i128)) {
            return Err(BackendError::invalid(format!(
                "slice: axis {axis}: start {start}, step {step}, count {count} reads outside x of shape {x_shape:?}"
            )));
        }
        // Axes read at most once never move, so their step (possibly huge) never multiplies.
        // When out is non-empty every axis reads inside x, so the products are exact; when it
        // is empty nothing is launched and saturation only keeps them from overflowing.
        if count > 0 {
            offset = offset.saturating_add(start.saturating_mul(x_strides[axis].unsigned_abs()));
        }
        strides.push(if count > 1 { x_strides[axis].saturating_mul(step) } else { 0 });
    }
    Ok(StridedView { offset, strides })
}

/// concat: the view of `out` each input is copied into (dense, starting at the input's first
/// position along `axis`), one per input.
fn concat_plan(shapes: &[&[usize]], axis: usize, out_shape: &[usize]) -> Result<Vec<StridedView>> {
    let expected = shape::concat(shapes, axis).map_err(rule("concat"))?;
    check_out_shape("concat", out_shape, &expected, format_args!("concatenating {shapes:?} along axis {axis}"))?;
    let out_strides = dense_strides(out_shape);
    let mut at = 0usize;
    Ok(shapes
        .iter()
        .map(|shape| {
            let view = StridedView {
                offset: at.saturating_mul(out_strides[axis].unsigned_abs()),
                strides: out_strides.clone(),
            };
            at = at.saturating_add(shape[axis]);
            view
        })
        .collect())
}

/// pad: the view of `out` that `x` is copied into: out's strides, starting at the `before` corner.
fn pad_plan(x_shape: &[usize], before: &[usize], after: &[usize], out_shape: &[usize]) -> Result<StridedView> {
    let rank = x_shape.len();
    if before.len() != rank || after.len() != rank {
        return Err(BackendError::invalid(format!(
            "pad: x {x_shape:?} has rank {rank} but before {before:?} and after {after:?} have lengths {} and {}",
            before.len(),
            after.len()
        )));
    }
    let expected = x_shape
        .iter()
        .zip(before.iter().zip(after))
        .map(|(&d, (&b, &a))| d.checked_add(b)?.checked_add(a))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| {
            BackendError::invalid(format!("pad: x {x_shape:?} padded by {before:?} and {after:?} overflows"))
        })?;
    check_out_shape("pad", out_shape, &expected, format_args!("x {x_shape:?} padded by {before:?} and {after:?}"))?;
    let strides = dense_strides(out_shape);
    // Exact whenever x is non-empty (the corner is then an element of out); unused otherwise.
    let offset = before
        .iter()
        .zip(&strides)
        .fold(0usize, |acc, (&b, &s)| acc.saturating_add(b.saturating_mul(s.unsigned_abs())));
    Ok(StridedView { offset, strides })
}

/// reverse: the view of `x` over its own space: each reversed axis starts at its last element
/// and walks backwards.
fn reverse_plan(x_shape: &[usize], axes: &[usize], out_shape: &[usize]) -> Result<StridedView> {
    shape::check_axes(axes, x_shape.len()).map_err(rule("reverse"))?;
    check_out_shape("reverse", out_shape, x_shape, format_args!("reversing x {x_shape:?} along {axes:?}"))?;
    let mut strides = dense_strides(x_shape);
    let mut offset = 0usize;
    for &axis in axes {
        offset = offset.saturating_add(x_shape[axis].saturating_sub(1).saturating_mul(strides[axis].unsigned_abs()));
        strides[axis] = -strides[axis];
    }
    Ok(StridedView { offset, strides })
}

/// tile: the space `[reps₀, x₀, reps₁, x₁, ...]` (over which `out` is dense) and the view of
/// `x` over it, broadcast along every `reps` axis.
fn tile_plan(x_shape: &[usize], out_shape: &[usize]) -> Result<(Vec<usize>, StridedView)> {
    if out_shape.len() != x_shape.len() {
        return Err(BackendError::invalid(format!(
            "tile: out {out_shape:?} and x {x_shape:?} must have the same rank"
        )));
    }
    let x_strides = dense_strides(x_shape);
    let mut space = Vec::with_capacity(2 * x_shape.len());
    let mut strides = Vec::with_capacity(2 * x_shape.len());
    for (axis, (&xd, &od)) in x_shape.iter().zip(out_shape).enumerate() {
        let reps = match (xd, od) {
            (0, 0) => 0,
            (0, _) => return Err(tile_error(axis, x_shape, out_shape)),
            _ if od % xd == 0 => od / xd,
            _ => return Err(tile_error(axis, x_shape, out_shape)),
        };
        space.extend([reps, xd]);
        strides.extend([0, x_strides[axis]]);
    }
    Ok((space, StridedView { offset: 0, strides }))
}

fn tile_error(axis: usize, x: &[usize], out: &[usize]) -> BackendError {
    BackendError::invalid(format!(
        "tile: out dim {} on axis {axis} is not a multiple of x dim {} (x {x:?}, out {out:?})",
        out[axis], x[axis]
    ))
}

/// repeat: the space `x.shape` with `repeats` inserted after `axis` (over which `out` is dense)
/// and the view of `x` over it, broadcast along the inserted axis.
fn repeat_plan(
    x_shape: &[usize],
    axis: usize,
    repeats: usize,
    out_shape: &[usize],
) -> Result<(Vec<usize>, StridedView)> {
    let Some(&dim) = x_shape.get(axis) else {
        return Err(BackendError::invalid(format!("repeat: axis {axis} is out of range for x {x_shape:?}")));
    };
    let mut expected = x_shape.to_vec();
    expected[axis] = dim.checked_mul(repeats).ok_or_else(|| {
        BackendError::invalid(format!("repeat: {repeats} repeats of axis {axis} of x {x_shape:?} overflow"))
    })?;
    check_out_shape(
        "repeat",
        out_shape,
        &expected,
        format_args!("x {x_shape:?} repeated {repeats} times along axis {axis}"),
    )?;
    let mut space = x_shape.to_vec();
    let mut strides = dense_strides(x_shape);
    space.insert(axis + 1, repeats);
    strides.insert(axis + 1, 0);
    Ok((space, StridedView { offset: 0, strides }))
}

/// resize_nearest: the cpu backend's checks (same rank >= 3, batch and channels unchanged, no
/// empty spatial axis asked to fill a non-empty one).
fn resize_nearest_check(x_shape: &[usize], out_shape: &[usize], layout: Layout) -> Result<()> {
    let rank = x_shape.len();
    if rank < 3 || out_shape.len() != rank {
        return Err(BackendError::invalid(format!(
            "resize_nearest: x {x_shape:?} and out {out_shape:?} must have the same rank >= 3"
        )));
    }
    let (channels, spatial) = match layout {
        Layout::ChannelsFirst => (1, 2..rank),
        Layout::ChannelsLast => (rank - 1, 1..rank - 1),
    };
    for axis in [0, channels] {
        if x_shape[axis] != out_shape[axis] {
            return Err(BackendError::invalid(format!(
                "resize_nearest: batch and channels must not change ({layout:?}), but axis {axis} of x {x_shape:?} and \
                 out {out_shape:?} differ"
            )));
        }
    }
    if let Some(axis) = spatial.clone().find(|&a| x_shape[a] == 0 && out_shape[a] > 0) {
        return Err(BackendError::invalid(format!(
            "resize_nearest: spatial axis {axis} of x {x_shape:?} is empty and cannot fill out {out_shape:?}"
        )));
    }
    Ok(())
}

// ----- value conversion -----

// ----- launches -----

fn kernel(function: &str) -> Kernel<'_> {
    Kernel { module: MODULE, function }
}

/// `out[out_view(p)] = x[x_view(p)]` for every point `p` of `space`, both operands of `dtype`.
#[allow(clippy::too_many_arguments)]
fn copy_strided(
    device: &Device,
    kernel_name: &str,
    dtype: DType,
    out: &Operand,
    out_view: &StridedView,
    x: &Operand,
    x_view: &StridedView,
    space: &[usize],
) -> Result<()> {
    let space_index = Space::new(kernel_name, space)?;
    if space_index.is_empty() {
        return Ok(());
    }
    check_view(kernel_name, "out", out.len, space, out_view)?;
    check_view(kernel_name, "x", x.len, space, x_view)?;
    let n = space_index.len();
    let size = dtype.size_in_bytes();
    let dense = dense_strides(space);
    if out_view.strides == dense && x_view.strides == dense {
        // Both sides are one contiguous run: a plain device copy.
        return device.copy(
            kernel_name,
            out.ptr + (out_view.offset * size) as u64,
            x.ptr + (x_view.offset * size) as u64,
            n * size,
        );
    }
    let out_index = View::new(kernel_name, out_view.offset, &out_view.strides)?;
    let x_index = View::new(kernel_name, x_view.offset, &x_view.strides)?;
    let (out_ptr, x_ptr, count) = (out.ptr, x.ptr, n as i64);
    let name = format!("copy_{}", bits_suffix(dtype));
    crate::launch!(device, kernel(&name), grid_1d(n); out_ptr, out_index, x_ptr, x_index, space_index, count)
}

/// Copies `dst.len()` elements from device address `src` to the host and waits for them.
fn read_back<T: Copy>(device: &Device, kernel_name: &str, dst: &mut [T], src: u64) -> Result<()> {
    // SAFETY: callers pass an address inside a live operand with at least `dst.len()` elements
    // of `T` from there on; the stream is synchronised before `dst` is read or released.
    unsafe { cudarc::driver::result::memcpy_dtoh_async(dst, src, device.stream().cu_stream()) }
        .map_err(|e| driver_error(kernel_name, "reading back an index", e))?;
    device.synchronize(kernel_name)
}

/// Checks every index of `indices` (`I32` or `I64`) against an axis of length `dim` before
/// anything is written, and names the first bad one as the cpu backend does.
fn check_indices(device: &Device, kernel_name: &str, indices: &Operand, axis: usize, dim: usize) -> Result<()> {
    if indices.len == 0 {
        return Ok(());
    }
    let first_bad = device.scratch(kernel_name, DType::I64, 1)?;
    device.zero(kernel_name, first_bad.ptr, DType::I64.size_in_bytes())?;
    let name = format!("check_indices_{}", dtype_suffix(indices.dtype));
    let (bad_ptr, idx_ptr, length, count) = (first_bad.ptr, indices.ptr, dim as i64, indices.len as i64);
    let flag = device.with_error_flag(
        kernel_name,
        |flag| crate::launch!(device, kernel(&name), grid_1d(indices.len); flag, bad_ptr, idx_ptr, length, count),
    )?;
    if flag == 0 {
        return Ok(());
    }
    let mut key = [0u64];
    read_back(device, kernel_name, &mut key, bad_ptr)?;
    // The kernel stored `n - position` of the first bad index.
    let position =
        usize::try_from(key[0]).ok().filter(|&k| (1..=indices.len).contains(&k)).map(|k| indices.len - k).ok_or_else(
            || BackendError::internal(format!("{kernel_name}: the index check reported position key {}", key[0])),
        )?;
    let size = indices.dtype.size_in_bytes();
    let at = indices.ptr + (position * size) as u64;
    let value = if indices.dtype == DType::I32 {
        let mut v = [0i32];
        read_back(device, kernel_name, &mut v, at)?;
        i64::from(v[0])
    } else {
        let mut v = [0i64];
        read_back(device, kernel_name, &mut v, at)?;
        v[0]
    };
    Err(BackendError::invalid(format!("{kernel_name}: index {value} is out of range for axis {axis} of length {dim}")))
}

// ----- ops -----

/// `out[i₀..] = x[i_perm⁻¹...]`: out's axis `k` is x's axis `perm[k]`. Every dtype.
pub fn permute(device: &Device, x: TensorRef<'_>, perm: &[usize], out: TensorRef<'_>) -> Result<()> {
    const K: &str = "permute";
    refuse_alias(K, &[x], out)?;
    let (xo, oo) = (device.operand(K, "x", x)?, device.operand(K, "out", out)?);
    let view = permute_plan(&x.shape, perm, &out.shape)?;
    same_dtype(K, xo.dtype, oo.dtype)?;
    copy_strided(device, K, oo.dtype, &oo, &StridedView::dense(&out.shape), &xo, &view, &out.shape)
}

/// Strided slice: `out[j₀, j₁, ...] = x[start₀ + j₀·step₀, ...]`, `out`'s shape giving the
/// count per axis; steps are non-zero and may be negative. Every dtype.
pub fn slice(device: &Device, x: TensorRef<'_>, starts: &[usize], steps: &[isize], out: TensorRef<'_>) -> Result<()> {
    const K: &str = "slice";
    refuse_alias(K, &[x], out)?;
    let (xo, oo) = (device.operand(K, "x", x)?, device.operand(K, "out", out)?);
    let view = slice_plan(&x.shape, starts, steps, &out.shape)?;
    same_dtype(K, xo.dtype, oo.dtype)?;
    copy_strided(device, K, oo.dtype, &oo, &StridedView::dense(&out.shape), &xo, &view, &out.shape)
}

/// Concatenation of `inputs` (same dtype, shapes agreeing off `axis`) along `axis`.
pub fn concat(device: &Device, inputs: &[TensorRef<'_>], axis: usize, out: TensorRef<'_>) -> Result<()> {
    const K: &str = "concat";
    refuse_alias(K, inputs, out)?;
    let operands = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| device.operand(K, &format!("inputs[{i}]"), *t))
        .collect::<Result<Vec<_>>>()?;
    let oo = device.operand(K, "out", out)?;
    let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape.as_slice()).collect();
    let views = concat_plan(&shapes, axis, &out.shape)?;
    if let Some(t) = operands.iter().find(|t| t.dtype != oo.dtype) {
        return Err(dtype_mismatch(K, t.dtype, oo.dtype));
    }
    if oo.len == 0 {
        return Ok(());
    }
    for ((operand, shape), view) in operands.iter().zip(&shapes).zip(&views) {
        copy_strided(device, K, oo.dtype, &oo, view, operand, &StridedView::dense(shape), shape)?;
    }
    Ok(())
}

/// Constant padding: `out` dim `k` is `before[k] + x dim k + after[k]`; the new elements are
/// `value` converted to the dtype (saturating for integers, `value != 0` for bool).
pub fn pad(
    device: &Device,
    x: TensorRef<'_>,
    before: &[usize],
    after: &[usize],
    value: f64,
    out: TensorRef<'_>,
) -> Result<()> {
    const K: &str = "pad";
    refuse_alias(K, &[x], out)?;
    let (xo, oo) = (device.operand(K, "x", x)?, device.operand(K, "out", out)?);
    let interior = pad_plan(&x.shape, before, after, &out.shape)?;
    same_dtype(K, xo.dtype, oo.dtype)?;
    if oo.len == 0 {
        return Ok(());
    }
    // Filling all of out first and then overwriting the interior keeps both launches plain; the
    // stream orders them.
    fill_operand(device, &oo, value)?;
    copy_strided(device, K, oo.dtype, &oo, &interior, &xo, &StridedView::dense(&x.shape), &x.shape)
}

/// Reverses `x` along each of the distinct `axes`. Every dtype.
pub fn reverse(device: &Device, x: TensorRef<'_>, axes: &[usize], out: TensorRef<'_>) -> Result<()> {
    const K: &str = "reverse";
    refuse_alias(K, &[x], out)?;
    let (xo, oo) = (device.operand(K, "x", x)?, device.operand(K, "out", out)?);
    let view = reverse_plan(&x.shape, axes, &out.shape)?;
    same_dtype(K, xo.dtype, oo.dtype)?;
    copy_strided(device, K, oo.dtype, &oo, &StridedView::dense(&out.shape), &xo, &view, &out.shape)
}

/// `out = take(x, indices, axis)`: `out` has shape `x.shape[..axis] ++ indices.shape ++
/// x.shape[axis + 1..]`. Indices are `I32` or `I64` of any shape; negative ones count from the
/// end; any other out of range is an error, found before `out` is written.
pub fn gather(
    device: &Device,
    x: TensorRef<'_>,
    indices: TensorRef<'_>,
    axis: usize,
    out: TensorRef<'_>,
) -> Result<()> {
    const K: &str = "gather";
    refuse_alias(K, &[x, indices], out)?;
    let xo = device.operand(K, "x", x)?;
    let io = device.operand(K, "indices", indices)?;
    let oo = device.operand(K, "out", out)?;
    let expected = shape::gather(&x.shape, &indices.shape, axis).map_err(rule(K))?;
    check_out_shape(
        K,
        &out.shape,
        &expected,
        format_args!("x {:?} with indices {:?} along axis {axis}", x.shape.as_slice(), indices.shape.as_slice()),
    )?;
    check_index_dtype(K, io.dtype)?;
    let dim = x.shape[axis];
    check_indices(device, K, &io, axis, dim)?;
    same_dtype(K, xo.dtype, oo.dtype)?;
    if oo.len == 0 {
        return Ok(());
    }
    // Exact: out is non-empty, so are x's dims after `axis`.
    let inner = volume(&x.shape[axis + 1..]);
    let (out_ptr, x_ptr, idx_ptr) = (oo.ptr, xo.ptr, io.ptr);
    let (length, count, inner, n) = (dim as i64, io.len as i64, inner as i64, oo.len as i64);
    let name = format!("gather_{}_{}", bits_suffix(oo.dtype), dtype_suffix(io.dtype));
    crate::launch!(device, kernel(&name), grid_1d(oo.len); out_ptr, x_ptr, idx_ptr, length, count, inner, n)
}

/// The adjoint of [`gather`]: `out` is zeroed, then for each index position `j` (indices
/// flattened), `out[.., indices[j], ..] += updates[.., j, ..]`; repeated indices accumulate.
/// Numeric dtypes (and `F16`, as on the cpu); integers wrap on overflow.
///
/// Floats accumulate with atomics in no fixed order, so where indices repeat the rounding can
/// differ from the cpu backend's (which adds in index order) in the last bits.
pub fn scatter_add(
    device: &Device,
    updates: TensorRef<'_>,
    indices: TensorRef<'_>,
    axis: usize,
    out: TensorRef<'_>,
) -> Result<()> {
    const K: &str = "scatter_add";
    refuse_alias(K, &[updates, indices], out)?;
    let uo = device.operand(K, "updates", updates)?;
    let io = device.operand(K, "indices", indices)?;
    let oo = device.operand(K, "out", out)?;
    let expected = shape::gather(&out.shape, &indices.shape, axis).map_err(rule(K))?;
    if updates.shape.as_slice() != expected.as_slice() {
        return Err(BackendError::invalid(format!(
            "scatter_add: updates has shape {:?} but out {:?} with indices {:?} along axis {axis} needs {expected:?}",
            updates.shape.as_slice(),
            out.shape.as_slice(),
            indices.shape.as_slice()
        )));
    }
    check_index_dtype(K, io.dtype)?;
    let dim = out.shape[axis];
    check_indices(device, K, &io, axis, dim)?;
    match (uo.dtype, oo.dtype) {
        (DType::Bool, DType::Bool) => {
            return Err(BackendError::invalid("scatter_add: bool tensors cannot be added; use a numeric dtype"));
        }
        (u, o) if u != o => return Err(dtype_mismatch(K, u, o)),
        _ => {}
    }
    device.zero(K, oo.ptr, oo.len * oo.dtype.size_in_bytes())?;
    if uo.len == 0 {
        return Ok(());
    }
    // Exact: updates is non-empty, so are out's dims after `axis`.
    let inner = volume(&out.shape[axis + 1..]);
    let (out_ptr, upd_ptr, idx_ptr) = (oo.ptr, uo.ptr, io.ptr);
    let (length, count, inner, n) = (dim as i64, io.len as i64, inner as i64, uo.len as i64);
    let name = format!("scatter_add_{}_{}", dtype_suffix(oo.dtype), dtype_suffix(io.dtype));
    crate::launch!(device, kernel(&name), grid_1d(uo.len); out_ptr, upd_ptr, idx_ptr, length, count, inner, n)
}

/// Tiles `x`: `out` has the same rank, each dim a multiple of `x`'s, and
/// `out[i] = x[i mod x.shape]`. Every dtype; `x` rank at most 8 (the space doubles it).
pub fn tile(device: &Device, x: TensorRef<'_>, out: TensorRef<'_>) -> Result<()> {
    const K: &str = "tile";
    refuse_alias(K, &[x], out)?;
    let (xo, oo) = (device.operand(K, "x", x)?, device.operand(K, "out", out)?);
    let (space, view) = tile_plan(&x.shape, &out.shape)?;
    same_dtype(K, xo.dtype, oo.dtype)?;
    copy_strided(device, K, oo.dtype, &oo, &StridedView::dense(&space), &xo, &view, &space)
}

/// Repeats each element of `x` `repeats` times along `axis` (NumPy's `repeat`). Every dtype.
pub fn repeat(device: &Device, x: TensorRef<'_>, axis: usize, repeats: usize, out: TensorRef<'_>) -> Result<()> {
    const K: &str = "repeat";
    refuse_alias(K, &[x], out)?;
    let (xo, oo) = (device.operand(K, "x", x)?, device.operand(K, "out", out)?);
    let (space, view) = repeat_plan(&x.shape, axis, repeats, &out.shape)?;
    same_dtype(K, xo.dtype, oo.dtype)?;
    copy_strided(device, K, oo.dtype, &oo, &StridedView::dense(&space), &xo, &view, &space)
}

/// One-hot encoding: `out` has shape `indices.shape ++ [depth]`; `out[.., k]` is 1 (`true`)
/// where `k == indices[..]`, else 0; an index outside `0..depth` gives an all-zero row.
/// `indices` are `I32` or `I64`; `out` has any dtype.
pub fn one_hot(device: &Device, indices: TensorRef<'_>, out: TensorRef<'_>) -> Result<()> {
    const K: &str = "one_hot";
    refuse_alias(K, &[indices], out)?;
    let io = device.operand(K, "indices", indices)?;
    let oo = device.operand(K, "out", out)?;
    let Some((&depth, lead)) = out.shape.split_last() else {
        return Err(BackendError::invalid("one_hot: out is 0-d; it needs shape indices.shape ++ [depth]"));
    };
    if lead != indices.shape.as_slice() {
        return Err(BackendError::invalid(format!(
            "one_hot: out has shape {:?} but indices {:?} need indices.shape ++ [depth]",
            out.shape.as_slice(),
            indices.shape.as_slice()
        )));
    }
    check_index_dtype(K, io.dtype)?;
    if oo.len == 0 {
        return Ok(());
    }
    let (out_ptr, idx_ptr, one, depth, n) = (oo.ptr, io.ptr, fill_bits(oo.dtype, 1.0), depth as i64, oo.len as i64);
    let name = format!("one_hot_{}_{}", bits_suffix(oo.dtype), dtype_suffix(io.dtype));
    crate::launch!(device, kernel(&name), grid_1d(oo.len); out_ptr, idx_ptr, one, depth, n)
}

/// Nearest-neighbour resize of the spatial dims: `out[.., p, ..] = x[.., floor(p · in / out), ..]`
/// per spatial dim; batch (axis 0) and channels (axis 1, or the last axis for `ChannelsLast`)
/// are unchanged. Rank >= 3; every dtype.
pub fn resize_nearest(device: &Device, x: TensorRef<'_>, out: TensorRef<'_>, layout: Layout) -> Result<()> {
    const K: &str = "resize_nearest";
    refuse_alias(K, &[x], out)?;
    let (xo, oo) = (device.operand(K, "x", x)?, device.operand(K, "out", out)?);
    resize_nearest_check(&x.shape, &out.shape, layout)?;
    same_dtype(K, xo.dtype, oo.dtype)?;
    let (out_space, x_space) = (Space::new(K, &out.shape)?, Space::new(K, &x.shape)?);
    if oo.len == 0 {
        return Ok(());
    }
    if x.shape.as_slice() == out.shape.as_slice() {
        return device.copy(K, oo.ptr, xo.ptr, oo.len * oo.dtype.size_in_bytes());
    }
    let (out_ptr, x_ptr, n) = (oo.ptr, xo.ptr, oo.len as i64);
    let name = format!("resize_nearest_{}", bits_suffix(oo.dtype));
    crate::launch!(device, kernel(&name), grid_1d(oo.len); out_ptr, x_ptr, out_space, x_space, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The copy kernel on the host: `out[out_view(p)] = x[x_view(p)]` over `space`, with the
    /// offset arithmetic of `view_offset` in `common.cuh`.
    fn run_copy<T: Copy>(space: &[usize], out_view: &StridedView, x_view: &StridedView, x: &[T], out: &mut [T]) {
        check_view("test", "out", out.len(), space, out_view).unwrap();
        check_view("test", "x", x.len(), space, x_view).unwrap();
        let n: usize = space.iter().product();
        for i in 0..n {
            let (mut linear, mut o, mut s) = (i as i64, out_view.offset as i64, x_view.offset as i64);
            for k in (0..space.len()).rev() {
                let d = space[k] as i64;
                let c = linear % d;
                linear /= d;
                o += c * out_view.strides[k] as i64;
                s += c * x_view.strides[k] as i64;
            }
            out[o as usize] = x[s as usize];
        }
    }

    fn arange(n: usize) -> Vec<i32> {
        (0..n as i32).collect()
    }

    /// Copies `x` through `view` over `space` into a dense out.
    fn gather_view(space: &[usize], view: &StridedView, x: &[i32]) -> Vec<i32> {
        let mut out = vec![-1; space.iter().product()];
        run_copy(space, &StridedView::dense(space), view, x, &mut out);
        out
    }

    #[test]
    fn dense_strides_are_row_major_and_never_overflow() {
        assert_eq!(dense_strides(&[2, 3, 4]), [12, 4, 1]);
        assert_eq!(dense_strides(&[]), Vec::<isize>::new());
        assert_eq!(dense_strides(&[0, usize::MAX, usize::MAX])[0], isize::MAX);
    }

    #[test]
    fn permute_view_transposes() {
        let view = permute_plan(&[2, 3], &[1, 0], &[3, 2]).unwrap();
        assert_eq!(view, StridedView { offset: 0, strides: vec![1, 3] });
        assert_eq!(gather_view(&[3, 2], &view, &arange(6)), [0, 3, 1, 4, 2, 5]);
        let e = permute_plan(&[2, 3], &[1, 0], &[2, 3]).unwrap_err();
        assert!(e.message.starts_with("permute: out has shape [2, 3]"), "{}", e.message);
        assert!(permute_plan(&[2, 3], &[0, 0], &[2, 2]).unwrap_err().message.contains("repeated"));
    }

    #[test]
    fn slice_with_negative_step() {
        // x [2, 5]: rows 1..0 step -1, columns 4, 2, 0.
        let view = slice_plan(&[2, 5], &[1, 4], &[-1, -2], &[2, 3]).unwrap();
        assert_eq!(view, StridedView { offset: 9, strides: vec![-5, -2] });
        assert_eq!(gather_view(&[2, 3], &view, &arange(10)), [9, 7, 5, 4, 2, 0]);
        // An axis read once never moves, whatever its step.
        let view = slice_plan(&[4], &[3], &[isize::MIN], &[1]).unwrap();
        assert_eq!(view, StridedView { offset: 3, strides: vec![0] });
        let e = slice_plan(&[2, 5], &[0, 4], &[1, 2], &[2, 2]).unwrap_err();
        assert!(e.message.contains("axis 1") && e.message.contains("start 4"), "{}", e.message);
        assert!(slice_plan(&[2], &[0], &[0], &[0]).is_err());
        assert!(slice_plan(&[2], &[0], &[1], &[3]).is_err());
        assert!(slice_plan(&[2, 3], &[0], &[1], &[2, 3]).unwrap_err().message.contains("rank 2"));
        // Empty out: any start is fine.
        assert!(slice_plan(&[2], &[7], &[1], &[0]).is_ok());
    }

    #[test]
    fn reverse_starts_at_the_last_element() {
        let view = reverse_plan(&[2, 3], &[1], &[2, 3]).unwrap();
        assert_eq!(view, StridedView { offset: 2, strides: vec![3, -1] });
        assert_eq!(gather_view(&[2, 3], &view, &arange(6)), [2, 1, 0, 5, 4, 3]);
        let view = reverse_plan(&[2, 3], &[0, 1], &[2, 3]).unwrap();
        assert_eq!(view, StridedView { offset: 5, strides: vec![-3, -1] });
        assert_eq!(gather_view(&[2, 3], &view, &arange(6)), [5, 4, 3, 2, 1, 0]);
        let view = reverse_plan(&[2, 2, 2], &[0, 2], &[2, 2, 2]).unwrap();
        let out = gather_view(&[2, 2, 2], &view, &arange(8));
        for (i, j, k) in (0..8).map(|n| (n / 4, n / 2 % 2, n % 2)) {
            assert_eq!(out[i * 4 + j * 2 + k], ((1 - i) * 4 + j * 2 + (1 - k)) as i32);
        }
        assert!(reverse_plan(&[2, 3], &[1, 1], &[2, 3]).unwrap_err().message.contains("repeated"));
        assert!(reverse_plan(&[2, 3], &[0], &[3, 2]).is_err());
        assert!(reverse_plan(&[0, 3], &[0, 1], &[0, 3]).is_ok());
    }

    #[test]
    fn tile_views_of_a_2x3_tensor() {
        let (space, view) = tile_plan(&[2, 3], &[4, 3]).unwrap();
        assert_eq!(space, [2, 2, 1, 3]);
        assert_eq!(view, StridedView { offset: 0, strides: vec![0, 3, 0, 1] });
        assert_eq!(gather_view(&space, &view, &arange(6)), [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5]);
        let (space, view) = tile_plan(&[2, 3], &[4, 9]).unwrap();
        let out = gather_view(&space, &view, &arange(6));
        for i in 0..4 {
            for j in 0..9 {
                assert_eq!(out[i * 9 + j], ((i % 2) * 3 + j % 3) as i32);
            }
        }
        let (space, _) = tile_plan(&[], &[]).unwrap();
        assert!(space.is_empty());
        assert_eq!(tile_plan(&[0, 2], &[0, 4]).unwrap().0, [0, 0, 2, 2]);
        assert!(tile_plan(&[2, 3], &[2, 4]).unwrap_err().message.contains("axis 1"));
        assert!(tile_plan(&[2, 3], &[6]).unwrap_err().message.contains("rank"));
        assert!(tile_plan(&[0], &[3]).is_err());
    }

    #[test]
    fn repeat_inserts_a_broadcast_axis() {
        let (space, view) = repeat_plan(&[2, 2], 0, 2, &[4, 2]).unwrap();
        assert_eq!(space, [2, 2, 2]);
        assert_eq!(view, StridedView { offset: 0, strides: vec![2, 0, 1] });
        assert_eq!(gather_view(&space, &view, &[1, 2, 3, 4]), [1, 2, 1, 2, 3, 4, 3, 4]);
        let (space, view) = repeat_plan(&[2, 2], 1, 3, &[2, 6]).unwrap();
        assert_eq!(gather_view(&space, &view, &[1, 2, 3, 4]), [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]);
        assert!(repeat_plan(&[2, 2], 1, 0, &[2, 0]).is_ok());
        assert!(repeat_plan(&[2, 2], 2, 2, &[4, 2]).unwrap_err().message.contains("axis 2"));
        assert!(repeat_plan(&[2, 2], 0, 2, &[2, 4]).unwrap_err().message.contains("[4, 2]"));
        assert!(repeat_plan(&[2, 2], 0, usize::MAX, &[2, 4]).unwrap_err().message.contains("overflow"));
    }

    #[test]
    fn pad_copies_x_into_the_interior() {
        let interior = pad_plan(&[2, 2], &[1, 0], &[0, 2], &[3, 4]).unwrap();
        assert_eq!(interior, StridedView { offset: 4, strides: vec![4, 1] });
        let mut out = vec![9; 12];
        run_copy(&[2, 2], &interior, &StridedView::dense(&[2, 2]), &[1, 2, 3, 4], &mut out);
        assert_eq!(out, [9, 9, 9, 9, 1, 2, 9, 9, 3, 4, 9, 9]);
        assert_eq!(pad_plan(&[], &[], &[], &[]).unwrap(), StridedView { offset: 0, strides: vec![] });
        assert!(pad_plan(&[2], &[1], &[1], &[3]).unwrap_err().message.contains("[4]"));
        assert!(pad_plan(&[2], &[1, 1], &[1], &[4]).unwrap_err().message.contains("lengths 2 and 1"));
        assert!(pad_plan(&[2], &[usize::MAX], &[1], &[4]).unwrap_err().message.contains("overflows"));
    }

    #[test]
    fn concat_places_each_input_at_its_running_offset() {
        let views = concat_plan(&[&[2, 1], &[2, 3]], 1, &[2, 4]).unwrap();
        assert_eq!(views[0], StridedView { offset: 0, strides: vec![4, 1] });
        assert_eq!(views[1], StridedView { offset: 1, strides: vec![4, 1] });
        let mut out = vec![-1; 8];
        run_copy(&[2, 1], &views[0], &StridedView::dense(&[2, 1]), &[10, 20], &mut out);
        run_copy(&[2, 3], &views[1], &StridedView::dense(&[2, 3]), &arange(6), &mut out);
        assert_eq!(out, [10, 0, 1, 2, 20, 3, 4, 5]);
        let views = concat_plan(&[&[1, 2], &[0, 2], &[2, 2]], 0, &[3, 2]).unwrap();
        assert_eq!(views.iter().map(|v| v.offset).collect::<Vec<_>>(), [0, 2, 2]);
        assert!(concat_plan(&[], 0, &[]).unwrap_err().message.contains("nothing to concatenate"));
        assert!(concat_plan(&[&[2, 1], &[3, 1]], 1, &[2, 2]).unwrap_err().message.contains("differ"));
        assert!(concat_plan(&[&[2, 1], &[2, 1]], 0, &[2, 2]).is_err());
    }

    #[test]
    fn resize_checks_mirror_the_cpu() {
        assert!(resize_nearest_check(&[2, 4], &[1, 4, 4], Layout::ChannelsLast).unwrap_err().message.contains("rank"));
        let e = resize_nearest_check(&[1, 2, 4], &[1, 4, 4], Layout::ChannelsFirst).unwrap_err();
        assert!(e.message.contains("axis 1"), "{}", e.message);
        let e = resize_nearest_check(&[1, 2, 4], &[1, 4, 2], Layout::ChannelsLast).unwrap_err();
        assert!(e.message.contains("axis 2"), "{}", e.message);
        let e = resize_nearest_check(&[1, 0, 1], &[1, 4, 1], Layout::ChannelsLast).unwrap_err();
        assert!(e.message.contains("empty"), "{}", e.message);
        assert!(resize_nearest_check(&[1, 0, 1], &[1, 0, 1], Layout::ChannelsLast).is_ok());
        assert!(resize_nearest_check(&[2, 3, 2, 3], &[2, 3, 4, 6], Layout::ChannelsFirst).is_ok());
    }

    /// `nearest_source` of `movement.cu`, line for line: the long division for products that
    /// overflow 64 bits.
    fn nearest_source(p: u64, input: u64, out: u64) -> u64 {
        let product = u128::from(p) * u128::from(input);
        let (hi, lo) = ((product >> 64) as u64, product as u64);
        if hi == 0 {
            return lo / out;
        }
        let (mut r, mut q) = (hi, 0u64);
        for bit in (0..64).rev() {
            let carry = r >> 63;
            r = (r << 1) | ((lo >> bit) & 1);
            q <<= 1;
            if carry != 0 || r >= out {
                r = r.wrapping_sub(out);
                q |= 1;
            }
        }
        q
    }

    #[test]
    fn nearest_source_matches_exact_division() {
        let cases = [
            (0, 3, 5),
            (4, 3, 5),
            (3, 4, 2),
            (1 << 40, 1 << 40, (1 << 40) + 1),
            (u64::MAX / 3, u64::MAX / 2, u64::MAX / 3 + 1),
            ((1 << 63) - 2, (1 << 63) - 1, (1 << 63) - 1),
            ((1 << 63) + 5, u64::MAX - 7, u64::MAX),
        ];
        for (p, input, out) in cases {
            let want = (u128::from(p) * u128::from(input) / u128::from(out)) as u64;
            assert_eq!(nearest_source(p, input, out), want, "{p} · {input} / {out}");
        }
    }

    #[test]
    fn check_view_refuses_views_that_leave_the_buffer() {
        let reverse = StridedView { offset: 2, strides: vec![3, -1] };
        assert!(check_view("t", "x", 6, &[2, 3], &reverse).is_ok());
        assert!(check_view("t", "x", 5, &[2, 3], &reverse).is_err());
        assert!(check_view("t", "x", 6, &[2, 3], &StridedView { offset: 0, strides: vec![3, -1] }).is_err());
        assert!(check_view("t", "x", 0, &[0, 3], &StridedView::dense(&[0, 3])).is_ok());
        assert!(check_view("t", "x", 1, &[], &StridedView::dense(&[])).is_ok());
    }
}
