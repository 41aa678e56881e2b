//! The bounded queue that carries hub events to one session: small while idle, bounded by
//! bytes as well as by count.
//!
//! tokio's `mpsc` preallocates a block of 32 slots and pads its shared state to cache lines,
//! about 1 KB per session before any event arrives — a sixth of what an idle online user may
//! cost in all. A session's queue is empty nearly all the time, so this one keeps its items in
//! a `VecDeque` that allocates on the first event and is given back once a burst has drained,
//! and wakes its one receiver through a `Notify`. The API is the subset of tokio's the server
//! uses, with tokio's error types.
//!
//! A count alone does not bound memory: a relayed switchboard message may hold 64 KB, so 1,024
//! of them queued for one reader that does not read were 64 MB. Each item therefore has a
//! [`Weigh::weight`] (its bytes), and the queue holds at most `max_bytes` of them. An item
//! taken by the receiver still counts until the receiver calls [`Receiver::settle`], which the
//! connection does once what it rendered from those items has been written to the socket: the
//! budget covers a message from the moment it is queued until the kernel has it, whether it
//! sits in the queue or in the connection's output buffer. An empty queue takes any one item,
//! so a budget smaller than the largest message never refuses every message.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc::error::{TryRecvError, TrySendError};
use tokio::sync::Notify;

/// Capacity a drained queue may keep; a larger buffer (left by a burst) is freed.
const KEEP_SLOTS: usize = 16;

/// What an item costs while it is queued and until it has been written out.
pub trait Weigh {
    /// Bytes held for this item (an estimate of what it renders to, for small items).
    fn weight(&self) -> usize;
}

struct Items<T> {
    queue: VecDeque<T>,
    /// Weight of the items queued, plus that of the items taken but not yet settled.
    held: usize,
}

struct Shared<T> {
    items: Mutex<Items<T>>,
    capacity: usize,
    max_bytes: usize,
    /// Signalled on every send and when the last sender goes.
    ready: Notify,
    receiver_gone: AtomicBool,
    senders: AtomicUsize,
}

impl<T> Shared<T> {
    fn items(&self) -> MutexGuard<'_, Items<T>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A queue holding at most `capacity` items (at least one), with no byte bound.
#[cfg(test)]
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    channel_with_bytes(capacity, usize::MAX)
}

/// A queue holding at most `capacity` items (at least one) and at most `max_bytes` of their
/// weight, counted until the receiver settles them (see the module's header).
pub fn channel_with_bytes<T>(capacity: usize, max_bytes: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        items: Mutex::new(Items {
            queue: VecDeque::new(),
            held: 0,
        }),
        capacity: capacity.max(1),
        max_bytes,
        ready: Notify::new(),
        receiver_gone: AtomicBool::new(false),
        senders: AtomicUsize::new(1),
    });
    (Sender(shared.clone()), Receiver { shared, taken: 0 })
}

/// The sending side; cheap to clone.
pub struct Sender<T>(Arc<Shared<T>>);

/// The one receiving side.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    /// Weight of the items returned since the last [`Receiver::settle`].
    taken: usize,
}

impl<T: Weigh> Sender<T> {
    /// Queues `item` unless the queue is full (by count, or by bytes: see the module's header)
    /// or the receiver is gone; never waits.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        if self.0.receiver_gone.load(Ordering::Acquire) {
            return Err(TrySendError::Closed(item));
        }
        let weight = item.weight();
        {
            let mut items = self.0.items();
            let over_bytes = items.held > 0 && items.held.saturating_add(weight) > self.0.max_bytes;
            if items.queue.len() >= self.0.capacity || over_bytes {
                return Err(TrySendError::Full(item));
            }
            items.held += weight;
            items.queue.push_back(item);
        }
        // With no receiver waiting this stores a permit, so a receiver between its emptiness
        // check and its wait still wakes.
        self.0.ready.notify_one();
        Ok(())
    }
}

impl<T> Sender<T> {
    /// Bytes held for the receiver: queued, or taken and not yet settled.
    pub fn held_bytes(&self) -> usize {
        self.0.items().held
    }
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let items = self.0.items();
        f.debug_struct("Sender")
            .field("queued", &items.queue.len())
            .field("held_bytes", &items.held)
            .field("capacity", &self.0.capacity)
            .field("max_bytes", &self.0.max_bytes)
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

impl<T: Weigh> Receiver<T> {
    /// The next item, waiting for one; `None` once every sender is gone and the queue is
    /// empty. Cancel-safe: an item is only taken when this returns it.
    pub async fn recv(&mut self) -> Option<T> {
        loop {
            if let Some(item) = self.pop() {
                return Some(item);
            }
            if self.shared.senders.load(Ordering::Acquire) == 0 {
                // The last sender may have queued an item after the `pop` above and then gone:
                // look once more. With no sender left nothing can arrive after this.
                return self.pop();
            }
            self.shared.ready.notified().await;
        }
    }

    /// The next item if there is one.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        match self.pop() {
            Some(item) => Ok(item),
            // As in `recv`: an item queued by the last sender just before it went is still taken.
            None if self.shared.senders.load(Ordering::Acquire) == 0 => {
                self.pop().ok_or(TryRecvError::Disconnected)
            }
            None => Err(TryRecvError::Empty),
        }
    }

    fn pop(&mut self) -> Option<T> {
        let mut items = self.shared.items();
        let item = items.queue.pop_front();
        if let Some(item) = &item {
            self.taken += item.weight();
        }
        if items.queue.is_empty() && items.queue.capacity() > KEEP_SLOTS {
            items.queue = VecDeque::new();
        }
        item
    }
}

impl<T> Receiver<T> {
    /// Everything taken so far has been dealt with (written out): its bytes no longer count
    /// against the budget.
    pub fn settle(&mut self) {
        if self.taken > 0 {
            let mut items = self.shared.items();
            items.held = items.held.saturating_sub(self.taken);
            self.taken = 0;
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.shared.receiver_gone.store(true, Ordering::Release);
        // Items may hold large shared buffers; free them now rather than with the last sender.
        let drained = {
            let mut items = self.shared.items();
            items.held = 0;
            std::mem::take(&mut items.queue)
        };
        drop(drained);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::time::Duration;

    impl Weigh for i32 {
        fn weight(&self) -> usize {
            0
        }
    }
    impl Weigh for u32 {
        fn weight(&self) -> usize {
            0
        }
    }
    impl Weigh for &str {
        fn weight(&self) -> usize {
            self.len()
        }
    }

    #[test]
    fn bytes_count_until_settled() {
        let (tx, mut rx) = channel_with_bytes(100, 10);
        tx.try_send("abcd").unwrap();
        tx.try_send("efgh").unwrap();
        assert!(matches!(tx.try_send("ijk"), Err(TrySendError::Full("ijk"))));
        assert_eq!(tx.held_bytes(), 8);
        // Taken but not yet written: still counted.
        assert_eq!(rx.try_recv().unwrap(), "abcd");
        assert_eq!(rx.try_recv().unwrap(), "efgh");
        assert!(tx.try_send("ijk").is_err());
        rx.settle();
        assert_eq!(tx.held_bytes(), 0);
        // An empty queue takes one item over the budget, so no message is refused forever.
        tx.try_send("a very long item").unwrap();
        assert!(tx.try_send("x").is_err());
        assert_eq!(rx.try_recv().unwrap(), "a very long item");
        rx.settle();
        tx.try_send("x").unwrap();
        drop(rx);
        assert_eq!(tx.held_bytes(), 0);
    }

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
        assert_eq!(rx.shared.items().queue.capacity(), 0);
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
