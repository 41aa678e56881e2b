//! Password-guess throttling: who may try a password now, decided from the failures seen before.
//!
//! Pure bookkeeping, no IO and no clock of its own (the caller passes `now`), so every login path
//! shares one rule: Passport's `login2.srf`, legacy `USR MD5`, SMTP `AUTH`, POP3 and IMAP (through
//! the server's mail authenticator), and the web inbox's login when it calls [`LoginThrottle`] too.
//!
//! Three kinds of counter, each forgotten `forget_after` after its last attempt:
//!
//! - per (account, client address): the tight one. `free_per_pair` attempts, then each further one
//!   must wait `base_delay`, doubling up to `max_delay` after every attempt let through.
//! - per client address, over all accounts: looser (`free_per_ip`), so one address cannot try a
//!   password against every account.
//! - per account, over all addresses: loosest (`free_per_account`), against a guesser spread over
//!   many addresses.
//!
//! Neither of the last two applies to an account at an address it signed in from successfully
//! within `trusted_for` (nor counts its attempts there): an attacker elsewhere, or behind the same
//! NAT guessing other accounts, can slow guesses but cannot lock the owner out from the owner's
//! usual address. Only the owner's own failures there (the pair's counter) slow the owner.
//!
//! Every attempt is counted when it is let through, before its password is checked, so parallel
//! guesses are throttled as well as sequential ones; a success takes its own count back from the
//! address and account counters and clears the pair's. A success does not clear the per-address
//! counter: an attacker with an account of its own could otherwise reset it between guesses.
//!
//! IPv6 addresses count by their /64 (one subscriber's usual allocation), so an attacker cannot
//! spread over the 2^64 addresses of one network. Each table holds at most `max_entries`; a new key
//! in a full table first sweeps forgotten entries, then evicts the least recently seen one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The schedule and the table sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Attempts per (account, address) before any wait.
    pub free_per_pair: u32,
    /// Attempts per address, over all accounts, before any wait.
    pub free_per_ip: u32,
    /// Attempts per account, over all untrusted addresses, before any wait.
    pub free_per_account: u32,
    /// The first wait once the free attempts are used; it doubles with each attempt let through.
    pub base_delay: Duration,
    /// The longest wait.
    pub max_delay: Duration,
    /// A counter is forgotten this long after its last attempt.
    pub forget_after: Duration,
    /// How long a successful sign-in from an address exempts it from the per-account counter.
    pub trusted_for: Duration,
    /// Entries per table at most (pairs, addresses, accounts, trusted pairs).
    pub max_entries: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            free_per_pair: 5,
            free_per_ip: 30,
            free_per_account: 100,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            forget_after: Duration::from_secs(15 * 60),
            trusted_for: Duration::from_secs(30 * 24 * 3600),
            max_entries: 100_000,
        }
    }
}

/// Why an attempt was not let through, and when the next one may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    /// Which counter refused it.
    pub by: Counter,
    /// How long until an attempt would be let through (as things stand now).
    pub retry_after: Duration,
}

/// The three counters, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    Pair,
    Address,
    Account,
}

impl Counter {
    pub fn as_str(self) -> &'static str {
        match self {
            Counter::Pair => "account and address",
            Counter::Address => "address",
            Counter::Account => "account",
        }
    }
}

/// The address as it is counted: IPv4 whole, IPv6 by its /64 (IPv4-mapped IPv6 as IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddrKey(u128);

impl AddrKey {
    fn v4(a: u32) -> AddrKey {
        AddrKey(u128::from(a) | (1 << 32))
    }

    pub fn of(ip: IpAddr) -> AddrKey {
        match ip {
            IpAddr::V4(v4) => AddrKey::v4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddrKey::v4(u32::from(v4)),
                // The low 64 bits are zero for an IPv6 key and never for an IPv4 one.
                None => AddrKey(u128::from(v6) & !((1u128 << 64) - 1)),
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Count {
    attempts: u32,
    last: Instant,
}

/// A table of counters with a size bound.
struct Table<K> {
    map: HashMap<K, Count>,
}

impl<K: std::hash::Hash + Eq + Clone> Table<K> {
    fn new() -> Self {
        Table {
            map: HashMap::new(),
        }
    }

    /// The live count for `key` (0 if none or forgotten).
    fn attempts(&self, key: &K, now: Instant, forget: Duration) -> Option<Count> {
        self.map
            .get(key)
            .filter(|c| now.saturating_duration_since(c.last) < forget)
            .copied()
    }

    fn bump(&mut self, key: &K, now: Instant, forget: Duration, max: usize) {
        let live = self.attempts(key, now, forget).map_or(0, |c| c.attempts);
        if !self.map.contains_key(key) {
            make_room(&mut self.map, max, |c| c.last, now, forget);
        }
        self.map.insert(
            key.clone(),
            Count {
                attempts: live.saturating_add(1),
                last: now,
            },
        );
    }

    /// Takes one attempt back (a success), keeping the time of the last attempt.
    fn unbump(&mut self, key: &K) {
        if let Some(c) = self.map.get_mut(key) {
            c.attempts = c.attempts.saturating_sub(1);
            if c.attempts == 0 {
                self.map.remove(key);
            }
        }
    }

    fn clear(&mut self, key: &K) {
        self.map.remove(key);
    }
}

/// Before a new key goes into `map`: if it is full, drops what is forgotten, then (still full) the
/// least recently seen entries, so the table never passes `max`. O(n), only at the bound.
fn make_room<K: std::hash::Hash + Eq + Clone, V>(
    map: &mut HashMap<K, V>,
    max: usize,
    last: impl Fn(&V) -> Instant,
    now: Instant,
    forget: Duration,
) {
    if map.len() < max.max(1) {
        return;
    }
    map.retain(|_, v| now.saturating_duration_since(last(v)) < forget);
    while map.len() >= max.max(1) {
        let oldest = map
            .iter()
            .min_by_key(|(_, v)| last(v))
            .map(|(k, _)| k.clone());
        match oldest {
            Some(k) => {
                map.remove(&k);
            }
            None => break,
        }
    }
}

/// The throttle's state. Callers keep it behind a lock and hold the lock only for these calls.
pub struct LoginThrottle {
    config: ThrottleConfig,
    pairs: Table<(String, AddrKey)>,
    addrs: Table<AddrKey>,
    accounts: Table<String>,
    /// (account, address) pairs that signed in successfully, with when.
    trusted: HashMap<(String, AddrKey), Instant>,
}

impl LoginThrottle {
    pub fn new(config: ThrottleConfig) -> LoginThrottle {
        LoginThrottle {
            config,
            pairs: Table::new(),
            addrs: Table::new(),
            accounts: Table::new(),
            trusted: HashMap::new(),
        }
    }

    pub fn config(&self) -> &ThrottleConfig {
        &self.config
    }

    /// The wait after the last attempt that a counter at `attempts` demands (zero while free).
    pub fn delay(&self, attempts: u32, free: u32) -> Duration {
        let Some(over) = attempts.checked_sub(free) else {
            return Duration::ZERO;
        };
        let factor = 1u32.checked_shl(over.min(31)).unwrap_or(u32::MAX);
        self.config
            .base_delay
            .saturating_mul(factor)
            .min(self.config.max_delay)
    }

    fn trusted(&self, key: &(String, AddrKey), now: Instant) -> bool {
        self.trusted
            .get(key)
            .is_some_and(|t| now.saturating_duration_since(*t) < self.config.trusted_for)
    }

    /// Whether an attempt at `account` (lowercased) from `ip` may check a password now. If so it is
    /// counted at once; call [`LoginThrottle::succeeded`] when the password was right.
    pub fn attempt(&mut self, account: &str, ip: IpAddr, now: Instant) -> Result<(), Throttled> {
        let c = self.config;
        let addr = AddrKey::of(ip);
        let pair = (account.to_owned(), addr);
        // A trusted pair is judged by its own counter only (see the module header).
        let account_counts = !self.trusted(&pair, now);
        // Within the free attempts there is no wait at all. (Computing it from the last attempt's
        // time would not do: callers read the clock before taking the throttle's lock, so a
        // concurrent attempt can carry a `last` a few microseconds after this one's `now`, and a
        // login within its budget was refused with a zero `retry_after`.)
        let wait = |count: Option<Count>, free: u32| {
            count.map_or(Duration::ZERO, |n| {
                let delay = self.delay(n.attempts, free);
                if delay.is_zero() {
                    return Duration::ZERO;
                }
                (n.last + delay).saturating_duration_since(now)
            })
        };
        let mut checks = vec![(
            Counter::Pair,
            wait(
                self.pairs.attempts(&pair, now, c.forget_after),
                c.free_per_pair,
            ),
        )];
        if account_counts {
            checks.push((
                Counter::Address,
                wait(
                    self.addrs.attempts(&addr, now, c.forget_after),
                    c.free_per_ip,
                ),
            ));
            let key = pair.0.clone();
            checks.push((
                Counter::Account,
                wait(
                    self.accounts.attempts(&key, now, c.forget_after),
                    c.free_per_account,
                ),
            ));
        }
        if let Some((by, retry_after)) = checks
            .into_iter()
            .filter(|(_, w)| !w.is_zero())
            .max_by_key(|(_, w)| *w)
        {
            return Err(Throttled { by, retry_after });
        }
        self.pairs.bump(&pair, now, c.forget_after, c.max_entries);
        if account_counts {
            self.addrs.bump(&addr, now, c.forget_after, c.max_entries);
            self.accounts
                .bump(&pair.0, now, c.forget_after, c.max_entries);
        }
        Ok(())
    }

    /// The attempt let through by [`LoginThrottle::attempt`] had the right password: the pair
    /// starts afresh and is trusted, and the attempt no longer counts against the address or the
    /// account.
    pub fn succeeded(&mut self, account: &str, ip: IpAddr, now: Instant) {
        let c = self.config;
        let pair = (account.to_owned(), AddrKey::of(ip));
        let was_trusted = self.trusted(&pair, now);
        self.pairs.clear(&pair);
        if !was_trusted {
            self.addrs.unbump(&pair.1);
            self.accounts.unbump(&pair.0);
        }
        if !self.trusted.contains_key(&pair) {
            make_room(&mut self.trusted, c.max_entries, |t| *t, now, c.trusted_for);
        }
        self.trusted.insert(pair, now);
    }

    /// Entries held, over all tables (for tests and metrics).
    pub fn entries(&self) -> usize {
        self.pairs.map.len() + self.addrs.map.len() + self.accounts.map.len() + self.trusted.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const A: &str = "alice@example.com";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn small() -> ThrottleConfig {
        ThrottleConfig {
            free_per_pair: 3,
            free_per_ip: 6,
            free_per_account: 10,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
            forget_after: Duration::from_secs(60),
            trusted_for: Duration::from_secs(3600),
            max_entries: 1000,
        }
    }

    /// The schedule: free attempts, then 1 s, 2 s, 4 s, 8 s, 8 s… after each attempt let through.
    /// Callers read the clock before the lock: an attempt may come with a `now` a little before
    /// the last one counted. Within the free attempts it is let through all the same.
    #[test]
    fn an_attempt_timed_before_the_last_counted_one_is_free_within_the_budget() {
        let mut t = LoginThrottle::new(small());
        let t0 = Instant::now();
        let home = ip("192.0.2.9");
        t.attempt(A, home, t0 + Duration::from_millis(1)).unwrap();
        t.attempt("bob@example.com", home, t0).unwrap();
        t.attempt(A, home, t0).unwrap();
    }

    #[test]
    fn waits_double_after_the_free_attempts_up_to_the_cap() {
        let mut t = LoginThrottle::new(small());
        let t0 = Instant::now();
        let evil = ip("192.0.2.1");
        for _ in 0..3 {
            t.attempt(A, evil, t0).unwrap();
        }
        let refused = t.attempt(A, evil, t0).unwrap_err();
        assert_eq!(refused.by, Counter::Pair);
        assert_eq!(refused.retry_after, Duration::from_secs(1));
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..6 {
            let wait = t.attempt(A, evil, now).unwrap_err().retry_after;
            // Just before the wait is over: still refused; at its end: let through.
            assert!(t
                .attempt(A, evil, now + wait - Duration::from_millis(1))
                .is_err());
            now += wait;
            t.attempt(A, evil, now).unwrap();
            waits.push(wait.as_secs());
        }
        assert_eq!(waits, [1, 2, 4, 8, 8, 8]);
        // Forgotten after a quiet minute.
        t.attempt(A, evil, now + Duration::from_secs(60)).unwrap();
    }

    #[test]
    fn another_address_is_not_slowed_by_a_guesser() {
        let mut t = LoginThrottle::new(small());
        let now = Instant::now();
        for _ in 0..3 {
            t.attempt(A, ip("192.0.2.1"), now).unwrap();
        }
        assert!(t.attempt(A, ip("192.0.2.1"), now).is_err());
        t.attempt(A, ip("198.51.100.7"), now).unwrap();
        t.succeeded(A, ip("198.51.100.7"), now);
    }

    #[test]
    fn the_account_counter_spares_the_owners_usual_address() {
        let mut t = LoginThrottle::new(small());
        let now = Instant::now();
        let home = ip("198.51.100.7");
        t.attempt(A, home, now).unwrap();
        t.succeeded(A, home, now);
        // Ten guessers, one attempt each: the account's free attempts are used.
        for i in 0..10 {
            t.attempt(A, ip(&format!("203.0.113.{i}")), now).unwrap();
        }
        let refused = t.attempt(A, ip("203.0.113.200"), now).unwrap_err();
        assert_eq!(refused.by, Counter::Account);
        // The owner, at home, is not slowed.
        t.attempt(A, home, now).unwrap();
        t.succeeded(A, home, now);
        // Nor is another account from a guesser's address.
        t.attempt("bob@example.com", ip("203.0.113.1"), now)
            .unwrap();
    }

    /// A guesser behind the owner's address (a shared NAT) trying other accounts uses up the
    /// address's allowance, but the owner, trusted there, still signs in.
    #[test]
    fn the_address_counter_spares_the_owner_too() {
        let mut t = LoginThrottle::new(small());
        let now = Instant::now();
        let nat = ip("198.51.100.7");
        t.attempt(A, nat, now).unwrap();
        t.succeeded(A, nat, now);
        for i in 0..6 {
            t.attempt(&format!("u{i}@example.com"), nat, now).unwrap();
        }
        let refused = t.attempt("u9@example.com", nat, now).unwrap_err();
        assert_eq!(refused.by, Counter::Address);
        t.attempt(A, nat, now).unwrap();
        t.succeeded(A, nat, now);
    }

    #[test]
    fn one_address_cannot_try_every_account() {
        let mut t = LoginThrottle::new(small());
        let now = Instant::now();
        let evil = ip("192.0.2.1");
        for i in 0..6 {
            t.attempt(&format!("u{i}@example.com"), evil, now).unwrap();
        }
        let refused = t.attempt("u9@example.com", evil, now).unwrap_err();
        assert_eq!(refused.by, Counter::Address);
        // A success takes its own attempt back but does not reset the address.
        let mut t = LoginThrottle::new(small());
        for i in 0..5 {
            t.attempt(&format!("u{i}@example.com"), evil, now).unwrap();
        }
        t.attempt("mine@example.com", evil, now).unwrap();
        t.succeeded("mine@example.com", evil, now);
        t.attempt("u8@example.com", evil, now).unwrap();
        assert!(t.attempt("u9@example.com", evil, now).is_err());
    }

    #[test]
    fn a_success_clears_the_pair() {
        let mut t = LoginThrottle::new(small());
        let now = Instant::now();
        let home = ip("198.51.100.7");
        for _ in 0..2 {
            t.attempt(A, home, now).unwrap();
        }
        t.attempt(A, home, now).unwrap();
        t.succeeded(A, home, now);
        for _ in 0..3 {
            t.attempt(A, home, now).unwrap();
        }
    }

    #[test]
    fn ipv6_counts_by_its_64() {
        assert_eq!(
            AddrKey::of(ip("2001:db8:1:2::1")),
            AddrKey::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            AddrKey::of(ip("2001:db8:1:2::1")),
            AddrKey::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            AddrKey::of(ip("::ffff:192.0.2.1")),
            AddrKey::of(ip("192.0.2.1"))
        );
        let mut t = LoginThrottle::new(small());
        let now = Instant::now();
        for i in 0..3 {
            t.attempt(A, ip(&format!("2001:db8:1:2::{i}")), now)
                .unwrap();
        }
        assert!(t.attempt(A, ip("2001:db8:1:2::99"), now).is_err());
    }

    #[test]
    fn tables_stay_bounded() {
        let mut t = LoginThrottle::new(ThrottleConfig {
            max_entries: 16,
            ..small()
        });
        let now = Instant::now();
        for i in 0..1000u32 {
            let addr = IpAddr::from(i.to_be_bytes());
            let _ = t.attempt(&format!("u{i}@example.com"), addr, now);
            t.succeeded(&format!("u{i}@example.com"), addr, now);
        }
        assert!(t.entries() <= 4 * 16, "{}", t.entries());
    }
}
