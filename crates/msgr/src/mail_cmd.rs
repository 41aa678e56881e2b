//! `msgr mail dns DOMAIN`: the DNS records to publish for a domain whose mail msgr handles (MX, SPF, DKIM
//! with the server's two keys, RSA and Ed25519, made here if the server has not made them yet, DMARC).
//!
//! `msgr mail allow|block|unblock USER ADDR` and `msgr mail senders USER`: a user's allow and block lists of
//! mail senders (an address, or `@domain` for a whole domain), consulted before the spam score.
//!
//! `msgr mail queue|retry`: the outbound queue as an operator sees it. Both work on the store of `--data DIR`
//! directly, also while the server runs: the server's queue runner looks at the store every few seconds, so a
//! retry made here is picked up without signalling the server.

use anyhow::Result;
use clap::Subcommand;
use msgr_store::{AccountStore, MailStore, QueuedRecipient, SenderList, SenderStore, Store};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Subcommand)]
pub enum MailCommand {
    /// List the outbound queue: one line per recipient still waiting for delivery.
    Queue,
    /// Make every queued recipient due now; a running server retries them within seconds.
    Retry,
    /// Deliver USER's mail from ADDR (an address, or @domain) to the Inbox without scoring it.
    Allow {
        /// The account whose list it is.
        user: String,
        /// A sender address, or @domain for every address of a domain.
        addr: String,
    },
    /// Deliver USER's mail from ADDR (an address, or @domain) to Junk without scoring it.
    Block {
        /// The account whose list it is.
        user: String,
        /// A sender address, or @domain for every address of a domain.
        addr: String,
    },
    /// Take ADDR off USER's allow or block list.
    Unblock {
        /// The account whose list it is.
        user: String,
        /// The entry as it was added.
        addr: String,
    },
    /// List USER's allowed and blocked senders.
    Senders {
        /// The account whose lists to show.
        user: String,
    },
    /// Print the MX, SPF, DKIM and DMARC records to publish for DOMAIN.
    Dns {
        /// The mail domain (the part after `@`).
        domain: String,
    },
}

/// `msgr mail dns`: the records for `domain`, with `host` as its MX and the keys in `dkim_dir`.
pub fn dns(domain: &str, host: &str, dkim_dir: &std::path::Path) -> Result<String> {
    let signer = msgr_mail::dkim::Signer::load_or_create(dkim_dir)?;
    Ok(msgr_mail::dkim::dns_records(
        domain.trim_end_matches('.'),
        host.trim_end_matches('.'),
        &signer.ed25519_public_key(),
        signer.rsa_public_key(),
    ))
}

pub fn run(store: &Store, cmd: MailCommand) -> Result<()> {
    match cmd {
        MailCommand::Queue => print!("{}", table(&store.queue_list()?)),
        MailCommand::Dns { .. } => unreachable!("handled before the store is opened"),
        MailCommand::Allow { user, addr } => set(store, &user, &addr, SenderList::Allow)?,
        MailCommand::Block { user, addr } => set(store, &user, &addr, SenderList::Block)?,
        MailCommand::Unblock { user, addr } => {
            let user = account(store, &user)?;
            let addr = sender_entry(&addr)?;
            if !store.sender_remove(&user, &addr)? {
                anyhow::bail!("{addr} is on neither of {user}'s lists");
            }
            println!("{addr} removed from {user}'s sender lists");
        }
        MailCommand::Senders { user } => {
            let user = account(store, &user)?;
            for (sender, list) in store.sender_entries(&user)? {
                println!("{}\t{sender}", list.as_str());
            }
        }
        MailCommand::Retry => {
            let n = store.queue_retry_now(now())?;
            println!(
                "{n} queued recipient{} due now",
                if n == 1 { "" } else { "s" }
            );
        }
    }
    Ok(())
}

/// The account `user` names, lowercased; an error naming it when there is none.
fn account(store: &Store, user: &str) -> Result<String> {
    match store.account(user)? {
        Some(a) => Ok(a.email),
        None => anyhow::bail!("no account {user}"),
    }
}

/// A list entry as kept: `name@domain` or `@domain`, lowercased, without angle brackets or spaces.
fn sender_entry(addr: &str) -> Result<String> {
    let a = addr
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_lowercase();
    let ok = match a.split_once('@') {
        Some((local, domain)) => {
            !domain.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !local.contains(char::is_whitespace)
                && !a.chars().any(|c| c.is_control() || c.is_whitespace())
        }
        None => false,
    };
    if !ok {
        anyhow::bail!("{addr:?} is neither an address nor @domain");
    }
    Ok(a)
}

fn set(store: &Store, user: &str, addr: &str, list: SenderList) -> Result<()> {
    let user = account(store, user)?;
    let addr = sender_entry(addr)?;
    store.sender_set(&user, &addr, list, now())?;
    let folder = match list {
        SenderList::Allow => "Inbox",
        SenderList::Block => "Junk",
    };
    println!("mail from {addr} to {user} now goes to {folder} unscored");
    Ok(())
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The queue as aligned columns under a header, or `queue is empty`.
fn table(queue: &[QueuedRecipient]) -> String {
    if queue.is_empty() {
        return "queue is empty\n".to_owned();
    }
    let header = [
        "id",
        "sender",
        "recipient",
        "attempts",
        "next attempt",
        "last error",
    ]
    .map(String::from);
    let rows: Vec<[String; 6]> = queue
        .iter()
        .map(|q| {
            [
                q.queue_id.to_string(),
                if q.sender.is_empty() {
                    "<>".to_owned()
                } else {
                    q.sender.clone()
                },
                q.recipient.clone(),
                q.attempts.to_string(),
                msgr_mail::date::utc_datetime(q.next_attempt),
                q.last_error
                    .as_deref()
                    .unwrap_or("-")
                    .replace(['\r', '\n'], " "),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell); // The last column is not padded.
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_entries() {
        assert_eq!(
            sender_entry(" <Bob@Example.COM> ").ok().as_deref(),
            Some("bob@example.com")
        );
        assert_eq!(
            sender_entry("@Spam.test").ok().as_deref(),
            Some("@spam.test")
        );
        for bad in [
            "",
            "bob",
            "bob@",
            "a@b@c.d",
            "@localhost",
            "a b@c.d",
            "a@c\r\nd.e",
        ] {
            assert!(sender_entry(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn table_layout() {
        assert_eq!(table(&[]), "queue is empty\n");
        let q = QueuedRecipient {
            id: 1,
            queue_id: 12,
            sender: String::new(),
            account: None,
            recipient: "bob@other.test".into(),
            domain: "other.test".into(),
            attempts: 2,
            created_at: 0,
            next_attempt: 0,
            last_error: Some("451 try\r\nlater".into()),
            size: 1,
        };
        assert_eq!(
            table(&[q]),
            "id  sender  recipient       attempts  next attempt         last error\n\
             12  <>      bob@other.test  2         1970-01-01 00:00:00  451 try  later\n"
        );
    }
}
