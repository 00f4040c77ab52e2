//! The custom-call recipes of README section 4: which composed expression a `custom_call`
//! case is, found by name prefix (at most one leading tag stripped), and the expression itself.

use keras::{
    Array, Tensor,
    backend::{self as K, Axes, DType},
};

use super::{
    build::{Expression, Inputs},
    calls::{Outputs, k_error, single, tuple},
    kwargs::Kwargs,
    manifest::Case,
    options,
};

/// A composed expression of README section 4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recipe {
    /// `K.concatenate(inputs, axis)`.
    Concatenate,
    /// `K.stack(inputs)`.
    Stack,
    /// `batch_normalization` with `(1, C)` parameters.
    BatchNormalization2dBcast,
    /// `batch_normalization` with `(1, C, 1, 1)` parameters.
    BatchNormalization4dThBcast,
    /// A small loss and its gradients with respect to `x` and `W`.
    GradientsSmallExpr,
    /// Mean categorical cross-entropy of a softmax, and its gradient.
    GradientsSoftmaxCce,
    /// `sum(x² · stop_gradient(x))` and its gradient.
    GradientsStopGradient,
    /// A tanh recurrence through `K.rnn`.
    Rnn,
    /// `K.map_fn(r ↦ r·r)`.
    MapFnSquare,
    /// `K.foldl(+)` without initializer.
    FoldlSum,
    /// `K.foldr(-)` without initializer.
    FoldrSub,
    /// `K.foldl(acc·0.5 + x, init)`.
    FoldlInit,
    /// A function with an update, called twice.
    FunctionUpdates,
    /// `in_train_phase` / `in_test_phase` with the learning phase fed (last digit of the name).
    InTrainPhaseFed,
    /// An LSTM recurrence through `K.rnn`.
    Lstm,
    /// conv2d, relu, pool2d, softmax, cross-entropy, and the gradients.
    GradientsConv2dPool2dCce,
}

/// Every recipe prefix of README section 4 step 1.
pub const PREFIXES: [(&str, Recipe); 16] = [
    ("concatenate_", Recipe::Concatenate),
    ("stack_", Recipe::Stack),
    ("batch_normalization_2d_bcast", Recipe::BatchNormalization2dBcast),
    ("batch_normalization_4d_th_bcast", Recipe::BatchNormalization4dThBcast),
    ("gradients_small_expr", Recipe::GradientsSmallExpr),
    ("gradients_softmax_cce", Recipe::GradientsSoftmaxCce),
    ("gradients_stop_gradient", Recipe::GradientsStopGradient),
    ("rnn_", Recipe::Rnn),
    ("map_fn_square", Recipe::MapFnSquare),
    ("foldl_sum", Recipe::FoldlSum),
    ("foldr_sub", Recipe::FoldrSub),
    ("foldl_init", Recipe::FoldlInit),
    ("function_updates", Recipe::FunctionUpdates),
    ("in_train_phase_fed", Recipe::InTrainPhaseFed),
    ("lstm_", Recipe::Lstm),
    ("gradients_conv2d_pool2d_cce_", Recipe::GradientsConv2dPool2dCce),
];

fn by_prefix(name: &str) -> Option<Recipe> {
    PREFIXES.iter().filter(|(p, _)| name.starts_with(p)).max_by_key(|(p, _)| p.len()).map(|(_, r)| *r)
}

/// The name without its leading tag (`^[a-z][a-z0-9]*_`), when it has one.
fn strip_tag(name: &str) -> Option<&str> {
    let (tag, rest) = name.split_once('_')?;
    let mut chars = tag.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    valid.then_some(rest)
}

/// The recipe of a custom-call case name (README section 4 steps 2-4): the full name first,
/// then with one tag stripped; `None` for an unknown recipe.
pub fn find_recipe(name: &str) -> Option<Recipe> {
    by_prefix(name).or_else(|| strip_tag(name).and_then(by_prefix))
}

/// Builds the expression of a custom-call case on the current backend.
pub fn build(case: &Case, inputs: &Inputs) -> Result<Expression, String> {
    let recipe = find_recipe(case.name())
        .ok_or_else(|| format!("custom-call case `{}` matches no recipe of README section 4", case.name()))?;
    let kw = Kwargs::new(&case.record.function, &case.record.kwargs);
    let expression = build_recipe(recipe, case, inputs, &kw);
    kw.finish()?;
    expression
}

fn graph(outputs: keras::Result<Outputs>) -> Result<Expression, String> {
    Ok(Expression::Graph { outputs: outputs.map_err(k_error)?, learning_phase: None })
}

fn build_recipe(recipe: Recipe, case: &Case, inputs: &Inputs, kw: &Kwargs) -> Result<Expression, String> {
    let x = || inputs.get("x");
    match recipe {
        Recipe::Concatenate => {
            let axis = kw.int("axis", Some(-1))? as isize;
            graph(K::concatenate(&inputs.tensors(), axis).map(single))
        }
        Recipe::Stack => graph(K::stack(&inputs.tensors()).map(single)),
        Recipe::BatchNormalization2dBcast | Recipe::BatchNormalization4dThBcast => {
            let epsilon = kw.float("epsilon", Some(1e-3))?;
            let params = ["mean", "var", "beta", "gamma"].map(|n| inputs.get(n));
            let [mean, var, beta, gamma] = params;
            let four_d = recipe == Recipe::BatchNormalization4dThBcast;
            graph(broadcast_batch_normalization(x()?, [mean?, var?, beta?, gamma?], four_d, epsilon))
        }
        Recipe::GradientsSmallExpr => graph(gradients_small_expr(x()?, inputs.get("W")?)),
        Recipe::GradientsSoftmaxCce => {
            let (x, t) = (x()?, inputs.get("t")?);
            let loss = K::softmax(x)
                .and_then(|p| K::categorical_crossentropy(&p, t, false))
                .and_then(|cce| K::mean(&cce, Axes::All, false));
            graph(with_gradients(loss, std::slice::from_ref(x)))
        }
        Recipe::GradientsStopGradient => {
            let x = x()?;
            let loss = K::stop_gradient(x).and_then(|s| K::square(x)? * &s).and_then(|p| K::sum(&p, Axes::All, false));
            graph(with_gradients(loss, std::slice::from_ref(x)))
        }
        Recipe::MapFnSquare => graph(K::map_fn(|r: &Tensor| r * r, inputs.get("elems")?).map(single)),
        Recipe::FoldlSum => graph(K::foldl(|acc: &Tensor, e: &Tensor| acc + e, inputs.get("elems")?, None).map(single)),
        Recipe::FoldrSub => graph(K::foldr(|acc: &Tensor, e: &Tensor| acc - e, inputs.get("elems")?, None).map(single)),
        Recipe::FoldlInit => {
            let (elems, init) = (inputs.get("elems")?, inputs.get("init")?);
            graph(K::foldl(|acc: &Tensor, e: &Tensor| (acc * 0.5) + e, elems, Some(init)).map(single))
        }
        Recipe::FunctionUpdates => Ok(Expression::Evaluated(function_updates().map_err(k_error)?)),
        Recipe::InTrainPhaseFed => {
            let phase = match case.name().chars().last() {
                Some('0') => false,
                Some('1') => true,
                _ => return Err(format!("`{}`: the learning phase (last character) is not 0 or 1", case.name())),
            };
            let x = x()?;
            let outputs = (|| {
                let (twice, thrice) = ((x * 2.0)?, (x * 3.0)?);
                Ok(tuple(vec![K::in_train_phase(&twice, &thrice)?, K::in_test_phase(&twice, &thrice)?]))
            })();
            Ok(Expression::Graph { outputs: outputs.map_err(k_error)?, learning_phase: Some(phase) })
        }
        Recipe::Rnn | Recipe::Lstm => {
            let options = options::rnn_options(kw)?;
            let (w, u, h0) = (inputs.get("W")?.clone(), inputs.get("U")?.clone(), inputs.get("h0")?.clone());
            let mask = inputs.get("mask").ok();
            let mut states = vec![h0];
            if recipe == Recipe::Lstm {
                states.push(inputs.get("c0")?.clone());
            }
            graph(recurrence(recipe, x()?, w, u, &states, mask, options))
        }
        Recipe::GradientsConv2dPool2dCce => {
            let dim_ordering = kw.dim_ordering()?;
            let mode = match kw.str("pool_mode", Some("max"))? {
                "max" => K::PoolMode::Max,
                "avg" => K::PoolMode::Avg,
                other => return Err(format!("unknown pool_mode `{other}`")),
            };
            let [kernel, w2, t] = ["kernel", "W2", "t"].map(|n| inputs.get(n));
            graph(conv_pool_cce(x()?, kernel?, w2?, t?, dim_ordering, mode))
        }
    }
}

/// README section 4's `rnn_` (tanh) and `lstm_` recipes: `[last_output, outputs] + states`.
fn recurrence(
    recipe: Recipe,
    x: &Tensor,
    w: Tensor,
    u: Tensor,
    states: &[Tensor],
    mask: Option<&Tensor>,
    options: options::RnnOptions,
) -> keras::Result<Outputs> {
    let time = x.shape().get(1).copied().flatten();
    let input_length = if options.unroll { time } else { None };
    let lstm = recipe == Recipe::Lstm;
    let step = move |x_t: &Tensor, states: &[Tensor]| -> keras::Result<(Tensor, Vec<Tensor>)> {
        let z = (K::dot(x_t, &w)? + K::dot(&states[0], &u))?;
        if !lstm {
            let h = K::tanh(&z)?;
            return Ok((h.clone(), vec![h]));
        }
        let units = states[0].shape()[1].unwrap_or(0) as isize;
        let gate = |k: isize| K::slice(&z, &[(0, None), (k * units, Some((k + 1) * units))]);
        let (i, f) = (K::sigmoid(&gate(0)?)?, K::sigmoid(&gate(1)?)?);
        let (g, o) = (K::tanh(&gate(2)?)?, K::sigmoid(&gate(3)?)?);
        let c = ((&f * &states[1])? + (&i * &g)?)?;
        let h = (&o * K::tanh(&c))?;
        Ok((h.clone(), vec![h, c]))
    };
    let (last, outputs, new_states) =
        K::rnn(step, x, states, options.go_backwards, mask, &[], options.unroll, input_length)?;
    let mut all = vec![last, outputs];
    all.extend(new_states);
    Ok(tuple(all))
}

/// README section 4's `gradients_conv2d_pool2d_cce_` recipe: a small CNN's loss and its
/// gradients with respect to the input, the kernel and the dense weights.
fn conv_pool_cce(
    x: &Tensor,
    kernel: &Tensor,
    w2: &Tensor,
    t: &Tensor,
    dim_ordering: Option<K::ImageDimOrdering>,
    mode: K::PoolMode,
) -> keras::Result<Outputs> {
    let conv = K::conv2d(x, kernel, (1, 1), K::BorderMode::Same, dim_ordering, (1, 1))?;
    let pooled = K::pool2d(&K::relu(&conv, 0.0, None)?, (2, 2), (2, 2), K::BorderMode::Valid, dim_ordering, mode)?;
    let p = K::softmax(&K::dot(&K::batch_flatten(&pooled)?, w2)?)?;
    let loss = K::mean(&K::categorical_crossentropy(&p, t, false)?, Axes::All, false);
    with_gradients(loss, &[x.clone(), kernel.clone(), w2.clone()])
}

/// `[loss] + K.gradients(loss, wrt)`.
fn with_gradients(loss: keras::Result<Tensor>, wrt: &[Tensor]) -> keras::Result<Outputs> {
    let loss = loss?;
    let mut outputs = vec![loss.clone()];
    outputs.extend(K::gradients(&loss, wrt)?);
    Ok(tuple(outputs))
}

fn gradients_small_expr(x: &Tensor, w: &Tensor) -> keras::Result<Outputs> {
    let squares = K::sum(&K::square(&K::dot(x, w)?)?, Axes::All, false)?;
    let tanh_mean = K::mean(&K::tanh(x)?, Axes::All, false)?;
    let sigmoids = K::sum(&(K::sigmoid(w)? * 2.0)?, Axes::All, false)?;
    with_gradients((&squares + &tanh_mean)? + &sigmoids, &[x.clone(), w.clone()])
}

fn broadcast_batch_normalization(
    x: &Tensor,
    params: [&Tensor; 4],
    four_d: bool,
    epsilon: f64,
) -> keras::Result<Outputs> {
    let channels = params[0].shape().first().copied().flatten().unwrap_or(0) as isize;
    let shape: &[isize] = if four_d { &[1, channels, 1, 1] } else { &[1, channels] };
    let [mean, var, beta, gamma] = params.map(|p| K::reshape(p, shape));
    K::batch_normalization(x, &mean?, &var?, &beta?, &gamma?, epsilon).map(single)
}

/// `v = [1, 2, 3]`; `f = K.function([x], [v * 2, x + v], updates=[(v, v + x)])` called with
/// `[10, 20, 30]`, then `[1, 1, 1]`; then `v`'s value.
fn function_updates() -> keras::Result<Vec<(String, Array)>> {
    let v = K::variable_with(Array::from(vec![1.0f32, 2.0, 3.0]), Some(DType::F32), None)?;
    let x = K::placeholder_with(vec![3usize], Some(DType::F32), None);
    let f = K::function(std::slice::from_ref(&x), &[(&v * 2.0)?, (&x + &v)?], &[(v.clone(), (&v + &x)?)])?;
    let mut values = Vec::new();
    for (call, feed) in [("call1", [10.0f32, 20.0, 30.0]), ("call2", [1.0, 1.0, 1.0])] {
        let outputs = f.call(&[Array::from(feed.to_vec())])?;
        values.extend(outputs.into_iter().enumerate().map(|(i, a)| (format!("{call}.{i}"), a)));
    }
    values.push(("final".to_string(), K::get_value(&v)?));
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_names_match_without_stripping() {
        assert_eq!(find_recipe("concatenate_axis_neg1"), Some(Recipe::Concatenate));
        assert_eq!(find_recipe("rnn_maskpre_h0rand_back"), Some(Recipe::Rnn));
        assert_eq!(find_recipe("in_train_phase_fed1"), Some(Recipe::InTrainPhaseFed));
        assert_eq!(find_recipe("gradients_conv2d_pool2d_cce_th_max"), Some(Recipe::GradientsConv2dPool2dCce));
        assert_eq!(find_recipe("foldl_init"), Some(Recipe::FoldlInit));
    }

    #[test]
    fn one_tag_is_stripped_as_the_readme_examples_say() {
        assert_eq!(find_recipe("h_lstm_maskpre"), Some(Recipe::Lstm));
        assert_eq!(find_recipe("h_concatenate_3in_axis0"), Some(Recipe::Concatenate));
        assert_eq!(find_recipe("x2_stack_4"), Some(Recipe::Stack));
    }

    #[test]
    fn at_most_one_tag_and_only_a_valid_one() {
        assert_eq!(find_recipe("a_b_lstm_x"), None, "two tags are never stripped");
        assert_eq!(find_recipe("H_lstm_x"), None, "a tag starts with a lower-case letter");
        assert_eq!(find_recipe("9x_lstm_x"), None);
        assert_eq!(find_recipe("lstm"), None, "the prefix includes the underscore");
        assert_eq!(find_recipe("conv2d_tf_x7"), None);
    }
}
