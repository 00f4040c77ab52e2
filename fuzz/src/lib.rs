//! The fuzz targets of keras-rs, as plain functions of the input bytes that panic on any
//! broken promise, so that `tests/tests/fuzz_regressions.rs` replays saved inputs through the
//! very same code (it includes these files with `#[path]`).
//!
//! * [`keras_json`]: `keras.json` parsing (`Config::load_from`, `config::set_backend`).
//! * [`npy`]: the conformance runner's `.npy` reader.
//! * [`graph`]: random K-API graphs of random shapes, run on `cpu` and `blas`.

pub mod graph;
pub mod keras_json;
pub mod npy;
