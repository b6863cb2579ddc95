//! A shutdown signal that arrives before its future is first polled is not lost (nor does
//! it kill the process): the handler is installed when `shutdown_signal()` is called.
//! Its own test binary, since it signals its own process.

use std::time::Duration;

use multistreamer_core::signal::shutdown_signal;

#[tokio::test]
async fn a_sigterm_before_the_first_poll_is_delivered() {
    let signal = shutdown_signal();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    // The process is still alive here (the signal was caught), and the future resolves.
    tokio::time::timeout(Duration::from_secs(5), signal).await.expect("the SIGTERM is seen");
}
