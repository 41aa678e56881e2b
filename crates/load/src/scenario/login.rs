//! `login`: TWN logins in a loop with C clients; logins per second and latency percentiles.

use super::Outcome;
use crate::session::{Ctx, LoginTimes, Target};
use crate::stats::Report;
use crate::worker::{self, ChildReport, Link, Pool, Spread};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub target: Target,
    /// Number of distinct accounts (numbered from --first).
    #[arg(long, default_value_t = 100)]
    pub accounts: usize,
    /// Total logins to perform.
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// Also keep this many other users online (the accounts after the login ones), each
    /// timing a `PNG` → `QNG` every 100 ms while the logins run: what a login flood costs
    /// users already online. One process only.
    #[arg(long, default_value_t = 0)]
    pub probe: usize,
    #[command(flatten)]
    pub spread: Spread,
}

pub async fn run(args: Args) -> Outcome {
    // Each client holds an MSNP and an HTTPS connection at most.
    let workers = args
        .spread
        .processes(2 * args.target.concurrency.max(1) + 64)
        .min(args.accounts.max(1))
        .min(args.count.max(1));
    if args.spread.worker {
        let _link = Link::start();
        return run_here(args, true).await;
    }
    if workers > 1 {
        if args.probe > 0 {
            anyhow::bail!("--probe runs in one process: use --workers 1");
        }
        return run_parent(args, workers).await;
    }
    run_here(args, false).await
}

/// Runs `workers` processes, each with its own share of the logins, of the accounts and of
/// the concurrency, and merges their reports.
async fn run_parent(args: Args, workers: usize) -> Outcome {
    let counts = worker::split(0, args.count, workers);
    let accounts = worker::split(args.target.first, args.accounts.max(1), counts.len());
    let gates = worker::split(0, args.target.concurrency.max(1), counts.len());
    let argv = worker::own_args();
    let (mut lists, mut names) = (Vec::new(), Vec::new());
    for (i, (c, a)) in counts.iter().zip(&accounts).enumerate() {
        let gate = gates.get(i).map_or(1, |g| g.count.max(1));
        lists.push(worker::child_args(
            &argv,
            &[
                "--first",
                "--count",
                "--accounts",
                "--concurrency",
                "--workers",
            ],
            &["--json", "--worker"],
            &[
                "--first".into(),
                a.first.to_string(),
                "--accounts".into(),
                a.count.to_string(),
                "--count".into(),
                c.count.to_string(),
                "--concurrency".into(),
                gate.to_string(),
                "--json".into(),
                "--worker".into(),
            ],
        ));
        names.push(format!(
            "{i} (accounts {}…{})",
            a.first,
            (a.first + a.count).saturating_sub(1)
        ));
    }
    let pool = Pool::spawn(&worker::own_program()?, lists, names)?;
    let children = pool.reports().await?;
    Ok((merge(&children), args.target.json))
}

/// One report from the workers': logins and concurrency add up; the rate is over the
/// longest worker's time.
fn merge(children: &[ChildReport]) -> Report {
    let logins = worker::sum(children, "logins");
    let seconds = worker::max(children, "seconds");
    let mut report = Report::new("login");
    report
        .figure("workers", children.len())
        .figure("logins", logins)
        .figure("concurrency", worker::sum(children, "concurrency"))
        .figure("seconds", seconds)
        .figure("logins_per_sec", logins as f64 / seconds);
    worker::merge_latencies(&mut report, children, &["total", "passport", "msnp"]);
    report
}

async fn run_here(args: Args, keep_samples: bool) -> Outcome {
    let ctx = Arc::new(Ctx::new(&args.target).await?);
    let mut probes = Vec::with_capacity(args.probe);
    for j in 0..args.probe {
        let (c, _) = ctx.login(&ctx.email(args.accounts.max(1) + j)).await?;
        probes.push(c);
    }
    let (done, stop) = tokio::sync::watch::channel(false);
    let mut probe_tasks = tokio::task::JoinSet::new();
    for c in probes {
        probe_tasks.spawn(probe(c, stop.clone()));
    }
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let (count, accounts) = (args.count, args.accounts.max(1));
    for _ in 0..args.target.concurrency.max(1) {
        let (ctx, next) = (ctx.clone(), next.clone());
        tasks.spawn(async move {
            let mut times: Vec<LoginTimes> = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let (mut c, t) = ctx.login(&ctx.email(i % accounts)).await?;
                c.send(b"OUT\r\n").await?;
                times.push(t);
            }
            anyhow::Ok(times)
        });
    }
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r??);
    }
    let elapsed = started.elapsed();
    let _ = done.send(true);
    let mut pings = Vec::new();
    while let Some(r) = probe_tasks.join_next().await {
        pings.extend(r??);
    }
    let mut report = Report::new("login");
    if keep_samples {
        report.keep_samples();
    }
    report
        .figure("logins", all.len())
        .figure("concurrency", args.target.concurrency)
        .figure("seconds", elapsed.as_secs_f64())
        .figure("logins_per_sec", all.len() as f64 / elapsed.as_secs_f64())
        .latency("total", all.iter().map(|t| t.total).collect())
        .latency("passport", all.iter().map(|t| t.passport).collect())
        .latency("msnp", all.iter().map(|t| t.msnp).collect());
    if args.probe > 0 {
        report
            .figure("probe_users", args.probe)
            .latency("png_qng", pings);
    }
    Ok((report, args.target.json))
}

/// One online user timing `PNG` → `QNG` every 100 ms until `stop` changes.
async fn probe(
    mut c: crate::conn::Conn,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Vec<std::time::Duration>> {
    let mut times = Vec::new();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {}
        }
        let sent = Instant::now();
        c.send(b"PNG\r\n").await?;
        loop {
            let f = c.rd.recv().await?;
            if f.command() == "QNG" {
                break;
            }
        }
        times.push(sent.elapsed());
    }
    let _ = c.send(b"OUT\r\n").await;
    Ok(times)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Value;
    use std::time::Duration;

    #[test]
    fn workers_merge_into_one_report() {
        let a = ChildReport::parse(
            "{\"logins\":10,\"concurrency\":2,\"seconds\":2.0,\"samples\":{\"total\":[1000000],\"passport\":[],\"msnp\":[]}}",
        )
        .expect("a");
        let b = ChildReport::parse(
            "{\"logins\":30,\"concurrency\":2,\"seconds\":4.0,\"samples\":{\"total\":[5000000,2000000],\"passport\":[],\"msnp\":[]}}",
        )
        .expect("b");
        let m = merge(&[a, b]);
        let fig = |name| {
            m.figures
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(fig("logins"), Some(Value::Int(40)));
        assert_eq!(fig("concurrency"), Some(Value::Int(4)));
        assert_eq!(fig("logins_per_sec"), Some(Value::Float(10.0)));
        let total = m.latencies[0].1;
        assert_eq!((total.count, total.p50), (3, Duration::from_millis(2)));
    }
}
