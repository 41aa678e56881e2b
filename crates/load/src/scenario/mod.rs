//! The scenarios; each `run` returns its report and whether to print it as JSON.

pub mod idle;
pub mod login;
pub mod mail;
pub mod mail_notify;
pub mod presence;
pub mod relay;

use crate::stats::Report;

pub type Outcome = anyhow::Result<(Report, bool)>;

use crate::conn::Conn;
use crate::msnp;
use crate::session::{online, Cmd, Ctx, Handler, LoginTimes};
use anyhow::{bail, Context};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

/// Users brought online, each kept by its own task.
pub struct Online<H> {
    /// Command channel of user i (None if its login failed).
    pub cmds: Vec<Option<mpsc::Sender<Cmd>>>,
    pub tasks: Vec<JoinHandle<anyhow::Result<H>>>,
    pub logins: Vec<LoginTimes>,
    pub failed: usize,
    pub first_error: Option<String>,
    /// Contacts added to forward lists while building the ring.
    pub added: usize,
    pub elapsed: Duration,
}

/// Users that ended while still needed, and the handlers of the others.
pub struct Finished<H> {
    pub handlers: Vec<H>,
    pub dropped: usize,
    pub first_error: Option<String>,
}

/// Logs in users 0..n (`--concurrency` at a time); with `ring = Some(k)`, makes sure user i
/// has users i+1 … i+k (mod n) on its forward list (`SYN`, then `ADD`/`ADC` what is missing).
/// Each user then stays online in its own task, with the handler `make(i)`.
pub async fn bring_online<H: Handler>(
    ctx: &Arc<Ctx>,
    n: usize,
    ring: Option<usize>,
    make: impl Fn(usize) -> H,
) -> Online<H> {
    bring_online_range(ctx, 0..n, n, ring, make).await
}

/// [`bring_online`] for users `range` of a run of `n` (`cmds[j]` is user `range.start + j`).
pub async fn bring_online_range<H: Handler>(
    ctx: &Arc<Ctx>,
    range: std::ops::Range<usize>,
    n: usize,
    ring: Option<usize>,
    make: impl Fn(usize) -> H,
) -> Online<H> {
    let base = range.start;
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(ctx.target.concurrency.max(1)));
    let mut joins = tokio::task::JoinSet::new();
    for i in range.clone() {
        let (ctx, gate, handler) = (ctx.clone(), gate.clone(), make(i));
        joins.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let email = ctx.email(i);
            let (mut conn, times) = ctx.login(&email).await?;
            let added = match ring {
                Some(k) => build_ring(&ctx, &mut conn, i, n, k)
                    .await
                    .with_context(|| format!("building {email}'s contact list"))?,
                None => 0,
            };
            let (tx, rx) = mpsc::channel(16);
            let task = tokio::spawn(online(conn, rx, handler));
            anyhow::Ok((i, tx, task, times, added))
        });
    }
    let mut out = Online {
        cmds: range.clone().map(|_| None).collect(),
        tasks: Vec::with_capacity(range.len()),
        logins: Vec::with_capacity(range.len()),
        failed: 0,
        first_error: None,
        added: 0,
        elapsed: Duration::ZERO,
    };
    while let Some(r) = joins.join_next().await {
        match r.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok((i, tx, task, times, added)) => {
                if let Some(slot) = out.cmds.get_mut(i - base) {
                    *slot = Some(tx);
                }
                out.tasks.push(task);
                out.logins.push(times);
                out.added += added;
            }
            Err(e) => {
                out.failed += 1;
                out.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    out.elapsed = started.elapsed();
    out
}

async fn build_ring(
    ctx: &Ctx,
    c: &mut Conn,
    i: usize,
    n: usize,
    k: usize,
) -> anyhow::Result<usize> {
    let d = ctx.dialect;
    let t = c.trid();
    c.send(msnp::syn(d, t).as_bytes()).await?;
    let reply = c.rd.reply(t).await?;
    if reply.error_code().is_some() {
        bail!("SYN answered {:?}", reply.line());
    }
    let expected = msnp::syn_contacts(d, &reply);
    let mut forward = HashSet::new();
    let mut seen = 0;
    while seen < expected {
        let f = c.rd.recv().await?;
        if let Some((email, bits)) = msnp::lst_entry(d, &f) {
            seen += 1;
            if bits & 1 != 0 {
                forward.insert(email.to_ascii_lowercase());
            }
        }
    }
    let mut added = 0;
    for other in ring_contacts(i, n, k) {
        let email = ctx.email(other);
        if forward.contains(&email.to_ascii_lowercase()) {
            continue;
        }
        let t = c.trid();
        c.send(msnp::add_forward(d, t, &email).as_bytes()).await?;
        let r = c.rd.reply(t).await?;
        match r.error_code() {
            None => added += 1,
            Some(215) => {}
            Some(_) => bail!("adding {email} answered {:?}", r.line()),
        }
    }
    Ok(added)
}

/// User i's contacts in the ring: i+1 … i+k (mod n), never itself, each once.
pub fn ring_contacts(i: usize, n: usize, k: usize) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    (1..=k.min(n.saturating_sub(1)))
        .map(|j| (i + j) % n)
        .collect()
}

impl<H> Online<H> {
    /// Adds the users of `other` (brought online for a later range) to these.
    pub fn extend(&mut self, other: Online<H>) {
        self.cmds.extend(other.cmds);
        self.tasks.extend(other.tasks);
        self.logins.extend(other.logins);
        self.failed += other.failed;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.added += other.added;
        self.elapsed += other.elapsed;
    }

    /// Signs everyone out and collects the handlers of users that stayed online until now.
    pub async fn finish(self) -> Finished<H> {
        drop(self.cmds);
        let mut out = Finished {
            handlers: Vec::new(),
            dropped: 0,
            first_error: None,
        };
        for task in self.tasks {
            match tokio::time::timeout(Duration::from_secs(10), task).await {
                Ok(Ok(Ok(h))) => out.handlers.push(h),
                Ok(Ok(Err(e))) => {
                    out.dropped += 1;
                    out.first_error.get_or_insert_with(|| format!("{e:#}"));
                }
                Ok(Err(e)) => {
                    out.dropped += 1;
                    out.first_error.get_or_insert_with(|| e.to_string());
                }
                Err(_) => {
                    out.dropped += 1;
                    out.first_error
                        .get_or_insert_with(|| "a user task did not end".to_owned());
                }
            }
        }
        out
    }

    /// How many user tasks have already ended (the server dropped them, or they failed).
    pub fn ended(&self) -> usize {
        self.tasks.iter().filter(|t| t.is_finished()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::ring_contacts;

    #[test]
    fn ring_wraps_and_skips_self() {
        assert_eq!(ring_contacts(0, 10, 3), vec![1, 2, 3]);
        assert_eq!(ring_contacts(8, 10, 3), vec![9, 0, 1]);
        assert_eq!(ring_contacts(1, 3, 5), vec![2, 0]);
        assert_eq!(ring_contacts(0, 1, 5), Vec::<usize>::new());
        assert_eq!(ring_contacts(0, 0, 5), Vec::<usize>::new());
    }

    #[test]
    fn every_user_is_watched_k_times() {
        let (n, k) = (50, 7);
        let mut watchers = vec![0; n];
        for i in 0..n {
            for c in ring_contacts(i, n, k) {
                watchers[c] += 1;
            }
        }
        assert!(watchers.iter().all(|w| *w == k));
    }
}
