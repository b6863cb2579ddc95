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

#[cfg(feature = "capture")]
pub mod after;
#[cfg(feature = "capture")]
mod avdevice;
pub mod chat;
pub mod events;
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

/// Runs untrusted bytes through the capture's readers (the page's binding payloads, chat
/// lines, manifests, URL masking); never panics. For the fuzz target `capture_input`.
#[doc(hidden)]
pub fn fuzz_capture_input(data: &[u8]) -> usize {
    let text = String::from_utf8_lossy(data);
    let mut said = usize::from(events::parse_payload(&text).is_some());
    if let Ok(line) = serde_json::from_str::<chat::ChatLine>(&text) {
        said += line.text.len();
    }
    if let Ok(m) = serde_json::from_slice::<manifest::Manifest>(data) {
        said += m.gaps.len();
    }
    said + manifest::mask_url(&text).len()
}
