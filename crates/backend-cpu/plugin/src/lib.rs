//! `libkeras_backend_cpu.so`: the `cpu` backend as a run-time plugin. All the work is in the
//! `backend-cpu` rlib; this crate only exports it, so that the rlib can be linked elsewhere
//! (into `keras` as the embedded default, into `backend-blas`) without a second export.

/// Large buffers share their pages across sizes (`backend_cpu::pages`); only this library's
/// own allocations go through it, the host's stay with the host's allocator.
#[global_allocator]
static ALLOCATOR: backend_cpu::pages::PageAllocator = backend_cpu::pages::PageAllocator;

keras_backend_api::export_backend!(name: "cpu", constructor: backend_cpu::CpuBackend::new);
