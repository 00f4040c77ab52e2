//! N-d max / average pooling and its backward kernel, both layouts.
//!
//! Windows are clipped to the input first ([`Window::clipped_windows`]), so padding never
//! takes part: it cannot win a max and is not counted by an average (TensorFlow's rule). A
//! window with no in-bounds position gives 0.
//!
//! ChannelsFirst works plane by plane (one (batch, channel) pair each, in parallel);
//! ChannelsLast works on whole channel vectors per window position, which vectorises, and runs
//! output positions (forward) or batch elements (backward, whose scatters overlap between
//! neighbouring windows) in parallel.

use std::ops::Range;

use keras_backend_api::{BackendError, Layout, PoolMode, PoolParams, window::PoolGeometry as CheckedPool};
use rayon::prelude::*;

use super::element::{Float, min_per_task};
use super::window::{Window, beats, with_float_triple};
use super::{Tensor, TensorMut};
use crate::simd::vectorized;
use crate::{Result, with_float_pair};

/// Output elements below which a parallel task is not worth scheduling.
const MIN_TASK_ELEMENTS: usize = 1 << 12;

/// Forward pooling: `out` gets the max or mean of each window of `x`.
pub fn pool(x: Tensor<'_>, out: TensorMut<'_>, params: &PoolParams<'_>) -> Result<()> {
    let geo = PoolGeometry::from(CheckedPool::new("pool", "out", x.shape, out.shape, params)?);
    with_float_pair!("pool", (x.data, out.data), (x, y) => {
        pool_typed(&geo, params.mode, x, y);
        Ok(())
    })
}

/// Gradient with respect to the input: `dx` (the shape of `x`) is zeroed, then each element
/// of `dy` goes to the first maximal in-bounds element of its window (Max) or is spread
/// evenly over the window's in-bounds elements (Avg); overlapping windows add up.
pub fn pool_backward(x: Tensor<'_>, dy: Tensor<'_>, dx: TensorMut<'_>, params: &PoolParams<'_>) -> Result<()> {
    let geo = PoolGeometry::from(CheckedPool::backward(x.shape, dy.shape, dx.shape, params)?);
    // RouteGradient numbers the positions of one window in u32. A window's extents may
    // multiply past usize (padding can make it far larger than the input): checked.
    let window_size = geo.window.window.iter().try_fold(1usize, |n, &w| n.checked_mul(w)).unwrap_or(usize::MAX);
    let window_positions = window_size.min(geo.window.input_len());
    if u32::try_from(window_positions).is_err() {
        return Err(BackendError::invalid(format!(
            "pool_backward: a window over `x` of shape {:?} covers {window_positions} positions, beyond this backend's limit of {}",
            x.shape,
            u32::MAX
        )));
    }
    with_float_triple!("pool_backward", ["x", "dy", "dx"], (x.data, dy.data, dx.data), (x, dy, dx) => {
        pool_backward_typed(&geo, params.mode, x, dy, dx);
        Ok(())
    })
}

/// The checked shapes of one pooling, with the clipped window of every output index.
#[derive(Debug)]
struct PoolGeometry {
    layout: Layout,
    channels: usize,
    window: Window,
    /// The clipped input range of every output index, per dim.
    ranges: [Vec<Range<usize>>; 3],
}

impl From<CheckedPool> for PoolGeometry {
    fn from(checked: CheckedPool) -> PoolGeometry {
        let window = Window::from(checked.window);
        let ranges = window.clipped_windows();
        PoolGeometry { layout: checked.layout, channels: checked.channels, window, ranges }
    }
}

impl PoolGeometry {
    /// The in-bounds input box of the output position `p`, per dim.
    fn window_box(&self, p: usize) -> [&Range<usize>; 3] {
        let o = self.window.output_index(p);
        [&self.ranges[0][o[0]], &self.ranges[1][o[1]], &self.ranges[2][o[2]]]
    }

    /// Whether the windows tile the input exactly: each input element lies in exactly one
    /// window (window = stride, no padding, no remainder). The backward pass then writes
    /// every element of `dx` once instead of zeroing it and adding into it.
    fn tiles_input(&self) -> bool {
        let w = &self.window;
        (0..3).all(|d| {
            w.window[d] == w.stride[d]
                && w.dilation[d] == 1
                && w.pad_before[d] == 0
                && w.pad_after[d] == 0
                && w.output[d] * w.window[d] == w.input[d]
        })
    }

    /// Number of in-bounds positions of a window box.
    fn count(window_box: [&Range<usize>; 3]) -> usize {
        window_box.iter().map(|r| r.len()).product()
    }

    /// The flat input position of the first maximum of plane `plane` over `window_box`, or
    /// `None` for an empty box.
    fn argmax<T: Float>(&self, plane: &[T], window_box: [&Range<usize>; 3]) -> Option<usize> {
        let mut best: Option<usize> = None;
        self.window.for_each_in_box(window_box, |i| {
            if best.is_none_or(|b| beats(plane[i], plane[b])) {
                best = Some(i);
            }
        });
        best
    }
}

fn pool_typed<T: Float>(geo: &PoolGeometry, mode: PoolMode, x: &[T], y: &mut [T]) {
    if y.is_empty() {
        return;
    }
    if x.is_empty() {
        // An empty spatial input: every window lies in padding.
        y.fill(T::ZERO);
        return;
    }
    let (in_len, out_len) = (geo.window.input_len(), geo.window.output_len());
    match geo.layout {
        Layout::ChannelsFirst => {
            let planes_per_task = (MIN_TASK_ELEMENTS / out_len).max(1);
            y.par_chunks_mut(out_len).zip(x.par_chunks(in_len)).with_min_len(min_per_task(planes_per_task)).for_each(
                |(y, x)| {
                    for (p, y) in y.iter_mut().enumerate() {
                        let window_box = geo.window_box(p);
                        *y = match mode {
                            PoolMode::Max => geo.argmax(x, window_box).map_or(T::ZERO, |i| x[i]),
                            PoolMode::Avg => {
                                let mut sum = T::ZERO;
                                geo.window.for_each_in_box(window_box, |i| sum += x[i]);
                                mean(sum, PoolGeometry::count(window_box))
                            }
                        };
                    }
                },
            );
        }
        Layout::ChannelsLast => {
            // Each task takes a run of output positions ([`PoolPosition`] each).
            let channels = geo.channels;
            let rows_per_task = (MIN_TASK_ELEMENTS / channels).max(1);
            let task = |(t, y_task): (usize, &mut [T])| {
                vectorized(
                    #[inline(always)]
                    || {
                        for (r, y) in y_task.chunks_mut(channels).enumerate() {
                            let row = t * rows_per_task + r;
                            let (b, p) = (row / out_len, row % out_len);
                            let x_b = &x[b * in_len * channels..(b + 1) * in_len * channels];
                            let window_box = geo.window_box(p);
                            for_each_chunk::<false>(channels, &mut PoolPosition { geo, mode, window_box, x: x_b, y });
                        }
                    },
                )
            };
            y.par_chunks_mut(channels * rows_per_task).enumerate().with_min_len(min_per_task(1)).for_each(task);
        }
    }
}

/// Channels one pass of the ChannelsLast loops keeps in registers: one zmm of `f32`.
const LANES: usize = 16;

/// A ChannelsLast loop over one window, run on `N` channels from `c0` on: the channel
/// vector is cut into chunks of fixed length so that each chunk's working values are local
/// arrays, which stay in registers. Working through `Vec`s of channels instead made every
/// window position reload what the previous one had just stored; on the CNN's 32 channels
/// those store-to-load stalls were most of the time.
trait ChannelChunk {
    fn run<const N: usize>(&mut self, c0: usize);
}

/// Runs `chunk` over `channels` channels: chunks of `4·LANES`, then (with `PAIRS`) `2·LANES`,
/// then `LANES`, then single channels.
///
/// The backward pass takes `PAIRS`: on the CNN's 32 channels one walk of the window per
/// position instead of two took it from 0.028–0.031 to 0.020 ms in cache (x [4, 26, 26, 32],
/// 2×2) and from 2.03–2.07 to 1.78–1.99 ms at batch 128; the forward pass got slower with it
/// (0.023 → 0.031 ms in cache).
#[inline(always)]
fn for_each_chunk<const PAIRS: bool>(channels: usize, chunk: &mut impl ChannelChunk) {
    let mut c0 = 0;
    while c0 + 4 * LANES <= channels {
        chunk.run::<{ 4 * LANES }>(c0);
        c0 += 4 * LANES;
    }
    while PAIRS && c0 + 2 * LANES <= channels {
        chunk.run::<{ 2 * LANES }>(c0);
        c0 += 2 * LANES;
    }
    while c0 + LANES <= channels {
        chunk.run::<LANES>(c0);
        c0 += LANES;
    }
    for c in c0..channels {
        chunk.run::<1>(c);
    }
}

/// The `N` channels from `c0` on of channel vector `i` of `data` (`channels` per vector).
#[inline(always)]
fn lanes<T, const N: usize>(data: &[T], channels: usize, i: usize, c0: usize) -> &[T; N] {
    data[i * channels + c0..][..N].try_into().expect("a slice of N elements")
}

/// Mutable [`lanes`].
#[inline(always)]
fn lanes_mut<T, const N: usize>(data: &mut [T], channels: usize, i: usize, c0: usize) -> &mut [T; N] {
    (&mut data[i * channels + c0..][..N]).try_into().expect("a slice of N elements")
}

/// One output position of a ChannelsLast pooling: `y` (its channel vector) gets the max or
/// mean over the window's positions of the batch element `x`.
struct PoolPosition<'a, T> {
    geo: &'a PoolGeometry,
    mode: PoolMode,
    window_box: [&'a Range<usize>; 3],
    x: &'a [T],
    y: &'a mut [T],
}

impl<T: Float> ChannelChunk for PoolPosition<'_, T> {
    #[inline(always)]
    fn run<const N: usize>(&mut self, c0: usize) {
        let channels = self.y.len();
        let mut acc = [T::ZERO; N];
        let mut first = true;
        self.geo.window.for_each_in_box(
            self.window_box,
            #[inline(always)]
            |i| {
                let x = lanes::<T, N>(self.x, channels, i, c0);
                for (a, &v) in acc.iter_mut().zip(x) {
                    *a = match self.mode {
                        _ if first => v,
                        // A select, not a conditional store, so that the loop vectorises.
                        PoolMode::Max if beats(v, *a) => v,
                        PoolMode::Max => *a,
                        PoolMode::Avg => *a + v,
                    };
                }
                first = false;
            },
        );
        if self.mode == PoolMode::Avg {
            let count = PoolGeometry::count(self.window_box);
            acc.iter_mut().for_each(|a| *a = mean(*a, count));
        }
        *lanes_mut::<T, N>(self.y, channels, 0, c0) = acc;
    }
}

fn pool_backward_typed<T: Float>(geo: &PoolGeometry, mode: PoolMode, x: &[T], dy: &[T], dx: &mut [T]) {
    if dx.is_empty() || dy.is_empty() {
        dx.fill(T::ZERO);
        return;
    }
    let (in_len, out_len) = (geo.window.input_len(), geo.window.output_len());
    // Each task zeroes its own part of `dx` before adding into it: in parallel, and while
    // that part is in cache.
    match geo.layout {
        Layout::ChannelsFirst => {
            let planes_per_task = (MIN_TASK_ELEMENTS / out_len).max(1);
            dx.par_chunks_mut(in_len)
                .zip(x.par_chunks(in_len))
                .zip(dy.par_chunks(out_len))
                .with_min_len(min_per_task(planes_per_task))
                .for_each(|((dx, x), dy)| {
                    dx.fill(T::ZERO);
                    for (p, &g) in dy.iter().enumerate() {
                        let window_box = geo.window_box(p);
                        match mode {
                            PoolMode::Max => {
                                if let Some(i) = geo.argmax(x, window_box) {
                                    dx[i] += g;
                                }
                            }
                            PoolMode::Avg => {
                                let share = mean(g, PoolGeometry::count(window_box));
                                geo.window.for_each_in_box(window_box, |i| dx[i] += share);
                            }
                        }
                    }
                });
        }
        Layout::ChannelsLast => {
            let channels = geo.channels;
            let overwrite = geo.tiles_input();
            dx.par_chunks_mut(in_len * channels)
                .zip(x.par_chunks(in_len * channels))
                .zip(dy.par_chunks(out_len * channels))
                .with_min_len(min_per_task(1))
                .for_each(|((dx, x), dy)| {
                    if !overwrite {
                        dx.fill(T::ZERO);
                    }
                    vectorized(
                        #[inline(always)]
                        || {
                            for (p, dy) in dy.chunks(channels).enumerate() {
                                let window_box = geo.window_box(p);
                                let mut route = RouteGradient { geo, mode, overwrite, window_box, x, dy, dx };
                                for_each_chunk::<true>(channels, &mut route);
                            }
                        },
                    )
                });
        }
    }
}

/// One output position of a ChannelsLast pooling's backward pass: `dy` (its channel vector)
/// is added to the first maximum of each channel over the window (Max) or spread evenly over
/// the window's positions (Avg), in the batch element's `dx`.
struct RouteGradient<'a, T> {
    geo: &'a PoolGeometry,
    mode: PoolMode,
    /// Whether this window is the only one over its elements (`tiles_input`): they are then
    /// written, not added to (`dx` was not zeroed).
    overwrite: bool,
    window_box: [&'a Range<usize>; 3],
    x: &'a [T],
    dy: &'a [T],
    dx: &'a mut [T],
}

impl<T: Float> ChannelChunk for RouteGradient<'_, T> {
    #[inline(always)]
    fn run<const N: usize>(&mut self, c0: usize) {
        let (channels, window) = (self.dy.len(), &self.geo.window);
        let g = *lanes::<T, N>(self.dy, channels, 0, c0);
        match self.mode {
            PoolMode::Max => {
                // The max's position as the ordinal of the window walk: a `u32` fills the same
                // vector lanes as an `f32`, so that routing below is a compare-and-select
                // rather than a scatter.
                let (mut best, mut at, mut k) = ([T::ZERO; N], [0u32; N], 0u32);
                window.for_each_in_box(
                    self.window_box,
                    #[inline(always)]
                    |i| {
                        let x = lanes::<T, N>(self.x, channels, i, c0);
                        for ((b, a), &v) in best.iter_mut().zip(at.iter_mut()).zip(x) {
                            let wins = (k == 0) | beats(v, *b);
                            *b = if wins { v } else { *b };
                            *a = if wins { k } else { *a };
                        }
                        k += 1;
                    },
                );
                let mut k = 0u32;
                let overwrite = self.overwrite;
                window.for_each_in_box(
                    self.window_box,
                    #[inline(always)]
                    |i| {
                        let d = lanes_mut::<T, N>(self.dx, channels, i, c0);
                        // Two loops rather than a test per element, so that each vectorises.
                        if overwrite {
                            for ((d, &a), &g) in d.iter_mut().zip(&at).zip(&g) {
                                *d = if a == k { g } else { T::ZERO };
                            }
                        } else {
                            for ((d, &a), &g) in d.iter_mut().zip(&at).zip(&g) {
                                *d = if a == k { *d + g } else { *d };
                            }
                        }
                        k += 1;
                    },
                );
            }
            PoolMode::Avg => {
                let count = PoolGeometry::count(self.window_box);
                let share = g.map(|g| mean(g, count));
                window.for_each_in_box(
                    self.window_box,
                    #[inline(always)]
                    |i| {
                        let d = lanes_mut::<T, N>(self.dx, channels, i, c0);
                        if self.overwrite {
                            *d = share;
                        } else {
                            d.iter_mut().zip(&share).for_each(|(d, &s)| *d += s);
                        }
                    },
                );
            }
        }
    }
}

/// `sum / count`, or 0 for an empty window.
fn mean<T: Float>(sum: T, count: usize) -> T {
    if count == 0 { T::ZERO } else { sum / T::from_i64(count as i64) }
}

#[cfg(test)]
mod tests {
    use abi_stable::std_types::RSlice;
    use keras_backend_api::{DType, ErrorKind};

    use super::*;
    use crate::CpuStorage;
    use crate::ops::window::test_support::{dot, flat, indices, values};

    /// Deterministic pseudo-random values in [-1, 1), coarsely quantised so that windows
    /// often hold ties.
    fn noise(len: usize, seed: u64) -> Vec<f64> {
        let mut state = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        (0..len)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 33) % 16) as f64 / 8.0 - 1.0
            })
            .collect()
    }

    #[derive(Clone, Debug)]
    struct Case {
        mode: PoolMode,
        layout: Layout,
        batch: usize,
        channels: usize,
        input: Vec<usize>,
        window: Vec<usize>,
        strides: Vec<usize>,
        pad_before: Vec<usize>,
        pad_after: Vec<usize>,
    }

    impl Case {
        /// Batch 2, 3 channels, stride = window, no padding.
        fn new(mode: PoolMode, layout: Layout, input: &[usize], window: &[usize]) -> Case {
            Case {
                mode,
                layout,
                batch: 2,
                channels: 3,
                input: input.to_vec(),
                window: window.to_vec(),
                strides: window.to_vec(),
                pad_before: vec![0; input.len()],
                pad_after: vec![0; input.len()],
            }
        }

        fn strides(mut self, strides: &[usize]) -> Case {
            self.strides = strides.to_vec();
            self
        }

        fn pad(mut self, before: &[usize], after: &[usize]) -> Case {
            (self.pad_before, self.pad_after) = (before.to_vec(), after.to_vec());
            self
        }

        fn channels(mut self, channels: usize) -> Case {
            self.channels = channels;
            self
        }

        fn single(mut self) -> Case {
            (self.batch, self.channels) = (1, 1);
            self
        }

        fn out_spatial(&self) -> Vec<usize> {
            (0..self.input.len())
                .map(|d| {
                    let padded = self.input[d] + self.pad_before[d] + self.pad_after[d];
                    if padded < self.window[d] { 0 } else { (padded - self.window[d]) / self.strides[d] + 1 }
                })
                .collect()
        }

        fn shape(&self, spatial: &[usize]) -> Vec<usize> {
            match self.layout {
                Layout::ChannelsFirst => [&[self.batch, self.channels][..], spatial].concat(),
                Layout::ChannelsLast => [&[self.batch][..], spatial, &[self.channels]].concat(),
            }
        }

        fn x_shape(&self) -> Vec<usize> {
            self.shape(&self.input)
        }

        fn y_shape(&self) -> Vec<usize> {
            self.shape(&self.out_spatial())
        }

        fn params(&self) -> PoolParams<'_> {
            PoolParams {
                mode: self.mode,
                layout: self.layout,
                window: RSlice::from_slice(&self.window),
                strides: RSlice::from_slice(&self.strides),
                pad_before: RSlice::from_slice(&self.pad_before),
                pad_after: RSlice::from_slice(&self.pad_after),
            }
        }

        /// Calls `f(y index, in-bounds x indices of its window in row-major order)`.
        fn for_each_window(&self, mut f: impl FnMut(usize, Vec<usize>)) {
            let (x_shape, y_shape) = (self.x_shape(), self.y_shape());
            for b in 0..self.batch {
                for c in 0..self.channels {
                    for q in indices(&self.out_spatial()) {
                        let mut inside = Vec::new();
                        'taps: for k in indices(&self.window) {
                            let mut i = Vec::new();
                            for d in 0..q.len() {
                                let pos = (q[d] * self.strides[d] + k[d]) as i64 - self.pad_before[d] as i64;
                                if pos < 0 || pos >= self.input[d] as i64 {
                                    continue 'taps;
                                }
                                i.push(pos as usize);
                            }
                            inside.push(match self.layout {
                                Layout::ChannelsFirst => flat(&x_shape, &[&[b, c][..], &i].concat()),
                                Layout::ChannelsLast => flat(&x_shape, &[&[b][..], &i, &[c]].concat()),
                            });
                        }
                        let yi = match self.layout {
                            Layout::ChannelsFirst => flat(&y_shape, &[&[b, c][..], &q].concat()),
                            Layout::ChannelsLast => flat(&y_shape, &[&[b][..], &q, &[c]].concat()),
                        };
                        f(yi, inside);
                    }
                }
            }
        }

        /// The in-bounds element each window's gradient goes to, with its weight.
        fn naive_routes(&self, x: &[f64]) -> Vec<(usize, Vec<(usize, f64)>)> {
            let mut routes = Vec::new();
            self.for_each_window(|yi, inside| {
                let route = match self.mode {
                    PoolMode::Max => {
                        let first_max = inside.iter().copied().reduce(|best, i| if x[i] > x[best] { i } else { best });
                        first_max.map(|i| vec![(i, 1.0)]).unwrap_or_default()
                    }
                    PoolMode::Avg => inside.iter().map(|&i| (i, 1.0 / inside.len() as f64)).collect(),
                };
                routes.push((yi, route));
            });
            routes
        }

        fn naive_forward(&self, x: &[f64]) -> Vec<f64> {
            let mut y = vec![0.0; self.y_shape().iter().product()];
            for (yi, route) in self.naive_routes(x) {
                y[yi] = route.iter().map(|&(i, weight)| x[i] * weight).sum();
            }
            y
        }

        fn naive_backward(&self, x: &[f64], dy: &[f64]) -> Vec<f64> {
            let mut dx = vec![0.0; x.len()];
            for (yi, route) in self.naive_routes(x) {
                route.iter().for_each(|&(i, weight)| dx[i] += dy[yi] * weight);
            }
            dx
        }

        fn forward(&self, x: &[f64], dtype: DType) -> Vec<f64> {
            let (xs, mut ys) = (storage(x, dtype), garbage(self.y_shape().iter().product(), dtype));
            let (x_shape, y_shape) = (self.x_shape(), self.y_shape());
            pool(Tensor { data: &xs, shape: &x_shape }, TensorMut { data: &mut ys, shape: &y_shape }, &self.params())
                .unwrap();
            values(&ys)
        }

        fn backward(&self, x: &[f64], dy: &[f64], dtype: DType) -> Vec<f64> {
            let (xs, dys, mut dxs) = (storage(x, dtype), storage(dy, dtype), garbage(x.len(), dtype));
            let (x_shape, y_shape) = (self.x_shape(), self.y_shape());
            pool_backward(
                Tensor { data: &xs, shape: &x_shape },
                Tensor { data: &dys, shape: &y_shape },
                TensorMut { data: &mut dxs, shape: &x_shape },
                &self.params(),
            )
            .unwrap();
            values(&dxs)
        }
    }

    fn storage(v: &[f64], dtype: DType) -> CpuStorage {
        match dtype {
            DType::F32 => CpuStorage::F32(v.iter().map(|&v| v as f32).collect()),
            _ => CpuStorage::F64(v.to_vec()),
        }
    }

    /// A NaN-filled output, so that any element a kernel forgets to write shows.
    fn garbage(len: usize, dtype: DType) -> CpuStorage {
        storage(&vec![f64::NAN; len], dtype)
    }

    fn assert_close(what: &str, got: &[f64], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= 1e-6 * (1.0 + w.abs()), "{what}: element {i} is {g}, expected {w}");
        }
    }

    fn cases() -> Vec<Case> {
        use Layout::{ChannelsFirst as CF, ChannelsLast as CL};
        let mut cases = Vec::new();
        for mode in [PoolMode::Max, PoolMode::Avg] {
            cases.extend([
                Case::new(mode, CF, &[9], &[2]),
                Case::new(mode, CL, &[9], &[3]).strides(&[2]).pad(&[1], &[1]),
                Case::new(mode, CF, &[6, 7], &[3, 3]).strides(&[1, 2]).pad(&[1, 1], &[1, 1]),
                // SAME with an even window: TensorFlow pads after only.
                Case::new(mode, CL, &[5, 5], &[2, 2]).pad(&[0, 0], &[1, 1]),
                Case::new(mode, CL, &[7, 6], &[3, 2]).strides(&[2, 1]),
                Case::new(mode, CF, &[4, 5, 3], &[2, 3, 2]).strides(&[1, 2, 1]).pad(&[0, 1, 1], &[1, 1, 0]),
                Case::new(mode, CL, &[4, 4, 4], &[2, 2, 2]).pad(&[1, 0, 1], &[1, 1, 0]),
                // windows that only partly see the input, and one that sees nothing of it
                Case::new(mode, CF, &[2], &[4]).strides(&[1]).pad(&[3], &[3]),
                Case::new(mode, CL, &[3, 2], &[2, 2]).strides(&[3, 1]).pad(&[2, 0], &[2, 0]),
                // more output positions (2·25·30) than one ChannelsLast task takes (4096 / 3
                // channels): several tasks, the last one partial
                Case::new(mode, CL, &[50, 60], &[2, 2]),
                // ChannelsLast runs channels in chunks of 64, then (backward) 32, then 16, then
                // one by one: 83 takes 64, 16 and 1, 32 one chunk of 32 backward and two of 16
                // forward; with overlapping windows and padding.
                Case::new(mode, CL, &[5, 6], &[2, 2]).channels(83),
                Case::new(mode, CL, &[6, 5], &[3, 3]).strides(&[2, 1]).pad(&[1, 1], &[1, 1]).channels(32),
                // windows that tile the input: `dx` is written once, not zeroed and added to;
                // 115 channels take every chunk size (64, 32 in the backward pass, 16, 1)
                Case::new(mode, CL, &[4, 6], &[2, 3]).channels(115),
            ]);
        }
        cases
    }

    #[test]
    fn forward_and_backward_match_naive_reference() {
        for (n, case) in cases().iter().enumerate() {
            let x = noise(case.x_shape().iter().product(), n as u64);
            let dy = noise(case.y_shape().iter().product(), n as u64 + 100);
            for dtype in [DType::F32, DType::F64] {
                assert_close(&format!("{case:?} {dtype}"), &case.forward(&x, dtype), &case.naive_forward(&x));
                let dx = case.backward(&x, &dy, dtype);
                assert_close(&format!("backward {case:?} {dtype}"), &dx, &case.naive_backward(&x, &dy));
            }
        }
    }

    #[test]
    fn backward_is_the_adjoint_of_the_selection() {
        // Avg pooling is linear and max pooling is linear in x once each window's maximum is
        // chosen, so <pool(x), dy> = <x, pool_backward(x, dy)> for both.
        for (n, case) in cases().iter().enumerate() {
            let x: Vec<f64> = (0..case.x_shape().iter().product()).map(|i| (i as f64 * 0.7 + n as f64).sin()).collect();
            let dy: Vec<f64> = (0..case.y_shape().iter().product()).map(|i| (i as f64 * 1.3).cos()).collect();
            let y = case.forward(&x, DType::F64);
            let dx = case.backward(&x, &dy, DType::F64);
            let (a, b) = (dot(&y, &dy), dot(&x, &dx));
            assert!((a - b).abs() < 1e-12 * (1.0 + a.abs()), "{case:?}: {a} vs {b}");
        }
    }

    /// A window whose extents multiply past `usize` over a one-pixel input (the padding
    /// makes room for it): one in-bounds position, so both passes just copy it.
    #[test]
    fn window_larger_than_usize_positions_over_one_pixel() {
        let huge = 1usize << 33;
        for layout in [Layout::ChannelsFirst, Layout::ChannelsLast] {
            let case = Case::new(PoolMode::Max, layout, &[1, 1], &[huge, huge])
                .pad(&[huge / 2, huge / 2], &[huge / 2 - 1, huge / 2 - 1])
                .single();
            assert_eq!(case.y_shape(), vec![1, 1, 1, 1]);
            assert_eq!(case.forward(&[2.5], DType::F32), vec![2.5]);
            assert_eq!(case.backward(&[2.5], &[4.0], DType::F32), vec![4.0]);
        }
    }

    #[test]
    fn hand_computed_4x4() {
        let x: Vec<f64> = (0..16).map(f64::from).collect();
        for layout in [Layout::ChannelsFirst, Layout::ChannelsLast] {
            let max = Case::new(PoolMode::Max, layout, &[4, 4], &[2, 2]).single();
            assert_eq!(max.forward(&x, DType::F32), vec![5.0, 7.0, 13.0, 15.0]);
            let dx = max.backward(&x, &[1.0, 2.0, 3.0, 4.0], DType::F64);
            let mut want = vec![0.0; 16];
            (want[5], want[7], want[13], want[15]) = (1.0, 2.0, 3.0, 4.0);
            assert_eq!(dx, want);
            let avg = Case { mode: PoolMode::Avg, ..max };
            assert_eq!(avg.forward(&x, DType::F64), vec![2.5, 4.5, 10.5, 12.5]);
            let dx = avg.backward(&x, &[4.0, 8.0, 12.0, 16.0], DType::F32);
            assert_eq!(&dx[..4], &[1.0, 1.0, 2.0, 2.0]);
            assert_eq!(&dx[12..], &[3.0, 3.0, 4.0, 4.0]);
        }
    }

    #[test]
    fn same_padding_average_excludes_padding() {
        // A 3×3 window with pad 1 on a 3×3 input: the corner averages 4 elements, the edge 6,
        // the centre 9.
        let x: Vec<f64> = (1..=9).map(f64::from).collect();
        for layout in [Layout::ChannelsFirst, Layout::ChannelsLast] {
            let case =
                Case::new(PoolMode::Avg, layout, &[3, 3], &[3, 3]).single().strides(&[1, 1]).pad(&[1, 1], &[1, 1]);
            let y = case.forward(&x, DType::F64);
            assert_eq!(y[0], (1.0 + 2.0 + 4.0 + 5.0) / 4.0);
            assert_eq!(y[1], (1.0 + 2.0 + 3.0 + 4.0 + 5.0 + 6.0) / 6.0);
            assert_eq!(y[4], 5.0);
            // Backward: the corner's gradient is shared by its 4 elements only.
            let mut dy = vec![0.0; 9];
            dy[0] = 1.0;
            let dx = case.backward(&x, &dy, DType::F64);
            assert_eq!(dx, vec![0.25, 0.25, 0.0, 0.25, 0.25, 0.0, 0.0, 0.0, 0.0]);
            // Max with padding: padding never wins, even over negative values.
            let max = Case { mode: PoolMode::Max, ..case };
            let neg: Vec<f64> = x.iter().map(|v| -v).collect();
            assert_eq!(max.forward(&neg, DType::F32)[0], -1.0);
        }
    }

    #[test]
    fn max_ties_go_to_the_first_element() {
        for layout in [Layout::ChannelsFirst, Layout::ChannelsLast] {
            // Overlapping 2×2 windows, stride 1, over a constant 3×3 input: each window sends
            // its gradient to its top-left element.
            let case = Case::new(PoolMode::Max, layout, &[3, 3], &[2, 2]).single().strides(&[1, 1]);
            let dx = case.backward(&[1.0; 9], &[1.0, 2.0, 3.0, 4.0], DType::F64);
            assert_eq!(dx, vec![1.0, 2.0, 0.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0]);
            // 1-d: window [5, 5, 3]: the first 5 wins.
            let case = Case::new(PoolMode::Max, layout, &[3], &[3]).single();
            assert_eq!(case.backward(&[5.0, 5.0, 3.0], &[1.0], DType::F32), vec![1.0, 0.0, 0.0]);
        }
    }

    #[test]
    fn three_d_by_hand() {
        // A 2×2×2 cube pooled whole: max 7, mean 3.5; channels-last with 2 channels.
        let x: Vec<f64> = (0..8).flat_map(|i| [f64::from(i), -f64::from(i)]).collect();
        let case =
            Case { channels: 2, ..Case::new(PoolMode::Max, Layout::ChannelsLast, &[2, 2, 2], &[2, 2, 2]) }.single();
        let case = Case { channels: 2, ..case };
        assert_eq!(case.forward(&x, DType::F64), vec![7.0, 0.0]);
        let dx = case.backward(&x, &[1.0, 2.0], DType::F64);
        assert_eq!((dx[14], dx[1]), (1.0, 2.0));
        assert_eq!(dx.iter().sum::<f64>(), 3.0);
        let avg = Case { mode: PoolMode::Avg, ..case };
        assert_eq!(avg.forward(&x, DType::F32), vec![3.5, -3.5]);
    }

    #[test]
    fn rejects_bad_arguments() {
        let case = Case::new(PoolMode::Max, Layout::ChannelsFirst, &[4, 4], &[2, 2]);
        let run = |case: &Case, x_shape: &[usize], y_shape: &[usize]| {
            let xs = CpuStorage::zeros(DType::F32, x_shape.iter().product());
            let mut ys = CpuStorage::zeros(DType::F32, y_shape.iter().product());
            pool(Tensor { data: &xs, shape: x_shape }, TensorMut { data: &mut ys, shape: y_shape }, &case.params())
                .unwrap_err()
        };
        let e = run(&case, &[2, 3, 4, 4], &[2, 3, 3, 2]);
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert!(e.message.contains("`out` has shape (2, 3, 3, 2)") && e.message.contains("gives (2, 3, 2, 2)"), "{e}");
        let e = run(&case, &[2, 3, 4], &[2, 3, 2]);
        assert!(e.message.contains("window [2, 2] has 2 entries for 1 spatial dims"), "{e}");
        let e = run(&case, &[2, 3], &[2, 3]);
        assert!(e.message.contains("rank 3, 4 or 5"), "{e}");
        let e = run(&case.clone().strides(&[0, 2]), &[2, 3, 4, 4], &[2, 3, 2, 2]);
        assert!(e.message.contains("must be >= 1"), "{e}");

        let xs = CpuStorage::zeros(DType::F32, 96);
        let dys = CpuStorage::zeros(DType::F64, 24);
        let mut dxs = CpuStorage::zeros(DType::F32, 96);
        let (x_shape, y_shape) = (case.x_shape(), case.y_shape());
        let e = pool_backward(
            Tensor { data: &xs, shape: &x_shape },
            Tensor { data: &dys, shape: &y_shape },
            TensorMut { data: &mut dxs, shape: &[2, 3, 16] },
            &case.params(),
        )
        .unwrap_err();
        assert!(e.message.contains("`dx` has shape (2, 3, 16) but `x` has (2, 3, 4, 4)"), "{e}");
        let e = pool_backward(
            Tensor { data: &xs, shape: &x_shape },
            Tensor { data: &dys, shape: &y_shape },
            TensorMut { data: &mut dxs, shape: &x_shape },
            &case.params(),
        )
        .unwrap_err();
        assert!(e.message.contains("`dy` float64"), "{e}");
        let ints = CpuStorage::zeros(DType::I32, 96);
        let mut out = CpuStorage::zeros(DType::I32, 24);
        let e = pool(
            Tensor { data: &ints, shape: &x_shape },
            TensorMut { data: &mut out, shape: &y_shape },
            &case.params(),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unsupported);

        // A window of more positions than a u32 counts is refused before any data is read
        // (the one-element buffers stand in for the 4.9e9 elements the shape describes).
        let huge = Case::new(PoolMode::Max, Layout::ChannelsLast, &[70_000, 70_000], &[70_000, 70_000]).single();
        let one = CpuStorage::zeros(DType::F32, 1);
        let mut dx_one = CpuStorage::zeros(DType::F32, 1);
        let e = pool_backward(
            Tensor { data: &one, shape: &huge.x_shape() },
            Tensor { data: &one, shape: &huge.y_shape() },
            TensorMut { data: &mut dx_one, shape: &huge.x_shape() },
            &huge.params(),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert!(e.message.contains("covers 4900000000 positions"), "{e}");
    }

    #[test]
    fn empty_input_with_padding_gives_zeros() {
        let case = Case::new(PoolMode::Max, Layout::ChannelsLast, &[0], &[1]).pad(&[1], &[1]);
        assert_eq!(case.forward(&[], DType::F64), vec![0.0; 12]);
        assert!(case.backward(&[], &[1.0; 12], DType::F64).is_empty());
    }
}
