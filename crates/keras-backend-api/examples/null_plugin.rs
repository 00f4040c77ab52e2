//! A minimal, complete keras-rs backend plugin: buffers live in host memory and every kernel
//! except `fill` answers `Unsupported`. Copy it to start a real backend.
//!
//! Build: `cargo build -p keras-backend-api --example null_plugin`, which writes
//! `target/debug/examples/libnull_plugin.so`; load it by path with
//! `KERAS_BACKEND=target/debug/examples/libnull_plugin.so keras-cli backend`.

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use abi_stable::std_types::{RErr, ROk, RSlice, RSliceMut, RString, RVec};
use keras_backend_api::{
    ArgReduceOp, Backend, BackendError, BackendInfo, BackendResult, BinaryOp, BufferId, ConvParams, DType,
    Distribution, Layout, OpKind, PoolParams, ReduceOp, TensorRef, UnaryOp, export_backend,
};

/// Host-memory buffers: bytes plus dtype, keyed by handle.
#[derive(Default)]
struct NullBackend {
    buffers: Mutex<HashMap<u64, (DType, Vec<u8>)>>,
    next_id: AtomicU64,
}

impl NullBackend {
    fn new() -> Result<Self, BackendError> {
        Ok(Self::default())
    }

    fn with_buffer<T>(
        &self,
        id: BufferId,
        f: impl FnOnce(DType, &mut Vec<u8>) -> BackendResult<T>,
    ) -> BackendResult<T> {
        let mut buffers = self.buffers.lock().unwrap_or_else(|e| e.into_inner());
        match buffers.get_mut(&id.0) {
            Some((dtype, bytes)) => f(*dtype, bytes),
            None => RErr(BackendError::invalid(format!("null: unknown buffer {}", id.0))),
        }
    }
}

fn declined<T>(op: &str) -> BackendResult<T> {
    RErr(BackendError::unsupported(format!("null: {op}")))
}

impl Backend for NullBackend {
    fn info(&self) -> BackendResult<BackendInfo> {
        ROk(BackendInfo {
            name: RString::from("null"),
            version: RString::from(env!("CARGO_PKG_VERSION")),
            device: RString::from("host memory, no kernels"),
            threads: 1,
            dtypes: RVec::from(DType::ALL.to_vec()),
        })
    }
    fn supports(&self, op: OpKind, _dtype: DType) -> bool {
        op == OpKind::Fill
    }
    fn live_buffers(&self) -> u64 {
        self.buffers.lock().map(|b| b.len() as u64).unwrap_or(0)
    }
    fn alloc(&self, dtype: DType, len: usize) -> BackendResult<BufferId> {
        let Some(bytes) = len.checked_mul(dtype.size_in_bytes()) else {
            return RErr(BackendError::invalid(format!("null: alloc of {len} {dtype} overflows")));
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.buffers.lock().unwrap_or_else(|e| e.into_inner()).insert(id, (dtype, vec![0; bytes]));
        ROk(BufferId(id))
    }
    fn free(&self, buffer: BufferId) -> BackendResult<()> {
        match self.buffers.lock().unwrap_or_else(|e| e.into_inner()).remove(&buffer.0) {
            Some(_) => ROk(()),
            None => RErr(BackendError::invalid(format!("null: free of unknown buffer {}", buffer.0))),
        }
    }
    fn upload(&self, buffer: BufferId, bytes: RSlice<'_, u8>) -> BackendResult<()> {
        self.with_buffer(buffer, |_, data| {
            if data.len() != bytes.len() {
                return RErr(BackendError::invalid(format!(
                    "null: upload of {} bytes into {}",
                    bytes.len(),
                    data.len()
                )));
            }
            data.copy_from_slice(&bytes);
            ROk(())
        })
    }
    fn download(&self, buffer: BufferId, mut bytes: RSliceMut<'_, u8>) -> BackendResult<()> {
        self.with_buffer(buffer, |_, data| {
            if data.len() != bytes.len() {
                return RErr(BackendError::invalid(format!(
                    "null: download of {} bytes into {}",
                    data.len(),
                    bytes.len()
                )));
            }
            bytes.copy_from_slice(data);
            ROk(())
        })
    }
    fn fill(&self, out: TensorRef<'_>, value: f64) -> BackendResult<()> {
        self.with_buffer(out.buffer, |dtype, data| {
            let element: Vec<u8> = match dtype {
                DType::F32 => (value as f32).to_le_bytes().to_vec(),
                DType::F64 => value.to_le_bytes().to_vec(),
                _ => return declined("fill of non-float32/64"),
            };
            for chunk in data.chunks_exact_mut(element.len()) {
                chunk.copy_from_slice(&element);
            }
            ROk(())
        })
    }
    fn unary(&self, _: UnaryOp, _: TensorRef<'_>, _: TensorRef<'_>) -> BackendResult<()> {
        declined("unary")
    }
    fn binary(&self, _: BinaryOp, _: TensorRef<'_>, _: TensorRef<'_>, _: TensorRef<'_>) -> BackendResult<()> {
        declined("binary")
    }
    fn select(&self, _: TensorRef<'_>, _: TensorRef<'_>, _: TensorRef<'_>, _: TensorRef<'_>) -> BackendResult<()> {
        declined("select")
    }
    fn cast(&self, _: TensorRef<'_>, _: TensorRef<'_>) -> BackendResult<()> {
        declined("cast")
    }
    fn reduce(&self, _: ReduceOp, _: TensorRef<'_>, _: RSlice<'_, usize>, _: TensorRef<'_>) -> BackendResult<()> {
        declined("reduce")
    }
    fn arg_reduce(&self, _: ArgReduceOp, _: TensorRef<'_>, _: usize, _: TensorRef<'_>) -> BackendResult<()> {
        declined("arg_reduce")
    }
    fn matmul(&self, _: TensorRef<'_>, _: TensorRef<'_>, _: TensorRef<'_>, _: bool, _: bool) -> BackendResult<()> {
        declined("matmul")
    }
    fn permute(&self, _: TensorRef<'_>, _: RSlice<'_, usize>, _: TensorRef<'_>) -> BackendResult<()> {
        declined("permute")
    }
    fn slice(
        &self,
        _: TensorRef<'_>,
        _: RSlice<'_, usize>,
        _: RSlice<'_, isize>,
        _: TensorRef<'_>,
    ) -> BackendResult<()> {
        declined("slice")
    }
    fn concat(&self, _: RSlice<'_, TensorRef<'_>>, _: usize, _: TensorRef<'_>) -> BackendResult<()> {
        declined("concat")
    }
    fn pad(
        &self,
        _: TensorRef<'_>,
        _: RSlice<'_, usize>,
        _: RSlice<'_, usize>,
        _: f64,
        _: TensorRef<'_>,
    ) -> BackendResult<()> {
        declined("pad")
    }
    fn reverse(&self, _: TensorRef<'_>, _: RSlice<'_, usize>, _: TensorRef<'_>) -> BackendResult<()> {
        declined("reverse")
    }
    fn gather(&self, _: TensorRef<'_>, _: TensorRef<'_>, _: usize, _: TensorRef<'_>) -> BackendResult<()> {
        declined("gather")
    }
    fn scatter_add(&self, _: TensorRef<'_>, _: TensorRef<'_>, _: usize, _: TensorRef<'_>) -> BackendResult<()> {
        declined("scatter_add")
    }
    fn tile(&self, _: TensorRef<'_>, _: TensorRef<'_>) -> BackendResult<()> {
        declined("tile")
    }
    fn repeat(&self, _: TensorRef<'_>, _: usize, _: usize, _: TensorRef<'_>) -> BackendResult<()> {
        declined("repeat")
    }
    fn one_hot(&self, _: TensorRef<'_>, _: TensorRef<'_>) -> BackendResult<()> {
        declined("one_hot")
    }
    fn conv(&self, _: TensorRef<'_>, _: TensorRef<'_>, _: TensorRef<'_>, _: ConvParams<'_>) -> BackendResult<()> {
        declined("conv")
    }
    fn conv_backward_data(
        &self,
        _: TensorRef<'_>,
        _: TensorRef<'_>,
        _: TensorRef<'_>,
        _: ConvParams<'_>,
    ) -> BackendResult<()> {
        declined("conv_backward_data")
    }
    fn conv_backward_filter(
        &self,
        _: TensorRef<'_>,
        _: TensorRef<'_>,
        _: TensorRef<'_>,
        _: ConvParams<'_>,
    ) -> BackendResult<()> {
        declined("conv_backward_filter")
    }
    fn pool(&self, _: TensorRef<'_>, _: TensorRef<'_>, _: PoolParams<'_>) -> BackendResult<()> {
        declined("pool")
    }
    fn pool_backward(
        &self,
        _: TensorRef<'_>,
        _: TensorRef<'_>,
        _: TensorRef<'_>,
        _: PoolParams<'_>,
    ) -> BackendResult<()> {
        declined("pool_backward")
    }
    fn resize_nearest(&self, _: TensorRef<'_>, _: TensorRef<'_>, _: Layout) -> BackendResult<()> {
        declined("resize_nearest")
    }
    fn random(&self, _: Distribution, _: u64, _: u64, _: TensorRef<'_>) -> BackendResult<()> {
        declined("random")
    }
    fn softmax(&self, _: TensorRef<'_>, _: usize, _: bool, _: TensorRef<'_>) -> BackendResult<()> {
        declined("softmax")
    }
    fn batch_norm(
        &self,
        _: TensorRef<'_>,
        _: TensorRef<'_>,
        _: TensorRef<'_>,
        _: TensorRef<'_>,
        _: TensorRef<'_>,
        _: f64,
        _: TensorRef<'_>,
    ) -> BackendResult<()> {
        declined("batch_norm")
    }
}

export_backend!(name: "null", constructor: NullBackend::new);
