//! Schema migrations, one list per SQL dialect.
//!
//! Each migration is a numbered SQL file embedded at compile time. A database records the last migration applied
//! to it (SQLite: `PRAGMA user_version`), and opening it applies every later one in order. Migrations are never
//! edited once released: a schema change is always a new file with the next number.

/// One schema step.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Migration {
    /// The schema version the database has after this step; versions start at 1 and have no gaps.
    pub(crate) version: u32,
    /// The SQL to run, possibly several statements.
    pub(crate) sql: &'static str,
}

/// The SQLite schema, in order.
pub(crate) const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        sql: include_str!("sqlite/0001_accounts.sql"),
    },
    Migration {
        version: 2,
        sql: include_str!("sqlite/0002_contact_lists.sql"),
    },
    Migration {
        version: 3,
        sql: include_str!("sqlite/0003_mail.sql"),
    },
    Migration {
        version: 4,
        sql: include_str!("sqlite/0004_spam.sql"),
    },
    Migration {
        version: 5,
        sql: include_str!("sqlite/0005_senders.sql"),
    },
    Migration {
        version: 6,
        sql: include_str!("sqlite/0006_imap_sync.sql"),
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_versions_are_contiguous_from_one() {
        for (i, m) in SQLITE.iter().enumerate() {
            assert_eq!(usize::try_from(m.version).ok(), Some(i + 1));
            assert!(!m.sql.trim().is_empty());
        }
    }
}
