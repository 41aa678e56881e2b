//! `XFR SB` (a new switchboard session for the caller) and `RNG` (an invitation to one), the
//! two ways from the NS to a switchboard. Both hand out a cookie bound to this user, this
//! dialect and (for `RNG`) that session; it is single-use and expires after
//! `sb_cookie_ttl_secs`.
//!
//! | dialect | client sends | server answers | invitation |
//! |---|---|---|---|
//! | MSNP2–MSNP12 | `XFR t SB` | `XFR t SB host:port CKI cookie` | `RNG sid host:port CKI cookie caller callername` |
//!
//! MSNP13 appends `U messenger.hotmail.com` to `RNG` and MSNP14 a direct-connect flag; both
//! are out of this server's range. `XFR SB` while hidden (or before the first `CHG`, when
//! nobody can see the user either) is 913; any other server type is 201; a full registry is
//! 600. One user's share is bounded: past its `XFR SB`/`CAL` budget (`sb_call_burst`, refilled
//! one per `sb_call_refill_secs`) `XFR SB` is 713 ("calling too rapidly"), and with
//! `sb_cookies_per_user` unused cookies or `sb_rooms_per_user` rooms open it is 714 ("too many
//! sessions"), the codes the official servers' error table has for these; both are logged.
//! Sources: yellows111 msnp-wiki (xfr, rng, error list), hypothetic.org, the seeds.

use bytes::BytesMut;
use msgr_core::presence::Status;
use msgr_proto::frame::{write_line, Frame, TrId};
use msgr_proto::{urlenc, Dialect, ErrorCode};

use super::{error, Flow, NsSession, OnlineUser, State};
use crate::hub::Ring;
use crate::sb::{Member, RegistryError};
use crate::Shared;

/// Who this user is in a switchboard, from its NS session.
fn member(user: &OnlineUser) -> Member {
    let presence = user.state.presence();
    Member {
        email: user.email.to_string(),
        name: urlenc::encode(&user.name).into_owned(),
        caps: presence.map(|p| p.caps).unwrap_or_default(),
    }
}

impl NsSession {
    pub(super) fn xfr(&mut self, frame: &Frame, trid: TrId, out: &mut BytesMut) -> Flow {
        let State::Online { dialect, user } = &self.state else {
            return Flow::Continue;
        };
        if frame.params().as_slice() != ["SB"] {
            error(out, ErrorCode::InvalidParameter, trid);
            return Flow::Continue;
        }
        let status = user.state.presence().map_or(Status::Hidden, |p| p.status);
        if let Err(code) = msgr_core::privacy::may_start_chat(status) {
            error(out, code, trid);
            return Flow::Continue;
        }
        if !self.shared.switchboards.take_call(&user.email) {
            error(out, ErrorCode::UserTooActive, trid);
            return Flow::Continue;
        }
        match self.shared.switchboards.issue(member(user), *dialect, None) {
            Ok(cookie) => write_line(
                out,
                "XFR",
                Some(trid),
                &["SB", &self.shared.public_msnp, "CKI", &cookie],
            ),
            Err(RegistryError::Full) => {
                tracing::warn!(account = %user.email, "XFR SB refused: switchboard registry full (600)");
                error(out, ErrorCode::ServerBusy, trid)
            }
            Err(RegistryError::TooManyForUser) => error(out, ErrorCode::TooManySessions, trid),
        }
        Flow::Continue
    }
}

/// A `CAL` reached this user: a cookie for that session, and `RNG` to the client.
pub(super) fn ring(
    shared: &Shared,
    dialect: Dialect,
    user: &OnlineUser,
    ring: &Ring,
    out: &mut BytesMut,
) {
    match shared
        .switchboards
        .issue(member(user), dialect, Some(ring.session))
    {
        Ok(cookie) => {
            let sid = ring.session.to_string();
            write_line(
                out,
                "RNG",
                None,
                &[
                    &sid,
                    &shared.public_msnp,
                    "CKI",
                    &cookie,
                    &ring.caller,
                    &ring.caller_name,
                ],
            );
        }
        Err(RegistryError::Full | RegistryError::TooManyForUser) => {
            tracing::warn!(account = %user.email, "switchboard cookies full: RNG dropped");
        }
    }
}
