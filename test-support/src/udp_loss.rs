//! A UDP proxy that loses datagrams: one client ↔ one server, each datagram in either
//! direction dropped with a fixed probability (a seeded generator, so a run is repeatable).

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct UdpLoss {
    pub port: u16,
    stop: Arc<AtomicBool>,
    /// Datagrams forwarded and dropped (both directions).
    forwarded: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

/// xorshift64*: enough randomness for dropping packets, no dependency.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl UdpLoss {
    /// Listens on a free loopback port and forwards to `server`, dropping `loss` (0..1) of
    /// the datagrams in each direction.
    pub fn start(server: SocketAddr, loss: f64, seed: u64) -> UdpLoss {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        back.connect(server).unwrap();
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        }
        let port = front.local_addr().unwrap().port();
        let (front, back) = (Arc::new(front), Arc::new(back));
        let stop = Arc::new(AtomicBool::new(false));
        let forwarded = Arc::new(AtomicU64::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let rng = Arc::new(Mutex::new(Rng(seed | 1)));
        let mut threads = Vec::new();
        for upstream in [true, false] {
            let (front, back) = (Arc::clone(&front), Arc::clone(&back));
            let (stop, forwarded, dropped) = (Arc::clone(&stop), Arc::clone(&forwarded), Arc::clone(&dropped));
            let (client, rng) = (Arc::clone(&client), Arc::clone(&rng));
            threads.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    let (n, to) = if upstream {
                        let Ok((n, from)) = front.recv_from(&mut buf) else { continue };
                        *client.lock().unwrap() = Some(from);
                        (n, None)
                    } else {
                        let Ok(n) = back.recv(&mut buf) else { continue };
                        let Some(c) = *client.lock().unwrap() else { continue };
                        (n, Some(c))
                    };
                    if rng.lock().unwrap().next_f64() < loss {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    forwarded.fetch_add(1, Ordering::Relaxed);
                    let _ = match to {
                        None => back.send(&buf[..n]),
                        Some(c) => front.send_to(&buf[..n], c),
                    };
                }
            }));
        }
        UdpLoss { port, stop, forwarded, dropped, threads }
    }

    /// (forwarded, dropped) datagrams so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.forwarded.load(Ordering::Relaxed), self.dropped.load(Ordering::Relaxed))
    }
}

impl Drop for UdpLoss {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
