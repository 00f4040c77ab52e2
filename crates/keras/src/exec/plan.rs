//! Execution plans: a specialised graph in run order, with every buffer's last use known so it
//! is released (or its memory reused in place) as soon as nothing needs it.
//!
//! Host-computed outputs ([`HostFn`], `Op::HostOutput`) live here too: results whose shape
//! depends on the data (`ctc_decode`'s paths), computed on the host from downloaded inputs.
//! Such a node may only be an output of a function, so nothing downstream needs a shape
//! before the call.

use std::{borrow::Cow, collections::HashMap, sync::Arc};

use keras_backend_api::{DType, MINOR_SELECT_IN_PLACE};

use super::kernels;
use crate::{
    Backend, Buffer,
    array::Array,
    error::{Error, Result},
    graph::{Dim, Tensor, VARIABLES, VarState, byte_size, shape_string, topological_order},
    ops::{Inferred, Op},
};

/// A computation run on the host, after the device part of a call, on its inputs' downloaded
/// values; it may have several outputs, whose sizes may depend on the data.
pub(crate) trait HostFn: Send + Sync {
    /// The K function it implements, for messages.
    fn name(&self) -> &'static str;
    /// Shape (`None` where the data decides) and dtype of every output, from the inputs'
    /// partially known shapes.
    fn infer(&self, inputs: &[Tensor]) -> std::result::Result<Vec<(Vec<Dim>, DType)>, String>;
    /// Every output from the inputs' values.
    fn compute(&self, inputs: &[Array]) -> Result<Vec<Array>>;
}

/// One tensor per output of `function` applied to `inputs`. Each may only be an output of a
/// [`Function`](super::Function): nothing else may consume it.
pub(crate) fn host_outputs(function: Arc<dyn HostFn>, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
    let count = function.infer(inputs).map_err(|message| Error::graph(function.name(), message))?.len();
    (0..count)
        .map(|output| Tensor::new(Op::HostOutput { function: function.clone(), output }, inputs.to_vec()))
        .collect()
}

/// The shape rule of output `output` of a host computation.
pub(crate) fn infer_host_output(function: &dyn HostFn, output: usize, inputs: &[Tensor]) -> Inferred {
    let mut outputs = function.infer(inputs)?;
    if output >= outputs.len() {
        return Err(format!("output {output} of {} outputs", outputs.len()));
    }
    Ok(outputs.swap_remove(output))
}

/// Refuses graphs in which a host-computed output feeds another node or an update (its value
/// only exists after the device part of the call).
pub(crate) fn check_host_outputs(outputs: &[Tensor], update_values: &[Tensor]) -> Result<()> {
    let is_host = |t: &Tensor| matches!(t.op(), Op::HostOutput { .. });
    let refuse = |host: &Tensor, user: &str| {
        Err(Error::graph(
            host.op().name(),
            format!(
                "its result {} is computed on the host after the call and can only be an output of `function`, \
                 but it is used by {user}",
                shape_string(host.shape())
            ),
        ))
    };
    if let Some(value) = update_values.iter().find(|t| is_host(t)) {
        return refuse(value, "an update");
    }
    let mut roots = outputs.to_vec();
    roots.extend_from_slice(update_values);
    for node in topological_order(&roots) {
        if let Some(input) = node.inputs().iter().find(|t| is_host(t)) {
            return refuse(input, &format!("`{}`", node.op().name()));
        }
    }
    Ok(())
}

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
    /// Output `output` of a host computation on the step's inputs; no buffer.
    Host { function: Arc<dyn HostFn>, output: usize },
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
    /// Whether the backend's contract lets `select` write over a branch (minor
    /// [`MINOR_SELECT_IN_PLACE`]).
    select_in_place: bool,
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

        check_host_outputs(outputs, &updates.iter().map(|(_, value)| value.clone()).collect::<Vec<_>>())?;
        let mut steps = Vec::with_capacity(order.len());
        for node in &order {
            let shape = match node.op() {
                // A host output's size is only known once it is computed.
                Op::HostOutput { .. } => Vec::new(),
                _ => node.static_shape().ok_or_else(|| {
                    Error::graph(node.op().name(), format!("shape {:?} is still unknown after specialisation", node))
                })?,
            };
            // Sources get their shapes from the caller (`zeros_like` of a huge placeholder), not
            // from a shape rule: sizes are checked here once, so that runs can multiply freely.
            if byte_size(&shape, node.dtype()).is_none() {
                return Err(Error::graph(
                    node.op().name(),
                    format!("{:?} has more elements than memory can hold", node),
                ));
            }
            let inputs: Vec<usize> = node.inputs().iter().map(|t| slot_of[&t.id()]).collect();
            let source = match node.op() {
                Op::Placeholder => Source::Feed(*feeds.get(&node.id()).ok_or_else(|| {
                    Error::graph("function", format!("placeholder {} is not among the inputs", node.describe()))
                })?),
                Op::LearningPhase => Source::LearningPhase,
                Op::Variable(state) => {
                    // Another instance, even of the same plugin, knows nothing of the variable's
                    // buffer handle (or holds another buffer under it).
                    if !state.backend.is_same_instance(backend) {
                        return Err(Error::graph(
                            "function",
                            format!(
                                "variable `{}` lives on backend {}, the function runs on another backend {}",
                                state.name,
                                state.backend.describe(),
                                backend.describe()
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
                Op::HostOutput { function, output } => Source::Host { function: function.clone(), output: *output },
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
        // The loader refuses another MAJOR, so the minor says it all.
        let select_in_place = backend.contract_version().minor >= MINOR_SELECT_IN_PLACE;
        Ok(Plan { steps, outputs, updates, select_in_place })
    }

    /// Runs the plan: outputs are downloaded, then every update replaces its variable's
    /// buffer, so each update read the values from before the call.
    pub(crate) fn run(&self, backend: &Backend, feeds: &[Cow<'_, Array>], learning_phase: bool) -> Result<Vec<Array>> {
        // Every variable as they all are at this one moment, however long the call runs.
        let mut snapshot: Vec<Option<Arc<Buffer>>> = {
            let _reading = VARIABLES.read();
            let read = |step: &Step| match &step.source {
                Source::Variable(state) => Some(state.current()),
                _ => None,
            };
            self.steps.iter().map(read).collect()
        };
        let mut slots: Vec<Option<Arc<Buffer>>> = vec![None; self.steps.len()];
        let mut host = HostResults::default();
        for (index, step) in self.steps.iter().enumerate() {
            let buffer = match &step.source {
                Source::Host { function, output } => {
                    host.compute(index, &step.node, function, *output, &step.inputs, |k| {
                        download(live(&slots, k)?, self.steps[k].node.dtype(), &self.steps[k].shape)
                    })?;
                    for &k in &step.release {
                        slots[k] = None;
                    }
                    continue;
                }
                Source::Feed(k) => Arc::new(upload(backend, &feeds[*k])?),
                Source::LearningPhase => {
                    Arc::new(upload(backend, &Array::full(DType::Bool, &[], learning_phase as u8 as f64))?)
                }
                Source::Variable(_) => snapshot[index].take().ok_or_else(|| {
                    Error::graph("function", format!("internal: no snapshot of variable slot {index}"))
                })?,
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
                    let sole_holder = |k: usize| slots[k].as_ref().is_some_and(|b| Arc::strong_count(b) == 1);
                    let out = match self.reusable_input(index, sole_holder) {
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
            .map(|&k| match host.values.get(&k) {
                Some(value) => Ok(value.clone()),
                None => download(live(&slots, k)?, self.steps[k].node.dtype(), &self.steps[k].shape),
            })
            .collect::<Result<Vec<_>>>()?;
        let values = self.updates.iter().map(|(_, k)| live(&slots, *k).cloned()).collect::<Result<Vec<_>>>()?;
        let _writing = VARIABLES.write();
        for ((state, _), value) in self.updates.iter().zip(values) {
            state.replace(value);
        }
        Ok(results)
    }

    /// The largest number of buffer bytes alive at once during a run: the variables and
    /// constants read (held for the whole call), and each fed input and kernel result from its
    /// allocation to its release, as [`run`](Self::run) allocates, aliases, overwrites in place
    /// and releases them. Update values count until the end of the call.
    pub(crate) fn peak_live_bytes(&self) -> u64 {
        let bytes = |i: usize| byte_size(&self.steps[i].shape, self.steps[i].node.dtype()).unwrap_or(0) as u64;
        // The slot whose step allocated each slot's buffer, and how many live slots hold it.
        let mut owner: Vec<usize> = (0..self.steps.len()).collect();
        let mut holders = vec![0usize; self.steps.len()];
        let held_by_graph = |step: &Step| matches!(step.source, Source::Variable(_) | Source::Constant(_));
        let mut live: u64 = (0..self.steps.len()).filter(|&i| held_by_graph(&self.steps[i])).map(bytes).sum();
        let mut peak = live;
        for (index, step) in self.steps.iter().enumerate() {
            match &step.source {
                Source::Host { .. } => {}
                Source::Variable(_) | Source::Constant(_) => holders[index] = 1,
                Source::Alias(k) | Source::Print(k, _) => {
                    owner[index] = owner[*k];
                    holders[owner[index]] += 1;
                }
                Source::Feed(_) | Source::LearningPhase | Source::Kernel => {
                    let in_place = match step.source {
                        Source::Kernel => self.reusable_input(index, |k| holders[owner[k]] == 1),
                        _ => None,
                    };
                    match in_place {
                        Some(k) => owner[index] = owner[k],
                        None => live += bytes(index),
                    }
                    holders[owner[index]] += 1;
                }
            }
            peak = peak.max(live);
            for &k in &step.release {
                let buffer = owner[k];
                holders[buffer] = holders[buffer].saturating_sub(1);
                if holders[buffer] == 0 && !held_by_graph(&self.steps[buffer]) {
                    live -= bytes(buffer);
                }
            }
        }
        peak
    }

    /// An input buffer that an element-wise kernel may overwrite: same dtype and size as the
    /// output, last used here, and referenced by nothing else (not a variable, constant,
    /// alias or output). `sole_holder(k)` tells whether slot `k` is the only holder of its
    /// buffer. The contract allows it for `unary` and `binary`, and for a branch (never the
    /// condition) of `select` on backends of contract 1.1 or later.
    fn reusable_input(&self, index: usize, sole_holder: impl Fn(usize) -> bool) -> Option<usize> {
        let step = &self.steps[index];
        let candidates = match step.node.op() {
            Op::Unary(_) | Op::Binary(_) => &step.inputs[..],
            Op::Select if self.select_in_place => &step.inputs[1..],
            _ => return None,
        };
        let condition = matches!(step.node.op(), Op::Select).then(|| step.inputs[0]);
        candidates.iter().copied().find(|&k| {
            let input = &self.steps[k];
            step.release.contains(&k)
                && input.shape == step.shape
                && input.node.dtype() == step.node.dtype()
                && sole_holder(k)
                && condition != Some(k)
                // An input used twice by this step (x * x) may be overwritten too: the kernel
                // reads each element before writing it.
                && !matches!(input.source, Source::Variable(_) | Source::Constant(_))
        })
    }
}

/// The host computations of one call: each runs once for all of its outputs.
#[derive(Default)]
struct HostResults {
    /// Every output of each computation run so far, by (function, input slots).
    by_call: HashMap<(usize, Vec<usize>), Vec<Array>>,
    /// The value of each host step, by slot.
    values: HashMap<usize, Array>,
}

impl HostResults {
    /// Sets the value of host step `slot` (node `node`, output `output` of `function` on the
    /// slots `inputs`), running `function` unless this call already did on the same inputs.
    fn compute(
        &mut self,
        slot: usize,
        node: &Tensor,
        function: &Arc<dyn HostFn>,
        output: usize,
        inputs: &[usize],
        fetch: impl Fn(usize) -> Result<Array>,
    ) -> Result<()> {
        let key = (Arc::as_ptr(function) as *const () as usize, inputs.to_vec());
        if !self.by_call.contains_key(&key) {
            let values = inputs.iter().map(|&k| fetch(k)).collect::<Result<Vec<_>>>()?;
            self.by_call.insert(key.clone(), function.compute(&values)?);
        }
        let value = self.by_call[&key].get(output).cloned().ok_or_else(|| {
            Error::graph(function.name(), format!("internal: the host computation has no output {output}"))
        })?;
        let fits = value.dtype() == node.dtype()
            && value.ndim() == node.ndim()
            && node.shape().iter().zip(value.shape()).all(|(d, &n)| d.is_none_or(|d| d == n));
        if !fits {
            return Err(Error::graph(
                function.name(),
                format!("internal: output {output} is {:?} {}, expected {:?}", value.shape(), value.dtype(), node),
            ));
        }
        self.values.insert(slot, value);
        Ok(())
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

#[cfg(all(test, feature = "embedded-cpu"))]
mod tests {
    use crate::{
        Array, backend as K,
        registry::{ContractVersion, builtin_declaring},
    };

    /// `switch(x > 0, square(x), abs(x))`: both branches die at the select, so from contract 1.1 on
    /// the select writes over one of them and the call needs one f32 [1000] less.
    #[test]
    fn select_writes_over_a_dead_branch_from_contract_1_1() {
        let values: Vec<f32> = (0..1000).map(|i| i as f32 - 500.0).collect();
        let expected: Vec<f32> = values.iter().map(|&v| if v > 0.0 { v * v } else { v.abs() }).collect();
        let feeds = [Array::from_vec(&[1000], values).unwrap()];
        let peak = |minor: u32| {
            let backend = builtin_declaring(ContractVersion { major: 1, minor }).unwrap();
            K::with_backend(&backend, || {
                let x = K::placeholder(vec![Some(1000)]);
                let condition = K::greater(&x, &K::zeros_like(&x, None)).unwrap();
                let y = K::switch(&condition, &K::square(&x).unwrap(), &K::abs(&x).unwrap()).unwrap();
                let f = K::function(&[x], &[y], &[]).unwrap();
                let out = f.call(&feeds).unwrap();
                assert_eq!(out[0].to_vec::<f32>().unwrap(), expected, "contract 1.{minor}");
                f.peak_live_bytes(&feeds).unwrap()
            })
        };
        assert_eq!(peak(0), peak(1) + 4000, "contract 1.0 gets a new buffer, 1.1 writes over a branch");
    }
}
