//! The primitives of the graph: a small set, one per kernel of the plugin contract plus a few
//! that only move metadata (reshape, identity), from which every K function is composed.
//!
//! Each family module holds, for each of its primitives, the three things that define it and
//! nothing else: a constructor (which runs the shape rule), the shape rule over partially known
//! shapes, and the derivative (a vector-Jacobian product built from other primitives). The
//! executor ([`crate::exec`]) maps each primitive to its kernel.

pub(crate) mod elementwise;
pub(crate) mod linalg;
pub(crate) mod movement;
pub(crate) mod nn;
pub(crate) mod reduce;
pub(crate) mod source;
pub(crate) mod special;

use std::sync::{Arc, atomic::AtomicU64};

use keras_backend_api::{ArgReduceOp, BinaryOp, DType, Distribution, Layout, OpKind, ReduceOp, UnaryOp};

use crate::{
    array::Array,
    error::Result,
    graph::{Dim, Tensor, VarState},
};

/// Result of a shape rule: the output's shape and dtype, or why the inputs do not fit.
pub(crate) type Inferred = std::result::Result<(Vec<Dim>, DType), String>;

/// A subgraph built late: when a [`Function`](crate::backend::Function) specialises the graph
/// to concrete shapes, each `Expand` node is replaced by what [`Expander::expand`] builds on
/// its (then fully shaped) inputs. Loops of unknown length (`map_fn`, `foldl`, `rnn`) are
/// expanders: their trip count is only known then.
pub(crate) trait Expander: Send + Sync {
    /// The K function it implements, for messages.
    fn name(&self) -> &'static str;
    /// Shapes and dtypes of every output, from partially known input shapes.
    fn infer(&self, inputs: &[Tensor]) -> std::result::Result<Vec<(Vec<Dim>, DType)>, String>;
    /// The subgraph computing every output from `inputs`, whose shapes are all known.
    fn expand(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>>;
}

/// One primitive with its static parameters.
#[derive(Clone)]
pub(crate) enum Op {
    // ----- sources (ops/source.rs) -----
    /// Fed by the caller of a function.
    Placeholder,
    /// The `learning_phase()` scalar (`Bool`), fed 0 unless the caller feeds it.
    LearningPhase,
    /// A variable's current value.
    Variable(Arc<VarState>),
    /// A host array uploaded once per specialisation.
    Constant(Arc<Array>),
    /// Every element `value`; the shape is the node's (all dims known) or, with one input, that
    /// input's shape.
    Fill {
        value: f64,
    },
    /// The shape of the input as an `I32` vector.
    ShapeOf,
    /// Random numbers of the node's shape (or the input's, with one input), from the
    /// counter-based stream; `calls` counts evaluations so each call draws fresh numbers.
    Random {
        dist: Distribution,
        seed: u64,
        calls: Arc<AtomicU64>,
    },

    // ----- element-wise (ops/elementwise.rs) -----
    Unary(UnaryOp),
    Binary(BinaryOp),
    /// `cond ? a : b` with broadcasting.
    Select,
    /// Conversion to the node's dtype.
    Cast(DType),
    /// The first input broadcast to the second input's shape.
    BroadcastLike,
    /// The first input summed down to the second input's (broadcast-compatible) shape: the
    /// adjoint of broadcasting.
    SumToLike,

    // ----- reductions (ops/reduce.rs) -----
    Reduce {
        op: ReduceOp,
        axes: Vec<usize>,
        keepdims: bool,
    },
    ArgReduce {
        op: ArgReduceOp,
        axis: usize,
    },
    Softmax {
        axis: usize,
        log: bool,
    },

    // ----- linear algebra (ops/linalg.rs) -----
    MatMul {
        transpose_a: bool,
        transpose_b: bool,
    },

    // ----- data movement (ops/movement.rs) -----
    /// C-order reshape; at most one `-1`.
    Reshape(Vec<isize>),
    /// The first input reshaped to the second input's shape.
    ReshapeLike,
    /// Size-1 axes inserted at these (sorted) positions of the output.
    InsertAxes(Vec<usize>),
    /// These (sorted) size-1 axes of the input removed.
    RemoveAxes(Vec<usize>),
    Permute(Vec<usize>),
    /// `x[start..stop]` per axis with Python's index rules (step 1).
    Slice(Vec<(isize, Option<isize>)>),
    Concat {
        axis: usize,
    },
    Pad {
        before: Vec<usize>,
        after: Vec<usize>,
        value: f64,
    },
    Reverse(Vec<usize>),
    Gather {
        axis: usize,
    },
    /// Inputs: updates, indices, and a tensor whose shape the output takes.
    ScatterAdd {
        axis: usize,
    },
    Tile(Vec<usize>),
    Repeat {
        axis: usize,
        repeats: usize,
    },
    OneHot {
        depth: usize,
        dtype: DType,
    },

    // ----- convolution, pooling, resizing (ops/nn.rs) -----
    /// Inputs: x, kernel.
    Conv(nn::ConvSpec),
    /// Inputs: the output's gradient, kernel; the result has the input's shape, whose spatial
    /// dims are `input_spatial`.
    ConvBackwardData {
        spec: nn::ConvSpec,
        input_spatial: Vec<usize>,
    },
    /// Inputs: x, the output's gradient; the result has the kernel's shape, whose spatial dims
    /// are `kernel_spatial`.
    ConvBackwardFilter {
        spec: nn::ConvSpec,
        kernel_spatial: Vec<usize>,
    },
    Pool(nn::PoolSpec),
    /// Inputs: x, the output's gradient.
    PoolBackward(nn::PoolSpec),
    /// Each spatial dim repeated element-wise by its factor (nearest-neighbour upsampling).
    ResizeNearest {
        layout: Layout,
        factors: Vec<usize>,
    },

    // ----- special (ops/special.rs) -----
    /// The value itself; `gradients` treats it as a constant.
    StopGradient,
    /// Prints `message` and the value whenever evaluated.
    Print(String),
    /// Output `output` of a late-built subgraph.
    Expand {
        expander: Arc<dyn Expander>,
        output: usize,
    },
    /// Output `output` of a computation run on the host after the call (a data-dependent
    /// shape, as `ctc_decode`'s paths); only ever an output of a function (`exec/plan.rs`).
    HostOutput {
        function: Arc<dyn crate::exec::plan::HostFn>,
        output: usize,
    },
}

impl Op {
    /// The primitive's name, used in error messages.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Op::Placeholder => "placeholder",
            Op::LearningPhase => "learning_phase",
            Op::Variable(_) => "variable",
            Op::Constant(_) => "constant",
            Op::Fill { .. } => "fill",
            Op::ShapeOf => "shape",
            Op::Random { .. } => "random",
            Op::Unary(_) => "unary",
            Op::Binary(_) => "binary",
            Op::Select => "select",
            Op::Cast(_) => "cast",
            Op::BroadcastLike => "broadcast",
            Op::SumToLike => "sum_to",
            Op::Reduce { .. } => "reduce",
            Op::ArgReduce { .. } => "arg_reduce",
            Op::Softmax { .. } => "softmax",
            Op::MatMul { .. } => "matmul",
            Op::Reshape(_) | Op::ReshapeLike => "reshape",
            Op::InsertAxes(_) => "expand_dims",
            Op::RemoveAxes(_) => "squeeze",
            Op::Permute(_) => "permute_dimensions",
            Op::Slice(_) => "slice",
            Op::Concat { .. } => "concatenate",
            Op::Pad { .. } => "pad",
            Op::Reverse(_) => "reverse",
            Op::Gather { .. } => "gather",
            Op::ScatterAdd { .. } => "scatter_add",
            Op::Tile(_) => "tile",
            Op::Repeat { .. } => "repeat_elements",
            Op::OneHot { .. } => "one_hot",
            Op::Conv(_) => "conv",
            Op::ConvBackwardData { .. } => "conv_backward_data",
            Op::ConvBackwardFilter { .. } => "conv_backward_filter",
            Op::Pool(_) => "pool",
            Op::PoolBackward(_) => "pool_backward",
            Op::ResizeNearest { .. } => "resize_nearest",
            Op::StopGradient => "stop_gradient",
            Op::Print(_) => "print_tensor",
            Op::Expand { expander, .. } => expander.name(),
            Op::HostOutput { function, .. } => function.name(),
        }
    }

    /// The contract kernel that runs this primitive, for capability queries (`None` for
    /// sources, metadata-only ops and host computations).
    pub(crate) fn kernel(&self) -> Option<OpKind> {
        Some(match self {
            Op::Fill { .. } => OpKind::Fill,
            Op::Random { .. } => OpKind::Random,
            Op::Unary(_) => OpKind::Unary,
            Op::Binary(_) => OpKind::Binary,
            Op::Select => OpKind::Select,
            Op::Cast(_) => OpKind::Cast,
            Op::BroadcastLike | Op::Tile(_) => OpKind::Tile,
            Op::SumToLike | Op::Reduce { .. } => OpKind::Reduce,
            Op::ArgReduce { .. } => OpKind::ArgReduce,
            Op::Softmax { .. } => OpKind::Softmax,
            Op::MatMul { .. } => OpKind::Matmul,
            Op::Permute(_) => OpKind::Permute,
            Op::Slice(_) => OpKind::Slice,
            Op::Concat { .. } => OpKind::Concat,
            Op::Pad { .. } => OpKind::Pad,
            Op::Reverse(_) => OpKind::Reverse,
            Op::Gather { .. } => OpKind::Gather,
            Op::ScatterAdd { .. } => OpKind::ScatterAdd,
            Op::Repeat { .. } => OpKind::Repeat,
            Op::OneHot { .. } => OpKind::OneHot,
            Op::Conv(_) => OpKind::Conv,
            Op::ConvBackwardData { .. } => OpKind::ConvBackwardData,
            Op::ConvBackwardFilter { .. } => OpKind::ConvBackwardFilter,
            Op::Pool(_) => OpKind::Pool,
            Op::PoolBackward(_) => OpKind::PoolBackward,
            Op::ResizeNearest { .. } => OpKind::ResizeNearest,
            _ => return None,
        })
    }

    /// The shape rule: output shape and dtype from the inputs' (partially known) shapes.
    pub(crate) fn infer(&self, inputs: &[Tensor]) -> Inferred {
        match self {
            Op::Placeholder | Op::LearningPhase | Op::Variable(_) | Op::Constant(_) => {
                Err("a source node has no shape rule".to_string())
            }
            Op::Fill { .. } | Op::Random { .. } | Op::ShapeOf => source::infer(self, inputs),
            Op::Unary(_) | Op::Binary(_) | Op::Select | Op::Cast(_) | Op::BroadcastLike | Op::SumToLike => {
                elementwise::infer(self, inputs)
            }
            Op::Reduce { .. } | Op::ArgReduce { .. } | Op::Softmax { .. } => reduce::infer(self, inputs),
            Op::MatMul { .. } => linalg::infer(self, inputs),
            Op::Conv(_)
            | Op::ConvBackwardData { .. }
            | Op::ConvBackwardFilter { .. }
            | Op::Pool(_)
            | Op::PoolBackward(_)
            | Op::ResizeNearest { .. } => nn::infer(self, inputs),
            Op::StopGradient | Op::Print(_) | Op::Expand { .. } => special::infer(self, inputs),
            Op::HostOutput { function, output } => crate::exec::plan::infer_host_output(&**function, *output, inputs),
            _ => movement::infer(self, inputs),
        }
    }

    /// The derivative: given the output `y` of this node and its cotangent `dy`, one cotangent
    /// per input (`None` where the input does not affect the output differentiably).
    pub(crate) fn vjp(&self, inputs: &[Tensor], y: &Tensor, dy: &Tensor) -> Result<Vec<Option<Tensor>>> {
        match self {
            Op::Placeholder
            | Op::LearningPhase
            | Op::Variable(_)
            | Op::Constant(_)
            | Op::Fill { .. }
            | Op::ShapeOf
            | Op::Random { .. }
            | Op::HostOutput { .. } => Ok(vec![None; inputs.len()]),
            Op::Unary(_) | Op::Binary(_) | Op::Select | Op::Cast(_) | Op::BroadcastLike | Op::SumToLike => {
                elementwise::vjp(self, inputs, y, dy)
            }
            Op::Reduce { .. } | Op::ArgReduce { .. } | Op::Softmax { .. } => reduce::vjp(self, inputs, y, dy),
            Op::MatMul { .. } => linalg::vjp(self, inputs, y, dy),
            Op::Conv(_)
            | Op::ConvBackwardData { .. }
            | Op::ConvBackwardFilter { .. }
            | Op::Pool(_)
            | Op::PoolBackward(_)
            | Op::ResizeNearest { .. } => nn::vjp(self, inputs, y, dy),
            Op::StopGradient | Op::Print(_) | Op::Expand { .. } => special::vjp(self, inputs, y, dy),
            _ => movement::vjp(self, inputs, y, dy),
        }
    }
}

/// Shorthand for a shape rule's error: `"{what}: shapes (2, 3) and (4,)"`-style messages.
pub(crate) fn shapes_of(inputs: &[Tensor]) -> String {
    inputs.iter().map(|t| crate::graph::shape_string(t.shape())).collect::<Vec<_>>().join(" and ")
}

/// Resolves a possibly negative axis against `rank` (Python's rule).
pub(crate) fn normalize_axis(axis: isize, rank: usize) -> std::result::Result<usize, String> {
    let resolved = if axis < 0 { axis + rank as isize } else { axis };
    if resolved < 0 || resolved >= rank as isize {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(resolved as usize)
}
