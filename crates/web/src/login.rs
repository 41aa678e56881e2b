//! Signing in and out.
//!
//! | form | fields | proof | CSRF |
//! |---|---|---|---|
//! | the sign-in page | `user`, `password`, `csrf`, `rru` | the password, checked by msgr-mail's `Authenticator` (argon2 on the server's hashing threads) | double submit: `csrf` equals the `msgr_mail_login` cookie set with the form |
//! | MSN Messenger's Hotmail post (`Post-URL`) | `mode=ttl`, `login`, `username`, `sid`, `kv`, `id=2`, `sl`, `rru`, `auth`, `creds`, `svc=mail`, `js` | `auth`: the profile's `MSPAuth` ([`crate::ticket`]), bound to `username`, unexpired | none (the client builds the form; the ticket is the proof) |
//!
//! `creds` (MD5 of the ticket, `sl` and the password) is not checked: msgr keeps only argon2 hashes,
//! never a password an MD5 could be compared with. Both kinds of failure are one generic message and
//! count against the account and the client's IP ([`crate::limiter`]).

use crate::http::{self, WebBody, LOGIN_COOKIE, SESSION_COOKIE};
use crate::{pages, Answer, Conn, PageError, Signed, Web};
use hyper::{Request, Response, StatusCode};
use std::collections::HashMap;

/// The one thing a failed sign-in says, whatever failed.
const FAILED: &str =
    "Sign-in failed. Check the address and password and try again, or wait a while.";
/// What a sign-in form without a valid token hears.
const EXPIRED: &str = "The sign-in form expired. Please try again.";
/// Sign-in forms are small; this bounds what is read before anything is checked.
const MAX_LOGIN_BODY: usize = 16 * 1024;

/// `rru` if it is one of our own pages, else the inbox: a sign-in never sends the browser elsewhere.
pub(crate) fn local_rru(rru: Option<&String>) -> String {
    match rru {
        Some(r)
            if r.starts_with("/mail/")
                && !r.starts_with("/mail/login")
                && !r.starts_with("/mail/logout")
                && !r.contains("//")
                && !r.contains('\\')
                && r.len() <= 1024
                && !r.chars().any(char::is_control) =>
        {
            r.clone()
        }
        _ => "/mail/inbox".to_owned(),
    }
}

impl Web {
    /// The sign-in page with a fresh form token (and its cookie).
    pub(crate) fn login_page(
        &self,
        query: &HashMap<String, String>,
        signed: Option<&Signed>,
    ) -> Response<crate::WebBody> {
        let rru = local_rru(query.get("rru"));
        if signed.is_some() {
            return http::see_other(&rru);
        }
        self.login_form(StatusCode::OK, rru, String::new(), None)
    }

    fn login_form(
        &self,
        status: StatusCode,
        rru: String,
        user: String,
        error: Option<&'static str>,
    ) -> Response<crate::WebBody> {
        let csrf = hex::encode(rand::random::<[u8; 16]>());
        let page = pages::Login {
            title: "Sign in",
            chrome: None,
            csrf: csrf.clone(),
            rru,
            user,
            error,
        };
        let mut r = http::html(status, pages::render(&page));
        http::set_cookie(&mut r, LOGIN_COOKIE, &csrf, None);
        r
    }

    /// `POST /mail/login`: the sign-in form or Messenger's ticket post.
    pub(crate) async fn login_post<B>(&self, req: Request<B>, conn: &Conn) -> Answer
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let (parts, body) = req.into_parts();
        let limit = MAX_LOGIN_BODY.min(self.inner.config.max_body_bytes.max(1024));
        let form = http::fields(&http::read_body(&parts.headers, body, limit).await?);
        let rru = local_rru(form.get("rru"));
        let ip = conn.peer.ip();
        if form.get("auth").is_some_and(|a| !a.is_empty()) {
            return self.ticket_login(&form, rru, conn).await;
        }
        let token_ok = match (http::cookie(&parts.headers, LOGIN_COOKIE), form.get("csrf")) {
            (Some(c), Some(f)) => !c.is_empty() && crate::session::same_token(c, f),
            _ => false,
        };
        let user = form.get("user").map_or("", |u| u.trim()).to_owned();
        if !token_ok {
            tracing::info!(peer = %conn.peer, "web sign-in without a valid form token");
            return Ok(self.login_form(StatusCode::FORBIDDEN, rru, user, Some(EXPIRED)));
        }
        let password = form.get("password").map_or("", String::as_str);
        if user.is_empty() || password.is_empty() || user.len() > 320 {
            return Ok(self.login_form(StatusCode::UNAUTHORIZED, rru, user, Some(FAILED)));
        }
        if !self.inner.limiter.allowed(Some(&user), ip) {
            tracing::info!(peer = %conn.peer, user, "web sign-in refused: too many failures");
            return Ok(self.login_form(StatusCode::TOO_MANY_REQUESTS, rru, user, Some(FAILED)));
        }
        // `check_from`: the server's own password-guess throttle (issue 12) sees the address too.
        let checked = self.inner.mail.auth.check_from(&user, password, ip).await;
        match checked {
            Ok(Some(account)) => {
                tracing::info!(peer = %conn.peer, account, "web sign-in");
                self.start_session(&account, http::see_other(&rru))
            }
            Ok(None) => {
                self.inner.limiter.failed(Some(&user), ip);
                tracing::info!(peer = %conn.peer, user, "web sign-in failed");
                Ok(self.login_form(StatusCode::UNAUTHORIZED, rru, user, Some(FAILED)))
            }
            Err(e) => {
                tracing::warn!(error = %e, "web sign-in: password check unavailable");
                Err(PageError::Busy("password check unavailable"))
            }
        }
    }

    /// Messenger's form post: `auth` is the profile's `MSPAuth`, `username` the account it must be
    /// bound to.
    async fn ticket_login(
        &self,
        form: &HashMap<String, String>,
        rru: String,
        conn: &Conn,
    ) -> Answer {
        let ip = conn.peer.ip();
        let username = form
            .get("username")
            .filter(|u| u.contains('@'))
            .or_else(|| form.get("login").filter(|u| u.contains('@')))
            .map(|u| u.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let ticket = form.get("auth").map_or("", String::as_str);
        if !self.inner.limiter.allowed(Some(&username), ip) {
            tracing::info!(peer = %conn.peer, username, "ticket sign-in refused: too many failures");
            return Ok(self.login_form(StatusCode::TOO_MANY_REQUESTS, rru, username, Some(FAILED)));
        }
        let hash = if username.is_empty() || username.len() > 320 {
            None
        } else {
            self.password_hash(&username).await?
        };
        let verdict = match &hash {
            Some(h) => self.inner.tickets.verify(ticket, &username, h),
            None => Err(crate::TicketError::BadSignature),
        };
        match verdict {
            Ok(()) => {
                tracing::info!(peer = %conn.peer, account = username, "web sign-in with MSPAuth");
                let page = pages::render(&pages::Continue { rru: rru.clone() });
                self.start_session(&username, http::html(StatusCode::OK, page))
            }
            Err(e) => {
                self.inner.limiter.failed(Some(&username), ip);
                tracing::info!(peer = %conn.peer, username, reason = %e, "ticket sign-in refused");
                Ok(self.login_form(StatusCode::UNAUTHORIZED, rru, username, Some(FAILED)))
            }
        }
    }

    /// Starts a session for `account` and answers `r` (where the browser goes next) with its cookie.
    fn start_session(&self, account: &str, mut r: Response<WebBody>) -> Answer {
        let (cookie, _) = self
            .inner
            .sessions
            .create(account)
            .map_err(|_| PageError::Busy("too many sessions"))?;
        http::set_cookie(&mut r, SESSION_COOKIE, &cookie, None);
        http::clear_cookie(&mut r, LOGIN_COOKIE);
        Ok(r)
    }

    /// `POST /mail/logout`: ends the session on the server, then forgets the cookie.
    pub(crate) async fn logout<B>(&self, req: Request<B>, signed: Option<Signed>) -> Answer
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let Some(signed) = signed else {
            return Ok(http::see_other("/mail/login"));
        };
        let (parts, body) = req.into_parts();
        let form = http::fields(&http::read_body(&parts.headers, body, MAX_LOGIN_BODY).await?);
        self.check_csrf(&signed, &form)?;
        self.inner.sessions.end(&signed.cookie);
        tracing::info!(account = signed.session.account, "web sign-out");
        let mut r = http::see_other("/mail/login");
        http::clear_cookie(&mut r, SESSION_COOKIE);
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_pages_are_returned_to() {
        let s = |x: &str| local_rru(Some(&x.to_owned()));
        assert_eq!(
            s("/mail/message?folder=INBOX&uid=3"),
            "/mail/message?folder=INBOX&uid=3"
        );
        for bad in [
            "https://evil.example/",
            "//evil.example/mail/",
            "/mail//evil",
            "/mail/\\evil",
            "/other",
            "/mail/login",
            "/mail/logout",
            "/mail/x\r\nSet-Cookie: a=b",
        ] {
            assert_eq!(s(bad), "/mail/inbox", "{bad}");
        }
        assert_eq!(local_rru(None), "/mail/inbox");
    }
}
