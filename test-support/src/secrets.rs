//! The suite-wide secrets scan's inputs. Tests note the secrets they hand to the programs
//! under test (stream keys, destination keys, OAuth and API tokens, passwords); every
//! scratch directory's logs are kept when it is removed, and the API responses a test
//! reads are kept too. After the whole suite, `scripts/secrets-scan.py` looks for each
//! secret in them: a stream key may appear in the API (its owner reads it there) but in no
//! log; every other secret in neither.
//!
//! Everything lands under `target/secrets-scan/`, one file per test process.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// What a secret is, which decides where it may appear.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Secret {
    /// A stream's ingest key: shown to its owner in the API, never logged.
    StreamKey,
    /// A destination's key, a token, a password: never logged, never in an API answer.
    Credential,
}

/// `target/secrets-scan`, found from the running test binary (`target/<profile>/deps/…`).
fn scan_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let target = exe.parent()?.parent()?.parent()?;
    Some(target.join("secrets-scan"))
}

/// A file a peer appends `kind<TAB>secret` lines to, itself (the platform stand-ins note
/// the tokens they issue).
pub(crate) fn peer_secrets_file(peer: &str) -> Option<PathBuf> {
    let dir = scan_dir()?.join("secrets");
    fs::create_dir_all(&dir).ok()?;
    Some(dir.join(format!("{}-{peer}.txt", std::process::id())))
}

fn append(sub: &str, text: &[u8]) {
    let Some(dir) = scan_dir().map(|d| d.join(sub)) else { return };
    if fs::create_dir_all(&dir).is_err() {
        return;
    }
    let file = dir.join(format!("{}.txt", std::process::id()));
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(file) {
        let _ = f.write_all(text);
    }
}

/// Notes a secret handed to a program under test. Short values (under 8 characters) are
/// not secrets worth the name and would match by chance: they are skipped.
pub fn note_secret(kind: Secret, value: &str) {
    let value = value.trim();
    if value.len() < 8 || value.contains(['\n', '\t']) {
        return;
    }
    let kind = match kind {
        Secret::StreamKey => "stream-key",
        Secret::Credential => "credential",
    };
    append("secrets", format!("{kind}\t{value}\n").as_bytes());
}

/// Keeps an API answer for the scan (bodies over 1 MB, bulk listings, are left out).
pub fn keep_response(method: &str, path: &str, body: &str) {
    if body.len() <= 1 << 20 {
        append("responses", format!("=== {method} {path}\n{body}\n").as_bytes());
    }
}

/// Keeps the logs (`*.log`, `*.out`) at the top of a scratch directory about to be removed.
pub(crate) fn keep_logs(dir: &Path) {
    static N: AtomicU32 = AtomicU32::new(0);
    let Some(out) = scan_dir().map(|d| d.join("logs")) else { return };
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let path = e.path();
        let is_log = path.extension().is_some_and(|x| x == "log" || x == "out");
        if is_log && path.is_file() && fs::create_dir_all(&out).is_ok() {
            let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            let n = N.fetch_add(1, Ordering::Relaxed);
            let _ = fs::copy(&path, out.join(format!("{}-{n}-{name}", std::process::id())));
        }
    }
}
