//! Window geometry shared by convolution and pooling: which input position each output
//! position reads through each tap of a strided, dilated, padded window.
//!
//! Every sweep is normalised to three spatial dims by prepending unit dims (input 1, window 1,
//! stride 1, dilation 1, no padding, output 1), so the kernels have one fixed loop nest for
//! 1-d, 2-d and 3-d instead of three.

use std::ops::{Deref, Range};

pub use keras_backend_api::shape::fmt_shape;
use keras_backend_api::{BackendError, DType, window::WindowGeometry};

use super::element::Float;
use crate::storage::unsupported_dtype;

/// `true` when `v` should replace `best` as a window maximum: strictly greater, or the first
/// NaN (NaN propagates like TensorFlow's max pooling). Forward and backward pooling both use
/// it, so the backward pass picks exactly the element the forward pass returned.
#[inline]
pub fn beats<T: Float>(v: T, best: T) -> bool {
    // `|` and `&`, not `||` and `&&`: no branch, so that loops over channels vectorise.
    (v > best) | (v.is_nan() & !best.is_nan())
}

/// The error for a float kernel whose tensors (named by `names`) have `dtypes`:
/// `Unsupported` when they agree on a non-float dtype, `InvalidArgument` when they differ.
#[cold]
pub fn float_dtype_error(kernel: &str, names: &[&str], dtypes: &[DType]) -> BackendError {
    if dtypes.windows(2).all(|w| w[0] == w[1]) {
        return unsupported_dtype(kernel, dtypes[0]);
    }
    let listed: Vec<String> = names.iter().zip(dtypes).map(|(n, d)| format!("`{n}` {d}")).collect();
    BackendError::invalid(format!("{kernel}: dtypes differ ({}); this kernel needs them equal", listed.join(", ")))
}

/// Runs `$body` with three storages bound to their `F32` or `F64` vectors, or evaluates to the
/// [`float_dtype_error`] naming `$names`.
macro_rules! with_float_triple {
    ($kernel:expr, $names:expr, ($a:expr, $b:expr, $c:expr), ($x:ident, $y:ident, $z:ident) => $body:expr) => {
        match ($a, $b, $c) {
            ($crate::CpuStorage::F32($x), $crate::CpuStorage::F32($y), $crate::CpuStorage::F32($z)) => $body,
            ($crate::CpuStorage::F64($x), $crate::CpuStorage::F64($y), $crate::CpuStorage::F64($z)) => $body,
            (a, b, c) => {
                Err($crate::ops::window::float_dtype_error($kernel, &$names, &[a.dtype(), b.dtype(), c.dtype()]))
            }
        }
    };
}
pub(crate) use with_float_triple;

/// The geometry of one window sweep, normalised to three spatial dims (see the module docs):
/// the contract's [`WindowGeometry`] (checked by [`WindowGeometry::new`]; its fields and
/// lengths read through `Deref`) plus the index arithmetic of this backend's kernels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window(WindowGeometry);

impl Deref for Window {
    type Target = WindowGeometry;

    #[inline(always)]
    fn deref(&self) -> &WindowGeometry {
        &self.0
    }
}

impl From<WindowGeometry> for Window {
    fn from(geometry: WindowGeometry) -> Window {
        Window(geometry)
    }
}

impl Window {
    /// Flat row-major output position → per-dim output index.
    #[inline]
    pub fn output_index(&self, p: usize) -> [usize; 3] {
        let o2 = p % self.output[2];
        let line = p / self.output[2];
        [line / self.output[1], line % self.output[1], o2]
    }

    /// The input index read along dim `d` by output `o` through tap `k`, or `None` when it
    /// falls in the padding.
    #[inline]
    pub fn source(&self, d: usize, o: usize, k: usize) -> Option<usize> {
        // Both terms are bounded by the padded length (checked in `WindowGeometry::new`) for
        // valid o and k.
        let padded = o * self.stride[d] + k * self.dilation[d];
        padded.checked_sub(self.pad_before[d]).filter(|&i| i < self.input[d])
    }

    /// The flat input position read by output `o` through tap `k`, or `None` in padding.
    #[inline]
    pub fn source_flat(&self, o: [usize; 3], k: [usize; 3]) -> Option<usize> {
        let i0 = self.source(0, o[0], k[0])?;
        let i1 = self.source(1, o[1], k[1])?;
        let i2 = self.source(2, o[2], k[2])?;
        Some((i0 * self.input[1] + i1) * self.input[2] + i2)
    }

    /// The outputs along dim `d` whose tap `k` lands inside the input: those `o` with
    /// `pad_before ≤ o·stride + k·dilation < pad_before + input`. Always a range.
    pub fn valid_outputs(&self, d: usize, k: usize) -> Range<usize> {
        let (stride, offset, pad) = (self.stride[d], k * self.dilation[d], self.pad_before[d]);
        let end = pad + self.input[d];
        let lo = pad.saturating_sub(offset).div_ceil(stride);
        let hi = end.saturating_sub(offset).div_ceil(stride).min(self.output[d]);
        lo.min(hi)..hi
    }

    /// The input range covered by the (undilated) window of output `o` along dim `d`, clipped
    /// to the input: pooling's in-bounds positions. Empty when the window lies in padding.
    pub fn clipped_window(&self, d: usize, o: usize) -> Range<usize> {
        let start = o * self.stride[d];
        let lo = start.saturating_sub(self.pad_before[d]).min(self.input[d]);
        let hi = start.saturating_add(self.window[d]).saturating_sub(self.pad_before[d]).min(self.input[d]);
        lo..hi.max(lo)
    }

    /// [`clipped_window`](Self::clipped_window) of every output, per dim.
    pub fn clipped_windows(&self) -> [Vec<Range<usize>>; 3] {
        std::array::from_fn(|d| (0..self.output[d]).map(|o| self.clipped_window(d, o)).collect())
    }

    /// Calls `f` with the flat input position of every point of the box `ranges`, in row-major
    /// order (the order that decides which of equal maxima is "first").
    #[inline(always)]
    pub fn for_each_in_box(&self, ranges: [&Range<usize>; 3], mut f: impl FnMut(usize)) {
        for i0 in ranges[0].clone() {
            for i1 in ranges[1].clone() {
                let line = (i0 * self.input[1] + i1) * self.input[2];
                for i2 in ranges[2].clone() {
                    f(line + i2);
                }
            }
        }
    }

    /// Splits the flat output positions `positions` into runs along the last dim and calls
    /// `f(o0, o1, o2_run, offset)` for each, where `offset` is the run's distance from
    /// `positions.start`.
    pub fn for_each_run(&self, positions: Range<usize>, mut f: impl FnMut(usize, usize, Range<usize>, usize)) {
        let mut p = positions.start;
        while p < positions.end {
            let [o0, o1, o2] = self.output_index(p);
            let run_end = positions.end.min(p - o2 + self.output[2]);
            f(o0, o1, o2..o2 + (run_end - p), p - positions.start);
            p = run_end;
        }
    }

    /// Walks the flat output `positions` for tap `k` in stretches along the last dim, calling
    /// `f(offset, len, source)`: the `len` positions starting `offset` after `positions.start`
    /// read the flat input elements `source, source + stride[2], ...` when `source` is `Some`,
    /// and padding when it is `None`. This is the inner loop of im2col and col2im: one range
    /// test per stretch instead of one per element, and a plain copy when the stride is 1.
    pub fn for_each_stretch(
        &self,
        k: [usize; 3],
        positions: Range<usize>,
        mut f: impl FnMut(usize, usize, Option<usize>),
    ) {
        let valid = self.valid_outputs(2, k[2]);
        self.for_each_run(positions, |o0, o1, run, offset| {
            let line = match (self.source(0, o0, k[0]), self.source(1, o1, k[1])) {
                (Some(i0), Some(i1)) => (i0 * self.input[1] + i1) * self.input[2],
                _ => return f(offset, run.len(), None),
            };
            let lo = valid.start.max(run.start).min(run.end);
            let hi = valid.end.min(run.end).max(lo);
            if lo > run.start {
                f(offset, lo - run.start, None);
            }
            if hi > lo {
                f(offset + lo - run.start, hi - lo, self.source(2, lo, k[2]).map(|i2| line + i2));
            }
            if run.end > hi {
                f(offset + hi - run.start, run.end - hi, None);
            }
        });
    }

    /// Every tap of the window in row-major order (the kernel tensor's order).
    pub fn taps(&self) -> Vec<[usize; 3]> {
        let w = self.window;
        let mut taps = Vec::with_capacity(w.iter().product());
        for k0 in 0..w[0] {
            for k1 in 0..w[1] {
                for k2 in 0..w[2] {
                    taps.push([k0, k1, k2]);
                }
            }
        }
        taps
    }
}

/// Reference-model helpers of the convolution and pooling tests.
#[cfg(test)]
pub(crate) mod test_support {
    use crate::CpuStorage;

    /// Every multi-index of `shape`, row-major.
    pub fn indices(shape: &[usize]) -> Vec<Vec<usize>> {
        let mut all = vec![vec![]];
        for &d in shape {
            all = all.into_iter().flat_map(|prefix| (0..d).map(move |i| [prefix.clone(), vec![i]].concat())).collect();
        }
        all
    }

    /// The row-major flat position of `index` in `shape`.
    pub fn flat(shape: &[usize], index: &[usize]) -> usize {
        shape.iter().zip(index).fold(0, |acc, (&d, &i)| acc * d + i)
    }

    /// The elements of an `F32` or `F64` storage as `f64`.
    pub fn values(s: &CpuStorage) -> Vec<f64> {
        match s {
            CpuStorage::F32(v) => v.iter().map(|&v| v as f64).collect(),
            CpuStorage::F64(v) => v.clone(),
            _ => unreachable!(),
        }
    }

    /// The dot product of `a` and `b`.
    pub fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(a, b)| a * b).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_outputs_match_source() {
        for (input, k, s, d, pb, pa) in [(7, 3, 2, 1, 1, 1), (5, 2, 3, 2, 0, 4), (1, 4, 1, 1, 3, 3), (0, 1, 1, 1, 2, 1)]
        {
            let w = Window::from(WindowGeometry::new(&[input], &[k], &[s], &[d], &[pb], &[pa]).unwrap());
            for tap in 0..k {
                let range = w.valid_outputs(2, tap);
                for o in 0..w.output[2] {
                    assert_eq!(range.contains(&o), w.source(2, o, tap).is_some(), "{input} {k} {s} {d} {pb} o={o}");
                }
            }
        }
    }

    #[test]
    fn runs_cover_positions() {
        let w = Window::from(WindowGeometry::new(&[3, 4], &[1, 1], &[1, 1], &[1, 1], &[0, 0], &[0, 0]).unwrap());
        let mut seen = Vec::new();
        w.for_each_run(2..9, |o0, o1, run, off| seen.push((o0, o1, run, off)));
        assert_eq!(seen, vec![(0, 0, 2..4, 0), (0, 1, 0..4, 2), (0, 2, 0..1, 6)]);
        assert_eq!(fmt_shape(&[2, 3]), "(2, 3)");
    }
}
