//! Vectorisable float32 math: `exp` as a branch-free polynomial that the compiler turns into
//! AVX-512 (or AVX2) code, chosen at run time, and for whole slices on AVX-512 the same steps
//! written with intrinsics, whose `2^n` is one `vscalefps`.
//!
//! libm's `expf` is called once per element and never vectorised; at 2^24 elements it is the
//! whole cost of `exp`, `softmax` and the sigmoid family. The function here is within 2 ulp of
//! the exact result over the whole float32 range (subnormal results included), gives `inf`
//! above `ln(f32::MAX)`, `0` below the smallest subnormal, and NaN for NaN, as TensorFlow's.

use crate::simd::vectorized;

const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// `ln 2` in two parts, the first with a short mantissa so that `n · LN2_HI` is exact.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Beyond these `e^x` is inf or 0 in float32; clamping keeps `n` in the range that `2^n` can
/// be built in (two normal halves, or `vscalefps`), and the final selects restore inf and NaN.
const MAX_INPUT: f32 = 88.722_84;
const MIN_INPUT: f32 = -103.972_08;
/// Rounding to the nearest integer by adding 1.5·2^23: the FPU rounds, and the integer is in
/// the low mantissa bits. Unlike `as i32` (saturating, which the compiler cannot vectorise)
/// this stays in vector registers; a NaN gives garbage bits here and is restored by the last
/// select.
const ROUNDER: f32 = 12_582_912.0;
/// `e^r ≈ 1 + r + r² · p(r)` for `|r| <= ln(2)/2`: `p`'s coefficients, highest degree first
/// (Cephes' `expf`).
const POLYNOMIAL: [f32; 6] = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5];

/// `e^x` for one float32, written without branches so that a loop of it vectorises.
///
/// Range reduction: `x = n·ln 2 + r` with `|r| <= ln(2)/2`, `ln 2` split in two parts so that
/// `r` is exact; `e^r` by a degree-6 polynomial; `2^n` built in the exponent bits, in two
/// halves so that results down to the subnormal range stay exact.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    let clamped = x.clamp(MIN_INPUT, MAX_INPUT);
    let shifted = clamped.mul_add(LOG2_E, ROUNDER);
    let n = shifted - ROUNDER;
    let r = (clamped - n * LN2_HI) - n * LN2_LO;
    let p = POLYNOMIAL[1..].iter().fold(POLYNOMIAL[0], |p, &c| p.mul_add(r, c));
    let er = p.mul_add(r * r, r) + 1.0;
    // 2^n = 2^a · 2^b with a = n/2 rounded down and b = n - a, each a normal float for
    // n in [-150, 128].
    let n = shifted.to_bits().wrapping_sub(ROUNDER.to_bits()) as i32;
    let a = n >> 1;
    let b = n.wrapping_sub(a);
    let scale_a = f32::from_bits((a.wrapping_add(127) as u32) << 23);
    let scale_b = f32::from_bits((b.wrapping_add(127) as u32) << 23);
    let y = er * scale_a * scale_b;
    let y = if x > MAX_INPUT { f32::INFINITY } else { y };
    let y = if x < MIN_INPUT { 0.0 } else { y };
    if x.is_nan() { x } else { y }
}

/// `dst[i] = e^src[i]`, vectorised with the widest instructions this CPU has.
///
/// Large outputs are written with ordinary stores. Non-temporal stores (through an L1 block,
/// so that the output's lines are not read first) were slower once the output buffer came
/// from the recycler instead of fresh pages: exp over 2^24 floats on one thread took 7.5–9.1 ms
/// with them and 6.0–6.1 ms without (`keras-cli bench --workload exp-16m`, interleaved).
/// The polynomial, not memory, bounds this pass on a core: over a block that stays in cache
/// it takes as long per element as over 64 MiB.
pub fn exp_f32_into(src: &[f32], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU supports AVX-512F, checked just above.
        return unsafe { exp_f32_avx512(src, dst) };
    }
    vectorized(
        #[inline(always)]
        || exp_f32_loop(src, dst),
    );
}

/// [`exp_f32`]'s steps on 16 lanes at a time, with `2^n` applied by `vscalefps` instead of
/// built in integer lanes in two halves: nine operations become one, and the result has the
/// same bits (one rounding either way, exact for normal results). Over 2^24 floats on one
/// core: 5.1 ms against 6.15 for the compiler's AVX-512 code of [`exp_f32`] (kernel harness);
/// every 97th float in [-104, 89] gave the same bits. The tail goes through [`exp_f32`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn exp_f32_avx512(src: &[f32], dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let len = src.len().min(dst.len());
    let whole = len / 16 * 16;
    let splat = _mm512_set1_ps;
    for (s, d) in src[..whole].chunks_exact(16).zip(dst[..whole].chunks_exact_mut(16)) {
        // SAFETY: `s` and `d` hold 16 floats each (`chunks_exact`).
        let x = unsafe { _mm512_loadu_ps(s.as_ptr()) };
        let clamped = _mm512_min_ps(_mm512_max_ps(x, splat(MIN_INPUT)), splat(MAX_INPUT));
        let shifted = _mm512_fmadd_ps(clamped, splat(LOG2_E), splat(ROUNDER));
        let n = _mm512_sub_ps(shifted, splat(ROUNDER));
        let r = _mm512_sub_ps(_mm512_sub_ps(clamped, _mm512_mul_ps(n, splat(LN2_HI))), _mm512_mul_ps(n, splat(LN2_LO)));
        let p = POLYNOMIAL[1..].iter().fold(splat(POLYNOMIAL[0]), |p, &c| _mm512_fmadd_ps(p, r, splat(c)));
        let er = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), splat(1.0));
        let y = _mm512_scalef_ps(er, n);
        let y = _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, splat(MAX_INPUT)), splat(f32::INFINITY));
        let y = _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, splat(MIN_INPUT)), splat(0.0));
        let y = _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x), x);
        // SAFETY: as for the load.
        unsafe { _mm512_storeu_ps(d.as_mut_ptr(), y) };
    }
    exp_f32_loop(&src[whole..len], &mut dst[whole..len]);
}

/// `dst[i] = e^dst[i]`, in place.
pub fn exp_f32_in_place(dst: &mut [f32]) {
    // Chunks through a small stack copy: one vectorised loop serves both forms.
    const BLOCK: usize = 1024;
    let mut block = [0f32; BLOCK];
    for chunk in dst.chunks_mut(BLOCK) {
        let src = &mut block[..chunk.len()];
        src.copy_from_slice(chunk);
        exp_f32_into(src, chunk);
    }
}

#[inline(always)]
fn exp_f32_loop(src: &[f32], dst: &mut [f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = exp_f32(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between two finite floats of the same sign.
    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn exp_is_within_two_ulp_of_the_exact_value_over_the_whole_range() {
        // Every 997th float32 bit pattern in [-104, 89]: about 2 million values, subnormal
        // results included.
        let mut inputs = Vec::new();
        let mut bits = (-104f32).to_bits();
        while bits > (-0f32).to_bits() {
            inputs.push(f32::from_bits(bits));
            bits -= 997;
        }
        let mut bits = 0u32;
        while f32::from_bits(bits) < 89.0 {
            inputs.push(f32::from_bits(bits));
            bits += 997;
        }
        let mut worst = (0u32, 0f32);
        let mut out = vec![0f32; inputs.len()];
        exp_f32_into(&inputs, &mut out);
        for (&x, &y) in inputs.iter().zip(&out) {
            let exact = (x as f64).exp() as f32;
            let error = ulps(y, exact);
            if error > worst.0 {
                worst = (error, x);
            }
        }
        assert!(worst.0 <= 2, "exp({}) is {} ulp off", worst.1, worst.0);
    }

    #[test]
    fn exp_gives_tensorflows_special_values() {
        let inputs =
            [0.0, -0.0, 1.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 88.8, 1000.0, -104.0, -1000.0, -100.0];
        let mut out = [0f32; 11];
        exp_f32_into(&inputs, &mut out);
        assert_eq!(&out[..5], &[1.0, 1.0, std::f32::consts::E, f32::INFINITY, 0.0]);
        assert!(out[5].is_nan());
        assert_eq!(&out[6..10], &[f32::INFINITY, f32::INFINITY, 0.0, 0.0]);
        // A subnormal result, exact to the last bit kept.
        assert!(ulps(out[10], (-100f64).exp() as f32) <= 1, "{:e}", out[10]);

        let mut in_place = inputs;
        exp_f32_in_place(&mut in_place);
        assert_eq!(in_place.map(f32::to_bits)[..5], out.map(f32::to_bits)[..5]);
    }

    #[test]
    fn every_instruction_set_gives_the_same_bits() {
        // [-102.4, 102.35] (overflow and subnormal results included), the special values, and a
        // length that leaves a tail after the 16-lane blocks.
        let mut inputs: Vec<f32> = (0..4096).map(|i| (i as f32 - 2048.0) * 0.05).collect();
        inputs.extend([f32::NAN, f32::INFINITY, f32::NEG_INFINITY, MAX_INPUT, MIN_INPUT, -0.0, 1e-30, -88.0, 88.7]);
        let mut portable = vec![0f32; inputs.len()];
        exp_f32_loop(&inputs, &mut portable);
        let mut dispatched = vec![0f32; inputs.len()];
        exp_f32_into(&inputs, &mut dispatched);
        // Bits, so that NaN compares equal to NaN.
        let differing =
            inputs.iter().zip(portable.iter().zip(&dispatched)).find(|(_, (p, d))| p.to_bits() != d.to_bits());
        assert!(differing.is_none(), "exp(x), portable vs dispatched: {differing:?}");
    }
}
