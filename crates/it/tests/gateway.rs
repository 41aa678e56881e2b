//! The HTTP gateway over real sockets: full logins (MSNP12 over HTTP, MSNP8 over HTTPS) with
//! the answers to each request in its own response, contact sync, presence both ways and
//! switchboard conversations (opened through the gateway, and answering an `RNG`) between a
//! TCP client and a gateway client; then the rules: `PNG` refused, idle expiry, one request in
//! flight, bad session IDs, oversized bodies, and the bound on output nobody polls for.
//!
//! The gateway client here speaks raw HTTP/1.1 (one connection per request, as a proxy
//! would make it) and decodes the response bodies with the real MSNP codec.

#![allow(clippy::unwrap_used)]

mod common;

use anyhow::{anyhow, bail, ensure, Context, Result};
use bytes::BytesMut;
use common::{add, caps, chg, display, email, encoded_display, fln, iln, nln, rl_notice, PASSWORD};
use msgr_it::transcript::line_matches;
use msgr_it::{challenge_answer, cvr_request, Conn, ServerOptions, TestServer, CVR_REPLY, TIMEOUT};
use msgr_proto::frame::{Frame, FrameDecoder, Limits, Peer};
use msgr_proto::Dialect;
use msgr_server::config::LimitsConfig;
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A parsed HTTP response.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn messenger(&self) -> &str {
        self.header("X-MSN-Messenger").unwrap_or("")
    }

    fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Where gateway requests go: the server's HTTP listener, or its HTTPS one.
#[derive(Clone)]
struct Endpoint {
    addr: SocketAddr,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl Endpoint {
    fn http(srv: &TestServer) -> Endpoint {
        Endpoint {
            addr: srv.addrs.http.unwrap(),
            tls: None,
        }
    }

    fn https(srv: &TestServer) -> Result<Endpoint> {
        Ok(Endpoint {
            addr: srv.addrs.https.unwrap(),
            tls: Some(msgr_it::tls_connector(
                &srv.data_dir().join("tls-cert.pem"),
            )?),
        })
    }

    async fn connect(&self) -> Result<Box<dyn Io>> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        Ok(match &self.tls {
            None => Box::new(tcp),
            Some(tls) => Box::new(
                tls.connect(ServerName::try_from("127.0.0.1".to_owned())?, tcp)
                    .await?,
            ),
        })
    }

    /// `POST target` with `body`, on a fresh connection.
    async fn post(&self, target: &str, body: &[u8]) -> Result<Reply> {
        let work = async {
            let mut s = self.connect().await?;
            s.write_all(&head("POST", target, body.len())).await?;
            s.write_all(body).await?;
            s.flush().await?;
            read_reply(&mut s).await
        };
        tokio::time::timeout(TIMEOUT, work)
            .await
            .map_err(|_| anyhow!("POST {target}: no response within {TIMEOUT:?}"))?
    }
}

fn head(method: &str, target: &str, len: usize) -> Vec<u8> {
    format!(
        "{method} {target} HTTP/1.1\r\nHost: gateway.messenger.hotmail.com\r\nUser-Agent: MSMSGS\r\n\
         Content-Type: application/x-msn-messenger\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

async fn read_reply<S: AsyncRead + Unpin>(s: &mut S) -> Result<Reply> {
    let mut data = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&data[..end]).context("response head")?;
            let mut lines = head.split("\r\n");
            let status = lines
                .next()
                .and_then(|l| l.split(' ').nth(1))
                .and_then(|s| s.parse().ok())
                .context("status line")?;
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect();
            let len: usize = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("Content-Length"))
                .map_or(Ok(0), |(_, v)| v.parse())?;
            if data.len() >= end + 4 + len {
                return Ok(Reply {
                    status,
                    headers,
                    body: data[end + 4..end + 4 + len].to_vec(),
                });
            }
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!(
                "connection closed before a whole response: {:?}",
                String::from_utf8_lossy(&data)
            );
        }
        data.extend_from_slice(&chunk[..n]);
    }
}

const GATEWAY: &str = "/gateway/gateway.dll";

/// The header of a live session's responses, on `ep`.
fn live_header(id: &str, ep: &Endpoint) -> String {
    format!("SessionID={id}; GW-IP={}", ep.addr)
}

/// One gateway session as a client sees it: what it sent, and the frames of every response
/// body in order.
struct Gw {
    ep: Endpoint,
    id: String,
    label: String,
    buf: BytesMut,
    decoder: FrameDecoder,
    closed: bool,
    history: Vec<String>,
}

impl Gw {
    /// `Action=open`; `body` must be answered in the same response (checked by the caller).
    async fn open(
        ep: &Endpoint,
        label: &str,
        server: &str,
        ip: &str,
        body: &[u8],
    ) -> Result<(Gw, Reply)> {
        // The official client names the gateway host in absolute form, as to a proxy.
        let target = format!(
            "http://gateway.messenger.hotmail.com{GATEWAY}?Action=open&Server={server}&IP={ip}"
        );
        let reply = ep.post(&target, body).await?;
        ensure!(
            reply.status == 200,
            "{label}: open answered {}: {reply:?}",
            reply.status
        );
        ensure!(
            reply.header("Content-Type") == Some("application/x-msn-messenger"),
            "{label}: content type {:?}",
            reply.header("Content-Type")
        );
        let id = reply
            .messenger()
            .strip_prefix("SessionID=")
            .and_then(|r| r.split(';').next())
            .context("no SessionID")?
            .to_owned();
        ensure!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{label}: session ID {id:?} is not 128 bits of hex"
        );
        ensure!(
            reply.messenger() == live_header(&id, ep),
            "{label}: X-MSN-Messenger {:?}",
            reply.messenger()
        );
        let mut gw = Gw {
            ep: ep.clone(),
            id,
            label: label.to_owned(),
            buf: BytesMut::new(),
            decoder: FrameDecoder::new(Peer::Server, Limits::default()),
            closed: false,
            history: Vec::new(),
        };
        gw.buf.extend_from_slice(&reply.body);
        Ok((gw, reply))
    }

    /// Posts `body` on this session (`Action=poll` when `poll`), keeps the response body for
    /// [`Gw::recv_frame`] and returns the response.
    async fn request(&mut self, body: &[u8], poll: bool) -> Result<Reply> {
        let target = if poll {
            format!("{GATEWAY}?Action=poll&SessionID={}", self.id)
        } else {
            format!("{GATEWAY}?SessionID={}", self.id)
        };
        let reply = self.ep.post(&target, body).await?;
        ensure!(
            reply.status == 200,
            "{}: answered {} to {:?}: {reply:?}",
            self.label,
            reply.status,
            String::from_utf8_lossy(body)
        );
        if reply.messenger().contains("Session=close") {
            self.closed = true;
        } else {
            ensure!(
                reply.messenger() == live_header(&self.id, &self.ep),
                "{}: X-MSN-Messenger {:?}",
                self.label,
                reply.messenger()
            );
        }
        self.buf.extend_from_slice(&reply.body);
        Ok(reply)
    }

    /// Sends one command line; returns the response, which must answer it.
    async fn send(&mut self, line: &str) -> Result<Reply> {
        self.request(format!("{line}\r\n").as_bytes(), false).await
    }

    async fn send_raw(&mut self, bytes: &[u8]) -> Result<Reply> {
        self.request(bytes, false).await
    }

    async fn poll(&mut self) -> Result<Reply> {
        self.request(b"", true).await
    }

    /// The next frame, polling for it as the official client does.
    async fn recv_frame(&mut self) -> Result<Frame> {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            if let Some(f) = self.decoder.decode(&mut self.buf)? {
                let line = f.line().to_owned();
                if let Some(d) = line
                    .strip_prefix("VER ")
                    .and_then(|r| r.split(' ').nth(1))
                    .and_then(Dialect::from_token)
                {
                    self.decoder.set_dialect(d);
                }
                self.history.push(line);
                return Ok(f);
            }
            if self.closed {
                bail!(
                    "{}: session closed; last lines {:?}",
                    self.label,
                    self.history
                );
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "{}: nothing within {TIMEOUT:?}; last lines {:?}",
                    self.label,
                    self.history
                );
            }
            if self.poll().await?.body.is_empty() {
                // The official client polls every two seconds; a test need not wait as long.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    async fn expect_line(&mut self, want: &str) -> Result<()> {
        let got = self.recv_frame().await?.line().to_owned();
        ensure!(
            got == want,
            "{}: expected {want:?}, got {got:?}; {:?}",
            self.label,
            self.history
        );
        Ok(())
    }

    async fn expect_match(&mut self, pattern: &str) -> Result<String> {
        let got = self.recv_frame().await?.line().to_owned();
        ensure!(
            line_matches(pattern, &got),
            "{}: expected a line like {pattern:?}, got {got:?}; {:?}",
            self.label,
            self.history
        );
        Ok(got)
    }

    /// Everything received so far has been read, and a poll brings nothing new.
    async fn expect_quiet(&mut self) -> Result<()> {
        let r = self.poll().await?;
        ensure!(
            self.buf.is_empty() && r.body.is_empty(),
            "{}: unexpected {:?}",
            self.label,
            String::from_utf8_lossy(&self.buf)
        );
        Ok(())
    }
}

/// A full login over the gateway, as the official client of `dialect` does it, checking that
/// each request's response carries exactly the answer to its commands. The profile must say
/// `ClientPort: 0`. TrIDs 1–5 are used.
async fn gw_login(srv: &TestServer, ep: &Endpoint, dialect: Dialect, name: &str) -> Result<Gw> {
    let me = email(name);
    let ver = dialect.token();
    let (mut gw, reply) = Gw::open(
        ep,
        &format!("gw {me}/{dialect}"),
        "NS",
        "messenger.hotmail.com",
        format!("VER 1 {ver} CVR0\r\n").as_bytes(),
    )
    .await?;
    ensure!(
        reply.body_text() == format!("VER 1 {ver} CVR0\r\n"),
        "VER answer {:?}",
        reply.body_text()
    );
    gw.expect_line(&format!("VER 1 {ver} CVR0")).await?;

    let r = gw.send(&cvr_request(2, &me)).await?;
    ensure!(
        r.body_text() == format!("CVR 2 {CVR_REPLY}\r\n"),
        "CVR answer {:?}",
        r.body_text()
    );
    gw.expect_line(&format!("CVR 2 {CVR_REPLY}")).await?;

    gw.send(&format!("USR 3 TWN I {me}")).await?;
    gw.expect_match("USR 3 TWN S {any}").await?;
    let ticket = srv.passport_ticket(&me, PASSWORD).await?;
    gw.send(&format!("USR 4 TWN S {ticket}")).await?;
    let name_enc = encoded_display(name);
    if dialect >= Dialect::Msnp10 {
        gw.expect_line(&format!("USR 4 OK {me} 1 0")).await?;
    } else {
        gw.expect_line(&format!("USR 4 OK {me} {name_enc} 1 0"))
            .await?;
    }
    let profile = gw.recv_frame().await?;
    ensure!(
        profile.line().starts_with("MSG Hotmail Hotmail "),
        "profile {:?}",
        profile.line()
    );
    let payload =
        String::from_utf8_lossy(profile.payload().map_or(&[][..], |p| &p[..])).into_owned();
    ensure!(
        payload.contains("\r\nClientIP: 127.0.0.1\r\n")
            && payload.contains("\r\nClientPort: 0\r\n"),
        "profile over HTTP: {payload:?}"
    );
    let chl = gw.expect_match("CHL 0 {digits}").await?;
    let challenge = chl.rsplit(' ').next().unwrap_or_default();
    let (id, answer) = challenge_answer(dialect, challenge);
    let r = gw
        .send_raw(format!("QRY 5 {id} 32\r\n{answer}").as_bytes())
        .await?;
    ensure!(
        r.body_text() == "QRY 5\r\n",
        "QRY answer {:?}",
        r.body_text()
    );
    gw.expect_line("QRY 5").await?;
    Ok(gw)
}

/// Alice (TCP, MSNP12) has bob on her forward list and both are online; bob (MSNP12) is on
/// the gateway. The setup several gateway rules start from.
async fn alice_on_tcp_watches_bob_on_the_gateway(
    srv: &TestServer,
    ep: &Endpoint,
) -> Result<(Conn, Gw)> {
    account(srv, "alice").await?;
    account(srv, "bob").await?;
    let mut alice = srv
        .login(Dialect::Msnp12, &email("alice"), PASSWORD)
        .await?;
    let mut bob = gw_login(srv, ep, Dialect::Msnp12, "bob").await?;
    add(&mut alice, Dialect::Msnp12, 6, "FL", "bob").await?;
    bob.expect_match(&rl_notice(Dialect::Msnp12, "alice"))
        .await?;
    chg(&mut alice, Dialect::Msnp12, 7, "NLN").await?;
    bob.send("CHG 6 NLN 1342177280:0").await?;
    bob.expect_line("CHG 6 NLN 1342177280:0").await?;
    alice
        .expect_line(&nln(Dialect::Msnp12, Dialect::Msnp12, "NLN", "bob"))
        .await?;
    Ok((alice, bob))
}

async fn server(limits: LimitsConfig) -> Result<TestServer> {
    TestServer::start(ServerOptions {
        limits,
        ..ServerOptions::default()
    })
    .await
}

async fn account(srv: &TestServer, name: &str) -> Result<()> {
    srv.add_account(&email(name), PASSWORD, &display(name))
        .await
}

/// Adds `who` to the forward list over the gateway, in `d`'s form.
async fn gw_add_fl(gw: &mut Gw, d: Dialect, trid: u32, who: &str) -> Result<()> {
    let (e, nick) = (email(who), encoded_display(who));
    if d >= Dialect::Msnp10 {
        gw.send(&format!("ADC {trid} FL N={e} F={nick}")).await?;
        gw.expect_match(&format!("ADC {trid} FL N={e} F={nick} C={{any}}"))
            .await?;
    } else {
        gw.send(&format!("ADD {trid} FL {e} {nick}")).await?;
        gw.expect_match(&format!("ADD {trid} FL {{digits}} {e} {nick} 0"))
            .await?;
    }
    Ok(())
}

/// The switchboard-capability number `IRO`/`JOI` show to an MSNP12 viewer.
fn sb_caps(viewer: Dialect, member: Dialect) -> String {
    match (viewer >= Dialect::Msnp12, member >= Dialect::Msnp12) {
        (false, _) => String::new(),
        (true, true) => " 1342177280".into(),
        (true, false) => " 268435456".into(),
    }
}

fn text(body: &str) -> Vec<u8> {
    format!(
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nX-MMS-IM-Format: FN=Arial; EF=; CO=0; CS=0; PF=22\r\n\r\n{body}"
    )
    .into_bytes()
}

fn msg(trid: u32, mode: &str, payload: &[u8]) -> Vec<u8> {
    let mut bytes = format!("MSG {trid} {mode} {}\r\n", payload.len()).into_bytes();
    bytes.extend_from_slice(payload);
    bytes
}

fn check_msg(f: &Frame, from: &str, payload: &[u8]) -> Result<()> {
    let want = format!(
        "MSG {} {} {}",
        email(from),
        encoded_display(from),
        payload.len()
    );
    ensure!(f.line() == want, "expected {want:?}, got {:?}", f.line());
    ensure!(
        f.payload().map(|p| &p[..]) == Some(payload),
        "payload differs"
    );
    Ok(())
}

/// alice on TCP (MSNP12) and bob on the gateway (`db`): contacts, presence both ways, a
/// conversation bob opens through the gateway, one alice opens and bob answers (`RNG`), and
/// bob signing out.
async fn tcp_meets_gateway(db: Dialect, https: bool) -> Result<()> {
    let da = Dialect::Msnp12;
    let srv = server(LimitsConfig::default()).await?;
    let ep = if https {
        Endpoint::https(&srv)?
    } else {
        Endpoint::http(&srv)
    };
    account(&srv, "alice").await?;
    account(&srv, "bob").await?;
    let mut alice = srv.login(da, &email("alice"), PASSWORD).await?;
    let mut bob = gw_login(&srv, &ep, db, "bob").await?;

    // Contacts: each adds the other; each hears the reverse-list notice; bob's SYN lists
    // alice on his forward and reverse lists.
    gw_add_fl(&mut bob, db, 6, "alice").await?;
    alice.expect_match(&rl_notice(da, "bob")).await?;
    add(&mut alice, da, 6, "FL", "bob").await?;
    bob.expect_match(&rl_notice(db, "alice")).await?;
    if db >= Dialect::Msnp10 {
        bob.send("SYN 7 0 0").await?;
        bob.expect_line("SYN 7 2 2 1 0").await?;
        bob.expect_line("GTC A").await?;
        bob.expect_line("BLP AL").await?;
        bob.expect_line("PRP MFN Bob%20N").await?;
        // MSNP12 has the network (1) after the list bits.
        let lst = if db >= Dialect::Msnp12 {
            "LST N=alice@x.com F=Alice%20N C={any} 9 1"
        } else {
            "LST N=alice@x.com F=Alice%20N C={any} 9"
        };
        bob.expect_match(lst).await?;
    } else {
        bob.send("SYN 7 0").await?;
        bob.expect_line("SYN 7 2 1 1").await?;
        bob.expect_line("GTC A").await?;
        bob.expect_line("BLP AL").await?;
        bob.expect_line("LSG 0 Other%20Contacts 0").await?;
        bob.expect_line("LST alice@x.com Alice%20N 9 0").await?;
    }
    bob.expect_quiet().await?;

    // Presence both ways.
    let burst = chg(&mut alice, da, 7, "NLN").await?;
    ensure!(
        burst.is_empty(),
        "alice's ILN burst before bob is online: {burst:?}"
    );
    let bcaps = caps(db);
    bob.send(&format!("CHG 8 NLN {bcaps}")).await?;
    bob.expect_line(&format!("CHG 8 NLN {bcaps}")).await?;
    bob.expect_line(&iln(db, da, 8, "NLN", "alice")).await?;
    alice.expect_line(&nln(da, db, "NLN", "bob")).await?;
    chg(&mut alice, da, 8, "AWY").await?;
    bob.expect_line(&nln(db, da, "AWY", "alice")).await?;
    bob.send(&format!("CHG 9 BSY {bcaps}")).await?;
    bob.expect_line(&format!("CHG 9 BSY {bcaps}")).await?;
    alice.expect_line(&nln(da, db, "BSY", "bob")).await?;

    // bob opens a switchboard through the gateway: XFR names the real address, which bob
    // passes as IP= when opening the SB session.
    bob.send("XFR 10 SB").await?;
    let xfr = bob.expect_match("XFR 10 SB {any} CKI {any}").await?;
    let t: Vec<&str> = xfr.split(' ').collect();
    ensure!(t[3] == srv.addrs.msnp.to_string(), "XFR address {xfr}");
    let (mut bsb, reply) = Gw::open(
        &ep,
        "gw sb bob",
        "SB",
        t[3],
        format!("USR 1 bob@x.com {}\r\n", t[5]).as_bytes(),
    )
    .await?;
    ensure!(
        reply.body_text() == "USR 1 OK bob@x.com Bob%20N\r\n",
        "SB USR answer {:?}",
        reply.body_text()
    );
    bsb.expect_line("USR 1 OK bob@x.com Bob%20N").await?;
    bsb.send("CAL 2 alice@x.com").await?;
    let cal = bsb.expect_match("CAL 2 RINGING {digits}").await?;
    let sid = cal.rsplit(' ').next().unwrap_or_default().to_owned();
    let rng = alice
        .expect_match(&format!(
            "RNG {sid} {} CKI {{any}} bob@x.com Bob%20N",
            srv.addrs.msnp
        ))
        .await?;
    let cookie = rng.split(' ').nth(4).unwrap_or_default().to_owned();
    let mut asb = srv.connect().await?;
    asb.set_label("sb alice");
    asb.send(&format!("ANS 1 alice@x.com {cookie} {sid}"))
        .await?;
    asb.expect_line(&format!("IRO 1 1 1 bob@x.com Bob%20N{}", sb_caps(da, db)))
        .await?;
    asb.expect_line("ANS 1 OK").await?;
    bsb.expect_line(&format!("JOI alice@x.com Alice%20N{}", sb_caps(db, da)))
        .await?;

    let hello = text("hello from the gateway");
    let r = bsb.send_raw(&msg(3, "A", &hello)).await?;
    ensure!(
        r.body_text() == "ACK 3\r\n",
        "ACK in the same response: {:?}",
        r.body_text()
    );
    bsb.expect_line("ACK 3").await?;
    check_msg(&asb.recv_frame().await?, "bob", &hello)?;
    let reply_text = text("hello from TCP");
    asb.send_raw(&msg(2, "A", &reply_text)).await?;
    asb.expect_line("ACK 2").await?;
    check_msg(&bsb.recv_frame().await?, "alice", &reply_text)?;

    // alice opens one and calls bob: bob's NS session (polled) hears RNG, and bob answers it
    // through the gateway.
    alice.send("XFR 9 SB").await?;
    let xfr = alice.expect_match("XFR 9 SB {any} CKI {any}").await?;
    let cookie = xfr.split(' ').nth(5).unwrap_or_default().to_owned();
    let mut asb2 = srv.connect().await?;
    asb2.send(&format!("USR 1 alice@x.com {cookie}")).await?;
    asb2.expect_line("USR 1 OK alice@x.com Alice%20N").await?;
    asb2.send("CAL 2 bob@x.com").await?;
    let cal = asb2.expect_match("CAL 2 RINGING {digits}").await?;
    let sid = cal.rsplit(' ').next().unwrap_or_default().to_owned();
    let rng = bob
        .expect_match(&format!(
            "RNG {sid} {} CKI {{any}} alice@x.com Alice%20N",
            srv.addrs.msnp
        ))
        .await?;
    let r: Vec<&str> = rng.split(' ').collect();
    let (mut bsb2, reply) = Gw::open(
        &ep,
        "gw sb2 bob",
        "SB",
        r[2],
        format!("ANS 1 bob@x.com {} {sid}\r\n", r[4]).as_bytes(),
    )
    .await?;
    ensure!(
        reply.body_text()
            == format!(
                "IRO 1 1 1 alice@x.com Alice%20N{}\r\nANS 1 OK\r\n",
                sb_caps(db, da)
            ),
        "ANS answer {:?}",
        reply.body_text()
    );
    bsb2.expect_match("IRO 1 1 1 alice@x.com Alice%20N{rest}")
        .await?;
    bsb2.expect_line("ANS 1 OK").await?;
    asb2.expect_line(&format!("JOI bob@x.com Bob%20N{}", sb_caps(da, db)))
        .await?;
    let ping = text("are you there?");
    asb2.send_raw(&msg(3, "N", &ping)).await?;
    check_msg(&bsb2.recv_frame().await?, "alice", &ping)?;
    let pong = text("yes");
    let r = bsb2.send_raw(&msg(2, "U", &pong)).await?;
    ensure!(
        r.body.is_empty(),
        "nothing answers MSG U: {:?}",
        r.body_text()
    );
    check_msg(&asb2.recv_frame().await?, "bob", &pong)?;

    // bob leaves the second conversation with OUT: the response closes the session.
    let r = bsb2.send("OUT").await?;
    ensure!(
        r.messenger() == format!("SessionID={}; Session=close", bsb2.id),
        "{:?}",
        r.messenger()
    );
    asb2.expect_line("BYE bob@x.com").await?;
    let gone = bsb2
        .ep
        .post(&format!("{GATEWAY}?Action=poll&SessionID={}", bsb2.id), b"")
        .await?;
    ensure!(
        gone.status == 400,
        "a closed session's ID is unknown: {gone:?}"
    );

    // Signing out over the gateway is an FLN to watchers, like a TCP sign-out.
    let r = bob.send("OUT").await?;
    ensure!(
        r.messenger().ends_with("; Session=close"),
        "{:?}",
        r.messenger()
    );
    alice.expect_line(&fln("bob")).await?;
    // The first conversation outlives bob's NS session, as over TCP.
    let still = text("still here");
    asb.send_raw(&msg(3, "U", &still)).await?;
    check_msg(&bsb.recv_frame().await?, "alice", &still)?;
    Ok(())
}

#[tokio::test]
async fn msnp12_gateway_client_meets_tcp_client() -> Result<()> {
    tcp_meets_gateway(Dialect::Msnp12, false).await
}

#[tokio::test]
async fn msnp8_gateway_client_over_https_meets_tcp_client() -> Result<()> {
    tcp_meets_gateway(Dialect::Msnp8, true).await
}

/// Over HTTP, `PNG` is an HTTP error that ends the session.
#[tokio::test]
async fn png_is_refused_over_http() -> Result<()> {
    let srv = server(LimitsConfig::default()).await?;
    let ep = Endpoint::http(&srv);
    let (mut alice, bob) = alice_on_tcp_watches_bob_on_the_gateway(&srv, &ep).await?;

    let r = ep
        .post(&format!("{GATEWAY}?SessionID={}", bob.id), b"PNG\r\n")
        .await?;
    ensure!(r.status == 400, "PNG over HTTP: {r:?}");
    ensure!(
        r.messenger() == format!("SessionID={}; Session=close", bob.id),
        "{:?}",
        r.messenger()
    );
    ensure!(r.body.is_empty(), "no QNG: {:?}", r.body_text());
    alice.expect_line(&fln("bob")).await?;
    let r = ep
        .post(&format!("{GATEWAY}?Action=poll&SessionID={}", bob.id), b"")
        .await?;
    ensure!(r.status == 400, "the session is gone: {r:?}");
    Ok(())
}

/// A gateway client that stops asking is gone: after `gateway_idle_secs` its session ends
/// like a dropped TCP connection (its watcher sees `FLN`) and its ID is no longer known.
#[tokio::test]
async fn idle_sessions_expire() -> Result<()> {
    let srv = server(LimitsConfig {
        // Long enough for the login to fetch its Passport ticket between two requests.
        gateway_idle_secs: 2,
        ..LimitsConfig::default()
    })
    .await?;
    let ep = Endpoint::http(&srv);
    let (mut alice, bob) = alice_on_tcp_watches_bob_on_the_gateway(&srv, &ep).await?;
    // bob stops polling.
    alice.expect_line(&fln("bob")).await?;
    let r = ep
        .post(&format!("{GATEWAY}?Action=poll&SessionID={}", bob.id), b"")
        .await?;
    ensure!(r.status == 400, "expired session: {r:?}");
    ensure!(r.header("X-MSN-Messenger").is_none(), "{r:?}");
    Ok(())
}

/// A second request while one is in flight is 400; the first one is answered as usual.
#[tokio::test]
async fn one_request_in_flight_per_session() -> Result<()> {
    let srv = server(LimitsConfig::default()).await?;
    let ep = Endpoint::http(&srv);
    let (mut gw, _) = Gw::open(
        &ep,
        "gw",
        "NS",
        "messenger.hotmail.com",
        b"VER 1 MSNP12 CVR0\r\n",
    )
    .await?;
    gw.expect_line("VER 1 MSNP12 CVR0").await?;

    // The first request's head and half its body: it is in flight until the rest comes.
    let cvr = format!("{}\r\n", cvr_request(2, "bob@x.com"));
    let (first_half, second_half) = cvr.as_bytes().split_at(10);
    let mut slow = ep.connect().await?;
    slow.write_all(&head(
        "POST",
        &format!("{GATEWAY}?SessionID={}", gw.id),
        cvr.len(),
    ))
    .await?;
    slow.write_all(first_half).await?;
    slow.flush().await?;

    // Whether the server has read the first request's head yet is not known from outside:
    // the second request is refused once it has, and that moment comes.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let r = ep
            .post(&format!("{GATEWAY}?Action=poll&SessionID={}", gw.id), b"")
            .await?;
        if r.status == 400 {
            ensure!(r.header("X-MSN-Messenger").is_none(), "{r:?}");
            break;
        }
        ensure!(
            r.status == 200 && r.body.is_empty(),
            "poll before the first request: {r:?}"
        );
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the concurrent request was never refused"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    slow.write_all(second_half).await?;
    slow.flush().await?;
    let r = tokio::time::timeout(TIMEOUT, read_reply(&mut slow)).await??;
    ensure!(r.status == 200, "{r:?}");
    ensure!(
        r.body_text() == format!("CVR 2 {CVR_REPLY}\r\n"),
        "{:?}",
        r.body_text()
    );
    // And the session goes on.
    gw.send("USR 3 TWN I bob@x.com").await?;
    gw.expect_match("USR 3 TWN S {any}").await?;
    Ok(())
}

/// Requests that name no session, a malformed or an unknown one, or no server type, are 400;
/// anything but POST is 405.
#[tokio::test]
async fn bad_requests_and_session_ids() -> Result<()> {
    let srv = server(LimitsConfig::default()).await?;
    let ep = Endpoint::http(&srv);
    let (mut gw, _) = Gw::open(
        &ep,
        "gw",
        "NS",
        "messenger.hotmail.com",
        b"VER 1 MSNP12 CVR0\r\n",
    )
    .await?;
    gw.expect_line("VER 1 MSNP12 CVR0").await?;
    let unknown = "0123456789abcdef0123456789abcdef";
    assert_ne!(gw.id, unknown);
    for (target, status) in [
        (GATEWAY.to_owned(), 400),
        (format!("{GATEWAY}?Action=poll"), 400),
        (format!("{GATEWAY}?SessionID="), 400),
        (format!("{GATEWAY}?SessionID={unknown}"), 400),
        (format!("{GATEWAY}?Action=poll&SessionID={unknown}"), 400),
        (format!("{GATEWAY}?SessionID={}", gw.id.to_uppercase()), 400),
        (format!("{GATEWAY}?SessionID={}x", gw.id), 400),
        (format!("{GATEWAY}?SessionID=954547325.13160"), 400),
        (format!("{GATEWAY}?SessionID=../../{}", gw.id), 400),
        (
            format!("{GATEWAY}?Action=open&IP=messenger.hotmail.com"),
            400,
        ),
        (
            format!("{GATEWAY}?Action=open&Server=XX&IP=messenger.hotmail.com"),
            400,
        ),
        (format!("{GATEWAY}?Action=close&SessionID={}", gw.id), 400),
    ] {
        let r = ep.post(&target, b"CVR 2 x\r\n").await?;
        ensure!(
            r.status == status,
            "{target}: {} instead of {status}",
            r.status
        );
        ensure!(
            r.body.is_empty() && r.header("X-MSN-Messenger").is_none(),
            "{target}: {r:?}"
        );
    }
    let mut s = ep.connect().await?;
    s.write_all(&head(
        "GET",
        &format!("{GATEWAY}?Action=poll&SessionID={}", gw.id),
        0,
    ))
    .await?;
    let r = tokio::time::timeout(TIMEOUT, read_reply(&mut s)).await??;
    ensure!(r.status == 405, "GET: {r:?}");
    // None of that reached the session.
    gw.expect_quiet().await?;
    gw.send(&cvr_request(2, "bob@x.com")).await?;
    gw.expect_line(&format!("CVR 2 {CVR_REPLY}")).await
}

/// A body over `gateway_max_body` is 413 and reaches no session.
#[tokio::test]
async fn oversized_bodies_are_refused() -> Result<()> {
    let limits = LimitsConfig::default();
    let max = limits.gateway_max_body;
    let srv = server(limits).await?;
    let ep = Endpoint::http(&srv);
    let (mut gw, _) = Gw::open(
        &ep,
        "gw",
        "NS",
        "messenger.hotmail.com",
        b"VER 1 MSNP12 CVR0\r\n",
    )
    .await?;
    gw.expect_line("VER 1 MSNP12 CVR0").await?;

    // Announced: refused before any of it is read.
    let mut s = ep.connect().await?;
    s.write_all(&head(
        "POST",
        &format!("{GATEWAY}?SessionID={}", gw.id),
        max + 1,
    ))
    .await?;
    s.flush().await?;
    let r = tokio::time::timeout(TIMEOUT, read_reply(&mut s)).await??;
    ensure!(r.status == 413, "announced oversized body: {r:?}");
    // The same for opening a session.
    let mut s = ep.connect().await?;
    s.write_all(&head(
        "POST",
        &format!("{GATEWAY}?Action=open&Server=NS&IP=x"),
        max + 1,
    ))
    .await?;
    s.flush().await?;
    let r = tokio::time::timeout(TIMEOUT, read_reply(&mut s)).await??;
    ensure!(r.status == 413, "oversized open: {r:?}");
    // Exactly the limit is fine (one CVR line padded with blank lines, which MSNP ignores).
    let mut body = format!("{}\r\n", cvr_request(2, "bob@x.com")).into_bytes();
    body.resize(max, b'\n');
    let r = gw.send_raw(&body).await?;
    ensure!(
        r.body_text() == format!("CVR 2 {CVR_REPLY}\r\n"),
        "{:?}",
        r.body_text()
    );
    gw.expect_line(&format!("CVR 2 {CVR_REPLY}")).await
}

/// Output for a gateway client that never polls is bounded by `outbox_bytes`: the session is
/// dropped like a TCP peer that stops reading (its switchboard peer sees `BYE email 1`), and
/// what the client finally collects is no more than the bound.
#[tokio::test]
async fn output_nobody_polls_for_is_bounded() -> Result<()> {
    const OUTBOX: usize = 4096;
    let srv = server(LimitsConfig {
        outbox_bytes: OUTBOX,
        write_timeout_secs: 1,
        ..LimitsConfig::default()
    })
    .await?;
    let ep = Endpoint::http(&srv);
    let (mut alice, mut bob) = alice_on_tcp_watches_bob_on_the_gateway(&srv, &ep).await?;

    bob.send("XFR 7 SB").await?;
    let xfr = bob.expect_match("XFR 7 SB {any} CKI {any}").await?;
    let t: Vec<&str> = xfr.split(' ').collect();
    let (mut bsb, _) = Gw::open(
        &ep,
        "gw sb bob",
        "SB",
        t[3],
        format!("USR 1 bob@x.com {}\r\n", t[5]).as_bytes(),
    )
    .await?;
    bsb.expect_line("USR 1 OK bob@x.com Bob%20N").await?;
    bsb.send("CAL 2 alice@x.com").await?;
    let cal = bsb.expect_match("CAL 2 RINGING {digits}").await?;
    let sid = cal.rsplit(' ').next().unwrap_or_default().to_owned();
    let rng = alice.expect_match(&format!("RNG {sid} {{rest}}")).await?;
    let cookie = rng.split(' ').nth(4).unwrap_or_default().to_owned();
    let mut asb = srv.connect().await?;
    asb.set_label("sb alice");
    asb.send(&format!("ANS 1 alice@x.com {cookie} {sid}"))
        .await?;
    asb.expect_match("IRO 1 1 1 bob@x.com {rest}").await?;
    asb.expect_line("ANS 1 OK").await?;
    // bob's switchboard session is not polled from here on.
    let chunk = text(&"x".repeat(1000));
    for trid in 2..12 {
        asb.send_raw(&msg(trid, "U", &chunk)).await?;
    }
    asb.expect_line("BYE bob@x.com 1").await?;
    let r = bsb.poll().await?;
    ensure!(
        r.body.len() <= OUTBOX,
        "{} bytes were kept for bob",
        r.body.len()
    );
    ensure!(
        r.messenger() == format!("SessionID={}; Session=close", bsb.id),
        "{:?}",
        r.messenger()
    );
    // bob's notification session is unaffected.
    bob.send("CHG 8 AWY 1342177280:0").await?;
    bob.expect_line("CHG 8 AWY 1342177280:0").await?;
    alice
        .expect_line(&nln(Dialect::Msnp12, Dialect::Msnp12, "AWY", "bob"))
        .await?;
    Ok(())
}

/// The plain TCP listener is untouched by all this: a TCP login still reports its real port.
#[tokio::test]
async fn tcp_profile_keeps_the_client_port() -> Result<()> {
    let srv = server(LimitsConfig::default()).await?;
    account(&srv, "carol").await?;
    let mut c = Conn::connect(srv.addrs.msnp).await?;
    let port = c.local_addr().port();
    c.send("VER 1 MSNP12 CVR0").await?;
    c.expect_line("VER 1 MSNP12 CVR0").await?;
    c.send(&cvr_request(2, "carol@x.com")).await?;
    c.expect_line(&format!("CVR 2 {CVR_REPLY}")).await?;
    c.send("USR 3 TWN I carol@x.com").await?;
    c.expect_match("USR 3 TWN S {any}").await?;
    let ticket = srv.passport_ticket("carol@x.com", PASSWORD).await?;
    c.send(&format!("USR 4 TWN S {ticket}")).await?;
    c.expect_line("USR 4 OK carol@x.com 1 0").await?;
    let f = c.recv_frame().await?;
    let payload = String::from_utf8_lossy(f.payload().map_or(&[][..], |p| &p[..])).into_owned();
    let want = format!("\r\nClientPort: {}\r\n", msgr_it::profile_client_port(port));
    ensure!(payload.contains(&want), "{payload:?} lacks {want:?}");
    Ok(())
}
