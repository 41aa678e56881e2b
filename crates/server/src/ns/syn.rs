//! `SYN`: the client names the list version it has cached; the server answers with its own and,
//! unless the two are equal, sends the whole list state.
//!
//! | dialect | request | up to date | otherwise, after the `SYN` line |
//! |---|---|---|---|
//! | MSNP2–MSNP4 | `SYN t v` | `SYN t ver` | `GTC t ver A`, `BLP t ver AL`, then per list FL AL BL RL: `LST t L ver i n email nick` (i of n), or `LST t L ver 0 0` if empty |
//! | MSNP5–MSNP6 | as above | as above | as above, with `PRP t ver PROP [value]` for all five properties after `BLP` |
//! | MSNP7 | as above | as above | as MSNP5, with `LSG t ver i n id name 0` per group before the lists and the groups (`0` if none) after each FL entry |
//! | MSNP8–MSNP9 | `SYN t v` | `SYN t ver` | `SYN t ver ncontacts ngroups`, then without TrIDs: `GTC A`, `BLP AL`, `PRP PROP value` per property set, `LSG id name 0`, `LST email nick bits [groups]` once per contact |
//! | MSNP10–MSNP11 | `SYN t v sv` | `SYN t ver ver` | `SYN t ver ver ncontacts ngroups`, `GTC`, `BLP`, `PRP MFN name`, phones set, `LSG name guid`, `LST N=email F=nick C=guid bits [groupguids]` (forward-list contacts) or `LST N=email bits` (others) |
//! | MSNP12 | as above | as above | as MSNP10, with the contact's network after the bits: `LST N=email F=nick C=guid bits 1 [groupguids]`, `LST N=email bits 1` (1: a Passport account, the only network msgr has) |
//!
//! `bits` is the list mask FL=1 AL=2 BL=4 RL=8; groups (MSNP7–9 ids, MSNP10+ GUIDs) are
//! comma-separated and only given for forward-list contacts. msgr keeps one version for the
//! lists and the settings, so MSNP10+ sees the same number twice. MSNP10+ has no group 0 (a
//! contact with no group is simply ungrouped), so group 0 is neither listed nor counted there.
//! Contacts' own phone settings follow their `LST` lines as `BPR` (see `bpr.rs` for the forms):
//! after each `LST t FL` entry in MSNP5–MSNP7, after each forward-list contact's `LST` from
//! MSNP8. They are read with one store query per full `SYN`; `LST t FL` alone has none.
//!
//! MSNP2–MSNP7 clients may also ask for one list (`LST t L`, answered as in `SYN`) or, in
//! MSNP7, the groups (`LSG t`); later dialects only ever receive those lines.
//!
//! A cached version of 0 means the client has no copy at all, so it always gets the whole
//! list, even when the account's list version is still 0 (a new account): "up to date" would
//! leave it with no `GTC`/`BLP` and no counts, and clients such as msn-pecan read the counts
//! of the long `SYN` form unconditionally at their first sign-on.

use bytes::BytesMut;
use msgr_core::lists::{Contact, ContactList, List, Phones, Property};
use msgr_proto::frame::{write_line, Frame, TrId};
use msgr_proto::{urlenc, Dialect, ErrorCode};
use std::collections::HashMap;

use super::{bpr, error, Flow, NsSession, State};

/// The three shapes `SYN` has had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Generation {
    /// MSNP2–MSNP7: TrIDs and list versions on every line, one `LST` per list entry.
    Iterated,
    /// MSNP8–MSNP9: counts on `SYN`, one `LST` per contact with its list mask.
    Counted,
    /// MSNP10–MSNP12: GUIDs, `N=`/`F=`/`C=` parameters.
    Guids,
}

fn generation(dialect: Dialect) -> Generation {
    match dialect {
        Dialect::Msnp2
        | Dialect::Msnp3
        | Dialect::Msnp4
        | Dialect::Msnp5
        | Dialect::Msnp6
        | Dialect::Msnp7 => Generation::Iterated,
        Dialect::Msnp8 | Dialect::Msnp9 => Generation::Counted,
        Dialect::Msnp10 | Dialect::Msnp11 | Dialect::Msnp12 => Generation::Guids,
    }
}

/// Whether the dialect has groups (`LSG`, and groups on `LST FL`).
fn has_groups(dialect: Dialect) -> bool {
    dialect >= Dialect::Msnp7
}

/// Whether the dialect has `PRP` phone properties.
fn has_properties(dialect: Dialect) -> bool {
    dialect >= Dialect::Msnp5
}

impl NsSession {
    pub(super) async fn syn(&mut self, frame: &Frame, trid: TrId, out: &mut BytesMut) -> Flow {
        let State::Online { dialect, user } = &self.state else {
            error(out, ErrorCode::NotLoggedIn, trid);
            return Flow::Continue;
        };
        let params = frame.params();
        let Some(cached) = params.first() else {
            error(out, ErrorCode::InvalidParameter, trid);
            return Flow::Continue;
        };
        // A version msgr never handed out (such as the timestamps of later ABCH-migrated
        // servers) simply means the client's copy is not ours: it gets the whole list.
        let cached = cached.parse::<u64>().unwrap_or(u64::MAX);
        let (dialect, email) = (*dialect, user.email.clone());
        let up_to_date = is_up_to_date(cached, user.state.list().version);
        let phones = if up_to_date || bpr_free(dialect) {
            HashMap::new()
        } else {
            match self.shared.contact_phones(&email).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "loading contacts' phones failed");
                    error(out, ErrorCode::DatabaseServerError, trid);
                    return Flow::Continue;
                }
            }
        };
        let State::Online { user, .. } = &self.state else {
            return Flow::Continue;
        };
        let list = user.state.list();
        write_syn(dialect, trid, &list, &user.name, cached, &phones, out);
        Flow::Continue
    }
}

impl NsSession {
    /// `LST t L` (MSNP2–MSNP7): one list, in the iterated form `SYN` uses. From MSNP8 on
    /// `LST` is only ever sent by the server, so a client's is 200.
    pub(super) fn lst(&mut self, frame: &Frame, trid: TrId, out: &mut BytesMut) -> Flow {
        let State::Online { dialect, user } = &self.state else {
            error(out, ErrorCode::NotLoggedIn, trid);
            return Flow::Continue;
        };
        if generation(*dialect) != Generation::Iterated {
            error(out, ErrorCode::SyntaxError, trid);
            return Flow::Continue;
        }
        let Some(l) = frame.params().first().and_then(|t| List::from_token(t)) else {
            error(out, ErrorCode::InvalidParameter, trid);
            return Flow::Continue;
        };
        write_iterated_list(*dialect, trid, &user.state.list(), l, None, out);
        Flow::Continue
    }

    /// `LSG t` (MSNP7): the groups, as in `SYN`.
    pub(super) fn lsg(&mut self, trid: TrId, out: &mut BytesMut) -> Flow {
        let State::Online { dialect, user } = &self.state else {
            error(out, ErrorCode::NotLoggedIn, trid);
            return Flow::Continue;
        };
        if *dialect != Dialect::Msnp7 {
            error(out, ErrorCode::SyntaxError, trid);
            return Flow::Continue;
        }
        write_iterated_groups(trid, &user.state.list(), out);
        Flow::Continue
    }
}

/// Whether a client that has cached list version `cached` needs nothing but the short `SYN`:
/// only when it has a copy (0 is "none", whatever the server's version) and that copy is the
/// current one.
fn is_up_to_date(cached: u64, version: u64) -> bool {
    cached != 0 && cached == version
}

/// The MSNP12 network field of `LST`: 1 for a Passport (Messenger) account, the only kind of
/// contact msgr has. MSNP10–11 have no such field.
fn network_field(dialect: Dialect) -> Option<&'static str> {
    (dialect >= Dialect::Msnp12).then_some("1")
}

/// Whether the dialect has no `BPR` (MSNP2–MSNP4), so `SYN` needs no phones.
fn bpr_free(dialect: Dialect) -> bool {
    !has_properties(dialect)
}

/// Writes the whole `SYN` answer for `list` in `dialect`. `name` is the account's display
/// name, decoded; `cached` the version the client has; `phones` the forward-list contacts'
/// phones it may see (`BPR`), by e-mail.
pub(super) fn write_syn(
    dialect: Dialect,
    trid: TrId,
    list: &ContactList,
    name: &str,
    cached: u64,
    phones: &HashMap<String, Phones>,
    out: &mut BytesMut,
) {
    let ver = list.version.to_string();
    let gen = generation(dialect);
    let up_to_date = is_up_to_date(cached, list.version);
    match gen {
        Generation::Iterated | Generation::Counted if up_to_date => {
            write_line(out, "SYN", Some(trid), &[&ver]);
            return;
        }
        Generation::Guids if up_to_date => {
            write_line(out, "SYN", Some(trid), &[&ver, &ver]);
            return;
        }
        _ => {}
    }
    let gtc = list.settings.gtc.token();
    let blp = list.settings.blp.token();
    match gen {
        Generation::Iterated => {
            write_line(out, "SYN", Some(trid), &[&ver]);
            write_line(out, "GTC", Some(trid), &[&ver, gtc]);
            write_line(out, "BLP", Some(trid), &[&ver, blp]);
            if has_properties(dialect) {
                for p in Property::ALL {
                    let value = list.settings.phones.get(p).map(urlenc::encode);
                    let mut args = vec![ver.as_str(), p.token()];
                    if let Some(v) = value.as_deref() {
                        args.push(v);
                    }
                    write_line(out, "PRP", Some(trid), &args);
                }
            }
            if has_groups(dialect) {
                write_iterated_groups(trid, list, out);
            }
            for l in List::ALL {
                write_iterated_list(dialect, trid, list, l, Some(phones), out);
            }
        }
        Generation::Counted => {
            let nc = list.contacts.len().to_string();
            let ng = list.groups.len().to_string();
            write_line(out, "SYN", Some(trid), &[&ver, &nc, &ng]);
            write_line(out, "GTC", None, &[gtc]);
            write_line(out, "BLP", None, &[blp]);
            write_set_properties(list, out);
            for g in list.groups.values() {
                let id = g.id.to_string();
                write_line(out, "LSG", None, &[&id, &urlenc::encode(&g.name), "0"]);
            }
            for c in list.contacts.values() {
                let nick = urlenc::encode(&c.nickname);
                let bits = c.lists.bits().to_string();
                let groups = group_ids(c);
                let mut args = vec![&*c.email, &nick, &bits];
                if c.lists.contains(List::Forward) {
                    args.push(&groups);
                }
                write_line(out, "LST", None, &args);
                if c.lists.contains(List::Forward) {
                    bpr::write_in_syn(dialect, &ver, &c.email, phones.get(&*c.email), out);
                }
            }
        }
        Generation::Guids => {
            let nc = list.contacts.len().to_string();
            let ng = list
                .groups
                .keys()
                .filter(|id| **id != 0)
                .count()
                .to_string();
            write_line(out, "SYN", Some(trid), &[&ver, &ver, &nc, &ng]);
            write_line(out, "GTC", None, &[gtc]);
            write_line(out, "BLP", None, &[blp]);
            write_line(out, "PRP", None, &["MFN", &urlenc::encode(name)]);
            write_set_properties(list, out);
            for g in list.groups.values().filter(|g| g.id != 0) {
                write_line(
                    out,
                    "LSG",
                    None,
                    &[&urlenc::encode(&g.name), &g.guid.text()],
                );
            }
            for c in list.contacts.values() {
                let n = format!("N={}", c.email);
                let bits = c.lists.bits().to_string();
                if c.lists.contains(List::Forward) {
                    let f = format!("F={}", urlenc::encode(&c.nickname));
                    let guid = format!("C={}", c.guid);
                    let groups = group_guids(list, c);
                    let mut args = vec![n.as_str(), &f, &guid, &bits];
                    args.extend(network_field(dialect));
                    if !groups.is_empty() {
                        args.push(&groups);
                    }
                    write_line(out, "LST", None, &args);
                    bpr::write_in_syn(dialect, &ver, &c.email, phones.get(&*c.email), out);
                } else {
                    let mut args = vec![n.as_str(), &bits];
                    args.extend(network_field(dialect));
                    write_line(out, "LST", None, &args);
                }
            }
        }
    }
}

/// `LSG t ver i n id name 0` for every group (MSNP7).
fn write_iterated_groups(trid: TrId, list: &ContactList, out: &mut BytesMut) {
    let ver = list.version.to_string();
    let n = list.groups.len().to_string();
    for (i, g) in list.groups.values().enumerate() {
        let i = (i + 1).to_string();
        let id = g.id.to_string();
        let name = urlenc::encode(&g.name);
        write_line(out, "LSG", Some(trid), &[&ver, &i, &n, &id, &name, "0"]);
    }
}

/// `LST t L ver i n email nick [groups]` for every member of `l`, or `LST t L ver 0 0`; with
/// `phones`, each forward-list entry is followed by its `BPR` lines.
fn write_iterated_list(
    dialect: Dialect,
    trid: TrId,
    list: &ContactList,
    l: List,
    phones: Option<&HashMap<String, Phones>>,
    out: &mut BytesMut,
) {
    let ver = list.version.to_string();
    let members: Vec<&Contact> = list.members(l).collect();
    if members.is_empty() {
        write_line(out, "LST", Some(trid), &[l.token(), &ver, "0", "0"]);
        return;
    }
    let n = members.len().to_string();
    for (i, c) in members.iter().enumerate() {
        let i = (i + 1).to_string();
        let nick = urlenc::encode(&c.nickname);
        let groups = group_ids(c);
        let mut args = vec![l.token(), &ver, &i, &n, &c.email, &nick];
        if l == List::Forward && has_groups(dialect) {
            args.push(&groups);
        }
        write_line(out, "LST", Some(trid), &args);
        if let (List::Forward, Some(phones)) = (l, phones) {
            bpr::write_in_syn(dialect, &ver, &c.email, phones.get(&*c.email), out);
        }
    }
}

/// `PRP PROP value` for each property that is set (phones) or on (flags), MSNP8+.
fn write_set_properties(list: &ContactList, out: &mut BytesMut) {
    for p in Property::ALL {
        match list.settings.phones.get(p) {
            Some("N") | None if p.is_flag() => {}
            None => {}
            Some(v) => write_line(out, "PRP", None, &[p.token(), &urlenc::encode(v)]),
        }
    }
}

/// The MSNP7–9 groups field: comma-separated ids, `0` for a contact in no group.
pub(super) fn group_ids(c: &Contact) -> String {
    if c.groups().is_empty() {
        return "0".to_owned();
    }
    let ids: Vec<String> = c.groups().iter().map(|id| id.to_string()).collect();
    ids.join(",")
}

/// The MSNP10+ groups field: comma-separated GUIDs, empty for an ungrouped contact (group 0
/// does not exist there).
fn group_guids(list: &ContactList, c: &Contact) -> String {
    let mut guids = String::new();
    for g in c
        .groups()
        .iter()
        .filter(|id| *id != 0)
        .filter_map(|id| list.groups.get(&id))
    {
        if !guids.is_empty() {
            guids.push(',');
        }
        guids.push_str(&g.guid.text());
    }
    guids
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use msgr_core::lists::{Blp, Change, ChangeKind, Guid};

    const G0: &str = "00000000-0000-0000-0000-000000000000";
    const G1: &str = "11111111-1111-1111-1111-111111111111";
    const C1: &str = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa";
    const C2: &str = "bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb";

    /// alice: bob on FL (group 1) and AL and RL; carol blocked; BLP BL; group 1 "Work Mates".
    fn sample() -> ContactList {
        let mut l = ContactList::new("alice@x.com", Guid::parse(G0).unwrap());
        let ch = |kind| Change {
            owner: "alice@x.com".into(),
            kind,
        };
        for kind in [
            ChangeKind::AddGroup {
                id: 1,
                guid: Guid::parse(G1).unwrap(),
                name: "Work Mates".into(),
            },
            ChangeKind::AddToList {
                email: "bob@x.com".into(),
                list: List::Forward,
                nickname: "Bob B".into(),
                guid: Guid::parse(C1).unwrap(),
                group: Some(1),
            },
            ChangeKind::AddToList {
                email: "bob@x.com".into(),
                list: List::Allow,
                nickname: "Bob B".into(),
                guid: Guid::parse(C1).unwrap(),
                group: None,
            },
            ChangeKind::AddToList {
                email: "bob@x.com".into(),
                list: List::Reverse,
                nickname: "Bob B".into(),
                guid: Guid::parse(C1).unwrap(),
                group: None,
            },
            ChangeKind::AddToList {
                email: "carol@x.com".into(),
                list: List::Block,
                nickname: "carol@x.com".into(),
                guid: Guid::parse(C2).unwrap(),
                group: None,
            },
            ChangeKind::SetBlp(Blp::Block),
            ChangeKind::SetProperty(Property::HomePhone, Some("01 234".into())),
        ] {
            l.apply(&ch(kind));
        }
        l
    }

    fn render(d: Dialect, cached: u64) -> Vec<String> {
        let mut out = BytesMut::new();
        let mut phones = HashMap::new();
        phones.insert(
            "bob@x.com".to_owned(),
            Phones {
                home: Some("01 234".into()),
                mobile_contact: true,
                ..Phones::default()
            },
        );
        write_syn(d, TrId(8), &sample(), "Alice A", cached, &phones, &mut out);
        String::from_utf8(out.to_vec())
            .unwrap()
            .split_terminator("\r\n")
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn up_to_date_is_one_line() {
        assert_eq!(render(Dialect::Msnp5, 7), ["SYN 8 7"]);
        assert_eq!(render(Dialect::Msnp8, 7), ["SYN 8 7"]);
        assert_eq!(render(Dialect::Msnp12, 7), ["SYN 8 7 7"]);
    }

    #[test]
    fn msnp2_iterates_every_list() {
        assert_eq!(
            render(Dialect::Msnp2, 0),
            [
                "SYN 8 7",
                "GTC 8 7 A",
                "BLP 8 7 BL",
                "LST 8 FL 7 1 1 bob@x.com Bob%20B",
                "LST 8 AL 7 1 1 bob@x.com Bob%20B",
                "LST 8 BL 7 1 1 carol@x.com carol@x.com",
                "LST 8 RL 7 1 1 bob@x.com Bob%20B",
            ]
        );
    }

    #[test]
    fn msnp7_adds_properties_and_groups() {
        assert_eq!(
            render(Dialect::Msnp7, 3),
            [
                "SYN 8 7",
                "GTC 8 7 A",
                "BLP 8 7 BL",
                "PRP 8 7 PHH 01%20234",
                "PRP 8 7 PHW",
                "PRP 8 7 PHM",
                "PRP 8 7 MOB N",
                "PRP 8 7 MBE N",
                "LSG 8 7 1 2 0 Other%20Contacts 0",
                "LSG 8 7 2 2 1 Work%20Mates 0",
                "LST 8 FL 7 1 1 bob@x.com Bob%20B 1",
                "BPR 7 bob@x.com PHH 01%20234",
                "BPR 7 bob@x.com PHW",
                "BPR 7 bob@x.com PHM",
                "BPR 7 bob@x.com MOB Y",
                "LST 8 AL 7 1 1 bob@x.com Bob%20B",
                "LST 8 BL 7 1 1 carol@x.com carol@x.com",
                "LST 8 RL 7 1 1 bob@x.com Bob%20B",
            ]
        );
    }

    #[test]
    fn msnp8_counts_like_the_seed() {
        assert_eq!(
            render(Dialect::Msnp8, 0),
            [
                "SYN 8 7 2 2",
                "GTC A",
                "BLP BL",
                "PRP PHH 01%20234",
                "LSG 0 Other%20Contacts 0",
                "LSG 1 Work%20Mates 0",
                "LST bob@x.com Bob%20B 11 1",
                "BPR PHH 01%20234",
                "BPR MOB Y",
                "LST carol@x.com carol@x.com 4",
            ]
        );
    }

    #[test]
    fn msnp10_uses_guids() {
        for d in [Dialect::Msnp10, Dialect::Msnp11] {
            assert_eq!(
                render(d, 0),
                [
                    "SYN 8 7 7 2 1",
                    "GTC A",
                    "BLP BL",
                    "PRP MFN Alice%20A",
                    "PRP PHH 01%20234",
                    &format!("LSG Work%20Mates {G1}"),
                    &format!("LST N=bob@x.com F=Bob%20B C={C1} 11 {G1}"),
                    "BPR PHH 01%20234",
                    "BPR MOB Y",
                    "LST N=carol@x.com 4",
                ]
            );
        }
    }

    /// MSNP12 puts the contact's network (1, Passport) after the list bits of every `LST`:
    /// without it msn-pecan and aMSN read the group GUIDs as the network and show every
    /// contact under "No group".
    #[test]
    fn msnp12_lst_has_the_network_field() {
        assert_eq!(
            render(Dialect::Msnp12, 0),
            [
                "SYN 8 7 7 2 1",
                "GTC A",
                "BLP BL",
                "PRP MFN Alice%20A",
                "PRP PHH 01%20234",
                &format!("LSG Work%20Mates {G1}"),
                &format!("LST N=bob@x.com F=Bob%20B C={C1} 11 1 {G1}"),
                "BPR PHH 01%20234",
                "BPR MOB Y",
                "LST N=carol@x.com 4 1",
            ]
        );
    }

    /// A client with no cached copy (version 0) gets the whole list in the long form even
    /// when the account's list version is 0 too, in every dialect.
    #[test]
    fn cached_version_zero_is_never_up_to_date() {
        let l = ContactList::new("a@x.com", Guid::parse(G0).unwrap());
        let full = |d: Dialect| {
            let mut out = BytesMut::new();
            write_syn(d, TrId(5), &l, "A", 0, &HashMap::new(), &mut out);
            String::from_utf8(out.to_vec()).unwrap()
        };
        assert_eq!(
            full(Dialect::Msnp3),
            "SYN 5 0\r\nGTC 5 0 A\r\nBLP 5 0 AL\r\nLST 5 FL 0 0 0\r\nLST 5 AL 0 0 0\r\nLST 5 BL 0 0 0\r\nLST 5 RL 0 0 0\r\n"
        );
        assert_eq!(
            full(Dialect::Msnp8),
            "SYN 5 0 0 1\r\nGTC A\r\nBLP AL\r\nLSG 0 Other%20Contacts 0\r\n"
        );
        for d in [Dialect::Msnp10, Dialect::Msnp11, Dialect::Msnp12] {
            assert_eq!(full(d), "SYN 5 0 0 0 0\r\nGTC A\r\nBLP AL\r\nPRP MFN A\r\n");
        }
        assert!(!is_up_to_date(0, 0));
        assert!(is_up_to_date(3, 3));
        assert!(!is_up_to_date(2, 3));
    }

    #[test]
    fn empty_list_forms() {
        let l = ContactList::new("a@x.com", Guid::parse(G0).unwrap());
        let mut out = BytesMut::new();
        write_syn(
            Dialect::Msnp3,
            TrId(2),
            &l,
            "A",
            5,
            &HashMap::new(),
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out.to_vec()).unwrap(),
            "SYN 2 0\r\nGTC 2 0 A\r\nBLP 2 0 AL\r\nLST 2 FL 0 0 0\r\nLST 2 AL 0 0 0\r\nLST 2 BL 0 0 0\r\nLST 2 RL 0 0 0\r\n"
        );
    }
}
