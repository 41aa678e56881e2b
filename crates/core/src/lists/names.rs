//! [`Names`]: one shared copy of each e-mail address (and stored name) held by the online users' lists, and
//! [`Name`], the one-word handle list entries keep to it.
//!
//! Every online user's [`ContactList`] names its contacts, and the same people appear on many lists: with
//! twenty mutual contacts each, an address is held by twenty lists. Interned, each list entry is an 8-byte
//! pointer to one shared copy instead of its own heap string (a 32-byte allocation for a usual address, and
//! another for the stored name, which is mostly the address or the contact's display name).
//!
//! [`Names::global`] is the process's one table: the store builds loaded lists with it and
//! [`ContactList::apply`] the entries it creates, so every list shares without anyone passing a table around.
//! It is a cache of immutable strings, so sharing it between servers in one process (tests) changes nothing
//! they can observe.
//!
//! [`ContactList`]: super::ContactList
//! [`ContactList::apply`]: super::ContactList::apply

use std::borrow::Borrow;
use std::collections::HashSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

#[cfg(test)]
use super::ContactList;

static GLOBAL: LazyLock<Names> = LazyLock::new(Names::new);

/// An immutable, cheaply cloned string: a contact's address or stored name.
///
/// One word rather than the two of an `Arc<str>`: every contact of every online user holds two of these, and the
/// text's own allocation is shared through [`Names`] anyway, so the one extra indirection per distinct name
/// costs far less than a second word in every list entry. It compares, orders and hashes as its text, so it can
/// key maps looked up by `&str`.
#[derive(Clone)]
pub struct Name(Arc<Box<str>>);

impl Name {
    /// A copy of `s` of its own, not shared through any table (tests, and strings nobody else holds).
    pub fn new(s: &str) -> Name {
        Name(Arc::new(Box::from(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether both are the same shared copy (not merely equal text).
    pub fn ptr_eq(a: &Name, b: &Name) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }

    /// How many handles (lists, the table, sessions) hold this copy.
    fn holders(&self) -> usize {
        Arc::strong_count(&self.0)
    }
}

impl Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        Name::ptr_eq(self, other) || *self.0 == *other.0
    }
}

impl Eq for Name {}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        **self.0 == *other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        **self.0 == **other
    }
}

impl PartialEq<String> for Name {
    fn eq(&self, other: &String) -> bool {
        **self.0 == **other
    }
}

impl PartialEq<Name> for str {
    fn eq(&self, other: &Name) -> bool {
        *self == **other.0
    }
}

impl PartialEq<Name> for &str {
    fn eq(&self, other: &Name) -> bool {
        **self == **other.0
    }
}

impl PartialEq<Name> for String {
    fn eq(&self, other: &Name) -> bool {
        **self == **other.0
    }
}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Name) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Name) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for Name {
    /// As the text hashes, which `Borrow<str>` requires.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Name {
        Name::new(s)
    }
}

impl From<String> for Name {
    fn from(s: String) -> Name {
        Name(Arc::new(s.into_boxed_str()))
    }
}

/// The shared copies. Entries nobody else holds any more are swept out whenever the table has doubled since the
/// last sweep, so it never holds much more than twice the names in use and a sweep costs O(1) per interning.
#[derive(Debug, Default)]
pub struct Names {
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    set: HashSet<Name>,
    /// Entries after the last sweep.
    kept: usize,
}

/// Names kept before the first sweep.
const FIRST_SWEEP: usize = 1024;

impl Table {
    fn intern(&mut self, s: &str) -> Name {
        if let Some(shared) = self.set.get(s) {
            return shared.clone();
        }
        if self.set.len() >= (2 * self.kept).max(FIRST_SWEEP) {
            // Only the table holds these: no list names them any more.
            self.set.retain(|name| name.holders() > 1);
            self.set.shrink_to(self.set.len() * 2);
            self.kept = self.set.len();
        }
        let shared = Name::new(s);
        self.set.insert(shared.clone());
        shared
    }
}

impl Names {
    pub fn new() -> Names {
        Names::default()
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The process's table.
    pub fn global() -> &'static Names {
        &GLOBAL
    }

    /// The shared copy of `s`.
    pub fn intern(&self, s: &str) -> Name {
        self.table().intern(s)
    }

    /// The shared copies of a contact's address and stored name, under one lock; a name equal to the address is
    /// the address itself.
    pub fn contact(&self, email: &str, nickname: &str) -> (Name, Name) {
        let mut table = self.table();
        let email = table.intern(email);
        let nickname = if *email == *nickname {
            email.clone()
        } else {
            table.intern(nickname)
        };
        (email, nickname)
    }

    /// How many names the table holds (those in use, and any not yet swept).
    pub fn len(&self) -> usize {
        self.table().set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::lists::{Change, ChangeKind, Guid, List};

    fn list_with(owner: &str, contacts: &[&str]) -> ContactList {
        let mut l = ContactList::new(owner, Guid::random());
        for c in contacts {
            l.apply(&Change {
                owner: owner.to_owned(),
                kind: ChangeKind::AddToList {
                    email: (*c).to_owned(),
                    list: List::Forward,
                    nickname: (*c).to_owned(),
                    guid: Guid::random(),
                    group: None,
                },
            });
        }
        l
    }

    #[test]
    fn lists_share_one_copy_of_each_name() {
        // Names made up for this test, so other tests using the global table cannot interfere.
        let a = list_with("a@names.test", &["b@names.test", "c@names.test"]);
        let b = list_with("b@names.test", &["c@names.test"]);
        let (ac, bc) = (&a.contacts["c@names.test"], &b.contacts["c@names.test"]);
        assert!(Name::ptr_eq(&ac.email, &bc.email));
        // A stored name equal to the address is the address itself.
        assert!(Name::ptr_eq(&ac.email, &ac.nickname));
    }

    #[test]
    fn different_stored_names_stay_different() {
        let names = Names::new();
        let (email, nick) = names.contact("b@x", "Bee");
        assert_eq!((&*email, &*nick), ("b@x", "Bee"));
        let (again, same) = names.contact("b@x", "b@x");
        assert!(Name::ptr_eq(&email, &again) && Name::ptr_eq(&again, &same));
        assert_eq!(names.len(), 2);
    }

    #[test]
    fn names_nobody_holds_are_swept() {
        let names = Names::new();
        let kept = names.intern("kept@x");
        for i in 0..(4 * FIRST_SWEEP) {
            drop(names.intern(&format!("u{i}@x")));
        }
        // Never more than twice what was kept at the last sweep, or the first threshold.
        assert!(names.len() <= FIRST_SWEEP + 1, "{}", names.len());
        assert!(Name::ptr_eq(&kept, &names.intern("kept@x")));
    }
}
