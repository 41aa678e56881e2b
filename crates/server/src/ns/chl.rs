//! `CHL`/`QRY`: the server challenges the client to prove it is a known build.
//!
//! | dialect | server sends | client answers |
//! |---|---|---|
//! | MSNP2–MSNP7 | nothing | — |
//! | MSNP8–MSNP10 | `CHL 0 <digits>` after login | `QRY t <client-id> 32` + MD5(challenge + key) |
//! | MSNP11–MSNP12 | `CHL 0 <digits>` after login | `QRY t <product-id> 32` + the MSNP11 hash |
//!
//! A right answer gets `QRY t`; a wrong one, an unknown client ID or an unrequested `QRY`
//! gets `540 t` and the connection is closed.

use bytes::BytesMut;
use msgr_proto::challenge;
use msgr_proto::frame::{write_line, Frame, TrId};
use msgr_proto::{Dialect, ErrorCode};
use rand::Rng;

use super::{error, Flow, NsSession, OnlineUser, State};

/// Whether the server challenges clients of this dialect.
pub(super) fn challenges(dialect: Dialect) -> bool {
    dialect >= Dialect::Msnp8
}

impl NsSession {
    /// Sends `CHL 0 <challenge>` and remembers the challenge.
    pub(super) fn send_challenge(user: &mut OnlineUser, out: &mut BytesMut) {
        // Twenty decimal digits, like the official server's challenges.
        let n: u64 = rand::rng().random_range(10_000_000_000_000_000_000..=u64::MAX);
        let c = n.to_string();
        write_line(out, "CHL", Some(TrId(0)), &[&c]);
        user.challenge = Some(c.into_boxed_str());
    }

    pub(super) fn qry(&mut self, frame: &Frame, trid: TrId, out: &mut BytesMut) -> Flow {
        let State::Online { dialect, user } = &mut self.state else {
            error(out, ErrorCode::NotLoggedIn, trid);
            return Flow::Continue;
        };
        let params = frame.params();
        let answer = frame
            .payload()
            .and_then(|p| std::str::from_utf8(p).ok())
            .unwrap_or("");
        let ok = match (user.challenge.take(), params.first()) {
            (Some(c), Some(id)) => challenge::lookup(id).is_some_and(|client| {
                client.accepts(*dialect) && client.answer(&c).eq_ignore_ascii_case(answer.trim())
            }),
            _ => false,
        };
        if ok {
            write_line(out, "QRY", Some(trid), &[]);
            Flow::Continue
        } else {
            tracing::info!(peer = %self.peer, account = %user.email, client_id = params.first().copied().unwrap_or(""), "challenge failed");
            error(out, ErrorCode::ChallengeResponseFailed, trid);
            Flow::Close
        }
    }
}
