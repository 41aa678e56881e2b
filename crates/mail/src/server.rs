//! [`MailServer`]: binds the mail listeners (SMTP MX, submission, submissions, POP3, POP3S, IMAP, IMAPS), runs their
//! accept loops, the group-commit task and outbound delivery, and stops them all on one token.

use crate::listen::{self, Limiter, Listener};
use crate::smtp::{self, Mode};
use crate::{Context, MailDeps};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long sessions get to finish (a message being stored, a `QUIT`) after shutdown is requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What refused SMTP connections hear (RFC 5321 §3.1: a server may answer 421 instead of 220, then close).
const SMTP_REFUSAL: &[u8] = b"421 4.7.0 Error: too many connections\r\n";
/// What refused POP3 connections hear instead of the greeting.
const POP3_REFUSAL: &[u8] = b"-ERR [SYS/TEMP] too many connections\r\n";
/// What refused IMAP connections hear instead of the greeting (RFC 3501 §7.1.5: `BYE` as greeting).
const IMAP_REFUSAL: &[u8] = b"* BYE [UNAVAILABLE] too many connections\r\n";

/// Why the mail side could not start.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("binding {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The addresses the mail listeners bound (port 0 resolved); `None` for a listener that is off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailAddrs {
    pub smtp: Option<SocketAddr>,
    pub submission: Option<SocketAddr>,
    pub submissions: Option<SocketAddr>,
    pub pop3: Option<SocketAddr>,
    pub pop3s: Option<SocketAddr>,
    pub imap: Option<SocketAddr>,
    pub imaps: Option<SocketAddr>,
}

/// Which protocol a listener speaks.
#[derive(Clone, Copy)]
enum Kind {
    Smtp(Mode),
    Pop3 { implicit_tls: bool },
    Imap { implicit_tls: bool },
}

/// The mail side with its listeners bound, ready to run.
pub struct MailServer {
    ctx: Arc<Context>,
    listeners: Vec<(Kind, &'static str, TcpListener)>,
    addrs: MailAddrs,
    tracker: TaskTracker,
}

impl MailServer {
    /// Binds every configured listener and starts the group-commit task. Logs `listening NAME=ADDR` for
    /// each listener.
    pub async fn bind(deps: MailDeps) -> Result<MailServer, MailError> {
        let config = deps.config.clone();
        let wanted = [
            ("smtp", config.smtp, Kind::Smtp(Mode::Mx)),
            (
                "submission",
                config.submission,
                Kind::Smtp(Mode::Submission),
            ),
            (
                "submissions",
                config.submissions,
                Kind::Smtp(Mode::Submissions),
            ),
            (
                "pop3",
                config.pop3,
                Kind::Pop3 {
                    implicit_tls: false,
                },
            ),
            ("pop3s", config.pop3s, Kind::Pop3 { implicit_tls: true }),
            (
                "imap",
                config.imap,
                Kind::Imap {
                    implicit_tls: false,
                },
            ),
            ("imaps", config.imaps, Kind::Imap { implicit_tls: true }),
        ];
        let mut listeners = Vec::new();
        let mut addrs = MailAddrs::default();
        for (what, addr, kind) in wanted {
            let Some(addr) = addr else { continue };
            let bind_err = |source| MailError::Bind { what, addr, source };
            let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
            let bound = listener.local_addr().map_err(bind_err)?;
            *match what {
                "smtp" => &mut addrs.smtp,
                "submission" => &mut addrs.submission,
                "submissions" => &mut addrs.submissions,
                "pop3" => &mut addrs.pop3,
                "pop3s" => &mut addrs.pop3s,
                "imap" => &mut addrs.imap,
                _ => &mut addrs.imaps,
            } = Some(bound);
            listeners.push((kind, what, listener));
        }
        let tracker = TaskTracker::new();
        let ctx = Context::new(deps, CancellationToken::new(), &tracker);
        if ctx.spam.is_some() {
            // Users' moves into and out of Junk train their own spam counts.
            let trainer = crate::spam::Trainer {
                store: ctx.store.clone(),
            };
            let _ = ctx.junk_hook.set(Arc::new(trainer));
        }
        for (_, what, l) in &listeners {
            if let Ok(a) = l.local_addr() {
                tracing::info!("listening {what}={a}");
            }
        }
        Ok(MailServer {
            ctx,
            listeners,
            addrs,
            tracker,
        })
    }

    pub fn addrs(&self) -> MailAddrs {
        self.addrs
    }

    /// The shared context (for tests and for the server that hosts the mail side).
    pub fn context(&self) -> Arc<Context> {
        self.ctx.clone()
    }

    /// Serves until `shutdown` is cancelled; then stops accepting, tells every session to say goodbye and
    /// waits up to a grace period for them (and the commit of deliveries already queued).
    pub async fn run(self, shutdown: CancellationToken) {
        let MailServer {
            ctx,
            listeners,
            tracker,
            ..
        } = self;
        let limiter = Limiter::new(
            ctx.config.max_connections,
            ctx.config.max_connections_per_ip,
        );
        let mut loops = tokio::task::JoinSet::new();
        for (kind, name, listener) in listeners {
            let ctx = ctx.clone();
            let refusal = match kind {
                Kind::Smtp(Mode::Submissions)
                | Kind::Pop3 { implicit_tls: true }
                | Kind::Imap { implicit_tls: true } => &b""[..],
                Kind::Smtp(_) => SMTP_REFUSAL,
                Kind::Pop3 { .. } => POP3_REFUSAL,
                Kind::Imap { .. } => IMAP_REFUSAL,
            };
            let l = Listener {
                name,
                listener,
                refusal,
            };
            let token = ctx.shutdown.clone();
            let limiter = limiter.clone();
            let tracker = tracker.clone();
            loops.spawn(async move {
                listen::accept_loop(l, limiter, token.clone(), tracker, move |stream, peer| {
                    let ctx = ctx.clone();
                    let token = token.clone();
                    async move {
                        match kind {
                            Kind::Smtp(mode) => smtp::serve(stream, ctx, peer, mode).await,
                            Kind::Pop3 { implicit_tls } => {
                                crate::pop3::serve_tcp(stream, ctx, peer, implicit_tls, token).await
                            }
                            Kind::Imap { implicit_tls } => {
                                crate::imap::serve_tcp(stream, ctx, peer, implicit_tls, token).await
                            }
                        }
                    }
                })
                .await;
            });
        }
        tracker.spawn(crate::outbound::run(ctx.clone(), ctx.shutdown.clone()));

        shutdown.cancelled().await;
        ctx.shutdown.cancel();
        while loops.join_next().await.is_some() {}
        tracker.close();
        // Every session holds the context; drop ours so the tasks own the last references.
        drop(ctx);
        if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("mail sessions still open after the grace period");
        }
    }
}
