//! `keras-cli`: the command-line tool of keras-rs. Each subcommand lives in a module of its
//! own; this file only parses the command line, sets up logging and reports errors.

mod backend_cmd;
mod bench_cmd;
mod conformance_cmd;
mod train;
mod train_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// keras-rs command-line tool.
#[derive(Parser)]
#[command(name = "keras-cli", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the active backend, list the available ones, or select one.
    Backend(backend_cmd::BackendArgs),
    /// Time a fixed set of workloads (matmul, conv2d, training steps, element-wise, dispatch).
    Bench(bench_cmd::BenchArgs),
    /// Run the Keras 1 conformance cases on one backend or all of them.
    Conformance(conformance_cmd::ConformanceArgs),
    /// Train a digit classifier (mlp or cnn) with the K API; optionally plot and save it.
    Train(train_cmd::TrainArgs),
    /// Score weights saved by `train --save` on the same held-out test set.
    Evaluate(train_cmd::EvaluateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Backend(args) => backend_cmd::run(args),
        Command::Bench(args) => bench_cmd::run(args),
        Command::Conformance(args) => conformance_cmd::run(args),
        Command::Train(args) => train_cmd::run_train(args),
        Command::Evaluate(args) => train_cmd::run_evaluate(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Errors are one line by construction; the prefix makes them easy to grep.
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `warn`), so stdout stays clean for `--json`.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}
