//! The GOP cache: packets since the last video keyframe, bounded in bytes.

use crate::media::Packet;

#[derive(Debug)]
pub(super) struct GopCache {
    packets: Vec<Packet>,
    bytes: usize,
    max_bytes: usize,
    /// A keyframe has been seen and the cache has not overflowed since.
    active: bool,
}

impl GopCache {
    pub(super) fn new(max_bytes: usize) -> GopCache {
        GopCache { packets: Vec::new(), bytes: 0, max_bytes, active: false }
    }

    pub(super) fn push(&mut self, packet: &Packet, keyframe: bool) {
        if keyframe {
            self.packets.clear();
            self.bytes = 0;
            self.active = true;
        }
        if !self.active {
            return;
        }
        if self.bytes + packet.payload.len() > self.max_bytes {
            // A GOP longer than we are willing to hold: stop caching until the next keyframe.
            self.clear();
            return;
        }
        self.bytes += packet.payload.len();
        self.packets.push(packet.clone());
    }

    pub(super) fn packets(&self) -> &[Packet] {
        &self.packets
    }

    pub(super) fn clear(&mut self) {
        self.packets.clear();
        self.bytes = 0;
        self.active = false;
    }
}
