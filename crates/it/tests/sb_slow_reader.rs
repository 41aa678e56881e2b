//! Issue 12, item 1: a switchboard participant that does not read costs the server at most
//! its byte budget (`outbox_bytes`), not `event_queue` relayed messages of up to 64 KB each.
//!
//! Alice and bob share a switchboard; bob's socket has a small receive buffer and is never
//! read. Alice sends full-size (`max_payload`) messages with `MSG t A`, so every message is
//! answered: `ACK` while bob's queue took it, `NAK` once nobody is left to take it. The
//! number of `ACK`s before alice hears `BYE bob 1` is the number of messages the server held
//! for bob (queued, in his output buffer, or in the kernel's socket buffers): bounded by the
//! budget, far below the 1,024 the event count alone allowed. The write timeout is set out of
//! reach, so only the byte budget can drop bob. Alice and carol are served throughout.

#![allow(clippy::unwrap_used)]

mod common;

use anyhow::{ensure, Context, Result};
use common::{chg, email, server_with, user};
use msgr_it::{Conn, ServerOptions, TestServer};
use msgr_proto::Dialect;
use msgr_server::config::LimitsConfig;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const OUTBOX: usize = 256 * 1024;
const PAYLOAD: usize = 65_536;
/// Messages alice sends: more than the old count limit (1,024) would ever let through
/// before dropping bob was not needed to show the bound; 300 (19 MB) is plenty.
const SENT: usize = 300;

/// `XFR SB` + `USR` for `caller`, `CAL callee`; returns the caller's switchboard connection,
/// the session id and the callee's `RNG` cookie.
async fn call(
    srv: &TestServer,
    ns: &mut Conn,
    caller: &str,
    callee: &str,
) -> Result<(Conn, String, String)> {
    ns.send("XFR 10 SB").await?;
    let line = ns.expect_match("XFR 10 SB {any} CKI {any}").await?;
    let cookie = line.split(' ').nth(5).unwrap_or_default().to_owned();
    let mut sb = srv.connect().await?;
    sb.set_label(format!("sb {caller}"));
    sb.send(&format!("USR 1 {} {cookie}", email(caller)))
        .await?;
    sb.expect_match("USR 1 OK {any} {any}").await?;
    sb.send(&format!("CAL 2 {}", email(callee))).await?;
    let line = sb.expect_match("CAL 2 RINGING {digits}").await?;
    let sid = line.rsplit(' ').next().unwrap_or_default().to_owned();
    Ok((sb, sid, cookie))
}

/// Bob's switchboard connection: a 4 KB receive buffer, read only until `ANS 1 OK`.
async fn slow_answer(srv: &TestServer, bob_ns: &mut Conn, sid: &str) -> Result<TcpStream> {
    let rng = bob_ns
        .expect_match(&format!("RNG {sid} {{any}} CKI {{any}} {{any}} {{any}}"))
        .await?;
    let cookie = rng.split(' ').nth(4).unwrap_or_default().to_owned();
    let socket = TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    let mut s = socket.connect(srv.addrs.msnp).await?;
    s.write_all(format!("ANS 1 {} {cookie} {sid}\r\n", email("bob")).as_bytes())
        .await?;
    let mut got = Vec::new();
    while !got.windows(10).any(|w| w == b"ANS 1 OK\r\n") {
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .context("ANS OK in time")??;
        ensure!(n > 0, "bob's switchboard closed before ANS OK");
        got.extend_from_slice(&buf[..n]);
    }
    Ok(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_never_reads_costs_only_its_byte_budget() -> Result<()> {
    let srv = server_with(ServerOptions {
        limits: LimitsConfig {
            change_burst: 1000,
            outbox_bytes: OUTBOX,
            max_payload: PAYLOAD,
            // The count limit alone would let 1,024 messages (64 MB) wait for bob.
            event_queue: 1024,
            // Out of reach: only the byte budget can drop bob within this test.
            write_timeout_secs: 3600,
            ..LimitsConfig::default()
        },
        ..ServerOptions::default()
    })
    .await?;
    let d = Dialect::Msnp12;
    let mut alice_ns = user(&srv, d, "alice").await?;
    chg(&mut alice_ns, d, 6, "NLN").await?;
    let mut bob_ns = user(&srv, d, "bob").await?;
    chg(&mut bob_ns, d, 6, "NLN").await?;
    let mut carol_ns = user(&srv, d, "carol").await?;
    chg(&mut carol_ns, d, 6, "NLN").await?;

    let (mut sa, sid, _) = call(&srv, &mut alice_ns, "alice", "bob").await?;
    let mut bob_sb = slow_answer(&srv, &mut bob_ns, &sid).await?;
    sa.expect_match(&format!("JOI {} {{any}} {{any}}", email("bob")))
        .await?;

    // Alice sends everything at once (the server reads her while it relays), then reads
    // every answer.
    let body = vec![b'z'; PAYLOAD - 70];
    let mut payload =
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n".to_vec();
    payload.extend_from_slice(&body);
    payload.truncate(PAYLOAD);
    let writer = {
        let mut bytes = Vec::with_capacity(SENT * (PAYLOAD + 32));
        for t in 0..SENT {
            bytes.extend_from_slice(format!("MSG {} A {}\r\n", t + 3, payload.len()).as_bytes());
            bytes.extend_from_slice(&payload);
        }
        bytes
    };
    sa.send_raw(&writer).await?;
    let (mut acks, mut naks, mut acks_before_bye, mut bye) = (0usize, 0usize, None, false);
    while acks + naks < SENT {
        let l = sa.recv_line().await?;
        if l.starts_with("ACK ") {
            acks += 1;
        } else if l.starts_with("NAK ") {
            naks += 1;
        } else if l == format!("BYE {} 1", email("bob")) {
            bye = true;
            acks_before_bye = Some(acks);
        } else {
            anyhow::bail!("alice got {l:?}");
        }
    }
    ensure!(bye, "bob was never dropped: {acks} ACK, {naks} NAK");
    let held = acks_before_bye.unwrap_or(acks);
    println!(
        "messages held for bob before the drop: {held} ({} KB; budget {} KB)",
        held * PAYLOAD / 1024,
        OUTBOX / 1024
    );
    // The budget is 4 messages; the kernel's buffers (server send, bob's 4 KB receive) hold
    // a few MB at most. 1,024 were held before the byte budget.
    ensure!(
        held <= 100,
        "{held} messages were held for a reader that never reads"
    );
    ensure!(acks == held, "an ACK after bob was dropped");

    // Bob's switchboard connection is closed by the server: reading drains what the kernel
    // held, then the end.
    let mut drained = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(30), bob_sb.read(&mut buf))
            .await
            .context("bob's switchboard connection closes")?
        {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
    ensure!(
        drained <= held * (PAYLOAD + 64) + 4096,
        "bob received {drained} bytes, more than the {held} messages held for him"
    );

    // Alice and carol are served: NS pings answer, and alice's switchboard still works.
    for ns in [&mut alice_ns, &mut carol_ns, &mut bob_ns] {
        ns.ping().await?;
    }
    sa.send_raw(b"MSG 900 A 5\r\nhello").await?;
    sa.expect_line("NAK 900").await?;
    Ok(())
}
