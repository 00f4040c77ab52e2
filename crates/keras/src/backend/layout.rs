//! Shape and layout: reshapes, permutations, joining and splitting, tiling, padding,
//! one-hot encoding, gathering, ranges.

use keras_backend_api::DType;

use super::{
    config::{floatx, image_dim_ordering},
    math::{Axes, axis_of, named},
};
use crate::{
    array::Array,
    config::ImageDimOrdering,
    error::{Error, Result},
    graph::{Dim, Tensor, shape_string},
    ops::{movement, source, special::late},
};

/// C-order reshape to `shape`; one entry may be -1 (inferred from the element count).
pub fn reshape(x: &Tensor, shape: &[isize]) -> Result<Tensor> {
    named("reshape", movement::reshape(x, shape))
}

/// `numpy.transpose(x, pattern)`: axis `i` of the result is axis `pattern[i]` of `x`.
pub fn permute_dimensions(x: &Tensor, pattern: &[usize]) -> Result<Tensor> {
    named("permute_dimensions", movement::permute(x, pattern))
}

/// Reverses the order of all axes: `(2, 3, 4)` → `(4, 3, 2)`.
pub fn transpose(x: &Tensor) -> Result<Tensor> {
    let pattern: Vec<usize> = (0..x.ndim()).rev().collect();
    named("transpose", movement::permute(x, &pattern))
}

/// The elements of `x` as a 1-D tensor, in C order.
pub fn flatten(x: &Tensor) -> Result<Tensor> {
    named("flatten", movement::reshape(x, &[-1]))
}

/// `(shape[0], product of the other sizes)`, in C order; the sizes may be unknown until fed.
pub fn batch_flatten(x: &Tensor) -> Result<Tensor> {
    let shape = x.shape();
    if shape.is_empty() {
        return Err(Error::graph("batch_flatten", format!("needs an input of rank >= 1, got {}", x.describe())));
    }
    let rest: Dim = shape[1..].iter().try_fold(1usize, |acc, d| d.map(|d| acc * d));
    match rest {
        // With a zero-sized row the -1 would be ambiguous, so that case takes the late path.
        Some(rest) if rest > 0 => named("batch_flatten", movement::reshape(x, &[-1, rest as isize])),
        _ => late("batch_flatten", std::slice::from_ref(x), vec![shape[0], rest], x.dtype(), |t| {
            let dims = t[0].static_shape().unwrap_or_default();
            let rest: usize = dims[1..].iter().product();
            movement::reshape(&t[0], &[dims[0] as isize, rest as isize])
        }),
    }
}

/// Inserts a size-1 axis that becomes axis `dim` of the result; a negative `dim` counts from
/// the end of the result, so -1 appends a last axis.
pub fn expand_dims(x: &Tensor, dim: isize) -> Result<Tensor> {
    let out_rank = x.ndim() + 1;
    let axis = crate::ops::normalize_axis(dim, out_rank)
        .map_err(|m| Error::graph("expand_dims", format!("dim {dim}: {m} (input {})", x.describe())))?;
    named("expand_dims", movement::insert_axes(x, &[axis]))
}

/// Removes `axis` (negative counts from the end), which must have size 1.
pub fn squeeze(x: &Tensor, axis: isize) -> Result<Tensor> {
    let axis = axis_of("squeeze", x, axis)?;
    named("squeeze", movement::remove_axes(x, &[axis]))
}

/// `x[start..stop]` on the leading axes, one `(start, stop)` per axis with Python's index
/// rules (step 1; `None` stop runs to the end); further axes are kept whole.
pub fn slice(x: &Tensor, ranges: &[(isize, Option<isize>)]) -> Result<Tensor> {
    named("slice", movement::slice(x, ranges))
}

/// Joins `tensors` along `axis` (negative counts from the end); the other sizes must agree.
pub fn concatenate(tensors: &[Tensor], axis: isize) -> Result<Tensor> {
    let first = tensors.first().ok_or_else(|| Error::graph("concatenate", "needs at least one tensor"))?;
    let axis = axis_of("concatenate", first, axis)?;
    named("concatenate", movement::concat(tensors, axis))
}

/// Stacks same-shape tensors on a new axis 0: `n` tensors of shape `S` give `(n,) + S`.
pub fn stack(tensors: &[Tensor]) -> Result<Tensor> {
    let first = tensors.first().ok_or_else(|| Error::graph("stack", "needs at least one tensor"))?;
    for other in &tensors[1..] {
        let same = other.ndim() == first.ndim()
            && first.shape().iter().zip(other.shape()).all(|(a, b)| a.zip(*b).is_none_or(|(a, b)| a == b));
        if !same {
            let shapes: Vec<String> = tensors.iter().map(|t| shape_string(t.shape())).collect();
            return Err(Error::graph("stack", format!("tensors must have one shape, got {}", shapes.join(" and "))));
        }
    }
    let expanded =
        tensors.iter().map(|t| named("stack", movement::insert_axes(t, &[0]))).collect::<Result<Vec<_>>>()?;
    named("stack", movement::concat(&expanded, 0))
}

/// `numpy.tile(x, n)` with one repeat count per axis (`n.len() == x.ndim()`; `&[n]` for 1-D).
pub fn tile(x: &Tensor, n: &[usize]) -> Result<Tensor> {
    if n.len() != x.ndim() {
        return Err(Error::graph("tile", format!("n {n:?} needs one count per axis of {}", x.describe())));
    }
    named("tile", movement::tile(x, n))
}

/// Repeats a 2-D `(B, d)` tensor `n` times along a new axis 1: the result is `(B, n, d)`.
pub fn repeat(x: &Tensor, n: usize) -> Result<Tensor> {
    if x.ndim() != 2 {
        return Err(Error::graph("repeat", format!("needs a 2-D input (batch, dim), got {}", x.describe())));
    }
    let expanded = named("repeat", movement::insert_axes(x, &[1]))?;
    named("repeat", movement::tile(&expanded, &[1, n, 1]))
}

/// `numpy.repeat(x, rep, axis)`: each slice along `axis` (negative counts from the end) is
/// repeated `rep` times in place (a, a, b, b, ...).
pub fn repeat_elements(x: &Tensor, rep: usize, axis: isize) -> Result<Tensor> {
    let axis = axis_of("repeat_elements", x, axis)?;
    named("repeat_elements", movement::repeat(x, axis, rep))
}

/// Reverses `x` along `axes`: an int or a list, negative axes counting from the end
/// ([`Axes::All`] reverses every axis).
pub fn reverse(x: &Tensor, axes: impl Into<Axes>) -> Result<Tensor> {
    let axes = axes.into().resolve("reverse", x)?;
    named("reverse", movement::reverse(x, &axes))
}

/// One-hot encoding: int indices of shape `S` → a [`floatx`] tensor of shape
/// `S + (nb_classes,)` holding 1 at each index (0 everywhere for an index out of range).
pub fn one_hot(indices: &Tensor, nb_classes: usize) -> Result<Tensor> {
    named("one_hot", movement::one_hot(indices, nb_classes, floatx()))
}

/// `reference[indices]` along axis 0: the result has shape `indices.shape + reference.shape[1:]`
/// (`indices` int32 or int64).
pub fn gather(reference: &Tensor, indices: &Tensor) -> Result<Tensor> {
    if reference.ndim() == 0 {
        return Err(Error::graph("gather", format!("needs a reference of rank >= 1, got {}", reference.describe())));
    }
    named("gather", movement::gather(reference, indices, 0))
}

/// Python's `range(start, stop, step)` as a 1-D constant (`stop = None`: `range(0, start)`, so
/// a negative `start` gives an empty tensor); dtype `int32` unless `dtype` says otherwise.
pub fn arange(start: f64, stop: Option<f64>, step: f64, dtype: Option<DType>) -> Result<Tensor> {
    let (start, stop) = match stop {
        Some(stop) => (start, stop),
        None => (0.0, start),
    };
    if !(start.is_finite() && stop.is_finite() && step.is_finite()) || step == 0.0 {
        return Err(Error::graph(
            "arange",
            format!("start, stop and step must be finite and step non-zero, got ({start}, {stop}, {step})"),
        ));
    }
    let count = ((stop - start) / step).ceil().max(0.0);
    if count > f64::from(i32::MAX) {
        return Err(Error::graph("arange", format!("range({start}, {stop}, {step}) has too many elements")));
    }
    let values: Vec<f64> = (0..count as usize).map(|i| start + i as f64 * step).collect();
    let array = Array::from_f64s(dtype.unwrap_or(DType::I32), &[values.len()], &values)?;
    Ok(source::constant(array))
}

/// Zero padding of `pads[i]` (before, after) on the consecutive axes starting at `first_axis`
/// of a tensor that must have rank `rank`.
fn pad_axes(function: &str, x: &Tensor, rank: usize, first_axis: usize, pads: &[(usize, usize)]) -> Result<Tensor> {
    if x.ndim() != rank {
        return Err(Error::graph(function, format!("needs a {rank}-D input, got {}", x.describe())));
    }
    let (mut before, mut after) = (vec![0; rank], vec![0; rank]);
    for (i, &(b, a)) in pads.iter().enumerate() {
        before[first_axis + i] = b;
        after[first_axis + i] = a;
    }
    named(function, movement::pad(x, &before, &after, 0.0))
}

/// The first spatial axis of an image tensor: after the channels (`th`) or after the batch (`tf`);
/// `None` means [`image_dim_ordering`].
fn first_spatial_axis(dim_ordering: Option<ImageDimOrdering>) -> usize {
    match dim_ordering.unwrap_or_else(image_dim_ordering) {
        ImageDimOrdering::Th => 2,
        ImageDimOrdering::Tf => 1,
    }
}

/// Pads axis 1 of a `(B, steps, d)` tensor with `padding` zeros before and after.
pub fn temporal_padding(x: &Tensor, padding: usize) -> Result<Tensor> {
    pad_axes("temporal_padding", x, 3, 1, &[(padding, padding)])
}

/// Pads axis 1 of a `(B, steps, d)` tensor with `left_pad` zeros before and `right_pad` after.
pub fn asymmetric_temporal_padding(x: &Tensor, left_pad: usize, right_pad: usize) -> Result<Tensor> {
    pad_axes("asymmetric_temporal_padding", x, 3, 1, &[(left_pad, right_pad)])
}

/// Pads the rows of a 4-D image tensor with `padding.0` zeros on both sides and the columns
/// with `padding.1` (rows and columns: axes 2, 3 for `th`, 1, 2 for `tf`; `None`: the default).
pub fn spatial_2d_padding(
    x: &Tensor,
    padding: (usize, usize),
    dim_ordering: Option<ImageDimOrdering>,
) -> Result<Tensor> {
    let pads = [(padding.0, padding.0), (padding.1, padding.1)];
    pad_axes("spatial_2d_padding", x, 4, first_spatial_axis(dim_ordering), &pads)
}

/// Pads the rows of a 4-D image tensor with `top_pad` zeros before and `bottom_pad` after, the
/// columns with `left_pad` and `right_pad` (axes as in [`spatial_2d_padding`]).
pub fn asymmetric_spatial_2d_padding(
    x: &Tensor,
    top_pad: usize,
    bottom_pad: usize,
    left_pad: usize,
    right_pad: usize,
    dim_ordering: Option<ImageDimOrdering>,
) -> Result<Tensor> {
    let pads = [(top_pad, bottom_pad), (left_pad, right_pad)];
    pad_axes("asymmetric_spatial_2d_padding", x, 4, first_spatial_axis(dim_ordering), &pads)
}

/// Pads spatial axis `i` of a 5-D volume tensor with `padding.i` zeros on both sides (spatial
/// axes 2, 3, 4 for `th`, 1, 2, 3 for `tf`; `None`: the default ordering).
pub fn spatial_3d_padding(
    x: &Tensor,
    padding: (usize, usize, usize),
    dim_ordering: Option<ImageDimOrdering>,
) -> Result<Tensor> {
    let pads = [(padding.0, padding.0), (padding.1, padding.1), (padding.2, padding.2)];
    pad_axes("spatial_3d_padding", x, 5, first_spatial_axis(dim_ordering), &pads)
}
