//! The Notification Server session: one per client connection that starts with `VER`.
//!
//! A session is an explicit state machine (`Negotiating → Authenticating → Online`) that
//! turns frames into replies written to an output buffer. It never owns a socket: the TCP
//! listener (and later the HTTP gateway) feeds it frames and events and flushes what it
//! wrote, so every transport shares one implementation of every command.
//!
//! Each command lives in its own module with its dialect table next to it; this module only
//! routes a command name to its handler and knows which state each command needs.

mod bpr;
mod chl;
mod cvr;
mod gcf;
mod lists;
mod presence;
mod syn;
mod usr;
mod ver;
mod xfr;

use crate::queue;
use bytes::BytesMut;
use msgr_proto::frame::{write_line, Frame, FrameError, TrId};
use msgr_proto::{Dialect, ErrorCode};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::hub::{Event, KickReason, SessionHandle, UserState};
use crate::msnp::{ListenerRole, Transport};
use crate::Shared;

/// How far away the idle deadline of an online gateway session is: in effect never (the
/// gateway expires idle sessions itself), yet small enough for any timer.
const NO_IDLE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// What the transport should do after a frame or event has been handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Flush what has been written, then close the connection.
    Close,
    /// Close like `Close`, because the client broke a rule of its transport (`PNG` over the
    /// HTTP gateway): the transport reports it its own way (an HTTP error).
    Refuse,
}

/// Where a session is in its life.
#[derive(Debug)]
enum State {
    /// Waiting for `VER`.
    Negotiating,
    /// A dialect is agreed; `CVR`, `INF` and `USR` lead to a login.
    Authenticating {
        dialect: Dialect,
        pending: Option<usr::PendingLogin>,
    },
    /// Logged in as `email`.
    Online { dialect: Dialect, user: OnlineUser },
}

#[derive(Debug)]
struct OnlineUser {
    email: String,
    /// The challenge sent with `CHL` and not yet answered.
    challenge: Option<String>,
    /// The display name, decoded; `NLN`/`ILN`/`ADD 0 RL` carry it to others.
    name: String,
    /// The contact list and presence, shared with the hub so that other sessions can apply
    /// this user's privacy without a copy of it.
    state: std::sync::Arc<UserState>,
    /// Whether the first `CHG` has happened (and with it the `ILN` burst).
    announced: bool,
    /// Paces `CHG`, `REA` and `PRP` (800 when exhausted).
    changes: presence::TokenBucket,
}

pub struct NsSession {
    shared: Arc<Shared>,
    peer: SocketAddr,
    /// Whether this connection came in on a dispatch-only listener.
    role: ListenerRole,
    /// TCP or the HTTP gateway: the profile's `ClientPort`, `PNG` and the idle deadline
    /// differ.
    transport: Transport,
    id: u64,
    /// Handed to the hub at login so other sessions can reach this one.
    events: queue::Sender<Event>,
    state: State,
    /// When the session expires unless something resets it: the login deadline, then the
    /// idle deadline.
    deadline: Instant,
    /// Cancelled by the hub when this session cannot keep up with its events.
    kill: CancellationToken,
}

impl NsSession {
    pub fn new(
        shared: Arc<Shared>,
        peer: SocketAddr,
        role: ListenerRole,
        transport: Transport,
        events: queue::Sender<Event>,
    ) -> Self {
        let id = shared.hub.session_id();
        let deadline = Instant::now() + shared.config.limits.login_timeout();
        NsSession {
            shared,
            peer,
            role,
            transport,
            id,
            events,
            state: State::Negotiating,
            deadline,
            kill: CancellationToken::new(),
        }
    }

    /// Cancelled when the hub drops this session as a slow consumer; the transport closes the
    /// connection when it fires.
    pub fn kill_token(&self) -> CancellationToken {
        self.kill.clone()
    }

    /// The dialect agreed with `VER`, once there is one.
    pub fn dialect(&self) -> Option<Dialect> {
        match &self.state {
            State::Negotiating => None,
            State::Authenticating { dialect, .. } | State::Online { dialect, .. } => Some(*dialect),
        }
    }

    /// The account this session is logged in as.
    pub fn account(&self) -> Option<&str> {
        match &self.state {
            State::Online { user, .. } => Some(&user.email),
            _ => None,
        }
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The deadline after a command from an online client. Over TCP, silence beyond
    /// `idle_timeout_secs` means the peer is gone (clients ping every 50 s or so). Over the
    /// HTTP gateway there are no pings (`PNG` is not used there) and the client's polls never
    /// reach the session, so the gateway's own expiry of idle sessions takes that job.
    fn idle_deadline(&self) -> Instant {
        match self.transport {
            Transport::Tcp => Instant::now() + self.shared.config.limits.idle_timeout(),
            Transport::HttpGateway => Instant::now() + NO_IDLE_DEADLINE,
        }
    }

    /// Handles one frame from the client.
    pub async fn handle(&mut self, frame: Frame, out: &mut BytesMut) -> Flow {
        if matches!(self.state, State::Online { .. }) {
            self.deadline = self.idle_deadline();
        }
        let command = frame.command();
        if command.is_empty() {
            // Some clients send a stray CRLF (e.g. after a QRY payload); the official servers
            // ignored blank lines, so answering them would only confuse such clients.
            return Flow::Continue;
        }
        let trid = frame.trid();
        // Commands with a TrID must carry a well-formed one: without it there is nothing to
        // echo, so the reply uses 0, as the official servers did for garbage.
        let needs_trid = !msgr_proto::frame::client_command_without_trid(command);
        if needs_trid && trid.is_none() {
            tracing::debug!(peer = %self.peer, line = frame.line(), "missing or bad TrID");
            error(out, ErrorCode::SyntaxError, TrId(0));
            return Flow::Continue;
        }
        let trid = trid.unwrap_or_default();
        match command {
            "VER" => self.ver(&frame, trid, out),
            "CVR" => self.cvr(&frame, trid, out),
            "INF" => self.inf(trid, out),
            "USR" => self.usr(&frame, trid, out).await,
            "PNG" => self.png(out),
            "QRY" => self.qry(&frame, trid, out),
            "OUT" => Flow::Close,
            "SYN" | "LST" | "LSG" | "CHG" | "ADD" | "ADC" | "REM" | "ADG" | "RMG" | "REG"
            | "GTC" | "BLP" | "PRP" | "REA" | "UUX" | "XFR" | "GCF"
                if matches!(self.state, State::Online { .. }) =>
            {
                self.online_command(command, &frame, trid, out).await
            }
            _ if is_known_ns_command(command) => {
                if matches!(self.state, State::Online { .. }) {
                    // Known to the protocol but not served by this build yet.
                    tracing::info!(peer = %self.peer, command, "command not implemented");
                    error(out, ErrorCode::CommandDisabled, trid);
                } else {
                    error(out, ErrorCode::NotLoggedIn, trid);
                }
                Flow::Continue
            }
            _ => {
                tracing::debug!(peer = %self.peer, command, "unknown command");
                error(out, ErrorCode::SyntaxError, trid);
                Flow::Continue
            }
        }
    }

    /// Handles a framing error: the protocol's error code where the stream can go on, a clean
    /// close where it cannot.
    pub fn frame_error(&mut self, err: &FrameError, out: &mut BytesMut) -> Flow {
        tracing::info!(peer = %self.peer, error = %err, "bad frame");
        answer_frame_error(err, out)
    }

    /// Handles an event the hub delivered.
    pub fn event(&mut self, event: Event, out: &mut BytesMut) -> Flow {
        match event {
            Event::Kick(reason) => {
                tracing::info!(peer = %self.peer, account = self.account(), reason = reason.out_param(), "session kicked");
                write_line(out, "OUT", None, &[reason.out_param()]);
                Flow::Close
            }
            // Until its first CHG a session hears no presence: the ILN burst at that CHG is
            // its snapshot, and anything earlier would arrive twice.
            Event::Presence(notice) => {
                if let State::Online { dialect, user } = &self.state {
                    if user.announced {
                        presence::write_notice(*dialect, &notice, out);
                    }
                }
                Flow::Continue
            }
            Event::PersonalMessage(pm) => {
                if let State::Online { dialect, user } = &self.state {
                    if user.announced {
                        presence::write_ubx(*dialect, &pm.from, pm.payload.as_deref(), out);
                    }
                }
                Flow::Continue
            }
            Event::ContactProperty(p) => {
                if let State::Online { dialect, user } = &self.state {
                    bpr::contact_changed(*dialect, user, p.notice.as_deref(), p.version, out);
                }
                Flow::Continue
            }
            Event::Ring(ring) => {
                if let State::Online { dialect, user } = &self.state {
                    xfr::ring(&self.shared, *dialect, user, &ring, out);
                }
                Flow::Continue
            }
            // Switchboard events go to switchboard connections only.
            Event::Switchboard(_) => Flow::Continue,
            Event::ListChanged(c) => {
                if let State::Online { dialect, user } = &self.state {
                    lists::peer_change(*dialect, user, &c.change, c.version, out);
                }
                Flow::Continue
            }
        }
    }

    /// The server is shutting down: say goodbye the protocol's way.
    pub fn shutdown(&mut self, out: &mut BytesMut) {
        if !matches!(self.state, State::Negotiating) {
            write_line(out, "OUT", None, &[KickReason::ServerShutdown.out_param()]);
        }
    }

    /// `PNG` → `QNG`. From MSNP9 on, `QNG` tells the client how many seconds to wait before
    /// the next ping.
    ///
    /// | dialect | reply |
    /// |---|---|
    /// | MSNP2–MSNP8 | `QNG` |
    /// | MSNP9–MSNP12 | `QNG seconds` |
    ///
    /// Over the HTTP gateway the client's polls keep the session alive and `PNG` is not part
    /// of the protocol: the official gateway answered it with an HTTP error and ended the
    /// session (hypothetic.org, "HTTP connections"), and so does this one.
    fn png(&mut self, out: &mut BytesMut) -> Flow {
        if self.transport == Transport::HttpGateway {
            tracing::info!(peer = %self.peer, account = self.account(), "PNG over the HTTP gateway: session ended");
            return Flow::Refuse;
        }
        match self.dialect() {
            Some(d) if d >= Dialect::Msnp9 => write_line(out, "QNG", None, &["50"]),
            _ => write_line(out, "QNG", None, &[]),
        }
        Flow::Continue
    }

    /// `INF` asks which security package to use; only MSNP2–MSNP7 have it (always MD5).
    fn inf(&mut self, trid: TrId, out: &mut BytesMut) -> Flow {
        match self.dialect() {
            Some(d) if d < Dialect::Msnp8 => {
                write_line(out, "INF", Some(trid), &["MD5"]);
            }
            Some(_) => error(out, ErrorCode::SyntaxError, trid),
            None => error(out, ErrorCode::NotExpected, trid),
        }
        Flow::Continue
    }

    fn hub_handle(&self, state: std::sync::Arc<UserState>) -> SessionHandle {
        SessionHandle {
            id: self.id,
            events: self.events.clone(),
            kill: self.kill.clone(),
            state,
        }
    }

    /// Routes the commands that need a logged-in session and the user's lists.
    async fn online_command(
        &mut self,
        command: &str,
        frame: &Frame,
        trid: TrId,
        out: &mut BytesMut,
    ) -> Flow {
        if let State::Online { dialect, .. } = &self.state {
            if !has_command(*dialect, command) {
                error(out, ErrorCode::SyntaxError, trid);
                return Flow::Continue;
            }
        }
        match command {
            "SYN" => self.syn(frame, trid, out).await,
            "LST" => self.lst(frame, trid, out),
            "LSG" => self.lsg(trid, out),
            "CHG" => self.chg(frame, trid, out),
            "XFR" => self.xfr(frame, trid, out),
            "GCF" => self.gcf(frame, trid, out),
            _ => self.list_command(command, frame, trid, out).await,
        }
    }
}

/// Which dialects have which command of a signed-in session; one missing from its dialect is
/// 200, as an unknown command is.
fn has_command(dialect: Dialect, command: &str) -> bool {
    match command {
        "ADD" | "REA" => dialect < Dialect::Msnp10,
        "ADC" => dialect >= Dialect::Msnp10,
        "ADG" | "RMG" | "REG" => dialect >= Dialect::Msnp7,
        "PRP" => dialect >= Dialect::Msnp5,
        "UUX" | "GCF" => dialect >= Dialect::Msnp11,
        _ => true,
    }
}

impl Drop for NsSession {
    fn drop(&mut self) {
        if let State::Online { user, .. } = &self.state {
            // Only the session still registered says goodbye: one replaced by a newer login
            // of the same account (OUT OTH) must not make watchers see a spurious FLN.
            if self.shared.hub.unregister(&user.email, self.id) {
                presence::announce_offline(&self.shared.hub, &user.state);
            }
            tracing::info!(peer = %self.peer, account = %user.email, "logged out");
        }
    }
}

/// The protocol's answer to a framing error, shared by NS and SB sessions: an error code
/// where the stream can go on (non-UTF-8 line 200, oversized payload 201), a clean close
/// where it cannot (unknown payload extent, over-long line).
pub(crate) fn answer_frame_error(err: &FrameError, out: &mut BytesMut) -> Flow {
    match err {
        FrameError::NotUtf8 { trid } => {
            error(out, ErrorCode::SyntaxError, trid.unwrap_or_default());
            Flow::Continue
        }
        FrameError::PayloadTooLarge { trid, .. } => {
            error(out, ErrorCode::InvalidParameter, trid.unwrap_or_default());
            Flow::Continue
        }
        FrameError::BadPayloadLength { trid, .. } => {
            error(out, ErrorCode::SyntaxError, trid.unwrap_or_default());
            Flow::Close
        }
        FrameError::LineTooLong { .. } => Flow::Close,
    }
}

/// Writes an error line: `code TrID`.
pub(crate) fn error(out: &mut BytesMut, code: ErrorCode, trid: TrId) {
    let code = code.code().to_string();
    write_line(out, &code, Some(trid), &[]);
}

/// Commands of the notification server that exist in some dialect; any other name is a
/// syntax error (200).
fn is_known_ns_command(command: &str) -> bool {
    matches!(
        command,
        "SYN"
            | "LST"
            | "LSG"
            | "CHG"
            | "ADD"
            | "ADC"
            | "REM"
            | "ADG"
            | "RMG"
            | "REG"
            | "GTC"
            | "BLP"
            | "PRP"
            | "SBP"
            | "REA"
            | "XFR"
            | "URL"
            | "UUX"
            | "SND"
            | "FND"
            | "BPR"
            | "PAG"
            | "GCF"
            | "SDC"
            | "IMS"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_table() {
        assert!(has_command(Dialect::Msnp9, "ADD"));
        assert!(!has_command(Dialect::Msnp10, "ADD"));
        assert!(!has_command(Dialect::Msnp9, "ADC"));
        assert!(!has_command(Dialect::Msnp6, "ADG"));
        assert!(!has_command(Dialect::Msnp4, "PRP"));
        assert!(!has_command(Dialect::Msnp10, "UUX"));
        assert!(has_command(Dialect::Msnp11, "UUX"));
        assert!(!has_command(Dialect::Msnp10, "REA"));
        assert!(!has_command(Dialect::Msnp10, "GCF"));
        assert!(has_command(Dialect::Msnp12, "GCF"));
    }
}
