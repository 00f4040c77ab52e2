//! Control flow: `switch`, the learning-phase selectors, and the loops `map_fn`, `foldl`,
//! `foldr`.
//!
//! The loops are unrolled over axis 0. When that axis (or any size the loop needs) is unknown
//! until fed, the loop is a late-built subgraph ([`Expander`]) that a
//! [`Function`](super::Function) unrolls once it knows the shapes; its result shape is learnt
//! by calling the loop body on placeholders of the slice shape (a graph that is never run).
//!
//! Tensors that the body closure captures (weights, other placeholders) become inputs of the
//! late-built node ([`special::expand_body`]), so [`gradients`](super::gradients) reach them as
//! well as the loop's own arguments.

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

/// `then_expression` where `condition` holds, else `else_expression`: `condition != 0 ? then :
/// else`, with NumPy broadcasting.
///
/// A scalar `condition` (TensorFlow's Keras, cast to bool) picks one whole tensor; an
/// element-wise `condition` selects element by element (Theano's `switch`, which TensorFlow's
/// Keras 1.2.2 cannot do). Both branches need one dtype.
pub fn switch(condition: &Tensor, then_expression: &Tensor, else_expression: &Tensor) -> Result<Tensor> {
    let graph = || select(&cast(condition, DType::Bool)?, then_expression, else_expression);
    named("switch", graph())
}

/// `x` in the training phase ([`learning_phase`](super::learning_phase) fed 1), else `alt`.
pub fn in_train_phase(x: &Tensor, alt: &Tensor) -> Result<Tensor> {
    named("in_train_phase", select(&source::learning_phase(), x, alt))
}

/// `x` in the test phase ([`learning_phase`](super::learning_phase) 0, the default), else `alt`.
pub fn in_test_phase(x: &Tensor, alt: &Tensor) -> Result<Tensor> {
    named("in_test_phase", select(&source::learning_phase(), alt, x))
}

/// `f` applied to each slice `elems[i]` along axis 0, the results stacked on a new axis 0.
///
/// The result's dtype is `f`'s. The length of axis 0 may be unknown until fed.
pub fn map_fn(f: impl Fn(&Tensor) -> Result<Tensor> + Send + Sync + 'static, elems: &Tensor) -> Result<Tensor> {
    build_loop(LoopBody::Map(Box::new(f)), elems, None)
}

/// Left fold over axis 0: `acc = f(acc, elems[i])` for `i` from first to last.
///
/// `acc` starts at `initializer`, or at `elems[0]` when it is `None` (the fold then runs over
/// `elems[1:]`, and an empty `elems` is an error). `f` must return a tensor of `acc`'s rank and
/// dtype.
pub fn foldl(
    f: impl Fn(&Tensor, &Tensor) -> Result<Tensor> + Send + Sync + 'static,
    elems: &Tensor,
    initializer: Option<&Tensor>,
) -> Result<Tensor> {
    build_loop(LoopBody::Fold { f: Box::new(f), reverse: false }, elems, initializer)
}

/// Right fold over axis 0: `acc = f(acc, elems[i])` for `i` from last to first.
///
/// `acc` starts at `initializer`, or at `elems[-1]` when it is `None`.
pub fn foldr(
    f: impl Fn(&Tensor, &Tensor) -> Result<Tensor> + Send + Sync + 'static,
    elems: &Tensor,
    initializer: Option<&Tensor>,
) -> Result<Tensor> {
    build_loop(LoopBody::Fold { f: Box::new(f), reverse: true }, elems, initializer)
}

type MapBody = dyn Fn(&Tensor) -> Result<Tensor> + Send + Sync;
type FoldBody = dyn Fn(&Tensor, &Tensor) -> Result<Tensor> + Send + Sync;

enum LoopBody {
    Map(Box<MapBody>),
    Fold { f: Box<FoldBody>, reverse: bool },
}

/// A loop over axis 0 of `inputs[0]`; `inputs[1]` is the fold's initializer when there is one,
/// and any further inputs are the tensors the body captures.
struct Loop {
    body: LoopBody,
    has_initializer: bool,
}

fn build_loop(body: LoopBody, elems: &Tensor, initializer: Option<&Tensor>) -> Result<Tensor> {
    let looped = Loop { body, has_initializer: initializer.is_some() };
    if elems.ndim() == 0 {
        return Err(Error::graph(
            looped.name(),
            format!("elems must have at least one axis, got a scalar {}", elems.describe()),
        ));
    }
    let mut inputs = vec![elems.clone()];
    inputs.extend(initializer.cloned());
    Ok(special::expand_body(looped, &inputs)?.remove(0))
}

impl Body for Loop {
    /// The placeholders are the element, then (for a fold) the accumulator.
    fn probe(&self, inputs: &[Tensor]) -> Result<(Vec<Tensor>, Vec<Tensor>)> {
        let elems = &inputs[0];
        let element = source::placeholder(elems.shape()[1..].to_vec(), elems.dtype(), None);
        match &self.body {
            LoopBody::Map(f) => {
                let result = f(&element)?;
                Ok((vec![element], vec![result]))
            }
            LoopBody::Fold { f, .. } => {
                let start = if self.has_initializer { &inputs[1] } else { &element };
                let acc = source::placeholder(start.shape().to_vec(), start.dtype(), None);
                let result = f(&acc, &element)?;
                Ok((vec![element, acc], vec![result]))
            }
        }
    }
}

impl Loop {
    /// The result's shape and dtype (from the probe), checking a fold's body keeps `acc`'s type.
    fn result_type(&self, inputs: &[Tensor]) -> Result<(Vec<Dim>, DType)> {
        let (probes, mut results) = self.probe(inputs)?;
        let result = results.remove(0);
        match &self.body {
            LoopBody::Map(_) => {
                let mut shape = vec![inputs[0].shape()[0]];
                shape.extend_from_slice(result.shape());
                Ok((shape, result.dtype()))
            }
            LoopBody::Fold { .. } => {
                let acc = &probes[1];
                let merged = merge_dims(acc.shape(), result.shape()).filter(|_| acc.dtype() == result.dtype());
                merged.map(|shape| (shape, acc.dtype())).ok_or_else(|| {
                    Error::graph(
                        self.name(),
                        format!(
                            "the function must return a tensor like the accumulator {} {}, got {} {}",
                            shape_string(acc.shape()),
                            acc.dtype(),
                            shape_string(result.shape()),
                            result.dtype()
                        ),
                    )
                })
            }
        }
    }
}

impl Expander for Loop {
    fn name(&self) -> &'static str {
        match self.body {
            LoopBody::Map(_) => "map_fn",
            LoopBody::Fold { reverse: false, .. } => "foldl",
            LoopBody::Fold { reverse: true, .. } => "foldr",
        }
    }

    fn infer(&self, inputs: &[Tensor]) -> std::result::Result<Vec<(Vec<Dim>, DType)>, String> {
        self.result_type(inputs).map(|t| vec![t]).map_err(|e| e.to_string())
    }

    fn expand(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let elems = &inputs[0];
        let length = elems.shape()[0].ok_or_else(|| {
            Error::graph(self.name(), format!("the length of elems {} is still unknown", elems.describe()))
        })?;
        check_unrolled_steps(self.name(), elems, 0, length)?;
        let result = match &self.body {
            LoopBody::Map(f) => {
                let mut rows = Vec::with_capacity(length);
                for i in 0..length {
                    rows.push(insert_axes(&f(&step_of(elems, 0, i)?)?, &[0])?);
                }
                if rows.is_empty() { empty_map_result(self, inputs)? } else { named(self.name(), concat(&rows, 0))? }
            }
            LoopBody::Fold { f, reverse } => {
                let mut order: Vec<usize> = (0..length).collect();
                if *reverse {
                    order.reverse();
                }
                let (mut acc, rest) = match (self.has_initializer, order.split_first()) {
                    (true, _) => (inputs[1].clone(), &order[..]),
                    (false, Some((&first, rest))) => (step_of(elems, 0, first)?, rest),
                    (false, None) => {
                        return Err(Error::graph(
                            self.name(),
                            format!("elems {} is empty and there is no initializer", elems.describe()),
                        ));
                    }
                };
                for &i in rest {
                    acc = f(&acc, &step_of(elems, 0, i)?)?;
                }
                acc
            }
        };
        Ok(vec![result])
    }
}

/// `map_fn` over zero elements: an empty stack of the shape `f` would give.
fn empty_map_result(looped: &Loop, inputs: &[Tensor]) -> Result<Tensor> {
    let (shape, dtype) = looped.result_type(inputs)?;
    let known: Option<Vec<usize>> = shape.iter().copied().collect();
    known.map(|shape| source::fill(0.0, dtype, &shape)).ok_or_else(|| {
        Error::graph(
            looped.name(),
            format!("elems is empty and the result shape {} is not known", shape_string(&shape)),
        )
    })
}
