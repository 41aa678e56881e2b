//! `mail-notify`: how fast new mail reaches Messenger. N users sign in over MSNP and stay online;
//! S SMTP senders deliver M messages a second in all to them, round-robin, through the MX; for each
//! message the time from reading SMTP's `250` (the delivery is durable) to the recipient's MSNP
//! socket yielding the `text/x-msmsgsemailnotification` that announces it (issue 15 asks p99 ≤ 50 ms
//! under a burst).
//!
//! Each message's subject carries its number (`mn-<n>`), which the notice repeats, so every notice
//! is matched to its own `250`. Senders and users live in this one process: both instants come
//! from the same clock. A notice can be read before its sender reads the `250` (the server writes
//! both at about the same moment); such a message counts as 0 ms and is counted apart
//! (`notice_before_250`).
//!
//! Needs a server hosting mail for the users (`--users`, `--password` as for the other scenarios)
//! with the MX reachable at `--smtp`. With the spam filter on, some mail goes to Junk (still
//! announced, as new mail in another folder). Where the senders' domain has no DNS (any test
//! machine), run msgr with `[mail] sender_auth = false`: otherwise every message waits for SPF and
//! DKIM lookups to time out and the senders crawl.

use super::presence::Stamps;
use super::{bring_online, Outcome};
use crate::session::{Ctx, Handler, Target};
use crate::stats::Report;
use anyhow::{bail, Context, Result};
use msgr_proto::frame::Frame;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How long one SMTP reply may take before the run fails.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub target: Target,
    /// Online users (recipients).
    #[arg(long, default_value_t = 20)]
    pub count: usize,
    /// The MX (msgr's `--smtp` listener).
    #[arg(long, default_value = "127.0.0.1:2525")]
    pub smtp: String,
    /// Concurrent SMTP senders, one connection each.
    #[arg(long, default_value_t = 8)]
    pub senders: usize,
    /// Messages a second, over all senders (0: as fast as the server answers).
    #[arg(long, default_value_t = 100)]
    pub rate: u32,
    /// Messages in all.
    #[arg(long, default_value_t = 2000)]
    pub messages: usize,
    /// Seconds to wait for the last notices after the last `250`.
    #[arg(long, default_value_t = 5)]
    pub settle: u64,
    /// Reverse-path of the messages.
    #[arg(long, default_value = "load@sender.test")]
    pub from: String,
}

/// Sees the new-mail notices of one user.
struct Inbox {
    notices: Arc<Stamps>,
    seen: usize,
}

/// The message number in a new-mail notice's `Subject: mn-<n>`.
fn notice_number(f: &Frame) -> Option<usize> {
    if f.command() != "MSG" {
        return None;
    }
    let text = std::str::from_utf8(f.payload()?).ok()?;
    if !text.contains("text/x-msmsgsemailnotification") {
        return None;
    }
    let rest = text.split("\r\nSubject: mn-").nth(1)?;
    let digits: &str = rest.split(|c: char| !c.is_ascii_digit()).next()?;
    digits.parse().ok()
}

impl Handler for Inbox {
    fn frame(&mut self, f: &Frame, now: Instant) {
        if let Some(n) = notice_number(f) {
            self.notices.set(n, now);
            self.seen += 1;
        }
    }
}

async fn reply(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Result<String> {
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(REPLY_TIMEOUT, r.read_line(&mut line))
            .await
            .context("timed out waiting for the SMTP server")??;
        if n == 0 {
            bail!("the SMTP server closed the connection");
        }
        if line.len() < 4 || line.as_bytes()[3] == b' ' {
            return Ok(line);
        }
    }
}

/// One sender: messages `me`, `me + senders`, … each at its slot of the schedule (`start` plus
/// its number over the rate), pipelining `MAIL`, `RCPT`, `DATA` and stamping the final `250`.
#[allow(clippy::too_many_arguments)]
async fn sender(
    addr: std::net::SocketAddr,
    me: usize,
    senders: usize,
    total: usize,
    rate: u32,
    start: tokio::time::Instant,
    recipients: Arc<Vec<String>>,
    from: String,
    acks: Arc<Stamps>,
) -> Result<usize> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to the MX at {addr}"))?;
    stream.set_nodelay(true)?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let greeting = reply(&mut r).await?;
    if !greeting.starts_with("220") {
        bail!("MX greeting {greeting:?}");
    }
    w.write_all(b"EHLO load.test\r\n").await?;
    let ehlo = reply(&mut r).await?;
    if !ehlo.starts_with("250") {
        bail!("EHLO answered {ehlo:?}");
    }
    let mut sent = 0;
    for n in (me..total).step_by(senders.max(1)) {
        if rate > 0 {
            let at = start + Duration::from_secs_f64(n as f64 / f64::from(rate));
            tokio::time::sleep_until(at).await;
        }
        let to = &recipients[n % recipients.len()];
        let head = format!("MAIL FROM:<{from}>\r\nRCPT TO:<{to}>\r\nDATA\r\n");
        w.write_all(head.as_bytes()).await?;
        for (what, code) in [("MAIL", "250"), ("RCPT", "250"), ("DATA", "354")] {
            let got = reply(&mut r).await?;
            if !got.starts_with(code) {
                bail!("{what} for message {n} answered {got:?}");
            }
        }
        let body = format!(
            "From: Load <{from}>\r\nTo: <{to}>\r\nSubject: mn-{n}\r\n\
             Message-ID: <mn-{n}@load.test>\r\n\r\nmessage {n}\r\n.\r\n"
        );
        w.write_all(body.as_bytes()).await?;
        let got = reply(&mut r).await?;
        let now = Instant::now();
        if !got.starts_with("250") {
            bail!("message {n} answered {got:?}");
        }
        acks.set(n, now);
        sent += 1;
    }
    let _ = w.write_all(b"QUIT\r\n").await;
    Ok(sent)
}

pub async fn run(a: Args) -> Outcome {
    if a.count == 0 || a.messages == 0 {
        bail!("--count and --messages must be positive");
    }
    let ctx = Arc::new(Ctx::new(&a.target).await?);
    let epoch = Instant::now();
    let notices = Arc::new(Stamps::new(epoch, a.messages));
    let acks = Arc::new(Stamps::new(epoch, a.messages));
    let online = bring_online(&ctx, a.count, None, |_| Inbox {
        notices: notices.clone(),
        seen: 0,
    })
    .await;
    if online.failed > 0 {
        bail!(
            "{} of {} logins failed; first: {}",
            online.failed,
            a.count,
            online.first_error.as_deref().unwrap_or("?")
        );
    }
    // Sign-in notices (initial counts) are behind us once every user is online; a short pause
    // lets the last profile and initial notice pass before the clock starts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let recipients: Arc<Vec<String>> = Arc::new((0..a.count).map(|i| ctx.email(i)).collect());
    let addr = crate::conn::resolve(&a.smtp).await?;
    let start = tokio::time::Instant::now();
    let began = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for me in 0..a.senders.max(1) {
        senders.spawn(sender(
            addr,
            me,
            a.senders.max(1),
            a.messages,
            a.rate,
            start,
            recipients.clone(),
            a.from.clone(),
            acks.clone(),
        ));
    }
    let mut acked = 0;
    while let Some(r) = senders.join_next().await {
        acked += r??;
    }
    let sending = began.elapsed();
    // `since(i, far)` is `far - t` for a stamped `t`: the difference of two such values is the
    // time between the two stamps.
    let far = Instant::now() + Duration::from_secs(24 * 3600);
    // Wait for the stragglers (bounded): every acknowledged message should be announced.
    let deadline = Instant::now() + Duration::from_secs(a.settle);
    let unannounced = || {
        (0..a.messages)
            .filter(|&i| acks.since(i, far).is_some() && notices.since(i, far).is_none())
            .count()
    };
    while Instant::now() < deadline && unannounced() > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ended = online.ended();
    let finished = online.finish().await;
    let mut latencies = Vec::with_capacity(acked);
    let (mut missing, mut early) = (0usize, 0usize);
    for i in 0..a.messages {
        let Some(ack) = acks.since(i, far) else {
            continue;
        };
        match notices.since(i, far) {
            None => missing += 1,
            // Read before the sender read its `250`.
            Some(notice) if notice > ack => {
                early += 1;
                latencies.push(Duration::ZERO);
            }
            Some(notice) => latencies.push(ack - notice),
        }
    }
    let seen: usize = finished.handlers.iter().map(|h| h.seen).sum();
    let mut report = Report::new("mail-notify");
    report
        .figure("users", a.count)
        .figure("senders", a.senders.max(1))
        .figure("messages_acknowledged", acked)
        .figure("notices_received", seen)
        .figure("missing_notices", missing)
        .figure("notice_before_250", early)
        .figure(
            "messages_per_second",
            acked as f64 / sending.as_secs_f64().max(1e-9),
        )
        .figure("offered_rate", u64::from(a.rate))
        .figure("users_dropped", ended.max(finished.dropped))
        .latency("smtp_250_to_notice", latencies);
    if let Some(e) = finished.first_error {
        report.figure("first_error", e);
    }
    Ok((report, a.target.json))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use msgr_proto::frame::{FrameDecoder, Limits, Peer};
    use msgr_proto::Dialect;

    fn frame(bytes: &[u8]) -> Frame {
        let mut d = FrameDecoder::new(Peer::Server, Limits::default());
        d.set_dialect(Dialect::Msnp12);
        let mut buf = BytesMut::from(bytes);
        d.decode(&mut buf).ok().flatten().expect("a whole frame")
    }

    #[test]
    fn notices_are_matched_by_the_number_in_their_subject() {
        let payload = "MIME-Version: 1.0\r\nContent-Type: text/x-msmsgsemailnotification; charset=UTF-8\r\n\r\n\
            From: Load\r\nMessage-URL: /mail/message?folder=INBOX&uid=7\r\nPost-URL: https://h/mail/login\r\n\
            Subject: mn-1234\r\nDest-Folder: ACTIVE\r\nFrom-Addr: load@sender.test\r\nid: 2\r\n";
        let line = format!("MSG Hotmail Hotmail {}\r\n{payload}", payload.len());
        assert_eq!(notice_number(&frame(line.as_bytes())), Some(1234));
        let other = payload.replace("emailnotification", "activemailnotification");
        let line = format!("MSG Hotmail Hotmail {}\r\n{other}", other.len());
        assert_eq!(notice_number(&frame(line.as_bytes())), None);
    }
}
