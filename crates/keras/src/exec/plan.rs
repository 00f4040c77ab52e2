//! Execution plans: a specialised graph in run order, with every buffer's last use known so it
//! is released (or its memory reused in place) as soon as nothing needs it.

use std::{collections::HashMap, sync::Arc};

use keras_backend_api::DType;

use super::kernels;
use crate::{
    Backend, Buffer,
    array::Array,
    error::{Error, Result},
    graph::{Tensor, VarState, topological_order},
    ops::Op,
};

/// Where a step's output comes from.
enum Source {
    /// Fed input number `k` of the function.
    Feed(usize),
    /// The learning phase, fed or 0.
    LearningPhase,
    /// A variable's value at the start of the call.
    Variable(Arc<VarState>),
    /// A constant uploaded when the plan was made.
    Constant(Arc<Buffer>),
    /// The same buffer as slot `k` (reshapes and other metadata-only ops).
    Alias(usize),
    /// Slot `k`, printed with this message first (`print_tensor`).
    Print(usize, String),
    /// A kernel writing a new buffer.
    Kernel,
}

struct Step {
    node: Tensor,
    shape: Vec<usize>,
    source: Source,
    inputs: Vec<usize>,
    /// Slots whose last use is this step: released after it runs.
    release: Vec<usize>,
}

/// A specialised graph ready to run: steps in order, slot numbers for outputs and updates.
pub(crate) struct Plan {
    steps: Vec<Step>,
    outputs: Vec<usize>,
    updates: Vec<(Arc<VarState>, usize)>,
}

impl Plan {
    /// Plans `outputs` and `updates` (already lowered); `feeds` maps placeholder ids to their
    /// position among the function's inputs.
    pub(crate) fn new(
        backend: &Backend,
        outputs: &[Tensor],
        updates: &[(Arc<VarState>, Tensor)],
        feeds: &HashMap<u64, usize>,
    ) -> Result<Plan> {
        let mut roots = outputs.to_vec();
        roots.extend(updates.iter().map(|(_, value)| value.clone()));
        let order = topological_order(&roots);
        let slot_of: HashMap<u64, usize> = order.iter().enumerate().map(|(i, t)| (t.id(), i)).collect();

        let mut steps = Vec::with_capacity(order.len());
        for node in &order {
            let shape = node.static_shape().ok_or_else(|| {
                Error::graph(node.op().name(), format!("shape {:?} is still unknown after specialisation", node))
            })?;
            let inputs: Vec<usize> = node.inputs().iter().map(|t| slot_of[&t.id()]).collect();
            let source = match node.op() {
                Op::Placeholder => Source::Feed(*feeds.get(&node.id()).ok_or_else(|| {
                    Error::graph("function", format!("placeholder {} is not among the inputs", node.describe()))
                })?),
                Op::LearningPhase => Source::LearningPhase,
                Op::Variable(state) => {
                    if state.backend.name() != backend.name() {
                        return Err(Error::graph(
                            "function",
                            format!(
                                "variable `{}` lives on backend `{}`, the function runs on `{}`",
                                state.name,
                                state.backend.name(),
                                backend.name()
                            ),
                        ));
                    }
                    Source::Variable(state.clone())
                }
                Op::Constant(array) => Source::Constant(Arc::new(upload(backend, array)?)),
                Op::Reshape(_) | Op::ReshapeLike | Op::InsertAxes(_) | Op::RemoveAxes(_) | Op::StopGradient => {
                    Source::Alias(inputs[0])
                }
                Op::Print(message) => Source::Print(inputs[0], message.clone()),
                _ => Source::Kernel,
            };
            steps.push(Step { node: node.clone(), shape, source, inputs, release: Vec::new() });
        }

        // Last use of each slot; outputs and update values live to the end.
        let mut last_use: Vec<Option<usize>> = vec![None; steps.len()];
        for (i, step) in steps.iter().enumerate() {
            for &input in &step.inputs {
                last_use[input] = Some(i);
            }
        }
        let outputs: Vec<usize> = outputs.iter().map(|t| slot_of[&t.id()]).collect();
        let updates: Vec<(Arc<VarState>, usize)> =
            updates.iter().map(|(state, value)| (state.clone(), slot_of[&value.id()])).collect();
        for &slot in outputs.iter().chain(updates.iter().map(|(_, s)| s)) {
            last_use[slot] = None;
        }
        for (slot, last) in last_use.iter().enumerate() {
            if let Some(step) = last {
                steps[*step].release.push(slot);
            }
        }
        Ok(Plan { steps, outputs, updates })
    }

    /// Runs the plan: outputs are downloaded, then every update replaces its variable's
    /// buffer, so each update read the values from before the call.
    pub(crate) fn run(&self, backend: &Backend, feeds: &[Array], learning_phase: bool) -> Result<Vec<Array>> {
        let mut slots: Vec<Option<Arc<Buffer>>> = vec![None; self.steps.len()];
        for (index, step) in self.steps.iter().enumerate() {
            let buffer = match &step.source {
                Source::Feed(k) => Arc::new(upload(backend, &feeds[*k])?),
                Source::LearningPhase => {
                    Arc::new(upload(backend, &Array::full(DType::Bool, &[], learning_phase as u8 as f64))?)
                }
                Source::Variable(state) => state.current(),
                Source::Constant(buffer) => buffer.clone(),
                Source::Alias(k) => live(&slots, *k)?.clone(),
                Source::Print(k, message) => {
                    let value = download(live(&slots, *k)?, step.node.dtype(), &step.shape)?;
                    println!("{message}{value}");
                    live(&slots, *k)?.clone()
                }
                Source::Kernel => {
                    let inputs: Vec<(&Buffer, &[usize])> = step
                        .inputs
                        .iter()
                        .map(|&k| live(&slots, k).map(|b| (&**b, self.steps[k].shape.as_slice())))
                        .collect::<Result<_>>()?;
                    let out = match self.reusable_input(index, &slots) {
                        Some(k) => live(&slots, k)?.clone(),
                        None => Arc::new(Buffer::alloc(backend, step.node.dtype(), step.shape.iter().product())?),
                    };
                    kernels::run(backend, &step.node, &inputs, &out, &step.shape)?;
                    out
                }
            };
            slots[index] = Some(buffer);
            for &k in &step.release {
                slots[k] = None;
            }
        }
        let results = self
            .outputs
            .iter()
            .map(|&k| download(live(&slots, k)?, self.steps[k].node.dtype(), &self.steps[k].shape))
            .collect::<Result<Vec<_>>>()?;
        for (state, k) in &self.updates {
            state.replace(live(&slots, *k)?.clone());
        }
        Ok(results)
    }

    /// An input buffer that an element-wise kernel may overwrite: same dtype and size as the
    /// output, last used here, and referenced by nothing else (not a variable, constant,
    /// alias or output).
    fn reusable_input(&self, index: usize, slots: &[Option<Arc<Buffer>>]) -> Option<usize> {
        let step = &self.steps[index];
        if !matches!(step.node.op(), Op::Unary(_) | Op::Binary(_)) {
            return None;
        }
        step.inputs.iter().copied().find(|&k| {
            let input = &self.steps[k];
            step.release.contains(&k)
                && input.shape == step.shape
                && input.node.dtype() == step.node.dtype()
                && slots[k].as_ref().is_some_and(|b| Arc::strong_count(b) == 1)
                // An input used twice by this step (x * x) may be overwritten too: the kernel
                // reads each element before writing it.
                && !matches!(input.source, Source::Variable(_) | Source::Constant(_))
        })
    }
}

fn live(slots: &[Option<Arc<Buffer>>], k: usize) -> Result<&Arc<Buffer>> {
    slots[k].as_ref().ok_or_else(|| Error::graph("function", format!("internal: slot {k} used after release")))
}

pub(crate) fn upload(backend: &Backend, array: &Array) -> Result<Buffer> {
    let buffer = Buffer::alloc(backend, array.dtype(), array.len())?;
    buffer.upload(array.bytes())?;
    Ok(buffer)
}

pub(crate) fn download(buffer: &Buffer, dtype: DType, shape: &[usize]) -> Result<Array> {
    Array::from_bytes(dtype, shape, buffer.download()?)
}
