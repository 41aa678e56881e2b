//! The worker path end to end: a parent `msgr-load` starting two workers of itself.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port on which nothing listens (bound, then released).
fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    l.local_addr().expect("address").port()
}

fn run_against_nothing(args: &[&str]) -> (std::process::Output, Duration) {
    let port = dead_port();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_msgr-load"))
        .args(args)
        .args([
            "--msnp",
            &format!("127.0.0.1:{port}"),
            "--nexus",
            &format!("http://127.0.0.1:{port}/rdr/pprdr.asp"),
        ])
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    (out, started.elapsed())
}

#[test]
fn two_idle_workers_against_nothing_fail_fast_with_their_stderr() {
    let (out, took) = run_against_nothing(&["idle", "--workers", "2", "--count", "4"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert!(stderr.contains("worker"), "{stderr}");
    assert!(stderr.contains("failed"), "{stderr}");
    // The worker's own error, relayed from its stderr.
    assert!(stderr.to_lowercase().contains("refused"), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn two_login_workers_against_nothing_fail_fast() {
    let (out, took) = run_against_nothing(&["login", "--workers", "2", "--count", "4"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert!(stderr.contains("worker"), "{stderr}");
}
