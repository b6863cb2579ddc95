//! The one place where calls into `rml_rtmp` are made panic-safe.

use std::any::Any;
use std::fmt::Debug;
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::RtmpError;

/// Runs `f` (a call into an `rml_rtmp` session), turning both its error and a panic into
/// an [`RtmpError`]. After `Err(RtmpError::Panicked)` the session must be dropped.
pub fn guarded<T, E: Debug>(what: &'static str, f: impl FnOnce() -> Result<T, E>) -> Result<T, RtmpError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(RtmpError::Session(format!("{what}: {e:?}"))),
        Err(panic) => Err(RtmpError::Panicked(format!("{what}: {}", panic_message(&panic)))),
    }
}

fn panic_message(panic: &Box<dyn Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_errors() {
        let r: Result<(), RtmpError> = guarded("test", || -> Result<(), String> { panic!("boom") });
        assert_eq!(r, Err(RtmpError::Panicked("test: boom".into())));
        let r: Result<u8, RtmpError> = guarded("test", || Err::<u8, _>("bad"));
        assert!(matches!(r, Err(RtmpError::Session(_))));
        assert_eq!(guarded("test", || Ok::<_, String>(7)), Ok(7));
    }
}
