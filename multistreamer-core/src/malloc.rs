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

/// What the allocator holds: `(in_use, obtained)` bytes — handed out and not given back (the
/// live heap), and taken from the system (arenas and blocks mapped on their own). Their gap
/// is freed memory the allocator keeps; RSS growing while `in_use` stays flat is that, not a
/// leak. glibc's `mallinfo2` (it walks every arena: call it seconds apart, not per packet);
/// `None` on other platforms and C libraries.
pub fn heap() -> Option<(u64, u64)> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 takes no arguments and returns a plain struct by value.
        #[allow(unsafe_code)]
        let m = unsafe { libc::mallinfo2() };
        Some(((m.uordblks + m.hblkhd) as u64, (m.arena + m.hblkhd) as u64))
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
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

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn the_heap_in_use_follows_what_is_allocated() {
        // a block far larger than what the tests running beside this one allocate or free
        const BLOCK: u64 = 256 << 20;
        let (before, _) = super::heap().expect("glibc");
        let block = std::hint::black_box(vec![0u8; BLOCK as usize]);
        let (during, obtained) = super::heap().expect("glibc");
        assert!(during >= before + BLOCK / 2, "{before} -> {during}");
        assert!(obtained >= during);
        drop(block);
        let (after, _) = super::heap().expect("glibc");
        assert!(after + BLOCK / 2 <= during, "{during} -> {after}");
    }
}
