//! # The keras-rs backend contract
//!
//! This crate is the whole contract between the keras-rs front end (the Keras backend API,
//! graph, autodiff and executor in the `keras` crate) and a **backend plugin**: a shared library
//! that owns buffers on a device and runs a fixed set of primitive kernels on them. A third
//! party writes a plugin from this crate alone; nothing here refers to the other crates.
//!
//! ## The model
//!
//! * A plugin is a `cdylib` named `libkeras_backend_<name>.so` (`.dylib`, `.dll` elsewhere)
//!   that exports two symbols through [`export_backend!`]:
//!   1. a plain C static [`PluginDeclaration`] (magic bytes, contract version, name), which the
//!      host reads with `dlsym` alone, before anything else, to refuse foreign files and other
//!      contract MAJORs in one line;
//!   2. an [abi_stable](https://docs.rs/abi_stable) root module, [`PluginModule`], whose full
//!      type layout the host checks before use, and whose `create` function starts the backend.
//! * The backend is a [`Backend`] trait object ([`BackendBox`]). Its methods are the primitive
//!   kernels: element-wise ([`UnaryOp`], [`BinaryOp`] with NumPy broadcasting, select, cast,
//!   fill), reductions ([`ReduceOp`], [`ArgReduceOp`]), batched matmul, data movement (permute,
//!   strided slice, concat, pad, reverse, gather, scatter-add, tile, repeat, one-hot),
//!   convolution and pooling in 1-3 spatial dims with their backward kernels ([`ConvParams`],
//!   [`PoolParams`]), nearest resize, counter-based random numbers ([`random`]), and two fused
//!   fast paths (softmax, batch-norm) that a backend may decline.
//! * Plugins never see the graph. Every function of the Keras backend API and every gradient is
//!   composed by the host from these primitives, so implementing them gives a backend all of it.
//! * Buffers are opaque [`BufferId`] handles; a kernel reads and writes whole buffers viewed
//!   through [`TensorRef`] (buffer + row-major shape). The host allocates every output.
//! * Failures are values: [`BackendError`] with an [`ErrorKind`] and a one-line message.
//!   [`ErrorKind::Unsupported`] means "not implemented here" and lets the host fall back.
//!   No panic crosses the boundary: [`export_backend!`] wraps every method in `catch_unwind`.
//!
//! Shape rules shared by both sides live in [`shape`], the window geometry and argument checks
//! of convolution and pooling that every backend applies in [`window`]; the random stream is
//! defined bit-exactly in [`random`].
//!
//! ## Versioning
//!
//! The contract version is this crate's version, [`CONTRACT_MAJOR`].[`CONTRACT_MINOR`].
//!
//! * **MINOR** bumps are additions that old plugins and old hosts survive: a new method
//!   appended after the last one of [`Backend`] (a host calls it only on plugins whose
//!   declared minor is at least the one that added it), a new free function or doc change.
//! * **MAJOR** bumps are everything else: a changed or removed method, a new variant in any
//!   enum, a changed struct. The loader refuses a plugin whose MAJOR differs from the host's,
//!   naming both.
//! * [`PluginDeclaration`]'s layout never changes.
//!
//! A MINOR bump may also relax a rule in the host's favour (let it alias more buffers, say);
//! the host then relies on the relaxed rule only with plugins whose declared minor has it.
//! abi_stable's own version check on the root module is pinned to `MAJOR.0.0`
//! ([`PluginModuleRef`]'s `VERSION_STRINGS`), so that it never refuses a plugin of an older
//! minor: the minor is negotiated through [`PluginDeclaration`] alone.
//!
//! | contract | adds |
//! |---|---|
//! | 1.0 | the primitives above |
//! | 1.1 | `out` of [`Backend::select`] may be a branch's buffer ([`MINOR_SELECT_IN_PLACE`]) |
//!
//! ## Writing a plugin
//!
//! ```toml
//! [lib]
//! name = "keras_backend_mine"      # the file becomes libkeras_backend_mine.so
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! keras-backend-api = "1"
//! abi_stable = "0.11"
//! ```
//!
//! Implement [`Backend`] for a `Send + Sync` type and export it:
//!
//! ```ignore
//! keras_backend_api::export_backend!(name: "mine", constructor: MyBackend::new);
//! ```
//!
//! `examples/null_plugin.rs` is a complete plugin (buffers on the host, every kernel but `fill`
//! declined) that builds with `cargo build -p keras-backend-api --examples`. Put the library in
//! a folder on `KERAS_BACKEND_PATH` and select it with `KERAS_BACKEND=mine`; `keras-cli backend
//! list` shows whether it loads and `keras-cli conformance` runs the reference cases on it.

#![warn(missing_docs)]

// abi_stable's `#[sabi_trait]` expands to non-local impls; `batch_norm` takes its five tensors
// and epsilon as the contract's plain arguments.
#[allow(non_local_definitions, clippy::too_many_arguments)]
mod backend;
mod dtype;
mod error;
mod ops;
pub mod plugin;
pub mod random;
pub mod shape;
mod tensor;
pub mod window;

pub use abi_stable;
pub use backend::{Backend, Backend_TO};
pub use dtype::DType;
pub use error::{BackendError, BackendResult, ErrorKind};
pub use ops::{
    ArgReduceOp, BinaryOp, ConvParams, Distribution, Layout, OpKind, PoolMode, PoolParams, ReduceOp, UnaryOp,
};
pub use plugin::{
    BackendBox, PLUGIN_DECLARATION_SYMBOL, PLUGIN_MAGIC, PluginDeclaration, PluginModule, PluginModuleRef,
};
pub use tensor::{BackendInfo, BufferId, TensorRef};

/// Contract MAJOR version: plugins and hosts must agree on it exactly.
pub const CONTRACT_MAJOR: u32 = 1;
/// Contract MINOR version: additions a host may use only on plugins that declare them.
pub const CONTRACT_MINOR: u32 = 1;

/// The first MINOR in which `out` of [`Backend::select`] may be the buffer of `on_true` or
/// `on_false` (of `out`'s shape): the host writes a select over a dead branch only on
/// plugins declaring at least this minor.
pub const MINOR_SELECT_IN_PLACE: u32 = 1;

#[cfg(test)]
mod tests {
    #[test]
    fn contract_version_is_the_crate_version() {
        assert_eq!(env!("CARGO_PKG_VERSION_MAJOR"), super::CONTRACT_MAJOR.to_string());
        assert_eq!(env!("CARGO_PKG_VERSION_MINOR"), super::CONTRACT_MINOR.to_string());
    }

    #[test]
    fn root_module_version_names_the_major_only() {
        assert_eq!(super::plugin::ROOT_MODULE_VERSION, format!("{}.0.0", super::CONTRACT_MAJOR));
    }
}
