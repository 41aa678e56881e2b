//! The SQLite backend: one database file, safe to share between the server and the `msgr user` CLI.
//!
//! Accounts are implemented here, contact lists in `sqlite/contacts.rs`, mailboxes and the outbound queue in
//! `sqlite/mail.rs`.
//!
//! Writes go through a single connection behind a mutex, because SQLite admits one writer at a time anyway and
//! queueing in-process is cheaper than spinning on `SQLITE_BUSY`. Reads take a connection from a small pool, so
//! that a burst of logins reads in parallel; in WAL mode readers never block the writer or each other. Another
//! process (the CLI) may write to the same file at any time; the busy timeout makes each side wait its turn.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{
    params, Connection, ErrorCode, OpenFlags, OptionalExtension, Row, TransactionBehavior,
};

use crate::migrations::{self, Migration};
use crate::{Account, AccountStore, NewAccount, Result, StoreError};

/// How an [`SqliteStore`] opens its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SqliteOptions {
    /// `synchronous=FULL` (fsync the WAL on every commit) rather than `NORMAL`.
    ///
    /// Both survive the process being killed. Only `FULL` also survives a power cut or kernel crash without
    /// losing the last acknowledged writes, which is the store's promise; turn it off only for tests or
    /// throw-away data.
    pub synchronous_full: bool,
    /// How many idle reader connections to keep. More are opened under load and closed when returned to a full
    /// pool; 0 opens a fresh connection for every read.
    pub readers: usize,
    /// How long a connection waits for a lock held by another connection or process before failing.
    pub busy_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            synchronous_full: true,
            readers: 4,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// An account store in an SQLite database file.
pub struct SqliteStore {
    /// Where the database lives; reader connections are opened lazily from it.
    path: PathBuf,
    options: SqliteOptions,
    /// The only connection that writes.
    writer: Mutex<Connection>,
    /// Idle reader connections, at most `options.readers` of them.
    readers: Mutex<Vec<Connection>>,
    /// IMAP's `\Recent` claims of this process's sessions (`sqlite/mail.rs`).
    recent: mail::RecentClaims,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the database at `path` with [`SqliteOptions::default`], creating it and its directory if missing
    /// and bringing its schema up to date.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        SqliteStore::open_with(path, SqliteOptions::default())
    }

    /// Opens the database at `path` with the given options, creating it and its directory if missing and
    /// bringing its schema up to date.
    pub fn open_with(path: &Path, options: SqliteOptions) -> Result<SqliteStore> {
        SqliteStore::open_migrated(path, options, migrations::SQLITE)
    }

    fn open_migrated(
        path: &Path,
        options: SqliteOptions,
        migrations: &[Migration],
    ) -> Result<SqliteStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        // Two processes opening a new file at once can each hold a shared lock and ask for the exclusive one
        // that switching to WAL or migrating needs; SQLite then answers one of them SQLITE_BUSY at once,
        // without waiting on the busy timeout (waiting could deadlock). Starting over is safe, because the
        // switch and each migration are atomic, and soon succeeds: the other process is done in milliseconds.
        let deadline = Instant::now() + options.busy_timeout;
        let writer = loop {
            match open_writer(path, &options, migrations) {
                Err(e) if is_busy(&e) && Instant::now() < deadline => {
                    let jitter = u64::from(std::process::id() % 16);
                    std::thread::sleep(Duration::from_millis(5 + jitter));
                }
                other => break other?,
            }
        };
        Ok(SqliteStore {
            path: path.to_path_buf(),
            options,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::with_capacity(options.readers)),
            recent: mail::RecentClaims::default(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the write connection.
    fn with_writer<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        // A panic while holding the writer could have left it mid-operation; refuse to guess rather than write
        // on top of an unknown state.
        let mut conn = self.writer.lock().map_err(|_| StoreError::Poisoned)?;
        f(&mut conn)
    }

    /// Runs `f` on a pooled read-only connection.
    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let pooled = self.idle_readers().pop();
        let conn = match pooled {
            Some(conn) => conn,
            // Opened outside the pool lock: opening touches the file system and must not stall other readers.
            None => self.open_reader()?,
        };
        let result = f(&conn);
        // If `f` panicked we never get here and the connection is simply closed, which is always safe.
        let mut idle = self.idle_readers();
        if idle.len() < self.options.readers {
            idle.push(conn);
        }
        result
    }

    fn idle_readers(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // The pool is only a list of healthy idle connections, valid whatever a panicking thread was doing.
        self.readers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn open_reader(&self) -> Result<Connection> {
        // Read-write at the file level but `query_only` at the SQL level: a truly read-only handle on a WAL
        // database fails when the -shm file is missing, and nothing here ever needs to write through it.
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        configure(&conn, &self.options)?;
        conn.pragma_update(None, "query_only", true)?;
        Ok(conn)
    }
}

/// Opens the write connection: settings, WAL, and the schema brought up to date.
fn open_writer(
    path: &Path,
    options: &SqliteOptions,
    migrations: &[Migration],
) -> Result<Connection> {
    let mut writer = Connection::open(path)?;
    configure(&writer, options)?;
    // WAL is a property of the file, not the connection: setting it once here covers the readers too.
    let mode: String = writer.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::JournalMode { mode });
    }
    migrate(&mut writer, migrations)?;
    Ok(writer)
}

/// Whether SQLite refused for a lock another connection holds (busy or locked, any extended code).
fn is_busy(e: &StoreError) -> bool {
    let sqlite = match e {
        StoreError::Sqlite(e) | StoreError::Migration { source: e, .. } => e,
        _ => return false,
    };
    matches!(
        sqlite.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Per-connection settings shared by the writer and the readers.
fn configure(conn: &Connection, options: &SqliteOptions) -> Result<()> {
    // Set first so that every later statement, including the pragmas, waits for locks instead of failing.
    conn.busy_timeout(options.busy_timeout)?;
    let synchronous = if options.synchronous_full {
        "FULL"
    } else {
        "NORMAL"
    };
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(())
}

/// Brings the schema of `conn` up to the last of `migrations`.
///
/// All pending migrations run in one IMMEDIATE transaction: either the database reaches the new version or it
/// stays exactly as it was. The version is re-read inside the transaction because the CLI and the server may
/// open the same file at the same moment, and only one of them must apply each step.
fn migrate(conn: &mut Connection, migrations: &[Migration]) -> Result<()> {
    let supported = migrations.last().map_or(0, |m| m.version);
    let current = user_version(conn)?;
    check_version(current, supported)?;
    if current == i64::from(supported) {
        // Up to date: do not take the write lock, so that read-only CLI commands never wait for the server.
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current = user_version(&tx)?;
    check_version(current, supported)?;
    for m in migrations.iter().filter(|m| i64::from(m.version) > current) {
        let step = |source| StoreError::Migration {
            version: m.version,
            source,
        };
        tx.execute_batch(m.sql).map_err(step)?;
        tx.pragma_update(None, "user_version", m.version)
            .map_err(step)?;
    }
    tx.commit()?;
    Ok(())
}

fn user_version(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

fn check_version(found: i64, supported: u32) -> Result<()> {
    if (0..=i64::from(supported)).contains(&found) {
        Ok(())
    } else {
        Err(StoreError::UnsupportedSchema { found, supported })
    }
}

fn now_unix() -> i64 {
    // A clock before 1970 is a broken clock; recording 0 beats refusing to create the account.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == ErrorCode::ConstraintViolation
                && (f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
    )
}

fn account_from_row(row: &Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: row.get(0)?,
        email: row.get(1)?,
        display_name: row.get(2)?,
        password_hash: row.get(3)?,
        md5_secret: row.get(4)?,
        created_at: row.get(5)?,
    })
}

/// Turns "no row changed" into [`StoreError::AccountNotFound`].
fn require_changed(changed: usize, email: &str) -> Result<()> {
    if changed == 0 {
        Err(StoreError::AccountNotFound(email.to_owned()))
    } else {
        Ok(())
    }
}

// Lookups rely on the column's COLLATE NOCASE (which the UNIQUE index shares) for case-insensitivity, so they
// need not lowercase their argument; only inserts lowercase, to keep the stored form canonical.
impl AccountStore for SqliteStore {
    fn create_account(&self, new: NewAccount) -> Result<Account> {
        let email = new.email.to_ascii_lowercase();
        let created_at = now_unix();
        self.with_writer(|conn| {
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO accounts (email, display_name, password_hash, md5_secret, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    email,
                    new.display_name,
                    new.password_hash,
                    new.md5_secret,
                    created_at
                ]);
            match inserted {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => return Err(StoreError::AccountExists(email)),
                Err(e) => return Err(e.into()),
            }
            // Safe to read back: the writer mutex is held, so no other insert ran on this connection since.
            let id = conn.last_insert_rowid();
            Ok(Account {
                id,
                email,
                display_name: new.display_name,
                password_hash: new.password_hash,
                md5_secret: new.md5_secret,
                created_at,
            })
        })
    }

    fn account(&self, email: &str) -> Result<Option<Account>> {
        self.with_reader(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT id, email, display_name, password_hash, md5_secret, created_at \
                     FROM accounts WHERE email = ?1",
                )?
                .query_row([email], account_from_row)
                .optional()?)
        })
    }

    fn accounts(&self) -> Result<Vec<Account>> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, email, display_name, password_hash, md5_secret, created_at \
                 FROM accounts ORDER BY email",
            )?;
            let rows = stmt.query_map([], account_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn set_password(
        &self,
        email: &str,
        password_hash: &str,
        md5_secret: Option<&str>,
    ) -> Result<()> {
        let changed = self.with_writer(|conn| {
            Ok(conn
                .prepare_cached(
                    "UPDATE accounts SET password_hash = ?2, md5_secret = ?3 WHERE email = ?1",
                )?
                .execute(params![email, password_hash, md5_secret])?)
        })?;
        require_changed(changed, email)
    }

    fn set_display_name(&self, email: &str, display_name: &str) -> Result<()> {
        let changed = self.with_writer(|conn| {
            Ok(conn
                .prepare_cached("UPDATE accounts SET display_name = ?2 WHERE email = ?1")?
                .execute(params![email, display_name])?)
        })?;
        require_changed(changed, email)
    }

    fn delete_account(&self, email: &str) -> Result<()> {
        let changed = self.with_writer(|conn| {
            Ok(conn
                .prepare_cached("DELETE FROM accounts WHERE email = ?1")?
                .execute([email])?)
        })?;
        require_changed(changed, email)
    }

    fn account_count(&self) -> Result<u64> {
        let count: i64 = self.with_reader(|conn| {
            Ok(conn
                .prepare_cached("SELECT COUNT(*) FROM accounts")?
                .query_row([], |r| r.get(0))?)
        })?;
        // COUNT(*) is never negative.
        Ok(u64::try_from(count).unwrap_or(0))
    }
}

mod contacts;
mod mail;
mod senders;
mod spam;

#[cfg(test)]
mod contact_tests;
#[cfg(test)]
mod mail_tests;
#[cfg(test)]
mod tests;
