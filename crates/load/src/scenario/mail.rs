//! Mail scenarios, for msgr or any other SMTP/POP3 server (Postfix, Dovecot) side by side:
//!
//! - `smtp`: S concurrent senders, each on one connection, deliver N messages of a given size with `MAIL`,
//!   `RCPT`, `DATA` in a loop; messages/s and the time from the final `.` to the `250` (the server's queue or
//!   mailbox write, fsync included when the server does one).
//! - `pop3`: sessions that sign in, `STAT`, `RETR` every message and `QUIT` without deleting; messages/s and MB/s.
//! - `imap`: sessions that loop login, `SELECT INBOX`, fetch the headers of 100 messages, `APPEND` one,
//!   `SEARCH`, `LOGOUT` (issue 14's cycle); cycles/s and the time of each step. The Inbox is first filled to
//!   `--prefill` messages. `--login-once` leaves the sign-in (a password hash) out of the loop; `--fetch 0`
//!   fetches every message's headers (the large-mailbox figure).
//! - `mail-idle`: N connections that said hello (`EHLO`, or POP3's greeting), or logged in to IMAP, holding;
//!   the server's resident memory per session (`--server-tree`: the proportional memory of the server and
//!   all its child processes, for servers such as Dovecot that run a process per session).
//!
//! The clients are a few lines of plain TCP on purpose: what is measured is the server, and any server.

use super::idle::proc_stats;
use super::Outcome;
use crate::stats::Report;
use anyhow::{bail, Context, Result};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How long any one reply may take before the run is declared failed.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(clap::Args, Debug)]
pub struct SmtpArgs {
    /// SMTP server (msgr's MX listener, or Postfix's smtpd).
    #[arg(long, default_value = "127.0.0.1:2525")]
    pub addr: String,
    /// Concurrent senders, one connection each.
    #[arg(long, default_value_t = 20)]
    pub senders: usize,
    /// Messages in all (spread over the senders).
    #[arg(long, default_value_t = 2000)]
    pub messages: usize,
    /// Size of each message in bytes (headers included).
    #[arg(long, default_value_t = 4096)]
    pub size: usize,
    /// Recipient; `{}` is replaced by the sender's number, to spread over mailboxes.
    #[arg(long, default_value = "user0@example.com")]
    pub to: String,
    /// Reverse-path.
    #[arg(long, default_value = "load@sender.test")]
    pub from: String,
    /// A label for the report (e.g. "msgr" or "postfix").
    #[arg(long, default_value = "")]
    pub label: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct Pop3Args {
    #[arg(long, default_value = "127.0.0.1:2110")]
    pub addr: String,
    /// Account; `{}` is replaced by the session's number (each session needs its own maildrop: POP3 locks it).
    #[arg(long, default_value = "user{}@example.com")]
    pub user: String,
    #[arg(long, default_value = "password")]
    pub password: String,
    /// Concurrent sessions.
    #[arg(long, default_value_t = 1)]
    pub sessions: usize,
    /// Times each session downloads its whole maildrop.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    #[arg(long, default_value = "")]
    pub label: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct ImapArgs {
    /// IMAP server (msgr's `--imap` listener, or Dovecot's).
    #[arg(long, default_value = "127.0.0.1:2143")]
    pub addr: String,
    /// Account; `{}` is replaced by the session's number.
    #[arg(long, default_value = "user{}@example.com")]
    pub user: String,
    #[arg(long, default_value = "password")]
    pub password: String,
    /// Concurrent sessions, each looping the cycle on its own connection after connection.
    #[arg(long, default_value_t = 10)]
    pub sessions: usize,
    /// Cycles per session.
    #[arg(long, default_value_t = 20)]
    pub cycles: usize,
    /// Messages the Inbox is filled to before the run (the cycle fetches the headers of the last 100).
    #[arg(long, default_value_t = 100)]
    pub prefill: usize,
    /// Messages whose headers each cycle fetches (the last ones); 0 fetches every message's.
    #[arg(long, default_value_t = 100)]
    pub fetch: usize,
    /// Log in once per session and loop SELECT, FETCH, APPEND, SEARCH, CLOSE on that connection: the
    /// cycle without the sign-in's password hash, whose cost depends on the server's hashing settings.
    #[arg(long)]
    pub login_once: bool,
    #[arg(long, default_value = "")]
    pub label: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdleProtocol {
    Smtp,
    Pop3,
    /// Logged in (`--user`, `--password`), nothing selected.
    Imap,
}

#[derive(clap::Args, Debug)]
pub struct IdleArgs {
    #[arg(long, default_value = "127.0.0.1:2525")]
    pub addr: String,
    #[arg(long, value_enum, default_value_t = IdleProtocol::Smtp)]
    pub protocol: IdleProtocol,
    /// Connections to open and hold.
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// Seconds to hold them after the last one is up.
    #[arg(long, default_value_t = 3)]
    pub hold: u64,
    /// The server's pid, to read its resident memory from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Measure the server's process and all its descendants (Dovecot: master, login, auth and one `imap`
    /// process per session), as proportional set size (PSS: shared pages split between their processes),
    /// instead of the one process's resident set.
    #[arg(long)]
    pub server_tree: bool,
    /// IMAP only: the account each connection logs in to (`{}`: the connection's number).
    #[arg(long, default_value = "user0@example.com")]
    pub user: String,
    #[arg(long, default_value = "password")]
    pub password: String,
    #[arg(long)]
    pub json: bool,
}

/// A line-oriented connection to a mail server.
struct Client {
    rd: BufReader<tokio::net::tcp::OwnedReadHalf>,
    wr: tokio::net::tcp::OwnedWriteHalf,
    line: String,
}

impl Client {
    async fn connect(addr: &str) -> Result<Client> {
        let s = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        s.set_nodelay(true)?;
        let (r, w) = s.into_split();
        Ok(Client {
            rd: BufReader::new(r),
            wr: w,
            line: String::new(),
        })
    }

    async fn read_line(&mut self) -> Result<&str> {
        self.line.clear();
        let n = tokio::time::timeout(REPLY_TIMEOUT, self.rd.read_line(&mut self.line))
            .await
            .context("no reply in time")??;
        if n == 0 {
            bail!("the server closed the connection");
        }
        Ok(self.line.trim_end())
    }

    /// Reads one SMTP reply (all its lines) and checks its code class.
    async fn smtp_reply(&mut self, class: u8) -> Result<()> {
        loop {
            let line = self.read_line().await?;
            let code = line.as_bytes().first().copied().unwrap_or(b'?');
            if code != class {
                bail!("expected a {}xx reply, got {line:?}", class as char);
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(());
            }
        }
    }

    async fn pop3_ok(&mut self) -> Result<()> {
        let line = self.read_line().await?;
        if !line.starts_with("+OK") {
            bail!("expected +OK, got {line:?}");
        }
        Ok(())
    }

    /// Reads a POP3 multi-line body up to its lone `.`; returns the bytes read.
    async fn pop3_body(&mut self) -> Result<usize> {
        let mut bytes = 0;
        loop {
            let line = self.read_line().await?;
            if line == "." {
                return Ok(bytes);
            }
            bytes += line.len() + 2;
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.wr.write_all(bytes).await?;
        Ok(())
    }

    /// Sends `tag command` and reads up to the tagged reply, which must be `OK`. Returns the untagged
    /// lines' count and the last `EXISTS` seen. Literal data in responses is read as lines (the load
    /// messages are short CRLF lines), which is enough to find the tagged reply.
    async fn imap(&mut self, tag: &str, command: &str) -> Result<(usize, Option<usize>)> {
        self.send(format!("{tag} {command}\r\n").as_bytes()).await?;
        self.imap_until(tag).await
    }

    async fn imap_until(&mut self, tag: &str) -> Result<(usize, Option<usize>)> {
        let (mut lines, mut exists) = (0, None);
        let prefix = format!("{tag} ");
        loop {
            let line = self.read_line().await?;
            if let Some(size) = literal_size(line) {
                // The literal's bytes are skipped whole, whatever lines they hold; the response goes on
                // after them.
                self.skip_literal(size).await?;
                lines += 1;
                continue;
            }
            if let Some(rest) = line.strip_prefix(&prefix) {
                if !rest.starts_with("OK") {
                    bail!("{tag}: {line:?}");
                }
                return Ok((lines, exists));
            }
            if let Some(n) = line
                .strip_prefix("* ")
                .and_then(|l| l.strip_suffix(" EXISTS"))
                .and_then(|n| n.parse().ok())
            {
                exists = Some(n);
            }
            lines += 1;
        }
    }

    /// Skips `size` bytes of literal data (chunked through a small buffer: the size came from the server).
    async fn skip_literal(&mut self, mut size: u64) -> Result<()> {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 4096];
        while size > 0 {
            let want = buf.len().min(usize::try_from(size).unwrap_or(buf.len()));
            let n = tokio::time::timeout(REPLY_TIMEOUT, self.rd.read(&mut buf[..want]))
                .await
                .context("no literal data in time")??;
            if n == 0 {
                bail!("the server closed the connection inside a literal");
            }
            size -= n as u64;
        }
        Ok(())
    }

    /// `APPEND INBOX` with a synchronizing literal (every server has those).
    async fn imap_append(&mut self, tag: &str, message: &[u8]) -> Result<()> {
        self.send(format!("{tag} APPEND INBOX {{{}}}\r\n", message.len()).as_bytes())
            .await?;
        let go = self.read_line().await?;
        if !go.starts_with('+') {
            bail!("APPEND: expected a continuation, got {go:?}");
        }
        self.send(message).await?;
        self.send(b"\r\n").await?;
        self.imap_until(tag).await?;
        Ok(())
    }

    async fn imap_login(addr: &str, user: &str, password: &str) -> Result<Client> {
        let mut c = Client::connect(addr).await?;
        let greeting = c.read_line().await?;
        if !greeting.starts_with("* OK") {
            bail!("IMAP greeting {greeting:?}");
        }
        c.imap("L", &format!("LOGIN \"{user}\" \"{password}\""))
            .await
            .context("LOGIN")?;
        Ok(c)
    }
}

/// The size of the literal a response line announces at its end (`{123}`), if it does.
fn literal_size(line: &str) -> Option<u64> {
    let open = line.strip_suffix('}')?.rfind('{')?;
    line[open + 1..line.len() - 1].parse().ok()
}

/// A message of exactly `size` bytes (at least its headers), with CRLF lines no longer than 78 bytes.
pub fn message(from: &str, to: &str, n: usize, size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: load message {n}\r\nMessage-ID: <{n}.load@sender.test>\r\n\
         Date: Thu, 1 Jan 2026 00:00:00 +0000\r\n\r\n"
    )
    .into_bytes();
    while m.len() < size {
        let room = size - m.len();
        if room <= 2 {
            m.extend(std::iter::repeat_n(b'x', room));
            break;
        }
        let take = (room - 2).min(76);
        m.extend(std::iter::repeat_n(b'x', take));
        m.extend_from_slice(b"\r\n");
    }
    m
}

async fn smtp_sender(args: Arc<SmtpArgs>, i: usize, count: usize) -> Result<Vec<Duration>> {
    let to = args.to.replace("{}", &i.to_string());
    let mut c = Client::connect(&args.addr).await?;
    c.smtp_reply(b'2').await.context("greeting")?;
    c.send(b"EHLO load.test\r\n").await?;
    c.smtp_reply(b'2').await.context("EHLO")?;
    let mut latencies = Vec::with_capacity(count);
    for n in 0..count {
        let mut data = message(&args.from, &to, n, args.size);
        data.extend_from_slice(b".\r\n");
        // The envelope is pipelined (RFC 2920) the way real MTAs send it.
        let envelope = format!("MAIL FROM:<{}>\r\nRCPT TO:<{to}>\r\nDATA\r\n", args.from);
        c.send(envelope.as_bytes()).await?;
        c.smtp_reply(b'2').await.context("MAIL")?;
        c.smtp_reply(b'2').await.context("RCPT")?;
        c.smtp_reply(b'3').await.context("DATA")?;
        c.send(&data).await?;
        let sent = Instant::now();
        c.smtp_reply(b'2').await.context("end of data")?;
        latencies.push(sent.elapsed());
    }
    c.send(b"QUIT\r\n").await?;
    let _ = c.smtp_reply(b'2').await;
    Ok(latencies)
}

pub async fn smtp(args: SmtpArgs) -> Outcome {
    let json = args.json;
    let args = Arc::new(args);
    let senders = args.senders.max(1);
    let started = Instant::now();
    let mut joins = tokio::task::JoinSet::new();
    for i in 0..senders {
        let count = args.messages / senders + usize::from(i < args.messages % senders);
        joins.spawn(smtp_sender(args.clone(), i, count));
    }
    let mut latencies = Vec::with_capacity(args.messages);
    let mut failed = 0usize;
    let mut first_error = None;
    while let Some(r) = joins.join_next().await {
        match r.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok(l) => latencies.extend(l),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    let elapsed = started.elapsed();
    let mut report = Report::new("smtp");
    if !args.label.is_empty() {
        report.figure("server", args.label.as_str());
    }
    report
        .figure("senders", senders)
        .figure("message_bytes", args.size)
        .figure("accepted", latencies.len())
        .figure("failed_senders", failed)
        .figure("seconds", elapsed.as_secs_f64())
        .figure(
            "messages_per_sec",
            latencies.len() as f64 / elapsed.as_secs_f64().max(1e-9),
        );
    if let Some(e) = first_error {
        report.figure("first_error", e);
    }
    report.latency("dot_to_250", latencies);
    Ok((report, json))
}

async fn pop3_session(args: Arc<Pop3Args>, i: usize) -> Result<(usize, usize)> {
    let user = args.user.replace("{}", &i.to_string());
    let (mut messages, mut bytes) = (0, 0);
    for _ in 0..args.rounds.max(1) {
        let mut c = Client::connect(&args.addr).await?;
        c.pop3_ok().await.context("greeting")?;
        c.send(format!("USER {user}\r\n").as_bytes()).await?;
        c.pop3_ok().await.context("USER")?;
        c.send(format!("PASS {}\r\n", args.password).as_bytes())
            .await?;
        c.pop3_ok().await.context("PASS")?;
        c.send(b"STAT\r\n").await?;
        let stat = c.read_line().await?.to_owned();
        let count: usize = stat
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("STAT answered {stat:?}"))?;
        // Pipelined, as fetchmail and mpop do: every RETR at once, then every answer.
        let mut all = String::new();
        for n in 1..=count {
            all.push_str(&format!("RETR {n}\r\n"));
        }
        c.send(all.as_bytes()).await?;
        for _ in 1..=count {
            c.pop3_ok().await.context("RETR")?;
            bytes += c.pop3_body().await?;
            messages += 1;
        }
        c.send(b"QUIT\r\n").await?;
        c.pop3_ok().await.context("QUIT")?;
    }
    Ok((messages, bytes))
}

pub async fn pop3(args: Pop3Args) -> Outcome {
    let json = args.json;
    let args = Arc::new(args);
    let started = Instant::now();
    let mut joins = tokio::task::JoinSet::new();
    for i in 0..args.sessions.max(1) {
        joins.spawn(pop3_session(args.clone(), i));
    }
    let (mut messages, mut bytes, mut failed) = (0usize, 0usize, 0usize);
    let mut first_error = None;
    while let Some(r) = joins.join_next().await {
        match r.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok((m, b)) => {
                messages += m;
                bytes += b;
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let mut report = Report::new("pop3");
    if !args.label.is_empty() {
        report.figure("server", args.label.as_str());
    }
    report
        .figure("sessions", args.sessions)
        .figure("messages", messages)
        .figure("failed_sessions", failed)
        .figure("seconds", secs)
        .figure("messages_per_sec", messages as f64 / secs)
        .figure("mb_per_sec", bytes as f64 / secs / 1e6);
    if let Some(e) = first_error {
        report.figure("first_error", e);
    }
    Ok((report, json))
}

/// The memory of process `pid` and all its descendants, in KB: the sum of their proportional set sizes
/// (each shared page divided among the processes that map it), and the number of processes.
fn tree_pss_kb(pid: u32) -> Result<(u64, usize)> {
    // Parent of every process, from /proc/N/stat (field 4, after the parenthesised command name).
    let mut parent = Vec::new();
    for entry in std::fs::read_dir("/proc").context("listing /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(n) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{n}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parent.push((n, ppid));
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(parent.iter().filter(|&&(_, pp)| pp == p).map(|&(n, _)| n));
        i += 1;
    }
    let mut pss = 0;
    for p in &tree {
        // A process that ended meanwhile counts nothing.
        let Ok(rollup) = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")) else {
            continue;
        };
        pss += rollup
            .lines()
            .find_map(|l| l.strip_prefix("Pss:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok((pss, tree.len()))
}

pub async fn idle(args: IdleArgs) -> Outcome {
    let pid = args.server_pid.map(|p| p.to_string());
    let tree = match args.server_pid {
        Some(p) if args.server_tree => Some(p),
        _ => None,
    };
    let tree_before = tree.map(tree_pss_kb).transpose()?;
    let before = match &pid {
        Some(p) if tree.is_none() => Some(proc_stats(p)?),
        _ => None,
    };
    let mut held = Vec::with_capacity(args.count);
    let mut failed = 0usize;
    let mut first_error = None;
    for _ in 0..args.count {
        let opened = async {
            let mut c = Client::connect(&args.addr).await?;
            match args.protocol {
                IdleProtocol::Smtp => {
                    c.smtp_reply(b'2').await?;
                    c.send(b"EHLO idle.test\r\n").await?;
                    c.smtp_reply(b'2').await?;
                }
                IdleProtocol::Pop3 => c.pop3_ok().await?,
                IdleProtocol::Imap => {
                    let greeting = c.read_line().await?;
                    if !greeting.starts_with("* OK") {
                        bail!("IMAP greeting {greeting:?}");
                    }
                    let user = args.user.replace("{}", &held.len().to_string());
                    c.imap("L", &format!("LOGIN \"{user}\" \"{}\"", args.password))
                        .await
                        .context("LOGIN")?;
                }
            }
            anyhow::Ok(c)
        };
        match opened.await {
            Ok(c) => held.push(c),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    let after = match &pid {
        Some(p) if tree.is_none() => Some(proc_stats(p)?),
        _ => None,
    };
    let tree_after = tree.map(tree_pss_kb).transpose()?;
    let mut report = Report::new("mail-idle");
    report
        .figure(
            "protocol",
            match args.protocol {
                IdleProtocol::Smtp => "smtp",
                IdleProtocol::Pop3 => "pop3",
                IdleProtocol::Imap => "imap",
            },
        )
        .figure("sessions", held.len())
        .figure("failed", failed);
    if let (Some(b), Some(a)) = (before, after) {
        let per = (a.rss_kb as f64 - b.rss_kb as f64) * 1024.0 / held.len().max(1) as f64;
        report
            .figure("rss_before_kb", b.rss_kb)
            .figure("rss_after_kb", a.rss_kb)
            .figure("bytes_per_session", per);
    }
    if let (Some((b, procs_before)), Some((a, procs_after))) = (tree_before, tree_after) {
        let per = (a as f64 - b as f64) * 1024.0 / held.len().max(1) as f64;
        report
            .figure("processes_before", procs_before)
            .figure("processes_after", procs_after)
            .figure("pss_before_kb", b)
            .figure("pss_after_kb", a)
            .figure("bytes_per_session", per);
    }
    if let Some(e) = first_error {
        report.figure("first_error", e);
    }
    drop(held);
    Ok((report, args.json))
}

/// Times of one session's cycles, step by step.
#[derive(Default)]
struct ImapTimes {
    cycles: usize,
    login: Vec<Duration>,
    select: Vec<Duration>,
    fetch: Vec<Duration>,
    append: Vec<Duration>,
    search: Vec<Duration>,
}

async fn imap_session(args: Arc<ImapArgs>, i: usize) -> Result<ImapTimes> {
    let user = args.user.replace("{}", &i.to_string());
    let mut t = ImapTimes::default();
    let mut kept = None;
    for n in 0..args.cycles {
        let mut c = match kept.take() {
            Some(c) => c,
            None => {
                let step = Instant::now();
                let c = Client::imap_login(&args.addr, &user, &args.password).await?;
                t.login.push(step.elapsed());
                c
            }
        };
        let step = Instant::now();
        let (_, exists) = c.imap("S", "SELECT INBOX").await.context("SELECT")?;
        t.select.push(step.elapsed());
        let exists = exists.unwrap_or(0).max(1);
        let first = match args.fetch {
            0 => 1,
            k => exists.saturating_sub(k - 1).max(1),
        };
        let step = Instant::now();
        c.imap(
            "F",
            &format!("FETCH {first}:{exists} (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE MESSAGE-ID)])"),
        )
        .await
        .context("FETCH")?;
        t.fetch.push(step.elapsed());
        let step = Instant::now();
        let m = message("load@sender.test", &user, n, 2048);
        c.imap_append("A", &m).await.context("APPEND")?;
        t.append.push(step.elapsed());
        let step = Instant::now();
        c.imap("R", "SEARCH UNSEEN SUBJECT \"load message\"")
            .await
            .context("SEARCH")?;
        t.search.push(step.elapsed());
        if args.login_once && n + 1 < args.cycles {
            // CLOSE (RFC 3501; nothing is \Deleted, so it expunges nothing) ends the cycle on the connection.
            c.imap("C", "CLOSE").await.context("CLOSE")?;
            kept = Some(c);
        } else {
            c.imap("Q", "LOGOUT").await.context("LOGOUT")?;
        }
        t.cycles += 1;
    }
    Ok(t)
}

/// Fills session `i`'s Inbox to `--prefill` messages.
async fn imap_prefill(args: Arc<ImapArgs>, i: usize) -> Result<()> {
    let user = args.user.replace("{}", &i.to_string());
    let mut c = Client::imap_login(&args.addr, &user, &args.password).await?;
    let (_, exists) = c.imap("P1", "SELECT INBOX").await?;
    for n in exists.unwrap_or(0)..args.prefill {
        let m = message("load@sender.test", &user, n, 2048);
        c.imap_append("P2", &m).await.context("prefill APPEND")?;
    }
    c.imap("P3", "LOGOUT").await?;
    Ok(())
}

pub async fn imap(args: ImapArgs) -> Outcome {
    let json = args.json;
    let args = Arc::new(args);
    let mut joins = tokio::task::JoinSet::new();
    for i in 0..args.sessions.max(1) {
        joins.spawn(imap_prefill(args.clone(), i));
    }
    while let Some(r) = joins.join_next().await {
        r??;
    }
    let mut joins = tokio::task::JoinSet::new();
    let started = Instant::now();
    for i in 0..args.sessions.max(1) {
        joins.spawn(imap_session(args.clone(), i));
    }
    let mut all = ImapTimes::default();
    let (mut failed, mut first_error) = (0usize, None);
    while let Some(r) = joins.join_next().await {
        match r.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok(t) => {
                all.cycles += t.cycles;
                all.login.extend(t.login);
                all.select.extend(t.select);
                all.fetch.extend(t.fetch);
                all.append.extend(t.append);
                all.search.extend(t.search);
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let mut report = Report::new("imap");
    if !args.label.is_empty() {
        report.figure("server", args.label.as_str());
    }
    report
        .figure("sessions", args.sessions)
        .figure(
            "login",
            if args.login_once {
                "once per session"
            } else {
                "every cycle"
            },
        )
        .figure("cycles", all.cycles)
        .figure("failed_sessions", failed)
        .figure("seconds", secs)
        .figure("cycles_per_sec", all.cycles as f64 / secs);
    if let Some(e) = first_error {
        report.figure("first_error", e);
    }
    report.latency("login", all.login);
    report.latency("select", all.select);
    report.latency(
        if args.fetch == 0 {
            "fetch_all_headers"
        } else {
            "fetch_headers"
        },
        all.fetch,
    );
    report.latency("append", all.append);
    report.latency("search", all.search);
    Ok((report, json))
}

#[cfg(test)]
mod tests {
    use super::{literal_size, message};

    #[test]
    fn literal_sizes_are_read_from_the_end_of_response_lines() {
        assert_eq!(literal_size("* 1 FETCH (BODY[HEADER] {342}"), Some(342));
        assert_eq!(literal_size("* 1 FETCH (BINARY[1] ~{7}"), Some(7));
        assert_eq!(literal_size("* 1 FETCH (FLAGS (\\Seen))"), None);
        assert_eq!(literal_size("* OK {x}"), None);
        assert_eq!(literal_size("}"), None);
    }

    #[test]
    fn messages_have_the_asked_size_and_short_lines() {
        for size in [0, 200, 4096, 4097, 65_536] {
            let m = message("a@b.test", "c@d.test", 7, size);
            assert!(m.len() >= size.min(m.len()));
            if size > 200 {
                assert_eq!(m.len(), size);
            }
            assert!(m.split(|&b| b == b'\n').all(|l| l.len() <= 80));
            assert!(!m.windows(3).any(|w| w == b"\n.\r"));
        }
    }
}
