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
mod mail;
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
    /// The shared copy of the address ([`msgr_core::lists::Names`]), as the hub's key and the
    /// contacts' lists hold it: one word, no string of its own.
    email: msgr_core::lists::Name,
    /// The challenge sent with `CHL` and not yet answered. (Boxed strings here: every online
    /// user's session holds these, and a `String`'s capacity word is of no use to them.)
    challenge: Option<Box<str>>,
    /// The display name, decoded; `NLN`/`ILN`/`ADD 0 RL` carry it to others.
    name: Box<str>,
    /// The contact list and presence, shared with the hub so that other sessions can apply
    /// this user's privacy without a copy of it.
    state: std::sync::Arc<UserState>,
    /// Whether the first `CHG` has happened (and with it the `ILN` burst).
    announced: bool,
    /// Paces `CHG`, `REA` and `PRP` (800 when exhausted).
    changes: presence::TokenBucket,
    /// The unread mail counts told to the client; `None` when the server hosts no mail.
    mail: Option<mail::MailView>,
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
        }
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The connection's event queue, for a switchboard session that takes the connection over
    /// on its first command.
    pub fn events(&self) -> &queue::Sender<Event> {
        &self.events
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
            _ => match OnlineCommand::lookup(command) {
                Some(spec) => match &self.state {
                    State::Online { dialect, .. } if spec.exists_in(*dialect) => {
                        self.online_command(spec.command, command, &frame, trid, out)
                            .await
                    }
                    // A command outside its dialects is unknown there: 200, as the
                    // official servers answered.
                    State::Online { .. } => {
                        error(out, ErrorCode::SyntaxError, trid);
                        Flow::Continue
                    }
                    _ => {
                        error(out, ErrorCode::NotLoggedIn, trid);
                        Flow::Continue
                    }
                },
                None => {
                    tracing::debug!(peer = %self.peer, command, "unknown command");
                    error(out, ErrorCode::SyntaxError, trid);
                    Flow::Continue
                }
            },
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
            Event::Mail(notice) => {
                let root = crate::passport::site_root(&self.shared.dalogin);
                if let State::Online { user, .. } = &mut self.state {
                    if let Some(view) = &mut user.mail {
                        mail::render(&root, view, &notice, out);
                    }
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
            state,
        }
    }

    /// Runs a command of a signed-in session; [`OnlineCommand::lookup`] has checked that the
    /// session is online and the command exists in its dialect.
    async fn online_command(
        &mut self,
        cmd: OnlineCommand,
        name: &str,
        frame: &Frame,
        trid: TrId,
        out: &mut BytesMut,
    ) -> Flow {
        // One arm per command of the table: a name added to the table without a handler does
        // not compile, so no command can be "known" yet unanswered again.
        match cmd {
            OnlineCommand::Syn => self.syn(frame, trid, out).await,
            OnlineCommand::Lst => self.lst(frame, trid, out),
            OnlineCommand::Lsg => self.lsg(trid, out),
            OnlineCommand::Chg => self.chg(frame, trid, out),
            OnlineCommand::Xfr => self.xfr(frame, trid, out),
            OnlineCommand::Gcf => self.gcf(frame, trid, out),
            OnlineCommand::Url => self.url(frame, trid, out),
            OnlineCommand::Ims => self.ims(frame, trid, out),
            OnlineCommand::Add
            | OnlineCommand::Adc
            | OnlineCommand::Rem
            | OnlineCommand::Adg
            | OnlineCommand::Rmg
            | OnlineCommand::Reg
            | OnlineCommand::Gtc
            | OnlineCommand::Blp
            | OnlineCommand::Prp
            | OnlineCommand::Sbp
            | OnlineCommand::Rea
            | OnlineCommand::Uux => self.list_command(name, frame, trid, out).await,
            OnlineCommand::Declined(code) => {
                tracing::info!(peer = %self.peer, command = name, "command declined");
                error(out, code, trid);
                Flow::Continue
            }
        }
    }

    /// `IMS t ON|OFF` turns incoming switchboard invitations on or off; msgr acknowledges with
    /// `IMS t 0 ON|OFF` and keeps ringing (the setting is a client convenience, not privacy:
    /// `BLP` and the block list are).
    fn ims(&mut self, frame: &Frame, trid: TrId, out: &mut BytesMut) -> Flow {
        match frame.params().first() {
            Some(&mode) if mode == "ON" || mode == "OFF" => {
                write_line(out, "IMS", Some(trid), &["0", mode])
            }
            _ => error(out, ErrorCode::InvalidParameter, trid),
        }
        Flow::Continue
    }
}

/// The commands of a signed-in session, each with its handler: see [`OnlineCommand::TABLE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnlineCommand {
    Syn,
    Lst,
    Lsg,
    Chg,
    Add,
    Adc,
    Rem,
    Adg,
    Rmg,
    Reg,
    Gtc,
    Blp,
    Prp,
    Sbp,
    Rea,
    Uux,
    Xfr,
    Gcf,
    Url,
    Ims,
    /// A command of the protocol that msgr deliberately does not serve (it would e-mail or
    /// page someone outside the service); answered with this code, never silently.
    Declined(ErrorCode),
}

/// One row of the command table.
#[derive(Debug, Clone, Copy)]
struct CommandSpec {
    name: &'static str,
    command: OnlineCommand,
    /// The first and last dialect that have the command.
    from: Dialect,
    to: Dialect,
}

impl CommandSpec {
    fn exists_in(&self, dialect: Dialect) -> bool {
        (self.from..=self.to).contains(&dialect)
    }
}

const fn row(
    name: &'static str,
    command: OnlineCommand,
    from: Dialect,
    to: Dialect,
) -> CommandSpec {
    CommandSpec {
        name,
        command,
        from,
        to,
    }
}

impl OnlineCommand {
    /// Every command of a signed-in notification session: which dialects have it and what
    /// runs it. A name not here is 200 (unknown); one here but outside its dialects is 200
    /// too; one here before login is 302.
    const TABLE: &'static [CommandSpec] = {
        use Dialect::*;
        use OnlineCommand::*;
        &[
            row("SYN", Syn, Msnp2, Msnp12),
            row("LST", Lst, Msnp2, Msnp7),
            row("LSG", Lsg, Msnp7, Msnp7),
            row("CHG", Chg, Msnp2, Msnp12),
            row("ADD", Add, Msnp2, Msnp9),
            row("ADC", Adc, Msnp10, Msnp12),
            row("REM", Rem, Msnp2, Msnp12),
            row("ADG", Adg, Msnp7, Msnp12),
            row("RMG", Rmg, Msnp7, Msnp12),
            row("REG", Reg, Msnp7, Msnp12),
            row("GTC", Gtc, Msnp2, Msnp12),
            row("BLP", Blp, Msnp2, Msnp12),
            row("PRP", Prp, Msnp5, Msnp12),
            row("SBP", Sbp, Msnp10, Msnp12),
            row("REA", Rea, Msnp2, Msnp9),
            row("UUX", Uux, Msnp11, Msnp12),
            row("XFR", Xfr, Msnp2, Msnp12),
            row("GCF", Gcf, Msnp11, Msnp12),
            row("URL", Url, Msnp2, Msnp12),
            row("IMS", Ims, Msnp2, Msnp12),
            // Invitations by e-mail (SND, SDC), the member directory (FND) and pages to
            // phones (PAG) reach outside the service; 502 (command disabled) is what the
            // official servers answered once these were switched off.
            row("SND", Declined(ErrorCode::CommandDisabled), Msnp2, Msnp12),
            row("SDC", Declined(ErrorCode::CommandDisabled), Msnp5, Msnp12),
            row("FND", Declined(ErrorCode::CommandDisabled), Msnp2, Msnp9),
            row("PAG", Declined(ErrorCode::CommandDisabled), Msnp5, Msnp12),
        ]
    };

    fn lookup(name: &str) -> Option<CommandSpec> {
        Self::TABLE.iter().find(|s| s.name == name).copied()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn has(dialect: Dialect, name: &str) -> bool {
        OnlineCommand::lookup(name).is_some_and(|s| s.exists_in(dialect))
    }

    #[test]
    fn command_table() {
        assert!(has(Dialect::Msnp9, "ADD"));
        assert!(!has(Dialect::Msnp10, "ADD"));
        assert!(!has(Dialect::Msnp9, "ADC"));
        assert!(!has(Dialect::Msnp6, "ADG"));
        assert!(!has(Dialect::Msnp4, "PRP"));
        assert!(!has(Dialect::Msnp10, "UUX"));
        assert!(has(Dialect::Msnp11, "UUX"));
        assert!(!has(Dialect::Msnp10, "REA"));
        assert!(!has(Dialect::Msnp10, "GCF"));
        assert!(has(Dialect::Msnp12, "GCF"));
        assert!(!has(Dialect::Msnp9, "SBP"));
        for d in [Dialect::Msnp10, Dialect::Msnp11, Dialect::Msnp12] {
            assert!(has(d, "SBP"));
        }
        assert!(
            OnlineCommand::lookup("BPR").is_none(),
            "BPR is sent by the server only"
        );
    }

    /// Every online user's session holds one, inside its connection's task (whose size
    /// `msnp::tests::connection_task_stays_small` guards): it was 128 bytes with `String`s for
    /// the address, name and challenge and the bucket's copy of its configuration.
    #[test]
    fn an_online_user_stays_small() {
        assert!(std::mem::size_of::<OnlineUser>() <= 96);
    }

    #[test]
    fn table_names_are_unique() {
        let mut names: Vec<&str> = OnlineCommand::TABLE.iter().map(|s| s.name).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n);
    }
}
