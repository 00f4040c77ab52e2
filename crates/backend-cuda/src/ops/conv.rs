//! conv, conv_backward_data, conv_backward_filter: cuDNN where it expresses the call exactly,
//! otherwise the backend's own kernels (`kernels/conv.cu`).
//!
//! The own kernels are written for correctness first:
//! * forward is a tiled implicit GEMM per group (M = batch × output positions, N = output
//!   channels of the group, K = group input channels × taps) whose A tile is gathered from the
//!   input on the fly;
//! * backward-data is a gather, one thread per input-gradient element;
//! * backward-filter is one block-wide fixed-order reduction per kernel-gradient element.
//!
//! None uses atomics, so all three are deterministic. The argument checks and the window
//! geometry are the contract's ([`keras_backend_api::window`]), the same code the CPU backend
//! calls; pooling's checks ([`PoolGeometry`](keras_backend_api::window::PoolGeometry)) sweep
//! the same [`WindowGeometry`](keras_backend_api::window::WindowGeometry).

pub(crate) mod cudnn;

use cudarc::driver::LaunchConfig;
use keras_backend_api::{BackendError, ConvParams, DType, TensorRef};

use super::window::WindowGeo;
use crate::{
    ConvPath, Device, Result,
    device::Kernel,
    ops::{dtype_suffix, refuse_alias},
};
// The contract's convolution checks, under the name that `cudnn` imports from here.
pub(crate) use keras_backend_api::window::ConvGeometry;

const MODULE: &str = "conv";

/// Forward convolution: `out = conv(x, kernel)` as [`ConvParams`] defines it.
pub fn conv(d: &Device, x: TensorRef<'_>, k: TensorRef<'_>, out: TensorRef<'_>, p: &ConvParams<'_>) -> Result<()> {
    const KERNEL: &str = "conv";
    refuse_alias(KERNEL, &[x, k], out)?;
    let (xo, ko, yo) = (d.operand(KERNEL, "x", x)?, d.operand(KERNEL, "kernel", k)?, d.operand(KERNEL, "out", out)?);
    let geo = ConvGeometry::new(KERNEL, ["x", "kernel", "out"], &x.shape, &k.shape, &out.shape, p)?;
    let dtype = float_dtype(KERNEL, &["x", "kernel", "out"], &[xo.dtype, ko.dtype, yo.dtype])?;
    if yo.len == 0 {
        return Ok(());
    }
    if d.conv_path == ConvPath::Cudnn && cudnn::conv(d, &geo, p, dtype, cudnn::Pass::Forward, &xo, &ko, &yo)? {
        return Ok(());
    }
    let raw = WindowGeo::from(&geo);
    let name = format!("conv_forward_{}", dtype_suffix(dtype));
    let cfg = forward_config(&geo);
    crate::launch!(d, Kernel { module: MODULE, function: &name }, cfg; yo.ptr, xo.ptr, ko.ptr, raw)
}

/// Gradient with respect to the input: `dx` (the input's shape) becomes the adjoint of
/// [`conv`] in `x` applied to `dy`; input positions no output reads get 0.
pub fn conv_backward_data(
    d: &Device,
    dy: TensorRef<'_>,
    k: TensorRef<'_>,
    dx: TensorRef<'_>,
    p: &ConvParams<'_>,
) -> Result<()> {
    const KERNEL: &str = "conv_backward_data";
    refuse_alias(KERNEL, &[dy, k], dx)?;
    let (dyo, ko, dxo) = (d.operand(KERNEL, "dy", dy)?, d.operand(KERNEL, "kernel", k)?, d.operand(KERNEL, "out", dx)?);
    let geo = ConvGeometry::new(KERNEL, ["dx", "kernel", "dy"], &dx.shape, &k.shape, &dy.shape, p)?;
    let dtype = float_dtype(KERNEL, &["dy", "kernel", "dx"], &[dyo.dtype, ko.dtype, dxo.dtype])?;
    if dxo.len == 0 {
        return Ok(());
    }
    if d.conv_path == ConvPath::Cudnn && cudnn::conv(d, &geo, p, dtype, cudnn::Pass::BackwardData, &dxo, &ko, &dyo)? {
        return Ok(());
    }
    let raw = WindowGeo::from(&geo);
    let n = dxo.len as i64;
    let name = format!("conv_backward_data_{}", dtype_suffix(dtype));
    crate::launch!(d, Kernel { module: MODULE, function: &name }, crate::device::grid_1d(dxo.len);
        dxo.ptr, dyo.ptr, ko.ptr, raw, n)
}

/// Gradient with respect to the kernel: `dkernel` becomes the adjoint of [`conv`] in the
/// kernel applied to `dy`, summed over the batch.
pub fn conv_backward_filter(
    d: &Device,
    x: TensorRef<'_>,
    dy: TensorRef<'_>,
    dk: TensorRef<'_>,
    p: &ConvParams<'_>,
) -> Result<()> {
    const KERNEL: &str = "conv_backward_filter";
    refuse_alias(KERNEL, &[x, dy], dk)?;
    let (xo, dyo, dko) = (d.operand(KERNEL, "x", x)?, d.operand(KERNEL, "dy", dy)?, d.operand(KERNEL, "out", dk)?);
    let geo = ConvGeometry::new(KERNEL, ["x", "dkernel", "dy"], &x.shape, &dk.shape, &dy.shape, p)?;
    let dtype = float_dtype(KERNEL, &["x", "dy", "dkernel"], &[xo.dtype, dyo.dtype, dko.dtype])?;
    if dko.len == 0 {
        return Ok(());
    }
    if dyo.len == 0 || xo.len == 0 {
        return d.zero(KERNEL, dko.ptr, dko.len * dtype.size_in_bytes());
    }
    if d.conv_path == ConvPath::Cudnn && cudnn::conv(d, &geo, p, dtype, cudnn::Pass::BackwardFilter, &xo, &dko, &dyo)? {
        return Ok(());
    }
    let raw = WindowGeo::from(&geo);
    let n = dko.len as i64;
    let name = format!("conv_backward_filter_{}", dtype_suffix(dtype));
    let cfg = LaunchConfig {
        grid_dim: (dko.len.clamp(1, 1 << 20) as u32, 1, 1),
        block_dim: (REDUCE_THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    crate::launch!(d, Kernel { module: MODULE, function: &name }, cfg; dko.ptr, xo.ptr, dyo.ptr, raw, n)
}

/// Threads per block of `conv_forward_*` (`CONV_THREADS` in conv.cu).
const FORWARD_THREADS: u32 = 256;
/// Rows and columns of the output tile of one `conv_forward_*` block (`CONV_TILE_M/N`).
const TILE: usize = 64;
/// Threads per block of `conv_backward_filter_*` (`CONV_REDUCE_THREADS` in conv.cu).
const REDUCE_THREADS: u32 = 256;

/// The launch of the tiled forward kernel: one block per 64 × 64 output tile of each group,
/// the grid capped at the hardware limits (the kernel walks the rest with grid-stride loops).
fn forward_config(geo: &ConvGeometry) -> LaunchConfig {
    let m = geo.batch.saturating_mul(geo.window.output_len());
    let m_tiles = m.div_ceil(TILE).clamp(1, i32::MAX as usize) as u32;
    let n_tiles = geo.group_out().div_ceil(TILE).clamp(1, 65_535) as u32;
    let groups = geo.groups.clamp(1, 65_535) as u32;
    LaunchConfig { grid_dim: (m_tiles, n_tiles, groups), block_dim: (FORWARD_THREADS, 1, 1), shared_mem_bytes: 0 }
}

/// The common float dtype of a kernel's tensors (named by `names`, with `dtypes`): the CPU's
/// rule is `Unsupported` when they agree on a non-float dtype, `InvalidArgument` when they
/// differ.
pub(crate) fn float_dtype(kernel: &str, names: &[&str], dtypes: &[DType]) -> Result<DType> {
    let first = dtypes.first().copied().unwrap_or(DType::F32);
    if dtypes.iter().all(|&t| t == first) {
        return match first {
            DType::F32 | DType::F64 => Ok(first),
            other => Err(BackendError::unsupported(format!("{kernel} on {other}"))),
        };
    }
    let listed: Vec<String> = names.iter().zip(dtypes).map(|(n, t)| format!("`{n}` {t}")).collect();
    Err(BackendError::invalid(format!("{kernel}: dtypes differ ({}); this kernel needs them equal", listed.join(", "))))
}

#[cfg(test)]
mod tests {
    use abi_stable::std_types::RSlice;
    use keras_backend_api::Layout;

    use super::*;

    fn params<'a>(
        layout: Layout,
        s: &'a [usize],
        dl: &'a [usize],
        pb: &'a [usize],
        pa: &'a [usize],
        groups: usize,
    ) -> ConvParams<'a> {
        ConvParams {
            layout,
            strides: RSlice::from_slice(s),
            dilation: RSlice::from_slice(dl),
            pad_before: RSlice::from_slice(pb),
            pad_after: RSlice::from_slice(pa),
            groups,
        }
    }

    #[test]
    fn geometry_of_a_grouped_channels_last_2d_conv() {
        let p = params(Layout::ChannelsLast, &[2, 1], &[1, 2], &[1, 0], &[0, 2], 2);
        // x (B=3, 7, 6, C=4), kernel (3, 2, C/G=2, O=6): outputs floor((7+1-3)/2)+1 = 3 and
        // floor((6+2-3)/1)+1 = 6.
        let geo =
            ConvGeometry::new("conv", ["x", "kernel", "out"], &[3, 7, 6, 4], &[3, 2, 2, 6], &[3, 3, 6, 6], &p).unwrap();
        assert_eq!(
            WindowGeo::from(&geo),
            WindowGeo {
                batch: 3,
                channels: 4,
                out_channels: 6,
                groups: 2,
                group_in: 2,
                group_out: 3,
                input: [1, 7, 6],
                window: [1, 3, 2],
                stride: [1, 2, 1],
                dilation: [1, 1, 2],
                pad: [0, 1, 0],
                output: [1, 3, 6],
                in_len: 42,
                out_len: 18,
                taps: 6,
                channels_last: 1,
            }
        );
    }

    #[test]
    fn dtype_rule_matches_the_cpu() {
        assert_eq!(float_dtype("conv", &["x", "kernel", "out"], &[DType::F64; 3]).unwrap(), DType::F64);
        let e = float_dtype("conv", &["x", "kernel", "out"], &[DType::I32; 3]).unwrap_err();
        assert_eq!(e.kind, keras_backend_api::ErrorKind::Unsupported);
        let e = float_dtype("conv", &["x", "kernel", "out"], &[DType::F32, DType::F64, DType::F32]).unwrap_err();
        assert!(e.message.contains("`kernel` float64"), "{}", e.message);
    }

    #[test]
    fn forward_grid_covers_every_tile() {
        let p = params(Layout::ChannelsFirst, &[1, 1], &[1, 1], &[1, 1], &[1, 1], 1);
        let geo =
            ConvGeometry::new("conv", ["x", "kernel", "out"], &[2, 3, 10, 10], &[130, 3, 3, 3], &[2, 130, 10, 10], &p)
                .unwrap();
        let cfg = forward_config(&geo);
        assert_eq!(cfg.grid_dim, (4, 3, 1)); // 200 rows in 64-row tiles, 130 columns in 64
    }
}
