//! A message's MIME tree as IMAP sees it: byte ranges of every part's header and body in the raw
//! message, section numbering (RFC 3501 §6.4.5), `BODYSTRUCTURE`, `BODY` and `ENVELOPE` (§7.4.2).
//!
//! This is our own small parser rather than a decoder's view because IMAP answers with the exact raw
//! bytes of a section: the tree only records where things are, never a decoded copy. It accepts CRLF
//! and bare-LF messages and never panics: a part that does not parse is a leaf of its declared type.

use super::write::{nstring, quoted_or_literal};

/// Deepest nesting of multiparts and message/rfc822 parts followed; deeper content is a leaf. A message
/// of nested multiparts is cheap to send and must not cost us a deep recursion.
const MAX_DEPTH: usize = 32;

/// Parts per multipart followed at most.
const MAX_PARTS: usize = 1000;

/// One entity: a message or a body part.
#[derive(Debug)]
pub struct Part<'a> {
    /// The header block, with the blank line that ends it (empty if there is none).
    pub header: &'a [u8],
    pub body: &'a [u8],
    /// `type`, `subtype`, lowercased.
    pub mime_type: (String, String),
    /// Content-Type parameters, names lowercased, values unquoted.
    pub params: Vec<(String, String)>,
    pub kind: Kind<'a>,
}

#[derive(Debug)]
pub enum Kind<'a> {
    Leaf,
    Multipart(Vec<Part<'a>>),
    /// A `message/rfc822` part: the message it carries.
    Message(Box<Part<'a>>),
}

/// Splits an entity into its header block (with the ending blank line) and body.
fn split_header(raw: &[u8]) -> (&[u8], &[u8]) {
    // A body that starts at once (no header at all) begins with an empty line.
    if raw.starts_with(b"\r\n") {
        return (&raw[..2], &raw[2..]);
    }
    if raw.starts_with(b"\n") {
        return (&raw[..1], &raw[1..]);
    }
    let mut i = 0;
    while let Some(off) = memchr(b'\n', &raw[i..]) {
        let next = i + off + 1;
        if raw[next..].starts_with(b"\r\n") {
            return (&raw[..next + 2], &raw[next + 2..]);
        }
        if raw[next..].starts_with(b"\n") {
            return (&raw[..next + 1], &raw[next + 1..]);
        }
        i = next;
    }
    (raw, &raw[raw.len()..])
}

fn memchr(b: u8, s: &[u8]) -> Option<usize> {
    s.iter().position(|&c| c == b)
}

/// The header fields of a block, unfolded: `(name, value)` with the value's leading space trimmed.
pub fn fields(header: &[u8]) -> Vec<(&[u8], Vec<u8>)> {
    let mut out: Vec<(&[u8], Vec<u8>)> = Vec::new();
    for line in header.split(|&c| c == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some((_, v)) = out.last_mut() {
                v.extend_from_slice(line);
            }
            continue;
        }
        if let Some(colon) = memchr(b':', line) {
            let name = trim(&line[..colon]);
            let value = trim(&line[colon + 1..]).to_vec();
            out.push((name, value));
        }
    }
    out
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

/// The first field named `name` (any letter case).
pub fn field<'h>(fields: &'h [(&[u8], Vec<u8>)], name: &str) -> Option<&'h [u8]> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| v.as_slice())
}

/// Parses `raw` as a message (the root entity).
pub fn parse(raw: &[u8]) -> Part<'_> {
    parse_entity(raw, ("text", "plain"), 0)
}

fn parse_entity<'a>(raw: &'a [u8], default: (&str, &str), depth: usize) -> Part<'a> {
    let (header, body) = split_header(raw);
    let f = fields(header);
    let (mime_type, params) = match field(&f, "content-type").and_then(content_type) {
        Some(ct) => ct,
        None => (
            (default.0.to_owned(), default.1.to_owned()),
            if default.0 == "text" {
                vec![("charset".to_owned(), "us-ascii".to_owned())]
            } else {
                Vec::new()
            },
        ),
    };
    let kind = if depth >= MAX_DEPTH {
        Kind::Leaf
    } else if mime_type.0 == "multipart" {
        match params.iter().find(|(n, _)| n == "boundary") {
            Some((_, boundary)) if !boundary.is_empty() => {
                let child_default = if mime_type.1 == "digest" {
                    ("message", "rfc822")
                } else {
                    ("text", "plain")
                };
                Kind::Multipart(
                    split_multipart(body, boundary.as_bytes())
                        .into_iter()
                        .map(|p| parse_entity(p, child_default, depth + 1))
                        .collect(),
                )
            }
            _ => Kind::Multipart(Vec::new()),
        }
    } else if mime_type.0 == "message" && (mime_type.1 == "rfc822" || mime_type.1 == "global") {
        Kind::Message(Box::new(parse_entity(body, ("text", "plain"), depth + 1)))
    } else {
        Kind::Leaf
    };
    Part {
        header,
        body,
        mime_type,
        params,
        kind,
    }
}

/// The body parts of a multipart body (RFC 2046 §5.1.1): what lies between delimiter lines, the CRLF
/// before each delimiter belonging to the delimiter. Preamble and epilogue are dropped.
fn split_multipart<'a>(body: &'a [u8], boundary: &[u8]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    // Start of the current part's content, once the first delimiter was seen.
    let mut start: Option<usize> = None;
    let mut line_start = 0;
    while line_start <= body.len() && parts.len() < MAX_PARTS {
        let line_end = memchr(b'\n', &body[line_start..]).map(|o| line_start + o);
        let line = &body[line_start..line_end.unwrap_or(body.len())];
        let line_trimmed = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = line_trimmed
            .strip_prefix(b"--")
            .and_then(|r| r.strip_prefix(boundary))
        {
            let close = rest.starts_with(b"--");
            if close || trim(rest).is_empty() {
                if let Some(s) = start {
                    // The line break before the delimiter is the delimiter's.
                    let mut end = line_start;
                    if end > s && body[end - 1] == b'\n' {
                        end -= 1;
                        if end > s && body[end - 1] == b'\r' {
                            end -= 1;
                        }
                    }
                    parts.push(&body[s..end.max(s)]);
                }
                if close {
                    return parts;
                }
                start = Some(line_end.map_or(body.len(), |e| e + 1));
            }
        }
        match line_end {
            Some(e) => line_start = e + 1,
            None => break,
        }
    }
    // No close delimiter: the last part runs to the end.
    if let Some(s) = start {
        if s < body.len() {
            parts.push(&body[s..]);
        }
    }
    parts
}

/// Parameters of a MIME header: names lowercased, values unquoted.
type Params = Vec<(String, String)>;

/// `type/subtype; name=value; …` → lowercased type and subtype, parameters.
fn content_type(value: &[u8]) -> Option<((String, String), Params)> {
    let value = String::from_utf8_lossy(value);
    let mut items = split_params(&value);
    let first = items.next()?;
    let (t, s) = first.split_once('/')?;
    let (t, s) = (t.trim().to_ascii_lowercase(), s.trim().to_ascii_lowercase());
    if t.is_empty() || s.is_empty() || t.contains(char::is_whitespace) {
        return None;
    }
    Some(((t, s), params_of(items)))
}

/// `value; name=value; …` → the value lowercased and the parameters (Content-Disposition).
fn disposition(value: &[u8]) -> Option<(String, Vec<(String, String)>)> {
    let value = String::from_utf8_lossy(value);
    let mut items = split_params(&value);
    let first = items.next()?.trim().to_ascii_lowercase();
    if first.is_empty() {
        return None;
    }
    Some((first, params_of(items)))
}

fn params_of<'s>(items: impl Iterator<Item = &'s str>) -> Vec<(String, String)> {
    items
        .filter_map(|p| {
            let (n, v) = p.split_once('=')?;
            let n = n.trim().to_ascii_lowercase();
            let v = v.trim();
            let v = match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
                None => v.to_owned(),
            };
            (!n.is_empty()).then_some((n, v))
        })
        .collect()
}

/// Splits at `;` outside quoted strings, dropping `(comments)`.
fn split_params(value: &str) -> impl Iterator<Item = &str> {
    let mut pieces = Vec::new();
    let (mut quoted, mut escaped, mut start) = (false, false, 0);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => {
                pieces.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    pieces.push(&value[start..]);
    pieces
        .into_iter()
        .map(strip_comment)
        .filter(|p| !p.trim().is_empty())
}

fn strip_comment(s: &str) -> &str {
    // Only a trailing comment, the common case (`text/plain (plain text)`).
    match s.find('(') {
        Some(i) if !s[..i].contains('"') => &s[..i],
        _ => s,
    }
}

/// One step of a section path (RFC 3501 §6.4.5): the part `n` of `part`.
fn child<'p, 'a>(part: &'p Part<'a>, n: u32, top: bool) -> Option<&'p Part<'a>> {
    let i = usize::try_from(n).ok()?.checked_sub(1)?;
    match &part.kind {
        Kind::Multipart(children) => children.get(i),
        // A message/rfc822 part's numbers are those of the message it carries.
        Kind::Message(inner) if !top => match &inner.kind {
            Kind::Multipart(children) => children.get(i),
            _ => (i == 0).then_some(&**inner),
        },
        // A single-part message has only part 1: its body. A leaf part has no parts.
        _ => (top && i == 0).then_some(part),
    }
}

/// The part a section path names, from the message `root`.
pub fn find<'p, 'a>(root: &'p Part<'a>, path: &[u32]) -> Option<&'p Part<'a>> {
    let mut cur = root;
    for (depth, &n) in path.iter().enumerate() {
        cur = child(cur, n, depth == 0)?;
    }
    Some(cur)
}

/// The entity whose `HEADER`/`TEXT` a path names: the root for an empty path, else the message carried by
/// a message/rfc822 part (`None` for any other part).
pub fn message_at<'p, 'a>(root: &'p Part<'a>, path: &[u32]) -> Option<&'p Part<'a>> {
    if path.is_empty() {
        return Some(root);
    }
    match &find(root, path)?.kind {
        Kind::Message(inner) => Some(inner),
        _ => None,
    }
}

/// The header block restricted to (or without) the named fields, with the ending blank line
/// (`HEADER.FIELDS`, `HEADER.FIELDS.NOT`).
pub fn header_fields(header: &[u8], names: &[Vec<u8>], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut keep = false;
    for line in header.split_inclusive(|&c| c == b'\n') {
        let bare = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(line);
        if bare.is_empty() {
            break;
        }
        if bare[0] != b' ' && bare[0] != b'\t' {
            let name = memchr(b':', bare).map(|c| trim(&bare[..c]));
            let listed = name.is_some_and(|n| names.iter().any(|w| w.eq_ignore_ascii_case(n)));
            keep = name.is_some() && (listed != not);
        }
        if keep {
            out.extend_from_slice(line);
            if !line.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Lines in a body, as `BODYSTRUCTURE` counts them for text parts.
fn lines(body: &[u8]) -> usize {
    let n = body.iter().filter(|&&c| c == b'\n').count();
    if body.last().is_some_and(|&c| c != b'\n') {
        n + 1
    } else {
        n
    }
}

fn write_params(out: &mut Vec<u8>, params: &[(String, String)]) {
    if params.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (i, (n, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        quoted_or_literal(out, n.to_ascii_uppercase().as_bytes());
        out.push(b' ');
        quoted_or_literal(out, v.as_bytes());
    }
    out.push(b')');
}

/// `BODYSTRUCTURE` (`extended`) or `BODY` of an entity.
pub fn body_structure(out: &mut Vec<u8>, part: &Part<'_>, extended: bool) {
    let f = fields(part.header);
    out.push(b'(');
    match &part.kind {
        Kind::Multipart(children) if !children.is_empty() => {
            for c in children {
                body_structure(out, c, extended);
            }
            out.push(b' ');
            quoted_or_literal(out, part.mime_type.1.to_ascii_uppercase().as_bytes());
            if extended {
                out.push(b' ');
                write_params(out, &part.params);
                extension_tail(out, &f);
            }
        }
        _ => {
            // A multipart without parts is described as an empty text part, as other servers do; every
            // client can show that.
            let (t, s, params): (&str, &str, &[(String, String)]) = match &part.kind {
                Kind::Multipart(_) => ("text", "plain", &[]),
                _ => (&part.mime_type.0, &part.mime_type.1, &part.params),
            };
            quoted_or_literal(out, t.to_ascii_uppercase().as_bytes());
            out.push(b' ');
            quoted_or_literal(out, s.to_ascii_uppercase().as_bytes());
            out.push(b' ');
            write_params(out, params);
            out.push(b' ');
            nstring(out, field(&f, "content-id"));
            out.push(b' ');
            nstring(out, field(&f, "content-description"));
            out.push(b' ');
            let encoding = field(&f, "content-transfer-encoding")
                .map(|e| String::from_utf8_lossy(e).trim().to_ascii_uppercase())
                .unwrap_or_else(|| "7BIT".to_owned());
            quoted_or_literal(out, encoding.as_bytes());
            out.extend_from_slice(format!(" {}", part.body.len()).as_bytes());
            match &part.kind {
                Kind::Message(inner) => {
                    out.push(b' ');
                    envelope(out, inner.header);
                    out.push(b' ');
                    body_structure(out, inner, extended);
                    out.extend_from_slice(format!(" {}", lines(part.body)).as_bytes());
                }
                _ if t == "text" => {
                    out.extend_from_slice(format!(" {}", lines(part.body)).as_bytes());
                }
                _ => {}
            }
            if extended {
                out.push(b' ');
                nstring(out, field(&f, "content-md5"));
                extension_tail(out, &f);
            }
        }
    }
    out.push(b')');
}

/// Disposition, language and location: the extension data every part type ends with.
fn extension_tail(out: &mut Vec<u8>, f: &[(&[u8], Vec<u8>)]) {
    out.push(b' ');
    match field(f, "content-disposition").and_then(disposition) {
        Some((d, params)) => {
            out.push(b'(');
            quoted_or_literal(out, d.to_ascii_uppercase().as_bytes());
            out.push(b' ');
            write_params(out, &params);
            out.push(b')');
        }
        None => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    match field(f, "content-language") {
        Some(l) => {
            let langs: Vec<&[u8]> = l
                .split(|&c| c == b',')
                .map(trim)
                .filter(|l| !l.is_empty())
                .collect();
            if langs.is_empty() {
                out.extend_from_slice(b"NIL");
            } else {
                out.push(b'(');
                for (i, l) in langs.iter().enumerate() {
                    if i > 0 {
                        out.push(b' ');
                    }
                    quoted_or_literal(out, l);
                }
                out.push(b')');
            }
        }
        None => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    nstring(out, field(f, "content-location"));
}

/// An address of an `ENVELOPE` list: `(name adl mailbox host)`; group markers have no host.
#[derive(Debug, PartialEq, Eq)]
pub struct Address {
    pub name: Option<Vec<u8>>,
    pub mailbox: Option<Vec<u8>>,
    pub host: Option<Vec<u8>>,
}

/// Parses an address-list header (RFC 5322 §3.4) the forgiving way: display names, angle addresses,
/// bare addresses, quoted strings, comments and groups (`name: a, b;` as RFC 3501's group markers).
pub fn addresses(value: &[u8]) -> Vec<Address> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let (mut quoted, mut escaped, mut angle, mut comment) = (false, false, false, 0u32);
    let mut in_group = false;
    for &c in value {
        if escaped {
            escaped = false;
            current.push(c);
            continue;
        }
        match c {
            b'\\' if quoted || comment > 0 => {
                escaped = true;
                current.push(c);
            }
            b'"' if comment == 0 => {
                quoted = !quoted;
                current.push(c);
            }
            b'(' if !quoted => comment += 1,
            b')' if !quoted && comment > 0 => comment -= 1,
            _ if comment > 0 => {}
            b'<' if !quoted => {
                angle = true;
                current.push(c);
            }
            b'>' if !quoted => {
                angle = false;
                current.push(c);
            }
            b':' if !quoted && !angle && !in_group => {
                in_group = true;
                out.push(Address {
                    name: None,
                    mailbox: Some(unquote(trim(&current))),
                    host: None,
                });
                current.clear();
            }
            b',' if !quoted && !angle => {
                push_address(&mut out, &current);
                current.clear();
            }
            b';' if !quoted && !angle && in_group => {
                push_address(&mut out, &current);
                current.clear();
                in_group = false;
                out.push(Address {
                    name: None,
                    mailbox: None,
                    host: None,
                });
            }
            _ => current.push(c),
        }
    }
    push_address(&mut out, &current);
    if in_group {
        out.push(Address {
            name: None,
            mailbox: None,
            host: None,
        });
    }
    out
}

fn unquote(s: &[u8]) -> Vec<u8> {
    let inner = s
        .strip_prefix(b"\"")
        .and_then(|s| s.strip_suffix(b"\""))
        .unwrap_or(s);
    let mut out = Vec::with_capacity(inner.len());
    let mut escaped = false;
    for &c in inner {
        if c == b'\\' && !escaped {
            escaped = true;
            continue;
        }
        escaped = false;
        out.push(c);
    }
    out
}

fn push_address(out: &mut Vec<Address>, text: &[u8]) {
    let text = trim(text);
    if text.is_empty() {
        return;
    }
    let (name, spec) = match (memchr(b'<', text), text.iter().rposition(|&c| c == b'>')) {
        (Some(open), Some(close)) if close > open => {
            let name = trim(&text[..open]);
            let mut spec = &text[open + 1..close];
            // An obsolete route (`<@a,@b:user@host>`) is dropped, as RFC 3501 allows.
            if let Some(colon) = memchr(b':', spec) {
                spec = &spec[colon + 1..];
            }
            ((!name.is_empty()).then(|| unquote(name)), trim(spec))
        }
        _ => (None, text),
    };
    let (mailbox, host) = match spec.iter().rposition(|&c| c == b'@') {
        Some(at) => (unquote(trim(&spec[..at])), trim(&spec[at + 1..]).to_vec()),
        None => (unquote(spec), Vec::new()),
    };
    out.push(Address {
        name,
        mailbox: Some(mailbox),
        host: Some(host),
    });
}

fn address_list(out: &mut Vec<u8>, value: Option<&[u8]>) {
    let list = value.map(addresses).unwrap_or_default();
    if list.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for a in &list {
        out.push(b'(');
        nstring(out, a.name.as_deref());
        out.extend_from_slice(b" NIL ");
        nstring(out, a.mailbox.as_deref());
        out.push(b' ');
        nstring(out, a.host.as_deref());
        out.push(b')');
    }
    out.push(b')');
}

/// `ENVELOPE` of a message header block (RFC 3501 §7.4.2): header values as they are, `Sender` and
/// `Reply-To` defaulting to `From`.
pub fn envelope(out: &mut Vec<u8>, header: &[u8]) {
    let f = fields(header);
    let from = field(&f, "from");
    out.push(b'(');
    nstring(out, field(&f, "date"));
    out.push(b' ');
    nstring(out, field(&f, "subject"));
    out.push(b' ');
    address_list(out, from);
    out.push(b' ');
    address_list(out, field(&f, "sender").or(from));
    out.push(b' ');
    address_list(out, field(&f, "reply-to").or(from));
    for name in ["to", "cc", "bcc"] {
        out.push(b' ');
        address_list(out, field(&f, name));
    }
    out.push(b' ');
    nstring(out, field(&f, "in-reply-to"));
    out.push(b' ');
    nstring(out, field(&f, "message-id"));
    out.push(b')');
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const NESTED: &[u8] = b"From: a@example.com\r\n\
Subject: nested\r\n\
Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
\r\n\
preamble\r\n\
--outer\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
first\r\n\
--outer\r\n\
Content-Type: multipart/alternative; boundary=inner\r\n\
\r\n\
--inner\r\n\
\r\n\
plain\r\n\
--inner\r\n\
Content-Type: text/html\r\n\
\r\n\
<b>html</b>\r\n\
--inner--\r\n\
--outer\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: b@example.com\r\n\
Subject: inside\r\n\
Content-Type: multipart/mixed; boundary=x\r\n\
\r\n\
--x\r\n\
\r\n\
inner one\r\n\
--x\r\n\
Content-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
AAEC\r\n\
--x--\r\n\
--outer--\r\n\
epilogue\r\n";

    fn section(raw: &[u8], path: &[u32]) -> Vec<u8> {
        let root = parse(raw);
        find(&root, path).unwrap().body.to_vec()
    }

    #[test]
    fn section_numbers_follow_rfc3501() {
        assert_eq!(section(NESTED, &[1]), b"first");
        assert_eq!(section(NESTED, &[2, 1]), b"plain");
        assert_eq!(section(NESTED, &[2, 2]), b"<b>html</b>");
        // Part 3 is the message/rfc822 part: its body is the whole carried message.
        assert!(section(NESTED, &[3]).starts_with(b"From: b@example.com\r\n"));
        assert!(section(NESTED, &[3]).ends_with(b"--x--"));
        // 3.1 and 3.2 are the parts of the carried message's multipart body.
        assert_eq!(section(NESTED, &[3, 1]), b"inner one");
        assert_eq!(section(NESTED, &[3, 2]), b"AAEC");
        let root = parse(NESTED);
        assert!(find(&root, &[4]).is_none());
        assert!(find(&root, &[1, 1]).is_none());
        let inner = message_at(&root, &[3]).unwrap();
        assert_eq!(
            inner.header,
            &b"From: b@example.com\r\nSubject: inside\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n"[..]
        );
        assert!(message_at(&root, &[1]).is_none());
        assert_eq!(
            find(&root, &[2, 2]).unwrap().header,
            b"Content-Type: text/html\r\n\r\n"
        );
    }

    #[test]
    fn single_part_message_has_part_one() {
        let raw = b"Subject: x\r\n\r\nhello\r\n";
        assert_eq!(section(raw, &[1]), b"hello\r\n");
        assert!(find(&parse(raw), &[2]).is_none());
        // A message/rfc822 part that carries a single-part message: 1.1 is that message's body.
        let raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\nbody\r\n--b--\r\n";
        assert_eq!(section(raw, &[1, 1]), b"body");
    }

    #[test]
    fn bare_lf_messages_parse() {
        let raw = b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--b\n\ntwo\n--b--\n";
        assert_eq!(section(raw, &[1]), b"one");
        assert_eq!(section(raw, &[2]), b"two");
    }

    #[test]
    fn bodystructure_of_nested_message() {
        let root = parse(NESTED);
        let mut out = Vec::new();
        body_structure(&mut out, &root, false);
        let s = String::from_utf8(out).unwrap();
        assert_eq!(
            s,
            "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" 5 1)\
((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 5 1)\
(\"TEXT\" \"HTML\" NIL NIL NIL \"7BIT\" 11 1) \"ALTERNATIVE\")\
(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 194 \
(NIL \"inside\" ((NIL NIL \"b\" \"example.com\")) ((NIL NIL \"b\" \"example.com\")) ((NIL NIL \"b\" \"example.com\")) NIL NIL NIL NIL NIL) \
((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 9 1)\
(\"APPLICATION\" \"OCTET-STREAM\" NIL NIL NIL \"BASE64\" 4) \"MIXED\") 13) \"MIXED\")"
        );
        let mut ext = Vec::new();
        body_structure(&mut ext, &root, true);
        let ext = String::from_utf8(ext).unwrap();
        assert!(
            ext.ends_with("\"MIXED\" (\"BOUNDARY\" \"outer\") NIL NIL NIL)"),
            "{ext}"
        );
    }

    #[test]
    fn envelope_addresses_and_groups() {
        let header = b"Date: Sun, 9 Jul 1995 11:13:57 +0200\r\n\
From: \"Semenov, Yuri\" <ysemenov@cernvm.cern.ch>\r\n\
To: undisclosed-recipients:;\r\n\
Cc: a@b.example (Comment), Bob <bob@c.example>\r\n\
Subject: ni-i-ni\r\n\
Message-ID: <x@y>\r\n\r\n";
        let mut out = Vec::new();
        envelope(&mut out, header);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "(\"Sun, 9 Jul 1995 11:13:57 +0200\" \"ni-i-ni\" \
((\"Semenov, Yuri\" NIL \"ysemenov\" \"cernvm.cern.ch\")) \
((\"Semenov, Yuri\" NIL \"ysemenov\" \"cernvm.cern.ch\")) \
((\"Semenov, Yuri\" NIL \"ysemenov\" \"cernvm.cern.ch\")) \
((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) \
((NIL NIL \"a\" \"b.example\")(\"Bob\" NIL \"bob\" \"c.example\")) NIL NIL \"<x@y>\")"
        );
    }

    #[test]
    fn header_fields_select_and_exclude() {
        let header = b"Subject: a\r\n b\r\nFrom: x\r\nTo: y\r\n\r\n";
        assert_eq!(
            header_fields(header, &[b"subject".to_vec()], false),
            b"Subject: a\r\n b\r\n\r\n"
        );
        assert_eq!(
            header_fields(header, &[b"SUBJECT".to_vec()], true),
            b"From: x\r\nTo: y\r\n\r\n"
        );
    }

    #[test]
    fn garbage_never_panics() {
        for raw in [
            &b""[..],
            b"\r\n",
            b"Content-Type: multipart/mixed; boundary=\r\n\r\n--\r\n",
            b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a--",
            b"Content-Type: message/rfc822\r\n\r\n",
            b"From: <<<>>>,,,:;;\"\r\n\r\n",
        ] {
            let root = parse(raw);
            let mut out = Vec::new();
            body_structure(&mut out, &root, true);
            envelope(&mut out, root.header);
            let _ = find(&root, &[1, 1, 1]);
        }
    }
}
