//! Direct (no im2col) f32 convolution for ChannelsLast 2-D inputs on AVX-512 CPUs: forward,
//! data gradient (stride 1) and filter gradient.
//!
//! With ChannelsLast data and a `(kh, kw, Cin, Cout)` kernel, one kernel row `kh` read by an
//! output pixel is a *contiguous* run of `kw·Cin` input values (the taps of that row, channel
//! vectors side by side), multiplied by `kw·Cin` consecutive kernel rows of `Cout` values. So
//! every product term is indexed by a *reduction row* `j = kw_tap·Cin + c` that advances the
//! input and the kernel linearly; a tap that falls in the padding just shortens the run.
//!
//! * Forward ([`DirectConv::forward`]): a register tile of up to `max_rows` consecutive
//!   output pixels of one output row × up to 64 output channels (4 zmm per pixel). For each
//!   reduction row the tile loads the kernel row once and broadcasts each pixel's input
//!   value: `R·NV` FMAs for `NV + R` loads, the accumulators never leave registers. Pixels
//!   whose window crosses the left or right edge run with the run clipped: down the edge
//!   column, as one tile over the rows whose window is inside vertically (their runs differ
//!   only by a whole input row), else as 1-pixel tiles.
//!   A 3×3 kernel at stride 1 with 16 channels or more on both sides goes to
//!   [`winograd`](super::winograd) instead, which runs the same tile on 2.25 times fewer
//!   products.
//! * Data gradient, stride 1 ([`DirectConv::backward_data`]): the forward convolution of
//!   `dy` with the kernel flipped spatially and its channel axes swapped, padded
//!   `k - 1 - pad_before` before.
//! * Filter gradient ([`DirectConv::backward_filter`]): the same reduction rows, now as the
//!   tile's rows: a tile of up to `max_rows` consecutive rows `j` × 64 output channels of
//!   `dkernel[kh]` accumulates `x[pixel, j] · dy[pixel]` over the pixels of several output
//!   rows (up to `TILE_PIXELS`) before it stores.
//!
//! The forward tile is also the f32 GEMM's ([`matmul`](super::matmul)): a product is a
//! convolution with a 1×1 window, whose reduction rows may lie a column stride apart
//! (`Run::x_step`).
//!
//! Output channels beyond a multiple of 16 use masked loads and stores. ChannelsFirst data
//! has its own kernels in [`conv_direct_nchw`](super::conv_direct_nchw). Everything else
//! (f64, 3-D, dilation, groups, CPUs without AVX-512, fewer than 16 output channels where the
//! lanes would idle, the data gradient of a strided convolution) stays on the GEMM path in
//! [`conv`](super::conv); [`DirectConv::new`] says which cases come here.

use std::marker::PhantomData;
use std::ops::{Deref, Range};

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use rayon::prelude::*;

use super::element::several_threads;
use super::window::Window;
use super::winograd::Winograd;

/// Output channels one tile covers: 4 zmm vectors of 16 floats.
pub(super) const BLOCK: usize = 64;

/// Output rows of one image per forward task: enough work to amortise a rayon task, many
/// tasks to balance the cores, and the most pixels an edge column's tile can span.
const ROWS_PER_TASK: usize = 4;

/// Pixels (whole output rows, at least one) a filter-gradient tile sums over before it
/// stores its accumulators: 64 channels of `dy` for 128 pixels are 32 KiB, which stay in L1
/// while every block of kernel rows reads them.
const TILE_PIXELS: usize = 128;

/// Fewest output channels (the vector lanes of a tile) for which the direct kernels beat the
/// GEMM path.
pub(super) const MIN_LANES: usize = 16;

/// Tile rows for `nv` vectors of output channels: as many accumulators as fit in the 32 zmm
/// registers next to the `nv` kernel (or `dy`) vectors and one broadcast.
pub(super) const fn max_rows(nv: usize) -> usize {
    match nv {
        1 => 14,
        2 => 12,
        3 => 8,
        _ => 6,
    }
}

/// The 2-D geometry (a 1-D convolution as one row) both direct kernels work on, this module's
/// [`DirectConv`] (ChannelsLast) and [`NchwConv`](super::conv_direct_nchw::NchwConv)
/// (ChannelsFirst): f32, no dilation or groups.
#[derive(Clone, Debug)]
pub struct Plane {
    /// Batch elements.
    pub batch: usize,
    /// Input channels.
    pub cin: usize,
    /// Input rows.
    pub h: usize,
    /// Input columns.
    pub w: usize,
    /// Output channels.
    pub cout: usize,
    /// Output rows.
    pub ho: usize,
    /// Output columns.
    pub wo: usize,
    /// Kernel rows.
    pub kh: usize,
    /// Kernel columns.
    pub kw: usize,
    /// Row stride.
    pub sh: usize,
    /// Column stride.
    pub sw: usize,
    /// Padding before the first row.
    pub pt: usize,
    /// Padding before the first column.
    pub pl: usize,
}

impl Plane {
    /// The geometry of a convolution over `window` with `groups` groups, or `None` when no
    /// direct kernel takes it: more than 2 spatial dims, dilation, groups, no AVX-512 on this
    /// CPU, or nothing to compute (no channels, an empty batch, image or output: the GEMM
    /// path's special cases handle those).
    pub fn new(window: &Window, batch: usize, cin: usize, cout: usize, groups: usize) -> Option<Plane> {
        if groups != 1 || window.rank > 2 || !avx512() {
            return None;
        }
        if window.dilation[1..] != [1, 1] || window.window[1..].contains(&0) || cin == 0 || cout == 0 {
            return None;
        }
        if window.input_len() == 0 || window.output_len() == 0 || batch == 0 {
            return None;
        }
        Some(Plane {
            batch,
            cin,
            h: window.input[1],
            w: window.input[2],
            cout,
            ho: window.output[1],
            wo: window.output[2],
            kh: window.window[1],
            kw: window.window[2],
            sh: window.stride[1],
            sw: window.stride[2],
            pt: window.pad_before[1],
            pl: window.pad_before[2],
        })
    }

    /// The convolution whose forward pass is this one's data gradient when the stride is 1:
    /// `dy` as its input, the kernel flipped spatially with its channel axes swapped, padded
    /// `k - 1 - pad_before` before.
    pub fn transposed(&self) -> Plane {
        Plane {
            batch: self.batch,
            cin: self.cout,
            h: self.ho,
            w: self.wo,
            cout: self.cin,
            ho: self.h,
            wo: self.w,
            kh: self.kh,
            kw: self.kw,
            sh: 1,
            sw: 1,
            pt: self.kh - 1 - self.pt,
            pl: self.kw - 1 - self.pl,
        }
    }

    /// Elements of the kernel.
    pub fn kernel_len(&self) -> usize {
        self.kh * self.kw * self.cin * self.cout
    }

    /// Elements of one batch element of the input.
    pub fn x_len(&self) -> usize {
        self.cin * self.h * self.w
    }

    /// Elements of one batch element of the output.
    pub fn y_len(&self) -> usize {
        self.cout * self.ho * self.wo
    }

    /// The kernel rows output row `oy` reads inside the image.
    pub fn rows_read(&self, oy: usize) -> Range<usize> {
        taps_inside(oy * self.sh, self.pt, self.h, self.kh)
    }

    /// The kernel columns output column `ox` reads inside the image.
    pub fn columns_read(&self, ox: usize) -> Range<usize> {
        taps_inside(ox * self.sw, self.pl, self.w, self.kw)
    }
}

/// The taps `t < k` of a window starting at padded position `start` that fall inside an
/// axis of `len` positions padded `pad` before: `pad ≤ start + t < pad + len`.
fn taps_inside(start: usize, pad: usize, len: usize, k: usize) -> Range<usize> {
    let lo = pad.saturating_sub(start).min(k);
    let hi = (pad + len).saturating_sub(start).min(k).max(lo);
    lo..hi
}

/// The direct plan of a ChannelsLast convolution (see [`DirectConv::new`]).
#[derive(Clone, Debug)]
pub struct DirectConv(Plane);

impl Deref for DirectConv {
    type Target = Plane;

    fn deref(&self) -> &Plane {
        &self.0
    }
}

impl DirectConv {
    /// The direct plan for a convolution over `window` with `groups` groups, its data in
    /// ChannelsLast order, or `None` when this module does not take it (see [`Plane::new`]).
    pub fn new(window: &Window, batch: usize, cin: usize, cout: usize, groups: usize) -> Option<Self> {
        Plane::new(window, batch, cin, cout, groups).map(DirectConv)
    }

    /// `y = conv(x, kernel)`. `x`, `kernel` and `y` have this plan's shapes (checked by the
    /// caller); returns `false`, having written nothing, if they do not or when not
    /// [`takes_forward`](Self::takes_forward).
    pub fn forward(&self, x: &[f32], kernel: &[f32], y: &mut [f32]) -> bool {
        if !self.takes_forward() {
            return false;
        }
        let (x_len, y_len) = (self.x_len(), self.y_len());
        if x.len() != self.batch * x_len || y.len() != self.batch * y_len || kernel.len() != self.kernel_len() {
            return false;
        }
        if let Some(winograd) = Winograd::new(self) {
            winograd.forward(x, kernel, y);
            return true;
        }
        let block_len = ROWS_PER_TASK * self.wo * self.cout;
        for_each_row_block(y, self.batch, block_len, |b, k, y_block| {
            self.forward_rows(&x[b * x_len..(b + 1) * x_len], kernel, k * ROWS_PER_TASK, y_block);
        });
        true
    }

    /// The data gradient `dx` of [`forward`](Self::forward) for `dy`, when
    /// [`takes_backward_data`](Self::takes_backward_data); `false`, having written nothing,
    /// otherwise.
    pub fn backward_data(&self, dy: &[f32], kernel: &[f32], dx: &mut [f32]) -> bool {
        if !self.takes_backward_data() || kernel.len() != self.kernel_len() {
            return false;
        }
        // flipped[kh', kw', co, ci] = kernel[kh - 1 - kh', kw - 1 - kw', ci, co]
        let mut flipped = vec![0.0f32; kernel.len()];
        let taps = self.kh * self.kw;
        for (t, block) in flipped.chunks_mut(self.cout * self.cin).enumerate() {
            let source = &kernel[(taps - 1 - t) * self.cin * self.cout..][..self.cin * self.cout];
            for (co, row) in block.chunks_mut(self.cin).enumerate() {
                for (ci, v) in row.iter_mut().enumerate() {
                    *v = source[ci * self.cout + co];
                }
            }
        }
        let transposed = DirectConv(self.transposed());
        transposed.forward(dy, &flipped, dx)
    }

    /// The filter gradient `dkernel` of [`forward`](Self::forward) for `x` and `dy`, summed
    /// over the batch; `false`, having written nothing, if the lengths do not match the plan
    /// or when not [`takes_backward_filter`](Self::takes_backward_filter).
    pub fn backward_filter(&self, x: &[f32], dy: &[f32], dkernel: &mut [f32]) -> bool {
        if !self.takes_backward_filter() {
            return false;
        }
        let (x_len, y_len) = (self.x_len(), self.y_len());
        if x.len() != self.batch * x_len || dy.len() != self.batch * y_len || dkernel.len() != self.kernel_len() {
            return false;
        }
        sum_over_batch(self.batch, (x, x_len), (dy, y_len), dkernel, |x_b, dy_b, dk, _| {
            self.filter_image(x_b, dy_b, dk)
        });
        true
    }

    /// Whether [`forward`](Self::forward) runs here: the tiles are 16 output channels wide,
    /// so with fewer than 16 most lanes would idle and the GEMM path wins.
    pub fn takes_forward(&self) -> bool {
        self.cout >= MIN_LANES
    }

    /// Whether [`backward_data`](Self::backward_data) runs here: stride 1, padding before
    /// of at most `k - 1` (the flipped convolution needs no negative padding), and input
    /// channels (its output channels) to fill the lanes.
    pub fn takes_backward_data(&self) -> bool {
        self.sh == 1 && self.sw == 1 && self.pt < self.kh && self.pl < self.kw && self.cin >= MIN_LANES
    }

    /// Whether [`backward_filter`](Self::backward_filter) runs here: enough output channels
    /// to fill the lanes.
    pub fn takes_backward_filter(&self) -> bool {
        self.cout >= MIN_LANES
    }

    /// Kernel rows whose input row lies inside the image for output row `oy`, with that input
    /// row.
    fn valid_rows(&self, oy: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.kh).filter_map(move |r| {
            let iy = (oy * self.sh + r).checked_sub(self.pt)?;
            (iy < self.h).then_some((r, iy))
        })
    }

    /// The output columns whose kernel column `c` reads inside the image.
    fn valid_columns(&self, c: usize) -> Range<usize> {
        outputs_reading(c, self.pl, self.w, self.sw, self.wo)
    }

    /// Output rows `first..` of one batch element: `y_rows` is whole rows of `wo × cout`.
    ///
    /// Each tile sums the whole reduction (every kernel row, column and channel) in
    /// registers. The kernel rows of one 64-channel block are re-read from L2 by every tile;
    /// splitting the reduction into passes that keep them in L1 measured slower (the tiles
    /// then reload and store their accumulators once per pass).
    fn forward_rows(&self, x_b: &[f32], kernel: &[f32], first: usize, y_rows: &mut [f32]) {
        let (cin, cout) = (self.cin, self.cout);
        let row_len = self.wo * cout;
        let rows = first..first + y_rows.len() / row_len;
        let reduction = self.kw * cin;
        // Pixels whose whole window is inside the image run in full tiles along their row;
        // the others (at most a few per edge) run with their runs clipped.
        let interior = reading_every(0..self.kw, self.pl, self.w, self.sw, self.wo);
        // Rows that read every kernel row: their edge pixels share one tile per column.
        let full_rows = {
            let full = reading_every(0..self.kh, self.pt, self.h, self.sh, self.ho);
            full.start.clamp(rows.start, rows.end)..full.end.clamp(rows.start, rows.end)
        };
        let edge_columns = (0..interior.start).chain(interior.end..self.wo);
        let column_step = PixelStep { x: self.sw * cin, y: cout };
        let row_step = PixelStep { x: self.sh * self.w * cin, y: row_len };
        let mut runs: Vec<Run> = Vec::with_capacity(self.kh);
        for co in (0..cout).step_by(BLOCK) {
            let width = (cout - co).min(BLOCK);
            let nv = width.div_ceil(16);
            // `pixels` pixels from (oy, ox) on, `step` apart, whose window reads the kernel
            // columns of `ox` and the kernel rows of `oy`.
            let mut edge = |oy: usize, ox: usize, pixels: usize, step: PixelStep, y_rows: &mut [f32]| {
                let taps = self.columns_read(ox);
                runs.clear();
                if !taps.is_empty() {
                    for (r, iy) in self.valid_rows(oy) {
                        runs.push(Run {
                            // `taps` starts at the first column inside the image.
                            x: (iy * self.w + ox * self.sw + taps.start - self.pl) * cin,
                            x_step: 1,
                            k: (r * reduction + taps.start * cin) * cout + co,
                            len: taps.len() * cin,
                        });
                    }
                }
                let y_at = (oy - rows.start) * row_len + ox * cout + co;
                forward_tile(pixels, nv, x_b, step, kernel, cout, &runs, (&mut y_rows[y_at..]).into(), width);
            };
            for ox in edge_columns.clone() {
                for tile in split(full_rows.clone(), max_rows(nv)) {
                    edge(tile.start, ox, tile.len(), row_step, y_rows);
                }
                for oy in rows.clone().filter(|oy| !full_rows.contains(oy)) {
                    edge(oy, ox, 1, column_step, y_rows);
                }
            }
            for oy in rows.clone() {
                let y_row = &mut y_rows[(oy - rows.start) * row_len..][..row_len];
                for tile in split(interior.clone(), max_rows(nv)) {
                    runs.clear();
                    for (r, iy) in self.valid_rows(oy) {
                        runs.push(Run {
                            // The tile lies in the interior: its first column read is in the row.
                            x: (iy * self.w + tile.start * self.sw - self.pl) * cin,
                            x_step: 1,
                            k: r * reduction * cout + co,
                            len: reduction,
                        });
                    }
                    let y_tile = &mut y_row[tile.start * cout + co..];
                    forward_tile(tile.len(), nv, x_b, column_step, kernel, cout, &runs, y_tile.into(), width);
                }
            }
        }
    }

    /// Adds one batch element's filter gradient to `dk`. For each kernel row, every output
    /// row that reads inside the image joins one tile, so that a tile's accumulators stay in
    /// registers over the whole image rather than one output row (on the CNN's 11-pixel rows
    /// the per-row tiles spent more time loading and storing `dk` than multiplying).
    fn filter_image(&self, x_b: &[f32], dy_b: &[f32], dk: &mut [f32]) {
        let (cin, cout) = (self.cin, self.cout);
        let rows = self.kw * cin;
        let step = self.sw * cin;
        let lines_per_tile = (TILE_PIXELS / self.wo).max(1);
        for (r, oys) in (0..self.kh).flat_map(|r| {
            split(outputs_reading(r, self.pt, self.h, self.sh, self.ho), lines_per_tile).map(move |oys| (r, oys))
        }) {
            // The input row of the first output row: `oys` starts inside the image.
            let first_line = (oys.start * self.sh + r - self.pt) * self.w * cin;
            let lines = Lines { count: oys.len(), x: self.sh * self.w * cin, dy: self.wo * cout };
            let dy_rows = &dy_b[oys.start * self.wo * cout..];
            for co in (0..cout).step_by(BLOCK) {
                let width = (cout - co).min(BLOCK);
                let nv = width.div_ceil(16);
                for block in split(0..rows, max_rows(nv)) {
                    // Rows j of one block read kernel columns `taps`; the pixels where all of
                    // them are inside the image run as one tile, the others per kernel column.
                    let taps = block.start / cin..(block.end - 1) / cin + 1;
                    let common = reading_every(taps.clone(), self.pl, self.w, self.sw, self.wo);
                    let dk_at = (r * rows + block.start) * cout + co;
                    let x_at = |ox: usize, j: usize| first_line + ox * step + j - self.pl * cin;
                    let pixels = |columns: &Range<usize>| Pixels { count: columns.len(), step, lines };
                    if !common.is_empty() {
                        filter_tile(
                            block.len(),
                            nv,
                            x_b,
                            x_at(common.start, block.start),
                            &dy_rows[common.start * cout + co..],
                            cout,
                            pixels(&common),
                            &mut dk[dk_at..],
                            width,
                        );
                    }
                    // The rows of one kernel column share their edge pixels, so they run as one
                    // tile per column (not one per row: a 1-row tile pays the `dy` loads for one FMA each).
                    for column in taps {
                        let js = block.start.max(column * cin)..block.end.min((column + 1) * cin);
                        let own = self.valid_columns(column);
                        for part in [own.start..common.start.min(own.end), common.end.max(own.start)..own.end] {
                            if !part.is_empty() {
                                filter_tile(
                                    js.len(),
                                    nv,
                                    x_b,
                                    x_at(part.start, js.start),
                                    &dy_rows[part.start * cout + co..],
                                    cout,
                                    pixels(&part),
                                    &mut dk[(r * rows + js.start) * cout + co..],
                                    width,
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The outputs `o < outputs` whose window tap `tap` lies inside an axis of `len` positions
/// padded `pad` before, windows `stride` apart: `pad ≤ o·stride + tap < pad + len`.
fn outputs_reading(tap: usize, pad: usize, len: usize, stride: usize, outputs: usize) -> Range<usize> {
    let lo = pad.saturating_sub(tap).div_ceil(stride);
    let hi = (pad + len).saturating_sub(tap).div_ceil(stride).min(outputs);
    lo.min(hi)..hi
}

/// The outputs whose taps `taps` (not empty) all lie inside the axis (see
/// [`outputs_reading`]). Outputs move left as the tap grows: the taps are inside from the
/// first one's start to the last one's end.
fn reading_every(taps: Range<usize>, pad: usize, len: usize, stride: usize, outputs: usize) -> Range<usize> {
    let first = outputs_reading(taps.start, pad, len, stride, outputs);
    let last = outputs_reading(taps.end - 1, pad, len, stride, outputs);
    first.start..last.end.max(first.start)
}

/// Sets `dkernel` to the sum over the `batch` elements of `x` and `dy` (`x_len` and `y_len`
/// elements each) of `accumulate(x_b, dy_b, dk, scratch)`, which adds one element's filter
/// gradient to `dk` (`scratch` is the task's, for the kernel to reuse). The batch is split
/// evenly over rayon's threads; each task sums its elements into a private partial and the
/// partials are added in task order, so the result does not depend on scheduling.
pub(super) fn sum_over_batch(
    batch: usize,
    (x, x_len): (&[f32], usize),
    (dy, y_len): (&[f32], usize),
    dkernel: &mut [f32],
    accumulate: impl Fn(&[f32], &[f32], &mut [f32], &mut Vec<f32>) + Sync,
) {
    dkernel.fill(0.0);
    let task = |x_task: &[f32], dy_task: &[f32], dk: &mut [f32]| {
        let mut scratch = Vec::new();
        for (x_b, dy_b) in x_task.chunks(x_len).zip(dy_task.chunks(y_len)) {
            accumulate(x_b, dy_b, dk, &mut scratch);
        }
    };
    let per_task = batch.div_ceil(rayon::current_num_threads().max(1)).max(1);
    if !several_threads() || per_task >= batch {
        task(x, dy, dkernel);
        return;
    }
    let partials: Vec<Vec<f32>> = x
        .par_chunks(x_len * per_task)
        .zip(dy.par_chunks(y_len * per_task))
        .map(|(x_task, dy_task)| {
            let mut partial = vec![0.0f32; dkernel.len()];
            task(x_task, dy_task, &mut partial);
            partial
        })
        .collect();
    for partial in partials {
        dkernel.iter_mut().zip(partial).for_each(|(d, p)| *d += p);
    }
}

/// Calls `body(b, k, block)` for block `k` of `block_len` elements (the last one of an image
/// shorter) of each of the `batch` images that `y` holds, on rayon's pool when it has
/// [`several_threads`]: the task split of the forward kernels, whole output rows per block.
pub(super) fn for_each_row_block(
    y: &mut [f32],
    batch: usize,
    block_len: usize,
    body: impl Fn(usize, usize, &mut [f32]) + Sync,
) {
    let (y_len, block_len) = (y.len() / batch.max(1), block_len.max(1));
    if y_len == 0 {
        return;
    }
    if several_threads() {
        y.par_chunks_mut(y_len).enumerate().for_each(|(b, y_b)| {
            y_b.par_chunks_mut(block_len).enumerate().for_each(|(k, y_block)| body(b, k, y_block));
        });
    } else {
        for (b, y_b) in y.chunks_mut(y_len).enumerate() {
            y_b.chunks_mut(block_len).enumerate().for_each(|(k, y_block)| body(b, k, y_block));
        }
    }
}

/// `range` split into the fewest tiles of at most `max` elements, their sizes differing by at
/// most one: 62 pixels with `max` 6 become 7 tiles of 6 and 4 of 5, not 10 of 6 and one of 2
/// (a short tile runs the same kernel-row loads for fewer FMAs).
pub(super) fn split(range: Range<usize>, max: usize) -> impl Iterator<Item = Range<usize>> {
    let n = range.len();
    let tiles = n.div_ceil(max.max(1));
    (0..tiles).map(move |t| range.start + t * n / tiles..range.start + (t + 1) * n / tiles)
}

/// A run of consecutive reduction rows: input values from `x` on, `x_step` apart (1 in a
/// convolution's channel-vector runs, a matrix's column stride in a GEMM), kernel rows from `k`
/// on (`cout` apart), `len` of them.
#[derive(Clone, Copy, Debug)]
pub(super) struct Run {
    pub(super) x: usize,
    pub(super) x_step: usize,
    pub(super) k: usize,
    pub(super) len: usize,
}

/// `true` when this CPU has AVX-512F (and therefore FMA).
pub(super) fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Lane masks of the `nv` vectors covering `width` channels (`16·(nv-1) < width ≤ 16·nv`).
pub(super) fn masks<const NV: usize>(width: usize) -> [u16; NV] {
    std::array::from_fn(|v| {
        let lanes = width.saturating_sub(16 * v).min(16);
        ((1u32 << lanes) - 1) as u16
    })
}

/// Elements a `len`-row, `width`-wide strided access from `start` touches, rows `stride`
/// apart: its end (exclusive), or `start` when it touches nothing.
fn end_of(start: usize, rows: usize, stride: usize, width: usize) -> usize {
    if rows == 0 || width == 0 { start } else { start + (rows - 1) * stride + width }
}

/// How far apart a forward tile's pixels are: `x` input and `y` output elements (one column
/// along an output row, or one row down an edge column).
#[derive(Clone, Copy, Debug)]
pub(super) struct PixelStep {
    pub(super) x: usize,
    pub(super) y: usize,
}

/// The floats a tile writes into: `len` of them from `ptr`, lent to it for `'a`. Made from a
/// `&mut [f32]`, or (unsafe) from a pointer when tasks share one output, each writing its own
/// lanes of each row (the GEMM's panel split), which a slice cannot lend. Neither `Clone` nor
/// `Send`: a slice's lending stays with one writer.
pub(super) struct TileOut<'a> {
    ptr: *mut f32,
    len: usize,
    lent: PhantomData<&'a mut [f32]>,
}

impl<'a> TileOut<'a> {
    /// The `len` floats from `ptr`.
    ///
    /// # Safety
    /// `ptr` must be valid for writes of `len` floats for `'a`, and while tiles write through
    /// the result nothing else may read or write the floats they write.
    pub(super) unsafe fn shared(ptr: *mut f32, len: usize) -> TileOut<'a> {
        TileOut { ptr, len, lent: PhantomData }
    }

    /// The floats from the `n`th on (none when `n` is past the end), lent for as long as
    /// `self` is borrowed.
    pub(super) fn skip(&mut self, n: usize) -> TileOut<'_> {
        let n = n.min(self.len);
        TileOut { ptr: self.ptr.wrapping_add(n), len: self.len - n, lent: PhantomData }
    }
}

impl<'a> From<&'a mut [f32]> for TileOut<'a> {
    fn from(y: &'a mut [f32]) -> TileOut<'a> {
        TileOut { ptr: y.as_mut_ptr(), len: y.len(), lent: PhantomData }
    }
}

/// Writes `tile` pixels (`step` apart) × `width` output channels of `y`: the sum over `runs`
/// of input × kernel rows.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward_tile(
    tile: usize,
    nv: usize,
    x: &[f32],
    step: PixelStep,
    kernel: &[f32],
    cout: usize,
    runs: &[Run],
    y: TileOut<'_>,
    width: usize,
) {
    // Bounds of every access, checked once per tile; a failure is an internal error that
    // leaves the tile unwritten (the tests compare against the f64 GEMM path, which does not
    // run on these tiles).
    let fits = runs.iter().all(|r| {
        let run_width = end_of(0, r.len, r.x_step, 1);
        end_of(r.x, tile, step.x, run_width) <= x.len() && end_of(r.k, r.len, cout, width) <= kernel.len()
    }) && end_of(0, tile, step.y, width) <= y.len;
    debug_assert!(fits, "conv_direct: tile out of bounds");
    if !fits || tile == 0 {
        return;
    }
    macro_rules! call {
        ($($nv:literal => [$($r:literal),*]),*) => {
            match (nv, tile) {
                $($(
                    // SAFETY: the CPU has AVX-512F and FMA (checked by `DirectConv::new`, or by
                    // the GEMM's caller); every run reads `x[run.x + p·step.x + i·run.x_step]`
                    // for pixels p < tile and i < run.len, and kernel rows `run.k + i·cout` for
                    // i < run.len, `width` wide, and the tile writes `y[p·step.y..][..width]`: all
                    // inside the slices and the floats `y` lends (`fits`).
                    ($nv, $r) => unsafe {
                        forward_kernel::<$r, $nv>(x.as_ptr(), step, kernel.as_ptr(), cout, runs, y.ptr, masks::<$nv>(width))
                    },
                )*)*
                _ => debug_assert!(false, "conv_direct: no forward kernel for {nv} vectors × {tile}"),
            }
        };
    }
    #[cfg(target_arch = "x86_64")]
    call!(
        1 => [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14],
        2 => [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
        3 => [1, 2, 3, 4, 5, 6, 7, 8],
        4 => [1, 2, 3, 4, 5, 6]
    );
}

/// The pixels a filter tile sums over: `lines` runs (output rows) of `count` consecutive
/// pixels, the pixels `step` input elements apart.
#[derive(Clone, Copy, Debug)]
struct Pixels {
    count: usize,
    step: usize,
    lines: Lines,
}

/// `count` output rows, `x` input and `dy` gradient elements apart.
#[derive(Clone, Copy, Debug)]
struct Lines {
    count: usize,
    x: usize,
    dy: usize,
}

/// Adds, to `rows` consecutive kernel-gradient rows × `width` channels of `dk` (rows `cout`
/// apart), the sum over `pixels` of `x[x_at + l·lines.x + p·step + i]` (row i) ×
/// `dy[l·lines.dy + p·cout..]` for each line l and pixel p.
#[allow(clippy::too_many_arguments)]
fn filter_tile(
    rows: usize,
    nv: usize,
    x: &[f32],
    x_at: usize,
    dy: &[f32],
    cout: usize,
    pixels: Pixels,
    dk: &mut [f32],
    width: usize,
) {
    let Pixels { count, step, lines } = pixels;
    let last_line = lines.count.saturating_sub(1);
    let fits = end_of(x_at + last_line * lines.x, count, step, rows) <= x.len()
        && end_of(last_line * lines.dy, count, cout, width) <= dy.len()
        && end_of(0, rows, cout, width) <= dk.len();
    debug_assert!(fits, "conv_direct: filter tile out of bounds");
    if !fits || rows == 0 || count == 0 || lines.count == 0 {
        return;
    }
    macro_rules! call {
        ($($nv:literal => [$($r:literal),*]),*) => {
            match (nv, rows) {
                $($(
                    // SAFETY: the CPU has AVX-512F and FMA (`DirectConv::new` checked); the
                    // tile reads `x[x_at + l·lines.x + p·step..][..rows]` and
                    // `dy[l·lines.dy + p·cout..][..width]` for l < lines.count, p < count, and
                    // updates `dk[i·cout..][..width]` for i < rows: all inside the slices (`fits`).
                    ($nv, $r) => unsafe {
                        filter_kernel::<$r, $nv>(x.as_ptr().add(x_at), dy.as_ptr(), cout, pixels, dk.as_mut_ptr(), masks::<$nv>(width))
                    },
                )*)*
                _ => debug_assert!(false, "conv_direct: no filter kernel for {nv} vectors × {rows}"),
            }
        };
    }
    #[cfg(target_arch = "x86_64")]
    call!(
        1 => [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14],
        2 => [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
        3 => [1, 2, 3, 4, 5, 6, 7, 8],
        4 => [1, 2, 3, 4, 5, 6]
    );
}

/// The forward register tile: `R` pixels × `NV` vectors of output channels.
///
/// # Safety
/// The CPU supports AVX-512F and FMA; for every run, `x[run.x + p·step.x + i·run.x_step]` for p < R,
/// i < run.len and `kernel[run.k + i·cout + l]` for the lanes l in `masks` are readable, and
/// `y[p·step.y + l]` is writable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
// The tile index also offsets the pointers; index loops over the const bounds read as the
// register tile they unroll into.
#[allow(clippy::needless_range_loop)]
unsafe fn forward_kernel<const R: usize, const NV: usize>(
    x: *const f32,
    step: PixelStep,
    kernel: *const f32,
    cout: usize,
    runs: &[Run],
    y: *mut f32,
    masks: [u16; NV],
) {
    let mut acc = [[_mm512_setzero_ps(); NV]; R];
    for run in runs {
        // SAFETY (whole loop): the caller guarantees these ranges are readable.
        unsafe {
            let mut xp = x.add(run.x);
            let mut kp = kernel.add(run.k);
            for _ in 0..run.len {
                let mut k = [_mm512_setzero_ps(); NV];
                for v in 0..NV {
                    k[v] = _mm512_maskz_loadu_ps(masks[v], kp.add(16 * v));
                }
                for p in 0..R {
                    let b = _mm512_set1_ps(*xp.add(p * step.x));
                    for v in 0..NV {
                        acc[p][v] = _mm512_fmadd_ps(b, k[v], acc[p][v]);
                    }
                }
                xp = xp.add(run.x_step);
                kp = kp.add(cout);
            }
        }
    }
    for p in 0..R {
        for v in 0..NV {
            // SAFETY: the caller guarantees the masked lanes of pixel p are writable.
            unsafe { _mm512_mask_storeu_ps(y.add(p * step.y + 16 * v), masks[v], acc[p][v]) };
        }
    }
}

/// The filter-gradient register tile: `R` reduction rows × `NV` vectors of output channels,
/// accumulated over `pixels` and added to `dk`.
///
/// # Safety
/// The CPU supports AVX-512F and FMA; for l < pixels.lines.count and p < pixels.count,
/// `x[l·lines.x + p·step + i]` for i < R and `dy[l·lines.dy + p·cout + l']` for the lanes l'
/// in `masks` are readable, and `dk[i·cout + l']` is readable and writable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
// The tile index also offsets the pointers; index loops over the const bounds read as the
// register tile they unroll into.
#[allow(clippy::needless_range_loop)]
unsafe fn filter_kernel<const R: usize, const NV: usize>(
    x: *const f32,
    dy: *const f32,
    cout: usize,
    pixels: Pixels,
    dk: *mut f32,
    masks: [u16; NV],
) {
    let mut acc = [[_mm512_setzero_ps(); NV]; R];
    // SAFETY (whole block): the caller guarantees these ranges are accessible.
    unsafe {
        for i in 0..R {
            for v in 0..NV {
                acc[i][v] = _mm512_maskz_loadu_ps(masks[v], dk.add(i * cout + 16 * v));
            }
        }
        for line in 0..pixels.lines.count {
            let (mut xp, mut dp) = (x.add(line * pixels.lines.x), dy.add(line * pixels.lines.dy));
            for _ in 0..pixels.count {
                let mut d = [_mm512_setzero_ps(); NV];
                for v in 0..NV {
                    d[v] = _mm512_maskz_loadu_ps(masks[v], dp.add(16 * v));
                }
                for i in 0..R {
                    let b = _mm512_set1_ps(*xp.add(i));
                    for v in 0..NV {
                        acc[i][v] = _mm512_fmadd_ps(b, d[v], acc[i][v]);
                    }
                }
                xp = xp.add(pixels.step);
                dp = dp.add(cout);
            }
        }
        for i in 0..R {
            for v in 0..NV {
                _mm512_mask_storeu_ps(dk.add(i * cout + 16 * v), masks[v], acc[i][v]);
            }
        }
    }
}
