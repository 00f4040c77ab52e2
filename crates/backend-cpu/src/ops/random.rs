//! Counter-based random numbers (the stream of `keras_backend_api::random`).

use keras_backend_api::{BackendError, Distribution};

use super::TensorMut;
use crate::Result;

/// Fills `out` from the stream `(seed, counter)`.
pub fn random(dist: Distribution, seed: u64, counter: u64, out: TensorMut<'_>) -> Result<()> {
    let _ = (dist, seed, counter, out);
    Err(BackendError::unsupported("random"))
}
