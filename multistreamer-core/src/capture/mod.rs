//! Webinar capture: a page (a webinar room, a YouTube watch page, any page) opened in
//! chromium, its chat kept as metadata and its presenter window as video, in one directory:
//!
//! * `chat.jsonl` — one message per line, written as it arrives ([`chat`]);
//! * `presenter.mp4` — the presenter element as H.264 in a fragmented MP4 ([`presenter`]);
//! * `capture.json` — the manifest: page, selectors, times, gaps, counters ([`manifest`]).
//!
//! The chat comes from the page's DOM (a `MutationObserver` reporting through a CDP
//! binding) and, when given, from the platforms' APIs (MTS Link, YouTube), de-duplicated.
//! The presenter is read from a virtual X display (Xvfb + x11grab) at a steady rate. A page
//! that reloads is watched again, a browser that dies is started again, and each stretch
//! without the page is a gap in the manifest; nothing written before is lost.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use multistreamer_core::capture::{Capture, CaptureOptions, Profile};
//! let mut o = CaptureOptions::new("https://example.org/room", "/tmp/capture", Profile::Generic);
//! o.selectors.chat_container = "#chat".into();
//! o.selectors.chat_item = ".message".into();
//! o.duration = Some(std::time::Duration::from_secs(60));
//! let capture = Capture::start(o)?;
//! let manifest = capture.join()?;
//! println!("{} chat messages", manifest.counters.chat_messages);
//! # Ok(()) }
//! ```

pub mod chat;
pub mod manifest;
#[cfg(feature = "capture")]
pub mod page;
#[cfg(feature = "capture")]
pub mod presenter;
#[cfg(feature = "capture")]
mod run;
#[cfg(feature = "capture")]
mod xvfb;

#[cfg(feature = "capture")]
pub use self::run::*;
