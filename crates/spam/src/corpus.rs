//! Training corpora: mbox files (mboxrd escaping) of ham and spam, and the small one bundled with msgr
//! (`corpus/`, see its README) that trains the global model when nothing better is configured.

use crate::{Analysis, Model};

const BUNDLED_HAM: &[u8] = include_bytes!("../corpus/ham.mbox");
const BUNDLED_SPAM: &[u8] = include_bytes!("../corpus/spam.mbox");

/// The messages of an mbox: split at `From ` lines that start the file or follow an empty line, with
/// the separator line dropped and `>From ` unescaped (mboxrd). Line ends are kept as they are.
pub fn split_mbox(data: &[u8]) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    let mut previous_blank = true;
    for line in data.split_inclusive(|&b| b == b'\n') {
        if previous_blank && line.starts_with(b"From ") {
            if let Some(mut m) = current.take() {
                // The empty line before a separator belongs to the mbox, not to the message.
                if m.ends_with(b"\r\n\r\n") {
                    m.truncate(m.len() - 2);
                } else if m.ends_with(b"\n\n") {
                    m.truncate(m.len() - 1);
                }
                messages.push(m);
            }
            current = Some(Vec::new());
            previous_blank = false;
            continue;
        }
        previous_blank = line == b"\n" || line == b"\r\n";
        if let Some(m) = current.as_mut() {
            let quoted = line.iter().take_while(|&&b| b == b'>').count();
            if quoted > 0 && line[quoted..].starts_with(b"From ") {
                m.extend_from_slice(&line[1..]);
            } else {
                m.extend_from_slice(line);
            }
        }
    }
    if let Some(m) = current {
        messages.push(m);
    }
    messages
}

/// Trains a model on every message of two mboxes (`now`: see [`Analysis::new`]; corpora are old, so
/// training passes `None`).
pub fn train_mboxes(ham: &[u8], spam: &[u8]) -> Model {
    let mut model = Model::new();
    for (data, is_spam) in [(ham, false), (spam, true)] {
        for message in split_mbox(data) {
            model.train(&Analysis::new(&message, None).tokens, is_spam);
        }
    }
    model
}

/// The model trained on the bundled corpus.
pub fn bundled_model() -> Model {
    train_mboxes(BUNDLED_HAM, BUNDLED_SPAM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbox_split_and_unescape() {
        let mbox = b"From a@b Thu\nSubject: one\n\n>From the start\n>>From x\nFrom inside a line\n\nFrom c@d Fri\nSubject: two\n\nbody\n";
        let m = split_mbox(mbox);
        assert_eq!(m.len(), 2);
        assert_eq!(
            m[0],
            b"Subject: one\n\nFrom the start\n>From x\nFrom inside a line\n".to_vec()
        );
        assert_eq!(m[1], b"Subject: two\n\nbody\n".to_vec());
        assert!(split_mbox(b"").is_empty());
    }

    #[test]
    fn bundled_corpus_has_both_kinds() {
        assert_eq!(split_mbox(BUNDLED_HAM).len(), 170);
        assert_eq!(split_mbox(BUNDLED_SPAM).len(), 170);
        let m = bundled_model();
        assert_eq!((m.ham_messages(), m.spam_messages()), (170, 170));
    }
}
