//! RTMP carries 32-bit millisecond timestamps: after 49.7 days of streaming they wrap to 0.
//! A clip whose timestamps start 4 s before that point is pushed by the library's RTMP
//! sink into its own RTMP ingest, which records it: the wire wraps, the recording does not
//! (its packets are the clip's, its decode times rise steadily with no gap).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use multistreamer_core::media::{MediaItem, Timestamp};
use multistreamer_core::pipeline::Pipeline;
use multistreamer_core::record::RecordingKind;
use multistreamer_core::source::{from_blocking_iter, paced};
use multistreamer_core::transcode::file::FileSource;
use multistreamer_test_support::*;

/// 4 s before 2³² ms.
const START_MS: i64 = (1 << 32) - 4_000;

fn shifted(item: MediaItem) -> MediaItem {
    match item {
        MediaItem::Packet(mut p) => {
            let by = |t: Timestamp| t.add_ticks(Timestamp::from_millis(START_MS).rescale(t.timebase()).ticks());
            (p.dts, p.pts) = (by(p.dts), by(p.pts));
            MediaItem::Packet(p)
        }
        info => info,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmp_timestamps_wrapping_past_32_bits_stay_monotonic_through_push_ingest_and_recording() {
    let tmp = TempDir::new("rtmp-ts-wrap");
    let clip = tmp.join("in.mp4");
    make_clip(&clip, 8, "320x240");
    let port = free_port();
    let recordings = tmp.join("rec");
    let receiver = Pipeline::new()
        .listen_rtmp(([127, 0, 0, 1], port).into(), "live")
        .record(RecordingKind::Original, &recordings)
        .start()
        .await
        .unwrap();

    let path = clip.display().to_string();
    let items = FileSource::open(&path).unwrap().map(|r| r.map(shifted));
    let source = paced(from_blocking_iter(items).unwrap());
    let sender = Pipeline::new()
        .source("clip", source)
        .to("receiver", &format!("rtmp://127.0.0.1:{port}/live/wrapped"))
        .unwrap()
        .start()
        .await
        .unwrap();
    let failed = sender.run_to_end().await;
    assert!(failed.is_empty(), "{failed:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    receiver.shutdown().await;

    let files: Vec<_> = std::fs::read_dir(&recordings).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "one recording, not cut at the wrap: {files:?}");
    assert_same_packets(&files[0], &clip);
    let dts = video_dts_ms(&files[0]);
    assert_eq!(dts.len(), 240, "8 s at 30 fps");
    assert!(dts.windows(2).all(|w| w[1] > w[0] && w[1] - w[0] <= 40), "decode times jump: {dts:?}");
    let span = dts[dts.len() - 1] - dts[0];
    assert!((7900..=8000).contains(&span), "the recording spans {span} ms for 8 s of video");
}
