//! The MSNP listener: accepts TCP connections and runs one connection task each.
//!
//! The connection task owns the socket. It reads into a bounded buffer, frames through the
//! codec, lets the session turn frames and hub events into output, and writes everything a
//! round produced in one syscall (output is coalesced per socket, never one write per line).
//! Limits: a connection cap at accept, a line and payload cap in the codec, a cap on queued
//! output (a peer that does not read is dropped), a write timeout, and login/idle deadlines.
//!
//! One port serves both kinds of MSNP connection; the first command decides which session
//! drives it: `USR t email cookie` or `ANS …` a switchboard session, anything else (`VER`) a
//! notification session. Both share this loop, its coalesced writes and its limits.
//!
//! The loop is generic over its stream: the HTTP gateway (`http::gateway`) runs the very same
//! loop over an in-memory pipe per gateway session, so every command has one implementation
//! whatever carries it. [`Transport`] names the few documented differences.

use crate::queue;
use bytes::BytesMut;
use msgr_proto::frame::{FrameDecoder, Peer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::hub::Event;
use crate::ns::{Flow, NsSession};
use crate::sb::{self, SbSession};
use crate::Shared;

/// The session driving a connection: NS until the first command says switchboard.
enum Session {
    Ns(NsSession),
    Sb(SbSession),
}

impl Session {
    fn kill_token(&self) -> CancellationToken {
        match self {
            Session::Ns(s) => s.kill_token(),
            Session::Sb(s) => s.kill_token(),
        }
    }
    fn deadline(&self) -> tokio::time::Instant {
        match self {
            Session::Ns(s) => s.deadline(),
            Session::Sb(s) => s.deadline(),
        }
    }
    fn account(&self) -> Option<&str> {
        match self {
            Session::Ns(s) => s.account(),
            Session::Sb(s) => s.account(),
        }
    }
    fn shutdown(&mut self, out: &mut BytesMut) {
        match self {
            Session::Ns(s) => s.shutdown(out),
            Session::Sb(s) => s.shutdown(out),
        }
    }
    fn event(&mut self, event: Event, out: &mut BytesMut) -> Flow {
        match self {
            Session::Ns(s) => s.event(event, out),
            Session::Sb(s) => s.event(event, out),
        }
    }
    /// The server is ending the connection on its own (idle, too slow): a switchboard
    /// participant's peers hear the timeout form of `BYE`.
    fn server_dropped(&mut self) {
        if let Session::Sb(s) = self {
            s.server_dropped();
        }
    }
}

/// What carries a connection's bytes. The protocol is the same over both, except for the
/// details the NS session looks up here (`ClientPort` in the profile, `PNG`, idle deadlines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// A TCP connection to an MSNP listener.
    Tcp,
    /// A session of the HTTP gateway (`/gateway/gateway.dll`).
    HttpGateway,
}

/// How a connection ended, for a transport that has its own way to report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Closed by either side, timed out or dropped: the usual ways.
    Closed,
    /// The session closed it because the client broke a rule of its transport (`PNG` over
    /// the HTTP gateway); the gateway answers that request with an HTTP error.
    Refused,
}

/// What an MSNP listener does with logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListenerRole {
    /// Serves logins itself (unless the whole node is in dispatch-only mode).
    Serve,
    /// A dispatch server: every `USR … I` gets `XFR … NS` (to `dispatch_to`, or this node's
    /// own notification server), for clients that insist on being redirected.
    Dispatch,
}

/// Accepts connections until `shutdown` fires.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    role: ListenerRole,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let slots = shared.connection_slots.clone();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Usually EMFILE: back off instead of spinning on a full fd table.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection refused: connection limit reached");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            serve_connection(stream, peer, role, Transport::Tcp, shared, shutdown).await;
            drop(permit);
        });
    }
}

/// Output buffer capacity kept between writes; a larger one is given back once flushed.
const OUT_KEEP_BYTES: usize = 2048;

/// Runs one MSNP connection to its end. Generic over the stream so tests and other
/// transports can drive it.
pub(crate) async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    role: ListenerRole,
    transport: Transport,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> Ended
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let limits = &shared.config.limits;
    let outbox_cap = limits.outbox_bytes;
    let write_timeout = limits.write_timeout();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut decoder = FrameDecoder::new(Peer::Client, limits.codec());
    let mut inbuf = BytesMut::with_capacity(512);
    let mut out = BytesMut::new();
    let (events_tx, mut events) = queue::channel(limits.event_queue);
    let mut session = Session::Ns(NsSession::new(
        shared.clone(),
        peer,
        role,
        transport,
        events_tx.clone(),
    ));
    let mut first = true;
    let mut ended = Ended::Closed;
    tracing::debug!(%peer, "connected");

    loop {
        let deadline = session.deadline();
        // Re-read each round: the session may have turned into a switchboard one.
        let kill = session.kill_token();
        let flow = tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                session.shutdown(&mut out);
                Flow::Close
            }
            // The hub found this session's event queue full: drop it rather than let its
            // watchers wait or its queue grow.
            _ = kill.cancelled() => break,
            Some(event) = events.recv() => {
                let mut flow = session.event(event, &mut out);
                while flow == Flow::Continue {
                    match events.try_recv() {
                        Ok(event) => flow = session.event(event, &mut out),
                        Err(_) => break,
                    }
                }
                flow
            }
            read = rd.read_buf(&mut inbuf) => match read {
                Ok(0) => break,
                Ok(_) => {
                    let ctx = Ctx { shared: &shared, peer, events: &events_tx, first: &mut first };
                    // Boxed: command handling is the largest future of the loop, and held
                    // inline it would make every idle connection's task that much bigger.
                    Box::pin(read_frames(&mut session, ctx, &mut decoder, &mut inbuf, &mut out)).await
                }
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "read failed");
                    break;
                }
            },
            _ = tokio::time::sleep_until(deadline) => {
                tracing::info!(%peer, account = session.account(), "connection timed out");
                session.server_dropped();
                Flow::Close
            }
        };
        if out.len() > outbox_cap {
            tracing::warn!(%peer, account = session.account(), queued = out.len(), "slow consumer dropped");
            session.server_dropped();
            break;
        }
        if !out.is_empty() {
            match tokio::time::timeout(write_timeout, wr.write_all(&out)).await {
                Ok(Ok(())) => out.clear(),
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "write failed");
                    break;
                }
                Err(_) => {
                    tracing::warn!(%peer, account = session.account(), "write timed out");
                    session.server_dropped();
                    break;
                }
            }
        }
        if flow != Flow::Continue {
            if flow == Flow::Refuse {
                ended = Ended::Refused;
            }
            let _ = tokio::time::timeout(write_timeout, wr.shutdown()).await;
            break;
        }
        // Give back the memory of a burst so idle connections stay small.
        if inbuf.is_empty() && inbuf.capacity() > 16 * 1024 {
            inbuf = BytesMut::with_capacity(512);
        }
        // An idle session keeps no output buffer: what a login or a burst needed (the `SYN`
        // of a long list, a file-transfer chunk) would otherwise stay allocated for hours.
        // Small steady traffic stays under the threshold and reuses its buffer.
        if out.capacity() > OUT_KEEP_BYTES {
            out = BytesMut::new();
        }
    }
    tracing::debug!(%peer, account = session.account(), "disconnected");
    ended
}

/// What choosing the session on the first command needs.
struct Ctx<'a> {
    shared: &'a Arc<Shared>,
    peer: SocketAddr,
    events: &'a queue::Sender<Event>,
    /// No command has been seen yet.
    first: &'a mut bool,
}

/// Decodes and handles every complete frame in `inbuf`.
async fn read_frames(
    session: &mut Session,
    ctx: Ctx<'_>,
    decoder: &mut FrameDecoder,
    inbuf: &mut BytesMut,
    out: &mut BytesMut,
) -> Flow {
    loop {
        match decoder.decode(inbuf) {
            Ok(Some(frame)) => {
                if *ctx.first && !frame.command().is_empty() {
                    *ctx.first = false;
                    if sb::is_switchboard_login(&frame) {
                        *session = Session::Sb(SbSession::new(
                            ctx.shared.clone(),
                            ctx.peer,
                            ctx.events.clone(),
                        ));
                    }
                }
                let flow = match session {
                    Session::Ns(ns) => {
                        let flow = ns.handle(frame, out).await;
                        if let Some(d) = ns.dialect() {
                            decoder.set_dialect(d);
                        }
                        flow
                    }
                    Session::Sb(sb) => sb.handle(frame, out),
                };
                if flow != Flow::Continue {
                    return flow;
                }
            }
            Ok(None) => return Flow::Continue,
            Err(e) => {
                let flow = match session {
                    Session::Ns(ns) => ns.frame_error(&e, out),
                    Session::Sb(sb) => sb.frame_error(&e, out),
                };
                if flow != Flow::Continue || !e.is_recoverable() {
                    return Flow::Close;
                }
            }
        }
    }
}
