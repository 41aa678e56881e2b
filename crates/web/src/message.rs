//! Reading a message and acting on it.
//!
//! Opening a message marks it `\Seen` and announces the change on msgr-mail's notifier, like an IMAP
//! `FETCH BODY[]`: Messenger's active-mail notice then lowers the client's unread count. Its HTML (if
//! any) is not in the page: the page frames `/mail/message/html`, which serves the sanitised HTML with
//! its own CSP inside a sandboxed `iframe`. Moves call the same junk hook as IMAP moves
//! ([`msgr_mail::Context::junk_verdict`]), so marking junk here trains the spam filter as IMAP does.

use crate::pages::{self, AttachmentLink};
use crate::view::{self, Limits};
use crate::{folder_href, href, http, Answer, PageError, Signed, Web};
use hyper::header::{
    HeaderValue, CONTENT_DISPOSITION, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_FRAME_OPTIONS,
};
use hyper::{Request, StatusCode};
use msgr_store::{FlagOp, Flags, Folder, MailStore, MessageMeta, SpecialUse};
use std::collections::HashMap;

/// Action forms are small.
const MAX_ACTION_BODY: usize = 16 * 1024;

/// `folder` and `uid` of a query or form.
fn target(q: &HashMap<String, String>) -> Result<(String, u32), PageError> {
    let folder = q
        .get("folder")
        .filter(|f| !f.is_empty() && f.len() <= 512)
        .cloned()
        .unwrap_or_else(|| "INBOX".to_owned());
    let uid = q
        .get("uid")
        .and_then(|u| u.parse::<u32>().ok())
        .ok_or(PageError::BadRequest("uid"))?;
    Ok((folder, uid))
}

/// A message of the account: its folder, metadata and bytes.
struct Loaded {
    folder: Folder,
    meta: MessageMeta,
    raw: Vec<u8>,
}

impl Web {
    /// Reads `uid` of `account`'s folder `name`; with `mark_seen`, adds `\Seen` first. Returns the
    /// message and whether its flags changed.
    async fn load(
        &self,
        account: &str,
        name: &str,
        uid: u32,
        mark_seen: bool,
    ) -> Result<(Loaded, bool), PageError> {
        let (account, name) = (account.to_owned(), name.to_owned());
        let loaded = self
            .blocking(move |s| {
                let Some(folder) = s.folder(&account, &name)? else {
                    return Ok(None);
                };
                let Some(mut meta) = s.message(folder.id, uid)? else {
                    return Ok(None);
                };
                let mut changed = false;
                if mark_seen && !meta.flags.contains(Flags::SEEN) {
                    s.store_flags(folder.id, &[uid], FlagOp::Add, Flags::SEEN, &[])?;
                    meta.flags = meta.flags.union(Flags::SEEN);
                    changed = true;
                }
                let Some(raw) = s.message_raw(folder.id, uid)? else {
                    return Ok(None);
                };
                Ok(Some((Loaded { folder, meta, raw }, changed)))
            })
            .await?;
        loaded.ok_or(PageError::NotFound)
    }

    /// `GET /mail/message?folder=&uid=[&images=1][&apage=]`.
    pub(crate) async fn message_page(
        &self,
        signed: &Signed,
        query: &HashMap<String, String>,
    ) -> Answer {
        if !query.contains_key("uid") {
            // Messenger's `URL t MESSAGE id` names Hotmail's message ids, which mean nothing here.
            return Ok(http::see_other("/mail/inbox"));
        }
        let (name, uid) = target(query)?;
        let images = query.get("images").is_some_and(|v| v == "1");
        let apage = query
            .get("apage")
            .and_then(|p| p.parse::<usize>().ok())
            .filter(|&p| p >= 1)
            .unwrap_or(1);
        let account = &signed.session.account;
        let (loaded, changed) = self.load(account, &name, uid, true).await?;
        if changed {
            self.inner.mail.notify.changed(account);
        }
        let c = &self.inner.config;
        let limits = Limits {
            max_text_bytes: c.max_text_bytes,
            max_html_bytes: c.max_html_bytes,
            attachments_per_page: c.attachments_per_page,
        };
        let Loaded { folder, meta, raw } = loaded;
        // Parsing a large message is real work: off the async workers.
        let v =
            tokio::task::spawn_blocking(move || view::message_view(&raw, limits, apage)).await?;
        let (chrome, folders) = self.chrome(signed, &folder.name, query).await?;
        let f = folder.name.clone();
        let uid_s = uid.to_string();
        let base = [("folder", f.as_str()), ("uid", uid_s.as_str())];
        let per_page = c.attachments_per_page.max(1);
        let att_pages = v.attachment_count.div_ceil(per_page).max(1);
        let at_page = |p: usize| {
            href(
                "/mail/message",
                &[("folder", &f), ("uid", &uid_s), ("apage", &p.to_string())],
            )
        };
        let attachments = v
            .attachments
            .iter()
            .map(|a| AttachmentLink {
                href: href(
                    "/mail/attachment",
                    &[
                        ("folder", &f),
                        ("uid", &uid_s),
                        ("part", &a.index.to_string()),
                    ],
                ),
                name: a.name.clone(),
                size: pages::human_size(a.size as u64),
            })
            .collect();
        let page = pages::Message {
            title: if v.subject.is_empty() {
                "(no subject)".to_owned()
            } else {
                v.subject.clone()
            },
            chrome: Some(chrome),
            folder: f.clone(),
            uid,
            csrf: signed.session.csrf.clone(),
            date: pages::show_date(meta.summary.date.or(Some(meta.internal_date))),
            in_trash: folder.special == Some(SpecialUse::Trash),
            in_junk: folder.special == Some(SpecialUse::Junk),
            images,
            move_targets: folders
                .iter()
                .filter(|x| x.id != folder.id)
                .map(|x| x.name.clone())
                .collect(),
            reply_href: href("/mail/compose", &[("reply", &uid_s), ("folder", &f)]),
            reply_all_href: href("/mail/compose", &[("replyall", &uid_s), ("folder", &f)]),
            forward_href: href("/mail/compose", &[("forward", &uid_s), ("folder", &f)]),
            html_src: if images {
                href(
                    "/mail/message/html",
                    &[("folder", &f), ("uid", &uid_s), ("images", "1")],
                )
            } else {
                href("/mail/message/html", &base)
            },
            show_images_href: href(
                "/mail/message",
                &[("folder", &f), ("uid", &uid_s), ("images", "1")],
            ),
            source_href: href("/mail/message/source", &base),
            attachments,
            att_prev: (apage > 1).then(|| at_page(apage - 1)),
            att_next: (apage < att_pages).then(|| at_page(apage + 1)),
            v,
        };
        Ok(http::html(StatusCode::OK, pages::render(&page)))
    }

    /// `GET /mail/message/html?folder=&uid=[&images=1]`: the sanitised HTML body, for the frame.
    pub(crate) async fn message_html(
        &self,
        signed: &Signed,
        query: &HashMap<String, String>,
    ) -> Answer {
        let (name, uid) = target(query)?;
        let images = query.get("images").is_some_and(|v| v == "1");
        let (loaded, _) = self
            .load(&signed.session.account, &name, uid, false)
            .await?;
        let max = self.inner.config.max_html_bytes;
        let raw = loaded.raw;
        let clean = tokio::task::spawn_blocking(move || view::html_body(&raw, max, images))
            .await?
            .ok_or(PageError::NotFound)?;
        let doc = format!(
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><meta name=\"referrer\" content=\"no-referrer\">\
             <base target=\"_blank\"></head><body>{clean}</body></html>"
        );
        let mut r = http::html(StatusCode::OK, doc);
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&http::html_body_csp(images)) {
            h.insert(CONTENT_SECURITY_POLICY, v);
        }
        h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("SAMEORIGIN"));
        Ok(r)
    }

    /// `GET /mail/message/source?folder=&uid=`: the whole message as stored, as a download.
    pub(crate) async fn message_source(
        &self,
        signed: &Signed,
        query: &HashMap<String, String>,
    ) -> Answer {
        let (name, uid) = target(query)?;
        let (loaded, _) = self
            .load(&signed.session.account, &name, uid, false)
            .await?;
        let mut r = http::html(StatusCode::OK, String::new());
        *r.body_mut() = http::full(loaded.raw);
        let h = r.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("message/rfc822"));
        h.insert(
            CONTENT_DISPOSITION,
            http::attachment_disposition(&format!("message-{uid}.eml")),
        );
        h.insert(
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; sandbox"),
        );
        Ok(r)
    }

    /// `GET /mail/attachment?folder=&uid=&part=`: one attachment, always as a download.
    pub(crate) async fn attachment(
        &self,
        signed: &Signed,
        query: &HashMap<String, String>,
    ) -> Answer {
        let (name, uid) = target(query)?;
        let part = query
            .get("part")
            .and_then(|p| p.parse::<usize>().ok())
            .ok_or(PageError::BadRequest("part"))?;
        let (loaded, _) = self
            .load(&signed.session.account, &name, uid, false)
            .await?;
        let raw = loaded.raw;
        let (filename, ctype, data) =
            tokio::task::spawn_blocking(move || view::attachment(&raw, part))
                .await?
                .ok_or(PageError::NotFound)?;
        let mut r = http::html(StatusCode::OK, String::new());
        *r.body_mut() = http::full(data);
        let h = r.headers_mut();
        h.insert(CONTENT_TYPE, http::safe_content_type(&ctype));
        h.insert(CONTENT_DISPOSITION, http::attachment_disposition(&filename));
        // Should a browser render it anyway, nothing in it runs with our origin.
        h.insert(
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; sandbox"),
        );
        Ok(r)
    }

    /// `POST /mail/delete|junk|move|mark` with `csrf`, `folder`, `uid` (and `to`, `seen`).
    pub(crate) async fn action<B>(&self, req: Request<B>, signed: &Signed, path: &str) -> Answer
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let (parts, body) = req.into_parts();
        let form = http::fields(&http::read_body(&parts.headers, body, MAX_ACTION_BODY).await?);
        self.check_csrf(signed, &form)?;
        let (name, uid) = target(&form)?;
        let account = signed.session.account.clone();
        let a = account.clone();
        let n = name.clone();
        let folders = self.blocking(move |s| s.folders(&a)).await?;
        let from = folders
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(&n))
            .cloned()
            .ok_or(PageError::NotFound)?;
        let special = |u: SpecialUse| folders.iter().find(|f| f.special == Some(u)).cloned();
        let back = |notice: &str| {
            format!(
                "{}{}notice={notice}",
                folder_href(&from.name, 1),
                if from.name.eq_ignore_ascii_case("INBOX") {
                    "?"
                } else {
                    "&"
                }
            )
        };
        match path {
            "/mail/mark" => {
                let op = if form.get("seen").is_some_and(|v| v == "1") {
                    FlagOp::Add
                } else {
                    FlagOp::Remove
                };
                let id = from.id;
                self.blocking(move |s| s.store_flags(id, &[uid], op, Flags::SEEN, &[]))
                    .await?;
                self.inner.mail.notify.changed(&account);
                // "read" names no notice: marking read needs none.
                Ok(http::see_other(&back(if op == FlagOp::Remove {
                    "unread"
                } else {
                    "read"
                })))
            }
            "/mail/delete" if from.special == Some(SpecialUse::Trash) => {
                let id = from.id;
                let gone = self.blocking(move |s| s.expunge(id, &[uid])).await?;
                if gone.is_empty() {
                    return Err(PageError::NotFound);
                }
                self.inner.mail.notify.changed(&account);
                Ok(http::see_other(&back("deleted")))
            }
            _ => {
                let (to, notice) = match path {
                    "/mail/delete" => (special(SpecialUse::Trash), "deleted"),
                    "/mail/junk" if from.special == Some(SpecialUse::Junk) => {
                        (special(SpecialUse::Inbox), "notjunk")
                    }
                    "/mail/junk" => (special(SpecialUse::Junk), "junk"),
                    _ => {
                        let wanted = form.get("to").ok_or(PageError::BadRequest("to"))?;
                        (
                            folders
                                .iter()
                                .find(|f| f.name.eq_ignore_ascii_case(wanted))
                                .cloned(),
                            "moved",
                        )
                    }
                };
                let to = to.ok_or(PageError::NotFound)?;
                if to.id == from.id {
                    return Ok(http::see_other(&back("moved")));
                }
                let (from_id, to_id) = (from.id, to.id);
                let quota = self.inner.mail.config.quota_bytes;
                let (_, pairs) = self
                    .blocking(move |s| s.copy_messages(from_id, &[uid], to_id, true, quota))
                    .await?;
                if pairs.is_empty() {
                    return Err(PageError::NotFound);
                }
                self.inner.mail.notify.changed(&account);
                let new_uids: Vec<u32> = pairs.iter().map(|(_, n)| *n).collect();
                self.inner.mail.junk_verdict(
                    &account,
                    from.special,
                    to.special,
                    true,
                    to.id,
                    &new_uids,
                );
                tracing::info!(account, from = from.name, to = to.name, uid, "web move");
                Ok(http::see_other(&back(notice)))
            }
        }
    }
}
