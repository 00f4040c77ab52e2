//! Reverse-mode automatic differentiation over the graph.
//!
//! The pass is symbolic: it walks the nodes between the inputs asked for and the output in
//! reverse topological order and builds, for each, its vector-Jacobian product from the rule in
//! its primitive's module ([`crate::ops`]), summing the cotangents of tensors used more than
//! once. The result is more graph, so gradients of gradients work and a [`Function`]
//! (crate::backend::Function) runs forward and backward passes as one plan.

use std::collections::{HashMap, HashSet};

use keras_backend_api::BinaryOp;

use crate::{
    error::{Error, Result},
    graph::{Tensor, topological_order},
    ops::{elementwise::binary, source},
};

/// `∂ sum(y · dy) / ∂ x` for each `x` of `wrt`; `None` where `y` does not depend on `x`
/// differentiably (not connected, only through `stop_gradient`, or through integers).
pub(crate) fn vjp_of(y: &Tensor, dy: &Tensor, wrt: &[Tensor]) -> Result<Vec<Option<Tensor>>> {
    let order = topological_order(std::slice::from_ref(y));
    let targets: HashSet<u64> = wrt.iter().map(Tensor::id).collect();

    // Only nodes downstream of a target can carry a gradient to one.
    let mut relevant = HashSet::new();
    for node in &order {
        if targets.contains(&node.id()) || node.inputs().iter().any(|i| relevant.contains(&i.id())) {
            relevant.insert(node.id());
        }
    }

    let mut cotangents: HashMap<u64, Tensor> = HashMap::new();
    if relevant.contains(&y.id()) {
        cotangents.insert(y.id(), dy.clone());
    }
    for node in order.iter().rev() {
        if node.inputs().is_empty() || !relevant.contains(&node.id()) {
            continue;
        }
        let Some(ct) = cotangents.get(&node.id()).cloned() else { continue };
        let grads = node.op().vjp(node.inputs(), node, &ct)?;
        for (input, grad) in node.inputs().iter().zip(grads) {
            let Some(grad) = grad else { continue };
            if !relevant.contains(&input.id()) {
                continue;
            }
            let total = match cotangents.remove(&input.id()) {
                Some(previous) => binary(BinaryOp::Add, &previous, &grad)?,
                None => grad,
            };
            cotangents.insert(input.id(), total);
        }
    }
    Ok(wrt.iter().map(|x| cotangents.get(&x.id()).cloned()).collect())
}

/// Keras's `gradients(loss, variables)`: the gradient of `sum(loss)` with respect to each
/// tensor, zeros where the loss does not depend on it.
pub(crate) fn gradients(loss: &Tensor, wrt: &[Tensor]) -> Result<Vec<Tensor>> {
    if !loss.dtype().is_float() {
        return Err(Error::graph("gradients", format!("the loss must be a float tensor, got {}", loss.dtype())));
    }
    if let Some(x) = wrt.iter().find(|x| !x.dtype().is_float()) {
        return Err(Error::graph(
            "gradients",
            format!("cannot differentiate with respect to {} {}", x.dtype(), x.describe()),
        ));
    }
    let seed = source::fill_like(1.0, loss, loss.dtype());
    let grads = vjp_of(loss, &seed, wrt)?;
    Ok(grads.into_iter().zip(wrt).map(|(g, x)| g.unwrap_or_else(|| source::fill_like(0.0, x, x.dtype()))).collect())
}
