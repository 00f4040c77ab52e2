//! The cuDNN path of forward pooling, used only where cuDNN computes exactly the contract's
//! operation ([`eligible`]): 1-d (as 2-d with a unit height) or 2-d, symmetric padding smaller
//! than the window (so that no window lies wholly in the padding, where the contract gives 0),
//! every extent in cuDNN's `int` range; NCHW or NHWC by strides.
//!
//! Max uses `CUDNN_POOLING_MAX_DETERMINISTIC` with NaN propagation (the contract's max lets
//! the first NaN win); Avg uses `CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING`, the contract's
//! "padding is not counted". The backward pass is not here: cudarc 0.19 wraps only
//! `cudnnPoolingForward`, and its handle is private, so `cudnnPoolingBackward` cannot be
//! called soundly; Max backward would stay on the own kernels anyway (the contract's
//! first-maximum routing of ties is not documented for cuDNN).

use std::sync::Arc;

use cudarc::cudnn::{
    Cudnn, CudnnDataType, PoolingForward,
    result::CudnnError,
    sys::{cudnnNanPropagation_t, cudnnPoolingMode_t},
};
use keras_backend_api::{DType, Layout, PoolMode, PoolParams};

use super::PoolGeometry;
use crate::{
    Device, Result,
    device::Operand,
    ops::conv::cudnn::{Failure, Raw, classify, tensor_strides},
};

/// The dims cuDNN is given, 1-d sweeps as 2-d ones of unit height.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolDims {
    /// `true` for NHWC, `false` for NCHW.
    pub channels_last: bool,
    /// Input `(B, C, H, W)`.
    pub x: [i32; 4],
    /// Output `(B, C, H', W')`.
    pub y: [i32; 4],
    /// Window extent per spatial dim.
    pub window: [i32; 2],
    /// Symmetric padding per spatial dim.
    pub pad: [i32; 2],
    /// Stride per spatial dim.
    pub stride: [i32; 2],
}

/// The cuDNN description of a forward pooling, or `None` when cuDNN cannot express it
/// exactly: 3-d, asymmetric padding, padding as large as the window, an empty tensor, or any
/// extent or element count past `i32`.
pub fn eligible(geo: &PoolGeometry, p: &PoolParams<'_>) -> Option<PoolDims> {
    let w = &geo.window;
    if w.rank > 2 || p.pad_before.as_slice() != p.pad_after.as_slice() {
        return None;
    }
    // The normalised dims 1 and 2 are (H, W); a 1-d sweep has H = 1 with no padding.
    if (1..3).any(|d| w.pad_before[d] >= w.window[d]) {
        return None;
    }
    let pos = |v: usize| i32::try_from(v).ok().filter(|&v| v >= 1);
    let four = |spatial: &[usize]| -> Option<[i32; 4]> {
        let dims = [pos(geo.batch)?, pos(geo.channels)?, pos(spatial[1])?, pos(spatial[2])?];
        dims.iter().try_fold(1i32, |acc, &d| acc.checked_mul(d))?;
        Some(dims)
    };
    let pair = |a: &[usize; 3], f: &dyn Fn(usize) -> Option<i32>| Some([f(a[1])?, f(a[2])?]);
    Some(PoolDims {
        channels_last: geo.layout == Layout::ChannelsLast,
        x: four(&w.input)?,
        y: four(&w.output)?,
        window: pair(&w.window, &pos)?,
        pad: pair(&w.pad_before, &|v| i32::try_from(v).ok())?,
        stride: pair(&w.stride, &pos)?,
    })
}

/// Runs forward pooling on cuDNN when the device has it and [`eligible`] accepts the call.
/// `Ok(false)` means "not run, nothing written": the caller falls back to the own kernels.
pub fn pool(
    d: &Device,
    geo: &PoolGeometry,
    p: &PoolParams<'_>,
    dtype: DType,
    x: &Operand,
    y: &Operand,
) -> Result<bool> {
    let Some(handle) = d.cudnn.as_ref() else { return Ok(false) };
    let Some(dims) = eligible(geo, p) else { return Ok(false) };
    let handle = handle.lock();
    let cudnn = handle.0.clone();
    match dtype {
        DType::F32 => run::<f32>(d, &cudnn, &dims, p.mode, x, y),
        DType::F64 => run::<f64>(d, &cudnn, &dims, p.mode, x, y),
        _ => Ok(false),
    }
}

/// cuDNN's mode for the contract's pooling mode.
fn mode(m: PoolMode) -> cudnnPoolingMode_t {
    match m {
        PoolMode::Max => cudnnPoolingMode_t::CUDNN_POOLING_MAX_DETERMINISTIC,
        PoolMode::Avg => cudnnPoolingMode_t::CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING,
    }
}

fn run<T: CudnnDataType + From<u8>>(
    d: &Device,
    cudnn: &Arc<Cudnn>,
    dims: &PoolDims,
    pool_mode: PoolMode,
    x: &Operand,
    y: &Operand,
) -> Result<bool> {
    const KERNEL: &str = "pool";
    let setup = |doing: &'static str| move |e: CudnnError| classify(KERNEL, doing, e);
    let cl = dims.channels_last;
    let outcome = (|| -> std::result::Result<(), Failure> {
        let x_desc =
            cudnn.create_nd_tensor::<T>(&dims.x, &tensor_strides(&dims.x, cl)).map_err(setup("x descriptor"))?;
        let y_desc =
            cudnn.create_nd_tensor::<T>(&dims.y, &tensor_strides(&dims.y, cl)).map_err(setup("y descriptor"))?;
        let pooling = cudnn
            .create_poolingnd::<T>(
                &dims.window,
                &dims.pad,
                &dims.stride,
                mode(pool_mode),
                cudnnNanPropagation_t::CUDNN_PROPAGATE_NAN,
            )
            .map_err(setup("pooling descriptor"))?;
        let op = PoolingForward { pooling: &pooling, x: &x_desc, y: &y_desc };
        let (rx, mut ry) = (Raw::<T>::new(d, x), Raw::<T>::new(d, y));
        // SAFETY: the descriptors describe the operands' dense shapes, layout and dtype
        // (checked by the caller).
        unsafe { op.launch((T::from(1u8), T::from(0u8)), &rx, &mut ry) }.map_err(setup("pooling forward"))
    })();
    match outcome {
        Ok(()) => Ok(true),
        Err(Failure::Unsupported) => Ok(false),
        Err(Failure::Error(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use abi_stable::std_types::RSlice;

    use super::*;

    fn params<'a>(layout: Layout, w: &'a [usize], s: &'a [usize], pb: &'a [usize], pa: &'a [usize]) -> PoolParams<'a> {
        PoolParams {
            mode: PoolMode::Avg,
            layout,
            window: RSlice::from_slice(w),
            strides: RSlice::from_slice(s),
            pad_before: RSlice::from_slice(pb),
            pad_after: RSlice::from_slice(pa),
        }
    }

    fn dims(
        layout: Layout,
        x: &[usize],
        y: &[usize],
        w: &[usize],
        s: &[usize],
        pb: &[usize],
        pa: &[usize],
    ) -> Option<PoolDims> {
        let p = params(layout, w, s, pb, pa);
        let geo = PoolGeometry::new("pool", "out", x, y, &p).unwrap();
        eligible(&geo, &p)
    }

    #[test]
    fn two_d_symmetric_padding_is_eligible_in_both_layouts() {
        let d = dims(Layout::ChannelsLast, &[2, 5, 4, 3], &[2, 3, 4, 3], &[2, 3], &[2, 1], &[1, 1], &[1, 1]).unwrap();
        assert_eq!(
            d,
            PoolDims {
                channels_last: true,
                x: [2, 3, 5, 4],
                y: [2, 3, 3, 4],
                window: [2, 3],
                pad: [1, 1],
                stride: [2, 1],
            }
        );
        assert_eq!(tensor_strides(&d.x, true), vec![60, 1, 12, 3]);
        let d = dims(Layout::ChannelsFirst, &[2, 3, 6, 6], &[2, 3, 3, 3], &[2, 2], &[2, 2], &[0, 0], &[0, 0]).unwrap();
        assert!(!d.channels_last);
        assert_eq!(tensor_strides(&d.x, false), vec![108, 36, 6, 1]);
    }

    #[test]
    fn one_d_becomes_two_d_with_unit_height() {
        let d = dims(Layout::ChannelsFirst, &[2, 3, 9], &[2, 3, 9], &[3], &[1], &[1], &[1]).unwrap();
        assert_eq!((d.x, d.y), ([2, 3, 1, 9], [2, 3, 1, 9]));
        assert_eq!((d.window, d.pad, d.stride), ([1, 3], [0, 1], [1, 1]));
    }

    #[test]
    fn inexact_cases_stay_on_the_own_kernels() {
        // asymmetric padding
        assert!(
            dims(Layout::ChannelsFirst, &[1, 1, 5, 5], &[1, 1, 5, 5], &[2, 2], &[1, 1], &[0, 0], &[1, 1]).is_none()
        );
        // padding as large as the window: a window can lie wholly in the padding (contract: 0)
        assert!(
            dims(Layout::ChannelsFirst, &[1, 1, 3, 3], &[1, 1, 5, 5], &[1, 1], &[1, 1], &[1, 1], &[1, 1]).is_none()
        );
        // 3-d
        assert!(
            dims(Layout::ChannelsFirst, &[1, 1, 4, 4, 4], &[1, 1, 2, 2, 2], &[2; 3], &[2; 3], &[0; 3], &[0; 3])
                .is_none()
        );
        // an empty batch
        assert!(dims(Layout::ChannelsLast, &[0, 4, 4, 2], &[0, 2, 2, 2], &[2, 2], &[2, 2], &[0, 0], &[0, 0]).is_none());
        // an element count past i32
        let big = 1usize << 16;
        assert!(
            dims(Layout::ChannelsFirst, &[1, big, big, 1], &[1, big, big, 1], &[1, 1], &[1, 1], &[0, 0], &[0, 0])
                .is_none()
        );
    }

    #[test]
    fn modes_map_to_the_contract_rules() {
        assert_eq!(mode(PoolMode::Max), cudnnPoolingMode_t::CUDNN_POOLING_MAX_DETERMINISTIC);
        assert_eq!(mode(PoolMode::Avg), cudnnPoolingMode_t::CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING);
    }
}
