//! [`SpamStore`] in SQLite (schema: `migrations/sqlite/0004_spam.sql`).

use rusqlite::{params, OptionalExtension};

use super::SqliteStore;
use crate::spam::{SpamCounts, SpamStore};
use crate::{Result, StoreError};

/// Counts are `u32` in the model; a database value out of range (never written by us) saturates.
fn count(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

fn account_id(conn: &rusqlite::Connection, account: &str) -> Result<i64> {
    conn.prepare_cached("SELECT id FROM accounts WHERE email = ?1")?
        .query_row([account], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::AccountNotFound(account.to_ascii_lowercase()))
}

impl SpamStore for SqliteStore {
    fn spam_train(&self, account: &str, tokens: &[String], spam: bool) -> Result<()> {
        let account = account.to_ascii_lowercase();
        self.with_writer(|conn| {
            let tx = conn.transaction()?;
            let id = account_id(&tx, &account)?;
            let (s, h) = if spam { (1, 0) } else { (0, 1) };
            tx.prepare_cached(
                "INSERT INTO spam_user_totals (account_id, spam, ham) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (account_id) DO UPDATE SET spam = spam + ?2, ham = ham + ?3",
            )?
            .execute(params![id, s, h])?;
            {
                let mut up = tx.prepare_cached(
                    "INSERT INTO spam_user_tokens (account_id, token, spam, ham) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (account_id, token) DO UPDATE SET spam = spam + ?3, ham = ham + ?4",
                )?;
                for t in tokens {
                    up.execute(params![id, t, s, h])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn spam_counts(&self, account: &str, tokens: &[String]) -> Result<SpamCounts> {
        let account = account.to_ascii_lowercase();
        self.with_reader(|conn| {
            let id = account_id(conn, &account)?;
            let totals = conn
                .prepare_cached("SELECT spam, ham FROM spam_user_totals WHERE account_id = ?1")?
                .query_row([id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
                .optional()?;
            let Some((spam, ham)) = totals else {
                // Never trained: no token can have counts either.
                return Ok(SpamCounts::default());
            };
            let mut out = SpamCounts {
                spam_messages: count(spam),
                ham_messages: count(ham),
                tokens: Vec::new(),
            };
            let mut get = conn.prepare_cached(
                "SELECT spam, ham FROM spam_user_tokens WHERE account_id = ?1 AND token = ?2",
            )?;
            for t in tokens {
                if let Some((s, h)) = get
                    .query_row(params![id, t], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                    })
                    .optional()?
                {
                    out.tokens.push((t.clone(), count(s), count(h)));
                }
            }
            Ok(out)
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
        store
            .create_account(NewAccount {
                email: "alice@example.com".to_owned(),
                display_name: "Alice".to_owned(),
                password_hash: "unused".to_owned(),
                md5_secret: None,
            })
            .unwrap();
        (dir, store)
    }

    fn t(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn training_adds_up_per_token_and_per_class() {
        let (_dir, store) = store();
        assert_eq!(
            store
                .spam_counts("alice@example.com", &t(&["free"]))
                .unwrap(),
            SpamCounts::default()
        );
        store
            .spam_train("alice@example.com", &t(&["free", "offer"]), true)
            .unwrap();
        store
            .spam_train("Alice@Example.com", &t(&["free"]), true)
            .unwrap();
        store
            .spam_train("alice@example.com", &t(&["offer", "lunch"]), false)
            .unwrap();
        let c = store
            .spam_counts(
                "alice@example.com",
                &t(&["free", "offer", "lunch", "unknown"]),
            )
            .unwrap();
        assert_eq!((c.spam_messages, c.ham_messages), (2, 1));
        assert_eq!(
            c.tokens,
            vec![
                ("free".to_owned(), 2, 0),
                ("offer".to_owned(), 1, 1),
                ("lunch".to_owned(), 0, 1)
            ]
        );
    }

    #[test]
    fn unknown_accounts_and_deleted_ones() {
        let (_dir, store) = store();
        assert!(matches!(
            store.spam_train("nobody@example.com", &t(&["x"]), true),
            Err(StoreError::AccountNotFound(_))
        ));
        store
            .spam_train("alice@example.com", &t(&["x"]), true)
            .unwrap();
        store.delete_account("alice@example.com").unwrap();
        assert!(matches!(
            store.spam_counts("alice@example.com", &t(&["x"])),
            Err(StoreError::AccountNotFound(_))
        ));
    }
}
