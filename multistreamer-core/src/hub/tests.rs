use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::codec::aac::AudioSpecificConfig;
use crate::media::{Codec, Timebase, Track};

fn info() -> Arc<MediaInfo> {
    let asc = AudioSpecificConfig::parse(Bytes::from_static(&[0x11, 0x90])).expect("asc");
    let mut info = MediaInfo::default();
    info.set_track(Track {
        id: TrackId(0),
        codec: Codec::FlvVideo { codec: crate::media::FlvCodecTag::Id(7), sequence_header: None },
        timebase: Timebase::MILLIS,
    });
    info.set_track(Track { id: TrackId(1), codec: Codec::Aac(asc), timebase: Timebase::MILLIS });
    Arc::new(info)
}

/// A video packet of 100 bytes (shared with other modules' tests).
pub(crate) fn video(ms: i64, key: bool) -> Packet {
    Packet {
        track: TrackId(0),
        kind: TrackKind::Video,
        dts: Timestamp::from_millis(ms),
        pts: Timestamp::from_millis(ms),
        keyframe: key,
        payload: Bytes::from(vec![u8::from(key); 100]),
    }
}

fn audio(ms: i64) -> Packet {
    Packet {
        track: TrackId(1),
        kind: TrackKind::Audio,
        dts: Timestamp::from_millis(ms),
        pts: Timestamp::from_millis(ms),
        keyframe: true,
        payload: Bytes::from_static(&[1, 2, 3]),
    }
}

fn drain(sub: &mut Subscription) -> Vec<MediaItem> {
    std::iter::from_fn(|| sub.try_recv()).collect()
}

fn packet_times(items: &[MediaItem]) -> Vec<(TrackKind, i64, bool)> {
    items
        .iter()
        .filter_map(|i| match i {
            MediaItem::Packet(p) => Some((p.kind, p.dts.as_millis(), p.keyframe)),
            MediaItem::Info(_) => None,
        })
        .collect()
}

#[test]
fn late_subscriber_starts_with_info_and_cached_gop() {
    let hub = Hub::default();
    let publisher = hub.publish("s").expect("publish");
    publisher.set_info(info());
    publisher.send(video(0, false)); // before any keyframe: not cached
    publisher.send(video(33, true));
    publisher.send(audio(40));
    publisher.send(video(66, false));
    let mut sub = hub.subscribe("s", SubscribeOptions::default()).expect("live");
    let items = drain(&mut sub);
    assert!(matches!(items[0], MediaItem::Info(_)));
    assert_eq!(
        packet_times(&items),
        vec![(TrackKind::Video, 33, true), (TrackKind::Audio, 40, true), (TrackKind::Video, 66, false)]
    );
    publisher.send(video(100, false));
    assert_eq!(packet_times(&drain(&mut sub)), vec![(TrackKind::Video, 100, false)]);
}

#[test]
fn subscriber_without_cached_gop_waits_for_a_keyframe() {
    let hub = Hub::default();
    let publisher = hub.publish("s").expect("publish");
    publisher.set_info(info());
    let mut sub = hub.subscribe("s", SubscribeOptions::default()).expect("live");
    publisher.send(video(0, false));
    publisher.send(audio(10));
    publisher.send(video(33, true));
    let items = drain(&mut sub);
    assert_eq!(packet_times(&items), vec![(TrackKind::Video, 33, true)]);
    assert_eq!(sub.stats().dropped.load(Ordering::Relaxed), 2);
}

#[test]
fn slow_subscriber_drops_to_next_keyframe_without_blocking_others() {
    let hub = Hub::default();
    let publisher = hub.publish("s").expect("publish");
    publisher.set_info(info());
    let opts = SubscribeOptions { queue_capacity: Some(8), ..Default::default() };
    let mut slow = hub.subscribe("s", opts).expect("live");
    let mut fast =
        hub.subscribe("s", SubscribeOptions { queue_capacity: Some(1000), ..Default::default() }).expect("live");
    drain(&mut slow);
    drain(&mut fast);
    // 3 GOPs of 10 packets, nobody reads `slow`
    for gop in 0..3 {
        for i in 0..10 {
            publisher.send(video(gop * 1000 + i * 33, i == 0));
        }
    }
    let fast_items = packet_times(&drain(&mut fast));
    assert_eq!(fast_items.len(), 30, "the fast subscriber misses nothing");
    let slow_items = packet_times(&drain(&mut slow));
    assert_eq!(slow_items.len(), 8);
    assert!(slow.stats().dropped.load(Ordering::Relaxed) >= 22);
    // after draining, the slow one resumes exactly on the next keyframe
    publisher.send(video(3000, false));
    publisher.send(video(3033, true));
    publisher.send(video(3066, false));
    assert_eq!(packet_times(&drain(&mut slow)), vec![(TrackKind::Video, 3033, true), (TrackKind::Video, 3066, false)]);
}

#[test]
fn disconnect_policy_detaches_the_slow_subscriber() {
    let hub = Hub::default();
    let publisher = hub.publish("s").expect("publish");
    publisher.set_info(info());
    let opts = SubscribeOptions { queue_capacity: Some(4), policy: SlowSinkPolicy::Disconnect };
    let mut sub = hub.subscribe("s", opts).expect("live");
    for i in 0..10 {
        publisher.send(video(i * 33, i == 0));
    }
    assert_eq!(drain(&mut sub).len(), 5); // info + 4
    assert_eq!(sub.end_reason(), Some(SubscriptionEnd::TooSlow));
    assert_eq!(hub.get("s").map(|s| s.subscriber_count()), Some(0));
}

#[test]
fn second_publisher_is_refused() {
    let hub = Hub::default();
    let _p = hub.publish("s").expect("publish");
    assert_eq!(hub.publish("s").err(), Some(HubError::AlreadyPublishing("s".into())));
    assert!(hub.publish("other").is_ok());
}

#[tokio::test(start_paused = true)]
async fn returning_publisher_resumes_with_monotonic_timestamps() {
    let hub = Hub::new(HubOptions { grace_period: Duration::from_secs(5), ..Default::default() });
    let mut events = hub.events();
    let p = hub.publish("s").expect("publish");
    p.set_info(info());
    let mut sub = hub.subscribe("s", SubscribeOptions::default()).expect("live");
    for i in 0..5 {
        p.send(video(10_000 + i * 33, i == 0));
    }
    drop(p);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let p = hub.publish("s").expect("resume within grace");
    p.set_info(info());
    // the new session starts its clock at zero again
    p.send(video(0, true));
    p.send(audio(5));
    p.send(video(33, false));
    let times = packet_times(&drain(&mut sub));
    let video_times: Vec<i64> = times.iter().filter(|t| t.0 == TrackKind::Video).map(|t| t.1).collect();
    assert!(video_times.windows(2).all(|w| w[1] > w[0]), "{video_times:?}");
    assert_eq!(video_times[5], 10_000 + 4 * 33 + REBASE_GAP_MS);
    assert_eq!(events.try_recv().ok(), Some(HubEvent::StreamStarted("s".into())));
    assert_eq!(events.try_recv().ok(), Some(HubEvent::PublisherLeft("s".into())));
    assert_eq!(events.try_recv().ok(), Some(HubEvent::PublisherReturned("s".into())));
    drop(p);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(events.try_recv().ok(), Some(HubEvent::PublisherLeft("s".into())));
    assert_eq!(events.try_recv().ok(), Some(HubEvent::StreamEnded("s".into())));
    assert!(sub.recv().await.is_none());
    assert_eq!(sub.end_reason(), Some(SubscriptionEnd::StreamEnded));
    assert!(hub.get("s").is_none());
}

#[test]
fn backward_jump_within_a_session_is_rebased() {
    let hub = Hub::default();
    let p = hub.publish("s").expect("publish");
    p.set_info(info());
    let mut sub = hub.subscribe("s", SubscribeOptions::default()).expect("live");
    p.send(video(50_000, true));
    p.send(video(50_033, false));
    p.send(video(0, true)); // encoder restarted its clock
    let v: Vec<i64> = packet_times(&drain(&mut sub)).iter().map(|t| t.1).collect();
    assert_eq!(v, vec![50_000, 50_033, 50_033 + REBASE_GAP_MS]);
}

#[test]
fn gop_cache_is_bounded() {
    let hub = Hub::new(HubOptions { gop_cache_max_bytes: 250, ..Default::default() });
    let p = hub.publish("s").expect("publish");
    p.set_info(info());
    p.send(video(0, true));
    p.send(video(33, false));
    p.send(video(66, false)); // 300 bytes > 250: cache dropped
    let mut sub = hub.subscribe("s", SubscribeOptions::default()).expect("live");
    assert!(packet_times(&drain(&mut sub)).is_empty());
    p.send(video(100, false));
    p.send(video(133, true));
    assert_eq!(packet_times(&drain(&mut sub)), vec![(TrackKind::Video, 133, true)]);
}

#[test]
fn end_stream_closes_subscribers_and_the_publisher() {
    let hub = Hub::default();
    let mut events = hub.events();
    let p = hub.publish("s").expect("publish");
    p.set_info(info());
    let mut sub = hub.subscribe("s", SubscribeOptions::default()).expect("live");
    p.send(video(0, true));
    assert!(hub.end_stream("s"));
    assert!(!p.is_open());
    assert!(hub.get("s").is_none());
    let items = drain(&mut sub);
    assert_eq!(packet_times(&items).len(), 1, "queued items are still delivered");
    assert_eq!(sub.end_reason(), Some(SubscriptionEnd::StreamEnded));
    assert_eq!(events.try_recv().ok(), Some(HubEvent::StreamStarted("s".into())));
    assert_eq!(events.try_recv().ok(), Some(HubEvent::StreamEnded("s".into())));
    assert!(!hub.end_stream("s"));
}

#[tokio::test]
async fn subscribing_before_a_stream_starts_waits_for_it() {
    let hub = Hub::new(HubOptions::default());
    assert!(hub.subscribe("later", SubscribeOptions::default()).is_none(), "not live yet");
    let waiting = tokio::spawn({
        let hub = hub.clone();
        async move { hub.subscribe_when_live("later", SubscribeOptions::default()).await }
    });
    tokio::task::yield_now().await;
    let p = hub.publish("later").expect("publish");
    let mut sub =
        tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("woken").expect("task").expect("ok");
    p.send(video(0, true));
    assert!(matches!(sub.recv().await, Some(MediaItem::Packet(_))), "the waiting subscriber gets the stream");
    let never = tokio::spawn({
        let hub = hub.clone();
        async move { hub.subscribe_when_live("never", SubscribeOptions::default()).await.err() }
    });
    tokio::task::yield_now().await;
    hub.close();
    let err = tokio::time::timeout(Duration::from_secs(5), never).await.expect("woken").expect("task");
    assert_eq!(err, Some(HubError::Closed), "a clear error, not a silent wait, once the hub is shut down");
}
