//! Freed buffers kept for reuse by later allocations of the same dtype and length.
//!
//! A compiled Keras function allocates the same buffers on every call and frees most of them
//! before it returns. Handing those back to the system allocator costs more than the kernels
//! that fill them: a large block is unmapped on free, and the next call's fresh pages each
//! fault and are zeroed by the kernel (about 4 ms for the 64 MiB result of `exp` over 2^24
//! floats). The contract lets `alloc` return unspecified content, so a freed buffer can be
//! handed out again as it is.
//!
//! What is kept is bounded: only buffers of at least [`MIN_RECYCLED_BYTES`] (small blocks are
//! cheap to allocate and plentiful), and never more bytes than the peak of live buffers seen so
//! far, so the memory held by a backend is at most twice its largest live set, and in steady
//! state (every freed buffer allocated again by the next call) the same as that set.

use std::collections::HashMap;

use keras_backend_api::DType;
use parking_lot::Mutex;

use crate::CpuStorage;

/// Buffers smaller than this go back to the allocator: for them `malloc` is as fast as a look-up
/// here, and keeping them would only hold memory.
pub const MIN_RECYCLED_BYTES: usize = 64 * 1024;

/// The freed buffers of one backend, by dtype and length, and the byte counts that bound them.
#[derive(Default)]
pub(crate) struct Recycler {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    free: HashMap<(DType, usize), Vec<CpuStorage>>,
    held_bytes: usize,
    live_bytes: usize,
    peak_live_bytes: usize,
}

impl Recycler {
    /// A kept buffer of `dtype` and `len` (its content unspecified), or `None`; either way
    /// `len` elements of `dtype` are counted live from now on.
    pub(crate) fn take(&self, dtype: DType, len: usize) -> Option<CpuStorage> {
        let bytes = len * dtype.size_in_bytes();
        let mut state = self.state.lock();
        state.live_bytes += bytes;
        state.peak_live_bytes = state.peak_live_bytes.max(state.live_bytes);
        if bytes < MIN_RECYCLED_BYTES {
            return None;
        }
        let storage = state.free.get_mut(&(dtype, len))?.pop()?;
        state.held_bytes -= bytes;
        Some(storage)
    }

    /// Counts a freed buffer of `dtype` and `len` as no longer live, and keeps its `storage`
    /// when there is room (`None` when a kernel still holds it: it goes when that kernel ends).
    pub(crate) fn give(&self, dtype: DType, len: usize, storage: Option<CpuStorage>) {
        let bytes = len * dtype.size_in_bytes();
        let mut state = self.state.lock();
        state.live_bytes -= bytes;
        let room = bytes >= MIN_RECYCLED_BYTES && state.held_bytes + bytes <= state.peak_live_bytes;
        if room && let Some(storage) = storage {
            state.held_bytes += bytes;
            state.free.entry((dtype, len)).or_default().push(storage);
        }
        // A buffer not kept is dropped after the guard (locals drop before parameters): its
        // memory goes back to the system without holding the lock.
    }

    /// Bytes held for reuse.
    pub(crate) fn held_bytes(&self) -> usize {
        self.state.lock().held_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEN: usize = MIN_RECYCLED_BYTES / 4;

    #[test]
    fn a_freed_buffer_is_handed_out_again_for_the_same_dtype_and_length_only() {
        let recycler = Recycler::default();
        assert!(recycler.take(DType::F32, LEN).is_none());
        recycler.give(DType::F32, LEN, Some(CpuStorage::zeros(DType::F32, LEN)));
        assert_eq!(recycler.held_bytes(), MIN_RECYCLED_BYTES);
        assert!(recycler.take(DType::I32, LEN).is_none(), "another dtype of the same size");
        assert!(recycler.take(DType::F32, LEN + 1).is_none(), "another length");
        assert_eq!(recycler.take(DType::F32, LEN), Some(CpuStorage::zeros(DType::F32, LEN)));
        assert_eq!(recycler.held_bytes(), 0);
    }

    #[test]
    fn small_buffers_and_buffers_beyond_the_live_peak_are_not_kept() {
        let recycler = Recycler::default();
        assert!(recycler.take(DType::F32, 4).is_none());
        recycler.give(DType::F32, 4, Some(CpuStorage::zeros(DType::F32, 4)));
        assert_eq!(recycler.held_bytes(), 0, "below MIN_RECYCLED_BYTES");

        // Peak: one buffer of LEN floats. Freed, it is kept; a second one of another length,
        // allocated and freed after it, would take the held bytes past the peak.
        assert!(recycler.take(DType::F32, LEN).is_none());
        recycler.give(DType::F32, LEN, Some(CpuStorage::zeros(DType::F32, LEN)));
        assert!(recycler.take(DType::F32, LEN / 2).is_none());
        recycler.give(DType::F32, LEN / 2, Some(CpuStorage::zeros(DType::F32, LEN / 2)));
        assert_eq!(recycler.held_bytes(), MIN_RECYCLED_BYTES);

        // A buffer still held by a kernel is counted freed but cannot be kept.
        assert!(recycler.take(DType::F64, LEN).is_none());
        recycler.give(DType::F64, LEN, None);
        assert_eq!(recycler.held_bytes(), MIN_RECYCLED_BYTES);
    }
}
