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

use cudarc::driver::DeviceRepr;
use keras_backend_api::{BackendError, Layout, PoolMode, PoolParams, TensorRef, window::PoolGeometry};

use super::conv::{float_dtype, refuse_alias};
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
    refuse_alias(KERNEL, &[x.buffer], out.buffer)?;
    let (xo, yo) = (d.operand(KERNEL, "x", x)?, d.operand(KERNEL, "out", out)?);
    let geo = PoolGeometry::new(KERNEL, "out", &x.shape, &out.shape, p)?;
    let dtype = pair_dtype(KERNEL, xo.dtype, yo.dtype)?;
    if yo.len == 0 {
        return Ok(());
    }
    if d.conv_path == ConvPath::Cudnn && cudnn::pool(d, &geo, p, dtype, &xo, &yo)? {
        return Ok(());
    }
    let raw = raw(&geo, p.mode);
    let n = yo.len as i64;
    let name = format!("pool_forward_{}", dtype_suffix(dtype));
    crate::launch!(d, Kernel { module: MODULE, function: &name }, grid_1d(yo.len); yo.ptr, xo.ptr, raw, n)
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
    refuse_alias(KERNEL, &[x.buffer, dy.buffer], dx.buffer)?;
    let (xo, dyo, dxo) = (d.operand(KERNEL, "x", x)?, d.operand(KERNEL, "dy", dy)?, d.operand(KERNEL, "out", dx)?);
    let geo = PoolGeometry::backward(&x.shape, &dy.shape, &dx.shape, p)?;
    let dtype = float_dtype(KERNEL, &["x", "dy", "dx"], &[xo.dtype, dyo.dtype, dxo.dtype])?;
    if dxo.len == 0 {
        return Ok(());
    }
    if d.conv_path == ConvPath::Cudnn && cudnn::pool_backward(d, &geo, p, dtype, &xo, &dyo, &dxo)? {
        return Ok(());
    }
    let raw = raw(&geo, p.mode);
    let n = dxo.len as i64;
    let name = format!("pool_backward_{}", dtype_suffix(dtype));
    crate::launch!(d, Kernel { module: MODULE, function: &name }, grid_1d(dxo.len);
        dxo.ptr, xo.ptr, dyo.ptr, raw, n)
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

/// The kernels' view of a checked pooling. Every count is a dim of a live tensor or a checked
/// output length, so the `as i64` conversions are exact.
fn raw(geo: &PoolGeometry, mode: PoolMode) -> PoolGeo {
    let w = &geo.window;
    let i = |a: [usize; 3]| a.map(|v| v as i64);
    PoolGeo {
        batch: geo.batch as i64,
        channels: geo.channels as i64,
        input: i(w.input),
        window: i(w.window),
        stride: i(w.stride),
        pad: i(w.pad_before),
        output: i(w.output),
        in_len: w.input_len() as i64,
        out_len: w.output_len() as i64,
        channels_last: i64::from(geo.layout == Layout::ChannelsLast),
        max: i64::from(mode == PoolMode::Max),
    }
}

/// The pooling geometry as the kernels take it. Mirrors `struct PoolGeo` in pool.cu field for
/// field (all `i64`, so C and Rust agree on the layout without padding).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolGeo {
    /// Batch size.
    pub batch: i64,
    /// Channels.
    pub channels: i64,
    /// Input length per (normalised) spatial dim.
    pub input: [i64; 3],
    /// Window extent per dim.
    pub window: [i64; 3],
    /// Stride per dim.
    pub stride: [i64; 3],
    /// Padding before each dim.
    pub pad: [i64; 3],
    /// Output length per dim.
    pub output: [i64; 3],
    /// Input positions (product of `input`).
    pub in_len: i64,
    /// Output positions (product of `output`).
    pub out_len: i64,
    /// 1 for [`Layout::ChannelsLast`], 0 for [`Layout::ChannelsFirst`].
    pub channels_last: i64,
    /// 1 for [`PoolMode::Max`], 0 for [`PoolMode::Avg`].
    pub max: i64,
}

// SAFETY: plain `#[repr(C)]` data of `i64`s with the layout of `struct PoolGeo` in pool.cu.
unsafe impl DeviceRepr for PoolGeo {}

#[cfg(test)]
mod tests {
    use abi_stable::std_types::RSlice;

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
        assert_eq!(
            raw(&geo, PoolMode::Avg),
            PoolGeo {
                batch: 2,
                channels: 3,
                input: [1, 5, 4],
                window: [1, 2, 2],
                stride: [1, 2, 1],
                pad: [0, 0, 1],
                output: [1, 3, 5],
                in_len: 20,
                out_len: 15,
                channels_last: 1,
                max: 0,
            }
        );
        assert_eq!(std::mem::size_of::<PoolGeo>(), 21 * 8);
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
