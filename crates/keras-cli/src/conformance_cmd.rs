//! `keras-cli conformance`: runs the Keras 1 reference cases on one backend or on all of them
//! and prints every failure, a per-function table and `N passed, M failed, K skipped`. The
//! runner itself is `keras_tests::conformance`; known-failures lists do not apply here (raw
//! results), so the exit status is non-zero whenever anything fails.

use std::{io::Write, path::PathBuf};

use clap::Args;
use keras::{Error, registry};
use keras_tests::conformance::{self, DEFAULT_CASES, Options};

/// Arguments of `keras-cli conformance`.
#[derive(Args)]
pub struct ConformanceArgs {
    /// A backend name (cpu, blas, ...), a plugin library path, or `all` for every backend found
    /// that loads. Default: the active backend (KERAS_BACKEND, keras.json, else cpu).
    #[arg(long)]
    backend: Option<String>,

    /// A case folder: one engine folder (holding manifest.jsonl) or a folder of engine folders
    /// such as tensorflow/ and theano/. Default: the project's tests/conformance/keras1.
    #[arg(long)]
    cases: Option<PathBuf>,

    /// Only cases (and probes) whose name contains this text.
    #[arg(long)]
    filter: Option<String>,

    /// One JSON object per result per line, then a summary object.
    #[arg(long)]
    json: bool,

    /// Skip the gradient checks (`<case>.grad`).
    #[arg(long)]
    no_grad: bool,

    /// Also print why each skipped result was skipped, and the gradient checks' counts.
    #[arg(long, short)]
    verbose: bool,
}

/// Runs `keras-cli conformance`; exits with status 1 when a result failed.
pub fn run(args: ConformanceArgs) -> Result<(), Error> {
    let dir = args.cases.unwrap_or_else(|| PathBuf::from(DEFAULT_CASES));
    let cases = conformance::load_cases(&dir).map_err(|message| Error::Config { path: dir, field: None, message })?;
    let backends = match args.backend.as_deref() {
        None => vec![registry::active()?],
        Some("all") => every_backend(args.json),
        Some(name) => vec![registry::load(name)?],
    };
    let options = Options { filter: args.filter, gradients: !args.no_grad };
    let report = conformance::run_all(&cases, &conformance::targets(backends), &options);
    let mut out = std::io::stdout().lock();
    let printed = if args.json { report.print_json(&mut out) } else { report.print_text(&mut out, args.verbose) };
    printed.and_then(|()| out.flush()).map_err(|e| Error::Config {
        path: "<stdout>".into(),
        field: None,
        message: format!("cannot write the report: {e}"),
    })?;
    if report.has_failures() {
        // The report's last line is the summary; nothing may follow it on stdout.
        std::process::exit(1);
    }
    Ok(())
}

/// Every backend `registry::discover` finds that loads; the others are named with the reason
/// (on stderr with `--json`, so stdout stays JSON).
fn every_backend(json: bool) -> Vec<keras::Backend> {
    let mut backends = Vec::new();
    for found in registry::discover() {
        match found.load() {
            Ok(backend) => backends.push(backend),
            Err(error) => {
                let line = format!("backend {} does not load, not run: {error}", found.name);
                if json { eprintln!("{line}") } else { println!("{line}") }
            }
        }
    }
    backends
}
