//! The chunk reader on arbitrary input, split at arbitrary points: never panics, and the
//! messages it reads (and whether it refuses the stream) do not depend on how the input
//! was split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multistreamer_core::rtmp::chunk_reader::{ChunkError, ChunkLimits, ChunkReader, Message};

fn read(data: &[u8], step: usize) -> (Vec<Message>, Result<(), ChunkError>, u32) {
    let mut reader = ChunkReader::new(ChunkLimits::default());
    let mut messages = Vec::new();
    let mut result = Ok(());
    for piece in data.chunks(step.max(1)) {
        result = reader.feed(piece, |m| {
            messages.push(m);
            Ok::<(), ChunkError>(())
        });
        if result.is_err() {
            break;
        }
    }
    (messages, result, reader.chunk_size())
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else { return };
    let whole = read(data, data.len());
    let pieces = read(data, usize::from(split));
    assert_eq!(whole, pieces, "split-dependent result");
});
