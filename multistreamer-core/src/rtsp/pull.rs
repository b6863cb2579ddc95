//! Pulling a camera's (or any server's) RTSP stream into the hub with retina, reconnecting
//! with backoff when it drops. Credentials in the URL (`rtsp://user:pass@cam/stream`) are
//! used for the server's Basic/Digest challenge and never logged.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use retina::client::{PlayOptions, Session, SessionOptions, SetupOptions, TcpTransportOptions, Transport};
use retina::codec::{CodecItem, ParametersRef};
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span};

use crate::codec::aac::AudioSpecificConfig;
use crate::codec::avc::AvcDecoderConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::hub::Hub;
use crate::media::{Codec, MediaInfo, Packet, Timebase, Timestamp, Track, TrackId, TrackKind};
use crate::source::{PullEnd, PullHandle, PullStatus, spawn_pull};
use crate::sync::lock;

/// How RTP travels from the camera.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PullTransport {
    /// Interleaved in the RTSP connection (works through NAT and firewalls).
    #[default]
    Tcp,
    /// Separate UDP ports (lower latency on a clean LAN).
    Udp,
}

/// Splits `rtsp://user:pass@host/…` into the URL without credentials and the credentials.
pub fn split_credentials(url: &str) -> Result<(url::Url, Option<retina::client::Credentials>)> {
    let mut u = url::Url::parse(url).map_err(|e| Error::new(ErrorKind::Config, format!("RTSP URL: {e}")))?;
    if u.scheme() != "rtsp" {
        return Err(Error::new(ErrorKind::Config, "the pull URL must be rtsp://"));
    }
    let creds = (!u.username().is_empty()).then(|| retina::client::Credentials {
        username: percent_decode(u.username()),
        password: percent_decode(u.password().unwrap_or("")),
    });
    let _ = u.set_username("");
    let _ = u.set_password(None);
    Ok((u, creds))
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Pulls `url` into hub stream `stream` until `cancel`, reconnecting with backoff.
pub fn spawn_rtsp_pull(
    hub: Hub,
    stream: String,
    url: &str,
    transport: PullTransport,
    cancel: CancellationToken,
) -> Result<PullHandle> {
    let (clean, creds) = split_credentials(url)?;
    let shown = clean.to_string();
    let span = info_span!("rtsp_pull", stream = %stream, url = %shown);
    let task_stream = stream.clone();
    Ok(spawn_pull(stream, shown, "RTSP", span, cancel, move |status| {
        let (hub, stream, clean, creds) = (hub.clone(), task_stream.clone(), clean.clone(), creds.clone());
        async move {
            pull_once(&hub, &stream, &clean, creds, transport, &status).await?;
            Ok(PullEnd::Reconnect)
        }
    }))
}

fn media_err(e: impl fmt::Display) -> Error {
    Error::new(ErrorKind::Protocol, e.to_string())
}

async fn pull_once(
    hub: &Hub,
    stream: &str,
    url: &url::Url,
    creds: Option<retina::client::Credentials>,
    transport: PullTransport,
    status: &Mutex<PullStatus>,
) -> Result<()> {
    let options = SessionOptions::default().creds(creds).user_agent("multistreamer".into());
    let mut session = tokio::time::timeout(Duration::from_secs(10), Session::describe(url.clone(), options))
        .await
        .map_err(|_| Error::new(ErrorKind::Timeout, "DESCRIBE timed out"))?
        .map_err(media_err)?;
    let wanted: Vec<usize> = session
        .streams()
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            (s.media() == "video" && s.encoding_name().eq_ignore_ascii_case("h264"))
                || (s.media() == "audio" && s.encoding_name().eq_ignore_ascii_case("mpeg4-generic"))
        })
        .map(|(i, _)| i)
        .collect();
    if wanted.is_empty() {
        return Err(Error::new(ErrorKind::Protocol, "the server offers no H.264 or AAC stream"));
    }
    for &i in &wanted {
        let t = match transport {
            PullTransport::Tcp => Transport::Tcp(TcpTransportOptions::default()),
            PullTransport::Udp => Transport::Udp(Default::default()),
        };
        session.setup(i, SetupOptions::default().transport(t)).await.map_err(media_err)?;
    }
    let playing = session.play(PlayOptions::default()).await.map_err(media_err)?;
    let mut demuxed = Box::pin(playing.demuxed().map_err(media_err)?);
    let publisher = hub.publish(stream)?;
    info!("RTSP pull live");
    lock(status).state = "live";
    let mut info = MediaInfo::default();
    let mut dts_of = None::<crate::rtsp::depacketize::DtsEstimator>;
    loop {
        let item = tokio::time::timeout(
            Duration::from_secs(15),
            std::future::poll_fn(|cx| Pin::new(&mut demuxed).poll_next(cx)),
        )
        .await
        .map_err(|_| Error::new(ErrorKind::Timeout, "no media for 15 s"))?;
        let Some(item) = item else { return Ok(()) };
        if !publisher.is_open() {
            return Err(Error::new(ErrorKind::Shutdown, "the stream was ended by the server"));
        }
        match item.map_err(media_err)? {
            CodecItem::VideoFrame(f) => {
                let id = TrackId(f.stream_id() as u32);
                if (f.has_new_parameters() || info.track(id).is_none())
                    && let Some(ParametersRef::Video(v)) = demuxed.streams()[f.stream_id()].parameters()
                {
                    let cfg = AvcDecoderConfig::parse(Bytes::copy_from_slice(v.extra_data()))?;
                    info.set_track(Track { id, codec: Codec::H264(cfg), timebase: Timebase::HZ_90K });
                    publisher.set_info(Arc::new(info.clone()));
                }
                if info.track(id).is_none() {
                    continue;
                }
                let ts = f.timestamp();
                let clock = ts.clock_rate().get();
                let tb = Timebase::new(1, clock).unwrap_or(Timebase::HZ_90K);
                let est = dts_of.get_or_insert_with(|| crate::rtsp::depacketize::DtsEstimator::new(clock));
                let pts = ts.elapsed() + est.allowance();
                let dts = est.dts(pts);
                lock(status).frames += 1;
                publisher.send(Packet {
                    track: id,
                    kind: TrackKind::Video,
                    dts: Timestamp::new(dts, tb),
                    pts: Timestamp::new(pts, tb),
                    keyframe: f.is_random_access_point(),
                    payload: Bytes::from(f.into_data()),
                });
            }
            CodecItem::AudioFrame(f) => {
                let id = TrackId(f.stream_id() as u32);
                if info.track(id).is_none() {
                    if let Some(ParametersRef::Audio(a)) = demuxed.streams()[f.stream_id()].parameters() {
                        let asc = AudioSpecificConfig::parse(Bytes::copy_from_slice(a.extra_data()))?;
                        let rate = a.clock_rate();
                        let tb = Timebase::new(1, rate).unwrap_or(Timebase::HZ_90K);
                        info.set_track(Track { id, codec: Codec::Aac(asc), timebase: tb });
                        publisher.set_info(Arc::new(info.clone()));
                    } else {
                        continue;
                    }
                }
                let ts = f.timestamp();
                let clock = ts.clock_rate().get();
                let tb = Timebase::new(1, clock).unwrap_or(Timebase::HZ_90K);
                let t = Timestamp::new(ts.elapsed() + i64::from(clock) / 5, tb);
                publisher.send(Packet {
                    track: id,
                    kind: TrackKind::Audio,
                    dts: t,
                    pts: t,
                    keyframe: true,
                    payload: Bytes::copy_from_slice(f.data()),
                });
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_leave_the_url() {
        let (u, c) = split_credentials("rtsp://admin:p%40ss@10.0.0.5:554/Streaming/101").expect("valid");
        assert_eq!(u.as_str(), "rtsp://10.0.0.5:554/Streaming/101");
        let c = c.expect("credentials");
        assert_eq!((c.username.as_str(), c.password.as_str()), ("admin", "p@ss"));
        assert!(split_credentials("rtsp://cam/x").expect("valid").1.is_none());
        assert!(split_credentials("http://cam/x").is_err());
    }
}
