//! `presence`: N online users, user i watching i+1 … i+K (mod N); M status changes a second
//! spread round-robin over the users; time from writing `CHG` to each watcher reading the
//! matching `NLN`. Each change carries its own number in the capabilities field, which every
//! MSNP8+ server relays unchanged, so a watcher knows exactly which change it saw.

use super::{bring_online, Outcome};
use crate::msnp;
use crate::session::{Cmd, Ctx, Handler, Target};
use crate::stats::Report;
use anyhow::bail;
use msgr_proto::frame::Frame;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub target: Target,
    /// Online users.
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// Contacts per user (a ring: user i adds i+1 … i+K); added over MSNP on the first run.
    #[arg(long, default_value_t = 20)]
    pub contacts: usize,
    /// Status changes per second, over all users (each user at most about 1/s: servers
    /// rate-limit CHG).
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// Seconds of measured changes.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Seconds to wait after everyone's first CHG and after the last change.
    #[arg(long, default_value_t = 3)]
    pub settle: u64,
}

/// Capabilities numbers of measured changes start here (setup uses 0).
const BASE: u32 = 1_000_000;

/// When each measured change was written, in ns after `epoch` plus one (0: not yet).
pub struct Stamps {
    epoch: Instant,
    sent: Vec<AtomicU64>,
}

impl Stamps {
    pub fn new(epoch: Instant, len: usize) -> Stamps {
        Stamps {
            epoch,
            sent: (0..len).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub fn set(&self, i: usize, at: Instant) {
        if let Some(s) = self.sent.get(i) {
            let ns = at.saturating_duration_since(self.epoch).as_nanos() as u64;
            s.store(ns + 1, Ordering::Release);
        }
    }

    /// Time from change `i`'s write to `now`, if it was written.
    pub fn since(&self, i: usize, now: Instant) -> Option<Duration> {
        let ns = self.sent.get(i)?.load(Ordering::Acquire).checked_sub(1)?;
        Some(now.saturating_duration_since(self.epoch + Duration::from_nanos(ns)))
    }
}

struct Watcher {
    stamps: Arc<Stamps>,
    samples: Vec<Duration>,
    errors: u64,
    first_error: Option<String>,
}

impl Handler for Watcher {
    fn frame(&mut self, f: &Frame, now: Instant) {
        if let Some(caps) = msnp::nln_caps(f) {
            if let Some(i) = caps.checked_sub(BASE) {
                if let Some(d) = self.stamps.since(i as usize, now) {
                    self.samples.push(d);
                }
            }
        } else if f.error_code().is_some() {
            self.errors += 1;
            self.first_error.get_or_insert_with(|| f.line().to_owned());
        }
    }
}

pub async fn run(args: Args) -> Outcome {
    if args.count < 2 || args.rate == 0 {
        bail!("presence needs --count ≥ 2 and --rate ≥ 1");
    }
    let ctx = Arc::new(Ctx::new(&args.target).await?);
    let total = (args.rate as u64 * args.duration) as usize;
    let stamps = Arc::new(Stamps::new(Instant::now(), total));
    let users = bring_online(&ctx, args.count, Some(args.contacts), |_| Watcher {
        stamps: stamps.clone(),
        samples: Vec::new(),
        errors: 0,
        first_error: None,
    })
    .await;
    if users.failed > 0 {
        bail!(
            "{} of {} users could not log in or build their lists; first error: {}",
            users.failed,
            args.count,
            users.first_error.as_deref().unwrap_or("?")
        );
    }
    let setup = users.elapsed;
    // Everyone online (ILN bursts and NLN fan-out of the setup are not measured).
    for tx in users.cmds.iter().flatten() {
        let _ = tx
            .send(Cmd::Chg {
                status: "NLN",
                caps: 0,
                stamp: None,
            })
            .await;
    }
    tokio::time::sleep(Duration::from_secs(args.settle)).await;

    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let (mut sent, mut skipped) = (0usize, 0usize);
    for k in 0..total {
        tick.tick().await;
        let user = k % args.count;
        // Alternate each user's status so every change is a real change.
        let status = if (k / args.count) % 2 == 0 {
            "AWY"
        } else {
            "NLN"
        };
        let Some(Some(tx)) = users.cmds.get(user) else {
            skipped += 1;
            continue;
        };
        let stamps = stamps.clone();
        let cmd = Cmd::Chg {
            status,
            caps: BASE + k as u32,
            stamp: Some(Box::new(move |at| stamps.set(k, at))),
        };
        match tx.try_send(cmd) {
            Ok(()) => sent += 1,
            Err(_) => skipped += 1,
        }
    }
    let sending = started.elapsed();
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let ended_early = users.ended();
    let added = users.added;
    let finished = users.finish().await;

    let watchers = args.contacts.min(args.count - 1);
    let expected = sent * watchers;
    let mut samples = Vec::with_capacity(expected);
    let mut errors = 0;
    let mut first_error = finished.first_error;
    for h in finished.handlers {
        samples.extend(h.samples);
        errors += h.errors;
        if first_error.is_none() {
            first_error = h.first_error;
        }
    }
    let mut report = Report::new("presence");
    report
        .figure("users", args.count)
        .figure("contacts_each", watchers)
        .figure("contacts_added_now", added)
        .figure("setup_seconds", setup.as_secs_f64())
        .figure("changes_sent", sent)
        .figure("changes_skipped", skipped)
        .figure("changes_per_sec", sent as f64 / sending.as_secs_f64())
        .figure("notifications_expected", expected)
        .figure("notifications_received", samples.len())
        .figure(
            "notifications_per_sec",
            samples.len() as f64 / sending.as_secs_f64(),
        )
        .figure("error_replies", errors)
        .figure("users_dropped", ended_early + finished.dropped);
    if let Some(e) = first_error {
        report.figure("first_error", e);
    }
    report.latency("chg_to_nln", samples);
    Ok((report, args.target.json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_measure_from_the_write() {
        let epoch = Instant::now();
        let s = Stamps::new(epoch, 4);
        assert_eq!(s.since(1, epoch), None);
        s.set(1, epoch + Duration::from_millis(5));
        assert_eq!(
            s.since(1, epoch + Duration::from_millis(12)),
            Some(Duration::from_millis(7))
        );
        // Out of range is ignored, not a panic.
        s.set(9, epoch);
        assert_eq!(s.since(9, epoch), None);
    }

    #[test]
    fn watcher_matches_nln_by_capabilities() {
        let epoch = Instant::now();
        let stamps = Arc::new(Stamps::new(epoch, 10));
        stamps.set(3, epoch);
        let mut w = Watcher {
            stamps,
            samples: Vec::new(),
            errors: 0,
            first_error: None,
        };
        let f = |l: &str| Frame::new(l.to_owned(), None).expect("line");
        let later = epoch + Duration::from_millis(2);
        w.frame(&f(&format!("NLN AWY a@b.c a@b.c {}", BASE + 3)), later);
        w.frame(&f("NLN NLN a@b.c a@b.c 0"), later); // setup change: not measured
        w.frame(&f(&format!("NLN AWY a@b.c a@b.c {}", BASE + 4)), later); // never sent
        w.frame(&f("800 12"), later);
        assert_eq!(w.samples, vec![Duration::from_millis(2)]);
        assert_eq!(w.errors, 1);
        assert_eq!(w.first_error.as_deref(), Some("800 12"));
    }
}
