//! What the examples share: reading the message lists `scripts/bench-spam.sh` writes, and training a
//! model on them.

use msgr_spam::{Analysis, Model};

/// The messages named in `path`, one file path per line.
pub fn read_list(path: &str) -> Result<Vec<Vec<u8>>, String> {
    let list = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    list.lines()
        .filter(|l| !l.is_empty())
        .map(|l| std::fs::read(l).map_err(|e| format!("{l}: {e}")))
        .collect()
}

/// A model trained on `ham` and `spam` messages.
pub fn train(ham: &[Vec<u8>], spam: &[Vec<u8>]) -> Model {
    let mut model = Model::new();
    for (set, is_spam) in [(ham, false), (spam, true)] {
        for m in set {
            model.train(&Analysis::new(m, None).tokens, is_spam);
        }
    }
    model
}
