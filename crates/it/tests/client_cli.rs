//! `msgr send`, `msgr status` and `msgr contacts` against the real server, with a library
//! client on the other end.

#![allow(clippy::unwrap_used)]

use anyhow::{bail, ensure, Context, Result};
use msgr_client::{ChatEvent, Client, Config, Dialect, Event, List, Status, TlsTrust};
use msgr_it::{ServerOptions, TestServer, TIMEOUT};
use std::path::PathBuf;
use tokio::process::Command;

const PASSWORD: &str = "pw-123456";

fn msgr_bin() -> PathBuf {
    std::env::var_os("MSGR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_msgr-under-test")))
}

/// Runs `msgr SUBCOMMAND --server … --nexus … --ca … --email EMAIL ARGS…` with the password
/// in the environment; returns (success, stdout, stderr).
async fn run(
    s: &TestServer,
    sub: &str,
    email: &str,
    args: &[&str],
) -> Result<(bool, String, String)> {
    let ep = s.endpoint();
    let out = tokio::time::timeout(
        TIMEOUT * 4,
        Command::new(msgr_bin())
            .arg(sub)
            .args(["--server", &ep.msnp.to_string()])
            .args(["--nexus", &format!("https://{}/rdr/pprdr.asp", ep.https)])
            .arg("--ca")
            .arg(&ep.ca)
            .args(["--email", email])
            .args(args)
            .env("MSGR_PASSWORD", PASSWORD)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("msgr timed out")??;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

async fn library_client(
    s: &TestServer,
    email: &str,
) -> Result<(Client, tokio::sync::mpsc::Receiver<Event>)> {
    let ep = s.endpoint();
    let mut c = Config::new(ep.msnp.to_string(), email, PASSWORD);
    c.nexus = format!("https://{}/rdr/pprdr.asp", ep.https);
    c.tls = TlsTrust::CertificateFile(ep.ca.clone());
    c.dialect = Dialect::Msnp11;
    c.timeout = TIMEOUT;
    Ok(Client::connect(c).await?)
}

#[tokio::test]
async fn send_status_and_contacts() -> Result<()> {
    let s = TestServer::start(ServerOptions::default()).await?;
    for n in ["alice", "bob"] {
        s.add_account(&format!("{n}@x.com"), PASSWORD, n).await?;
    }
    let (bob, mut events) = library_client(&s, "bob@x.com").await?;
    bob.add_contact(List::Forward, "alice@x.com").await?;

    // msgr send: bob answers the ring and gets the text.
    let b = bob.clone();
    let answer = tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + TIMEOUT * 3;
        let mut chat = None;
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(Event::Ring(r))) => chat = Some(b.answer(&r).await?),
                Ok(Some(Event::Chat {
                    event: ChatEvent::Message { from, text, .. },
                    ..
                })) => {
                    drop(chat);
                    return Ok::<_, anyhow::Error>((from, text, events));
                }
                Ok(Some(_)) => {}
                _ => bail!("no message from msgr send"),
            }
        }
    });
    let (ok, stdout, stderr) = run(
        &s,
        "send",
        "alice@x.com",
        &["--to", "bob@x.com", "hi", "from", "the", "shell"],
    )
    .await?;
    ensure!(ok, "msgr send failed: {stderr}");
    assert_eq!(stdout.trim(), "sent to bob@x.com");
    let (from, text, mut events) = answer.await??;
    assert_eq!(
        (from.as_str(), text.as_str()),
        ("alice@x.com", "hi from the shell")
    );

    // msgr status: bob sees alice busy, then offline again when the command signs out.
    let (ok, stdout, stderr) =
        run(&s, "status", "alice@x.com", &["busy", "--name", "Alice A"]).await?;
    ensure!(ok, "msgr status failed: {stderr}");
    assert_eq!(stdout.trim(), "alice@x.com busy");
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let mut saw_busy = false;
    while let Ok(Some(e)) = tokio::time::timeout_at(deadline, events.recv()).await {
        if let Event::Presence {
            email,
            status: Status::Busy,
            ..
        } = &e
        {
            saw_busy |= email == "alice@x.com";
        }
        if saw_busy && matches!(e, Event::Offline { .. }) {
            break;
        }
    }
    ensure!(saw_busy, "bob never saw alice busy");

    // Bad input: a typed, one-line failure.
    let (ok, _, stderr) = run(&s, "status", "alice@x.com", &["sleepy"]).await?;
    ensure!(!ok && stderr.contains("unknown status"), "{stderr}");
    let (ok, _, stderr) = run(
        &s,
        "send",
        "alice@x.com",
        &["--to", "nobody@x.com", "hello?"],
    )
    .await?;
    ensure!(!ok && stderr.starts_with("msgr: "), "{stderr}");

    // msgr contacts: bob's list, with alice's status and the name she set.
    s.add_account("carol@x.com", PASSWORD, "carol").await?;
    bob.add_contact(List::Forward, "carol@x.com").await?;
    let g = bob.add_group("Friends").await?;
    bob.add_to_group("alice@x.com", &g).await?;
    let (alice, _a) = library_client(&s, "alice@x.com").await?;
    alice.set_status(Status::Away).await?;
    let (ok, stdout, stderr) = run(&s, "contacts", "bob@x.com", &[]).await?;
    ensure!(ok, "msgr contacts failed: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "[Friends]", "{stdout}");
    assert!(
        lines[1].starts_with("  alice@x.com\taway\tAlice A"),
        "{stdout}"
    );
    assert!(lines.contains(&"[No group]"), "{stdout}");
    assert!(stdout.contains("  carol@x.com\toffline\tcarol"), "{stdout}");
    Ok(())
}
