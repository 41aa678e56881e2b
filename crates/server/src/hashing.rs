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
use std::sync::{Arc, Mutex, OnceLock};
use thread_priority::{set_current_thread_priority, ThreadPriority, ThreadPriorityValue};
use tokio::sync::{mpsc, oneshot};

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

/// Handle to the hashing threads. They exit when the last handle is dropped.
pub(crate) struct HashPool {
    jobs: mpsc::Sender<Job>,
}

impl HashPool {
    /// Starts `threads` hashing threads (at least one). Sign-ins beyond `threads` wait in a
    /// queue of `4 × threads`, then in their own tasks: the queue never grows past that.
    pub fn start(threads: usize) -> std::io::Result<HashPool> {
        let threads = threads.max(1);
        let (jobs, rx) = mpsc::channel::<Job>(threads * 4);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("msgr-hash-{i}"))
                .spawn(move || work(&rx))?;
        }
        Ok(HashPool { jobs })
    }

    /// Whether `password` matches `phc` (always `false` for `None`, after the same work).
    pub async fn verify(&self, password: &str, phc: Option<String>) -> Result<bool, PoolClosed> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            password: password.to_owned(),
            phc,
            reply,
        };
        self.jobs.send(job).await.map_err(|_| PoolClosed)?;
        answer.await.map_err(|_| PoolClosed)
    }
}

/// The hashing threads' OS priority on the crate's 0–99 scale: 23 is niceness 9 on Linux.
/// Below the async workers (niceness 0), so a login flood yields the CPU to the sessions
/// already online, without starving the logins themselves (niceness 19 would).
const HASH_PRIORITY: u8 = 23;

/// One hashing thread: takes jobs until every [`HashPool`] handle is gone.
fn work(rx: &Mutex<mpsc::Receiver<Job>>) {
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
        // Only the wait for a job holds the lock; hashing runs in parallel.
        let job = {
            let mut rx = rx.lock().unwrap_or_else(|p| p.into_inner());
            rx.blocking_recv()
        };
        let Some(job) = job else { return };
        let ok = match &job.phc {
            Some(phc) => verifier.verify(&job.password, phc),
            None => {
                verifier.verify(&job.password, dummy_hash());
                false
            }
        };
        // The requester may have gone (client disconnected); nothing to do then.
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

    #[tokio::test]
    async fn verifies_and_refuses() {
        let pool = HashPool::start(2).unwrap();
        let phc = hash_password_with("right", CHEAP).unwrap();
        assert!(pool.verify("right", Some(phc.clone())).await.unwrap());
        assert!(!pool.verify("wrong", Some(phc)).await.unwrap());
        assert!(!pool.verify("right", None).await.unwrap());
    }

    /// The hashing threads run below the async workers' priority (niceness 0).
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_threads_are_niced() {
        let pool = HashPool::start(1).unwrap();
        let phc = hash_password_with("pw", CHEAP).unwrap();
        // One job done: the thread has started and set its priority.
        assert!(pool.verify("pw", Some(phc)).await.unwrap());
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
