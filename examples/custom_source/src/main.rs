//! Your own `Source` → ladder → RTMP: a playout channel looping a clip `LOOPS` times
//! (timestamps continue across loops), transcoded to 240p and sent to a destination.
//! `custom_source clip.mp4 3 rtmp://a.rtmp.youtube.com/live2/KEY`
use multistreamer_core::media::MediaItem;
use multistreamer_core::pipeline::Pipeline;
use multistreamer_core::source::{from_blocking_iter, paced};
use multistreamer_core::transcode::file::FileSource;

struct Playout {
    clip: String,
    loops: u32,
    file: Option<FileSource>,
    offset_ms: i64,
    end_ms: i64,
}

impl Iterator for Playout {
    type Item = multistreamer_core::Result<MediaItem>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let Some(file) = self.file.as_mut() else {
                self.loops = self.loops.checked_sub(1)?;
                self.offset_ms = self.end_ms + 40; // one frame after the previous loop ended
                self.file = Some(FileSource::open(&self.clip).ok()?);
                continue;
            };
            match file.next() {
                Some(Ok(MediaItem::Packet(mut p))) => {
                    p.shift_millis(self.offset_ms);
                    self.end_ms = self.end_ms.max(p.pts.as_millis());
                    return Some(Ok(MediaItem::Packet(p)));
                }
                None => self.file = None,
                other => return other,
            }
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [clip, loops, destination] = args.as_slice() else {
        return Err("usage: custom_source CLIP LOOPS RTMP_URL".into());
    };
    let playout = Playout { clip: clip.clone(), loops: loops.parse()?, file: None, offset_ms: 0, end_ms: -40 };
    let pipeline = Pipeline::new().source("channel", paced(from_blocking_iter(playout)?)).ladder("240p")?;
    pipeline.to_rendition("240p", "out", destination)?.start().await?.run_to_end().await;
    Ok(())
}
