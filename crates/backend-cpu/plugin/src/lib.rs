//! `libkeras_backend_cpu.so`: the `cpu` backend as a run-time plugin. All the work is in the
//! `backend-cpu` rlib; this crate only exports it, so that the rlib can be linked elsewhere
//! (into `keras` as the embedded default, into `backend-blas`) without a second export.

keras_backend_api::export_backend!(name: "cpu", constructor: backend_cpu::CpuBackend::new);
