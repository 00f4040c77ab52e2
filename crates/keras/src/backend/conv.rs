//! Convolution, pooling and resizing: `conv1d`, `conv2d`, `conv3d`, `atrous_conv2d`,
//! `separable_conv2d`, `deconv2d`, `pool2d`, `pool3d`, `resize_images`, `resize_volumes`.
//!
//! The semantics are the TensorFlow engine's: convolutions are cross-correlations (the kernel
//! is not flipped), and `same` padding is TensorFlow's rule, `out = ceil(n / s)` with the odd
//! padding cell after. Layouts follow `dim_ordering` (`None` means
//! [`image_dim_ordering`](super::image_dim_ordering)): `th` images are
//! `(batch, channels, spatial...)` with kernels `(out, in, k...)`, `tf` images are
//! `(batch, spatial..., channels)` with kernels `(k..., in, out)`.
//!
//! Keras's `image_shape`, `volume_shape` and `filter_shape` arguments are only hints for the
//! Theano engine; the shapes here come from the tensors, so those arguments are omitted.

use keras_backend_api::Layout;

pub use keras_backend_api::PoolMode;

use super::{config::image_dim_ordering, math::named, variables::ShapeSpec};
use crate::{
    config::ImageDimOrdering,
    error::{Error, Result},
    graph::{Dim, Tensor, shape_string},
    ops::{
        movement,
        nn::{self, ConvSpec, PoolSpec, join_image, output_len, split_image, split_kernel},
        special::late,
    },
};

/// How a convolution or pooling treats the borders (Keras's `border_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum BorderMode {
    /// No padding: only windows that lie inside the input, `out = floor((n - k) / s) + 1`.
    #[default]
    Valid,
    /// TensorFlow's `SAME`: `out = ceil(n / s)`; the `max((out - 1)·s + k - n, 0)` padding
    /// cells are split with the odd one after.
    Same,
    /// `k - 1` zeros on both sides of each spatial dim (Theano's `full`; convolutions only):
    /// every window that overlaps the input, `out = ceil((n + k - 1) / s)`.
    Full,
}

impl BorderMode {
    /// Every mode, in the order the error messages list them.
    pub const ALL: [BorderMode; 3] = [BorderMode::Valid, BorderMode::Same, BorderMode::Full];

    /// The Keras name: `valid`, `same` or `full`.
    pub const fn name(self) -> &'static str {
        match self {
            BorderMode::Valid => "valid",
            BorderMode::Same => "same",
            BorderMode::Full => "full",
        }
    }

    /// Parses a Keras name (`valid`, `same`, `full`).
    pub fn from_name(name: &str) -> Option<BorderMode> {
        BorderMode::ALL.into_iter().find(|m| m.name() == name)
    }

    /// `(before, after)` padding of a dim of length `len` swept by a window spanning `span`
    /// positions with `stride`; `None` while a size it needs is unknown.
    fn padding(self, len: Dim, span: Dim, stride: usize) -> Option<(usize, usize)> {
        match self {
            BorderMode::Valid => Some((0, 0)),
            BorderMode::Full => span.map(|k| (k - 1, k - 1)),
            BorderMode::Same => {
                let (n, k) = (len?, span?);
                let out = n.div_ceil(stride);
                // No output position, no padding: `(out - 1)·s` would count one position.
                if out == 0 {
                    return Some((0, 0));
                }
                // An overflow becomes a padding that the shape rule refuses as overflowing.
                let total = out
                    .saturating_sub(1)
                    .checked_mul(stride)
                    .and_then(|v| v.checked_add(k))
                    .map_or(usize::MAX, |v| v.saturating_sub(n));
                Some((total / 2, total - total / 2))
            }
        }
    }
}

fn layout_of(dim_ordering: Option<ImageDimOrdering>) -> Layout {
    match dim_ordering.unwrap_or_else(image_dim_ordering) {
        ImageDimOrdering::Th => Layout::ChannelsFirst,
        ImageDimOrdering::Tf => Layout::ChannelsLast,
    }
}

/// The inverse of [`layout_of`], for messages.
fn ordering_name(layout: Layout) -> &'static str {
    let ordering = match layout {
        Layout::ChannelsFirst => ImageDimOrdering::Th,
        Layout::ChannelsLast => ImageDimOrdering::Tf,
    };
    ordering.name()
}

/// `t` must have rank `rank`.
fn expect_rank(function: &str, name: &str, t: &Tensor, rank: usize, layout: Layout) -> Result<()> {
    if t.ndim() == rank {
        return Ok(());
    }
    Err(Error::graph(
        function,
        format!("`{name}` must be {rank}-D (dim_ordering '{}'), got {}", ordering_name(layout), t.describe()),
    ))
}

/// Every entry of `values` (strides, sizes, factors) must be at least 1.
fn expect_positive(function: &str, name: &str, values: &[usize]) -> Result<()> {
    if values.contains(&0) {
        return Err(Error::graph(function, format!("`{name}` {values:?} must be >= 1 in every dim")));
    }
    Ok(())
}

/// The padding of every spatial dim, or `None` while a size it depends on is unknown.
fn paddings(border: BorderMode, lens: &[Dim], spans: &[Dim], strides: &[usize]) -> Option<(Vec<usize>, Vec<usize>)> {
    let pads: Option<Vec<(usize, usize)>> =
        (0..strides.len()).map(|d| border.padding(lens[d], spans[d], strides[d])).collect();
    pads.map(|pads| pads.into_iter().unzip())
}

/// `probe`'s shape with the spatial dims that `border` fixes without knowing the kernel (`same`
/// gives `ceil(n / s)`) and the others unknown: the promise of a convolution or pooling built
/// once the sizes are known.
fn deferred_shape(probe: &Tensor, layout: Layout, border: BorderMode, lens: &[Dim], strides: &[usize]) -> Vec<Dim> {
    let mut dims = split_image(layout, probe.shape());
    dims.spatial = lens
        .iter()
        .zip(strides)
        .map(|(len, &s)| if border == BorderMode::Same { len.map(|n| n.div_ceil(s)) } else { None })
        .collect();
    join_image(layout, &dims)
}

/// One convolution call of a K function: everything but the tensors.
#[derive(Clone)]
struct ConvCall {
    function: &'static str,
    layout: Layout,
    strides: Vec<usize>,
    dilation: Vec<usize>,
    border: BorderMode,
    groups: usize,
}

impl ConvCall {
    fn spec(&self, (pad_before, pad_after): (Vec<usize>, Vec<usize>)) -> ConvSpec {
        ConvSpec {
            layout: self.layout,
            strides: self.strides.clone(),
            dilation: self.dilation.clone(),
            pad_before,
            pad_after,
            groups: self.groups,
        }
    }

    /// `x` convolved with `kernel`; built when the sizes the padding needs are known (at once,
    /// except for `same` on unknown spatial dims or an unknown kernel size).
    fn apply(&self, x: &Tensor, kernel: &Tensor) -> Result<Tensor> {
        let f = self.function;
        let n = self.strides.len();
        expect_positive(f, "strides", &self.strides)?;
        expect_positive(f, "dilation", &self.dilation)?;
        expect_rank(f, "x", x, n + 2, self.layout)?;
        expect_rank(f, "kernel", kernel, n + 2, self.layout)?;
        let lens = split_image(self.layout, x.shape()).spatial;
        let span = |k: usize, d: usize| {
            let span = k.saturating_sub(1).checked_mul(d).and_then(|v| v.checked_add(1));
            span.ok_or_else(|| Error::graph(f, format!("a kernel of {k} taps with dilation {d} overflows")))
        };
        let spans: Vec<Dim> = split_kernel(self.layout, kernel.shape())
            .spatial
            .iter()
            .zip(&self.dilation)
            .map(|(k, &d)| k.map(|k| span(k, d)).transpose())
            .collect::<Result<_>>()?;
        if let Some(pads) = paddings(self.border, &lens, &spans, &self.strides) {
            return named(f, nn::conv(x, kernel, self.spec(pads)));
        }
        // Checks dtypes, ranks and channels now; only the padding waits for the sizes.
        let probe = named(f, nn::conv(x, kernel, self.spec((vec![0; n], vec![0; n]))))?;
        let shape = deferred_shape(&probe, self.layout, self.border, &lens, &self.strides);
        let call = self.clone();
        late(f, &[x.clone(), kernel.clone()], shape, x.dtype(), move |t| call.apply(&t[0], &t[1]))
    }
}

/// 1-D convolution (cross-correlation) of `x` `(batch, steps, in)` with `kernel`
/// `(length, in, out)`, giving `(batch, new_steps, out)`. `border_mode` `same` pads as
/// TensorFlow; `full` pads `length - 1` on both sides.
pub fn conv1d(x: &Tensor, kernel: &Tensor, stride: usize, border_mode: BorderMode) -> Result<Tensor> {
    let call = ConvCall {
        function: "conv1d",
        layout: Layout::ChannelsLast,
        strides: vec![stride],
        dilation: vec![1],
        border: border_mode,
        groups: 1,
    };
    call.apply(x, kernel)
}

/// 2-D convolution (cross-correlation): `th` `x` `(batch, in, rows, cols)` with kernel
/// `(out, in, r, c)`, or `tf` `x` `(batch, rows, cols, in)` with kernel `(r, c, in, out)`.
/// `filter_dilation` `(d, d)` spaces the kernel taps `d` apart; as in TensorFlow it needs
/// equal values and `strides` `(1, 1)`. `border_mode` `full` pads `k - 1` on both sides (a
/// cross-correlation too: flip the kernel for Theano's full convolution).
pub fn conv2d(
    x: &Tensor,
    kernel: &Tensor,
    strides: (usize, usize),
    border_mode: BorderMode,
    dim_ordering: Option<ImageDimOrdering>,
    filter_dilation: (usize, usize),
) -> Result<Tensor> {
    const F: &str = "conv2d";
    if filter_dilation != (1, 1) {
        if filter_dilation.0 != filter_dilation.1 {
            return Err(Error::graph(F, format!("`filter_dilation` {filter_dilation:?} must have equal values")));
        }
        if strides != (1, 1) {
            return Err(Error::graph(
                F,
                format!(
                    "a dilated convolution (`filter_dilation` {filter_dilation:?}) needs `strides` (1, 1), got {strides:?}"
                ),
            ));
        }
    }
    let call = ConvCall {
        function: F,
        layout: layout_of(dim_ordering),
        strides: vec![strides.0, strides.1],
        dilation: vec![filter_dilation.0, filter_dilation.1],
        border: border_mode,
        groups: 1,
    };
    call.apply(x, kernel)
}

/// 3-D convolution (cross-correlation): `th` `x` `(batch, in, d1, d2, d3)` with kernel
/// `(out, in, k1, k2, k3)`, or `tf` `x` `(batch, d1, d2, d3, in)` with kernel
/// `(k1, k2, k3, in, out)`.
pub fn conv3d(
    x: &Tensor,
    kernel: &Tensor,
    strides: (usize, usize, usize),
    border_mode: BorderMode,
    dim_ordering: Option<ImageDimOrdering>,
) -> Result<Tensor> {
    let call = ConvCall {
        function: "conv3d",
        layout: layout_of(dim_ordering),
        strides: vec![strides.0, strides.1, strides.2],
        dilation: vec![1; 3],
        border: border_mode,
        groups: 1,
    };
    call.apply(x, kernel)
}

/// Atrous (dilated) 2-D convolution: [`conv2d`] with stride 1 and the kernel taps `rate` apart
/// on both axes (`rate = 1` is a plain `conv2d`).
pub fn atrous_conv2d(
    x: &Tensor,
    kernel: &Tensor,
    rate: usize,
    border_mode: BorderMode,
    dim_ordering: Option<ImageDimOrdering>,
) -> Result<Tensor> {
    let call = ConvCall {
        function: "atrous_conv2d",
        layout: layout_of(dim_ordering),
        strides: vec![1, 1],
        dilation: vec![rate, rate],
        border: border_mode,
        groups: 1,
    };
    call.apply(x, kernel)
}

/// Depthwise separable 2-D convolution. The depthwise step (with `strides` and `border_mode`)
/// convolves each input channel `ci` on its own with `depthwise_kernel` slice `m` into
/// intermediate channel `ci·M + m` (`M` = depth multiplier); the pointwise step is a 1×1
/// convolution of those `C·M` channels. Kernels: `tf` depthwise `(r, c, C, M)` and pointwise
/// `(1, 1, C·M, out)`; `th` depthwise `(M, C, r, c)` and pointwise `(out, C·M, 1, 1)`. Unlike
/// TensorFlow 1.0.1, `C·M > out` is allowed.
pub fn separable_conv2d(
    x: &Tensor,
    depthwise_kernel: &Tensor,
    pointwise_kernel: &Tensor,
    strides: (usize, usize),
    border_mode: BorderMode,
    dim_ordering: Option<ImageDimOrdering>,
) -> Result<Tensor> {
    const F: &str = "separable_conv2d";
    let layout = layout_of(dim_ordering);
    expect_rank(F, "x", x, 4, layout)?;
    expect_rank(F, "depthwise_kernel", depthwise_kernel, 4, layout)?;
    expect_rank(F, "pointwise_kernel", pointwise_kernel, 4, layout)?;
    let dk = depthwise_kernel.static_shape().ok_or_else(|| {
        Error::graph(F, format!("`depthwise_kernel` must have a known shape, got {}", depthwise_kernel.describe()))
    })?;
    let (channels, multiplier, taps) = match layout {
        Layout::ChannelsFirst => (dk[1], dk[0], [dk[2], dk[3]]),
        Layout::ChannelsLast => (dk[2], dk[3], [dk[0], dk[1]]),
    };
    if let Some(c) = split_image(layout, x.shape()).channels
        && c != channels
    {
        return Err(Error::graph(
            F,
            format!(
                "`depthwise_kernel` {} expects {channels} input channels but `x` {} has {c}",
                shape_string(depthwise_kernel.shape()),
                shape_string(x.shape())
            ),
        ));
    }
    let pointwise_taps = split_kernel(layout, pointwise_kernel.shape()).spatial;
    if pointwise_taps.iter().any(|&k| k != Some(1)) {
        return Err(Error::graph(
            F,
            format!("`pointwise_kernel` must be 1×1, got {}", shape_string(pointwise_kernel.shape())),
        ));
    }
    // A grouped convolution with one group per input channel: group ci's output channels are
    // ci·M .. ci·M + M, which is the depthwise kernel with (C, M) merged, C major.
    let merged = channels.checked_mul(multiplier).ok_or_else(|| {
        Error::graph(F, format!("`depthwise_kernel` {} is too large", shape_string(depthwise_kernel.shape())))
    })? as isize;
    let grouped = match layout {
        Layout::ChannelsLast => movement::reshape(depthwise_kernel, &[taps[0] as isize, taps[1] as isize, 1, merged]),
        Layout::ChannelsFirst => movement::reshape(
            &movement::permute(depthwise_kernel, &[1, 0, 2, 3])?,
            &[merged, 1, taps[0] as isize, taps[1] as isize],
        ),
    };
    let depthwise = ConvCall {
        function: F,
        layout,
        strides: vec![strides.0, strides.1],
        dilation: vec![1, 1],
        border: border_mode,
        groups: channels,
    };
    let pointwise = ConvCall { strides: vec![1, 1], border: BorderMode::Valid, groups: 1, ..depthwise.clone() };
    pointwise.apply(&depthwise.apply(x, &named(F, grouped)?)?, pointwise_kernel)
}

/// Transposed 2-D convolution (the gradient of [`conv2d`] with respect to its input, the
/// TensorFlow engine's `conv2d_transpose`). `kernel` has the `conv2d` layout with `in` = the
/// channels of `x` and `out` = nb_filter: `th` `(nb_filter, in, r, c)`, `tf`
/// `(r, c, in, nb_filter)`. `output_shape` is the full output shape in the same ordering; its
/// batch may be `None` (taken from `x`). Every `x[b, i, j, ci]·k[r, c, ci, o]` is added to
/// `y[b, i·s_r + r - p_r, j·s_c + c - p_c, o]` (targets outside `output_shape` dropped), with
/// `p = 0` for `valid` and the `same` rule's `pad_before` of a convolution from `output_shape`
/// to `x` for `same`. A convolution of `output_shape` with these arguments must give `x`'s
/// spatial shape.
pub fn deconv2d(
    x: &Tensor,
    kernel: &Tensor,
    output_shape: impl Into<ShapeSpec>,
    strides: (usize, usize),
    border_mode: BorderMode,
    dim_ordering: Option<ImageDimOrdering>,
) -> Result<Tensor> {
    let layout = layout_of(dim_ordering);
    Deconv { output_shape: output_shape.into().0, strides: vec![strides.0, strides.1], border_mode, layout }
        .apply(x, kernel)
}

/// The arguments of one [`deconv2d`] call but the tensors.
#[derive(Clone)]
struct Deconv {
    output_shape: Vec<Dim>,
    strides: Vec<usize>,
    border_mode: BorderMode,
    layout: Layout,
}

impl Deconv {
    fn apply(&self, x: &Tensor, kernel: &Tensor) -> Result<Tensor> {
        const F: &str = "deconv2d";
        let layout = self.layout;
        expect_positive(F, "strides", &self.strides)?;
        expect_rank(F, "x", x, 4, layout)?;
        expect_rank(F, "kernel", kernel, 4, layout)?;
        if self.border_mode == BorderMode::Full {
            return Err(Error::graph(F, "`border_mode` must be 'valid' or 'same', got 'full'"));
        }
        let shape_text = shape_string(&self.output_shape);
        let out = (self.output_shape.len() == 4).then(|| split_image(layout, &self.output_shape));
        let Some((out_batch, Some(out_channels), [Some(rows), Some(cols)])) =
            out.as_ref().map(|o| (o.batch, o.channels, o.spatial.as_slice()))
        else {
            return Err(Error::graph(
                F,
                format!("`output_shape` {shape_text} must be 4-D with known channels and spatial sizes"),
            ));
        };
        let x_dims = split_image(layout, x.shape());
        if let (Some(a), Some(b)) = (out_batch, x_dims.batch)
            && a != b
        {
            return Err(Error::graph(
                F,
                format!("`output_shape` {shape_text} has batch {a} but `x` {} has {b}", x.describe()),
            ));
        }
        let k = split_kernel(layout, kernel.shape());
        if let (Some(c), Some(in_channels)) = (x_dims.channels, k.in_per_group)
            && c != in_channels
        {
            return Err(Error::graph(
                F,
                format!(
                    "`kernel` {} expects {in_channels} input channels but `x` {} has {c}",
                    kernel.describe(),
                    x.describe()
                ),
            ));
        }
        if let Some(nb_filter) = k.out
            && nb_filter != out_channels
        {
            return Err(Error::graph(
                F,
                format!(
                    "`kernel` {} has {nb_filter} filters but `output_shape` {shape_text} has {out_channels} channels",
                    kernel.describe()
                ),
            ));
        }
        let out_spatial = [*rows, *cols];
        let spans = k.spatial.clone();
        let Some(pads) =
            paddings(self.border_mode, &[Some(out_spatial[0]), Some(out_spatial[1])], &spans, &self.strides)
        else {
            // Only an unknown kernel size can leave the `same` padding open.
            let mut dims = x_dims.clone();
            (dims.channels, dims.spatial) = (Some(out_channels), vec![Some(out_spatial[0]), Some(out_spatial[1])]);
            let deconv = self.clone();
            return late(F, &[x.clone(), kernel.clone()], join_image(layout, &dims), x.dtype(), move |t| {
                deconv.apply(&t[0], &t[1])
            });
        };
        for d in 0..2 {
            let (Some(taps), Some(len)) = (spans[d], x_dims.spatial[d]) else { continue };
            let expected = output_len(out_spatial[d], taps, self.strides[d], 1, pads.0[d], pads.1[d])
                .map_err(|m| Error::graph(F, m))?;
            if expected != len {
                return Err(Error::graph(
                    F,
                    format!(
                        "`output_shape` {shape_text} does not fit `x` {}: a '{}' convolution of spatial dim {d} ({}) \
                         with kernel {taps} and stride {} gives {expected}, not {len}",
                        x.describe(),
                        self.border_mode.name(),
                        out_spatial[d],
                        self.strides[d]
                    ),
                ));
            }
        }
        // The transpose of a convolution from the output to `x`, whose kernel maps nb_filter
        // channels to x's: the given kernel with its two channel axes swapped.
        let perm = match layout {
            Layout::ChannelsFirst => [1, 0, 2, 3],
            Layout::ChannelsLast => [0, 1, 3, 2],
        };
        let conv_kernel = named(F, movement::permute(kernel, &perm))?;
        let spec = ConvSpec {
            layout,
            strides: self.strides.clone(),
            dilation: vec![1, 1],
            pad_before: pads.0,
            pad_after: pads.1,
            groups: 1,
        };
        named(F, nn::conv_backward_data(x, &conv_kernel, spec, &out_spatial))
    }
}

/// The arguments of one pooling call but the tensor.
#[derive(Clone)]
struct PoolCall {
    function: &'static str,
    layout: Layout,
    window: Vec<usize>,
    strides: Vec<usize>,
    border: BorderMode,
    mode: PoolMode,
}

impl PoolCall {
    fn spec(&self, (pad_before, pad_after): (Vec<usize>, Vec<usize>)) -> PoolSpec {
        PoolSpec {
            mode: self.mode,
            layout: self.layout,
            window: self.window.clone(),
            strides: self.strides.clone(),
            pad_before,
            pad_after,
        }
    }

    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let f = self.function;
        let n = self.window.len();
        expect_positive(f, "pool_size", &self.window)?;
        expect_positive(f, "strides", &self.strides)?;
        expect_rank(f, "x", x, n + 2, self.layout)?;
        if self.border == BorderMode::Full {
            return Err(Error::graph(f, "`border_mode` must be 'valid' or 'same', got 'full'"));
        }
        let lens = split_image(self.layout, x.shape()).spatial;
        let spans: Vec<Dim> = self.window.iter().map(|&w| Some(w)).collect();
        if let Some(pads) = paddings(self.border, &lens, &spans, &self.strides) {
            return named(f, nn::pool(x, self.spec(pads)));
        }
        let probe = named(f, nn::pool(x, self.spec((vec![0; n], vec![0; n]))))?;
        let shape = deferred_shape(&probe, self.layout, self.border, &lens, &self.strides);
        let call = self.clone();
        late(f, std::slice::from_ref(x), shape, x.dtype(), move |t| call.apply(&t[0]))
    }
}

/// 2-D max or average pooling over `pool_size` windows `strides` apart. With `same`, padded
/// cells never win a max and an average divides by the number of real cells in its window
/// (TensorFlow's rule).
pub fn pool2d(
    x: &Tensor,
    pool_size: (usize, usize),
    strides: (usize, usize),
    border_mode: BorderMode,
    dim_ordering: Option<ImageDimOrdering>,
    pool_mode: PoolMode,
) -> Result<Tensor> {
    let call = PoolCall {
        function: "pool2d",
        layout: layout_of(dim_ordering),
        window: vec![pool_size.0, pool_size.1],
        strides: vec![strides.0, strides.1],
        border: border_mode,
        mode: pool_mode,
    };
    call.apply(x)
}

/// 3-D max or average pooling, as [`pool2d`] over three spatial dims.
pub fn pool3d(
    x: &Tensor,
    pool_size: (usize, usize, usize),
    strides: (usize, usize, usize),
    border_mode: BorderMode,
    dim_ordering: Option<ImageDimOrdering>,
    pool_mode: PoolMode,
) -> Result<Tensor> {
    let call = PoolCall {
        function: "pool3d",
        layout: layout_of(dim_ordering),
        window: vec![pool_size.0, pool_size.1, pool_size.2],
        strides: vec![strides.0, strides.1, strides.2],
        border: border_mode,
        mode: pool_mode,
    };
    call.apply(x)
}

/// Nearest-neighbour upsampling of the spatial dims of `x` by integer factors.
fn resize(function: &str, x: &Tensor, factors: &[usize], dim_ordering: Option<ImageDimOrdering>) -> Result<Tensor> {
    let layout = layout_of(dim_ordering);
    expect_positive(function, "factors", factors)?;
    expect_rank(function, "x", x, factors.len() + 2, layout)?;
    named(function, nn::resize_nearest(x, layout, factors))
}

/// Upsamples the rows of a 4-D image tensor `height_factor` times and the columns
/// `width_factor` times, each element repeated in place (`numpy.repeat` on both axes).
pub fn resize_images(
    x: &Tensor,
    height_factor: usize,
    width_factor: usize,
    dim_ordering: Option<ImageDimOrdering>,
) -> Result<Tensor> {
    resize("resize_images", x, &[height_factor, width_factor], dim_ordering)
}

/// Upsamples the three spatial dims of a 5-D volume tensor by `depth_factor`,
/// `height_factor` and `width_factor`, each element repeated in place.
pub fn resize_volumes(
    x: &Tensor,
    depth_factor: usize,
    height_factor: usize,
    width_factor: usize,
    dim_ordering: Option<ImageDimOrdering>,
) -> Result<Tensor> {
    resize("resize_volumes", x, &[depth_factor, height_factor, width_factor], dim_ordering)
}
