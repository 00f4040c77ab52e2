//! Window geometry of convolution and pooling, and the argument checks of both, shared by
//! every backend so that all of them accept the same calls and refuse the others with the
//! same messages.
//!
//! A sweep is normalised to three spatial dims by prepending unit dims (input 1, window 1,
//! stride 1, dilation 1, no padding, output 1), so a kernel can have one fixed loop nest for
//! 1-d, 2-d and 3-d instead of three. How a backend walks the geometry (its loop nests, index
//! arithmetic, launch layout) stays in the backend.

use crate::{
    BackendError, ConvParams, Layout, PoolParams,
    shape::{conv_output_len, fmt_shape},
};

/// The checked geometry of one window sweep (convolution or pooling), normalised to three
/// spatial dims (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowGeometry {
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
    /// Output length per dim ([`conv_output_len`]).
    pub output: [usize; 3],
    /// Number of spatial dims actually given (1 to 3).
    pub rank: usize,
}

impl WindowGeometry {
    /// Checks the per-dim parameters of a sweep over `input` (1 to 3 dims; every slice has one
    /// entry per dim, lengths and steps are ≥ 1) and computes the output lengths. The message
    /// of an error names the offending parameter; the caller prefixes the kernel.
    ///
    /// Besides [`conv_output_len`]'s conditions, the padded input, the dilated window and the
    /// number of output positions must fit in `usize`, so that a backend can index with
    /// unchecked arithmetic afterwards.
    pub fn new(
        input: &[usize],
        window: &[usize],
        stride: &[usize],
        dilation: &[usize],
        pad_before: &[usize],
        pad_after: &[usize],
    ) -> Result<WindowGeometry, String> {
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
        let mut geometry = WindowGeometry {
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
            // `conv_output_len` adds and multiplies unchecked; rule out overflow first so that
            // absurd parameters are an error, not a wrap-around or a panic.
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

    /// Number of input positions (the caller's tensor holds them, so this cannot overflow).
    pub fn input_len(&self) -> usize {
        self.input.iter().product()
    }

    /// Number of output positions (checked in [`new`](Self::new)).
    pub fn output_len(&self) -> usize {
        self.output.iter().product()
    }

    /// Number of taps of the window (a live kernel tensor holds them, or a pooling window
    /// whose output exists; saturating so that no input can make it panic).
    pub fn tap_count(&self) -> usize {
        self.window.iter().fold(1usize, |acc, &w| acc.saturating_mul(w))
    }
}

/// Splits the input shape `x` (named `name` in the message) of a convolution or pooling into
/// batch, channels and spatial dims by `layout`, after checking its rank (3 to 5).
fn split_input<'a>(name: &str, x: &'a [usize], layout: Layout) -> Result<(usize, usize, &'a [usize]), String> {
    let rank = x.len();
    if !(3..=5).contains(&rank) {
        return Err(format!(
            "`{name}` {} must have rank 3, 4 or 5 (batch, channels and 1 to 3 spatial dims)",
            fmt_shape(x)
        ));
    }
    Ok(match layout {
        Layout::ChannelsFirst => (x[0], x[1], &x[2..]),
        Layout::ChannelsLast => (x[0], x[rank - 1], &x[1..rank - 1]),
    })
}

/// The checked shapes of one convolution ([`Backend::conv`](crate::Backend::conv) and its two
/// backward kernels): batch, channels, groups and the spatial [`WindowGeometry`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Channel position of input, output and kernel.
    pub layout: Layout,
    /// Batch size B.
    pub batch: usize,
    /// Input channels C.
    pub channels: usize,
    /// Output channels O.
    pub out_channels: usize,
    /// Feature groups G (≥ 1, dividing both C and O).
    pub groups: usize,
    /// The spatial sweep of the kernel over the input.
    pub window: WindowGeometry,
}

impl ConvGeometry {
    /// Validates the input shape `x`, kernel shape `k` and output shape `y` of a convolution
    /// against `params`: ranks 3 to 5 and equal, groups ≥ 1 dividing both channel counts, the
    /// kernel's input channels equal to C / G, the [`WindowGeometry`] of the spatial dims, and
    /// `y` equal to the shape they give. `names` are the calling kernel's names for `x`, `k`
    /// and `y` (the backward kernels call with the gradient's shapes in those places), and
    /// every error is an `InvalidArgument` prefixed with `kernel`.
    pub fn new(
        kernel: &str,
        names: [&str; 3],
        x: &[usize],
        k: &[usize],
        y: &[usize],
        params: &ConvParams<'_>,
    ) -> Result<ConvGeometry, BackendError> {
        let [xn, kn, yn] = names;
        let invalid = |message: String| BackendError::invalid(format!("{kernel}: {message}"));
        let (batch, channels, x_spatial) = split_input(xn, x, params.layout).map_err(invalid)?;
        let rank = x.len();
        if k.len() != rank {
            return Err(invalid(format!("`{kn}` {} must have rank {rank} like `{xn}` {}", fmt_shape(k), fmt_shape(x))));
        }
        let spatial = rank - 2;
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
        let window = WindowGeometry::new(
            x_spatial,
            k_spatial,
            &params.strides,
            &params.dilation,
            &params.pad_before,
            &params.pad_after,
        )
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

    /// Input channels per group, C / G.
    pub fn group_in(&self) -> usize {
        self.channels / self.groups
    }

    /// Output channels per group, O / G.
    pub fn group_out(&self) -> usize {
        self.out_channels / self.groups
    }
}

/// The checked shapes of one pooling ([`Backend::pool`](crate::Backend::pool) and
/// [`Backend::pool_backward`](crate::Backend::pool_backward)): batch, channels and the spatial
/// [`WindowGeometry`] (dilation 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolGeometry {
    /// Channel position of input and output.
    pub layout: Layout,
    /// Batch size B.
    pub batch: usize,
    /// Channels C (the same in input and output).
    pub channels: usize,
    /// The spatial sweep of the pooling window over the input.
    pub window: WindowGeometry,
}

impl PoolGeometry {
    /// Validates the input shape `x` and the output shape `y` (named `y_name` in messages: the
    /// output, or the output gradient of the backward kernel) against `params`: rank 3 to 5,
    /// the [`WindowGeometry`] of the spatial dims, and `y` equal to the shape they give. Every
    /// error is an `InvalidArgument` prefixed with `kernel`.
    pub fn new(
        kernel: &str,
        y_name: &str,
        x: &[usize],
        y: &[usize],
        params: &PoolParams<'_>,
    ) -> Result<PoolGeometry, BackendError> {
        let invalid = |message: String| BackendError::invalid(format!("{kernel}: {message}"));
        let (batch, channels, x_spatial) = split_input("x", x, params.layout).map_err(invalid)?;
        let dilation = vec![1; x_spatial.len()];
        let window = WindowGeometry::new(
            x_spatial,
            &params.window,
            &params.strides,
            &dilation,
            &params.pad_before,
            &params.pad_after,
        )
        .map_err(invalid)?;
        let expected: Vec<usize> = match params.layout {
            Layout::ChannelsFirst => [batch, channels].iter().chain(window.output_dims()).copied().collect(),
            Layout::ChannelsLast => [batch].iter().chain(window.output_dims()).chain([&channels]).copied().collect(),
        };
        if y != expected.as_slice() {
            return Err(invalid(format!(
                "`{y_name}` has shape {} but `x` {} with window {:?}, strides {:?} and padding {:?}/{:?} gives {}",
                fmt_shape(y),
                fmt_shape(x),
                params.window.as_slice(),
                params.strides.as_slice(),
                params.pad_before.as_slice(),
                params.pad_after.as_slice(),
                fmt_shape(&expected)
            )));
        }
        Ok(PoolGeometry { layout: params.layout, batch, channels, window })
    }

    /// The checks of [`Backend::pool_backward`](crate::Backend::pool_backward): [`new`](Self::new)
    /// on the input `x` and the output gradient `dy`, then the input gradient `dx` must have
    /// `x`'s shape. Errors are prefixed with `pool_backward`.
    pub fn backward(
        x: &[usize],
        dy: &[usize],
        dx: &[usize],
        params: &PoolParams<'_>,
    ) -> Result<PoolGeometry, BackendError> {
        let geometry = PoolGeometry::new("pool_backward", "dy", x, dy, params)?;
        if dx != x {
            return Err(BackendError::invalid(format!(
                "pool_backward: `dx` has shape {} but `x` has {}; they must be equal",
                fmt_shape(dx),
                fmt_shape(x)
            )));
        }
        Ok(geometry)
    }
}

#[cfg(test)]
mod tests {
    use abi_stable::std_types::RSlice;

    use super::*;

    /// Convolution parameters with `[strides, dilation, pad_before, pad_after]`.
    fn params<'a>(layout: Layout, groups: usize, [s, d, pb, pa]: [&'a [usize]; 4]) -> ConvParams<'a> {
        let r = RSlice::from_slice;
        ConvParams { layout, strides: r(s), dilation: r(d), pad_before: r(pb), pad_after: r(pa), groups }
    }

    #[test]
    fn window_normalises_to_three_dims() {
        let w = WindowGeometry::new(&[7], &[3], &[2], &[1], &[1], &[2]).unwrap();
        assert_eq!(w.input, [1, 1, 7]);
        assert_eq!(w.window, [1, 1, 3]);
        assert_eq!(w.pad_before, [0, 0, 1]);
        assert_eq!(w.pad_after, [0, 0, 2]);
        assert_eq!(w.output, [1, 1, 4]);
        assert_eq!(w.output_dims(), &[4]);
        assert_eq!((w.rank, w.input_len(), w.output_len(), w.tap_count()), (1, 7, 4, 3));
        let w = WindowGeometry::new(&[4, 5, 6], &[1, 2, 3], &[1, 1, 1], &[1, 1, 1], &[0; 3], &[0; 3]).unwrap();
        assert_eq!((w.output, w.input_len(), w.output_len(), w.tap_count()), ([4, 4, 4], 120, 64, 6));
        // A padded input shorter than the window gives an empty output, not an error.
        assert_eq!(WindowGeometry::new(&[2], &[3], &[1], &[1], &[0], &[0]).unwrap().output_len(), 0);
    }

    #[test]
    fn window_errors_name_the_parameter() {
        let err = |input: &[usize], w: &[usize], s: &[usize], d: &[usize], pb: &[usize], pa: &[usize]| {
            WindowGeometry::new(input, w, s, d, pb, pa).unwrap_err()
        };
        assert_eq!(err(&[], &[], &[], &[], &[], &[]), "0 spatial dims given; 1 to 3 are supported");
        assert_eq!(
            err(&[7, 7], &[3], &[1, 1], &[1, 1], &[0, 0], &[0, 0]),
            "window [3] has 1 entries for 2 spatial dims"
        );
        assert_eq!(err(&[7], &[3], &[0], &[1], &[0], &[0]), "dim 0: kernel 3, stride 0 and dilation 1 must be >= 1");
        assert!(err(&[usize::MAX], &[1], &[1], &[1], &[1], &[0]).contains("overflow"));
        assert!(err(&[8], &[usize::MAX], &[1], &[2], &[0], &[0]).contains("overflow"));
        let big = usize::MAX / 2;
        assert_eq!(
            err(&[big, 3], &[1, 1], &[1, 1], &[1, 1], &[0, 0], &[0, 0]),
            format!("output dims [{big}, 3] overflow")
        );
    }

    #[test]
    fn conv_geometry_in_both_layouts() {
        // x (B=2, 5, 9, C=6), kernel (2, 3, C/G=2, O=9), G=3: dim 0 pads to 6 under a dilated
        // span of 3, giving 4; dim 1 pads to 10 under a span of 3 at stride 2, giving 4.
        let last = params(Layout::ChannelsLast, 3, [&[1, 2], &[2, 1], &[0, 1], &[1, 0]]);
        let geo = ConvGeometry::new("conv", ["x", "kernel", "y"], &[2, 5, 9, 6], &[2, 3, 2, 9], &[2, 4, 4, 9], &last)
            .unwrap();
        assert_eq!((geo.layout, geo.batch, geo.channels, geo.out_channels, geo.groups), (last.layout, 2, 6, 9, 3));
        assert_eq!((geo.group_in(), geo.group_out()), (2, 3));
        assert_eq!(geo.window, WindowGeometry::new(&[5, 9], &[2, 3], &[1, 2], &[2, 1], &[0, 1], &[1, 0]).unwrap());
        let first = params(Layout::ChannelsFirst, 1, [&[1], &[1], &[0], &[0]]);
        let geo = ConvGeometry::new("conv", ["x", "kernel", "y"], &[2, 3, 8], &[4, 3, 3], &[2, 4, 6], &first).unwrap();
        assert_eq!((geo.batch, geo.channels, geo.out_channels, geo.window.output_dims()), (2, 3, 4, &[6][..]));
    }

    #[test]
    fn conv_validation_messages() {
        let p = params(Layout::ChannelsFirst, 1, [&[1], &[1], &[0], &[0]]);
        let names = ["x", "kernel", "out"];
        let message = |x: &[usize], k: &[usize], y: &[usize], p: &ConvParams<'_>| {
            let e = ConvGeometry::new("conv", names, x, k, y, p).unwrap_err();
            assert_eq!(e.kind, crate::ErrorKind::InvalidArgument);
            e.message
        };
        assert_eq!(
            message(&[2, 3, 8], &[4, 3, 3], &[2, 4, 5], &p),
            "conv: `out` has shape (2, 4, 5) but `x` (2, 3, 8) and `kernel` (4, 3, 3) give (2, 4, 6)"
        );
        assert_eq!(
            message(&[2, 3], &[4, 3], &[2, 4], &p),
            "conv: `x` (2, 3) must have rank 3, 4 or 5 (batch, channels and 1 to 3 spatial dims)"
        );
        assert_eq!(
            message(&[2, 3, 8], &[4, 3], &[2, 4, 6], &p),
            "conv: `kernel` (4, 3) must have rank 3 like `x` (2, 3, 8)"
        );
        assert_eq!(
            message(&[2, 3, 8], &[4, 2, 3], &[2, 4, 6], &p),
            "conv: `kernel` (4, 2, 3) expects 2 input channels but `x` (2, 3, 8) has 3"
        );
        let g0 = params(Layout::ChannelsFirst, 0, [&[1], &[1], &[0], &[0]]);
        assert_eq!(message(&[2, 3, 8], &[4, 3, 3], &[2, 4, 6], &g0), "conv: groups must be >= 1, got 0");
        let g2 = params(Layout::ChannelsFirst, 2, [&[1], &[1], &[0], &[0]]);
        assert_eq!(
            message(&[2, 3, 8], &[4, 1, 3], &[2, 4, 6], &g2),
            "conv: `x` (2, 3, 8) has 3 channels, which groups 2 does not divide"
        );
        assert_eq!(
            message(&[2, 4, 8], &[3, 2, 3], &[2, 3, 6], &g2),
            "conv: `kernel` (3, 2, 3) has 3 output channels, which groups 2 does not divide"
        );
        assert_eq!(
            message(&[2, 4, 8], &[4, 1, 3], &[2, 4, 6], &g2),
            "conv: `kernel` (4, 1, 3) expects 1 input channels per group (groups 2) but `x` (2, 4, 8) has 4"
        );
        let two = params(Layout::ChannelsFirst, 1, [&[1, 1], &[1], &[0], &[0]]);
        assert_eq!(
            message(&[2, 3, 8], &[4, 3, 3], &[2, 4, 6], &two),
            "conv: strides [1, 1] has 2 entries for 1 spatial dims"
        );
        let big = params(Layout::ChannelsFirst, 1, [&[1], &[1], &[usize::MAX], &[0]]);
        assert!(message(&[2, 3, 8], &[4, 3, 3], &[2, 4, 6], &big).contains("overflow"));
    }

    /// Max pooling parameters with `[window, strides, pad_before, pad_after]`.
    fn pool_params<'a>(layout: Layout, [w, s, pb, pa]: [&'a [usize]; 4]) -> PoolParams<'a> {
        let r = RSlice::from_slice;
        PoolParams {
            mode: crate::PoolMode::Max,
            layout,
            window: r(w),
            strides: r(s),
            pad_before: r(pb),
            pad_after: r(pa),
        }
    }

    #[test]
    fn pool_geometry_in_both_layouts() {
        // x (2, 5, 4, 3): outputs floor((5+1-2)/2)+1 = 3 and floor((4+2-2)/1)+1 = 5.
        let last = pool_params(Layout::ChannelsLast, [&[2, 2], &[2, 1], &[0, 1], &[1, 1]]);
        let geo = PoolGeometry::new("pool", "out", &[2, 5, 4, 3], &[2, 3, 5, 3], &last).unwrap();
        assert_eq!((geo.layout, geo.batch, geo.channels), (Layout::ChannelsLast, 2, 3));
        assert_eq!(geo.window, WindowGeometry::new(&[5, 4], &[2, 2], &[2, 1], &[1, 1], &[0, 1], &[1, 1]).unwrap());
        let first = pool_params(Layout::ChannelsFirst, [&[3], &[1], &[1], &[1]]);
        let geo = PoolGeometry::backward(&[2, 4, 7], &[2, 4, 7], &[2, 4, 7], &first).unwrap();
        assert_eq!((geo.batch, geo.channels, geo.window.output_dims()), (2, 4, &[7][..]));
    }

    #[test]
    fn pool_validation_messages() {
        let p = pool_params(Layout::ChannelsFirst, [&[2, 2], &[2, 2], &[0, 0], &[0, 0]]);
        let message = |x: &[usize], y: &[usize], p: &PoolParams<'_>| {
            let e = PoolGeometry::new("pool", "out", x, y, p).unwrap_err();
            assert_eq!(e.kind, crate::ErrorKind::InvalidArgument);
            e.message
        };
        assert_eq!(
            message(&[2, 3, 4, 4], &[2, 3, 3, 2], &p),
            "pool: `out` has shape (2, 3, 3, 2) but `x` (2, 3, 4, 4) with window [2, 2], strides [2, 2] and \
             padding [0, 0]/[0, 0] gives (2, 3, 2, 2)"
        );
        assert_eq!(message(&[2, 3, 4], &[2, 3, 2], &p), "pool: window [2, 2] has 2 entries for 1 spatial dims");
        assert_eq!(
            message(&[2, 3], &[2, 3], &p),
            "pool: `x` (2, 3) must have rank 3, 4 or 5 (batch, channels and 1 to 3 spatial dims)"
        );
        let zero = pool_params(Layout::ChannelsFirst, [&[2, 2], &[0, 2], &[0, 0], &[0, 0]]);
        assert_eq!(
            message(&[2, 3, 4, 4], &[2, 3, 2, 2], &zero),
            "pool: dim 0: kernel 2, stride 0 and dilation 1 must be >= 1"
        );
        let e = PoolGeometry::backward(&[2, 3, 4, 4], &[2, 3, 3, 2], &[2, 3, 4, 4], &p).unwrap_err();
        assert!(e.message.starts_with("pool_backward: `dy` has shape (2, 3, 3, 2)"), "{e:?}");
        let e = PoolGeometry::backward(&[2, 3, 4, 4], &[2, 3, 2, 2], &[2, 3, 4, 5], &p).unwrap_err();
        assert_eq!(
            (e.kind, e.message.as_str()),
            (
                crate::ErrorKind::InvalidArgument,
                "pool_backward: `dx` has shape (2, 3, 4, 5) but `x` has (2, 3, 4, 4); they must be equal"
            )
        );
    }
}
