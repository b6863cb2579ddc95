//! Platform clients (feature `platforms`): what Multistreamer needs from YouTube's Live
//! Streaming API and Google OAuth 2.0 to create a broadcast, wire its ingest address to a
//! destination, go live, watch its health and end it — and from MTS Link (webinar.ru) to
//! create a webinar, start and stop it and read its chat.
//!
//! * [`google`]: OAuth 2.0 — the device flow (default for a LAN-only server), the
//!   authorization-code flow with PKCE, refresh and revoke; [`google::OAuthTokens`] keeps an
//!   account's tokens fresh (refreshed before expiry and once when the API answers 401).
//! * [`youtube`]: `liveBroadcasts` (insert, bind, transition, list, delete), `liveStreams`
//!   (insert, list for health, delete), `liveChatMessages` (a chat reader); errors by
//!   `errors[0].reason`, each with a sentence an operator understands.
//!
//! * [`mtslink`]: webinar.ru / MTS Link UserAPI v3 — an event and its session, start and
//!   stop, status, chat.
//! * [`secrets`]: tokens sealed at rest (ChaCha20-Poly1305) under a key in a 0600 file.
//!
//! Base URLs are configurable so tests (and other deployments) point them at local
//! servers. Nothing here logs a token or a stream key.

pub mod google;
mod http;
pub mod mtslink;
pub mod secrets;
pub mod youtube;

pub use self::google::{DeviceCode, DevicePoll, GoogleOAuth, OAuthError, OAuthTokens, Pkce, Tokens};
pub use self::mtslink::{EventAccess, MtsLinkClient, MtsLinkError, NewEvent};
pub use self::secrets::{SecretBox, SecretError};
pub use self::youtube::{
    BroadcastPrivacy, IngestProtocol, LatencyPreference, LiveBroadcast, LiveStream, NewBroadcast, YouTubeClient,
    YouTubeError, YouTubeReason,
};

/// Runs an answer (the first two bytes are the HTTP status) through every parser the
/// platform clients apply to what a platform sends; never panics. For the fuzz target
/// `platform_answers`.
#[doc(hidden)]
pub fn fuzz_answer(data: &[u8]) -> usize {
    let (status, body) = match data {
        [a, b, rest @ ..] => (u16::from_be_bytes([*a, *b]), rest),
        _ => return 0,
    };
    youtube::fuzz_parsers(status, body) + google::fuzz_parsers(status, body) + mtslink::fuzz_parsers(status, body)
}

#[cfg(test)]
mod tests {
    use super::fuzz_answer;

    #[test]
    fn garbage_and_truncated_answers_are_errors_not_panics() {
        let envelope =
            br#"{"error":{"code":403,"message":"Stream is inactive","errors":[{"reason":"errorStreamInactive"}]}}"#;
        let stream = br#"{"id":"s","cdn":{"ingestionInfo":{"streamName":"k","ingestionAddress":"rtmp://h/live2"}},"status":{"streamStatus":"active"}}"#;
        for body in [&envelope[..], &stream[..], b"", b"\xff\xfe\x00", b"[]", b"null", b"{\"items\":[{\"id\":7}]}"] {
            for cut in 0..=body.len() {
                for status in [200u16, 401, 403, 500] {
                    let mut data = status.to_be_bytes().to_vec();
                    data.extend_from_slice(&body[..cut]);
                    fuzz_answer(&data);
                }
            }
        }
    }
}
