//! The web inbox in a real browser: Debian's headless Chromium through chromedriver
//! (`msgr_it::browser`), against the real server on loopback, with mail delivered over real SMTP
//! first. Pages are found by issue 15's HTML contract (ids, classes, `data-` attributes), never by
//! layout or wording.
//!
//! With `MSGR_SCREENSHOTS=docs/screenshots` the main pages are saved there for the README.

#![allow(clippy::unwrap_used)]

use anyhow::{bail, ensure, Context, Result};
use base64::Engine;
use fantoccini::Locator;
use msgr_client::{hotmail_form, MailPage, PassportProfile};
use msgr_it::browser::{Browser, BROWSER_TIMEOUT};
use msgr_it::{
    challenge_answer, cvr_request, https_get, passport_ticket, tls_connector, Conn, ServerOptions,
    TestServer, CVR_REPLY, TIMEOUT,
};
use msgr_mail::MailConfig;
use msgr_proto::mime::{MimeMessage, Profile};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const PASSWORD: &str = "correct horse";

/// A server whose MX files everything in the Inbox (the spam filter would judge test mail), with
/// Alice and Bob.
async fn start() -> Result<TestServer> {
    let mut mail = MailConfig {
        allow_plaintext_auth: true,
        ..MailConfig::default()
    };
    mail.spam.enabled = false;
    let server = TestServer::start(ServerOptions {
        mail: Some(mail),
        ..ServerOptions::default()
    })
    .await?;
    server.add_account(ALICE, PASSWORD, "Alice").await?;
    server.add_account(BOB, PASSWORD, "Bob").await?;
    Ok(server)
}

fn https_base(server: &TestServer) -> String {
    format!("https://127.0.0.1:{}", server.addrs.https.unwrap().port())
}

async fn smtp_reply(r: &mut BufReader<tokio::io::ReadHalf<TcpStream>>) -> Result<String> {
    loop {
        let mut l = String::new();
        let n = tokio::time::timeout(TIMEOUT, r.read_line(&mut l)).await??;
        ensure!(n > 0, "the SMTP server closed the connection");
        if l.len() < 4 || l.as_bytes()[3] == b' ' {
            return Ok(l);
        }
    }
}

/// Delivers `message` (header and body, CRLF line ends, no final dot) from `from` to `to`
/// through the MX, checking every reply.
async fn smtp_deliver(server: &TestServer, from: &str, to: &str, message: &str) -> Result<()> {
    let s = TcpStream::connect(server.addrs.mail.smtp.unwrap()).await?;
    let (r, mut w) = tokio::io::split(s);
    let mut r = BufReader::new(r);
    ensure!(smtp_reply(&mut r).await?.starts_with("220"));
    for (line, code) in [
        ("EHLO test.example".to_owned(), "250"),
        (format!("MAIL FROM:<{from}>"), "250"),
        (format!("RCPT TO:<{to}>"), "250"),
        ("DATA".to_owned(), "354"),
        (format!("{message}\r\n."), "250"),
        ("QUIT".to_owned(), "221"),
    ] {
        w.write_all(format!("{line}\r\n").as_bytes()).await?;
        let got = smtp_reply(&mut r).await?;
        ensure!(got.starts_with(code), "{line:?}: {got}");
    }
    Ok(())
}

/// A plain-text message to Alice.
fn plain(from_name: &str, from: &str, subject: &str, body: &str) -> String {
    format!(
        "From: {from_name} <{from}>\r\nTo: Alice <{ALICE}>\r\nSubject: {subject}\r\n\
         Date: Sun, 29 Nov 2026 12:00:00 +0000\r\nMessage-ID: <{}@other.example>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        subject.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
    )
}

/// HTML mail that would rewrite its own page if any of its script ran: an inline script, an
/// `onerror` handler, a `javascript:` link, a remote image.
const HOSTILE: &str = "From: Mallory <mallory@other.example>\r\nTo: Alice <alice@example.com>\r\n\
Subject: Hostile\r\nDate: Sun, 29 Nov 2026 11:00:00 +0000\r\nMessage-ID: <hostile@other.example>\r\n\
MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
<html><head><title>t</title><script>document.title='PWNED';top.document.title='PWNED'</script></head>\r\n\
<body><p>this page is safe</p>\r\n\
<script>document.body.textContent='PWNED BY SCRIPT';</script>\r\n\
<img src=\"x\" onerror=\"document.body.textContent='PWNED BY ONERROR'\">\r\n\
<svg onload=\"document.body.textContent='PWNED BY SVG'\"></svg>\r\n\
<a href=\"javascript:document.body.textContent='PWNED BY LINK'\">a link</a>\r\n\
<img src=\"https://tracker.invalid/pixel.gif\" alt=\"remote\">\r\n\
</body></html>\r\n";

/// The open list's rows as `(subject, uid, classes)`, read in one go: the page replaces its list
/// when mail arrives, so elements found one by one could go stale in between.
async fn rows(b: &Browser) -> Result<Vec<(String, String, String)>> {
    let v = b
        .eval(
            "return Array.from(document.querySelectorAll('table#messages tr.msg')).map(r => {
                const a = r.querySelector('a.subject');
                return [a ? a.textContent.trim() : '', r.getAttribute('data-uid') || '', r.className];
            });",
        )
        .await?;
    let rows: Vec<(String, String, String)> =
        serde_json::from_value(v).context("reading the message rows")?;
    Ok(rows)
}

/// Subjects of the rows of the open list (empty when it shows `#empty`).
async fn subjects(b: &Browser) -> Result<Vec<String>> {
    Ok(rows(b).await?.into_iter().map(|(s, _, _)| s).collect())
}

/// The row whose subject is `subject`: its uid and classes.
async fn row_with_subject(b: &Browser, subject: &str) -> Result<Option<(String, String)>> {
    Ok(rows(b)
        .await?
        .into_iter()
        .find(|(s, _, _)| s == subject)
        .map(|(_, uid, class)| (uid, class)))
}

/// The unread count the folder list shows for `folder` (0 without a `span.unread`).
async fn unread(b: &Browser, folder: &str) -> Result<u32> {
    b.wait_for(&format!("nav#folders a.folder[data-folder=\"{folder}\"]"))
        .await?;
    let v = b
        .eval_with(
            "const a = document.querySelector('nav#folders a.folder[data-folder=\"' + arguments[0] + '\"]');
             if (!a) { return null; }
             const s = a.querySelector('span.unread');
             return s ? s.textContent : '0';",
            vec![serde_json::json!(folder)],
        )
        .await?;
    let t = v
        .as_str()
        .with_context(|| format!("no folder link for {folder}"))?;
    let digits: String = t.chars().filter(char::is_ascii_digit).collect();
    digits
        .parse()
        .with_context(|| format!("unread count of {folder}: {t:?}"))
}

/// Re-evaluates `cond` (an expression that may `.await?`) until it is true, or fails after
/// [`BROWSER_TIMEOUT`]: for what arrives without a reload, and pages that load after a click.
macro_rules! eventually {
    ($what:expr, $cond:expr) => {{
        let deadline = tokio::time::Instant::now() + BROWSER_TIMEOUT;
        loop {
            if $cond {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("never saw {}", $what);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }};
}

async fn open_folder(b: &Browser, folder: &str) -> Result<()> {
    b.click(&format!("nav#folders a.folder[data-folder=\"{folder}\"]"))
        .await?;
    // The list or its empty note.
    eventually!(
        format!("the {folder} list"),
        b.exists("table#messages").await? || b.exists("#empty").await?
    );
    Ok(())
}

async fn open_message(b: &Browser, subject: &str) -> Result<()> {
    let (uid, _) = row_with_subject(b, subject)
        .await?
        .with_context(|| format!("no row for {subject:?}"))?;
    b.click(&format!(
        "table#messages tr.msg[data-uid=\"{uid}\"] a.subject"
    ))
    .await?;
    b.wait_for_path("/mail/message").await?;
    b.wait_for("#message-headers .subject").await?;
    Ok(())
}

async fn sign_in(b: &Browser, base: &str) -> Result<()> {
    b.goto(&format!("{base}/mail/login")).await?;
    b.wait_for("form#login").await?;
    ensure!(
        b.exists("form#login input[name=csrf]").await?,
        "the sign-in form has no CSRF field"
    );
    b.screenshot("signin").await?;
    // A wrong password first: a message, no session.
    b.fill("form#login input[name=user]", ALICE).await?;
    b.fill("form#login input[name=password]", "wrong").await?;
    b.click("button#signin").await?;
    let error = b.text("#error").await?;
    ensure!(!error.trim().is_empty(), "an empty #error");
    ensure!(
        !b.exists("nav#folders").await?,
        "signed in with a wrong password"
    );
    b.fill("form#login input[name=user]", ALICE).await?;
    b.fill("form#login input[name=password]", PASSWORD).await?;
    b.click("button#signin").await?;
    b.wait_for_path("/mail/inbox").await?;
    b.wait_for("nav#folders").await?;
    Ok(())
}

/// IMAP: the raw bytes of every message in `user`'s Inbox.
async fn imap_inbox(server: &TestServer, user: &str) -> Result<Vec<Vec<u8>>> {
    use futures_util::TryStreamExt;
    let tcp = TcpStream::connect(server.addrs.mail.imap.unwrap()).await?;
    let mut client = async_imap::Client::new(tcp);
    client.read_response().await?.context("no IMAP greeting")?;
    let mut session = client
        .login(user, PASSWORD)
        .await
        .map_err(|(e, _)| anyhow::anyhow!("IMAP login: {e}"))?;
    session.select("INBOX").await?;
    let fetched: Vec<_> = session
        .uid_fetch("1:*", "BODY.PEEK[]")
        .await?
        .try_collect()
        .await?;
    let bodies = fetched
        .iter()
        .filter_map(|f| f.body().map(<[u8]>::to_vec))
        .collect();
    session.logout().await?;
    Ok(bodies)
}

/// Everything the web inbox offers, in one signed-in browser session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webmail_in_chromium() -> Result<()> {
    let server = start().await?;
    let base = https_base(&server);
    smtp_deliver(
        &server,
        "news@other.example",
        ALICE,
        &plain("The News", "news@other.example", "Old news", "nothing new"),
    )
    .await?;
    smtp_deliver(&server, "mallory@other.example", ALICE, HOSTILE).await?;
    smtp_deliver(
        &server,
        BOB,
        ALICE,
        &plain("Bob", BOB, "Lunch?", "Noon at the usual place?"),
    )
    .await?;

    let b = Browser::start().await?;
    let result = webmail_steps(&server, &b, &base).await;
    let result = b.snapshot_on_error("webmail", result).await;
    b.quit().await?;
    result?;
    server.stop().await
}

async fn webmail_steps(server: &TestServer, b: &Browser, base: &str) -> Result<()> {
    sign_in(b, base).await?;

    // The session cookie as issue 15 asks.
    let cookies = b.client().get_all_cookies().await?;
    let session = cookies
        .iter()
        .find(|c| c.name() == "msgr_mail_session")
        .context("no msgr_mail_session cookie")?;
    ensure!(
        session.http_only() == Some(true),
        "not HttpOnly: {session:?}"
    );
    ensure!(session.secure() == Some(true), "not Secure: {session:?}");
    ensure!(
        format!("{:?}", session.same_site()) == "Some(Strict)",
        "not SameSite=Strict: {session:?}"
    );
    let session_value = session.value().to_owned();

    // Folder list and message list: three unread messages, newest first, unread rows marked.
    ensure!(unread(b, "INBOX").await? == 3, "Inbox unread");
    for f in ["Sent", "Drafts", "Junk", "Trash"] {
        b.wait_for(&format!("nav#folders a.folder[data-folder=\"{f}\"]"))
            .await?;
    }
    let list = b.find_all("table#messages tr.msg").await?;
    ensure!(list.len() == 3, "{} rows", list.len());
    ensure!(
        b.find_all("table#messages tr.msg.unread").await?.len() == 3,
        "unread rows"
    );
    for cell in [".from", "a.subject", ".date", ".size", ".attach"] {
        list[0]
            .find(Locator::Css(cell))
            .await
            .with_context(|| format!("a row without {cell}"))?;
    }
    ensure!(
        list[0].attr("data-uid").await?.is_some(),
        "a row without data-uid"
    );
    ensure!(
        subjects(b).await?.contains(&"Lunch?".to_owned()),
        "{:?}",
        subjects(b).await?
    );
    b.screenshot("inbox").await?;

    // The hostile HTML message: shown, but none of its script ran.
    open_message(b, "Hostile").await?;
    let frame = b.wait_for("#message-body iframe#html-body").await?;
    let sandbox = frame
        .attr("sandbox")
        .await?
        .context("the HTML body's iframe is not sandboxed")?;
    ensure!(
        !sandbox.contains("allow-scripts"),
        "sandbox {sandbox:?} allows scripts"
    );
    ensure!(
        !sandbox.contains("allow-same-origin"),
        "sandbox {sandbox:?} keeps the origin"
    );
    frame.enter_frame().await?;
    let mut text: String;
    eventually!("the HTML body's text", {
        text = b.text("body").await?;
        text.contains("this page is safe") || text.contains("PWNED")
    });
    ensure!(
        !text.contains("PWNED"),
        "a script ran in the message: {text:?}"
    );
    ensure!(
        b.find_all("script, [onerror], [onload]").await?.is_empty(),
        "scripts or handlers survived sanitising"
    );
    b.client().enter_parent_frame().await?;
    let title = b.client().title().await?;
    ensure!(
        !title.contains("PWNED"),
        "the page title changed: {title:?}"
    );
    ensure!(
        b.exists("a#show-images").await?,
        "remote images are not offered behind a#show-images"
    );

    // Reading marked it read; the count follows.
    ensure!(
        unread(b, "INBOX").await? == 2,
        "Inbox unread after reading one"
    );

    // Bob's message, then a reply with an attachment.
    open_folder(b, "INBOX").await?;
    open_message(b, "Lunch?").await?;
    let from = b.text("#message-headers .from").await?;
    ensure!(from.contains(BOB), "From shows {from:?}");
    for part in [".to", ".date"] {
        b.wait_for(&format!("#message-headers {part}")).await?;
    }
    let body = b.text("#message-body pre").await?;
    ensure!(body.contains("Noon at the usual place?"), "{body:?}");
    for control in [
        "a#reply",
        "a#reply-all",
        "a#forward",
        "form#delete button#delete-button",
        "form#junk button#junk-button",
        "form#move select[name=to]",
        "form#move button#move-button",
        "form#mark button#mark-unread-button",
    ] {
        b.wait_for(control).await?;
    }
    b.screenshot("message").await?;
    b.click("a#reply").await?;
    b.wait_for_path("/mail/compose").await?;
    let to = b.value("form#compose input[name=to]").await?;
    ensure!(to.contains(BOB), "reply addressed to {to:?}");
    let subject = b.value("form#compose input[name=subject]").await?;
    ensure!(subject.contains("Lunch?"), "reply subject {subject:?}");
    b.find("form#compose input[name=cc]").await?;
    b.fill("form#compose textarea[name=body]", "See you at noon.\n")
        .await?;
    let dir = tempfile::tempdir()?;
    let attachment = dir.path().join("menu.txt");
    std::fs::write(&attachment, "soup of the day: tomato\n")?;
    let file = b
        .find("form#compose input[type=file][name=attachment][multiple]")
        .await?;
    file.send_keys(&attachment.to_string_lossy()).await?;
    b.screenshot("compose").await?;
    b.click("button#send").await?;
    b.wait_for_path("/mail/inbox").await?;
    b.wait_for("#notice").await?;

    // Bob reads it over IMAP: the text and the attachment.
    let mut got: Option<String>;
    eventually!("the reply in Bob's Inbox over IMAP", {
        got = imap_inbox(server, BOB)
            .await?
            .into_iter()
            .map(|raw| String::from_utf8_lossy(&raw).into_owned())
            .find(|m| m.contains("Lunch?"));
        got.is_some()
    });
    let reply = got.unwrap();
    ensure!(reply.contains("See you at noon."), "{reply}");
    ensure!(reply.contains("menu.txt"), "no attachment name: {reply}");
    let b64 = base64::engine::general_purpose::STANDARD.encode("soup of the day: tomato\n");
    ensure!(
        reply.contains("soup of the day: tomato") || reply.contains(&b64),
        "no attachment content: {reply}"
    );

    // And it is in Alice's Sent folder.
    open_folder(b, "Sent").await?;
    ensure!(
        subjects(b).await?.iter().any(|s| s.contains("Lunch?")),
        "Sent: {:?}",
        subjects(b).await?
    );

    // Delete: out of the Inbox, into Trash.
    open_folder(b, "INBOX").await?;
    open_message(b, "Old news").await?;
    b.click("button#delete-button").await?;
    eventually!(
        "leaving the deleted message",
        b.url().await?.path() != "/mail/message"
    );
    open_folder(b, "INBOX").await?;
    ensure!(
        !subjects(b).await?.contains(&"Old news".to_owned()),
        "still in the Inbox"
    );
    open_folder(b, "Trash").await?;
    ensure!(
        subjects(b).await?.contains(&"Old news".to_owned()),
        "not in Trash: {:?}",
        subjects(b).await?
    );

    // Search.
    b.fill("form#search input[name=q]", "Lunch").await?;
    b.find("form#search input[name=q]")
        .await?
        .send_keys(&char::from(fantoccini::key::Key::Enter).to_string())
        .await?;
    b.wait_for_path("/mail/search").await?;
    eventually!(
        "search results",
        b.exists("table#messages").await? || b.exists("#empty").await?
    );
    let found = subjects(b).await?;
    ensure!(
        found.iter().any(|s| s == "Lunch?") && !found.iter().any(|s| s == "Hostile"),
        "searching for Lunch found {found:?}"
    );

    // Junk.
    open_folder(b, "INBOX").await?;
    open_message(b, "Hostile").await?;
    b.click("button#junk-button").await?;
    eventually!(
        "leaving the junked message",
        b.url().await?.path() != "/mail/message"
    );
    open_folder(b, "Junk").await?;
    ensure!(
        subjects(b).await?.contains(&"Hostile".to_owned()),
        "not in Junk: {:?}",
        subjects(b).await?
    );

    // New mail appears without a reload: a mark set in the page survives.
    open_folder(b, "INBOX").await?;
    let before = unread(b, "INBOX").await?;
    b.eval("window.msgrStayMark = 'still here'; return true;")
        .await?;
    smtp_deliver(
        server,
        BOB,
        ALICE,
        &plain("Bob", BOB, "Live update", "arrives while you look"),
    )
    .await?;
    eventually!(
        "the new message in the open list",
        row_with_subject(b, "Live update").await?.is_some()
    );
    let mark = b.eval("return window.msgrStayMark || null;").await?;
    ensure!(
        mark == serde_json::json!("still here"),
        "the page reloaded ({mark})"
    );
    let (_, class) = row_with_subject(b, "Live update").await?.unwrap();
    ensure!(class.split_whitespace().any(|c| c == "unread"), "{class:?}");
    eventually!(
        "the unread count going up",
        unread(b, "INBOX").await? == before + 1
    );

    // Sign-out ends the session on the server: the old cookie no longer opens the inbox.
    b.click("button#signout-button").await?;
    b.wait_for_path("/mail/login").await?;
    let tls = tls_connector(&server.endpoint().ca)?;
    let https = server.addrs.https.unwrap();
    let resp = https_get(
        &tls,
        "127.0.0.1",
        https.port(),
        "/mail/inbox",
        &format!("Cookie: msgr_mail_session={session_value}\r\n"),
    )
    .await?;
    ensure!(
        resp.status != 200,
        "the signed-out cookie still opens the inbox ({})",
        resp.status
    );
    b.goto(&format!("{base}/mail/inbox")).await?;
    b.wait_for("form#login").await?;
    Ok(())
}

/// Signs Alice in over MSNP12 and returns the connection and the profile's Passport fields.
async fn msnp_with_profile(server: &TestServer) -> Result<(Conn, PassportProfile)> {
    let ep = server.endpoint();
    let mut c = Conn::connect(ep.msnp).await?;
    c.send("VER 1 MSNP12 CVR0").await?;
    c.expect_line("VER 1 MSNP12 CVR0").await?;
    c.send(&cvr_request(2, ALICE)).await?;
    c.expect_line(&format!("CVR 2 {CVR_REPLY}")).await?;
    c.send(&format!("USR 3 TWN I {ALICE}")).await?;
    c.expect_match("USR 3 TWN S {any}").await?;
    let ticket = passport_ticket(ep.https, &ep.ca, ALICE, PASSWORD).await?;
    c.send(&format!("USR 4 TWN S {ticket}")).await?;
    c.expect_match(&format!("USR 4 OK {ALICE} {{rest}}"))
        .await?;
    let mut profile = None;
    loop {
        let f = c.recv_frame().await?;
        if f.command() == "CHL" {
            let challenge = f.line().rsplit(' ').next().unwrap_or_default().to_owned();
            let (id, answer) = challenge_answer(msgr_proto::Dialect::Msnp12, &challenge);
            c.send_raw(format!("QRY 5 {id} 32\r\n{answer}").as_bytes())
                .await?;
            c.expect_line("QRY 5").await?;
            break;
        }
        if let Some(p) = f.payload() {
            if let Ok(p) = MimeMessage::parse(p).and_then(|m| Profile::from_message(&m)) {
                profile = Some(p);
            }
        }
    }
    let p = profile.context("no profile before the challenge")?;
    ensure!(p.email_enabled, "EmailEnabled is not 1");
    ensure!(!p.mspauth.is_empty(), "an empty MSPAuth");
    Ok((
        c,
        PassportProfile {
            mspauth: p.mspauth,
            sid: p.sid,
            kv: p.kv,
            login_time: p.login_time,
            email_enabled: p.email_enabled,
        },
    ))
}

/// `URL t SERVICE…` → the page and the `Post-URL`.
async fn url(c: &mut Conn, trid: u32, service: &str) -> Result<MailPage> {
    c.send(&format!("URL {trid} {service}")).await?;
    let line = c.expect_match(&format!("URL {trid} {{rest}}")).await?;
    let parts: Vec<&str> = line.split(' ').collect();
    ensure!(parts.len() >= 4, "{line}");
    Ok(MailPage {
        rru: parts[2].to_owned(),
        post_url: parts[3].to_owned(),
        site_id: parts.get(4).map(|s| (*s).to_owned()),
    })
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Messenger's way in: `URL t INBOX` over MSNP, then the local page with the form Messenger built
/// from the profile posted by Chromium to `Post-URL`: the inbox opens without a password. A
/// ticket changed by one character opens nothing. Reading the message on the web is then an
/// active-mail notice on the MSNP connection.
///
/// The ticket post is answered with a page of msgr's own that moves on to `rru`: a `303` would
/// lose the `SameSite=Strict` session cookie, since a browser does not send a Strict cookie on a
/// redirect whose chain began cross-site (Messenger's local file), and Chromium would land on
/// `/mail/login`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_from_messenger_without_a_password() -> Result<()> {
    let server = start().await?;
    smtp_deliver(
        &server,
        BOB,
        ALICE,
        &plain("Bob", BOB, "Lunch?", "Noon at the usual place?"),
    )
    .await?;
    let (mut c, profile) = msnp_with_profile(&server).await?;
    let inbox = url(&mut c, 10, "INBOX").await?;
    ensure!(
        inbox.post_url == format!("{}/mail/login", https_base(&server)),
        "{inbox:?}"
    );
    let compose = url(&mut c, 11, &format!("COMPOSE {BOB}")).await?;

    let dir = tempfile::tempdir()?;
    let b = Browser::start().await?;
    let result = async {
        // A forged ticket first: refused, nobody signed in.
        let mut forged = profile.clone();
        let last = forged.mspauth.pop().unwrap_or('0');
        forged.mspauth.push(if last == '0' { '1' } else { '0' });
        let page = dir.path().join("forged.html");
        std::fs::write(
            &page,
            hotmail_form(ALICE, PASSWORD, &forged, &inbox, unix_now()),
        )?;
        b.goto(&format!("file://{}", page.display())).await?;
        b.wait_for("#error").await?;
        ensure!(!b.exists("nav#folders").await?, "a forged ticket signed in");

        // The real one: straight into the inbox.
        let page = dir.path().join("hotmail.html");
        std::fs::write(
            &page,
            hotmail_form(ALICE, PASSWORD, &profile, &inbox, unix_now()),
        )?;
        b.goto(&format!("file://{}", page.display())).await?;
        if let Err(e) = b.wait_for_path("/mail/inbox").await {
            // Tell a lost cookie from a refused ticket: open the inbox by its address (a
            // navigation of the browser's own, which carries SameSite=Strict cookies).
            b.goto(&format!("{}/mail/inbox", https_base(&server)))
                .await?;
            let signed_in = b.wait_for("nav#folders").await.is_ok();
            bail!(
                "{e:#}; {}",
                if signed_in {
                    "the ticket did sign the browser in (opening /mail/inbox directly shows the \
                     inbox): the session cookie was set but not sent on the redirect that \
                     followed the cross-site form post (SameSite=Strict)"
                } else {
                    "the ticket did not sign the browser in"
                }
            );
        }
        b.wait_for("nav#folders").await?;
        ensure!(
            subjects(&b).await?.contains(&"Lunch?".to_owned()),
            "{:?}",
            subjects(&b).await?
        );
        ensure!(unread(&b, "INBOX").await? == 1, "Inbox unread");

        // Reading it on the web tells Messenger: one unread message left the Inbox.
        open_message(&b, "Lunch?").await?;
        let frame = c.recv_frame().await?;
        let payload = frame
            .payload()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        ensure!(
            frame.line().starts_with("MSG Hotmail Hotmail ")
                && payload.contains("text/x-msmsgsactivemailnotification")
                && payload
                    .contains("\r\nSrc-Folder: ACTIVE\r\nDest-Folder: \r\nMessage-Delta: 1\r\n"),
            "after reading on the web, MSNP got {:?} {payload:?}",
            frame.line()
        );

        // COMPOSE with an address lands on the form, addressed.
        let page = dir.path().join("compose.html");
        std::fs::write(
            &page,
            hotmail_form(ALICE, PASSWORD, &profile, &compose, unix_now()),
        )?;
        b.goto(&format!("file://{}", page.display())).await?;
        b.wait_for_path("/mail/compose").await?;
        let to = b.value("form#compose input[name=to]").await?;
        ensure!(to.contains(BOB), "compose addressed to {to:?}");
        Ok(())
    }
    .await;
    let result = b.snapshot_on_error("messenger-url", result).await;
    b.quit().await?;
    result?;
    c.send("OUT").await?;
    server.stop().await
}

/// The harness itself, against a page msgr has always served: the site root on the HTTPS
/// listener (self-signed certificate) and on the plain HTTP one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_reads_the_site_root() -> Result<()> {
    let server = TestServer::start(ServerOptions::default()).await?;
    let browser = Browser::start().await?;
    let result = async {
        for base in [
            https_base(&server),
            format!("http://{}", server.addrs.http.unwrap()),
        ] {
            browser.goto(&format!("{base}/")).await?;
            let body = browser.text("body").await?;
            ensure!(
                body.contains("msgr: an MSN Messenger service"),
                "{base}/ showed {body:?}"
            );
        }
        let png = browser.png().await?;
        ensure!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        Ok(())
    }
    .await;
    browser.quit().await?;
    result?;
    server.stop().await
}
