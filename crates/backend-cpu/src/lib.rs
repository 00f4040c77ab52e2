//! # backend-cpu: the pure-Rust CPU kernels of keras-rs
//!
//! This crate is the reference kernel set of the keras-rs plugin contract
//! ([`keras_backend_api`]) and the `cpu` backend:
//!
//! * [`CpuBackend`] implements [`Backend`]: it owns buffers in host memory ([`storage`]),
//!   checks every kernel's arguments, and calls the kernels in [`ops`]. The plugins allocate
//!   large buffers from a pool of pages that any later size can reuse ([`pages`]).
//! * The `keras` crate links this rlib as its embedded default backend; the thin crate in
//!   `plugin/` exports the same backend as `libkeras_backend_cpu.so`; other CPU-side backends
//!   (`backend-blas`) reuse [`ops`] instead of copying it.
//!
//! Kernels are generic over the element type, dispatched once per call on the storage's dtype;
//! large element-wise and reduction work runs on rayon's pool (`RAYON_NUM_THREADS` sets its
//! size). An f32 GEMM with at least 16 columns runs on the direct convolution's AVX-512
//! register tiles where the CPU has them (a product is a 1×1 convolution); the others run on
//! the `gemm` crate, which picks its kernels at run time.
//!
//! The GEMM is the one replaceable part: [`CpuBackend::with_gemm`] builds a backend whose
//! matmul and convolution run on another [`GemmEngine`] (OpenBLAS, in `backend-blas`) while
//! every other kernel stays the one here.

pub mod layout;
pub mod ops;
pub mod pages;
mod recycle;
pub mod simd;
pub mod storage;

use abi_stable::std_types::{RResult, RSlice, RSliceMut, RString, RVec};
use keras_backend_api::{
    ArgReduceOp, Backend, BackendError, BackendInfo, BackendResult, BinaryOp, BufferId, ConvParams, DType,
    Distribution, Layout, OpKind, PoolParams, ReduceOp, TensorRef, UnaryOp,
};

pub use ops::matmul::{GemmEngine, GemmProblem, MatView, RustGemm};
use ops::{Tensor, TensorMut};
pub use storage::{BufferStore, CpuStorage};

/// Result type of the kernels.
pub type Result<T> = std::result::Result<T, BackendError>;

/// The CPU backend: host-memory buffers and the kernels of [`ops`], its GEMMs on a
/// [`GemmEngine`].
pub struct CpuBackend {
    buffers: BufferStore,
    gemm: Box<dyn GemmEngine>,
    name: &'static str,
    version: &'static str,
}

impl Default for CpuBackend {
    fn default() -> Self {
        CpuBackend::with_gemm("cpu", env!("CARGO_PKG_VERSION"), RustGemm)
    }
}

impl CpuBackend {
    /// The `cpu` backend with no buffers. Never fails; the `Result` is the constructor shape
    /// that [`keras_backend_api::export_backend!`] expects.
    pub fn new() -> Result<CpuBackend> {
        Ok(CpuBackend::default())
    }

    /// A backend on these kernels whose matmul and convolution GEMMs run on `engine`, and
    /// that [`info`](Backend::info) reports as `name` at `version`, its device description
    /// extended by [`GemmEngine::describe`] and its threads those of [`GemmEngine::threads`].
    pub fn with_gemm(name: &'static str, version: &'static str, engine: impl GemmEngine + 'static) -> CpuBackend {
        CpuBackend { buffers: BufferStore::default(), gemm: Box::new(engine), name, version }
    }

    /// The buffer table, for backends that build on this one.
    pub fn buffers(&self) -> &BufferStore {
        &self.buffers
    }

    /// Locks the buffers of `inputs` (shared) and `out` (exclusive), checks that every shape
    /// matches its buffer's element count, and runs `kernel_body` on the typed views.
    /// `names` names each input for error messages.
    pub fn run<R>(
        &self,
        kernel: &str,
        names: &[&str],
        inputs: &[TensorRef<'_>],
        out: TensorRef<'_>,
        kernel_body: impl FnOnce(&[Tensor<'_>], TensorMut<'_>) -> Result<R>,
    ) -> Result<R> {
        let ids: Vec<BufferId> = inputs.iter().map(|t| t.buffer).collect();
        self.buffers.with_buffers(kernel, &ids, out.buffer, false, |views, out_storage| {
            let tensors = inputs
                .iter()
                .zip(views)
                .zip(names)
                .map(|((t, view), name)| {
                    let data = view.expect("aliasing was refused");
                    check_len(kernel, name, &t.shape, data)?;
                    Ok(Tensor { data, shape: &t.shape })
                })
                .collect::<Result<Vec<_>>>()?;
            check_len(kernel, "out", &out.shape, out_storage)?;
            kernel_body(&tensors, TensorMut { data: out_storage, shape: &out.shape })
        })
    }

    /// Like [`run`](Self::run) for element-wise kernels whose `out` may be one of the inputs:
    /// `in_place` gets the position of the aliased input, the other inputs, and `out`.
    fn run_elementwise(
        &self,
        kernel: &str,
        names: &[&str],
        inputs: &[TensorRef<'_>],
        out: TensorRef<'_>,
        separate: impl FnOnce(&[Tensor<'_>], TensorMut<'_>) -> Result<()>,
        in_place: impl FnOnce(usize, &[Tensor<'_>], TensorMut<'_>) -> Result<()>,
    ) -> Result<()> {
        let Some(aliased) = inputs.iter().position(|t| t.buffer == out.buffer) else {
            return self.run(kernel, names, inputs, out, separate);
        };
        if inputs[aliased].shape.as_slice() != out.shape.as_slice() {
            return Err(BackendError::invalid(format!(
                "{kernel}: out aliases `{}` but their shapes differ ({:?} vs {:?}); in-place needs equal shapes",
                names[aliased], out.shape, inputs[aliased].shape
            )));
        }
        let ids: Vec<BufferId> = inputs.iter().map(|t| t.buffer).collect();
        self.buffers.with_buffers(kernel, &ids, out.buffer, true, |views, out_storage| {
            check_len(kernel, "out", &out.shape, out_storage)?;
            let mut others = Vec::new();
            for ((t, view), name) in inputs.iter().zip(views).zip(names) {
                match view {
                    Some(data) => {
                        check_len(kernel, name, &t.shape, data)?;
                        others.push(Tensor { data, shape: &t.shape });
                    }
                    None if t.buffer == out.buffer && t.shape.as_slice() == out.shape.as_slice() => {}
                    None => {
                        return Err(BackendError::invalid(format!(
                            "{kernel}: `{name}` aliases out with a different shape {:?}",
                            t.shape
                        )));
                    }
                }
            }
            in_place(aliased, &others, TensorMut { data: out_storage, shape: &out.shape })
        })
    }
}

fn check_len(kernel: &str, name: &str, shape: &[usize], data: &CpuStorage) -> Result<()> {
    match keras_backend_api::shape::checked_len(shape) {
        Some(n) if n == data.len() => Ok(()),
        _ => Err(BackendError::invalid(format!(
            "{kernel}: `{name}` has shape {shape:?} but its buffer holds {} elements of {}",
            data.len(),
            data.dtype()
        ))),
    }
}

fn to_abi<T>(result: Result<T>) -> BackendResult<T> {
    result.into()
}

/// "model name" from /proc/cpuinfo, or the architecture when it cannot be read.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

impl Backend for CpuBackend {
    fn info(&self) -> BackendResult<BackendInfo> {
        let threads = self.gemm.threads();
        let engine = self.gemm.describe().map(|d| format!(", {d}")).unwrap_or_default();
        RResult::ROk(BackendInfo {
            name: RString::from(self.name),
            version: RString::from(self.version),
            device: RString::from(format!("{}{engine} ({threads} threads)", cpu_model())),
            threads: threads as u32,
            dtypes: RVec::from(DType::ALL.to_vec()),
        })
    }

    // The contract's reference table: this backend is the reference it describes.
    fn supports(&self, op: OpKind, dtype: DType) -> bool {
        op.reference_support(dtype)
    }

    fn live_buffers(&self) -> u64 {
        self.buffers.len() as u64
    }

    fn alloc(&self, dtype: DType, len: usize) -> BackendResult<BufferId> {
        to_abi(self.buffers.alloc(dtype, len))
    }

    fn free(&self, buffer: BufferId) -> BackendResult<()> {
        to_abi(self.buffers.free(buffer))
    }

    fn upload(&self, buffer: BufferId, bytes: RSlice<'_, u8>) -> BackendResult<()> {
        to_abi(self.buffers.with_buffer_mut("upload", buffer, |s| s.copy_from_bytes(&bytes)))
    }

    fn download(&self, buffer: BufferId, mut bytes: RSliceMut<'_, u8>) -> BackendResult<()> {
        to_abi(self.buffers.with_buffer("download", buffer, |s| s.copy_to_bytes(&mut bytes)))
    }

    fn fill(&self, out: TensorRef<'_>, value: f64) -> BackendResult<()> {
        to_abi(self.run("fill", &[], &[], out, |_, out| ops::elementwise::fill(out, value)))
    }

    fn unary(&self, op: UnaryOp, x: TensorRef<'_>, out: TensorRef<'_>) -> BackendResult<()> {
        to_abi(self.run_elementwise(
            "unary",
            &["x"],
            &[x],
            out,
            |t, out| ops::elementwise::unary(op, t[0], out),
            |_, _, out| ops::elementwise::unary_in_place(op, out),
        ))
    }

    fn binary(&self, op: BinaryOp, a: TensorRef<'_>, b: TensorRef<'_>, out: TensorRef<'_>) -> BackendResult<()> {
        if a.buffer == b.buffer && a.buffer == out.buffer {
            // x op x in place: read a private copy of x. `a` and `b` may view the buffer with
            // different shapes, so each keeps its own.
            return to_abi(self.buffers.with_buffer("binary", a.buffer, |s| Ok(s.clone())).and_then(|copy| {
                check_len("binary", "a", &a.shape, &copy)?;
                check_len("binary", "b", &b.shape, &copy)?;
                self.run("binary", &[], &[], out, |_, out| {
                    let lhs = Tensor { data: &copy, shape: &a.shape };
                    let rhs = Tensor { data: &copy, shape: &b.shape };
                    ops::elementwise::binary(op, lhs, rhs, out)
                })
            }));
        }
        to_abi(self.run_elementwise(
            "binary",
            &["a", "b"],
            &[a, b],
            out,
            |t, out| ops::elementwise::binary(op, t[0], t[1], out),
            |aliased, others, out| ops::elementwise::binary_in_place(op, others[0], out, aliased == 0),
        ))
    }

    fn select(
        &self,
        cond: TensorRef<'_>,
        on_true: TensorRef<'_>,
        on_false: TensorRef<'_>,
        out: TensorRef<'_>,
    ) -> BackendResult<()> {
        to_abi(self.run_elementwise(
            "select",
            &["cond", "on_true", "on_false"],
            &[cond, on_true, on_false],
            out,
            |t, out| ops::elementwise::select(t[0], t[1], t[2], out),
            // `others` is `cond` then the branch that is not `out`, if any.
            |aliased, others, out| match aliased {
                1 | 2 => ops::elementwise::select_in_place(others[0], others.get(1).copied(), out, aliased == 1),
                _ => Err(BackendError::invalid(
                    "select: out is the buffer of `cond`; only a branch (on_true, on_false) may be written in place",
                )),
            },
        ))
    }

    fn cast(&self, x: TensorRef<'_>, out: TensorRef<'_>) -> BackendResult<()> {
        to_abi(self.run("cast", &["x"], &[x], out, |t, out| ops::elementwise::cast(t[0], out)))
    }

    fn reduce(&self, op: ReduceOp, x: TensorRef<'_>, axes: RSlice<'_, usize>, out: TensorRef<'_>) -> BackendResult<()> {
        to_abi(self.run("reduce", &["x"], &[x], out, |t, out| ops::reduce::reduce(op, t[0], &axes, out)))
    }

    fn arg_reduce(&self, op: ArgReduceOp, x: TensorRef<'_>, axis: usize, out: TensorRef<'_>) -> BackendResult<()> {
        to_abi(self.run("arg_reduce", &["x"], &[x], out, |t, out| ops::reduce::arg_reduce(op, t[0], axis, out)))
    }

    fn matmul(
        &self,
        a: TensorRef<'_>,
        b: TensorRef<'_>,
        out: TensorRef<'_>,
        transpose_a: bool,
        transpose_b: bool,
    ) -> BackendResult<()> {
        to_abi(self.run("matmul", &["a", "b"], &[a, b], out, |t, out| {
            ops::matmul::matmul(&*self.gemm, t[0], t[1], out, transpose_a, transpose_b)
        }))
    }

    fn permute(&self, x: TensorRef<'_>, perm: RSlice<'_, usize>, out: TensorRef<'_>) -> BackendResult<()> {
        to_abi(self.run("permute", &["x"], &[x], out, |t, out| ops::movement::permute(t[0], &perm, out)))
    }

    fn slice(
        &self,
        x: TensorRef<'_>,
        starts: RSlice<'_, usize>,
        steps: RSlice<'_, isize>,
        out: TensorRef<'_>,
    ) -> BackendResult<()> {
        to_abi(self.run("slice", &["x"], &[x], out, |t, out| ops::movement::slice(t[0], &starts, &steps, out)))
    }

    fn concat(&self, inputs: RSlice<'_, TensorRef<'_>>, axis: usize, out: TensorRef<'_>) -> BackendResult<()> {
        let names: Vec<String> = (0..inputs.len()).map(|i| format!("inputs[{i}]")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        to_abi(self.run("concat", &names, &inputs, out, |t, out| ops::movement::concat(t, axis, out)))
    }

    fn pad(
        &self,
        x: TensorRef<'_>,
        before: RSlice<'_, usize>,
        after: RSlice<'_, usize>,
        value: f64,
        out: TensorRef<'_>,
    ) -> BackendResult<()> {
        to_abi(self.run("pad", &["x"], &[x], out, |t, out| ops::movement::pad(t[0], &before, &after, value, out)))
    }

    fn reverse(&self, x: TensorRef<'_>, axes: RSlice<'_, usize>, out: TensorRef<'_>) -> BackendResult<()> {
        to_abi(self.run("reverse", &["x"], &[x], out, |t, out| ops::movement::reverse(t[0], &axes, out)))
    }

    fn gather(&self, x: TensorRef<'_>, indices: TensorRef<'_>, axis: usize, out: TensorRef<'_>) -> BackendResult<()> {
        to_abi(self.run("gather", &["x", "indices"], &[x, indices], out, |t, out| {
            ops::movement::gather(t[0], t[1], axis, out)
        }))
    }

    fn scatter_add(
        &self,
        updates: TensorRef<'_>,
        indices: TensorRef<'_>,
        axis: usize,
        out: TensorRef<'_>,
    ) -> BackendResult<()> {
        to_abi(self.run("scatter_add", &["updates", "indices"], &[updates, indices], out, |t, out| {
            ops::movement::scatter_add(t[0], t[1], axis, out)
        }))
    }

    fn tile(&self, x: TensorRef<'_>, out: TensorRef<'_>) -> BackendResult<()> {
        to_abi(self.run("tile", &["x"], &[x], out, |t, out| ops::movement::tile(t[0], out)))
    }

    fn repeat(&self, x: TensorRef<'_>, axis: usize, repeats: usize, out: TensorRef<'_>) -> BackendResult<()> {
        to_abi(self.run("repeat", &["x"], &[x], out, |t, out| ops::movement::repeat(t[0], axis, repeats, out)))
    }

    fn one_hot(&self, indices: TensorRef<'_>, out: TensorRef<'_>) -> BackendResult<()> {
        to_abi(self.run("one_hot", &["indices"], &[indices], out, |t, out| ops::movement::one_hot(t[0], out)))
    }

    fn conv(
        &self,
        x: TensorRef<'_>,
        kernel: TensorRef<'_>,
        out: TensorRef<'_>,
        params: ConvParams<'_>,
    ) -> BackendResult<()> {
        to_abi(self.run("conv", &["x", "kernel"], &[x, kernel], out, |t, out| {
            ops::conv::conv(&*self.gemm, t[0], t[1], out, &params)
        }))
    }

    fn conv_backward_data(
        &self,
        dy: TensorRef<'_>,
        kernel: TensorRef<'_>,
        dx: TensorRef<'_>,
        params: ConvParams<'_>,
    ) -> BackendResult<()> {
        to_abi(self.run("conv_backward_data", &["dy", "kernel"], &[dy, kernel], dx, |t, dx| {
            ops::conv::conv_backward_data(&*self.gemm, t[0], t[1], dx, &params)
        }))
    }

    fn conv_backward_filter(
        &self,
        x: TensorRef<'_>,
        dy: TensorRef<'_>,
        dkernel: TensorRef<'_>,
        params: ConvParams<'_>,
    ) -> BackendResult<()> {
        to_abi(self.run("conv_backward_filter", &["x", "dy"], &[x, dy], dkernel, |t, dk| {
            ops::conv::conv_backward_filter(&*self.gemm, t[0], t[1], dk, &params)
        }))
    }

    fn pool(&self, x: TensorRef<'_>, out: TensorRef<'_>, params: PoolParams<'_>) -> BackendResult<()> {
        to_abi(self.run("pool", &["x"], &[x], out, |t, out| ops::pool::pool(t[0], out, &params)))
    }

    fn pool_backward(
        &self,
        x: TensorRef<'_>,
        dy: TensorRef<'_>,
        dx: TensorRef<'_>,
        params: PoolParams<'_>,
    ) -> BackendResult<()> {
        to_abi(self.run("pool_backward", &["x", "dy"], &[x, dy], dx, |t, dx| {
            ops::pool::pool_backward(t[0], t[1], dx, &params)
        }))
    }

    fn resize_nearest(&self, x: TensorRef<'_>, out: TensorRef<'_>, layout: Layout) -> BackendResult<()> {
        to_abi(self.run("resize_nearest", &["x"], &[x], out, |t, out| ops::movement::resize_nearest(t[0], out, layout)))
    }

    fn random(&self, dist: Distribution, seed: u64, counter: u64, out: TensorRef<'_>) -> BackendResult<()> {
        to_abi(self.run("random", &[], &[], out, |_, out| ops::random::random(dist, seed, counter, out)))
    }

    fn softmax(&self, x: TensorRef<'_>, axis: usize, log: bool, out: TensorRef<'_>) -> BackendResult<()> {
        to_abi(self.run("softmax", &["x"], &[x], out, |t, out| ops::fused::softmax(t[0], axis, log, out)))
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
        to_abi(self.run(
            "batch_norm",
            &["x", "mean", "var", "beta", "gamma"],
            &[x, mean, var, beta, gamma],
            out,
            |t, out| ops::fused::batch_norm(t[0], t[1], t[2], t[3], t[4], epsilon, out),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::std_types::RResult::ROk;

    fn upload(backend: &CpuBackend, values: &[f32]) -> BufferId {
        let id = backend.alloc(DType::F32, values.len()).unwrap();
        assert!(matches!(backend.upload(id, RSlice::from_slice(bytemuck::cast_slice(values))), ROk(())));
        id
    }

    fn download(backend: &CpuBackend, id: BufferId, len: usize) -> Vec<f32> {
        let mut values = vec![0f32; len];
        assert!(matches!(
            backend.download(id, RSliceMut::from_mut_slice(bytemuck::cast_slice_mut(&mut values))),
            ROk(())
        ));
        values
    }

    #[test]
    fn in_place_binary_keeps_each_operand_view() {
        let backend = CpuBackend::default();
        // One buffer as lhs [4], rhs [1, 4] and out [1, 4]: the views broadcast, result x + x.
        let x = upload(&backend, &[1.0, 2.0, 3.0, 4.0]);
        let doubled = backend.binary(
            BinaryOp::Add,
            TensorRef::new(x, &[4]),
            TensorRef::new(x, &[1, 4]),
            TensorRef::new(x, &[1, 4]),
        );
        assert!(matches!(doubled, ROk(())), "{doubled:?}");
        assert_eq!(download(&backend, x, 4), [2.0, 4.0, 6.0, 8.0]);

        // lhs [2, 2] and rhs [4] do not broadcast: an error naming both, not a silent x * x.
        let mismatched = backend.binary(
            BinaryOp::Mul,
            TensorRef::new(x, &[2, 2]),
            TensorRef::new(x, &[4]),
            TensorRef::new(x, &[2, 2]),
        );
        let message = mismatched.into_result().unwrap_err().message;
        assert!(message.contains("[2, 2]") && message.contains("[4]"), "{message}");
        assert_eq!(download(&backend, x, 4), [2.0, 4.0, 6.0, 8.0], "a refused call leaves out as it was");
    }

    fn upload_bool(backend: &CpuBackend, values: &[bool]) -> BufferId {
        let id = backend.alloc(DType::Bool, values.len()).unwrap();
        let bytes: Vec<u8> = values.iter().map(|&v| v as u8).collect();
        assert!(matches!(backend.upload(id, RSlice::from_slice(&bytes)), ROk(())));
        id
    }

    #[test]
    fn in_place_select_writes_over_either_branch() {
        let backend = CpuBackend::default();
        let cond = upload_bool(&backend, &[true, false, false, true]);
        let row_cond = upload_bool(&backend, &[false, true]);
        // (cond, its shape, `out`'s branch, the other branch's values and shape, expected).
        type Case<'a> = (BufferId, &'a [usize], bool, &'a [f32], &'a [usize], [f32; 4]);
        let cases: [Case<'_>; 5] = [
            (cond, &[2, 2], true, &[10.0, 20.0, 30.0, 40.0], &[2, 2], [1.0, 20.0, 30.0, 4.0]),
            (cond, &[2, 2], false, &[10.0, 20.0, 30.0, 40.0], &[2, 2], [10.0, 2.0, 3.0, 40.0]),
            (cond, &[2, 2], true, &[0.0], &[], [1.0, 0.0, 0.0, 4.0]),
            (cond, &[2, 2], false, &[7.0, 8.0], &[2, 1], [7.0, 2.0, 3.0, 8.0]),
            (row_cond, &[2], true, &[10.0, 20.0, 30.0, 40.0], &[2, 2], [10.0, 2.0, 30.0, 4.0]),
        ];
        for (k, (cond, cond_shape, out_is_true, other, other_shape, expected)) in cases.into_iter().enumerate() {
            let x = upload(&backend, &[1.0, 2.0, 3.0, 4.0]);
            let other = upload(&backend, other);
            let (c, o, xs) =
                (TensorRef::new(cond, cond_shape), TensorRef::new(other, other_shape), TensorRef::new(x, &[2, 2]));
            let (on_true, on_false) = if out_is_true { (xs, o) } else { (o, xs) };
            let status = backend.select(c, on_true, on_false, xs);
            assert!(matches!(status, ROk(())), "case {k}: {status:?}");
            assert_eq!(download(&backend, x, 4), expected, "case {k}");
        }

        // Both branches `out`: nothing to change.
        let x = upload(&backend, &[1.0, 2.0, 3.0, 4.0]);
        let xs = TensorRef::new(x, &[2, 2]);
        let status = backend.select(TensorRef::new(cond, &[2, 2]), xs, xs, xs);
        assert!(matches!(status, ROk(())), "{status:?}");
        assert_eq!(download(&backend, x, 4), [1.0, 2.0, 3.0, 4.0]);

        // A condition that does not broadcast is refused, naming it, and `out` is untouched.
        let other = upload(&backend, &[9.0; 4]);
        let status = backend.select(TensorRef::new(cond, &[4]), xs, TensorRef::new(other, &[2, 2]), xs);
        let message = status.into_result().unwrap_err().message;
        assert!(message.contains("`cond`") && message.contains("[4]"), "{message}");
        assert_eq!(download(&backend, x, 4), [1.0, 2.0, 3.0, 4.0]);

        // `cond` itself is never written over.
        let status = backend.select(
            TensorRef::new(cond, &[2, 2]),
            TensorRef::new(cond, &[2, 2]),
            TensorRef::new(cond, &[2, 2]),
            TensorRef::new(cond, &[2, 2]),
        );
        let message = status.into_result().unwrap_err().message;
        assert!(message.contains("`cond`") && message.contains("in place"), "{message}");
    }
}
