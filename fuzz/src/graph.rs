//! Fuzzing the K API with random graphs of random shapes.
//!
//! The input bytes drive a small program: a few placeholders (some dimensions left unknown)
//! and constants, then a chain of K functions with random arguments (axes out of range,
//! mismatched shapes, empty and huge dimensions, NaN and infinite values included), then a
//! compiled function with some of the results and their gradients. What must hold:
//!
//! * nothing panics: every refusal is an `Err` whose message is one line;
//! * every graph is built twice, on placeholders with unknown dimensions and on placeholders
//!   with the sizes that will be fed. A K function that refuses the unknown shapes but accepts
//!   the known ones is too strict; one that accepts shapes whose fed sizes do not fit must
//!   refuse them when called (never a silent result). Where both are accepted, the two
//!   functions give the same values;
//! * every backend gives the same results as the first (`cpu`) within float tolerance: the
//!   same refusals, shapes and dtypes, and values.
//!
//! Sizes stay small (every tensor that runs holds at most [`MAX_ELEMENTS`] elements); huge
//! dimensions only ever reach graph building, where shape arithmetic must not overflow.

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

use keras::{
    Array, Backend, Tensor,
    backend::{self as K, BorderMode, DType, Dim, ImageDimOrdering, PoolMode},
    registry,
};

/// Tensors larger than this are dropped from the program rather than run.
pub const MAX_ELEMENTS: usize = 4096;
/// Longest chain of K functions one input builds.
const MAX_STEPS: usize = 12;
/// Dimensions that only graph building ever sees.
const HUGE: [usize; 4] = [1 << 31, 1 << 40, 1 << 62, usize::MAX];

/// The built-in `cpu` backend, then `blas` when `libkeras_backend_blas.so` is found: named by
/// `KERAS_FUZZ_BLAS`, else in `target/debug` or `target/release` of the current folder or of
/// any folder above the fuzz binary. Loaded once.
pub fn backends() -> &'static [Backend] {
    static BACKENDS: OnceLock<Vec<Backend>> = OnceLock::new();
    BACKENDS.get_or_init(|| {
        let mut list = vec![registry::load_in("cpu", &[]).expect("the built-in cpu backend")];
        if let Some(path) = blas_library() {
            match registry::load(&path.display().to_string()) {
                Ok(blas) => list.push(blas),
                Err(e) => eprintln!("keras-fuzz: blas not used: {e}"),
            }
        } else {
            eprintln!("keras-fuzz: no libkeras_backend_blas.so found (set KERAS_FUZZ_BLAS); cpu only");
        }
        list
    })
}

fn blas_library() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("KERAS_FUZZ_BLAS") {
        return Some(PathBuf::from(path));
    }
    let file = registry::library_file_name("blas");
    let mut roots: Vec<PathBuf> = std::env::current_dir().into_iter().collect();
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().map(Path::to_path_buf));
    }
    roots
        .iter()
        .flat_map(|root| ["debug", "release"].map(|p| root.join("target").join(p).join(&file)))
        .find(|p| p.is_file())
}

/// The input bytes, read front to back; zeros once exhausted.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn below(&mut self, n: usize) -> usize {
        self.byte() as usize % n.max(1)
    }
    fn flag(&mut self) -> bool {
        self.byte() & 1 == 1
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// An axis argument: mostly in range for `rank`, sometimes negative or out of range.
    fn axis(&mut self, rank: usize) -> isize {
        let r = rank as isize;
        match self.below(8) {
            0 => r + self.below(3) as isize,
            1 => -r - 1 - self.below(2) as isize,
            2 | 3 => -1 - self.below(rank.max(1)) as isize,
            _ => self.below(rank.max(1)) as isize,
        }
    }
    fn small(&mut self) -> usize {
        self.below(4)
    }
    /// A positive stride, size or factor (0 sometimes, which must be refused).
    fn positive(&mut self) -> usize {
        match self.below(16) {
            0 => 0,
            n => 1 + n % 3,
        }
    }
    fn dtype(&mut self) -> DType {
        [DType::F32, DType::F32, DType::F32, DType::F32, DType::F64, DType::I32, DType::I64, DType::Bool][self.below(8)]
    }
    /// A value for a feed or a constant: small halves, sometimes a special float.
    fn value(&mut self, dtype: DType) -> f64 {
        let b = self.byte();
        match dtype {
            DType::Bool => f64::from(b & 1),
            DType::I32 | DType::I64 | DType::U8 => f64::from(b % 8) - 2.0,
            _ => match b {
                250 => f64::NAN,
                251 => f64::INFINITY,
                252 => f64::NEG_INFINITY,
                253 => -0.0,
                254 => 1e30,
                255 => 1e-30,
                _ => (f64::from(b % 13) - 6.0) * 0.5,
            },
        }
    }
    fn border(&mut self) -> BorderMode {
        BorderMode::ALL[self.below(3)]
    }
    fn ordering(&mut self) -> Option<ImageDimOrdering> {
        [None, Some(ImageDimOrdering::Th), Some(ImageDimOrdering::Tf)][self.below(3)]
    }
}

/// One tensor of the program, built on unknown and on known shapes.
struct Entry {
    /// Built on placeholders whose dimensions may be unknown.
    partial: Tensor,
    /// The same K calls on placeholders of the fed sizes; `None` when they were refused there
    /// (the fed sizes do not fit), so that `partial` must be refused when called.
    known: Option<Tensor>,
    /// `false` when it depends on a huge dimension: built, never run.
    runnable: bool,
    /// Refused for the fed sizes itself (its operands were not): the function computing it
    /// must be refused. What is built on such an entry may legitimately not need it (`map_fn`
    /// over an axis known to be empty computes nothing), so only these are checked.
    refused_here: bool,
}

/// A K function with all its non-tensor arguments, read from the input before it is applied
/// to both versions of its operands.
#[derive(Clone, Debug)]
enum Step {
    Unary(u8),
    Scalar(u8, f64),
    Binary(u8),
    Cast(DType),
    Reduce(u8, Option<Vec<isize>>, bool),
    Arg(bool, isize),
    Softmaxish(u8, isize),
    Dot,
    BatchDot(Option<(usize, usize)>),
    Reshape(Vec<isize>),
    Permute(Vec<usize>),
    ExpandDims(isize),
    Squeeze(isize),
    Slice(Vec<(isize, Option<isize>)>),
    Concatenate(isize),
    Stack,
    Tile(Vec<usize>),
    Repeat(usize),
    RepeatElements(usize, isize),
    Reverse(Option<Vec<isize>>),
    OneHot(usize),
    Gather,
    Switch,
    TemporalPadding(usize),
    Spatial2dPadding((usize, usize), Option<ImageDimOrdering>),
    Conv1d(usize, BorderMode),
    Conv2d((usize, usize), BorderMode, Option<ImageDimOrdering>, usize),
    Pool2d((usize, usize), (usize, usize), BorderMode, Option<ImageDimOrdering>, bool),
    ResizeImages(usize, usize, Option<ImageDimOrdering>),
    Crossentropy(bool, bool),
    InTopK(usize),
    MapSquare,
}

impl Step {
    /// How many operands it takes.
    fn arity(&self) -> usize {
        match self {
            Step::Binary(_)
            | Step::Dot
            | Step::BatchDot(_)
            | Step::Concatenate(_)
            | Step::Stack
            | Step::Gather
            | Step::Conv1d(..)
            | Step::Conv2d(..)
            | Step::Crossentropy(..)
            | Step::InTopK(_) => 2,
            Step::Switch => 3,
            _ => 1,
        }
    }

    fn read(input: &mut Input, rank: usize) -> Step {
        let axes = |input: &mut Input| -> Option<Vec<isize>> {
            if input.below(4) == 0 {
                return None;
            }
            let count = 1 + input.below(3);
            Some((0..count).map(|_| input.axis(rank)).collect())
        };
        match input.below(32) {
            0..=3 => Step::Unary(input.byte()),
            4 => Step::Scalar(input.byte(), input.value(DType::F32)),
            5..=7 => Step::Binary(input.byte()),
            8 => Step::Cast(input.dtype()),
            9 | 10 => Step::Reduce(input.byte(), axes(input), input.flag()),
            11 => Step::Arg(input.flag(), input.axis(rank)),
            12 => Step::Softmaxish(input.byte(), input.axis(rank)),
            13 => Step::Dot,
            14 => Step::BatchDot(input.flag().then(|| (input.small(), input.small()))),
            15 => {
                let count = input.below(4);
                let mut spec: Vec<isize> = (0..count).map(|_| input.below(6) as isize).collect();
                if input.flag() {
                    spec.insert(input.below(count + 1), -1);
                }
                if input.below(8) == 0 {
                    spec.push(HUGE[input.below(HUGE.len())] as isize);
                }
                Step::Reshape(spec)
            }
            16 => {
                let mut perm: Vec<usize> = (0..rank).collect();
                for i in (1..perm.len()).rev() {
                    perm.swap(i, input.below(i + 1));
                }
                if input.below(8) == 0 {
                    perm.push(input.small());
                }
                Step::Permute(perm)
            }
            17 => Step::ExpandDims(input.axis(rank + 1)),
            18 => Step::Squeeze(input.axis(rank)),
            19 => {
                let count = input.below(rank + 2);
                let bound = |input: &mut Input| input.below(9) as isize - 4;
                Step::Slice((0..count).map(|_| (bound(input), input.flag().then(|| bound(input)))).collect())
            }
            20 => Step::Concatenate(input.axis(rank)),
            21 => Step::Stack,
            22 => {
                let count = if input.below(8) == 0 { input.small() } else { rank };
                let reps = (0..count)
                    .map(|_| match input.below(16) {
                        0 => HUGE[input.below(HUGE.len())],
                        n => n % 3,
                    })
                    .collect();
                Step::Tile(reps)
            }
            23 => Step::Repeat(input.small()),
            24 => Step::RepeatElements(input.small(), input.axis(rank)),
            25 => Step::Reverse(axes(input)),
            26 => match input.below(3) {
                0 => Step::OneHot(input.small()),
                1 => Step::Gather,
                _ => Step::Switch,
            },
            27 => match input.flag() {
                true => Step::TemporalPadding(input.small()),
                false => Step::Spatial2dPadding((input.small(), input.small()), input.ordering()),
            },
            28 => match input.flag() {
                true => Step::Conv1d(input.positive(), input.border()),
                false => {
                    let dilation = if input.below(4) == 0 { input.positive() } else { 1 };
                    Step::Conv2d((input.positive(), input.positive()), input.border(), input.ordering(), dilation)
                }
            },
            29 => match input.flag() {
                true => Step::Pool2d(
                    (input.positive(), input.positive()),
                    (input.positive(), input.positive()),
                    input.border(),
                    input.ordering(),
                    input.flag(),
                ),
                false => Step::ResizeImages(input.positive(), input.positive(), input.ordering()),
            },
            30 => match input.below(3) {
                0 => Step::InTopK(input.small()),
                _ => Step::Crossentropy(input.flag(), input.flag()),
            },
            _ => Step::MapSquare,
        }
    }

    /// Applies the K function to `xs` (`arity` operands).
    fn apply(&self, xs: &[&Tensor]) -> keras::Result<Tensor> {
        let x = xs[0];
        match self {
            Step::Unary(code) => match code % 24 {
                0 => K::abs(x),
                1 => K::square(x),
                2 => K::exp(x),
                3 => K::log(x),
                4 => K::round(x),
                5 => K::sign(x),
                6 => K::sin(x),
                7 => K::cos(x),
                8 => K::tanh(x),
                9 => K::sigmoid(x),
                10 => K::softplus(x),
                11 => K::softsign(x),
                12 => K::sqrt(x),
                13 => -x,
                14 => K::relu(x, 0.1, Some(2.0)),
                15 => K::elu(x, 0.5),
                16 => K::hard_sigmoid(x),
                17 => K::pow(x, 3.0),
                18 => K::clip(x, -1.0, Some(0.5)),
                // Not `zeros_like`: of a known shape it no longer depends on `x`, so a refusal
                // of `x` for the fed sizes would not reach it (a false alarm here).
                19 => (x * 2.0).and_then(|doubled| K::in_test_phase(x, &doubled)),
                20 => K::stop_gradient(x),
                21 => K::transpose(x),
                22 => K::flatten(x),
                _ => K::batch_flatten(x),
            },
            Step::Scalar(code, value) => match code % 4 {
                0 => x + *value,
                1 => x * *value,
                2 => *value - x,
                _ => x / *value,
            },
            Step::Binary(code) => {
                let y = xs[1];
                match code % 12 {
                    0 => x + y,
                    1 => x - y,
                    2 => x * y,
                    3 => x / y,
                    4 => K::maximum(x, y),
                    5 => K::minimum(x, y),
                    6 => K::equal(x, y),
                    7 => K::not_equal(x, y),
                    8 => K::greater(x, y),
                    9 => K::greater_equal(x, y),
                    10 => K::lesser(x, y),
                    _ => K::lesser_equal(x, y),
                }
            }
            Step::Cast(dtype) => K::cast(x, *dtype),
            Step::Reduce(code, axes, keepdims) => {
                let axes = axes.clone().map_or(K::Axes::All, K::Axes::Some);
                match code % 9 {
                    0 => K::sum(x, axes, *keepdims),
                    1 => K::prod(x, axes, *keepdims),
                    2 => K::max(x, axes, *keepdims),
                    3 => K::min(x, axes, *keepdims),
                    4 => K::mean(x, axes, *keepdims),
                    5 => K::var(x, axes, *keepdims),
                    6 => K::std(x, axes, *keepdims),
                    7 => K::any(x, axes, *keepdims),
                    _ => K::all(x, axes, *keepdims),
                }
            }
            Step::Arg(max, axis) => match max {
                true => K::argmax(x, *axis),
                false => K::argmin(x, *axis),
            },
            Step::Softmaxish(code, axis) => match code % 2 {
                0 => K::softmax(x),
                _ => K::l2_normalize(x, *axis),
            },
            Step::Dot => K::dot(x, xs[1]),
            Step::BatchDot(axes) => K::batch_dot(x, xs[1], *axes),
            Step::Reshape(spec) => K::reshape(x, spec),
            Step::Permute(perm) => K::permute_dimensions(x, perm),
            Step::ExpandDims(axis) => K::expand_dims(x, *axis),
            Step::Squeeze(axis) => K::squeeze(x, *axis),
            Step::Slice(ranges) => K::slice(x, ranges),
            Step::Concatenate(axis) => K::concatenate(&[x.clone(), xs[1].clone()], *axis),
            Step::Stack => K::stack(&[x.clone(), xs[1].clone()]),
            Step::Tile(reps) => K::tile(x, reps),
            Step::Repeat(n) => K::repeat(x, *n),
            Step::RepeatElements(rep, axis) => K::repeat_elements(x, *rep, *axis),
            Step::Reverse(axes) => K::reverse(x, axes.clone().map_or(K::Axes::All, K::Axes::Some)),
            Step::OneHot(n) => K::one_hot(x, *n),
            Step::Gather => K::gather(x, xs[1]),
            Step::Switch => K::switch(x, xs[1], xs[2]),
            Step::TemporalPadding(p) => K::temporal_padding(x, *p),
            Step::Spatial2dPadding(p, ordering) => K::spatial_2d_padding(x, *p, *ordering),
            Step::Conv1d(stride, border) => K::conv1d(x, xs[1], *stride, *border),
            Step::Conv2d(strides, border, ordering, dilation) => {
                K::conv2d(x, xs[1], *strides, *border, *ordering, (*dilation, *dilation))
            }
            Step::Pool2d(size, strides, border, ordering, max) => {
                let mode = if *max { PoolMode::Max } else { PoolMode::Avg };
                K::pool2d(x, *size, *strides, *border, *ordering, mode)
            }
            Step::ResizeImages(h, w, ordering) => K::resize_images(x, *h, *w, *ordering),
            Step::Crossentropy(categorical, logits) => match categorical {
                true => K::categorical_crossentropy(x, xs[1], *logits),
                false => K::binary_crossentropy(x, xs[1], *logits),
            },
            Step::InTopK(k) => K::in_top_k(x, xs[1], *k),
            Step::MapSquare => K::map_fn(K::square, x),
        }
    }
}

/// The program being built, and what is fed to it.
#[derive(Default)]
struct Program {
    entries: Vec<Entry>,
    /// Placeholders that are fed (both versions), and their feeds.
    partial_inputs: Vec<Tensor>,
    known_inputs: Vec<Tensor>,
    feeds: Vec<Array>,
    /// What was built, for failure messages.
    trace: Vec<String>,
}

impl Program {
    fn source(&mut self, input: &mut Input) {
        let rank = input.below(5);
        let dtype = input.dtype();
        let mut shape: Vec<usize> = (0..rank).map(|_| input.below(5)).collect();
        let huge = rank > 0 && input.below(16) == 0;
        if huge {
            shape[input.below(rank)] = HUGE[input.below(HUGE.len())];
        }
        if input.below(4) == 0 && !huge {
            let values: Vec<f64> = (0..shape.iter().product()).map(|_| input.value(dtype)).collect();
            let constant = K::constant(Array::from_f64s(dtype, &shape, &values).expect("values fit the shape"));
            self.trace.push(format!("#{} = constant {shape:?} {dtype}", self.entries.len()));
            self.entries.push(Entry {
                partial: constant.clone(),
                known: Some(constant),
                runnable: true,
                refused_here: false,
            });
            return;
        }
        let partial_shape: Vec<Dim> = shape.iter().map(|&n| (!input.flag()).then_some(n)).collect();
        let partial = K::placeholder_with(partial_shape.clone(), Some(dtype), None);
        let known = K::placeholder_with(shape.clone(), Some(dtype), None);
        self.trace.push(format!("#{} = placeholder {partial_shape:?} fed {shape:?} {dtype}", self.entries.len()));
        if !huge {
            let values: Vec<f64> = (0..shape.iter().product()).map(|_| input.value(dtype)).collect();
            self.feeds.push(Array::from_f64s(dtype, &shape, &values).expect("values fit the shape"));
            self.partial_inputs.push(partial.clone());
            self.known_inputs.push(known.clone());
        }
        self.entries.push(Entry { partial, known: Some(known), runnable: !huge, refused_here: false });
    }

    /// Operand `k` of a step: mostly one of the latest entries.
    fn pick(&self, input: &mut Input) -> usize {
        let n = self.entries.len();
        if input.flag() { n - 1 - input.below(n.min(3)) } else { input.below(n) }
    }

    fn step(&mut self, input: &mut Input) {
        let first = self.pick(input);
        let step = Step::read(input, self.entries[first].partial.ndim());
        let mut operands = vec![first];
        while operands.len() < step.arity() {
            operands.push(self.pick(input));
        }
        let partials: Vec<&Tensor> = operands.iter().map(|&k| &self.entries[k].partial).collect();
        let knowns: Option<Vec<&Tensor>> = operands.iter().map(|&k| self.entries[k].known.as_ref()).collect();
        let what = format!("{step:?} of {operands:?}");
        let partial = checked(&what, step.apply(&partials));
        let known = knowns.map(|knowns| checked(&what, step.apply(&knowns)));
        let runnable = operands.iter().all(|&k| self.entries[k].runnable);
        let Some(partial) = partial else {
            if let Some(Some(known)) = known {
                panic!("{what} refuses unknown shapes that fit once fed: accepts {known:?}\n{}", self.trace.join("\n"));
            }
            return;
        };
        let refused_here = matches!(known, Some(None));
        let known = known.flatten();
        let small = known.as_ref().is_none_or(|k| k.static_shape().is_some_and(|s| fits(&s)));
        if !small {
            return;
        }
        self.trace.push(format!("#{} = {what} -> {partial:?} / {known:?}", self.entries.len()));
        self.entries.push(Entry { partial, known, runnable, refused_here });
    }
}

fn fits(shape: &[usize]) -> bool {
    let count = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    shape.len() <= 6 && count.is_some_and(|n| n <= MAX_ELEMENTS)
}

/// The tensor, or `None` for a refusal, which must be one line.
fn checked(what: &str, result: keras::Result<Tensor>) -> Option<Tensor> {
    match result {
        Ok(t) => Some(t),
        Err(e) => {
            one_line(what, &e);
            None
        }
    }
}

fn one_line(what: &str, error: &keras::Error) {
    let message = error.to_string();
    assert!(!message.trim().is_empty() && !message.contains('\n'), "{what}: not a one-line error: {message:?}");
}

/// Builds and runs the program of `data` on every backend of `backends` (the first one is the
/// reference).
pub fn run(data: &[u8], backends: &[Backend]) {
    let mut input = Input(data);
    let mut program = Program::default();
    for _ in 0..1 + input.below(3) {
        program.source(&mut input);
    }
    for _ in 0..MAX_STEPS {
        if input.is_empty() {
            break;
        }
        program.step(&mut input);
    }
    let runnable: Vec<usize> = (0..program.entries.len()).filter(|&k| program.entries[k].runnable).collect();
    if runnable.is_empty() {
        return;
    }
    let outputs: Vec<usize> = (0..3).map(|k| runnable[runnable.len() - 1 - k.min(runnable.len() - 1)]).collect();
    let valid: Vec<usize> = outputs.into_iter().filter(|&k| program.entries[k].known.is_some()).collect();
    let trace = program.trace.join("\n");

    if let Some(&k) = runnable.iter().rev().find(|&&k| program.entries[k].refused_here) {
        // Built on unknown shapes, refused on the fed ones: the call must be refused too.
        for backend in backends {
            let called = K::with_backend(backend, || {
                let f = K::function(&program.partial_inputs, &[program.entries[k].partial.clone()], &[])?;
                f.call(&program.feeds)
            });
            match called {
                Ok(values) => panic!(
                    "#{k} is refused for the fed sizes but the function computed {values:?} on {}\n{trace}",
                    backend.name()
                ),
                Err(e) => one_line("refused call", &e),
            }
        }
    }
    if valid.is_empty() {
        return;
    }
    let mut valid = valid;
    valid.dedup();
    let partial_outputs = with_gradients(valid.iter().map(|&k| &program.entries[k].partial), &program.partial_inputs);
    let known_outputs =
        with_gradients(valid.iter().map(|&k| program.entries[k].known.as_ref().expect("valid")), &program.known_inputs);
    let (partial_outputs, known_outputs) = match (partial_outputs, known_outputs) {
        (Ok(p), Ok(k)) => (p, k),
        (Err(e), Err(_)) => return one_line("gradients", &e),
        (Err(e), Ok(_)) => panic!("gradients refused on unknown shapes only: {e}\n{trace}"),
        (Ok(partial), Err(e)) => {
            // Refused on the fed sizes: built late on unknown ones, it must be refused when called.
            one_line("gradients", &e);
            for backend in backends {
                let called = K::with_backend(backend, || {
                    K::function(&program.partial_inputs, &partial, &[])?.call(&program.feeds)
                });
                if let Ok(values) = called {
                    panic!("gradients refused for the fed sizes ({e}) but computed {values:?}\n{trace}");
                }
            }
            return;
        }
    };

    let mut reference: Option<(String, keras::Result<Vec<Array>>)> = None;
    for backend in backends {
        let call = |inputs: &[Tensor], outputs: &[Tensor]| {
            K::with_backend(backend, || K::function(inputs, outputs, &[])?.call(&program.feeds))
        };
        let on_known = call(&program.known_inputs, &known_outputs);
        let on_partial = call(&program.partial_inputs, &partial_outputs);
        let context = format!("on {}, unknown shapes vs fed sizes", backend.name());
        compare(&context, &on_known, &on_partial, 1e-5, &trace);
        match &reference {
            None => reference = Some((backend.name().to_string(), on_known)),
            Some((name, expected)) => {
                compare(&format!("{name} vs {}", backend.name()), expected, &on_known, 1e-3, &trace)
            }
        }
    }
}

/// The outputs, then the gradient of the sum of each float output with respect to every float
/// placeholder.
fn with_gradients<'a>(outputs: impl Iterator<Item = &'a Tensor>, inputs: &[Tensor]) -> keras::Result<Vec<Tensor>> {
    let outputs: Vec<Tensor> = outputs.cloned().collect();
    let wrt: Vec<Tensor> = inputs.iter().filter(|t| t.dtype().is_float()).cloned().collect();
    let mut all = outputs.clone();
    for output in outputs.iter().filter(|t| t.dtype().is_float()) {
        if wrt.is_empty() {
            break;
        }
        let loss = K::sum(output, K::Axes::All, false)?;
        all.extend(K::gradients(&loss, &wrt)?);
    }
    Ok(all)
}

/// Two runs must both fail (one-line errors) or both give the same shapes, dtypes and values
/// (NaN where NaN; within `tolerance`, relative to the magnitude, elsewhere).
fn compare(
    context: &str,
    expected: &keras::Result<Vec<Array>>,
    actual: &keras::Result<Vec<Array>>,
    tolerance: f64,
    trace: &str,
) {
    match (expected, actual) {
        (Err(a), Err(b)) => {
            one_line(context, a);
            one_line(context, b);
        }
        (Ok(a), Ok(b)) => {
            assert_eq!(a.len(), b.len(), "{context}\n{trace}");
            for (k, (x, y)) in a.iter().zip(b).enumerate() {
                assert_eq!((x.dtype(), x.shape()), (y.dtype(), y.shape()), "{context}: output {k}\n{trace}");
                for (i, (p, q)) in x.to_f64_vec().into_iter().zip(y.to_f64_vec()).enumerate() {
                    let close = p == q
                        || (p.is_nan() && q.is_nan())
                        || (p - q).abs() <= tolerance * p.abs().max(q.abs()).max(1.0);
                    assert!(close, "{context}: output {k} element {i}: {p} vs {q}\n{x:?}\n{y:?}\n{trace}");
                }
            }
        }
        (a, b) => panic!("{context}: {:?} vs {:?}\n{trace}", a.as_ref().err(), b.as_ref().err()),
    }
}
