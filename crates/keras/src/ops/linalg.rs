//! Batched matrix product, the one primitive behind `dot`, `batch_dot` and dense layers.

use super::{
    Inferred, Op,
    elementwise::{broadcast_dims, sum_to_like},
};
use crate::{error::Result, graph::Tensor};

pub(crate) fn matmul(a: &Tensor, b: &Tensor, transpose_a: bool, transpose_b: bool) -> Result<Tensor> {
    Tensor::new(Op::MatMul { transpose_a, transpose_b }, vec![a.clone(), b.clone()])
}

pub(crate) fn infer(op: &Op, inputs: &[Tensor]) -> Inferred {
    let Op::MatMul { transpose_a, transpose_b } = *op else { unreachable!("not a matmul") };
    let (a, b) = (&inputs[0], &inputs[1]);
    if a.dtype() != b.dtype() || !a.dtype().is_float() {
        return Err(format!("needs two float tensors of one dtype, got {} and {}", a.dtype(), b.dtype()));
    }
    let (sa, sb) = (a.shape(), b.shape());
    if sa.len() < 2 || sb.len() < 2 {
        return Err(format!("needs rank >= 2, got {}", super::shapes_of(inputs)));
    }
    let (ra, rb) = (sa.len(), sb.len());
    let (m, ka) = if transpose_a { (sa[ra - 1], sa[ra - 2]) } else { (sa[ra - 2], sa[ra - 1]) };
    let (kb, n) = if transpose_b { (sb[rb - 1], sb[rb - 2]) } else { (sb[rb - 2], sb[rb - 1]) };
    if let (Some(ka), Some(kb)) = (ka, kb)
        && ka != kb
    {
        return Err(format!("inner dimensions differ ({ka} vs {kb}) for shapes {}", super::shapes_of(inputs)));
    }
    let mut shape = broadcast_dims(&sa[..ra - 2], &sb[..rb - 2])?;
    shape.extend([m, n]);
    Ok((shape, a.dtype()))
}

pub(crate) fn vjp(op: &Op, inputs: &[Tensor], _y: &Tensor, dy: &Tensor) -> Result<Vec<Option<Tensor>>> {
    let Op::MatMul { transpose_a, transpose_b } = *op else { unreachable!("not a matmul") };
    let (a, b) = (&inputs[0], &inputs[1]);
    let (da, db) = match (transpose_a, transpose_b) {
        (false, false) => (matmul(dy, b, false, true)?, matmul(a, dy, true, false)?),
        (false, true) => (matmul(dy, b, false, false)?, matmul(dy, a, true, false)?),
        (true, false) => (matmul(b, dy, false, true)?, matmul(a, dy, false, false)?),
        (true, true) => (matmul(b, dy, true, true)?, matmul(dy, a, true, true)?),
    };
    // Broadcast batch dims receive the sum over the batch.
    Ok(vec![Some(sum_to_like(&da, a)?), Some(sum_to_like(&db, b)?)])
}
