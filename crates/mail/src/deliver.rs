//! Group commit: every session's deliveries go through one owner task that commits whatever has gathered
//! in one store transaction, so twenty concurrent senders cost one fsync per batch instead of twenty.
//!
//! A session sends its [`Delivery`] into a bounded channel with a oneshot for the answer and waits. The
//! owner takes up to `group_commit_max` deliveries at once, runs [`MailStore::deliver`] for them on the
//! blocking pool and answers each. The answer is `Ok` only after the store made the batch durable, which
//! is what lets SMTP say `250` (and POP3, IMAP `APPEND`, the web compose acknowledge) at that moment.

use crate::notify::{MailEvent, MailEventKind, Notifier};
use msgr_store::{Delivered, Delivery, MailStore, Store, StoreError};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why a delivery was not stored. Nothing of it is on disk in any case.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// The store refused this delivery (over quota, unknown account or folder, …); the others in its batch
    /// are unaffected.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The whole batch failed (the database could not commit): a temporary failure for every sender.
    #[error("delivery batch failed: {0}")]
    Batch(String),
    /// The server is shutting down and takes no more deliveries.
    #[error("mail delivery is shutting down")]
    ShuttingDown,
}

impl DeliverError {
    /// Whether the message would fit if the recipient made room (`552 5.2.2`, POP3/IMAP over quota).
    pub fn is_over_quota(&self) -> bool {
        matches!(self, DeliverError::Store(StoreError::OverQuota { .. }))
    }
}

struct Job {
    delivery: Delivery,
    reply: oneshot::Sender<Result<Delivered, DeliverError>>,
}

/// The sessions' handle to the group-commit task. Cheap to share (`Context` holds one).
pub struct Deliverer {
    jobs: mpsc::Sender<Job>,
}

impl Deliverer {
    /// Starts the owner task on `tracker`. It commits batches of at most `max_batch` deliveries with
    /// `default_quota` for accounts without their own, and stops when `shutdown` is cancelled (after
    /// committing what was already queued) or when every handle is gone.
    ///
    /// The queue holds `4 × max_batch` deliveries: enough for the next batch to gather while one commits;
    /// beyond that senders wait for room, which is the back-pressure that keeps memory bounded.
    ///
    /// Every stored copy is announced on `notify` after the commit (IMAP IDLE, later Messenger).
    pub fn start(
        store: Arc<Store>,
        max_batch: usize,
        default_quota: u64,
        notify: Arc<Notifier>,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Deliverer {
        let max_batch = max_batch.max(1);
        let (jobs, rx) = mpsc::channel(max_batch * 4);
        tracker.spawn(owner(store, rx, max_batch, default_quota, notify, shutdown));
        Deliverer { jobs }
    }

    /// Stores `delivery` (all of its targets and its outbound queue entry, or nothing). Returns once it is
    /// durable.
    pub async fn deliver(&self, delivery: Delivery) -> Result<Delivered, DeliverError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { delivery, reply })
            .await
            .map_err(|_| DeliverError::ShuttingDown)?;
        answer.await.map_err(|_| DeliverError::ShuttingDown)?
    }
}

/// The owner task: gathers what is queued, commits it, answers, repeats.
async fn owner(
    store: Arc<Store>,
    mut rx: mpsc::Receiver<Job>,
    max_batch: usize,
    default_quota: u64,
    notify: Arc<Notifier>,
    shutdown: CancellationToken,
) {
    let mut jobs: Vec<Job> = Vec::with_capacity(max_batch);
    loop {
        let n = tokio::select! {
            n = rx.recv_many(&mut jobs, max_batch) => n,
            () = shutdown.cancelled() => {
                // Whatever was queued before the shutdown was promised an answer: commit it, then stop.
                rx.close();
                while let Some(job) = rx.recv().await {
                    jobs.push(job);
                    if jobs.len() == max_batch {
                        commit(&store, std::mem::take(&mut jobs), default_quota, &notify).await;
                    }
                }
                if !jobs.is_empty() {
                    commit(&store, std::mem::take(&mut jobs), default_quota, &notify).await;
                }
                return;
            }
        };
        if n == 0 {
            // Every handle is gone: nobody can deliver any more.
            return;
        }
        commit(&store, std::mem::take(&mut jobs), default_quota, &notify).await;
        jobs.reserve(max_batch);
    }
}

/// One transaction for `jobs`, then one answer each.
async fn commit(store: &Arc<Store>, jobs: Vec<Job>, default_quota: u64, notify: &Notifier) {
    let (batch, replies): (Vec<Delivery>, Vec<_>) =
        jobs.into_iter().map(|j| (j.delivery, j.reply)).unzip();
    let size = batch.len();
    let store = store.clone();
    let outcome = tokio::task::spawn_blocking(move || store.deliver(&batch, default_quota)).await;
    match outcome {
        Ok(Ok(results)) if results.len() == size => {
            for (reply, result) in replies.into_iter().zip(results) {
                // Durable now: the mailboxes' listeners may look.
                if let Ok(delivered) = &result {
                    for m in &delivered.stored {
                        notify.publish(MailEvent {
                            account: m.account.clone(),
                            kind: MailEventKind::Arrived {
                                folder: m.folder.clone(),
                                special: m.special,
                                uid: m.uid,
                            },
                        });
                    }
                }
                // A sender that gave up (its connection dropped) just does not hear the answer.
                let _ = reply.send(result.map_err(DeliverError::from));
            }
        }
        Ok(Ok(results)) => {
            let why = format!("store answered {} results for {size}", results.len());
            tracing::error!("{why}");
            fail_all(replies, &why);
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, deliveries = size, "delivery batch failed");
            fail_all(replies, &e.to_string());
        }
        Err(e) => {
            tracing::error!(error = %e, deliveries = size, "delivery batch task failed");
            fail_all(replies, &e.to_string());
        }
    }
}

fn fail_all(replies: Vec<oneshot::Sender<Result<Delivered, DeliverError>>>, why: &str) {
    for reply in replies {
        let _ = reply.send(Err(DeliverError::Batch(why.to_owned())));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{testing, MailConfig};
    use msgr_store::{Flags, FolderRef, LocalTarget, MessageSummary, SpecialUse};

    fn delivery(account: &str, n: usize) -> Delivery {
        Delivery {
            raw: format!("Subject: {n}\r\n\r\nbody {n}\r\n").into_bytes(),
            summary: MessageSummary {
                subject: n.to_string(),
                ..MessageSummary::default()
            },
            internal_date: 0,
            targets: vec![LocalTarget {
                account: account.to_owned(),
                folder: FolderRef::Special(SpecialUse::Inbox),
                flags: Flags::empty(),
            }],
            outbound: None,
        }
    }

    /// Concurrent senders are committed together (batches of at most `group_commit_max`), each hears its
    /// own answer, and a failing delivery does not take the others of its batch with it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_deliveries_commit_in_groups() {
        let t = testing::context(MailConfig {
            group_commit_max: 8,
            ..MailConfig::default()
        });
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..40 {
            let ctx = t.ctx.clone();
            let account = if n % 10 == 9 {
                "ghost@example.com"
            } else {
                "alice@example.com"
            };
            tasks.spawn(async move { (n, ctx.deliverer.deliver(delivery(account, n)).await) });
        }
        let mut uids = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (n, result) = joined.unwrap();
            if n % 10 == 9 {
                assert!(
                    matches!(
                        result,
                        Err(DeliverError::Store(StoreError::AccountNotFound(_)))
                    ),
                    "{n}: {result:?}"
                );
            } else {
                let stored = result.unwrap().stored;
                assert_eq!(stored.len(), 1);
                uids.push(stored[0].uid);
            }
        }
        uids.sort_unstable();
        uids.dedup();
        assert_eq!(uids.len(), 36);
        let inbox = t
            .ctx
            .store
            .folder("alice@example.com", "INBOX")
            .unwrap()
            .unwrap();
        assert_eq!(t.ctx.store.messages(inbox.id).unwrap().len(), 36);
    }

    /// After shutdown nothing more is taken, and the owner task ends (the tracker empties).
    #[tokio::test]
    async fn shutdown_stops_the_owner() {
        let t = testing::context(MailConfig::default());
        t.ctx
            .deliverer
            .deliver(delivery("bob@example.com", 1))
            .await
            .unwrap();
        t.ctx.shutdown.cancel();
        t.tracker.close();
        tokio::time::timeout(std::time::Duration::from_secs(5), t.tracker.wait())
            .await
            .expect("the owner task stops");
        let late = t
            .ctx
            .deliverer
            .deliver(delivery("bob@example.com", 2))
            .await;
        assert!(matches!(late, Err(DeliverError::ShuttingDown)), "{late:?}");
    }
}
