//! Data movement: reshapes (metadata only), permutation, slicing, concatenation, padding,
//! reversal, gather/scatter-add, tiling, repetition and one-hot encoding.

use keras_backend_api::{DType, ReduceOp};

use super::{Inferred, Op, reduce::reduce, shapes_of, special::late};
use crate::{
    error::{Error, Result},
    graph::{Dim, Tensor, shape_string},
};

pub(crate) fn reshape(x: &Tensor, shape: &[isize]) -> Result<Tensor> {
    Tensor::new(Op::Reshape(shape.to_vec()), vec![x.clone()])
}

pub(crate) fn reshape_like(x: &Tensor, like: &Tensor) -> Result<Tensor> {
    if x.shape() == like.shape() && x.static_shape().is_some() {
        return Ok(x.clone());
    }
    Tensor::new(Op::ReshapeLike, vec![x.clone(), like.clone()])
}

pub(crate) fn insert_axes(x: &Tensor, axes: &[usize]) -> Result<Tensor> {
    let mut axes = axes.to_vec();
    axes.sort_unstable();
    Tensor::new(Op::InsertAxes(axes), vec![x.clone()])
}

pub(crate) fn remove_axes(x: &Tensor, axes: &[usize]) -> Result<Tensor> {
    let mut axes = axes.to_vec();
    axes.sort_unstable();
    Tensor::new(Op::RemoveAxes(axes), vec![x.clone()])
}

pub(crate) fn permute(x: &Tensor, perm: &[usize]) -> Result<Tensor> {
    if perm.iter().enumerate().all(|(i, &p)| i == p) && perm.len() == x.ndim() {
        return Ok(x.clone());
    }
    Tensor::new(Op::Permute(perm.to_vec()), vec![x.clone()])
}

/// `x[start..stop]` on the leading axes (one `(start, stop)` per axis, Python's rules).
pub(crate) fn slice(x: &Tensor, ranges: &[(isize, Option<isize>)]) -> Result<Tensor> {
    Tensor::new(Op::Slice(ranges.to_vec()), vec![x.clone()])
}

pub(crate) fn concat(inputs: &[Tensor], axis: usize) -> Result<Tensor> {
    if inputs.len() == 1 {
        return Ok(inputs[0].clone());
    }
    Tensor::new(Op::Concat { axis }, inputs.to_vec())
}

pub(crate) fn pad(x: &Tensor, before: &[usize], after: &[usize], value: f64) -> Result<Tensor> {
    Tensor::new(Op::Pad { before: before.to_vec(), after: after.to_vec(), value }, vec![x.clone()])
}

pub(crate) fn reverse(x: &Tensor, axes: &[usize]) -> Result<Tensor> {
    Tensor::new(Op::Reverse(axes.to_vec()), vec![x.clone()])
}

pub(crate) fn gather(x: &Tensor, indices: &Tensor, axis: usize) -> Result<Tensor> {
    Tensor::new(Op::Gather { axis }, vec![x.clone(), indices.clone()])
}

pub(crate) fn scatter_add(updates: &Tensor, indices: &Tensor, axis: usize, like: &Tensor) -> Result<Tensor> {
    Tensor::new(Op::ScatterAdd { axis }, vec![updates.clone(), indices.clone(), like.clone()])
}

pub(crate) fn tile(x: &Tensor, reps: &[usize]) -> Result<Tensor> {
    Tensor::new(Op::Tile(reps.to_vec()), vec![x.clone()])
}

pub(crate) fn repeat(x: &Tensor, axis: usize, repeats: usize) -> Result<Tensor> {
    Tensor::new(Op::Repeat { axis, repeats }, vec![x.clone()])
}

pub(crate) fn one_hot(indices: &Tensor, depth: usize, dtype: DType) -> Result<Tensor> {
    Tensor::new(Op::OneHot { depth, dtype }, vec![indices.clone()])
}

/// Python's slice rule on one axis of length `dim`: the first index and the count.
pub(crate) fn resolve_range(start: isize, stop: Option<isize>, dim: usize) -> (usize, usize) {
    // A dim beyond isize::MAX (only a placeholder's, never a real tensor's) must not wrap.
    let len = isize::try_from(dim).unwrap_or(isize::MAX);
    let clamp = |i: isize| {
        let i = if i < 0 { i.saturating_add(len) } else { i };
        i.clamp(0, len) as usize
    };
    let (start, stop) = (clamp(start), stop.map_or(len as usize, clamp));
    (start, stop.saturating_sub(start))
}

fn axes_in_range(axes: &[usize], rank: usize) -> std::result::Result<(), String> {
    keras_backend_api::shape::check_axes(axes, rank)
}

/// The element count of `dims`: `None` while a dim is unknown, or when it overflows (a tensor
/// of that size can never be fed or computed, and [`Tensor::new`] refuses to build one).
fn product(dims: &[Dim]) -> Option<usize> {
    let known: Vec<usize> = dims.iter().copied().collect::<Option<_>>()?;
    if known.contains(&0) { Some(0) } else { known.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)) }
}

/// `dim · factor` (tiling, repetition), or a message when that overflows.
fn scaled(dim: Dim, factor: usize) -> std::result::Result<Dim, String> {
    dim.map(|d| d.checked_mul(factor).ok_or_else(|| format!("a dimension of {d} × {factor} elements overflows")))
        .transpose()
}

pub(crate) fn infer(op: &Op, inputs: &[Tensor]) -> Inferred {
    let x = &inputs[0];
    let shape = x.shape();
    let rank = shape.len();
    let same_rank = |what: &str, n: usize| {
        if n == rank { Ok(()) } else { Err(format!("{what} has {n} entries for an input of rank {rank}")) }
    };
    let out = match op {
        Op::Reshape(spec) => {
            if spec.iter().filter(|&&d| d == -1).count() > 1 || spec.iter().any(|&d| d < -1) {
                return Err(format!("target shape {spec:?} may hold at most one -1 and no other negative size"));
            }
            let fixed = product(&spec.iter().filter(|&&d| d >= 0).map(|&d| Some(d as usize)).collect::<Vec<_>>())
                .ok_or_else(|| format!("target shape {spec:?} has more elements than memory can hold"))?;
            let mut dims: Vec<Dim> = spec.iter().map(|&d| (d >= 0).then_some(d as usize)).collect();
            if let Some(total) = product(shape) {
                let inferred = spec.iter().position(|&d| d == -1);
                match inferred {
                    Some(i) if fixed > 0 && total % fixed == 0 => dims[i] = Some(total / fixed),
                    Some(i) if fixed == 0 && total == 0 => dims[i] = Some(0),
                    None if fixed == total => {}
                    _ => {
                        return Err(format!("cannot reshape {} ({total} elements) to {spec:?}", shape_string(shape)));
                    }
                }
            }
            (dims, x.dtype())
        }
        Op::ReshapeLike => {
            let like = inputs[1].shape();
            if let (Some(a), Some(b)) = (product(shape), product(like))
                && a != b
            {
                return Err(format!("cannot reshape {}", shapes_of(inputs)));
            }
            (like.to_vec(), x.dtype())
        }
        Op::InsertAxes(axes) => {
            let out_rank = rank + axes.len();
            axes_in_range(axes, out_rank)?;
            let mut rest = shape.iter();
            let dims = (0..out_rank).map(|i| if axes.contains(&i) { Some(1) } else { *rest.next().unwrap_or(&None) });
            (dims.collect(), x.dtype())
        }
        Op::RemoveAxes(axes) => {
            axes_in_range(axes, rank)?;
            if let Some(&a) = axes.iter().find(|&&a| shape[a].is_some_and(|d| d != 1)) {
                return Err(format!("axis {a} of {} has size {}, not 1", shape_string(shape), shape[a].unwrap_or(0)));
            }
            let dims = shape.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, &d)| d);
            (dims.collect(), x.dtype())
        }
        Op::Permute(perm) => {
            same_rank("the pattern", perm.len())?;
            axes_in_range(perm, rank).map_err(|e| format!("pattern {perm:?} is not a permutation: {e}"))?;
            (perm.iter().map(|&p| shape[p]).collect(), x.dtype())
        }
        Op::Slice(ranges) => {
            if ranges.len() > rank {
                return Err(format!("{} ranges for an input of rank {rank}", ranges.len()));
            }
            let mut dims = shape.to_vec();
            for (d, &(start, stop)) in dims.iter_mut().zip(ranges) {
                *d = d.map(|n| resolve_range(start, stop, n).1);
            }
            (dims, x.dtype())
        }
        Op::Concat { axis } => {
            axes_in_range(&[*axis], rank)?;
            let mut dims = shape.to_vec();
            for other in &inputs[1..] {
                if other.dtype() != x.dtype() || other.ndim() != rank {
                    return Err(format!("inputs differ in rank or dtype: {}", shapes_of(inputs)));
                }
                for (i, (a, b)) in dims.iter_mut().zip(other.shape()).enumerate() {
                    if i == *axis {
                        *a = a
                            .zip(*b)
                            .map(|(a, b)| a.checked_add(b).ok_or_else(|| format!("axis {axis} overflows: {a} + {b}")))
                            .transpose()?;
                    } else if let (Some(p), Some(q)) = (*a, *b)
                        && p != q
                    {
                        return Err(format!("shapes {} differ off axis {axis}", shapes_of(inputs)));
                    } else if a.is_none() {
                        *a = *b;
                    }
                }
            }
            (dims, x.dtype())
        }
        Op::Pad { before, after, .. } => {
            same_rank("the padding", before.len())?;
            same_rank("the padding", after.len())?;
            let padded = |d: usize, b: usize, a: usize| {
                d.checked_add(b)
                    .and_then(|d| d.checked_add(a))
                    .ok_or_else(|| format!("padding {d} by {b} + {a} overflows"))
            };
            let dims =
                shape.iter().zip(before.iter().zip(after)).map(|(d, (&b, &a))| d.map(|d| padded(d, b, a)).transpose());
            (dims.collect::<std::result::Result<_, _>>()?, x.dtype())
        }
        Op::Reverse(axes) => {
            axes_in_range(axes, rank)?;
            (shape.to_vec(), x.dtype())
        }
        Op::Gather { axis } => {
            let indices = &inputs[1];
            if !matches!(indices.dtype(), DType::I32 | DType::I64) {
                return Err(format!("indices {} must be int32 or int64, got {}", indices.describe(), indices.dtype()));
            }
            axes_in_range(&[*axis], rank)?;
            let dims = shape[..*axis].iter().chain(indices.shape()).chain(&shape[axis + 1..]).copied();
            (dims.collect(), x.dtype())
        }
        Op::ScatterAdd { .. } => (inputs[2].shape().to_vec(), x.dtype()),
        Op::Tile(reps) => {
            same_rank("the repeat count", reps.len())?;
            (shape.iter().zip(reps).map(|(&d, &r)| scaled(d, r)).collect::<std::result::Result<_, _>>()?, x.dtype())
        }
        Op::Repeat { axis, repeats } => {
            axes_in_range(&[*axis], rank)?;
            let mut dims = shape.to_vec();
            dims[*axis] = scaled(dims[*axis], *repeats)?;
            (dims, x.dtype())
        }
        Op::OneHot { depth, dtype } => {
            if !matches!(x.dtype(), DType::I32 | DType::I64) {
                return Err(format!("indices {} must be int32 or int64, got {}", x.describe(), x.dtype()));
            }
            let mut dims = shape.to_vec();
            dims.push(Some(*depth));
            (dims, *dtype)
        }
        _ => unreachable!("not a movement op"),
    };
    Ok(out)
}

pub(crate) fn vjp(op: &Op, inputs: &[Tensor], _y: &Tensor, dy: &Tensor) -> Result<Vec<Option<Tensor>>> {
    let x = &inputs[0];
    let none_for_rest = |dx: Tensor| {
        let mut grads = vec![Some(dx)];
        grads.resize(inputs.len(), None);
        grads
    };
    if !x.dtype().is_float() {
        return Ok(vec![None; inputs.len()]);
    }
    let dx = match op {
        Op::Reshape(_) | Op::ReshapeLike | Op::InsertAxes(_) | Op::RemoveAxes(_) => reshape_like(dy, x)?,
        Op::Permute(perm) => {
            let mut inverse = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inverse[p] = i;
            }
            permute(dy, &inverse)?
        }
        Op::Slice(ranges) => {
            let ranges = ranges.clone();
            late("slice gradient", &[dy.clone(), x.clone()], x.shape().to_vec(), x.dtype(), move |t| {
                let full = t[1].static_shape().unwrap_or_default();
                let (mut before, mut after) = (vec![0; full.len()], vec![0; full.len()]);
                for (axis, &(start, stop)) in ranges.iter().enumerate() {
                    let (first, count) = resolve_range(start, stop, full[axis]);
                    before[axis] = first;
                    after[axis] = full[axis] - first - count;
                }
                pad(&t[0], &before, &after, 0.0)
            })?
        }
        Op::Concat { axis } => {
            let axis = *axis;
            let mut grads = Vec::with_capacity(inputs.len());
            for (k, input) in inputs.iter().enumerate() {
                let mut parts = inputs.to_vec();
                parts.insert(0, dy.clone());
                let grad = late("concatenate gradient", &parts, input.shape().to_vec(), input.dtype(), move |t| {
                    let sizes: Vec<usize> = t[1..].iter().map(|p| p.static_shape().unwrap_or_default()[axis]).collect();
                    let start: usize = sizes[..k].iter().sum();
                    let mut ranges = vec![(0isize, None); axis + 1];
                    ranges[axis] = (start as isize, Some((start + sizes[k]) as isize));
                    slice(&t[0], &ranges)
                })?;
                grads.push(Some(grad));
            }
            return Ok(grads);
        }
        Op::Pad { before, after, .. } => {
            let ranges: Vec<(isize, Option<isize>)> =
                before.iter().zip(after).map(|(&b, &a)| (b as isize, (a > 0).then_some(-(a as isize)))).collect();
            slice(dy, &ranges)?
        }
        Op::Reverse(axes) => reverse(dy, axes)?,
        Op::Gather { axis } => scatter_add(dy, &inputs[1], *axis, x)?,
        Op::ScatterAdd { axis } => gather(dy, &inputs[1], *axis)?,
        Op::Tile(reps) => {
            let reps = reps.clone();
            late("tile gradient", &[dy.clone(), x.clone()], x.shape().to_vec(), x.dtype(), move |t| {
                // View each axis of size r·d as (r, d) and sum over the r axes.
                let dims = t[1].static_shape().unwrap_or_default();
                let split: Vec<isize> = dims.iter().zip(&reps).flat_map(|(&d, &r)| [r as isize, d as isize]).collect();
                let even: Vec<usize> = (0..dims.len()).map(|i| 2 * i).collect();
                reduce(ReduceOp::Sum, &reshape(&t[0], &split)?, &even, false)
            })?
        }
        Op::Repeat { axis, repeats } => {
            let (axis, repeats) = (*axis, *repeats);
            late("repeat_elements gradient", &[dy.clone(), x.clone()], x.shape().to_vec(), x.dtype(), move |t| {
                let dims = t[1].static_shape().unwrap_or_default();
                let mut split: Vec<isize> = dims.iter().map(|&d| d as isize).collect();
                split.insert(axis + 1, repeats as isize);
                reduce(ReduceOp::Sum, &reshape(&t[0], &split)?, &[axis + 1], false)
            })?
        }
        Op::OneHot { .. } => return Ok(vec![None]),
        _ => return Err(Error::graph(op.name(), "no derivative")),
    };
    Ok(none_for_rest(dx))
}
