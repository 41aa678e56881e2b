//! `idle`: N users logged in and online (`CHG NLN`), holding; the server's resident memory
//! and open files (from /proc/<pid>) before and after, per user.

use super::{bring_online_range, Online, Outcome};
use crate::session::{Cmd, Ctx, Handler, Target};
use crate::stats::Report;
use anyhow::{bail, Context};
use msgr_proto::frame::Frame;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub target: Target,
    /// Users to bring online (accounts --first … --first+N-1).
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// Seconds to hold everyone online after the last one arrived.
    #[arg(long, default_value_t = 10)]
    pub hold: u64,
    /// The server's pid, to read its RSS and fd count from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
}

/// Resident memory (KiB) and open files of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStats {
    pub rss_kb: u64,
    pub fds: u64,
}

/// `VmRSS` of a /proc/<pid>/status text, in KiB.
pub fn parse_rss_kb(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub fn proc_stats(pid: &str) -> anyhow::Result<ProcStats> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let Some(rss_kb) = parse_rss_kb(&status) else {
        bail!("no VmRSS in /proc/{pid}/status")
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("listing /proc/{pid}/fd"))?
        .count() as u64;
    Ok(ProcStats { rss_kb, fds })
}

/// Counts users whose `CHG` was answered (they are online).
struct Idle {
    online: Arc<AtomicUsize>,
    counted: bool,
}

impl Handler for Idle {
    fn frame(&mut self, f: &Frame, _now: Instant) {
        if f.command() == "CHG" && !self.counted {
            self.counted = true;
            self.online.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Brings users `range` online (`CHG NLN`) and waits until their `CHG`s are answered.
async fn half_online(
    ctx: &Arc<Ctx>,
    range: std::ops::Range<usize>,
    n: usize,
    online: &Arc<AtomicUsize>,
) -> Online<Idle> {
    let users = bring_online_range(ctx, range, n, None, |_| Idle {
        online: online.clone(),
        counted: false,
    })
    .await;
    let target = online.load(Ordering::Relaxed) + users.logins.len();
    for tx in users.cmds.iter().flatten() {
        let _ = tx
            .send(Cmd::Chg {
                status: "NLN",
                caps: 0,
                stamp: None,
            })
            .await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while online.load(Ordering::Relaxed) < target && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    users
}

fn per_user(before: u64, after: u64, users: usize) -> f64 {
    (after as f64 - before as f64) / users.max(1) as f64
}

pub async fn run(args: Args) -> Outcome {
    let ctx = Arc::new(Ctx::new(&args.target).await?);
    let server = args.server_pid.map(|p| p.to_string());
    let server_before = server.as_deref().map(proc_stats).transpose()?;
    let own_before = proc_stats("self")?;
    let online = Arc::new(AtomicUsize::new(0));
    // Two halves: the first pays one-time costs (allocator arenas grown by the password
    // hashes, runtime threads); the growth over the second half is the cost of a user.
    let half = args.count / 2;
    let mut users = half_online(&ctx, 0..half, args.count, &online).await;
    let server_half = server.as_deref().map(proc_stats).transpose()?;
    let online_half = online.load(Ordering::Relaxed);
    users.extend(half_online(&ctx, half..args.count, args.count, &online).await);
    let reached = online.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let server_online = server.as_deref().map(proc_stats).transpose()?;
    let own_online = proc_stats("self")?;
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    let server_end = server.as_deref().map(proc_stats).transpose()?;
    let ended_early = users.ended();
    let (failed, login_error, elapsed) = (users.failed, users.first_error.clone(), users.elapsed);
    let logins = users.logins.clone();
    let finished = users.finish().await;

    let mut report = Report::new("idle");
    report
        .figure("users", args.count)
        .figure("online", reached)
        .figure("login_failures", failed)
        .figure("dropped_while_holding", ended_early)
        .figure("login_seconds", elapsed.as_secs_f64())
        .figure("hold_seconds", args.hold);
    if let (Some(b), Some(h), Some(a), Some(e)) =
        (server_before, server_half, server_online, server_end)
    {
        report
            .figure("server_rss_before_kb", b.rss_kb)
            .figure("server_rss_half_kb", h.rss_kb)
            .figure("server_rss_online_kb", a.rss_kb)
            .figure("server_rss_end_kb", e.rss_kb)
            .figure("server_kb_per_user", per_user(b.rss_kb, a.rss_kb, reached))
            .figure(
                "server_kb_per_user_end",
                per_user(b.rss_kb, e.rss_kb, reached),
            )
            .figure(
                "server_kb_per_user_marginal",
                per_user(h.rss_kb, a.rss_kb, reached.saturating_sub(online_half)),
            )
            .figure("server_fds_before", b.fds)
            .figure("server_fds_online", a.fds);
    }
    report.figure(
        "load_kb_per_user",
        per_user(own_before.rss_kb, own_online.rss_kb, reached),
    );
    if let Some(e) = login_error.or(finished.first_error) {
        report.figure("first_error", e);
    }
    report
        .latency("login", logins.iter().map(|t| t.total).collect())
        .latency("login_msnp", logins.iter().map(|t| t.msnp).collect());
    Ok((report, args.target.json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_from_proc_status() {
        let status =
            "Name:\tmsgr\nVmPeak:\t  200000 kB\nVmRSS:\t   51234 kB\nRssAnon:\t 40000 kB\n";
        assert_eq!(parse_rss_kb(status), Some(51234));
        assert_eq!(parse_rss_kb("Name:\tx\n"), None);
    }

    #[test]
    fn own_process_is_readable() {
        let s = proc_stats("self").expect("/proc/self");
        assert!(s.rss_kb > 0);
        assert!(s.fds >= 3);
    }

    #[test]
    fn per_user_growth() {
        assert_eq!(per_user(1000, 3000, 100), 20.0);
        assert_eq!(per_user(1000, 900, 100), -1.0);
        assert_eq!(per_user(0, 10, 0), 10.0);
    }
}
