//! `msgr chat` in a real terminal: the built binary runs in a detached tmux session against the
//! real server, keys go in with `send-keys`, the screen comes back with `capture-pane`. The
//! other side of the chat is a `msgr-client` library session.
//!
//! Needs tmux (`.ci/run` installs it); without it the test fails and says so.

#![allow(clippy::unwrap_used)]

use anyhow::{bail, Context, Result};
use msgr_client::{ChatEvent, Client, Config, Dialect, Event, List, TlsTrust};
use msgr_it::{ServerOptions, TestServer, TIMEOUT};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const PASSWORD: &str = "pw-123456";

fn msgr_bin() -> PathBuf {
    std::env::var_os("MSGR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_msgr-under-test")))
}

/// Single quotes for `sh`.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A tmux server of our own (its own socket), killed when dropped, even after a failure.
struct Tmux {
    socket: String,
    /// msgr's standard error, shown when something fails.
    stderr_log: PathBuf,
    /// The socket file, which `kill-server` leaves behind.
    socket_path: Option<PathBuf>,
}

impl Tmux {
    fn tmux(&self, args: &[&str]) -> Result<Output> {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .context("running tmux")?;
        if !out.status.success() {
            bail!(
                "tmux {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out)
    }

    /// Starts `command` (a shell command line) in a 120×40 window.
    fn start(dir: &Path, command: &str, env: &[(&str, &str)]) -> Result<Tmux> {
        if Command::new("tmux").arg("-V").output().is_err() {
            bail!(
                "tmux is not installed, and this test drives `msgr chat` through it: \
                 install it (apt-get install tmux; .ci/run does this on CI)"
            );
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let t = Tmux {
            socket: format!("msgr-chat-tui-{}-{nanos}", std::process::id()),
            stderr_log: dir.join("msgr-stderr.log"),
            socket_path: None,
        };
        let line = format!(
            "{command} 2>{}; echo \"msgr exited with $?\"; sleep 600",
            quote(&t.stderr_log.to_string_lossy())
        );
        let mut cmd = Command::new("tmux");
        cmd.arg("-L")
            .arg(&t.socket)
            .args([
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                "120",
                "-y",
                "40",
            ])
            .arg(line);
        // The new tmux server (and so the shell in its window) gets this environment.
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().context("starting tmux")?;
        if !out.status.success() {
            bail!(
                "tmux new-session failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut t = t;
        let path = t.tmux(&["display-message", "-p", "#{socket_path}"])?;
        t.socket_path = Some(PathBuf::from(
            String::from_utf8_lossy(&path.stdout).trim().to_owned(),
        ));
        Ok(t)
    }

    fn keys(&self, keys: &[&str]) -> Result<()> {
        let mut args = vec!["send-keys", "-t", "0"];
        args.extend_from_slice(keys);
        self.tmux(&args).map(drop)
    }

    /// Types text literally (no key names).
    fn type_text(&self, text: &str) -> Result<()> {
        self.tmux(&["send-keys", "-t", "0", "-l", text]).map(drop)
    }

    fn screen(&self) -> Result<String> {
        let out = self.tmux(&["capture-pane", "-p", "-t", "0"])?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Polls the screen until `pred` holds, or fails with what it showed last.
    async fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> Result<String> {
        let deadline = Instant::now() + TIMEOUT * 4;
        loop {
            let screen = self.screen()?;
            if pred(&screen) {
                return Ok(screen);
            }
            if Instant::now() > deadline {
                let stderr = std::fs::read_to_string(&self.stderr_log).unwrap_or_default();
                bail!("the screen never showed {what}:\n{screen}\nmsgr's stderr:\n{stderr}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
        if let Some(p) = &self.socket_path {
            let _ = std::fs::remove_file(p);
        }
    }
}

async fn library_client(
    s: &TestServer,
    email: &str,
) -> Result<(Client, tokio::sync::mpsc::Receiver<Event>)> {
    let ep = s.endpoint();
    let mut c = Config::new(ep.msnp.to_string(), email, PASSWORD);
    c.nexus = format!("https://{}/rdr/pprdr.asp", ep.https);
    c.tls = TlsTrust::CertificateFile(ep.ca.clone());
    c.dialect = Dialect::Msnp12;
    c.timeout = TIMEOUT;
    Ok(Client::connect(c).await?)
}

/// The next event that `pick` accepts, within the deadline.
async fn wait_event<T>(
    events: &mut tokio::sync::mpsc::Receiver<Event>,
    what: &str,
    pick: impl Fn(&Event) -> Option<T>,
) -> Result<T> {
    let deadline = tokio::time::Instant::now() + TIMEOUT * 4;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(e)) => {
                if let Some(t) = pick(&e) {
                    return Ok(t);
                }
            }
            Ok(None) => bail!("the session ended before {what}"),
            Err(_) => bail!("no {what}"),
        }
    }
}

#[tokio::test]
async fn chat_in_the_terminal_with_a_library_client() -> Result<()> {
    let s = TestServer::start(ServerOptions::default()).await?;
    s.add_account("alice@x.com", PASSWORD, "Alice").await?;
    s.add_account("bob@x.com", PASSWORD, "Bob").await?;
    // Alice's list holds Bob before the terminal client signs in.
    let (alice, _a) = library_client(&s, "alice@x.com").await?;
    alice.add_contact(List::Forward, "bob@x.com").await?;
    alice.sign_out().await;
    let (bob, mut b_ev) = library_client(&s, "bob@x.com").await?;

    let dir = tempfile::tempdir()?;
    let ep = s.endpoint();
    let command = [
        quote(&msgr_bin().to_string_lossy()),
        "chat".into(),
        "--server".into(),
        quote(&ep.msnp.to_string()),
        "--nexus".into(),
        quote(&format!("https://{}/rdr/pprdr.asp", ep.https)),
        "--ca".into(),
        quote(&ep.ca.to_string_lossy()),
        "--email".into(),
        "alice@x.com".into(),
        "--downloads".into(),
        quote(&dir.path().to_string_lossy()),
    ]
    .join(" ");
    let tmux = Tmux::start(dir.path(), &command, &[("MSGR_PASSWORD", PASSWORD)])?;

    // Signed in: the header, the help bar, and Bob online in the contact list.
    tmux.wait_for("the contact list with Bob online", |s| {
        s.contains("Alice <alice@x.com> (online)") && s.contains("● Bob") && s.contains("? help")
    })
    .await?;
    // Rows: "No group", then Bob. Enter opens a chat, which invites him.
    tmux.keys(&["Down", "Enter"])?;
    let ring = wait_event(&mut b_ev, "ring from alice", |e| match e {
        Event::Ring(r) if r.from == "alice@x.com" => Some(r.clone()),
        _ => None,
    })
    .await?;
    let chat = bob.answer(&ring).await?;
    tmux.wait_for("Bob joining", |s| s.contains("Bob (bob@x.com) joined"))
        .await?;

    // The library side types and talks; the terminal shows both.
    chat.send_typing("bob@x.com").await?;
    tmux.wait_for("Bob typing", |s| s.contains("Bob is typing…"))
        .await?;
    chat.send_text("hello from the library").await?;
    tmux.wait_for("Bob's message", |s| {
        s.contains("Bob: hello from the library")
    })
    .await?;

    // A reply typed in the terminal reaches the library side.
    tmux.type_text("hi back from the terminal")?;
    tmux.keys(&["Enter"])?;
    let text = wait_event(&mut b_ev, "alice's reply", |e| match e {
        Event::Chat {
            event: ChatEvent::Message { from, text, .. },
            ..
        } if from == "alice@x.com" => Some(text.clone()),
        _ => None,
    })
    .await?;
    assert_eq!(text, "hi back from the terminal");
    tmux.wait_for("the reply on screen", |s| {
        s.contains("Alice: hi back from the terminal")
    })
    .await?;

    // Esc back to the contacts, q quits: msgr signs out, exits 0 and gives the terminal back.
    tmux.keys(&["Escape"])?;
    tmux.wait_for("the contact keys", |s| s.contains("? help"))
        .await?;
    tmux.keys(&["q"])?;
    let screen = tmux
        .wait_for("msgr exiting", |s| s.contains("msgr exited with"))
        .await?;
    assert!(
        screen.contains("msgr exited with 0"),
        "msgr failed:\n{screen}"
    );
    assert!(
        !screen.contains("Contacts"),
        "the screen was not restored:\n{screen}"
    );
    wait_event(&mut b_ev, "alice leaving", |e| match e {
        Event::Offline { email } if email == "alice@x.com" => Some(()),
        Event::Chat {
            event: ChatEvent::Left { email, .. },
            ..
        } if email == "alice@x.com" => Some(()),
        _ => None,
    })
    .await?;
    bob.sign_out().await;
    drop(tmux);
    Ok(())
}

/// One message from Bob Example to `to` through the MX.
async fn smtp_send(s: &TestServer, to: &str, subject: &str) -> Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let tcp = tokio::net::TcpStream::connect(s.addrs.mail.smtp.unwrap()).await?;
    let (r, mut w) = tokio::io::split(tcp);
    let mut r = BufReader::new(r);
    let mut steps = vec![(String::new(), "220")];
    for (line, code) in [
        ("EHLO test.example".to_owned(), "250"),
        ("MAIL FROM:<bob@other.example>".to_owned(), "250"),
        (format!("RCPT TO:<{to}>"), "250"),
        ("DATA".to_owned(), "354"),
        (
            format!("Subject: {subject}\r\nFrom: Bob Example <bob@other.example>\r\n\r\nhi\r\n."),
            "250",
        ),
        ("QUIT".to_owned(), "221"),
    ] {
        steps.push((line, code));
    }
    for (line, code) in steps {
        if !line.is_empty() {
            w.write_all(format!("{line}\r\n").as_bytes()).await?;
        }
        // The last line of a (possibly multi-line) reply.
        let reply = loop {
            let mut l = String::new();
            if tokio::time::timeout(TIMEOUT, r.read_line(&mut l)).await?? == 0 {
                bail!("the MX closed the connection after {line:?}");
            }
            if l.len() < 4 || l.as_bytes()[3] == b' ' {
                break l;
            }
        };
        if !reply.starts_with(code) {
            bail!("{line:?} answered {reply:?}");
        }
    }
    Ok(())
}

/// Hotmail in the terminal: the unread count in the header from sign-in, a line when mail
/// arrives over SMTP, and `i` opening the web inbox signed in: the page handed to `$BROWSER` is
/// the form Messenger posted, with the profile's ticket, readable by the user alone.
#[tokio::test]
async fn mail_in_the_terminal() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut mail = msgr_mail::MailConfig {
        allow_plaintext_auth: true,
        ..msgr_mail::MailConfig::default()
    };
    mail.spam.enabled = false;
    let s = TestServer::start(ServerOptions {
        mail: Some(mail),
        ..ServerOptions::default()
    })
    .await?;
    s.add_account("alice@x.com", PASSWORD, "Alice").await?;
    smtp_send(&s, "alice@x.com", "Before").await?;

    let dir = tempfile::tempdir()?;
    // The "browser": records what it was asked to open.
    let opened = dir.path().join("opened.txt");
    let browser = dir.path().join("browser.sh");
    std::fs::write(
        &browser,
        format!(
            "#!/bin/sh\nprintf '%s' \"$1\" > {}\n",
            quote(&opened.to_string_lossy())
        ),
    )?;
    std::fs::set_permissions(&browser, std::fs::Permissions::from_mode(0o700))?;
    let ep = s.endpoint();
    let command = [
        quote(&msgr_bin().to_string_lossy()),
        "chat".into(),
        "--server".into(),
        quote(&ep.msnp.to_string()),
        "--nexus".into(),
        quote(&format!("https://{}/rdr/pprdr.asp", ep.https)),
        "--ca".into(),
        quote(&ep.ca.to_string_lossy()),
        "--email".into(),
        "alice@x.com".into(),
        "--downloads".into(),
        quote(&dir.path().to_string_lossy()),
    ]
    .join(" ");
    let browser_var = browser.to_string_lossy().into_owned();
    let tmux = Tmux::start(
        dir.path(),
        &command,
        &[("MSGR_PASSWORD", PASSWORD), ("BROWSER", &browser_var)],
    )?;

    tmux.wait_for("the unread count from sign-in", |s| {
        s.contains("✉ 1 unread")
    })
    .await?;
    smtp_send(&s, "alice@x.com", "Hello").await?;
    tmux.wait_for("the new mail line and count", |s| {
        s.contains("new mail from Bob Example: Hello") && s.contains("✉ 2 unread")
    })
    .await?;

    tmux.keys(&["i"])?;
    tmux.wait_for("the inbox opened", |s| {
        s.contains("inbox opened in the browser")
    })
    .await?;
    let target = std::fs::read_to_string(&opened).context("the browser was not started")?;
    let path = target
        .strip_prefix("file://")
        .with_context(|| format!("the browser was given {target:?}"))?;
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the page holding the ticket is mode {mode:o}");
    let html = std::fs::read_to_string(path)?;
    let post_url = format!("https://127.0.0.1:{}/mail/login", ep.https.port());
    assert!(html.contains(&format!("action=\"{post_url}\"")), "{html}");
    for field in [
        "name=\"mode\" value=\"ttl\"",
        "name=\"username\" value=\"alice@x.com\"",
        "name=\"login\" value=\"alice\"",
        "name=\"rru\" value=\"/mail/inbox\"",
        "name=\"svc\" value=\"mail\"",
        "name=\"sid\" value=\"507\"",
        "name=\"id\" value=\"2\"",
    ] {
        assert!(html.contains(field), "{field} missing from {html}");
    }
    let auth = html
        .split("name=\"auth\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_default();
    assert!(!auth.is_empty(), "no ticket in {html}");
    std::fs::remove_dir_all(Path::new(path).parent().unwrap())?;

    tmux.keys(&["q"])?;
    tmux.wait_for("msgr exiting", |s| s.contains("msgr exited with 0"))
        .await?;
    drop(tmux);
    s.stop().await
}
