//! Primitives without a kernel of their own: `stop_gradient`, `print_tensor`, and `Expand`,
//! the late-built subgraph behind loops of unknown length and shape-dependent derivatives.
//!
//! Loops whose body is a caller's closure (`map_fn`, `foldl`, `foldr`, `rnn`) are [`Body`]
//! expanders built by [`expand_body`]: the tensors the closure captures (weights, other
//! placeholders) become inputs of the late-built node, so that gradients reach them.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use keras_backend_api::DType;

use super::{
    Expander, Inferred, Op,
    movement::{remove_axes, slice},
    source,
};
use crate::{
    autodiff,
    error::Result,
    graph::{Dim, Tensor, topological_order_until},
};

pub(crate) fn stop_gradient(x: &Tensor) -> Result<Tensor> {
    Tensor::new(Op::StopGradient, vec![x.clone()])
}

pub(crate) fn print(x: &Tensor, message: &str) -> Result<Tensor> {
    Tensor::new(Op::Print(message.to_string()), vec![x.clone()])
}

/// The outputs of `expander` applied to `inputs`: built at once when every input shape is
/// known, else as `Expand` nodes that the executor builds when it knows the shapes.
pub(crate) fn expand(expander: Arc<dyn Expander>, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
    if inputs.iter().all(|t| t.static_shape().is_some()) {
        return expander.expand(inputs);
    }
    let outputs = expander.infer(inputs).map_err(|message| crate::Error::graph(expander.name(), message))?;
    Ok((0..outputs.len())
        .map(|output| {
            let (shape, dtype) = outputs[output].clone();
            Tensor::with_shape(Op::Expand { expander: expander.clone(), output }, inputs.to_vec(), shape, dtype, None)
        })
        .collect())
}

/// A loop whose body is a caller's closure, which may use tensors built before the loop.
pub(crate) trait Body: Expander {
    /// The body applied to fresh placeholders standing for one step's arguments: those
    /// placeholders and the body's results. Nodes built here are never run.
    fn probe(&self, inputs: &[Tensor]) -> Result<(Vec<Tensor>, Vec<Tensor>)>;
}

/// The outputs of the loop `body` on `inputs`: built at once when every input shape is known,
/// else as `Expand` nodes whose inputs are `inputs` followed by the tensors the body captures
/// (the body's expansion must ignore inputs past its own).
pub(crate) fn expand_body(body: impl Body + 'static, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
    if inputs.iter().all(|t| t.static_shape().is_some()) {
        return body.expand(inputs);
    }
    let (probes, results) = body.probe(inputs)?;
    let mut all = inputs.to_vec();
    all.extend(captured(&probes, &results, inputs));
    expand(Arc::new(Capturing { body, originals: all.clone() }), &all)
}

/// A [`Body`] with its captured tensors as trailing inputs.
struct Capturing<B> {
    body: B,
    /// The inputs the loop was built on. An expansion on other tensors (the executor's
    /// specialised copies, or the derivative's) rewires the body's graph from these to those,
    /// so that derivatives with respect to the expansion's inputs see every use.
    originals: Vec<Tensor>,
}

impl<B: Body> Expander for Capturing<B> {
    fn name(&self) -> &'static str {
        self.body.name()
    }
    fn infer(&self, inputs: &[Tensor]) -> std::result::Result<Vec<(Vec<Dim>, DType)>, String> {
        self.body.infer(inputs)
    }
    fn expand(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        rewire(&self.body.expand(inputs)?, &self.originals, inputs)
    }
}

/// The tensors existing before the loop that the body's graph (`results`) uses, other than the
/// loop's own `inputs` and constants: found by walking back to nodes older than `probes`.
fn captured(probes: &[Tensor], results: &[Tensor], inputs: &[Tensor]) -> Vec<Tensor> {
    let first_new = probes.iter().map(Tensor::id).min().unwrap_or(0);
    let is_old = |t: &Tensor| t.id() < first_new;
    let mut seen: HashSet<u64> = inputs.iter().map(Tensor::id).collect();
    let mut candidates = results.to_vec();
    for node in topological_order_until(results, is_old) {
        candidates.extend(node.inputs().iter().cloned());
    }
    let constant = |t: &Tensor| t.inputs().is_empty() && matches!(t.op(), Op::Constant(_) | Op::Fill { .. });
    candidates.into_iter().filter(|t| is_old(t) && !constant(t) && seen.insert(t.id())).collect()
}

/// `roots`' graph with every use of `originals[k]` replaced by `replacements[k]`; nodes on the
/// way are rebuilt (re-running their shape rules), the rest shared.
fn rewire(roots: &[Tensor], originals: &[Tensor], replacements: &[Tensor]) -> Result<Vec<Tensor>> {
    let mut rebuilt: HashMap<u64, Tensor> = originals
        .iter()
        .zip(replacements)
        .filter(|(old, new)| old.id() != new.id())
        .map(|(old, new)| (old.id(), new.clone()))
        .collect();
    if rebuilt.is_empty() {
        return Ok(roots.to_vec());
    }
    let replaced: HashSet<u64> = rebuilt.keys().copied().collect();
    for node in topological_order_until(roots, |t| replaced.contains(&t.id())) {
        let inputs: Vec<Tensor> =
            node.inputs().iter().map(|t| rebuilt.get(&t.id()).cloned().unwrap_or_else(|| t.clone())).collect();
        if inputs.iter().zip(node.inputs()).all(|(new, old)| new.id() == old.id()) {
            continue;
        }
        let new = match node.op() {
            // Their shape comes from their input (`like`), not from a shape rule.
            Op::Fill { .. } | Op::Random { .. } => {
                let shape = inputs[0].shape().to_vec();
                Tensor::with_shape(node.op().clone(), inputs, shape, node.dtype(), None)
            }
            op => Tensor::new(op.clone(), inputs)?,
        };
        rebuilt.insert(node.id(), new);
    }
    Ok(roots.iter().map(|root| rebuilt.get(&root.id()).cloned().unwrap_or_else(|| root.clone())).collect())
}

/// The most steps a loop (`map_fn`, `foldl`, `foldr`, `rnn`) is unrolled into: a loop is built
/// as one subgraph per step, so a longer one would exhaust memory (or time) building the graph.
pub(crate) const MAX_UNROLLED_STEPS: usize = 1 << 20;

/// Refuses a loop of `steps` steps along `axis` of `x` that is too long to unroll.
pub(crate) fn check_unrolled_steps(function: &str, x: &Tensor, axis: usize, steps: usize) -> Result<()> {
    if steps <= MAX_UNROLLED_STEPS {
        return Ok(());
    }
    Err(crate::Error::graph(
        function,
        format!(
            "axis {axis} of {} has {steps} steps; loops are unrolled, into at most {MAX_UNROLLED_STEPS} steps",
            x.describe()
        ),
    ))
}

/// Step `index` of a loop over `axis` of `x`: `x[.., index, ..]` with that axis removed.
pub(crate) fn step_of(x: &Tensor, axis: usize, index: usize) -> Result<Tensor> {
    let mut ranges = vec![(0, None); axis + 1];
    ranges[axis] = (index as isize, Some(index as isize + 1));
    remove_axes(&slice(x, &ranges)?, &[axis])
}

/// The more specific of two shapes that agree wherever both are known; `None` when they
/// differ in rank or in a known dimension.
pub(crate) fn merge_dims(a: &[Dim], b: &[Dim]) -> Option<Vec<Dim>> {
    if a.len() != b.len() {
        return None;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| match (x, y) {
            (Some(p), Some(q)) if p != q => None,
            _ => Some(x.or(*y)),
        })
        .collect()
}

type BuildFn = dyn Fn(&[Tensor]) -> Result<Tensor> + Send + Sync;

/// An expander from a closure with one output of a known (partial) shape.
struct Late {
    name: &'static str,
    shape: Vec<Dim>,
    dtype: DType,
    build: Box<BuildFn>,
}

impl Expander for Late {
    fn name(&self) -> &'static str {
        self.name
    }
    fn infer(&self, _inputs: &[Tensor]) -> std::result::Result<Vec<(Vec<Dim>, DType)>, String> {
        Ok(vec![(self.shape.clone(), self.dtype)])
    }
    fn expand(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        Ok(vec![(self.build)(inputs)?])
    }
}

/// A tensor of `shape` built by `build` once `inputs`' shapes are all known: now if they are,
/// else when a function is specialised. For rules that need concrete sizes (slice offsets).
pub(crate) fn late(
    name: &'static str,
    inputs: &[Tensor],
    shape: Vec<Dim>,
    dtype: DType,
    build: impl Fn(&[Tensor]) -> Result<Tensor> + Send + Sync + 'static,
) -> Result<Tensor> {
    let expander = Arc::new(Late { name, shape, dtype, build: Box::new(build) });
    Ok(expand(expander, inputs)?.remove(0))
}

/// The derivative of an expander's output `output`: expands the forward subgraph on the same
/// inputs and differentiates through it. Inputs: the forward inputs, then the cotangent.
struct ExpandGradient {
    forward: Arc<dyn Expander>,
    output: usize,
}

impl Expander for ExpandGradient {
    fn name(&self) -> &'static str {
        self.forward.name()
    }
    fn infer(&self, inputs: &[Tensor]) -> std::result::Result<Vec<(Vec<Dim>, DType)>, String> {
        let forward = &inputs[..inputs.len() - 1];
        Ok(forward.iter().map(|t| (t.shape().to_vec(), t.dtype())).collect())
    }
    fn expand(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let (forward, dy) = inputs.split_at(inputs.len() - 1);
        // The derivative with respect to each input position on its own: the subgraph is built
        // on a fresh leaf per position, then rewired to the inputs. Differentiating with respect
        // to the inputs themselves would also follow the paths between them (one tensor given
        // twice, as in `batch_dot(x, x)`, or one input computed from another), which the
        // caller's pass follows again: those gradients came out doubled.
        let leaves: Vec<Tensor> =
            forward.iter().map(|t| source::placeholder(t.shape().to_vec(), t.dtype(), None)).collect();
        let outputs = self.forward.expand(&leaves)?;
        let grads = autodiff::vjp_of(&outputs[self.output], &dy[0], &leaves)?;
        let grads: Vec<Tensor> = grads
            .into_iter()
            .zip(forward)
            .map(|(g, x)| g.unwrap_or_else(|| source::fill_like(0.0, x, x.dtype())))
            .collect();
        rewire(&grads, &leaves, forward)
    }
}

pub(crate) fn infer(op: &Op, inputs: &[Tensor]) -> Inferred {
    match op {
        Op::StopGradient | Op::Print(_) => Ok((inputs[0].shape().to_vec(), inputs[0].dtype())),
        Op::Expand { expander, output } => {
            let mut outputs = expander.infer(inputs)?;
            if *output >= outputs.len() {
                return Err(format!("output {output} of {} outputs", outputs.len()));
            }
            Ok(outputs.swap_remove(*output))
        }
        _ => unreachable!("not a special op"),
    }
}

pub(crate) fn vjp(op: &Op, inputs: &[Tensor], _y: &Tensor, dy: &Tensor) -> Result<Vec<Option<Tensor>>> {
    match op {
        Op::StopGradient => Ok(vec![None]),
        Op::Print(_) => Ok(vec![Some(dy.clone())]),
        Op::Expand { expander, output } => {
            let gradient = Arc::new(ExpandGradient { forward: expander.clone(), output: *output });
            let mut with_dy = inputs.to_vec();
            with_dy.push(dy.clone());
            let grads = expand(gradient, &with_dy)?;
            Ok(grads.into_iter().zip(inputs).map(|(g, x)| x.dtype().is_float().then_some(g)).collect())
        }
        _ => unreachable!("not a special op"),
    }
}
