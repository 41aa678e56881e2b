//! `VER`: dialect negotiation, the first command of every NS connection.
//!
//! | client | server |
//! |---|---|
//! | `VER 1 MSNP8 CVR0` | `VER 1 MSNP8 CVR0`: the highest dialect both speak, then `CVR0` if offered |
//! | `VER 1 MSNP7 MSNP6` | `VER 1 MSNP7` (only when legacy MD5 logins are enabled) |
//! | nothing in common | `VER 1 0`, then the connection is closed |

use bytes::BytesMut;
use msgr_proto::frame::{write_line, Frame, TrId};
use msgr_proto::{Dialect, ErrorCode};

use super::{error, Flow, NsSession, State};

impl NsSession {
    pub(super) fn ver(&mut self, frame: &Frame, trid: TrId, out: &mut BytesMut) -> Flow {
        if !matches!(self.state, State::Negotiating) {
            error(out, ErrorCode::NotExpected, trid);
            return Flow::Continue;
        }
        let params = frame.params();
        let legacy = self.shared.config.legacy_md5;
        let chosen = params
            .iter()
            .filter_map(|t| Dialect::from_token(t))
            .filter(|d| legacy || *d >= Dialect::Msnp8)
            .max();
        let Some(dialect) = chosen else {
            tracing::info!(peer = %self.peer, offered = ?params, "no common dialect");
            write_line(out, "VER", Some(trid), &["0"]);
            return Flow::Close;
        };
        let mut reply = vec![dialect.token()];
        if params.contains(&"CVR0") {
            reply.push("CVR0");
        }
        write_line(out, "VER", Some(trid), &reply);
        tracing::debug!(peer = %self.peer, %dialect, "dialect negotiated");
        self.state = State::Authenticating {
            dialect,
            pending: None,
        };
        Flow::Continue
    }
}
