//! Your own `Source` → ladder → RTMP: a playout channel looping a clip `LOOPS` times
//! (timestamps continue across loops), transcoded to 240p and sent to a destination.
//! `custom_source clip.mp4 3 rtmp://a.rtmp.youtube.com/live2/KEY`
use multistreamer_core::media::MediaItem;
use multistreamer_core::pipeline::Pipeline;
use multistreamer_core::source::{from_blocking_iter, paced};
use multistreamer_core::transcode::file::FileSource;

/// The clip's items, `loops` times; each loop starts one frame after the previous one ended.
fn playout(clip: String, mut loops: u32) -> impl Iterator<Item = multistreamer_core::Result<MediaItem>> + Send {
    let (mut file, mut offset_ms, mut end_ms) = (None::<FileSource>, 0, -40);
    std::iter::from_fn(move || {
        loop {
            let Some(f) = file.as_mut() else {
                loops = loops.checked_sub(1)?;
                offset_ms = end_ms + 40;
                match FileSource::open(&clip) {
                    Ok(f) => file = Some(f),
                    Err(e) => return Some(Err(e)), // the source ends with the reason
                }
                continue;
            };
            match f.next() {
                Some(Ok(MediaItem::Packet(mut p))) => {
                    p.shift_millis(offset_ms);
                    end_ms = end_ms.max(p.pts.as_millis());
                    return Some(Ok(MediaItem::Packet(p)));
                }
                None => file = None,
                other => return other,
            }
        }
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [clip, loops, destination] = args.as_slice() else {
        return Err("usage: custom_source CLIP LOOPS RTMP_URL".into());
    };
    let source = paced(from_blocking_iter(playout(clip.clone(), loops.parse()?))?);
    let pipeline = Pipeline::new().source("channel", source).ladder("240p")?;
    let failed = pipeline.to_rendition("240p", "out", destination)?.start().await?.run_to_end().await;
    failed.first().map_or(Ok(()), |(stream, e)| Err(format!("{stream}: {e}").into()))
}
