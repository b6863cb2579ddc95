//! Pulling a camera's (or any server's) RTSP stream into the hub with retina, reconnecting
//! with backoff when it drops. Credentials in the URL (`rtsp://user:pass@cam/stream`) are
//! used for the server's Basic/Digest challenge and never logged.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use retina::client::{PlayOptions, Session, SessionOptions, SetupOptions, TcpTransportOptions, Transport};
use retina::codec::{CodecItem, ParametersRef};
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span};

use crate::codec::aac::AudioSpecificConfig;
use crate::codec::avc::AvcDecoderConfig;
use crate::codec::hevc::HevcDecoderConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::hub::Hub;
use crate::media::{Codec, MediaInfo, MediaItem, Packet, Timebase, Timestamp, Track, TrackId, TrackKind};
use crate::source::{ItemReader, PullEnd, PullHandle, from_reader, spawn_pull};

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
    Ok(spawn_pull(hub, stream, shown, "RTSP", PullEnd::Reconnect, span, cancel, move |_status| {
        let (clean, creds) = (clean.clone(), creds.clone());
        async move { RtspSource::connect_to(&clean, creds, transport).await.map(from_reader) }
    }))
}

fn media_err(e: impl fmt::Display) -> Error {
    Error::new(ErrorKind::Protocol, e.to_string())
}

/// An RTSP server's (a camera's) H.264 and AAC streams, played with retina: a
/// [`crate::source::ItemReader`] (a [`crate::Source`] through
/// [`crate::source::from_reader`]). It ends with an error when no media came for 15 s.
pub struct RtspSource {
    demuxed: Pin<Box<retina::client::Demuxed>>,
    info: MediaInfo,
    dts_of: Option<crate::rtsp::depacketize::DtsEstimator>,
    /// A packet held back while the track change it brought goes out first.
    held: Option<Packet>,
}

impl fmt::Debug for RtspSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RtspSource").field("tracks", &self.info.tracks.len()).finish_non_exhaustive()
    }
}

impl RtspSource {
    /// DESCRIBE, SETUP (H.264 video and AAC audio) and PLAY `url`; credentials in the URL
    /// answer the server's challenge.
    pub async fn connect(url: &str, transport: PullTransport) -> Result<RtspSource> {
        let (clean, creds) = split_credentials(url)?;
        RtspSource::connect_to(&clean, creds, transport).await
    }

    async fn connect_to(
        url: &url::Url,
        creds: Option<retina::client::Credentials>,
        transport: PullTransport,
    ) -> Result<RtspSource> {
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
                (s.media() == "video"
                    && (s.encoding_name().eq_ignore_ascii_case("h264")
                        || s.encoding_name().eq_ignore_ascii_case("h265")))
                    || (s.media() == "audio" && s.encoding_name().eq_ignore_ascii_case("mpeg4-generic"))
            })
            .map(|(i, _)| i)
            .collect();
        if wanted.is_empty() {
            return Err(Error::new(ErrorKind::Protocol, "the server offers no H.264, H.265 or AAC stream"));
        }
        for &i in &wanted {
            let t = match transport {
                PullTransport::Tcp => Transport::Tcp(TcpTransportOptions::default()),
                PullTransport::Udp => Transport::Udp(Default::default()),
            };
            session.setup(i, SetupOptions::default().transport(t)).await.map_err(media_err)?;
        }
        let playing = session.play(PlayOptions::default()).await.map_err(media_err)?;
        let demuxed = Box::pin(playing.demuxed().map_err(media_err)?);
        info!("RTSP session playing");
        Ok(RtspSource { demuxed, info: MediaInfo::default(), dts_of: None, held: None })
    }

    /// Maps one retina item; `Some(info)` when it changed the tracks (the packet, if any,
    /// is then held until the info went out).
    fn on_item(&mut self, item: CodecItem) -> Result<Option<MediaItem>> {
        match item {
            CodecItem::VideoFrame(f) => {
                let id = TrackId(f.stream_id() as u32);
                let mut changed = false;
                let stream = &self.demuxed.streams()[f.stream_id()];
                if (f.has_new_parameters() || self.info.track(id).is_none())
                    && let Some(ParametersRef::Video(v)) = stream.parameters()
                {
                    // the record retina builds from the parameter sets: avcC or hvcC
                    let record = Bytes::copy_from_slice(v.extra_data());
                    let codec = if stream.encoding_name().eq_ignore_ascii_case("h265") {
                        Codec::Hevc(HevcDecoderConfig::parse(record)?)
                    } else {
                        Codec::H264(AvcDecoderConfig::parse(record)?)
                    };
                    self.info.set_track(Track { id, codec, timebase: Timebase::HZ_90K });
                    changed = true;
                }
                if self.info.track(id).is_none() {
                    return Ok(None);
                }
                let ts = f.timestamp();
                let clock = ts.clock_rate().get();
                let tb = Timebase::new(1, clock).unwrap_or(Timebase::HZ_90K);
                let est = self.dts_of.get_or_insert_with(|| crate::rtsp::depacketize::DtsEstimator::new(clock));
                let pts = ts.elapsed() + est.allowance();
                let dts = est.dts(pts);
                let packet = Packet {
                    track: id,
                    kind: TrackKind::Video,
                    dts: Timestamp::new(dts, tb),
                    pts: Timestamp::new(pts, tb),
                    keyframe: f.is_random_access_point(),
                    payload: Bytes::from(f.into_data()),
                };
                Ok(Some(self.emit(changed, packet)))
            }
            CodecItem::AudioFrame(f) => {
                let id = TrackId(f.stream_id() as u32);
                let mut changed = false;
                if self.info.track(id).is_none() {
                    let Some(ParametersRef::Audio(a)) = self.demuxed.streams()[f.stream_id()].parameters() else {
                        return Ok(None);
                    };
                    let asc = AudioSpecificConfig::parse(Bytes::copy_from_slice(a.extra_data()))?;
                    let tb = Timebase::new(1, a.clock_rate()).unwrap_or(Timebase::HZ_90K);
                    self.info.set_track(Track { id, codec: Codec::Aac(asc), timebase: tb });
                    changed = true;
                }
                let ts = f.timestamp();
                let clock = ts.clock_rate().get();
                let tb = Timebase::new(1, clock).unwrap_or(Timebase::HZ_90K);
                let t = Timestamp::new(ts.elapsed() + i64::from(clock) / 5, tb);
                let packet = Packet {
                    track: id,
                    kind: TrackKind::Audio,
                    dts: t,
                    pts: t,
                    keyframe: true,
                    payload: Bytes::copy_from_slice(f.data()),
                };
                Ok(Some(self.emit(changed, packet)))
            }
            _ => Ok(None),
        }
    }

    fn emit(&mut self, info_changed: bool, packet: Packet) -> MediaItem {
        if info_changed {
            self.held = Some(packet);
            MediaItem::Info(Arc::new(self.info.clone()))
        } else {
            MediaItem::Packet(packet)
        }
    }
}

impl ItemReader for RtspSource {
    async fn next_item(&mut self) -> Result<Option<MediaItem>> {
        if let Some(p) = self.held.take() {
            return Ok(Some(MediaItem::Packet(p)));
        }
        loop {
            let demuxed = &mut self.demuxed;
            let item = tokio::time::timeout(
                Duration::from_secs(15),
                std::future::poll_fn(|cx| demuxed.as_mut().poll_next(cx)),
            )
            .await
            .map_err(|_| Error::new(ErrorKind::Timeout, "no media for 15 s"))?;
            let Some(item) = item else { return Ok(None) };
            if let Some(out) = self.on_item(item.map_err(media_err)?)? {
                return Ok(Some(out));
            }
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
