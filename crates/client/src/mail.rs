//! Opening the web inbox already signed in, as MSN Messenger opened Hotmail.
//!
//! Messenger asked the notification server `URL t INBOX` (or `COMPOSE`, `MESSAGE`, …), got back the
//! page (`rru`) and the site's sign-in address (`Post-URL`), and wrote a small local HTML file whose
//! form posts the profile's Passport fields to `Post-URL` as soon as the browser loads it:
//!
//! | field | value |
//! |---|---|
//! | `mode` | `ttl` |
//! | `login`, `username` | the account name before `@`, the whole account name |
//! | `sid`, `kv` | the profile's `sid` and `kv` |
//! | `id` | the site id from the `URL` answer (Hotmail's `2`) |
//! | `sl` | seconds since the profile's `LoginTime` |
//! | `rru` | the page from the `URL` answer |
//! | `auth` | the profile's `MSPAuth` |
//! | `creds` | MD5 of `MSPAuth`, `sl` and the password, in lowercase hex |
//! | `svc`, `js` | `mail`, `yes` |
//!
//! [`hotmail_form`] builds that file; the browser then lands on the page without a second password
//! prompt. MSNP2–MSNP4 have no profile, so there is no ticket to post: [`MailPage::direct_url`]
//! is the page itself, where the web inbox asks for the password.

use md5::{Digest, Md5};

/// The Passport fields of the profile (`text/x-msmsgsprofile`) that open the web inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassportProfile {
    /// `MSPAuth`: the ticket the web inbox accepts instead of the password.
    pub mspauth: String,
    pub sid: u32,
    pub kv: u32,
    /// Sign-in time, Unix seconds.
    pub login_time: u64,
    /// Whether the account has a mailbox on this server.
    pub email_enabled: bool,
}

impl PassportProfile {
    pub(crate) fn from_profile(p: &msgr_proto::mime::Profile) -> PassportProfile {
        PassportProfile {
            mspauth: p.mspauth.clone(),
            sid: p.sid,
            kv: p.kv,
            login_time: p.login_time,
            email_enabled: p.email_enabled,
        }
    }
}

/// The server's answer to `URL t SERVICE`: a page of the mail site and where to sign in for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailPage {
    /// The page, relative to the site (`/mail/inbox`), or absolute.
    pub rru: String,
    /// Where Messenger posts its sign-in form (`https://host:port/mail/login`).
    pub post_url: String,
    /// The Passport site id (MSNP8+; Hotmail's is `2`).
    pub site_id: Option<String>,
}

impl MailPage {
    /// The page as an absolute URL on `Post-URL`'s site, for opening it without the form (the
    /// site then asks for the password).
    pub fn direct_url(&self) -> String {
        if self.rru.contains("://") {
            return self.rru.clone();
        }
        let origin = self
            .post_url
            .find("://")
            .map(|i| {
                let rest = &self.post_url[i + 3..];
                let end = rest.find('/').map_or(self.post_url.len(), |j| i + 3 + j);
                &self.post_url[..end]
            })
            .unwrap_or("");
        format!("{origin}{}", self.rru)
    }
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `creds`: MD5 of the ticket, `sl` and the password, in lowercase hex.
pub fn hotmail_creds(mspauth: &str, sl: u64, password: &str) -> String {
    let mut h = Md5::new();
    h.update(mspauth.as_bytes());
    h.update(sl.to_string().as_bytes());
    h.update(password.as_bytes());
    hex::encode(h.finalize())
}

/// The form fields Messenger posts to `Post-URL`, in its order.
pub fn hotmail_fields(
    email: &str,
    password: &str,
    profile: &PassportProfile,
    page: &MailPage,
    now_unix: u64,
) -> Vec<(&'static str, String)> {
    let sl = now_unix.saturating_sub(profile.login_time);
    let login = email.split('@').next().unwrap_or(email);
    vec![
        ("mode", "ttl".to_owned()),
        ("login", login.to_owned()),
        ("username", email.to_owned()),
        ("sid", profile.sid.to_string()),
        ("kv", profile.kv.to_string()),
        ("id", page.site_id.clone().unwrap_or_else(|| "2".to_owned())),
        ("sl", sl.to_string()),
        ("rru", page.rru.clone()),
        ("auth", profile.mspauth.clone()),
        ("creds", hotmail_creds(&profile.mspauth, sl, password)),
        ("svc", "mail".to_owned()),
        ("js", "yes".to_owned()),
    ]
}

/// The local HTML page Messenger opened: a form with [`hotmail_fields`] posting to `Post-URL`,
/// submitted as soon as the page loads (a button does it without JavaScript).
///
/// It holds the ticket, which signs in as the account until it expires: write it where only the
/// user can read it.
pub fn hotmail_form(
    email: &str,
    password: &str,
    profile: &PassportProfile,
    page: &MailPage,
    now_unix: u64,
) -> String {
    let mut inputs = String::new();
    for (name, value) in hotmail_fields(email, password, profile, page, now_unix) {
        inputs.push_str(&format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">\n",
            html_escape(&value)
        ));
    }
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Opening your inbox…</title></head>\n\
         <body onload=\"document.forms[0].submit()\">\n\
         <form id=\"hotmail\" method=\"post\" action=\"{}\">\n{inputs}\
         <noscript><button type=\"submit\">Open the inbox</button></noscript>\n</form>\n</body></html>\n",
        html_escape(&page.post_url)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> PassportProfile {
        PassportProfile {
            mspauth: "1700000000.00ff.ab\"<".into(),
            sid: 507,
            kv: 5,
            login_time: 1_000,
            email_enabled: true,
        }
    }

    fn page() -> MailPage {
        MailPage {
            rru: "/mail/compose?to=bob@x.com&cc=c".into(),
            post_url: "https://127.0.0.1:8443/mail/login".into(),
            site_id: Some("2".into()),
        }
    }

    #[test]
    fn the_form_carries_messengers_fields_escaped() {
        let html = hotmail_form("alice@example.com", "pw", &profile(), &page(), 1_042);
        assert!(html.contains("action=\"https://127.0.0.1:8443/mail/login\""));
        for (name, value) in [
            ("mode", "ttl"),
            ("login", "alice"),
            ("username", "alice@example.com"),
            ("sid", "507"),
            ("kv", "5"),
            ("id", "2"),
            ("sl", "42"),
            ("rru", "/mail/compose?to=bob@x.com&amp;cc=c"),
            ("auth", "1700000000.00ff.ab&quot;&lt;"),
            ("svc", "mail"),
            ("js", "yes"),
        ] {
            let input = format!("name=\"{name}\" value=\"{value}\"");
            assert!(html.contains(&input), "{input} in {html}");
        }
        let creds = hotmail_creds("1700000000.00ff.ab\"<", 42, "pw");
        assert_eq!(creds.len(), 32);
        assert!(html.contains(&format!("name=\"creds\" value=\"{creds}\"")));
    }

    #[test]
    fn a_clock_behind_the_login_time_gives_zero() {
        let fields = hotmail_fields("a@b.c", "pw", &profile(), &page(), 10);
        assert!(fields.contains(&("sl", "0".to_owned())));
    }

    #[test]
    fn direct_urls_join_the_page_to_the_sites_origin() {
        assert_eq!(
            page().direct_url(),
            "https://127.0.0.1:8443/mail/compose?to=bob@x.com&cc=c"
        );
        let abs = MailPage {
            rru: "http://elsewhere/x".into(),
            ..page()
        };
        assert_eq!(abs.direct_url(), "http://elsewhere/x");
    }
}
