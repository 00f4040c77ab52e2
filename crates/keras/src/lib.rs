//! # keras: the Keras 1 backend API in Rust, on backends chosen at run time
//!
//! `keras` is the front end of keras-rs: the functions of Keras 1's backend module
//! (`from keras import backend as K`) composed from a small set of primitive kernels, which
//! run on a **backend** that is picked when the program starts, by name. Backends are shared
//! libraries (plugins) implementing the contract of the `keras_backend_api` crate, so the same
//! binary runs on the pure-Rust CPU backend, on OpenBLAS or on a GPU, selected with
//! `KERAS_BACKEND` or `keras.json`, exactly like Keras selects Theano or TensorFlow.
//!
//! ```no_run
//! use keras::{Buffer, registry};
//!
//! # fn main() -> keras::Result<()> {
//! // KERAS_BACKEND, else `backend` in ~/.keras/keras.json, else the built-in `cpu`.
//! let backend = registry::active()?;
//! println!("running on {} ({})", backend.name(), backend.info().device);
//!
//! let x = Buffer::from_slice(&backend, &[1.0f32, 2.0, 3.0])?;
//! assert_eq!(x.to_vec::<f32>()?, [1.0, 2.0, 3.0]);
//! # Ok(())
//! # }
//! ```
//!
//! ## Modules
//!
//! * [`config`]: `$KERAS_HOME/keras.json` and `KERAS_BACKEND`: the backend, `floatx`,
//!   `epsilon`, `image_dim_ordering`.
//! * [`registry`]: finding plugin libraries, loading them (each independently, with a
//!   one-line error for every way a file can be wrong), and the process-wide active backend.
//! * [`Buffer`]: an owned buffer on a backend's device, with typed upload and download.
//! * [`Error`]: the one error type; every variant displays as a single line.
//!
//! ## Features
//!
//! * `embedded-cpu` (default): links the `backend-cpu` kernels as the built-in `cpu` backend,
//!   so a program works with no plugin file installed.

#![warn(missing_docs)]

mod array;
mod autodiff;
pub mod backend;
mod buffer;
pub mod config;
mod error;
mod exec;
pub mod graph;
mod loader;
mod ops;
pub mod registry;

pub use array::Array;
pub use buffer::{Buffer, Element};
pub use config::{BackendSource, Config};
pub use error::{Error, LoadFailure, Result};
pub use graph::Tensor;
pub use registry::Backend;
