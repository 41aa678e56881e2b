//! The extension syntax imap-codec 1.0 does not parse, handled before it: `ID` (RFC 2971), `NAMESPACE`
//! (RFC 2342), `UID EXPUNGE` (UIDPLUS, RFC 4315), `SEARCH RETURN (…)` (ESEARCH, RFC 4731), CONDSTORE's
//! `SELECT … (CONDSTORE)`, `FETCH … (CHANGEDSINCE n)`, the `MODSEQ` fetch item and `STORE …
//! (UNCHANGEDSINCE n)` (RFC 7162), and `BINARY[…]` fetch items (RFC 3516).
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

/// Modifiers cut out of a command.
#[derive(Debug, Default)]
pub struct Extras {
    pub condstore: bool,
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
        "SELECT" | "EXAMINE" => {
            let upper = line.to_ascii_uppercase();
            if upper.ends_with(" (CONDSTORE)") {
                line.truncate(line.len() - " (CONDSTORE)".len());
                extras.condstore = true;
                true
            } else {
                false
            }
        }
        "SEARCH" => {
            let upper = line.to_ascii_uppercase();
            match upper.find(" SEARCH RETURN (") {
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
            }
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
            // `CHANGEDSINCE n` possibly followed by `VANISHED` (QRESYNC, not offered): take the number.
            if let Some(n) = arg.split(' ').next().and_then(|n| n.parse().ok()) {
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
        let (l, _) = rewritten("a FETCH 1 (BODY.PEEK[HEADER.FIELDS (Ünïcode)] MODSEQ)\r\n");
        assert_eq!(l, "a FETCH 1 (BODY.PEEK[HEADER.FIELDS (Ünïcode)])\r\n");
    }
}
