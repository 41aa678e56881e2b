//! Presence: `CHG` (the client sets its status), and how every watcher is told, each in its
//! own dialect, whatever the dialect of the user who changed.
//!
//! | dialect | client sends | reply | `ILN` (after the first `CHG`) | `NLN` to watchers | `UBX` |
//! |---|---|---|---|---|---|
//! | MSNP2–MSNP7 | `CHG t ST` | `CHG t ST` | `ILN t ST email name` | `NLN ST email name` | — |
//! | MSNP8 | `CHG t ST caps` | `CHG t ST caps` | `ILN t ST email name caps` | `NLN ST email name caps` | — |
//! | MSNP9–MSNP10 | `CHG t ST caps [obj]` | `CHG t ST caps[ obj]` | … `caps[ obj]` | … `caps[ obj]` | — |
//! | MSNP11 | as MSNP9 | as MSNP9 | as MSNP9 | as MSNP9 | `UBX email len` + payload |
//! | MSNP12 | `caps` may be `caps:extcaps` | echoed as sent | `caps:extcaps` as sent | `caps:extcaps` as sent | as MSNP11 |
//!
//! `FLN email` in every dialect when a watched user signs out, hides (`HDN`) or blocks the
//! watcher. `ST` is any of `NLN AWY BSY BRB PHN LUN IDL HDN`; `FLN` or anything else is 201, as
//! is a capability field that is not a number (or `caps:extcaps` before MSNP12). Capabilities
//! are optional before MSNP8 and ignored there; the MSN object (MSNP9+) is relayed exactly as
//! the client URL-encoded it. A watcher of an older dialect than the changer gets the older
//! form: no object before MSNP9, no capabilities before MSNP8, no extended capabilities before
//! MSNP12. `CHG`, `REA` and `PRP` share a token bucket; an empty one answers 800.

use bytes::BytesMut;
use msgr_core::lists::List;
use msgr_core::presence::{ClientCaps, Status};
use msgr_proto::frame::{write_line, write_payload, Frame, TrId};
use msgr_proto::{urlenc, Dialect, ErrorCode};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use super::{error, Flow, NsSession, State};
use crate::config::LimitsConfig;
use crate::hub::{Event, Hub, PresenceNotice, UserState};

/// Which parts of a presence line a dialect carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Form {
    caps: bool,
    extended_caps: bool,
    msnobj: bool,
    ubx: bool,
}

/// The table above, as data.
fn form(dialect: Dialect) -> Form {
    Form {
        caps: dialect >= Dialect::Msnp8,
        msnobj: dialect >= Dialect::Msnp9,
        ubx: dialect >= Dialect::Msnp11,
        extended_caps: dialect >= Dialect::Msnp12,
    }
}

/// The trailing `caps[ obj]` parameters of `notice` as `dialect` shows them.
fn tail(dialect: Dialect, caps: &ClientCaps, msnobj: Option<&str>) -> Vec<String> {
    let f = form(dialect);
    let mut t = Vec::new();
    if f.caps {
        t.push(if f.extended_caps {
            caps.to_string()
        } else {
            caps.caps.0.to_string()
        });
        if f.msnobj {
            if let Some(o) = msnobj {
                t.push(o.to_owned());
            }
        }
    }
    t
}

/// `NLN ST email name caps[ obj]`, or `FLN email` when the status is not visible.
pub(super) fn write_notice(dialect: Dialect, notice: &PresenceNotice, out: &mut BytesMut) {
    if !notice.status.is_visible() {
        write_line(out, "FLN", None, &[&notice.from]);
        return;
    }
    let tail = tail(dialect, &notice.caps, notice.msnobj.as_deref());
    let mut args: Vec<&str> = vec![notice.status.token(), &notice.from, &notice.name];
    args.extend(tail.iter().map(String::as_str));
    write_line(out, "NLN", None, &args);
}

/// `ILN t ST email name caps[ obj]` for a contact already online at the first `CHG`.
pub(super) fn write_iln(dialect: Dialect, trid: TrId, notice: &PresenceNotice, out: &mut BytesMut) {
    let tail = tail(dialect, &notice.caps, notice.msnobj.as_deref());
    let mut args: Vec<&str> = vec![notice.status.token(), &notice.from, &notice.name];
    args.extend(tail.iter().map(String::as_str));
    write_line(out, "ILN", Some(trid), &args);
}

/// `UBX email len` + payload (MSNP11+ only; older dialects have no personal messages).
pub(super) fn write_ubx(dialect: Dialect, from: &str, payload: Option<&str>, out: &mut BytesMut) {
    if form(dialect).ubx {
        write_payload(
            out,
            "UBX",
            None,
            &[from],
            payload.unwrap_or_default().as_bytes(),
        );
    }
}

/// Tells every watcher that the user of `state` is gone (sign-out, disconnect), if they could
/// see it.
pub(super) fn announce_offline(hub: &Hub, state: &UserState) {
    let Some(p) = state.presence() else { return };
    if !p.status.is_visible() {
        return;
    }
    let gone = PresenceNotice {
        status: Status::Offline,
        ..(*p).clone()
    };
    state.set_presence(None);
    hub.fan_out(state, &Event::Presence(Arc::new(gone)));
}

/// A token bucket pacing status, name and property changes. Its size and refill rate are the
/// configuration's (`change_burst`, `change_refill_secs`), read on each take rather than kept
/// in every online user's session.
#[derive(Debug)]
pub(super) struct TokenBucket {
    tokens: u32,
    last: Instant,
}

impl TokenBucket {
    pub(super) fn new(limits: &LimitsConfig) -> TokenBucket {
        TokenBucket {
            tokens: limits.change_burst,
            last: Instant::now(),
        }
    }

    /// Takes one token; `false` when the bucket is empty.
    pub(super) fn take(&mut self, limits: &LimitsConfig) -> bool {
        let now = Instant::now();
        let refill = Duration::from_secs(limits.change_refill_secs);
        if refill.is_zero() {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last);
        let earned = elapsed.as_nanos() / refill.as_nanos();
        if earned > 0 {
            let earned = u32::try_from(earned).unwrap_or(u32::MAX);
            self.tokens = self.tokens.saturating_add(earned).min(limits.change_burst);
            self.last = now;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

impl NsSession {
    pub(super) fn chg(&mut self, frame: &Frame, trid: TrId, out: &mut BytesMut) -> Flow {
        let State::Online { dialect, user } = &mut self.state else {
            error(out, ErrorCode::NotLoggedIn, trid);
            return Flow::Continue;
        };
        let dialect = *dialect;
        let params = frame.params();
        let status = match params.first().map(|t| Status::parse_client(t)) {
            Some(Ok(s)) => s,
            Some(Err(code)) => {
                error(out, code, trid);
                return Flow::Continue;
            }
            None => {
                error(out, ErrorCode::InvalidParameter, trid);
                return Flow::Continue;
            }
        };
        let f = form(dialect);
        let caps = match params.get(1).map(|c| c.parse::<ClientCaps>()) {
            None => ClientCaps::default(),
            Some(Ok(c)) if c.extended.is_none() || f.extended_caps => c,
            Some(_) => {
                error(out, ErrorCode::InvalidParameter, trid);
                return Flow::Continue;
            }
        };
        let caps = if f.caps { caps } else { ClientCaps::default() };
        let msnobj = params.get(2).filter(|_| f.msnobj).map(|o| (*o).to_owned());
        if !user.changes.take(&self.shared.config.limits) {
            error(out, ErrorCode::ChangingTooRapidly, trid);
            return Flow::Continue;
        }

        let notice = Arc::new(PresenceNotice {
            from: user.email.clone(),
            status,
            name: urlenc::encode(&user.name).into_owned(),
            caps,
            msnobj,
        });
        let previous = user.state.presence();
        user.state.set_presence(Some(notice.clone()));

        let mut args = vec![status.token().to_owned()];
        args.extend(tail(dialect, &notice.caps, notice.msnobj.as_deref()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        write_line(out, "CHG", Some(trid), &args);

        if !user.announced {
            user.announced = true;
            let forward: Vec<msgr_core::lists::Name> = user
                .state
                .list()
                .members(List::Forward)
                .map(|c| c.email.clone())
                .collect();
            let seen = self
                .shared
                .hub
                .visible_contacts(&user.email, forward.iter().map(|e| &**e));
            for (contact, _) in &seen {
                write_iln(dialect, trid, contact, out);
            }
            for (contact, psm) in &seen {
                if psm.is_some() {
                    write_ubx(dialect, &contact.from, psm.as_deref(), out);
                }
            }
        }

        // Hiding is an FLN to those who saw the user; staying hidden tells nobody anything.
        let was_visible = previous.is_some_and(|p| p.status.is_visible());
        if status.is_visible() || was_visible {
            self.shared
                .hub
                .fan_out(&user.state, &Event::Presence(notice));
        }
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use msgr_core::presence::Capabilities;

    fn notice(status: Status, ext: Option<u32>, obj: Option<&str>) -> PresenceNotice {
        PresenceNotice {
            from: "bob@x.com".into(),
            status,
            name: "Bob%20B".into(),
            caps: ClientCaps {
                caps: Capabilities(268_435_492),
                extended: ext,
            },
            msnobj: obj.map(str::to_owned),
        }
    }

    fn render(f: impl FnOnce(&mut BytesMut)) -> String {
        let mut out = BytesMut::new();
        f(&mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn nln_per_dialect() {
        let n = notice(Status::Away, Some(0), Some("%3Cmsnobj%2F%3E"));
        let cases = [
            (Dialect::Msnp2, "NLN AWY bob@x.com Bob%20B\r\n"),
            (Dialect::Msnp7, "NLN AWY bob@x.com Bob%20B\r\n"),
            (Dialect::Msnp8, "NLN AWY bob@x.com Bob%20B 268435492\r\n"),
            (
                Dialect::Msnp9,
                "NLN AWY bob@x.com Bob%20B 268435492 %3Cmsnobj%2F%3E\r\n",
            ),
            (
                Dialect::Msnp11,
                "NLN AWY bob@x.com Bob%20B 268435492 %3Cmsnobj%2F%3E\r\n",
            ),
            (
                Dialect::Msnp12,
                "NLN AWY bob@x.com Bob%20B 268435492:0 %3Cmsnobj%2F%3E\r\n",
            ),
        ];
        for (d, want) in cases {
            assert_eq!(render(|o| write_notice(d, &n, o)), want, "{d}");
        }
    }

    #[test]
    fn hidden_and_offline_render_as_fln_everywhere() {
        for d in Dialect::ALL {
            for s in [Status::Hidden, Status::Offline] {
                let n = notice(s, None, None);
                assert_eq!(render(|o| write_notice(d, &n, o)), "FLN bob@x.com\r\n");
            }
        }
    }

    #[test]
    fn iln_per_dialect() {
        let n = notice(Status::Online, None, None);
        assert_eq!(
            render(|o| write_iln(Dialect::Msnp5, TrId(9), &n, o)),
            "ILN 9 NLN bob@x.com Bob%20B\r\n"
        );
        assert_eq!(
            render(|o| write_iln(Dialect::Msnp10, TrId(9), &n, o)),
            "ILN 9 NLN bob@x.com Bob%20B 268435492\r\n"
        );
    }

    #[test]
    fn ubx_only_from_msnp11() {
        assert_eq!(
            render(|o| write_ubx(Dialect::Msnp10, "a@b.c", Some("<Data/>"), o)),
            ""
        );
        assert_eq!(
            render(|o| write_ubx(Dialect::Msnp11, "a@b.c", Some("<Data/>"), o)),
            "UBX a@b.c 7\r\n<Data/>"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn bucket_refills_over_time() {
        let limits = LimitsConfig {
            change_burst: 2,
            change_refill_secs: 1,
            ..LimitsConfig::default()
        };
        let mut b = TokenBucket::new(&limits);
        assert!(b.take(&limits));
        assert!(b.take(&limits));
        assert!(!b.take(&limits));
        tokio::time::advance(Duration::from_millis(1100)).await;
        assert!(b.take(&limits));
        assert!(!b.take(&limits));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(b.take(&limits));
        assert!(b.take(&limits));
        assert!(!b.take(&limits));
    }
}
