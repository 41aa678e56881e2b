//! msgr's network side: the MSNP listener (dispatch, notification server, switchboard),
//! Passport 1.4 over HTTP and HTTPS, and the hub that routes events between sessions.
//!
//! `msgr-core` decides, this crate only carries: it owns sockets, timers and tasks, and asks
//! the store and the core for everything else.

mod admission;
pub mod config;
mod hashing;
mod hotmail;
mod http;
pub mod hub;
mod msnp;
mod ns;
pub mod passport;
mod queue;
mod sb;
pub mod tls;

use msgr_core::lists::{Change, ContactList};
use msgr_store::{Account, AccountStore, ContactStore, Store};
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;

/// How long connections get to say goodbye after shutdown is requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("creating data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("opening the store: {0}")]
    Store(#[from] msgr_store::StoreError),
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("binding {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("starting the password-hashing threads: {0}")]
    HashThreads(std::io::Error),
    #[error("mail: {0}")]
    Mail(#[from] msgr_mail::MailError),
    #[error("web ticket key: {0}")]
    WebKey(#[from] msgr_web::ticket::KeyError),
}

/// What every connection task shares.
pub(crate) struct Shared {
    pub config: Config,
    pub store: Arc<Store>,
    pub hub: hub::Hub,
    /// Switchboard sessions and their cookies, independent of any NS connection.
    pub switchboards: sb::Switchboards,
    pub tickets: passport::TicketBook,
    /// The threads that verify passwords: bounded, so a login flood cannot take every core
    /// from the sessions already online, and off the async workers.
    pub hashing: hashing::HashPool,
    /// `host:port` of this node's MSNP listener as clients should reach it.
    pub public_msnp: String,
    /// `host:port` of the dispatch-only listener, when there is one.
    pub public_dispatch: Option<String>,
    /// `host:port/path` of the login server, as the nexus advertises it.
    pub dalogin: String,
    /// `http://host:port/login2.srf` on the HTTP listener, when there is one: for clients that
    /// cannot be made to trust msgr's certificate (`/rdr/pprdr-minimal-http.asp`).
    pub dalogin_http: Option<String>,
    /// Round-robin position over `config.dispatch_to`.
    pub dispatch_next: AtomicUsize,
    /// `limits.max_connections`, shared by every MSNP listener and the HTTP gateway's
    /// sessions: each holds a permit for as long as it lives.
    pub connection_slots: Arc<tokio::sync::Semaphore>,
    /// The HTTP gateway's sessions.
    pub gateway: http::Gateway,
    /// Gateway sessions that have not signed in yet (`gateway_max_pending`, per IP too).
    pub gateway_pending: Arc<msgr_mail::ConnLimiter>,
    /// Connections to the HTTP and HTTPS listeners (`http_max_connections`, per IP too, within
    /// the descriptors left after `msnp_fd_reserve`).
    pub http_connections: Arc<msgr_mail::ConnLimiter>,
    /// The password-guess throttle of every login path.
    pub logins: admission::Logins,
    /// Signs the profile's `MSPAuth`, which the web inbox accepts from Messenger's form post.
    pub mspauth: msgr_web::TicketKey,
    /// The web inbox under `/mail/`; set once the mail side is bound (it reads the mail store and
    /// submits through msgr-mail), unset when mail is off.
    pub web: std::sync::OnceLock<msgr_web::Web>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum LookupError {
    #[error(transparent)]
    Store(#[from] msgr_store::StoreError),
    #[error("blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Closed(#[from] hashing::PoolClosed),
}

/// The outcome of a password check.
pub(crate) enum PasswordCheck {
    Accepted(Account),
    /// Wrong password or unknown account (the same time either way).
    Refused,
    /// Not checked: too many attempts for this account or from this address lately.
    Throttled(msgr_core::throttle::Throttled),
}

impl Shared {
    /// Looks an account up off the async workers.
    pub async fn account(&self, email: &str) -> Result<Option<Account>, LookupError> {
        let store = self.store.clone();
        let email = email.to_owned();
        Ok(tokio::task::spawn_blocking(move || store.account(&email)).await??)
    }

    /// Loads `email`'s whole list state off the async workers.
    pub async fn contact_list(&self, email: &str) -> Result<ContactList, LookupError> {
        let store = self.store.clone();
        let email = email.to_owned();
        Ok(tokio::task::spawn_blocking(move || store.load_list(&email)).await??)
    }

    /// Just `email`'s list version.
    pub async fn list_version(&self, email: &str) -> Result<u64, LookupError> {
        let store = self.store.clone();
        let email = email.to_owned();
        Ok(tokio::task::spawn_blocking(move || store.list_version(&email)).await??)
    }

    /// The phones of `email`'s forward-list contacts that may be shown to it (`BPR` in `SYN`).
    pub async fn contact_phones(
        &self,
        email: &str,
    ) -> Result<std::collections::HashMap<String, msgr_core::lists::Phones>, LookupError> {
        let store = self.store.clone();
        let email = email.to_owned();
        Ok(tokio::task::spawn_blocking(move || store.contact_phones(&email)).await??)
    }

    /// Moves the list version of everyone who has `email` on the forward list (its phones
    /// changed); durable when this returns `Ok`. Returns each of them with the new version.
    pub async fn touch_watchers(&self, email: &str) -> Result<Vec<(String, u64)>, LookupError> {
        let store = self.store.clone();
        let email = email.to_owned();
        Ok(tokio::task::spawn_blocking(move || store.touch_watchers(&email)).await??)
    }

    /// `email`'s list state, or `None` if there is no such account.
    pub async fn contact_list_if_exists(
        &self,
        email: &str,
    ) -> Result<Option<ContactList>, LookupError> {
        match self.contact_list(email).await {
            Ok(l) => Ok(Some(l)),
            Err(LookupError::Store(msgr_store::StoreError::AccountNotFound(_))) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Persists `changes` in one transaction; durable when this returns `Ok`. Returns each
    /// owner's list version afterwards.
    pub async fn apply_changes(
        &self,
        changes: Vec<Change>,
    ) -> Result<Vec<(String, u64)>, LookupError> {
        let store = self.store.clone();
        Ok(tokio::task::spawn_blocking(move || store.apply(&changes)).await??)
    }

    /// Stores a new display name for `email`; durable when this returns `Ok`.
    pub async fn set_display_name(&self, email: &str, name: &str) -> Result<(), LookupError> {
        let store = self.store.clone();
        let email = email.to_owned();
        let name = name.to_owned();
        Ok(tokio::task::spawn_blocking(move || store.set_display_name(&email, &name)).await??)
    }

    /// Checks a sign-in from `from` (`what` names the login path for the logs). An unknown
    /// account and a wrong password are both `Refused` and take the same time, so the answer
    /// does not reveal which accounts exist. The throttle decides first whether the password is
    /// checked at all; the check waits in `from`'s share of the hashing queue.
    pub async fn check_password(
        &self,
        email: &str,
        password: &str,
        from: std::net::IpAddr,
        what: &'static str,
    ) -> Result<PasswordCheck, LookupError> {
        if let Err(t) = self.logins.attempt(email, from, what) {
            return Ok(PasswordCheck::Throttled(t));
        }
        let account = self.account(email).await?;
        let phc = account.as_ref().map(|a| a.password_hash.clone());
        let ok = self.hashing.verify(password, phc, from).await?;
        match account.filter(|_| ok) {
            Some(a) => {
                self.logins.succeeded(email, from);
                Ok(PasswordCheck::Accepted(a))
            }
            None => Ok(PasswordCheck::Refused),
        }
    }
}

/// The addresses the listeners actually bound (port 0 resolved).
#[derive(Debug, Clone, Copy)]
pub struct BoundAddrs {
    pub msnp: SocketAddr,
    pub http: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
    /// The dispatch-only MSNP listener, when configured.
    pub dispatch: Option<SocketAddr>,
    /// The SMTP and POP3 listeners.
    pub mail: msgr_mail::MailAddrs,
}

/// The mail side's password check: the same argon2 verification on the same hashing threads as a
/// Passport sign-in ([`Shared::check_password`]), so an unknown account takes as long as a wrong password.
struct MailAuth(Arc<Shared>);

impl msgr_mail::Authenticator for MailAuth {
    fn check<'a>(
        &'a self,
        user: &'a str,
        password: &'a str,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<Option<String>, msgr_mail::AuthUnavailable>>
                + Send
                + 'a,
        >,
    > {
        // A caller that knows no client address is throttled as one address of its own.
        self.check_from(user, password, std::net::IpAddr::from([0, 0, 0, 0]))
    }

    fn check_from<'a>(
        &'a self,
        user: &'a str,
        password: &'a str,
        peer: std::net::IpAddr,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<Option<String>, msgr_mail::AuthUnavailable>>
                + Send
                + 'a,
        >,
    > {
        Box::pin(async move {
            // Throttled is a temporary failure to the mail protocols (SMTP 454, IMAP
            // `NO [UNAVAILABLE]`, POP3 `-ERR [SYS/TEMP]`): the password was not checked.
            match self.0.check_password(user, password, peer, "mail").await {
                Ok(PasswordCheck::Accepted(a)) => Ok(Some(a.email)),
                Ok(PasswordCheck::Refused) => Ok(None),
                Ok(PasswordCheck::Throttled(t)) => Err(msgr_mail::AuthUnavailable(format!(
                    "too many failed logins, retry in {} s",
                    t.retry_after.as_secs().max(1)
                ))),
                Err(e) => Err(msgr_mail::AuthUnavailable(e.to_string())),
            }
        })
    }
}

/// A server with its listeners bound, ready to run.
pub struct Server {
    shared: Arc<Shared>,
    msnp: TcpListener,
    http: Option<TcpListener>,
    https: Option<(TcpListener, TlsAcceptor)>,
    dispatch: Option<TcpListener>,
    mail: Option<msgr_mail::MailServer>,
    /// Every mailbox change, for Messenger's Hotmail notices ([`hotmail::run`]).
    mail_tap: Option<tokio::sync::mpsc::Receiver<msgr_mail::notify::MailEvent>>,
    addrs: BoundAddrs,
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { what, addr, source })
}

impl Server {
    /// Opens the store (creating the data directory), prepares TLS and binds every listener.
    /// Logs one `listening …` line per listener with the address it bound.
    pub async fn bind(config: Config) -> Result<Server, ServerError> {
        tls::install_crypto_provider();
        std::fs::create_dir_all(&config.data_dir).map_err(|source| ServerError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let store = Arc::new(Store::open_sqlite(&config.database_path())?);

        let msnp = bind("msnp", config.msnp).await?;
        let msnp_addr = msnp.local_addr().map_err(|source| ServerError::Bind {
            what: "msnp",
            addr: config.msnp,
            source,
        })?;
        let http = match config.http {
            Some(a) => Some(bind("http", a).await?),
            None => None,
        };
        let dispatch = match config.dispatch {
            Some(a) => Some(bind("dispatch", a).await?),
            None => None,
        };
        let mail = &config.mail;
        let mail_on = [
            mail.smtp,
            mail.submission,
            mail.submissions,
            mail.pop3,
            mail.pop3s,
            mail.imap,
            mail.imaps,
        ]
        .iter()
        .any(Option::is_some);
        // HTTPS and the mail listeners share one certificate, generated once if the operator has none.
        let cert = if config.https.is_some() || mail_on {
            Some(tls::ensure_certificate(
                &config.data_dir,
                config.tls_cert.as_deref(),
                config.tls_key.as_deref(),
                config.public_host.as_deref(),
            )?)
        } else {
            None
        };
        let https = match (config.https, &cert) {
            (Some(a), Some((cert, key))) => {
                let acceptor = TlsAcceptor::from(tls::server_config(cert, key)?);
                Some((bind("https", a).await?, acceptor))
            }
            _ => None,
        };
        let mail_tls = match (&cert, mail_on) {
            (Some((cert, key)), true) => Some(tls::mail_server_config(cert, key)?),
            _ => None,
        };
        let mut addrs = BoundAddrs {
            msnp: msnp_addr,
            http: http.as_ref().and_then(|l| l.local_addr().ok()),
            https: https.as_ref().and_then(|(l, _)| l.local_addr().ok()),
            dispatch: dispatch.as_ref().and_then(|l| l.local_addr().ok()),
            mail: msgr_mail::MailAddrs::default(),
        };

        let host = config.public_host.clone().unwrap_or_else(|| {
            if msnp_addr.ip().is_unspecified() {
                tracing::warn!(
                    "listening on all interfaces without public_host: advertising 127.0.0.1"
                );
                "127.0.0.1".to_owned()
            } else {
                msnp_addr.ip().to_string()
            }
        });
        let dalogin = passport::dalogin(
            &host,
            addrs.https.map(|a| a.port()),
            addrs.http.map(|a| a.port()),
        );
        let dalogin_http = addrs
            .http
            .map(|a| format!("http://{host}:{}/login2.srf", a.port()));
        let nofile = admission::nofile_limit();
        let http_cap = admission::http_connection_cap(
            config.limits.http_max_connections,
            config.limits.msnp_fd_reserve,
            nofile,
        );
        tracing::info!(
            nofile = nofile.unwrap_or(0),
            http_connections = http_cap,
            "descriptor budget: HTTP and HTTPS connections capped, the rest kept for MSNP"
        );
        let hash_threads = match config.limits.hash_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)),
            n => n,
        };
        let shared = Arc::new(Shared {
            public_msnp: format!("{host}:{}", msnp_addr.port()),
            public_dispatch: addrs.dispatch.map(|a| format!("{host}:{}", a.port())),
            dalogin,
            dalogin_http,
            tickets: passport::TicketBook::new(config.limits.ticket_ttl()),
            hashing: hashing::HashPool::start(
                hash_threads,
                config.limits.hash_queue_per_ip,
                config.limits.hash_queue,
            )
            .map_err(ServerError::HashThreads)?,
            gateway_pending: msgr_mail::ConnLimiter::new(
                config.limits.gateway_max_pending,
                config.limits.gateway_max_pending_per_ip,
            ),
            http_connections: msgr_mail::ConnLimiter::new(
                http_cap,
                config.limits.http_max_connections_per_ip,
            ),
            logins: admission::Logins::new(config.limits.throttle()),
            hub: hub::Hub::new(),
            switchboards: sb::Switchboards::new(&config.limits),
            store,
            dispatch_next: AtomicUsize::new(0),
            connection_slots: Arc::new(tokio::sync::Semaphore::new(config.limits.max_connections)),
            gateway: http::Gateway::new(&host, addrs.http, addrs.https),
            mspauth: msgr_web::TicketKey::load_or_create(
                &config.data_dir,
                Duration::from_secs(config.web.ticket_ttl_secs),
            )?,
            web: std::sync::OnceLock::new(),
            config,
        });

        tracing::info!("listening msnp={}", addrs.msnp);
        if let Some(a) = addrs.http {
            tracing::info!("listening http={a}");
        }
        if let Some(a) = addrs.https {
            tracing::info!("listening https={a}");
        }
        if let Some(a) = addrs.dispatch {
            tracing::info!("listening dispatch={a}");
        }
        if !shared.config.dispatch_to.is_empty() {
            tracing::info!(targets = ?shared.config.dispatch_to, "dispatch-only mode");
        }
        let mut mail_tap = None;
        let mail = match mail_tls {
            Some(tls) => {
                let server = msgr_mail::MailServer::bind(msgr_mail::MailDeps {
                    config: msgr_mail::MailConfig {
                        // The DKIM key is generated into the data directory unless configured.
                        dkim_dir: shared
                            .config
                            .mail
                            .dkim_dir
                            .clone()
                            .or_else(|| Some(shared.config.data_dir.join("dkim"))),
                        ..shared.config.mail.clone()
                    },
                    store: shared.store.clone(),
                    auth: Arc::new(MailAuth(shared.clone())),
                    tls,
                    public_host: shared.config.public_host.clone(),
                })
                .await?;
                addrs.mail = server.addrs();
                mail_tap = Some(server.context().notify.tap(hotmail::TAP_CAPACITY));
                let web = msgr_web::Web::new(msgr_web::WebDeps {
                    config: shared.config.web.clone(),
                    mail: server.context(),
                    tickets: shared.mspauth.clone(),
                    https_root: addrs.https.map(|_| passport::site_root(&shared.dalogin)),
                });
                let _ = shared.web.set(web);
                Some(server)
            }
            None => None,
        };
        Ok(Server {
            shared,
            msnp,
            http,
            https,
            dispatch,
            mail,
            mail_tap,
            addrs,
        })
    }

    pub fn addrs(&self) -> BoundAddrs {
        self.addrs
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, says `OUT SSD` to online
    /// sessions and waits (up to a grace period) for connections to close.
    pub async fn run(self, shutdown: CancellationToken) {
        let tracker = TaskTracker::new();
        let mut listeners = tokio::task::JoinSet::new();
        listeners.spawn(msnp::accept_loop(
            self.msnp,
            msnp::ListenerRole::Serve,
            self.shared.clone(),
            shutdown.clone(),
            tracker.clone(),
        ));
        if let Some(l) = self.dispatch {
            listeners.spawn(msnp::accept_loop(
                l,
                msnp::ListenerRole::Dispatch,
                self.shared.clone(),
                shutdown.clone(),
                tracker.clone(),
            ));
        }
        if let Some(l) = self.http {
            listeners.spawn(http::accept_loop(
                l,
                None,
                self.shared.clone(),
                shutdown.clone(),
                tracker.clone(),
            ));
        }
        if let Some((l, acceptor)) = self.https {
            listeners.spawn(http::accept_loop(
                l,
                Some(acceptor),
                self.shared.clone(),
                shutdown.clone(),
                tracker.clone(),
            ));
        }
        if let Some(tap) = self.mail_tap {
            tracker.spawn(hotmail::run(self.shared.clone(), tap, shutdown.clone()));
        }
        if let Some(mail) = self.mail {
            // The mail side keeps its own tracker and grace period; it ends with the same token.
            listeners.spawn(mail.run(shutdown.clone()));
        }
        while listeners.join_next().await.is_some() {}
        tracker.close();
        tracing::info!(online = self.shared.hub.online_count(), "shutting down");
        if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after the grace period");
        }
        tracing::info!("stopped");
    }
}
