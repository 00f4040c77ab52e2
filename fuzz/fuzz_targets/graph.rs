//! `cargo +nightly fuzz run graph`: see [`keras_fuzz::graph`]. The `blas` backend joins `cpu`
//! when `libkeras_backend_blas.so` is found ([`keras_fuzz::graph::backends`]).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keras_fuzz::graph::run(data, keras_fuzz::graph::backends()));
