//! An RTSP proxy that moves a pushed stream's RTP timestamps to just before the 32-bit wrap
//! (with the RTCP sender reports' RTP times), so that a publisher's session looks as if it
//! had been running for half a day: the 90 kHz clock wraps after 13.3 hours.
//!
//! It sits between a real publisher (ffmpeg over interleaved TCP) and the ingest: RTSP
//! requests and answers pass unchanged; each interleaved RTP packet's timestamp gets a
//! fixed offset per channel pair, chosen so that the pair's first timestamp is `first`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A running proxy (one publisher connection at a time is what the tests need; each
/// connection gets its own offsets).
pub struct RtpShift {
    pub port: u16,
    /// Channels whose shifted timestamps went past 2³² and started again from zero.
    wrapped: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
}

impl RtpShift {
    /// Listens on a free port and forwards each connection to 127.0.0.1:`upstream`.
    pub fn start(upstream: u16, first: u32) -> RtpShift {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let wrapped = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (w, s) = (wrapped.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                let w = w.clone();
                std::thread::spawn(move || {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { return };
                    let (mut back_from, mut back_to) = (server.try_clone().unwrap(), client.try_clone().unwrap());
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut back_from, &mut back_to);
                        let _ = back_to.shutdown(Shutdown::Write);
                    });
                    forward(client, server, first, &w);
                });
            }
        });
        RtpShift { port, wrapped, stop }
    }

    /// Whether the timestamps on interleaved `channel` crossed the wrap.
    pub fn wrapped(&self, channel: u8) -> bool {
        self.wrapped.lock().unwrap().contains(&channel)
    }
}

impl Drop for RtpShift {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Publisher → ingest: RTSP messages as they are, interleaved RTP/RTCP shifted.
fn forward(mut client: TcpStream, mut server: TcpStream, first: u32, wrapped: &Mutex<Vec<u8>>) {
    let (mut buf, mut chunk) = (Vec::<u8>::new(), [0u8; 65536]);
    // per channel pair: the offset; per RTP channel: the last shifted timestamp
    let (mut offsets, mut last) = (HashMap::<u8, u32>::new(), HashMap::<u8, u32>::new());
    loop {
        let n = match client.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            let used = if buf.first() == Some(&b'$') {
                if buf.len() < 4 {
                    break;
                }
                let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
                if buf.len() < 4 + len {
                    break;
                }
                let channel = buf[1];
                let data = &mut buf[4..4 + len];
                // an RTP timestamp at byte 4; a sender report's RTP time at byte 16
                let at = match channel % 2 {
                    0 if data.len() >= 12 => Some(4),
                    1 if data.len() >= 20 && data[1] == 200 => Some(16),
                    _ => None,
                };
                if let Some(at) = at {
                    let ts = u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
                    let offset = *offsets.entry(channel / 2).or_insert_with(|| first.wrapping_sub(ts));
                    let shifted = ts.wrapping_add(offset);
                    data[at..at + 4].copy_from_slice(&shifted.to_be_bytes());
                    if channel % 2 == 0 {
                        if last.get(&channel).is_some_and(|&l| shifted < l && l - shifted > u32::MAX / 2) {
                            wrapped.lock().unwrap().push(channel);
                        }
                        last.insert(channel, shifted);
                    }
                }
                4 + len
            } else {
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { break };
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let body = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if buf.len() < end + 4 + body {
                    break;
                }
                end + 4 + body
            };
            if server.write_all(&buf[..used]).is_err() {
                return;
            }
            buf.drain(..used);
        }
    }
    let _ = server.shutdown(Shutdown::Write);
}
