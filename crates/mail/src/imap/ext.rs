//! The extension syntax imap-codec 1.0 does not parse, handled before it: `ID` (RFC 2971), `NAMESPACE`
//! (RFC 2342), `UID EXPUNGE` (UIDPLUS, RFC 4315), `SEARCH RETURN (…)` (ESEARCH, RFC 4731), CONDSTORE's
//! `SELECT … (CONDSTORE)`, `FETCH … (CHANGEDSINCE n)`, the `MODSEQ` fetch item and `STORE …
//! (UNCHANGEDSINCE n)` and the `MODSEQ` search key (RFC 7162), QRESYNC's `SELECT … (QRESYNC (…))` and
//! `FETCH … (CHANGEDSINCE n VANISHED)`, and BINARY's fetch items and `APPEND` with a `~{n}` literal
//! (RFC 3516).
//!
//! Commands of their own are recognised here; modifiers are cut out of the command line and remembered in
//! [`Extras`], and the rest goes to imap-codec as plain RFC 3501. Only the first line is rewritten (the
//! modifiers never sit in or after a literal), so literal lengths stay true.

use imap_codec::imap_types::sequence::SequenceSet;

/// A command imap-codec does not know.
#[derive(Debug, PartialEq, Eq)]
pub enum Own {
    Id,
    Namespace,
    UidExpunge(SequenceSet),
}

/// ESEARCH result options.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Return {
    pub min: bool,
    pub max: bool,
    pub all: bool,
    pub count: bool,
}

/// How a rewritten `BINARY` item is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    /// `BINARY[…]` or `BINARY.PEEK[…]`: the decoded content.
    Content,
    /// `BINARY.SIZE[…]`: its size.
    Size,
}

/// QRESYNC's `SELECT` parameter (RFC 7162 §3.2.5): what the client knew of the mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qresync {
    pub uidvalidity: u32,
    pub modseq: u64,
    /// The UIDs the client has; `VANISHED (EARLIER)` names only these. (The optional sequence-match
    /// data is not needed: the store keeps every expunged UID.)
    pub known_uids: Option<SequenceSet>,
}

/// The keyword a `MODSEQ n` search key is rewritten to, so that it keeps its place inside `OR`/`NOT`;
/// [`Extras::search_modseq`] says the search has such keys (a real keyword of this name is then read
/// as `MODSEQ`, an accepted ambiguity: no client uses it).
pub const MODSEQ_KEYWORD: &str = "MSGR-MODSEQ-";

/// Modifiers cut out of a command.
#[derive(Debug, Default)]
pub struct Extras {
    pub condstore: bool,
    /// `SELECT`/`EXAMINE` with `(QRESYNC (…))`.
    pub qresync: Option<Qresync>,
    /// `FETCH … (CHANGEDSINCE n VANISHED)`.
    pub vanished: bool,
    /// `SEARCH` had `MODSEQ` keys (rewritten to [`MODSEQ_KEYWORD`]`n`).
    pub search_modseq: bool,
    /// `APPEND` with a `~{n}` literal (literal8, RFC 3516): the message, which may hold NULs that
    /// imap-codec's literals refuse. The command it parses carries an empty literal instead.
    pub literal8: Option<Vec<u8>>,
    pub esearch: Option<Return>,
    pub fetch_modseq: bool,
    pub changed_since: Option<u64>,
    pub unchanged_since: Option<u64>,
    /// For each `BODY[…]` item of the rewritten FETCH in order: `Some` if it was a `BINARY` item.
    pub binary: Vec<Option<Binary>>,
    /// LIST-EXTENDED selection options (RFC 5258, RFC 6154): `(SPECIAL-USE)`, `(SUBSCRIBED)`.
    pub list_special_only: bool,
    pub list_subscribed_only: bool,
}

/// The outcome of looking at a command line.
pub enum Pre {
    Own {
        tag: String,
        cmd: Own,
    },
    /// Give imap-codec this (rewritten or not) with these extras.
    Codec {
        line: Option<Vec<u8>>,
        extras: Extras,
    },
}

fn words(line: &str) -> Vec<&str> {
    line.split(' ').filter(|w| !w.is_empty()).collect()
}

/// Looks at a whole command (first line first).
pub fn pre(raw: &[u8]) -> Pre {
    let first_end = raw
        .iter()
        .position(|&c| c == b'\n')
        .map_or(raw.len(), |e| e + 1);
    let Ok(first) = std::str::from_utf8(&raw[..first_end]) else {
        return Pre::Codec {
            line: None,
            extras: Extras::default(),
        };
    };
    let body = first.trim_end_matches(['\r', '\n']);
    let w = words(body);
    let verb = w.get(1).map(|v| v.to_ascii_uppercase()).unwrap_or_default();
    let tag = w.first().map(|t| (*t).to_owned()).unwrap_or_default();
    let sub = w.get(2).map(|v| v.to_ascii_uppercase()).unwrap_or_default();
    match verb.as_str() {
        "ID" => return Pre::Own { tag, cmd: Own::Id },
        "NAMESPACE" if w.len() == 2 => {
            return Pre::Own {
                tag,
                cmd: Own::Namespace,
            }
        }
        "UID" if sub == "EXPUNGE" && w.len() == 4 => {
            if let Ok(set) = SequenceSet::try_from(w[3]) {
                return Pre::Own {
                    tag,
                    cmd: Own::UidExpunge(set),
                };
            }
        }
        _ => {}
    }
    let mut extras = Extras::default();
    let command = if verb == "UID" {
        sub.as_str()
    } else {
        verb.as_str()
    };
    let mut line = body.to_owned();
    let rewritten = match command {
        "SELECT" | "EXAMINE" => match select_params(&line) {
            Some((at, condstore, qresync)) => {
                line.truncate(at);
                extras.condstore = condstore;
                extras.qresync = qresync;
                true
            }
            None => false,
        },
        "APPEND" if verb == "APPEND" => {
            if let Some((cut, data)) = literal8(body, &raw[first_end..]) {
                line.truncate(cut);
                line.push_str("{0}\r\n\r\n");
                extras.literal8 = Some(data.to_vec());
                return codec(Some(line.into_bytes()), extras);
            }
            false
        }
        "SEARCH" => {
            let upper = line.to_ascii_uppercase();
            let returns = match upper.find(" SEARCH RETURN (") {
                Some(at) => {
                    let open = at + " SEARCH RETURN (".len();
                    match upper[open..].find(')') {
                        Some(close) => {
                            let mut r = Return::default();
                            for opt in upper[open..open + close].split(' ') {
                                match opt {
                                    "MIN" => r.min = true,
                                    "MAX" => r.max = true,
                                    "ALL" => r.all = true,
                                    "COUNT" => r.count = true,
                                    "" => {}
                                    _ => return codec(None, Extras::default()),
                                }
                            }
                            // RFC 4731: `RETURN ()` means `RETURN (ALL)`.
                            if !(r.min || r.max || r.count) {
                                r.all = true;
                            }
                            extras.esearch = Some(r);
                            line.replace_range(at + " SEARCH".len()..open + close + 1, "");
                            true
                        }
                        None => false,
                    }
                }
                None => false,
            };
            // Not `||`: both rewrites apply.
            returns | rewrite_search_modseq(&mut line, &mut extras)
        }
        "FETCH" => rewrite_fetch(&mut line, &mut extras),
        "LIST" if verb == "LIST" => rewrite_list(&mut line, &mut extras),
        "STORE" => {
            let upper = line.to_ascii_uppercase();
            match upper.find(" (UNCHANGEDSINCE ") {
                Some(at) => {
                    let start = at + " (UNCHANGEDSINCE ".len();
                    match upper[start..].find(')') {
                        Some(end) => match upper[start..start + end].parse() {
                            Ok(n) => {
                                extras.unchanged_since = Some(n);
                                line.replace_range(at..start + end + 1, "");
                                true
                            }
                            Err(_) => false,
                        },
                        None => false,
                    }
                }
                None => false,
            }
        }
        _ => false,
    };
    if !rewritten {
        return codec(None, extras);
    }
    let mut out = line.into_bytes();
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&raw[first_end..]);
    codec(Some(out), extras)
}

/// `SELECT`/`EXAMINE` parameters at the end of the line (RFC 7162 §3.1.8, §3.2.5): where they start,
/// `CONDSTORE`, and `QRESYNC (uidvalidity modseq [known-uids [seq-match]])`. `None` if there are none
/// or they do not parse (imap-codec then refuses the line).
fn select_params(line: &str) -> Option<(usize, bool, Option<Qresync>)> {
    let upper = line.to_ascii_uppercase();
    let at = [" (CONDSTORE", " (QRESYNC"]
        .iter()
        .filter_map(|p| upper.find(p))
        .min()?;
    let inner = upper.get(at + 2..)?.strip_suffix(')')?;
    let mut condstore = false;
    let mut qresync = None;
    let mut rest = inner.trim_start();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("CONDSTORE") {
            condstore = true;
            rest = r.trim_start();
        } else if let Some(r) = rest.strip_prefix("QRESYNC (") {
            let close = r.find(['(', ')'])?;
            let (head, mut tail) = r.split_at(close);
            // The optional sequence-match data `(seqs uids)` nests one level.
            if tail.starts_with('(') {
                tail = &tail[tail.find(')')? + 1..];
                tail = tail.trim_start().strip_prefix(')')?;
            } else {
                tail = &tail[1..];
            }
            let mut w = head.split(' ').filter(|w| !w.is_empty());
            let uidvalidity: u32 = w.next()?.parse().ok().filter(|&v| v > 0)?;
            let modseq: u64 = w.next()?.parse().ok()?;
            let known_uids = match w.next() {
                Some(set) => Some(SequenceSet::try_from(set).ok()?),
                None => None,
            };
            if w.next().is_some() {
                return None;
            }
            qresync = Some(Qresync {
                uidvalidity,
                modseq,
                known_uids,
            });
            rest = tail.trim_start();
        } else {
            return None;
        }
    }
    Some((at, condstore, qresync))
}

/// `APPEND mailbox [flags] [date] ~{n}` or `~{n+}` (RFC 3516 §4.4, literal8) with exactly the message
/// after the line: where the literal announcement starts, and the message.
fn literal8<'r>(line: &str, after: &'r [u8]) -> Option<(usize, &'r [u8])> {
    let open = line.rfind("~{")?;
    let digits = line[open + 2..].strip_suffix('}')?;
    let digits = digits.strip_suffix('+').unwrap_or(digits);
    let n: usize = digits.parse().ok()?;
    let data = after.get(..n)?;
    matches!(&after[n..], b"\r\n" | b"\n").then_some((open, data))
}

/// CONDSTORE's `MODSEQ [entry-name entry-type] n` search key (RFC 7162 §3.1.5), anywhere outside
/// quoted strings, becomes the keyword [`MODSEQ_KEYWORD`]`n` (entry names are not kept per flag here,
/// so they are read and ignored: every change counts).
fn rewrite_search_modseq(line: &mut String, extras: &mut Extras) -> bool {
    let mut changed = false;
    let mut from = 0;
    loop {
        let bytes = line.as_bytes();
        let mut quoted = false;
        let mut found = None;
        let mut i = from;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' if quoted => i += 1,
                b'"' => quoted = !quoted,
                _ if !quoted
                    && matches!(bytes.get(i.wrapping_sub(1)), Some(b' ' | b'('))
                    && bytes.len() >= i + 7
                    && bytes[i..i + 7].eq_ignore_ascii_case(b"MODSEQ ") =>
                {
                    found = Some(i);
                    break;
                }
                _ => {}
            }
            i += 1;
        }
        let Some(start) = found else {
            return changed;
        };
        let mut j = start + 7;
        if bytes.get(j) == Some(&b'"') {
            // entry-name (a quoted string) and entry-type-req (`priv`, `shared`, `all`).
            j += 1;
            while j < bytes.len() && bytes[j] != b'"' {
                if bytes[j] == b'\\' {
                    j += 1;
                }
                j += 1;
            }
            j += 1;
            let skip_spaces = |mut k: usize| {
                while bytes.get(k) == Some(&b' ') {
                    k += 1;
                }
                k
            };
            j = skip_spaces(j);
            while j < bytes.len() && bytes[j] != b' ' {
                j += 1;
            }
            j = skip_spaces(j);
        }
        let Some(tail) = line.get(j..) else {
            return changed;
        };
        let digits = tail
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(tail.len());
        let Ok(n) = tail[..digits].parse::<u64>() else {
            return changed;
        };
        let digits_end = j + digits;
        let replacement = format!("KEYWORD {MODSEQ_KEYWORD}{n}");
        line.replace_range(start..digits_end, &replacement);
        from = start + replacement.len();
        extras.search_modseq = true;
        extras.fetch_modseq = true;
        changed = true;
    }
}

fn codec(line: Option<Vec<u8>>, extras: Extras) -> Pre {
    Pre::Codec { line, extras }
}

/// LIST-EXTENDED's `LIST (selection) ref pattern RETURN (options)`, as Thunderbird sends it to a server
/// with SPECIAL-USE: the selection options are remembered, the return options dropped (special-use
/// attributes and `\HasChildren`/`\HasNoChildren` are always returned). Only one pattern is taken.
fn rewrite_list(line: &mut String, extras: &mut Extras) -> bool {
    let upper = line.to_ascii_uppercase();
    let mut changed = false;
    if let Some(at) = upper.find(" RETURN (") {
        if upper.ends_with(')') {
            line.truncate(at);
            changed = true;
        }
    }
    let upper = line.to_ascii_uppercase();
    if let Some(at) = upper.find(" LIST (") {
        let open = at + " LIST (".len();
        if let Some(close) = upper[open..].find(')') {
            for opt in upper[open..open + close].split(' ') {
                match opt {
                    "SPECIAL-USE" => extras.list_special_only = true,
                    "SUBSCRIBED" => extras.list_subscribed_only = true,
                    _ => {}
                }
            }
            line.replace_range(at + " LIST".len()..open + close + 1, "");
            changed = true;
        }
    }
    changed
}

/// `CHANGEDSINCE`, `MODSEQ` and `BINARY` in a FETCH line.
fn rewrite_fetch(line: &mut String, extras: &mut Extras) -> bool {
    let mut changed = false;
    let upper = line.to_ascii_uppercase();
    if let Some(at) = upper.find(" (CHANGEDSINCE ") {
        let start = at + " (CHANGEDSINCE ".len();
        if let Some(end) = upper[start..].find(')') {
            let arg = &upper[start..start + end];
            // `CHANGEDSINCE n`, possibly with QRESYNC's `VANISHED`.
            let mut args = arg.split(' ').filter(|a| !a.is_empty());
            let n = args.next().and_then(|n| n.parse().ok());
            let vanished = args.clone().any(|a| a == "VANISHED");
            if let (Some(n), true) = (n, args.all(|a| a == "VANISHED")) {
                extras.vanished = vanished;
                extras.changed_since = Some(n);
                extras.fetch_modseq = true;
                line.replace_range(at..start + end + 1, "");
                changed = true;
            }
        }
    }
    // Item names: replace word by word outside brackets. Bytes are copied as they are, so text that is
    // not ASCII comes through unchanged.
    let mut out: Vec<u8> = Vec::with_capacity(line.len());
    let mut depth = 0i32;
    let mut i = 0;
    let bytes = line.as_bytes();
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'[' {
            depth += 1;
        } else if c == b']' {
            depth -= 1;
        }
        let at_word = depth == 0 && (i == 0 || matches!(bytes[i - 1], b' ' | b'('));
        if at_word {
            let rest = &line[i..];
            let upper = rest.to_ascii_uppercase();
            let word_end = upper.find([' ', ')', '[']).unwrap_or(upper.len());
            let word = &upper[..word_end];
            let next = upper.as_bytes().get(word_end).copied();
            match (word, next) {
                ("MODSEQ", _) if next != Some(b'[') => {
                    extras.fetch_modseq = true;
                    changed = true;
                    i += word_end;
                    // Drop one separating space so the list stays well formed.
                    if out.ends_with(b" ") && matches!(next, Some(b')') | None) {
                        out.pop();
                    } else if bytes.get(i) == Some(&b' ') {
                        i += 1;
                    }
                    continue;
                }
                ("BINARY" | "BINARY.PEEK" | "BINARY.SIZE", Some(b'[')) => {
                    extras.binary.push(Some(if word == "BINARY.SIZE" {
                        Binary::Size
                    } else {
                        Binary::Content
                    }));
                    // BINARY sets \Seen as BODY does; BINARY.PEEK and BINARY.SIZE do not.
                    out.extend_from_slice(if word == "BINARY" {
                        b"BODY"
                    } else {
                        b"BODY.PEEK"
                    });
                    changed = true;
                    i += word_end;
                    continue;
                }
                ("BODY" | "BODY.PEEK", Some(b'[')) => extras.binary.push(None),
                _ => {}
            }
        }
        out.push(c);
        i += 1;
    }
    if changed {
        // Only ASCII words were replaced, at character boundaries: still UTF-8.
        if let Ok(out) = String::from_utf8(out) {
            *line = out;
        }
    }
    // A FETCH of nothing but MODSEQ: ask the codec for FLAGS-free UID, answered as MODSEQ only.
    if line.ends_with(" ()") {
        line.truncate(line.len() - 2);
        line.push_str("UID");
    }
    changed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rewritten(raw: &str) -> (String, Extras) {
        match pre(raw.as_bytes()) {
            Pre::Codec { line, extras } => (
                String::from_utf8(line.unwrap_or_else(|| raw.as_bytes().to_vec())).unwrap(),
                extras,
            ),
            Pre::Own { .. } => panic!("own command"),
        }
    }

    #[test]
    fn own_commands() {
        assert!(matches!(
            pre(b"a ID (\"name\" \"x\")\r\n"),
            Pre::Own { cmd: Own::Id, .. }
        ));
        assert!(matches!(
            pre(b"a namespace\r\n"),
            Pre::Own {
                cmd: Own::Namespace,
                ..
            }
        ));
        assert!(matches!(
            pre(b"a UID EXPUNGE 1:3,5\r\n"),
            Pre::Own {
                cmd: Own::UidExpunge(_),
                ..
            }
        ));
    }

    #[test]
    fn modifiers_are_cut_out() {
        let (l, e) = rewritten("a SELECT INBOX (CONDSTORE)\r\n");
        assert_eq!(l, "a SELECT INBOX\r\n");
        assert!(e.condstore);
        let (l, e) = rewritten("a UID SEARCH RETURN (MIN COUNT) UNSEEN\r\n");
        assert_eq!(l, "a UID SEARCH UNSEEN\r\n");
        assert_eq!(
            e.esearch,
            Some(Return {
                min: true,
                count: true,
                ..Return::default()
            })
        );
        let (l, e) = rewritten("a FETCH 1:* (FLAGS MODSEQ) (CHANGEDSINCE 12)\r\n");
        assert_eq!(l, "a FETCH 1:* (FLAGS)\r\n");
        assert_eq!(e.changed_since, Some(12));
        assert!(e.fetch_modseq);
        let (l, e) = rewritten("a UID FETCH 1 (MODSEQ FLAGS)\r\n");
        assert_eq!(l, "a UID FETCH 1 (FLAGS)\r\n");
        assert!(e.fetch_modseq);
        let (l, e) = rewritten("a UID FETCH 1 (BODY.PEEK[1] BINARY.PEEK[2] BINARY.SIZE[2])\r\n");
        assert_eq!(
            l,
            "a UID FETCH 1 (BODY.PEEK[1] BODY.PEEK[2] BODY.PEEK[2])\r\n"
        );
        assert_eq!(
            e.binary,
            vec![None, Some(Binary::Content), Some(Binary::Size)]
        );
        let (l, e) = rewritten("a STORE 1 (UNCHANGEDSINCE 5) +FLAGS (\\Seen)\r\n");
        assert_eq!(l, "a STORE 1 +FLAGS (\\Seen)\r\n");
        assert_eq!(e.unchanged_since, Some(5));
        let (l, e) = rewritten("a LIST (SPECIAL-USE) \"\" \"*\" RETURN (CHILDREN)\r\n");
        assert_eq!(l, "a LIST \"\" \"*\"\r\n");
        assert!(e.list_special_only && !e.list_subscribed_only);
        let (l, _) = rewritten("a LIST \"\" \"*\" RETURN (SPECIAL-USE)\r\n");
        assert_eq!(l, "a LIST \"\" \"*\"\r\n");
        let (l, _) = rewritten("a FETCH 1 (BODY[HEADER.FIELDS (MODSEQ)])\r\n");
        assert_eq!(l, "a FETCH 1 (BODY[HEADER.FIELDS (MODSEQ)])\r\n");
        let (l, e) = rewritten(
            "a SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\r\n",
        );
        assert_eq!(l, "a SELECT INBOX\r\n");
        let q = e.qresync.unwrap();
        assert_eq!((q.uidvalidity, q.modseq), (67890007, 20050715194045000));
        assert!(q.known_uids.is_some());
        let (l, e) = rewritten("a EXAMINE \"A B\" (CONDSTORE QRESYNC (1 2 1:9 (1,4 10,40)))\r\n");
        assert_eq!(l, "a EXAMINE \"A B\"\r\n");
        assert!(e.condstore && e.qresync.is_some());
        // A QRESYNC parameter that does not parse is left for imap-codec to refuse.
        let (l, e) = rewritten("a SELECT INBOX (QRESYNC (0 2))\r\n");
        assert_eq!(l, "a SELECT INBOX (QRESYNC (0 2))\r\n");
        assert!(e.qresync.is_none());
        let (l, e) = rewritten("a UID FETCH 1:* (FLAGS) (CHANGEDSINCE 9 VANISHED)\r\n");
        assert_eq!(l, "a UID FETCH 1:* (FLAGS)\r\n");
        assert!(e.vanished && e.changed_since == Some(9));
        let (l, e) = rewritten(
            "a SEARCH OR MODSEQ \"/flags/\\\\draft\" all 620 NOT MODSEQ 7 SUBJECT \"MODSEQ 5\"\r\n",
        );
        assert_eq!(
            l,
            "a SEARCH OR KEYWORD MSGR-MODSEQ-620 NOT KEYWORD MSGR-MODSEQ-7 SUBJECT \"MODSEQ 5\"\r\n"
        );
        assert!(e.search_modseq);
        match pre(b"a APPEND INBOX (\\Seen) ~{3+}\r\n\0\x01\x02\r\n") {
            Pre::Codec { line, extras } => {
                assert_eq!(line.unwrap(), b"a APPEND INBOX (\\Seen) {0}\r\n\r\n");
                assert_eq!(extras.literal8.unwrap(), b"\0\x01\x02");
            }
            Pre::Own { .. } => panic!("own command"),
        }
        let (l, _) = rewritten("a FETCH 1 (BODY.PEEK[HEADER.FIELDS (Ünïcode)] MODSEQ)\r\n");
        assert_eq!(l, "a FETCH 1 (BODY.PEEK[HEADER.FIELDS (Ünïcode)])\r\n");
    }
}
