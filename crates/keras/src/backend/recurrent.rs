//! Recurrence: `rnn`, a step function looped over time.
//!
//! The loop is unrolled: one copy of the step's graph per time step, so gradients through time
//! are ordinary reverse mode over the unrolled graph. When the number of steps (or any other
//! size) is unknown until fed, the loop is a late-built subgraph ([`special::expand_body`]) that
//! a [`Function`](super::Function) unrolls once it knows the shapes; the tensors the step
//! function captures (its weights) become inputs of that node, so gradients reach them.

use keras_backend_api::DType;

use super::math::named;
use crate::{
    error::{Error, Result},
    graph::{Dim, Tensor, shape_string},
    ops::{
        Expander,
        elementwise::{cast, select},
        movement::{concat, insert_axes},
        source,
        special::{self, Body, check_unrolled_steps, merge_dims, step_of},
    },
};

type StepFn = dyn Fn(&Tensor, &[Tensor]) -> Result<(Tensor, Vec<Tensor>)> + Send + Sync;

/// Iterates `step_function` over axis 1 (time) of `inputs`: Keras's `K.rnn`, returning
/// `(last_output, outputs, new_states)` with `outputs` of shape `(batch, time, ...)`.
///
/// `step_function(x_t, states ++ constants)` returns the step's output and new states (as
/// many as `initial_states`, each like its initial state). `outputs` is in processing order:
/// with `go_backwards`, `outputs[:, i]` belongs to input step `time - 1 - i`. `mask` is
/// `(batch, time)` (bool, or numbers where non-zero means kept); at a masked step every state
/// is kept and the output repeats the previous one, which is TensorFlow's rule for each
/// `unroll` flag: with `unroll` the previous output (zeros before the first kept step),
/// without it `states[0]` (so a mask needs at least one state then). The time length may be
/// unknown until fed, with either flag. `input_length`, when given, must be the time length;
/// it gives the outputs a static time length when the input has none.
#[allow(clippy::too_many_arguments)] // Keras's signature.
pub fn rnn(
    step_function: impl Fn(&Tensor, &[Tensor]) -> Result<(Tensor, Vec<Tensor>)> + Send + Sync + 'static,
    inputs: &Tensor,
    initial_states: &[Tensor],
    go_backwards: bool,
    mask: Option<&Tensor>,
    constants: &[Tensor],
    unroll: bool,
    input_length: Option<usize>,
) -> Result<(Tensor, Tensor, Vec<Tensor>)> {
    if inputs.ndim() < 3 {
        return Err(Error::graph(
            "rnn",
            format!("inputs must be at least 3-D (batch, time, ...), got {}", inputs.describe()),
        ));
    }
    if let Some(mask) = mask
        && (mask.ndim() != 2 || merge_dims(mask.shape(), &inputs.shape()[..2]).is_none())
    {
        return Err(Error::graph(
            "rnn",
            format!(
                "mask must be (batch, time) = {} like inputs {}, got {}",
                shape_string(&inputs.shape()[..2]),
                inputs.describe(),
                mask.describe()
            ),
        ));
    }
    if let (Some(length), Some(time)) = (input_length, inputs.shape()[1])
        && length != time
    {
        return Err(Error::graph(
            "rnn",
            format!("input_length {length} differs from the time length of inputs {}", inputs.describe()),
        ));
    }
    if mask.is_some() && !unroll && initial_states.is_empty() {
        return Err(Error::graph(
            "rnn",
            "a mask without unroll needs initial states: masked steps output states[0]".to_string(),
        ));
    }
    let recurrence = Recurrence {
        step: Box::new(step_function),
        states: initial_states.len(),
        constants: constants.len(),
        has_mask: mask.is_some(),
        go_backwards,
        unroll,
        input_length,
    };
    let mut loop_inputs = vec![inputs.clone()];
    loop_inputs
        .extend(mask.map(|m| if m.dtype() == DType::Bool { Ok(m.clone()) } else { cast(m, DType::Bool) }).transpose()?);
    loop_inputs.extend_from_slice(initial_states);
    loop_inputs.extend_from_slice(constants);
    // Checks the step function's types once, whether the loop is built now or later.
    recurrence.result_types(&loop_inputs)?;
    let mut outputs = special::expand_body(recurrence, &loop_inputs)?.into_iter();
    let (Some(last_output), Some(all_outputs)) = (outputs.next(), outputs.next()) else {
        return Err(Error::graph("rnn", "the loop did not build its outputs".to_string()));
    };
    Ok((last_output, all_outputs, outputs.collect()))
}

/// The unrolled loop. Inputs: `inputs`, the bool mask when there is one, the initial states,
/// the constants, then the tensors the step function captures. Outputs: the last output, the
/// stacked outputs, then the final states.
struct Recurrence {
    step: Box<StepFn>,
    states: usize,
    constants: usize,
    has_mask: bool,
    go_backwards: bool,
    unroll: bool,
    input_length: Option<usize>,
}

/// One [`Recurrence`]'s inputs by role.
struct Parts<'a> {
    x: &'a Tensor,
    mask: Option<&'a Tensor>,
    states: &'a [Tensor],
    constants: &'a [Tensor],
}

impl Recurrence {
    fn parts<'a>(&self, inputs: &'a [Tensor]) -> Parts<'a> {
        let first_state = 1 + usize::from(self.has_mask);
        let first_constant = first_state + self.states;
        Parts {
            x: &inputs[0],
            mask: self.has_mask.then(|| &inputs[1]),
            states: &inputs[first_state..first_constant],
            constants: &inputs[first_constant..first_constant + self.constants],
        }
    }

    /// The step function called with `states ++ constants`, checked to return as many states as
    /// it was given.
    fn call_step(&self, x_t: &Tensor, states: &[Tensor], constants: &[Tensor]) -> Result<(Tensor, Vec<Tensor>)> {
        let mut args = states.to_vec();
        args.extend_from_slice(constants);
        let (output, new_states) = (self.step)(x_t, &args)?;
        if new_states.len() != states.len() {
            return Err(Error::graph(
                "rnn",
                format!("the step function returned {} states for {} initial states", new_states.len(), states.len()),
            ));
        }
        Ok((output, new_states))
    }

    /// Shape and dtype of every output, from one probe step: checks that each new state is
    /// like its state and that a masked non-unrolled step's output is like `states[0]`.
    fn result_types(&self, inputs: &[Tensor]) -> Result<Vec<(Vec<Dim>, DType)>> {
        let parts = self.parts(inputs);
        let (probes, results) = self.probe(inputs)?;
        let (output, new_states) = (&results[0], &results[1..]);
        let mismatch = |what: String, expected: &Tensor, got: &Tensor| {
            Error::graph(
                "rnn",
                format!(
                    "{what} must be like {} {}, got {} {}",
                    shape_string(expected.shape()),
                    expected.dtype(),
                    shape_string(got.shape()),
                    got.dtype()
                ),
            )
        };
        let like = |a: &Tensor, b: &Tensor| merge_dims(a.shape(), b.shape()).filter(|_| a.dtype() == b.dtype());
        let mut types = Vec::with_capacity(2 + new_states.len());
        let mut output_shape = output.shape().to_vec();
        if self.has_mask && !self.unroll {
            let state = &probes[1];
            output_shape = like(state, output).ok_or_else(|| {
                mismatch(
                    "with a mask and no unroll, the step output (masked steps output states[0])".to_string(),
                    state,
                    output,
                )
            })?;
        }
        if output_shape.is_empty() {
            return Err(Error::graph(
                "rnn",
                "the step function's output must have a batch axis, got a scalar".to_string(),
            ));
        }
        let mut outputs_shape = output_shape.clone();
        outputs_shape.insert(1, parts.x.shape()[1].or(self.input_length));
        types.push((output_shape, output.dtype()));
        types.push((outputs_shape, output.dtype()));
        for (k, (state, new_state)) in probes[1..].iter().zip(new_states).enumerate() {
            let shape = like(state, new_state).ok_or_else(|| mismatch(format!("new state {k}"), state, new_state))?;
            types.push((shape, state.dtype()));
        }
        Ok(types)
    }
}

/// `new` where the step's mask `kept` (`(batch,)` bool) holds, else `old`, row by row.
fn keep(kept: &Tensor, new: &Tensor, old: &Tensor) -> Result<Tensor> {
    let rows: Vec<usize> = (1..new.ndim()).collect();
    let kept = if rows.is_empty() { kept.clone() } else { insert_axes(kept, &rows)? };
    named("rnn", select(&kept, new, old))
}

impl Body for Recurrence {
    /// The placeholders are `x_t`, then one per state; the results the output, then the new
    /// states.
    fn probe(&self, inputs: &[Tensor]) -> Result<(Vec<Tensor>, Vec<Tensor>)> {
        let parts = self.parts(inputs);
        let mut step_shape = parts.x.shape().to_vec();
        step_shape.remove(1);
        let x_t = source::placeholder(step_shape, parts.x.dtype(), None);
        let states: Vec<Tensor> =
            parts.states.iter().map(|s| source::placeholder(s.shape().to_vec(), s.dtype(), None)).collect();
        let (output, new_states) = self.call_step(&x_t, &states, parts.constants)?;
        let mut probes = vec![x_t];
        probes.extend(states);
        let mut results = vec![output];
        results.extend(new_states);
        Ok((probes, results))
    }
}

impl Expander for Recurrence {
    fn name(&self) -> &'static str {
        "rnn"
    }

    fn infer(&self, inputs: &[Tensor]) -> std::result::Result<Vec<(Vec<Dim>, DType)>, String> {
        self.result_types(inputs).map_err(|e| e.to_string())
    }

    fn expand(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let parts = self.parts(inputs);
        let time = parts.x.shape()[1].ok_or_else(|| {
            Error::graph("rnn", format!("the time length of {} is still unknown", parts.x.describe()))
        })?;
        if time == 0 {
            return Err(Error::graph("rnn", format!("inputs {} has no time steps", parts.x.describe())));
        }
        check_unrolled_steps("rnn", parts.x, 1, time)?;
        if let Some(length) = self.input_length.filter(|&n| n != time) {
            return Err(Error::graph("rnn", format!("input_length {length} differs from the fed time length {time}")));
        }
        let mut order: Vec<usize> = (0..time).collect();
        if self.go_backwards {
            order.reverse();
        }
        let mut states = parts.states.to_vec();
        let mut outputs = Vec::with_capacity(time);
        let mut last_output: Option<Tensor> = None;
        for t in order {
            let (mut output, mut new_states) = self.call_step(&step_of(parts.x, 1, t)?, &states, parts.constants)?;
            if let Some(mask) = parts.mask {
                let kept = step_of(mask, 1, t)?;
                let previous = match (&last_output, self.unroll) {
                    (Some(previous), true) => previous.clone(),
                    (None, true) => source::fill_like(0.0, &output, output.dtype()),
                    // TensorFlow's symbolic loop repeats the state, not the output (README 8(k)).
                    (_, false) => states[0].clone(),
                };
                output = keep(&kept, &output, &previous)?;
                new_states =
                    new_states.iter().zip(&states).map(|(new, old)| keep(&kept, new, old)).collect::<Result<_>>()?;
            }
            outputs.push(insert_axes(&output, &[1])?);
            states = new_states;
            last_output = Some(output);
        }
        let last_output = last_output.ok_or_else(|| Error::graph("rnn", "no time steps".to_string()))?;
        let mut results = vec![last_output, named("rnn", concat(&outputs, 1))?];
        results.extend(states);
        Ok(results)
    }
}
