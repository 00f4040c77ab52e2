//! `cargo +nightly fuzz run keras_json`: see [`keras_fuzz::keras_json`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keras_fuzz::keras_json::run(data));
