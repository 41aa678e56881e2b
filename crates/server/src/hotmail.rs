//! Hotmail inside Messenger: the mail side's change events become hub events for the owner's NS
//! session, which renders them as the `MSG Hotmail Hotmail` notices of its dialect (`ns/mail.rs`).
//!
//! The mail side knows nothing of MSNP: it publishes every durable mailbox write on
//! [`msgr_mail::notify::Notifier`], and [`run`] holds one bounded tap of those events. For each
//! batch it looks up, per account that is online, what a notice needs — the unread count of every
//! folder and, for a stored message, its sender and subject — off the async workers, and sends one
//! [`Event::Mail`] per account through the hub, like any other event, so it works the same once the
//! hub is distributed. Accounts that are not online cost nothing but the hub lookup.
//!
//! Unread counts travel whole (not as deltas): the session compares them with what it last told its
//! client and says the difference (`text/x-msmsgsactivemailnotification`), so a lost or coalesced
//! event never leaves the client's count wrong for longer than the next change.

use crate::hub::Event;
use crate::Shared;
use msgr_mail::notify::{MailEvent, MailEventKind};
use msgr_store::{MailStore, SpecialUse, Store};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How many mail events the tap holds while the bridge is busy; beyond that the notifier drops
/// (and counts) them rather than slow delivery, and the next event's full counts repair the rest.
pub(crate) const TAP_CAPACITY: usize = 4096;
/// Events taken from the tap at once: one store read per account of the batch.
const BATCH: usize = 256;

/// The unread count of each folder, keyed by its name on the wire (`ACTIVE` for the inbox).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnreadCounts(pub Vec<(String, u32)>);

impl UnreadCounts {
    /// The inbox's unread count.
    pub fn inbox(&self) -> u32 {
        self.get(INBOX)
    }

    /// Unread messages in every folder but the inbox.
    pub fn other_folders(&self) -> u32 {
        self.0
            .iter()
            .filter(|(f, _)| f != INBOX)
            .map(|(_, n)| *n)
            .sum()
    }

    pub fn get(&self, folder: &str) -> u32 {
        self.0
            .iter()
            .find(|(f, _)| f == folder)
            .map_or(0, |(_, n)| *n)
    }

    /// Counts one more unread message in `folder` (the client does the same on a new-mail notice).
    pub fn add_one(&mut self, folder: &str) {
        match self.0.iter_mut().find(|(f, _)| f == folder) {
            Some((_, n)) => *n = n.saturating_add(1),
            None => self.0.push((folder.to_owned(), 1)),
        }
    }
}

/// Hotmail's name for the inbox in every notice (`Dest-Folder`, `Src-Folder`).
pub const INBOX: &str = "ACTIVE";
/// Hotmail's name for the deleted-items folder.
const TRASH: &str = "trAsH";

/// A folder's name on the wire: Hotmail's names for the inbox and trash, the IMAP name otherwise.
pub fn wire_folder(name: &str, special: Option<SpecialUse>) -> String {
    match special {
        Some(SpecialUse::Inbox) => INBOX.to_owned(),
        Some(SpecialUse::Trash) => TRASH.to_owned(),
        _ => name.to_owned(),
    }
}

/// One new message, as a new-mail notice shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMail {
    /// The sender's display name (its address when it has none).
    pub from: String,
    pub from_addr: String,
    pub subject: String,
    /// The folder on the wire (`ACTIVE`…).
    pub folder: String,
    /// The folder's IMAP name and the message's UID: where the web inbox finds it.
    pub imap_folder: String,
    pub uid: u32,
}

/// [`Event::Mail`]'s content: what arrived (in order) and every folder's unread count afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailNotice {
    pub arrived: Vec<NewMail>,
    pub counts: UnreadCounts,
}

/// Splits a decoded `From` (`Name <addr>`, `addr`) into display name and address.
fn split_from(from: &str) -> (String, String) {
    let from = from.trim();
    if let (Some(open), true) = (from.rfind('<'), from.ends_with('>')) {
        let addr = from[open + 1..from.len() - 1].trim().to_owned();
        let name = from[..open].trim().trim_matches('"').trim();
        let name = if name.is_empty() {
            addr.clone()
        } else {
            name.to_owned()
        };
        return (name, addr);
    }
    (from.to_owned(), from.to_owned())
}

/// Every folder's unread count for `account`, and the folders' ids by IMAP name.
fn read_counts(
    store: &Store,
    account: &str,
) -> msgr_store::Result<(UnreadCounts, HashMap<String, i64>)> {
    let folders = store.folders(account)?;
    let ids = folders.iter().map(|f| (f.name.clone(), f.id)).collect();
    let counts = folders
        .iter()
        .map(|f| (wire_folder(&f.name, f.special), f.unseen))
        .collect();
    Ok((UnreadCounts(counts), ids))
}

/// Whether this server hosts mail: then every account has a mailbox (`EmailEnabled: 1`).
pub(crate) fn enabled(config: &crate::Config) -> bool {
    let m = &config.mail;
    [
        m.smtp,
        m.submission,
        m.submissions,
        m.pop3,
        m.pop3s,
        m.imap,
        m.imaps,
    ]
    .iter()
    .any(Option::is_some)
}

/// The unread counts at sign-in, off the async workers.
pub(crate) async fn unread_counts(store: Arc<Store>, account: &str) -> Option<UnreadCounts> {
    let account = account.to_owned();
    match tokio::task::spawn_blocking(move || read_counts(&store, &account)).await {
        Ok(Ok((counts, _))) => Some(counts),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "reading unread mail counts failed");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "unread mail count task failed");
            None
        }
    }
}

/// What one account's events of a batch amount to: the messages stored, in order.
#[derive(Default)]
struct Pending {
    arrived: Vec<(String, Option<SpecialUse>, u32)>,
}

/// Builds the notice for one account: its counts now, and the unread messages among those stored
/// (copies filed as read — the `Sent` copy, an `APPEND` of old mail — and `Sent`/`Drafts` are not
/// news).
fn notice_for(store: &Store, account: &str, pending: Pending) -> msgr_store::Result<MailNotice> {
    let (counts, ids) = read_counts(store, account)?;
    let mut arrived = Vec::new();
    for (folder, special, uid) in pending.arrived {
        if matches!(special, Some(SpecialUse::Sent | SpecialUse::Drafts)) {
            continue;
        }
        let Some(&id) = ids.get(&folder) else {
            continue;
        };
        let Some(meta) = store.message(id, uid)? else {
            continue;
        };
        if meta.flags.contains(msgr_store::Flags::SEEN) {
            continue;
        }
        let (from, from_addr) = split_from(&meta.summary.from);
        arrived.push(NewMail {
            from,
            from_addr,
            subject: meta.summary.subject,
            folder: wire_folder(&folder, special),
            imap_folder: folder,
            uid,
        });
    }
    Ok(MailNotice { arrived, counts })
}

/// The bridge: mail events in, one hub event per online account out, until `shutdown` or the mail
/// side closes the tap.
pub(crate) async fn run(
    shared: Arc<Shared>,
    mut tap: mpsc::Receiver<MailEvent>,
    shutdown: CancellationToken,
) {
    let mut events = Vec::with_capacity(BATCH);
    loop {
        let n = tokio::select! {
            n = tap.recv_many(&mut events, BATCH) => n,
            () = shutdown.cancelled() => return,
        };
        if n == 0 {
            return;
        }
        // Per account, in order of first appearance: a burst of changes is one store read.
        let mut accounts: Vec<(String, Pending)> = Vec::new();
        for event in events.drain(..) {
            if !shared.hub.is_online(&event.account) {
                continue;
            }
            let i = match accounts.iter().position(|(a, _)| *a == event.account) {
                Some(i) => i,
                None => {
                    accounts.push((event.account.clone(), Pending::default()));
                    accounts.len() - 1
                }
            };
            if let MailEventKind::Arrived {
                folder,
                special,
                uid,
            } = event.kind
            {
                accounts[i].1.arrived.push((folder, special, uid));
            }
        }
        if accounts.is_empty() {
            continue;
        }
        let store = shared.store.clone();
        let built = tokio::task::spawn_blocking(move || {
            accounts
                .into_iter()
                .filter_map(|(account, pending)| match notice_for(&store, &account, pending) {
                    Ok(n) => Some((account, n)),
                    Err(e) => {
                        tracing::warn!(%account, error = %e, "reading mail for a notice failed");
                        None
                    }
                })
                .collect::<Vec<_>>()
        })
        .await;
        match built {
            Ok(notices) => shared.hub.send_all(
                notices
                    .into_iter()
                    .map(|(account, n)| (account, Event::Mail(Box::new(n)))),
            ),
            Err(e) => tracing::warn!(error = %e, "mail notice task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_is_split() {
        assert_eq!(
            split_from("Mike Mintz <mike@example.com>"),
            ("Mike Mintz".into(), "mike@example.com".into())
        );
        assert_eq!(
            split_from("\"Lev\" <lev@example.com>"),
            ("Lev".into(), "lev@example.com".into())
        );
        assert_eq!(split_from("<a@b.c>"), ("a@b.c".into(), "a@b.c".into()));
        assert_eq!(split_from("a@b.c"), ("a@b.c".into(), "a@b.c".into()));
    }

    #[test]
    fn counts() {
        let mut c = UnreadCounts(vec![
            (INBOX.into(), 2),
            ("Junk".into(), 1),
            (TRASH.into(), 3),
        ]);
        assert_eq!(c.inbox(), 2);
        assert_eq!(c.other_folders(), 4);
        c.add_one("Work");
        c.add_one(INBOX);
        assert_eq!(c.get("Work"), 1);
        assert_eq!(c.inbox(), 3);
    }
}
