//! Buffers in host memory: typed storage, the handle table, and lock ordering.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use half::f16;
use keras_backend_api::{BackendError, BufferId, DType};
use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::{Result, recycle::Recycler};

/// The elements of one buffer, typed. `Bool` is stored as `bool` (one byte, always 0 or 1).
#[derive(Clone, Debug, PartialEq)]
pub enum CpuStorage {
    /// `float16`.
    F16(Vec<f16>),
    /// `float32`.
    F32(Vec<f32>),
    /// `float64`.
    F64(Vec<f64>),
    /// `int32`.
    I32(Vec<i32>),
    /// `int64`.
    I64(Vec<i64>),
    /// `uint8`.
    U8(Vec<u8>),
    /// `bool`.
    Bool(Vec<bool>),
}

/// Runs `$body` with `$v` bound to the typed vector (or slice) inside a [`CpuStorage`].
#[macro_export]
macro_rules! with_storage {
    ($storage:expr, $v:ident => $body:expr) => {
        match $storage {
            $crate::CpuStorage::F16($v) => $body,
            $crate::CpuStorage::F32($v) => $body,
            $crate::CpuStorage::F64($v) => $body,
            $crate::CpuStorage::I32($v) => $body,
            $crate::CpuStorage::I64($v) => $body,
            $crate::CpuStorage::U8($v) => $body,
            $crate::CpuStorage::Bool($v) => $body,
        }
    };
}

impl CpuStorage {
    /// `len` zero elements of `dtype`.
    pub fn zeros(dtype: DType, len: usize) -> CpuStorage {
        match dtype {
            DType::F16 => CpuStorage::F16(vec![f16::ZERO; len]),
            DType::F32 => CpuStorage::F32(vec![0.0; len]),
            DType::F64 => CpuStorage::F64(vec![0.0; len]),
            DType::I32 => CpuStorage::I32(vec![0; len]),
            DType::I64 => CpuStorage::I64(vec![0; len]),
            DType::U8 => CpuStorage::U8(vec![0; len]),
            DType::Bool => CpuStorage::Bool(vec![false; len]),
        }
    }

    /// [`CpuStorage::zeros`], or `None` when the memory cannot be allocated: a buffer of a
    /// size the user chose must be an out-of-memory error, not an aborted process (what an
    /// infallible allocation does).
    pub fn try_zeros(dtype: DType, len: usize) -> Option<CpuStorage> {
        Some(match dtype {
            DType::F16 => CpuStorage::F16(zeroed_vec(len)?),
            DType::F32 => CpuStorage::F32(zeroed_vec(len)?),
            DType::F64 => CpuStorage::F64(zeroed_vec(len)?),
            DType::I32 => CpuStorage::I32(zeroed_vec(len)?),
            DType::I64 => CpuStorage::I64(zeroed_vec(len)?),
            DType::U8 => CpuStorage::U8(zeroed_vec(len)?),
            DType::Bool => CpuStorage::Bool(zeroed_vec(len)?),
        })
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            CpuStorage::F16(_) => DType::F16,
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::F64(_) => DType::F64,
            CpuStorage::I32(_) => DType::I32,
            CpuStorage::I64(_) => DType::I64,
            CpuStorage::U8(_) => DType::U8,
            CpuStorage::Bool(_) => DType::Bool,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        with_storage!(self, v => v.len())
    }

    /// `true` when the buffer holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks that a host buffer of `given` bytes holds exactly this buffer's elements.
    fn check_byte_len(&self, what: &str, given: usize) -> Result<()> {
        let expected = self.len() * self.dtype().size_in_bytes();
        if given != expected {
            return Err(BackendError::invalid(format!(
                "{what}: {given} bytes given for a buffer of {} {} ({expected} bytes)",
                self.len(),
                self.dtype()
            )));
        }
        Ok(())
    }

    /// Overwrites the elements from little-endian host bytes.
    pub fn copy_from_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.check_byte_len("upload", bytes.len())?;
        match self {
            CpuStorage::Bool(v) => {
                if let Some(bad) = bytes.iter().find(|&&b| b > 1) {
                    return Err(BackendError::invalid(format!(
                        "upload: bool buffer given the byte {bad}; bools are 0 or 1"
                    )));
                }
                v.iter_mut().zip(bytes).for_each(|(d, &b)| *d = b == 1);
            }
            CpuStorage::F16(v) => bytemuck::cast_slice_mut::<f16, u8>(v).copy_from_slice(bytes),
            CpuStorage::F32(v) => bytemuck::cast_slice_mut::<f32, u8>(v).copy_from_slice(bytes),
            CpuStorage::F64(v) => bytemuck::cast_slice_mut::<f64, u8>(v).copy_from_slice(bytes),
            CpuStorage::I32(v) => bytemuck::cast_slice_mut::<i32, u8>(v).copy_from_slice(bytes),
            CpuStorage::I64(v) => bytemuck::cast_slice_mut::<i64, u8>(v).copy_from_slice(bytes),
            CpuStorage::U8(v) => v.copy_from_slice(bytes),
        }
        Ok(())
    }

    /// Writes the elements as little-endian host bytes.
    pub fn copy_to_bytes(&self, bytes: &mut [u8]) -> Result<()> {
        self.check_byte_len("download", bytes.len())?;
        match self {
            CpuStorage::Bool(v) => bytes.iter_mut().zip(v).for_each(|(d, &b)| *d = u8::from(b)),
            CpuStorage::F16(v) => bytes.copy_from_slice(bytemuck::cast_slice(v)),
            CpuStorage::F32(v) => bytes.copy_from_slice(bytemuck::cast_slice(v)),
            CpuStorage::F64(v) => bytes.copy_from_slice(bytemuck::cast_slice(v)),
            CpuStorage::I32(v) => bytes.copy_from_slice(bytemuck::cast_slice(v)),
            CpuStorage::I64(v) => bytes.copy_from_slice(bytemuck::cast_slice(v)),
            CpuStorage::U8(v) => bytes.copy_from_slice(v),
        }
        Ok(())
    }
}

/// `len` zeros, allocated zeroed as `vec![0; len]` does (fresh pages from the operating system
/// need no writing) but returning `None` when the allocation fails.
fn zeroed_vec<T: bytemuck::Zeroable>(len: usize) -> Option<Vec<T>> {
    let layout = std::alloc::Layout::array::<T>(len).ok()?;
    if layout.size() == 0 {
        return Some((0..len).map(|_| T::zeroed()).collect());
    }
    // SAFETY: the layout's size is not zero.
    let pointer = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<T>();
    if pointer.is_null() {
        return None;
    }
    // SAFETY: `pointer` comes from the global allocator with the layout of `len` values of `T`
    // (so capacity and length are `len`), and all-zero bytes are a valid `T` (`Zeroable`).
    Some(unsafe { Vec::from_raw_parts(pointer, len, len) })
}

type Slot = Arc<RwLock<CpuStorage>>;

/// The handle table of a CPU backend.
///
/// Each buffer has its own read-write lock, so kernels on different outputs run concurrently.
/// A kernel locks every buffer it touches in ascending handle order, which rules out deadlock
/// between two kernels that read each other's outputs.
///
/// Freed buffers go to a recycler (`recycle.rs`) and are handed out again by later allocations of the same
/// dtype and length, content unspecified as the contract allows.
#[derive(Default)]
pub struct BufferStore {
    slots: RwLock<HashMap<u64, Slot>>,
    next_id: AtomicU64,
    recycler: Recycler,
}

impl BufferStore {
    /// Allocates a buffer of `len` elements of `dtype`: a freed one of that size when one is
    /// kept (its content unspecified, as the contract allows), else zeros.
    pub fn alloc(&self, dtype: DType, len: usize) -> Result<BufferId> {
        if len.checked_mul(dtype.size_in_bytes()).is_none_or(|bytes| bytes > isize::MAX as usize) {
            return Err(BackendError::new(
                keras_backend_api::ErrorKind::OutOfMemory,
                format!("alloc: {len} elements of {dtype} do not fit in memory"),
            ));
        }
        let storage = match self.recycler.take(dtype, len) {
            Some(storage) => storage,
            None => CpuStorage::try_zeros(dtype, len).ok_or_else(|| {
                self.recycler.give(dtype, len, None);
                BackendError::new(
                    keras_backend_api::ErrorKind::OutOfMemory,
                    format!("alloc: {len} elements of {dtype} ({} bytes): out of memory", len * dtype.size_in_bytes()),
                )
            })?,
        };
        #[cfg(debug_assertions)]
        let storage = poisoned(storage);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.slots.write().insert(id, Arc::new(RwLock::new(storage)));
        Ok(BufferId(id))
    }

    /// Removes a buffer; its memory is kept for reuse or freed when the last kernel using it
    /// finishes.
    pub fn free(&self, id: BufferId) -> Result<()> {
        let slot = self.slots.write().remove(&id.0).ok_or_else(|| unknown(id, "free"))?;
        let (dtype, len) = {
            let storage = slot.read();
            (storage.dtype(), storage.len())
        };
        // A kernel that still holds the slot drops the storage when it ends.
        self.recycler.give(dtype, len, Arc::try_unwrap(slot).ok().map(RwLock::into_inner));
        Ok(())
    }

    /// Bytes of freed buffers held for reuse (at most the peak of live bytes so far).
    pub fn recycled_bytes(&self) -> usize {
        self.recycler.held_bytes()
    }

    /// Number of live buffers.
    pub fn len(&self) -> usize {
        self.slots.read().len()
    }

    /// `true` when no buffer is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn slot(&self, id: BufferId, kernel: &str) -> Result<Slot> {
        self.slots.read().get(&id.0).cloned().ok_or_else(|| unknown(id, kernel))
    }

    /// Runs `body` with shared access to `inputs` and exclusive access to `out`.
    ///
    /// `out` may also appear among `inputs` only when `allow_alias` is set; `body` then receives
    /// `None` in that input's place and must read the values from `out` (in-place kernels).
    pub fn with_buffers<R>(
        &self,
        kernel: &str,
        inputs: &[BufferId],
        out: BufferId,
        allow_alias: bool,
        body: impl FnOnce(&[Option<&CpuStorage>], &mut CpuStorage) -> Result<R>,
    ) -> Result<R> {
        if !allow_alias && inputs.contains(&out) {
            return Err(BackendError::invalid(format!(
                "{kernel}: the output buffer {} is also an input; this kernel cannot work in place",
                out.0
            )));
        }
        let mut ids: Vec<BufferId> = inputs.iter().copied().chain([out]).collect();
        ids.sort_unstable();
        ids.dedup();
        let slots = ids.iter().map(|&id| self.slot(id, kernel)).collect::<Result<Vec<_>>>()?;
        enum Guard<'a> {
            Read(RwLockReadGuard<'a, CpuStorage>),
            Write(RwLockWriteGuard<'a, CpuStorage>),
        }
        // Locks taken in ascending handle order (see the type's docs).
        let mut guards: Vec<Guard<'_>> = ids
            .iter()
            .zip(&slots)
            .map(|(&id, slot)| if id == out { Guard::Write(slot.write()) } else { Guard::Read(slot.read()) })
            .collect();
        let out_pos = ids.iter().position(|&id| id == out).expect("out was pushed into ids");
        let Guard::Write(out_guard) = guards.remove(out_pos) else { unreachable!("out is write-locked") };
        let mut out_guard = out_guard;
        let reads: Vec<(BufferId, &CpuStorage)> = ids
            .iter()
            .filter(|&&id| id != out)
            .zip(&guards)
            .map(|(&id, g)| match g {
                Guard::Read(r) => (id, &**r),
                Guard::Write(_) => unreachable!("only out is write-locked"),
            })
            .collect();
        let views: Vec<Option<&CpuStorage>> =
            inputs.iter().map(|id| reads.iter().find(|(rid, _)| rid == id).map(|(_, s)| *s)).collect();
        body(&views, &mut out_guard)
    }

    /// Runs `body` with exclusive access to one buffer.
    pub fn with_buffer_mut<R>(
        &self,
        kernel: &str,
        id: BufferId,
        body: impl FnOnce(&mut CpuStorage) -> Result<R>,
    ) -> Result<R> {
        let slot = self.slot(id, kernel)?;
        let mut guard = slot.write();
        body(&mut guard)
    }

    /// Runs `body` with shared access to one buffer.
    pub fn with_buffer<R>(&self, kernel: &str, id: BufferId, body: impl FnOnce(&CpuStorage) -> Result<R>) -> Result<R> {
        let slot = self.slot(id, kernel)?;
        let guard = slot.read();
        body(&guard)
    }
}

/// `storage` with every element set to a value no kernel computes by chance (NaN, the most
/// negative integer, `true`): debug builds hand out buffers so that a kernel relying on zeroed
/// memory, which the contract does not promise, fails the tests.
#[cfg(debug_assertions)]
fn poisoned(mut storage: CpuStorage) -> CpuStorage {
    match &mut storage {
        CpuStorage::F16(v) => v.fill(f16::NAN),
        CpuStorage::F32(v) => v.fill(f32::NAN),
        CpuStorage::F64(v) => v.fill(f64::NAN),
        CpuStorage::I32(v) => v.fill(i32::MIN),
        CpuStorage::I64(v) => v.fill(i64::MIN),
        CpuStorage::U8(v) => v.fill(0xA5),
        CpuStorage::Bool(v) => v.fill(true),
    }
    storage
}

fn unknown(id: BufferId, kernel: &str) -> BackendError {
    BackendError::invalid(format!("{kernel}: unknown buffer handle {} (never allocated, or already freed)", id.0))
}

/// Runs `$body` with `$x` and `$y` bound to the typed vectors of two storages of the same dtype,
/// or evaluates to an `InvalidArgument` error naming `$kernel` and both dtypes.
#[macro_export]
macro_rules! with_same_dtype {
    ($kernel:expr, ($a:expr, $b:expr), ($x:ident, $y:ident) => $body:expr) => {
        match ($a, $b) {
            ($crate::CpuStorage::F16($x), $crate::CpuStorage::F16($y)) => $body,
            ($crate::CpuStorage::F32($x), $crate::CpuStorage::F32($y)) => $body,
            ($crate::CpuStorage::F64($x), $crate::CpuStorage::F64($y)) => $body,
            ($crate::CpuStorage::I32($x), $crate::CpuStorage::I32($y)) => $body,
            ($crate::CpuStorage::I64($x), $crate::CpuStorage::I64($y)) => $body,
            ($crate::CpuStorage::U8($x), $crate::CpuStorage::U8($y)) => $body,
            ($crate::CpuStorage::Bool($x), $crate::CpuStorage::Bool($y)) => $body,
            (a, b) => Err($crate::storage::dtype_mismatch($kernel, a.dtype(), b.dtype())),
        }
    };
}

/// Runs `$body` with `$x` and `$y` bound to two `F32` or two `F64` vectors, or evaluates to an
/// error (`Unsupported` for other float/integer dtypes, `InvalidArgument` for a mismatch).
#[macro_export]
macro_rules! with_float_pair {
    ($kernel:expr, ($a:expr, $b:expr), ($x:ident, $y:ident) => $body:expr) => {
        match ($a, $b) {
            ($crate::CpuStorage::F32($x), $crate::CpuStorage::F32($y)) => $body,
            ($crate::CpuStorage::F64($x), $crate::CpuStorage::F64($y)) => $body,
            (a, b) if a.dtype() == b.dtype() => Err($crate::storage::unsupported_dtype($kernel, a.dtype())),
            (a, b) => Err($crate::storage::dtype_mismatch($kernel, a.dtype(), b.dtype())),
        }
    };
}

/// The error for a kernel that does not run on `dtype` here (the host may decompose it).
#[cold]
pub fn unsupported_dtype(kernel: &str, dtype: DType) -> BackendError {
    BackendError::unsupported(format!("{kernel} on {dtype}"))
}

/// The error for two tensors that must share a dtype and do not.
#[cold]
pub fn dtype_mismatch(kernel: &str, a: DType, b: DType) -> BackendError {
    BackendError::invalid(format!("{kernel}: dtypes differ ({a} and {b}); this kernel needs them equal"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_every_dtype() {
        for dtype in DType::ALL {
            let mut s = CpuStorage::zeros(dtype, 3);
            let n = 3 * dtype.size_in_bytes();
            let bytes: Vec<u8> = (0..n).map(|i| if dtype == DType::Bool { (i % 2) as u8 } else { i as u8 }).collect();
            s.copy_from_bytes(&bytes).unwrap();
            let mut back = vec![0u8; n];
            s.copy_to_bytes(&mut back).unwrap();
            assert_eq!(back, bytes, "{dtype}");
        }
    }

    #[test]
    fn a_buffer_larger_than_memory_is_an_error_not_an_abort() {
        let store = BufferStore::default();
        // 2^60 bytes: a valid size that no machine can allocate.
        let error = store.alloc(DType::F64, 1 << 57).unwrap_err();
        assert_eq!(error.kind, keras_backend_api::ErrorKind::OutOfMemory);
        assert!(error.message.contains("out of memory"), "{}", error.message);
        assert_eq!(store.len(), 0);
        let id = store.alloc(DType::Bool, 3).unwrap();
        assert_eq!(store.with_buffer("t", id, |s| Ok(s.len())).unwrap(), 3);
        assert_eq!(CpuStorage::try_zeros(DType::F16, 0), Some(CpuStorage::zeros(DType::F16, 0)));
    }

    #[test]
    fn bad_bytes_are_refused() {
        let mut s = CpuStorage::zeros(DType::Bool, 2);
        assert!(s.copy_from_bytes(&[0, 2]).unwrap_err().message.contains("byte 2"));
        assert!(s.copy_from_bytes(&[0]).is_err());
    }

    #[test]
    fn store_tracks_live_buffers_and_aliasing() {
        let store = BufferStore::default();
        let a = store.alloc(DType::F32, 4).unwrap();
        let b = store.alloc(DType::F32, 4).unwrap();
        assert_eq!(store.len(), 2);
        assert!(store.with_buffers("k", &[a], a, false, |_, _| Ok(())).is_err());
        let saw_alias =
            store.with_buffers("k", &[b, a], a, true, |ins, _| Ok(ins[1].is_none() && ins[0].is_some())).unwrap();
        assert!(saw_alias);
        store.free(a).unwrap();
        assert!(store.free(a).unwrap_err().message.contains("unknown buffer"));
        assert_eq!(store.len(), 1);
    }
}
