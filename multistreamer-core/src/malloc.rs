//! How the process's allocator keeps memory it has freed.
//!
//! glibc gives every thread that allocates concurrently its own arena (up to 8 per core)
//! and moves its mmap threshold up as large blocks are freed, so buffers of many sizes
//! (RTMP messages, segments, HTTP bodies) allocated on one worker thread and freed on
//! another leave freed memory scattered over many arenas that are never returned. Over a
//! 30-minute soak that read as RSS growing 3–7 MB per 10 minutes while the live heap stayed
//! flat (docs/benchmarks/reliability.md). [`bound_arenas`] caps the arenas and fixes the
//! mmap threshold, so large buffers go back to the system when freed.

/// Arenas when the operator did not choose (`MALLOC_ARENA_MAX`).
pub const DEFAULT_ARENAS: i32 = 2;
/// Blocks from this size on are mapped on their own and unmapped when freed.
pub const MMAP_THRESHOLD: i32 = 128 * 1024;

/// Caps glibc's arenas at [`DEFAULT_ARENAS`] and fixes its mmap threshold, unless the
/// environment already sets them (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`). Call it
/// first thing in `main`, before other threads start. Returns whether anything was set; a
/// no-op on other platforms and C libraries.
pub fn bound_arenas() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let mut set = false;
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            set |= mallopt(libc::M_ARENA_MAX, DEFAULT_ARENAS);
        }
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
            set |= mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        }
        set
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn mallopt(param: i32, value: i32) -> bool {
    // SAFETY: mallopt only changes allocator parameters; it takes no pointers.
    unsafe { libc::mallopt(param, value) == 1 }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_takes_the_settings() {
        // Both parameters exist in every glibc since 2.10; mallopt answers 1 when it took one.
        assert!(super::mallopt(libc::M_ARENA_MAX, super::DEFAULT_ARENAS));
        assert!(super::mallopt(libc::M_MMAP_THRESHOLD, super::MMAP_THRESHOLD));
    }
}
