//! The library as a user drives it, in-process: a generated `Source` through a `Pipeline`
//! into two outputs of the user's own (`Connector` + `Sink`), checked item by item.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use multistreamer_core::media::{
    Codec, FlvCodecTag, MediaInfo, MediaItem, Packet, Timestamp, Track, TrackId, TrackKind,
};
use multistreamer_core::pipeline::Pipeline;
use multistreamer_core::sink::{BoxFuture, Connector, Sink};
use multistreamer_core::source::{channel, paced};
use multistreamer_core::{Error, ErrorKind, Result};

/// What one output received: (dts ms, keyframe, payload) per packet, infos counted, and
/// whether it was closed gracefully.
#[derive(Default)]
struct Received {
    infos: usize,
    packets: Vec<(i64, bool, Bytes)>,
    finished: bool,
}

struct Recording(Arc<Mutex<Received>>);

impl Sink for Recording {
    fn enqueue(&mut self, items: &[MediaItem]) -> Result<()> {
        let mut r = self.0.lock().unwrap();
        for item in items {
            match item {
                MediaItem::Info(_) => r.infos += 1,
                MediaItem::Packet(p) => r.packets.push((p.dts.as_millis(), p.keyframe, p.payload.clone())),
            }
        }
        Ok(())
    }

    fn poll_flush(&mut self, _cx: &mut Context<'_>) -> Poll<Result<u64>> {
        Poll::Ready(Ok(0))
    }

    fn poll_peer(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Pending
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
        self.0.lock().unwrap().finished = true;
        Box::pin(async { Ok(()) })
    }
}

struct Output(Arc<Mutex<Received>>);

impl Connector for Output {
    fn connect(&self) -> BoxFuture<'_, Result<Box<dyn Sink>>> {
        let sink = Recording(Arc::clone(&self.0));
        Box::pin(async move { Ok(Box::new(sink) as Box<dyn Sink>) })
    }

    fn describe(&self) -> String {
        "in-process output".into()
    }
}

fn info() -> Arc<MediaInfo> {
    let mut i = MediaInfo::default();
    let codec = Codec::FlvVideo { codec: FlvCodecTag::Id(7), sequence_header: None };
    i.set_track(Track { id: TrackId(0), codec, timebase: multistreamer_core::media::Timebase::MILLIS });
    Arc::new(i)
}

fn frame(n: i64) -> Packet {
    Packet {
        track: TrackId(0),
        kind: TrackKind::Video,
        dts: Timestamp::from_millis(n * 40),
        pts: Timestamp::from_millis(n * 40),
        keyframe: n % 25 == 0,
        payload: Bytes::from(format!("frame {n} ").repeat(1 + (n as usize % 7))),
    }
}

#[tokio::test]
async fn a_generated_source_reaches_every_output_complete_and_in_order() {
    let (tx, source) = channel(16);
    let (a, b) = (Arc::new(Mutex::new(Received::default())), Arc::new(Mutex::new(Received::default())));
    let running = Pipeline::new()
        .source("generated", paced(source))
        .to_connector("a", Arc::new(Output(Arc::clone(&a))))
        .to_connector("b", Arc::new(Output(Arc::clone(&b))))
        .start()
        .await
        .unwrap();
    // The outputs attach as soon as the stream exists; wait for both, then generate.
    let hub = running.relay().hub().clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while hub.get("generated").is_none_or(|s| s.subscriber_count() < 2) {
        assert!(tokio::time::Instant::now() < deadline, "the outputs never attached");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tx.send(Ok(MediaItem::Info(info()))).await.unwrap();
    for n in 0..100 {
        tx.send(Ok(MediaItem::Packet(frame(n)))).await.unwrap();
    }
    drop(tx); // the source ends
    let failed = tokio::time::timeout(Duration::from_secs(30), running.run_to_end())
        .await
        .expect("the pipeline ends with its input");
    assert!(failed.is_empty(), "the source ended cleanly: {failed:?}");
    for out in [a, b] {
        let r = out.lock().unwrap();
        assert_eq!(r.infos, 1);
        let expected: Vec<(i64, bool, Bytes)> =
            (0..100).map(frame).map(|p| (p.dts.as_millis(), p.keyframe, p.payload)).collect();
        assert_eq!(r.packets, expected, "every packet, in order, bytes unchanged");
        assert!(r.finished, "closed gracefully at the end");
    }
}

#[tokio::test]
async fn a_failing_source_ends_its_stream_and_its_error_is_kept() {
    let (tx, source) = channel(4);
    let out = Arc::new(Mutex::new(Received::default()));
    let running = Pipeline::new()
        .source("cam", source)
        .to_connector("out", Arc::new(Output(Arc::clone(&out))))
        .start()
        .await
        .unwrap();
    tx.send(Ok(MediaItem::Info(info()))).await.unwrap();
    tx.send(Err(Error::new(ErrorKind::Protocol, "camera sent garbage"))).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !running.inputs_finished() {
        assert!(tokio::time::Instant::now() < deadline, "the source never ended");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(running.input_errors(), [("cam".to_string(), "camera sent garbage".to_string())]);
    running.shutdown().await;
}

#[tokio::test]
async fn pipelines_without_inputs_or_with_clashing_names_are_refused() {
    assert!(Pipeline::new().start().await.is_err(), "no input");
    let (_tx1, s1) = channel(1);
    let (_tx2, s2) = channel(1);
    let err = Pipeline::new().source("a", s1).source("a", s2).start().await.unwrap_err();
    assert!(err.to_string().contains("used twice"), "{err}");
    assert!(Pipeline::new().pull("x", "ftp://camera/1").is_err(), "not an input URL");
}
