//! Specialisation: the graph rebuilt for concrete input shapes.
//!
//! Every node is rebuilt on its rebuilt inputs, which re-runs its shape rule with every size
//! known (a `None` dimension fed a size that does not fit fails here, naming the primitive).
//! On the way, what needed the sizes is resolved: `Expand` nodes are replaced by the subgraph
//! they build, shape queries become constants, no-op reshapes and broadcasts disappear, and a
//! fused kernel the backend lacks is replaced by its composition.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use keras_backend_api::{BinaryOp, DType, OpKind, ReduceOp, UnaryOp};

use crate::{
    Backend,
    array::Array,
    error::{Error, Result},
    graph::{Dim, Tensor, known, topological_order_until},
    ops::{
        Op,
        elementwise::{binary, cast},
        reduce::{reduce, softmax},
        source,
    },
};

/// Rebuilds graphs for one set of placeholder shapes.
pub(crate) struct Lowering<'a> {
    backend: &'a Backend,
    /// Concrete shape of each placeholder, by node id.
    feeds: &'a HashMap<u64, Vec<usize>>,
    /// Old node id → its rebuilt tensor.
    rebuilt: HashMap<u64, Tensor>,
    /// Ids of tensors that are already rebuilt (they map to themselves).
    done: HashSet<u64>,
    /// Expansions by (expander, input ids), so the outputs of one loop share one subgraph.
    expansions: HashMap<(usize, Vec<u64>), Vec<Tensor>>,
}

impl<'a> Lowering<'a> {
    pub(crate) fn new(backend: &'a Backend, feeds: &'a HashMap<u64, Vec<usize>>) -> Lowering<'a> {
        Lowering { backend, feeds, rebuilt: HashMap::new(), done: HashSet::new(), expansions: HashMap::new() }
    }

    /// The rebuilt version of each root.
    pub(crate) fn lower(&mut self, roots: &[Tensor]) -> Result<Vec<Tensor>> {
        let order =
            topological_order_until(roots, |t| self.done.contains(&t.id()) || self.rebuilt.contains_key(&t.id()));
        for node in order {
            let new = self.rebuild(&node)?;
            self.done.insert(new.id());
            self.rebuilt.insert(node.id(), new);
        }
        Ok(roots.iter().map(|r| self.get(r)).collect())
    }

    fn get(&self, t: &Tensor) -> Tensor {
        if self.done.contains(&t.id()) {
            return t.clone();
        }
        self.rebuilt.get(&t.id()).cloned().unwrap_or_else(|| t.clone())
    }

    fn rebuild(&mut self, node: &Tensor) -> Result<Tensor> {
        let inputs: Vec<Tensor> = node.inputs().iter().map(|t| self.get(t)).collect();
        let shape_of = |t: &Tensor| t.static_shape().unwrap_or_default();
        Ok(match node.op() {
            Op::Placeholder => {
                let shape = self
                    .feeds
                    .get(&node.id())
                    .ok_or_else(|| Error::graph("function", format!("placeholder {} is not fed", node.describe())))?;
                source::placeholder(known(shape), node.dtype(), node.name().map(str::to_string))
            }
            Op::LearningPhase | Op::Variable(_) | Op::Constant(_) => node.clone(),
            Op::Fill { value } => match inputs.first() {
                Some(like) => source::fill(*value, node.dtype(), &shape_of(like)),
                None => node.clone(),
            },
            Op::Random { dist, seed, calls } => {
                let shape = inputs.first().map(shape_of).unwrap_or_else(|| node.static_shape().unwrap_or_default());
                let op = Op::Random { dist: *dist, seed: *seed, calls: calls.clone() };
                // Same stream in float32 then rounded, for backends without float16 random numbers.
                let half = self.unsupported_half(&op, std::slice::from_ref(node));
                let dtype = if half { DType::F32 } else { node.dtype() };
                let numbers = Tensor::with_shape(op, Vec::new(), known(&shape), dtype, None);
                if half { cast(&numbers, DType::F16)? } else { numbers }
            }
            Op::ShapeOf => {
                let dims = shape_of(&inputs[0]).iter().map(|&d| d as i32).collect();
                source::constant(Array::from_vec(&[inputs[0].ndim()], dims)?)
            }
            Op::StopGradient => inputs[0].clone(),
            Op::BroadcastLike | Op::SumToLike | Op::ReshapeLike if inputs[0].shape() == inputs[1].shape() => {
                inputs[0].clone()
            }
            Op::Softmax { axis, log } if !self.backend.raw().supports(OpKind::Softmax, node.dtype()) => {
                composed_softmax(&inputs[0], *axis, *log)?
            }
            Op::Softmax { axis, log } => softmax(&inputs[0], *axis, *log)?,
            Op::Expand { expander, output } => {
                let key = (Arc::as_ptr(expander) as *const () as usize, inputs.iter().map(Tensor::id).collect());
                let outputs = match self.expansions.get(&key) {
                    Some(outputs) => outputs.clone(),
                    None => {
                        let built = expander.expand(&inputs)?;
                        let lowered = self.lower(&built)?;
                        self.expansions.insert(key, lowered.clone());
                        lowered
                    }
                };
                check_expansion(node, &outputs[*output])?;
                outputs[*output].clone()
            }
            op => match self.unsupported_half(op, &inputs) {
                true => in_float32(op, &inputs)?,
                false => Tensor::new(op.clone(), inputs)?,
            },
        })
    }
}

impl Lowering<'_> {
    /// Whether `op` works on float16 data here that the backend only handles in float32
    /// (float16 kernels are optional in the contract).
    fn unsupported_half(&self, op: &Op, inputs: &[Tensor]) -> bool {
        let raw = self.backend.raw();
        let half = inputs.iter().any(|t| t.dtype() == DType::F16);
        half && op.kernel().is_some_and(|kind| !raw.supports(kind, DType::F16) && raw.supports(kind, DType::F32))
    }
}

/// `op` computed in float32 on float16 inputs, its float result rounded back to float16.
fn in_float32(op: &Op, inputs: &[Tensor]) -> Result<Tensor> {
    let widened = inputs
        .iter()
        .map(|t| if t.dtype() == DType::F16 { cast(t, DType::F32) } else { Ok(t.clone()) })
        .collect::<Result<Vec<_>>>()?;
    let result = Tensor::new(op.clone(), widened)?;
    if result.dtype() == DType::F32 { cast(&result, DType::F16) } else { Ok(result) }
}

/// An expansion must produce what its expander promised; a mismatch is a bug in the expander,
/// reported rather than run.
fn check_expansion(node: &Tensor, built: &Tensor) -> Result<()> {
    let fits = node.shape().len() == built.ndim()
        && node.shape().iter().zip(built.shape()).all(|(a, b): (&Dim, &Dim)| a.is_none() || a == b)
        && node.dtype() == built.dtype();
    if fits {
        return Ok(());
    }
    Err(Error::graph(node.op().name(), format!("built {:?}, expected {:?}", built, node)))
}

/// Softmax from exp, max and sum, for backends without the fused kernel.
fn composed_softmax(x: &Tensor, axis: usize, log: bool) -> Result<Tensor> {
    use crate::ops::elementwise::unary;
    let shifted = binary(BinaryOp::Sub, x, &reduce(ReduceOp::Max, x, &[axis], true)?)?;
    let exp = unary(UnaryOp::Exp, &shifted)?;
    let total = reduce(ReduceOp::Sum, &exp, &[axis], true)?;
    if log {
        binary(BinaryOp::Sub, &shifted, &unary(UnaryOp::Log, &total)?)
    } else {
        binary(BinaryOp::Div, &exp, &total)
    }
}
