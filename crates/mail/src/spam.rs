//! The spam filter on the MX: a message from an unauthenticated sender is scored by `msgr-spam` against
//! the global model (trained at start from `[mail.spam] corpus` or the corpus built into msgr), gets
//! `X-Spam-Status` and `X-Spam-Score` in front of its header, and goes to `Junk` when its score reaches
//! the threshold. Nothing is ever dropped for its score: a false positive costs a look in `Junk`, not a
//! lost message.
//!
//! Each recipient's own training (its moves into and out of `Junk` over IMAP, through the [`JunkHook`]
//! [`Trainer`]) is kept in the store and added to the global model when that recipient's copy is scored.
//!
//! Before any scoring, each recipient's allow and block lists of senders are consulted ([`judge`]): an
//! allowed sender's mail goes to the Inbox and a blocked one's to `Junk`, unscored, with an
//! `X-Msgr-Sender-List` header saying which entry decided. The lists are the user's own mail lists
//! (`msgr mail allow|block`, address or `@domain`) and their Messenger lists: a sender on the Messenger
//! block list (`BL`) is blocked, one on the forward list (`FL`, a contact they added) is allowed; the
//! allow list (`AL`) and reverse list (`RL`) say only who may see their presence and decide nothing about
//! mail. A mail-list entry wins over the Messenger lists (it is the more specific wish), a block over an
//! allow at the same level. An allow entry is not honoured when sender authentication found the message's
//! `From` domain failing DMARC: a forged friend is scored like a stranger.
//!
//! Scoring parses the whole message and reads the store, so sessions run it on the blocking pool
//! ([`SpamFilter::judge`] is synchronous); the async workers only wait for it.

use crate::config::SpamConfig;
use crate::{JunkHook, JunkMove};
use msgr_spam::bayes::Counts;
use msgr_spam::{corpus, Analysis, Filter, Hit, Model, Verdict};
use msgr_store::{MailStore, SenderFacts, SenderList, SenderStore, SpamStore, Store};
use std::sync::Arc;

/// The model of the corpus built into msgr.
static BUNDLED: std::sync::OnceLock<Model> = std::sync::OnceLock::new();

/// The global model and the threshold, shared by every SMTP session.
pub struct SpamFilter {
    filter: Filter,
}

impl SpamFilter {
    /// Trains the global model: from `config.corpus` (a directory with `ham.mbox` and `spam.mbox`) if set
    /// and readable, else from the bundled corpus. An unreadable corpus is logged, never fatal: a server
    /// with the small model still filters.
    pub fn from_config(config: &SpamConfig) -> SpamFilter {
        let model = match &config.corpus {
            Some(dir) => match (
                std::fs::read(dir.join("ham.mbox")),
                std::fs::read(dir.join("spam.mbox")),
            ) {
                (Ok(ham), Ok(spam)) => corpus::train_mboxes(&ham, &spam),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "spam corpus unreadable; using the bundled one");
                    BUNDLED.get_or_init(corpus::bundled_model).clone()
                }
            },
            // Trained once per process and cloned: tests start many servers.
            None => BUNDLED.get_or_init(corpus::bundled_model).clone(),
        };
        tracing::info!(
            spam = model.spam_messages(),
            ham = model.ham_messages(),
            tokens = model.len(),
            "spam model trained"
        );
        SpamFilter::new(model, config.threshold)
    }

    pub fn new(model: Model, threshold: f64) -> SpamFilter {
        SpamFilter {
            filter: Filter::new(model, threshold),
        }
    }

    /// The verdict for each of `accounts` (local recipients), each scored with the global model plus that
    /// account's own training from `store`, with `extra` hits from checks made outside the content (sender
    /// authentication). Blocking: parses and tokenizes the message once, then one store read per account.
    /// A store failure costs only the personal part of the verdict.
    pub fn judge(
        &self,
        store: &Store,
        raw: &[u8],
        now: i64,
        accounts: &[String],
        extra: &[Hit],
    ) -> Vec<Verdict> {
        let analysis = Analysis::new(raw, Some(now));
        accounts
            .iter()
            .map(|account| {
                let user = match store.spam_counts(account, &analysis.tokens) {
                    Ok(c) if c.spam_messages + c.ham_messages > 0 => Some(Model::from_counts(
                        c.spam_messages,
                        c.ham_messages,
                        c.tokens
                            .into_iter()
                            .map(|(t, spam, ham)| (t, Counts { spam, ham })),
                    )),
                    Ok(_) => None,
                    Err(e) => {
                        tracing::warn!(account, error = %e, "reading spam training failed");
                        None
                    }
                };
                self.filter.verdict(&analysis, user.as_ref(), extra)
            })
            .collect()
    }
}

/// Which list of the recipient's decided about a sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListSource {
    /// The recipient's mail allow or block list.
    Mail,
    /// The recipient's Messenger block list (`BL`).
    MessengerBlock,
    /// The recipient's Messenger forward list (`FL`): a contact they added.
    MessengerContact,
}

impl ListSource {
    fn as_str(self) -> &'static str {
        match self {
            ListSource::Mail => "mail",
            ListSource::MessengerBlock => "messenger-block",
            ListSource::MessengerContact => "messenger-contact",
        }
    }
}

/// A recipient's standing decision about a message's sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub list: SenderList,
    pub source: ListSource,
    /// The entry that matched: an address, or `@domain` for a mail-list domain entry.
    pub entry: String,
}

impl Listed {
    /// `X-Msgr-Sender-List: allow; entry=bob@example.com; list=mail`, CRLF-terminated.
    pub fn header_line(&self) -> String {
        format!(
            "X-Msgr-Sender-List: {}; entry={}; list={}\r\n",
            self.list.as_str(),
            printable(&self.entry),
            self.source.as_str()
        )
    }
}

/// Header values come from the store, which took them from users and messages: no line breaks or controls.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The lists' decision from what the store knows: a mail-list block, a mail-list allow, a Messenger `BL`,
/// a Messenger `FL`, in that order; `None` when no list names the sender.
pub fn decide(facts: &SenderFacts) -> Option<Listed> {
    const FL: u8 = 1;
    const BL: u8 = 4;
    let mail = |want: SenderList| {
        facts
            .mail
            .iter()
            .find(|(_, l)| *l == want)
            .map(|(entry, list)| Listed {
                list: *list,
                source: ListSource::Mail,
                entry: entry.clone(),
            })
    };
    let messenger = |bit: u8, list: SenderList, source: ListSource| {
        facts
            .messenger
            .iter()
            .find(|(_, bits)| bits & bit != 0)
            .map(|(address, _)| Listed {
                list,
                source,
                entry: address.clone(),
            })
    };
    mail(SenderList::Block)
        .or_else(|| mail(SenderList::Allow))
        .or_else(|| messenger(BL, SenderList::Block, ListSource::MessengerBlock))
        .or_else(|| messenger(FL, SenderList::Allow, ListSource::MessengerContact))
}

/// The sender addresses a message's lists are checked against: the envelope sender and every address of
/// the `From` header, lowercased, without duplicates.
pub fn sender_addresses(envelope: &str, raw: &[u8]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |a: &str| {
        let a = a.trim().to_lowercase();
        if a.contains('@') && !out.contains(&a) {
            out.push(a);
        }
    };
    add(envelope);
    if let Some(msg) = mail_parser::MessageParser::new().parse_headers(raw) {
        if let Some(from) = msg.from() {
            for addr in from.iter() {
                if let Some(a) = addr.address() {
                    add(a);
                }
            }
        }
    }
    out
}

/// What happens to one recipient's copy.
#[derive(Clone, Debug, Default)]
pub struct Judgement {
    /// The sender lists' decision, when one applied (then the message was not scored).
    pub listed: Option<Listed>,
    /// An allow entry that was found but not honoured (the `From` domain failed DMARC).
    pub allow_ignored: Option<Listed>,
    /// The spam verdict, when the message was scored.
    pub verdict: Option<Verdict>,
}

impl Judgement {
    /// Whether the copy goes to `Junk` (`auth_junk`: sender authentication says so whatever the score).
    pub fn is_junk(&self, auth_junk: bool) -> bool {
        match &self.listed {
            Some(l) => l.list == SenderList::Block,
            None => auth_junk || self.verdict.as_ref().is_some_and(|v| v.is_spam()),
        }
    }

    /// The header lines this judgement adds (the list's, or the spam verdict's).
    pub fn header_lines(&self) -> String {
        let mut out = String::new();
        if let Some(l) = &self.listed {
            out.push_str(&l.header_line());
        }
        if let Some(l) = &self.allow_ignored {
            out.push_str(&format!(
                "X-Msgr-Sender-List: ignored allow; entry={}; list={}; reason=dmarc-fail\r\n",
                printable(&l.entry),
                l.source.as_str()
            ));
        }
        if let Some(v) = &self.verdict {
            out.push_str(&v.header_lines());
        }
        out
    }
}

/// Who a message says it is from, as the sender lists see it.
#[derive(Clone, Debug, Default)]
pub struct Senders {
    /// The envelope sender and the `From` addresses ([`sender_addresses`]).
    pub addresses: Vec<String>,
    /// The `From` domain failed DMARC: allow entries are not honoured.
    pub from_forged: bool,
}

/// The judgement for each of `accounts` (local recipients) of a message from `senders`: their sender
/// lists first, then `filter` (when on) for those the lists leave open, with `extra` hits. Blocking.
/// A store failure reading the lists is logged and the message scored as if no list named the sender.
pub fn judge(
    filter: Option<&SpamFilter>,
    store: &Store,
    raw: &[u8],
    now: i64,
    accounts: &[String],
    senders: &Senders,
    extra: &[Hit],
) -> Vec<Judgement> {
    let mut out: Vec<Judgement> = accounts
        .iter()
        .map(|account| {
            let listed = match store.sender_facts(account, &senders.addresses) {
                Ok(facts) => decide(&facts),
                Err(e) => {
                    tracing::warn!(account, error = %e, "reading sender lists failed");
                    None
                }
            };
            match listed {
                Some(l) if l.list == SenderList::Allow && senders.from_forged => Judgement {
                    allow_ignored: Some(l),
                    ..Judgement::default()
                },
                listed => Judgement {
                    listed,
                    ..Judgement::default()
                },
            }
        })
        .collect();
    let open: Vec<usize> = (0..out.len())
        .filter(|&i| out[i].listed.is_none())
        .collect();
    if let (Some(filter), false) = (filter, open.is_empty()) {
        let who: Vec<String> = open.iter().map(|&i| accounts[i].clone()).collect();
        for (i, verdict) in open
            .into_iter()
            .zip(filter.judge(store, raw, now, &who, extra))
        {
            out[i].verdict = Some(verdict);
        }
    }
    out
}

/// How long a first attempt waits for its retry before greylisting forgets it, and how long a passed
/// triplet is remembered after its last message (RFC 6647 §4.3's usual values).
const GREYLIST_RETRY_WINDOW: i64 = 4 * 3600;
const GREYLIST_EXPIRY: i64 = 36 * 86400;

/// The network greylisting keys a client by: its IPv4 /24 or IPv6 /64 (big senders retry from another
/// address of the same pool).
pub fn client_net(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// Greylisting's answer for one recipient of MX mail from `sender` at `ip`: a sender on the recipient's
/// allow lists (mail or Messenger contact) passes at once. Blocking.
pub fn greylist(
    store: &Store,
    ip: std::net::IpAddr,
    sender: &str,
    account: &str,
    now: i64,
    delay_secs: u64,
) -> msgr_store::Result<msgr_store::Greylist> {
    let sender = sender.to_lowercase();
    if sender.contains('@') {
        let facts = store.sender_facts(account, std::slice::from_ref(&sender))?;
        if decide(&facts).is_some_and(|l| l.list == SenderList::Allow) {
            return Ok(msgr_store::Greylist::Passed);
        }
    }
    let times = msgr_store::GreylistTimes {
        delay: i64::try_from(delay_secs).unwrap_or(i64::MAX),
        retry_window: GREYLIST_RETRY_WINDOW,
        expiry: GREYLIST_EXPIRY,
    };
    store.greylist(&client_net(ip), &sender, account, now, times)
}

/// Trains `account`'s own counts on one stored message: `spam` when the user moved it into `Junk`, ham
/// when they moved it out. Blocking.
pub fn train(store: &Store, account: &str, raw: &[u8], spam: bool) -> msgr_store::Result<()> {
    // No clock: the user's judgement is about the content, and date rules do not tokenize anyway.
    let tokens = Analysis::new(raw, None).tokens;
    store.spam_train(account, &tokens, spam)
}

/// The [`JunkHook`] that turns users' moves into training, on the blocking pool.
pub struct Trainer {
    pub store: Arc<Store>,
}

impl JunkHook for Trainer {
    fn moved(&self, account: &str, direction: JunkMove, folder_id: i64, uids: &[u32]) {
        let store = self.store.clone();
        let account = account.to_owned();
        let uids = uids.to_vec();
        let spam = direction == JunkMove::IntoJunk;
        let work = move || {
            for uid in uids {
                // A message expunged meanwhile is simply not learned from.
                let result = store
                    .message_raw(folder_id, uid)
                    .and_then(|raw| raw.map_or(Ok(()), |raw| train(&store, &account, &raw, spam)));
                if let Err(e) = result {
                    tracing::warn!(account, uid, error = %e, "spam training failed");
                }
            }
            tracing::info!(account, spam, "spam training from a Junk move");
        };
        // The hook is called from a session task; without a runtime (never in the server) train inline.
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn_blocking(work);
            }
            Err(_) => work(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(mail: &[(&str, SenderList)], messenger: &[(&str, u8)]) -> SenderFacts {
        SenderFacts {
            mail: mail.iter().map(|(e, l)| ((*e).to_owned(), *l)).collect(),
            messenger: messenger
                .iter()
                .map(|(a, b)| ((*a).to_owned(), *b))
                .collect(),
        }
    }

    fn listed(list: SenderList, source: ListSource, entry: &str) -> Option<Listed> {
        Some(Listed {
            list,
            source,
            entry: entry.to_owned(),
        })
    }

    /// Mail-list block, mail-list allow, Messenger BL, Messenger FL, in that order; AL and RL decide nothing.
    #[test]
    fn list_precedence() {
        use ListSource::*;
        use SenderList::*;
        assert_eq!(decide(&SenderFacts::default()), None);
        assert_eq!(decide(&facts(&[], &[("a@x", 2), ("b@x", 8)])), None);
        assert_eq!(
            decide(&facts(&[], &[("a@x", 1 | 2 | 8)])),
            listed(Allow, MessengerContact, "a@x")
        );
        // A blocked contact stays on the forward list in MSN; the block wins.
        assert_eq!(
            decide(&facts(&[], &[("a@x", 1 | 4)])),
            listed(Block, MessengerBlock, "a@x")
        );
        assert_eq!(
            decide(&facts(&[("a@x", Allow)], &[("a@x", 4)])),
            listed(Allow, Mail, "a@x")
        );
        assert_eq!(
            decide(&facts(&[("a@x", Allow), ("@x", Block)], &[("a@x", 1)])),
            listed(Block, Mail, "@x")
        );
    }

    #[test]
    fn greylisting_networks() {
        let v4 = std::net::IpAddr::from([192, 0, 2, 77]);
        assert_eq!(client_net(v4), "192.0.2.0/24");
        assert_eq!(
            client_net(std::net::IpAddr::from([0x2001, 0xdb8, 1, 2, 3, 4, 5, 6])),
            "2001:db8:1:2::/64"
        );
    }

    #[test]
    fn sender_addresses_are_the_envelope_and_from() {
        let raw = b"From: Bob <Bob@Example.COM>, carol@example.com\r\nTo: a@b\r\n\r\nhi\r\n";
        assert_eq!(
            sender_addresses("bounces@list.example", raw),
            vec![
                "bounces@list.example",
                "bob@example.com",
                "carol@example.com"
            ]
        );
        assert_eq!(sender_addresses("", b"garbage"), Vec::<String>::new());
        assert_eq!(
            sender_addresses("Bob@example.com", raw)[0],
            "bob@example.com"
        );
    }

    #[test]
    fn judgement_headers_and_folder() {
        let allow = Judgement {
            listed: listed(
                SenderList::Allow,
                ListSource::MessengerContact,
                "bob@x\r\nX: y",
            ),
            ..Judgement::default()
        };
        assert!(
            !allow.is_junk(true),
            "an allowed sender passes even DMARC quarantine"
        );
        assert_eq!(
            allow.header_lines(),
            "X-Msgr-Sender-List: allow; entry=bob@x??X: y; list=messenger-contact\r\n"
        );
        let block = Judgement {
            listed: listed(SenderList::Block, ListSource::Mail, "@x"),
            ..Judgement::default()
        };
        assert!(block.is_junk(false));
        assert!(Judgement::default().is_junk(true));
        assert!(!Judgement::default().is_junk(false));
    }
}
