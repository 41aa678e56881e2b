//! `FETCH` (RFC 3501 §6.4.5, §7.4.2) with `BINARY` (RFC 3516) and CONDSTORE's `MODSEQ`/`CHANGEDSINCE`
//! (RFC 7162): flags and sizes come from the stored metadata; anything about the content reads the raw
//! message (in chunks, on the blocking pool) and answers from its [`mime`] tree, byte for byte.
//!
//! A non-`PEEK` body fetch in a read-write mailbox sets `\Seen` first (one store write for the whole
//! command), and those messages' responses carry their new `FLAGS`.

use super::ext::{Binary, Extras};
use super::mime::{self, Part};
use super::session::{flag_list_recent, Flow, Session, FLUSH_AT};
use super::write::{internal_date, literal};
use base64::Engine;
use imap_codec::imap_types::bounded_static::IntoBoundedStatic;
use imap_codec::imap_types::fetch::{
    MacroOrMessageDataItemNames, MessageDataItemName, Part as PartPath, Section,
};
use imap_codec::imap_types::sequence::SequenceSet;
use msgr_store::{FlagOp, Flags, MailStore, MessageState};
use tokio::io::AsyncWrite;

/// Raw messages read from the store in one blocking call: at most this many…
const CHUNK_MESSAGES: usize = 64;
/// …or this many when only their header blocks are read…
const CHUNK_HEADERS: usize = 256;
/// …and about this many bytes.
const CHUNK_BYTES: u64 = 8 * 1024 * 1024;

fn needs_raw(item: &MessageDataItemName<'_>) -> bool {
    !matches!(
        item,
        MessageDataItemName::Flags
            | MessageDataItemName::InternalDate
            | MessageDataItemName::Rfc822Size
            | MessageDataItemName::Uid
    )
}

/// Whether the item is answered from the message's top-level header block alone (or from the metadata).
fn header_only(item: &MessageDataItemName<'_>) -> bool {
    match item {
        MessageDataItemName::Envelope | MessageDataItemName::Rfc822Header => true,
        MessageDataItemName::BodyExt {
            section:
                Some(
                    Section::Header(None)
                    | Section::HeaderFields(None, _)
                    | Section::HeaderFieldsNot(None, _),
                ),
            ..
        } => true,
        item => !needs_raw(item),
    }
}

fn sets_seen(item: &MessageDataItemName<'_>) -> bool {
    matches!(
        item,
        MessageDataItemName::BodyExt { peek: false, .. }
            | MessageDataItemName::Rfc822
            | MessageDataItemName::Rfc822Text
    )
}

pub(super) async fn fetch<S>(
    session: &mut Session,
    stream: &mut S,
    tag: &str,
    set: &SequenceSet,
    items: MacroOrMessageDataItemNames<'_>,
    uid: bool,
    extras: &Extras,
) -> Flow
where
    S: AsyncWrite + Unpin + Send,
{
    let items: Vec<MessageDataItemName<'_>> = match items {
        MacroOrMessageDataItemNames::Macro(m) => m.expand().into_static(),
        MacroOrMessageDataItemNames::MessageDataItemNames(v) => v,
    };
    let condstore = session.condstore;
    let Some(sel) = session.selected() else {
        return Flow::Continue;
    };
    let folder_id = sel.folder_id;
    let read_only = sel.read_only;
    let mut targets: Vec<usize> = sel
        .select(set, uid)
        .into_iter()
        .filter(|&i| !sel.msgs[i].gone)
        .collect();
    if let Some(since) = extras.changed_since {
        targets.retain(|&i| sel.msgs[i].meta.modseq > since);
    }
    let want_raw = items.iter().any(needs_raw);
    // A client listing a folder asks for header fields only: the store then copies only the header
    // blocks, and the MIME parse below sees a body-less message.
    let headers_only = items.iter().all(header_only) && extras.binary.iter().all(Option::is_none);
    let chunk_messages = if headers_only {
        CHUNK_HEADERS
    } else {
        CHUNK_MESSAGES
    };
    // Implicit \Seen, made durable before anything is sent.
    let mut newly_seen: Vec<u32> = Vec::new();
    if !read_only && items.iter().any(sets_seen) {
        newly_seen = targets
            .iter()
            .map(|&i| &sel.msgs[i].meta)
            .filter(|m| !m.flags.contains(Flags::SEEN))
            .map(|m| m.uid)
            .collect();
    }
    if !newly_seen.is_empty() {
        let uids = newly_seen.clone();
        let changed = match session
            .blocking(move |s| s.store_flags(folder_id, &uids, FlagOp::Add, Flags::SEEN, &[]))
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "FETCH could not set \\Seen");
                session.tagged(tag, "NO [SERVERBUG] could not set \\Seen");
                return Flow::Continue;
            }
        };
        session.ctx.notify.changed(&session.account());
        if let Some(sel) = session.selected() {
            for c in changed {
                if let Ok(i) = sel.msgs.binary_search_by_key(&c.uid, |m| m.meta.uid) {
                    let m = &mut sel.msgs[i].meta;
                    m.flags = c.flags;
                    m.keywords = c.keywords;
                    m.modseq = c.modseq;
                }
            }
        }
    }
    let want_flags = items
        .iter()
        .any(|i| matches!(i, MessageDataItemName::Flags));
    let want_uid = uid || items.iter().any(|i| matches!(i, MessageDataItemName::Uid));
    let want_modseq = extras.fetch_modseq || (condstore && extras.changed_since.is_some());

    let mut start = 0;
    while start < targets.len() {
        // The next chunk: its messages' metadata and (if needed) raw bytes.
        let Some(sel) = session.selected() else {
            break;
        };
        let mut end = start;
        let mut bytes = 0u64;
        while end < targets.len()
            && end - start < chunk_messages
            && (end == start || bytes < CHUNK_BYTES)
        {
            bytes += sel.msgs[targets[end]].meta.size;
            end += 1;
        }
        let chunk: Vec<(u32, MessageState, bool)> = targets[start..end]
            .iter()
            .map(|&i| {
                (
                    u32::try_from(i + 1).unwrap_or(u32::MAX),
                    sel.msgs[i].meta.clone(),
                    sel.msgs[i].recent,
                )
            })
            .collect();
        start = end;
        let raws: Vec<Option<Vec<u8>>> = if want_raw {
            let uids: Vec<u32> = chunk.iter().map(|(_, m, _)| m.uid).collect();
            match session
                .blocking(move |s| s.messages_raw(folder_id, &uids, headers_only))
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "FETCH could not read messages");
                    session.tagged(tag, "NO [SERVERBUG] could not read messages");
                    return Flow::Continue;
                }
            }
        } else {
            vec![None; chunk.len()]
        };
        for ((seq, meta, recent), raw) in chunk.iter().zip(raws) {
            // Expunged between the listing and the read: nothing to say about it.
            if want_raw && raw.is_none() {
                continue;
            }
            let raw = raw.unwrap_or_default();
            let root = want_raw.then(|| mime::parse(&raw));
            // RFC 3516 §4.2: BINARY of a part whose encoding we cannot undo is refused.
            if let Some(r) = root.as_ref().filter(|_| !extras.binary.is_empty()) {
                let mut body_items = 0;
                let mut unknown = false;
                for item in &items {
                    if let MessageDataItemName::BodyExt { section, .. } = item {
                        let binary = extras.binary.get(body_items).copied().flatten();
                        unknown |= binary.is_some() && unknown_cte(r, section.as_ref());
                        body_items += 1;
                    }
                }
                if unknown {
                    session.tagged(tag, "NO [UNKNOWN-CTE] unknown content-transfer-encoding");
                    return Flow::Continue;
                }
            }
            let out = &mut session.out;
            out.extend_from_slice(format!("* {seq} FETCH (").as_bytes());
            let mut first = true;
            let mut sep = |out: &mut Vec<u8>| {
                if !first {
                    out.push(b' ');
                }
                first = false;
            };
            if want_uid {
                sep(out);
                out.extend_from_slice(format!("UID {}", meta.uid).as_bytes());
            }
            let mut body_items = 0;
            for item in &items {
                if matches!(item, MessageDataItemName::Uid) {
                    continue;
                }
                sep(out);
                write_item(
                    out,
                    item,
                    meta,
                    *recent,
                    &raw,
                    root.as_ref(),
                    extras,
                    &mut body_items,
                );
            }
            if !want_flags && newly_seen.contains(&meta.uid) {
                sep(out);
                out.extend_from_slice(b"FLAGS ");
                flag_list_recent(out, meta.flags, &meta.keywords, *recent);
            }
            if want_modseq {
                sep(out);
                out.extend_from_slice(format!("MODSEQ ({})", meta.modseq).as_bytes());
            }
            out.extend_from_slice(b")\r\n");
            if session.out.len() >= FLUSH_AT {
                if let Err(e) = session.flush_to(stream).await {
                    tracing::debug!(error = %e, "FETCH output failed");
                    return Flow::Continue;
                }
            }
        }
    }
    session.tagged(tag, "OK FETCH completed");
    Flow::Continue
}

#[allow(clippy::too_many_arguments)]
fn write_item(
    out: &mut Vec<u8>,
    item: &MessageDataItemName<'_>,
    meta: &MessageState,
    recent: bool,
    raw: &[u8],
    root: Option<&Part<'_>>,
    extras: &Extras,
    body_items: &mut usize,
) {
    match item {
        MessageDataItemName::Flags => {
            out.extend_from_slice(b"FLAGS ");
            flag_list_recent(out, meta.flags, &meta.keywords, recent);
        }
        MessageDataItemName::InternalDate => {
            out.extend_from_slice(b"INTERNALDATE ");
            internal_date(out, meta.internal_date);
        }
        MessageDataItemName::Rfc822Size => {
            out.extend_from_slice(format!("RFC822.SIZE {}", meta.size).as_bytes());
        }
        MessageDataItemName::Uid => {
            out.extend_from_slice(format!("UID {}", meta.uid).as_bytes());
        }
        MessageDataItemName::Envelope => {
            out.extend_from_slice(b"ENVELOPE ");
            mime::envelope(out, root.map_or(&b""[..], |r| r.header));
        }
        MessageDataItemName::Body => {
            out.extend_from_slice(b"BODY ");
            if let Some(r) = root {
                mime::body_structure(out, r, false);
            }
        }
        MessageDataItemName::BodyStructure => {
            out.extend_from_slice(b"BODYSTRUCTURE ");
            if let Some(r) = root {
                mime::body_structure(out, r, true);
            }
        }
        MessageDataItemName::Rfc822 => {
            out.extend_from_slice(b"RFC822 ");
            literal(out, raw);
        }
        MessageDataItemName::Rfc822Header => {
            out.extend_from_slice(b"RFC822.HEADER ");
            literal(out, root.map_or(&b""[..], |r| r.header));
        }
        MessageDataItemName::Rfc822Text => {
            out.extend_from_slice(b"RFC822.TEXT ");
            literal(out, root.map_or(&b""[..], |r| r.body));
        }
        MessageDataItemName::BodyExt {
            section, partial, ..
        } => {
            let binary = extras.binary.get(*body_items).copied().flatten();
            *body_items += 1;
            let name = section_name(section.as_ref());
            let data: Option<Vec<u8>> = root.and_then(|r| section_bytes(r, raw, section.as_ref()));
            match binary {
                None => {
                    out.extend_from_slice(format!("BODY[{name}]").as_bytes());
                    let data = data.unwrap_or_default();
                    write_partial(out, &data, *partial, false);
                }
                Some(kind) => {
                    // BINARY applies to leaf parts (and the whole message): undo the transfer
                    // encoding of the part the section names.
                    let decoded = root.and_then(|r| binary_bytes(r, raw, section.as_ref()));
                    match kind {
                        Binary::Size => out.extend_from_slice(
                            format!(
                                "BINARY.SIZE[{name}] {}",
                                decoded.as_ref().map_or(0, Vec::len)
                            )
                            .as_bytes(),
                        ),
                        Binary::Content => {
                            out.extend_from_slice(format!("BINARY[{name}]").as_bytes());
                            write_partial(out, &decoded.unwrap_or_default(), *partial, true);
                        }
                    }
                }
            }
        }
    }
}

/// `<origin>` and the (partial) data, as a literal (`~{n}` for binary data with NULs, RFC 3516).
fn write_partial(
    out: &mut Vec<u8>,
    data: &[u8],
    partial: Option<(u32, std::num::NonZeroU32)>,
    binary: bool,
) {
    let slice = match partial {
        Some((origin, len)) => {
            out.extend_from_slice(format!("<{origin}>").as_bytes());
            let start = usize::try_from(origin)
                .unwrap_or(usize::MAX)
                .min(data.len());
            let end = start
                .saturating_add(usize::try_from(len.get()).unwrap_or(usize::MAX))
                .min(data.len());
            &data[start..end]
        }
        None => data,
    };
    out.push(b' ');
    if binary && slice.contains(&0) {
        out.push(b'~');
    }
    literal(out, slice);
}

fn path_of(p: &PartPath) -> Vec<u32> {
    p.0.as_ref().iter().map(|n| n.get()).collect()
}

fn path_text(p: Option<&PartPath>, suffix: &str) -> String {
    let mut s = p
        .map(|p| {
            path_of(p)
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(".")
        })
        .unwrap_or_default();
    if !suffix.is_empty() {
        if !s.is_empty() {
            s.push('.');
        }
        s.push_str(suffix);
    }
    s
}

fn field_names(names: &[imap_codec::imap_types::core::AString<'_>]) -> String {
    names
        .iter()
        .map(|n| String::from_utf8_lossy(n.as_ref()).to_ascii_uppercase())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The section as the response names it.
fn section_name(section: Option<&Section<'_>>) -> String {
    match section {
        None => String::new(),
        Some(Section::Part(p)) => path_text(Some(p), ""),
        Some(Section::Header(p)) => path_text(p.as_ref(), "HEADER"),
        Some(Section::HeaderFields(p, names)) => format!(
            "{} ({})",
            path_text(p.as_ref(), "HEADER.FIELDS"),
            field_names(names.as_ref())
        ),
        Some(Section::HeaderFieldsNot(p, names)) => format!(
            "{} ({})",
            path_text(p.as_ref(), "HEADER.FIELDS.NOT"),
            field_names(names.as_ref())
        ),
        Some(Section::Text(p)) => path_text(p.as_ref(), "TEXT"),
        Some(Section::Mime(p)) => path_text(Some(p), "MIME"),
    }
}

/// The bytes a section names; `None` if the message has no such part.
fn section_bytes(root: &Part<'_>, raw: &[u8], section: Option<&Section<'_>>) -> Option<Vec<u8>> {
    let path = |p: Option<&PartPath>| p.map(path_of).unwrap_or_default();
    Some(match section {
        None => raw.to_vec(),
        Some(Section::Part(p)) => mime::find(root, &path_of(p))?.body.to_vec(),
        Some(Section::Header(p)) => mime::message_at(root, &path(p.as_ref()))?.header.to_vec(),
        Some(Section::HeaderFields(p, names)) | Some(Section::HeaderFieldsNot(p, names)) => {
            let not = matches!(section, Some(Section::HeaderFieldsNot(..)));
            let names: Vec<Vec<u8>> = names.as_ref().iter().map(|n| n.as_ref().to_vec()).collect();
            let header = mime::message_at(root, &path(p.as_ref()))?.header;
            mime::header_fields(header, &names, not)
        }
        Some(Section::Text(p)) => mime::message_at(root, &path(p.as_ref()))?.body.to_vec(),
        Some(Section::Mime(p)) => mime::find(root, &path_of(p))?.header.to_vec(),
    })
}

/// `BINARY[section]`: the part's content with its Content-Transfer-Encoding undone.
fn binary_bytes(root: &Part<'_>, raw: &[u8], section: Option<&Section<'_>>) -> Option<Vec<u8>> {
    let part = match section {
        None => return Some(raw.to_vec()),
        Some(Section::Part(p)) => mime::find(root, &path_of(p))?,
        // Only part numbers make sense for BINARY; the rest are sent as they are.
        other => return section_bytes(root, raw, other),
    };
    let fields = mime::fields(part.header);
    let encoding = mime::field(&fields, "content-transfer-encoding")
        .map(|e| String::from_utf8_lossy(e).trim().to_ascii_lowercase())
        .unwrap_or_default();
    Some(match encoding.as_str() {
        "base64" => {
            let clean: Vec<u8> = part
                .body
                .iter()
                .copied()
                .filter(|c| !c.is_ascii_whitespace())
                .collect();
            base64::engine::general_purpose::STANDARD
                .decode(&clean)
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(&clean))
                .unwrap_or_else(|_| part.body.to_vec())
        }
        "quoted-printable" => quoted_printable(part.body),
        _ => part.body.to_vec(),
    })
}

/// Whether the part a `BINARY` section names has a transfer encoding other than RFC 2045's.
fn unknown_cte(root: &Part<'_>, section: Option<&Section<'_>>) -> bool {
    let Some(Section::Part(p)) = section else {
        return false;
    };
    let Some(part) = mime::find(root, &path_of(p)) else {
        return false;
    };
    let fields = mime::fields(part.header);
    let encoding = mime::field(&fields, "content-transfer-encoding")
        .map(|e| String::from_utf8_lossy(e).trim().to_ascii_lowercase())
        .unwrap_or_default();
    !matches!(
        encoding.as_str(),
        "" | "7bit" | "8bit" | "binary" | "base64" | "quoted-printable"
    )
}

/// RFC 2045 §6.7, leniently: a bad escape is kept as it is.
fn quoted_printable(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    let hex = |c: u8| (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok());
    while i < s.len() {
        if s[i] == b'=' {
            if s[i + 1..].starts_with(b"\r\n") {
                i += 3;
                continue;
            }
            if s[i + 1..].starts_with(b"\n") {
                i += 2;
                continue;
            }
            if let (Some(a), Some(b)) = (
                s.get(i + 1).copied().and_then(hex),
                s.get(i + 2).copied().and_then(hex),
            ) {
                out.push(a * 16 + b);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_printable_decodes() {
        assert_eq!(
            quoted_printable(b"Gr=FC=DFe=\r\n K=F6ln =zz"),
            b"Gr\xfc\xdfe K\xf6ln =zz"
        );
    }
}
