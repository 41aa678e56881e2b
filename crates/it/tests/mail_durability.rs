//! Nothing acknowledged is lost: mail answered `250` survives `kill -9` of the real `msgr serve`
//! binary taken in the middle of concurrent deliveries, and no half-written message is ever
//! visible afterwards.

#![allow(clippy::unwrap_used)]

use anyhow::{bail, ensure, Context, Result};
use msgr_it::TIMEOUT;
use msgr_store::{AccountStore, MailStore, NewAccount, Store};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn msgr_bin() -> PathBuf {
    std::env::var_os("MSGR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_msgr-under-test")))
}

/// Starts `msgr serve` on `data` with every listener on a port of its own choosing; returns the
/// child and its SMTP address (from the `listening smtp=` log line).
async fn spawn_serve(data: &Path) -> Result<(tokio::process::Child, SocketAddr)> {
    // Sender authentication would ask the machine's DNS about every message; tests never go outside.
    let config = data.with_extension("toml");
    std::fs::write(&config, "[mail]\nsender_auth = false\n")?;
    let mut child = tokio::process::Command::new(msgr_bin())
        .arg("--data")
        .arg(data)
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .args(["--msnp", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(["--https", "127.0.0.1:0", "--smtp", "127.0.0.1:0"])
        .args([
            "--submission",
            "127.0.0.1:0",
            "--submissions",
            "127.0.0.1:0",
        ])
        .args(["--pop3", "127.0.0.1:0", "--pop3s", "127.0.0.1:0"])
        .args(["--imap", "127.0.0.1:0", "--imaps", "127.0.0.1:0"])
        .env_remove("MSGR_CONFIG")
        .env_remove("MSGR_DATA")
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting msgr serve")?;
    let stderr = child.stderr.take().context("no stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let smtp = loop {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .context("no `listening smtp=` line from msgr serve")??
            .context("msgr serve exited")?;
        if let Some(a) = line
            .split_once("listening smtp=")
            .and_then(|(_, r)| r.split_whitespace().next())
            .and_then(|a| a.parse::<SocketAddr>().ok())
        {
            break a;
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, smtp))
}

/// The body of message `n` of sender `s`: long enough to span several pages of the database, and
/// ending in a marker, so a truncated copy is told apart from a whole one.
fn body(s: usize, n: usize) -> String {
    let mut b = String::new();
    for i in 0..200 {
        b.push_str(&format!(
            "sender {s} message {n} line {i:03} ................................\r\n"
        ));
    }
    b.push_str(&format!("END {s}-{n}\r\n"));
    b
}

async fn reply(rd: &mut (impl AsyncBufReadExt + Unpin)) -> Result<String> {
    loop {
        let mut line = String::new();
        if tokio::time::timeout(TIMEOUT, rd.read_line(&mut line)).await?? == 0 {
            bail!("connection closed");
        }
        // The last line of a multi-line reply has a space after the code.
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(line);
        }
    }
}

/// Sends messages until the connection breaks (the kill), recording each one answered `250`.
async fn sender(smtp: SocketAddr, s: usize, acked: Arc<Mutex<BTreeSet<String>>>) -> Result<()> {
    let stream = TcpStream::connect(smtp).await?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    ensure!(reply(&mut r).await?.starts_with("220"));
    w.write_all(b"EHLO durability.test\r\n").await?;
    ensure!(reply(&mut r).await?.starts_with("250"));
    for n in 0.. {
        let id = format!("{s}-{n}@durability.test");
        let msg = format!(
            "MAIL FROM:<s{s}@far.test>\r\nRCPT TO:<alice@x.com>\r\nDATA\r\n\
             From: <s{s}@far.test>\r\nTo: <alice@x.com>\r\nMessage-ID: <{id}>\r\nSubject: {n}\r\n\r\n{}.\r\n",
            body(s, n)
        );
        w.write_all(msg.as_bytes()).await?;
        for expect in ["250", "250", "354", "250"] {
            let got = reply(&mut r).await?;
            ensure!(got.starts_with(expect), "expected {expect}, got {got:?}");
        }
        acked.lock().unwrap().insert(id);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_mail_survives_kill_9() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    let db = data.join("msgr.sqlite");
    Store::open_sqlite(&db)?.create_account(NewAccount {
        email: "alice@x.com".into(),
        display_name: "Alice".into(),
        password_hash: msgr_core::password::hash_password_with("pw", msgr_it::CHEAP_PASSWORD)?,
        md5_secret: None,
    })?;

    let mut total_acked = 0;
    // Three rounds: each kills the server under load, then checks and carries on with what is stored.
    for round in 0..3 {
        let (mut child, smtp) = spawn_serve(&data).await?;
        let acked = Arc::new(Mutex::new(BTreeSet::new()));
        let senders: Vec<_> = (0..6)
            .map(|s| tokio::spawn(sender(smtp, round * 100 + s, acked.clone())))
            .collect();
        // Let a good number be acknowledged, then kill while more are in flight.
        let deadline = tokio::time::Instant::now() + TIMEOUT * 4;
        while acked.lock().unwrap().len() < 60 {
            ensure!(
                tokio::time::Instant::now() < deadline,
                "only {} messages acknowledged in time",
                acked.lock().unwrap().len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let pid = child.id().context("msgr already exited")?;
        let status = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()?;
        ensure!(status.success(), "kill -9 failed");
        child.wait().await?;
        for s in senders {
            // Each ends with the broken connection.
            let _ = s.await?;
        }
        let acked = acked.lock().unwrap().clone();
        total_acked += acked.len();

        let store = Store::open_sqlite(&db)?;
        let inbox = store.folder("alice@x.com", "INBOX")?.context("no INBOX")?;
        let mut stored = BTreeSet::new();
        for m in store.messages(inbox.id)? {
            let raw = store
                .message_raw(inbox.id, m.uid)?
                .context("listed but no bytes")?;
            let text = String::from_utf8(raw).context("stored bytes are not the sent text")?;
            let id = m.summary.message_id.clone();
            let (s, n) = id
                .trim_end_matches("@durability.test")
                .split_once('-')
                .context("unexpected Message-ID")?;
            let (s, n): (usize, usize) = (s.parse()?, n.parse()?);
            // Whole: the exact body, after our own trace headers and the sender's.
            ensure!(
                text.ends_with(&format!("\r\n\r\n{}", body(s, n))),
                "message {id} is not whole"
            );
            ensure!(text.starts_with("Return-Path: <"), "no Return-Path on {id}");
            ensure!(text.contains("\r\nReceived: ") || text.starts_with("Received: "));
            stored.insert(id);
        }
        let lost: Vec<_> = acked.difference(&stored).collect();
        ensure!(
            lost.is_empty(),
            "round {round}: acknowledged but lost: {lost:?}"
        );
    }
    ensure!(total_acked >= 180);
    Ok(())
}
