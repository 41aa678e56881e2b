//! SMTP replies as a client reads them (RFC 5321 §4.2), sans IO: [`parse`] takes the bytes read so far and
//! returns a complete reply with the number of bytes it used, or `None` when more must be read.
//!
//! A reply is one or more lines `ddd-text` ending with a line `ddd text` (or a bare `ddd`), all with the same
//! code. The first digit is the verdict: 2 done, 3 go on (after `DATA`), 4 try again later, 5 never. Servers
//! that announce `ENHANCEDSTATUSCODES` (RFC 2034) start the text with a class.subject.detail code (RFC 3463)
//! that a delivery status notification repeats.
//!
//! Replies are capped ([`MAX_REPLY`]) so that a remote server cannot make us buffer without end. smtp-proto's
//! `ResponseReceiver` was the alternative; this parser keeps every line (the diagnostic a bounce quotes), and is
//! small enough to test here completely.

use std::fmt;

/// The most bytes one reply may take, all its lines together. RFC 5321 §4.5.3.1.5 puts a reply line at 512
/// octets; a long `EHLO` answer has some twenty lines.
pub const MAX_REPLY: usize = 16 * 1024;

/// One SMTP reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code, 200..=599.
    pub code: u16,
    /// The text of each line after `ddd-` / `ddd ` (may be empty), without the line ending.
    pub lines: Vec<String>,
}

/// A reply that breaks RFC 5321's syntax, or is too long to buffer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("malformed reply line {0:?}")]
    Malformed(String),
    #[error("reply lines with different codes ({0} then {1})")]
    MixedCodes(u16, u16),
    #[error("reply longer than {MAX_REPLY} bytes")]
    TooLong,
}

impl Reply {
    /// 2xx: the command succeeded.
    pub fn is_positive(&self) -> bool {
        self.code / 100 == 2
    }
    /// 3xx: go on (the `354` after `DATA`).
    pub fn is_intermediate(&self) -> bool {
        self.code / 100 == 3
    }
    /// 5xx: permanent failure; repeating the command will not help.
    pub fn is_permanent(&self) -> bool {
        self.code / 100 == 5
    }

    /// The RFC 3463 enhanced status code at the start of the first line (`5.1.1`), if the server sent one whose
    /// class matches the reply code.
    pub fn enhanced(&self) -> Option<String> {
        let first = self.lines.first()?;
        let word = first.split(' ').next()?;
        let mut parts = word.split('.');
        let class = parts.next()?;
        let subject = parts.next()?;
        let detail = parts.next()?;
        let numeric = |s: &str, max: usize| {
            !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
        };
        let class_ok = matches!(class, "2" | "4" | "5")
            && class.as_bytes()[0] - b'0' == (self.code / 100) as u8;
        (parts.next().is_none() && class_ok && numeric(subject, 3) && numeric(detail, 3))
            .then(|| word.to_owned())
    }

    /// The status a delivery status notification gives for this reply: its enhanced code, else the reply's
    /// class with "other or undefined" (`5.0.0`, RFC 3463 §3.1).
    pub fn status(&self) -> String {
        self.enhanced()
            .unwrap_or_else(|| format!("{}.0.0", self.code / 100))
    }

    /// The capabilities a `250` reply to `EHLO` announces (the lines after the greeting line).
    pub fn extensions(&self) -> Extensions {
        let mut ext = Extensions::default();
        for line in self.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "STARTTLS" => ext.starttls = true,
                "PIPELINING" => ext.pipelining = true,
                "8BITMIME" => ext.eight_bit_mime = true,
                "SMTPUTF8" => ext.smtputf8 = true,
                // RFC 1870: `SIZE` alone or with the largest size in bytes; 0 means no fixed limit.
                "SIZE" => ext.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                _ => {}
            }
        }
        ext
    }
}

/// One line for logs, the queue's `last_error` and a DSN's `Diagnostic-Code`: the code and every line's text,
/// joined with spaces (a multi-line reply is rarely more than a sentence).
impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        for line in &self.lines {
            if !line.is_empty() {
                // Control characters from the remote end never reach a log line or a header.
                let clean: String = line
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect();
                write!(f, " {clean}")?;
            }
        }
        Ok(())
    }
}

/// The `EHLO` extensions the client uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Extensions {
    /// RFC 3207: the session can be upgraded to TLS.
    pub starttls: bool,
    /// RFC 1870: `MAIL FROM` may say the message size; `Some(0)` when the server names no limit.
    pub size: Option<u64>,
    /// RFC 2920; announced for completeness, the client sends one command at a time.
    pub pipelining: bool,
    /// RFC 6152: 8-bit message bodies may be sent with `BODY=8BITMIME`.
    pub eight_bit_mime: bool,
    /// RFC 6531: internationalized addresses.
    pub smtputf8: bool,
}

/// Reads one reply from the start of `buf`: `Ok(Some((reply, used)))` when it is complete, `Ok(None)` when more
/// bytes are needed. Lines may end in CRLF or a bare LF (servers send both).
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
    let mut lines = Vec::new();
    let mut code = None;
    let mut pos = 0;
    while let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') {
        let end = pos + nl;
        if end > MAX_REPLY {
            return Err(ReplyError::TooLong);
        }
        let line = &buf[pos..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos = end + 1;
        let (this, last, text) = parse_line(line)?;
        match code {
            Some(c) if c != this => return Err(ReplyError::MixedCodes(c, this)),
            _ => code = Some(this),
        }
        lines.push(text);
        if last {
            return Ok(Some((Reply { code: this, lines }, pos)));
        }
    }
    if buf.len() > MAX_REPLY {
        return Err(ReplyError::TooLong);
    }
    Ok(None)
}

/// One line: its code, whether it is the last line, its text.
fn parse_line(line: &[u8]) -> Result<(u16, bool, String), ReplyError> {
    let malformed = || ReplyError::Malformed(String::from_utf8_lossy(line).into_owned());
    let digits = line.get(..3).ok_or_else(malformed)?;
    if !digits.iter().all(u8::is_ascii_digit) || !(b'2'..=b'5').contains(&digits[0]) {
        return Err(malformed());
    }
    let code = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    let (last, text) = match line.get(3) {
        None => (true, &[][..]),
        Some(b' ') => (true, &line[4..]),
        Some(b'-') => (false, &line[4..]),
        Some(_) => return Err(malformed()),
    };
    Ok((code, last, String::from_utf8_lossy(text).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(input: &str) -> Reply {
        let (reply, used) = parse(input.as_bytes()).expect("valid").expect("complete");
        assert_eq!(used, input.len(), "{input:?}");
        reply
    }

    #[test]
    fn single_and_multi_line() {
        assert_eq!(
            one("220 mx.example ESMTP\r\n"),
            Reply {
                code: 220,
                lines: vec!["mx.example ESMTP".into()]
            }
        );
        let ehlo = one("250-mx.example\r\n250-SIZE 1000\r\n250-STARTTLS\r\n250 8BITMIME\r\n");
        assert_eq!(ehlo.code, 250);
        assert_eq!(ehlo.lines.len(), 4);
        assert_eq!(
            ehlo.extensions(),
            Extensions {
                starttls: true,
                size: Some(1000),
                eight_bit_mime: true,
                ..Extensions::default()
            }
        );
        // A bare code and bare LF endings are accepted.
        assert_eq!(
            one("250\n"),
            Reply {
                code: 250,
                lines: vec![String::new()]
            }
        );
    }

    #[test]
    fn the_same_reply_in_every_chunking() {
        let input = b"250-mx.example greets you\r\n250-SIZE\r\n250 PIPELINING\r\n221 bye\r\n";
        let first_len = input.len() - b"221 bye\r\n".len();
        for cut in 0..first_len {
            assert_eq!(parse(&input[..cut]), Ok(None), "cut at {cut}");
        }
        let (reply, used) = parse(input).expect("valid").expect("complete");
        assert_eq!(used, first_len);
        assert_eq!(reply.extensions().size, Some(0));
        assert!(reply.extensions().pipelining);
        let (bye, _) = parse(&input[used..]).expect("valid").expect("complete");
        assert_eq!(bye.code, 221);
    }

    #[test]
    fn malformed_replies_fail() {
        for bad in [
            "25\r\n",
            "abc def\r\n",
            "250x\r\n",
            "199 too low\r\n",
            "600 too high\r\n",
            "\r\n",
        ] {
            assert!(
                matches!(parse(bad.as_bytes()), Err(ReplyError::Malformed(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse(b"250-one\r\n550 two\r\n"),
            Err(ReplyError::MixedCodes(250, 550))
        );
    }

    #[test]
    fn replies_are_capped() {
        let endless = vec![b'2'; MAX_REPLY + 1];
        assert_eq!(parse(&endless), Err(ReplyError::TooLong));
        let mut many = Vec::new();
        while many.len() <= MAX_REPLY {
            many.extend_from_slice(b"250-line\r\n");
        }
        assert_eq!(parse(&many), Err(ReplyError::TooLong));
    }

    #[test]
    fn enhanced_status_codes() {
        assert_eq!(
            one("550 5.1.1 No such user\r\n").enhanced().as_deref(),
            Some("5.1.1")
        );
        assert_eq!(one("550 5.1.1 No such user\r\n").status(), "5.1.1");
        assert_eq!(one("451 4.3.0 Try later\r\n").status(), "4.3.0");
        // No code, or one whose class disagrees with the reply: the reply's class stands.
        assert_eq!(one("550 No such user\r\n").status(), "5.0.0");
        assert_eq!(one("550 2.1.5 odd\r\n").status(), "5.0.0");
        assert_eq!(one("550 5.1\r\n").enhanced(), None);
    }

    #[test]
    fn display_is_one_clean_line() {
        let reply = one("550-5.1.1 first\r\n550 5.1.1 second\x07\r\n");
        assert_eq!(reply.to_string(), "550 5.1.1 first 5.1.1 second ");
    }
}
