//! Relay one RTMP publisher to a destination, using the library's building blocks
//! directly (hub + ingest + supervised destination) rather than the assembled `Relay`.
//!
//! Run with `cargo run -p example-relay -- 127.0.0.1:1935 rtmp://a.rtmp.youtube.com/live2/KEY`
//! and publish to `rtmp://127.0.0.1:1935/live/mystream`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::sync::Arc;

use multistreamer_core::destination::{DestinationOptions, spawn_destination};
use multistreamer_core::hub::{Hub, HubEvent, HubOptions};
use multistreamer_core::rtmp::{RtmpConnector, RtmpIngest, RtmpIngestOptions, RtmpPushOptions, RtmpUrl, StaticKeys};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:1935".into()).parse()?;
    let dest: RtmpUrl = args.next().ok_or("usage: example-relay LISTEN_ADDR DESTINATION_URL")?.parse()?;

    let hub = Hub::new(HubOptions::default());
    let auth = Arc::new(StaticKeys { app: "live".into(), keys: Some(["mystream".to_string()].into()) });
    let ingest = RtmpIngest::bind(listen, hub.clone(), auth, RtmpIngestOptions::default()).await?;
    println!("publish to rtmp://{}/live/mystream", ingest.local_addr()?);
    let cancel = CancellationToken::new();
    tokio::spawn(ingest.run(cancel.clone()));

    let mut events = hub.events();
    while let Ok(ev) = events.recv().await {
        if let HubEvent::StreamStarted(name) = ev {
            let connector = Arc::new(RtmpConnector::new(dest.clone(), RtmpPushOptions::default()));
            let d = spawn_destination(
                hub.clone(),
                name,
                "dest".into(),
                connector,
                DestinationOptions::default(),
                cancel.child_token(),
            );
            let stats = d.stats.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                    let s = stats.snapshot();
                    println!(
                        "{} {} kbit/s, {} bytes, {} reconnects",
                        s.state,
                        s.bitrate_bps / 1000,
                        s.bytes_sent,
                        s.reconnects
                    );
                }
            });
        }
    }
    Ok(())
}
