//! `idle`: N users logged in and online (`CHG NLN`), holding; the server's resident memory
//! and open files (from /proc/<pid>) before and after, per user.

use super::{bring_online_range, Online, Outcome};
use crate::session::{Cmd, Ctx, Handler, Target};
use crate::stats::Report;
use crate::worker::{self, ChildReport, Link, Pool, Spread};
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
    /// The server's pid, to read its RSS and fd count from /proc (read by the parent only
    /// when the users are spread over --workers).
    #[arg(long)]
    pub server_pid: Option<u32>,
    #[command(flatten)]
    pub spread: Spread,
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
    // One MSNP connection per user, plus a few files of the process itself.
    let workers = args.spread.processes(args.count + 64);
    if args.spread.worker {
        let link = Link::start();
        return run_here(args, Some(link)).await;
    }
    worker::check_ports(args.count, args.target.sources)?;
    if workers > 1 {
        return run_parent(args, workers).await;
    }
    run_here(args, None).await
}

/// The users of this process; a worker (`link`) stops at the parent's barriers instead of
/// reading the server and holding by itself.
async fn run_here(args: Args, mut link: Option<Link>) -> Outcome {
    let ctx = Arc::new(Ctx::new(&args.target).await?);
    let server = args.server_pid.map(|p| p.to_string());
    let server_before = server.as_deref().map(proc_stats).transpose()?;
    let own_before = proc_stats("self")?;
    let online = Arc::new(AtomicUsize::new(0));
    // Two halves: the first pays one-time costs (allocator arenas grown by the password
    // hashes, runtime threads); the growth over the second half is the cost of a user.
    let half = args.count / 2;
    let mut users = half_online(&ctx, 0..half, args.count, &online).await;
    let online_half = online.load(Ordering::Relaxed);
    if let Some(link) = &mut link {
        link.barrier("half").await?;
    }
    let server_half = server.as_deref().map(proc_stats).transpose()?;
    users.extend(half_online(&ctx, half..args.count, args.count, &online).await);
    let reached = online.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let own_online = proc_stats("self")?;
    if let Some(link) = &mut link {
        // The parent reads the server, holds, reads it again, then lets us go.
        link.barrier("online").await?;
    }
    let server_online = server.as_deref().map(proc_stats).transpose()?;
    if link.is_none() {
        tokio::time::sleep(Duration::from_secs(args.hold)).await;
    }
    let server_end = server.as_deref().map(proc_stats).transpose()?;
    let ended_early = users.ended();
    let (failed, login_error, elapsed) = (users.failed, users.first_error.clone(), users.elapsed);
    let logins = users.logins.clone();
    let finished = users.finish().await;

    let mut report = Report::new("idle");
    if link.is_some() {
        report
            .keep_samples()
            .figure("online_half", online_half)
            .figure("load_rss_before_kb", own_before.rss_kb)
            .figure("load_rss_online_kb", own_online.rss_kb);
    }
    report
        .figure("users", args.count)
        .figure("online", reached)
        .figure("login_failures", failed)
        .figure("dropped_while_holding", ended_early)
        .figure("login_seconds", elapsed.as_secs_f64())
        .figure("hold_seconds", args.hold);
    let readings = match (server_before, server_half, server_online, server_end) {
        (Some(b), Some(h), Some(a), Some(e)) => Some([b, h, a, e]),
        _ => None,
    };
    server_figures(&mut report, readings, reached, online_half);
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

/// The server's readings before, after the first half, with everyone online and at the end.
fn server_figures(
    report: &mut Report,
    readings: Option<[ProcStats; 4]>,
    reached: usize,
    online_half: usize,
) {
    let Some([b, h, a, e]) = readings else {
        return;
    };
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

/// Runs `workers` processes on disjoint shares of the users; this process reads the server
/// (once, at each barrier of all workers), holds, and merges the workers' reports.
async fn run_parent(args: Args, workers: usize) -> Outcome {
    let shares = worker::split(args.target.first, args.count, workers);
    let gates = worker::split(0, args.target.concurrency.max(1), shares.len());
    let argv = worker::own_args();
    let mut lists = Vec::new();
    let mut names = Vec::new();
    for (i, s) in shares.iter().enumerate() {
        let gate = gates.get(i).map_or(1, |g| g.count.max(1));
        lists.push(worker::child_args(
            &argv,
            &[
                "--first",
                "--count",
                "--concurrency",
                "--workers",
                "--server-pid",
            ],
            &["--json", "--worker"],
            &[
                "--first".into(),
                s.first.to_string(),
                "--count".into(),
                s.count.to_string(),
                "--concurrency".into(),
                gate.to_string(),
                "--json".into(),
                "--worker".into(),
            ],
        ));
        names.push(format!(
            "{i} (accounts {}…{})",
            s.first,
            (s.first + s.count).saturating_sub(1)
        ));
    }
    let server = args.server_pid.map(|p| p.to_string());
    let read = || server.as_deref().map(proc_stats).transpose();
    let before = read()?;
    let mut pool = Pool::spawn(&worker::own_program()?, lists, names)?;
    pool.barrier("half").await?;
    let half = read()?;
    pool.release().await?;
    pool.barrier("online").await?;
    let online = read()?;
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    let end = read()?;
    pool.release().await?;
    let children = pool.reports().await?;
    let readings = match (before, half, online, end) {
        (Some(b), Some(h), Some(a), Some(e)) => Some([b, h, a, e]),
        _ => None,
    };
    let report = merge(&children, readings, args.hold);
    Ok((report, args.target.json))
}

/// One report from the workers' reports and the parent's server readings.
fn merge(children: &[ChildReport], readings: Option<[ProcStats; 4]>, hold: u64) -> Report {
    let reached = worker::sum(children, "online") as usize;
    let online_half = worker::sum(children, "online_half") as usize;
    let own_growth: f64 = children
        .iter()
        .map(|c| c.number("load_rss_online_kb") - c.number("load_rss_before_kb"))
        .sum();
    let mut report = Report::new("idle");
    report
        .figure("workers", children.len())
        .figure("users", worker::sum(children, "users"))
        .figure("online", reached)
        .figure("login_failures", worker::sum(children, "login_failures"))
        .figure(
            "dropped_while_holding",
            worker::sum(children, "dropped_while_holding"),
        )
        .figure("login_seconds", worker::max(children, "login_seconds"))
        .figure("hold_seconds", hold);
    server_figures(&mut report, readings, reached, online_half);
    report.figure("load_kb_per_user", own_growth / reached.max(1) as f64);
    if let Some(e) = worker::first_text(children, "first_error") {
        report.figure("first_error", e);
    }
    worker::merge_latencies(&mut report, children, &["login", "login_msnp"]);
    report
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
    fn workers_merge_into_one_report() {
        let child = |online, half, before, after, err: &str| {
            ChildReport::parse(&format!(
                "{{\"scenario\":\"idle\",\"online_half\":{half},\"load_rss_before_kb\":{before},\
                 \"load_rss_online_kb\":{after},\"users\":{online},\"online\":{online},\
                 \"login_failures\":0,\"dropped_while_holding\":1,\"login_seconds\":{online}.5,\
                 \"hold_seconds\":0{err},\"samples\":{{\"login\":[{online}000000],\"login_msnp\":[]}}}}"
            ))
            .expect("parses")
        };
        let children = [
            child(100, 50, 1000, 2000, ""),
            child(300, 150, 1000, 4000, ",\"first_error\":\"e\""),
        ];
        let r = |kb, fds| ProcStats { rss_kb: kb, fds };
        let readings = [
            r(10_000, 10),
            r(30_000, 210),
            r(50_000, 410),
            r(50_400, 410),
        ];
        let m = merge(&children, Some(readings), 7);
        let fig = |name| {
            m.figures
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        };
        use crate::stats::Value;
        assert_eq!(fig("workers"), Some(Value::Int(2)));
        assert_eq!(fig("online"), Some(Value::Int(400)));
        assert_eq!(fig("dropped_while_holding"), Some(Value::Int(2)));
        assert_eq!(fig("login_seconds"), Some(Value::Float(300.5)));
        assert_eq!(fig("hold_seconds"), Some(Value::Int(7)));
        assert_eq!(fig("server_kb_per_user"), Some(Value::Float(100.0)));
        // (50,000 − 30,000) KB over the 200 users of the second halves.
        assert_eq!(
            fig("server_kb_per_user_marginal"),
            Some(Value::Float(100.0))
        );
        assert_eq!(fig("server_fds_online"), Some(Value::Int(410)));
        assert_eq!(fig("load_kb_per_user"), Some(Value::Float(10.0)));
        assert_eq!(fig("first_error"), Some(Value::Text("e".into())));
        let login = m
            .latencies
            .iter()
            .find(|(n, _)| *n == "login")
            .expect("login")
            .1;
        assert_eq!(login.count, 2);
        assert_eq!(login.max, Duration::from_millis(300));
        let without = merge(&children, None, 7);
        assert!(!without
            .figures
            .iter()
            .any(|(n, _)| n.starts_with("server_")));
    }

    #[test]
    fn per_user_growth() {
        assert_eq!(per_user(1000, 3000, 100), 20.0);
        assert_eq!(per_user(1000, 900, 100), -1.0);
        assert_eq!(per_user(0, 10, 0), 10.0);
    }
}
