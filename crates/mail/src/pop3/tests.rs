//! The session over an in-memory stream with paused time: the timers (RFC 1939's autologout) and the
//! future's size. Everything else runs against the real server in `crates/it/tests/pop3.rs`.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::testing::{context, TestContext};
use crate::MailConfig;
use tokio::io::{AsyncBufReadExt, BufReader, DuplexStream};
use tokio::time::Instant;

/// The size of what a function's future takes, without running it.
fn future_size<A, B, C, D, E, R>(_: fn(A, B, C, D, E) -> R) -> usize {
    std::mem::size_of::<R>()
}

/// Every connection's task holds this future for its whole life, idle or not: it must stay small (the
/// TLS half and command handling are boxed). About 0.8 KiB in a debug build.
#[test]
fn idle_session_future_stays_small() {
    let plain = future_size(serve_tcp);
    assert!(plain <= 2048, "serve_tcp's future is {plain} bytes");
    let generic = future_size(serve::<TcpStream>);
    assert!(generic <= 2048, "serve's future is {generic} bytes");
}

struct Client {
    io: BufReader<DuplexStream>,
    task: tokio::task::JoinHandle<()>,
    shutdown: CancellationToken,
    _ctx: TestContext,
}

/// A session as if over TLS (so `USER/PASS` are allowed), after its greeting.
async fn session(config: MailConfig) -> Client {
    let ctx = context(config);
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let shutdown = CancellationToken::new();
    let peer = SocketAddr::from(([127, 0, 0, 1], 1110));
    let task = tokio::spawn(serve(theirs, ctx.ctx.clone(), peer, true, shutdown.clone()));
    let mut c = Client {
        io: BufReader::new(ours),
        task,
        shutdown,
        _ctx: ctx,
    };
    let greeting = c.line().await;
    assert!(greeting.starts_with("+OK"), "{greeting}");
    c
}

impl Client {
    /// The next line, `""` at the end of the stream.
    async fn line(&mut self) -> String {
        let mut line = String::new();
        self.io.read_line(&mut line).await.unwrap();
        line.trim_end().to_owned()
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.io
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        self.line().await
    }

    async fn login(&mut self) {
        assert!(self.cmd("USER alice@example.com").await.starts_with("+OK"));
        let answer = self.cmd("PASS pw").await;
        assert!(answer.starts_with("+OK"), "{answer}");
    }
}

#[tokio::test(start_paused = true)]
async fn silence_before_login_ends_at_the_greeting_timeout() {
    let config = MailConfig::default();
    let limit = config.greeting_timeout();
    let mut c = session(config).await;
    let start = Instant::now();
    let bye = c.line().await;
    assert!(bye.starts_with("-ERR"), "{bye}");
    assert_eq!(c.line().await, "");
    let waited = start.elapsed();
    assert!(waited >= limit && waited < limit * 2, "{waited:?}");
    c.task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn autologout_after_login_is_at_least_ten_minutes_and_deletes_nothing() {
    // A command timeout below RFC 1939's minimum: the transaction state still waits ten minutes.
    let config = MailConfig {
        command_timeout_secs: 60,
        ..MailConfig::default()
    };
    let mut c = session(config).await;
    let store = c._ctx.ctx.store.clone();
    let raw = b"Subject: x\r\n\r\nbody\r\n".to_vec();
    let delivered = store
        .deliver(
            &[msgr_store::Delivery {
                raw,
                summary: Default::default(),
                internal_date: 0,
                targets: vec![msgr_store::LocalTarget {
                    account: "alice@example.com".into(),
                    folder: msgr_store::FolderRef::Special(msgr_store::SpecialUse::Inbox),
                    flags: msgr_store::Flags::empty(),
                }],
                outbound: None,
            }],
            1 << 30,
        )
        .unwrap();
    assert!(delivered[0].is_ok());
    c.login().await;
    assert!(c.cmd("DELE 1").await.starts_with("+OK"));
    let start = Instant::now();
    let bye = c.line().await;
    assert!(bye.starts_with("-ERR"), "{bye}");
    assert_eq!(c.line().await, "");
    let waited = start.elapsed();
    assert!(waited >= AUTOLOGOUT_MIN, "autologout after {waited:?}");
    c.task.await.unwrap();
    // Not QUIT: the DELE was not applied, and the maildrop lock is free again.
    let inbox = store.folder("alice@example.com", "INBOX").unwrap().unwrap();
    assert_eq!(inbox.messages, 1);
    assert!(!c._ctx.ctx.maildrop_locks.is_locked("alice@example.com"));
}

fn to_alice(raw: &[u8]) -> msgr_store::Delivery {
    msgr_store::Delivery {
        raw: raw.to_vec(),
        summary: Default::default(),
        internal_date: 0,
        targets: vec![msgr_store::LocalTarget {
            account: "alice@example.com".into(),
            folder: msgr_store::FolderRef::Special(msgr_store::SpecialUse::Inbox),
            flags: msgr_store::Flags::empty(),
        }],
        outbound: None,
    }
}

impl Client {
    /// The lines of a multi-line response, its terminating `.` removed.
    async fn lines(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let mut l = String::new();
            let n = self.io.read_line(&mut l).await.unwrap();
            assert!(n > 0, "closed in a multi-line response");
            let l = l.trim_end();
            if l == "." {
                return out;
            }
            out.push(l.to_owned());
        }
    }
}

#[tokio::test]
async fn listings_larger_than_the_output_buffer() {
    let mut c = session(MailConfig::default()).await;
    let batch: Vec<_> = (0..3000)
        .map(|i| to_alice(format!("Subject: {i}\r\n\r\n{}\r\n", "x".repeat(i % 50)).as_bytes()))
        .collect();
    let store = c._ctx.ctx.store.clone();
    let results = tokio::task::spawn_blocking(move || store.deliver(&batch, 1 << 30).unwrap())
        .await
        .unwrap();
    assert!(results.iter().all(Result::is_ok));
    c.login().await;
    assert!(c.cmd("DELE 2").await.starts_with("+OK"));
    // Pipelined, so the second listing is already waiting while the first is written out.
    c.io.get_mut().write_all(b"LIST\r\nUIDL\r\n").await.unwrap();
    assert_eq!(
        c.line().await,
        format!("+OK 2999 messages ({} octets)", {
            (0..3000usize)
                .filter(|&i| i != 1)
                .map(|i| format!("Subject: {i}\r\n\r\n{}\r\n", "x".repeat(i % 50)).len())
                .sum::<usize>()
        })
    );
    let list = c.lines().await;
    assert_eq!(list.len(), 2999);
    assert_eq!(list[0], "1 16");
    assert!(list[1].starts_with("3 "), "{}", list[1]);
    assert!(c.line().await.starts_with("+OK"));
    let ids = c.lines().await;
    assert_eq!(ids.len(), 2999);
    let unique: std::collections::HashSet<&str> =
        ids.iter().filter_map(|l| l.split(' ').nth(1)).collect();
    assert_eq!(unique.len(), 2999);
    assert!(c.cmd("QUIT").await.starts_with("+OK"));
    c.task.await.unwrap();
}

#[tokio::test]
async fn retrieved_messages_are_seen_after_quit() {
    let mut c = session(MailConfig::default()).await;
    let store = c._ctx.ctx.store.clone();
    let batch: Vec<_> = (0..3)
        .map(|i| to_alice(format!("Subject: {i}\r\n\r\nbody\r\n").as_bytes()))
        .collect();
    let results = store.deliver(&batch, 1 << 30).unwrap();
    assert!(results.iter().all(Result::is_ok));
    c.login().await;
    // RETR 1 and 3 (3 then deleted), TOP 2: only 1 is left seen.
    for cmd in ["RETR 1", "TOP 2 0", "RETR 3"] {
        assert!(c.cmd(cmd).await.starts_with("+OK"));
        c.lines().await;
    }
    assert!(c.cmd("DELE 3").await.starts_with("+OK"));
    assert_eq!(c.cmd("QUIT").await, "+OK bye, 1 messages deleted");
    c.task.await.unwrap();
    let inbox = store.folder("alice@example.com", "INBOX").unwrap().unwrap();
    let seen: Vec<bool> = store
        .messages(inbox.id)
        .unwrap()
        .iter()
        .map(|m| m.flags.contains(msgr_store::Flags::SEEN))
        .collect();
    assert_eq!(seen, [true, false]);
}

#[tokio::test(start_paused = true)]
async fn shutdown_token_ends_an_idle_session() {
    let mut c = session(MailConfig::default()).await;
    c.login().await;
    c.shutdown.cancel();
    let bye = c.line().await;
    assert!(bye.starts_with("-ERR [SYS/TEMP]"), "{bye}");
    assert_eq!(c.line().await, "");
    c.task.await.unwrap();
}
