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
//! None uses atomics, so all three are deterministic. The validation mirrors the CPU backend's
//! (`backend-cpu/src/ops/conv.rs` and `window.rs`) condition for condition and message for
//! message; [`Window`] is the same geometry, also used by pooling.

pub(crate) mod cudnn;

use cudarc::driver::{DeviceRepr, LaunchConfig};
use keras_backend_api::{BackendError, ConvParams, DType, Layout, TensorRef, shape::conv_output_len};

use crate::{ConvPath, Device, Result, device::Kernel, ops::dtype_suffix};

const MODULE: &str = "conv";

/// Forward convolution: `out = conv(x, kernel)` as [`ConvParams`] defines it.
pub fn conv(d: &Device, x: TensorRef<'_>, k: TensorRef<'_>, out: TensorRef<'_>, p: &ConvParams<'_>) -> Result<()> {
    const KERNEL: &str = "conv";
    refuse_alias(KERNEL, &[x.buffer, k.buffer], out.buffer)?;
    let (xo, ko, yo) = (d.operand(KERNEL, "x", x)?, d.operand(KERNEL, "kernel", k)?, d.operand(KERNEL, "out", out)?);
    let geo = ConvGeometry::new(KERNEL, ["x", "kernel", "out"], &x.shape, &k.shape, &out.shape, p)?;
    let dtype = float_dtype(KERNEL, &["x", "kernel", "out"], &[xo.dtype, ko.dtype, yo.dtype])?;
    if yo.len == 0 {
        return Ok(());
    }
    if d.conv_path == ConvPath::Cudnn && cudnn::conv(d, &geo, p, dtype, cudnn::Pass::Forward, &xo, &ko, &yo)? {
        return Ok(());
    }
    let raw = geo.raw();
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
    refuse_alias(KERNEL, &[dy.buffer, k.buffer], dx.buffer)?;
    let (dyo, ko, dxo) = (d.operand(KERNEL, "dy", dy)?, d.operand(KERNEL, "kernel", k)?, d.operand(KERNEL, "out", dx)?);
    let geo = ConvGeometry::new(KERNEL, ["dx", "kernel", "dy"], &dx.shape, &k.shape, &dy.shape, p)?;
    let dtype = float_dtype(KERNEL, &["dy", "kernel", "dx"], &[dyo.dtype, ko.dtype, dxo.dtype])?;
    if dxo.len == 0 {
        return Ok(());
    }
    if d.conv_path == ConvPath::Cudnn && cudnn::conv(d, &geo, p, dtype, cudnn::Pass::BackwardData, &dxo, &ko, &dyo)? {
        return Ok(());
    }
    let raw = geo.raw();
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
    refuse_alias(KERNEL, &[x.buffer, dy.buffer], dk.buffer)?;
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
    let raw = geo.raw();
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

/// The CPU backend's rule: a convolution or pooling never writes a buffer it reads.
pub(crate) fn refuse_alias(
    kernel: &str,
    inputs: &[keras_backend_api::BufferId],
    out: keras_backend_api::BufferId,
) -> Result<()> {
    if inputs.contains(&out) {
        return Err(BackendError::invalid(format!(
            "{kernel}: the output buffer {} is also an input; this kernel cannot work in place",
            out.0
        )));
    }
    Ok(())
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

/// A shape written as a tuple, `(2, 7, 7, 3)`, for error messages (the CPU's `fmt_shape`).
pub(crate) fn fmt_shape(shape: &[usize]) -> String {
    match shape {
        [d] => format!("({d},)"),
        _ => format!("({})", shape.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")),
    }
}

/// The geometry of one window sweep, normalised to three spatial dims by prepending unit
/// dims (input 1, window 1, stride 1, dilation 1, no padding, output 1): the CPU's `Window`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    /// Input length per dim.
    pub input: [usize; 3],
    /// Window (kernel) extent per dim.
    pub window: [usize; 3],
    /// Step between output positions per dim.
    pub stride: [usize; 3],
    /// Spacing between taps per dim.
    pub dilation: [usize; 3],
    /// Implicit zeros before each dim.
    pub pad_before: [usize; 3],
    /// Implicit zeros after each dim.
    pub pad_after: [usize; 3],
    /// Output length per dim.
    pub output: [usize; 3],
    /// Number of spatial dims actually given (1 to 3).
    pub rank: usize,
}

impl Window {
    /// Checks the per-dim parameters of a sweep over `input` exactly as the CPU's
    /// `Window::new` does (same conditions, same messages; the caller prefixes the kernel).
    pub fn new(
        input: &[usize],
        window: &[usize],
        stride: &[usize],
        dilation: &[usize],
        pad_before: &[usize],
        pad_after: &[usize],
    ) -> std::result::Result<Window, String> {
        let rank = input.len();
        if !(1..=3).contains(&rank) {
            return Err(format!("{rank} spatial dims given; 1 to 3 are supported"));
        }
        for (name, values) in [
            ("window", window),
            ("strides", stride),
            ("dilation", dilation),
            ("pad_before", pad_before),
            ("pad_after", pad_after),
        ] {
            if values.len() != rank {
                return Err(format!("{name} {values:?} has {} entries for {rank} spatial dims", values.len()));
            }
        }
        let lead = 3 - rank;
        let mut geometry = Window {
            input: [1; 3],
            window: [1; 3],
            stride: [1; 3],
            dilation: [1; 3],
            pad_before: [0; 3],
            pad_after: [0; 3],
            output: [1; 3],
            rank,
        };
        for d in 0..rank {
            let padded = input[d].checked_add(pad_before[d]).and_then(|v| v.checked_add(pad_after[d]));
            let span = window[d].checked_sub(1).and_then(|k| k.checked_mul(dilation[d])?.checked_add(1));
            if padded.is_none() || (window[d] >= 1 && span.is_none()) {
                return Err(format!(
                    "dim {d}: input {}, window {}, dilation {} and padding ({}, {}) overflow",
                    input[d], window[d], dilation[d], pad_before[d], pad_after[d]
                ));
            }
            let out = conv_output_len(input[d], window[d], stride[d], dilation[d], pad_before[d], pad_after[d])
                .map_err(|e| format!("dim {d}: {e}"))?;
            let n = lead + d;
            geometry.input[n] = input[d];
            geometry.window[n] = window[d];
            geometry.stride[n] = stride[d];
            geometry.dilation[n] = dilation[d];
            geometry.pad_before[n] = pad_before[d];
            geometry.pad_after[n] = pad_after[d];
            geometry.output[n] = out;
        }
        if geometry.output.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).is_none() {
            return Err(format!("output dims {:?} overflow", geometry.output_dims()));
        }
        Ok(geometry)
    }

    /// The output lengths of the given dims (without the normalising unit dims).
    pub fn output_dims(&self) -> &[usize] {
        &self.output[3 - self.rank..]
    }

    /// Number of input positions (a live tensor holds them, so this does not overflow).
    pub fn input_len(&self) -> usize {
        self.input.iter().product()
    }

    /// Number of output positions (checked in [`Window::new`]).
    pub fn output_len(&self) -> usize {
        self.output.iter().product()
    }

    /// Number of taps (a live kernel tensor holds them, or a pooling window whose output
    /// exists; saturating so that no input can make it panic).
    pub fn taps(&self) -> usize {
        self.window.iter().fold(1usize, |acc, &w| acc.saturating_mul(w))
    }
}

/// The checked shapes of one convolution: the CPU's `ConvGeometry`.
#[derive(Debug, Clone)]
pub(crate) struct ConvGeometry {
    pub layout: Layout,
    pub batch: usize,
    pub channels: usize,
    pub out_channels: usize,
    pub groups: usize,
    pub window: Window,
}

impl ConvGeometry {
    /// Validates the input shape `x`, kernel shape `k` and output shape `y` against `params`,
    /// with the CPU's conditions and messages. `names` are the calling kernel's names for the
    /// three, in that order.
    pub fn new(
        kernel: &str,
        names: [&str; 3],
        x: &[usize],
        k: &[usize],
        y: &[usize],
        params: &ConvParams<'_>,
    ) -> Result<Self> {
        let [xn, kn, yn] = names;
        let invalid = |message: String| BackendError::invalid(format!("{kernel}: {message}"));
        let rank = x.len();
        if !(3..=5).contains(&rank) {
            return Err(invalid(format!(
                "`{xn}` {} must have rank 3, 4 or 5 (batch, channels and 1 to 3 spatial dims)",
                fmt_shape(x)
            )));
        }
        if k.len() != rank {
            return Err(invalid(format!("`{kn}` {} must have rank {rank} like `{xn}` {}", fmt_shape(k), fmt_shape(x))));
        }
        let spatial = rank - 2;
        let (batch, channels, x_spatial) = match params.layout {
            Layout::ChannelsFirst => (x[0], x[1], &x[2..]),
            Layout::ChannelsLast => (x[0], x[rank - 1], &x[1..rank - 1]),
        };
        let (out_channels, group_in, k_spatial) = match params.layout {
            Layout::ChannelsFirst => (k[0], k[1], &k[2..]),
            Layout::ChannelsLast => (k[rank - 1], k[rank - 2], &k[..spatial]),
        };
        let groups = params.groups;
        if groups == 0 {
            return Err(invalid("groups must be >= 1, got 0".into()));
        }
        if channels % groups != 0 {
            return Err(invalid(format!(
                "`{xn}` {} has {channels} channels, which groups {groups} does not divide",
                fmt_shape(x)
            )));
        }
        if out_channels % groups != 0 {
            return Err(invalid(format!(
                "`{kn}` {} has {out_channels} output channels, which groups {groups} does not divide",
                fmt_shape(k)
            )));
        }
        if group_in != channels / groups {
            let per_group = if groups == 1 { String::new() } else { format!(" per group (groups {groups})") };
            return Err(invalid(format!(
                "`{kn}` {} expects {group_in} input channels{per_group} but `{xn}` {} has {channels}",
                fmt_shape(k),
                fmt_shape(x)
            )));
        }
        let window =
            Window::new(x_spatial, k_spatial, &params.strides, &params.dilation, &params.pad_before, &params.pad_after)
                .map_err(invalid)?;
        let expected: Vec<usize> = match params.layout {
            Layout::ChannelsFirst => [batch, out_channels].iter().chain(window.output_dims()).copied().collect(),
            Layout::ChannelsLast => {
                [batch].iter().chain(window.output_dims()).chain([&out_channels]).copied().collect()
            }
        };
        if y != expected.as_slice() {
            return Err(invalid(format!(
                "`{yn}` has shape {} but `{xn}` {} and `{kn}` {} give {}",
                fmt_shape(y),
                fmt_shape(x),
                fmt_shape(k),
                fmt_shape(&expected)
            )));
        }
        Ok(ConvGeometry { layout: params.layout, batch, channels, out_channels, groups, window })
    }

    /// Input channels per group.
    pub fn group_in(&self) -> usize {
        self.channels / self.groups
    }

    /// Output channels per group.
    pub fn group_out(&self) -> usize {
        self.out_channels / self.groups
    }

    /// The kernels' view of the geometry. Every count is the dim of a tensor that exists (or
    /// the output length, checked), so the `as i64` conversions are exact.
    pub fn raw(&self) -> ConvGeo {
        let w = &self.window;
        let i = |a: [usize; 3]| a.map(|v| v as i64);
        ConvGeo {
            batch: self.batch as i64,
            channels: self.channels as i64,
            out_channels: self.out_channels as i64,
            groups: self.groups as i64,
            group_in: self.group_in() as i64,
            group_out: self.group_out() as i64,
            input: i(w.input),
            window: i(w.window),
            stride: i(w.stride),
            dilation: i(w.dilation),
            pad: i(w.pad_before),
            output: i(w.output),
            in_len: w.input_len() as i64,
            out_len: w.output_len() as i64,
            taps: w.taps() as i64,
            channels_last: i64::from(self.layout == Layout::ChannelsLast),
        }
    }
}

/// The convolution geometry as the kernels take it. Mirrors `struct ConvGeo` in conv.cu
/// field for field (all `i64`, so C and Rust agree on the layout without padding).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConvGeo {
    /// Batch size B.
    pub batch: i64,
    /// Input channels C.
    pub channels: i64,
    /// Output channels O.
    pub out_channels: i64,
    /// Groups G.
    pub groups: i64,
    /// C / G.
    pub group_in: i64,
    /// O / G.
    pub group_out: i64,
    /// Input length per (normalised) spatial dim.
    pub input: [i64; 3],
    /// Kernel extent per dim.
    pub window: [i64; 3],
    /// Stride per dim.
    pub stride: [i64; 3],
    /// Dilation per dim.
    pub dilation: [i64; 3],
    /// Padding before each dim.
    pub pad: [i64; 3],
    /// Output length per dim.
    pub output: [i64; 3],
    /// Input positions (product of `input`).
    pub in_len: i64,
    /// Output positions (product of `output`).
    pub out_len: i64,
    /// Kernel taps (product of `window`).
    pub taps: i64,
    /// 1 for [`Layout::ChannelsLast`], 0 for [`Layout::ChannelsFirst`].
    pub channels_last: i64,
}

// SAFETY: plain `#[repr(C)]` data of `i64`s with the layout of `struct ConvGeo` in conv.cu.
unsafe impl DeviceRepr for ConvGeo {}

#[cfg(test)]
mod tests {
    use abi_stable::std_types::RSlice;

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
        let raw = geo.raw();
        assert_eq!(
            raw,
            ConvGeo {
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
        assert_eq!(std::mem::size_of::<ConvGeo>(), 28 * 8);
    }

    #[test]
    fn validation_messages_match_the_cpu() {
        let p = params(Layout::ChannelsFirst, &[1], &[1], &[0], &[0], 1);
        let names = ["x", "kernel", "out"];
        let e = ConvGeometry::new("conv", names, &[2, 3, 8], &[4, 3, 3], &[2, 4, 5], &p).unwrap_err();
        assert_eq!(
            e.message,
            "conv: `out` has shape (2, 4, 5) but `x` (2, 3, 8) and `kernel` (4, 3, 3) give (2, 4, 6)"
        );
        let e = ConvGeometry::new("conv", names, &[2, 3], &[4, 3], &[2, 4], &p).unwrap_err();
        assert!(e.message.contains("rank 3, 4 or 5"), "{}", e.message);
        let e = ConvGeometry::new("conv", names, &[2, 3, 8], &[4, 2, 3], &[2, 4, 6], &p).unwrap_err();
        assert!(e.message.contains("expects 2 input channels but `x` (2, 3, 8) has 3"), "{}", e.message);
        let g0 = params(Layout::ChannelsFirst, &[1], &[1], &[0], &[0], 0);
        let e = ConvGeometry::new("conv", names, &[2, 3, 8], &[4, 3, 3], &[2, 4, 6], &g0).unwrap_err();
        assert_eq!(e.message, "conv: groups must be >= 1, got 0");
        let two = params(Layout::ChannelsFirst, &[1, 1], &[1], &[0], &[0], 1);
        let e = ConvGeometry::new("conv", names, &[2, 3, 8], &[4, 3, 3], &[2, 4, 6], &two).unwrap_err();
        assert_eq!(e.message, "conv: strides [1, 1] has 2 entries for 1 spatial dims");
        let big = params(Layout::ChannelsFirst, &[1], &[1], &[usize::MAX], &[0], 1);
        let e = ConvGeometry::new("conv", names, &[2, 3, 8], &[4, 3, 3], &[2, 4, 6], &big).unwrap_err();
        assert!(e.message.contains("overflow"), "{}", e.message);
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
