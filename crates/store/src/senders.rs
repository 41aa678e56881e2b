//! Per-user allow and block lists of mail senders, what Messenger's lists say about the same addresses, and
//! greylisting's memory (schema: `migrations/sqlite/0005_senders.sql`). The store only keeps and reports;
//! which entry wins is decided by the mail side.

use crate::{Result, Store};

/// Which of a user's two mail lists an entry is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SenderList {
    /// Mail from this sender goes to the Inbox without being scored.
    Allow,
    /// Mail from this sender goes to Junk without being scored (never dropped).
    Block,
}

impl SenderList {
    /// The word kept in the database and shown by the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            SenderList::Allow => "allow",
            SenderList::Block => "block",
        }
    }

    fn parse(s: &str) -> Option<SenderList> {
        match s {
            "allow" => Some(SenderList::Allow),
            "block" => Some(SenderList::Block),
            _ => None,
        }
    }
}

/// Everything the store knows about a few sender addresses from one account's point of view.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SenderFacts {
    /// Mail-list entries matching an address exactly or by its domain (`@example.com`): `(entry, list)`.
    pub mail: Vec<(String, SenderList)>,
    /// Messenger contacts among the addresses: `(address, LST bit mask)` (FL=1, AL=2, BL=4, RL=8).
    pub messenger: Vec<(String, u8)>,
}

/// What greylisting says about one triplet now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Greylist {
    /// Seen for the first time, or retried too early: try again later.
    Deferred,
    /// Retried after the delay (now or before): accept.
    Passed,
}

/// Greylisting's timing, all in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GreylistTimes {
    /// How long after its first attempt a triplet is accepted.
    pub delay: i64,
    /// How long a first attempt waits for its retry before it is forgotten.
    pub retry_window: i64,
    /// How long a passed triplet is remembered after its last message.
    pub expiry: i64,
}

/// Storage for sender lists and greylisting.
pub trait SenderStore: Send + Sync {
    /// Puts `sender` (an address or `@domain`) on `account`'s allow or block list, replacing whichever
    /// list it was on.
    fn sender_set(&self, account: &str, sender: &str, list: SenderList, now: i64) -> Result<()>;

    /// Takes `sender` off `account`'s lists; `false` when it was on neither.
    fn sender_remove(&self, account: &str, sender: &str) -> Result<bool>;

    /// `account`'s entries, sorted by sender.
    fn sender_entries(&self, account: &str) -> Result<Vec<(String, SenderList)>>;

    /// What `account`'s mail lists and Messenger lists say about `addresses` (lowercase addresses).
    fn sender_facts(&self, account: &str, addresses: &[String]) -> Result<SenderFacts>;

    /// Records an attempt of the triplet at `now` and says whether it passes, sweeping rows past their
    /// time in the same transaction.
    fn greylist(
        &self,
        client_net: &str,
        sender: &str,
        recipient: &str,
        now: i64,
        times: GreylistTimes,
    ) -> Result<Greylist>;
}

impl SenderStore for Store {
    fn sender_set(&self, account: &str, sender: &str, list: SenderList, now: i64) -> Result<()> {
        match self {
            Store::Sqlite(s) => s.sender_set(account, sender, list, now),
        }
    }

    fn sender_remove(&self, account: &str, sender: &str) -> Result<bool> {
        match self {
            Store::Sqlite(s) => s.sender_remove(account, sender),
        }
    }

    fn sender_entries(&self, account: &str) -> Result<Vec<(String, SenderList)>> {
        match self {
            Store::Sqlite(s) => s.sender_entries(account),
        }
    }

    fn sender_facts(&self, account: &str, addresses: &[String]) -> Result<SenderFacts> {
        match self {
            Store::Sqlite(s) => s.sender_facts(account, addresses),
        }
    }

    fn greylist(
        &self,
        client_net: &str,
        sender: &str,
        recipient: &str,
        now: i64,
        times: GreylistTimes,
    ) -> Result<Greylist> {
        match self {
            Store::Sqlite(s) => s.greylist(client_net, sender, recipient, now, times),
        }
    }
}

/// Reads a stored list name; anything else (never written by us: the column has a CHECK) is `None`.
pub(crate) fn parse_list(s: &str) -> Option<SenderList> {
    SenderList::parse(s)
}
