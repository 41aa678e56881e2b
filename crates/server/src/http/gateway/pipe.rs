//! The in-memory transport between the HTTP gateway and one MSNP session task.
//!
//! The session side ([`SessionEnd`]) is an ordinary `AsyncRead + AsyncWrite` stream, so the
//! session runs the same connection loop as a TCP client's (`msnp::serve_connection`). The
//! gateway side pushes each request's body in and takes the queued output out.
//!
//! What a plain duplex pipe could not tell the gateway is when a request's commands have been
//! answered. This one can: the connection loop only reads again once it has handled every
//! complete frame it read and written every reply, so a read that finds no input left marks
//! the moment the replies to the last request are all queued ([`Pipe::ready`]). That makes
//! the answer to `VER` arrive in the response to the request carrying `VER`, as it did with
//! the official gateway, without sleeps or guesses.
//!
//! Output is bounded: once `cap` bytes wait for the client, writes stay pending (the
//! connection loop's write timeout then drops the session as a slow consumer, exactly as a
//! TCP peer that stops reading), so a client that never polls cannot grow the server's memory.

use bytes::{Buf, Bytes, BytesMut};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use crate::msnp::Ended;

/// Both ends' shared state.
pub(crate) struct Pipe {
    state: Mutex<State>,
    /// Wakes a request waiting in [`Pipe::ready`] whenever the session reads, writes or ends.
    changed: Notify,
    /// Most output bytes held for the client.
    cap: usize,
}

#[derive(Default)]
struct State {
    /// Request bytes not yet read by the session.
    input: BytesMut,
    /// Output not yet collected by a request.
    output: BytesMut,
    /// The session asked for more input and found none: everything pushed so far has been
    /// handled and answered.
    reader_idle: bool,
    /// The client is gone (its session expired): reads see end of file, writes fail.
    hung_up: bool,
    /// Set by the session's owner once the connection loop has returned.
    ended: Option<Ended>,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

/// The session has not read what earlier requests brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InputFull;

/// What a request takes away: the queued output and, if the session is over, how it ended.
pub(crate) struct Taken {
    pub output: Bytes,
    pub ended: Option<Ended>,
}

impl Pipe {
    /// A pipe holding at most `cap` bytes of output, and the session's end of it.
    pub(crate) fn new(cap: usize) -> (Arc<Pipe>, SessionEnd) {
        let pipe = Arc::new(Pipe {
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            cap: cap.max(1),
        });
        let end = SessionEnd { pipe: pipe.clone() };
        (pipe, end)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands a request body to the session, unless more than `max` bytes would then wait
    /// for it (a session too busy to read what earlier requests brought): input is bounded
    /// like output.
    pub(crate) fn push(&self, body: &[u8], max: usize) -> Result<(), InputFull> {
        let waker = {
            let mut s = self.lock();
            if body.is_empty() {
                return Ok(());
            }
            if s.input.len() + body.len() > max {
                return Err(InputFull);
            }
            s.input.extend_from_slice(body);
            s.reader_idle = false;
            s.read_waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Waits until the session has answered everything pushed so far, its output is full (the
    /// client must take it before the session can go on), or it has ended.
    pub(crate) async fn ready(&self) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let s = self.lock();
                if s.ended.is_some()
                    || (s.input.is_empty() && s.reader_idle)
                    || s.output.len() >= self.cap
                {
                    return;
                }
            }
            notified.await;
        }
    }

    /// Takes the queued output, and lets a session blocked on a full queue go on.
    pub(crate) fn take(&self) -> Taken {
        let (taken, waker) = {
            let mut s = self.lock();
            let output = s.output.split().freeze();
            // Give back the memory of a burst so idle sessions stay small.
            if s.output.capacity() > 16 * 1024 {
                s.output = BytesMut::new();
            }
            (
                Taken {
                    output,
                    ended: s.ended,
                },
                s.write_waker.take(),
            )
        };
        if let Some(w) = waker {
            w.wake();
        }
        taken
    }

    /// The client is gone: the session reads end of file, as from a closed TCP connection.
    pub(crate) fn hang_up(&self) {
        let wakers = {
            let mut s = self.lock();
            s.hung_up = true;
            (s.read_waker.take(), s.write_waker.take())
        };
        wake_both(wakers);
        self.changed.notify_waiters();
    }

    /// The connection loop has returned with `ended`.
    pub(crate) fn finish(&self, ended: Ended) {
        self.lock().ended = Some(ended);
        self.changed.notify_waiters();
    }
}

fn wake_both((a, b): (Option<Waker>, Option<Waker>)) {
    for w in [a, b].into_iter().flatten() {
        w.wake();
    }
}

/// The session's end: reads request bodies, writes into the bounded output queue.
pub(crate) struct SessionEnd {
    pipe: Arc<Pipe>,
}

impl AsyncRead for SessionEnd {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let pipe = &self.pipe;
        let mut s = pipe.lock();
        if !s.input.is_empty() {
            let n = s.input.len().min(buf.remaining());
            buf.put_slice(&s.input[..n]);
            s.input.advance(n);
            return Poll::Ready(Ok(()));
        }
        if s.hung_up {
            // End of file.
            return Poll::Ready(Ok(()));
        }
        s.read_waker = Some(cx.waker().clone());
        let newly_idle = !s.reader_idle;
        s.reader_idle = true;
        drop(s);
        if newly_idle {
            pipe.changed.notify_waiters();
        }
        Poll::Pending
    }
}

impl AsyncWrite for SessionEnd {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let pipe = &self.pipe;
        let mut s = pipe.lock();
        if s.hung_up {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let room = pipe.cap.saturating_sub(s.output.len());
        if room == 0 {
            // Full: wait for a request to take the output. A waiting request is told, so it
            // answers with what there is instead of waiting for the session.
            s.write_waker = Some(cx.waker().clone());
            drop(s);
            pipe.changed.notify_waiters();
            return Poll::Pending;
        }
        let n = room.min(data.len());
        s.output.extend_from_slice(&data[..n]);
        drop(s);
        pipe.changed.notify_waiters();
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn ready_once_the_session_reads_again() {
        let (pipe, mut end) = Pipe::new(64);
        pipe.push(b"VER 1\r\n", 16).unwrap();
        assert_eq!(pipe.push(b"0123456789", 16), Err(InputFull));
        let session = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            let n = end.read(&mut buf).await.unwrap();
            end.write_all(&buf[..n]).await.unwrap();
            // Reading again (and finding nothing) marks the request as answered.
            let n = end.read(&mut buf).await.unwrap();
            assert_eq!(n, 0, "end of file after hang_up");
        });
        pipe.ready().await;
        assert_eq!(&pipe.take().output[..], b"VER 1\r\n");
        pipe.hang_up();
        session.await.unwrap();
    }

    #[tokio::test]
    async fn output_is_bounded() {
        let (pipe, mut end) = Pipe::new(4);
        let writer = tokio::spawn(async move { end.write_all(b"0123456789").await });
        // The writer stops at the cap; a waiting request is released by the full queue.
        pipe.ready().await;
        assert_eq!(&pipe.take().output[..], b"0123");
        pipe.ready().await;
        assert_eq!(&pipe.take().output[..], b"4567");
        pipe.hang_up();
        assert!(writer.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn finish_reports_the_end() {
        let (pipe, _end) = Pipe::new(4);
        pipe.finish(Ended::Refused);
        pipe.ready().await;
        assert_eq!(pipe.take().ended, Some(Ended::Refused));
    }
}
