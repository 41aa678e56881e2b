//! Per-user spam training: each account's own counts, added to the global model when its mail is scored
//! (schema: `migrations/sqlite/0004_spam.sql`). The store knows nothing of tokenizing or scoring; the mail
//! side hands it tokens.

use crate::{Result, Store};

/// One account's training, limited to the tokens asked about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpamCounts {
    /// Messages the account marked as spam (moved into Junk).
    pub spam_messages: u32,
    /// Messages the account marked as not spam (moved out of Junk).
    pub ham_messages: u32,
    /// `(token, spam, ham)` for the tokens asked about that the account has counts for.
    pub tokens: Vec<(String, u32, u32)>,
}

/// Storage for per-user spam training.
pub trait SpamStore: Send + Sync {
    /// Counts one message's distinct `tokens` as spam or ham for `account`, in one transaction.
    fn spam_train(&self, account: &str, tokens: &[String], spam: bool) -> Result<()>;

    /// The account's message totals and its counts for `tokens` (a message's tokens: scoring needs no
    /// more). An account that never trained has all zeros.
    fn spam_counts(&self, account: &str, tokens: &[String]) -> Result<SpamCounts>;
}

impl SpamStore for Store {
    fn spam_train(&self, account: &str, tokens: &[String], spam: bool) -> Result<()> {
        match self {
            Store::Sqlite(s) => s.spam_train(account, tokens, spam),
        }
    }

    fn spam_counts(&self, account: &str, tokens: &[String]) -> Result<SpamCounts> {
        match self {
            Store::Sqlite(s) => s.spam_counts(account, tokens),
        }
    }
}
