//! One primitive, one kernel call: the only place the front end talks to a backend's kernels.

use abi_stable::std_types::RSlice;
use keras_backend_api::{BackendResult, ReduceOp, TensorRef};

use crate::{
    Backend, Buffer,
    error::{Error, Result},
    graph::Tensor,
    ops::{Op, movement::resolve_range},
};

/// Runs `node`'s kernel on `inputs` (buffer and concrete shape each), writing `out`.
pub(crate) fn run(
    backend: &Backend,
    node: &Tensor,
    inputs: &[(&Buffer, &[usize])],
    out: &Buffer,
    shape: &[usize],
) -> Result<()> {
    let raw = backend.raw();
    let x = |k: usize| TensorRef::new(inputs[k].0.id(), inputs[k].1);
    let o = TensorRef::new(out.id(), shape);
    let status: BackendResult<()> = match node.op() {
        Op::Fill { value } => raw.fill(o, *value),
        Op::Random { dist, seed, calls } => {
            let counter = calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            raw.random(*dist, *seed, counter, o)
        }
        Op::Unary(op) => raw.unary(*op, x(0), o),
        Op::Binary(op) => raw.binary(*op, x(0), x(1), o),
        Op::Select => raw.select(x(0), x(1), x(2), o),
        Op::Cast(_) => raw.cast(x(0), o),
        Op::BroadcastLike => {
            // Broadcasting is a tile of the input seen with leading 1s: every dim is 1 or equal.
            let padded = with_leading_ones(inputs[0].1, shape.len());
            raw.tile(TensorRef::new(inputs[0].0.id(), &padded), o)
        }
        Op::SumToLike => {
            let from = inputs[0].1;
            let to = with_leading_ones(inputs[1].1, from.len());
            let axes: Vec<usize> = (0..from.len()).filter(|&i| to[i] != from[i]).collect();
            raw.reduce(ReduceOp::Sum, x(0), RSlice::from_slice(&axes), TensorRef::new(out.id(), &to))
        }
        Op::Reduce { op, axes, .. } => raw.reduce(*op, x(0), RSlice::from_slice(axes), o),
        Op::ArgReduce { op, axis } => raw.arg_reduce(*op, x(0), *axis, o),
        Op::Softmax { axis, log } => raw.softmax(x(0), *axis, *log, o),
        Op::MatMul { transpose_a, transpose_b } => raw.matmul(x(0), x(1), o, *transpose_a, *transpose_b),
        Op::Permute(perm) => raw.permute(x(0), RSlice::from_slice(perm), o),
        Op::Slice(ranges) => {
            let dims = inputs[0].1;
            let mut starts = vec![0usize; dims.len()];
            for (axis, &(start, stop)) in ranges.iter().enumerate() {
                starts[axis] = resolve_range(start, stop, dims[axis]).0;
            }
            let steps = vec![1isize; dims.len()];
            raw.slice(x(0), RSlice::from_slice(&starts), RSlice::from_slice(&steps), o)
        }
        Op::Concat { .. } if shape.iter().product::<usize>() == 0 => abi_stable::std_types::RResult::ROk(()),
        Op::Concat { axis } => {
            let refs: Vec<TensorRef<'_>> = (0..inputs.len()).map(x).collect();
            raw.concat(RSlice::from_slice(&refs), *axis, o)
        }
        Op::Pad { before, after, value } => {
            raw.pad(x(0), RSlice::from_slice(before), RSlice::from_slice(after), *value, o)
        }
        Op::Reverse(axes) => raw.reverse(x(0), RSlice::from_slice(axes), o),
        Op::Gather { axis } => raw.gather(x(0), x(1), *axis, o),
        Op::ScatterAdd { axis } => raw.scatter_add(x(0), x(1), *axis, o),
        Op::Tile(_) => raw.tile(x(0), o),
        Op::Repeat { axis, repeats } => raw.repeat(x(0), *axis, *repeats, o),
        Op::OneHot { .. } => raw.one_hot(x(0), o),
        Op::Conv(spec) => raw.conv(x(0), x(1), o, spec.params()),
        Op::ConvBackwardData { spec, .. } => raw.conv_backward_data(x(0), x(1), o, spec.params()),
        Op::ConvBackwardFilter { spec, .. } => raw.conv_backward_filter(x(0), x(1), o, spec.params()),
        Op::Pool(spec) => raw.pool(x(0), o, spec.params()),
        Op::PoolBackward(spec) => raw.pool_backward(x(0), x(1), o, spec.params()),
        Op::ResizeNearest { layout, .. } => raw.resize_nearest(x(0), o, *layout),
        op => {
            return Err(Error::graph(
                op.name(),
                "internal: this primitive has no kernel (it should have been lowered)",
            ));
        }
    };
    status.into_result().map_err(|e| Error::backend(backend.name(), node.op().name(), e))
}

fn with_leading_ones(shape: &[usize], rank: usize) -> Vec<usize> {
    let mut padded = vec![1; rank.saturating_sub(shape.len())];
    padded.extend_from_slice(shape);
    padded
}
