//! The MSNP listener: accepts TCP connections and runs one connection task each.
//!
//! The connection task owns the socket. It reads into a bounded buffer, frames through the
//! codec, lets the session turn frames and hub events into output, and writes what a round
//! produced by the policy of [`write_plan`]: at light load command by command, as the
//! official servers wrote them (several old clients handle one command per TCP read), and
//! under load in one syscall per round.
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
use msgr_proto::frame::{payload_command, FrameDecoder, Peer};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
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
    fn peer(&self) -> SocketAddr {
        match self {
            Session::Ns(s) => s.peer(),
            Session::Sb(s) => s.peer(),
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
    let name = match role {
        ListenerRole::Serve => "msnp",
        ListenerRole::Dispatch => "dispatch",
    };
    let mut backoff = msgr_mail::AcceptBackoff::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(x) => {
                backoff.succeeded(name);
                x
            }
            Err(e) => {
                // Usually EMFILE: back off (growing pauses) instead of spinning on a full fd
                // table; the connection waits in the listen backlog until descriptors free up.
                let pause = backoff.failed(name, &e);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    () = tokio::time::sleep(pause) => continue,
                }
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection refused: connection limit reached");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        tracker.spawn(serve_tcp(
            stream,
            peer,
            role,
            shared.clone(),
            shutdown.clone(),
            permit,
        ));
    }
}

/// A TCP connection as the loop drives it: reads through the owned read half (which keeps
/// tokio's readiness bookkeeping: a short read needs no second, empty one), writes through the
/// write half that the connection's queue shares with the switchboard's direct writers
/// (`queue::Outlet`). Reads and writes never overlap in the loop, so no lock is needed
/// between them (`tokio::io::split` would take one on every read and write).
struct TcpLink {
    rd: OwnedReadHalf,
    wr: Arc<OwnedWriteHalf>,
}

impl AsyncRead for TcpLink {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.rd).poll_read(cx, buf)
    }
}

impl AsyncWrite for TcpLink {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            match self.wr.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // `try_write` cleared the readiness it found stale: this registers the
                    // task for the next one.
                    std::task::ready!(self.wr.as_ref().as_ref().poll_write_ready(cx))?;
                }
                r => return Poll::Ready(r),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// The write half is shared with the queue, so it cannot be shut down from here: it shuts
    /// the socket's sending side when its last owner (this or the queue's receiver, both
    /// dropped when the connection's task ends) drops it.
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Runs one MSNP connection over TCP to its end: as [`serve_connection`], and once it is a
/// signed-in switchboard participant, relayed messages may be written to its socket by the
/// sender's task (`queue`'s direct writes). `permit` is the connection's slot under
/// `max_connections`, held until the connection ends.
///
/// Not an `async fn`: the future it returns is the task of every connection, and an `async fn`
/// wrapping [`run_connection`] would hold its arguments a second time beside it (a coroutine
/// keeps the slots of its arguments for its whole life).
fn serve_tcp(
    stream: TcpStream,
    peer: SocketAddr,
    role: ListenerRole,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> impl Future<Output = Ended> + Send {
    let (rd, wr) = stream.into_split();
    let wr = Arc::new(wr);
    let link = TcpLink { rd, wr: wr.clone() };
    let outlet: Arc<dyn queue::Outlet> = wr;
    run_connection(
        link,
        Some(outlet),
        peer,
        role,
        Transport::Tcp,
        shared,
        shutdown,
        Held {
            _permit: Some(permit),
            pending: None,
        },
    )
}

/// What a connection holds while it lives: its slot under `max_connections` (TCP), and its
/// slot among connections that have not signed in yet (the HTTP gateway's
/// `gateway_max_pending`, given back at sign-in). The pending slot is boxed: it is only
/// there for the gateway, and every connection's task would carry it inline.
struct Held {
    /// Held, never read: dropped with the connection.
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
    pending: Option<Box<msgr_mail::ConnSlot>>,
}

/// Output buffer capacity kept between writes; a larger one is given back once flushed.
const OUT_KEEP_BYTES: usize = 2048;

/// How long a connection keeps its buffers with nothing to read or write. A sign-in burst
/// (the `SYN` reply, one `ILN` per online contact) leaves the output buffer at 1–2 KiB, and
/// the input buffer holds 512 bytes: for an idle user that is most of its memory. After this
/// quiet time both are given back; the next read starts small and grows again.
const BUFFER_RELEASE_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Input buffer capacity for a connection that is reading: one read takes a few commands.
const IN_READ_BYTES: usize = 512;

/// Runs one MSNP connection to its end. Generic over the stream so tests and other
/// transports can drive it. `pending` is a slot among connections that have not signed in
/// (the HTTP gateway's `gateway_max_pending`): it is given back at sign-in, or when the
/// connection ends, whichever comes first.
pub(crate) async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    role: ListenerRole,
    transport: Transport,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    pending: Option<msgr_mail::ConnSlot>,
) -> Ended
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let held = Held {
        _permit: None,
        pending: pending.map(Box::new),
    };
    run_connection(stream, None, peer, role, transport, shared, shutdown, held).await
}

/// The connection loop. `outlet` is the socket's write half for direct writes (TCP only): it
/// is given to the queue once the connection is a signed-in switchboard participant and the
/// answer to its `USR`/`ANS` is written, so nothing relayed reaches the client before that.
///
/// Its future is most of what an idle online user costs (`tests::connection_task_stays_small`
/// guards its size), hence: an `async` block, which uses its captured arguments in place where
/// an `async fn` would copy them into locals and keep both; one await point per write, whose
/// timer is only made (boxed) for a write that has to wait; rare, large futures boxed.
#[allow(clippy::too_many_arguments)]
fn run_connection<S>(
    mut stream: S,
    mut outlet: Option<Arc<dyn queue::Outlet>>,
    peer: SocketAddr,
    role: ListenerRole,
    transport: Transport,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    mut held: Held,
) -> impl Future<Output = Ended>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Events are bounded by count and by bytes: what waits for this connection, queued or
    // rendered and not yet written, stays under `outbox_bytes` (see `queue`).
    let limits = &shared.config.limits;
    let (events_tx, mut events) =
        queue::channel_with_bytes(limits.event_queue, limits.outbox_bytes);
    // Made before the connection's future, which then holds the session alone: the peer's
    // address, role and queue sender are the session's (`Session::peer`, `NsSession::events`).
    let mut session = Session::Ns(NsSession::new(
        shared.clone(),
        peer,
        role,
        transport,
        events_tx,
    ));
    tracing::debug!(%peer, "connected");
    async move {
        let limits = &shared.config.limits;
        let mut decoder = FrameDecoder::new(Peer::Client, limits.codec());
        let mut inbuf = BytesMut::with_capacity(IN_READ_BYTES);
        let mut out = BytesMut::new();
        let mut first = true;
        let mut ended = Ended::Closed;

        // The futures every round waits on are made once, not per round: a fresh cancellation
        // future registers with its token (under the token's lock, the shutdown token being
        // shared by every connection) and a fresh sleep with the timer wheel, on each message
        // relayed. The deadline timer is re-armed only when it fires early or must fire sooner.
        // (The hub and the switchboard drop a connection through its queue: `Next::Killed`.)
        let shutting_down = shutdown.cancelled();
        // The timer's own deadline is when it is armed for.
        let timer = tokio::time::sleep_until(session.deadline());
        tokio::pin!(shutting_down, timer);
        // The timer is armed early (at most once per `BUFFER_RELEASE_AFTER`) to give back the
        // buffers of a connection gone quiet: whether it is.
        let mut release_armed = false;

        loop {
            // Client commands and hub events this round answers: the load signal of `write_plan`.
            let mut triggers = 0usize;
            // The round answered a switchboard participant's own commands (`write_plan`).
            let mut read_round = false;
            // The round read from the client (either session kind).
            let mut did_read = false;
            {
                let deadline = session.deadline();
                if deadline < timer.deadline() {
                    timer.as_mut().reset(deadline);
                }
            }
            let flow = tokio::select! {
                biased;
                _ = &mut shutting_down => {
                    session.shutdown(&mut out);
                    Flow::Close
                }
                next = events.next() => {
                    // The hub or the switchboard found this session's event queue full: drop
                    // it rather than let its watchers wait or its queue grow.
                    let queue::Next::Item(event) = next else { break };
                    triggers += 1;
                    let mut flow = session.event(event, &mut out);
                    while flow == Flow::Continue {
                        match events.try_recv() {
                            Ok(event) => {
                                triggers += 1;
                                flow = session.event(event, &mut out);
                            }
                            Err(_) => break,
                        }
                    }
                    flow
                }
                read = stream.read_buf(&mut inbuf) => match read {
                    Ok(0) => break,
                    Ok(_) => {
                        did_read = true;
                        match &mut session {
                            // A switchboard's commands are handled without waiting: no future to box
                            // on each relayed message.
                            Session::Sb(sb) => {
                                read_round = true;
                                sb_frames(sb, &mut decoder, &mut inbuf, &mut out, &mut triggers)
                            }
                            Session::Ns(_) => {
                                let ctx = Ctx {
                                    shared: &shared,
                                    first: &mut first,
                                    frames: &mut triggers,
                                };
                                // Boxed: command handling is the largest future of the loop, and held
                                // inline it would make every idle connection's task that much bigger.
                                Box::pin(read_frames(&mut session, ctx, &mut decoder, &mut inbuf, &mut out)).await
                            }
                        }
                    }
                    Err(e) => {
                        tracing::debug!(peer = %session.peer(), error = %e, "read failed");
                        break;
                    }
                },
                () = &mut timer => {
                    let now = tokio::time::Instant::now();
                    if release_armed {
                        // Quiet since the release was armed, or busy since: either way the
                        // buffers are empty between rounds, and traffic that goes on makes
                        // new ones. (An earlier deadline may fire first: releasing early is
                        // harmless.)
                        release_armed = false;
                        tracing::trace!(
                            peer = %session.peer(),
                            out = out.capacity(),
                            inbuf = inbuf.capacity(),
                            "idle: buffers released"
                        );
                        out = BytesMut::new();
                        if inbuf.is_empty() {
                            inbuf = BytesMut::new();
                        }
                        events.release_idle();
                    }
                    let deadline = session.deadline();
                    if now < deadline {
                        // Activity moved the deadline since the timer was armed.
                        timer.as_mut().reset(deadline);
                        Flow::Continue
                    } else {
                        tracing::info!(peer = %session.peer(), account = session.account(), "connection timed out");
                        session.server_dropped();
                        Flow::Close
                    }
                }
            };
            if out.len() > limits.outbox_bytes {
                tracing::warn!(peer = %session.peer(), account = session.account(), queued = out.len(), "slow consumer dropped");
                session.server_dropped();
                break;
            }
            if !out.is_empty() {
                let plan = match read_round {
                    true => sb_reply_plan(transport, triggers, out.len()),
                    false => write_plan(transport, triggers, out.len()),
                };
                // With direct writes on, none may start until this round is written (`queue`),
                // and what one left half-written goes first.
                let rest = events.begin_write();
                let written = {
                    let mut write = write_round(&mut stream, rest, &out, plan);
                    // Usually the kernel takes it all at once: only a write that has to wait
                    // gets a timer (boxed: no room for it in every connection's task). Both
                    // moved into the one future awaited, which keeps this await's state small.
                    let mut limit: Option<Pin<Box<tokio::time::Sleep>>> = None;
                    let events = &events;
                    std::future::poll_fn(move |cx| {
                        if let Poll::Ready(w) = Pin::new(&mut write).poll(cx) {
                            return Poll::Ready(Written::Done(w));
                        }
                        // Dropped (its switchboard or the hub found its queue over budget, and
                        // logged it) while a peer that does not read held this write: stop
                        // now, and free what is queued, rather than at the write timeout.
                        if events.poll_killed(cx).is_ready() {
                            return Poll::Ready(Written::Killed);
                        }
                        let limit = limit.get_or_insert_with(|| {
                            Box::pin(tokio::time::sleep(limits.write_timeout()))
                        });
                        limit.as_mut().poll(cx).map(|()| Written::TimedOut)
                    })
                    .await
                };
                match written {
                    Written::Done(Ok(())) => out.clear(),
                    Written::Killed => break,
                    Written::Done(Err(e)) => {
                        tracing::debug!(peer = %session.peer(), error = %e, "write failed");
                        break;
                    }
                    Written::TimedOut => {
                        tracing::warn!(peer = %session.peer(), account = session.account(), "write timed out");
                        session.server_dropped();
                        break;
                    }
                }
            }
            // What the round took from the queue is now with the kernel (or produced nothing).
            events.settle();
            // A switchboard participant whose `USR OK` / `ANS OK` is written now takes relayed
            // messages straight to its socket.
            if let (Session::Sb(sb), Some(_)) = (&session, &outlet) {
                if sb.account().is_some() {
                    if let Some(o) = outlet.take() {
                        events.set_outlet(o);
                    }
                }
            }
            if held.pending.is_some() && session.account().is_some() {
                held.pending = None;
            }
            if flow != Flow::Continue {
                if flow == Flow::Refuse {
                    ended = Ended::Refused;
                }
                // Boxed: once per connection, and its timer would otherwise take room in every
                // connection's task.
                let _ = Box::pin(tokio::time::timeout(
                    limits.write_timeout(),
                    stream.shutdown(),
                ))
                .await;
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
            // A released input buffer refills 64 bytes at a time (`BytesMut`'s growth when
            // full): once reading, read in commands' worth again.
            if did_read && inbuf.capacity() < IN_READ_BYTES {
                inbuf.reserve(IN_READ_BYTES - inbuf.len());
            }
            if !release_armed && (out.capacity() > 0 || inbuf.capacity() > 64) {
                let at = tokio::time::Instant::now() + BUFFER_RELEASE_AFTER;
                release_armed = true;
                if at < timer.deadline() {
                    timer.as_mut().reset(at);
                }
            }
        }
        tracing::debug!(peer = %session.peer(), account = session.account(), "disconnected");
        drop(held);
        ended
    }
}

/// How a round's write ended.
enum Written {
    Done(io::Result<()>),
    /// The connection was dropped while the write waited.
    Killed,
    /// The write waited longer than `write_timeout`.
    TimedOut,
}

/// What choosing the session on the first command needs.
struct Ctx<'a> {
    shared: &'a Arc<Shared>,
    /// No command has been seen yet.
    first: &'a mut bool,
    /// Counts the frames handled (for [`write_plan`]).
    frames: &'a mut usize,
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
                *ctx.frames += 1;
                if *ctx.first && !frame.command().is_empty() {
                    *ctx.first = false;
                    if let (true, Session::Ns(ns)) = (sb::is_switchboard_login(&frame), &*session) {
                        *session = Session::Sb(SbSession::new(
                            ctx.shared.clone(),
                            ns.peer(),
                            ns.events().clone(),
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

/// Handles every complete frame in `inbuf` for a switchboard participant (whose commands
/// never wait), counting them in `frames`.
fn sb_frames(
    sb: &mut SbSession,
    decoder: &mut FrameDecoder,
    inbuf: &mut BytesMut,
    out: &mut BytesMut,
    frames: &mut usize,
) -> Flow {
    loop {
        match decoder.decode(inbuf) {
            Ok(Some(frame)) => {
                *frames += 1;
                let flow = sb.handle(frame, out);
                if flow != Flow::Continue {
                    return flow;
                }
            }
            Ok(None) => return Flow::Continue,
            Err(e) => {
                let flow = sb.frame_error(&e, out);
                if flow != Flow::Continue || !e.is_recoverable() {
                    return Flow::Close;
                }
            }
        }
    }
}

/// How the replies of a signed-in switchboard participant's read round go out: the `ACK`s
/// (and `NAK`s, errors) of several commands that came in one read are one write. A client that
/// sent several commands in one go reads their answers in one go too, and a relay with
/// `MSG t A` would otherwise pay a write per message. A single command's answer (`ANS`'s
/// `IRO` lines) goes out by [`write_plan`], as any other round.
pub(crate) fn sb_reply_plan(transport: Transport, commands: usize, out_len: usize) -> WritePlan {
    match commands {
        0 | 1 => write_plan(transport, commands, out_len),
        _ => WritePlan::Coalesced,
    }
}

/// How a round's output goes to the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WritePlan {
    /// One write per protocol command (with its payload).
    PerCommand,
    /// Everything in one write.
    Coalesced,
}

/// The most client commands and hub events a round may have answered for its output to go
/// out command by command. A sign-on's commands (`SYN`, `CHG`, `PNG`, privacy settings) come
/// one or a few per read and a hub event is usually alone; more than this in one round means
/// work piled up while the connection was busy, which is load.
const LIGHT_TRIGGERS: usize = 4;

/// The most output bytes written command by command: a sign-on's `SYN` of a few hundred
/// contacts fits; beyond it a syscall per line would cost more than the clients that need it
/// gain (they lose such bursts anyway when their reads fall behind).
const LIGHT_BYTES: usize = 16 * 1024;

/// Chooses how to write a round's output of `out_len` bytes that answered `triggers` client
/// commands and hub events.
///
/// The official servers wrote each command as they produced it, and clients were written
/// against that: MSN.pm waits for the socket to be readable and then reads one line; msnpjs
/// handles only the first command of each TCP read. So at light load (few triggers, little
/// output) each command is its own write, and with `TCP_NODELAY` its own segment. Under load
/// (work piled up in one round) the round is one write, which is what keeps the relay and
/// presence figures: a syscall per message would halve them. Over the HTTP gateway there are
/// no segments to speak of (the client gets the output in an HTTP body), so it is one write.
pub(crate) fn write_plan(transport: Transport, triggers: usize, out_len: usize) -> WritePlan {
    match transport {
        Transport::Tcp if triggers <= LIGHT_TRIGGERS && out_len <= LIGHT_BYTES => {
            WritePlan::PerCommand
        }
        _ => WritePlan::Coalesced,
    }
}

/// Where the server command that starts at `pos` in `out` ends: after its CRLF, or after its
/// payload for a payload command (`MSG`, `NOT`, `UBX`, `GCF`, `IPG`: the length is the last
/// parameter). `None` if `out` does not parse as whole commands there (never for what
/// sessions write; the caller then writes the rest in one piece). No allocation: it runs for
/// every light round, the relay's included.
pub(crate) fn command_end(out: &[u8], pos: usize) -> Option<usize> {
    let rest = out.get(pos..)?;
    let lf = pos + rest.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&out[pos..lf]).ok()?;
    let command = line.split(' ').next().unwrap_or_default();
    let mut end = lf + 2;
    // Server output only ever holds payload commands in the dialects that have them, so the
    // codec's liberal (no dialect) reading of the table is exact here.
    if payload_command(command, Peer::Server, None) {
        let len: usize = line.rsplit(' ').next()?.parse().ok()?;
        end = end.checked_add(len)?;
    }
    (end <= out.len()).then_some(end)
}

/// Writes a round's output by `plan`, after `rest` (the remainder of a partial direct write,
/// which the client has the beginning of already).
fn write_round<'a, W: AsyncWrite + Unpin>(
    wr: &'a mut W,
    rest: Option<bytes::Bytes>,
    out: &'a [u8],
    plan: WritePlan,
) -> WriteRound<'a, W> {
    WriteRound {
        wr,
        rest: rest.unwrap_or_default(),
        out,
        start: 0,
        end: 0,
        plan,
    }
}

/// [`write_round`]'s future. Written by hand rather than as an `async fn` because every
/// connection's task has room for one (for while a write waits): this is 72 bytes with the
/// remainder it owns, the `async fn` with its `write_all` futures was 104 besides it.
struct WriteRound<'a, W> {
    wr: &'a mut W,
    /// What is left of the remainder of a partial direct write.
    rest: bytes::Bytes,
    out: &'a [u8],
    /// Where the unwritten part of `out` starts.
    start: usize,
    /// Where the piece being written ends: the end of a command by `plan`, or of `out`.
    end: usize,
    plan: WritePlan,
}

impl<W: AsyncWrite + Unpin> Future for WriteRound<'_, W> {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while !this.rest.is_empty() {
            let n = std::task::ready!(Pin::new(&mut *this.wr).poll_write(cx, &this.rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            bytes::Buf::advance(&mut this.rest, n);
        }
        while this.start < this.out.len() {
            if this.end <= this.start {
                // Each command its own write, up to the last one (or anything that does not
                // parse), which goes with the rest in the final write.
                this.end = match this.plan {
                    WritePlan::PerCommand => command_end(this.out, this.start)
                        .filter(|&e| e < this.out.len())
                        .unwrap_or(this.out.len()),
                    WritePlan::Coalesced => this.out.len(),
                };
            }
            let piece = &this.out[this.start..this.end];
            let n = std::task::ready!(Pin::new(&mut *this.wr).poll_write(cx, piece))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            this.start += n;
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A sign-on burst: `SYN` with its list, the `CHG` reply, an `ILN`, a `UBX` with payload.
    const BURST: &[u8] = b"SYN 5 3 3 1 0\r\nGTC A\r\nBLP AL\r\nLST N=a@x.com F=A C=c 11 1\r\nCHG 6 NLN 0\r\nILN 6 NLN a@x.com A 0\r\nUBX a@x.com 5\r\nhi\r\nxQNG 50\r\n";

    /// The size of what `f` returns, without calling it.
    fn output_size<F, A, B, C, D, E, G, R>(_: &F) -> usize
    where
        F: FnOnce(A, B, C, D, E, G) -> R,
    {
        std::mem::size_of::<R>()
    }

    /// The task of a TCP connection, which every online user keeps for as long as it is
    /// online: most of an idle user's memory. tokio allocates a task in steps of 128 bytes
    /// (its header and the future, cache-line aligned); at 1,560 bytes this future made
    /// 1,792-byte tasks.
    #[test]
    fn connection_task_stays_small() {
        let serve = |stream: TcpStream,
                     peer: SocketAddr,
                     role: ListenerRole,
                     shared: Arc<Shared>,
                     shutdown: CancellationToken,
                     permit: tokio::sync::OwnedSemaphorePermit| {
            serve_tcp(stream, peer, role, shared, shutdown, permit)
        };
        let size = output_size(&serve);
        eprintln!("serve_tcp future: {size} bytes");
        // With the task's header (32 bytes), scheduler and id (16), tracker (8) and trailer (48),
        // 792 bytes make an 896-byte task.
        assert!(size <= 792, "a TCP connection's future is {size} bytes");
    }

    #[test]
    fn light_load_is_per_command_load_is_coalesced() {
        assert_eq!(write_plan(Transport::Tcp, 1, 300), WritePlan::PerCommand);
        assert_eq!(write_plan(Transport::Tcp, 0, 30), WritePlan::PerCommand);
        assert_eq!(
            write_plan(Transport::Tcp, LIGHT_TRIGGERS, LIGHT_BYTES),
            WritePlan::PerCommand
        );
        // Events piled up while the connection was busy: load.
        assert_eq!(
            write_plan(Transport::Tcp, LIGHT_TRIGGERS + 1, 500),
            WritePlan::Coalesced
        );
        // One huge burst (a long list): one write.
        assert_eq!(
            write_plan(Transport::Tcp, 1, LIGHT_BYTES + 1),
            WritePlan::Coalesced
        );
        assert_eq!(
            write_plan(Transport::HttpGateway, 1, 30),
            WritePlan::Coalesced
        );
    }

    #[test]
    fn a_switchboard_read_of_several_commands_is_answered_in_one_write() {
        // Several `MSG t A` in one read: their `ACK`s together, whatever the load.
        assert_eq!(sb_reply_plan(Transport::Tcp, 2, 14), WritePlan::Coalesced);
        assert_eq!(sb_reply_plan(Transport::Tcp, 4, 40), WritePlan::Coalesced);
        // One command (`ANS` with its `IRO` lines): as any other round.
        assert_eq!(sb_reply_plan(Transport::Tcp, 1, 300), WritePlan::PerCommand);
        assert_eq!(
            sb_reply_plan(Transport::Tcp, 1, LIGHT_BYTES + 1),
            WritePlan::Coalesced
        );
        assert_eq!(
            sb_reply_plan(Transport::HttpGateway, 1, 30),
            WritePlan::Coalesced
        );
    }

    fn command_ends(out: &[u8]) -> Option<Vec<usize>> {
        let mut ends = Vec::new();
        let mut pos = 0;
        while pos < out.len() {
            pos = command_end(out, pos)?;
            ends.push(pos);
        }
        Some(ends)
    }

    #[test]
    fn commands_end_after_their_payloads() {
        let ends = command_ends(BURST).unwrap();
        let parts: Vec<&str> = ends
            .iter()
            .scan(0, |start, &end| {
                let part = std::str::from_utf8(&BURST[*start..end]).unwrap();
                *start = end;
                Some(part)
            })
            .collect();
        assert_eq!(
            parts,
            [
                "SYN 5 3 3 1 0\r\n",
                "GTC A\r\n",
                "BLP AL\r\n",
                "LST N=a@x.com F=A C=c 11 1\r\n",
                "CHG 6 NLN 0\r\n",
                "ILN 6 NLN a@x.com A 0\r\n",
                "UBX a@x.com 5\r\nhi\r\nx",
                "QNG 50\r\n",
            ]
        );
        assert_eq!(command_ends(b"MSG a b 10\r\nshort"), None);
        assert_eq!(command_ends(b"no line end"), None);
    }

    /// Records each write it is given, as a socket's segments at light load.
    #[derive(Default)]
    struct Segments(Vec<Vec<u8>>);

    impl AsyncWrite for Segments {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.0.push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn one_write_per_command_at_light_load() {
        let mut s = Segments::default();
        write_round(&mut s, None, BURST, WritePlan::PerCommand)
            .await
            .unwrap();
        assert_eq!(s.0.len(), 8);
        assert_eq!(s.0.concat(), BURST);
        // A reader that keeps only the first command of each segment (msnpjs) sees them all.
        let firsts: Vec<String> =
            s.0.iter()
                .map(|seg| {
                    String::from_utf8_lossy(seg)
                        .split(' ')
                        .next()
                        .unwrap()
                        .to_owned()
                })
                .collect();
        assert_eq!(
            firsts,
            ["SYN", "GTC", "BLP", "LST", "CHG", "ILN", "UBX", "QNG"]
        );

        let mut s = Segments::default();
        write_round(&mut s, None, BURST, WritePlan::Coalesced)
            .await
            .unwrap();
        assert_eq!(s.0, [BURST.to_vec()]);
    }
}
