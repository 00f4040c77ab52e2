//! Arithmetic operators on tensors: `&a + &b * 2.0`, `1.0 - &p`, `-&x`.
//!
//! Every operator builds a node and returns `Result<Tensor>`, so a shape mismatch surfaces at
//! the `?` that ends the expression. A `Result<Tensor>` may itself stand on either side next
//! to a tensor, which keeps chains such as `&b + &c * K::abs(&d)` free of intermediate `?`s
//! (Rust's orphan rule forbids `Result<Tensor>` beside a scalar or another `Result`: write
//! `(&a * &b)? + 1.0` there).
//! Scalars take the dtype of the tensor they meet.

use std::ops::{Add, Div, Mul, Neg, Sub};

use keras_backend_api::{BinaryOp, UnaryOp};

use crate::{
    error::{Error, Result},
    graph::Tensor,
    ops::{elementwise, source},
};

/// Something that can stand beside a tensor in an arithmetic expression.
pub trait Operand {
    /// The operand as a tensor; scalars take `like`'s dtype.
    fn into_tensor(self, like: &Tensor) -> Result<Tensor>;
}

impl Operand for Tensor {
    fn into_tensor(self, _like: &Tensor) -> Result<Tensor> {
        Ok(self)
    }
}

impl Operand for &Tensor {
    fn into_tensor(self, _like: &Tensor) -> Result<Tensor> {
        Ok(self.clone())
    }
}

impl Operand for Result<Tensor> {
    fn into_tensor(self, _like: &Tensor) -> Result<Tensor> {
        self
    }
}

macro_rules! scalar_operand {
    ($($ty:ty),*) => {$(
        impl Operand for $ty {
            fn into_tensor(self, like: &Tensor) -> Result<Tensor> {
                source::scalar(self as f64, like.dtype())
            }
        }
    )*};
}
scalar_operand!(f64, f32, i32);

fn apply(op: BinaryOp, symbol: &str, lhs: &Tensor, rhs: impl Operand) -> Result<Tensor> {
    let rhs = rhs.into_tensor(lhs)?;
    elementwise::binary(op, lhs, &rhs).map_err(|e| rename(e, symbol))
}

fn apply_scalar_lhs(op: BinaryOp, symbol: &str, lhs: f64, rhs: &Tensor) -> Result<Tensor> {
    let lhs = source::scalar(lhs, rhs.dtype())?;
    elementwise::binary(op, &lhs, rhs).map_err(|e| rename(e, symbol))
}

fn rename(error: Error, symbol: &str) -> Error {
    match error {
        Error::Graph { message, .. } => Error::graph(format!("operator {symbol}"), message),
        other => other,
    }
}

macro_rules! operator {
    ($Trait:ident, $method:ident, $op:expr, $symbol:literal) => {
        impl<R: Operand> $Trait<R> for &Tensor {
            type Output = Result<Tensor>;
            fn $method(self, rhs: R) -> Result<Tensor> {
                apply($op, $symbol, self, rhs)
            }
        }
        impl<R: Operand> $Trait<R> for Tensor {
            type Output = Result<Tensor>;
            fn $method(self, rhs: R) -> Result<Tensor> {
                apply($op, $symbol, &self, rhs)
            }
        }
        impl $Trait<&Tensor> for Result<Tensor> {
            type Output = Result<Tensor>;
            fn $method(self, rhs: &Tensor) -> Result<Tensor> {
                apply($op, $symbol, &self?, rhs)
            }
        }
        impl $Trait<Tensor> for Result<Tensor> {
            type Output = Result<Tensor>;
            fn $method(self, rhs: Tensor) -> Result<Tensor> {
                apply($op, $symbol, &self?, rhs)
            }
        }
        operator!(@scalar $Trait, $method, $op, $symbol, f64);
    };
    (@scalar $Trait:ident, $method:ident, $op:expr, $symbol:literal, $($ty:ty),*) => {$(
        impl $Trait<&Tensor> for $ty {
            type Output = Result<Tensor>;
            fn $method(self, rhs: &Tensor) -> Result<Tensor> {
                apply_scalar_lhs($op, $symbol, self as f64, rhs)
            }
        }
        impl $Trait<Tensor> for $ty {
            type Output = Result<Tensor>;
            fn $method(self, rhs: Tensor) -> Result<Tensor> {
                apply_scalar_lhs($op, $symbol, self as f64, &rhs)
            }
        }
    )*};
}

operator!(Add, add, BinaryOp::Add, "+");
operator!(Sub, sub, BinaryOp::Sub, "-");
operator!(Mul, mul, BinaryOp::Mul, "*");
operator!(Div, div, BinaryOp::Div, "/");

impl Neg for &Tensor {
    type Output = Result<Tensor>;
    fn neg(self) -> Result<Tensor> {
        elementwise::unary(UnaryOp::Neg, self).map_err(|e| rename(e, "-"))
    }
}

impl Neg for Tensor {
    type Output = Result<Tensor>;
    fn neg(self) -> Result<Tensor> {
        -&self
    }
}
