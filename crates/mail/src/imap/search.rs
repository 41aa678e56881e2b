//! `SEARCH` (RFC 3501 §6.4.4): every search key evaluated against a message's stored metadata, reading
//! the raw message only for the keys that need it (`BODY`, `TEXT`, `HEADER`, `CC`, `BCC`), and at most
//! once per message.
//!
//! String keys match case-insensitively as substrings. `FROM`, `TO` and `SUBJECT` match the stored summary
//! (decoded from RFC 2047) or the raw header; `BODY` and `TEXT` match the decoded text of every text part
//! (transfer encodings and charsets undone by mail-parser), so a UTF-8 search finds a quoted-printable
//! ISO-8859-1 body.

use super::mime;
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use msgr_store::{Flags, MessageState, MessageSummary};

/// Whether `n` is in `set`, where `*` stands for `largest`.
pub fn in_set(set: &SequenceSet, n: u32, largest: u32) -> bool {
    let value = |v: &SeqOrUid| match v {
        SeqOrUid::Value(v) => v.get(),
        SeqOrUid::Asterisk => largest,
    };
    set.0.as_ref().iter().any(|s| match s {
        Sequence::Single(v) => value(v) == n,
        Sequence::Range(a, b) => {
            let (a, b) = (value(a), value(b));
            (a.min(b)..=a.max(b)).contains(&n)
        }
    })
}

/// One message as a search sees it.
pub struct Candidate<'m> {
    pub seq: u32,
    pub meta: &'m MessageState,
    /// The stored summary, loaded only when the keys need it ([`needs_summary`]); an empty one otherwise.
    pub summary: &'m MessageSummary,
    /// `\Recent` for the searching session.
    pub recent: bool,
}

/// The messages' numbering, for `*` in sequence sets.
pub struct Bounds {
    pub max_seq: u32,
    pub max_uid: u32,
    /// The search had CONDSTORE `MODSEQ n` keys, rewritten by `ext` as keywords
    /// ([`MODSEQ_KEYWORD`](super::ext::MODSEQ_KEYWORD)`n`).
    pub modseq_keys: bool,
}

/// The raw message, loaded on first use.
pub struct Raw<'f> {
    load: &'f mut dyn FnMut() -> Option<Vec<u8>>,
    cached: Option<Option<Vec<u8>>>,
}

impl<'f> Raw<'f> {
    pub fn new(load: &'f mut dyn FnMut() -> Option<Vec<u8>>) -> Raw<'f> {
        Raw { load, cached: None }
    }

    fn get(&mut self) -> Option<&[u8]> {
        if self.cached.is_none() {
            self.cached = Some((self.load)());
        }
        self.cached.as_ref().and_then(|c| c.as_deref())
    }
}

fn contains(haystack: &str, needle: &str) -> bool {
    needle.is_empty() || haystack.to_lowercase().contains(&needle.to_lowercase())
}

fn text(s: &impl AsRef<[u8]>) -> String {
    String::from_utf8_lossy(s.as_ref()).into_owned()
}

/// The header fields named `name` of the message, unfolded and (for encoded words) decoded.
fn header_values(raw: &[u8], name: &str) -> Vec<String> {
    let (header, _) = split(raw);
    let mut values: Vec<String> = mime::fields(header)
        .into_iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| text(&v))
        .collect();
    if let Some(msg) = mail_parser::MessageParser::default().parse_headers(header) {
        for h in msg.headers() {
            if h.name().eq_ignore_ascii_case(name) {
                if let Some(t) = h.value().as_text() {
                    values.push(t.to_owned());
                }
                if let Some(a) = h.value().as_address() {
                    for addr in a.iter() {
                        values.push(format!(
                            "{} <{}>",
                            addr.name().unwrap_or_default(),
                            addr.address().unwrap_or_default()
                        ));
                    }
                }
            }
        }
    }
    values
}

fn split(raw: &[u8]) -> (&[u8], &[u8]) {
    let root = mime::parse(raw);
    (root.header, root.body)
}

/// The decoded text of every text part.
fn body_text(raw: &[u8]) -> String {
    let Some(msg) = mail_parser::MessageParser::default().parse(raw) else {
        return text(&split(raw).1);
    };
    let mut out = String::new();
    for part in msg.parts.iter() {
        if let Some(t) = part.text_contents() {
            out.push_str(t);
            out.push('\n');
        }
    }
    out
}

fn date_of(secs: i64) -> Option<chrono::NaiveDate> {
    chrono::DateTime::from_timestamp(secs, 0).map(|d| d.date_naive())
}

/// Whether the message matches `key`.
pub fn matches(key: &SearchKey<'_>, c: &Candidate<'_>, bounds: &Bounds, raw: &mut Raw<'_>) -> bool {
    let m = c.meta;
    let has = |f: Flags| m.flags.contains(f);
    let internal = date_of(m.internal_date);
    let sent = c.summary.date.and_then(date_of);
    match key {
        SearchKey::And(keys) => keys.as_ref().iter().all(|k| matches(k, c, bounds, raw)),
        SearchKey::SequenceSet(set) => in_set(set, c.seq, bounds.max_seq),
        SearchKey::Uid(set) => in_set(set, m.uid, bounds.max_uid),
        SearchKey::All => true,
        SearchKey::Answered => has(Flags::ANSWERED),
        SearchKey::Unanswered => !has(Flags::ANSWERED),
        SearchKey::Deleted => has(Flags::DELETED),
        SearchKey::Undeleted => !has(Flags::DELETED),
        SearchKey::Draft => has(Flags::DRAFT),
        SearchKey::Undraft => !has(Flags::DRAFT),
        SearchKey::Flagged => has(Flags::FLAGGED),
        SearchKey::Unflagged => !has(Flags::FLAGGED),
        SearchKey::Seen => has(Flags::SEEN),
        SearchKey::Unseen => !has(Flags::SEEN),
        SearchKey::Recent => c.recent,
        SearchKey::New => c.recent && !has(Flags::SEEN),
        SearchKey::Old => !c.recent,
        // RFC 7162 §3.1.5: messages whose modseq is at least n.
        SearchKey::Keyword(k)
            if bounds.modseq_keys && k.as_ref().starts_with(super::ext::MODSEQ_KEYWORD) =>
        {
            k.as_ref()[super::ext::MODSEQ_KEYWORD.len()..]
                .parse::<u64>()
                .is_ok_and(|n| m.modseq >= n)
        }
        SearchKey::Keyword(k) => m
            .keywords
            .iter()
            .any(|w| w.eq_ignore_ascii_case(k.as_ref())),
        SearchKey::Unkeyword(k) => !m
            .keywords
            .iter()
            .any(|w| w.eq_ignore_ascii_case(k.as_ref())),
        SearchKey::Larger(n) => m.size > u64::from(*n),
        SearchKey::Smaller(n) => m.size < u64::from(*n),
        SearchKey::Before(d) => internal.is_some_and(|i| i < *d.as_ref()),
        SearchKey::On(d) => internal.is_some_and(|i| i == *d.as_ref()),
        SearchKey::Since(d) => internal.is_some_and(|i| i >= *d.as_ref()),
        SearchKey::SentBefore(d) => sent.is_some_and(|i| i < *d.as_ref()),
        SearchKey::SentOn(d) => sent.is_some_and(|i| i == *d.as_ref()),
        SearchKey::SentSince(d) => sent.is_some_and(|i| i >= *d.as_ref()),
        SearchKey::Not(k) => !matches(k, c, bounds, raw),
        SearchKey::Or(a, b) => matches(a, c, bounds, raw) || matches(b, c, bounds, raw),
        SearchKey::From(s) => string_key(&c.summary.from, "from", &text(s), raw),
        SearchKey::To(s) => string_key(&c.summary.to, "to", &text(s), raw),
        SearchKey::Subject(s) => string_key(&c.summary.subject, "subject", &text(s), raw),
        SearchKey::Cc(s) => header_key("cc", &text(s), raw),
        SearchKey::Bcc(s) => header_key("bcc", &text(s), raw),
        SearchKey::Header(name, value) => header_key(&text(name), &text(value), raw),
        SearchKey::Body(s) => raw.get().is_some_and(|r| contains(&body_text(r), &text(s))),
        SearchKey::Text(s) => raw.get().is_some_and(|r| {
            let needle = text(s);
            contains(&text(&split(r).0), &needle) || contains(&body_text(r), &needle)
        }),
    }
}

fn string_key(summary: &str, header: &str, needle: &str, raw: &mut Raw<'_>) -> bool {
    contains(summary, needle) || header_key(header, needle, raw)
}

fn header_key(name: &str, needle: &str, raw: &mut Raw<'_>) -> bool {
    raw.get()
        .is_some_and(|r| header_values(r, name).iter().any(|v| contains(v, needle)))
}

/// Whether evaluating `key` may need the raw message (so the caller can avoid the store round trip).
pub fn needs_raw(key: &SearchKey<'_>) -> bool {
    match key {
        SearchKey::And(keys) => keys.as_ref().iter().any(needs_raw),
        SearchKey::Not(k) => needs_raw(k),
        SearchKey::Or(a, b) => needs_raw(a) || needs_raw(b),
        SearchKey::From(_)
        | SearchKey::To(_)
        | SearchKey::Subject(_)
        | SearchKey::Cc(_)
        | SearchKey::Bcc(_)
        | SearchKey::Header(..)
        | SearchKey::Body(_)
        | SearchKey::Text(_) => true,
        _ => false,
    }
}

/// Whether evaluating `key` reads the stored summary (`FROM`, `TO`, `SUBJECT`, the `SENT…` dates), which a
/// session does not keep: the caller loads it for the candidates, in one store call, only then.
pub fn needs_summary(key: &SearchKey<'_>) -> bool {
    match key {
        SearchKey::And(keys) => keys.as_ref().iter().any(needs_summary),
        SearchKey::Not(k) => needs_summary(k),
        SearchKey::Or(a, b) => needs_summary(a) || needs_summary(b),
        SearchKey::From(_)
        | SearchKey::To(_)
        | SearchKey::Subject(_)
        | SearchKey::SentBefore(_)
        | SearchKey::SentOn(_)
        | SearchKey::SentSince(_) => true,
        _ => false,
    }
}

/// Whether the message passes those keys of a top-level AND (or the one key) that read neither the summary
/// nor the raw message: a necessary condition for [`matches`], from the state alone, so a search loads
/// summaries only for the messages that pass it. `c.summary` is not read.
pub fn passes_state_keys(key: &SearchKey<'_>, c: &Candidate<'_>, bounds: &Bounds) -> bool {
    let state_only = |k: &&SearchKey<'_>| !needs_summary(k) && !needs_raw(k);
    let mut never = || None;
    let mut raw = Raw::new(&mut never);
    match key {
        SearchKey::And(keys) => keys
            .as_ref()
            .iter()
            .filter(state_only)
            .all(|k| matches(k, c, bounds, &mut raw)),
        k if state_only(&k) => matches(k, c, bounds, &mut raw),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use imap_codec::decode::Decoder;
    use imap_codec::imap_types::command::CommandBody;
    use imap_codec::CommandCodec;
    use msgr_store::MessageMeta;

    const RAW: &[u8] = b"From: =?ISO-8859-1?Q?J=F6rg?= <joerg@example.com>\r\n\
To: alice@example.com\r\n\
Cc: carol@example.com\r\n\
Subject: Quarterly report\r\n\
X-Tag: blue\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Gr=FC=DFe aus K=F6ln\r\n";

    fn meta(uid: u32, flags: Flags, size: u64, date: i64) -> MessageMeta {
        MessageMeta {
            state: MessageState {
                uid,
                modseq: 1,
                flags,
                keywords: vec!["$Work".to_owned()],
                internal_date: date,
                size,
            },
            summary: MessageSummary {
                from: "Jörg <joerg@example.com>".to_owned(),
                to: "alice@example.com".to_owned(),
                subject: "Quarterly report".to_owned(),
                date: Some(date),
                ..MessageSummary::default()
            },
        }
    }

    fn search(criteria: &str, m: &MessageMeta, seq: u32) -> bool {
        let line = format!("t SEARCH {criteria}\r\n");
        let (_, cmd) = CommandCodec::default().decode(line.as_bytes()).unwrap();
        let CommandBody::Search { criteria, .. } = cmd.body else {
            panic!("not a search")
        };
        let mut load = || Some(RAW.to_vec());
        let mut raw = Raw::new(&mut load);
        // As a session searches: the state it keeps, and the summary loaded only for keys that read it.
        let state = MessageState::from(m.clone());
        let none = MessageSummary::default();
        let summary = if needs_summary(&criteria) {
            &m.summary
        } else {
            &none
        };
        matches(
            &criteria,
            &Candidate {
                seq,
                meta: &state,
                summary,
                recent: false,
            },
            &Bounds {
                max_seq: 10,
                max_uid: 100,
                modseq_keys: false,
            },
            &mut raw,
        )
    }

    #[test]
    fn keys_of_rfc3501() {
        // 2024-03-01 12:00:00 UTC
        let m = meta(42, Flags::SEEN.union(Flags::FLAGGED), 300, 1_709_294_400);
        for (criteria, want) in [
            ("ALL", true),
            ("SEEN FLAGGED", true),
            ("UNSEEN", false),
            ("NOT ANSWERED", true),
            ("OR ANSWERED DELETED", false),
            ("OR ANSWERED SEEN", true),
            ("3", true),
            ("1:2", false),
            ("2:*", true),
            ("UID 42", true),
            ("UID 43:*", false),
            ("LARGER 299 SMALLER 301", true),
            ("KEYWORD $work", true),
            ("UNKEYWORD $Work", false),
            ("ON 1-Mar-2024", true),
            ("SINCE 2-Mar-2024", false),
            ("BEFORE 2-Mar-2024", true),
            ("SENTON 1-Mar-2024", true),
            ("SENTBEFORE 1-Mar-2024", false),
            ("FROM {5}\r\njörg", true),
            ("FROM \"joerg@example\"", true),
            ("TO alice", true),
            ("SUBJECT REPORT", true),
            ("CC carol", true),
            ("BCC carol", false),
            ("HEADER X-Tag blue", true),
            ("HEADER X-Tag \"\"", true),
            ("HEADER X-Other \"\"", false),
            ("BODY {5}\r\nköln", true),
            ("BODY {7}\r\ngrüße", true),
            ("TEXT quarterly", true),
            ("TEXT nothere", false),
            ("NOT (SEEN UNFLAGGED)", true),
            ("RECENT", false),
            ("OLD", true),
        ] {
            assert_eq!(search(criteria, &m, 3), want, "{criteria}");
        }
    }

    #[test]
    fn raw_needed_only_for_content_keys() {
        let (_, cmd) = CommandCodec::default()
            .decode(b"t SEARCH OR SEEN NOT BODY x\r\n")
            .unwrap();
        let CommandBody::Search { criteria, .. } = cmd.body else {
            panic!()
        };
        assert!(needs_raw(&criteria));
        let (_, cmd) = CommandCodec::default()
            .decode(b"t SEARCH OR SEEN NOT 1:5\r\n")
            .unwrap();
        let CommandBody::Search { criteria, .. } = cmd.body else {
            panic!()
        };
        assert!(!needs_raw(&criteria));
    }

    #[test]
    fn summary_needed_only_for_summary_keys() {
        let needs = |line: &[u8]| {
            let (_, cmd) = CommandCodec::default().decode(line).unwrap();
            let CommandBody::Search { criteria, .. } = cmd.body else {
                panic!()
            };
            needs_summary(&criteria)
        };
        assert!(needs(b"t SEARCH OR SEEN NOT FROM x\r\n"));
        assert!(needs(b"t SEARCH UNSEEN SENTSINCE 1-Mar-2024\r\n"));
        assert!(!needs(b"t SEARCH OR SEEN NOT BODY x\r\n"));
        assert!(!needs(b"t SEARCH UID 1:* UNDELETED SINCE 1-Mar-2024\r\n"));
    }

    #[test]
    fn state_keys_decided_before_summaries() {
        let seen = MessageState::from(meta(42, Flags::SEEN, 300, 1_709_294_400));
        let none = MessageSummary::default();
        let c = Candidate {
            seq: 3,
            meta: &seen,
            summary: &none,
            recent: false,
        };
        let bounds = Bounds {
            max_seq: 10,
            max_uid: 100,
            modseq_keys: false,
        };
        let passes = |line: &[u8]| {
            let (_, cmd) = CommandCodec::default().decode(line).unwrap();
            let CommandBody::Search { criteria, .. } = cmd.body else {
                panic!()
            };
            passes_state_keys(&criteria, &c, &bounds)
        };
        assert!(!passes(b"t SEARCH UNSEEN SUBJECT x\r\n"));
        assert!(!passes(b"t SEARCH SUBJECT x UID 1:5\r\n"));
        // Only a necessary condition: the summary keys are left to the full match.
        assert!(passes(b"t SEARCH SEEN FROM nobody\r\n"));
        assert!(passes(b"t SEARCH OR UNSEEN FROM x\r\n"));
        assert!(!passes(b"t SEARCH UNSEEN\r\n"));
    }
}
