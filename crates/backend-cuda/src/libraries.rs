//! Which CUDA libraries this process can open, checked before any call into them.
//!
//! cudarc opens each library lazily and panics when it is missing. The plugin must instead
//! fail to load with a one-line reason, so every library is probed here first, by the same
//! file names cudarc will try.

use keras_backend_api::{BackendError, ErrorKind};

/// The libraries the backend can use. The driver, NVRTC and cuBLAS are required; cuDNN is
/// optional (convolution and pooling then run on the backend's own kernels).
#[derive(Clone, Copy, Debug)]
pub struct Libraries {
    /// `libcudnn.so.9` could be opened.
    pub cudnn: bool,
}

/// Probes the libraries; the error names the first required one that is missing.
pub fn check() -> Result<Libraries, BackendError> {
    // SAFETY: each probe only opens and closes the library file (no symbol is called).
    let (driver, nvrtc, cublas, cudnn) = unsafe {
        (
            cudarc::driver::sys::is_culib_present(),
            cudarc::nvrtc::sys::is_culib_present(),
            cudarc::cublas::sys::is_culib_present(),
            cudarc::cudnn::sys::is_culib_present(),
        )
    };
    if !driver {
        return Err(unavailable("no CUDA driver found (libcuda.so.1); this machine has no NVIDIA driver installed"));
    }
    if !nvrtc {
        return Err(unavailable(
            "NVRTC not found (libnvrtc.so.13); put CUDA 13's lib directory (or the nvidia-cuda-nvrtc wheel's) on LD_LIBRARY_PATH",
        ));
    }
    if !cublas {
        return Err(unavailable(
            "cuBLAS not found (libcublas.so.13); put CUDA 13's lib directory (or the nvidia-cublas wheel's) on LD_LIBRARY_PATH",
        ));
    }
    Ok(Libraries { cudnn })
}

/// Whether NVRTC alone can be opened: enough to compile the kernel sources without a GPU.
pub fn nvrtc_present() -> bool {
    // SAFETY: only opens and closes the library file.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// A backend-creation error: `cuda: <reason>`.
pub fn unavailable(reason: impl std::fmt::Display) -> BackendError {
    BackendError::new(ErrorKind::Unavailable, format!("cuda: {reason}"))
}
