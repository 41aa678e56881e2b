//! Persistence for msgr: accounts, contact lists and mailboxes behind traits.
//!
//! [`AccountStore`] and [`ContactStore`] are the boundary the server talks to. Their methods block, because every
//! backend ends in a blocking call (a file fsync or a database round trip); the server runs them under
//! `spawn_blocking`.
//! [`Store`] is the enum of backends the binary can be built with. The server holds an `Arc<Store>` and never
//! learns which backend it has. SQLite, the in-process default, is always built in; PostgreSQL will join it
//! behind a feature.
//!
//! A method that returns `Ok` has made its write durable: callers may acknowledge it to a client immediately.

mod error;
pub mod mail;
mod migrations;
pub mod senders;
pub mod spam;
pub mod sqlite;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use msgr_core::lists::{Change, ContactList, Phones};

pub use error::StoreError;
pub use mail::{
    Delivered, Delivery, FlagOp, Flags, FlagsChanged, Folder, FolderChanges, FolderRef,
    LocalTarget, MailStore, Mailbox, MessageMeta, MessageState, MessageSummary, Outbound,
    QueuedRecipient, SelectedFolder, SpecialUse, StoredMessage,
};
pub use senders::{Greylist, GreylistTimes, SenderFacts, SenderList, SenderStore};
pub use spam::{SpamCounts, SpamStore};
pub use sqlite::{SqliteOptions, SqliteStore};

/// The result of a store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A stored account.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    /// The row id; stable for the life of the account and never reused while it exists.
    pub id: i64,
    /// The Passport name, lowercased.
    pub email: String,
    /// The friendly name, decoded (not URL-encoded).
    pub display_name: String,
    /// The argon2id PHC string of the password.
    pub password_hash: String,
    /// The secret the MD5 challenge logins of MSNP2–MSNP7 need, if the account can use them.
    pub md5_secret: Option<String>,
    /// When the account was created, in seconds since the Unix epoch.
    pub created_at: i64,
}

// Written by hand so that secrets never end up in logs through `{:?}`.
impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("display_name", &self.display_name)
            .field("password_hash", &"<redacted>")
            .field(
                "md5_secret",
                &self.md5_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// What is needed to create an account; the store assigns the id and creation time.
#[derive(Clone, PartialEq, Eq)]
pub struct NewAccount {
    /// The Passport name; the store lowercases it.
    pub email: String,
    /// The friendly name, decoded.
    pub display_name: String,
    /// The argon2id PHC string of the password.
    pub password_hash: String,
    /// The secret for MD5 challenge logins, if any.
    pub md5_secret: Option<String>,
}

impl fmt::Debug for NewAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewAccount")
            .field("email", &self.email)
            .field("display_name", &self.display_name)
            .field("password_hash", &"<redacted>")
            .field(
                "md5_secret",
                &self.md5_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Account persistence.
///
/// E-mail arguments are matched case-insensitively. The store does not validate names or hashes; that is the job
/// of `msgr-core` before the call.
pub trait AccountStore: Send + Sync {
    /// Creates an account; [`StoreError::AccountExists`] if the e-mail is taken in any letter case.
    fn create_account(&self, new: NewAccount) -> Result<Account>;

    /// Looks an account up by e-mail.
    fn account(&self, email: &str) -> Result<Option<Account>>;

    /// All accounts, ordered by e-mail.
    fn accounts(&self) -> Result<Vec<Account>>;

    /// Replaces the password hash and MD5 secret; [`StoreError::AccountNotFound`] if there is no such account.
    fn set_password(
        &self,
        email: &str,
        password_hash: &str,
        md5_secret: Option<&str>,
    ) -> Result<()>;

    /// Replaces the friendly name; [`StoreError::AccountNotFound`] if there is no such account.
    fn set_display_name(&self, email: &str, display_name: &str) -> Result<()>;

    /// Deletes an account; [`StoreError::AccountNotFound`] if there is no such account.
    fn delete_account(&self, email: &str) -> Result<()>;

    /// The number of accounts.
    fn account_count(&self) -> Result<u64>;
}

/// Contact-list persistence: the whole list state of an account ([`ContactList`]) and the [`Change`]s that
/// `msgr-core` decides.
///
/// The store does not judge changes; `msgr-core` did that. It applies them with exactly the semantics of
/// [`ContactList::apply`], so that a list loaded after [`ContactStore::apply`] equals the in-memory copy the
/// caller updated with the same changes.
pub trait ContactStore: Send + Sync {
    /// The list state of `owner` (any letter case); [`StoreError::AccountNotFound`] if there is no such account.
    fn load_list(&self, owner: &str) -> Result<ContactList>;

    /// Just the list version of `owner`, for the `SYN` that finds the client's copy up to date.
    fn list_version(&self, owner: &str) -> Result<u64>;

    /// Applies `changes` in order, all in one transaction: either all of them are stored or none is.
    ///
    /// Each change whose [`ChangeKind::bumps_version`](msgr_core::lists::ChangeKind::bumps_version) holds adds
    /// one to its owner's list version. Returns each owner's list version after the changes, once per owner in
    /// the order owners first appear. An owner without an account fails the whole call with
    /// [`StoreError::AccountNotFound`]. On `Ok` the changes are durable.
    fn apply(&self, changes: &[Change]) -> Result<Vec<(String, u64)>>;

    /// The phone settings of `owner`'s forward-list contacts, in one query, for the `BPR` lines of `SYN`:
    /// keyed by contact e-mail (lowercase), and only for contacts that have an account, have set a phone
    /// number or `MOB Y`, and whose own privacy lets `owner` see them (not blocked; allowed, or `BLP AL`).
    /// An unknown `owner` yields an empty map.
    fn contact_phones(&self, owner: &str) -> Result<HashMap<String, Phones>>;

    /// `contact`'s phones changed: adds one to the list version of every account that has `contact` on its
    /// forward list (their cached copies hold those phones as `BPR`), in one transaction. Returns each such
    /// account with its new version. On `Ok` the bump is durable.
    fn touch_watchers(&self, contact: &str) -> Result<Vec<(String, u64)>>;
}

/// The storage backend chosen at start-up.
#[derive(Debug)]
#[non_exhaustive]
pub enum Store {
    /// An SQLite database file, for a single node.
    Sqlite(SqliteStore),
}

impl Store {
    /// Opens (creating if needed) an SQLite database with the default options.
    pub fn open_sqlite(path: &Path) -> Result<Store> {
        SqliteStore::open(path).map(Store::Sqlite)
    }
}

impl From<SqliteStore> for Store {
    fn from(s: SqliteStore) -> Store {
        Store::Sqlite(s)
    }
}

/// Forwards a call to whichever backend `self` holds; adding a backend means adding one arm here.
macro_rules! delegate {
    ($self:ident, $backend:ident => $call:expr) => {
        match $self {
            Store::Sqlite($backend) => $call,
        }
    };
}

impl AccountStore for Store {
    fn create_account(&self, new: NewAccount) -> Result<Account> {
        delegate!(self, s => s.create_account(new))
    }

    fn account(&self, email: &str) -> Result<Option<Account>> {
        delegate!(self, s => s.account(email))
    }

    fn accounts(&self) -> Result<Vec<Account>> {
        delegate!(self, s => s.accounts())
    }

    fn set_password(
        &self,
        email: &str,
        password_hash: &str,
        md5_secret: Option<&str>,
    ) -> Result<()> {
        delegate!(self, s => s.set_password(email, password_hash, md5_secret))
    }

    fn set_display_name(&self, email: &str, display_name: &str) -> Result<()> {
        delegate!(self, s => s.set_display_name(email, display_name))
    }

    fn delete_account(&self, email: &str) -> Result<()> {
        delegate!(self, s => s.delete_account(email))
    }

    fn account_count(&self) -> Result<u64> {
        delegate!(self, s => s.account_count())
    }
}

impl ContactStore for Store {
    fn load_list(&self, owner: &str) -> Result<ContactList> {
        delegate!(self, s => s.load_list(owner))
    }

    fn list_version(&self, owner: &str) -> Result<u64> {
        delegate!(self, s => s.list_version(owner))
    }

    fn apply(&self, changes: &[Change]) -> Result<Vec<(String, u64)>> {
        delegate!(self, s => s.apply(changes))
    }

    fn contact_phones(&self, owner: &str) -> Result<HashMap<String, Phones>> {
        delegate!(self, s => s.contact_phones(owner))
    }

    fn touch_watchers(&self, contact: &str) -> Result<Vec<(String, u64)>> {
        delegate!(self, s => s.touch_watchers(contact))
    }
}

impl MailStore for Store {
    fn mailbox(&self, account: &str) -> Result<Option<Mailbox>> {
        delegate!(self, s => s.mailbox(account))
    }

    fn is_account_domain(&self, domain: &str) -> Result<bool> {
        delegate!(self, s => s.is_account_domain(domain))
    }

    fn folders(&self, account: &str) -> Result<Vec<Folder>> {
        delegate!(self, s => s.folders(account))
    }

    fn folder(&self, account: &str, name: &str) -> Result<Option<Folder>> {
        delegate!(self, s => s.folder(account, name))
    }

    fn create_folder(&self, account: &str, name: &str) -> Result<Folder> {
        delegate!(self, s => s.create_folder(account, name))
    }

    fn delete_folder(&self, account: &str, name: &str) -> Result<()> {
        delegate!(self, s => s.delete_folder(account, name))
    }

    fn rename_folder(&self, account: &str, from: &str, to: &str) -> Result<()> {
        delegate!(self, s => s.rename_folder(account, from, to))
    }

    fn set_subscribed(&self, account: &str, name: &str, subscribed: bool) -> Result<()> {
        delegate!(self, s => s.set_subscribed(account, name, subscribed))
    }

    fn set_quota(&self, account: &str, quota_bytes: Option<u64>) -> Result<()> {
        delegate!(self, s => s.set_quota(account, quota_bytes))
    }

    fn deliver(&self, batch: &[Delivery], default_quota: u64) -> Result<Vec<Result<Delivered>>> {
        delegate!(self, s => s.deliver(batch, default_quota))
    }

    fn messages(&self, folder_id: i64) -> Result<Vec<MessageMeta>> {
        delegate!(self, s => s.messages(folder_id))
    }

    fn message_raw(&self, folder_id: i64, uid: u32) -> Result<Option<Vec<u8>>> {
        delegate!(self, s => s.message_raw(folder_id, uid))
    }

    fn message(&self, folder_id: i64, uid: u32) -> Result<Option<MessageMeta>> {
        delegate!(self, s => s.message(folder_id, uid))
    }

    fn folder_version(&self, folder_id: i64) -> Result<Option<(u32, u64)>> {
        delegate!(self, s => s.folder_version(folder_id))
    }

    fn changes_since(&self, folder_id: i64, since: u64) -> Result<Option<FolderChanges>> {
        delegate!(self, s => s.changes_since(folder_id, since))
    }

    fn expunged_since(&self, folder_id: i64, since: u64) -> Result<Vec<u32>> {
        delegate!(self, s => s.expunged_since(folder_id, since))
    }

    fn claim_recent(&self, folder_id: i64, uidnext: u32) -> Result<Option<(u32, u32)>> {
        delegate!(self, s => s.claim_recent(folder_id, uidnext))
    }

    fn select_folder(
        &self,
        account: &str,
        name: &str,
        claim_recent: bool,
    ) -> Result<Option<SelectedFolder>> {
        delegate!(self, s => s.select_folder(account, name, claim_recent))
    }

    fn messages_raw(
        &self,
        folder_id: i64,
        uids: &[u32],
        header_only: bool,
    ) -> Result<Vec<Option<Vec<u8>>>> {
        delegate!(self, s => s.messages_raw(folder_id, uids, header_only))
    }

    fn message_summaries(
        &self,
        folder_id: i64,
        uids: &[u32],
    ) -> Result<Vec<Option<MessageSummary>>> {
        delegate!(self, s => s.message_summaries(folder_id, uids))
    }

    fn set_noselect(&self, account: &str, name: &str, noselect: bool) -> Result<()> {
        delegate!(self, s => s.set_noselect(account, name, noselect))
    }

    fn store_flags(
        &self,
        folder_id: i64,
        uids: &[u32],
        op: FlagOp,
        flags: Flags,
        keywords: &[String],
    ) -> Result<Vec<FlagsChanged>> {
        delegate!(self, s => s.store_flags(folder_id, uids, op, flags, keywords))
    }

    fn expunge(&self, folder_id: i64, uids: &[u32]) -> Result<Vec<u32>> {
        delegate!(self, s => s.expunge(folder_id, uids))
    }

    fn copy_messages(
        &self,
        from_folder: i64,
        uids: &[u32],
        to_folder: i64,
        remove_source: bool,
        default_quota: u64,
    ) -> Result<(u32, Vec<(u32, u32)>)> {
        delegate!(self, s => s.copy_messages(from_folder, uids, to_folder, remove_source, default_quota))
    }

    fn queue_due(&self, now: i64, limit: usize) -> Result<Vec<QueuedRecipient>> {
        delegate!(self, s => s.queue_due(now, limit))
    }

    fn queue_list(&self) -> Result<Vec<QueuedRecipient>> {
        delegate!(self, s => s.queue_list())
    }

    fn queue_message(&self, queue_id: i64) -> Result<Option<Vec<u8>>> {
        delegate!(self, s => s.queue_message(queue_id))
    }

    fn queue_delivered(&self, recipient_ids: &[i64]) -> Result<()> {
        delegate!(self, s => s.queue_delivered(recipient_ids))
    }

    fn queue_deferred(&self, recipient_ids: &[i64], next_attempt: i64, error: &str) -> Result<()> {
        delegate!(self, s => s.queue_deferred(recipient_ids, next_attempt, error))
    }

    fn queue_failed(
        &self,
        recipient_ids: &[i64],
        dsn: Option<&Delivery>,
        default_quota: u64,
    ) -> Result<()> {
        delegate!(self, s => s.queue_failed(recipient_ids, dsn, default_quota))
    }

    fn queue_retry_now(&self, now: i64) -> Result<u64> {
        delegate!(self, s => s.queue_retry_now(now))
    }
}
