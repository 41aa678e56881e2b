//! What every scenario shares: the target, logging a user in, and keeping a user online.

use crate::conn::{resolve, Conn, Sources};
use crate::{msnp, passport};
use anyhow::{bail, Context, Result};
use msgr_proto::frame::Frame;
use msgr_proto::Dialect;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// Real clients sent `PNG` about every 50 s; servers drop silent connections.
const PING_EVERY: Duration = Duration::from_secs(45);

/// Where the server is and how its users log in (shared by every scenario).
#[derive(clap::Args, Clone, Debug)]
pub struct Target {
    /// MSNP address of the notification (or dispatch) server.
    #[arg(long, default_value = "127.0.0.1:1863")]
    pub msnp: String,
    /// Nexus URL (http:// or https://); its PassportURLs DALogin is followed.
    #[arg(long, default_value = "https://127.0.0.1:8443/rdr/pprdr.asp")]
    pub nexus: String,
    /// PEM certificate to trust for HTTPS (e.g. msgr-data/tls-cert.pem).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Account name pattern; `{}` is replaced by the account number.
    #[arg(long, default_value = "user{}@example.com")]
    pub users: String,
    /// First account number this process uses (to split a run over several processes).
    #[arg(long, default_value_t = 0)]
    pub first: usize,
    #[arg(long, default_value = "password")]
    pub password: String,
    /// Dialect number (8–12).
    #[arg(long, default_value_t = 12)]
    pub dialect: u8,
    /// Logins in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Bind MSNP connections to 127.0.0.1 … 127.0.0.N round-robin (0: the OS chooses).
    #[arg(long, default_value_t = 0)]
    pub sources: u8,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub struct Ctx {
    pub addr: SocketAddr,
    pub http: passport::Client,
    pub dalogin: String,
    pub dialect: Dialect,
    pub sources: Sources,
    pub target: Target,
}

/// Times of one login, split where the password hash happens.
#[derive(Debug, Clone, Copy)]
pub struct LoginTimes {
    pub total: Duration,
    /// login2.srf round trip (includes the server's password hash).
    pub passport: Duration,
    /// Everything on the MSNP connection (VER … QRY), which excludes the hash.
    pub msnp: Duration,
}

impl Ctx {
    pub async fn new(target: &Target) -> Result<Ctx> {
        let dialect = Dialect::from_number(target.dialect)
            .filter(|d| *d >= Dialect::Msnp8)
            .context("--dialect must be 8 to 12")?;
        let http = passport::Client::new(target.ca.as_deref())?;
        let dalogin = http.dalogin(&target.nexus).await?;
        Ok(Ctx {
            addr: resolve(&target.msnp).await?,
            http,
            dalogin,
            dialect,
            sources: Sources::loopback(target.sources),
            target: target.clone(),
        })
    }

    /// The e-mail of the `i`-th user of this run (counted from `--first`).
    pub fn email(&self, i: usize) -> String {
        user_email(&self.target.users, self.target.first + i)
    }

    /// A full TWN login (VER, CVR, USR I, Passport, USR S); the connection is left signed in,
    /// not yet online. A dispatch server's `XFR … NS` is followed. It returns at `USR OK`: a
    /// `CHL` is the server's to send or not, now or later, and the connection's reader answers
    /// it whenever it comes (servers that send none, or never answer the `QRY`, are measured
    /// all the same).
    pub async fn login(&self, email: &str) -> Result<(Conn, LoginTimes)> {
        let start = Instant::now();
        let mut addr = self.addr;
        let mut referrals = 0;
        let (mut c, twn) = loop {
            let mut c = Conn::connect(addr, &self.sources).await?;
            c.set_dialect(self.dialect);
            c.send(msnp::hello(self.dialect, email).as_bytes()).await?;
            let reply = c.rd.reply(3).await?;
            if let Some(ns) = msnp::xfr_ns(&reply) {
                referrals += 1;
                if referrals > 3 {
                    bail!(
                        "more than 3 XFR NS referrals in a row (last: {:?})",
                        reply.line()
                    );
                }
                addr = resolve(&ns).await?;
                continue;
            }
            match msnp::usr_twn_policy(&reply) {
                Some(twn) => break (c, twn.to_owned()),
                None => bail!("USR TWN I answered {:?}", reply.line()),
            }
        };
        let msnp_part1 = start.elapsed();
        let p0 = Instant::now();
        let ticket = self
            .http
            .login(&self.dalogin, email, &self.target.password, &twn)
            .await
            .with_context(|| format!("Passport login of {email}"))?;
        let passport = p0.elapsed();
        let m0 = Instant::now();
        c.send(format!("USR 4 TWN S {ticket}\r\n").as_bytes())
            .await?;
        let ok = c.rd.reply(4).await?;
        if ok.command() != "USR" || ok.params().first() != Some(&"OK") {
            bail!("USR TWN S answered {:?}", ok.line());
        }
        c.next_trid = 5;
        Ok((
            c,
            LoginTimes {
                total: start.elapsed(),
                passport,
                msnp: msnp_part1 + m0.elapsed(),
            },
        ))
    }
}

pub fn user_email(pattern: &str, n: usize) -> String {
    pattern.replace("{}", &n.to_string())
}

/// What the driver asks an online user to do.
pub enum Cmd {
    /// `CHG t status caps`; `stamp` is called with the moment it is written.
    Chg {
        status: &'static str,
        caps: u32,
        stamp: Option<Box<dyn FnOnce(Instant) + Send>>,
    },
}

/// Sees every frame an online user receives (except `CHL`, answered by the reader).
pub trait Handler: Send + 'static {
    fn frame(&mut self, f: &Frame, now: Instant);
}

/// Keeps a logged-in user's connection alive: pings, carries out the driver's commands, and
/// hands everything it reads to `handler` (a `CHL` is answered by the reader, whenever it
/// comes). Ends (with `OUT`) when the command channel closes; returns the handler.
pub async fn online<H: Handler>(
    conn: Conn,
    mut cmds: mpsc::Receiver<Cmd>,
    mut handler: H,
) -> Result<H> {
    let Conn {
        mut rd,
        mut wr,
        mut next_trid,
    } = conn;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    loop {
        tokio::select! {
            cmd = cmds.recv() => match cmd {
                None => {
                    let _ = rd.finish_answer().await;
                    let _ = wr.write_all(b"OUT\r\n").await;
                    return Ok(handler);
                }
                Some(Cmd::Chg { status, caps, stamp }) => {
                    let line = msnp::chg(next_trid, status, caps);
                    next_trid += 1;
                    rd.finish_answer().await?;
                    if let Some(stamp) = stamp {
                        stamp(Instant::now());
                    }
                    wr.write_all(line.as_bytes()).await?;
                }
            },
            f = rd.recv_forever() => {
                let f = f?;
                if f.command() == "OUT" {
                    bail!("server signed us out: {:?}", f.line());
                }
                handler.frame(&f, Instant::now());
            }
            _ = ping.tick() => {
                rd.finish_answer().await?;
                wr.write_all(b"PNG\r\n").await?;
            }
        }
    }
}

/// A signed-in connection kept alive by [`online`] in its own task, for a scenario that does
/// not use it otherwise (it answers `CHL` and pings); dropping it signs the user out.
pub struct Kept {
    _cmds: mpsc::Sender<Cmd>,
    task: tokio::task::JoinHandle<Result<Ignore>>,
}

/// A [`Handler`] that looks at nothing.
pub struct Ignore;

impl Handler for Ignore {
    fn frame(&mut self, _f: &Frame, _now: Instant) {}
}

impl Kept {
    pub fn start(conn: Conn) -> Kept {
        let (tx, rx) = mpsc::channel(1);
        Kept {
            _cmds: tx,
            task: tokio::spawn(online(conn, rx, Ignore)),
        }
    }

    /// Signs the user out and waits (briefly) for it; an error means the server had already
    /// dropped the connection.
    pub async fn finish(self) -> Result<()> {
        let Kept { _cmds, task } = self;
        drop(_cmds);
        match tokio::time::timeout(Duration::from_secs(5), task).await {
            Ok(r) => r?.map(|_| ()),
            Err(_) => bail!("a kept connection did not end"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_pattern() {
        assert_eq!(user_email("user{}@example.com", 17), "user17@example.com");
        assert_eq!(user_email("fixed@example.com", 17), "fixed@example.com");
    }
}
