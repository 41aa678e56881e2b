//! Real clients, round 2 (issue 11): the exchanges that broke libpurple/msn-pecan, aMSN, the
//! Perl MSN.pm, msnpjs and Twisted's client, reproduced byte for byte against the real server.

#![allow(clippy::unwrap_used)]

mod common;

use anyhow::{ensure, Context, Result};
use common::{add, email, relogin, server, user, PASSWORD};
use msgr_it::{tls_connector, Conn, TestServer};
use msgr_proto::Dialect;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `request` as is and returns every byte until the server closes.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, request: &[u8]) -> Result<Vec<u8>> {
    s.write_all(request).await?;
    let mut out = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .context("the server did not answer and close")??;
    Ok(out)
}

async fn raw_https(server: &TestServer, request: &[u8]) -> Result<String> {
    let ep = server.endpoint();
    let tls = tls_connector(&ep.ca)?;
    let tcp = TcpStream::connect(ep.https).await?;
    let stream = tls
        .connect(ServerName::try_from("localhost".to_owned())?, tcp)
        .await?;
    Ok(String::from_utf8(exchange(stream, request).await?)?)
}

async fn raw_http(server: &TestServer, request: &[u8]) -> Result<String> {
    let http = server.addrs.http.context("no HTTP listener")?;
    Ok(String::from_utf8(
        exchange(TcpStream::connect(http).await?, request).await?,
    )?)
}

/// msn-pecan matches `PassportURLs: ` with `strncmp` and `Authentication-Info: ` with
/// `strstr`; aMSN looks headers up case-sensitively. The raw bytes must carry the official
/// spelling, on every response of a kept-alive connection, and bodies stay untouched.
#[tokio::test]
async fn passport_header_names_are_byte_exact() -> Result<()> {
    let srv = TestServer::start(Default::default()).await?;
    srv.add_account("alice@x.com", "secret", "Alice A").await?;

    // Two nexus requests on one connection: the second response's head is restored too.
    let r = raw_https(
        &srv,
        b"GET /rdr/pprdr.asp HTTP/1.1\r\nHost: nexus.passport.com\r\n\r\n\
          GET /rdr/pprdr.asp HTTP/1.1\r\nHost: nexus.passport.com\r\nConnection: close\r\n\r\n",
    )
    .await?;
    ensure!(
        r.matches("\r\nPassportURLs: DARealm=Passport.Net,DALogin=")
            .count()
            == 2,
        "{r}"
    );
    ensure!(!r.contains("passporturls"), "{r}");
    ensure!(r.contains("\r\nContent-Length: 0\r\n"), "{r}");

    let ok = raw_https(
        &srv,
        b"GET /login2.srf HTTP/1.1\r\nHost: login.passport.com\r\n\
          Authorization: Passport1.4 OrgVerb=GET,OrgURL=http%3A%2F%2Fmessenger%2Emsn%2Ecom,sign-in=alice%40x.com,pwd=secret,lc=1033,id=507,tw=40,fs=1\r\n\
          Connection: close\r\n\r\n",
    )
    .await?;
    ensure!(
        ok.contains("\r\nAuthentication-Info: Passport1.4 da-status=success,"),
        "{ok}"
    );
    let refused = raw_https(
        &srv,
        b"GET /login2.srf HTTP/1.1\r\nHost: login.passport.com\r\n\
          Authorization: Passport1.4 OrgVerb=GET,sign-in=alice%40x.com,pwd=wrong\r\n\
          Connection: close\r\n\r\n",
    )
    .await?;
    ensure!(
        refused.starts_with("HTTP/1.1 401")
            && refused.contains("\r\nWWW-Authenticate: Passport1.4 da-status=failed,"),
        "{refused}"
    );

    // The gateway's header, and a body (MSNP) that is passed through unchanged.
    let gw = raw_http(
        &srv,
        b"POST /gateway/gateway.dll?Action=open&Server=NS&IP=127.0.0.1 HTTP/1.1\r\n\
          Host: gateway.messenger.hotmail.com\r\nContent-Type: application/x-msn-messenger\r\n\
          Content-Length: 18\r\nConnection: close\r\n\r\nVER 1 MSNP8 CVR0\r\n",
    )
    .await?;
    ensure!(gw.contains("\r\nX-MSN-Messenger: SessionID="), "{gw}");
    ensure!(
        gw.contains("\r\nContent-Type: application/x-msn-messenger\r\n"),
        "{gw}"
    );
    ensure!(gw.ends_with("\r\n\r\nVER 1 MSNP8 CVR0\r\n"), "{gw}");
    srv.stop().await
}

/// msn-pecan's first sign-on of a new account: `SYN 1 0 0` must bring the long form with its
/// counts, `GTC`, `BLP` and the display name, not the short "up to date" form.
async fn syn_zero_on_a_new_account(d: Dialect) -> Result<()> {
    let srv = server().await?;
    srv.add_account("new@x.com", PASSWORD, "New User").await?;
    let mut c = srv.login(d, "new@x.com", PASSWORD).await?;
    let want: &[&str] = match d {
        Dialect::Msnp8 | Dialect::Msnp9 => {
            &["SYN 1 0 0 1", "GTC A", "BLP AL", "LSG 0 Other%20Contacts 0"]
        }
        _ => &["SYN 1 0 0 0 0", "GTC A", "BLP AL", "PRP MFN New%20User"],
    };
    if d >= Dialect::Msnp10 {
        c.send("SYN 1 0 0").await?;
    } else {
        c.send("SYN 1 0").await?;
    }
    for line in want {
        c.expect_line(line).await?;
    }
    common::quiet(&mut c).await
}

/// What libpurple sends at every sign-on, everything already so: its privacy mode, the allow
/// list it has, its status twice, its current name. Each is echoed, none is an error.
async fn already_so_at_sign_on(d: Dialect) -> Result<()> {
    let srv = server().await?;
    let mut alice = user(&srv, d, "alice").await?;
    let _bob = user(&srv, d, "bob").await?;
    let v10 = d >= Dialect::Msnp10;
    add(&mut alice, d, 3, "AL", "bob").await?;
    let ver = if v10 { "" } else { "1 " };
    alice.send("BLP 4 AL").await?;
    alice.expect_line(&format!("BLP 4 {ver}AL")).await?;
    alice.send("GTC 5 A").await?;
    alice.expect_line(&format!("GTC 5 {ver}A")).await?;
    if v10 {
        alice.send("ADC 6 AL N=bob@x.com").await?;
        alice.expect_line("ADC 6 AL N=bob@x.com").await?;
        alice.send("PRP 7 MFN Alice%20N").await?;
        alice.expect_line("PRP 7 MFN Alice%20N").await?;
    } else {
        alice.send("ADD 6 AL bob@x.com bob@x.com").await?;
        alice.expect_line("ADD 6 AL 1 bob@x.com bob@x.com").await?;
        alice.send("REA 7 alice@x.com Alice%20N").await?;
        alice
            .expect_match("REA 7 {digits} alice@x.com Alice%20N")
            .await?;
    }
    common::chg(&mut alice, d, 8, "NLN").await?;
    common::chg(&mut alice, d, 9, "NLN").await?;
    common::quiet(&mut alice).await
}

/// msn-pecan's `SBP` (a contact's stored name differs from its current one), the MSNP12
/// `LST` with its network field, and the other MSNP10–12 commands of the table.
async fn sbp_and_lst(d: Dialect) -> Result<()> {
    let srv = server().await?;
    let mut alice = user(&srv, d, "alice").await?;
    let _bob = user(&srv, d, "bob").await?;
    let reply = add(&mut alice, d, 3, "FL", "bob").await?;
    let guid = reply
        .split(' ')
        .find_map(|t| t.strip_prefix("C="))
        .context("no contact GUID")?
        .to_owned();
    alice.send(&format!("SBP 4 {guid} MFN Bobby%20B")).await?;
    alice
        .expect_line(&format!("SBP 4 {guid} MFN Bobby%20B"))
        .await?;
    alice
        .send("SBP 5 00000000-0000-0000-0000-000000000009 MFN X")
        .await?;
    alice.expect_line("208 5").await?;
    alice.send(&format!("SBP 6 {guid} XYZ X")).await?;
    alice.expect_line("201 6").await?;
    // Answered, not 502 (msn-pecan treats that as fatal): msgr's own inbox (tests/hotmail.rs has the forms).
    alice.send("URL 7 INBOX").await?;
    alice
        .expect_match("URL 7 /mail/inbox https://{any}/mail/login 2")
        .await?;
    alice.send("IMS 8 OFF").await?;
    alice.expect_line("IMS 8 0 OFF").await?;
    alice.send("SND 9 carol@x.com").await?;
    alice.expect_line("502 9").await?;
    drop(alice);

    let mut alice = relogin(&srv, d, "alice").await?;
    let lines = common::syn(&mut alice, d, 10, 0).await?;
    let lst = if d >= Dialect::Msnp12 {
        format!("LST N=bob@x.com F=Bobby%20B C={guid} 1 1")
    } else {
        format!("LST N=bob@x.com F=Bobby%20B C={guid} 1")
    };
    ensure!(lines.contains(&lst), "{lst:?} not in {lines:?}");
    Ok(())
}

/// Before MSNP10 there is no `SBP`: 200, as for any command outside its dialect.
#[tokio::test]
async fn sbp_is_unknown_before_msnp10() -> Result<()> {
    let srv = server().await?;
    let mut alice = user(&srv, Dialect::Msnp9, "alice").await?;
    alice
        .send("SBP 4 00000000-0000-0000-0000-000000000009 MFN X")
        .await?;
    alice.expect_line("200 4").await
}

macro_rules! per_dialect {
    ($scenario:ident: $($name:ident => $dialect:expr),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() -> Result<()> {
                $scenario($dialect).await
            }
        )+
    };
}

per_dialect!(syn_zero_on_a_new_account:
    syn_zero_msnp8 => Dialect::Msnp8,
    syn_zero_msnp9 => Dialect::Msnp9,
    syn_zero_msnp10 => Dialect::Msnp10,
    syn_zero_msnp11 => Dialect::Msnp11,
    syn_zero_msnp12 => Dialect::Msnp12,
);

per_dialect!(already_so_at_sign_on:
    already_so_msnp8 => Dialect::Msnp8,
    already_so_msnp9 => Dialect::Msnp9,
    already_so_msnp10 => Dialect::Msnp10,
    already_so_msnp11 => Dialect::Msnp11,
    already_so_msnp12 => Dialect::Msnp12,
);

per_dialect!(sbp_and_lst:
    sbp_msnp10 => Dialect::Msnp10,
    sbp_msnp11 => Dialect::Msnp11,
    sbp_msnp12 => Dialect::Msnp12,
);

/// The data segments the server has sent on the connection whose client end is `c`, as the
/// kernel counts them (`ss -ti`'s `data_segs_out` of the server's socket).
fn server_segments(srv: &TestServer, c: &Conn) -> Result<u64> {
    let out = std::process::Command::new("ss")
        .args([
            "-tinH",
            "state",
            "established",
            &format!(
                "( sport = :{} and dport = :{} )",
                srv.addrs.msnp.port(),
                c.local_addr().port()
            ),
        ])
        .output()
        .context("running ss (iproute2)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find_map(|t| t.strip_prefix("data_segs_out:"))
        .context(format!("no data_segs_out in {text:?}"))?
        .parse()
        .context("data_segs_out")
}

/// Reads `n` lines and returns the segments the server needed for them.
async fn segments_for(srv: &TestServer, c: &mut Conn, n: usize) -> Result<u64> {
    for _ in 0..n {
        c.recv_line().await?;
    }
    server_segments(srv, c)
}

/// msnpjs handles the first command of each TCP read and MSN.pm one line per readable event:
/// at light load each command must be its own segment, as from the official servers. The
/// kernel's own count of the server's segments shows it: the `SYN` burst of a short list is
/// one segment per command, and so are a few pipelined pings; a pile of them in one round
/// (load) is one segment.
#[tokio::test]
async fn one_command_per_segment_at_light_load() -> Result<()> {
    let srv = server().await?;
    let d = Dialect::Msnp12;
    let mut alice = user(&srv, d, "alice").await?;
    for (t, who) in [(3, "bob"), (4, "carol")] {
        srv.add_account(&email(who), PASSWORD, who).await?;
        add(&mut alice, d, t, "FL", who).await?;
    }
    drop(alice);
    let mut alice = relogin(&srv, d, "alice").await?;
    // Everything of the login has been read; what follows is counted from here.
    let before = server_segments(&srv, &alice)?;
    alice.send("SYN 5 0 0").await?;
    // SYN, GTC, BLP, PRP MFN, two LST: six commands, six segments.
    let after = segments_for(&srv, &mut alice, 6).await?;
    ensure!(
        after - before == 6,
        "the SYN burst took {} segments",
        after - before
    );

    let before = after;
    alice.send_raw(b"PNG\r\nPNG\r\n").await?;
    let after = segments_for(&srv, &mut alice, 2).await?;
    ensure!(
        after - before == 2,
        "two QNG took {} segments",
        after - before
    );

    // Eight commands in one read are more than a light round: one write, one segment.
    let before = after;
    alice.send_raw(&b"PNG\r\n".repeat(8)).await?;
    let after = segments_for(&srv, &mut alice, 8).await?;
    ensure!(
        after - before == 1,
        "eight QNG took {} segments",
        after - before
    );
    Ok(())
}

/// `msgr chat` shows the name the server holds (`user add --name`), in every dialect, also
/// for a new account whose list is still at version 0.
#[tokio::test]
async fn client_shows_the_display_name_the_server_holds() -> Result<()> {
    let srv = TestServer::start(Default::default()).await?;
    let ep = srv.endpoint();
    for (i, d) in [
        Dialect::Msnp8,
        Dialect::Msnp9,
        Dialect::Msnp10,
        Dialect::Msnp11,
        Dialect::Msnp12,
    ]
    .into_iter()
    .enumerate()
    {
        let who = format!("user{i}@x.com");
        srv.add_account(&who, PASSWORD, "Shown Name").await?;
        let mut cfg = msgr_client::Config::new(ep.msnp.to_string(), &who, PASSWORD);
        cfg.nexus = format!("https://{}/rdr/pprdr.asp", ep.https);
        cfg.tls = msgr_client::TlsTrust::CertificateFile(ep.ca.clone());
        cfg.dialect = d;
        let (client, _events) = msgr_client::Client::connect(cfg).await?;
        ensure!(
            client.display_name() == "Shown Name",
            "{d:?}: {:?}",
            client.display_name()
        );
        client.sign_out().await;
    }
    srv.stop().await
}
