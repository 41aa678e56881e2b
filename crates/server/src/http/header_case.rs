//! Response header names spelled as the official Passport and gateway servers spelled them.
//!
//! hyper keeps header names in lower case and writes them so (`passporturls:`), which HTTP
//! allows but old Messenger clients do not: msn-pecan finds `PassportURLs: ` with `strncmp`
//! and `Authentication-Info: ` with `strstr`, and aMSN looks headers up case-sensitively. hyper
//! can title-case names (`Passporturls`, still wrong) but offers no way to choose a spelling
//! for a response, so this stream wrapper restores it on the way out: [`CaseRestorer`] follows
//! each response's head byte by byte, rewrites every header name to its spelling from
//! [`spelling`] (same length, only the case changes), and copies bodies untouched, skipping
//! exactly `Content-Length` bytes so that a body never gets rewritten, whatever it holds.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The longest header name restored; a longer one (never sent by this server) passes as is.
const MAX_NAME: usize = 64;

/// How the official servers spelled the names whose case is not plain title case; every
/// other name is title-cased (`Content-Type`, `Content-Length`, `Date`,
/// `Authentication-Info`).
fn spelling(lower: &[u8]) -> Option<&'static [u8]> {
    Some(match lower {
        b"passporturls" => b"PassportURLs",
        b"www-authenticate" => b"WWW-Authenticate",
        b"x-msn-messenger" => b"X-MSN-Messenger",
        _ => return None,
    })
}

/// Appends `name` spelled as the official servers did.
fn restore(name: &[u8], out: &mut Vec<u8>) {
    let lower = name.to_ascii_lowercase();
    if let Some(s) = spelling(&lower) {
        out.extend_from_slice(s);
        return;
    }
    let mut upper = true;
    for &b in &lower {
        out.push(if upper { b.to_ascii_uppercase() } else { b });
        upper = b == b'-';
    }
}

/// Where the writer is in the response stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// In the status line.
    Status,
    /// At the start of a header line, or of the blank line that ends the head.
    LineStart,
    /// In a header name, held back until its `:` shows where it ends.
    Name,
    /// In a header value, until its LF.
    Value,
    /// In the blank line's CR, before its LF.
    HeadEnd,
    /// Copying this many body bytes.
    Body(u64),
    /// A body whose length the head did not give (never produced by this server): the rest
    /// of the connection is copied as is.
    Passthrough,
}

/// The sans-IO part: rewrites the header names of a stream of HTTP/1 responses.
#[derive(Debug)]
pub(crate) struct CaseRestorer {
    phase: Phase,
    /// The header name being read (the bytes are emitted once it is complete).
    name: Vec<u8>,
    /// The current header is `Content-Length`, whose digits are being read.
    in_length: bool,
    length: Option<u64>,
    /// The head had a `Transfer-Encoding`: the body's end cannot be found by counting.
    unknown_length: bool,
}

impl Default for CaseRestorer {
    fn default() -> Self {
        CaseRestorer {
            phase: Phase::Status,
            name: Vec::new(),
            in_length: false,
            length: None,
            unknown_length: false,
        }
    }
}

impl CaseRestorer {
    /// Consumes `input`, appending it to `out` with header names restored. A name cut by the
    /// end of `input` is held until the rest arrives.
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < input.len() {
            match self.phase {
                Phase::Passthrough => {
                    out.extend_from_slice(&input[i..]);
                    return;
                }
                Phase::Body(n) => {
                    let take = usize::try_from(n)
                        .unwrap_or(usize::MAX)
                        .min(input.len() - i);
                    out.extend_from_slice(&input[i..i + take]);
                    i += take;
                    let left = n - take as u64;
                    self.phase = if left == 0 {
                        Phase::Status
                    } else {
                        Phase::Body(left)
                    };
                }
                Phase::Status => {
                    let b = input[i];
                    out.push(b);
                    i += 1;
                    if b == b'\n' {
                        self.phase = Phase::LineStart;
                    }
                }
                Phase::LineStart => match input[i] {
                    b'\r' => {
                        out.push(b'\r');
                        i += 1;
                        self.phase = Phase::HeadEnd;
                    }
                    b'\n' => self.phase = Phase::HeadEnd,
                    _ => {
                        self.name.clear();
                        self.phase = Phase::Name;
                    }
                },
                Phase::Name => {
                    let b = input[i];
                    i += 1;
                    if b == b':' {
                        restore(&self.name, out);
                        out.push(b':');
                        self.in_length = self.name.eq_ignore_ascii_case(b"content-length");
                        if self.name.eq_ignore_ascii_case(b"transfer-encoding") {
                            self.unknown_length = true;
                        }
                        self.phase = Phase::Value;
                    } else if b == b'\n' || self.name.len() >= MAX_NAME {
                        // Not a header line this wrapper understands: give it back as is.
                        out.extend_from_slice(&self.name);
                        out.push(b);
                        self.in_length = false;
                        self.phase = if b == b'\n' {
                            Phase::LineStart
                        } else {
                            Phase::Value
                        };
                    } else {
                        self.name.push(b);
                    }
                }
                Phase::Value => {
                    let b = input[i];
                    out.push(b);
                    i += 1;
                    if b == b'\n' {
                        self.in_length = false;
                        self.phase = Phase::LineStart;
                    } else if self.in_length && b.is_ascii_digit() {
                        let digit = u64::from(b - b'0');
                        self.length = Some(
                            self.length
                                .unwrap_or(0)
                                .saturating_mul(10)
                                .saturating_add(digit),
                        );
                    }
                }
                Phase::HeadEnd => {
                    let b = input[i];
                    out.push(b);
                    i += 1;
                    if b == b'\n' {
                        self.phase = match (self.unknown_length, self.length.take()) {
                            (true, _) => Phase::Passthrough,
                            (false, None | Some(0)) => Phase::Status,
                            (false, Some(n)) => Phase::Body(n),
                        };
                        self.unknown_length = false;
                    }
                }
            }
        }
    }
}

/// A stream whose written HTTP responses get their header names restored (see the module
/// header). Reads pass through. Each write is transformed into `pending` and accepted whole;
/// the next write waits until `pending` has reached the inner stream, so at most one write of
/// hyper's is buffered here.
pub(crate) struct HeaderCase<S> {
    inner: S,
    restorer: CaseRestorer,
    pending: Vec<u8>,
    /// How much of `pending` the inner stream has taken.
    sent: usize,
}

impl<S> HeaderCase<S> {
    pub(crate) fn new(inner: S) -> Self {
        HeaderCase {
            inner,
            restorer: CaseRestorer::default(),
            pending: Vec::new(),
            sent: 0,
        }
    }
}

impl<S: AsyncWrite + Unpin> HeaderCase<S> {
    /// Writes `pending` to the inner stream until it is all out.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.pending.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.pending.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HeaderCase<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeaderCase<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_drain(cx))?;
        this.restorer.feed(buf, &mut this.pending);
        // Start sending now; what the inner stream does not take yet waits in `pending`.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn restored(chunks: &[&[u8]]) -> String {
        let mut r = CaseRestorer::default();
        let mut out = Vec::new();
        for c in chunks {
            r.feed(c, &mut out);
        }
        String::from_utf8(out).unwrap()
    }

    const TWO: &[u8] = b"HTTP/1.1 200 OK\r\npassporturls: DALogin=h/login2.srf\r\ncontent-length: 26\r\ndate: x\r\n\r\npassporturls: not a header\
HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Passport1.4 da-status=failed\r\nx-msn-messenger: SessionID=1\r\nauthentication-info: a\r\ncontent-length: 0\r\n\r\n";

    const WANT: &str = "HTTP/1.1 200 OK\r\nPassportURLs: DALogin=h/login2.srf\r\nContent-Length: 26\r\nDate: x\r\n\r\npassporturls: not a header\
HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Passport1.4 da-status=failed\r\nX-MSN-Messenger: SessionID=1\r\nAuthentication-Info: a\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn names_restored_bodies_untouched() {
        assert_eq!(restored(&[TWO]), WANT);
    }

    /// The same bytes in every split into two writes give the same output.
    #[test]
    fn any_chunking() {
        for at in 0..=TWO.len() {
            assert_eq!(restored(&[&TWO[..at], &TWO[at..]]), WANT, "split at {at}");
        }
        let ones: Vec<&[u8]> = TWO.chunks(1).collect();
        assert_eq!(restored(&ones), WANT);
    }

    #[test]
    fn chunked_bodies_pass_through() {
        let s = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\ndate: \r\n0\r\n\r\n";
        assert_eq!(
            restored(&[s]),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\ndate: \r\n0\r\n\r\n"
        );
    }
}
