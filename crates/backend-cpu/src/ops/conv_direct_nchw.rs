//! Direct (no im2col) f32 convolution for ChannelsFirst 2-D inputs on AVX-512 CPUs, unit
//! column stride: forward, data gradient (stride 1) and filter gradient.
//!
//! With ChannelsFirst data every channel is a row-major plane, so the natural vector is a run
//! of 16 consecutive pixels of one row: the input pixels one kernel tap reads for 16
//! consecutive output pixels are again 16 consecutive pixels of one input row, shifted by the
//! tap's column. No transposed copy of either image is needed (running the ChannelsLast
//! kernels of [`conv_direct`](super::conv_direct) on transposed copies measured slower than
//! the GEMM path).
//!
//! * Forward ([`NchwConv::forward`]): a register tile of up to 4 vectors (64 pixels) of one
//!   output row × up to `max_co(nv)` output channels. For each (tap column, input channel,
//!   tap row) it loads the input vectors once and broadcasts one kernel value per output
//!   channel: `NV·CO` FMAs for `NV + CO` loads. The kernel is packed once per call so that
//!   these broadcasts stream from consecutive addresses. Kernel rows reading outside the
//!   image are skipped; columns outside it (and lanes past the row's end) are masked loads.
//! * Data gradient, stride 1 ([`NchwConv::backward_data`]): the forward convolution of `dy`
//!   with the kernel flipped spatially and its channel axes swapped, padded
//!   `k - 1 - pad_before` before, as in `conv_direct`.
//! * Filter gradient ([`NchwConv::backward_filter`]): for one input channel, a tile of up to
//!   3×3 taps × 3 output channels (more channels for fewer kernel rows) keeps one vector
//!   accumulator per (tap, channel) and sweeps the whole image, each step loading the `dy`
//!   vectors of its channels and the shifted input vectors of its taps; the lanes are summed
//!   once at the end. Kernel rows reading outside the image read a zero row instead, so the
//!   tile keeps its shape. Each batch element is first copied to cache-line aligned scratch.
//!
//! Everything else (f64, ChannelsLast, 3-D, dilation, groups, column strides, a pointwise
//! kernel, CPUs without AVX-512, the filter gradient of rows narrower than 5 pixels
//! (`MIN_FILTER_WIDTH`), the data gradient of a strided convolution) stays on the GEMM path
//! in [`conv`](super::conv).

use std::ops::{Deref, Range};

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use rayon::prelude::*;

use super::conv_direct::{Plane, split, sum_over_batch};
use super::element::several_threads;
use super::window::Window;

/// Most vectors of 16 pixels one forward tile covers.
const MAX_NV: usize = 4;

/// Fewest output pixels per row for which the direct filter gradient runs; the forward pass
/// and the data gradient run direct at every width.
///
/// Measured against the GEMM path (an ignored timing test, not kept: 32 square images,
/// 64→64 channels, 3×3, `same`, one thread, best of 25 calls): the filter gradient's
/// per-image set-up (aligned copies, the tap table) costs about 8 ms whatever the width, so at
/// width 4 it took 9.8 ms against GEMM's 7.7, at width 5 10.4 against 12.4, at width 8 11.8
/// against 32.6. Forward: 0.21 against 0.36 ms at width 1, 1.0 against 6.5 at width 4, 2.3
/// against 28.4 at width 8 (the data gradient alike): narrow rows idle lanes, but the GEMM
/// path's im2col costs more.
const MIN_FILTER_WIDTH: usize = 5;

/// Output channels per forward tile for `nv` vectors of pixels: as many accumulators as fit
/// in the 32 zmm registers next to the `nv` input vectors and a broadcast.
const fn max_co(nv: usize) -> usize {
    if nv >= 4 { 6 } else { 8 }
}

/// Kernel rows and columns per filter-gradient tile, and its output channels by its rows.
/// Each step loads one vector per channel and per tap; the `dy` vectors stream from L2, so
/// the more taps share them the better: for a 3×3 kernel, one 3×3 × 3 tile measured faster
/// than a 2×3 × 4 tile and a 1×3 × 8 one. 1×3 × 9 would fit the registers too, but LLVM
/// spills it.
const FILTER_ROWS: usize = 3;
const FILTER_COLUMNS: usize = 3;
const FILTER_CO_BY_ROWS: [usize; FILTER_ROWS] = [8, 4, 3];

/// The most output channels of a filter-gradient tile.
const FILTER_CO: usize = 8;

/// The direct plan of a ChannelsFirst convolution (see [`NchwConv::new`]): unit column
/// stride.
#[derive(Clone, Debug)]
pub struct NchwConv(Plane);

impl Deref for NchwConv {
    type Target = Plane;

    fn deref(&self) -> &Plane {
        &self.0
    }
}

/// One forward tile's columns: output pixels `x0..x0 + 16·nv` (fewer at the row's end),
/// with, for each kernel column, the lanes of each vector whose input pixel lies inside the
/// image and whose output pixel inside the row.
#[derive(Clone, Debug)]
struct Segment {
    x0: usize,
    nv: usize,
    /// Indexed by kernel column.
    masks: Vec<[u16; MAX_NV]>,
    /// The lanes of each vector inside the output row.
    store: [u16; MAX_NV],
}

impl NchwConv {
    /// The direct plan for a convolution over `window` with `groups` groups, its data in
    /// ChannelsFirst order, or `None` when this module does not take it: what [`Plane::new`]
    /// refuses, and a column stride.
    pub fn new(window: &Window, batch: usize, cin: usize, cout: usize, groups: usize) -> Option<Self> {
        Plane::new(window, batch, cin, cout, groups).filter(|plane| plane.sw == 1).map(NchwConv)
    }

    /// `y = conv(x, kernel)` for a `(Cout, Cin, kh, kw)` kernel; returns `false`, having
    /// written nothing, if the lengths do not match the plan or when not
    /// [`takes_forward`](Self::takes_forward).
    pub fn forward(&self, x: &[f32], kernel: &[f32], y: &mut [f32]) -> bool {
        if !self.takes_forward() || kernel.len() != self.kernel_len() {
            return false;
        }
        let (cin, kh, kw) = (self.cin, self.kh, self.kw);
        self.run_forward(x, y, |co, ci, ky, kx| kernel[((co * cin + ci) * kh + ky) * kw + kx])
    }

    /// The data gradient `dx` of [`forward`](Self::forward) for `dy`, when
    /// [`takes_backward_data`](Self::takes_backward_data); `false`, having written nothing,
    /// otherwise.
    pub fn backward_data(&self, dy: &[f32], kernel: &[f32], dx: &mut [f32]) -> bool {
        if !self.takes_backward_data() || kernel.len() != self.kernel_len() {
            return false;
        }
        let transposed = NchwConv(self.transposed());
        let (cin, kh, kw) = (self.cin, self.kh, self.kw);
        // The transposed convolution's kernel[ci, co, ky, kx] is kernel[co, ci, kh-1-ky, kw-1-kx].
        transposed.run_forward(dy, dx, |ci, co, ky, kx| kernel[((co * cin + ci) * kh + kh - 1 - ky) * kw + kw - 1 - kx])
    }

    /// The filter gradient `dkernel` of [`forward`](Self::forward) for `x` and `dy`, summed
    /// over the batch; `false`, having written nothing, if the lengths do not match the plan
    /// or when not [`takes_backward_filter`](Self::takes_backward_filter).
    pub fn backward_filter(&self, x: &[f32], dy: &[f32], dkernel: &mut [f32]) -> bool {
        let (x_len, y_len) = (self.x_len(), self.y_len());
        if !self.takes_backward_filter()
            || x.len() != self.batch * x_len
            || dy.len() != self.batch * y_len
            || dkernel.len() != self.kernel_len()
        {
            return false;
        }
        let table = FilterMasks::new(self);
        let zero_row = vec![0.0f32; self.w];
        sum_over_batch(self.batch, (x, x_len), (dy, y_len), dkernel, |x_b, dy_b, dk, scratch| {
            let (x_b, dy_b) = aligned_copies(x_b, dy_b, scratch);
            self.filter_image(x_b, dy_b, &table, &zero_row, dk)
        });
        true
    }

    /// Whether [`forward`](Self::forward) runs here: more than a pointwise kernel (the GEMM
    /// path reads the input in place for those).
    pub fn takes_forward(&self) -> bool {
        !self.is_pointwise()
    }

    /// Whether [`backward_data`](Self::backward_data) runs here: stride 1, padding before of
    /// at most `k - 1` (the flipped convolution needs no negative padding), and more than a
    /// pointwise kernel.
    pub fn takes_backward_data(&self) -> bool {
        self.sh == 1 && self.pt < self.kh && self.pl < self.kw && !self.is_pointwise()
    }

    /// Whether [`backward_filter`](Self::backward_filter) runs here: output rows of at least
    /// `MIN_FILTER_WIDTH` pixels, and more than a pointwise kernel.
    pub fn takes_backward_filter(&self) -> bool {
        self.wo >= MIN_FILTER_WIDTH && !self.is_pointwise()
    }

    fn is_pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.sh == 1
            && self.pt == 0
            && self.pl == 0
            && (self.h, self.w) == (self.ho, self.wo)
    }

    /// The output channel blocks of one forward tile.
    fn co_blocks(&self) -> Vec<Range<usize>> {
        let nv = self.wo.div_ceil(16).min(MAX_NV);
        split(0..self.cout, max_co(nv)).collect()
    }

    /// The forward tiles' columns: the row's vectors split evenly into tiles of at most
    /// [`MAX_NV`].
    fn segments(&self) -> Vec<Segment> {
        let (w, wo, pl) = (self.w, self.wo, self.pl);
        split(0..wo.div_ceil(16), MAX_NV)
            .map(|vectors| {
                let x0 = vectors.start * 16;
                let lanes = |v: usize, valid: &dyn Fn(usize) -> bool| {
                    (0..16).filter(|&l| valid(x0 + 16 * v + l)).fold(0u16, |m, l| m | 1 << l)
                };
                let store = std::array::from_fn(|v| lanes(v, &|ox| ox < wo));
                let masks = (0..self.kw)
                    // Output pixel ox reads input column ox + kx - pl.
                    .map(|kx| std::array::from_fn(|v| lanes(v, &|ox| ox < wo && ox + kx >= pl && ox + kx < pl + w)))
                    .collect();
                Segment { x0, nv: vectors.len(), masks, store }
            })
            .collect()
    }

    /// The forward convolution with `weight(co, ci, ky, kx)` as its kernel; `false`, having
    /// written nothing, if the lengths of `x` and `y` do not match the plan.
    fn run_forward(&self, x: &[f32], y: &mut [f32], weight: impl Fn(usize, usize, usize, usize) -> f32) -> bool {
        let (x_len, y_len) = (self.x_len(), self.y_len());
        if x.len() != self.batch * x_len || y.len() != self.batch * y_len {
            return false;
        }
        let blocks = self.co_blocks();
        let packed = self.pack(&blocks, weight);
        let segments = self.segments();
        let plane = self.ho * self.wo;
        // One task per (batch element, channel block): the block's output planes are
        // contiguous. (Copying each batch element's input to aligned scratch, as the filter
        // gradient does, for tasks of whole batch elements measured no faster.)
        let mut tasks = Vec::with_capacity(self.batch * blocks.len());
        for (b, mut y_b) in y.chunks_mut(y_len).enumerate() {
            for block in &blocks {
                let (y_block, rest) = y_b.split_at_mut(block.len() * plane);
                tasks.push((b, block.clone(), y_block));
                y_b = rest;
            }
        }
        let run = |(b, block, y_block): (usize, Range<usize>, &mut [f32])| {
            let x_b = &x[b * x_len..][..x_len];
            let packed = &packed[block.start * self.cin * self.kh * self.kw..];
            self.forward_block(x_b, packed, block.len(), &segments, y_block)
        };
        if several_threads() {
            tasks.into_par_iter().for_each(run);
        } else {
            tasks.into_iter().for_each(run);
        }
        true
    }

    /// The kernel for the tiles: each channel block `co0..co0 + c` at `co0·cin·kh·kw` as
    /// `[kx][ci][ky][c]`, so that a tile's broadcasts for one (kx, ci) run through
    /// consecutive addresses, kernel row after kernel row.
    fn pack(&self, blocks: &[Range<usize>], weight: impl Fn(usize, usize, usize, usize) -> f32) -> Vec<f32> {
        let mut packed = Vec::with_capacity(self.kernel_len());
        for block in blocks {
            for kx in 0..self.kw {
                for ci in 0..self.cin {
                    for ky in 0..self.kh {
                        packed.extend(block.clone().map(|co| weight(co, ci, ky, kx)));
                    }
                }
            }
        }
        packed
    }

    /// The `co` output planes of one batch element's channel block (`y_block`), from its
    /// packed kernel `packed`.
    fn forward_block(&self, x_b: &[f32], packed: &[f32], co: usize, segments: &[Segment], y_block: &mut [f32]) {
        let plane = self.h * self.w;
        // Bounds of every access, checked once per block; a failure is an internal error
        // that leaves the block unwritten (the tests compare against the GEMM path).
        let fits = x_b.len() >= self.cin * plane
            && packed.len() >= co * self.cin * self.kh * self.kw
            && y_block.len() >= co * self.ho * self.wo
            && segments.iter().all(|s| s.nv <= MAX_NV && s.masks.len() == self.kw);
        debug_assert!(fits, "conv_direct_nchw: block out of bounds");
        if !fits {
            return;
        }
        for oy in 0..self.ho {
            // With no kernel row inside the image the tile reads nothing and stores zeros.
            let rows = self.rows_read(oy);
            // The first input row read, row (oy·sh + rows.start - pt), at column x0 - pl: it
            // may lie before the row (those lanes are masked).
            let first = (oy * self.sh + rows.start) * self.w;
            for s in segments {
                let tile = ForwardTile {
                    x: x_b.as_ptr().wrapping_add(first + s.x0).wrapping_sub(self.pt * self.w + self.pl),
                    plane,
                    w: self.w,
                    rows: rows.len(),
                    cin: self.cin,
                    k: packed[rows.start * co..].as_ptr(),
                    kh: self.kh,
                    masks: &s.masks,
                    y: y_block[oy * self.wo + s.x0..].as_mut_ptr(),
                    out_plane: self.ho * self.wo,
                    store: s.store,
                };
                macro_rules! call {
                    ($($nv:literal => [$($c:literal),*]),*) => {
                        match (s.nv, co) {
                            $($(
                                // SAFETY: the CPU has AVX-512F and FMA (`NchwConv::new` checked).
                                // The tile reads, for ci < cin, kernel rows `rows` (inside the
                                // image) and, through its masks, only columns inside the image
                                // and the row: inside `x_b`. It reads `packed[((kx·cin + ci)·kh
                                // + ky)·co..][..co]` for ky < kh, and writes the stored lanes of
                                // row oy of its `co` planes: inside the slices (`fits`).
                                ($nv, $c) => unsafe { forward_kernel::<$nv, $c>(&tile) },
                            )*)*
                            _ => debug_assert!(false, "conv_direct_nchw: no forward kernel for {} × {co}", s.nv),
                        }
                    };
                }
                #[cfg(target_arch = "x86_64")]
                call!(
                    1 => [1, 2, 3, 4, 5, 6, 7, 8],
                    2 => [1, 2, 3, 4, 5, 6, 7, 8],
                    3 => [1, 2, 3, 4, 5, 6, 7, 8],
                    4 => [1, 2, 3, 4, 5, 6]
                );
            }
        }
    }

    /// Adds one batch element's filter gradient to `dk`.
    fn filter_image(&self, x_b: &[f32], dy_b: &[f32], table: &FilterMasks, zero_row: &[f32], dk: &mut [f32]) {
        let (plane, out_plane) = (self.h * self.w, self.ho * self.wo);
        let fits = x_b.len() >= self.cin * plane
            && dy_b.len() >= self.cout * out_plane
            && dk.len() >= self.kernel_len()
            && zero_row.len() >= self.w
            && table.x.len() >= self.kw * table.vectors
            && table.dy.len() >= table.vectors;
        debug_assert!(fits, "conv_direct_nchw: filter gradient out of bounds");
        if !fits {
            return;
        }
        let taps = self.kh * self.kw;
        for ci in 0..self.cin {
            let x_plane = &x_b[ci * plane..][..plane];
            for kys in (0..self.kh).step_by(FILTER_ROWS).map(|k| k..(k + FILTER_ROWS).min(self.kh)) {
                for cos in split(0..self.cout, FILTER_CO_BY_ROWS[kys.len() - 1]) {
                    let dy_planes = &dy_b[cos.start * out_plane..];
                    for kxs in (0..self.kw).step_by(FILTER_COLUMNS).map(|k| k..(k + FILTER_COLUMNS).min(self.kw)) {
                        let sums = self.filter_tile(x_plane, dy_planes, table, zero_row, &cos, &kys, &kxs);
                        for (c, co) in cos.clone().enumerate() {
                            for (i, ky) in kys.clone().enumerate() {
                                for (j, kx) in kxs.clone().enumerate() {
                                    dk[(co * self.cin + ci) * taps + ky * self.kw + kx] +=
                                        sums[c][i][j].iter().sum::<f32>();
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The sums over the image of `dy[co] · x[ky, kx]` for the channels `cos` (planes of
    /// `dy` from its start) and the taps `kys × kxs`.
    #[allow(clippy::too_many_arguments)]
    fn filter_tile(
        &self,
        x_plane: &[f32],
        dy: &[f32],
        table: &FilterMasks,
        zero_row: &[f32],
        cos: &Range<usize>,
        kys: &Range<usize>,
        kxs: &Range<usize>,
    ) -> FilterSums {
        let mut sums = [[[[0.0; 16]; FILTER_COLUMNS]; FILTER_ROWS]; FILTER_CO];
        let out_plane = self.ho * self.wo;
        if dy.len() < cos.len() * out_plane {
            debug_assert!(false, "conv_direct_nchw: filter tile out of bounds");
            return sums;
        }
        // The interior vectors, which read only pixels inside the image and the row for every
        // tap column: output pixels ox with ox + kx ≥ pl and ox + 15 + kx < pl + w.
        let first = self.pl.saturating_sub(kxs.start).div_ceil(16);
        let last = (self.w + self.pl).saturating_sub(kxs.end - 1).min(self.wo) / 16;
        let tile = FilterTile {
            x: x_plane.as_ptr(),
            zero: zero_row.as_ptr(),
            h: self.h,
            w: self.w,
            sh: self.sh,
            pt: self.pt,
            ky0: kys.start,
            x_shift: kxs.start.wrapping_sub(self.pl),
            dy: dy.as_ptr(),
            wo: self.wo,
            ho: self.ho,
            out_plane,
            vectors: table.vectors,
            interior: first.min(table.vectors)..last.max(first).min(table.vectors),
            x_masks: table.x[kxs.start * table.vectors..].as_ptr(),
            dy_masks: table.dy.as_ptr(),
        };
        macro_rules! call {
            ($($ky:literal, $kx:literal => [$($c:literal),*]);*) => {
                match (kys.len(), kxs.len(), cos.len()) {
                    $($(
                        // SAFETY: the CPU has AVX-512F and FMA (`NchwConv::new` checked). Rows
                        // outside the image read `zero_row` (w long); the masks (from `table`,
                        // which covers the tap columns `kxs`) keep every load inside its row and
                        // the image's columns, or `dy`'s row; the interior vectors need none.
                        ($ky, $kx, $c) => unsafe { filter_kernel::<$c, $ky, $kx>(&tile, &mut sums) },
                    )*)*
                    _ => debug_assert!(false, "conv_direct_nchw: no filter kernel for {cos:?} × {kys:?} × {kxs:?}"),
                }
            };
        }
        // Channels up to FILTER_CO_BY_ROWS[rows - 1]: `split` never makes more.
        #[cfg(target_arch = "x86_64")]
        call!(
            1, 1 => [1, 2, 3, 4, 5, 6, 7, 8];
            1, 2 => [1, 2, 3, 4, 5, 6, 7, 8];
            1, 3 => [1, 2, 3, 4, 5, 6, 7, 8];
            2, 1 => [1, 2, 3, 4];
            2, 2 => [1, 2, 3, 4];
            2, 3 => [1, 2, 3, 4];
            3, 1 => [1, 2, 3];
            3, 2 => [1, 2, 3];
            3, 3 => [1, 2, 3]
        );
        sums
    }
}

/// A filter-gradient tile's sums, by output channel, kernel row, kernel column and lane.
type FilterSums = [[[[f32; 16]; FILTER_COLUMNS]; FILTER_ROWS]; FILTER_CO];

/// Copies of `a` and `b` in `scratch`, each starting on a 64-byte boundary. The
/// filter-gradient tiles load every `dy` vector and input vector once per tile; when rows
/// are a multiple of 16 long, aligned copies keep those loads (all of `dy`'s, a third of the
/// input's) within one cache line, where the caller's buffers (from `malloc`, 16-byte
/// aligned) make every load straddle two, which measured about 12% slower.
fn aligned_copies<'s>(a: &[f32], b: &[f32], scratch: &'s mut Vec<f32>) -> (&'s [f32], &'s [f32]) {
    const LINE: usize = 16;
    let a_len = a.len().next_multiple_of(LINE);
    let need = a_len + b.len() + LINE;
    if scratch.len() < need {
        scratch.resize(need, 0.0);
    }
    let skip = scratch.as_ptr().align_offset(LINE * size_of::<f32>()).min(LINE);
    let (a_copy, rest) = scratch[skip..].split_at_mut(a_len);
    let (a_copy, b_copy) = (&mut a_copy[..a.len()], &mut rest[..b.len()]);
    a_copy.copy_from_slice(a);
    b_copy.copy_from_slice(b);
    (a_copy, b_copy)
}

/// The lanes the filter-gradient tiles load from each vector of an output row: for `x`, per
/// kernel column (`vectors` apart), those whose input pixel lies inside the image and output
/// pixel inside the row; for `dy`, those inside the row.
#[derive(Debug)]
struct FilterMasks {
    vectors: usize,
    x: Vec<u16>,
    dy: Vec<u16>,
}

impl FilterMasks {
    fn new(conv: &NchwConv) -> Self {
        let vectors = conv.wo.div_ceil(16);
        let lanes = |v: usize, valid: &dyn Fn(usize) -> bool| {
            (0..16).filter(|&l| valid(16 * v + l)).fold(0u16, |m, l| m | 1 << l)
        };
        let (w, wo, pl) = (conv.w, conv.wo, conv.pl);
        let x = (0..conv.kw)
            .flat_map(|kx| (0..vectors).map(move |v| lanes(v, &|ox| ox < wo && ox + kx >= pl && ox + kx < pl + w)))
            .collect();
        let dy = (0..vectors).map(|v| lanes(v, &|ox| ox < wo)).collect();
        FilterMasks { vectors, x, dy }
    }
}

/// The operands of one forward tile (see [`forward_kernel`]).
struct ForwardTile<'a> {
    /// Input channel 0, first kernel row read, column of output pixel `x0` at kernel column
    /// 0 (possibly outside the row).
    x: *const f32,
    /// Elements per input plane and row.
    plane: usize,
    w: usize,
    /// Kernel rows read, all inside the image.
    rows: usize,
    cin: usize,
    /// The packed kernel of the channel block at its first kernel row read.
    k: *const f32,
    kh: usize,
    /// Per kernel column, the lanes of each vector to load.
    masks: &'a [[u16; MAX_NV]],
    /// Output channel 0 of the block, the tile's first pixel.
    y: *mut f32,
    out_plane: usize,
    store: [u16; MAX_NV],
}

/// The forward register tile: `NV` vectors of 16 output pixels × `CO` output channels.
///
/// # Safety
/// The CPU supports AVX-512F and FMA; for kx < masks.len(), ci < cin, r < rows, the masked
/// lanes of `x + ci·plane + r·w + kx + 16·v` are readable, as is
/// `k[((kx·cin + ci)·kh + r)·CO..][..CO]`; the `store` lanes of `y + c·out_plane + 16·v` for
/// c < CO are writable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
// Index loops over the const bounds read as the register tile they unroll into.
#[allow(clippy::needless_range_loop)]
unsafe fn forward_kernel<const NV: usize, const CO: usize>(t: &ForwardTile<'_>) {
    let mut acc = [[_mm512_setzero_ps(); NV]; CO];
    for (kx, masks) in t.masks.iter().enumerate() {
        for ci in 0..t.cin {
            let mut xp = t.x.wrapping_add(ci * t.plane + kx);
            // SAFETY (whole loop): the caller guarantees these ranges are accessible.
            unsafe {
                let mut kp = t.k.add((kx * t.cin + ci) * t.kh * CO);
                for _ in 0..t.rows {
                    let mut xv = [_mm512_setzero_ps(); NV];
                    for v in 0..NV {
                        xv[v] = _mm512_maskz_loadu_ps(masks[v], xp.wrapping_add(16 * v));
                    }
                    for c in 0..CO {
                        let b = _mm512_set1_ps(*kp.add(c));
                        for v in 0..NV {
                            acc[c][v] = _mm512_fmadd_ps(xv[v], b, acc[c][v]);
                        }
                    }
                    xp = xp.wrapping_add(t.w);
                    kp = kp.add(CO);
                }
            }
        }
    }
    for c in 0..CO {
        for v in 0..NV {
            // SAFETY: the caller guarantees the stored lanes are writable.
            unsafe { _mm512_mask_storeu_ps(t.y.add(c * t.out_plane + 16 * v), t.store[v], acc[c][v]) };
        }
    }
}

/// The operands of one filter-gradient tile (see [`filter_kernel`]).
struct FilterTile {
    /// The input plane, `h × w`, and a zero row of `w` read in place of rows outside it.
    x: *const f32,
    zero: *const f32,
    h: usize,
    w: usize,
    sh: usize,
    pt: usize,
    /// The tile's first kernel row, and its first kernel column minus the left padding
    /// (wrapping: it may be "negative").
    ky0: usize,
    x_shift: usize,
    /// The tile's first `dy` plane, `ho × wo`, the others `out_plane` apart.
    dy: *const f32,
    wo: usize,
    ho: usize,
    out_plane: usize,
    /// Vectors per output row, and those that need no masks.
    vectors: usize,
    interior: Range<usize>,
    /// The lanes to load: for `x`, of vector v at the tile's kernel column kx at
    /// `x_masks[kx·vectors + v]`; for `dy` at `dy_masks[v]`.
    x_masks: *const u16,
    dy_masks: *const u16,
}

/// The filter-gradient register tile: `CO` output channels × `KY × KX` taps, summed over the
/// whole image into the lanes of `sums`.
///
/// # Safety
/// The CPU supports AVX-512F and FMA; the `h × w` plane at `x`, `w` values at `zero`, `CO`
/// planes of `ho × wo` at `dy` (`out_plane` apart), `KX·vectors` masks at `x_masks` and
/// `vectors` at `dy_masks` are readable; the masks select only lanes inside the rows they
/// load (columns `16·v + kx + x_shift` of the input, `16·v` of `dy`), and the vectors in
/// `interior` are inside for every tap column.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
#[allow(clippy::needless_range_loop)]
unsafe fn filter_kernel<const CO: usize, const KY: usize, const KX: usize>(t: &FilterTile, sums: &mut FilterSums) {
    let mut acc = [[[_mm512_setzero_ps(); KX]; KY]; CO];
    for oy in 0..t.ho {
        let rows: [*const f32; KY] = std::array::from_fn(|i| {
            match (oy * t.sh + t.ky0 + i).checked_sub(t.pt).filter(|&iy| iy < t.h) {
                Some(iy) => t.x.wrapping_add(iy * t.w),
                None => t.zero,
            }
            .wrapping_add(t.x_shift)
        });
        let dy_row = t.dy.wrapping_add(oy * t.wo);
        // One vector of the row: `$xm[kx]` and `$dm` are the lanes to load. Whichever of the
        // `dy` vectors and the input vectors are fewer stay in registers while the others
        // stream, so that the accumulators keep theirs.
        macro_rules! step {
            ($v:expr, $xm:expr, $dm:expr) => {{
                let v = $v;
                // SAFETY (both arms): the caller guarantees the `$dm` lanes of `dy` and the
                // `$xm[j]` lanes of the input rows are readable.
                if CO <= KY * KX {
                    let mut d = [_mm512_setzero_ps(); CO];
                    for c in 0..CO {
                        d[c] = unsafe { _mm512_maskz_loadu_ps($dm, dy_row.wrapping_add(c * t.out_plane + 16 * v)) };
                    }
                    for i in 0..KY {
                        for j in 0..KX {
                            let xv = unsafe { _mm512_maskz_loadu_ps($xm[j], rows[i].wrapping_add(16 * v + j)) };
                            for c in 0..CO {
                                acc[c][i][j] = _mm512_fmadd_ps(d[c], xv, acc[c][i][j]);
                            }
                        }
                    }
                } else {
                    let mut xv = [[_mm512_setzero_ps(); KX]; KY];
                    for i in 0..KY {
                        for j in 0..KX {
                            xv[i][j] = unsafe { _mm512_maskz_loadu_ps($xm[j], rows[i].wrapping_add(16 * v + j)) };
                        }
                    }
                    for c in 0..CO {
                        let d = unsafe { _mm512_maskz_loadu_ps($dm, dy_row.wrapping_add(c * t.out_plane + 16 * v)) };
                        for i in 0..KY {
                            for j in 0..KX {
                                acc[c][i][j] = _mm512_fmadd_ps(d, xv[i][j], acc[c][i][j]);
                            }
                        }
                    }
                }
            }};
        }
        for v in t.interior.clone() {
            step!(v, [0xffff; KX], 0xffff);
        }
        for v in (0..t.interior.start).chain(t.interior.end..t.vectors) {
            // SAFETY: the caller guarantees `KX·vectors` x masks and `vectors` dy masks.
            let (xm, dm): ([u16; KX], u16) =
                unsafe { (std::array::from_fn(|j| *t.x_masks.add(j * t.vectors + v)), *t.dy_masks.add(v)) };
            step!(v, xm, dm);
        }
    }
    // The lanes are summed by the caller: `_mm512_reduce_add_ps` here made LLVM keep only
    // about 20 vector registers for the loop above and spill the accumulators.
    for c in 0..CO {
        for i in 0..KY {
            for j in 0..KX {
                // SAFETY: a 16-lane store into `sums[c][i][j]`, 16 long.
                unsafe { _mm512_storeu_ps(sums[c][i][j].as_mut_ptr(), acc[c][i][j]) };
            }
        }
    }
}
