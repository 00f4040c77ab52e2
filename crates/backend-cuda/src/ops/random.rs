//! random: the contract's Philox stream on the device.
use keras_backend_api::{BackendError, Distribution, TensorRef};

use crate::{Device, Result};

pub fn random(_d: &Device, _dist: Distribution, _seed: u64, _counter: u64, _out: TensorRef<'_>) -> Result<()> {
    Err(BackendError::unsupported("random"))
}
