//! The suite's secrets scan finds what it looks for: a noted credential in a log or an API
//! answer, a stream key in a log; a stream key in an API answer is its owner's view.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;
use std::process::Command;

use multistreamer_test_support::TempDir;

fn scan(dir: &Path) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/secrets-scan.sh");
    let out = Command::new("bash").arg(script).arg(dir).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn the_scan_reports_each_kind_of_leak_and_passes_a_clean_run() {
    let tmp = TempDir::new("secrets-scan");
    let dir = tmp.join("scan");
    for sub in ["secrets", "logs", "responses"] {
        fs::create_dir_all(dir.join(sub)).unwrap();
    }
    fs::write(dir.join("secrets/1.txt"), "credential\tya29.token-value-1\nstream-key\t0123456789abcdef\n").unwrap();
    fs::write(dir.join("logs/1-0-server.log"), "INFO publish key=**** url=rtmp://h/app/****\n").unwrap();
    fs::write(dir.join("responses/1.txt"), "=== GET /api/streams/1\n{\"key\":\"0123456789abcdef\"}\n").unwrap();
    let (ok, text) = scan(&dir);
    assert!(ok, "a clean run: {text}");

    fs::write(dir.join("logs/1-1-server.log"), "DEBUG publishing to rtmp://h/app/0123456789abcdef\n").unwrap();
    let (ok, text) = scan(&dir);
    assert!(!ok && text.contains("0123456789abcdef"), "a stream key in a log: {text}");
    fs::remove_file(dir.join("logs/1-1-server.log")).unwrap();

    fs::write(dir.join("responses/2.txt"), "=== GET /api/platforms\n{\"token\":\"ya29.token-value-1\"}\n").unwrap();
    let (ok, text) = scan(&dir);
    assert!(!ok && text.contains("ya29.token-value-1"), "a token in an API answer: {text}");

    fs::remove_dir_all(dir.join("secrets")).unwrap();
    assert!(!scan(&dir).0, "nothing noted is a failure, not a pass");
}
