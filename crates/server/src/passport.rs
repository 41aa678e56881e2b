//! Passport 1.4 ("TWN") authentication: the nexus that tells clients where to log in, the
//! `login2.srf` handler that trades a password for a ticket, and the book of tickets the
//! notification server redeems in `USR TWN S`.

use rand::distr::{Alphanumeric, SampleString};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Issued tickets: random, single-use, short-lived and bound to the account that earned them.
pub struct TicketBook {
    ttl: Duration,
    inner: Mutex<Tickets>,
}

struct Tickets {
    by_ticket: HashMap<String, (String, Instant)>,
    last_sweep: Instant,
}

/// Why a ticket was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketRefusal {
    Unknown,
    Expired,
    /// Valid, but earned by another account; left in place so its owner can still use it.
    ForeignAccount,
}

impl TicketBook {
    pub fn new(ttl: Duration) -> Self {
        TicketBook {
            ttl,
            inner: Mutex::new(Tickets {
                by_ticket: HashMap::new(),
                last_sweep: Instant::now(),
            }),
        }
    }

    /// Issues a ticket for `email` (already lowercased).
    pub fn issue(&self, email: &str) -> String {
        let ticket = random_token(48);
        let now = Instant::now();
        let mut t = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if now.duration_since(t.last_sweep) > self.ttl.min(Duration::from_secs(30)) {
            t.by_ticket.retain(|_, (_, exp)| *exp > now);
            t.last_sweep = now;
        }
        t.by_ticket
            .insert(ticket.clone(), (email.to_owned(), now + self.ttl));
        ticket
    }

    /// Redeems a ticket for `email`: succeeds once, for the account it was issued to.
    pub fn redeem(&self, ticket: &str, email: &str) -> Result<(), TicketRefusal> {
        let mut t = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let Some((owner, expires)) = t.by_ticket.get(ticket) else {
            return Err(TicketRefusal::Unknown);
        };
        if *expires <= Instant::now() {
            t.by_ticket.remove(ticket);
            return Err(TicketRefusal::Expired);
        }
        if !owner.eq_ignore_ascii_case(email) {
            return Err(TicketRefusal::ForeignAccount);
        }
        t.by_ticket.remove(ticket);
        Ok(())
    }
}

/// A random token of `len` letters and digits: safe inside headers, URLs and MSNP lines.
pub fn random_token(len: usize) -> String {
    Alphanumeric.sample_string(&mut rand::rng(), len)
}

/// Extracts the ticket from what a client sends in `USR TWN S`: the whole `from-PP` value
/// (`t=…&p=…`), or just the bare ticket.
pub fn ticket_from_usr(param: &str) -> &str {
    param
        .split('&')
        .find_map(|kv| kv.strip_prefix("t="))
        .unwrap_or(param)
}

/// The credentials in a `login2.srf` request's `Authorization: Passport1.4 …` header.
#[derive(Debug, PartialEq, Eq)]
pub struct Passport14Credentials {
    pub sign_in: String,
    pub password: String,
}

/// Parses `Passport1.4 OrgVerb=GET,OrgURL=…,sign-in=…,pwd=…,…`. Values are URL-encoded; keys
/// may repeat (the first wins) and stray characters around the list are tolerated.
pub fn parse_authorization(header: &str) -> Option<Passport14Credentials> {
    let rest = header.trim().strip_prefix("Passport1.4")?.trim_start();
    let mut sign_in = None;
    let mut password = None;
    for field in rest.split(',') {
        let Some((k, v)) = field.split_once('=') else {
            continue;
        };
        let k = k.trim().trim_matches(|c| c == '{' || c == '}');
        let v = v.trim().trim_matches(|c| c == '{' || c == '}');
        match k {
            "sign-in" if sign_in.is_none() => {
                sign_in = Some(msgr_proto::urlenc::decode(v).ok()?.into_owned())
            }
            "pwd" if password.is_none() => {
                password = Some(msgr_proto::urlenc::decode(v).ok()?.into_owned())
            }
            _ => {}
        }
    }
    Some(Passport14Credentials {
        sign_in: sign_in?,
        password: password?,
    })
}

/// Where `DALogin` points: `host/login2.srf` over HTTPS on 443 (no port, as the official nexus
/// wrote it: Twisted's client always connects to 443 and takes `host:443` for a host name),
/// `host:port/login2.srf` on another HTTPS port, and an explicit `http://` URL when there is
/// only plain HTTP. Clients add `https://` to a URL without a scheme.
pub fn dalogin(host: &str, https_port: Option<u16>, http_port: Option<u16>) -> String {
    match (https_port, http_port) {
        (Some(443), _) => format!("{host}/login2.srf"),
        (Some(p), _) => format!("{host}:{p}/login2.srf"),
        (None, Some(80)) => format!("http://{host}/login2.srf"),
        (None, Some(p)) => format!("http://{host}:{p}/login2.srf"),
        (None, None) => format!("{host}/login2.srf"),
    }
}

/// The root of this server's web pages, derived from `dalogin` (see [`dalogin`]): the page
/// `URL` sends clients to.
pub fn site_root(dalogin: &str) -> String {
    let base = dalogin.strip_suffix("login2.srf").unwrap_or(dalogin);
    if base.contains("://") {
        base.to_owned()
    } else {
        format!("https://{base}")
    }
}

/// The `PassportURLs` header value of the nexus, pointing `DALogin` at this server. Clients
/// add `https://` themselves, as they did for the original service.
pub fn passport_urls(dalogin: &str) -> String {
    format!(
        "DARealm=Passport.Net,DALogin={dalogin},DAReg=http://register.passport.net/uixpwiz.srf,\
         Properties=https://register.passport.net/editprof.srf,\
         Privacy=http://www.passport.com/consumer/privacypolicy.asp,\
         GeneralRedir=http://nexusrdr.passport.com/redir.asp,\
         Help=http://memberservices.passport.net/memberservice.srf,ConfigVersion=12"
    )
}

/// `Authentication-Info` for a successful login. `from-PP` comes last: some clients take
/// everything after `from-PP='` as the ticket.
pub fn authentication_info(ticket: &str, profile: &str) -> String {
    format!(
        "Passport1.4 da-status=success,tname=MSPAuth,tname=MSPProf,tname=MSPSec,\
         ru=http://messenger.msn.com,from-PP='t={ticket}&p={profile}'"
    )
}

/// `WWW-Authenticate` for a refused login.
pub const AUTHENTICATE_FAILED: &str =
    "Passport1.4 da-status=failed,srealm=Passport.NET,ts=-3,prompt,\
     cburl=http://messenger.msn.com/images/logo102x88.gif,cbtxt=.NET%20Messenger%20Service";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn seed_authorization_header_parses() {
        let h = "Passport1.4 OrgVerb=GET,OrgURL=http%3A%2F%2Fmessenger%2Emsn%2Ecom,sign-in=tavbuzon@hotmail.com,pwd=pass_en_claro,lc=1033,id=507,tw=40,fs=1,ru=http%3A%2F%2Fmessenger%2Emsn%2Ecom,ct=1086123460,kpp=1,kv=5,ver=2.1.0173.1,tpf=361d169d1aa00f5516e8ef6b69786e35";
        assert_eq!(
            parse_authorization(h),
            Some(Passport14Credentials {
                sign_in: "tavbuzon@hotmail.com".into(),
                password: "pass_en_claro".into()
            })
        );
    }

    #[test]
    fn encoded_values_repeats_and_stray_braces() {
        let h = "Passport1.4 OrgVerb=GET,sign-in=a%40b.com,pwd=p%2Cw%25d},lc=1033,lc=1033,sign-in=x@y.z";
        let c = parse_authorization(h).unwrap();
        assert_eq!(c.sign_in, "a@b.com");
        assert_eq!(c.password, "p,w%d");
        assert_eq!(parse_authorization("Basic abc"), None);
        assert_eq!(parse_authorization("Passport1.4 sign-in=a@b.c"), None);
    }

    #[test]
    fn tickets_are_single_use_and_bound() {
        let book = TicketBook::new(Duration::from_secs(60));
        let t = book.issue("alice@example.com");
        assert_eq!(
            book.redeem(&t, "bob@example.com"),
            Err(TicketRefusal::ForeignAccount)
        );
        assert_eq!(book.redeem(&t, "ALICE@example.com"), Ok(()));
        assert_eq!(
            book.redeem(&t, "alice@example.com"),
            Err(TicketRefusal::Unknown)
        );
        let expired = TicketBook::new(Duration::ZERO);
        let t = expired.issue("a@b.c");
        assert_eq!(expired.redeem(&t, "a@b.c"), Err(TicketRefusal::Expired));
    }

    #[test]
    fn dalogin_leaves_out_the_default_port() {
        assert_eq!(
            dalogin("msgr.example", Some(443), Some(80)),
            "msgr.example/login2.srf"
        );
        assert_eq!(
            dalogin("127.0.0.1", Some(8443), None),
            "127.0.0.1:8443/login2.srf"
        );
        assert_eq!(dalogin("h", None, Some(8080)), "http://h:8080/login2.srf");
        assert_eq!(dalogin("h", None, Some(80)), "http://h/login2.srf");
        assert_eq!(site_root("h/login2.srf"), "https://h/");
        assert_eq!(site_root("h:8443/login2.srf"), "https://h:8443/");
        assert_eq!(site_root("http://h:8080/login2.srf"), "http://h:8080/");
    }

    #[test]
    fn ticket_extraction() {
        assert_eq!(ticket_from_usr("t=abc&p=def"), "abc");
        assert_eq!(ticket_from_usr("p=def&t=abc"), "abc");
        assert_eq!(ticket_from_usr("abc"), "abc");
        let info = authentication_info("T", "P");
        assert!(info.ends_with("from-PP='t=T&p=P'"));
    }
}
