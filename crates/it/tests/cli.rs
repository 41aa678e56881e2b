//! The `msgr` command as an operator uses it: `user add|list|passwd|del` on a data directory,
//! and `serve` on port 0 — its `listening …` log lines, a real login through it, `OUT SSD`
//! and exit code 0 on SIGTERM, and no password ever in its log.
//!
//! The binary is `msgr` built from `crates/msgr/src/main.rs` by this package (see the
//! `[[bin]]` note in `Cargo.toml`); set `MSGR_BIN` to run another build instead.

#![allow(clippy::unwrap_used)]

use anyhow::{bail, ensure, Context, Result};
use msgr_core::password::verify_password;
use msgr_it::{login, passport_login, Endpoint, PassportReply, TIMEOUT};
use msgr_proto::Dialect;
use msgr_store::{AccountStore, Store};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

fn msgr_bin() -> PathBuf {
    std::env::var_os("MSGR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_msgr-under-test")))
}

/// A `msgr` command on `data`, isolated from the caller's environment.
fn command(data: &Path) -> Command {
    let mut c = Command::new(msgr_bin());
    c.arg("--data")
        .arg(data)
        .env_remove("MSGR_CONFIG")
        .env_remove("MSGR_DATA")
        .env_remove("RUST_LOG");
    c
}

/// Runs `msgr --data DATA args…`, feeding `stdin` if given.
fn msgr(data: &Path, args: &[&str], stdin: Option<&str>) -> Result<Output> {
    let mut child = command(data)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {:?}", msgr_bin()))?;
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes())?;
    }
    Ok(child.wait_with_output()?)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Fails unless the command succeeded and printed exactly `stdout` and nothing on stderr.
fn ok(out: &Output, stdout: &str) -> Result<()> {
    ensure!(
        out.status.success(),
        "exit {:?}, stderr {:?}",
        out.status,
        text(&out.stderr)
    );
    ensure!(
        text(&out.stdout) == stdout,
        "stdout {:?}",
        text(&out.stdout)
    );
    ensure!(out.stderr.is_empty(), "stderr {:?}", text(&out.stderr));
    Ok(())
}

/// Fails unless the command failed with one line on stderr, `msgr: …` containing `reason`.
fn fails(out: &Output, reason: &str) -> Result<()> {
    let stderr = text(&out.stderr);
    ensure!(
        !out.status.success(),
        "expected failure, got {:?}",
        out.status
    );
    ensure!(
        stderr.ends_with('\n') && stderr.lines().count() == 1,
        "expected one line on stderr, got {stderr:?}"
    );
    ensure!(
        stderr.starts_with("msgr: ") && stderr.contains(reason),
        "stderr {stderr:?} should be `msgr: …{reason}…`"
    );
    ensure!(out.stdout.is_empty(), "stdout {:?}", text(&out.stdout));
    Ok(())
}

fn stored_hash(data: &Path, email: &str) -> Result<String> {
    let store = Store::open_sqlite(&data.join("msgr.sqlite"))?;
    Ok(store
        .account(email)?
        .with_context(|| format!("{email} not in the store"))?
        .password_hash)
}

#[test]
fn user_add_list_passwd_del() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let d = data.as_path();

    ok(
        &msgr(
            d,
            &[
                "user",
                "add",
                "a@b.com",
                "--password",
                "pw-one",
                "--name",
                "A",
            ],
            None,
        )?,
        "created a@b.com\n",
    )?;
    // Password from standard input; the name defaults to the local part.
    ok(
        &msgr(d, &["user", "add", "Carol@D.com"], Some("pw-two\n"))?,
        "created carol@d.com\n",
    )?;
    ok(
        &msgr(d, &["user", "list"], None)?,
        "a@b.com\tA\ncarol@d.com\tcarol\n",
    )?;

    ok(
        &msgr(d, &["user", "passwd", "a@b.com"], Some("pw-three\n"))?,
        "password changed for a@b.com\n",
    )?;
    let hash = stored_hash(d, "a@b.com")?;
    ensure!(
        verify_password("pw-three", &hash),
        "new password not stored"
    );
    ensure!(
        !verify_password("pw-one", &hash),
        "old password still valid"
    );

    ok(
        &msgr(d, &["user", "del", "carol@d.com"], None)?,
        "deleted carol@d.com\n",
    )?;
    ok(&msgr(d, &["user", "list"], None)?, "a@b.com\tA\n")?;
    Ok(())
}

/// `msgr mail queue|retry` on a data directory: the empty queue, then two recipients queued
/// straight into the store as submission would queue them.
#[test]
fn mail_queue_and_retry() -> Result<()> {
    use msgr_store::{Delivery, MailStore, MessageSummary, Outbound};
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    ok(&msgr(d, &["mail", "queue"], None)?, "queue is empty\n")?;
    ok(
        &msgr(d, &["mail", "retry"], None)?,
        "0 queued recipients due now\n",
    )?;

    ok(
        &msgr(
            d,
            &["user", "add", "alice@a.test", "--password", "pw"],
            None,
        )?,
        "created alice@a.test\n",
    )?;
    let store = Store::open_sqlite(&d.join("msgr.sqlite"))?;
    let queued = store.deliver(
        &[Delivery {
            raw: b"Subject: hi\r\n\r\nhello\r\n".to_vec(),
            summary: MessageSummary::default(),
            internal_date: 0,
            targets: Vec::new(),
            outbound: Some(Outbound {
                sender: "alice@a.test".into(),
                account: Some("alice@a.test".into()),
                recipients: vec!["bob@other.test".into(), "carol@other.test".into()],
            }),
        }],
        1 << 30,
    )?;
    let id = queued[0]
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .queued;
    let id = id.context("no queue entry")?;

    let out = msgr(d, &["mail", "queue"], None)?;
    ensure!(out.status.success(), "{:?}", text(&out.stderr));
    let listing = text(&out.stdout);
    let lines: Vec<&str> = listing.lines().collect();
    ensure!(lines.len() == 3, "{listing}");
    ensure!(
        lines[0].split_whitespace().collect::<Vec<_>>()
            == [
                "id",
                "sender",
                "recipient",
                "attempts",
                "next",
                "attempt",
                "last",
                "error"
            ],
        "{listing}"
    );
    for (line, rcpt) in lines[1..]
        .iter()
        .zip(["bob@other.test", "carol@other.test"])
    {
        let cells: Vec<&str> = line.split_whitespace().collect();
        ensure!(
            cells[..4] == [id.to_string().as_str(), "alice@a.test", rcpt, "0"] && cells[6] == "-",
            "{listing}"
        );
    }
    ok(
        &msgr(d, &["mail", "retry"], None)?,
        "2 queued recipients due now\n",
    )?;
    Ok(())
}

#[test]
fn user_errors_are_one_line_and_non_zero() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    ok(
        &msgr(
            d,
            &["user", "add", "a@b.com", "--password", "first-pw"],
            None,
        )?,
        "created a@b.com\n",
    )?;

    let dup = msgr(
        d,
        &["user", "add", "A@B.com", "--password", "second-pw"],
        None,
    )?;
    fails(&dup, "a@b.com")?;
    ensure!(!text(&dup.stderr).contains("second-pw"), "password echoed");
    ensure!(verify_password("first-pw", &stored_hash(d, "a@b.com")?));

    fails(
        &msgr(d, &["user", "del", "nobody@b.com"], None)?,
        "nobody@b.com",
    )?;
    fails(
        &msgr(
            d,
            &["user", "passwd", "nobody@b.com", "--password", "x"],
            None,
        )?,
        "nobody@b.com",
    )?;
    fails(
        &msgr(
            d,
            &["user", "add", "not-an-address", "--password", "x"],
            None,
        )?,
        "not-an-address",
    )?;
    fails(
        &msgr(d, &["user", "add", "e@b.com"], Some("\n"))?,
        "password",
    )?;
    ok(&msgr(d, &["user", "list"], None)?, "a@b.com\ta\n")?;
    Ok(())
}

/// README's bulk recipe runs `user add` in parallel. On a data directory that does not exist yet,
/// the processes race to create the database, switch it to WAL and migrate it: every one of them
/// must still succeed (SQLite answers one side of that race "busy" without waiting; issue 12).
#[test]
fn parallel_user_add_on_a_new_data_directory() -> Result<()> {
    const ROUNDS: usize = 25;
    const PARALLEL: usize = 4;
    let dir = tempfile::tempdir()?;
    for round in 0..ROUNDS {
        let data = dir.path().join(format!("data{round}"));
        let outputs = std::thread::scope(|s| {
            let handles: Vec<_> = (0..PARALLEL)
                .map(|i| {
                    let data = &data;
                    s.spawn(move || {
                        let email = format!("u{i}@x.com");
                        msgr(data, &["user", "add", &email, "--password", "pw"], None)
                            .map(|out| (email, out))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().map_err(|_| anyhow::anyhow!("thread panicked"))?)
                .collect::<Result<Vec<_>>>()
        })?;
        for (email, out) in &outputs {
            ok(out, &format!("created {email}\n"))
                .with_context(|| format!("round {round}, {email}"))?;
        }
        let list = msgr(&data, &["user", "list"], None)?;
        ensure!(
            text(&list.stdout).lines().count() == PARALLEL,
            "round {round}: {}",
            text(&list.stdout)
        );
    }
    Ok(())
}

/// A running `msgr serve` whose stderr is collected line by line.
struct Serve {
    child: tokio::process::Child,
    lines: mpsc::UnboundedReceiver<String>,
    log: Vec<String>,
}

impl Serve {
    fn start(data: &Path) -> Result<Serve> {
        let mut cmd = tokio::process::Command::from(command(data));
        cmd.args([
            "serve",
            "--msnp",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--https",
            "127.0.0.1:0",
            // The mail listeners' defaults are fixed ports; port 0 keeps parallel runs apart.
            "--smtp",
            "127.0.0.1:0",
            "--submission",
            "127.0.0.1:0",
            "--submissions",
            "127.0.0.1:0",
            "--pop3",
            "127.0.0.1:0",
            "--pop3s",
            "127.0.0.1:0",
            "--imap",
            "127.0.0.1:0",
            "--imaps",
            "127.0.0.1:0",
        ])
        // The most talkative level: a secret logged anywhere would show up.
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        let mut child = cmd.spawn().context("starting msgr serve")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Serve {
            child,
            lines,
            log: Vec::new(),
        })
    }

    /// Waits for the `listening {what}=ADDR` line.
    async fn listening(&mut self, what: &str) -> Result<SocketAddr> {
        let needle = format!("listening {what}=");
        let found = |log: &[String]| {
            log.iter().find_map(|l| {
                let (_, rest) = l.split_once(&needle)?;
                rest.split_whitespace().next()?.parse::<SocketAddr>().ok()
            })
        };
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            if let Some(a) = found(&self.log) {
                return Ok(a);
            }
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => self.log.push(line),
                Ok(None) => bail!("msgr serve exited; log:\n{}", self.log.join("\n")),
                Err(_) => bail!("no `{needle}` line; log:\n{}", self.log.join("\n")),
            }
        }
    }

    /// Sends SIGTERM and waits for the exit; returns the exit code and the whole log.
    async fn terminate(mut self) -> Result<(Option<i32>, String)> {
        let pid = self.child.id().context("msgr serve already exited")?;
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
        ensure!(status.success(), "kill -TERM {pid} failed");
        let exit = tokio::time::timeout(TIMEOUT + TIMEOUT, self.child.wait())
            .await
            .context("msgr serve did not exit after SIGTERM")??;
        while let Ok(Some(line)) = tokio::time::timeout(TIMEOUT, self.lines.recv()).await {
            self.log.push(line);
        }
        Ok((exit.code(), self.log.join("\n")))
    }
}

#[tokio::test]
async fn serve_logs_listeners_serves_logins_and_stops_on_sigterm() -> Result<()> {
    const PASSWORD: &str = "correct horse 7";
    const ENCODED: &str = "correct%20horse%207";
    const WRONG: &str = "wrong horse 8";
    const FORGED: &str =
        "x\n2026-11-29T00:00:00.000000Z  INFO msgr_server::http: passport ticket issued\x1b[31m";
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    ok(
        &msgr(
            &data,
            &[
                "user",
                "add",
                "alice@x.com",
                "--password",
                PASSWORD,
                "--name",
                "Alice",
            ],
            None,
        )?,
        "created alice@x.com\n",
    )?;

    let mut serve = Serve::start(&data)?;
    let msnp = serve.listening("msnp").await?;
    let http = serve.listening("http").await?;
    let https = serve.listening("https").await?;
    for a in [msnp, http, https] {
        ensure!(a.ip().is_loopback() && a.port() != 0, "bound {a}");
    }
    for what in [
        "smtp",
        "submission",
        "submissions",
        "pop3",
        "pop3s",
        "imap",
        "imaps",
    ] {
        let a = serve.listening(what).await?;
        ensure!(a.ip().is_loopback() && a.port() != 0, "{what} bound {a}");
    }
    // The MX port answers like an SMTP server.
    let smtp = serve.listening("smtp").await?;
    let mut greeting = String::new();
    let mut conn = tokio::io::BufReader::new(tokio::net::TcpStream::connect(smtp).await?);
    tokio::time::timeout(
        TIMEOUT,
        tokio::io::AsyncBufReadExt::read_line(&mut conn, &mut greeting),
    )
    .await??;
    ensure!(greeting.starts_with("220 "), "{greeting:?}");
    let ep = Endpoint {
        msnp,
        https,
        ca: data.join("tls-cert.pem"),
    };

    // A refused sign-in, then real logins in two dialects.
    let refused = passport_login(https, &ep.ca, "alice@x.com", WRONG).await?;
    ensure!(
        matches!(refused, PassportReply::Refused { status: 401, .. }),
        "{refused:?}"
    );
    // Log forging (issue 12): a sign-in name carrying a line break, a fake log line and a
    // terminal escape must be logged as one escaped value.
    let forged = passport_login(https, &ep.ca, FORGED, WRONG).await?;
    ensure!(
        matches!(forged, PassportReply::Refused { status: 401, .. }),
        "{forged:?}"
    );
    let mut msnp8 = login(&ep, Dialect::Msnp8, "alice@x.com", PASSWORD).await?;
    msnp8.ping().await?;
    // `user add` works while the server runs, and the new account can log in at once.
    let bob = msgr(
        &data,
        &["user", "add", "bob@x.com"],
        Some(&format!("{PASSWORD}\n")),
    )?;
    ok(&bob, "created bob@x.com\n")?;
    let mut msnp12 = login(&ep, Dialect::Msnp12, "bob@x.com", PASSWORD).await?;
    msnp12.ping().await?;

    let (code, log) = serve.terminate().await?;
    for c in [&mut msnp8, &mut msnp12] {
        c.expect_line("OUT SSD").await?;
        c.expect_closed().await?;
    }
    ensure!(code == Some(0), "exit code {code:?}; log:\n{log}");
    // The log did record the logins, so the next checks are not vacuous.
    ensure!(
        log.contains("alice@x.com") && log.contains("bob@x.com"),
        "log:\n{log}"
    );
    ensure!(
        log.contains("x\\n2026-11-29T00:00:00.000000Z  INFO msgr_server::http: passport ticket issued\\u{1b}[31m"),
        "the forged sign-in name is not in the log, escaped:\n{log}"
    );
    ensure!(
        !log.contains('\x1b'),
        "a terminal escape reached the log:\n{log}"
    );
    ensure!(
        !log.lines().any(|l| l.starts_with("2026-11-29T00:00:00")),
        "a client wrote a log line of its own:\n{log}"
    );
    for secret in [PASSWORD, ENCODED, WRONG, "wrong%20horse%208"] {
        ensure!(
            !log.contains(secret),
            "{secret:?} appears in the server log:\n{log}"
        );
    }
    Ok(())
}
