//! `libkeras_backend_cuda.so`: the `cuda` backend as a run-time plugin. All the work is in the
//! `backend-cuda` rlib; this crate only exports it. On a machine without CUDA the constructor
//! fails with a one-line reason (no CUDA driver, no NVRTC, ...), which the host shows as the
//! plugin's load error.

keras_backend_api::export_backend!(name: "cuda", constructor: backend_cuda::CudaBackend::new);
