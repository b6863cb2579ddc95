//! Pull an HLS playlist, record it as it comes (not re-encoded) and send it to an RTMP
//! destination — a library user's whole program.
//!
//! `hls_to_record_and_rtmp https://cdn.example/talk/index.m3u8 ./recordings rtmp://a.rtmp.youtube.com/live2/KEY`
//!
//! A VOD playlist plays once, then everything is closed in order; a live one runs until
//! Ctrl-C.
use multistreamer_core::pipeline::Pipeline;
use multistreamer_core::record::RecordingKind;
use multistreamer_core::signal::shutdown_signal;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [playlist, dir, destination] = args.as_slice() else {
        return Err("usage: hls_to_record_and_rtmp PLAYLIST_URL DIR RTMP_URL".into());
    };
    let running = Pipeline::new()
        .pull("talk", playlist)?
        .record(RecordingKind::Original, dir)
        .to("destination", destination)?
        .start()
        .await?;
    let failed = running.run_until(shutdown_signal()).await;
    failed.first().map_or(Ok(()), |(stream, e)| Err(format!("{stream}: {e}").into()))
}
