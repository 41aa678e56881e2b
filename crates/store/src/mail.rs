//! The mail store's types and the [`MailStore`] trait: every account's mailbox (folders with IMAP's UIDVALIDITY,
//! UIDNEXT and modification sequences, messages with flags and a parsed summary, raw bytes unchanged), the quota,
//! and the outbound queue.
//!
//! The store does not parse mail: the caller (msgr-mail) hands it the summary with the raw bytes. It does decide
//! everything that must be atomic: UID assignment, quota, the queue's bookkeeping.

use std::fmt;

/// The folders every account has, with their RFC 6154 special-use roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SpecialUse {
    Inbox,
    Sent,
    Drafts,
    Junk,
    Trash,
}

impl SpecialUse {
    /// All of them, in the order clients list them.
    pub const ALL: [SpecialUse; 5] = [
        SpecialUse::Inbox,
        SpecialUse::Sent,
        SpecialUse::Drafts,
        SpecialUse::Junk,
        SpecialUse::Trash,
    ];

    /// The folder's name as created for a new account.
    pub fn folder_name(self) -> &'static str {
        match self {
            SpecialUse::Inbox => "INBOX",
            SpecialUse::Sent => "Sent",
            SpecialUse::Drafts => "Drafts",
            SpecialUse::Junk => "Junk",
            SpecialUse::Trash => "Trash",
        }
    }

    /// The RFC 6154 attribute (`\Sent`…); the Inbox has none.
    pub fn attribute(self) -> Option<&'static str> {
        match self {
            SpecialUse::Inbox => None,
            SpecialUse::Sent => Some("\\Sent"),
            SpecialUse::Drafts => Some("\\Drafts"),
            SpecialUse::Junk => Some("\\Junk"),
            SpecialUse::Trash => Some("\\Trash"),
        }
    }

    /// The value of the `special` column.
    pub(crate) fn column(self) -> &'static str {
        match self {
            SpecialUse::Inbox => "inbox",
            SpecialUse::Sent => "sent",
            SpecialUse::Drafts => "drafts",
            SpecialUse::Junk => "junk",
            SpecialUse::Trash => "trash",
        }
    }

    pub(crate) fn from_column(s: &str) -> Option<SpecialUse> {
        SpecialUse::ALL.into_iter().find(|u| u.column() == s)
    }
}

/// IMAP's system flags as a bit set (`\Recent` is per session and never stored).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags(pub u8);

impl Flags {
    pub const SEEN: Flags = Flags(1);
    pub const ANSWERED: Flags = Flags(2);
    pub const FLAGGED: Flags = Flags(4);
    pub const DELETED: Flags = Flags(8);
    pub const DRAFT: Flags = Flags(16);
    /// Every defined bit.
    pub const ALL: Flags = Flags(31);

    /// The flags with their IMAP names, in the order IMAP servers usually print them.
    pub const NAMES: [(Flags, &'static str); 5] = [
        (Flags::SEEN, "\\Seen"),
        (Flags::ANSWERED, "\\Answered"),
        (Flags::FLAGGED, "\\Flagged"),
        (Flags::DELETED, "\\Deleted"),
        (Flags::DRAFT, "\\Draft"),
    ];

    pub fn empty() -> Flags {
        Flags(0)
    }
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
    pub fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }
    pub fn minus(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }
    /// The flag named `name` (`\Seen`, any letter case).
    pub fn from_name(name: &str) -> Option<Flags> {
        Flags::NAMES
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(name))
            .map(|(f, _)| *f)
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Flags::NAMES
            .iter()
            .filter(|(flag, _)| self.contains(*flag))
            .map(|(_, n)| *n)
            .collect();
        write!(f, "Flags({})", names.join(" "))
    }
}

/// An account's mailbox as a whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mailbox {
    pub account_id: i64,
    /// The account's address, lowercased.
    pub email: String,
    /// Bytes stored in all folders.
    pub used_bytes: u64,
    /// The account's own quota, if one was set; otherwise the configured default applies.
    pub quota_bytes: Option<u64>,
}

/// A folder with its IMAP state and counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Folder {
    pub id: i64,
    /// The IMAP name (`INBOX`, `Sent`, `Work/Projects`).
    pub name: String,
    /// Set for the five folders every account has.
    pub special: Option<SpecialUse>,
    pub uidvalidity: u32,
    /// The UID the next message stored in the folder gets. UIDs are never reused.
    pub uidnext: u32,
    pub highest_modseq: u64,
    pub subscribed: bool,
    /// Messages in the folder.
    pub messages: u32,
    /// Messages without `\Seen`.
    pub unseen: u32,
    /// Bytes of the messages in the folder.
    pub size: u64,
    /// Messages with a UID at or above this are `\Recent` (RFC 3501 §2.3.2) for the next session that takes
    /// them ([`MailStore::claim_recent`]).
    pub first_recent_uid: u32,
    /// Messages not yet taken as recent by any session.
    pub recent: u32,
    /// A `\Noselect` placeholder: a folder deleted while it had inferiors keeps its name but no messages
    /// (RFC 3501 §6.3.4); it cannot be selected or receive messages.
    pub noselect: bool,
}

/// What changed in a folder since a mod-sequence ([`MailStore::changes_since`]), read in one snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FolderChanges {
    pub uidnext: u32,
    pub highest_modseq: u64,
    /// Messages (new or with new flags) whose modseq is above the one asked for, in UID order.
    pub changed: Vec<MessageMeta>,
    /// UIDs removed with a modseq above the one asked for, ascending.
    pub expunged: Vec<u32>,
}

/// What a client lists about a message without reading it; parsed once at delivery.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageSummary {
    /// The `From` header, decoded (display name and address as one string).
    pub from: String,
    /// The `To` header, decoded.
    pub to: String,
    /// The `Subject` header, decoded.
    pub subject: String,
    /// The `Date` header in seconds since the Unix epoch, when it parses.
    pub date: Option<i64>,
    /// The `Message-ID` header, without angle brackets.
    pub message_id: String,
    /// Whether any MIME part is an attachment.
    pub has_attachments: bool,
}

/// What an IMAP session keeps about each message of the selected folder for as long as it is selected: the
/// message's state without its summary ([`MessageMeta`] less the `From`/`To`/`Subject` strings that only some
/// `SEARCH` keys read, and [`MailStore::message_summaries`] loads for them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageState {
    pub uid: u32,
    pub modseq: u64,
    pub flags: Flags,
    /// IMAP keywords, sorted.
    pub keywords: Vec<String>,
    /// When the message reached the server, in seconds since the Unix epoch.
    pub internal_date: i64,
    /// The size of the raw bytes (RFC822.SIZE).
    pub size: u64,
}

/// A stored message's metadata, in UID order within its folder: its state and its summary. The state's fields
/// read through it (`meta.uid`), as one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageMeta {
    pub state: MessageState,
    pub summary: MessageSummary,
}

impl std::ops::Deref for MessageMeta {
    type Target = MessageState;

    fn deref(&self) -> &MessageState {
        &self.state
    }
}

impl std::ops::DerefMut for MessageMeta {
    fn deref_mut(&mut self) -> &mut MessageState {
        &mut self.state
    }
}

impl From<MessageMeta> for MessageState {
    fn from(m: MessageMeta) -> MessageState {
        m.state
    }
}

/// A folder as IMAP `SELECT`/`EXAMINE` opens it ([`MailStore::select_folder`]): the folder, its messages and
/// the session's `\Recent` range, all from one read snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectedFolder {
    /// The folder; its counts (`messages`, `unseen`, `size`, `recent`) are those of `messages`.
    pub folder: Folder,
    /// In UID order; empty for a `\Noselect` placeholder. Without their summaries: a session keeps these for
    /// the whole selection, and only some `SEARCH` keys need the summary.
    pub messages: Vec<MessageState>,
    /// `(first, upto)`: the messages with UIDs in `first..upto` are `\Recent` for the caller. With a claim
    /// they are the caller's alone (see [`MailStore::claim_recent`]); without, they are the ones no session
    /// has taken yet.
    pub recent: (u32, u32),
}

/// Where a delivered message goes in one local mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalTarget {
    /// The account, in any letter case.
    pub account: String,
    pub folder: FolderRef,
    /// Flags it is stored with (`\Seen` for the Sent copy, none for new mail).
    pub flags: Flags,
}

/// A folder named by role or by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FolderRef {
    Special(SpecialUse),
    Named(String),
}

/// Mail to be delivered by SMTP to other hosts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outbound {
    /// The reverse-path; empty for a bounce.
    pub sender: String,
    /// The account that submitted it and hears of failures.
    pub account: Option<String>,
    /// Forward-paths (`user@domain`), each delivered and retried on its own.
    pub recipients: Vec<String>,
}

/// One message to store: its bytes once, and every place it goes. Stored all or nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The raw RFC 5322 bytes, stored unchanged.
    pub raw: Vec<u8>,
    pub summary: MessageSummary,
    /// Seconds since the Unix epoch.
    pub internal_date: i64,
    pub targets: Vec<LocalTarget>,
    pub outbound: Option<Outbound>,
}

/// Where one copy of a delivered message was stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    /// The account, lowercased.
    pub account: String,
    pub folder_id: i64,
    pub folder: String,
    pub special: Option<SpecialUse>,
    pub uidvalidity: u32,
    pub uid: u32,
    pub modseq: u64,
}

/// The outcome of a [`Delivery`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    pub stored: Vec<StoredMessage>,
    /// The outbound queue entry, if the delivery had remote recipients.
    pub queued: Option<i64>,
}

/// A change of flags ([`MailStore::store_flags`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagOp {
    Add,
    Remove,
    Replace,
}

/// A message's flags after a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlagsChanged {
    pub uid: u32,
    pub flags: Flags,
    pub keywords: Vec<String>,
    pub modseq: u64,
}

/// One recipient waiting in the outbound queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedRecipient {
    /// The recipient's row: what delivery outcomes name.
    pub id: i64,
    /// The message's queue entry.
    pub queue_id: i64,
    pub sender: String,
    /// The submitting account, if any.
    pub account: Option<String>,
    pub recipient: String,
    /// Lowercased.
    pub domain: String,
    pub attempts: u32,
    /// When the message entered the queue (seconds since the Unix epoch).
    pub created_at: i64,
    /// When the next attempt is due.
    pub next_attempt: i64,
    pub last_error: Option<String>,
    /// Size of the message in bytes.
    pub size: u64,
}

/// Mailbox and outbound-queue persistence.
///
/// Account arguments match case-insensitively. A method that returns `Ok` after a write has made it durable.
pub trait MailStore: Send + Sync {
    /// The mailbox of `account`, `None` if there is no such account.
    fn mailbox(&self, account: &str) -> crate::Result<Option<Mailbox>>;

    /// Whether some account has an address at `domain` (any letter case): the default set of local mail
    /// domains.
    fn is_account_domain(&self, domain: &str) -> crate::Result<bool>;

    /// Every folder of `account` with its counts, the five standard ones first, the rest by name.
    /// [`StoreError::AccountNotFound`](crate::StoreError::AccountNotFound) if there is no such account.
    fn folders(&self, account: &str) -> crate::Result<Vec<Folder>>;

    /// One folder by name (`INBOX` in any letter case) with its counts.
    fn folder(&self, account: &str, name: &str) -> crate::Result<Option<Folder>>;

    /// Creates a user folder; [`StoreError::FolderExists`](crate::StoreError::FolderExists) if the name is taken.
    fn create_folder(&self, account: &str, name: &str) -> crate::Result<Folder>;

    /// Deletes a user folder and its messages; the standard folders cannot be deleted
    /// ([`StoreError::FolderProtected`](crate::StoreError::FolderProtected)).
    fn delete_folder(&self, account: &str, name: &str) -> crate::Result<()>;

    /// Renames a user folder, keeping its messages and UIDVALIDITY.
    fn rename_folder(&self, account: &str, from: &str, to: &str) -> crate::Result<()>;

    /// Marks a folder subscribed or not (IMAP `SUBSCRIBE`).
    fn set_subscribed(&self, account: &str, name: &str, subscribed: bool) -> crate::Result<()>;

    /// Sets an account's own quota (`None`: the configured default).
    fn set_quota(&self, account: &str, quota_bytes: Option<u64>) -> crate::Result<()>;

    /// Stores a batch of deliveries in one transaction, one fsync for all of them (group commit). Each delivery
    /// is all or nothing on its own: one that fails (an unknown account or folder,
    /// [`StoreError::OverQuota`](crate::StoreError::OverQuota) against `default_quota` for accounts without
    /// their own) leaves no trace and does not affect the others. The results are in the batch's order.
    fn deliver(
        &self,
        batch: &[Delivery],
        default_quota: u64,
    ) -> crate::Result<Vec<crate::Result<Delivered>>>;

    /// The messages of a folder in UID order.
    fn messages(&self, folder_id: i64) -> crate::Result<Vec<MessageMeta>>;

    /// One message's metadata, `None` if there is no such UID (any more): what a new-mail notice shows
    /// without reading the whole folder.
    fn message(&self, folder_id: i64, uid: u32) -> crate::Result<Option<MessageMeta>>;

    /// The raw bytes of one message, `None` if there is no such UID (any more).
    fn message_raw(&self, folder_id: i64, uid: u32) -> crate::Result<Option<Vec<u8>>>;

    /// A folder's `(UIDNEXT, HIGHESTMODSEQ)`, `None` if the folder is gone. Every change to the folder's
    /// messages (delivery, flags, expunge, copy, move) moves one of them, so an IMAP session compares this
    /// cheap pair before re-reading the folder.
    fn folder_version(&self, folder_id: i64) -> crate::Result<Option<(u32, u64)>>;

    /// What changed in a folder after mod-sequence `since`: the messages whose modseq is higher (new ones
    /// included) and the UIDs expunged after it, with the folder's `(UIDNEXT, HIGHESTMODSEQ)`, all from one
    /// snapshot; `None` if the folder is gone. Indexed on `(folder, modseq)`: the cost follows the number of
    /// changes, not the size of the folder.
    fn changes_since(&self, folder_id: i64, since: u64) -> crate::Result<Option<FolderChanges>>;

    /// UIDs expunged from a folder after mod-sequence `since` (QRESYNC's `VANISHED (EARLIER)`), ascending.
    fn expunged_since(&self, folder_id: i64, since: u64) -> crate::Result<Vec<u32>>;

    /// Takes the folder's recent messages below `uidnext` for one session (RFC 3501 §2.3.2): returns
    /// `(first, upto)`, the first recent UID before the call and the one it moved to, so the messages with
    /// UIDs in `first..upto` are `\Recent` for the caller and for no other session. `None` if the folder is
    /// gone. `uidnext` is the UIDNEXT of the snapshot the caller read its messages from: a message that
    /// arrived after it is left for whoever sees it first, not taken unseen.
    ///
    /// The claim is the process's own (RFC 9051 dropped `\Recent`; RFC 3501 makes it a matter of sessions):
    /// it costs no write and waits for no commit, and is written back along with the next delivery's
    /// commit. A claim lost with the process only makes messages recent once more.
    fn claim_recent(&self, folder_id: i64, uidnext: u32) -> crate::Result<Option<(u32, u32)>>;

    /// The folder `name` of `account` with its messages, and with `claim_recent` this session's `\Recent`
    /// claim ([`claim_recent`](MailStore::claim_recent)), all from one snapshot: what IMAP `SELECT` needs
    /// in one call. `None` if there is no such folder.
    fn select_folder(
        &self,
        account: &str,
        name: &str,
        claim_recent: bool,
    ) -> crate::Result<Option<SelectedFolder>>;

    /// The raw bytes of several messages of a folder, in the order of `uids` (`None` for a UID that names
    /// no message any more), read in one snapshot. With `header_only`, each is cut after its header block
    /// (the blank line that ends it included): all that `BODY[HEADER…]` and `ENVELOPE` need.
    fn messages_raw(
        &self,
        folder_id: i64,
        uids: &[u32],
        header_only: bool,
    ) -> crate::Result<Vec<Option<Vec<u8>>>>;

    /// The summaries of several messages of a folder, in the order of `uids` (`None` for a UID that names no
    /// message any more), read in one snapshot: what `SEARCH FROM`/`TO`/`SUBJECT`/`SENT…` match against.
    fn message_summaries(
        &self,
        folder_id: i64,
        uids: &[u32],
    ) -> crate::Result<Vec<Option<MessageSummary>>>;

    /// Makes a user folder a `\Noselect` placeholder (`true`: its messages are removed) or a real folder again
    /// (`false`). The standard folders cannot become placeholders.
    fn set_noselect(&self, account: &str, name: &str, noselect: bool) -> crate::Result<()>;

    /// Changes the flags and keywords of the given messages; each changed message takes the folder's next
    /// modification sequence. Returns the messages that exist, with their flags afterwards.
    fn store_flags(
        &self,
        folder_id: i64,
        uids: &[u32],
        op: FlagOp,
        flags: Flags,
        keywords: &[String],
    ) -> crate::Result<Vec<FlagsChanged>>;

    /// Removes the given messages for good, in one transaction. Returns the UIDs that were removed.
    fn expunge(&self, folder_id: i64, uids: &[u32]) -> crate::Result<Vec<u32>>;

    /// Copies messages into another folder of the same account (sharing their bytes), assigning new UIDs in
    /// the order given; with `remove_source` the originals are removed in the same transaction (IMAP `MOVE`).
    /// Returns `(source uid, new uid)` pairs and the destination's UIDVALIDITY.
    fn copy_messages(
        &self,
        from_folder: i64,
        uids: &[u32],
        to_folder: i64,
        remove_source: bool,
        default_quota: u64,
    ) -> crate::Result<(u32, Vec<(u32, u32)>)>;

    /// Queue entries whose next attempt is due at `now`, oldest first, at most `limit`.
    fn queue_due(&self, now: i64, limit: usize) -> crate::Result<Vec<QueuedRecipient>>;

    /// The whole queue, for `msgr mail queue`.
    fn queue_list(&self) -> crate::Result<Vec<QueuedRecipient>>;

    /// The raw bytes of a queued message.
    fn queue_message(&self, queue_id: i64) -> crate::Result<Option<Vec<u8>>>;

    /// These recipients were delivered: they leave the queue (and the message with its last recipient).
    fn queue_delivered(&self, recipient_ids: &[i64]) -> crate::Result<()>;

    /// A temporary failure: one more attempt is counted and the next is due at `next_attempt`.
    fn queue_deferred(
        &self,
        recipient_ids: &[i64],
        next_attempt: i64,
        error: &str,
    ) -> crate::Result<()>;

    /// A permanent failure (or expiry): the recipients leave the queue and, in the same transaction, the
    /// delivery status notification `dsn` (if any) is stored, so a crash can neither lose the notice nor send
    /// it twice.
    fn queue_failed(
        &self,
        recipient_ids: &[i64],
        dsn: Option<&Delivery>,
        default_quota: u64,
    ) -> crate::Result<()>;

    /// Makes every queued recipient due now; returns how many there are.
    fn queue_retry_now(&self, now: i64) -> crate::Result<u64>;
}
