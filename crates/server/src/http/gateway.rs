//! The HTTP gateway (`/gateway/gateway.dll`): MSNP for clients that cannot reach the MSNP
//! port, carried in HTTP requests on the HTTP and HTTPS listeners.
//!
//! A gateway session is one more transport for the ordinary session: each one runs the same
//! connection loop as a TCP connection (`msnp::serve_connection`, NS or SB chosen by the first
//! command) over an in-memory [`pipe`], so no command exists twice. The gateway only moves
//! bytes: a request's body goes into the pipe, and the response carries whatever the session
//! has queued since the last request.
//!
//! The exchange, as the public descriptions of the official gateway tell it (hypothetic.org,
//! "HTTP connections" and "HTTP examples"; the NINA wiki, "Protocols/MSNP/Gateway"):
//!
//! - The client opens a session with `POST /gateway/gateway.dll?Action=open&Server=NS&IP=host`
//!   (`Server=SB` for a switchboard, `IP` naming the server it would have connected to, e.g.
//!   the address from `XFR … SB` or `RNG`); the body holds its first commands (`VER …`, or
//!   `USR`/`ANS` with the cookie for a switchboard).
//! - Later requests carry `SessionID=id` and the commands in the body; `Action=poll&SessionID=id`
//!   with an empty body only fetches what the server queued. The official client polled every
//!   couple of seconds.
//! - Every response says `X-MSN-Messenger: SessionID=id; GW-IP=address` (where to send the
//!   next request) with `Content-Type: application/x-msn-messenger`; the body is the queued
//!   output, possibly empty. Once the session is over the header says `Session=close`.
//! - A client waits for each response before its next request; a request on a session that
//!   already has one in flight is answered 400.
//! - The profile message after login has `ClientPort: 0`, and `PNG` is not part of the HTTP
//!   protocol: the official gateway answered it with an HTTP error and ended the session.
//! - `XFR` and `RNG` name the real switchboard address; a gateway client passes it as `IP=`
//!   when it opens the switchboard session through the gateway.
//!
//! Choices of this implementation where the descriptions say nothing: the session ID is 128
//! random bits in hex and stays the same for the whole session (the official one changed it
//! in every response; clients use whatever the last response said, so a stable one works with
//! them too); `GW-IP` is this server's public host, with the listener's port when it is not
//! the scheme's default; a request naming no session, a malformed or unknown one is answered
//! 400 and logged; a body over `gateway_max_body` is 413; a new session beyond
//! `max_connections`, or beyond `gateway_max_pending` sessions not signed in (in all, or
//! `gateway_max_pending_per_ip` from one client IP), or a body for a session that has not yet
//! read that much from earlier requests, is 503 (a session leaves the pending count when it
//! signs in, or when its login times out and the session ends, which also frees its place in
//! `max_connections` at once); a session that sees no request for `gateway_idle_secs` ends like a TCP
//! connection whose client vanished (watchers see `FLN`); sessions count against
//! `max_connections`; output waiting for the client is bounded by
//! `outbox_bytes` (see [`pipe`]). After a session ends on the server's side (`OUT OTH`,
//! `OUT SSD`, a slow consumer) its last output stays for the client's next request, which
//! also carries `Session=close`.

mod pipe;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use rand::Rng;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use self::pipe::{Pipe, SessionEnd};
use super::Listener;
use crate::msnp::{self, Ended, ListenerRole, Transport};
use crate::Shared;

/// The gateway's sessions, by ID, and what its responses advertise.
pub(crate) struct Gateway {
    sessions: Mutex<HashMap<String, Arc<GwSession>>>,
    /// `GW-IP` for requests that came through the HTTP listener.
    gw_ip_http: String,
    /// `GW-IP` for requests that came through the HTTPS listener.
    gw_ip_https: String,
}

/// One gateway session: the pipe to its session task and the request bookkeeping.
struct GwSession {
    id: String,
    pipe: Arc<Pipe>,
    /// A request is being answered; another one at the same time is refused.
    busy: AtomicBool,
    /// When the last request ended (or the session opened): the idle clock.
    last_seen: Mutex<Instant>,
    /// Cancelled once a request has carried the session's end to the client.
    collected: CancellationToken,
}

impl GwSession {
    fn last_seen(&self) -> Instant {
        *self.last_seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The query of a gateway request.
#[derive(Debug, Default, PartialEq, Eq)]
struct Query<'a> {
    action: Option<&'a str>,
    server: Option<&'a str>,
    ip: Option<&'a str>,
    session_id: Option<&'a str>,
}

impl<'a> Query<'a> {
    fn parse(query: &'a str) -> Query<'a> {
        let mut q = Query::default();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "Action" => q.action = Some(value),
                "Server" => q.server = Some(value),
                "IP" => q.ip = Some(value),
                "SessionID" => q.session_id = Some(value),
                _ => {}
            }
        }
        q
    }
}

/// Session IDs are 128 random bits, as 32 lowercase hex digits.
const SESSION_ID_LEN: usize = 32;

fn new_session_id() -> String {
    let mut bytes = [0u8; SESSION_ID_LEN / 2];
    rand::rng().fill(&mut bytes[..]);
    hex::encode(bytes)
}

fn well_formed_session_id(id: &str) -> bool {
    id.len() == SESSION_ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// What the idle check decided.
enum Idle {
    /// The session was removed: the client is gone.
    Expired,
    /// Look again at this instant.
    CheckAt(Instant),
}

impl Gateway {
    /// `host` is the public host; `http`/`https` the listeners' bound addresses.
    pub(crate) fn new(host: &str, http: Option<SocketAddr>, https: Option<SocketAddr>) -> Self {
        let gw_ip = |addr: Option<SocketAddr>, default_port: u16| match addr {
            Some(a) if a.port() != default_port => format!("{host}:{}", a.port()),
            _ => host.to_owned(),
        };
        Gateway {
            sessions: Mutex::new(HashMap::new()),
            gw_ip_http: gw_ip(http, 80),
            gw_ip_https: gw_ip(https, 443),
        }
    }

    fn sessions(&self) -> MutexGuard<'_, HashMap<String, Arc<GwSession>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remove(&self, id: &str) {
        self.sessions().remove(id);
    }

    /// Claims the session for one request, unless it does not exist or is busy.
    fn claim(&self, id: &str) -> Result<Busy, Refusal> {
        let sessions = self.sessions();
        let session = sessions.get(id).ok_or(Refusal::UnknownSession)?;
        if session.busy.swap(true, Ordering::SeqCst) {
            return Err(Refusal::InFlight);
        }
        Ok(Busy(session.clone()))
    }

    /// Removes the session if it has been idle for `idle`; the check and the removal happen
    /// under the lock that [`Gateway::claim`] takes, so a request cannot slip in between.
    fn expire_if_idle(&self, session: &GwSession, idle: Duration) -> Idle {
        let mut sessions = self.sessions();
        let now = Instant::now();
        if session.busy.load(Ordering::SeqCst) {
            return Idle::CheckAt(now + idle);
        }
        let due = session.last_seen() + idle;
        if due > now {
            return Idle::CheckAt(due);
        }
        sessions.remove(&session.id);
        Idle::Expired
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.sessions().len()
    }
}

/// A request's hold on its session; dropping it (the response is sent, or the client went
/// away mid-request) frees the session for the next request and restarts the idle clock.
struct Busy(Arc<GwSession>);

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.last_seen.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.0.busy.store(false, Ordering::SeqCst);
    }
}

/// Why a request was turned away before reaching a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    NotPost,
    BadQuery,
    BadServer,
    BadSessionId,
    UnknownSession,
    InFlight,
    TooLarge,
    BodyTimeout,
    BodyFailed,
    Backlog,
    Full,
    Pending,
}

impl Refusal {
    fn status(self) -> StatusCode {
        match self {
            Refusal::NotPost => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::BadQuery
            | Refusal::BadServer
            | Refusal::BadSessionId
            | Refusal::UnknownSession
            | Refusal::InFlight
            | Refusal::BodyFailed => StatusCode::BAD_REQUEST,
            Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Refusal::Full | Refusal::Backlog | Refusal::Pending => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn why(self) -> &'static str {
        match self {
            Refusal::NotPost => "not a POST",
            Refusal::BadQuery => "neither Action=open nor a SessionID",
            Refusal::BadServer => "Server is neither NS nor SB",
            Refusal::BadSessionId => "malformed SessionID",
            Refusal::UnknownSession => "unknown or expired SessionID",
            Refusal::InFlight => "another request of this session is in flight",
            Refusal::TooLarge => "body over gateway_max_body",
            Refusal::BodyTimeout => "body not received in time",
            Refusal::BodyFailed => "body could not be read",
            Refusal::Backlog => "the session has not read the previous requests yet",
            Refusal::Full => "connection limit reached",
            Refusal::Pending => "too many sessions not signed in",
        }
    }
}

/// Answers one request to `/gateway/gateway.dll`.
pub(crate) async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    listener: &Listener,
) -> Response<Full<Bytes>> {
    match exchange(req, peer, shared, listener).await {
        Ok(r) => r,
        Err(refusal) => {
            tracing::info!(%peer, why = refusal.why(), "gateway request refused");
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = refusal.status();
            r
        }
    }
}

async fn exchange(
    req: Request<Incoming>,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    listener: &Listener,
) -> Result<Response<Full<Bytes>>, Refusal> {
    if req.method() != Method::POST {
        return Err(Refusal::NotPost);
    }
    let limits = &shared.config.limits;
    // Refuse an announced oversized body before reading any of it; `Limited` catches a body
    // that does not announce its length.
    if req.body().size_hint().lower() > limits.gateway_max_body as u64 {
        return Err(Refusal::TooLarge);
    }
    let query = Query::parse(req.uri().query().unwrap_or(""));
    let busy = match (query.action, query.session_id) {
        (Some("open"), _) => open(&query, peer, shared, listener)?,
        (Some("poll") | None, Some(id)) => {
            if !well_formed_session_id(id) {
                return Err(Refusal::BadSessionId);
            }
            shared.gateway.claim(id)?
        }
        _ => return Err(Refusal::BadQuery),
    };
    let session = &busy.0;

    let body = Limited::new(req.into_body(), limits.gateway_max_body);
    let body = match tokio::time::timeout(limits.write_timeout(), body.collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return Err(Refusal::TooLarge),
        Ok(Err(_)) => return Err(Refusal::BodyFailed),
        Err(_) => return Err(Refusal::BodyTimeout),
    };
    if session.pipe.push(&body, limits.gateway_max_body).is_err() {
        return Err(Refusal::Backlog);
    }
    // The answer to the commands, or what is queued at the time: a session busy for longer
    // (or a full queue) just leaves the rest for the next poll.
    let _ = tokio::time::timeout(limits.write_timeout(), session.pipe.ready()).await;
    let taken = session.pipe.take();

    let gw_ip = if listener.tls {
        &shared.gateway.gw_ip_https
    } else {
        &shared.gateway.gw_ip_http
    };
    let (status, header, body) = match taken.ended {
        None => (
            StatusCode::OK,
            format!("SessionID={}; GW-IP={gw_ip}", session.id),
            taken.output,
        ),
        Some(ended) => {
            // This response carries the end of the session: forget it.
            shared.gateway.remove(&session.id);
            session.collected.cancel();
            let header = format!("SessionID={}; Session=close", session.id);
            match ended {
                Ended::Closed => (StatusCode::OK, header, taken.output),
                Ended::Refused => (StatusCode::BAD_REQUEST, header, Bytes::new()),
            }
        }
    };
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    let headers = r.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-msn-messenger"),
    );
    if let Ok(v) = HeaderValue::from_str(&header) {
        headers.insert("X-MSN-Messenger", v);
    }
    Ok(r)
}

/// `Action=open`: a new session and its task. The opening request holds it already.
fn open(
    query: &Query<'_>,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    listener: &Listener,
) -> Result<Busy, Refusal> {
    let server = match query.server {
        Some(s @ ("NS" | "SB")) => s,
        _ => return Err(Refusal::BadServer),
    };
    // A session that has not signed in holds one of `gateway_max_pending` (per IP too) until
    // it does, or its login times out: `Action=open` floods stay within that share of
    // `max_connections`, and the rest is kept for sessions that sign in.
    let Some(pending) = shared.gateway_pending.acquire(peer.ip()) else {
        tracing::warn!(%peer, pending = shared.gateway_pending.open(), "gateway session refused: too many sessions not signed in");
        return Err(Refusal::Pending);
    };
    let Ok(permit) = shared.connection_slots.clone().try_acquire_owned() else {
        tracing::warn!(%peer, "gateway session refused: connection limit reached");
        return Err(Refusal::Full);
    };
    let (pipe, end) = Pipe::new(shared.config.limits.outbox_bytes);
    let session = Arc::new(GwSession {
        id: new_session_id(),
        pipe,
        busy: AtomicBool::new(true),
        last_seen: Mutex::new(Instant::now()),
        collected: CancellationToken::new(),
    });
    // 128 random bits do not collide in practice; the check costs nothing.
    {
        let mut sessions = shared.gateway.sessions();
        if sessions.contains_key(&session.id) {
            return Err(Refusal::Full);
        }
        sessions.insert(session.id.clone(), session.clone());
    }
    // The session is the server's (this one), whatever `IP` names: the client reports the
    // address it would have connected to, which is ours (`XFR`/`RNG`) or the name it was
    // configured with.
    tracing::debug!(%peer, server, ip = query.ip.unwrap_or(""), "gateway session opened");
    listener.tracker.spawn(run(
        shared.clone(),
        session.clone(),
        end,
        peer,
        listener.shutdown.clone(),
        permit,
        pending,
    ));
    Ok(Busy(session))
}

/// The task that owns a gateway session: runs the connection loop over the pipe, expires
/// the session when its client stops asking, and forgets it once its end has been told.
async fn run(
    shared: Arc<Shared>,
    session: Arc<GwSession>,
    end: SessionEnd,
    peer: SocketAddr,
    shutdown: CancellationToken,
    permit: OwnedSemaphorePermit,
    pending: msgr_mail::ConnSlot,
) {
    let idle = shared.config.limits.gateway_idle();
    let gateway = &shared.gateway;
    let conn = msnp::serve_connection(
        end,
        peer,
        ListenerRole::Serve,
        Transport::HttpGateway,
        shared.clone(),
        shutdown.clone(),
        Some(pending),
    );
    tokio::pin!(conn);
    let expired = tokio::select! {
        ended = &mut conn => {
            session.pipe.finish(ended);
            false
        }
        () = watch_idle(gateway, &session, idle) => true,
    };
    if expired {
        // Like a TCP connection whose client vanished: the loop reads end of file and the
        // session ends as usual (`FLN` to watchers, `BYE` in switchboards).
        tracing::info!(%peer, session = %session.id, "gateway session expired");
        session.pipe.hang_up();
        let ended = conn.await;
        session.pipe.finish(ended);
        return;
    }
    // The session is over (a login that timed out included): its connection slot is free
    // now, not when the client collects the last words or the idle time runs out.
    drop(permit);
    // Keep the session's last words (`OUT OTH`, `OUT SSD`, a switchboard's end) for the
    // client's next request; forget them if it does not come.
    tokio::select! {
        () = session.collected.cancelled() => {}
        () = watch_idle(gateway, &session, idle) => {}
        () = shutdown.cancelled() => {}
    }
    gateway.remove(&session.id);
}

/// Returns once the session has gone `idle` without a request (and has been removed).
async fn watch_idle(gateway: &Gateway, session: &GwSession, idle: Duration) {
    loop {
        match gateway.expire_if_idle(session, idle) {
            Idle::Expired => return,
            Idle::CheckAt(at) => tokio::time::sleep_until(at).await,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn queries() {
        assert_eq!(
            Query::parse("Action=open&Server=NS&IP=messenger.hotmail.com"),
            Query {
                action: Some("open"),
                server: Some("NS"),
                ip: Some("messenger.hotmail.com"),
                session_id: None,
            }
        );
        let q = Query::parse("Action=poll&SessionID=abc");
        assert_eq!((q.action, q.session_id), (Some("poll"), Some("abc")));
        assert_eq!(Query::parse("SessionID").session_id, Some(""));
        assert_eq!(Query::parse(""), Query::default());
    }

    #[test]
    fn session_ids() {
        let a = new_session_id();
        assert!(well_formed_session_id(&a), "{a}");
        assert_ne!(a, new_session_id());
        assert!(!well_formed_session_id(&a.to_uppercase()));
        assert!(!well_formed_session_id(&a[1..]));
        assert!(!well_formed_session_id("954547325.13160"));
    }

    #[test]
    fn gw_ip_names_the_port_unless_it_is_the_default() {
        let g = Gateway::new(
            "msgr.example",
            Some(SocketAddr::from(([0, 0, 0, 0], 80))),
            Some(SocketAddr::from(([0, 0, 0, 0], 8443))),
        );
        assert_eq!(g.gw_ip_http, "msgr.example");
        assert_eq!(g.gw_ip_https, "msgr.example:8443");
        assert_eq!(g.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_sessions_expire_and_busy_ones_do_not() {
        let g = Gateway::new("h", None, None);
        let (pipe, _end) = Pipe::new(16);
        let s = Arc::new(GwSession {
            id: new_session_id(),
            pipe,
            busy: AtomicBool::new(false),
            last_seen: Mutex::new(Instant::now()),
            collected: CancellationToken::new(),
        });
        g.sessions().insert(s.id.clone(), s.clone());
        let idle = Duration::from_secs(60);
        let busy = g.claim(&s.id).unwrap();
        assert_eq!(g.claim(&s.id).err(), Some(Refusal::InFlight));
        tokio::time::advance(Duration::from_secs(120)).await;
        assert!(matches!(g.expire_if_idle(&s, idle), Idle::CheckAt(_)));
        drop(busy);
        assert!(matches!(g.expire_if_idle(&s, idle), Idle::CheckAt(_)));
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(matches!(g.expire_if_idle(&s, idle), Idle::Expired));
        assert_eq!(g.claim(&s.id).err(), Some(Refusal::UnknownSession));
    }
}
