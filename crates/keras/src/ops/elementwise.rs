//! Element-wise primitives: unary and binary maths with NumPy broadcasting, select, cast, and
//! the broadcast / sum-to pair (each the other's adjoint).

use keras_backend_api::{BinaryOp, DType, UnaryOp};

use super::{Inferred, Op, shapes_of, source};
use crate::{
    error::Result,
    graph::{Dim, Tensor},
};

pub(crate) fn unary(op: UnaryOp, x: &Tensor) -> Result<Tensor> {
    Tensor::new(Op::Unary(op), vec![x.clone()])
}

pub(crate) fn binary(op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Tensor::new(Op::Binary(op), vec![a.clone(), b.clone()])
}

pub(crate) fn select(cond: &Tensor, on_true: &Tensor, on_false: &Tensor) -> Result<Tensor> {
    Tensor::new(Op::Select, vec![cond.clone(), on_true.clone(), on_false.clone()])
}

pub(crate) fn cast(x: &Tensor, dtype: DType) -> Result<Tensor> {
    if x.dtype() == dtype {
        return Ok(x.clone());
    }
    Tensor::new(Op::Cast(dtype), vec![x.clone()])
}

/// `x` broadcast to `like`'s shape; `x` itself when the shapes are already known equal.
pub(crate) fn broadcast_like(x: &Tensor, like: &Tensor) -> Result<Tensor> {
    if same_known_shape(x, like) {
        return Ok(x.clone());
    }
    Tensor::new(Op::BroadcastLike, vec![x.clone(), like.clone()])
}

/// `x` summed down to `like`'s shape (which `x`'s must broadcast from); `x` itself when the
/// shapes are already known equal.
pub(crate) fn sum_to_like(x: &Tensor, like: &Tensor) -> Result<Tensor> {
    if same_known_shape(x, like) {
        return Ok(x.clone());
    }
    Tensor::new(Op::SumToLike, vec![x.clone(), like.clone()])
}

fn same_known_shape(a: &Tensor, b: &Tensor) -> bool {
    a.shape() == b.shape() && a.shape().iter().all(Option::is_some)
}

/// NumPy broadcasting over partially known shapes. An unknown dim against a known one `n > 1`
/// is taken to be `n` (anything else fails when the graph is specialised).
pub(crate) fn broadcast_dims(a: &[Dim], b: &[Dim]) -> std::result::Result<Vec<Dim>, String> {
    let rank = a.len().max(b.len());
    let at = |s: &[Dim], i: usize| if i + s.len() >= rank { s[i + s.len() - rank] } else { Some(1) };
    (0..rank)
        .map(|i| match (at(a, i), at(b, i)) {
            (Some(1), d) | (d, Some(1)) => Ok(d),
            (Some(x), Some(y)) if x == y => Ok(Some(x)),
            (Some(_), Some(_)) => Err(format!(
                "shapes {} and {} do not broadcast",
                crate::graph::shape_string(a),
                crate::graph::shape_string(b)
            )),
            (None, d) | (d, None) => Ok(d),
        })
        .collect()
}

/// Whether `from` can be broadcast to `to` (used by sum-to); unknown dims are accepted.
fn broadcasts_to(from: &[Dim], to: &[Dim]) -> bool {
    from.len() <= to.len()
        && from.iter().rev().zip(to.iter().rev()).all(|(f, t)| match (f, t) {
            (Some(1), _) | (None, _) | (_, None) => true,
            (Some(f), Some(t)) => f == t,
        })
}

fn unary_dtype_ok(op: UnaryOp, dtype: DType) -> bool {
    match op {
        UnaryOp::LogicalNot => dtype == DType::Bool,
        UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Sign | UnaryOp::Square => {
            dtype.is_float() || matches!(dtype, DType::I32 | DType::I64)
        }
        _ => dtype.is_float(),
    }
}

pub(crate) fn infer(op: &Op, inputs: &[Tensor]) -> Inferred {
    match op {
        Op::Unary(u) => {
            let x = &inputs[0];
            if !unary_dtype_ok(*u, x.dtype()) {
                return Err(format!("{u:?} is not defined for {} (input {})", x.dtype(), x.describe()));
            }
            Ok((x.shape().to_vec(), x.dtype()))
        }
        Op::Binary(b) => {
            let (x, y) = (&inputs[0], &inputs[1]);
            if x.dtype() != y.dtype() {
                return Err(format!(
                    "{b:?} needs one dtype, got {} {} and {} {}",
                    x.describe(),
                    x.dtype(),
                    y.describe(),
                    y.dtype()
                ));
            }
            let logical = matches!(b, BinaryOp::LogicalAnd | BinaryOp::LogicalOr);
            if logical != (x.dtype() == DType::Bool) {
                return Err(format!("{b:?} is not defined for {}", x.dtype()));
            }
            let shape = broadcast_dims(x.shape(), y.shape())?;
            let dtype = if b.is_comparison() { DType::Bool } else { x.dtype() };
            Ok((shape, dtype))
        }
        Op::Select => {
            let (cond, a, b) = (&inputs[0], &inputs[1], &inputs[2]);
            if cond.dtype() != DType::Bool {
                return Err(format!("the condition must be bool, got {}", cond.dtype()));
            }
            if a.dtype() != b.dtype() {
                return Err(format!("both branches need one dtype, got {} and {}", a.dtype(), b.dtype()));
            }
            let shape = broadcast_dims(&broadcast_dims(cond.shape(), a.shape())?, b.shape())?;
            Ok((shape, a.dtype()))
        }
        Op::Cast(dtype) => Ok((inputs[0].shape().to_vec(), *dtype)),
        Op::BroadcastLike => {
            let (x, like) = (&inputs[0], &inputs[1]);
            if !broadcasts_to(x.shape(), like.shape()) {
                return Err(format!("cannot broadcast {}", shapes_of(inputs)));
            }
            Ok((like.shape().to_vec(), x.dtype()))
        }
        Op::SumToLike => {
            let (x, like) = (&inputs[0], &inputs[1]);
            if !broadcasts_to(like.shape(), x.shape()) {
                return Err(format!("cannot sum {} down to {}", shapes_of(&inputs[..1]), shapes_of(&inputs[1..])));
            }
            Ok((like.shape().to_vec(), x.dtype()))
        }
        _ => unreachable!("not an element-wise op"),
    }
}

pub(crate) fn vjp(op: &Op, inputs: &[Tensor], y: &Tensor, dy: &Tensor) -> Result<Vec<Option<Tensor>>> {
    use BinaryOp as B;
    use UnaryOp as U;
    let mul = |a: &Tensor, b: &Tensor| binary(B::Mul, a, b);
    let div = |a: &Tensor, b: &Tensor| binary(B::Div, a, b);
    let scalar = |v: f64, like: &Tensor| source::scalar(v, like.dtype());
    match op {
        Op::Unary(u) => {
            let x = &inputs[0];
            if !x.dtype().is_float() {
                return Ok(vec![None]);
            }
            let dx = match u {
                U::Neg => unary(U::Neg, dy)?,
                U::Abs => mul(dy, &unary(U::Sign, x)?)?,
                U::Square => mul(dy, &mul(x, &scalar(2.0, x)?)?)?,
                U::Sqrt => div(dy, &mul(y, &scalar(2.0, x)?)?)?,
                U::Reciprocal => unary(U::Neg, &mul(dy, &unary(U::Square, y)?)?)?,
                U::Exp => mul(dy, y)?,
                U::Expm1 => mul(dy, &binary(B::Add, y, &scalar(1.0, x)?)?)?,
                U::Log1p => div(dy, &binary(B::Add, x, &scalar(1.0, x)?)?)?,
                U::Log => div(dy, x)?,
                U::Sin => mul(dy, &unary(U::Cos, x)?)?,
                U::Cos => unary(U::Neg, &mul(dy, &unary(U::Sin, x)?)?)?,
                U::Tanh => mul(dy, &binary(B::Sub, &scalar(1.0, x)?, &unary(U::Square, y)?)?)?,
                U::Sigmoid => mul(dy, &mul(y, &binary(B::Sub, &scalar(1.0, x)?, y)?)?)?,
                U::Softplus => mul(dy, &unary(U::Sigmoid, x)?)?,
                U::Softsign => {
                    let denominator = binary(B::Add, &scalar(1.0, x)?, &unary(U::Abs, x)?)?;
                    div(dy, &unary(U::Square, &denominator)?)?
                }
                // Piecewise constant: zero almost everywhere, as TensorFlow treats them.
                U::Sign | U::Round | U::Floor | U::Ceil | U::LogicalNot => return Ok(vec![None]),
            };
            Ok(vec![Some(dx)])
        }
        Op::Binary(b) => {
            let (a, c) = (&inputs[0], &inputs[1]);
            if !a.dtype().is_float() || b.is_comparison() {
                return Ok(vec![None, None]);
            }
            let (da, dc) = match b {
                B::Add => (dy.clone(), dy.clone()),
                B::Sub => (dy.clone(), unary(U::Neg, dy)?),
                B::Mul => (mul(dy, c)?, mul(dy, a)?),
                B::Div => {
                    let da = div(dy, c)?;
                    (da.clone(), unary(U::Neg, &mul(&da, &div(a, c)?)?)?)
                }
                B::Pow => {
                    let exponent_less_one = binary(B::Sub, c, &scalar(1.0, c)?)?;
                    let da = mul(dy, &mul(c, &binary(B::Pow, a, &exponent_less_one)?)?)?;
                    // d/dc a^c = a^c·log a, taken as 0 where a <= 0 (TensorFlow's convention).
                    let positive = binary(B::Greater, a, &scalar(0.0, a)?)?;
                    let safe_log = unary(U::Log, &select(&positive, a, &scalar(1.0, a)?)?)?;
                    (da, mul(dy, &mul(y, &safe_log)?)?)
                }
                B::Maximum | B::Minimum => {
                    let compare = if *b == B::Maximum { B::GreaterEqual } else { B::LessEqual };
                    let a_wins = binary(compare, a, c)?;
                    let zero = scalar(0.0, dy)?;
                    (select(&a_wins, dy, &zero)?, select(&a_wins, &zero, dy)?)
                }
                B::Mod => (dy.clone(), unary(U::Neg, &mul(dy, &unary(U::Floor, &div(a, c)?)?)?)?),
                _ => return Ok(vec![None, None]),
            };
            Ok(vec![Some(sum_to_like(&da, a)?), Some(sum_to_like(&dc, c)?)])
        }
        Op::Select => {
            let (cond, a, b) = (&inputs[0], &inputs[1], &inputs[2]);
            if !a.dtype().is_float() {
                return Ok(vec![None, None, None]);
            }
            let zero = scalar(0.0, dy)?;
            let da = sum_to_like(&select(cond, dy, &zero)?, a)?;
            let db = sum_to_like(&select(cond, &zero, dy)?, b)?;
            Ok(vec![None, Some(da), Some(db)])
        }
        Op::Cast(_) => {
            let x = &inputs[0];
            let differentiable = x.dtype().is_float() && y.dtype().is_float();
            Ok(vec![if differentiable { Some(cast(dy, x.dtype())?) } else { None }])
        }
        Op::BroadcastLike => Ok(vec![Some(sum_to_like(dy, &inputs[0])?), None]),
        Op::SumToLike => Ok(vec![Some(broadcast_like(dy, &inputs[0])?), None]),
        _ => unreachable!("not an element-wise op"),
    }
}
