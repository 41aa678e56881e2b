//! The hub: who is online where. Sessions never touch each other's sockets; they address
//! events to a user and the hub delivers them to whichever session holds that user.
//!
//! In-process today; the interface is what a NATS-backed hub will implement for clusters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::sync::mpsc;

/// Something that happened elsewhere and concerns one session.
#[derive(Debug, Clone)]
pub enum Event {
    /// The session must end: `OUT OTH` (logged in elsewhere) or `OUT SSD` (shutdown).
    Kick(KickReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KickReason {
    /// The account logged in again from another connection.
    OtherLogin,
    /// The server is going down.
    ServerShutdown,
}

impl KickReason {
    /// The `OUT` parameter the protocol uses for this reason.
    pub fn out_param(self) -> &'static str {
        match self {
            KickReason::OtherLogin => "OTH",
            KickReason::ServerShutdown => "SSD",
        }
    }
}

/// A way to reach one online session.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    pub id: u64,
    pub events: mpsc::Sender<Event>,
}

#[derive(Default)]
pub struct Hub {
    next_id: AtomicU64,
    online: Mutex<HashMap<String, SessionHandle>>,
}

impl Hub {
    pub fn new() -> Self {
        Hub::default()
    }

    /// A fresh session id, unique for the life of the process.
    pub fn session_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Records `handle` as the session of `email`; the previous session of that account, if
    /// any, is told to leave with `OUT OTH`.
    pub fn register(&self, email: &str, handle: SessionHandle) {
        let previous = self
            .online
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(email.to_owned(), handle);
        if let Some(old) = previous {
            // A full queue means the old session is stuck; it is dropped when its outbox
            // overflows or its socket errors, so losing this kick costs nothing.
            if old
                .events
                .try_send(Event::Kick(KickReason::OtherLogin))
                .is_err()
            {
                tracing::warn!(%email, "previous session did not take OUT OTH");
            }
        }
    }

    /// Forgets `email`'s session if it is still the one with `id` (a newer login may have
    /// replaced it already).
    pub fn unregister(&self, email: &str, id: u64) {
        let mut online = self.online.lock().unwrap_or_else(|p| p.into_inner());
        if online.get(email).is_some_and(|h| h.id == id) {
            online.remove(email);
        }
    }

    pub fn is_online(&self, email: &str) -> bool {
        self.online
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(email)
    }

    pub fn online_count(&self) -> usize {
        self.online.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}
