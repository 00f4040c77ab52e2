//! Errors as values: the only way a failure crosses the plugin boundary.

use abi_stable::{StableAbi, std_types::RResult, std_types::RString};

/// What kind of failure a [`BackendError`] reports.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The arguments break the kernel's contract (shapes, dtypes, axes, unknown buffer).
    InvalidArgument,
    /// The backend does not implement this op (or this op for this dtype). The host may fall
    /// back to a decomposition; for fused fast paths it always does.
    Unsupported,
    /// The device could not allocate memory.
    OutOfMemory,
    /// The backend could not start (no device, missing driver library, ...).
    Unavailable,
    /// A bug inside the backend, including a caught panic.
    Internal,
}

/// An error returned by a backend: a kind and a one-line, human-readable message.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct BackendError {
    /// The category, for programmatic handling.
    pub kind: ErrorKind,
    /// One line naming the kernel, the argument and the offending shapes or values.
    pub message: RString,
}

/// The result type of every fallible contract entry point.
pub type BackendResult<T> = RResult<T, BackendError>;

impl BackendError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        BackendError { kind, message: RString::from(message.into()) }
    }

    /// An [`ErrorKind::InvalidArgument`] error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    /// An [`ErrorKind::Unsupported`] error for `what` (an op or an op/dtype pair).
    pub fn unsupported(what: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::Unsupported, format!("{what} is not supported by this backend"))
    }

    /// An [`ErrorKind::Internal`] error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// `true` when the backend declined the op rather than failed at it.
    pub fn is_unsupported(&self) -> bool {
        self.kind == ErrorKind::Unsupported
    }
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BackendError {}
