//! Element-wise mathematics, comparisons and reductions.

use keras_backend_api::{ArgReduceOp, BinaryOp, DType, ReduceOp, UnaryOp};

use crate::{
    error::{Error, Result},
    graph::Tensor,
    ops::{
        elementwise::{binary, cast as cast_op, select, unary},
        normalize_axis,
        reduce::{arg_reduce, reduce},
        source,
    },
};

/// The axes a reduction runs over: all of them, or a list (negative values count from the end).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Axes {
    /// Every axis (Keras's `axis=None`).
    All,
    /// These axes.
    Some(Vec<isize>),
}

macro_rules! axes_from_int {
    ($($ty:ty),*) => {$(
        impl From<$ty> for Axes {
            fn from(axis: $ty) -> Axes {
                Axes::Some(vec![axis as isize])
            }
        }
        impl<const N: usize> From<[$ty; N]> for Axes {
            fn from(axes: [$ty; N]) -> Axes {
                Axes::Some(axes.iter().map(|&a| a as isize).collect())
            }
        }
        impl From<&[$ty]> for Axes {
            fn from(axes: &[$ty]) -> Axes {
                Axes::Some(axes.iter().map(|&a| a as isize).collect())
            }
        }
        impl From<Vec<$ty>> for Axes {
            fn from(axes: Vec<$ty>) -> Axes {
                Axes::Some(axes.iter().map(|&a| a as isize).collect())
            }
        }
        impl From<Option<$ty>> for Axes {
            fn from(axis: Option<$ty>) -> Axes {
                axis.map_or(Axes::All, |a| Axes::Some(vec![a as isize]))
            }
        }
    )*};
}
axes_from_int!(i32, i64, isize, usize);

impl Axes {
    /// The distinct, non-negative axes of `x` (sorted).
    pub(crate) fn resolve(&self, function: &str, x: &Tensor) -> Result<Vec<usize>> {
        let rank = x.ndim();
        let refuse = |m: String| Error::graph(function, format!("{m} (input {})", x.describe()));
        let mut axes = match self {
            Axes::All => (0..rank).collect(),
            Axes::Some(list) => list
                .iter()
                .map(|&a| normalize_axis(a, rank))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(refuse)?,
        };
        axes.sort_unstable();
        if axes.windows(2).any(|w| w[0] == w[1]) {
            return Err(refuse(format!("axis {self:?} lists an axis twice")));
        }
        Ok(axes)
    }
}

/// Resolves one axis of `x` (Python's negative rule), naming `function` in the error.
pub(crate) fn axis_of(function: &str, x: &Tensor, axis: isize) -> Result<usize> {
    normalize_axis(axis, x.ndim()).map_err(|m| Error::graph(function, format!("{m} (input {})", x.describe())))
}

/// Renames a primitive's error after the K function that built it.
pub(crate) fn named<T>(function: &str, result: Result<T>) -> Result<T> {
    result.map_err(|e| match e {
        Error::Graph { function: primitive, message } if primitive != function => {
            Error::graph(function, format!("{primitive}: {message}"))
        }
        other => other,
    })
}

fn scalar_like(value: f64, x: &Tensor) -> Result<Tensor> {
    source::scalar(value, x.dtype())
}

macro_rules! unary_fn {
    ($($(#[$doc:meta])* $name:ident => $op:ident;)*) => {$(
        $(#[$doc])*
        pub fn $name(x: &Tensor) -> Result<Tensor> {
            named(stringify!($name), unary(UnaryOp::$op, x))
        }
    )*};
}

unary_fn! {
    /// Element-wise absolute value.
    abs => Abs;
    /// Element-wise square.
    square => Square;
    /// Element-wise exponential.
    exp => Exp;
    /// Element-wise natural logarithm (`log(0) = -inf`).
    log => Log;
    /// Element-wise rounding to the nearest integer, halves to even.
    round => Round;
    /// Element-wise sign: -1, 0 or 1.
    sign => Sign;
    /// Element-wise sine.
    sin => Sin;
    /// Element-wise cosine.
    cos => Cos;
    /// Element-wise hyperbolic tangent.
    tanh => Tanh;
    /// Element-wise logistic sigmoid `1 / (1 + exp(-x))`.
    sigmoid => Sigmoid;
    /// Element-wise `log(1 + exp(x))`, without overflow.
    softplus => Softplus;
    /// Element-wise `x / (1 + |x|)`.
    softsign => Softsign;
}

/// Element-wise square root of `max(x, 0)` (negative inputs give 0, as in Keras).
pub fn sqrt(x: &Tensor) -> Result<Tensor> {
    named("sqrt", unary(UnaryOp::Sqrt, &binary(BinaryOp::Maximum, x, &scalar_like(0.0, x)?)?))
}

/// Element-wise `x ** a`.
pub fn pow(x: &Tensor, a: f64) -> Result<Tensor> {
    named("pow", binary(BinaryOp::Pow, x, &scalar_like(a, x)?))
}

/// Element-wise `min(max(x, min_value), max_value)`; a `max_value` below `min_value` is
/// raised to it first, and `None` means no upper bound (Keras's rules).
pub fn clip(x: &Tensor, min_value: f64, max_value: Option<f64>) -> Result<Tensor> {
    let max_value = max_value.unwrap_or(f64::INFINITY).max(min_value);
    let lower = binary(BinaryOp::Maximum, x, &scalar_like(min_value, x)?);
    named("clip", binary(BinaryOp::Minimum, &lower?, &scalar_like(max_value, x)?))
}

/// `clip(0.2·x + 0.5, 0, 1)`.
pub fn hard_sigmoid(x: &Tensor) -> Result<Tensor> {
    clip(&((x * 0.2) + &scalar_like(0.5, x)?)?, 0.0, Some(1.0))
}

/// Rectified linear unit: `min(max(x, 0), max_value) + alpha · min(x, 0)`.
///
/// Built from selects on `x <= 0` and `x < 0` rather than `maximum`, so that the derivative at
/// 0 is 0 as TensorFlow's `relu` has it (a `maximum` tie would pass the gradient to both sides),
/// and a NaN stays NaN as in TensorFlow (every comparison with NaN is false).
pub fn relu(x: &Tensor, alpha: f64, max_value: Option<f64>) -> Result<Tensor> {
    let zero = scalar_like(0.0, x)?;
    let mut y = select(&binary(BinaryOp::LessEqual, x, &zero)?, &zero, x)?;
    if let Some(max_value) = max_value {
        y = binary(BinaryOp::Minimum, &y, &scalar_like(max_value, x)?)?;
    }
    if alpha != 0.0 {
        let negative_part = select(&binary(BinaryOp::Less, x, &zero)?, x, &zero)?;
        y = (&y + (&negative_part * alpha))?;
    }
    named("relu", Ok(y))
}

/// Exponential linear unit: `x` for `x > 0`, else `alpha · (exp(x) - 1)`.
pub fn elu(x: &Tensor, alpha: f64) -> Result<Tensor> {
    let positive = binary(BinaryOp::Greater, x, &scalar_like(0.0, x)?)?;
    // exp of the negative part only, so large positive inputs cannot overflow into the
    // unused branch (an inf there would poison the gradient).
    let negative_part = binary(BinaryOp::Minimum, x, &scalar_like(0.0, x)?)?;
    let exp_branch = ((exp(&negative_part)? - 1.0)? * alpha)?;
    named("elu", select(&positive, x, &exp_branch))
}

macro_rules! binary_fn {
    ($($(#[$doc:meta])* $name:ident => $op:ident;)*) => {$(
        $(#[$doc])*
        pub fn $name(x: &Tensor, y: &Tensor) -> Result<Tensor> {
            named(stringify!($name), binary(BinaryOp::$op, x, y))
        }
    )*};
}

binary_fn! {
    /// Element-wise maximum (NumPy broadcasting).
    maximum => Maximum;
    /// Element-wise minimum.
    minimum => Minimum;
    /// Element-wise `x == y` (bool).
    equal => Equal;
    /// Element-wise `x != y` (bool).
    not_equal => NotEqual;
    /// Element-wise `x > y` (bool).
    greater => Greater;
    /// Element-wise `x >= y` (bool).
    greater_equal => GreaterEqual;
    /// Element-wise `x < y` (bool).
    lesser => Less;
    /// Element-wise `x <= y` (bool).
    lesser_equal => LessEqual;
}

/// `x` converted to `dtype` (float to integer truncates toward zero).
pub fn cast(x: &Tensor, dtype: DType) -> Result<Tensor> {
    named("cast", cast_op(x, dtype))
}

fn reduction(function: &str, op: ReduceOp, x: &Tensor, axis: Axes, keepdims: bool) -> Result<Tensor> {
    let axes = axis.resolve(function, x)?;
    named(function, reduce(op, x, &axes, keepdims))
}

/// Sum over `axis` ([`Axes::All`], an axis or a list of axes).
pub fn sum(x: &Tensor, axis: impl Into<Axes>, keepdims: bool) -> Result<Tensor> {
    reduction("sum", ReduceOp::Sum, x, axis.into(), keepdims)
}

/// Product over `axis`.
pub fn prod(x: &Tensor, axis: impl Into<Axes>, keepdims: bool) -> Result<Tensor> {
    reduction("prod", ReduceOp::Prod, x, axis.into(), keepdims)
}

/// Maximum over `axis`.
pub fn max(x: &Tensor, axis: impl Into<Axes>, keepdims: bool) -> Result<Tensor> {
    reduction("max", ReduceOp::Max, x, axis.into(), keepdims)
}

/// Minimum over `axis`.
pub fn min(x: &Tensor, axis: impl Into<Axes>, keepdims: bool) -> Result<Tensor> {
    reduction("min", ReduceOp::Min, x, axis.into(), keepdims)
}

/// Mean over `axis`; an integer tensor stays integer, truncated toward zero (TensorFlow's rule).
pub fn mean(x: &Tensor, axis: impl Into<Axes>, keepdims: bool) -> Result<Tensor> {
    reduction("mean", ReduceOp::Mean, x, axis.into(), keepdims)
}

/// Population variance over `axis` (dividing by n).
pub fn var(x: &Tensor, axis: impl Into<Axes>, keepdims: bool) -> Result<Tensor> {
    let axes = axis.into().resolve("var", x)?;
    let centred = (x - reduce(ReduceOp::Mean, x, &axes, true)?)?;
    named("var", reduce(ReduceOp::Mean, &unary(UnaryOp::Square, &centred)?, &axes, keepdims))
}

/// Population standard deviation over `axis`.
pub fn std(x: &Tensor, axis: impl Into<Axes>, keepdims: bool) -> Result<Tensor> {
    named("std", unary(UnaryOp::Sqrt, &var(x, axis, keepdims)?))
}

fn logical(function: &str, op: ReduceOp, x: &Tensor, axis: Axes, keepdims: bool) -> Result<Tensor> {
    let truth = if x.dtype() == DType::Bool { x.clone() } else { cast_op(x, DType::Bool)? };
    // TensorFlow's Keras returns uint8 0/1.
    cast_op(&reduction(function, op, &truth, axis, keepdims)?, DType::U8)
}

/// Whether any element over `axis` is non-zero (`uint8` 0/1, as TensorFlow's Keras).
pub fn any(x: &Tensor, axis: impl Into<Axes>, keepdims: bool) -> Result<Tensor> {
    logical("any", ReduceOp::Any, x, axis.into(), keepdims)
}

/// Whether every element over `axis` is non-zero (`uint8` 0/1).
pub fn all(x: &Tensor, axis: impl Into<Axes>, keepdims: bool) -> Result<Tensor> {
    logical("all", ReduceOp::All, x, axis.into(), keepdims)
}

/// Index of the largest element along `axis` (the first on ties), `int64`.
pub fn argmax(x: &Tensor, axis: isize) -> Result<Tensor> {
    named("argmax", arg_reduce(ArgReduceOp::ArgMax, x, axis_of("argmax", x, axis)?))
}

/// Index of the smallest element along `axis` (the first on ties), `int64`.
pub fn argmin(x: &Tensor, axis: isize) -> Result<Tensor> {
    named("argmin", arg_reduce(ArgReduceOp::ArgMin, x, axis_of("argmin", x, axis)?))
}
