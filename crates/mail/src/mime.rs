//! The summary a mailbox lists without reading the message (From, To, Subject, Date, Message-ID, whether
//! it has attachments), parsed once at delivery with `mail-parser`.
//!
//! The raw bytes are stored unchanged whatever this finds: a summary is only for listing, so a message
//! that does not parse still gets delivered, with an empty summary.

use mail_parser::{Address, MessageParser};
use msgr_store::MessageSummary;

/// Longest summary field kept, in bytes. A Subject of a megabyte is legal RFC 5322 but nothing that lists
/// it needs more than a line; the full header stays in the raw message.
const MAX_FIELD: usize = 998;

/// Parses `raw` (RFC 5322 bytes, any MIME structure) into its summary. Never panics: garbage yields the
/// fields it has, or an empty summary.
pub fn summarize(raw: &[u8]) -> MessageSummary {
    let Some(msg) = MessageParser::default().parse(raw) else {
        return MessageSummary::default();
    };
    MessageSummary {
        from: msg.from().map(render).unwrap_or_default(),
        to: msg.to().map(render).unwrap_or_default(),
        subject: clip(msg.subject().unwrap_or_default()),
        date: msg
            .date()
            .filter(|d| d.is_valid())
            .map(|d| d.to_timestamp()),
        // mail-parser already drops the angle brackets; trim again for a header that had stray ones.
        message_id: clip(
            msg.message_id()
                .unwrap_or_default()
                .trim_matches(|c| c == '<' || c == '>'),
        ),
        has_attachments: msg.attachment_count() > 0,
    }
}

/// An address header as one line: `Name <user@host>, other@host`.
fn render(address: &Address<'_>) -> String {
    let parts: Vec<String> = address
        .iter()
        .filter_map(|a| match (a.name.as_deref(), a.address.as_deref()) {
            (Some(n), Some(e)) if !n.is_empty() => Some(format!("{n} <{e}>")),
            (_, Some(e)) => Some(e.to_owned()),
            (Some(n), None) if !n.is_empty() => Some(n.to_owned()),
            _ => None,
        })
        .collect();
    clip(&parts.join(", "))
}

/// `s` cut to at most [`MAX_FIELD`] bytes on a character boundary.
fn clip(s: &str) -> String {
    if s.len() <= MAX_FIELD {
        return s.to_owned();
    }
    let mut end = MAX_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed's SMTP dialogue's message, as a 1995 client would have sent it: headers and a line of text.
    #[test]
    fn plain_text() {
        let raw = b"From: Yuri Semenov <ysemenov@cernvm.cern.ch>\r\n\
            To: ysemenov@cernvm.cern.ch\r\n\
            Subject: ni-i-ni\r\n\
            Date: Sun, 9 Jul 1995 11:13:57 +0200\r\n\
            Message-ID: <19950709111357.AA01234@dxmint.cern.ch>\r\n\
            \r\n\
            ni-i-ni...\r\n";
        let s = summarize(raw);
        assert_eq!(s.from, "Yuri Semenov <ysemenov@cernvm.cern.ch>");
        assert_eq!(s.to, "ysemenov@cernvm.cern.ch");
        assert_eq!(s.subject, "ni-i-ni");
        assert_eq!(s.date, Some(805281237));
        assert_eq!(s.message_id, "19950709111357.AA01234@dxmint.cern.ch");
        assert!(!s.has_attachments);
    }

    /// RFC 2047 encoded words (quoted-printable and base64) in headers are decoded.
    #[test]
    fn encoded_headers() {
        let raw = "From: =?koi8-r?B?7MXXIPTPzNPUz8o=?= <lev@example.com>\r\n\
            To: =?utf-8?Q?Ren=C3=A9?= <rene@example.com>, bob@example.com\r\n\
            Subject: =?utf-8?B?0J/RgNC40LLQtdGC?=\r\n\
            \r\n\
            body\r\n";
        let s = summarize(raw.as_bytes());
        assert_eq!(s.from, "Лев Толстой <lev@example.com>");
        assert_eq!(s.to, "René <rene@example.com>, bob@example.com");
        assert_eq!(s.subject, "Привет");
        assert_eq!(s.date, None);
        assert_eq!(s.message_id, "");
    }

    /// The seed's three MIME kinds in one message: a quoted-printable text part, a base64 text part and a
    /// base64 attachment, in a multipart/mixed body.
    #[test]
    fn multipart_with_quoted_printable_and_base64() {
        let raw = b"From: a@example.com\r\n\
            To: b@example.com\r\n\
            Subject: MIME\r\n\
            MIME-Version: 1.0\r\n\
            Content-Type: multipart/mixed; boundary=\"XYZ\"\r\n\
            \r\n\
            preamble\r\n\
            --XYZ\r\n\
            Content-Type: text/plain; charset=utf-8\r\n\
            Content-Transfer-Encoding: quoted-printable\r\n\
            \r\n\
            caf=C3=A9 =0D=0Abinary CRLF, a soft=\r\n\
             break\r\n\
            --XYZ\r\n\
            Content-Type: text/plain; charset=utf-8\r\n\
            Content-Transfer-Encoding: base64\r\n\
            \r\n\
            0J/RgNC40LLQtdGC\r\n\
            --XYZ\r\n\
            Content-Type: application/octet-stream\r\n\
            Content-Disposition: attachment; filename=\"data.bin\"\r\n\
            Content-Transfer-Encoding: base64\r\n\
            \r\n\
            AAECAwQFBgcICQ==\r\n\
            --XYZ--\r\n";
        let s = summarize(raw);
        assert_eq!(s.subject, "MIME");
        assert!(s.has_attachments);
        // The parts decode as the seed describes: QP's =0D=0A is a CRLF, base64 is the alphabet's table.
        let msg = MessageParser::default().parse(&raw[..]).expect("parses");
        assert_eq!(
            msg.body_text(0).as_deref(),
            Some("café \r\nbinary CRLF, a softbreak")
        );
        assert_eq!(msg.body_text(1).as_deref(), Some("Привет"));
        let attachment = msg.attachment(0).expect("one attachment");
        assert_eq!(attachment.contents(), &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    }

    /// Nothing that arrives over SMTP makes it panic, and what does not parse gives an empty summary.
    #[test]
    fn garbage_never_panics() {
        let inputs: [&[u8]; 8] = [
            b"",
            b"\r\n\r\n",
            b"\0\0\0\xff\xfe",
            b"Subject: =?utf-8?B?####?=\r\n\r\n",
            b"Date: Mon, 99 Foo 99999 99:99:99 +9999\r\n\r\n",
            b"Content-Type: multipart/mixed; boundary=\r\n\r\n--\r\n--\r\n",
            b"From: <<<>>>@@@\r\nTo: ,,,,\r\n\r\n",
            b"Message-ID: <<>>\r\n\r\n",
        ];
        for raw in inputs {
            let s = summarize(raw);
            assert!(s.subject.len() <= MAX_FIELD);
        }
        let long = format!("Subject: {}\r\n\r\n", "é".repeat(5000));
        let s = summarize(long.as_bytes());
        assert!(s.subject.len() <= MAX_FIELD && s.subject.starts_with('é'));
        assert_eq!(
            summarize(b"Date: Mon, 99 Foo 99999 99:99:99 +9999\r\n\r\n").date,
            None
        );
    }
}
