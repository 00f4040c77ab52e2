//! N-d convolution (1-3 spatial dims), forward and both backward kernels, both layouts.
//!
//! All three kernels are lowered to GEMM on a *patch matrix* that gathers, for a chunk of
//! output positions of one batch element and one group, the input value that each
//! (channel, tap) pair reads:
//!
//! * ChannelsFirst (im2col): one row per (channel, tap), one column per output position. The
//!   kernel `(O, C/G, K...)` is then already the row-major `O/G × (C/G·K)` left operand and
//!   the output `(O, S')` the row-major result.
//! * ChannelsLast (im2row): one row per output position, one column per (tap, channel). The
//!   kernel `(K..., C/G, O)` is then already the row-major `(K·C/G) × O/G` right operand and
//!   the output `(S', O)` the row-major result.
//!
//! So neither layout is ever transposed as a whole; groups are strided views of the kernel
//! and of the output. The backward kernels run the same GEMMs transposed: backward-data
//! multiplies into a patch matrix and scatters it back (col2im), backward-filter multiplies
//! the output gradient by the patch matrix. Output positions are taken in chunks so the
//! scratch stays under `SCRATCH_ELEMENTS` per worker, and batch elements run in parallel.
//! A 1×1 kernel with stride 1 and no padding reads the input as the patch matrix directly.

use std::ops::Range;

use keras_backend_api::{ConvParams, Layout, window::ConvGeometry as CheckedConv};
use rayon::prelude::*;

use super::conv_direct::DirectConv;
use super::conv_direct_nchw::NchwConv;
use super::element::{Float, several_threads};
use super::matmul::{GemmEngine, GemmScalar, MatView, gemm};
use super::window::{Window, with_float_triple};
use super::{Tensor, TensorMut};
use crate::simd::vectorized;
use crate::{CpuStorage, Result};

/// Elements of patch-matrix scratch per worker (16 MiB of f32): large enough for efficient
/// GEMMs, small enough that a large image does not need a gigabyte-sized im2col buffer. Tests
/// use a tiny budget so that even their small cases run in several chunks.
const SCRATCH_ELEMENTS: usize = if cfg!(test) { 1 << 9 } else { 1 << 22 };

/// Patch matrices below this many elements are filled on one thread (rayon's overhead would
/// cost more than it saves). Tests lower it to exercise the parallel fill.
const PARALLEL_FILL: usize = if cfg!(test) { 1 << 7 } else { 1 << 15 };

/// Forward convolution: `out = conv(x, kernel)` as [`ConvParams`] defines it, its GEMMs on
/// `engine`.
pub fn conv(
    engine: &dyn GemmEngine,
    x: Tensor<'_>,
    kernel: Tensor<'_>,
    out: TensorMut<'_>,
    params: &ConvParams<'_>,
) -> Result<()> {
    const NAMES: [&str; 3] = ["x", "kernel", "out"];
    let geo = ConvGeometry::from(CheckedConv::new("conv", NAMES, x.shape, kernel.shape, out.shape, params)?);
    if let (CpuStorage::F32(x), CpuStorage::F32(w), CpuStorage::F32(y)) = (x.data, kernel.data, &mut *out.data)
        && let Some(direct) = geo.direct()
        && direct.forward(x, w, y)
    {
        return Ok(());
    }
    with_float_triple!("conv", NAMES, (x.data, kernel.data, out.data), (x, w, y) => forward(engine, &geo, x, w, y))
}

/// Gradient with respect to the input: `dx` (which has the input's shape) becomes the exact
/// adjoint of [`conv`] in `x` applied to `dy`. Input positions no output reads get 0.
pub fn conv_backward_data(
    engine: &dyn GemmEngine,
    dy: Tensor<'_>,
    kernel: Tensor<'_>,
    dx: TensorMut<'_>,
    params: &ConvParams<'_>,
) -> Result<()> {
    const NAMES: [&str; 3] = ["dx", "kernel", "dy"];
    let geo =
        ConvGeometry::from(CheckedConv::new("conv_backward_data", NAMES, dx.shape, kernel.shape, dy.shape, params)?);
    if let (CpuStorage::F32(dy), CpuStorage::F32(w), CpuStorage::F32(dx)) = (dy.data, kernel.data, &mut *dx.data)
        && let Some(direct) = geo.direct()
        && direct.backward_data(dy, w, dx)
    {
        return Ok(());
    }
    with_float_triple!(
        "conv_backward_data",
        ["dy", "kernel", "dx"],
        (dy.data, kernel.data, dx.data),
        (dy, w, dx) => backward_data(engine, &geo, dy, w, dx)
    )
}

/// Gradient with respect to the kernel: `dkernel` becomes the exact adjoint of [`conv`] in
/// the kernel applied to `dy`, summed over the batch.
pub fn conv_backward_filter(
    engine: &dyn GemmEngine,
    x: Tensor<'_>,
    dy: Tensor<'_>,
    dkernel: TensorMut<'_>,
    params: &ConvParams<'_>,
) -> Result<()> {
    const NAMES: [&str; 3] = ["x", "dkernel", "dy"];
    let geo =
        ConvGeometry::from(CheckedConv::new("conv_backward_filter", NAMES, x.shape, dkernel.shape, dy.shape, params)?);
    if let (CpuStorage::F32(x), CpuStorage::F32(dy), CpuStorage::F32(dk)) = (x.data, dy.data, &mut *dkernel.data)
        && let Some(direct) = geo.direct()
        && direct.backward_filter(x, dy, dk)
    {
        return Ok(());
    }
    with_float_triple!(
        "conv_backward_filter",
        ["x", "dy", "dkernel"],
        (x.data, dy.data, dkernel.data),
        (x, dy, dk) => backward_filter(engine, &geo, x, dy, dk)
    )
}

/// Batch elements each parallel task takes: the batch split evenly over rayon's threads, so
/// that each task allocates its scratch (and, for the filter gradient, its partial sum) once.
fn batches_per_task(batch: usize) -> usize {
    batch.div_ceil(rayon::current_num_threads().max(1)).max(1)
}

/// Calls `one(out_b, in_b, scratch)` for each of the `batch` elements of `out` and `input`
/// (`out_len` and `in_len` elements each), the batch split into parallel tasks
/// ([`batches_per_task`]) that each own one scratch buffer.
fn for_each_batch<T: Send + Sync>(
    batch: usize,
    (out, out_len): (&mut [T], usize),
    (input, in_len): (&[T], usize),
    one: impl Fn(&mut [T], &[T], &mut Vec<T>) -> Result<()> + Sync,
) -> Result<()> {
    let per_task = batches_per_task(batch);
    out.par_chunks_mut(out_len * per_task).zip(input.par_chunks(in_len * per_task)).try_for_each(
        |(out_task, in_task)| {
            let mut scratch = Vec::new();
            out_task
                .chunks_mut(out_len)
                .zip(in_task.chunks(in_len))
                .try_for_each(|(out_b, in_b)| one(out_b, in_b, &mut scratch))
        },
    )
}

fn forward<T: Float + GemmScalar>(
    engine: &dyn GemmEngine,
    geo: &ConvGeometry,
    x: &[T],
    w: &[T],
    y: &mut [T],
) -> Result<()> {
    if y.is_empty() {
        return Ok(());
    }
    if x.is_empty() {
        // No channels or an empty spatial input: every tap reads padding.
        y.fill(T::ZERO);
        return Ok(());
    }
    for_each_batch(geo.batch, (y, geo.y_len()), (x, geo.x_len()), |y_b, x_b, scratch| {
        geo.forward_one(engine, x_b, w, y_b, scratch)
    })
}

fn backward_data<T: Float + GemmScalar>(
    engine: &dyn GemmEngine,
    geo: &ConvGeometry,
    dy: &[T],
    w: &[T],
    dx: &mut [T],
) -> Result<()> {
    dx.fill(T::ZERO);
    if dx.is_empty() || dy.is_empty() {
        return Ok(());
    }
    for_each_batch(geo.batch, (dx, geo.x_len()), (dy, geo.y_len()), |dx_b, dy_b, scratch| {
        geo.backward_data_one(engine, dy_b, w, dx_b, scratch)
    })
}

fn backward_filter<T: Float + GemmScalar>(
    engine: &dyn GemmEngine,
    geo: &ConvGeometry,
    x: &[T],
    dy: &[T],
    dk: &mut [T],
) -> Result<()> {
    dk.fill(T::ZERO);
    if dk.is_empty() || dy.is_empty() || x.is_empty() {
        return Ok(());
    }
    let per_task = batches_per_task(geo.batch);
    let (x_len, y_len) = (geo.x_len(), geo.y_len());
    let accumulate = |x_task: &[T], dy_task: &[T], dk: &mut [T]| -> Result<()> {
        let mut scratch = Vec::new();
        x_task
            .chunks(x_len)
            .zip(dy_task.chunks(y_len))
            .try_for_each(|(x_b, dy_b)| geo.backward_filter_one(engine, x_b, dy_b, dk, &mut scratch))
    };
    if per_task >= geo.batch {
        return accumulate(x, dy, dk);
    }
    // Each task sums its batch elements into a private partial; the partials are added in
    // task order, so the result does not depend on scheduling.
    let partials = x
        .par_chunks(x_len * per_task)
        .zip(dy.par_chunks(y_len * per_task))
        .map(|(x_task, dy_task)| {
            let mut partial = vec![T::ZERO; dk.len()];
            accumulate(x_task, dy_task, &mut partial).map(|()| partial)
        })
        .collect::<Result<Vec<_>>>()?;
    for partial in partials {
        dk.iter_mut().zip(partial).for_each(|(d, p)| *d += p);
    }
    Ok(())
}

/// The direct kernels' plan for one layout; each call returns `false`, having written
/// nothing, when its kernel does not take the case (the GEMM path then runs).
#[derive(Debug)]
enum Direct {
    Last(DirectConv),
    First(NchwConv),
}

impl Direct {
    fn forward(&self, x: &[f32], kernel: &[f32], y: &mut [f32]) -> bool {
        match self {
            Direct::Last(d) => d.forward(x, kernel, y),
            Direct::First(d) => d.forward(x, kernel, y),
        }
    }

    fn backward_data(&self, dy: &[f32], kernel: &[f32], dx: &mut [f32]) -> bool {
        match self {
            Direct::Last(d) => d.backward_data(dy, kernel, dx),
            Direct::First(d) => d.backward_data(dy, kernel, dx),
        }
    }

    fn backward_filter(&self, x: &[f32], dy: &[f32], dkernel: &mut [f32]) -> bool {
        match self {
            Direct::Last(d) => d.backward_filter(x, dy, dkernel),
            Direct::First(d) => d.backward_filter(x, dy, dkernel),
        }
    }
}

/// A block of a row-major buffer seen as a matrix: `rows × cols` starting at `offset`, rows
/// `row_stride` apart, columns adjacent.
#[derive(Clone, Copy, Debug)]
struct Block {
    offset: usize,
    rows: usize,
    cols: usize,
    row_stride: usize,
}

impl Block {
    /// The block as a GEMM operand. An offset past the end gives an empty view, which `gemm`
    /// rejects as an internal error instead of this function panicking.
    fn view<T>(self, data: &[T]) -> MatView<'_, T> {
        let data = data.get(self.offset..).unwrap_or(&[]);
        MatView { data, rows: self.rows, cols: self.cols, row_stride: self.row_stride, col_stride: 1 }
    }

    /// The block as a GEMM destination (its rows are `row_stride` apart).
    fn dst<T>(self, data: &mut [T]) -> &mut [T] {
        data.get_mut(self.offset..).unwrap_or(&mut [])
    }
}

/// The checked shapes of one convolution and the sizes derived from them.
#[derive(Debug)]
struct ConvGeometry {
    layout: Layout,
    batch: usize,
    channels: usize,
    out_channels: usize,
    groups: usize,
    window: Window,
    /// Kernel taps in the kernel's row-major order.
    taps: Vec<[usize; 3]>,
}

impl From<CheckedConv> for ConvGeometry {
    /// The kernels' view of a convolution the contract's [`CheckedConv::new`] accepted.
    fn from(checked: CheckedConv) -> ConvGeometry {
        let window = Window::from(checked.window);
        // The kernel is a live buffer (checked by the dispatch layer), so its taps fit.
        let taps = window.taps();
        ConvGeometry {
            layout: checked.layout,
            batch: checked.batch,
            channels: checked.channels,
            out_channels: checked.out_channels,
            groups: checked.groups,
            window,
            taps,
        }
    }
}

impl ConvGeometry {
    /// The direct (no im2col) plan for f32, when [`DirectConv`] (ChannelsLast) or
    /// [`NchwConv`] (ChannelsFirst) takes this convolution.
    fn direct(&self) -> Option<Direct> {
        let (window, batch, groups) = (&self.window, self.batch, self.groups);
        match self.layout {
            Layout::ChannelsLast => {
                DirectConv::new(window, batch, self.channels, self.out_channels, groups).map(Direct::Last)
            }
            Layout::ChannelsFirst => {
                NchwConv::new(window, batch, self.channels, self.out_channels, groups).map(Direct::First)
            }
        }
    }

    /// Input channels per group.
    fn group_in(&self) -> usize {
        self.channels / self.groups
    }

    /// Output channels per group.
    fn group_out(&self) -> usize {
        self.out_channels / self.groups
    }

    /// Elements of one batch element of the input.
    fn x_len(&self) -> usize {
        self.channels * self.window.input_len()
    }

    /// Elements of one batch element of the output.
    fn y_len(&self) -> usize {
        self.out_channels * self.window.output_len()
    }

    /// Values one output position of one group reads: the patch matrix's inner dimension.
    /// Saturating, as it is only used where the kernel (which holds O/G of them) is non-empty.
    fn patch_len(&self) -> usize {
        self.group_in().saturating_mul(self.taps.len())
    }

    /// A 1×1 kernel with stride 1 and no padding reads each input position once, in order:
    /// the input itself is the patch matrix.
    fn is_pointwise(&self) -> bool {
        let w = &self.window;
        w.window == [1; 3] && w.stride == [1; 3] && w.pad_before == [0; 3] && w.output == w.input
    }

    /// The output positions in chunks whose patch matrix fits the scratch budget.
    fn chunks(&self) -> impl Iterator<Item = Range<usize>> + use<> {
        let total = self.window.output_len();
        let chunk = (SCRATCH_ELEMENTS / self.patch_len().max(1)).max(1);
        (0..total).step_by(chunk).map(move |start| start..(start + chunk).min(total))
    }

    /// Group `g`'s slice of the kernel as its layout's GEMM operand: `O/G × patch` for
    /// ChannelsFirst (rows are output channels), `patch × O/G` for ChannelsLast.
    fn kernel_block(&self, g: usize) -> Block {
        let (group_out, patch) = (self.group_out(), self.patch_len());
        match self.layout {
            Layout::ChannelsFirst => {
                Block { offset: g * group_out * patch, rows: group_out, cols: patch, row_stride: patch }
            }
            Layout::ChannelsLast => {
                Block { offset: g * group_out, rows: patch, cols: group_out, row_stride: self.out_channels }
            }
        }
    }

    /// Group `g`'s output channels at output `positions` of one batch element: `O/G × n`
    /// for ChannelsFirst, `n × O/G` for ChannelsLast.
    fn output_block(&self, g: usize, positions: &Range<usize>) -> Block {
        let (group_out, n, total) = (self.group_out(), positions.len(), self.window.output_len());
        match self.layout {
            Layout::ChannelsFirst => {
                Block { offset: g * group_out * total + positions.start, rows: group_out, cols: n, row_stride: total }
            }
            Layout::ChannelsLast => Block {
                offset: positions.start * self.out_channels + g * group_out,
                rows: n,
                cols: group_out,
                row_stride: self.out_channels,
            },
        }
    }

    /// Group `g`'s input channels of one batch element: `C/G × S` for ChannelsFirst,
    /// `S × C/G` for ChannelsLast. For a pointwise kernel this is the patch matrix.
    fn input_block(&self, g: usize) -> Block {
        let (group_in, len) = (self.group_in(), self.window.input_len());
        match self.layout {
            Layout::ChannelsFirst => Block { offset: g * group_in * len, rows: group_in, cols: len, row_stride: len },
            Layout::ChannelsLast => {
                Block { offset: g * group_in, rows: len, cols: group_in, row_stride: self.channels }
            }
        }
    }

    /// The patch matrix layout for `n` positions: `patch × n` (ChannelsFirst) or
    /// `n × patch` (ChannelsLast), dense.
    fn patch_block(&self, n: usize) -> Block {
        let patch = self.patch_len();
        match self.layout {
            Layout::ChannelsFirst => Block { offset: 0, rows: patch, cols: n, row_stride: n },
            Layout::ChannelsLast => Block { offset: 0, rows: n, cols: patch, row_stride: patch },
        }
    }

    /// One batch element of the forward pass.
    fn forward_one<T: Float + GemmScalar>(
        &self,
        engine: &dyn GemmEngine,
        x_b: &[T],
        w: &[T],
        y_b: &mut [T],
        scratch: &mut Vec<T>,
    ) -> Result<()> {
        let all = 0..self.window.output_len();
        for g in 0..self.groups {
            let kernel = self.kernel_block(g).view(w);
            if self.is_pointwise() {
                let input = self.input_block(g).view(x_b);
                let out = self.output_block(g, &all);
                match self.layout {
                    Layout::ChannelsFirst => gemm(engine, kernel, input, out.dst(y_b), out.row_stride, false)?,
                    Layout::ChannelsLast => gemm(engine, input, kernel, out.dst(y_b), out.row_stride, false)?,
                }
                continue;
            }
            for positions in self.chunks() {
                let patches = self.patch_block(positions.len()).view(self.im2col(x_b, g, &positions, scratch));
                let out = self.output_block(g, &positions);
                match self.layout {
                    Layout::ChannelsFirst => gemm(engine, kernel, patches, out.dst(y_b), out.row_stride, false)?,
                    Layout::ChannelsLast => gemm(engine, patches, kernel, out.dst(y_b), out.row_stride, false)?,
                }
            }
        }
        Ok(())
    }

    /// One batch element of the data gradient; `dx_b` is zero on entry.
    fn backward_data_one<T: Float + GemmScalar>(
        &self,
        engine: &dyn GemmEngine,
        dy_b: &[T],
        w: &[T],
        dx_b: &mut [T],
        scratch: &mut Vec<T>,
    ) -> Result<()> {
        let all = 0..self.window.output_len();
        for g in 0..self.groups {
            let kernel_t = self.kernel_block(g).view(w).t();
            if self.is_pointwise() {
                let dy = self.output_block(g, &all).view(dy_b);
                let dx = self.input_block(g);
                match self.layout {
                    Layout::ChannelsFirst => gemm(engine, kernel_t, dy, dx.dst(dx_b), dx.row_stride, false)?,
                    Layout::ChannelsLast => gemm(engine, dy, kernel_t, dx.dst(dx_b), dx.row_stride, false)?,
                }
                continue;
            }
            for positions in self.chunks() {
                let dy = self.output_block(g, &positions).view(dy_b);
                let block = self.patch_block(positions.len());
                let len = block.rows * block.cols;
                if scratch.len() < len {
                    scratch.resize(len, T::ZERO);
                }
                let patches = &mut scratch[..len];
                match self.layout {
                    Layout::ChannelsFirst => gemm(engine, kernel_t, dy, patches, block.row_stride, false)?,
                    Layout::ChannelsLast => gemm(engine, dy, kernel_t, patches, block.row_stride, false)?,
                }
                self.col2im(patches, g, &positions, dx_b);
            }
        }
        Ok(())
    }

    /// One batch element's contribution to the filter gradient, added to `dk`.
    fn backward_filter_one<T: Float + GemmScalar>(
        &self,
        engine: &dyn GemmEngine,
        x_b: &[T],
        dy_b: &[T],
        dk: &mut [T],
        scratch: &mut Vec<T>,
    ) -> Result<()> {
        let all = 0..self.window.output_len();
        for g in 0..self.groups {
            let dkernel = self.kernel_block(g);
            if self.is_pointwise() {
                let dy = self.output_block(g, &all).view(dy_b);
                let input_t = self.input_block(g).view(x_b).t();
                match self.layout {
                    Layout::ChannelsFirst => gemm(engine, dy, input_t, dkernel.dst(dk), dkernel.row_stride, true)?,
                    Layout::ChannelsLast => gemm(engine, input_t, dy, dkernel.dst(dk), dkernel.row_stride, true)?,
                }
                continue;
            }
            for positions in self.chunks() {
                let dy = self.output_block(g, &positions).view(dy_b);
                let patches_t = self.patch_block(positions.len()).view(self.im2col(x_b, g, &positions, scratch)).t();
                match self.layout {
                    Layout::ChannelsFirst => gemm(engine, dy, patches_t, dkernel.dst(dk), dkernel.row_stride, true)?,
                    Layout::ChannelsLast => gemm(engine, patches_t, dy, dkernel.dst(dk), dkernel.row_stride, true)?,
                }
            }
        }
        Ok(())
    }

    /// Fills `scratch` with group `g`'s patch matrix for the output `positions` of the batch
    /// element `x_b` (see the module docs for its layout) and returns it.
    fn im2col<'s, T: Float>(&self, x_b: &[T], g: usize, positions: &Range<usize>, scratch: &'s mut Vec<T>) -> &'s [T] {
        let (n, patch, group_in) = (positions.len(), self.patch_len(), self.group_in());
        let len = n * patch;
        if scratch.len() < len {
            scratch.resize(len, T::ZERO);
        }
        let patches = &mut scratch[..len];
        let parallel = len >= PARALLEL_FILL && several_threads();
        match self.layout {
            Layout::ChannelsFirst => {
                // Row (c, tap) holds what that tap of channel c reads at each position.
                let plane_len = self.window.input_len();
                let stride = self.window.stride[2];
                let fill = |(row, dst): (usize, &mut [T])| {
                    let c = g * group_in + row / self.taps.len();
                    let plane = x_b.get(c * plane_len..(c + 1) * plane_len).unwrap_or(&[]);
                    self.window.for_each_stretch(
                        self.taps[row % self.taps.len()],
                        positions.clone(),
                        |at, len, src| {
                            let dst = &mut dst[at..at + len];
                            match src {
                                None => dst.fill(T::ZERO),
                                Some(i) if stride == 1 => dst.copy_from_slice(&plane[i..i + len]),
                                Some(i) => {
                                    dst.iter_mut().zip(plane[i..].iter().step_by(stride)).for_each(|(d, &v)| *d = v)
                                }
                            }
                        },
                    );
                };
                if parallel {
                    patches.par_chunks_mut(n).enumerate().for_each(fill);
                } else {
                    patches.chunks_mut(n).enumerate().for_each(fill);
                }
            }
            Layout::ChannelsLast => {
                // Row p holds, tap by tap, the group's channel vector that tap reads.
                let fill = |(row, dst): (usize, &mut [T])| {
                    let o = self.window.output_index(positions.start + row);
                    self.for_each_patch_segment(g, o, |at, len, src| {
                        let dst = &mut dst[at..at + len];
                        match src {
                            Some(i) => dst.copy_from_slice(&x_b[i..i + len]),
                            None => dst.fill(T::ZERO),
                        }
                    });
                };
                if parallel {
                    patches.par_chunks_mut(patch).enumerate().for_each(fill);
                } else {
                    patches.chunks_mut(patch).enumerate().for_each(fill);
                }
            }
        }
        patches
    }

    /// Walks the ChannelsLast patch row of output position `o` (group `g`) in segments,
    /// calling `f(at, len, source)`: the `len` entries from `at` read the input elements
    /// `source..source + len` of the batch element when `source` is `Some`, and padding when
    /// it is `None`. With one group and undilated columns, the taps of one kernel row read
    /// adjacent channel vectors, so a whole kernel row is one segment (up to its clipped
    /// ends) instead of one segment per tap: im2col and col2im's inner loop.
    #[inline(always)]
    fn for_each_patch_segment(&self, g: usize, o: [usize; 3], mut f: impl FnMut(usize, usize, Option<usize>)) {
        let w = &self.window;
        let group_in = self.group_in();
        let run = if group_in == self.channels && w.dilation[2] == 1 { w.window[2] } else { 1 };
        for (r, taps) in self.taps.chunks(run).enumerate() {
            let (k, len, at) = (taps[0], taps.len(), r * run * group_in);
            let line = match (w.source(0, o[0], k[0]), w.source(1, o[1], k[1])) {
                (Some(i0), Some(i1)) => (i0 * w.input[1] + i1) * w.input[2],
                _ => {
                    f(at, len * group_in, None);
                    continue;
                }
            };
            // The run's taps read the padded columns `first..first + len` (one apart: a run
            // of several taps is undilated); those before `lo` and from `hi` are padding.
            let first = o[2] * w.stride[2] + k[2] * w.dilation[2];
            let pad = w.pad_before[2];
            let lo = pad.saturating_sub(first).min(len);
            let hi = (pad + w.input[2]).saturating_sub(first).min(len).max(lo);
            if lo > 0 {
                f(at, lo * group_in, None);
            }
            if hi > lo {
                let column = line + first + lo - pad;
                f(at + lo * group_in, (hi - lo) * group_in, Some(column * self.channels + g * group_in));
            }
            if len > hi {
                f(at + hi * group_in, (len - hi) * group_in, None);
            }
        }
    }

    /// The adjoint of [`im2col`](Self::im2col): adds each entry of group `g`'s patch matrix
    /// for the output `positions` to the input element it was read from, in `dx_b`.
    fn col2im<T: Float>(&self, patches: &[T], g: usize, positions: &Range<usize>, dx_b: &mut [T]) {
        let (n, group_in, taps) = (positions.len(), self.group_in(), self.taps.len());
        match self.layout {
            Layout::ChannelsFirst => {
                // Channel planes are disjoint, so they can be scattered in parallel; the taps
                // of one channel overlap and stay on one thread.
                let plane_len = self.window.input_len();
                let stride = self.window.stride[2];
                let planes = &mut dx_b[g * group_in * plane_len..(g + 1) * group_in * plane_len];
                let scatter = |(plane, rows): (&mut [T], &[T])| {
                    for (k, row) in self.taps.iter().zip(rows.chunks(n)) {
                        self.window.for_each_stretch(*k, positions.clone(), |at, len, src| {
                            if let Some(i) = src {
                                let src = &row[at..at + len];
                                plane[i..].iter_mut().step_by(stride).zip(src).for_each(|(d, &v)| *d += v);
                            }
                        });
                    }
                };
                if patches.len() >= PARALLEL_FILL && several_threads() {
                    planes.par_chunks_mut(plane_len).zip(patches.par_chunks(taps * n)).for_each(scatter);
                } else {
                    planes.chunks_mut(plane_len).zip(patches.chunks(taps * n)).for_each(scatter);
                }
            }
            Layout::ChannelsLast => {
                // Neighbouring positions overlap in the input, so this scatter is sequential.
                vectorized(
                    #[inline(always)]
                    || {
                        for (row, values) in patches.chunks(taps * group_in).enumerate() {
                            let o = self.window.output_index(positions.start + row);
                            self.for_each_patch_segment(g, o, |at, len, src| {
                                if let Some(i) = src {
                                    let values = &values[at..at + len];
                                    dx_b[i..i + len].iter_mut().zip(values).for_each(|(d, &v)| *d += v);
                                }
                            });
                        }
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use abi_stable::std_types::RSlice;
    use keras_backend_api::{BackendError, DType, ErrorKind};

    use super::*;
    use crate::CpuStorage;
    use crate::ops::matmul::RustGemm;
    use crate::ops::window::test_support::{dot, flat, indices, values};
    use crate::ops::winograd::Winograd;

    /// Deterministic pseudo-random values in [-1, 1) (a 64-bit LCG).
    fn noise(len: usize, seed: u64) -> Vec<f64> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
            })
            .collect()
    }

    /// `out[perm-applied index] = data[index]`: NumPy's `transpose(data, perm)`.
    fn transpose(data: &[f64], shape: &[usize], perm: &[usize]) -> Vec<f64> {
        let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
        let mut out = vec![0.0; data.len()];
        for index in indices(&out_shape) {
            let source: Vec<usize> =
                (0..shape.len()).map(|d| index[perm.iter().position(|&p| p == d).unwrap()]).collect();
            out[flat(&out_shape, &index)] = data[flat(shape, &source)];
        }
        out
    }

    /// The signature shared by the three convolution kernels.
    type ConvKernel = fn(&dyn GemmEngine, Tensor<'_>, Tensor<'_>, TensorMut<'_>, &ConvParams<'_>) -> Result<()>;

    #[derive(Clone, Debug)]
    struct Case {
        layout: Layout,
        batch: usize,
        channels: usize,
        out_channels: usize,
        groups: usize,
        input: Vec<usize>,
        kernel: Vec<usize>,
        strides: Vec<usize>,
        dilation: Vec<usize>,
        pad_before: Vec<usize>,
        pad_after: Vec<usize>,
    }

    impl Case {
        /// Batch 2, 3 → 4 channels, stride 1, no dilation or padding.
        fn new(layout: Layout, input: &[usize], kernel: &[usize]) -> Case {
            let n = input.len();
            Case {
                layout,
                batch: 2,
                channels: 3,
                out_channels: 4,
                groups: 1,
                input: input.to_vec(),
                kernel: kernel.to_vec(),
                strides: vec![1; n],
                dilation: vec![1; n],
                pad_before: vec![0; n],
                pad_after: vec![0; n],
            }
        }

        fn channels(mut self, channels: usize, out_channels: usize, groups: usize) -> Case {
            (self.channels, self.out_channels, self.groups) = (channels, out_channels, groups);
            self
        }

        fn batch(mut self, batch: usize) -> Case {
            self.batch = batch;
            self
        }

        fn strides(mut self, strides: &[usize]) -> Case {
            self.strides = strides.to_vec();
            self
        }

        fn dilation(mut self, dilation: &[usize]) -> Case {
            self.dilation = dilation.to_vec();
            self
        }

        fn pad(mut self, before: &[usize], after: &[usize]) -> Case {
            (self.pad_before, self.pad_after) = (before.to_vec(), after.to_vec());
            self
        }

        fn out_spatial(&self) -> Vec<usize> {
            (0..self.input.len())
                .map(|d| {
                    let padded = self.input[d] + self.pad_before[d] + self.pad_after[d];
                    let span = (self.kernel[d] - 1) * self.dilation[d] + 1;
                    if padded < span { 0 } else { (padded - span) / self.strides[d] + 1 }
                })
                .collect()
        }

        fn image_shape(&self, channels: usize, spatial: &[usize]) -> Vec<usize> {
            match self.layout {
                Layout::ChannelsFirst => [&[self.batch, channels][..], spatial].concat(),
                Layout::ChannelsLast => [&[self.batch][..], spatial, &[channels]].concat(),
            }
        }

        fn x_shape(&self) -> Vec<usize> {
            self.image_shape(self.channels, &self.input)
        }

        fn y_shape(&self) -> Vec<usize> {
            self.image_shape(self.out_channels, &self.out_spatial())
        }

        fn k_shape(&self) -> Vec<usize> {
            let group_in = self.channels / self.groups;
            match self.layout {
                Layout::ChannelsFirst => [&[self.out_channels, group_in][..], &self.kernel].concat(),
                Layout::ChannelsLast => [&self.kernel[..], &[group_in, self.out_channels]].concat(),
            }
        }

        fn params(&self) -> ConvParams<'_> {
            ConvParams {
                layout: self.layout,
                strides: RSlice::from_slice(&self.strides),
                dilation: RSlice::from_slice(&self.dilation),
                pad_before: RSlice::from_slice(&self.pad_before),
                pad_after: RSlice::from_slice(&self.pad_after),
                groups: self.groups,
            }
        }

        /// Calls `f(x index, kernel index, y index)` for every product term of the formula
        /// `y[b, o, q] += x[b, g·C/G + c, q·stride + k·dilation - pad_before] · w[o, c, k]`.
        fn for_each_term(&self, mut f: impl FnMut(usize, usize, usize)) {
            let (x_shape, k_shape, y_shape) = (self.x_shape(), self.k_shape(), self.y_shape());
            let group_in = self.channels / self.groups;
            let group_out = self.out_channels / self.groups;
            for b in 0..self.batch {
                for o in 0..self.out_channels {
                    let g = o / group_out;
                    for q in indices(&self.out_spatial()) {
                        for c in 0..group_in {
                            'taps: for k in indices(&self.kernel) {
                                let mut i = Vec::new();
                                for d in 0..q.len() {
                                    let pos = (q[d] * self.strides[d] + k[d] * self.dilation[d]) as i64
                                        - self.pad_before[d] as i64;
                                    if pos < 0 || pos >= self.input[d] as i64 {
                                        continue 'taps;
                                    }
                                    i.push(pos as usize);
                                }
                                let channel = g * group_in + c;
                                let (xi, ki, yi) = match self.layout {
                                    Layout::ChannelsFirst => (
                                        [&[b, channel][..], &i].concat(),
                                        [&[o, c][..], &k].concat(),
                                        [&[b, o][..], &q].concat(),
                                    ),
                                    Layout::ChannelsLast => (
                                        [&[b][..], &i, &[channel]].concat(),
                                        [&k[..], &[c, o]].concat(),
                                        [&[b][..], &q, &[o]].concat(),
                                    ),
                                };
                                f(flat(&x_shape, &xi), flat(&k_shape, &ki), flat(&y_shape, &yi));
                            }
                        }
                    }
                }
            }
        }

        fn len(shape: &[usize]) -> usize {
            shape.iter().product()
        }

        fn naive_forward(&self, x: &[f64], w: &[f64]) -> Vec<f64> {
            let mut y = vec![0.0; Case::len(&self.y_shape())];
            self.for_each_term(|xi, ki, yi| y[yi] += x[xi] * w[ki]);
            y
        }

        fn naive_backward_data(&self, dy: &[f64], w: &[f64]) -> Vec<f64> {
            let mut dx = vec![0.0; Case::len(&self.x_shape())];
            self.for_each_term(|xi, ki, yi| dx[xi] += dy[yi] * w[ki]);
            dx
        }

        fn naive_backward_filter(&self, x: &[f64], dy: &[f64]) -> Vec<f64> {
            let mut dw = vec![0.0; Case::len(&self.k_shape())];
            self.for_each_term(|xi, ki, yi| dw[ki] += x[xi] * dy[yi]);
            dw
        }

        /// Runs `kernel` on `a` and `b` (with their shapes) into a NaN-filled output of
        /// `out_shape`, and returns the output.
        fn call(
            &self,
            kernel: ConvKernel,
            (a, a_shape): (&[f64], Vec<usize>),
            (b, b_shape): (&[f64], Vec<usize>),
            out_shape: Vec<usize>,
            dtype: DType,
        ) -> Result<Vec<f64>> {
            let (a_data, b_data, mut out) = (storage(a, dtype), storage(b, dtype), garbage(&out_shape, dtype));
            kernel(
                &RustGemm,
                Tensor { data: &a_data, shape: &a_shape },
                Tensor { data: &b_data, shape: &b_shape },
                TensorMut { data: &mut out, shape: &out_shape },
                &self.params(),
            )?;
            Ok(values(&out))
        }

        fn forward(&self, x: &[f64], w: &[f64], dtype: DType) -> Result<Vec<f64>> {
            self.call(conv, (x, self.x_shape()), (w, self.k_shape()), self.y_shape(), dtype)
        }

        fn backward_data(&self, dy: &[f64], w: &[f64], dtype: DType) -> Result<Vec<f64>> {
            self.call(conv_backward_data, (dy, self.y_shape()), (w, self.k_shape()), self.x_shape(), dtype)
        }

        fn backward_filter(&self, x: &[f64], dy: &[f64], dtype: DType) -> Result<Vec<f64>> {
            self.call(conv_backward_filter, (x, self.x_shape()), (dy, self.y_shape()), self.k_shape(), dtype)
        }

        /// Random x, kernel and dy for this case.
        fn inputs(&self, seed: u64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
            (
                noise(Case::len(&self.x_shape()), seed),
                noise(Case::len(&self.k_shape()), seed + 1),
                noise(Case::len(&self.y_shape()), seed + 2),
            )
        }
    }

    fn storage(v: &[f64], dtype: DType) -> CpuStorage {
        match dtype {
            DType::F32 => CpuStorage::F32(v.iter().map(|&v| v as f32).collect()),
            DType::F64 => CpuStorage::F64(v.to_vec()),
            _ => CpuStorage::zeros(dtype, v.len()),
        }
    }

    /// An output buffer full of NaN, so that any element a kernel forgets to write shows.
    fn garbage(shape: &[usize], dtype: DType) -> CpuStorage {
        storage(&vec![f64::NAN; Case::len(shape)], dtype)
    }

    fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= tol * scale, "{what}: element {i} is {g}, expected {w}");
        }
    }

    fn cases() -> Vec<Case> {
        use Layout::{ChannelsFirst as CF, ChannelsLast as CL};
        vec![
            Case::new(CF, &[9], &[3]),
            Case::new(CL, &[9], &[3]).strides(&[2]).pad(&[1], &[1]),
            Case::new(CL, &[10], &[4]).dilation(&[2]).pad(&[0], &[1]).batch(3),
            Case::new(CF, &[7, 6], &[3, 2]).strides(&[2, 1]).dilation(&[1, 2]).pad(&[1, 0], &[1, 2]),
            // SAME with an even kernel: TensorFlow pads after only.
            Case::new(CL, &[6, 5], &[2, 2]).pad(&[0, 0], &[1, 1]),
            Case::new(CF, &[6, 5], &[2, 2]).pad(&[0, 0], &[1, 1]).strides(&[2, 2]),
            Case::new(CL, &[5, 5], &[3, 3]).channels(4, 6, 2).pad(&[1, 1], &[1, 1]),
            Case::new(CF, &[5, 6], &[3, 3]).channels(4, 6, 2).strides(&[2, 2]),
            // depthwise with multiplier 2
            Case::new(CF, &[7, 7], &[3, 3]).channels(3, 6, 3).strides(&[2, 2]).pad(&[1, 1], &[1, 1]),
            Case::new(CL, &[7, 7], &[3, 3]).channels(3, 3, 3).dilation(&[2, 2]).pad(&[2, 2], &[2, 2]),
            Case::new(CF, &[4, 5, 3], &[2, 3, 2]).strides(&[1, 2, 1]).pad(&[0, 1, 1], &[1, 1, 0]).batch(3),
            Case::new(CL, &[5, 4, 4], &[2, 2, 3]).dilation(&[2, 1, 1]).channels(4, 2, 2).batch(3),
            // pointwise (the no-im2col path) and a strided 1×1 (the im2col path)
            Case::new(CF, &[4, 5], &[1, 1]).channels(4, 6, 2),
            Case::new(CL, &[4, 5], &[1, 1]).channels(4, 6, 2),
            Case::new(CL, &[3, 2, 4], &[1, 1, 1]).batch(3),
            Case::new(CF, &[5, 5], &[1, 1]).strides(&[2, 2]),
            // stride above the kernel: some inputs are never read; kernel wider than the input
            Case::new(CF, &[11], &[2]).strides(&[3]),
            Case::new(CL, &[2], &[4]).pad(&[2], &[2]),
            Case::new(CF, &[3, 3], &[5, 5]).pad(&[2, 2], &[2, 2]).batch(1),
        ]
    }

    #[test]
    fn forward_matches_naive_reference() {
        for (n, case) in cases().iter().enumerate() {
            let (x, w, _) = case.inputs(n as u64 * 10);
            let want = case.naive_forward(&x, &w);
            assert_close(&format!("f64 {case:?}"), &case.forward(&x, &w, DType::F64).unwrap(), &want, 1e-12);
            assert_close(&format!("f32 {case:?}"), &case.forward(&x, &w, DType::F32).unwrap(), &want, 1e-5);
        }
    }

    #[test]
    fn backward_matches_naive_reference() {
        for (n, case) in cases().iter().enumerate() {
            let (x, w, dy) = case.inputs(n as u64 * 10 + 5);
            let want_dx = case.naive_backward_data(&dy, &w);
            let want_dw = case.naive_backward_filter(&x, &dy);
            assert_close(&format!("dx {case:?}"), &case.backward_data(&dy, &w, DType::F64).unwrap(), &want_dx, 1e-12);
            assert_close(&format!("dw {case:?}"), &case.backward_filter(&x, &dy, DType::F64).unwrap(), &want_dw, 1e-12);
            assert_close(
                &format!("f32 dx {case:?}"),
                &case.backward_data(&dy, &w, DType::F32).unwrap(),
                &want_dx,
                1e-5,
            );
            assert_close(
                &format!("f32 dw {case:?}"),
                &case.backward_filter(&x, &dy, DType::F32).unwrap(),
                &want_dw,
                1e-5,
            );
        }
    }

    #[test]
    fn backward_kernels_are_adjoints() {
        // <conv(x, w), dy> = <x, conv_backward_data(dy, w)> = <w, conv_backward_filter(x, dy)>
        for (n, case) in cases().iter().enumerate() {
            let (x, w, dy) = case.inputs(n as u64 * 10 + 7);
            let y = case.forward(&x, &w, DType::F64).unwrap();
            let dx = case.backward_data(&dy, &w, DType::F64).unwrap();
            let dw = case.backward_filter(&x, &dy, DType::F64).unwrap();
            let (a, b, c) = (dot(&y, &dy), dot(&x, &dx), dot(&w, &dw));
            let scale = 1.0 + a.abs();
            assert!((a - b).abs() < 1e-10 * scale && (a - c).abs() < 1e-10 * scale, "{case:?}: {a} {b} {c}");
        }
    }

    #[test]
    fn chunked_and_parallel_paths() {
        // A patch matrix larger than the (test) scratch budget runs in several chunks, filled
        // in parallel; batch 3 runs on several workers and sums partial filter gradients.
        for layout in [Layout::ChannelsFirst, Layout::ChannelsLast] {
            let case = Case::new(layout, &[13, 12], &[3, 3]).channels(8, 4, 2).pad(&[1, 1], &[1, 1]).batch(3);
            assert!(case.channels / 2 * 9 * 13 * 12 > 4 * SCRATCH_ELEMENTS);
            let (x, w, dy) = case.inputs(99);
            assert_close("forward", &case.forward(&x, &w, DType::F64).unwrap(), &case.naive_forward(&x, &w), 1e-12);
            let dx = case.backward_data(&dy, &w, DType::F64).unwrap();
            assert_close("dx", &dx, &case.naive_backward_data(&dy, &w), 1e-12);
            let dw = case.backward_filter(&x, &dy, DType::F32).unwrap();
            assert_close("dw", &dw, &case.naive_backward_filter(&x, &dy), 1e-5);
        }
    }

    #[test]
    fn hand_computed_1d() {
        // x = [1, 2, 3, 4], w = [1, 0, -1]: y = [1 - 3, 2 - 4].
        let case = Case::new(Layout::ChannelsFirst, &[4], &[3]).channels(1, 1, 1).batch(1);
        let (x, w) = ([1.0, 2.0, 3.0, 4.0], [1.0, 0.0, -1.0]);
        assert_eq!(case.forward(&x, &w, DType::F64).unwrap(), vec![-2.0, -2.0]);
        // dx[i] = Σ_p dy[p]·w[i - p]; dw[k] = Σ_p dy[p]·x[p + k].
        let dy = [1.0, 10.0];
        assert_eq!(case.backward_data(&dy, &w, DType::F64).unwrap(), vec![1.0, 10.0, -1.0, -10.0]);
        assert_eq!(case.backward_filter(&x, &dy, DType::F32).unwrap(), vec![21.0, 32.0, 43.0]);
        // Stride 2 over 5 inputs with a 2-tap kernel never reads x[4]: its gradient is 0.
        let case = Case::new(Layout::ChannelsLast, &[5], &[2]).channels(1, 1, 1).batch(1).strides(&[2]);
        let (w, dy) = ([1.0, 2.0], [3.0, 4.0]);
        assert_eq!(case.backward_data(&dy, &w, DType::F64).unwrap(), vec![3.0, 6.0, 4.0, 8.0, 0.0]);
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(case.forward(&x, &w, DType::F64).unwrap(), vec![5.0, 11.0]);
        assert_eq!(case.backward_filter(&x, &dy, DType::F64).unwrap(), vec![3.0 + 12.0, 6.0 + 16.0]);
    }

    #[test]
    fn hand_computed_2d_same_padding() {
        // 3×3 ones kernel over a 3×3 image with pad 1: each output sums its in-bounds neighbours.
        let case = Case::new(Layout::ChannelsLast, &[3, 3], &[3, 3]).channels(1, 1, 1).batch(1).pad(&[1, 1], &[1, 1]);
        let x: Vec<f64> = (1..=9).map(f64::from).collect();
        let y = case.forward(&x, &[1.0; 9], DType::F32).unwrap();
        assert_eq!(y, vec![12.0, 21.0, 16.0, 27.0, 45.0, 33.0, 24.0, 39.0, 28.0]);
    }

    #[test]
    fn layouts_agree() {
        // ChannelsFirst on x, w equals ChannelsLast on the transposed x, w, transposed back.
        for (cf, seed) in [
            (
                Case::new(Layout::ChannelsFirst, &[6, 7], &[3, 2])
                    .strides(&[2, 1])
                    .pad(&[1, 0], &[0, 1])
                    .channels(4, 6, 2),
                1,
            ),
            (Case::new(Layout::ChannelsFirst, &[3, 4, 5], &[2, 2, 2]).dilation(&[1, 2, 1]).batch(3), 2),
            (Case::new(Layout::ChannelsFirst, &[8], &[3]).channels(3, 3, 3), 3),
        ] {
            let cl = Case { layout: Layout::ChannelsLast, ..cf.clone() };
            let rank = cf.x_shape().len();
            let to_last: Vec<usize> = [0].into_iter().chain(2..rank).chain([1]).collect();
            let kernel_to_last: Vec<usize> = (2..rank).chain([1, 0]).collect();
            let (x, w, _) = cf.inputs(seed);
            let y_cf = cf.forward(&x, &w, DType::F64).unwrap();
            let x_cl = transpose(&x, &cf.x_shape(), &to_last);
            let w_cl = transpose(&w, &cf.k_shape(), &kernel_to_last);
            let y_cl = cl.forward(&x_cl, &w_cl, DType::F64).unwrap();
            assert_close("layouts", &transpose(&y_cf, &cf.y_shape(), &to_last), &y_cl, 1e-12);
        }
    }

    /// The f32 direct kernels (taken for ChannelsLast 2-D f32 on AVX-512 CPUs) against the f64
    /// GEMM path, over channel counts off the 16-lane grid, edges, asymmetric padding and
    /// strides; on other CPUs this checks the f32 GEMM path instead.
    #[test]
    fn direct_path_matches_gemm_path() {
        use Layout::ChannelsLast as CL;
        let mut cases = Vec::new();
        for (n, &(cin, cout)) in
            [(1, 1), (3, 17), (17, 3), (1, 32), (32, 64), (64, 64), (64, 70), (70, 32), (16, 48)].iter().enumerate()
        {
            let batch = [1, 3][n % 2];
            cases.push(Case::new(CL, &[9, 11], &[3, 3]).channels(cin, cout, 1).batch(batch).pad(&[1, 1], &[1, 1]));
            cases.push(Case::new(CL, &[8, 13], &[3, 3]).channels(cin, cout, 1).batch(batch).pad(&[1, 0], &[0, 2]));
            cases.push(
                Case::new(CL, &[9, 10], &[3, 3])
                    .channels(cin, cout, 1)
                    .batch(batch)
                    .strides(&[2, 2])
                    .pad(&[1, 1], &[1, 1]),
            );
            cases.push(
                Case::new(CL, &[7, 12], &[2, 4])
                    .channels(cin, cout, 1)
                    .batch(batch)
                    .strides(&[1, 2])
                    .pad(&[0, 2], &[1, 1]),
            );
        }
        cases.extend([
            // valid, like the CNN training step; a window wider than the image; pointwise;
            // padding beyond the window (the data gradient falls back); 1-d; a tile-sized row.
            Case::new(CL, &[12, 12], &[3, 3]).channels(1, 32, 1).batch(3),
            Case::new(CL, &[13, 13], &[3, 3]).channels(32, 64, 1),
            Case::new(CL, &[3, 2], &[5, 5]).channels(3, 20, 1).pad(&[2, 2], &[2, 2]),
            Case::new(CL, &[5, 6], &[1, 1]).channels(20, 33, 1).pad(&[1, 0], &[0, 1]),
            Case::new(CL, &[5, 6], &[2, 2]).channels(5, 18, 1).pad(&[3, 2], &[0, 0]),
            Case::new(CL, &[21], &[3]).channels(17, 40, 1).pad(&[1], &[1]),
            Case::new(CL, &[4, 64], &[3, 3]).channels(16, 64, 1).pad(&[1, 1], &[1, 1]),
            // Winograd: a row of tiles split over chunks (65 tiles, 32 a chunk); a chunk of
            // several rows of tiles (80 channels: 25 tiles a chunk, 3 rows of 7), an odd
            // output width, padding at one side only and 24 output channels.
            Case::new(CL, &[5, 130], &[3, 3]).channels(64, 64, 1).pad(&[1, 1], &[1, 1]),
            Case::new(CL, &[11, 14], &[3, 3]).channels(80, 24, 1).batch(2).pad(&[0, 1], &[2, 0]),
        ]);
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| check_f32_against_f64(&cases));
        }
    }

    /// The f32 forward and gradients of each case against the f64 GEMM path, with tolerances
    /// that grow with the length of the sums.
    fn check_f32_against_f64(cases: &[Case]) {
        for (n, case) in cases.iter().enumerate() {
            let (x, w, dy) = case.inputs(1000 + n as u64);
            let reduced = (case.channels * case.kernel.iter().product::<usize>()) as f64;
            let tol = 1e-5 * reduced.sqrt().max(1.0);
            let want = case.forward(&x, &w, DType::F64).unwrap();
            assert_close(&format!("forward {case:?}"), &case.forward(&x, &w, DType::F32).unwrap(), &want, tol);
            let dx_tol = 1e-5 * ((case.out_channels * case.kernel.iter().product::<usize>()) as f64).sqrt();
            let want = case.backward_data(&dy, &w, DType::F64).unwrap();
            assert_close(&format!("dx {case:?}"), &case.backward_data(&dy, &w, DType::F32).unwrap(), &want, dx_tol);
            let pixels = (case.batch * case.out_spatial().iter().product::<usize>()) as f64;
            let want = case.backward_filter(&x, &dy, DType::F64).unwrap();
            let got = case.backward_filter(&x, &dy, DType::F32).unwrap();
            assert_close(&format!("dw {case:?}"), &got, &want, 1e-5 * pixels.sqrt());
        }
    }

    /// The same for the ChannelsFirst direct kernels, on pools of 1 and 2 threads: rows
    /// narrower than a vector, off the 16-lane grid, wider than a tile; channel counts off the
    /// tiles; padding at one side only, beyond the window; row strides; 1-d.
    #[test]
    fn channels_first_direct_path_matches_gemm_path() {
        use Layout::ChannelsFirst as CF;
        let mut cases = Vec::new();
        for (n, &(cin, cout)) in [(1, 1), (3, 17), (17, 3), (1, 7), (8, 13), (5, 64), (64, 5)].iter().enumerate() {
            let batch = [1, 3][n % 2];
            for (h, w) in [(9, 11), (5, 16), (7, 37), (4, 64), (3, 67), (6, 130)] {
                let case = Case::new(CF, &[h, w], &[3, 3]).channels(cin, cout, 1).batch(batch);
                cases.push(case.clone().pad(&[1, 1], &[1, 1]));
                cases.push(case.clone().pad(&[0, 2], &[2, 0]));
            }
            cases.push(
                Case::new(CF, &[9, 21], &[3, 3])
                    .channels(cin, cout, 1)
                    .batch(batch)
                    .strides(&[2, 1])
                    .pad(&[1, 1], &[1, 1]),
            );
            cases.push(Case::new(CF, &[7, 20], &[2, 4]).channels(cin, cout, 1).batch(batch).pad(&[1, 3], &[0, 0]));
        }
        cases.extend([
            // valid; a window wider than the image; taller and wider than the tiles' 3×3 taps;
            // padding beyond the window (the data gradient falls back); 1-d; a strided column
            // and a pointwise kernel (both GEMM); rows narrower than a vector, down to one
            // pixel (the filter gradient of the narrowest on GEMM).
            Case::new(CF, &[12, 18], &[3, 3]).channels(2, 32, 1).batch(3),
            Case::new(CF, &[3, 9], &[5, 12]).channels(3, 20, 1).pad(&[2, 2], &[2, 5]),
            Case::new(CF, &[11, 40], &[7, 5]).channels(4, 9, 1).pad(&[3, 2], &[3, 2]),
            Case::new(CF, &[5, 20], &[2, 2]).channels(5, 18, 1).pad(&[3, 2], &[0, 0]),
            Case::new(CF, &[45], &[3]).channels(17, 40, 1).pad(&[1], &[1]),
            Case::new(CF, &[9, 30], &[3, 3]).channels(6, 7, 1).strides(&[1, 2]).pad(&[1, 1], &[1, 1]),
            Case::new(CF, &[5, 30], &[1, 1]).channels(20, 33, 1),
            Case::new(CF, &[9, 6], &[3, 3]).channels(6, 7, 1).pad(&[1, 1], &[1, 1]),
            Case::new(CF, &[6, 4], &[3, 3]).channels(5, 19, 1).batch(2).pad(&[1, 1], &[1, 1]),
            Case::new(CF, &[5, 3], &[3, 2]).channels(17, 3, 1).pad(&[1, 0], &[1, 1]),
            Case::new(CF, &[4, 1], &[3, 3]).channels(8, 16, 1).batch(3).pad(&[1, 1], &[1, 1]),
            Case::new(CF, &[7, 5], &[2, 2]).channels(3, 33, 1).strides(&[2, 1]),
        ]);
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| check_f32_against_f64(&cases));
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn direct_path_takes_only_its_cases() {
        let geometry = |case: &Case| {
            let params = case.params();
            let (x, k, y) = (case.x_shape(), case.k_shape(), case.y_shape());
            ConvGeometry::from(CheckedConv::new("conv", ["x", "kernel", "out"], &x, &k, &y, &params).unwrap())
        };
        let plain = Case::new(Layout::ChannelsLast, &[5, 5], &[3, 3]);
        let avx512 = std::arch::is_x86_feature_detected!("avx512f");
        assert_eq!(geometry(&plain).direct().is_some(), avx512);
        assert!(geometry(&plain.clone().dilation(&[1, 2])).direct().is_none());
        assert!(geometry(&plain.clone().channels(4, 6, 2)).direct().is_none());
        assert!(geometry(&Case::new(Layout::ChannelsLast, &[3, 3, 3], &[2, 2, 2])).direct().is_none());
        // Winograd takes 3×3 kernels at stride 1 with 16 channels or more on both sides.
        let winograd = |case: Case| match geometry(&case).direct() {
            Some(Direct::Last(d)) => Winograd::new(&d).is_some(),
            _ => false,
        };
        let wide = plain.clone().channels(16, 16, 1);
        assert_eq!(winograd(wide.clone()), avx512);
        assert_eq!(winograd(wide.clone().pad(&[2, 0], &[0, 1])), avx512);
        assert!(!winograd(wide.clone().strides(&[1, 2])));
        assert!(!winograd(wide.clone().channels(15, 16, 1)));
        assert!(!winograd(wide.clone().channels(16, 15, 1)));
        assert!(!winograd(Case::new(Layout::ChannelsLast, &[5, 5], &[3, 2]).channels(16, 16, 1)));
        let first = Case { layout: Layout::ChannelsFirst, ..plain.clone() };
        assert!(matches!(geometry(&first).direct(), Some(Direct::First(_))) == avx512);
        // Every row width runs direct, but the filter gradient of rows narrower than
        // MIN_FILTER_WIDTH, a pointwise kernel and the data gradient of a row stride stay on GEMM.
        let takes = |case: Case| match geometry(&case).direct() {
            Some(Direct::First(d)) => [d.takes_forward(), d.takes_backward_data(), d.takes_backward_filter()],
            _ => [false; 3],
        };
        let wide = Case::new(Layout::ChannelsFirst, &[9, 11], &[3, 3]).pad(&[1, 1], &[1, 1]);
        assert_eq!(takes(wide.clone()), [avx512; 3]);
        assert_eq!(takes(wide.clone().strides(&[2, 1])), [avx512, false, avx512]);
        assert_eq!(takes(Case::new(Layout::ChannelsFirst, &[9, 5], &[3, 3]).pad(&[1, 1], &[1, 1])), [avx512; 3]);
        assert_eq!(
            takes(Case::new(Layout::ChannelsFirst, &[9, 4], &[3, 3]).pad(&[1, 1], &[1, 1])),
            [avx512, avx512, false]
        );
        assert_eq!(takes(Case::new(Layout::ChannelsFirst, &[9, 11], &[1, 1])), [false; 3]);
        assert!(geometry(&first.clone().strides(&[1, 2])).direct().is_none());
        assert!(geometry(&first.clone().dilation(&[2, 1])).direct().is_none());
        assert!(geometry(&first.clone().channels(4, 6, 2)).direct().is_none());
        assert!(
            geometry(&Case {
                layout: Layout::ChannelsFirst,
                ..Case::new(Layout::ChannelsLast, &[3, 3, 3], &[2, 2, 2])
            })
            .direct()
            .is_none()
        );
    }

    fn error(case: &Case, x_shape: &[usize], k_shape: &[usize], y_shape: &[usize]) -> BackendError {
        let xs = CpuStorage::zeros(DType::F32, x_shape.iter().product());
        let ks = CpuStorage::zeros(DType::F32, k_shape.iter().product());
        let mut ys = CpuStorage::zeros(DType::F32, y_shape.iter().product());
        conv(
            &RustGemm,
            Tensor { data: &xs, shape: x_shape },
            Tensor { data: &ks, shape: k_shape },
            TensorMut { data: &mut ys, shape: y_shape },
            &case.params(),
        )
        .unwrap_err()
    }

    #[test]
    fn rejects_bad_shapes_and_params() {
        let case = Case::new(Layout::ChannelsLast, &[7, 7], &[3, 3]).batch(2).channels(3, 8, 1);
        let e = error(&case, &[2, 7, 7, 3], &[3, 3, 4, 8], &[2, 5, 5, 8]);
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert!(
            e.message.contains("conv: `kernel` (3, 3, 4, 8) expects 4 input channels but `x` (2, 7, 7, 3) has 3"),
            "{e}"
        );
        let e = error(&case, &[2, 7, 7, 3], &[3, 3, 3, 8], &[2, 7, 7, 8]);
        assert!(e.message.contains("`out` has shape (2, 7, 7, 8)") && e.message.contains("(2, 5, 5, 8)"), "{e}");
        let e = error(&case, &[2, 7, 3], &[3, 3, 8], &[2, 5, 8]);
        assert!(e.message.contains("strides [1, 1] has 2 entries for 1 spatial dims"), "{e}");
        let e = error(&case, &[7, 3], &[3, 3, 8], &[5, 8]);
        assert!(e.message.contains("rank 3, 4 or 5"), "{e}");
        let e = error(&case, &[2, 7, 7, 3], &[3, 3, 3, 3, 8], &[2, 5, 5, 8]);
        assert!(e.message.contains("must have rank 4"), "{e}");

        let grouped = case.clone().channels(3, 8, 2);
        let e = error(&grouped, &[2, 7, 7, 3], &[3, 3, 1, 8], &[2, 5, 5, 8]);
        assert!(e.message.contains("3 channels, which groups 2 does not divide"), "{e}");
        let grouped = case.clone().channels(4, 6, 4);
        let e = error(&grouped, &[2, 7, 7, 4], &[3, 3, 1, 6], &[2, 5, 5, 6]);
        assert!(e.message.contains("6 output channels, which groups 4 does not divide"), "{e}");
        let e = error(&case.clone().channels(3, 8, 0), &[2, 7, 7, 3], &[3, 3, 3, 8], &[2, 5, 5, 8]);
        assert!(e.message.contains("groups must be >= 1"), "{e}");
        let e = error(&case.clone().strides(&[0, 1]), &[2, 7, 7, 3], &[3, 3, 3, 8], &[2, 5, 5, 8]);
        assert!(e.message.contains("must be >= 1"), "{e}");
        let e = error(&case.clone().pad(&[usize::MAX, 0], &[1, 0]), &[2, 7, 7, 3], &[3, 3, 3, 8], &[2, 5, 5, 8]);
        assert!(e.message.contains("overflow"), "{e}");
    }

    #[test]
    fn rejects_bad_dtypes() {
        let case = Case::new(Layout::ChannelsFirst, &[4], &[3]).channels(1, 1, 1).batch(1);
        let (x_shape, k_shape, y_shape) = (case.x_shape(), case.k_shape(), case.y_shape());
        let run = |x: DType, k: DType, y: DType| {
            let (xs, ks, mut ys) = (CpuStorage::zeros(x, 4), CpuStorage::zeros(k, 3), CpuStorage::zeros(y, 2));
            conv(
                &RustGemm,
                Tensor { data: &xs, shape: &x_shape },
                Tensor { data: &ks, shape: &k_shape },
                TensorMut { data: &mut ys, shape: &y_shape },
                &case.params(),
            )
            .unwrap_err()
        };
        assert_eq!(run(DType::I32, DType::I32, DType::I32).kind, ErrorKind::Unsupported);
        let e = run(DType::F32, DType::F64, DType::F32);
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert!(e.message.contains("`kernel` float64"), "{e}");
    }

    #[test]
    fn empty_tensors() {
        // No channels: the output is all zeros; batch 0: nothing to do; an empty input with
        // padding: every tap reads padding.
        let case = Case::new(Layout::ChannelsFirst, &[4], &[3]).channels(0, 2, 1);
        assert_eq!(case.forward(&[], &[], DType::F64).unwrap(), vec![0.0; 8]);
        assert_eq!(case.backward_filter(&[], &[1.0; 8], DType::F64).unwrap(), Vec::<f64>::new());
        let case = Case::new(Layout::ChannelsLast, &[4], &[3]).batch(0);
        assert!(case.forward(&[], &noise(36, 1), DType::F64).unwrap().is_empty());
        assert_eq!(case.backward_filter(&[], &[], DType::F64).unwrap(), vec![0.0; 36]);
        let case = Case::new(Layout::ChannelsLast, &[0], &[1]).pad(&[1], &[1]);
        assert_eq!(case.forward(&[], &noise(12, 1), DType::F32).unwrap(), vec![0.0; 16]);
        assert_eq!(case.backward_filter(&[], &noise(16, 1), DType::F32).unwrap(), vec![0.0; 12]);
    }
}
