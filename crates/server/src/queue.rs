//! The bounded queue that carries hub events to one session: small while idle.
//!
//! tokio's `mpsc` preallocates a block of 32 slots and pads its shared state to cache lines,
//! about 1 KB per session before any event arrives — a sixth of what an idle online user may
//! cost in all. A session's queue is empty nearly all the time, so this one keeps its items in
//! a `VecDeque` that allocates on the first event and is given back once a burst has drained,
//! and wakes its one receiver through a `Notify`. The API is the subset of tokio's the server
//! uses, with tokio's error types.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc::error::{TryRecvError, TrySendError};
use tokio::sync::Notify;

/// Capacity a drained queue may keep; a larger buffer (left by a burst) is freed.
const KEEP_SLOTS: usize = 16;

struct Shared<T> {
    items: Mutex<VecDeque<T>>,
    capacity: usize,
    /// Signalled on every send and when the last sender goes.
    ready: Notify,
    receiver_gone: AtomicBool,
    senders: AtomicUsize,
}

impl<T> Shared<T> {
    fn items(&self) -> MutexGuard<'_, VecDeque<T>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A queue holding at most `capacity` items (at least one).
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        items: Mutex::new(VecDeque::new()),
        capacity: capacity.max(1),
        ready: Notify::new(),
        receiver_gone: AtomicBool::new(false),
        senders: AtomicUsize::new(1),
    });
    (Sender(shared.clone()), Receiver(shared))
}

/// The sending side; cheap to clone.
pub struct Sender<T>(Arc<Shared<T>>);

/// The one receiving side.
pub struct Receiver<T>(Arc<Shared<T>>);

impl<T> Sender<T> {
    /// Queues `item` unless the queue is full or the receiver is gone; never waits.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        if self.0.receiver_gone.load(Ordering::Acquire) {
            return Err(TrySendError::Closed(item));
        }
        {
            let mut items = self.0.items();
            if items.len() >= self.0.capacity {
                return Err(TrySendError::Full(item));
            }
            items.push_back(item);
        }
        // With no receiver waiting this stores a permit, so a receiver between its emptiness
        // check and its wait still wakes.
        self.0.ready.notify_one();
        Ok(())
    }
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("queued", &self.0.items().len())
            .field("capacity", &self.0.capacity)
            .finish()
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.0.senders.fetch_add(1, Ordering::Relaxed);
        Sender(self.0.clone())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.0.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.ready.notify_one();
        }
    }
}

impl<T> Receiver<T> {
    /// The next item, waiting for one; `None` once every sender is gone and the queue is
    /// empty. Cancel-safe: an item is only taken when this returns it.
    pub async fn recv(&mut self) -> Option<T> {
        loop {
            if let Some(item) = self.pop() {
                return Some(item);
            }
            if self.0.senders.load(Ordering::Acquire) == 0 {
                // The last sender may have queued an item after the `pop` above and then gone:
                // look once more. With no sender left nothing can arrive after this.
                return self.pop();
            }
            self.0.ready.notified().await;
        }
    }

    /// The next item if there is one.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        match self.pop() {
            Some(item) => Ok(item),
            // As in `recv`: an item queued by the last sender just before it went is still taken.
            None if self.0.senders.load(Ordering::Acquire) == 0 => {
                self.pop().ok_or(TryRecvError::Disconnected)
            }
            None => Err(TryRecvError::Empty),
        }
    }

    fn pop(&self) -> Option<T> {
        let mut items = self.0.items();
        let item = items.pop_front();
        if items.is_empty() && items.capacity() > KEEP_SLOTS {
            *items = VecDeque::new();
        }
        item
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.0.receiver_gone.store(true, Ordering::Release);
        // Items may hold large shared buffers; free them now rather than with the last sender.
        let drained = std::mem::take(&mut *self.0.items());
        drop(drained);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::time::Duration;

    #[test]
    fn bounded_fifo_with_full_and_closed() {
        let (tx, mut rx) = channel(2);
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
        tx.try_send(1).unwrap();
        tx.clone().try_send(2).unwrap();
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        assert_eq!(rx.try_recv().unwrap(), 1);
        tx.try_send(4).unwrap();
        assert_eq!(rx.try_recv().unwrap(), 2);
        assert_eq!(rx.try_recv().unwrap(), 4);
        drop(rx);
        assert!(matches!(tx.try_send(5), Err(TrySendError::Closed(5))));
    }

    #[test]
    fn a_drained_burst_gives_its_buffer_back() {
        let (tx, mut rx) = channel(1000);
        for i in 0..500 {
            tx.try_send(i).unwrap();
        }
        for i in 0..500 {
            assert_eq!(rx.try_recv().unwrap(), i);
        }
        assert_eq!(rx.0.items().capacity(), 0);
    }

    #[tokio::test]
    async fn recv_waits_for_a_send_from_another_task() {
        let (tx, mut rx) = channel(8);
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            tx.try_send("hello").unwrap();
            tx
        });
        assert_eq!(rx.recv().await, Some("hello"));
        drop(sender.await.unwrap());
        assert_eq!(rx.recv().await, None);
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Disconnected)));
    }

    /// A receive abandoned by `select!` takes nothing: every item sent arrives exactly once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cancelled_receives_lose_nothing() {
        let (tx, mut rx) = channel(64);
        let producer = tokio::spawn(async move {
            let mut sent = 0u32;
            while sent < 20_000 {
                match tx.try_send(sent) {
                    Ok(()) => sent += 1,
                    Err(_) => tokio::task::yield_now().await,
                }
            }
        });
        let mut next = 0u32;
        while next < 20_000 {
            tokio::select! {
                got = rx.recv() => {
                    assert_eq!(got, Some(next));
                    next += 1;
                }
                _ = tokio::task::yield_now() => {}
            }
        }
        producer.await.unwrap();
    }
}
