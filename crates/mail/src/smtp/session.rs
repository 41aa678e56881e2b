//! One SMTP session: the connection's buffers and deadlines ([`Conn`]) and the protocol state
//! ([`Session`]): who the client said it is, who it signed in as, and the mail transaction in progress.

use super::command::{self, Command, MailFrom, ParseError};
use super::data::DataDecoder;
use super::Mode;
use crate::deliver::DeliverError;
use crate::submit::{self, printable, Route, RouteError};
use crate::{mime, Context};
use base64::Engine as _;
use bytes::{Buf, BytesMut};
use msgr_store::{Flags, FolderRef, LocalTarget, SpecialUse, StoreError};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// Replies queued beyond this are written even while pipelined input is still waiting, so a client that
/// sends without reading cannot make the output grow.
const MAX_PENDING_OUTPUT: usize = 16 * 1024;

/// The longest sender authentication (SPF, DKIM and DMARC lookups together) may take for one message.
const AUTH_DEADLINE: Duration = Duration::from_secs(20);

/// The smallest free space a read is given; reads happen only when a line is incomplete, so this is also
/// about what an idle session's buffer costs.
const READ_CHUNK: usize = 1024;

/// Why a connection ended, for the session's log line.
#[derive(Debug)]
enum Stop {
    Quit,
    PeerClosed,
    Timeout,
    TooManyErrors,
    Shutdown,
    Io(io::Error),
    Tls(io::Error),
}

impl From<io::Error> for Stop {
    fn from(e: io::Error) -> Stop {
        Stop::Io(e)
    }
}

/// What the command loop hands back to [`serve`].
enum End<S> {
    Stopped(Stop),
    /// `220 Ready to start TLS` was sent: the handshake comes next, on this stream.
    StartTls(S),
}

/// The connection: a stream, the client's unparsed input and the replies not yet written.
struct Conn<S> {
    io: S,
    input: BytesMut,
    output: Vec<u8>,
    /// A line over the limit is being skipped until its LF.
    skipping: bool,
    /// `config.max_line`: the longest command line kept.
    max_line: usize,
    /// How long a write may wait for the peer to read.
    write_timeout: Duration,
    /// The server's shutdown: a read waiting for the client gives up on it.
    shutdown: CancellationToken,
}

/// One unit of client input.
enum Input {
    /// A command line without its line ending.
    Line(Vec<u8>),
    /// A line longer than the limit (already thrown away).
    TooLong,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn new(io: S, ctx: &Context) -> Conn<S> {
        Conn {
            io,
            input: BytesMut::new(),
            output: Vec::new(),
            skipping: false,
            max_line: ctx.config.max_line,
            write_timeout: ctx.config.command_timeout(),
            shutdown: ctx.shutdown.clone(),
        }
    }

    fn reply(&mut self, line: &str) {
        self.output.extend_from_slice(line.as_bytes());
        self.output.extend_from_slice(b"\r\n");
    }

    async fn flush(&mut self, timeout: Duration) -> Result<(), Stop> {
        if self.output.is_empty() {
            return Ok(());
        }
        let write = async {
            self.io.write_all(&self.output).await?;
            self.io.flush().await
        };
        match tokio::time::timeout(timeout, write).await {
            Ok(r) => r?,
            Err(_) => return Err(Stop::Timeout),
        }
        self.output.clear();
        if self.output.capacity() > MAX_PENDING_OUTPUT {
            // A burst of replies (a long EHLO, pipelined errors) should not stay allocated while idle.
            self.output = Vec::new();
        }
        Ok(())
    }

    /// Reads more input, first writing what is queued (the client may be waiting for it before it sends
    /// more). Fails on timeout, shutdown or a closed connection.
    async fn fill(&mut self, timeout: Duration) -> Result<(), Stop> {
        self.flush(self.write_timeout).await?;
        if self.input.capacity() - self.input.len() < READ_CHUNK {
            self.input.reserve(READ_CHUNK);
        }
        let n = tokio::select! {
            r = self.io.read_buf(&mut self.input) => r?,
            () = tokio::time::sleep(timeout) => return Err(Stop::Timeout),
            () = self.shutdown.cancelled() => return Err(Stop::Shutdown),
        };
        if n == 0 {
            return Err(Stop::PeerClosed);
        }
        Ok(())
    }

    /// The next command line. A line longer than `max_line` is dropped as it arrives (never buffered
    /// whole) and reported as [`Input::TooLong`] once its end is seen.
    async fn line(&mut self, timeout: Duration) -> Result<Input, Stop> {
        let max = self.max_line;
        loop {
            if let Some(lf) = self.input.iter().position(|&b| b == b'\n') {
                let mut line = self.input.split_to(lf + 1).to_vec();
                if std::mem::take(&mut self.skipping) || line.len() > max + 2 {
                    return Ok(Input::TooLong);
                }
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Input::Line(line));
            }
            if self.input.len() > max + 2 {
                // No end in sight within the limit: forget what came so far and keep only the fact.
                self.input.clear();
                self.skipping = true;
            }
            self.fill(timeout).await?;
        }
    }
}

/// The mail transaction between `MAIL` and the end of the message.
struct Transaction {
    /// The reverse-path as given (empty for bounces).
    sender: String,
    /// Local accounts, lowercased, each once.
    local: Vec<String>,
    /// Recipients at other hosts (submission only).
    remote: Vec<String>,
    /// `BDAT` chunks so far.
    body: Vec<u8>,
    /// Whether a `BDAT` chunk went past the size limit (the rest is then counted, not kept).
    too_big: bool,
    /// Whether `BDAT` was used (then `DATA` is not allowed in the same transaction).
    chunking: bool,
}

impl Transaction {
    fn recipients(&self) -> usize {
        self.local.len() + self.remote.len()
    }
}

/// The protocol state of one session.
struct Session {
    ctx: Arc<Context>,
    peer: SocketAddr,
    mode: Mode,
    tls: bool,
    /// The name from `EHLO`/`HELO`; `None` until the client greets.
    helo: Option<String>,
    /// `EHLO` (not `HELO`): the `Received` header says `ESMTP`.
    esmtp: bool,
    /// The account signed in with `AUTH`.
    account: Option<String>,
    tx: Option<Transaction>,
    /// Failed commands so far; at `max_errors` the session is closed.
    errors: u32,
    /// Messages accepted, for the session's log line.
    accepted: u32,
}

/// Serves one connection (see [`super::serve`]).
pub(super) async fn serve<S>(stream: S, ctx: Arc<Context>, peer: SocketAddr, mode: Mode)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut session = Session {
        ctx,
        peer,
        mode,
        tls: false,
        helo: None,
        esmtp: false,
        account: None,
        tx: None,
        errors: 0,
        accepted: 0,
    };
    // The TLS part is boxed: a TLS connection's state is large, and a plain session should not carry
    // room for it while it waits for commands.
    let stop = match mode {
        Mode::Submissions => Box::pin(session.over_tls(stream, true)).await,
        Mode::Mx | Mode::Submission => match session
            .run(Conn::new(stream, &session.ctx), true, true)
            .await
        {
            End::StartTls(stream) => {
                // RFC 3207 §4.2: everything learned before TLS is forgotten, and nothing the client
                // sent before the handshake is carried over (the new `Conn` starts with empty buffers).
                session.helo = None;
                session.esmtp = false;
                session.account = None;
                session.tx = None;
                Box::pin(session.over_tls(stream, false)).await
            }
            End::Stopped(stop) => stop,
        },
    };
    let Session {
        account,
        accepted,
        errors,
        tls,
        ..
    } = &session;
    match &stop {
        Stop::Io(e) | Stop::Tls(e) => {
            tracing::info!(account = account.as_deref(), accepted, errors, tls, error = %e, "smtp session ended");
        }
        other => {
            tracing::info!(account = account.as_deref(), accepted, errors, tls, reason = ?other, "smtp session ended");
        }
    }
}

impl<S> End<S> {
    fn stop(stop: Stop) -> End<S> {
        End::Stopped(stop)
    }

    /// The reason the loop ended, for a loop that was not allowed to start TLS (so never asked to).
    fn into_stop(self) -> Stop {
        match self {
            End::Stopped(stop) => stop,
            End::StartTls(_) => Stop::Io(io::Error::other("STARTTLS inside TLS")),
        }
    }
}

/// What a command did to the session.
enum Flow {
    Continue,
    Close(Stop),
    StartTls,
}

impl Session {
    /// The TLS handshake (implicit TLS, or after `STARTTLS`), under the greeting deadline.
    async fn handshake<S>(&self, stream: S) -> Result<tokio_rustls::server::TlsStream<S>, Stop>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let accept = self.ctx.tls.accept(stream);
        tokio::select! {
            r = tokio::time::timeout(self.ctx.config.greeting_timeout(), accept) => match r {
                Ok(Ok(tls)) => Ok(tls),
                Ok(Err(e)) => Err(Stop::Tls(e)),
                Err(_) => Err(Stop::Timeout),
            },
            () = self.ctx.shutdown.cancelled() => Err(Stop::Shutdown),
        }
    }

    /// The TLS handshake, then the command loop over TLS (`greet`: implicit TLS, which starts with 220).
    async fn over_tls<S>(&mut self, stream: S, greet: bool) -> Stop
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        match self.handshake(stream).await {
            Ok(tls) => {
                self.tls = true;
                let conn = Conn::new(tls, &self.ctx);
                self.run(conn, greet, false).await.into_stop()
            }
            Err(stop) => stop,
        }
    }

    /// How long the client may take for its next command: short until it has done something useful.
    fn idle_timeout(&self) -> Duration {
        if self.account.is_some() || self.accepted > 0 || self.tx.is_some() {
            self.ctx.config.command_timeout()
        } else {
            self.ctx.config.greeting_timeout()
        }
    }

    /// The command loop over one stream.
    async fn run<S>(&mut self, mut conn: Conn<S>, greet: bool, can_starttls: bool) -> End<S>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if greet {
            conn.reply(&format!("220 {} ESMTP msgr", self.ctx.hostname));
        }
        loop {
            let flow = match conn.line(self.idle_timeout()).await {
                // Boxed: a command's future (a delivery, an AUTH exchange) is large and lives only while
                // the command runs, so an idle session does not carry its space.
                Ok(Input::Line(line)) => {
                    Box::pin(self.command(&mut conn, &line, can_starttls)).await
                }
                Ok(Input::TooLong) => {
                    self.error(&mut conn, "500 5.5.2 Error: line too long");
                    Flow::Continue
                }
                Err(stop) => Flow::Close(stop),
            };
            let flow = match flow {
                Flow::Continue if self.errors >= self.ctx.config.max_errors => {
                    conn.reply(&format!(
                        "421 4.7.0 {} Error: too many errors",
                        self.ctx.hostname
                    ));
                    Flow::Close(Stop::TooManyErrors)
                }
                other => other,
            };
            match flow {
                Flow::Continue => {
                    if conn.output.len() > MAX_PENDING_OUTPUT {
                        if let Err(stop) = conn.flush(self.ctx.config.command_timeout()).await {
                            return End::stop(stop);
                        }
                    }
                }
                Flow::StartTls => {
                    return match conn.flush(self.ctx.config.command_timeout()).await {
                        Ok(()) => End::StartTls(conn.io),
                        Err(stop) => End::stop(stop),
                    };
                }
                Flow::Close(stop) => {
                    match stop {
                        Stop::Timeout => conn.reply(&format!(
                            "421 4.4.2 {} Error: timeout exceeded",
                            self.ctx.hostname
                        )),
                        Stop::Shutdown => conn.reply(&format!(
                            "421 4.3.2 {} Service shutting down",
                            self.ctx.hostname
                        )),
                        _ => {}
                    }
                    // The goodbye is best effort: the peer may be gone already.
                    let _ = conn.flush(Duration::from_secs(1)).await;
                    let _ = conn.io.shutdown().await;
                    return End::stop(stop);
                }
            }
        }
    }

    /// A failure reply, counted against `max_errors`.
    fn error<S>(&mut self, conn: &mut Conn<S>, line: &str)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.errors += 1;
        conn.reply(line);
    }

    async fn command<S>(&mut self, conn: &mut Conn<S>, line: &[u8], can_starttls: bool) -> Flow
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let cmd = match command::parse(line) {
            Ok(cmd) => cmd,
            Err(e) => {
                let reply = match e {
                    ParseError::Unknown => "500 5.5.2 Error: command not recognized".to_owned(),
                    ParseError::Syntax(s) => format!("501 5.5.4 Syntax: {s}"),
                    ParseError::BadSender => "501 5.1.7 Bad sender address syntax".to_owned(),
                    ParseError::BadRecipient => "501 5.1.3 Bad recipient address syntax".to_owned(),
                    ParseError::BadParameter(p) => {
                        format!("555 5.5.4 Unsupported parameter {}", printable(&p))
                    }
                };
                self.error(conn, &reply);
                return Flow::Continue;
            }
        };
        match cmd {
            Command::Ehlo(host) => self.ehlo(conn, host, can_starttls),
            Command::Helo(host) => {
                self.helo = Some(host);
                self.esmtp = false;
                self.tx = None;
                conn.reply(&format!("250 {}", self.ctx.hostname));
            }
            Command::Mail(from) => self.mail(conn, from),
            Command::Rcpt(to) => self.rcpt(conn, to).await,
            Command::Data => return self.data(conn).await,
            Command::Bdat { size, last } => return self.bdat(conn, size, last).await,
            Command::Rset => {
                self.tx = None;
                conn.reply("250 2.0.0 Ok");
            }
            Command::Noop => conn.reply("250 2.0.0 Ok"),
            // RFC 5321 §3.5.3: 252 says "cannot verify, but will try to deliver", and tells an address
            // harvester nothing.
            Command::Vrfy => conn.reply("252 2.0.0 Cannot VRFY user, but will accept message"),
            Command::Expn => self.error(conn, "502 5.5.1 Error: EXPN not available"),
            Command::Help => conn.reply("214 2.0.0 See RFC 5321"),
            Command::Quit => {
                conn.reply("221 2.0.0 Bye");
                return Flow::Close(Stop::Quit);
            }
            Command::StartTls => {
                if self.tls || !can_starttls {
                    self.error(conn, "503 5.5.1 Error: TLS already active");
                } else {
                    conn.reply("220 2.0.0 Ready to start TLS");
                    return Flow::StartTls;
                }
            }
            Command::Auth { mechanism, initial } => {
                return self.auth(conn, mechanism, initial).await;
            }
            Command::NotImplemented(_) => {
                self.error(conn, "502 5.5.1 Error: command not implemented")
            }
        }
        Flow::Continue
    }

    fn ehlo<S>(&mut self, conn: &mut Conn<S>, host: String, can_starttls: bool)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.helo = Some(host);
        self.esmtp = true;
        self.tx = None;
        let mut lines = vec![
            self.ctx.hostname.clone(),
            "PIPELINING".to_owned(),
            format!("SIZE {}", self.ctx.config.max_message_bytes),
            "8BITMIME".to_owned(),
            "SMTPUTF8".to_owned(),
            "CHUNKING".to_owned(),
            "ENHANCEDSTATUSCODES".to_owned(),
        ];
        if !self.tls && can_starttls {
            lines.push("STARTTLS".to_owned());
        }
        // AUTH is offered only where it may be used: submission, over TLS unless plaintext is allowed
        // (RFC 4954 §4: a client must not be led to send a password in the clear).
        if self.mode.is_submission()
            && self.account.is_none()
            && (self.tls || self.ctx.config.allow_plaintext_auth)
        {
            lines.push("AUTH PLAIN LOGIN".to_owned());
        }
        let last = lines.len() - 1;
        for (i, l) in lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            conn.reply(&format!("250{sep}{l}"));
        }
    }

    fn mail<S>(&mut self, conn: &mut Conn<S>, from: MailFrom)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if self.helo.is_none() {
            return self.error(conn, "503 5.5.1 Error: send HELO/EHLO first");
        }
        if self.tx.is_some() {
            return self.error(conn, "503 5.5.1 Error: nested MAIL command");
        }
        if self.mode.is_submission() && self.account.is_none() {
            return self.error(conn, "530 5.7.0 Authentication required");
        }
        let limit = self.ctx.config.max_message_bytes;
        if from.size as u64 > limit {
            return self.error(conn, "552 5.3.4 Message size exceeds fixed limit");
        }
        if let Some(account) = &self.account {
            // Submission: an account sends as itself only (RFC 6409 §4.3), never as `<>`.
            if !from.address.eq_ignore_ascii_case(account) {
                return self.error(
                    conn,
                    &format!(
                        "553 5.7.1 <{}>: Sender address rejected: not owned by user {account}",
                        printable(&from.address)
                    ),
                );
            }
        }
        self.tx = Some(Transaction {
            sender: from.address,
            local: Vec::new(),
            remote: Vec::new(),
            body: Vec::new(),
            too_big: false,
            chunking: false,
        });
        conn.reply("250 2.1.0 Ok");
    }

    async fn rcpt<S>(&mut self, conn: &mut Conn<S>, to: String)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let Some(tx) = &self.tx else {
            return self.error(conn, "503 5.5.1 Error: need MAIL command");
        };
        if tx.recipients() >= self.ctx.config.max_recipients {
            return self.error(conn, "452 4.5.3 Error: too many recipients");
        }
        let shown = printable(&to);
        match self.ctx.route(&to, self.account.is_some()).await {
            Ok(Route::Local(account)) => {
                if self.account.is_none()
                    && self.ctx.config.greylisting
                    && self.greylisted(&account).await
                {
                    return conn.reply(&format!(
                        "451 4.7.1 <{shown}>: Recipient address rejected: greylisted, try again later"
                    ));
                }
                if let Some(tx) = &mut self.tx {
                    if !tx.local.contains(&account) {
                        tx.local.push(account);
                    }
                }
                conn.reply("250 2.1.5 Ok");
            }
            Ok(Route::Remote) => {
                if let Some(tx) = &mut self.tx {
                    tx.remote.push(to);
                }
                conn.reply("250 2.1.5 Ok");
            }
            Err(RouteError::BadSyntax) => {
                self.error(conn, "501 5.1.3 Bad recipient address syntax")
            }
            Err(RouteError::UnknownUser) => self.error(
                conn,
                &format!("550 5.1.1 <{shown}>: Recipient address rejected: User unknown"),
            ),
            // Never an open relay: only a signed-in account may send to other hosts.
            Err(RouteError::RelayDenied) => {
                self.error(conn, &format!("554 5.7.1 <{shown}>: Relay access denied"))
            }
            Err(RouteError::Lookup(e)) => {
                tracing::warn!(error = %e, "looking a recipient up failed");
                conn.reply("451 4.3.0 Error: temporary lookup failure");
            }
        }
    }

    /// Whether greylisting defers MX mail from this client and sender to `account` (see
    /// `[mail] greylisting`). A store failure lets the mail through: greylisting is a filter, not a gate.
    async fn greylisted(&self, account: &str) -> bool {
        let store = self.ctx.store.clone();
        let ip = self.peer.ip();
        let sender = self
            .tx
            .as_ref()
            .map(|t| t.sender.clone())
            .unwrap_or_default();
        let account = account.to_owned();
        let delay = self.ctx.config.greylist_delay_secs;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let task = tokio::task::spawn_blocking(move || {
            crate::spam::greylist(&store, ip, &sender, &account, now, delay)
        });
        match task.await {
            Ok(Ok(verdict)) => verdict == msgr_store::Greylist::Deferred,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "greylisting lookup failed; accepting");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "greylisting task failed; accepting");
                false
            }
        }
    }

    /// Whether a message may start now; replies with the reason if not.
    fn ready_for_message<S>(&mut self, conn: &mut Conn<S>) -> bool
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        match &self.tx {
            None => {
                self.error(conn, "503 5.5.1 Error: need MAIL command");
                false
            }
            Some(tx) if tx.recipients() == 0 => {
                self.error(conn, "554 5.5.1 Error: no valid recipients");
                false
            }
            Some(_) => true,
        }
    }

    async fn data<S>(&mut self, conn: &mut Conn<S>) -> Flow
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if !self.ready_for_message(conn) {
            return Flow::Continue;
        }
        if self.tx.as_ref().is_some_and(|tx| tx.chunking) {
            self.error(conn, "503 5.5.1 Error: DATA after BDAT");
            return Flow::Continue;
        }
        conn.reply("354 End data with <CR><LF>.<CR><LF>");
        let limit = usize::try_from(self.ctx.config.max_message_bytes).unwrap_or(usize::MAX);
        let mut decoder = DataDecoder::new(limit);
        let mut body = Vec::new();
        loop {
            let (used, done) = decoder.feed(&conn.input, &mut body);
            conn.input.advance(used);
            if done {
                break;
            }
            if let Err(stop) = conn.fill(self.ctx.config.command_timeout()).await {
                return Flow::Close(stop);
            }
        }
        self.finish(conn, body, decoder.too_big()).await
    }

    async fn bdat<S>(&mut self, conn: &mut Conn<S>, size: usize, last: bool) -> Flow
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        // RFC 3030: the chunk follows the command whatever the answer will be, so it is read (and dropped
        // if the transaction cannot take it) before replying.
        let ok = self.tx.as_ref().is_some_and(|tx| tx.recipients() > 0);
        let limit = usize::try_from(self.ctx.config.max_message_bytes).unwrap_or(usize::MAX);
        let mut left = size;
        while left > 0 {
            if conn.input.is_empty() {
                if let Err(stop) = conn.fill(self.ctx.config.command_timeout()).await {
                    return Flow::Close(stop);
                }
            }
            let n = left.min(conn.input.len());
            if let Some(tx) = self.tx.as_mut().filter(|_| ok) {
                let room = limit.saturating_sub(tx.body.len());
                if n > room {
                    tx.too_big = true;
                }
                if !tx.too_big {
                    tx.body.extend_from_slice(&conn.input[..n]);
                }
            }
            conn.input.advance(n);
            left -= n;
        }
        if !self.ready_for_message(conn) {
            return Flow::Continue;
        }
        let Some(tx) = self.tx.as_mut() else {
            return Flow::Continue;
        };
        tx.chunking = true;
        if !last {
            conn.reply(&format!("250 2.0.0 {size} octets received"));
            return Flow::Continue;
        }
        let body = std::mem::take(&mut tx.body);
        let too_big = tx.too_big;
        self.finish(conn, body, too_big).await
    }

    /// The message is complete: store it (and queue it for other hosts), then answer.
    async fn finish<S>(&mut self, conn: &mut Conn<S>, body: Vec<u8>, too_big: bool) -> Flow
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let Some(tx) = self.tx.take() else {
            return Flow::Continue;
        };
        if too_big {
            self.error(conn, "552 5.3.4 Message size exceeds fixed limit");
            return Flow::Continue;
        }
        let id = format!("{:016X}", rand::random::<u64>());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let body_len = body.len();
        let raw = self.trace_headers(&tx, &id, now, body);
        // Verdict headers go between our trace fields and the client's header, so `Return-Path` and
        // `Received` stay on top as RFC 5321 §4.4 has them.
        let (trace, message) = raw.split_at(raw.len() - body_len);
        let summary = mime::summarize(&raw);
        // Mail from strangers (the MX, no AUTH) is authenticated and judged; what signed-in users send
        // is theirs to send.
        let auth = match (&self.account, &self.ctx.sender_auth) {
            (None, Some(a)) => {
                let helo = self.helo.as_deref().unwrap_or("unknown");
                let check = a.check(self.peer.ip(), helo, &tx.sender, message);
                // DNS that does not answer must not hold the message past the client's patience
                // (RFC 5321 §4.5.3.2.6 gives it 10 minutes; senders are often less patient).
                match tokio::time::timeout(AUTH_DEADLINE, check).await {
                    Ok(verdict) => Some(verdict),
                    Err(_) => {
                        tracing::warn!(id, sender = %tx.sender, "sender authentication timed out; delivering without it");
                        None
                    }
                }
            }
            _ => None,
        };
        if let Some(a) = auth.as_ref().filter(|a| a.dmarc_reject) {
            tracing::info!(id, sender = %tx.sender, header = a.header.trim_end(), "dmarc p=reject failure");
            if self.ctx.config.dmarc_enforce {
                self.error(
                    conn,
                    "550 5.7.1 Message rejected: DMARC policy of the From domain (p=reject) failed",
                );
                return Flow::Continue;
            }
        }
        let extra = auth.as_ref().map(|a| a.hits.clone()).unwrap_or_default();
        // Mail from strangers meets each recipient's sender lists, then the spam filter.
        let verdicts = match &self.account {
            None if !tx.local.is_empty() => {
                let senders = crate::spam::Senders {
                    addresses: crate::spam::sender_addresses(&tx.sender, message),
                    from_forged: auth.as_ref().is_some_and(|a| a.dmarc_fail),
                };
                judge(&self.ctx, &raw, tx.local.clone(), now, senders, extra).await
            }
            _ => None,
        };
        let auth_header = auth.as_ref().map(|a| a.header.as_str()).unwrap_or("");
        // DMARC's quarantine (or an unenforced reject) sends the message to Junk even without the filter.
        let auth_junk = auth.as_ref().is_some_and(|a| a.dmarc_junk);
        // Recipients whose verdicts read the same share one stored copy of the bytes; the headers differ
        // only when users' own training differs.
        let mut groups: Vec<(String, Vec<LocalTarget>)> = Vec::new();
        let mut junked = 0usize;
        for (i, account) in tx.local.iter().enumerate() {
            let judgement = verdicts.as_ref().and_then(|v| v.get(i));
            let head = format!(
                "{auth_header}{}",
                judgement.map(|j| j.header_lines()).unwrap_or_default()
            );
            let spam = judgement.map_or(auth_junk, |j| j.is_junk(auth_junk));
            junked += usize::from(spam);
            let target = LocalTarget {
                account: account.clone(),
                // Never dropped: spam is kept where the user can look for a false positive.
                folder: FolderRef::Special(if spam {
                    SpecialUse::Junk
                } else {
                    SpecialUse::Inbox
                }),
                flags: Flags::empty(),
            };
            match groups.iter_mut().find(|(h, _)| *h == head) {
                Some((_, targets)) => targets.push(target),
                None => groups.push((head, vec![target])),
            }
        }
        let size = raw.len();
        let result = submit::store_message(
            &self.ctx,
            submit::Message {
                trace,
                message,
                summary,
                now,
                groups,
                account: self.account.as_deref(),
                sender: &tx.sender,
                remote: &tx.remote,
            },
        )
        .await;
        let recipients = tx.recipients();
        let account = self.account.as_deref();
        match result {
            Ok(_) => {
                self.accepted += 1;
                tracing::info!(id, account, sender = %tx.sender, recipients, size, junked, result = "stored", "smtp delivery");
                conn.reply(&format!("250 2.0.0 Ok: queued as {id}"));
            }
            Err(e) => {
                tracing::info!(id, account, sender = %tx.sender, recipients, size, result = %e, "smtp delivery");
                match e {
                    e if e.is_over_quota() => {
                        self.error(conn, "552 5.2.2 Mailbox full");
                    }
                    DeliverError::Store(StoreError::AccountNotFound(_)) => {
                        self.error(conn, "550 5.1.1 Recipient address rejected: User unknown");
                    }
                    DeliverError::ShuttingDown => return Flow::Close(Stop::Shutdown),
                    _ => conn.reply("451 4.3.0 Error: queue file write error"),
                }
            }
        }
        Flow::Continue
    }

    /// `Return-Path` and `Received` (RFC 5321 §4.4) in front of the client's message ([`submit::trace_headers`]).
    fn trace_headers(&self, tx: &Transaction, id: &str, now: i64, body: Vec<u8>) -> Vec<u8> {
        let helo = self.helo.as_deref().unwrap_or("unknown");
        let protocol = match (self.esmtp, self.tls, self.account.is_some()) {
            (false, _, _) => "SMTP",
            (true, false, false) => "ESMTP",
            (true, true, false) => "ESMTPS",
            (true, false, true) => "ESMTPA",
            (true, true, true) => "ESMTPSA",
        };
        let from = format!("{helo} ([{}])", self.peer.ip());
        let trace = submit::Trace {
            from: &from,
            protocol,
            id,
            now,
            complete: self.mode.is_submission(),
        };
        submit::trace_headers(&self.ctx, &tx.sender, !tx.remote.is_empty(), &trace, body)
    }

    async fn auth<S>(&mut self, conn: &mut Conn<S>, mechanism: u64, initial: String) -> Flow
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if !self.mode.is_submission() {
            self.error(conn, "502 5.5.1 Error: authentication not enabled");
            return Flow::Continue;
        }
        if self.account.is_some() {
            self.error(conn, "503 5.5.1 Error: already authenticated");
            return Flow::Continue;
        }
        if self.tx.is_some() {
            self.error(conn, "503 5.5.1 Error: MAIL transaction in progress");
            return Flow::Continue;
        }
        if !self.tls && !self.ctx.config.allow_plaintext_auth {
            self.error(
                conn,
                "538 5.7.11 Encryption required for requested authentication mechanism",
            );
            return Flow::Continue;
        }
        let credentials = match mechanism {
            smtp_proto::AUTH_PLAIN => {
                let response = if initial.is_empty() {
                    conn.reply("334 ");
                    match self.auth_response(conn).await {
                        Ok(r) => r,
                        Err(flow) => return flow,
                    }
                } else if initial == "=" {
                    // RFC 4954 §4: `=` is an empty initial response.
                    Some(Vec::new())
                } else {
                    decode64(initial.as_bytes())
                };
                response.and_then(|r| plain_credentials(&r))
            }
            smtp_proto::AUTH_LOGIN => {
                let user = if initial.is_empty() {
                    // "Username:" in base64, as every LOGIN server says it.
                    conn.reply("334 VXNlcm5hbWU6");
                    match self.auth_response(conn).await {
                        Ok(r) => r,
                        Err(flow) => return flow,
                    }
                } else {
                    decode64(initial.as_bytes())
                };
                let Some(user) = user else {
                    self.error(conn, "501 5.5.2 Error: cannot decode response");
                    return Flow::Continue;
                };
                conn.reply("334 UGFzc3dvcmQ6");
                let password = match self.auth_response(conn).await {
                    Ok(r) => r,
                    Err(flow) => return flow,
                };
                match (String::from_utf8(user), password.map(String::from_utf8)) {
                    (Ok(u), Some(Ok(p))) => Some((u, p)),
                    _ => None,
                }
            }
            _ => {
                self.error(conn, "504 5.5.4 Unrecognized authentication type");
                return Flow::Continue;
            }
        };
        let Some((user, password)) = credentials else {
            self.error(conn, "501 5.5.2 Error: cannot decode response");
            return Flow::Continue;
        };
        let checked = self.ctx.auth.check_from(&user, &password, self.peer.ip());
        match checked.await {
            Ok(Some(account)) => {
                tracing::info!(account, "smtp authenticated");
                self.account = Some(account);
                conn.reply("235 2.7.0 Authentication successful");
            }
            Ok(None) => {
                tracing::info!(user = %printable(&user), "smtp authentication failed");
                self.error(conn, "535 5.7.8 Error: authentication failed");
            }
            Err(e) => {
                tracing::warn!(error = %e, "smtp authentication unavailable");
                conn.reply("454 4.7.0 Temporary authentication failure");
            }
        }
        Flow::Continue
    }

    /// One client line during `AUTH`, base64-decoded. `Ok(None)` for undecodable input; `Err` with what
    /// to do when the client cancelled (`*`) or the connection ended.
    async fn auth_response<S>(&mut self, conn: &mut Conn<S>) -> Result<Option<Vec<u8>>, Flow>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        match conn.line(self.ctx.config.command_timeout()).await {
            Ok(Input::Line(line)) if line == b"*" => {
                self.error(conn, "501 5.7.0 Authentication cancelled");
                Err(Flow::Continue)
            }
            Ok(Input::Line(line)) => Ok(decode64(&line)),
            Ok(Input::TooLong) => {
                self.error(conn, "500 5.5.2 Error: line too long");
                Err(Flow::Continue)
            }
            Err(stop) => Err(Flow::Close(stop)),
        }
    }
}

/// The sender lists' decision and the spam verdict for each local recipient, computed on the blocking pool
/// (it reads each recipient's lists and training and parses the whole message). `None` if the task
/// failed: the message is then delivered unjudged rather than refused for a fault of ours.
async fn judge(
    ctx: &Context,
    raw: &[u8],
    recipients: Vec<String>,
    now: i64,
    senders: crate::spam::Senders,
    extra: Vec<msgr_spam::Hit>,
) -> Option<Vec<crate::spam::Judgement>> {
    let raw = raw.to_vec();
    let (filter, store) = (ctx.spam.clone(), ctx.store.clone());
    let task = tokio::task::spawn_blocking(move || {
        crate::spam::judge(
            filter.as_deref(),
            &store,
            &raw,
            now,
            &recipients,
            &senders,
            &extra,
        )
    });
    match task.await {
        Ok(verdicts) => Some(verdicts),
        Err(e) => {
            tracing::warn!(error = %e, "spam scoring failed; delivering unjudged");
            None
        }
    }
}

fn decode64(data: &[u8]) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(data.trim_ascii())
        .ok()
}

/// RFC 4616: `authzid NUL authcid NUL password`. An authorization identity other than the account itself
/// is refused (nobody may act for someone else).
fn plain_credentials(response: &[u8]) -> Option<(String, String)> {
    let mut parts = response.split(|&b| b == 0);
    let (authz, user, password) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || user.is_empty() {
        return None;
    }
    if !authz.is_empty() && !authz.eq_ignore_ascii_case(user) {
        return None;
    }
    Some((
        String::from_utf8(user.to_vec()).ok()?,
        String::from_utf8(password.to_vec()).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::testing;
    use crate::MailConfig;
    use msgr_store::MailStore;

    /// A 10 MB line is thrown away as it arrives: the input buffer stays within twice the line limit
    /// and a read (`BytesMut` grows by doubling), and the next line is read normally.
    #[tokio::test]
    async fn ten_megabyte_line_is_never_buffered() {
        let t = testing::context(MailConfig::default());
        let (client, server) = tokio::io::duplex(64 * 1024);
        let writer = tokio::spawn(async move {
            let mut client = client;
            let chunk = vec![b'A'; 64 * 1024];
            for _ in 0..160 {
                client.write_all(&chunk).await?;
            }
            client.write_all(b"\r\nNOOP\r\n").await?;
            Ok::<_, io::Error>(client)
        });
        let mut conn = Conn::new(server, &t.ctx);
        let timeout = Duration::from_secs(5);
        assert!(matches!(conn.line(timeout).await, Ok(Input::TooLong)));
        assert!(
            conn.input.capacity() <= 2 * (t.ctx.config.max_line + 2 + READ_CHUNK),
            "input buffer grew to {}",
            conn.input.capacity()
        );
        match conn.line(timeout).await {
            Ok(Input::Line(l)) => assert_eq!(l, b"NOOP"),
            _ => panic!("expected the NOOP line"),
        }
        writer.await.unwrap().unwrap();
    }

    /// A client that says nothing hears `421 4.4.2` after the greeting timeout; one that has started a
    /// transaction gets the longer command timeout. (Paused time: the clock moves only when every task
    /// waits.)
    #[tokio::test(start_paused = true)]
    async fn idle_clients_hear_421_after_their_timeout() {
        use tokio::io::AsyncBufReadExt;
        let t = testing::context(MailConfig {
            greeting_timeout_secs: 60,
            command_timeout_secs: 300,
            ..MailConfig::default()
        });
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        for started in [false, true] {
            let (client, server) = tokio::io::duplex(4096);
            let session = tokio::spawn(super::serve(server, t.ctx.clone(), peer, Mode::Mx));
            let mut client = tokio::io::BufReader::new(client);
            let mut line = String::new();
            client.read_line(&mut line).await.unwrap();
            assert_eq!(line, "220 localhost ESMTP msgr\r\n");
            if started {
                client
                    .get_mut()
                    .write_all(b"HELO a\r\nMAIL FROM:<>\r\n")
                    .await
                    .unwrap();
                for expected in ["250 localhost\r\n", "250 2.1.0 Ok\r\n"] {
                    line.clear();
                    client.read_line(&mut line).await.unwrap();
                    assert_eq!(line, expected);
                }
            }
            let before = tokio::time::Instant::now();
            line.clear();
            client.read_line(&mut line).await.unwrap();
            assert_eq!(line, "421 4.4.2 localhost Error: timeout exceeded\r\n");
            let waited = before.elapsed().as_secs();
            assert_eq!(waited, if started { 300 } else { 60 });
            session.await.unwrap();
        }
    }

    /// A whole session fed in every chunk size gets the same replies, byte for byte: framing, pipelining,
    /// DATA's terminator and BDAT's counts do not depend on how TCP splits the input.
    #[tokio::test]
    async fn same_replies_for_every_chunking() {
        // Messages without From, To, Date or Message-ID are junk to the spam filter; this test is about
        // framing and counts Inbox deliveries, so the filter is off.
        let t = testing::context(MailConfig {
            spam: crate::config::SpamConfig {
                enabled: false,
                ..Default::default()
            },
            ..MailConfig::default()
        });
        let input: &[u8] = b"EHLO a.test\r\nMAIL FROM:<x@elsewhere.test> SIZE=100\r\n\
            RCPT TO:<alice@example.com>\r\nrcpt to: BOB@example.com\r\nRCPT TO:<nobody@example.com>\r\n\
            DATA\r\nSubject: t\r\n\r\n..dot\r\nbare\nlf\r\n.\r\n\
            MAIL FROM:<>\r\nRCPT TO:<bob@example.com>\r\nBDAT 7\r\nhello\r\nBDAT 0 LAST\r\n\
            BOGUS\r\nNOOP\r\nQUIT\r\n";
        let expected = "220 localhost ESMTP msgr\r\n\
            250-localhost\r\n250-PIPELINING\r\n250-SIZE 26214400\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n\
            250-CHUNKING\r\n250-ENHANCEDSTATUSCODES\r\n250 STARTTLS\r\n\
            250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n\
            550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown\r\n\
            354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as ID\r\n\
            250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 7 octets received\r\n250 2.0.0 Ok: queued as ID\r\n\
            500 5.5.2 Error: command not recognized\r\n250 2.0.0 Ok\r\n221 2.0.0 Bye\r\n";
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        let sizes = (1..=48).chain([100, 200, input.len()]);
        let runs = sizes.clone().count();
        for chunk in sizes {
            let (client, server) = tokio::io::duplex(64 * 1024);
            let session = tokio::spawn(super::serve(server, t.ctx.clone(), peer, Mode::Mx));
            let (mut rd, mut wr) = tokio::io::split(client);
            let writer = tokio::spawn(async move {
                for c in input.chunks(chunk) {
                    wr.write_all(c).await?;
                }
                Ok::<_, io::Error>(wr)
            });
            let mut out = Vec::new();
            rd.read_to_end(&mut out).await.unwrap();
            session.await.unwrap();
            let _ = writer.await.unwrap();
            let out = String::from_utf8(out).unwrap();
            let normalized: String = out
                .split_inclusive("\r\n")
                .map(|l| match l.split_once("queued as ") {
                    Some((head, _)) => format!("{head}queued as ID\r\n"),
                    None => l.to_owned(),
                })
                .collect();
            assert_eq!(normalized, expected, "chunks of {chunk}");
        }
        let store = &t.ctx.store;
        let bob = store.folder("bob@example.com", "INBOX").unwrap().unwrap();
        let messages = store.messages(bob.id).unwrap();
        assert_eq!(messages.len(), 2 * runs);
        let data = store.message_raw(bob.id, messages[0].uid).unwrap().unwrap();
        assert!(data.ends_with(b"\r\nSubject: t\r\n\r\n.dot\r\nbare\r\nlf\r\n"));
        let bdat = store.message_raw(bob.id, messages[1].uid).unwrap().unwrap();
        assert!(bdat.starts_with(b"Return-Path: <>\r\nReceived: from a.test ([127.0.0.1])"));
        assert!(bdat.ends_with(b"+0000\r\nhello\r\n"));
    }

    /// What an idle session costs: the connection task's future before its first command (commands run
    /// boxed, so their state is not part of it).
    #[tokio::test]
    async fn idle_session_future_is_small() {
        let t = testing::context(MailConfig::default());
        let (_client, server) = tokio::io::duplex(1024);
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        let plain = super::serve(server, t.ctx.clone(), peer, Mode::Mx);
        let size = std::mem::size_of_val(&plain);
        assert!(size <= 2048, "an SMTP session future takes {size} bytes");
    }

    #[test]
    fn header_fields() {
        use crate::submit::{has_field, header_section};
        let msg = b"Subject: x\r\nDATE : today\r\n\r\nMessage-ID: <not a header>\r\n";
        let head = header_section(msg);
        assert!(has_field(head, b"date"));
        assert!(has_field(head, b"subject"));
        assert!(!has_field(head, b"message-id"));
        assert!(!has_field(header_section(b"\r\nDate: body\r\n"), b"date"));
        assert!(has_field(header_section(b"Date: x\nSubject: y"), b"date"));
        assert!(!has_field(b"Dated: x", b"date"));
    }

    #[test]
    fn plain() {
        assert_eq!(
            plain_credentials(b"\0alice@example.com\0secret"),
            Some(("alice@example.com".into(), "secret".into()))
        );
        assert_eq!(
            plain_credentials(b"alice@example.com\0alice@example.com\0pw"),
            Some(("alice@example.com".into(), "pw".into()))
        );
        assert_eq!(plain_credentials(b"bob@x\0alice@example.com\0pw"), None);
        assert_eq!(plain_credentials(b"\0\0pw"), None);
        assert_eq!(plain_credentials(b"no nuls"), None);
        assert_eq!(plain_credentials(b"\0a\0b\0c"), None);
    }
}
