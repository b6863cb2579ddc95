//! RTMP URL parsing: never panics; the displayed form shows at most the first four
//! characters of the key, followed by the mask.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multistreamer_core::rtmp::RtmpUrl;
use multistreamer_core::rtmp::url::mask_secret;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(url) = s.parse::<RtmpUrl>() {
        let _ = url.tc_url();
        let _ = url.authority();
        let shown = url.to_string();
        let masked = mask_secret(&url.key);
        assert!(shown.ends_with(&masked));
        if !url.key.is_empty() && url.key != "{key}" {
            assert!(masked.ends_with("****"));
            assert!(masked.chars().count() <= 8, "more than 4 characters of the key shown");
        }
    }
});
