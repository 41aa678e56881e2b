//! msgr's web inbox: the webmail pages under `/mail/` (sign-in, folders, message lists, reading,
//! compose, search, live updates), mounted by the server's HTTP and HTTPS listeners.
//!
//! One job: turn HTTP requests into reads and writes of the mail store and submissions through
//! msgr-mail, and render the answers. It knows no MSNP; the Messenger side reaches it only through
//! the `MSPAuth` ticket ([`ticket`]) that the notification server puts in the profile and the client
//! posts to `/mail/login`.
//!
//! | path | what |
//! |---|---|
//! | `GET /mail/login`, `POST /mail/login` | sign-in form (password on the hashing threads, rate-limited), or Messenger's Hotmail form post with `auth=<MSPAuth>` |
//! | `POST /mail/logout` | ends the session server-side |
//! | `GET /mail/inbox`, `/mail/folder?name=&page=`, `/mail/folders` | message lists, folder list |
//! | `GET /mail/message?folder=&uid=`, `/mail/message/html`, `/mail/message/source`, `/mail/attachment` | reading (marks `\Seen`), the sanitised HTML frame, the whole message, attachments |
//! | `POST /mail/delete`, `/mail/junk`, `/mail/move`, `/mail/mark` | changes (CSRF-checked), announced on msgr-mail's notifier |
//! | `GET /mail/compose`, `POST /mail/send` | compose, reply, reply-all, forward; sent by [`msgr_mail::submit::submit`] |
//! | `GET /mail/search?q=` | subject, sender and text of every folder |
//! | `GET /mail/events` | Server-Sent Events when the mailbox changes (for `static/app.js`) |
//!
//! Every answer carries a strict `Content-Security-Policy` (no inline script or style, never framed),
//! `X-Content-Type-Options: nosniff` and `Cache-Control: no-store`. Bad input is answered with a
//! generic error page and a log line, never a panic.

pub mod config;
mod events;
pub mod http;
mod limiter;
mod mailbox;
mod message;
mod pages;
pub mod sanitize;
pub mod session;
pub mod ticket;
pub mod view;

mod compose;
mod login;

pub use config::WebConfig;
pub use http::WebBody;
pub use ticket::{TicketError, TicketKey};

use hyper::{Method, Request, Response, StatusCode};
use msgr_mail::Context as MailContext;
use msgr_store::{AccountStore, Folder, MailStore, Store, StoreError};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What the web inbox is given by the server that mounts it.
pub struct WebDeps {
    pub config: WebConfig,
    /// The mail side: its store, notifier, submission path, junk hook and password check.
    pub mail: Arc<MailContext>,
    /// Checks the `MSPAuth` tickets the notification server issues with the same key.
    pub tickets: TicketKey,
    /// `https://host:port/` of the HTTPS listener: requests that arrive over plain HTTP are sent
    /// there (the session cookie is `Secure`). `None`: served where they arrive.
    pub https_root: Option<String>,
}

/// What the listener knows about one request.
#[derive(Clone)]
pub struct Conn {
    pub peer: SocketAddr,
    /// Over TLS.
    pub tls: bool,
    /// The server's shutdown: live-update streams end with it.
    pub shutdown: CancellationToken,
    /// Where tasks that outlive the request (live-update streams) are tracked.
    pub tracker: TaskTracker,
}

/// The web inbox. Cheap to clone.
#[derive(Clone)]
pub struct Web {
    inner: Arc<Inner>,
}

struct Inner {
    config: WebConfig,
    mail: Arc<MailContext>,
    tickets: TicketKey,
    https_root: Option<String>,
    sessions: session::Sessions,
    limiter: limiter::Limiter,
    /// Live-update streams open in all.
    streams: Arc<AtomicUsize>,
}

/// Why a request failed; each becomes an error page with a generic message.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PageError {
    #[error("not found")]
    NotFound,
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("CSRF token missing or wrong")]
    Csrf,
    #[error(transparent)]
    Body(#[from] http::BodyError),
    #[error("busy: {0}")]
    Busy(&'static str),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl PageError {
    fn status(&self) -> StatusCode {
        match self {
            PageError::NotFound => StatusCode::NOT_FOUND,
            PageError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PageError::Csrf => StatusCode::FORBIDDEN,
            PageError::Body(http::BodyError::TooLarge(_)) => StatusCode::PAYLOAD_TOO_LARGE,
            PageError::Body(_) => StatusCode::BAD_REQUEST,
            PageError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            PageError::Store(_) | PageError::Join(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn message(&self) -> (&'static str, &'static str) {
        match self {
            PageError::NotFound => ("Not found", "There is no such page or message."),
            PageError::BadRequest(_) | PageError::Body(http::BodyError::Read(_)) => {
                ("Bad request", "The request could not be understood.")
            }
            PageError::Csrf => (
                "Form expired",
                "The form was too old or not ours. Go back, reload the page and try again.",
            ),
            PageError::Body(http::BodyError::TooLarge(_)) => {
                ("Too large", "That is more than the server accepts at once.")
            }
            PageError::Busy(_) => ("Busy", "The server is busy. Try again in a moment."),
            PageError::Store(_) | PageError::Join(_) => (
                "Error",
                "Something went wrong on the server. Try again later.",
            ),
        }
    }
}

/// A signed-in request's session and its cookie.
pub(crate) struct Signed {
    pub cookie: String,
    pub session: session::Session,
}

type Answer = Result<Response<WebBody>, PageError>;

impl Web {
    pub fn new(deps: WebDeps) -> Web {
        let c = &deps.config;
        let sessions = session::Sessions::new(
            c.max_sessions,
            c.max_sessions_per_account,
            c.session_idle(),
            c.session_lifetime(),
        );
        let limiter = limiter::Limiter::new(
            c.login_failures_per_account,
            c.login_failures_per_ip,
            c.login_window(),
        );
        Web {
            inner: Arc::new(Inner {
                sessions,
                limiter,
                streams: Arc::default(),
                config: deps.config,
                mail: deps.mail,
                tickets: deps.tickets,
                https_root: deps.https_root,
            }),
        }
    }

    /// Whether `path` is the web inbox's (what the server's router asks before handing a request over).
    pub fn owns(path: &str) -> bool {
        path == "/mail" || path.starts_with("/mail/")
    }

    /// Sessions held now (for tests and logs).
    pub fn sessions(&self) -> usize {
        self.inner.sessions.len()
    }

    /// Answers one request under `/mail/`.
    pub async fn handle<B>(&self, req: Request<B>, conn: &Conn) -> Response<WebBody>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let peer = conn.peer;
        if !conn.tls {
            if let Some(root) = &self.inner.https_root {
                // The session cookie is `Secure`: the pages live on the HTTPS listener.
                let target = format!(
                    "{}{}",
                    root.trim_end_matches('/'),
                    req.uri().path_and_query().map_or("/mail/", |p| p.as_str())
                );
                let mut r = http::see_other(&target);
                if method != Method::GET && method != Method::HEAD {
                    *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
                }
                http::secure(&mut r);
                return r;
            }
        }
        let signed = self.signed_in(req.headers());
        let result = self.route(req, conn, &method, &path, signed).await;
        let mut r = match result {
            Ok(r) => r,
            Err(e) => {
                let status = e.status();
                if status.is_server_error() {
                    tracing::warn!(%peer, %method, path, error = %e, "web inbox request failed");
                } else {
                    tracing::info!(%peer, %method, path, error = %e, "web inbox request refused");
                }
                let (title, message) = e.message();
                let chrome = None;
                http::html(
                    status,
                    pages::render(&pages::Error {
                        title,
                        chrome,
                        message,
                    }),
                )
            }
        };
        http::secure(&mut r);
        r
    }

    async fn route<B>(
        &self,
        req: Request<B>,
        conn: &Conn,
        method: &Method,
        path: &str,
        signed: Option<Signed>,
    ) -> Answer
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let get = method == Method::GET || method == Method::HEAD;
        let post = method == Method::POST;
        let query = http::fields(req.uri().query().unwrap_or("").as_bytes());
        match path {
            "/mail/static/app.js" if get => Ok(http::asset(
                "text/javascript; charset=utf-8",
                include_str!("../static/app.js"),
            )),
            "/mail/static/app.css" if get => Ok(http::asset(
                "text/css; charset=utf-8",
                include_str!("../static/app.css"),
            )),
            "/mail/login" if get => Ok(self.login_page(&query, signed.as_ref())),
            "/mail/login" if post => self.login_post(req, conn).await,
            "/mail/logout" if post => self.logout(req, signed).await,
            _ if !get && !post => Err(PageError::BadRequest("method")),
            _ => {
                let Some(signed) = signed else {
                    return Ok(self.to_login(&req));
                };
                match path {
                    "/mail" | "/mail/" | "/mail/inbox" if get => {
                        self.folder_page(&signed, "INBOX", &query).await
                    }
                    "/mail/folder" if get => {
                        let name = query.get("name").map_or("INBOX", String::as_str);
                        self.folder_page(&signed, name, &query).await
                    }
                    "/mail/folders" if get => self.folders_page(&signed, &query).await,
                    "/mail/search" if get => self.search_page(&signed, &query).await,
                    "/mail/message" if get => self.message_page(&signed, &query).await,
                    "/mail/message/html" if get => self.message_html(&signed, &query).await,
                    "/mail/message/source" if get => self.message_source(&signed, &query).await,
                    "/mail/attachment" if get => self.attachment(&signed, &query).await,
                    "/mail/compose" if get => self.compose_page(&signed, &query).await,
                    "/mail/send" if post => self.send(req, conn, &signed).await,
                    "/mail/delete" | "/mail/junk" | "/mail/move" | "/mail/mark" if post => {
                        self.action(req, &signed, path).await
                    }
                    "/mail/events" if get => Ok(self.events(&signed, conn)),
                    // The other pages Messenger's `URL` names (profile, mobile, contacts…) have no
                    // web side here; the inbox is the closest thing.
                    "/mail/person" | "/mail/profile" | "/mail/mobile" | "/mail/contacts"
                    | "/mail/chat"
                        if get =>
                    {
                        Ok(http::see_other("/mail/inbox"))
                    }
                    _ => Err(PageError::NotFound),
                }
            }
        }
    }

    /// The session named by the request's cookie, if it is live.
    fn signed_in(&self, headers: &hyper::HeaderMap) -> Option<Signed> {
        let cookie = http::cookie(headers, http::SESSION_COOKIE)?;
        let session = self.inner.sessions.get(cookie)?;
        Some(Signed {
            cookie: cookie.to_owned(),
            session,
        })
    }

    /// `303` to the sign-in page, which comes back here afterwards.
    fn to_login<B>(&self, req: &Request<B>) -> Response<WebBody> {
        let back = req
            .uri()
            .path_and_query()
            .map_or("/mail/inbox", |p| p.as_str());
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("rru", back)
            .finish();
        http::see_other(&format!("/mail/login?{q}"))
    }

    /// Runs a store call on the blocking pool.
    pub(crate) async fn blocking<T, F>(&self, f: F) -> Result<T, PageError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.inner.mail.store.clone();
        Ok(tokio::task::spawn_blocking(move || f(&store)).await??)
    }

    /// Checks the form's CSRF token against the session's.
    pub(crate) fn check_csrf(
        &self,
        signed: &Signed,
        form: &HashMap<String, String>,
    ) -> Result<(), PageError> {
        match form.get("csrf") {
            Some(t) if session::same_token(t, &signed.session.csrf) => Ok(()),
            _ => Err(PageError::Csrf),
        }
    }

    /// The folders of the signed-in account, with `current` marked, for the page chrome.
    pub(crate) async fn chrome(
        &self,
        signed: &Signed,
        current: &str,
        query: &HashMap<String, String>,
    ) -> Result<(pages::Chrome, Vec<Folder>), PageError> {
        let account = signed.session.account.clone();
        let mut folders = self.blocking(move |s| s.folders(&account)).await?;
        // An IMAP `DELETE` of a folder with subfolders leaves its name as a `\Noselect`
        // placeholder: nothing to open or move into, so the web inbox does not list it.
        folders.retain(|f| !f.noselect);
        let links = folders
            .iter()
            .map(|f| folder_link(f, current))
            .collect::<Vec<_>>();
        let notice = query.get("notice").and_then(|n| notice(n));
        Ok((
            pages::Chrome {
                account: signed.session.account.clone(),
                csrf: signed.session.csrf.clone(),
                folders: links,
                query: query.get("q").cloned().unwrap_or_default(),
                notice,
            },
            folders,
        ))
    }

    /// An account's password hash, for checking tickets.
    pub(crate) async fn password_hash(&self, account: &str) -> Result<Option<String>, PageError> {
        let account = account.to_owned();
        Ok(self
            .blocking(move |s| s.account(&account))
            .await?
            .map(|a| a.password_hash))
    }
}

/// The link of a folder in the navigation.
pub(crate) fn folder_link(f: &Folder, current: &str) -> pages::FolderLink {
    pages::FolderLink {
        name: f.name.clone(),
        label: pages::folder_label(&f.name),
        href: folder_href(&f.name, 1),
        unread: f.unseen,
        messages: f.messages,
        current: f.name.eq_ignore_ascii_case(current),
    }
}

/// `/mail/folder?name=…&page=…` (`/mail/inbox` for the Inbox's first page).
pub(crate) fn folder_href(name: &str, page: usize) -> String {
    if name.eq_ignore_ascii_case("INBOX") && page <= 1 {
        return "/mail/inbox".to_owned();
    }
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("name", name)
        .append_pair("page", &page.to_string())
        .finish();
    format!("/mail/folder?{q}")
}

/// A path with a query built from pairs.
pub(crate) fn href(path: &str, pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    format!("{path}?{}", s.finish())
}

/// The notice lines a redirect may ask for (by name, so nothing from the URL is echoed).
fn notice(name: &str) -> Option<&'static str> {
    Some(match name {
        "sent" => "Your message was sent.",
        "deleted" => "The message was deleted.",
        "moved" => "The message was moved.",
        "junk" => "The message was moved to Junk.",
        "notjunk" => "The message was moved to the Inbox.",
        "unread" => "The message was marked unread.",
        _ => return None,
    })
}
