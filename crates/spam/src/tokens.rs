//! Tokens for the classifier, taken from a parsed message after MIME decoding (quoted-printable, base64,
//! charsets, RFC 2047 headers all undone by mail-parser), so the same word counts the same whatever
//! encoding a sender hid it in.
//!
//! Header tokens carry the field's name as a prefix (`subject:free` is not `free` in the body): where a
//! word appears is itself evidence. HTML is reduced to its text, plus a few tokens for the markup that
//! spam favours (colours, fonts, images) and the hosts its links point to.

use mail_parser::{HeaderName, HeaderValue, Message, MimeHeaders, PartType};
use std::collections::BTreeSet;

/// Shortest and longest word kept, in characters. Longer runs (base64 left in the text, hashes) become a
/// `skip:` token of their first letter and length band, as in Graham's and SpamBayes' tokenizers.
const MIN_WORD: usize = 3;
const MAX_WORD: usize = 24;

/// At most this many bytes of text are tokenized per part: the verdict on a 20 MB message is decided by
/// its first pages, and the cost of scoring stays bounded.
const MAX_TEXT: usize = 64 * 1024;

/// The distinct tokens of a message, sorted.
pub fn tokenize(msg: &Message<'_>) -> Vec<String> {
    let mut out = BTreeSet::new();
    headers(msg, &mut out);
    for part in &msg.parts {
        match &part.body {
            PartType::Text(text) => words(clip(text), "", &mut out),
            PartType::Html(html) => tokenize_html(clip(html), &mut out),
            PartType::Binary(_) | PartType::InlineBinary(_) => {
                if let Some(ct) = part.content_type() {
                    out.insert(format!(
                        "attach:{}/{}",
                        ct.c_type.to_ascii_lowercase(),
                        ct.c_subtype.as_deref().unwrap_or("").to_ascii_lowercase()
                    ));
                }
                if let Some(ext) = part
                    .attachment_name()
                    .and_then(|n| n.rsplit_once('.'))
                    .map(|(_, e)| e.to_ascii_lowercase())
                {
                    if ext.len() <= 5 {
                        out.insert(format!("attach-ext:{ext}"));
                    }
                }
            }
            PartType::Message(_) | PartType::Multipart(_) => {}
        }
    }
    out.into_iter().collect()
}

/// The first [`MAX_TEXT`] bytes of `s`, cut on a character boundary.
fn clip(s: &str) -> &str {
    clip_to(s, MAX_TEXT)
}

/// The first `max` bytes of `s`, cut on a character boundary.
fn clip_to(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn headers(msg: &Message<'_>, out: &mut BTreeSet<String>) {
    if let Some(subject) = msg.subject() {
        words(subject, "subject:", out);
        // Shouting and exclamation in a subject are signs of their own.
        if subject.contains("!!") {
            out.insert("subject:!!".to_owned());
        }
        if subject.contains('$') {
            out.insert("subject:$".to_owned());
        }
    }
    for (prefix, address) in [
        ("from:", msg.from()),
        ("reply-to:", msg.reply_to()),
        ("to:", msg.to()),
        ("cc:", msg.cc()),
    ] {
        let Some(address) = address else {
            out.insert(format!("{prefix}none"));
            continue;
        };
        for a in address.iter() {
            if let Some(name) = a.name.as_deref() {
                words(name, prefix, out);
            }
            if let Some(email) = a.address.as_deref() {
                let email = email.to_lowercase();
                match email.rsplit_once('@') {
                    Some((_, domain)) => {
                        out.insert(format!("{prefix}@{domain}"));
                    }
                    None => {
                        out.insert(format!("{prefix}no-domain"));
                    }
                }
                out.insert(format!("{prefix}addr:{email}"));
            }
        }
    }
    // Which fields a message has, and the software that wrote it, tell bulk mailers from people's clients.
    let raw = msg.raw_message();
    let mut received = 0;
    for header in msg.headers() {
        let name = header.name.as_str().to_ascii_lowercase();
        if name.starts_with("x-") || name.starts_with("list-") {
            out.insert(format!("header:{name}"));
        }
        if name == "received" && received < MAX_RECEIVED {
            received += 1;
            let start = header.offset_start as usize;
            let end = (header.offset_end as usize).min(raw.len());
            if let Some(text) = raw.get(start..end) {
                received_tokens(&String::from_utf8_lossy(clip_bytes(text, 1024)), out);
            }
        }
        if matches!(header.name, HeaderName::Other(_))
            && (name == "x-mailer" || name == "user-agent")
        {
            if let HeaderValue::Text(t) = &header.value {
                words(t, "mailer:", out);
            }
        }
    }
    if let Some(ct) = msg.content_type() {
        out.insert(format!(
            "content-type:{}/{}",
            ct.c_type.to_ascii_lowercase(),
            ct.c_subtype.as_deref().unwrap_or("").to_ascii_lowercase()
        ));
        if let Some(cs) = ct.attribute("charset") {
            out.insert(format!("charset:{}", cs.to_ascii_lowercase()));
        }
    }
    if let Some(id) = msg.message_id() {
        if let Some((_, domain)) = id.rsplit_once('@') {
            out.insert(format!("message-id:@{}", domain.to_ascii_lowercase()));
        }
    } else {
        out.insert("message-id:none".to_owned());
    }
}

/// Received fields looked at, from the top (the hops nearest the recipient, which a sender forges least).
const MAX_RECEIVED: usize = 6;

/// The first `max` bytes of `b`.
fn clip_bytes(b: &[u8], max: usize) -> &[u8] {
    &b[..b.len().min(max)]
}

/// `received:` tokens for the hosts a `Received` field names (each with its parent domains) and the
/// networks of its IPv4 addresses (/16 and /24): the relays a message came through.
fn received_tokens(text: &str, out: &mut BTreeSet<String>) {
    for word in text.split(|c: char| c.is_whitespace() || "()[];,<>=\"'".contains(c)) {
        let w = word.trim_matches('.').to_ascii_lowercase();
        if w.len() < 4 || w.len() > 80 || !w.contains('.') {
            continue;
        }
        let octets: Vec<&str> = w.split('.').collect();
        if octets.len() == 4
            && octets
                .iter()
                .all(|o| !o.is_empty() && o.len() <= 3 && o.bytes().all(|b| b.is_ascii_digit()))
        {
            out.insert(format!("received:ip:{}.{}", octets[0], octets[1]));
            out.insert(format!(
                "received:ip:{}.{}.{}",
                octets[0], octets[1], octets[2]
            ));
        } else if w
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            && w.bytes().any(|b| b.is_ascii_alphabetic())
            && !w.contains('@')
        {
            let labels: Vec<&str> = w.split('.').filter(|l| !l.is_empty()).collect();
            for start in 0..labels.len().saturating_sub(1) {
                out.insert(format!("received:{}", labels[start..].join(".")));
            }
        }
    }
}

/// Words of `text`, lowercased, with `prefix`, and each pair of neighbouring words; URLs become their
/// host's labels.
pub(crate) fn words(text: &str, prefix: &str, out: &mut BTreeSet<String>) {
    // The previous word, for bigrams ("click here" says more than "click" and "here").
    let mut prev: Option<String> = None;
    for raw in text.split_whitespace() {
        // A word as written with its money, shouting and masking marks (`$$$`, `free!`, `c*ck`, `100%`),
        // which the split below would lose.
        if raw.len() <= 20
            && raw.chars().any(|c| c.is_alphanumeric())
            && raw.chars().any(|c| "!$%*".contains(c))
        {
            out.insert(format!("{prefix}p:{}", raw.to_lowercase()));
        }
        if let Some(rest) = raw
            .strip_prefix("http://")
            .or_else(|| raw.strip_prefix("https://"))
            .or_else(|| raw.strip_prefix("www."))
        {
            url(rest, out);
            continue;
        }
        for word in raw.split(|c: char| !(c.is_alphanumeric() || c == '$' || c == '\'' || c == '-'))
        {
            let word = word.trim_matches(|c: char| c == '\'' || c == '-');
            let n = word.chars().count();
            if n < MIN_WORD {
                continue;
            }
            if n > MAX_WORD {
                let first = word.chars().next().map(|c| c.to_lowercase().to_string());
                out.insert(format!(
                    "{prefix}skip:{} {}",
                    first.unwrap_or_default(),
                    n / 10 * 10
                ));
                continue;
            }
            // Pure numbers are mostly dates, prices and IDs that never repeat; keep only short ones.
            if word.chars().all(|c| c.is_ascii_digit()) && n > 5 {
                continue;
            }
            let w = word.to_lowercase();
            if let Some(p) = &prev {
                out.insert(format!("{prefix}{p} {w}"));
            }
            out.insert(format!("{prefix}{w}"));
            prev = Some(w);
        }
    }
}

/// `url:` tokens for a link's host and its parent domains (`url:www.example.com`, `url:example.com`).
fn url(rest: &str, out: &mut BTreeSet<String>) {
    let host = rest
        .split(['/', '?', '#', ':', '"', '\'', '>', ')'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    if host.is_empty() {
        return;
    }
    let labels: Vec<&str> = host.split('.').filter(|l| !l.is_empty()).collect();
    for start in 0..labels.len().saturating_sub(1) {
        out.insert(format!("url:{}", labels[start..].join(".")));
    }
    if host.chars().all(|c| c.is_ascii_digit() || c == '.') {
        // A link to a bare IP address is rare in people's mail.
        out.insert("url:ip-address".to_owned());
    }
}

/// Text and link tokens of an HTML part, plus `html:` tokens for colour, font and image markup.
fn tokenize_html(html: &str, out: &mut BTreeSet<String>) {
    let mut text = String::with_capacity(html.len() / 2);
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        text.push_str(&rest[..open]);
        text.push(' ');
        let after = &rest[open + 1..];
        let close = after.find('>').unwrap_or(after.len());
        tag(&after[..close], out);
        rest = after.get(close + 1..).unwrap_or("");
    }
    text.push_str(rest);
    words(&decode_entities(&text), "", out);
}

/// Tokens for one tag's markup (the part between `<` and `>`).
fn tag(inner: &str, out: &mut BTreeSet<String>) {
    let lower = inner.to_ascii_lowercase();
    let name: String = lower
        .trim_start_matches('/')
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    if matches!(
        name.as_str(),
        "font" | "img" | "table" | "center" | "form" | "script" | "iframe"
    ) {
        out.insert(format!("html:{name}"));
    }
    if lower.contains("color") {
        out.insert("html:color".to_owned());
    }
    for attr in ["href=", "src="] {
        if let Some(i) = lower.find(attr) {
            let v = lower[i + attr.len()..].trim_start_matches(['"', '\'']);
            if let Some(rest) = v
                .strip_prefix("http://")
                .or_else(|| v.strip_prefix("https://"))
            {
                url(rest, out);
            } else if v.starts_with("mailto:") {
                out.insert("html:mailto".to_owned());
            }
        }
    }
}

/// The few entities that split or hide words in spam (`fr&#101;e`, `&nbsp;`).
fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let end = after.find(';').filter(|&e| e <= 8);
        let decoded = end.and_then(|e| {
            let ent = &after[..e];
            match ent {
                "nbsp" => Some(' '),
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                _ => ent
                    .strip_prefix("#x")
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| ent.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            }
        });
        match (decoded, end) {
            (Some(c), Some(e)) => {
                out.push(c);
                rest = &after[e + 1..];
            }
            _ => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use mail_parser::MessageParser;

    fn toks(raw: &[u8]) -> Vec<String> {
        tokenize(&MessageParser::default().parse(raw).unwrap())
    }

    #[test]
    fn headers_are_prefixed_and_bodies_decoded() {
        let t = toks(
            b"From: Deal Maker <deals@Promo.biz>\r\nSubject: =?utf-8?q?FREE_offer?=\r\n\
              Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
              Claim your fr=65e gift at http://www.promo.biz/x?y=1 now\r\n",
        );
        for want in [
            "subject:free",
            "subject:offer",
            "from:deal",
            "from:@promo.biz",
            "from:addr:deals@promo.biz",
            "free",
            "gift",
            "claim",
            "url:www.promo.biz",
            "url:promo.biz",
            "to:none",
            "message-id:none",
            "charset:utf-8",
        ] {
            assert!(t.iter().any(|x| x == want), "missing {want} in {t:?}");
        }
        assert!(!t.iter().any(|x| x == "at"), "short words dropped");
    }

    #[test]
    fn html_is_text_plus_markup_tokens() {
        let t = toks(
            b"Subject: x\r\nContent-Type: text/html\r\n\r\n<html><font color=\"#ff0000\">Fr&#101;e \
              money</font><img src=\"http://10.1.2.3/a.gif\"><a href='https://click.example.net/'>x</a></html>",
        );
        for want in [
            "html:font",
            "html:color",
            "html:img",
            "free",
            "money",
            "url:ip-address",
            "url:click.example.net",
            "url:example.net",
            "content-type:text/html",
        ] {
            assert!(t.iter().any(|x| x == want), "missing {want} in {t:?}");
        }
        assert!(!t.iter().any(|x| x.contains('<')));
    }

    #[test]
    fn cyrillic_words_and_long_runs() {
        let mut out = BTreeSet::new();
        words(
            "Бесплатный хостинг aGVsbG8gd29ybGQgaGVsbG8gd29ybGQ= 20261129103000",
            "",
            &mut out,
        );
        assert!(out.contains("бесплатный"));
        assert!(out.contains("хостинг"));
        assert!(out.contains("skip:a 30"));
        assert!(!out.iter().any(|t| t.starts_with("2026")));
    }

    #[test]
    fn attachments_give_type_and_extension() {
        let t = toks(
            b"Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
              Content-Type: text/plain\r\n\r\nsee attached\r\n--b\r\n\
              Content-Type: application/octet-stream; name=\"invoice.exe\"\r\n\
              Content-Disposition: attachment; filename=\"invoice.exe\"\r\n\
              Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--b--\r\n",
        );
        assert!(
            t.contains(&"attach:application/octet-stream".to_owned()),
            "{t:?}"
        );
        assert!(t.contains(&"attach-ext:exe".to_owned()), "{t:?}");
    }

    #[test]
    fn bigrams_marks_and_relays() {
        let t = toks(
            b"Received: from mx.Relay.example (mx.relay.example [192.0.2.17]) by us.test\r\n\
              Subject: x\r\n\r\nClick here for FREE!! c*ck $$$ now\r\n",
        );
        for want in [
            "click here",
            "here for",
            "p:free!!",
            "p:c*ck",
            "received:mx.relay.example",
            "received:relay.example",
            "received:ip:192.0",
            "received:ip:192.0.2",
        ] {
            assert!(t.iter().any(|x| x == want), "missing {want} in {t:?}");
        }
        assert!(!t.iter().any(|x| x.starts_with("received:192")));
    }

    #[test]
    fn entities() {
        assert_eq!(
            decode_entities("a&nbsp;b&#65;&#x42;&bogus;&"),
            "a bAB&bogus;&"
        );
    }
}
