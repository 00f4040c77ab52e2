//! Building a case on the current backend (README section 3): its inputs as placeholders and
//! variables, its expression (generic call or recipe), and one compiled `K.function` over all
//! its outputs.

use keras::{
    Array, Tensor,
    backend::{self as K, DType},
};

use super::{
    calls::{self, Outputs, k_error},
    manifest::{Case, Kind},
    npy, recipes,
};

/// One input of a case, built.
pub struct Input {
    /// Its name in `args`.
    pub name: String,
    /// Placeholder or variable.
    pub kind: Kind,
    /// The placeholder or variable.
    pub tensor: Tensor,
    /// The array it is fed or initialised with (in the tensor's dtype).
    pub value: Array,
}

/// The inputs of a case in `args` order.
pub struct Inputs(pub Vec<Input>);

impl Inputs {
    /// The tensors in `args` order.
    pub fn tensors(&self) -> Vec<Tensor> {
        self.0.iter().map(|i| i.tensor.clone()).collect()
    }

    /// The input called `name`.
    pub fn get(&self, name: &str) -> Result<&Tensor, String> {
        self.0
            .iter()
            .find(|i| i.name == name)
            .map(|i| &i.tensor)
            .ok_or_else(|| format!("the case has no input `{name}`"))
    }
}

/// What a case computes: tensors to evaluate together, or values a recipe computed itself
/// (`function_updates` calls its function twice).
pub enum Expression {
    /// Outputs of one `K.function`, fed the placeholders (and the learning phase when given).
    Graph {
        /// Labelled outputs.
        outputs: Outputs,
        /// The learning phase to feed, when the recipe feeds it.
        learning_phase: Option<bool>,
    },
    /// Labelled values.
    Evaluated(Vec<(String, Array)>),
}

/// `array` converted to `dtype` (values as `f64`, which holds every case value exactly).
pub fn converted(array: &Array, dtype: DType) -> Result<Array, String> {
    if array.dtype() == dtype {
        return Ok(array.clone());
    }
    Array::from_f64s(dtype, array.shape(), &array.to_f64_vec()).map_err(k_error)
}

/// Builds every input on the current backend. `float` replaces the dtype of float inputs
/// (float64 for the gradient checks).
pub fn build_inputs(case: &Case, float: Option<DType>) -> Result<Inputs, String> {
    let record = &case.record;
    let mut inputs = Vec::with_capacity(record.args.len());
    for name in record.args.iter().filter(|n| record.inputs.contains_key(*n)) {
        let spec = &record.inputs[name];
        let value = npy::read(&case.dir.join(&spec.file))?;
        let declared =
            DType::from_name(&spec.dtype).ok_or_else(|| format!("input `{name}`: unknown dtype {}", spec.dtype))?;
        if value.shape() != spec.shape.as_slice() || value.dtype() != declared {
            return Err(format!(
                "input `{name}`: the manifest says {:?} {}, {} holds {:?} {}",
                spec.shape,
                spec.dtype,
                spec.file,
                value.shape(),
                value.dtype()
            ));
        }
        let dtype = match float {
            Some(f) if declared.is_float() => f,
            _ => declared,
        };
        let value = converted(&judged_input(case, name, value)?, dtype)?;
        let tensor = match spec.kind {
            Kind::Placeholder => K::placeholder_with(value.shape().to_vec(), Some(dtype), Some(name)),
            Kind::Variable => K::variable_with(value.clone(), Some(dtype), Some(name)).map_err(k_error)?,
        };
        inputs.push(Input { name: name.clone(), kind: spec.kind, tensor, value });
    }
    Ok(Inputs(inputs))
}

/// The one input the runner changes (README section 7): Theano's `border_mode='full'` conv2d
/// is a true convolution, so it is judged with the kernel flipped on its spatial axes.
fn judged_input(case: &Case, name: &str, value: Array) -> Result<Array, String> {
    let record = &case.record;
    let full = record.kwargs.get("border_mode").and_then(|v| v.as_str()) == Some("full");
    if record.function != "conv2d" || !full || name != "kernel" || value.ndim() != 4 {
        return Ok(value);
    }
    let th = record.kwargs.get("dim_ordering").and_then(|v| v.as_str()) == Some("th");
    flip(&value, if th { &[2, 3] } else { &[0, 1] })
}

/// `array` reversed along `axes` (C order, any dtype).
pub fn flip(array: &Array, axes: &[usize]) -> Result<Array, String> {
    let (shape, size) = (array.shape(), array.dtype().size_in_bytes());
    let mut strides = vec![1usize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    let source = array.bytes();
    let mut bytes = Vec::with_capacity(source.len());
    for index in 0..array.len() {
        let from: usize = (0..shape.len())
            .map(|d| {
                let i = index / strides[d] % shape[d];
                (if axes.contains(&d) { shape[d] - 1 - i } else { i }) * strides[d]
            })
            .sum();
        bytes.extend_from_slice(&source[from * size..(from + 1) * size]);
    }
    Array::from_bytes(array.dtype(), shape, bytes).map_err(k_error)
}

/// The case's expression: its recipe when `custom_call`, else `K.<function>(*inputs, **kwargs)`.
pub fn build_expression(case: &Case, inputs: &Inputs) -> Result<Expression, String> {
    if case.record.custom_call {
        return recipes::build(case, inputs);
    }
    let outputs = calls::call(&case.record.function, &inputs.tensors(), &case.record.kwargs)?;
    Ok(Expression::Graph { outputs, learning_phase: None })
}

/// A compiled `K.function` over a case's outputs and the arrays it is fed.
pub struct Program {
    function: K::Function,
    /// The output labels, in order.
    pub labels: Vec<String>,
    /// The feeds: each placeholder input's array, then the learning phase when fed.
    feeds: Vec<Array>,
    /// For each input of the case, its position in `feeds` when it is a placeholder.
    feed_of: Vec<Option<usize>>,
}

impl Program {
    /// Compiles `outputs` with one `K.function` over the placeholders in `args` order.
    pub fn compile(inputs: &Inputs, outputs: &Outputs, learning_phase: Option<bool>) -> Result<Program, String> {
        let (mut placeholders, mut feeds, mut feed_of) = (Vec::new(), Vec::new(), Vec::new());
        for input in &inputs.0 {
            feed_of.push((input.kind == Kind::Placeholder).then_some(placeholders.len()));
            if input.kind == Kind::Placeholder {
                placeholders.push(input.tensor.clone());
                feeds.push(input.value.clone());
            }
        }
        if let Some(phase) = learning_phase {
            placeholders.push(K::learning_phase());
            feeds.push(Array::from_bools(&[], &[phase]).map_err(k_error)?);
        }
        let tensors: Vec<Tensor> = outputs.iter().map(|(_, t)| t.clone()).collect();
        let function = K::function(&placeholders, &tensors, &[]).map_err(k_error)?;
        Ok(Program { function, labels: outputs.iter().map(|(l, _)| l.clone()).collect(), feeds, feed_of })
    }

    /// Runs the function on the case's own inputs.
    pub fn run(&self) -> Result<Vec<Array>, String> {
        self.function.call(&self.feeds).map_err(k_error)
    }

    /// Runs the function with input `index` of `inputs` replaced by `value` (a placeholder is
    /// fed it; a variable is set to it, then restored).
    pub fn run_with(&self, inputs: &Inputs, index: usize, value: &Array) -> Result<Vec<Array>, String> {
        match self.feed_of[index] {
            Some(position) => {
                let mut feeds = self.feeds.clone();
                feeds[position] = value.clone();
                self.function.call(&feeds).map_err(k_error)
            }
            None => {
                let input = &inputs.0[index];
                K::set_value(&input.tensor, value.clone()).map_err(k_error)?;
                let result = self.run();
                K::set_value(&input.tensor, input.value.clone()).map_err(k_error)?;
                result
            }
        }
    }
}

/// Builds and evaluates a case on the current backend: its labelled outputs.
pub fn evaluate(case: &Case, float: Option<DType>) -> Result<Vec<(String, Array)>, String> {
    let inputs = build_inputs(case, float)?;
    match build_expression(case, &inputs)? {
        Expression::Evaluated(values) => Ok(values),
        Expression::Graph { outputs, learning_phase } => {
            let program = Program::compile(&inputs, &outputs, learning_phase)?;
            Ok(program.labels.iter().cloned().zip(program.run()?).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flip_reverses_only_the_given_axes() {
        let a = Array::from_vec(&[2, 3], vec![1i32, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(flip(&a, &[1]).unwrap().to_vec::<i32>().unwrap(), [3, 2, 1, 6, 5, 4]);
        assert_eq!(flip(&a, &[0, 1]).unwrap().to_vec::<i32>().unwrap(), [6, 5, 4, 3, 2, 1]);
        assert_eq!(flip(&a, &[]).unwrap().to_vec::<i32>().unwrap(), [1, 2, 3, 4, 5, 6]);
    }
}
