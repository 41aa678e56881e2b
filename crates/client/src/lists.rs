//! The local copy of the four lists and the groups, with the version the server gave them, so
//! that `SYN` with an unchanged version downloads nothing.
//!
//! The cache is plain data the caller may keep between runs ([`ListCache::save`] /
//! [`ListCache::load`], TOML). It is only ever trusted together with its version: a change this
//! client cannot number (MSNP10+ replies carry no version) marks the cache stale, so the next
//! `SYN` downloads the whole list again rather than trusting a copy that may differ.
//!
//! | dialect | `SYN` sent | lines that fill the cache |
//! |---|---|---|
//! | MSNP2–MSNP7 | `SYN t ver` | `GTC t ver A`, `BLP t ver AL`, `PRP t ver P v`, `LSG t ver i n id name 0`, `LST t L ver i n email nick [groups]` |
//! | MSNP8–MSNP9 | `SYN t ver` | `SYN t ver nc ng`, then `GTC A`, `BLP AL`, `PRP P v`, `LSG id name 0`, `LST email nick bits [groups]` |
//! | MSNP10–MSNP12 | `SYN t ver ver` | `SYN t ver ver nc ng`, then `GTC`, `BLP`, `PRP`, `LSG name guid`, `LST N=email F=nick C=guid bits [groups]` (MSNP12: `bits 1 [groups]`, the network) |

use crate::error::ClientError;
use msgr_proto::frame::Frame;
use msgr_proto::{urlenc, Dialect};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// One of the four lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum List {
    /// Forward list: the contacts the user watches.
    Forward,
    /// Allow list: who may see the user and talk to them.
    Allow,
    /// Block list: who may not.
    Block,
    /// Reverse list: who has the user on their forward list (read-only).
    Reverse,
}

impl List {
    pub const ALL: [List; 4] = [List::Forward, List::Allow, List::Block, List::Reverse];

    pub fn token(self) -> &'static str {
        match self {
            List::Forward => "FL",
            List::Allow => "AL",
            List::Block => "BL",
            List::Reverse => "RL",
        }
    }

    pub fn from_token(t: &str) -> Option<List> {
        List::ALL.into_iter().find(|l| l.token() == t)
    }

    /// The list's bit in an `LST` mask (FL=1 AL=2 BL=4 RL=8).
    pub fn bit(self) -> u8 {
        match self {
            List::Forward => 1,
            List::Allow => 2,
            List::Block => 4,
            List::Reverse => 8,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub email: String,
    /// Display name as the server last gave it (URL-decoded).
    pub name: String,
    /// List bits (see [`List::bit`]).
    pub lists: u8,
    /// Group ids (MSNP7–9) or GUIDs (MSNP10+).
    pub groups: Vec<String>,
    /// The contact's GUID (MSNP10+ forward list), which `REM FL` needs.
    pub guid: Option<String>,
}

impl Contact {
    pub fn on(&self, list: List) -> bool {
        self.lists & list.bit() != 0
    }
}

/// The three shapes list data has had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Generation {
    /// MSNP2–MSNP7: one `LST` per list entry, with TrIDs and versions.
    Iterated,
    /// MSNP8–MSNP9: counts on `SYN`, one `LST` per contact with its mask.
    Counted,
    /// MSNP10–MSNP12: GUIDs and `N=`/`F=`/`C=` parameters.
    Guids,
}

impl Generation {
    pub fn of(dialect: Dialect) -> Generation {
        if dialect < Dialect::Msnp8 {
            Generation::Iterated
        } else if dialect < Dialect::Msnp10 {
            Generation::Counted
        } else {
            Generation::Guids
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListCache {
    /// Whose lists these are; a cache for another account is never used.
    pub owner: String,
    /// The shape the cache was filled in; ids differ between shapes.
    pub generation: Option<Generation>,
    /// The list version the contents match ("0": nothing trusted).
    pub version: String,
    pub contacts: BTreeMap<String, Contact>,
    /// Group id or GUID → name.
    pub groups: BTreeMap<String, String>,
    /// `BLP`: `AL` (everyone may see me unless blocked) or `BL` (only the allow list).
    pub blp: Option<String>,
    /// `GTC`: `A` (ask me when someone adds me) or `N`.
    pub gtc: Option<String>,
    /// The user's own display name, when the list data carried it (`PRP MFN`).
    pub display_name: Option<String>,
}

/// A change to the lists, as the server reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListChange {
    Added {
        list: List,
        email: String,
        name: String,
    },
    Removed {
        list: List,
        email: String,
    },
    AddedToGroup {
        email: String,
        group: String,
    },
    RemovedFromGroup {
        email: String,
        group: String,
    },
    GroupAdded {
        id: String,
        name: String,
    },
    GroupRemoved {
        id: String,
    },
    GroupRenamed {
        id: String,
        name: String,
    },
    Privacy {
        blp: Option<String>,
        gtc: Option<String>,
    },
    /// The list data was replaced by a full `SYN`.
    Synced,
}

/// Where a `SYN` download stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SyncProgress {
    /// Waiting for the `SYN` reply.
    Requested,
    /// Counted lines still to come.
    Receiving {
        contacts: usize,
        groups: usize,
    },
    /// MSNP2–7: until `LST … RL` i of n with i = n.
    ReceivingIterated,
    Done,
}

fn decode(s: &str) -> String {
    urlenc::decode(s).map_or_else(|_| s.to_owned(), |c| c.into_owned())
}

fn split_groups(s: Option<&&str>) -> Vec<String> {
    s.map(|g| {
        g.split(',')
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect()
    })
    .unwrap_or_default()
}

impl ListCache {
    pub fn new(owner: &str) -> ListCache {
        ListCache {
            owner: owner.to_owned(),
            version: "0".into(),
            ..Default::default()
        }
    }

    pub fn load(path: &Path) -> Result<ListCache, ClientError> {
        let text = std::fs::read_to_string(path)?;
        toml::from_str(&text)
            .map_err(|e| ClientError::InvalidArgument(format!("{}: {e}", path.display())))
    }

    pub fn save(&self, path: &Path) -> Result<(), ClientError> {
        let text = toml::to_string(self)
            .map_err(|e| ClientError::InvalidArgument(format!("list cache: {e}")))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    /// Contacts on `list`, by e-mail.
    pub fn on(&self, list: List) -> impl Iterator<Item = &Contact> {
        self.contacts.values().filter(move |c| c.on(list))
    }

    /// The forward-list contacts in group `id` (or in no group, for `None`).
    pub fn in_group<'a>(&'a self, id: Option<&'a str>) -> impl Iterator<Item = &'a Contact> {
        self.on(List::Forward).filter(move |c| match id {
            Some(g) => c.groups.iter().any(|x| x == g),
            None => c.groups.is_empty() || c.groups.iter().all(|g| g == "0"),
        })
    }

    /// The group id with this name.
    pub fn group_id(&self, name: &str) -> Option<&str> {
        self.groups
            .iter()
            .find(|(_, n)| n.as_str() == name)
            .map(|(id, _)| id.as_str())
    }

    /// The version to name in `SYN` for `dialect`: ours if the cache fits, else "0".
    pub(crate) fn syn_version(&self, owner: &str, dialect: Dialect) -> &str {
        if self.owner.eq_ignore_ascii_case(owner)
            && self.generation == Some(Generation::of(dialect))
        {
            &self.version
        } else {
            "0"
        }
    }

    fn reset(&mut self, owner: &str, generation: Generation, version: &str) {
        *self = ListCache {
            owner: owner.to_owned(),
            generation: Some(generation),
            version: version.to_owned(),
            ..Default::default()
        };
    }

    /// A change carrying version `ver` was applied: follow it if it is the next one, else
    /// stop trusting the cache.
    fn bump(&mut self, ver: &str) {
        let next = self.version.parse::<u64>().ok().map(|v| v + 1);
        if ver.parse::<u64>().ok() == next {
            ver.clone_into(&mut self.version);
        } else {
            self.version = "0".into();
        }
    }

    fn contact(&mut self, email: &str) -> &mut Contact {
        self.contacts
            .entry(email.to_ascii_lowercase())
            .or_insert_with(|| Contact {
                email: email.to_owned(),
                name: email.to_owned(),
                ..Default::default()
            })
    }

    fn drop_empty(&mut self, email: &str) {
        let key = email.to_ascii_lowercase();
        if self.contacts.get(&key).is_some_and(|c| c.lists == 0) {
            self.contacts.remove(&key);
        }
    }

    fn email_of_guid(&self, guid: &str) -> Option<String> {
        self.contacts
            .values()
            .find(|c| c.guid.as_deref() == Some(guid))
            .map(|c| c.email.clone())
    }

    /// The `SYN` reply. Returns how the download continues.
    pub(crate) fn on_syn(
        &mut self,
        owner: &str,
        dialect: Dialect,
        frame: &Frame,
    ) -> Result<SyncProgress, ClientError> {
        let gen = Generation::of(dialect);
        let p = frame.params();
        let ours = self.syn_version(owner, dialect).to_owned();
        let bad = || ClientError::protocol("SYN reply", frame.line());
        let ver = *p.first().ok_or_else(bad)?;
        let counts = match gen {
            Generation::Iterated => None,
            Generation::Counted => p.get(1..3),
            Generation::Guids => p.get(2..4),
        };
        if ver == ours && counts.is_none() {
            if self.generation.is_none() {
                // "0" both sides: an empty list, now known to be current.
                self.reset(owner, gen, ver);
            }
            return Ok(SyncProgress::Done);
        }
        self.reset(owner, gen, ver);
        match (gen, counts) {
            (Generation::Iterated, _) => Ok(SyncProgress::ReceivingIterated),
            (_, Some([nc, ng])) => {
                let contacts = nc.parse().map_err(|_| bad())?;
                let groups = ng.parse().map_err(|_| bad())?;
                Ok(if contacts == 0 && groups == 0 {
                    SyncProgress::Done
                } else {
                    SyncProgress::Receiving { contacts, groups }
                })
            }
            // The server's version with no counts: nothing to fetch, but not ours either.
            _ => Ok(SyncProgress::Done),
        }
    }

    /// One line of list data (during `SYN` or any time after). Returns whether the line was
    /// list data, and advances `progress`.
    pub(crate) fn on_list_line(
        &mut self,
        dialect: Dialect,
        frame: &Frame,
        progress: &mut SyncProgress,
    ) -> bool {
        let gen = Generation::of(dialect);
        let tokens: Vec<&str> = frame.tokens().collect();
        // MSNP2–7 lines carry `TrID ver` after the command; later ones neither.
        let args: &[&str] = match gen {
            Generation::Iterated if tokens.len() >= 3 => &tokens[3..],
            Generation::Iterated => return false,
            _ => &tokens[1..],
        };
        match (tokens[0], gen) {
            ("GTC", _) => self.gtc = args.first().map(|s| (*s).to_owned()),
            ("BLP", _) => self.blp = args.first().map(|s| (*s).to_owned()),
            ("PRP", _) => {
                if args.first() == Some(&"MFN") {
                    self.display_name = args.get(1).map(|n| decode(n));
                }
            }
            ("BPR", _) => {}
            ("LSG", Generation::Iterated) => {
                // i n id name 0
                if let (Some(id), Some(name)) = (args.get(2), args.get(3)) {
                    self.groups.insert((*id).to_owned(), decode(name));
                }
            }
            ("LSG", Generation::Counted) => {
                if let (Some(id), Some(name)) = (args.first(), args.get(1)) {
                    self.groups.insert((*id).to_owned(), decode(name));
                }
                count_group(progress);
            }
            ("LSG", Generation::Guids) => {
                if let (Some(name), Some(id)) = (args.first(), args.get(1)) {
                    self.groups.insert((*id).to_owned(), decode(name));
                }
                count_group(progress);
            }
            ("LST", Generation::Iterated) => {
                // L ver i n email nick [groups]; tokens[2] is the list.
                let list = tokens.get(2).and_then(|t| List::from_token(t));
                let (Some(list), Some(i), Some(n)) = (list, tokens.get(4), tokens.get(5)) else {
                    return true;
                };
                if let (Some(email), Some(nick)) = (tokens.get(6), tokens.get(7)) {
                    let c = self.contact(email);
                    c.lists |= list.bit();
                    c.name = decode(nick);
                    if list == List::Forward {
                        c.groups = split_groups(tokens.get(8));
                    }
                }
                if list == List::Reverse && (i == n || *n == "0") {
                    *progress = SyncProgress::Done;
                }
            }
            ("LST", Generation::Counted) => {
                if let (Some(email), Some(nick), Some(bits)) =
                    (args.first(), args.get(1), args.get(2))
                {
                    let c = self.contact(email);
                    c.name = decode(nick);
                    c.lists = bits.parse().unwrap_or(0);
                    c.groups = split_groups(args.get(3));
                }
                count_contact(progress);
            }
            ("LST", Generation::Guids) => {
                let mut email = None;
                let mut name = None;
                let mut guid = None;
                let mut rest = Vec::new();
                for a in args {
                    if let Some(v) = a.strip_prefix("N=") {
                        email = Some(v);
                    } else if let Some(v) = a.strip_prefix("F=") {
                        name = Some(decode(v));
                    } else if let Some(v) = a.strip_prefix("C=") {
                        guid = Some(v.to_owned());
                    } else {
                        rest.push(*a);
                    }
                }
                if let Some(email) = email {
                    let c = self.contact(email);
                    c.name = name.unwrap_or_else(|| email.to_owned());
                    c.guid = guid;
                    c.lists = rest.first().and_then(|b| b.parse().ok()).unwrap_or(0);
                    // MSNP12 puts the contact's network (1) between the bits and the groups.
                    let groups_at = if dialect >= Dialect::Msnp12 { 2 } else { 1 };
                    c.groups = split_groups(rest.get(groups_at));
                }
                count_contact(progress);
            }
            _ => return false,
        }
        true
    }

    /// A list-change line (a reply to our request, or the server's notice). Returns the
    /// change if the line was one.
    pub(crate) fn on_change(&mut self, dialect: Dialect, frame: &Frame) -> Option<ListChange> {
        let p = frame.params();
        let versioned = dialect < Dialect::Msnp10;
        // MSNP2–9 carry the new version: after the list for ADD/REM, first for the rest.
        let at = usize::from(matches!(frame.command(), "ADD" | "REM"));
        let (ver, a): (Option<&str>, Vec<&str>) = if versioned && p.len() > at {
            let mut rest = p.clone();
            let v = rest.remove(at);
            (Some(v), rest)
        } else {
            (None, p.clone())
        };
        let change = match frame.command() {
            "ADD" => {
                let list = List::from_token(a.first()?)?;
                let email = a.get(1)?;
                let name = decode(a.get(2).unwrap_or(email));
                let group = a.get(3);
                let c = self.contact(email);
                let already = c.on(list);
                c.lists |= list.bit();
                c.name.clone_from(&name);
                match group {
                    Some(g) if list == List::Forward && already => {
                        if !c.groups.iter().any(|x| x == g) {
                            c.groups.push((*g).to_owned());
                        }
                        ListChange::AddedToGroup {
                            email: (*email).to_owned(),
                            group: (*g).to_owned(),
                        }
                    }
                    _ => {
                        if let (Some(g), List::Forward) = (group, list) {
                            c.groups = vec![(*g).to_owned()];
                        }
                        ListChange::Added {
                            list,
                            email: (*email).to_owned(),
                            name,
                        }
                    }
                }
            }
            "ADC" => {
                let list = List::from_token(a.first()?)?;
                let field = |k: &str| a.iter().find_map(|x| x.strip_prefix(k));
                if let (None, Some(guid), Some(group)) = (field("N="), field("C="), a.get(2)) {
                    let email = self.email_of_guid(guid)?;
                    let c = self.contact(&email);
                    if !c.groups.iter().any(|x| x == group) {
                        c.groups.push((*group).to_owned());
                    }
                    ListChange::AddedToGroup {
                        email,
                        group: (*group).to_owned(),
                    }
                } else {
                    let email = field("N=")?;
                    let name = field("F=").map_or_else(|| email.to_owned(), decode);
                    let guid = field("C=").map(str::to_owned);
                    let c = self.contact(email);
                    c.lists |= list.bit();
                    c.name.clone_from(&name);
                    if guid.is_some() {
                        c.guid = guid;
                    }
                    ListChange::Added {
                        list,
                        email: email.to_owned(),
                        name,
                    }
                }
            }
            "REM" => {
                let list = List::from_token(a.first()?)?;
                let who = a.get(1)?;
                let email = if versioned || list != List::Forward || who.contains('@') {
                    (*who).to_owned()
                } else {
                    self.email_of_guid(who)?
                };
                let c = self.contact(&email);
                match a.get(2) {
                    Some(g) if list == List::Forward => {
                        c.groups.retain(|x| x != g);
                        let emptied = versioned && c.groups.is_empty();
                        if emptied {
                            // MSNP7–9: removing a contact from its last group takes it off
                            // the forward list.
                            c.lists &= !list.bit();
                        }
                        let change = ListChange::RemovedFromGroup {
                            email: email.clone(),
                            group: (*g).to_owned(),
                        };
                        self.drop_empty(&email);
                        change
                    }
                    _ => {
                        c.lists &= !list.bit();
                        if list == List::Forward {
                            c.groups.clear();
                        }
                        self.drop_empty(&email);
                        ListChange::Removed { list, email }
                    }
                }
            }
            "ADG" => {
                // MSNP7–9: name id 0; MSNP10+: name guid.
                let (name, id) = (a.first()?, a.get(1)?);
                self.groups.insert((*id).to_owned(), decode(name));
                ListChange::GroupAdded {
                    id: (*id).to_owned(),
                    name: decode(name),
                }
            }
            "RMG" => {
                let id = a.first()?;
                self.groups.remove(*id);
                for c in self.contacts.values_mut() {
                    let before = c.groups.len();
                    c.groups.retain(|g| g != id);
                    if versioned && before > 0 && c.groups.is_empty() {
                        c.lists &= !List::Forward.bit();
                    }
                }
                self.contacts.retain(|_, c| c.lists != 0);
                ListChange::GroupRemoved {
                    id: (*id).to_owned(),
                }
            }
            "REG" => {
                let (id, name) = (a.first()?, a.get(1)?);
                self.groups.insert((*id).to_owned(), decode(name));
                ListChange::GroupRenamed {
                    id: (*id).to_owned(),
                    name: decode(name),
                }
            }
            "BLP" => {
                self.blp = a.first().map(|s| (*s).to_owned());
                ListChange::Privacy {
                    blp: self.blp.clone(),
                    gtc: None,
                }
            }
            "GTC" => {
                self.gtc = a.first().map(|s| (*s).to_owned());
                ListChange::Privacy {
                    blp: None,
                    gtc: self.gtc.clone(),
                }
            }
            _ => return None,
        };
        match ver {
            Some(v) => self.bump(v),
            // A change we cannot number: the next SYN must fetch everything.
            None => self.version = "0".into(),
        }
        Some(change)
    }
}

fn count_contact(p: &mut SyncProgress) {
    if let SyncProgress::Receiving { contacts, groups } = p {
        *contacts = contacts.saturating_sub(1);
        if *contacts == 0 && *groups == 0 {
            *p = SyncProgress::Done;
        }
    }
}

fn count_group(p: &mut SyncProgress) {
    if let SyncProgress::Receiving { contacts, groups } = p {
        *groups = groups.saturating_sub(1);
        if *contacts == 0 && *groups == 0 {
            *p = SyncProgress::Done;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn f(line: &str) -> Frame {
        Frame::new(line.to_owned(), None).unwrap()
    }

    #[test]
    fn counted_sync_then_changes() {
        let d = Dialect::Msnp8;
        let mut c = ListCache::new("me@x.com");
        let mut p = c.on_syn("me@x.com", d, &f("SYN 5 7 2 1")).unwrap();
        assert_eq!(
            p,
            SyncProgress::Receiving {
                contacts: 2,
                groups: 1
            }
        );
        for l in [
            "GTC A",
            "BLP AL",
            "LSG 0 Other%20Contacts 0",
            "LST a@x.com A 11 0",
            "BPR PHH 1",
        ] {
            assert!(c.on_list_line(d, &f(l), &mut p));
        }
        assert_ne!(p, SyncProgress::Done);
        assert!(c.on_list_line(d, &f("LST b@x.com B 8"), &mut p));
        assert_eq!(p, SyncProgress::Done);
        assert_eq!(c.groups["0"], "Other Contacts");
        assert!(c.contacts["a@x.com"].on(List::Forward));
        assert_eq!(c.version, "7");
        // Unchanged version: nothing to download.
        assert_eq!(
            c.on_syn("me@x.com", d, &f("SYN 5 7")).unwrap(),
            SyncProgress::Done
        );
        assert_eq!(c.contacts.len(), 2);
        c.on_change(d, &f("ADD 6 AL 8 b@x.com B")).unwrap();
        assert_eq!(c.version, "8");
        assert!(c.contacts["b@x.com"].on(List::Allow));
        // A gap in versions: stop trusting the cache.
        c.on_change(d, &f("REM 0 RL 10 b@x.com")).unwrap();
        assert_eq!(c.version, "0");
    }

    #[test]
    fn guid_sync_and_group_changes() {
        let d = Dialect::Msnp12;
        let mut c = ListCache::new("me@x.com");
        let mut p = c.on_syn("me@x.com", d, &f("SYN 1 3 3 1 1")).unwrap();
        c.on_list_line(d, &f("LSG Friends g1"), &mut p);
        c.on_list_line(d, &f("LST N=a@x.com F=A%20A C=c1 3 1 g1"), &mut p);
        assert_eq!(p, SyncProgress::Done);
        assert_eq!(c.contacts["a@x.com"].name, "A A");
        assert_eq!(c.in_group(Some("g1")).count(), 1);
        c.on_change(d, &f("REM 7 FL c1 g1")).unwrap();
        assert_eq!(c.in_group(None).count(), 1);
        c.on_change(d, &f("REM 8 FL c1")).unwrap();
        assert!(!c.contacts["a@x.com"].on(List::Forward));
        assert_eq!(c.version, "0");
    }

    #[test]
    fn iterated_sync_ends_at_the_reverse_list() {
        let d = Dialect::Msnp7;
        let mut c = ListCache::new("me@x.com");
        let mut p = c.on_syn("me@x.com", d, &f("SYN 5 4")).unwrap();
        assert_eq!(p, SyncProgress::ReceivingIterated);
        c.on_list_line(d, &f("LST 5 FL 4 1 1 a@x.com A 0"), &mut p);
        c.on_list_line(d, &f("LST 5 AL 4 0 0"), &mut p);
        c.on_list_line(d, &f("LST 5 BL 4 0 0"), &mut p);
        assert_eq!(p, SyncProgress::ReceivingIterated);
        c.on_list_line(d, &f("LST 5 RL 4 0 0"), &mut p);
        assert_eq!(p, SyncProgress::Done);
    }

    #[test]
    fn hostile_lines_do_not_panic() {
        let mut c = ListCache::new("me@x.com");
        let mut p = SyncProgress::Receiving {
            contacts: 1,
            groups: 0,
        };
        for d in [Dialect::Msnp7, Dialect::Msnp8, Dialect::Msnp12] {
            for l in [
                "LST", "LSG", "ADD", "ADD 1", "ADC 1 FL", "REM 1 XX", "RMG", "LST 1 RL", "SYN",
            ] {
                let _ = c.on_list_line(d, &f(l), &mut p);
                let _ = c.on_change(d, &f(l));
                let _ = c.on_syn("me@x.com", d, &f(l));
            }
        }
    }

    #[test]
    fn save_and_load() {
        let dir = std::env::temp_dir().join(format!("msgr-client-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut c = ListCache::new("me@x.com");
        c.contact("a@x.com").lists = 3;
        let path = dir.join("lists.toml");
        c.save(&path).unwrap();
        assert_eq!(ListCache::load(&path).unwrap(), c);
        let _ = std::fs::remove_dir_all(dir);
    }
}
