//! Tests of the SQLite [`ContactStore`] against real database files: round trips, versions, atomicity, cascades,
//! the migration's backfill, agreement with `ContactList::apply` under random operations, and durability across
//! SIGKILL.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;

use msgr_core::lists::{
    AddRequest, Blp, Change, ChangeKind, ContactList, ExclusiveMembers, Gtc, Guid, Limits, List,
    ListError, Property, DEFAULT_GROUP_NAME,
};
use tempfile::TempDir;

use super::*;
use crate::{ContactStore, Store};

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const CAROL: &str = "carol@example.com";
const DAVE: &str = "dave@example.com";

fn new_account(email: &str) -> NewAccount {
    NewAccount {
        email: email.to_owned(),
        display_name: format!("{email} name"),
        password_hash: "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA".to_owned(),
        md5_secret: None,
    }
}

fn temp_db() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("msgr.sqlite");
    (dir, path)
}

/// A store with some accounts, and the in-memory lists a server would keep, updated the way a server would.
struct World {
    _dir: TempDir,
    path: PathBuf,
    store: Store,
    lists: BTreeMap<String, ContactList>,
    limits: Limits,
}

impl World {
    fn new(users: &[&str], options: SqliteOptions) -> World {
        let (dir, path) = temp_db();
        let store = Store::from(SqliteStore::open_with(&path, options).unwrap());
        let mut lists = BTreeMap::new();
        for u in users {
            store.create_account(new_account(u)).unwrap();
            lists.insert((*u).to_owned(), store.load_list(u).unwrap());
        }
        World {
            _dir: dir,
            path,
            store,
            lists,
            limits: Limits::default(),
        }
    }

    fn list(&self, owner: &str) -> &ContactList {
        &self.lists[owner]
    }

    /// Persists an operation's changes, then applies them in memory, checking the versions the store reports.
    fn run(&mut self, result: Result<Vec<Change>, ListError>) -> Vec<(String, u64)> {
        let changes = result.unwrap();
        let versions = self.store.apply(&changes).unwrap();
        for c in &changes {
            assert!(self.lists.get_mut(&c.owner).unwrap().apply(c));
        }
        for (owner, version) in &versions {
            assert_eq!(self.lists[owner].version, *version, "{owner}");
        }
        versions
    }

    fn add(
        &mut self,
        owner: &str,
        list: List,
        email: &str,
        nickname: Option<&str>,
        group: Option<u32>,
    ) {
        let req = AddRequest {
            list,
            email,
            nickname,
            group,
        };
        let peer = self.lists.get(email).cloned();
        let display = format!("{owner} name");
        let result = self.lists[owner].add(&req, peer.as_ref(), &display, &self.limits);
        self.run(result);
    }

    /// Every account's stored list equals its in-memory copy.
    fn assert_stored_equals_memory(&self) {
        for (owner, list) in &self.lists {
            assert_eq!(&self.store.load_list(owner).unwrap(), list, "{owner}");
            assert_eq!(self.store.list_version(owner).unwrap(), list.version);
        }
    }
}

#[test]
fn store_is_a_contact_store() {
    fn assert_contact_store<T: ContactStore + 'static>() {}
    assert_contact_store::<SqliteStore>();
    assert_contact_store::<Store>();
    let _: Option<Arc<dyn ContactStore>> = None;
}

#[test]
fn new_accounts_have_an_empty_list_with_official_defaults() {
    let w = World::new(&[ALICE, BOB], SqliteOptions::default());
    let alice = w.store.load_list("Alice@Example.com").unwrap();
    let group_zero = alice.groups[&0].guid;
    assert_eq!(alice, ContactList::new(ALICE, group_zero));
    assert_eq!(alice.groups[&0].name, DEFAULT_GROUP_NAME);
    assert_eq!(alice.settings.gtc, Gtc::Ask);
    assert_eq!(alice.settings.blp, Blp::Allow);
    // Group 0's GUID is stored: stable across loads, different between accounts, a version-4 form.
    assert_eq!(
        w.store.load_list(ALICE).unwrap().groups[&0].guid,
        group_zero
    );
    assert_ne!(w.store.load_list(BOB).unwrap().groups[&0].guid, group_zero);
    assert_eq!(&group_zero.text()[14..15], "4");
    assert!("89ab".contains(&group_zero.text()[19..20]));
    assert_eq!(w.store.list_version("ALICE@example.com").unwrap(), 0);
}

#[test]
fn unknown_owner_is_account_not_found() {
    let w = World::new(&[ALICE], SqliteOptions::default());
    assert!(matches!(
        w.store.load_list("ghost@example.com"),
        Err(StoreError::AccountNotFound(e)) if e == "ghost@example.com"
    ));
    assert!(matches!(
        w.store.list_version("ghost@example.com"),
        Err(StoreError::AccountNotFound(_))
    ));
    assert_eq!(w.store.apply(&[]).unwrap(), []);
}

#[test]
fn full_list_round_trips() {
    let mut w = World::new(&[ALICE, BOB, CAROL, DAVE], SqliteOptions::default());
    let d = Limits::default();
    let a = |w: &World| w.list(ALICE).clone();

    let r = a(&w).add_group("Friends", &d);
    w.run(r);
    let r = a(&w).add_group("Work ♥ & co", &d);
    w.run(r);
    w.add(ALICE, List::Forward, BOB, Some("Bobby B"), Some(1));
    w.add(ALICE, List::Forward, BOB, None, Some(2));
    w.add(ALICE, List::Allow, BOB, None, None);
    w.add(ALICE, List::Forward, CAROL, Some("Carol"), Some(0));
    w.add(ALICE, List::Block, CAROL, None, None);
    w.add(ALICE, List::Forward, DAVE, None, None);
    w.add(BOB, List::Forward, ALICE, Some("Al"), None);
    w.add(CAROL, List::Block, ALICE, None, None);
    w.add(DAVE, List::Allow, ALICE, None, None);
    let r = a(&w).rename_group(2, "Office", &d);
    w.run(r);
    let r = a(&w).set_gtc(Gtc::DontAsk);
    w.run(r);
    let r = a(&w).set_blp(Blp::Block);
    w.run(r);
    for (p, v) in [
        (Property::HomePhone, Some("01 234")),
        (Property::WorkPhone, Some("+1 (555) 0100")),
        (Property::MobilePhone, Some("56 789")),
        (Property::MobileContact, Some("Y")),
        (Property::MobileEnabled, Some("Y")),
        (Property::WorkPhone, None),
    ] {
        let r = a(&w).set_property(p, v, &d);
        w.run(r);
    }
    let r = a(&w).set_personal_message(Some("<Data><PSM>hi &amp; bye</PSM></Data>"), &d);
    w.run(r);
    let r = a(&w).set_contact_nickname(BOB, "Bob (work)");
    w.run(r);
    let r = a(&w).set_display_name("Alice ✓");
    w.run(r);

    w.assert_stored_equals_memory();
    let alice = w.store.load_list(ALICE).unwrap();
    assert_eq!(alice.contacts[BOB].lists.bits(), 1 | 2 | 8);
    assert_eq!(
        alice.contacts[BOB].groups().iter().collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(alice.contacts[BOB].nickname.as_ref(), "Bob (work)");
    assert_eq!(alice.contacts[CAROL].lists.bits(), 1 | 4);
    // Dave allowing Alice is Dave's business: it puts nothing on Alice's lists.
    assert_eq!(alice.contacts[DAVE].lists.bits(), 1);
    assert!(w.store.load_list(DAVE).unwrap().is_on(ALICE, List::Allow));
    assert_eq!(alice.groups[&2].name, "Office");
    assert_eq!(alice.settings.phones.work, None);
    assert!(alice.settings.phones.mobile_enabled);
    // Bob's reverse-list entry for Alice carries Alice's display name at the time she added him.
    let bob = w.store.load_list(BOB).unwrap();
    assert_eq!(bob.contacts[ALICE].lists.bits(), 1 | 8);
    assert_eq!(bob.contacts[ALICE].nickname.as_ref(), "Al");
    assert_eq!(
        w.store.load_list(CAROL).unwrap().contacts[ALICE]
            .lists
            .bits(),
        4 | 8
    );
    assert_eq!(
        w.store.account(ALICE).unwrap().unwrap().display_name,
        "Alice ✓"
    );

    // Removing a contact from FL takes the owner off the contact's RL, in the same transaction.
    let r = a(&w).remove(List::Forward, BOB, None);
    w.run(r);
    let r = a(&w).remove_group(2, ExclusiveMembers::LeaveForwardList, &d);
    w.run(r);
    w.assert_stored_equals_memory();
    assert!(!w.store.load_list(BOB).unwrap().is_on(ALICE, List::Reverse));
}

#[test]
fn versions_bump_once_per_change() {
    let mut w = World::new(&[ALICE, BOB], SqliteOptions::default());
    let d = Limits::default();
    // An FL add is two changes for two owners: one bump each.
    let req = AddRequest {
        list: List::Forward,
        email: BOB,
        nickname: None,
        group: None,
    };
    let r = w.list(ALICE).add(&req, Some(w.list(BOB)), "Alice", &d);
    assert_eq!(w.run(r), [(ALICE.to_owned(), 1), (BOB.to_owned(), 1)]);

    // Several changes for one owner in one call: one bump per change, one entry in the answer.
    let list = w.list(ALICE).clone();
    let mut changes = list.set_blp(Blp::Block).unwrap();
    changes.extend(list.set_gtc(Gtc::DontAsk).unwrap());
    changes.extend(list.add_group("G", &d).unwrap());
    assert_eq!(w.run(Ok(changes)), [(ALICE.to_owned(), 4)]);

    // The personal message is not list data.
    let r = w.list(ALICE).set_personal_message(Some("<Data/>"), &d);
    assert_eq!(w.run(r), [(ALICE.to_owned(), 4)]);
    assert_eq!(w.store.list_version(ALICE).unwrap(), 4);
    assert_eq!(w.store.list_version(BOB).unwrap(), 1);

    // Owners are reported in order of first appearance, lowercased, whatever case the change used.
    let bob_first = [
        Change {
            owner: "BOB@example.com".to_owned(),
            kind: ChangeKind::SetGtc(Gtc::DontAsk),
        },
        Change {
            owner: ALICE.to_owned(),
            kind: ChangeKind::SetGtc(Gtc::Ask),
        },
        Change {
            owner: BOB.to_owned(),
            kind: ChangeKind::SetBlp(Blp::Block),
        },
    ];
    assert_eq!(
        w.store.apply(&bob_first).unwrap(),
        [(BOB.to_owned(), 3), (ALICE.to_owned(), 5)]
    );
}

#[test]
fn apply_is_all_or_nothing() {
    let mut w = World::new(&[ALICE, BOB], SqliteOptions::default());
    w.add(ALICE, List::Forward, BOB, None, None);
    let before: Vec<ContactList> = [ALICE, BOB].map(|u| w.store.load_list(u).unwrap()).into();

    // A valid change for each real owner, with an owner that has no account in the middle.
    let changes = [
        Change {
            owner: ALICE.to_owned(),
            kind: ChangeKind::SetBlp(Blp::Block),
        },
        Change {
            owner: "ghost@example.com".to_owned(),
            kind: ChangeKind::SetGtc(Gtc::DontAsk),
        },
        Change {
            owner: BOB.to_owned(),
            kind: ChangeKind::RemoveFromList {
                email: ALICE.to_owned(),
                list: List::Reverse,
            },
        },
    ];
    assert!(matches!(
        w.store.apply(&changes),
        Err(StoreError::AccountNotFound(e)) if e == "ghost@example.com"
    ));
    let after: Vec<ContactList> = [ALICE, BOB].map(|u| w.store.load_list(u).unwrap()).into();
    assert_eq!(before, after);

    // A change the database refuses (a group GUID already taken) rolls back the changes before it as well.
    let taken = before[0].groups[&0].guid;
    let changes = [
        Change {
            owner: BOB.to_owned(),
            kind: ChangeKind::SetBlp(Blp::Block),
        },
        Change {
            owner: ALICE.to_owned(),
            kind: ChangeKind::AddGroup {
                id: 1,
                guid: taken,
                name: "dup".to_owned(),
            },
        },
    ];
    assert!(matches!(
        w.store.apply(&changes),
        Err(StoreError::Sqlite(_))
    ));
    let after: Vec<ContactList> = [ALICE, BOB].map(|u| w.store.load_list(u).unwrap()).into();
    assert_eq!(before, after);
}

/// Counts the rows of `table` that belong to the account with row id `account`.
fn rows_of(conn: &Connection, table: &str, account: i64) -> i64 {
    conn.query_row(
        &format!("SELECT COUNT(*) FROM {table} WHERE account_id = ?1"),
        [account],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn deleting_an_account_deletes_its_lists_and_its_places_on_others() {
    let mut w = World::new(&[ALICE, BOB, CAROL], SqliteOptions::default());
    let r = w.list(ALICE).add_group("Friends", &Limits::default());
    w.run(r);
    w.add(ALICE, List::Forward, BOB, None, Some(1));
    w.add(BOB, List::Forward, ALICE, None, None);
    w.add(CAROL, List::Block, ALICE, None, None);
    w.add(CAROL, List::Allow, BOB, None, None);
    let alice_id = w.store.account(ALICE).unwrap().unwrap().id;
    let bob_version = w.store.list_version(BOB).unwrap();
    let carol_version = w.store.list_version(CAROL).unwrap();

    w.store.delete_account("Alice@example.com").unwrap();

    let conn = Connection::open(&w.path).unwrap();
    for table in [
        "list_settings",
        "list_groups",
        "contacts",
        "contact_group_members",
    ] {
        assert_eq!(rows_of(&conn, table, alice_id), 0, "{table}");
    }
    // Bob had Alice on FL and RL, Carol on BL and RL: both entries are gone, one version step each.
    let bob = w.store.load_list(BOB).unwrap();
    assert!(bob.contact(ALICE).is_none());
    assert_eq!(bob.version, bob_version + 1);
    let carol = w.store.load_list(CAROL).unwrap();
    assert!(carol.contact(ALICE).is_none());
    assert!(carol.is_on(BOB, List::Allow), "other entries stay");
    assert_eq!(carol.version, carol_version + 1);

    // The name can be registered again and starts with a clean slate on every side.
    w.store.create_account(new_account(ALICE)).unwrap();
    let alice = w.store.load_list(ALICE).unwrap();
    assert_eq!(alice, ContactList::new(ALICE, alice.groups[&0].guid));
}

#[test]
fn migration_backfills_accounts_created_before_it() {
    let (_dir, path) = temp_db();
    let v1 = &migrations::SQLITE[..1];
    let store = SqliteStore::open_migrated(&path, SqliteOptions::default(), v1).unwrap();
    store.create_account(new_account(ALICE)).unwrap();
    store.create_account(new_account(BOB)).unwrap();
    drop(store);

    let store = SqliteStore::open(&path).unwrap();
    let alice = store.load_list(ALICE).unwrap();
    let bob = store.load_list(BOB).unwrap();
    assert_eq!(alice, ContactList::new(ALICE, alice.groups[&0].guid));
    assert_ne!(alice.groups[&0].guid, bob.groups[&0].guid);
    let text = alice.groups[&0].guid.text();
    let guid = text.as_str();
    assert_eq!(Guid::parse(guid).unwrap().text(), text);
    assert_eq!(&guid[14..15], "4");
    assert!("89ab".contains(&guid[19..20]));
}

#[test]
fn corrupt_rows_are_reported() {
    let w = World::new(&[ALICE, BOB], SqliteOptions::default());
    let conn = Connection::open(&w.path).unwrap();
    conn.execute(
        "DELETE FROM list_groups WHERE group_id = 0 AND account_id = (SELECT id FROM accounts WHERE email = ?1)",
        [ALICE],
    )
    .unwrap();
    conn.execute(
        "UPDATE list_groups SET guid = 'not-a-guid' WHERE account_id = (SELECT id FROM accounts WHERE email = ?1)",
        [BOB],
    )
    .unwrap();
    for owner in [ALICE, BOB] {
        let got = w.store.load_list(owner);
        assert!(
            matches!(got, Err(StoreError::Corrupt(_))),
            "{owner}: {got:?}"
        );
    }
}

/// A small deterministic generator, so the random test needs no extra dependency and fails reproducibly.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % n as u64).unwrap()
    }
}

#[test]
fn random_operations_store_what_memory_holds() {
    let users = [ALICE, BOB, CAROL, DAVE];
    // Durability is tested elsewhere; without fsyncs this test stays fast.
    let relaxed = SqliteOptions {
        synchronous_full: false,
        ..SqliteOptions::default()
    };
    let mut w = World::new(&users, relaxed);
    w.limits = Limits {
        max_groups: 4,
        max_forward: 3,
        ..Limits::default()
    };
    let lists = [List::Forward, List::Allow, List::Block, List::Reverse];
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut applied = 0;
    for step in 0..400 {
        let owner = users[rng.below(users.len())];
        let other = users[rng.below(users.len())];
        let list = lists[rng.below(lists.len())];
        let group = [None, Some(0), Some(1), Some(2), Some(3)][rng.below(5)];
        let me = w.list(owner).clone();
        let limits = w.limits;
        let result = match rng.below(9) {
            0..=2 => {
                let req = AddRequest {
                    list,
                    email: other,
                    nickname: [None, Some("Nick")][rng.below(2)],
                    group,
                };
                me.add(&req, Some(w.list(other)), "Display", &limits)
            }
            3..=4 => me.remove(list, other, group),
            5 => me.add_group(["Friends", "Work"][rng.below(2)], &limits),
            6 => {
                let exclusive = [
                    ExclusiveMembers::LeaveForwardList,
                    ExclusiveMembers::StayUngrouped,
                ][rng.below(2)];
                me.remove_group(group.unwrap_or(1), exclusive, &limits)
            }
            7 => me.set_blp([Blp::Allow, Blp::Block][rng.below(2)]),
            _ => me.set_contact_nickname(other, "Renamed"),
        };
        if result.is_ok() {
            applied += 1;
            w.run(result);
        }
        if step % 25 == 0 {
            w.assert_stored_equals_memory();
        }
    }
    w.assert_stored_equals_memory();
    assert!(applied > 100, "only {applied} operations succeeded");
}

/// Set in the child process of [`list_changes_survive_kill_9`] to the database path it must write to.
const KILL_CHILD_ENV: &str = "MSGR_STORE_TEST_KILL_CHILD_LISTS_DB";
/// Printed by the child after each acknowledged `apply`, followed by Alice's version.
const ACK: &str = "msgr-store-lists-acknowledged";
/// Printed by the child when it has nothing more to write.
const DONE: &str = "msgr-store-lists-done";
/// How many contacts the child puts on Alice's allow list, one acknowledged apply each.
const KILL_CONTACTS: usize = 12;

fn kill_contact(i: usize) -> String {
    format!("user{i}@example.com")
}

#[test]
fn list_changes_survive_kill_9() {
    if let Some(path) = std::env::var_os(KILL_CHILD_ENV) {
        // Child: apply changes one acknowledged call at a time, each decided on the current state as a server
        // would, report each, then wait to be killed.
        let store = Store::open_sqlite(Path::new(&path)).unwrap();
        let limits = Limits::default();
        let mut alice = store.load_list(ALICE).unwrap();
        let persist = |alice: &mut ContactList, changes: Vec<Change>| {
            let versions = store.apply(&changes).unwrap();
            for c in &changes {
                alice.apply(c);
            }
            println!("{ACK} {}", versions[0].1);
        };
        let changes = alice.add_group("Friends", &limits).unwrap();
        persist(&mut alice, changes);
        let changes = alice.set_blp(Blp::Block).unwrap();
        persist(&mut alice, changes);
        for i in 0..KILL_CONTACTS {
            let email = kill_contact(i);
            let req = AddRequest {
                list: List::Allow,
                email: &email,
                nickname: None,
                group: None,
            };
            let peer = ContactList::new(&email, Guid::random());
            let changes = alice.add(&req, Some(&peer), "Alice", &limits).unwrap();
            persist(&mut alice, changes);
        }
        let req = AddRequest {
            list: List::Forward,
            email: BOB,
            nickname: Some("Bob"),
            group: Some(1),
        };
        let bob = ContactList::new(BOB, Guid::random());
        let changes = alice.add(&req, Some(&bob), "Alice", &limits).unwrap();
        persist(&mut alice, changes);
        println!("{DONE}");
        loop {
            thread::park();
        }
    }

    let (_dir, path) = temp_db();
    {
        let store = Store::open_sqlite(&path).unwrap();
        for email in [ALICE.to_owned(), BOB.to_owned()]
            .into_iter()
            .chain((0..KILL_CONTACTS).map(kill_contact))
        {
            store.create_account(new_account(&email)).unwrap();
        }
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sqlite::contact_tests::list_changes_survive_kill_9",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(KILL_CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut last_ack = None;
    let mut done = false;
    for line in BufReader::new(stdout)
        .lines()
        .map_while(std::result::Result::ok)
    {
        if let Some(v) = line.strip_prefix(ACK) {
            last_ack = Some(v.trim().parse::<u64>().unwrap());
        }
        if line.contains(DONE) {
            done = true;
            break;
        }
    }
    // SIGKILL on Unix: no destructors, no close, no checkpoint.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(done, "child stopped before writing everything");

    let store = Store::open_sqlite(&path).unwrap();
    let alice = store.load_list(ALICE).unwrap();
    assert_eq!(Some(alice.version), last_ack);
    assert_eq!(alice.version, 2 + KILL_CONTACTS as u64 + 1);
    assert_eq!(alice.settings.blp, Blp::Block);
    assert_eq!(alice.groups[&1].name, "Friends");
    assert_eq!(alice.count(List::Allow), KILL_CONTACTS);
    assert!(alice.contacts[BOB].groups().contains(1));
    assert!(store.load_list(BOB).unwrap().is_on(ALICE, List::Reverse));
}

#[test]
fn contact_phones_of_forward_list_contacts_that_allow_the_owner() {
    let mut w = World::new(&[ALICE, BOB, CAROL, DAVE], SqliteOptions::default());
    // alice has bob, carol and dave on FL; dave has no phones.
    for who in [BOB, CAROL, DAVE] {
        w.add(ALICE, List::Forward, who, Some(who), Some(0));
    }
    let limits = w.limits;
    let r = w.lists[BOB].set_property(Property::HomePhone, Some("01 234"), &limits);
    w.run(r);
    let r = w.lists[BOB].set_property(Property::MobileContact, Some("Y"), &limits);
    w.run(r);
    let r = w.lists[CAROL].set_property(Property::WorkPhone, Some("55"), &limits);
    w.run(r);
    let phones = w.store.contact_phones(ALICE).unwrap();
    assert_eq!(phones.len(), 2);
    assert_eq!(phones[BOB].home.as_deref(), Some("01 234"));
    assert!(phones[BOB].mobile_contact);
    assert_eq!(phones[CAROL].work.as_deref(), Some("55"));
    // carol blocks alice: her numbers are no longer alice's to see.
    w.add(CAROL, List::Block, ALICE, None, None);
    let phones = w.store.contact_phones(ALICE).unwrap();
    assert_eq!(phones.keys().collect::<Vec<_>>(), [BOB]);
    // Nobody has alice on FL with phones; unknown owners are simply empty.
    assert!(w.store.contact_phones(BOB).unwrap().is_empty());
    assert!(w
        .store
        .contact_phones("nobody@example.com")
        .unwrap()
        .is_empty());
}

#[test]
fn touch_watchers_bumps_those_who_list_the_contact() {
    let mut w = World::new(&[ALICE, BOB, CAROL], SqliteOptions::default());
    w.add(BOB, List::Forward, ALICE, Some(ALICE), Some(0));
    w.add(CAROL, List::Allow, ALICE, None, None);
    let (bob, carol) = (w.list(BOB).version, w.list(CAROL).version);
    let touched = w.store.touch_watchers(ALICE).unwrap();
    assert_eq!(touched, [(BOB.to_owned(), bob + 1)]);
    assert_eq!(w.store.list_version(BOB).unwrap(), bob + 1);
    assert_eq!(w.store.list_version(CAROL).unwrap(), carol);
    assert!(w
        .store
        .touch_watchers("nobody@example.com")
        .unwrap()
        .is_empty());
}
