//! The list operations: each checks one client request against the protocol's rules and returns the changes that
//! carry it out, without mutating anything.
//!
//! Error codes follow the public protocol documentation (MSNPiki and its successors, hypothetic.org): 201 for a
//! malformed parameter, 205 for an account that does not exist (the MSNP10+ `ADC` table answers 208 instead),
//! 210 list full, 215 already there, 216 not there, 218 already in that mode, 219 on the opposite list, 223 too
//! many groups, 224 no such group, 225 not in that group, 229 group name too long, 230 group 0. Where the
//! official server closed the connection instead of answering, the operation says [`ListError::Disconnect`].

use std::borrow::Cow;

use msgr_proto::{urlenc, ErrorCode};

use super::{Blp, Change, ChangeKind, ContactList, Gtc, Guid, Limits, List, ListError, Property};
use crate::passport::{validate_friendly_name, Passport};

/// A request to put someone on a list (`ADD`, or `ADC … N=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddRequest<'a> {
    /// The list to add to.
    pub list: List,
    /// The Passport name as the client sent it (decoded, any letter case).
    pub email: &'a str,
    /// The name to store for the contact, decoded; `None` (as in `ADC AL N=…`) stores the Passport name.
    pub nickname: Option<&'a str>,
    /// A group to put the contact in; only allowed for the forward list. MSNP7–9 callers pass `Some(0)` when the
    /// client named no group, because those dialects put such contacts in group 0.
    pub group: Option<u32>,
}

/// What [`ContactList::remove_group`] does with contacts for whom the removed group was the only one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExclusiveMembers {
    /// They leave the forward list too, as the protocol documentation says the official `RMG` did.
    LeaveForwardList,
    /// They stay on the forward list without a group.
    StayUngrouped,
}

fn reply(code: ErrorCode) -> ListError {
    ListError::Reply(code)
}

/// Parses a Passport name from a request; a malformed one is 201, as documented for `ADD`/`ADC`.
fn parse_email(email: &str) -> Result<Passport, ListError> {
    Passport::parse(email).map_err(|_| reply(ErrorCode::InvalidParameter))
}

/// Whether `s` contains a character that must never be stored in a name or number.
fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// The length of `s` as clients put it on the wire, URL-encoded.
fn encoded_len(s: &str) -> usize {
    match urlenc::encode(s) {
        Cow::Borrowed(b) => b.len(),
        Cow::Owned(o) => o.len(),
    }
}

impl ContactList {
    fn change(&self, kind: ChangeKind) -> Change {
        Change {
            owner: self.owner.clone(),
            kind,
        }
    }

    fn check_group_exists(&self, group: u32) -> Result<(), ListError> {
        if self.groups.contains_key(&group) {
            Ok(())
        } else {
            Err(reply(ErrorCode::InvalidGroup))
        }
    }

    fn list_limit(list: List, limits: &Limits) -> usize {
        match list {
            List::Forward => limits.max_forward,
            List::Allow | List::Block => limits.max_allow_block,
            List::Reverse => limits.max_reverse,
        }
    }

    /// Puts someone on one of the owner's lists (`ADD` in MSNP2–9, `ADC … N=` in MSNP10+).
    ///
    /// `peer` is the added account's list state, or `None` if no such account exists (205). Adding to the
    /// forward list also puts the owner on the peer's reverse list, named `owner_display_name`; that is the
    /// second change returned, and the peer hears of it at once (`ADD 0 RL …`) or at its next `SYN`.
    ///
    /// Adding someone already on the forward list to a group they are not in yet is allowed and only joins the
    /// group (MSNP7–9 clients move contacts between groups this way). Adding oneself is allowed: the protocol
    /// defines no error for it, and the official clients decided themselves whether to offer it.
    pub fn add(
        &self,
        req: &AddRequest<'_>,
        peer: Option<&ContactList>,
        owner_display_name: &str,
        limits: &Limits,
    ) -> Result<Vec<Change>, ListError> {
        if req.list == List::Reverse {
            return Err(ListError::Disconnect(
                "clients cannot add to the reverse list",
            ));
        }
        let email = parse_email(req.email)?.into_string();
        let nickname = match req.nickname {
            Some(n) => {
                validate_friendly_name(n).map_err(|_| reply(ErrorCode::InvalidParameter))?;
                n.to_owned()
            }
            None => email.clone(),
        };
        if let Some(group) = req.group {
            if req.list != List::Forward {
                return Err(reply(ErrorCode::InvalidParameter));
            }
            self.check_group_exists(group)?;
        }
        let Some(peer) = peer else {
            return Err(reply(ErrorCode::InvalidUser));
        };
        let existing = self.contact(&email);
        if existing.is_some_and(|c| c.lists.contains(req.list)) {
            return match req.group {
                Some(group) if req.list == List::Forward => self.add_to_group(&email, group),
                // Clients (libpurple among them) re-send their allow and block lists at
                // sign-on; what is already so succeeds with no change, as it must for a
                // client that treats any error there as fatal.
                None if matches!(req.list, List::Allow | List::Block) => Ok(Vec::new()),
                _ => Err(reply(ErrorCode::AlreadyInList)),
            };
        }
        let opposite = match req.list {
            List::Allow => Some(List::Block),
            List::Block => Some(List::Allow),
            List::Forward | List::Reverse => None,
        };
        if opposite.is_some_and(|o| existing.is_some_and(|c| c.lists.contains(o))) {
            return Err(reply(ErrorCode::AlreadyInOppositeList));
        }
        if self.count(req.list) >= Self::list_limit(req.list, limits) {
            return Err(reply(ErrorCode::ListFull));
        }
        let mut changes = vec![self.change(ChangeKind::AddToList {
            email: email.clone(),
            list: req.list,
            nickname,
            guid: Guid::random(),
            group: req.group,
        })];
        if req.list == List::Forward {
            if peer.count(List::Reverse) >= limits.max_reverse {
                return Err(reply(ErrorCode::ListFull));
            }
            changes.push(Change {
                owner: email,
                kind: ChangeKind::AddToList {
                    email: self.owner.clone(),
                    list: List::Reverse,
                    nickname: owner_display_name.to_owned(),
                    guid: Guid::random(),
                    group: None,
                },
            });
        }
        Ok(changes)
    }

    /// Puts a forward-list contact in one more group (`ADC FL C=… group` in MSNP10+).
    pub fn add_to_group(&self, email: &str, group: u32) -> Result<Vec<Change>, ListError> {
        self.check_group_exists(group)?;
        let contact = self
            .contact(email)
            .filter(|c| c.lists.contains(List::Forward))
            .ok_or(reply(ErrorCode::NotInList))?;
        if contact.groups().contains(group) {
            return Err(reply(ErrorCode::AlreadyInList));
        }
        Ok(vec![self.change(ChangeKind::AddToGroup {
            email: contact.email.to_string(),
            group,
        })])
    }

    /// Takes someone off one of the owner's lists (`REM`), or with `group` only out of that group of the
    /// forward list.
    ///
    /// Leaving the forward list also takes the owner off the contact's reverse list (the second change).
    pub fn remove(
        &self,
        list: List,
        email: &str,
        group: Option<u32>,
    ) -> Result<Vec<Change>, ListError> {
        if list == List::Reverse {
            return Err(ListError::Disconnect(
                "clients cannot remove from the reverse list",
            ));
        }
        let email = parse_email(email)?.into_string();
        if let Some(group) = group {
            if list != List::Forward {
                return Err(reply(ErrorCode::InvalidParameter));
            }
            return self.remove_from_group(&email, group);
        }
        if !self.is_on(&email, list) {
            return Err(reply(ErrorCode::NotInList));
        }
        let mut changes = vec![self.change(ChangeKind::RemoveFromList {
            email: email.clone(),
            list,
        })];
        if list == List::Forward {
            changes.push(Change {
                owner: email,
                kind: ChangeKind::RemoveFromList {
                    email: self.owner.clone(),
                    list: List::Reverse,
                },
            });
        }
        Ok(changes)
    }

    /// Takes a forward-list contact out of one group; the contact stays on the forward list, with no group if
    /// that was its last (`REM FL … group`).
    pub fn remove_from_group(&self, email: &str, group: u32) -> Result<Vec<Change>, ListError> {
        self.check_group_exists(group)?;
        let contact = self
            .contact(email)
            .filter(|c| c.lists.contains(List::Forward))
            .ok_or(reply(ErrorCode::NotInList))?;
        if !contact.groups().contains(group) {
            return Err(reply(ErrorCode::PrincipalNotInGroup));
        }
        Ok(vec![self.change(ChangeKind::RemoveFromGroup {
            email: contact.email.to_string(),
            group,
        })])
    }

    fn check_group_name(name: &str, limits: &Limits) -> Result<(), ListError> {
        // 231 is the second "invalid group" code; msgr answers it for names no client could display.
        if name.is_empty() || has_control(name) {
            return Err(reply(ErrorCode::InvalidGroupName));
        }
        if encoded_len(name) > limits.max_group_name_bytes {
            return Err(reply(ErrorCode::GroupNameTooLong));
        }
        Ok(())
    }

    /// Creates a group (`ADG`) with the lowest free id, as the official server numbered them.
    pub fn add_group(&self, name: &str, limits: &Limits) -> Result<Vec<Change>, ListError> {
        Self::check_group_name(name, limits)?;
        let max = u32::try_from(limits.max_groups).unwrap_or(u32::MAX);
        let id = (0..max)
            .find(|id| !self.groups.contains_key(id))
            .ok_or(reply(ErrorCode::TooManyGroups))?;
        Ok(vec![self.change(ChangeKind::AddGroup {
            id,
            guid: Guid::random(),
            name: name.to_owned(),
        })])
    }

    /// Renames a group (`REG`); group 0 may be renamed too.
    pub fn rename_group(
        &self,
        id: u32,
        name: &str,
        limits: &Limits,
    ) -> Result<Vec<Change>, ListError> {
        self.check_group_exists(id)?;
        Self::check_group_name(name, limits)?;
        Ok(vec![self.change(ChangeKind::RenameGroup {
            id,
            name: name.to_owned(),
        })])
    }

    /// Removes a group (`RMG`). Its members leave it; what happens to those for whom it was the only group is
    /// `exclusive`'s choice, and each of them that leaves the forward list also takes the owner off their
    /// reverse list.
    pub fn remove_group(
        &self,
        id: u32,
        exclusive: ExclusiveMembers,
        limits: &Limits,
    ) -> Result<Vec<Change>, ListError> {
        if id == 0 {
            return Err(reply(ErrorCode::CannotRemoveGroupZero));
        }
        if usize::try_from(id).map_or(true, |i| i >= limits.max_groups) {
            // Documented: an id beyond the group range is not answered but disconnected.
            return Err(ListError::Disconnect("group id out of range"));
        }
        self.check_group_exists(id)?;
        let dropped: Vec<String> = match exclusive {
            ExclusiveMembers::StayUngrouped => Vec::new(),
            ExclusiveMembers::LeaveForwardList => self
                .members(List::Forward)
                .filter(|c| c.groups().len() == 1 && c.groups().contains(id))
                .map(|c| c.email.to_string())
                .collect(),
        };
        let peers: Vec<Change> = dropped
            .iter()
            .map(|email| Change {
                owner: email.clone(),
                kind: ChangeKind::RemoveFromList {
                    email: self.owner.clone(),
                    list: List::Reverse,
                },
            })
            .collect();
        let mut changes = vec![self.change(ChangeKind::RemoveGroup { id, dropped })];
        changes.extend(peers);
        Ok(changes)
    }

    /// Sets `GTC`; no change (an empty list, answered like a change) if it already has that
    /// value. Clients send their mode at every sign-on, and libpurple/msn-pecan treat the
    /// documented 218 as fatal, so it would make them reconnect in a loop.
    pub fn set_gtc(&self, gtc: Gtc) -> Result<Vec<Change>, ListError> {
        if self.settings.gtc == gtc {
            return Ok(Vec::new());
        }
        Ok(vec![self.change(ChangeKind::SetGtc(gtc))])
    }

    /// Sets `BLP`; no change if it already has that value (see [`ContactList::set_gtc`]).
    pub fn set_blp(&self, blp: Blp) -> Result<Vec<Change>, ListError> {
        if self.settings.blp == blp {
            return Ok(Vec::new());
        }
        Ok(vec![self.change(ChangeKind::SetBlp(blp))])
    }

    /// Sets or clears (`None`) a `PRP` property, `value` decoded.
    ///
    /// Flags take `Y` or `N` (201 otherwise; clearing one means `N`). A phone number longer than
    /// [`Limits::max_phone_bytes`] once encoded disconnects, as documented; one with control characters is 201.
    pub fn set_property(
        &self,
        property: Property,
        value: Option<&str>,
        limits: &Limits,
    ) -> Result<Vec<Change>, ListError> {
        let value = match value {
            None if property.is_flag() => Some("N"),
            None => None,
            Some(v) if property.is_flag() => {
                if v != "Y" && v != "N" {
                    return Err(reply(ErrorCode::InvalidParameter));
                }
                Some(v)
            }
            Some(v) => {
                if encoded_len(v) > limits.max_phone_bytes {
                    return Err(ListError::Disconnect("phone number too long"));
                }
                if has_control(v) {
                    return Err(reply(ErrorCode::InvalidParameter));
                }
                // An empty number is how a client clears it.
                Some(v).filter(|v| !v.is_empty())
            }
        };
        Ok(vec![self.change(ChangeKind::SetProperty(
            property,
            value.map(str::to_owned),
        ))])
    }

    /// Sets the owner's own display name (`REA` of oneself, `PRP MFN`); 209 if it is not an acceptable friendly
    /// name.
    pub fn set_display_name(&self, name: &str) -> Result<Vec<Change>, ListError> {
        validate_friendly_name(name).map_err(|_| reply(ErrorCode::InvalidFriendlyName))?;
        Ok(vec![
            self.change(ChangeKind::SetDisplayName(name.to_owned()))
        ])
    }

    /// Sets the name the owner stores for a forward-list contact (`REA` of a contact, `SBP … MFN`); 216 if the
    /// contact is not on the forward list, 209 if the name is not acceptable.
    pub fn set_contact_nickname(
        &self,
        email: &str,
        nickname: &str,
    ) -> Result<Vec<Change>, ListError> {
        let contact = self
            .contact(email)
            .filter(|c| c.lists.contains(List::Forward))
            .ok_or(reply(ErrorCode::NotInList))?;
        validate_friendly_name(nickname).map_err(|_| reply(ErrorCode::InvalidFriendlyName))?;
        Ok(vec![self.change(ChangeKind::SetContactNickname {
            email: contact.email.to_string(),
            nickname: nickname.to_owned(),
        })])
    }

    /// Stores the `UUX` payload (or clears it with `None` or an empty payload); 201 if longer than
    /// [`Limits::max_personal_message_bytes`].
    pub fn set_personal_message(
        &self,
        payload: Option<&str>,
        limits: &Limits,
    ) -> Result<Vec<Change>, ListError> {
        let payload = payload.filter(|p| !p.is_empty());
        if payload.is_some_and(|p| p.len() > limits.max_personal_message_bytes) {
            return Err(reply(ErrorCode::InvalidParameter));
        }
        Ok(vec![self.change(ChangeKind::SetPersonalMessage(
            payload.map(str::to_owned),
        ))])
    }
}
