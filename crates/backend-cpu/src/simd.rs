//! Run-time choice of the widest vector instructions for plain Rust loops.
//!
//! The plugin is compiled for baseline x86-64 (SSE2) so that it loads on any x86-64 CPU, and
//! at that level LLVM vectorises a loop 4 floats wide at best. [`vectorized`] compiles the
//! closure it is given a second and a third time, inside functions that enable AVX-512 and
//! AVX2 + FMA, and runs the copy this CPU supports. The closure is inlined into those
//! functions, so every loop in it (and every `#[inline]` helper it calls) is vectorised for
//! that instruction set; a kernel's own code stays portable Rust.
//!
//! Rust does not contract `a * b + c` into an FMA on its own, so the three copies compute the
//! same bits; only explicit `mul_add` calls differ in speed (a library call without FMA).

/// Runs `body` compiled for the widest instruction set this CPU has (see the module docs).
/// Use it around a kernel's inner loops, inside each parallel task: a closure handed to rayon
/// runs in a function of its own and does not inherit the caller's instruction set. Mark the
/// closure `#[inline(always)]`: LLVM does not inline a large closure on its own, and a body
/// left out of line is compiled for the baseline.
#[inline]
pub fn vectorized<R>(body: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, checked just above.
            return unsafe { with_avx512(body) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA, checked just above.
            return unsafe { with_avx2(body) };
        }
    }
    body()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn with_avx512<R>(body: impl FnOnce() -> R) -> R {
    body()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn with_avx2<R>(body: impl FnOnce() -> R) -> R {
    body()
}
