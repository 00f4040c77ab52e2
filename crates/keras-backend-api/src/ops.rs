//! The primitive kernel set: one closed enum per family, plus the parameter structs.
//!
//! Adding a variant to any enum here changes the type layout, so it is a MAJOR contract change
//! (see the crate docs). Each family documents its exact semantics; a backend is correct when
//! it matches them, and `keras`'s conformance suite checks that it does.

use abi_stable::{StableAbi, std_types::RSlice};

use crate::{BackendError, DType};

/// Element-wise functions of one argument. `out` has the shape of `x`.
///
/// All float ops are defined for `F32` and `F64` (`F16` optional). `Neg`, `Abs`, `Sign` and
/// `Square` are also defined on `I32` and `I64`; `LogicalNot` only on `Bool`. `out` has the
/// dtype of `x`.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// `-x`.
    Neg,
    /// `|x|`.
    Abs,
    /// -1, 0 or 1 (NaN stays NaN).
    Sign,
    /// `x * x`.
    Square,
    /// `√x` (NaN for negative x).
    Sqrt,
    /// `1 / x`.
    Reciprocal,
    /// `eˣ`.
    Exp,
    /// `eˣ - 1`, accurate near 0.
    Expm1,
    /// Natural logarithm.
    Log,
    /// `ln(1 + x)`, accurate near 0.
    Log1p,
    /// Sine.
    Sin,
    /// Cosine.
    Cos,
    /// Hyperbolic tangent.
    Tanh,
    /// `1 / (1 + e⁻ˣ)`, computed without overflow for large |x|.
    Sigmoid,
    /// `ln(1 + eˣ)`, computed without overflow for large x.
    Softplus,
    /// `x / (1 + |x|)`.
    Softsign,
    /// Round half to even (NumPy's `round`, TensorFlow's `round`).
    Round,
    /// Largest integer not above x.
    Floor,
    /// Smallest integer not below x.
    Ceil,
    /// Logical negation of a `Bool` tensor.
    LogicalNot,
}

/// Element-wise functions of two arguments with NumPy broadcasting.
///
/// `out` has the broadcast shape of `a` and `b` (see [`crate::shape::broadcast`]). Both inputs
/// have the same dtype. Arithmetic ops produce that dtype; comparisons produce `Bool`;
/// `LogicalAnd`/`LogicalOr` take and produce `Bool`. Integer `Div` truncates toward zero and
/// a zero divisor is an `InvalidArgument` error; `Mod` is floored (the sign of the divisor,
/// like NumPy and TensorFlow's `floormod`).
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `a / b`.
    Div,
    /// `aᵇ`.
    Pow,
    /// Larger of the two; NaN if either is NaN.
    Maximum,
    /// Smaller of the two; NaN if either is NaN.
    Minimum,
    /// Floored remainder.
    Mod,
    /// `a == b`.
    Equal,
    /// `a != b`.
    NotEqual,
    /// `a < b`.
    Less,
    /// `a <= b`.
    LessEqual,
    /// `a > b`.
    Greater,
    /// `a >= b`.
    GreaterEqual,
    /// `a && b` on `Bool`.
    LogicalAnd,
    /// `a || b` on `Bool`.
    LogicalOr,
}

impl BinaryOp {
    /// `true` for the ops whose output dtype is `Bool` whatever the input dtype.
    pub const fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Equal
                | BinaryOp::NotEqual
                | BinaryOp::Less
                | BinaryOp::LessEqual
                | BinaryOp::Greater
                | BinaryOp::GreaterEqual
        )
    }

    /// `true` for `LogicalAnd` and `LogicalOr`, which take and produce `Bool`.
    pub const fn is_logical(self) -> bool {
        matches!(self, BinaryOp::LogicalAnd | BinaryOp::LogicalOr)
    }

    /// The dtype of `out` for inputs of dtype `input`: `Bool` for comparisons and logical
    /// ops, `input` otherwise.
    pub const fn output_dtype(self, input: DType) -> DType {
        if self.is_comparison() || self.is_logical() { DType::Bool } else { input }
    }

    /// Checks the dtypes of one [`Backend::binary`](crate::Backend::binary) call: `a` and `b`
    /// equal, `Bool` for the logical ops and not `Bool` for arithmetic, and `out` the dtype
    /// the op produces ([`output_dtype`](Self::output_dtype)). The error is an
    /// `InvalidArgument` prefixed with `kernel`.
    pub fn check_dtypes(self, kernel: &str, a: DType, b: DType, out: DType) -> Result<(), BackendError> {
        if a != b {
            return Err(BackendError::invalid(format!("{kernel}: `a` is {a} but `b` is {b}; they must match")));
        }
        if self.is_logical() && a != DType::Bool {
            return Err(BackendError::invalid(format!("{kernel}: takes bool tensors, got {a}")));
        }
        if !self.is_comparison() && !self.is_logical() && a == DType::Bool {
            return Err(BackendError::invalid(format!("{kernel}: arithmetic is not defined for bool tensors")));
        }
        let want = self.output_dtype(a);
        if out != want {
            return Err(BackendError::invalid(format!("{kernel}: out is {out} but {self:?} on {a} produces {want}")));
        }
        Ok(())
    }
}

/// Reductions over a set of axes.
///
/// `Sum`, `Prod`, `Max`, `Min` and `Mean` keep the input dtype (`Mean` of an integer tensor
/// truncates, as TensorFlow does); `Any` and `All` take and produce `Bool`. Reducing an empty
/// axis gives the identity (0, 1, -∞, +∞, NaN for `Mean`, false, true).
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// Sum.
    Sum,
    /// Product.
    Prod,
    /// Maximum (NaN propagates).
    Max,
    /// Minimum (NaN propagates).
    Min,
    /// Arithmetic mean.
    Mean,
    /// Logical or.
    Any,
    /// Logical and.
    All,
}

/// Index of the extreme value along one axis; ties give the first index. Output is `I64` or
/// `I32` (the backend writes whichever dtype `out` has).
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArgReduceOp {
    /// Index of the maximum.
    ArgMax,
    /// Index of the minimum.
    ArgMin,
}

/// Where the channel axis of an image tensor sits.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// `(batch, channels, spatial...)`; Keras `th`. Kernels are `(out, in/groups, k...)`.
    ChannelsFirst,
    /// `(batch, spatial..., channels)`; Keras `tf`. Kernels are `(k..., in/groups, out)`.
    ChannelsLast,
}

/// Parameters of an N-d convolution (N = 1, 2 or 3 spatial dims, given by the input rank - 2).
///
/// The operation is a cross-correlation (the kernel is not flipped):
/// `out[b, o, p] = Σ_{c, k} x[b, g·C/G + c, p·stride + k·dilation - pad_before] · w[o, c, k]`
/// where `g = o / (O/G)` is the group of output channel `o`, positions outside the input read 0,
/// and each output length is [`crate::shape::conv_output_len`]. Every slice has N entries.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct ConvParams<'a> {
    /// Channel position of input, output and kernel.
    pub layout: Layout,
    /// Step between output positions, per spatial dim (≥ 1).
    pub strides: RSlice<'a, usize>,
    /// Spacing between kernel taps, per spatial dim (≥ 1; 1 is a dense kernel).
    pub dilation: RSlice<'a, usize>,
    /// Implicit zeros before each spatial dim.
    pub pad_before: RSlice<'a, usize>,
    /// Implicit zeros after each spatial dim.
    pub pad_after: RSlice<'a, usize>,
    /// Feature groups G (1 for an ordinary convolution, `in` for a depthwise one). Both the
    /// input and output channel counts must be multiples of it.
    pub groups: usize,
}

/// Pooling reduction.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolMode {
    /// Maximum over the window; padding never wins. Backward sends the gradient to the first
    /// maximal element of each window.
    Max,
    /// Mean over the window's positions that lie inside the input (padding is excluded from
    /// the count, as TensorFlow does).
    Avg,
}

/// Parameters of an N-d pooling (N = input rank - 2). Each output length is
/// [`crate::shape::conv_output_len`] with dilation 1. Every slice has N entries.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct PoolParams<'a> {
    /// Max or average.
    pub mode: PoolMode,
    /// Channel position.
    pub layout: Layout,
    /// Window extent per spatial dim.
    pub window: RSlice<'a, usize>,
    /// Step between windows per spatial dim.
    pub strides: RSlice<'a, usize>,
    /// Padding before each spatial dim (never part of a window's value).
    pub pad_before: RSlice<'a, usize>,
    /// Padding after each spatial dim.
    pub pad_after: RSlice<'a, usize>,
}

/// A distribution for [`Backend::random`](crate::Backend::random). The stream is defined
/// bit-exactly by [`crate::random`], so every backend draws the same numbers.
#[repr(C, u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq)]
pub enum Distribution {
    /// Uniform on `[low, high)`.
    Uniform {
        /// Lower bound.
        low: f64,
        /// Upper bound.
        high: f64,
    },
    /// Normal with `mean` and standard deviation `stddev` (Box-Muller).
    Normal {
        /// Mean.
        mean: f64,
        /// Standard deviation.
        stddev: f64,
    },
    /// 1 with probability `p`, else 0.
    Bernoulli {
        /// Probability of a 1.
        p: f64,
    },
}

impl Distribution {
    /// Checks that the parameters lie in the distribution's domain, NaN excluded: `low ≤ high`,
    /// `stddev ≥ 0`, `0 ≤ p ≤ 1`. The error is the `InvalidArgument` that
    /// [`Backend::random`](crate::Backend::random) returns, `random(<dist>): <problem>`.
    pub fn check(self) -> Result<(), BackendError> {
        let problem = match self {
            Distribution::Uniform { low, high } if high.partial_cmp(&low).is_none_or(|o| o.is_lt()) => {
                format!("high {high} is below low {low}")
            }
            Distribution::Normal { stddev, .. } if stddev.partial_cmp(&0.0).is_none_or(|o| o.is_lt()) => {
                format!("stddev {stddev} is negative")
            }
            Distribution::Bernoulli { p } if !(0.0..=1.0).contains(&p) => format!("p {p} is outside [0, 1]"),
            _ => return Ok(()),
        };
        Err(BackendError::invalid(format!("random({self:?}): {problem}")))
    }
}

/// One entry per kernel of [`Backend`](crate::Backend), for capability queries.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// [`Backend::fill`](crate::Backend::fill).
    Fill,
    /// [`Backend::unary`](crate::Backend::unary).
    Unary,
    /// [`Backend::binary`](crate::Backend::binary).
    Binary,
    /// [`Backend::select`](crate::Backend::select).
    Select,
    /// [`Backend::cast`](crate::Backend::cast).
    Cast,
    /// [`Backend::reduce`](crate::Backend::reduce).
    Reduce,
    /// [`Backend::arg_reduce`](crate::Backend::arg_reduce).
    ArgReduce,
    /// [`Backend::matmul`](crate::Backend::matmul).
    Matmul,
    /// [`Backend::permute`](crate::Backend::permute).
    Permute,
    /// [`Backend::slice`](crate::Backend::slice).
    Slice,
    /// [`Backend::concat`](crate::Backend::concat).
    Concat,
    /// [`Backend::pad`](crate::Backend::pad).
    Pad,
    /// [`Backend::reverse`](crate::Backend::reverse).
    Reverse,
    /// [`Backend::gather`](crate::Backend::gather).
    Gather,
    /// [`Backend::scatter_add`](crate::Backend::scatter_add).
    ScatterAdd,
    /// [`Backend::tile`](crate::Backend::tile).
    Tile,
    /// [`Backend::repeat`](crate::Backend::repeat).
    Repeat,
    /// [`Backend::one_hot`](crate::Backend::one_hot).
    OneHot,
    /// [`Backend::conv`](crate::Backend::conv).
    Conv,
    /// [`Backend::conv_backward_data`](crate::Backend::conv_backward_data).
    ConvBackwardData,
    /// [`Backend::conv_backward_filter`](crate::Backend::conv_backward_filter).
    ConvBackwardFilter,
    /// [`Backend::pool`](crate::Backend::pool).
    Pool,
    /// [`Backend::pool_backward`](crate::Backend::pool_backward).
    PoolBackward,
    /// [`Backend::resize_nearest`](crate::Backend::resize_nearest).
    ResizeNearest,
    /// [`Backend::random`](crate::Backend::random).
    Random,
    /// [`Backend::softmax`](crate::Backend::softmax) (fused, optional).
    Softmax,
    /// [`Backend::batch_norm`](crate::Backend::batch_norm) (fused, optional).
    BatchNorm,
}

impl OpKind {
    /// Every kernel kind, in declaration order.
    pub const ALL: [OpKind; 27] = [
        OpKind::Fill,
        OpKind::Unary,
        OpKind::Binary,
        OpKind::Select,
        OpKind::Cast,
        OpKind::Reduce,
        OpKind::ArgReduce,
        OpKind::Matmul,
        OpKind::Permute,
        OpKind::Slice,
        OpKind::Concat,
        OpKind::Pad,
        OpKind::Reverse,
        OpKind::Gather,
        OpKind::ScatterAdd,
        OpKind::Tile,
        OpKind::Repeat,
        OpKind::OneHot,
        OpKind::Conv,
        OpKind::ConvBackwardData,
        OpKind::ConvBackwardFilter,
        OpKind::Pool,
        OpKind::PoolBackward,
        OpKind::ResizeNearest,
        OpKind::Random,
        OpKind::Softmax,
        OpKind::BatchNorm,
    ];

    /// `true` for the fused fast paths a backend may decline; the host then decomposes them.
    pub const fn is_optional(self) -> bool {
        matches!(self, OpKind::Softmax | OpKind::BatchNorm)
    }

    /// The dtypes the reference CPU backend implements for each kernel kind, as an answer to
    /// [`Backend::supports`](crate::Backend::supports): every dtype for fill, cast, select and
    /// data movement; `F32`, `F64`, `I32`, `I64`, `U8` and `Bool` for unary, binary and
    /// reductions; those but `Bool` for arg-reductions and scatter-add; `I32` and `I64` for
    /// one-hot indices; `F32` and `F64` for matmul, convolution, pooling, random and the fused
    /// kernels. A backend that implements the same kernels may answer with this table (the
    /// conformance suite then compares it with the CPU backend case for case); one that
    /// implements more or fewer answers its own.
    pub const fn reference_support(self, dtype: DType) -> bool {
        let float = matches!(dtype, DType::F32 | DType::F64);
        let numeric = float || matches!(dtype, DType::I32 | DType::I64 | DType::U8);
        match self {
            OpKind::Fill
            | OpKind::Cast
            | OpKind::Permute
            | OpKind::Slice
            | OpKind::Concat
            | OpKind::Pad
            | OpKind::Reverse
            | OpKind::Gather
            | OpKind::Tile
            | OpKind::Repeat
            | OpKind::ResizeNearest
            | OpKind::Select => true,
            OpKind::Unary | OpKind::Binary | OpKind::Reduce => numeric || matches!(dtype, DType::Bool),
            OpKind::ArgReduce | OpKind::ScatterAdd => numeric,
            OpKind::OneHot => matches!(dtype, DType::I32 | DType::I64),
            OpKind::Matmul
            | OpKind::Conv
            | OpKind::ConvBackwardData
            | OpKind::ConvBackwardFilter
            | OpKind::Pool
            | OpKind::PoolBackward
            | OpKind::Random
            | OpKind::Softmax
            | OpKind::BatchNorm => float,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_dtype_rules() {
        use DType::*;
        let check = |op: BinaryOp, a, b, out| op.check_dtypes("binary", a, b, out).map_err(|e| e.message);
        assert_eq!(check(BinaryOp::Add, F32, F32, F32), Ok(()));
        assert_eq!(check(BinaryOp::Less, I32, I32, Bool), Ok(()));
        assert_eq!(check(BinaryOp::Equal, Bool, Bool, Bool), Ok(()));
        assert_eq!(check(BinaryOp::LogicalOr, Bool, Bool, Bool), Ok(()));
        assert_eq!(
            check(BinaryOp::Add, F32, F64, F32).unwrap_err(),
            "binary: `a` is float32 but `b` is float64; they must match"
        );
        assert_eq!(check(BinaryOp::LogicalAnd, I32, I32, Bool).unwrap_err(), "binary: takes bool tensors, got int32");
        assert_eq!(
            check(BinaryOp::Mul, Bool, Bool, Bool).unwrap_err(),
            "binary: arithmetic is not defined for bool tensors"
        );
        assert_eq!(
            check(BinaryOp::Greater, F32, F32, F32).unwrap_err(),
            "binary: out is float32 but Greater on float32 produces bool"
        );
        assert_eq!(BinaryOp::Sub.check_dtypes("k", I64, I64, I32).unwrap_err().kind, crate::ErrorKind::InvalidArgument);
        assert_eq!((BinaryOp::Mod.output_dtype(U8), BinaryOp::NotEqual.output_dtype(F16)), (U8, Bool));
        assert!(BinaryOp::LogicalAnd.is_logical() && !BinaryOp::Equal.is_logical());
    }

    #[test]
    fn reference_support_table() {
        let supported =
            |op: OpKind| -> Vec<DType> { DType::ALL.into_iter().filter(|&d| op.reference_support(d)).collect() };
        use DType::*;
        assert_eq!(supported(OpKind::Fill), DType::ALL.to_vec());
        assert_eq!(supported(OpKind::Gather), DType::ALL.to_vec());
        assert_eq!(supported(OpKind::Unary), vec![F32, F64, I32, I64, U8, Bool]);
        assert_eq!(supported(OpKind::Reduce), vec![F32, F64, I32, I64, U8, Bool]);
        assert_eq!(supported(OpKind::ScatterAdd), vec![F32, F64, I32, I64, U8]);
        assert_eq!(supported(OpKind::OneHot), vec![I32, I64]);
        assert_eq!(supported(OpKind::Conv), vec![F32, F64]);
        assert_eq!(supported(OpKind::BatchNorm), vec![F32, F64]);
        // F16 is a storage type: movable everywhere, computed on nowhere in the reference.
        assert!(
            OpKind::ALL
                .into_iter()
                .filter(|op| op.reference_support(F16))
                .all(|op| !matches!(op, OpKind::Unary | OpKind::Binary | OpKind::Matmul | OpKind::Random))
        );
    }

    #[test]
    fn distribution_domains() {
        for dist in [
            Distribution::Bernoulli { p: 1.5 },
            Distribution::Bernoulli { p: f64::NAN },
            Distribution::Uniform { low: 1.0, high: 0.0 },
            Distribution::Uniform { low: f64::NAN, high: 0.0 },
            Distribution::Normal { mean: 0.0, stddev: -1.0 },
            Distribution::Normal { mean: 0.0, stddev: f64::NAN },
        ] {
            let e = dist.check().unwrap_err();
            assert_eq!(e.kind, crate::ErrorKind::InvalidArgument);
            assert!(e.message.starts_with(&format!("random({dist:?}): ")), "{}", e.message);
        }
        assert_eq!(
            Distribution::Uniform { low: 1.0, high: 0.0 }.check().unwrap_err().message,
            "random(Uniform { low: 1.0, high: 0.0 }): high 0 is below low 1"
        );
        assert!(Distribution::Uniform { low: 1.0, high: 1.0 }.check().is_ok());
        assert!(Distribution::Normal { mean: -3.0, stddev: 0.0 }.check().is_ok());
        assert!(Distribution::Bernoulli { p: 0.0 }.check().is_ok());
        assert!(Distribution::Bernoulli { p: 1.0 }.check().is_ok());
    }
}
