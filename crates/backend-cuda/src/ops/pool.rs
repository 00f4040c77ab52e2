//! pool and pool_backward: forward, and Avg backward, on cuDNN where it computes the
//! contract's operation exactly ([`cudnn`], on [`ConvPath::Cudnn`]), everything else on the
//! backend's own kernels (`kernels/pool.cu`).
//!
//! The own forward is one thread per output element; backward is a gather, one thread per
//! input element visiting the windows that contain it, so there are no atomics and the sums
//! are added in the CPU backend's order (output order): both results match the CPU bit for
//! bit. Max backward always runs on the own kernels: cuDNN's max-pooling backward may route
//! ties differently from the contract's "first maximum".

mod cudnn;

use keras_backend_api::{BackendError, PoolMode, PoolParams, TensorRef, window::PoolGeometry};

use super::{conv::float_dtype, refuse_alias, window::WindowGeo};
use crate::{
    ConvPath, Device, Result,
    device::{Kernel, grid_1d},
    ops::dtype_suffix,
};

const MODULE: &str = "pool";

/// Forward pooling: `out` gets the max or mean of each window of `x` (padding excluded; a
/// window wholly in the padding gives 0).
pub fn pool(d: &Device, x: TensorRef<'_>, out: TensorRef<'_>, p: &PoolParams<'_>) -> Result<()> {
    const KERNEL: &str = "pool";
    refuse_alias(KERNEL, &[x], out)?;
    let (xo, yo) = (d.operand(KERNEL, "x", x)?, d.operand(KERNEL, "out", out)?);
    let geo = PoolGeometry::new(KERNEL, "out", &x.shape, &out.shape, p)?;
    let dtype = pair_dtype(KERNEL, xo.dtype, yo.dtype)?;
    if yo.len == 0 {
        return Ok(());
    }
    if d.conv_path == ConvPath::Cudnn && cudnn::pool(d, &geo, p, dtype, &xo, &yo)? {
        return Ok(());
    }
    let (raw, is_max) = (WindowGeo::from(&geo), is_max(p.mode));
    let n = yo.len as i64;
    let name = format!("pool_forward_{}", dtype_suffix(dtype));
    crate::launch!(d, Kernel { module: MODULE, function: &name }, grid_1d(yo.len); yo.ptr, xo.ptr, raw, is_max, n)
}

/// Gradient with respect to the input: each element of `dy` goes to the first maximal
/// in-bounds element of its window (Max) or is spread evenly over the window's in-bounds
/// elements (Avg); overlapping windows add up; `dx` has the shape of `x`.
pub fn pool_backward(
    d: &Device,
    x: TensorRef<'_>,
    dy: TensorRef<'_>,
    dx: TensorRef<'_>,
    p: &PoolParams<'_>,
) -> Result<()> {
    const KERNEL: &str = "pool_backward";
    refuse_alias(KERNEL, &[x, dy], dx)?;
    let (xo, dyo, dxo) = (d.operand(KERNEL, "x", x)?, d.operand(KERNEL, "dy", dy)?, d.operand(KERNEL, "out", dx)?);
    let geo = PoolGeometry::backward(&x.shape, &dy.shape, &dx.shape, p)?;
    let dtype = float_dtype(KERNEL, &["x", "dy", "dx"], &[xo.dtype, dyo.dtype, dxo.dtype])?;
    if dxo.len == 0 {
        return Ok(());
    }
    if d.conv_path == ConvPath::Cudnn && cudnn::pool_backward(d, &geo, p, dtype, &xo, &dyo, &dxo)? {
        return Ok(());
    }
    let (raw, is_max) = (WindowGeo::from(&geo), is_max(p.mode));
    let n = dxo.len as i64;
    let name = format!("pool_backward_{}", dtype_suffix(dtype));
    crate::launch!(d, Kernel { module: MODULE, function: &name }, grid_1d(dxo.len);
        dxo.ptr, xo.ptr, dyo.ptr, raw, is_max, n)
}

/// The kernels' `is_max` argument: 1 for [`PoolMode::Max`], 0 for [`PoolMode::Avg`].
fn is_max(mode: PoolMode) -> i64 {
    i64::from(mode == PoolMode::Max)
}

/// The CPU's rule for a two-tensor float kernel: `Unsupported` when the dtypes agree on a
/// non-float, `InvalidArgument` when they differ.
fn pair_dtype(
    kernel: &str,
    a: keras_backend_api::DType,
    b: keras_backend_api::DType,
) -> Result<keras_backend_api::DType> {
    if a != b {
        return Err(BackendError::invalid(format!(
            "{kernel}: dtypes differ ({a} and {b}); this kernel needs them equal"
        )));
    }
    float_dtype(kernel, &["x", "out"], &[a, b])
}

#[cfg(test)]
mod tests {
    use abi_stable::std_types::RSlice;
    use keras_backend_api::{ConvParams, Layout, window::ConvGeometry};

    use super::*;

    fn params<'a>(layout: Layout, w: &'a [usize], s: &'a [usize], pb: &'a [usize], pa: &'a [usize]) -> PoolParams<'a> {
        PoolParams {
            mode: PoolMode::Max,
            layout,
            window: RSlice::from_slice(w),
            strides: RSlice::from_slice(s),
            pad_before: RSlice::from_slice(pb),
            pad_after: RSlice::from_slice(pa),
        }
    }

    #[test]
    fn geometry_of_a_padded_channels_last_pooling() {
        let p = params(Layout::ChannelsLast, &[2, 2], &[2, 1], &[0, 1], &[1, 1]);
        // x (2, 5, 4, 3): outputs floor((5+1-2)/2)+1 = 3 and floor((4+2-2)/1)+1 = 5.
        let geo = PoolGeometry::new("pool", "out", &[2, 5, 4, 3], &[2, 3, 5, 3], &p).unwrap();
        // The kernels see pooling as the depthwise convolution with the same window: C groups
        // of one channel in and one out, kernel (2, 2, 1, C), no dilation.
        let depthwise = ConvParams {
            layout: Layout::ChannelsLast,
            strides: RSlice::from_slice(&[2, 1]),
            dilation: RSlice::from_slice(&[1, 1]),
            pad_before: RSlice::from_slice(&[0, 1]),
            pad_after: RSlice::from_slice(&[1, 1]),
            groups: 3,
        };
        let conv =
            ConvGeometry::new("conv", ["x", "kernel", "out"], &[2, 5, 4, 3], &[2, 2, 1, 3], &[2, 3, 5, 3], &depthwise)
                .unwrap();
        let raw = WindowGeo::from(&geo);
        assert_eq!(raw, WindowGeo::from(&conv));
        assert_eq!((raw.groups, raw.group_in, raw.group_out, raw.taps), (3, 1, 1, 4));
        assert_eq!((raw.output, raw.in_len, raw.out_len), ([1, 3, 5], 20, 15));
        assert_eq!((is_max(PoolMode::Max), is_max(PoolMode::Avg)), (1, 0));
    }

    #[test]
    fn validation_messages_match_the_cpu() {
        let p = params(Layout::ChannelsFirst, &[2, 2], &[2, 2], &[0, 0], &[0, 0]);
        let e = PoolGeometry::new("pool", "out", &[2, 3, 4, 4], &[2, 3, 3, 2], &p).unwrap_err();
        assert!(
            e.message.contains("`out` has shape (2, 3, 3, 2)") && e.message.contains("gives (2, 3, 2, 2)"),
            "{e:?}"
        );
        let e = PoolGeometry::new("pool", "out", &[2, 3, 4], &[2, 3, 2], &p).unwrap_err();
        assert!(e.message.contains("window [2, 2] has 2 entries for 1 spatial dims"), "{e:?}");
        let e = PoolGeometry::new("pool", "out", &[2, 3], &[2, 3], &p).unwrap_err();
        assert!(e.message.contains("rank 3, 4 or 5"), "{e:?}");
        let zero = params(Layout::ChannelsFirst, &[2, 2], &[0, 2], &[0, 0], &[0, 0]);
        let e = PoolGeometry::new("pool", "out", &[2, 3, 4, 4], &[2, 3, 2, 2], &zero).unwrap_err();
        assert!(e.message.contains("must be >= 1"), "{e:?}");
        let e = pair_dtype("pool", keras_backend_api::DType::I32, keras_backend_api::DType::I32).unwrap_err();
        assert_eq!(e.kind, keras_backend_api::ErrorKind::Unsupported);
        let e = pair_dtype("pool", keras_backend_api::DType::F32, keras_backend_api::DType::F64).unwrap_err();
        assert!(e.message.contains("dtypes differ (float32 and float64)"), "{e:?}");
    }
}
