//! Data movement: permute, slice, concat, pad, reverse, gather, scatter-add, tile, repeat,
//! one-hot, nearest resize. Every dtype.

use keras_backend_api::{BackendError, Layout};

use super::{Tensor, TensorMut};
use crate::Result;

macro_rules! stub {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {$(
        #[allow(missing_docs)]
        pub fn $name($($arg: $ty),*) -> Result<()> {
            let _ = ($($arg),*);
            Err(BackendError::unsupported(stringify!($name)))
        }
    )*};
}

stub! {
    permute(x: Tensor<'_>, perm: &[usize], out: TensorMut<'_>);
    slice(x: Tensor<'_>, starts: &[usize], steps: &[isize], out: TensorMut<'_>);
    concat(inputs: &[Tensor<'_>], axis: usize, out: TensorMut<'_>);
    pad(x: Tensor<'_>, before: &[usize], after: &[usize], value: f64, out: TensorMut<'_>);
    reverse(x: Tensor<'_>, axes: &[usize], out: TensorMut<'_>);
    gather(x: Tensor<'_>, indices: Tensor<'_>, axis: usize, out: TensorMut<'_>);
    scatter_add(updates: Tensor<'_>, indices: Tensor<'_>, axis: usize, out: TensorMut<'_>);
    tile(x: Tensor<'_>, out: TensorMut<'_>);
    repeat(x: Tensor<'_>, axis: usize, repeats: usize, out: TensorMut<'_>);
    one_hot(indices: Tensor<'_>, out: TensorMut<'_>);
    resize_nearest(x: Tensor<'_>, out: TensorMut<'_>, layout: Layout);
}
