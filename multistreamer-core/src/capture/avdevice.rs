//! libavdevice, loaded when a capture first reads the virtual display.
//!
//! Debian's libavdevice links libavfilter and with it some eighty libraries (speech
//! synthesis voices, SVG and GPU renderers); linked into the binaries, every process mapped
//! them at start, relays that never capture included: 16.7 MB of resident pages and 4.4 MB
//! of relocated (anonymous) memory before the first publisher (issue 16). Only the capture
//! needs it, for x11grab, so it is opened with `dlopen` the first time one starts and stays
//! loaded: `avdevice_register_all` hands its devices to libavformat, whose format lookup
//! then finds x11grab.
#![allow(unsafe_code)]

use std::sync::OnceLock;

use ffmpeg_next::format;

use super::CaptureError;

/// libavformat's input format for x11grab, loading libavdevice first if needed.
pub(crate) fn x11grab() -> Result<format::Input, CaptureError> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED.get_or_init(load).clone().map_err(CaptureError::Presenter)?;
    // SAFETY: the name is a NUL-terminated string; libavformat returns a pointer to a
    // static format description, or null.
    let ptr = unsafe { ffmpeg_next::ffi::av_find_input_format(c"x11grab".as_ptr()) };
    if ptr.is_null() {
        return Err(CaptureError::Presenter("this libavdevice has no x11grab".into()));
    }
    // SAFETY: a non-null pointer from av_find_input_format lives as long as the process
    // (libavdevice is never unloaded); Input only reads it.
    Ok(unsafe { format::Input::wrap(ptr.cast_mut()) })
}

/// Opens the libavdevice that matches the libavformat the binary links (same major
/// version) and registers its devices.
fn load() -> Result<(), String> {
    let major = format::version() >> 16;
    let mut why = Vec::new();
    for name in [format!("libavdevice.so.{major}"), "libavdevice.so".to_string()] {
        // SAFETY: loading libavdevice runs only its own initialisers, which touch nothing
        // of ours.
        let lib = match unsafe { libloading::Library::new(&name) } {
            Ok(lib) => lib,
            Err(e) => {
                why.push(format!("{name}: {e}"));
                continue;
            }
        };
        // SAFETY: avdevice_register_all takes no arguments and returns nothing in every
        // libavdevice since 4.0.
        let register = match unsafe { lib.get::<unsafe extern "C" fn()>(b"avdevice_register_all\0") } {
            Ok(f) => f,
            Err(e) => {
                why.push(format!("{name}: {e}"));
                continue;
            }
        };
        // SAFETY: see above; it only fills libavformat's device list.
        unsafe { register() };
        // libavformat now points into the library: it stays loaded for the process's life.
        std::mem::forget(lib);
        return Ok(());
    }
    Err(format!("cannot load libavdevice (install libavdevice for the capture): {}", why.join("; ")))
}
