//! `GET /mail/events`: Server-Sent Events telling an open page that the mailbox changed, so
//! `static/app.js` can fetch the page again and swap the list and the folder counts in.
//!
//! One task per stream, subscribed to msgr-mail's notifier for the account (a coalescing signal: a
//! burst of deliveries is one event). The task writes into a channel of two events that the response
//! body reads; a reader that does not keep up misses events (the next one repaints everything anyway),
//! it never makes the task wait or buffer. The stream ends at sign-out (the session's token), when the
//! session expires (checked at each keep-alive), at shutdown, and when the reader goes away. Streams are
//! capped in all and per session.

use crate::{http, Conn, Signed, Web};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;

/// How often a comment line keeps proxies from closing a quiet stream.
const KEEPALIVE: Duration = Duration::from_secs(25);

/// The response body: whatever the stream's task sends.
struct EventBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for EventBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// Holds one place in the global and the session's stream counts.
struct Slot(Vec<Arc<AtomicUsize>>);

impl Slot {
    /// Takes a place in each count whose limit allows it, or none at all.
    fn take(counts: &[(&Arc<AtomicUsize>, usize)]) -> Option<Slot> {
        let mut taken = Vec::new();
        for (count, limit) in counts {
            let before = count.fetch_add(1, Ordering::AcqRel);
            taken.push(Arc::clone(count));
            if before >= *limit {
                // Gives back what was taken, this one included.
                drop(Slot(taken));
                return None;
            }
        }
        Some(Slot(taken))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        for c in &self.0 {
            c.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Web {
    pub(crate) fn events(&self, signed: &Signed, conn: &Conn) -> Response<crate::WebBody> {
        let c = &self.inner.config;
        let Some(slot) = Slot::take(&[
            (&self.inner.streams, c.max_event_streams),
            (&signed.session.streams, c.max_event_streams_per_session),
        ]) else {
            let mut r = Response::new(http::full("too many live-update streams\n"));
            *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            return r;
        };
        let (tx, rx) = mpsc::channel::<Bytes>(2);
        let mut subscription = self.inner.mail.notify.subscribe(&signed.session.account);
        let ended = signed.session.ended.clone();
        let shutdown = conn.shutdown.clone();
        let web = self.clone();
        let cookie = signed.cookie.clone();
        conn.tracker.spawn(async move {
            let _slot = slot;
            // Tells the page the stream is live (and how long to wait before reconnecting).
            if tx.try_send(Bytes::from_static(b"retry: 5000\n: open\n\n")).is_err() {
                return;
            }
            loop {
                let line: &'static [u8] = tokio::select! {
                    _ = subscription.changed() => b"event: mail\ndata: changed\n\n",
                    _ = tokio::time::sleep(KEEPALIVE) => {
                        if web.inner.sessions.get(&cookie).is_none() {
                            let _ = tx.try_send(Bytes::from_static(b"event: bye\ndata: signed out\n\n"));
                            return;
                        }
                        b": keep-alive\n\n"
                    }
                    _ = ended.cancelled() => {
                        let _ = tx.try_send(Bytes::from_static(b"event: bye\ndata: signed out\n\n"));
                        return;
                    }
                    _ = shutdown.cancelled() => return,
                    _ = tx.closed() => return,
                };
                match tx.try_send(Bytes::from_static(line)) {
                    Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
        });
        let mut r = Response::new(EventBody(rx).boxed());
        let h = r.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }
}
