//! `msgr-load`: measures an MSNP server from the outside, the way real clients use it.
//!
//! It speaks raw MSNP over its own small code path (not the convenience client) so a
//! simulated user costs little, and it follows the nexus `PassportURLs` → `DALogin` like a
//! real client, so it works against any server implementing Passport 1.4.
//!
//! Scenario today: `login` (TWN logins per second, latency percentiles). More scenarios
//! (idle, presence, relay) are planned in the load-testing issue.

mod passport;

use anyhow::{bail, Context, Result};
use bytes::BytesMut;
use clap::{Parser, Subcommand};
use msgr_proto::frame::{Frame, FrameDecoder, Limits, Peer};
use msgr_proto::Dialect;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser)]
#[command(name = "msgr-load", about = "Load generator for MSNP servers")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// TWN logins (VER, CVR, USR I, nexus, login2.srf, USR S, CHL/QRY, OUT) in a loop.
    Login(LoginArgs),
}

#[derive(clap::Args)]
struct LoginArgs {
    /// MSNP address of the notification (or dispatch) server.
    #[arg(long, default_value = "127.0.0.1:1863")]
    msnp: String,
    /// Nexus URL (http:// or https://).
    #[arg(long, default_value = "https://127.0.0.1:8443/rdr/pprdr.asp")]
    nexus: String,
    /// PEM certificate to trust for HTTPS (e.g. msgr-data/tls-cert.pem).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Account name pattern; `{}` is replaced by the account number.
    #[arg(long, default_value = "user{}@example.com")]
    users: String,
    /// Number of distinct accounts (numbered from 0).
    #[arg(long, default_value_t = 100)]
    accounts: usize,
    #[arg(long, default_value = "password")]
    password: String,
    /// Total logins to perform.
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// Logins in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Dialect number (8–12).
    #[arg(long, default_value_t = 12)]
    dialect: u8,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Times of one login, split where the password hash happens.
#[derive(Debug, Clone, Copy)]
struct LoginTimes {
    total: Duration,
    /// login2.srf round trip (includes the server's password hash).
    passport: Duration,
    /// Everything on the MSNP connection (VER … QRY), which excludes the hash.
    msnp: Duration,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.scenario {
        Scenario::Login(args) => rt.block_on(login_scenario(args)),
    }
}

async fn login_scenario(args: LoginArgs) -> Result<()> {
    let dialect = Dialect::from_number(args.dialect)
        .filter(|d| *d >= Dialect::Msnp8)
        .context("--dialect must be 8 to 12")?;
    let http = Arc::new(passport::Client::new(args.ca.as_deref())?);
    let dalogin = http.dalogin(&args.nexus).await?;
    let args = Arc::new(args);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..args.concurrency.max(1) {
        let (args, http, dalogin, next) =
            (args.clone(), http.clone(), dalogin.clone(), next.clone());
        tasks.spawn(async move {
            let mut times = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= args.count {
                    break;
                }
                let email = args
                    .users
                    .replace("{}", &(i % args.accounts.max(1)).to_string());
                times.push(login_once(&args, &http, &dalogin, dialect, &email).await?);
            }
            anyhow::Ok(times)
        });
    }
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r??);
    }
    let elapsed = started.elapsed();
    report(&args, &all, elapsed);
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn report(args: &LoginArgs, times: &[LoginTimes], elapsed: Duration) {
    let rate = times.len() as f64 / elapsed.as_secs_f64();
    let mut rows = Vec::new();
    for (name, pick) in [
        (
            "total",
            (|t: &LoginTimes| t.total) as fn(&LoginTimes) -> Duration,
        ),
        ("passport", |t| t.passport),
        ("msnp", |t| t.msnp),
    ] {
        let mut v: Vec<Duration> = times.iter().map(pick).collect();
        v.sort();
        rows.push((
            name,
            percentile(&v, 0.5),
            percentile(&v, 0.9),
            percentile(&v, 0.99),
        ));
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    if args.json {
        let parts: Vec<String> = rows
            .iter()
            .map(|(n, a, b, c)| {
                format!(
                    "\"{n}\":{{\"p50_ms\":{:.3},\"p90_ms\":{:.3},\"p99_ms\":{:.3}}}",
                    ms(*a),
                    ms(*b),
                    ms(*c)
                )
            })
            .collect();
        println!(
            "{{\"scenario\":\"login\",\"logins\":{},\"concurrency\":{},\"seconds\":{:.3},\"logins_per_sec\":{:.1},{}}}",
            times.len(),
            args.concurrency,
            elapsed.as_secs_f64(),
            rate,
            parts.join(",")
        );
    } else {
        println!(
            "login: {} logins, concurrency {}, {:.2} s, {:.1} logins/s",
            times.len(),
            args.concurrency,
            elapsed.as_secs_f64(),
            rate
        );
        println!(
            "{:<10} {:>10} {:>10} {:>10}",
            "phase", "p50 ms", "p90 ms", "p99 ms"
        );
        for (n, a, b, c) in rows {
            println!("{n:<10} {:>10.3} {:>10.3} {:>10.3}", ms(a), ms(b), ms(c));
        }
    }
}

/// A raw MSNP connection: write lines, read frames.
struct Msnp {
    stream: TcpStream,
    buf: BytesMut,
    decoder: FrameDecoder,
}

impl Msnp {
    async fn connect(addr: &str) -> Result<Msnp> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Msnp {
            stream,
            buf: BytesMut::with_capacity(4096),
            decoder: FrameDecoder::new(Peer::Server, Limits::default()),
        })
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    async fn recv(&mut self) -> Result<Frame> {
        loop {
            if let Some(f) = self.decoder.decode(&mut self.buf)? {
                return Ok(f);
            }
            let n =
                tokio::time::timeout(Duration::from_secs(30), self.stream.read_buf(&mut self.buf))
                    .await
                    .context("timed out waiting for the server")??;
            if n == 0 {
                bail!("server closed the connection");
            }
        }
    }

    /// Reads frames until one with `command`, failing on an error line.
    async fn expect(&mut self, command: &str) -> Result<Frame> {
        loop {
            let f = self.recv().await?;
            if f.command() == command {
                return Ok(f);
            }
            if f.error_code().is_some() {
                bail!("server answered {:?}", f.line());
            }
        }
    }
}

async fn login_once(
    args: &LoginArgs,
    http: &passport::Client,
    dalogin: &str,
    dialect: Dialect,
    email: &str,
) -> Result<LoginTimes> {
    let start = Instant::now();
    let mut c = Msnp::connect(&args.msnp).await?;
    c.decoder.set_dialect(dialect);
    let hello = format!(
        "VER 1 {} CVR0\r\nCVR 2 0x0409 winnt 5.1 i386 MSNMSGR 7.0.0816 MSMSGS {email}\r\nUSR 3 TWN I {email}\r\n",
        dialect.token()
    );
    c.send(hello.as_bytes()).await?;
    c.expect("VER").await?;
    c.expect("CVR").await?;
    let usr = c.expect("USR").await?;
    let params = usr.params();
    let Some(twn) = params.get(2) else {
        bail!("unexpected {:?}", usr.line())
    };
    let msnp_part1 = start.elapsed();
    let p0 = Instant::now();
    let ticket = http.login(dalogin, email, &args.password, twn).await?;
    let passport = p0.elapsed();
    let m0 = Instant::now();
    c.send(format!("USR 4 TWN S {ticket}\r\n").as_bytes())
        .await?;
    c.expect("USR").await?;
    let chl = c.expect("CHL").await?;
    let challenge = chl
        .params()
        .first()
        .map(|s| s.to_string())
        .unwrap_or_default();
    let (id, key) = if dialect >= Dialect::Msnp11 {
        ("PROD0090YUAUV{2B", "YMM8C_H7KCQ2S_KL")
    } else {
        ("msmsgs@msnmsgr.com", "Q1P7W2E4J9R8U3S5")
    };
    let answer = if dialect >= Dialect::Msnp11 {
        msgr_proto::challenge::msnp11(&challenge, id, key)
    } else {
        msgr_proto::challenge::md5_concat(&challenge, key)
    };
    c.send(format!("QRY 5 {id} 32\r\n{answer}").as_bytes())
        .await?;
    c.expect("QRY").await?;
    c.send(b"OUT\r\n").await?;
    let msnp = msnp_part1 + m0.elapsed();
    Ok(LoginTimes {
        total: start.elapsed(),
        passport,
        msnp,
    })
}
