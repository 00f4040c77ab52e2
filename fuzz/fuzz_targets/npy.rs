//! `cargo +nightly fuzz run npy`: see [`keras_fuzz::npy`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keras_fuzz::npy::run(data));
