//! The accept loop shared by the SMTP and POP3 listeners, its back-off on failed accepts, and the
//! connection limits they share: a cap on
//! mail connections in all and one per client IP, each connection holding a [`Slot`] that gives its place
//! back when dropped, whatever way the connection ends.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The first pause after a failed `accept` (out of file descriptors, typically) so a loop does not spin
/// on an error that only closing connections can clear; it doubles with each failure in a row.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// The longest pause between two attempts to accept.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The pauses of an accept loop whose `accept` fails (`EMFILE`, `ENFILE`, `ENOBUFS`): 10 ms doubling up to
/// 1 s while the failures go on, one log line when a run of failures starts (and every hundredth after
/// it), and one when accepting works again. Every accept loop of the service uses it: the mail listeners,
/// and the server's MSNP and HTTP listeners.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    failures: u32,
}

impl AcceptBackoff {
    pub fn new() -> AcceptBackoff {
        AcceptBackoff::default()
    }

    /// An `accept` failed: how long to pause before the next.
    pub fn failed(&mut self, listener: &str, error: &std::io::Error) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let pause = ACCEPT_BACKOFF_MIN
            .saturating_mul(1u32 << (self.failures - 1).min(7))
            .min(ACCEPT_BACKOFF_MAX);
        if self.failures == 1 || self.failures % 100 == 0 {
            tracing::warn!(listener, error = %error, failures = self.failures, pause_ms = pause.as_millis() as u64, "accept failed: backing off");
        }
        pause
    }

    /// An `accept` succeeded: ends a run of failures, if there was one.
    pub fn succeeded(&mut self, listener: &str) {
        if self.failures > 0 {
            tracing::warn!(
                listener,
                failures = self.failures,
                "accepting again after failures"
            );
            self.failures = 0;
        }
    }
}

/// Counts of open mail connections, in all and per client IP.
pub struct Limiter {
    max_total: usize,
    max_per_ip: usize,
    state: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl Limiter {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Limiter> {
        Arc::new(Limiter {
            max_total,
            max_per_ip,
            state: Mutex::new(Counts::default()),
        })
    }

    /// A place for a connection from `ip`, or `None` if either cap is reached.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        // A poisoned lock only means another thread panicked between two integer updates; the counts are
        // still the best information there is.
        let mut counts = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mine = counts.per_ip.get(&ip).copied().unwrap_or(0);
        if counts.total >= self.max_total || mine >= self.max_per_ip {
            return None;
        }
        counts.total += 1;
        counts.per_ip.insert(ip, mine + 1);
        Some(Slot {
            limiter: self.clone(),
            ip,
        })
    }

    /// Open connections in all (for logs and tests).
    pub fn open(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

/// One connection's place under the limits; dropping it frees the place.
pub struct Slot {
    limiter: Arc<Limiter>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.limiter.state.lock().unwrap_or_else(|e| e.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                // Forget the address, so the map holds only the IPs connected now.
                counts.per_ip.remove(&self.ip);
            }
        }
    }
}

/// What an accept loop serves.
pub(crate) struct Listener {
    /// `smtp`, `submission`, … for the logs.
    pub name: &'static str,
    pub listener: TcpListener,
    /// Written to a connection refused for the limits, then the socket is closed. Empty for the
    /// implicit-TLS ports, where plaintext would only confuse the client's TLS stack.
    pub refusal: &'static [u8],
}

/// Accepts connections until `shutdown`, running `serve(stream, peer)` for each on `tracker` while it holds
/// a [`Slot`]. Connections over the limits hear `refusal` and are closed at once.
pub(crate) async fn accept_loop<F, Fut>(
    l: Listener,
    limiter: Arc<Limiter>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut backoff = AcceptBackoff::new();
    loop {
        let accepted = tokio::select! {
            a = l.listener.accept() => a,
            () = shutdown.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff.succeeded(l.name);
                a
            }
            Err(e) => {
                let pause = backoff.failed(l.name, &e);
                tokio::select! {
                    () = tokio::time::sleep(pause) => continue,
                    () = shutdown.cancelled() => return,
                }
            }
        };
        let Some(slot) = limiter.acquire(peer.ip()) else {
            tracing::info!(listener = l.name, %peer, open = limiter.open(), "too many connections: refused");
            // A few bytes always fit in a fresh socket's send buffer, so a non-blocking write is enough and
            // no task is spent on a client that is being turned away.
            if !l.refusal.is_empty() {
                let _ = stream.try_write(l.refusal);
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let work = serve(stream, peer);
        tracker.spawn(async move {
            work.await;
            drop(slot);
        });
    }
}
