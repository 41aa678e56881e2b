//! The spam filter on the MX: a message from an unauthenticated sender is scored by `msgr-spam` against
//! the global model (trained at start from `[mail.spam] corpus` or the corpus built into msgr), gets
//! `X-Spam-Status` and `X-Spam-Score` in front of its header, and goes to `Junk` when its score reaches
//! the threshold. Nothing is ever dropped for its score: a false positive costs a look in `Junk`, not a
//! lost message.
//!
//! Scoring parses the whole message, so sessions run it on the blocking pool ([`SpamFilter::judge`] is
//! synchronous); the async workers only wait for it.

use crate::config::SpamConfig;
use msgr_spam::{corpus, Analysis, Filter, Hit, Model, Verdict};

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

    /// The verdict for each recipient (`users[i]` is recipient `i`'s own model, if it has one), with
    /// `extra` hits from checks made outside the content (sender authentication). Blocking: parses and
    /// tokenizes the whole message once.
    pub fn judge(
        &self,
        raw: &[u8],
        now: i64,
        users: &[Option<Model>],
        extra: &[Hit],
    ) -> Vec<Verdict> {
        let analysis = Analysis::new(raw, Some(now));
        users
            .iter()
            .map(|user| self.filter.verdict(&analysis, user.as_ref(), extra))
            .collect()
    }
}
