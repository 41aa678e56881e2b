//! The spam filter on the MX: a message from an unauthenticated sender is scored by `msgr-spam` against
//! the global model (trained at start from `[mail.spam] corpus` or the corpus built into msgr), gets
//! `X-Spam-Status` and `X-Spam-Score` in front of its header, and goes to `Junk` when its score reaches
//! the threshold. Nothing is ever dropped for its score: a false positive costs a look in `Junk`, not a
//! lost message.
//!
//! Each recipient's own training (its moves into and out of `Junk` over IMAP, through the [`JunkHook`]
//! [`Trainer`]) is kept in the store and added to the global model when that recipient's copy is scored.
//!
//! Scoring parses the whole message and reads the store, so sessions run it on the blocking pool
//! ([`SpamFilter::judge`] is synchronous); the async workers only wait for it.

use crate::config::SpamConfig;
use crate::{JunkHook, JunkMove};
use msgr_spam::bayes::Counts;
use msgr_spam::{corpus, Analysis, Filter, Hit, Model, Verdict};
use msgr_store::{MailStore, SpamStore, Store};
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
