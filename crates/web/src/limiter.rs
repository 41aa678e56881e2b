//! Failed sign-ins counted per account and per client IP, so password guessing through the web form
//! stops after a few tries.
//!
//! Kept small and in this one place on purpose: the server is getting a general password-guess throttle
//! (issue 12) that can replace it behind the same two calls, [`Limiter::allowed`] and
//! [`Limiter::failed`]. Counting is by fixed window: the first failure opens a window of
//! `login_window_secs`; at the limit, sign-ins for that key are refused (with the same generic message as
//! a wrong password, and without asking the hashing threads) until the window ends. Unknown accounts are
//! counted like known ones, so the refusal says nothing about which accounts exist. Both maps are
//! bounded: past `MAX_KEYS` entries, expired ones are swept, and if none are, the oldest window goes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Accounts (and IPs) tracked at once per map; an attacker spraying names cannot grow memory past it.
const MAX_KEYS: usize = 50_000;

#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

struct Counts<K> {
    map: HashMap<K, Window>,
}

impl<K: std::hash::Hash + Eq + Clone> Counts<K> {
    fn new() -> Self {
        Counts {
            map: HashMap::new(),
        }
    }

    fn over(&self, key: &K, limit: u32, window: Duration, now: Instant) -> bool {
        self.map
            .get(key)
            .is_some_and(|w| now.duration_since(w.start) < window && w.failures >= limit)
    }

    fn add(&mut self, key: K, window: Duration, now: Instant) {
        if self.map.len() >= MAX_KEYS && !self.map.contains_key(&key) {
            self.map.retain(|_, w| now.duration_since(w.start) < window);
            if self.map.len() >= MAX_KEYS {
                if let Some(oldest) = self
                    .map
                    .iter()
                    .min_by_key(|(_, w)| w.start)
                    .map(|(k, _)| k.clone())
                {
                    self.map.remove(&oldest);
                }
            }
        }
        let w = self.map.entry(key).or_insert(Window {
            start: now,
            failures: 0,
        });
        if now.duration_since(w.start) >= window {
            *w = Window {
                start: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
    }
}

/// The sign-in failure counts.
pub struct Limiter {
    per_account: u32,
    per_ip: u32,
    window: Duration,
    accounts: Mutex<Counts<String>>,
    ips: Mutex<Counts<IpAddr>>,
}

impl Limiter {
    pub fn new(per_account: u32, per_ip: u32, window: Duration) -> Limiter {
        Limiter {
            per_account,
            per_ip,
            window,
            accounts: Mutex::new(Counts::new()),
            ips: Mutex::new(Counts::new()),
        }
    }

    /// Whether a sign-in for `account` (any letter case; `None` for a ticket without one) from `ip` may be
    /// checked now.
    pub fn allowed(&self, account: Option<&str>, ip: IpAddr) -> bool {
        self.allowed_at(account, ip, Instant::now())
    }

    /// Counts a failed sign-in.
    pub fn failed(&self, account: Option<&str>, ip: IpAddr) {
        self.failed_at(account, ip, Instant::now())
    }

    fn allowed_at(&self, account: Option<&str>, ip: IpAddr, now: Instant) -> bool {
        let ip_ok = !lock(&self.ips).over(&ip, self.per_ip, self.window, now);
        let account_ok = account.is_none_or(|a| {
            !lock(&self.accounts).over(&a.to_ascii_lowercase(), self.per_account, self.window, now)
        });
        ip_ok && account_ok
    }

    fn failed_at(&self, account: Option<&str>, ip: IpAddr, now: Instant) {
        lock(&self.ips).add(ip, self.window, now);
        if let Some(a) = account {
            lock(&self.accounts).add(a.to_ascii_lowercase(), self.window, now);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Only map updates happen under these locks: a panic elsewhere cannot leave them torn.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_account_and_per_ip_windows() {
        let l = Limiter::new(3, 5, Duration::from_secs(60));
        let t0 = Instant::now();
        let ip1: IpAddr = [192, 0, 2, 1].into();
        let ip2: IpAddr = [192, 0, 2, 2].into();
        for _ in 0..3 {
            assert!(l.allowed_at(Some("Alice@example.com"), ip1, t0));
            l.failed_at(Some("alice@example.com"), ip1, t0);
        }
        // The account is closed from any address, another account is not.
        assert!(!l.allowed_at(Some("ALICE@example.com"), ip2, t0));
        assert!(l.allowed_at(Some("bob@example.com"), ip1, t0));
        // Two more failures close the address for every account.
        l.failed_at(Some("bob@example.com"), ip1, t0);
        l.failed_at(None, ip1, t0);
        assert!(!l.allowed_at(Some("carol@example.com"), ip1, t0));
        assert!(l.allowed_at(Some("carol@example.com"), ip2, t0));
        // The window ends.
        let later = t0 + Duration::from_secs(61);
        assert!(l.allowed_at(Some("alice@example.com"), ip1, later));
        l.failed_at(Some("alice@example.com"), ip1, later);
        assert!(l.allowed_at(Some("alice@example.com"), ip1, later));
    }
}
