//! Gradient checks (issue 3 item 6): for a differentiable case, `K.gradients` of
//! `loss = Σ_outputs sum(output · W)` (W fixed pseudo-random weights) with respect to every float
//! input, against central finite differences, everything in float64.
//!
//! Tolerance `|analytic − numeric| ≤ 1e-4 + 1e-3·|numeric|`: with `h = 1e-6·max(1, |x|)` the
//! central difference's truncation error is `O(h²·f''')` and its rounding error about
//! `1e-16·|loss| / h`, both far below it, while a wrong derivative rule is off by O(1).
//!
//! Non-smooth points (relu or abs at 0, ties of max, clip at a bound, ...): where the two
//! disagree, `K.gradients` is evaluated again at `x + h` and `x − h`; if it jumps there, `x`
//! is a point where the function (or the composition K builds, such as `clip(x, a, a)` at `a`)
//! is not differentiable, and the element is counted as a kink instead of judged. A wrong
//! derivative rule is wrong on a whole neighbourhood, so it still fails. (Comparing central
//! differences with `h` and `h/10` would miss symmetric kinks: at `relu(0)` both give `w/2`.)
//! An element where the loss or the analytic gradient is not finite (log at 0) is counted as
//! singular.

use keras::{
    Array, Tensor,
    backend::{self as K, Axes, DType},
};

use super::{
    build::{Expression, Inputs, Program, build_expression, build_inputs, converted},
    calls::k_error,
    compare::{DTypeClass, Tolerance, class},
    manifest::Case,
};

/// The gradient check's tolerance (module docs).
pub const GRAD_TOLERANCE: Tolerance = Tolerance { atol: 1e-4, rtol: 1e-3 };

/// Why the gradients of `function`'s cases are not checked, when they are not.
pub fn not_checked(function: &str) -> Option<&'static str> {
    match function {
        "equal" | "not_equal" | "greater" | "greater_equal" | "lesser" | "lesser_equal" | "in_top_k" => {
            Some("a boolean result")
        }
        "argmax" | "argmin" | "cast" | "arange" => Some("an integer result"),
        "any" | "all" => Some("a uint8 result"),
        "round" | "sign" => Some("piecewise constant: the derivative is 0 wherever it exists"),
        "one_hot" | "eye" | "zeros" | "ones" => Some("no float input: the result is a constant"),
        "ctc_decode" => Some("decoded paths are discrete; scores are not a differentiable output of K"),
        "function" => Some("a stateful recipe (variables updated between calls)"),
        "stop_gradient" => Some("stop_gradient makes K.gradients differ from the derivative by design"),
        _ => None,
    }
}

/// Whether argument `position` (`name`) of `function` is an index, label, mask or condition
/// rather than a value the output is differentiable in.
pub fn is_discrete_argument(function: &str, position: usize, name: &str) -> bool {
    match function {
        "switch" => position == 0,
        "gather" => name == "indices",
        "sparse_categorical_crossentropy" => name == "target",
        "rnn" => name == "mask",
        "ctc_batch_cost" => name != "y_pred",
        _ => false,
    }
}

/// The indices (in `args` order) of the inputs to differentiate, or why the case has none.
pub fn differentiable_inputs(case: &Case) -> Result<Vec<usize>, String> {
    let record = &case.record;
    if let Some(reason) = &case.skip {
        return Err(reason.clone());
    }
    if let Some(reason) = not_checked(&record.function) {
        return Err(format!("K.{}: {reason}", record.function));
    }
    let float = |dtype: &str| DType::from_name(dtype).is_some_and(|d| class(d) == DTypeClass::Float);
    if !record.outputs.iter().any(|o| float(&o.dtype)) {
        return Err("no float output".into());
    }
    let present = record.args.iter().filter(|a| record.inputs.contains_key(*a));
    let wrt: Vec<usize> = present
        .enumerate()
        .filter(|(i, name)| float(&record.inputs[*name].dtype) && !is_discrete_argument(&record.function, *i, name))
        .map(|(i, _)| i)
        .collect();
    if wrt.is_empty() { Err("no float input to differentiate".into()) } else { Ok(wrt) }
}

/// Counts of a gradient check that ran.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GradOutcome {
    /// Elements whose analytic and numeric derivatives were compared.
    pub checked: usize,
    /// Elements at a kink (skipped).
    pub kinks: usize,
    /// Elements where the loss or gradient is not finite (skipped).
    pub singular: usize,
    /// One line per element that disagrees (at most a few are kept).
    pub failures: Vec<String>,
    /// Number of disagreeing elements.
    pub failed: usize,
}

/// A minimal 64-bit LCG (Knuth's MMIX constants): fixed weights, the same on every platform.
struct Lcg(u64);

impl Lcg {
    fn seeded(text: &str) -> Lcg {
        // FNV-1a of the case name, so each case has its own weights.
        Lcg(text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3)))
    }

    /// A weight of magnitude in [0.5, 1) and random sign: never so small that it hides an output.
    fn weight(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let unit = (self.0 >> 11) as f64 / (1u64 << 53) as f64;
        if unit < 0.5 { -(0.5 + unit) } else { unit }
    }
}

/// `K.gradients(Σ sum(output · W), inputs[wrt])` compiled once, evaluable at moved inputs.
struct Analytic {
    program: Program,
    /// The input index of each gradient.
    wrt: Vec<usize>,
}

impl Analytic {
    fn new(
        inputs: &Inputs,
        outputs: &[(String, Tensor)],
        values: &[Array],
        weights: &[Vec<f64>],
        wrt: &[usize],
        learning_phase: Option<bool>,
    ) -> Result<Analytic, String> {
        let mut loss: Option<Tensor> = None;
        for (((_, output), value), w) in outputs.iter().zip(values).zip(weights) {
            let w = K::constant(Array::from_f64s(DType::F64, value.shape(), w).map_err(k_error)?);
            let term = (output * &w).and_then(|p| K::sum(&p, Axes::All, false)).map_err(k_error)?;
            loss = Some(match loss {
                None => term,
                Some(sum) => (&sum + &term).map_err(k_error)?,
            });
        }
        let loss = loss.ok_or("the case has no float output")?;
        let targets: Vec<Tensor> = wrt.iter().map(|&i| inputs.0[i].tensor.clone()).collect();
        let grads = K::gradients(&loss, &targets).map_err(k_error)?;
        let labelled: Vec<(String, Tensor)> = grads.into_iter().enumerate().map(|(i, g)| (i.to_string(), g)).collect();
        Ok(Analytic { program: Program::compile(inputs, &labelled, learning_phase)?, wrt: wrt.to_vec() })
    }

    /// The gradients as `f64`s, one list per differentiated input; `moved`: input `index`
    /// replaced by an array.
    fn gradients(&self, inputs: &Inputs, moved: Option<(usize, &Array)>) -> Result<Vec<Vec<f64>>, String> {
        let arrays = match moved {
            None => self.program.run()?,
            Some((index, value)) => self.program.run_with(inputs, index, value)?,
        };
        self.wrt
            .iter()
            .zip(arrays)
            .map(|(&i, g)| {
                let input = &inputs.0[i];
                if g.shape() != input.value.shape() {
                    let (name, got, want) = (&input.name, g.shape(), input.value.shape());
                    return Err(format!("the gradient for `{name}` has shape {got:?}, the input {want:?}"));
                }
                Ok(converted(&g, DType::F64)?.to_f64_vec())
            })
            .collect()
    }
}

/// Runs the gradient check of `case` on the current backend; `wrt` from [`differentiable_inputs`].
pub fn check(case: &Case, wrt: &[usize]) -> Result<GradOutcome, String> {
    let inputs = build_inputs(case, Some(DType::F64))?;
    let Expression::Graph { outputs, learning_phase } = build_expression(case, &inputs)? else {
        return Err("the recipe evaluates its outputs itself; no graph to differentiate".into());
    };
    let outputs: Vec<(String, Tensor)> = outputs.into_iter().filter(|(_, t)| t.dtype().is_float()).collect();
    if let Some((label, t)) = outputs.iter().find(|(_, t)| t.dtype() != DType::F64) {
        return Err(format!(
            "output `{label}` is {} for float64 inputs: the dtype does not follow the inputs",
            t.dtype()
        ));
    }
    let forward = Program::compile(&inputs, &outputs, learning_phase)?;
    let base_values = forward.run()?;
    let mut lcg = Lcg::seeded(case.name());
    let weights: Vec<Vec<f64>> = base_values
        .iter()
        .map(|v| v.to_f64_vec().iter().map(|x| if x.is_finite() { lcg.weight() } else { 0.0 }).collect())
        .collect();
    // Outputs with weight 0 (not finite at the case's inputs) are left out, not multiplied.
    let loss = |values: &[Array]| -> f64 {
        let term = |v: &Array, w: &[f64]| -> f64 {
            v.to_f64_vec().iter().zip(w).filter(|(_, w)| **w != 0.0).map(|(x, w)| x * w).sum()
        };
        values.iter().zip(&weights).map(|(v, w)| term(v, w)).sum()
    };
    let analytic = Analytic::new(&inputs, &outputs, &base_values, &weights, wrt, learning_phase)?;
    let gradients = analytic.gradients(&inputs, None)?;
    let f0 = loss(&base_values);
    let mut outcome = GradOutcome::default();
    for (k, (&index, gradient)) in wrt.iter().zip(&gradients).enumerate() {
        let input = &inputs.0[index];
        let values = input.value.to_f64_vec();
        for (j, (&x, &g)) in values.iter().zip(gradient).enumerate() {
            let moved = |delta: f64| {
                let mut moved = values.clone();
                moved[j] = x + delta;
                Array::from_f64s(DType::F64, input.value.shape(), &moved).map_err(k_error)
            };
            let h = 1e-6 * x.abs().max(1.0);
            let (plus, minus) = (moved(h)?, moved(-h)?);
            let (f_plus, f_minus) =
                (loss(&forward.run_with(&inputs, index, &plus)?), loss(&forward.run_with(&inputs, index, &minus)?));
            let central = (f_plus - f_minus) / (2.0 * h);
            if ![f0, f_plus, f_minus, g].iter().all(|v| v.is_finite()) {
                outcome.singular += 1;
            } else if GRAD_TOLERANCE.accepts(g, central) {
                outcome.checked += 1;
            } else if [&plus, &minus]
                .into_iter()
                .map(|m| analytic.gradients(&inputs, Some((index, m))))
                .any(|near| near.map_or(true, |near| !GRAD_TOLERANCE.accepts(near[k][j], g)))
            {
                // K.gradients jumps between x and x ± h: a non-smooth point (module docs).
                outcome.kinks += 1;
            } else {
                outcome.checked += 1;
                outcome.failed += 1;
                if outcome.failures.len() < 3 {
                    outcome.failures.push(format!(
                        "d loss / d {}[{j}] at {x}: K.gradients gives {g}, finite differences {central}",
                        input.name
                    ));
                }
            }
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_given_for_the_unchecked_functions() {
        assert!(not_checked("argmax").unwrap().contains("integer"));
        assert!(not_checked("stop_gradient").is_some());
        assert_eq!(not_checked("relu"), None);
        assert!(is_discrete_argument("switch", 0, "c"));
        assert!(is_discrete_argument("sparse_categorical_crossentropy", 1, "target"));
        assert!(!is_discrete_argument("categorical_crossentropy", 1, "target"));
    }

    #[test]
    fn weights_are_fixed_per_name_and_never_small() {
        let (mut a, mut b) = (Lcg::seeded("sum_all"), Lcg::seeded("sum_all"));
        let first: Vec<f64> = (0..100).map(|_| a.weight()).collect();
        assert_eq!(first, (0..100).map(|_| b.weight()).collect::<Vec<_>>());
        assert!(first.iter().all(|w| (0.5..1.0).contains(&w.abs())));
        assert!(first.iter().any(|w| *w < 0.0) && first.iter().any(|w| *w > 0.0));
        assert_ne!(Lcg::seeded("sum_axis1").weight(), first[0]);
    }
}
