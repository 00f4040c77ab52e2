//! Host-side handles to device buffers.

use abi_stable::std_types::{RSlice, RSliceMut};
use keras_backend_api::{BufferId, DType, TensorRef};

use crate::{
    error::{Error, Result},
    registry::Backend,
};

mod sealed {
    pub trait Sealed {}
}

/// A Rust element type that maps to a buffer [`DType`]: `f32`, `f64`, `i32`, `i64` and `u8`.
///
/// Sealed: the mapping is fixed by the contract's dtypes.
pub trait Element: sealed::Sealed + Copy + 'static {
    /// The buffer element type holding values of `Self`.
    const DTYPE: DType;
    /// Appends the little-endian bytes of `self` (the contract's byte order) to `out`.
    fn write_le(self, out: &mut Vec<u8>);
    /// Reads a value from exactly [`DType::size_in_bytes`] little-endian bytes.
    fn read_le(bytes: &[u8]) -> Self;
}

macro_rules! element {
    ($($ty:ty => $dtype:ident),* $(,)?) => {$(
        impl sealed::Sealed for $ty {}
        impl Element for $ty {
            const DTYPE: DType = DType::$dtype;
            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn read_le(bytes: &[u8]) -> Self {
                let mut array = [0u8; std::mem::size_of::<$ty>()];
                array.copy_from_slice(bytes);
                <$ty>::from_le_bytes(array)
            }
        }
    )*};
}

element!(f32 => F32, f64 => F64, i32 => I32, i64 => I64, u8 => U8);

/// A buffer on a backend's device, freed when dropped.
///
/// It holds a clone of its [`Backend`], so the backend outlives every buffer allocated on it.
pub struct Buffer {
    backend: Backend,
    id: BufferId,
    dtype: DType,
    len: usize,
}

impl Buffer {
    /// Allocates `len` elements of `dtype` on `backend`; the content is unspecified until
    /// written.
    pub fn alloc(backend: &Backend, dtype: DType, len: usize) -> Result<Buffer> {
        let id =
            backend.raw().alloc(dtype, len).into_result().map_err(|e| Error::backend(backend.name(), "alloc", e))?;
        Ok(Buffer { backend: backend.clone(), id, dtype, len })
    }

    /// Allocates a buffer holding a copy of `values`.
    pub fn from_slice<T: Element>(backend: &Backend, values: &[T]) -> Result<Buffer> {
        let buffer = Buffer::alloc(backend, T::DTYPE, values.len())?;
        let mut bytes = Vec::with_capacity(values.len() * T::DTYPE.size_in_bytes());
        for value in values {
            value.write_le(&mut bytes);
        }
        buffer.upload(&bytes)?;
        Ok(buffer)
    }

    /// Replaces the content with `bytes`: little-endian elements, exactly
    /// [`size_in_bytes`](Self::size_in_bytes) of them.
    pub fn upload(&self, bytes: &[u8]) -> Result<()> {
        if bytes.len() != self.size_in_bytes() {
            return Err(Error::Buffer {
                operation: "upload",
                message: format!(
                    "{} bytes given for a buffer of {} {} elements ({} bytes)",
                    bytes.len(),
                    self.len,
                    self.dtype,
                    self.size_in_bytes()
                ),
            });
        }
        self.backend
            .raw()
            .upload(self.id, RSlice::from_slice(bytes))
            .into_result()
            .map_err(|e| Error::backend(self.backend.name(), "upload", e))
    }

    /// Copies the content to the host as little-endian bytes.
    pub fn download(&self) -> Result<Vec<u8>> {
        let mut bytes = vec![0u8; self.size_in_bytes()];
        self.backend
            .raw()
            .download(self.id, RSliceMut::from_mut_slice(&mut bytes))
            .into_result()
            .map_err(|e| Error::backend(self.backend.name(), "download", e))?;
        Ok(bytes)
    }

    /// Copies the content to the host as values of `T`, which must match the buffer's dtype.
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        if T::DTYPE != self.dtype {
            return Err(Error::Buffer {
                operation: "to_vec",
                message: format!("the buffer holds {} elements, not {}", self.dtype, T::DTYPE),
            });
        }
        let bytes = self.download()?;
        Ok(bytes.chunks_exact(self.dtype.size_in_bytes()).map(T::read_le).collect())
    }

    /// Sets every element to `value` (converted to the buffer's dtype), on the device.
    pub fn fill(&self, value: f64) -> Result<()> {
        let shape = [self.len];
        self.backend
            .raw()
            .fill(TensorRef::new(self.id, &shape), value)
            .into_result()
            .map_err(|e| Error::backend(self.backend.name(), "fill", e))
    }

    /// The backend the buffer lives on.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The backend's handle of the buffer, for kernels called through [`Backend::raw`].
    pub fn id(&self) -> BufferId {
        self.id
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// `true` when the buffer holds no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The content's size in bytes.
    pub fn size_in_bytes(&self) -> usize {
        self.len * self.dtype.size_in_bytes()
    }

    /// A row-major view of the whole buffer with `shape` (whose product must be [`len`](Self::len);
    /// the backend checks it).
    pub fn view<'a>(&self, shape: &'a [usize]) -> TensorRef<'a> {
        TensorRef::new(self.id, shape)
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // A failed free leaks device memory but must not take the program down: log it only.
        if let Err(e) = self.backend.raw().free(self.id).into_result() {
            tracing::warn!("backend `{}`: free of buffer {} failed: {e}", self.backend.name(), self.id.0);
        }
    }
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buffer")
            .field("backend", &self.backend.name())
            .field("id", &self.id.0)
            .field("dtype", &self.dtype)
            .field("len", &self.len)
            .finish()
    }
}

#[cfg(all(test, feature = "embedded-cpu"))]
mod tests {
    use super::*;

    fn builtin() -> Backend {
        crate::registry::load_in("cpu", &[]).expect("built-in cpu")
    }

    #[test]
    fn round_trips_every_element_type() {
        let backend = builtin();
        assert_eq!(Buffer::from_slice(&backend, &[1.5f32, -2.0]).unwrap().to_vec::<f32>().unwrap(), [1.5, -2.0]);
        assert_eq!(Buffer::from_slice(&backend, &[1e300f64]).unwrap().to_vec::<f64>().unwrap(), [1e300]);
        assert_eq!(Buffer::from_slice(&backend, &[i32::MIN, 7]).unwrap().to_vec::<i32>().unwrap(), [i32::MIN, 7]);
        assert_eq!(Buffer::from_slice(&backend, &[i64::MAX]).unwrap().to_vec::<i64>().unwrap(), [i64::MAX]);
        assert_eq!(Buffer::from_slice(&backend, &[0u8, 255]).unwrap().to_vec::<u8>().unwrap(), [0, 255]);
        assert_eq!(backend.live_buffers(), 0, "every buffer is freed on drop");
    }

    #[test]
    fn misuse_is_an_error_not_a_panic() {
        let backend = builtin();
        let buffer = Buffer::alloc(&backend, DType::F32, 3).unwrap();
        assert!(buffer.upload(&[0u8; 5]).unwrap_err().to_string().contains("5 bytes given"));
        assert!(buffer.to_vec::<i64>().unwrap_err().to_string().contains("float32"));
        buffer.fill(2.5).unwrap();
        assert_eq!(buffer.to_vec::<f32>().unwrap(), [2.5; 3]);
    }
}
