//! Delivery status notifications (RFC 3464): the bounce a sender gets when outbound delivery fails for good.
//!
//! The message is a `multipart/report; report-type=delivery-status` (RFC 6522) with three parts: a text a
//! person reads, the `message/delivery-status` fields a program reads (one block for the reporting MTA, one per
//! failed recipient with its `Status` and the remote server's reply as `Diagnostic-Code`), and the original
//! message's header as `text/rfc822-headers` (its body is left out: the sender has it, and bounces of large
//! messages should stay small). It comes from `MAILER-DAEMON` and is itself sent with a null reverse-path, so
//! that it can never cause another bounce (RFC 5321 §4.5.5).

use mail_builder::headers::address::Address;
use mail_builder::headers::date::Date;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;
use mail_builder::MessageBuilder;
use msgr_store::{Delivery, Flags, FolderRef, LocalTarget, Outbound, SpecialUse};

/// The most of the original header a bounce quotes.
const MAX_QUOTED_HEADER: usize = 32 * 1024;

/// One recipient the message could not be delivered to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub recipient: String,
    /// The RFC 3463 status (`5.1.1`; `4.4.7` when the queue lifetime ran out).
    pub status: String,
    /// The host that answered, if one did.
    pub remote_mta: Option<String>,
    /// The remote server's reply (`550 5.1.1 no such user`), if the failure was one.
    pub diagnostic: Option<String>,
    /// What happened, for the person reading the notice.
    pub reason: String,
}

/// What a notice is about.
pub struct Report<'a> {
    /// This server's host name (`Reporting-MTA`, the `MAILER-DAEMON` address).
    pub hostname: &'a str,
    /// The original reverse-path: who gets the notice.
    pub sender: &'a str,
    /// When the original message entered the queue (seconds since the Unix epoch).
    pub arrival: i64,
    /// Now (seconds since the Unix epoch): the notice's date.
    pub now: i64,
    /// A number that makes the notice's Message-ID unique together with `now` (the queue id).
    pub unique: i64,
    pub failures: &'a [Failure],
    /// The original message, raw.
    pub original: &'a [u8],
}

/// The notice as RFC 5322 bytes.
pub fn compose(report: &Report<'_>) -> std::io::Result<Vec<u8>> {
    let mailer_daemon = format!("MAILER-DAEMON@{}", report.hostname);

    let mut human = format!(
        "This is the mail system at host {}.\r\n\r\n\
         I'm sorry to have to inform you that your message could not be delivered to one or more\r\n\
         recipients. It is attached below.\r\n\r\n",
        report.hostname
    );
    for f in report.failures {
        human.push_str(&format!("<{}>: {}", f.recipient, f.reason));
        if let Some(d) = &f.diagnostic {
            match &f.remote_mta {
                Some(host) => human.push_str(&format!("\r\n    host {host} said: {d}")),
                None => human.push_str(&format!("\r\n    the remote server said: {d}")),
            }
        }
        human.push_str("\r\n\r\n");
    }

    // RFC 3464 §2.2: per-message fields, then a blank line before each recipient's fields.
    let mut status = format!(
        "Reporting-MTA: dns; {}\r\nArrival-Date: {}\r\n",
        report.hostname,
        Date::new(report.arrival).to_rfc822()
    );
    for f in report.failures {
        status.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {}\r\nAction: failed\r\nStatus: {}\r\n",
            one_line(&f.recipient),
            f.status
        ));
        if let Some(host) = &f.remote_mta {
            status.push_str(&format!("Remote-MTA: dns; {}\r\n", one_line(host)));
        }
        if let Some(d) = &f.diagnostic {
            status.push_str(&format!("Diagnostic-Code: smtp; {}\r\n", one_line(d)));
        }
        status.push_str(&format!(
            "Last-Attempt-Date: {}\r\n",
            Date::new(report.now).to_rfc822()
        ));
    }

    let headers = original_header(report.original);
    let headers_encoding = if headers.is_ascii() { "7bit" } else { "8bit" };

    let body = MimePart::new(
        mail_builder::headers::content_type::ContentType::new("multipart/report")
            .attribute("report-type", "delivery-status"),
        vec![
            MimePart::new("text/plain", human),
            // Binary bodies with an explicit transfer encoding are written as they are: the fields must not be
            // quoted-printable encoded, and no charset belongs on these types.
            MimePart::new("message/delivery-status", status.into_bytes()).transfer_encoding("7bit"),
            MimePart::new("text/rfc822-headers", headers).transfer_encoding(headers_encoding),
        ],
    );
    MessageBuilder::new()
        .from(Address::new_address(
            Some("Mail Delivery System"),
            mailer_daemon,
        ))
        .to(Address::new_address(None::<&str>, report.sender.to_owned()))
        .subject("Undelivered Mail Returned to Sender")
        .date(Date::new(report.now))
        .message_id(message_id(report))
        // RFC 3834: an automatic reply, which auto-responders must not answer.
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .body(body)
        .write_to_vec()
}

/// The notice stored where the sender will find it: the sender's Inbox when the sender has an account here
/// (`local_account`), else the outbound queue with a null reverse-path. `None` for a null sender: a bounce is
/// never bounced.
pub fn delivery(
    report: &Report<'_>,
    local_account: Option<&str>,
) -> std::io::Result<Option<Delivery>> {
    if report.sender.is_empty() {
        return Ok(None);
    }
    let raw = compose(report)?;
    // The same summary any delivered message gets, so that lists show a bounce like other mail.
    let summary = crate::mime::summarize(&raw);
    let (targets, outbound) = match local_account {
        Some(account) => (
            vec![LocalTarget {
                account: account.to_owned(),
                folder: FolderRef::Special(SpecialUse::Inbox),
                flags: Flags::empty(),
            }],
            None,
        ),
        None => (
            Vec::new(),
            Some(Outbound {
                sender: String::new(),
                account: None,
                recipients: vec![report.sender.to_owned()],
            }),
        ),
    };
    Ok(Some(Delivery {
        raw,
        summary,
        internal_date: report.now,
        targets,
        outbound,
    }))
}

fn message_id(report: &Report<'_>) -> String {
    format!("dsn.{}.{}@{}", report.unique, report.now, report.hostname)
}

/// The header of `raw` (up to the blank line), with CRLF line endings, at most [`MAX_QUOTED_HEADER`] bytes cut
/// at a line end.
fn original_header(raw: &[u8]) -> String {
    let mut out = String::new();
    for line in raw.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() || out.len() + line.len() + 2 > MAX_QUOTED_HEADER {
            break;
        }
        out.push_str(&String::from_utf8_lossy(line));
        out.push_str("\r\n");
    }
    out
}

/// A value for one header field line: control characters (a CR or LF from a remote reply) become spaces, and
/// it is cut well below the 998-byte line limit.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(900)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::{MessageParser, MimeHeaders};

    fn report<'a>(failures: &'a [Failure], original: &'a [u8]) -> Report<'a> {
        Report {
            hostname: "a.test",
            sender: "alice@a.test",
            arrival: 1_700_000_000,
            now: 1_700_000_100,
            unique: 7,
            failures,
            original,
        }
    }

    #[test]
    fn structure_parses_back() {
        let failures = [
            Failure {
                recipient: "bob@other.test".into(),
                status: "5.1.1".into(),
                remote_mta: Some("mx.other.test".into()),
                diagnostic: Some("550 5.1.1 no such user\r\nInjected: header".into()),
                reason: "the recipient was refused".into(),
            },
            Failure {
                recipient: "carol@other.test".into(),
                status: "4.4.7".into(),
                remote_mta: None,
                diagnostic: None,
                reason: "delivery time expired".into(),
            },
        ];
        let original =
            b"From: alice@a.test\r\nTo: bob@other.test\r\nSubject: hello\r\n\r\nsecret body\r\n";
        let raw = compose(&report(&failures, original)).expect("compose");
        let msg = MessageParser::default().parse(&raw).expect("parses");

        assert_eq!(msg.subject(), Some("Undelivered Mail Returned to Sender"));
        assert_eq!(
            msg.from().and_then(|a| a.first()).and_then(|a| a.address()),
            Some("MAILER-DAEMON@a.test")
        );
        assert_eq!(
            msg.to().and_then(|a| a.first()).and_then(|a| a.address()),
            Some("alice@a.test")
        );
        let ct = msg.content_type().expect("content type");
        assert_eq!(ct.ctype(), "multipart");
        assert_eq!(ct.subtype(), Some("report"));
        assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
        assert_eq!(
            msg.header_raw("Auto-Submitted").map(str::trim),
            Some("auto-replied")
        );

        // The three parts, in order, by their content types.
        let parts: Vec<String> = msg
            .parts
            .iter()
            .skip(1)
            .filter_map(|p| p.content_type())
            .map(|ct| format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("")))
            .collect();
        assert_eq!(
            parts,
            [
                "text/plain",
                "message/delivery-status",
                "text/rfc822-headers"
            ]
        );

        let human = msg.body_text(0).expect("text part");
        assert!(human.contains("<bob@other.test>"), "{human}");
        assert!(human.contains("550 5.1.1 no such user"), "{human}");

        let status = String::from_utf8_lossy(msg.parts[2].contents()).into_owned();
        assert!(
            status.starts_with("Reporting-MTA: dns; a.test\r\nArrival-Date: "),
            "{status}"
        );
        for expected in [
            "Final-Recipient: rfc822; bob@other.test\r\nAction: failed\r\nStatus: 5.1.1\r\n",
            "Remote-MTA: dns; mx.other.test\r\n",
            // The remote reply's line break did not become a field of its own.
            "Diagnostic-Code: smtp; 550 5.1.1 no such user  Injected: header\r\n",
            "Final-Recipient: rfc822; carol@other.test\r\nAction: failed\r\nStatus: 4.4.7\r\n",
        ] {
            assert!(status.contains(expected), "{expected:?} in {status}");
        }

        let headers = String::from_utf8_lossy(msg.parts[3].contents()).into_owned();
        assert!(headers.contains("Subject: hello\r\n"), "{headers}");
        assert!(!String::from_utf8_lossy(&raw).contains("secret body"));
    }

    #[test]
    fn never_for_a_null_sender_and_local_or_queued() {
        let failures = [Failure {
            recipient: "bob@other.test".into(),
            status: "5.0.0".into(),
            remote_mta: None,
            diagnostic: None,
            reason: "refused".into(),
        }];
        let mut r = report(&failures, b"Subject: x\r\n\r\n");
        let local = delivery(&r, Some("alice@a.test"))
            .expect("compose")
            .expect("a notice");
        assert_eq!(local.targets.len(), 1);
        assert_eq!(
            local.targets[0].folder,
            FolderRef::Special(SpecialUse::Inbox)
        );
        assert_eq!(local.outbound, None);
        assert_eq!(local.summary.subject, "Undelivered Mail Returned to Sender");
        assert_eq!(local.summary.message_id, "dsn.7.1700000100@a.test");
        assert_eq!(local.summary.date, Some(1_700_000_100));
        assert!(
            local.summary.from.contains("MAILER-DAEMON@a.test"),
            "{:?}",
            local.summary
        );

        let remote = delivery(&r, None).expect("compose").expect("a notice");
        assert!(remote.targets.is_empty());
        let out = remote.outbound.expect("queued");
        assert_eq!(out.sender, "", "a notice has a null reverse-path");
        assert_eq!(out.recipients, ["alice@a.test"]);

        r.sender = "";
        assert_eq!(
            delivery(&r, Some("alice@a.test")).expect("nothing to compose"),
            None
        );
    }
}
