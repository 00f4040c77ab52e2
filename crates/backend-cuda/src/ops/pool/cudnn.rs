//! The cuDNN path of pooling, used only where cuDNN computes exactly the contract's
//! operation ([`eligible`]): 1-d (as 2-d with a unit height) or 2-d, symmetric padding smaller
//! than the window (so that no window lies wholly in the padding, where the contract gives 0),
//! every extent in cuDNN's `int` range; NCHW or NHWC by strides.
//!
//! Max uses `CUDNN_POOLING_MAX_DETERMINISTIC` with NaN propagation (the contract's max lets
//! the first NaN win); Avg uses `CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING`, the contract's
//! "padding is not counted".
//!
//! Backward runs here for Avg only ([`backward_eligible`]): the contract sends a Max gradient
//! to the first maximal element of its window, which cuDNN does not promise. cudarc 0.19 wraps
//! no `cudnnPoolingBackward` and keeps its handle private, so the backward pass calls the raw
//! API on a handle of this module's own (`RawHandle`), with raw descriptors behind RAII
//! guards (`TensorDesc`, `PoolingDesc`).

use std::{ffi::c_void, ptr, sync::Arc};

use cudarc::{
    cudnn::{
        Cudnn, CudnnDataType, PoolingForward,
        result::CudnnError,
        sys::{
            self, cudnnDataType_t, cudnnHandle_t, cudnnNanPropagation_t, cudnnPoolingDescriptor_t, cudnnPoolingMode_t,
            cudnnStatus_t, cudnnTensorDescriptor_t,
        },
    },
    driver::CudaStream,
};
use keras_backend_api::{DType, Layout, PoolMode, PoolParams};
use parking_lot::Mutex;

use super::PoolGeometry;
use crate::{
    Device, Result,
    device::{Operand, driver_error},
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

// ----- backward (Avg only, raw cuDNN API) -----

/// The kernel name backward errors carry.
const BACKWARD: &str = "pool_backward";

/// The cuDNN description of a pooling backward pass, or `None` when it stays on the own
/// kernels: Max (its tie routing is the contract's, not cuDNN's) and everything [`eligible`]
/// refuses for the forward.
pub fn backward_eligible(geo: &PoolGeometry, p: &PoolParams<'_>) -> Option<PoolDims> {
    match p.mode {
        PoolMode::Avg => eligible(geo, p),
        PoolMode::Max => None,
    }
}

/// The dims and strides of a raw cuDNN tensor descriptor for logical dims `(N, C, H, W)`,
/// dense NCHW, or NHWC when `channels_last`.
fn nd_tensor(dims: &[i32; 4], channels_last: bool) -> ([i32; 4], [i32; 4]) {
    let s = tensor_strides(dims, channels_last);
    (*dims, [s[0], s[1], s[2], s[3]])
}

/// A cuDNN status as a result, classified as the forward's ([`classify`]): the "not
/// supported" and bad-parameter families fall back, an allocation failure is out-of-memory,
/// anything else is an internal error naming `pool_backward`, `doing` and the status.
fn check(status: cudnnStatus_t, doing: &str) -> std::result::Result<(), Failure> {
    status.result().map_err(|e: CudnnError| classify(BACKWARD, doing, e))
}

/// The backward pass's own cuDNN handle, bound to one device's stream. The stream (and,
/// through it, the context) is kept alive for as long as the handle exists.
struct RawHandle {
    handle: cudnnHandle_t,
    stream: Arc<CudaStream>,
}

// SAFETY: cuDNN lets a handle move between host threads as long as two never use it at once.
// A `RawHandle` is only reached through `RAW_HANDLE`'s mutex, which is held for the whole of
// every call that uses the handle (and for its destruction).
unsafe impl Send for RawHandle {}

impl RawHandle {
    /// Creates a handle on `d`'s stream. The caller has bound `d`'s context to this thread
    /// (cuDNN allocates on the current context) and checked that `d.cudnn` is `Some`, so
    /// libcudnn is known to load.
    fn create(d: &Device) -> std::result::Result<RawHandle, Failure> {
        let mut handle: cudnnHandle_t = ptr::null_mut();
        // SAFETY: `handle` is a valid out-pointer; it is written only on success.
        check(unsafe { sys::cudnnCreate(&mut handle) }, "handle creation")?;
        // From here on `Drop` destroys the handle, also when binding the stream fails.
        let raw = RawHandle { handle, stream: d.stream().clone() };
        let stream = raw.stream.cu_stream() as sys::cudaStream_t;
        // SAFETY: `handle` is live; `stream` is the device's stream (the legacy default stream
        // when null), of the context current on this thread, kept alive by `raw.stream`.
        check(unsafe { sys::cudnnSetStream(raw.handle, stream) }, "stream binding")?;
        Ok(raw)
    }
}

impl Drop for RawHandle {
    fn drop(&mut self) {
        // cuDNN releases the handle's memory on its context; a failure cannot be reported
        // from here and leaves at most a leak.
        let _ = self.stream.context().bind_to_thread();
        // SAFETY: the handle is live and, under the mutex, used by no one else; cudnnDestroy
        // waits for the device, so no issued work still needs it.
        let _ = unsafe { sys::cudnnDestroy(self.handle) };
    }
}

/// The one raw handle, created on first use. A process normally opens one device; a call for
/// another device's stream replaces it, so at most one is ever held (never destroyed
/// otherwise: statics are not dropped).
static RAW_HANDLE: Mutex<Option<RawHandle>> = Mutex::new(None);

/// A raw tensor descriptor, destroyed on drop.
struct TensorDesc(cudnnTensorDescriptor_t);

impl TensorDesc {
    fn new(dtype: cudnnDataType_t, dims: &[i32; 4], channels_last: bool) -> std::result::Result<Self, Failure> {
        let mut desc: cudnnTensorDescriptor_t = ptr::null_mut();
        // SAFETY: `desc` is a valid out-pointer; it is written only on success.
        check(unsafe { sys::cudnnCreateTensorDescriptor(&mut desc) }, "tensor descriptor creation")?;
        let desc = TensorDesc(desc);
        let (dims, strides) = nd_tensor(dims, channels_last);
        // SAFETY: both arrays hold the 4 entries `nbDims` says.
        check(
            unsafe { sys::cudnnSetTensorNdDescriptor(desc.0, dtype, 4, dims.as_ptr(), strides.as_ptr()) },
            "tensor descriptor",
        )?;
        Ok(desc)
    }
}

impl Drop for TensorDesc {
    fn drop(&mut self) {
        // SAFETY: created by `cudnnCreateTensorDescriptor`, destroyed once.
        let _ = unsafe { sys::cudnnDestroyTensorDescriptor(self.0) };
    }
}

/// A raw pooling descriptor, destroyed on drop.
struct PoolingDesc(cudnnPoolingDescriptor_t);

impl PoolingDesc {
    fn new(dims: &PoolDims, pool_mode: PoolMode) -> std::result::Result<Self, Failure> {
        let mut desc: cudnnPoolingDescriptor_t = ptr::null_mut();
        // SAFETY: `desc` is a valid out-pointer; it is written only on success.
        check(unsafe { sys::cudnnCreatePoolingDescriptor(&mut desc) }, "pooling descriptor creation")?;
        let desc = PoolingDesc(desc);
        // SAFETY: the three arrays hold the 2 entries `nbDims` says.
        check(
            unsafe {
                sys::cudnnSetPoolingNdDescriptor(
                    desc.0,
                    mode(pool_mode),
                    cudnnNanPropagation_t::CUDNN_PROPAGATE_NAN,
                    2,
                    dims.window.as_ptr(),
                    dims.pad.as_ptr(),
                    dims.stride.as_ptr(),
                )
            },
            "pooling descriptor",
        )?;
        Ok(desc)
    }
}

impl Drop for PoolingDesc {
    fn drop(&mut self) {
        // SAFETY: created by `cudnnCreatePoolingDescriptor`, destroyed once.
        let _ = unsafe { sys::cudnnDestroyPoolingDescriptor(self.0) };
    }
}

/// Runs Avg pooling backward on cuDNN when the device has it and [`backward_eligible`]
/// accepts the call. `x` and `dx` have the input's shape, `dy` the output's. `Ok(false)`
/// means "not run, nothing written": the caller falls back to the own kernels.
pub fn pool_backward(
    d: &Device,
    geo: &PoolGeometry,
    p: &PoolParams<'_>,
    dtype: DType,
    x: &Operand,
    dy: &Operand,
    dx: &Operand,
) -> Result<bool> {
    // Only a device whose cuDNN loaded may call into libcudnn (cudarc panics otherwise).
    if d.cudnn.is_none() {
        return Ok(false);
    }
    let Some(dims) = backward_eligible(geo, p) else { return Ok(false) };
    match dtype {
        DType::F32 => run_backward::<f32>(d, &dims, p.mode, x, dy, dx),
        DType::F64 => run_backward::<f64>(d, &dims, p.mode, x, dy, dx),
        _ => Ok(false),
    }
}

fn run_backward<T: CudnnDataType + From<u8>>(
    d: &Device,
    dims: &PoolDims,
    pool_mode: PoolMode,
    x: &Operand,
    dy: &Operand,
    dx: &Operand,
) -> Result<bool> {
    let mut slot = RAW_HANDLE.lock();
    if slot.as_ref().is_some_and(|h| !Arc::ptr_eq(&h.stream, d.stream())) {
        // Another device's handle: destroyed first (that binds its context), so that ours is
        // bound below.
        *slot = None;
    }
    d.context().bind_to_thread().map_err(|e| driver_error(BACKWARD, "binding the CUDA context", e))?;
    let cl = dims.channels_last;
    let outcome = (|| -> std::result::Result<(), Failure> {
        let handle = match slot.as_ref() {
            Some(h) => h.handle,
            None => slot.insert(RawHandle::create(d)?).handle,
        };
        let x_desc = TensorDesc::new(T::DATA_TYPE, &dims.x, cl)?;
        let y_desc = TensorDesc::new(T::DATA_TYPE, &dims.y, cl)?;
        let pooling = PoolingDesc::new(dims, pool_mode)?;
        // cuDNN takes host scalars of the element type for float and double data.
        let (one, zero) = (T::from(1u8), T::from(0u8));
        // The API asks for y (the forward output), but an average's gradient is dy / count
        // spread over each window, a formula without y (or x) in it; cuDNN's reference
        // documents no use of y's values in the average modes. So dy's buffer, which has y's
        // shape and layout, stands in for y instead of a forward recomputed into scratch.
        let (x_ptr, dy_ptr, dx_ptr) = (x.ptr as *const c_void, dy.ptr as *const c_void, dx.ptr as *mut c_void);
        // SAFETY: the descriptors describe the operands' dense shapes, layout and dtype
        // (checked by the caller, which also refused a `dx` aliasing `x` or `dy`); the
        // operands are kept alive by the caller until the stream-ordered call is done with
        // them (their memory is freed stream-ordered); alpha and beta are host scalars of
        // the descriptors' type that outlive the call; the handle is used under the mutex.
        let status = unsafe {
            sys::cudnnPoolingBackward(
                handle,
                pooling.0,
                (&one as *const T).cast(),
                y_desc.0,
                dy_ptr,
                y_desc.0,
                dy_ptr,
                x_desc.0,
                x_ptr,
                (&zero as *const T).cast(),
                x_desc.0,
                dx_ptr,
            )
        };
        check(status, "pooling backward")
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

    #[test]
    fn backward_runs_on_cudnn_for_avg_only() {
        let avg = params(Layout::ChannelsLast, &[2, 3], &[2, 1], &[1, 1], &[1, 1]);
        let geo = PoolGeometry::new("pool_backward", "dy", &[2, 5, 4, 3], &[2, 3, 4, 3], &avg).unwrap();
        assert_eq!(backward_eligible(&geo, &avg), eligible(&geo, &avg));
        assert!(backward_eligible(&geo, &avg).is_some());
        let max = PoolParams { mode: PoolMode::Max, ..avg };
        assert!(eligible(&geo, &max).is_some());
        assert!(backward_eligible(&geo, &max).is_none());
        // Avg with asymmetric padding stays on the own kernels, as for the forward.
        let asym = params(Layout::ChannelsFirst, &[2, 2], &[1, 1], &[0, 0], &[1, 1]);
        let geo = PoolGeometry::new("pool_backward", "dy", &[1, 1, 5, 5], &[1, 1, 5, 5], &asym).unwrap();
        assert!(backward_eligible(&geo, &asym).is_none());
    }

    #[test]
    fn backward_descriptors_in_both_layouts() {
        // ChannelsLast x (2, 5, 4, 3) -> logical (2, 3, 5, 4) stored NHWC.
        let d = dims(Layout::ChannelsLast, &[2, 5, 4, 3], &[2, 3, 4, 3], &[2, 3], &[2, 1], &[1, 1], &[1, 1]).unwrap();
        assert_eq!(nd_tensor(&d.x, d.channels_last), ([2, 3, 5, 4], [60, 1, 12, 3]));
        assert_eq!(nd_tensor(&d.y, d.channels_last), ([2, 3, 3, 4], [36, 1, 12, 3]));
        // ChannelsFirst: plain row-major NCHW.
        let d = dims(Layout::ChannelsFirst, &[2, 3, 6, 6], &[2, 3, 3, 3], &[2, 2], &[2, 2], &[0, 0], &[0, 0]).unwrap();
        assert_eq!(nd_tensor(&d.x, d.channels_last), ([2, 3, 6, 6], [108, 36, 6, 1]));
        assert_eq!(nd_tensor(&d.y, d.channels_last), ([2, 3, 3, 3], [27, 9, 3, 1]));
        // 1-d ChannelsLast x (2, 9, 3): logical (2, 3, 1, 9), channels innermost.
        let d = dims(Layout::ChannelsLast, &[2, 9, 3], &[2, 9, 3], &[3], &[1], &[1], &[1]).unwrap();
        assert_eq!(nd_tensor(&d.x, d.channels_last), ([2, 3, 1, 9], [27, 1, 27, 3]));
    }

    #[test]
    fn backward_statuses_name_the_kernel() {
        assert!(check(cudnnStatus_t::CUDNN_STATUS_SUCCESS, "pooling backward").is_ok());
        assert!(matches!(check(cudnnStatus_t::CUDNN_STATUS_NOT_SUPPORTED, "x"), Err(Failure::Unsupported)));
        assert!(matches!(check(cudnnStatus_t::CUDNN_STATUS_BAD_PARAM, "x"), Err(Failure::Unsupported)));
        match check(cudnnStatus_t::CUDNN_STATUS_ALLOC_FAILED, "pooling backward") {
            Err(Failure::Error(e)) => assert_eq!(e.kind, keras_backend_api::ErrorKind::OutOfMemory),
            _ => panic!("an allocation failure is out-of-memory"),
        }
        match check(cudnnStatus_t::CUDNN_STATUS_EXECUTION_FAILED, "pooling backward") {
            Err(Failure::Error(e)) => {
                assert_eq!(e.kind, keras_backend_api::ErrorKind::Internal);
                assert!(e.message.starts_with("pool_backward: cuDNN pooling backward failed"), "{}", e.message);
                assert!(e.message.contains("EXECUTION_FAILED"), "{}", e.message);
            }
            _ => panic!("an execution failure is an internal error"),
        }
    }
}
