//! [`ContactStore`] for SQLite: list state in `list_settings`, `list_groups`, `contacts` and
//! `contact_group_members` (migration 2).
//!
//! Each [`ChangeKind`] is carried out with the same semantics as `ContactList::apply` in `msgr-core`, including
//! its leniency: a change that no longer fits (removing a contact that is already gone, joining a group that
//! does not exist) changes nothing but the version. The two implementations are checked against each other by
//! the tests.

use std::collections::{BTreeMap, HashMap};

use msgr_core::lists::{
    Blp, Change, ChangeKind, Contact, ContactList, Group, Gtc, Guid, List, ListSet, Names, Phones,
    Property, Settings,
};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::SqliteStore;
use crate::{ContactStore, Result, StoreError};

fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Corrupt(what.into())
}

fn to_u32(value: i64, what: &str) -> Result<u32> {
    u32::try_from(value).map_err(|_| corrupt(format!("{what} {value} out of range")))
}

fn to_u64(value: i64, what: &str) -> Result<u64> {
    u64::try_from(value).map_err(|_| corrupt(format!("{what} {value} is negative")))
}

fn parse_guid(text: &str, what: &str) -> Result<Guid> {
    Guid::parse(text).map_err(|_| corrupt(format!("{what} has malformed GUID {text:?}")))
}

/// The row of an account's settings, as stored.
struct SettingsRow {
    account_id: i64,
    owner: String,
    version: i64,
    gtc: String,
    blp: String,
    phones: [Option<String>; 3],
    mobile_contact: bool,
    mobile_enabled: bool,
    personal_message: Option<String>,
}

impl SettingsRow {
    fn load(conn: &Connection, owner: &str) -> Result<SettingsRow> {
        // LEFT JOIN so that a missing settings row reads as corruption rather than as "no such account".
        let row = conn
            .prepare_cached(
                "SELECT a.id, a.email, s.list_version, s.gtc, s.blp, s.phone_home, s.phone_work, \
                        s.phone_mobile, s.mobile_contact, s.mobile_enabled, s.personal_message \
                 FROM accounts a LEFT JOIN list_settings s ON s.account_id = a.id WHERE a.email = ?1",
            )?
            .query_row([owner], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    [r.get(5)?, r.get(6)?, r.get(7)?],
                    r.get::<_, Option<bool>>(8)?,
                    r.get::<_, Option<bool>>(9)?,
                    r.get::<_, Option<String>>(10)?,
                ))
            })
            .optional()?
            .ok_or_else(|| StoreError::AccountNotFound(owner.to_owned()))?;
        let (account_id, owner, version, gtc, blp, phones, mob, mbe, personal_message) = row;
        let missing = || corrupt(format!("account {owner} has no list settings"));
        Ok(SettingsRow {
            account_id,
            version: version.ok_or_else(missing)?,
            gtc: gtc.ok_or_else(missing)?,
            blp: blp.ok_or_else(missing)?,
            phones,
            mobile_contact: mob.ok_or_else(missing)?,
            mobile_enabled: mbe.ok_or_else(missing)?,
            personal_message,
            owner,
        })
    }

    fn settings(self) -> Result<(String, u64, Settings)> {
        let gtc = Gtc::from_token(&self.gtc)
            .ok_or_else(|| corrupt(format!("GTC {:?} of {}", self.gtc, self.owner)))?;
        let blp = Blp::from_token(&self.blp)
            .ok_or_else(|| corrupt(format!("BLP {:?} of {}", self.blp, self.owner)))?;
        let [home, work, mobile] = self.phones;
        let settings = Settings {
            gtc,
            blp,
            phones: Phones {
                home,
                work,
                mobile,
                mobile_contact: self.mobile_contact,
                mobile_enabled: self.mobile_enabled,
            },
            personal_message: self.personal_message,
        };
        let version = to_u64(self.version, "list version")?;
        Ok((self.owner, version, settings))
    }
}

fn load(conn: &Connection, owner: &str) -> Result<ContactList> {
    let row = SettingsRow::load(conn, owner)?;
    let account_id = row.account_id;
    let (owner, version, settings) = row.settings()?;

    let mut groups = BTreeMap::new();
    {
        let mut stmt = conn
            .prepare_cached("SELECT group_id, guid, name FROM list_groups WHERE account_id = ?1")?;
        let mut rows = stmt.query([account_id])?;
        while let Some(r) = rows.next()? {
            let id = to_u32(r.get(0)?, "group id")?;
            let guid = parse_guid(&r.get::<_, String>(1)?, "group")?;
            groups.insert(
                id,
                Group {
                    id,
                    guid,
                    name: r.get(2)?,
                },
            );
        }
    }
    if !groups.contains_key(&0) {
        return Err(corrupt(format!("account {owner} has no group 0")));
    }

    let mut contacts = BTreeMap::new();
    let mut by_row_id = HashMap::new();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT id, email, nickname, lists, guid FROM contacts WHERE account_id = ?1",
        )?;
        let mut rows = stmt.query([account_id])?;
        while let Some(r) = rows.next()? {
            let email: String = r.get(1)?;
            let bits = r.get::<_, i64>(3)?;
            let lists = u8::try_from(bits)
                .ok()
                .and_then(ListSet::from_bits)
                .filter(|l| !l.is_empty())
                .ok_or_else(|| {
                    corrupt(format!("list mask {bits} of {email} in {owner}'s lists"))
                })?;
            // Shared with every other list that names the same person (msgr-core's `Names`).
            let (shared_email, nickname) = Names::global().contact(&email, &r.get::<_, String>(2)?);
            let guid = parse_guid(&r.get::<_, String>(4)?, "contact")?;
            let contact = Contact::new(shared_email, nickname, lists, guid);
            by_row_id.insert(r.get::<_, i64>(0)?, email.clone());
            contacts.insert(email, contact);
        }
    }
    {
        let mut stmt = conn.prepare_cached(
            "SELECT contact_id, group_id FROM contact_group_members WHERE account_id = ?1",
        )?;
        let mut rows = stmt.query([account_id])?;
        while let Some(r) = rows.next()? {
            // The foreign keys guarantee both ends exist; a miss would mean they were switched off.
            let contact = by_row_id
                .get(&r.get::<_, i64>(0)?)
                .and_then(|email| contacts.get_mut(email))
                .ok_or_else(|| {
                    corrupt(format!(
                        "group membership of a missing contact in {owner}'s lists"
                    ))
                })?;
            contact.join_group(to_u32(r.get(1)?, "group id")?);
        }
    }

    Ok(ContactList {
        owner,
        version,
        // Collected from an exact-size iterator: no spare capacity stays with an online user's list.
        contacts: contacts.into_values().collect(),
        groups: groups.into_values().collect(),
        settings,
    })
}

/// Takes `email` off `list` of `account`, with the semantics of `ContactList::apply`.
fn remove_from_list(tx: &Transaction<'_>, account: i64, email: &str, list: List) -> Result<()> {
    let found: Option<(i64, i64)> = tx
        .prepare_cached("SELECT id, lists FROM contacts WHERE account_id = ?1 AND email = ?2")?
        .query_row(params![account, email], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((id, bits)) = found else {
        return Ok(());
    };
    let remaining = bits & !i64::from(list.bit());
    if list == List::Forward {
        tx.prepare_cached("DELETE FROM contact_group_members WHERE contact_id = ?1")?
            .execute([id])?;
    }
    if remaining == 0 {
        tx.prepare_cached("DELETE FROM contacts WHERE id = ?1")?
            .execute([id])?;
    } else {
        tx.prepare_cached("UPDATE contacts SET lists = ?2 WHERE id = ?1")?
            .execute(params![id, remaining])?;
    }
    Ok(())
}

/// Puts contact `email` of `account` in `group`, if both exist.
fn join_group(tx: &Transaction<'_>, account: i64, email: &str, group: u32) -> Result<()> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO contact_group_members (contact_id, account_id, group_id) \
         SELECT c.id, c.account_id, ?3 FROM contacts c \
         WHERE c.account_id = ?1 AND c.email = ?2 \
           AND EXISTS (SELECT 1 FROM list_groups g WHERE g.account_id = ?1 AND g.group_id = ?3)",
    )?
    .execute(params![account, email, group])?;
    Ok(())
}

fn set_settings_column(
    tx: &Transaction<'_>,
    account: i64,
    sql: &'static str,
    value: impl rusqlite::ToSql,
) -> Result<()> {
    tx.prepare_cached(sql)?.execute(params![account, value])?;
    Ok(())
}

/// Carries out one change for the account with row id `account`.
fn apply_kind(tx: &Transaction<'_>, account: i64, kind: &ChangeKind) -> Result<()> {
    match kind {
        ChangeKind::AddToList {
            email,
            list,
            nickname,
            guid,
            group,
        } => {
            let email = email.to_ascii_lowercase();
            // A new entry takes the nickname and GUID; an existing one joins the list and takes the nickname
            // only for the forward list (lists = 1 is the forward list's bit).
            tx.prepare_cached(
                "INSERT INTO contacts (account_id, email, nickname, lists, guid) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (account_id, email) DO UPDATE SET \
                     lists = lists | excluded.lists, \
                     nickname = CASE WHEN excluded.lists = 1 THEN excluded.nickname ELSE nickname END",
            )?
            .execute(params![account, email, nickname, list.bit(), &*guid.text()])?;
            if let Some(group) = group {
                join_group(tx, account, &email, *group)?;
            }
        }
        ChangeKind::RemoveFromList { email, list } => {
            remove_from_list(tx, account, &email.to_ascii_lowercase(), *list)?;
        }
        ChangeKind::AddToGroup { email, group } => {
            join_group(tx, account, &email.to_ascii_lowercase(), *group)?;
        }
        ChangeKind::RemoveFromGroup { email, group } => {
            tx.prepare_cached(
                "DELETE FROM contact_group_members WHERE group_id = ?3 AND contact_id = \
                 (SELECT id FROM contacts WHERE account_id = ?1 AND email = ?2)",
            )?
            .execute(params![account, email.to_ascii_lowercase(), group])?;
        }
        ChangeKind::AddGroup { id, guid, name } => {
            // An upsert, not REPLACE: replacing the row would cascade away the group's members, which
            // ContactList::apply keeps.
            tx.prepare_cached(
                "INSERT INTO list_groups (account_id, group_id, guid, name) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (account_id, group_id) DO UPDATE SET guid = excluded.guid, name = excluded.name",
            )?
            .execute(params![account, id, &*guid.text(), name])?;
        }
        ChangeKind::RenameGroup { id, name } => {
            tx.prepare_cached(
                "UPDATE list_groups SET name = ?3 WHERE account_id = ?1 AND group_id = ?2",
            )?
            .execute(params![account, id, name])?;
        }
        ChangeKind::RemoveGroup { id, dropped } => {
            for email in dropped {
                remove_from_list(tx, account, &email.to_ascii_lowercase(), List::Forward)?;
            }
            // The membership rows go with the group (ON DELETE CASCADE).
            tx.prepare_cached("DELETE FROM list_groups WHERE account_id = ?1 AND group_id = ?2")?
                .execute(params![account, id])?;
        }
        ChangeKind::SetGtc(gtc) => set_settings_column(
            tx,
            account,
            "UPDATE list_settings SET gtc = ?2 WHERE account_id = ?1",
            gtc.token(),
        )?,
        ChangeKind::SetBlp(blp) => set_settings_column(
            tx,
            account,
            "UPDATE list_settings SET blp = ?2 WHERE account_id = ?1",
            blp.token(),
        )?,
        ChangeKind::SetProperty(property, value) => {
            let flag = value.as_deref() == Some("Y");
            match property {
                Property::HomePhone => set_settings_column(
                    tx,
                    account,
                    "UPDATE list_settings SET phone_home = ?2 WHERE account_id = ?1",
                    value,
                )?,
                Property::WorkPhone => set_settings_column(
                    tx,
                    account,
                    "UPDATE list_settings SET phone_work = ?2 WHERE account_id = ?1",
                    value,
                )?,
                Property::MobilePhone => set_settings_column(
                    tx,
                    account,
                    "UPDATE list_settings SET phone_mobile = ?2 WHERE account_id = ?1",
                    value,
                )?,
                Property::MobileContact => set_settings_column(
                    tx,
                    account,
                    "UPDATE list_settings SET mobile_contact = ?2 WHERE account_id = ?1",
                    flag,
                )?,
                Property::MobileEnabled => set_settings_column(
                    tx,
                    account,
                    "UPDATE list_settings SET mobile_enabled = ?2 WHERE account_id = ?1",
                    flag,
                )?,
            }
        }
        ChangeKind::SetDisplayName(name) => set_settings_column(
            tx,
            account,
            "UPDATE accounts SET display_name = ?2 WHERE id = ?1",
            name,
        )?,
        ChangeKind::SetContactNickname { email, nickname } => {
            tx.prepare_cached(
                "UPDATE contacts SET nickname = ?3 WHERE account_id = ?1 AND email = ?2",
            )?
            .execute(params![account, email.to_ascii_lowercase(), nickname])?;
        }
        ChangeKind::SetPersonalMessage(payload) => set_settings_column(
            tx,
            account,
            "UPDATE list_settings SET personal_message = ?2 WHERE account_id = ?1",
            payload,
        )?,
    }
    Ok(())
}

/// The row id and current list version of `owner`.
fn owner_row(tx: &Transaction<'_>, owner: &str) -> Result<(i64, u64)> {
    let (id, version): (i64, Option<i64>) = tx
        .prepare_cached(
            "SELECT a.id, s.list_version FROM accounts a \
             LEFT JOIN list_settings s ON s.account_id = a.id WHERE a.email = ?1",
        )?
        .query_row([owner], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .ok_or_else(|| StoreError::AccountNotFound(owner.to_owned()))?;
    let version =
        version.ok_or_else(|| corrupt(format!("account {owner} has no list settings")))?;
    Ok((id, to_u64(version, "list version")?))
}

impl ContactStore for SqliteStore {
    fn load_list(&self, owner: &str) -> Result<ContactList> {
        self.with_reader(|conn| {
            // One read transaction, so that the four queries see one snapshot even while a writer commits.
            let tx = conn.unchecked_transaction()?;
            let list = load(&tx, owner)?;
            tx.finish()?;
            Ok(list)
        })
    }

    fn list_version(&self, owner: &str) -> Result<u64> {
        self.with_reader(|conn| {
            let version: Option<Option<i64>> = conn
                .prepare_cached(
                    "SELECT s.list_version FROM accounts a \
                     LEFT JOIN list_settings s ON s.account_id = a.id WHERE a.email = ?1",
                )?
                .query_row([owner], |r| r.get(0))
                .optional()?;
            match version {
                None => Err(StoreError::AccountNotFound(owner.to_owned())),
                Some(None) => Err(corrupt(format!("account {owner} has no list settings"))),
                Some(Some(v)) => to_u64(v, "list version"),
            }
        })
    }

    fn apply(&self, changes: &[Change]) -> Result<Vec<(String, u64)>> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        self.with_writer(|conn| {
            // IMMEDIATE takes the write lock up front, so another process cannot make the transaction fail
            // half-way with SQLITE_BUSY on its first write.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // (owner, row id, version) in order of first appearance; `index` finds an owner's slot.
            let mut owners: Vec<(String, i64, u64)> = Vec::new();
            let mut index: HashMap<String, usize> = HashMap::new();
            for change in changes {
                let owner = change.owner.to_ascii_lowercase();
                let slot = match index.get(&owner) {
                    Some(&slot) => slot,
                    None => {
                        let (id, version) = owner_row(&tx, &owner)?;
                        owners.push((owner.clone(), id, version));
                        index.insert(owner, owners.len() - 1);
                        owners.len() - 1
                    }
                };
                let account = owners[slot].1;
                apply_kind(&tx, account, &change.kind)?;
                if change.kind.bumps_version() {
                    let version: i64 = tx
                        .prepare_cached(
                            "UPDATE list_settings SET list_version = list_version + 1 \
                             WHERE account_id = ?1 RETURNING list_version",
                        )?
                        .query_row([account], |r| r.get(0))?;
                    owners[slot].2 = to_u64(version, "list version")?;
                }
            }
            // Dropping `tx` on any error above rolls everything back.
            tx.commit()?;
            Ok(owners.into_iter().map(|(o, _, v)| (o, v)).collect())
        })
    }

    fn contact_phones(&self, owner: &str) -> Result<HashMap<String, Phones>> {
        self.with_reader(|conn| {
            // `back` is the contact's own entry for `owner`, if any: the rule of `privacy::may_see`.
            let mut stmt = conn.prepare_cached(
                "SELECT c.email, s.phone_home, s.phone_work, s.phone_mobile, s.mobile_contact \
                 FROM accounts me \
                 JOIN contacts c ON c.account_id = me.id AND (c.lists & 1) != 0 \
                 JOIN accounts a ON a.email = c.email \
                 JOIN list_settings s ON s.account_id = a.id \
                 LEFT JOIN contacts back ON back.account_id = a.id AND back.email = me.email \
                 WHERE me.email = ?1 \
                   AND (s.phone_home IS NOT NULL OR s.phone_work IS NOT NULL \
                        OR s.phone_mobile IS NOT NULL OR s.mobile_contact = 1) \
                   AND (COALESCE(back.lists, 0) & 4) = 0 \
                   AND ((COALESCE(back.lists, 0) & 2) != 0 OR s.blp = 'AL')",
            )?;
            let mut rows = stmt.query([owner])?;
            let mut phones = HashMap::new();
            while let Some(r) = rows.next()? {
                let email: String = r.get(0)?;
                phones.insert(
                    email.to_ascii_lowercase(),
                    Phones {
                        home: r.get(1)?,
                        work: r.get(2)?,
                        mobile: r.get(3)?,
                        mobile_contact: r.get(4)?,
                        // MBE is the account's own business; contacts never see it.
                        mobile_enabled: false,
                    },
                );
            }
            Ok(phones)
        })
    }

    fn touch_watchers(&self, contact: &str) -> Result<Vec<(String, u64)>> {
        self.with_writer(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.prepare_cached(
                "UPDATE list_settings SET list_version = list_version + 1 \
                 WHERE account_id IN \
                   (SELECT account_id FROM contacts WHERE email = ?1 AND (lists & 1) != 0)",
            )?
            .execute([contact])?;
            let mut touched = Vec::new();
            {
                let mut stmt = tx.prepare_cached(
                    "SELECT a.email, s.list_version FROM contacts c \
                     JOIN accounts a ON a.id = c.account_id \
                     JOIN list_settings s ON s.account_id = c.account_id \
                     WHERE c.email = ?1 AND (c.lists & 1) != 0",
                )?;
                let mut rows = stmt.query([contact])?;
                while let Some(r) = rows.next()? {
                    let email: String = r.get(0)?;
                    let version = to_u64(r.get(1)?, "list version")?;
                    touched.push((email.to_ascii_lowercase(), version));
                }
            }
            tx.commit()?;
            Ok(touched)
        })
    }
}
