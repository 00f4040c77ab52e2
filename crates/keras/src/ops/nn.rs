//! Convolution (forward and both backward kernels), pooling (forward and backward) and
//! nearest-neighbour upsampling by integer factors.
//!
//! The three convolution primitives are closed under differentiation: the derivative of each
//! is built from the other two and itself, so gradients of gradients of a convolution work.
//! The backward primitives carry the spatial sizes of their output (input or kernel), which
//! their inputs do not determine when strides are above 1.

use keras_backend_api::{
    ArgReduceOp, ConvParams, DType, Layout, PoolMode, PoolParams, ReduceOp, shape::conv_output_len,
};

use super::{
    Inferred, Op,
    elementwise::select,
    movement::{gather, one_hot, pad, permute, reshape},
    reduce::{arg_reduce, reduce},
    shapes_of, source,
    special::late,
};
use crate::{
    array::Array,
    error::{Error, Result},
    graph::{Dim, Tensor},
};

/// The static parameters of a convolution ([`ConvParams`], owned): one entry per spatial dim
/// in each list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ConvSpec {
    pub(crate) layout: Layout,
    pub(crate) strides: Vec<usize>,
    pub(crate) dilation: Vec<usize>,
    pub(crate) pad_before: Vec<usize>,
    pub(crate) pad_after: Vec<usize>,
    pub(crate) groups: usize,
}

impl ConvSpec {
    /// The parameters as the plugin contract takes them.
    pub(crate) fn params(&self) -> ConvParams<'_> {
        ConvParams {
            layout: self.layout,
            strides: self.strides.as_slice().into(),
            dilation: self.dilation.as_slice().into(),
            pad_before: self.pad_before.as_slice().into(),
            pad_after: self.pad_after.as_slice().into(),
            groups: self.groups,
        }
    }

    fn spatial_rank(&self) -> usize {
        self.strides.len()
    }

    fn check(&self) -> std::result::Result<(), String> {
        let n = self.spatial_rank();
        let lists = [&self.dilation, &self.pad_before, &self.pad_after];
        if !(1..=3).contains(&n) || lists.iter().any(|l| l.len() != n) {
            return Err(format!(
                "strides, dilation and paddings need one entry per spatial dim (1 to 3), got {n}, {}, {}/{}",
                lists[0].len(),
                lists[1].len(),
                lists[2].len()
            ));
        }
        if self.groups == 0 || self.strides.contains(&0) || self.dilation.contains(&0) {
            return Err(format!(
                "strides {:?}, dilation {:?} and groups {} must be >= 1",
                self.strides, self.dilation, self.groups
            ));
        }
        Ok(())
    }
}

/// The static parameters of a pooling ([`PoolParams`], owned).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PoolSpec {
    pub(crate) mode: PoolMode,
    pub(crate) layout: Layout,
    pub(crate) window: Vec<usize>,
    pub(crate) strides: Vec<usize>,
    pub(crate) pad_before: Vec<usize>,
    pub(crate) pad_after: Vec<usize>,
}

impl PoolSpec {
    /// The parameters as the plugin contract takes them.
    pub(crate) fn params(&self) -> PoolParams<'_> {
        PoolParams {
            mode: self.mode,
            layout: self.layout,
            window: self.window.as_slice().into(),
            strides: self.strides.as_slice().into(),
            pad_before: self.pad_before.as_slice().into(),
            pad_after: self.pad_after.as_slice().into(),
        }
    }

    /// The output dims of pooling an input of spatial dims `spatial`.
    fn output_spatial(&self, spatial: &[Dim]) -> std::result::Result<Vec<Dim>, String> {
        let n = self.window.len();
        let lists = [&self.strides, &self.pad_before, &self.pad_after];
        if !(1..=3).contains(&n) || lists.iter().any(|l| l.len() != n) || spatial.len() != n {
            return Err(format!(
                "window {:?} and strides {:?} need one entry per spatial dim",
                self.window, self.strides
            ));
        }
        (0..n)
            .map(|d| {
                spatial[d]
                    .map(|s| output_len(s, self.window[d], self.strides[d], 1, self.pad_before[d], self.pad_after[d]))
                    .transpose()
            })
            .collect()
    }
}

/// `x` convolved with `kernel` (a cross-correlation, [`ConvParams`]'s definition).
pub(crate) fn conv(x: &Tensor, kernel: &Tensor, spec: ConvSpec) -> Result<Tensor> {
    Tensor::new(Op::Conv(spec), vec![x.clone(), kernel.clone()])
}

/// The gradient of [`conv`] with respect to its input, for an input of spatial dims
/// `input_spatial`: the exact adjoint of the convolution in `x`, applied to `dy`.
pub(crate) fn conv_backward_data(
    dy: &Tensor,
    kernel: &Tensor,
    spec: ConvSpec,
    input_spatial: &[usize],
) -> Result<Tensor> {
    let op = Op::ConvBackwardData { spec, input_spatial: input_spatial.to_vec() };
    Tensor::new(op, vec![dy.clone(), kernel.clone()])
}

/// The gradient of [`conv`] with respect to a kernel of spatial dims `kernel_spatial`.
pub(crate) fn conv_backward_filter(
    x: &Tensor,
    dy: &Tensor,
    spec: ConvSpec,
    kernel_spatial: &[usize],
) -> Result<Tensor> {
    let op = Op::ConvBackwardFilter { spec, kernel_spatial: kernel_spatial.to_vec() };
    Tensor::new(op, vec![x.clone(), dy.clone()])
}

/// [`conv_backward_data`] producing `like`'s shape: built now when `like`'s spatial dims are
/// known, else when the graph is specialised.
fn backward_data_like(dy: &Tensor, kernel: &Tensor, spec: &ConvSpec, like: &Tensor) -> Result<Tensor> {
    let layout = spec.layout;
    let spatial = move |t: &Tensor| split_image(layout, t.shape()).spatial.into_iter().collect::<Option<Vec<usize>>>();
    if let Some(input_spatial) = spatial(like) {
        return conv_backward_data(dy, kernel, spec.clone(), &input_spatial);
    }
    let spec = spec.clone();
    let inputs = [dy.clone(), kernel.clone(), like.clone()];
    late("conv_backward_data", &inputs, like.shape().to_vec(), like.dtype(), move |t| {
        conv_backward_data(&t[0], &t[1], spec.clone(), &spatial(&t[2]).unwrap_or_default())
    })
}

/// [`conv_backward_filter`] producing `like`'s (a kernel's) shape, built as soon as its
/// spatial dims are known.
fn backward_filter_like(x: &Tensor, dy: &Tensor, spec: &ConvSpec, like: &Tensor) -> Result<Tensor> {
    let layout = spec.layout;
    let spatial = move |t: &Tensor| split_kernel(layout, t.shape()).spatial.into_iter().collect::<Option<Vec<usize>>>();
    if let Some(kernel_spatial) = spatial(like) {
        return conv_backward_filter(x, dy, spec.clone(), &kernel_spatial);
    }
    let spec = spec.clone();
    let inputs = [x.clone(), dy.clone(), like.clone()];
    late("conv_backward_filter", &inputs, like.shape().to_vec(), like.dtype(), move |t| {
        conv_backward_filter(&t[0], &t[1], spec.clone(), &spatial(&t[2]).unwrap_or_default())
    })
}

/// Max or average pooling of `x`.
pub(crate) fn pool(x: &Tensor, spec: PoolSpec) -> Result<Tensor> {
    Tensor::new(Op::Pool(spec), vec![x.clone()])
}

/// The gradient of [`pool`] with respect to `x`, given the output's gradient `dy`.
pub(crate) fn pool_backward(x: &Tensor, dy: &Tensor, spec: PoolSpec) -> Result<Tensor> {
    Tensor::new(Op::PoolBackward(spec), vec![x.clone(), dy.clone()])
}

/// Nearest-neighbour upsampling: spatial dim `d` of `x` repeated `factors[d]` times per
/// element (`numpy.repeat`).
pub(crate) fn resize_nearest(x: &Tensor, layout: Layout, factors: &[usize]) -> Result<Tensor> {
    Tensor::new(Op::ResizeNearest { layout, factors: factors.to_vec() }, vec![x.clone()])
}

/// An image tensor's dims: batch, channels and spatial dims, wherever the layout puts them.
#[derive(Clone, Debug)]
pub(crate) struct ImageDims {
    pub(crate) batch: Dim,
    pub(crate) channels: Dim,
    pub(crate) spatial: Vec<Dim>,
}

/// A kernel's dims: output channels, input channels per group, and spatial dims.
#[derive(Clone, Debug)]
pub(crate) struct KernelDims {
    pub(crate) out: Dim,
    pub(crate) in_per_group: Dim,
    pub(crate) spatial: Vec<Dim>,
}

/// Splits an image shape of rank >= 2: `(B, C, S...)` (ChannelsFirst) or `(B, S..., C)`.
pub(crate) fn split_image(layout: Layout, shape: &[Dim]) -> ImageDims {
    let rank = shape.len();
    match (layout, rank) {
        (_, 0 | 1) => ImageDims { batch: None, channels: None, spatial: Vec::new() },
        (Layout::ChannelsFirst, _) => ImageDims { batch: shape[0], channels: shape[1], spatial: shape[2..].to_vec() },
        (Layout::ChannelsLast, _) => {
            ImageDims { batch: shape[0], channels: shape[rank - 1], spatial: shape[1..rank - 1].to_vec() }
        }
    }
}

/// The inverse of [`split_image`].
pub(crate) fn join_image(layout: Layout, dims: &ImageDims) -> Vec<Dim> {
    match layout {
        Layout::ChannelsFirst => [dims.batch, dims.channels].into_iter().chain(dims.spatial.iter().copied()).collect(),
        Layout::ChannelsLast => {
            std::iter::once(dims.batch).chain(dims.spatial.iter().copied()).chain([dims.channels]).collect()
        }
    }
}

/// Splits a kernel shape of rank >= 2: `(O, C/G, K...)` (ChannelsFirst) or `(K..., C/G, O)`.
pub(crate) fn split_kernel(layout: Layout, shape: &[Dim]) -> KernelDims {
    let rank = shape.len();
    match (layout, rank) {
        (_, 0 | 1) => KernelDims { out: None, in_per_group: None, spatial: Vec::new() },
        (Layout::ChannelsFirst, _) => {
            KernelDims { out: shape[0], in_per_group: shape[1], spatial: shape[2..].to_vec() }
        }
        (Layout::ChannelsLast, _) => {
            KernelDims { out: shape[rank - 1], in_per_group: shape[rank - 2], spatial: shape[..rank - 2].to_vec() }
        }
    }
}

/// The inverse of [`split_kernel`].
fn join_kernel(layout: Layout, dims: &KernelDims) -> Vec<Dim> {
    match layout {
        Layout::ChannelsFirst => {
            [dims.out, dims.in_per_group].into_iter().chain(dims.spatial.iter().copied()).collect()
        }
        Layout::ChannelsLast => dims.spatial.iter().copied().chain([dims.in_per_group, dims.out]).collect(),
    }
}

/// [`conv_output_len`], refusing sizes whose padded length or kernel span overflow.
pub(crate) fn output_len(
    len: usize,
    taps: usize,
    stride: usize,
    dilation: usize,
    before: usize,
    after: usize,
) -> std::result::Result<usize, String> {
    let padded = len.checked_add(before).and_then(|n| n.checked_add(after));
    let span = taps.saturating_sub(1).checked_mul(dilation).and_then(|n| n.checked_add(1));
    if padded.is_none() || span.is_none() {
        return Err(format!(
            "length {len} with padding {before}/{after}, kernel {taps} and dilation {dilation} overflow"
        ));
    }
    conv_output_len(len, taps, stride, dilation, before, after)
}

/// One dim known in two places: the known value, or an error when both are known and differ.
fn merge(a: Dim, b: Dim, what: &str) -> std::result::Result<Dim, String> {
    match (a, b) {
        (Some(a), Some(b)) if a != b => Err(format!("{what}: {a} vs {b}")),
        (a, b) => Ok(a.or(b)),
    }
}

/// Makes the three shapes of one convolution (input `x`, kernel `k`, output `y`) agree: every
/// dim known in one is filled in where the convolution determines it in the others.
fn unify(spec: &ConvSpec, x: &mut ImageDims, k: &mut KernelDims, y: &mut ImageDims) -> std::result::Result<(), String> {
    spec.check()?;
    let n = spec.spatial_rank();
    if [x.spatial.len(), k.spatial.len(), y.spatial.len()].iter().any(|&len| len != n) {
        return Err(format!("input, kernel and output need {n} spatial dims each (rank {})", n + 2));
    }
    let g = spec.groups;
    let batch = merge(x.batch, y.batch, "batch sizes differ")?;
    (x.batch, y.batch) = (batch, batch);
    if let Some(c) = x.channels {
        if c % g != 0 {
            return Err(format!("{c} input channels do not split into {g} groups"));
        }
        let what = if g == 1 {
            "the kernel's input channels differ from the input's".to_string()
        } else {
            format!("the kernel's input channels per group (groups {g}) differ from the input's")
        };
        k.in_per_group = merge(k.in_per_group, Some(c / g), &what)?;
    }
    x.channels = x.channels.or(k.in_per_group.and_then(|cg| cg.checked_mul(g)));
    let out = merge(k.out, y.channels, "the kernel's output channels differ from the output's")?;
    if let Some(o) = out
        && o % g != 0
    {
        return Err(format!("{o} output channels do not split into {g} groups"));
    }
    (k.out, y.channels) = (out, out);
    for d in 0..n {
        if let (Some(len), Some(taps)) = (x.spatial[d], k.spatial[d]) {
            let stride = spec.strides[d];
            let (dilation, before, after) = (spec.dilation[d], spec.pad_before[d], spec.pad_after[d]);
            let out_len = output_len(len, taps, stride, dilation, before, after)?;
            let what = format!(
                "spatial dim {d}: input {len}, kernel {taps}, stride {stride}, dilation {dilation} and padding \
                 {before}/{after} give another output length than the output's"
            );
            y.spatial[d] = merge(Some(out_len), y.spatial[d], &what)?;
        }
    }
    Ok(())
}

fn check_float_pair(a: &Tensor, b: &Tensor) -> std::result::Result<DType, String> {
    if a.dtype() != b.dtype() || !a.dtype().is_float() {
        return Err(format!("needs two float tensors of one dtype, got {} and {}", a.dtype(), b.dtype()));
    }
    Ok(a.dtype())
}

pub(crate) fn infer(op: &Op, inputs: &[Tensor]) -> Inferred {
    let in_context = |message: String| format!("{message} (shapes {})", shapes_of(inputs));
    match op {
        Op::Conv(spec) => {
            let dtype = check_float_pair(&inputs[0], &inputs[1])?;
            check_rank(spec.spatial_rank(), inputs)?;
            let mut x = split_image(spec.layout, inputs[0].shape());
            let mut k = split_kernel(spec.layout, inputs[1].shape());
            let mut y = ImageDims { batch: None, channels: None, spatial: vec![None; spec.spatial_rank()] };
            unify(spec, &mut x, &mut k, &mut y).map_err(in_context)?;
            Ok((join_image(spec.layout, &y), dtype))
        }
        Op::ConvBackwardData { spec, input_spatial } => {
            let dtype = check_float_pair(&inputs[0], &inputs[1])?;
            check_rank(spec.spatial_rank(), inputs)?;
            let mut y = split_image(spec.layout, inputs[0].shape());
            let mut k = split_kernel(spec.layout, inputs[1].shape());
            let mut x =
                ImageDims { batch: None, channels: None, spatial: input_spatial.iter().map(|&d| Some(d)).collect() };
            unify(spec, &mut x, &mut k, &mut y).map_err(in_context)?;
            Ok((join_image(spec.layout, &x), dtype))
        }
        Op::ConvBackwardFilter { spec, kernel_spatial } => {
            let dtype = check_float_pair(&inputs[0], &inputs[1])?;
            check_rank(spec.spatial_rank(), inputs)?;
            let mut x = split_image(spec.layout, inputs[0].shape());
            let mut y = split_image(spec.layout, inputs[1].shape());
            let mut k = KernelDims {
                out: None,
                in_per_group: None,
                spatial: kernel_spatial.iter().map(|&d| Some(d)).collect(),
            };
            unify(spec, &mut x, &mut k, &mut y).map_err(in_context)?;
            Ok((join_kernel(spec.layout, &k), dtype))
        }
        Op::Pool(spec) => {
            let x = &inputs[0];
            if !x.dtype().is_float() {
                return Err(format!("pooling needs a float input, got {}", x.dtype()));
            }
            check_rank(spec.window.len(), inputs)?;
            let mut dims = split_image(spec.layout, x.shape());
            dims.spatial = spec.output_spatial(&dims.spatial).map_err(in_context)?;
            Ok((join_image(spec.layout, &dims), x.dtype()))
        }
        Op::PoolBackward(spec) => {
            let (x, dy) = (&inputs[0], &inputs[1]);
            let dtype = check_float_pair(x, dy)?;
            check_rank(spec.window.len(), inputs)?;
            let mut pooled = split_image(spec.layout, x.shape());
            pooled.spatial = spec.output_spatial(&pooled.spatial).map_err(in_context)?;
            let fits = join_image(spec.layout, &pooled)
                .iter()
                .zip(dy.shape())
                .all(|(a, b)| a.zip(*b).is_none_or(|(a, b)| a == b));
            if !fits {
                return Err(in_context("the output gradient does not have the pooled shape".to_string()));
            }
            Ok((x.shape().to_vec(), dtype))
        }
        Op::ResizeNearest { layout, factors } => {
            let x = &inputs[0];
            check_rank(factors.len(), inputs)?;
            if factors.contains(&0) {
                return Err(format!("factors {factors:?} must be >= 1"));
            }
            let mut dims = split_image(*layout, x.shape());
            let scaled = |(d, &f): (&Dim, &usize)| d.map(|d| d.checked_mul(f).ok_or(format!("{d} × {f} overflows")));
            dims.spatial = dims
                .spatial
                .iter()
                .zip(factors)
                .map(|p| scaled(p).transpose())
                .collect::<std::result::Result<_, _>>()?;
            Ok((join_image(*layout, &dims), x.dtype()))
        }
        _ => unreachable!("not a convolution, pooling or resize op"),
    }
}

/// Every input must have rank `spatial + 2` (batch and channels, or kernel out and in).
fn check_rank(spatial: usize, inputs: &[Tensor]) -> std::result::Result<(), String> {
    if inputs.iter().any(|t| t.ndim() != spatial + 2) {
        return Err(format!("needs rank {} inputs ({spatial} spatial dims), got {}", spatial + 2, shapes_of(inputs)));
    }
    Ok(())
}

pub(crate) fn vjp(op: &Op, inputs: &[Tensor], _y: &Tensor, dy: &Tensor) -> Result<Vec<Option<Tensor>>> {
    match op {
        Op::Conv(spec) => {
            let (x, kernel) = (&inputs[0], &inputs[1]);
            let dx = backward_data_like(dy, kernel, spec, x)?;
            let dkernel = backward_filter_like(x, dy, spec, kernel)?;
            Ok(vec![Some(dx), Some(dkernel)])
        }
        // dx = B(u, w) is linear in u and in w: its adjoints are the forward convolution of the
        // cotangent, and the filter gradient of the cotangent against u.
        Op::ConvBackwardData { spec, .. } => {
            let (u, kernel) = (&inputs[0], &inputs[1]);
            Ok(vec![Some(conv(dy, kernel, spec.clone())?), Some(backward_filter_like(dy, u, spec, kernel)?)])
        }
        Op::ConvBackwardFilter { spec, .. } => {
            let (x, u) = (&inputs[0], &inputs[1]);
            Ok(vec![Some(backward_data_like(u, dy, spec, x)?), Some(conv(x, dy, spec.clone())?)])
        }
        Op::Pool(spec) => Ok(vec![Some(pool_backward(&inputs[0], dy, spec.clone())?)]),
        Op::PoolBackward(spec) => match spec.mode {
            // Average pooling is linear, so its backward pass is its adjoint and the adjoint of
            // that is the pooling itself; it does not depend on x's values.
            PoolMode::Avg => Ok(vec![None, Some(pool(dy, spec.clone())?)]),
            // dx = Pᵀ·dy where P picks each window's first maximum of x: linear in dy, and
            // piecewise constant in x (zero almost everywhere).
            PoolMode::Max => Ok(vec![None, Some(max_pool_select(&inputs[0], dy, spec, inputs[1].shape().to_vec())?)]),
        },
        Op::ResizeNearest { layout, factors } => {
            let x = &inputs[0];
            if !x.dtype().is_float() {
                return Ok(vec![None]);
            }
            let (layout, factors) = (*layout, factors.clone());
            let dx = late("resize gradient", &[dy.clone(), x.clone()], x.shape().to_vec(), x.dtype(), move |t| {
                block_sum(&t[0], &t[1].static_shape().unwrap_or_default(), layout, &factors)
            })?;
            Ok(vec![Some(dx)])
        }
        _ => unreachable!("not a convolution, pooling or resize op"),
    }
}

/// `P·g` for max pooling of `x` by `spec`: for every window, `g` (shaped like `x`) at the
/// first maximal in-bounds element of `x` in that window (0 for a window wholly in padding),
/// shaped like the pooled output `y_shape`. This is the derivative of the pooling's backward
/// pass in its output gradient; it is built from gather, arg max and one-hot once the shapes
/// are known, so it is itself differentiable in `g`.
fn max_pool_select(x: &Tensor, g: &Tensor, spec: &PoolSpec, y_shape: Vec<Dim>) -> Result<Tensor> {
    let spec = spec.clone();
    late("max pooling second derivative", &[x.clone(), g.clone()], y_shape, x.dtype(), move |t| {
        let (x, g) = (&t[0], &t[1]);
        let dims = split_image(spec.layout, x.shape());
        let known = |dims: &[Dim]| dims.iter().map(|d| d.unwrap_or(0)).collect::<Vec<usize>>();
        let spatial = known(&dims.spatial);
        let out = known(&spec.output_spatial(&dims.spatial).map_err(|m| Error::graph("pool_backward", m))?);
        let (batch, channels) = (dims.batch.unwrap_or(0), dims.channels.unwrap_or(0));
        let (in_len, out_len, window_len) =
            (spatial.iter().product::<usize>(), out.iter().product::<usize>(), spec.window.iter().product::<usize>());
        let unravel = |mut flat: usize, dims: &[usize]| {
            let mut index = vec![0; dims.len()];
            for (i, &d) in index.iter_mut().zip(dims).rev() {
                (*i, flat) = (flat % d, flat / d);
            }
            index
        };
        // Row p lists window p's in-bounds flat input positions in row-major order (the
        // kernel's scan order, so the first maximum is the same element), then the padding
        // element `in_len` up to the window size: last, padding loses every tie.
        let mut table: Vec<i64> = Vec::with_capacity(out_len * window_len);
        for p in 0..out_len {
            let (o, row_start) = (unravel(p, &out), table.len());
            for k in 0..window_len {
                let k = unravel(k, &spec.window);
                let position = (0..o.len()).try_fold(0, |flat, d| {
                    let i = (o[d] * spec.strides[d] + k[d]).checked_sub(spec.pad_before[d]).filter(|&i| i < spatial[d]);
                    i.map(|i| flat * spatial[d] + i)
                });
                table.extend(position.map(|i| i as i64));
            }
            table.resize(row_start + window_len, in_len as i64);
        }
        let table = source::constant(Array::from_vec(&[out_len, window_len], table)?);
        // Flatten the spatial dims to one axis with the padding element appended, and gather
        // the windows: (N, C, P, W) channels first, (N, P, W, C) channels last.
        let (flat_shape, spatial_axis, pad_after) = match spec.layout {
            Layout::ChannelsFirst => ([batch, channels, in_len], 2, [0, 0, 1]),
            Layout::ChannelsLast => ([batch, in_len, channels], 1, [0, 1, 0]),
        };
        let windows = |t: &Tensor, padding: f64| -> Result<Tensor> {
            let flat = reshape(t, &flat_shape.map(|d| d as isize))?;
            gather(&pad(&flat, &[0, 0, 0], &pad_after, padding)?, &table, spatial_axis)
        };
        let window_axis = spatial_axis + 1;
        let first_max = arg_reduce(ArgReduceOp::ArgMax, &windows(x, f64::NEG_INFINITY)?, window_axis)?;
        // one_hot appends the window axis last; move it back to where the windows have it.
        let perm: Vec<usize> = (0..window_axis).chain([3]).chain(window_axis..3).collect();
        let chosen = permute(&one_hot(&first_max, window_len, DType::Bool)?, &perm)?;
        // A select rather than a product with a 0/1 mask: an infinite g elsewhere in the
        // window must not turn the result into NaN.
        let zero = source::scalar(0.0, x.dtype())?;
        let picked = reduce(ReduceOp::Sum, &select(&chosen, &windows(g, 0.0)?, &zero)?, &[window_axis], false)?;
        let pooled = ImageDims { spatial: out.iter().map(|&d| Some(d)).collect(), ..dims };
        reshape(&picked, &known(&join_image(spec.layout, &pooled)).iter().map(|&d| d as isize).collect::<Vec<_>>())
    })
}

/// The adjoint of upsampling `x_shape` by `factors`: each spatial dim of `dy` of size `n·f` is
/// seen as `(n, f)` and summed over the `f` axis.
fn block_sum(dy: &Tensor, x_shape: &[usize], layout: Layout, factors: &[usize]) -> Result<Tensor> {
    let first_spatial = match layout {
        Layout::ChannelsFirst => 2,
        Layout::ChannelsLast => 1,
    };
    let mut split = Vec::with_capacity(x_shape.len() + factors.len());
    let mut summed = Vec::with_capacity(factors.len());
    for (axis, &len) in x_shape.iter().enumerate() {
        split.push(len as isize);
        if let Some(&f) = axis.checked_sub(first_spatial).and_then(|d| factors.get(d)) {
            summed.push(split.len());
            split.push(f as isize);
        }
    }
    reduce(ReduceOp::Sum, &reshape(dy, &split)?, &summed, false)
}
