//! Support for msgr's integration tests: the real server on `127.0.0.1:0`, a raw MSNP client,
//! a Passport 1.4 client over real HTTPS, and a full login for every dialect MSNP2–MSNP12.
//!
//! Everything here talks to the server only through its sockets, as a client would; the one
//! shortcut is [`TestServer::add_account`], which writes accounts straight into the server's
//! SQLite store with cheap password hashing so tests stay fast.
//!
//! Every wait has a deadline ([`TIMEOUT`]) and every helper returns an [`anyhow::Result`] whose
//! context says what was being waited for and what arrived instead, so a failing test reads
//! like a protocol trace rather than a panic location.

#![allow(clippy::unwrap_used)]

pub mod browser;
pub mod dns;
pub mod transcript;

use anyhow::{anyhow, bail, ensure, Context, Result};
use bytes::BytesMut;
use msgr_core::password::{hash_password_with, PasswordParams};
use msgr_mail::MailConfig;
use msgr_proto::frame::{Frame, FrameDecoder, Limits, Peer};
use msgr_proto::Dialect;
use msgr_server::config::LimitsConfig;
use msgr_server::{BoundAddrs, Config, Server};
use msgr_store::{AccountStore, MailStore, MessageMeta, NewAccount, Store};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long any single wait (a line, a close, an HTTP response) may take before the test
/// fails. Generous for a loaded CI machine, short enough that a hang is reported quickly.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Far below any safe cost: only so that creating and checking test accounts is instant.
pub const CHEAP_PASSWORD: PasswordParams = PasswordParams {
    memory_kib: 64,
    iterations: 1,
    parallelism: 1,
};

/// `CVR` reply parameters, the same in every dialect (the seed transcripts' values).
pub const CVR_REPLY: &str = "6.0.0602 6.0.0602 1.0.0000 \
    http://download.microsoft.com/download/8/a/4/8a42bcae-f533-4468-b871-d2bc8dd32e9e/SETUP9x.EXE \
    http://messenger.msn.com";

/// The `CVR` line MSN Messenger 5.0 sends (seed transcript), for `email`.
pub fn cvr_request(trid: u32, email: &str) -> String {
    format!("CVR {trid} 0x0409 win 4.10 i386 MSNMSGR 5.0.0544 MSMSGS {email}")
}

/// The `QNG` line the server answers `PNG` with in `dialect`.
pub fn qng(dialect: Dialect) -> &'static str {
    if dialect >= Dialect::Msnp9 {
        "QNG 50"
    } else {
        "QNG"
    }
}

/// The client ID an official client of `dialect` names in `QRY`, and its answer to
/// `challenge`.
pub fn challenge_answer(dialect: Dialect, challenge: &str) -> (&'static str, String) {
    let id = if dialect >= Dialect::Msnp11 {
        "PROD0090YUAUV{2B"
    } else {
        "msmsgs@msnmsgr.com"
    };
    let answer = msgr_proto::challenge::expected_answer(id, challenge).unwrap_or_default();
    (id, answer)
}

/// Lowercase hex MD5 of `salt` followed by `password`: the MSNP2–MSNP7 `USR MD5 S` proof.
pub fn md5_hex(salt: &str, password: &str) -> String {
    use md5::{Digest, Md5};
    let mut h = Md5::new();
    h.update(salt.as_bytes());
    h.update(password.as_bytes());
    hex::encode(h.finalize())
}

/// The `ClientPort` value of the profile message for a client whose source port is `port`
/// (the official server wrote it byte-swapped).
pub fn profile_client_port(port: u16) -> u16 {
    port.swap_bytes()
}

/// How to configure a [`TestServer`]. Everything else is the production default, except that
/// every listener binds `127.0.0.1:0`.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Allow MSNP2–MSNP7 (`USR MD5`) logins.
    pub legacy_md5: bool,
    /// Dispatch-only mode when non-empty.
    pub dispatch_to: Vec<String>,
    /// Also bind a dispatch-only MSNP listener (`addrs.dispatch`).
    pub dispatch_listener: bool,
    /// The name `XFR`, `RNG` and `DALogin` advertise, and the generated certificate carries.
    pub public_host: Option<String>,
    pub limits: LimitsConfig,
    /// The `[mail]` section. Its listeners are always moved to `127.0.0.1:0` (the defaults are fixed
    /// ports, which parallel tests would fight over). `None`: the defaults with
    /// `allow_plaintext_auth = true`, so tests can sign in over plain loopback connections. Sender
    /// authentication runs only when the test names its own DNS servers (`auth_dns`).
    pub mail: Option<MailConfig>,
    /// The `[web]` section (the web inbox's limits).
    pub web: msgr_web::WebConfig,
}

impl ServerOptions {
    /// Options with legacy MD5 logins allowed.
    pub fn legacy() -> Self {
        ServerOptions {
            legacy_md5: true,
            ..Default::default()
        }
    }

    /// Options for the dialect: legacy MD5 logins on only when `dialect` needs them, so the
    /// MSNP8+ tests run against the default configuration.
    pub fn for_dialect(dialect: Dialect) -> Self {
        ServerOptions {
            legacy_md5: dialect < Dialect::Msnp8,
            ..Default::default()
        }
    }
}

/// Where a running server can be reached: its MSNP listener, its HTTPS listener and the CA
/// certificate that the HTTPS listener's certificate chains to.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub msnp: SocketAddr,
    pub https: SocketAddr,
    /// PEM file trusted for HTTPS (the server's generated self-signed certificate).
    pub ca: PathBuf,
}

/// The real server running in this process on loopback ports, with a data directory of its
/// own that is deleted when the value is dropped. Dropping it also asks the server to shut
/// down; [`TestServer::stop`] does the same and waits until it has.
pub struct TestServer {
    pub addrs: BoundAddrs,
    pub config: Config,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
    // Dropped last (fields drop in order), after the server has been told to stop.
    dir: tempfile::TempDir,
}

impl TestServer {
    /// Binds a server with `opts` and starts it on the current tokio runtime.
    pub async fn start(opts: ServerOptions) -> Result<TestServer> {
        let dir = tempfile::Builder::new()
            .prefix("msgr-it-")
            .tempdir()
            .context("creating the data directory")?;
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let config = Config {
            data_dir: dir.path().to_owned(),
            msnp: loopback,
            http: Some(loopback),
            https: Some(loopback),
            public_host: opts.public_host,
            dispatch_to: opts.dispatch_to,
            dispatch: opts.dispatch_listener.then_some(loopback),
            legacy_md5: opts.legacy_md5,
            limits: opts.limits,
            web: opts.web,
            mail: MailConfig {
                smtp: Some(loopback),
                submission: Some(loopback),
                submissions: Some(loopback),
                pop3: Some(loopback),
                pop3s: Some(loopback),
                imap: Some(loopback),
                imaps: Some(loopback),
                ..opts.mail.map_or_else(
                    || MailConfig {
                        allow_plaintext_auth: true,
                        sender_auth: false,
                        ..MailConfig::default()
                    },
                    |mut m| {
                        // Tests never ask outside DNS: sender authentication only against a test's
                        // own servers (`auth_dns`).
                        m.sender_auth &= !m.auth_dns.is_empty();
                        m
                    },
                )
            },
            ..Config::default()
        };
        if config.mail.dkim_dir.is_none() {
            seed_dkim_keys(&config.data_dir.join("dkim"))?;
        }
        let server = Server::bind(config.clone())
            .await
            .context("binding the server")?;
        let addrs = server.addrs();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.run(shutdown.clone()));
        Ok(TestServer {
            addrs,
            config,
            shutdown,
            task: Some(task),
            dir,
        })
    }

    /// The data directory (database, generated certificate).
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            msnp: self.addrs.msnp,
            https: self
                .addrs
                .https
                .expect("a TestServer always has an HTTPS listener"),
            ca: self.data_dir().join("tls-cert.pem"),
        }
    }

    /// Creates an account in the server's store. It can log in with MSNP2–MSNP7 as well
    /// (an MD5 secret is stored) when the server allows legacy logins.
    pub async fn add_account(&self, email: &str, password: &str, name: &str) -> Result<()> {
        let db = self.config.database_path();
        let new = NewAccount {
            email: email.to_owned(),
            display_name: name.to_owned(),
            password_hash: hash_password_with(password, CHEAP_PASSWORD)?,
            md5_secret: self.config.legacy_md5.then(|| password.to_owned()),
        };
        tokio::task::spawn_blocking(move || -> Result<()> {
            let store = Store::open_sqlite(&db).context("opening the store")?;
            store.create_account(new)?;
            Ok(())
        })
        .await?
        .with_context(|| format!("creating account {email}"))
    }

    /// The messages in `account`'s folder `folder` (`INBOX`, `Sent`, …) with their raw bytes, read
    /// straight from the server's store, oldest first.
    pub async fn mail_messages(
        &self,
        account: &str,
        folder: &str,
    ) -> Result<Vec<(MessageMeta, Vec<u8>)>> {
        let db = self.config.database_path();
        let (account, folder) = (account.to_owned(), folder.to_owned());
        tokio::task::spawn_blocking(move || -> Result<Vec<(MessageMeta, Vec<u8>)>> {
            let store = Store::open_sqlite(&db).context("opening the store")?;
            let f = store
                .folder(&account, &folder)?
                .with_context(|| format!("{account} has no folder {folder}"))?;
            let mut out = Vec::new();
            for meta in store.messages(f.id)? {
                let raw = store
                    .message_raw(f.id, meta.uid)?
                    .with_context(|| format!("message {} vanished", meta.uid))?;
                out.push((meta, raw));
            }
            Ok(out)
        })
        .await?
    }

    /// A fresh MSNP connection to the server.
    pub async fn connect(&self) -> Result<Conn> {
        Conn::connect(self.addrs.msnp).await
    }

    /// A Passport ticket (`t=…&p=…`) for the account, through the nexus and login2.srf.
    pub async fn passport_ticket(&self, email: &str, password: &str) -> Result<String> {
        let ep = self.endpoint();
        passport_ticket(ep.https, &ep.ca, email, password).await
    }

    /// A complete login in `dialect` (see [`login`]).
    pub async fn login(&self, dialect: Dialect, email: &str, password: &str) -> Result<Conn> {
        login(&self.endpoint(), dialect, email, password).await
    }

    /// Stops the server (online sessions hear `OUT SSD`) and starts a new one on the same
    /// ports and data directory, as an operator restarting `msgr serve` would.
    pub async fn restart(&mut self) -> Result<()> {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(TIMEOUT + Duration::from_secs(2), task)
                .await
                .context("the server did not stop in time")?
                .context("the server task failed")?;
        }
        let config = Config {
            msnp: self.addrs.msnp,
            http: self.addrs.http,
            https: self.addrs.https,
            dispatch: self.addrs.dispatch,
            mail: MailConfig {
                smtp: self.addrs.mail.smtp,
                submission: self.addrs.mail.submission,
                submissions: self.addrs.mail.submissions,
                pop3: self.addrs.mail.pop3,
                pop3s: self.addrs.mail.pop3s,
                imap: self.addrs.mail.imap,
                imaps: self.addrs.mail.imaps,
                ..self.config.mail.clone()
            },
            ..self.config.clone()
        };
        let server = Server::bind(config)
            .await
            .context("binding the restarted server on the same ports")?;
        self.shutdown = CancellationToken::new();
        self.task = Some(tokio::spawn(server.run(self.shutdown.clone())));
        Ok(())
    }

    /// Shuts the server down (online sessions hear `OUT SSD`) and waits until it has stopped.
    pub async fn stop(mut self) -> Result<()> {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            // The server's own grace period is 5 s; allow a little more before calling it hung.
            tokio::time::timeout(TIMEOUT + Duration::from_secs(2), task)
                .await
                .context("the server did not stop in time")?
                .context("the server task failed")?;
        }
        Ok(())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A raw MSNP client connection. Lines are sent verbatim; frames from the server are decoded
/// with the real codec, so `MSG … len` payloads arrive whole.
pub struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    decoder: FrameDecoder,
    /// Shown in failure messages, e.g. `alice@x.com/MSNP8`.
    label: String,
    /// The last lines received, shown when an expectation fails.
    history: Vec<String>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> Result<Conn> {
        let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
            .await
            .with_context(|| format!("connecting to {addr} timed out"))?
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let label = format!("conn {}", stream.local_addr()?.port());
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(4096),
            decoder: FrameDecoder::new(Peer::Server, Limits::default()),
            label,
            history: Vec::new(),
        })
    }

    /// Names the connection in failure messages.
    pub fn set_label(&mut self, label: impl Into<String>) {
        self.label = label.into();
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// The client side's address (the profile message reports it back).
    pub fn local_addr(&self) -> SocketAddr {
        self.stream
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The dialect the server agreed to in `VER`, once it has.
    pub fn dialect(&self) -> Option<Dialect> {
        self.decoder.dialect()
    }

    /// Sends `line` followed by CRLF.
    pub async fn send(&mut self, line: &str) -> Result<()> {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.send_raw(&bytes)
            .await
            .with_context(|| format!("sending {line:?}"))
    }

    /// Sends exactly these bytes, in one write.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        tokio::time::timeout(TIMEOUT, self.stream.write_all(bytes))
            .await
            .map_err(|_| anyhow!("{}: write timed out", self.label))?
            .with_context(|| format!("{}: write failed", self.label))
    }

    /// The next frame from the server; `Ok(None)` if the server closed the connection
    /// cleanly (or reset it) first.
    pub async fn try_recv_frame(&mut self) -> Result<Option<Frame>> {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            if let Some(frame) = self
                .decoder
                .decode(&mut self.buf)
                .with_context(|| format!("{}: undecodable bytes from the server", self.label))?
            {
                self.note(&frame);
                return Ok(Some(frame));
            }
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf))
                .await
                .map_err(|_| {
                    anyhow!(
                        "{}: nothing from the server within {TIMEOUT:?}; {}",
                        self.label,
                        self.recent()
                    )
                })?;
            match read {
                Ok(0) | Err(_) if self.buf.is_empty() && !self.decoder.is_mid_frame() => {
                    return Ok(None)
                }
                Ok(0) => bail!(
                    "{}: connection closed in the middle of a frame ({} bytes pending)",
                    self.label,
                    self.buf.len()
                ),
                Ok(_) => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("{}: read failed mid-frame", self.label))
                }
            }
        }
    }

    /// The next frame; an error if the connection closes first.
    pub async fn recv_frame(&mut self) -> Result<Frame> {
        match self.try_recv_frame().await? {
            Some(f) => Ok(f),
            None => bail!(
                "{}: the server closed the connection; {}",
                self.label,
                self.recent()
            ),
        }
    }

    /// The next frame's command line (its payload, if any, is discarded).
    pub async fn recv_line(&mut self) -> Result<String> {
        Ok(self.recv_frame().await?.line().to_owned())
    }

    /// Fails unless the next line is exactly `expected`.
    pub async fn expect_line(&mut self, expected: &str) -> Result<()> {
        let got = self
            .recv_line()
            .await
            .with_context(|| format!("{}: waiting for {expected:?}", self.label))?;
        ensure!(
            got == expected,
            "{}: expected {expected:?}, got {got:?}; {}",
            self.label,
            self.recent()
        );
        Ok(())
    }

    /// Fails unless the next line matches `pattern` (see [`transcript::line_matches`] for
    /// the `{any}`, `{digits}` and `{hex}` placeholders). Returns the line.
    pub async fn expect_match(&mut self, pattern: &str) -> Result<String> {
        let got = self
            .recv_line()
            .await
            .with_context(|| format!("{}: waiting for a line like {pattern:?}", self.label))?;
        ensure!(
            transcript::line_matches(pattern, &got),
            "{}: expected a line like {pattern:?}, got {got:?}; {}",
            self.label,
            self.recent()
        );
        Ok(got)
    }

    /// Fails unless the server closes the connection without sending anything more.
    pub async fn expect_closed(&mut self) -> Result<()> {
        match self.try_recv_frame().await {
            Ok(None) => Ok(()),
            Ok(Some(f)) => bail!(
                "{}: expected the server to close the connection, got {:?}",
                self.label,
                f.line()
            ),
            Err(e) => Err(e.context(format!("{}: waiting for the close", self.label))),
        }
    }

    /// `PNG` → the dialect's `QNG`, which must be the very next line.
    pub async fn ping(&mut self) -> Result<()> {
        let dialect = self
            .dialect()
            .ok_or_else(|| anyhow!("{}: ping before VER", self.label))?;
        self.send("PNG").await?;
        self.expect_line(qng(dialect)).await
    }

    fn note(&mut self, frame: &Frame) {
        let line = frame.line();
        // Payload commands are framed differently per dialect: follow the server's `VER`.
        let mut tokens = line.split(' ');
        if tokens.next() == Some("VER") {
            if let Some(d) = tokens.nth(1).and_then(Dialect::from_token) {
                self.decoder.set_dialect(d);
            }
        }
        if self.history.len() == 8 {
            self.history.remove(0);
        }
        self.history.push(line.to_owned());
    }

    fn recent(&self) -> String {
        format!("last lines received: {:?}", self.history)
    }
}

/// The sign-in steps of [`login`] up to `USR 4 OK`, checked; what follows (the profile, a mail
/// notice, the challenge) is left unread for the caller. TrIDs 1–4 are used.
pub async fn authenticate(
    ep: &Endpoint,
    dialect: Dialect,
    email: &str,
    password: &str,
) -> Result<Conn> {
    let mut c = Conn::connect(ep.msnp).await?;
    c.set_label(format!("{email}/{dialect}"));
    let ver = dialect.token();
    c.send(&format!("VER 1 {ver} CVR0")).await?;
    c.expect_line(&format!("VER 1 {ver} CVR0")).await?;
    if dialect < Dialect::Msnp8 {
        c.send("INF 2").await?;
        c.expect_line("INF 2 MD5").await?;
        c.send(&format!("USR 3 MD5 I {email}")).await?;
        let line = c.expect_match("USR 3 MD5 S {any}").await?;
        let salt = line.rsplit(' ').next().unwrap_or_default();
        c.send(&format!("USR 4 MD5 S {}", md5_hex(salt, password)))
            .await?;
    } else {
        c.send(&cvr_request(2, email)).await?;
        c.expect_line(&format!("CVR 2 {CVR_REPLY}")).await?;
        c.send(&format!("USR 3 TWN I {email}")).await?;
        c.expect_match("USR 3 TWN S {any}").await?;
        let ticket = passport_ticket(ep.https, &ep.ca, email, password).await?;
        c.send(&format!("USR 4 TWN S {ticket}")).await?;
    }
    c.expect_match(&format!("USR 4 OK {email} {{rest}}"))
        .await?;
    Ok(c)
}

/// A complete login, as an official client of `dialect` would do it, checking each step:
///
/// - MSNP2–MSNP7: `VER`, `INF`, `USR MD5 I`, `USR MD5 S md5(salt+password)`;
/// - MSNP8–MSNP12: `VER`, `CVR`, `USR TWN I`, Passport 1.4 over HTTPS, `USR TWN S ticket`;
///
/// then the profile message (MSNP5+) and the `CHL`/`QRY` challenge (MSNP8+). The returned
/// connection is online with nothing left unread. TrIDs 1–5 are used.
pub async fn login(ep: &Endpoint, dialect: Dialect, email: &str, password: &str) -> Result<Conn> {
    let mut c = authenticate(ep, dialect, email, password).await?;
    if dialect >= Dialect::Msnp5 {
        let frame = c.recv_frame().await?;
        ensure!(
            frame.line().starts_with("MSG Hotmail Hotmail ") && frame.payload().is_some(),
            "{}: expected the profile message, got {:?}",
            c.label,
            frame.line()
        );
    }
    if dialect >= Dialect::Msnp8 {
        let chl = c.expect_match("CHL 0 {digits}").await?;
        let challenge = chl.rsplit(' ').next().unwrap_or_default();
        let (id, answer) = challenge_answer(dialect, challenge);
        c.send_raw(format!("QRY 5 {id} 32\r\n{answer}").as_bytes())
            .await?;
        c.expect_line("QRY 5").await?;
    }
    Ok(c)
}

/// What `login2.srf` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassportReply {
    /// 200 with `Authentication-Info: … from-PP='<ticket>'`; holds `t=…&p=…`.
    Ticket(String),
    /// Anything else: the status and the `WWW-Authenticate` header (empty if absent).
    Refused {
        status: u16,
        www_authenticate: String,
    },
}

/// Signs in through Passport 1.4 like a real client: asks the nexus at `https` for
/// `DALogin`, then sends the credentials to it (prefixing `https://`). The server's
/// certificate must chain to `ca`; nothing is trusted blindly.
pub async fn passport_login(
    https: SocketAddr,
    ca: &Path,
    email: &str,
    password: &str,
) -> Result<PassportReply> {
    let tls = tls_connector(ca)?;
    let nexus = https_get(
        &tls,
        &https.ip().to_string(),
        https.port(),
        "/rdr/pprdr.asp",
        "",
    )
    .await
    .context("asking the nexus")?;
    ensure!(nexus.status == 200, "nexus answered {}", nexus.status);
    let urls = nexus
        .header("PassportURLs")
        .context("nexus sent no PassportURLs header")?;
    let dalogin = urls
        .split(',')
        .find_map(|kv| kv.trim().strip_prefix("DALogin="))
        .with_context(|| format!("no DALogin in {urls:?}"))?;
    let url = format!("https://{dalogin}");
    let (host, port, path) = split_url(&url)?;
    let auth = format!(
        "Authorization: Passport1.4 OrgVerb=GET,OrgURL=http%3A%2F%2Fmessenger%2Emsn%2Ecom,\
         sign-in={},pwd={},lc=1033,id=507,tw=40,fs=1,ru=http%3A%2F%2Fmessenger%2Emsn%2Ecom,\
         ct=1062764229,kpp=1,kv=5,ver=2.1.0173.1,tpf=43f8a4c8ed940c04e3740be46c4d1619\r\n",
        percent_encode(email),
        percent_encode(password)
    );
    let resp = https_get(&tls, host, port, path, &auth)
        .await
        .with_context(|| format!("signing in at {url}"))?;
    if resp.status != 200 {
        return Ok(PassportReply::Refused {
            status: resp.status,
            www_authenticate: resp.header("WWW-Authenticate").unwrap_or("").to_owned(),
        });
    }
    let info = resp
        .header("Authentication-Info")
        .context("200 from login2.srf without Authentication-Info")?;
    ensure!(
        info.starts_with("Passport1.4 da-status=success,"),
        "unexpected Authentication-Info {info:?}"
    );
    let (_, rest) = info
        .split_once("from-PP='")
        .with_context(|| format!("no from-PP in {info:?}"))?;
    let ticket = rest
        .split('\'')
        .next()
        .filter(|t| t.starts_with("t=") && t.contains("&p="))
        .with_context(|| format!("malformed from-PP in {info:?}"))?;
    Ok(PassportReply::Ticket(ticket.to_owned()))
}

/// [`passport_login`] that must succeed; returns the ticket (`t=…&p=…`).
pub async fn passport_ticket(
    https: SocketAddr,
    ca: &Path,
    email: &str,
    password: &str,
) -> Result<String> {
    match passport_login(https, ca, email, password).await? {
        PassportReply::Ticket(t) => Ok(t),
        PassportReply::Refused {
            status,
            www_authenticate,
        } => bail!("Passport refused {email}: {status} {www_authenticate:?}"),
    }
}

/// A TLS connector that trusts only the certificates in the PEM file `ca`.
pub fn tls_connector(ca: &Path) -> Result<tokio_rustls::TlsConnector> {
    msgr_server::tls::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {ca:?}"))? {
        roots.add(cert.with_context(|| format!("reading {ca:?}"))?)?;
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// `https://host:port/path` → its parts.
fn split_url(url: &str) -> Result<(&str, u16, &str)> {
    let rest = url
        .strip_prefix("https://")
        .with_context(|| format!("not an https URL: {url:?}"))?;
    let (hostport, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse().with_context(|| format!("bad port in {url:?}"))?,
        ),
        None => (hostport, 443),
    };
    Ok((host, port, if path.is_empty() { "/" } else { path }))
}

/// Percent-encodes everything but unreserved characters, as Passport clients did.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An HTTP response head and body.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One `GET` over a fresh TLS connection (`Connection: close`, as the old clients did).
/// `extra_headers` are complete header lines, each ending in CRLF.
pub async fn https_get(
    tls: &tokio_rustls::TlsConnector,
    host: &str,
    port: u16,
    path: &str,
    extra_headers: &str,
) -> Result<HttpResponse> {
    let work = async {
        let tcp = TcpStream::connect((host, port))
            .await
            .with_context(|| format!("connecting to {host}:{port}"))?;
        let name = ServerName::try_from(host.to_owned())?;
        let stream = tls
            .connect(name, tcp)
            .await
            .context("TLS handshake (is the server's certificate trusted?)")?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra_headers}Connection: close\r\n\r\n"
        );
        http_exchange(stream, &request).await
    };
    tokio::time::timeout(TIMEOUT, work)
        .await
        .with_context(|| format!("GET https://{host}:{port}{path} timed out"))?
}

async fn http_exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    request: &str,
) -> Result<HttpResponse> {
    s.write_all(request.as_bytes()).await?;
    s.flush().await?;
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(resp) = parse_http_response(&data)? {
            return Ok(resp);
        }
        let n = s
            .read(&mut chunk)
            .await
            .context("reading the HTTP response")?;
        if n == 0 {
            bail!(
                "connection closed before a complete response: {:?}",
                String::from_utf8_lossy(&data)
            );
        }
        data.extend_from_slice(&chunk[..n]);
    }
}

/// A complete response in `data` (head plus `Content-Length` bytes of body), if there is one.
fn parse_http_response(data: &[u8]) -> Result<Option<HttpResponse>> {
    let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&data[..end]).context("response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Content-Length"))
        .map(|(_, v)| v.parse())
        .transpose()
        .context("bad Content-Length")?
        .unwrap_or(0);
    let body = &data[end + 4..];
    if body.len() < len {
        return Ok(None);
    }
    Ok(Some(HttpResponse {
        status,
        headers,
        body: body[..len].to_vec(),
    }))
}

/// The DKIM keys every test server of this process starts with: made once (the RSA key costs a
/// fraction of a second of CPU in a debug build, for each of hundreds of servers otherwise) and
/// written into each server's `DATA/dkim` before it starts, so a server, and `msgr mail dns` run on
/// its data directory, still find their keys where a real server keeps them.
fn seed_dkim_keys(dir: &Path) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    static KEYS: std::sync::OnceLock<Vec<(&'static str, Vec<u8>)>> = std::sync::OnceLock::new();
    let keys = match KEYS.get() {
        Some(keys) => keys,
        None => {
            let made = tempfile::tempdir().context("a directory for the test DKIM keys")?;
            msgr_mail::dkim::Signer::load_or_create(made.path())
                .context("making the test DKIM keys")?;
            let mut keys = Vec::new();
            for name in [msgr_mail::dkim::ED25519_FILE, msgr_mail::dkim::RSA_FILE] {
                let bytes = std::fs::read(made.path().join(name))
                    .with_context(|| format!("reading the test DKIM key {name}"))?;
                keys.push((name, bytes));
            }
            KEYS.get_or_init(|| keys)
        }
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, bytes) in keys {
        let path = dir.join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(bytes))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
