//! Your own `Source` → ladder → RTMP: a playout channel looping a clip `LOOPS` times
//! (timestamps continue across loops), transcoded to 240p and sent to a destination.
//! `custom_source clip.mp4 3 rtmp://a.rtmp.youtube.com/live2/KEY`
use multistreamer_core::pipeline::Pipeline;
use multistreamer_core::source::{from_blocking_iter, looped, paced};
use multistreamer_core::transcode::file::FileSource;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [clip, loops, destination] = args.as_slice() else {
        return Err("usage: custom_source CLIP LOOPS RTMP_URL".into());
    };
    // The channel: the clip read by libav on a thread of its own, `loops` times, in real time.
    let clip = clip.clone();
    let playout = looped(move || FileSource::open(&clip), Some(loops.parse()?));
    let source = paced(from_blocking_iter(playout)?);
    let pipeline = Pipeline::new().source("channel", source).ladder("240p")?;
    let failed = pipeline.to_rendition("240p", "out", destination)?.start().await?.run_to_end().await;
    failed.first().map_or(Ok(()), |(stream, e)| Err(format!("{stream}: {e}").into()))
}
