//! The executor: a compiled [`Function`] specialises its graph to the shapes it is fed
//! ([`lower`]), plans buffer lifetimes ([`plan`]) and calls the backend's kernels
//! ([`kernels`]). Plans are cached per input-shape signature.

mod kernels;
mod lower;
pub(crate) mod plan;

use std::{
    borrow::Cow,
    cell::RefCell,
    collections::{HashMap, HashSet},
    sync::Arc,
};

use parking_lot::Mutex;

use crate::{
    Backend,
    array::Array,
    error::{Error, Result},
    graph::{Tensor, VarState, shape_string, topological_order},
    ops::Op,
    registry,
};

thread_local! {
    static BACKEND_OVERRIDE: RefCell<Vec<Backend>> = const { RefCell::new(Vec::new()) };
}

/// The backend new variables and functions use on this thread: the innermost
/// [`with_backend`] scope's, else the process-wide [`registry::active`] one.
pub fn current_backend() -> Result<Backend> {
    match BACKEND_OVERRIDE.with(|stack| stack.borrow().last().cloned()) {
        Some(backend) => Ok(backend),
        None => registry::active(),
    }
}

/// Runs `body` with `backend` as this thread's [`current_backend`] (for programs that use
/// several backends at once, such as the conformance runner).
pub fn with_backend<R>(backend: &Backend, body: impl FnOnce() -> R) -> R {
    struct Pop;
    impl Drop for Pop {
        fn drop(&mut self) {
            BACKEND_OVERRIDE.with(|stack| stack.borrow_mut().pop());
        }
    }
    BACKEND_OVERRIDE.with(|stack| stack.borrow_mut().push(backend.clone()));
    let _pop = Pop;
    body()
}

/// A compiled graph: host arrays in, host arrays out (Keras's `K.function`).
///
/// Calls from several threads at once are safe; each call sees the variables as they all were
/// at one moment when it started, and its updates replace them all at once when it ends: no
/// call sees some of another call's updates and not the others, and the last call to finish
/// wins when two calls update the same variable.
pub struct Function {
    backend: Backend,
    inputs: Vec<Tensor>,
    outputs: Vec<Tensor>,
    updates: Vec<(Arc<VarState>, Tensor)>,
    plans: Mutex<HashMap<Vec<Vec<usize>>, Arc<plan::Plan>>>,
}

impl Function {
    pub(crate) fn new(inputs: &[Tensor], outputs: &[Tensor], updates: &[(Tensor, Tensor)]) -> Result<Function> {
        let backend = current_backend()?;
        let mut fed = HashSet::new();
        for (k, input) in inputs.iter().enumerate() {
            if !input.is_placeholder() {
                return Err(Error::graph(
                    "function",
                    format!("input {k} ({:?}) is not a placeholder; only placeholders can be fed", input),
                ));
            }
            if !fed.insert(input.id()) {
                return Err(Error::graph("function", format!("input {k} ({}) is listed twice", input.describe())));
            }
        }
        let mut checked_updates = Vec::with_capacity(updates.len());
        for (k, (variable, value)) in updates.iter().enumerate() {
            let state = variable.variable().ok_or_else(|| {
                Error::graph("function", format!("update {k} targets {:?}, which is not a variable", variable))
            })?;
            let fits = value.dtype() == state.dtype
                && value.ndim() == state.shape.len()
                && value.shape().iter().zip(&state.shape).all(|(d, &n)| d.is_none_or(|d| d == n));
            if !fits {
                return Err(Error::graph(
                    "function",
                    format!(
                        "update {k} gives variable `{}` of shape {} {} a value of shape {} {}",
                        state.name,
                        shape_string(variable.shape()),
                        state.dtype,
                        shape_string(value.shape()),
                        value.dtype()
                    ),
                ));
            }
            checked_updates.push((state.clone(), value.clone()));
        }
        let update_values: Vec<Tensor> = updates.iter().map(|(_, v)| v.clone()).collect();
        plan::check_host_outputs(outputs, &update_values)?;
        let mut roots = outputs.to_vec();
        roots.extend(update_values);
        for node in topological_order(&roots) {
            if matches!(node.op(), Op::Placeholder) && !fed.contains(&node.id()) {
                return Err(Error::graph(
                    "function",
                    format!("the outputs depend on placeholder {}, which is not among the inputs", node.describe()),
                ));
            }
        }
        Ok(Function {
            backend,
            inputs: inputs.to_vec(),
            outputs: outputs.to_vec(),
            updates: checked_updates,
            plans: Mutex::new(HashMap::new()),
        })
    }

    /// The backend this function runs on.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Runs the function: one array per input (in order), one array per output back. The
    /// learning phase is 0 unless it is one of the inputs.
    pub fn call(&self, feeds: &[Array]) -> Result<Vec<Array>> {
        let conformed = self.conform_feeds(feeds)?;
        let plan = self.plan_for(conformed.signature)?;
        plan.run(&self.backend, &conformed.arrays, conformed.learning_phase)
    }

    /// The feeds checked against the inputs (see [`ConformedFeeds`]).
    fn conform_feeds<'a>(&self, feeds: &'a [Array]) -> Result<ConformedFeeds<'a>> {
        if feeds.len() != self.inputs.len() {
            return Err(Error::graph(
                "function",
                format!("expects {} input arrays, {} given", self.inputs.len(), feeds.len()),
            ));
        }
        let mut converted = Vec::with_capacity(feeds.len());
        let mut learning_phase = false;
        let mut signature = Vec::with_capacity(feeds.len());
        for (k, (input, feed)) in self.inputs.iter().zip(feeds).enumerate() {
            let feed = conform(k, input, feed)?;
            if matches!(input.op(), Op::LearningPhase) {
                learning_phase = feed.to_f64_vec().first().is_some_and(|&v| v != 0.0);
            }
            signature.push(feed.shape().to_vec());
            converted.push(feed);
        }
        Ok(ConformedFeeds { arrays: converted, signature, learning_phase })
    }

    /// The largest number of bytes of tensors alive at once on the backend while a call with
    /// `feeds` runs (their shapes, not their values, matter): the variables and constants the
    /// function reads, the fed inputs, and every intermediate result from its computation to
    /// its last use, as the executor releases them; an element-wise result written over its
    /// input counts once. This is the memory a call cannot do without, to compare a backend's
    /// actual footprint against.
    pub fn peak_live_bytes(&self, feeds: &[Array]) -> Result<u64> {
        Ok(self.plan_for(self.conform_feeds(feeds)?.signature)?.peak_live_bytes())
    }

    fn plan_for(&self, signature: Vec<Vec<usize>>) -> Result<Arc<plan::Plan>> {
        if let Some(plan) = self.plans.lock().get(&signature) {
            return Ok(plan.clone());
        }
        let shapes: HashMap<u64, Vec<usize>> =
            self.inputs.iter().zip(&signature).map(|(t, s)| (t.id(), s.clone())).collect();
        let mut lowering = lower::Lowering::new(&self.backend, &shapes);
        let mut roots = self.outputs.clone();
        roots.extend(self.updates.iter().map(|(_, v)| v.clone()));
        let lowered = lowering.lower(&roots)?;
        let (outputs, values) = lowered.split_at(self.outputs.len());
        // Lowering rebuilds placeholders; feed positions follow the rebuilt ids.
        let rebuilt_inputs = lowering.lower(&self.inputs)?;
        let feeds: HashMap<u64, usize> = rebuilt_inputs.iter().enumerate().map(|(k, t)| (t.id(), k)).collect();
        let updates: Vec<(Arc<VarState>, Tensor)> =
            self.updates.iter().zip(values).map(|((state, _), value)| (state.clone(), value.clone())).collect();
        let plan = Arc::new(plan::Plan::new(&self.backend, outputs, &updates, &feeds)?);
        self.plans.lock().insert(signature, plan.clone());
        Ok(plan)
    }
}

/// A call's feeds, checked against the function's inputs.
struct ConformedFeeds<'a> {
    /// Each feed in its input's dtype: borrowed when it already has it (a training step's
    /// batch is not copied on the host before its upload), else converted.
    arrays: Vec<Cow<'a, Array>>,
    /// Their shapes: the signature a plan is specialised for.
    signature: Vec<Vec<usize>>,
    /// The learning phase they set (0 unless it is one of the inputs).
    learning_phase: bool,
}

/// Checks feed `k` against its placeholder and converts its dtype when they differ, as Keras
/// converts NumPy arrays (float to integer truncates; anything to bool is `!= 0`): rank and
/// every known size must match.
fn conform<'a>(k: usize, input: &Tensor, feed: &'a Array) -> Result<Cow<'a, Array>> {
    let fits =
        feed.ndim() == input.ndim() && input.shape().iter().zip(feed.shape()).all(|(d, &n)| d.is_none_or(|d| d == n));
    if !fits {
        return Err(Error::graph(
            "function",
            format!(
                "input {k} ({}) was fed an array of shape {}",
                input.describe(),
                shape_string(&crate::graph::known(feed.shape()))
            ),
        ));
    }
    if feed.dtype() == input.dtype() {
        return Ok(Cow::Borrowed(feed));
    }
    Array::from_f64s(input.dtype(), feed.shape(), &feed.to_f64_vec()).map(Cow::Owned)
}
