//! [`ContactMap`] and [`GroupMap`]: one list owner's contacts and groups, as compact sorted vectors.

use super::{Contact, Group};
use std::ops::Index;

/// Every contact on any of one owner's lists, ordered by (lowercased) Passport name.
///
/// A sorted vector rather than a `BTreeMap<String, Contact>`: every online user's lists stay in memory, and for
/// the usual few dozen contacts the map's nodes (sized for eleven entries each) and its second copy of every
/// e-mail as the key cost more than the contacts themselves. Lookups are binary searches; inserting and removing
/// move at most a few kilobytes, and happen at human speed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContactMap {
    sorted: Vec<Contact>,
}

impl ContactMap {
    pub fn new() -> ContactMap {
        ContactMap::default()
    }

    fn find(&self, email: &str) -> Result<usize, usize> {
        self.sorted
            .binary_search_by(|c| c.email.as_str().cmp(email))
    }

    /// The contact whose (lowercased) Passport name is `email`.
    pub fn get(&self, email: &str) -> Option<&Contact> {
        self.find(email).ok().map(|i| &self.sorted[i])
    }

    pub fn get_mut(&mut self, email: &str) -> Option<&mut Contact> {
        match self.find(email) {
            Ok(i) => self.sorted.get_mut(i),
            Err(_) => None,
        }
    }

    pub fn contains_key(&self, email: &str) -> bool {
        self.find(email).is_ok()
    }

    /// Adds `contact` under its own `email`, replacing and returning an entry with the same name.
    pub fn insert(&mut self, contact: Contact) -> Option<Contact> {
        match self.find(&contact.email) {
            Ok(i) => Some(std::mem::replace(&mut self.sorted[i], contact)),
            Err(i) => {
                self.sorted.insert(i, contact);
                None
            }
        }
    }

    /// The contact named `email`, first inserting `make()` if there is none.
    pub fn get_or_insert_with(
        &mut self,
        email: &str,
        make: impl FnOnce() -> Contact,
    ) -> &mut Contact {
        let i = match self.find(email) {
            Ok(i) => i,
            Err(_) => {
                let contact = make();
                // Placed by its own name, so a caller's mismatch cannot break the order.
                match self.find(&contact.email) {
                    Ok(j) => {
                        self.sorted[j] = contact;
                        j
                    }
                    Err(j) => {
                        self.sorted.insert(j, contact);
                        j
                    }
                }
            }
        };
        &mut self.sorted[i]
    }

    pub fn remove(&mut self, email: &str) -> Option<Contact> {
        self.find(email).ok().map(|i| self.sorted.remove(i))
    }

    /// The contacts, ordered by Passport name.
    pub fn values(&self) -> std::slice::Iter<'_, Contact> {
        self.sorted.iter()
    }

    pub fn values_mut(&mut self) -> std::slice::IterMut<'_, Contact> {
        self.sorted.iter_mut()
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// Gives back spare capacity, e.g. after loading a whole list one contact at a time.
    pub fn shrink_to_fit(&mut self) {
        self.sorted.shrink_to_fit();
    }
}

impl Index<&str> for ContactMap {
    type Output = Contact;

    /// The contact named `email`; panics if there is none (for tests and checked invariants only).
    fn index(&self, email: &str) -> &Contact {
        match self.get(email) {
            Some(c) => c,
            None => panic!("no contact {email}"),
        }
    }
}

impl FromIterator<Contact> for ContactMap {
    fn from_iter<I: IntoIterator<Item = Contact>>(iter: I) -> Self {
        let mut sorted: Vec<Contact> = iter.into_iter().collect();
        sorted.sort_by(|a, b| a.email.cmp(&b.email));
        sorted.dedup_by(|later, earlier| later.email == earlier.email);
        ContactMap { sorted }
    }
}

/// The owner's groups, ordered by numeric id.
///
/// A sorted vector for the same reason as [`ContactMap`]: most users have a handful of groups, and a
/// `BTreeMap` node holds room for eleven.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupMap {
    sorted: Vec<Group>,
}

impl GroupMap {
    pub fn new() -> GroupMap {
        GroupMap::default()
    }

    fn find(&self, id: u32) -> Result<usize, usize> {
        self.sorted.binary_search_by_key(&id, |g| g.id)
    }

    pub fn get(&self, id: &u32) -> Option<&Group> {
        self.find(*id).ok().map(|i| &self.sorted[i])
    }

    pub fn get_mut(&mut self, id: &u32) -> Option<&mut Group> {
        match self.find(*id) {
            Ok(i) => self.sorted.get_mut(i),
            Err(_) => None,
        }
    }

    pub fn contains_key(&self, id: &u32) -> bool {
        self.find(*id).is_ok()
    }

    /// Adds `group` as group `id` (its own `id` is set to match), replacing and returning the previous one.
    pub fn insert(&mut self, id: u32, mut group: Group) -> Option<Group> {
        group.id = id;
        match self.find(id) {
            Ok(i) => Some(std::mem::replace(&mut self.sorted[i], group)),
            Err(i) => {
                self.sorted.insert(i, group);
                None
            }
        }
    }

    pub fn remove(&mut self, id: &u32) -> Option<Group> {
        self.find(*id).ok().map(|i| self.sorted.remove(i))
    }

    /// The groups, ordered by id.
    pub fn values(&self) -> std::slice::Iter<'_, Group> {
        self.sorted.iter()
    }

    /// The group ids, in order.
    pub fn keys(&self) -> impl Iterator<Item = &u32> {
        self.sorted.iter().map(|g| &g.id)
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }
}

impl Index<&u32> for GroupMap {
    type Output = Group;

    /// Group `id`; panics if there is none (for tests and checked invariants only).
    fn index(&self, id: &u32) -> &Group {
        match self.get(id) {
            Some(g) => g,
            None => panic!("no group {id}"),
        }
    }
}

impl FromIterator<Group> for GroupMap {
    fn from_iter<I: IntoIterator<Item = Group>>(iter: I) -> Self {
        let mut sorted: Vec<Group> = iter.into_iter().collect();
        sorted.sort_by_key(|g| g.id);
        sorted.dedup_by_key(|g| g.id);
        GroupMap { sorted }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::lists::{Guid, List, ListSet};
    use std::collections::BTreeSet;

    fn contact(email: &str) -> Contact {
        Contact {
            email: email.to_owned(),
            nickname: email.to_owned(),
            lists: ListSet::only(List::Forward),
            groups: BTreeSet::new(),
            guid: Guid::random(),
        }
    }

    #[test]
    fn behaves_like_a_sorted_map() {
        let mut m = ContactMap::new();
        for e in ["m@x", "b@x", "z@x", "a@x"] {
            assert!(m.insert(contact(e)).is_none());
        }
        let names: Vec<&str> = m.values().map(|c| c.email.as_str()).collect();
        assert_eq!(names, ["a@x", "b@x", "m@x", "z@x"]);
        let mut again = contact("b@x");
        again.nickname = "Bee".into();
        assert_eq!(m.insert(again).unwrap().nickname, "b@x");
        assert_eq!(m["b@x"].nickname, "Bee");
        assert_eq!(m.len(), 4);
        assert!(m.contains_key("z@x") && !m.contains_key("y@x"));
        m.get_mut("z@x").unwrap().nickname = "Zed".into();
        assert_eq!(m.get("z@x").unwrap().nickname, "Zed");
        assert_eq!(m.remove("a@x").unwrap().email, "a@x");
        assert!(m.remove("a@x").is_none() && m.get("a@x").is_none());
        let collected: ContactMap = ["c@x", "a@x", "c@x"].into_iter().map(contact).collect();
        let names: Vec<&str> = collected.values().map(|c| c.email.as_str()).collect();
        assert_eq!(names, ["a@x", "c@x"]);
    }

    #[test]
    fn groups_by_id() {
        let g = |id: u32, name: &str| Group {
            id,
            guid: Guid::random(),
            name: name.to_owned(),
        };
        let mut m: GroupMap = [g(3, "c"), g(0, "zero"), g(1, "a")].into_iter().collect();
        let ids: Vec<u32> = m.values().map(|g| g.id).collect();
        assert_eq!(ids, [0, 1, 3]);
        assert!(m.insert(2, g(99, "b")).is_none());
        assert_eq!(m[&2].id, 2);
        assert_eq!(m.insert(1, g(1, "A")).unwrap().name, "a");
        m.get_mut(&3).unwrap().name = "C".into();
        assert_eq!(m.get(&3).unwrap().name, "C");
        assert_eq!(m.remove(&0).unwrap().name, "zero");
        assert!(!m.contains_key(&0) && m.get(&7).is_none());
        assert_eq!(m.len(), 3);
    }
}
