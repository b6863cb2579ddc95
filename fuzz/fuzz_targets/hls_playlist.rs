//! The HLS playlist path: the M3U8 check and parse, variant choice on master playlists,
//! and AES-128 decryption of what follows (any bytes, any key).
#![no_main]

use libfuzzer_sys::fuzz_target;
use m3u8_rs::Playlist;
use multistreamer_core::hls::{VariantChoice, decrypt_aes128, parse_playlist};

fuzz_target!(|data: &[u8]| {
    if let Ok(playlist) = parse_playlist(data) {
        match playlist {
            Playlist::MasterPlaylist(m) => {
                for choice in ["highest", "lowest", "720p", "3000k", "low"] {
                    if let Some(v) = choice.parse::<VariantChoice>().expect("always parses").pick(&m) {
                        assert!(!v.is_i_frame);
                    }
                }
            }
            Playlist::MediaPlaylist(p) => {
                assert!(p.segments.iter().all(|s| s.duration.is_finite() && s.duration >= 0.0));
            }
        }
    }
    if data.len() >= 32 {
        let (key, rest) = data.split_at(16);
        let (iv, body) = rest.split_at(16);
        let key: [u8; 16] = key.try_into().expect("16 bytes");
        let iv: [u8; 16] = iv.try_into().expect("16 bytes");
        if let Ok(plain) = decrypt_aes128(&key, &iv, body) {
            assert!(plain.len() < body.len() && body.len() - plain.len() <= 16);
        }
    }
});
