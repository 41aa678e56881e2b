//! Who may see whose presence and who may contact whom: the one place these rules live.
//!
//! The rules, as the official service applied them:
//! - Someone on the owner's block list (BL) never sees the owner online and cannot invite the owner to a chat.
//! - Someone on the owner's allow list (AL) always may (AL and BL exclude each other, so there is no conflict).
//! - Anyone else is treated as `BLP` says: allowed under `BLP AL` (the default), blocked under `BLP BL`.
//! - A user whose status is `HDN` (appear offline) looks offline to everyone and may not start chats (913);
//!   [`crate::presence::visible_status`] and [`may_start_chat`] carry that part.
//! - The owner always sees themself.
//!
//! Whether a blocked watcher is on the owner's reverse list does not matter: blocking hides presence from people
//! who have the owner on their forward list, and refuses chats from anybody.
//!
//! A block governs direct contact only. When a third person in a chat with the owner invites someone the owner
//! blocks (or whom the owner is blocked by), the invitation is judged on the inviter's and invitee's lists alone,
//! and the blocked person joins: both see each other in `IRO`/`JOI` and read each other's messages. The official
//! service worked so (its support pages told users that a blocked person can still share a conversation with them
//! when someone else invites them both), clients show every participant, and the
//! owner can leave; refusing would instead tell the inviter that someone in the room blocks the invitee, which
//! the block is meant to keep quiet. Tested in `crates/it/tests/switchboard.rs`.
//!
//! `GTC` plays no part here: it only tells the owner's client whether to ask the user about newcomers on the
//! reverse list (see [`crate::lists::Gtc`]).

use msgr_proto::ErrorCode;

use crate::lists::{Blp, ContactList, List};
use crate::presence::Status;

/// Whether `watcher` may see `owner`'s presence (and is therefore sent `ILN`/`NLN`/`UBX` about them).
///
/// `watcher` is a Passport name in any letter case.
pub fn may_see(owner: &ContactList, watcher: &str) -> bool {
    if watcher.eq_ignore_ascii_case(&owner.owner) {
        return true;
    }
    match owner.contact(watcher) {
        Some(c) if c.lists.contains(List::Block) => false,
        Some(c) if c.lists.contains(List::Allow) => true,
        _ => owner.settings.blp == Blp::Allow,
    }
}

/// Whether `caller` may invite `callee` into a switchboard chat, as far as `callee`'s privacy settings go: the
/// same rule as [`may_see`], since being blocked means looking offline.
pub fn may_contact(callee: &ContactList, caller: &str) -> bool {
    may_see(callee, caller)
}

/// Whether a user with `status` may start a chat (`XFR SB`) or invite someone (`CAL`): not while `HDN` (913).
pub fn may_start_chat(status: Status) -> Result<(), ErrorCode> {
    if status == Status::Hidden {
        Err(ErrorCode::NotAllowedWhenOffline)
    } else {
        Ok(())
    }
}

/// The outcome of `caller` (whose status is `caller_status`) inviting `callee` with `CAL`.
///
/// `callee_status` is `None` when the callee is not signed in. A hidden caller gets 913; a callee who is
/// offline, hidden or blocks the caller gets 217, the same answer in all three cases so that a blocked caller
/// cannot tell blocking from being offline.
pub fn check_invite(
    caller: &str,
    caller_status: Status,
    callee: &ContactList,
    callee_status: Option<Status>,
) -> Result<(), ErrorCode> {
    may_start_chat(caller_status)?;
    let reachable = callee_status.is_some_and(Status::is_visible) && may_contact(callee, caller);
    if reachable {
        Ok(())
    } else {
        Err(ErrorCode::PrincipalNotOnline)
    }
}

/// The people to tell when `owner`'s presence changes: those on the owner's reverse list (they have the owner on
/// their forward list) whom the owner's privacy lets see it, ordered by Passport name.
///
/// Someone who can no longer see the owner after a list change must be sent `FLN` by the caller; this only says
/// who may see now.
pub fn audience(owner: &ContactList) -> impl Iterator<Item = &str> {
    // The rule of `may_see`, applied to the entry at hand instead of looking it up again: this
    // runs once per watcher on every presence change, so it is the fan-out's inner loop.
    let blp_allows = owner.settings.blp == Blp::Allow;
    owner
        .members(List::Reverse)
        .filter(move |c| {
            *c.email == *owner.owner
                || (!c.lists.contains(List::Block) && (c.lists.contains(List::Allow) || blp_allows))
        })
        .map(|c| &*c.email)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lists::{Contact, Guid, ListSet};

    const OWNER: &str = "owner@example.com";
    const WATCHER: &str = "watcher@example.com";

    fn owner_with(watcher_lists: &[List], blp: Blp) -> ContactList {
        let mut list = ContactList::new(OWNER, Guid::random());
        list.settings.blp = blp;
        if !watcher_lists.is_empty() {
            list.contacts.insert(Contact::new(
                WATCHER.into(),
                WATCHER.into(),
                watcher_lists.iter().copied().collect::<ListSet>(),
                Guid::random(),
            ));
        }
        list
    }

    use List::{Allow as AL, Block as BL, Forward as FL, Reverse as RL};

    /// (the watcher's lists on the owner's side, owner's BLP, may the watcher see the owner?)
    const VISIBILITY: &[(&[List], Blp, bool)] = &[
        // Strangers follow BLP.
        (&[], Blp::Allow, true),
        (&[], Blp::Block, false),
        // Someone who has the owner on their FL (owner's RL) but was never allowed: BLP decides.
        (&[RL], Blp::Allow, true),
        (&[RL], Blp::Block, false),
        // The owner following the watcher changes nothing by itself.
        (&[FL], Blp::Allow, true),
        (&[FL], Blp::Block, false),
        (&[FL, RL], Blp::Block, false),
        // AL always sees, whatever BLP.
        (&[AL], Blp::Allow, true),
        (&[AL], Blp::Block, true),
        (&[AL, RL], Blp::Block, true),
        (&[FL, AL, RL], Blp::Block, true),
        // BL never sees, whatever BLP and whatever other lists.
        (&[BL], Blp::Allow, false),
        (&[BL], Blp::Block, false),
        (&[BL, RL], Blp::Allow, false),
        (&[FL, BL, RL], Blp::Allow, false),
        (&[FL, BL], Blp::Block, false),
    ];

    #[test]
    fn visibility_table() {
        for (lists, blp, want) in VISIBILITY {
            let owner = owner_with(lists, *blp);
            assert_eq!(
                may_see(&owner, WATCHER),
                *want,
                "watcher on {lists:?}, BLP {blp:?}"
            );
            assert_eq!(may_contact(&owner, WATCHER), *want);
            // Letter case of the watcher's name never matters.
            assert_eq!(may_see(&owner, "Watcher@Example.COM"), *want);
        }
    }

    #[test]
    fn owner_always_sees_self() {
        // Even with their own address on their block list (nothing forbids adding it) and BLP BL.
        for blp in [Blp::Allow, Blp::Block] {
            let mut owner = owner_with(&[], blp);
            owner.contacts.insert(Contact::new(
                OWNER.into(),
                OWNER.into(),
                ListSet::only(BL),
                Guid::random(),
            ));
            assert!(may_see(&owner, OWNER));
            assert!(may_see(&owner, "OWNER@example.com"));
        }
    }

    /// (caller status, callee status, the caller's lists on the callee's side, callee's BLP, expected)
    type InviteCase = (
        Status,
        Option<Status>,
        &'static [List],
        Blp,
        Result<(), ErrorCode>,
    );

    #[test]
    fn invite_table() {
        use Status::*;
        let cases: &[InviteCase] = &[
            (Online, Some(Online), &[], Blp::Allow, Ok(())),
            (Away, Some(Busy), &[AL], Blp::Block, Ok(())),
            (Idle, Some(OutToLunch), &[FL, RL], Blp::Allow, Ok(())),
            // Hidden callers may not start anything, whatever the callee.
            (
                Hidden,
                Some(Online),
                &[AL],
                Blp::Allow,
                Err(ErrorCode::NotAllowedWhenOffline),
            ),
            (
                Hidden,
                None,
                &[],
                Blp::Allow,
                Err(ErrorCode::NotAllowedWhenOffline),
            ),
            // Offline, hidden and blocking callees all look the same.
            (
                Online,
                None,
                &[],
                Blp::Allow,
                Err(ErrorCode::PrincipalNotOnline),
            ),
            (
                Online,
                Some(Hidden),
                &[AL],
                Blp::Allow,
                Err(ErrorCode::PrincipalNotOnline),
            ),
            (
                Online,
                Some(Offline),
                &[],
                Blp::Allow,
                Err(ErrorCode::PrincipalNotOnline),
            ),
            (
                Online,
                Some(Online),
                &[BL],
                Blp::Allow,
                Err(ErrorCode::PrincipalNotOnline),
            ),
            (
                Online,
                Some(Online),
                &[],
                Blp::Block,
                Err(ErrorCode::PrincipalNotOnline),
            ),
        ];
        for (caller_status, callee_status, lists, blp, want) in cases {
            let callee = owner_with(lists, *blp);
            assert_eq!(
                check_invite(WATCHER, *caller_status, &callee, *callee_status),
                *want,
                "caller {caller_status:?}, callee {callee_status:?}, lists {lists:?}, BLP {blp:?}"
            );
        }
    }

    #[test]
    fn audience_is_the_reverse_list_filtered_by_privacy() {
        let mut owner = ContactList::new(OWNER, Guid::random());
        let entries: &[(&str, &[List])] = &[
            ("a@example.com", &[RL]),
            ("b@example.com", &[RL, BL]),
            ("c@example.com", &[RL, AL]),
            ("d@example.com", &[FL, AL]),
            ("e@example.com", &[FL, RL]),
        ];
        for (email, lists) in entries {
            owner.contacts.insert(Contact::new(
                (*email).into(),
                (*email).into(),
                lists.iter().copied().collect(),
                Guid::random(),
            ));
        }
        let allowed: Vec<&str> = audience(&owner).collect();
        assert_eq!(allowed, ["a@example.com", "c@example.com", "e@example.com"]);
        owner.settings.blp = Blp::Block;
        let allowed: Vec<&str> = audience(&owner).collect();
        assert_eq!(allowed, ["c@example.com"]);
        // The shortcut agrees with `may_see` for every entry, under both BLP settings.
        for blp in [Blp::Allow, Blp::Block] {
            owner.settings.blp = blp;
            let slow: Vec<&str> = owner
                .members(RL)
                .filter(|c| may_see(&owner, &c.email))
                .map(|c| &*c.email)
                .collect();
            assert_eq!(audience(&owner).collect::<Vec<_>>(), slow);
        }
    }
}
