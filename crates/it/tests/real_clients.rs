//! What real, old clients send to the Passport side, byte for byte (issue "Real clients").

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
