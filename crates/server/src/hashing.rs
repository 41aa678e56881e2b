//! The password-hashing pool: a few long-lived threads that verify Passport sign-ins.
//!
//! argon2 at safe costs takes tens of milliseconds and 19 MiB per hash. Running it on the async
//! workers would stall every session on that worker; running it on tokio's blocking pool lets
//! each of its short-lived threads allocate its own working area, which the allocator keeps
//! afterwards (gigabytes of resident memory after a login burst). Here each thread owns one
//! [`Verifier`] and reuses its working area for every login, so the pool's memory is
//! `threads × 19 MiB`, whatever the login rate, and the async workers only wait on a reply.
//! The threads also run at a lower OS priority than the async workers.

use msgr_core::password::{hash_password, Verifier};
use msgr_core::throttle::AddrKey;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Condvar, Mutex, OnceLock};
use thread_priority::{set_current_thread_priority, ThreadPriority, ThreadPriorityValue};
use tokio::sync::oneshot;

/// One sign-in to check: the password, the account's PHC string (`None` for an unknown
/// account, checked against a dummy hash so both cost the same), and where to answer.
struct Job {
    password: String,
    phc: Option<String>,
    reply: oneshot::Sender<bool>,
}

/// The pool closed before answering (the server is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the password-hashing pool has stopped")]
pub(crate) struct PoolClosed;

/// What [`Queue::push`] did with a job.
enum Push {
    Queued,
    /// The address's share or the whole queue is full: the job comes back.
    Full(Job),
    Closed,
}

/// The waiting checks, one queue per client address (IPv6 by /64), served in turn: a thread
/// takes the oldest job of the next address in the ring. An address with 400 guesses waiting
/// delays another address's login by at most one hash per thread, not by 400.
#[derive(Default)]
struct FairQueue {
    queues: HashMap<AddrKey, VecDeque<Job>>,
    /// Addresses with jobs waiting, in serving order; each appears once.
    ring: VecDeque<AddrKey>,
    len: usize,
    closed: bool,
}

impl FairQueue {
    fn pop(&mut self) -> Option<Job> {
        while let Some(key) = self.ring.pop_front() {
            let Some(q) = self.queues.get_mut(&key) else {
                continue;
            };
            let job = q.pop_front();
            if q.is_empty() {
                self.queues.remove(&key);
            } else {
                self.ring.push_back(key);
            }
            if let Some(job) = job {
                self.len -= 1;
                return Some(job);
            }
        }
        None
    }
}

struct Queue {
    state: Mutex<FairQueue>,
    ready: Condvar,
    /// Told whenever a thread takes a job: checks waiting for a place try again.
    popped: tokio::sync::Notify,
    /// Jobs waiting for one address at most.
    per_addr: usize,
    /// Jobs waiting in all at most.
    total: usize,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, FairQueue> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `job` in `key`'s share, unless that share or the whole queue is full.
    fn push(&self, key: AddrKey, job: Job) -> Push {
        let mut q = self.lock();
        if q.closed {
            return Push::Closed;
        }
        let mine = q.queues.get(&key).map_or(0, VecDeque::len);
        if mine >= self.per_addr || q.len >= self.total {
            return Push::Full(job);
        }
        if mine == 0 {
            q.ring.push_back(key);
        }
        q.queues.entry(key).or_default().push_back(job);
        q.len += 1;
        Push::Queued
    }
}

/// Handle to the hashing threads. They exit when it is dropped.
pub(crate) struct HashPool {
    queue: std::sync::Arc<Queue>,
}

impl HashPool {
    /// Starts `threads` hashing threads (at least one). Checks waiting beyond them queue per
    /// client address: at most `per_addr` for one address and `total` in all; past either, a
    /// check waits in its own task (bounded by the connection caps) until its address has a
    /// place again, so a flood from one address only ever delays that address.
    pub fn start(threads: usize, per_addr: usize, total: usize) -> std::io::Result<HashPool> {
        let threads = threads.max(1);
        let queue = std::sync::Arc::new(Queue {
            state: Mutex::new(FairQueue::default()),
            ready: Condvar::new(),
            popped: tokio::sync::Notify::new(),
            per_addr: per_addr.max(1),
            total: total.max(1),
        });
        for i in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("msgr-hash-{i}"))
                .spawn(move || work(&queue))?;
        }
        Ok(HashPool { queue })
    }

    /// Whether `password` matches `phc` (always `false` for `None`, after the same work),
    /// queued in `from`'s share.
    pub async fn verify(
        &self,
        password: &str,
        phc: Option<String>,
        from: IpAddr,
    ) -> Result<bool, PoolClosed> {
        let (reply, answer) = oneshot::channel();
        let mut job = Job {
            password: password.to_owned(),
            phc,
            reply,
        };
        let key = AddrKey::of(from);
        loop {
            // Registered before trying, so a place freed in between is not missed.
            let popped = self.queue.popped.notified();
            tokio::pin!(popped);
            popped.as_mut().enable();
            match self.queue.push(key, job) {
                Push::Queued => break,
                Push::Closed => return Err(PoolClosed),
                Push::Full(back) => {
                    job = back;
                    popped.await;
                }
            }
        }
        self.queue.ready.notify_one();
        answer.await.map_err(|_| PoolClosed)
    }
}

impl Drop for HashPool {
    fn drop(&mut self) {
        self.queue.lock().closed = true;
        self.queue.ready.notify_all();
        // Checks waiting for a place learn that there will be none.
        self.queue.popped.notify_waiters();
    }
}

/// The hashing threads' OS priority on the crate's 0–99 scale: 23 is niceness 9 on Linux.
/// Below the async workers (niceness 0), so a login flood yields the CPU to the sessions
/// already online, without starving the logins themselves when other programs share the cores.
/// `SCHED_IDLE` was measured and is worse on both counts (2026-11-29, Linux 6.18, 2 cores, one
/// hashing thread, 20 users pinging): 48.8–54.7 logins/s against 56.9–60.4, and `PNG` p99
/// 0.6–2.9 ms against 0.7–1.1 ms, each preemption costing the workers and the hash their caches;
/// niceness 19 measured the same as 9.
const HASH_PRIORITY: u8 = 23;

/// One hashing thread: takes jobs until the [`HashPool`] is dropped.
fn work(queue: &Queue) {
    let lowered = ThreadPriorityValue::try_from(HASH_PRIORITY)
        .map_err(|e| e.to_string())
        .and_then(|p| {
            set_current_thread_priority(ThreadPriority::Crossplatform(p)).map_err(|e| e.to_string())
        });
    if let Err(e) = lowered {
        tracing::warn!(error = %e, "could not lower the hashing thread's priority");
    }
    let mut verifier = Verifier::new();
    loop {
        // Only taking a job holds the lock; hashing runs in parallel.
        let job = {
            let mut q = queue.lock();
            loop {
                if q.closed {
                    return;
                }
                if let Some(job) = q.pop() {
                    queue.popped.notify_waiters();
                    break job;
                }
                q = queue.ready.wait(q).unwrap_or_else(|p| p.into_inner());
            }
        };
        // The requester went away (client disconnected): no need to hash for nobody.
        if job.reply.is_closed() {
            continue;
        }
        let ok = match &job.phc {
            Some(phc) => verifier.verify(&job.password, phc),
            None => {
                verifier.verify(&job.password, dummy_hash());
                false
            }
        };
        let _ = job.reply.send(ok);
    }
}

/// A hash of a random password at the default costs, verified against for unknown accounts.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| hash_password(&crate::passport::random_token(24)).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use msgr_core::password::{hash_password_with, PasswordParams};

    const CHEAP: PasswordParams = PasswordParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn job(tag: &str) -> (Job, oneshot::Receiver<bool>) {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            password: tag.to_owned(),
            phc: None,
            reply,
        };
        (job, rx)
    }

    /// Addresses take turns: the second address's one job comes out second, not after the
    /// first address's whole backlog.
    #[test]
    fn the_queue_serves_addresses_in_turn() {
        let mut q = FairQueue::default();
        let a = AddrKey::of("192.0.2.1".parse().unwrap());
        let b = AddrKey::of("198.51.100.1".parse().unwrap());
        let mut keep = Vec::new();
        for (key, tag) in [(a, "a1"), (a, "a2"), (a, "a3"), (b, "b1"), (a, "a4")] {
            let (j, rx) = job(tag);
            keep.push(rx);
            if !q.queues.contains_key(&key) {
                q.ring.push_back(key);
            }
            q.queues.entry(key).or_default().push_back(j);
            q.len += 1;
        }
        let order: Vec<String> = std::iter::from_fn(|| q.pop().map(|j| j.password)).collect();
        assert_eq!(order, ["a1", "b1", "a2", "a3", "a4"]);
        assert_eq!(q.len, 0);
        assert!(q.queues.is_empty() && q.ring.is_empty());
    }

    /// One address's share is bounded: past it, a check waits (its job comes back) while
    /// another address still gets in, up to the total.
    #[test]
    fn shares_and_the_total_are_bounded() {
        // A queue without threads, so nothing is taken while it fills.
        let q = Queue {
            state: Mutex::new(FairQueue::default()),
            ready: Condvar::new(),
            popped: tokio::sync::Notify::new(),
            per_addr: 2,
            total: 3,
        };
        let a = AddrKey::of("192.0.2.1".parse().unwrap());
        let b = AddrKey::of("198.51.100.1".parse().unwrap());
        let c = AddrKey::of("203.0.113.1".parse().unwrap());
        let push = |key| q.push(key, job("x").0);
        assert!(matches!(push(a), Push::Queued));
        assert!(matches!(push(a), Push::Queued));
        assert!(matches!(push(a), Push::Full(_)));
        assert!(matches!(push(b), Push::Queued));
        assert!(matches!(push(c), Push::Full(_)), "total reached");
    }

    /// Eight checks from one address with a share of one: all answered, in order, none
    /// refused (those past the share wait for a place).
    #[tokio::test]
    async fn checks_past_a_share_wait_for_a_place() {
        let pool = std::sync::Arc::new(HashPool::start(1, 1, 2).unwrap());
        let phc = hash_password_with("pw", CHEAP).unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let (pool, phc) = (pool.clone(), phc.clone());
                let password = if i % 2 == 0 { "pw" } else { "x" };
                tokio::spawn(async move { pool.verify(password, Some(phc), IP).await.unwrap() })
            })
            .collect();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        assert_eq!(
            results,
            [true, false, true, false, true, false, true, false]
        );
    }

    #[tokio::test]
    async fn verifies_and_refuses() {
        let pool = HashPool::start(2, 4, 16).unwrap();
        let phc = hash_password_with("right", CHEAP).unwrap();
        assert!(pool.verify("right", Some(phc.clone()), IP).await.unwrap());
        assert!(!pool.verify("wrong", Some(phc), IP).await.unwrap());
        assert!(!pool.verify("right", None, IP).await.unwrap());
    }

    /// The hashing threads run below the async workers' priority (niceness 0).
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_threads_are_niced() {
        let pool = HashPool::start(1, 4, 16).unwrap();
        let phc = hash_password_with("pw", CHEAP).unwrap();
        // One job done: the thread has started and set its priority.
        assert!(pool.verify("pw", Some(phc), IP).await.unwrap());
        let mut nices = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap() {
            let dir = task.unwrap().path();
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            if comm.trim() == "msgr-hash-0" {
                let stat = std::fs::read_to_string(dir.join("stat")).unwrap();
                // Fields after the parenthesised name: state is 3rd, nice is the 19th.
                let after = &stat[stat.rfind(')').unwrap() + 2..];
                nices.push(after.split(' ').nth(16).unwrap().parse::<i32>().unwrap());
            }
        }
        assert!(!nices.is_empty(), "no msgr-hash-0 thread found");
        assert!(nices.iter().all(|n| *n > 0), "niceness {nices:?}");
    }
}
