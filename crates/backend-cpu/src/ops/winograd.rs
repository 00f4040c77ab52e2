//! Winograd F(2×2, 3×3) forward convolution for ChannelsLast f32 on AVX-512 CPUs: 3×3
//! kernels at stride 1, the shape of almost every convolution in a CNN.
//!
//! A 2×2 block of outputs (a *tile*) reads a 4×4 patch of the input. Transformed, the patch
//! and the kernel multiply element by element: 16 products per input and output channel
//! instead of the direct convolution's 4 × 9 = 36, so 2.25 times fewer FMAs. Summed over the
//! input channels, those products are 16 independent GEMMs, one per position `p` of the 4×4
//! transform:
//!
//! ```text
//! V[t, p, ci]  = (Bᵀ · patch_t · B)[p]     input transform, per tile t and input channel
//! U[p, ci, co] = (G · g · Gᵀ)[p]           kernel transform, once per call
//! M[t, p, co]  = Σ_ci V[t, p, ci] · U[p, ci, co]     16 GEMMs
//! y[tile t]    = Aᵀ · M[t] · A             output transform, per tile and output channel
//! ```
//!
//! The GEMMs run on the direct convolution's register tile (`conv_direct::forward_tile`):
//! rows of `V` are its "pixels", `U[p]` its kernel. The tiles of one task go through the three
//! steps in chunks small enough that `V` and `M` stay in L2 between them. Both are stored
//! position by position (`V[p]` is a `tiles × cin` matrix), so that a GEMM reads and writes
//! consecutive rows.
//!
//! The matrices are those of Lavin and Gray, "Fast Algorithms for Convolutional Neural
//! Networks" (2015). Their entries are 0, ±1 and ±½, so the transforms only add and halve.
//! The result is no less accurate than the direct kernels': on a 64×64 image of 64 channels
//! with 64 outputs, the largest error against the f64 reference was 3.3e-7 of the largest
//! output, against 8.9e-7 for the direct tile, whose sums run over all 576 products in turn.

use std::{cell::RefCell, ops::Range};

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::conv_direct::{
    BLOCK, MIN_LANES, PixelStep, Plane, Run, for_each_row_block, forward_tile, masks, max_rows, split,
};
use super::matmul::with_scratch;
use crate::simd::vectorized;

/// Positions of the transformed 4×4 patch: the number of GEMMs.
const POSITIONS: usize = 16;

/// Floats of `V` (or `M`) one chunk of tiles may span: 128 KiB each, so that both stay in L2
/// (1 MiB per core on the machines this was tuned on) with the transformed kernel.
const CHUNK_FLOATS: usize = 32 * 1024;

thread_local! {
    /// A task's `V` and `M` for one chunk of tiles.
    static TRANSFORMED_TILES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The Winograd plan of a ChannelsLast convolution (see [`Winograd::new`]).
#[derive(Clone, Debug)]
pub struct Winograd<'a> {
    plane: &'a Plane,
    /// Tiles down and across one image: the output rounded up to even sizes, halved.
    tiles_h: usize,
    tiles_w: usize,
}

impl<'a> Winograd<'a> {
    /// The plan for `plane` when it is a 3×3 convolution at stride 1 with at least 16 input
    /// and output channels (fewer would leave most of the GEMM tile's lanes or reduction
    /// idle; the direct kernels take those). [`Plane`] has already excluded dilation, groups
    /// and CPUs without AVX-512.
    pub fn new(plane: &'a Plane) -> Option<Self> {
        let taken = (plane.kh, plane.kw, plane.sh, plane.sw) == (3, 3, 1, 1)
            && plane.cin >= MIN_LANES
            && plane.cout >= MIN_LANES;
        taken.then(|| Winograd { plane, tiles_h: plane.ho.div_ceil(2), tiles_w: plane.wo.div_ceil(2) })
    }

    /// `y = conv(x, kernel)` with this plan's shapes (checked by the caller, as for
    /// [`DirectConv::forward`](super::conv_direct::DirectConv::forward)).
    pub fn forward(&self, x: &[f32], kernel: &[f32], y: &mut [f32]) {
        let p = self.plane;
        let u = self.transform_kernel(kernel);
        let tiles_per_chunk = (CHUNK_FLOATS / (POSITIONS * p.cin.max(p.cout))).max(max_rows(1));
        // Whole rows of tiles per task: about one chunk's worth, at least one row.
        let tile_rows_per_task = (tiles_per_chunk / self.tiles_w).max(1);
        let output_row_len = p.wo * p.cout;
        for_each_row_block(y, p.batch, 2 * tile_rows_per_task * output_row_len, |b, k, y_block| {
            let x_b = &x[b * p.x_len()..][..p.x_len()];
            let first_tile_row = k * tile_rows_per_task;
            let tile_rows = first_tile_row..(first_tile_row + tile_rows_per_task).min(self.tiles_h);
            let tiles = tile_rows.start * self.tiles_w..tile_rows.end * self.tiles_w;
            let v_len = POSITIONS * position_stride(tiles_per_chunk, p.cin);
            let m_len = POSITIONS * position_stride(tiles_per_chunk, p.cout);
            with_scratch(&TRANSFORMED_TILES, v_len + m_len, |scratch| {
                let (v, m) = scratch.split_at_mut(v_len);
                for chunk in split(tiles.clone(), tiles_per_chunk) {
                    self.transform_input(x_b, chunk.clone(), v);
                    self.multiply(v, &u, chunk.len(), m);
                    self.transform_output(m, chunk, 2 * tile_rows.start, y_block);
                }
            });
        });
    }

    /// `U[p, ci, co] = (G g Gᵀ)[p]` for the kernel `g[kh, kw, ci, co]`, with
    /// `G = [[1, 0, 0], [½, ½, ½], [½, -½, ½], [0, 0, 1]]`.
    fn transform_kernel(&self, kernel: &[f32]) -> Vec<f32> {
        const G: [[f32; 3]; 4] = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]];
        let plane_len = self.plane.cin * self.plane.cout;
        let mut u = vec![0.0f32; POSITIONS * plane_len];
        vectorized(
            #[inline(always)]
            || {
                for (p, u_p) in u.chunks_exact_mut(plane_len).enumerate() {
                    let (i, j) = (p / 4, p % 4);
                    for (tap, g) in kernel.chunks_exact(plane_len).enumerate() {
                        let weight = G[i][tap / 3] * G[j][tap % 3];
                        if weight != 0.0 {
                            u_p.iter_mut().zip(g).for_each(|(u, &g)| *u += weight * g);
                        }
                    }
                }
            },
        );
        u
    }

    /// `V` for the tiles `chunk` (numbered row-major over the image) of the image `x_b`:
    /// position `p` of tile `t` of the chunk at `v[p·stride + t·cin..][..cin]`, with the
    /// [`position_stride`] of the chunk.
    fn transform_input(&self, x_b: &[f32], chunk: Range<usize>, v: &mut [f32]) {
        let p = self.plane;
        let (cin, tiles) = (p.cin, chunk.len());
        let stride = position_stride(tiles, cin);
        let v = &mut v[..POSITIONS * stride];
        for (t, tile) in chunk.enumerate() {
            let (ty, tx) = (tile / self.tiles_w, tile % self.tiles_w);
            // Where each element of the 4×4 patch starts in `x_b`, or `None` in the padding.
            let offsets: [[Option<usize>; 4]; 4] = std::array::from_fn(|i| {
                let iy = (2 * ty + i).checked_sub(p.pt).filter(|&iy| iy < p.h);
                std::array::from_fn(|j| {
                    let ix = (2 * tx + j).checked_sub(p.pl).filter(|&ix| ix < p.w)?;
                    Some((iy? * p.w + ix) * cin)
                })
            });
            let fits = offsets.iter().flatten().flatten().all(|&o| o + cin <= x_b.len());
            debug_assert!(fits, "winograd: patch out of bounds");
            if fits {
                // SAFETY: the CPU has AVX-512F (checked by `Plane::new`); every offset starts
                // `cin` readable floats of `x_b` (`fits`), and position p of tile t, `cin`
                // floats from (p·tiles + t)·cin, lies inside `v` (sliced above).
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    input_tile(x_b.as_ptr(), &offsets, cin, v.as_mut_ptr().add(t * cin), stride)
                };
            }
        }
    }

    /// The 16 GEMMs `M[t, p] = V[t, p] · U[p]` for the `tiles` tiles of a chunk, one 64-channel
    /// panel of `U[p]` at a time.
    fn multiply(&self, v: &[f32], u: &[f32], tiles: usize, m: &mut [f32]) {
        let (cin, cout) = (self.plane.cin, self.plane.cout);
        let step = PixelStep { x: cin, y: cout };
        let (v_stride, m_stride) = (position_stride(tiles, cin), position_stride(tiles, cout));
        for first in (0..cout).step_by(BLOCK) {
            let width = (cout - first).min(BLOCK);
            let nv = width.div_ceil(16);
            for p in 0..POSITIONS {
                let u_panel = &u[p * cin * cout + first..];
                for rows in split(0..tiles, max_rows(nv)) {
                    let run = Run { x: p * v_stride + rows.start * cin, x_step: 1, k: 0, len: cin };
                    let out = &mut m[p * m_stride + rows.start * cout + first..];
                    forward_tile(rows.len(), nv, v, step, u_panel, cout, &[run], out.into(), width);
                }
            }
        }
    }

    /// `y = Aᵀ M A` for the tiles `chunk` into `y_rows`, whole output rows from
    /// `first_output_row` on; the parts of edge tiles beyond the output are dropped.
    fn transform_output(&self, m: &[f32], chunk: Range<usize>, first_output_row: usize, y_rows: &mut [f32]) {
        let p = self.plane;
        let (cout, tiles) = (p.cout, chunk.len());
        let stride = position_stride(tiles, cout);
        let m = &m[..POSITIONS * stride];
        let row_len = p.wo * cout;
        let rows_here = y_rows.len() / row_len;
        for (t, tile) in chunk.enumerate() {
            let (ty, tx) = (tile / self.tiles_w, tile % self.tiles_w);
            let offsets: [[Option<usize>; 2]; 2] = std::array::from_fn(|a| {
                let row = (2 * ty + a).checked_sub(first_output_row).filter(|&r| r < rows_here);
                std::array::from_fn(|b| {
                    let column = Some(2 * tx + b).filter(|&c| c < p.wo)?;
                    Some(row? * row_len + column * cout)
                })
            });
            let fits = offsets.iter().flatten().flatten().all(|&o| o + cout <= y_rows.len());
            debug_assert!(fits, "winograd: output tile out of bounds");
            if fits {
                // SAFETY: the CPU has AVX-512F (checked by `Plane::new`); position p of tile
                // t, `cout` floats from (p·tiles + t)·cout, lies inside `m` (sliced above), and
                // every offset starts `cout` writable floats of `y_rows`.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    output_tile(m.as_ptr().add(t * cout), cout, stride, &offsets, y_rows.as_mut_ptr())
                };
            }
        }
    }
}

/// Floats from one position of `V` (or `M`) to the next for `tiles` tiles of `channels`
/// channels: the matrix, and one cache line more. Without it, 32 tiles of 64 channels put the
/// 16 positions 8 KiB apart, in the same L1 sets, and the transforms took twice as long.
fn position_stride(tiles: usize, channels: usize) -> usize {
    tiles * channels + 16
}

/// `Bᵀ d B` with `Bᵀ = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]`, applied
/// to the four vectors of one row or column.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn input_1d(d: [__m512; 4]) -> [__m512; 4] {
    [_mm512_sub_ps(d[0], d[2]), _mm512_add_ps(d[1], d[2]), _mm512_sub_ps(d[2], d[1]), _mm512_sub_ps(d[1], d[3])]
}

/// One tile's `V`: the 4×4 patch at `offsets` (`None`: zero padding) of `x`, transformed
/// channel block by channel block into `v[p·position_stride..][..cin]` for the 16 positions.
///
/// # Safety
/// The CPU supports AVX-512F; each offset starts `cin` readable floats of `x`, and
/// `v[p·position_stride..][..cin]` is writable for p < 16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
// Index loops over the 4×4 patch read as the transform they unroll into; the same loop
// written with nested `array::from_fn` measured 20 % slower on the whole convolution.
#[allow(clippy::needless_range_loop)]
unsafe fn input_tile(
    x: *const f32,
    offsets: &[[Option<usize>; 4]; 4],
    cin: usize,
    v: *mut f32,
    position_stride: usize,
) {
    for c in (0..cin).step_by(16) {
        let [mask] = masks::<1>(cin - c);
        let mut rows = [[_mm512_setzero_ps(); 4]; 4];
        for (row, row_offsets) in rows.iter_mut().zip(offsets) {
            for (value, offset) in row.iter_mut().zip(row_offsets) {
                if let Some(o) = offset {
                    // SAFETY: the masked lanes lie inside the `cin` floats from the offset.
                    *value = unsafe { _mm512_maskz_loadu_ps(mask, x.add(o + c)) };
                }
            }
        }
        // Bᵀ d: down each column; then · B: along each row.
        let columns: [[__m512; 4]; 4] =
            std::array::from_fn(|j| input_1d([rows[0][j], rows[1][j], rows[2][j], rows[3][j]]));
        for i in 0..4 {
            let out = input_1d([columns[0][i], columns[1][i], columns[2][i], columns[3][i]]);
            for (j, value) in out.into_iter().enumerate() {
                // SAFETY: position 4i + j has `cin` writable floats; the lanes are below `cin`.
                unsafe { _mm512_mask_storeu_ps(v.add((4 * i + j) * position_stride + c), mask, value) };
            }
        }
    }
}

/// `Aᵀ m` with `Aᵀ = [[1, 1, 1, 0], [0, 1, -1, -1]]`, applied to four vectors.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn output_1d(m: [__m512; 4]) -> [__m512; 2] {
    [_mm512_add_ps(_mm512_add_ps(m[0], m[1]), m[2]), _mm512_sub_ps(_mm512_sub_ps(m[1], m[2]), m[3])]
}

/// One tile's outputs: `Aᵀ M A` of its 16 positions in `m` (`position_stride` apart),
/// stored at `offsets` of `y` (`None`: beyond the output, dropped).
///
/// # Safety
/// The CPU supports AVX-512F; `m[p·position_stride..][..cout]` is readable for p < 16, and
/// each offset starts `cout` writable floats of `y`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn output_tile(
    m: *const f32,
    cout: usize,
    position_stride: usize,
    offsets: &[[Option<usize>; 2]; 2],
    y: *mut f32,
) {
    for c in (0..cout).step_by(16) {
        let [mask] = masks::<1>(cout - c);
        let mut positions = [_mm512_setzero_ps(); POSITIONS];
        for (p, value) in positions.iter_mut().enumerate() {
            // SAFETY: position p has `cout` readable floats; the lanes are below `cout`.
            *value = unsafe { _mm512_maskz_loadu_ps(mask, m.add(p * position_stride + c)) };
        }
        // Aᵀ M: down each column; then · A: along each row.
        let columns: [[__m512; 2]; 4] =
            std::array::from_fn(|j| output_1d([positions[j], positions[4 + j], positions[8 + j], positions[12 + j]]));
        for (a, row_offsets) in offsets.iter().enumerate() {
            let out = output_1d([columns[0][a], columns[1][a], columns[2][a], columns[3][a]]);
            for (value, offset) in out.into_iter().zip(row_offsets) {
                if let Some(o) = offset {
                    // SAFETY: the offset starts `cout` writable floats; the lanes are below it.
                    unsafe { _mm512_mask_storeu_ps(y.add(o + c), mask, value) };
                }
            }
        }
    }
}
