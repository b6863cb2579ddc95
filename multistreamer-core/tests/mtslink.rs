//! The MTS Link (webinar.ru) client against a local stand-in that follows the UserAPI v3
//! shapes (`test-support/peers/fake_mtslink.py`): bracket-key forms, 201/204 answers, the
//! session status machine, the chat as a bare array.
#![allow(clippy::unwrap_used)]

use multistreamer_core::platform::mtslink::MtsChatMessage;
use multistreamer_core::platform::*;
use multistreamer_test_support::*;

fn event(name: &str) -> NewEvent {
    NewEvent {
        name: name.into(),
        description: "Лекция по сетям".into(),
        starts_at: (2026, 12, 3, 9, 30),
        timezone: Some("Europe/Moscow".into()),
        access: EventAccess::Password("entry-pw".into()),
        kind: "webinar".into(),
    }
}

#[tokio::test]
async fn a_webinar_is_created_started_stopped_and_its_chat_read_once() {
    let fake = FakeMtsLink::start();
    let bad = MtsLinkClient::new(&fake.api_base(), "wrong-token").unwrap();
    let e = bad.check_token().await.unwrap_err();
    assert_eq!(e, MtsLinkError::TokenRejected);
    assert!(e.to_string().contains("rejected the API token"), "{e}");
    let api = MtsLinkClient::new(&fake.api_base(), FakeMtsLink::TOKEN).unwrap();
    api.check_token().await.unwrap();

    let (ev, session) = api.create_webinar(&event("Сети, лекция 1")).await.unwrap();
    assert!(ev.link.ends_with(&format!("/{}", ev.id)), "{}", ev.link);
    // the form arrived with the bracket keys the API expects
    let sent: serde_json::Value = serde_json::from_str(&fake.control("events", "{}")).unwrap();
    let form = &sent[ev.id.to_string()];
    assert_eq!(form["name"], "Сети, лекция 1");
    assert_eq!(form["startsAt[date][year]"], "2026");
    assert_eq!(form["startsAt[time][minute]"], "30");
    assert_eq!(form["accessSettings[isPasswordRequired]"], "1");
    assert_eq!(form["password"], "entry-pw");
    assert_eq!(form["timezone"], "Europe/Moscow");

    assert_eq!(api.session(session.id).await.unwrap().status, "ACTIVE");
    api.start(session.id).await.unwrap();
    assert_eq!(api.session(session.id).await.unwrap().status, "START");
    let again = api.start(session.id).await.unwrap_err();
    assert!(
        matches!(&again, MtsLinkError::Refused { message, .. } if message.contains("cannot be started")),
        "{again:?}"
    );

    let mut chat = api.chat_reader(session.id);
    assert!(chat.poll().await.unwrap().is_empty());
    fake.control(
        "chat",
        &format!(r#"{{"session":{},"author":"Ольга","text":"Вопрос 👋 <script>x</script>"}}"#, session.id),
    );
    fake.control("chat", &format!(r#"{{"session":{},"author":"Bob","text":"second"}}"#, session.id));
    let first: Vec<MtsChatMessage> = chat.poll().await.unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!((first[0].author_name.as_str(), first[0].text.as_str()), ("Ольга", "Вопрос 👋 <script>x</script>"));
    assert!(first[0].create_at.ends_with("+03:00"), "{}", first[0].create_at);
    fake.control("chat", &format!(r#"{{"session":{},"author":"Bob","text":"third"}}"#, session.id));
    let next = chat.poll().await.unwrap();
    assert_eq!(next.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["third"], "each message once");

    api.stop(session.id).await.unwrap();
    assert_eq!(api.session(session.id).await.unwrap().status, "STOP");
}

#[tokio::test]
async fn refusals_keep_their_field_errors() {
    let fake = FakeMtsLink::start();
    let api = MtsLinkClient::new(&fake.api_base(), FakeMtsLink::TOKEN).unwrap();
    let e = api.create_event(&event("")).await.unwrap_err();
    match e {
        MtsLinkError::Api { status: 400, field_errors, .. } => assert_eq!(field_errors[0].0, "name"),
        other => panic!("expected a field error, got {other:?}"),
    }
    assert!(matches!(api.session(42).await, Err(MtsLinkError::Api { status: 404, .. })));
}
