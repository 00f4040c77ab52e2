//! `keras-cli backend`: show the active backend, list every backend found, select one.

use std::path::Path;

use clap::{Args, Subcommand};
use keras::{
    BackendSource, Config, Error,
    registry::{self, Backend, Found},
};
use serde_json::{Value, json};

/// Arguments of `keras-cli backend`.
#[derive(Args)]
pub struct BackendArgs {
    /// Print JSON for scripts instead of text.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    action: Option<Action>,
}

#[derive(Subcommand)]
enum Action {
    /// List every backend found (plugin files on the search path, and the built-in cpu), with
    /// whether it loads.
    List,
    /// Check that a backend loads, then write it into keras.json as the default.
    Use {
        /// A backend name (cpu, blas, cuda, ...) or the path of a plugin library.
        name: String,
    },
}

/// Runs `keras-cli backend [list | use NAME] [--json]`.
pub fn run(args: BackendArgs) -> Result<(), Error> {
    match args.action {
        None => show(args.json),
        Some(Action::List) => list(args.json),
        Some(Action::Use { name }) => select(&name, args.json),
    }
}

fn show(json: bool) -> Result<(), Error> {
    let backend = registry::active()?;
    let info = backend.info();
    if json {
        print_json(&backend_json(&backend));
        return Ok(());
    }
    let chosen_by = match backend.source() {
        Some(BackendSource::Env) => format!("env KERAS_BACKEND={}", std::env::var("KERAS_BACKEND").unwrap_or_default()),
        Some(BackendSource::ConfigFile(path)) => format!("keras.json ({})", path.display()),
        Some(BackendSource::Default) | None => "default (no KERAS_BACKEND, no `backend` in keras.json)".to_string(),
    };
    let dtypes = info.dtypes.iter().map(|d| d.name()).collect::<Vec<_>>().join(", ");
    println!("backend:   {}", backend.name());
    println!("chosen by: {chosen_by}");
    println!("library:   {}", library_text(backend.library_path()));
    println!("version:   {}", info.version);
    println!("contract:  {} (this host: {})", backend.contract_version(), registry::ContractVersion::HOST);
    println!("device:    {}", info.device);
    println!("threads:   {}", info.threads);
    println!("dtypes:    {dtypes}");
    Ok(())
}

fn list(json: bool) -> Result<(), Error> {
    let mut rows = Vec::new();
    for found in registry::discover() {
        let loaded = found.load();
        if json {
            rows.push(found_json(&found, &loaded));
        } else {
            let path = library_text(found.path.as_deref());
            match &loaded {
                Ok(backend) => {
                    println!("{} ok {} {} {path}", found.name, backend.info().version, backend.info().device)
                }
                // Most load errors already name the file; show it only when this one does not.
                Err(e) if e.to_string().contains(&path) => println!("{} failed: {e}", found.name),
                Err(e) => println!("{} failed: {e} ({path})", found.name),
            }
        }
    }
    if json {
        print_json(&Value::Array(rows));
    }
    Ok(())
}

fn select(name: &str, json: bool) -> Result<(), Error> {
    let config = Config::load()?;
    let backend = registry::load_in(name, &registry::search_path_for(&config.home))?;
    // A path is stored absolute, so that keras.json means the same file from any folder.
    let value = match backend.library_path() {
        Some(path) if registry::is_path(name) => path.display().to_string(),
        _ => name.to_string(),
    };
    let file = keras::config::set_backend(&config.home, &value)?;
    if json {
        print_json(&json!({ "backend": value, "file": file, "loaded": backend_json(&backend) }));
    } else {
        println!("backend `{value}` loads ({}); written to {}", backend.info().device, file.display());
    }
    if config.backend_source == BackendSource::Env {
        eprintln!("note: KERAS_BACKEND={} is set and overrides keras.json in this environment", config.backend);
    }
    Ok(())
}

fn library_text(path: Option<&Path>) -> String {
    path.map_or_else(|| "built-in".to_string(), |p| p.display().to_string())
}

fn source_json(source: Option<&BackendSource>) -> Value {
    match source {
        Some(BackendSource::Env) => json!({ "kind": "env", "variable": "KERAS_BACKEND" }),
        Some(BackendSource::ConfigFile(path)) => json!({ "kind": "config_file", "path": path }),
        Some(BackendSource::Default) => json!({ "kind": "default" }),
        None => Value::Null,
    }
}

fn backend_json(backend: &Backend) -> Value {
    let info = backend.info();
    json!({
        "name": backend.name(),
        "source": source_json(backend.source()),
        "library": backend.library_path(),
        "builtin": backend.library_path().is_none(),
        "version": info.version,
        "contract": backend.contract_version().to_string(),
        "device": info.device,
        "threads": info.threads,
        "dtypes": info.dtypes.iter().map(|d| d.name()).collect::<Vec<_>>(),
    })
}

fn found_json(found: &Found, loaded: &Result<Backend, Error>) -> Value {
    match loaded {
        Ok(backend) => json!({
            "name": found.name,
            "path": found.path,
            "status": "ok",
            "version": backend.info().version,
            "device": backend.info().device,
            "contract": backend.contract_version().to_string(),
        }),
        Err(e) => json!({ "name": found.name, "path": found.path, "status": "failed", "error": e.to_string() }),
    }
}

fn print_json(value: &Value) {
    // Serialising a `Value` cannot fail; `Display` of `Value` is its compact JSON.
    println!("{value:#}");
}
