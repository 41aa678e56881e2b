//! The session over an in-memory stream (it is generic over its stream for this): the Junk hook, the
//! change subscription's lifetime, and arbitrary bytes that must never panic the session.

#![allow(clippy::unwrap_used)]

use crate::{testing, JunkHook, JunkMove, MailConfig};
use proptest::prelude::*;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Recorder(Mutex<Vec<(String, JunkMove, usize)>>);

impl JunkHook for Recorder {
    fn moved(&self, account: &str, direction: JunkMove, _folder_id: i64, uids: &[u32]) {
        self.0
            .lock()
            .unwrap()
            .push((account.to_owned(), direction, uids.len()));
    }
}

struct Client {
    r: BufReader<tokio::io::ReadHalf<DuplexStream>>,
    w: tokio::io::WriteHalf<DuplexStream>,
}

impl Client {
    /// A session served over an in-memory pipe (plaintext allowed as on loopback): the client side, the
    /// session's task and its greeting.
    async fn open(ctx: Arc<crate::Context>) -> (Client, tokio::task::JoinHandle<()>, String) {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let session = spawn_session(server, ctx);
        let (r, w) = tokio::io::split(client);
        let mut c = Client {
            r: BufReader::new(r),
            w,
        };
        let mut greeting = String::new();
        c.r.read_line(&mut greeting).await.unwrap();
        (c, session, greeting)
    }

    async fn cmd(&mut self, tag: &str, line: &str) -> Vec<String> {
        self.w
            .write_all(format!("{tag} {line}\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = Vec::new();
        loop {
            let mut l = String::new();
            assert!(
                self.r.read_line(&mut l).await.unwrap() > 0,
                "closed: {out:?}"
            );
            let done = l.starts_with(&format!("{tag} "));
            out.push(l);
            if done {
                return out;
            }
        }
    }
}

fn peer() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1))
}

#[tokio::test]
async fn junk_hook_hears_moves_and_sessions_leave_no_subscription() {
    let t = testing::context(MailConfig {
        allow_plaintext_auth: true,
        ..MailConfig::default()
    });
    let recorder = Arc::new(Recorder::default());
    let hook: Arc<dyn JunkHook> = recorder.clone();
    assert!(t.ctx.junk_hook.set(hook).is_ok());
    let (mut c, session, greeting) = Client::open(t.ctx.clone()).await;
    assert!(
        greeting.starts_with("* OK [CAPABILITY IMAP4rev1"),
        "{greeting}"
    );
    assert!(c.cmd("l", "LOGIN alice@example.com pw").await[0].starts_with("l OK"));
    assert_eq!(t.ctx.notify.subscribed_accounts(), 1);
    let msg = "Subject: spam?\r\n\r\nbuy now\r\n";
    let r = c
        .cmd("a", &format!("APPEND INBOX {{{}+}}\r\n{msg}", msg.len()))
        .await;
    assert!(r[0].starts_with("a OK [APPENDUID"), "{r:?}");
    c.cmd("s", "SELECT INBOX").await;
    let r = c.cmd("m", "MOVE 1 Junk").await;
    assert!(r.last().unwrap().starts_with("m OK"), "{r:?}");
    c.cmd("s", "SELECT Junk").await;
    // A move within the account but not across Junk's boundary says nothing.
    let r = c.cmd("c", "COPY 1 Trash").await;
    assert!(r.last().unwrap().starts_with("c OK"), "{r:?}");
    let r = c.cmd("m", "UID MOVE 1:* INBOX").await;
    assert!(r.last().unwrap().starts_with("m OK"), "{r:?}");
    assert_eq!(
        *recorder.0.lock().unwrap(),
        vec![
            ("alice@example.com".to_owned(), JunkMove::IntoJunk, 1),
            ("alice@example.com".to_owned(), JunkMove::OutOfJunk, 1),
        ]
    );
    c.cmd("q", "LOGOUT").await;
    session.await.unwrap();
    assert_eq!(t.ctx.notify.subscribed_accounts(), 0);
}

/// A session's task on the server end of an in-memory pipe, plaintext allowed as on loopback.
fn spawn_session(
    server: tokio::io::DuplexStream,
    ctx: Arc<crate::Context>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(super::serve(
        server,
        ctx,
        peer(),
        true,
        CancellationToken::new(),
    ))
}

/// Runs a session over `input` (then end of input) and returns what it wrote.
async fn run_session(ctx: Arc<crate::Context>, input: Vec<u8>) -> Vec<u8> {
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let session = spawn_session(server, ctx);
    client.write_all(&input).await.unwrap();
    client.shutdown().await.unwrap();
    let mut out = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut client, &mut out)
        .await
        .unwrap();
    session.await.expect("the session never panics");
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Arbitrary bytes after a login, alone or after a plausible command prefix: answered or closed,
    /// never a panic.
    #[test]
    fn arbitrary_input_never_panics(
        prefix in prop::sample::select(vec![
            "", "a SELECT ", "a FETCH 1 ", "a SEARCH ", "a STORE 1 ", "a APPEND INBOX ",
            "a UID ", "a LIST ", "a AUTHENTICATE PLAIN ", "a ID ", "a SELECT INBOX\r\nb FETCH ",
        ]),
        junk in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let t = testing::context(MailConfig {
                allow_plaintext_auth: true,
                ..MailConfig::default()
            });
            let mut input = b"l LOGIN alice@example.com pw\r\n".to_vec();
            input.extend_from_slice(prefix.as_bytes());
            input.extend_from_slice(&junk);
            input.extend_from_slice(b"\r\nz LOGOUT\r\n");
            let out = run_session(t.ctx.clone(), input).await;
            prop_assert!(out.starts_with(b"* OK"));
            Ok(())
        })?;
    }
}

/// Per-state idle timers: silence before login ends the session after `greeting_timeout_secs`, after
/// login only after `imap_timeout_secs` (RFC 9051's thirty minutes by default), `IDLE` included.
#[tokio::test(start_paused = true)]
async fn idle_timers_per_state() {
    let t = testing::context(MailConfig {
        allow_plaintext_auth: true,
        ..MailConfig::default()
    });
    let read_all = |mut client: DuplexStream| async move {
        let mut out = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut client, &mut out)
            .await
            .unwrap();
        String::from_utf8(out).unwrap()
    };
    // Before login.
    let (client, server) = tokio::io::duplex(4096);
    let started = tokio::time::Instant::now();
    let session = tokio::spawn(super::serve(
        server,
        t.ctx.clone(),
        peer(),
        true,
        CancellationToken::new(),
    ));
    let out = read_all(client).await;
    session.await.unwrap();
    assert!(
        out.ends_with("* BYE autologout: idle for too long\r\n"),
        "{out}"
    );
    assert_eq!(started.elapsed().as_secs(), 60);

    // Logged in and idling.
    let (client, server) = tokio::io::duplex(4096);
    let started = tokio::time::Instant::now();
    let session = tokio::spawn(super::serve(
        server,
        t.ctx.clone(),
        peer(),
        true,
        CancellationToken::new(),
    ));
    let (r, mut w) = tokio::io::split(client);
    w.write_all(b"l LOGIN alice@example.com pw\r\ni IDLE\r\n")
        .await
        .unwrap();
    let mut r = BufReader::new(r);
    let mut out = String::new();
    while tokio::io::AsyncBufReadExt::read_line(&mut r, &mut out)
        .await
        .unwrap()
        > 0
    {}
    session.await.unwrap();
    assert!(out.contains("+ idling\r\n"), "{out}");
    assert!(
        out.ends_with("* BYE autologout: idle for too long\r\n"),
        "{out}"
    );
    assert_eq!(started.elapsed().as_secs(), 30 * 60);
}

/// A header with NUL bytes (found by the `imap_mime` fuzz target): the ENVELOPE's strings go out as
/// literals without NUL, and the whole FETCH response parses with imap-codec.
#[test]
fn envelope_of_a_header_with_nul_bytes_parses() {
    use imap_codec::decode::Decoder;
    let raw = b"\rCC:!\n\t\xe9:\x9c\r>\0\0\0\0\0\0\0\0\r\n\t\n\n\xff\xff\xff:";
    let root = super::mime::parse(raw);
    let mut out = b"* 1 FETCH (ENVELOPE ".to_vec();
    super::mime::envelope(&mut out, root.header);
    out.extend_from_slice(b")\r\n");
    assert!(!out.contains(&0), "{}", String::from_utf8_lossy(&out));
    let (rest, _) = imap_codec::ResponseCodec::default()
        .decode(&out)
        .unwrap_or_else(|e| panic!("{e:?}: {}", String::from_utf8_lossy(&out)));
    assert!(rest.is_empty());
}

/// `FETCH` of header fields, `RFC822.HEADER` and `ENVELOPE` alone reads only the header blocks from the
/// store; the answer must be byte for byte what the full read gives (here: the same items followed by
/// `BODYSTRUCTURE`, which needs the whole message), for CRLF and bare-LF messages alike.
#[tokio::test]
async fn header_only_fetch_answers_as_the_full_read() {
    let t = testing::context(MailConfig {
        allow_plaintext_auth: true,
        ..MailConfig::default()
    });
    let (mut c, session, _greeting) = Client::open(t.ctx.clone()).await;
    assert!(c.cmd("l", "LOGIN alice@example.com pw").await[0].starts_with("l OK"));
    let crlf = "From: Carol <carol@far.test>\r\nSubject: folded\r\n  subject\r\nTo: alice@example.com\r\n\
                Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
                Subject: not a header\r\n\r\n--b--\r\n";
    let lf = "Subject: lf\nFrom: dave@far.test\n\nbody\n\nSubject: not a header\n";
    for msg in [crlf, lf] {
        let r = c
            .cmd("a", &format!("APPEND INBOX {{{}+}}\r\n{msg}", msg.len()))
            .await;
        assert!(r[0].starts_with("a OK [APPENDUID"), "{r:?}");
    }
    c.cmd("s", "SELECT INBOX").await;
    let items = "UID BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)] ENVELOPE RFC822.HEADER \
                 BODY.PEEK[HEADER.FIELDS.NOT (TO)] BODY.PEEK[HEADER]<0.10>";
    let headers = c.cmd("h", &format!("FETCH 1:2 ({items})")).await.concat();
    let full = c
        .cmd("f", &format!("FETCH 1:2 ({items} BODYSTRUCTURE)"))
        .await
        .concat();
    assert!(
        headers.contains("Subject: folded\r\n  subject\r\n"),
        "{headers}"
    );
    assert!(!headers.contains("not a header"), "{headers}");
    let headers: Vec<&str> = headers.split("* ").skip(1).collect();
    let full: Vec<&str> = full.split("* ").skip(1).collect();
    assert_eq!(headers.len(), 2, "{headers:?}");
    for (h, f) in headers.iter().zip(&full) {
        let h = h.split("h OK").next().unwrap();
        let same = h.strip_suffix(")\r\n").unwrap();
        assert!(f.starts_with(same), "{h}\n---\n{f}");
        assert!(f[same.len()..].starts_with(" BODYSTRUCTURE ("), "{f}");
    }
    c.cmd("q", "LOGOUT").await;
    session.await.unwrap();
}
