//! Timing a prepared workload and reading the process's peak memory.

use std::time::{Duration, Instant};

use keras::Result;

use super::workloads::Prepared;

/// Timed calls without `--repeats`: at least this many...
const MIN_REPEATS: usize = 5;
/// ...and more until this much time is spent timing...
const TIME_BUDGET: Duration = Duration::from_secs(1);
/// ...but never more than this many.
const MAX_REPEATS: usize = 200;

/// The times of the timed calls of one workload.
#[derive(Clone, Debug, PartialEq)]
pub struct Timing {
    /// Untimed calls made first (the first one specialises and plans the graph).
    pub warmup: usize,
    /// Timed calls.
    pub repeats: usize,
    /// Median seconds per timed call.
    pub median_s: f64,
    /// Fastest timed call, in seconds.
    pub min_s: f64,
    /// Slowest timed call, in seconds.
    pub max_s: f64,
}

/// Calls `prepared` `warmup` times, then times `repeats` calls (or, with `None`, between
/// [`MIN_REPEATS`] and [`MAX_REPEATS`] calls, stopping once [`TIME_BUDGET`] is spent). Each
/// call is [`Prepared::call`]: the function and the read-back of its fence, so that a call on
/// an asynchronous (GPU) backend is timed until its kernels are done, not until they are queued.
pub fn time_calls(prepared: &Prepared, warmup: usize, repeats: Option<usize>) -> Result<Timing> {
    for _ in 0..warmup {
        prepared.call()?;
    }
    let mut times = Vec::new();
    let started = Instant::now();
    loop {
        let done = match repeats {
            Some(n) => times.len() >= n,
            None => times.len() >= MAX_REPEATS || (times.len() >= MIN_REPEATS && started.elapsed() >= TIME_BUDGET),
        };
        if done {
            break;
        }
        let call = Instant::now();
        prepared.call()?;
        times.push(call.elapsed().as_secs_f64());
    }
    let (median_s, min_s, max_s) = summary(&mut times);
    Ok(Timing { warmup, repeats: times.len(), median_s, min_s, max_s })
}

/// Median (the mean of the middle two for an even count), minimum and maximum; NaN for none.
fn summary(times: &mut [f64]) -> (f64, f64, f64) {
    if times.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    times.sort_by(f64::total_cmp);
    let n = times.len();
    let median = if n % 2 == 1 { times[n / 2] } else { (times[n / 2 - 1] + times[n / 2]) / 2.0 };
    (median, times[0], times[n - 1])
}

/// The process's peak resident set size (`VmHWM` of `/proc/self/status`), where the system
/// reports it: since the process started, or since [`reset_peak_rss`].
pub fn peak_rss_bytes() -> Option<u64> {
    status_bytes("VmHWM:")
}

/// The process's resident set size now (`VmRSS`), where the system reports it.
pub fn rss_bytes() -> Option<u64> {
    status_bytes("VmRSS:")
}

/// Starts [`peak_rss_bytes`] again from the current RSS (Linux's `clear_refs`, value 5);
/// `false` where the system does not support it.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The process's anonymous resident memory now (`RssAnon`: heap, stacks and anonymous maps,
/// where tensors live), where the system reports it.
pub fn anon_rss_bytes() -> Option<u64> {
    status_bytes("RssAnon:")
}

/// The process's resident file-backed and shared memory now (`RssFile` + `RssShmem`: mapped
/// code and data of the executable and the libraries, the backend plugin's kernels among
/// them), where the system reports it.
pub fn mapped_rss_bytes() -> Option<u64> {
    Some(status_bytes("RssFile:")? + status_bytes("RssShmem:")?)
}

/// A `kB` field of `/proc/self/status`, in bytes.
fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.trim_start_matches(field).trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// The memory of a long run of one function ([`soak`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Soak {
    /// Calls timed after the warm-up.
    pub steps: usize,
    /// Anonymous memory the set-up and the warm-up had freed but the C heap still held, handed
    /// back to the system before the run ([`release_free_heap`]); `None` where that is not
    /// possible.
    pub heap_released: Option<u64>,
    /// Whether every mapped file was made resident before the run ([`populate_mapped_files`]),
    /// so that mapped RSS stays constant and [`peak_anon_rss`](Self::peak_anon_rss) is exact.
    pub mapped_populated: bool,
    /// RSS once the warm-up calls are done.
    pub rss_after_warmup: Option<u64>,
    /// RSS after the last call.
    pub rss_after_steps: Option<u64>,
    /// Peak RSS over the timed calls (the warm-up excluded), where it could be reset.
    pub peak_rss: Option<u64>,
    /// File-backed and shared RSS ([`mapped_rss_bytes`]) once the warm-up calls are done.
    pub mapped_rss_after_warmup: Option<u64>,
    /// The same after the last call.
    pub mapped_rss_after_steps: Option<u64>,
    /// The most anonymous memory the timed calls held: [`peak_rss`](Self::peak_rss) less the
    /// mapped pages resident after the warm-up. Linux keeps no peak of `RssAnon`, but mapped
    /// pages only grow while memory is plentiful, so at the peak they were at least as many
    /// as after the warm-up: the figure is an upper bound, and exact when they did not grow
    /// (with [`mapped_populated`](Self::mapped_populated), they cannot). `None` when they
    /// shrank during the run (pages were reclaimed, and the bound does not hold).
    pub peak_anon_rss: Option<u64>,
}

/// Calls `prepared` `warmup` times, returns the heap the set-up freed to the system, makes the
/// mapped files resident, resets the peak RSS, then times `steps` calls: whether memory stays
/// flat over a long run, and the most it holds once the run is steady.
pub fn soak(prepared: &Prepared, warmup: usize, steps: usize) -> Result<(Timing, Soak)> {
    for _ in 0..warmup {
        prepared.call()?;
    }
    let heap_released = release_free_heap();
    let mapped_populated = populate_mapped_files();
    let reset = reset_peak_rss();
    let rss_after_warmup = rss_bytes();
    let mapped_rss_after_warmup = mapped_rss_bytes();
    let timing = Timing { warmup, ..time_calls(prepared, 0, Some(steps))? };
    let peak_rss = if reset { peak_rss_bytes() } else { None };
    let mapped_rss_after_steps = mapped_rss_bytes();
    let peak_anon_rss = match (peak_rss, mapped_rss_after_warmup, mapped_rss_after_steps) {
        (Some(peak), Some(before), Some(after)) if after >= before => Some(peak.saturating_sub(before)),
        _ => None,
    };
    let soak = Soak {
        steps,
        heap_released,
        mapped_populated,
        rss_after_warmup,
        rss_after_steps: rss_bytes(),
        peak_rss,
        mapped_rss_after_warmup,
        mapped_rss_after_steps,
        peak_anon_rss,
    };
    Ok((timing, soak))
}

/// Hands the C heap's free pages back to the system (glibc's `malloc_trim`) and returns how
/// much anonymous memory that released; `None` where there is no such call.
///
/// Building a model frees host memory (the arrays its weights are uploaded from) that the C
/// heap keeps in place of returning it, whoever allocates next; a long run measured after
/// that would count the set-up's leftovers as the run's. What is released is reported beside
/// the figures, not hidden.
pub fn release_free_heap() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let before = anon_rss_bytes()?;
        // SAFETY: malloc_trim only returns free pages of glibc's heaps to the system.
        unsafe { libc::malloc_trim(0) };
        Some(before.saturating_sub(anon_rss_bytes()?))
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

/// Makes every page of every mapped file resident (`MADV_POPULATE_READ`), so that the mapped
/// RSS cannot grow during a run and the anonymous peak is the peak RSS less it, exactly.
/// Without this, code that a run reaches for the first time, and the pages the kernel maps
/// around it, are counted as anonymous memory at the peak. `false` where a mapping could not
/// be populated (older kernels), leaving [`Soak::peak_anon_rss`] an upper bound.
pub fn populate_mapped_files() -> bool {
    #[cfg(target_os = "linux")]
    {
        let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else { return false };
        let mut all = true;
        for line in maps.lines() {
            let mut fields = line.split_whitespace();
            let (Some(range), Some(permissions), Some(path)) = (fields.next(), fields.next(), fields.nth(3)) else {
                continue;
            };
            // Gaps a library reserves without access (`---p`) have no pages to read in.
            if !path.starts_with('/') || !permissions.starts_with('r') {
                continue;
            }
            let Some((start, end)) = range.split_once('-') else { continue };
            let (Ok(start), Ok(end)) = (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16)) else {
                continue;
            };
            // SAFETY: populating reads pages of a mapping of this process into memory; it does
            // not change their contents or the mapping.
            let done = unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_POPULATE_READ) };
            all &= done == 0;
        }
        all
    }
    #[cfg(not(target_os = "linux"))]
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_takes_the_middle_of_sorted_times() {
        assert_eq!(summary(&mut [3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(summary(&mut [4.0, 1.0, 2.0, 10.0]), (3.0, 1.0, 10.0));
        let (median, min, max) = summary(&mut []);
        assert!(median.is_nan() && min.is_nan() && max.is_nan());
    }

    #[test]
    fn peak_rss_is_at_least_a_buffer_just_touched() {
        let buffer = vec![1u8; 64 << 20];
        let peak = peak_rss_bytes().expect("Linux reports VmHWM");
        assert!(peak >= buffer.len() as u64, "{peak} < {}", buffer.len());
        assert_eq!(buffer.iter().map(|&b| b as u64).sum::<u64>(), buffer.len() as u64);
        drop(buffer);
        assert!(rss_bytes().expect("Linux reports VmRSS") > 0);
        let (anon, mapped) = (anon_rss_bytes().expect("RssAnon"), mapped_rss_bytes().expect("RssFile, RssShmem"));
        // The test binary's own code is mapped; the heap holds at least the test harness.
        assert!(anon > 0 && mapped > 0, "anon {anon}, mapped {mapped}");
        if reset_peak_rss() {
            // The peak starts again from the current RSS, without the freed buffer.
            let after = peak_rss_bytes().expect("Linux reports VmHWM");
            assert!(after + (32 << 20) < peak, "peak {peak} before the reset, {after} after");
        }
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn freed_heap_below_a_live_block_is_handed_back() {
        // Blocks below glibc's mapping threshold stay in the heap when freed, as long as a live
        // block above them keeps the heap from shrinking at its top.
        let blocks: Vec<Vec<u8>> = (0..256).map(|i| vec![i as u8; 60 << 10]).collect();
        let keeper = std::hint::black_box(vec![1u8; 1024]);
        drop(std::hint::black_box(blocks));
        let released = release_free_heap().expect("glibc has malloc_trim");
        assert!(released >= 4 << 20, "{released} bytes released of 15 MiB freed");
        assert_eq!(keeper.len(), 1024);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn populating_makes_every_readable_mapped_file_resident() {
        if !populate_mapped_files() {
            println!("skipped: this kernel refuses MADV_POPULATE_READ (before Linux 5.14)");
            return;
        }
        let maps = std::fs::read_to_string("/proc/self/maps").expect("Linux has /proc/self/maps");
        let readable_file_bytes: u64 = maps
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let (range, permissions, path) = (fields.first()?, fields.get(1)?, fields.get(5)?);
                if !path.starts_with('/') || !permissions.starts_with('r') {
                    return None;
                }
                let (start, end) = range.split_once('-')?;
                Some(u64::from_str_radix(end, 16).ok()? - u64::from_str_radix(start, 16).ok()?)
            })
            .sum();
        // Pages of writable mappings that were written are anonymous copies now, a small part.
        let mapped = mapped_rss_bytes().expect("RssFile, RssShmem");
        assert!(
            mapped * 10 >= readable_file_bytes * 9,
            "{mapped} bytes of mapped files resident, of {readable_file_bytes} readable"
        );
    }
}
