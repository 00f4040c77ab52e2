//! Weights on disk as safetensors: one tensor per weight variable, named as in the model
//! (`conv_1/kernel`, ...), with the training run's settings in the header's `__metadata__`.

use std::{collections::HashMap, path::Path};

use keras::{Array, Error, backend as K};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use super::{file_error, model::Model};

/// Writes `model`'s current weights and `metadata` to `path` (replacing it).
pub fn save(path: &Path, model: &Model, metadata: HashMap<String, String>) -> Result<(), Error> {
    let mut tensors = Vec::new();
    for (name, variable) in &model.weights {
        let value = K::get_value(variable)?;
        let dtype = match value.dtype() {
            K::DType::F32 => Dtype::F32,
            K::DType::F64 => Dtype::F64,
            other => return Err(file_error(path, format!("weight `{name}` is {other}, only f32 and f64 are saved"))),
        };
        // safetensors stores little-endian, as every platform keras-rs runs on.
        tensors.push((name.clone(), dtype, value.shape().to_vec(), value.bytes().to_vec()));
    }
    let views = tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| Ok((name.as_str(), TensorView::new(*dtype, shape.clone(), bytes)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(|e| file_error(path, format!("cannot encode the weights: {e}")))?;
    safetensors::serialize_to_file(views, Some(metadata), path)
        .map_err(|e| file_error(path, format!("cannot write the weights: {e}")))
}

/// The `__metadata__` of the safetensors file at `path`, and its bytes for [`load_into`].
pub fn read(path: &Path) -> Result<(HashMap<String, String>, Vec<u8>), Error> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, format!("cannot read: {e}")))?;
    let (_, header) =
        SafeTensors::read_metadata(&bytes).map_err(|e| file_error(path, format!("not a safetensors file: {e}")))?;
    Ok((header.metadata().clone().unwrap_or_default(), bytes))
}

/// Sets every weight of `model` from the safetensors `bytes` read from `path`: each weight must
/// be there with its exact shape and dtype, and the file must hold nothing else.
pub fn load_into(path: &Path, bytes: &[u8], model: &Model) -> Result<(), Error> {
    let file = SafeTensors::deserialize(bytes).map_err(|e| file_error(path, format!("not a safetensors file: {e}")))?;
    for (name, variable) in &model.weights {
        let view = file.tensor(name).map_err(|_| file_error(path, format!("has no weight `{name}` for this model")))?;
        let want_shape = variable.static_shape().unwrap_or_default();
        let want_dtype = match variable.dtype() {
            K::DType::F64 => Dtype::F64,
            _ => Dtype::F32,
        };
        if view.shape() != want_shape.as_slice() || view.dtype() != want_dtype {
            return Err(file_error(
                path,
                format!(
                    "weight `{name}` is {:?} {:?}, the model needs {want_shape:?} {want_dtype:?}",
                    view.shape(),
                    view.dtype()
                ),
            ));
        }
        K::set_value(variable, Array::from_bytes(variable.dtype(), &want_shape, view.data().to_vec())?)?;
    }
    if file.len() != model.weights.len() {
        let known: Vec<&str> = model.weights.iter().map(|(n, _)| n.as_str()).collect();
        let extra: Vec<&str> = file.names().into_iter().filter(|n| !known.contains(n)).collect();
        return Err(file_error(path, format!("holds weights this model does not have: {}", extra.join(", "))));
    }
    Ok(())
}
