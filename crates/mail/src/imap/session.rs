//! The IMAP session: connection handling, the state machine of RFC 3501 §3 (not authenticated,
//! authenticated, selected, logout) and every command.

use super::ext::{self, Extras, Own, Pre};
use super::frame::{Event, Framer};
use super::write::{flag_list, mailbox as write_mailbox};
use super::{fetch, search};
use crate::notify::Subscription;
use crate::{Context, JunkMove, LookupError};
use base64::Engine;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::auth::AuthMechanism;
use imap_codec::imap_types::bounded_static::IntoBoundedStatic;
use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::core::AString;
use imap_codec::imap_types::extensions::enable::CapabilityEnable;
use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::sequence::SequenceSet;
use imap_codec::imap_types::status::StatusDataItemName;
use imap_codec::CommandCodec;
use msgr_store::{
    Delivery, FlagOp, Flags, Folder, FolderRef, LocalTarget, MailStore, MessageMeta, SpecialUse,
    StoreError,
};
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
        let mut session = Session::new(ctx, implicit_tls, !implicit_tls);
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
        let mut session = Session::new(ctx, tls_active, false);
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
enum State {
    NotAuthenticated,
    Authenticated,
    Selected(Box<Selected>),
}

/// A command that continues over more lines than its own.
enum Pending {
    /// `AUTHENTICATE PLAIN` without an initial response: the next line is the response.
    Authenticate { tag: String },
    /// In `IDLE` until the client says `DONE`.
    Idle { tag: String },
}

/// A message as the session numbers it.
pub(super) struct Msg {
    pub meta: MessageMeta,
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
}

impl Selected {
    pub fn max_uid(&self) -> u32 {
        self.msgs.last().map_or(0, |m| m.meta.uid)
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
    /// The stream is private.
    tls: bool,
    /// `STARTTLS` can be offered (a plain TCP stream the caller can upgrade).
    starttls_available: bool,
    state: State,
    pending: Option<Pending>,
    greeted: bool,
    /// Refused commands so far; at `config.max_errors` the session is closed.
    errors: u32,
    failed_logins: u32,
    pub account: Option<String>,
    /// Changes of the account's mailbox, from login on.
    subscription: Option<Subscription>,
    /// `ENABLE CONDSTORE` or a CONDSTORE-using command was seen: FETCH responses carry `MODSEQ`.
    pub condstore: bool,
    commands: u64,
    framer: Framer,
    buf: Box<[u8]>,
    len: usize,
    pub out: Vec<u8>,
}

impl Session {
    fn new(ctx: Arc<Context>, tls: bool, starttls_available: bool) -> Session {
        let max_line = ctx.config.max_line.max(MIN_LINE);
        let max_command = usize::try_from(ctx.config.max_message_bytes)
            .unwrap_or(usize::MAX)
            .saturating_add(64 * 1024);
        Session {
            ctx,
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
        let mut caps = String::from("IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UIDPLUS MOVE UNSELECT SPECIAL-USE CONDSTORE ESEARCH CHILDREN");
        if matches!(self.state, State::NotAuthenticated) {
            if self.starttls_available && !self.tls {
                caps.push_str(" STARTTLS");
            }
            if self.auth_allowed() {
                caps.push_str(" AUTH=PLAIN");
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

    pub fn untagged(&mut self, text: &str) {
        self.out.extend_from_slice(b"* ");
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    pub fn tagged(&mut self, tag: &str, text: &str) {
        self.out.extend_from_slice(tag.as_bytes());
        self.out.push(b' ');
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    /// Counts a refused command; at `max_errors` the session ends.
    fn count_error(&mut self) -> Flow {
        self.errors += 1;
        if self.errors >= self.ctx.config.max_errors.max(1) {
            self.untagged("BYE too many errors");
            return Flow::End(End::Closed("too many errors"));
        }
        Flow::Continue
    }

    fn bad(&mut self, tag: &str, text: &str) -> Flow {
        self.tagged(tag, &format!("BAD {text}"));
        self.count_error()
    }

    async fn handle<S>(&mut self, raw: &[u8], stream: &mut S) -> Flow
    where
        S: AsyncWrite + Unpin + Send,
    {
        match self.pending.take() {
            Some(Pending::Authenticate { tag }) => return self.sasl_response(&tag, raw).await,
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
                    if !matches!(mechanism, AuthMechanism::Plain) {
                        self.tagged(&tag, "NO [CANNOT] only AUTHENTICATE PLAIN is offered");
                        return self.count_error();
                    }
                    if !self.auth_allowed() {
                        self.tagged(&tag, "NO [PRIVACYREQUIRED] use STARTTLS first");
                        return self.count_error();
                    }
                    match initial_response {
                        Some(ir) => self.sasl_plain(&tag, ir.declassify()).await,
                        None => {
                            self.out.extend_from_slice(b"+ \r\n");
                            self.pending = Some(Pending::Authenticate { tag });
                            Flow::Continue
                        }
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
        match self.ctx.auth.check(user, pass).await {
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

    fn internal(&mut self, tag: &str, e: LookupError) -> Flow {
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
    /// changed: `FETCH` for flags, `EXPUNGE` (only if `allow_expunge`), `EXISTS`.
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
        let version = self.blocking(move |s| s.folder_version(folder_id)).await?;
        if version == Some(known) && !(owes && allow_expunge) {
            return Ok(());
        }
        let fresh = match version {
            Some(_) => self.blocking(move |s| s.messages(folder_id)).await?,
            // The folder was deleted under us: every message is gone.
            None => Vec::new(),
        };
        let condstore = self.condstore;
        let mut out = std::mem::take(&mut self.out);
        if let Some(sel) = self.selected() {
            apply_changes(sel, fresh, allow_expunge, condstore, &mut out);
            if let Some(v) = version {
                sel.version = v;
            }
        }
        self.out = out;
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
                    if matches!(c, CapabilityEnable::CondStore) {
                        self.condstore = true;
                        enabled.push("CONDSTORE");
                    }
                }
                if !enabled.is_empty() {
                    self.untagged(&format!("ENABLED {}", enabled.join(" ")));
                }
                self.tagged(&tag, "OK ENABLE completed");
                Flow::Continue
            }
            CommandBody::Select { mailbox } => {
                self.select(&tag, &mailbox_name(&mailbox), false, extras.condstore)
                    .await
            }
            CommandBody::Examine { mailbox } => {
                self.select(&tag, &mailbox_name(&mailbox), true, extras.condstore)
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
                    message.as_ref(),
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
                self.search(&tag, criteria, uid, extras.esearch).await
            }
            CommandBody::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
            } => {
                if extras.fetch_modseq {
                    self.condstore = true;
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

    async fn select(&mut self, tag: &str, name: &str, read_only: bool, condstore: bool) -> Flow {
        // A failed SELECT leaves no mailbox selected (RFC 3501 §6.3.1).
        self.state = State::Authenticated;
        if condstore {
            self.condstore = true;
        }
        let account = self.account();
        let n = name.to_owned();
        let folder = match self.blocking(move |s| s.folder(&account, &n)).await {
            Ok(Some(f)) => f,
            Ok(None) => {
                self.tagged(tag, "NO [NONEXISTENT] no such mailbox");
                return Flow::Continue;
            }
            Err(e) => return self.internal(tag, e),
        };
        let folder_id = folder.id;
        let msgs = match self.blocking(move |s| s.messages(folder_id)).await {
            Ok(m) => m,
            Err(e) => return self.internal(tag, e),
        };
        // The version read after the messages may be newer than they are: the next refresh then reads
        // again, which is only a little work, never a missed change.
        let version = (folder.uidnext, folder.highest_modseq);
        let first_unseen = msgs.iter().position(|m| !m.flags.contains(Flags::SEEN));
        let mut keywords: Vec<String> = msgs.iter().flat_map(|m| m.keywords.clone()).collect();
        keywords.sort_by_key(|k| k.to_ascii_lowercase());
        keywords.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
        let kw = keywords.iter().fold(String::new(), |mut s, k| {
            s.push(' ');
            s.push_str(k);
            s
        });
        self.untagged(&format!(
            "FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft{kw})"
        ));
        if read_only {
            self.untagged("OK [PERMANENTFLAGS ()] read-only mailbox");
        } else {
            self.untagged(&format!(
                "OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft{kw} \\*)] flags permitted"
            ));
        }
        self.untagged(&format!("{} EXISTS", msgs.len()));
        self.untagged("0 RECENT");
        if let Some(i) = first_unseen {
            self.untagged(&format!("OK [UNSEEN {}] first unseen", i + 1));
        }
        self.untagged(&format!(
            "OK [UIDVALIDITY {}] UIDs valid",
            folder.uidvalidity
        ));
        self.untagged(&format!(
            "OK [UIDNEXT {}] predicted next UID",
            folder.uidnext
        ));
        self.untagged(&format!(
            "OK [HIGHESTMODSEQ {}] highest modseq",
            folder.highest_modseq
        ));
        self.state = State::Selected(Box::new(Selected {
            folder_id,
            special: folder.special,
            read_only,
            msgs: msgs
                .into_iter()
                .map(|meta| Msg { meta, gone: false })
                .collect(),
            version,
            owes_expunge: false,
        }));
        let (code, verb) = if read_only {
            ("READ-ONLY", "EXAMINE")
        } else {
            ("READ-WRITE", "SELECT")
        };
        self.tagged(tag, &format!("OK [{code}] {verb} completed"));
        Flow::Continue
    }

    fn store_error(&mut self, tag: &str, e: LookupError) -> Flow {
        match e {
            LookupError::Store(StoreError::FolderNotFound(_)) => {
                self.tagged(tag, "NO [NONEXISTENT] no such mailbox");
            }
            LookupError::Store(StoreError::FolderExists(_)) => {
                self.tagged(tag, "NO [ALREADYEXISTS] mailbox already exists");
            }
            LookupError::Store(StoreError::FolderProtected(_)) => {
                self.tagged(tag, "NO [CANNOT] this mailbox cannot be changed that way");
            }
            LookupError::Store(StoreError::OverQuota { .. }) => {
                self.tagged(tag, "NO [OVERQUOTA] mailbox is full");
            }
            e => return self.internal(tag, e),
        }
        Flow::Continue
    }

    async fn create(&mut self, tag: &str, name: &str) -> Flow {
        let name = name.trim_end_matches(DELIMITER).to_owned();
        if name.is_empty() || name.eq_ignore_ascii_case("INBOX") || !valid_name(&name) {
            self.tagged(tag, "NO [CANNOT] invalid mailbox name");
            return Flow::Continue;
        }
        let account = self.account();
        // Superior names are created too (RFC 3501 §6.3.3), where missing.
        let result = self
            .blocking(move |s| {
                let mut at = 0;
                while let Some(i) = name[at..].find(DELIMITER) {
                    let parent = &name[..at + i];
                    if s.folder(&account, parent)?.is_none() {
                        s.create_folder(&account, parent)?;
                    }
                    at += i + 1;
                }
                s.create_folder(&account, &name)
            })
            .await;
        match result {
            Ok(_) => {
                self.ctx.notify.changed(&self.account());
                self.tagged(tag, "OK CREATE completed");
                Flow::Continue
            }
            Err(e) => self.store_error(tag, e),
        }
    }

    async fn delete(&mut self, tag: &str, name: &str) -> Flow {
        let account = self.account();
        let n = name.to_owned();
        let result = self.blocking(move |s| s.delete_folder(&account, &n)).await;
        match result {
            Ok(()) => {
                self.ctx.notify.changed(&self.account());
                self.tagged(tag, "OK DELETE completed");
                Flow::Continue
            }
            Err(e) => self.store_error(tag, e),
        }
    }

    async fn rename(&mut self, tag: &str, from: &str, to: &str) -> Flow {
        let to = to.trim_end_matches(DELIMITER).to_owned();
        if to.is_empty() || !valid_name(&to) {
            self.tagged(tag, "NO [CANNOT] invalid mailbox name");
            return Flow::Continue;
        }
        let account = self.account();
        let from = from.to_owned();
        if from.eq_ignore_ascii_case("INBOX") {
            return self.rename_inbox(tag, &to).await;
        }
        // Inferior names move with their superior (RFC 3501 §6.3.5).
        let result = self
            .blocking(move |s| {
                let children: Vec<String> = s
                    .folders(&account)?
                    .into_iter()
                    .filter_map(|f| {
                        f.name
                            .strip_prefix(&format!("{from}{DELIMITER}"))
                            .map(|rest| rest.to_owned())
                    })
                    .collect();
                s.rename_folder(&account, &from, &to)?;
                for rest in children {
                    s.rename_folder(
                        &account,
                        &format!("{from}{DELIMITER}{rest}"),
                        &format!("{to}{DELIMITER}{rest}"),
                    )?;
                }
                Ok(())
            })
            .await;
        match result {
            Ok(()) => {
                self.ctx.notify.changed(&self.account());
                self.tagged(tag, "OK RENAME completed");
                Flow::Continue
            }
            Err(e) => self.store_error(tag, e),
        }
    }

    /// RFC 3501 §6.3.5: renaming INBOX moves all its messages to a new folder and leaves INBOX empty.
    async fn rename_inbox(&mut self, tag: &str, to: &str) -> Flow {
        let account = self.account();
        let to = to.to_owned();
        let quota = self.ctx.config.quota_bytes;
        let result = self
            .blocking(move |s| {
                let inbox = s
                    .folder(&account, "INBOX")?
                    .ok_or_else(|| StoreError::FolderNotFound("INBOX".to_owned()))?;
                let dest = s.create_folder(&account, &to)?;
                let uids: Vec<u32> = s.messages(inbox.id)?.iter().map(|m| m.uid).collect();
                if !uids.is_empty() {
                    s.copy_messages(inbox.id, &uids, dest.id, true, quota)?;
                }
                Ok(())
            })
            .await;
        match result {
            Ok(()) => {
                self.ctx.notify.changed(&self.account());
                self.tagged(tag, "OK RENAME completed");
                Flow::Continue
            }
            Err(e) => self.store_error(tag, e),
        }
    }

    async fn subscribe(&mut self, tag: &str, name: &str, on: bool) -> Flow {
        let account = self.account();
        let n = name.to_owned();
        match self
            .blocking(move |s| s.set_subscribed(&account, &n, on))
            .await
        {
            Ok(()) => {
                self.tagged(
                    tag,
                    if on {
                        "OK SUBSCRIBE completed"
                    } else {
                        "OK UNSUBSCRIBE completed"
                    },
                );
                Flow::Continue
            }
            Err(e) => self.store_error(tag, e),
        }
    }

    async fn list(&mut self, tag: &str, reference: &str, pattern: &str, kind: ListKind) -> Flow {
        let lsub = matches!(kind, ListKind::Lsub);
        let (special_only, subscribed_only) = match kind {
            ListKind::List {
                special_only,
                subscribed_only,
            } => (special_only, subscribed_only),
            ListKind::Lsub => (false, true),
        };
        let verb = if lsub { "LSUB" } else { "LIST" };
        if pattern.is_empty() {
            // The hierarchy delimiter and root (RFC 3501 §6.3.8).
            self.untagged(&format!("{verb} (\\Noselect) \"/\" \"\""));
            self.tagged(tag, &format!("OK {verb} completed"));
            return Flow::Continue;
        }
        let account = self.account();
        let folders = match self.blocking(move |s| s.folders(&account)).await {
            Ok(f) => f,
            Err(e) => return self.internal(tag, e),
        };
        let full = format!("{reference}{pattern}");
        for f in &folders {
            if (subscribed_only && !f.subscribed)
                || (special_only && f.special.and_then(SpecialUse::attribute).is_none())
            {
                continue;
            }
            if !wildcard_match(&full, &f.name) {
                continue;
            }
            let mut attrs = Vec::new();
            let prefix = format!("{}{DELIMITER}", f.name);
            let children = folders.iter().any(|o| o.name.starts_with(&prefix));
            attrs.push(if children {
                "\\HasChildren"
            } else {
                "\\HasNoChildren"
            });
            if let Some(a) = f.special.and_then(SpecialUse::attribute) {
                attrs.push(a);
            }
            if subscribed_only && !lsub && f.subscribed {
                // LIST (SUBSCRIBED) marks what it selected (RFC 5258 §3.1).
                attrs.push("\\Subscribed");
            }
            let mut line = format!("* {verb} ({}) \"/\" ", attrs.join(" ")).into_bytes();
            write_mailbox(&mut line, &f.name);
            line.extend_from_slice(b"\r\n");
            self.out.extend_from_slice(&line);
        }
        self.tagged(tag, &format!("OK {verb} completed"));
        Flow::Continue
    }

    async fn status(&mut self, tag: &str, name: &str, items: &[StatusDataItemName]) -> Flow {
        let account = self.account();
        let n = name.to_owned();
        let want_deleted = items
            .iter()
            .any(|i| matches!(i, StatusDataItemName::Deleted));
        let found = self
            .blocking(move |s| {
                let Some(f) = s.folder(&account, &n)? else {
                    return Ok(None);
                };
                let deleted = if want_deleted {
                    s.messages(f.id)?
                        .iter()
                        .filter(|m| m.flags.contains(Flags::DELETED))
                        .count()
                } else {
                    0
                };
                Ok(Some((f, deleted)))
            })
            .await;
        let (folder, deleted): (Folder, usize) = match found {
            Ok(Some(f)) => f,
            Ok(None) => {
                self.tagged(tag, "NO [NONEXISTENT] no such mailbox");
                return Flow::Continue;
            }
            Err(e) => return self.internal(tag, e),
        };
        let mut parts = Vec::new();
        for item in items {
            match item {
                StatusDataItemName::Messages => parts.push(format!("MESSAGES {}", folder.messages)),
                StatusDataItemName::Recent => parts.push("RECENT 0".to_owned()),
                StatusDataItemName::UidNext => parts.push(format!("UIDNEXT {}", folder.uidnext)),
                StatusDataItemName::UidValidity => {
                    parts.push(format!("UIDVALIDITY {}", folder.uidvalidity))
                }
                StatusDataItemName::Unseen => parts.push(format!("UNSEEN {}", folder.unseen)),
                StatusDataItemName::Deleted => parts.push(format!("DELETED {deleted}")),
                StatusDataItemName::DeletedStorage => {}
                StatusDataItemName::HighestModSeq => {
                    parts.push(format!("HIGHESTMODSEQ {}", folder.highest_modseq))
                }
            }
        }
        let mut line = b"* STATUS ".to_vec();
        write_mailbox(&mut line, &folder.name);
        line.extend_from_slice(format!(" ({})\r\n", parts.join(" ")).as_bytes());
        self.out.extend_from_slice(&line);
        self.tagged(tag, "OK STATUS completed");
        Flow::Continue
    }

    async fn append(
        &mut self,
        tag: &str,
        name: &str,
        flags: &[Flag<'_>],
        date: Option<i64>,
        message: &[u8],
    ) -> Flow {
        let (system, keywords) = split_flags(flags);
        if message.len() as u64 > self.ctx.config.max_message_bytes {
            self.tagged(tag, "NO [TOOBIG] message too large");
            return Flow::Continue;
        }
        let account = self.account();
        let folder_name = name.to_owned();
        let exists = {
            let a = account.clone();
            let n = folder_name.clone();
            self.blocking(move |s| s.folder(&a, &n)).await
        };
        match exists {
            Ok(Some(_)) => {}
            Ok(None) => {
                self.tagged(tag, "NO [TRYCREATE] no such mailbox");
                return Flow::Continue;
            }
            Err(e) => return self.internal(tag, e),
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
        let delivery = Delivery {
            raw: message.to_vec(),
            summary: crate::mime::summarize(message),
            internal_date: date.unwrap_or(now),
            targets: vec![LocalTarget {
                account: account.clone(),
                folder: FolderRef::Named(folder_name),
                flags: system,
            }],
            outbound: None,
        };
        // Acknowledged only once the group commit made it durable.
        let stored = match self.ctx.deliverer.deliver(delivery).await {
            Ok(d) => d.stored,
            Err(e) if e.is_over_quota() => {
                self.tagged(tag, "NO [OVERQUOTA] mailbox is full");
                return Flow::Continue;
            }
            Err(crate::DeliverError::Store(StoreError::FolderNotFound(_))) => {
                self.tagged(tag, "NO [TRYCREATE] no such mailbox");
                return Flow::Continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "APPEND failed");
                self.tagged(tag, "NO [UNAVAILABLE] could not store the message");
                return Flow::Continue;
            }
        };
        let Some(m) = stored.first() else {
            self.tagged(tag, "NO [SERVERBUG] message not stored");
            return Flow::Continue;
        };
        let (folder_id, uid, uidvalidity) = (m.folder_id, m.uid, m.uidvalidity);
        if !keywords.is_empty() {
            let kw = keywords.clone();
            if let Err(e) = self
                .blocking(move |s| {
                    s.store_flags(folder_id, &[uid], FlagOp::Add, Flags::empty(), &kw)
                })
                .await
            {
                tracing::warn!(error = %e, "APPEND keywords not stored");
            }
        }
        if let Err(e) = self.refresh(true).await {
            return self.internal(tag, e);
        }
        self.tagged(
            tag,
            &format!("OK [APPENDUID {uidvalidity} {uid}] APPEND completed"),
        );
        Flow::Continue
    }

    /// Removes the messages marked `\Deleted` (only those in `uids` if given) and publishes the change.
    async fn expunge_deleted(&mut self, uids: Option<&SequenceSet>) -> Result<(), LookupError> {
        let Some(sel) = self.selected() else {
            return Ok(());
        };
        let max_uid = sel.max_uid();
        let victims: Vec<u32> = sel
            .msgs
            .iter()
            .filter(|m| !m.gone && m.meta.flags.contains(Flags::DELETED))
            .filter(|m| uids.is_none_or(|set| search::in_set(set, m.meta.uid, max_uid)))
            .map(|m| m.meta.uid)
            .collect();
        if victims.is_empty() {
            return Ok(());
        }
        let folder_id = sel.folder_id;
        self.blocking(move |s| s.expunge(folder_id, &victims))
            .await?;
        self.ctx.notify.changed(&self.account());
        Ok(())
    }

    async fn expunge(&mut self, tag: &str, uids: Option<&SequenceSet>) -> Flow {
        if self.selected().is_some_and(|s| s.read_only) {
            self.tagged(tag, "NO [READ-ONLY] mailbox is read-only");
            return Flow::Continue;
        }
        if let Err(e) = self.expunge_deleted(uids).await {
            return self.internal(tag, e);
        }
        if let Err(e) = self.refresh(true).await {
            return self.internal(tag, e);
        }
        self.tagged(tag, "OK EXPUNGE completed");
        Flow::Continue
    }

    async fn search(
        &mut self,
        tag: &str,
        criteria: SearchKey<'_>,
        uid: bool,
        esearch: Option<ext::Return>,
    ) -> Flow {
        let Some(sel) = self.selected() else {
            return Flow::Continue;
        };
        let folder_id = sel.folder_id;
        let bounds = search::Bounds {
            max_seq: u32::try_from(sel.msgs.len()).unwrap_or(u32::MAX),
            max_uid: sel.max_uid(),
        };
        let candidates: Vec<(u32, MessageMeta)> = sel
            .msgs
            .iter()
            .enumerate()
            .filter(|(_, m)| !m.gone)
            .map(|(i, m)| (u32::try_from(i + 1).unwrap_or(u32::MAX), m.meta.clone()))
            .collect();
        // The search runs on the blocking pool, which needs the keys owned.
        let criteria = criteria.into_static();
        let needs_raw = search::needs_raw(&criteria);
        let store = self.ctx.store.clone();
        let found = tokio::task::spawn_blocking(move || {
            let mut hits = Vec::new();
            for (seq, meta) in &candidates {
                let uid = meta.uid;
                let store = &store;
                let mut load = || {
                    if needs_raw {
                        store.message_raw(folder_id, uid).ok().flatten()
                    } else {
                        None
                    }
                };
                let mut raw = search::Raw::new(&mut load);
                let c = search::Candidate { seq: *seq, meta };
                if search::matches(&criteria, &c, &bounds, &mut raw) {
                    hits.push((*seq, uid));
                }
            }
            hits
        })
        .await;
        let hits = match found {
            Ok(h) => h,
            Err(e) => return self.internal(tag, e.into()),
        };
        let numbers: Vec<u32> = hits
            .iter()
            .map(|(s, u)| if uid { *u } else { *s })
            .collect();
        match esearch {
            None => {
                let mut line = String::from("SEARCH");
                for n in &numbers {
                    line.push(' ');
                    line.push_str(&n.to_string());
                }
                self.untagged(&line);
            }
            Some(r) => {
                let mut line = format!("ESEARCH (TAG \"{tag}\")");
                if uid {
                    line.push_str(" UID");
                }
                if !numbers.is_empty() {
                    if r.min {
                        line.push_str(&format!(" MIN {}", numbers[0]));
                    }
                    if r.max {
                        line.push_str(&format!(" MAX {}", numbers[numbers.len() - 1]));
                    }
                    if r.all {
                        line.push_str(&format!(" ALL {}", compact_set(&numbers)));
                    }
                }
                if r.count {
                    line.push_str(&format!(" COUNT {}", numbers.len()));
                }
                self.untagged(&line);
            }
        }
        self.tagged(tag, "OK SEARCH completed");
        Flow::Continue
    }

    #[allow(clippy::too_many_arguments)]
    async fn store(
        &mut self,
        tag: &str,
        set: &SequenceSet,
        kind: StoreType,
        response: StoreResponse,
        flags: &[Flag<'_>],
        uid: bool,
        unchanged_since: Option<u64>,
    ) -> Flow {
        let condstore = self.condstore || unchanged_since.is_some();
        self.condstore = condstore;
        let Some(sel) = self.selected() else {
            return Flow::Continue;
        };
        if sel.read_only {
            self.tagged(tag, "NO [READ-ONLY] mailbox is read-only");
            return Flow::Continue;
        }
        let indices = sel.select(set, uid);
        let mut modified = Vec::new();
        let targets: Vec<u32> = indices
            .iter()
            .filter_map(|&i| {
                let m = &sel.msgs[i];
                if m.gone {
                    return None;
                }
                if unchanged_since.is_some_and(|u| m.meta.modseq > u) {
                    modified.push(if uid {
                        m.meta.uid
                    } else {
                        u32::try_from(i + 1).unwrap_or(0)
                    });
                    return None;
                }
                Some(m.meta.uid)
            })
            .collect();
        let folder_id = sel.folder_id;
        let (system, keywords) = split_flags(flags);
        let op = match kind {
            StoreType::Add => FlagOp::Add,
            StoreType::Remove => FlagOp::Remove,
            StoreType::Replace => FlagOp::Replace,
        };
        let changed = if targets.is_empty() {
            Vec::new()
        } else {
            match self
                .blocking(move |s| s.store_flags(folder_id, &targets, op, system, &keywords))
                .await
            {
                Ok(c) => c,
                Err(e) => return self.internal(tag, e),
            }
        };
        if !changed.is_empty() {
            self.ctx.notify.changed(&self.account());
        }
        let silent = matches!(response, StoreResponse::Silent);
        let mut out = std::mem::take(&mut self.out);
        if let Some(sel) = self.selected() {
            for c in &changed {
                let Ok(i) = sel.msgs.binary_search_by_key(&c.uid, |m| m.meta.uid) else {
                    continue;
                };
                let before = (sel.msgs[i].meta.flags, sel.msgs[i].meta.keywords.clone());
                let m = &mut sel.msgs[i].meta;
                m.flags = c.flags;
                m.keywords = c.keywords.clone();
                m.modseq = c.modseq;
                // Silent still reports a change made by someone else, and CONDSTORE asks for MODSEQ.
                if !silent || (condstore && before != (c.flags, c.keywords.clone())) {
                    out.extend_from_slice(format!("* {} FETCH (", i + 1).as_bytes());
                    if !silent {
                        out.extend_from_slice(b"FLAGS ");
                        flag_list(&mut out, c.flags, &c.keywords);
                        out.push(b' ');
                    }
                    out.extend_from_slice(format!("UID {}", c.uid).as_bytes());
                    if condstore {
                        out.extend_from_slice(format!(" MODSEQ ({})", c.modseq).as_bytes());
                    }
                    out.extend_from_slice(b")\r\n");
                }
            }
        }
        self.out = out;
        if modified.is_empty() {
            self.tagged(tag, "OK STORE completed");
        } else {
            self.tagged(
                tag,
                &format!(
                    "OK [MODIFIED {}] conditional STORE failed",
                    compact_set(&modified)
                ),
            );
        }
        Flow::Continue
    }

    async fn copy(
        &mut self,
        tag: &str,
        set: &SequenceSet,
        dest: &str,
        uid: bool,
        remove: bool,
    ) -> Flow {
        let account = self.account();
        let Some(sel) = self.selected() else {
            return Flow::Continue;
        };
        if remove && sel.read_only {
            self.tagged(tag, "NO [READ-ONLY] mailbox is read-only");
            return Flow::Continue;
        }
        let uids: Vec<u32> = sel
            .select(set, uid)
            .into_iter()
            .filter(|&i| !sel.msgs[i].gone)
            .map(|i| sel.msgs[i].meta.uid)
            .collect();
        let (from_id, from_special) = (sel.folder_id, sel.special);
        let quota = self.ctx.config.quota_bytes;
        let a = account.clone();
        let d = dest.to_owned();
        let dest_folder = match self.blocking(move |s| s.folder(&a, &d)).await {
            Ok(Some(f)) => f,
            Ok(None) => {
                self.tagged(tag, "NO [TRYCREATE] no such mailbox");
                return Flow::Continue;
            }
            Err(e) => return self.internal(tag, e),
        };
        let verb = if remove { "MOVE" } else { "COPY" };
        if uids.is_empty() {
            self.tagged(tag, &format!("OK {verb} completed (nothing to do)"));
            return Flow::Continue;
        }
        let to_id = dest_folder.id;
        let result = self
            .blocking(move |s| s.copy_messages(from_id, &uids, to_id, remove, quota))
            .await;
        let (uidvalidity, pairs) = match result {
            Ok(r) => r,
            Err(e) => return self.store_error(tag, e),
        };
        self.ctx.notify.changed(&account);
        // The spam filter hears of the user's verdicts.
        // Into Junk by COPY or MOVE says "spam"; only a MOVE out of Junk to somewhere other than Trash
        // says "not spam" (a copy leaves it in Junk, and deleting spam is no verdict).
        let into_junk = dest_folder.special == Some(SpecialUse::Junk);
        let from_junk = from_special == Some(SpecialUse::Junk);
        let out_of_junk =
            from_junk && !into_junk && remove && dest_folder.special != Some(SpecialUse::Trash);
        if ((into_junk && !from_junk) || out_of_junk) && !pairs.is_empty() {
            if let Some(hook) = self.ctx.junk_hook.get() {
                let new_uids: Vec<u32> = pairs.iter().map(|(_, n)| *n).collect();
                let direction = if into_junk {
                    JunkMove::IntoJunk
                } else {
                    JunkMove::OutOfJunk
                };
                hook.moved(&account, direction, to_id, &new_uids);
            }
        }
        let code = if pairs.is_empty() {
            String::new()
        } else {
            let src: Vec<u32> = pairs.iter().map(|(s, _)| *s).collect();
            let dst: Vec<u32> = pairs.iter().map(|(_, d)| *d).collect();
            format!(
                "[COPYUID {uidvalidity} {} {}] ",
                compact_list(&src),
                compact_list(&dst)
            )
        };
        if remove {
            // RFC 6851 §4.3: COPYUID goes in an untagged OK before the EXPUNGEs.
            if !code.is_empty() {
                self.untagged(&format!("OK {code}moved"));
            }
            if let Err(e) = self.refresh(true).await {
                return self.internal(tag, e);
            }
            self.tagged(tag, "OK MOVE completed");
        } else {
            if let Err(e) = self.refresh(!uid).await {
                return self.internal(tag, e);
            }
            self.tagged(tag, &format!("OK {code}COPY completed"));
        }
        Flow::Continue
    }
}

/// Which listing a LIST-like command asks for.
#[derive(Clone, Copy)]
enum ListKind {
    /// `LIST`, with LIST-EXTENDED's selection options.
    List {
        special_only: bool,
        subscribed_only: bool,
    },
    /// `LSUB`: subscribed folders only.
    Lsub,
}

/// Waits for a change of the account while `idling`; otherwise never resolves.
async fn changed(sub: &mut Option<Subscription>, idling: bool) {
    match sub {
        Some(s) if idling => s.changed().await,
        _ => std::future::pending().await,
    }
}

/// Brings `sel` up to date with `fresh` (the folder's messages in UID order), writing the untagged
/// responses into `out`.
fn apply_changes(
    sel: &mut Selected,
    fresh: Vec<MessageMeta>,
    allow_expunge: bool,
    condstore: bool,
    out: &mut Vec<u8>,
) {
    let before = sel.msgs.len();
    let max_known = sel.max_uid();
    let mut fresh = fresh.into_iter().peekable();
    // Messages the client knows: changed flags, or gone.
    for (i, m) in sel.msgs.iter_mut().enumerate() {
        while fresh.peek().is_some_and(|f| f.uid < m.meta.uid) {
            // A UID below one we know but never seen: cannot happen (UIDs only grow); skip it.
            fresh.next();
        }
        match fresh.peek() {
            Some(f) if f.uid == m.meta.uid => {
                let Some(f) = fresh.next() else { break };
                if !m.gone && (f.flags != m.meta.flags || f.keywords != m.meta.keywords) {
                    out.extend_from_slice(format!("* {} FETCH (FLAGS ", i + 1).as_bytes());
                    flag_list(out, f.flags, &f.keywords);
                    out.extend_from_slice(format!(" UID {}", f.uid).as_bytes());
                    if condstore {
                        out.extend_from_slice(format!(" MODSEQ ({})", f.modseq).as_bytes());
                    }
                    out.extend_from_slice(b")\r\n");
                }
                m.meta = f;
            }
            _ => {
                if !m.gone {
                    m.gone = true;
                    sel.owes_expunge = true;
                }
            }
        }
    }
    if allow_expunge && sel.owes_expunge {
        let mut removed = 0;
        let mut i = 0;
        sel.msgs.retain(|m| {
            i += 1;
            if m.gone {
                out.extend_from_slice(format!("* {} EXPUNGE\r\n", i - removed).as_bytes());
                removed += 1;
                false
            } else {
                true
            }
        });
        sel.owes_expunge = false;
    }
    let mut added = false;
    for f in fresh {
        if f.uid > max_known {
            sel.msgs.push(Msg {
                meta: f,
                gone: false,
            });
            added = true;
        }
    }
    if added || (sel.msgs.len() != before && !allow_expunge) {
        out.extend_from_slice(format!("* {} EXISTS\r\n", sel.msgs.len()).as_bytes());
    }
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

/// Names a client may create: no empty levels, no wildcards, no control characters.
fn valid_name(name: &str) -> bool {
    !name.split(DELIMITER).any(str::is_empty)
        && !name.chars().any(|c| c == '*' || c == '%' || c.is_control())
        && name.len() <= 512
}

/// LIST's wildcards: `*` matches anything, `%` anything but the delimiter. `INBOX` matches in any
/// letter case.
pub(super) fn wildcard_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> =
        if pattern.len() >= 5 && pattern[..5].eq_ignore_ascii_case("INBOX") && name == "INBOX" {
            format!("INBOX{}", &pattern[5..]).chars().collect()
        } else {
            pattern.chars().collect()
        };
    let n: Vec<char> = name.chars().collect();
    // Classic DP over pattern × name, bounded by the name (≤ 512) and the pattern (≤ a line).
    let mut dp = vec![false; n.len() + 1];
    dp[0] = true;
    for &pc in &p {
        let mut next = vec![false; n.len() + 1];
        match pc {
            '*' => {
                let mut any = false;
                for j in 0..=n.len() {
                    any |= dp[j];
                    next[j] = any;
                }
            }
            '%' => {
                for j in 0..=n.len() {
                    if dp[j] {
                        next[j] = true;
                        let mut k = j;
                        while k < n.len() && n[k] != DELIMITER {
                            k += 1;
                            next[k] = true;
                        }
                    }
                }
            }
            c => {
                for j in 0..n.len() {
                    if dp[j] && n[j] == c {
                        next[j + 1] = true;
                    }
                }
            }
        }
        dp = next;
    }
    dp[n.len()]
}

/// `1:3,5` for sorted numbers.
pub(super) fn compact_set(numbers: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < numbers.len() {
        let start = numbers[i];
        let mut end = start;
        while i + 1 < numbers.len() && numbers[i + 1] == end + 1 {
            i += 1;
            end = numbers[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// COPYUID's sets keep the order of the pairs, so runs are only joined when ascending.
fn compact_list(numbers: &[u32]) -> String {
    compact_set(numbers)
}

fn io_reason(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::TimedOut => "write timed out",
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => "connection reset",
        _ => "I/O error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_wildcards() {
        assert!(wildcard_match("*", "Work/Projects"));
        assert!(!wildcard_match("%", "Work/Projects"));
        assert!(wildcard_match("%", "Work"));
        assert!(wildcard_match("Work/%", "Work/Projects"));
        assert!(wildcard_match("inbox", "INBOX"));
        assert!(!wildcard_match("sent", "Sent"));
        assert!(wildcard_match("S*t", "Sent"));
    }

    #[test]
    fn sets_are_compacted() {
        assert_eq!(compact_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(compact_set(&[4]), "4");
    }
}
