//! The switchboard registry: the cookies handed out by `XFR SB` and `RNG`, and the sessions
//! (rooms) with their participants.
//!
//! A room lives here, not in any connection, so it outlives the NS connections of the people
//! in it and ends only when its last participant leaves. Each participant is reached through
//! the bounded event queue of its switchboard connection; a delivery never waits: a full queue
//! drops that participant from the room (and the others hear `BYE email 1`), so one slow
//! reader cannot hold the others back or grow the server's memory.
//!
//! One user cannot take every slot: the unused `XFR SB` cookies a user holds and the rooms it
//! opened with them are capped (`sb_cookies_per_user`, `sb_rooms_per_user`: 714), and `XFR SB`
//! and `CAL` share one per-user budget (`sb_call_burst`, `sb_call_refill_secs`: 713). `RNG`
//! cookies are not counted against the callee: a caller could otherwise use up its victim's
//! share; the caller's `CAL` budget bounds them instead.
//!
//! Lock order: the registry (`inner`), then a room's `members`; a room's lock is never held
//! while taking the registry's.

use crate::queue;
use bytes::Bytes;
use msgr_core::presence::ClientCaps;
use msgr_proto::Dialect;
use rand::Rng;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::Instant;

use super::{Departure, SbEvent};
use crate::config::LimitsConfig;
use crate::hub::Event;

/// Who someone is in a switchboard session, as `IRO`, `JOI` and `MSG` show them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The account, lowercased.
    pub email: String,
    /// The display name, URL-encoded as it goes on the wire.
    pub name: String,
    /// The capabilities of the member's client at the time of its cookie (`IRO`/`JOI`, MSNP12+).
    pub caps: ClientCaps,
}

/// What a cookie grants: who may redeem it, in which dialect it speaks, and where it leads.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub member: Member,
    /// The dialect of the NS session that asked for the cookie; the switchboard has no `VER`
    /// of its own, so this decides the form of `IRO` and `JOI`.
    pub dialect: Dialect,
    /// `None` for `XFR SB` (a new session at `USR`), the session id for `RNG` (join at `ANS`).
    pub room: Option<u32>,
    expires: Instant,
}

/// Why a cookie or a room could not be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryError {
    /// Too many sessions or unused cookies on this node already.
    Full,
    /// This user holds `sb_cookies_per_user` unused cookies or `sb_rooms_per_user` rooms.
    TooManyForUser,
}

struct Participant {
    /// The switchboard connection (a hub session id, unique per connection).
    conn: u64,
    member: Arc<Member>,
    /// Its queue; [`queue::Sender::kill`] drops the participant.
    events: queue::Sender<Event>,
}

#[derive(Default)]
struct Members {
    list: Vec<Participant>,
    /// Set when the last participant left: nobody may join a room that is being forgotten.
    closed: bool,
}

/// One switchboard session.
pub struct Room {
    pub id: u32,
    /// Who opened it with an `XFR SB` cookie (counted in `rooms_by_owner` until it ends).
    owner: String,
    members: Mutex<Members>,
}

/// How a message travels.
pub enum Route<'a> {
    /// To every other participant.
    All,
    /// Only to this participant (`P2P-Dest`).
    To(&'a str),
}

struct Inner {
    tickets: HashMap<String, Ticket>,
    rooms: HashMap<u32, Arc<Room>>,
    /// The `XFR SB` cookies each user was given, with their expiry; redeemed, expired and
    /// unknown ones are dropped whenever the user's list is looked at.
    xfr_cookies: HashMap<String, Vec<(String, Instant)>>,
    /// Rooms open per owner.
    rooms_by_owner: HashMap<String, usize>,
    /// Each user's `XFR SB`/`CAL` budget.
    calls: HashMap<String, CallBudget>,
}

/// A token bucket for one user's `XFR SB` and `CAL`.
struct CallBudget {
    tokens: u32,
    last: Instant,
    /// Refused since the last one allowed (logged when the user gets a token again).
    refused: u64,
}

pub struct Switchboards {
    inner: Mutex<Inner>,
    ttl: Duration,
    max: usize,
    pub max_participants: usize,
    cookies_per_user: usize,
    rooms_per_user: usize,
    call_burst: u32,
    call_refill: Duration,
}

impl Switchboards {
    pub fn new(limits: &LimitsConfig) -> Self {
        Switchboards {
            inner: Mutex::new(Inner {
                tickets: HashMap::new(),
                rooms: HashMap::new(),
                xfr_cookies: HashMap::new(),
                rooms_by_owner: HashMap::new(),
                calls: HashMap::new(),
            }),
            ttl: limits.sb_cookie_ttl(),
            max: limits.max_switchboards.max(1),
            max_participants: limits.sb_max_participants.max(2),
            cookies_per_user: limits.sb_cookies_per_user.max(1),
            rooms_per_user: limits.sb_rooms_per_user.max(1),
            call_burst: limits.sb_call_burst.max(1),
            call_refill: Duration::from_secs(limits.sb_call_refill_secs),
        }
    }

    /// Spends one of `email`'s `XFR SB`/`CAL` tokens; `false` (713) when it has none left.
    /// A run of refusals is logged once when it starts and once, with its count, when it ends.
    pub fn take_call(&self, email: &str) -> bool {
        if self.call_refill.is_zero() {
            return true;
        }
        let now = Instant::now();
        let mut inner = self.inner();
        let burst = self.call_burst;
        if inner.calls.len() >= self.max && !inner.calls.contains_key(email) {
            // Users whose budget is whole again need no entry.
            let refill = self.call_refill;
            inner
                .calls
                .retain(|_, b| b.tokens.saturating_add(earned(b.last, now, refill)) < burst);
        }
        let b = inner.calls.entry(email.to_owned()).or_insert(CallBudget {
            tokens: burst,
            last: now,
            refused: 0,
        });
        let got = earned(b.last, now, self.call_refill);
        if got > 0 {
            b.tokens = b.tokens.saturating_add(got).min(burst);
            b.last = now;
        }
        if b.tokens == 0 {
            b.refused += 1;
            if b.refused == 1 {
                tracing::warn!(account = %email, "XFR SB/CAL too rapidly: refused (713)");
            }
            return false;
        }
        if b.refused > 0 {
            tracing::info!(account = %email, refused = b.refused, "XFR SB/CAL allowed again");
            b.refused = 0;
        }
        b.tokens -= 1;
        true
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh single-use cookie for `member`. Expired cookies are swept only when the table is
    /// full, so issuing stays O(1) in the common case and the table stays bounded.
    pub fn issue(
        &self,
        member: Member,
        dialect: Dialect,
        room: Option<u32>,
    ) -> Result<String, RegistryError> {
        let now = Instant::now();
        let mut inner = self.inner();
        if inner.tickets.len() >= self.max {
            inner.tickets.retain(|_, t| t.expires > now);
            let Inner {
                tickets,
                xfr_cookies,
                ..
            } = &mut *inner;
            xfr_cookies.retain(|_, v| {
                v.retain(|(c, _)| tickets.contains_key(c));
                !v.is_empty()
            });
            if inner.tickets.len() >= self.max {
                return Err(RegistryError::Full);
            }
        }
        if room.is_none() {
            // One user's share: unused cookies and the rooms it opened.
            let Inner {
                tickets,
                xfr_cookies,
                rooms_by_owner,
                ..
            } = &mut *inner;
            let rooms = rooms_by_owner.get(&member.email).copied().unwrap_or(0);
            let mine = xfr_cookies.entry(member.email.clone()).or_default();
            mine.retain(|(c, exp)| *exp > now && tickets.contains_key(c));
            if mine.len() >= self.cookies_per_user || rooms >= self.rooms_per_user {
                let cookies = mine.len();
                if mine.is_empty() {
                    xfr_cookies.remove(&member.email);
                }
                tracing::warn!(account = %member.email, cookies, rooms, "XFR SB refused: too many switchboard sessions for this user (714)");
                return Err(RegistryError::TooManyForUser);
            }
        }
        let mut rng = rand::rng();
        let cookie = loop {
            // The official servers' shape (`digits.digits.digits`) with ~70 random bits: clients
            // treat it as opaque, and it cannot be guessed.
            let c = format!(
                "{}.{}.{}",
                rng.random_range(100_000..1_000_000u32),
                rng.random::<u32>(),
                rng.random::<u32>()
            );
            if !inner.tickets.contains_key(&c) {
                break c;
            }
        };
        if room.is_none() {
            inner
                .xfr_cookies
                .entry(member.email.clone())
                .or_default()
                .push((cookie.clone(), now + self.ttl));
        }
        inner.tickets.insert(
            cookie.clone(),
            Ticket {
                member,
                dialect,
                room,
                expires: now + self.ttl,
            },
        );
        Ok(cookie)
    }

    /// Takes the cookie if it is live, belongs to `email` and leads to `room`; it cannot be
    /// used again. A cookie presented by someone else, or for another session, stays valid
    /// for its owner (a stranger guessing cannot burn it).
    pub fn redeem(&self, cookie: &str, email: &str, room: Option<u32>) -> Option<Ticket> {
        let mut inner = self.inner();
        let t = inner.tickets.get(cookie)?;
        if t.expires <= Instant::now() {
            inner.tickets.remove(cookie);
            return None;
        }
        if !t.member.email.eq_ignore_ascii_case(email) || t.room != room {
            return None;
        }
        let ticket = inner.tickets.remove(cookie)?;
        if ticket.room.is_none() {
            if let Some(mine) = inner.xfr_cookies.get_mut(&ticket.member.email) {
                mine.retain(|(c, _)| c != cookie);
                if mine.is_empty() {
                    inner.xfr_cookies.remove(&ticket.member.email);
                }
            }
        }
        Some(ticket)
    }

    /// A new, empty room with a random id, opened by `owner` (counted as one of its rooms).
    pub fn create(&self, owner: &str) -> Result<Arc<Room>, RegistryError> {
        let mut inner = self.inner();
        if inner.rooms.len() >= self.max {
            return Err(RegistryError::Full);
        }
        let mut rng = rand::rng();
        let id = loop {
            // Eight or nine digits, like the official ids.
            let id = rng.random_range(10_000_000..1_000_000_000u32);
            if !inner.rooms.contains_key(&id) {
                break id;
            }
        };
        let owner = owner.to_ascii_lowercase();
        *inner.rooms_by_owner.entry(owner.clone()).or_default() += 1;
        let room = Arc::new(Room {
            id,
            owner,
            members: Mutex::new(Members::default()),
        });
        inner.rooms.insert(id, room.clone());
        Ok(room)
    }

    pub fn room(&self, id: u32) -> Option<Arc<Room>> {
        self.inner().rooms.get(&id).cloned()
    }

    #[cfg(test)]
    pub fn room_count(&self) -> usize {
        self.inner().rooms.len()
    }

    fn forget(&self, room: &Room) {
        let mut inner = self.inner();
        if inner
            .rooms
            .get(&room.id)
            .is_some_and(|r| std::ptr::eq(&**r, room))
        {
            inner.rooms.remove(&room.id);
            if let Some(n) = inner.rooms_by_owner.get_mut(&room.owner) {
                *n -= 1;
                if *n == 0 {
                    inner.rooms_by_owner.remove(&room.owner);
                }
            }
        }
    }

    /// Adds a participant and returns the members already there (for `IRO`); the others hear
    /// `JOI`. A room that has ended or is full refuses.
    pub fn join(
        &self,
        room: &Room,
        conn: u64,
        member: Arc<Member>,
        events: queue::Sender<Event>,
    ) -> Result<Vec<Arc<Member>>, JoinError> {
        let mut m = room.lock();
        if m.closed {
            return Err(JoinError::Ended);
        }
        if m.list.len() >= self.max_participants {
            return Err(JoinError::Full);
        }
        let others: Vec<Arc<Member>> = m.list.iter().map(|p| p.member.clone()).collect();
        let failed = broadcast(&m.list, None, &SbEvent::Joined(member.clone()));
        m.list.push(Participant {
            conn,
            member,
            events,
        });
        self.drop_failed(room, m, failed);
        Ok(others)
    }

    /// Removes `conn` from the room; the rest hear `BYE email` (`BYE email 1` when the server
    /// removed it). The room ends when it is empty.
    pub fn leave(&self, room: &Room, conn: u64, timeout: bool) {
        let mut m = room.lock();
        let Some(i) = m.list.iter().position(|p| p.conn == conn) else {
            return;
        };
        let gone = m.list.swap_remove(i);
        let failed = broadcast(
            &m.list,
            None,
            &SbEvent::Left(Arc::new(Departure {
                email: gone.member.email.clone(),
                timeout,
            })),
        );
        self.drop_failed(room, m, failed);
    }

    /// Whether `email` is in the room.
    pub fn contains(&self, room: &Room, email: &str) -> bool {
        room.lock()
            .list
            .iter()
            .any(|p| p.member.email.eq_ignore_ascii_case(email))
    }

    pub fn len(&self, room: &Room) -> usize {
        room.lock().list.len()
    }

    /// Relays one rendered `MSG` frame from `from` along `route`. Returns whether every
    /// intended recipient took it (a `P2P-Dest` that is not in the room, or nobody else in
    /// the room at all, counts as a failure).
    pub fn relay(&self, room: &Room, from: u64, route: Route<'_>, frame: Bytes) -> bool {
        let m = room.lock();
        let event = SbEvent::Message(Arc::new(frame));
        let (failed, found) = match route {
            // Said to nobody (everyone else has left) is not delivered: the sender hears NAK,
            // as the seeds show for a message to a conversation that emptied.
            Route::All => {
                let f = broadcast(&m.list, Some(from), &event);
                (f, m.list.iter().any(|p| p.conn != from))
            }
            Route::To(dest) => {
                let target = m
                    .list
                    .iter()
                    .position(|p| p.conn != from && p.member.email.eq_ignore_ascii_case(dest));
                match target {
                    Some(i) => {
                        let f = match deliver(&m.list[i], &event) {
                            true => Vec::new(),
                            false => vec![m.list[i].conn],
                        };
                        (f, true)
                    }
                    None => (Vec::new(), false),
                }
            }
        };
        let ok = found && failed.is_empty();
        self.drop_failed(room, m, failed);
        ok
    }

    /// Removes the participants whose queues refused an event, telling the rest, until every
    /// remaining queue took everything; forgets the room once it is empty.
    fn drop_failed(&self, room: &Room, mut m: MutexGuard<'_, Members>, mut failed: Vec<u64>) {
        while !failed.is_empty() {
            let mut gone = Vec::new();
            m.list.retain(|p| {
                if failed.contains(&p.conn) {
                    // Its connection closes; its own leave() then finds nothing to do.
                    p.events.kill();
                    gone.push(p.member.email.clone());
                    false
                } else {
                    true
                }
            });
            failed.clear();
            for email in gone {
                tracing::warn!(room = room.id, account = %email, "switchboard participant too slow: dropped");
                let event = SbEvent::Left(Arc::new(Departure {
                    email,
                    timeout: true,
                }));
                for f in broadcast(&m.list, None, &event) {
                    if !failed.contains(&f) {
                        failed.push(f);
                    }
                }
            }
        }
        if m.list.is_empty() && !m.closed {
            m.closed = true;
            drop(m);
            self.forget(room);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinError {
    Ended,
    Full,
}

impl Room {
    fn lock(&self) -> MutexGuard<'_, Members> {
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Tokens earned since `last` at one per `refill`.
fn earned(last: Instant, now: Instant, refill: Duration) -> u32 {
    let n = now.saturating_duration_since(last).as_nanos() / refill.as_nanos().max(1);
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Queues `event` for one participant without waiting; `false` if it could not take it.
fn deliver(p: &Participant, event: &SbEvent) -> bool {
    // A relayed message goes straight to an idle recipient's socket when it can (`queue`).
    match p.events.try_send_direct(Event::Switchboard(event.clone())) {
        Ok(()) => true,
        Err(TrySendError::Full(_)) | Err(TrySendError::Closed(_)) => false,
    }
}

/// Sends `event` to every participant except `skip`; returns those that could not take it.
fn broadcast(list: &[Participant], skip: Option<u64>, event: &SbEvent) -> Vec<u64> {
    list.iter()
        .filter(|p| Some(p.conn) != skip)
        .filter(|p| !deliver(p, event))
        .map(|p| p.conn)
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn member(email: &str) -> Member {
        Member {
            email: email.into(),
            name: email.into(),
            caps: ClientCaps::default(),
        }
    }

    fn limits() -> LimitsConfig {
        LimitsConfig {
            sb_max_participants: 3,
            max_switchboards: 2,
            ..LimitsConfig::default()
        }
    }

    #[test]
    fn cookies_are_single_use_and_bound_to_user_and_room() {
        let sb = Switchboards::new(&limits());
        let c = sb.issue(member("a@x.com"), Dialect::Msnp8, None).unwrap();
        assert!(sb.redeem(&c, "b@x.com", None).is_none(), "foreign user");
        assert!(sb.redeem(&c, "a@x.com", Some(5)).is_none(), "other room");
        assert!(sb.redeem(&c, "A@x.com", None).is_some());
        assert!(sb.redeem(&c, "a@x.com", None).is_none(), "reused");
        assert!(sb.redeem("nonsense", "a@x.com", None).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn cookies_expire_and_the_table_is_bounded() {
        let sb = Switchboards::new(&limits());
        let c = sb.issue(member("a@x.com"), Dialect::Msnp8, None).unwrap();
        sb.issue(member("a@x.com"), Dialect::Msnp8, None).unwrap();
        assert_eq!(
            sb.issue(member("a@x.com"), Dialect::Msnp8, None)
                .unwrap_err(),
            RegistryError::Full
        );
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(sb.redeem(&c, "a@x.com", None).is_none(), "expired");
        // Expired cookies make room.
        sb.issue(member("a@x.com"), Dialect::Msnp8, None).unwrap();
    }

    #[test]
    fn a_full_queue_drops_the_participant_and_the_room_ends_when_empty() {
        let sb = Switchboards::new(&limits());
        let room = sb.create("a@x.com").unwrap();
        let (ta, mut ra) = queue::channel(8);
        let (tb, rb) = queue::channel(1);
        sb.join(&room, 1, Arc::new(member("a@x.com")), ta).unwrap();
        let others = sb.join(&room, 2, Arc::new(member("b@x.com")), tb).unwrap();
        assert_eq!(others.len(), 1);
        assert!(matches!(
            ra.try_recv().unwrap(),
            Event::Switchboard(SbEvent::Joined(_))
        ));
        assert!(sb.relay(&room, 1, Route::All, Bytes::from_static(b"x")));
        // b's queue (capacity 1) is now full: the next message drops it.
        assert!(!sb.relay(&room, 1, Route::All, Bytes::from_static(b"y")));
        assert!(rb.is_killed());
        match ra.try_recv().unwrap() {
            Event::Switchboard(SbEvent::Left(d)) => {
                assert_eq!(d.email, "b@x.com");
                assert!(d.timeout);
            }
            other => panic!("{other:?}"),
        }
        assert!(!sb.relay(&room, 1, Route::To("b@x.com"), Bytes::new()));
        assert_eq!(sb.room_count(), 1);
        sb.leave(&room, 1, false);
        assert_eq!(sb.room_count(), 0);
        let (tc, _rc) = queue::channel(1);
        assert_eq!(
            sb.join(&room, 3, Arc::new(member("c@x.com")), tc)
                .unwrap_err(),
            JoinError::Ended
        );
    }

    /// One user's unused `XFR SB` cookies and open rooms are capped; redeeming a cookie makes
    /// room for another, `RNG` cookies do not count against the callee, other users are not
    /// affected.
    #[tokio::test(start_paused = true)]
    async fn one_user_cannot_take_every_switchboard() {
        let sb = Switchboards::new(&LimitsConfig {
            sb_cookies_per_user: 2,
            sb_rooms_per_user: 2,
            ..LimitsConfig::default()
        });
        let a = || member("a@x.com");
        let c1 = sb.issue(a(), Dialect::Msnp8, None).unwrap();
        sb.issue(a(), Dialect::Msnp8, None).unwrap();
        assert_eq!(
            sb.issue(a(), Dialect::Msnp8, None).unwrap_err(),
            RegistryError::TooManyForUser
        );
        sb.issue(a(), Dialect::Msnp8, Some(7)).unwrap();
        sb.issue(member("b@x.com"), Dialect::Msnp8, None).unwrap();
        // Redeemed: one fewer unused, but one room.
        sb.redeem(&c1, "a@x.com", None).unwrap();
        let _r1 = sb.create("a@x.com").unwrap();
        let c3 = sb.issue(a(), Dialect::Msnp8, None).unwrap();
        sb.redeem(&c3, "a@x.com", None).unwrap();
        let r2 = sb.create("a@x.com").unwrap();
        // Two rooms open: no more cookies, whatever is unused.
        assert_eq!(
            sb.issue(a(), Dialect::Msnp8, None).unwrap_err(),
            RegistryError::TooManyForUser
        );
        // A room that ends gives its place back.
        let (t, _r) = queue::channel(8);
        sb.join(&r2, 1, Arc::new(a()), t).unwrap();
        sb.leave(&r2, 1, false);
        // The other unused cookie expires: two cookies again (one room is still open).
        tokio::time::advance(Duration::from_secs(61)).await;
        sb.issue(a(), Dialect::Msnp8, None).unwrap();
        sb.issue(a(), Dialect::Msnp8, None).unwrap();
        sb.issue(a(), Dialect::Msnp8, None).unwrap_err();
    }

    /// `XFR SB` and `CAL` share a per-user budget: a burst, then one per refill period.
    #[tokio::test(start_paused = true)]
    async fn calls_are_paced_per_user() {
        let sb = Switchboards::new(&LimitsConfig {
            sb_call_burst: 3,
            sb_call_refill_secs: 2,
            ..LimitsConfig::default()
        });
        let allowed = |n: usize| (0..n).filter(|_| sb.take_call("a@x.com")).count();
        assert_eq!(allowed(10), 3);
        assert!(
            sb.take_call("b@x.com"),
            "another user has a budget of its own"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(allowed(10), 1);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(allowed(10), 3, "refilled up to the burst, no further");
    }

    #[test]
    fn rooms_are_bounded_in_number_and_size() {
        let sb = Switchboards::new(&limits());
        let room = sb.create("a@x.com").unwrap();
        sb.create("b@x.com").unwrap();
        assert!(sb.create("c@x.com").is_err());
        let mut rx = Vec::new();
        for i in 0..3 {
            let (t, r) = queue::channel(8);
            rx.push(r);
            sb.join(&room, i, Arc::new(member(&format!("{i}@x.com"))), t)
                .unwrap();
        }
        let (t, _r) = queue::channel(8);
        assert_eq!(
            sb.join(&room, 9, Arc::new(member("9@x.com")), t)
                .unwrap_err(),
            JoinError::Full
        );
    }
}
