//! The server's memory with switchboard readers that never read (issue 12, item 1).
//!
//! Starts the real server in this process (default limits, loopback), signs in `PAIRS` pairs;
//! in each, alice calls bob into a switchboard, bob's socket has a 4 KB receive buffer and is
//! never read, and alice sends 64 KB `MSG N` messages: 20 slowly (so bob's connection blocks
//! in its write), then `BURST` back to back. Prints the process's RSS before, at its peak
//! during the flood, once every bob has been dropped, and after every client has closed.
//! The clients live in this process too, but keep nothing: alice writes one reused buffer.
//!
//!     cargo run --release -p msgr-it --example slow_readers [PAIRS] [BURST]

use anyhow::{bail, ensure, Context, Result};
use msgr_it::{Conn, ServerOptions, TestServer};
use msgr_proto::Dialect;
use msgr_server::config::LimitsConfig;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const PASSWORD: &str = "pw-123456";
const PAYLOAD: usize = 65_536;

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

async fn online(srv: &TestServer, email: &str) -> Result<Conn> {
    srv.add_account(email, PASSWORD, "N").await?;
    let mut c = srv.login(Dialect::Msnp12, email, PASSWORD).await?;
    c.send("CHG 6 NLN 0").await?;
    c.expect_match("CHG 6 NLN 0").await?;
    Ok(c)
}

/// One pair: alice's switchboard connection (answered) and bob's (never read after `ANS`).
async fn pair(srv: &TestServer, i: usize) -> Result<(Conn, TcpStream, [Conn; 2])> {
    let (a, b) = (format!("alice{i}@x.com"), format!("bob{i}@x.com"));
    let mut ans = online(srv, &a).await?;
    let mut bns = online(srv, &b).await?;
    ans.send("XFR 10 SB").await?;
    let line = ans.expect_match("XFR 10 SB {any} CKI {any}").await?;
    let cookie = line.split(' ').nth(5).unwrap_or_default().to_owned();
    let mut sa = srv.connect().await?;
    sa.send(&format!("USR 1 {a} {cookie}")).await?;
    sa.expect_match("USR 1 OK {any} {any}").await?;
    sa.send(&format!("CAL 2 {b}")).await?;
    let line = sa.expect_match("CAL 2 RINGING {digits}").await?;
    let sid = line.rsplit(' ').next().unwrap_or_default().to_owned();
    let rng = bns
        .expect_match(&format!("RNG {sid} {{any}} CKI {{any}} {{any}} {{any}}"))
        .await?;
    let cookie = rng.split(' ').nth(4).unwrap_or_default().to_owned();
    let socket = TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    let mut sb = socket.connect(srv.addrs.msnp).await?;
    sb.write_all(format!("ANS 1 {b} {cookie} {sid}\r\n").as_bytes())
        .await?;
    let mut got = Vec::new();
    while !got.windows(10).any(|w| w == b"ANS 1 OK\r\n") {
        let mut buf = [0u8; 256];
        let n = sb.read(&mut buf).await?;
        ensure!(n > 0, "closed before ANS OK");
        got.extend_from_slice(&buf[..n]);
    }
    sa.expect_match("JOI {any} {any} {any}").await?;
    Ok((sa, sb, [ans, bns]))
}

/// Alice's flood; returns when she has heard that bob was dropped, and how many messages
/// were sent by then.
async fn flood(mut sa: Conn, burst: usize) -> Result<(Conn, usize)> {
    let mut payload =
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n".to_vec();
    payload.resize(PAYLOAD, b'z');
    let mut msg = format!("MSG 3 N {PAYLOAD}\r\n").into_bytes();
    msg.extend_from_slice(&payload);
    for _ in 0..20 {
        sa.send_raw(&msg).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..burst {
        sa.send_raw(&msg).await?;
    }
    // `NAK` for what nobody took once bob is gone; the drop itself as `BYE bob 1`.
    loop {
        let l = sa.recv_line().await?;
        if l.starts_with("BYE ") {
            return Ok((sa, 20 + burst));
        }
        if !l.starts_with("NAK ") {
            bail!("alice got {l:?}");
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let pairs: usize = args.next().map_or(Ok(4), |a| a.parse()).context("PAIRS")?;
    let burst: usize = args
        .next()
        .map_or(Ok(1100), |a| a.parse())
        .context("BURST")?;
    let srv = TestServer::start(ServerOptions {
        limits: LimitsConfig {
            change_burst: 1000,
            ..LimitsConfig::default()
        },
        ..ServerOptions::default()
    })
    .await?;
    let mut all = Vec::new();
    for i in 0..pairs {
        all.push(pair(&srv, i).await?);
    }
    let before = rss_kb();
    println!(
        "pairs {pairs}, burst {burst} x 64 KB, outbox_bytes {} KB",
        srv.config.limits.outbox_bytes / 1024
    );
    println!("rss before the flood: {:.1} MB", before as f64 / 1024.0);
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kb(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut floods = Vec::new();
    let mut keep = Vec::new();
    for (sa, sb, ns) in all {
        floods.push(tokio::spawn(flood(sa, burst)));
        keep.push((sb, ns));
    }
    let mut alices = Vec::new();
    for f in floods {
        let (sa, sent) = f.await??;
        println!("  alice sent {sent} messages; bob was dropped");
        alices.push(sa);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    sampler.abort();
    println!(
        "rss peak during the flood: {:.1} MB",
        peak.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1024.0
    );
    println!("rss after the drops: {:.1} MB", rss_kb() as f64 / 1024.0);
    drop(alices);
    drop(keep);
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!(
        "rss after every client closed: {:.1} MB",
        rss_kb() as f64 / 1024.0
    );
    srv.stop().await?;
    Ok(())
}
