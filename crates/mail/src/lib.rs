//! msgr's mail side: the SMTP listeners (inbound MX, submission with STARTTLS and implicit TLS), the outbound
//! queue that delivers to other hosts, and POP3, all over the mail store of `msgr-store`.
//!
//! No code here knows MSNP. The server crate builds a [`MailServer`] beside its MSNP listeners, lends it the
//! password check (its hashing threads) and the TLS configuration, and runs it under the same shutdown token.

pub mod auth;
pub mod config;
pub mod date;
pub mod deliver;
pub mod dkim;
pub mod dnsbl;
pub mod imap;
mod listen;
pub mod mime;
pub mod notify;
pub mod outbound;
pub mod pop3;
mod server;
pub mod smtp;
pub mod spam;
pub mod submit;

pub use config::MailConfig;
pub use deliver::{DeliverError, Deliverer};
/// The connection caps (in all and per client IP, a drop-guard slot each) of the mail listeners, also
/// used by the server for its HTTP listeners and for gateway sessions that have not signed in.
pub use listen::{AcceptBackoff, Limiter as ConnLimiter, Slot as ConnSlot};
pub use server::{MailAddrs, MailError, MailServer};

use msgr_store::{MailStore, Store, StoreError};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Checks a mail client's credentials: the server lends its password-hashing threads through this, so SMTP
/// `AUTH` and POP3 `PASS` cost the async workers nothing and take the same time for unknown accounts.
pub trait Authenticator: Send + Sync + 'static {
    /// `Some(lowercased account)` if `password` is right for `user`, `None` otherwise (unknown account
    /// included). `Err` only when the check itself could not run.
    fn check<'a>(
        &'a self,
        user: &'a str,
        password: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Option<String>, AuthUnavailable>> + Send + 'a>>;

    /// [`Authenticator::check`] for a client at `peer`, so that the server can throttle password
    /// guessing per client address (`msgr_core::throttle`) and keep each address's share of the
    /// hashing queue. Without an address the check is [`Authenticator::check`]'s.
    fn check_from<'a>(
        &'a self,
        user: &'a str,
        password: &'a str,
        peer: std::net::IpAddr,
    ) -> Pin<Box<dyn Future<Output = Result<Option<String>, AuthUnavailable>> + Send + 'a>> {
        let _ = peer;
        self.check(user, password)
    }
}

/// The credential check could not run (the server is shutting down or the store failed).
#[derive(Debug, thiserror::Error)]
#[error("credential check unavailable: {0}")]
pub struct AuthUnavailable(pub String);

/// A store lookup made off the async workers failed.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("store lookup task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// What the mail side is given by the server that hosts it.
pub struct MailDeps {
    pub config: MailConfig,
    pub store: Arc<Store>,
    pub auth: Arc<dyn Authenticator>,
    /// The server's TLS configuration (the HTTPS certificate), for STARTTLS, STLS and the implicit-TLS ports.
    pub tls: Arc<rustls::ServerConfig>,
    /// The server's public host name, the default for `config.hostname`.
    pub public_host: Option<String>,
}

/// What every mail session and task shares. Built once by the server; sessions hold an `Arc`.
pub struct Context {
    pub config: MailConfig,
    pub store: Arc<Store>,
    pub auth: Arc<dyn Authenticator>,
    pub tls: tokio_rustls::TlsAcceptor,
    /// `config.hostname`, else the server's public host, else `localhost`.
    pub hostname: String,
    /// The MX's spam filter with its global model; `None` when `[mail.spam] enabled = false`.
    pub spam: Option<Arc<spam::SpamFilter>>,
    /// SPF/DKIM/DMARC and the DNS blocklists on the MX; `None` when `[mail] sender_auth = false` and
    /// `dnsbl` is empty, or no resolver could be set up.
    pub sender_auth: Option<Arc<auth::SenderAuth>>,
    /// Signs outbound mail; `None` without `config.dkim_dir` or when its key cannot be read or made.
    pub dkim: Option<dkim::Signer>,
    /// Woken when mail enters the outbound queue (or `msgr mail retry` asks), so delivery starts at once.
    pub outbound_kick: tokio::sync::Notify,
    /// The maildrops POP3 sessions hold (RFC 1939 §8: one session per maildrop). `Default::default()`.
    pub maildrop_locks: pop3::MaildropLocks,
    /// The group-commit delivery task's handle: every message stored by a session goes through it.
    pub deliverer: Deliverer,
    /// Who hears that a mailbox changed (IMAP sessions, later the hub); see [`notify`].
    pub notify: Arc<notify::Notifier>,
    /// Told when a message moves into or out of `Junk` (the spam filter's training, a later issue). Unset:
    /// nobody listens.
    pub junk_hook: std::sync::OnceLock<Arc<dyn JunkHook>>,
    /// Cancelled when the server shuts down: sessions say goodbye (`421`, `-ERR`, `* BYE`) and close.
    pub shutdown: CancellationToken,
}

/// Which way a message crossed the `Junk` folder's boundary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JunkMove {
    /// The user says it is spam (moved or copied into `Junk`).
    IntoJunk,
    /// The user says it is not spam (moved out of `Junk` to another folder).
    OutOfJunk,
}

/// The spam filter's hook: called once an IMAP `COPY` or `MOVE` into `Junk` (the user says spam), or a
/// `MOVE` out of `Junk` to a folder other than `Trash` (the user says not spam), is durable, with the
/// account and where the messages are now (folder id and their new UIDs, to read them from the store).
/// Implementations must not block (hand the work to a task of their own).
pub trait JunkHook: Send + Sync + 'static {
    fn moved(&self, account: &str, direction: JunkMove, folder_id: i64, uids: &[u32]);
}

impl Context {
    /// Builds the shared context and starts the group-commit task on `tracker`; both stop on `shutdown`.
    pub fn new(deps: MailDeps, shutdown: CancellationToken, tracker: &TaskTracker) -> Arc<Context> {
        let MailDeps {
            config,
            store,
            auth,
            tls,
            public_host,
        } = deps;
        let spam = config
            .spam
            .enabled
            .then(|| Arc::new(spam::SpamFilter::from_config(&config.spam)));
        let hostname = config
            .hostname
            .clone()
            .or(public_host)
            .unwrap_or_else(|| "localhost".to_owned());
        let notify = Arc::new(notify::Notifier::default());
        let deliverer = Deliverer::start(
            store.clone(),
            config.group_commit_max,
            config.quota_bytes,
            notify.clone(),
            shutdown.clone(),
            tracker,
        );
        let sender_auth = if config.sender_auth || !config.dnsbl.is_empty() {
            match auth::SenderAuth::new(&config, &hostname) {
                Ok(a) => Some(Arc::new(a)),
                Err(e) => {
                    tracing::warn!(error = %e, "sender authentication off");
                    None
                }
            }
        } else {
            None
        };
        let dkim =
            config
                .dkim_dir
                .as_deref()
                .and_then(|dir| match dkim::Signer::load_or_create(dir) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        tracing::warn!(error = %e, "outbound mail will not be DKIM-signed");
                        None
                    }
                });
        Arc::new(Context {
            config,
            store,
            auth,
            tls: tokio_rustls::TlsAcceptor::from(tls),
            hostname,
            spam,
            sender_auth,
            dkim,
            outbound_kick: tokio::sync::Notify::new(),
            maildrop_locks: Default::default(),
            deliverer,
            notify,
            junk_hook: std::sync::OnceLock::new(),
            shutdown,
        })
    }

    /// Whether mail for `domain` is delivered here: one of `config.domains`, or, when that list is empty,
    /// the domain of some account.
    pub async fn is_local_domain(&self, domain: &str) -> Result<bool, LookupError> {
        if !self.config.domains.is_empty() {
            return Ok(self
                .config
                .domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(domain)));
        }
        let store = self.store.clone();
        let domain = domain.to_owned();
        Ok(tokio::task::spawn_blocking(move || store.is_account_domain(&domain)).await??)
    }

    /// Tells the spam filter's [`JunkHook`] the user's verdict after a durable `COPY` (`remove` false) or
    /// `MOVE` of `account`'s messages from a folder with role `from` into one with role `to` (folder id
    /// `to_folder`, where they now have `new_uids`). IMAP and the web inbox both call this.
    ///
    /// Into `Junk` by copy or move says "spam"; only a move out of `Junk` to somewhere other than `Trash`
    /// says "not spam" (a copy leaves it in `Junk`, and deleting spam is no verdict).
    pub fn junk_verdict(
        &self,
        account: &str,
        from: Option<msgr_store::SpecialUse>,
        to: Option<msgr_store::SpecialUse>,
        remove: bool,
        to_folder: i64,
        new_uids: &[u32],
    ) {
        use msgr_store::SpecialUse;
        let into_junk = to == Some(SpecialUse::Junk);
        let from_junk = from == Some(SpecialUse::Junk);
        let out_of_junk = from_junk && !into_junk && remove && to != Some(SpecialUse::Trash);
        if new_uids.is_empty() || !((into_junk && !from_junk) || out_of_junk) {
            return;
        }
        if let Some(hook) = self.junk_hook.get() {
            let direction = if into_junk {
                JunkMove::IntoJunk
            } else {
                JunkMove::OutOfJunk
            };
            hook.moved(account, direction, to_folder, new_uids);
        }
    }

    /// The account (lowercased, as stored) whose mailbox `address` names, if there is one.
    pub async fn local_account(&self, address: &str) -> Result<Option<String>, LookupError> {
        let store = self.store.clone();
        let address = address.to_owned();
        let mailbox = tokio::task::spawn_blocking(move || store.mailbox(&address)).await??;
        Ok(mailbox.map(|m| m.email))
    }
}

/// A real [`Context`] for unit tests: an SQLite store in a temporary directory with the accounts
/// `alice@example.com` and `bob@example.com` (password `pw` for both), a self-signed certificate.
#[cfg(test)]
pub(crate) mod testing {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use msgr_store::{AccountStore, NewAccount};

    /// Accepts `pw` for the two test accounts. (The server's real check is argon2 on its hashing threads;
    /// the integration tests exercise that one.)
    struct Fixed;

    impl Authenticator for Fixed {
        fn check<'a>(
            &'a self,
            user: &'a str,
            password: &'a str,
        ) -> Pin<Box<dyn Future<Output = Result<Option<String>, AuthUnavailable>> + Send + 'a>>
        {
            let ok = password == "pw"
                && ["alice@example.com", "bob@example.com"]
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(user));
            Box::pin(async move { Ok(ok.then(|| user.to_ascii_lowercase())) })
        }
    }

    pub(crate) struct TestContext {
        pub ctx: Arc<Context>,
        pub tracker: TaskTracker,
        _dir: tempfile::TempDir,
    }

    pub(crate) fn context(mut config: MailConfig) -> TestContext {
        // Unit tests never ask outside DNS: sender authentication only against a test's own servers.
        config.sender_auth &= !config.auth_dns.is_empty();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("msgr.db")).unwrap();
        for email in ["alice@example.com", "bob@example.com"] {
            store
                .create_account(NewAccount {
                    email: email.to_owned(),
                    display_name: email.to_owned(),
                    password_hash: "unused".to_owned(),
                    md5_secret: None,
                })
                .unwrap();
        }
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
        let tracker = TaskTracker::new();
        let ctx = Context::new(
            MailDeps {
                config,
                store: Arc::new(store),
                auth: Arc::new(Fixed),
                tls: Arc::new(tls),
                public_host: None,
            },
            CancellationToken::new(),
            &tracker,
        );
        TestContext {
            ctx,
            tracker,
            _dir: dir,
        }
    }
}
