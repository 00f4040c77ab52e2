//! Counter-based random numbers (the stream of `keras_backend_api::random`).
//!
//! Element `i` depends only on `(dist, seed, counter, i)`, so chunks fill independently on
//! rayon's pool and the result does not depend on the thread count.

use half::f16;
use keras_backend_api::{BackendError, Distribution, random::sample};
use rayon::prelude::*;

use super::TensorMut;
use super::element::{CHUNK, Element, worth_splitting};
use crate::{CpuStorage, Result};

/// Fills the float `out` from the stream `(seed, counter)`: element `i` is
/// `keras_backend_api::random::sample(dist, seed, counter, i)` cast to `out`'s dtype.
pub fn random(dist: Distribution, seed: u64, counter: u64, out: TensorMut<'_>) -> Result<()> {
    dist.check()?;
    match out.data {
        CpuStorage::F32(o) => fill_stream(dist, seed, counter, o),
        CpuStorage::F64(o) => fill_stream(dist, seed, counter, o),
        CpuStorage::F16(o) => fill_stream::<f16>(dist, seed, counter, o),
        other => {
            return Err(BackendError::invalid(format!(
                "random({dist:?}): out is {} but must be a float dtype",
                other.dtype()
            )));
        }
    }
    Ok(())
}

fn fill_stream<T: Element>(dist: Distribution, seed: u64, counter: u64, out: &mut [T]) {
    let fill = |start: usize, chunk: &mut [T]| {
        for (i, o) in chunk.iter_mut().enumerate() {
            *o = T::from_f64(sample(dist, seed, counter, (start + i) as u64));
        }
    };
    if worth_splitting(out.len()) {
        out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, chunk)| fill(c * CHUNK, chunk));
    } else {
        fill(0, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keras_backend_api::{DType, ErrorKind};

    fn draw(dist: Distribution, seed: u64, counter: u64, dtype: DType, n: usize) -> CpuStorage {
        let mut o = CpuStorage::zeros(dtype, n);
        random(dist, seed, counter, TensorMut { data: &mut o, shape: &[n] }).unwrap();
        o
    }

    #[test]
    fn matches_the_contract_stream_in_every_dtype() {
        let dists = [
            Distribution::Uniform { low: -2.0, high: 3.0 },
            Distribution::Normal { mean: 1.0, stddev: 0.5 },
            Distribution::Bernoulli { p: 0.3 },
        ];
        for dist in dists {
            // Large enough to run in parallel chunks.
            let n = 70_001;
            let want: Vec<f64> = (0..n).map(|i| sample(dist, 11, 3, i as u64)).collect();
            assert_eq!(draw(dist, 11, 3, DType::F64, n), CpuStorage::F64(want.clone()), "{dist:?}");
            assert_eq!(
                draw(dist, 11, 3, DType::F32, n),
                CpuStorage::F32(want.iter().map(|&v| v as f32).collect()),
                "{dist:?}"
            );
            assert_eq!(
                draw(dist, 11, 3, DType::F16, 10),
                CpuStorage::F16(want[..10].iter().map(|&v| f16::from_f64(v)).collect()),
                "{dist:?}"
            );
        }
    }

    #[test]
    fn reproducible_and_distinct_streams() {
        let d = Distribution::Uniform { low: 0.0, high: 1.0 };
        assert_eq!(draw(d, 5, 0, DType::F32, 100), draw(d, 5, 0, DType::F32, 100));
        assert_ne!(draw(d, 5, 0, DType::F32, 100), draw(d, 5, 1, DType::F32, 100));
        assert_ne!(draw(d, 5, 0, DType::F32, 100), draw(d, 6, 0, DType::F32, 100));
        // A prefix of a longer draw is the shorter draw.
        let CpuStorage::F64(long) = draw(d, 9, 2, DType::F64, 50) else { unreachable!() };
        assert_eq!(draw(d, 9, 2, DType::F64, 7), CpuStorage::F64(long[..7].to_vec()));
        let CpuStorage::F64(b) = draw(Distribution::Bernoulli { p: 1.0 }, 1, 1, DType::F64, 64) else { unreachable!() };
        assert!(b.iter().all(|&v| v == 1.0));
        assert_eq!(draw(d, 1, 1, DType::F32, 0), CpuStorage::F32(vec![]));
    }

    #[test]
    fn invalid_parameters_and_dtypes() {
        let bad = [
            Distribution::Bernoulli { p: 1.5 },
            Distribution::Bernoulli { p: -0.1 },
            Distribution::Bernoulli { p: f64::NAN },
            Distribution::Uniform { low: 1.0, high: 0.0 },
            Distribution::Normal { mean: 0.0, stddev: -1.0 },
        ];
        for dist in bad {
            let mut o = CpuStorage::zeros(DType::F32, 4);
            let e = random(dist, 0, 0, TensorMut { data: &mut o, shape: &[4] }).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidArgument);
            assert!(e.message.starts_with("random("), "{}", e.message);
        }
        let mut o = CpuStorage::zeros(DType::I32, 4);
        let e = random(Distribution::Bernoulli { p: 0.5 }, 0, 0, TensorMut { data: &mut o, shape: &[4] }).unwrap_err();
        assert!(e.message.contains("int32"), "{}", e.message);
    }
}
