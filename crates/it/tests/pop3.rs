//! POP3 against the real server: Python's `poplib` (an independent client) over plain TCP, `STLS` and
//! implicit TLS, and a raw client for what `poplib` will not send (bad input, refused logins). Mail is
//! put in the Inbox through the store, the way delivery does.

#![allow(clippy::unwrap_used)]

use anyhow::{bail, ensure, Context, Result};
use msgr_it::{ServerOptions, TestServer, TIMEOUT};
use msgr_mail::MailConfig;
use msgr_store::{
    Delivery, Flags, FolderRef, LocalTarget, MailStore, MessageSummary, SpecialUse, Store,
};
use std::net::SocketAddr;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const ALICE: &str = "alice@example.com";
const PASSWORD: &str = "correct horse";

/// A server whose mail listeners are on loopback, with plaintext `USER/PASS` allowed or not.
async fn start(allow_plaintext_auth: bool) -> Result<TestServer> {
    let server = TestServer::start(ServerOptions {
        mail: Some(MailConfig {
            allow_plaintext_auth,
            ..MailConfig::default()
        }),
        ..ServerOptions::default()
    })
    .await?;
    server.add_account(ALICE, PASSWORD, "Alice").await?;
    Ok(server)
}

fn pop3(server: &TestServer) -> SocketAddr {
    server.addrs.mail.pop3.expect("a TestServer binds POP3")
}

fn pop3s(server: &TestServer) -> SocketAddr {
    server.addrs.mail.pop3s.expect("a TestServer binds POP3S")
}

/// Stores `messages` in `account`'s Inbox, in this order (so they get ascending UIDs).
async fn deliver(server: &TestServer, account: &str, messages: &[Vec<u8>]) -> Result<()> {
    let db = server.config.database_path();
    let batch: Vec<Delivery> = messages
        .iter()
        .map(|raw| Delivery {
            raw: raw.clone(),
            summary: MessageSummary::default(),
            internal_date: 0,
            targets: vec![LocalTarget {
                account: account.to_owned(),
                folder: FolderRef::Special(SpecialUse::Inbox),
                flags: Flags::empty(),
            }],
            outbound: None,
        })
        .collect();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let store = Store::open_sqlite(&db)?;
        for result in store.deliver(&batch, 1 << 30)? {
            result?;
        }
        Ok(())
    })
    .await?
}

/// Three messages: a plain one, one with lines that need byte-stuffing, and a large one (1 MiB).
fn sample_messages() -> Vec<Vec<u8>> {
    let first =
        b"From: bob@example.com\r\nTo: alice@example.com\r\nSubject: one\r\n\r\nHello Alice.\r\n\
                  Second line.\r\nThird line.\r\n"
            .to_vec();
    let dots = b"From: bob@example.com\r\nSubject: dots\r\n\r\n.\r\n..\r\n.leading dot\r\nend\r\n"
        .to_vec();
    let mut big = b"From: bob@example.com\r\nSubject: big\r\n\r\n".to_vec();
    let mut i = 0;
    while big.len() < 1 << 20 {
        // Every 7th line starts with a dot, to be stuffed across the session's chunk boundaries.
        let line = if i % 7 == 0 {
            format!(".line {i} {}\r\n", "x".repeat(i % 100))
        } else {
            format!("line {i} {}\r\n", "y".repeat(i % 100))
        };
        big.extend_from_slice(line.as_bytes());
        i += 1;
    }
    vec![first, dots, big]
}

/// The header and the first `n` body lines, as `TOP msg n` should return them.
fn top(raw: &[u8], n: usize) -> Vec<u8> {
    let text = String::from_utf8_lossy(raw);
    let (header, body) = text.split_once("\r\n\r\n").unwrap();
    let mut out = format!("{header}\r\n\r\n");
    for line in body.split_inclusive("\r\n").take(n) {
        out.push_str(line);
    }
    out.into_bytes()
}

/// Runs Python's `poplib` against `addr` (`mode`: `plain`, `stls` or `ssl`) doing `action` (see the
/// script); returns what it printed as `(key, values)` lines.
async fn poplib(
    mode: &str,
    addr: SocketAddr,
    user: &str,
    password: &str,
    action: &str,
) -> Result<Vec<(String, Vec<String>)>> {
    let run = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(POPLIB_SCRIPT)
        .args([
            mode,
            &addr.ip().to_string(),
            &addr.port().to_string(),
            user,
            password,
            action,
        ])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(TIMEOUT * 6, run)
        .await
        .with_context(|| format!("poplib {mode} {action} did not finish"))?
        .context("running python3")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "poplib {mode} {action} failed: {}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(stdout
        .lines()
        .map(|l| {
            let mut words = l.split(' ').map(str::to_owned);
            let key = words.next().unwrap_or_default();
            (key, words.collect())
        })
        .collect())
}

/// The values printed under `key`, one entry per line.
fn values<'a>(lines: &'a [(String, Vec<String>)], key: &str) -> Vec<&'a [String]> {
    lines
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_slice())
        .collect()
}

/// Prints `key value…` lines; bytes as hex. Logins retry while the maildrop is still locked by a
/// session the server has not yet seen close.
const POPLIB_SCRIPT: &str = r#"
import poplib, ssl, sys, time
mode, host, port, user, pw, action = sys.argv[1:7]
port = int(port)
ctx = ssl._create_unverified_context()

def out(key, *vals):
    print(key, *vals, flush=True)

def connect():
    if mode == "ssl":
        return poplib.POP3_SSL(host, port, context=ctx, timeout=10)
    p = poplib.POP3(host, port, timeout=10)
    if mode == "stls":
        p.stls(context=ctx)
    return p

def login(retry=True):
    deadline = time.time() + 10
    while True:
        p = connect()
        p.user(user)
        try:
            p.pass_(pw)
            return p
        except poplib.error_proto as e:
            p.close()
            if retry and b"[IN-USE]" in e.args[0] and time.time() < deadline:
                time.sleep(0.05)
                continue
            raise

def listing(p):
    n, size = p.stat()
    out("stat", n, size)
    for l in p.list()[1]:
        out("list", l.decode())
    for l in p.uidl()[1]:
        out("uidl", l.decode())
    return n

def body(lines):
    return b"".join(l + b"\r\n" for l in lines).hex()

if action == "full":
    p = connect()
    out("capa", *sorted(p.capa().keys()))
    p.user(user)
    out("pass", p.pass_(pw).decode())
    n = listing(p)
    for i in range(1, n + 1):
        out("uidl1", p.uidl(i).decode())
        out("list1", p.list(i).decode())
        _, lines, _ = p.retr(i)
        out("retr", i, body(lines))
        _, lines, _ = p.top(i, 0)
        out("top0", i, body(lines))
        _, lines, _ = p.top(i, 2)
        out("top2", i, body(lines))
    out("noop", p.noop().decode())
    out("dele", p.dele(1).decode())
    try:
        p.retr(1)
    except poplib.error_proto as e:
        out("retr-deleted", e.args[0].decode())
    out("stat-after-dele", *p.stat())
    out("rset", p.rset().decode())
    out("dele", p.dele(1).decode())
    out("quit", p.quit().decode())
elif action == "count":
    p = login()
    listing(p)
    p.quit()
elif action == "drop":
    p = login()
    p.dele(1)
    p.dele(2)
    out("stat-before-drop", *p.stat())
    p.close()
elif action == "lock":
    a = login()
    b = connect()
    b.user(user)
    try:
        b.pass_(pw)
        out("second", "logged in")
    except poplib.error_proto as e:
        out("second", e.args[0].decode())
    b.close()
    out("first", *a.stat())
    a.quit()
    c = login()
    out("third", *c.stat())
    c.quit()
elif action == "refused":
    p = connect()
    out("capa", *sorted(p.capa().keys()))
    try:
        p.user(user)
        out("user", "accepted")
    except poplib.error_proto as e:
        out("user", e.args[0].decode())
    try:
        p.pass_(pw)
        out("pass", "accepted")
    except poplib.error_proto as e:
        out("pass", e.args[0].decode())
    p.quit()
"#;

#[tokio::test]
async fn poplib_reads_and_deletes_over_plaintext() -> Result<()> {
    let server = start(true).await?;
    let messages = sample_messages();
    deliver(&server, ALICE, &messages).await?;
    let total: usize = messages.iter().map(Vec::len).sum();

    let out = poplib("plain", pop3(&server), ALICE, PASSWORD, "full").await?;
    let capa = values(&out, "capa");
    for cap in ["TOP", "UIDL", "USER", "RESP-CODES", "PIPELINING", "STLS"] {
        assert!(
            capa[0].iter().any(|c| c == cap),
            "{cap} missing from {capa:?}"
        );
    }
    assert_eq!(values(&out, "pass")[0][0], "+OK");
    assert_eq!(values(&out, "stat")[0], ["3".to_owned(), total.to_string()]);
    let list: Vec<String> = values(&out, "list").iter().map(|v| v.join(" ")).collect();
    let want: Vec<String> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| format!("{} {}", i + 1, m.len()))
        .collect();
    assert_eq!(list, want);
    let uidls: Vec<&String> = values(&out, "uidl").iter().map(|v| &v[1]).collect();
    assert_eq!(uidls.len(), 3);
    for (i, id) in uidls.iter().enumerate() {
        let (validity, uid) = id.split_once('.').context("unique id is UIDVALIDITY.UID")?;
        ensure!(
            validity.parse::<u32>().is_ok() && uid.parse::<u32>().is_ok(),
            "{id}"
        );
        ensure!(!uidls[..i].contains(id), "unique ids repeat: {uidls:?}");
        assert_eq!(
            values(&out, "uidl1")[i],
            ["+OK".to_owned(), (i + 1).to_string(), id.to_string()]
        );
    }
    for (i, raw) in messages.iter().enumerate() {
        let n = (i + 1).to_string();
        let get = |key: &str| -> Vec<u8> {
            let v = values(&out, key).into_iter().find(|v| v[0] == n).unwrap();
            hex::decode(&v[1]).unwrap()
        };
        assert!(
            get("retr") == *raw,
            "RETR {n} differs from the delivered message"
        );
        assert_eq!(
            String::from_utf8_lossy(&get("top0")),
            String::from_utf8_lossy(&top(raw, 0))
        );
        assert_eq!(
            String::from_utf8_lossy(&get("top2")),
            String::from_utf8_lossy(&top(raw, 2))
        );
    }
    assert!(values(&out, "retr-deleted")[0][0].starts_with("-ERR"));
    assert_eq!(
        values(&out, "stat-after-dele")[0],
        ["2".to_owned(), (total - messages[0].len()).to_string()]
    );
    assert!(
        values(&out, "quit")[0].join(" ").starts_with("+OK"),
        "{out:?}"
    );

    // Both messages left were retrieved whole: marked \Seen at QUIT, for IMAP and the web inbox.
    for (meta, _) in server.mail_messages(ALICE, "INBOX").await? {
        assert!(meta.flags.contains(Flags::SEEN), "{meta:?}");
    }
    // The deletion was applied at QUIT: a new session sees the other two, with the same unique ids.
    let after = poplib("plain", pop3(&server), ALICE, PASSWORD, "count").await?;
    assert_eq!(values(&after, "stat")[0][0], "2");
    let ids: Vec<&String> = values(&after, "uidl").iter().map(|v| &v[1]).collect();
    assert_eq!(ids, uidls[1..]);
    server.stop().await
}

#[tokio::test]
async fn dropped_connection_deletes_nothing() -> Result<()> {
    let server = start(true).await?;
    deliver(&server, ALICE, &sample_messages()[..2]).await?;
    let out = poplib("plain", pop3(&server), ALICE, PASSWORD, "drop").await?;
    assert_eq!(values(&out, "stat-before-drop")[0][0], "0");
    let after = poplib("plain", pop3(&server), ALICE, PASSWORD, "count").await?;
    assert_eq!(values(&after, "stat")[0][0], "2", "{after:?}");
    server.stop().await
}

#[tokio::test]
async fn maildrop_is_locked_while_a_session_holds_it() -> Result<()> {
    let server = start(true).await?;
    deliver(&server, ALICE, &sample_messages()[..1]).await?;
    let out = poplib("plain", pop3(&server), ALICE, PASSWORD, "lock").await?;
    let second = values(&out, "second")[0].join(" ");
    assert!(second.starts_with("-ERR [IN-USE]"), "{second}");
    assert_eq!(values(&out, "first")[0][0], "1");
    // Released at QUIT: the next login works.
    assert_eq!(values(&out, "third")[0][0], "1");
    server.stop().await
}

#[tokio::test]
async fn tls_only_logins_by_default() -> Result<()> {
    let server = start(false).await?;
    deliver(&server, ALICE, &sample_messages()[..1]).await?;

    // In the clear: no USER in CAPA, USER and PASS refused with [AUTH], STLS offered.
    let out = poplib("plain", pop3(&server), ALICE, PASSWORD, "refused").await?;
    let capa = values(&out, "capa")[0];
    assert!(capa.iter().any(|c| c == "STLS"), "{capa:?}");
    assert!(!capa.iter().any(|c| c == "USER"), "{capa:?}");
    for key in ["user", "pass"] {
        let answer = values(&out, key)[0].join(" ");
        assert!(answer.starts_with("-ERR [AUTH]"), "{key}: {answer}");
    }

    // Implicit TLS and STLS both log in and see the message.
    for (mode, addr) in [("ssl", pop3s(&server)), ("stls", pop3(&server))] {
        let out = poplib(mode, addr, ALICE, PASSWORD, "count").await?;
        assert_eq!(values(&out, "stat")[0][0], "1", "{mode}: {out:?}");
    }

    // A wrong password is refused over TLS too, with [AUTH].
    let err = poplib("ssl", pop3s(&server), ALICE, "wrong", "count").await;
    let err = format!("{:#}", err.err().context("a wrong password logged in")?);
    assert!(err.contains("[AUTH]"), "{err}");
    server.stop().await
}

/// A raw POP3 connection: for what a real client would never send.
struct Raw<S> {
    io: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Raw<S> {
    async fn new(stream: S) -> Result<Raw<S>> {
        let mut raw = Raw {
            io: BufReader::new(stream),
        };
        let greeting = raw.line().await?;
        ensure!(greeting.starts_with("+OK"), "greeting: {greeting}");
        Ok(raw)
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        let io = self.io.get_mut();
        tokio::time::timeout(TIMEOUT, async {
            io.write_all(bytes).await?;
            io.flush().await
        })
        .await
        .context("writing timed out")??;
        Ok(())
    }

    /// The next line, `""` once the server has closed.
    async fn line(&mut self) -> Result<String> {
        let mut line = Vec::new();
        tokio::time::timeout(TIMEOUT, self.io.read_until(b'\n', &mut line))
            .await
            .context("no line from the server")??;
        Ok(String::from_utf8_lossy(&line).trim_end().to_owned())
    }

    async fn cmd(&mut self, line: &str) -> Result<String> {
        self.send(format!("{line}\r\n").as_bytes()).await?;
        self.line().await
    }

    /// The rest of a multi-line response.
    async fn lines(&mut self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        loop {
            let l = self.line().await?;
            if l == "." {
                return Ok(out);
            }
            ensure!(out.len() < 100_000, "no end to the multi-line response");
            out.push(l);
        }
    }
}

async fn raw_plain(addr: SocketAddr) -> Result<Raw<TcpStream>> {
    Raw::new(TcpStream::connect(addr).await?).await
}

#[tokio::test]
async fn bad_input_gets_err_and_too_much_of_it_a_close() -> Result<()> {
    let server = start(true).await?;
    let mut c = raw_plain(pop3(&server)).await?;
    let mut errors = 0;
    let mut expect_err = |answer: String, what: &str| -> Result<()> {
        ensure!(answer.starts_with("-ERR"), "{what}: {answer}");
        errors += 1;
        Ok(())
    };
    c.send(b"\0\0\0\r\n").await?;
    expect_err(c.line().await?, "NUL")?;
    c.send(b"NOOP\n").await?;
    expect_err(c.line().await?, "bare LF")?;
    // A 10 MB line, sent in pieces while the server discards it.
    let chunk = vec![b'A'; 64 * 1024];
    for _ in 0..160 {
        c.send(&chunk).await?;
    }
    c.send(b"\r\n").await?;
    expect_err(c.line().await?, "10 MB line")?;
    c.send(b"\x16\x03\x01\x00\xa5 garbage\r\n").await?;
    expect_err(c.line().await?, "binary garbage")?;
    expect_err(c.cmd("GET / HTTP/1.1").await?, "HTTP")?;
    // Pipelined: each gets its answer, in order.
    c.send(b"STAT\r\nRETR 1\r\nCAPA\r\n").await?;
    expect_err(c.line().await?, "STAT before login")?;
    expect_err(c.line().await?, "RETR before login")?;
    assert_eq!(c.line().await?, "+OK capability list follows");
    let caps = c.lines().await?;
    assert!(caps.iter().any(|l| l == "UIDL"), "{caps:?}");
    // The session still works…
    assert!(c.cmd(&format!("USER {ALICE}")).await?.starts_with("+OK"));
    assert!(c.cmd(&format!("PASS {PASSWORD}")).await?.starts_with("+OK"));
    assert_eq!(c.cmd("STAT").await?, "+OK 0 0");
    // No such message is an answer, not a bad command.
    let answer = c.cmd("RETR 1").await?;
    assert!(answer.starts_with("-ERR no such message"), "{answer}");
    // …until the bad commands add up to the limit (`max_errors`, 10): then -ERR and a close.
    let mut closed = false;
    for _ in 0..20 {
        let answer = c.cmd("XYZZY").await?;
        ensure!(answer.starts_with("-ERR"), "{answer}");
        errors += 1;
        if answer.contains("too many errors") {
            closed = c.line().await?.is_empty();
            break;
        }
    }
    assert!(closed, "still open after {errors} bad commands");
    assert_eq!(errors, 10);

    // TLS handshake garbage on the POP3S port: a clean close, and the port still serves.
    let mut garbage = TcpStream::connect(pop3s(&server)).await?;
    // The server may close before it has read all of this: write errors are expected.
    let _ = garbage.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff]).await;
    let _ = garbage.write_all(&[0x42; 4096]).await;
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(TIMEOUT, garbage.read_to_end(&mut sink))
        .await
        .context("the server kept a TLS-garbage connection open")?;
    let mut plain_on_tls = TcpStream::connect(pop3s(&server)).await?;
    let _ = plain_on_tls.write_all(b"USER alice\r\n").await;
    let _ = tokio::time::timeout(TIMEOUT, plain_on_tls.read_to_end(&mut sink))
        .await
        .context("the server kept a plaintext-on-TLS connection open")?;
    let out = poplib("ssl", pop3s(&server), ALICE, PASSWORD, "count").await?;
    assert_eq!(values(&out, "stat")[0][0], "0");
    server.stop().await
}

#[tokio::test]
async fn stls_discards_pipelined_plaintext() -> Result<()> {
    let server = start(false).await?;
    let mut c = raw_plain(pop3(&server)).await?;
    // Commands sent in the clear behind STLS must not be run as if they came over TLS.
    c.send(b"STLS\r\nUSER alice@example.com\r\n").await?;
    assert_eq!(c.line().await?, "+OK begin TLS negotiation");
    let tcp = c.io.into_inner();
    let tls = msgr_it::tls_connector(&server.endpoint().ca)?;
    let stream = tls
        .connect(
            rustls::pki_types::ServerName::try_from("localhost".to_owned())?,
            tcp,
        )
        .await
        .context("TLS after STLS")?;
    let mut c = Raw {
        io: BufReader::new(stream),
    };
    // No greeting after STLS (RFC 2595 §4); the USER above was dropped, so PASS needs a USER first.
    let answer = c.cmd(&format!("PASS {PASSWORD}")).await?;
    assert!(answer.starts_with("-ERR"), "{answer}");
    assert!(c.cmd(&format!("USER {ALICE}")).await?.starts_with("+OK"));
    assert!(c.cmd(&format!("PASS {PASSWORD}")).await?.starts_with("+OK"));
    let answer = c.cmd("STLS").await?;
    assert!(answer.starts_with("-ERR"), "{answer}");
    assert!(c.cmd("QUIT").await?.starts_with("+OK"));
    if !c.line().await?.is_empty() {
        bail!("the server did not close after QUIT");
    }
    server.stop().await
}

async fn raw_tls(server: &TestServer) -> Result<Raw<tokio_rustls::client::TlsStream<TcpStream>>> {
    let tls = msgr_it::tls_connector(&server.endpoint().ca)?;
    let tcp = TcpStream::connect(pop3s(server)).await?;
    let stream = tls
        .connect(
            rustls::pki_types::ServerName::try_from("localhost".to_owned())?,
            tcp,
        )
        .await
        .context("TLS handshake on the POP3S port")?;
    Raw::new(stream).await
}

/// `\0alice@example.com\0correct horse`, `bob@example.com\0alice@example.com\0correct horse` and
/// `\0alice@example.com\0wrong` in base64: SASL PLAIN responses (RFC 4616).
const PLAIN_ALICE: &str = "AGFsaWNlQGV4YW1wbGUuY29tAGNvcnJlY3QgaG9yc2U=";
const PLAIN_BOB_AS_ALICE: &str = "Ym9iQGV4YW1wbGUuY29tAGFsaWNlQGV4YW1wbGUuY29tAGNvcnJlY3QgaG9yc2U=";
const PLAIN_WRONG: &str = "AGFsaWNlQGV4YW1wbGUuY29tAHdyb25n";

#[tokio::test]
async fn auth_plain_over_tls_and_a_pipelined_transaction() -> Result<()> {
    let server = start(false).await?;
    let messages = sample_messages();
    deliver(&server, ALICE, &messages[1..2]).await?;

    let mut c = raw_plain(pop3(&server)).await?;
    let answer = c.cmd(&format!("AUTH PLAIN {PLAIN_ALICE}")).await?;
    assert!(answer.starts_with("-ERR [AUTH]"), "in the clear: {answer}");

    let mut c = raw_tls(&server).await?;
    assert_eq!(c.cmd("AUTH").await?, "+OK supported mechanisms follow");
    assert_eq!(c.lines().await?, ["PLAIN"]);
    assert_eq!(c.cmd("AUTH PLAIN").await?, "+");
    let answer = c.cmd(PLAIN_WRONG).await?;
    assert!(
        answer.starts_with("-ERR [AUTH]"),
        "wrong password: {answer}"
    );
    let answer = c.cmd(&format!("AUTH PLAIN {PLAIN_BOB_AS_ALICE}")).await?;
    assert!(
        answer.starts_with("-ERR [AUTH]"),
        "another authzid: {answer}"
    );
    assert_eq!(c.cmd("AUTH PLAIN").await?, "+");
    let answer = c.cmd("*").await?;
    assert!(answer.starts_with("-ERR"), "cancelled: {answer}");
    let answer = c.cmd(&format!("auth plain {PLAIN_ALICE}")).await?;
    assert!(answer.starts_with("+OK"), "{answer}");

    // RFC 2449 PIPELINING: all at once, answered in order.
    let size = messages[1].len();
    c.send(b"STAT\r\nLIST\r\nUIDL 1\r\nTOP 1 1\r\nDELE 1\r\nQUIT\r\n")
        .await?;
    assert_eq!(c.line().await?, format!("+OK 1 {size}"));
    assert!(c.line().await?.starts_with("+OK"));
    assert_eq!(c.lines().await?, [format!("1 {size}")]);
    assert!(c.line().await?.starts_with("+OK 1 "));
    assert!(c.line().await?.starts_with("+OK"));
    // The body's first line is "." alone: stuffed to "..".
    assert_eq!(
        c.lines().await?,
        ["From: bob@example.com", "Subject: dots", "", ".."]
    );
    assert_eq!(c.line().await?, "+OK message 1 deleted");
    assert_eq!(c.line().await?, "+OK bye, 1 messages deleted");
    assert!(server.mail_messages(ALICE, "INBOX").await?.is_empty());
    server.stop().await
}

#[tokio::test]
async fn shutdown_says_goodbye_and_deletes_nothing() -> Result<()> {
    let mut server = start(true).await?;
    deliver(&server, ALICE, &sample_messages()[..1]).await?;
    let mut c = raw_plain(pop3(&server)).await?;
    assert!(c.cmd(&format!("USER {ALICE}")).await?.starts_with("+OK"));
    assert!(c.cmd(&format!("PASS {PASSWORD}")).await?.starts_with("+OK"));
    assert!(c.cmd("DELE 1").await?.starts_with("+OK"));
    server.restart().await?;
    let bye = c.line().await?;
    assert!(bye.starts_with("-ERR [SYS/TEMP]"), "{bye}");
    assert_eq!(c.line().await?, "", "still open after the goodbye");
    assert_eq!(server.mail_messages(ALICE, "INBOX").await?.len(), 1);
    server.stop().await
}
