//! fill, unary, binary, select, cast and batch_norm: the host side of `kernels/elementwise.cu`.
//!
//! Argument checks, dtype rules and error messages follow the cpu backend
//! (`backend-cpu/src/ops/elementwise.rs`, `fused.rs` and the aliasing rules of its `lib.rs`).
//! Broadcast operands are walked through a [`Space`] over `out`'s shape, coalesced first as
//! the CPU does: adjacent axes that every operand walks with one stride merge and axes of
//! length 1 drop out. When that leaves one axis (same-shape operands, a scalar against a
//! tensor), binary and select run their `_flat` kernels, which index `i * stride` with no
//! division per element.

use keras_backend_api::{
    BackendError, BinaryOp, DType, TensorRef, UnaryOp,
    shape::{self, broadcast_strides, coalesce},
};

use crate::{
    Device, Result,
    device::{self, Kernel, Operand},
    index::{Space, View},
    ops::{bits_suffix, dtype_suffix, refuse_alias},
};

const MODULE: &str = "elementwise";

fn kernel(function: &str) -> Kernel<'_> {
    Kernel { module: MODULE, function }
}

// ----- fill -----

/// Sets every element of `out` to `value` converted to its dtype as the CPU converts it
/// (saturating for integers, `value != 0` for `Bool`, f16 through f32).
pub fn fill(device: &Device, out: TensorRef<'_>, value: f64) -> Result<()> {
    let o = device.operand("fill", "out", out)?;
    fill_operand(device, &o, value)
}

/// [`fill`] on an operand its caller has already checked: pad fills its border with it, so
/// the fill kernels live once, in `kernels/elementwise.cu`.
pub(crate) fn fill_operand(device: &Device, o: &Operand, value: f64) -> Result<()> {
    if o.len == 0 {
        return Ok(());
    }
    let bits = fill_bits(o.dtype, value);
    let name = format!("fill_{}", bits_suffix(o.dtype));
    let n = o.len as i64;
    let cfg = device::grid_1d(o.len);
    // The kernel's `value` parameter has the element's width; the truncations keep exactly
    // the bits `fill_bits` produced for that width.
    match o.dtype.size_in_bytes() {
        1 => {
            let v = bits as u8;
            crate::launch!(device, kernel(&name), cfg; o.ptr, v, n)
        }
        2 => {
            let v = bits as u16;
            crate::launch!(device, kernel(&name), cfg; o.ptr, v, n)
        }
        4 => {
            let v = bits as u32;
            crate::launch!(device, kernel(&name), cfg; o.ptr, v, n)
        }
        _ => crate::launch!(device, kernel(&name), cfg; o.ptr, bits, n),
    }
}

/// The little-endian bits of `value` as an element of `dtype` (in the low bytes), with the
/// cpu backend's `Element::from_f64` rules.
pub fn fill_bits(dtype: DType, value: f64) -> u64 {
    match dtype {
        DType::F16 => u64::from(f32_to_f16_bits(value as f32)),
        DType::F32 => u64::from((value as f32).to_bits()),
        DType::F64 => value.to_bits(),
        DType::I32 => u64::from((value as i32) as u32),
        DType::I64 => (value as i64) as u64,
        DType::U8 => u64::from(value as u8),
        DType::Bool => u64::from(value != 0.0),
    }
}

/// f32 → f16 bits, rounding to nearest even; a NaN keeps its sign and top payload bits and is
/// made quiet. This is what `half::f16::from_f32` (and `from_f64`, which goes through f32 on
/// x86) gives on the cpu backend.
pub fn f32_to_f16_bits(value: f32) -> u16 {
    let x = value.to_bits();
    let sign = (x >> 16) & 0x8000;
    let exp = x & 0x7f80_0000;
    let man = x & 0x007f_ffff;
    if exp == 0x7f80_0000 {
        let nan_bit = if man == 0 { 0 } else { 0x0200 };
        return (sign | 0x7c00 | nan_bit | (man >> 13)) as u16;
    }
    let half_exp = (exp >> 23) as i32 - 127 + 15;
    if half_exp >= 0x1f {
        return (sign | 0x7c00) as u16;
    }
    if half_exp <= 0 {
        if 14 - half_exp > 24 {
            return sign as u16;
        }
        let man = man | 0x0080_0000;
        let shift = (14 - half_exp) as u32;
        let mut half_man = man >> shift;
        let round_bit = 1u32 << (shift - 1);
        if man & round_bit != 0 && man & (3 * round_bit - 1) != 0 {
            half_man += 1;
        }
        return (sign | half_man) as u16;
    }
    let bits = sign | ((half_exp as u32) << 10) | (man >> 13);
    let round_bit = 0x0000_1000;
    // A carry out of the mantissa correctly bumps the exponent (up to infinity).
    if man & round_bit != 0 && man & (3 * round_bit - 1) != 0 { (bits + 1) as u16 } else { bits as u16 }
}

// ----- unary -----

fn unary_name(op: UnaryOp) -> &'static str {
    match op {
        UnaryOp::Neg => "neg",
        UnaryOp::Abs => "abs",
        UnaryOp::Sign => "sign",
        UnaryOp::Square => "square",
        UnaryOp::Sqrt => "sqrt",
        UnaryOp::Reciprocal => "reciprocal",
        UnaryOp::Exp => "exp",
        UnaryOp::Expm1 => "expm1",
        UnaryOp::Log => "log",
        UnaryOp::Log1p => "log1p",
        UnaryOp::Sin => "sin",
        UnaryOp::Cos => "cos",
        UnaryOp::Tanh => "tanh",
        UnaryOp::Sigmoid => "sigmoid",
        UnaryOp::Softplus => "softplus",
        UnaryOp::Softsign => "softsign",
        UnaryOp::Round => "round",
        UnaryOp::Floor => "floor",
        UnaryOp::Ceil => "ceil",
        UnaryOp::LogicalNot => "logical_not",
    }
}

/// Whether the cpu backend defines `op` on `dtype`: every op but `LogicalNot` on floats,
/// `Neg`/`Abs`/`Sign`/`Square` on integers, `LogicalNot` on `Bool`.
fn unary_defined(op: UnaryOp, dtype: DType) -> bool {
    match dtype {
        DType::F16 | DType::F32 | DType::F64 => op != UnaryOp::LogicalNot,
        DType::I32 | DType::I64 | DType::U8 => {
            matches!(op, UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Sign | UnaryOp::Square)
        }
        DType::Bool => op == UnaryOp::LogicalNot,
    }
}

/// `out = op(x)`; `out` has the shape and dtype of `x` and may be `x` itself.
pub fn unary(device: &Device, op: UnaryOp, x: TensorRef<'_>, out: TensorRef<'_>) -> Result<()> {
    let kernel_name = format!("unary({op:?})");
    check_alias_shape("unary", &[("x", &x)], &out)?;
    let xo = device.operand("unary", "x", x)?;
    let o = device.operand("unary", "out", out)?;
    if x.shape.as_slice() != out.shape.as_slice() {
        return Err(BackendError::invalid(format!(
            "{kernel_name}: out has shape {:?} but `x` has shape {:?}; they must be equal",
            out.shape.as_slice(),
            x.shape.as_slice()
        )));
    }
    if o.dtype != xo.dtype {
        return Err(wrong_dtype(&kernel_name, "out", o.dtype, xo.dtype));
    }
    if !unary_defined(op, xo.dtype) {
        return Err(BackendError::invalid(format!("{kernel_name}: not defined for {} tensors", xo.dtype)));
    }
    if o.len == 0 {
        return Ok(());
    }
    let name = format!("{}_{}", unary_name(op), dtype_suffix(xo.dtype));
    let n = o.len as i64;
    crate::launch!(device, kernel(&name), device::grid_1d(o.len); o.ptr, xo.ptr, n)
}

// ----- binary -----

fn binary_name(op: BinaryOp) -> &'static str {
    match op {
        BinaryOp::Add => "add",
        BinaryOp::Sub => "sub",
        BinaryOp::Mul => "mul",
        BinaryOp::Div => "div",
        BinaryOp::Pow => "pow",
        BinaryOp::Maximum => "maximum",
        BinaryOp::Minimum => "minimum",
        BinaryOp::Mod => "mod",
        BinaryOp::Equal => "equal",
        BinaryOp::NotEqual => "not_equal",
        BinaryOp::Less => "less",
        BinaryOp::LessEqual => "less_equal",
        BinaryOp::Greater => "greater",
        BinaryOp::GreaterEqual => "greater_equal",
        BinaryOp::LogicalAnd => "logical_and",
        BinaryOp::LogicalOr => "logical_or",
    }
}

/// `out = op(a, b)` with NumPy broadcasting. `out` may be `a` or `b` when that input has
/// `out`'s shape (element-wise in place), or both (then each input is read from a copy when
/// its shape differs from `out`'s, as the CPU reads from a private copy).
pub fn binary(device: &Device, op: BinaryOp, a: TensorRef<'_>, b: TensorRef<'_>, out: TensorRef<'_>) -> Result<()> {
    let kernel_name = format!("binary({op:?})");
    let all_one_buffer = a.buffer == b.buffer && a.buffer == out.buffer;
    if !all_one_buffer {
        check_alias_shape("binary", &[("a", &a), ("b", &b)], &out)?;
    }
    let ao = device.operand("binary", "a", a)?;
    let bo = device.operand("binary", "b", b)?;
    let o = device.operand("binary", "out", out)?;
    let out_shape = out.shape.as_slice();
    let in_place_lhs = !all_one_buffer && a.buffer == out.buffer;
    let in_place_rhs = !all_one_buffer && b.buffer == out.buffer;
    if in_place_lhs || in_place_rhs {
        // The cpu backend's in-place path, with its messages.
        let (other_name, other, other_dtype) =
            if in_place_lhs { ("b", b.shape.as_slice(), bo.dtype) } else { ("a", a.shape.as_slice(), ao.dtype) };
        if !shape::broadcast(other, out_shape).is_ok_and(|s| s == out_shape) {
            return Err(BackendError::invalid(format!(
                "{kernel_name}: in place, `{other_name}` {other:?} must broadcast to out's shape {out_shape:?}"
            )));
        }
        op.check_dtypes(&kernel_name, o.dtype, other_dtype, o.dtype)?;
    } else {
        let expected = shape::broadcast(&a.shape, &b.shape)
            .map_err(|e| BackendError::invalid(format!("{kernel_name}: {e} (out has shape {out_shape:?})")))?;
        if expected != out_shape {
            return Err(BackendError::invalid(format!(
                "{kernel_name}: `a` {:?} and `b` {:?} broadcast to {expected:?}, but out has shape {out_shape:?}",
                a.shape.as_slice(),
                b.shape.as_slice()
            )));
        }
        op.check_dtypes(&kernel_name, ao.dtype, bo.dtype, o.dtype)?;
    }
    if o.len == 0 {
        return Ok(());
    }
    let dtype = ao.dtype;
    check_integer_rhs(device, op, &kernel_name, &bo, b)?;

    // A copy of the one buffer when an input views it under another shape: threads write
    // elements of `out` that other threads still have to read through the broadcast view.
    let copy = if all_one_buffer && (a.shape.as_slice() != out_shape || b.shape.as_slice() != out_shape) {
        let scratch = device.scratch(&kernel_name, dtype, ao.len)?;
        device.copy(&kernel_name, scratch.ptr, ao.ptr, ao.len * dtype.size_in_bytes())?;
        Some(scratch)
    } else {
        None
    };
    let (a_ptr, b_ptr) = match &copy {
        Some(c) => (c.ptr, c.ptr),
        None => (ao.ptr, bo.ptr),
    };

    let name = format!("{}_{}", binary_name(op), dtype_suffix(dtype));
    let strides = [broadcast_strides(&a.shape, out_shape), broadcast_strides(&b.shape, out_shape)];
    let (dims, [sa, sb]) = coalesce(out_shape, &strides);
    let n = o.len as i64;
    let cfg = device::grid_1d(o.len);
    if let ([_], [sa], [sb]) = (dims.as_slice(), sa.as_slice(), sb.as_slice()) {
        let (sa, sb) = (*sa as i64, *sb as i64);
        let flat = format!("{name}_flat");
        crate::launch!(device, kernel(&flat), cfg; o.ptr, a_ptr, b_ptr, sa, sb, n)
    } else {
        let space = Space::new(&kernel_name, &dims)?;
        let va = View::new(&kernel_name, 0, &sa)?;
        let vb = View::new(&kernel_name, 0, &sb)?;
        crate::launch!(device, kernel(&name), cfg; o.ptr, a_ptr, b_ptr, space, va, vb, n)
    }
}

/// Integer `Div` and `Mod` refuse a zero in `b` and integer `Pow` a negative one, checked on
/// the device before anything is written (`out` may be `b`). Floats follow IEEE 754.
fn check_integer_rhs(device: &Device, op: BinaryOp, kernel_name: &str, bo: &Operand, b: TensorRef<'_>) -> Result<()> {
    let check = match (op, bo.dtype) {
        (BinaryOp::Div | BinaryOp::Mod, DType::I32 | DType::I64 | DType::U8) => "check_divisor",
        (BinaryOp::Pow, DType::I32 | DType::I64) => "check_exponent",
        _ => return Ok(()),
    };
    let name = format!("{check}_{}", dtype_suffix(bo.dtype));
    let n = bo.len as i64;
    let flag = device.with_error_flag(
        kernel_name,
        |flag| crate::launch!(device, kernel(&name), device::grid_1d(bo.len); bo.ptr, n, flag),
    )?;
    if flag == 0 {
        return Ok(());
    }
    if op != BinaryOp::Pow {
        return Err(BackendError::invalid(format!(
            "{kernel_name}: integer division by zero (`b` of {} holds a 0)",
            bo.dtype
        )));
    }
    // The message names the first negative exponent, as the CPU's does: an error path, so
    // reading `b` back is affordable.
    let mut bytes = vec![0u8; bo.len * bo.dtype.size_in_bytes()];
    device.download(b.buffer, &mut bytes)?;
    let first = match bo.dtype {
        DType::I32 => {
            bytes.chunks_exact(4).map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]]))).find(|&v| v < 0)
        }
        _ => bytes
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .find(|&v| v < 0),
    };
    let value = first.map_or_else(|| "?".to_string(), |v| v.to_string());
    Err(BackendError::invalid(format!(
        "{kernel_name}: negative exponent {value} in `b`; integer powers need exponents >= 0"
    )))
}

// ----- select -----

/// `out = cond ? on_true : on_false`, all three broadcast to `out`'s shape; `cond` is `Bool`
/// and the branches have `out`'s dtype (any dtype: elements move by size).
pub fn select(
    device: &Device,
    cond: TensorRef<'_>,
    on_true: TensorRef<'_>,
    on_false: TensorRef<'_>,
    out: TensorRef<'_>,
) -> Result<()> {
    const KERNEL: &str = "select";
    let inputs = [("cond", cond), ("on_true", on_true), ("on_false", on_false)];
    // Contract 1.1: `out` may be a branch of its own shape. Each thread reads its element of
    // the branch before writing the same element of `out`, so that is safe; `cond` (another
    // dtype unless `out` is Bool) never is `out`.
    refuse_alias(KERNEL, &[inputs[0].1], out)?;
    check_alias_shape(KERNEL, &[("on_true", &inputs[1].1), ("on_false", &inputs[2].1)], &out)?;
    let co = device.operand(KERNEL, "cond", cond)?;
    let to = device.operand(KERNEL, "on_true", on_true)?;
    let fo = device.operand(KERNEL, "on_false", on_false)?;
    let o = device.operand(KERNEL, "out", out)?;
    let out_shape = out.shape.as_slice();
    for (name, t) in &inputs {
        if !shape::broadcast(&t.shape, out_shape).is_ok_and(|s| s == out_shape) {
            return Err(BackendError::invalid(format!(
                "{KERNEL}: `{name}` has shape {:?}, which does not broadcast to out's shape {out_shape:?}",
                t.shape.as_slice()
            )));
        }
    }
    if co.dtype != DType::Bool {
        return Err(wrong_dtype(KERNEL, "cond", co.dtype, DType::Bool));
    }
    for (name, operand) in [("on_true", &to), ("on_false", &fo)] {
        if operand.dtype != o.dtype {
            return Err(wrong_dtype(KERNEL, name, operand.dtype, o.dtype));
        }
    }
    if o.len == 0 {
        return Ok(());
    }
    let name = format!("select_{}", bits_suffix(o.dtype));
    let strides = inputs.map(|(_, t)| broadcast_strides(&t.shape, out_shape));
    let (dims, [sc, st, sf]) = coalesce(out_shape, &strides);
    let n = o.len as i64;
    let cfg = device::grid_1d(o.len);
    if let ([_], [sc], [st], [sf]) = (dims.as_slice(), sc.as_slice(), st.as_slice(), sf.as_slice()) {
        let (sc, st, sf) = (*sc as i64, *st as i64, *sf as i64);
        let flat = format!("{name}_flat");
        crate::launch!(device, kernel(&flat), cfg; o.ptr, co.ptr, to.ptr, fo.ptr, sc, st, sf, n)
    } else {
        let space = Space::new(KERNEL, &dims)?;
        let vc = View::new(KERNEL, 0, &sc)?;
        let vt = View::new(KERNEL, 0, &st)?;
        let vf = View::new(KERNEL, 0, &sf)?;
        crate::launch!(device, kernel(&name), cfg; o.ptr, co.ptr, to.ptr, fo.ptr, space, vc, vt, vf, n)
    }
}

// ----- cast -----

/// Converts `x` into `out`'s dtype (same shape) with the CPU's rules: float to integer
/// truncates toward zero, NaN gives 0 and out-of-range values saturate; integer to narrower
/// integer wraps; anything to `Bool` is `x != 0`; `Bool` to a number is 0 or 1.
pub fn cast(device: &Device, x: TensorRef<'_>, out: TensorRef<'_>) -> Result<()> {
    const KERNEL: &str = "cast";
    refuse_alias(KERNEL, &[x], out)?;
    let xo = device.operand(KERNEL, "x", x)?;
    let o = device.operand(KERNEL, "out", out)?;
    if x.shape.as_slice() != out.shape.as_slice() {
        return Err(BackendError::invalid(format!(
            "{KERNEL}: out has shape {:?} but `x` has shape {:?}; they must be equal",
            out.shape.as_slice(),
            x.shape.as_slice()
        )));
    }
    if o.len == 0 {
        return Ok(());
    }
    if xo.dtype == o.dtype {
        return device.copy(KERNEL, o.ptr, xo.ptr, o.len * o.dtype.size_in_bytes());
    }
    let name = format!("cast_{}_{}", dtype_suffix(xo.dtype), dtype_suffix(o.dtype));
    let n = o.len as i64;
    crate::launch!(device, kernel(&name), device::grid_1d(o.len); o.ptr, xo.ptr, n)
}

// ----- batch_norm -----

/// `out = (x - mean) / √(var + epsilon) · gamma + beta` for F32 and F64, each parameter
/// broadcast to `x`'s shape, rounded step by step in the CPU's order.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm(
    device: &Device,
    x: TensorRef<'_>,
    mean: TensorRef<'_>,
    var: TensorRef<'_>,
    beta: TensorRef<'_>,
    gamma: TensorRef<'_>,
    epsilon: f64,
    out: TensorRef<'_>,
) -> Result<()> {
    const KERNEL: &str = "batch_norm";
    refuse_alias(KERNEL, &[x, mean, var, beta, gamma], out)?;
    let xo = device.operand(KERNEL, "x", x)?;
    let params = [("mean", mean), ("var", var), ("beta", beta), ("gamma", gamma)];
    let mut operands = Vec::with_capacity(params.len());
    for (name, p) in params {
        operands.push(device.operand(KERNEL, name, p)?);
    }
    let o = device.operand(KERNEL, "out", out)?;
    let x_shape = x.shape.as_slice();
    if x_shape != out.shape.as_slice() {
        return Err(BackendError::invalid(format!(
            "{KERNEL}: out has shape {:?} but `x` has shape {x_shape:?}; they must be equal",
            out.shape.as_slice()
        )));
    }
    for (name, p) in &params {
        if !shape::broadcast(&p.shape, x_shape).is_ok_and(|s| s == x_shape) {
            return Err(BackendError::invalid(format!(
                "{KERNEL}: `{name}` has shape {:?}, which does not broadcast to `x`'s shape {x_shape:?}",
                p.shape.as_slice()
            )));
        }
    }
    let dtype = xo.dtype;
    match dtype {
        DType::F32 | DType::F64 => {}
        DType::F16 => return Err(BackendError::unsupported(format!("{KERNEL} on {dtype}"))),
        other => return Err(BackendError::invalid(format!("{KERNEL}: takes float tensors, got {other}"))),
    }
    for ((name, _), operand) in params.iter().zip(&operands) {
        if operand.dtype != dtype {
            return Err(wrong_dtype(KERNEL, name, operand.dtype, dtype));
        }
    }
    if o.dtype != dtype {
        return Err(wrong_dtype(KERNEL, "out", o.dtype, dtype));
    }
    if o.len == 0 {
        return Ok(());
    }
    let strides = params.map(|(_, p)| broadcast_strides(&p.shape, x_shape));
    let (dims, [sm, sv, sb, sg]) = coalesce(x_shape, &strides);
    let space = Space::new(KERNEL, &dims)?;
    let vm = View::new(KERNEL, 0, &sm)?;
    let vv = View::new(KERNEL, 0, &sv)?;
    let vb = View::new(KERNEL, 0, &sb)?;
    let vg = View::new(KERNEL, 0, &sg)?;
    let [m, v, b, g] = [0, 1, 2, 3].map(|k| operands[k].ptr);
    let n = o.len as i64;
    let name = format!("batch_norm_{}", dtype_suffix(dtype));
    let cfg = device::grid_1d(o.len);
    if dtype == DType::F32 {
        // The CPU converts epsilon to the element type first (`T::from_f64`).
        let eps = epsilon as f32;
        crate::launch!(device, kernel(&name), cfg; o.ptr, xo.ptr, m, v, b, g, space, vm, vv, vb, vg, eps, n)
    } else {
        let eps = epsilon;
        crate::launch!(device, kernel(&name), cfg; o.ptr, xo.ptr, m, v, b, g, space, vm, vv, vb, vg, eps, n)
    }
}

// ----- shared checks and index helpers -----

/// The cpu backend's error for an argument of the wrong dtype.
fn wrong_dtype(kernel: &str, name: &str, got: DType, want: DType) -> BackendError {
    BackendError::invalid(format!("{kernel}: `{name}` is {got} but must be {want} here"))
}

/// An element-wise kernel may write into the buffer of its first input that is `out`, but only
/// under `out`'s shape (the cpu backend's rule for unary, binary and select's branches).
fn check_alias_shape(kernel: &str, inputs: &[(&str, &TensorRef<'_>)], out: &TensorRef<'_>) -> Result<()> {
    if let Some((name, t)) = inputs.iter().find(|(_, t)| t.buffer == out.buffer)
        && t.shape.as_slice() != out.shape.as_slice()
    {
        return Err(BackendError::invalid(format!(
            "{kernel}: out aliases `{name}` but their shapes differ ({:?} vs {:?}); in-place needs equal shapes",
            out.shape.as_slice(),
            t.shape.as_slice()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_bits_follow_the_cpu_conversions() {
        assert_eq!(fill_bits(DType::I32, 1e12), i32::MAX as u32 as u64);
        assert_eq!(fill_bits(DType::I32, -1e12), i32::MIN as u32 as u64);
        assert_eq!(fill_bits(DType::I32, -2.7), (-2i32) as u32 as u64);
        assert_eq!(fill_bits(DType::I64, f64::NAN), 0);
        assert_eq!(fill_bits(DType::I64, -1.0), u64::MAX);
        assert_eq!(fill_bits(DType::U8, -3.7), 0);
        assert_eq!(fill_bits(DType::U8, 300.0), 255);
        assert_eq!(fill_bits(DType::Bool, 0.5), 1);
        assert_eq!(fill_bits(DType::Bool, -0.0), 0);
        assert_eq!(fill_bits(DType::Bool, f64::NAN), 1);
        assert_eq!(fill_bits(DType::F32, 0.1), u64::from(0.1f32.to_bits()));
        assert_eq!(fill_bits(DType::F64, -2.5), (-2.5f64).to_bits());
        assert_eq!(fill_bits(DType::F16, 1.5), 0x3e00);
    }

    #[test]
    fn f16_bits_round_to_nearest_even() {
        let cases: &[(f32, u16)] = &[
            (0.0, 0x0000),
            (-0.0, 0x8000),
            (1.0, 0x3c00),
            (-2.0, 0xc000),
            (0.1, 0x2e66),
            (65504.0, 0x7bff),
            (65519.0, 0x7bff),
            (65520.0, 0x7c00),
            (1e10, 0x7c00),
            (f32::INFINITY, 0x7c00),
            (f32::NEG_INFINITY, 0xfc00),
            (f32::NAN, 0x7e00),
            (-f32::NAN, 0xfe00),
            // 1 + 2^-11 is a tie between 1 and 1 + 2^-10: even wins; just above it rounds up.
            (1.0 + 1.0 / 2048.0, 0x3c00),
            (1.0 + 3.0 / 2048.0, 0x3c02),
            (1.0 + 1.0 / 2048.0 + 1.0 / 8_388_608.0, 0x3c01),
            // Subnormals: 2^-24 is the smallest, 2^-25 ties to 0, 3·2^-25 ties to 2·2^-24.
            (2f32.powi(-24), 0x0001),
            (2f32.powi(-25), 0x0000),
            (3.0 * 2f32.powi(-25), 0x0002),
            (1023.0 * 2f32.powi(-24), 0x03ff),
            (2f32.powi(-14), 0x0400),
            (1e-10, 0x0000),
            (-1e-10, 0x8000),
        ];
        for &(value, bits) in cases {
            assert_eq!(f32_to_f16_bits(value), bits, "{value:e}");
        }
    }

    #[test]
    fn unary_dtype_table_matches_the_cpu() {
        assert!(unary_defined(UnaryOp::Exp, DType::F16));
        assert!(unary_defined(UnaryOp::Square, DType::U8));
        assert!(!unary_defined(UnaryOp::Exp, DType::I32));
        assert!(!unary_defined(UnaryOp::LogicalNot, DType::F32));
        assert!(unary_defined(UnaryOp::LogicalNot, DType::Bool));
        assert!(!unary_defined(UnaryOp::Neg, DType::Bool));
    }

    #[test]
    fn every_kernel_name_is_in_the_source() {
        let source = include_str!("../kernels/elementwise.cu");
        let has = |name: &str| source.contains(&format!("({name})")) || source.contains(&format!("({name},"));
        for op in [
            UnaryOp::Neg,
            UnaryOp::Abs,
            UnaryOp::Sign,
            UnaryOp::Square,
            UnaryOp::Sqrt,
            UnaryOp::Reciprocal,
            UnaryOp::Exp,
            UnaryOp::Expm1,
            UnaryOp::Log,
            UnaryOp::Log1p,
            UnaryOp::Sin,
            UnaryOp::Cos,
            UnaryOp::Tanh,
            UnaryOp::Sigmoid,
            UnaryOp::Softplus,
            UnaryOp::Softsign,
            UnaryOp::Round,
            UnaryOp::Floor,
            UnaryOp::Ceil,
        ] {
            assert!(source.contains(&format!("UNARY_FLOAT({})", unary_name(op))), "{op:?}");
        }
        for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Pow, BinaryOp::Mod] {
            assert!(source.contains(&format!("BINARY_ARITH({})", binary_name(op))), "{op:?}");
        }
        for op in [BinaryOp::Maximum, BinaryOp::Minimum] {
            assert!(source.contains(&format!("BINARY_ARITH({})", binary_name(op))), "{op:?}");
        }
        for op in [
            BinaryOp::Equal,
            BinaryOp::NotEqual,
            BinaryOp::Less,
            BinaryOp::LessEqual,
            BinaryOp::Greater,
            BinaryOp::GreaterEqual,
        ] {
            assert!(source.contains(&format!("BINARY_COMPARE({})", binary_name(op))), "{op:?}");
        }
        assert!(has("logical_and") && has("logical_or"));
        assert!(source.contains("logical_not_bool("));
    }
}
