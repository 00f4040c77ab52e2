//! The workloads of `keras-cli bench`: each one a graph built with the K API and compiled once
//! with `K::function`, plus the work one call does (FLOPs, bytes or ops) so a time becomes a
//! rate.
//!
//! Operands are variables and results go into variables through the function's updates (an
//! update takes over the result's device buffer, no copy), so for the kernel workloads a call
//! moves nothing between host and device: the timed call is the executor and the kernels,
//! including the allocation of each result buffer. The two training steps are fed their batch
//! from host arrays and return the loss, as a Keras training loop does.
//!
//! The fence. A GPU backend runs its kernels asynchronously: a call that only updates
//! variables returns once its kernels are queued, so timing the call alone would time the
//! launches. The plugin contract has no "synchronize", but a download waits for all the work
//! queued before it (the cuda backend runs everything on one stream). So each kernel workload
//! also writes one element of its first result into a one-element "fence" variable (a `K::slice`
//! of one element, reshaped to `(1,)`; where the result already has one element, as in
//! `dispatch`, its own variable is the fence and no op is added), and [`Prepared::call`] reads
//! the fence back to the host after `Function::call`: every timed call includes the wait for
//! its kernels (the download is queued after every kernel of the call, not only after the one
//! the fence copies from). On the cpu backend, which computes synchronously, this costs one
//! slice kernel copying one float (about one `dispatch` op, a microsecond or less) and a 4-byte
//! download per call, against calls of milliseconds. The training steps have no fence: their
//! call already returns the loss to the host, which waits for the step. `train-memory` is the
//! MLP step, so it is unchanged too.
//!
//! [`GPU_ONLY`] workloads are sized for a big GPU (a call of `matmul-8192` is about a teraflop)
//! and run only when `--workload` names them.

use keras::{
    Array, Result,
    backend::{self as K, BorderMode, Function, ImageDimOrdering, PoolMode, Tensor},
};

/// A convolution shape: batch, rows, cols, in and out channels, kernel size.
type ConvShape = (usize, usize, usize, usize, usize, usize);
/// Convolution benchmark shape: batch, rows, cols, in and out channels, kernel size.
const CONV: ConvShape = (32, 64, 64, 64, 64, 3);
/// The `conv2d-*-large` shape, sized to fill a big GPU: its input, output and (backward) output
/// gradient are 512 MiB each, about 300 GFLOPs forward.
const CONV_LARGE: ConvShape = (64, 128, 128, 128, 128, 3);
/// Elements of the `exp-16m` and `fma-16m` operands (2^24).
const ELEMENTWISE_LEN: usize = 1 << 24;
/// Element-wise ops in the `dispatch` graph.
const DISPATCH_OPS: usize = 1000;
/// Calls of the `train-memory` run after its warm-up (`--repeats` overrides it).
pub const SOAK_STEPS: usize = 1000;
/// Batch size of both training steps.
const TRAIN_BATCH: usize = 128;
/// SGD learning rate of both training steps.
const LEARNING_RATE: f64 = 0.01;

/// One benchmark row: a workload name and, for image workloads, the dim ordering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Case {
    /// The workload name `--workload` selects (`conv2d-fwd` selects both orderings).
    pub workload: &'static str,
    /// `th` or `tf` for convolution workloads; `None` where layout does not apply.
    pub ordering: Option<ImageDimOrdering>,
}

impl Case {
    /// `workload` or `workload:ordering`: how the parent names a case to the child process.
    pub fn id(&self) -> String {
        match self.ordering {
            Some(ordering) => format!("{}:{}", self.workload, ordering.name()),
            None => self.workload.to_string(),
        }
    }

    /// The case named by [`Case::id`].
    pub fn from_id(id: &str) -> Option<Case> {
        all_cases().into_iter().find(|case| case.id() == id)
    }
}

/// Every workload name, in the order they run. Kept in step by hand with `WORKLOADS` of
/// `bench/reference/common.py` (same names, same order; `train-memory` is ours only).
pub const WORKLOADS: [&str; 14] = [
    "matmul-1024",
    "matmul-2048",
    "matmul-4096",
    "matmul-8192",
    "conv2d-fwd",
    "conv2d-bwd",
    "conv2d-fwd-large",
    "conv2d-bwd-large",
    "mlp-train-step",
    "cnn-train-step",
    "exp-16m",
    "fma-16m",
    "dispatch",
    "train-memory",
];

/// The workloads sized for a GPU, run only when `--workload` names them: on a CPU one call
/// takes seconds to minutes (a `matmul-8192` is 1.1 TFLOPs), and without them `keras-cli bench`
/// on the cpu backend stays within about two minutes.
pub const GPU_ONLY: [&str; 4] = ["matmul-4096", "matmul-8192", "conv2d-fwd-large", "conv2d-bwd-large"];

/// Whether `workload` runs when `--workload` is not given (every workload but [`GPU_ONLY`]).
pub fn runs_by_default(workload: &str) -> bool {
    !GPU_ONLY.contains(&workload)
}

/// Every case, in run order: the convolutions once per ordering, `tf` first ([`GPU_ONLY`] ones
/// included: see [`runs_by_default`]).
pub fn all_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for workload in WORKLOADS {
        if workload.starts_with("conv2d-") {
            for ordering in [ImageDimOrdering::Tf, ImageDimOrdering::Th] {
                cases.push(Case { workload, ordering: Some(ordering) });
            }
        } else if workload == "cnn-train-step" {
            cases.push(Case { workload, ordering: Some(ImageDimOrdering::Tf) });
        } else {
            cases.push(Case { workload, ordering: None });
        }
    }
    cases
}

/// What a rate is measured in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// 10^9 floating-point operations per second (multiply and add counted apart).
    GflopPerS,
    /// 10^9 bytes read plus written per second.
    GbPerS,
    /// Whole training steps per second.
    StepsPerS,
    /// Nanoseconds per graph op (lower is better).
    NsPerOp,
}

impl Unit {
    /// The unit as printed and in the JSON `rate_unit` field.
    pub const fn name(self) -> &'static str {
        match self {
            Unit::GflopPerS => "GFLOP/s",
            Unit::GbPerS => "GB/s",
            Unit::StepsPerS => "steps/s",
            Unit::NsPerOp => "ns/op",
        }
    }

    /// The rate of a call doing `work` (FLOPs, bytes, steps or ops) in `seconds`.
    pub fn rate(self, work: f64, seconds: f64) -> f64 {
        match self {
            Unit::GflopPerS | Unit::GbPerS => work / seconds / 1e9,
            Unit::StepsPerS => work / seconds,
            Unit::NsPerOp => seconds / work * 1e9,
        }
    }
}

/// A compiled workload ready to time: [`Prepared::call`] is one unit of `work`.
pub struct Prepared {
    /// The compiled graph; its updates write the results into variables.
    pub function: Function,
    /// The host arrays each call is fed (empty but for the training steps).
    pub feeds: Vec<Array>,
    /// The one-element variable read back after each call, so that the call waits for its
    /// kernels on an asynchronous backend (see the module docs); `None` for the training steps,
    /// whose loss comes back to the host anyway.
    pub fence: Option<Tensor>,
    /// FLOPs, bytes, steps or ops done by one call, in the sense of `unit`.
    pub work: f64,
    pub unit: Unit,
}

impl Prepared {
    /// One call: `function.call(&feeds)`, then the download of the fence, which returns once
    /// every kernel the call queued has run.
    pub fn call(&self) -> Result<()> {
        self.function.call(&self.feeds)?;
        if let Some(fence) = &self.fence {
            K::get_value(fence)?;
        }
        Ok(())
    }
}

/// Builds and compiles `case` on the current backend (floatx must be float32).
pub fn prepare(case: Case) -> Result<Prepared> {
    let ordering = case.ordering.unwrap_or(ImageDimOrdering::Tf);
    match case.workload {
        "matmul-1024" => matmul(1024),
        "matmul-2048" => matmul(2048),
        "matmul-4096" => matmul(4096),
        "matmul-8192" => matmul(8192),
        "conv2d-fwd" => conv2d(CONV, ordering, false),
        "conv2d-bwd" => conv2d(CONV, ordering, true),
        "conv2d-fwd-large" => conv2d(CONV_LARGE, ordering, false),
        "conv2d-bwd-large" => conv2d(CONV_LARGE, ordering, true),
        "mlp-train-step" => mlp_train_step(),
        "cnn-train-step" => cnn_train_step(),
        "exp-16m" => exp_16m(),
        "fma-16m" => fma_16m(),
        "dispatch" => dispatch(),
        // The MLP step again, run SOAK_STEPS times by the caller for its memory.
        "train-memory" => mlp_train_step(),
        other => Err(bench_error(format!("unknown workload `{other}`"))),
    }
}

/// An error of `keras-cli bench`, as one line.
pub fn bench_error(message: String) -> keras::Error {
    keras::Error::Graph { function: "bench".to_string(), message }
}

/// `n` numbers uniform in `[-limit, limit)` from a fixed xorshift stream: the same operands
/// on every backend and run, with no dependence on a backend's random kernels.
fn uniform(n: usize, limit: f32, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // The top 24 bits are exactly representable in an f32 mantissa.
            let unit = (state >> 40) as f32 / (1u64 << 24) as f32;
            (2.0 * unit - 1.0) * limit
        })
        .collect()
}

/// A variable of `shape` filled with [`uniform`] values.
fn random_variable(shape: &[usize], limit: f32, seed: u64) -> Result<Tensor> {
    let len = shape.iter().product();
    K::variable(Array::from_vec(shape, uniform(len, limit, seed))?)
}

/// A Glorot-uniform weight of `shape` with the given fan-in and fan-out, as Keras initialises
/// dense and convolution kernels.
fn glorot(shape: &[usize], fan_in: usize, fan_out: usize, seed: u64) -> Result<Tensor> {
    random_variable(shape, (6.0 / (fan_in + fan_out) as f32).sqrt(), seed)
}

/// A function of no inputs whose results each replace a zero variable of their shape (the
/// results stay on the device and the call downloads nothing), and its fence: a `(1,)`
/// variable that the function also sets to the first element of the first result (one slice
/// kernel), or the first result's own variable where that result has one element (no op
/// added). See the module docs.
fn into_sinks(results: &[Tensor]) -> Result<(Function, Tensor)> {
    let mut updates = Vec::with_capacity(results.len() + 1);
    for result in results {
        let shape = result.static_shape().ok_or_else(|| {
            bench_error(format!("internal: a result has the unknown shape {:?}", K::int_shape(result)))
        })?;
        updates.push((K::zeros(&shape, None)?, result.clone()));
    }
    let (first_sink, first) = updates.first().cloned().ok_or_else(|| bench_error("internal: no result".into()))?;
    let fence = if first.static_shape().is_some_and(|s| s.iter().product::<usize>() == 1) {
        first_sink
    } else {
        let element = K::slice(&first, &vec![(0, Some(1)); first.ndim()])?;
        let fence = K::zeros(&[1], None)?;
        updates.push((fence.clone(), K::reshape(&element, &[1])?));
        fence
    };
    Ok((K::function(&[], &[], &updates)?, fence))
}

/// `(n, n) · (n, n)`: `2·n³` FLOPs.
fn matmul(n: usize) -> Result<Prepared> {
    let a = random_variable(&[n, n], 1.0, 1)?;
    let b = random_variable(&[n, n], 1.0, 2)?;
    let (function, fence) = into_sinks(&[K::dot(&a, &b)?])?;
    let work = 2.0 * (n * n * n) as f64;
    Ok(Prepared { function, feeds: Vec::new(), fence: Some(fence), work, unit: Unit::GflopPerS })
}

/// The convolution of `shape` ([`CONV`] or [`CONV_LARGE`]), `same`, stride 1. Forward:
/// `2·B·Ho·Wo·Cout·Cin·kh·kw` FLOPs. Backward: the data and filter gradients of `sum(y)`, twice
/// the forward FLOPs; the output gradient is the lowered `ones` seed of `K::gradients` (one
/// fill of the output's size per call), and the forward convolution is not run. The fence
/// reads the data gradient.
fn conv2d(shape: ConvShape, ordering: ImageDimOrdering, backward: bool) -> Result<Prepared> {
    let (batch, rows, cols, cin, cout, k) = shape;
    let (x_shape, k_shape) = match ordering {
        ImageDimOrdering::Tf => ([batch, rows, cols, cin], [k, k, cin, cout]),
        ImageDimOrdering::Th => ([batch, cin, rows, cols], [cout, cin, k, k]),
    };
    let x = random_variable(&x_shape, 1.0, 3)?;
    let kernel = glorot(&k_shape, cin * k * k, cout * k * k, 4)?;
    let y = K::conv2d(&x, &kernel, (1, 1), BorderMode::Same, Some(ordering), (1, 1))?;
    let forward_flops = 2.0 * (batch * rows * cols * cout * cin * k * k) as f64;
    let ((function, fence), work) = if backward {
        (into_sinks(&K::gradients(&y, &[x, kernel])?)?, 2.0 * forward_flops)
    } else {
        (into_sinks(&[y])?, forward_flops)
    };
    Ok(Prepared { function, feeds: Vec::new(), fence: Some(fence), work, unit: Unit::GflopPerS })
}

/// The pre-activation `x · W + b` of a dense layer with a Glorot-uniform `W` and zero `b`; its variables
/// are appended to `params`.
fn dense(x: &Tensor, fan_in: usize, units: usize, seed: u64, params: &mut Vec<Tensor>) -> Result<Tensor> {
    let w = glorot(&[fan_in, units], fan_in, units, seed)?;
    let b = K::zeros(&[units], None)?;
    let y = (K::dot(x, &w)? + &b)?;
    params.extend([w, b]);
    Ok(y)
}

/// The mean categorical cross-entropy of `softmax(logits)` against `target`, and a function of
/// `(inputs, target)` returning it and applying one SGD step to every parameter.
fn sgd_step(input: &Tensor, logits: &Tensor, params: &[Tensor], classes: usize) -> Result<Function> {
    let target = K::placeholder([TRAIN_BATCH, classes]);
    let output = K::softmax(logits)?;
    let loss = K::mean(&K::categorical_crossentropy(&output, &target, false)?, K::Axes::All, false)?;
    let grads = K::gradients(&loss, params)?;
    let updates = params
        .iter()
        .zip(&grads)
        .map(|(p, g)| Ok((p.clone(), (p - (g * LEARNING_RATE))?)))
        .collect::<Result<Vec<_>>>()?;
    K::function(&[input.clone(), target], &[loss], &updates)
}

/// A batch of `shape` inputs in `[0, 1)` and one-hot targets over `classes`, as host arrays.
fn batch(shape: &[usize], classes: usize) -> Result<Vec<Array>> {
    let len = shape.iter().product();
    let inputs: Vec<f32> = uniform(len, 0.5, 5).into_iter().map(|v| v + 0.5).collect();
    let targets: Vec<f32> =
        (0..TRAIN_BATCH * classes).map(|i| ((i / classes) % classes == i % classes) as u8 as f32).collect();
    Ok(vec![Array::from_vec(shape, inputs)?, Array::from_vec(&[TRAIN_BATCH, classes], targets)?])
}

/// 784-512-512-10, relu, softmax and cross-entropy, SGD: one call is one whole step (upload of
/// the batch, forward, gradients, updates, download of the loss).
fn mlp_train_step() -> Result<Prepared> {
    let x = K::placeholder([TRAIN_BATCH, 784]);
    let mut params = Vec::new();
    let h1 = K::relu(&dense(&x, 784, 512, 6, &mut params)?, 0.0, None)?;
    let h2 = K::relu(&dense(&h1, 512, 512, 7, &mut params)?, 0.0, None)?;
    let logits = dense(&h2, 512, 10, 8, &mut params)?;
    let function = sgd_step(&x, &logits, &params, 10)?;
    let feeds = batch(&[TRAIN_BATCH, 784], 10)?;
    Ok(Prepared { function, feeds, fence: None, work: 1.0, unit: Unit::StepsPerS })
}

/// A `tf`-ordered `valid` 3×3 convolution with `filters` outputs, bias and relu, then a 2×2
/// max pooling; its variables are appended to `params`.
fn conv_block(x: &Tensor, channels: usize, filters: usize, seed: u64, params: &mut Vec<Tensor>) -> Result<Tensor> {
    let tf = Some(ImageDimOrdering::Tf);
    let kernel = glorot(&[3, 3, channels, filters], channels * 9, filters * 9, seed)?;
    let bias = K::zeros(&[filters], None)?;
    let y = (K::conv2d(x, &kernel, (1, 1), BorderMode::Valid, tf, (1, 1))? + &bias)?;
    params.extend([kernel, bias]);
    K::pool2d(&K::relu(&y, 0.0, None)?, (2, 2), (2, 2), BorderMode::Valid, tf, PoolMode::Max)
}

/// 28×28×1 → conv 32 3×3 relu → maxpool 2 → conv 64 3×3 relu → maxpool 2 → flatten → dense 10
/// softmax (`valid` convolutions, as Keras's MNIST example: 26, 13, 11, 5), SGD, one whole step.
fn cnn_train_step() -> Result<Prepared> {
    let x = K::placeholder([TRAIN_BATCH, 28, 28, 1]);
    let mut params = Vec::new();
    let p1 = conv_block(&x, 1, 32, 9, &mut params)?;
    let p2 = conv_block(&p1, 32, 64, 10, &mut params)?;
    let logits = dense(&K::batch_flatten(&p2)?, 5 * 5 * 64, 10, 11, &mut params)?;
    let function = sgd_step(&x, &logits, &params, 10)?;
    let feeds = batch(&[TRAIN_BATCH, 28, 28, 1], 10)?;
    Ok(Prepared { function, feeds, fence: None, work: 1.0, unit: Unit::StepsPerS })
}

/// `exp(x)` over 2^24 float32: 4 bytes read and 4 written per element.
fn exp_16m() -> Result<Prepared> {
    let x = random_variable(&[ELEMENTWISE_LEN], 1.0, 12)?;
    let (function, fence) = into_sinks(&[K::exp(&x)?])?;
    let work = (8 * ELEMENTWISE_LEN) as f64;
    Ok(Prepared { function, feeds: Vec::new(), fence: Some(fence), work, unit: Unit::GbPerS })
}

/// `a * b + c` over 2^24 float32: counted as 3 operands read and 1 result written (16 bytes
/// per element); there is no fused primitive, so the executor runs a multiply then an add (in
/// place) and really moves 24 bytes per element.
fn fma_16m() -> Result<Prepared> {
    let a = random_variable(&[ELEMENTWISE_LEN], 1.0, 13)?;
    let b = random_variable(&[ELEMENTWISE_LEN], 1.0, 14)?;
    let c = random_variable(&[ELEMENTWISE_LEN], 1.0, 15)?;
    let (function, fence) = into_sinks(&[((&a * &b)? + &c)?])?;
    let work = (16 * ELEMENTWISE_LEN) as f64;
    Ok(Prepared { function, feeds: Vec::new(), fence: Some(fence), work, unit: Unit::GbPerS })
}

/// [`DISPATCH_OPS`] element-wise ops on a `(1,)` tensor, alternately `y + x` and `-y` (bounded
/// values, one binary and one unary kernel per pair): the cost per op of the executor and the
/// plugin boundary. The result has one element, so its own variable is the fence: the graph
/// stays [`DISPATCH_OPS`] ops, and the per-op time includes the call's one 4-byte download,
/// spread over them (a GPU backend's wait for its last kernel must be in it).
fn dispatch() -> Result<Prepared> {
    let x = random_variable(&[1], 1.0, 16)?;
    let mut y = x.clone();
    for i in 0..DISPATCH_OPS {
        y = if i % 2 == 0 { (&y + &x)? } else { (-&y)? };
    }
    let (function, fence) = into_sinks(&[y])?;
    let work = DISPATCH_OPS as f64;
    Ok(Prepared { function, feeds: Vec::new(), fence: Some(fence), work, unit: Unit::NsPerOp })
}
