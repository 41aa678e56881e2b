//! The error type shared by every store backend.

use std::path::PathBuf;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An account with this e-mail already exists (compared case-insensitively).
    #[error("account {0} already exists")]
    AccountExists(String),
    /// No account has this e-mail.
    #[error("account {0} does not exist")]
    AccountNotFound(String),
    /// The SQLite library reported an error.
    #[error("sqlite error")]
    Sqlite(#[from] rusqlite::Error),
    /// A schema migration failed; the database was left at the version it had before.
    #[error("applying schema migration {version} failed")]
    Migration {
        /// The migration that failed.
        version: u32,
        /// What the database said.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer msgr (or is not an msgr database).
    #[error(
        "database schema version {found} is not supported (this build knows versions up to {supported}); \
         is it from a newer msgr?"
    )]
    UnsupportedSchema {
        /// The version recorded in the database.
        found: i64,
        /// The newest version this build can use.
        supported: u32,
    },
    /// SQLite refused to switch to write-ahead logging (for example on a file system without shared memory).
    #[error("could not enable WAL journal mode, database stayed in {mode:?} mode")]
    JournalMode {
        /// The journal mode SQLite reported instead.
        mode: String,
    },
    /// A file system operation around the database failed.
    #[error("I/O error on {}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A stored value breaks an invariant the schema cannot express (an unknown list bit, a malformed GUID, a
    /// list without group 0, …): the database was edited by hand or by a broken writer.
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// The account's mailbox has no room for the message (its quota, or the configured default).
    #[error("mailbox of {account} is over its quota")]
    OverQuota {
        /// The account, lowercased.
        account: String,
    },
    /// No folder of the account has this name.
    #[error("folder {0} does not exist")]
    FolderNotFound(String),
    /// A folder of the account already has this name (compared case-insensitively).
    #[error("folder {0} already exists")]
    FolderExists(String),
    /// The standard folders (Inbox, Sent, Drafts, Junk, Trash) cannot be deleted or renamed.
    #[error("folder {0} is one of the standard folders")]
    FolderProtected(String),
    /// A thread panicked while holding the write connection, so its state is unknown.
    #[error("store lock poisoned by an earlier panic")]
    Poisoned,
}
