//! Platform clients (feature `platforms`): what Multistreamer needs from YouTube's Live
//! Streaming API and Google OAuth 2.0 to create a broadcast, wire its ingest address to a
//! destination, go live, watch its health and end it.
//!
//! * [`google`]: OAuth 2.0 — the device flow (default for a LAN-only server), the
//!   authorization-code flow with PKCE, refresh and revoke; [`google::OAuthTokens`] keeps an
//!   account's tokens fresh (refreshed before expiry and once when the API answers 401).
//! * [`youtube`]: `liveBroadcasts` (insert, bind, transition, list, delete), `liveStreams`
//!   (insert, list for health, delete), `liveChatMessages` (a chat reader); errors by
//!   `errors[0].reason`, each with a sentence an operator understands.
//!
//! Base URLs are configurable so tests (and other deployments) point them at local
//! servers. Nothing here logs a token or a stream key.

pub mod google;
mod http;
pub mod youtube;

pub use self::google::{DeviceCode, DevicePoll, GoogleOAuth, OAuthError, OAuthTokens, Pkce, Tokens};
pub use self::youtube::{
    BroadcastPrivacy, IngestProtocol, LatencyPreference, LiveBroadcast, LiveStream, NewBroadcast, YouTubeClient,
    YouTubeError, YouTubeReason,
};
