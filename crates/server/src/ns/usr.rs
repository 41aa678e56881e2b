//! `USR`: authentication, in two steps (`I` names the account, `S` proves it).
//!
//! | dialects | step I | step S | success |
//! |---|---|---|---|
//! | MSNP2–MSNP7 | `USR t MD5 I email` → `USR t MD5 S salt` | `USR t MD5 S md5(salt+password)` | `USR t OK email name` |
//! | MSNP8–MSNP9 | `USR t TWN I email` → `USR t TWN S <passport params>` | `USR t TWN S t=…&p=…` | `USR t OK email name 1 0` |
//! | MSNP10–MSNP12 | as MSNP8 | as MSNP8 | `USR t OK email 1 0` (the name comes with `SYN`) |
//!
//! On success the server follows with the `text/x-msmsgsprofile` message (MSNP5+) and, where
//! the dialect has one, a `CHL` challenge. A dispatch server answers step I with
//! `XFR t NS host:port 0 self:port` and closes. Any failure at step S is `911 t` and a close.

use bytes::BytesMut;
use msgr_core::passport::Passport;
use msgr_proto::dialect::AuthMethod;
use msgr_proto::frame::{write_line, write_payload, Frame, TrId};
use msgr_proto::{urlenc, Dialect, ErrorCode};
use rand::Rng;
use std::sync::atomic::Ordering;

use super::presence::TokenBucket;
use super::{chl, error, Flow, NsSession, OnlineUser, State};
use crate::hub::UserState;
use crate::msnp::{ListenerRole, Transport};
use crate::passport::{ticket_from_usr, TicketRefusal};

/// Step I is done; the session waits for step S.
#[derive(Debug)]
pub(super) enum PendingLogin {
    Twn { email: String },
    Md5 { email: String, salt: String },
}

/// How `USR … OK` reads in each dialect.
fn ok_params<'a>(dialect: Dialect, email: &'a str, name: &'a str) -> Vec<&'a str> {
    match dialect {
        Dialect::Msnp2
        | Dialect::Msnp3
        | Dialect::Msnp4
        | Dialect::Msnp5
        | Dialect::Msnp6
        | Dialect::Msnp7 => vec!["OK", email, name],
        // "1" = the Passport is verified, "0" = not a restricted (kids) account.
        Dialect::Msnp8 | Dialect::Msnp9 => vec!["OK", email, name, "1", "0"],
        Dialect::Msnp10 | Dialect::Msnp11 | Dialect::Msnp12 => vec!["OK", email, "1", "0"],
    }
}

/// Whether the dialect receives the profile message after login.
fn sends_profile(dialect: Dialect) -> bool {
    dialect >= Dialect::Msnp5
}

impl NsSession {
    pub(super) async fn usr(&mut self, frame: &Frame, trid: TrId, out: &mut BytesMut) -> Flow {
        let dialect = match &self.state {
            State::Negotiating => {
                error(out, ErrorCode::NotExpected, trid);
                return Flow::Continue;
            }
            State::Online { .. } => {
                error(out, ErrorCode::AlreadyLoggedIn, trid);
                return Flow::Continue;
            }
            State::Authenticating { dialect, .. } => *dialect,
        };
        let params = frame.params();
        let (Some(package), Some(stage), Some(arg)) =
            (params.first(), params.get(1), params.get(2))
        else {
            error(out, ErrorCode::InvalidParameter, trid);
            return Flow::Continue;
        };
        let expected = match dialect.auth() {
            AuthMethod::Md5 => "MD5",
            AuthMethod::Twn => "TWN",
        };
        if *package != expected {
            error(out, ErrorCode::InvalidParameter, trid);
            return Flow::Continue;
        }
        match *stage {
            "I" => self.usr_initial(dialect, arg, trid, out),
            "S" => self.usr_subsequent(dialect, arg, trid, out).await,
            _ => {
                error(out, ErrorCode::InvalidParameter, trid);
                Flow::Continue
            }
        }
    }

    fn usr_initial(
        &mut self,
        dialect: Dialect,
        account: &str,
        trid: TrId,
        out: &mut BytesMut,
    ) -> Flow {
        let Ok(passport) = Passport::parse(account) else {
            error(out, ErrorCode::InvalidParameter, trid);
            return Flow::Continue;
        };
        if let Some(target) = self.dispatch_target() {
            tracing::info!(peer = %self.peer, account = %passport, %target, "dispatching to NS");
            // The last field names the server that answered: the dispatch listener's own
            // address when the client came in there.
            let me = match (self.role, &self.shared.public_dispatch) {
                (ListenerRole::Dispatch, Some(d)) => d.clone(),
                _ => self.shared.public_msnp.clone(),
            };
            write_line(out, "XFR", Some(trid), &["NS", &target, "0", &me]);
            return Flow::Close;
        }
        let email = passport.into_string();
        let pending = match dialect.auth() {
            AuthMethod::Twn => {
                let params = format!(
                    "lc=1033,id=507,tw=40,fs=1,ru=http%3A%2F%2Fmessenger%2Emsn%2Ecom,ct={},kpp=1,kv=5,ver=2.1.0173.1,tpf={}",
                    unix_now(),
                    random_hex(32)
                );
                write_line(out, "USR", Some(trid), &["TWN", "S", &params]);
                PendingLogin::Twn { email }
            }
            AuthMethod::Md5 => {
                let salt = format!("{}.{}", unix_now(), random_digits(9));
                write_line(out, "USR", Some(trid), &["MD5", "S", &salt]);
                PendingLogin::Md5 { email, salt }
            }
        };
        self.state = State::Authenticating {
            dialect,
            pending: Some(pending),
        };
        Flow::Continue
    }

    async fn usr_subsequent(
        &mut self,
        dialect: Dialect,
        proof: &str,
        trid: TrId,
        out: &mut BytesMut,
    ) -> Flow {
        let State::Authenticating { pending, .. } = &mut self.state else {
            return Flow::Close;
        };
        let Some(pending) = pending.take() else {
            error(out, ErrorCode::NotExpected, trid);
            return Flow::Continue;
        };
        let (email, verified) = match pending {
            PendingLogin::Twn { email } => {
                let verdict = self.shared.tickets.redeem(ticket_from_usr(proof), &email);
                if let Err(why) = verdict {
                    let why = match why {
                        TicketRefusal::Unknown => "unknown ticket",
                        TicketRefusal::Expired => "expired ticket",
                        TicketRefusal::ForeignAccount => "ticket of another account",
                    };
                    tracing::info!(peer = %self.peer, account = %email, why, "login refused");
                    error(out, ErrorCode::AuthenticationFailed, trid);
                    return Flow::Close;
                }
                (email, None)
            }
            PendingLogin::Md5 { email, salt } => (email, Some((salt, proof.to_owned()))),
        };
        // An MD5 answer is a password guess checked here (a Passport password is checked, and
        // throttled, at `login2.srf`): the same throttle, refused as a wrong answer (911).
        let ip = self.peer.ip();
        if verified.is_some() && self.shared.logins.attempt(&email, ip, "md5").is_err() {
            error(out, ErrorCode::AuthenticationFailed, trid);
            return Flow::Close;
        }
        let account = match self.shared.account(&email).await {
            Ok(Some(a)) => a,
            Ok(None) => {
                tracing::info!(peer = %self.peer, account = %email, "login refused: no such account");
                error(out, ErrorCode::AuthenticationFailed, trid);
                return Flow::Close;
            }
            Err(e) => {
                tracing::error!(peer = %self.peer, account = %email, error = %e, "store failed during login");
                error(out, ErrorCode::DatabaseServerError, trid);
                return Flow::Close;
            }
        };
        if let Some((salt, answer)) = verified {
            let ok = account
                .md5_secret
                .as_deref()
                .is_some_and(|secret| md5_hex(&salt, secret).eq_ignore_ascii_case(&answer));
            if !ok {
                tracing::info!(peer = %self.peer, account = %email, "login refused: bad MD5 answer");
                error(out, ErrorCode::AuthenticationFailed, trid);
                return Flow::Close;
            }
            self.shared.logins.succeeded(&email, self.peer.ip());
        }

        // The list is loaded before the account is announced to the hub, so that no other
        // session ever reads a half-initialised state.
        let list = match self.shared.contact_list(&account.email).await {
            Ok(list) => list,
            Err(e) => {
                tracing::error!(peer = %self.peer, account = %email, error = %e, "loading the contact list failed");
                error(out, ErrorCode::DatabaseServerError, trid);
                return Flow::Close;
            }
        };
        let state = UserState::new(list);
        self.shared
            .hub
            .register(&account.email, self.hub_handle(state.clone()));
        // A peer's change committed between the load and the registration reached no session:
        // reload if the stored version moved meanwhile.
        let loaded = state.list().version;
        if self.shared.list_version(&account.email).await.ok() != Some(loaded) {
            if let Ok(list) = self.shared.contact_list(&account.email).await {
                *state.list_mut() = list;
            }
        }
        // Read after the registration: a delivery committed from here on reaches the session as
        // a hub event, one committed before is in these counts.
        let counts = if crate::hotmail::enabled(&self.shared.config) {
            crate::hotmail::unread_counts(self.shared.store.clone(), &account.email).await
        } else {
            None
        };
        let name = urlenc::encode(&account.display_name).into_owned();
        write_line(
            out,
            "USR",
            Some(trid),
            &ok_params(dialect, &account.email, &name),
        );
        if sends_profile(dialect) {
            // Over HTTP the profile's ClientPort is 0 (hypothetic.org, "HTTP connections"): the
            // client's source port says nothing about how to reach it.
            let port = match self.transport {
                Transport::Tcp => self.peer.port(),
                Transport::HttpGateway => 0,
            };
            // The ticket Messenger posts to the web inbox (`auth=` on `Post-URL`) to open it signed in.
            let mspauth = self
                .shared
                .mspauth
                .issue(&account.email, &account.password_hash);
            let profile = profile(&account, self.peer.ip(), port, counts.is_some(), mspauth);
            write_payload(out, "MSG", None, &["Hotmail", "Hotmail"], &profile);
        }
        let mail = counts.and_then(|c| self.initial_mail(c, out));
        let mut user = OnlineUser {
            email: msgr_core::lists::Names::global().intern(&account.email),
            challenge: None,
            name: account.display_name.into_boxed_str(),
            state,
            announced: false,
            changes: TokenBucket::new(&self.shared.config.limits),
            mail,
        };
        if chl::challenges(dialect) {
            Self::send_challenge(&mut user, out);
        }
        tracing::info!(peer = %self.peer, account = %user.email, %dialect, "logged in");
        self.state = State::Online { dialect, user };
        self.deadline = self.idle_deadline();
        Flow::Continue
    }

    /// In dispatch-only mode, the notification server to send the next client to.
    fn dispatch_target(&self) -> Option<String> {
        let targets = &self.shared.config.dispatch_to;
        if targets.is_empty() {
            // A dispatch listener of a node that serves logins sends clients to itself.
            return (self.role == ListenerRole::Dispatch).then(|| self.shared.public_msnp.clone());
        }
        let i = self.shared.dispatch_next.fetch_add(1, Ordering::Relaxed) % targets.len();
        targets.get(i).cloned()
    }
}

/// The `text/x-msmsgsprofile` message: who the user is and where they connect from.
///
/// `EmailEnabled: 1` when the account has a mailbox here: clients then show the inbox and open it
/// with `URL`. `sid` (507) and `kv` (5) are the values of the `USR … TWN S` challenge.
/// `MSPAuth` is a signed ticket bound to the account and its password, with a lifetime
/// (`msgr_web::ticket`): the web inbox signs the client in with it, without a password.
fn profile(
    account: &msgr_store::Account,
    ip: std::net::IpAddr,
    port: u16,
    email_enabled: bool,
    mspauth: String,
) -> Vec<u8> {
    let id = account.id as u64;
    msgr_proto::mime::Profile {
        login_time: unix_now(),
        email_enabled,
        member_id_high: (id >> 32) as u32,
        member_id_low: id as u32 as i32,
        lang_preference: 1033,
        preferred_email: account.email.clone(),
        country: String::new(),
        postal_code: String::new(),
        gender: String::new(),
        kid: false,
        age: None,
        bday_pre: 0,
        birthday: 0,
        wallet: false,
        flags: 1027,
        sid: 507,
        kv: 5,
        mspauth,
        client_ip: ip,
        client_port: port,
    }
    .to_payload()
}

fn md5_hex(salt: &str, secret: &str) -> String {
    use md5::{Digest, Md5};
    let mut h = Md5::new();
    h.update(salt.as_bytes());
    h.update(secret.as_bytes());
    hex::encode(h.finalize())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn random_hex(len: usize) -> String {
    let mut bytes = vec![0u8; len.div_ceil(2)];
    rand::rng().fill(&mut bytes[..]);
    let mut s = hex::encode(bytes);
    s.truncate(len);
    s
}

fn random_digits(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_line_per_dialect() {
        assert_eq!(
            ok_params(Dialect::Msnp7, "a@b.c", "A"),
            ["OK", "a@b.c", "A"]
        );
        assert_eq!(
            ok_params(Dialect::Msnp8, "a@b.c", "A"),
            ["OK", "a@b.c", "A", "1", "0"]
        );
        assert_eq!(
            ok_params(Dialect::Msnp12, "a@b.c", "A"),
            ["OK", "a@b.c", "1", "0"]
        );
    }

    #[test]
    fn md5_matches_rfc1321() {
        assert_eq!(md5_hex("", "abc"), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(random_hex(32).len(), 32);
        assert!(random_digits(9).bytes().all(|b| b.is_ascii_digit()));
    }
}
