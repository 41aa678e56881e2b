//! POP3 sessions (RFC 1939, with RFC 2449 `CAPA` and response codes, RFC 2595 `STLS`, RFC 5034
//! `AUTH PLAIN`) over an account's Inbox.
//!
//! A session is an explicit state machine: [`State::Authorization`] until a user name and password
//! check out, then [`State::Transaction`] over a snapshot of the Inbox taken at login (message numbers
//! are positions in that snapshot and never change during the session). `DELE` only marks; the marked
//! messages are expunged in one store transaction when the client says `QUIT`, and `+OK` is sent only
//! after the store has made that durable. A connection that ends any other way (dropped, timed out,
//! shut down) deletes nothing.
//!
//! While a session is in the transaction state it holds its account's maildrop lock
//! ([`MaildropLocks`]): RFC 1939 §8 wants one POP3 session per maildrop, so a second login is answered
//! `-ERR [IN-USE]`.
//!
//! The session is generic over its stream ([`serve`]); [`serve_tcp`] is what the listeners call, because
//! only a plain `TcpStream` can be upgraded by `STLS` and only there is the implicit TLS handshake done.
//!
//! Timers: before login the client has `greeting_timeout` to say something (and to finish a TLS
//! handshake); after it, POP3's autologout is `command_timeout` but never under RFC 1939's ten minutes.
//! Either ends the session with `-ERR`, deleting nothing.
//!
//! Memory: an idle session holds its task's future (about 0.8 KiB: the TLS half and command handling
//! are boxed, allocated only when used), its 1 KiB read buffer and a small output buffer; `msgr-load
//! mail-idle --protocol pop3` measured 4.3 KB resident per idle plaintext session (debug build). A
//! `RETR` holds the message (the store hands it over whole) and at most about 32 KiB of output at a
//! time, given back once the response has been written; `LIST` and `UIDL` are written as they grow.

pub mod proto;

use crate::Context;
use msgr_store::{FlagOp, Flags, MailStore, MessageMeta};
use proto::{Command, DotStuffer, LineDecoder, LineEvent, RespCode};
use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// The read buffer: any acceptable command line and its CRLF, with room to spare for pipelined ones.
const READ_BUFFER: usize = 1024;

/// Output is written once it reaches this size (during `RETR`, `LIST`…), so a response of any size
/// needs about this much memory.
const FLUSH_AT: usize = 16 * 1024;

/// The message is handed to the byte-stuffer in pieces of this size, each written before the next.
const RETR_CHUNK: usize = 16 * 1024;

/// RFC 1939 §3: "a POP3 server MAY have an inactivity autologout timer. Such a timer MUST be of at
/// least 10 minutes' duration." It applies once the client has logged in.
const AUTOLOGOUT_MIN: Duration = Duration::from_secs(10 * 60);

/// The maildrops held by POP3 sessions, by account (lowercased). In-process: one server owns a mailbox.
#[derive(Debug, Default)]
pub struct MaildropLocks {
    held: Arc<Mutex<HashSet<String>>>,
}

impl MaildropLocks {
    /// Takes `account`'s lock, `None` if another session holds it. The lock is released when the
    /// guard is dropped, however the session ends.
    pub fn try_lock(&self, account: &str) -> Option<MaildropGuard> {
        let account = account.to_ascii_lowercase();
        // A panic while holding this mutex cannot leave the set half-changed (one insert or remove),
        // so a poisoned lock is still good to use.
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if !held.insert(account.clone()) {
            return None;
        }
        Some(MaildropGuard {
            held: self.held.clone(),
            account,
        })
    }

    /// Whether a session holds `account`'s maildrop.
    pub fn is_locked(&self, account: &str) -> bool {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.contains(&account.to_ascii_lowercase())
    }
}

/// A held maildrop lock; dropping it releases the lock.
#[derive(Debug)]
pub struct MaildropGuard {
    held: Arc<Mutex<HashSet<String>>>,
    account: String,
}

impl Drop for MaildropGuard {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.remove(&self.account);
    }
}

/// Serves one POP3 connection accepted by a listener: with `implicit_tls` (the `pop3s` port) the TLS
/// handshake comes first, otherwise the session runs in the clear and `STLS` upgrades it with
/// `ctx.tls`. Returns when the connection is over; never panics on anything the peer sends.
///
/// `shutdown` is the listener's token: on cancel the session answers `-ERR [SYS/TEMP]`, applies no
/// deletions and closes.
pub async fn serve_tcp(
    stream: TcpStream,
    ctx: Arc<Context>,
    peer: SocketAddr,
    implicit_tls: bool,
    shutdown: CancellationToken,
) {
    let span = tracing::info_span!("pop3", %peer, account = tracing::field::Empty);
    async move {
        let mut session = Session::new(ctx, peer.ip(), implicit_tls, !implicit_tls);
        // The TLS half is boxed: an idle plaintext session should not carry the size of a TLS stream
        // and its futures in its own (about 4 KiB).
        let end = if implicit_tls {
            Box::pin(session.serve_tls(stream, &shutdown)).await
        } else {
            let mut tcp = stream;
            match session.run(&mut tcp, &shutdown).await {
                End::StartTls => Box::pin(session.serve_tls(tcp, &shutdown)).await,
                end => {
                    close(&mut tcp).await;
                    end
                }
            }
        };
        session.log_end(end);
    }
    .instrument(span)
    .await
}

/// Serves one POP3 session over any stream (an in-memory pipe, a stream already wrapped in TLS).
/// `tls_active` says whether the stream is private, which decides whether passwords may be sent over
/// it. `STLS` is not offered: only [`serve_tcp`] can upgrade its stream.
pub async fn serve<S>(
    mut stream: S,
    ctx: Arc<Context>,
    peer: SocketAddr,
    tls_active: bool,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let span = tracing::info_span!("pop3", %peer, account = tracing::field::Empty);
    async move {
        let mut session = Session::new(ctx, peer.ip(), tls_active, false);
        let end = session.run_and_close(&mut stream, &shutdown).await;
        session.log_end(end);
    }
    .instrument(span)
    .await
}

/// How long the goodbye (TLS `close_notify`, FIN) may take before the connection is simply dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Ends the connection politely: over TLS a `close_notify`, so that the client can tell the end of the
/// session from a truncation attack; a peer that does not take it is not waited for long.
async fn close<S: AsyncWrite + Unpin>(stream: &mut S) {
    let _ = tokio::time::timeout(CLOSE_GRACE, stream.shutdown()).await;
}

/// The TLS handshake, under the greeting timeout: garbage or silence instead of a ClientHello ends
/// the connection quietly.
async fn handshake(
    ctx: &Context,
    tcp: TcpStream,
    shutdown: &CancellationToken,
) -> Result<tokio_rustls::server::TlsStream<TcpStream>, &'static str> {
    tokio::select! {
        _ = shutdown.cancelled() => Err("shutdown during TLS handshake"),
        r = tokio::time::timeout(ctx.config.greeting_timeout(), ctx.tls.accept(tcp)) => match r {
            Err(_) => Err("TLS handshake timed out"),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                Err("TLS handshake failed")
            }
            Ok(Ok(tls)) => Ok(tls),
        }
    }
}

/// How a run of the session loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client said `QUIT`.
    Quit,
    /// The client asked for TLS and was told to go ahead: the caller does the handshake and runs the
    /// session again over the TLS stream.
    StartTls,
    /// Anything else, with the reason for the log.
    Closed(&'static str),
}

/// What the loop does after a command.
enum Flow {
    Continue,
    End(End),
}

/// RFC 1939 §3's states. UPDATE is not a state here: it is what `QUIT` does in the transaction state.
enum State {
    /// Not logged in yet. `user` is the name from `USER`, waiting for `PASS`; `sasl` is set between
    /// `AUTH PLAIN` without an initial response and the client's response line.
    Authorization { user: Option<String>, sasl: bool },
    /// Logged in, over a snapshot of the Inbox.
    Transaction(Box<Maildrop>),
}

/// A logged-in session's view of its Inbox.
struct Maildrop {
    account: String,
    folder_id: i64,
    /// Part of every unique id, so that ids stay unique if the folder is ever recreated.
    uidvalidity: u32,
    /// The Inbox at login, in UID order: message number `n` is `messages[n - 1]`.
    messages: Vec<Entry>,
    /// Held for as long as the session is in the transaction state.
    _lock: MaildropGuard,
}

struct Entry {
    uid: u32,
    size: u64,
    /// Marked by `DELE`, unmarked by `RSET`, removed at `QUIT`.
    deleted: bool,
    /// Sent whole by `RETR`: marked `\Seen` at `QUIT`.
    retrieved: bool,
}

impl Maildrop {
    /// Count and size of the messages not marked deleted (`STAT`, the login and `RSET` replies).
    fn stat(&self) -> (usize, u64) {
        self.messages
            .iter()
            .filter(|m| !m.deleted)
            .fold((0, 0), |(n, s), m| (n + 1, s + m.size))
    }

    /// The message numbered `n`, or the `-ERR` text if there is none or it is marked deleted.
    fn get(&self, n: u32) -> Result<&Entry, String> {
        let i = self.index(n)?;
        Ok(&self.messages[i])
    }

    fn get_mut(&mut self, n: u32) -> Result<&mut Entry, String> {
        let i = self.index(n)?;
        Ok(&mut self.messages[i])
    }

    fn index(&self, n: u32) -> Result<usize, String> {
        let i = (n as usize)
            .checked_sub(1)
            .filter(|&i| i < self.messages.len())
            .ok_or_else(|| format!("no such message: {n}"))?;
        if self.messages[i].deleted {
            return Err(format!("message {n} already deleted"));
        }
        Ok(i)
    }

    fn unique_id(&self, entry: &Entry) -> String {
        format!("{}.{}", self.uidvalidity, entry.uid)
    }
}

struct Session {
    ctx: Arc<Context>,
    /// The client's address, for the password-guess throttle.
    peer: std::net::IpAddr,
    /// The stream is private (implicit TLS, after `STLS`, or a caller's TLS stream).
    tls: bool,
    /// `STLS` can be offered: the caller can upgrade the stream.
    stls_available: bool,
    state: State,
    /// The greeting has been sent (it is not repeated after `STLS`).
    greeted: bool,
    /// Refused commands so far; at `config.max_errors` the session is closed.
    errors: u32,
    /// The account once logged in, kept for the log after the maildrop is released.
    account: Option<String>,
    retrieved: u32,
    deleted: usize,
    /// Refused passwords, for the log line (what an operator's fail2ban looks for).
    failed_logins: u32,
    decoder: LineDecoder,
    buf: Box<[u8]>,
    /// Bytes of `buf` holding unprocessed input.
    len: usize,
    out: Vec<u8>,
}

impl Session {
    fn new(ctx: Arc<Context>, peer: std::net::IpAddr, tls: bool, stls_available: bool) -> Session {
        Session {
            ctx,
            peer,
            tls,
            stls_available,
            state: State::Authorization {
                user: None,
                sasl: false,
            },
            greeted: false,
            errors: 0,
            account: None,
            retrieved: 0,
            deleted: 0,
            failed_logins: 0,
            decoder: LineDecoder::new(),
            buf: vec![0; READ_BUFFER].into_boxed_slice(),
            len: 0,
            out: Vec::new(),
        }
    }

    fn log_end(&self, end: End) {
        let reason = match end {
            End::Quit => "quit",
            End::StartTls => "STLS",
            End::Closed(reason) => reason,
        };
        tracing::info!(
            account = self.account.as_deref().unwrap_or("-"),
            tls = self.tls,
            retrieved = self.retrieved,
            deleted = self.deleted,
            failed_logins = self.failed_logins,
            end = reason,
            "pop3 session"
        );
    }

    /// Passwords may be sent: over TLS, or in the clear when the configuration allows it.
    fn auth_allowed(&self) -> bool {
        self.tls || self.ctx.config.allow_plaintext_auth
    }

    /// How long the client may stay silent in the current state: a short leash before login, POP3's
    /// autologout timer after.
    fn idle_timeout(&self) -> Duration {
        match self.state {
            State::Authorization { .. } => self.ctx.config.greeting_timeout(),
            State::Transaction(_) => self.ctx.config.command_timeout().max(AUTOLOGOUT_MIN),
        }
    }

    /// The TLS handshake on `tcp` (implicit TLS, or after `STLS`), then the session over TLS.
    async fn serve_tls(&mut self, tcp: TcpStream, shutdown: &CancellationToken) -> End {
        match handshake(&self.ctx, tcp, shutdown).await {
            Ok(mut tls) => {
                self.tls = true;
                self.run_and_close(&mut tls, shutdown).await
            }
            Err(reason) => End::Closed(reason),
        }
    }

    /// Runs the session over a stream that cannot be upgraded, then closes it.
    async fn run_and_close<S>(&mut self, stream: &mut S, shutdown: &CancellationToken) -> End
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let end = self.run(stream, shutdown).await;
        close(stream).await;
        end
    }

    /// Runs the session over `stream` until it ends or asks for TLS.
    async fn run<S>(&mut self, stream: &mut S, shutdown: &CancellationToken) -> End
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        if !self.greeted {
            self.greeted = true;
            let text = format!("{} POP3 server ready", self.ctx.hostname);
            proto::ok(&mut self.out, &text);
        }
        loop {
            // Everything already read, command by command; the answers go out together (RFC 2449
            // PIPELINING), or earlier when they grow large.
            let flow = self.process_buffered(stream).await;
            if let Err(e) = self.flush(stream).await {
                return End::Closed(io_reason(&e));
            }
            if let Flow::End(end) = flow {
                if end == End::StartTls {
                    // Anything the client sent after STLS was sent in the clear and must not be taken
                    // as coming through TLS (the STARTTLS command-injection attack).
                    self.len = 0;
                    self.decoder = LineDecoder::new();
                }
                return end;
            }
            let timeout = self.idle_timeout();
            let read = tokio::select! {
                _ = shutdown.cancelled() => {
                    proto::err(&mut self.out, Some(RespCode::SysTemp), "server shutting down");
                    let _ = self.flush(stream).await;
                    return End::Closed("shutdown");
                }
                r = tokio::time::timeout(timeout, stream.read(&mut self.buf[self.len..])) => r,
            };
            match read {
                Err(_) => {
                    proto::err(&mut self.out, None, "autologout: idle for too long");
                    let _ = self.flush(stream).await;
                    return End::Closed("idle timeout");
                }
                Ok(Ok(0)) => return End::Closed("connection closed by client"),
                Ok(Ok(n)) => self.len += n,
                Ok(Err(e)) => return End::Closed(io_reason(&e)),
            }
        }
    }

    /// Handles every complete line in the buffer.
    async fn process_buffered<S>(&mut self, stream: &mut S) -> Flow
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        loop {
            let line = match self.decoder.decode(&self.buf[..self.len]) {
                LineEvent::Incomplete { consumed: 0 } => return Flow::Continue,
                LineEvent::Incomplete { consumed } => {
                    self.consume(consumed);
                    continue;
                }
                LineEvent::TooLong { consumed } => {
                    self.consume(consumed);
                    Err("line too long")
                }
                LineEvent::BareLf { consumed } => {
                    self.consume(consumed);
                    Err("lines end with CRLF")
                }
                LineEvent::Line { len, consumed } => {
                    let parsed = if matches!(self.state, State::Authorization { sasl: true, .. }) {
                        Ok(Parsed::SaslResponse(
                            String::from_utf8_lossy(&self.buf[..len]).into_owned(),
                        ))
                    } else {
                        proto::parse(&self.buf[..len]).map(Parsed::Command)
                    };
                    self.consume(consumed);
                    Ok(parsed)
                }
            };
            let flow = match line {
                Err(text) => self.refuse(text),
                Ok(Err(e)) => self.refuse(&e.to_string()),
                // Boxed, so that the futures of command handling (a password check, a store read, a
                // message being written) take memory only while a command runs, not in every idle
                // session.
                Ok(Ok(Parsed::SaslResponse(resp))) => Box::pin(self.sasl_response(&resp)).await,
                Ok(Ok(Parsed::Command(cmd))) => Box::pin(self.command(cmd, stream)).await,
            };
            if let Flow::End(end) = flow {
                return Flow::End(end);
            }
            if self.out.len() >= FLUSH_AT {
                if let Err(e) = self.flush(stream).await {
                    return Flow::End(End::Closed(io_reason(&e)));
                }
            }
        }
    }

    fn consume(&mut self, n: usize) {
        self.buf.copy_within(n..self.len, 0);
        self.len -= n;
    }

    /// Answers a refused command with `-ERR` and counts it; too many end the session.
    fn refuse(&mut self, text: &str) -> Flow {
        if let State::Authorization { sasl, .. } = &mut self.state {
            *sasl = false;
        }
        self.errors += 1;
        if self.errors >= self.ctx.config.max_errors.max(1) {
            proto::err(&mut self.out, None, "too many errors, closing connection");
            return Flow::End(End::Closed("too many errors"));
        }
        proto::err(&mut self.out, None, text);
        Flow::Continue
    }

    /// Writes the output buffer; a large response's buffer is then given back rather than kept by an
    /// idle session.
    async fn flush<S>(&mut self, stream: &mut S) -> io::Result<()>
    where
        S: AsyncWrite + Unpin,
    {
        let result = write_out(stream, &mut self.out, self.ctx.config.command_timeout()).await;
        if self.out.capacity() > 4096 {
            self.out = Vec::new();
        }
        result
    }

    async fn command<S>(&mut self, cmd: Command, stream: &mut S) -> Flow
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        tracing::trace!(?cmd, "command");
        if let Command::Capa = cmd {
            self.capa();
            return Flow::Continue;
        }
        if let State::Transaction(_) = self.state {
            return self.transaction(cmd, stream).await;
        }
        match cmd {
            Command::Quit => {
                proto::ok(&mut self.out, "bye");
                Flow::End(End::Quit)
            }
            Command::Stls => self.stls(),
            Command::User(name) => {
                if !self.auth_allowed() {
                    return self.plaintext_refused();
                }
                self.state = State::Authorization {
                    user: Some(name),
                    sasl: false,
                };
                // The same answer whether or not the account exists: PASS says whether it worked.
                proto::ok(&mut self.out, "send PASS");
                Flow::Continue
            }
            Command::Pass(password) => {
                if !self.auth_allowed() {
                    return self.plaintext_refused();
                }
                let user = match &mut self.state {
                    State::Authorization { user, .. } => user.take(),
                    State::Transaction(_) => None,
                };
                match user {
                    Some(name) => self.login(&name, &password).await,
                    None => self.refuse("USER first"),
                }
            }
            Command::Auth { mechanism, initial } => self.auth(mechanism, initial).await,
            _ => self.refuse("not logged in"),
        }
    }

    /// RFC 2449 `CAPA`: what this session can do now (`USER`, `SASL` and `STLS` only where they can
    /// be used).
    fn capa(&mut self) {
        proto::ok(&mut self.out, "capability list follows");
        for cap in ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"] {
            proto::line(&mut self.out, cap);
        }
        if let State::Authorization { .. } = self.state {
            if self.auth_allowed() {
                proto::line(&mut self.out, "USER");
                proto::line(&mut self.out, "SASL PLAIN");
            }
            if self.stls_available && !self.tls {
                proto::line(&mut self.out, "STLS");
            }
        }
        proto::line(&mut self.out, "IMPLEMENTATION msgr");
        proto::end(&mut self.out);
    }

    fn stls(&mut self) -> Flow {
        if self.tls {
            return self.refuse("TLS already active");
        }
        if !self.stls_available {
            return self.refuse("STLS not available");
        }
        // RFC 2595 §4: after the handshake the client starts over, so a USER given before is forgotten.
        self.state = State::Authorization {
            user: None,
            sasl: false,
        };
        proto::ok(&mut self.out, "begin TLS negotiation");
        Flow::End(End::StartTls)
    }

    fn plaintext_refused(&mut self) -> Flow {
        self.auth_refused(
            "plaintext authentication disallowed without TLS, use STLS or the POP3S port",
        )
    }

    /// `-ERR [AUTH]` (RFC 3206: the credentials, or how they were sent, are the problem), counted
    /// among the session's errors like a bad command.
    fn auth_refused(&mut self, text: &str) -> Flow {
        self.errors += 1;
        proto::err(&mut self.out, Some(RespCode::Auth), text);
        if self.errors >= self.ctx.config.max_errors.max(1) {
            return Flow::End(End::Closed("too many errors"));
        }
        Flow::Continue
    }

    /// RFC 5034 `AUTH`: `PLAIN` only (RFC 4616), with or without an initial response.
    async fn auth(&mut self, mechanism: Option<String>, initial: Option<String>) -> Flow {
        let Some(mechanism) = mechanism else {
            proto::ok(&mut self.out, "supported mechanisms follow");
            proto::line(&mut self.out, "PLAIN");
            proto::end(&mut self.out);
            return Flow::Continue;
        };
        if mechanism != "PLAIN" {
            return self.refuse("unsupported authentication mechanism");
        }
        if !self.auth_allowed() {
            return self.plaintext_refused();
        }
        match initial {
            Some(resp) => self.sasl_plain(&resp).await,
            None => {
                self.state = State::Authorization {
                    user: None,
                    sasl: true,
                };
                proto::continuation(&mut self.out, "");
                Flow::Continue
            }
        }
    }

    async fn sasl_response(&mut self, resp: &str) -> Flow {
        self.state = State::Authorization {
            user: None,
            sasl: false,
        };
        if resp.trim() == "*" {
            // RFC 5034 §4: the client cancelled the exchange.
            return self.refuse("authentication cancelled");
        }
        self.sasl_plain(resp).await
    }

    /// Checks a base64 `PLAIN` response: `authzid NUL authcid NUL password`. An authorization identity
    /// other than the user's own is refused: nobody may act as someone else here.
    async fn sasl_plain(&mut self, resp: &str) -> Flow {
        use base64::Engine as _;
        // RFC 5034 §4: "=" stands for an empty initial response.
        let resp = resp.trim();
        let decoded = if resp == "=" {
            Ok(Vec::new())
        } else {
            base64::engine::general_purpose::STANDARD.decode(resp)
        };
        let Ok(decoded) = decoded else {
            return self.refuse("invalid base64");
        };
        let mut parts = decoded.split(|&b| b == 0);
        let (Some(authz), Some(user), Some(pass), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return self.refuse("malformed PLAIN response");
        };
        let (Ok(authz), Ok(user), Ok(pass)) = (
            std::str::from_utf8(authz),
            std::str::from_utf8(user),
            std::str::from_utf8(pass),
        ) else {
            return self.refuse("malformed PLAIN response");
        };
        if !authz.is_empty() && !authz.eq_ignore_ascii_case(user) {
            self.failed_logins += 1;
            return self.auth_refused("authorization identity must be the user");
        }
        self.login(user, pass).await
    }

    /// Checks credentials, locks the maildrop and takes the snapshot; on success the session enters
    /// the transaction state.
    async fn login(&mut self, user: &str, password: &str) -> Flow {
        let account = match self.ctx.auth.check_from(user, password, self.peer).await {
            Ok(Some(account)) => account,
            Ok(None) => {
                self.failed_logins += 1;
                return self.auth_refused("invalid user name or password");
            }
            Err(e) => {
                tracing::warn!(error = %e, "POP3 login could not be checked");
                proto::err(
                    &mut self.out,
                    Some(RespCode::SysTemp),
                    "authentication unavailable, try again later",
                );
                return Flow::Continue;
            }
        };
        let Some(lock) = self.ctx.maildrop_locks.try_lock(&account) else {
            proto::err(
                &mut self.out,
                Some(RespCode::InUse),
                "maildrop already locked",
            );
            return Flow::Continue;
        };
        let store = self.ctx.store.clone();
        let acct = account.clone();
        let snapshot = tokio::task::spawn_blocking(move || {
            let folder = store.folder(&acct, "INBOX")?;
            folder
                .map(|f| store.messages(f.id).map(|m| (f, m)))
                .transpose()
        })
        .await;
        let (folder, messages) = match snapshot {
            Ok(Ok(Some(found))) => found,
            Ok(Ok(None)) => {
                tracing::warn!(%account, "account has no Inbox");
                proto::err(
                    &mut self.out,
                    Some(RespCode::SysPerm),
                    "no mailbox for this account",
                );
                return Flow::Continue;
            }
            Ok(Err(e)) => {
                tracing::error!(%account, error = %e, "could not read the Inbox");
                proto::err(
                    &mut self.out,
                    Some(RespCode::SysTemp),
                    "maildrop unavailable, try again later",
                );
                return Flow::Continue;
            }
            Err(e) => {
                tracing::error!(%account, error = %e, "Inbox snapshot task failed");
                proto::err(
                    &mut self.out,
                    Some(RespCode::SysTemp),
                    "maildrop unavailable, try again later",
                );
                return Flow::Continue;
            }
        };
        tracing::Span::current().record("account", account.as_str());
        self.account = Some(account.clone());
        let maildrop = Maildrop {
            account,
            folder_id: folder.id,
            uidvalidity: folder.uidvalidity,
            messages: messages
                .iter()
                .map(|m: &MessageMeta| Entry {
                    uid: m.uid,
                    size: m.size,
                    deleted: false,
                    retrieved: false,
                })
                .collect(),
            _lock: lock,
        };
        let (n, size) = maildrop.stat();
        proto::ok(
            &mut self.out,
            &format!("maildrop has {n} messages ({size} octets)"),
        );
        self.state = State::Transaction(Box::new(maildrop));
        Flow::Continue
    }

    async fn transaction<S>(&mut self, cmd: Command, stream: &mut S) -> Flow
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let State::Transaction(md) = &mut self.state else {
            return Flow::Continue;
        };
        let out = &mut self.out;
        match cmd {
            Command::Stat => {
                let (n, size) = md.stat();
                proto::ok(out, &format!("{n} {size}"));
            }
            Command::List(None) => return self.listing(false, stream).await,
            Command::List(Some(n)) => match md.get(n) {
                Ok(m) => proto::ok(out, &format!("{n} {}", m.size)),
                Err(text) => proto::err(out, None, &text),
            },
            Command::Uidl(None) => return self.listing(true, stream).await,
            Command::Uidl(Some(n)) => match md.get(n) {
                Ok(m) => proto::ok(out, &format!("{n} {}", md.unique_id(m))),
                Err(text) => proto::err(out, None, &text),
            },
            Command::Dele(n) => match md.get_mut(n) {
                Ok(m) => {
                    m.deleted = true;
                    proto::ok(out, &format!("message {n} deleted"));
                }
                Err(text) => proto::err(out, None, &text),
            },
            Command::Rset => {
                for m in md.messages.iter_mut() {
                    m.deleted = false;
                }
                let (n, size) = md.stat();
                proto::ok(out, &format!("maildrop has {n} messages ({size} octets)"));
            }
            Command::Noop => proto::ok(out, ""),
            Command::Retr(n) => return self.send_message(n, None, stream).await,
            Command::Top(n, lines) => return self.send_message(n, Some(lines), stream).await,
            Command::Quit => return self.update().await,
            Command::User(_) | Command::Pass(_) | Command::Auth { .. } => {
                return self.refuse("already logged in")
            }
            Command::Stls => return self.refuse("STLS only before login"),
            Command::Capa => self.capa(),
        }
        Flow::Continue
    }

    /// `LIST` or `UIDL` without an argument: a line per message not marked deleted, written out as it
    /// grows, so a large maildrop's listing never sits in memory whole.
    async fn listing<S>(&mut self, unique_ids: bool, stream: &mut S) -> Flow
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let State::Transaction(md) = &self.state else {
            return Flow::Continue;
        };
        let timeout = self.ctx.config.command_timeout();
        let out = &mut self.out;
        if unique_ids {
            proto::ok(out, "unique-id listing follows");
        } else {
            let (n, size) = md.stat();
            proto::ok(out, &format!("{n} messages ({size} octets)"));
        }
        for (i, m) in md.messages.iter().enumerate().filter(|(_, m)| !m.deleted) {
            let text = if unique_ids {
                format!("{} {}", i + 1, md.unique_id(m))
            } else {
                format!("{} {}", i + 1, m.size)
            };
            proto::line(out, &text);
            if out.len() >= FLUSH_AT {
                if let Err(e) = write_out(stream, out, timeout).await {
                    return Flow::End(End::Closed(io_reason(&e)));
                }
            }
        }
        proto::end(out);
        Flow::Continue
    }

    /// `RETR` (all of it) and `TOP` (`body_lines` of the body): the message is read from the store on
    /// the blocking pool, then byte-stuffed and written piece by piece.
    async fn send_message<S>(&mut self, n: u32, body_lines: Option<u32>, stream: &mut S) -> Flow
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let State::Transaction(md) = &self.state else {
            return Flow::Continue;
        };
        let uid = match md.get(n) {
            Ok(m) => m.uid,
            Err(text) => {
                proto::err(&mut self.out, None, &text);
                return Flow::Continue;
            }
        };
        let store = self.ctx.store.clone();
        let folder_id = md.folder_id;
        let raw = tokio::task::spawn_blocking(move || store.message_raw(folder_id, uid)).await;
        let raw = match raw {
            Ok(Ok(Some(raw))) => raw,
            Ok(Ok(None)) => {
                // Removed by another client (IMAP, the web) since the snapshot.
                proto::err(
                    &mut self.out,
                    None,
                    &format!("message {n} no longer exists"),
                );
                return Flow::Continue;
            }
            Ok(Err(e)) => {
                tracing::error!(uid, error = %e, "could not read a message");
                proto::err(
                    &mut self.out,
                    Some(RespCode::SysTemp),
                    "message unavailable",
                );
                return Flow::Continue;
            }
            Err(e) => {
                tracing::error!(uid, error = %e, "message read task failed");
                proto::err(
                    &mut self.out,
                    Some(RespCode::SysTemp),
                    "message unavailable",
                );
                return Flow::Continue;
            }
        };
        match body_lines {
            None => {
                proto::ok(&mut self.out, &format!("{} octets", raw.len()));
                self.retrieved += 1;
                if let State::Transaction(md) = &mut self.state {
                    if let Ok(m) = md.get_mut(n) {
                        m.retrieved = true;
                    }
                }
            }
            Some(_) => proto::ok(&mut self.out, "top of message follows"),
        }
        let mut stuffer = DotStuffer::with_body_lines(body_lines);
        for chunk in raw.chunks(RETR_CHUNK) {
            stuffer.push(chunk, &mut self.out);
            if stuffer.is_done() {
                break;
            }
            if self.out.len() >= FLUSH_AT {
                if let Err(e) = self.flush(stream).await {
                    return Flow::End(End::Closed(io_reason(&e)));
                }
            }
        }
        stuffer.finish(&mut self.out);
        Flow::Continue
    }

    /// `QUIT` in the transaction state, RFC 1939's UPDATE state: the marked messages are expunged in one
    /// store transaction, and only once that is durable does the client hear `+OK`. Messages retrieved
    /// whole (`RETR`, not `TOP`) and kept are then marked `\Seen`, as IMAP, the web inbox and Messenger's
    /// unread count expect of mail that has been read. The maildrop lock is released before the
    /// answer, so a client that logs in again at once finds it free.
    async fn update(&mut self) -> Flow {
        let state = std::mem::replace(
            &mut self.state,
            State::Authorization {
                user: None,
                sasl: false,
            },
        );
        let State::Transaction(md) = state else {
            return Flow::End(End::Quit);
        };
        let deleted: Vec<u32> = md
            .messages
            .iter()
            .filter(|m| m.deleted)
            .map(|m| m.uid)
            .collect();
        let seen: Vec<u32> = md
            .messages
            .iter()
            .filter(|m| m.retrieved && !m.deleted)
            .map(|m| m.uid)
            .collect();
        let (folder_id, account) = (md.folder_id, md.account.clone());
        let had_seen = !seen.is_empty();
        let result = if deleted.is_empty() && seen.is_empty() {
            Ok(Ok((0, None)))
        } else {
            let store = self.ctx.store.clone();
            tokio::task::spawn_blocking(move || -> msgr_store::Result<_> {
                let removed = if deleted.is_empty() {
                    0
                } else {
                    store.expunge(folder_id, &deleted)?.len()
                };
                // After the deletions, on its own: a failure here costs a flag, never the deletions.
                let flagged = if seen.is_empty() {
                    None
                } else {
                    store
                        .store_flags(folder_id, &seen, FlagOp::Add, Flags::SEEN, &[])
                        .err()
                };
                Ok((removed, flagged))
            })
            .await
        };
        std::mem::drop(md);
        if matches!(&result, Ok(Ok((removed, None))) if *removed > 0 || had_seen)
            || matches!(&result, Ok(Ok((_, Some(_)))))
        {
            // Durable: IMAP sessions on the same Inbox see the expunges and the new \Seen flags.
            self.ctx.notify.changed(&account);
        }
        match result {
            Ok(Ok((removed, flag_error))) => {
                if let Some(e) = flag_error {
                    tracing::warn!(%account, error = %e, "could not mark retrieved messages seen");
                }
                self.deleted = removed;
                if removed == 0 {
                    proto::ok(&mut self.out, "bye");
                } else {
                    proto::ok(&mut self.out, &format!("bye, {removed} messages deleted"));
                }
            }
            Ok(Err(e)) => {
                tracing::error!(%account, error = %e, "POP3 deletions failed");
                proto::err(
                    &mut self.out,
                    Some(RespCode::SysTemp),
                    "some deleted messages not removed",
                );
            }
            Err(e) => {
                tracing::error!(%account, error = %e, "POP3 expunge task failed");
                proto::err(
                    &mut self.out,
                    Some(RespCode::SysTemp),
                    "some deleted messages not removed",
                );
            }
        }
        Flow::End(End::Quit)
    }
}

/// A command line, or the line that answers a SASL continuation.
enum Parsed {
    Command(Command),
    SaslResponse(String),
}

/// Writes and empties `out`, within `timeout`: a peer that does not read is not waited for forever.
async fn write_out<S>(stream: &mut S, out: &mut Vec<u8>, timeout: Duration) -> io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    if out.is_empty() {
        return Ok(());
    }
    let write = async {
        stream.write_all(out).await?;
        stream.flush().await
    };
    let result = match tokio::time::timeout(timeout, write).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
    };
    out.clear();
    result
}

fn io_reason(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::TimedOut => "write timed out",
        io::ErrorKind::UnexpectedEof => "connection closed by client",
        _ => "connection error",
    }
}

#[cfg(test)]
mod tests;
