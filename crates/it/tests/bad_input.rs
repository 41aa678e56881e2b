//! Bad input over real sockets: each case asserts the exact reply (or the close), and that a
//! bystander — another user already online on the same server — is not affected: it still
//! answers `PNG` with `QNG 50` as the very next line, so it received nothing stray either.

#![allow(clippy::unwrap_used)]

use anyhow::{ensure, Result};
use msgr_it::{cvr_request, Conn, PassportReply, ServerOptions, TestServer, CVR_REPLY};
use msgr_proto::Dialect;

const ALICE: &str = "alice@x.com";
const BOB: &str = "bob@x.com";
const PASSWORD: &str = "open sesame";
const BOB_PASSWORD: &str = "bobs-own";

/// A server with alice and bob, plus the bystander logged in with MSNP12.
async fn setup(opts: ServerOptions) -> Result<(TestServer, Conn)> {
    let server = TestServer::start(opts).await?;
    server.add_account(ALICE, PASSWORD, "Alice").await?;
    server.add_account(BOB, BOB_PASSWORD, "Bob").await?;
    server
        .add_account("bystander@x.com", "bystander", "Bystander")
        .await?;
    let mut bystander = server
        .login(Dialect::Msnp12, "bystander@x.com", "bystander")
        .await?;
    bystander.set_label("bystander");
    Ok((server, bystander))
}

/// The bystander is still online and was sent nothing; then the server stops cleanly.
async fn finish(server: TestServer, mut bystander: Conn) -> Result<()> {
    bystander.ping().await?;
    server.stop().await?;
    bystander.expect_line("OUT SSD").await
}

/// VER + CVR on a fresh connection.
async fn negotiated(server: &TestServer, dialect: Dialect) -> Result<Conn> {
    let mut c = server.connect().await?;
    let ver = dialect.token();
    c.send(&format!("VER 1 {ver} CVR0")).await?;
    c.expect_line(&format!("VER 1 {ver} CVR0")).await?;
    c.send(&cvr_request(2, ALICE)).await?;
    c.expect_line(&format!("CVR 2 {CVR_REPLY}")).await?;
    Ok(c)
}

#[tokio::test]
async fn unknown_command_is_200_and_connection_stays() -> Result<()> {
    let (server, by) = setup(ServerOptions::default()).await?;
    let mut c = server.connect().await?;
    c.send("FOO 5").await?;
    c.expect_line("200 5").await?;
    c.send("VER 6 MSNP8 CVR0").await?;
    c.expect_line("VER 6 MSNP8 CVR0").await?;
    c.send("BAR 7 x y z").await?;
    c.expect_line("200 7").await?;
    // Lowercase is not the same command.
    c.send("png").await?;
    c.expect_line("200 0").await?;
    c.ping().await?;
    finish(server, by).await
}

#[tokio::test]
async fn blank_lines_are_ignored() -> Result<()> {
    let (server, by) = setup(ServerOptions::default()).await?;
    let mut c = server.connect().await?;
    // A stray CRLF, a line of blanks and tabs, then a real command: only VER is answered.
    c.send_raw(b"\r\n  \t \r\nVER 1 MSNP8 CVR0\r\n").await?;
    c.expect_line("VER 1 MSNP8 CVR0").await?;
    c.ping().await?;
    finish(server, by).await
}

#[tokio::test]
async fn commands_before_login_are_302() -> Result<()> {
    let (server, by) = setup(ServerOptions::default()).await?;
    let mut c = server.connect().await?;
    c.send("SYN 5 0").await?;
    c.expect_line("302 5").await?;
    c.send("VER 6 MSNP8 CVR0").await?;
    c.expect_line("VER 6 MSNP8 CVR0").await?;
    for (send, want) in [
        ("SYN 7 0", "302 7"),
        ("CHG 8 NLN", "302 8"),
        ("XFR 9 SB", "302 9"),
        ("ADD 10 FL a@b.com a@b.com", "302 10"),
    ] {
        c.send(send).await?;
        c.expect_line(want).await?;
    }
    c.ping().await?;
    finish(server, by).await
}

#[tokio::test]
async fn bad_usr_and_cvr_parameters_are_201() -> Result<()> {
    let (server, by) = setup(ServerOptions::default()).await?;
    let mut c = negotiated(&server, Dialect::Msnp8).await?;
    for (send, want) in [
        ("USR 3 TWN X a@b.com", "201 3"),
        ("USR 4 XYZ I a@b.com", "201 4"),
        ("USR 5 MD5 I a@b.com", "201 5"),
        ("USR 6 TWN I", "201 6"),
        ("USR 7 TWN I not-an-address", "201 7"),
        ("CVR 8 x", "201 8"),
    ] {
        c.send(send).await?;
        c.expect_line(want).await?;
    }
    // Still good for a real login afterwards.
    c.send(&format!("USR 9 TWN I {ALICE}")).await?;
    c.expect_match("USR 9 TWN S lc=1033,{any}").await?;
    let ticket = server.passport_ticket(ALICE, PASSWORD).await?;
    c.send(&format!("USR 10 TWN S {ticket}")).await?;
    c.expect_line("USR 10 OK alice@x.com Alice 1 0").await?;
    finish(server, by).await
}

#[tokio::test]
async fn passport_refuses_wrong_password_and_unknown_account() -> Result<()> {
    let (server, by) = setup(ServerOptions::default()).await?;
    let ep = server.endpoint();
    for (email, pw) in [
        (ALICE, "wrong"),
        (ALICE, ""),
        ("nobody@x.com", PASSWORD),
        // Bob's password is not Alice's.
        (ALICE, BOB_PASSWORD),
    ] {
        let reply = msgr_it::passport_login(ep.https, &ep.ca, email, pw).await?;
        let PassportReply::Refused {
            status,
            www_authenticate,
        } = reply
        else {
            anyhow::bail!("{email} with {pw:?} got {reply:?}");
        };
        ensure!(status == 401, "{email}/{pw:?}: status {status}");
        ensure!(
            www_authenticate.starts_with("Passport1.4 da-status=failed,"),
            "{email}/{pw:?}: WWW-Authenticate {www_authenticate:?}"
        );
    }
    finish(server, by).await
}

#[tokio::test]
async fn made_up_ticket_is_911_and_close() -> Result<()> {
    let (server, by) = setup(ServerOptions::default()).await?;
    let mut c = negotiated(&server, Dialect::Msnp8).await?;
    c.send(&format!("USR 3 TWN I {ALICE}")).await?;
    c.expect_match("USR 3 TWN S {any}").await?;
    c.send("USR 4 TWN S t=NotARealTicket&p=Nope").await?;
    c.expect_line("911 4").await?;
    c.expect_closed().await?;
    finish(server, by).await
}

#[tokio::test]
async fn ticket_redeemed_twice_is_911_and_close() -> Result<()> {
    let (server, by) = setup(ServerOptions::default()).await?;
    let ticket = server.passport_ticket(ALICE, PASSWORD).await?;
    let mut first = negotiated(&server, Dialect::Msnp9).await?;
    first.send(&format!("USR 3 TWN I {ALICE}")).await?;
    first.expect_match("USR 3 TWN S {any}").await?;
    first.send(&format!("USR 4 TWN S {ticket}")).await?;
    first.expect_line("USR 4 OK alice@x.com Alice 1 0").await?;

    let mut replay = negotiated(&server, Dialect::Msnp9).await?;
    replay.send(&format!("USR 3 TWN I {ALICE}")).await?;
    replay.expect_match("USR 3 TWN S {any}").await?;
    replay.send(&format!("USR 4 TWN S {ticket}")).await?;
    replay.expect_line("911 4").await?;
    replay.expect_closed().await?;
    // The replay did not log alice in, so the first session was not kicked.
    first.recv_frame().await?; // profile
    first.expect_match("CHL 0 {digits}").await?;
    first.ping().await?;
    finish(server, by).await
}

#[tokio::test]
async fn foreign_ticket_is_911_and_stays_usable_by_its_owner() -> Result<()> {
    let (server, by) = setup(ServerOptions::default()).await?;
    let bobs = server.passport_ticket(BOB, BOB_PASSWORD).await?;
    let mut alice = negotiated(&server, Dialect::Msnp11).await?;
    alice.send(&format!("USR 3 TWN I {ALICE}")).await?;
    alice.expect_match("USR 3 TWN S {any}").await?;
    alice.send(&format!("USR 4 TWN S {bobs}")).await?;
    alice.expect_line("911 4").await?;
    alice.expect_closed().await?;

    let mut bob = negotiated(&server, Dialect::Msnp11).await?;
    bob.send(&format!("USR 3 TWN I {BOB}")).await?;
    bob.expect_match("USR 3 TWN S {any}").await?;
    bob.send(&format!("USR 4 TWN S {bobs}")).await?;
    bob.expect_line("USR 4 OK bob@x.com 1 0").await?;
    finish(server, by).await
}

#[tokio::test]
async fn wrong_md5_answer_is_911_and_close() -> Result<()> {
    let (server, by) = setup(ServerOptions::legacy()).await?;
    let mut c = server.connect().await?;
    c.send("VER 1 MSNP7 CVR0").await?;
    c.expect_line("VER 1 MSNP7 CVR0").await?;
    c.send(&format!("USR 3 MD5 I {ALICE}")).await?;
    let line = c.expect_match("USR 3 MD5 S {any}").await?;
    let salt = line.rsplit(' ').next().unwrap();
    c.send(&format!("USR 4 MD5 S {}", msgr_it::md5_hex(salt, "wrong")))
        .await?;
    c.expect_line("911 4").await?;
    c.expect_closed().await?;
    finish(server, by).await
}

#[tokio::test]
async fn garbage_trid_is_200_0() -> Result<()> {
    let (server, by) = setup(ServerOptions::default()).await?;
    let mut c = server.connect().await?;
    for send in [
        "VER x MSNP8",
        "VER -1 MSNP8",
        "VER 99999999999 MSNP8",
        "VER",
    ] {
        c.send(send).await?;
        c.expect_line("200 0").await?;
    }
    c.send("VER 1 MSNP8").await?;
    c.expect_line("VER 1 MSNP8").await?;
    finish(server, by).await
}

#[tokio::test]
async fn non_utf8_line_is_200_and_connection_stays() -> Result<()> {
    let (server, by) = setup(ServerOptions::default()).await?;
    let mut c = server.connect().await?;
    c.send_raw(b"VER 3 MSNP8 \xff\xfe CVR0\r\n").await?;
    c.expect_line("200 3").await?;
    c.send_raw(b"\xc3\x28 x\r\n").await?;
    c.expect_line("200 0").await?;
    c.send("VER 4 MSNP8 CVR0").await?;
    c.expect_line("VER 4 MSNP8 CVR0").await?;
    c.ping().await?;
    finish(server, by).await
}

#[tokio::test]
async fn over_long_line_closes_that_connection_only() -> Result<()> {
    let mut opts = ServerOptions::default();
    opts.limits.max_line = 1024;
    let (server, by) = setup(opts).await?;
    // Without a line end at all.
    let mut c = server.connect().await?;
    c.send_raw(&vec![b'A'; 4096]).await?;
    c.expect_closed().await?;
    // With a line end, just past the limit.
    let mut c = server.connect().await?;
    let mut line = b"VER 1 MSNP8 ".to_vec();
    line.resize(1025, b'X');
    line.extend_from_slice(b"\r\n");
    c.send_raw(&line).await?;
    c.expect_closed().await?;
    // Exactly at the limit is fine.
    let mut c = server.connect().await?;
    let mut line = b"FOO 7 ".to_vec();
    line.resize(1024, b'X');
    line.extend_from_slice(b"\r\n");
    c.send_raw(&line).await?;
    c.expect_line("200 7").await?;
    finish(server, by).await
}

#[tokio::test]
async fn oversized_payload_is_201_skipped_and_connection_stays() -> Result<()> {
    let mut opts = ServerOptions::default();
    opts.limits.max_payload = 2048;
    let (server, by) = setup(opts).await?;
    server.add_account("carol@x.com", "carol", "Carol").await?;

    // Before login.
    let mut c = server.connect().await?;
    c.send("VER 1 MSNP8 CVR0").await?;
    c.expect_line("VER 1 MSNP8 CVR0").await?;
    let mut burst = b"QRY 9 msmsgs@msnmsgr.com 3000\r\n".to_vec();
    burst.extend(std::iter::repeat_n(b'Q', 3000));
    c.send_raw(&burst).await?;
    c.expect_line("201 9").await?;
    c.ping().await?;

    // A length far beyond the cap is refused as soon as the line arrives, without waiting
    // for (or buffering) the payload.
    let mut huge = server.connect().await?;
    huge.send("VER 1 MSNP8 CVR0").await?;
    huge.expect_line("VER 1 MSNP8 CVR0").await?;
    huge.send("QRY 9 msmsgs@msnmsgr.com 999999999").await?;
    huge.expect_line("201 9").await?;
    huge.send_raw(&[b'Q'; 4096]).await?;

    // Online: the payload is skipped even when it arrives in pieces, and the line after it
    // is read as a command again.
    let mut online = server.login(Dialect::Msnp8, "carol@x.com", "carol").await?;
    online.send("QRY 10 msmsgs@msnmsgr.com 5000").await?;
    online.expect_line("201 10").await?;
    for _ in 0..5 {
        online.send_raw(&[b'Z'; 1000]).await?;
    }
    online.send("FOO 11").await?;
    online.expect_line("200 11").await?;
    online.ping().await?;
    finish(server, by).await
}

#[tokio::test]
async fn bad_payload_length_closes() -> Result<()> {
    let (server, by) = setup(ServerOptions::default()).await?;
    let mut c = server.connect().await?;
    c.send("VER 1 MSNP8 CVR0").await?;
    c.expect_line("VER 1 MSNP8 CVR0").await?;
    c.send("QRY 5 msmsgs@msnmsgr.com lots").await?;
    c.expect_line("200 5").await?;
    c.expect_closed().await?;
    finish(server, by).await
}

#[tokio::test]
async fn no_common_dialect_is_ver_0_and_close() -> Result<()> {
    let (server, by) = setup(ServerOptions::default()).await?;
    for (send, want) in [
        ("VER 1 MSNP99", "VER 1 0"),
        ("VER 2 MSNP99 CVR0", "VER 2 0"),
        ("VER 3 CVR0", "VER 3 0"),
        ("VER 4 msnp8", "VER 4 0"),
        // Legacy dialects while legacy MD5 logins are off.
        ("VER 5 MSNP7 MSNP6 CVR0", "VER 5 0"),
        ("VER 6 MSNP2", "VER 6 0"),
    ] {
        let mut c = server.connect().await?;
        c.send(send).await?;
        c.expect_line(want).await?;
        c.expect_closed().await?;
    }
    finish(server, by).await
}

#[tokio::test]
async fn usr_before_ver_and_second_ver() -> Result<()> {
    let (server, by) = setup(ServerOptions::default()).await?;
    let mut c = server.connect().await?;
    c.send(&format!("USR 1 TWN I {ALICE}")).await?;
    c.expect_line("715 1").await?;
    c.send("VER 2 MSNP8 CVR0").await?;
    c.expect_line("VER 2 MSNP8 CVR0").await?;
    c.send("VER 3 MSNP9 CVR0").await?;
    c.expect_line("715 3").await?;
    c.send("USR 4 TWN S t=x&p=y").await?;
    c.expect_line("715 4").await?;
    c.ping().await?;
    finish(server, by).await
}

#[tokio::test]
async fn usr_when_already_online_is_207() -> Result<()> {
    let (server, by) = setup(ServerOptions::default()).await?;
    let mut c = server.login(Dialect::Msnp8, ALICE, PASSWORD).await?;
    c.send(&format!("USR 6 TWN I {ALICE}")).await?;
    c.expect_line("207 6").await?;
    c.ping().await?;
    finish(server, by).await
}

#[tokio::test]
async fn unrequested_qry_is_540_and_close() -> Result<()> {
    let (server, by) = setup(ServerOptions::default()).await?;
    let mut c = server.login(Dialect::Msnp10, ALICE, PASSWORD).await?;
    // The challenge was answered during login; a second answer has nothing to answer.
    c.send_raw(b"QRY 6 msmsgs@msnmsgr.com 32\r\n0123456789abcdef0123456789abcdef")
        .await?;
    c.expect_line("540 6").await?;
    c.expect_closed().await?;
    finish(server, by).await
}

#[tokio::test]
async fn client_vanishing_mid_login_is_harmless() -> Result<()> {
    let (server, by) = setup(ServerOptions::default()).await?;
    let mut c = negotiated(&server, Dialect::Msnp8).await?;
    c.send(&format!("USR 3 TWN I {ALICE}")).await?;
    c.expect_match("USR 3 TWN S {any}").await?;
    // Half a command, then gone.
    c.send_raw(b"USR 4 TWN S t=abc").await?;
    drop(c);
    // Alice can still log in.
    let mut alice = server.login(Dialect::Msnp8, ALICE, PASSWORD).await?;
    alice.ping().await?;
    finish(server, by).await
}

#[tokio::test]
async fn login2_srf_without_credentials_is_401() -> Result<()> {
    let (server, by) = setup(ServerOptions::default()).await?;
    let ep = server.endpoint();
    let tls = msgr_it::tls_connector(&ep.ca)?;
    let port = ep.https.port();
    for auth in [
        "",
        "Authorization: Basic YWxpY2U6b3BlbiBzZXNhbWU=\r\n",
        "Authorization: Passport1.4 OrgVerb=GET,sign-in=alice%40x.com\r\n",
        "Authorization: Passport1.4 pwd=open%20sesame\r\n",
    ] {
        let resp = msgr_it::https_get(&tls, "127.0.0.1", port, "/login2.srf", auth).await?;
        ensure!(resp.status == 401, "{auth:?}: status {}", resp.status);
        ensure!(
            resp.header("WWW-Authenticate")
                .is_some_and(|v| v.starts_with("Passport1.4 da-status=failed,")),
            "{auth:?}: {:?}",
            resp.headers
        );
    }
    let missing = msgr_it::https_get(&tls, "127.0.0.1", port, "/nope", "").await?;
    ensure!(missing.status == 404, "status {}", missing.status);
    finish(server, by).await
}

/// A connection that never finishes logging in is closed when the login deadline passes;
/// sessions that did log in are not subject to it.
#[tokio::test]
async fn login_timeout_closes_only_unauthenticated_connections() -> Result<()> {
    let mut opts = ServerOptions::default();
    opts.limits.login_timeout_secs = 1;
    let (server, by) = setup(opts).await?;
    let mut idle = negotiated(&server, Dialect::Msnp8).await?;
    let started = std::time::Instant::now();
    idle.expect_closed().await?;
    ensure!(
        started.elapsed() >= std::time::Duration::from_millis(500),
        "closed after {:?}, before the login deadline",
        started.elapsed()
    );
    // The bystander logged in before `idle` connected, so its login deadline has passed too.
    finish(server, by).await
}

/// An online session that says nothing for the idle timeout is closed.
#[tokio::test]
async fn idle_timeout_closes_silent_sessions() -> Result<()> {
    let mut opts = ServerOptions::default();
    opts.limits.idle_timeout_secs = 1;
    let server = TestServer::start(opts).await?;
    server.add_account(ALICE, PASSWORD, "Alice").await?;
    let mut c = server.login(Dialect::Msnp8, ALICE, PASSWORD).await?;
    c.expect_closed().await?;
    server.stop().await
}

/// Connections beyond `max_connections` are closed at once without a word; the ones
/// already in are unaffected.
#[tokio::test]
async fn connection_cap() -> Result<()> {
    let mut opts = ServerOptions::default();
    opts.limits.max_connections = 2;
    let (server, by) = setup(opts).await?;
    let mut second = server.connect().await?;
    second.send("VER 1 MSNP8 CVR0").await?;
    second.expect_line("VER 1 MSNP8 CVR0").await?;
    let mut third = server.connect().await?;
    third.expect_closed().await?;
    second.ping().await?;
    finish(server, by).await
}
