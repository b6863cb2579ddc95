//! Enhanced RTMP capability negotiation (the `fourCcList` of `connect`).
//!
//! A client that can send HEVC or AV1 lists their FourCCs in its `connect` command object;
//! an Enhanced RTMP server answers with the FourCCs it takes, in the `connect` `_result`
//! (`fourCcList`, or the v2 `videoFourCcInfoMap`). A legacy server answers with neither:
//! it would accept the publish and pass on video it cannot parse, so HEVC/AV1 are sent
//! only to a destination that listed them, or that the operator says takes them
//! ([`EnhancedRtmp::Assume`]; YouTube's ingest is assumed, as YouTube documents HEVC and
//! AV1 over Enhanced RTMP).
//!
//! `rml_rtmp`'s sessions write `connect` and its `_result` without these properties, so
//! the serialized command is rewritten here: the chunks are joined, the AMF0 values get
//! the property, and the message is chunked again with the same header.

use std::str::FromStr;

use rml_amf0::Amf0Value;

use crate::flv::VideoFourCc;

/// The video FourCCs this crate sends and takes.
pub const FOURCC_LIST: [&str; 3] = ["hvc1", "av01", "avc1"];

/// Whether HEVC/AV1 go to an RTMP destination that did not list them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum EnhancedRtmp {
    /// Only when the destination lists the FourCC in its `connect` reply (or is YouTube).
    #[default]
    Negotiate,
    /// Always: the operator knows the destination takes Enhanced RTMP.
    Assume,
}

impl FromStr for EnhancedRtmp {
    type Err = String;

    fn from_str(s: &str) -> Result<EnhancedRtmp, String> {
        match s {
            "negotiate" => Ok(EnhancedRtmp::Negotiate),
            "assume" => Ok(EnhancedRtmp::Assume),
            other => Err(format!("{other:?}: expected negotiate or assume")),
        }
    }
}

/// What a destination said it takes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The FourCCs listed in the `connect` reply; `None` when it listed none (a legacy server).
    pub listed: Option<Vec<String>>,
    /// The operator's or a platform's word that it takes Enhanced RTMP.
    pub assumed: bool,
}

impl Capabilities {
    /// Reads `fourCcList` / `videoFourCcInfoMap` from the values of a `connect` `_result`.
    pub fn from_connect_result(values: &[Amf0Value]) -> Capabilities {
        let mut listed: Option<Vec<String>> = None;
        for v in values {
            let Amf0Value::Object(props) = v else { continue };
            if let Some(Amf0Value::StrictArray(list)) = props.get("fourCcList") {
                let names = list.iter().filter_map(|v| match v {
                    Amf0Value::Utf8String(s) => Some(s.clone()),
                    _ => None,
                });
                listed.get_or_insert_with(Vec::new).extend(names);
            }
            if let Some(Amf0Value::Object(map)) = props.get("videoFourCcInfoMap") {
                listed.get_or_insert_with(Vec::new).extend(map.keys().cloned());
            }
        }
        Capabilities { listed, assumed: false }
    }

    /// `Ok` when video of `fourcc` may be sent; otherwise why not.
    pub fn check(&self, fourcc: VideoFourCc) -> Result<(), String> {
        if self.assumed {
            return Ok(());
        }
        match &self.listed {
            Some(list) if list.iter().any(|c| c == fourcc.as_str() || c == "*") => Ok(()),
            Some(list) => Err(format!(
                "the destination takes Enhanced RTMP but not {fourcc} (it listed {})",
                if list.is_empty() { "nothing".to_string() } else { list.join(", ") }
            )),
            None => Err(format!(
                "the destination did not announce Enhanced RTMP in its connect reply, so it cannot be sent \
                 {fourcc} video (a legacy RTMP server would pass on video it cannot parse); if it takes it, \
                 set Enhanced RTMP to \"assume\" for it (relay --enhanced-rtmp assume; the destination's \
                 enhanced_rtmp in the server)"
            )),
        }
    }
}

/// Whether a destination host is one that documents Enhanced RTMP HEVC/AV1 ingest.
pub fn host_is_known_enhanced(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "youtube.com" || host.ends_with(".youtube.com")
}

/// Rewrites a serialized AMF0 command message (`packet`: one type-0 or type-1 chunk
/// header, which carry the length, then its chunks of at most `chunk_size` bytes) whose
/// name is `command`, inserting `fourCcList` into the object at argument `index` (2: the
/// command object of `connect` and the properties of its `_result`). `None` when the
/// packet is not that command or not in the expected shape; the caller then sends it
/// unchanged.
///
/// The session that wrote the packet still believes the old length was sent. Its next
/// message on the same chunk stream could then omit the length (a type-2/3 header) only if
/// it had exactly the old length, type and message stream: after `connect` and its
/// `_result`, only short commands (`createStream`, its `_result`) follow on that chunk
/// stream, far shorter than these.
pub fn add_fourcc_list(packet: &[u8], command: &str, index: usize, chunk_size: usize) -> Option<Vec<u8>> {
    let first = *packet.first()?;
    let csid = first & 0x3F;
    // type 0: timestamp, length, type id, stream id; type 1: no stream id
    let header_len = match first >> 6 {
        0 => 11,
        1 => 7,
        _ => return None,
    };
    if csid < 2 {
        return None;
    }
    let header = packet.get(1..1 + header_len)?;
    if header[0..3] == [0xFF, 0xFF, 0xFF] || header[6] != 20 {
        return None; // extended timestamp (never at connect time) or not an AMF0 command
    }
    let len = usize::from(header[3]) << 16 | usize::from(header[4]) << 8 | usize::from(header[5]);
    let body = dechunk(&packet[1 + header_len..], len, chunk_size, 0xC0 | csid)?;
    let mut values = rml_amf0::deserialize(&mut &body[..]).ok()?;
    if !matches!(values.first(), Some(Amf0Value::Utf8String(name)) if name == command) {
        return None;
    }
    let Some(Amf0Value::Object(props)) = values.get_mut(index) else {
        return None;
    };
    props.insert(
        "fourCcList".into(),
        Amf0Value::StrictArray(FOURCC_LIST.iter().map(|s| Amf0Value::Utf8String((*s).into())).collect()),
    );
    let body = rml_amf0::serialize(&values).ok()?;
    if body.len() > 0xFF_FFFF {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() + 12 + body.len() / chunk_size.max(1));
    out.push(first);
    out.extend_from_slice(&header[0..3]);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&header[6..]);
    for (i, chunk) in body.chunks(chunk_size.max(1)).enumerate() {
        if i > 0 {
            out.push(0xC0 | csid);
        }
        out.extend_from_slice(chunk);
    }
    Some(out)
}

/// Joins the chunks of one message of `len` bytes.
fn dechunk(mut data: &[u8], len: usize, chunk_size: usize, continuation: u8) -> Option<Vec<u8>> {
    let mut body = Vec::with_capacity(len);
    while body.len() < len {
        if !body.is_empty() {
            let (&c, rest) = data.split_first()?;
            if c != continuation {
                return None;
            }
            data = rest;
        }
        let take = (len - body.len()).min(chunk_size.max(1));
        body.extend_from_slice(data.get(..take)?);
        data = &data[take..];
    }
    data.is_empty().then_some(body)
}

/// The values of an AMF0 command message's payload, if it is `name` with `transaction`.
pub fn command_values(payload: &[u8], name: &str, transaction: f64) -> Option<Vec<Amf0Value>> {
    let values = rml_amf0::deserialize(&mut &payload[..]).ok()?;
    match values.get(..2) {
        Some([Amf0Value::Utf8String(n), Amf0Value::Number(t)]) if n == name && *t == transaction => Some(values),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn command(values: &[Amf0Value], chunk_size: usize) -> Vec<u8> {
        let body = rml_amf0::serialize(&values.to_vec()).expect("amf");
        let mut p = vec![0x03, 0, 0, 0];
        p.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        p.extend_from_slice(&[20, 0, 0, 0, 0]);
        for (i, c) in body.chunks(chunk_size).enumerate() {
            if i > 0 {
                p.push(0xC3);
            }
            p.extend_from_slice(c);
        }
        p
    }

    fn connect() -> Vec<Amf0Value> {
        let mut props = HashMap::new();
        props.insert("app".to_string(), Amf0Value::Utf8String("live".into()));
        props.insert("tcUrl".to_string(), Amf0Value::Utf8String("rtmp://127.0.0.1:1935/live".repeat(6)));
        vec![Amf0Value::Utf8String("connect".into()), Amf0Value::Number(1.0), Amf0Value::Object(props)]
    }

    #[test]
    fn connect_gets_the_fourcc_list_across_chunks() {
        let packet = command(&connect(), 128);
        assert!(packet.len() > 140, "the fixture spans chunks");
        let patched = add_fourcc_list(&packet, "connect", 2, 128).expect("patched");
        // parse it back with the chunk reader used by the ingest
        let mut reader = super::super::chunk_reader::ChunkReader::new(Default::default());
        let mut messages = Vec::new();
        reader
            .feed(&patched, |m| -> Result<(), super::super::chunk_reader::ChunkError> {
                messages.push(m);
                Ok(())
            })
            .expect("chunks");
        assert_eq!(messages.len(), 1);
        let values = command_values(&messages[0].payload, "connect", 1.0).expect("connect");
        let Amf0Value::Object(props) = &values[2] else { panic!("no command object") };
        assert_eq!(props.get("app"), Some(&Amf0Value::Utf8String("live".into())));
        let caps = Capabilities::from_connect_result(&values);
        assert_eq!(caps.listed.as_deref(), Some(&["hvc1".to_string(), "av01".into(), "avc1".into()][..]));
        assert!(caps.check(VideoFourCc::Hevc).is_ok() && caps.check(VideoFourCc::Av1).is_ok());
    }

    #[test]
    fn other_commands_and_odd_packets_are_left_alone() {
        let mut values = connect();
        values[0] = Amf0Value::Utf8String("createStream".into());
        assert!(add_fourcc_list(&command(&values, 128), "connect", 2, 128).is_none());
        let packet = command(&connect(), 128);
        assert!(add_fourcc_list(&packet[..packet.len() - 1], "connect", 2, 128).is_none());
        assert!(add_fourcc_list(&packet, "connect", 2, 4096).is_none(), "wrong chunk size");
        assert!(add_fourcc_list(&[], "connect", 2, 128).is_none());
    }

    #[test]
    fn a_legacy_reply_refuses_hevc_with_the_reason() {
        let mut props = HashMap::new();
        props.insert("fmsVer".to_string(), Amf0Value::Utf8String("FMS/3,0,1,123".into()));
        let caps = Capabilities::from_connect_result(&[Amf0Value::Object(props)]);
        assert_eq!(caps.listed, None);
        let why = caps.check(VideoFourCc::Hevc).expect_err("legacy");
        assert!(why.contains("did not announce Enhanced RTMP") && why.contains("hvc1"), "{why}");
        assert!(Capabilities { assumed: true, ..caps }.check(VideoFourCc::Av1).is_ok());

        let mut map = HashMap::new();
        map.insert("hvc1".to_string(), Amf0Value::Number(3.0));
        let mut props = HashMap::new();
        props.insert("videoFourCcInfoMap".to_string(), Amf0Value::Object(map));
        let caps = Capabilities::from_connect_result(&[Amf0Value::Object(props)]);
        assert!(caps.check(VideoFourCc::Hevc).is_ok());
        assert!(caps.check(VideoFourCc::Av1).expect_err("av1 not listed").contains("listed hvc1"));
    }

    #[test]
    fn youtube_hosts_are_known() {
        assert!(host_is_known_enhanced("a.rtmp.youtube.com"));
        assert!(host_is_known_enhanced("b.rtmps.youtube.com."));
        assert!(!host_is_known_enhanced("youtube.com.example.org"));
        assert!(!host_is_known_enhanced("127.0.0.1"));
    }
}
