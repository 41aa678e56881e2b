//! `relay`: P switchboard pairs. Caller: `XFR SB` on its NS, `USR` on the switchboard, `CAL`;
//! the callee gets `RNG` on its NS and `ANS`wers. Then the caller keeps `--window` messages
//! (`MSG t A`) in flight, the callee echoes each one, and the caller times each round trip.
//!
//! With `--baseline`, the same clients then run the same pattern (pairs, window, duration,
//! messages) through a bare in-process byte forwarder (see [`crate::forward`]) and the
//! report gives both rates and their ratio. The comparison is what it is: through the
//! server each message is parsed, checked and re-framed (`MSG email nick len`) and, in ack
//! mode `A`, answered with an `ACK` to its sender; through the forwarder the bytes go
//! through unchanged and nobody acknowledges anything.

use super::Outcome;
use crate::conn::{resolve, Conn, Reader};
use crate::forward::Forwarder;
use crate::msnp::{self, AckMode};
use crate::session::{Ctx, Kept, Target};
use crate::stats::Report;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Semaphore;

/// How long the switchboard handshake may take before the scenario says it is unsupported.
const SB_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub target: Target,
    /// Switchboard pairs (users 2p and 2p+1).
    #[arg(long, default_value_t = 50)]
    pub pairs: usize,
    /// Messages each caller keeps in flight (1: strict ping-pong).
    #[arg(long, default_value_t = 1)]
    pub window: usize,
    /// Seconds of exchange.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Then run the same pairs, window, duration and messages through a bare in-process
    /// tokio byte forwarder on loopback, and report msgr's rate as a share of its rate.
    #[arg(long)]
    pub baseline: bool,
    /// Acknowledgement mode of every message: `a` (an `ACK` for each, the default), `n`
    /// (what clients use for text: only failures are answered) or `u` (never answered).
    #[arg(long, value_enum, default_value_t = AckMode::A)]
    pub ack: AckMode,
    /// Switchboard set-ups (`XFR SB` … `JOI`) in progress at once, while logins run at
    /// `--concurrency`; 0: no limit of their own. Some servers need 1.
    #[arg(long, default_value_t = 0)]
    pub sb_concurrency: usize,
}

/// One pair with its switchboard connections open (NS connections kept online, answering
/// `CHL` and pinging, until the end).
struct Pair {
    caller_sb: Conn,
    callee_sb: Conn,
    ns: [Kept; 2],
    setup: Duration,
}

#[derive(Default)]
struct PairResult {
    rtts: Vec<Duration>,
    /// Round trips completed before the deadline (the rate counts only these).
    in_time: u64,
    sent: u64,
    acks: u64,
    naks: u64,
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(SB_TIMEOUT, f).await.with_context(|| {
        format!("no {what} within {SB_TIMEOUT:?}: does the server implement the switchboard?")
    })?
}

async fn set_online(c: &mut Conn) -> Result<()> {
    let t = c.trid();
    c.send(msnp::chg(t, "NLN", 0).as_bytes()).await?;
    let r = c.rd.reply(t).await?;
    if r.error_code().is_some() {
        bail!("CHG answered {:?}", r.line());
    }
    Ok(())
}

async fn connect_pair(ctx: &Ctx, sb_gate: &Semaphore, p: usize) -> Result<Pair> {
    let started = Instant::now();
    let (a_email, b_email) = (ctx.email(2 * p), ctx.email(2 * p + 1));
    let (mut a, _) = ctx.login(&a_email).await?;
    let (mut b, _) = ctx.login(&b_email).await?;
    set_online(&mut a).await?;
    set_online(&mut b).await?;
    let _sb_permit = sb_gate.acquire().await?;

    let t = a.trid();
    a.send(format!("XFR {t} SB\r\n").as_bytes()).await?;
    let xfr = within("answer to XFR SB", a.rd.reply(t)).await?;
    let Some((addr, cookie)) = msnp::xfr_sb(&xfr) else {
        bail!(
            "the server answered XFR SB with {:?}: it does not hand out switchboards (relay needs switchboard support)",
            xfr.line()
        )
    };
    let mut asb = Conn::connect(resolve(&addr).await?, &ctx.sources).await?;
    asb.set_dialect(ctx.dialect);
    asb.send(format!("USR 1 {a_email} {cookie}\r\n").as_bytes())
        .await?;
    within("USR OK from the switchboard", asb.rd.expect("USR")).await?;
    asb.send(format!("CAL 2 {b_email}\r\n").as_bytes()).await?;
    within("CAL RINGING", asb.rd.expect("CAL")).await?;
    let ring = within("RNG on the callee's NS", async {
        loop {
            let f = b.rd.recv().await?;
            if let Some(r) = msnp::rng(&f) {
                return Ok(r);
            }
        }
    })
    .await?;
    let mut bsb = Conn::connect(resolve(&ring.addr).await?, &ctx.sources).await?;
    bsb.set_dialect(ctx.dialect);
    bsb.send(format!("ANS 1 {b_email} {} {}\r\n", ring.cookie, ring.session).as_bytes())
        .await?;
    within("ANS OK", bsb.rd.expect("ANS")).await?;
    within("JOI at the caller", asb.rd.expect("JOI")).await?;
    asb.next_trid = 3;
    bsb.next_trid = 2;
    Ok(Pair {
        caller_sb: asb,
        callee_sb: bsb,
        ns: [Kept::start(a), Kept::start(b)],
        setup: started.elapsed(),
    })
}

/// The callee: echoes every message until the switchboard closes or the caller leaves.
/// Through the forwarder it reads the caller's own `MSG t A len` lines: the decoder only
/// needs the length, which ends both forms.
async fn echo(mut rd: Reader, mut wr: OwnedWriteHalf, mode: AckMode) -> Result<()> {
    let mut trid: u32 = 2;
    loop {
        let f = rd.recv_forever().await?;
        match f.command() {
            "MSG" => {
                if let Some(p) = f.payload() {
                    wr.write_all(&msnp::msg_echo_with(trid, mode, p)).await?;
                    trid = trid.wrapping_add(1).max(1);
                }
            }
            "BYE" | "OUT" => {
                let _ = wr.write_all(b"OUT\r\n").await;
                return Ok(());
            }
            _ => {}
        }
    }
}

/// The caller: `window` messages in flight until `until`, then waits for the last echoes.
/// `ns` (the pair's notification connections, if any) are signed out at the end.
async fn exchange(
    caller_sb: Conn,
    callee_sb: Conn,
    ns: Vec<Kept>,
    window: usize,
    mode: AckMode,
    until: tokio::time::Instant,
) -> Result<PairResult> {
    let echo_task = tokio::spawn(echo(callee_sb.rd, callee_sb.wr, mode));
    let Conn {
        mut rd,
        mut wr,
        mut next_trid,
    } = caller_sb;
    let mut res = PairResult::default();
    let mut in_flight: HashMap<u64, Instant> = HashMap::new();
    let mut seq = 0u64;
    let drain_until = until + Duration::from_secs(5);
    loop {
        let now = tokio::time::Instant::now();
        let sending = now < until;
        if sending {
            while in_flight.len() < window.max(1) {
                wr.write_all(&msnp::msg_with(next_trid, mode, seq)).await?;
                in_flight.insert(seq, Instant::now());
                res.sent += 1;
                seq += 1;
                next_trid = next_trid.wrapping_add(1).max(1);
            }
        } else if in_flight.is_empty() || now >= drain_until {
            break;
        }
        let deadline = if sending { until } else { drain_until };
        let Ok(f) = tokio::time::timeout_at(deadline, rd.recv_forever()).await else {
            continue;
        };
        let f = f?;
        match f.command() {
            "MSG" => {
                if let Some(sent) = f
                    .payload()
                    .and_then(|p| msnp::msg_seq(p))
                    .and_then(|s| in_flight.remove(&s))
                {
                    res.rtts.push(sent.elapsed());
                    if tokio::time::Instant::now() < until {
                        res.in_time += 1;
                    }
                }
            }
            "ACK" => res.acks += 1,
            "NAK" => res.naks += 1,
            _ if f.error_code().is_some() => bail!("switchboard answered {:?}", f.line()),
            _ => {}
        }
    }
    let _ = wr.write_all(b"OUT\r\n").await;
    // Our end of the stream too, which is all a forwarder passes on.
    let _ = wr.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), echo_task).await;
    for kept in ns {
        let _ = kept.finish().await;
    }
    Ok(res)
}

pub async fn run(args: Args) -> Outcome {
    if args.pairs == 0 {
        bail!("--pairs must be at least 1");
    }
    let ctx = Arc::new(Ctx::new(&args.target).await?);
    let gate = Arc::new(Semaphore::new(args.target.concurrency.max(1)));
    let sb_gate = Arc::new(Semaphore::new(match args.sb_concurrency {
        0 => Semaphore::MAX_PERMITS,
        n => n,
    }));
    let mut joins = tokio::task::JoinSet::new();
    for p in 0..args.pairs {
        let (ctx, gate, sb_gate) = (ctx.clone(), gate.clone(), sb_gate.clone());
        joins.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            connect_pair(&ctx, &sb_gate, p)
                .await
                .with_context(|| format!("setting up pair {p}"))
        });
    }
    let mut pairs = Vec::with_capacity(args.pairs);
    while let Some(r) = joins.join_next().await {
        match r? {
            Ok(pair) => pairs.push(pair),
            Err(e) => {
                joins.abort_all();
                return Err(e);
            }
        }
    }
    let setups: Vec<Duration> = pairs.iter().map(|p| p.setup).collect();
    let runs = pairs
        .into_iter()
        .map(|p| (p.caller_sb, p.callee_sb, p.ns.into()))
        .collect();
    let msgr = measure(runs, args.window, args.ack, args.duration).await?;

    let mut report = Report::new("relay");
    report
        .figure("pairs", args.pairs)
        .figure("window", args.window)
        .figure("ack_mode", args.ack.token())
        .figure("msg_payload_bytes", msnp::msg_payload_len(0))
        .figure("seconds", msgr.seconds)
        .figure("messages_sent_by_callers", msgr.all.sent)
        .figure("round_trips", msgr.all.rtts.len())
        .figure("messages_per_sec", msgr.rate)
        .figure("acks", msgr.all.acks)
        .figure("naks", msgr.all.naks);
    let mut forwarder_rtts = None;
    if args.baseline {
        // Let the server finish closing the switchboards before the baseline starts.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let fwd = Forwarder::start(args.pairs).await?;
        let mut runs = Vec::with_capacity(args.pairs);
        for addr in &fwd.addrs {
            // The same connections as through the server: caller first, then callee, from
            // the same source addresses, with the same decoder and transaction numbers.
            let mut a = Conn::connect(*addr, &ctx.sources).await?;
            let mut b = Conn::connect(*addr, &ctx.sources).await?;
            a.set_dialect(ctx.dialect);
            b.set_dialect(ctx.dialect);
            a.next_trid = 3;
            b.next_trid = 2;
            runs.push((a, b, Vec::new()));
        }
        let base = measure(runs, args.window, args.ack, args.duration).await?;
        // Every pair has closed both ways by now; a stuck one is not waited for long.
        let copied: u64 = tokio::time::timeout(Duration::from_secs(5), fwd.finish())
            .await
            .unwrap_or_default()
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|(ab, ba)| ab + ba)
            .sum();
        report
            .figure("forwarder_messages_sent_by_callers", base.all.sent)
            .figure("forwarder_round_trips", base.all.rtts.len())
            .figure("forwarder_messages_per_sec", base.rate)
            .figure("forwarder_bytes_copied", copied)
            .figure("msgr_percent_of_forwarder", 100.0 * msgr.rate / base.rate);
        forwarder_rtts = Some(base.all.rtts);
    }
    report.latency("round_trip", msgr.all.rtts);
    if let Some(rtts) = forwarder_rtts {
        report.latency("fwd_round_trip", rtts);
    }
    report.latency("pair_setup", setups);
    Ok((report, args.target.json))
}

/// What one phase (through the server, or through the forwarder) measured.
struct Phase {
    all: PairResult,
    seconds: f64,
    /// Messages per second, both directions, counting round trips completed in time.
    rate: f64,
}

/// Runs every pair's exchange for `duration` seconds at once.
async fn measure(
    runs: Vec<(Conn, Conn, Vec<Kept>)>,
    window: usize,
    mode: AckMode,
    duration: u64,
) -> Result<Phase> {
    let started = Instant::now();
    let until = tokio::time::Instant::now() + Duration::from_secs(duration);
    let mut tasks = tokio::task::JoinSet::new();
    for (caller, callee, ns) in runs {
        tasks.spawn(exchange(caller, callee, ns, window, mode, until));
    }
    let mut all = PairResult::default();
    while let Some(r) = tasks.join_next().await {
        let r = r??;
        all.rtts.extend(r.rtts);
        all.sent += r.sent;
        all.in_time += r.in_time;
        all.acks += r.acks;
        all.naks += r.naks;
    }
    let seconds = Duration::from_secs(duration.max(1))
        .min(started.elapsed())
        .as_secs_f64();
    Ok(Phase {
        rate: (2 * all.in_time) as f64 / seconds,
        seconds,
        all,
    })
}
