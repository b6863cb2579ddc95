//! SRT in and out: MPEG-TS (H.264 + AAC) over SRT, the contribution protocol of OBS, vMix,
//! hardware encoders and CDNs.
//!
//! * [`SrtIngest`]: an SRT listener; each caller names its stream with the `streamid`
//!   (`#!::r=live/KEY,m=publish`, `publish:live/KEY`, `live/KEY` or `KEY`, see
//!   [`parse_stream_id`]), goes through the same [`PublishAuthorizer`] as RTMP and RTSP, and
//!   may be asked for a passphrase (AES) per stream. Its transport stream is demuxed by the
//!   project's own TS demuxer (the one HLS pulls use) into the hub.
//! * [`SrtConnector`]: an SRT destination (caller mode), the stream muxed into MPEG-TS.
//!
//! The SRT protocol itself (handshake, ARQ, TSBPD, encryption) is `srt-tokio`'s, a pure-Rust
//! implementation that interoperates with libsrt (what ffmpeg, OBS and GStreamer use);
//! docs/design/decisions.md says why it was chosen over libsrt bindings.
//!
//! [`PublishAuthorizer`]: crate::rtmp::PublishAuthorizer

mod ingest;
mod push;

#[doc(hidden)]
pub use self::ingest::fuzz_input;
pub use self::ingest::{SrtIngest, SrtIngestOptions};
pub use self::push::{SrtConnector, SrtPushOptions, SrtSink, SrtUrl};

/// What a caller asks for in its `streamid`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrtStreamId {
    /// The application (`live` in `live/KEY`); `None` when the id names the key alone.
    pub app: Option<String>,
    pub key: String,
    /// `m=publish` (or no mode): the caller sends media. `false` for `m=request` (play).
    pub publish: bool,
    /// `u=` of the access-control form, if any.
    pub user: Option<String>,
}

/// The longest `streamid` SRT carries (bytes).
pub const MAX_STREAM_ID: usize = 512;

/// Parses a caller's `streamid`: the SRT access-control form `#!::r=live/KEY,m=publish`
/// (keys `r`, `m`, `u`; others ignored; `#!::KEY` too), the `publish:live/KEY` /
/// `read:live/KEY` prefixes some servers use, `live/KEY`, or a plain `KEY`.
pub fn parse_stream_id(raw: &str) -> Result<SrtStreamId, String> {
    let raw = raw.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    if raw.is_empty() {
        return Err("no streamid: give the stream key as streamid (e.g. streamid=#!::r=live/KEY,m=publish)".into());
    }
    if raw.len() > MAX_STREAM_ID {
        return Err(format!("streamid longer than {MAX_STREAM_ID} bytes"));
    }
    let (resource, mode, user) = if let Some(body) = raw.strip_prefix("#!::") {
        let mut resource = None;
        let mut mode = None;
        let mut user = None;
        for pair in body.split(',') {
            match pair.split_once('=') {
                Some(("r", v)) => resource = Some(v),
                Some(("m", v)) => mode = Some(v),
                Some(("u", v)) => user = Some(v.to_string()),
                Some(_) => {}
                // `#!::KEY`: a bare resource
                None if resource.is_none() && !pair.is_empty() => resource = Some(pair),
                None => return Err(format!("streamid: `{pair}` is not KEY=VALUE")),
            }
        }
        (resource.ok_or("streamid: no resource (r=live/KEY)")?, mode, user)
    } else if let Some(rest) = raw.strip_prefix("publish:") {
        (rest, Some("publish"), None)
    } else if let Some(rest) = raw.strip_prefix("read:") {
        (rest, Some("request"), None)
    } else {
        (raw, None, None)
    };
    let publish = match mode {
        None | Some("publish") => true,
        Some("request") | Some("play") | Some("read") => false,
        Some(other) => return Err(format!("streamid: mode `{other}` is not publish or request")),
    };
    let resource = resource.trim_start_matches('/');
    let (app, key) = match resource.rsplit_once('/') {
        Some((app, key)) => (Some(app.to_string()), key),
        None => (None, resource),
    };
    if key.is_empty() {
        return Err("streamid: empty stream key".into());
    }
    if key.chars().any(|c| c.is_control()) {
        return Err("streamid: control characters in the stream key".into());
    }
    Ok(SrtStreamId { app, key: key.to_string(), publish, user })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(app: Option<&str>, key: &str, publish: bool) -> SrtStreamId {
        SrtStreamId { app: app.map(str::to_string), key: key.into(), publish, user: None }
    }

    #[test]
    fn stream_id_forms() {
        assert_eq!(parse_stream_id("#!::r=live/k1,m=publish"), Ok(id(Some("live"), "k1", true)));
        assert_eq!(parse_stream_id("#!::m=publish,r=k1"), Ok(id(None, "k1", true)));
        assert_eq!(parse_stream_id("#!::r=live/k1,m=request"), Ok(id(Some("live"), "k1", false)));
        assert_eq!(parse_stream_id("#!::k1"), Ok(id(None, "k1", true)));
        assert_eq!(parse_stream_id("publish:live/k1"), Ok(id(Some("live"), "k1", true)));
        assert_eq!(parse_stream_id("read:live/k1"), Ok(id(Some("live"), "k1", false)));
        assert_eq!(parse_stream_id("live/k1"), Ok(id(Some("live"), "k1", true)));
        assert_eq!(parse_stream_id("k1"), Ok(id(None, "k1", true)));
        assert_eq!(parse_stream_id("k1\0\0"), Ok(id(None, "k1", true)), "libsrt pads with NULs");
        let with_user = parse_stream_id("#!::u=alice,r=live/k1,m=publish,s=abc").expect("user");
        assert_eq!(with_user.user.as_deref(), Some("alice"));
        assert_eq!(with_user.key, "k1");
    }

    #[test]
    fn bad_stream_ids_say_why() {
        for bad in ["", "#!::m=publish", "#!::r=live/,m=publish", "#!::r=k,m=bogus", "live/", "#!::r=k,x"] {
            let e = parse_stream_id(bad).expect_err(bad);
            assert!(e.contains("streamid"), "{bad}: {e}");
        }
        assert!(parse_stream_id(&"k".repeat(600)).is_err());
    }
}
