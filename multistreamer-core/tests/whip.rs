//! A WHIP publisher on the WebRTC stack the server uses (the test support's, its client
//! side) sends an H.264 clip made by ffmpeg and Opus encoded by ffmpeg's libopus, in real
//! time over loopback UDP. The hub gets every H.264 access unit bit-identical (as AVCC), on
//! the clip's own frame timing, and AAC audio over the same span.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use multistreamer_core::codec::avc::{ParameterSets, annexb_to_avcc};
use multistreamer_core::hub::{Hub, HubOptions, SubscribeOptions};
use multistreamer_core::media::{Codec, MediaItem, Timebase, TrackKind};
use multistreamer_core::rtmp::StaticKeys;
use multistreamer_core::whip::{WhipOptions, WhipRequest, WhipServer};
use multistreamer_test_support::*;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whip_publisher_reaches_the_hub_bit_identical_with_its_audio_as_aac() {
    let tmp = TempDir::new("whip-publisher");
    // 4 s, no B-frames (WebRTC carries none), a keyframe every second
    let clip = tmp.join("clip.mp4");
    let st = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "4"])
        .args(["-c:v", "libx264", "-profile:v", "baseline", "-pix_fmt", "yuv420p", "-g", "30"])
        .args(["-x264-params", "scenecut=0", "-c:a", "aac"])
        .arg(&clip)
        .status()
        .unwrap();
    assert!(st.success());
    let media = WhipMedia::from_clip(&clip, 30, tmp.path());
    assert_eq!(media.video.len(), 120);
    assert!(media.audio.len() >= 195, "{} Opus packets", media.audio.len());

    let hub = Hub::new(HubOptions { grace_period: Duration::ZERO, ..HubOptions::default() });
    let keys = StaticKeys { app: "live".into(), keys: Some(HashSet::from(["camera-key".to_string()])) };
    let options = WhipOptions { udp: SocketAddr::from(([127, 0, 0, 1], 0)), ..WhipOptions::default() };
    let server = WhipServer::bind(hub.clone(), Arc::new(keys), options).await.unwrap();
    let cancel = CancellationToken::new();
    tokio::spawn(server.clone().run(cancel.clone()));

    let (mut publisher, offer) = WhipPublisher::offer();
    let peer = SocketAddr::from(([127, 0, 0, 1], 1));
    let refused = server.publish(WhipRequest { peer, key: "wrong", offer: &offer }).await.unwrap_err();
    assert_eq!(refused.status(), 401, "{refused}");
    let answer = server.publish(WhipRequest { peer, key: "camera-key", offer: &offer }).await.unwrap();
    let again = server.publish(WhipRequest { peer, key: "camera-key", offer: &offer }).await.unwrap_err();
    assert_eq!(again.status(), 409, "one publisher per stream: {again}");
    publisher.accept(&answer.sdp);
    let mut sub = hub.subscribe(&answer.stream, SubscribeOptions::default()).unwrap();

    let sent = media.clone();
    let frames = sent.video.len();
    let client = tokio::task::spawn_blocking(move || publisher.run(&sent, frames, &Arc::new(AtomicBool::new(false))));
    let mut items = Vec::new();
    let collect = async {
        while let Some(item) = sub.recv().await {
            items.push(item);
        }
    };
    let stop = async {
        assert_eq!(client.await.unwrap(), frames);
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
    let want: Vec<Vec<u8>> = media.video.iter().map(|au| annexb_to_avcc(au, &mut sets)).collect();
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
