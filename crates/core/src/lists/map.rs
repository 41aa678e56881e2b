//! [`SortedMap`]: one list owner's contacts ([`ContactMap`]) and groups ([`GroupMap`]) as compact sorted
//! vectors.

use super::{Contact, Group};
use std::ops::Index;

/// A value that carries its own key.
pub trait Keyed {
    type Key: Ord + ?Sized;
    fn key(&self) -> &Self::Key;
}

impl Keyed for Contact {
    /// The (lowercased) Passport name.
    type Key = str;
    fn key(&self) -> &str {
        &self.email
    }
}

impl Keyed for Group {
    /// The numeric id.
    type Key = u32;
    fn key(&self) -> &u32 {
        &self.id
    }
}

/// Values ordered by their own key, in one vector.
///
/// A sorted vector rather than a `BTreeMap`: every online user's lists stay in memory, and for the usual few
/// dozen contacts and handful of groups the map's nodes (sized for eleven entries each) and its second copy of
/// every key cost more than the entries themselves. Lookups are binary searches; inserting and removing move at
/// most a few kilobytes, and happen at human speed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SortedMap<V> {
    sorted: Vec<V>,
}

/// Every contact on any of one owner's lists, ordered by Passport name.
pub type ContactMap = SortedMap<Contact>;

/// The owner's groups, ordered by numeric id.
pub type GroupMap = SortedMap<Group>;

impl<V> Default for SortedMap<V> {
    fn default() -> Self {
        SortedMap { sorted: Vec::new() }
    }
}

impl<V: Keyed> SortedMap<V> {
    pub fn new() -> Self {
        SortedMap::default()
    }

    fn find(&self, key: &V::Key) -> Result<usize, usize> {
        self.sorted.binary_search_by(|v| v.key().cmp(key))
    }

    pub fn get(&self, key: &V::Key) -> Option<&V> {
        self.find(key).ok().map(|i| &self.sorted[i])
    }

    /// The entry, to change anything but its key.
    pub fn get_mut(&mut self, key: &V::Key) -> Option<&mut V> {
        match self.find(key) {
            Ok(i) => self.sorted.get_mut(i),
            Err(_) => None,
        }
    }

    pub fn contains_key(&self, key: &V::Key) -> bool {
        self.find(key).is_ok()
    }

    /// Adds `value` under its own key, replacing and returning an entry with the same key.
    pub fn insert(&mut self, value: V) -> Option<V> {
        match self.find(value.key()) {
            Ok(i) => Some(std::mem::replace(&mut self.sorted[i], value)),
            Err(i) => {
                self.sorted.insert(i, value);
                None
            }
        }
    }

    /// The entry for `key`, first inserting `make()` if there is none.
    pub fn get_or_insert_with(&mut self, key: &V::Key, make: impl FnOnce() -> V) -> &mut V {
        let i = match self.find(key) {
            Ok(i) => i,
            Err(_) => {
                let value = make();
                // Placed by its own key, so a caller's mismatch cannot break the order.
                match self.find(value.key()) {
                    Ok(j) => {
                        self.sorted[j] = value;
                        j
                    }
                    Err(j) => {
                        self.sorted.insert(j, value);
                        j
                    }
                }
            }
        };
        &mut self.sorted[i]
    }

    pub fn remove(&mut self, key: &V::Key) -> Option<V> {
        self.find(key).ok().map(|i| self.sorted.remove(i))
    }

    /// The entries, in key order.
    pub fn values(&self) -> std::slice::Iter<'_, V> {
        self.sorted.iter()
    }

    pub fn values_mut(&mut self) -> std::slice::IterMut<'_, V> {
        self.sorted.iter_mut()
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &V::Key> {
        self.sorted.iter().map(Keyed::key)
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// Gives back spare capacity, e.g. after loading a whole list one entry at a time.
    pub fn shrink_to_fit(&mut self) {
        self.sorted.shrink_to_fit();
    }
}

impl<V: Keyed> Index<&V::Key> for SortedMap<V>
where
    V::Key: std::fmt::Debug,
{
    type Output = V;

    /// The entry for `key`; panics if there is none (for tests and checked invariants only).
    fn index(&self, key: &V::Key) -> &V {
        match self.get(key) {
            Some(v) => v,
            None => panic!("no entry {key:?}"),
        }
    }
}

impl<V: Keyed> FromIterator<V> for SortedMap<V> {
    /// Sorted by key; of entries with the same key the first is kept.
    fn from_iter<I: IntoIterator<Item = V>>(iter: I) -> Self {
        let mut sorted: Vec<V> = iter.into_iter().collect();
        sorted.sort_by(|a, b| a.key().cmp(b.key()));
        sorted.dedup_by(|later, earlier| later.key() == earlier.key());
        SortedMap { sorted }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::lists::{Guid, List, ListSet};

    fn contact(email: &str) -> Contact {
        Contact::new(
            email.into(),
            email.into(),
            ListSet::only(List::Forward),
            Guid::random(),
        )
    }

    #[test]
    fn behaves_like_a_sorted_map() {
        let mut m = ContactMap::new();
        for e in ["m@x", "b@x", "z@x", "a@x"] {
            assert!(m.insert(contact(e)).is_none());
        }
        let names: Vec<&str> = m.values().map(|c| &*c.email).collect();
        assert_eq!(names, ["a@x", "b@x", "m@x", "z@x"]);
        let mut again = contact("b@x");
        again.nickname = "Bee".into();
        assert_eq!(m.insert(again).unwrap().nickname.as_ref(), "b@x");
        assert_eq!(m["b@x"].nickname.as_ref(), "Bee");
        assert_eq!(m.len(), 4);
        assert!(m.contains_key("z@x") && !m.contains_key("y@x"));
        m.get_mut("z@x").unwrap().nickname = "Zed".into();
        assert_eq!(m.get("z@x").unwrap().nickname.as_ref(), "Zed");
        assert_eq!(&*m.remove("a@x").unwrap().email, "a@x");
        assert!(m.remove("a@x").is_none() && m.get("a@x").is_none());
        let collected: ContactMap = ["c@x", "a@x", "c@x"].into_iter().map(contact).collect();
        let names: Vec<&str> = collected.values().map(|c| &*c.email).collect();
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
        assert!(m.insert(g(2, "b")).is_none());
        assert_eq!(m[&2].name, "b");
        assert_eq!(m.insert(g(1, "A")).unwrap().name, "a");
        m.get_mut(&3).unwrap().name = "C".into();
        assert_eq!(m.get(&3).unwrap().name, "C");
        assert_eq!(m.remove(&0).unwrap().name, "zero");
        assert!(!m.contains_key(&0) && m.get(&7).is_none());
        assert_eq!(m.len(), 3);
    }
}
