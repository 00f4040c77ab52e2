//! Keras's global settings: `epsilon`, `floatx`, `image_dim_ordering`, and which backend runs.
//!
//! They start from `keras.json` (see [`crate::config`]) on first use and can be changed for
//! the rest of the process, as in Keras.

use std::sync::OnceLock;

use keras_backend_api::DType;
use parking_lot::RwLock;

use crate::{
    array::Array,
    config::{Config, FloatX, ImageDimOrdering},
    error::{Error, Result},
};

struct Settings {
    epsilon: f64,
    floatx: DType,
    image_dim_ordering: ImageDimOrdering,
    manual_variable_initialization: bool,
}

fn settings() -> &'static RwLock<Settings> {
    static SETTINGS: OnceLock<RwLock<Settings>> = OnceLock::new();
    SETTINGS.get_or_init(|| {
        // A broken keras.json is reported when a backend is loaded; the settings fall back to
        // Keras's defaults so that pure graph building never fails on it.
        let config = Config::load().ok();
        let floatx = config.as_ref().map_or(FloatX::Float32, |c| c.floatx);
        RwLock::new(Settings {
            epsilon: config.as_ref().map_or(crate::config::DEFAULT_EPSILON, |c| c.epsilon),
            floatx: DType::from_name(floatx.name()).unwrap_or(DType::F32),
            image_dim_ordering: config.map_or(ImageDimOrdering::Tf, |c| c.image_dim_ordering),
            manual_variable_initialization: false,
        })
    })
}

/// The fuzz factor used in numeric expressions (`1e-7` by default).
pub fn epsilon() -> f64 {
    settings().read().epsilon
}

/// Sets the fuzz factor; it must be finite and greater than 0.
pub fn set_epsilon(value: f64) -> Result<()> {
    if !(value.is_finite() && value > 0.0) {
        return Err(Error::graph("set_epsilon", format!("epsilon must be finite and > 0, got {value}")));
    }
    settings().write().epsilon = value;
    Ok(())
}

/// The default float dtype of new tensors: `float16`, `float32` (default) or `float64`.
pub fn floatx() -> DType {
    settings().read().floatx
}

/// Sets the default float dtype; it must be a float dtype.
pub fn set_floatx(dtype: DType) -> Result<()> {
    if !dtype.is_float() {
        return Err(Error::graph("set_floatx", format!("floatx must be float16, float32 or float64, got {dtype}")));
    }
    settings().write().floatx = dtype;
    Ok(())
}

/// `value` converted to a host array of [`floatx`].
pub fn cast_to_floatx(value: &Array) -> Result<Array> {
    Array::from_f64s(floatx(), value.shape(), &value.to_f64_vec())
}

/// The default image dimension ordering: `Th` (channels first) or `Tf` (channels last).
pub fn image_dim_ordering() -> ImageDimOrdering {
    settings().read().image_dim_ordering
}

/// Sets the default image dimension ordering.
pub fn set_image_dim_ordering(ordering: ImageDimOrdering) {
    settings().write().image_dim_ordering = ordering;
}

/// Whether variables are left uninitialised for the caller to set (Keras's flag). keras-rs
/// always initialises variables from their value, so the flag is only recorded and reported.
pub fn manual_variable_initialization(value: bool) {
    settings().write().manual_variable_initialization = value;
}

/// The value last given to [`manual_variable_initialization`] (false by default).
pub fn is_manual_variable_initialization() -> bool {
    settings().read().manual_variable_initialization
}

/// The name of the backend this thread runs on (`cpu`, `blas`, `cuda`, ...).
pub fn backend() -> Result<String> {
    Ok(crate::exec::current_backend()?.name().to_string())
}
