//! # backend-cuda: the CUDA kernels of keras-rs
//!
//! The `cuda` backend of the keras-rs plugin contract ([`keras_backend_api`]): buffers live in
//! GPU memory and stay there between kernels; every primitive runs on the device.
//!
//! * [`libraries`] probes libcuda, NVRTC, cuBLAS and cuDNN before any call (cudarc panics on
//!   a missing library), so a machine without a GPU gets a one-line load error.
//! * [`device`] owns the context, the one stream, the buffer table and the launch plumbing.
//! * [`kernels`] holds the CUDA C sources, compiled at run time with NVRTC for the device's
//!   architecture and cached per architecture; [`index`] is the host half of their strided
//!   index spaces.
//! * [`ops`] is the host side of each op family: argument checks (the shape rules of
//!   [`keras_backend_api::shape`]), then launches. GEMM runs on cuBLAS; convolution and pooling
//!   on cuDNN when it loads, or on the backend's own kernels (`KERAS_CUDA_CONV=own` forces
//!   them, so both paths are tested).
//!
//! The plugin library is the thin crate in `plugin/` (`libkeras_backend_cuda.so`).

pub mod device;
pub mod index;
pub mod kernels;
pub mod libraries;
pub mod ops;

use abi_stable::std_types::{RResult, RSlice, RSliceMut, RString, RVec};
use keras_backend_api::{
    ArgReduceOp, Backend, BackendError, BackendInfo, BackendResult, BinaryOp, BufferId, ConvParams, DType,
    Distribution, Layout, OpKind, PoolParams, ReduceOp, TensorRef, UnaryOp,
};

pub use device::{ConvPath, Device};

/// Result type of the host-side op functions.
pub type Result<T> = std::result::Result<T, BackendError>;

/// The CUDA backend on GPU 0.
pub struct CudaBackend {
    device: Device,
}

impl CudaBackend {
    /// Opens GPU 0. Fails with an `Unavailable` error naming the missing piece (driver, NVRTC,
    /// cuBLAS, GPU) when CUDA cannot run here; never panics.
    pub fn new() -> Result<CudaBackend> {
        let libraries = libraries::check()?;
        Ok(CudaBackend { device: Device::open(libraries)? })
    }

    /// The device, for tests and tools.
    pub fn device(&self) -> &Device {
        &self.device
    }
}

fn to_abi<T>(result: Result<T>) -> BackendResult<T> {
    result.into()
}

impl Backend for CudaBackend {
    fn info(&self) -> BackendResult<BackendInfo> {
        RResult::ROk(BackendInfo {
            name: RString::from("cuda"),
            version: RString::from(env!("CARGO_PKG_VERSION")),
            device: RString::from(self.device.description.clone()),
            threads: 1,
            dtypes: RVec::from(DType::ALL.to_vec()),
        })
    }

    // The same capability table as the cpu backend: the conformance suite compares the two.
    fn supports(&self, op: OpKind, dtype: DType) -> bool {
        op.reference_support(dtype)
    }

    fn live_buffers(&self) -> u64 {
        self.device.live_buffers() as u64
    }

    fn alloc(&self, dtype: DType, len: usize) -> BackendResult<BufferId> {
        to_abi(self.device.alloc(dtype, len))
    }

    fn free(&self, buffer: BufferId) -> BackendResult<()> {
        to_abi(self.device.free(buffer))
    }

    fn upload(&self, buffer: BufferId, bytes: RSlice<'_, u8>) -> BackendResult<()> {
        to_abi(self.device.upload(buffer, &bytes))
    }

    fn download(&self, buffer: BufferId, mut bytes: RSliceMut<'_, u8>) -> BackendResult<()> {
        to_abi(self.device.download(buffer, &mut bytes))
    }

    fn fill(&self, out: TensorRef<'_>, value: f64) -> BackendResult<()> {
        to_abi(ops::elementwise::fill(&self.device, out, value))
    }

    fn unary(&self, op: UnaryOp, x: TensorRef<'_>, out: TensorRef<'_>) -> BackendResult<()> {
        to_abi(ops::elementwise::unary(&self.device, op, x, out))
    }

    fn binary(&self, op: BinaryOp, a: TensorRef<'_>, b: TensorRef<'_>, out: TensorRef<'_>) -> BackendResult<()> {
        to_abi(ops::elementwise::binary(&self.device, op, a, b, out))
    }

    fn select(
        &self,
        cond: TensorRef<'_>,
        on_true: TensorRef<'_>,
        on_false: TensorRef<'_>,
        out: TensorRef<'_>,
    ) -> BackendResult<()> {
        to_abi(ops::elementwise::select(&self.device, cond, on_true, on_false, out))
    }

    fn cast(&self, x: TensorRef<'_>, out: TensorRef<'_>) -> BackendResult<()> {
        to_abi(ops::elementwise::cast(&self.device, x, out))
    }

    fn reduce(&self, op: ReduceOp, x: TensorRef<'_>, axes: RSlice<'_, usize>, out: TensorRef<'_>) -> BackendResult<()> {
        to_abi(ops::reduce::reduce(&self.device, op, x, &axes, out))
    }

    fn arg_reduce(&self, op: ArgReduceOp, x: TensorRef<'_>, axis: usize, out: TensorRef<'_>) -> BackendResult<()> {
        to_abi(ops::reduce::arg_reduce(&self.device, op, x, axis, out))
    }

    fn matmul(
        &self,
        a: TensorRef<'_>,
        b: TensorRef<'_>,
        out: TensorRef<'_>,
        transpose_a: bool,
        transpose_b: bool,
    ) -> BackendResult<()> {
        to_abi(ops::matmul::matmul(&self.device, a, b, out, transpose_a, transpose_b))
    }

    fn permute(&self, x: TensorRef<'_>, perm: RSlice<'_, usize>, out: TensorRef<'_>) -> BackendResult<()> {
        to_abi(ops::movement::permute(&self.device, x, &perm, out))
    }

    fn slice(
        &self,
        x: TensorRef<'_>,
        starts: RSlice<'_, usize>,
        steps: RSlice<'_, isize>,
        out: TensorRef<'_>,
    ) -> BackendResult<()> {
        to_abi(ops::movement::slice(&self.device, x, &starts, &steps, out))
    }

    fn concat(&self, inputs: RSlice<'_, TensorRef<'_>>, axis: usize, out: TensorRef<'_>) -> BackendResult<()> {
        to_abi(ops::movement::concat(&self.device, &inputs, axis, out))
    }

    fn pad(
        &self,
        x: TensorRef<'_>,
        before: RSlice<'_, usize>,
        after: RSlice<'_, usize>,
        value: f64,
        out: TensorRef<'_>,
    ) -> BackendResult<()> {
        to_abi(ops::movement::pad(&self.device, x, &before, &after, value, out))
    }

    fn reverse(&self, x: TensorRef<'_>, axes: RSlice<'_, usize>, out: TensorRef<'_>) -> BackendResult<()> {
        to_abi(ops::movement::reverse(&self.device, x, &axes, out))
    }

    fn gather(&self, x: TensorRef<'_>, indices: TensorRef<'_>, axis: usize, out: TensorRef<'_>) -> BackendResult<()> {
        to_abi(ops::movement::gather(&self.device, x, indices, axis, out))
    }

    fn scatter_add(
        &self,
        updates: TensorRef<'_>,
        indices: TensorRef<'_>,
        axis: usize,
        out: TensorRef<'_>,
    ) -> BackendResult<()> {
        to_abi(ops::movement::scatter_add(&self.device, updates, indices, axis, out))
    }

    fn tile(&self, x: TensorRef<'_>, out: TensorRef<'_>) -> BackendResult<()> {
        to_abi(ops::movement::tile(&self.device, x, out))
    }

    fn repeat(&self, x: TensorRef<'_>, axis: usize, repeats: usize, out: TensorRef<'_>) -> BackendResult<()> {
        to_abi(ops::movement::repeat(&self.device, x, axis, repeats, out))
    }

    fn one_hot(&self, indices: TensorRef<'_>, out: TensorRef<'_>) -> BackendResult<()> {
        to_abi(ops::movement::one_hot(&self.device, indices, out))
    }

    fn conv(
        &self,
        x: TensorRef<'_>,
        kernel: TensorRef<'_>,
        out: TensorRef<'_>,
        params: ConvParams<'_>,
    ) -> BackendResult<()> {
        to_abi(ops::conv::conv(&self.device, x, kernel, out, &params))
    }

    fn conv_backward_data(
        &self,
        dy: TensorRef<'_>,
        kernel: TensorRef<'_>,
        dx: TensorRef<'_>,
        params: ConvParams<'_>,
    ) -> BackendResult<()> {
        to_abi(ops::conv::conv_backward_data(&self.device, dy, kernel, dx, &params))
    }

    fn conv_backward_filter(
        &self,
        x: TensorRef<'_>,
        dy: TensorRef<'_>,
        dkernel: TensorRef<'_>,
        params: ConvParams<'_>,
    ) -> BackendResult<()> {
        to_abi(ops::conv::conv_backward_filter(&self.device, x, dy, dkernel, &params))
    }

    fn pool(&self, x: TensorRef<'_>, out: TensorRef<'_>, params: PoolParams<'_>) -> BackendResult<()> {
        to_abi(ops::pool::pool(&self.device, x, out, &params))
    }

    fn pool_backward(
        &self,
        x: TensorRef<'_>,
        dy: TensorRef<'_>,
        dx: TensorRef<'_>,
        params: PoolParams<'_>,
    ) -> BackendResult<()> {
        to_abi(ops::pool::pool_backward(&self.device, x, dy, dx, &params))
    }

    fn resize_nearest(&self, x: TensorRef<'_>, out: TensorRef<'_>, layout: Layout) -> BackendResult<()> {
        to_abi(ops::movement::resize_nearest(&self.device, x, out, layout))
    }

    fn random(&self, dist: Distribution, seed: u64, counter: u64, out: TensorRef<'_>) -> BackendResult<()> {
        to_abi(ops::random::random(&self.device, dist, seed, counter, out))
    }

    fn softmax(&self, x: TensorRef<'_>, axis: usize, log: bool, out: TensorRef<'_>) -> BackendResult<()> {
        to_abi(ops::reduce::softmax(&self.device, x, axis, log, out))
    }

    fn batch_norm(
        &self,
        x: TensorRef<'_>,
        mean: TensorRef<'_>,
        var: TensorRef<'_>,
        beta: TensorRef<'_>,
        gamma: TensorRef<'_>,
        epsilon: f64,
        out: TensorRef<'_>,
    ) -> BackendResult<()> {
        to_abi(ops::elementwise::batch_norm(&self.device, x, mean, var, beta, gamma, epsilon, out))
    }
}
