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
//! far. How much lower the bound sits depends on where a buffer let go of ends up:
//!
//! * With the system allocator, back in its heap or unmapped, so that the next allocation of
//!   its size faults in new pages. Buffers are kept while the held bytes alone stay within the
//!   peak: the memory held is at most twice the largest live set, and in steady state (every
//!   freed buffer allocated again by the next call) the same as that set.
//! * With a [`PageAllocator`](crate::pages::PageAllocator), in its pool, whose pages the next
//!   allocation of any size takes before mapping new ones. Buffers are then kept only while
//!   live and held bytes together stay within the peak, and an allocation that finds no buffer
//!   of its size first lets go of held ones until they do, newest first (in a training step,
//!   the ones the next step needs last). The memory held never exceeds the largest live set.

use std::collections::HashMap;

use keras_backend_api::DType;
use parking_lot::Mutex;

use crate::CpuStorage;

/// Buffers smaller than this go back to the allocator: for them `malloc` is as fast as a look-up
/// here, and keeping them would only hold memory.
pub const MIN_RECYCLED_BYTES: usize = 64 * 1024;

/// The freed buffers of one backend, by dtype and length, and the byte counts that bound them.
pub(crate) struct Recycler {
    /// Whether a buffer let go of leaves its pages to the next allocation of any size (the
    /// global allocator is a [`PageAllocator`](crate::pages::PageAllocator)).
    shares_pages: bool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Kept buffers with the order they were freed in.
    free: HashMap<(DType, usize), Vec<(u64, CpuStorage)>>,
    freed_count: u64,
    held_bytes: usize,
    live_bytes: usize,
    peak_live_bytes: usize,
}

impl Default for Recycler {
    fn default() -> Self {
        Recycler::new(crate::pages::is_global_allocator())
    }
}

impl Recycler {
    /// A recycler for an allocator that shares freed pages across sizes (`shares_pages`) or not.
    pub(crate) fn new(shares_pages: bool) -> Recycler {
        Recycler { shares_pages, state: Mutex::default() }
    }

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
        if let Some((_, storage)) = state.free.get_mut(&(dtype, len)).and_then(Vec::pop) {
            state.held_bytes -= bytes;
            return Some(storage);
        }
        if self.shares_pages {
            let peak = state.peak_live_bytes;
            let released = state.release_above(peak);
            // Their pages go to the allocator's pool before the caller allocates from it.
            drop(state);
            drop(released);
        }
        None
    }

    /// Counts a freed buffer of `dtype` and `len` as no longer live, and keeps its `storage`
    /// when there is room (`None` when a kernel still holds it: it goes when that kernel ends).
    pub(crate) fn give(&self, dtype: DType, len: usize, storage: Option<CpuStorage>) {
        let bytes = len * dtype.size_in_bytes();
        let mut state = self.state.lock();
        state.live_bytes -= bytes;
        let counted = if self.shares_pages { state.live_bytes + state.held_bytes } else { state.held_bytes };
        let room = bytes >= MIN_RECYCLED_BYTES && counted + bytes <= state.peak_live_bytes;
        if room && let Some(storage) = storage {
            state.held_bytes += bytes;
            state.freed_count += 1;
            let order = state.freed_count;
            state.free.entry((dtype, len)).or_default().push((order, storage));
        }
        // A buffer not kept is dropped after the guard (locals drop before parameters): its
        // memory goes back to the allocator without holding the lock.
    }

    /// Bytes held for reuse.
    pub(crate) fn held_bytes(&self) -> usize {
        self.state.lock().held_bytes
    }
}

impl State {
    /// Takes held buffers out, newest first, until live and held bytes fit in `limit`; the
    /// caller drops them once the lock is released.
    fn release_above(&mut self, limit: usize) -> Vec<CpuStorage> {
        let mut released = Vec::new();
        while self.live_bytes + self.held_bytes > limit {
            let newest = self.free.iter().filter_map(|(&key, kept)| Some((kept.last()?.0, key))).max();
            let Some((_, key)) = newest else { break };
            let Some((_, storage)) = self.free.get_mut(&key).and_then(Vec::pop) else { break };
            self.held_bytes -= key.1 * key.0.size_in_bytes();
            released.push(storage);
        }
        released
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEN: usize = MIN_RECYCLED_BYTES / 4;

    #[test]
    fn a_freed_buffer_is_handed_out_again_for_the_same_dtype_and_length_only() {
        let recycler = Recycler::new(false);
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
        let recycler = Recycler::new(false);
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

    #[test]
    fn with_shared_pages_a_miss_lets_go_of_the_newest_buffers_until_the_peak_holds() {
        for shares_pages in [false, true] {
            let recycler = Recycler::new(shares_pages);
            // Peak: 3 LEN floats live at once.
            assert!(recycler.take(DType::F32, LEN).is_none());
            assert!(recycler.take(DType::F32, 2 * LEN).is_none());
            recycler.give(DType::F32, LEN, Some(CpuStorage::zeros(DType::F32, LEN)));
            recycler.give(DType::F32, 2 * LEN, Some(CpuStorage::zeros(DType::F32, 2 * LEN)));
            assert_eq!(recycler.held_bytes(), 3 * MIN_RECYCLED_BYTES);
            // A size none is kept for: with shared pages, live and held bytes would pass the
            // peak, so the newest (2 LEN) goes; without, both stay.
            assert!(recycler.take(DType::I32, LEN).is_none());
            let held = if shares_pages { MIN_RECYCLED_BYTES } else { 3 * MIN_RECYCLED_BYTES };
            assert_eq!(recycler.held_bytes(), held, "shares_pages: {shares_pages}");
            assert!(recycler.take(DType::F32, LEN).is_some(), "the older buffer is kept either way");
            assert_eq!(recycler.take(DType::F32, 2 * LEN).is_some(), !shares_pages);
        }
    }
}
