//! Outbound delivery between real servers on loopback: alice@a.test submits to server A, whose
//! `[mail] routes` send `other.test` to server B (another msgr) or to a scripted stand-in for a
//! third-party MTA; the queue retries temporary failures, bounces permanent ones into alice's
//! Inbox (RFC 3464), survives a restart, and is what `msgr mail queue|retry` show and change.

#![allow(clippy::unwrap_used)]

use anyhow::{bail, ensure, Context, Result};
use msgr_it::{ServerOptions, TestServer, TIMEOUT};
use msgr_mail::MailConfig;
use msgr_store::{MailStore, QueuedRecipient, Store};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Outbound delivery is asynchronous: how long a test waits for the queue to act.
const DELIVERY: Duration = Duration::from_secs(20);

fn msgr_bin() -> PathBuf {
    std::env::var_os("MSGR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_msgr-under-test")))
}

/// `msgr --data DIR mail ARGS`, which must succeed; its standard output.
async fn msgr_mail(server: &TestServer, args: &[&str]) -> Result<String> {
    let out = tokio::process::Command::new(msgr_bin())
        .arg("--data")
        .arg(server.data_dir())
        .arg("mail")
        .args(args)
        .env_remove("MSGR_CONFIG")
        .env_remove("MSGR_DATA")
        .env_remove("RUST_LOG")
        .output()
        .await
        .context("running msgr mail")?;
    ensure!(
        out.status.success(),
        "msgr mail {args:?}: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A server for `a.test` whose mail for `other.test` goes to `route`.
async fn server_a(route: SocketAddr, retry_initial_secs: u64, lifetime: u64) -> Result<TestServer> {
    let mut routes = BTreeMap::new();
    routes.insert("other.test".to_owned(), route.to_string());
    let a = TestServer::start(ServerOptions {
        mail: Some(MailConfig {
            hostname: Some("mx.a.test".into()),
            routes,
            allow_plaintext_auth: true,
            retry_initial_secs,
            retry_max_secs: retry_initial_secs * 4,
            queue_lifetime_secs: lifetime,
            outbound_timeout_secs: 5,
            ..MailConfig::default()
        }),
        ..ServerOptions::default()
    })
    .await?;
    a.add_account("alice@a.test", "alice-pw", "alice").await?;
    Ok(a)
}

/// Server B: `other.test` with bob's mailbox.
async fn server_b() -> Result<TestServer> {
    let b = TestServer::start(ServerOptions {
        mail: Some(MailConfig {
            hostname: Some("mx.other.test".into()),
            domains: vec!["other.test".into()],
            allow_plaintext_auth: true,
            ..MailConfig::default()
        }),
        ..ServerOptions::default()
    })
    .await?;
    b.add_account("bob@other.test", "bob-pw", "bob").await?;
    Ok(b)
}

fn base64(input: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Reads one (possibly multi-line) SMTP reply; its last line.
async fn reply(rd: &mut (impl AsyncBufReadExt + Unpin)) -> Result<String> {
    loop {
        let mut line = String::new();
        if tokio::time::timeout(TIMEOUT, rd.read_line(&mut line)).await?? == 0 {
            bail!("connection closed");
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(line.trim_end().to_owned());
        }
    }
}

/// alice submits a message to bob@other.test on A's submission port (AUTH PLAIN; plaintext is
/// allowed on this loopback test server).
async fn submit(a: &TestServer, subject: &str) -> Result<()> {
    let addr = a.addrs.mail.submission.context("no submission listener")?;
    let (rd, mut wr) = TcpStream::connect(addr).await?.into_split();
    let mut rd = BufReader::new(rd);
    let auth = format!("AUTH PLAIN {}", base64(b"\0alice@a.test\0alice-pw"));
    let data = format!(
        "From: alice@a.test\r\nTo: bob@other.test\r\nSubject: {subject}\r\n\r\nHello Bob.\r\n.\r\n"
    );
    let script: [(&str, &str); 7] = [
        ("", "220"),
        ("EHLO client.a.test\r\n", "250"),
        (&format!("{auth}\r\n"), "235"),
        ("MAIL FROM:<alice@a.test>\r\n", "250"),
        ("RCPT TO:<bob@other.test>\r\n", "250"),
        ("DATA\r\n", "354"),
        (&data, "250"),
    ];
    for (send, expect) in script {
        wr.write_all(send.as_bytes()).await?;
        let got = reply(&mut rd).await?;
        ensure!(got.starts_with(expect), "after {send:?}: {got:?}");
    }
    wr.write_all(b"QUIT\r\n").await?;
    Ok(())
}

async fn queue(server: &TestServer) -> Result<Vec<QueuedRecipient>> {
    let db = server.config.database_path();
    tokio::task::spawn_blocking(move || Ok(Store::open_sqlite(&db)?.queue_list()?)).await?
}

/// Polls `check` until it yields a value, for at most [`DELIVERY`].
async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + DELIVERY;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The first message in `account`'s Inbox whose raw bytes contain `marker`.
async fn inbox_message(server: &TestServer, account: &str, marker: &str) -> Result<String> {
    wait_for(&format!("{marker:?} in {account}'s Inbox"), || async move {
        Ok(server
            .mail_messages(account, "INBOX")
            .await?
            .into_iter()
            .map(|(_, raw)| String::from_utf8_lossy(&raw).into_owned())
            .find(|raw| raw.contains(marker)))
    })
    .await
}

async fn queue_empty(server: &TestServer) -> Result<()> {
    wait_for("an empty queue", || async move {
        Ok(queue(server).await?.is_empty().then_some(()))
    })
    .await
}

/// A stand-in for a third-party MTA: answers each connection's `RCPT` with the next of
/// `rcpt_replies` (the last one repeats) and records the messages it accepts.
async fn fake_mta(
    rcpt_replies: Vec<&'static str>,
) -> Result<(SocketAddr, Arc<Mutex<Vec<String>>>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let store = accepted.clone();
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((sock, _)) = listener.accept().await {
            let rcpt = rcpt_replies[n.min(rcpt_replies.len() - 1)];
            n += 1;
            let _ = fake_session(sock, rcpt, &store).await;
        }
    });
    Ok((addr, accepted))
}

async fn fake_session(sock: TcpStream, rcpt: &str, accepted: &Mutex<Vec<String>>) -> Result<()> {
    let (rd, mut wr) = sock.into_split();
    let mut rd = BufReader::new(rd);
    wr.write_all(b"220 fake.remote.test ESMTP\r\n").await?;
    let mut rcpt_ok = false;
    loop {
        let mut line = String::new();
        if rd.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        let answer = match verb.as_str() {
            "EHLO" => "250-fake.remote.test\r\n250-SIZE 1000000\r\n250 8BITMIME\r\n".to_owned(),
            "MAIL" => "250 2.1.0 ok\r\n".to_owned(),
            "RCPT" => {
                rcpt_ok = rcpt.starts_with('2');
                format!("{rcpt}\r\n")
            }
            "DATA" if rcpt_ok => {
                wr.write_all(b"354 go ahead\r\n").await?;
                let mut message = String::new();
                loop {
                    let mut l = String::new();
                    if rd.read_line(&mut l).await? == 0 {
                        return Ok(());
                    }
                    if l == ".\r\n" {
                        break;
                    }
                    message.push_str(&l);
                }
                accepted.lock().unwrap().push(message);
                "250 2.0.0 queued as F1\r\n".to_owned()
            }
            "QUIT" => {
                wr.write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(());
            }
            _ => "503 5.5.1 bad sequence\r\n".to_owned(),
        };
        wr.write_all(answer.as_bytes()).await?;
    }
}

/// A loopback port nobody listens on (yet).
async fn free_port() -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    Ok(l.local_addr()?)
}

#[tokio::test]
async fn mail_goes_from_one_msgr_to_another() -> Result<()> {
    let b = server_b().await?;
    let b_smtp = b.addrs.mail.smtp.context("B has no SMTP listener")?;
    let a = server_a(b_smtp, 1, 3600).await?;
    submit(&a, "across servers").await?;
    let raw = inbox_message(&b, "bob@other.test", "Subject: across servers").await?;
    ensure!(raw.contains("Hello Bob."), "{raw}");
    // A upgraded to TLS because B offered STARTTLS (RFC 3848: ESMTPS), accepting B's self-signed
    // certificate as opportunistic TLS does.
    ensure!(raw.contains("by mx.other.test with ESMTPS "), "{raw}");
    // A signed it with the key it made in its data directory on first start.
    ensure!(
        raw.contains("DKIM-Signature: v=1; a=ed25519-sha256; s=msgr-ed25519; d=a.test;"),
        "{raw}"
    );
    queue_empty(&a).await?;
    ensure!(msgr_mail(&a, &["queue"]).await? == "queue is empty\n");
    Ok(())
}

#[tokio::test]
async fn a_temporary_failure_is_retried() -> Result<()> {
    let (remote, accepted) = fake_mta(vec!["451 4.3.0 try again later", "250 2.1.5 ok"]).await?;
    // A retry interval far beyond the test: only `msgr mail retry` makes the second attempt.
    let a = server_a(remote, 3600, 5 * 24 * 3600).await?;
    submit(&a, "retry me").await?;
    let deferred = wait_for("the first attempt", || async {
        Ok(queue(&a).await?.into_iter().find(|q| q.attempts >= 1))
    })
    .await?;
    ensure!(deferred.recipient == "bob@other.test", "{deferred:?}");
    let error = deferred.last_error.clone().unwrap_or_default();
    ensure!(error.contains("451 4.3.0 try again later"), "{error:?}");
    // The first retry is `retry_initial_secs` after the failed attempt.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let wait = deferred.next_attempt - now;
    ensure!((3590..=3600).contains(&wait), "next attempt in {wait} s");

    let listing = msgr_mail(&a, &["queue"]).await?;
    let mut lines = listing.lines();
    let header = lines.next().unwrap_or("");
    ensure!(
        header.starts_with("id") && header.contains("last error"),
        "{listing}"
    );
    let row = lines.next().unwrap_or("");
    ensure!(
        row.contains("alice@a.test") && row.contains("bob@other.test") && row.contains("451"),
        "{listing}"
    );
    ensure!(accepted.lock().unwrap().is_empty());

    ensure!(msgr_mail(&a, &["retry"]).await? == "1 queued recipient due now\n");
    queue_empty(&a).await?;
    let messages = accepted.lock().unwrap().clone();
    ensure!(messages.len() == 1, "{messages:?}");
    ensure!(messages[0].contains("Subject: retry me"), "{messages:?}");
    Ok(())
}

#[tokio::test]
async fn a_permanent_failure_bounces_to_the_sender() -> Result<()> {
    let (remote, accepted) = fake_mta(vec!["550 5.1.1 <bob@other.test>: no such user"]).await?;
    let a = server_a(remote, 3600, 5 * 24 * 3600).await?;
    submit(&a, "nobody home").await?;
    let dsn = inbox_message(
        &a,
        "alice@a.test",
        "Final-Recipient: rfc822; bob@other.test",
    )
    .await?;
    for expected in [
        "<MAILER-DAEMON@mx.a.test>",
        "report-type=",
        "Reporting-MTA: dns; mx.a.test",
        "Action: failed",
        "Status: 5.1.1",
        "Diagnostic-Code: smtp; 550 5.1.1 <bob@other.test>: no such user",
        "Subject: nobody home",
    ] {
        ensure!(dsn.contains(expected), "{expected:?} in\n{dsn}");
    }
    queue_empty(&a).await?;
    ensure!(msgr_mail(&a, &["queue"]).await? == "queue is empty\n");
    ensure!(accepted.lock().unwrap().is_empty());
    Ok(())
}

#[tokio::test]
async fn a_message_too_old_for_the_queue_bounces() -> Result<()> {
    let (remote, _) = fake_mta(vec!["451 4.2.2 mailbox full"]).await?;
    // A lifetime of zero: the first temporary failure is already too late.
    let a = server_a(remote, 3600, 0).await?;
    submit(&a, "too late").await?;
    let dsn = inbox_message(
        &a,
        "alice@a.test",
        "Final-Recipient: rfc822; bob@other.test",
    )
    .await?;
    ensure!(dsn.contains("Status: 4.2.2"), "{dsn}");
    ensure!(dsn.contains("451 4.2.2 mailbox full"), "{dsn}");
    queue_empty(&a).await?;
    Ok(())
}

/// The queue is on disk: A is restarted while B cannot be reached, and delivers once B can.
#[tokio::test]
async fn the_queue_survives_a_restart() -> Result<()> {
    let b = server_b().await?;
    let b_smtp = b.addrs.mail.smtp.context("B has no SMTP listener")?;
    // A reaches B through a relay port that is closed for now: B is "down" for A.
    let relay = free_port().await?;
    let mut a = server_a(relay, 1, 3600).await?;
    submit(&a, "after the restart").await?;
    wait_for("a failed attempt", || async {
        Ok(queue(&a).await?.into_iter().find(|q| q.attempts >= 1))
    })
    .await?;

    a.restart().await?;
    ensure!(queue(&a).await?.len() == 1, "the queue entry survives");

    // B comes back: the relay port forwards to it.
    let listener = TcpListener::bind(relay).await?;
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut out) = TcpStream::connect(b_smtp).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    let raw = inbox_message(&b, "bob@other.test", "Subject: after the restart").await?;
    ensure!(raw.contains("Hello Bob."), "{raw}");
    queue_empty(&a).await?;
    Ok(())
}

#[test]
fn base64_encodes() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"\0alice\0pw"), "AGFsaWNlAHB3");
}
