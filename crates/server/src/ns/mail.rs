//! Hotmail notices and `URL`: the notification server speaking for the account's mailbox.
//!
//! | dialects | at sign-in | new mail | mail read, moved, deleted | `URL t service [param]` |
//! |---|---|---|---|---|
//! | MSNP2–MSNP12 | after the profile (MSNP5+) or `USR … OK`: `text/x-msmsgsinitialemailnotification` when any folder has unread mail | `text/x-msmsgsemailnotification` | `text/x-msmsgsactivemailnotification` | MSNP2–7: `URL t rru post-url`; MSNP8+: `URL t rru post-url 2`; unknown service `710 t` |
//!
//! Every notice is `MSG Hotmail Hotmail len` + payload. The profile's `EmailEnabled` is `1` when
//! the server hosts mail (every account has a mailbox). A session remembers the unread counts it
//! has told its client ([`MailView`]) and, for each hub [`MailNotice`](crate::hotmail::MailNotice),
//! tells new mail one notice each (the client adds one to its count per notice, as the official
//! client did) and then any other difference as active-mail notices, so the client's counts end up
//! equal to the store's.
//!
//! The URLs are msgr's own, under `/mail/` on the HTTP(S) listener that serves Passport, answered by
//! the web inbox (`msgr-web`), which signs the client in with the profile's `MSPAuth`. Hotmail's
//! site id (`2`) is kept in the `URL` reply and in the notices' `id`, as clients expected it there.

use bytes::BytesMut;
use msgr_proto::frame::{write_payload, Frame, TrId};
use msgr_proto::mime::{ActiveMailNotification, EmailNotification, InitialEmailNotification};
use msgr_proto::{urlenc, Dialect, ErrorCode};

use super::{error, Flow, NsSession};
use crate::hotmail::{MailNotice, UnreadCounts, INBOX};
use msgr_core::lists::{Name, Names};

/// Hotmail's Passport site id, the last field of `URL` and the notices' `id`.
const HOTMAIL_SITE_ID: u32 = 2;

/// What a signed-in session has told its client about the mailbox: the unread count of each
/// folder. Every online user keeps one, so the folder names are the shared copies
/// ([`Names`]: `ACTIVE`, `Sent`… are the same for everyone) in one boxed slice: 16 bytes a
/// folder, where [`UnreadCounts`]' own strings made six allocations for the usual five folders.
#[derive(Debug, Default)]
pub(super) struct MailView {
    counts: Box<[(Name, u32)]>,
}

impl MailView {
    fn new(counts: &UnreadCounts) -> MailView {
        let names = Names::global();
        MailView {
            counts: counts
                .0
                .iter()
                .map(|(f, n)| (names.intern(f), *n))
                .collect(),
        }
    }

    /// The counts as the hub carries them, in the same order.
    fn counts(&self) -> UnreadCounts {
        UnreadCounts(
            self.counts
                .iter()
                .map(|(f, n)| (f.to_string(), *n))
                .collect(),
        )
    }
}

/// Where the web side lives: `https://host:port/` (the Passport site root).
fn site_root(session: &NsSession) -> String {
    crate::passport::site_root(&session.shared.dalogin)
}

/// The page the client posts its sign-in form to before opening any mail page.
fn post_url(root: &str) -> String {
    format!("{root}mail/login")
}

/// Writes `MSG Hotmail Hotmail len` with `payload`.
fn write_notice(out: &mut BytesMut, payload: &[u8]) {
    write_payload(out, "MSG", None, &["Hotmail", "Hotmail"], payload);
}

/// The `URL` services msgr answers, with the path of each under the site root. Hotmail's and
/// MSN's own pages (profile, mobile settings, address book…) all land on msgr's web side.
const SERVICES: &[(&str, &str)] = &[
    ("INBOX", "mail/inbox"),
    ("FOLDERS", "mail/folders"),
    ("COMPOSE", "mail/compose"),
    ("MESSAGE", "mail/message"),
    ("PERSON", "mail/person"),
    ("PROFILE", "mail/profile"),
    ("CHGMOB", "mail/mobile"),
    ("MOBILE", "mail/mobile"),
    ("N2PACCOUNT", "mail/mobile"),
    ("ADDRBOOK", "mail/contacts"),
    ("ADVSEARCH", "mail/search"),
    ("INTSEARCH", "mail/search"),
    ("CHAT", "mail/chat"),
];

impl NsSession {
    /// The initial notification after sign-in, when there is unread mail; remembers the counts.
    pub(super) fn initial_mail(
        &self,
        counts: UnreadCounts,
        out: &mut BytesMut,
    ) -> Option<MailView> {
        let root = site_root(self);
        if counts.inbox() > 0 || counts.other_folders() > 0 {
            let payload = InitialEmailNotification {
                inbox_unread: counts.inbox(),
                folders_unread: counts.other_folders(),
                inbox_url: "/mail/inbox".to_owned(),
                folders_url: "/mail/folders".to_owned(),
                post_url: post_url(&root),
            }
            .to_payload();
            write_notice(out, &payload);
        }
        Some(MailView::new(&counts))
    }

    /// `URL t service [param]` → `URL t rru post-url [2]`: the path of the page (relative, like
    /// Hotmail's `rru`) and where to post the sign-in form that opens it.
    pub(super) fn url(&mut self, frame: &Frame, trid: TrId, out: &mut BytesMut) -> Flow {
        let params = frame.params();
        let Some(service) = params.first() else {
            error(out, ErrorCode::InvalidParameter, trid);
            return Flow::Continue;
        };
        let Some((name, path)) = SERVICES
            .iter()
            .find(|(s, _)| s.eq_ignore_ascii_case(service))
        else {
            // Hypothetic.org's URL page: an unknown service is answered with 710.
            error(out, ErrorCode::InvalidCvrParameters, trid);
            return Flow::Continue;
        };
        let mut rru = format!("/{path}");
        if let Some(arg) = params.get(1) {
            let key = match *name {
                "COMPOSE" => "to",
                "MESSAGE" => "id",
                _ => "arg",
            };
            // The argument arrives URL-encoded already; decode and re-encode so it is ours.
            let arg = urlenc::decode(arg)
                .map(|a| a.into_owned())
                .unwrap_or_default();
            rru = format!("{rru}?{key}={}", urlenc::encode(&arg));
        }
        let post = post_url(&site_root(self));
        let site = HOTMAIL_SITE_ID.to_string();
        match self.dialect() {
            Some(d) if d >= Dialect::Msnp8 => {
                msgr_proto::frame::write_line(out, "URL", Some(trid), &[&rru, &post, &site])
            }
            _ => msgr_proto::frame::write_line(out, "URL", Some(trid), &[&rru, &post]),
        }
        Flow::Continue
    }
}

/// Renders a hub mail notice: one new-mail notice per arrived message, then active-mail notices
/// for whatever else differs from what the client was told.
pub(super) fn render(root: &str, view: &mut MailView, notice: &MailNotice, out: &mut BytesMut) {
    let post = post_url(root);
    let mut told = view.counts();
    for m in &notice.arrived {
        let payload = EmailNotification {
            from: m.from.clone(),
            message_url: format!(
                "/mail/message?folder={}&uid={}",
                urlenc::encode(&m.imap_folder),
                m.uid
            ),
            post_url: post.clone(),
            subject: m.subject.clone(),
            dest_folder: m.folder.clone(),
            from_addr: m.from_addr.clone(),
            id: HOTMAIL_SITE_ID,
        }
        .to_payload();
        write_notice(out, &payload);
        told.add_one(&m.folder);
    }
    for moved in differences(&told, &notice.counts) {
        write_notice(out, &moved.to_payload());
    }
    *view = MailView::new(&notice.counts);
}

/// What turns the counts `told` into `now`: each unread message that left a folder is paired with
/// one that entered another (a move); the rest left for nowhere (read, deleted for good) or came
/// from nowhere (marked unread again), with that side empty.
fn differences(told: &UnreadCounts, now: &UnreadCounts) -> Vec<ActiveMailNotification> {
    let mut left = Vec::new();
    let mut entered = Vec::new();
    let mut names: Vec<&str> = told.0.iter().map(|(f, _)| f.as_str()).collect();
    for (f, _) in &now.0 {
        if !names.contains(&f.as_str()) {
            names.push(f);
        }
    }
    for f in names {
        let (was, is) = (told.get(f), now.get(f));
        if is < was {
            left.push((f, was - is));
        } else if is > was {
            entered.push((f, is - was));
        }
    }
    // The inbox first: the count the client shows.
    left.sort_by_key(|(f, _)| *f != INBOX);
    let mut out = Vec::new();
    for (src, mut n) in left {
        for (dest, m) in entered.iter_mut() {
            if n == 0 {
                break;
            }
            let k = n.min(*m);
            if k > 0 {
                out.push(ActiveMailNotification {
                    src_folder: src.to_owned(),
                    dest_folder: (*dest).to_owned(),
                    message_delta: k,
                });
                n -= k;
                *m -= k;
            }
        }
        if n > 0 {
            out.push(ActiveMailNotification {
                src_folder: src.to_owned(),
                dest_folder: String::new(),
                message_delta: n,
            });
        }
    }
    for (dest, m) in entered {
        if m > 0 {
            out.push(ActiveMailNotification {
                src_folder: String::new(),
                dest_folder: dest.to_owned(),
                message_delta: m,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(c: &[(&str, u32)]) -> UnreadCounts {
        UnreadCounts(c.iter().map(|(f, n)| ((*f).to_owned(), *n)).collect())
    }

    fn notice(src: &str, dest: &str, n: u32) -> ActiveMailNotification {
        ActiveMailNotification {
            src_folder: src.into(),
            dest_folder: dest.into(),
            message_delta: n,
        }
    }

    /// A view keeps the counts, in their order, with the names shared between sessions.
    #[test]
    fn a_view_keeps_the_counts_with_shared_names() {
        let told = counts(&[("ACTIVE", 3), ("trAsH", 0), ("Work", 1)]);
        let (a, b) = (MailView::new(&told), MailView::new(&told));
        assert_eq!(a.counts(), told);
        assert!(Name::ptr_eq(&a.counts[0].0, &b.counts[0].0));
        assert_eq!(std::mem::size_of::<(Name, u32)>(), 16);
    }

    #[test]
    fn moves_reads_and_unreads() {
        // Two inbox messages moved to trash, one read.
        assert_eq!(
            differences(
                &counts(&[("ACTIVE", 3), ("trAsH", 0)]),
                &counts(&[("ACTIVE", 0), ("trAsH", 2)])
            ),
            [notice("ACTIVE", "trAsH", 2), notice("ACTIVE", "", 1)]
        );
        // Marked unread again in a user folder that was not known yet.
        assert_eq!(
            differences(
                &counts(&[("ACTIVE", 1)]),
                &counts(&[("ACTIVE", 1), ("Work", 1)])
            ),
            [notice("", "Work", 1)]
        );
        assert!(differences(&counts(&[("ACTIVE", 1)]), &counts(&[("ACTIVE", 1)])).is_empty());
    }
}
