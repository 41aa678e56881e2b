//! SMTP against the real server over real sockets: the seed's 1995 dialogue byte for byte, Python's
//! `smtplib` and the `lettre` crate (independent clients) on the MX, submission (STARTTLS) and
//! submissions (implicit TLS) ports, and a raw client for what no polite client sends: unknown users,
//! relay attempts, refused and wrong credentials, 10 MB lines, bare LF, NUL bytes, pipelined garbage,
//! TLS garbage, and every limit with its reply code. Each test checks the store afterwards: a `250`
//! means the message is there, a refusal means it is not.

#![allow(clippy::unwrap_used)]

use anyhow::{bail, ensure, Context, Result};
use msgr_it::{ServerOptions, TestServer, TIMEOUT};
use msgr_mail::MailConfig;
use msgr_store::{Flags, MailStore, Store};
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const PASSWORD: &str = "correct horse";

/// A server with `mail` (default: plaintext AUTH allowed) and the accounts Alice and Bob.
async fn start(mail: Option<MailConfig>) -> Result<TestServer> {
    // These tests are about SMTP itself and compare stored bytes and Inbox counts with header-less
    // messages; the spam filter (tests/spam.rs) is off for them.
    let mut mail = mail.unwrap_or_else(|| MailConfig {
        allow_plaintext_auth: true,
        ..MailConfig::default()
    });
    mail.spam.enabled = false;
    let server = TestServer::start(ServerOptions {
        mail: Some(mail),
        ..ServerOptions::default()
    })
    .await?;
    server.add_account(ALICE, PASSWORD, "Alice").await?;
    server.add_account(BOB, PASSWORD, "Bob").await?;
    Ok(server)
}

/// The default mail configuration with some fields changed.
fn mail(f: impl FnOnce(&mut MailConfig)) -> Option<MailConfig> {
    let mut c = MailConfig {
        allow_plaintext_auth: true,
        ..MailConfig::default()
    };
    f(&mut c);
    Some(c)
}

fn mx(s: &TestServer) -> SocketAddr {
    s.addrs.mail.smtp.expect("a TestServer binds SMTP")
}
fn submission(s: &TestServer) -> SocketAddr {
    s.addrs
        .mail
        .submission
        .expect("a TestServer binds submission")
}
fn submissions(s: &TestServer) -> SocketAddr {
    s.addrs
        .mail
        .submissions
        .expect("a TestServer binds submissions")
}

/// One SMTP reply: its code and every line (`250-…`, `250 …`).
#[derive(Debug)]
struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    /// The text of the last line, after the code.
    fn text(&self) -> &str {
        self.lines.last().map_or("", |l| l.get(4..).unwrap_or(""))
    }
}

/// A raw SMTP client: sends exactly what it is told, reads replies with a deadline.
struct Smtp<S> {
    io: BufReader<S>,
}

impl Smtp<TcpStream> {
    async fn connect(addr: SocketAddr) -> Result<Smtp<TcpStream>> {
        let tcp = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
            .await
            .context("connect timed out")??;
        Ok(Smtp {
            io: BufReader::new(tcp),
        })
    }

    /// Connects and reads the `220` greeting.
    async fn greeted(addr: SocketAddr) -> Result<Smtp<TcpStream>> {
        let mut c = Smtp::connect(addr).await?;
        c.expect(220).await?;
        Ok(c)
    }

    /// `STARTTLS`, then the handshake trusting the server's certificate file.
    async fn starttls(
        mut self,
        server: &TestServer,
    ) -> Result<Smtp<tokio_rustls::client::TlsStream<TcpStream>>> {
        self.cmd("STARTTLS", 220).await?;
        let tcp = self.io.into_inner();
        let tls = tls_handshake(server, tcp).await?;
        Ok(Smtp {
            io: BufReader::new(tls),
        })
    }
}

async fn tls_handshake(
    server: &TestServer,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let connector = msgr_it::tls_connector(&server.data_dir().join("tls-cert.pem"))?;
    let name = ServerName::try_from("localhost")?;
    tokio::time::timeout(TIMEOUT, connector.connect(name, tcp))
        .await
        .context("TLS handshake timed out")?
        .context("TLS handshake")
}

impl<S: AsyncRead + AsyncWrite + Unpin> Smtp<S> {
    async fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        tokio::time::timeout(TIMEOUT, async {
            self.io.get_mut().write_all(bytes).await?;
            self.io.get_mut().flush().await
        })
        .await
        .context("write timed out")?
        .context("write failed")
    }

    async fn send(&mut self, line: &str) -> Result<()> {
        self.send_raw(format!("{line}\r\n").as_bytes()).await
    }

    async fn reply(&mut self) -> Result<Reply> {
        let mut lines = Vec::new();
        loop {
            let mut buf = Vec::new();
            let n = tokio::time::timeout(TIMEOUT, self.io.read_until(b'\n', &mut buf))
                .await
                .with_context(|| format!("no reply within {TIMEOUT:?}; so far {lines:?}"))??;
            if n == 0 {
                bail!("connection closed; reply so far {lines:?}");
            }
            let line = String::from_utf8(buf)?;
            let line = line.trim_end_matches(['\r', '\n']).to_owned();
            ensure!(
                line.len() >= 3 && line.as_bytes()[..3].iter().all(u8::is_ascii_digit),
                "not a reply line: {line:?}"
            );
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line);
            if !more {
                break;
            }
        }
        let code = lines[0][..3].parse()?;
        ensure!(
            lines.iter().all(|l| l[..3] == lines[0][..3]),
            "mixed codes in one reply: {lines:?}"
        );
        Ok(Reply { code, lines })
    }

    async fn expect(&mut self, code: u16) -> Result<Reply> {
        let r = self.reply().await?;
        ensure!(r.code == code, "expected {code}, got {:?}", r.lines);
        Ok(r)
    }

    async fn cmd(&mut self, line: &str, code: u16) -> Result<Reply> {
        self.send(line).await?;
        self.expect(code)
            .await
            .with_context(|| format!("after {line:?}"))
    }

    /// Fails unless the server closes the connection (EOF or reset) without another byte.
    async fn expect_closed(&mut self) -> Result<()> {
        let mut buf = [0u8; 256];
        match tokio::time::timeout(TIMEOUT, self.io.read(&mut buf)).await {
            Err(_) => bail!("the server did not close the connection"),
            Ok(Ok(0)) | Ok(Err(_)) => Ok(()),
            Ok(Ok(n)) => bail!(
                "expected a close, got {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
        }
    }

    /// `EHLO`, returning the extension lines.
    async fn ehlo(&mut self, name: &str) -> Result<Vec<String>> {
        let r = self.cmd(&format!("EHLO {name}"), 250).await?;
        Ok(r.lines.iter().skip(1).map(|l| l[4..].to_owned()).collect())
    }

    /// `AUTH PLAIN` with an initial response.
    async fn auth_plain(&mut self, user: &str, password: &str, code: u16) -> Result<Reply> {
        use base64::Engine as _;
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.cmd(&format!("AUTH PLAIN {token}"), code).await
    }

    /// A whole transaction; returns the queue id from `250 2.0.0 Ok: queued as ID`.
    async fn send_mail(&mut self, from: &str, to: &[&str], message: &str) -> Result<String> {
        self.cmd(&format!("MAIL FROM:<{from}>"), 250).await?;
        for rcpt in to {
            self.cmd(&format!("RCPT TO:<{rcpt}>"), 250).await?;
        }
        self.cmd("DATA", 354).await?;
        self.send_raw(message.as_bytes()).await?;
        let r = self.cmd(".", 250).await?;
        queue_id(&r)
    }
}

fn queue_id(r: &Reply) -> Result<String> {
    r.text()
        .strip_prefix("2.0.0 Ok: queued as ")
        .map(str::to_owned)
        .with_context(|| format!("not a queued reply: {:?}", r.lines))
}

/// The messages in a folder as text (raw bytes, lossily), oldest first.
async fn folder_texts(server: &TestServer, account: &str, folder: &str) -> Result<Vec<String>> {
    Ok(server
        .mail_messages(account, folder)
        .await?
        .into_iter()
        .map(|(_, raw)| String::from_utf8_lossy(&raw).into_owned())
        .collect())
}

/// The seed's SMTP dialogue (003, a telnet session with CERN's sendmail in 1995): `EHLO`, then `HELO`,
/// `MAIL FROM:<>`, `RCPT TO:` without angle brackets, `DATA`, the text, `.`, `QUIT`. Every byte the
/// server sends is checked; only the queue id varies.
#[tokio::test]
async fn seed_dialogue_byte_for_byte() -> Result<()> {
    let server = start(None).await?;
    server
        .add_account("ysemenov@cernvm.cern.ch", PASSWORD, "Yuri")
        .await?;
    let size = MailConfig::default().max_message_bytes;
    // (client sends, server answers); `{id}` is the queue id.
    let dialogue: Vec<(&str, String)> = vec![
        ("", "220 localhost ESMTP msgr\r\n".into()),
        (
            "EHLO dxmint.cern.ch\r\n",
            format!(
                "250-localhost\r\n250-PIPELINING\r\n250-SIZE {size}\r\n250-8BITMIME\r\n\
                 250-SMTPUTF8\r\n250-CHUNKING\r\n250-ENHANCEDSTATUSCODES\r\n250 STARTTLS\r\n"
            ),
        ),
        ("HELO crnvtm.cern.ch\r\n", "250 localhost\r\n".into()),
        ("MAIL FROM:<>\r\n", "250 2.1.0 Ok\r\n".into()),
        (
            "RCPT TO: ysemenov@cernvm.cern.ch\r\n",
            "250 2.1.5 Ok\r\n".into(),
        ),
        ("DATA\r\n", "354 End data with <CR><LF>.<CR><LF>\r\n".into()),
        (
            "ni-i-ni...\r\n.\r\n",
            "250 2.0.0 Ok: queued as {id}\r\n".into(),
        ),
        ("QUIT\r\n", "221 2.0.0 Bye\r\n".into()),
    ];
    let mut c = Smtp::connect(mx(&server)).await?;
    let mut id = String::new();
    for (send, expected) in &dialogue {
        c.send_raw(send.as_bytes()).await?;
        let mut got = String::new();
        for _ in 0..expected.matches("\r\n").count() {
            let mut line = Vec::new();
            tokio::time::timeout(TIMEOUT, c.io.read_until(b'\n', &mut line))
                .await
                .with_context(|| format!("after {send:?}: got only {got:?}"))??;
            got.push_str(&String::from_utf8(line)?);
        }
        match expected.split_once("{id}") {
            Some((before, after)) => {
                ensure!(
                    got.starts_with(before) && got.ends_with(after),
                    "after {send:?}: expected {expected:?}, got {got:?}"
                );
                id = got[before.len()..got.len() - after.len()].to_owned();
                ensure!(
                    !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()),
                    "queue id {id:?}"
                );
            }
            None => ensure!(
                &got == expected,
                "after {send:?}: expected {expected:?}, got {got:?}"
            ),
        }
    }
    c.expect_closed().await?;

    let inbox = folder_texts(&server, "ysemenov@cernvm.cern.ch", "INBOX").await?;
    ensure!(inbox.len() == 1, "inbox: {inbox:?}");
    let raw = &inbox[0];
    let trace = format!(
        "Return-Path: <>\r\nReceived: from crnvtm.cern.ch ([127.0.0.1])\r\n\tby localhost with SMTP id {id};\r\n\t"
    );
    ensure!(raw.starts_with(&trace), "stored: {raw:?}");
    ensure!(raw.ends_with(" +0000\r\nni-i-ni...\r\n"), "stored: {raw:?}");
    Ok(())
}

/// Python's smtplib: a message with a base64 attachment to the MX; submission with STARTTLS and
/// `AUTH PLAIN`; submissions (implicit TLS) with `AUTH LOGIN`. The server's certificate is verified.
#[tokio::test]
async fn python_smtplib_mx_starttls_and_implicit_tls() -> Result<()> {
    let server = start(mail(|c| c.allow_plaintext_auth = false)).await?;
    let ca = server.data_dir().join("tls-cert.pem");
    let run = |mode: &str, port: u16, sender: &str| {
        vec![
            mode.to_owned(),
            "127.0.0.1".to_owned(),
            port.to_string(),
            ALICE.to_owned(),
            PASSWORD.to_owned(),
            sender.to_owned(),
            BOB.to_owned(),
            ca.display().to_string(),
        ]
    };
    python(
        SMTPLIB,
        run("mx", mx(&server).port(), "carol@elsewhere.test"),
    )
    .await?;
    python(SMTPLIB, run("starttls", submission(&server).port(), ALICE)).await?;
    python(SMTPLIB, run("implicit", submissions(&server).port(), ALICE)).await?;

    let inbox = server.mail_messages(BOB, "INBOX").await?;
    ensure!(inbox.len() == 3, "bob's inbox has {} messages", inbox.len());
    let expected = [
        ("mx", "carol@elsewhere.test", "with ESMTP id"),
        ("starttls", ALICE, "with ESMTPSA id"),
        ("implicit", ALICE, "with ESMTPSA id"),
    ];
    for ((meta, raw), (mode, sender, with)) in inbox.iter().zip(expected) {
        let text = String::from_utf8_lossy(raw);
        ensure!(
            meta.summary.subject == format!("smtplib {mode}"),
            "{meta:?}"
        );
        ensure!(meta.summary.message_id == format!("{mode}@smtplib.test"));
        ensure!(meta.summary.has_attachments, "{meta:?}");
        ensure!(meta.summary.from == sender, "{meta:?}");
        ensure!(text.contains(with), "{mode}: {text}");
        // smtplib stuffed the line that starts with a dot; the server unstuffed it.
        ensure!(text.contains("\r\n.leading dot\r\n"), "{mode}: {text}");
        ensure!(meta.flags == Flags::empty());
    }
    // Each submission left a read copy in Alice's Sent folder.
    let sent = server.mail_messages(ALICE, "Sent").await?;
    ensure!(sent.len() == 2, "sent: {}", sent.len());
    ensure!(sent.iter().all(|(m, _)| m.flags == Flags::SEEN));
    Ok(())
}

/// smtplib's side of [`python_smtplib_mx_starttls_and_implicit_tls`]:
/// `mode host port user password sender recipient cafile`.
const SMTPLIB: &str = r#"
import smtplib, ssl, sys
from email.message import EmailMessage
mode, host, port, user, password, sender, rcpt, ca = sys.argv[1:9]
port = int(port)
msg = EmailMessage()
msg["From"] = sender
msg["To"] = rcpt
msg["Subject"] = "smtplib " + mode
msg["Message-ID"] = "<%s@smtplib.test>" % mode
msg.set_content("Hello from smtplib, " + mode + "\n.leading dot\n")
msg.add_attachment(b"\x00\x01binary", maintype="application", subtype="octet-stream", filename="a.bin")
ctx = ssl.create_default_context(cafile=ca)
if mode == "mx":
    with smtplib.SMTP(host, port, timeout=10) as s:
        s.send_message(msg)
elif mode == "starttls":
    with smtplib.SMTP(host, port, timeout=10) as s:
        s.ehlo()
        assert not s.has_extn("auth"), "AUTH offered before TLS"
        s.starttls(context=ctx)
        s.ehlo()
        assert "PLAIN" in s.esmtp_features["auth"].split()
        s.login(user, password)
        s.send_message(msg)
else:
    with smtplib.SMTP_SSL(host, port, timeout=10, context=ctx) as s:
        s.ehlo()
        s.user, s.password = user, password
        s.auth("LOGIN", s.auth_login)
        s.send_message(msg)
"#;

async fn python(script: &str, args: Vec<String>) -> Result<()> {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .args(&args)
            .output(),
    )
    .await
    .context("python3 timed out")?
    .context("running python3")?;
    ensure!(
        out.status.success(),
        "python3 {:?} failed: {}",
        args.first(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// lettre (a Rust SMTP client, rustls on ring) submitting over STARTTLS with `AUTH PLAIN`, and over
/// implicit TLS with `AUTH LOGIN`, verifying the server's certificate.
#[tokio::test]
async fn lettre_submission_starttls_and_implicit_tls() -> Result<()> {
    use lettre::transport::smtp::authentication::{Credentials, Mechanism};
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let server = start(mail(|c| c.allow_plaintext_auth = false)).await?;
    let pem = std::fs::read(server.data_dir().join("tls-cert.pem"))?;
    let tls = || -> Result<TlsParameters> {
        Ok(TlsParameters::builder("localhost".to_owned())
            .add_root_certificate(Certificate::from_pem(&pem)?)
            .build_rustls()?)
    };
    let credentials = Credentials::new(ALICE.to_owned(), PASSWORD.to_owned());
    let transports = [
        (
            "starttls",
            submission(&server).port(),
            Tls::Required(tls()?),
            Mechanism::Plain,
        ),
        (
            "wrapper",
            submissions(&server).port(),
            Tls::Wrapper(tls()?),
            Mechanism::Login,
        ),
    ];
    for (name, port, tls, mechanism) in transports {
        let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(port)
            .tls(tls)
            .credentials(credentials.clone())
            .authentication(vec![mechanism])
            .timeout(Some(TIMEOUT))
            .build();
        let email = Message::builder()
            .from(format!("Alice <{ALICE}>").parse()?)
            .to(format!("Bob <{BOB}>").parse()?)
            .subject(format!("lettre {name}"))
            .body(format!("Hello over {name}, héhé\n"))?;
        let response = mailer.send(email).await.context(name)?;
        ensure!(response.code().to_string() == "250", "{response:?}");
    }
    let inbox = server.mail_messages(BOB, "INBOX").await?;
    let subjects: Vec<&str> = inbox
        .iter()
        .map(|(m, _)| m.summary.subject.as_str())
        .collect();
    ensure!(
        subjects == ["lettre starttls", "lettre wrapper"],
        "{subjects:?}"
    );
    ensure!(inbox[0].0.summary.from == format!("Alice <{ALICE}>"));
    ensure!(server.mail_messages(ALICE, "Sent").await?.len() == 2);
    Ok(())
}

/// The MX takes mail for local accounts only: unknown users are 550 5.1.1, other domains 554 5.7.1
/// (never an open relay), `AUTH` is not offered. Nothing refused is stored.
#[tokio::test]
async fn mx_refuses_unknown_users_and_relaying() -> Result<()> {
    let server = start(None).await?;
    let mut c = Smtp::greeted(mx(&server)).await?;
    let ext = c.ehlo("client.test").await?;
    ensure!(!ext.iter().any(|e| e.starts_with("AUTH")), "{ext:?}");
    c.cmd("AUTH PLAIN AGFsaWNlAHB3", 502).await?;
    c.cmd("MAIL FROM:<someone@elsewhere.test>", 250).await?;
    let r = c.cmd("RCPT TO:<nobody@example.com>", 550).await?;
    ensure!(r.text().starts_with("5.1.1 "), "{r:?}");
    let r = c.cmd("RCPT TO:<victim@elsewhere.test>", 554).await?;
    ensure!(r.text().starts_with("5.7.1 "), "{r:?}");
    // Letter case and the missing brackets do not matter for a real user.
    c.cmd("rcpt to: BOB@Example.COM", 250).await?;
    c.cmd("DATA", 354).await?;
    c.send_raw(b"Subject: hi\r\n\r\nfor bob only\r\n.\r\n")
        .await?;
    c.expect(250).await?;
    c.cmd("QUIT", 221).await?;
    let inbox = folder_texts(&server, BOB, "INBOX").await?;
    ensure!(inbox.len() == 1 && inbox[0].ends_with("\r\n\r\nfor bob only\r\n"));
    ensure!(inbox[0].starts_with("Return-Path: <someone@elsewhere.test>\r\n"));
    Ok(())
}

/// Submission: `AUTH` is refused in the clear (538) and not advertised, `MAIL` needs `AUTH` (530);
/// after `STARTTLS` a wrong password is 535, the right one 235, and `MAIL FROM` must be the account
/// (553).
#[tokio::test]
async fn submission_demands_tls_auth_and_own_sender() -> Result<()> {
    let server = start(mail(|c| c.allow_plaintext_auth = false)).await?;
    let mut c = Smtp::greeted(submission(&server)).await?;
    let ext = c.ehlo("client.test").await?;
    ensure!(ext.contains(&"STARTTLS".to_owned()), "{ext:?}");
    ensure!(!ext.iter().any(|e| e.starts_with("AUTH")), "{ext:?}");
    let r = c.auth_plain(ALICE, PASSWORD, 538).await?;
    ensure!(r.text().starts_with("5.7.11 "), "{r:?}");
    c.cmd("MAIL FROM:<alice@example.com>", 530).await?;

    let mut c = c.starttls(&server).await?;
    let ext = c.ehlo("client.test").await?;
    ensure!(ext.contains(&"AUTH PLAIN LOGIN".to_owned()), "{ext:?}");
    ensure!(!ext.contains(&"STARTTLS".to_owned()), "{ext:?}");
    c.auth_plain(ALICE, "wrong password", 535).await?;
    c.auth_plain("nobody@example.com", PASSWORD, 535).await?;
    // AUTH LOGIN, cancelled half-way.
    c.cmd("AUTH LOGIN", 334).await?;
    c.cmd("*", 501).await?;
    c.auth_plain(ALICE, PASSWORD, 235).await?;
    c.cmd("AUTH PLAIN AGFsaWNlAHB3", 503).await?;
    let r = c.cmd("MAIL FROM:<bob@example.com>", 553).await?;
    ensure!(r.text().starts_with("5.7.1 "), "{r:?}");
    c.cmd("MAIL FROM:<>", 553).await?;
    let id = c
        .send_mail(
            "Alice@Example.com",
            &[BOB],
            "Subject: signed\r\n\r\nfrom alice\r\n",
        )
        .await?;
    c.cmd("QUIT", 221).await?;
    let inbox = folder_texts(&server, BOB, "INBOX").await?;
    ensure!(inbox.len() == 1 && inbox[0].contains(&format!("with ESMTPSA id {id};")));
    // The client sent neither Date nor Message-ID: submission added them (RFC 6409 §8).
    ensure!(inbox[0].contains(&format!("\r\nMessage-ID: <{id}@localhost>\r\n")));
    ensure!(inbox[0].contains("\r\nDate: "));
    ensure!(folder_texts(&server, ALICE, "Sent").await?.len() == 1);
    Ok(())
}

/// Garbage in the command stream: a 10 MB line (answered 500 5.5.2 without being buffered), NUL
/// bytes, commands ending in a bare LF, commands out of order. The session keeps working after each.
#[tokio::test]
async fn long_lines_nul_bytes_and_bad_sequences() -> Result<()> {
    let server = start(mail(|c| c.max_errors = 100)).await?;
    let mut c = Smtp::greeted(mx(&server)).await?;
    let mut huge = vec![b'A'; 10 * 1024 * 1024];
    huge.extend_from_slice(b"\r\n");
    c.send_raw(&huge).await?;
    let r = c.expect(500).await?;
    ensure!(r.text().starts_with("5.5.2 "), "{r:?}");
    c.cmd("NOOP", 250).await?;

    c.send_raw(b"\0\0\0\r\n").await?;
    c.expect(500).await?;
    c.send_raw(b"MAIL FROM:<a\0b@example.com>\r\n").await?;
    let r = c.reply().await?;
    ensure!(r.code == 501 || r.code == 503, "{r:?}");
    // Bare LF ends a command line (telnet clients, old scripts).
    c.send_raw(b"NOOP\n").await?;
    c.expect(250).await?;
    c.cmd("MAIL FROM:<a@elsewhere.test>", 503).await?; // before HELO
    c.cmd("HELO client.test", 250).await?;
    c.cmd("DATA", 503).await?; // before MAIL
    c.cmd("RCPT TO:<bob@example.com>", 503).await?;
    c.cmd("MAIL FROM:<a@elsewhere.test>", 250).await?;
    c.cmd("MAIL FROM:<a@elsewhere.test>", 503).await?;
    let r = c.cmd("DATA", 554).await?; // no recipients
    ensure!(r.text().starts_with("5.5.1 "), "{r:?}");
    c.cmd("VRFY bob", 252).await?;
    c.cmd("RSET", 250).await?;
    c.cmd("XYZZY", 500).await?;
    c.cmd("QUIT", 221).await?;
    c.expect_closed().await?;
    ensure!(server.mail_messages(BOB, "INBOX").await?.is_empty());
    Ok(())
}

/// The message body: bare LF becomes CRLF but never ends the data (no SMTP smuggling), a lone
/// `<LF>.<LF>` is kept as text, NUL bytes are stored as they came, dot-stuffing is undone.
#[tokio::test]
async fn data_with_bare_lf_nul_and_smuggling_attempt() -> Result<()> {
    let server = start(None).await?;
    let mut c = Smtp::greeted(mx(&server)).await?;
    c.cmd("EHLO client.test", 250).await?;
    c.cmd("MAIL FROM:<a@elsewhere.test>", 250).await?;
    c.cmd("RCPT TO:<bob@example.com>", 250).await?;
    c.cmd("DATA", 354).await?;
    c.send_raw(
        b"Subject: odd\r\n\r\nline one\nline\0two\n.\nMAIL FROM:<forged@example.com>\r\n..dot\r\n.\r\n",
    )
    .await?;
    c.expect(250).await?;
    // Had `<LF>.<LF>` ended the data, this would be a reply to the smuggled MAIL.
    c.cmd("NOOP", 250).await?;
    c.cmd("QUIT", 221).await?;
    let inbox = server.mail_messages(BOB, "INBOX").await?;
    ensure!(inbox.len() == 1, "{} messages", inbox.len());
    let raw = &inbox[0].1;
    let body = b"\r\n\r\nline one\r\nline\0two\r\n.\r\nMAIL FROM:<forged@example.com>\r\n.dot\r\n";
    ensure!(
        raw.ends_with(body),
        "stored {:?}",
        String::from_utf8_lossy(raw)
    );
    Ok(())
}

/// PIPELINING: a whole transaction in one write gets its replies in order; pipelined garbage runs into
/// the error limit (421 4.7.0, then close) and the next client is served as usual.
#[tokio::test]
async fn pipelining_and_the_error_limit() -> Result<()> {
    let server = start(mail(|c| c.max_errors = 5)).await?;
    let mut c = Smtp::greeted(mx(&server)).await?;
    c.send_raw(
        b"EHLO client.test\r\nMAIL FROM:<a@elsewhere.test>\r\nRCPT TO:<bob@example.com>\r\n\
          RCPT TO:<alice@example.com>\r\nDATA\r\n",
    )
    .await?;
    for code in [250, 250, 250, 250, 354] {
        c.expect(code).await?;
    }
    c.send_raw(b"Subject: piped\r\n\r\nbody\r\n.\r\nNOOP\r\nRSET\r\n")
        .await?;
    for code in [250, 250, 250] {
        c.expect(code).await?;
    }
    let garbage: Vec<u8> = (0..20)
        .flat_map(|i| format!("GARBAGE{i} \u{1}\u{2}\r\n").into_bytes())
        .collect();
    c.send_raw(&garbage).await?;
    for _ in 0..5 {
        c.expect(500).await?;
    }
    let r = c.expect(421).await?;
    ensure!(r.text().starts_with("4.7.0 "), "{r:?}");
    c.expect_closed().await?;

    let mut next = Smtp::greeted(mx(&server)).await?;
    next.cmd("NOOP", 250).await?;
    ensure!(server.mail_messages(BOB, "INBOX").await?.len() == 1);
    ensure!(server.mail_messages(ALICE, "INBOX").await?.len() == 1);
    Ok(())
}

/// Not TLS on the implicit-TLS port, and garbage after `STARTTLS`: the connection is closed (a TLS
/// alert at most), and the next client's handshake works.
#[tokio::test]
async fn tls_garbage_is_closed_cleanly() -> Result<()> {
    let server = start(None).await?;
    let mut c = Smtp::connect(submissions(&server)).await?;
    c.send_raw(b"EHLO plaintext.test\r\nGET / HTTP/1.1\r\n\r\n")
        .await?;
    let mut sink = Vec::new();
    tokio::time::timeout(TIMEOUT, c.io.read_to_end(&mut sink))
        .await
        .context("the server kept a non-TLS connection open")?
        .ok();
    ensure!(
        !sink.starts_with(b"220"),
        "plaintext greeting on the TLS port"
    );

    let mut c = Smtp::greeted(submission(&server)).await?;
    c.cmd("EHLO client.test", 250).await?;
    c.cmd("STARTTLS", 220).await?;
    c.send_raw(b"this is not a ClientHello\r\n").await?;
    let mut sink = Vec::new();
    tokio::time::timeout(TIMEOUT, c.io.read_to_end(&mut sink))
        .await
        .context("the server kept a failed handshake open")?
        .ok();

    // A proper client is served on both ports.
    let tcp = TcpStream::connect(submissions(&server)).await?;
    let mut tls = Smtp {
        io: BufReader::new(tls_handshake(&server, tcp).await?),
    };
    tls.expect(220).await?;
    let ext = tls.ehlo("client.test").await?;
    ensure!(ext.contains(&"AUTH PLAIN LOGIN".to_owned()), "{ext:?}");
    tls.auth_plain(ALICE, PASSWORD, 235).await?;
    tls.cmd("QUIT", 221).await?;
    let c = Smtp::greeted(submission(&server)).await?;
    let mut c = c.starttls(&server).await?;
    c.ehlo("client.test").await?;
    Ok(())
}

/// Commands pipelined behind `STARTTLS` in the clear are dropped, never run inside the TLS session
/// (the CVE-2011-0411 injection): the smuggled `AUTH` does not sign the client in.
#[tokio::test]
async fn starttls_drops_pipelined_plaintext() -> Result<()> {
    use base64::Engine as _;
    let server = start(mail(|c| c.allow_plaintext_auth = false)).await?;
    let mut c = Smtp::greeted(submission(&server)).await?;
    c.cmd("EHLO client.test", 250).await?;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{ALICE}\0{PASSWORD}"));
    c.send_raw(format!("STARTTLS\r\nAUTH PLAIN {token}\r\n").as_bytes())
        .await?;
    c.expect(220).await?;
    let tcp = c.io.into_inner();
    // Either the plaintext was dropped with the old buffer and the handshake works, or it reached
    // the TLS layer and the handshake fails: both keep the injected command from running.
    let Ok(tls) = tls_handshake(&server, tcp).await else {
        return Ok(());
    };
    let mut c = Smtp {
        io: BufReader::new(tls),
    };
    let ext = c.ehlo("client.test").await?;
    ensure!(ext.contains(&"AUTH PLAIN LOGIN".to_owned()), "{ext:?}");
    c.cmd(&format!("MAIL FROM:<{ALICE}>"), 530).await?;
    Ok(())
}

/// Limits with their codes: recipients per message (452 4.5.3), `SIZE=` at `MAIL` and the size of the
/// data itself (552 5.3.4, also with `BDAT`), the mailbox quota (552 5.2.2, nothing stored).
#[tokio::test]
async fn recipient_size_and_quota_limits() -> Result<()> {
    let server = start(mail(|c| {
        c.max_recipients = 2;
        c.max_message_bytes = 2000;
    }))
    .await?;
    server
        .add_account("carol@example.com", PASSWORD, "Carol")
        .await?;
    let mut c = Smtp::greeted(mx(&server)).await?;
    c.cmd("EHLO client.test", 250).await?;
    c.cmd("MAIL FROM:<a@elsewhere.test> SIZE=5000", 552).await?;
    c.cmd("MAIL FROM:<a@elsewhere.test> SIZE=500", 250).await?;
    c.cmd("RCPT TO:<alice@example.com>", 250).await?;
    c.cmd("RCPT TO:<bob@example.com>", 250).await?;
    let r = c.cmd("RCPT TO:<carol@example.com>", 452).await?;
    ensure!(r.text().starts_with("4.5.3 "), "{r:?}");
    c.cmd("DATA", 354).await?;
    let big = format!("Subject: big\r\n\r\n{}\r\n.\r\n", "x".repeat(3000));
    c.send_raw(big.as_bytes()).await?;
    let r = c.expect(552).await?;
    ensure!(r.text().starts_with("5.3.4 "), "{r:?}");

    // BDAT: chunks, and the same limit.
    c.cmd("MAIL FROM:<a@elsewhere.test>", 250).await?;
    c.cmd("RCPT TO:<bob@example.com>", 250).await?;
    let part1 = b"Subject: chunked\r\n\r\n";
    let part2 = b"in two chunks\r\n";
    c.send_raw(format!("BDAT {}\r\n", part1.len()).as_bytes())
        .await?;
    c.send_raw(part1).await?;
    c.expect(250).await?;
    c.send_raw(format!("BDAT {} LAST\r\n", part2.len()).as_bytes())
        .await?;
    c.send_raw(part2).await?;
    let r = c.expect(250).await?;
    queue_id(&r)?;
    c.cmd("MAIL FROM:<a@elsewhere.test>", 250).await?;
    c.cmd("RCPT TO:<bob@example.com>", 250).await?;
    c.send_raw(b"BDAT 3000 LAST\r\n").await?;
    c.send_raw(&[b'y'; 3000]).await?;
    c.expect(552).await?;

    // Quota: Carol's mailbox holds 100 bytes.
    let db = server.config.database_path();
    tokio::task::spawn_blocking(move || {
        Store::open_sqlite(&db)?.set_quota("carol@example.com", Some(100))
    })
    .await??;
    c.cmd("MAIL FROM:<a@elsewhere.test>", 250).await?;
    c.cmd("RCPT TO:<carol@example.com>", 250).await?;
    c.cmd("RCPT TO:<bob@example.com>", 250).await?;
    c.cmd("DATA", 354).await?;
    c.send_raw(format!("Subject: q\r\n\r\n{}\r\n.\r\n", "z".repeat(500)).as_bytes())
        .await?;
    let r = c.expect(552).await?;
    ensure!(r.text().starts_with("5.2.2 "), "{r:?}");
    c.cmd("QUIT", 221).await?;

    ensure!(server.mail_messages(ALICE, "INBOX").await?.is_empty());
    ensure!(server
        .mail_messages("carol@example.com", "INBOX")
        .await?
        .is_empty());
    // All or nothing: Bob, who had room, did not get the over-quota message either.
    let bob = folder_texts(&server, BOB, "INBOX").await?;
    ensure!(
        bob.len() == 1 && bob[0].ends_with("\r\n\r\nin two chunks\r\n"),
        "{bob:?}"
    );
    Ok(())
}

/// Connections per client IP: the one over the limit hears 421 4.7.0 and is closed; when a connection
/// ends its place is free again.
#[tokio::test]
async fn connections_per_ip_are_capped() -> Result<()> {
    let server = start(mail(|c| c.max_connections_per_ip = 2)).await?;
    let first = Smtp::greeted(mx(&server)).await?;
    let _second = Smtp::greeted(submission(&server)).await?;
    let mut third = Smtp::connect(mx(&server)).await?;
    let r = third.expect(421).await?;
    ensure!(r.text().starts_with("4.7.0 "), "{r:?}");
    third.expect_closed().await?;

    drop(first);
    // The slot is given back when the server notices the close; poll for it until the deadline.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let mut c = Smtp::connect(mx(&server)).await?;
        let r = c.reply().await?;
        if r.code == 220 {
            c.cmd("QUIT", 221).await?;
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the slot never came back: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Shutdown: a session waiting for its next command hears 421 4.3.2 and is closed.
#[tokio::test]
async fn shutdown_says_421() -> Result<()> {
    let server = start(None).await?;
    let mut c = Smtp::greeted(mx(&server)).await?;
    c.cmd("EHLO client.test", 250).await?;
    let stopping = tokio::spawn(server.stop());
    let r = c.expect(421).await?;
    ensure!(r.text().starts_with("4.3.2 "), "{r:?}");
    c.expect_closed().await?;
    stopping.await??;
    Ok(())
}
