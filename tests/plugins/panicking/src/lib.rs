//! Test plugin `test_panicking`: the CPU backend, except that the `unary` kernel panics.
//!
//! It checks that a panic inside a plugin never crosses the ABI: `export_backend!` guards every
//! method, so the host gets an `Internal` error naming the panic, and the same backend keeps
//! answering afterwards.

use abi_stable::std_types::{RSlice, RSliceMut};
use backend_cpu::CpuBackend;
use keras_backend_api::{
    ArgReduceOp, Backend, BackendError, BackendInfo, BackendResult, BinaryOp, BufferId, ConvParams, DType,
    Distribution, Layout, OpKind, PoolParams, ReduceOp, TensorRef, UnaryOp, export_backend,
};

/// The message of the deliberate panic; the integration tests look for it in the error.
pub const PANIC_MESSAGE: &str = "test_panicking: the unary kernel panics on purpose";

struct PanickingBackend(CpuBackend);

impl PanickingBackend {
    fn new() -> Result<Self, BackendError> {
        CpuBackend::new().map(PanickingBackend)
    }
}

/// Forwards each listed method to the wrapped CPU backend.
macro_rules! delegate {
    ($( fn $name:ident(&self $(, $arg:ident : $ty:ty)*) -> $ret:ty; )*) => {
        $( fn $name(&self $(, $arg: $ty)*) -> $ret { self.0.$name($($arg),*) } )*
    };
}

impl Backend for PanickingBackend {
    fn info(&self) -> BackendResult<BackendInfo> {
        self.0.info().map(|mut info| {
            info.name = "test_panicking".into();
            info
        })
    }

    fn unary(&self, _op: UnaryOp, _x: TensorRef<'_>, _out: TensorRef<'_>) -> BackendResult<()> {
        panic!("{PANIC_MESSAGE}");
    }

    delegate! {
        fn supports(&self, op: OpKind, dtype: DType) -> bool;
        fn live_buffers(&self) -> u64;
        fn alloc(&self, dtype: DType, len: usize) -> BackendResult<BufferId>;
        fn free(&self, buffer: BufferId) -> BackendResult<()>;
        fn upload(&self, buffer: BufferId, bytes: RSlice<'_, u8>) -> BackendResult<()>;
        fn download(&self, buffer: BufferId, bytes: RSliceMut<'_, u8>) -> BackendResult<()>;
        fn fill(&self, out: TensorRef<'_>, value: f64) -> BackendResult<()>;
        fn binary(&self, op: BinaryOp, a: TensorRef<'_>, b: TensorRef<'_>, out: TensorRef<'_>) -> BackendResult<()>;
        fn select(&self, cond: TensorRef<'_>, on_true: TensorRef<'_>, on_false: TensorRef<'_>, out: TensorRef<'_>) -> BackendResult<()>;
        fn cast(&self, x: TensorRef<'_>, out: TensorRef<'_>) -> BackendResult<()>;
        fn reduce(&self, op: ReduceOp, x: TensorRef<'_>, axes: RSlice<'_, usize>, out: TensorRef<'_>) -> BackendResult<()>;
        fn arg_reduce(&self, op: ArgReduceOp, x: TensorRef<'_>, axis: usize, out: TensorRef<'_>) -> BackendResult<()>;
        fn matmul(&self, a: TensorRef<'_>, b: TensorRef<'_>, out: TensorRef<'_>, transpose_a: bool, transpose_b: bool) -> BackendResult<()>;
        fn permute(&self, x: TensorRef<'_>, perm: RSlice<'_, usize>, out: TensorRef<'_>) -> BackendResult<()>;
        fn slice(&self, x: TensorRef<'_>, starts: RSlice<'_, usize>, steps: RSlice<'_, isize>, out: TensorRef<'_>) -> BackendResult<()>;
        fn concat(&self, inputs: RSlice<'_, TensorRef<'_>>, axis: usize, out: TensorRef<'_>) -> BackendResult<()>;
        fn pad(&self, x: TensorRef<'_>, before: RSlice<'_, usize>, after: RSlice<'_, usize>, value: f64, out: TensorRef<'_>) -> BackendResult<()>;
        fn reverse(&self, x: TensorRef<'_>, axes: RSlice<'_, usize>, out: TensorRef<'_>) -> BackendResult<()>;
        fn gather(&self, x: TensorRef<'_>, indices: TensorRef<'_>, axis: usize, out: TensorRef<'_>) -> BackendResult<()>;
        fn scatter_add(&self, updates: TensorRef<'_>, indices: TensorRef<'_>, axis: usize, out: TensorRef<'_>) -> BackendResult<()>;
        fn tile(&self, x: TensorRef<'_>, out: TensorRef<'_>) -> BackendResult<()>;
        fn repeat(&self, x: TensorRef<'_>, axis: usize, repeats: usize, out: TensorRef<'_>) -> BackendResult<()>;
        fn one_hot(&self, indices: TensorRef<'_>, out: TensorRef<'_>) -> BackendResult<()>;
        fn conv(&self, x: TensorRef<'_>, kernel: TensorRef<'_>, out: TensorRef<'_>, params: ConvParams<'_>) -> BackendResult<()>;
        fn conv_backward_data(&self, dy: TensorRef<'_>, kernel: TensorRef<'_>, dx: TensorRef<'_>, params: ConvParams<'_>) -> BackendResult<()>;
        fn conv_backward_filter(&self, x: TensorRef<'_>, dy: TensorRef<'_>, dkernel: TensorRef<'_>, params: ConvParams<'_>) -> BackendResult<()>;
        fn pool(&self, x: TensorRef<'_>, out: TensorRef<'_>, params: PoolParams<'_>) -> BackendResult<()>;
        fn pool_backward(&self, x: TensorRef<'_>, dy: TensorRef<'_>, dx: TensorRef<'_>, params: PoolParams<'_>) -> BackendResult<()>;
        fn resize_nearest(&self, x: TensorRef<'_>, out: TensorRef<'_>, layout: Layout) -> BackendResult<()>;
        fn random(&self, dist: Distribution, seed: u64, counter: u64, out: TensorRef<'_>) -> BackendResult<()>;
        fn softmax(&self, x: TensorRef<'_>, axis: usize, log: bool, out: TensorRef<'_>) -> BackendResult<()>;
        fn batch_norm(&self, x: TensorRef<'_>, mean: TensorRef<'_>, var: TensorRef<'_>, beta: TensorRef<'_>, gamma: TensorRef<'_>, epsilon: f64, out: TensorRef<'_>) -> BackendResult<()>;
    }
}

export_backend!(name: "test_panicking", constructor: PanickingBackend::new);
