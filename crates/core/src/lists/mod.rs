//! Contact lists: the four lists, groups, per-account settings and the rules for changing them.
//!
//! An account's whole list state is one [`ContactList`]: its contacts (each on any of the forward, allow, block
//! and reverse lists, and in any number of groups), its groups, its settings (`GTC`, `BLP`, phones, personal
//! message) and a version number that counts list-changing operations, so that a client whose cached version
//! equals the server's needs nothing resent at `SYN`.
//!
//! Changing a list is a two-step affair, so that nothing is half-done when the store fails:
//!
//! 1. An operation on `&ContactList` (see [`ContactList::add`] and its siblings in this module) checks the
//!    request against the protocol's rules and either refuses it with a [`ListError`] (an MSNP error code, or
//!    "disconnect the client") or returns the [`Change`]s that carry it out. It mutates nothing.
//! 2. The caller persists the changes (all of them in one transaction), then applies each one to its in-memory
//!    copies with [`ContactList::apply`], and tells the affected users.
//!
//! A change may belong to another account than the one that asked: when A adds B to the forward list, B's
//! reverse list gains A. Every [`Change`] therefore names its owner, and one request can yield changes for two
//! or more owners. Each change is one line a client would see (the reply, or an asynchronous `ADD 0 RL …`), and
//! each change bumps its owner's list version by one (except [`ChangeKind::SetPersonalMessage`], which is not
//! list data), so versions match what the official service counted.
//!
//! Invariant kept by these operations: B is on A's reverse list exactly when A is on B's forward list.

mod map;
mod names;
mod ops;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use msgr_proto::ErrorCode;

pub use map::{ContactMap, GroupMap, Keyed, SortedMap};
pub use names::{Name, Names};
pub use ops::{AddRequest, ExclusiveMembers};

/// The name the service gives group 0, which every account has and cannot remove.
pub const DEFAULT_GROUP_NAME: &str = "Other Contacts";

/// One of the four contact lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum List {
    /// `FL`: the people whose presence the owner follows (the visible "contact list").
    Forward,
    /// `AL`: the people explicitly allowed to see the owner's presence and to contact them.
    Allow,
    /// `BL`: the people explicitly blocked; they see the owner as offline and cannot contact them.
    Block,
    /// `RL`: the people who have the owner on their forward list. Only the server changes it.
    Reverse,
}

impl List {
    /// All four lists, in bit order.
    pub const ALL: [List; 4] = [List::Forward, List::Allow, List::Block, List::Reverse];

    /// The token used on the wire (`FL`, `AL`, `BL`, `RL`).
    pub const fn token(self) -> &'static str {
        match self {
            List::Forward => "FL",
            List::Allow => "AL",
            List::Block => "BL",
            List::Reverse => "RL",
        }
    }

    /// The list a wire token names; tokens are case-sensitive, as clients always send them upper-case.
    pub fn from_token(token: &str) -> Option<List> {
        List::ALL.into_iter().find(|l| l.token() == token)
    }

    /// The list's bit in the `LST` list mask of MSNP8 and later: FL=1, AL=2, BL=4, RL=8.
    pub const fn bit(self) -> u8 {
        match self {
            List::Forward => 1,
            List::Allow => 2,
            List::Block => 4,
            List::Reverse => 8,
        }
    }
}

impl fmt::Display for List {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.token())
    }
}

/// A set of lists, held as the `LST` bit mask.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ListSet(u8);

impl ListSet {
    /// No list at all.
    pub const EMPTY: ListSet = ListSet(0);

    /// Every bit a valid mask may have.
    const ALL_BITS: u8 = 0b1111;

    /// The set holding just `list`.
    pub const fn only(list: List) -> ListSet {
        ListSet(list.bit())
    }

    /// The set with the given mask, or `None` if it has bits that name no list.
    pub const fn from_bits(bits: u8) -> Option<ListSet> {
        if bits & !Self::ALL_BITS == 0 {
            Some(ListSet(bits))
        } else {
            None
        }
    }

    /// The mask, as sent in `LST`.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether `list` is in the set.
    pub const fn contains(self, list: List) -> bool {
        self.0 & list.bit() != 0
    }

    /// Adds `list`; returns whether it was absent.
    pub fn insert(&mut self, list: List) -> bool {
        let absent = !self.contains(list);
        self.0 |= list.bit();
        absent
    }

    /// Removes `list`; returns whether it was present.
    pub fn remove(&mut self, list: List) -> bool {
        let present = self.contains(list);
        self.0 &= !list.bit();
        present
    }

    /// Whether the set holds no list.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The lists in the set, in bit order.
    pub fn iter(self) -> impl Iterator<Item = List> {
        List::ALL.into_iter().filter(move |l| self.contains(*l))
    }
}

impl fmt::Debug for ListSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl FromIterator<List> for ListSet {
    fn from_iter<I: IntoIterator<Item = List>>(iter: I) -> Self {
        let mut set = ListSet::EMPTY;
        for l in iter {
            set.insert(l);
        }
        set
    }
}

/// A GUID, shown in the lowercase `8-4-4-4-12` hex form that MSNP10 and later use for contacts (`C=`) and groups.
///
/// Kept as its 16 bytes: every contact of every online user carries one, and the 36 characters of its text would
/// cost more than twice that. The text is made when a line is written ([`Guid::text`]). Parsing accepts either
/// letter case and lowercase is the only form ever shown, so nothing a client sees depends on how it is kept;
/// bytes and text sort alike.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Guid([u8; 16]);

/// A string that is not a GUID of the form `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a GUID of the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx")]
pub struct GuidError;

/// Whether a GUID's text has a dash at `i`.
const fn is_dash_at(i: usize) -> bool {
    matches!(i, 8 | 13 | 18 | 23)
}

impl Guid {
    /// A fresh random (version 4) GUID.
    pub fn random() -> Guid {
        let mut bytes: [u8; 16] = rand::random();
        // Version 4 and the RFC 4122 variant, so the value is a well-formed random UUID to any client that looks.
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Guid::from_bytes(bytes)
    }

    /// The GUID whose text shows these 16 bytes in order.
    pub const fn from_bytes(bytes: [u8; 16]) -> Guid {
        Guid(bytes)
    }

    /// Parses a GUID, accepting either letter case.
    pub fn parse(s: &str) -> Result<Guid, GuidError> {
        let text = s.as_bytes();
        if text.len() != 36
            || text
                .iter()
                .enumerate()
                .any(|(i, c)| is_dash_at(i) != (*c == b'-'))
        {
            return Err(GuidError);
        }
        let mut digits = text.iter().filter(|c| **c != b'-').map(|c| hex_value(*c));
        let mut bytes = [0u8; 16];
        for byte in &mut bytes {
            match (digits.next(), digits.next()) {
                (Some(Some(hi)), Some(Some(lo))) => *byte = (hi << 4) | lo,
                _ => return Err(GuidError),
            }
        }
        Ok(Guid(bytes))
    }

    /// The lowercase text form, made on the stack.
    pub fn text(&self) -> GuidText {
        let mut text = [b'-'; 36];
        let mut at = 0;
        for b in self.0 {
            if is_dash_at(at) {
                at += 1;
            }
            text[at] = HEX_LOWER[usize::from(b >> 4)];
            text[at + 1] = HEX_LOWER[usize::from(b & 0x0f)];
            at += 2;
        }
        GuidText(text)
    }
}

const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";

/// The value of one hex digit of either case.
const fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// A [`Guid`]'s 36 characters of text, to write into a line; dereferences to `&str`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct GuidText([u8; 36]);

impl GuidText {
    pub fn as_str(&self) -> &str {
        // Only `Guid::text` builds one, from ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::ops::Deref for GuidText {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for GuidText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for GuidText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({})", self.text())
    }
}

impl FromStr for Guid {
    type Err = GuidError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Guid::parse(s)
    }
}

/// Group ids below this are bits of a [`Contact`]; that covers every id the default limits allow
/// (`max_groups` 30).
const GROUP_BITS: u32 = u32::BITS;

/// One person on the owner's lists.
///
/// Every online user holds one of these per contact, so its size is most of what a contact costs an online
/// user: 48 bytes (`contact_stays_small` guards it). The two names are shared strings, so that every online
/// list naming the same person holds one copy of the text ([`Names`]); nothing here depends on whether they
/// are shared. The GUID is kept as its bytes, and the groups as a bit set of the ids below 32 with a heap set
/// for higher ids, which only a `max_groups` above the default gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    /// The contact's Passport name, lowercased; also the key in [`ContactList::contacts`].
    pub email: Name,
    /// The name the owner stores for the contact (the custom name of `ADD`/`ADC … F=`), decoded. For entries
    /// made by the server (the reverse list) it is the contact's display name when they added the owner.
    pub nickname: Name,
    /// The lists the contact is on; never empty (a contact on no list is deleted).
    pub lists: ListSet,
    /// The contact's id for MSNP10+ (`C=`), stable for as long as the contact is on any of the owner's lists.
    pub guid: Guid,
    /// The groups with ids below [`GROUP_BITS`]: bit `id` for group `id`.
    group_bits: u32,
    /// The groups with higher ids; `None` when there are none, so that equal sets compare equal. Boxed so that
    /// the rare set costs every other entry one word rather than the three of a `BTreeSet`.
    #[allow(clippy::box_collection)]
    more_groups: Option<Box<BTreeSet<u32>>>,
}

impl Contact {
    /// An entry in no group.
    pub fn new(email: Name, nickname: Name, lists: ListSet, guid: Guid) -> Contact {
        Contact {
            email,
            nickname,
            lists,
            guid,
            group_bits: 0,
            more_groups: None,
        }
    }

    /// The owner's groups the contact is in. Only meaningful on the forward list; empty means "no group", which
    /// MSNP10+ shows as such and MSNP7–9 presenters show as group 0.
    pub fn groups(&self) -> Groups<'_> {
        Groups {
            bits: self.group_bits,
            more: self.more_groups.as_deref(),
        }
    }

    /// Puts the contact in group `id`; returns whether it was not there yet.
    pub fn join_group(&mut self, id: u32) -> bool {
        if id < GROUP_BITS {
            let absent = self.group_bits & (1 << id) == 0;
            self.group_bits |= 1 << id;
            absent
        } else {
            self.more_groups.get_or_insert_default().insert(id)
        }
    }

    /// Takes the contact out of group `id`; returns whether it was there.
    pub fn leave_group(&mut self, id: u32) -> bool {
        if id < GROUP_BITS {
            let present = self.group_bits & (1 << id) != 0;
            self.group_bits &= !(1 << id);
            present
        } else {
            let Some(more) = &mut self.more_groups else {
                return false;
            };
            let present = more.remove(&id);
            if more.is_empty() {
                self.more_groups = None;
            }
            present
        }
    }

    /// Takes the contact out of every group.
    pub fn leave_all_groups(&mut self) {
        self.group_bits = 0;
        self.more_groups = None;
    }
}

/// The groups one [`Contact`] is in, in ascending order of id.
#[derive(Clone, Copy, Debug)]
pub struct Groups<'a> {
    bits: u32,
    more: Option<&'a BTreeSet<u32>>,
}

impl<'a> Groups<'a> {
    pub fn contains(&self, id: u32) -> bool {
        if id < GROUP_BITS {
            self.bits & (1 << id) != 0
        } else {
            self.more.is_some_and(|m| m.contains(&id))
        }
    }

    pub fn is_empty(&self) -> bool {
        self.bits == 0 && self.more.is_none()
    }

    pub fn len(&self) -> usize {
        self.bits.count_ones() as usize + self.more.map_or(0, BTreeSet::len)
    }

    /// The ids, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + 'a {
        let bits = self.bits;
        (0..GROUP_BITS)
            .filter(move |id| bits & (1 << id) != 0)
            .chain(self.more.into_iter().flatten().copied())
    }
}

/// One of the owner's contact groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// The numeric id MSNP7–9 use; group 0 always exists.
    pub id: u32,
    /// The id MSNP10+ use.
    pub guid: Guid,
    /// The name, decoded.
    pub name: String,
}

/// `GTC`: what the owner's client does when someone adds the owner to their forward list (the newcomer lands on
/// the owner's reverse list but on neither the allow nor the block list).
///
/// The server only stores this and reports it at `SYN`: acting on it is the client's job. The public protocol
/// documentation describes the setting as how "your client handles new users" on the reverse list, and the
/// official clients answered a reverse-list addition themselves (a prompt for `A`, an `ADD AL` of their own for
/// `N`). Having the server add to the allow list as well would make a client that asks see the newcomer already
/// allowed before the user chose.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Gtc {
    /// `A`: ask the user whether to allow or block the newcomer. The official default.
    #[default]
    Ask,
    /// `N`: do not ask; the client allows the newcomer itself.
    DontAsk,
}

impl Gtc {
    /// The wire token.
    pub const fn token(self) -> &'static str {
        match self {
            Gtc::Ask => "A",
            Gtc::DontAsk => "N",
        }
    }

    /// The setting a wire token names.
    pub fn from_token(token: &str) -> Option<Gtc> {
        match token {
            "A" => Some(Gtc::Ask),
            "N" => Some(Gtc::DontAsk),
            _ => None,
        }
    }
}

/// `BLP`: what happens to someone who is on neither the allow nor the block list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Blp {
    /// `AL`: treat them as allowed. The official default.
    #[default]
    Allow,
    /// `BL`: treat them as blocked.
    Block,
}

impl Blp {
    /// The wire token.
    pub const fn token(self) -> &'static str {
        match self {
            Blp::Allow => "AL",
            Blp::Block => "BL",
        }
    }

    /// The setting a wire token names.
    pub fn from_token(token: &str) -> Option<Blp> {
        match token {
            "AL" => Some(Blp::Allow),
            "BL" => Some(Blp::Block),
            _ => None,
        }
    }
}

/// A personal property set with `PRP` and shown to contacts with `BPR`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Property {
    /// `PHH`: home phone number.
    HomePhone,
    /// `PHW`: work phone number.
    WorkPhone,
    /// `PHM`: mobile phone number.
    MobilePhone,
    /// `MOB`: `Y` if contacts may page the owner's mobile device through MSN Mobile.
    MobileContact,
    /// `MBE`: `Y` if the owner has MSN Mobile set up. Set by the service, not by clients.
    MobileEnabled,
}

impl Property {
    /// All properties, in the order `SYN` lists them.
    pub const ALL: [Property; 5] = [
        Property::HomePhone,
        Property::WorkPhone,
        Property::MobilePhone,
        Property::MobileContact,
        Property::MobileEnabled,
    ];

    /// The wire token.
    pub const fn token(self) -> &'static str {
        match self {
            Property::HomePhone => "PHH",
            Property::WorkPhone => "PHW",
            Property::MobilePhone => "PHM",
            Property::MobileContact => "MOB",
            Property::MobileEnabled => "MBE",
        }
    }

    /// The property a wire token names.
    pub fn from_token(token: &str) -> Option<Property> {
        Property::ALL.into_iter().find(|p| p.token() == token)
    }

    /// The property a client may set with `PRP`; `None` for unknown tokens and for `MBE`, which only the service
    /// sets (the documented reply to a property a client may not set is 715).
    pub fn from_client_token(token: &str) -> Option<Property> {
        Property::from_token(token).filter(|p| *p != Property::MobileEnabled)
    }

    /// Whether the value is a `Y`/`N` flag rather than free text.
    pub const fn is_flag(self) -> bool {
        matches!(self, Property::MobileContact | Property::MobileEnabled)
    }
}

/// The owner's phone numbers and mobile flags.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Phones {
    /// `PHH`, decoded.
    pub home: Option<String>,
    /// `PHW`, decoded.
    pub work: Option<String>,
    /// `PHM`, decoded.
    pub mobile: Option<String>,
    /// `MOB` (`Y` = true).
    pub mobile_contact: bool,
    /// `MBE` (`Y` = true).
    pub mobile_enabled: bool,
}

impl Phones {
    /// The value of `property` as it is sent on the wire (decoded): the number, `Y`/`N`, or `None` when unset.
    pub fn get(&self, property: Property) -> Option<&str> {
        let flag = |on: bool| Some(if on { "Y" } else { "N" });
        match property {
            Property::HomePhone => self.home.as_deref(),
            Property::WorkPhone => self.work.as_deref(),
            Property::MobilePhone => self.mobile.as_deref(),
            Property::MobileContact => flag(self.mobile_contact),
            Property::MobileEnabled => flag(self.mobile_enabled),
        }
    }

    /// Sets `property` from an already validated value (`Y` means true for flags; anything else false).
    fn set(&mut self, property: Property, value: Option<&str>) {
        let text = value.map(str::to_owned);
        let flag = value == Some("Y");
        match property {
            Property::HomePhone => self.home = text,
            Property::WorkPhone => self.work = text,
            Property::MobilePhone => self.mobile = text,
            Property::MobileContact => self.mobile_contact = flag,
            Property::MobileEnabled => self.mobile_enabled = flag,
        }
    }
}

/// The owner's list-related settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// `GTC`; defaults to `A` as on the official service.
    pub gtc: Gtc,
    /// `BLP`; defaults to `AL` as on the official service.
    pub blp: Blp,
    /// `PRP` phone numbers and mobile flags; all unset (flags `N`) by default.
    pub phones: Phones,
    /// The `UUX` payload (MSNP11+ personal message XML), stored verbatim and sent to watchers as `UBX`.
    pub personal_message: Option<String>,
}

/// Sizes and counts the service enforces, all configurable.
///
/// Defaults are the official service's where it published or was observed to enforce one; see each field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most contacts on the forward list; more gets 210. Default 600, the figure MSNPiki's error list gives for
    /// October 2005 (the MSNP11/12 era). The same page recorded 150 in March 2003 (doubled from 75) and the
    /// MSNP8/9 `ADD` page 300; a larger list does not trouble older clients, so the latest figure serves all
    /// dialects.
    pub max_forward: usize,
    /// Most entries on the reverse list; adding someone whose reverse list is full gets 210. Default 1000, from
    /// the same October 2005 figure.
    pub max_reverse: usize,
    /// Most entries on the allow list, and separately on the block list. No figure was ever published; default
    /// 1000, the reverse-list cap, because these lists mostly mirror the reverse list.
    pub max_allow_block: usize,
    /// Most groups, counting group 0; `ADG` beyond it gets 223, and group ids run from 0 to this minus one.
    /// Default 30, as documented for `ADG`.
    pub max_groups: usize,
    /// Longest group name, in bytes once URL-encoded as clients send it; longer gets 229. Default 61, as
    /// documented for `ADG`.
    pub max_group_name_bytes: usize,
    /// Longest phone number (`PHH`/`PHW`/`PHM`), in bytes once URL-encoded; the official server disconnected a
    /// client that sent a longer one. Default 95, as documented for `PRP`.
    pub max_phone_bytes: usize,
    /// Longest `UUX` payload kept, in bytes; longer gets 201. No official figure: this is msgr's own cap so that
    /// one account cannot make every watcher's `UBX` arbitrarily large. Default 4096, several times what the
    /// official clients sent (a 129-character message, current media and a machine GUID, XML-escaped).
    pub max_personal_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_forward: 600,
            max_reverse: 1000,
            max_allow_block: 1000,
            max_groups: 30,
            max_group_name_bytes: 61,
            max_phone_bytes: 95,
            max_personal_message_bytes: 4096,
        }
    }
}

/// Why a list operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    /// Reply with this error code (`<code> <TrID>`); the connection stays up.
    #[error("refused with MSNP error {0}")]
    Reply(ErrorCode),
    /// The official server closed the connection without a reply for this request (for example a client that
    /// tries to edit its reverse list); do the same.
    #[error("protocol violation, disconnect the client: {0}")]
    Disconnect(&'static str),
}

impl ListError {
    /// The error code to reply with, or `None` for [`ListError::Disconnect`].
    pub const fn code(self) -> Option<ErrorCode> {
        match self {
            ListError::Reply(code) => Some(code),
            ListError::Disconnect(_) => None,
        }
    }
}

impl From<ErrorCode> for ListError {
    fn from(code: ErrorCode) -> Self {
        ListError::Reply(code)
    }
}

/// One change to one account's list state, as decided by an operation and to be persisted and applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The account whose state changes, lowercased.
    pub owner: String,
    /// What changes.
    pub kind: ChangeKind,
}

/// What a [`Change`] does. Each variant is what one protocol line (a reply or an asynchronous notice) reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// `email` joins `list`. If the owner had no entry for `email`, one is created with `nickname` and `guid`;
    /// otherwise `guid` is unused and `nickname` replaces the stored one only when `list` is the forward list
    /// (the name given to `ADD FL` is the one the owner wants to see). `group`, only ever set for the forward
    /// list, is joined as well.
    AddToList {
        /// The contact, lowercased.
        email: String,
        /// The list joined.
        list: List,
        /// The stored name (see above).
        nickname: String,
        /// The contact id if the entry is new.
        guid: Guid,
        /// A group joined at the same time.
        group: Option<u32>,
    },
    /// `email` leaves `list`; leaving the forward list also leaves every group. An entry on no list is deleted.
    RemoveFromList {
        /// The contact, lowercased.
        email: String,
        /// The list left.
        list: List,
    },
    /// A forward-list contact joins another group.
    AddToGroup {
        /// The contact, lowercased.
        email: String,
        /// The group joined.
        group: u32,
    },
    /// A forward-list contact leaves one group and stays on the forward list.
    RemoveFromGroup {
        /// The contact, lowercased.
        email: String,
        /// The group left.
        group: u32,
    },
    /// A new group.
    AddGroup {
        /// Its numeric id.
        id: u32,
        /// Its GUID.
        guid: Guid,
        /// Its name, decoded.
        name: String,
    },
    /// A group gets a new name.
    RenameGroup {
        /// The group.
        id: u32,
        /// The new name, decoded.
        name: String,
    },
    /// A group disappears and every contact leaves it; the contacts in `dropped` (those for whom it was the only
    /// group, when the operation chose so) also leave the forward list, as with [`ChangeKind::RemoveFromList`].
    RemoveGroup {
        /// The group.
        id: u32,
        /// Contacts that leave the forward list with it, lowercased.
        dropped: Vec<String>,
    },
    /// New `GTC`.
    SetGtc(Gtc),
    /// New `BLP`.
    SetBlp(Blp),
    /// New `PRP` value; `None` unsets a phone number (flags become `N`).
    SetProperty(Property, Option<String>),
    /// The owner's own display name (`REA` of oneself in MSNP2–9, `PRP MFN` in MSNP10+), decoded.
    SetDisplayName(String),
    /// The name the owner stores for a forward-list contact (`REA` of a contact, `SBP … MFN`), decoded.
    SetContactNickname {
        /// The contact, lowercased.
        email: String,
        /// The new stored name.
        nickname: String,
    },
    /// New `UUX` payload, or none.
    SetPersonalMessage(Option<String>),
}

impl ChangeKind {
    /// Whether the change counts as a list change and bumps the owner's list version.
    ///
    /// Everything the official service answered with a new list version does; the MSNP11 personal message
    /// (`UUX`) never carried a list version and is not part of `SYN`'s list data.
    pub const fn bumps_version(&self) -> bool {
        !matches!(self, ChangeKind::SetPersonalMessage(_))
    }
}

/// The whole list state of one account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactList {
    /// The account, lowercased.
    pub owner: String,
    /// The list version: how many list-changing operations the account has seen.
    pub version: u64,
    /// Every contact on any list, keyed by lowercased Passport name.
    pub contacts: ContactMap,
    /// Every group, keyed by numeric id; group 0 is always present.
    pub groups: GroupMap,
    /// `GTC`, `BLP`, phones, personal message.
    pub settings: Settings,
}

impl ContactList {
    /// The state of an account that has never changed anything: version 0, no contacts, only group 0 (named
    /// [`DEFAULT_GROUP_NAME`], with the given GUID) and default settings.
    pub fn new(owner: &str, group_zero: Guid) -> ContactList {
        let mut groups = GroupMap::new();
        groups.insert(Group {
            id: 0,
            guid: group_zero,
            name: DEFAULT_GROUP_NAME.to_owned(),
        });
        ContactList {
            owner: owner.to_ascii_lowercase(),
            version: 0,
            contacts: ContactMap::new(),
            groups,
            settings: Settings::default(),
        }
    }

    /// The entry for `email` (matched without regard to letter case), if it is on any list.
    pub fn contact(&self, email: &str) -> Option<&Contact> {
        if email.bytes().any(|b| b.is_ascii_uppercase()) {
            self.contacts.get(&email.to_ascii_lowercase())
        } else {
            self.contacts.get(email)
        }
    }

    /// Whether `email` is on `list`.
    pub fn is_on(&self, email: &str, list: List) -> bool {
        self.contact(email).is_some_and(|c| c.lists.contains(list))
    }

    /// The contacts on `list`, ordered by Passport name.
    pub fn members(&self, list: List) -> impl Iterator<Item = &Contact> {
        self.contacts
            .values()
            .filter(move |c| c.lists.contains(list))
    }

    /// How many contacts are on `list`.
    pub fn count(&self, list: List) -> usize {
        self.members(list).count()
    }

    /// The contact whose MSNP10+ id is `guid`.
    pub fn contact_by_guid(&self, guid: &Guid) -> Option<&Contact> {
        self.contacts.values().find(|c| &c.guid == guid)
    }

    /// The group whose MSNP10+ id is `guid`.
    pub fn group_by_guid(&self, guid: &Guid) -> Option<&Group> {
        self.groups.values().find(|g| &g.guid == guid)
    }

    /// Applies `change` to this copy if it belongs to this owner, bumping the version as the store does; returns
    /// whether it did. Changes for other owners are ignored, so a caller can feed every change of an operation
    /// to every copy it holds.
    ///
    /// Applying is total: a change that no longer fits (say, removing a contact that is already gone) changes
    /// nothing but the version, exactly like the store, so the two never disagree.
    pub fn apply(&mut self, change: &Change) -> bool {
        if change.owner != self.owner {
            return false;
        }
        match &change.kind {
            ChangeKind::AddToList {
                email,
                list,
                nickname,
                guid,
                group,
            } => {
                let contact = self.contacts.get_or_insert_with(email, || {
                    let (email, nickname) = Names::global().contact(email, nickname);
                    Contact::new(email, nickname, ListSet::EMPTY, *guid)
                });
                contact.lists.insert(*list);
                if *list == List::Forward && *contact.nickname != **nickname {
                    contact.nickname = Names::global().intern(nickname);
                }
                // Membership needs the group to exist, as the store's foreign key demands.
                if let Some(g) = group.filter(|g| self.groups.contains_key(g)) {
                    contact.join_group(g);
                }
            }
            ChangeKind::RemoveFromList { email, list } => self.remove_from_list(email, *list),
            ChangeKind::AddToGroup { email, group } => {
                if self.groups.contains_key(group) {
                    if let Some(c) = self.contacts.get_mut(email) {
                        c.join_group(*group);
                    }
                }
            }
            ChangeKind::RemoveFromGroup { email, group } => {
                if let Some(c) = self.contacts.get_mut(email) {
                    c.leave_group(*group);
                }
            }
            ChangeKind::AddGroup { id, guid, name } => {
                self.groups.insert(Group {
                    id: *id,
                    guid: *guid,
                    name: name.clone(),
                });
            }
            ChangeKind::RenameGroup { id, name } => {
                if let Some(g) = self.groups.get_mut(id) {
                    g.name.clone_from(name);
                }
            }
            ChangeKind::RemoveGroup { id, dropped } => {
                for email in dropped {
                    self.remove_from_list(email, List::Forward);
                }
                for c in self.contacts.values_mut() {
                    c.leave_group(*id);
                }
                self.groups.remove(id);
            }
            ChangeKind::SetGtc(gtc) => self.settings.gtc = *gtc,
            ChangeKind::SetBlp(blp) => self.settings.blp = *blp,
            ChangeKind::SetProperty(property, value) => {
                self.settings.phones.set(*property, value.as_deref());
            }
            // The display name lives with the account, not in the list state; only the version moves here.
            ChangeKind::SetDisplayName(_) => {}
            ChangeKind::SetContactNickname { email, nickname } => {
                if let Some(c) = self.contacts.get_mut(email) {
                    c.nickname = Names::global().intern(nickname);
                }
            }
            ChangeKind::SetPersonalMessage(psm) => {
                self.settings.personal_message.clone_from(psm);
            }
        }
        if change.kind.bumps_version() {
            self.version = self.version.saturating_add(1);
        }
        true
    }

    fn remove_from_list(&mut self, email: &str, list: List) {
        let Some(c) = self.contacts.get_mut(email) else {
            return;
        };
        c.lists.remove(list);
        if list == List::Forward {
            c.leave_all_groups();
        }
        if c.lists.is_empty() {
            self.contacts.remove(email);
        }
    }
}
