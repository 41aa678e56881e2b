//! Writing mail: the compose form (new, reply, reply-all, forward) and sending it.
//!
//! The message is built with mail-builder and handed to [`msgr_mail::submit::submit`], the path SMTP
//! submission takes: the same recipient routing, size and recipient limits, trace fields, `\Seen` copy in
//! `Sent` and outbound queue (DKIM-signed at delivery). A reply sets `In-Reply-To` and `References` and
//! marks the original `\Answered`; a forward carries the original's attachments.

use crate::pages::{self, ComposeFields};
use crate::view;
use crate::{http, Answer, Conn, PageError, Signed, Web};
use bytes::Bytes;
use hyper::{Request, StatusCode};
use msgr_mail::submit::{RouteError, SubmitError};
use msgr_store::{FlagOp, Flags, MailStore};
use std::collections::HashMap;

/// Which compose form.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    New,
    Reply,
    ReplyAll,
    Forward,
}

/// The addresses in a To/Cc field: separated by commas or semicolons, each `addr` or `Name <addr>`.
/// `Err` with the first one that is not an address.
pub(crate) fn parse_addresses(field: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for item in field.split([',', ';']) {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let addr = match (item.rfind('<'), item.rfind('>')) {
            (Some(a), Some(b)) if a < b => item[a + 1..b].trim(),
            _ => item,
        };
        let valid = addr.len() <= 254
            && addr.split_once('@').is_some_and(|(l, d)| {
                !l.is_empty() && !d.is_empty() && !d.contains('@') && d.contains('.')
                    || d.eq_ignore_ascii_case("localhost")
            })
            && !addr
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "<>()[]\\,;:\"".contains(c));
        if !valid {
            return Err(item.chars().take(80).collect());
        }
        if !out.iter().any(|o: &String| o.eq_ignore_ascii_case(addr)) {
            out.push(addr.to_owned());
        }
    }
    Ok(out)
}

/// `Re: subject` unless it already starts so.
fn prefixed(prefix: &str, subject: &str) -> String {
    let s = subject.trim();
    if s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix) {
        s.to_owned()
    } else {
        format!("{prefix} {s}")
    }
}

/// Every line of `text` with `> ` in front.
fn quote(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.is_empty() {
                ">".to_owned()
            } else {
                format!("> {l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The fields a reply or forward starts with, made from the original's bytes.
fn prefill(
    raw: &[u8],
    kind: Kind,
    me: &str,
    folder: &str,
    uid: u32,
    max_text: usize,
) -> (ComposeFields, Vec<String>) {
    let mut f = ComposeFields::default();
    let Some(m) = view::parse(raw) else {
        return (f, Vec::new());
    };
    let subject = m.subject().unwrap_or_default();
    let text = m.body_text(0).unwrap_or_default();
    let (text, _) = view::trim(&text, max_text);
    let from = view::show_address(m.from());
    let date = m.date().map(|d| d.to_rfc822()).unwrap_or_default();
    let forwarded = if kind == Kind::Forward {
        m.attachments()
            .enumerate()
            .map(|(i, p)| view::attachment_name(p, i))
            .collect()
    } else {
        Vec::new()
    };
    match kind {
        Kind::New => {}
        Kind::Reply | Kind::ReplyAll => {
            let reply_to = view::addresses(m.reply_to());
            let to = if reply_to.is_empty() {
                view::addresses(m.from())
            } else {
                reply_to
            };
            f.to = to.join(", ");
            if kind == Kind::ReplyAll {
                let cc: Vec<String> = view::addresses(m.to())
                    .into_iter()
                    .chain(view::addresses(m.cc()))
                    .filter(|a| {
                        !a.eq_ignore_ascii_case(me) && !to.iter().any(|t| t.eq_ignore_ascii_case(a))
                    })
                    .collect();
                f.cc = cc.join(", ");
            }
            f.subject = prefixed("Re:", subject);
            f.body = format!("\n\nOn {date}, {from} wrote:\n{}\n", quote(text));
            if let Some(id) = m.message_id() {
                f.in_reply_to = id.to_owned();
                let mut refs: Vec<String> = m
                    .references()
                    .as_text_list()
                    .map(|l| l.iter().map(|s| s.to_string()).collect())
                    .or_else(|| m.references().as_text().map(|s| vec![s.to_owned()]))
                    .unwrap_or_default();
                refs.push(id.to_owned());
                f.references = refs.join(" ");
            }
            f.reply_folder = folder.to_owned();
            f.reply_uid = uid.to_string();
        }
        Kind::Forward => {
            f.subject = prefixed("Fwd:", subject);
            f.body = format!(
                "\n\n---------- Forwarded message ----------\nFrom: {from}\nDate: {date}\nSubject: {subject}\nTo: {}\n\n{text}\n",
                view::show_address(m.to())
            );
            f.forward_folder = folder.to_owned();
            f.forward_uid = uid.to_string();
        }
    }
    (f, forwarded)
}

/// A file from the form.
struct Upload {
    filename: String,
    content_type: String,
    data: Bytes,
}

impl Web {
    /// `GET /mail/compose[?reply=uid&folder=|?replyall=…|?forward=…|?to=addr]`.
    pub(crate) async fn compose_page(
        &self,
        signed: &Signed,
        query: &HashMap<String, String>,
    ) -> Answer {
        let (kind, uid) = [
            ("reply", Kind::Reply),
            ("replyall", Kind::ReplyAll),
            ("forward", Kind::Forward),
        ]
        .iter()
        .find_map(|(k, kind)| query.get(*k).map(|v| (*kind, v.parse::<u32>().ok())))
        .unwrap_or((Kind::New, None));
        let mut fields = ComposeFields::default();
        let mut forwarded = Vec::new();
        if kind != Kind::New {
            let uid = uid.ok_or(PageError::BadRequest("uid"))?;
            let folder = query.get("folder").map_or("INBOX", String::as_str);
            let (raw, folder_name) = self.original(signed, folder, uid).await?;
            let me = signed.session.account.clone();
            let max_text = self.inner.config.max_text_bytes;
            (fields, forwarded) = tokio::task::spawn_blocking(move || {
                prefill(&raw, kind, &me, &folder_name, uid, max_text)
            })
            .await?;
        } else if let Some(to) = query.get("to") {
            // Messenger's `URL t COMPOSE addr`, or a mailto-like link.
            fields.to = to.chars().take(320).collect();
        }
        let heading = match kind {
            Kind::New => "New message",
            Kind::Reply => "Reply",
            Kind::ReplyAll => "Reply to all",
            Kind::Forward => "Forward",
        };
        self.compose_form(
            signed,
            query,
            StatusCode::OK,
            heading,
            fields,
            forwarded,
            None,
        )
        .await
    }

    /// The bytes of a message the user is replying to or forwarding, and its folder's name.
    async fn original(
        &self,
        signed: &Signed,
        folder: &str,
        uid: u32,
    ) -> Result<(Vec<u8>, String), PageError> {
        let account = signed.session.account.clone();
        let folder = folder.to_owned();
        self.blocking(move |s| {
            let Some(f) = s.folder(&account, &folder)? else {
                return Ok(None);
            };
            Ok(s.message_raw(f.id, uid)?.map(|raw| (raw, f.name)))
        })
        .await?
        .ok_or(PageError::NotFound)
    }

    #[allow(clippy::too_many_arguments)]
    async fn compose_form(
        &self,
        signed: &Signed,
        query: &HashMap<String, String>,
        status: StatusCode,
        heading: &'static str,
        f: ComposeFields,
        forwarded: Vec<String>,
        error: Option<String>,
    ) -> Answer {
        let (chrome, _) = self.chrome(signed, "", query).await?;
        let page = pages::Compose {
            title: heading,
            chrome: Some(chrome),
            heading,
            csrf: signed.session.csrf.clone(),
            error,
            f,
            forwarded,
        };
        Ok(http::html(status, pages::render(&page)))
    }

    /// `POST /mail/send` (multipart/form-data): builds the message and submits it.
    pub(crate) async fn send<B>(&self, req: Request<B>, conn: &Conn, signed: &Signed) -> Answer
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let (parts, body) = req.into_parts();
        let boundary = parts
            .headers
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|ct| multer::parse_boundary(ct).ok())
            .ok_or(PageError::BadRequest("not multipart/form-data"))?;
        let data = http::read_body(&parts.headers, body, self.inner.config.max_body_bytes).await?;
        let (fields, uploads) = read_multipart(data, boundary).await?;
        self.check_csrf(signed, &fields)?;
        let get = |k: &str| fields.get(k).cloned().unwrap_or_default();
        let form = ComposeFields {
            to: get("to"),
            cc: get("cc"),
            subject: get("subject"),
            body: get("body"),
            in_reply_to: get("in_reply_to"),
            references: get("references"),
            reply_folder: get("reply_folder"),
            reply_uid: get("reply_uid"),
            forward_folder: get("forward_folder"),
            forward_uid: get("forward_uid"),
        };
        let empty = HashMap::new();
        let again = |msg: String| {
            self.compose_form(
                signed,
                &empty,
                StatusCode::UNPROCESSABLE_ENTITY,
                "New message",
                form.clone(),
                Vec::new(),
                Some(msg),
            )
        };
        let (to, cc) = match (parse_addresses(&form.to), parse_addresses(&form.cc)) {
            (Ok(to), Ok(cc)) => (to, cc),
            (Err(bad), _) | (_, Err(bad)) => {
                return again(format!("“{bad}” is not an e-mail address.")).await
            }
        };
        if to.is_empty() && cc.is_empty() {
            return again("Say who the message is for.".to_owned()).await;
        }
        // A forward carries the original's attachments.
        let mut attachments: Vec<(String, String, Vec<u8>)> = Vec::new();
        if let Ok(uid) = form.forward_uid.parse::<u32>() {
            let folder = if form.forward_folder.is_empty() {
                "INBOX"
            } else {
                &form.forward_folder
            };
            let (raw, _) = self.original(signed, folder, uid).await?;
            attachments = tokio::task::spawn_blocking(move || view::all_attachments(&raw)).await?;
        }
        for u in uploads {
            attachments.push((u.filename, u.content_type, u.data.to_vec()));
        }
        let account = signed.session.account.clone();
        let hostname = self.inner.mail.hostname.clone();
        let message = build(&account, &hostname, &to, &cc, &form, attachments)
            .map_err(|_| PageError::BadRequest("message"))?;
        let recipients: Vec<String> = to.iter().chain(cc.iter()).cloned().collect();
        let client = format!("web ([{}])", conn.peer.ip());
        let protocol = if conn.tls { "HTTPS" } else { "HTTP" };
        let result = msgr_mail::submit::submit(
            &self.inner.mail,
            &account,
            &recipients,
            message,
            &client,
            protocol,
        )
        .await;
        match result {
            Ok(_) => {}
            Err(SubmitError::Recipient { address, source }) => {
                let why = match source {
                    RouteError::UnknownUser => "has no mailbox here",
                    RouteError::Lookup(_) => "could not be checked just now; try again",
                    _ => "is not an address mail can be sent to",
                };
                return again(format!("{address} {why}.")).await;
            }
            Err(SubmitError::TooBig(n)) => {
                return again(format!(
                    "The message is larger than the limit of {} .",
                    pages::human_size(n)
                ))
                .await
            }
            Err(SubmitError::TooManyRecipients(n)) => {
                return again(format!("A message may have at most {n} recipients.")).await
            }
            Err(SubmitError::NoRecipients) => {
                return again("Say who the message is for.".to_owned()).await
            }
            Err(SubmitError::Deliver(e)) if e.is_over_quota() => {
                return again("Your mailbox is full; delete some mail and send again.".to_owned())
                    .await
            }
            Err(SubmitError::Deliver(e)) => {
                tracing::warn!(account, error = %e, "web send failed");
                return Err(PageError::Busy("delivery"));
            }
        }
        // The original of a reply is answered now.
        if let Ok(uid) = form.reply_uid.parse::<u32>() {
            let (a, folder) = (account.clone(), form.reply_folder.clone());
            let marked = self
                .blocking(move |s| {
                    if let Some(f) = s.folder(&a, &folder)? {
                        s.store_flags(f.id, &[uid], FlagOp::Add, Flags::ANSWERED, &[])?;
                    }
                    Ok(())
                })
                .await;
            if marked.is_ok() {
                self.inner.mail.notify.changed(&account);
            }
        }
        Ok(http::see_other("/mail/inbox?notice=sent"))
    }
}

/// The form's text fields and files. A field repeated keeps its first value.
async fn read_multipart(
    data: Bytes,
    boundary: String,
) -> Result<(HashMap<String, String>, Vec<Upload>), PageError> {
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(data) });
    let mut mp = multer::Multipart::new(stream, boundary);
    let mut fields = HashMap::new();
    let mut uploads = Vec::new();
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(_) => return Err(PageError::BadRequest("multipart")),
        };
        let name = field.name().unwrap_or_default().to_owned();
        let filename = field.file_name().map(str::to_owned);
        let content_type = field
            .content_type()
            .map(|m| m.essence_str().to_owned())
            .unwrap_or_else(|| "application/octet-stream".to_owned());
        let bytes = field
            .bytes()
            .await
            .map_err(|_| PageError::BadRequest("multipart"))?;
        match filename {
            Some(f) if name == "attachment" => {
                // A file input left empty still sends a part with an empty name.
                if !f.is_empty() || !bytes.is_empty() {
                    uploads.push(Upload {
                        filename: f,
                        content_type,
                        data: bytes,
                    });
                }
            }
            _ => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                fields.entry(name).or_insert(text);
            }
        }
    }
    Ok((fields, uploads))
}

/// The RFC 5322 message of the form.
fn build(
    account: &str,
    hostname: &str,
    to: &[String],
    cc: &[String],
    form: &ComposeFields,
    attachments: Vec<(String, String, Vec<u8>)>,
) -> std::io::Result<Vec<u8>> {
    use mail_builder::MessageBuilder;
    let id = format!("{}@{hostname}", hex::encode(rand::random::<[u8; 12]>()));
    // Browsers send CRLF in textareas; mail-builder encodes the text itself.
    let body = form.body.replace("\r\n", "\n");
    let mut b = MessageBuilder::new()
        .from(account.to_owned())
        .message_id(id)
        .subject(
            form.subject
                .chars()
                .filter(|c| !c.is_control())
                .collect::<String>(),
        )
        .text_body(body);
    if !to.is_empty() {
        b = b.to(to.to_vec());
    }
    if !cc.is_empty() {
        b = b.cc(cc.to_vec());
    }
    let clean_id = |s: &str| -> String {
        s.trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .chars()
            .filter(|c| !c.is_whitespace() && !c.is_control() && *c != '<' && *c != '>')
            .collect()
    };
    let in_reply_to = clean_id(&form.in_reply_to);
    if !in_reply_to.is_empty() {
        b = b.in_reply_to(in_reply_to);
    }
    let refs: Vec<String> = form
        .references
        .split_whitespace()
        .map(clean_id)
        .filter(|r| !r.is_empty())
        .take(50)
        .collect();
    if !refs.is_empty() {
        b = b.references(refs);
    }
    for (name, ctype, data) in attachments {
        let ctype = http::safe_content_type(&ctype)
            .to_str()
            .unwrap_or("application/octet-stream")
            .to_owned();
        let name: String = name.chars().filter(|c| !c.is_control()).collect();
        b = b.attachment(ctype, name, data);
    }
    b.write_to_vec()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            parse_addresses("a@x.test, Bob <b@y.test>; a@X.test ,,").unwrap(),
            ["a@x.test", "b@y.test"]
        );
        assert!(parse_addresses("not an address").is_err());
        assert!(parse_addresses("a@b@c.test").is_err());
        assert!(parse_addresses("a@x.test\r\nBcc: evil@x.test").is_err());
        assert!(parse_addresses("").unwrap().is_empty());
    }

    #[test]
    fn reply_and_forward_fields() {
        let raw = b"From: Bob <bob@x.test>\r\nTo: alice@example.com, carol@x.test\r\nCc: dave@x.test\r\nSubject: Plans\r\nMessage-ID: <m1@x.test>\r\nReferences: <m0@x.test>\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nline one\r\n\r\nline two\r\n--b\r\nContent-Type: image/png\r\nContent-Disposition: attachment; filename=a.png\r\n\r\nPNG\r\n--b--\r\n";
        let (r, fw) = prefill(raw, Kind::ReplyAll, "alice@example.com", "INBOX", 7, 1000);
        assert_eq!(r.to, "bob@x.test");
        assert_eq!(r.cc, "carol@x.test, dave@x.test");
        assert_eq!(r.subject, "Re: Plans");
        assert_eq!(r.in_reply_to, "m1@x.test");
        assert_eq!(r.references, "m0@x.test m1@x.test");
        assert!(r.body.contains("> line one\n>\n> line two"));
        assert!(fw.is_empty());
        let (f, fw) = prefill(raw, Kind::Forward, "alice@example.com", "INBOX", 7, 1000);
        assert_eq!(f.subject, "Fwd: Plans");
        assert_eq!(f.forward_uid, "7");
        assert_eq!(fw, ["a.png"]);
        assert_eq!(prefixed("Re:", "re: x"), "re: x");
    }

    #[test]
    fn built_message_has_threading_headers_and_attachments() {
        let form = ComposeFields {
            subject: "Hi\r\nBcc: x@y.test".into(),
            body: "hello\r\nthere".into(),
            in_reply_to: "<m1@x.test>".into(),
            references: "<m0@x.test> <m1@x.test>".into(),
            ..Default::default()
        };
        let raw = build(
            "alice@example.com",
            "mail.test",
            &["bob@x.test".into()],
            &[],
            &form,
            vec![("f.txt".into(), "text/plain".into(), b"data".to_vec())],
        )
        .unwrap();
        let m = view::parse(&raw).unwrap();
        assert_eq!(m.in_reply_to().as_text(), Some("m1@x.test"));
        assert_eq!(m.subject(), Some("HiBcc: x@y.test"));
        assert!(m.header("Bcc").is_none());
        assert_eq!(m.attachment_count(), 1);
        assert!(m.message_id().is_some_and(|id| id.ends_with("@mail.test")));
    }
}
