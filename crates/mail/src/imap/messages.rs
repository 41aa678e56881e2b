//! Message commands of the selected state (RFC 3501 §6.4, UIDPLUS, MOVE, CONDSTORE, ESEARCH):
//! `EXPUNGE`/`UID EXPUNGE`, `SEARCH`, `STORE`, `COPY`, `MOVE`. (`FETCH` has its own module.)

use super::ext;
use super::search;
use super::session::{flag_list_recent, split_flags, Flow, Session};
use crate::LookupError;
use imap_codec::imap_types::bounded_static::IntoBoundedStatic;
use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::sequence::SequenceSet;
use msgr_store::{FlagOp, Flags, MailStore, MessageState, MessageSummary};

impl Session {
    /// Removes the messages marked `\Deleted` (only those in `uids` if given) and publishes the change.
    pub(super) async fn expunge_deleted(
        &mut self,
        uids: Option<&SequenceSet>,
    ) -> Result<(), LookupError> {
        let Some(sel) = self.selected() else {
            return Ok(());
        };
        let max_uid = sel.max_uid();
        let victims: Vec<u32> = sel
            .msgs
            .iter()
            .filter(|m| !m.gone && m.meta.flags.contains(Flags::DELETED))
            .filter(|m| uids.is_none_or(|set| search::in_set(set, m.meta.uid, max_uid)))
            .map(|m| m.meta.uid)
            .collect();
        if victims.is_empty() {
            return Ok(());
        }
        let folder_id = sel.folder_id;
        self.blocking(move |s| s.expunge(folder_id, &victims))
            .await?;
        self.ctx.notify.changed(&self.account());
        Ok(())
    }

    pub(super) async fn expunge(&mut self, tag: &str, uids: Option<&SequenceSet>) -> Flow {
        if self.selected().is_some_and(|s| s.read_only) {
            self.tagged(tag, "NO [READ-ONLY] mailbox is read-only");
            return Flow::Continue;
        }
        if let Err(e) = self.expunge_deleted(uids).await {
            return self.internal(tag, e);
        }
        if let Err(e) = self.refresh(true).await {
            return self.internal(tag, e);
        }
        self.tagged(tag, "OK EXPUNGE completed");
        Flow::Continue
    }

    pub(super) async fn search(
        &mut self,
        tag: &str,
        criteria: SearchKey<'_>,
        uid: bool,
        esearch: Option<ext::Return>,
        modseq_keys: bool,
    ) -> Flow {
        if modseq_keys {
            self.condstore = true;
        }
        let Some(sel) = self.selected() else {
            return Flow::Continue;
        };
        let folder_id = sel.folder_id;
        let bounds = search::Bounds {
            max_seq: u32::try_from(sel.msgs.len()).unwrap_or(u32::MAX),
            max_uid: sel.max_uid(),
            modseq_keys,
        };
        let candidates: Vec<(u32, MessageState, bool)> = sel
            .msgs
            .iter()
            .enumerate()
            .filter(|(_, m)| !m.gone)
            .map(|(i, m)| {
                (
                    u32::try_from(i + 1).unwrap_or(u32::MAX),
                    m.meta.clone(),
                    m.recent,
                )
            })
            .collect();
        // The search runs on the blocking pool, which needs the keys owned.
        let criteria = criteria.into_static();
        let needs_raw = search::needs_raw(&criteria);
        let needs_summary = search::needs_summary(&criteria);
        let store = self.ctx.store.clone();
        let found = tokio::task::spawn_blocking(move || {
            // The session keeps no summaries: the keys that read one get them in one call, for the
            // candidates that pass the keys the session's own state decides (`UNSEEN SUBJECT x` reads
            // the unseen messages' summaries only).
            let none = MessageSummary::default();
            let candidates: Vec<_> = if needs_summary {
                candidates
                    .into_iter()
                    .filter(|(seq, meta, recent)| {
                        let c = search::Candidate {
                            seq: *seq,
                            meta,
                            summary: &none,
                            recent: *recent,
                        };
                        search::passes_state_keys(&criteria, &c, &bounds)
                    })
                    .collect()
            } else {
                candidates
            };
            let summaries = if needs_summary {
                let uids: Vec<u32> = candidates.iter().map(|(_, m, _)| m.uid).collect();
                store.message_summaries(folder_id, &uids)?
            } else {
                Vec::new()
            };
            let mut hits = Vec::new();
            for (i, (seq, meta, recent)) in candidates.iter().enumerate() {
                // Expunged since (or not loaded): an empty summary, matched as such.
                let summary = summaries.get(i).and_then(Option::as_ref).unwrap_or(&none);
                let uid = meta.uid;
                let store = &store;
                let mut load = || {
                    if needs_raw {
                        store.message_raw(folder_id, uid).ok().flatten()
                    } else {
                        None
                    }
                };
                let mut raw = search::Raw::new(&mut load);
                let c = search::Candidate {
                    seq: *seq,
                    meta,
                    summary,
                    recent: *recent,
                };
                if search::matches(&criteria, &c, &bounds, &mut raw) {
                    hits.push((*seq, uid, meta.modseq));
                }
            }
            Ok::<_, msgr_store::StoreError>(hits)
        })
        .await;
        let hits = match found {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => return self.internal(tag, e.into()),
            Err(e) => return self.internal(tag, e.into()),
        };
        let numbers: Vec<u32> = hits
            .iter()
            .map(|(s, u, _)| if uid { *u } else { *s })
            .collect();
        // A search with MODSEQ keys reports the highest modseq of what it found (RFC 7162 §3.1.5).
        let highest = hits
            .iter()
            .map(|(_, _, m)| *m)
            .max()
            .filter(|_| modseq_keys);
        match esearch {
            None => {
                let mut line = String::from("SEARCH");
                for n in &numbers {
                    line.push(' ');
                    line.push_str(&n.to_string());
                }
                if let Some(m) = highest {
                    line.push_str(&format!(" (MODSEQ {m})"));
                }
                self.untagged(&line);
            }
            Some(r) => {
                let mut line = format!("ESEARCH (TAG \"{tag}\")");
                if uid {
                    line.push_str(" UID");
                }
                if !numbers.is_empty() {
                    if r.min {
                        line.push_str(&format!(" MIN {}", numbers[0]));
                    }
                    if r.max {
                        line.push_str(&format!(" MAX {}", numbers[numbers.len() - 1]));
                    }
                    if r.all {
                        line.push_str(&format!(" ALL {}", compact_set(&numbers)));
                    }
                }
                if r.count {
                    line.push_str(&format!(" COUNT {}", numbers.len()));
                }
                if let Some(m) = highest {
                    line.push_str(&format!(" MODSEQ {m}"));
                }
                self.untagged(&line);
            }
        }
        self.tagged(tag, "OK SEARCH completed");
        Flow::Continue
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn store(
        &mut self,
        tag: &str,
        set: &SequenceSet,
        kind: StoreType,
        response: StoreResponse,
        flags: &[Flag<'_>],
        uid: bool,
        unchanged_since: Option<u64>,
    ) -> Flow {
        let condstore = self.condstore || unchanged_since.is_some();
        self.condstore = condstore;
        let Some(sel) = self.selected() else {
            return Flow::Continue;
        };
        if sel.read_only {
            self.tagged(tag, "NO [READ-ONLY] mailbox is read-only");
            return Flow::Continue;
        }
        let indices = sel.select(set, uid);
        let mut modified = Vec::new();
        let targets: Vec<u32> = indices
            .iter()
            .filter_map(|&i| {
                let m = &sel.msgs[i];
                if m.gone {
                    return None;
                }
                if unchanged_since.is_some_and(|u| m.meta.modseq > u) {
                    modified.push(if uid {
                        m.meta.uid
                    } else {
                        u32::try_from(i + 1).unwrap_or(0)
                    });
                    return None;
                }
                Some(m.meta.uid)
            })
            .collect();
        let folder_id = sel.folder_id;
        let (system, keywords) = split_flags(flags);
        let op = match kind {
            StoreType::Add => FlagOp::Add,
            StoreType::Remove => FlagOp::Remove,
            StoreType::Replace => FlagOp::Replace,
        };
        let changed = if targets.is_empty() {
            Vec::new()
        } else {
            match self
                .blocking(move |s| s.store_flags(folder_id, &targets, op, system, &keywords))
                .await
            {
                Ok(c) => c,
                Err(e) => return self.internal(tag, e),
            }
        };
        if !changed.is_empty() {
            self.ctx.notify.changed(&self.account());
        }
        let silent = matches!(response, StoreResponse::Silent);
        let mut out = std::mem::take(&mut self.out);
        if let Some(sel) = self.selected() {
            for c in &changed {
                let Ok(i) = sel.msgs.binary_search_by_key(&c.uid, |m| m.meta.uid) else {
                    continue;
                };
                let before = (sel.msgs[i].meta.flags, sel.msgs[i].meta.keywords.clone());
                let recent = sel.msgs[i].recent;
                let m = &mut sel.msgs[i].meta;
                m.flags = c.flags;
                m.keywords = c.keywords.clone();
                m.modseq = c.modseq;
                // Silent still reports a change made by someone else, and CONDSTORE asks for MODSEQ.
                if !silent || (condstore && before != (c.flags, c.keywords.clone())) {
                    out.extend_from_slice(format!("* {} FETCH (", i + 1).as_bytes());
                    if !silent {
                        out.extend_from_slice(b"FLAGS ");
                        flag_list_recent(&mut out, c.flags, &c.keywords, recent);
                        out.push(b' ');
                    }
                    out.extend_from_slice(format!("UID {}", c.uid).as_bytes());
                    if condstore {
                        out.extend_from_slice(format!(" MODSEQ ({})", c.modseq).as_bytes());
                    }
                    out.extend_from_slice(b")\r\n");
                }
            }
        }
        self.out = out;
        if modified.is_empty() {
            self.tagged(tag, "OK STORE completed");
        } else {
            self.tagged(
                tag,
                &format!(
                    "OK [MODIFIED {}] conditional STORE failed",
                    compact_set(&modified)
                ),
            );
        }
        Flow::Continue
    }

    pub(super) async fn copy(
        &mut self,
        tag: &str,
        set: &SequenceSet,
        dest: &str,
        uid: bool,
        remove: bool,
    ) -> Flow {
        let account = self.account();
        let Some(sel) = self.selected() else {
            return Flow::Continue;
        };
        if remove && sel.read_only {
            self.tagged(tag, "NO [READ-ONLY] mailbox is read-only");
            return Flow::Continue;
        }
        let uids: Vec<u32> = sel
            .select(set, uid)
            .into_iter()
            .filter(|&i| !sel.msgs[i].gone)
            .map(|i| sel.msgs[i].meta.uid)
            .collect();
        let (from_id, from_special) = (sel.folder_id, sel.special);
        let quota = self.ctx.config.quota_bytes;
        let a = account.clone();
        let d = dest.to_owned();
        let dest_folder = match self.blocking(move |s| s.folder(&a, &d)).await {
            Ok(Some(f)) if !f.noselect => f,
            Ok(_) => {
                self.tagged(tag, "NO [TRYCREATE] no such mailbox");
                return Flow::Continue;
            }
            Err(e) => return self.internal(tag, e),
        };
        let verb = if remove { "MOVE" } else { "COPY" };
        if uids.is_empty() {
            self.tagged(tag, &format!("OK {verb} completed (nothing to do)"));
            return Flow::Continue;
        }
        let to_id = dest_folder.id;
        let result = self
            .blocking(move |s| s.copy_messages(from_id, &uids, to_id, remove, quota))
            .await;
        let (uidvalidity, pairs) = match result {
            Ok(r) => r,
            Err(e) => return self.store_error(tag, e),
        };
        self.ctx.notify.changed(&account);
        let new_uids: Vec<u32> = pairs.iter().map(|(_, n)| *n).collect();
        self.ctx.junk_verdict(
            &account,
            from_special,
            dest_folder.special,
            remove,
            to_id,
            &new_uids,
        );
        let code = if pairs.is_empty() {
            String::new()
        } else {
            let src: Vec<u32> = pairs.iter().map(|(s, _)| *s).collect();
            let dst: Vec<u32> = pairs.iter().map(|(_, d)| *d).collect();
            format!(
                "[COPYUID {uidvalidity} {} {}] ",
                compact_list(&src),
                compact_list(&dst)
            )
        };
        if remove {
            // RFC 6851 §4.3: COPYUID goes in an untagged OK before the EXPUNGEs.
            if !code.is_empty() {
                self.untagged(&format!("OK {code}moved"));
            }
            if let Err(e) = self.refresh(true).await {
                return self.internal(tag, e);
            }
            self.tagged(tag, "OK MOVE completed");
        } else {
            if let Err(e) = self.refresh(!uid).await {
                return self.internal(tag, e);
            }
            self.tagged(tag, &format!("OK {code}COPY completed"));
        }
        Flow::Continue
    }
}

/// `1:3,5` for sorted numbers.
pub(super) fn compact_set(numbers: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < numbers.len() {
        let start = numbers[i];
        let mut end = start;
        while i + 1 < numbers.len() && numbers[i + 1] == end + 1 {
            i += 1;
            end = numbers[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// COPYUID's sets keep the order of the pairs, so runs are only joined when ascending.
fn compact_list(numbers: &[u32]) -> String {
    compact_set(numbers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_are_compacted() {
        assert_eq!(compact_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(compact_set(&[4]), "4");
    }
}
