//! Mail written by a signed-in account, wherever it was written: SMTP submission (`smtp::session`) and the
//! web inbox (`msgr-web`'s compose form) take this one path, so a message sent from either is routed,
//! traced, copied to `Sent` (already `\Seen`), queued for other hosts (and DKIM-signed there by
//! `outbound`) in the same way. The MX's own deliveries use [`store_message`] too, with the spam filter's
//! header lines per group of recipients.
//!
//! | step | SMTP submission | web inbox |
//! |---|---|---|
//! | recipients | each `RCPT` through [`Context::route`] | every address through [`Context::route`] in [`submit`] |
//! | trace fields | [`trace_headers`] with the `HELO` name and `ESMTPSA`… | [`trace_headers`] with `HTTPS` |
//! | storing | [`store_message`]: local copies, the `Sent` copy, the queue entry, one durable delivery | the same |

use crate::deliver::DeliverError;
use crate::{mime, Context, LookupError};
use msgr_store::{Delivery, Flags, FolderRef, LocalTarget, MessageSummary, Outbound, SpecialUse};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where mail for one recipient address goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Into this local account's mailbox (lowercased, as stored).
    Local(String),
    /// Through the outbound queue to another host.
    Remote,
}

/// Why a recipient address is refused.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// Not `local@domain`.
    #[error("bad recipient address syntax")]
    BadSyntax,
    /// A local domain without such an account.
    #[error("recipient address rejected: user unknown")]
    UnknownUser,
    /// Another host's address from a client that is not signed in (never an open relay).
    #[error("relay access denied")]
    RelayDenied,
    /// The lookup itself failed (a temporary failure).
    #[error(transparent)]
    Lookup(#[from] LookupError),
}

impl Context {
    /// Where mail for `address` goes: a local account's mailbox, or (only for a signed-in sender,
    /// `authenticated`) the outbound queue. What SMTP `RCPT` and the web compose both ask.
    pub async fn route(&self, address: &str, authenticated: bool) -> Result<Route, RouteError> {
        let Some((_, domain)) = address.rsplit_once('@') else {
            return Err(RouteError::BadSyntax);
        };
        if domain.is_empty() {
            return Err(RouteError::BadSyntax);
        }
        if self.is_local_domain(domain).await? {
            match self.local_account(address).await? {
                Some(account) => Ok(Route::Local(account)),
                None => Err(RouteError::UnknownUser),
            }
        } else if authenticated {
            Ok(Route::Remote)
        } else {
            Err(RouteError::RelayDenied)
        }
    }
}

/// How the message reached the server, for its `Received` field (RFC 5321 §4.4).
pub struct Trace<'a> {
    /// The `from` clause: the client's name and address literal (`mail.example ([192.0.2.1])`).
    pub from: &'a str,
    /// The `with` protocol (`ESMTPSA`, `HTTPS`, …).
    pub protocol: &'a str,
    /// The queue id that the log line and the reply name.
    pub id: &'a str,
    /// Seconds since the Unix epoch.
    pub now: i64,
    /// Submission (RFC 6409 §8.2–8.3): complete a missing `Date` and `Message-ID`.
    pub complete: bool,
}

/// `Return-Path` and `Received` (RFC 5321 §4.4) in front of `body`, and for submission a `Date` and
/// `Message-ID` when the client left them out.
///
/// `Return-Path` belongs to final delivery: a message that also goes to other hosts (`to_remote`) is stored
/// without it (its local copies share the bytes that are relayed, and the next hop adds its own).
pub fn trace_headers(
    ctx: &Context,
    sender: &str,
    to_remote: bool,
    trace: &Trace<'_>,
    body: Vec<u8>,
) -> Vec<u8> {
    let mut head = String::with_capacity(256);
    if !to_remote {
        head.push_str(&format!("Return-Path: <{}>\r\n", printable(sender)));
    }
    // Without reverse DNS (msgr does no lookups on the receiving path) the `from` clause is the name
    // the client gave and its address literal, as RFC 5321 §4.4 allows.
    head.push_str(&format!(
        "Received: from {}\r\n\tby {} with {} id {};\r\n\t{}\r\n",
        printable(trace.from),
        ctx.hostname,
        trace.protocol,
        trace.id,
        crate::date::rfc5322(trace.now)
    ));
    if trace.complete {
        // Mail without `Date` or `Message-ID` is what other hosts' spam filters reject first.
        let header = header_section(&body);
        if !has_field(header, b"date") {
            head.push_str(&format!("Date: {}\r\n", crate::date::rfc5322(trace.now)));
        }
        if !has_field(header, b"message-id") {
            head.push_str(&format!("Message-ID: <{}@{}>\r\n", trace.id, ctx.hostname));
        }
    }
    let mut raw = Vec::with_capacity(head.len() + body.len());
    raw.extend_from_slice(head.as_bytes());
    raw.extend_from_slice(&body);
    raw
}

/// One message to store and queue: the bytes split where header lines per group of recipients go.
pub struct Message<'a> {
    /// Our trace fields ([`trace_headers`]).
    pub trace: &'a [u8],
    /// The client's message.
    pub message: &'a [u8],
    pub summary: MessageSummary,
    /// Seconds since the Unix epoch.
    pub now: i64,
    /// Local recipients in groups that share header lines (the spam verdict's; one empty group when
    /// nothing is judged). An empty list when there are none.
    pub groups: Vec<(String, Vec<LocalTarget>)>,
    /// The signed-in sender, who gets the `Sent` copy and hears of failures; `None` on the MX.
    pub account: Option<&'a str>,
    /// The reverse-path.
    pub sender: &'a str,
    /// Recipients at other hosts.
    pub remote: &'a [String],
}

/// Stores a message for its local recipients (one delivery per group, in order; with one group, the usual
/// case, one transaction), adds the sender's `\Seen` copy to `Sent` and the queue entry for other hosts,
/// and wakes the outbound runner. Returns once everything is durable.
///
/// A failure after an earlier group was stored is returned as a failure, so a retrying sender can only
/// repeat a copy, never lose one.
pub async fn store_message(ctx: &Context, msg: Message<'_>) -> Result<(), DeliverError> {
    let Message {
        trace,
        message,
        summary,
        now,
        mut groups,
        account,
        sender,
        remote,
    } = msg;
    if let Some(account) = account {
        // The sender's own copy, already read, as every webmail and client keeps one.
        let sent = LocalTarget {
            account: account.to_owned(),
            folder: FolderRef::Special(SpecialUse::Sent),
            flags: Flags::SEEN,
        };
        match groups.first_mut() {
            Some((_, targets)) => targets.push(sent),
            None => groups.push((String::new(), vec![sent])),
        }
    }
    if groups.is_empty() {
        // Only remote recipients: the queue entry still needs a delivery to ride in.
        groups.push((String::new(), Vec::new()));
    }
    let mut outbound = (!remote.is_empty()).then(|| Outbound {
        sender: sender.to_owned(),
        account: account.map(str::to_owned),
        recipients: remote.to_vec(),
    });
    let has_outbound = outbound.is_some();
    for (head, targets) in groups {
        let mut bytes = Vec::with_capacity(trace.len() + head.len() + message.len());
        bytes.extend_from_slice(trace);
        bytes.extend_from_slice(head.as_bytes());
        bytes.extend_from_slice(message);
        let delivery = Delivery {
            raw: bytes,
            summary: summary.clone(),
            internal_date: now,
            targets,
            outbound: outbound.take(),
        };
        ctx.deliverer.deliver(delivery).await?;
    }
    if has_outbound {
        ctx.outbound_kick.notify_one();
    }
    Ok(())
}

/// Why [`submit`] refused a message. Nothing was stored.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("no recipients")]
    NoRecipients,
    #[error("too many recipients (at most {0})")]
    TooManyRecipients(usize),
    #[error("message exceeds the size limit ({0} bytes)")]
    TooBig(u64),
    #[error("<{address}>: {source}")]
    Recipient {
        address: String,
        #[source]
        source: RouteError,
    },
    #[error(transparent)]
    Deliver(#[from] DeliverError),
}

/// What [`submit`] did with a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submitted {
    /// The queue id in the `Received` field and the log line.
    pub id: String,
    /// Local recipients (accounts, each once).
    pub local: usize,
    /// Recipients queued for other hosts.
    pub remote: usize,
}

/// Submits a complete message (RFC 5322 bytes) from the signed-in `account` to `recipients`, as SMTP
/// submission does after `MAIL FROM:<account>`, `RCPT TO` for each and `DATA`: the same limits
/// (`max_recipients`, `max_message_bytes`), routing, trace fields, `Sent` copy and queue.
/// `client` is the `from` clause of the `Received` field and `protocol` its `with`.
pub async fn submit(
    ctx: &Context,
    account: &str,
    recipients: &[String],
    message: Vec<u8>,
    client: &str,
    protocol: &str,
) -> Result<Submitted, SubmitError> {
    if recipients.is_empty() {
        return Err(SubmitError::NoRecipients);
    }
    if recipients.len() > ctx.config.max_recipients {
        return Err(SubmitError::TooManyRecipients(ctx.config.max_recipients));
    }
    if message.len() as u64 > ctx.config.max_message_bytes {
        return Err(SubmitError::TooBig(ctx.config.max_message_bytes));
    }
    let mut local: Vec<String> = Vec::new();
    let mut remote: Vec<String> = Vec::new();
    for address in recipients {
        match ctx.route(address, true).await {
            Ok(Route::Local(a)) => {
                if !local.contains(&a) {
                    local.push(a);
                }
            }
            Ok(Route::Remote) => remote.push(address.clone()),
            Err(source) => {
                return Err(SubmitError::Recipient {
                    address: address.clone(),
                    source,
                })
            }
        }
    }
    let id = format!("{:016X}", rand::random::<u64>());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let body_len = message.len();
    let trace = Trace {
        from: client,
        protocol,
        id: &id,
        now,
        complete: true,
    };
    let raw = trace_headers(ctx, account, !remote.is_empty(), &trace, message);
    let (trace, message) = raw.split_at(raw.len() - body_len);
    let summary = mime::summarize(&raw);
    let targets: Vec<LocalTarget> = local
        .iter()
        .map(|a| LocalTarget {
            account: a.clone(),
            folder: FolderRef::Special(SpecialUse::Inbox),
            flags: Flags::empty(),
        })
        .collect();
    let groups = if targets.is_empty() {
        Vec::new()
    } else {
        vec![(String::new(), targets)]
    };
    let result = store_message(
        ctx,
        Message {
            trace,
            message,
            summary,
            now,
            groups,
            account: Some(account),
            sender: account,
            remote: &remote,
        },
    )
    .await;
    let size = raw.len();
    let recipients = recipients.len();
    match result {
        Ok(()) => {
            tracing::info!(
                id,
                account,
                recipients,
                size,
                protocol,
                result = "stored",
                "submission"
            );
            Ok(Submitted {
                id,
                local: local.len(),
                remote: remote.len(),
            })
        }
        Err(e) => {
            tracing::info!(id, account, recipients, size, protocol, result = %e, "submission");
            Err(e.into())
        }
    }
}

/// The header section of a message: up to the first empty line (all of it if there is none).
pub(crate) fn header_section(message: &[u8]) -> &[u8] {
    if message.starts_with(b"\r\n") || message.starts_with(b"\n") {
        return &[];
    }
    let end = message
        .windows(2)
        .position(|w| w == b"\n\n")
        .into_iter()
        .chain(message.windows(4).position(|w| w == b"\r\n\r\n"))
        .min()
        .unwrap_or(message.len());
    &message[..end]
}

/// Whether the header section has a field called `name` (lower case), at the start of a line.
pub(crate) fn has_field(header: &[u8], name: &[u8]) -> bool {
    header.split(|&b| b == b'\n').any(|line| {
        line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name)
            && line[name.len()..].trim_ascii_start().first() == Some(&b':')
    })
}

/// `s` with control characters replaced, for replies and headers built from client input.
pub(crate) fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}
