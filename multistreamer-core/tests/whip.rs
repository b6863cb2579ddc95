//! A WHIP publisher written here on the WebRTC stack the server uses (the client side of
//! it: ICE controlling, DTLS client, RTP packetization): it sends an H.264 clip made by
//! ffmpeg and Opus encoded by ffmpeg's libopus, in real time over loopback UDP. The hub gets
//! every H.264 access unit bit-identical (as AVCC), on the clip's own frame timing, and AAC
//! audio over the same span.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use multistreamer_core::codec::avc::{ParameterSets, annexb_nal_units, annexb_to_avcc};
use multistreamer_core::hub::{Hub, HubOptions, SubscribeOptions};
use multistreamer_core::media::{Codec, MediaItem, Timebase, TrackKind};
use multistreamer_core::rtmp::StaticKeys;
use multistreamer_core::whip::{WhipOptions, WhipRequest, WhipServer};
use multistreamer_test_support::*;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec as RtcCodec;
use str0m::media::{Direction, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio_util::sync::CancellationToken;

const FPS: u64 = 30;

/// The clip's access units (Annex B), split at its access unit delimiters.
fn h264_access_units(dir: &Path) -> Vec<Vec<u8>> {
    let file = dir.join("clip.h264");
    let st = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", &format!("testsrc2=size=320x240:rate={FPS}"), "-t", "4"])
        .args(["-c:v", "libx264", "-profile:v", "baseline", "-pix_fmt", "yuv420p", "-g", "30"])
        .args(["-x264-params", "aud=1:repeat-headers=1:scenecut=0", "-f", "h264"])
        .arg(&file)
        .status()
        .unwrap();
    assert!(st.success());
    let data = std::fs::read(&file).unwrap();
    let mut units: Vec<Vec<u8>> = Vec::new();
    for nal in annexb_nal_units(&data) {
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

/// 20 ms Opus packets of a 440 Hz tone, read out of ffmpeg's Ogg file.
fn opus_packets(dir: &Path) -> Vec<Vec<u8>> {
    let file = dir.join("tone.opus");
    let st = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "4"])
        .args(["-ac", "2", "-c:a", "libopus", "-b:a", "64k", "-frame_duration", "20", "-f", "ogg"])
        .arg(&file)
        .status()
        .unwrap();
    assert!(st.success());
    let data = std::fs::read(&file).unwrap();
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
    // OpusHead and OpusTags first
    packets.drain(..2);
    packets
}

/// Drives the publishing side until every frame is sent (in real time) and a moment after.
fn publish(mut rtc: Rtc, socket: UdpSocket, video_mid: Mid, audio_mid: Mid, video: &[Vec<u8>], audio: &[Vec<u8>]) {
    let local = socket.local_addr().unwrap();
    let mut buf = vec![0u8; 2048];
    let (mut next_video, mut next_audio) = (0usize, 0usize);
    let mut started: Option<Instant> = None;
    let give_up = Instant::now() + Duration::from_secs(30);
    loop {
        let timeout = loop {
            match rtc.poll_output().unwrap() {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    socket.send_to(&t.contents, t.destination).unwrap();
                }
                Output::Event(Event::Connected) => started = Some(Instant::now()),
                Output::Event(_) => {}
            }
        };
        let now = Instant::now();
        assert!(now < give_up, "the publisher did not finish: connected {}", started.is_some());
        if let Some(start) = started {
            let video_due = start + Duration::from_micros(next_video as u64 * 1_000_000 / FPS);
            let audio_due = start + Duration::from_millis(next_audio as u64 * 20);
            if next_video < video.len() && now >= video_due {
                let w = rtc.writer(video_mid).unwrap();
                let pt = w.payload_params().find(|p| p.spec().codec == RtcCodec::H264).unwrap().pt();
                let at = MediaTime::from_90khz(next_video as u64 * 90_000 / FPS);
                w.write(pt, now, at, video[next_video].clone()).unwrap();
                next_video += 1;
                continue;
            }
            if next_audio < audio.len() && now >= audio_due {
                let w = rtc.writer(audio_mid).unwrap();
                let pt = w.payload_params().find(|p| p.spec().codec == RtcCodec::Opus).unwrap().pt();
                let at = MediaTime::new(next_audio as u64 * 960, str0m::media::Frequency::FORTY_EIGHT_KHZ);
                w.write(pt, now, at, audio[next_audio].clone()).unwrap();
                next_audio += 1;
                continue;
            }
            if next_video == video.len() && next_audio == audio.len() && now >= video_due + Duration::from_millis(500) {
                return;
            }
        }
        let mut wake = timeout.saturating_duration_since(now).max(Duration::from_millis(1));
        if started.is_some() {
            wake = wake.min(Duration::from_millis(5));
        }
        socket.set_read_timeout(Some(wake)).unwrap();
        let input = match socket.recv_from(&mut buf) {
            Ok((n, source)) => Input::Receive(
                Instant::now(),
                Receive { proto: Protocol::Udp, source, destination: local, contents: buf[..n].try_into().unwrap() },
            ),
            Err(_) => Input::Timeout(Instant::now()),
        };
        rtc.handle_input(input).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whip_publisher_reaches_the_hub_bit_identical_with_its_audio_as_aac() {
    let tmp = TempDir::new("whip-publisher");
    let video = h264_access_units(tmp.path());
    let audio = opus_packets(tmp.path());
    assert_eq!(video.len(), 120);
    assert!(audio.len() >= 195, "{} Opus packets", audio.len());

    let hub = Hub::new(HubOptions { grace_period: Duration::ZERO, ..HubOptions::default() });
    let keys = StaticKeys { app: "live".into(), keys: Some(HashSet::from(["camera-key".to_string()])) };
    let options = WhipOptions { udp: SocketAddr::from(([127, 0, 0, 1], 0)), ..WhipOptions::default() };
    let server = WhipServer::bind(hub.clone(), Arc::new(keys), options).await.unwrap();
    let cancel = CancellationToken::new();
    tokio::spawn(server.clone().run(cancel.clone()));

    // the offer: H.264 and Opus, send only
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut rtc = Rtc::builder().clear_codecs().enable_h264(true).enable_opus(true, false).build(Instant::now());
    rtc.add_local_candidate(Candidate::host(socket.local_addr().unwrap(), "udp").unwrap());
    let mut change = rtc.sdp_api();
    let video_mid = change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let audio_mid = change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, pending): (SdpOffer, _) = change.apply().unwrap();
    let offer = offer.to_sdp_string();

    let peer = SocketAddr::from(([127, 0, 0, 1], 1));
    let refused = server.publish(WhipRequest { peer, key: "wrong", offer: &offer }).await.unwrap_err();
    assert_eq!(refused.status(), 401, "{refused}");
    let answer = server.publish(WhipRequest { peer, key: "camera-key", offer: &offer }).await.unwrap();
    let again = server.publish(WhipRequest { peer, key: "camera-key", offer: &offer }).await.unwrap_err();
    assert_eq!(again.status(), 409, "one publisher per stream: {again}");
    rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer.sdp).unwrap()).unwrap();
    let mut sub = hub.subscribe(&answer.stream, SubscribeOptions::default()).unwrap();

    let sent = (video.clone(), audio.clone());
    let client = tokio::task::spawn_blocking(move || publish(rtc, socket, video_mid, audio_mid, &sent.0, &sent.1));
    let mut items = Vec::new();
    let collect = async {
        while let Some(item) = sub.recv().await {
            items.push(item);
        }
    };
    let stop = async {
        client.await.unwrap();
        assert!(server.stop(&answer.session), "the session is still there to stop");
    };
    tokio::time::timeout(Duration::from_secs(40), async { tokio::join!(collect, stop) }).await.unwrap();

    let info = items.iter().find_map(|i| if let MediaItem::Info(info) = i { Some(info.clone()) } else { None });
    let info = info.expect("the stream was described");
    assert!(matches!(info.video().unwrap().codec, Codec::H264(_)));
    match &info.audio().unwrap().codec {
        Codec::Aac(asc) => assert_eq!((asc.sample_rate, asc.channels), (48_000, 2), "{asc:?}"),
        other => panic!("audio is {other:?}"),
    }
    let packets: Vec<_> =
        items.iter().filter_map(|i| if let MediaItem::Packet(p) = i { Some(p) } else { None }).collect();
    let got: Vec<&[u8]> = packets.iter().filter(|p| p.kind == TrackKind::Video).map(|p| &p.payload[..]).collect();
    let mut sets = ParameterSets::default();
    let want: Vec<Vec<u8>> = video.iter().map(|au| annexb_to_avcc(au, &mut sets)).collect();
    assert_eq!(got.len(), want.len(), "every access unit arrived");
    assert!(got.iter().zip(&want).all(|(g, w)| *g == w.as_slice()), "every access unit is bit-identical");
    let dts: Vec<i64> = packets
        .iter()
        .filter(|p| p.kind == TrackKind::Video)
        .map(|p| p.dts.rescale(Timebase::HZ_90K).ticks())
        .collect();
    assert!(dts.windows(2).all(|w| w[1] - w[0] == 3000), "the clip's 30 fps timing: {dts:?}");
    let aac: Vec<_> = packets.iter().filter(|p| p.kind == TrackKind::Audio).collect();
    let seconds = aac.len() as f64 * 1024.0 / 48_000.0;
    assert!((3.5..4.5).contains(&seconds), "{seconds} s of AAC for 4 s of Opus");
    assert!(aac.windows(2).all(|w| w[1].dts.ticks() - w[0].dts.ticks() == 1024), "AAC frames follow each other");
    let first_video = packets.iter().find(|p| p.kind == TrackKind::Video).unwrap().dts.as_millis();
    let first_audio = aac[0].dts.as_millis();
    assert!((first_audio - first_video).abs() < 200, "audio starts with the video: {first_audio} / {first_video} ms");
    cancel.cancel();
}
