//! Element-wise kernels: fill, unary, binary with broadcasting, select, cast.
//!
//! Every kernel dispatches once on the dtype and runs one generic loop. Broadcasting goes
//! through [`for_each_row`], which coalesces the shapes so that same-shape and scalar operands
//! become single contiguous runs (the fast paths) and walks the rest with `StridedIndex`.
//! `f16` arithmetic computes in `f32` and rounds back.

use half::f16;
use keras_backend_api::{BackendError, BinaryOp, DType, UnaryOp, shape};
use rayon::prelude::*;

use super::element::{
    CHUNK, Element, Float, Number, for_dtype, for_each_row, map_in_place, map_into, map_slices_in_place,
    map_slices_into, narrow_f16, view, view_mut, widen_f16, worth_splitting,
};
use super::vmath;
use super::{Tensor, TensorMut};
use crate::{CpuStorage, Result, layout::broadcast_strides, with_storage};

/// Sets every element of `out` to `value` converted to its dtype (saturating for integers,
/// `value != 0` for `Bool`).
pub fn fill(out: TensorMut<'_>, value: f64) -> Result<()> {
    with_storage!(out.data, o => fill_typed(o, value));
    Ok(())
}

fn fill_typed<T: Element>(out: &mut [T], value: f64) {
    let v = T::from_f64(value);
    if worth_splitting(out.len()) {
        out.par_chunks_mut(CHUNK).for_each(|c| c.fill(v));
    } else {
        out.fill(v);
    }
}

/// `out = op(x)`; `out` has the shape and dtype of `x` ([`UnaryOp`] lists the dtypes of each op).
pub fn unary(op: UnaryOp, x: Tensor<'_>, out: TensorMut<'_>) -> Result<()> {
    let kernel = format!("unary({op:?})");
    if x.shape != out.shape {
        return Err(BackendError::invalid(format!(
            "{kernel}: out has shape {:?} but `x` has shape {:?}; they must be equal",
            out.shape, x.shape
        )));
    }
    match x.data {
        CpuStorage::F16(xs) => {
            let o = view_mut::<f16>(out.data, &kernel, "out")?;
            let wide = widen_f16(xs);
            let mut result = vec![0f32; wide.len()];
            f32_unary(op, Some(&wide), &mut result, &kernel)?;
            narrow_f16(&result, o);
            Ok(())
        }
        CpuStorage::F32(xs) => f32_unary(op, Some(xs), view_mut(out.data, &kernel, "out")?, &kernel),
        CpuStorage::F64(xs) => float_unary(op, Some(xs), view_mut(out.data, &kernel, "out")?, &kernel),
        CpuStorage::I32(xs) => int_unary(op, Some(xs), view_mut(out.data, &kernel, "out")?, &kernel),
        CpuStorage::I64(xs) => int_unary(op, Some(xs), view_mut(out.data, &kernel, "out")?, &kernel),
        CpuStorage::U8(xs) => int_unary(op, Some(xs), view_mut(out.data, &kernel, "out")?, &kernel),
        CpuStorage::Bool(xs) => bool_unary(op, Some(xs), view_mut(out.data, &kernel, "out")?, &kernel),
    }
}

/// `out = op(out)`, in place.
pub fn unary_in_place(op: UnaryOp, out: TensorMut<'_>) -> Result<()> {
    let kernel = format!("unary({op:?})");
    match out.data {
        CpuStorage::F16(o) => {
            let mut wide = widen_f16(o);
            f32_unary(op, None, &mut wide, &kernel)?;
            narrow_f16(&wide, o);
            Ok(())
        }
        CpuStorage::F32(o) => f32_unary(op, None, o, &kernel),
        CpuStorage::F64(o) => float_unary(op, None, o, &kernel),
        CpuStorage::I32(o) => int_unary(op, None, o, &kernel),
        CpuStorage::I64(o) => int_unary(op, None, o, &kernel),
        CpuStorage::U8(o) => int_unary(op, None, o, &kernel),
        CpuStorage::Bool(o) => bool_unary(op, None, o, &kernel),
    }
}

/// `dst = f(src)`, or `dst = f(dst)` when `src` is `None` (in place).
fn apply_unary<T: Copy + Send + Sync>(src: Option<&[T]>, dst: &mut [T], f: impl Fn(T) -> T + Sync) {
    match src {
        Some(src) => map_into(src, dst, f),
        None => map_in_place(dst, f),
    }
}

#[cold]
fn unary_dtype_error(kernel: &str, dtype: DType) -> BackendError {
    BackendError::invalid(format!("{kernel}: not defined for {dtype} tensors"))
}

/// [`float_unary`] for `f32`, through the vectorised kernels of [`vmath`] where there is one.
fn f32_unary(op: UnaryOp, src: Option<&[f32]>, dst: &mut [f32], kernel: &str) -> Result<()> {
    match (op, src) {
        (UnaryOp::Exp, Some(src)) => map_slices_into(src, dst, vmath::exp_f32_into),
        (UnaryOp::Exp, None) => map_slices_in_place(dst, vmath::exp_f32_in_place),
        _ => return float_unary(op, src, dst, kernel),
    }
    Ok(())
}

fn float_unary<T: Float>(op: UnaryOp, src: Option<&[T]>, dst: &mut [T], kernel: &str) -> Result<()> {
    match op {
        UnaryOp::Neg => apply_unary(src, dst, |v| -v),
        UnaryOp::Abs => apply_unary(src, dst, <T as Number>::abs),
        UnaryOp::Sign => apply_unary(src, dst, T::sign),
        UnaryOp::Square => apply_unary(src, dst, |v| v * v),
        UnaryOp::Sqrt => apply_unary(src, dst, T::sqrt),
        UnaryOp::Reciprocal => apply_unary(src, dst, |v| T::ONE / v),
        UnaryOp::Exp => apply_unary(src, dst, T::exp),
        UnaryOp::Expm1 => apply_unary(src, dst, T::exp_m1),
        UnaryOp::Log => apply_unary(src, dst, T::ln),
        UnaryOp::Log1p => apply_unary(src, dst, T::ln_1p),
        UnaryOp::Sin => apply_unary(src, dst, T::sin),
        UnaryOp::Cos => apply_unary(src, dst, T::cos),
        UnaryOp::Tanh => apply_unary(src, dst, T::tanh),
        UnaryOp::Sigmoid => apply_unary(src, dst, T::sigmoid),
        UnaryOp::Softplus => apply_unary(src, dst, T::softplus),
        UnaryOp::Softsign => apply_unary(src, dst, |v| v / (T::ONE + <T as Number>::abs(v))),
        UnaryOp::Round => apply_unary(src, dst, T::round_even),
        UnaryOp::Floor => apply_unary(src, dst, T::floor),
        UnaryOp::Ceil => apply_unary(src, dst, T::ceil),
        UnaryOp::LogicalNot => return Err(unary_dtype_error(kernel, T::DTYPE)),
    }
    Ok(())
}

fn int_unary<T: Number>(op: UnaryOp, src: Option<&[T]>, dst: &mut [T], kernel: &str) -> Result<()> {
    match op {
        UnaryOp::Neg => apply_unary(src, dst, T::neg),
        UnaryOp::Abs => apply_unary(src, dst, T::abs),
        UnaryOp::Sign => apply_unary(src, dst, T::sign),
        UnaryOp::Square => apply_unary(src, dst, |v| v.mul(v)),
        _ => return Err(unary_dtype_error(kernel, T::DTYPE)),
    }
    Ok(())
}

fn bool_unary(op: UnaryOp, src: Option<&[bool]>, dst: &mut [bool], kernel: &str) -> Result<()> {
    match op {
        UnaryOp::LogicalNot => apply_unary(src, dst, |v| !v),
        _ => return Err(unary_dtype_error(kernel, DType::Bool)),
    }
    Ok(())
}

/// `out = op(a, b)` with NumPy broadcasting; `out` has the broadcast shape, and the dtype of
/// the inputs (arithmetic) or `Bool` (comparisons and logical ops).
pub fn binary(op: BinaryOp, a: Tensor<'_>, b: Tensor<'_>, out: TensorMut<'_>) -> Result<()> {
    let kernel = format!("binary({op:?})");
    let expected = shape::broadcast(a.shape, b.shape)
        .map_err(|e| BackendError::invalid(format!("{kernel}: {e} (out has shape {:?})", out.shape)))?;
    if expected != out.shape {
        return Err(BackendError::invalid(format!(
            "{kernel}: `a` {:?} and `b` {:?} broadcast to {expected:?}, but out has shape {:?}",
            a.shape, b.shape, out.shape
        )));
    }
    let dtype = a.data.dtype();
    op.check_dtypes(&kernel, dtype, b.data.dtype(), out.data.dtype())?;
    let (a_shape, b_shape, out_shape) = (a.shape, b.shape, out.shape);
    if op.is_comparison() || op.is_logical() {
        let o = view_mut::<bool>(out.data, &kernel, "out")?;
        return for_dtype!(dtype, T => {
            let (av, bv) = (view::<T>(a.data, &kernel, "a")?, view::<T>(b.data, &kernel, "b")?);
            compare_or_logic(op, &kernel, Zip { a: av, a_shape, b: bv, b_shape, out: o, out_shape })
        });
    }
    if out.data.is_empty() {
        return Ok(());
    }
    match dtype {
        DType::F16 => {
            let (av, bv) = (view::<f16>(a.data, &kernel, "a")?, view::<f16>(b.data, &kernel, "b")?);
            let (wa, wb) = (widen_f16(av), widen_f16(bv));
            let mut result = vec![0f32; out.data.len()];
            arith(op, &kernel, Zip { a: &wa, a_shape, b: &wb, b_shape, out: &mut result, out_shape })?;
            narrow_f16(&result, view_mut(out.data, &kernel, "out")?);
            Ok(())
        }
        DType::F32 => arith_typed::<f32>(op, &kernel, a, b, out),
        DType::F64 => arith_typed::<f64>(op, &kernel, a, b, out),
        DType::I32 => arith_typed::<i32>(op, &kernel, a, b, out),
        DType::I64 => arith_typed::<i64>(op, &kernel, a, b, out),
        DType::U8 => arith_typed::<u8>(op, &kernel, a, b, out),
        DType::Bool => Err(BackendError::invalid(format!("{kernel}: arithmetic is not defined for bool tensors"))),
    }
}

/// Integer `Div` and `Mod` refuse a zero divisor and integer `Pow` a negative exponent; `rhs`
/// is the right operand, named `name` in the message. Floats follow IEEE 754 instead.
fn check_rhs<T: Number>(op: BinaryOp, kernel: &str, rhs: &[T], name: &str) -> Result<()> {
    if T::IS_FLOAT {
        return Ok(());
    }
    match op {
        BinaryOp::Div | BinaryOp::Mod if rhs.contains(&T::ZERO) => Err(BackendError::invalid(format!(
            "{kernel}: integer division by zero (`{name}` of {} holds a 0)",
            T::DTYPE
        ))),
        BinaryOp::Pow => match rhs.iter().find(|v| v.is_negative()) {
            Some(v) => Err(BackendError::invalid(format!(
                "{kernel}: negative exponent {v:?} in `{name}`; integer powers need exponents >= 0"
            ))),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

/// A binary loop waiting for its element function: the broadcast form ([`Zip`]) or the
/// in-place one ([`ZipInPlace`]). Lets one `match` on the op serve both.
trait BinaryLoop<T, U> {
    fn run(self, f: impl Fn(T, T) -> U + Sync);
}

/// `out = f(a, b)` with `a` and `b` broadcast to `out_shape`.
struct Zip<'a, T, U> {
    a: &'a [T],
    a_shape: &'a [usize],
    b: &'a [T],
    b_shape: &'a [usize],
    out: &'a mut [U],
    out_shape: &'a [usize],
}

impl<T: Copy + Sync, U: Send> BinaryLoop<T, U> for Zip<'_, T, U> {
    fn run(self, f: impl Fn(T, T) -> U + Sync) {
        let Zip { a, a_shape, b, b_shape, out, out_shape } = self;
        let strides = [broadcast_strides(a_shape, out_shape), broadcast_strides(b_shape, out_shape)];
        for_each_row(out_shape, strides, out, |o, [oa, ob], [sa, sb]| {
            let n = o.len();
            match (sa, sb) {
                (1, 1) => o.iter_mut().zip(&a[oa..oa + n]).zip(&b[ob..ob + n]).for_each(|((o, &x), &y)| *o = f(x, y)),
                (0, 1) => {
                    let x = a[oa];
                    o.iter_mut().zip(&b[ob..ob + n]).for_each(|(o, &y)| *o = f(x, y));
                }
                (1, 0) => {
                    let y = b[ob];
                    o.iter_mut().zip(&a[oa..oa + n]).for_each(|(o, &x)| *o = f(x, y));
                }
                _ => o.iter_mut().enumerate().for_each(|(j, o)| *o = f(a[oa + j * sa], b[ob + j * sb])),
            }
        });
    }
}

/// `out = f(out, other)` (or `f(other, out)` when `!out_is_lhs`), `other` broadcast to
/// `out_shape`.
struct ZipInPlace<'a, T> {
    other: &'a [T],
    other_shape: &'a [usize],
    out: &'a mut [T],
    out_shape: &'a [usize],
    out_is_lhs: bool,
}

impl<T: Copy + Send + Sync> BinaryLoop<T, T> for ZipInPlace<'_, T> {
    fn run(self, f: impl Fn(T, T) -> T + Sync) {
        let ZipInPlace { other, other_shape, out, out_shape, out_is_lhs } = self;
        if out_is_lhs {
            update_in_place(other, other_shape, out, out_shape, f);
        } else {
            update_in_place(other, other_shape, out, out_shape, |o, x| f(x, o));
        }
    }
}

/// `out = f(out, other)` with `other` broadcast to `out_shape`.
fn update_in_place<T: Copy + Send + Sync>(
    other: &[T],
    other_shape: &[usize],
    out: &mut [T],
    out_shape: &[usize],
    f: impl Fn(T, T) -> T + Sync,
) {
    for_each_row(out_shape, [broadcast_strides(other_shape, out_shape)], out, |o, [off], [step]| {
        let n = o.len();
        match step {
            1 => o.iter_mut().zip(&other[off..off + n]).for_each(|(o, &x)| *o = f(*o, x)),
            _ => o.iter_mut().enumerate().for_each(|(j, o)| *o = f(*o, other[off + j * step])),
        }
    });
}

fn arith<T: Number>(op: BinaryOp, kernel: &str, lp: impl BinaryLoop<T, T>) -> Result<()> {
    match op {
        BinaryOp::Add => lp.run(T::add),
        BinaryOp::Sub => lp.run(T::sub),
        BinaryOp::Mul => lp.run(T::mul),
        BinaryOp::Div => lp.run(T::div),
        BinaryOp::Pow => lp.run(T::pow),
        BinaryOp::Maximum => lp.run(T::maximum),
        BinaryOp::Minimum => lp.run(T::minimum),
        BinaryOp::Mod => lp.run(T::rem_floor),
        _ => return Err(BackendError::internal(format!("{kernel}: not an arithmetic op"))),
    }
    Ok(())
}

fn compare_or_logic<T: Element>(op: BinaryOp, kernel: &str, lp: impl BinaryLoop<T, bool>) -> Result<()> {
    match op {
        BinaryOp::Equal => lp.run(|x, y| x == y),
        BinaryOp::NotEqual => lp.run(|x, y| x != y),
        BinaryOp::Less => lp.run(|x, y| x < y),
        BinaryOp::LessEqual => lp.run(|x, y| x <= y),
        BinaryOp::Greater => lp.run(|x, y| x > y),
        BinaryOp::GreaterEqual => lp.run(|x, y| x >= y),
        BinaryOp::LogicalAnd => lp.run(|x, y| x.is_nonzero() && y.is_nonzero()),
        BinaryOp::LogicalOr => lp.run(|x, y| x.is_nonzero() || y.is_nonzero()),
        _ => return Err(BackendError::internal(format!("{kernel}: not a comparison"))),
    }
    Ok(())
}

fn arith_typed<T: Number>(op: BinaryOp, kernel: &str, a: Tensor<'_>, b: Tensor<'_>, out: TensorMut<'_>) -> Result<()> {
    let (av, bv) = (view::<T>(a.data, kernel, "a")?, view::<T>(b.data, kernel, "b")?);
    check_rhs(op, kernel, bv, "b")?;
    let o = view_mut::<T>(out.data, kernel, "out")?;
    arith(op, kernel, Zip { a: av, a_shape: a.shape, b: bv, b_shape: b.shape, out: o, out_shape: out.shape })
}

/// In place: `out = op(out, other)` when `out_is_lhs`, else `out = op(other, out)`. `out` has
/// the output shape; `other` broadcasts to it. Only ops whose output dtype is the input dtype
/// can run in place (comparisons only on `Bool`).
pub fn binary_in_place(op: BinaryOp, other: Tensor<'_>, out: TensorMut<'_>, out_is_lhs: bool) -> Result<()> {
    let kernel = format!("binary({op:?})");
    let other_name = if out_is_lhs { "b" } else { "a" };
    let fits = shape::broadcast(other.shape, out.shape).is_ok_and(|s| s == out.shape);
    if !fits {
        return Err(BackendError::invalid(format!(
            "{kernel}: in place, `{other_name}` {:?} must broadcast to out's shape {:?}",
            other.shape, out.shape
        )));
    }
    let dtype = out.data.dtype();
    op.check_dtypes(&kernel, dtype, other.data.dtype(), dtype)?;
    let (other_shape, out_shape) = (other.shape, out.shape);
    if op.is_comparison() || op.is_logical() {
        let (ov, o) = (view::<bool>(other.data, &kernel, other_name)?, view_mut::<bool>(out.data, &kernel, "out")?);
        return compare_or_logic(op, &kernel, ZipInPlace { other: ov, other_shape, out: o, out_shape, out_is_lhs });
    }
    match dtype {
        DType::F16 => {
            let ov = widen_f16(view::<f16>(other.data, &kernel, other_name)?);
            let o = view_mut::<f16>(out.data, &kernel, "out")?;
            let mut wide = widen_f16(o);
            arith(op, &kernel, ZipInPlace { other: &ov, other_shape, out: &mut wide, out_shape, out_is_lhs })?;
            narrow_f16(&wide, o);
            Ok(())
        }
        DType::F32 => arith_in_place::<f32>(op, &kernel, other, out, out_is_lhs),
        DType::F64 => arith_in_place::<f64>(op, &kernel, other, out, out_is_lhs),
        DType::I32 => arith_in_place::<i32>(op, &kernel, other, out, out_is_lhs),
        DType::I64 => arith_in_place::<i64>(op, &kernel, other, out, out_is_lhs),
        DType::U8 => arith_in_place::<u8>(op, &kernel, other, out, out_is_lhs),
        DType::Bool => Err(BackendError::invalid(format!("{kernel}: arithmetic is not defined for bool tensors"))),
    }
}

fn arith_in_place<T: Number>(
    op: BinaryOp,
    kernel: &str,
    other: Tensor<'_>,
    out: TensorMut<'_>,
    out_is_lhs: bool,
) -> Result<()> {
    let other_name = if out_is_lhs { "b" } else { "a" };
    let ov = view::<T>(other.data, kernel, other_name)?;
    let o = view_mut::<T>(out.data, kernel, "out")?;
    if o.is_empty() {
        return Ok(());
    }
    if out_is_lhs {
        check_rhs(op, kernel, ov, "b")?;
    } else {
        check_rhs(op, kernel, o, "b")?;
    }
    arith(op, kernel, ZipInPlace { other: ov, other_shape: other.shape, out: o, out_shape: out.shape, out_is_lhs })
}

/// `out = cond ? on_true : on_false`, all three broadcast to `out`'s shape; `cond` is `Bool`
/// and the branches have `out`'s dtype.
pub fn select(cond: Tensor<'_>, on_true: Tensor<'_>, on_false: Tensor<'_>, out: TensorMut<'_>) -> Result<()> {
    check_broadcast_to_out(
        "select",
        &[("cond", cond.shape), ("on_true", on_true.shape), ("on_false", on_false.shape)],
        out.shape,
    )?;
    let c = view::<bool>(cond.data, "select", "cond")?;
    let out_shape = out.shape;
    for_dtype!(out.data.dtype(), T => {
        let (tv, fv) = (view::<T>(on_true.data, "select", "on_true")?, view::<T>(on_false.data, "select", "on_false")?);
        let o = view_mut::<T>(out.data, "select", "out")?;
        let strides = [
            broadcast_strides(cond.shape, out_shape),
            broadcast_strides(on_true.shape, out_shape),
            broadcast_strides(on_false.shape, out_shape),
        ];
        for_each_row(out_shape, strides, o, |row, [oc, ot, of], [sc, st, sf]| {
            let n = row.len();
            // The contiguous and splatted cases (relu and its gradient select against a scalar
            // zero) as plain zips, which vectorise once the splatted value is read outside the
            // loop; anything else by index.
            let pick = |c: bool, t: T, f: T| if c { t } else { f };
            match (sc, st, sf) {
                (1, 1, 1) => row.iter_mut().zip(&c[oc..oc + n]).zip(&tv[ot..ot + n]).zip(&fv[of..of + n])
                    .for_each(|(((r, &c), &t), &f)| *r = pick(c, t, f)),
                (1, 0, 1) => {
                    let t = tv[ot];
                    row.iter_mut().zip(&c[oc..oc + n]).zip(&fv[of..of + n]).for_each(|((r, &c), &f)| *r = pick(c, t, f))
                }
                (1, 1, 0) => {
                    let f = fv[of];
                    row.iter_mut().zip(&c[oc..oc + n]).zip(&tv[ot..ot + n]).for_each(|((r, &c), &t)| *r = pick(c, t, f))
                }
                _ => row.iter_mut().enumerate().for_each(|(j, r)| *r = pick(c[oc + j * sc], tv[ot + j * st], fv[of + j * sf])),
            }
        });
    });
    Ok(())
}

/// [`select`] written over one branch: `out` holds that branch (`out_is_true` tells which),
/// `other` is the other one, or `None` when both branches are `out` (then nothing changes).
/// Elements whose `cond` picks `out`'s branch are left alone; the rest are read from `other`.
pub fn select_in_place(
    cond: Tensor<'_>,
    other: Option<Tensor<'_>>,
    out: TensorMut<'_>,
    out_is_true: bool,
) -> Result<()> {
    let other_name = if out_is_true { "on_false" } else { "on_true" };
    let mut shapes = vec![("cond", cond.shape)];
    shapes.extend(other.as_ref().map(|t| (other_name, t.shape)));
    check_broadcast_to_out("select", &shapes, out.shape)?;
    let c = view::<bool>(cond.data, "select", "cond")?;
    let Some(other) = other else {
        return Ok(());
    };
    let out_shape = out.shape;
    for_dtype!(out.data.dtype(), T => {
        let ov = view::<T>(other.data, "select", other_name)?;
        let o = view_mut::<T>(out.data, "select", "out")?;
        let strides = [broadcast_strides(cond.shape, out_shape), broadcast_strides(other.shape, out_shape)];
        for_each_row(out_shape, strides, o, |row, [oc, ot], [sc, so]| {
            let n = row.len();
            // Branch-free, so that the zips vectorise: every element is rewritten, most with
            // its own value.
            let keep = |c: bool| c == out_is_true;
            match (sc, so) {
                (1, 1) => row.iter_mut().zip(&c[oc..oc + n]).zip(&ov[ot..ot + n])
                    .for_each(|((r, &c), &v)| *r = if keep(c) { *r } else { v }),
                (1, 0) => {
                    let v = ov[ot];
                    row.iter_mut().zip(&c[oc..oc + n]).for_each(|(r, &c)| *r = if keep(c) { *r } else { v })
                }
                _ => row.iter_mut().enumerate().for_each(|(j, r)| if !keep(c[oc + j * sc]) { *r = ov[ot + j * so] }),
            }
        });
    });
    Ok(())
}

/// Refuses any of the named `shapes` that does not broadcast to `out_shape` itself.
fn check_broadcast_to_out(kernel: &str, shapes: &[(&str, &[usize])], out_shape: &[usize]) -> Result<()> {
    for (name, shape) in shapes {
        if !shape::broadcast(shape, out_shape).is_ok_and(|s| s == out_shape) {
            return Err(BackendError::invalid(format!(
                "{kernel}: `{name}` has shape {shape:?}, which does not broadcast to out's shape {out_shape:?}"
            )));
        }
    }
    Ok(())
}

/// Converts `x` into `out`'s dtype (same shape). Float to integer truncates toward zero, NaN
/// gives 0 and out-of-range values saturate; integer to narrower integer wraps; anything to
/// `Bool` is `x != 0` (NaN is true); `Bool` to a number is 0 or 1.
pub fn cast(x: Tensor<'_>, out: TensorMut<'_>) -> Result<()> {
    if x.shape != out.shape {
        return Err(BackendError::invalid(format!(
            "cast: out has shape {:?} but `x` has shape {:?}; they must be equal",
            out.shape, x.shape
        )));
    }
    with_storage!(x.data, src => with_storage!(out.data, dst => map_into(src, dst, |v| v.cast())));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use keras_backend_api::ErrorKind;

    type UnaryCase = (UnaryOp, fn(f64) -> f64);
    type BinaryCase = (BinaryOp, fn(f64, f64) -> f64);

    fn t<'a>(data: &'a CpuStorage, shape: &'a [usize]) -> Tensor<'a> {
        Tensor { data, shape }
    }

    fn run_binary(
        op: BinaryOp,
        a: &CpuStorage,
        sa: &[usize],
        b: &CpuStorage,
        sb: &[usize],
        out: &[usize],
    ) -> CpuStorage {
        let dtype = op.output_dtype(a.dtype());
        let mut o = CpuStorage::zeros(dtype, out.iter().product());
        binary(op, t(a, sa), t(b, sb), TensorMut { data: &mut o, shape: out }).unwrap();
        o
    }

    fn run_unary(op: UnaryOp, x: &CpuStorage) -> CpuStorage {
        let shape = [x.len()];
        let mut o = CpuStorage::zeros(x.dtype(), x.len());
        unary(op, t(x, &shape), TensorMut { data: &mut o, shape: &shape }).unwrap();
        o
    }

    fn f64s(s: &CpuStorage) -> Vec<f64> {
        with_storage!(s, v => v.iter().map(|x| x.to_f64()).collect())
    }

    fn close(a: f64, b: f64) -> bool {
        (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-6 * (1.0 + b.abs())
    }

    #[test]
    fn fill_converts_per_dtype() {
        let mut o = CpuStorage::zeros(DType::I32, 3);
        fill(TensorMut { data: &mut o, shape: &[3] }, 1e12).unwrap();
        assert_eq!(o, CpuStorage::I32(vec![i32::MAX; 3]));
        let mut o = CpuStorage::zeros(DType::U8, 2);
        fill(TensorMut { data: &mut o, shape: &[2] }, -3.7).unwrap();
        assert_eq!(o, CpuStorage::U8(vec![0; 2]));
        let mut o = CpuStorage::zeros(DType::Bool, 2);
        fill(TensorMut { data: &mut o, shape: &[2] }, 0.5).unwrap();
        assert_eq!(o, CpuStorage::Bool(vec![true; 2]));
        let mut o = CpuStorage::zeros(DType::F16, 1);
        fill(TensorMut { data: &mut o, shape: &[] }, 1.5).unwrap();
        assert_eq!(o, CpuStorage::F16(vec![f16::from_f32(1.5)]));
        let mut o = CpuStorage::zeros(DType::F32, 100_000);
        fill(TensorMut { data: &mut o, shape: &[100_000] }, -2.0).unwrap();
        assert_eq!(o, CpuStorage::F32(vec![-2.0; 100_000]));
    }

    #[test]
    fn every_float_unary_matches_f64_formulas() {
        let xs = [-1000.0, -3.5, -2.5, -1.0, -0.5, -0.0, 0.0, 0.25, 0.5, 1.5, 2.5, 3.0, 1000.0, f64::NAN];
        let reference: [UnaryCase; 19] = [
            (UnaryOp::Neg, |x| -x),
            (UnaryOp::Abs, f64::abs),
            (UnaryOp::Sign, |x| if x.is_nan() || x == 0.0 { x } else { x.signum() }),
            (UnaryOp::Square, |x| x * x),
            (UnaryOp::Sqrt, f64::sqrt),
            (UnaryOp::Reciprocal, f64::recip),
            (UnaryOp::Exp, f64::exp),
            (UnaryOp::Expm1, f64::exp_m1),
            (UnaryOp::Log, f64::ln),
            (UnaryOp::Log1p, f64::ln_1p),
            (UnaryOp::Sin, f64::sin),
            (UnaryOp::Cos, f64::cos),
            (UnaryOp::Tanh, f64::tanh),
            // Written naively, but guarded at the extremes where the naive form overflows.
            (UnaryOp::Sigmoid, |x| if x < -700.0 { 0.0 } else { 1.0 / (1.0 + (-x).exp()) }),
            (UnaryOp::Softplus, |x| if x > 700.0 { x } else { (1.0 + x.exp()).ln() }),
            (UnaryOp::Softsign, |x| x / (1.0 + x.abs())),
            (UnaryOp::Round, |x| {
                let f = x.floor();
                let d = x - f;
                if d > 0.5 || (d == 0.5 && f % 2.0 != 0.0) { f + 1.0 } else { f }
            }),
            (UnaryOp::Floor, f64::floor),
            (UnaryOp::Ceil, f64::ceil),
        ];
        for (op, f) in reference {
            let got = f64s(&run_unary(op, &CpuStorage::F64(xs.to_vec())));
            for (&x, g) in xs.iter().zip(got) {
                assert!(close(g, f(x)), "{op:?}({x}) = {g}, want {}", f(x));
            }
            let got32 = f64s(&run_unary(op, &CpuStorage::F32(xs.iter().map(|&x| x as f32).collect())));
            for (&x, g) in xs.iter().zip(got32) {
                let want = f64::from(f(x) as f32);
                assert!(
                    (g.is_nan() && want.is_nan()) || g == want || (g - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "f32 {op:?}({x}) = {g}, want {want}"
                );
            }
        }
    }

    #[test]
    fn unary_extremes_and_ties() {
        let s = run_unary(UnaryOp::Softplus, &CpuStorage::F32(vec![1000.0, -1000.0, 0.0]));
        assert_eq!(s, CpuStorage::F32(vec![1000.0, 0.0, std::f32::consts::LN_2]));
        let s = run_unary(UnaryOp::Sigmoid, &CpuStorage::F32(vec![-1000.0, 1000.0, 0.0]));
        assert_eq!(s, CpuStorage::F32(vec![0.0, 1.0, 0.5]));
        let r = run_unary(UnaryOp::Round, &CpuStorage::F32(vec![0.5, 1.5, 2.5, -0.5, -1.5, 2.6]));
        assert_eq!(r, CpuStorage::F32(vec![0.0, 2.0, 2.0, -0.0, -2.0, 3.0]));
        let g = run_unary(UnaryOp::Sign, &CpuStorage::F32(vec![f32::NAN, -0.0, 3.0, -2.0]));
        let CpuStorage::F32(g) = g else { panic!() };
        assert!(g[0].is_nan());
        assert_eq!(&g[1..], &[0.0, 1.0, -1.0]);
    }

    #[test]
    fn integer_bool_and_f16_unary() {
        let x = CpuStorage::I32(vec![i32::MIN, -3, 0, 7]);
        assert_eq!(run_unary(UnaryOp::Neg, &x), CpuStorage::I32(vec![i32::MIN, 3, 0, -7]));
        assert_eq!(run_unary(UnaryOp::Abs, &x), CpuStorage::I32(vec![i32::MIN, 3, 0, 7]));
        assert_eq!(run_unary(UnaryOp::Sign, &x), CpuStorage::I32(vec![-1, -1, 0, 1]));
        assert_eq!(run_unary(UnaryOp::Square, &CpuStorage::I64(vec![-4, 3])), CpuStorage::I64(vec![16, 9]));
        assert_eq!(
            run_unary(UnaryOp::LogicalNot, &CpuStorage::Bool(vec![true, false])),
            CpuStorage::Bool(vec![false, true])
        );
        let h = run_unary(UnaryOp::Exp, &CpuStorage::F16(vec![f16::from_f32(0.0), f16::from_f32(1.0)]));
        assert_eq!(h, CpuStorage::F16(vec![f16::ONE, f16::from_f32(std::f32::consts::E)]));
    }

    #[test]
    fn unary_in_place_matches_out_of_place() {
        let xs: Vec<f32> = (0..70_000).map(|i| (i as f32 - 35_000.0) / 1000.0).collect();
        let want = run_unary(UnaryOp::Tanh, &CpuStorage::F32(xs.clone()));
        let mut o = CpuStorage::F32(xs);
        unary_in_place(UnaryOp::Tanh, TensorMut { data: &mut o, shape: &[70_000] }).unwrap();
        assert_eq!(o, want);
        let mut o = CpuStorage::I64(vec![-2, 5]);
        unary_in_place(UnaryOp::Abs, TensorMut { data: &mut o, shape: &[2] }).unwrap();
        assert_eq!(o, CpuStorage::I64(vec![2, 5]));
        let mut o = CpuStorage::I64(vec![1]);
        let e = unary_in_place(UnaryOp::Exp, TensorMut { data: &mut o, shape: &[1] }).unwrap_err();
        assert!(e.message.contains("Exp") && e.message.contains("int64"), "{}", e.message);
    }

    #[test]
    fn unary_rejects_wrong_dtype_and_shape() {
        let x = CpuStorage::F32(vec![1.0]);
        let mut o = CpuStorage::zeros(DType::F32, 1);
        let e = unary(UnaryOp::LogicalNot, t(&x, &[1]), TensorMut { data: &mut o, shape: &[1] }).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert!(e.message.contains("LogicalNot") && e.message.contains("float32"), "{}", e.message);
        let xi = CpuStorage::I32(vec![1]);
        let mut oi = CpuStorage::zeros(DType::I32, 1);
        let e = unary(UnaryOp::Exp, t(&xi, &[1]), TensorMut { data: &mut oi, shape: &[1] }).unwrap_err();
        assert!(e.message.contains("Exp") && e.message.contains("int32"), "{}", e.message);
        let e = unary(UnaryOp::Exp, t(&x, &[1]), TensorMut { data: &mut oi, shape: &[1] }).unwrap_err();
        assert!(e.message.contains("int32") && e.message.contains("float32"), "{}", e.message);
        let e = unary(UnaryOp::Exp, t(&x, &[1]), TensorMut { data: &mut o, shape: &[1, 1] }).unwrap_err();
        assert!(e.message.contains("[1, 1]"), "{}", e.message);
    }

    /// Naive broadcasting reference: walks every output index and maps it back to each input.
    fn naive_binary(
        a: &[f64],
        sa: &[usize],
        b: &[f64],
        sb: &[usize],
        out: &[usize],
        f: impl Fn(f64, f64) -> f64,
    ) -> Vec<f64> {
        let n: usize = out.iter().product();
        let pick = |data: &[f64], shape: &[usize], mut i: usize| {
            let mut idx = vec![0; out.len()];
            for k in (0..out.len()).rev() {
                idx[k] = i % out[k];
                i /= out[k];
            }
            let lead = out.len() - shape.len();
            let mut off = 0;
            for (k, &d) in shape.iter().enumerate() {
                off = off * d + if d == 1 { 0 } else { idx[k + lead] };
            }
            data[off]
        };
        (0..n).map(|i| f(pick(a, sa, i), pick(b, sb, i))).collect()
    }

    #[test]
    fn every_arithmetic_op_broadcasts_like_numpy() {
        let a: Vec<f64> = (0..6).map(|i| i as f64 * 1.5 - 4.0).collect();
        let b: Vec<f64> = (0..4).map(|i| i as f64 - 1.25).collect();
        let reference: [BinaryCase; 8] = [
            (BinaryOp::Add, |x, y| x + y),
            (BinaryOp::Sub, |x, y| x - y),
            (BinaryOp::Mul, |x, y| x * y),
            (BinaryOp::Div, |x, y| x / y),
            (BinaryOp::Pow, f64::powf),
            (BinaryOp::Maximum, f64::max),
            (BinaryOp::Minimum, f64::min),
            (BinaryOp::Mod, |x, y| x - y * (x / y).floor()),
        ];
        for (op, f) in reference {
            let got = run_binary(
                op,
                &CpuStorage::F64(a.clone()),
                &[2, 1, 3],
                &CpuStorage::F64(b.clone()),
                &[4, 1],
                &[2, 4, 3],
            );
            let want = naive_binary(&a, &[2, 1, 3], &b, &[4, 1], &[2, 4, 3], f);
            for (g, w) in f64s(&got).into_iter().zip(want) {
                assert!(close(g, w), "{op:?}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn large_broadcasts_match_the_naive_walk() {
        let shapes: [(&[usize], &[usize], &[usize]); 4] = [
            (&[300, 200], &[200], &[300, 200]),
            (&[3, 1, 50, 400], &[7, 1, 400], &[3, 7, 50, 400]),
            (&[100_000], &[], &[100_000]),
            (&[], &[2, 50_000], &[2, 50_000]),
        ];
        for (sa, sb, so) in shapes {
            let a: Vec<f64> = (0..sa.iter().product::<usize>()).map(|i| (i % 97) as f64).collect();
            let b: Vec<f64> = (0..sb.iter().product::<usize>()).map(|i| (i % 13) as f64 * 0.5).collect();
            let got = run_binary(BinaryOp::Sub, &CpuStorage::F64(a.clone()), sa, &CpuStorage::F64(b.clone()), sb, so);
            assert_eq!(f64s(&got), naive_binary(&a, sa, &b, sb, so, |x, y| x - y), "{sa:?} {sb:?}");
        }
    }

    #[test]
    fn float_edge_values() {
        let a = CpuStorage::F32(vec![f32::NAN, 1.0, -7.5, 7.5, 1.0]);
        let b = CpuStorage::F32(vec![1.0, f32::NAN, 2.0, -2.0, 0.0]);
        let CpuStorage::F32(mx) = run_binary(BinaryOp::Maximum, &a, &[5], &b, &[5], &[5]) else { panic!() };
        assert!(mx[0].is_nan() && mx[1].is_nan());
        let CpuStorage::F32(mn) = run_binary(BinaryOp::Minimum, &a, &[5], &b, &[5], &[5]) else { panic!() };
        assert!(mn[0].is_nan() && mn[1].is_nan());
        let CpuStorage::F32(m) = run_binary(BinaryOp::Mod, &a, &[5], &b, &[5], &[5]) else { panic!() };
        assert_eq!(&m[2..4], &[0.5, -0.5]);
        let CpuStorage::F32(d) = run_binary(BinaryOp::Div, &a, &[5], &b, &[5], &[5]) else { panic!() };
        assert_eq!(d[4], f32::INFINITY);
    }

    #[test]
    fn integer_arithmetic() {
        let a = CpuStorage::I32(vec![7, -7, 7, -7, i32::MAX]);
        let b = CpuStorage::I32(vec![2, 2, -2, -2, 1]);
        let run = |op| run_binary(op, &a, &[5], &b, &[5], &[5]);
        assert_eq!(run(BinaryOp::Div), CpuStorage::I32(vec![3, -3, -3, 3, i32::MAX]));
        assert_eq!(run(BinaryOp::Mod), CpuStorage::I32(vec![1, 1, -1, -1, 0]));
        assert_eq!(run(BinaryOp::Add), CpuStorage::I32(vec![9, -5, 5, -9, i32::MIN]));
        let u = run_binary(BinaryOp::Sub, &CpuStorage::U8(vec![1, 200]), &[2], &CpuStorage::U8(vec![2]), &[], &[2]);
        assert_eq!(u, CpuStorage::U8(vec![255, 198]));
        let p = run_binary(BinaryOp::Pow, &CpuStorage::I64(vec![2, -3]), &[2], &CpuStorage::I64(vec![10]), &[1], &[2]);
        assert_eq!(p, CpuStorage::I64(vec![1024, 59049]));
        let m =
            run_binary(BinaryOp::Maximum, &CpuStorage::I64(vec![2, -3]), &[2], &CpuStorage::I64(vec![0]), &[], &[2]);
        assert_eq!(m, CpuStorage::I64(vec![2, 0]));
    }

    #[test]
    fn integer_errors() {
        let a = CpuStorage::I32(vec![1, 2]);
        let zero = CpuStorage::I32(vec![1, 0]);
        let neg = CpuStorage::I32(vec![-1, 2]);
        let mut o = CpuStorage::zeros(DType::I32, 2);
        for (op, b, needle) in [
            (BinaryOp::Div, &zero, "division by zero"),
            (BinaryOp::Mod, &zero, "division by zero"),
            (BinaryOp::Pow, &neg, "negative exponent"),
        ] {
            let e = binary(op, t(&a, &[2]), t(b, &[2]), TensorMut { data: &mut o, shape: &[2] }).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidArgument);
            assert!(e.message.contains(needle) && e.message.contains(&format!("{op:?}")), "{}", e.message);
        }
    }

    #[test]
    fn comparisons_and_logic() {
        let a = CpuStorage::F32(vec![1.0, f32::NAN, 3.0]);
        let b = CpuStorage::F32(vec![2.0]);
        let cases = [
            (BinaryOp::Equal, [false, false, false]),
            (BinaryOp::NotEqual, [true, true, true]),
            (BinaryOp::Less, [true, false, false]),
            (BinaryOp::LessEqual, [true, false, false]),
            (BinaryOp::Greater, [false, false, true]),
            (BinaryOp::GreaterEqual, [false, false, true]),
        ];
        for (op, want) in cases {
            assert_eq!(run_binary(op, &a, &[3], &b, &[1], &[3]), CpuStorage::Bool(want.to_vec()), "{op:?}");
        }
        let i = run_binary(
            BinaryOp::Equal,
            &CpuStorage::I64(vec![1, 2]),
            &[2, 1],
            &CpuStorage::I64(vec![1, 2]),
            &[2],
            &[2, 2],
        );
        assert_eq!(i, CpuStorage::Bool(vec![true, false, false, true]));
        let p = CpuStorage::Bool(vec![true, true, false, false]);
        let q = CpuStorage::Bool(vec![true, false, true, false]);
        assert_eq!(
            run_binary(BinaryOp::LogicalAnd, &p, &[4], &q, &[4], &[4]),
            CpuStorage::Bool(vec![true, false, false, false])
        );
        assert_eq!(
            run_binary(BinaryOp::LogicalOr, &p, &[4], &q, &[4], &[4]),
            CpuStorage::Bool(vec![true, true, true, false])
        );
        assert_eq!(
            run_binary(BinaryOp::Less, &p, &[4], &q, &[4], &[4]),
            CpuStorage::Bool(vec![false, false, true, false])
        );
        let h = run_binary(
            BinaryOp::Greater,
            &CpuStorage::F16(vec![f16::ONE]),
            &[],
            &CpuStorage::F16(vec![f16::ZERO]),
            &[],
            &[],
        );
        assert_eq!(h, CpuStorage::Bool(vec![true]));
    }

    #[test]
    fn f16_arithmetic_and_empty_dims() {
        let a = CpuStorage::F16(vec![f16::from_f32(1.5), f16::from_f32(-2.0)]);
        let b = CpuStorage::F16(vec![f16::from_f32(0.25)]);
        let s = run_binary(BinaryOp::Mul, &a, &[2], &b, &[], &[2]);
        assert_eq!(s, CpuStorage::F16(vec![f16::from_f32(0.375), f16::from_f32(-0.5)]));
        let e = run_binary(
            BinaryOp::Add,
            &CpuStorage::F32(vec![]),
            &[0, 1],
            &CpuStorage::F32(vec![1.0, 2.0, 3.0]),
            &[3],
            &[0, 3],
        );
        assert_eq!(e, CpuStorage::F32(vec![]));
        // A zero divisor that is never used (empty output) is not an error.
        let z = run_binary(BinaryOp::Div, &CpuStorage::I32(vec![]), &[0], &CpuStorage::I32(vec![0]), &[1], &[0]);
        assert_eq!(z, CpuStorage::I32(vec![]));
    }

    #[test]
    fn binary_errors_name_shapes_and_dtypes() {
        let a = CpuStorage::F32(vec![0.0; 6]);
        let b = CpuStorage::F32(vec![0.0; 6]);
        let mut o = CpuStorage::zeros(DType::F32, 6);
        let e = binary(BinaryOp::Add, t(&a, &[2, 3]), t(&b, &[3, 2]), TensorMut { data: &mut o, shape: &[2, 3] })
            .unwrap_err();
        assert!(
            e.message.contains("[2, 3]") && e.message.contains("[3, 2]") && e.message.contains("Add"),
            "{}",
            e.message
        );
        let e =
            binary(BinaryOp::Add, t(&a, &[2, 3]), t(&b, &[2, 3]), TensorMut { data: &mut o, shape: &[6] }).unwrap_err();
        assert!(e.message.contains("[2, 3]") && e.message.contains("[6]"), "{}", e.message);
        let bi = CpuStorage::I32(vec![0; 6]);
        let e = binary(BinaryOp::Add, t(&a, &[6]), t(&bi, &[6]), TensorMut { data: &mut o, shape: &[6] }).unwrap_err();
        assert!(e.message.contains("float32") && e.message.contains("int32"), "{}", e.message);
        let e = binary(BinaryOp::Less, t(&a, &[6]), t(&b, &[6]), TensorMut { data: &mut o, shape: &[6] }).unwrap_err();
        assert!(e.message.contains("bool"), "{}", e.message);
        let mut ob = CpuStorage::zeros(DType::Bool, 6);
        let e = binary(BinaryOp::LogicalAnd, t(&a, &[6]), t(&b, &[6]), TensorMut { data: &mut ob, shape: &[6] })
            .unwrap_err();
        assert!(e.message.contains("float32"), "{}", e.message);
        let p = CpuStorage::Bool(vec![true; 6]);
        let e = binary(BinaryOp::Add, t(&p, &[6]), t(&p, &[6]), TensorMut { data: &mut ob, shape: &[6] }).unwrap_err();
        assert!(e.message.contains("bool"), "{}", e.message);
    }

    #[test]
    fn in_place_both_sides() {
        let other = CpuStorage::F32(vec![10.0, 20.0, 30.0]);
        let mut o = CpuStorage::F32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        binary_in_place(BinaryOp::Sub, t(&other, &[3]), TensorMut { data: &mut o, shape: &[2, 3] }, true).unwrap();
        assert_eq!(o, CpuStorage::F32(vec![-9.0, -18.0, -27.0, -6.0, -15.0, -24.0]));
        let mut o = CpuStorage::F32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        binary_in_place(BinaryOp::Sub, t(&other, &[3]), TensorMut { data: &mut o, shape: &[2, 3] }, false).unwrap();
        assert_eq!(o, CpuStorage::F32(vec![9.0, 18.0, 27.0, 6.0, 15.0, 24.0]));
        let col = CpuStorage::I64(vec![2, 3]);
        let mut o = CpuStorage::I64(vec![7, 8, 9, 10, 11, 12]);
        binary_in_place(BinaryOp::Mod, t(&col, &[2, 1]), TensorMut { data: &mut o, shape: &[2, 3] }, true).unwrap();
        assert_eq!(o, CpuStorage::I64(vec![1, 0, 1, 1, 2, 0]));
        // The divisor is `out` itself here: its zero is refused.
        let mut o = CpuStorage::I64(vec![1, 0]);
        let e =
            binary_in_place(BinaryOp::Div, t(&col, &[2]), TensorMut { data: &mut o, shape: &[2] }, false).unwrap_err();
        assert!(e.message.contains("division by zero"), "{}", e.message);
        let mut o = CpuStorage::F16(vec![f16::ONE, f16::ZERO]);
        let h = CpuStorage::F16(vec![f16::from_f32(0.5)]);
        binary_in_place(BinaryOp::Add, t(&h, &[]), TensorMut { data: &mut o, shape: &[2] }, true).unwrap();
        assert_eq!(o, CpuStorage::F16(vec![f16::from_f32(1.5), f16::from_f32(0.5)]));
        let mut o = CpuStorage::Bool(vec![true, false]);
        let q = CpuStorage::Bool(vec![true]);
        binary_in_place(BinaryOp::Equal, t(&q, &[1]), TensorMut { data: &mut o, shape: &[2] }, true).unwrap();
        assert_eq!(o, CpuStorage::Bool(vec![true, false]));
    }

    #[test]
    fn in_place_errors() {
        let other = CpuStorage::F32(vec![1.0; 4]);
        let mut o = CpuStorage::F32(vec![1.0; 2]);
        let e =
            binary_in_place(BinaryOp::Add, t(&other, &[4]), TensorMut { data: &mut o, shape: &[2] }, true).unwrap_err();
        assert!(e.message.contains("[4]") && e.message.contains("[2]"), "{}", e.message);
        let other = CpuStorage::F32(vec![1.0; 2]);
        let e = binary_in_place(BinaryOp::Less, t(&other, &[2]), TensorMut { data: &mut o, shape: &[2] }, true)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert!(e.message.contains("bool"), "{}", e.message);
    }

    #[test]
    fn select_broadcasts_all_three() {
        let c = CpuStorage::Bool(vec![true, false]);
        let on_true = CpuStorage::I32(vec![1, 2, 3]);
        let on_false = CpuStorage::I32(vec![-1]);
        let mut o = CpuStorage::zeros(DType::I32, 6);
        select(t(&c, &[2, 1]), t(&on_true, &[3]), t(&on_false, &[]), TensorMut { data: &mut o, shape: &[2, 3] })
            .unwrap();
        assert_eq!(o, CpuStorage::I32(vec![1, 2, 3, -1, -1, -1]));
        let mut bad = CpuStorage::zeros(DType::F32, 6);
        let e =
            select(t(&c, &[2, 1]), t(&on_true, &[3]), t(&on_false, &[]), TensorMut { data: &mut bad, shape: &[2, 3] })
                .unwrap_err();
        assert!(e.message.contains("on_true") && e.message.contains("int32"), "{}", e.message);
        let e = select(t(&c, &[2]), t(&on_true, &[3]), t(&on_false, &[]), TensorMut { data: &mut o, shape: &[2, 3] })
            .unwrap_err();
        assert!(e.message.contains("cond") && e.message.contains("[2, 3]"), "{}", e.message);
        let big_c = CpuStorage::Bool((0..100_000).map(|i| i % 3 == 0).collect());
        let x = CpuStorage::F64((0..100_000).map(f64::from).collect());
        let zero = CpuStorage::F64(vec![0.0]);
        let mut o = CpuStorage::zeros(DType::F64, 100_000);
        select(t(&big_c, &[100_000]), t(&x, &[100_000]), t(&zero, &[1]), TensorMut { data: &mut o, shape: &[100_000] })
            .unwrap();
        assert_eq!(f64s(&o), (0..100_000).map(|i| if i % 3 == 0 { f64::from(i) } else { 0.0 }).collect::<Vec<_>>());
    }

    #[test]
    fn cast_between_all_dtypes() {
        let x = CpuStorage::F32(vec![-1.7, 2.9, f32::NAN, 1e10, -1e10, 0.0]);
        let mut o = CpuStorage::zeros(DType::I32, 6);
        cast(t(&x, &[6]), TensorMut { data: &mut o, shape: &[6] }).unwrap();
        assert_eq!(o, CpuStorage::I32(vec![-1, 2, 0, i32::MAX, i32::MIN, 0]));
        let mut o = CpuStorage::zeros(DType::U8, 6);
        cast(t(&x, &[6]), TensorMut { data: &mut o, shape: &[6] }).unwrap();
        assert_eq!(o, CpuStorage::U8(vec![0, 2, 0, 255, 0, 0]));
        let mut o = CpuStorage::zeros(DType::Bool, 6);
        cast(t(&x, &[6]), TensorMut { data: &mut o, shape: &[6] }).unwrap();
        assert_eq!(o, CpuStorage::Bool(vec![true, true, true, true, true, false]));
        let b = CpuStorage::Bool(vec![true, false]);
        let mut o = CpuStorage::zeros(DType::F64, 2);
        cast(t(&b, &[2]), TensorMut { data: &mut o, shape: &[2] }).unwrap();
        assert_eq!(o, CpuStorage::F64(vec![1.0, 0.0]));
        let big = CpuStorage::I64(vec![i64::MAX, (1 << 53) + 1]);
        let mut o = CpuStorage::zeros(DType::I64, 2);
        cast(t(&big, &[2]), TensorMut { data: &mut o, shape: &[2] }).unwrap();
        assert_eq!(o, big);
        let mut o = CpuStorage::zeros(DType::F16, 2);
        cast(t(&CpuStorage::F64(vec![0.1, 70000.0]), &[2]), TensorMut { data: &mut o, shape: &[2] }).unwrap();
        assert_eq!(o, CpuStorage::F16(vec![f16::from_f64(0.1), f16::INFINITY]));
        let e = cast(t(&b, &[2]), TensorMut { data: &mut o, shape: &[1, 2] }).unwrap_err();
        assert!(e.message.contains("[1, 2]") && e.message.contains("[2]"), "{}", e.message);
    }
}
