//! One SMTP command line into a [`Command`], with smtp-proto's RFC 5321 parser plus the leniency real
//! senders need: `MAIL FROM: user@host` and `RCPT TO: user@host` without angle brackets (the seed dialogue
//! does exactly that), extra spaces, lower-case verbs.

use smtp_proto::{Error as ProtoError, Request, MAIL_BODY_8BITMIME, MAIL_SMTPUTF8};

/// A parsed command.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Command {
    Ehlo(String),
    Helo(String),
    Mail(MailFrom),
    /// The forward-path, as given (`Postmaster` is kept as `postmaster`).
    Rcpt(String),
    Data,
    Bdat {
        size: usize,
        last: bool,
    },
    Rset,
    Noop,
    Vrfy,
    Expn,
    Help,
    Quit,
    StartTls,
    Auth {
        /// smtp-proto's mechanism bit (`AUTH_PLAIN`, `AUTH_LOGIN`, …).
        mechanism: u64,
        initial: String,
    },
    /// A command RFC 5321 or an extension defines that this server does not offer (`ETRN`, `LHLO`, …).
    NotImplemented(&'static str),
}

/// `MAIL FROM` with the parameters this server looks at.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct MailFrom {
    /// The reverse-path; empty for `<>` (bounces).
    pub address: String,
    /// `SIZE=`, 0 if not given.
    pub size: usize,
    pub smtputf8: bool,
    pub eight_bit: bool,
}

/// Why a line is not a command this server can run.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ParseError {
    Unknown,
    Syntax(&'static str),
    BadSender,
    BadRecipient,
    BadParameter(String),
}

/// Parses one line (with or without its CRLF).
pub(crate) fn parse(line: &[u8]) -> Result<Command, ParseError> {
    let mut owned;
    let mut line = line;
    // smtp-proto wants the LF that ends the line; the session hands lines without it.
    if line.last() != Some(&b'\n') {
        owned = Vec::with_capacity(line.len() + 2);
        owned.extend_from_slice(line);
        owned.extend_from_slice(b"\r\n");
        line = &owned;
    }
    match parse_strict(line) {
        Err(ParseError::Syntax(_)) if is_path_command(line) => match bracketed(line) {
            Some(fixed) => {
                owned = fixed;
                parse_strict(&owned)
            }
            None => parse_strict(line),
        },
        other => other,
    }
}

fn parse_strict(line: &[u8]) -> Result<Command, ParseError> {
    let request = Request::parse(&mut line.iter()).map_err(|e| match e {
        ProtoError::UnknownCommand => ParseError::Unknown,
        ProtoError::InvalidSenderAddress => ParseError::BadSender,
        ProtoError::InvalidRecipientAddress => ParseError::BadRecipient,
        ProtoError::SyntaxError { syntax } => ParseError::Syntax(syntax),
        ProtoError::InvalidParameter { param } => ParseError::BadParameter(param.to_owned()),
        ProtoError::UnsupportedParameter { param } => ParseError::BadParameter(param),
        // A whole line ends in LF, so "needs more data" means a line the parser could not finish.
        _ => ParseError::Syntax("command"),
    })?;
    Ok(match request {
        Request::Ehlo { host } => Command::Ehlo(host.into_owned()),
        Request::Helo { host } => Command::Helo(host.into_owned()),
        Request::Mail { from } => Command::Mail(MailFrom {
            address: from.address.into_owned(),
            size: from.size,
            smtputf8: from.flags & MAIL_SMTPUTF8 != 0,
            eight_bit: from.flags & MAIL_BODY_8BITMIME != 0,
        }),
        Request::Rcpt { to } => Command::Rcpt(to.address.into_owned()),
        Request::Data => Command::Data,
        Request::Bdat {
            chunk_size,
            is_last,
        } => Command::Bdat {
            size: chunk_size,
            last: is_last,
        },
        Request::Rset => Command::Rset,
        Request::Noop { .. } => Command::Noop,
        Request::Vrfy { .. } => Command::Vrfy,
        Request::Expn { .. } => Command::Expn,
        Request::Help { .. } => Command::Help,
        Request::Quit => Command::Quit,
        Request::StartTls => Command::StartTls,
        Request::Auth {
            mechanism,
            initial_response,
        } => Command::Auth {
            mechanism,
            initial: initial_response.into_owned(),
        },
        other => Command::NotImplemented(other.name()),
    })
}

/// Whether the line is `MAIL …` or `RCPT …` (any letter case).
fn is_path_command(line: &[u8]) -> bool {
    line.len() > 4
        && (line[..4].eq_ignore_ascii_case(b"MAIL") || line[..4].eq_ignore_ascii_case(b"RCPT"))
        && line[4] == b' '
}

/// `MAIL FROM: user@host PARAMS` → `MAIL FROM:<user@host> PARAMS`: the path without angle brackets that
/// RFC 821-era clients and people at a telnet prompt send. `None` if the line has no `:` or no path.
fn bracketed(line: &[u8]) -> Option<Vec<u8>> {
    let colon = line.iter().position(|&b| b == b':')?;
    let rest = &line[colon + 1..];
    let start = rest.iter().position(|&b| b != b' ' && b != b'\t')?;
    let rest = &rest[start..];
    if rest.first() == Some(&b'<') {
        return None;
    }
    let end = rest
        .iter()
        .position(|&b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .unwrap_or(rest.len());
    if end == 0 {
        return None;
    }
    let mut fixed = Vec::with_capacity(line.len() + 2);
    fixed.extend_from_slice(&line[..=colon]);
    fixed.push(b'<');
    fixed.extend_from_slice(&rest[..end]);
    fixed.push(b'>');
    fixed.extend_from_slice(&rest[end..]);
    Some(fixed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(address: &str, size: usize) -> Command {
        Command::Mail(MailFrom {
            address: address.to_owned(),
            size,
            smtputf8: false,
            eight_bit: false,
        })
    }

    #[test]
    fn commands_as_senders_write_them() {
        let cases: &[(&[u8], Command)] = &[
            (
                b"EHLO dxmint.cern.ch\r\n",
                Command::Ehlo("dxmint.cern.ch".into()),
            ),
            (
                b"helo crnvtm.cern.ch",
                Command::Helo("crnvtm.cern.ch".into()),
            ),
            (b"MAIL FROM:<>\r\n", mail("", 0)),
            (b"mail from:<a@b.c> SIZE=1000\r\n", mail("a@b.c", 1000)),
            (b"MAIL FROM: <a@b.c>", mail("a@b.c", 0)),
            (b"MAIL FROM: a@b.c", mail("a@b.c", 0)),
            (b"MAIL FROM:a@b.c SIZE=12", mail("a@b.c", 12)),
            (
                b"RCPT TO: ysemenov@cernvm.cern.ch\r\n",
                Command::Rcpt("ysemenov@cernvm.cern.ch".into()),
            ),
            (b"RCPT TO:<x@y.z>", Command::Rcpt("x@y.z".into())),
            (b"rcpt to:   <x@y.z>  ", Command::Rcpt("x@y.z".into())),
            (b"DATA", Command::Data),
            (
                b"BDAT 100 LAST",
                Command::Bdat {
                    size: 100,
                    last: true,
                },
            ),
            (
                b"BDAT 7",
                Command::Bdat {
                    size: 7,
                    last: false,
                },
            ),
            (b"QUIT\r\n", Command::Quit),
            (b"quit", Command::Quit),
            (b"STARTTLS", Command::StartTls),
            (b"VRFY root", Command::Vrfy),
            (b"NOOP", Command::Noop),
            (b"RSET", Command::Rset),
            (b"ETRN example.com", Command::NotImplemented("ETRN")),
        ];
        for (line, expected) in cases {
            assert_eq!(
                parse(line).as_ref(),
                Ok(expected),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn malformed_lines_are_errors_not_panics() {
        let cases: &[&[u8]] = &[
            b"",
            b"\r\n",
            b"FOO bar",
            b"MAIL",
            b"MAIL FROM:",
            b"MAIL FROM:<",
            b"RCPT TO:<no-at-sign>",
            b"RCPT TO:<a@b.c",
            b"MAIL FROM:<a@b.c> SIZE=abc",
            b"EHLO",
            b"\0\0\0\0",
            b"MAIL FROM:<\0@x>",
            b"\xff\xfe\xfd",
            b"BDAT x",
            b"AUTH",
        ];
        for line in cases {
            assert!(parse(line).is_err(), "{:?}", String::from_utf8_lossy(line));
        }
    }
}
