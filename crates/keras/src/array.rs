//! Host arrays: what a [`Function`](crate::backend::Function) takes in and gives back.
//!
//! An [`Array`] is a dtype, a shape and row-major little-endian bytes: exactly what a backend
//! buffer holds, so feeding and fetching are one copy each. Conversions to and from
//! [`ndarray`] and plain `Vec`s are provided for every element type.

use keras_backend_api::DType;
use ndarray::{ArrayD, IxDyn};

use crate::{
    Element,
    error::{Error, Result},
};

/// A dense, row-major host array of any contract dtype.
#[derive(Clone, PartialEq)]
pub struct Array {
    dtype: DType,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl Array {
    /// An array from raw little-endian bytes; fails when their count does not match.
    pub fn from_bytes(dtype: DType, shape: &[usize], bytes: Vec<u8>) -> Result<Array> {
        let expected = byte_len("Array::from_bytes", dtype, shape)?;
        if bytes.len() != expected {
            return Err(Error::Buffer {
                operation: "Array::from_bytes",
                message: format!("shape {shape:?} of {dtype} needs {expected} bytes, {} given", bytes.len()),
            });
        }
        Ok(Array { dtype, shape: shape.to_vec(), bytes })
    }

    /// An array of `values` with `shape`; fails when the element count does not match.
    pub fn from_vec<T: Element>(shape: &[usize], values: Vec<T>) -> Result<Array> {
        let count = byte_len("Array::from_vec", T::DTYPE, shape)? / T::DTYPE.size_in_bytes();
        if values.len() != count {
            return Err(Error::Buffer {
                operation: "Array::from_vec",
                message: format!("shape {shape:?} holds {count} elements, {} given", values.len()),
            });
        }
        let mut bytes = Vec::with_capacity(count * T::DTYPE.size_in_bytes());
        for value in values {
            value.write_le(&mut bytes);
        }
        Ok(Array { dtype: T::DTYPE, shape: shape.to_vec(), bytes })
    }

    /// A 0-d array holding `value`.
    pub fn scalar<T: Element>(value: T) -> Array {
        let mut bytes = Vec::new();
        value.write_le(&mut bytes);
        Array { dtype: T::DTYPE, shape: Vec::new(), bytes }
    }

    /// A 0-d or shaped array of `dtype` with every element `value` (converted as a cast does).
    ///
    /// # Panics
    ///
    /// When the shape holds more bytes than memory can; [`Array::try_full`] returns an error
    /// instead.
    pub fn full(dtype: DType, shape: &[usize], value: f64) -> Array {
        Array::try_full(dtype, shape, value).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Array::full`], with an error rather than a panic or an abort when the shape's size
    /// overflows or its memory cannot be allocated (shapes given by a user, as `K.zeros`).
    pub fn try_full(dtype: DType, shape: &[usize], value: f64) -> Result<Array> {
        let len = byte_len("Array::full", dtype, shape)?;
        let mut bytes = Vec::new();
        bytes.try_reserve_exact(len).map_err(|_| Error::Buffer {
            operation: "Array::full",
            message: format!("shape {shape:?} of {dtype} needs {len} bytes, more than can be allocated"),
        })?;
        let one = encode_f64(dtype, value);
        bytes.extend(one.iter().copied().cycle().take(len));
        Ok(Array { dtype, shape: shape.to_vec(), bytes })
    }

    /// A 1-d `Bool` array from `values`.
    pub fn from_bools(shape: &[usize], values: &[bool]) -> Result<Array> {
        Array::from_bytes(DType::Bool, shape, values.iter().map(|&v| v as u8).collect())
    }

    /// An array of `dtype` from `f64` values, each converted as [`Array::full`] does (used for
    /// literals and for the conformance runner's comparisons).
    pub fn from_f64s(dtype: DType, shape: &[usize], values: &[f64]) -> Result<Array> {
        let bytes = values.iter().flat_map(|&v| encode_f64(dtype, v)).collect();
        Array::from_bytes(dtype, shape, bytes)
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The shape; `[]` for a scalar.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of axes.
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        // The bytes hold exactly the shape's elements (every constructor checks it).
        self.bytes.len() / self.dtype.size_in_bytes()
    }

    /// `true` when the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The raw little-endian bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The raw little-endian bytes, by value.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The same elements viewed with another shape of the same element count.
    pub fn reshaped(mut self, shape: &[usize]) -> Result<Array> {
        if crate::graph::byte_size(shape, self.dtype) != Some(self.bytes.len()) {
            return Err(Error::Buffer {
                operation: "Array::reshaped",
                message: format!("cannot view shape {:?} as {shape:?}", self.shape),
            });
        }
        self.shape = shape.to_vec();
        Ok(self)
    }

    /// The elements as `T`, which must be this array's element type (`u8` for `Bool`).
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        let stored = if self.dtype == DType::Bool { DType::U8 } else { self.dtype };
        if T::DTYPE != stored {
            return Err(Error::Buffer {
                operation: "Array::to_vec",
                message: format!("the array holds {}, not {}", self.dtype, T::DTYPE),
            });
        }
        Ok(self.bytes.chunks_exact(T::DTYPE.size_in_bytes()).map(T::read_le).collect())
    }

    /// Every element converted to `f64` (bools and integers exactly; `i64` beyond 2^53 rounds).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        let size = self.dtype.size_in_bytes();
        self.bytes.chunks_exact(size).map(|b| decode_f64(self.dtype, b)).collect()
    }

    /// The array as an `ndarray` of `T` (the element type must match).
    pub fn to_ndarray<T: Element>(&self) -> Result<ArrayD<T>> {
        let values = self.to_vec::<T>()?;
        ArrayD::from_shape_vec(IxDyn(&self.shape), values)
            .map_err(|e| Error::Buffer { operation: "Array::to_ndarray", message: e.to_string() })
    }
}

impl<T: Element> From<ArrayD<T>> for Array {
    fn from(array: ArrayD<T>) -> Array {
        let shape = array.shape().to_vec();
        let values: Vec<T> = array.iter().copied().collect();
        Array::from_vec(&shape, values).expect("an ndarray's shape matches its element count")
    }
}

impl<T: Element, D: ndarray::Dimension> From<&ndarray::ArrayRef<T, D>> for Array {
    fn from(array: &ndarray::ArrayRef<T, D>) -> Array {
        let shape = array.shape().to_vec();
        let values: Vec<T> = array.iter().copied().collect();
        Array::from_vec(&shape, values).expect("an ndarray's shape matches its element count")
    }
}

impl<T: Element> From<Vec<T>> for Array {
    fn from(values: Vec<T>) -> Array {
        let shape = [values.len()];
        Array::from_vec(&shape, values).expect("a vector is one axis")
    }
}

impl<T: Element, const N: usize> From<[T; N]> for Array {
    fn from(values: [T; N]) -> Array {
        Array::from(values.to_vec())
    }
}

impl<T: Element, const N: usize, const M: usize> From<[[T; M]; N]> for Array {
    fn from(rows: [[T; M]; N]) -> Array {
        let values: Vec<T> = rows.iter().flatten().copied().collect();
        Array::from_vec(&[N, M], values).expect("a nested array is rectangular")
    }
}

/// The byte size of an array of `shape` and `dtype`, or an error naming `operation` when it
/// overflows (every constructor checks it, so that the bytes always hold exactly the shape).
fn byte_len(operation: &'static str, dtype: DType, shape: &[usize]) -> Result<usize> {
    crate::graph::byte_size(shape, dtype).ok_or_else(|| Error::Buffer {
        operation,
        message: format!("shape {shape:?} of {dtype} has more elements than memory can hold"),
    })
}

/// One element of `dtype` holding `value`, with the conversions of the contract's `cast`
/// (truncation toward zero, saturation; `value != 0` for `Bool`).
pub(crate) fn encode_f64(dtype: DType, value: f64) -> Vec<u8> {
    match dtype {
        DType::F16 => half::f16::from_f64(value).to_le_bytes().to_vec(),
        DType::F32 => (value as f32).to_le_bytes().to_vec(),
        DType::F64 => value.to_le_bytes().to_vec(),
        DType::I32 => (value as i32).to_le_bytes().to_vec(),
        DType::I64 => (value as i64).to_le_bytes().to_vec(),
        DType::U8 => vec![value as u8],
        DType::Bool => vec![(value != 0.0) as u8],
    }
}

fn decode_f64(dtype: DType, bytes: &[u8]) -> f64 {
    fn le<const N: usize>(bytes: &[u8]) -> [u8; N] {
        let mut array = [0u8; N];
        array.copy_from_slice(&bytes[..N]);
        array
    }
    match dtype {
        DType::F16 => half::f16::from_le_bytes(le(bytes)).to_f64(),
        DType::F32 => f32::from_le_bytes(le(bytes)) as f64,
        DType::F64 => f64::from_le_bytes(le(bytes)),
        DType::I32 => i32::from_le_bytes(le(bytes)) as f64,
        DType::I64 => i64::from_le_bytes(le(bytes)) as f64,
        DType::U8 | DType::Bool => bytes[0] as f64,
    }
}

impl std::fmt::Debug for Array {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOWN: usize = 16;
        let values = self.to_f64_vec();
        write!(f, "Array({}, {:?}, [", self.dtype, self.shape)?;
        for (i, v) in values.iter().take(SHOWN).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(&element_string(self.dtype, *v))?;
        }
        if values.len() > SHOWN {
            write!(f, ", … {} more", values.len() - SHOWN)?;
        }
        f.write_str("])")
    }
}

impl std::fmt::Display for Array {
    /// NumPy-like nested brackets, e.g. `[[1, 2], [3, 4]]`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn nested(f: &mut std::fmt::Formatter<'_>, dtype: DType, shape: &[usize], values: &[f64]) -> std::fmt::Result {
            match shape.split_first() {
                None => f.write_str(&element_string(dtype, values[0])),
                Some((&n, rest)) => {
                    let step: usize = rest.iter().product();
                    f.write_str("[")?;
                    for i in 0..n {
                        if i > 0 {
                            f.write_str(", ")?;
                        }
                        nested(f, dtype, rest, &values[i * step..(i + 1) * step])?;
                    }
                    f.write_str("]")
                }
            }
        }
        let values = self.to_f64_vec();
        // NumPy prints any empty array as `[]`; nesting would loop over a huge leading dim.
        if values.is_empty() {
            return f.write_str("[]");
        }
        nested(f, self.dtype, &self.shape, &values)
    }
}

/// One element as its own type prints it (`0.1` for a float32 0.1, not its f64 expansion).
fn element_string(dtype: DType, value: f64) -> String {
    match dtype {
        DType::F16 | DType::F32 => format!("{}", value as f32),
        DType::Bool => (value != 0.0).to_string(),
        _ => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_ndarray_and_vec() {
        let a = Array::from([[1.0f32, 2.0], [3.0, 4.0]]);
        assert_eq!(a.shape(), [2, 2]);
        let nd = a.to_ndarray::<f32>().unwrap();
        assert_eq!(nd[[1, 0]], 3.0);
        assert_eq!(Array::from(nd), a);
        assert_eq!(a.to_string(), "[[1, 2], [3, 4]]");
        assert!(a.to_vec::<f64>().unwrap_err().to_string().contains("float32"));
    }

    #[test]
    fn conversions_follow_cast_rules() {
        let a = Array::from_f64s(DType::I32, &[3], &[-1.7, 2.5, 3.0]).unwrap();
        assert_eq!(a.to_vec::<i32>().unwrap(), [-1, 2, 3]);
        assert_eq!(Array::full(DType::Bool, &[2], 3.0).to_f64_vec(), [1.0, 1.0]);
        assert!(Array::from_vec(&[2, 2], vec![1i32]).is_err());
    }
}
