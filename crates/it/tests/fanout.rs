//! Presence fan-out latency over real sockets: N online watchers who all have X on their
//! forward list; the time from X's `CHG` to each watcher's `NLN`, reported as p50, p99 and the
//! last one.
//!
//! It opens 2N sockets, so by default N is small (a correctness check); measure with:
//! `MSGR_FANOUT=1000 [MSGR_FANOUT_ROUNDS=50] cargo test --release -p msgr-it --test fanout -- --nocapture`.
//! (Both ends live in this process: N is bounded by half the open-file limit.)

#![allow(clippy::unwrap_used)]

use anyhow::{Context, Result};
use msgr_core::lists::{Change, ChangeKind, Guid, List};
use msgr_it::{login, ServerOptions, TestServer, CHEAP_PASSWORD};
use msgr_proto::Dialect;
use msgr_server::config::LimitsConfig;
use msgr_store::{AccountStore, ContactStore, NewAccount, Store};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PASSWORD: &str = "pw-123456";

fn watcher(i: usize) -> String {
    format!("w{i}@x.com")
}

#[tokio::test(flavor = "multi_thread")]
async fn presence_fan_out_latency() -> Result<()> {
    // By default a small fan-out that checks every watcher hears the change; the figure is
    // only meaningful at the sizes asked for with MSGR_FANOUT.
    let n = std::env::var("MSGR_FANOUT")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(25);
    let srv = TestServer::start(ServerOptions {
        legacy_md5: true,
        limits: LimitsConfig {
            max_reverse: n + 1,
            max_connections: 2 * n + 100,
            // X changes status once per round; the measurement is not about the rate limit.
            change_burst: 1_000_000,
            ..LimitsConfig::default()
        },
        ..ServerOptions::default()
    })
    .await?;

    // Accounts and lists go straight into the store: only the fan-out is being measured.
    let db = srv.config.database_path();
    let setup = Instant::now();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let store = Store::open_sqlite(&db)?;
        let hash = msgr_core::password::hash_password_with(PASSWORD, CHEAP_PASSWORD)?;
        let new = |email: String| NewAccount {
            display_name: email.clone(),
            email,
            password_hash: hash.clone(),
            md5_secret: Some(PASSWORD.to_owned()),
        };
        store.create_account(new("x@x.com".to_owned()))?;
        let mut changes = Vec::with_capacity(2 * n);
        for i in 0..n {
            store.create_account(new(watcher(i)))?;
            changes.push(Change {
                owner: watcher(i),
                kind: ChangeKind::AddToList {
                    email: "x@x.com".into(),
                    list: List::Forward,
                    nickname: "X".into(),
                    guid: Guid::random(),
                    group: Some(0),
                },
            });
            changes.push(Change {
                owner: "x@x.com".into(),
                kind: ChangeKind::AddToList {
                    email: watcher(i),
                    list: List::Reverse,
                    nickname: watcher(i),
                    guid: Guid::random(),
                    group: None,
                },
            });
        }
        store.apply(&changes)?;
        Ok(())
    })
    .await??;
    eprintln!("setup of {n} accounts: {:?}", setup.elapsed());

    // Every watcher logs in (MSNP7, no HTTPS needed) and sets a status.
    let ep = srv.endpoint();
    let t = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(256));
    let mut logins = tokio::task::JoinSet::new();
    for i in 0..n {
        let ep = ep.clone();
        let gate = gate.clone();
        logins.spawn(async move {
            let _p = gate.acquire().await?;
            let mut c = login(&ep, Dialect::Msnp7, &watcher(i), PASSWORD).await?;
            c.send("CHG 6 NLN").await?;
            c.expect_line("CHG 6 NLN").await?;
            anyhow::Ok(c)
        });
    }
    let mut conns = Vec::with_capacity(n);
    while let Some(c) = logins.join_next().await {
        conns.push(c??);
    }
    eprintln!("{n} watchers online: {:?}", t.elapsed());

    let mut x = login(&ep, Dialect::Msnp12, "x@x.com", PASSWORD).await?;
    let rounds: usize = std::env::var("MSGR_FANOUT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut lasts = Vec::with_capacity(rounds);
    let mut all = Vec::with_capacity(rounds * n);
    for r in 0..rounds {
        let status = ["NLN", "AWY", "BSY"][r % 3];
        // Each reader waits (up to the support library's timeout) from now on.
        let mut arrivals = tokio::task::JoinSet::new();
        for mut c in conns {
            let expected = format!("NLN {status} x@x.com x@x.com");
            arrivals.spawn(async move {
                c.expect_line(&expected).await?;
                anyhow::Ok((Instant::now(), c))
            });
        }
        tokio::time::sleep(Duration::from_millis(if n > 1000 { 200 } else { 20 })).await;
        let t0 = Instant::now();
        x.send(&format!("CHG {} {status} 1342177280:0", r + 6))
            .await?;
        x.expect_line(&format!("CHG {} {status} 1342177280:0", r + 6))
            .await?;
        conns = Vec::with_capacity(n);
        let mut last = Duration::ZERO;
        while let Some(res) = arrivals.join_next().await {
            let (at, c) = res?.context("a watcher missed the NLN")?;
            let d = at.duration_since(t0);
            last = last.max(d);
            all.push(d);
            conns.push(c);
        }
        lasts.push(last);
    }
    lasts.sort();
    all.sort();
    let pct = |v: &[Duration], p: usize| v[(v.len() * p / 100).min(v.len() - 1)];
    eprintln!(
        "fan-out to {n} watchers over {rounds} rounds: per NLN p50 {:?} p99 {:?}; \
         CHG to last NLN p50 {:?} p99 {:?} max {:?}",
        pct(&all, 50),
        pct(&all, 99),
        pct(&lasts, 50),
        pct(&lasts, 99),
        lasts.last().copied().unwrap_or_default()
    );
    Ok(())
}
