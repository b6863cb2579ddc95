//! The YouTube and Google OAuth clients against a local stand-in that follows the platform's
//! documented shapes (`test-support/peers/fake_google.py`), with real peers for the media:
//! ffmpeg publishes into a relay whose destination is the ingest address the platform handed
//! out, nginx-rtmp plays YouTube's ingest, and the broadcast goes live only once data really
//! arrives there.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use multistreamer_core::pipeline::Pipeline;
use multistreamer_core::platform::google::YOUTUBE_SCOPE;
use multistreamer_core::platform::youtube::{ChatKind, NewStream};
use multistreamer_core::platform::*;
use multistreamer_test_support::*;

fn oauth(fake: &FakeGoogle) -> GoogleOAuth {
    GoogleOAuth::new(&fake.oauth_base(), &fake.auth_url(), FakeGoogle::CLIENT_ID, Some(FakeGoogle::CLIENT_SECRET))
        .unwrap()
}

/// Connects an account through the device flow, approving the code as the operator would.
async fn connect(fake: &FakeGoogle) -> Arc<OAuthTokens> {
    let oauth = oauth(fake);
    let code = oauth.start_device_flow(YOUTUBE_SCOPE).await.unwrap();
    assert_eq!(code.verification_url, "https://www.google.com/device");
    assert_eq!(oauth.poll_device_flow(&code).await.unwrap(), DevicePoll::Pending, "not approved yet");
    fake.control("approve", &format!(r#"{{"user_code":"{}"}}"#, code.user_code));
    let tokens = oauth.wait_device_flow(&code).await.unwrap();
    assert!(tokens.refresh_token.is_some(), "offline access: a refresh token");
    Arc::new(OAuthTokens::new(oauth, tokens))
}

fn new_broadcast(title: &str) -> NewBroadcast {
    NewBroadcast {
        title: title.into(),
        description: "Room A".into(),
        scheduled_start: "2026-12-02T10:00:00Z".into(),
        privacy: BroadcastPrivacy::Unlisted,
        latency: LatencyPreference::Low,
        dvr: true,
        made_for_kids: false,
        auto_start: false,
        auto_stop: false,
        monitor_stream: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_created_through_the_api_goes_live_when_data_flows_and_ends() {
    let tmp = TempDir::new("youtube-live");
    let clip = tmp.join("clip.mp4");
    make_clip(&clip, 12, "426x240");
    let nginx = Nginx::start(&tmp.join("nginx"), free_port(), "live2");
    let fake = FakeGoogle::start(&format!("rtmp://127.0.0.1:{}/live2", nginx.port), &nginx.dir.join("rec"));
    let yt = YouTubeClient::new(&fake.youtube_base(), connect(&fake).await).unwrap();

    let (broadcast, stream) = yt
        .create_broadcast(&new_broadcast("Conference"), &NewStream::for_picture("main", Some(240), Some(25.0)))
        .await
        .unwrap();
    assert_eq!(broadcast.life_cycle_status, "ready", "bound");
    assert_eq!(broadcast.bound_stream_id.as_deref(), Some(stream.id.as_str()));
    // Before any data: going live is refused with a reason an operator understands.
    let e = yt.transition(&broadcast.id, "live").await.unwrap_err();
    assert_eq!(e.reason(), Some(&YouTubeReason::ErrorStreamInactive));
    assert!(e.to_string().contains("no data"), "{e}");

    // The fake offers no RTMPS address: the destination falls back to RTMP.
    let ingest = stream.ingest_url(IngestProtocol::Rtmps, false).unwrap();
    assert!(ingest.starts_with(&format!("rtmp://127.0.0.1:{}/live2/", nginx.port)), "{ingest}");
    let running = Pipeline::new()
        .listen_rtmp("127.0.0.1:0".parse().unwrap(), "live")
        .to("youtube", &ingest)
        .unwrap()
        .start()
        .await
        .unwrap();
    let ingest_port = running.relay().local_addr().port();
    let publisher = {
        let (clip, url) = (clip.clone(), format!("rtmp://127.0.0.1:{ingest_port}/live/cam"));
        tokio::task::spawn_blocking(move || publish_to_end(&clip, &url))
    };

    let live = yt.go_live(&broadcast.id, Duration::from_millis(500), Duration::from_secs(30)).await.unwrap();
    assert_eq!(live.life_cycle_status, "live");
    let health = yt.stream(&stream.id).await.unwrap().unwrap();
    assert_eq!((health.stream_status.as_str(), health.health.as_deref()), ("active", Some("good")));
    assert_eq!(health.configuration_issues[0].kind, "gopSizeLong");
    // A second "go live" is redundant, which is a success.
    assert_eq!(yt.transition(&broadcast.id, "live").await.unwrap().life_cycle_status, "live");

    // The chat, read as a viewer writes in it.
    let chat_id = live.live_chat_id.clone().unwrap();
    fake.control("chat", &format!(r#"{{"liveChatId":"{chat_id}","author":"Анна","text":"Привет 👋 <b>"}}"#));
    let mut chat = yt.chat(&chat_id);
    let first = chat.next_batch().await.unwrap().unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].author.as_str(), first[0].text.as_str()), ("Анна", "Привет 👋 <b>"));
    assert_eq!(first[0].kind, ChatKind::Message);

    publisher.await.unwrap();
    let ended = yt.transition(&broadcast.id, "complete").await.unwrap();
    assert_eq!(ended.life_cycle_status, "complete");
    assert_eq!(chat.next_batch().await.unwrap().map(|b| b.len()), Some(0), "nothing new, and the chat is offline");
    assert!(chat.next_batch().await.unwrap().is_none(), "the reader stops once the chat ended");
    running.shutdown().await;
    let key = ingest.rsplit('/').next().unwrap();
    assert_same_packets(&only_recording(&nginx, key), &clip);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refreshed_once_and_a_revoked_grant_asks_for_a_reconnect() {
    let tmp = TempDir::new("youtube-tokens");
    let fake = FakeGoogle::start("rtmp://127.0.0.1:1/live2", tmp.path());
    let tokens = connect(&fake).await;
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    let tokens = Arc::new(OAuthTokens::new(tokens.oauth().clone(), tokens.current().await).on_refresh(move |_| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }));
    let yt = YouTubeClient::new(&fake.youtube_base(), Arc::clone(&tokens)).unwrap();
    let before = tokens.current().await.access_token;
    fake.control("expire_access", "{}");
    assert!(yt.upcoming_broadcasts().await.unwrap().is_empty(), "refreshed transparently");
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1, "one refresh");
    assert_ne!(tokens.current().await.access_token, before);
    assert!(tokens.current().await.refresh_token.is_some(), "the refresh token is kept");

    fake.control("revoke_all", "{}");
    let e = yt.upcoming_broadcasts().await.unwrap_err();
    assert!(e.needs_reconnect(), "{e:?}");
    assert!(e.to_string().contains("connect the account again"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_error_midway_leaves_nothing_orphaned_and_says_when_it_resets() {
    let tmp = TempDir::new("youtube-quota");
    let fake = FakeGoogle::start("rtmp://127.0.0.1:1/live2", tmp.path());
    let yt = YouTubeClient::new(&fake.youtube_base(), connect(&fake).await).unwrap();
    fake.fail_next("POST", "/youtube/v3/liveStreams", 403, "quotaExceeded");
    let e = yt.create_broadcast(&new_broadcast("Talk"), &NewStream::for_picture("main", None, None)).await.unwrap_err();
    assert_eq!(e.reason(), Some(&YouTubeReason::QuotaExceeded));
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("midnight Pacific Time"), "{e}");
    let state = fake.control("state", "{}");
    assert!(state.contains(r#""broadcasts": []"#) && state.contains(r#""streams": []"#), "{state}");

    fake.fail_next("POST", "/youtube/v3/liveBroadcasts", 403, "liveStreamingNotEnabled");
    let e = yt.insert_broadcast(&new_broadcast("Talk")).await.unwrap_err();
    assert!(e.to_string().contains("not enabled for live streaming"), "{e}");
    let mut untitled = new_broadcast("");
    untitled.title.clear();
    let e = yt.insert_broadcast(&untitled).await.unwrap_err();
    assert_eq!(e.reason(), Some(&YouTubeReason::Other("titleRequired".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_flows_refuse_what_google_refuses() {
    let tmp = TempDir::new("youtube-consent");
    let fake = FakeGoogle::start("rtmp://127.0.0.1:1/live2", tmp.path());
    let oauth = oauth(&fake);
    // a scope the device flow does not allow
    let e = oauth.start_device_flow("https://www.googleapis.com/auth/youtube.force-ssl").await.unwrap_err();
    assert!(matches!(e, OAuthError::InvalidScope(_)), "{e:?}");
    // denied on the consent page
    let code = oauth.start_device_flow(YOUTUBE_SCOPE).await.unwrap();
    fake.control("deny", "{}");
    assert_eq!(oauth.wait_device_flow(&code).await.unwrap_err(), OAuthError::AccessDenied);
    // the authorization-code flow with PKCE: the fake's consent page approves at once
    let pkce = Pkce::new().unwrap();
    let redirect = "https://multistreamer.example/oauth/youtube/callback";
    let page = oauth.authorization_url(redirect, "state-123", &pkce, YOUTUBE_SCOPE);
    assert!(page.contains("code_challenge_method=S256") && page.contains("access_type=offline"), "{page}");
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let answer = client.get(&page).send().await.unwrap();
    let location = answer.headers()["location"].to_str().unwrap().to_string();
    let back = url::Url::parse(&location).unwrap();
    let query: std::collections::HashMap<_, _> = back.query_pairs().into_owned().collect();
    assert_eq!(query["state"], "state-123");
    let wrong = oauth.exchange_code(&query["code"], "not-the-verifier-not-the-verifier-not-the-v", redirect).await;
    assert!(matches!(wrong, Err(OAuthError::InvalidGrant(_))), "{wrong:?}");
    let again = client.get(&page).send().await.unwrap();
    let back = url::Url::parse(again.headers()["location"].to_str().unwrap()).unwrap();
    let code = back.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let tokens = oauth.exchange_code(&code, &pkce.verifier, redirect).await.unwrap();
    assert!(tokens.refresh_token.is_some());
    oauth.revoke(tokens.refresh_token.as_deref().unwrap()).await.unwrap();
    assert!(matches!(oauth.refresh(tokens.refresh_token.as_deref().unwrap()).await, Err(OAuthError::InvalidGrant(_))));
}
