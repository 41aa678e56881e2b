//! Signed-in web sessions, kept in memory in a bounded map.
//!
//! In memory rather than in the store: a web session is as short-lived as an MSNP connection (it ends
//! at sign-out, after `session_idle_secs` without a request, and after `session_lifetime_secs` in any
//! case), checking one costs no SQLite read per request and no write per page view, and a restart
//! signing everyone out is acceptable for a webmail whose Messenger users are signed in again by their
//! `MSPAuth` without a password. A cluster (sessions on several nodes) would move this map into the
//! store behind the same four calls.
//!
//! The cookie holds 32 random bytes in hex; the map is keyed by their SHA-256, so a memory dump does not
//! hand out usable cookies. Each session has its own CSRF token (random, compared in constant time) and a
//! cancellation token that ends its live-update streams at sign-out.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// One signed-in session.
#[derive(Clone, Debug)]
pub struct Session {
    /// The account, lowercased.
    pub account: String,
    /// The token every state-changing form of this session carries.
    pub csrf: String,
    /// Cancelled when the session ends: its event streams close.
    pub ended: CancellationToken,
    /// Live-update streams open (bounded per session).
    pub streams: Arc<std::sync::atomic::AtomicUsize>,
}

struct Entry {
    session: Session,
    created: Instant,
    last_seen: Instant,
}

/// Why a session could not be made.
#[derive(Debug, thiserror::Error)]
#[error("too many web sessions")]
pub struct Full;

/// The map of sessions.
pub struct Sessions {
    max: usize,
    per_account: usize,
    idle: Duration,
    lifetime: Duration,
    map: Mutex<HashMap<[u8; 32], Entry>>,
}

impl Sessions {
    pub fn new(max: usize, per_account: usize, idle: Duration, lifetime: Duration) -> Sessions {
        Sessions {
            max: max.max(1),
            per_account: per_account.max(1),
            idle,
            lifetime,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Entry>> {
        // Only map updates happen under this lock: a panic elsewhere cannot leave it torn.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn live(&self, e: &Entry, now: Instant) -> bool {
        now.duration_since(e.last_seen) < self.idle && now.duration_since(e.created) < self.lifetime
    }

    /// Starts a session for `account`; returns the cookie value and the session. The account's oldest
    /// session ends if it already has `per_account`; `Full` if the whole map is full of live sessions.
    pub fn create(&self, account: &str) -> Result<(String, Session), Full> {
        let now = Instant::now();
        let cookie = hex::encode(rand::random::<[u8; 32]>());
        let session = Session {
            account: account.to_ascii_lowercase(),
            csrf: hex::encode(rand::random::<[u8; 16]>()),
            ended: CancellationToken::new(),
            streams: Arc::default(),
        };
        let mut map = self.lock();
        let mut gone = Vec::new();
        if map.len() >= self.max {
            map.retain(|_, e| {
                let keep = now.duration_since(e.last_seen) < self.idle
                    && now.duration_since(e.created) < self.lifetime;
                if !keep {
                    gone.push(e.session.ended.clone());
                }
                keep
            });
        }
        let mine: Vec<([u8; 32], Instant)> = map
            .iter()
            .filter(|(_, e)| e.session.account == session.account)
            .map(|(k, e)| (*k, e.created))
            .collect();
        if mine.len() >= self.per_account {
            if let Some((oldest, _)) = mine.iter().min_by_key(|(_, c)| *c) {
                if let Some(e) = map.remove(oldest) {
                    gone.push(e.session.ended);
                }
            }
        }
        if map.len() >= self.max {
            return Err(Full);
        }
        map.insert(
            key(&cookie),
            Entry {
                session: session.clone(),
                created: now,
                last_seen: now,
            },
        );
        drop(map);
        for t in gone {
            t.cancel();
        }
        Ok((cookie, session))
    }

    /// The live session whose cookie is `cookie`, marking it used; an expired one is removed.
    pub fn get(&self, cookie: &str) -> Option<Session> {
        if cookie.len() != 64 {
            return None;
        }
        let now = Instant::now();
        let k = key(cookie);
        let mut map = self.lock();
        let live = map.get(&k).map(|e| self.live(e, now))?;
        if !live {
            if let Some(e) = map.remove(&k) {
                e.session.ended.cancel();
            }
            return None;
        }
        let e = map.get_mut(&k)?;
        e.last_seen = now;
        Some(e.session.clone())
    }

    /// Ends the session (sign-out): its cookie is worthless from now on and its streams close.
    pub fn end(&self, cookie: &str) {
        if let Some(e) = self.lock().remove(&key(cookie)) {
            e.session.ended.cancel();
        }
    }

    /// Sessions held (live or not yet swept).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn key(cookie: &str) -> [u8; 32] {
    Sha256::digest(cookie.as_bytes()).into()
}

/// Whether two tokens are equal, in time that does not depend on where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn create_get_end_and_bounds() {
        let s = Sessions::new(3, 2, Duration::from_secs(60), Duration::from_secs(600));
        let (a1, sa1) = s.create("Alice@example.com").unwrap();
        assert_eq!(s.get(&a1).unwrap().account, "alice@example.com");
        let (a2, _) = s.create("alice@example.com").unwrap();
        // A third session for Alice ends her oldest.
        let (a3, _) = s.create("alice@example.com").unwrap();
        assert!(s.get(&a1).is_none());
        assert!(sa1.ended.is_cancelled());
        assert!(s.get(&a2).is_some() && s.get(&a3).is_some());
        let (b1, sb1) = s.create("bob@example.com").unwrap();
        // Full of live sessions: refused.
        assert!(s.create("carol@example.com").is_err());
        s.end(&b1);
        assert!(s.get(&b1).is_none());
        assert!(sb1.ended.is_cancelled());
        assert!(s.create("carol@example.com").is_ok());
        assert!(s.get("not a cookie").is_none());
        assert!(s.get(&"0".repeat(64)).is_none());
    }

    #[test]
    fn idle_and_old_sessions_end() {
        // No idle time at all: a session is gone at its first use.
        let s = Sessions::new(10, 10, Duration::ZERO, Duration::from_secs(600));
        let (c, session) = s.create("alice@example.com").unwrap();
        assert!(s.get(&c).is_none());
        assert!(session.ended.is_cancelled());
        assert!(s.is_empty());
        let s = Sessions::new(10, 10, Duration::from_secs(600), Duration::ZERO);
        let (c, _) = s.create("alice@example.com").unwrap();
        assert!(s.get(&c).is_none());
    }

    #[test]
    fn tokens_compare() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "ab"));
    }
}
