//! Primitives without a kernel of their own: `stop_gradient`, `print_tensor`, and `Expand`,
//! the late-built subgraph behind loops of unknown length and shape-dependent derivatives.

use std::sync::Arc;

use keras_backend_api::DType;

use super::{Expander, Inferred, Op, source};
use crate::{
    autodiff,
    error::Result,
    graph::{Dim, Tensor},
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
        let outputs = self.forward.expand(forward)?;
        let grads = autodiff::vjp_of(&outputs[self.output], &dy[0], forward)?;
        Ok(grads
            .into_iter()
            .zip(forward)
            .map(|(g, x)| g.unwrap_or_else(|| source::fill_like(0.0, x, x.dtype())))
            .collect())
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
