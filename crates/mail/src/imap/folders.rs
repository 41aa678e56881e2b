//! Folder commands (RFC 3501 §6.3): `SELECT`/`EXAMINE`, `CREATE`, `DELETE`, `RENAME`, `SUBSCRIBE`/
//! `UNSUBSCRIBE`, `LIST`/`LSUB` (with LIST-EXTENDED's selection options), `STATUS`, `APPEND`.

use super::ext::Extras;
use super::messages::compact_set;
use super::search;
use super::session::{
    flag_list_recent, split_flags, Flow, Msg, Selected, Session, State, DELIMITER,
};
use super::write::mailbox as write_mailbox;
use crate::LookupError;
use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::status::StatusDataItemName;
use msgr_store::{
    Delivery, FlagOp, Flags, Folder, FolderRef, LocalTarget, MailStore, SpecialUse, StoreError,
};

impl Session {
    pub(super) async fn select(
        &mut self,
        tag: &str,
        name: &str,
        read_only: bool,
        extras: &Extras,
    ) -> Flow {
        if extras.qresync.is_some() && !self.qresync {
            // RFC 7162 §3.2.5: the parameter is an error unless QRESYNC was enabled.
            return self.bad(tag, "ENABLE QRESYNC first");
        }
        // A failed SELECT leaves no mailbox selected (RFC 3501 §6.3.1); with QRESYNC the client is told
        // where the old mailbox's responses end (RFC 7162 §3.2.11).
        let was_selected = matches!(self.state, State::Selected(_));
        self.state = State::Authenticated;
        if was_selected && self.qresync {
            self.untagged("OK [CLOSED] previous mailbox closed");
        }
        if extras.condstore || extras.qresync.is_some() {
            self.condstore = true;
        }
        let account = self.account();
        let n = name.to_owned();
        let since = extras.qresync.as_ref().map(|q| (q.uidvalidity, q.modseq));
        // One store call: the folder, its messages and (read-write only: EXAMINE must not take them,
        // RFC 3501 §6.3.2) the recent claim, from one snapshot; QRESYNC's expunged UIDs with it.
        let loaded = self
            .blocking(move |s| {
                let Some(opened) = s.select_folder(&account, &n, !read_only)? else {
                    return Ok(None);
                };
                let vanished = match since {
                    Some((uidvalidity, m))
                        if uidvalidity == opened.folder.uidvalidity && !opened.folder.noselect =>
                    {
                        s.expunged_since(opened.folder.id, m)?
                    }
                    _ => Vec::new(),
                };
                Ok(Some((opened, vanished)))
            })
            .await;
        let (opened, vanished) = match loaded {
            Ok(Some((o, _))) if o.folder.noselect => {
                self.tagged(tag, "NO [CANNOT] mailbox is \\Noselect");
                return Flow::Continue;
            }
            Ok(Some(l)) => l,
            Ok(None) => {
                self.tagged(tag, "NO [NONEXISTENT] no such mailbox");
                return Flow::Continue;
            }
            Err(e) => return self.internal(tag, e),
        };
        let msgr_store::SelectedFolder {
            folder,
            messages: msgs,
            recent: (first_recent, recent_upto),
        } = opened;
        let folder_id = folder.id;
        let resync = extras
            .qresync
            .clone()
            .filter(|q| q.uidvalidity == folder.uidvalidity);
        // Read in the messages' snapshot: the next refresh reads exactly what changed after it.
        let version = (folder.uidnext, folder.highest_modseq);
        let first_unseen = msgs.iter().position(|m| !m.flags.contains(Flags::SEEN));
        let mut keywords: Vec<String> = msgs.iter().flat_map(|m| m.keywords.clone()).collect();
        keywords.sort_by_key(|k| k.to_ascii_lowercase());
        keywords.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
        let kw = keywords.iter().fold(String::new(), |mut s, k| {
            s.push(' ');
            s.push_str(k);
            s
        });
        let msgs: Vec<Msg> = msgs
            .into_iter()
            .map(|meta| Msg {
                recent: meta.uid >= first_recent && meta.uid < recent_upto,
                meta,
                gone: false,
            })
            .collect();
        let recent_count = msgs.iter().filter(|m| m.recent).count();
        self.untagged(&format!(
            "FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft{kw})"
        ));
        if read_only {
            self.untagged("OK [PERMANENTFLAGS ()] read-only mailbox");
        } else {
            self.untagged(&format!(
                "OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft{kw} \\*)] flags permitted"
            ));
        }
        self.untagged(&format!("{} EXISTS", msgs.len()));
        self.untagged(&format!("{recent_count} RECENT"));
        if let Some(i) = first_unseen {
            self.untagged(&format!("OK [UNSEEN {}] first unseen", i + 1));
        }
        self.untagged(&format!(
            "OK [UIDVALIDITY {}] UIDs valid",
            folder.uidvalidity
        ));
        self.untagged(&format!(
            "OK [UIDNEXT {}] predicted next UID",
            folder.uidnext
        ));
        self.untagged(&format!(
            "OK [HIGHESTMODSEQ {}] highest modseq",
            folder.highest_modseq
        ));
        // QRESYNC (RFC 7162 §3.2.5.1): what the client missed since its modseq, if its UIDVALIDITY is
        // still the folder's (otherwise it starts over, told nothing more).
        if let Some(q) = &resync {
            let largest = msgs
                .last()
                .map_or(0, |m| m.meta.uid)
                .max(folder.uidnext.saturating_sub(1));
            let gone: Vec<u32> = vanished
                .into_iter()
                .filter(|&u| {
                    q.known_uids
                        .as_ref()
                        .is_none_or(|set| search::in_set(set, u, largest))
                })
                .collect();
            if !gone.is_empty() {
                self.untagged(&format!("VANISHED (EARLIER) {}", compact_set(&gone)));
            }
            let mut out = std::mem::take(&mut self.out);
            for (i, m) in msgs.iter().enumerate() {
                if m.meta.modseq > q.modseq {
                    out.extend_from_slice(
                        format!("* {} FETCH (UID {} FLAGS ", i + 1, m.meta.uid).as_bytes(),
                    );
                    flag_list_recent(&mut out, m.meta.flags, &m.meta.keywords, m.recent);
                    out.extend_from_slice(format!(" MODSEQ ({}))\r\n", m.meta.modseq).as_bytes());
                }
            }
            self.out = out;
        }
        self.state = State::Selected(Box::new(Selected {
            folder_id,
            special: folder.special,
            read_only,
            msgs,
            version,
            owes_expunge: false,
            recent_upto,
        }));
        let (code, verb) = if read_only {
            ("READ-ONLY", "EXAMINE")
        } else {
            ("READ-WRITE", "SELECT")
        };
        self.tagged(tag, &format!("OK [{code}] {verb} completed"));
        Flow::Continue
    }

    pub(super) fn store_error(&mut self, tag: &str, e: LookupError) -> Flow {
        match e {
            LookupError::Store(StoreError::FolderNotFound(_)) => {
                self.tagged(tag, "NO [NONEXISTENT] no such mailbox");
            }
            LookupError::Store(StoreError::FolderExists(_)) => {
                self.tagged(tag, "NO [ALREADYEXISTS] mailbox already exists");
            }
            LookupError::Store(StoreError::FolderProtected(_)) => {
                self.tagged(tag, "NO [CANNOT] this mailbox cannot be changed that way");
            }
            LookupError::Store(StoreError::OverQuota { .. }) => {
                self.tagged(tag, "NO [OVERQUOTA] mailbox is full");
            }
            e => return self.internal(tag, e),
        }
        Flow::Continue
    }

    pub(super) async fn create(&mut self, tag: &str, name: &str) -> Flow {
        let name = name.trim_end_matches(DELIMITER).to_owned();
        if name.is_empty() || name.eq_ignore_ascii_case("INBOX") || !valid_name(&name) {
            self.tagged(tag, "NO [CANNOT] invalid mailbox name");
            return Flow::Continue;
        }
        let account = self.account();
        // Superior names are created too (RFC 3501 §6.3.3), where missing.
        let result = self
            .blocking(move |s| {
                let mut at = 0;
                while let Some(i) = name[at..].find(DELIMITER) {
                    let parent = &name[..at + i];
                    if s.folder(&account, parent)?.is_none() {
                        s.create_folder(&account, parent)?;
                    }
                    at += i + 1;
                }
                // A \Noselect placeholder of that name becomes a real folder again.
                match s.folder(&account, &name)? {
                    Some(f) if f.noselect => s.set_noselect(&account, &name, false),
                    _ => s.create_folder(&account, &name).map(|_| ()),
                }
            })
            .await;
        match result {
            Ok(_) => {
                self.ctx.notify.changed(&self.account());
                self.tagged(tag, "OK CREATE completed");
                Flow::Continue
            }
            Err(e) => self.store_error(tag, e),
        }
    }

    /// RFC 3501 §6.3.4: a folder with inferiors loses its messages and becomes `\\Noselect` (its
    /// name stays, so the inferiors keep their place); a `\\Noselect` folder with inferiors cannot be
    /// deleted; one without goes.
    pub(super) async fn delete(&mut self, tag: &str, name: &str) -> Flow {
        let account = self.account();
        let n = name.to_owned();
        let result = self
            .blocking(move |s| {
                let folders = s.folders(&account)?;
                // Names compare without ASCII case, as the store's NOCASE column does.
                let Some(f) = folders.iter().find(|f| f.name.eq_ignore_ascii_case(&n)) else {
                    return Err(StoreError::FolderNotFound(n));
                };
                let prefix = format!("{}{DELIMITER}", f.name);
                let inferiors = folders.iter().any(|o| o.name.starts_with(&prefix));
                match (inferiors, f.noselect) {
                    (true, true) => Ok(false),
                    (true, false) if f.special.is_none() => {
                        s.set_noselect(&account, &f.name, true)?;
                        Ok(true)
                    }
                    _ => s.delete_folder(&account, &f.name).map(|()| true),
                }
            })
            .await;
        match result {
            Ok(true) => {
                self.ctx.notify.changed(&self.account());
                self.tagged(tag, "OK DELETE completed");
                Flow::Continue
            }
            Ok(false) => {
                self.tagged(
                    tag,
                    "NO [INUSE] a \\Noselect mailbox with inferiors cannot be deleted",
                );
                Flow::Continue
            }
            Err(e) => self.store_error(tag, e),
        }
    }

    pub(super) async fn rename(&mut self, tag: &str, from: &str, to: &str) -> Flow {
        let to = to.trim_end_matches(DELIMITER).to_owned();
        if to.is_empty() || !valid_name(&to) {
            self.tagged(tag, "NO [CANNOT] invalid mailbox name");
            return Flow::Continue;
        }
        let account = self.account();
        let from = from.to_owned();
        if from.eq_ignore_ascii_case("INBOX") {
            return self.rename_inbox(tag, &to).await;
        }
        // Inferior names move with their superior (RFC 3501 §6.3.5).
        let result = self
            .blocking(move |s| {
                let children: Vec<String> = s
                    .folders(&account)?
                    .into_iter()
                    .filter_map(|f| {
                        f.name
                            .strip_prefix(&format!("{from}{DELIMITER}"))
                            .map(|rest| rest.to_owned())
                    })
                    .collect();
                s.rename_folder(&account, &from, &to)?;
                for rest in children {
                    s.rename_folder(
                        &account,
                        &format!("{from}{DELIMITER}{rest}"),
                        &format!("{to}{DELIMITER}{rest}"),
                    )?;
                }
                Ok(())
            })
            .await;
        match result {
            Ok(()) => {
                self.ctx.notify.changed(&self.account());
                self.tagged(tag, "OK RENAME completed");
                Flow::Continue
            }
            Err(e) => self.store_error(tag, e),
        }
    }

    /// RFC 3501 §6.3.5: renaming INBOX moves all its messages to a new folder and leaves INBOX empty.
    pub(super) async fn rename_inbox(&mut self, tag: &str, to: &str) -> Flow {
        let account = self.account();
        let to = to.to_owned();
        let quota = self.ctx.config.quota_bytes;
        let result = self
            .blocking(move |s| {
                let inbox = s
                    .folder(&account, "INBOX")?
                    .ok_or_else(|| StoreError::FolderNotFound("INBOX".to_owned()))?;
                let dest = s.create_folder(&account, &to)?;
                let uids: Vec<u32> = s.messages(inbox.id)?.iter().map(|m| m.uid).collect();
                if !uids.is_empty() {
                    s.copy_messages(inbox.id, &uids, dest.id, true, quota)?;
                }
                Ok(())
            })
            .await;
        match result {
            Ok(()) => {
                self.ctx.notify.changed(&self.account());
                self.tagged(tag, "OK RENAME completed");
                Flow::Continue
            }
            Err(e) => self.store_error(tag, e),
        }
    }

    pub(super) async fn subscribe(&mut self, tag: &str, name: &str, on: bool) -> Flow {
        let account = self.account();
        let n = name.to_owned();
        match self
            .blocking(move |s| s.set_subscribed(&account, &n, on))
            .await
        {
            Ok(()) => {
                self.tagged(
                    tag,
                    if on {
                        "OK SUBSCRIBE completed"
                    } else {
                        "OK UNSUBSCRIBE completed"
                    },
                );
                Flow::Continue
            }
            Err(e) => self.store_error(tag, e),
        }
    }

    pub(super) async fn list(
        &mut self,
        tag: &str,
        reference: &str,
        pattern: &str,
        kind: ListKind,
    ) -> Flow {
        let lsub = matches!(kind, ListKind::Lsub);
        let (special_only, subscribed_only) = match kind {
            ListKind::List {
                special_only,
                subscribed_only,
            } => (special_only, subscribed_only),
            ListKind::Lsub => (false, true),
        };
        let verb = if lsub { "LSUB" } else { "LIST" };
        if pattern.is_empty() {
            // The hierarchy delimiter and root (RFC 3501 §6.3.8).
            self.untagged(&format!("{verb} (\\Noselect) \"/\" \"\""));
            self.tagged(tag, &format!("OK {verb} completed"));
            return Flow::Continue;
        }
        let account = self.account();
        let folders = match self.blocking(move |s| s.folders(&account)).await {
            Ok(f) => f,
            Err(e) => return self.internal(tag, e),
        };
        let full = format!("{reference}{pattern}");
        for f in &folders {
            if (subscribed_only && !f.subscribed)
                || (special_only && f.special.and_then(SpecialUse::attribute).is_none())
            {
                continue;
            }
            if !wildcard_match(&full, &f.name) {
                continue;
            }
            let mut attrs = Vec::new();
            let prefix = format!("{}{DELIMITER}", f.name);
            let children = folders.iter().any(|o| o.name.starts_with(&prefix));
            attrs.push(if children {
                "\\HasChildren"
            } else {
                "\\HasNoChildren"
            });
            if f.noselect {
                attrs.push("\\Noselect");
            }
            if let Some(a) = f.special.and_then(SpecialUse::attribute) {
                attrs.push(a);
            }
            if subscribed_only && !lsub && f.subscribed {
                // LIST (SUBSCRIBED) marks what it selected (RFC 5258 §3.1).
                attrs.push("\\Subscribed");
            }
            let mut line = format!("* {verb} ({}) \"/\" ", attrs.join(" ")).into_bytes();
            write_mailbox(&mut line, &f.name);
            line.extend_from_slice(b"\r\n");
            self.out.extend_from_slice(&line);
        }
        self.tagged(tag, &format!("OK {verb} completed"));
        Flow::Continue
    }

    pub(super) async fn status(
        &mut self,
        tag: &str,
        name: &str,
        items: &[StatusDataItemName],
    ) -> Flow {
        let account = self.account();
        let n = name.to_owned();
        let want_deleted = items
            .iter()
            .any(|i| matches!(i, StatusDataItemName::Deleted));
        let found = self
            .blocking(move |s| {
                let Some(f) = s.folder(&account, &n)? else {
                    return Ok(None);
                };
                let deleted = if want_deleted {
                    s.messages(f.id)?
                        .iter()
                        .filter(|m| m.flags.contains(Flags::DELETED))
                        .count()
                } else {
                    0
                };
                Ok(Some((f, deleted)))
            })
            .await;
        let (folder, deleted): (Folder, usize) = match found {
            Ok(Some((f, _))) if f.noselect => {
                self.tagged(tag, "NO [CANNOT] mailbox is \\Noselect");
                return Flow::Continue;
            }
            Ok(Some(f)) => f,
            Ok(None) => {
                self.tagged(tag, "NO [NONEXISTENT] no such mailbox");
                return Flow::Continue;
            }
            Err(e) => return self.internal(tag, e),
        };
        let mut parts = Vec::new();
        for item in items {
            match item {
                StatusDataItemName::Messages => parts.push(format!("MESSAGES {}", folder.messages)),
                StatusDataItemName::Recent => parts.push(format!("RECENT {}", folder.recent)),
                StatusDataItemName::UidNext => parts.push(format!("UIDNEXT {}", folder.uidnext)),
                StatusDataItemName::UidValidity => {
                    parts.push(format!("UIDVALIDITY {}", folder.uidvalidity))
                }
                StatusDataItemName::Unseen => parts.push(format!("UNSEEN {}", folder.unseen)),
                StatusDataItemName::Deleted => parts.push(format!("DELETED {deleted}")),
                StatusDataItemName::DeletedStorage => {}
                StatusDataItemName::HighestModSeq => {
                    parts.push(format!("HIGHESTMODSEQ {}", folder.highest_modseq))
                }
            }
        }
        let mut line = b"* STATUS ".to_vec();
        write_mailbox(&mut line, &folder.name);
        line.extend_from_slice(format!(" ({})\r\n", parts.join(" ")).as_bytes());
        self.out.extend_from_slice(&line);
        self.tagged(tag, "OK STATUS completed");
        Flow::Continue
    }

    pub(super) async fn append(
        &mut self,
        tag: &str,
        name: &str,
        flags: &[Flag<'_>],
        date: Option<i64>,
        message: &[u8],
    ) -> Flow {
        let (system, keywords) = split_flags(flags);
        if message.len() as u64 > self.ctx.config.max_message_bytes {
            self.tagged(tag, "NO [TOOBIG] message too large");
            return Flow::Continue;
        }
        let account = self.account();
        let folder_name = name.to_owned();
        // No look-up first: the store refuses a folder that does not exist or is `\Noselect`
        // (`FolderNotFound`, answered `TRYCREATE` below) inside the delivery itself.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
        let delivery = Delivery {
            raw: message.to_vec(),
            summary: crate::mime::summarize(message),
            internal_date: date.unwrap_or(now),
            targets: vec![LocalTarget {
                account: account.clone(),
                folder: FolderRef::Named(folder_name),
                flags: system,
            }],
            outbound: None,
        };
        // Acknowledged only once the group commit made it durable.
        let stored = match self.ctx.deliverer.deliver(delivery).await {
            Ok(d) => d.stored,
            Err(e) if e.is_over_quota() => {
                self.tagged(tag, "NO [OVERQUOTA] mailbox is full");
                return Flow::Continue;
            }
            Err(crate::DeliverError::Store(StoreError::FolderNotFound(_))) => {
                self.tagged(tag, "NO [TRYCREATE] no such mailbox");
                return Flow::Continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "APPEND failed");
                self.tagged(tag, "NO [UNAVAILABLE] could not store the message");
                return Flow::Continue;
            }
        };
        let Some(m) = stored.first() else {
            self.tagged(tag, "NO [SERVERBUG] message not stored");
            return Flow::Continue;
        };
        let (folder_id, uid, uidvalidity) = (m.folder_id, m.uid, m.uidvalidity);
        if !keywords.is_empty() {
            let kw = keywords.clone();
            if let Err(e) = self
                .blocking(move |s| {
                    s.store_flags(folder_id, &[uid], FlagOp::Add, Flags::empty(), &kw)
                })
                .await
            {
                tracing::warn!(error = %e, "APPEND keywords not stored");
            }
        }
        if let Err(e) = self.refresh(true).await {
            return self.internal(tag, e);
        }
        self.tagged(
            tag,
            &format!("OK [APPENDUID {uidvalidity} {uid}] APPEND completed"),
        );
        Flow::Continue
    }
}

/// Which listing a LIST-like command asks for.
#[derive(Clone, Copy)]
pub(super) enum ListKind {
    /// `LIST`, with LIST-EXTENDED's selection options.
    List {
        special_only: bool,
        subscribed_only: bool,
    },
    /// `LSUB`: subscribed folders only.
    Lsub,
}

/// Names a client may create: no empty levels, no wildcards, no control characters.
fn valid_name(name: &str) -> bool {
    !name.split(DELIMITER).any(str::is_empty)
        && !name.chars().any(|c| c == '*' || c == '%' || c.is_control())
        && name.len() <= 512
}

/// LIST's wildcards: `*` matches anything, `%` anything but the delimiter. `INBOX` matches in any
/// letter case.
pub(super) fn wildcard_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> =
        if pattern.len() >= 5 && pattern[..5].eq_ignore_ascii_case("INBOX") && name == "INBOX" {
            format!("INBOX{}", &pattern[5..]).chars().collect()
        } else {
            pattern.chars().collect()
        };
    let n: Vec<char> = name.chars().collect();
    // Classic DP over pattern × name, bounded by the name (≤ 512) and the pattern (≤ a line).
    let mut dp = vec![false; n.len() + 1];
    dp[0] = true;
    for &pc in &p {
        let mut next = vec![false; n.len() + 1];
        match pc {
            '*' => {
                let mut any = false;
                for j in 0..=n.len() {
                    any |= dp[j];
                    next[j] = any;
                }
            }
            '%' => {
                for j in 0..=n.len() {
                    if dp[j] {
                        next[j] = true;
                        let mut k = j;
                        while k < n.len() && n[k] != DELIMITER {
                            k += 1;
                            next[k] = true;
                        }
                    }
                }
            }
            c => {
                for j in 0..n.len() {
                    if dp[j] && n[j] == c {
                        next[j + 1] = true;
                    }
                }
            }
        }
        dp = next;
    }
    dp[n.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_wildcards() {
        assert!(wildcard_match("*", "Work/Projects"));
        assert!(!wildcard_match("%", "Work/Projects"));
        assert!(wildcard_match("%", "Work"));
        assert!(wildcard_match("Work/%", "Work/Projects"));
        assert!(wildcard_match("inbox", "INBOX"));
        assert!(!wildcard_match("sent", "Sent"));
        assert!(wildcard_match("S*t", "Sent"));
    }
}
