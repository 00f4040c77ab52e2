//! Products: `dot` (N-d, NumPy's rule) and `batch_dot`.
//!
//! Every contraction beyond a plain (broadcast) matrix product is one batched `matmul` between
//! a permutation and reshape of each operand: the contracted axis goes innermost on `x` and
//! outermost on `y`, every other axis is folded into one, and the product is unfolded again.

use keras_backend_api::{BinaryOp, ReduceOp};

use super::math::named;
use crate::{
    error::{Error, Result},
    graph::{Dim, Tensor, shape_string},
    ops::{elementwise::binary, linalg::matmul, movement, reduce::reduce, special::late},
};

/// `dot: shapes (2, 3) and (4, 5) {what}`: every operand error of the two products.
fn shapes_error(function: &str, x: &Tensor, y: &Tensor, what: impl std::fmt::Display) -> Error {
    Error::graph(function, format!("shapes {} and {} {what}", shape_string(x.shape()), shape_string(y.shape())))
}

/// The matrix-product kernel needs two float operands of one dtype.
fn check_float_pair(function: &str, x: &Tensor, y: &Tensor) -> Result<()> {
    if x.dtype() != y.dtype() || !x.dtype().is_float() {
        return Err(shapes_error(
            function,
            x,
            y,
            format!("need two float tensors of one dtype, got {} and {}", x.dtype(), y.dtype()),
        ));
    }
    Ok(())
}

/// Axis `ax` of `x` and axis `ay` of `y` must have one size where both are known.
fn check_same_size(function: &str, x: &Tensor, y: &Tensor, ax: usize, ay: usize, what: &str) -> Result<()> {
    if let (Some(a), Some(b)) = (x.shape()[ax], y.shape()[ay])
        && a != b
    {
        return Err(shapes_error(function, x, y, format!("{what}: axis {ax} of x has size {a}, axis {ay} of y {b}")));
    }
    Ok(())
}

/// Contracts axis `ax` of `x` with axis `ay` of `y` (for each item of axis 0 when `batched`).
/// The result holds the batch axis, then `x`'s other axes, then `y`'s, each in order.
/// Shapes that are only known when fed are handled by building the product then.
fn contract(function: &'static str, x: &Tensor, y: &Tensor, ax: usize, ay: usize, batched: bool) -> Result<Tensor> {
    let lead = usize::from(batched);
    let others = move |rank: usize, skip: usize| (lead..rank).filter(move |&a| a != skip);
    let shape: Vec<Dim> = x.shape()[..lead]
        .iter()
        .chain(others(x.ndim(), ax).map(|a| &x.shape()[a]))
        .chain(others(y.ndim(), ay).map(|a| &y.shape()[a]))
        .copied()
        .collect();
    late(function, &[x.clone(), y.clone()], shape, x.dtype(), move |t| {
        let (x, y) = (&t[0], &t[1]);
        // Sizes unknown when the product was built are checked now: the reshapes below
        // cannot tell a mismatch when one side is empty.
        check_same_size(function, x, y, ax, ay, "are not aligned")?;
        if batched {
            check_same_size(function, x, y, 0, 0, "differ in batch size")?;
        }
        let (sx, sy) = (x.static_shape().unwrap_or_default(), y.static_shape().unwrap_or_default());
        let (x_other, y_other): (Vec<usize>, Vec<usize>) =
            (others(sx.len(), ax).collect(), others(sy.len(), ay).collect());
        let size = |dims: &[usize], axes: &[usize]| axes.iter().map(|&a| dims[a]).product::<usize>() as isize;
        let batch: Vec<isize> = sx[..lead].iter().map(|&d| d as isize).collect();
        let x_perm: Vec<usize> = (0..lead).chain(x_other.iter().copied()).chain([ax]).collect();
        let y_perm: Vec<usize> = (0..lead).chain([ay]).chain(y_other.iter().copied()).collect();
        let k = sx[ax] as isize;
        let x_mat =
            movement::reshape(&movement::permute(x, &x_perm)?, &[&batch[..], &[size(&sx, &x_other), k]].concat())?;
        let y_mat =
            movement::reshape(&movement::permute(y, &y_perm)?, &[&batch[..], &[k, size(&sy, &y_other)]].concat())?;
        let product = matmul(&x_mat, &y_mat, false, false)?;
        let unfolded: Vec<isize> = batch
            .iter()
            .copied()
            .chain(x_other.iter().map(|&a| sx[a] as isize))
            .chain(y_other.iter().map(|&a| sy[a] as isize))
            .collect();
        movement::reshape(&product, &unfolded)
    })
}

/// `numpy.dot(x, y)`: the matrix product for 2-D operands; otherwise the last axis of `x` is
/// contracted with the second-to-last axis of `y` (its only axis when 1-D), giving
/// `x.shape[:-1] + y.shape[:-2] + y.shape[-1:]`, e.g. `(2, 3)·(4, 3, 5)` → `(2, 4, 5)`.
/// A 1-D operand works as in NumPy (the Theano reference): `(4,)·(4, 5)` → `(5,)`.
pub fn dot(x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let (rx, ry) = (x.ndim(), y.ndim());
    if rx == 0 || ry == 0 {
        // NumPy's dot of a scalar is the element-wise product.
        return named("dot", binary(BinaryOp::Mul, x, y));
    }
    check_float_pair("dot", x, y)?;
    let ay = ry.saturating_sub(2);
    check_same_size("dot", x, y, rx - 1, ay, "are not aligned")?;
    if rx == 1 {
        let row = named("dot", movement::insert_axes(x, &[0]))?;
        return named("dot", movement::remove_axes(&dot(&row, y)?, &[0]));
    }
    if ry == 1 {
        let column = named("dot", movement::insert_axes(y, &[1]))?;
        let product = dot(x, &column)?;
        return named("dot", movement::remove_axes(&product, &[rx - 1]));
    }
    if ry == 2 {
        // x's leading axes broadcast as matmul batch axes.
        return named("dot", matmul(x, y, false, false));
    }
    contract("dot", x, y, rx - 1, ay, false)
}

/// Batched contraction (Keras 1.2.2): axis 0 of both is the batch; axis `axes.0` of `x` is
/// contracted with axis `axes.1` of `y` for each batch item, the result holding the batch, then
/// `x`'s other axes, then `y`'s (`(2, 3, 4)·(2, 4, 5)` → `(2, 3, 5)`). `None` means
/// `(x.ndim - 1, y.ndim - 2)`. Two 2-D inputs give `sum(x * y, axis)` for equal axes (TF's
/// `sum(transpose(x) * y, axes.1)` otherwise), and a 1-D result is reshaped to `(length, 1)`:
/// `[[1, 2], [3, 4]]`, `[[5, 6], [7, 8]]`, axes `(1, 1)` → `[[17], [53]]`.
pub fn batch_dot(x: &Tensor, y: &Tensor, axes: Option<(usize, usize)>) -> Result<Tensor> {
    let (rx, ry) = (x.ndim(), y.ndim());
    if rx < 2 || ry < 2 {
        return Err(shapes_error("batch_dot", x, y, "must both have rank >= 2 (axis 0 is the batch)"));
    }
    if let Some((ax, ay)) = axes
        && (ax >= rx || ay >= ry)
    {
        return Err(shapes_error("batch_dot", x, y, format!("do not have axes ({ax}, {ay})")));
    }
    check_same_size("batch_dot", x, y, 0, 0, "differ in batch size")?;
    if rx == 2 && ry == 2 {
        let (ax, ay) = axes.ok_or_else(|| shapes_error("batch_dot", x, y, "are both 2-D: `axes` must be given"))?;
        // TF's rule: unequal axes multiply the transpose of x with y.
        let (lhs, sum_axis) = if ax == ay {
            check_same_size("batch_dot", x, y, ax, ay, "are not aligned")?;
            (x.clone(), ax)
        } else {
            (named("batch_dot", movement::permute(x, &[1, 0]))?, ay)
        };
        let product = named("batch_dot", binary(BinaryOp::Mul, &lhs, y))?;
        let summed = named("batch_dot", reduce(ReduceOp::Sum, &product, &[sum_axis], false))?;
        return named("batch_dot", movement::insert_axes(&summed, &[1]));
    }
    let (ax, ay) = axes.unwrap_or((rx - 1, ry - 2));
    if ax == 0 || ay == 0 {
        return Err(shapes_error(
            "batch_dot",
            x,
            y,
            format!("axes ({ax}, {ay}): the batch axis 0 cannot be contracted"),
        ));
    }
    check_same_size("batch_dot", x, y, ax, ay, "are not aligned")?;
    check_float_pair("batch_dot", x, y)?;
    contract("batch_dot", x, y, ax, ay, true)
}
