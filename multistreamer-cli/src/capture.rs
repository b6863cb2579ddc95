//! `multistreamer capture`: a webinar page's chat and presenter window, into a directory.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use multistreamer_core::capture::{ApiChat, Capture, CaptureOptions, Profile};
use multistreamer_core::platform::MtsLinkClient;
use multistreamer_core::platform::mtslink::DEFAULT_API_BASE;
use multistreamer_core::signal::shutdown_signal;

use crate::CliError;

#[derive(Args, Debug)]
pub struct CaptureArgs {
    /// The page: a webinar room (an MTS Link guest link), a YouTube watch page, any page.
    #[arg(long, required_unless_present = "from_mtslink_session")]
    url: Option<String>,
    /// After the webinar: build the capture from this MTS Link session (with --mtslink-token)
    /// instead of watching a page: its whole chat, and the presenter's video converted by
    /// MTS Link from the session's recording (unless --no-presenter).
    #[arg(long, value_name = "ID", conflicts_with_all = ["url", "mtslink_session"])]
    from_mtslink_session: Option<u64>,
    /// Directory for capture.json, chat.jsonl and presenter.mp4.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Selector presets: generic, mtslink, youtube.
    #[arg(long, default_value = "generic")]
    profile: Profile,
    /// CSS selector of the chat's container (its children are the messages).
    #[arg(long, value_name = "CSS")]
    chat_selector: Option<String>,
    /// CSS selector of a message inside the container [default: its direct children].
    #[arg(long, value_name = "CSS")]
    chat_item_selector: Option<String>,
    /// CSS selector of a message's author, inside the message.
    #[arg(long, value_name = "CSS")]
    chat_author_selector: Option<String>,
    /// CSS selector of a message's text, inside the message.
    #[arg(long, value_name = "CSS")]
    chat_text_selector: Option<String>,
    /// The attribute holding a message's id [default: derived from author and text].
    #[arg(long, value_name = "NAME")]
    chat_id_attribute: Option<String>,
    /// CSS selector of the presenter's window [default: the profile's, else the viewport].
    #[arg(long, value_name = "CSS")]
    presenter_selector: Option<String>,
    /// Capture the chat only (no presenter video, no virtual display; after the fact: no
    /// conversion ordered).
    #[arg(long)]
    no_presenter: bool,
    /// After the fact: the quality of the presenter video MTS Link converts (720, 1080).
    #[arg(long, default_value = "720")]
    presenter_quality: String,
    /// After the fact: how often the conversion is checked (seconds, or 30s, 1m).
    #[arg(long, value_parser = duration, default_value = "10")]
    conversion_poll: Duration,
    /// After the fact: how long to wait for MTS Link's conversion (the account converts one
    /// record at a time; another one may run first).
    #[arg(long, value_parser = duration, default_value = "4h")]
    conversion_timeout: Duration,
    /// Presenter frames per second.
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Browser window size.
    #[arg(long, value_name = "WxH", default_value = "1920x1080", value_parser = size)]
    window: (u32, u32),
    /// libx264 preset of the presenter video.
    #[arg(long, default_value = "veryfast")]
    preset: String,
    /// Stop after this long: seconds, or with a unit (90, 45m, 2h) [default: until Ctrl-C].
    #[arg(long, value_parser = duration)]
    duration: Option<Duration>,
    /// A label stored in the manifest.
    #[arg(long)]
    name: Option<String>,
    /// The name to join the room with, where it asks for one.
    #[arg(long)]
    guest_name: Option<String>,
    /// Also read this MTS Link event session's chat through the API (with --mtslink-token).
    #[arg(long, value_name = "ID")]
    mtslink_session: Option<u64>,
    /// MTS Link API key.
    #[arg(long, env = "MULTISTREAMER_MTSLINK_TOKEN", hide_env_values = true)]
    mtslink_token: Option<String>,
    /// MTS Link API base.
    #[arg(long, env = "MULTISTREAMER_MTSLINK_API_BASE", default_value = DEFAULT_API_BASE)]
    mtslink_api_base: String,
}

/// `1280x720`.
pub fn size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(|| format!("{s:?}: expected WIDTHxHEIGHT"))?;
    let n = |v: &str| v.trim().parse::<u32>().map_err(|_| format!("{s:?}: expected WIDTHxHEIGHT"));
    Ok((n(w)?, n(h)?))
}

/// `90`, `90s`, `45m`, `2h`.
pub fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let v: f64 = num.parse().map_err(|_| format!("{s:?}: expected seconds, or a number with s, m or h"))?;
    let secs = match unit {
        "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("{s:?}: the unit is s, m or h")),
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("{s:?}: must be more than 0"));
    }
    Ok(Duration::from_secs_f64(secs))
}

pub async fn capture(a: CaptureArgs) -> Result<(), CliError> {
    if let Some(session) = a.from_mtslink_session {
        return after_the_fact(session, a).await;
    }
    let url = a.url.clone().unwrap_or_default();
    let mut o = CaptureOptions::new(&url, &a.out, a.profile);
    let sel = &mut o.selectors;
    for (value, field) in [
        (a.chat_selector, &mut sel.chat_container),
        (a.chat_item_selector, &mut sel.chat_item),
        (a.chat_author_selector, &mut sel.chat_author),
        (a.chat_text_selector, &mut sel.chat_text),
        (a.chat_id_attribute, &mut sel.chat_id_attribute),
        (a.presenter_selector, &mut sel.presenter),
    ] {
        if let Some(v) = value {
            *field = v;
        }
    }
    o.presenter = !a.no_presenter;
    o.fps = a.fps;
    o.viewport = a.window;
    o.preset = a.preset;
    o.duration = a.duration;
    o.name = a.name.unwrap_or_default();
    o.guest_name = a.guest_name;
    if let Some(session_id) = a.mtslink_session {
        let token = a.mtslink_token.ok_or_else(|| CliError::Usage("--mtslink-session needs --mtslink-token".into()))?;
        let client = MtsLinkClient::new(&a.mtslink_api_base, &token).map_err(|e| CliError::Usage(e.to_string()))?;
        o.api_chat.push(ApiChat::MtsLink { client, session_id });
    }
    let out = o.out_dir.clone();
    let capture = Capture::start(o).map_err(|e| match e.kind() {
        multistreamer_core::error::ErrorKind::Config => CliError::Usage(e.to_string()),
        _ => CliError::Failed(e.to_string()),
    })?;
    println!("capturing {url} into {}", out.display());
    let stats = std::sync::Arc::clone(&capture.stats);
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let mut every = tokio::time::interval(Duration::from_secs(5));
    every.tick().await;
    loop {
        tokio::select! {
            () = &mut signal => {
                println!("stopping…");
                capture.stop();
                break;
            }
            _ = every.tick() => {
                let s = stats.snapshot();
                println!(
                    "{:>6.1} s  chat {}  presenter {} frames ({:.1} fps){}",
                    s.duration_ms as f64 / 1000.0, s.chat_messages, s.presenter_frames, s.presenter_fps,
                    s.last_error.map(|e| format!("  last error: {e}")).unwrap_or_default(),
                );
                if capture.is_finished() {
                    break;
                }
            }
        }
    }
    let manifest = tokio::task::spawn_blocking(move || capture.join())
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let c = &manifest.counters;
    println!(
        "done: {} chat messages, {} presenter frames ({:.1} fps), {} page loads, {} gaps; {}",
        c.chat_messages,
        c.presenter_frames,
        c.presenter_fps,
        c.page_loads,
        manifest.gaps.len(),
        out.join("capture.json").display()
    );
    Ok(())
}

/// `--from-mtslink-session`: the chat at once, then the presenter video when MTS Link has
/// converted it (Ctrl-C stops waiting; the chat is kept).
async fn after_the_fact(session: u64, a: CaptureArgs) -> Result<(), CliError> {
    use multistreamer_core::capture::after::{self, AfterOptions, FetchProgress};
    let token =
        a.mtslink_token.ok_or_else(|| CliError::Usage("--from-mtslink-session needs --mtslink-token".into()))?;
    let client = MtsLinkClient::new(&a.mtslink_api_base, &token).map_err(|e| CliError::Usage(e.to_string()))?;
    let o = AfterOptions {
        name: a.name.unwrap_or_default(),
        presenter: !a.no_presenter,
        quality: a.presenter_quality,
        poll: a.conversion_poll,
        timeout: a.conversion_timeout,
    };
    let mut built =
        after::from_mtslink_session(&client, session, &a.out, &o).await.map_err(|e| CliError::Failed(e.to_string()))?;
    println!("chat: {} messages of session {session}", built.manifest.counters.chat_messages);
    for note in &built.notes {
        eprintln!("note: {note}");
    }
    if let Some(record) = built.record.clone() {
        println!("presenter: ordering the video of recording {} from MTS Link (view \"none\")…", record.id);
        let cancel = tokio_util::sync::CancellationToken::new();
        let on_signal = cancel.clone();
        let signal = tokio::spawn(async move {
            shutdown_signal().await;
            on_signal.cancel();
        });
        let mut shown = String::new();
        let fetched = built
            .fetch_presenter(&client, &o, &cancel, |p| {
                let line = match p {
                    FetchProgress::WaitingForAccount { current } => format!(
                        "presenter: the account is converting another record{}: waiting",
                        current.map(|c| format!(" ({c})")).unwrap_or_default()
                    ),
                    FetchProgress::Converting { id, state, percent } => format!(
                        "presenter: conversion {id} {state}{}",
                        percent.map(|p| format!(" {p:.0} %")).unwrap_or_default()
                    ),
                    FetchProgress::Downloading { .. } => "presenter: downloading".into(),
                };
                if line != shown {
                    println!("{line}");
                    shown = line;
                }
            })
            .await;
        signal.abort();
        if let Err(e) = fetched {
            return Err(CliError::Failed(format!(
                "the chat is saved in {}; the presenter video: {e}",
                a.out.display()
            )));
        }
        let c = &built.manifest.counters;
        println!("presenter: {} frames ({:.1} fps)", c.presenter_frames, c.presenter_fps);
    }
    println!("done: {}", a.out.join("capture.json").display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("45m"), Ok(Duration::from_secs(2700)));
        assert_eq!(duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(duration("0").is_err() && duration("5d").is_err() && duration("soon").is_err());
        assert_eq!(size("1280x720"), Ok((1280, 720)));
        assert!(size("1280").is_err());
    }
}
