//! Switchboard figures over real sockets: relay throughput (messages per second through one
//! session, one sender, one reader) and the round trip of a ping-pong between two clients
//! (p50, p99).
//!
//! Small by default (a correctness check); measure with:
//! `MSGR_SB_MESSAGES=200000 MSGR_SB_ROUNDS=5000 cargo test --release -p msgr-it --test sb_throughput -- --nocapture`.

#![allow(clippy::unwrap_used)]

use anyhow::{ensure, Result};
use msgr_it::{Conn, ServerOptions, TestServer};
use msgr_proto::Dialect;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PASSWORD: &str = "pw-123456";

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Logs `name` in (MSNP12), sets it online and returns the NS connection.
async fn online(srv: &TestServer, name: &str) -> Result<Conn> {
    let email = format!("{name}@x.com");
    srv.add_account(&email, PASSWORD, name).await?;
    let mut ns = srv.login(Dialect::Msnp12, &email, PASSWORD).await?;
    ns.send("CHG 6 NLN 1342177280:0").await?;
    ns.expect_line("CHG 6 NLN 1342177280:0").await?;
    Ok(ns)
}

/// Alice (XFR/USR/CAL) and bob (RNG/ANS) in one session; returns their switchboard connections.
async fn session(srv: &TestServer) -> Result<(Conn, Conn, Conn, Conn)> {
    let mut a = online(srv, "alice").await?;
    let mut b = online(srv, "bob").await?;
    a.send("XFR 10 SB").await?;
    let xfr = a.expect_match("XFR 10 SB {any} CKI {any}").await?;
    let cookie = xfr.rsplit(' ').next().unwrap().to_owned();
    let mut sa = srv.connect().await?;
    sa.send(&format!("USR 1 alice@x.com {cookie}")).await?;
    sa.expect_match("USR 1 OK {rest}").await?;
    sa.send("CAL 2 bob@x.com").await?;
    let cal = sa.expect_match("CAL 2 RINGING {digits}").await?;
    let sid = cal.rsplit(' ').next().unwrap().to_owned();
    let rng = b.expect_match("RNG {rest}").await?;
    let cookie = rng.split(' ').nth(4).unwrap().to_owned();
    let mut sb = srv.connect().await?;
    sb.send(&format!("ANS 1 bob@x.com {cookie} {sid}")).await?;
    sb.expect_match("IRO {rest}").await?;
    sb.expect_line("ANS 1 OK").await?;
    sa.expect_match("JOI {rest}").await?;
    Ok((a, b, sa, sb))
}

fn msg(mode: &str, body: &str) -> Vec<u8> {
    let payload = format!(
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nX-MMS-IM-Format: FN=Arial; EF=; CO=0; CS=0; PF=22\r\n\r\n{body}"
    );
    let mut m = format!("MSG 1 {mode} {}\r\n", payload.len()).into_bytes();
    m.extend_from_slice(payload.as_bytes());
    m
}

#[tokio::test(flavor = "multi_thread")]
async fn relay_throughput_and_ping_pong_latency() -> Result<()> {
    let n = env("MSGR_SB_MESSAGES", 2_000);
    let rounds = env("MSGR_SB_ROUNDS", 200);
    let srv = TestServer::start(ServerOptions::default()).await?;
    let (_a, _b, mut sa, mut sb) = session(&srv).await?;

    // Throughput: alice writes batches of messages; bob reads them all. Alice stays within a
    // window of bob's progress (under the per-participant queue), as a sender that waited
    // for its ACKs would, so bob is never dropped as a slow consumer.
    const BATCH: usize = 64;
    const WINDOW: usize = 512;
    let one = msg("U", "The quick brown fox jumps over the lazy dog");
    let batch: Vec<u8> = one.repeat(BATCH);
    let read = Arc::new(AtomicUsize::new(0));
    let progress = read.clone();
    let start = Instant::now();
    let reader = tokio::spawn(async move {
        for _ in 0..n {
            let f = sb.recv_frame().await?;
            ensure!(
                f.line().starts_with("MSG alice@x.com "),
                "got {:?}",
                f.line()
            );
            progress.fetch_add(1, Ordering::Relaxed);
        }
        anyhow::Ok(sb)
    });
    let mut sent = 0;
    while sent < n {
        while sent - read.load(Ordering::Relaxed) + BATCH > WINDOW {
            tokio::task::yield_now().await;
        }
        let k = BATCH.min(n - sent);
        sa.send_raw(&batch[..k * one.len()]).await?;
        sent += k;
    }
    let mut sb = tokio::time::timeout(Duration::from_secs(120), reader).await???;
    let elapsed = start.elapsed();
    let rate = n as f64 / elapsed.as_secs_f64();
    println!(
        "switchboard relay: {n} messages ({} bytes each on the wire) in {:.3} s = {rate:.0} msg/s",
        one.len(),
        elapsed.as_secs_f64()
    );

    // Ping-pong: alice sends, bob answers on receipt, alice times the round trip.
    let ping = msg("U", "ping");
    let pong = msg("U", "pong");
    let mut rtts = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        sa.send_raw(&ping).await?;
        let f = sb.recv_frame().await?;
        ensure!(
            f.line().starts_with("MSG alice@x.com "),
            "bob got {:?}",
            f.line()
        );
        sb.send_raw(&pong).await?;
        let f = sa.recv_frame().await?;
        ensure!(
            f.line().starts_with("MSG bob@x.com "),
            "alice got {:?}",
            f.line()
        );
        rtts.push(t.elapsed());
    }
    rtts.sort();
    let pct = |p: f64| rtts[((rtts.len() as f64 * p) as usize).min(rtts.len() - 1)];
    println!(
        "switchboard ping-pong: {rounds} rounds, p50 {:?}, p99 {:?}, max {:?}",
        pct(0.50),
        pct(0.99),
        rtts[rtts.len() - 1]
    );
    Ok(())
}
