//! The element traits the generic kernels are written against, and the shared helpers of the
//! element-wise and reduction kernels (parallel maps and the broadcasting row walker).
//!
//! * [`Element`]: every dtype of a buffer; conversions, and typed access to a [`CpuStorage`].
//! * [`Number`]: the numeric dtypes that do arithmetic natively (`f32`, `f64`, `i32`, `i64`,
//!   `u8`); `f16` computes through `f32` in the kernels instead.
//! * [`Float`]: `f32` and `f64`, with the transcendental functions.

use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub};

use half::f16;
use keras_backend_api::{BackendError, DType, shape::coalesce};
use rayon::prelude::*;

use crate::{CpuStorage, Result, layout::StridedIndex};

/// Element count above which element-wise and reduction kernels use rayon's pool.
pub const PAR_THRESHOLD: usize = 1 << 15;

/// `true` when rayon's pool has more than one thread. With a single thread, a parallel
/// iterator started outside the pool still hands its first split to the one worker and sleeps
/// until that finishes: a cross-thread wake-up per kernel call, with nothing gained. The
/// kernels ask this before splitting, so that on one thread everything runs on the caller.
pub fn several_threads() -> bool {
    rayon::current_num_threads() > 1
}

/// Items per rayon task, for `with_min_len`: `per_task` on a pool of [`several_threads`],
/// else all of them in one task, which rayon then runs on the calling thread.
pub fn min_per_task(per_task: usize) -> usize {
    if several_threads() { per_task } else { usize::MAX }
}

/// `true` when `len` elements are worth spreading over rayon's pool: more than
/// [`PAR_THRESHOLD`], and a pool of [`several_threads`].
pub fn worth_splitting(len: usize) -> bool {
    len > PAR_THRESHOLD && several_threads()
}

/// Elements per rayon task in the contiguous element-wise loops.
pub const CHUNK: usize = 1 << 14;

/// A dtype a buffer can hold.
pub trait Element: Copy + Send + Sync + PartialOrd + Debug + 'static {
    /// The dtype tag.
    const DTYPE: DType;
    /// `v` converted with Rust's `as` rules (saturating for integers, NaN gives 0); `v != 0`
    /// for `bool`.
    fn from_f64(v: f64) -> Self;
    /// `v` converted with Rust's `as` rules (wrapping for narrower integers); `v != 0` for
    /// `bool`.
    fn from_i64(v: i64) -> Self;
    /// 0 or 1.
    fn from_bool(v: bool) -> Self;
    /// The value as `f64` (exact except for 64-bit integers beyond 2⁵³).
    fn to_f64(self) -> f64;
    /// `self != 0` (NaN is non-zero).
    fn is_nonzero(self) -> bool;
    /// `true` only for a float NaN.
    fn is_nan(self) -> bool;
    /// Converts to another dtype following the `cast` kernel's rules.
    fn cast<U: Element>(self) -> U;
    /// The typed elements of `s`, when it holds this dtype.
    fn view(s: &CpuStorage) -> Option<&[Self]>;
    /// The typed elements of `s`, mutably, when it holds this dtype.
    fn view_mut(s: &mut CpuStorage) -> Option<&mut [Self]>;
}

macro_rules! storage_access {
    ($variant:ident) => {
        fn view(s: &CpuStorage) -> Option<&[Self]> {
            match s {
                CpuStorage::$variant(v) => Some(v),
                _ => None,
            }
        }
        fn view_mut(s: &mut CpuStorage) -> Option<&mut [Self]> {
            match s {
                CpuStorage::$variant(v) => Some(v),
                _ => None,
            }
        }
    };
}

macro_rules! impl_element_float {
    ($t:ty, $variant:ident) => {
        impl Element for $t {
            const DTYPE: DType = DType::$variant;
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn from_i64(v: i64) -> Self {
                v as $t
            }
            fn from_bool(v: bool) -> Self {
                if v { 1.0 } else { 0.0 }
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn is_nonzero(self) -> bool {
                self != 0.0
            }
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            fn cast<U: Element>(self) -> U {
                // f32 -> f64 is exact, so going through f64 rounds only once.
                U::from_f64(self as f64)
            }
            storage_access!($variant);
        }
    };
}
impl_element_float!(f32, F32);
impl_element_float!(f64, F64);

macro_rules! impl_element_int {
    ($t:ty, $variant:ident) => {
        impl Element for $t {
            const DTYPE: DType = DType::$variant;
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn from_i64(v: i64) -> Self {
                v as $t
            }
            fn from_bool(v: bool) -> Self {
                <$t>::from(v)
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn is_nonzero(self) -> bool {
                self != 0
            }
            fn is_nan(self) -> bool {
                false
            }
            fn cast<U: Element>(self) -> U {
                // Through i64 rather than f64, so that large 64-bit values stay exact.
                U::from_i64(self as i64)
            }
            storage_access!($variant);
        }
    };
}
impl_element_int!(i32, I32);
impl_element_int!(i64, I64);
impl_element_int!(u8, U8);

impl Element for f16 {
    const DTYPE: DType = DType::F16;
    fn from_f64(v: f64) -> Self {
        f16::from_f64(v)
    }
    fn from_i64(v: i64) -> Self {
        f16::from_f64(v as f64)
    }
    fn from_bool(v: bool) -> Self {
        if v { f16::ONE } else { f16::ZERO }
    }
    fn to_f64(self) -> f64 {
        f16::to_f64(self)
    }
    fn is_nonzero(self) -> bool {
        self != f16::ZERO
    }
    fn is_nan(self) -> bool {
        f16::is_nan(self)
    }
    fn cast<U: Element>(self) -> U {
        U::from_f64(f16::to_f64(self))
    }
    storage_access!(F16);
}

impl Element for bool {
    const DTYPE: DType = DType::Bool;
    fn from_f64(v: f64) -> Self {
        v != 0.0
    }
    fn from_i64(v: i64) -> Self {
        v != 0
    }
    fn from_bool(v: bool) -> Self {
        v
    }
    fn to_f64(self) -> f64 {
        f64::from(u8::from(self))
    }
    fn is_nonzero(self) -> bool {
        self
    }
    fn is_nan(self) -> bool {
        false
    }
    fn cast<U: Element>(self) -> U {
        U::from_bool(self)
    }
    storage_access!(Bool);
}

/// Numeric dtypes with native arithmetic. Integer arithmetic wraps; the kernels reject zero
/// divisors and negative integer exponents before calling [`div`](Number::div),
/// [`rem_floor`](Number::rem_floor) or [`pow`](Number::pow).
pub trait Number: Element {
    /// The accumulator of sums and products: `f64` for floats (accuracy), `i64` for integers
    /// (wrapping in i64 then narrowing equals wrapping in the narrow type).
    type Acc: Number;
    /// `true` for `f32` and `f64`.
    const IS_FLOAT: bool;
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// -∞ for floats, the minimum for integers (identity of `max`).
    const LOWEST: Self;
    /// +∞ for floats, the maximum for integers (identity of `min`).
    const HIGHEST: Self;
    /// Widens to the accumulator.
    fn to_acc(self) -> Self::Acc;
    /// Narrows from the accumulator (`as` rules).
    fn from_acc(acc: Self::Acc) -> Self;
    /// Sum (wrapping for integers).
    fn add(self, o: Self) -> Self;
    /// Difference (wrapping for integers).
    fn sub(self, o: Self) -> Self;
    /// Product (wrapping for integers).
    fn mul(self, o: Self) -> Self;
    /// Quotient; integers truncate toward zero (`o != 0`).
    fn div(self, o: Self) -> Self;
    /// Floored remainder: the sign of the divisor (`o != 0` for integers).
    fn rem_floor(self, o: Self) -> Self;
    /// `selfᵒ` (`o >= 0` for integers).
    fn pow(self, o: Self) -> Self;
    /// Larger value; NaN if either is NaN.
    fn maximum(self, o: Self) -> Self;
    /// Smaller value; NaN if either is NaN.
    fn minimum(self, o: Self) -> Self;
    /// Negation (wrapping for integers).
    fn neg(self) -> Self;
    /// Absolute value (wrapping for integers).
    fn abs(self) -> Self;
    /// -1, 0 or 1; NaN stays NaN.
    fn sign(self) -> Self;
    /// `true` when below zero.
    fn is_negative(self) -> bool;
    /// The mean of `n` values whose sum is `sum`: NaN for floats and 0 for integers when
    /// `n == 0`; integers truncate toward zero.
    fn mean(sum: Self::Acc, n: usize) -> Self;
}

macro_rules! impl_number_float {
    ($t:ty) => {
        impl Number for $t {
            type Acc = f64;
            const IS_FLOAT: bool = true;
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const LOWEST: Self = <$t>::NEG_INFINITY;
            const HIGHEST: Self = <$t>::INFINITY;
            fn to_acc(self) -> f64 {
                self as f64
            }
            fn from_acc(acc: f64) -> Self {
                acc as $t
            }
            fn add(self, o: Self) -> Self {
                self + o
            }
            fn sub(self, o: Self) -> Self {
                self - o
            }
            fn mul(self, o: Self) -> Self {
                self * o
            }
            fn div(self, o: Self) -> Self {
                self / o
            }
            fn rem_floor(self, o: Self) -> Self {
                let r = self % o;
                if r != 0.0 && (r < 0.0) != (o < 0.0) { r + o } else { r }
            }
            fn pow(self, o: Self) -> Self {
                self.powf(o)
            }
            fn maximum(self, o: Self) -> Self {
                if self.is_nan() || o.is_nan() { <$t>::NAN } else { self.max(o) }
            }
            fn minimum(self, o: Self) -> Self {
                if self.is_nan() || o.is_nan() { <$t>::NAN } else { self.min(o) }
            }
            fn neg(self) -> Self {
                -self
            }
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            fn sign(self) -> Self {
                // `signum` maps ±0 to ±1; the contract wants 0 (and keeps NaN).
                if self > 0.0 {
                    1.0
                } else if self < 0.0 {
                    -1.0
                } else {
                    self
                }
            }
            fn is_negative(self) -> bool {
                self < 0.0
            }
            fn mean(sum: f64, n: usize) -> Self {
                (sum / n as f64) as $t
            }
        }
    };
}
impl_number_float!(f32);
impl_number_float!(f64);

macro_rules! impl_number_int {
    ($t:ty, $abs:path, $sign:path, $is_negative:path) => {
        impl Number for $t {
            type Acc = i64;
            const IS_FLOAT: bool = false;
            const ZERO: Self = 0;
            const ONE: Self = 1;
            const LOWEST: Self = <$t>::MIN;
            const HIGHEST: Self = <$t>::MAX;
            fn to_acc(self) -> i64 {
                self as i64
            }
            fn from_acc(acc: i64) -> Self {
                acc as $t
            }
            fn add(self, o: Self) -> Self {
                self.wrapping_add(o)
            }
            fn sub(self, o: Self) -> Self {
                self.wrapping_sub(o)
            }
            fn mul(self, o: Self) -> Self {
                self.wrapping_mul(o)
            }
            fn div(self, o: Self) -> Self {
                if o == 0 { 0 } else { self.wrapping_div(o) }
            }
            fn rem_floor(self, o: Self) -> Self {
                if o == 0 {
                    return 0;
                }
                let r = self.wrapping_rem(o);
                if r != 0 && ($is_negative(r) != $is_negative(o)) { r.wrapping_add(o) } else { r }
            }
            fn pow(self, o: Self) -> Self {
                // Square-and-multiply on a u64 exponent: `wrapping_pow` takes only u32.
                let mut exp = o as u64;
                let (mut base, mut acc): (Self, Self) = (self, 1);
                while exp > 0 {
                    if exp & 1 == 1 {
                        acc = acc.wrapping_mul(base);
                    }
                    base = base.wrapping_mul(base);
                    exp >>= 1;
                }
                acc
            }
            fn maximum(self, o: Self) -> Self {
                Ord::max(self, o)
            }
            fn minimum(self, o: Self) -> Self {
                Ord::min(self, o)
            }
            fn neg(self) -> Self {
                self.wrapping_neg()
            }
            fn abs(self) -> Self {
                $abs(self)
            }
            fn sign(self) -> Self {
                $sign(self)
            }
            fn is_negative(self) -> bool {
                $is_negative(self)
            }
            fn mean(sum: i64, n: usize) -> Self {
                if n == 0 { 0 } else { sum.wrapping_div(n as i64) as $t }
            }
        }
    };
}
impl_number_int!(i32, i32::wrapping_abs, i32::signum, i32::is_negative);
impl_number_int!(i64, i64::wrapping_abs, i64::signum, i64::is_negative);
impl_number_int!(u8, std::convert::identity, u8_sign, u8_is_negative);

fn u8_sign(x: u8) -> u8 {
    u8::from(x != 0)
}

fn u8_is_negative(_: u8) -> bool {
    false
}

/// `f32` and `f64`: the transcendental functions of the unary kernel, and the element type of
/// the float-only kernels (softmax, batch norm, convolution, pooling).
pub trait Float:
    Number
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
{
    /// Square root.
    fn sqrt(self) -> Self;
    /// `eˣ`.
    fn exp(self) -> Self;
    /// `eˣ - 1`.
    fn exp_m1(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// `ln(1 + x)`.
    fn ln_1p(self) -> Self;
    /// Sine.
    fn sin(self) -> Self;
    /// Cosine.
    fn cos(self) -> Self;
    /// Hyperbolic tangent.
    fn tanh(self) -> Self;
    /// Round half to even.
    fn round_even(self) -> Self;
    /// Floor.
    fn floor(self) -> Self;
    /// Ceiling.
    fn ceil(self) -> Self;

    /// `1 / (1 + e⁻ˣ)`; the exponent is never positive, so it cannot overflow.
    fn sigmoid(self) -> Self {
        if self >= Self::ZERO {
            Self::ONE / (Self::ONE + (-self).exp())
        } else {
            let e = self.exp();
            e / (Self::ONE + e)
        }
    }

    /// `ln(1 + eˣ)` as `max(x, 0) + ln(1 + e^-|x|)`, which cannot overflow.
    fn softplus(self) -> Self {
        if self > Self::ZERO { self + (-self).exp().ln_1p() } else { self.exp().ln_1p() }
    }
}

/// Implements [`Float`] for `$t`: each method `a => b` calls the inherent `<$t>::b`.
macro_rules! impl_float {
    ($t:ty) => {
        impl_float!(@delegate $t;
            sqrt => sqrt, exp => exp, exp_m1 => exp_m1, ln => ln, ln_1p => ln_1p, sin => sin, cos => cos,
            tanh => tanh, round_even => round_ties_even, floor => floor, ceil => ceil);
    };
    (@delegate $t:ty; $($method:ident => $inherent:ident),+) => {
        impl Float for $t {
            $(fn $method(self) -> Self {
                <$t>::$inherent(self)
            })+
        }
    };
}
impl_float!(f32);
impl_float!(f64);

/// Runs `$body` with the type alias `$T` set to the element type of `$dtype` (a [`DType`]).
macro_rules! for_dtype {
    ($dtype:expr, $T:ident => $body:expr) => {
        $crate::ops::element::for_dtype!(@arms $dtype, $T, $body;
            F16 => half::f16, F32 => f32, F64 => f64, I32 => i32, I64 => i64, U8 => u8, Bool => bool)
    };
    (@arms $dtype:expr, $T:ident, $body:expr; $($variant:ident => $t:ty),+) => {
        match $dtype {
            $(keras_backend_api::DType::$variant => {
                type $T = $t;
                $body
            })+
        }
    };
}
pub(crate) use for_dtype;

/// The elements of `s` as `T`, or an `InvalidArgument` error naming `kernel`, the argument
/// `name` and both dtypes.
pub fn view<'a, T: Element>(s: &'a CpuStorage, kernel: &str, name: &str) -> Result<&'a [T]> {
    let dtype = s.dtype();
    T::view(s).ok_or_else(|| wrong_dtype(kernel, name, dtype, T::DTYPE))
}

/// The elements of `s` as `T`, mutably, or an `InvalidArgument` error like [`view`]'s.
pub fn view_mut<'a, T: Element>(s: &'a mut CpuStorage, kernel: &str, name: &str) -> Result<&'a mut [T]> {
    let dtype = s.dtype();
    T::view_mut(s).ok_or_else(|| wrong_dtype(kernel, name, dtype, T::DTYPE))
}

#[cold]
fn wrong_dtype(kernel: &str, name: &str, got: DType, want: DType) -> BackendError {
    BackendError::invalid(format!("{kernel}: `{name}` is {got} but must be {want} here"))
}

/// `dst[i] = f(src[i])`, on rayon's pool when large.
pub fn map_into<T: Copy + Sync, U: Send>(src: &[T], dst: &mut [U], f: impl Fn(T) -> U + Sync) {
    map_slices_into(src, dst, |s, d| d.iter_mut().zip(s).for_each(|(d, &s)| *d = f(s)));
}

/// `f(src, dst)` on matching chunks of the two slices (of equal length), on rayon's pool when
/// large: for kernels that are vectorised over a whole slice.
pub fn map_slices_into<T: Sync, U: Send>(src: &[T], dst: &mut [U], f: impl Fn(&[T], &mut [U]) + Sync) {
    if worth_splitting(dst.len()) {
        dst.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(d, s)| f(s, d));
    } else {
        f(src, dst);
    }
}

/// `dst[i] = f(dst[i])`, on rayon's pool when large.
pub fn map_in_place<T: Copy + Send>(dst: &mut [T], f: impl Fn(T) -> T + Sync) {
    map_slices_in_place(dst, |d| d.iter_mut().for_each(|d| *d = f(*d)));
}

/// `f(chunk)` on chunks of `dst`, on rayon's pool when large.
pub fn map_slices_in_place<T: Send>(dst: &mut [T], f: impl Fn(&mut [T]) + Sync) {
    if worth_splitting(dst.len()) {
        dst.par_chunks_mut(CHUNK).for_each(&f);
    } else {
        f(dst);
    }
}

/// `f16` elements widened to `f32` (exact), for kernels that compute `f16` through `f32`.
pub fn widen_f16(v: &[f16]) -> Vec<f32> {
    v.iter().map(|x| x.to_f32()).collect()
}

/// Rounds `f32` results back into `f16` storage.
pub fn narrow_f16(src: &[f32], dst: &mut [f16]) {
    map_into(src, dst, f16::from_f32);
}

/// Offset of the row-major element `index` of `shape` in a view with `strides`.
fn unravel_offset(mut index: usize, shape: &[usize], strides: &[isize]) -> usize {
    let mut offset = 0isize;
    for (&d, &s) in shape.iter().zip(strides).rev() {
        offset += (index % d) as isize * s;
        index /= d;
    }
    offset as usize
}

/// Walks a dense `out` of `shape` row by row (a row is a run along the last axis after
/// [`coalesce`]), calling `row(out_row, offsets, steps)`: operand `k`'s element `j` of the row
/// is at `offsets[k] + j * steps[k]`. `strides` are the operands' non-negative broadcast
/// strides (from `layout::broadcast_strides`); `out.len()` is the product of `shape`. Rows of
/// large outputs run on rayon's pool.
pub fn for_each_row<U: Send, const N: usize>(
    shape: &[usize],
    strides: [Vec<isize>; N],
    out: &mut [U],
    row: impl Fn(&mut [U], [usize; N], [usize; N]) + Sync,
) {
    let total = out.len();
    if total == 0 {
        return;
    }
    let (shape, strides) = coalesce(shape, &strides);
    let rank = shape.len();
    let inner = shape[rank - 1];
    let steps: [usize; N] = std::array::from_fn(|k| strides[k][rank - 1] as usize);
    if rank == 1 {
        if worth_splitting(total) {
            out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, chunk)| {
                row(chunk, std::array::from_fn(|k| c * CHUNK * steps[k]), steps);
            });
        } else {
            row(out, [0; N], steps);
        }
        return;
    }
    // Split the outer axes at `split`: each of the `blocks` leading indices is an independent
    // task, walked inside with StridedIndex over the axes between `split` and the last.
    let split = if worth_splitting(total) {
        (1..rank).find(|&k| shape[..k].iter().product::<usize>() >= 64).unwrap_or(rank - 1)
    } else {
        0
    };
    let blocks: usize = shape[..split].iter().product();
    let block_len = total / blocks;
    let run_block = |b: usize, block: &mut [U]| {
        let mut walkers: [StridedIndex; N] = std::array::from_fn(|k| {
            let base = unravel_offset(b, &shape[..split], &strides[k][..split]);
            StridedIndex::new(&shape[split..rank - 1], &strides[k][split..rank - 1], base)
        });
        for out_row in block.chunks_mut(inner) {
            let offsets: [usize; N] = std::array::from_fn(|k| walkers[k].next().unwrap_or(0));
            if worth_splitting(inner) {
                // Few long rows (a [2, 1e6] output): split each row too.
                out_row.par_chunks_mut(CHUNK).enumerate().for_each(|(c, piece)| {
                    row(piece, std::array::from_fn(|k| offsets[k] + c * CHUNK * steps[k]), steps);
                });
            } else {
                row(out_row, offsets, steps);
            }
        }
    };
    if blocks > 1 {
        out.par_chunks_mut(block_len).enumerate().for_each(|(b, block)| run_block(b, block));
    } else {
        run_block(0, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::broadcast_strides;

    fn walk(shape: &[usize], a: &[usize], b: &[usize]) -> Vec<(usize, usize)> {
        let total: usize = shape.iter().product();
        let mut out = vec![(0, 0); total];
        for_each_row(shape, [broadcast_strides(a, shape), broadcast_strides(b, shape)], &mut out, |row, o, s| {
            for (j, r) in row.iter_mut().enumerate() {
                *r = (o[0] + j * s[0], o[1] + j * s[1]);
            }
        });
        out
    }

    fn naive(shape: &[usize], a: &[usize], b: &[usize]) -> Vec<(usize, usize)> {
        let ia = StridedIndex::new(shape, &broadcast_strides(a, shape), 0);
        let ib = StridedIndex::new(shape, &broadcast_strides(b, shape), 0);
        ia.zip(ib).collect()
    }

    #[test]
    fn row_walker_matches_strided_index() {
        let cases: &[(&[usize], &[usize], &[usize])] = &[
            (&[2, 4, 3], &[2, 1, 3], &[4, 1]),
            (&[3], &[], &[3]),
            (&[], &[], &[]),
            (&[5, 1, 7], &[5, 1, 7], &[1]),
            (&[300, 200], &[300, 1], &[200]),
            (&[2, 3, 40, 300], &[3, 1, 300], &[2, 1, 40, 1]),
            (&[70000], &[70000], &[1]),
            (&[2, 70000], &[70000], &[2, 1]),
        ];
        for &(shape, a, b) in cases {
            assert_eq!(walk(shape, a, b), naive(shape, a, b), "{shape:?} {a:?} {b:?}");
        }
    }

    #[test]
    fn casts_follow_as_rules() {
        assert_eq!(f64::NAN.cast::<i32>(), 0);
        assert_eq!(1e20f64.cast::<i32>(), i32::MAX);
        assert_eq!((-2.7f32).cast::<i64>(), -2);
        assert_eq!(300i32.cast::<u8>(), 44);
        assert!(f32::NAN.cast::<bool>());
        assert!(!(-0.0f64).cast::<bool>());
        assert_eq!(true.cast::<f16>(), f16::ONE);
        assert_eq!(i64::MAX.cast::<i64>(), i64::MAX);
    }

    #[test]
    fn integer_arithmetic_helpers() {
        assert_eq!((-7i32).rem_floor(3), 2);
        assert_eq!(7i32.rem_floor(-3), -2);
        assert_eq!((-7.5f64).rem_floor(2.0), 0.5);
        assert_eq!(Number::pow(3i64, 40), 3i64.wrapping_pow(40));
        assert_eq!(Number::pow(2u8, 9), 0);
        assert_eq!(Number::pow(-1i64, i64::MAX), -1);
        assert_eq!(i32::mean(-7, 2), -3);
        assert!(f32::mean(0.0, 0).is_nan());
        assert_eq!(0.0f32.sign(), 0.0);
        assert!(f64::NAN.sign().is_nan());
    }
}
