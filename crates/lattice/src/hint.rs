//! A CPU hint the store's hash tables use to overlap their cache misses.

/// Asks the CPU to start loading the cache line at `p` into its caches. A
/// hint: nothing is read, and any address (dangling, null) is harmless.
#[inline(always)]
#[allow(unsafe_code)]
pub fn prefetch(p: *const u8) {
    // SAFETY: a prefetch reads and writes no memory and cannot fault,
    // whatever the address; SSE, which it needs, is part of every x86-64 CPU.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
