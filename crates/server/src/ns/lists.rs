//! List and settings changes: `ADD`/`ADC`, `REM`, `ADG`, `RMG`, `REG`, `GTC`, `BLP`, `PRP`,
//! `SBP`, `REA`, `UUX`, and the notices their peers receive (a phone set with `PRP` reaches
//! watchers as `BPR`, see `bpr.rs`).
//!
//! Every change follows one path: parse the dialect's form, let the core operation decide
//! (loading the peer's list from the store when the operation needs it), persist with
//! `ContactStore::apply` (durable before the reply), apply to the in-memory list, reply in the
//! dialect's form, then tell other online sessions through the hub: the peer whose reverse list
//! changed, and watchers whose view of this user's presence the change altered.
//!
//! | command | MSNP2–MSNP9 request → reply | MSNP10–MSNP12 request → reply |
//! |---|---|---|
//! | add | `ADD t L email nick [group]` → `ADD t L ver email nick [group]` (group: MSNP7+, FL) | `ADC t L N=email [F=nick]` → `ADC t FL N=email F=nick C=guid` / `ADC t AL N=email`; `ADC t FL C=guid gguid` → echoed |
//! | remove | `REM t L email [group]` → `REM t L ver email [group]` | `REM t FL guid [gguid]` / `REM t AL email` → echoed |
//! | peer notice | `ADD 0 RL ver email name`, `REM 0 RL ver email` | `ADC 0 RL N=email F=name`, `REM 0 RL email` |
//! | groups (MSNP7+) | `ADG t name 0` → `ADG t ver name id 0`; `RMG t id` → `RMG t ver id`; `REG t id name 0` → `REG t ver id name 0` | `ADG t name` → `ADG t name gguid`; `RMG t gguid` → echoed; `REG t gguid name` → echoed |
//! | privacy | `GTC t A` → `GTC t ver A`; `BLP t AL` → `BLP t ver AL` | without the version |
//! | properties (MSNP5+) | `PRP t PROP [value]` → `PRP t ver PROP [value]` | `PRP t PROP [value]` → echoed; `PRP t MFN name` sets the display name |
//! | names | `REA t email name` → `REA t ver email name` (own e-mail: display name) | `PRP t MFN name` (own); `SBP t guid MFN name` → echoed (a contact's) |
//! | personal message | — | MSNP11+: `UUX t len` + payload → `UUX t 0`; watchers get `UBX`; 800 past the `CHG` budget |
//!
//! What is already so (`GTC`/`BLP` with the mode in force, `ADD`/`ADC` to AL or BL of someone
//! already there) is answered as a change at the current list version, never 215/218:
//! clients send these at every sign-on and some treat the error as fatal. The forward list
//! keeps 215.
//!
//! A command outside its dialects is 200. An account that does not exist is 205 before MSNP10
//! and 208 from MSNP10 on. `REA` and `PRP` share `CHG`'s rate limit (800). `RMG` in MSNP7–9
//! takes contacts whose only group it was off the forward list, as the official server did;
//! MSNP10+ leaves them ungrouped. Right after a reply that put someone on the forward list,
//! a user who has already set a status also gets that contact's `NLN` (and `UBX`), if the
//! contact is online and lets them see it. In MSNP10+ an unknown contact GUID is 208 (216 for
//! `REM`) and an unknown group GUID 224.

use bytes::BytesMut;
use msgr_core::lists::{
    AddRequest, Blp, Change, ChangeKind, ContactList, ExclusiveMembers, Gtc, Guid, List, ListError,
    Property,
};
use msgr_proto::frame::{write_line, Frame, TrId};
use msgr_proto::{urlenc, Dialect, ErrorCode};
use std::collections::BTreeSet;
use std::sync::Arc;

use super::{error, presence, Flow, NsSession, OnlineUser, State};
use crate::hub::{Event, PersonalMessage, PresenceNotice, PropertyNotice};

/// Whether list replies carry the list version (MSNP2–9) or GUIDs (MSNP10+).
fn versioned(dialect: Dialect) -> bool {
    dialect < Dialect::Msnp10
}

/// Writes the reply to a list change: MSNP2–9 put the new list version before the
/// parameters; MSNP10+ leave it out.
fn write_versioned(
    out: &mut BytesMut,
    dialect: Dialect,
    command: &str,
    trid: TrId,
    version: &str,
    args: &[&str],
) {
    if versioned(dialect) {
        let mut all = Vec::with_capacity(args.len() + 1);
        all.push(version);
        all.extend_from_slice(args);
        write_line(out, command, Some(trid), &all);
    } else {
        write_line(out, command, Some(trid), args);
    }
}

/// Why a request failed before or while it was carried out.
enum Refusal {
    Reply(ErrorCode),
    Disconnect(&'static str),
}

impl From<ListError> for Refusal {
    fn from(e: ListError) -> Self {
        match e {
            ListError::Reply(code) => Refusal::Reply(code),
            ListError::Disconnect(why) => Refusal::Disconnect(why),
        }
    }
}

impl From<ErrorCode> for Refusal {
    fn from(code: ErrorCode) -> Self {
        Refusal::Reply(code)
    }
}

type Outcome = Result<(), Refusal>;

fn decode(s: &str) -> Result<String, Refusal> {
    urlenc::decode(s)
        .map(|c| c.into_owned())
        .map_err(|_| Refusal::Reply(ErrorCode::InvalidParameter))
}

fn bad() -> Refusal {
    Refusal::Reply(ErrorCode::InvalidParameter)
}

impl NsSession {
    pub(super) async fn list_command(
        &mut self,
        command: &str,
        frame: &Frame,
        trid: TrId,
        out: &mut BytesMut,
    ) -> Flow {
        let State::Online { dialect, .. } = &self.state else {
            error(out, ErrorCode::NotLoggedIn, trid);
            return Flow::Continue;
        };
        let dialect = *dialect;
        let result = match command {
            "ADD" => self.add(dialect, frame, trid, out).await,
            "ADC" => self.adc(dialect, frame, trid, out).await,
            "REM" => self.rem(dialect, frame, trid, out).await,
            "ADG" => self.adg(dialect, frame, trid, out).await,
            "RMG" => self.rmg(dialect, frame, trid, out).await,
            "REG" => self.reg(dialect, frame, trid, out).await,
            "GTC" | "BLP" => self.privacy_mode(dialect, command, frame, trid, out).await,
            "PRP" => self.prp(dialect, frame, trid, out).await,
            "REA" => self.rea(dialect, frame, trid, out).await,
            "SBP" => self.sbp(frame, trid, out).await,
            "UUX" => self.uux(frame, trid, out).await,
            _ => Err(Refusal::Reply(ErrorCode::SyntaxError)),
        };
        match result {
            Ok(()) => Flow::Continue,
            Err(Refusal::Reply(code)) => {
                error(out, code, trid);
                Flow::Continue
            }
            Err(Refusal::Disconnect(why)) => {
                tracing::info!(peer = %self.peer, account = self.account(), command, why, "disconnecting client");
                Flow::Close
            }
        }
    }

    fn user(&mut self) -> Result<&mut OnlineUser, Refusal> {
        match &mut self.state {
            State::Online { user, .. } => Ok(user),
            _ => Err(Refusal::Reply(ErrorCode::NotLoggedIn)),
        }
    }

    /// Persists `changes`, applies this user's share to the in-memory list, tells the other
    /// owners' sessions, and fixes up watchers whose view changed. Returns this user's new list
    /// version.
    async fn commit(&mut self, changes: Vec<Change>) -> Result<u64, Refusal> {
        if changes.is_empty() {
            // What the client asked for is already so (its privacy mode, an allow-list entry
            // re-sent at sign-on): answered like a change, at the current version, with
            // nothing to store or announce.
            return Ok(self.user()?.state.list().version);
        }
        let shared = self.shared.clone();
        let versions = shared.apply_changes(changes.clone()).await.map_err(|e| {
            tracing::error!(error = %e, "storing a list change failed");
            Refusal::Reply(ErrorCode::DatabaseServerError)
        })?;
        let user = self.user()?;
        let touches_privacy = changes.iter().any(|c| {
            c.owner == user.email
                && matches!(
                    &c.kind,
                    ChangeKind::SetBlp(_)
                        | ChangeKind::AddToList {
                            list: List::Allow | List::Block,
                            ..
                        }
                        | ChangeKind::RemoveFromList {
                            list: List::Allow | List::Block,
                            ..
                        }
                )
        });
        let before = touches_privacy.then(|| audience(&user.state.list()));
        let version_of = |owner: &str| {
            versions
                .iter()
                .find(|(o, _)| o == owner)
                .map_or(0, |(_, v)| *v)
        };
        {
            let mut list = user.state.list_mut();
            for c in &changes {
                list.apply(c);
            }
            if versions.iter().any(|(o, _)| *o == user.email) {
                list.version = version_of(&user.email);
            }
        }
        for c in changes.into_iter().filter(|c| c.owner != user.email) {
            let version = version_of(&c.owner);
            let owner = c.owner.clone();
            shared.hub.send(
                &owner,
                Event::ListChanged(Box::new(crate::hub::PeerChange { change: c, version })),
            );
        }
        if let (Some(before), Some(me)) = (before, user.state.presence()) {
            if me.status.is_visible() {
                let after = audience(&user.state.list());
                let gone = PresenceNotice {
                    status: msgr_core::presence::Status::Offline,
                    ..(*me).clone()
                };
                shared.hub.send_each(
                    before.difference(&after).map(String::as_str),
                    &Event::Presence(Arc::new(gone)),
                );
                shared.hub.send_each(
                    after.difference(&before).map(String::as_str),
                    &Event::Presence(me),
                );
            }
        }
        let email = user.email.clone();
        Ok(version_of(&email))
    }

    /// After `ADD FL`/`ADC FL`: the new contact's presence at once, if it may be seen.
    fn show_new_contact(&mut self, dialect: Dialect, email: &str, out: &mut BytesMut) {
        let Ok(user) = self.user() else { return };
        if !user.announced {
            return; // The ILN burst at the first CHG will include it.
        }
        let me = user.email.clone();
        for (notice, psm) in self.shared.hub.visible_contacts(&me, [email]) {
            presence::write_notice(dialect, &notice, out);
            if psm.is_some() {
                presence::write_ubx(dialect, &notice.from, psm.as_deref(), out);
            }
        }
    }

    /// The add request's peer: its list, `None` if no such account. An online peer's list is
    /// copied from its session (which applies every change, its own and others', as soon as it
    /// is durable) rather than read back from the store: for long lists that read is most of
    /// the cost of an add.
    async fn peer_list(&self, email: &str) -> Result<Option<ContactList>, Refusal> {
        let email = msgr_core::passport::Passport::parse(email)
            .map_err(|_| bad())?
            .into_string();
        if let Some(state) = self.shared.hub.state(&email) {
            return Ok(Some(state.list().clone()));
        }
        self.shared
            .contact_list_if_exists(&email)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "loading a contact list failed");
                Refusal::Reply(ErrorCode::DatabaseServerError)
            })
    }

    async fn add(
        &mut self,
        dialect: Dialect,
        frame: &Frame,
        trid: TrId,
        out: &mut BytesMut,
    ) -> Outcome {
        let p = frame.params();
        let (Some(list), Some(email), Some(nick)) = (p.first(), p.get(1), p.get(2)) else {
            return Err(bad());
        };
        let list = List::from_token(list).ok_or_else(bad)?;
        let nickname = decode(nick)?;
        let group = match (list, dialect >= Dialect::Msnp7) {
            (List::Forward, true) => Some(match p.get(3) {
                Some(g) => g.parse::<u32>().map_err(|_| ErrorCode::InvalidGroup)?,
                None => 0,
            }),
            _ => None,
        };
        let peer = self.peer_list(email).await?;
        let limits = self.shared.config.limits.lists();
        let user = self.user()?;
        let changes = user.state.list().add(
            &AddRequest {
                list,
                email,
                nickname: Some(&nickname),
                group,
            },
            peer.as_ref(),
            &user.name,
            &limits,
        )?;
        let email = peer.map(|p| p.owner).unwrap_or_default();
        let joined = joins_forward_list(&changes);
        let version = self.commit(changes).await?.to_string();
        let mut args = vec![list.token(), &version, &email, nick];
        let g = group.map(|g| g.to_string());
        if let Some(g) = &g {
            args.push(g);
        }
        write_line(out, "ADD", Some(trid), &args);
        if joined {
            self.show_new_contact(dialect, &email, out);
        }
        Ok(())
    }

    async fn adc(
        &mut self,
        dialect: Dialect,
        frame: &Frame,
        trid: TrId,
        out: &mut BytesMut,
    ) -> Outcome {
        let p = frame.params();
        let list = p
            .first()
            .and_then(|l| List::from_token(l))
            .ok_or_else(bad)?;
        let mut email = None;
        let mut nick = None;
        let mut contact_guid = None;
        let mut group_guid = None;
        for a in p.iter().skip(1) {
            if let Some(v) = a.strip_prefix("N=") {
                email = Some(v);
            } else if let Some(v) = a.strip_prefix("F=") {
                nick = Some(decode(v)?);
            } else if let Some(v) = a.strip_prefix("C=") {
                contact_guid = Some(Guid::parse(v).map_err(|_| bad())?);
            } else {
                group_guid = Some(Guid::parse(a).map_err(|_| ErrorCode::InvalidGroup)?);
            }
        }
        let limits = self.shared.config.limits.lists();
        match (email, contact_guid) {
            // Putting a forward-list contact into one more group.
            (None, Some(guid)) => {
                let gg = group_guid.ok_or_else(bad)?;
                if list != List::Forward {
                    return Err(bad());
                }
                let user = self.user()?;
                let changes = {
                    let l = user.state.list();
                    let contact = l
                        .contact_by_guid(&guid)
                        .ok_or(ErrorCode::InvalidPrincipal)?;
                    let group = l
                        .group_by_guid(&gg)
                        .filter(|g| g.id != 0)
                        .ok_or(ErrorCode::InvalidGroup)?;
                    l.add_to_group(&contact.email.clone(), group.id)?
                };
                self.commit(changes).await?;
                let c = format!("C={guid}");
                write_line(out, "ADC", Some(trid), &[list.token(), &c, &gg.text()]);
                Ok(())
            }
            (Some(email), _) => {
                let group = match &group_guid {
                    Some(gg) => {
                        let user = self.user()?;
                        let l = user.state.list();
                        let g = l.group_by_guid(gg).filter(|g| g.id != 0);
                        Some(g.ok_or(ErrorCode::InvalidGroup)?.id)
                    }
                    None => None,
                };
                let peer = self.peer_list(email).await?;
                let user = self.user()?;
                let req = AddRequest {
                    list,
                    email,
                    nickname: if list == List::Forward {
                        nick.as_deref()
                    } else {
                        None
                    },
                    group,
                };
                let changes = user
                    .state
                    .list()
                    .add(&req, peer.as_ref(), &user.name, &limits)
                    .map_err(|e| match e {
                        ListError::Reply(ErrorCode::InvalidUser) => {
                            Refusal::Reply(ErrorCode::InvalidPrincipal)
                        }
                        other => other.into(),
                    })?;
                let email = peer.map(|p| p.owner).unwrap_or_default();
                let joined = joins_forward_list(&changes);
                self.commit(changes).await?;
                let user = self.user()?;
                let n = format!("N={email}");
                if list == List::Forward {
                    let (f, c) = {
                        let l = user.state.list();
                        let contact = l.contact(&email);
                        (
                            format!(
                                "F={}",
                                urlenc::encode(contact.map_or(email.as_str(), |c| &c.nickname))
                            ),
                            format!(
                                "C={}",
                                contact.map(|c| c.guid.to_string()).unwrap_or_default()
                            ),
                        )
                    };
                    let gg = group_guid.map(|g| g.text());
                    let mut args = vec![list.token(), &n, &f, &c];
                    if let Some(gg) = &gg {
                        args.push(gg);
                    }
                    write_line(out, "ADC", Some(trid), &args);
                    if joined {
                        self.show_new_contact(dialect, &email, out);
                    }
                } else {
                    write_line(out, "ADC", Some(trid), &[list.token(), &n]);
                }
                Ok(())
            }
            (None, None) => Err(bad()),
        }
    }

    async fn rem(
        &mut self,
        dialect: Dialect,
        frame: &Frame,
        trid: TrId,
        out: &mut BytesMut,
    ) -> Outcome {
        let p = frame.params();
        let (Some(list), Some(who)) = (p.first(), p.get(1)) else {
            return Err(bad());
        };
        let list = List::from_token(list).ok_or_else(bad)?;
        let user = self.user()?;
        let (email, group) = {
            let l = user.state.list();
            if versioned(dialect) {
                let group = match p.get(2) {
                    Some(g) if list == List::Forward && dialect >= Dialect::Msnp7 => {
                        Some(g.parse::<u32>().map_err(|_| ErrorCode::InvalidGroup)?)
                    }
                    _ => None,
                };
                ((*who).to_owned(), group)
            } else {
                // MSNP10+ names forward-list contacts by GUID, others by e-mail.
                let email = match Guid::parse(who) {
                    Ok(g) => l
                        .contact_by_guid(&g)
                        .map(|c| c.email.to_string())
                        .ok_or(ErrorCode::NotInList)?,
                    Err(_) => (*who).to_owned(),
                };
                let group = match p.get(2) {
                    Some(gg) if list == List::Forward => {
                        let gg = Guid::parse(gg).map_err(|_| ErrorCode::InvalidGroup)?;
                        Some(
                            l.group_by_guid(&gg)
                                .filter(|g| g.id != 0)
                                .ok_or(ErrorCode::InvalidGroup)?
                                .id,
                        )
                    }
                    _ => None,
                };
                (email, group)
            }
        };
        let changes = user.state.list().remove(list, &email, group)?;
        let version = self.commit(changes).await?.to_string();
        let mut args = vec![list.token()];
        if versioned(dialect) {
            args.push(&version);
        }
        args.push(who);
        // The group is echoed only when it was used (a stray third parameter is not).
        if let (Some(_), Some(g)) = (group, p.get(2)) {
            args.push(g);
        }
        write_line(out, "REM", Some(trid), &args);
        Ok(())
    }

    async fn adg(
        &mut self,
        dialect: Dialect,
        frame: &Frame,
        trid: TrId,
        out: &mut BytesMut,
    ) -> Outcome {
        let p = frame.params();
        let raw = p.first().ok_or_else(bad)?;
        let name = decode(raw)?;
        let limits = self.shared.config.limits.lists();
        let user = self.user()?;
        let changes = user.state.list().add_group(&name, &limits)?;
        let (id, guid) = match changes.first().map(|c| &c.kind) {
            Some(ChangeKind::AddGroup { id, guid, .. }) => (*id, *guid),
            _ => return Err(Refusal::Reply(ErrorCode::InternalServerError)),
        };
        let version = self.commit(changes).await?.to_string();
        if versioned(dialect) {
            write_line(
                out,
                "ADG",
                Some(trid),
                &[&version, raw, &id.to_string(), "0"],
            );
        } else {
            write_line(out, "ADG", Some(trid), &[raw, &guid.text()]);
        }
        Ok(())
    }

    /// The group a `RMG`/`REG` names: an id in MSNP7–9, a GUID in MSNP10+.
    fn group_param(&mut self, dialect: Dialect, raw: &str) -> Result<u32, Refusal> {
        if versioned(dialect) {
            return raw
                .parse::<u32>()
                .map_err(|_| ErrorCode::InvalidGroup.into());
        }
        let guid = Guid::parse(raw).map_err(|_| ErrorCode::InvalidGroup)?;
        let user = self.user()?;
        let l = user.state.list();
        let id = l.group_by_guid(&guid).ok_or(ErrorCode::InvalidGroup)?.id;
        Ok(id)
    }

    async fn rmg(
        &mut self,
        dialect: Dialect,
        frame: &Frame,
        trid: TrId,
        out: &mut BytesMut,
    ) -> Outcome {
        let p = frame.params();
        let raw = *p.first().ok_or_else(bad)?;
        let id = self.group_param(dialect, raw)?;
        let exclusive = if versioned(dialect) {
            ExclusiveMembers::LeaveForwardList
        } else {
            ExclusiveMembers::StayUngrouped
        };
        let limits = self.shared.config.limits.lists();
        let changes = self
            .user()?
            .state
            .list()
            .remove_group(id, exclusive, &limits)?;
        let version = self.commit(changes).await?.to_string();
        write_versioned(out, dialect, "RMG", trid, &version, &[raw]);
        Ok(())
    }

    async fn reg(
        &mut self,
        dialect: Dialect,
        frame: &Frame,
        trid: TrId,
        out: &mut BytesMut,
    ) -> Outcome {
        let p = frame.params();
        let (Some(raw), Some(raw_name)) = (p.first().copied(), p.get(1).copied()) else {
            return Err(bad());
        };
        let id = self.group_param(dialect, raw)?;
        let name = decode(raw_name)?;
        let limits = self.shared.config.limits.lists();
        let changes = self.user()?.state.list().rename_group(id, &name, &limits)?;
        let version = self.commit(changes).await?.to_string();
        // MSNP2–9 end the reply with the group's legacy "0" field.
        let args: &[&str] = if versioned(dialect) {
            &[raw, raw_name, "0"]
        } else {
            &[raw, raw_name]
        };
        write_versioned(out, dialect, "REG", trid, &version, args);
        Ok(())
    }

    async fn privacy_mode(
        &mut self,
        dialect: Dialect,
        command: &str,
        frame: &Frame,
        trid: TrId,
        out: &mut BytesMut,
    ) -> Outcome {
        let p = frame.params();
        let token = *p.first().ok_or_else(bad)?;
        let changes = {
            let user = self.user()?;
            let l = user.state.list();
            if command == "GTC" {
                l.set_gtc(Gtc::from_token(token).ok_or_else(bad)?)?
            } else {
                l.set_blp(Blp::from_token(token).ok_or_else(bad)?)?
            }
        };
        let version = self.commit(changes).await?.to_string();
        write_versioned(out, dialect, command, trid, &version, &[token]);
        Ok(())
    }

    fn rate_limited(&mut self) -> Outcome {
        let shared = self.shared.clone();
        if self.user()?.changes.take(&shared.config.limits) {
            Ok(())
        } else {
            Err(ErrorCode::ChangingTooRapidly.into())
        }
    }

    async fn prp(
        &mut self,
        dialect: Dialect,
        frame: &Frame,
        trid: TrId,
        out: &mut BytesMut,
    ) -> Outcome {
        let p = frame.params();
        let prop = *p.first().ok_or_else(bad)?;
        let raw = p.get(1).copied();
        let value = raw.map(decode).transpose()?;
        if prop == "MFN" && !versioned(dialect) {
            let name = value.ok_or_else(bad)?;
            self.rate_limited()?;
            self.set_own_name(&name).await?;
            write_line(out, "PRP", Some(trid), &["MFN", raw.unwrap_or_default()]);
            return Ok(());
        }
        let property = match Property::from_token(prop) {
            Some(Property::MobileEnabled) => return Err(ErrorCode::NotExpected.into()),
            Some(p) => p,
            None => return Err(bad()),
        };
        self.rate_limited()?;
        let limits = self.shared.config.limits.lists();
        let changes =
            self.user()?
                .state
                .list()
                .set_property(property, value.as_deref(), &limits)?;
        let version = self.commit(changes).await?.to_string();
        let mut args = Vec::new();
        if versioned(dialect) {
            args.push(version.as_str());
        }
        args.push(prop);
        if let Some(r) = raw {
            args.push(r);
        }
        write_line(out, "PRP", Some(trid), &args);
        self.announce_property(property).await
    }

    /// After a `PRP` phone change: those who have this user on their forward list get a new
    /// list version, and the ones its privacy lets see it a `BPR` (see `bpr.rs`).
    async fn announce_property(&mut self, property: Property) -> Outcome {
        let shared = self.shared.clone();
        let email = self.user()?.email.to_string();
        // The change itself is stored and acknowledged; a failure here only leaves watchers'
        // cached copies one change behind until their next list change.
        let touched = match shared.touch_watchers(&email).await {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "moving watchers' list versions failed");
                return Ok(());
            }
        };
        let user = self.user()?;
        let (notice, seen) = {
            let list = user.state.list();
            let notice = Arc::new(PropertyNotice {
                from: email,
                property,
                value: list.settings.phones.get(property).map(str::to_owned),
            });
            (notice, audience(&list))
        };
        shared
            .hub
            .send_all(touched.into_iter().map(|(watcher, version)| {
                let notice = seen.contains(&watcher).then(|| notice.clone());
                let changed = crate::hub::PropertyChanged { notice, version };
                (watcher, Event::ContactProperty(Box::new(changed)))
            }));
        Ok(())
    }

    async fn rea(
        &mut self,
        _dialect: Dialect,
        frame: &Frame,
        trid: TrId,
        out: &mut BytesMut,
    ) -> Outcome {
        let p = frame.params();
        let (Some(who), Some(raw)) = (p.first().copied(), p.get(1).copied()) else {
            return Err(bad());
        };
        let name = decode(raw)?;
        self.rate_limited()?;
        let own = self.user()?.email.eq_ignore_ascii_case(who);
        let version = if own {
            self.set_own_name(&name).await?
        } else {
            let changes = self.user()?.state.list().set_contact_nickname(who, &name)?;
            self.commit(changes).await?
        };
        let email = who.to_ascii_lowercase();
        write_line(out, "REA", Some(trid), &[&version.to_string(), &email, raw]);
        Ok(())
    }

    /// `SBP t guid MFN name` (MSNP10–12): the name this user keeps for a forward-list contact,
    /// the GUID form of `REA` of a contact; echoed as sent. msn-pecan sends it whenever a
    /// contact's current display name differs from the stored one, and treats an error as
    /// fatal. `MFN` is the only property a contact has here (201 for others); an unknown GUID
    /// is 208, an unacceptable name 209.
    async fn sbp(&mut self, frame: &Frame, trid: TrId, out: &mut BytesMut) -> Outcome {
        let p = frame.params();
        let (Some(raw_guid), Some(prop), Some(raw)) =
            (p.first().copied(), p.get(1).copied(), p.get(2).copied())
        else {
            return Err(bad());
        };
        if prop != "MFN" {
            return Err(bad());
        }
        let guid = Guid::parse(raw_guid).map_err(|_| ErrorCode::InvalidPrincipal)?;
        let name = decode(raw)?;
        let changes = {
            let l = self.user()?.state.list();
            let email = l
                .contact_by_guid(&guid)
                .ok_or(ErrorCode::InvalidPrincipal)?
                .email
                .clone();
            l.set_contact_nickname(&email, &name)?
        };
        self.commit(changes).await?;
        write_line(out, "SBP", Some(trid), &[raw_guid, prop, raw]);
        Ok(())
    }

    /// Changes the account's display name (`REA` of oneself, `PRP MFN`): stored with the account
    /// and counted as a list change; watchers see the new name in an `NLN`.
    async fn set_own_name(&mut self, name: &str) -> Result<u64, Refusal> {
        let (email, changes) = {
            let user = self.user()?;
            let changes = user.state.list().set_display_name(name)?;
            (user.email.clone(), changes)
        };
        self.shared
            .set_display_name(&email, name)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "storing a display name failed");
                Refusal::Reply(ErrorCode::DatabaseServerError)
            })?;
        let version = self.commit(changes).await?;
        let shared = self.shared.clone();
        let user = self.user()?;
        user.name = name.into();
        if let Some(p) = user.state.presence() {
            let renamed = Arc::new(PresenceNotice {
                name: urlenc::encode(name).into_owned(),
                ..(*p).clone()
            });
            user.state.set_presence(Some(renamed.clone()));
            if renamed.status.is_visible() {
                shared.hub.fan_out(&user.state, &Event::Presence(renamed));
            }
        }
        Ok(version)
    }

    async fn uux(&mut self, frame: &Frame, trid: TrId, out: &mut BytesMut) -> Outcome {
        let payload = frame
            .payload()
            .map(|p| std::str::from_utf8(p).map_err(|_| bad()))
            .transpose()?
            .map(str::to_owned);
        // A personal message is a change like a status or a name: a store write and a fan-out
        // to every watcher, so it spends the same budget (800 when it is used up).
        self.rate_limited()?;
        let limits = self.shared.config.limits.lists();
        let changes = self
            .user()?
            .state
            .list()
            .set_personal_message(payload.as_deref(), &limits)?;
        self.commit(changes).await?;
        write_line(out, "UUX", Some(trid), &["0"]);
        let shared = self.shared.clone();
        let user = self.user()?;
        if user.state.presence().is_some_and(|p| p.status.is_visible()) {
            let pm = PersonalMessage {
                from: user.email.to_string(),
                payload: user.state.list().settings.personal_message.clone(),
            };
            shared
                .hub
                .fan_out(&user.state, &Event::PersonalMessage(Arc::new(pm)));
        }
        Ok(())
    }
}

/// Whether `changes` put someone on their owner's forward list (and not merely into a group).
fn joins_forward_list(changes: &[Change]) -> bool {
    changes.iter().any(|c| {
        matches!(
            c.kind,
            ChangeKind::AddToList {
                list: List::Forward,
                ..
            }
        )
    })
}

/// Who may currently see `list`'s owner (reverse-list members allowed by privacy).
fn audience(list: &ContactList) -> BTreeSet<String> {
    msgr_core::privacy::audience(list)
        .map(str::to_owned)
        .collect()
}

/// Another user's operation changed this user's list: apply it to the in-memory copy and tell
/// the client in its dialect (see the module table's peer notices).
pub(super) fn peer_change(
    dialect: Dialect,
    user: &OnlineUser,
    change: &Change,
    version: u64,
    out: &mut BytesMut,
) {
    if change.owner != user.email {
        return;
    }
    {
        let mut list = user.state.list_mut();
        list.apply(change);
        // The store's count is the truth: a change this copy already had (loaded at login
        // while the event was in flight) must not move the version twice.
        list.version = version;
    }
    let ver = version.to_string();
    match &change.kind {
        ChangeKind::AddToList {
            email,
            list: List::Reverse,
            nickname,
            ..
        } => {
            let name = urlenc::encode(nickname);
            if versioned(dialect) {
                write_line(out, "ADD", Some(TrId(0)), &["RL", &ver, email, &name]);
            } else {
                let n = format!("N={email}");
                let f = format!("F={name}");
                write_line(out, "ADC", Some(TrId(0)), &["RL", &n, &f]);
            }
        }
        ChangeKind::RemoveFromList {
            email,
            list: List::Reverse,
        } => {
            if versioned(dialect) {
                write_line(out, "REM", Some(TrId(0)), &["RL", &ver, email]);
            } else {
                write_line(out, "REM", Some(TrId(0)), &["RL", email]);
            }
        }
        // Nothing else is ever decided by another user; it is applied silently.
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::hub::UserState;
    use crate::ns::presence::TokenBucket;

    fn user(email: &str) -> OnlineUser {
        OnlineUser {
            email: email.into(),
            challenge: None,
            name: "B".into(),
            state: UserState::new(ContactList::new(email, Guid::random())),
            announced: false,
            changes: TokenBucket::new(&crate::config::LimitsConfig::default()),
            mail: None,
        }
    }

    fn notice(d: Dialect, kind: ChangeKind) -> String {
        let u = user("bob@x.com");
        let mut out = BytesMut::new();
        let change = Change {
            owner: "bob@x.com".into(),
            kind,
        };
        peer_change(d, &u, &change, 12, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn reverse_list_notices_per_dialect() {
        let add = || ChangeKind::AddToList {
            email: "alice@x.com".into(),
            list: List::Reverse,
            nickname: "Alice A".into(),
            guid: Guid::random(),
            group: None,
        };
        let rem = || ChangeKind::RemoveFromList {
            email: "alice@x.com".into(),
            list: List::Reverse,
        };
        for d in [
            Dialect::Msnp2,
            Dialect::Msnp7,
            Dialect::Msnp8,
            Dialect::Msnp9,
        ] {
            assert_eq!(notice(d, add()), "ADD 0 RL 12 alice@x.com Alice%20A\r\n");
            assert_eq!(notice(d, rem()), "REM 0 RL 12 alice@x.com\r\n");
        }
        for d in [Dialect::Msnp10, Dialect::Msnp11, Dialect::Msnp12] {
            assert_eq!(notice(d, add()), "ADC 0 RL N=alice@x.com F=Alice%20A\r\n");
            assert_eq!(notice(d, rem()), "REM 0 RL alice@x.com\r\n");
        }
    }
}
