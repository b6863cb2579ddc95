//! Where the binaries' log lines go: standard error, without ever failing.
//!
//! tracing-subscriber reports a line it could not write by printing to standard error,
//! and printing panics when standard error is what fails (`failed printing to stderr`). With
//! the log redirected to a disk that fills up, that panic hit any task that logged, and one
//! that logged again while unwinding (a destructor) aborted the whole process: a full log
//! disk ended the server (docs/benchmarks/reliability.md). [`LossyStderr`] drops such a line
//! and counts it instead.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

static LOST: AtomicU64 = AtomicU64::new(0);

/// Standard error for a log subscriber (`.with_writer(|| LossyStderr)`): a write that fails
/// (a full disk, a closed pipe) is dropped, counted in [`writes_lost`], and reported as done.
#[derive(Clone, Copy, Debug, Default)]
pub struct LossyStderr;

impl Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if io::stderr().lock().write_all(buf).is_err() {
            LOST.fetch_add(1, Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
    }
}

/// Log writes dropped since the process started.
pub fn writes_lost() -> u64 {
    LOST.load(Relaxed)
}
