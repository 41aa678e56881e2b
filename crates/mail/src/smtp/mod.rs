//! SMTP server sessions (RFC 5321): the inbound MX, which takes mail for local mailboxes from anyone, and
//! submission (RFC 6409), which takes mail from signed-in accounts for anywhere.
//!
//! A session is generic over its stream, so plain TCP, TLS after `STARTTLS` and implicit TLS share one
//! implementation. Replies are queued and written when the client's input is drained, which is what makes
//! `PIPELINING` cheap: a client that sends `MAIL`, `RCPT`, `RCPT`, `DATA` in one packet gets four replies in
//! one packet. A message is acknowledged (`250 … queued as`) only after the group-commit [`Deliverer`]
//! reports it durable.
//!
//! [`Deliverer`]: crate::deliver::Deliverer

mod command;
mod data;
mod session;

use crate::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::Instrument;

/// Which listener a session came in on: it decides what the session offers and demands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The inbound MX (port 25): mail for local mailboxes from anyone, no `AUTH`, never relaying.
    Mx,
    /// Message submission with `STARTTLS` (port 587): `AUTH` required, then mail for anywhere.
    Submission,
    /// Message submission over implicit TLS (port 465, RFC 8314).
    Submissions,
}

impl Mode {
    fn is_submission(self) -> bool {
        matches!(self, Mode::Submission | Mode::Submissions)
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Mx => "smtp",
            Mode::Submission => "submission",
            Mode::Submissions => "submissions",
        }
    }
}

/// Serves one SMTP connection until the client quits, the connection fails, a limit closes it, or the server
/// shuts down (`421`). For [`Mode::Submissions`] the TLS handshake comes first.
pub async fn serve<S>(stream: S, ctx: Arc<Context>, peer: SocketAddr, mode: Mode)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let span = tracing::info_span!("smtp", %peer, listener = mode.name());
    session::serve(stream, ctx, peer, mode)
        .instrument(span)
        .await;
}

/// One fuzzing input through the SMTP parsers: every line through the command parser, the bytes through
/// the `DATA` decoder whole and in chunks (the same message and the same end either way, never more than
/// the limit kept), and the MIME summary. Panics on a broken invariant. Used by the fuzz target
/// (`fuzz/fuzz_targets/smtp_proto.rs`) and by the property tests.
#[doc(hidden)]
pub fn fuzz_one(data: &[u8]) {
    for line in data.split(|&b| b == b'\n') {
        let _ = command::parse(line);
    }
    let limit = data.len() / 2;
    let chunk = data.first().map_or(1, |&b| usize::from(b % 64) + 1);
    let whole = data::decode_in_chunks(data, data.len().max(1), limit);
    let split = data::decode_in_chunks(data, chunk, limit);
    assert_eq!(whole, split, "chunks of {chunk}");
    assert!(whole.0.len() <= limit);
    let _ = crate::mime::summarize(data);
}
