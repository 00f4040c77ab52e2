//! Host memory for large allocations: whole pages that pass from freed buffers to the next
//! allocation of any size.
//!
//! The recycler (`recycle.rs`) hands a freed buffer to the next allocation of the same dtype
//! and length, which spares the page faults of fresh memory but keeps buffers of one size
//! idle while a buffer of another size is allocated fresh. In a training step, the batch and
//! the activations freed during the backward pass sit idle while the weights' gradients are
//! allocated, so the process holds more than its largest live set of tensors.
//!
//! [`PageAllocator`], installed as a plugin's global allocator, serves every allocation of at
//! least [`LARGE_BYTES`] from anonymous mappings of whole pages, and keeps freed ones in a
//! pool. An allocation takes pages from the pool first, whatever buffer they came from: the
//! front of the smallest run that holds it, or else several runs moved side by side into one
//! range with `mremap` (the kernel moves page-table entries; nothing is copied or faulted in
//! again). Fresh pages are mapped only for what the pool cannot give, so the large pages the
//! library holds never exceed the most it has had allocated at once (in whole pages). With the
//! pool present the recycler holds back no more than that peak either (see
//! [`is_global_allocator`]).
//!
//! Pages stay in the pool until the process ends, as the recycler's buffers did: the bound is
//! the peak, not the current use. Only a pool of `MAX_RUNS` separate runs unmaps what it cannot
//! file. On other systems than Linux everything goes to the system allocator.

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations of at least this many bytes are served from pages; smaller ones go to the
/// system allocator, for which they are cheap and plentiful.
pub const LARGE_BYTES: usize = 64 * 1024;

/// The global allocator of a plugin library: [`LARGE_BYTES`] and more from the page pool,
/// the rest from [`System`]. Declare it in the crate that builds the library:
///
/// ```
/// #[global_allocator]
/// static ALLOCATOR: backend_cpu::pages::PageAllocator = backend_cpu::pages::PageAllocator;
///
/// fn main() {
///     let buffer = vec![1.0f32; 1 << 20];
///     assert_eq!(backend_cpu::pages::is_global_allocator(), cfg!(target_os = "linux"));
///     drop(buffer);
///     # #[cfg(target_os = "linux")]
///     assert!(backend_cpu::pages::pooled_bytes() >= 4 << 20, "the buffer's pages are kept");
/// }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct PageAllocator;

/// Whether this library's global allocator is a [`PageAllocator`]: the recycler then lets go of
/// idle buffers as soon as they would raise the memory held above the peak of live buffers,
/// because their pages serve the next allocation of any size instead of faulting in new ones.
pub fn is_global_allocator() -> bool {
    imp::is_global_allocator()
}

/// Bytes of free pages held in the pool for the next large allocations.
pub fn pooled_bytes() -> usize {
    imp::pooled_bytes()
}

// SAFETY: small requests are forwarded to `System` unchanged; large ones get page-aligned runs
// of at least their size (rounded up to pages) that no other allocation overlaps until
// `dealloc` gives them back with the same layout, which classifies them the same way.
unsafe impl GlobalAlloc for PageAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match imp::large_bytes(layout) {
            Some(bytes) => imp::take(bytes).map_or(std::ptr::null_mut(), |taken| taken.pointer),
            // SAFETY: the caller's contract, forwarded.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match imp::large_bytes(layout) {
            Some(bytes) => imp::take(bytes).map_or(std::ptr::null_mut(), |taken| {
                // Pages moved from the pool hold their last owner's bytes; the fresh ones after
                // them are zero already.
                // SAFETY: the first `reused` bytes of the run are mapped and writable.
                unsafe { taken.pointer.write_bytes(0, taken.reused) };
                taken.pointer
            }),
            // SAFETY: the caller's contract, forwarded.
            None => unsafe { System.alloc_zeroed(layout) },
        }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        match imp::large_bytes(layout) {
            Some(bytes) => imp::give(pointer, bytes),
            // SAFETY: `pointer` came from `System` with this layout (classified the same way).
            None => unsafe { System.dealloc(pointer, layout) },
        }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees that the new size, with the old alignment, is a layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if imp::large_bytes(layout).is_none() && imp::large_bytes(new_layout).is_none() {
            // SAFETY: the caller's contract, forwarded; both sizes stay with `System`.
            return unsafe { System.realloc(pointer, layout, new_size) };
        }
        // SAFETY: `new_layout` is a valid layout with a nonzero size (the caller's contract).
        let moved = unsafe { self.alloc(new_layout) };
        if !moved.is_null() {
            // SAFETY: both blocks hold at least the smaller size and do not overlap; the old
            // one came from this allocator with `layout`.
            unsafe {
                std::ptr::copy_nonoverlapping(pointer, moved, layout.size().min(new_size));
                self.dealloc(pointer, layout);
            }
        }
        moved
    }
}

/// An allocation's pages: `pointer` to the bytes asked for (whole pages), of which the first
/// `reused` came from the pool (holding old bytes) and the rest are fresh (zero).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // never made without `mremap`
struct Taken {
    pointer: *mut u8,
    reused: usize,
}

#[cfg(target_os = "linux")]
mod imp {
    //! The pool and the system calls that map, move and unmap its pages.

    use std::{
        alloc::Layout,
        sync::{
            Mutex, MutexGuard, PoisonError,
            atomic::{AtomicUsize, Ordering},
        },
    };

    use super::{LARGE_BYTES, Taken};

    /// Most runs the pool keeps; a freed run beyond them is unmapped. The pool lives in a fixed
    /// array because the allocator cannot allocate for itself.
    pub(super) const MAX_RUNS: usize = 64;

    /// A range of whole pages, free in the pool or taken by an allocation.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub(super) struct Run {
        pub(super) start: usize,
        pub(super) bytes: usize,
    }

    impl Run {
        pub(super) fn end(self) -> usize {
            self.start + self.bytes
        }
    }

    /// The free runs, unordered.
    pub(super) struct Pool {
        runs: [Run; MAX_RUNS],
        count: usize,
        bytes: usize,
    }

    static POOL: Mutex<Pool> = Mutex::new(Pool::EMPTY);

    /// Large allocations served so far, for [`is_global_allocator`].
    static SERVED: AtomicUsize = AtomicUsize::new(0);

    fn pool() -> MutexGuard<'static, Pool> {
        // Nothing panics while holding the lock; a poisoned pool is still consistent.
        POOL.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn page_bytes() -> usize {
        static PAGE: AtomicUsize = AtomicUsize::new(0);
        match PAGE.load(Ordering::Relaxed) {
            0 => {
                // SAFETY: sysconf reads a constant of the system.
                let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096).max(1);
                PAGE.store(page, Ordering::Relaxed);
                page
            }
            page => page,
        }
    }

    /// The bytes of whole pages a layout takes from the pool, or `None` when it goes to the
    /// system allocator (too small, aligned beyond a page, or too large to round up).
    pub(super) fn large_bytes(layout: Layout) -> Option<usize> {
        let page = page_bytes();
        if layout.size() < LARGE_BYTES || layout.align() > page {
            return None;
        }
        layout.size().checked_next_multiple_of(page)
    }

    pub(super) fn take(bytes: usize) -> Option<Taken> {
        SERVED.fetch_add(1, Ordering::Relaxed);
        pool().take(bytes)
    }

    pub(super) fn give(pointer: *mut u8, bytes: usize) {
        let overflow = pool().give(Run { start: pointer as usize, bytes });
        if let Some(run) = overflow {
            unmap(run);
        }
    }

    pub(super) fn pooled_bytes() -> usize {
        pool().bytes
    }

    pub(super) fn is_global_allocator() -> bool {
        let before = SERVED.load(Ordering::Relaxed);
        let probe: Vec<u8> = Vec::with_capacity(LARGE_BYTES);
        let served = SERVED.load(Ordering::Relaxed) != before;
        drop(std::hint::black_box(probe));
        served
    }

    impl Pool {
        pub(super) const EMPTY: Pool = Pool { runs: [Run { start: 0, bytes: 0 }; MAX_RUNS], count: 0, bytes: 0 };

        /// `bytes` (whole pages) from the pool as far as it goes, the rest freshly mapped;
        /// `None` when the system has no memory for the fresh part.
        pub(super) fn take(&mut self, bytes: usize) -> Option<Taken> {
            let fitting = self.runs[..self.count]
                .iter()
                .enumerate()
                .filter(|(_, run)| run.bytes >= bytes)
                .min_by_key(|(_, run)| run.bytes)
                .map(|(index, _)| index);
            if let Some(index) = fitting {
                let start = self.runs[index].start;
                self.shorten(index, bytes);
                return Some(Taken { pointer: start as *mut u8, reused: bytes });
            }
            let destination = map(bytes)?;
            let mut filled = 0;
            while filled < bytes && self.count > 0 {
                let index = (0..self.count).max_by_key(|&i| self.runs[i].bytes).unwrap_or(0);
                let piece = Run { start: self.runs[index].start, bytes: self.runs[index].bytes.min(bytes - filled) };
                let moved = move_pages(piece, destination + filled);
                self.shorten(index, moved);
                filled += moved;
                if moved < piece.bytes {
                    // The rest of the destination stays fresh pages: correct, only slower.
                    break;
                }
            }
            Some(Taken { pointer: destination as *mut u8, reused: filled })
        }

        /// Takes `bytes` off the front of run `index`, dropping the run when nothing is left.
        fn shorten(&mut self, index: usize, bytes: usize) {
            let run = &mut self.runs[index];
            run.start += bytes;
            run.bytes -= bytes;
            self.bytes -= bytes;
            if run.bytes == 0 {
                self.count -= 1;
                self.runs[index] = self.runs[self.count];
            }
        }

        /// Puts a freed run in the pool, joined to the runs it touches; returns it when the
        /// pool is full, for the caller to unmap outside the lock.
        pub(super) fn give(&mut self, mut run: Run) -> Option<Run> {
            let mut index = 0;
            while index < self.count {
                let other = self.runs[index];
                if other.end() == run.start || run.end() == other.start {
                    run = Run { start: other.start.min(run.start), bytes: other.bytes + run.bytes };
                    self.bytes -= other.bytes;
                    self.count -= 1;
                    self.runs[index] = self.runs[self.count];
                } else {
                    index += 1;
                }
            }
            if self.count == MAX_RUNS {
                return Some(run);
            }
            self.runs[self.count] = run;
            self.count += 1;
            self.bytes += run.bytes;
            None
        }

        #[cfg(test)]
        pub(super) fn runs(&self) -> &[Run] {
            &self.runs[..self.count]
        }

        #[cfg(test)]
        pub(super) fn bytes(&self) -> usize {
            self.bytes
        }
    }

    /// `bytes` of fresh anonymous pages (none is touched, so none is resident yet).
    pub(super) fn map(bytes: usize) -> Option<usize> {
        // SAFETY: a new private anonymous mapping; it overlaps nothing of ours.
        let pointer = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        (pointer != libc::MAP_FAILED).then_some(pointer as usize)
    }

    pub(super) fn unmap(run: Run) {
        // SAFETY: the run is whole pages this allocator mapped and nothing uses any more. A
        // failure (impossible for a valid range) would only leave the pages mapped.
        unsafe { libc::munmap(run.start as *mut libc::c_void, run.bytes) };
    }

    /// Moves the pages of `piece` to `destination` (replacing the fresh pages there), keeping
    /// them resident, and returns how many bytes from its start were moved: all of them, or
    /// fewer when a move fails (the pages not moved stay where they were).
    fn move_pages(piece: Run, destination: usize) -> usize {
        move_in_halves(piece, destination, page_bytes(), &mut remap)
    }

    /// One `mremap` of `piece` to `destination`; the error number when it fails.
    fn remap(piece: Run, destination: usize) -> Result<(), i32> {
        // SAFETY: `piece` is whole free pages of the pool and `destination` whole fresh pages
        // of a mapping this allocator just made, so the move touches no memory in use.
        let moved = unsafe {
            libc::mremap(
                piece.start as *mut libc::c_void,
                piece.bytes,
                piece.bytes,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                destination as *mut libc::c_void,
            )
        };
        if moved == libc::MAP_FAILED {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        } else {
            Ok(())
        }
    }

    /// [`move_pages`] with its system call as `move_one`. A run joined from neighbouring runs
    /// may span several of the kernel's mappings, which kernels before 6.17 refuse to move in
    /// one call (`EFAULT`); it is then moved in halves, down to single pages.
    pub(super) fn move_in_halves(
        piece: Run,
        destination: usize,
        page: usize,
        move_one: &mut impl FnMut(Run, usize) -> Result<(), i32>,
    ) -> usize {
        match move_one(piece, destination) {
            Ok(()) => piece.bytes,
            Err(libc::EFAULT) if piece.bytes > page => {
                let half = (piece.bytes / 2).next_multiple_of(page);
                let first = move_in_halves(Run { start: piece.start, bytes: half }, destination, page, move_one);
                if first < half {
                    return first;
                }
                let rest = Run { start: piece.start + half, bytes: piece.bytes - half };
                half + move_in_halves(rest, destination + half, page, move_one)
            }
            Err(_) => 0,
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    //! Without `mremap`, large allocations stay with the system allocator.

    use std::alloc::Layout;

    use super::Taken;

    pub(super) fn large_bytes(_: Layout) -> Option<usize> {
        None
    }

    pub(super) fn take(_: usize) -> Option<Taken> {
        None
    }

    pub(super) fn give(_: *mut u8, _: usize) {}

    pub(super) fn pooled_bytes() -> usize {
        0
    }

    pub(super) fn is_global_allocator() -> bool {
        false
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::{
        Taken,
        imp::{MAX_RUNS, Pool, Run, map, move_in_halves, page_bytes, unmap},
    };

    fn filled(run: Run, value: u8) -> Run {
        // SAFETY: the run is mapped, writable and used by this test only.
        unsafe { std::slice::from_raw_parts_mut(run.start as *mut u8, run.bytes) }.fill(value);
        run
    }

    /// Checks that `taken` holds, page after page, these (byte value, page count) stretches,
    /// then unmaps it.
    fn check_and_unmap(taken: Taken, stretches: &[(u8, usize)]) {
        let page = page_bytes();
        let expected: Vec<u8> = stretches.iter().flat_map(|&(value, pages)| vec![value; pages * page]).collect();
        // SAFETY: the taken run is mapped for at least the bytes it was asked for.
        let found = unsafe { std::slice::from_raw_parts(taken.pointer, expected.len()) };
        assert!(found == expected, "the run does not hold {stretches:?}");
        unmap(Run { start: taken.pointer as usize, bytes: expected.len() });
    }

    fn fresh(bytes: usize) -> Run {
        Run { start: map(bytes).expect("mmap"), bytes }
    }

    /// Fresh runs of these many pages, with an unmapped page after each so that none touches
    /// another (the kernel places new mappings side by side).
    fn fresh_apart(pages: &[usize]) -> Vec<Run> {
        let page = page_bytes();
        let whole = fresh(pages.iter().map(|n| (n + 1) * page).sum());
        let mut start = whole.start;
        let mut runs = Vec::new();
        for &n in pages {
            runs.push(Run { start, bytes: n * page });
            unmap(Run { start: start + n * page, bytes: page });
            start += (n + 1) * page;
        }
        runs
    }

    #[test]
    fn an_allocation_takes_the_front_of_the_smallest_run_that_holds_it() {
        let page = page_bytes();
        let mut pool = Pool::EMPTY;
        let [big, small] = fresh_apart(&[8, 3])[..] else { unreachable!() };
        let (big, small) = (filled(big, 1), filled(small, 2));
        assert_eq!(pool.give(big), None);
        assert_eq!(pool.give(small), None);
        let taken = pool.take(2 * page).expect("from the pool");
        assert_eq!((taken.pointer as usize, taken.reused), (small.start, 2 * page));
        assert_eq!(pool.bytes(), 9 * page);
        assert!(pool.runs().contains(&Run { start: small.start + 2 * page, bytes: page }));
        pool.give(Run { start: taken.pointer as usize, bytes: 2 * page });
        assert!(pool.runs().contains(&small), "joined again: {:?}", pool.runs());
        for run in pool.runs().to_vec() {
            unmap(run);
        }
    }

    #[test]
    fn runs_too_small_alone_are_moved_side_by_side_then_fresh_pages_follow() {
        let page = page_bytes();
        let mut pool = Pool::EMPTY;
        // Three separate mappings, none holding six pages.
        for (run, value) in fresh_apart(&[2, 3, 1]).into_iter().zip([7, 8, 9]) {
            pool.give(filled(run, value));
        }
        let taken = pool.take(8 * page).expect("joined");
        assert_eq!(taken.reused, 6 * page);
        assert_eq!(pool.bytes(), 0);
        // Largest first: the three-page run, then the two-page one, then the last page; then
        // two fresh (zero) pages.
        check_and_unmap(taken, &[(8, 3), (7, 2), (9, 1), (0, 2)]);
    }

    #[test]
    fn a_joined_run_that_spans_mappings_still_moves() {
        let page = page_bytes();
        let mut pool = Pool::EMPTY;
        // Two neighbouring runs of different mappings: the second half of one mapping and the
        // first half of the next (the gap between them unmapped, then mapped again). Kernels
        // since 6.17 move both in one `mremap`; older ones refuse, and it moves in halves.
        let whole = fresh(8 * page);
        unmap(Run { start: whole.start + 4 * page, bytes: 4 * page });
        let first = filled(Run { start: whole.start, bytes: 4 * page }, 3);
        // SAFETY: a fixed private mapping over pages this test just unmapped.
        let second = unsafe {
            libc::mmap(
                (whole.start + 4 * page) as *mut libc::c_void,
                4 * page,
                libc::PROT_READ | libc::PROT_WRITE,
                // Another flag than the first mapping's, so that the kernel keeps them apart.
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(second, libc::MAP_FAILED);
        let second = filled(Run { start: second as usize, bytes: 4 * page }, 4);
        pool.give(first);
        pool.give(second);
        assert_eq!(pool.runs(), [whole], "the two runs are joined in the pool");
        let taken = pool.take(16 * page).expect("joined");
        assert_eq!(taken.reused, 8 * page, "both halves moved");
        check_and_unmap(taken, &[(3, 4), (4, 4), (0, 8)]);
    }

    #[test]
    fn a_run_one_call_cannot_move_is_moved_in_halves_up_to_a_failure() {
        const PAGE: usize = 4096;
        // A fake kernel: mappings begin at pages 3 and 6 of an eight-page run (a move across
        // either fails with EFAULT), and the last page cannot be moved at all (ENOMEM).
        let run = Run { start: 100 * PAGE, bytes: 8 * PAGE };
        let mut moves = Vec::new();
        let mut fake = |piece: Run, destination: usize| {
            let (first, last) = ((piece.start - run.start) / PAGE, (piece.end() - run.start) / PAGE - 1);
            if [3, 6].iter().any(|&boundary| first < boundary && last >= boundary) {
                return Err(libc::EFAULT);
            }
            if last == 7 {
                return Err(libc::ENOMEM);
            }
            moves.push((first, last + 1, destination));
            Ok(())
        };
        let moved = move_in_halves(run, 0, PAGE, &mut fake);
        // The first half splits into 2 + 1 + 1 pages at the first boundary, the second half's
        // front two pages move, and its last two, which fail for another reason than a
        // boundary, are not split further: the move stops there.
        assert_eq!(moved, 6 * PAGE);
        assert_eq!(moves, [(0, 2, 0), (2, 3, 2 * PAGE), (3, 4, 3 * PAGE), (4, 6, 4 * PAGE)]);
    }

    #[test]
    fn a_full_pool_hands_the_run_back_to_be_unmapped() {
        let page = page_bytes();
        let mut pool = Pool::EMPTY;
        // Every other page of one mapping, so that no two runs touch.
        let whole = fresh(2 * (MAX_RUNS + 1) * page);
        for index in 0..MAX_RUNS {
            assert_eq!(pool.give(Run { start: whole.start + 2 * index * page, bytes: page }), None);
        }
        let last = Run { start: whole.start + 2 * MAX_RUNS * page, bytes: page };
        assert_eq!(pool.give(last), Some(last));
        assert_eq!(pool.bytes(), MAX_RUNS * page);
        unmap(whole);
    }
}
