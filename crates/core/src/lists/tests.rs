//! Tests of the list rules: every error path as a table, the changes of every successful operation, `apply`, and
//! a property test that random operations keep the forward/reverse invariant.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use msgr_proto::ErrorCode;
use proptest::prelude::*;

use super::*;

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const CAROL: &str = "carol@example.com";
const DAVE: &str = "dave@example.com";
const ERIN: &str = "erin@example.com";
const FRANK: &str = "frank@example.com";
const GINA: &str = "gina@example.com";
const ZED: &str = "zed@example.com";

use List::{Allow as AL, Block as BL, Forward as FL, Reverse as RL};

/// What an operation returns.
type Outcome = Result<Vec<Change>, ListError>;

/// The value a property ends up with, or why it was refused.
type Stored<'a> = Result<Option<&'a str>, ListError>;

/// The GUID every random GUID is replaced with before comparing changes.
fn zero() -> Guid {
    Guid::from_bytes([0; 16])
}

fn contact(email: &str, lists: &[List], groups: &[u32]) -> Contact {
    let mut c = Contact::new(
        email.into(),
        format!("nick of {email}").into(),
        lists.iter().copied().collect(),
        Guid::random(),
    );
    for g in groups {
        c.join_group(*g);
    }
    c
}

/// The groups of a contact, as a set to compare.
fn groups_of(c: &Contact) -> BTreeSet<u32> {
    c.groups().iter().collect()
}

/// Alice's list: groups 0 (Other Contacts), 1 (Friends), 2 (Work) and
/// bob FL{1}+AL+RL, carol FL{1,2}+BL, dave AL, erin RL, frank BL, gina FL{} (no group).
fn alice() -> ContactList {
    let mut list = ContactList::new(ALICE, Guid::random());
    list.version = 10;
    for (id, name) in [(1, "Friends"), (2, "Work")] {
        list.groups.insert(Group {
            id,
            guid: Guid::random(),
            name: name.to_owned(),
        });
    }
    for c in [
        contact(BOB, &[FL, AL, RL], &[1]),
        contact(CAROL, &[FL, BL], &[1, 2]),
        contact(DAVE, &[AL], &[]),
        contact(ERIN, &[RL], &[]),
        contact(FRANK, &[BL], &[]),
        contact(GINA, &[FL], &[]),
    ] {
        list.contacts.insert(c);
    }
    list
}

fn empty(owner: &str) -> ContactList {
    ContactList::new(owner, Guid::random())
}

/// Replaces every random GUID in `changes` with [`zero`], so that changes compare by their meaning.
fn strip(changes: Vec<Change>) -> Vec<Change> {
    changes
        .into_iter()
        .map(|mut c| {
            match &mut c.kind {
                ChangeKind::AddToList { guid, .. } | ChangeKind::AddGroup { guid, .. } => {
                    *guid = zero();
                }
                _ => {}
            }
            c
        })
        .collect()
}

fn ch(owner: &str, kind: ChangeKind) -> Change {
    Change {
        owner: owner.to_owned(),
        kind,
    }
}

fn add_to(email: &str, list: List, nickname: &str, group: Option<u32>) -> ChangeKind {
    ChangeKind::AddToList {
        email: email.into(),
        list,
        nickname: nickname.into(),
        guid: zero(),
        group,
    }
}

fn rem_from(email: &str, list: List) -> ChangeKind {
    ChangeKind::RemoveFromList {
        email: email.into(),
        list,
    }
}

fn err(code: ErrorCode) -> ListError {
    ListError::Reply(code)
}

fn req<'a>(
    list: List,
    email: &'a str,
    nickname: Option<&'a str>,
    group: Option<u32>,
) -> AddRequest<'a> {
    AddRequest {
        list,
        email,
        nickname,
        group,
    }
}

#[test]
fn list_tokens_and_bits() {
    let expected = [(FL, "FL", 1), (AL, "AL", 2), (BL, "BL", 4), (RL, "RL", 8)];
    for (list, token, bit) in expected {
        assert_eq!(list.token(), token);
        assert_eq!(list.bit(), bit);
        assert_eq!(List::from_token(token), Some(list));
        assert_eq!(list.to_string(), token);
    }
    assert_eq!(List::from_token("fl"), None);
    assert_eq!(List::from_token("PL"), None);
}

#[test]
fn list_set_operations() {
    let mut set = ListSet::EMPTY;
    assert!(set.is_empty());
    assert!(set.insert(FL));
    assert!(!set.insert(FL));
    assert!(set.insert(RL));
    assert!(set.insert(AL));
    // The seed's examples: 11 = FL + AL + RL, 10 = AL + RL.
    assert_eq!(set.bits(), 11);
    assert!(set.contains(AL) && !set.contains(BL));
    assert!(set.remove(FL));
    assert!(!set.remove(FL));
    assert_eq!(set.bits(), 10);
    assert_eq!(set.iter().collect::<Vec<_>>(), [AL, RL]);
    assert_eq!(format!("{set:?}"), "{Allow, Reverse}");
    for bits in 0..=15 {
        assert_eq!(ListSet::from_bits(bits).map(ListSet::bits), Some(bits));
    }
    for bits in [16, 17, 31, 255] {
        assert_eq!(ListSet::from_bits(bits), None);
    }
    assert_eq!(ListSet::only(BL).bits(), 4);
    assert_eq!([FL, BL].into_iter().collect::<ListSet>().bits(), 5);
}

#[test]
fn guids() {
    let g = Guid::random();
    let text = g.text();
    let s = text.as_str();
    assert_eq!(s.len(), 36);
    assert_eq!(Guid::parse(s), Ok(g));
    // Version 4, RFC 4122 variant.
    assert_eq!(&s[14..15], "4");
    assert!("89ab".contains(&s[19..20]));
    assert_ne!(Guid::random(), Guid::random());

    let bytes: [u8; 16] = core::array::from_fn(|i| u8::try_from(i * 17).unwrap());
    assert_eq!(
        Guid::from_bytes(bytes).text().as_str(),
        "00112233-4455-6677-8899-aabbccddeeff"
    );
    let upper = Guid::parse("D6DEEACD-7849-4DE4-93C5-D130915D0042").unwrap();
    assert_eq!(upper.to_string(), "d6deeacd-7849-4de4-93c5-d130915d0042");
    for bad in [
        "",
        "d6deeacd78494de493c5d130915d0042",
        "d6deeacd-7849-4de4-93c5-d130915d004",
        "d6deeacd-7849-4de4-93c5-d130915d00421",
        "d6deeacd_7849-4de4-93c5-d130915d0042",
        "g6deeacd-7849-4de4-93c5-d130915d0042",
        "THIS0IS0-NOT0-A0VA-LID0-GUID0AT0ALL!",
        "d6deeacd-7849-4de4-93c5-d130915d004é",
        "d6deeacd-7849-4de4-93c5--130915d0042",
        "d6deeacd-7849-4de4-93c5-d130915d+042",
    ] {
        assert_eq!(Guid::parse(bad), Err(GuidError), "{bad:?}");
    }
}

#[test]
fn guids_sort_as_their_text() {
    let mut guids: Vec<Guid> = (0..50).map(|_| Guid::random()).collect();
    guids.sort();
    let texts: Vec<String> = guids.iter().map(Guid::to_string).collect();
    assert!(texts.windows(2).all(|w| w[0] < w[1]), "{texts:?}");
}

/// Every online user holds one `Contact` per contact and one `Group` per group: these sizes are most of what a
/// contact list costs in memory (issue 17: ≤ 6 KB per idle online user with 20 contacts).
#[test]
fn contact_stays_small() {
    assert_eq!(std::mem::size_of::<Guid>(), 16);
    assert_eq!(std::mem::size_of::<Name>(), 8);
    assert!(
        std::mem::size_of::<Contact>() <= 48,
        "{}",
        std::mem::size_of::<Contact>()
    );
}

#[test]
fn group_sets_of_any_ids() {
    let mut c = contact(BOB, &[FL], &[]);
    assert!(c.groups().is_empty());
    // Ids on both sides of the inline bits, joined out of order.
    for id in [40, 3, 31, 0, 32, u32::MAX] {
        assert!(c.join_group(id));
    }
    assert!(!c.join_group(31) && !c.join_group(40));
    assert_eq!(
        c.groups().iter().collect::<Vec<_>>(),
        [0, 3, 31, 32, 40, u32::MAX]
    );
    assert_eq!(c.groups().len(), 6);
    assert!(c.groups().contains(32) && !c.groups().contains(33) && !c.groups().contains(1));
    for id in [32, 40, u32::MAX] {
        assert!(c.leave_group(id));
    }
    assert!(!c.leave_group(40) && !c.leave_group(7));
    // Leaving every high id gives back a set equal to one that never had any.
    let mut same = contact(BOB, &[FL], &[0, 3, 31]);
    same.guid = c.guid;
    assert_eq!(c, same);
    c.leave_all_groups();
    assert!(c.groups().is_empty());
    assert_eq!(c.groups().len(), 0);
}

#[test]
fn setting_tokens() {
    assert_eq!(Gtc::default(), Gtc::Ask);
    assert_eq!(Blp::default(), Blp::Allow);
    for g in [Gtc::Ask, Gtc::DontAsk] {
        assert_eq!(Gtc::from_token(g.token()), Some(g));
    }
    for b in [Blp::Allow, Blp::Block] {
        assert_eq!(Blp::from_token(b.token()), Some(b));
    }
    assert_eq!((Gtc::Ask.token(), Gtc::DontAsk.token()), ("A", "N"));
    assert_eq!((Blp::Allow.token(), Blp::Block.token()), ("AL", "BL"));
    assert_eq!(Gtc::from_token("B"), None);
    assert_eq!(Blp::from_token("FL"), None);
    for p in Property::ALL {
        assert_eq!(Property::from_token(p.token()), Some(p));
    }
    assert_eq!(
        Property::from_client_token("PHH"),
        Some(Property::HomePhone)
    );
    assert_eq!(
        Property::from_client_token("MOB"),
        Some(Property::MobileContact)
    );
    assert_eq!(Property::from_client_token("MBE"), None);
    assert_eq!(Property::from_client_token("MFN"), None);
    assert_eq!(Property::from_client_token("NEW"), None);
}

#[test]
fn new_list_has_group_zero_and_official_defaults() {
    let g = Guid::random();
    let list = ContactList::new("Someone@Example.com", g);
    assert_eq!(list.owner, "someone@example.com");
    assert_eq!(list.version, 0);
    assert!(list.contacts.is_empty());
    assert_eq!(
        list.groups.values().collect::<Vec<_>>(),
        [&Group {
            id: 0,
            guid: g,
            name: DEFAULT_GROUP_NAME.to_owned()
        }]
    );
    assert_eq!(list.settings.gtc, Gtc::Ask);
    assert_eq!(list.settings.blp, Blp::Allow);
    assert_eq!(list.settings.phones, Phones::default());
    assert_eq!(list.settings.phones.get(Property::MobileContact), Some("N"));
    assert_eq!(list.settings.phones.get(Property::HomePhone), None);
    assert_eq!(list.settings.personal_message, None);
}

#[test]
fn lookups() {
    let a = alice();
    assert_eq!(a.contact("BOB@example.com").map(|c| &*c.email), Some(BOB));
    assert!(a.is_on(BOB, RL));
    assert!(!a.is_on(DAVE, FL));
    assert!(!a.is_on(ZED, FL));
    assert_eq!(a.count(FL), 3);
    assert_eq!(a.count(AL), 2);
    assert_eq!(a.count(BL), 2);
    assert_eq!(a.count(RL), 2);
    let bob_guid = a.contacts[BOB].guid;
    assert_eq!(a.contact_by_guid(&bob_guid).map(|c| &*c.email), Some(BOB));
    let work = a.groups[&2].guid;
    assert_eq!(a.group_by_guid(&work).map(|g| g.id), Some(2));
    assert_eq!(a.group_by_guid(&zero()), None);
}

#[test]
fn add_errors() {
    let a = alice();
    let full_fl = Limits {
        max_forward: 3,
        ..Limits::default()
    };
    let full_alb = Limits {
        max_allow_block: 2,
        ..Limits::default()
    };
    let full_rl = Limits {
        max_reverse: 1,
        ..Limits::default()
    };
    let mut peer_with_rl = empty(ZED);
    peer_with_rl.contacts.insert(contact(ERIN, &[RL], &[]));
    let zed = empty(ZED);
    let d = Limits::default();
    let too_long_name = "x".repeat(130);

    // (request, peer, limits, expected error, why)
    let cases: &[(
        AddRequest<'_>,
        Option<&ContactList>,
        &Limits,
        ListError,
        &str,
    )] = &[
        (
            req(RL, ZED, None, None),
            Some(&zed),
            &d,
            ListError::Disconnect("clients cannot add to the reverse list"),
            "RL is the server's",
        ),
        (
            req(FL, "a@b", None, None),
            Some(&zed),
            &d,
            err(ErrorCode::InvalidParameter),
            "malformed handle",
        ),
        (
            req(AL, "", None, None),
            Some(&zed),
            &d,
            err(ErrorCode::InvalidParameter),
            "empty handle",
        ),
        (
            req(FL, ZED, Some(""), None),
            Some(&zed),
            &d,
            err(ErrorCode::InvalidParameter),
            "empty nickname",
        ),
        (
            req(FL, ZED, Some(&too_long_name), None),
            Some(&zed),
            &d,
            err(ErrorCode::InvalidParameter),
            "nickname too long",
        ),
        (
            req(FL, ZED, Some("a\r\nb"), None),
            Some(&zed),
            &d,
            err(ErrorCode::InvalidParameter),
            "nickname with CRLF",
        ),
        (
            req(AL, ZED, None, Some(1)),
            Some(&zed),
            &d,
            err(ErrorCode::InvalidParameter),
            "group outside FL",
        ),
        (
            req(FL, ZED, None, Some(7)),
            Some(&zed),
            &d,
            err(ErrorCode::InvalidGroup),
            "no such group",
        ),
        (
            req(FL, ZED, None, Some(31)),
            Some(&zed),
            &d,
            err(ErrorCode::InvalidGroup),
            "group beyond range",
        ),
        (
            req(FL, ZED, None, None),
            None,
            &d,
            err(ErrorCode::InvalidUser),
            "no such account",
        ),
        (
            req(AL, ZED, None, None),
            None,
            &d,
            err(ErrorCode::InvalidUser),
            "no such account, AL",
        ),
        (
            req(FL, BOB, Some("Bob"), None),
            Some(&zed),
            &d,
            err(ErrorCode::AlreadyInList),
            "already on FL",
        ),
        (
            req(FL, "Bob@Example.com", None, Some(1)),
            Some(&zed),
            &d,
            err(ErrorCode::AlreadyInList),
            "already in that group",
        ),
        (
            req(AL, FRANK, None, None),
            Some(&zed),
            &d,
            err(ErrorCode::AlreadyInOppositeList),
            "AL while on BL",
        ),
        (
            req(BL, DAVE, None, None),
            Some(&zed),
            &d,
            err(ErrorCode::AlreadyInOppositeList),
            "BL while on AL",
        ),
        (
            req(BL, BOB, None, None),
            Some(&zed),
            &d,
            err(ErrorCode::AlreadyInOppositeList),
            "BL while on FL+AL",
        ),
        (
            req(FL, ZED, None, None),
            Some(&zed),
            &full_fl,
            err(ErrorCode::ListFull),
            "FL full",
        ),
        (
            req(AL, ERIN, None, None),
            Some(&zed),
            &full_alb,
            err(ErrorCode::ListFull),
            "AL full",
        ),
        (
            req(BL, ERIN, None, None),
            Some(&zed),
            &full_alb,
            err(ErrorCode::ListFull),
            "BL full",
        ),
        (
            req(FL, ZED, None, None),
            Some(&peer_with_rl),
            &full_rl,
            err(ErrorCode::ListFull),
            "peer's RL full",
        ),
    ];
    for (r, peer, limits, want, why) in cases {
        assert_eq!(a.add(r, *peer, "Alice", limits), Err(*want), "{why}");
    }
}

/// Re-adding to AL or BL who is already there (clients re-send these lists at sign-on) is
/// no change and no error; the forward list keeps its 215.
#[test]
fn add_to_allow_or_block_again_is_no_change() {
    let a = alice();
    let d = Limits::default();
    let zed = empty(ZED);
    assert_eq!(
        a.add(&req(AL, DAVE, None, None), Some(&zed), "Alice", &d),
        Ok(vec![])
    );
    assert_eq!(
        a.add(&req(BL, FRANK, None, None), Some(&zed), "Alice", &d),
        Ok(vec![])
    );
}

#[test]
fn add_successes() {
    let a = alice();
    let d = Limits::default();
    let zed = empty(ZED);
    // (request, expected changes, why)
    let cases: Vec<(AddRequest<'_>, Vec<Change>, &str)> = vec![
        (
            req(FL, "Zed@Example.COM", Some("Zed Z"), Some(1)),
            vec![
                ch(ALICE, add_to(ZED, FL, "Zed Z", Some(1))),
                ch(ZED, add_to(ALICE, RL, "Alice", None)),
            ],
            "new contact on FL in a group; the peer's RL gains the owner under the owner's display name",
        ),
        (
            req(FL, ZED, None, None),
            vec![
                ch(ALICE, add_to(ZED, FL, ZED, None)),
                ch(ZED, add_to(ALICE, RL, "Alice", None)),
            ],
            "no nickname stores the handle; no group",
        ),
        (
            req(FL, ERIN, Some("Erin"), Some(0)),
            vec![
                ch(ALICE, add_to(ERIN, FL, "Erin", Some(0))),
                ch(ERIN, add_to(ALICE, RL, "Alice", None)),
            ],
            "adding back someone who added the owner",
        ),
        (
            req(FL, BOB, Some("ignored"), Some(2)),
            vec![ch(
                ALICE,
                ChangeKind::AddToGroup {
                    email: BOB.into(),
                    group: 2,
                },
            )],
            "already on FL, new group: only joins the group",
        ),
        (
            req(AL, ERIN, None, None),
            vec![ch(ALICE, add_to(ERIN, AL, ERIN, None))],
            "AL touches nobody else",
        ),
        (
            req(BL, ZED, None, None),
            vec![ch(ALICE, add_to(ZED, BL, ZED, None))],
            "BL of a stranger",
        ),
        (
            req(AL, GINA, None, None),
            vec![ch(ALICE, add_to(GINA, AL, GINA, None))],
            "AL of a forward contact",
        ),
        (
            req(FL, ALICE, Some("me"), None),
            vec![
                ch(ALICE, add_to(ALICE, FL, "me", None)),
                ch(ALICE, add_to(ALICE, RL, "Alice", None)),
            ],
            "adding oneself: both changes are the owner's",
        ),
    ];
    for (r, want, why) in cases {
        let got = a.add(&r, Some(&zed), "Alice", &d).map(strip);
        assert_eq!(got, Ok(want), "{why}");
    }
}

#[test]
fn add_to_group_table() {
    let a = alice();
    let cases: &[(&str, u32, Result<(), ErrorCode>)] = &[
        (BOB, 2, Ok(())),
        (GINA, 0, Ok(())),
        ("BOB@example.com", 2, Ok(())),
        (BOB, 9, Err(ErrorCode::InvalidGroup)),
        (BOB, 1, Err(ErrorCode::AlreadyInList)),
        (DAVE, 1, Err(ErrorCode::NotInList)),
        (ZED, 1, Err(ErrorCode::NotInList)),
    ];
    for (email, group, want) in cases {
        let got = a.add_to_group(email, *group);
        match want {
            Ok(()) => assert_eq!(
                got,
                Ok(vec![ch(
                    ALICE,
                    ChangeKind::AddToGroup {
                        email: email.to_ascii_lowercase(),
                        group: *group
                    }
                )])
            ),
            Err(code) => assert_eq!(got, Err(err(*code)), "{email} {group}"),
        }
    }
}

#[test]
fn remove_table() {
    let a = alice();
    let remove_group = |email: &str, group| {
        vec![ch(
            ALICE,
            ChangeKind::RemoveFromGroup {
                email: email.into(),
                group,
            },
        )]
    };
    // (list, email, group, expected)
    let cases: Vec<(List, &str, Option<u32>, Outcome)> = vec![
        (
            RL,
            ERIN,
            None,
            Err(ListError::Disconnect(
                "clients cannot remove from the reverse list",
            )),
        ),
        (
            FL,
            "not an address",
            None,
            Err(err(ErrorCode::InvalidParameter)),
        ),
        (AL, DAVE, Some(1), Err(err(ErrorCode::InvalidParameter))),
        (FL, BOB, Some(7), Err(err(ErrorCode::InvalidGroup))),
        (FL, DAVE, Some(1), Err(err(ErrorCode::NotInList))),
        (FL, BOB, Some(2), Err(err(ErrorCode::PrincipalNotInGroup))),
        (FL, GINA, Some(0), Err(err(ErrorCode::PrincipalNotInGroup))),
        (FL, ERIN, None, Err(err(ErrorCode::NotInList))),
        (AL, FRANK, None, Err(err(ErrorCode::NotInList))),
        (BL, ZED, None, Err(err(ErrorCode::NotInList))),
        (
            FL,
            "Bob@example.com",
            None,
            Ok(vec![
                ch(ALICE, rem_from(BOB, FL)),
                ch(BOB, rem_from(ALICE, RL)),
            ]),
        ),
        (AL, DAVE, None, Ok(vec![ch(ALICE, rem_from(DAVE, AL))])),
        (BL, CAROL, None, Ok(vec![ch(ALICE, rem_from(CAROL, BL))])),
        (FL, CAROL, Some(2), Ok(remove_group(CAROL, 2))),
        // The last group may go; the contact stays on FL with no group.
        (FL, BOB, Some(1), Ok(remove_group(BOB, 1))),
    ];
    for (list, email, group, want) in cases {
        assert_eq!(
            a.remove(list, email, group),
            want,
            "{list} {email} {group:?}"
        );
    }
}

#[test]
fn group_errors() {
    let a = alice();
    let d = Limits::default();
    let three = Limits {
        max_groups: 3,
        ..Limits::default()
    };
    let max_ascii = "g".repeat(61);
    let over_ascii = "g".repeat(62);
    // 20 spaces are 60 encoded bytes: with one more letter the name is at the limit, with two over it.
    let spaces_ok = format!("{}x", " ".repeat(20));
    let spaces_over = format!("{}xy", " ".repeat(20));
    // Non-ASCII travels as raw UTF-8: 30 two-byte letters are 60 bytes.
    let accents_ok = "é".repeat(30);
    let accents_over = "é".repeat(31);

    let add_cases: &[(&str, &Limits, Option<ErrorCode>)] = &[
        ("", &d, Some(ErrorCode::InvalidGroupName)),
        ("a\tb", &d, Some(ErrorCode::InvalidGroupName)),
        ("line\nbreak", &d, Some(ErrorCode::InvalidGroupName)),
        (&over_ascii, &d, Some(ErrorCode::GroupNameTooLong)),
        (&spaces_over, &d, Some(ErrorCode::GroupNameTooLong)),
        (&accents_over, &d, Some(ErrorCode::GroupNameTooLong)),
        ("Family", &three, Some(ErrorCode::TooManyGroups)),
        (&max_ascii, &d, None),
        (&spaces_ok, &d, None),
        (&accents_ok, &d, None),
        ("Friends", &d, None),
    ];
    for (name, limits, want) in add_cases {
        let got = a.add_group(name, limits).map(strip);
        match want {
            Some(code) => assert_eq!(got, Err(err(*code)), "{name:?}"),
            None => assert_eq!(
                got,
                Ok(vec![ch(
                    ALICE,
                    ChangeKind::AddGroup {
                        id: 3,
                        guid: zero(),
                        name: (*name).to_owned()
                    }
                )]),
                "{name:?}"
            ),
        }
    }

    let rename_cases: &[(u32, &str, Option<ErrorCode>)] = &[
        (5, "Five", Some(ErrorCode::InvalidGroup)),
        (1, "", Some(ErrorCode::InvalidGroupName)),
        (1, &over_ascii, Some(ErrorCode::GroupNameTooLong)),
        (1, "Pals", None),
        (0, "Otros Contactos", None),
    ];
    for (id, name, want) in rename_cases {
        let got = a.rename_group(*id, name, &d);
        match want {
            Some(code) => assert_eq!(got, Err(err(*code)), "{id} {name:?}"),
            None => assert_eq!(
                got,
                Ok(vec![ch(
                    ALICE,
                    ChangeKind::RenameGroup {
                        id: *id,
                        name: (*name).to_owned()
                    }
                )])
            ),
        }
    }

    let remove_cases: &[(u32, ListError)] = &[
        (0, err(ErrorCode::CannotRemoveGroupZero)),
        (5, err(ErrorCode::InvalidGroup)),
        (29, err(ErrorCode::InvalidGroup)),
        (30, ListError::Disconnect("group id out of range")),
        (u32::MAX, ListError::Disconnect("group id out of range")),
    ];
    for (id, want) in remove_cases {
        for exclusive in [
            ExclusiveMembers::LeaveForwardList,
            ExclusiveMembers::StayUngrouped,
        ] {
            assert_eq!(a.remove_group(*id, exclusive, &d), Err(*want), "RMG {id}");
        }
    }
}

#[test]
fn add_group_takes_the_lowest_free_id() {
    let mut a = alice();
    a.groups.remove(&1);
    let got = a.add_group("Again", &Limits::default()).map(strip);
    assert!(
        matches!(
            &got.as_deref(),
            Ok([Change {
                kind: ChangeKind::AddGroup { id: 1, .. },
                ..
            }])
        ),
        "{got:?}"
    );
}

#[test]
fn remove_group_and_its_exclusive_members() {
    let a = alice();
    let d = Limits::default();
    // Bob is only in Friends; Carol is in Friends and Work.
    assert_eq!(
        a.remove_group(1, ExclusiveMembers::LeaveForwardList, &d),
        Ok(vec![
            ch(
                ALICE,
                ChangeKind::RemoveGroup {
                    id: 1,
                    dropped: vec![BOB.to_owned()]
                }
            ),
            ch(BOB, rem_from(ALICE, RL)),
        ])
    );
    assert_eq!(
        a.remove_group(1, ExclusiveMembers::StayUngrouped, &d),
        Ok(vec![ch(
            ALICE,
            ChangeKind::RemoveGroup {
                id: 1,
                dropped: vec![]
            }
        )])
    );
    assert_eq!(
        a.remove_group(2, ExclusiveMembers::LeaveForwardList, &d),
        Ok(vec![ch(
            ALICE,
            ChangeKind::RemoveGroup {
                id: 2,
                dropped: vec![]
            }
        )])
    );
}

#[test]
fn mode_settings() {
    let a = alice();
    // The mode already in force is no change, and no error.
    assert_eq!(a.set_gtc(Gtc::Ask), Ok(vec![]));
    assert_eq!(a.set_blp(Blp::Allow), Ok(vec![]));
    assert_eq!(
        a.set_gtc(Gtc::DontAsk),
        Ok(vec![ch(ALICE, ChangeKind::SetGtc(Gtc::DontAsk))])
    );
    assert_eq!(
        a.set_blp(Blp::Block),
        Ok(vec![ch(ALICE, ChangeKind::SetBlp(Blp::Block))])
    );
    let mut b = alice();
    b.settings.gtc = Gtc::DontAsk;
    b.settings.blp = Blp::Block;
    assert_eq!(b.set_gtc(Gtc::DontAsk), Ok(vec![]));
    assert_eq!(b.set_blp(Blp::Block), Ok(vec![]));
}

#[test]
fn property_table() {
    use Property::*;
    let a = alice();
    let d = Limits::default();
    let max_digits = "1".repeat(95);
    let over_digits = "1".repeat(96);
    // 31 spaces are 93 bytes encoded; two more digits reach 95, three pass it.
    let spaced_ok = format!("{}12", " ".repeat(31));
    let spaced_over = format!("{}123", " ".repeat(31));
    let too_long = ListError::Disconnect("phone number too long");
    // (property, value, expected stored value or error)
    let cases: Vec<(Property, Option<&str>, Stored<'_>)> = vec![
        (HomePhone, Some("01 234"), Ok(Some("01 234"))),
        (WorkPhone, Some(&max_digits), Ok(Some(&max_digits))),
        (MobilePhone, Some(&spaced_ok), Ok(Some(&spaced_ok))),
        (HomePhone, None, Ok(None)),
        (HomePhone, Some(""), Ok(None)),
        (HomePhone, Some(&over_digits), Err(too_long)),
        (MobilePhone, Some(&spaced_over), Err(too_long)),
        (
            WorkPhone,
            Some("1\r\n2"),
            Err(err(ErrorCode::InvalidParameter)),
        ),
        (MobileContact, Some("Y"), Ok(Some("Y"))),
        (MobileContact, Some("N"), Ok(Some("N"))),
        (MobileContact, None, Ok(Some("N"))),
        (
            MobileContact,
            Some("yes"),
            Err(err(ErrorCode::InvalidParameter)),
        ),
        (
            MobileEnabled,
            Some(""),
            Err(err(ErrorCode::InvalidParameter)),
        ),
        (MobileEnabled, Some("Y"), Ok(Some("Y"))),
    ];
    for (property, value, want) in cases {
        let got = a.set_property(property, value, &d);
        let want = want.map(|v| {
            vec![ch(
                ALICE,
                ChangeKind::SetProperty(property, v.map(str::to_owned)),
            )]
        });
        assert_eq!(got, want, "{property:?} {value:?}");
    }
}

#[test]
fn names_and_personal_message() {
    let a = alice();
    let d = Limits::default();
    assert_eq!(
        a.set_display_name(""),
        Err(err(ErrorCode::InvalidFriendlyName))
    );
    assert_eq!(
        a.set_display_name(&"x".repeat(130)),
        Err(err(ErrorCode::InvalidFriendlyName))
    );
    assert_eq!(
        a.set_display_name("Alice ♥"),
        Ok(vec![ch(
            ALICE,
            ChangeKind::SetDisplayName("Alice ♥".to_owned())
        )])
    );

    let nick_cases: &[(&str, &str, Result<(), ErrorCode>)] = &[
        (BOB, "Bobby", Ok(())),
        ("BOB@EXAMPLE.COM", "Bobby", Ok(())),
        (DAVE, "Dave", Err(ErrorCode::NotInList)),
        (ZED, "Zed", Err(ErrorCode::NotInList)),
        (BOB, "", Err(ErrorCode::InvalidFriendlyName)),
        (BOB, "a\nb", Err(ErrorCode::InvalidFriendlyName)),
    ];
    for (email, nick, want) in nick_cases {
        let got = a.set_contact_nickname(email, nick);
        let want = want.map(|()| {
            vec![ch(
                ALICE,
                ChangeKind::SetContactNickname {
                    email: email.to_ascii_lowercase(),
                    nickname: (*nick).into(),
                },
            )]
        });
        assert_eq!(got, want.map_err(err), "{email} {nick:?}");
    }

    let small = Limits {
        max_personal_message_bytes: 10,
        ..Limits::default()
    };
    let psm = |p: Option<&str>| {
        vec![ch(
            ALICE,
            ChangeKind::SetPersonalMessage(p.map(str::to_owned)),
        )]
    };
    assert_eq!(
        a.set_personal_message(Some("<Data/>"), &d),
        Ok(psm(Some("<Data/>")))
    );
    assert_eq!(
        a.set_personal_message(Some("0123456789"), &small),
        Ok(psm(Some("0123456789")))
    );
    assert_eq!(
        a.set_personal_message(Some("0123456789a"), &small),
        Err(err(ErrorCode::InvalidParameter))
    );
    assert_eq!(a.set_personal_message(Some(""), &d), Ok(psm(None)));
    assert_eq!(a.set_personal_message(None, &d), Ok(psm(None)));
}

#[test]
fn operations_do_not_mutate() {
    let a = alice();
    let before = a.clone();
    let zed = empty(ZED);
    let d = Limits::default();
    let _ = a.add(&req(FL, ZED, None, Some(1)), Some(&zed), "A", &d);
    let _ = a.remove(FL, BOB, None);
    let _ = a.remove_group(1, ExclusiveMembers::LeaveForwardList, &d);
    let _ = a.set_blp(Blp::Block);
    assert_eq!(a, before);
}

#[test]
fn apply_follows_each_change() {
    let mut a = alice();
    let d = Limits::default();
    let zed = empty(ZED);
    let mut version = a.version;
    let mut run = |a: &mut ContactList, changes: Vec<Change>| {
        for c in changes.iter().filter(|c| c.owner == ALICE) {
            assert!(a.apply(c));
            version += 1;
            assert_eq!(a.version, version);
        }
        for c in changes.iter().filter(|c| c.owner != ALICE) {
            assert!(!a.apply(c), "another owner's change is ignored");
            assert_eq!(a.version, version);
        }
    };

    let changes = a
        .add(&req(FL, ZED, Some("Zed"), Some(2)), Some(&zed), "Alice", &d)
        .unwrap();
    run(&mut a, changes);
    let z = a.contact(ZED).unwrap();
    assert_eq!((z.lists.bits(), &*z.nickname), (1, "Zed"));
    assert_eq!(groups_of(z), BTreeSet::from([2]));

    // A second list keeps the nickname; the forward list replaces it.
    let changes = a
        .add(&req(AL, ZED, None, None), Some(&zed), "Alice", &d)
        .unwrap();
    run(&mut a, changes);
    assert_eq!(a.contacts[ZED].lists.bits(), 3);
    assert_eq!(a.contacts[ZED].nickname.as_ref(), "Zed");
    let changes = a
        .add(&req(AL, ERIN, None, None), Some(&zed), "Alice", &d)
        .unwrap();
    run(&mut a, changes);
    let changes = a
        .add(
            &req(FL, ERIN, Some("Erin E"), None),
            Some(&zed),
            "Alice",
            &d,
        )
        .unwrap();
    let erin_guid = a.contacts[ERIN].guid;
    run(&mut a, changes);
    assert_eq!(a.contacts[ERIN].nickname.as_ref(), "Erin E");
    assert_eq!(
        a.contacts[ERIN].guid, erin_guid,
        "an existing entry keeps its GUID"
    );

    let changes = a.add_to_group(ZED, 1).unwrap();
    run(&mut a, changes);
    assert_eq!(groups_of(&a.contacts[ZED]), BTreeSet::from([1, 2]));
    let changes = a.remove(FL, ZED, Some(2)).unwrap();
    run(&mut a, changes);
    assert_eq!(groups_of(&a.contacts[ZED]), BTreeSet::from([1]));

    // Leaving FL leaves every group; an entry on no list disappears.
    let changes = a.remove(FL, ZED, None).unwrap();
    run(&mut a, changes);
    assert_eq!(a.contacts[ZED].lists.bits(), 2);
    assert!(a.contacts[ZED].groups().is_empty());
    let changes = a.remove(AL, ZED, None).unwrap();
    run(&mut a, changes);
    assert!(a.contact(ZED).is_none());

    let changes = a.add_group("Family", &d).unwrap();
    run(&mut a, changes);
    assert_eq!(a.groups[&3].name, "Family");
    let changes = a.rename_group(3, "Kin", &d).unwrap();
    run(&mut a, changes);
    assert_eq!(a.groups[&3].name, "Kin");
    let changes = a
        .remove_group(1, ExclusiveMembers::LeaveForwardList, &d)
        .unwrap();
    run(&mut a, changes);
    assert!(!a.groups.contains_key(&1));
    assert!(!a.is_on(BOB, FL), "bob was only in Friends");
    assert!(a.is_on(BOB, AL) && a.is_on(BOB, RL));
    assert_eq!(groups_of(&a.contacts[CAROL]), BTreeSet::from([2]));

    for changes in [
        a.set_gtc(Gtc::DontAsk).unwrap(),
        a.set_blp(Blp::Block).unwrap(),
        a.set_property(Property::HomePhone, Some("1 2"), &d)
            .unwrap(),
        a.set_property(Property::MobileContact, Some("Y"), &d)
            .unwrap(),
        a.set_display_name("Al").unwrap(),
        a.set_contact_nickname(CAROL, "Caz").unwrap(),
    ] {
        run(&mut a, changes);
    }
    assert_eq!(a.settings.gtc, Gtc::DontAsk);
    assert_eq!(a.settings.blp, Blp::Block);
    assert_eq!(a.settings.phones.home.as_deref(), Some("1 2"));
    assert!(a.settings.phones.mobile_contact);
    assert_eq!(a.contacts[CAROL].nickname.as_ref(), "Caz");

    // The personal message is not list data: no version bump.
    let v = a.version;
    for c in a.set_personal_message(Some("<Data/>"), &d).unwrap() {
        assert!(a.apply(&c));
    }
    assert_eq!(a.version, v);
    assert_eq!(a.settings.personal_message.as_deref(), Some("<Data/>"));
}

#[test]
fn apply_is_total() {
    // Changes that no longer fit change nothing but the version, as in the store.
    let mut a = alice();
    let before = a.clone();
    let stale = [
        rem_from(ZED, FL),
        ChangeKind::AddToGroup {
            email: ZED.into(),
            group: 1,
        },
        ChangeKind::AddToGroup {
            email: BOB.into(),
            group: 9,
        },
        ChangeKind::RemoveFromGroup {
            email: ZED.into(),
            group: 1,
        },
        ChangeKind::RenameGroup {
            id: 9,
            name: "x".to_owned(),
        },
        ChangeKind::RemoveGroup {
            id: 9,
            dropped: vec![ZED.to_owned()],
        },
        ChangeKind::SetContactNickname {
            email: ZED.into(),
            nickname: "z".into(),
        },
    ];
    for kind in &stale {
        assert!(a.apply(&ch(ALICE, kind.clone())));
    }
    assert_eq!(a.version, before.version + stale.len() as u64);
    a.version = before.version;
    assert_eq!(a, before);

    // A group named in AddToList that does not exist is not joined.
    assert!(a.apply(&ch(ALICE, add_to(ZED, FL, "Zed", Some(9)))));
    assert!(a.contacts[ZED].groups().is_empty());
}

/// Checks the forward/reverse invariant over a set of accounts that only know each other.
fn assert_consistent(lists: &BTreeMap<String, ContactList>) {
    for (owner, list) in lists {
        for c in list.contacts.values() {
            assert!(!c.lists.is_empty(), "{owner}: {} on no list", c.email);
            assert!(
                !(c.lists.contains(AL) && c.lists.contains(BL)),
                "{owner}: {} on AL and BL",
                c.email
            );
            assert!(
                c.lists.contains(FL) || c.groups().is_empty(),
                "{owner}: {} grouped but not on FL",
                c.email
            );
            assert!(c.groups().iter().all(|g| list.groups.contains_key(&g)));
            let other = &lists[&*c.email];
            assert_eq!(
                c.lists.contains(FL),
                other.is_on(owner, RL),
                "{owner} FL {} vs {}'s RL",
                c.email,
                c.email
            );
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Add(usize, List, usize, Option<u32>),
    Remove(usize, List, usize, Option<u32>),
    AddGroup(usize),
    RemoveGroup(usize, u32, bool),
}

fn op() -> impl Strategy<Value = Op> {
    let list = prop_oneof![Just(FL), Just(AL), Just(BL), Just(RL)];
    let group = proptest::option::of(0u32..4);
    prop_oneof![
        (0..3usize, list.clone(), 0..3usize, group.clone())
            .prop_map(|(a, l, b, g)| Op::Add(a, l, b, g)),
        (0..3usize, list, 0..3usize, group).prop_map(|(a, l, b, g)| Op::Remove(a, l, b, g)),
        (0..3usize).prop_map(Op::AddGroup),
        (0..3usize, 0u32..4, any::<bool>()).prop_map(|(a, g, e)| Op::RemoveGroup(a, g, e)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_operations_keep_lists_consistent(ops in proptest::collection::vec(op(), 1..40)) {
        let users = [ALICE, BOB, CAROL];
        let limits = Limits { max_groups: 4, max_forward: 2, ..Limits::default() };
        let mut lists: BTreeMap<String, ContactList> =
            users.iter().map(|u| ((*u).to_owned(), empty(u))).collect();
        for op in ops {
            let result = match &op {
                Op::Add(a, list, b, group) => {
                    let peer = lists[users[*b]].clone();
                    lists[users[*a]].add(&req(*list, users[*b], None, *group), Some(&peer), users[*a], &limits)
                }
                Op::Remove(a, list, b, group) => lists[users[*a]].remove(*list, users[*b], *group),
                Op::AddGroup(a) => lists[users[*a]].add_group("G", &limits),
                Op::RemoveGroup(a, g, keep) => {
                    let exclusive = if *keep { ExclusiveMembers::StayUngrouped } else { ExclusiveMembers::LeaveForwardList };
                    lists[users[*a]].remove_group(*g, exclusive, &limits)
                }
            };
            if let Ok(changes) = result {
                for c in &changes {
                    let applied = lists.get_mut(&c.owner).map(|l| l.apply(c));
                    prop_assert_eq!(applied, Some(true));
                }
            }
            assert_consistent(&lists);
        }
    }

    #[test]
    fn guid_parse_never_panics(s in "(?s).{0,40}") {
        if let Ok(g) = Guid::parse(&s) {
            prop_assert_eq!(g.text().to_string(), s.to_ascii_lowercase());
        }
    }
}
