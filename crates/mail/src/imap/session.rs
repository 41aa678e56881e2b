//! The IMAP session: connection handling, the state machine of RFC 3501 §3 (not authenticated,
//! authenticated, selected, logout), authentication, the selected mailbox's view and its refresh, and
//! command dispatch. The commands themselves live beside it: folder commands in `folders`, message
//! commands in `messages`, `FETCH` in `fetch`.

use super::ext::{self, Extras, Own, Pre};
use super::folders::ListKind;
use super::frame::{Event, Framer};
use super::messages::compact_set;
use super::write::flag_list;
use super::{fetch, search};
use crate::notify::Subscription;
use crate::{Context, LookupError};
use base64::Engine;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::auth::AuthMechanism;
use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::core::AString;
use imap_codec::imap_types::extensions::enable::CapabilityEnable;
use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use imap_codec::CommandCodec;
use msgr_store::{Flags, FolderChanges, MailStore, MessageState, SpecialUse};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// The read buffer. Commands of any size are gathered by the framer; this is only what one read takes.
const READ_BUFFER: usize = 2048;

/// Output is written once it reaches this size (a large `FETCH`), so a response of any size needs
/// about this much memory.
pub(super) const FLUSH_AT: usize = 64 * 1024;

/// How long the goodbye (TLS `close_notify`, FIN) may take before the connection is simply dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Longest command line accepted, whatever `max_line` says: RFC 7162 §4 asks servers to take lines of
/// at least 8192 octets (long UID sets from clients that resynchronise).
const MIN_LINE: usize = 8192;

/// The largest literal before login: enough for any user name and password (`LOGIN {n}`), so that a
/// client nobody knows cannot make the server hold `max_message_bytes` for it.
const PRE_LOGIN_LITERAL: u64 = 1024;

/// The hierarchy delimiter of folder names.
pub(super) const DELIMITER: char = '/';

/// Serves one IMAP connection accepted by a listener: with `implicit_tls` (the `imaps` port) the TLS
/// handshake comes first, otherwise the session runs in the clear and `STARTTLS` upgrades it.
/// Returns when the connection is over; never panics on anything the peer sends.
pub async fn serve_tcp(
    stream: TcpStream,
    ctx: Arc<Context>,
    peer: SocketAddr,
    implicit_tls: bool,
    shutdown: CancellationToken,
) {
    let span = tracing::info_span!("imap", %peer, account = tracing::field::Empty);
    async move {
        let mut session = Session::new(ctx, peer.ip(), implicit_tls, !implicit_tls);
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

/// Serves one IMAP session over any stream (an in-memory pipe, a stream already wrapped in TLS).
/// `tls_active` says whether passwords may be sent over it; `STARTTLS` is not offered.
pub async fn serve<S>(
    mut stream: S,
    ctx: Arc<Context>,
    peer: SocketAddr,
    tls_active: bool,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let span = tracing::info_span!("imap", %peer, account = tracing::field::Empty);
    async move {
        let mut session = Session::new(ctx, peer.ip(), tls_active, false);
        let end = session.run(&mut stream, &shutdown).await;
        close(&mut stream).await;
        session.log_end(end);
    }
    .instrument(span)
    .await
}

async fn close<S: AsyncWrite + Unpin>(stream: &mut S) {
    let _ = tokio::time::timeout(CLOSE_GRACE, stream.shutdown()).await;
}

/// How a run of the session loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    Logout,
    /// `STARTTLS` was accepted: the caller does the handshake and runs the session again.
    StartTls,
    Closed(&'static str),
}

/// What the loop does after a command.
pub(super) enum Flow {
    Continue,
    End(End),
}

/// RFC 3501 §3's states (logout is [`End::Logout`]).
pub(super) enum State {
    NotAuthenticated,
    Authenticated,
    Selected(Box<Selected>),
}

/// A command that continues over more lines than its own.
pub(super) enum Pending {
    /// `AUTHENTICATE PLAIN` without an initial response: the next line is the response.
    Authenticate { tag: String },
    /// `AUTHENTICATE LOGIN` (draft-murchison-sasl-login): the next line is the user name (if not given
    /// as the initial response), then the password.
    AuthLogin { tag: String, user: Option<String> },
    /// In `IDLE` until the client says `DONE`.
    Idle { tag: String },
}

/// A message as the session numbers it.
pub(super) struct Msg {
    /// Without the summary, which only some `SEARCH` keys need and load when they do.
    pub meta: MessageState,
    /// `\Recent` for this session (RFC 3501 §2.3.2): it took the message from the folder's recent ones.
    pub recent: bool,
    /// Expunged in the store, but the client has not been told yet (held back during a command that
    /// uses sequence numbers): it keeps its number until then.
    pub gone: bool,
}

/// The selected mailbox as this session has told the client about it.
pub(super) struct Selected {
    pub folder_id: i64,
    pub special: Option<SpecialUse>,
    /// `EXAMINE`: nothing may change.
    pub read_only: bool,
    /// Message sequence number `n` is `msgs[n - 1]`.
    pub msgs: Vec<Msg>,
    /// The folder's `(UIDNEXT, HIGHESTMODSEQ)` when `msgs` was last brought up to date.
    pub version: (u32, u64),
    /// Some message is `gone` and its `EXPUNGE` is owed.
    pub owes_expunge: bool,
    /// UIDs below this were offered to this session as recent (or were not recent any more); a read-write
    /// session claims newer ones from the store when it sees them.
    pub recent_upto: u32,
}

impl Selected {
    pub fn max_uid(&self) -> u32 {
        self.msgs.last().map_or(0, |m| m.meta.uid)
    }

    /// Whether every message sequence number in `set` exists. A number beyond the last message is a
    /// client error (`BAD`, as RFC 9051 §6.4.5 and Dovecot answer it), and so is `*` in an empty mailbox,
    /// where it names nothing; UID sets may name anything.
    pub fn valid_seq(&self, set: &SequenceSet) -> bool {
        let count = u32::try_from(self.msgs.len()).unwrap_or(u32::MAX);
        let ok = |v: &SeqOrUid| match v {
            SeqOrUid::Value(n) => n.get() <= count,
            SeqOrUid::Asterisk => count > 0,
        };
        set.0.as_ref().iter().all(|s| match s {
            Sequence::Single(v) => ok(v),
            Sequence::Range(a, b) => ok(a) && ok(b),
        })
    }

    /// Indices of the messages a set names, by sequence number or by UID, ascending.
    pub fn select(&self, set: &SequenceSet, uid: bool) -> Vec<usize> {
        let count = u32::try_from(self.msgs.len()).unwrap_or(u32::MAX);
        let max_uid = self.max_uid();
        self.msgs
            .iter()
            .enumerate()
            .filter(|(i, m)| {
                if uid {
                    search::in_set(set, m.meta.uid, max_uid)
                } else {
                    search::in_set(set, u32::try_from(i + 1).unwrap_or(u32::MAX), count)
                }
            })
            .map(|(i, _)| i)
            .collect()
    }
}

pub(super) struct Session {
    pub ctx: Arc<Context>,
    /// The client's address, for the password-guess throttle.
    pub(super) peer: std::net::IpAddr,
    /// The stream is private.
    pub(super) tls: bool,
    /// `STARTTLS` can be offered (a plain TCP stream the caller can upgrade).
    pub(super) starttls_available: bool,
    pub(super) state: State,
    pub(super) pending: Option<Pending>,
    pub(super) greeted: bool,
    /// Refused commands so far; at `config.max_errors` the session is closed.
    pub(super) errors: u32,
    pub(super) failed_logins: u32,
    pub account: Option<String>,
    /// Changes of the account's mailbox, from login on.
    pub(super) subscription: Option<Subscription>,
    /// `ENABLE CONDSTORE` or a CONDSTORE-using command was seen: FETCH responses carry `MODSEQ`.
    pub condstore: bool,
    /// `ENABLE QRESYNC` (RFC 7162 §3.2.3): `VANISHED` instead of `EXPUNGE`, `SELECT … (QRESYNC …)`.
    pub qresync: bool,
    pub(super) commands: u64,
    pub(super) framer: Framer,
    pub(super) buf: Box<[u8]>,
    pub(super) len: usize,
    pub out: Vec<u8>,
}

impl Session {
    fn new(
        ctx: Arc<Context>,
        peer: std::net::IpAddr,
        tls: bool,
        starttls_available: bool,
    ) -> Session {
        let max_line = ctx.config.max_line.max(MIN_LINE);
        let max_command = usize::try_from(ctx.config.max_message_bytes)
            .unwrap_or(usize::MAX)
            .saturating_add(64 * 1024);
        Session {
            ctx,
            peer,
            tls,
            starttls_available,
            state: State::NotAuthenticated,
            pending: None,
            greeted: false,
            errors: 0,
            failed_logins: 0,
            account: None,
            subscription: None,
            condstore: false,
            qresync: false,
            commands: 0,
            framer: Framer::new(max_line, PRE_LOGIN_LITERAL, max_command),
            buf: vec![0; READ_BUFFER].into_boxed_slice(),
            len: 0,
            out: Vec::new(),
        }
    }

    fn log_end(&self, end: End) {
        let reason = match end {
            End::Logout => "logout",
            End::StartTls => "STARTTLS",
            End::Closed(r) => r,
        };
        tracing::info!(
            account = self.account.as_deref().unwrap_or("-"),
            tls = self.tls,
            commands = self.commands,
            failed_logins = self.failed_logins,
            end = reason,
            "imap session"
        );
    }

    fn auth_allowed(&self) -> bool {
        self.tls || self.ctx.config.allow_plaintext_auth
    }

    /// How long the client may stay silent: the greeting timeout before login, RFC 9051 §5.4's thirty
    /// minutes (at least) after it, `IDLE` included.
    fn idle_timeout(&self) -> Duration {
        match self.state {
            State::NotAuthenticated => self.ctx.config.greeting_timeout(),
            _ => self.ctx.config.imap_timeout(),
        }
    }

    fn capabilities(&self) -> String {
        let mut caps = String::from("IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UIDPLUS MOVE UNSELECT SPECIAL-USE CONDSTORE QRESYNC ESEARCH CHILDREN BINARY");
        if matches!(self.state, State::NotAuthenticated) {
            if self.starttls_available && !self.tls {
                caps.push_str(" STARTTLS");
            }
            if self.auth_allowed() {
                caps.push_str(" AUTH=PLAIN AUTH=LOGIN");
            } else {
                caps.push_str(" LOGINDISABLED");
            }
        }
        caps
    }

    async fn serve_tls(&mut self, tcp: TcpStream, shutdown: &CancellationToken) -> End {
        let handshake = tokio::select! {
            _ = shutdown.cancelled() => return End::Closed("shutdown during TLS handshake"),
            r = tokio::time::timeout(self.ctx.config.greeting_timeout(), self.ctx.tls.accept(tcp)) => r,
        };
        match handshake {
            Err(_) => End::Closed("TLS handshake timed out"),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                End::Closed("TLS handshake failed")
            }
            Ok(Ok(mut tls)) => {
                self.tls = true;
                let end = self.run(&mut tls, shutdown).await;
                close(&mut tls).await;
                end
            }
        }
    }

    /// Writes the queued output (during a long `FETCH` as well as at the end of a round).
    pub(super) async fn flush_to<S: AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
    ) -> io::Result<()> {
        self.flush(stream).await
    }

    async fn flush<S: AsyncWrite + Unpin>(&mut self, stream: &mut S) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let timeout = self.ctx.config.command_timeout();
        match tokio::time::timeout(timeout, stream.write_all(&self.out)).await {
            Ok(r) => r?,
            Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
        }
        tokio::time::timeout(timeout, stream.flush())
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write timed out"))??;
        self.out.clear();
        if self.out.capacity() > 2 * FLUSH_AT {
            self.out = Vec::new();
        }
        Ok(())
    }

    async fn run<S>(&mut self, stream: &mut S, shutdown: &CancellationToken) -> End
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        if !self.greeted {
            self.greeted = true;
            let caps = self.capabilities();
            self.untagged(&format!(
                "OK [CAPABILITY {caps}] {} IMAP4rev1 ready",
                self.ctx.hostname
            ));
        }
        let mut pos = 0;
        loop {
            // Every command already read, in order; the answers go out together.
            while pos < self.len {
                let (used, event) = self.framer.feed(&self.buf[pos..self.len]);
                pos += used;
                let flow = match event {
                    Event::Incomplete => Flow::Continue,
                    Event::Continue => {
                        self.out.extend_from_slice(b"+ Ready for literal data\r\n");
                        // The client waits for this before it sends the literal.
                        if let Err(e) = self.flush(stream).await {
                            return End::Closed(io_reason(&e));
                        }
                        Flow::Continue
                    }
                    Event::Command => {
                        let cmd = self.framer.command().to_vec();
                        self.framer.clear();
                        self.commands += 1;
                        let flow = Box::pin(self.handle(&cmd, stream)).await;
                        if let Flow::End(End::StartTls) = flow {
                            // Anything sent after STARTTLS came in the clear: never run it as if it
                            // had come through TLS.
                            self.len = 0;
                            self.framer.clear();
                            if let Err(e) = self.flush(stream).await {
                                return End::Closed(io_reason(&e));
                            }
                            return End::StartTls;
                        }
                        flow
                    }
                    Event::LiteralRefused => {
                        let tag = Framer::partial_tag(self.framer.command())
                            .map(|t| String::from_utf8_lossy(t).into_owned())
                            .unwrap_or_else(|| "*".to_owned());
                        self.framer.clear();
                        self.tagged(&tag, "NO [TOOBIG] literal too large");
                        self.count_error()
                    }
                    Event::LiteralPlusTooBig => {
                        self.untagged("BYE [TOOBIG] literal too large");
                        Flow::End(End::Closed("literal too large"))
                    }
                    Event::TooLong => {
                        self.untagged("BYE [TOOBIG] command line too long");
                        Flow::End(End::Closed("line too long"))
                    }
                };
                if let Flow::End(end) = flow {
                    let _ = self.flush(stream).await;
                    return end;
                }
            }
            pos = 0;
            self.len = 0;
            if let Err(e) = self.flush(stream).await {
                return End::Closed(io_reason(&e));
            }
            let timeout = self.idle_timeout();
            let idling = matches!(self.pending, Some(Pending::Idle { .. }));
            let read = tokio::select! {
                _ = shutdown.cancelled() => {
                    self.untagged("BYE [UNAVAILABLE] server shutting down");
                    let _ = self.flush(stream).await;
                    return End::Closed("shutdown");
                }
                () = changed(&mut self.subscription, idling) => None,
                r = tokio::time::timeout(timeout, stream.read(&mut self.buf[..])) => Some(r),
            };
            match read {
                // A change while in IDLE: tell the client now.
                None => {
                    if let Err(e) = self.refresh(true).await {
                        tracing::error!(error = %e, "IMAP refresh failed");
                    }
                }
                Some(Err(_)) => {
                    self.untagged("BYE autologout: idle for too long");
                    let _ = self.flush(stream).await;
                    return End::Closed("idle timeout");
                }
                Some(Ok(Ok(0))) => return End::Closed("connection closed by client"),
                Some(Ok(Ok(n))) => self.len = n,
                Some(Ok(Err(e))) => return End::Closed(io_reason(&e)),
            }
        }
    }

    pub(super) fn untagged(&mut self, text: &str) {
        self.out.extend_from_slice(b"* ");
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    pub(super) fn tagged(&mut self, tag: &str, text: &str) {
        self.out.extend_from_slice(tag.as_bytes());
        self.out.push(b' ');
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    /// Counts a refused command; at `max_errors` the session ends.
    pub(super) fn count_error(&mut self) -> Flow {
        self.errors += 1;
        if self.errors >= self.ctx.config.max_errors.max(1) {
            self.untagged("BYE too many errors");
            return Flow::End(End::Closed("too many errors"));
        }
        Flow::Continue
    }

    pub(super) fn bad(&mut self, tag: &str, text: &str) -> Flow {
        self.tagged(tag, &format!("BAD {text}"));
        self.count_error()
    }

    async fn handle<S>(&mut self, raw: &[u8], stream: &mut S) -> Flow
    where
        S: AsyncWrite + Unpin + Send,
    {
        match self.pending.take() {
            Some(Pending::Authenticate { tag }) => return self.sasl_response(&tag, raw).await,
            Some(Pending::AuthLogin { tag, user }) => {
                return self.sasl_login_response(tag, user, raw).await
            }
            Some(Pending::Idle { tag }) => {
                let line = String::from_utf8_lossy(raw);
                if line.trim().eq_ignore_ascii_case("DONE") {
                    self.tagged(&tag, "OK IDLE terminated");
                    return Flow::Continue;
                }
                return self.bad(&tag, "expected DONE");
            }
            None => {}
        }
        let (line, extras) = match ext::pre(raw) {
            Pre::Own { tag, cmd } => return self.own(&tag, cmd).await,
            Pre::Codec { line, extras } => (line, extras),
        };
        let input = line.as_deref().unwrap_or(raw);
        // imap-codec is not expected to panic on whole commands, but a third-party parser's `expect`
        // must not take the server's task with it.
        let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            CommandCodec::default().decode(input)
        }));
        let command = match parsed {
            Ok(Ok((b"", command))) => command,
            _ => {
                let tag = raw
                    .split(|&c| c == b' ' || c == b'\r' || c == b'\n')
                    .next()
                    .filter(|t| !t.is_empty() && t.iter().all(|c| c.is_ascii_graphic()))
                    .map(|t| String::from_utf8_lossy(t).into_owned())
                    .unwrap_or_else(|| "*".to_owned());
                return self.bad(
                    &tag,
                    "Error in IMAP command: unknown command or bad arguments",
                );
            }
        };
        self.dispatch(command, extras, stream).await
    }

    /// The commands [`ext`] recognised itself.
    async fn own(&mut self, tag: &str, cmd: Own) -> Flow {
        match cmd {
            Own::Id => {
                self.untagged(&format!(
                    "ID (\"name\" \"msgr\" \"version\" \"{}\")",
                    env!("CARGO_PKG_VERSION")
                ));
                self.tagged(tag, "OK ID completed");
            }
            Own::Namespace => {
                if matches!(self.state, State::NotAuthenticated) {
                    return self.bad(tag, "log in first");
                }
                self.untagged("NAMESPACE ((\"\" \"/\")) NIL NIL");
                self.tagged(tag, "OK NAMESPACE completed");
            }
            Own::UidExpunge(set) => {
                if !matches!(self.state, State::Selected(_)) {
                    return self.bad(tag, "no mailbox selected");
                }
                return self.expunge(tag, Some(&set)).await;
            }
        }
        Flow::Continue
    }

    async fn dispatch<S>(&mut self, command: Command<'_>, extras: Extras, stream: &mut S) -> Flow
    where
        S: AsyncWrite + Unpin + Send,
    {
        let tag = command.tag.as_ref().to_owned();
        let body = command.body;
        // Commands of any state first.
        match body {
            CommandBody::Capability => {
                let caps = self.capabilities();
                self.untagged(&format!("CAPABILITY {caps}"));
                self.tagged(&tag, "OK CAPABILITY completed");
                return Flow::Continue;
            }
            CommandBody::Noop | CommandBody::Check => {
                if let Err(e) = self.refresh(true).await {
                    return self.internal(&tag, e);
                }
                self.tagged(&tag, "OK completed");
                return Flow::Continue;
            }
            CommandBody::Logout => {
                self.untagged("BYE logging out");
                self.tagged(&tag, "OK LOGOUT completed");
                return Flow::End(End::Logout);
            }
            _ => {}
        }
        match &self.state {
            State::NotAuthenticated => match body {
                CommandBody::StartTLS => {
                    if !self.starttls_available || self.tls {
                        return self.bad(&tag, "STARTTLS not available");
                    }
                    self.tagged(&tag, "OK Begin TLS negotiation now");
                    Flow::End(End::StartTls)
                }
                CommandBody::Login { username, password } => {
                    let user = astring(&username);
                    let pass = astring(password.declassify());
                    self.login(&tag, &user, &pass).await
                }
                CommandBody::Authenticate {
                    mechanism,
                    initial_response,
                } => {
                    let login = match mechanism {
                        AuthMechanism::Plain => false,
                        AuthMechanism::Login => true,
                        _ => {
                            self.tagged(&tag, "NO [CANNOT] only PLAIN and LOGIN are offered");
                            return self.count_error();
                        }
                    };
                    if !self.auth_allowed() {
                        self.tagged(&tag, "NO [PRIVACYREQUIRED] use STARTTLS first");
                        return self.count_error();
                    }
                    match (login, initial_response) {
                        (false, Some(ir)) => self.sasl_plain(&tag, ir.declassify()).await,
                        (false, None) => {
                            self.out.extend_from_slice(b"+ \r\n");
                            self.pending = Some(Pending::Authenticate { tag });
                            Flow::Continue
                        }
                        // SASL-IR: LOGIN's first client message is the user name.
                        (true, Some(ir)) => {
                            let user = String::from_utf8_lossy(ir.declassify()).into_owned();
                            self.login_prompt(tag, Some(user))
                        }
                        (true, None) => self.login_prompt(tag, None),
                    }
                }
                _ => self.bad(&tag, "log in first"),
            },
            State::Authenticated | State::Selected(_) => {
                self.authenticated(tag, body, extras, stream).await
            }
        }
    }

    async fn login(&mut self, tag: &str, user: &str, pass: &str) -> Flow {
        if !self.auth_allowed() {
            self.tagged(tag, "NO [PRIVACYREQUIRED] use STARTTLS first");
            return self.count_error();
        }
        match self.ctx.auth.check_from(user, pass, self.peer).await {
            Ok(Some(account)) => {
                self.logged_in(&account);
                let caps = self.capabilities();
                self.tagged(tag, &format!("OK [CAPABILITY {caps}] logged in"));
                Flow::Continue
            }
            Ok(None) => {
                self.failed_logins += 1;
                self.tagged(tag, "NO [AUTHENTICATIONFAILED] invalid credentials");
                self.count_error()
            }
            Err(e) => {
                tracing::warn!(error = %e, "credential check failed");
                self.tagged(tag, "NO [UNAVAILABLE] try again later");
                Flow::Continue
            }
        }
    }

    fn logged_in(&mut self, account: &str) {
        tracing::Span::current().record("account", account);
        self.subscription = Some(self.ctx.notify.subscribe(account));
        self.account = Some(account.to_owned());
        self.state = State::Authenticated;
        // APPEND may now send whole messages.
        self.framer
            .set_max_literal(self.ctx.config.max_message_bytes);
    }

    /// LOGIN's challenges: `Username:` until the user name is known, then `Password:`.
    fn login_prompt(&mut self, tag: String, user: Option<String>) -> Flow {
        let prompt: &[u8] = if user.is_some() {
            b"Password:"
        } else {
            b"Username:"
        };
        self.out.extend_from_slice(b"+ ");
        self.out.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(prompt)
                .as_bytes(),
        );
        self.out.extend_from_slice(b"\r\n");
        self.pending = Some(Pending::AuthLogin { tag, user });
        Flow::Continue
    }

    async fn sasl_login_response(&mut self, tag: String, user: Option<String>, raw: &[u8]) -> Flow {
        let line = String::from_utf8_lossy(raw);
        let line = line.trim();
        if line == "*" {
            self.tagged(&tag, "BAD authentication cancelled");
            return self.count_error();
        }
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(line) else {
            return self.bad(&tag, "invalid base64");
        };
        let Ok(text) = String::from_utf8(bytes) else {
            return self.bad(&tag, "malformed LOGIN response");
        };
        match user {
            None => self.login_prompt(tag, Some(text)),
            Some(user) => self.login(&tag, &user, &text).await,
        }
    }

    async fn sasl_response(&mut self, tag: &str, raw: &[u8]) -> Flow {
        let line = String::from_utf8_lossy(raw);
        let line = line.trim();
        if line == "*" {
            self.tagged(tag, "BAD authentication cancelled");
            return self.count_error();
        }
        match base64::engine::general_purpose::STANDARD.decode(line) {
            Ok(bytes) => self.sasl_plain(tag, &bytes).await,
            Err(_) => self.bad(tag, "invalid base64"),
        }
    }

    /// RFC 4616: `authzid NUL authcid NUL passwd`; an authorization identity other than the user is
    /// refused (nobody here may act for someone else).
    async fn sasl_plain(&mut self, tag: &str, bytes: &[u8]) -> Flow {
        let fields: Vec<&[u8]> = bytes.split(|&c| c == 0).collect();
        let [authz, user, pass] = fields.as_slice() else {
            return self.bad(tag, "malformed PLAIN response");
        };
        let (Ok(authz), Ok(user), Ok(pass)) = (
            std::str::from_utf8(authz),
            std::str::from_utf8(user),
            std::str::from_utf8(pass),
        ) else {
            return self.bad(tag, "malformed PLAIN response");
        };
        if !authz.is_empty() && !authz.eq_ignore_ascii_case(user) {
            self.tagged(tag, "NO [AUTHORIZATIONFAILED] cannot act for another user");
            return self.count_error();
        }
        let (user, pass) = (user.to_owned(), pass.to_owned());
        self.login(tag, &user, &pass).await
    }

    pub(super) fn internal(&mut self, tag: &str, e: LookupError) -> Flow {
        tracing::error!(error = %e, "IMAP store access failed");
        self.tagged(tag, "NO [SERVERBUG] internal error");
        Flow::Continue
    }

    pub(super) fn account(&self) -> String {
        self.account.clone().unwrap_or_default()
    }

    pub(super) async fn blocking<T, F>(&self, f: F) -> Result<T, LookupError>
    where
        T: Send + 'static,
        F: FnOnce(&msgr_store::Store) -> msgr_store::Result<T> + Send + 'static,
    {
        let store = self.ctx.store.clone();
        Ok(tokio::task::spawn_blocking(move || f(&store)).await??)
    }

    pub(super) fn selected(&mut self) -> Option<&mut Selected> {
        match &mut self.state {
            State::Selected(s) => Some(s),
            _ => None,
        }
    }

    /// Brings the selected mailbox up to date with the store and queues the untagged responses for what
    /// changed: `FETCH` for flags, `EXPUNGE` or `VANISHED` (only if `allow_expunge`), `EXISTS` and
    /// `RECENT`. Only what changed after the session's HIGHESTMODSEQ is read (the store's modseq index and
    /// expunged-UID log), never the whole folder.
    pub(super) async fn refresh(&mut self, allow_expunge: bool) -> Result<(), LookupError> {
        // Changes noticed while not selected need nothing.
        if let Some(sub) = self.subscription.as_mut() {
            sub.take_changed();
        }
        let Some(sel) = self.selected() else {
            return Ok(());
        };
        let folder_id = sel.folder_id;
        let known = sel.version;
        let owes = sel.owes_expunge;
        let claim = !sel.read_only;
        let recent_upto = sel.recent_upto;
        // One blocking call: the cheap version check, and only when it moved, what changed.
        let changes = self
            .blocking(move |s| {
                let Some((uidnext, highest_modseq)) = s.folder_version(folder_id)? else {
                    return Ok(None);
                };
                if (uidnext, highest_modseq) == known {
                    let same = FolderChanges {
                        uidnext,
                        highest_modseq,
                        ..FolderChanges::default()
                    };
                    return Ok(Some((same, None)));
                }
                let Some(c) = s.changes_since(folder_id, known.1)? else {
                    return Ok(None);
                };
                // New messages: a read-write session takes the recent ones (RFC 3501 §2.3.2).
                let recent_from = if claim && c.uidnext > recent_upto {
                    s.claim_recent(folder_id, c.uidnext)?
                } else {
                    None
                };
                Ok(Some((c, recent_from)))
            })
            .await?;
        let unchanged = changes
            .as_ref()
            .is_some_and(|(c, _)| (c.uidnext, c.highest_modseq) == known);
        if unchanged && !(owes && allow_expunge) {
            return Ok(());
        }
        let (condstore, qresync) = (self.condstore, self.qresync);
        let mut out = std::mem::take(&mut self.out);
        if let Some(sel) = self.selected() {
            match changes {
                Some((c, recent)) => {
                    apply_changes(sel, c, recent, condstore, &mut out);
                    if let Some((_, upto)) = recent {
                        sel.recent_upto = upto;
                    }
                }
                // The folder was deleted under us: every message is gone.
                None => {
                    for m in &mut sel.msgs {
                        m.gone = true;
                    }
                    sel.owes_expunge = !sel.msgs.is_empty();
                }
            }
            if allow_expunge && sel.owes_expunge {
                report_expunges(sel, qresync, &mut out);
            }
        }
        self.out = out;
        Ok(())
    }

    /// `* VANISHED (EARLIER) uids`: the UIDs in `set` expunged after `since` (RFC 7162 §3.2.6).
    pub(super) async fn vanished_earlier(
        &mut self,
        set: &SequenceSet,
        since: u64,
    ) -> Result<(), LookupError> {
        let Some(sel) = self.selected() else {
            return Ok(());
        };
        let folder_id = sel.folder_id;
        let uids = self
            .blocking(move |s| s.expunged_since(folder_id, since))
            .await?;
        // `*` is open-ended here: an expunged UID may lie above every UID left.
        let uids: Vec<u32> = uids
            .into_iter()
            .filter(|&u| search::in_set(set, u, u32::MAX))
            .collect();
        if !uids.is_empty() {
            self.untagged(&format!("VANISHED (EARLIER) {}", compact_set(&uids)));
        }
        Ok(())
    }

    async fn authenticated<S>(
        &mut self,
        tag: String,
        body: CommandBody<'_>,
        extras: Extras,
        stream: &mut S,
    ) -> Flow
    where
        S: AsyncWrite + Unpin + Send,
    {
        // Commands that number messages must not see EXPUNGEs (RFC 3501 §7.4.1).
        let numbered = matches!(
            &body,
            CommandBody::Fetch { uid: false, .. }
                | CommandBody::Store { uid: false, .. }
                | CommandBody::Search { uid: false, .. }
                | CommandBody::Copy { uid: false, .. }
                | CommandBody::Move { uid: false, .. }
        );
        if let Err(e) = self.refresh(!numbered).await {
            return self.internal(&tag, e);
        }
        match body {
            CommandBody::StartTLS
            | CommandBody::Login { .. }
            | CommandBody::Authenticate { .. } => self.bad(&tag, "already logged in"),
            CommandBody::Enable { capabilities } => {
                let mut enabled = Vec::new();
                for c in capabilities.as_ref() {
                    match c {
                        CapabilityEnable::CondStore => {
                            self.condstore = true;
                            enabled.push("CONDSTORE");
                        }
                        // QRESYNC implies CONDSTORE (RFC 7162 §3.2.3).
                        CapabilityEnable::Other(_)
                            if c.to_string().eq_ignore_ascii_case("QRESYNC") =>
                        {
                            self.condstore = true;
                            self.qresync = true;
                            enabled.push("QRESYNC");
                        }
                        _ => {}
                    }
                }
                if !enabled.is_empty() {
                    self.untagged(&format!("ENABLED {}", enabled.join(" ")));
                }
                self.tagged(&tag, "OK ENABLE completed");
                Flow::Continue
            }
            CommandBody::Select { mailbox } => {
                self.select(&tag, &mailbox_name(&mailbox), false, &extras)
                    .await
            }
            CommandBody::Examine { mailbox } => {
                self.select(&tag, &mailbox_name(&mailbox), true, &extras)
                    .await
            }
            CommandBody::Create { mailbox } => self.create(&tag, &mailbox_name(&mailbox)).await,
            CommandBody::Delete { mailbox } => self.delete(&tag, &mailbox_name(&mailbox)).await,
            CommandBody::Rename { from, to } => {
                self.rename(&tag, &mailbox_name(&from), &mailbox_name(&to))
                    .await
            }
            CommandBody::Subscribe { mailbox } => {
                self.subscribe(&tag, &mailbox_name(&mailbox), true).await
            }
            CommandBody::Unsubscribe { mailbox } => {
                self.subscribe(&tag, &mailbox_name(&mailbox), false).await
            }
            CommandBody::List {
                reference,
                mailbox_wildcard,
            } => {
                self.list(
                    &tag,
                    &mailbox_name(&reference),
                    &list_pattern(&mailbox_wildcard),
                    ListKind::List {
                        special_only: extras.list_special_only,
                        subscribed_only: extras.list_subscribed_only,
                    },
                )
                .await
            }
            CommandBody::Lsub {
                reference,
                mailbox_wildcard,
            } => {
                self.list(
                    &tag,
                    &mailbox_name(&reference),
                    &list_pattern(&mailbox_wildcard),
                    ListKind::Lsub,
                )
                .await
            }
            CommandBody::Status {
                mailbox,
                item_names,
            } => {
                self.status(&tag, &mailbox_name(&mailbox), &item_names)
                    .await
            }
            CommandBody::Append {
                mailbox,
                flags,
                date,
                message,
            } => {
                let date = date.map(|d| d.as_ref().timestamp());
                self.append(
                    &tag,
                    &mailbox_name(&mailbox),
                    &flags,
                    date,
                    // A `~{n}` literal came through `ext` (imap-codec saw an empty one).
                    extras.literal8.as_deref().unwrap_or(message.as_ref()),
                )
                .await
            }
            CommandBody::Idle => {
                self.out.extend_from_slice(b"+ idling\r\n");
                self.pending = Some(Pending::Idle { tag });
                Flow::Continue
            }
            body => {
                if self.selected().is_none() {
                    return self.bad(&tag, "no mailbox selected");
                }
                self.in_selected(tag, body, extras, stream).await
            }
        }
    }

    async fn in_selected<S>(
        &mut self,
        tag: String,
        body: CommandBody<'_>,
        extras: Extras,
        stream: &mut S,
    ) -> Flow
    where
        S: AsyncWrite + Unpin + Send,
    {
        let seq_set = match &body {
            CommandBody::Fetch {
                sequence_set,
                uid: false,
                ..
            }
            | CommandBody::Store {
                sequence_set,
                uid: false,
                ..
            }
            | CommandBody::Copy {
                sequence_set,
                uid: false,
                ..
            }
            | CommandBody::Move {
                sequence_set,
                uid: false,
                ..
            } => Some(sequence_set),
            _ => None,
        };
        if let Some(set) = seq_set {
            if self.selected().is_some_and(|s| !s.valid_seq(set)) {
                return self.bad(&tag, "invalid message sequence number");
            }
        }
        match body {
            CommandBody::Close => {
                let read_only = self.selected().is_some_and(|s| s.read_only);
                if !read_only {
                    // CLOSE expunges silently (RFC 3501 §6.4.2).
                    if let Err(e) = self.expunge_deleted(None).await {
                        return self.internal(&tag, e);
                    }
                }
                self.state = State::Authenticated;
                self.tagged(&tag, "OK CLOSE completed");
                Flow::Continue
            }
            CommandBody::Unselect => {
                self.state = State::Authenticated;
                self.tagged(&tag, "OK UNSELECT completed");
                Flow::Continue
            }
            CommandBody::Expunge => self.expunge(&tag, None).await,
            CommandBody::Search {
                charset,
                criteria,
                uid,
            } => {
                let charset = charset.map(|c| c.as_ref().to_ascii_uppercase());
                if let Some(c) = charset.filter(|c| c != "UTF-8" && c != "US-ASCII") {
                    self.tagged(
                        &tag,
                        &format!("NO [BADCHARSET (UTF-8 US-ASCII)] {c} not supported"),
                    );
                    return Flow::Continue;
                }
                self.search(&tag, criteria, uid, extras.esearch, extras.search_modseq)
                    .await
            }
            CommandBody::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
            } => {
                if extras.fetch_modseq {
                    self.condstore = true;
                }
                if extras.vanished {
                    if !uid || !self.qresync {
                        return self.bad(&tag, "VANISHED needs UID FETCH and ENABLE QRESYNC");
                    }
                    if let Err(e) = self
                        .vanished_earlier(&sequence_set, extras.changed_since.unwrap_or(0))
                        .await
                    {
                        return self.internal(&tag, e);
                    }
                }
                fetch::fetch(
                    self,
                    stream,
                    &tag,
                    &sequence_set,
                    macro_or_item_names,
                    uid,
                    &extras,
                )
                .await
            }
            CommandBody::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
            } => {
                self.store(
                    &tag,
                    &sequence_set,
                    kind,
                    response,
                    &flags,
                    uid,
                    extras.unchanged_since,
                )
                .await
            }
            CommandBody::Copy {
                sequence_set,
                mailbox,
                uid,
            } => {
                self.copy(&tag, &sequence_set, &mailbox_name(&mailbox), uid, false)
                    .await
            }
            CommandBody::Move {
                sequence_set,
                mailbox,
                uid,
            } => {
                self.copy(&tag, &sequence_set, &mailbox_name(&mailbox), uid, true)
                    .await
            }
            _ => self.bad(&tag, "command not supported"),
        }
    }
}

/// Waits for a change of the account while `idling`; otherwise never resolves.
async fn changed(sub: &mut Option<Subscription>, idling: bool) {
    match sub {
        Some(s) if idling => s.changed().await,
        _ => std::future::pending().await,
    }
}

/// Brings `sel` up to date with what changed in its folder, writing the untagged `FETCH`, `EXISTS` and
/// `RECENT` responses into `out`. Expunged messages are only marked `gone` ([`report_expunges`] tells the
/// client when numbering may change). `recent`: this session took the recent messages with UIDs in
/// `first..upto`.
fn apply_changes(
    sel: &mut Selected,
    changes: FolderChanges,
    recent: Option<(u32, u32)>,
    condstore: bool,
    out: &mut Vec<u8>,
) {
    let max_known = sel.max_uid();
    let mut added = false;
    let is_recent = |uid: u32| recent.is_some_and(|(first, upto)| (first..upto).contains(&uid));
    for f in changes.changed {
        if f.uid > max_known {
            sel.msgs.push(Msg {
                recent: is_recent(f.uid),
                meta: f.into(),
                gone: false,
            });
            added = true;
            continue;
        }
        let Ok(i) = sel.msgs.binary_search_by_key(&f.uid, |m| m.meta.uid) else {
            continue;
        };
        let m = &mut sel.msgs[i];
        // Read at SELECT but arrived after its claim: taken now.
        m.recent |= is_recent(f.uid);
        if !m.gone && (f.flags != m.meta.flags || f.keywords != m.meta.keywords) {
            out.extend_from_slice(format!("* {} FETCH (FLAGS ", i + 1).as_bytes());
            flag_list_recent(out, f.flags, &f.keywords, m.recent);
            out.extend_from_slice(format!(" UID {}", f.uid).as_bytes());
            if condstore {
                out.extend_from_slice(format!(" MODSEQ ({})", f.modseq).as_bytes());
            }
            out.extend_from_slice(b")\r\n");
        }
        m.meta = f.into();
    }
    for uid in changes.expunged {
        if let Ok(i) = sel.msgs.binary_search_by_key(&uid, |m| m.meta.uid) {
            if !sel.msgs[i].gone {
                sel.msgs[i].gone = true;
                sel.owes_expunge = true;
            }
        }
    }
    sel.version = (changes.uidnext, changes.highest_modseq);
    if added {
        out.extend_from_slice(format!("* {} EXISTS\r\n", sel.msgs.len()).as_bytes());
        let recent = sel.msgs.iter().filter(|m| m.recent && !m.gone).count();
        out.extend_from_slice(format!("* {recent} RECENT\r\n").as_bytes());
    }
}

/// Removes the `gone` messages from the numbering and tells the client: `* n EXPUNGE` for each, or one
/// `* VANISHED uids` once QRESYNC is enabled (RFC 7162 §3.2.10).
fn report_expunges(sel: &mut Selected, qresync: bool, out: &mut Vec<u8>) {
    let mut removed = 0;
    let mut i = 0;
    let mut vanished = Vec::new();
    sel.msgs.retain(|m| {
        i += 1;
        if m.gone {
            if qresync {
                vanished.push(m.meta.uid);
            } else {
                out.extend_from_slice(format!("* {} EXPUNGE\r\n", i - removed).as_bytes());
            }
            removed += 1;
            false
        } else {
            true
        }
    });
    if !vanished.is_empty() {
        out.extend_from_slice(format!("* VANISHED {}\r\n", compact_set(&vanished)).as_bytes());
    }
    sel.owes_expunge = false;
}

/// A message's flag list as this session shows it: with `\Recent` if the session took it as recent.
pub(super) fn flag_list_recent(out: &mut Vec<u8>, flags: Flags, keywords: &[String], recent: bool) {
    if !recent {
        return flag_list(out, flags, keywords);
    }
    let start = out.len();
    flag_list(out, flags, keywords);
    // `(…)` → `(\Recent …)`.
    let at = start + 1;
    let empty = out.get(at) == Some(&b')');
    let insert: &[u8] = if empty { b"\\Recent" } else { b"\\Recent " };
    out.splice(at..at, insert.iter().copied());
}

/// System flags and keywords of a flag list (`\Recent` and unknown `\`-flags are ignored).
pub(super) fn split_flags(flags: &[Flag<'_>]) -> (Flags, Vec<String>) {
    let mut system = Flags::empty();
    let mut keywords = Vec::new();
    for f in flags {
        match f {
            Flag::Seen => system = system.union(Flags::SEEN),
            Flag::Answered => system = system.union(Flags::ANSWERED),
            Flag::Flagged => system = system.union(Flags::FLAGGED),
            Flag::Deleted => system = system.union(Flags::DELETED),
            Flag::Draft => system = system.union(Flags::DRAFT),
            Flag::Keyword(k) => keywords.push(k.as_ref().to_owned()),
            Flag::Extension(_) => {}
        }
    }
    (system, keywords)
}

fn astring(a: &AString<'_>) -> String {
    String::from_utf8_lossy(a.as_ref()).into_owned()
}

/// A mailbox argument as the store names it (`INBOX` in any case is `INBOX`).
fn mailbox_name(m: &Mailbox<'_>) -> String {
    match m {
        Mailbox::Inbox => "INBOX".to_owned(),
        Mailbox::Other(o) => String::from_utf8_lossy(o.as_ref()).into_owned(),
    }
}

fn list_pattern(m: &ListMailbox<'_>) -> String {
    match m {
        ListMailbox::Token(t) => String::from_utf8_lossy(t.as_ref()).into_owned(),
        ListMailbox::String(s) => String::from_utf8_lossy(s.as_ref()).into_owned(),
    }
}

fn io_reason(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::TimedOut => "write timed out",
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => "connection reset",
        _ => "I/O error",
    }
}
