//! The web inbox (`/mail/`, msgr-web) over real HTTPS with a real HTTP client (reqwest) and a cookie
//! jar kept by the test, against the real server: sign-in (password, CSRF, throttling, Messenger's
//! `MSPAuth` form post), lists and paging, reading (marks `\Seen`, and an MSNP session hears the
//! active-mail notice), sending through the submission path (attachments, reply, forward), moves,
//! junk, delete, search, hostile mail (script, broken MIME, 1,000 attachments, 50 MB), security
//! headers, sign-out, live updates.

#![allow(clippy::unwrap_used)]

use anyhow::{bail, ensure, Context, Result};
use msgr_it::{
    challenge_answer, cvr_request, passport_ticket, Conn, ServerOptions, TestServer, CVR_REPLY,
    TIMEOUT,
};
use msgr_mail::MailConfig;
use msgr_proto::Dialect;
use msgr_store::{
    AccountStore, Delivery, Flags, FolderRef, LocalTarget, MailStore, SpamStore, SpecialUse, Store,
};
use msgr_web::WebConfig;
use reqwest::header::HeaderMap;
use std::collections::HashMap;

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const CAROL: &str = "carol@example.com";
const PASSWORD: &str = "correct horse";

/// A server with mail on (the spam filter as asked) and the web limits given; Alice, Bob and Carol.
async fn start_with(web: WebConfig, spam: bool) -> Result<TestServer> {
    let mut mail = MailConfig {
        allow_plaintext_auth: true,
        ..MailConfig::default()
    };
    mail.spam.enabled = spam;
    let server = TestServer::start(ServerOptions {
        mail: Some(mail),
        web,
        ..ServerOptions::default()
    })
    .await?;
    for (who, name) in [(ALICE, "Alice"), (BOB, "Bob"), (CAROL, "Carol")] {
        server.add_account(who, PASSWORD, name).await?;
    }
    Ok(server)
}

async fn start() -> Result<TestServer> {
    start_with(WebConfig::default(), false).await
}

/// One answer, read whole.
#[derive(Debug)]
struct Page {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    fn location(&self) -> &str {
        self.header("location")
    }
    /// Whether the page moves the browser on to `path` by itself (`<meta http-equiv="refresh">`).
    fn refreshes_to(&self, path: &str) -> bool {
        self.has(&format!(
            "<meta http-equiv=\"refresh\" content=\"0;url={path}\">"
        ))
    }
    /// The `value` of the first input named `name`.
    fn input(&self, name: &str) -> Option<String> {
        let at = self.body.find(&format!("name=\"{name}\""))?;
        let tag_start = self.body[..at].rfind('<')?;
        let tag_end = at + self.body[at..].find('>')?;
        let tag = &self.body[tag_start..tag_end];
        let v = tag.find("value=\"")? + 7;
        let end = tag[v..].find('"')?;
        Some(unescape(&tag[v..v + end]))
    }
    /// The `data-uid` of each message row, in page order.
    fn uids(&self) -> Vec<u32> {
        self.body
            .match_indices("<tr class=\"msg")
            .filter_map(|(i, _)| {
                let rest = &self.body[i..];
                let v = rest.find("data-uid=\"")? + 10;
                rest[v..v + rest[v..].find('"')?].parse().ok()
            })
            .collect()
    }
    fn has(&self, needle: &str) -> bool {
        self.body.contains(needle)
    }
    /// The `href` of the first link whose opening tag contains `marker`.
    fn link(&self, marker: &str) -> Option<String> {
        let at = self.body.find(marker)?;
        let tag_start = self.body[..at].rfind('<')?;
        let tag = &self.body[tag_start..at + self.body[at..].find('>')?];
        let v = tag.find("href=\"")? + 6;
        Some(unescape(&tag[v..v + tag[v..].find('"')?]))
    }
}

fn unescape(s: &str) -> String {
    // askama writes numeric references (`&#38;`); other escapers use names.
    [
        ("&#38;", "&"),
        ("&#60;", "<"),
        ("&#62;", ">"),
        ("&#34;", "\""),
        ("&#39;", "'"),
        ("&amp;", "&"),
        ("&lt;", "<"),
        ("&gt;", ">"),
        ("&quot;", "\""),
    ]
    .iter()
    .fold(s.to_owned(), |acc, (from, to)| acc.replace(from, to))
}

/// A browser: reqwest over HTTPS trusting the server's certificate, no automatic redirects, and a
/// cookie jar kept here so that the tests can see and check every `Set-Cookie`.
struct Browser {
    client: reqwest::Client,
    base: String,
    jar: HashMap<String, String>,
    /// Every `Set-Cookie` header received, as sent.
    set_cookies: Vec<String>,
}

impl Browser {
    fn new(server: &TestServer) -> Result<Browser> {
        let pem = std::fs::read(server.data_dir().join("tls-cert.pem"))?;
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem)?)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT * 4)
            .build()?;
        Ok(Browser {
            client,
            base: format!("https://127.0.0.1:{}", server.addrs.https.unwrap().port()),
            jar: HashMap::new(),
            set_cookies: Vec::new(),
        })
    }

    fn cookie_header(&self) -> String {
        self.jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn finish(&mut self, r: reqwest::RequestBuilder) -> Result<Page> {
        let r = r.header("cookie", self.cookie_header()).send().await?;
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        for c in headers.get_all("set-cookie") {
            let c = c.to_str()?.to_owned();
            let (kv, attrs) = c.split_once(';').unwrap_or((&c, ""));
            let (k, v) = kv.split_once('=').context("cookie without =")?;
            if attrs.contains("Max-Age=0") {
                self.jar.remove(k);
            } else {
                self.jar.insert(k.to_owned(), v.to_owned());
            }
            self.set_cookies.push(c);
        }
        let body = r.text().await?;
        Ok(Page {
            status,
            headers,
            body,
        })
    }

    async fn get(&mut self, path: &str) -> Result<Page> {
        let r = self.client.get(format!("{}{path}", self.base));
        self.finish(r).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Result<Page> {
        let r = self.client.post(format!("{}{path}", self.base)).form(form);
        self.finish(r).await
    }

    async fn post_multipart(&mut self, path: &str, form: reqwest::multipart::Form) -> Result<Page> {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .multipart(form);
        self.finish(r).await
    }

    /// Signs in through the form; returns the answer to the post.
    async fn sign_in(&mut self, user: &str, password: &str) -> Result<Page> {
        let page = self.get("/mail/login").await?;
        ensure!(page.status == 200, "login page: {}", page.status);
        let csrf = page.input("csrf").context("no csrf field")?;
        self.post(
            "/mail/login",
            &[
                ("user", user),
                ("password", password),
                ("csrf", &csrf),
                ("rru", ""),
            ],
        )
        .await
    }

    async fn signed_in(server: &TestServer, user: &str) -> Result<Browser> {
        let mut b = Browser::new(server)?;
        let r = b.sign_in(user, PASSWORD).await?;
        ensure!(
            r.status == 303 && r.location() == "/mail/inbox",
            "sign-in: {} {}",
            r.status,
            r.location()
        );
        Ok(b)
    }

    /// The CSRF token of the signed-in session (from the sign-out form of any page).
    async fn csrf(&mut self) -> Result<String> {
        self.get("/mail/folders")
            .await?
            .input("csrf")
            .context("no csrf")
    }
}

/// A message stored straight into `account`'s `folder` (as delivery would), bypassing every limit
/// of the SMTP side (for the 50 MB message).
async fn store_message(
    server: &TestServer,
    account: &str,
    folder: SpecialUse,
    raw: Vec<u8>,
) -> Result<u32> {
    let db = server.config.database_path();
    let account = account.to_owned();
    tokio::task::spawn_blocking(move || -> Result<u32> {
        let store = Store::open_sqlite(&db)?;
        let summary = msgr_mail::mime::summarize(&raw);
        let delivered = store.deliver(
            &[Delivery {
                raw,
                summary,
                internal_date: 1_700_000_000,
                targets: vec![LocalTarget {
                    account,
                    folder: FolderRef::Special(folder),
                    flags: Flags::empty(),
                }],
                outbound: None,
            }],
            u64::MAX,
        )?;
        let d = delivered.into_iter().next().context("no result")??;
        Ok(d.stored[0].uid)
    })
    .await?
}

/// Borrowed pairs of an owned form.
fn post(f: &[(String, String)]) -> Vec<(&str, &str)> {
    f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn plain(from: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {ALICE}\r\nSubject: {subject}\r\nMessage-ID: <{}@test>\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n\r\n{body}\r\n",
        subject.replace(' ', ".")
    )
    .into_bytes()
}

#[tokio::test]
async fn sign_in_csrf_generic_errors_and_security_headers() -> Result<()> {
    let server = start().await?;
    let mut b = Browser::new(&server)?;
    // Signed-out pages send the browser to the sign-in page, which comes back afterwards.
    let r = b.get("/mail/inbox").await?;
    ensure!(
        r.status == 303 && r.location().starts_with("/mail/login?rru=%2Fmail%2Finbox"),
        "{r:?}"
    );

    let login = b.get("/mail/login").await?;
    ensure!(login.status == 200);
    for needle in [
        "<form id=\"login\" method=\"post\" action=\"/mail/login\"",
        "name=\"user\"",
        "name=\"password\"",
        "type=\"hidden\" name=\"csrf\"",
        "id=\"signin\"",
        "name=\"viewport\"",
    ] {
        ensure!(login.has(needle), "login page lacks {needle}");
    }
    let csp = login.header("content-security-policy");
    ensure!(
        csp.contains("frame-ancestors 'none'")
            && csp.contains("script-src 'self'")
            && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    ensure!(login.header("x-content-type-options") == "nosniff");

    // No CSRF token: refused before the password is looked at.
    let r = b
        .post("/mail/login", &[("user", ALICE), ("password", PASSWORD)])
        .await?;
    ensure!(r.status == 403 && r.has("id=\"error\""), "{}", r.status);
    ensure!(!b.jar.contains_key("msgr_mail_session"));

    // A wrong password and an unknown account read the same.
    let wrong = b.sign_in(ALICE, "wrong").await?;
    let unknown = b.sign_in("nobody@example.com", "wrong").await?;
    ensure!(wrong.status == 401 && unknown.status == 401);
    let error = |p: &Page| {
        let i = p.body.find("id=\"error\"").unwrap();
        p.body[i..i + p.body[i..].find("</p>").unwrap()].to_owned()
    };
    ensure!(
        error(&wrong) == error(&unknown),
        "{} vs {}",
        error(&wrong),
        error(&unknown)
    );

    // The right one.
    let ok = b.sign_in(ALICE, PASSWORD).await?;
    ensure!(ok.status == 303 && ok.location() == "/mail/inbox", "{ok:?}");
    let cookie = b
        .set_cookies
        .iter()
        .rev()
        .find(|c| c.starts_with("msgr_mail_session="))
        .context("no session cookie")?;
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/mail/"] {
        ensure!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    let inbox = b.get("/mail/inbox").await?;
    ensure!(inbox.status == 200);
    for needle in [
        "<nav id=\"folders\"",
        "data-folder=\"INBOX\"",
        "data-folder=\"Sent\"",
        "data-folder=\"Junk\"",
        "data-folder=\"Trash\"",
        "<form id=\"signout\" method=\"post\" action=\"/mail/logout\"",
        "id=\"signout-button\"",
        "<form id=\"search\" method=\"get\" action=\"/mail/search\"",
        "name=\"q\"",
        "id=\"empty\"",
        "/mail/static/app.js",
    ] {
        ensure!(inbox.has(needle), "inbox lacks {needle}");
    }
    ensure!(
        !inbox.has("<script>") && !inbox.has("style=\""),
        "inline script or style"
    );
    ensure!(inbox.header("cache-control") == "no-store");
    let js = b.get("/mail/static/app.js").await?;
    ensure!(js.status == 200 && js.header("content-type").starts_with("text/javascript"));
    let css = b.get("/mail/static/app.css").await?;
    ensure!(css.status == 200 && css.has("@media"));

    // Plain HTTP is sent to the HTTPS listener.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?
        .get(format!(
            "http://127.0.0.1:{}/mail/inbox",
            server.addrs.http.unwrap().port()
        ))
        .send()
        .await?;
    let to = http
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    ensure!(
        http.status() == 303 && to == format!("{}/mail/inbox", b.base),
        "{to}"
    );

    // Sign-out needs the token, ends the session on the server and forgets the cookie.
    let old = b.jar.get("msgr_mail_session").cloned().context("cookie")?;
    let r = b.post("/mail/logout", &[]).await?;
    ensure!(r.status == 403, "sign-out without csrf: {}", r.status);
    let csrf = b.csrf().await?;
    let r = b.post("/mail/logout", &[("csrf", &csrf)]).await?;
    ensure!(r.status == 303 && r.location() == "/mail/login");
    ensure!(!b.jar.contains_key("msgr_mail_session"), "cookie kept");
    // The old cookie is worth nothing now.
    b.jar.insert("msgr_mail_session".into(), old);
    let r = b.get("/mail/inbox").await?;
    ensure!(
        r.status == 303 && r.location().starts_with("/mail/login"),
        "{}",
        r.status
    );
    server.stop().await
}

#[tokio::test]
async fn sign_in_failures_are_rate_limited_per_account() -> Result<()> {
    let server = start_with(
        WebConfig {
            login_failures_per_account: 3,
            ..WebConfig::default()
        },
        false,
    )
    .await?;
    let mut b = Browser::new(&server)?;
    for _ in 0..3 {
        ensure!(b.sign_in(ALICE, "guess").await?.status == 401);
    }
    // Now even the right password is refused, with the same message, for this account only.
    let r = b.sign_in(ALICE, PASSWORD).await?;
    ensure!(r.status == 429 && r.has("id=\"error\""), "{}", r.status);
    ensure!(!b.jar.contains_key("msgr_mail_session"));
    let r = b.sign_in(BOB, PASSWORD).await?;
    ensure!(r.status == 303, "{}", r.status);
    server.stop().await
}

/// Signs Alice in over MSNP12 and returns the connection (online) and her profile's `MSPAuth`.
async fn msnp_sign_in(server: &TestServer) -> Result<(Conn, String)> {
    let ep = server.endpoint();
    let dialect = Dialect::Msnp12;
    let mut c = Conn::connect(ep.msnp).await?;
    let ver = dialect.token();
    c.send(&format!("VER 1 {ver} CVR0")).await?;
    c.expect_line(&format!("VER 1 {ver} CVR0")).await?;
    c.send(&cvr_request(2, ALICE)).await?;
    c.expect_line(&format!("CVR 2 {CVR_REPLY}")).await?;
    c.send(&format!("USR 3 TWN I {ALICE}")).await?;
    c.expect_match("USR 3 TWN S {any}").await?;
    let ticket = passport_ticket(ep.https, &ep.ca, ALICE, PASSWORD).await?;
    c.send(&format!("USR 4 TWN S {ticket}")).await?;
    c.expect_match(&format!("USR 4 OK {ALICE} {{rest}}"))
        .await?;
    let mut mspauth = None;
    loop {
        let frame = c.recv_frame().await?;
        if frame.command() == "CHL" {
            let challenge = frame
                .params()
                .last()
                .copied()
                .unwrap_or_default()
                .to_owned();
            let (id, answer) = challenge_answer(dialect, &challenge);
            c.send_raw(format!("QRY 5 {id} 32\r\n{answer}").as_bytes())
                .await?;
            c.expect_line("QRY 5").await?;
            break;
        }
        let payload = String::from_utf8_lossy(frame.payload().map(|p| &p[..]).unwrap_or_default())
            .into_owned();
        if let Some(line) = payload.lines().find(|l| l.starts_with("MSPAuth: ")) {
            mspauth = Some(line["MSPAuth: ".len()..].trim().to_owned());
        }
    }
    Ok((c, mspauth.context("no MSPAuth in the profile")?))
}

/// Messenger's Hotmail form post, as the official client built it.
fn hotmail_form<'a>(username: &'a str, auth: &'a str, rru: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("mode", "ttl"),
        ("login", "alice"),
        ("username", username),
        ("sid", "507"),
        ("kv", "5"),
        ("id", "2"),
        ("sl", "9"),
        ("rru", rru),
        ("auth", auth),
        ("creds", "0123456789abcdef0123456789abcdef"),
        ("svc", "mail"),
        ("js", "yes"),
    ]
}

#[tokio::test]
async fn messenger_form_post_signs_in_with_the_profile_ticket() -> Result<()> {
    let server = start().await?;
    let (_msnp, mspauth) = msnp_sign_in(&server).await?;

    // A good ticket: signed in without a password, sent to the page asked for.
    let mut b = Browser::new(&server)?;
    let r = b
        .post(
            "/mail/login",
            &hotmail_form(ALICE, &mspauth, "/mail/folders"),
        )
        .await?;
    // Answered with a page of our own that moves on (a redirect started by Messenger's
    // local form would not carry the SameSite=Strict cookie), never a redirect.
    ensure!(r.status == 200 && r.refreshes_to("/mail/folders"), "{r:?}");
    let page = b.get("/mail/folders").await?;
    ensure!(page.status == 200 && page.has(ALICE), "{}", page.status);
    // Only our own pages are returned to.
    let mut b = Browser::new(&server)?;
    let r = b
        .post(
            "/mail/login",
            &hotmail_form(ALICE, &mspauth, "https://evil.example/"),
        )
        .await?;
    ensure!(r.status == 200 && r.refreshes_to("/mail/inbox"), "{r:?}");

    // Alice's ticket does not open Bob's mailbox.
    let mut b = Browser::new(&server)?;
    let r = b
        .post("/mail/login", &hotmail_form(BOB, &mspauth, "/mail/inbox"))
        .await?;
    ensure!(
        r.status == 401 && r.has("id=\"error\"") && !b.jar.contains_key("msgr_mail_session"),
        "{}",
        r.status
    );

    // A forged one (its expiry pushed out) and garbage are refused.
    let (expiry, rest) = mspauth.split_once('.').context("ticket format")?;
    let later: u64 = expiry.parse::<u64>()? + 1_000_000;
    let forged = format!("{later}.{rest}");
    for bad in [forged.as_str(), "garbage", "1.2.3"] {
        let r = b
            .post("/mail/login", &hotmail_form(ALICE, bad, "/mail/inbox"))
            .await?;
        ensure!(
            r.status == 401 && !b.jar.contains_key("msgr_mail_session"),
            "{bad}: {}",
            r.status
        );
    }

    // An expired one, signed with the server's own key: refused.
    let db = server.config.database_path();
    let hash = tokio::task::spawn_blocking(move || -> Result<String> {
        Ok(Store::open_sqlite(&db)?
            .account(ALICE)?
            .context("alice")?
            .password_hash)
    })
    .await??;
    let key = msgr_web::TicketKey::load_or_create(
        server.data_dir(),
        std::time::Duration::from_secs(WebConfig::default().ticket_ttl_secs),
    )?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let expired = key.issue_at(ALICE, &hash, now - 2 * WebConfig::default().ticket_ttl_secs);
    let r = b
        .post("/mail/login", &hotmail_form(ALICE, &expired, "/mail/inbox"))
        .await?;
    ensure!(
        r.status == 401 && !b.jar.contains_key("msgr_mail_session"),
        "expired: {}",
        r.status
    );
    // The same key's fresh ticket is good (so the refusal above was the expiry).
    let fresh = key.issue_at(ALICE, &hash, now);
    let r = b
        .post("/mail/login", &hotmail_form(ALICE, &fresh, "/mail/inbox"))
        .await?;
    ensure!(
        r.status == 200 && r.refreshes_to("/mail/inbox"),
        "fresh: {}",
        r.status
    );
    server.stop().await
}

#[tokio::test]
async fn list_paging_and_reading_marks_seen_with_a_messenger_notice() -> Result<()> {
    let server = start_with(
        WebConfig {
            page_size: 3,
            ..WebConfig::default()
        },
        false,
    )
    .await?;
    let mut uids = Vec::new();
    for i in 1..=7 {
        let raw = if i == 2 {
            format!(
                "From: Bob <{BOB}>\r\nSubject: with file\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nsee file\r\n--x\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=doc.pdf\r\n\r\n%PDF\r\n--x--\r\n"
            )
            .into_bytes()
        } else {
            plain(&format!("Bob <{BOB}>"), &format!("message {i}"), "hello")
        };
        uids.push(store_message(&server, ALICE, SpecialUse::Inbox, raw).await?);
    }
    let (mut msnp, _) = msnp_sign_in(&server).await?;
    // The initial notice: seven unread.
    let mut b = Browser::signed_in(&server, ALICE).await?;
    let p1 = b.get("/mail/inbox").await?;
    ensure!(p1.uids() == [uids[6], uids[5], uids[4]], "{:?}", p1.uids());
    ensure!(p1.has("<table id=\"messages\"") && p1.has("class=\"msg unread\""));
    ensure!(p1.has("<span class=\"unread\">7</span>"));
    ensure!(p1.link("id=\"prev\"").is_none());
    let next = p1.link("id=\"next\"").context("no next link")?;
    let p2 = b.get(&next).await?;
    ensure!(p2.uids() == [uids[3], uids[2], uids[1]], "{:?}", p2.uids());
    // The row of the message with an attachment is marked.
    let row = &p2.body[p2.body.find(&format!("data-uid=\"{}\"", uids[1])).unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    ensure!(row.contains("class=\"attach\"><span"), "{row}");
    ensure!(
        row.contains("class=\"from\"")
            && row.contains("class=\"date\"")
            && row.contains("class=\"size\"")
    );
    let p3 = b
        .get(p2.link("id=\"next\"").context("page 3")?.as_str())
        .await?;
    ensure!(
        p3.uids() == [uids[0]]
            && p3.link("id=\"prev\"").is_some()
            && p3.link("id=\"next\"").is_none()
    );
    // `folder?name=INBOX&page=1` is the inbox.
    ensure!(b.get("/mail/folder?name=INBOX&page=1").await?.uids() == p1.uids());
    // Skip the initial notice the MSNP session got at sign-in (if it has not been read yet).
    let open = p1.link("class=\"subject\"").context("subject link")?;
    let msg = b.get(&open).await?;
    ensure!(msg.status == 200, "{}", msg.status);
    for needle in [
        "id=\"message-headers\"",
        "class=\"from\"",
        "class=\"to\"",
        "class=\"subject\"",
        "class=\"date\"",
        "id=\"message-body\"",
        "<pre>hello",
        "id=\"reply\"",
        "id=\"reply-all\"",
        "id=\"forward\"",
        "id=\"delete-button\"",
        "id=\"junk-button\"",
        "id=\"move-button\"",
        "name=\"to\"",
        "id=\"mark-unread-button\"",
    ] {
        ensure!(msg.has(needle), "message page lacks {needle}");
    }
    // Stored as read…
    let inbox = server.mail_messages(ALICE, "INBOX").await?;
    let meta = &inbox.iter().find(|(m, _)| m.uid == uids[6]).unwrap().0;
    ensure!(meta.flags.contains(Flags::SEEN));
    // …and Messenger hears the inbox count drop by one.
    let notice = loop {
        let frame = msnp.recv_frame().await?;
        let payload = String::from_utf8_lossy(frame.payload().map(|p| &p[..]).unwrap_or_default())
            .into_owned();
        if payload.contains("text/x-msmsgsactivemailnotification") {
            break payload;
        }
    };
    ensure!(
        notice.contains("Src-Folder: ACTIVE") && notice.contains("Message-Delta: 1"),
        "{notice}"
    );
    // Mark unread again.
    let csrf = msg.input("csrf").context("csrf")?;
    let r = b
        .post(
            "/mail/mark",
            &[
                ("csrf", &csrf),
                ("folder", "INBOX"),
                ("uid", &uids[6].to_string()),
                ("seen", "0"),
            ],
        )
        .await?;
    ensure!(r.status == 303, "{}", r.status);
    let inbox = server.mail_messages(ALICE, "INBOX").await?;
    ensure!(!inbox
        .iter()
        .find(|(m, _)| m.uid == uids[6])
        .unwrap()
        .0
        .flags
        .contains(Flags::SEEN));
    // The attachment downloads as an attachment.
    let m2 = b
        .get(&format!("/mail/message?folder=INBOX&uid={}", uids[1]))
        .await?;
    let att = m2.link("class=\"attachment\"").context("attachment link")?;
    let file = b.get(&att).await?;
    ensure!(file.status == 200 && file.body == "%PDF", "{:?}", file.body);
    ensure!(file
        .header("content-disposition")
        .starts_with("attachment;"));
    ensure!(file.header("x-content-type-options") == "nosniff");
    server.stop().await
}

#[tokio::test]
async fn send_with_attachment_then_reply_and_forward() -> Result<()> {
    let server = start().await?;
    let mut alice = Browser::signed_in(&server, ALICE).await?;
    let compose = alice.get("/mail/compose").await?;
    for needle in ["<form id=\"compose\" method=\"post\" action=\"/mail/send\" enctype=\"multipart/form-data\"", "name=\"cc\"", "name=\"subject\"", "<textarea id=\"body\" name=\"body\"", "type=\"file\" name=\"attachment\" multiple", "id=\"send\""] {
        ensure!(compose.has(needle), "compose lacks {needle}");
    }
    let csrf = compose.input("csrf").context("csrf")?;
    // Without the token nothing is sent.
    let form = reqwest::multipart::Form::new()
        .text("to", BOB)
        .text("subject", "no token")
        .text("body", "x");
    ensure!(alice.post_multipart("/mail/send", form).await?.status == 403);

    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf.clone())
        .text("to", format!("Bob <{BOB}>"))
        .text("cc", "")
        .text("subject", "Quarterly figures")
        .text("body", "Here they are.\r\nAlice")
        .part(
            "attachment",
            reqwest::multipart::Part::bytes(b"a,b\n1,2\n".to_vec())
                .file_name("figures.csv")
                .mime_str("text/csv")?,
        )
        .part(
            "attachment",
            reqwest::multipart::Part::bytes(vec![0u8, 1, 2, 3])
                .file_name("blob.bin")
                .mime_str("application/octet-stream")?,
        );
    let r = alice.post_multipart("/mail/send", form).await?;
    ensure!(
        r.status == 303 && r.location() == "/mail/inbox?notice=sent",
        "{} {}",
        r.status,
        r.body
    );
    ensure!(alice.get(r.location()).await?.has("id=\"notice\""));

    // It arrived: Bob's inbox over IMAP, and Alice's Sent copy (read).
    let bob_inbox = server.mail_messages(BOB, "INBOX").await?;
    ensure!(bob_inbox.len() == 1);
    let raw = String::from_utf8_lossy(&bob_inbox[0].1).into_owned();
    for needle in [
        "Subject: Quarterly figures",
        "figures.csv",
        "blob.bin",
        "Received: from web ([127.0.0.1])",
        "with HTTPS",
        "From: <alice@example.com>",
    ] {
        ensure!(
            raw.contains(needle)
                || (needle.starts_with("From") && raw.contains("From: alice@example.com")),
            "Bob's copy lacks {needle}:\n{raw}"
        );
    }
    let sent = server.mail_messages(ALICE, "Sent").await?;
    ensure!(sent.len() == 1 && sent[0].0.flags.contains(Flags::SEEN));
    let mut imap = msgr_it_imap(&server).await?;
    let status = imap
        .cmd(&format!("a LOGIN {BOB} \"{PASSWORD}\""), "a ")
        .await?;
    ensure!(status.starts_with("a OK"), "{status}");
    let mut lines = Vec::new();
    imap.w("b STATUS INBOX (MESSAGES UNSEEN)").await?;
    loop {
        let l = imap.line().await?;
        let done = l.starts_with("b ");
        lines.push(l);
        if done {
            break;
        }
    }
    ensure!(
        lines
            .iter()
            .any(|l| l.contains("MESSAGES 1") && l.contains("UNSEEN 1")),
        "{lines:?}"
    );

    // Bob replies to all.
    let mut bob = Browser::signed_in(&server, BOB).await?;
    let uid = bob_inbox[0].0.uid;
    let reply = bob
        .get(&format!("/mail/compose?replyall={uid}&folder=INBOX"))
        .await?;
    ensure!(
        reply.input("to").as_deref() == Some(ALICE),
        "{:?}",
        reply.input("to")
    );
    ensure!(reply.input("subject").as_deref() == Some("Re: Quarterly figures"));
    let irt = reply.input("in_reply_to").context("in_reply_to")?;
    ensure!(!irt.is_empty());
    ensure!(
        unescape(&reply.body).contains("> Here they are."),
        "quote missing"
    );
    let form = reqwest::multipart::Form::new()
        .text("csrf", reply.input("csrf").unwrap())
        .text("to", ALICE)
        .text("subject", reply.input("subject").unwrap())
        .text("body", "Thanks!")
        .text("in_reply_to", irt.clone())
        .text("references", reply.input("references").unwrap())
        .text("reply_folder", "INBOX")
        .text("reply_uid", uid.to_string());
    let r = bob.post_multipart("/mail/send", form).await?;
    ensure!(r.status == 303, "{} {}", r.status, r.body);
    let alice_inbox = server.mail_messages(ALICE, "INBOX").await?;
    let got = String::from_utf8_lossy(&alice_inbox.last().context("reply")?.1).into_owned();
    ensure!(
        got.contains(&format!("In-Reply-To: <{irt}>"))
            && got.contains(&format!("References: <{irt}>")),
        "{got}"
    );
    let bob_inbox = server.mail_messages(BOB, "INBOX").await?;
    ensure!(
        bob_inbox[0].0.flags.contains(Flags::ANSWERED),
        "original not answered"
    );

    // Bob forwards the original to Carol, attachments and all.
    let fwd = bob
        .get(&format!("/mail/compose?forward={uid}&folder=INBOX"))
        .await?;
    ensure!(fwd.input("subject").as_deref() == Some("Fwd: Quarterly figures"));
    ensure!(fwd.has("figures.csv"));
    let form = reqwest::multipart::Form::new()
        .text("csrf", fwd.input("csrf").unwrap())
        .text("to", CAROL)
        .text("subject", fwd.input("subject").unwrap())
        .text("body", "FYI")
        .text("forward_folder", "INBOX")
        .text("forward_uid", uid.to_string());
    ensure!(bob.post_multipart("/mail/send", form).await?.status == 303);
    let carol = server.mail_messages(CAROL, "INBOX").await?;
    let got = String::from_utf8_lossy(&carol.first().context("forward")?.1).into_owned();
    ensure!(
        got.contains("figures.csv")
            && got.contains("blob.bin")
            && got.contains("Subject: Fwd: Quarterly figures"),
        "{got}"
    );

    // A bad address is explained, nothing sent.
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf)
        .text("to", "nobody@example.com")
        .text("subject", "x")
        .text("body", "x");
    let r = alice.post_multipart("/mail/send", form).await?;
    ensure!(r.status == 422 && r.has("id=\"error\""), "{}", r.status);
    server.stop().await
}

/// A bare IMAP connection (plain TCP, the test server allows plaintext login).
struct Imap {
    r: tokio::io::BufReader<tokio::io::ReadHalf<tokio::net::TcpStream>>,
    w: tokio::io::WriteHalf<tokio::net::TcpStream>,
}

async fn msgr_it_imap(server: &TestServer) -> Result<Imap> {
    let s = tokio::net::TcpStream::connect(server.addrs.mail.imap.unwrap()).await?;
    let (r, w) = tokio::io::split(s);
    let mut i = Imap {
        r: tokio::io::BufReader::new(r),
        w,
    };
    ensure!(i.line().await?.starts_with("* OK"));
    Ok(i)
}

impl Imap {
    async fn line(&mut self) -> Result<String> {
        use tokio::io::AsyncBufReadExt;
        let mut l = String::new();
        let n = tokio::time::timeout(TIMEOUT, self.r.read_line(&mut l)).await??;
        if n == 0 {
            bail!("IMAP connection closed");
        }
        Ok(l)
    }
    async fn w(&mut self, line: &str) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        self.w.write_all(format!("{line}\r\n").as_bytes()).await?;
        Ok(())
    }
    async fn cmd(&mut self, line: &str, until: &str) -> Result<String> {
        self.w(line).await?;
        loop {
            let l = self.line().await?;
            if l.starts_with(until) {
                return Ok(l);
            }
        }
    }
}

#[tokio::test]
async fn move_junk_delete_and_search() -> Result<()> {
    // The spam filter on: marking junk here must train Alice's counts, as an IMAP move does.
    let server = start_with(WebConfig::default(), true).await?;
    let a = store_message(
        &server,
        ALICE,
        SpecialUse::Inbox,
        plain("Bob <bob@example.com>", "lunch plans", "pizza at noon"),
    )
    .await?;
    let b_uid = store_message(
        &server,
        ALICE,
        SpecialUse::Inbox,
        plain("Dealer <win@spam.example>", "cheap pills", "buy now"),
    )
    .await?;
    let c = store_message(
        &server,
        ALICE,
        SpecialUse::Inbox,
        plain("Carol <carol@example.com>", "minutes", "the zebra project"),
    )
    .await?;
    let mut b = Browser::signed_in(&server, ALICE).await?;
    let csrf = b.csrf().await?;
    let form = |uid: u32| {
        vec![
            ("csrf".to_owned(), csrf.clone()),
            ("folder".to_owned(), "INBOX".to_owned()),
            ("uid".to_owned(), uid.to_string()),
        ]
    };

    // CSRF is checked on every action.
    let r = b
        .post(
            "/mail/delete",
            &[("folder", "INBOX"), ("uid", &a.to_string())],
        )
        .await?;
    ensure!(r.status == 403, "{}", r.status);

    // Move to Drafts.
    let mut f = form(a);
    f.push(("to".into(), "Drafts".into()));
    let r = b.post("/mail/move", &post(&f)).await?;
    ensure!(r.status == 303, "{}", r.status);
    ensure!(server.mail_messages(ALICE, "Drafts").await?.len() == 1);
    // Junk: moved, and the spam filter hears it.
    ensure!(b.post("/mail/junk", &post(&form(b_uid))).await?.status == 303);
    ensure!(server.mail_messages(ALICE, "Junk").await?.len() == 1);
    let db = server.config.database_path();
    let trained = async {
        loop {
            let db = db.clone();
            let counts = tokio::task::spawn_blocking(move || {
                Store::open_sqlite(&db)?
                    .spam_counts(ALICE, &[])
                    .map_err(anyhow::Error::from)
            })
            .await??;
            if counts.spam_messages == 1 {
                return Ok::<_, anyhow::Error>(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(TIMEOUT, trained)
        .await
        .context("the junk hook never trained")??;
    // Delete moves to Trash; deleting there removes it for good.
    ensure!(b.post("/mail/delete", &post(&form(c))).await?.status == 303);
    let trash = server.mail_messages(ALICE, "Trash").await?;
    ensure!(trash.len() == 1);
    let page = b
        .get(&format!(
            "/mail/message?folder=Trash&uid={}",
            trash[0].0.uid
        ))
        .await?;
    ensure!(page.has("Delete for good"));
    let r = b
        .post(
            "/mail/delete",
            &[
                ("csrf", &csrf),
                ("folder", "Trash"),
                ("uid", &trash[0].0.uid.to_string()),
            ],
        )
        .await?;
    ensure!(r.status == 303, "{}", r.status);
    ensure!(server.mail_messages(ALICE, "Trash").await?.is_empty());
    ensure!(server.mail_messages(ALICE, "INBOX").await?.is_empty());

    // Search finds by subject, sender and text, across folders.
    for (q, found) in [
        ("LUNCH", 1),
        ("dealer", 1),
        ("pizza", 1),
        ("zebra", 0),
        ("nothing-like-this", 0),
    ] {
        let r = b.get(&format!("/mail/search?q={q}")).await?;
        ensure!(r.status == 200, "{q}: {}", r.status);
        ensure!(r.uids().len() == found, "{q}: {:?}", r.uids());
        if found == 0 {
            ensure!(r.has("id=\"empty\""));
        }
    }
    // A gone message is a clean 404.
    let r = b.get("/mail/message?folder=INBOX&uid=999").await?;
    ensure!(r.status == 404 && r.has("id=\"error\""));
    let r = b.get("/mail/message?folder=INBOX&uid=notanumber").await?;
    ensure!(r.status == 400);
    server.stop().await
}

#[tokio::test]
async fn hostile_html_and_broken_mime_are_safe() -> Result<()> {
    let server = start().await?;
    let html = "From: x@evil.example\r\nSubject: hi\r\nContent-Type: text/html\r\n\r\n<p onclick=\"steal()\">Hello<script>alert(1)</script>\
        <img src=\"x\" onerror=\"alert(2)\"><a href=\"javascript:alert(3)\">click</a>\
        <style>p{background:url(https://track.example/css)}</style><div style=\"color:red\">styled</div>\
        <img src=\"https://track.example/pixel.gif\"><iframe src=\"https://evil.example\"></iframe></p>\r\n";
    let uid = store_message(&server, ALICE, SpecialUse::Inbox, html.as_bytes().to_vec()).await?;
    let broken = store_message(&server, ALICE, SpecialUse::Inbox, b"Content-Type: multipart/mixed; boundary=\"\r\nSubject: =?utf-8?B?!!!?=\r\n\r\n--\r\n\xff\xfe--\r\n".to_vec()).await?;
    let mut b = Browser::signed_in(&server, ALICE).await?;
    let page = b
        .get(&format!("/mail/message?folder=INBOX&uid={uid}"))
        .await?;
    ensure!(page.status == 200);
    ensure!(
        page.has("<iframe id=\"html-body\" sandbox=")
            && !page.has("allow-scripts")
            && !page.has("allow-same-origin")
    );
    ensure!(
        !page.has("alert(") && !page.has("track.example"),
        "mail HTML leaked into the page"
    );
    let src = page
        .link("id=\"show-images\"")
        .context("no show-images link")?;
    let frame_src = {
        let i = page.body.find("id=\"html-body\"").unwrap();
        let rest = &page.body[i..];
        let s = rest.find("src=\"").unwrap() + 5;
        unescape(&rest[s..s + rest[s..].find('"').unwrap()])
    };
    ensure!(frame_src.starts_with("/mail/message/html?"), "{frame_src}");
    let frame = b.get(&frame_src).await?;
    ensure!(frame.status == 200);
    for gone in [
        "<script",
        "alert(",
        "onerror",
        "onclick",
        "javascript:",
        "<style",
        "style=",
        "track.example",
        "<iframe",
    ] {
        ensure!(!frame.has(gone), "{gone} survived: {}", frame.body);
    }
    ensure!(frame.has("Hello") && frame.has("styled"));
    let csp = frame.header("content-security-policy");
    ensure!(
        csp.contains("script-src 'none'")
            && csp.contains("img-src data:;")
            && csp.contains("sandbox"),
        "{csp}"
    );
    // After "show images", the remote image is there (and allowed by the frame's policy); still no script.
    let shown = b.get(&src).await?;
    let i = shown.body.find("id=\"html-body\"").unwrap();
    let rest = &shown.body[i..];
    let s = rest.find("src=\"").unwrap() + 5;
    let frame2 = b
        .get(&unescape(&rest[s..s + rest[s..].find('"').unwrap()]))
        .await?;
    ensure!(frame2.has("https://track.example/pixel.gif") && !frame2.has("<script"));
    ensure!(frame2
        .header("content-security-policy")
        .contains("img-src data: https:"));
    // Headers are text, never markup: a hostile subject and sender are escaped in the list and the page.
    let evil = store_message(
        &server,
        ALICE,
        SpecialUse::Inbox,
        b"From: \"<img src=x onerror=alert(7)>\" <x@evil.example>\r\nSubject: <script>alert(8)</script>\r\n\r\nbody\r\n".to_vec(),
    )
    .await?;
    let list = b.get("/mail/inbox").await?;
    ensure!(
        list.status == 200 && !list.has("<script>alert(8)") && !list.has("<img src=x"),
        "unescaped header in the list"
    );
    let shown = b
        .get(&format!("/mail/message?folder=INBOX&uid={evil}"))
        .await?;
    ensure!(shown.status == 200 && !shown.has("<script>alert(8)") && !shown.has("<img src=x"));
    ensure!(
        shown.has("&#60;script&#62;alert(8)"),
        "subject not shown escaped"
    );
    // Broken MIME renders.
    let r = b
        .get(&format!("/mail/message?folder=INBOX&uid={broken}"))
        .await?;
    ensure!(
        r.status == 200 && r.has("id=\"message-body\""),
        "{}",
        r.status
    );
    server.stop().await
}

#[tokio::test]
async fn a_thousand_attachments_and_a_fifty_megabyte_message() -> Result<()> {
    let server = start().await?;
    let mut raw = String::from("From: bulk@example.com\r\nSubject: many\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nlots of files\r\n");
    for i in 0..1000 {
        raw.push_str(&format!("--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=\"file{i:04}.txt\"\r\n\r\ncontent {i}\r\n"));
    }
    raw.push_str("--b--\r\n");
    let many = store_message(&server, ALICE, SpecialUse::Inbox, raw.into_bytes()).await?;
    let mut big =
        b"From: big@example.com\r\nSubject: huge\r\nContent-Type: text/plain\r\n\r\n".to_vec();
    let line = b"0123456789 the quick brown fox jumps over the lazy dog 0123456789\r\n";
    while big.len() < 50 * 1024 * 1024 {
        big.extend_from_slice(line);
    }
    let huge = store_message(&server, ALICE, SpecialUse::Inbox, big).await?;

    let mut b = Browser::signed_in(&server, ALICE).await?;
    let page = b
        .get(&format!("/mail/message?folder=INBOX&uid={many}"))
        .await?;
    ensure!(page.status == 200 && page.has("Attachments (1000)"));
    let listed = page.body.matches("class=\"attachment\"").count();
    ensure!(
        listed == WebConfig::default().attachments_per_page,
        "{listed} listed"
    );
    let more = page
        .link("id=\"attachments-next\"")
        .context("no next attachments")?;
    let mut last = page;
    let mut pages = 1;
    let mut next = Some(more);
    while let Some(n) = next {
        last = b.get(&n).await?;
        pages += 1;
        next = last.link("id=\"attachments-next\"");
    }
    ensure!(pages == 10 && last.has("file0999.txt"), "{pages} pages");
    let file = b
        .get(&format!(
            "/mail/attachment?folder=INBOX&uid={many}&part=999"
        ))
        .await?;
    ensure!(
        file.status == 200 && file.body == "content 999",
        "{:?}",
        file.body
    );
    ensure!(file.header("content-disposition").contains("file0999.txt"));

    let page = b
        .get(&format!("/mail/message?folder=INBOX&uid={huge}"))
        .await?;
    ensure!(
        page.status == 200 && page.has("id=\"truncated\"") && page.link("id=\"source\"").is_some()
    );
    ensure!(
        page.body.len() < 2 * WebConfig::default().max_text_bytes,
        "a {} byte page",
        page.body.len()
    );
    ensure!(b.get("/mail/inbox").await?.status == 200);
    server.stop().await
}

#[tokio::test]
async fn request_body_limit_is_enforced() -> Result<()> {
    let server = start_with(
        WebConfig {
            max_body_bytes: 64 * 1024,
            ..WebConfig::default()
        },
        false,
    )
    .await?;
    let mut b = Browser::signed_in(&server, ALICE).await?;
    let csrf = b.csrf().await?;
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf)
        .text("to", BOB)
        .part(
            "attachment",
            reqwest::multipart::Part::bytes(vec![b'x'; 200 * 1024]).file_name("big.bin"),
        );
    let r = b.post_multipart("/mail/send", form).await?;
    ensure!(r.status == 413 && r.has("id=\"error\""), "{}", r.status);
    ensure!(server.mail_messages(BOB, "INBOX").await?.is_empty());
    // The session still works.
    ensure!(b.get("/mail/inbox").await?.status == 200);
    server.stop().await
}

#[tokio::test]
async fn live_updates_announce_new_mail_and_end_at_sign_out() -> Result<()> {
    let server = start().await?;
    let mut b = Browser::signed_in(&server, ALICE).await?;
    let mut events = b
        .client
        .get(format!("{}/mail/events", b.base))
        .header("cookie", b.cookie_header())
        .send()
        .await?;
    ensure!(events.status() == 200);
    ensure!(events.headers().get("content-type").unwrap() == "text/event-stream");
    let first = tokio::time::timeout(TIMEOUT, events.chunk())
        .await??
        .context("stream ended")?;
    ensure!(String::from_utf8_lossy(&first).contains(": open"));
    // Mail arrives through the server (here: Bob sends from the web).
    let mut bob = Browser::signed_in(&server, BOB).await?;
    let csrf = bob.csrf().await?;
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf)
        .text("to", ALICE)
        .text("subject", "ping")
        .text("body", "hi");
    ensure!(bob.post_multipart("/mail/send", form).await?.status == 303);
    let mut seen = String::new();
    while !seen.contains("event: mail") {
        let chunk = tokio::time::timeout(TIMEOUT, events.chunk())
            .await??
            .context("stream ended early")?;
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    // Sign-out ends the stream.
    let csrf = b.csrf().await?;
    ensure!(b.post("/mail/logout", &[("csrf", &csrf)]).await?.status == 303);
    let mut rest = String::new();
    while let Some(chunk) = tokio::time::timeout(TIMEOUT, events.chunk()).await?? {
        rest.push_str(&String::from_utf8_lossy(&chunk));
    }
    ensure!(rest.contains("event: bye"), "{rest}");
    server.stop().await
}

#[tokio::test]
async fn live_update_streams_are_capped_per_session() -> Result<()> {
    let server = start_with(
        WebConfig {
            max_event_streams_per_session: 1,
            ..WebConfig::default()
        },
        false,
    )
    .await?;
    let b = Browser::signed_in(&server, ALICE).await?;
    let open = || {
        b.client
            .get(format!("{}/mail/events", b.base))
            .header("cookie", b.cookie_header())
            .send()
    };
    let mut first = open().await?;
    ensure!(first.status() == 200);
    tokio::time::timeout(TIMEOUT, first.chunk())
        .await??
        .context("stream ended")?;
    let second = open().await?;
    ensure!(second.status() == 429, "{}", second.status());
    // Closing the first gives its place back.
    drop(first);
    let again = async {
        loop {
            let r = open().await?;
            if r.status() == 200 {
                return Ok::<_, anyhow::Error>(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(TIMEOUT, again)
        .await
        .context("the closed stream's place never came back")??;
    server.stop().await
}

/// An IMAP `DELETE` of a folder with subfolders leaves a `\Noselect` name: the web inbox lists
/// the subfolder but not the placeholder, which holds nothing to open.
#[tokio::test]
async fn noselect_placeholders_are_not_listed() -> Result<()> {
    let server = start().await?;
    let db = server.config.database_path();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let store = Store::open_sqlite(&db)?;
        store.create_folder(ALICE, "Old")?;
        store.create_folder(ALICE, "Old/Kept")?;
        store.set_noselect(ALICE, "Old", true)?;
        Ok(())
    })
    .await??;
    let mut b = Browser::signed_in(&server, ALICE).await?;
    let inbox = b.get("/mail/inbox").await?;
    ensure!(inbox.status == 200);
    ensure!(inbox.has("data-folder=\"Old/Kept\""), "subfolder missing");
    ensure!(!inbox.has("data-folder=\"Old\""), "placeholder listed");
    Ok(())
}
