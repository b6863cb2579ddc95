//! The status lines of `relay` and `record`: one per destination, pull, rendition and
//! recording; redrawn in place on a terminal, printed when they change otherwise.

use std::io::{IsTerminal, Write};

use multistreamer_core::destination::DestinationState;
use multistreamer_core::relay::{DestinationStatus, Relay};
use multistreamer_core::source::PullHandle;

/// Prints one line per destination; on a terminal the lines are redrawn in place.
pub struct StatusPrinter {
    tty: bool,
    lines_drawn: usize,
    last: Vec<String>,
}

impl StatusPrinter {
    pub fn new() -> StatusPrinter {
        StatusPrinter { tty: std::io::stdout().is_terminal(), lines_drawn: 0, last: Vec::new() }
    }

    pub fn print(&mut self, lines: Vec<String>) {
        let mut out = std::io::stdout().lock();
        if self.tty {
            if self.lines_drawn > 0 {
                let _ = write!(out, "\x1b[{}A", self.lines_drawn);
            }
            for l in &lines {
                let _ = writeln!(out, "\x1b[2K{l}");
            }
            self.lines_drawn = lines.len();
        } else if lines != self.last {
            for l in &lines {
                let _ = writeln!(out, "{l}");
            }
        }
        let _ = out.flush();
        self.last = lines;
    }
}

/// Everything the relay runs, one line each.
pub fn status_lines(relay: &Relay, pull: Option<&PullHandle>) -> Vec<String> {
    let mut lines: Vec<String> = relay.destinations().iter().map(format_status).collect();
    if let Some(p) = pull {
        let st = p.status();
        let mut line = format!(
            "[{}] pull {}  {:<10} frames {}  reconnects {}",
            p.stream, p.url, st.state, st.frames, st.reconnects
        );
        if let (Some(e), false) = (&st.last_error, st.state == "live") {
            line.push_str("  last error: ");
            line.push_str(e);
        }
        lines.push(line);
    }
    #[cfg(feature = "media")]
    media_lines(relay, &mut lines);
    lines
}

/// The ladder's renditions and the recordings.
#[cfg(feature = "media")]
fn media_lines(relay: &Relay, lines: &mut Vec<String>) {
    for (stream, input_dropped, rungs) in relay.renditions() {
        if input_dropped > 0 {
            lines.push(format!(
                "[{stream}] ladder: {input_dropped} source packets dropped before decoding (machine too slow)"
            ));
        }
        for r in rungs {
            lines.push(format!(
                "[{stream}] rendition {} {}x{}  {} frames  {} dropped  {}",
                r.name,
                r.width,
                r.height,
                r.frames_encoded,
                r.frames_dropped,
                human_bytes(r.bytes_out)
            ));
        }
    }
    for (stream, file, bytes, dropped) in relay.recordings() {
        let file = file.map_or("(waiting for a keyframe)".to_string(), |f| f.display().to_string());
        lines.push(format!("[{stream}] recording -> {file}  {}  {dropped} dropped", human_bytes(bytes)));
    }
}

fn format_status(s: &DestinationStatus) -> String {
    let st = &s.stats;
    let mut line = format!(
        "[{}] {} -> {}  {:<10} {:>8.1} kbit/s  sent {:>9}  drops {}  reconnects {}",
        s.stream,
        s.name,
        s.target,
        st.state.as_str(),
        st.bitrate_bps as f64 / 1000.0,
        human_bytes(st.bytes_sent),
        st.dropped,
        st.reconnects,
    );
    if let (Some(err), false) = (&st.last_error, st.state == DestinationState::Live) {
        line.push_str("  last error: ");
        line.push_str(err);
    }
    line
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_are_shown_in_binary_units() {
        assert_eq!(super::human_bytes(512), "512 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
        assert_eq!(super::human_bytes(5 << 30), "5.0 GiB");
    }
}
