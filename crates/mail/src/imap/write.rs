//! Serialising IMAP data: strings as quoted strings when they can be, literals otherwise (RFC 3501 §4.3),
//! `NIL`, flag lists and dates. Responses are written straight into the session's output buffer.

use msgr_store::Flags;

/// Whether `s` can go out as a quoted string: 7-bit text without CR, LF or NUL, not too long to read.
fn quotable(s: &[u8]) -> bool {
    s.len() < 1024
        && s.iter()
            .all(|&c| c != 0 && c != b'\r' && c != b'\n' && c < 0x80)
}

/// A string: quoted (with `\` and `"` escaped) if possible, else a literal. A literal may not hold NUL
/// (RFC 3501's `CHAR8` is %x01-FF; clients' parsers refuse it), so a NUL of a header value or parameter goes
/// out as 0x80, a byte 8-bit literals do carry.
pub fn quoted_or_literal(out: &mut Vec<u8>, s: &[u8]) {
    if quotable(s) {
        out.push(b'"');
        for &c in s {
            if c == b'"' || c == b'\\' {
                out.push(b'\\');
            }
            out.push(c);
        }
        out.push(b'"');
    } else if s.contains(&0) {
        let clean: Vec<u8> = s.iter().map(|&c| if c == 0 { 0x80 } else { c }).collect();
        literal(out, &clean);
    } else {
        literal(out, s);
    }
}

/// A literal: `{n}` CRLF and the bytes.
pub fn literal(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
    out.extend_from_slice(s);
}

/// An nstring: `NIL` for `None`.
pub fn nstring(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) => quoted_or_literal(out, s),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// A mailbox name as an astring (always quoted or literal: names may hold spaces and `/`).
pub fn mailbox(out: &mut Vec<u8>, name: &str) {
    quoted_or_literal(out, name.as_bytes());
}

/// `(\Seen \Flagged kw …)`.
pub fn flag_list(out: &mut Vec<u8>, flags: Flags, keywords: &[String]) {
    out.push(b'(');
    let mut first = true;
    for (f, name) in Flags::NAMES {
        if flags.contains(f) {
            if !first {
                out.push(b' ');
            }
            first = false;
            out.extend_from_slice(name.as_bytes());
        }
    }
    for k in keywords {
        if !first {
            out.push(b' ');
        }
        first = false;
        out.extend_from_slice(k.as_bytes());
    }
    out.push(b')');
}

/// `INTERNALDATE`'s `"dd-Mon-yyyy hh:mm:ss +0000"` for seconds since the Unix epoch (always UTC).
pub fn internal_date(out: &mut Vec<u8>, secs: i64) {
    let dt = chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default();
    out.extend_from_slice(
        dt.format("\"%d-%b-%Y %H:%M:%S +0000\"")
            .to_string()
            .as_bytes(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_quoted_or_literal() {
        let mut out = Vec::new();
        quoted_or_literal(&mut out, b"a \"b\" \\c");
        assert_eq!(out, b"\"a \\\"b\\\" \\\\c\"");
        out.clear();
        quoted_or_literal(&mut out, "é".as_bytes());
        assert_eq!(out, b"{2}\r\n\xc3\xa9");
        out.clear();
        nstring(&mut out, None);
        assert_eq!(out, b"NIL");
    }

    #[test]
    fn dates_and_flags() {
        let mut out = Vec::new();
        internal_date(&mut out, 805_284_837);
        assert_eq!(out, b"\"09-Jul-1995 10:13:57 +0000\"");
        out.clear();
        flag_list(
            &mut out,
            Flags::SEEN.union(Flags::DELETED),
            &["$Junk".to_owned()],
        );
        assert_eq!(out, b"(\\Seen \\Deleted $Junk)");
    }
}
