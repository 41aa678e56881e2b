//! Message lists: a folder's messages newest first, a page at a time; the folder list; search.

use crate::pages::{self, Row};
use crate::{folder_href, href, http, Answer, PageError, Signed, Web};
use hyper::StatusCode;
use msgr_store::{Flags, Folder, MailStore, MessageMeta};
use std::collections::HashMap;

/// The page number asked for (1 when absent or nonsense).
fn page_number(query: &HashMap<String, String>, key: &str) -> usize {
    query
        .get(key)
        .and_then(|p| p.parse::<usize>().ok())
        .filter(|&p| p >= 1)
        .unwrap_or(1)
}

/// The row of one message.
fn row(folder: &str, m: &MessageMeta) -> Row {
    let subject = if m.summary.subject.trim().is_empty() {
        "(no subject)".to_owned()
    } else {
        m.summary.subject.clone()
    };
    Row {
        uid: m.uid,
        folder: folder.to_owned(),
        unread: !m.flags.contains(Flags::SEEN),
        from: m.summary.from.clone(),
        subject,
        href: href(
            "/mail/message",
            &[("folder", folder), ("uid", &m.uid.to_string())],
        ),
        date: pages::show_date(m.summary.date.or(Some(m.internal_date))),
        size: pages::human_size(m.size),
        attach: m.summary.has_attachments,
    }
}

impl Web {
    /// `GET /mail/folder?name=&page=` (and `/mail/inbox`).
    pub(crate) async fn folder_page(
        &self,
        signed: &Signed,
        name: &str,
        query: &HashMap<String, String>,
    ) -> Answer {
        let (chrome, folders) = self.chrome(signed, name, query).await?;
        let folder = folders
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
            .cloned()
            .ok_or(PageError::NotFound)?;
        let id = folder.id;
        let metas = self.blocking(move |s| s.messages(id)).await?;
        let per_page = self.inner.config.page_size.max(1);
        let pages_total = metas.len().div_ceil(per_page).max(1);
        let page = page_number(query, "page").min(pages_total);
        // Newest first.
        let rows: Vec<Row> = metas
            .iter()
            .rev()
            .skip((page - 1) * per_page)
            .take(per_page)
            .map(|m| row(&folder.name, m))
            .collect();
        let page_view = pages::Folder {
            title: pages::folder_label(&folder.name),
            chrome: Some(chrome),
            folder: folder.name.clone(),
            heading: pages::folder_label(&folder.name),
            note: None,
            empty: "This folder is empty.",
            rows,
            show_folder: false,
            prev: (page > 1).then(|| folder_href(&folder.name, page - 1)),
            next: (page < pages_total).then(|| folder_href(&folder.name, page + 1)),
            page_info: format!(
                "Page {page} of {pages_total} · {} messages, {} unread",
                folder.messages, folder.unseen
            ),
        };
        Ok(http::html(StatusCode::OK, pages::render(&page_view)))
    }

    /// `GET /mail/folders`.
    pub(crate) async fn folders_page(
        &self,
        signed: &Signed,
        query: &HashMap<String, String>,
    ) -> Answer {
        let (chrome, folders) = self.chrome(signed, "", query).await?;
        let list = folders.iter().map(|f| crate::folder_link(f, "")).collect();
        let page = pages::Folders {
            title: "Folders",
            chrome: Some(chrome),
            list,
        };
        Ok(http::html(StatusCode::OK, pages::render(&page)))
    }

    /// `GET /mail/search?q=&page=`: every folder's messages whose subject, sender or text contains
    /// `q` (any letter case), newest first.
    pub(crate) async fn search_page(
        &self,
        signed: &Signed,
        query: &HashMap<String, String>,
    ) -> Answer {
        let q = query.get("q").map_or("", |q| q.trim()).to_owned();
        let (chrome, folders) = self.chrome(signed, "", query).await?;
        if q.is_empty() || q.len() > 256 {
            return Err(PageError::BadRequest("search text"));
        }
        let budget = self.inner.config.search_scan_bytes;
        let max = self.inner.config.max_search_results.max(1);
        let needle = q.to_lowercase();
        let (hits, stopped) = self
            .blocking(move |s| search(s, &folders, &needle, budget, max))
            .await?;
        let per_page = self.inner.config.page_size.max(1);
        let pages_total = hits.len().div_ceil(per_page).max(1);
        let page = page_number(query, "page").min(pages_total);
        let rows = hits
            .iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .map(|(f, m)| row(f, m))
            .collect();
        let at = |p: usize| href("/mail/search", &[("q", &q), ("page", &p.to_string())]);
        let note = stopped.then(|| {
            "The search stopped early; only part of your mail was searched. Try a more precise search."
                .to_owned()
        });
        let page_view = pages::Folder {
            title: format!("Search: {q}"),
            chrome: Some(chrome),
            folder: String::new(),
            heading: format!("Search results for “{q}”"),
            note,
            empty: "No messages match.",
            rows,
            show_folder: true,
            prev: (page > 1).then(|| at(page - 1)),
            next: (page < pages_total).then(|| at(page + 1)),
            page_info: format!("Page {page} of {pages_total} · {} found", hits.len()),
        };
        Ok(http::html(StatusCode::OK, pages::render(&page_view)))
    }
}

/// Finds messages in `folders` whose subject or sender (from the stored summary) or text (read from the
/// raw bytes, within `budget` bytes of messages read) contains `needle` (lower case). Newest first per
/// folder, at most `max`. Returns whether it stopped before looking at everything.
fn search(
    store: &msgr_store::Store,
    folders: &[Folder],
    needle: &str,
    budget: u64,
    max: usize,
) -> Result<(Vec<(String, MessageMeta)>, bool), msgr_store::StoreError> {
    let mut hits = Vec::new();
    let mut read = 0u64;
    let mut stopped = false;
    for f in folders {
        for m in store.messages(f.id)?.into_iter().rev() {
            if hits.len() >= max {
                return Ok((hits, true));
            }
            let head = m.summary.subject.to_lowercase().contains(needle)
                || m.summary.from.to_lowercase().contains(needle);
            let found = head || {
                if read.saturating_add(m.size) > budget {
                    stopped = true;
                    false
                } else {
                    read += m.size;
                    store
                        .message_raw(f.id, m.uid)?
                        .is_some_and(|raw| body_contains(&raw, needle))
                }
            };
            if found {
                hits.push((f.name.clone(), m));
            }
        }
    }
    Ok((hits, stopped))
}

/// Whether the message's text (its first text body, HTML made text) contains `needle` (lower case).
fn body_contains(raw: &[u8], needle: &str) -> bool {
    let Some(m) = crate::view::parse(raw) else {
        return false;
    };
    (0..m.text_body_count().max(1)).any(|i| {
        m.body_text(i)
            .is_some_and(|t| t.to_lowercase().contains(needle))
    })
}
