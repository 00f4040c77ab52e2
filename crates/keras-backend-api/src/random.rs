//! The counter-based random stream every backend reproduces bit for bit.
//!
//! The generator is Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
//! 3", SC 2011). A call to [`Backend::random`](crate::Backend::random) with `(seed, counter)`
//! fills element `i` of the output with [`sample`]`(dist, seed, counter, i)`. Because each
//! element depends only on those four values, a backend may compute elements in any order or
//! in parallel, and two backends given the same arguments produce the same tensor up to the
//! rounding of the final cast to the output dtype.
//!
//! The exact rule, for element `i` and 64-bit `seed` and `counter`:
//! * key = `[lo32(seed), hi32(seed)]`;
//! * uniform and Bernoulli: block `b = i / 4`, lane `i % 4`; normal: block `b = i / 2`,
//!   lanes `2·(i % 2)` and `2·(i % 2) + 1`;
//! * the block's words are `philox4x32_10([lo32(b), hi32(b), lo32(counter), hi32(counter)], key)`;
//! * a word `w` gives `u = (w >> 8) · 2⁻²⁴` in `[0, 1)`;
//! * uniform: `low + (high - low) · u`; Bernoulli: `1` if `u < p` else `0`;
//! * normal (Box-Muller, f64 arithmetic): `u₁ = ((w₀ >> 8) + 1) · 2⁻²⁴` in `(0, 1]`,
//!   `u₂ = (w₁ >> 8) · 2⁻²⁴`, `mean + stddev · √(-2 ln u₁) · cos(2π u₂)`.

use crate::Distribution;

const PHILOX_M0: u32 = 0xD251_1F53;
const PHILOX_M1: u32 = 0xCD9E_8D57;
const PHILOX_W0: u32 = 0x9E37_79B9;
const PHILOX_W1: u32 = 0xBB67_AE85;

/// The Philox4x32 block function with 10 rounds.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut ctr = counter;
    let mut key = key;
    for round in 0..10 {
        if round > 0 {
            key = [key[0].wrapping_add(PHILOX_W0), key[1].wrapping_add(PHILOX_W1)];
        }
        let p0 = u64::from(PHILOX_M0) * u64::from(ctr[0]);
        let p1 = u64::from(PHILOX_M1) * u64::from(ctr[2]);
        ctr = [((p1 >> 32) as u32) ^ ctr[1] ^ key[0], p1 as u32, ((p0 >> 32) as u32) ^ ctr[3] ^ key[1], p0 as u32];
    }
    ctr
}

const UNIT_24: f64 = 1.0 / (1u64 << 24) as f64;

fn block(seed: u64, counter: u64, block: u64) -> [u32; 4] {
    philox4x32_10(
        [block as u32, (block >> 32) as u32, counter as u32, (counter >> 32) as u32],
        [seed as u32, (seed >> 32) as u32],
    )
}

/// Element `index` of the stream `(seed, counter)` drawn from `dist`, as defined in the module
/// docs.
pub fn sample(dist: Distribution, seed: u64, counter: u64, index: u64) -> f64 {
    match dist {
        Distribution::Uniform { low, high } => {
            let w = block(seed, counter, index / 4)[(index % 4) as usize];
            low + (high - low) * (f64::from(w >> 8) * UNIT_24)
        }
        Distribution::Bernoulli { p } => {
            let w = block(seed, counter, index / 4)[(index % 4) as usize];
            if f64::from(w >> 8) * UNIT_24 < p { 1.0 } else { 0.0 }
        }
        Distribution::Normal { mean, stddev } => {
            let words = block(seed, counter, index / 2);
            let lane = 2 * (index % 2) as usize;
            let u1 = (f64::from(words[lane] >> 8) + 1.0) * UNIT_24;
            let u2 = f64::from(words[lane + 1] >> 8) * UNIT_24;
            mean + stddev * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn philox_known_answers() {
        // Known-answer vectors published with the Random123 library (kat_vectors).
        assert_eq!(philox4x32_10([0; 4], [0; 2]), [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
        assert_eq!(philox4x32_10([u32::MAX; 4], [u32::MAX; 2]), [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]);
        assert_eq!(
            philox4x32_10([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn uniform_moments_are_plausible() {
        let n = 20_000;
        let xs: Vec<f64> = (0..n).map(|i| sample(Distribution::Uniform { low: -1.0, high: 3.0 }, 7, 0, i)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        assert!((mean - 1.0).abs() < 0.05, "mean {mean}");
        assert!(xs.iter().all(|&x| (-1.0..3.0).contains(&x)));
    }

    #[test]
    fn normal_moments_are_plausible() {
        let n = 20_000;
        let xs: Vec<f64> = (0..n).map(|i| sample(Distribution::Normal { mean: 2.0, stddev: 0.5 }, 1, 9, i)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!((mean - 2.0).abs() < 0.02, "mean {mean}");
        assert!((var.sqrt() - 0.5).abs() < 0.02, "std {}", var.sqrt());
    }

    #[test]
    fn streams_differ_by_seed_and_counter() {
        let d = Distribution::Uniform { low: 0.0, high: 1.0 };
        assert_ne!(sample(d, 1, 0, 0), sample(d, 2, 0, 0));
        assert_ne!(sample(d, 1, 0, 0), sample(d, 1, 1, 0));
        assert_eq!(sample(d, 1, 0, 5), sample(d, 1, 0, 5));
    }
}
