//! The bounded queue that carries hub events to one session: small while idle, bounded by
//! bytes as well as by count.
//!
//! tokio's `mpsc` preallocates a block of 32 slots and pads its shared state to cache lines,
//! about 1 KB per session before any event arrives — a sixth of what an idle online user may
//! cost in all. A session's queue is empty nearly all the time, so this one keeps its items in
//! a `VecDeque` that allocates on the first event and is given back once a burst has drained,
//! and wakes its one receiver through the waker that receiver left under the queue's lock (one
//! lock per wait, where a `Notify` took its own lock to register and again to deregister on
//! every round of the connection loop). The API is the subset of tokio's the server
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
//!
//! A TCP connection's queue may also hold its socket's write half (an [`Outlet`]): then a
//! sender with an item that is already wire bytes (a relayed switchboard message, see
//! [`Direct`]) writes it to the socket itself when nothing else is pending for that
//! connection, instead of queueing it and waking the connection's task, which would only
//! copy it to the same socket (a task wake-up, poll and queue round per relayed message).
//! "Nothing pending" is checked under the queue's lock: no item queued, none taken and not yet
//! settled, no unwritten remainder, and the connection not writing its own output (between
//! [`Receiver::begin_write`] and [`Receiver::settle`]). So the byte stream never interleaves,
//! and messages from one sender keep their order: once one of them waits in the queue, the
//! next queues behind it. A direct write the kernel takes only in part leaves the rest in the
//! queue's remainder slot, counted against the byte budget; the connection writes it before
//! anything else. The kernel refusing it all (`WouldBlock`) queues the item as usual.

use bytes::Bytes;
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use tokio::sync::mpsc::error::{TryRecvError, TrySendError};

/// Capacity a drained queue may keep; a larger buffer (left by a burst) is freed.
const KEEP_SLOTS: usize = 16;

/// What an item costs while it is queued and until it has been written out.
pub trait Weigh {
    /// Bytes held for this item (an estimate of what it renders to, for small items).
    fn weight(&self) -> usize;
}

/// An item that may go straight to the receiver's socket (see the module's header).
pub trait Direct: Sized {
    /// The item's bytes exactly as the connection would write them, if it renders to a fixed
    /// byte string whatever the receiving session's state; `None` for items the session
    /// renders itself.
    fn wire(&self) -> Option<&Bytes>;
    /// An item that renders to `rest`: what a direct write left unwritten.
    fn rest(rest: Bytes) -> Self;
}

/// The writing side of a connection's socket, for the senders' direct writes. Never waits.
pub trait Outlet: Send + Sync {
    /// Writes what the socket takes now of `buf`; `WouldBlock` if it takes nothing.
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
}

impl Outlet for tokio::net::tcp::OwnedWriteHalf {
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        tokio::net::tcp::OwnedWriteHalf::try_write(self, buf)
    }
}

struct Items<T> {
    queue: VecDeque<T>,
    /// Weight of the items queued, plus that of the items taken but not yet settled, plus the
    /// remainder of a partial direct write.
    held: usize,
    /// The connection's socket, while its task runs and takes direct writes.
    outlet: Option<std::sync::Arc<dyn Outlet>>,
    /// The connection is writing (or about to write) output of its own.
    writing: bool,
    /// What a partial direct write left: the next bytes the connection must write.
    rest: Option<Bytes>,
    /// The receiver, waiting for an item (or for the last sender to go).
    waker: Option<Waker>,
}

/// Takes the next item: the remainder of a partial direct write first, which goes before
/// anything queued after it.
fn take<T: Direct + Weigh>(items: &mut Items<T>, taken: &mut usize) -> Option<T> {
    if let Some(rest) = items.rest.take() {
        *taken += rest.len();
        return Some(T::rest(rest));
    }
    let item = items.queue.pop_front();
    if let Some(item) = &item {
        *taken += item.weight();
    }
    if items.queue.is_empty() && items.queue.capacity() > KEEP_SLOTS {
        items.queue = VecDeque::new();
    }
    item
}

/// Wakes the receiver if it waits; after the lock is let go, so it does not run into it.
fn wake<T>(mut items: MutexGuard<'_, Items<T>>) {
    let waker = items.waker.take();
    drop(items);
    if let Some(w) = waker {
        w.wake();
    }
}

struct Shared<T> {
    items: Mutex<Items<T>>,
    capacity: usize,
    max_bytes: usize,
    receiver_gone: AtomicBool,
    /// A sender dropped the receiving connection ([`Sender::kill`]). Set under the lock of
    /// `items`, read without it: the receiver also reads it under that lock before it leaves
    /// its waker, so a kill is never missed.
    killed: AtomicBool,
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
            outlet: None,
            writing: false,
            rest: None,
            waker: None,
        }),
        capacity: capacity.max(1),
        max_bytes,
        receiver_gone: AtomicBool::new(false),
        killed: AtomicBool::new(false),
        senders: AtomicUsize::new(1),
    });
    (
        Sender(shared.clone()),
        Receiver {
            shared,
            taken: 0,
            writing: false,
            direct: false,
        },
    )
}

/// The sending side; cheap to clone.
pub struct Sender<T>(Arc<Shared<T>>);

/// The one receiving side.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    /// Weight of the items returned since the last [`Receiver::settle`].
    taken: usize,
    /// [`Receiver::begin_write`] was called since the last [`Receiver::settle`].
    writing: bool,
    /// An outlet was set: writes must be announced with [`Receiver::begin_write`].
    direct: bool,
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
            // The receiver looks at the queue and leaves its waker under this lock: it has
            // either seen the item or will be woken.
            wake(items);
        }
        Ok(())
    }
}

impl<T: Weigh + Direct> Sender<T> {
    /// As [`Sender::try_send`], but an item with [`Direct::wire`] bytes is written straight to
    /// the receiver's socket when its queue has an [`Outlet`] and nothing is pending for it
    /// (see the module's header). `Ok` means written or queued, as with `try_send`.
    pub fn try_send_direct(&self, item: T) -> Result<(), TrySendError<T>> {
        if self.0.receiver_gone.load(Ordering::Acquire) {
            return Err(TrySendError::Closed(item));
        }
        {
            let mut items = self.0.items();
            let idle = items.queue.is_empty() && items.held == 0 && !items.writing;
            if let (true, Some(outlet), Some(wire)) = (idle, &items.outlet, item.wire()) {
                match outlet.try_write(wire) {
                    Ok(n) if n >= wire.len() => return Ok(()),
                    Ok(n) => {
                        let rest = wire.slice(n..);
                        items.held = rest.len();
                        items.rest = Some(rest);
                        wake(items);
                        return Ok(());
                    }
                    // The socket is full (or failed, which the connection will see itself):
                    // the item waits in the queue like any other.
                    Err(_) => {}
                }
            }
        }
        self.try_send(item)
    }
}

impl<T> Sender<T> {
    /// Drops the receiving connection (its session cannot keep up: a full queue): its task
    /// sees [`Next::Killed`] and closes. The queue carries this, rather than a cancellation
    /// token of its own per connection, because every online user keeps its connection's
    /// queue anyway: a token was another allocation (112 bytes), and waiting on it 80 bytes
    /// more in every connection's task.
    pub fn kill(&self) {
        let items = self.0.items();
        self.0.killed.store(true, Ordering::Release);
        wake(items);
    }

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
            wake(self.0.items());
        }
    }
}

/// What [`Receiver::next`] waited for.
#[derive(Debug)]
pub enum Next<T> {
    Item(T),
    /// A sender dropped this connection ([`Sender::kill`]).
    Killed,
}

impl<T: Weigh + Direct> Receiver<T> {
    /// The next item, or the connection's end by [`Sender::kill`] (which goes first), waiting
    /// for either. Once every sender is gone and the queue is empty it never returns, as a
    /// `select!` branch that is switched off. Cancel-safe: an item is only taken when this
    /// returns it.
    pub async fn next(&mut self) -> Next<T> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// [`Receiver::next`] as a poll.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Next<T>> {
        if self.shared.killed.load(Ordering::Acquire) {
            return Poll::Ready(Next::Killed);
        }
        let mut items = self.shared.items();
        if let Some(item) = take(&mut items, &mut self.taken) {
            return Poll::Ready(Next::Item(item));
        }
        if self.shared.killed.load(Ordering::Acquire) {
            return Poll::Ready(Next::Killed);
        }
        // Nothing can arrive, nor a kill, once the senders are gone: no waker to leave.
        if self.shared.senders.load(Ordering::Acquire) > 0 {
            match &items.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => items.waker = Some(cx.waker().clone()),
            }
        }
        Poll::Pending
    }

    /// The next item, waiting for one; `None` once every sender is gone and the queue is
    /// empty. Cancel-safe: an item is only taken when this returns it.
    #[cfg(test)]
    pub async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// [`Receiver::recv`] as a poll: the item, or the waker left for the next send.
    #[cfg(test)]
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut items = self.shared.items();
        if let Some(item) = take(&mut items, &mut self.taken) {
            return Poll::Ready(Some(item));
        }
        // Under the lock: a sender queues under it too, and the last one to go takes it to
        // wake this receiver, so nothing can arrive once this reads zero.
        if self.shared.senders.load(Ordering::Acquire) == 0 {
            return Poll::Ready(None);
        }
        match &items.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => items.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The next item if there is one.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut items = self.shared.items();
        match take(&mut items, &mut self.taken) {
            Some(item) => Ok(item),
            None if self.shared.senders.load(Ordering::Acquire) == 0 => {
                Err(TryRecvError::Disconnected)
            }
            None => Err(TryRecvError::Empty),
        }
    }
}

impl<T> Receiver<T> {
    /// Everything taken so far has been dealt with (written out): its bytes no longer count
    /// against the budget.
    pub fn settle(&mut self) {
        if self.taken > 0 || self.writing {
            let mut items = self.shared.items();
            items.held = items.held.saturating_sub(self.taken);
            items.writing = false;
            self.taken = 0;
            self.writing = false;
        }
    }

    /// Ready once a sender has dropped this connection ([`Sender::kill`]); otherwise leaves
    /// the waker for it. For a connection waiting on something else (a slow write).
    pub fn poll_killed(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut items = self.shared.items();
        if self.shared.killed.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        match &items.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => items.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Whether a sender has dropped this connection ([`Sender::kill`]).
    #[cfg(test)]
    pub fn is_killed(&self) -> bool {
        self.shared.killed.load(Ordering::Acquire)
    }

    /// Gives back the buffer of a drained queue. A drain keeps up to [`KEEP_SLOTS`] slots
    /// (256 bytes of `Event`s) so that steady traffic does not allocate per event; a
    /// connection gone quiet calls this, since nearly every online user is idle nearly all
    /// the time and the sign-in's `ILN`/`NLN` events leave those slots behind.
    pub fn release_idle(&mut self) {
        let mut items = self.shared.items();
        if items.queue.is_empty() && items.queue.capacity() > 0 {
            items.queue = VecDeque::new();
        }
    }

    /// Lets senders write wire items straight to `outlet`, the connection's socket, while
    /// nothing is pending for it (see the module's header).
    pub fn set_outlet(&mut self, outlet: std::sync::Arc<dyn Outlet>) {
        self.shared.items().outlet = Some(outlet);
        self.direct = true;
    }

    /// The connection is about to write output of its own: no direct write may start until
    /// [`Receiver::settle`]. Returns the remainder of a partial direct write, if one is
    /// pending, which must be written before that output. Only needed with an outlet.
    pub fn begin_write(&mut self) -> Option<Bytes> {
        if !self.direct {
            return None;
        }
        let mut items = self.shared.items();
        items.writing = true;
        self.writing = true;
        let rest = items.rest.take();
        if let Some(rest) = &rest {
            self.taken += rest.len();
        }
        rest
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.shared.receiver_gone.store(true, Ordering::Release);
        // Items may hold large shared buffers; free them now rather than with the last sender.
        // The socket goes with the connection: no sender may write to it any more.
        let drained = {
            let mut items = self.shared.items();
            items.held = 0;
            items.rest = None;
            (std::mem::take(&mut items.queue), items.outlet.take())
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

    /// Items the receiving session renders itself: never written directly, so never split.
    macro_rules! rendered {
        ($($t:ty => $empty:expr),*) => {$(
            impl Direct for $t {
                fn wire(&self) -> Option<&Bytes> {
                    None
                }
                fn rest(_: Bytes) -> Self {
                    $empty
                }
            }
        )*};
    }
    rendered!(i32 => 0, u32 => 0, &str => "");

    #[tokio::test]
    async fn a_kill_goes_before_items_and_wakes_the_receiver() {
        let (tx, mut rx) = channel::<u32>(4);
        tx.try_send(1).unwrap();
        tx.kill();
        assert!(matches!(rx.next().await, Next::Killed));

        let (tx, mut rx) = channel::<u32>(4);
        let waiting = tokio::spawn(async move { matches!(rx.next().await, Next::Killed) });
        tokio::task::yield_now().await;
        tx.kill();
        assert!(waiting.await.unwrap());
    }

    /// The sign-in's events leave a drained queue with a few slots (256 bytes of `Event`s),
    /// which an idle connection gives back.
    #[test]
    fn an_idle_queue_gives_its_buffer_back() {
        let (tx, mut rx) = channel::<u32>(64);
        for i in 0..10 {
            tx.try_send(i).unwrap();
        }
        while rx.try_recv().is_ok() {}
        assert!(rx.shared.items().queue.capacity() > 0);
        rx.release_idle();
        assert_eq!(rx.shared.items().queue.capacity(), 0);
    }

    /// Wire bytes, as a relayed switchboard message.
    #[derive(Debug, PartialEq)]
    struct Wire(Bytes);

    impl Weigh for Wire {
        fn weight(&self) -> usize {
            self.0.len()
        }
    }
    impl Direct for Wire {
        fn wire(&self) -> Option<&Bytes> {
            Some(&self.0)
        }
        fn rest(rest: Bytes) -> Self {
            Wire(rest)
        }
    }

    fn wire(s: &str) -> Wire {
        Wire(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// A loopback TCP connection: the server side's write half (the outlet) and the client.
    async fn socket_pair(
        client_rcvbuf: Option<u32>,
    ) -> (
        std::sync::Arc<tokio::net::tcp::OwnedWriteHalf>,
        tokio::net::TcpStream,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        if let Some(n) = client_rcvbuf {
            socket.set_recv_buffer_size(n).unwrap();
        }
        let client = socket
            .connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (_rd, wr) = server.into_split();
        // Let the runtime see the new socket writable: until then a try_write says WouldBlock.
        wr.writable().await.unwrap();
        (std::sync::Arc::new(wr), client)
    }

    /// Writes all of `buf` as the connection does, waiting when the socket is full.
    async fn write_all(wr: &tokio::net::tcp::OwnedWriteHalf, mut buf: &[u8]) {
        while !buf.is_empty() {
            wr.writable().await.unwrap();
            match wr.try_write(buf) {
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
    }

    async fn read_exactly(client: &mut tokio::net::TcpStream, n: usize) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0; n];
        tokio::time::timeout(Duration::from_secs(10), client.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        buf
    }

    #[tokio::test]
    async fn direct_writes_only_while_nothing_is_pending() {
        let (wr, mut client) = socket_pair(None).await;
        let (tx, mut rx) = channel_with_bytes(16, 1 << 20);
        // No outlet yet: queued.
        tx.try_send_direct(wire("zero ")).unwrap();
        rx.set_outlet(wr.clone());
        // Something queued: a wire item waits behind it, in order.
        tx.try_send_direct(wire("one ")).unwrap();
        assert_eq!(rx.try_recv().unwrap(), wire("zero "));
        assert_eq!(rx.try_recv().unwrap(), wire("one "));
        // Taken but not yet written (not settled): still queued.
        tx.try_send_direct(wire("two ")).unwrap();
        assert_eq!(rx.try_recv().unwrap(), wire("two "));
        write_all(&wr, b"zero one two ").await;
        rx.settle();
        // Nothing pending: straight to the socket, nothing queued, nothing held.
        tx.try_send_direct(wire("three ")).unwrap();
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
        assert_eq!(tx.held_bytes(), 0);
        // The connection writes output of its own: a wire item waits for it.
        assert_eq!(rx.begin_write(), None);
        tx.try_send_direct(wire("five ")).unwrap();
        write_all(&wr, b"four ").await;
        rx.settle();
        assert_eq!(rx.try_recv().unwrap(), wire("five "));
        write_all(&wr, b"five ").await;
        rx.settle();
        tx.try_send_direct(wire("six")).unwrap();
        let got = read_exactly(&mut client, 32).await;
        assert_eq!(&got[..], b"zero one two three four five six");
        // The receiver gone, so is the socket: nothing is written any more.
        drop(rx);
        assert!(matches!(
            tx.try_send_direct(wire("seven")),
            Err(TrySendError::Closed(_))
        ));
    }

    #[tokio::test]
    async fn a_partial_direct_write_is_finished_first() {
        // A client that does not read, with a small receive buffer: a large item fills the
        // kernel's buffers and the rest stays with the queue.
        let (wr, mut client) = socket_pair(Some(4096)).await;
        let (tx, mut rx) = channel_with_bytes(16, 64 << 20);
        rx.set_outlet(wr.clone());
        let big: Vec<u8> = (0..16u32 << 20).map(|i| (i % 251) as u8).collect();
        tx.try_send_direct(Wire(Bytes::from(big.clone()))).unwrap();
        let rest = tx.held_bytes();
        assert!(rest > 0 && rest < big.len(), "held {rest}");
        // Later items queue behind the remainder, and the connection's own output too.
        tx.try_send_direct(wire("after")).unwrap();
        let own = rx.begin_write();
        assert_eq!(own.as_ref().map(Bytes::len), Some(rest));
        assert!(big.ends_with(own.as_ref().unwrap()));
        let reader =
            tokio::spawn(async move { read_exactly(&mut client, 16 * (1 << 20) + 10).await });
        write_all(&wr, own.as_ref().unwrap()).await;
        write_all(&wr, b"mine ").await;
        rx.settle();
        assert_eq!(tx.held_bytes(), 5);
        assert_eq!(rx.try_recv().unwrap(), wire("after"));
        write_all(&wr, b"after").await;
        rx.settle();
        assert_eq!(tx.held_bytes(), 0);
        let got = reader.await.unwrap();
        assert_eq!(&got[..big.len()], &big[..]);
        assert_eq!(&got[big.len()..], b"mine after");
    }

    #[tokio::test]
    async fn a_remainder_wakes_the_receiver_and_comes_first() {
        let (wr, mut client) = socket_pair(Some(4096)).await;
        let (tx, mut rx) = channel_with_bytes(16, 64 << 20);
        rx.set_outlet(wr.clone());
        let big = Bytes::from(vec![b'x'; 16 << 20]);
        tx.try_send_direct(Wire(big.clone())).unwrap();
        // The receiver, waiting for items, is woken for the remainder.
        let rest = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(!rest.0.is_empty() && rest.0.len() < big.len());
        let n = rest.0.len();
        let reader = tokio::spawn(async move { read_exactly(&mut client, 16 << 20).await });
        write_all(&wr, &rest.0).await;
        rx.settle();
        assert_eq!(tx.held_bytes(), 0);
        assert_eq!(reader.await.unwrap().len(), big.len());
        assert!(n < big.len());
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
