//! `login`: TWN logins in a loop with C clients; logins per second and latency percentiles.

use super::Outcome;
use crate::session::{Ctx, LoginTimes, Target};
use crate::stats::Report;
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
}

pub async fn run(args: Args) -> Outcome {
    let ctx = Arc::new(Ctx::new(&args.target).await?);
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
    let mut report = Report::new("login");
    report
        .figure("logins", all.len())
        .figure("concurrency", args.target.concurrency)
        .figure("seconds", elapsed.as_secs_f64())
        .figure("logins_per_sec", all.len() as f64 / elapsed.as_secs_f64())
        .latency("total", all.iter().map(|t| t.total).collect())
        .latency("passport", all.iter().map(|t| t.passport).collect())
        .latency("msnp", all.iter().map(|t| t.msnp).collect());
    Ok((report, args.target.json))
}
