//! Logging in, staying online and leaving, for every dialect MSNP2–MSNP12, against the real
//! server over real sockets (MSNP over TCP, Passport 1.4 over HTTPS).
//!
//! Each scenario is written once and instantiated per dialect by a macro, so a failure names
//! the dialect (`msnp9::login`) and the scenario.

#![allow(clippy::unwrap_used)]

use anyhow::{ensure, Context, Result};
use msgr_it::{
    challenge_answer, cvr_request, md5_hex, profile_client_port, qng, Conn, ServerOptions,
    TestServer, CVR_REPLY,
};
use msgr_proto::mime::{MimeMessage, Profile};
use msgr_proto::Dialect;

const EMAIL: &str = "alice@x.com";
const PASSWORD: &str = "correct horse";
/// With a space, so the URL-encoding of the name in `USR … OK` is checked too.
const NAME: &str = "Alice Liddell";

async fn server_with_alice(dialect: Dialect) -> Result<TestServer> {
    let server = TestServer::start(ServerOptions::for_dialect(dialect)).await?;
    server.add_account(EMAIL, PASSWORD, NAME).await?;
    Ok(server)
}

/// The exact `USR … OK` line of each dialect.
fn usr_ok(dialect: Dialect, trid: u32) -> String {
    match dialect {
        d if d < Dialect::Msnp8 => format!("USR {trid} OK {EMAIL} Alice%20Liddell"),
        Dialect::Msnp8 | Dialect::Msnp9 => format!("USR {trid} OK {EMAIL} Alice%20Liddell 1 0"),
        _ => format!("USR {trid} OK {EMAIL} 1 0"),
    }
}

/// Reads the profile message and checks the fields a client relies on.
async fn expect_profile(c: &mut Conn) -> Result<()> {
    let frame = c.recv_frame().await.context("waiting for the profile")?;
    let payload = frame
        .payload()
        .with_context(|| format!("expected the profile MSG, got {:?}", frame.line()))?;
    ensure!(
        frame.line() == format!("MSG Hotmail Hotmail {}", payload.len()),
        "profile line {:?} (payload of {} bytes)",
        frame.line(),
        payload.len()
    );
    ensure!(
        payload.starts_with(
            b"MIME-Version: 1.0\r\nContent-Type: text/x-msmsgsprofile; charset=UTF-8\r\n"
        ),
        "profile payload starts {:?}",
        String::from_utf8_lossy(payload)
    );
    ensure!(
        payload.ends_with(b"\r\n\r\n"),
        "profile must end with an empty line and no body"
    );
    let mime = MimeMessage::parse(payload)?;
    let profile = Profile::from_message(&mime).context("profile fields")?;
    ensure!(
        profile.preferred_email == EMAIL,
        "preferredEmail {:?}",
        profile.preferred_email
    );
    ensure!(mime.header("preferredEmail") == Some(EMAIL));
    ensure!(
        mime.header("ClientIP") == Some("127.0.0.1"),
        "ClientIP {:?}",
        mime.header("ClientIP")
    );
    let port = c.local_addr().port();
    ensure!(
        mime.header("ClientPort") == Some(&profile_client_port(port).to_string()),
        "ClientPort {:?} for source port {port}",
        mime.header("ClientPort")
    );
    ensure!(mime.header("lang_preference") == Some("1033"));
    Ok(())
}

/// Every step of a login, each reply checked byte for byte.
async fn login(dialect: Dialect) -> Result<()> {
    let server = server_with_alice(dialect).await?;
    let mut c = server.connect().await?;
    let ver = dialect.token();
    c.send(&format!("VER 1 {ver} CVR0")).await?;
    c.expect_line(&format!("VER 1 {ver} CVR0")).await?;
    if dialect < Dialect::Msnp8 {
        c.send("INF 2").await?;
        c.expect_line("INF 2 MD5").await?;
        c.send(&format!("USR 3 MD5 I {EMAIL}")).await?;
        let line = c.expect_match("USR 3 MD5 S {digits}.{digits}").await?;
        let salt = line.rsplit(' ').next().unwrap();
        c.send(&format!("USR 4 MD5 S {}", md5_hex(salt, PASSWORD)))
            .await?;
    } else {
        c.send(&cvr_request(2, EMAIL)).await?;
        c.expect_line(&format!("CVR 2 {CVR_REPLY}")).await?;
        c.send(&format!("USR 3 TWN I {EMAIL}")).await?;
        c.expect_match(
            "USR 3 TWN S lc=1033,id=507,tw=40,fs=1,ru=http%3A%2F%2Fmessenger%2Emsn%2Ecom,\
             ct={digits},kpp=1,kv=5,ver=2.1.0173.1,tpf={hex}",
        )
        .await?;
        let ticket = server.passport_ticket(EMAIL, PASSWORD).await?;
        c.send(&format!("USR 4 TWN S {ticket}")).await?;
    }
    c.expect_line(&usr_ok(dialect, 4)).await?;
    if dialect >= Dialect::Msnp5 {
        expect_profile(&mut c).await?;
    }
    if dialect >= Dialect::Msnp8 {
        let chl = c.expect_match("CHL 0 {digits}").await?;
        let challenge = chl.rsplit(' ').next().unwrap();
        ensure!(
            challenge.len() == 20,
            "challenge {challenge:?} should have 20 digits"
        );
        let (id, answer) = challenge_answer(dialect, challenge);
        c.send_raw(format!("QRY 5 {id} 32\r\n{answer}").as_bytes())
            .await?;
        c.expect_line("QRY 5").await?;
    }
    // The next line answers this PNG: nothing else (no CHL before MSNP8, no profile before
    // MSNP5) was sent after the login.
    c.send("PNG").await?;
    c.expect_line(qng(dialect)).await?;
    server.stop().await
}

/// `PNG` → `QNG` (MSNP8 and below) or `QNG 50` (MSNP9+), before and after login, repeatedly.
async fn ping(dialect: Dialect) -> Result<()> {
    let server = server_with_alice(dialect).await?;
    let mut early = server.connect().await?;
    let ver = dialect.token();
    early.send(&format!("VER 1 {ver} CVR0")).await?;
    early.expect_line(&format!("VER 1 {ver} CVR0")).await?;
    early.ping().await.context("PNG before login")?;
    let mut c = server.login(dialect, EMAIL, PASSWORD).await?;
    for _ in 0..3 {
        c.send("PNG").await?;
        c.expect_line(qng(dialect)).await?;
    }
    server.stop().await
}

/// `OUT` → the server closes the connection, and the account can log in again at once.
async fn out(dialect: Dialect) -> Result<()> {
    let server = server_with_alice(dialect).await?;
    let mut c = server.login(dialect, EMAIL, PASSWORD).await?;
    c.send("OUT").await?;
    c.expect_closed().await?;
    let mut again = server.login(dialect, EMAIL, PASSWORD).await?;
    again.ping().await?;
    server.stop().await
}

/// Logging in again elsewhere: the old session hears `OUT OTH` and is closed; the new one
/// stays online.
async fn out_oth(dialect: Dialect) -> Result<()> {
    let server = server_with_alice(dialect).await?;
    let mut first = server.login(dialect, EMAIL, PASSWORD).await?;
    first.set_label("first");
    let mut second = server.login(dialect, EMAIL, PASSWORD).await?;
    second.set_label("second");
    first.expect_line("OUT OTH").await?;
    first.expect_closed().await?;
    second.ping().await?;
    // The first session's end must not have unregistered the second: a third login kicks
    // the second in turn.
    let mut third = server.login(dialect, EMAIL, PASSWORD).await?;
    second.expect_line("OUT OTH").await?;
    second.expect_closed().await?;
    third.ping().await?;
    server.stop().await
}

/// A wrong `QRY` answer: `540 t` and the connection is closed.
async fn chl_wrong(dialect: Dialect) -> Result<()> {
    let server = server_with_alice(dialect).await?;
    let ep = server.endpoint();
    let mut c = server.connect().await?;
    let ver = dialect.token();
    c.send(&format!("VER 1 {ver} CVR0")).await?;
    c.expect_line(&format!("VER 1 {ver} CVR0")).await?;
    c.send(&format!("USR 3 TWN I {EMAIL}")).await?;
    c.expect_match("USR 3 TWN S {any}").await?;
    let ticket = msgr_it::passport_ticket(ep.https, &ep.ca, EMAIL, PASSWORD).await?;
    c.send(&format!("USR 4 TWN S {ticket}")).await?;
    c.expect_line(&usr_ok(dialect, 4)).await?;
    expect_profile(&mut c).await?;
    let chl = c.expect_match("CHL 0 {digits}").await?;
    let challenge = chl.rsplit(' ').next().unwrap();
    let (id, mut answer) = challenge_answer(dialect, challenge);
    // Flip the last hex digit.
    let last = if answer.ends_with('0') { '1' } else { '0' };
    answer.pop();
    answer.push(last);
    c.send_raw(format!("QRY 5 {id} 32\r\n{answer}").as_bytes())
        .await?;
    c.expect_line("540 5").await?;
    c.expect_closed().await?;
    server.stop().await
}

/// The right answer computed with the other era's client ID (MSNP8–10 IDs in MSNP11+ and
/// the reverse) is refused: the algorithm changed at MSNP11.
async fn chl_other_era_id(dialect: Dialect) -> Result<()> {
    let server = server_with_alice(dialect).await?;
    let mut c = server.connect().await?;
    let ver = dialect.token();
    c.send(&format!("VER 1 {ver} CVR0")).await?;
    c.expect_line(&format!("VER 1 {ver} CVR0")).await?;
    c.send(&format!("USR 3 TWN I {EMAIL}")).await?;
    c.expect_match("USR 3 TWN S {any}").await?;
    let ticket = server.passport_ticket(EMAIL, PASSWORD).await?;
    c.send(&format!("USR 4 TWN S {ticket}")).await?;
    c.expect_line(&usr_ok(dialect, 4)).await?;
    expect_profile(&mut c).await?;
    let chl = c.expect_match("CHL 0 {digits}").await?;
    let challenge = chl.rsplit(' ').next().unwrap();
    let other = if dialect >= Dialect::Msnp11 {
        Dialect::Msnp8
    } else {
        Dialect::Msnp11
    };
    let (id, answer) = challenge_answer(other, challenge);
    c.send_raw(format!("QRY 9 {id} 32\r\n{answer}").as_bytes())
        .await?;
    c.expect_line("540 9").await?;
    c.expect_closed().await?;
    server.stop().await
}

macro_rules! every_dialect {
    ($($module:ident => $dialect:ident),* $(,)?) => {$(
        mod $module {
            use super::*;
            const D: Dialect = Dialect::$dialect;

            #[tokio::test]
            async fn login() -> Result<()> {
                super::login(D).await
            }

            #[tokio::test]
            async fn ping() -> Result<()> {
                super::ping(D).await
            }

            #[tokio::test]
            async fn out() -> Result<()> {
                super::out(D).await
            }

            #[tokio::test]
            async fn out_oth() -> Result<()> {
                super::out_oth(D).await
            }
        }
    )*};
}

every_dialect! {
    msnp2 => Msnp2,
    msnp3 => Msnp3,
    msnp4 => Msnp4,
    msnp5 => Msnp5,
    msnp6 => Msnp6,
    msnp7 => Msnp7,
    msnp8 => Msnp8,
    msnp9 => Msnp9,
    msnp10 => Msnp10,
    msnp11 => Msnp11,
    msnp12 => Msnp12,
}

/// Scenarios that only exist where the server challenges (MSNP8+).
macro_rules! challenged_dialects {
    ($($module:ident => $dialect:ident),* $(,)?) => {$(
        mod $module {
            use super::*;
            const D: Dialect = Dialect::$dialect;

            #[tokio::test]
            async fn chl_wrong() -> Result<()> {
                super::chl_wrong(D).await
            }

            #[tokio::test]
            async fn chl_other_era_id() -> Result<()> {
                super::chl_other_era_id(D).await
            }
        }
    )*};
}

mod challenge {
    use super::*;
    challenged_dialects! {
        msnp8 => Msnp8,
        msnp9 => Msnp9,
        msnp10 => Msnp10,
        msnp11 => Msnp11,
        msnp12 => Msnp12,
    }
}

/// One account logged in from two dialects: the older session is kicked all the same.
#[tokio::test]
async fn out_oth_across_dialects() -> Result<()> {
    let server = TestServer::start(ServerOptions::legacy()).await?;
    server.add_account(EMAIL, PASSWORD, NAME).await?;
    let mut old = server.login(Dialect::Msnp7, EMAIL, PASSWORD).await?;
    let mut new = server.login(Dialect::Msnp12, EMAIL, PASSWORD).await?;
    old.expect_line("OUT OTH").await?;
    old.expect_closed().await?;
    new.ping().await?;
    server.stop().await
}

/// Shutdown: every online session, whatever its dialect, hears `OUT SSD` and is closed; a
/// connection that never said `VER` is just closed; the server stops well within its grace
/// period.
#[tokio::test]
async fn out_ssd_on_shutdown() -> Result<()> {
    let server = TestServer::start(ServerOptions::legacy()).await?;
    let dialects = [
        Dialect::Msnp2,
        Dialect::Msnp5,
        Dialect::Msnp8,
        Dialect::Msnp9,
        Dialect::Msnp11,
        Dialect::Msnp12,
    ];
    let mut online = Vec::new();
    for d in dialects {
        let email = format!("user{}@x.com", d.number());
        server.add_account(&email, PASSWORD, "User").await?;
        online.push(server.login(d, &email, PASSWORD).await?);
    }
    let mut silent = server.connect().await?;
    // Make sure the silent connection has been accepted before the shutdown.
    silent.send("PNG").await?;
    silent.expect_line("QNG").await?;

    let started = std::time::Instant::now();
    server.stop().await?;
    ensure!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "shutdown took {:?} although every client was closed",
        started.elapsed()
    );
    for c in &mut online {
        c.expect_line("OUT SSD").await?;
        c.expect_closed().await?;
    }
    silent.expect_closed().await
}

/// Dispatch mode: `USR … I` is answered with `XFR … NS target 0 self` and the connection is
/// closed, for TWN and MD5 dialects alike; targets are used in turn.
#[tokio::test]
async fn dispatch_sends_xfr_round_robin() -> Result<()> {
    let server = TestServer::start(ServerOptions {
        legacy_md5: true,
        dispatch_to: vec!["127.0.0.1:1234".into(), "10.0.0.2:1863".into()],
        ..Default::default()
    })
    .await?;
    let me = server.addrs.msnp;
    let targets = ["127.0.0.1:1234", "10.0.0.2:1863", "127.0.0.1:1234"];
    for (i, (dialect, target)) in [Dialect::Msnp8, Dialect::Msnp12, Dialect::Msnp7]
        .into_iter()
        .zip(targets)
        .enumerate()
    {
        let mut c = server.connect().await?;
        c.set_label(format!("dispatch #{i} {dialect}"));
        let ver = dialect.token();
        c.send(&format!("VER 1 {ver} CVR0")).await?;
        c.expect_line(&format!("VER 1 {ver} CVR0")).await?;
        let package = if dialect >= Dialect::Msnp8 {
            c.send(&cvr_request(2, EMAIL)).await?;
            c.expect_line(&format!("CVR 2 {CVR_REPLY}")).await?;
            "TWN"
        } else {
            "MD5"
        };
        c.send(&format!("USR 3 {package} I {EMAIL}")).await?;
        c.expect_line(&format!("XFR 3 NS {target} 0 {me}")).await?;
        c.expect_closed().await?;
    }
    server.stop().await
}

/// A client that writes VER, CVR and USR in one segment gets the three replies in order, and
/// the rest of the login pipelined with a PNG works too.
#[tokio::test]
async fn pipelined_commands() -> Result<()> {
    let server = server_with_alice(Dialect::Msnp8).await?;
    let mut c = server.connect().await?;
    let burst = format!(
        "VER 1 MSNP8 CVR0\r\n{}\r\nUSR 3 TWN I {EMAIL}\r\n",
        cvr_request(2, EMAIL)
    );
    c.send_raw(burst.as_bytes()).await?;
    c.expect_line("VER 1 MSNP8 CVR0").await?;
    c.expect_line(&format!("CVR 2 {CVR_REPLY}")).await?;
    c.expect_match("USR 3 TWN S lc=1033,{any}").await?;
    let ticket = server.passport_ticket(EMAIL, PASSWORD).await?;
    c.send_raw(format!("USR 4 TWN S {ticket}\r\nPNG\r\n").as_bytes())
        .await?;
    c.expect_line(&usr_ok(Dialect::Msnp8, 4)).await?;
    expect_profile(&mut c).await?;
    c.expect_match("CHL 0 {digits}").await?;
    c.expect_line("QNG").await?;
    server.stop().await
}

/// The same commands written one byte per segment.
#[tokio::test]
async fn byte_at_a_time() -> Result<()> {
    let server = server_with_alice(Dialect::Msnp9).await?;
    let mut c = server.connect().await?;
    for b in format!("VER 1 MSNP9 CVR0\r\n{}\r\n", cvr_request(2, EMAIL)).bytes() {
        c.send_raw(&[b]).await?;
    }
    c.expect_line("VER 1 MSNP9 CVR0").await?;
    c.expect_line(&format!("CVR 2 {CVR_REPLY}")).await?;
    server.stop().await
}

/// Tabs between parameters, trailing spaces and bare LF line ends are accepted, as the
/// official servers accepted them from sloppy clients; replies use single spaces and CRLF.
#[tokio::test]
async fn tabs_trailing_spaces_and_bare_lf() -> Result<()> {
    let server = server_with_alice(Dialect::Msnp10).await?;
    let mut c = server.connect().await?;
    c.send_raw(b"VER\t1\tMSNP10  CVR0 \r\n").await?;
    c.expect_line("VER 1 MSNP10 CVR0").await?;
    c.send_raw(b"CVR 2\t0x0409 win\t4.10 i386 MSNMSGR 5.0.0544 MSMSGS alice@x.com\t \n")
        .await?;
    c.expect_line(&format!("CVR 2 {CVR_REPLY}")).await?;
    c.send_raw(format!("USR\t3  TWN\tI {EMAIL}   \r\n").as_bytes())
        .await?;
    c.expect_match("USR 3 TWN S lc=1033,{any}").await?;
    let ticket = server.passport_ticket(EMAIL, PASSWORD).await?;
    c.send_raw(format!("USR 4 TWN S\t{ticket} \r\n").as_bytes())
        .await?;
    c.expect_line(&usr_ok(Dialect::Msnp10, 4)).await?;
    expect_profile(&mut c).await?;
    c.expect_match("CHL 0 {digits}").await?;
    c.send_raw(b"PNG \r\n").await?;
    c.expect_line("QNG 50").await?;
    server.stop().await
}

/// A client offering several dialects gets the highest one both speak; MSNP2–MSNP7 are only
/// picked when legacy logins are enabled.
#[tokio::test]
async fn ver_picks_highest_common_dialect() -> Result<()> {
    let modern = TestServer::start(ServerOptions::default()).await?;
    let legacy = TestServer::start(ServerOptions::legacy()).await?;
    let cases: [(&TestServer, &str, &str); 5] = [
        (
            &modern,
            "VER 1 MSNP8 MSNP9 MSNP12 CVR0",
            "VER 1 MSNP12 CVR0",
        ),
        (&modern, "VER 1 MSNP7 MSNP8 CVR0", "VER 1 MSNP8 CVR0"),
        (&modern, "VER 1 MSNP13 MSNP10", "VER 1 MSNP10"),
        (&legacy, "VER 1 MSNP7 MSNP6 MSNP5 CVR0", "VER 1 MSNP7 CVR0"),
        (&legacy, "VER 1 MSNP2", "VER 1 MSNP2"),
    ];
    for (server, send, want) in cases {
        let mut c: Conn = server.connect().await?;
        c.send(send).await?;
        c.expect_line(want)
            .await
            .with_context(|| format!("answering {send:?}"))?;
    }
    modern.stop().await?;
    legacy.stop().await
}

/// Account names are case-insensitive: a client typing `Alice@X.COM` everywhere logs in,
/// and the server answers with the stored (lowercase) name.
#[tokio::test]
async fn mixed_case_account_name() -> Result<()> {
    let server = server_with_alice(Dialect::Msnp9).await?;
    let mut c = server.connect().await?;
    c.send("VER 1 MSNP9 CVR0").await?;
    c.expect_line("VER 1 MSNP9 CVR0").await?;
    c.send("USR 2 TWN I Alice@X.COM").await?;
    c.expect_match("USR 2 TWN S {any}").await?;
    let ticket = server.passport_ticket("ALICE@x.com", PASSWORD).await?;
    c.send(&format!("USR 3 TWN S {ticket}")).await?;
    c.expect_line("USR 3 OK alice@x.com Alice%20Liddell 1 0")
        .await?;
    expect_profile(&mut c).await?;
    server.stop().await
}

/// Passwords with the characters the Passport header uses as syntax (`,` `=` `'` `%`),
/// spaces and non-ASCII survive the trip. In the display name only space and `%` are escaped;
/// non-ASCII stays raw UTF-8, as the official clients sent it (see `msgr_proto::urlenc`).
#[tokio::test]
async fn special_characters_in_password_and_name() -> Result<()> {
    let server = TestServer::start(ServerOptions::legacy()).await?;
    let password = "p,w=d'%41 & pässwörd 🔑";
    server
        .add_account("zoe@x.com", password, "Zoë 100%")
        .await?;
    for dialect in [Dialect::Msnp7, Dialect::Msnp8, Dialect::Msnp12] {
        let mut c = server.login(dialect, "zoe@x.com", password).await?;
        c.ping().await?;
    }
    let mut c = server.connect().await?;
    c.send("VER 1 MSNP8 CVR0").await?;
    c.expect_line("VER 1 MSNP8 CVR0").await?;
    c.send("USR 2 TWN I zoe@x.com").await?;
    c.expect_match("USR 2 TWN S {any}").await?;
    let ticket = server.passport_ticket("zoe@x.com", password).await?;
    c.send(&format!("USR 3 TWN S {ticket}")).await?;
    c.expect_line("USR 3 OK zoe@x.com Zoë%20100%25 1 0").await?;
    server.stop().await
}

/// The nexus points at this server's own login2.srf over HTTPS; the `/ppsecure/` path
/// official clients also used works the same.
#[tokio::test]
async fn nexus_and_login_paths() -> Result<()> {
    let server = server_with_alice(Dialect::Msnp8).await?;
    let ep = server.endpoint();
    let tls = msgr_it::tls_connector(&ep.ca)?;
    let nexus =
        msgr_it::https_get(&tls, "127.0.0.1", ep.https.port(), "/rdr/pprdr.asp", "").await?;
    ensure!(nexus.status == 200, "nexus status {}", nexus.status);
    let urls = nexus.header("PassportURLs").context("PassportURLs")?;
    ensure!(
        urls.split(',')
            .any(|kv| kv == format!("DALogin=127.0.0.1:{}/login2.srf", ep.https.port())),
        "PassportURLs {urls:?}"
    );
    // Also reachable by the certificate's DNS name.
    let by_name =
        msgr_it::https_get(&tls, "localhost", ep.https.port(), "/rdr/pprdr.asp", "").await?;
    ensure!(by_name.status == 200);

    let auth = format!(
        "Authorization: Passport1.4 OrgVerb=GET,OrgURL=http%3A%2F%2Fmessenger%2Emsn%2Ecom,\
         sign-in=alice%40x.com,pwd={},lc=1033,id=507,tw=40,fs=1\r\n",
        msgr_it::percent_encode(PASSWORD)
    );
    let resp = msgr_it::https_get(
        &tls,
        "127.0.0.1",
        ep.https.port(),
        "/ppsecure/login2.srf",
        &auth,
    )
    .await?;
    ensure!(resp.status == 200, "status {}", resp.status);
    let info = resp
        .header("Authentication-Info")
        .context("Authentication-Info")?;
    ensure!(
        msgr_it::transcript::line_matches(
            "Passport1.4 da-status=success,{any}from-PP='t={any}&p={any}'",
            info
        ),
        "Authentication-Info {info:?}"
    );
    server.stop().await
}

/// Many clients of every TWN dialect logging in at once all get in, each with its own name.
#[tokio::test]
async fn concurrent_logins() -> Result<()> {
    let server = TestServer::start(ServerOptions::default()).await?;
    let dialects = [
        Dialect::Msnp8,
        Dialect::Msnp9,
        Dialect::Msnp10,
        Dialect::Msnp11,
        Dialect::Msnp12,
    ];
    let n = 20;
    for i in 0..n {
        server
            .add_account(&format!("user{i}@x.com"), "pw", "U")
            .await?;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let ep = server.endpoint();
        let dialect = dialects[i % dialects.len()];
        tasks.spawn(async move {
            let email = format!("user{i}@x.com");
            let mut c = msgr_it::login(&ep, dialect, &email, "pw").await?;
            c.ping().await?;
            anyhow::Ok(c)
        });
    }
    let mut online = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        online.push(joined??);
    }
    ensure!(online.len() == n);
    // Nobody was kicked by anybody else's login.
    for c in &mut online {
        c.ping().await?;
    }
    server.stop().await
}
