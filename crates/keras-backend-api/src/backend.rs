//! The kernel interface every plugin implements.

use abi_stable::{
    sabi_trait,
    std_types::{RSlice, RSliceMut},
};

use crate::{
    ArgReduceOp, BackendInfo, BackendResult, BinaryOp, BufferId, ConvParams, DType, Distribution, Layout, OpKind,
    PoolParams, ReduceOp, TensorRef, UnaryOp,
};

/// A backend: buffers on a device and the primitive kernels that run on them.
///
/// # Rules every method follows
///
/// * **Errors are values.** A method returns `Err` with a one-line message naming the kernel,
///   the argument and the shapes or values at fault. It never panics across the boundary;
///   [`export_backend!`](crate::export_backend) wraps the implementation so that a panic
///   that escapes anyway becomes an [`ErrorKind::Internal`](crate::ErrorKind::Internal) error.
/// * **Outputs are caller-allocated.** Every kernel writes into `out`, a buffer the host
///   allocated with the right dtype and element count; `out`'s shape is part of the request
///   and the backend checks it against the shape rule of [`crate::shape`].
/// * **No aliasing**, except that `out` of [`unary`](Backend::unary) and
///   [`binary`](Backend::binary) may be the same buffer as an input of the same shape and
///   dtype, and (since contract 1.1, [`MINOR_SELECT_IN_PLACE`](crate::MINOR_SELECT_IN_PLACE))
///   `out` of [`select`](Backend::select) the buffer of `on_true` or `on_false` of `out`'s
///   shape: the kernel then works in place (the host uses this to reuse dead buffers).
///   `select`'s `cond` never aliases `out`.
/// * **Buffers are independent.** Calls on different output buffers may run concurrently from
///   several threads; the implementation must be `Send + Sync` for real.
/// * **Unsupported is not failure.** A backend that does not implement an op (or an op for a
///   dtype) returns [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) and answers
///   `false` in [`supports`](Backend::supports). Only the fused fast paths
///   ([`OpKind::is_optional`]) may be missing from a complete backend.
#[sabi_trait]
pub trait Backend: Send + Sync {
    // ----- information -----

    /// Name, version, device and dtypes of this backend.
    fn info(&self) -> BackendResult<BackendInfo>;

    /// Whether `op` is implemented for inputs of `dtype`.
    fn supports(&self, op: OpKind, dtype: DType) -> bool;

    /// Number of buffers allocated and not yet freed (for leak checks).
    fn live_buffers(&self) -> u64;

    // ----- buffers -----

    /// Allocates a buffer of `len` elements of `dtype`. Its content is unspecified until
    /// written. `len` may be 0.
    fn alloc(&self, dtype: DType, len: usize) -> BackendResult<BufferId>;

    /// Releases a buffer. Freeing an unknown handle is an `InvalidArgument` error.
    fn free(&self, buffer: BufferId) -> BackendResult<()>;

    /// Copies host bytes (little-endian elements, exactly `len * size_in_bytes`) into `buffer`.
    fn upload(&self, buffer: BufferId, bytes: RSlice<'_, u8>) -> BackendResult<()>;

    /// Copies `buffer` into host bytes (exactly `len * size_in_bytes` of them).
    fn download(&self, buffer: BufferId, bytes: RSliceMut<'_, u8>) -> BackendResult<()>;

    // ----- element-wise -----

    /// Sets every element of `out` to `value`, converted to `out`'s dtype (saturating for
    /// integers, `value != 0` for `Bool`).
    fn fill(&self, out: TensorRef<'_>, value: f64) -> BackendResult<()>;

    /// `out = op(x)` element-wise ([`UnaryOp`] gives the dtypes).
    fn unary(&self, op: UnaryOp, x: TensorRef<'_>, out: TensorRef<'_>) -> BackendResult<()>;

    /// `out = op(a, b)` with NumPy broadcasting ([`BinaryOp`] gives the dtypes).
    fn binary(&self, op: BinaryOp, a: TensorRef<'_>, b: TensorRef<'_>, out: TensorRef<'_>) -> BackendResult<()>;

    /// `out = cond ? on_true : on_false`, all three broadcast to `out`'s shape; `cond` is `Bool`
    /// and the branches have `out`'s dtype. `out` may be a branch's buffer (see the aliasing
    /// rule above).
    fn select(
        &self,
        cond: TensorRef<'_>,
        on_true: TensorRef<'_>,
        on_false: TensorRef<'_>,
        out: TensorRef<'_>,
    ) -> BackendResult<()>;

    /// Converts `x` to `out`'s dtype. Float to integer truncates toward zero (NaN gives 0 and
    /// out-of-range values saturate); anything to `Bool` is `x != 0`.
    fn cast(&self, x: TensorRef<'_>, out: TensorRef<'_>) -> BackendResult<()>;

    // ----- reductions -----

    /// Reduces `x` over the distinct `axes`; `out`'s shape is `x`'s with those axes removed or
    /// set to 1 (both accepted). An empty `axes` copies `x`.
    fn reduce(&self, op: ReduceOp, x: TensorRef<'_>, axes: RSlice<'_, usize>, out: TensorRef<'_>) -> BackendResult<()>;

    /// Index of the maximum/minimum along `axis`; `out`'s shape is `x`'s without that axis
    /// (or with it as 1), dtype `I64` or `I32`.
    fn arg_reduce(&self, op: ArgReduceOp, x: TensorRef<'_>, axis: usize, out: TensorRef<'_>) -> BackendResult<()>;

    // ----- linear algebra -----

    /// Batched matrix product ([`crate::shape::matmul`] gives the shape): the last two dims are
    /// matrices, optionally transposed; leading dims broadcast. Float dtypes.
    fn matmul(
        &self,
        a: TensorRef<'_>,
        b: TensorRef<'_>,
        out: TensorRef<'_>,
        transpose_a: bool,
        transpose_b: bool,
    ) -> BackendResult<()>;

    // ----- data movement (every dtype) -----

    /// `out[i₀..] = x[i_perm⁻¹...]`: out's axis `k` is x's axis `perm[k]`.
    fn permute(&self, x: TensorRef<'_>, perm: RSlice<'_, usize>, out: TensorRef<'_>) -> BackendResult<()>;

    /// Strided slice: `out[j₀, j₁, ...] = x[start₀ + j₀·step₀, ...]`. `out`'s shape gives the
    /// count per axis; steps are non-zero and may be negative; every index read must lie in x.
    fn slice(
        &self,
        x: TensorRef<'_>,
        starts: RSlice<'_, usize>,
        steps: RSlice<'_, isize>,
        out: TensorRef<'_>,
    ) -> BackendResult<()>;

    /// Concatenation of `inputs` (same dtype, shapes agreeing off `axis`) along `axis`.
    fn concat(&self, inputs: RSlice<'_, TensorRef<'_>>, axis: usize, out: TensorRef<'_>) -> BackendResult<()>;

    /// Constant padding: `out` dim `k` is `before[k] + x dim k + after[k]`; new elements are
    /// `value` converted to the dtype.
    fn pad(
        &self,
        x: TensorRef<'_>,
        before: RSlice<'_, usize>,
        after: RSlice<'_, usize>,
        value: f64,
        out: TensorRef<'_>,
    ) -> BackendResult<()>;

    /// Reverses `x` along each of `axes`.
    fn reverse(&self, x: TensorRef<'_>, axes: RSlice<'_, usize>, out: TensorRef<'_>) -> BackendResult<()>;

    /// `out = take(x, indices, axis)` ([`crate::shape::gather`] gives the shape). Indices are
    /// `I32` or `I64`; negative ones count from the end; any out of range is an error.
    fn gather(&self, x: TensorRef<'_>, indices: TensorRef<'_>, axis: usize, out: TensorRef<'_>) -> BackendResult<()>;

    /// The adjoint of [`gather`](Backend::gather): `out` is zeroed, then for each index position
    /// `j`, `out[.., indices[j], ..] += updates[.., j, ..]`. Repeated indices accumulate.
    fn scatter_add(
        &self,
        updates: TensorRef<'_>,
        indices: TensorRef<'_>,
        axis: usize,
        out: TensorRef<'_>,
    ) -> BackendResult<()>;

    /// Tiles `x`: each `out` dim is a multiple of the same-rank `x` dim, and
    /// `out[i] = x[i mod x.shape]`.
    fn tile(&self, x: TensorRef<'_>, out: TensorRef<'_>) -> BackendResult<()>;

    /// Repeats each element `repeats` times along `axis` (NumPy's `repeat`).
    fn repeat(&self, x: TensorRef<'_>, axis: usize, repeats: usize, out: TensorRef<'_>) -> BackendResult<()>;

    /// One-hot encoding: `out` has shape `indices.shape ++ [depth]`; `out[.., k] = 1` where
    /// `k == indices[..]`, else 0 (an index outside `0..depth` gives an all-zero row).
    fn one_hot(&self, indices: TensorRef<'_>, out: TensorRef<'_>) -> BackendResult<()>;

    // ----- convolution and pooling (float dtypes) -----

    /// N-d convolution ([`ConvParams`] defines it).
    fn conv(
        &self,
        x: TensorRef<'_>,
        kernel: TensorRef<'_>,
        out: TensorRef<'_>,
        params: ConvParams<'_>,
    ) -> BackendResult<()>;

    /// Gradient of [`conv`](Backend::conv) with respect to `x`, given `dy` (out's gradient);
    /// `dx` has the input's shape.
    fn conv_backward_data(
        &self,
        dy: TensorRef<'_>,
        kernel: TensorRef<'_>,
        dx: TensorRef<'_>,
        params: ConvParams<'_>,
    ) -> BackendResult<()>;

    /// Gradient of [`conv`](Backend::conv) with respect to the kernel.
    fn conv_backward_filter(
        &self,
        x: TensorRef<'_>,
        dy: TensorRef<'_>,
        dkernel: TensorRef<'_>,
        params: ConvParams<'_>,
    ) -> BackendResult<()>;

    /// N-d max or average pooling ([`PoolParams`] defines it).
    fn pool(&self, x: TensorRef<'_>, out: TensorRef<'_>, params: PoolParams<'_>) -> BackendResult<()>;

    /// Gradient of [`pool`](Backend::pool) with respect to `x`, given `x` and `dy`.
    fn pool_backward(
        &self,
        x: TensorRef<'_>,
        dy: TensorRef<'_>,
        dx: TensorRef<'_>,
        params: PoolParams<'_>,
    ) -> BackendResult<()>;

    /// Nearest-neighbour resize of the spatial dims: `out[.., p, ..] = x[.., floor(p · in / out), ..]`
    /// per spatial dim; batch and channels unchanged.
    fn resize_nearest(&self, x: TensorRef<'_>, out: TensorRef<'_>, layout: Layout) -> BackendResult<()>;

    // ----- random numbers -----

    /// Fills a float `out` from the counter-based stream `(seed, counter)`; element `i` is
    /// [`crate::random::sample`]`(dist, seed, counter, i)` cast to `out`'s dtype.
    fn random(&self, dist: Distribution, seed: u64, counter: u64, out: TensorRef<'_>) -> BackendResult<()>;

    // ----- fused fast paths (optional) -----

    /// (optional) Softmax along `axis`, or log-softmax when `log`; numerically stable (shifts
    /// by the maximum). Without it the host composes exp, reduce and binary ops.
    fn softmax(&self, x: TensorRef<'_>, axis: usize, log: bool, out: TensorRef<'_>) -> BackendResult<()>;

    /// (optional) `out = (x - mean) / √(var + epsilon) · gamma + beta`, each parameter
    /// broadcast to `x`'s shape. Without it the host composes binary ops.
    #[sabi(last_prefix_field)]
    fn batch_norm(
        &self,
        x: TensorRef<'_>,
        mean: TensorRef<'_>,
        var: TensorRef<'_>,
        beta: TensorRef<'_>,
        gamma: TensorRef<'_>,
        epsilon: f64,
        out: TensorRef<'_>,
    ) -> BackendResult<()>;
}
