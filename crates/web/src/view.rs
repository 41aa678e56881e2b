//! A stored message as the reading page shows it, made on the blocking pool from the raw bytes by
//! mail-parser: its headers, its body (plain text trimmed to `max_text_bytes`, or HTML trimmed and
//! sanitised), and one page of its attachments. Whatever the bytes are (broken MIME, a 50 MB message,
//! a thousand parts), what comes out is bounded by the configured limits, and the page built from it
//! is small.

use mail_parser::{Address, Message, MessageParser, MimeHeaders};

/// One address as shown: `Name <addr>` or the address alone.
pub fn show_address(a: Option<&Address<'_>>) -> String {
    let Some(a) = a else { return String::new() };
    a.iter()
        .map(|addr| match (addr.name(), addr.address()) {
            (Some(n), Some(e)) if !n.is_empty() => format!("{n} <{e}>"),
            (_, Some(e)) => e.to_owned(),
            (Some(n), None) => n.to_owned(),
            (None, None) => String::new(),
        })
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The bare addresses of a header.
pub fn addresses(a: Option<&Address<'_>>) -> Vec<String> {
    a.map(|a| {
        a.iter()
            .filter_map(|x| x.address().map(str::to_owned))
            .collect()
    })
    .unwrap_or_default()
}

/// The body as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Plain text; `truncated` when the message has more than what is shown.
    Text { text: String, truncated: bool },
    /// The message has HTML: shown in its sandboxed frame (`remote_images`: it refers to some).
    Html {
        remote_images: bool,
        truncated: bool,
    },
    /// Nothing readable (an empty body, or one mail-parser could not make out).
    Empty,
}

/// One attachment listed on the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Its position among the message's attachments (what the download URL names).
    pub index: usize,
    pub name: String,
    pub content_type: String,
    pub size: usize,
}

/// What the reading page needs of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageView {
    pub from: String,
    pub to: String,
    pub cc: String,
    pub subject: String,
    pub body: Body,
    /// This page of attachments.
    pub attachments: Vec<Attachment>,
    /// All of them.
    pub attachment_count: usize,
}

/// The limits a view is made under.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_text_bytes: usize,
    pub max_html_bytes: usize,
    pub attachments_per_page: usize,
}

pub fn parse(raw: &[u8]) -> Option<Message<'_>> {
    MessageParser::default().parse(raw)
}

/// `s` cut to at most `max` bytes at a character boundary; whether anything was cut.
pub fn trim(s: &str, max: usize) -> (&str, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (&s[..end], true)
}

/// The view of `raw` with attachments from page `page` (1-based).
pub fn message_view(raw: &[u8], limits: Limits, page: usize) -> MessageView {
    let Some(m) = parse(raw) else {
        // mail-parser gives up only on input without any header; show the bytes as text.
        let text = String::from_utf8_lossy(raw);
        let (t, truncated) = trim(&text, limits.max_text_bytes);
        return MessageView {
            from: String::new(),
            to: String::new(),
            cc: String::new(),
            subject: String::new(),
            body: Body::Text {
                text: t.to_owned(),
                truncated,
            },
            attachments: Vec::new(),
            attachment_count: 0,
        };
    };
    let body = if m.html_body_count() > 0 && m.html_part(0).is_some_and(|p| p.is_text_html()) {
        let html = m.body_html(0).unwrap_or_default();
        let (h, truncated) = trim(&html, limits.max_html_bytes);
        Body::Html {
            remote_images: crate::sanitize::has_remote_images(h),
            truncated,
        }
    } else {
        match m.body_text(0) {
            Some(t) => {
                let (t, truncated) = trim(&t, limits.max_text_bytes);
                Body::Text {
                    text: t.to_owned(),
                    truncated,
                }
            }
            None => Body::Empty,
        }
    };
    let per_page = limits.attachments_per_page.max(1);
    let skip = page.saturating_sub(1).saturating_mul(per_page);
    let attachments = m
        .attachments()
        .enumerate()
        .skip(skip)
        .take(per_page)
        .map(|(index, p)| Attachment {
            index,
            name: attachment_name(p, index),
            content_type: content_type(p),
            size: p.contents().len(),
        })
        .collect();
    MessageView {
        from: show_address(m.from()),
        to: show_address(m.to()),
        cc: show_address(m.cc()),
        subject: m.subject().unwrap_or_default().to_owned(),
        body,
        attachments,
        attachment_count: m.attachment_count(),
    }
}

/// The sanitised HTML body of `raw` (trimmed to `max_html_bytes` first), `None` if it has none.
pub fn html_body(raw: &[u8], max_html_bytes: usize, remote_images: bool) -> Option<String> {
    let m = parse(raw)?;
    if m.html_body_count() == 0 || !m.html_part(0).is_some_and(|p| p.is_text_html()) {
        return None;
    }
    let html = m.body_html(0)?;
    let (h, _) = trim(&html, max_html_bytes);
    Some(crate::sanitize::clean(h, remote_images))
}

/// The name an attachment is offered under.
pub fn attachment_name(p: &mail_parser::MessagePart<'_>, index: usize) -> String {
    p.attachment_name()
        .map(str::to_owned)
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| format!("attachment-{}", index + 1))
}

/// `type/subtype` of a part (`application/octet-stream` when it has none).
pub fn content_type(p: &mail_parser::MessagePart<'_>) -> String {
    match p.content_type() {
        Some(ct) => match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub),
            None => ct.ctype().to_owned(),
        },
        None => "application/octet-stream".to_owned(),
    }
}

/// Attachment `index` of `raw`: name, type and bytes.
pub fn attachment(raw: &[u8], index: usize) -> Option<(String, String, Vec<u8>)> {
    let m = parse(raw)?;
    let p = m.attachments().nth(index)?;
    Some((
        attachment_name(p, index),
        content_type(p),
        p.contents().to_vec(),
    ))
}

/// Every attachment of `raw` (a forward carries them on).
pub fn all_attachments(raw: &[u8]) -> Vec<(String, String, Vec<u8>)> {
    let Some(m) = parse(raw) else {
        return Vec::new();
    };
    m.attachments()
        .enumerate()
        .map(|(i, p)| {
            (
                attachment_name(p, i),
                content_type(p),
                p.contents().to_vec(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_text_bytes: 10,
        max_html_bytes: 1000,
        attachments_per_page: 2,
    };

    #[test]
    fn text_is_trimmed_at_a_character() {
        assert_eq!(trim("héllo", 2), ("h", true));
        assert_eq!(trim("abc", 3), ("abc", false));
        let v = message_view(
            b"From: A <a@x.test>\r\nSubject: hi\r\n\r\n0123456789abcdef",
            LIMITS,
            1,
        );
        assert_eq!(v.from, "A <a@x.test>");
        assert_eq!(
            v.body,
            Body::Text {
                text: "0123456789".into(),
                truncated: true
            }
        );
    }

    #[test]
    fn attachments_are_paged() {
        let mut raw = String::from(
            "From: a@x.test\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n",
        );
        for i in 0..5 {
            raw.push_str(&format!(
                "--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=f{i}.bin\r\n\r\ndata{i}\r\n"
            ));
        }
        raw.push_str("--b--\r\n");
        let v = message_view(raw.as_bytes(), LIMITS, 2);
        assert_eq!(v.attachment_count, 5);
        let names: Vec<&str> = v.attachments.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["f2.bin", "f3.bin"]);
        assert_eq!(
            attachment(raw.as_bytes(), 4).map(|a| a.0),
            Some("f4.bin".into())
        );
        assert_eq!(all_attachments(raw.as_bytes()).len(), 5);
    }

    #[test]
    fn broken_mime_still_renders() {
        for raw in [
            &b""[..],
            b"\xff\xfe garbage without headers",
            b"Content-Type: multipart/mixed; boundary=\"\r\n\r\n--\r\n--",
            b"Subject: =?utf-8?B?!!!?=\r\nContent-Transfer-Encoding: base64\r\n\r\n@@@@",
        ] {
            let _ = message_view(raw, LIMITS, 1);
            let _ = html_body(raw, 100, false);
        }
    }
}
