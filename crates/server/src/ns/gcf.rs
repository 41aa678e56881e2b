//! `GCF`: configuration files the client downloads from the NS (MSNP11 and MSNP12 only).
//!
//! | dialect | client sends | server answers |
//! |---|---|---|
//! | MSNP11, MSNP12 | `GCF t Shields.xml` | `GCF t Shields.xml len` + the Shields configuration |
//!
//! `Shields.xml` is the only file name known; msgr's copy denies no client version and blocks
//! nothing. Any other file name is 201; the command before MSNP11 is 200. (MSNP13 replaced the
//! request with an unsolicited `GCF 0 len` after `USR`; out of this server's range.) Clients
//! wait for this reply before going on (msnp11-sdk's login does). Sources: yellows111
//! msnp-wiki (gcf, shields).

use bytes::BytesMut;
use msgr_proto::frame::{write_payload, Frame, TrId};
use msgr_proto::ErrorCode;

use super::{error, Flow, NsSession};

/// The one file `GCF` serves.
const SHIELDS_FILE: &str = "Shields.xml";

/// An empty Shields configuration: no client version denied, nothing blocked.
const SHIELDS_XML: &str =
    "<?xml version=\"1.0\" encoding=\"utf-8\"?><config><shield></shield><block></block></config>";

impl NsSession {
    pub(super) fn gcf(&mut self, frame: &Frame, trid: TrId, out: &mut BytesMut) -> Flow {
        // Dispatched only when signed in, and only at MSNP11+ (`has_command`).
        match frame.params().as_slice() {
            [file] if file.eq_ignore_ascii_case(SHIELDS_FILE) => write_payload(
                out,
                "GCF",
                Some(trid),
                &[SHIELDS_FILE],
                SHIELDS_XML.as_bytes(),
            ),
            _ => error(out, ErrorCode::InvalidParameter, trid),
        }
        Flow::Continue
    }
}
