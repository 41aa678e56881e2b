//! The switchboard session: one per connection whose first command is `USR t email cookie`
//! (the caller, with a cookie from `XFR SB`) or `ANS t email cookie sessionid` (a callee,
//! with a cookie from `RNG`). The connection has no `VER`: the cookie carries the dialect of
//! the NS session that asked for it, and that dialect decides the forms below.
//!
//! | command | MSNP2–MSNP11 | MSNP12 |
//! |---|---|---|
//! | `USR t email cookie` | `USR t OK email name` | as MSNP2 |
//! | `ANS t email cookie sid` | `IRO t i n email name` per other participant, then `ANS t OK` | `IRO t i n email name caps` |
//! | `CAL t email` | `CAL t RINGING sid`; callee's NS gets `RNG` | as MSNP2 |
//! | (someone joins) | `JOI email name` | `JOI email name caps` |
//! | (someone leaves) | `BYE email`; `BYE email 1` when the server removed them (idle, too slow) | as MSNP2 |
//! | `MSG t U\|N\|A len` | relayed as `MSG email name len`; `ACK t`/`NAK t` per mode | as MSNP2 |
//! | `MSG t D len` | MSNP9+ only (201 before): acknowledged like `A` | as MSNP9 |
//! | `OUT` | closes; the rest hear `BYE email` | as MSNP2 |
//!
//! Acknowledgements: `U` none; `N` `NAK` only when a recipient could not take the message;
//! `A` and `D` `ACK` when every recipient took it, else `NAK`. "Took it" means queued for a
//! participant's connection; a participant whose queue is full is dropped from the session
//! instead of being waited for. `application/x-msnmsgrp2p` goes only to its `P2P-Dest`.
//!
//! Errors: 911 bad, reused, expired or someone else's cookie (the connection closes); `CAL`
//! 208 not a Passport name, 215 someone already in the session (yourself included), 217
//! offline, hidden, blocking the caller or no such account (the official servers answered 217
//! for all of these, so privacy leaks nothing), 712 session full (configurable), 713 past the
//! caller's `XFR SB`/`CAL` budget (`sb_call_burst`); an `MSG`
//! payload over the codec's cap is 201 and skipped, the connection stays.
//! Sources: yellows111 msnp-wiki (usr, ans, iro, joi, bye, cal, msg), hypothetic.org (SB
//! messages), the seeds in `shared/seeds/`.

mod registry;

use crate::queue;
use bytes::{BufMut, Bytes, BytesMut};
use msgr_core::passport::Passport;
use msgr_core::presence::Status;
use msgr_proto::frame::{write_line, Frame, FrameError, TrId};
use msgr_proto::mime::MimeMessage;
use msgr_proto::{Dialect, ErrorCode};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::time::Instant;

pub use registry::{JoinError, Member, RegistryError, Switchboards};
use registry::{Room, Route};

use crate::hub::{Event, Ring};
use crate::ns::{answer_frame_error, error, Flow};
use crate::Shared;

/// Something that happened in a switchboard session, for one participant's connection.
#[derive(Debug, Clone)]
pub enum SbEvent {
    /// `JOI`.
    Joined(Arc<Member>),
    /// `BYE email[ 1]`.
    Left(Arc<Departure>),
    /// A complete `MSG email name len` frame with its payload, rendered once and shared by
    /// every recipient (relayed byte for byte whatever their dialect). Behind an `Arc` so the
    /// event stays two words (see `hub::PeerChange`).
    Message(Arc<Bytes>),
}

impl SbEvent {
    /// Bytes this event holds for a recipient's queue (see `queue::Weigh`): a relayed message
    /// counts its whole frame, payload included, for every recipient it is queued for.
    pub fn weight(&self) -> usize {
        match self {
            SbEvent::Message(frame) => frame.len(),
            SbEvent::Joined(_) | SbEvent::Left(_) => crate::hub::SMALL_EVENT_BYTES,
        }
    }
}

/// Who left a switchboard session, and whether the server dropped them (`BYE email 1`).
#[derive(Debug)]
pub struct Departure {
    pub email: String,
    pub timeout: bool,
}

/// Whether `frame`, as the first command of a connection, starts a switchboard session:
/// `USR t email cookie` (two parameters, unlike any NS `USR`) or `ANS`.
pub fn is_switchboard_login(frame: &Frame) -> bool {
    match frame.command() {
        "USR" => {
            let p = frame.params();
            p.len() == 2 && p[0].contains('@')
        }
        "ANS" => true,
        _ => false,
    }
}

/// A relayed message is the same bytes for every recipient, in any state: it may be written
/// to a recipient's socket by the sender's task (see `queue`). Everything else is rendered by
/// the recipient's session.
impl queue::Direct for Event {
    fn wire(&self) -> Option<&Bytes> {
        match self {
            Event::Switchboard(SbEvent::Message(frame)) => Some(frame),
            _ => None,
        }
    }

    fn rest(rest: Bytes) -> Self {
        Event::Switchboard(SbEvent::Message(Arc::new(rest)))
    }
}

enum State {
    /// Waiting for `USR` or `ANS`.
    Connecting,
    In {
        room: Arc<Room>,
        me: Arc<Member>,
        dialect: Dialect,
    },
}

pub struct SbSession {
    shared: Arc<Shared>,
    peer: SocketAddr,
    /// This connection's id in its room.
    id: u64,
    /// This connection's bounded queue: the room delivers to it without waiting.
    events: queue::Sender<Event>,
    state: State,
    deadline: Instant,
}

impl SbSession {
    /// A session on a connection whose queue is `events` (which the room kills to drop the
    /// participant when it is full).
    pub fn new(shared: Arc<Shared>, peer: SocketAddr, events: queue::Sender<Event>) -> Self {
        let deadline = Instant::now() + shared.config.limits.login_timeout();
        SbSession {
            id: shared.hub.session_id(),
            shared,
            peer,
            events,
            state: State::Connecting,
            deadline,
        }
    }

    /// The participant's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    pub fn account(&self) -> Option<&str> {
        match &self.state {
            State::In { me, .. } => Some(&me.email),
            State::Connecting => None,
        }
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    pub fn handle(&mut self, frame: Frame, out: &mut BytesMut) -> Flow {
        let command = frame.command();
        if command.is_empty() {
            return Flow::Continue;
        }
        if command == "OUT" {
            return Flow::Close;
        }
        let Some(trid) = frame.trid() else {
            error(out, ErrorCode::SyntaxError, TrId(0));
            return Flow::Continue;
        };
        if matches!(self.state, State::In { .. }) {
            self.deadline = Instant::now() + self.shared.config.limits.idle_timeout();
        }
        match (command, &self.state) {
            ("USR" | "ANS", State::Connecting) => self.login(&frame, trid, out),
            ("USR" | "ANS", State::In { .. }) => {
                error(out, ErrorCode::AlreadyLoggedIn, trid);
                Flow::Continue
            }
            ("CAL", State::In { .. }) => {
                self.cal(&frame, trid, out);
                Flow::Continue
            }
            ("MSG", State::In { .. }) => {
                self.msg(&frame, trid, out);
                Flow::Continue
            }
            (_, State::Connecting) => {
                error(out, ErrorCode::AuthenticationFailed, trid);
                Flow::Close
            }
            _ => {
                tracing::debug!(peer = %self.peer, command, "unknown switchboard command");
                error(out, ErrorCode::SyntaxError, trid);
                Flow::Continue
            }
        }
    }

    /// An oversized payload is skipped by the codec and answered 201; the session goes on.
    pub fn frame_error(&mut self, err: &FrameError, out: &mut BytesMut) -> Flow {
        tracing::info!(peer = %self.peer, error = %err, "bad switchboard frame");
        answer_frame_error(err, out)
    }

    pub fn event(&mut self, event: Event, out: &mut BytesMut) -> Flow {
        let State::In { dialect, .. } = &self.state else {
            return Flow::Continue;
        };
        match event {
            Event::Switchboard(SbEvent::Message(frame)) => out.put_slice(&frame),
            Event::Switchboard(SbEvent::Joined(m)) => {
                let caps = caps_param(*dialect, &m);
                let mut args = vec![m.email.as_str(), m.name.as_str()];
                args.extend(caps.as_deref());
                write_line(out, "JOI", None, &args);
            }
            Event::Switchboard(SbEvent::Left(d)) => {
                let email = d.email.as_str();
                let args: &[&str] = if d.timeout { &[email, "1"] } else { &[email] };
                write_line(out, "BYE", None, args);
            }
            // NS events never reach a switchboard connection.
            _ => {}
        }
        Flow::Continue
    }

    /// The server is going down: the switchboard has no goodbye of its own, so it just closes.
    pub fn shutdown(&mut self, _out: &mut BytesMut) {}

    /// The server ends this connection on its own (idle past its deadline, output not read):
    /// the others hear `BYE email 1` rather than the plain `BYE` of a participant who left.
    pub fn server_dropped(&mut self) {
        if let State::In { room, .. } = &self.state {
            self.shared.switchboards.leave(room, self.id, true);
        }
        self.state = State::Connecting;
    }

    /// `USR t email cookie` or `ANS t email cookie sid`.
    fn login(&mut self, frame: &Frame, trid: TrId, out: &mut BytesMut) -> Flow {
        let params = frame.params();
        let ans = frame.command() == "ANS";
        let sid = if ans {
            match params.get(2).and_then(|s| s.parse::<u32>().ok()) {
                Some(s) if params.len() == 3 => Some(s),
                _ => {
                    error(out, ErrorCode::AuthenticationFailed, trid);
                    return Flow::Close;
                }
            }
        } else {
            None
        };
        let (Some(email), Some(cookie)) = (params.first(), params.get(1)) else {
            error(out, ErrorCode::AuthenticationFailed, trid);
            return Flow::Close;
        };
        let sbs = &self.shared.switchboards;
        let Some(ticket) = sbs.redeem(cookie, email, sid) else {
            tracing::info!(peer = %self.peer, account = %email, "bad switchboard cookie");
            error(out, ErrorCode::AuthenticationFailed, trid);
            return Flow::Close;
        };
        let room = match sid {
            None => match sbs.create(&ticket.member.email) {
                Ok(r) => r,
                Err(RegistryError::Full | RegistryError::TooManyForUser) => {
                    error(out, ErrorCode::ServerBusy, trid);
                    return Flow::Close;
                }
            },
            Some(id) => match sbs.room(id) {
                Some(r) => r,
                None => {
                    error(out, ErrorCode::AuthenticationFailed, trid);
                    return Flow::Close;
                }
            },
        };
        let me = Arc::new(ticket.member);
        let dialect = ticket.dialect;
        let others = match sbs.join(&room, self.id, me.clone(), self.events.clone()) {
            Ok(o) => o,
            Err(JoinError::Ended) => {
                error(out, ErrorCode::AuthenticationFailed, trid);
                return Flow::Close;
            }
            Err(JoinError::Full) => {
                error(out, ErrorCode::SessionOverloaded, trid);
                return Flow::Close;
            }
        };
        if ans {
            let n = others.len().to_string();
            for (i, m) in others.iter().enumerate() {
                let i = (i + 1).to_string();
                let caps = caps_param(dialect, m);
                let mut args = vec![i.as_str(), n.as_str(), m.email.as_str(), m.name.as_str()];
                args.extend(caps.as_deref());
                write_line(out, "IRO", Some(trid), &args);
            }
            write_line(out, "ANS", Some(trid), &["OK"]);
        } else {
            write_line(out, "USR", Some(trid), &["OK", &me.email, &me.name]);
        }
        tracing::info!(peer = %self.peer, account = %me.email, room = room.id, "joined switchboard");
        self.deadline = Instant::now() + self.shared.config.limits.idle_timeout();
        self.state = State::In { room, me, dialect };
        Flow::Continue
    }

    /// `CAL t email`: checks, then asks the callee's NS session to ring it.
    fn cal(&mut self, frame: &Frame, trid: TrId, out: &mut BytesMut) {
        let State::In { room, me, .. } = &self.state else {
            return;
        };
        let sbs = &self.shared.switchboards;
        let params = frame.params();
        let callee = match params.as_slice() {
            [e] => match Passport::parse(e) {
                Ok(p) => p.as_str().to_ascii_lowercase(),
                Err(_) => return error(out, ErrorCode::InvalidPrincipal, trid),
            },
            _ => return error(out, ErrorCode::SyntaxError, trid),
        };
        if sbs.contains(room, &callee) {
            return error(out, ErrorCode::AlreadyInList, trid);
        }
        // `CAL` spends the caller's `XFR SB`/`CAL` budget (713 "calling too rapidly").
        if !sbs.take_call(&me.email) {
            return error(out, ErrorCode::UserTooActive, trid);
        }
        if sbs.len(room) >= sbs.max_participants {
            return error(out, ErrorCode::SessionOverloaded, trid);
        }
        let hub = &self.shared.hub;
        let Some(state) = hub.state(&callee) else {
            return error(out, ErrorCode::PrincipalNotOnline, trid);
        };
        // A caller whose NS connection is gone keeps its conversations (the switchboard does
        // not depend on the NS); it is judged as online then.
        let caller_status = hub
            .state(&me.email)
            .and_then(|s| s.presence())
            .map_or(Status::Online, |p| p.status);
        let callee_status = state.presence().map(|p| p.status);
        let verdict = {
            let list = state.list();
            msgr_core::privacy::check_invite(&me.email, caller_status, &list, callee_status)
        };
        if let Err(code) = verdict {
            return error(out, code, trid);
        }
        let ring = Event::Ring(Arc::new(Ring {
            session: room.id,
            caller: me.email.clone(),
            caller_name: me.name.clone(),
        }));
        if !hub.send(&callee, ring) {
            return error(out, ErrorCode::PrincipalNotOnline, trid);
        }
        let sid = room.id.to_string();
        write_line(out, "CAL", Some(trid), &["RINGING", &sid]);
    }

    /// `MSG t mode len` + payload.
    fn msg(&mut self, frame: &Frame, trid: TrId, out: &mut BytesMut) {
        let State::In { room, me, dialect } = &self.state else {
            return;
        };
        // `MSG t mode len`: the mode follows the TrID.
        let ack = match frame.args().nth(1) {
            Some("U") => Ack::None,
            Some("N") => Ack::Failure,
            Some("A") => Ack::Always,
            Some("D") if *dialect >= Dialect::Msnp9 => Ack::Always,
            _ => return error(out, ErrorCode::InvalidParameter, trid),
        };
        let payload = frame.payload().cloned().unwrap_or_default();
        // Only P2P data has a single recipient; anything unparsable is relayed to everyone,
        // unchanged, as the official switchboard did (it never looked inside text messages).
        // Most messages are text: only a payload whose header block names the P2P type is
        // parsed (it was every message, a third of the relay's work per message).
        let dest = (may_be_p2p(&payload))
            .then(|| MimeMessage::parse(&payload).ok())
            .flatten()
            .and_then(|m| {
                m.is_content_type("application/x-msnmsgrp2p")
                    .then(|| m.header("P2P-Dest").unwrap_or("").trim().to_owned())
            });
        let route = match &dest {
            Some(d) => Route::To(d),
            None => Route::All,
        };
        let len = payload.len().to_string();
        let mut rendered =
            BytesMut::with_capacity(payload.len() + me.email.len() + me.name.len() + 16);
        write_line(&mut rendered, "MSG", None, &[&me.email, &me.name, &len]);
        rendered.put_slice(&payload);
        let delivered = self
            .shared
            .switchboards
            .relay(room, self.id, route, rendered.freeze());
        match (ack, delivered) {
            (Ack::Always, true) => write_line(out, "ACK", Some(trid), &[]),
            (Ack::Always | Ack::Failure, false) => write_line(out, "NAK", Some(trid), &[]),
            _ => {}
        }
    }
}

impl Drop for SbSession {
    fn drop(&mut self) {
        if let State::In { room, me, .. } = &self.state {
            self.shared.switchboards.leave(room, self.id, false);
            tracing::info!(peer = %self.peer, account = %me.email, room = room.id, "left switchboard");
        }
    }
}

/// Whether `payload` may be `application/x-msnmsgrp2p`: a `Content-Type` line of its header
/// block (up to the first empty line) starts with that type, in any case. A cheap filter in
/// front of the MIME parse that decides (which reads the first such header, its value before
/// any `;`): it errs only towards parsing.
fn may_be_p2p(payload: &[u8]) -> bool {
    const NAME: &[u8] = b"content-type:";
    const P2P: &[u8] = b"application/x-msnmsgrp2p";
    for line in payload.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return false;
        }
        let Some(value) = line
            .get(..NAME.len())
            .filter(|name| name.eq_ignore_ascii_case(NAME))
            .and_then(|_| line.get(NAME.len()..))
        else {
            continue;
        };
        let start = value
            .iter()
            .position(|&b| b != b' ' && b != b'\t')
            .unwrap_or(value.len());
        if value
            .get(start..start + P2P.len())
            .is_some_and(|ty| ty.eq_ignore_ascii_case(P2P))
        {
            return true;
        }
    }
    false
}

#[derive(Debug, Clone, Copy)]
enum Ack {
    None,
    Failure,
    Always,
}

/// The capability parameter of `IRO`/`JOI` (MSNP12+): the base capabilities, as a number.
fn caps_param(dialect: Dialect, m: &Member) -> Option<String> {
    (dialect >= Dialect::Msnp12).then(|| m.caps.caps.0.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use msgr_core::presence::{Capabilities, ClientCaps};

    fn frame(line: &str) -> Frame {
        Frame::new(line.to_owned(), None).unwrap()
    }

    #[test]
    fn the_first_command_picks_the_switchboard() {
        assert!(is_switchboard_login(&frame("USR 1 a@x.com 123.456.789")));
        assert!(is_switchboard_login(&frame("ANS 1 a@x.com 123.456 42")));
        // The NS forms of USR, and everything else, stay with the NS.
        assert!(!is_switchboard_login(&frame("USR 3 TWN I a@x.com")));
        assert!(!is_switchboard_login(&frame("USR 3 MD5 I")));
        assert!(!is_switchboard_login(&frame("VER 1 MSNP8 CVR0")));
        assert!(!is_switchboard_login(&frame("")));
    }

    #[test]
    fn only_payloads_naming_p2p_are_parsed() {
        let p2p = b"MIME-Version: 1.0\r\nContent-Type: application/x-msnmsgrp2p\r\nP2P-Dest: b@x.com\r\n\r\nbin";
        assert!(may_be_p2p(p2p));
        assert!(may_be_p2p(b"content-type: APPLICATION/X-MSNMSGRP2P\n\n"));
        let text =
            b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nx-msnmsgrp2p";
        assert!(!may_be_p2p(text), "the body is not looked at");
        assert!(!may_be_p2p(b"X-Note: application/x-msnmsgrp2p\r\n\r\n"));
        assert!(may_be_p2p(
            b"Content-Type:\tapplication/x-msnmsgrp2p; x\r\n\r\n"
        ));
        assert!(!may_be_p2p(b""));
        assert!(!may_be_p2p(b"garbage without an empty line"));
    }

    #[test]
    fn capabilities_show_from_msnp12() {
        let m = Member {
            email: "a@x.com".into(),
            name: "A".into(),
            caps: ClientCaps {
                caps: Capabilities(1342177280),
                extended: Some(3),
            },
        };
        assert_eq!(caps_param(Dialect::Msnp11, &m), None);
        assert_eq!(
            caps_param(Dialect::Msnp12, &m).as_deref(),
            Some("1342177280")
        );
    }
}
