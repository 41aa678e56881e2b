//! `CVR`: the client describes itself; the server answers with the recommended and minimum
//! client versions and where to download them. The same in every dialect:
//!
//! `CVR 2 0x0409 win 4.10 i386 MSNMSGR 5.0.0544 MSMSGS example@passport.com` (MSNP8+ add the
//! last two parameters) → `CVR 2 6.0.0602 6.0.0602 1.0.0000 <download URL> <info URL>`.

use bytes::BytesMut;
use msgr_proto::frame::{write_line, Frame, TrId};
use msgr_proto::ErrorCode;

use super::{error, Flow, NsSession};

/// Locale, OS type, OS version, CPU, client name, client version: what every dialect sends.
const MIN_PARAMS: usize = 6;

impl NsSession {
    pub(super) fn cvr(&mut self, frame: &Frame, trid: TrId, out: &mut BytesMut) -> Flow {
        let params = frame.params();
        if params.len() < MIN_PARAMS {
            error(out, ErrorCode::InvalidParameter, trid);
            return Flow::Continue;
        }
        tracing::debug!(peer = %self.peer, client = params[4], version = params[5], "CVR");
        write_line(
            out,
            "CVR",
            Some(trid),
            &[
                "6.0.0602",
                "6.0.0602",
                "1.0.0000",
                "http://download.microsoft.com/download/8/a/4/8a42bcae-f533-4468-b871-d2bc8dd32e9e/SETUP9x.EXE",
                "http://messenger.msn.com",
            ],
        );
        Flow::Continue
    }
}
