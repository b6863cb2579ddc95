//! What a WHIP offer sends, read from its SDP before the WebRTC stack sees it, so that an
//! offer Multistreamer cannot use is refused with a reason the publisher can act on.

/// The media sections of an offer that send to us.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OfferSummary {
    /// A section sends video with H.264 among its codecs.
    pub video: bool,
    /// A section sends audio with Opus among its codecs.
    pub audio: bool,
}

/// The longest offer read (browsers send 5–10 KiB; OBS less).
pub const MAX_OFFER: usize = 64 * 1024;

/// Reads the offer's media sections. An offer is refused when it sends nothing usable, or
/// sends video or audio only in codecs Multistreamer does not take (the reason names them).
pub fn summarize(sdp: &str) -> Result<OfferSummary, String> {
    if sdp.len() > MAX_OFFER {
        return Err(format!("the offer is {} bytes; at most {MAX_OFFER} are read", sdp.len()));
    }
    if !sdp.starts_with("v=0") {
        return Err("not an SDP offer (it must start with v=0)".into());
    }
    let mut sections: Vec<Section> = Vec::new();
    for line in sdp.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(m) = line.strip_prefix("m=") {
            let mut fields = m.split(' ');
            let kind = fields.next().unwrap_or_default().to_string();
            let port_zero = fields.next() == Some("0");
            sections.push(Section { kind, port_zero, direction: Direction::SendRecv, codecs: Vec::new() });
            continue;
        }
        let Some(section) = sections.last_mut() else { continue };
        match line {
            "a=sendonly" => section.direction = Direction::Send,
            "a=sendrecv" => section.direction = Direction::SendRecv,
            "a=recvonly" | "a=inactive" => section.direction = Direction::NotSending,
            _ => {
                if let Some(map) = line.strip_prefix("a=rtpmap:") {
                    // a=rtpmap:<pt> <name>/<clock>[/<channels>]
                    if let Some(name) = map.split(' ').nth(1).and_then(|enc| enc.split('/').next()) {
                        let name = name.to_ascii_uppercase();
                        if !section.codecs.contains(&name) && section.codecs.len() < 64 {
                            section.codecs.push(name);
                        }
                    }
                }
            }
        }
    }
    if sections.is_empty() {
        return Err("the offer has no media section (m=)".into());
    }
    let mut summary = OfferSummary::default();
    for s in sections.iter().filter(|s| !s.port_zero && s.direction != Direction::NotSending) {
        match s.kind.as_str() {
            "video" if s.codecs.iter().any(|c| c == "H264") => summary.video = true,
            "video" => {
                return Err(format!(
                    "the video is offered as {} only; Multistreamer takes H.264 over WHIP (choose H.264 in the encoder's settings)",
                    names(&s.codecs)
                ));
            }
            "audio" if s.codecs.iter().any(|c| c == "OPUS") => summary.audio = true,
            "audio" => {
                return Err(format!("the audio is offered as {} only; WHIP audio must be Opus", names(&s.codecs)));
            }
            _ => {}
        }
    }
    if !summary.video && !summary.audio {
        return Err("the offer sends no video or audio (no section is sendonly or sendrecv)".into());
    }
    Ok(summary)
}

fn names(codecs: &[String]) -> String {
    let shown: Vec<&str> =
        codecs.iter().map(String::as_str).filter(|c| !matches!(*c, "RTX" | "RED" | "ULPFEC" | "FLEXFEC-03")).collect();
    if shown.is_empty() { "no codec".into() } else { shown.join(", ") }
}

#[derive(Debug)]
struct Section {
    kind: String,
    port_zero: bool,
    direction: Direction,
    codecs: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Send,
    SendRecv,
    NotSending,
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";

    fn offer(body: &str) -> String {
        format!("{HEAD}{body}")
    }

    #[test]
    fn a_browser_offer_sends_h264_video_and_opus_audio() {
        let sdp = offer(
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 96 97 102\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\n\
             a=rtpmap:97 rtx/90000\r\na=rtpmap:102 H264/90000\r\n",
        );
        assert_eq!(summarize(&sdp), Ok(OfferSummary { video: true, audio: true }));
    }

    #[test]
    fn unusable_offers_are_refused_with_the_codecs_named() {
        let vp8 = offer("m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\n");
        let e = summarize(&vp8).expect_err("VP8 only");
        assert!(e.contains("VP8 only") && e.contains("H.264") && !e.contains("RTX"), "{e}");
        let pcmu = offer("m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=rtpmap:0 PCMU/8000\r\n");
        assert!(summarize(&pcmu).expect_err("PCMU only").contains("PCMU only"));
        let receive_only = offer("m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=recvonly\r\na=rtpmap:102 H264/90000\r\n");
        assert!(summarize(&receive_only).expect_err("receive only").contains("sends no video or audio"));
        assert!(summarize("hello").expect_err("not SDP").contains("v=0"));
        assert!(summarize(HEAD).expect_err("no media").contains("no media section"));
        assert!(summarize(&"v=0\n".repeat(20_000)).expect_err("too long").contains("at most"));
    }

    #[test]
    fn a_rejected_section_and_a_data_channel_do_not_count() {
        let sdp = offer(
            "m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n\
             m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
             m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 OPUS/48000/2\r\n",
        );
        assert_eq!(summarize(&sdp), Ok(OfferSummary { video: false, audio: true }));
    }
}
