//! Tests of the SQLite mail store against real database files.

#![allow(clippy::unwrap_used)]

use tempfile::TempDir;

use crate::mail::*;
use crate::{AccountStore, NewAccount, Store, StoreError};

fn store_with(accounts: &[&str]) -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("msgr.sqlite")).unwrap();
    for a in accounts {
        store
            .create_account(NewAccount {
                email: (*a).to_owned(),
                display_name: (*a).to_owned(),
                password_hash: "x".to_owned(),
                md5_secret: None,
            })
            .unwrap();
    }
    (dir, store)
}

fn inbox(account: &str) -> LocalTarget {
    LocalTarget {
        account: account.to_owned(),
        folder: FolderRef::Special(SpecialUse::Inbox),
        flags: Flags::empty(),
    }
}

fn delivery(body: &str, targets: Vec<LocalTarget>) -> Delivery {
    Delivery {
        raw: format!("Subject: {body}\r\n\r\n{body}\r\n").into_bytes(),
        summary: MessageSummary {
            subject: body.to_owned(),
            from: "Carol <carol@far.test>".to_owned(),
            ..Default::default()
        },
        internal_date: 1_700_000_000,
        targets,
        outbound: None,
    }
}

const GIB: u64 = 1 << 30;

#[test]
fn a_new_account_has_the_five_standard_folders() {
    let (_d, store) = store_with(&["alice@example.com"]);
    let folders = store.folders("ALICE@example.com").unwrap();
    let names: Vec<&str> = folders.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["INBOX", "Sent", "Drafts", "Junk", "Trash"]);
    for (f, u) in folders.iter().zip(SpecialUse::ALL) {
        assert_eq!(f.special, Some(u));
        assert_eq!(f.uidnext, 1);
        assert!(f.uidvalidity > 0);
        assert_eq!(f.messages, 0);
    }
    assert!(store
        .folder("alice@example.com", "inbox")
        .unwrap()
        .is_some());
    assert!(store.is_account_domain("EXAMPLE.com").unwrap());
    assert!(!store.is_account_domain("example.org").unwrap());
    // `_` is not a wildcard.
    assert!(!store.is_account_domain("exampl_.com").unwrap());
    let mb = store.mailbox("alice@example.com").unwrap().unwrap();
    assert_eq!(mb.used_bytes, 0);
    assert_eq!(store.mailbox("nobody@example.com").unwrap(), None);
}

#[test]
fn deliveries_get_ascending_uids_and_keep_bytes_unchanged() {
    let (_d, store) = store_with(&["alice@example.com", "bob@example.com"]);
    let batch = vec![
        delivery(
            "one",
            vec![inbox("alice@example.com"), inbox("bob@example.com")],
        ),
        delivery("two", vec![inbox("alice@example.com")]),
    ];
    let results = store.deliver(&batch, GIB).unwrap();
    let first = results[0].as_ref().unwrap();
    let second = results[1].as_ref().unwrap();
    assert_eq!(first.stored.len(), 2);
    assert_eq!(first.stored[0].uid, 1);
    assert_eq!(second.stored[0].uid, 2);
    let f = store.folder("alice@example.com", "INBOX").unwrap().unwrap();
    assert_eq!((f.messages, f.unseen, f.uidnext), (2, 2, 3));
    let msgs = store.messages(f.id).unwrap();
    assert_eq!(msgs.iter().map(|m| m.uid).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(msgs[0].summary.subject, "one");
    assert_eq!(msgs[0].size, batch[0].raw.len() as u64);
    assert_eq!(store.message_raw(f.id, 1).unwrap().unwrap(), batch[0].raw);
    assert!(msgs[1].modseq > msgs[0].modseq);
    let mb = store.mailbox("alice@example.com").unwrap().unwrap();
    assert_eq!(
        mb.used_bytes,
        (batch[0].raw.len() + batch[1].raw.len()) as u64
    );
}

#[test]
fn one_failing_delivery_does_not_spoil_its_batch() {
    let (_d, store) = store_with(&["alice@example.com"]);
    let batch = vec![
        delivery("ok", vec![inbox("alice@example.com")]),
        delivery(
            "bad",
            vec![inbox("alice@example.com"), inbox("ghost@example.com")],
        ),
        delivery(
            "nofolder",
            vec![LocalTarget {
                folder: FolderRef::Named("Nope".into()),
                ..inbox("alice@example.com")
            }],
        ),
    ];
    let results = store.deliver(&batch, GIB).unwrap();
    assert!(results[0].is_ok());
    assert!(matches!(results[1], Err(StoreError::AccountNotFound(_))));
    assert!(matches!(results[2], Err(StoreError::FolderNotFound(_))));
    let f = store.folder("alice@example.com", "INBOX").unwrap().unwrap();
    // Only the first; the second's copy for alice was rolled back with the rest of it.
    assert_eq!(f.messages, 1);
    assert_eq!(f.uidnext, 2);
}

#[test]
fn quota_is_all_or_nothing_and_per_account() {
    let (_d, store) = store_with(&["alice@example.com", "bob@example.com"]);
    let d = delivery("x", vec![inbox("alice@example.com")]);
    let size = d.raw.len() as u64;
    store.set_quota("bob@example.com", Some(size)).unwrap();
    // Default quota fits two copies for alice; bob's own quota fits one.
    let results = store
        .deliver(&[d.clone(), d.clone(), d.clone()], 2 * size)
        .unwrap();
    assert!(results[0].is_ok() && results[1].is_ok());
    assert!(
        matches!(&results[2], Err(StoreError::OverQuota { account }) if account == "alice@example.com")
    );
    let both = delivery(
        "y",
        vec![inbox("bob@example.com"), inbox("bob@example.com")],
    );
    assert!(matches!(
        store.deliver(&[both], GIB).unwrap()[0],
        Err(StoreError::OverQuota { .. })
    ));
    let bob = store.folder("bob@example.com", "INBOX").unwrap().unwrap();
    assert_eq!(bob.messages, 0);
}

#[test]
fn flags_expunge_and_uids_never_reused() {
    let (_d, store) = store_with(&["alice@example.com"]);
    let batch: Vec<_> = (0..3)
        .map(|i| delivery(&format!("m{i}"), vec![inbox("alice@example.com")]))
        .collect();
    store.deliver(&batch, GIB).unwrap();
    let f = store.folder("alice@example.com", "INBOX").unwrap().unwrap();
    let before = f.highest_modseq;
    let changed = store
        .store_flags(
            f.id,
            &[1, 2, 99],
            FlagOp::Add,
            Flags::SEEN.union(Flags::FLAGGED),
            &["$Work".into()],
        )
        .unwrap();
    assert_eq!(changed.len(), 2);
    assert!(changed[0].flags.contains(Flags::SEEN));
    assert_eq!(changed[0].keywords, ["$Work"]);
    assert!(changed[1].modseq > before);
    let changed = store
        .store_flags(
            f.id,
            &[1],
            FlagOp::Remove,
            Flags::FLAGGED,
            &["$work".into()],
        )
        .unwrap();
    assert_eq!(changed[0].flags, Flags::SEEN);
    assert!(changed[0].keywords.is_empty());
    assert_eq!(
        store
            .folder("alice@example.com", "INBOX")
            .unwrap()
            .unwrap()
            .unseen,
        1
    );

    assert_eq!(store.expunge(f.id, &[3, 3, 42]).unwrap(), [3]);
    store
        .deliver(&[delivery("m3", vec![inbox("alice@example.com")])], GIB)
        .unwrap();
    let uids: Vec<u32> = store
        .messages(f.id)
        .unwrap()
        .iter()
        .map(|m| m.uid)
        .collect();
    assert_eq!(uids, [1, 2, 4]);
}

#[test]
fn copy_and_move_share_bytes_and_blobs_go_with_the_last_copy() {
    let (_d, store) = store_with(&["alice@example.com"]);
    store
        .deliver(&[delivery("m", vec![inbox("alice@example.com")])], GIB)
        .unwrap();
    let inbox_f = store.folder("alice@example.com", "INBOX").unwrap().unwrap();
    let work = store.create_folder("alice@example.com", "Work").unwrap();
    assert!(matches!(
        store.create_folder("alice@example.com", "work"),
        Err(StoreError::FolderExists(_))
    ));
    let (validity, pairs) = store
        .copy_messages(inbox_f.id, &[1, 7], work.id, false, GIB)
        .unwrap();
    assert_eq!(validity, work.uidvalidity);
    assert_eq!(pairs, [(1, 1)]);
    let raw = store.message_raw(work.id, 1).unwrap().unwrap();
    let (_, moved) = store
        .copy_messages(work.id, &[1], inbox_f.id, true, GIB)
        .unwrap();
    assert_eq!(moved, [(1, 2)]);
    assert!(store.message_raw(work.id, 1).unwrap().is_none());
    assert_eq!(store.message_raw(inbox_f.id, 2).unwrap().unwrap(), raw);
    store.expunge(inbox_f.id, &[1, 2]).unwrap();
    let mb = store.mailbox("alice@example.com").unwrap().unwrap();
    assert_eq!(mb.used_bytes, 0);
    // Every blob is gone with its last message.
    let Store::Sqlite(s) = &store;
    let blobs: i64 = s
        .with_reader(|c| Ok(c.query_row("SELECT COUNT(*) FROM mail_blobs", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(blobs, 0);
}

#[test]
fn user_folders_rename_delete_and_new_uidvalidity() {
    let (_d, store) = store_with(&["alice@example.com"]);
    let a = store.create_folder("alice@example.com", "Lists").unwrap();
    store
        .rename_folder("alice@example.com", "Lists", "Lists/Rust")
        .unwrap();
    assert!(store
        .folder("alice@example.com", "Lists")
        .unwrap()
        .is_none());
    let renamed = store
        .folder("alice@example.com", "Lists/Rust")
        .unwrap()
        .unwrap();
    assert_eq!(renamed.uidvalidity, a.uidvalidity);
    store
        .delete_folder("alice@example.com", "Lists/Rust")
        .unwrap();
    let again = store
        .create_folder("alice@example.com", "Lists/Rust")
        .unwrap();
    assert_ne!(again.uidvalidity, a.uidvalidity);
    assert!(matches!(
        store.delete_folder("alice@example.com", "Trash"),
        Err(StoreError::FolderProtected(_))
    ));
    assert!(matches!(
        store.rename_folder("alice@example.com", "INBOX", "Old"),
        Err(StoreError::FolderProtected(_))
    ));
    store
        .set_subscribed("alice@example.com", "Lists/Rust", false)
        .unwrap();
    assert!(
        !store
            .folder("alice@example.com", "Lists/Rust")
            .unwrap()
            .unwrap()
            .subscribed
    );
}

#[test]
fn deleting_the_account_deletes_the_mailbox() {
    let (_d, store) = store_with(&["alice@example.com"]);
    store
        .deliver(&[delivery("m", vec![inbox("alice@example.com")])], GIB)
        .unwrap();
    store.delete_account("alice@example.com").unwrap();
    assert!(store.mailbox("alice@example.com").unwrap().is_none());
    let Store::Sqlite(s) = &store;
    let left: i64 = s
        .with_reader(|c| {
            Ok(c.query_row(
                "SELECT (SELECT COUNT(*) FROM mail_blobs) + (SELECT COUNT(*) FROM mail_messages) \
                 + (SELECT COUNT(*) FROM mail_folders)",
                [],
                |r| r.get(0),
            )?)
        })
        .unwrap();
    assert_eq!(left, 0);
}

#[test]
fn the_outbound_queue_keeps_each_recipient_until_it_is_done_with() {
    let (_d, store) = store_with(&["alice@example.com"]);
    let mut d = delivery(
        "out",
        vec![LocalTarget {
            folder: FolderRef::Special(SpecialUse::Sent),
            flags: Flags::SEEN,
            ..inbox("alice@example.com")
        }],
    );
    d.outbound = Some(Outbound {
        sender: "alice@example.com".into(),
        account: Some("alice@example.com".into()),
        recipients: vec!["bob@Other.test".into(), "carol@third.test".into()],
    });
    let delivered = store
        .deliver(std::slice::from_ref(&d), GIB)
        .unwrap()
        .remove(0)
        .unwrap();
    let queue_id = delivered.queued.unwrap();
    let due = store.queue_due(d.internal_date, 10).unwrap();
    assert_eq!(due.len(), 2);
    assert_eq!(due[0].domain, "other.test");
    assert_eq!(due[0].account.as_deref(), Some("alice@example.com"));
    assert_eq!(due[0].size, d.raw.len() as u64);
    assert_eq!(store.queue_message(queue_id).unwrap().unwrap(), d.raw);

    store
        .queue_deferred(&[due[0].id], d.internal_date + 300, "451 try later")
        .unwrap();
    let due_now = store.queue_due(d.internal_date, 10).unwrap();
    assert_eq!(due_now.len(), 1);
    let listed = store.queue_list().unwrap();
    assert_eq!(listed[0].attempts, 1);
    assert_eq!(listed[0].last_error.as_deref(), Some("451 try later"));

    let dsn = delivery("Undelivered Mail", vec![inbox("alice@example.com")]);
    store.queue_failed(&[due[1].id], Some(&dsn), GIB).unwrap();
    assert_eq!(
        store
            .folder("alice@example.com", "INBOX")
            .unwrap()
            .unwrap()
            .messages,
        1
    );
    assert_eq!(store.queue_retry_now(d.internal_date).unwrap(), 1);
    store.queue_delivered(&[due[0].id]).unwrap();
    assert!(store.queue_list().unwrap().is_empty());
    assert!(store.queue_message(queue_id).unwrap().is_none());
    // The Sent copy still has its bytes.
    let sent = store.folder("alice@example.com", "Sent").unwrap().unwrap();
    assert_eq!(store.message_raw(sent.id, 1).unwrap().unwrap(), d.raw);
}

#[test]
fn changes_since_reads_only_what_changed_and_logs_every_removal() {
    let (_d, store) = store_with(&["alice@example.com"]);
    let batch: Vec<Delivery> = (0..4)
        .map(|i| delivery(&format!("m{i}"), vec![inbox("alice@example.com")]))
        .collect();
    for r in store.deliver(&batch, GIB).unwrap() {
        r.unwrap();
    }
    let f = store.folder("alice@example.com", "INBOX").unwrap().unwrap();
    let base = f.highest_modseq;
    let none = store.changes_since(f.id, base).unwrap().unwrap();
    assert!(none.changed.is_empty() && none.expunged.is_empty());
    assert_eq!((none.uidnext, none.highest_modseq), (5, base));

    store
        .store_flags(f.id, &[2], FlagOp::Add, Flags::SEEN, &[])
        .unwrap();
    assert_eq!(store.expunge(f.id, &[3]).unwrap(), [3]);
    let trash = store.folder("alice@example.com", "Trash").unwrap().unwrap();
    store
        .copy_messages(f.id, &[4], trash.id, true, GIB)
        .unwrap();
    let c = store.changes_since(f.id, base).unwrap().unwrap();
    let changed: Vec<u32> = c.changed.iter().map(|m| m.uid).collect();
    assert_eq!(changed, [2]);
    assert_eq!(c.expunged, [3, 4]);
    // Every change took a modseq of its own, and HIGHESTMODSEQ is the last of them.
    assert_eq!(c.highest_modseq, base + 3);
    assert_eq!(store.expunged_since(f.id, base + 2).unwrap(), [4]);
    // A removal the IMAP code did not make (a \Noselect placeholder's messages) is logged as well.
    let work = store.create_folder("alice@example.com", "Work").unwrap();
    store
        .copy_messages(f.id, &[1], work.id, false, GIB)
        .unwrap();
    store
        .set_noselect("alice@example.com", "Work", true)
        .unwrap();
    let w = store.folder("alice@example.com", "Work").unwrap().unwrap();
    assert!(w.noselect && w.messages == 0);
    assert_eq!(store.expunged_since(work.id, 0).unwrap(), [1]);
    store
        .set_noselect("alice@example.com", "Work", false)
        .unwrap();
    assert!(
        !store
            .folder("alice@example.com", "Work")
            .unwrap()
            .unwrap()
            .noselect
    );
    // The log goes with its folder.
    store.delete_folder("alice@example.com", "Work").unwrap();
    assert_eq!(store.expunged_since(work.id, 0).unwrap(), Vec::<u32>::new());
}

#[test]
fn recent_messages_are_taken_once() {
    let (_d, store) = store_with(&["alice@example.com"]);
    let batch = vec![delivery("one", vec![inbox("alice@example.com")])];
    store.deliver(&batch, GIB).unwrap();
    let f = store.folder("alice@example.com", "INBOX").unwrap().unwrap();
    assert_eq!((f.first_recent_uid, f.recent), (1, 1));
    assert_eq!(store.claim_recent(f.id, u32::MAX).unwrap(), Some((1, 2)));
    assert_eq!(store.claim_recent(f.id, u32::MAX).unwrap(), Some((2, 2)));
    let f = store.folder("alice@example.com", "INBOX").unwrap().unwrap();
    assert_eq!((f.first_recent_uid, f.recent), (2, 0));
    store.deliver(&batch, GIB).unwrap();
    assert_eq!(
        store
            .folder("alice@example.com", "INBOX")
            .unwrap()
            .unwrap()
            .recent,
        1
    );
    assert_eq!(store.claim_recent(-1, u32::MAX).unwrap(), None);
    // The claim skips its own fsync but leaves the writer as durable as it was.
    let Store::Sqlite(sqlite) = &store;
    let level: i64 = sqlite
        .with_writer(|c| Ok(c.query_row("PRAGMA synchronous", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(level, 2, "FULL");
}

/// The claims live in the process: a claim is seen by every later claim and folder listing at once,
/// writes nothing by itself, and is written back with the next delivery's commit, so another process
/// (or the next start) sees it from there on.
#[test]
fn recent_claims_are_kept_in_memory_and_written_with_the_next_delivery() {
    let (d, store) = store_with(&["alice@example.com"]);
    let path = d.path().join("msgr.sqlite");
    let batch = vec![delivery("one", vec![inbox("alice@example.com")])];
    store.deliver(&batch, GIB).unwrap();
    store.deliver(&batch, GIB).unwrap();
    let f = store.folder("alice@example.com", "INBOX").unwrap().unwrap();
    assert_eq!(store.claim_recent(f.id, u32::MAX).unwrap(), Some((1, 3)));
    let other = Store::open_sqlite(&path).unwrap();
    let stored = |s: &Store| {
        s.folder("alice@example.com", "INBOX")
            .unwrap()
            .map(|f| (f.first_recent_uid, f.recent))
            .unwrap()
    };
    assert_eq!(stored(&store), (3, 0), "this process sees its claim");
    assert_eq!(stored(&other), (1, 2), "not written yet");
    // The next commit carries it; the new message is recent for whoever takes it.
    store.deliver(&batch, GIB).unwrap();
    assert_eq!(stored(&other), (3, 1));
    assert_eq!(stored(&store), (3, 1));
    let folders = store.folders("alice@example.com").unwrap();
    assert_eq!((folders[0].first_recent_uid, folders[0].recent), (3, 1));
    // A claim stops at the caller's snapshot: a message it has not seen stays recent for the next.
    store.deliver(&batch, GIB).unwrap();
    assert_eq!(store.claim_recent(f.id, 4).unwrap(), Some((3, 4)));
    assert_eq!(store.claim_recent(f.id, 4).unwrap(), Some((4, 4)));
    assert_eq!(store.claim_recent(f.id, u32::MAX).unwrap(), Some((4, 5)));
    // A folder deleted and made again under the same id does not inherit a claim.
    store.create_folder("alice@example.com", "Work").unwrap();
    let work = store.folder("alice@example.com", "Work").unwrap().unwrap();
    let to_work = LocalTarget {
        account: "alice@example.com".to_owned(),
        folder: FolderRef::Named("Work".to_owned()),
        flags: Flags::empty(),
    };
    store
        .deliver(&[delivery("w", vec![to_work.clone()])], GIB)
        .unwrap();
    assert_eq!(store.claim_recent(work.id, u32::MAX).unwrap(), Some((1, 2)));
    store.delete_folder("alice@example.com", "Work").unwrap();
    store.create_folder("alice@example.com", "Work").unwrap();
    store.deliver(&[delivery("w", vec![to_work])], GIB).unwrap();
    let again = store.folder("alice@example.com", "Work").unwrap().unwrap();
    assert_eq!(again.id, work.id, "SQLite reuses the highest rowid");
    assert_eq!((again.first_recent_uid, again.recent), (1, 1));
    assert_eq!(
        store.claim_recent(again.id, u32::MAX).unwrap(),
        Some((1, 2))
    );
}

/// `select_folder`: the folder with counts from its messages, the messages, and the recent range, taken
/// only when asked (EXAMINE does not take).
#[test]
fn select_folder_reads_folder_messages_and_claim_together() {
    let (_d, store) = store_with(&["alice@example.com"]);
    let batch = vec![delivery("one", vec![inbox("alice@example.com")])];
    store.deliver(&batch, GIB).unwrap();
    store.deliver(&batch, GIB).unwrap();
    let listed = store.folder("alice@example.com", "INBOX").unwrap().unwrap();
    store
        .store_flags(listed.id, &[1], FlagOp::Add, Flags::SEEN, &[])
        .unwrap();
    let examined = store
        .select_folder("alice@example.com", "inbox", false)
        .unwrap()
        .unwrap();
    assert_eq!(examined.recent, (1, 3));
    let listed = store.folder("alice@example.com", "INBOX").unwrap().unwrap();
    assert_eq!(examined.folder, listed, "the same counts as a listing");
    assert_eq!((listed.messages, listed.unseen, listed.recent), (2, 1, 2));
    let uids: Vec<u32> = examined.messages.iter().map(|m| m.uid).collect();
    assert_eq!(uids, [1, 2]);
    let selected = store
        .select_folder("alice@example.com", "INBOX", true)
        .unwrap()
        .unwrap();
    assert_eq!(selected.recent, (1, 3));
    assert_eq!(selected.folder.recent, 2);
    let second = store
        .select_folder("alice@example.com", "INBOX", true)
        .unwrap()
        .unwrap();
    assert_eq!((second.recent, second.folder.recent), ((3, 3), 0));
    assert_eq!(
        store
            .select_folder("alice@example.com", "Nowhere", true)
            .unwrap(),
        None
    );
}

/// `message_summaries`: in the order asked, `None` for a missing UID, by point look-ups (few or unordered
/// UIDs) and by one walk of the range (many in order) alike.
#[test]
fn message_summaries_in_the_order_asked() {
    let (_d, store) = store_with(&["alice@example.com"]);
    let batch: Vec<Delivery> = (0..40)
        .map(|i| delivery(&format!("s{i}"), vec![inbox("alice@example.com")]))
        .collect();
    store.deliver(&batch, GIB).unwrap();
    let folder = store.folder("alice@example.com", "INBOX").unwrap().unwrap();
    store.expunge(folder.id, &[5]).unwrap();
    let subject = |s: &Option<MessageSummary>| s.as_ref().map(|s| s.subject.clone());
    let few = store.message_summaries(folder.id, &[3, 5, 1, 99]).unwrap();
    let few: Vec<_> = few.iter().map(subject).collect();
    assert_eq!(
        few,
        [Some("s2".to_owned()), None, Some("s0".to_owned()), None]
    );
    // Every UID from 2 to 41 (41 was never used, 5 is expunged): the range walk.
    let uids: Vec<u32> = (2..=41).collect();
    let many = store.message_summaries(folder.id, &uids).unwrap();
    assert_eq!(many.len(), uids.len());
    for (uid, s) in uids.iter().zip(&many) {
        let want = (*uid != 5 && *uid <= 40).then(|| format!("s{}", uid - 1));
        assert_eq!(subject(s), want, "uid {uid}");
    }
    let listed = store.messages(folder.id).unwrap();
    assert_eq!(many[0].as_ref(), Some(&listed[1].summary));
}

/// `messages_raw`: several messages at once, in the order asked, `None` for a missing UID; with
/// `header_only` cut after the blank line that ends the header.
#[test]
fn messages_raw_reads_whole_messages_or_header_blocks() {
    let (_d, store) = store_with(&["alice@example.com"]);
    let mut lf = delivery("two", vec![inbox("alice@example.com")]);
    lf.raw = b"Subject: two\nX: y\n\nbody\n\nmore\n".to_vec();
    let mut bare = delivery("three", vec![inbox("alice@example.com")]);
    bare.raw = b"Subject: three\r\n".to_vec();
    let batch = vec![delivery("one", vec![inbox("alice@example.com")]), lf, bare];
    store.deliver(&batch, GIB).unwrap();
    let f = store.folder("alice@example.com", "INBOX").unwrap().unwrap();
    let whole = store.messages_raw(f.id, &[2, 9, 1], false).unwrap();
    assert_eq!(
        whole,
        [
            Some(b"Subject: two\nX: y\n\nbody\n\nmore\n".to_vec()),
            None,
            Some(b"Subject: one\r\n\r\none\r\n".to_vec())
        ]
    );
    let headers = store.messages_raw(f.id, &[1, 2, 3], true).unwrap();
    assert_eq!(
        headers,
        [
            Some(b"Subject: one\r\n\r\n".to_vec()),
            Some(b"Subject: two\nX: y\n\n".to_vec()),
            Some(b"Subject: three\r\n".to_vec())
        ]
    );
}

/// A `\Noselect` name takes no messages: a delivery to it fails like one to a missing folder.
#[test]
fn no_delivery_into_a_noselect_folder() {
    let (_d, store) = store_with(&["alice@example.com"]);
    store.create_folder("alice@example.com", "Work").unwrap();
    store
        .set_noselect("alice@example.com", "Work", true)
        .unwrap();
    let to_work = LocalTarget {
        account: "alice@example.com".to_owned(),
        folder: FolderRef::Named("Work".to_owned()),
        flags: Flags::empty(),
    };
    let r = store.deliver(&[delivery("w", vec![to_work])], GIB).unwrap();
    assert!(matches!(&r[0], Err(StoreError::FolderNotFound(_))), "{r:?}");
    let mb = store.mailbox("alice@example.com").unwrap().unwrap();
    assert_eq!(mb.used_bytes, 0, "nothing of it stored");
}
