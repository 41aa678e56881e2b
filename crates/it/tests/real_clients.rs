//! What real, old clients send to msgr, byte for byte: the Passport side, the MSNP lines and
//! the certificate names (issue "Real clients").

#![allow(clippy::unwrap_used)]

use anyhow::{Context, Result};
use msgr_it::{tls_connector, ServerOptions, TestServer};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `request` as is and reads until the server closes.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, request: &[u8]) -> Result<String> {
    s.write_all(request).await?;
    let mut out = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .context("the server did not answer and close")??;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

async fn raw_https(server: &TestServer, request: &[u8]) -> Result<String> {
    let ep = server.endpoint();
    let tls = tls_connector(&ep.ca)?;
    let tcp = TcpStream::connect(ep.https).await?;
    let stream = tls
        .connect(ServerName::try_from("localhost".to_owned())?, tcp)
        .await?;
    exchange(stream, request).await
}

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    response.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn nexus_request_line_without_version_or_host() -> Result<()> {
    let server = TestServer::start(ServerOptions::default()).await?;
    // Over HTTPS, as such clients reach the nexus, and over plain HTTP.
    let r = raw_https(&server, b"GET /rdr/pprdr.asp\r\n\r\n").await?;
    assert!(r.starts_with("HTTP/1.0 200"), "{r}");
    let urls = header(&r, "PassportURLs").context("no PassportURLs")?;
    assert!(urls.starts_with("DARealm=Passport.Net,DALogin="), "{urls}");
    let http = server.addrs.http.context("no HTTP listener")?;
    let r = exchange(
        TcpStream::connect(http).await?,
        b"GET /rdr/pprdr.asp\r\n\r\n",
    )
    .await?;
    assert!(header(&r, "PassportURLs").is_some(), "{r}");
    server.stop().await
}

#[tokio::test]
async fn minimal_nexus_form_holds_only_a_full_dalogin_url() -> Result<()> {
    let server = TestServer::start(ServerOptions::default()).await?;
    let r = raw_https(
        &server,
        b"GET /rdr/pprdr-minimal.asp HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await?;
    let urls = header(&r, "PassportURLs").context("no PassportURLs")?;
    let url = urls
        .strip_prefix("DALogin=")
        .context("not the minimal form")?;
    let port = server.endpoint().https.port();
    assert!(url.starts_with("https://"), "{url}");
    assert!(url.ends_with(&format!(":{port}/login2.srf")), "{url}");
    assert!(!url.contains(','), "{url}");
    server.stop().await
}

#[tokio::test]
async fn login_with_absolute_uri_repeated_keys_and_stray_brace() -> Result<()> {
    let server = TestServer::start(ServerOptions::default()).await?;
    server.add_account("old@x.com", "pw-123456", "Old").await?;
    let port = server.endpoint().https.port();
    let request = format!(
        "GET https://localhost:{port}/login2.srf HTTP/1.1\r\n\
         Authorization: Passport1.4 OrgVerb=GET,OrgURL=http%3A%2F%2Fmessenger%2Emsn%2Ecom,\
         sign-in=old%40x.com,pwd=pw-123456,lc=1033,id=507,tw=40,lc=1033,id=507,tw=40,fs=1,}}\r\n\
         Host: localhost\r\nConnection: close\r\n\r\n"
    );
    let r = raw_https(&server, request.as_bytes()).await?;
    let info = header(&r, "Authentication-Info").context(r.clone())?;
    assert!(info.contains("da-status=success"), "{info}");
    // from-PP is the last field: some clients take everything after `from-PP='`.
    let after = info.split("from-PP='").nth(1).context("no from-PP")?;
    assert!(after.starts_with("t=") && after.ends_with('\''), "{info}");
    server.stop().await
}

/// Clients that require a dispatch server: their first `USR … I` must get `XFR … NS`, after
/// which they reconnect to the notification server named there and log in normally.
#[tokio::test]
async fn dispatch_listener_redirects_to_this_node_then_login_works() -> Result<()> {
    use msgr_it::{cvr_request, login, ServerOptions};
    use msgr_proto::Dialect;
    let server = TestServer::start(ServerOptions {
        dispatch_listener: true,
        ..ServerOptions::default()
    })
    .await?;
    server.add_account("ds@x.com", "pw-123456", "Ds").await?;
    let dispatch = server.addrs.dispatch.context("no dispatch listener")?;
    let mut c = msgr_it::Conn::connect(dispatch).await?;
    c.send("VER 1 MSNP12 MSNP11 CVR0").await?;
    c.expect_line("VER 1 MSNP12 CVR0").await?;
    c.send(&cvr_request(2, "ds@x.com")).await?;
    c.expect_match("CVR 2 {rest}").await?;
    c.send("USR 3 TWN I ds@x.com").await?;
    let ns = server.addrs.msnp;
    c.expect_line(&format!("XFR 3 NS {ns} 0 {dispatch}"))
        .await?;
    c.expect_closed().await?;
    // The address in XFR is the notification server, where the login completes.
    let mut ep = server.endpoint();
    ep.msnp = ns;
    let mut online = login(&ep, Dialect::Msnp12, "ds@x.com", "pw-123456").await?;
    online.ping().await?;
    server.stop().await
}

/// The nexus path for clients that cannot trust msgr's certificate (msnp11-sdk, whose HTTP
/// client knows only the public roots): the minimal form, naming the HTTP listener's
/// login2.srf, which then hands out a ticket over plain HTTP.
#[tokio::test]
async fn minimal_http_nexus_form_points_at_plain_http_login() -> Result<()> {
    let server = TestServer::start(ServerOptions::default()).await?;
    server
        .add_account("plain@x.com", "pw-123456", "Plain")
        .await?;
    let http = server.addrs.http.context("no HTTP listener")?;
    let r = exchange(
        TcpStream::connect(http).await?,
        b"GET /rdr/pprdr-minimal-http.asp HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await?;
    let urls = header(&r, "PassportURLs").context(r.clone())?;
    let url = format!("http://127.0.0.1:{}/login2.srf", http.port());
    assert_eq!(urls, format!("DALogin={url}"));
    let request = format!(
        "GET {url} HTTP/1.1\r\n\
         Authorization: Passport1.4 OrgVerb=GET,OrgURL=http%3A%2F%2Fmessenger%2Emsn%2Ecom,\
         sign-in=plain@x.com,pwd=pw-123456,ct=1,rver=1,wp=FS_40SEC_0_COMPACT,lc=1,id=1\r\n\
         Host: 127.0.0.1\r\nConnection: close\r\n\r\n"
    );
    let r = exchange(TcpStream::connect(http).await?, request.as_bytes()).await?;
    let info = header(&r, "Authentication-Info").context(r.clone())?;
    assert!(info.contains("da-status=success"), "{info}");
    server.stop().await
}

/// `GCF t Shields.xml` (MSNP11 and MSNP12) is answered with the file; msnp11-sdk's login waits
/// for that reply. Another file name is 201; before MSNP11 the command does not exist (200).
#[tokio::test]
async fn gcf_serves_shields_xml_at_msnp11() -> Result<()> {
    use msgr_proto::Dialect;
    let server = TestServer::start(ServerOptions::default()).await?;
    server.add_account("gcf@x.com", "pw-123456", "Gcf").await?;
    for dialect in [Dialect::Msnp11, Dialect::Msnp12] {
        let mut c = server.login(dialect, "gcf@x.com", "pw-123456").await?;
        c.send("GCF 7 Shields.xml").await?;
        let f = c.recv_frame().await?;
        let payload = f.payload().context("GCF without a payload")?;
        assert_eq!(
            f.line(),
            format!("GCF 7 Shields.xml {}", payload.len()),
            "{dialect:?}"
        );
        let xml = std::str::from_utf8(payload)?;
        assert!(
            xml.contains("<config>") && xml.contains("<shield>"),
            "{xml}"
        );
        c.send("GCF 8 Other.xml").await?;
        c.expect_line("201 8").await?;
        c.send("OUT").await?;
    }
    let mut c = server
        .login(Dialect::Msnp10, "gcf@x.com", "pw-123456")
        .await?;
    c.send("GCF 9 Shields.xml").await?;
    c.expect_line("200 9").await?;
    server.stop().await
}

/// What real clients send on MSNP, byte for byte: TrIDs from 0 with `VER`, `CVR` and `USR`
/// pipelined in one write; `CHG … NLN 2147778596:0` (the `caps:extcaps` form) at MSNP12,
/// echoed with its client-ID field because strict clients reject a reply without it; a client
/// that carries its NS TrID counter over to the switchboard; and one that waits for `ACK`
/// after each `MSG A`.
#[tokio::test]
async fn msnp_lines_real_clients_send() -> Result<()> {
    use msgr_it::{challenge_answer, cvr_request, CVR_REPLY};
    use msgr_proto::Dialect;
    let server = TestServer::start(ServerOptions::default()).await?;
    server
        .add_account("zero@x.com", "pw-123456", "Zero")
        .await?;
    server
        .add_account("peer@x.com", "pw-123456", "Peer")
        .await?;

    // TrID 0 throughout the login, the first three commands in one segment.
    let mut a = server.connect().await?;
    let burst = format!(
        "VER 0 MSNP12 CVR0\r\n{}\r\nUSR 0 TWN I zero@x.com\r\n",
        cvr_request(0, "zero@x.com")
    );
    a.send_raw(burst.as_bytes()).await?;
    a.expect_line("VER 0 MSNP12 CVR0").await?;
    a.expect_line(&format!("CVR 0 {CVR_REPLY}")).await?;
    a.expect_match("USR 0 TWN S {any}").await?;
    let ticket = server.passport_ticket("zero@x.com", "pw-123456").await?;
    a.send(&format!("USR 0 TWN S {ticket}")).await?;
    a.expect_match("USR 0 OK zero@x.com {rest}").await?;
    let profile = a.recv_frame().await?;
    assert!(profile.line().starts_with("MSG Hotmail Hotmail "));
    let chl = a.expect_match("CHL 0 {digits}").await?;
    let (id, answer) = challenge_answer(Dialect::Msnp12, chl.rsplit(' ').next().unwrap());
    a.send_raw(format!("QRY 0 {id} 32\r\n{answer}").as_bytes())
        .await?;
    a.expect_line("QRY 0").await?;

    // The peer watches zero (and zero allows it), at MSNP12 too.
    let mut b = server
        .login(Dialect::Msnp12, "peer@x.com", "pw-123456")
        .await?;
    b.send("ADC 6 FL N=zero@x.com F=Zero").await?;
    b.expect_match("ADC 6 FL N=zero@x.com F=Zero C={any}")
        .await?;
    b.send("CHG 7 NLN 0").await?;
    b.expect_line("CHG 7 NLN 0").await?;
    a.expect_match("ADC 0 RL N=peer@x.com F=Peer").await?;

    // Extended capabilities at MSNP12, echoed as sent and relayed to the watcher.
    a.send("CHG 41 NLN 2147778596:0").await?;
    a.expect_line("CHG 41 NLN 2147778596:0").await?;
    b.expect_line("NLN NLN zero@x.com Zero 2147778596:0")
        .await?;

    // The switchboard, with the NS counter carried on (42, 43, …), and ACK after MSG A.
    a.send("XFR 42 SB").await?;
    let xfr = a.expect_match("XFR 42 SB {any} CKI {any}").await?;
    let cookie = xfr.split(' ').nth(5).unwrap().to_owned();
    let mut sa = server.connect().await?;
    sa.send(&format!("USR 43 zero@x.com {cookie}")).await?;
    sa.expect_line("USR 43 OK zero@x.com Zero").await?;
    sa.send("CAL 44 peer@x.com").await?;
    let ringing = sa.expect_match("CAL 44 RINGING {digits}").await?;
    let sid = ringing.rsplit(' ').next().unwrap().to_owned();
    let rng = b
        .expect_match(&format!("RNG {sid} {{any}} CKI {{any}} zero@x.com Zero"))
        .await?;
    let cookie = rng.split(' ').nth(4).unwrap().to_owned();
    let mut sb = server.connect().await?;
    sb.send(&format!("ANS 0 peer@x.com {cookie} {sid}")).await?;
    sb.expect_line("IRO 0 1 1 zero@x.com Zero 2147778596")
        .await?;
    sb.expect_line("ANS 0 OK").await?;
    sa.expect_match("JOI peer@x.com Peer {digits}").await?;
    let body = b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nhi";
    let mut msg = format!("MSG 45 A {}\r\n", body.len()).into_bytes();
    msg.extend_from_slice(body);
    sa.send_raw(&msg).await?;
    sa.expect_line("ACK 45").await?;
    let got = sb.recv_frame().await?;
    assert_eq!(got.line(), format!("MSG zero@x.com Zero {}", body.len()));
    assert_eq!(got.payload().map(|p| &p[..]), Some(&body[..]));
    server.stop().await
}

/// Python-2.7-era clients match the certificate against the host *name* only, ignoring IP
/// SANs: the generated certificate must carry `localhost` and the public host as DNS names.
#[tokio::test]
async fn generated_certificate_names_localhost_and_the_public_host() -> Result<()> {
    let server = TestServer::start(ServerOptions {
        public_host: Some("msgr.example.test".to_owned()),
        ..ServerOptions::default()
    })
    .await?;
    let ep = server.endpoint();
    let tls = tls_connector(&ep.ca)?;
    for name in ["localhost", "msgr.example.test"] {
        let tcp = TcpStream::connect(ep.https).await?;
        let stream = tls
            .connect(ServerName::try_from(name.to_owned())?, tcp)
            .await
            .with_context(|| format!("TLS as {name}"))?;
        let r = exchange(
            stream,
            b"GET /rdr/pprdr.asp HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await?;
        assert!(header(&r, "PassportURLs").is_some(), "{r}");
    }
    let tcp = TcpStream::connect(ep.https).await?;
    let other = tls
        .connect(ServerName::try_from("elsewhere.test".to_owned())?, tcp)
        .await;
    assert!(
        other.is_err(),
        "a name the certificate lacks must not verify"
    );
    server.stop().await
}
