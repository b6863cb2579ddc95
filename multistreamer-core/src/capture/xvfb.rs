//! A virtual X display (Xvfb) for the browser: the page renders there as on a screen, and
//! libavdevice's x11grab reads it at a steady frame rate (a headless browser only paints
//! when something changes, and slowly at 1080p).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::CaptureError;

/// A running Xvfb; killed when dropped.
#[derive(Debug)]
pub struct Xvfb {
    child: Child,
    display: u32,
}

impl Xvfb {
    /// Starts a display of `width`×`height` (24-bit) on a free display number (Xvfb picks
    /// it and writes it back through `-displayfd`).
    pub fn start(width: u32, height: u32) -> Result<Xvfb, CaptureError> {
        let mut child = Command::new("Xvfb")
            .args(["-displayfd", "1", "-screen", "0", &format!("{width}x{height}x24"), "-nolisten", "tcp", "-nocursor"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| CaptureError::Display(format!("cannot start Xvfb ({e}); install the xvfb package")))?;
        let Some(out) = child.stdout.take() else {
            let _ = child.kill();
            return Err(CaptureError::Display("Xvfb gave no output".into()));
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(out).read_line(&mut line);
            let _ = tx.send(line);
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let line = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).unwrap_or_default();
        match line.trim().parse() {
            Ok(display) => Ok(Xvfb { child, display }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(CaptureError::Display("Xvfb did not report its display".into()))
            }
        }
    }

    /// `:N`.
    pub fn name(&self) -> String {
        format!(":{}", self.display)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
