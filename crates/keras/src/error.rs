//! The error type of the `keras` crate: one enum, one variant per area, each a single line.

use std::path::PathBuf;

use keras_backend_api::BackendError;

/// Result type of the `keras` crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a backend could not be loaded (the category of an [`Error::Load`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LoadFailure {
    /// The name is not a valid backend name, or no library of that name is on the search path.
    NotFound,
    /// The file could not be opened as a shared library (missing, truncated, not a library).
    OpenFailed,
    /// The file is a library but not a keras-rs plugin (no declaration symbol, wrong magic).
    NotAPlugin,
    /// The plugin declares another contract MAJOR version than this host's.
    ContractVersion,
    /// abi_stable refused the plugin's root module (type layout or version differs).
    ContractLayout,
    /// The plugin loaded but its `create` function (or its first `info` call) failed.
    StartFailed,
}

/// Everything that can go wrong in the `keras` crate. Every variant displays as one line that
/// names what failed: the file and field, the library path, the backend name, the versions.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `keras.json` could not be read, parsed or written, or holds a bad value.
    #[error("{}: {message}", path.display())]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// The offending field, when one is at fault.
        field: Option<String>,
        /// What is wrong, naming the field and the allowed values.
        message: String,
    },

    /// A backend could not be resolved, opened, checked or started.
    #[error("{message}")]
    Load {
        /// The category, for programmatic handling.
        kind: LoadFailure,
        /// The backend name or library path that was asked for.
        requested: String,
        /// One line naming the file, the versions or the folders searched.
        message: String,
    },

    /// A backend answered an operation with an error.
    #[error("backend `{backend}`: {operation} failed: {source}")]
    Backend {
        /// The backend's name.
        backend: String,
        /// The contract operation that failed (`alloc`, `upload`, `info`, ...).
        operation: &'static str,
        /// The backend's own error value.
        source: BackendError,
    },

    /// A K function was given arguments it cannot accept: shapes that do not fit its shape rule,
    /// bad axes, wrong dtypes, a missing feed. Raised when the graph is built or fed.
    #[error("{function}: {message}")]
    Graph {
        /// The K function (or primitive) that refused, e.g. `dot` or `function`.
        function: String,
        /// What is wrong, naming the argument and the shapes or values.
        message: String,
    },

    /// A host-side buffer operation was misused (wrong byte count, wrong element type).
    #[error("buffer {operation}: {message}")]
    Buffer {
        /// The buffer operation (`upload`, `to_vec`, ...).
        operation: &'static str,
        /// What is wrong, with the expected and actual sizes or dtypes.
        message: String,
    },
}

impl Error {
    /// The [`LoadFailure`] category when this is an [`Error::Load`].
    pub fn load_failure(&self) -> Option<LoadFailure> {
        match self {
            Error::Load { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// An [`Error::Graph`].
    pub(crate) fn graph(function: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Graph { function: function.into(), message: message.into() }
    }

    pub(crate) fn config(path: impl Into<PathBuf>, field: Option<&str>, message: impl Into<String>) -> Error {
        Error::Config { path: path.into(), field: field.map(str::to_string), message: message.into() }
    }

    /// An [`Error::Backend`]; the backend's message is folded onto one line.
    pub(crate) fn backend(backend: impl Into<String>, operation: &'static str, source: BackendError) -> Error {
        let message = one_line(&source.message);
        Error::Backend { backend: backend.into(), operation, source: BackendError::new(source.kind, message) }
    }

    pub(crate) fn load(kind: LoadFailure, requested: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Load { kind, requested: requested.into(), message: one_line(&message.into()) }
    }
}

/// Folds text from outside this crate (dlerror, abi_stable, plugin messages) onto one line, so
/// that every [`Error`] keeps its one-line promise.
pub(crate) fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_joins_lines_and_drops_blank_ones() {
        assert_eq!(one_line("\n a \n\n b\n"), "a; b");
        assert_eq!(one_line("single"), "single");
    }
}
