//! The hub: who is online where. Sessions never touch each other's sockets; they address
//! events to a user and the hub delivers them to whichever session holds that user.
//!
//! Each online user publishes one [`UserState`]: its contact list and its current presence,
//! behind locks, shared by `Arc` with its own session. Other sessions read it (never copy it)
//! to decide privacy (`ILN` after the first `CHG`, `NLN` after an `ADD FL`). Fan-out takes the
//! map lock once, looks every recipient up, and `try_send`s one shared event into each bounded
//! queue; a full queue means a slow consumer, which is kicked rather than waited for.
//!
//! Lock order, everywhere: the map, then a user's `list`, then that user's `presence`. A session
//! writing its own list or presence holds only that lock, so no cycle is possible.
//!
//! In-process today; a NATS-backed hub would publish the same events on subjects and keep the
//! privacy data of remote users in its own cache.

use crate::queue;
use msgr_core::lists::{ContactList, Name, Names};
use msgr_core::presence::{ClientCaps, Status};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::sync::mpsc::error::TrySendError;

/// Something that happened elsewhere and concerns one session.
#[derive(Debug, Clone)]
pub enum Event {
    /// The session must end: `OUT OTH` (logged in elsewhere) or `OUT SSD` (shutdown).
    Kick(KickReason),
    /// A contact the session watches is now in this state (`NLN`, or `FLN` when the notice's
    /// status is not visible). Shared by every watcher of one change.
    Presence(Arc<PresenceNotice>),
    /// Someone else's operation changed this session's list (today: its reverse list). The
    /// session applies it to its copy and tells its client (`ADD 0 RL …`, `REM 0 RL …`).
    ListChanged(Box<PeerChange>),
    /// A watched contact's `UUX` personal message (MSNP11+ watchers show it with `UBX`).
    PersonalMessage(Arc<PersonalMessage>),
    /// A contact on this user's forward list changed a phone property with `PRP`. The store
    /// moved this user's list version to `version` (its cached `BPR` lines are stale); `notice`
    /// is there when the contact's privacy lets this user see it (`BPR`).
    ContactProperty(Box<PropertyChanged>),
    /// Someone `CAL`led this user into a switchboard session: its NS session issues a cookie
    /// bound to itself and tells its client with `RNG`.
    Ring(Arc<Ring>),
    /// The user's mailbox changed: new mail, or unread mail read, moved or deleted. The NS
    /// session tells its client in Hotmail's words (`ns/mail.rs`).
    Mail(Box<crate::hotmail::MailNotice>),
    /// Something happened in a switchboard session that this (switchboard) connection takes
    /// part in. Never sent to an NS session.
    Switchboard(crate::sb::SbEvent),
}

/// Bytes counted for an event that carries no large buffer: about what the longer ones render
/// to (an `NLN` with a long name and an MSN object, a Hotmail notice), so that the count limit
/// (`event_queue`) and the byte limit (`outbox_bytes`) agree at the defaults (1,024 × 256 =
/// 256 KiB).
pub const SMALL_EVENT_BYTES: usize = 256;

impl queue::Weigh for Event {
    fn weight(&self) -> usize {
        match self {
            Event::Switchboard(e) => e.weight(),
            _ => SMALL_EVENT_BYTES,
        }
    }
}

/// An invitation to a switchboard session, as the callee's NS session receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    /// The switchboard session id.
    pub session: u32,
    pub caller: String,
    /// The caller's display name, URL-encoded as it goes on the wire.
    pub caller_name: String,
}

/// One user's presence, as watchers are told about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceNotice {
    /// The user, lowercased: the shared copy ([`Names`]), as the session holds it, so that an
    /// online user's notice has no string of its own for it.
    pub from: Name,
    /// The real status; watchers show `FLN` when it is not visible.
    pub status: Status,
    /// The display name, URL-encoded as it goes on the wire.
    pub name: String,
    pub caps: ClientCaps,
    /// The MSN object (MSNP9+), URL-encoded, exactly as the client sent it.
    pub msnobj: Option<String>,
}

/// [`Event::ListChanged`]'s content. Boxed, like every larger event, so that [`Event`] stays
/// two words: queued events are held by value in every session's queue.
#[derive(Debug, Clone)]
pub struct PeerChange {
    pub change: msgr_core::lists::Change,
    /// The owner's list version after the change, as the store returned it.
    pub version: u64,
}

/// [`Event::ContactProperty`]'s content.
#[derive(Debug, Clone)]
pub struct PropertyChanged {
    /// There when the contact's privacy lets this user see it (`BPR`).
    pub notice: Option<Arc<PropertyNotice>>,
    /// This user's list version, which the change moved.
    pub version: u64,
}

/// A contact's new phone property, to relay as `BPR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyNotice {
    /// The contact, lowercased.
    pub from: String,
    pub property: msgr_core::lists::Property,
    /// The new value, decoded; `None` when cleared.
    pub value: Option<String>,
}

/// A `UUX` payload to relay as `UBX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalMessage {
    pub from: String,
    pub payload: Option<String>,
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

/// What one online user publishes to the others. Owned by its session, read by the rest.
#[derive(Debug)]
pub struct UserState {
    list: RwLock<ContactList>,
    /// `None` until the first `CHG`: until then the user is online but not yet shown.
    presence: RwLock<Option<Arc<PresenceNotice>>>,
}

impl UserState {
    pub fn new(list: ContactList) -> Arc<UserState> {
        Arc::new(UserState {
            list: RwLock::new(list),
            presence: RwLock::new(None),
        })
    }

    pub fn list(&self) -> RwLockReadGuard<'_, ContactList> {
        self.list.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn list_mut(&self) -> RwLockWriteGuard<'_, ContactList> {
        self.list.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn presence(&self) -> Option<Arc<PresenceNotice>> {
        self.presence
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set_presence(&self, notice: Option<Arc<PresenceNotice>>) {
        *self.presence.write().unwrap_or_else(|p| p.into_inner()) = notice;
    }
}

/// A way to reach one online session.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    pub id: u64,
    /// The session's queue; [`queue::Sender::kill`] drops the session when it cannot take
    /// events fast enough.
    pub events: queue::Sender<Event>,
    pub state: Arc<UserState>,
}

impl SessionHandle {
    /// Queues `event` without waiting. A full queue means the session is not keeping up: it is
    /// killed (its watchers are not held back, and its memory does not grow). Returns whether
    /// the event was queued.
    fn deliver(&self, email: &str, event: Event) -> bool {
        match self.events.try_send(event) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                tracing::warn!(account = %email, "event queue full: slow consumer dropped");
                self.events.kill();
                false
            }
            // The session is ending; its own close path tells its watchers.
            Err(TrySendError::Closed(_)) => false,
        }
    }
}

#[derive(Default)]
pub struct Hub {
    next_id: AtomicU64,
    /// Keyed by the shared copy of the address ([`Names`]): an online user is on its contacts'
    /// lists, which hold that copy already, so the key is one word and no string of its own.
    online: Mutex<HashMap<Name, SessionHandle>>,
}

impl Hub {
    pub fn new() -> Self {
        Hub::default()
    }

    /// A fresh session id, unique for the life of the process.
    pub fn session_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Name, SessionHandle>> {
        self.online.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `handle` as the session of `email`; the previous session of that account, if
    /// any, is told to leave with `OUT OTH`, and its presence carries over to the new one, so
    /// that watchers see neither a flap now nor a stale status if the new session ends
    /// before its first `CHG`.
    pub fn register(&self, email: &str, handle: SessionHandle) {
        let state = handle.state.clone();
        let previous = self.map().insert(Names::global().intern(email), handle);
        if let Some(old) = previous {
            state.set_presence(old.state.presence());
            // A full queue kills the old session anyway, which is what OUT OTH asks for.
            if !old.deliver(email, Event::Kick(KickReason::OtherLogin)) {
                tracing::warn!(%email, "previous session did not take OUT OTH");
            }
        }
    }

    /// Forgets `email`'s session if it is still the one with `id` (a newer login may have
    /// replaced it already). Returns whether it was.
    pub fn unregister(&self, email: &str, id: u64) -> bool {
        let mut online = self.map();
        if online.get(email).is_some_and(|h| h.id == id) {
            online.remove(email);
            true
        } else {
            false
        }
    }

    pub fn is_online(&self, email: &str) -> bool {
        self.map().contains_key(email)
    }

    pub fn online_count(&self) -> usize {
        self.map().len()
    }

    /// The published state of `email`, if online.
    pub fn state(&self, email: &str) -> Option<Arc<UserState>> {
        self.map().get(email).map(|h| h.state.clone())
    }

    /// Sends `event` to `email` if online, without waiting; a full queue kills that session.
    pub fn send(&self, email: &str, event: Event) -> bool {
        let handle = self.map().get(email).cloned();
        handle.is_some_and(|h| h.deliver(email, event))
    }

    /// Sends `event` to every online watcher in `owner`'s audience (reverse-list members its
    /// privacy lets see it), except the session `skip` (the owner's own). One map lock for the
    /// whole fan-out; each delivery is a non-blocking `try_send` of a shared event. Returns how
    /// many sessions took it.
    pub fn fan_out(&self, owner: &UserState, event: &Event) -> usize {
        let online = self.map();
        let list = owner.list();
        let mut sent = 0;
        for watcher in msgr_core::privacy::audience(&list) {
            if watcher == list.owner {
                continue;
            }
            if let Some(h) = online.get(watcher) {
                if h.deliver(watcher, event.clone()) {
                    sent += 1;
                }
            }
        }
        sent
    }

    /// Sends `event` to each of `watchers` that is online.
    pub fn send_each<'a>(&self, watchers: impl IntoIterator<Item = &'a str>, event: &Event) {
        let online = self.map();
        for w in watchers {
            if let Some(h) = online.get(w) {
                h.deliver(w, event.clone());
            }
        }
    }

    /// Sends each event to its user if online, under one lock of the map.
    pub fn send_all(&self, events: impl IntoIterator<Item = (String, Event)>) {
        let online = self.map();
        for (user, event) in events {
            if let Some(h) = online.get(user.as_str()) {
                h.deliver(&user, event);
            }
        }
    }

    /// What `watcher` may see of each of `contacts` that is online, has set a presence and
    /// lets `watcher` see it (`ILN` after the first `CHG`): the notice and the contact's
    /// personal message. Hidden contacts are left out.
    pub fn visible_contacts<'a>(
        &self,
        watcher: &str,
        contacts: impl IntoIterator<Item = &'a str>,
    ) -> Vec<(Arc<PresenceNotice>, Option<String>)> {
        let online = self.map();
        let mut seen = Vec::new();
        for c in contacts {
            let Some(h) = online.get(c) else { continue };
            let list = h.state.list();
            if !msgr_core::privacy::may_see(&list, watcher) {
                continue;
            }
            if let Some(p) = h.state.presence().filter(|p| p.status.is_visible()) {
                seen.push((p, list.settings.personal_message.clone()));
            }
        }
        seen
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use msgr_core::lists::{Blp, Change, ChangeKind, Guid, List};

    fn rl(owner: &str, who: &str) -> Change {
        Change {
            owner: owner.into(),
            kind: ChangeKind::AddToList {
                email: who.into(),
                list: List::Reverse,
                nickname: who.into(),
                guid: Guid::random(),
                group: None,
            },
        }
    }

    /// Queued events are held by value: a larger event would make every queued notice (a
    /// fan-out burst to thousands of sessions) cost that much more memory.
    #[test]
    fn events_stay_two_words() {
        assert_eq!(std::mem::size_of::<Event>(), 16);
    }

    fn session(hub: &Hub, email: &str, queue: usize) -> (queue::Receiver<Event>, SessionHandle) {
        let (tx, rx) = queue::channel(queue);
        let handle = SessionHandle {
            id: hub.session_id(),
            events: tx,
            state: UserState::new(ContactList::new(email, Guid::random())),
        };
        hub.register(email, handle.clone());
        (rx, handle)
    }

    fn notice() -> Event {
        Event::Presence(Arc::new(PresenceNotice {
            from: "x@x.com".into(),
            status: Status::Online,
            name: "X".into(),
            caps: ClientCaps::default(),
            msnobj: None,
        }))
    }

    #[test]
    fn fan_out_reaches_the_audience_only() {
        let hub = Hub::new();
        let (_rx_x, x) = session(&hub, "x@x.com", 4);
        let (mut rx_a, _a) = session(&hub, "a@x.com", 4);
        let (mut rx_b, _b) = session(&hub, "b@x.com", 4);
        let (mut rx_c, _c) = session(&hub, "c@x.com", 4);
        {
            let mut l = x.state.list_mut();
            l.apply(&rl("x@x.com", "a@x.com"));
            l.apply(&rl("x@x.com", "b@x.com"));
            l.apply(&Change {
                owner: "x@x.com".into(),
                kind: ChangeKind::AddToList {
                    email: "b@x.com".into(),
                    list: List::Block,
                    nickname: "b".into(),
                    guid: Guid::random(),
                    group: None,
                },
            });
            // Offline watchers cost nothing.
            l.apply(&rl("x@x.com", "gone@x.com"));
        }
        assert_eq!(hub.fan_out(&x.state, &notice()), 1);
        assert!(rx_a.try_recv().is_ok());
        assert!(rx_b.try_recv().is_err(), "blocked watcher was told");
        assert!(rx_c.try_recv().is_err(), "c is not on the reverse list");

        x.state.list_mut().apply(&Change {
            owner: "x@x.com".into(),
            kind: ChangeKind::SetBlp(Blp::Block),
        });
        assert_eq!(hub.fan_out(&x.state, &notice()), 0);
    }

    #[test]
    fn a_full_queue_kills_the_slow_session() {
        let hub = Hub::new();
        let (_rx_x, x) = session(&hub, "x@x.com", 4);
        let (rx_a, _a) = session(&hub, "a@x.com", 1);
        x.state.list_mut().apply(&rl("x@x.com", "a@x.com"));
        assert_eq!(hub.fan_out(&x.state, &notice()), 1);
        assert!(!rx_a.is_killed());
        assert_eq!(hub.fan_out(&x.state, &notice()), 0);
        assert!(rx_a.is_killed());
    }

    #[test]
    fn only_the_current_session_unregisters() {
        let hub = Hub::new();
        let (_rx1, first) = session(&hub, "a@x.com", 4);
        let (_rx2, second) = session(&hub, "a@x.com", 4);
        assert!(!hub.unregister("a@x.com", first.id));
        assert!(hub.is_online("a@x.com"));
        assert!(hub.unregister("a@x.com", second.id));
        assert!(!hub.is_online("a@x.com"));
    }

    #[test]
    fn visible_contacts_follow_privacy_and_status() {
        let hub = Hub::new();
        let (_r1, bob) = session(&hub, "bob@x.com", 4);
        let (_r2, carol) = session(&hub, "carol@x.com", 4);
        let (_r3, _dave) = session(&hub, "dave@x.com", 4);
        let presence = |from: &str, status| {
            Some(Arc::new(PresenceNotice {
                from: from.into(),
                status,
                name: from.into(),
                caps: ClientCaps::default(),
                msnobj: None,
            }))
        };
        bob.state.set_presence(presence("bob@x.com", Status::Away));
        carol
            .state
            .set_presence(presence("carol@x.com", Status::Hidden));
        // dave has not sent CHG yet.
        let seen = hub.visible_contacts(
            "alice@x.com",
            ["bob@x.com", "carol@x.com", "dave@x.com", "nobody@x.com"],
        );
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0.from, "bob@x.com");
        bob.state.list_mut().apply(&Change {
            owner: "bob@x.com".into(),
            kind: ChangeKind::SetBlp(Blp::Block),
        });
        assert!(hub
            .visible_contacts("alice@x.com", ["bob@x.com"])
            .is_empty());
    }
}
