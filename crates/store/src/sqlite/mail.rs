//! Mailboxes and the outbound queue in SQLite (schema: `migrations/sqlite/0003_mail.sql`).
//!
//! Every write runs on the single writer connection inside one transaction, so UID assignment, quota checks and
//! the queue's bookkeeping are atomic without any locking of our own. [`MailStore::deliver`] takes a whole batch
//! in one transaction (one WAL fsync) with a savepoint per delivery, so that one delivery failing (over quota,
//! unknown folder) rolls back only itself.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};

use super::SqliteStore;
use crate::mail::*;
use crate::{Result, StoreError};

/// The columns [`folder_from_row`] reads, with the counts computed from the folder's messages.
const FOLDER_COLUMNS: &str =
    "f.id, f.name, f.special, f.uidvalidity, f.uidnext, f.highest_modseq, f.subscribed, \
     (SELECT COUNT(*) FROM mail_messages m WHERE m.folder_id = f.id), \
     (SELECT COUNT(*) FROM mail_messages m WHERE m.folder_id = f.id AND (m.flags & 1) = 0), \
     (SELECT COALESCE(SUM(size), 0) FROM mail_messages m WHERE m.folder_id = f.id), \
     f.first_recent_uid, \
     (SELECT COUNT(*) FROM mail_messages m WHERE m.folder_id = f.id AND m.uid >= f.first_recent_uid), \
     f.noselect";

const MESSAGE_COLUMNS: &str =
    "uid, modseq, flags, keywords, internal_date, size, from_addr, to_addr, subject, \
     sent_date, message_id, has_attachments";

const QUEUE_COLUMNS: &str =
    "r.id, r.queue_id, q.sender, a.email, r.recipient, r.domain, r.attempts, \
     q.created_at, r.next_attempt, r.last_error, LENGTH(b.data)";

const QUEUE_FROM: &str = "mail_queue_rcpts r JOIN mail_queue q ON q.id = r.queue_id \
     JOIN mail_blobs b ON b.id = q.blob_id LEFT JOIN accounts a ON a.id = q.account_id";

fn to_u32(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn folder_from_row(row: &Row<'_>) -> rusqlite::Result<Folder> {
    Ok(Folder {
        messages: to_u32(row.get(7)?),
        unseen: to_u32(row.get(8)?),
        size: to_u64(row.get(9)?),
        first_recent_uid: to_u32(row.get(10)?),
        recent: to_u32(row.get(11)?),
        noselect: row.get(12)?,
        ..folder_head(row)?
    })
}

/// A folder's own columns `id, name, special, uidvalidity, uidnext, highest_modseq, subscribed` (the
/// first seven of both [`FOLDER_COLUMNS`] and [`FOLDER_ROW`]), counts and the rest left at zero.
fn folder_head(row: &Row<'_>) -> rusqlite::Result<Folder> {
    let special: Option<String> = row.get(2)?;
    Ok(Folder {
        id: row.get(0)?,
        name: row.get(1)?,
        special: special.as_deref().and_then(SpecialUse::from_column),
        uidvalidity: to_u32(row.get(3)?),
        uidnext: to_u32(row.get(4)?),
        highest_modseq: to_u64(row.get(5)?),
        subscribed: row.get(6)?,
        messages: 0,
        unseen: 0,
        size: 0,
        first_recent_uid: 0,
        recent: 0,
        noselect: false,
    })
}

fn keywords_from(text: &str) -> Vec<String> {
    text.split_ascii_whitespace().map(str::to_owned).collect()
}

/// The columns of [`MessageState`]: the leading columns of a message row, so SQLite decodes none of the
/// summary's text after them.
const STATE_COLUMNS: &str = "uid, modseq, flags, keywords, internal_date, size";

fn state_from_row(row: &Row<'_>) -> rusqlite::Result<MessageState> {
    // Borrowed from SQLite's buffer: most messages have no keywords, and an empty list allocates nothing.
    let keywords = match row.get_ref(3)? {
        ValueRef::Text(t) => keywords_from(std::str::from_utf8(t).unwrap_or("")),
        _ => Vec::new(),
    };
    Ok(MessageState {
        uid: to_u32(row.get(0)?),
        modseq: to_u64(row.get(1)?),
        flags: Flags(u8::try_from(row.get::<_, i64>(2)? & 0xff).unwrap_or(0)),
        keywords,
        internal_date: row.get(4)?,
        size: to_u64(row.get(5)?),
    })
}

fn message_from_row(row: &Row<'_>) -> rusqlite::Result<MessageMeta> {
    Ok(MessageMeta {
        state: state_from_row(row)?,
        summary: summary_at(row, 6)?,
    })
}

/// The summary columns `from, to, subject, date, message_id, has_attachments`, starting at column `first`.
fn summary_at(row: &Row<'_>, first: usize) -> rusqlite::Result<MessageSummary> {
    Ok(MessageSummary {
        from: row.get(first)?,
        to: row.get(first + 1)?,
        subject: row.get(first + 2)?,
        date: row.get(first + 3)?,
        message_id: row.get(first + 4)?,
        has_attachments: row.get(first + 5)?,
    })
}

fn queued_from_row(row: &Row<'_>) -> rusqlite::Result<QueuedRecipient> {
    Ok(QueuedRecipient {
        id: row.get(0)?,
        queue_id: row.get(1)?,
        sender: row.get(2)?,
        account: row.get(3)?,
        recipient: row.get(4)?,
        domain: row.get(5)?,
        attempts: to_u32(row.get(6)?),
        created_at: row.get(7)?,
        next_attempt: row.get(8)?,
        last_error: row.get(9)?,
        size: to_u64(row.get(10)?),
    })
}

/// The account id and its effective quota, or `AccountNotFound`.
fn account_quota(conn: &Connection, account: &str, default_quota: u64) -> Result<(i64, u64, u64)> {
    conn.prepare_cached(
        "SELECT m.account_id, m.used_bytes, m.quota_bytes FROM mailboxes m \
         JOIN accounts a ON a.id = m.account_id WHERE a.email = ?1",
    )?
    .query_row([account], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            to_u64(r.get(1)?),
            r.get::<_, Option<i64>>(2)?.map_or(default_quota, to_u64),
        ))
    })
    .optional()?
    .ok_or_else(|| StoreError::AccountNotFound(account.to_ascii_lowercase()))
}

fn account_id(conn: &Connection, account: &str) -> Result<i64> {
    conn.prepare_cached("SELECT id FROM accounts WHERE email = ?1")?
        .query_row([account], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::AccountNotFound(account.to_ascii_lowercase()))
}

/// `(id, name, special, uidvalidity, noselect)` of a folder of `account_id`.
fn find_folder(
    conn: &Connection,
    account_id: i64,
    folder: &FolderRef,
) -> Result<(i64, String, Option<SpecialUse>, u32, bool)> {
    let row = |r: &Row<'_>| -> rusqlite::Result<(i64, String, Option<String>, i64, bool)> {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    };
    let found = match folder {
        FolderRef::Special(u) => conn
            .prepare_cached(
                "SELECT id, name, special, uidvalidity, noselect FROM mail_folders \
                 WHERE account_id = ?1 AND special = ?2",
            )?
            .query_row(params![account_id, u.column()], row)
            .optional()?,
        FolderRef::Named(name) => conn
            .prepare_cached(
                "SELECT id, name, special, uidvalidity, noselect FROM mail_folders \
                 WHERE account_id = ?1 AND name = ?2",
            )?
            .query_row(params![account_id, canonical_name(name)], row)
            .optional()?,
    };
    let (id, name, special, uidvalidity, noselect) = found.ok_or_else(|| {
        StoreError::FolderNotFound(match folder {
            FolderRef::Special(u) => u.folder_name().to_owned(),
            FolderRef::Named(n) => n.clone(),
        })
    })?;
    Ok((
        id,
        name,
        special.as_deref().and_then(SpecialUse::from_column),
        to_u32(uidvalidity),
        noselect,
    ))
}

/// IMAP's `INBOX` is case-insensitive; every other name is stored as given (and compared without case by the
/// column's collation).
fn canonical_name(name: &str) -> &str {
    if name.eq_ignore_ascii_case("INBOX") {
        "INBOX"
    } else {
        name
    }
}

/// Takes the folder's next UID and modseq, returning them.
fn next_uid(conn: &Connection, folder_id: i64) -> Result<(u32, u64)> {
    let (uid, modseq): (i64, i64) = conn
        .prepare_cached(
            "UPDATE mail_folders SET uidnext = uidnext + 1, highest_modseq = highest_modseq + 1 \
             WHERE id = ?1 RETURNING uidnext - 1, highest_modseq",
        )?
        .query_row([folder_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok((to_u32(uid), to_u64(modseq)))
}

fn insert_blob(conn: &Connection, raw: &[u8]) -> Result<i64> {
    conn.prepare_cached("INSERT INTO mail_blobs (data) VALUES (?1)")?
        .execute([raw])?;
    Ok(conn.last_insert_rowid())
}

/// Stores one delivery; the caller wraps it in a savepoint.
fn deliver_one(conn: &Connection, d: &Delivery, default_quota: u64) -> Result<Delivered> {
    let size = d.raw.len() as u64;
    // Quota first, per distinct account, counting every copy the delivery adds to it.
    let mut accounts: Vec<(String, i64)> = Vec::new();
    for t in &d.targets {
        let email = t.account.to_ascii_lowercase();
        if accounts.iter().any(|(e, _)| *e == email) {
            continue;
        }
        let copies = d
            .targets
            .iter()
            .filter(|o| o.account.eq_ignore_ascii_case(&email))
            .count() as u64;
        let (id, used, quota) = account_quota(conn, &email, default_quota)?;
        if used.saturating_add(size.saturating_mul(copies)) > quota {
            return Err(StoreError::OverQuota { account: email });
        }
        accounts.push((email, id));
    }
    let blob = insert_blob(conn, &d.raw)?;
    let mut stored = Vec::with_capacity(d.targets.len());
    for t in &d.targets {
        let email = t.account.to_ascii_lowercase();
        let account_id = accounts
            .iter()
            .find(|(e, _)| *e == email)
            .map_or(0, |(_, id)| *id);
        let (folder_id, folder, special, uidvalidity, noselect) =
            find_folder(conn, account_id, &t.folder)?;
        if noselect {
            // A `\Noselect` name holds no messages (RFC 3501 §6.3.4).
            return Err(StoreError::FolderNotFound(folder));
        }
        let (uid, modseq) = next_uid(conn, folder_id)?;
        conn.prepare_cached(
            "INSERT INTO mail_messages (folder_id, account_id, uid, modseq, flags, internal_date, size, \
             blob_id, from_addr, to_addr, subject, sent_date, message_id, has_attachments) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )?
        .execute(params![
            folder_id,
            account_id,
            uid,
            to_i64(modseq),
            t.flags.0 & Flags::ALL.0,
            d.internal_date,
            to_i64(size),
            blob,
            d.summary.from,
            d.summary.to,
            d.summary.subject,
            d.summary.date,
            d.summary.message_id,
            d.summary.has_attachments,
        ])?;
        stored.push(StoredMessage {
            account: email,
            folder_id,
            folder,
            special,
            uidvalidity,
            uid,
            modseq,
        });
    }
    let queued = match &d.outbound {
        Some(out) if !out.recipients.is_empty() => {
            let account = match &out.account {
                Some(a) => Some(account_id(conn, a)?),
                None => None,
            };
            conn.prepare_cached(
                "INSERT INTO mail_queue (sender, account_id, blob_id, created_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![out.sender, account, blob, d.internal_date])?;
            let queue_id = conn.last_insert_rowid();
            let mut insert = conn.prepare_cached(
                "INSERT INTO mail_queue_rcpts (queue_id, recipient, domain, next_attempt) \
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            for r in &out.recipients {
                let domain = r
                    .rsplit_once('@')
                    .map_or("", |(_, d)| d)
                    .to_ascii_lowercase();
                insert.execute(params![queue_id, r, domain, d.internal_date])?;
            }
            Some(queue_id)
        }
        _ => None,
    };
    if stored.is_empty() && queued.is_none() {
        // Nothing refers to the blob: do not leave it behind.
        conn.prepare_cached("DELETE FROM mail_blobs WHERE id = ?1")?
            .execute([blob])?;
    }
    Ok(Delivered { stored, queued })
}

/// Runs `f` in a savepoint of `tx`: its writes are kept on `Ok` and undone on `Err`.
fn in_savepoint<T>(
    tx: &mut Transaction<'_>,
    f: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    let sp = tx.savepoint()?;
    match f(&sp) {
        Ok(v) => {
            sp.commit()?;
            Ok(v)
        }
        // Dropping an uncommitted savepoint rolls it back.
        Err(e) => Err(e),
    }
}

/// Placeholders `?, ?, …` for an `IN` list of `n` values.
fn placeholders(n: usize) -> String {
    let mut s = String::with_capacity(n * 2);
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        s.push('?');
    }
    s
}

/// SQLite's default limit on bound parameters is 32766; work in chunks well below it.
const CHUNK: usize = 500;

/// The `\Recent` claims of this process's IMAP sessions (RFC 3501 §2.3.2), per folder: the first UID no
/// session has taken yet.
///
/// A claim used to be an `UPDATE` on the writer connection, so every read-write `SELECT` queued behind
/// whatever delivery was committing (an fsync) and the sessions' selects were serialised on the writer.
/// `\Recent` is only about sessions (RFC 9051 dropped it), and the sessions are all in this process, so
/// the claim lives here; the stored `first_recent_uid` is its seed, and [`MailStore::deliver`] writes the
/// claims back in its transaction (no commit of their own). Losing a claim in a crash or restart only makes
/// messages recent once more.
#[derive(Default)]
pub(crate) struct RecentClaims {
    folders: Mutex<HashMap<i64, Claim>>,
}

#[derive(Clone, Copy)]
struct Claim {
    /// The folder's UIDVALIDITY when the claim was made: a folder id reused by a new folder (after one was
    /// deleted by another process) must not inherit the claim.
    uidvalidity: u32,
    /// UIDs below this were taken by some session.
    first: u32,
    /// Already in the database (or nothing to write).
    written: bool,
}

impl RecentClaims {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Claim>> {
        // Every value in the map is valid on its own, whatever a panicking thread was doing.
        self.folders.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The first unclaimed UID of a folder whose stored row says `stored_first`, `uidnext`.
    fn first(&self, folder_id: i64, uidvalidity: u32, stored_first: u32, uidnext: u32) -> u32 {
        match self.lock().get(&folder_id) {
            Some(c) if c.uidvalidity == uidvalidity && c.first <= uidnext => {
                c.first.max(stored_first)
            }
            _ => stored_first,
        }
    }

    /// Takes `first..uidnext` for the caller; returns `(first, upto)` with `upto >= first`.
    fn claim(
        &self,
        folder_id: i64,
        uidvalidity: u32,
        stored_first: u32,
        uidnext: u32,
    ) -> (u32, u32) {
        let mut folders = self.lock();
        let first = match folders.get(&folder_id) {
            Some(c) if c.uidvalidity == uidvalidity && c.first <= uidnext => {
                c.first.max(stored_first)
            }
            _ => stored_first,
        };
        // Another session may have claimed up to a newer UIDNEXT than the snapshot this caller read.
        let upto = uidnext.max(first);
        if upto > first {
            folders.insert(
                folder_id,
                Claim {
                    uidvalidity,
                    first: upto,
                    written: false,
                },
            );
        }
        (first, upto)
    }

    /// The claims not yet in the database, marked written: `(folder_id, uidvalidity, first)`.
    fn take_unwritten(&self) -> Vec<(i64, u32, u32)> {
        let mut folders = self.lock();
        folders
            .iter_mut()
            .filter(|(_, c)| !c.written)
            .map(|(&id, c)| {
                c.written = true;
                (id, c.uidvalidity, c.first)
            })
            .collect()
    }

    fn forget(&self, folder_id: i64) {
        self.lock().remove(&folder_id);
    }
}

/// The columns of a folder's own row, for [`MailStore::select_folder`] (the counts come from its messages).
const FOLDER_ROW: &str = "f.id, f.name, f.special, f.uidvalidity, f.uidnext, f.highest_modseq, \
     f.subscribed, f.first_recent_uid, f.noselect";

fn folder_row(row: &Row<'_>) -> rusqlite::Result<Folder> {
    Ok(Folder {
        first_recent_uid: to_u32(row.get(7)?),
        noselect: row.get(8)?,
        ..folder_head(row)?
    })
}

/// The header block of a raw message with the blank line that ends it (the whole message if it has no
/// body): the same cut as the IMAP side's MIME parser makes, so that parsing the block alone finds the
/// same header.
fn header_block(raw: &[u8]) -> &[u8] {
    if raw.starts_with(b"\r\n") {
        return &raw[..2];
    }
    if raw.starts_with(b"\n") {
        return &raw[..1];
    }
    let mut i = 0;
    while let Some(off) = raw[i..].iter().position(|&c| c == b'\n') {
        let next = i + off + 1;
        if raw[next..].starts_with(b"\r\n") {
            return &raw[..next + 2];
        }
        if raw[next..].starts_with(b"\n") {
            return &raw[..next + 1];
        }
        i = next;
    }
    raw
}

impl SqliteStore {
    /// A folder read from the database, with this process's `\Recent` claims applied.
    fn with_claims(&self, conn: &Connection, mut f: Folder) -> Result<Folder> {
        let first = self
            .recent
            .first(f.id, f.uidvalidity, f.first_recent_uid, f.uidnext);
        if first > f.first_recent_uid {
            f.first_recent_uid = first;
            f.recent = conn
                .prepare_cached(
                    "SELECT COUNT(*) FROM mail_messages WHERE folder_id = ?1 AND uid >= ?2",
                )?
                .query_row(params![f.id, first], |r| r.get::<_, i64>(0))
                .map(to_u32)?;
        }
        Ok(f)
    }
}

impl MailStore for SqliteStore {
    fn mailbox(&self, account: &str) -> Result<Option<Mailbox>> {
        self.with_reader(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT m.account_id, a.email, m.used_bytes, m.quota_bytes FROM mailboxes m \
                     JOIN accounts a ON a.id = m.account_id WHERE a.email = ?1",
                )?
                .query_row([account], |r| {
                    Ok(Mailbox {
                        account_id: r.get(0)?,
                        email: r.get(1)?,
                        used_bytes: to_u64(r.get(2)?),
                        quota_bytes: r.get::<_, Option<i64>>(3)?.map(to_u64),
                    })
                })
                .optional()?)
        })
    }

    fn is_account_domain(&self, domain: &str) -> Result<bool> {
        // The pattern is built from the domain: escape LIKE's wildcards so `_` in a domain matches only `_`.
        let escaped: String = domain
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        self.with_reader(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM accounts WHERE email LIKE ?1 ESCAPE '\\')",
                )?
                .query_row([format!("%@{escaped}")], |r| r.get(0))?)
        })
    }

    fn folders(&self, account: &str) -> Result<Vec<Folder>> {
        self.with_reader(|conn| {
            let id = account_id(conn, account)?;
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {FOLDER_COLUMNS} FROM mail_folders f WHERE f.account_id = ?1 \
                 ORDER BY f.special IS NULL, \
                 CASE f.special WHEN 'inbox' THEN 0 WHEN 'sent' THEN 1 WHEN 'drafts' THEN 2 \
                 WHEN 'junk' THEN 3 WHEN 'trash' THEN 4 ELSE 5 END, f.name"
            ))?;
            let rows = stmt
                .query_map([id], folder_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter()
                .map(|f| self.with_claims(conn, f))
                .collect()
        })
    }

    fn folder(&self, account: &str, name: &str) -> Result<Option<Folder>> {
        self.with_reader(|conn| {
            let found = conn
                .prepare_cached(&format!(
                    "SELECT {FOLDER_COLUMNS} FROM mail_folders f JOIN accounts a ON a.id = f.account_id \
                     WHERE a.email = ?1 AND f.name = ?2"
                ))?
                .query_row([account, canonical_name(name)], folder_from_row)
                .optional()?;
            found.map(|f| self.with_claims(conn, f)).transpose()
        })
    }

    fn create_folder(&self, account: &str, name: &str) -> Result<Folder> {
        self.with_writer(|conn| {
            let tx = conn.transaction()?;
            let id = account_id(&tx, account)?;
            let exists: bool = tx
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM mail_folders WHERE account_id = ?1 AND name = ?2)",
                )?
                .query_row(params![id, canonical_name(name)], |r| r.get(0))?;
            if exists {
                return Err(StoreError::FolderExists(name.to_owned()));
            }
            let uidvalidity: i64 = tx
                .prepare_cached(
                    "UPDATE mailboxes SET next_uidvalidity = next_uidvalidity + 1 WHERE account_id = ?1 \
                     RETURNING next_uidvalidity - 1",
                )?
                .query_row([id], |r| r.get(0))?;
            tx.prepare_cached(
                "INSERT INTO mail_folders (account_id, name, uidvalidity) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![id, name, uidvalidity])?;
            let folder_id = tx.last_insert_rowid();
            let folder = tx
                .prepare_cached(&format!(
                    "SELECT {FOLDER_COLUMNS} FROM mail_folders f WHERE f.id = ?1"
                ))?
                .query_row([folder_id], folder_from_row)?;
            tx.commit()?;
            Ok(folder)
        })
    }

    fn set_noselect(&self, account: &str, name: &str, noselect: bool) -> Result<()> {
        self.with_writer(|conn| {
            let tx = conn.transaction()?;
            let id = account_id(&tx, account)?;
            let (folder_id, _, special, _, _) =
                find_folder(&tx, id, &FolderRef::Named(name.to_owned()))?;
            if special.is_some() && noselect {
                return Err(StoreError::FolderProtected(name.to_owned()));
            }
            if noselect {
                // The removals are logged (and take modseqs) by the expunge trigger, for sessions that
                // still have the folder selected.
                tx.prepare_cached("DELETE FROM mail_messages WHERE folder_id = ?1")?
                    .execute([folder_id])?;
            }
            tx.prepare_cached("UPDATE mail_folders SET noselect = ?2 WHERE id = ?1")?
                .execute(params![folder_id, noselect])?;
            tx.commit()?;
            Ok(())
        })
    }

    fn delete_folder(&self, account: &str, name: &str) -> Result<()> {
        self.with_writer(|conn| {
            let tx = conn.transaction()?;
            let id = account_id(&tx, account)?;
            let (folder_id, _, special, _, _) =
                find_folder(&tx, id, &FolderRef::Named(name.to_owned()))?;
            if special.is_some() {
                return Err(StoreError::FolderProtected(name.to_owned()));
            }
            // Messages go by cascade; their triggers keep the quota and collect the blobs.
            tx.prepare_cached("DELETE FROM mail_folders WHERE id = ?1")?
                .execute([folder_id])?;
            tx.commit()?;
            self.recent.forget(folder_id);
            Ok(())
        })
    }

    fn rename_folder(&self, account: &str, from: &str, to: &str) -> Result<()> {
        self.with_writer(|conn| {
            let tx = conn.transaction()?;
            let id = account_id(&tx, account)?;
            let (folder_id, _, special, _, _) =
                find_folder(&tx, id, &FolderRef::Named(from.to_owned()))?;
            if special.is_some() || to.eq_ignore_ascii_case("INBOX") {
                return Err(StoreError::FolderProtected(from.to_owned()));
            }
            let taken: bool = tx
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM mail_folders WHERE account_id = ?1 AND name = ?2 AND id <> ?3)",
                )?
                .query_row(params![id, to, folder_id], |r| r.get(0))?;
            if taken {
                return Err(StoreError::FolderExists(to.to_owned()));
            }
            tx.prepare_cached("UPDATE mail_folders SET name = ?2 WHERE id = ?1")?
                .execute(params![folder_id, to])?;
            tx.commit()?;
            Ok(())
        })
    }

    fn set_subscribed(&self, account: &str, name: &str, subscribed: bool) -> Result<()> {
        self.with_writer(|conn| {
            let id = account_id(conn, account)?;
            let (folder_id, ..) = find_folder(conn, id, &FolderRef::Named(name.to_owned()))?;
            conn.prepare_cached("UPDATE mail_folders SET subscribed = ?2 WHERE id = ?1")?
                .execute(params![folder_id, subscribed])?;
            Ok(())
        })
    }

    fn set_quota(&self, account: &str, quota_bytes: Option<u64>) -> Result<()> {
        self.with_writer(|conn| {
            let id = account_id(conn, account)?;
            conn.prepare_cached("UPDATE mailboxes SET quota_bytes = ?2 WHERE account_id = ?1")?
                .execute(params![id, quota_bytes.map(to_i64)])?;
            Ok(())
        })
    }

    fn deliver(&self, batch: &[Delivery], default_quota: u64) -> Result<Vec<Result<Delivered>>> {
        self.with_writer(|conn| {
            let mut tx = conn.transaction()?;
            let mut results = Vec::with_capacity(batch.len());
            for d in batch {
                results.push(in_savepoint(&mut tx, |c| deliver_one(c, d, default_quota)));
            }
            // The sessions' \Recent claims ride along with this commit (see `RecentClaims`).
            {
                let mut write = tx.prepare_cached(
                    "UPDATE mail_folders SET first_recent_uid = MAX(first_recent_uid, ?2) \
                     WHERE id = ?1 AND uidvalidity = ?3",
                )?;
                for (folder_id, uidvalidity, first) in self.recent.take_unwritten() {
                    write.execute(params![folder_id, first, uidvalidity])?;
                }
            }
            // The one fsync for the whole batch. If it fails, nothing of the batch was stored.
            tx.commit()?;
            Ok(results)
        })
    }

    fn messages(&self, folder_id: i64) -> Result<Vec<MessageMeta>> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM mail_messages WHERE folder_id = ?1 ORDER BY uid"
            ))?;
            let rows = stmt.query_map([folder_id], message_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn message(&self, folder_id: i64, uid: u32) -> Result<Option<MessageMeta>> {
        self.with_reader(|conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM mail_messages WHERE folder_id = ?1 AND uid = ?2"
                ))?
                .query_row(params![folder_id, uid], message_from_row)
                .optional()?)
        })
    }

    fn message_raw(&self, folder_id: i64, uid: u32) -> Result<Option<Vec<u8>>> {
        self.with_reader(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT b.data FROM mail_messages m JOIN mail_blobs b ON b.id = m.blob_id \
                     WHERE m.folder_id = ?1 AND m.uid = ?2",
                )?
                .query_row(params![folder_id, uid], |r| r.get(0))
                .optional()?)
        })
    }

    fn folder_version(&self, folder_id: i64) -> Result<Option<(u32, u64)>> {
        self.with_reader(|conn| {
            Ok(conn
                .prepare_cached("SELECT uidnext, highest_modseq FROM mail_folders WHERE id = ?1")?
                .query_row([folder_id], |r| Ok((to_u32(r.get(0)?), to_u64(r.get(1)?))))
                .optional()?)
        })
    }

    fn changes_since(&self, folder_id: i64, since: u64) -> Result<Option<FolderChanges>> {
        self.with_reader(|conn| {
            // One read transaction: the version, the changed messages and the expunged UIDs agree.
            let tx = conn.unchecked_transaction()?;
            let Some((uidnext, highest_modseq)) = tx
                .prepare_cached("SELECT uidnext, highest_modseq FROM mail_folders WHERE id = ?1")?
                .query_row([folder_id], |r| Ok((to_u32(r.get(0)?), to_u64(r.get(1)?))))
                .optional()?
            else {
                return Ok(None);
            };
            let changed = tx
                .prepare_cached(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM mail_messages WHERE folder_id = ?1 AND modseq > ?2 \
                     ORDER BY uid"
                ))?
                .query_map(params![folder_id, to_i64(since)], message_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let expunged = expunged_after(&tx, folder_id, since)?;
            tx.finish()?;
            Ok(Some(FolderChanges {
                uidnext,
                highest_modseq,
                changed,
                expunged,
            }))
        })
    }

    fn expunged_since(&self, folder_id: i64, since: u64) -> Result<Vec<u32>> {
        self.with_reader(|conn| expunged_after(conn, folder_id, since))
    }

    fn claim_recent(&self, folder_id: i64, uidnext: u32) -> Result<Option<(u32, u32)>> {
        // A reader, not the writer: the claim itself is in memory (`RecentClaims`).
        let found = self.with_reader(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT uidvalidity, first_recent_uid, uidnext FROM mail_folders WHERE id = ?1",
                )?
                .query_row([folder_id], |r| {
                    Ok((to_u32(r.get(0)?), to_u32(r.get(1)?), to_u32(r.get(2)?)))
                })
                .optional()?)
        })?;
        Ok(found.map(|(uidvalidity, first, stored_uidnext)| {
            self.recent
                .claim(folder_id, uidvalidity, first, uidnext.min(stored_uidnext))
        }))
    }

    fn select_folder(
        &self,
        account: &str,
        name: &str,
        claim_recent: bool,
    ) -> Result<Option<SelectedFolder>> {
        self.with_reader(|conn| {
            // One snapshot: the folder's UIDNEXT and HIGHESTMODSEQ are exactly those of the messages read.
            let tx = conn.unchecked_transaction()?;
            let Some(mut folder) = tx
                .prepare_cached(&format!(
                    "SELECT {FOLDER_ROW} FROM mail_folders f JOIN accounts a ON a.id = f.account_id \
                     WHERE a.email = ?1 AND f.name = ?2"
                ))?
                .query_row([account, canonical_name(name)], folder_row)
                .optional()?
            else {
                return Ok(None);
            };
            let messages = if folder.noselect {
                Vec::new()
            } else {
                tx.prepare_cached(&format!(
                    "SELECT {STATE_COLUMNS} FROM mail_messages WHERE folder_id = ?1 ORDER BY uid"
                ))?
                .query_map([folder.id], state_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?
            };
            tx.finish()?;
            let (id, uidvalidity, stored, uidnext) = (
                folder.id,
                folder.uidvalidity,
                folder.first_recent_uid,
                folder.uidnext,
            );
            let recent = if claim_recent && !folder.noselect {
                self.recent.claim(id, uidvalidity, stored, uidnext)
            } else {
                let first = self.recent.first(id, uidvalidity, stored, uidnext);
                (first, uidnext.max(first))
            };
            folder.messages = u32::try_from(messages.len()).unwrap_or(u32::MAX);
            folder.unseen = to_u32(
                messages
                    .iter()
                    .filter(|m| !m.flags.contains(Flags::SEEN))
                    .count() as i64,
            );
            folder.size = messages.iter().map(|m| m.size).sum();
            folder.first_recent_uid = recent.0;
            folder.recent = to_u32(
                messages
                    .iter()
                    .filter(|m| (recent.0..recent.1).contains(&m.uid))
                    .count() as i64,
            );
            Ok(Some(SelectedFolder {
                folder,
                messages,
                recent,
            }))
        })
    }

    fn messages_raw(
        &self,
        folder_id: i64,
        uids: &[u32],
        header_only: bool,
    ) -> Result<Vec<Option<Vec<u8>>>> {
        self.with_reader(|conn| {
            let tx = conn.unchecked_transaction()?;
            let mut out = Vec::with_capacity(uids.len());
            {
                let mut stmt = tx.prepare_cached(
                    "SELECT b.data FROM mail_messages m JOIN mail_blobs b ON b.id = m.blob_id \
                     WHERE m.folder_id = ?1 AND m.uid = ?2",
                )?;
                for &uid in uids {
                    let mut rows = stmt.query(params![folder_id, uid])?;
                    let raw = match rows.next()? {
                        // Copied straight from SQLite's buffer, only as much as is asked for.
                        Some(row) => Some(match row.get_ref(0)? {
                            ValueRef::Blob(b) | ValueRef::Text(b) if header_only => {
                                header_block(b).to_vec()
                            }
                            ValueRef::Blob(b) | ValueRef::Text(b) => b.to_vec(),
                            _ => Vec::new(),
                        }),
                        None => None,
                    };
                    out.push(raw);
                }
            }
            tx.finish()?;
            Ok(out)
        })
    }

    fn message_summaries(
        &self,
        folder_id: i64,
        uids: &[u32],
    ) -> Result<Vec<Option<MessageSummary>>> {
        self.with_reader(|conn| {
            let tx = conn.unchecked_transaction()?;
            let mut out = Vec::with_capacity(uids.len());
            {
                let summary = |row: &Row<'_>| summary_at(row, 1);
                let ascending = uids.windows(2).all(|w| w[0] < w[1]);
                match (uids.first(), uids.last()) {
                    // Many UIDs in order (a SEARCH over the whole folder): one walk of the UID range,
                    // keeping the rows asked for, instead of one index look-up each.
                    (Some(&first), Some(&last)) if ascending && uids.len() > 32 => {
                        let mut stmt = tx.prepare_cached(
                            "SELECT uid, from_addr, to_addr, subject, sent_date, message_id, \
                             has_attachments FROM mail_messages \
                             WHERE folder_id = ?1 AND uid BETWEEN ?2 AND ?3 ORDER BY uid",
                        )?;
                        let mut rows = stmt.query(params![folder_id, first, last])?;
                        let mut wanted = uids.iter().peekable();
                        while let Some(row) = rows.next()? {
                            let uid = to_u32(row.get(0)?);
                            while wanted.next_if(|&&w| w < uid).is_some() {
                                out.push(None);
                            }
                            if wanted.next_if(|&&w| w == uid).is_some() {
                                out.push(Some(summary(row)?));
                            }
                        }
                        out.resize(uids.len(), None);
                    }
                    _ => {
                        let mut stmt = tx.prepare_cached(
                            "SELECT uid, from_addr, to_addr, subject, sent_date, message_id, \
                             has_attachments FROM mail_messages WHERE folder_id = ?1 AND uid = ?2",
                        )?;
                        for &uid in uids {
                            out.push(
                                stmt.query_row(params![folder_id, uid], summary)
                                    .optional()?,
                            );
                        }
                    }
                }
            }
            tx.finish()?;
            Ok(out)
        })
    }

    fn store_flags(
        &self,
        folder_id: i64,
        uids: &[u32],
        op: FlagOp,
        flags: Flags,
        keywords: &[String],
    ) -> Result<Vec<FlagsChanged>> {
        self.with_writer(|conn| {
            let tx = conn.transaction()?;
            let mut changed = Vec::new();
            {
                let mut read = tx.prepare_cached(
                    "SELECT flags, keywords FROM mail_messages WHERE folder_id = ?1 AND uid = ?2",
                )?;
                let mut write = tx.prepare_cached(
                    "UPDATE mail_messages SET flags = ?3, keywords = ?4, modseq = ?5 \
                     WHERE folder_id = ?1 AND uid = ?2",
                )?;
                let mut bump = tx.prepare_cached(
                    "UPDATE mail_folders SET highest_modseq = highest_modseq + 1 WHERE id = ?1 \
                     RETURNING highest_modseq",
                )?;
                let mut current_modseq = tx.prepare_cached(
                    "SELECT modseq FROM mail_messages WHERE folder_id = ?1 AND uid = ?2",
                )?;
                for &uid in uids {
                    let Some((old, old_kw)) = read
                        .query_row(params![folder_id, uid], |r| {
                            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                        })
                        .optional()?
                    else {
                        continue;
                    };
                    let old = Flags(u8::try_from(old & 0xff).unwrap_or(0));
                    let old_kw = keywords_from(&old_kw);
                    let (new, mut new_kw) = match op {
                        FlagOp::Add => {
                            let mut kw = old_kw.clone();
                            kw.extend(keywords.iter().cloned());
                            (old.union(flags), kw)
                        }
                        FlagOp::Remove => (
                            old.minus(flags),
                            old_kw
                                .iter()
                                .filter(|k| !keywords.iter().any(|r| r.eq_ignore_ascii_case(k)))
                                .cloned()
                                .collect(),
                        ),
                        FlagOp::Replace => (flags, keywords.to_vec()),
                    };
                    new_kw.sort_by_key(|k| k.to_ascii_lowercase());
                    new_kw.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
                    let new = Flags(new.0 & Flags::ALL.0);
                    if new == old && new_kw == old_kw {
                        // Unchanged: no new modseq (RFC 7162 §3.1.3 lets a no-op STORE keep it).
                        let modseq: i64 =
                            current_modseq.query_row(params![folder_id, uid], |r| r.get(0))?;
                        changed.push(FlagsChanged {
                            uid,
                            flags: new,
                            keywords: new_kw,
                            modseq: to_u64(modseq),
                        });
                        continue;
                    }
                    let modseq: i64 = bump.query_row([folder_id], |r| r.get(0))?;
                    write.execute(params![folder_id, uid, new.0, new_kw.join(" "), modseq])?;
                    changed.push(FlagsChanged {
                        uid,
                        flags: new,
                        keywords: new_kw,
                        modseq: to_u64(modseq),
                    });
                }
            }
            tx.commit()?;
            Ok(changed)
        })
    }

    fn expunge(&self, folder_id: i64, uids: &[u32]) -> Result<Vec<u32>> {
        self.with_writer(|conn| {
            let tx = conn.transaction()?;
            let mut removed = Vec::new();
            {
                let mut delete = tx.prepare_cached(
                    "DELETE FROM mail_messages WHERE folder_id = ?1 AND uid = ?2 RETURNING uid",
                )?;
                for &uid in uids {
                    if let Some(u) = delete
                        .query_row(params![folder_id, uid], |r| r.get::<_, i64>(0))
                        .optional()?
                    {
                        removed.push(to_u32(u));
                    }
                }
                // Each removal took its own modseq and went into the expunged log (trigger of 0006).
            }
            tx.commit()?;
            Ok(removed)
        })
    }

    fn copy_messages(
        &self,
        from_folder: i64,
        uids: &[u32],
        to_folder: i64,
        remove_source: bool,
        default_quota: u64,
    ) -> Result<(u32, Vec<(u32, u32)>)> {
        self.with_writer(|conn| {
            let tx = conn.transaction()?;
            let (dest_account, uidvalidity): (i64, i64) = tx
                .prepare_cached("SELECT account_id, uidvalidity FROM mail_folders WHERE id = ?1")?
                .query_row([to_folder], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?
                .ok_or_else(|| StoreError::FolderNotFound(to_folder.to_string()))?;
            let mut pairs = Vec::with_capacity(uids.len());
            let mut added = 0u64;
            {
                let mut copy = tx.prepare_cached(
                    "INSERT INTO mail_messages (folder_id, account_id, uid, modseq, flags, keywords, \
                     internal_date, size, blob_id, from_addr, to_addr, subject, sent_date, message_id, \
                     has_attachments) \
                     SELECT ?3, ?4, ?5, ?6, flags, keywords, internal_date, size, blob_id, from_addr, to_addr, \
                     subject, sent_date, message_id, has_attachments \
                     FROM mail_messages WHERE folder_id = ?1 AND uid = ?2 RETURNING size",
                )?;
                for &uid in uids {
                    let (new_uid, modseq) = next_uid(&tx, to_folder)?;
                    // A UID that names no message (expunged meanwhile) is skipped; the destination UID it
                    // took stays unused, which IMAP allows (UIDs only have to grow).
                    if let Some(size) = copy
                        .query_row(
                            params![from_folder, uid, to_folder, dest_account, new_uid, to_i64(modseq)],
                            |r| r.get::<_, i64>(0),
                        )
                        .optional()?
                    {
                        added += to_u64(size);
                        pairs.push((uid, new_uid));
                    }
                }
            }
            if remove_source {
                let mut delete =
                    tx.prepare_cached("DELETE FROM mail_messages WHERE folder_id = ?1 AND uid = ?2")?;
                // Each removal takes its modseq and is logged by the expunge trigger (0006).
                for (uid, _) in &pairs {
                    delete.execute(params![from_folder, uid])?;
                }
            } else if added > 0 {
                // Copies count against the quota (moves within one account do not change it).
                let (used, quota): (i64, Option<i64>) = tx
                    .prepare_cached("SELECT used_bytes, quota_bytes FROM mailboxes WHERE account_id = ?1")?
                    .query_row([dest_account], |r| Ok((r.get(0)?, r.get(1)?)))?;
                if to_u64(used) > quota.map_or(default_quota, to_u64) {
                    let email: String = tx
                        .prepare_cached("SELECT email FROM accounts WHERE id = ?1")?
                        .query_row([dest_account], |r| r.get(0))?;
                    return Err(StoreError::OverQuota { account: email });
                }
            }
            tx.commit()?;
            Ok((to_u32(uidvalidity), pairs))
        })
    }

    fn queue_due(&self, now: i64, limit: usize) -> Result<Vec<QueuedRecipient>> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {QUEUE_COLUMNS} FROM {QUEUE_FROM} WHERE r.next_attempt <= ?1 \
                 ORDER BY r.next_attempt, r.id LIMIT ?2"
            ))?;
            let rows = stmt.query_map(
                params![now, i64::try_from(limit).unwrap_or(i64::MAX)],
                queued_from_row,
            )?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn queue_list(&self) -> Result<Vec<QueuedRecipient>> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {QUEUE_COLUMNS} FROM {QUEUE_FROM} ORDER BY r.queue_id, r.id"
            ))?;
            let rows = stmt.query_map([], queued_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn queue_message(&self, queue_id: i64) -> Result<Option<Vec<u8>>> {
        self.with_reader(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT b.data FROM mail_queue q JOIN mail_blobs b ON b.id = q.blob_id WHERE q.id = ?1",
                )?
                .query_row([queue_id], |r| r.get(0))
                .optional()?)
        })
    }

    fn queue_delivered(&self, recipient_ids: &[i64]) -> Result<()> {
        self.with_writer(|conn| {
            let tx = conn.transaction()?;
            delete_recipients(&tx, recipient_ids)?;
            tx.commit()?;
            Ok(())
        })
    }

    fn queue_deferred(&self, recipient_ids: &[i64], next_attempt: i64, error: &str) -> Result<()> {
        self.with_writer(|conn| {
            let tx = conn.transaction()?;
            for chunk in recipient_ids.chunks(CHUNK) {
                let sql = format!(
                    "UPDATE mail_queue_rcpts SET attempts = attempts + 1, next_attempt = ?, last_error = ? \
                     WHERE id IN ({})",
                    placeholders(chunk.len())
                );
                let mut values: Vec<rusqlite::types::Value> = vec![next_attempt.into(), error.to_owned().into()];
                values.extend(chunk.iter().map(|&id| rusqlite::types::Value::from(id)));
                tx.execute(&sql, rusqlite::params_from_iter(values))?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn queue_failed(
        &self,
        recipient_ids: &[i64],
        dsn: Option<&Delivery>,
        default_quota: u64,
    ) -> Result<()> {
        self.with_writer(|conn| {
            let mut tx = conn.transaction()?;
            delete_recipients(&tx, recipient_ids)?;
            if let Some(d) = dsn {
                // A notice that cannot be stored (the sender is over quota or gone) must not keep the failed
                // recipients in the queue for ever: the failure is still final, only the notice is lost, as
                // RFC 5321 §6.1 allows when the notice itself cannot be delivered.
                match in_savepoint(&mut tx, |c| deliver_one(c, d, default_quota)) {
                    Ok(_)
                    | Err(StoreError::OverQuota { .. })
                    | Err(StoreError::AccountNotFound(_))
                    | Err(StoreError::FolderNotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn queue_retry_now(&self, now: i64) -> Result<u64> {
        self.with_writer(|conn| {
            let n = conn
                .prepare_cached("UPDATE mail_queue_rcpts SET next_attempt = ?1")?
                .execute([now])?;
            Ok(n as u64)
        })
    }
}

fn expunged_after(conn: &Connection, folder_id: i64, since: u64) -> Result<Vec<u32>> {
    let uids = conn
        .prepare_cached(
            "SELECT uid FROM mail_expunged WHERE folder_id = ?1 AND modseq > ?2 ORDER BY uid",
        )?
        .query_map(params![folder_id, to_i64(since)], |r| r.get::<_, i64>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(uids.into_iter().map(to_u32).collect())
}

fn delete_recipients(conn: &Connection, ids: &[i64]) -> Result<()> {
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "DELETE FROM mail_queue_rcpts WHERE id IN ({})",
            placeholders(chunk.len())
        );
        conn.execute(&sql, rusqlite::params_from_iter(chunk.iter()))?;
    }
    Ok(())
}
