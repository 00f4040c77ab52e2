//! Neural-network functions outside convolution: softmax, losses, normalisation, dropout,
//! top-k.
//!
//! Everything is composed from primitives, so every loss here is differentiable by
//! [`gradients`](super::gradients). Semantics are TensorFlow 1.0.1's under Keras 1.2.2.

use std::sync::atomic::{AtomicU64, Ordering};

use keras_backend_api::{BinaryOp, DType, Distribution, ReduceOp, UnaryOp};

use super::{
    config::epsilon,
    math::{axis_of, clip, mean, named, var},
};
use crate::{
    error::{Error, Result},
    graph::{Dim, Tensor, shape_string},
    ops::{
        elementwise::{binary, cast, select, unary},
        movement::{one_hot, remove_axes, reshape, reshape_like},
        reduce::{reduce, softmax as softmax_op},
        source,
        special::late,
    },
};

/// A 0-d tensor of `like`'s dtype.
fn scalar(value: f64, like: &Tensor) -> Result<Tensor> {
    source::scalar(value, like.dtype())
}

/// The last axis of `x`, which must have one.
fn last_axis(function: &str, x: &Tensor) -> Result<usize> {
    match x.ndim() {
        0 => {
            Err(Error::graph(function, format!("the input must have at least one axis, got a scalar {}", x.describe())))
        }
        rank => Ok(rank - 1),
    }
}

/// `clip(x, ε, 1 − ε)` with both bounds rounded to `x`'s dtype (float32 `1 − ε` is 0.99999988).
fn clip_probabilities(x: &Tensor) -> Result<Tensor> {
    let eps = epsilon();
    clip(x, eps, Some(1.0 - eps))
}

/// Softmax over the last axis, for any rank ≥ 1: `exp(x − max) / Σ exp(x − max)`.
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    let axis = last_axis("softmax", x)?;
    named("softmax", softmax_op(x, axis, false))
}

/// Cross-entropy over the last axis; the result has shape `output.shape[:-1]`.
///
/// Not from logits: `p = output / Σ_last output`, clipped to `[ε, 1 − ε]`, loss `−Σ target·log p`.
/// From logits: `Σ target·(logsumexp(output) − output)`. `target` may hold soft weights.
pub fn categorical_crossentropy(output: &Tensor, target: &Tensor, from_logits: bool) -> Result<Tensor> {
    const NAME: &str = "categorical_crossentropy";
    let axis = last_axis(NAME, output)?;
    named(NAME, cce_graph(output, target, axis, from_logits))
}

fn cce_graph(output: &Tensor, target: &Tensor, axis: usize, from_logits: bool) -> Result<Tensor> {
    let log_p = if from_logits {
        softmax_op(output, axis, true)?
    } else {
        let total = reduce(ReduceOp::Sum, output, &[axis], true)?;
        unary(UnaryOp::Log, &clip_probabilities(&binary(BinaryOp::Div, output, &total)?)?)?
    };
    let weighted = binary(BinaryOp::Mul, target, &log_p)?;
    let last = weighted.ndim() - 1;
    unary(UnaryOp::Neg, &reduce(ReduceOp::Sum, &weighted, &[last], false)?)
}

/// Cross-entropy with integer class indices (TensorFlow's rule, README A.7).
///
/// `target` of any shape is flattened and cast to int64 (float labels truncate toward zero);
/// `output` is seen as `(N, C)` rows of probabilities (clipped to `[ε, 1 − ε]`, not
/// renormalised) or of logits. Per row: `logsumexp(logits) − logits[target]`. The result is
/// `(N,)`, reshaped to `output.shape[:-1]` when `output` is 3-D. `C` must be known when
/// building. A label outside `[0, C)` selects no class, so its row gives `logsumexp(logits)`.
pub fn sparse_categorical_crossentropy(output: &Tensor, target: &Tensor, from_logits: bool) -> Result<Tensor> {
    const NAME: &str = "sparse_categorical_crossentropy";
    let axis = last_axis(NAME, output)?;
    let Some(classes) = output.shape()[axis] else {
        return Err(Error::graph(
            NAME,
            format!("the number of classes (last axis of output {}) must be known", output.describe()),
        ));
    };
    let rows = output.shape()[..axis].iter().try_fold(1usize, |acc, d| d.map(|d| acc * d));
    let labels = target.shape().iter().try_fold(1usize, |acc, d| d.map(|d| acc * d));
    if let (Some(rows), Some(labels)) = (rows, labels)
        && rows != labels
    {
        return Err(Error::graph(
            NAME,
            format!(
                "output {} has {rows} rows of {classes} classes but target {} holds {labels} labels",
                output.describe(),
                target.describe()
            ),
        ));
    }
    let loss = named(NAME, sparse_cce_graph(output, target, classes, from_logits))?;
    if output.ndim() != 3 {
        return Ok(loss);
    }
    let leading = output.shape()[..2].to_vec();
    named(NAME, reshape_to_dims(&loss, output, leading))
}

fn sparse_cce_graph(output: &Tensor, target: &Tensor, classes: usize, from_logits: bool) -> Result<Tensor> {
    let logits = if from_logits { output.clone() } else { unary(UnaryOp::Log, &clip_probabilities(output)?)? };
    let rows = reshape(&logits, &[-1, classes as isize])?;
    let labels = cast(&reshape(target, &[-1])?, DType::I64)?;
    let hot = one_hot(&labels, classes, DType::Bool)?;
    let log_p = softmax_op(&rows, 1, true)?;
    // A select rather than a product, so an infinite logit elsewhere in the row cannot turn
    // the picked value into NaN (0 · inf).
    let picked = select(&hot, &log_p, &scalar(0.0, &log_p)?)?;
    unary(UnaryOp::Neg, &reduce(ReduceOp::Sum, &picked, &[1], false)?)
}

/// `x` reshaped to `dims`, which are `like`'s leading dims: read from `like` when it is fed if
/// some are unknown now.
fn reshape_to_dims(x: &Tensor, like: &Tensor, dims: Vec<Dim>) -> Result<Tensor> {
    let count = dims.len();
    if let Some(known) = dims.iter().copied().collect::<Option<Vec<usize>>>() {
        return reshape(x, &known.iter().map(|&d| d as isize).collect::<Vec<_>>());
    }
    late("reshape", &[x.clone(), like.clone()], dims, x.dtype(), move |t| {
        // Every size is known here; -1 would let reshape infer one that is not.
        let dims: Vec<isize> = t[1].shape()[..count].iter().map(|d| d.map_or(-1, |d| d as isize)).collect();
        reshape(&t[0], &dims)
    })
}

/// Element-wise binary cross-entropy (TensorFlow's `sigmoid_cross_entropy_with_logits`).
///
/// `z = output` when `from_logits`, else `z = log(p / (1 − p))` with `p = clip(output, ε, 1 − ε)`;
/// loss `= max(z, 0) − z·target + log(1 + exp(−|z|))`. Output 1 with target 0 gives 15.942385
/// in float32.
pub fn binary_crossentropy(output: &Tensor, target: &Tensor, from_logits: bool) -> Result<Tensor> {
    named("binary_crossentropy", bce_graph(output, target, from_logits))
}

fn bce_graph(output: &Tensor, target: &Tensor, from_logits: bool) -> Result<Tensor> {
    let z = if from_logits {
        output.clone()
    } else {
        let p = clip_probabilities(output)?;
        let odds = binary(BinaryOp::Div, &p, &binary(BinaryOp::Sub, &scalar(1.0, &p)?, &p)?)?;
        unary(UnaryOp::Log, &odds)?
    };
    // The same selects as TensorFlow, so the derivative at z = 0 matches too.
    let zero = scalar(0.0, &z)?;
    let non_negative = binary(BinaryOp::GreaterEqual, &z, &zero)?;
    let relu = select(&non_negative, &z, &zero)?;
    let neg_abs = select(&non_negative, &unary(UnaryOp::Neg, &z)?, &z)?;
    let linear = binary(BinaryOp::Sub, &relu, &binary(BinaryOp::Mul, &z, target)?)?;
    binary(BinaryOp::Add, &linear, &unary(UnaryOp::Log1p, &unary(UnaryOp::Exp, &neg_abs)?)?)
}

/// `x / sqrt(max(Σ_axis x², 1e-12))` (TensorFlow's rule: an all-zero slice gives zeros).
pub fn l2_normalize(x: &Tensor, axis: isize) -> Result<Tensor> {
    const NAME: &str = "l2_normalize";
    let axis = axis_of(NAME, x, axis)?;
    let graph = || {
        let squares = reduce(ReduceOp::Sum, &unary(UnaryOp::Square, x)?, &[axis], true)?;
        let norm = unary(UnaryOp::Sqrt, &binary(BinaryOp::Maximum, &squares, &scalar(1e-12, x)?)?)?;
        binary(BinaryOp::Div, x, &norm)
    };
    named(NAME, graph())
}

/// Whether each target class is among the top `k` predictions: `bool` `(B,)` from
/// `predictions` `(B, C)` (float) and `targets` `(B,)` (int32 or int64).
///
/// True when fewer than `k` classes have a strictly larger prediction than the target class
/// (ties count in the target's favour). As in TensorFlow 1.0.1, a row holding a non-finite
/// prediction gives false; so does a target outside `[0, C)` (where TensorFlow raises).
pub fn in_top_k(predictions: &Tensor, targets: &Tensor, k: usize) -> Result<Tensor> {
    const NAME: &str = "in_top_k";
    if predictions.ndim() != 2 || !predictions.dtype().is_float() {
        return Err(Error::graph(
            NAME,
            format!("predictions must be a 2-D float tensor, got {} {}", predictions.describe(), predictions.dtype()),
        ));
    }
    if targets.ndim() != 1 || !matches!(targets.dtype(), DType::I32 | DType::I64) {
        return Err(Error::graph(
            NAME,
            format!("targets must be a 1-D int32 or int64 tensor, got {} {}", targets.describe(), targets.dtype()),
        ));
    }
    if let (Some(a), Some(b)) = (predictions.shape()[0], targets.shape()[0])
        && a != b
    {
        return Err(Error::graph(
            NAME,
            format!("predictions {} and targets {} differ in batch size", predictions.describe(), targets.describe()),
        ));
    }
    let batch = predictions.shape()[0].or(targets.shape()[0]);
    let result = match predictions.shape()[1] {
        Some(classes) => top_k_graph(predictions, targets, k, classes),
        None => late(NAME, &[predictions.clone(), targets.clone()], vec![batch], DType::Bool, move |t| {
            let classes =
                t[0].shape()[1].ok_or_else(|| Error::graph(NAME, "the number of classes is still unknown"))?;
            top_k_graph(&t[0], &t[1], k, classes)
        }),
    };
    named(NAME, result)
}

fn top_k_graph(predictions: &Tensor, targets: &Tensor, k: usize, classes: usize) -> Result<Tensor> {
    let hot = one_hot(targets, classes, DType::Bool)?;
    // The target's own prediction, read by a select so other entries cannot leak in.
    let others = scalar(f64::NEG_INFINITY, predictions)?;
    let target_score = reduce(ReduceOp::Max, &select(&hot, predictions, &others)?, &[1], true)?;
    let larger = cast(&binary(BinaryOp::Greater, predictions, &target_score)?, DType::I32)?;
    let count = reduce(ReduceOp::Sum, &larger, &[1], false)?;
    let within = binary(BinaryOp::Less, &count, &source::scalar(k as f64, DType::I32)?)?;
    // x − x is 0 exactly for finite x, NaN for ±inf and NaN.
    let finite =
        binary(BinaryOp::Equal, &binary(BinaryOp::Sub, predictions, predictions)?, &scalar(0.0, predictions)?)?;
    let row_finite = reduce(ReduceOp::All, &finite, &[1], false)?;
    let zero = source::scalar(0.0, targets.dtype())?;
    let in_range = binary(
        BinaryOp::LogicalAnd,
        &binary(BinaryOp::GreaterEqual, targets, &zero)?,
        &binary(BinaryOp::Less, targets, &source::scalar(classes as f64, targets.dtype())?)?,
    )?;
    binary(BinaryOp::LogicalAnd, &binary(BinaryOp::LogicalAnd, &within, &row_finite)?, &in_range)
}

/// `(x − mean) / sqrt(var + epsilon) · gamma + beta` with NumPy broadcasting (1-D parameters
/// broadcast along the last axis). Keras's default `epsilon` is `1e-3`.
///
/// Computed as TensorFlow does: `inv = gamma / sqrt(var + epsilon)`, `x·inv + (beta − mean·inv)`.
pub fn batch_normalization(
    x: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    beta: &Tensor,
    gamma: &Tensor,
    epsilon: f64,
) -> Result<Tensor> {
    let graph = || {
        let std = unary(UnaryOp::Sqrt, &binary(BinaryOp::Add, var, &scalar(epsilon, var)?)?)?;
        let inv = binary(BinaryOp::Mul, &unary(UnaryOp::Reciprocal, &std)?, gamma)?;
        let offset = binary(BinaryOp::Sub, beta, &binary(BinaryOp::Mul, mean, &inv)?)?;
        binary(BinaryOp::Add, &binary(BinaryOp::Mul, x, &inv)?, &offset)
    };
    named("batch_normalization", graph())
}

/// Batch statistics and the normalised batch: `(normed, mean, var)`, where `mean` and the
/// population `var` are taken over `reduction_axes` (those axes removed) and `normed` is
/// [`batch_normalization`] of `x` with them (TensorFlow's rule: `var` has no `+ epsilon`).
///
/// When `reduction_axes` are all axes but the last, `gamma` and `beta` broadcast as given;
/// otherwise they are reshaped to `x`'s shape with 1 on the reduced axes (so `(C,)` fits
/// `(B, C, H, W)` reduced over `[0, 2, 3]`).
pub fn normalize_batch_in_training(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    reduction_axes: &[usize],
    epsilon: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    const NAME: &str = "normalize_batch_in_training";
    let mut axes = reduction_axes.to_vec();
    axes.sort_unstable();
    if let Some(&bad) = axes.iter().find(|&&a| a >= x.ndim()) {
        return Err(Error::graph(NAME, format!("reduction axis {bad} is out of range for x {}", x.describe())));
    }
    if axes.windows(2).any(|w| w[0] == w[1]) {
        return Err(Error::graph(NAME, format!("reduction_axes {reduction_axes:?} lists an axis twice")));
    }
    let kept_mean = named(NAME, mean(x, axes.clone(), true))?;
    let kept_var = named(NAME, var(x, axes.clone(), true))?;
    let batch_mean = named(NAME, remove_axes(&kept_mean, &axes))?;
    let batch_var = named(NAME, remove_axes(&kept_var, &axes))?;
    let all_but_last: Vec<usize> = (0..x.ndim().saturating_sub(1)).collect();
    let normed = if axes == all_but_last {
        batch_normalization(x, &batch_mean, &batch_var, beta, gamma, epsilon)
    } else {
        let beta = named(NAME, reshape_like(beta, &kept_mean))?;
        let gamma = named(NAME, reshape_like(gamma, &kept_mean))?;
        batch_normalization(x, &kept_mean, &kept_var, &beta, &gamma, epsilon)
    };
    Ok((named(NAME, normed)?, batch_mean, batch_var))
}

/// Seed of the `n`-th [`dropout`] built without one in this process: `DEFAULT_SEED_BASE + n`.
pub const DEFAULT_SEED_BASE: u64 = 0x6B65_7261_7300_0000;

fn default_seed() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    DEFAULT_SEED_BASE.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Zeroes each element of `x` with probability `level` and scales the rest by
/// `1 / (1 − level)`: `x / (1 − level) · mask`. `level` must lie in `[0, 1)`.
///
/// The keep mask is Bernoulli(`1 − level`) from the counter-based stream of
/// `keras_backend_api::random` (element `i` is 1 when its uniform is below `1 − level`), so a
/// given `seed` gives the same masks on every backend; each call of a compiled function draws
/// the next mask of the stream. `noise_shape` (default: `x`'s shape) is the mask's shape and
/// must broadcast to `x`'s. Without a `seed`, the `n`-th such call in the process uses
/// [`DEFAULT_SEED_BASE`]` + n` (Keras picks a random one). Gradients flow through `x` only.
pub fn dropout(x: &Tensor, level: f64, noise_shape: Option<&[usize]>, seed: Option<u64>) -> Result<Tensor> {
    const NAME: &str = "dropout";
    if !(0.0..1.0).contains(&level) {
        return Err(Error::graph(NAME, format!("level must be in [0, 1), got {level}")));
    }
    if !x.dtype().is_float() {
        return Err(Error::graph(NAME, format!("x must be a float tensor, got {} {}", x.describe(), x.dtype())));
    }
    let keep = 1.0 - level;
    let dist = Distribution::Bernoulli { p: keep };
    let seed = seed.unwrap_or_else(default_seed);
    let mask = match (noise_shape, x.static_shape()) {
        (Some(shape), _) => {
            check_noise_shape(x, shape)?;
            source::random(dist, seed, x.dtype(), Some(shape), None)
        }
        (None, Some(shape)) => source::random(dist, seed, x.dtype(), Some(&shape), None),
        (None, None) => source::random(dist, seed, x.dtype(), None, Some(x)),
    };
    named(NAME, binary(BinaryOp::Mul, &binary(BinaryOp::Div, x, &scalar(keep, x)?)?, &mask))
}

/// `noise_shape` must broadcast to `x`'s shape without enlarging it.
fn check_noise_shape(x: &Tensor, noise_shape: &[usize]) -> Result<()> {
    let rank = x.ndim();
    let fits = noise_shape.len() <= rank
        && noise_shape.iter().rev().zip(x.shape().iter().rev()).all(|(&n, d)| n == 1 || d.is_none_or(|d| d == n));
    if fits {
        return Ok(());
    }
    Err(Error::graph(
        "dropout",
        format!(
            "noise_shape {} does not broadcast to x {}",
            shape_string(&crate::graph::known(noise_shape)),
            x.describe()
        ),
    ))
}
