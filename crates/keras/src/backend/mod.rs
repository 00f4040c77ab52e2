//! The Keras 1 backend API: `use keras::backend as K;`.
//!
//! Every function builds a node of a symbolic graph and checks its shape rule at once (a
//! mismatch is an [`Error::Graph`](crate::Error::Graph) naming the function and the shapes);
//! nothing runs until a [`Function`] compiled with [`function`] is called with host arrays.
//! The graph runs on the backend chosen at start-up (`KERAS_BACKEND`, `keras.json`, else the
//! built-in `cpu`).
//!
//! ```
//! use keras::{Array, backend as K};
//!
//! # fn main() -> keras::Result<()> {
//! let x = K::placeholder([None, Some(3)]);
//! let w = K::variable(Array::from([[1.0f32], [2.0], [3.0]]))?;
//! let y = K::sum(&K::dot(&x, &w)?, K::Axes::All, false)?;
//! let grads = K::gradients(&y, &[w.clone()])?;
//! let f = K::function(&[x], &[y, grads[0].clone()], &[])?;
//! let out = f.call(&[Array::from([[1.0f32, 1.0, 1.0], [0.0, 1.0, 0.0]])])?;
//! assert_eq!(out[0].to_vec::<f32>()?, [8.0]);
//! assert_eq!(out[1].to_vec::<f32>()?, [1.0, 2.0, 1.0]);
//! # Ok(())
//! # }
//! ```
//!
//! Rust has no keyword arguments: optional Keras arguments are plain parameters (`None` for
//! Keras's defaults), and functions taking several tensors take slices.

mod config;
mod control;
mod conv;
mod ctc;
mod layout;
mod linalg;
mod math;
mod nn;
mod operators;
mod recurrent;
mod variables;

pub use config::{
    backend, cast_to_floatx, epsilon, floatx, image_dim_ordering, is_manual_variable_initialization,
    manual_variable_initialization, set_epsilon, set_floatx, set_image_dim_ordering,
};
pub use control::*;
#[allow(unused_imports)]
pub use conv::*;
pub use ctc::*;
pub use layout::*;
pub use linalg::*;
pub use math::*;
pub use nn::*;
pub use operators::Operand;
#[allow(unused_imports)]
pub use recurrent::*;
pub use variables::*;

pub use crate::{
    array::Array,
    config::ImageDimOrdering,
    exec::{Function, current_backend, with_backend},
    graph::{Dim, Tensor},
};
pub use keras_backend_api::DType;
