//! In-process change notification per account: "something in this mailbox changed".
//!
//! Whoever writes to a mailbox (the group-commit [`Deliverer`](crate::Deliverer) after its commit, POP3 at
//! `QUIT`, IMAP after `STORE`/`EXPUNGE`/`COPY`/`MOVE`/folder changes) calls [`Notifier::publish`] once the
//! write is durable. Two kinds of listeners hear it:
//!
//! - a [`Subscription`] for one account (an IMAP session): a coalescing signal, not a queue. Its owner
//!   learns only that the account changed and asks the store what changed (IMAP must re-read the folder
//!   anyway to number messages), so a burst of a thousand deliveries costs one wake-up and no memory.
//! - a tap ([`Notifier::tap`]) that receives every [`MailEvent`] of every account through a bounded
//!   channel: the hub will turn these into MSN Messenger "new mail" notifications (issue 15). A full tap
//!   loses events (counted and logged) rather than slowing delivery down.
//!
//! An account's entry lives exactly as long as it has subscriptions: the last [`Subscription`] dropped
//! removes it, so sessions ending leave nothing behind.

use msgr_store::SpecialUse;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, Notify};

/// What happened in a mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MailEventKind {
    /// A message was stored (delivered, sent copy, APPEND, COPY/MOVE target).
    Arrived {
        folder: String,
        special: Option<SpecialUse>,
        uid: u32,
    },
    /// Flags changed, messages were expunged or moved, or folders were created, renamed or deleted.
    Changed,
}

/// One change of one account's mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailEvent {
    /// The account, lowercased.
    pub account: String,
    pub kind: MailEventKind,
}

/// The signal one account's subscribers share.
#[derive(Debug, Default)]
struct Signal {
    /// Bumped by every publish; a subscriber compares it with the value it saw last.
    generation: AtomicU64,
    notify: Notify,
}

#[derive(Default)]
struct Inner {
    accounts: HashMap<String, Arc<Signal>>,
    taps: Vec<mpsc::Sender<MailEvent>>,
}

/// The registry of listeners. One per mail server, in [`Context`](crate::Context).
#[derive(Default)]
pub struct Notifier {
    inner: Arc<Mutex<Inner>>,
    /// Events a full tap could not take.
    dropped: AtomicU64,
}

impl Notifier {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Only map and vector updates happen under this lock: a panic elsewhere cannot leave them torn.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribes to changes of `account` (any letter case). Changes published before this call are not
    /// reported.
    pub fn subscribe(&self, account: &str) -> Subscription {
        let account = account.to_ascii_lowercase();
        let signal = self
            .lock()
            .accounts
            .entry(account.clone())
            .or_default()
            .clone();
        let seen = signal.generation.load(Ordering::Acquire);
        Subscription {
            inner: self.inner.clone(),
            account,
            signal,
            seen,
        }
    }

    /// A bounded stream of every account's events (`capacity` of them waiting at most). Dropping the
    /// receiver ends the tap.
    pub fn tap(&self, capacity: usize) -> mpsc::Receiver<MailEvent> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.lock().taps.push(tx);
        rx
    }

    /// Tells the listeners of `event.account` (and the taps) that its mailbox changed. Call it after the
    /// change is durable. Never waits.
    pub fn publish(&self, event: MailEvent) {
        let account = event.account.to_ascii_lowercase();
        let mut inner = self.lock();
        if let Some(signal) = inner.accounts.get(&account) {
            signal.generation.fetch_add(1, Ordering::AcqRel);
            signal.notify.notify_waiters();
        }
        inner.taps.retain(|tap| match tap.try_send(event.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(dropped = n, "mail event tap full: event dropped");
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }

    /// A shorthand for [`MailEventKind::Changed`].
    pub fn changed(&self, account: &str) {
        self.publish(MailEvent {
            account: account.to_ascii_lowercase(),
            kind: MailEventKind::Changed,
        });
    }

    /// Accounts with at least one subscription (for tests: sessions that ended leave none).
    pub fn subscribed_accounts(&self) -> usize {
        self.lock().accounts.len()
    }
}

/// One listener's view of one account. Dropping it unsubscribes.
pub struct Subscription {
    inner: Arc<Mutex<Inner>>,
    account: String,
    signal: Arc<Signal>,
    /// The generation this subscriber has acted on.
    seen: u64,
}

impl Subscription {
    /// Whether a change was published since the last call (or since subscribing); never waits.
    pub fn take_changed(&mut self) -> bool {
        let now = self.signal.generation.load(Ordering::Acquire);
        let changed = now != self.seen;
        self.seen = now;
        changed
    }

    /// Waits until a change is published that this subscriber has not seen yet. Cancel-safe.
    pub async fn changed(&mut self) {
        let signal = self.signal.clone();
        loop {
            let notified = signal.notify.notified();
            tokio::pin!(notified);
            // Registered before the generation is read: a publish in between still wakes us.
            notified.as_mut().enable();
            if self.take_changed() {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        // Two references left: the map's and ours. Checked under the lock, so no subscriber can be
        // cloning it at the same time.
        if Arc::strong_count(&self.signal) == 2 {
            inner.accounts.remove(&self.account);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn subscribers_wake_and_entries_go_with_the_last_one() {
        let n = Notifier::default();
        let mut a = n.subscribe("Alice@Example.com");
        let mut b = n.subscribe("alice@example.com");
        assert!(!a.take_changed());
        n.changed("ALICE@example.com");
        tokio::time::timeout(Duration::from_secs(1), a.changed())
            .await
            .expect("woken");
        assert!(b.take_changed());
        assert!(!b.take_changed());
        // Another account's change is not ours.
        n.changed("bob@example.com");
        assert!(!a.take_changed());
        assert_eq!(n.subscribed_accounts(), 1);
        drop(a);
        assert_eq!(n.subscribed_accounts(), 1);
        drop(b);
        assert_eq!(n.subscribed_accounts(), 0);
    }

    #[tokio::test]
    async fn a_waiting_subscriber_hears_a_later_publish() {
        let n = Arc::new(Notifier::default());
        let mut s = n.subscribe("alice@example.com");
        let publisher = n.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            publisher.changed("alice@example.com");
        });
        tokio::time::timeout(Duration::from_secs(2), s.changed())
            .await
            .expect("woken");
    }

    #[tokio::test]
    async fn taps_are_bounded_and_closed_taps_removed() {
        let n = Notifier::default();
        let mut rx = n.tap(2);
        for _ in 0..5 {
            n.changed("alice@example.com");
        }
        assert_eq!(n.dropped.load(Ordering::Relaxed), 3);
        assert!(rx.try_recv().is_ok());
        drop(rx);
        n.changed("alice@example.com");
        assert!(n.lock().taps.is_empty());
    }
}
