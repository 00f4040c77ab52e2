//! The cuDNN path of convolution, used only where cuDNN computes exactly the contract's
//! operation ([`eligible`]): symmetric padding, 1-d (as 2-d with a unit height), 2-d or 3-d,
//! every extent in cuDNN's `int` range. Everything else, and any call cuDNN reports as not
//! supported, runs on the own kernels (the caller's fallback).
//!
//! ChannelsFirst tensors are cuDNN's NCHW (NCDHW) and its kernel `(O, C/G, k...)` is cuDNN's
//! NCHW filter. ChannelsLast tensors are NHWC (NDHWC), described by their strides; the
//! contract's ChannelsLast kernel `(k..., C/G, O)` is neither cuDNN filter layout, so it is
//! permuted into a scratch `(O, k..., C/G)`, the NHWC filter layout (backward filter computes
//! into that scratch and permutes the result back into `dkernel`).
//!
//! Only deterministic algorithms are used (forward: implicit GEMM, precomputed or not;
//! backward data and filter: `ALGO_1`), with `CUDNN_FMA_MATH` so that FP32 never runs in
//! TF32. Descriptors are cudarc's RAII types, destroyed on drop.

use std::{marker::PhantomData, sync::Arc};

use cudarc::{
    cudnn::{
        ConvBackwardData, ConvBackwardFilter, ConvForward, Cudnn, CudnnDataType,
        result::CudnnError,
        sys::{
            cudnnConvolutionBwdDataAlgo_t as BwdDataAlgo, cudnnConvolutionBwdFilterAlgo_t as BwdFilterAlgo,
            cudnnConvolutionFwdAlgo_t as FwdAlgo, cudnnConvolutionMode_t, cudnnMathType_t, cudnnStatus_t,
            cudnnTensorFormat_t,
        },
    },
    driver::{CudaStream, DevicePtr, DevicePtrMut, DeviceSlice, SyncOnDrop, sys::CUdeviceptr},
};
use keras_backend_api::{BackendError, ConvParams, DType, ErrorKind, Layout};

use super::ConvGeometry;
use crate::{
    Device, Result,
    device::{Kernel, Operand, grid_1d},
    index::{Space, View},
    ops::bits_suffix,
};

/// Which of the three convolution kernels runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// `y = conv(x, w)`.
    Forward,
    /// `dx` from `dy` and `w`.
    BackwardData,
    /// `dw` from `x` and `dy`.
    BackwardFilter,
}

impl Pass {
    fn kernel(self) -> &'static str {
        match self {
            Pass::Forward => "conv",
            Pass::BackwardData => "conv_backward_data",
            Pass::BackwardFilter => "conv_backward_filter",
        }
    }
}

/// The dims cuDNN is given: `(x dims, filter dims, y dims, pads, strides, dilations)`, with
/// 1-d sweeps as 2-d ones of unit height. The dims are cuDNN's logical order whatever the
/// layout; `channels_last` says how they sit in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CudnnDims {
    /// `true` for NHWC tensors and an `(O, k..., C/G)` filter, `false` for NCHW.
    pub channels_last: bool,
    /// Input `(B, C, spatial...)`.
    pub x: Vec<i32>,
    /// Filter `(O, C/G, k...)`.
    pub w: Vec<i32>,
    /// Output `(B, O, spatial...)`.
    pub y: Vec<i32>,
    /// Symmetric padding per spatial dim.
    pub pad: Vec<i32>,
    /// Stride per spatial dim.
    pub stride: Vec<i32>,
    /// Dilation per spatial dim.
    pub dilation: Vec<i32>,
}

/// Largest element count of one tensor cuDNN's legacy API takes (its strides are `int`).
const MAX_ELEMENTS: usize = i32::MAX as usize;

/// The cuDNN description of a convolution, or `None` when cuDNN cannot express it exactly:
/// asymmetric padding, an empty tensor, or any extent or element count past `i32`.
pub fn eligible(geo: &ConvGeometry, p: &ConvParams<'_>) -> Option<CudnnDims> {
    if p.pad_before.as_slice() != p.pad_after.as_slice() {
        return None;
    }
    let w = &geo.window;
    let spatial = w.rank.max(2);
    let first = 3 - spatial;
    let to_i32 = |v: usize| i32::try_from(v).ok().filter(|&v| v >= 1);
    let pad_i32 = |v: usize| i32::try_from(v).ok();
    let lead =
        |a: usize, b: usize, s: &[usize]| -> Option<Vec<i32>> { [a, b].iter().chain(s).map(|&v| to_i32(v)).collect() };
    let x = lead(geo.batch, geo.channels, &w.input[first..])?;
    let wd = lead(geo.out_channels, geo.group_in(), &w.window[first..])?;
    let y = lead(geo.batch, geo.out_channels, &w.output[first..])?;
    for dims in [&x, &wd, &y] {
        let n = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d as usize))?;
        if n > MAX_ELEMENTS {
            return None;
        }
    }
    let pad: Vec<i32> = w.pad_before[first..].iter().map(|&v| pad_i32(v)).collect::<Option<_>>()?;
    let stride: Vec<i32> = w.stride[first..].iter().map(|&v| to_i32(v)).collect::<Option<_>>()?;
    let dilation: Vec<i32> = w.dilation[first..].iter().map(|&v| to_i32(v)).collect::<Option<_>>()?;
    i32::try_from(geo.groups).ok()?;
    Some(CudnnDims { channels_last: geo.layout == Layout::ChannelsLast, x, w: wd, y, pad, stride, dilation })
}

/// The contract's shape of the ChannelsLast kernel of `geo`: `(k..., C/G, O)` with the given
/// spatial dims only (no normalising unit dims).
fn channels_last_kernel_shape(geo: &ConvGeometry) -> Vec<usize> {
    let w = &geo.window;
    w.window[3 - w.rank..].iter().copied().chain([geo.group_in(), geo.out_channels]).collect()
}

/// A permuted dense copy: destination axis `j` is source axis `perm[j]`. Returns the
/// destination shape (the copy's iteration space, walked densely on the destination side)
/// and the source's element strides over that space.
pub(crate) fn permutation(src_shape: &[usize], perm: &[usize]) -> (Vec<usize>, Vec<isize>) {
    let strides = keras_backend_api::shape::contiguous_strides(src_shape);
    let shape = perm.iter().map(|&a| src_shape[a]).collect();
    let src = perm.iter().map(|&a| strides[a] as isize).collect();
    (shape, src)
}

/// The permutation from the contract's ChannelsLast kernel `(k_0..k_{r-1}, C/G, O)` to
/// cuDNN's NHWC filter `(O, k_0..k_{r-1}, C/G)`, for `r` spatial dims.
pub(crate) fn to_nhwc_filter(r: usize) -> Vec<usize> {
    [r + 1].into_iter().chain(0..=r).collect()
}

/// The inverse of [`to_nhwc_filter`]: `(O, k..., C/G)` back to `(k..., C/G, O)`.
pub(crate) fn from_nhwc_filter(r: usize) -> Vec<usize> {
    (1..=r + 1).chain([0]).collect()
}

/// Copies the dense tensor of `src_shape` at `src` into `dst` permuted by `perm` (see
/// [`permutation`]), with the movement module's strided copy.
fn permute(
    d: &Device,
    kernel: &str,
    dtype: DType,
    dst: u64,
    src: u64,
    src_shape: &[usize],
    perm: &[usize],
) -> Result<()> {
    let (shape, src_strides) = permutation(src_shape, perm);
    let space = Space::new(kernel, &shape)?;
    let n = space.len();
    if n == 0 {
        return Ok(());
    }
    let out_view = View::dense(kernel, &shape)?;
    let x_view = View::new(kernel, 0, &src_strides)?;
    let (out_ptr, x_ptr, count) = (dst, src, n as i64);
    let name = format!("copy_{}", bits_suffix(dtype));
    crate::launch!(d, Kernel { module: "movement", function: &name }, grid_1d(n);
        out_ptr, out_view, x_ptr, x_view, space, count)
}

/// Runs `pass` on cuDNN when the device has it and [`eligible`] accepts the call. `a`, `w`
/// and `y` are the input-shaped, kernel-shaped and output-shaped operands. `Ok(false)` means
/// "not run, nothing written": the caller falls back to the own kernels.
#[allow(clippy::too_many_arguments)]
pub fn conv(
    d: &Device,
    geo: &ConvGeometry,
    p: &ConvParams<'_>,
    dtype: DType,
    pass: Pass,
    a: &Operand,
    w: &Operand,
    y: &Operand,
) -> Result<bool> {
    let Some(handle) = d.cudnn.as_ref() else { return Ok(false) };
    let Some(dims) = eligible(geo, p) else { return Ok(false) };
    let handle = handle.lock();
    let cudnn = handle.0.clone();
    let filter = Filter { dtype, channels_last_shape: channels_last_kernel_shape(geo) };
    match dtype {
        DType::F32 => run::<f32>(d, &cudnn, &dims, geo.groups as i32, pass, &filter, (a, w, y)),
        DType::F64 => run::<f64>(d, &cudnn, &dims, geo.groups as i32, pass, &filter, (a, w, y)),
        _ => Ok(false),
    }
}

/// What [`run`] needs to stage a ChannelsLast kernel: its dtype and its contract shape.
struct Filter {
    dtype: DType,
    channels_last_shape: Vec<usize>,
}

/// What a failed cuDNN call means for the caller.
pub(crate) enum Failure {
    /// cuDNN cannot do this call (nothing was written): fall back.
    Unsupported,
    /// A real error.
    Error(BackendError),
}

/// Classifies a cuDNN status: the "not supported" family and bad parameters (which, for a
/// call that passed the contract's checks, mean cuDNN cannot express it) fall back; an
/// allocation failure is out-of-memory; anything else is an internal error naming the
/// kernel, what was being done and the status.
pub(crate) fn classify(kernel: &str, doing: &str, e: CudnnError) -> Failure {
    let code = e.0 as u32;
    if code == cudnnStatus_t::CUDNN_STATUS_NOT_SUPPORTED as u32
        || code == cudnnStatus_t::CUDNN_STATUS_BAD_PARAM as u32
        || (3000..4000).contains(&code)
        || (2000..3000).contains(&code)
    {
        return Failure::Unsupported;
    }
    let kind = if e.0 == cudnnStatus_t::CUDNN_STATUS_ALLOC_FAILED
        || e.0 == cudnnStatus_t::CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED
    {
        ErrorKind::OutOfMemory
    } else {
        ErrorKind::Internal
    };
    Failure::Error(BackendError::new(kind, format!("{kernel}: cuDNN {doing} failed: {:?}", e.0)))
}

/// A device range owned elsewhere (an [`Operand`], kept alive by the caller), in the form
/// cudarc's cuDNN wrappers take. Every use is on the device's one stream, which orders it,
/// so no events are recorded.
pub(crate) struct Raw<T> {
    ptr: CUdeviceptr,
    len: usize,
    stream: Arc<CudaStream>,
    marker: PhantomData<T>,
}

impl<T> Raw<T> {
    pub(crate) fn new(d: &Device, operand: &Operand) -> Raw<T> {
        Raw { ptr: operand.ptr, len: operand.len, stream: d.stream().clone(), marker: PhantomData }
    }
}

impl<T> DeviceSlice<T> for Raw<T> {
    fn len(&self) -> usize {
        self.len
    }
    fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }
}

impl<T> DevicePtr<T> for Raw<T> {
    fn device_ptr<'a>(&'a self, _stream: &'a CudaStream) -> (CUdeviceptr, SyncOnDrop<'a>) {
        (self.ptr, SyncOnDrop::Record(None))
    }
}

impl<T> DevicePtrMut<T> for Raw<T> {
    fn device_ptr_mut<'a>(&'a mut self, _stream: &'a CudaStream) -> (CUdeviceptr, SyncOnDrop<'a>) {
        (self.ptr, SyncOnDrop::Record(None))
    }
}

/// Dense strides of a tensor with cuDNN dims `(N, C, spatial...)`: row-major (NCHW), or with
/// the channels innermost (NHWC) when `channels_last`. The caller has checked that the
/// element count fits `i32`, so no partial product overflows.
pub(crate) fn tensor_strides(dims: &[i32], channels_last: bool) -> Vec<i32> {
    if !channels_last || dims.len() < 3 {
        return packed_strides(dims);
    }
    // Memory order (N, spatial..., C): the row-major strides of that order, moved back.
    let memory: Vec<i32> = [dims[0]].iter().chain(&dims[2..]).chain([&dims[1]]).copied().collect();
    let m = packed_strides(&memory);
    let last = m.len() - 1;
    [m[0], m[last]].iter().chain(&m[1..last]).copied().collect()
}

fn packed_strides(dims: &[i32]) -> Vec<i32> {
    let mut strides = vec![1i32; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * dims[i + 1];
    }
    strides
}

/// Runs one pass on cuDNN. `Ok(false)` means cuDNN refused it before anything the caller
/// owns was written (only scratch buffers may have been).
fn run<T: CudnnDataType + From<u8>>(
    d: &Device,
    cudnn: &Arc<Cudnn>,
    dims: &CudnnDims,
    groups: i32,
    pass: Pass,
    filter: &Filter,
    (a, w, y): (&Operand, &Operand, &Operand),
) -> Result<bool> {
    let kernel = pass.kernel();
    let setup = |doing: &'static str| move |e: CudnnError| classify(kernel, doing, e);
    let cl = dims.channels_last;
    let r = filter.channels_last_shape.len().saturating_sub(2);
    let outcome = (|| -> std::result::Result<(), Failure> {
        let x_desc =
            cudnn.create_nd_tensor::<T>(&dims.x, &tensor_strides(&dims.x, cl)).map_err(setup("x descriptor"))?;
        let y_desc =
            cudnn.create_nd_tensor::<T>(&dims.y, &tensor_strides(&dims.y, cl)).map_err(setup("y descriptor"))?;
        let format = if cl { cudnnTensorFormat_t::CUDNN_TENSOR_NHWC } else { cudnnTensorFormat_t::CUDNN_TENSOR_NCHW };
        let w_desc = cudnn.create_nd_filter::<T>(format, &dims.w).map_err(setup("filter descriptor"))?;
        let mut conv = cudnn
            .create_convnd::<T>(
                &dims.pad,
                &dims.stride,
                &dims.dilation,
                cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
            )
            .map_err(setup("convolution descriptor"))?;
        conv.set_group_count(groups).map_err(setup("group count"))?;
        conv.set_math_type(cudnnMathType_t::CUDNN_FMA_MATH).map_err(setup("math type"))?;
        // A ChannelsLast kernel lives in a scratch `(O, k..., C/G)` copy; `staged` keeps it
        // alive until the pass has run.
        let staged = if cl { Some(d.scratch(kernel, filter.dtype, w.len).map_err(Failure::Error)?) } else { None };
        let stage_in = || -> std::result::Result<(), Failure> {
            match &staged {
                Some(s) => {
                    permute(d, kernel, filter.dtype, s.ptr, w.ptr, &filter.channels_last_shape, &to_nhwc_filter(r))
                        .map_err(Failure::Error)
                }
                None => Ok(()),
            }
        };
        let mut nhwc_shape = filter.channels_last_shape.clone();
        nhwc_shape.rotate_right(1);
        let (mut ra, mut ry) = (Raw::<T>::new(d, a), Raw::<T>::new(d, y));
        let mut rw = Raw::<T>::new(d, staged.as_ref().unwrap_or(w));
        let one = T::from(1u8);
        let zero = T::from(0u8);
        let workspace = |bytes: usize| -> std::result::Result<Option<(Operand, Raw<u8>)>, Failure> {
            if bytes == 0 {
                return Ok(None);
            }
            let scratch = d.scratch(kernel, DType::U8, bytes).map_err(Failure::Error)?;
            let raw = Raw::<u8>::new(d, &scratch);
            Ok(Some((scratch, raw)))
        };
        let launched = setup;
        match pass {
            Pass::Forward => {
                let op = ConvForward { conv: &conv, x: &x_desc, w: &w_desc, y: &y_desc };
                let mut chosen = None;
                for algo in [
                    FwdAlgo::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
                    FwdAlgo::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
                ] {
                    match op.get_workspace_size(algo).map_err(setup("workspace query")) {
                        Ok(bytes) => {
                            chosen = Some((algo, bytes));
                            break;
                        }
                        Err(Failure::Unsupported) => continue,
                        Err(e) => return Err(e),
                    }
                }
                let (algo, bytes) = chosen.ok_or(Failure::Unsupported)?;
                let mut ws = workspace(bytes)?;
                stage_in()?;
                // SAFETY: the descriptors describe the operands' dense shapes, layout and
                // dtype (checked by the caller); the workspace holds `bytes` bytes.
                unsafe { op.launch(algo, ws.as_mut().map(|(_, r)| r), (one, zero), &ra, &rw, &mut ry) }
                    .map_err(launched("convolution forward"))
            }
            Pass::BackwardData => {
                let op = ConvBackwardData { conv: &conv, dx: &x_desc, w: &w_desc, dy: &y_desc };
                let algo = BwdDataAlgo::CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;
                let bytes = op.get_workspace_size(algo).map_err(setup("workspace query"))?;
                let mut ws = workspace(bytes)?;
                stage_in()?;
                // SAFETY: as for the forward pass.
                unsafe { op.launch(algo, ws.as_mut().map(|(_, r)| r), (one, zero), &mut ra, &rw, &ry) }
                    .map_err(launched("convolution backward data"))
            }
            Pass::BackwardFilter => {
                let op = ConvBackwardFilter { conv: &conv, x: &x_desc, dw: &w_desc, dy: &y_desc };
                let algo = BwdFilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1;
                let bytes = op.get_workspace_size(algo).map_err(setup("workspace query"))?;
                let mut ws = workspace(bytes)?;
                // SAFETY: as for the forward pass.
                unsafe { op.launch(algo, ws.as_mut().map(|(_, r)| r), (one, zero), &ra, &mut rw, &ry) }
                    .map_err(launched("convolution backward filter"))?;
                // Only now, with cuDNN done, is `dkernel` written: from the scratch filter.
                match &staged {
                    Some(s) => permute(d, kernel, filter.dtype, w.ptr, s.ptr, &nhwc_shape, &from_nhwc_filter(r))
                        .map_err(Failure::Error),
                    None => Ok(()),
                }
            }
        }
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

    fn geometry(
        layout: Layout,
        x: &[usize],
        k: &[usize],
        y: &[usize],
        pb: &[usize],
        pa: &[usize],
    ) -> (ConvGeometry, Vec<usize>) {
        let n = x.len() - 2;
        let ones = vec![1; n];
        let p = ConvParams {
            layout,
            strides: RSlice::from_slice(&ones),
            dilation: RSlice::from_slice(&ones),
            pad_before: RSlice::from_slice(pb),
            pad_after: RSlice::from_slice(pa),
            groups: 1,
        };
        (ConvGeometry::new("conv", ["x", "kernel", "out"], x, k, y, &p).unwrap(), ones)
    }

    fn params<'a>(layout: Layout, ones: &'a [usize], pb: &'a [usize], pa: &'a [usize]) -> ConvParams<'a> {
        ConvParams {
            layout,
            strides: RSlice::from_slice(ones),
            dilation: RSlice::from_slice(ones),
            pad_before: RSlice::from_slice(pb),
            pad_after: RSlice::from_slice(pa),
            groups: 1,
        }
    }

    #[test]
    fn one_d_becomes_two_d_with_unit_height() {
        let (geo, ones) = geometry(Layout::ChannelsFirst, &[2, 3, 9], &[4, 3, 3], &[2, 4, 9], &[1], &[1]);
        let dims = eligible(&geo, &params(Layout::ChannelsFirst, &ones, &[1], &[1])).unwrap();
        assert_eq!(dims.x, vec![2, 3, 1, 9]);
        assert_eq!(dims.w, vec![4, 3, 1, 3]);
        assert_eq!(dims.y, vec![2, 4, 1, 9]);
        assert_eq!(dims.pad, vec![0, 1]);
        assert_eq!(dims.stride, vec![1, 1]);
        assert_eq!(packed_strides(&dims.x), vec![27, 9, 9, 1]);
    }

    #[test]
    fn only_exact_cases_are_eligible() {
        // asymmetric padding: the own kernels
        let (geo, ones) =
            geometry(Layout::ChannelsFirst, &[1, 1, 5, 5], &[1, 1, 2, 2], &[1, 1, 5, 5], &[0, 0], &[1, 1]);
        assert!(eligible(&geo, &params(Layout::ChannelsFirst, &ones, &[0, 0], &[1, 1])).is_none());
        // ChannelsLast, symmetric: cuDNN, NHWC, with the same logical dims as ChannelsFirst
        let (geo, ones) = geometry(Layout::ChannelsLast, &[1, 5, 5, 2], &[3, 3, 2, 4], &[1, 3, 3, 4], &[0, 0], &[0, 0]);
        let dims = eligible(&geo, &params(Layout::ChannelsLast, &ones, &[0, 0], &[0, 0])).unwrap();
        assert!(dims.channels_last);
        assert_eq!(
            (dims.x.clone(), dims.w.clone(), dims.y.clone()),
            (vec![1, 2, 5, 5], vec![4, 2, 3, 3], vec![1, 4, 3, 3])
        );
        assert_eq!(tensor_strides(&dims.x, true), vec![50, 1, 10, 2]);
        assert_eq!(channels_last_kernel_shape(&geo), vec![3, 3, 2, 4]);
        // ChannelsLast with asymmetric padding: the own kernels
        let (geo, ones) = geometry(Layout::ChannelsLast, &[1, 5, 5, 2], &[2, 2, 2, 4], &[1, 5, 5, 4], &[0, 0], &[1, 1]);
        assert!(eligible(&geo, &params(Layout::ChannelsLast, &ones, &[0, 0], &[1, 1])).is_none());
        // an empty input (zero channels) cannot be described
        let (geo, ones) =
            geometry(Layout::ChannelsFirst, &[1, 0, 4, 4, 4], &[2, 0, 1, 1, 1], &[1, 2, 4, 4, 4], &[0; 3], &[0; 3]);
        assert!(eligible(&geo, &params(Layout::ChannelsFirst, &ones, &[0; 3], &[0; 3])).is_none());
        // 3-d, symmetric: cuDNN
        let (geo, ones) =
            geometry(Layout::ChannelsFirst, &[1, 2, 4, 4, 4], &[2, 2, 3, 3, 3], &[1, 2, 4, 4, 4], &[1; 3], &[1; 3]);
        let dims = eligible(&geo, &params(Layout::ChannelsFirst, &ones, &[1; 3], &[1; 3])).unwrap();
        assert_eq!(dims.x.len(), 5);
        assert_eq!(dims.pad, vec![1, 1, 1]);
    }

    /// The host twin of `copy_*` over the views [`permutation`] builds: walks the destination
    /// space row-major and reads the source through its strides.
    fn host_permute(src: &[u32], src_shape: &[usize], perm: &[usize]) -> (Vec<usize>, Vec<u32>) {
        let (shape, strides) = permutation(src_shape, perm);
        let n: usize = shape.iter().product();
        let out = (0..n)
            .map(|mut linear| {
                let mut offset = 0isize;
                for (&dim, &stride) in shape.iter().zip(&strides).rev() {
                    offset += (linear % dim) as isize * stride;
                    linear /= dim;
                }
                src[offset as usize]
            })
            .collect();
        (shape, out)
    }

    #[test]
    fn channels_last_kernel_becomes_an_nhwc_filter_and_back() {
        // (kh, kw, C/G, O) = (2, 2, 3, 2); element value = hwco digits.
        let shape = [2, 2, 3, 2];
        let mut src = Vec::new();
        for h in 0..2u32 {
            for w in 0..2u32 {
                for c in 0..3u32 {
                    for o in 0..2u32 {
                        src.push(1000 * h + 100 * w + 10 * c + o);
                    }
                }
            }
        }
        assert_eq!(to_nhwc_filter(2), vec![3, 0, 1, 2]);
        let (nhwc_shape, nhwc) = host_permute(&src, &shape, &to_nhwc_filter(2));
        assert_eq!(nhwc_shape, vec![2, 2, 2, 3]);
        let expected: Vec<u32> = vec![
            0, 10, 20, 100, 110, 120, 1000, 1010, 1020, 1100, 1110, 1120, // o = 0
            1, 11, 21, 101, 111, 121, 1001, 1011, 1021, 1101, 1111, 1121, // o = 1
        ];
        assert_eq!(nhwc, expected);
        assert_eq!(from_nhwc_filter(2), vec![1, 2, 3, 0]);
        let (back_shape, back) = host_permute(&nhwc, &nhwc_shape, &from_nhwc_filter(2));
        assert_eq!(back_shape, shape.to_vec());
        assert_eq!(back, src);
    }

    #[test]
    fn one_d_and_three_d_filter_permutations() {
        // 1-d: (kw, C/G, O) = (3, 1, 2) -> (O, kw, C/G) = (2, 3, 1).
        let (shape, out) = host_permute(&[0, 1, 10, 11, 20, 21], &[3, 1, 2], &to_nhwc_filter(1));
        assert_eq!(shape, vec![2, 3, 1]);
        assert_eq!(out, vec![0, 10, 20, 1, 11, 21]);
        // 3-d round trip over (2, 1, 2, 2, 3).
        let src: Vec<u32> = (0..24).collect();
        let (s, nhwc) = host_permute(&src, &[2, 1, 2, 2, 3], &to_nhwc_filter(3));
        assert_eq!(s, vec![3, 2, 1, 2, 2]);
        // element (o=1, d=1, h=0, w=1, c=0) is source (1, 0, 1, 0, 1) = 12 + 6 + 1
        assert_eq!(nhwc[((2 + 1) * 2 + 1) * 2], 19);
        let (s, back) = host_permute(&nhwc, &s, &from_nhwc_filter(3));
        assert_eq!((s, back), (vec![2, 1, 2, 2, 3], src));
    }

    #[test]
    fn statuses_are_classified() {
        assert!(matches!(
            classify("conv", "x", CudnnError(cudnnStatus_t::CUDNN_STATUS_NOT_SUPPORTED)),
            Failure::Unsupported
        ));
        match classify(
            "conv",
            "forward",
            CudnnError(cudnnStatus_t::CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED),
        ) {
            Failure::Error(e) => {
                assert_eq!(e.kind, ErrorKind::OutOfMemory);
                assert!(e.message.starts_with("conv: cuDNN forward failed"), "{}", e.message);
            }
            Failure::Unsupported => panic!("an allocation failure is not a fallback"),
        }
    }
}
