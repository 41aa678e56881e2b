//! The HTTP and HTTPS listeners: Passport 1.4 (the `/rdr/pprdr.asp` nexus, its minimal forms
//! `/rdr/pprdr-minimal.asp` and `/rdr/pprdr-minimal-http.asp`, and `/login2.srf`), the MSNP
//! HTTP gateway (`/gateway/gateway.dll`, see [`gateway`]), the web inbox under `/mail/`
//! (`msgr-web`, when the server hosts mail) and a small front page. The same routes are served over
//! plain HTTP and TLS (the web inbox sends plain-HTTP requests to the HTTPS listener).

mod gateway;
mod header_case;
mod lenient;

pub(crate) use gateway::Gateway;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::passport::{self, parse_authorization};
use crate::{PasswordCheck, Shared};

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a request handler knows about the listener it came through, and what it needs to
/// start tasks that outlive the request (gateway sessions).
#[derive(Clone)]
pub(crate) struct Listener {
    /// HTTPS rather than plain HTTP.
    pub tls: bool,
    pub tracker: TaskTracker,
    pub shutdown: CancellationToken,
}

/// Accepts HTTP (or, with `tls`, HTTPS) connections until `shutdown` fires.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let name = if tls.is_some() { "https" } else { "http" };
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
                let pause = backoff.failed(name, &e);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    () = tokio::time::sleep(pause) => continue,
                }
            }
        };
        // HTTP and HTTPS share one cap, in all and per client IP, within the descriptors left
        // after MSNP's reserve: idle connections cannot starve MSNP logins of descriptors.
        let Some(slot) = shared.http_connections.acquire(peer.ip()) else {
            tracing::info!(listener = name, %peer, open = shared.http_connections.open(), "HTTP connection refused: connection limit reached");
            drop(stream);
            continue;
        };
        let shared = shared.clone();
        let listener = Listener {
            tls: tls.is_some(),
            tracker: tracker.clone(),
            shutdown: shutdown.clone(),
        };
        let tls = tls.clone();
        tracker.spawn(async move {
            let _slot = slot;
            match tls {
                None => serve(stream, peer, shared, listener).await,
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls_stream)) => serve(tls_stream, peer, shared, listener).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

async fn serve<S>(mut stream: S, peer: SocketAddr, shared: Arc<Shared>, listener: Listener)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let first = tokio::time::timeout(
        Duration::from_secs(30),
        lenient::read_first_line(&mut stream),
    )
    .await;
    let prefix = match first {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "HTTP read failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "HTTP request line timed out");
            return;
        }
    };
    // Header names go out as the official servers spelled them (see `header_case`).
    let stream = header_case::HeaderCase::new(lenient::Prefixed::new(prefix, stream));
    let shutdown = listener.shutdown.clone();
    let service = service_fn(move |req| {
        let shared = shared.clone();
        let listener = listener.clone();
        async move {
            let head = req.method() == Method::HEAD;
            let mut r = match shared.web.get() {
                // The web inbox: everything under `/mail/` (when the server hosts mail).
                Some(web) if msgr_web::Web::owns(req.uri().path()) => {
                    let conn = msgr_web::Conn {
                        peer,
                        tls: listener.tls,
                        shutdown: listener.shutdown.clone(),
                        tracker: listener.tracker.clone(),
                    };
                    web.handle(req, &conn).await
                }
                _ => route(req, peer, &shared, &listener)
                    .await
                    .map(BodyExt::boxed),
            };
            // A HEAD answer's Content-Length must be the body actually sent (none), so that
            // `header_case` finds where the next response starts.
            if head {
                *r.body_mut() = Full::new(Bytes::new()).boxed();
            }
            Ok::<_, Infallible>(r)
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
        }
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}

async fn route(
    req: Request<Incoming>,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    listener: &Listener,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    tracing::debug!(%peer, method = %req.method(), path, "HTTP request");
    match path {
        "/gateway/gateway.dll" => gateway::handle(req, peer, shared, listener).await,
        "/rdr/pprdr.asp" => nexus(shared, NexusForm::Faithful),
        "/rdr/pprdr-minimal.asp" => nexus(shared, NexusForm::Minimal),
        "/rdr/pprdr-minimal-http.asp" => nexus(shared, NexusForm::MinimalHttp),
        "/login2.srf" | "/ppsecure/login2.srf" => login(&req, peer, shared).await,
        "/" => text(
            StatusCode::OK,
            "msgr: an MSN Messenger service. Point your client's Passport nexus at /rdr/pprdr.asp.\n",
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
    r
}

/// Which `PassportURLs` a nexus request gets.
#[derive(Debug, Clone, Copy)]
enum NexusForm {
    /// The original service's header: every field, `DALogin=host/path` without a scheme
    /// (clients prefix `https://`).
    Faithful,
    /// Only `DALogin=<url>` with an explicit scheme, for libraries that strip `DALogin=` from
    /// the whole header value and use the rest as the URL.
    Minimal,
    /// The minimal form pointing at the plain-HTTP listener's `login2.srf`, for clients whose
    /// TLS stack only trusts public roots (msnp11-sdk); 404 without an HTTP listener.
    MinimalHttp,
}

/// The nexus: where to find the login server.
fn nexus(shared: &Shared, form: NexusForm) -> Response<Full<Bytes>> {
    let mut r = empty(StatusCode::OK);
    let urls = match form {
        NexusForm::Faithful => passport::passport_urls(&shared.dalogin),
        NexusForm::Minimal if shared.dalogin.contains("://") => {
            format!("DALogin={}", shared.dalogin)
        }
        NexusForm::Minimal => format!("DALogin=https://{}", shared.dalogin),
        NexusForm::MinimalHttp => match &shared.dalogin_http {
            Some(url) => format!("DALogin={url}"),
            None => return text(StatusCode::NOT_FOUND, "no HTTP listener\n"),
        },
    };
    match HeaderValue::from_str(&urls) {
        Ok(v) => {
            r.headers_mut().insert("PassportURLs", v);
        }
        Err(_) => *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR,
    }
    r
}

/// `login2.srf`: checks the password and hands out a ticket.
async fn login(
    req: &Request<Incoming>,
    peer: SocketAddr,
    shared: &Shared,
) -> Response<Full<Bytes>> {
    let creds = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_authorization);
    let Some(creds) = creds else {
        tracing::info!(%peer, "login2.srf without Passport1.4 credentials");
        return refused();
    };
    let checked = shared
        .check_password(&creds.sign_in, &creds.password, peer.ip(), "passport")
        .await;
    match checked {
        Ok(PasswordCheck::Accepted(account)) => {
            let ticket = shared.tickets.issue(&account.email);
            let profile = passport::random_token(48);
            tracing::info!(%peer, account = %account.email, "passport ticket issued");
            let mut r = empty(StatusCode::OK);
            match HeaderValue::from_str(&passport::authentication_info(&ticket, &profile)) {
                Ok(v) => {
                    r.headers_mut().insert("Authentication-Info", v);
                }
                Err(_) => *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR,
            }
            r
        }
        Ok(PasswordCheck::Refused) => {
            tracing::info!(%peer, sign_in = %creds.sign_in, "passport login refused: bad credentials");
            refused()
        }
        // Answered as a failed sign-in (the client asks for the password again), with the wait
        // in `Retry-After`; logged and counted by the throttle.
        Ok(PasswordCheck::Throttled(t)) => {
            let mut r = refused();
            r.headers_mut().insert(
                hyper::header::RETRY_AFTER,
                HeaderValue::from(t.retry_after.as_secs().max(1)),
            );
            r
        }
        Err(e) => {
            tracing::error!(%peer, error = %e, "passport login failed");
            empty(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

fn refused() -> Response<Full<Bytes>> {
    let mut r = empty(StatusCode::UNAUTHORIZED);
    r.headers_mut().insert(
        "WWW-Authenticate",
        HeaderValue::from_static(passport::AUTHENTICATE_FAILED),
    );
    r
}
