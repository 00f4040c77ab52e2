//! `keras-cli train`: trains a digit classifier with the K API on the chosen backend, showing a
//! progress bar per epoch; `keras-cli evaluate`: scores weights that `train --save` wrote.

use std::{collections::HashMap, io::IsTerminal, path::PathBuf, time::Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use keras::{Backend, Error, backend as K, registry};

use crate::train::{
    EpochStats, Trainer, batch_count, data, file_error,
    model::{Model, ModelKind},
    optim::Optimizer,
    plot, weights,
};

/// Arguments of `keras-cli train`.
#[derive(Args)]
pub struct TrainArgs {
    /// The network to train.
    #[arg(long, value_enum, default_value = "cnn")]
    model: ModelKind,
    /// Passes over the training set.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    epochs: u32,
    /// Images per weight update.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    /// Learning rate (default: 0.1 for sgd, 0.01 for momentum, 0.001 for adam).
    #[arg(long, value_parser = positive_rate)]
    lr: Option<f64>,
    /// The update rule.
    #[arg(long, value_enum, default_value = "adam")]
    optimizer: Optimizer,
    /// Fixes the test split, the initial weights, the batch order and the dropout masks.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write a PNG of the training and test loss and accuracy per epoch.
    #[arg(long, value_name = "FILE.png")]
    plot: Option<PathBuf>,
    /// Write the trained weights (safetensors) for `keras-cli evaluate --load`.
    #[arg(long, value_name = "FILE")]
    save: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

/// Arguments of `keras-cli evaluate`.
#[derive(Args)]
pub struct EvaluateArgs {
    /// Weights written by `keras-cli train --save`.
    #[arg(long, value_name = "FILE")]
    load: PathBuf,
    /// The network the weights belong to (default: the one recorded in the file).
    #[arg(long, value_enum)]
    model: Option<ModelKind>,
    /// The seed that chose the test split (default: the one recorded in the file).
    #[arg(long)]
    seed: Option<u64>,
    #[command(flatten)]
    common: Common,
}

/// Options both subcommands take.
#[derive(Args)]
struct Common {
    /// A backend name (cpu, blas, ...) or plugin library path (default: KERAS_BACKEND,
    /// keras.json, else cpu).
    #[arg(long, value_name = "NAME")]
    backend: Option<String>,
    /// A folder of MNIST-format IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte,
    /// t10k-*, each maybe .gz) instead of the embedded UCI digits.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
}

impl Common {
    /// The backend asked for: `--backend`, else the active one.
    fn backend(&self) -> Result<Backend, Error> {
        match &self.backend {
            Some(name) => registry::load(name),
            None => registry::active(),
        }
    }
}

/// Metadata keys of saved weights.
const META_MODEL: &str = "keras-rs.model";
const META_SEED: &str = "keras-rs.seed";
const META_DATA: &str = "keras-rs.data";
const META_ACCURACY: &str = "keras-rs.test_accuracy";

/// Runs `keras-cli train`.
pub fn run_train(args: TrainArgs) -> Result<(), Error> {
    let backend = args.common.backend()?;
    K::with_backend(&backend, || train(&args, &backend))
}

/// Runs `keras-cli evaluate`.
pub fn run_evaluate(args: EvaluateArgs) -> Result<(), Error> {
    let backend = args.common.backend()?;
    K::with_backend(&backend, || evaluate(&args))
}

fn train(args: &TrainArgs, backend: &Backend) -> Result<(), Error> {
    let split = data::load(args.common.data.as_deref(), args.seed)?;
    let (train_set, test_set) = (&split.train, &split.test);
    let lr = args.lr.unwrap_or_else(|| args.optimizer.default_learning_rate());
    let model = Model::build(args.model, train_set.rows, train_set.cols, train_set.classes, args.seed)?;
    let parameters: usize = model.weights.iter().map(|(_, v)| K::count_params(v)).sum::<Result<_, _>>()?;
    println!("backend: {} ({})", backend.name(), backend.info().device);
    println!("data: {}: {} for training, {} for testing", split.source, train_set.len(), test_set.len());
    println!(
        "model: {} ({parameters} weights), optimizer {} lr {lr}, batch size {}, seed {}",
        args.model.name(),
        args.optimizer.name(),
        args.batch_size,
        args.seed
    );
    let mut trainer = Trainer::new(model, train_set.classes, args.optimizer, lr, args.seed)?;

    let batch_size = args.batch_size as usize;
    let batches = batch_count(train_set.len(), batch_size);
    let mut history = Vec::new();
    for epoch in 1..=args.epochs {
        let bar = progress_bar(batches as u64, format!("epoch {epoch}/{}", args.epochs));
        let started = Instant::now();
        let train_metrics = trainer.train_epoch(train_set, batch_size, |done, m| {
            bar.set_position(done as u64);
            bar.set_message(format!("loss {:.4} acc {:.4}", m.loss, m.accuracy));
        })?;
        let seconds = started.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let test_metrics = trainer.evaluate(test_set)?;
        println!(
            "epoch {epoch:>width$}/{}  loss {:.4}  acc {:.4}  test loss {:.4}  test acc {:.4}  {seconds:.2}s",
            args.epochs,
            train_metrics.loss,
            train_metrics.accuracy,
            test_metrics.loss,
            test_metrics.accuracy,
            width = args.epochs.to_string().len(),
        );
        history.push(EpochStats { train: train_metrics, test: test_metrics, seconds });
    }
    let total: f64 = history.iter().map(|e| e.seconds).sum();
    println!("training time: {total:.2}s ({:.2}s per epoch)", total / history.len() as f64);
    let final_accuracy = history.last().map_or(0.0, |e| e.test.accuracy);

    if let Some(path) = &args.save {
        let mut metadata = HashMap::from([
            (META_MODEL.to_string(), args.model.name().to_string()),
            (META_SEED.to_string(), args.seed.to_string()),
            (META_ACCURACY.to_string(), format!("{final_accuracy:.4}")),
        ]);
        if let Some(dir) = &args.common.data {
            let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
            metadata.insert(META_DATA.to_string(), dir.display().to_string());
        }
        weights::save(path, &trainer.model, metadata)?;
        println!("weights saved to {}", path.display());
    }
    if let Some(path) = &args.plot {
        let source = if args.common.data.is_some() { "IDX data" } else { "UCI digits" };
        let title = format!(
            "{} on {source}: {} lr {lr}, batch {}, seed {}",
            args.model.name(),
            args.optimizer.name(),
            args.batch_size,
            args.seed
        );
        plot::write_png(path, &title, &history)?;
        println!("plot written to {}", path.display());
    }
    println!("test accuracy: {final_accuracy:.4}");
    Ok(())
}

fn evaluate(args: &EvaluateArgs) -> Result<(), Error> {
    let path = args.load.as_path();
    let (metadata, bytes) = weights::read(path)?;
    let kind = match (args.model, metadata.get(META_MODEL)) {
        (Some(kind), _) => kind,
        (None, Some(name)) => ModelKind::from_name(name)
            .ok_or_else(|| file_error(path, format!("records model `{name}`, which is neither mlp nor cnn")))?,
        (None, None) => return Err(file_error(path, "records no model: give --model mlp or --model cnn")),
    };
    let seed = match (args.seed, metadata.get(META_SEED)) {
        (Some(seed), _) => seed,
        (None, Some(text)) => {
            text.parse().map_err(|_| file_error(path, format!("records seed `{text}`, not an integer")))?
        }
        (None, None) => return Err(file_error(path, "records no seed: give --seed, as given to train")),
    };
    let data_dir = args.common.data.clone().or_else(|| metadata.get(META_DATA).map(PathBuf::from));
    let split = data::load(data_dir.as_deref(), seed)?;
    let test_set = &split.test;
    let model = Model::build(kind, test_set.rows, test_set.cols, test_set.classes, seed)?;
    weights::load_into(path, &bytes, &model)?;
    // The optimiser is never run here; any one compiles the same scoring function.
    let trainer = Trainer::new(model, test_set.classes, Optimizer::Sgd, 0.0, seed)?;
    let metrics = trainer.evaluate(test_set)?;
    let recorded = metadata.get(META_ACCURACY).map_or(String::new(), |a| format!(" (test accuracy {a} when saved)"));
    println!("model: {} from {}, seed {seed}{recorded}", kind.name(), path.display());
    println!("data: {}: {} test images", split.source, test_set.len());
    println!("test loss: {:.4}", metrics.loss);
    println!("test accuracy: {:.4}", metrics.accuracy);
    Ok(())
}

/// Parses `--lr`: a finite number above 0.
fn positive_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate.is_finite() => Ok(rate),
        _ => Err(format!("`{text}` is not a positive number")),
    }
}

/// A bar of `len` batches on stderr, hidden when stderr is not a terminal.
fn progress_bar(len: u64, prefix: String) -> ProgressBar {
    let target =
        if std::io::stderr().is_terminal() { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
    let style = ProgressStyle::with_template("{prefix} [{bar:30.cyan/blue}] {pos}/{len} batches  {msg}  {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    ProgressBar::with_draw_target(Some(len), target).with_style(style).with_prefix(prefix)
}
