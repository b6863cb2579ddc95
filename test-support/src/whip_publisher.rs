//! A WHIP publisher on the WebRTC stack the server uses, as its client side (ICE
//! controlling, DTLS client, RTP packetization): H.264 access units and 20 ms Opus packets
//! made by ffmpeg, sent in real time over UDP. The offer and answer travel however the
//! caller likes (straight to the library, or POSTed to a server).

use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

/// What a publisher sends: Annex B access units at `fps`, and 20 ms Opus packets.
#[derive(Clone, Debug)]
pub struct WhipMedia {
    pub video: Vec<Vec<u8>>,
    pub audio: Vec<Vec<u8>>,
    pub fps: u64,
}

impl WhipMedia {
    /// The video of `clip` (no B-frames) as Annex B access units, and its audio encoded to
    /// Opus; `fps` is the clip's frame rate.
    pub fn from_clip(clip: &Path, fps: u64, dir: &Path) -> WhipMedia {
        let h264 = dir.join("whip-video.h264");
        let st = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-i"])
            .arg(clip)
            .args(["-map", "0:v:0", "-c", "copy", "-bsf:v", "h264_mp4toannexb,h264_metadata=aud=insert", "-f", "h264"])
            .arg(&h264)
            .status()
            .expect("ffmpeg");
        assert!(st.success(), "no H.264 from {}", clip.display());
        let opus = dir.join("whip-audio.opus");
        let st = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-i"])
            .arg(clip)
            .args(["-map", "0:a:0", "-ac", "2", "-ar", "48000", "-c:a", "libopus", "-b:a", "96k"])
            .args(["-frame_duration", "20", "-f", "ogg"])
            .arg(&opus)
            .status()
            .expect("ffmpeg");
        assert!(st.success(), "no Opus from {}", clip.display());
        WhipMedia { video: h264_access_units(&h264), audio: opus_packets(&opus), fps }
    }
}

/// The access units of an Annex B file whose units start with a delimiter (`aud=1`).
pub fn h264_access_units(file: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(file).unwrap();
    let mut units: Vec<Vec<u8>> = Vec::new();
    for nal in annexb_units(&data) {
        if nal[0] & 0x1F == 9 {
            units.push(Vec::new());
            continue;
        }
        let au = units.last_mut().expect("an access unit delimiter first");
        au.extend_from_slice(&[0, 0, 0, 1]);
        au.extend_from_slice(nal);
    }
    units
}

/// The NAL units of Annex B data (trailing zeros of a unit trimmed).
fn annexb_units(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut out = Vec::new();
    for (k, &s) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map_or(data.len(), |&n| n - 3);
        while end > s && data[end - 1] == 0 {
            end -= 1;
        }
        if end > s {
            out.push(&data[s..end]);
        }
    }
    out
}

/// The packets of an Ogg Opus file, without its two header packets.
pub fn opus_packets(file: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(file).unwrap();
    let (mut packets, mut current, mut pos) = (Vec::new(), Vec::new(), 0);
    while pos + 27 <= data.len() {
        assert_eq!(&data[pos..pos + 4], b"OggS");
        let segments = data[pos + 26] as usize;
        let table = &data[pos + 27..pos + 27 + segments];
        let mut body = pos + 27 + segments;
        for &len in table {
            current.extend_from_slice(&data[body..body + len as usize]);
            body += len as usize;
            if len < 255 {
                packets.push(std::mem::take(&mut current));
            }
        }
        pos = body;
    }
    packets.drain(..2.min(packets.len()));
    packets
}

/// A publisher between its offer and its answer.
pub struct WhipPublisher {
    rtc: Rtc,
    socket: UdpSocket,
    video: Mid,
    audio: Mid,
    pending: Option<SdpPendingOffer>,
}

impl WhipPublisher {
    /// A publisher on a loopback UDP port and its offer (H.264 and Opus, send only).
    pub fn offer() -> (WhipPublisher, String) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut rtc = Rtc::builder().clear_codecs().enable_h264(true).enable_opus(true, false).build(Instant::now());
        rtc.add_local_candidate(Candidate::host(socket.local_addr().unwrap(), "udp").unwrap());
        let mut change = rtc.sdp_api();
        let video = change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        let audio = change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let (offer, pending) = change.apply().unwrap();
        (WhipPublisher { rtc, socket, video, audio, pending: Some(pending) }, offer.to_sdp_string())
    }

    pub fn accept(&mut self, answer: &str) {
        let pending = self.pending.take().expect("one answer");
        self.rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(answer).unwrap()).unwrap();
    }

    /// Sends `frames` video frames (the clip looped, timestamps running on) with the audio
    /// beside them, in real time from the moment the connection is up, then 500 ms more of
    /// the connection; or until `stop` is set. Returns the frames sent.
    pub fn run(mut self, media: &WhipMedia, frames: usize, stop: &Arc<AtomicBool>) -> usize {
        let local = self.socket.local_addr().unwrap();
        let mut buf = vec![0u8; 2048];
        let (mut next_video, mut next_audio) = (0usize, 0usize);
        let audio_frames = frames as u64 * 1000 / media.fps / 20;
        let mut started: Option<Instant> = None;
        let give_up = Instant::now() + Duration::from_secs(15);
        loop {
            let timeout = loop {
                match self.rtc.poll_output().unwrap() {
                    Output::Timeout(t) => break t,
                    Output::Transmit(t) => {
                        let _ = self.socket.send_to(&t.contents, t.destination);
                    }
                    Output::Event(Event::Connected) => started = Some(Instant::now()),
                    Output::Event(_) => {}
                }
            };
            let now = Instant::now();
            assert!(started.is_some() || now < give_up, "the WebRTC connection did not come up");
            if stop.load(Ordering::Relaxed) {
                return next_video;
            }
            if let Some(start) = started {
                let video_due = start + Duration::from_micros(next_video as u64 * 1_000_000 / media.fps);
                let audio_due = start + Duration::from_millis(next_audio as u64 * 20);
                if next_video < frames && now >= video_due {
                    let w = self.rtc.writer(self.video).unwrap();
                    let pt = w.payload_params().find(|p| p.spec().codec == Codec::H264).unwrap().pt();
                    let at = MediaTime::from_90khz(next_video as u64 * 90_000 / media.fps);
                    w.write(pt, now, at, media.video[next_video % media.video.len()].clone()).unwrap();
                    next_video += 1;
                    continue;
                }
                if (next_audio as u64) < audio_frames && now >= audio_due && !media.audio.is_empty() {
                    let w = self.rtc.writer(self.audio).unwrap();
                    let pt = w.payload_params().find(|p| p.spec().codec == Codec::Opus).unwrap().pt();
                    let at = MediaTime::new(next_audio as u64 * 960, Frequency::FORTY_EIGHT_KHZ);
                    w.write(pt, now, at, media.audio[next_audio % media.audio.len()].clone()).unwrap();
                    next_audio += 1;
                    continue;
                }
                if next_video == frames && now >= video_due + Duration::from_millis(500) {
                    return next_video;
                }
            }
            let mut wake = timeout.saturating_duration_since(now).max(Duration::from_millis(1));
            if started.is_some() {
                wake = wake.min(Duration::from_millis(5));
            }
            self.socket.set_read_timeout(Some(wake)).unwrap();
            let input = match self.socket.recv_from(&mut buf) {
                Ok((n, source)) => match buf[..n].try_into() {
                    Ok(contents) => Input::Receive(
                        Instant::now(),
                        Receive { proto: Protocol::Udp, source, destination: local, contents },
                    ),
                    Err(_) => continue,
                },
                Err(_) => Input::Timeout(Instant::now()),
            };
            self.rtc.handle_input(input).unwrap();
        }
    }
}
