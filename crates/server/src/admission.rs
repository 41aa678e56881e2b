//! Who gets in: the password-guess throttle as the server uses it ([`Logins`]), and the file
//! descriptors the HTTP listeners may take without starving MSNP ([`http_connection_cap`]).
//!
//! The throttle's rule lives in `msgr_core::throttle::LoginThrottle` (pure, no clock); here it
//! gets tokio's clock (so paused-time tests drive it), a lock, a count of refusals and log lines
//! that a flood cannot multiply. Every password check of the server goes through
//! [`crate::Shared::check_password`] (Passport, SMTP, POP3, IMAP) or, for `USR MD5`, through
//! [`Logins::attempt`] directly. A web inbox login can use the same: `Shared::logins`.

use msgr_core::throttle::{LoginThrottle, ThrottleConfig, Throttled};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// The server's password-guess throttle.
pub struct Logins {
    throttle: Mutex<LoginThrottle>,
    /// Attempts refused so far, for logs and tests.
    refused: AtomicU64,
    /// When a refusal was last logged: at most one line a second, however fast the flood.
    last_log: Mutex<Option<Instant>>,
}

impl Logins {
    pub fn new(config: ThrottleConfig) -> Logins {
        Logins {
            throttle: Mutex::new(LoginThrottle::new(config)),
            refused: AtomicU64::new(0),
            last_log: Mutex::new(None),
        }
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, LoginThrottle> {
        self.throttle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a password for `account` from `ip` may be checked now; counted if so. A refusal
    /// is counted and logged (`what` names the login path).
    pub fn attempt(&self, account: &str, ip: IpAddr, what: &'static str) -> Result<(), Throttled> {
        let account = account.to_ascii_lowercase();
        let now = Instant::now().into_std();
        let verdict = self.throttle().attempt(&account, ip, now);
        if let Err(t) = verdict {
            let total = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
            let mut last = self.last_log.lock().unwrap_or_else(|p| p.into_inner());
            let due = last.is_none_or(|l| l.elapsed() >= Duration::from_secs(1));
            if due {
                *last = Some(Instant::now());
                tracing::warn!(
                    login = what,
                    %ip,
                    account = %account.escape_default(),
                    by = t.by.as_str(),
                    retry_after_ms = t.retry_after.as_millis() as u64,
                    refused_total = total,
                    "password attempt throttled"
                );
            }
        }
        verdict
    }

    /// The attempt let through for `account` from `ip` had the right password.
    pub fn succeeded(&self, account: &str, ip: IpAddr) {
        let account = account.to_ascii_lowercase();
        self.throttle()
            .succeeded(&account, ip, Instant::now().into_std());
    }

    /// Attempts refused so far (logged with each refusal line as `refused_total`).
    #[cfg(test)]
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// Descriptors every process needs beyond its connections (listeners, the database and its WAL,
/// the hashing threads, logs, TLS files…).
const BASE_DESCRIPTORS: usize = 64;

/// The process's soft RLIMIT_NOFILE, from `/proc/self/limits` (Linux); `None` elsewhere or if
/// it is unlimited.
pub fn nofile_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// How many connections the HTTP and HTTPS listeners may hold together: the configured cap,
/// lowered so that `reserve` descriptors (0 = half of `nofile`) always stay for MSNP. At least
/// 16, so a tiny limit still serves Passport logins.
pub fn http_connection_cap(configured: usize, reserve: usize, nofile: Option<usize>) -> usize {
    let Some(nofile) = nofile else {
        return configured;
    };
    let reserve = if reserve == 0 { nofile / 2 } else { reserve };
    let budget = nofile.saturating_sub(reserve + BASE_DESCRIPTORS);
    configured.min(budget.max(16))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_http_cap_leaves_the_reserve_to_msnp() {
        assert_eq!(http_connection_cap(4096, 0, Some(1024)), 1024 - 512 - 64);
        assert_eq!(http_connection_cap(100, 0, Some(1_048_576)), 100);
        assert_eq!(http_connection_cap(4096, 900, Some(1024)), 1024 - 900 - 64);
        assert_eq!(http_connection_cap(4096, 2000, Some(1024)), 16);
        assert_eq!(http_connection_cap(4096, 0, None), 4096);
        assert!(nofile_limit().is_some_and(|n| n > 0) || !cfg!(target_os = "linux"));
    }

    /// The schedule on tokio's paused clock, as the server runs it: refusals are counted, the
    /// wait doubles, and waiting it out lets the next attempt through.
    #[tokio::test(start_paused = true)]
    async fn waits_grow_on_the_servers_clock() {
        let logins = Logins::new(ThrottleConfig {
            free_per_pair: 2,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(4),
            ..ThrottleConfig::default()
        });
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        let a = "Alice@Example.com";
        logins.attempt(a, ip, "test").unwrap();
        logins.attempt(a, ip, "test").unwrap();
        let mut waits = Vec::new();
        for _ in 0..4 {
            let t = logins.attempt(a, ip, "test").unwrap_err();
            waits.push(t.retry_after.as_secs());
            tokio::time::advance(t.retry_after).await;
            logins.attempt(a, ip, "test").unwrap();
        }
        assert_eq!(waits, [1, 2, 4, 4]);
        assert_eq!(logins.refused(), 4);
        // The right password from there clears the pair (names are compared lowercased).
        logins.succeeded("alice@example.com", ip);
        logins.attempt(a, ip, "test").unwrap();
    }
}
