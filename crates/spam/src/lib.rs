//! msgr's spam verdict: pure functions over a message's bytes, no IO.
//!
//! A message is analysed once ([`Analysis::new`]): its tokens (headers, text and HTML after MIME decoding,
//! see [`tokens`]) and the hits of the [`rules`] for the usual signs of spam. The analysis is then scored
//! against a statistical model ([`bayes::Model`], naive Bayes with Robinson's token probabilities and
//! Fisher's combining), optionally together with one user's own model, into one [`Verdict`] whose score
//! is the rules' points plus the classifier's. The caller (msgr-mail) owns every input: the clock, the
//! sender-authentication results (as extra [`Hit`]s), the models and where they are kept.

#![forbid(unsafe_code)]

pub mod bayes;
pub mod corpus;
pub mod rules;
pub mod tokens;

pub use bayes::{Model, ModelError};
pub use rules::Hit;

/// The score at or above which a message is spam, unless configured otherwise (SpamAssassin's default).
pub const DEFAULT_THRESHOLD: f64 = 5.0;

/// What one message looks like to the filter: computed once, scored against any number of models.
#[derive(Clone, Debug)]
pub struct Analysis {
    /// Distinct tokens, sorted (training counts each once per message, as scoring does).
    pub tokens: Vec<String>,
    /// The rules that fired.
    pub hits: Vec<Hit>,
}

impl Analysis {
    /// Tokenizes `raw` (RFC 5322 bytes) and runs the rules. `now` (seconds since the epoch) enables the
    /// date checks; `None` skips them (a corpus from 2002 is not "from the past" in a benchmark).
    pub fn new(raw: &[u8], now: Option<i64>) -> Analysis {
        let parsed = mail_parser::MessageParser::default().parse(raw);
        let (tokens, hits) = match &parsed {
            Some(msg) => (tokens::tokenize(msg), rules::check(msg, now)),
            None => (Vec::new(), vec![rules::unparsable()]),
        };
        Analysis { tokens, hits }
    }
}

/// The filter's decision about one message.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// Rule points plus classifier points; spam at or above `threshold`.
    pub score: f64,
    /// The threshold the score was compared with.
    pub threshold: f64,
    /// The classifier's spam probability (0.5: it knows nothing either way).
    pub bayes: f64,
    /// Every rule that fired, the classifier's band and any caller-supplied hits, with their points.
    pub hits: Vec<Hit>,
}

impl Verdict {
    pub fn is_spam(&self) -> bool {
        self.score >= self.threshold
    }

    /// The value of `X-Spam-Status`, SpamAssassin's format so existing client filters understand it:
    /// `Yes, score=7.3 required=5.0 tests=BAYES_99,HTML_ONLY bayes=0.9990`.
    pub fn status_header(&self) -> String {
        let names: Vec<&str> = self.hits.iter().map(|h| h.name).collect();
        format!(
            "{}, score={:.1} required={:.1} tests={} bayes={:.4}",
            if self.is_spam() { "Yes" } else { "No" },
            self.score,
            self.threshold,
            if names.is_empty() {
                "NONE".to_owned()
            } else {
                names.join(",")
            },
            self.bayes
        )
    }

    /// The value of `X-Spam-Score`: the score with one decimal.
    pub fn score_header(&self) -> String {
        format!("{:.1}", self.score)
    }

    /// Both headers as lines to put in front of the message (CRLF line ends).
    pub fn header_lines(&self) -> String {
        format!(
            "X-Spam-Status: {}\r\nX-Spam-Score: {}\r\n",
            self.status_header(),
            self.score_header()
        )
    }
}

/// The global model and the threshold: what every recipient's verdict starts from.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub model: Model,
    pub threshold: Option<f64>,
}

impl Filter {
    pub fn new(model: Model, threshold: f64) -> Filter {
        Filter {
            model,
            threshold: Some(threshold),
        }
    }

    /// Scores an analysis against the global model plus, when given, one user's counts (added to the
    /// global ones: a user's own judgements move the probabilities of the tokens they have seen), plus
    /// `extra` hits from checks made outside (sender authentication).
    pub fn verdict(&self, analysis: &Analysis, user: Option<&Model>, extra: &[Hit]) -> Verdict {
        let bayes = bayes::classify(&self.model, user, &analysis.tokens);
        let mut hits = analysis.hits.clone();
        hits.extend_from_slice(extra);
        if let Some(band) = rules::bayes_band(bayes) {
            hits.push(band);
        }
        let score = hits.iter().map(|h| h.score).sum::<f64>();
        Verdict {
            // Rounded as shown, so the header and the decision never disagree at the threshold.
            score: (score * 10.0).round() / 10.0,
            threshold: self.threshold.unwrap_or(DEFAULT_THRESHOLD),
            bayes,
            hits,
        }
    }

    /// [`Analysis::new`] then [`Filter::verdict`] without a user model.
    pub fn check(&self, raw: &[u8], now: Option<i64>) -> Verdict {
        self.verdict(&Analysis::new(raw, now), None, &[])
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn headers_say_the_verdict() {
        let v = Verdict {
            score: 7.25,
            threshold: 5.0,
            bayes: 0.999,
            hits: vec![Hit {
                name: "HTML_ONLY",
                score: 1.0,
            }],
        };
        assert!(v.is_spam());
        assert_eq!(
            v.status_header(),
            "Yes, score=7.2 required=5.0 tests=HTML_ONLY bayes=0.9990"
        );
        assert_eq!(
            v.header_lines(),
            "X-Spam-Status: Yes, score=7.2 required=5.0 tests=HTML_ONLY bayes=0.9990\r\nX-Spam-Score: 7.2\r\n"
        );
        let none = Verdict {
            score: -1.0,
            threshold: 5.0,
            bayes: 0.5,
            hits: vec![],
        };
        assert!(none
            .status_header()
            .starts_with("No, score=-1.0 required=5.0 tests=NONE"));
    }

    /// The bundled corpus trains a model that tells its own kinds apart, and a fresh spam and ham (not in
    /// the corpus) land on the right sides of the threshold.
    #[test]
    fn bundled_corpus_separates_fresh_messages() {
        let model = corpus::bundled_model();
        assert!(model.spam_messages() > 50 && model.ham_messages() > 50);
        let filter = Filter::new(model, DEFAULT_THRESHOLD);
        let spam =
            b"From: Best Offers <deals@promo-mailer.biz>\r\nTo: undisclosed-recipients:;\r\n\
            Subject: FREE MONEY!!! Act now, limited time\r\nContent-Type: text/html\r\n\r\n\
            <html><body><font color=\"red\">CLICK HERE</font> to claim your FREE gift certificate! \
            100% guaranteed, no obligation, remove yourself from our mailing list \
            <a href=\"http://promo-mailer.biz/unsubscribe\">here</a>.</body></html>\r\n";
        let ham = b"From: Yuri Semenov <ysemenov@cernvm.cern.ch>\r\nTo: team@example.com\r\n\
            Subject: Re: the patch for the build script\r\nDate: Sun, 9 Jul 1995 11:13:57 +0200\r\n\
            Message-ID: <1@cernvm.cern.ch>\r\nIn-Reply-To: <0@example.com>\r\n\r\n\
            I looked at the patch and the tests pass on my machine. The kernel module still needs a \
            review though; can you check the changes to the config file before we release it?\r\n";
        let s = filter.check(spam, None);
        let h = filter.check(ham, None);
        assert!(s.is_spam(), "{}", s.status_header());
        assert!(!h.is_spam(), "{}", h.status_header());
    }
}
