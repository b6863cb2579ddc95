//! RTMP destinations that misbehave on purpose, for isolation tests: one that accepts the
//! TCP connection and never answers the handshake, one that refuses the publish, one that
//! resets the connection after some bytes, one that reads at a trickle. Each runs on its
//! own thread and serves every connection the same way (a reconnecting client meets the
//! same fault again).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult};

/// How a [`FaultyRtmp`] misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Accepts TCP, reads, never sends a byte.
    SilentHandshake,
    /// Handshakes and accepts `connect`, answers `publish` with an error status.
    RefusePublish,
    /// Accepts the publish, then resets the connection (RST) once this many bytes came in.
    ResetAfter(u64),
    /// Accepts the publish, then reads this many bytes per second.
    Slow(u64),
}

/// A misbehaving RTMP server on 127.0.0.1.
pub struct FaultyRtmp {
    pub port: u16,
    /// Connections accepted so far.
    pub connections: Arc<AtomicU64>,
    /// Bytes read after the publish was accepted, over all connections.
    pub media_bytes: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl FaultyRtmp {
    pub fn start(fault: Fault) -> FaultyRtmp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicU64::new(0));
        let media_bytes = Arc::new(AtomicU64::new(0));
        let (s, c, m) = (Arc::clone(&stop), Arc::clone(&connections), Arc::clone(&media_bytes));
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((sock, _)) => {
                        c.fetch_add(1, Ordering::Relaxed);
                        let (s, m) = (Arc::clone(&s), Arc::clone(&m));
                        std::thread::spawn(move || serve(sock, fault, &s, &m));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        FaultyRtmp { port, connections, media_bytes, stop }
    }

    pub fn url(&self, key: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{key}", self.port)
    }
}

impl Drop for FaultyRtmp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(mut sock: TcpStream, fault: Fault, stop: &AtomicBool, media: &AtomicU64) {
    sock.set_nonblocking(false).unwrap_or(());
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap_or(());
    let mut buf = vec![0u8; 64 * 1024];
    if fault == Fault::SilentHandshake {
        // read and drop until the client gives up
        while !stop.load(Ordering::Relaxed) {
            match sock.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => return,
            }
        }
        return;
    }
    let Some(mut session) = negotiate(&mut sock, fault, stop, &mut buf) else { return };
    let started = Instant::now();
    let mut got = 0u64;
    loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let want = match fault {
            // a trickle: read no more than the budget allows so far
            Fault::Slow(rate) => {
                let budget = (started.elapsed().as_secs_f64() * rate as f64) as u64;
                if budget <= got {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                ((budget - got) as usize).min(buf.len())
            }
            _ => buf.len(),
        };
        match sock.read(&mut buf[..want]) {
            Ok(0) => return,
            Ok(n) => {
                got += n as u64;
                media.fetch_add(n as u64, Ordering::Relaxed);
                // keep the session's acknowledgements flowing
                if let Ok(results) = session.handle_input(&buf[..n]) {
                    for r in results {
                        if let ServerSessionResult::OutboundResponse(p) = r {
                            let _ = sock.write_all(&p.bytes);
                        }
                    }
                }
                if let Fault::ResetAfter(limit) = fault
                    && got >= limit
                {
                    reset(sock);
                    return;
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

/// Closes with RST instead of FIN (SO_LINGER with a zero timeout).
fn reset(sock: TcpStream) {
    let _ = socket2::SockRef::from(&sock).set_linger(Some(Duration::ZERO));
    drop(sock);
}

/// The handshake, `connect` accepted, then the publish accepted or refused (`None`: the
/// connection is over).
fn negotiate(sock: &mut TcpStream, fault: Fault, stop: &AtomicBool, buf: &mut [u8]) -> Option<ServerSession> {
    let mut hs = Handshake::new(PeerType::Server);
    let rest = loop {
        if stop.load(Ordering::Relaxed) {
            return None;
        }
        let n = match sock.read(buf) {
            Ok(0) => return None,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(_) => return None,
        };
        match hs.process_bytes(&buf[..n]).ok()? {
            HandshakeProcessResult::InProgress { response_bytes } => sock.write_all(&response_bytes).ok()?,
            HandshakeProcessResult::Completed { response_bytes, remaining_bytes } => {
                sock.write_all(&response_bytes).ok()?;
                break remaining_bytes;
            }
        }
    };
    let (mut session, initial) = ServerSession::new(ServerSessionConfig::new()).ok()?;
    let mut pending: Vec<ServerSessionResult> = initial;
    let mut input = rest;
    loop {
        if !input.is_empty() {
            pending.extend(session.handle_input(&input).ok()?);
            input.clear();
        }
        let mut published = false;
        for r in std::mem::take(&mut pending) {
            match r {
                ServerSessionResult::OutboundResponse(p) => sock.write_all(&p.bytes).ok()?,
                ServerSessionResult::RaisedEvent(ServerSessionEvent::ConnectionRequested { request_id, .. }) => {
                    for r in session.accept_request(request_id).ok()? {
                        if let ServerSessionResult::OutboundResponse(p) = r {
                            sock.write_all(&p.bytes).ok()?;
                        }
                    }
                }
                ServerSessionResult::RaisedEvent(ServerSessionEvent::PublishStreamRequested { request_id, .. }) => {
                    let answer = if fault == Fault::RefusePublish {
                        session.reject_request(request_id, "NetStream.Publish.BadName", "stream key refused by test")
                    } else {
                        published = true;
                        session.accept_request(request_id)
                    };
                    for r in answer.ok()? {
                        if let ServerSessionResult::OutboundResponse(p) = r {
                            sock.write_all(&p.bytes).ok()?;
                        }
                    }
                }
                _ => {}
            }
        }
        if published {
            return Some(session);
        }
        let n = loop {
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            match sock.read(buf) {
                Ok(0) => return None,
                Ok(n) => break n,
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => return None,
            }
        };
        input.extend_from_slice(&buf[..n]);
    }
}
