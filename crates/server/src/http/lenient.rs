//! Tolerance for what old Passport clients send before hyper sees the request.
//!
//! Some clients open the nexus with a bare `GET /rdr/pprdr.asp` line: no HTTP version and no
//! Host header (HTTP/0.9 style). hyper refuses that, so the first request line is read here,
//! given an `HTTP/1.0` version when it has none, and replayed to hyper in front of the rest of
//! the stream.

use bytes::{Buf, Bytes, BytesMut};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The longest first line read here; a longer one is passed to hyper unchanged to refuse.
const MAX_REQUEST_LINE: usize = 8 * 1024;

/// Returns the request line with `HTTP/1.0` appended when it has only a method and a target.
/// `line` excludes the line ending.
pub(crate) fn complete_request_line(line: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(line).ok()?;
    let mut tokens = text.split_ascii_whitespace();
    let (method, target) = (tokens.next()?, tokens.next()?);
    if tokens.next().is_some() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    Some(format!("{method} {target} HTTP/1.0").into_bytes())
}

/// Reads the first request line and returns the bytes to replay in front of the stream,
/// completed when it lacked a version.
pub(crate) async fn read_first_line<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<Bytes> {
    let mut buf = BytesMut::with_capacity(512);
    while !buf.contains(&b'\n') && buf.len() < MAX_REQUEST_LINE {
        if stream.read_buf(&mut buf).await? == 0 {
            break;
        }
    }
    let Some(lf) = buf.iter().position(|&b| b == b'\n') else {
        return Ok(buf.freeze());
    };
    let end = if lf > 0 && buf[lf - 1] == b'\r' {
        lf - 1
    } else {
        lf
    };
    match complete_request_line(&buf[..end]) {
        Some(mut fixed) => {
            fixed.extend_from_slice(b"\r\n");
            fixed.extend_from_slice(&buf[lf + 1..]);
            Ok(Bytes::from(fixed))
        }
        None => Ok(buf.freeze()),
    }
}

/// A stream that yields `prefix` before the inner stream's own bytes.
pub(crate) struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    pub(crate) fn new(prefix: Bytes, inner: S) -> Self {
        Prefixed { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(
            complete_request_line(b"GET /rdr/pprdr.asp").unwrap(),
            b"GET /rdr/pprdr.asp HTTP/1.0"
        );
        assert_eq!(complete_request_line(b"GET /x HTTP/1.1"), None);
        assert_eq!(complete_request_line(b"GET"), None);
        assert_eq!(complete_request_line(b"get /x"), None);
        assert_eq!(complete_request_line(b"\xff /x"), None);
    }

    #[tokio::test]
    async fn replays_the_completed_line_then_the_rest() {
        let (mut client, server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, b"GET /a\r\nHost: h\r\n\r\n")
            .await
            .unwrap();
        drop(client);
        let mut server = server;
        let prefix = read_first_line(&mut server).await.unwrap();
        let mut all = Vec::new();
        Prefixed::new(prefix, server)
            .read_to_end(&mut all)
            .await
            .unwrap();
        assert_eq!(all, b"GET /a HTTP/1.0\r\nHost: h\r\n\r\n");
    }
}
