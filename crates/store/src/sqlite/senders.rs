//! [`SenderStore`] in SQLite (schema: `migrations/sqlite/0005_senders.sql`).

use rusqlite::{params, OptionalExtension};

use super::SqliteStore;
use crate::senders::{parse_list, Greylist, GreylistTimes, SenderFacts, SenderList, SenderStore};
use crate::{Result, StoreError};

fn account_id(conn: &rusqlite::Connection, account: &str) -> Result<i64> {
    conn.prepare_cached("SELECT id FROM accounts WHERE email = ?1")?
        .query_row([account], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::AccountNotFound(account.to_ascii_lowercase()))
}

impl SenderStore for SqliteStore {
    fn sender_set(&self, account: &str, sender: &str, list: SenderList, now: i64) -> Result<()> {
        let sender = sender.to_lowercase();
        self.with_writer(|conn| {
            let id = account_id(conn, account)?;
            conn.prepare_cached(
                "INSERT INTO mail_sender_lists (account_id, sender, list, created_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (account_id, sender) DO UPDATE SET list = ?3, created_at = ?4",
            )?
            .execute(params![id, sender, list.as_str(), now])?;
            Ok(())
        })
    }

    fn sender_remove(&self, account: &str, sender: &str) -> Result<bool> {
        self.with_writer(|conn| {
            let id = account_id(conn, account)?;
            let n = conn
                .prepare_cached(
                    "DELETE FROM mail_sender_lists WHERE account_id = ?1 AND sender = ?2",
                )?
                .execute(params![id, sender])?;
            Ok(n > 0)
        })
    }

    fn sender_entries(&self, account: &str) -> Result<Vec<(String, SenderList)>> {
        self.with_reader(|conn| {
            let id = account_id(conn, account)?;
            let mut stmt = conn.prepare_cached(
                "SELECT sender, list FROM mail_sender_lists WHERE account_id = ?1 ORDER BY sender",
            )?;
            let rows = stmt.query_map([id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (sender, list) = row?;
                if let Some(list) = parse_list(&list) {
                    out.push((sender, list));
                }
            }
            Ok(out)
        })
    }

    fn sender_facts(&self, account: &str, addresses: &[String]) -> Result<SenderFacts> {
        self.with_reader(|conn| {
            let id = account_id(conn, account)?;
            let mut facts = SenderFacts::default();
            let mut mail = conn.prepare_cached(
                "SELECT sender, list FROM mail_sender_lists WHERE account_id = ?1 AND sender = ?2",
            )?;
            let mut contact = conn.prepare_cached(
                "SELECT lists FROM contacts WHERE account_id = ?1 AND email = ?2",
            )?;
            for address in addresses {
                let domain = address.rsplit_once('@').map(|(_, d)| format!("@{d}"));
                for key in std::iter::once(address.as_str()).chain(domain.as_deref()) {
                    if facts.mail.iter().any(|(e, _)| e.eq_ignore_ascii_case(key)) {
                        continue;
                    }
                    let row = mail
                        .query_row(params![id, key], |r| {
                            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                        })
                        .optional()?;
                    if let Some((entry, list)) = row {
                        if let Some(list) = parse_list(&list) {
                            facts.mail.push((entry, list));
                        }
                    }
                }
                if facts
                    .messenger
                    .iter()
                    .any(|(a, _)| a.eq_ignore_ascii_case(address))
                {
                    continue;
                }
                let lists = contact
                    .query_row(params![id, address], |r| r.get::<_, i64>(0))
                    .optional()?;
                if let Some(bits) = lists.and_then(|b| u8::try_from(b).ok()) {
                    facts.messenger.push((address.clone(), bits));
                }
            }
            Ok(facts)
        })
    }

    fn greylist(
        &self,
        client_net: &str,
        sender: &str,
        recipient: &str,
        now: i64,
        times: GreylistTimes,
    ) -> Result<Greylist> {
        self.with_writer(|conn| {
            let tx = conn.transaction()?;
            // Rows are swept by the index on last_seen: nothing younger than the shorter lifetime can go.
            let oldest = now.saturating_sub(times.retry_window.min(times.expiry));
            tx.prepare_cached(
                "DELETE FROM mail_greylist WHERE last_seen < ?1 AND \
                 ((passed = 0 AND first_seen < ?2) OR (passed = 1 AND last_seen < ?3))",
            )?
            .execute(params![
                oldest,
                now.saturating_sub(times.retry_window),
                now.saturating_sub(times.expiry)
            ])?;
            let row = tx
                .prepare_cached(
                    "SELECT first_seen, passed FROM mail_greylist \
                     WHERE client_net = ?1 AND sender = ?2 AND recipient = ?3",
                )?
                .query_row(params![client_net, sender, recipient], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? != 0))
                })
                .optional()?;
            let verdict = match row {
                None => {
                    tx.prepare_cached(
                        "INSERT INTO mail_greylist (client_net, sender, recipient, first_seen, last_seen) \
                         VALUES (?1, ?2, ?3, ?4, ?4)",
                    )?
                    .execute(params![client_net, sender, recipient, now])?;
                    Greylist::Deferred
                }
                Some((first_seen, passed)) => {
                    let pass = passed || now.saturating_sub(first_seen) >= times.delay;
                    tx.prepare_cached(
                        "UPDATE mail_greylist SET last_seen = ?4, passed = ?5 \
                         WHERE client_net = ?1 AND sender = ?2 AND recipient = ?3",
                    )?
                    .execute(params![client_net, sender, recipient, now, i64::from(pass)])?;
                    if pass {
                        Greylist::Passed
                    } else {
                        Greylist::Deferred
                    }
                }
            };
            tx.commit()?;
            Ok(verdict)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{AccountStore, NewAccount, Store};

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("msgr.db")).unwrap();
        for email in ["alice@example.com", "bob@example.com"] {
            store
                .create_account(NewAccount {
                    email: email.to_owned(),
                    display_name: "x".to_owned(),
                    password_hash: "unused".to_owned(),
                    md5_secret: None,
                })
                .unwrap();
        }
        (dir, store)
    }

    fn a(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn mail_lists_by_address_and_domain() {
        let (_dir, store) = store();
        let alice = "alice@example.com";
        store
            .sender_set(alice, "Friend@Other.test", SenderList::Allow, 1)
            .unwrap();
        store
            .sender_set(alice, "@spam.test", SenderList::Block, 2)
            .unwrap();
        // Moving an entry to the other list replaces it.
        store
            .sender_set(alice, "x@other.test", SenderList::Block, 3)
            .unwrap();
        store
            .sender_set(alice, "x@other.test", SenderList::Allow, 4)
            .unwrap();
        assert_eq!(
            store.sender_entries(alice).unwrap(),
            vec![
                ("@spam.test".to_owned(), SenderList::Block),
                ("friend@other.test".to_owned(), SenderList::Allow),
                ("x@other.test".to_owned(), SenderList::Allow),
            ]
        );
        let facts = store
            .sender_facts(
                alice,
                &a(&["friend@other.test", "anyone@spam.test", "no@where.test"]),
            )
            .unwrap();
        assert_eq!(
            facts.mail,
            vec![
                ("friend@other.test".to_owned(), SenderList::Allow),
                ("@spam.test".to_owned(), SenderList::Block)
            ]
        );
        assert!(facts.messenger.is_empty());
        // Bob's lists are his own.
        assert_eq!(
            store
                .sender_facts("bob@example.com", &a(&["friend@other.test"]))
                .unwrap(),
            SenderFacts::default()
        );
        assert!(store.sender_remove(alice, "FRIEND@other.test").unwrap());
        assert!(!store.sender_remove(alice, "friend@other.test").unwrap());
        assert!(matches!(
            store.sender_set("nobody@example.com", "x@y", SenderList::Allow, 0),
            Err(StoreError::AccountNotFound(_))
        ));
        store.delete_account(alice).unwrap();
        assert!(matches!(
            store.sender_entries(alice),
            Err(StoreError::AccountNotFound(_))
        ));
    }

    #[test]
    fn greylisting_passes_a_retry_after_the_delay() {
        let (_dir, store) = store();
        let times = GreylistTimes {
            delay: 300,
            retry_window: 4 * 3600,
            expiry: 36 * 86400,
        };
        let g = |now| {
            store
                .greylist("192.0.2.0/24", "s@x.test", "alice@example.com", now, times)
                .unwrap()
        };
        assert_eq!(g(1000), Greylist::Deferred);
        assert_eq!(g(1299), Greylist::Deferred, "too early");
        assert_eq!(g(1300), Greylist::Passed);
        // Passed triplets pass at once from then on, for as long as they keep coming.
        assert_eq!(g(1301), Greylist::Passed);
        assert_eq!(g(1301 + 30 * 86400), Greylist::Passed);
        // Another network, sender or recipient is a new triplet.
        assert_eq!(
            store
                .greylist(
                    "198.51.100.0/24",
                    "s@x.test",
                    "alice@example.com",
                    2000,
                    times
                )
                .unwrap(),
            Greylist::Deferred
        );
        // A first attempt never retried within the window is forgotten; a passed one after its expiry.
        assert_eq!(
            store
                .greylist(
                    "198.51.100.0/24",
                    "s@x.test",
                    "alice@example.com",
                    2000 + 4 * 3600 + 1,
                    times
                )
                .unwrap(),
            Greylist::Deferred
        );
        assert_eq!(g(1301 + 30 * 86400 + 36 * 86400 + 1), Greylist::Deferred);
    }
}
