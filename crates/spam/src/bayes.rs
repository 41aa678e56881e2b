//! The statistical classifier: per-token counts of the spam and ham messages that contained the token,
//! Robinson's smoothed token probabilities, and Fisher's chi-square combining of the most telling ones
//! (the method of SpamBayes and bogofilter).
//!
//! A model is plain counts, so two models add: a user's own judgements are a small model scored together
//! with the global one ([`classify`]). Models serialise to a line-oriented text format ([`Model::write`],
//! [`Model::read`]) that diffs and compresses well.

use std::collections::HashMap;

/// Robinson's `s`: how strongly a token's probability is pulled towards the unknown `X` when the token has
/// been seen only a few times. SpamAssassin's small value (it trusts a token seen once or twice almost
/// fully) separates best here once the clues are few and compared in log space ([`fisher`]): with the
/// spam score set to keep 95.5 % of the spam, seeds 1–5 of `scripts/bench-spam.sh` left 17 hams above it
/// in all, against 35 with the former 1.0, 150 clues and SpamBayes' indicator; on the held-out seeds 7,
/// 20261129 and 42, 9 against 22.
const STRENGTH: f64 = 0.16;
/// Robinson's `x`: the probability of a token never seen.
const UNKNOWN: f64 = 0.5;
/// Tokens whose probability is closer than this to 0.5 say little and are left out.
const MIN_DEVIATION: f64 = 0.2;
/// At most this many tokens (the most extreme) are combined. Few: a commercial newsletter a person asked
/// for shares hundreds of weak words with spam ("click", "offer", "receive"), and counting all of them
/// drowns the handful of strong ones that tell it apart.
const MAX_CLUES: usize = 50;
/// Neighbouring tokens (a word, its bigrams, its marked form) are far from independent, so the log of the
/// two chi-square tails' ratio overstates the evidence; it is divided by this before it becomes a
/// probability (see [`fisher`]).
const TEMPER: f64 = 5.0;
/// A user's own judgement counts like this many corpus messages: the global corpus is large and about
/// everyone, a user's Junk moves are few and about exactly their mail.
pub const USER_WEIGHT: u32 = 3;

/// How many spam and ham messages contained a token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub spam: u32,
    pub ham: u32,
}

/// Token counts and the number of messages they came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    tokens: HashMap<String, Counts>,
    spam_messages: u32,
    ham_messages: u32,
}

/// A serialised model that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("not a msgr spam model (bad first line)")]
    Magic,
    #[error("line {0}: {1}")]
    Line(usize, &'static str),
}

/// The first line of a serialised model; the number is the format's version.
const MAGIC: &str = "msgr-spam-model 1";

impl Model {
    pub fn new() -> Model {
        Model::default()
    }

    /// Builds a model from known counts (a user's rows from the store).
    pub fn from_counts(
        spam_messages: u32,
        ham_messages: u32,
        tokens: impl IntoIterator<Item = (String, Counts)>,
    ) -> Model {
        Model {
            tokens: tokens.into_iter().collect(),
            spam_messages,
            ham_messages,
        }
    }

    pub fn spam_messages(&self) -> u32 {
        self.spam_messages
    }

    pub fn ham_messages(&self) -> u32 {
        self.ham_messages
    }

    /// Number of distinct tokens known.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn get(&self, token: &str) -> Counts {
        self.tokens.get(token).copied().unwrap_or_default()
    }

    /// Counts one message's distinct tokens as spam or ham.
    pub fn train(&mut self, tokens: &[String], spam: bool) {
        if spam {
            self.spam_messages = self.spam_messages.saturating_add(1);
        } else {
            self.ham_messages = self.ham_messages.saturating_add(1);
        }
        for t in tokens {
            let c = self.tokens.entry(t.clone()).or_default();
            if spam {
                c.spam = c.spam.saturating_add(1);
            } else {
                c.ham = c.ham.saturating_add(1);
            }
        }
    }

    /// Writes the model: the magic line, `spam ham` message counts, then `spam ham token` per token.
    pub fn write(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(out, "{MAGIC}\n{} {}", self.spam_messages, self.ham_messages);
        let mut tokens: Vec<_> = self.tokens.iter().collect();
        tokens.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (t, c) in tokens {
            let _ = writeln!(out, "{} {} {t}", c.spam, c.ham);
        }
    }

    /// Reads what [`Model::write`] wrote.
    pub fn read(text: &str) -> Result<Model, ModelError> {
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(ModelError::Magic);
        }
        let totals = lines.next().ok_or(ModelError::Line(2, "missing totals"))?;
        let (s, h) = totals
            .split_once(' ')
            .ok_or(ModelError::Line(2, "totals: two numbers"))?;
        let mut model = Model {
            spam_messages: s.parse().map_err(|_| ModelError::Line(2, "bad number"))?,
            ham_messages: h.parse().map_err(|_| ModelError::Line(2, "bad number"))?,
            tokens: HashMap::new(),
        };
        for (i, line) in lines.enumerate() {
            let mut f = line.splitn(3, ' ');
            let (Some(s), Some(h), Some(t)) = (f.next(), f.next(), f.next()) else {
                return Err(ModelError::Line(i + 3, "three fields"));
            };
            let counts = Counts {
                spam: s
                    .parse()
                    .map_err(|_| ModelError::Line(i + 3, "bad number"))?,
                ham: h
                    .parse()
                    .map_err(|_| ModelError::Line(i + 3, "bad number"))?,
            };
            model.tokens.insert(t.to_owned(), counts);
        }
        Ok(model)
    }
}

/// Robinson's `f(w)`: the token's spam probability from its counts, pulled towards [`UNKNOWN`] by how
/// little it has been seen. `None` when there is nothing to go on.
fn token_probability(c: Counts, spam_messages: u32, ham_messages: u32) -> Option<f64> {
    let n = f64::from(c.spam) + f64::from(c.ham);
    if n == 0.0 {
        return None;
    }
    // A class with no messages yet contributes no ratio (counted as 1 to avoid dividing by zero).
    let spam_ratio = f64::from(c.spam) / f64::from(spam_messages.max(1));
    let ham_ratio = f64::from(c.ham) / f64::from(ham_messages.max(1));
    let p = spam_ratio / (spam_ratio + ham_ratio);
    Some((STRENGTH * UNKNOWN + n * p) / (STRENGTH + n))
}

/// The spam probability of a message with these `tokens` under `global` plus `user` (counts added).
/// 0.5 when either class has never been trained (the classifier then abstains).
pub fn classify(global: &Model, user: Option<&Model>, tokens: &[String]) -> f64 {
    let w = USER_WEIGHT;
    let spam_n = global
        .spam_messages
        .saturating_add(user.map_or(0, |u| u.spam_messages.saturating_mul(w)));
    let ham_n = global
        .ham_messages
        .saturating_add(user.map_or(0, |u| u.ham_messages.saturating_mul(w)));
    if spam_n == 0 || ham_n == 0 {
        return UNKNOWN;
    }
    let mut clues: Vec<f64> = tokens
        .iter()
        .filter_map(|t| {
            let g = global.get(t);
            let u = user.map(|u| u.get(t)).unwrap_or_default();
            let c = Counts {
                spam: g.spam.saturating_add(u.spam.saturating_mul(w)),
                ham: g.ham.saturating_add(u.ham.saturating_mul(w)),
            };
            token_probability(c, spam_n, ham_n)
        })
        .filter(|p| (p - 0.5).abs() >= MIN_DEVIATION)
        .collect();
    if clues.is_empty() {
        return UNKNOWN;
    }
    if clues.len() > MAX_CLUES {
        clues.sort_unstable_by(|a, b| (b - 0.5).abs().total_cmp(&(a - 0.5).abs()));
        clues.truncate(MAX_CLUES);
    }
    fisher(&clues)
}

/// Fisher's method as SpamBayes applies it: how unlikely the clues are under "all ham" (`h`) and under
/// "all spam" (`s`), each a chi-square tail. SpamBayes answers `(s - h + 1) / 2`, which saturates: with
/// dozens of clues most spam and the odd newsletter both come out as 1.0000 and cannot be told apart. The
/// tails are compared in log space instead (`ln` of their ratio, tempered by [`TEMPER`]) and turned into a
/// probability with the logistic function, so the classifier still ranks messages past 0.9999.
fn fisher(clues: &[f64]) -> f64 {
    // Sums of logarithms rather than products: hundreds of small probabilities underflow.
    let (mut ln_ham, mut ln_spam) = (0.0, 0.0);
    for &p in clues {
        let p = p.clamp(1e-6, 1.0 - 1e-6);
        ln_ham += p.ln();
        ln_spam += (1.0 - p).ln();
    }
    let dof = 2 * clues.len();
    // Small when the clues are mostly spammy (their `1 - p` are small), and the other way round.
    let ln_not_spam = ln_chi2_survival(-2.0 * ln_spam, dof);
    let ln_not_ham = ln_chi2_survival(-2.0 * ln_ham, dof);
    let log_odds = (ln_not_ham - ln_not_spam) / TEMPER;
    1.0 / (1.0 + (-log_odds).exp())
}

/// `ln P(X >= x)` for a chi-square variable with an even number `dof` of degrees of freedom (the series has
/// a closed form then), summed in log space: the tail of 100 strong clues is far below `f64`'s range.
fn ln_chi2_survival(x: f64, dof: usize) -> f64 {
    let m = x / 2.0;
    if m <= 0.0 || dof == 0 {
        return 0.0;
    }
    // ln of each term m^i / i! · e^-m, added up in log space as they come (a running log-sum-exp).
    let ln_m = m.ln();
    let mut term = -m;
    let (mut max, mut sum) = (term, 1.0);
    for i in 1..dof / 2 {
        term += ln_m - (i as f64).ln();
        if term > max {
            sum = sum * (max - term).exp() + 1.0;
            max = term;
        } else {
            sum += (term - max).exp();
        }
    }
    (max + sum.ln()).min(0.0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn t(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn untrained_abstains() {
        assert_eq!(classify(&Model::new(), None, &t(&["free"])), 0.5);
        let mut only_spam = Model::new();
        only_spam.train(&t(&["free"]), true);
        assert_eq!(classify(&only_spam, None, &t(&["free"])), 0.5);
    }

    #[test]
    fn training_moves_the_probability() {
        let mut m = Model::new();
        for _ in 0..20 {
            m.train(&t(&["viagra", "free", "offer", "click"]), true);
            m.train(&t(&["meeting", "patch", "review", "offer"]), false);
        }
        let spam = classify(&m, None, &t(&["viagra", "click", "unknown"]));
        let ham = classify(&m, None, &t(&["meeting", "review"]));
        let neutral = classify(&m, None, &t(&["offer"]));
        // Two or three known tokens are little evidence: clearly on their side, not certain.
        assert!(spam > 0.8, "{spam}");
        assert!(ham < 0.2, "{ham}");
        assert_eq!(neutral, 0.5, "offer is in both: no clue");
    }

    /// A user's judgements add to the global counts (weighted): a word the world mostly sees in ham
    /// becomes spam for someone who keeps junking it.
    #[test]
    fn user_counts_add_to_global_ones() {
        let mut global = Model::new();
        for i in 0..100 {
            let ham = if i < 5 {
                t(&["newsletter", "weekly"])
            } else {
                t(&["meeting"])
            };
            global.train(&ham, false);
            global.train(&t(&["casino"]), true);
        }
        let msg = t(&["newsletter", "weekly"]);
        let before = classify(&global, None, &msg);
        assert!(before < 0.3, "{before}");
        let mut user = Model::new();
        for _ in 0..10 {
            user.train(&msg, true);
        }
        let after = classify(&global, Some(&user), &msg);
        assert!(after > 0.5, "{after}");
    }

    #[test]
    fn fisher_is_symmetric_and_bounded() {
        assert!((fisher(&[0.5, 0.5]) - 0.5).abs() < 1e-9);
        let s = fisher(&[0.99; 200]);
        let h = fisher(&[0.01; 200]);
        assert!(s > 0.999 && h < 0.001, "{s} {h}");
        assert!(((s + h) - 1.0).abs() < 1e-9);
        assert!(ln_chi2_survival(0.0, 4).abs() < 1e-12);
        // P(chi2_2 >= 2 ln 20) = 1/20.
        assert!((ln_chi2_survival(2.0 * 20f64.ln(), 2) - 0.05f64.ln()).abs() < 1e-12);
        // P(chi2_4 >= 2) = e^-1 (1 + 1).
        assert!((ln_chi2_survival(2.0, 4) - (2.0 * (-1f64).exp()).ln()).abs() < 1e-12);
    }

    /// Past the point where SpamBayes' indicator reads 1.0000 for both, more and stronger spam clues still
    /// give a higher probability, and a few strong ham clues still pull a spammy message down.
    #[test]
    fn fisher_ranks_beyond_saturation() {
        let mut strong = vec![0.99; 50];
        let weak = vec![0.9; 50];
        assert!(fisher(&strong) > fisher(&weak));
        assert!(fisher(&weak) > 0.99);
        // 200 certain clues: a tail far below the smallest f64, still a finite logarithm.
        let tail = ln_chi2_survival(-2.0 * 200.0 * 1e-6f64.ln(), 400);
        assert!(tail.is_finite() && tail < -709.0, "{tail}");
        let spam_only = fisher(&weak);
        let mut mixed = weak.clone();
        mixed.truncate(45);
        mixed.extend([0.01; 5]);
        assert!(
            fisher(&mixed) < spam_only,
            "{} {}",
            fisher(&mixed),
            spam_only
        );
        strong.truncate(1);
        assert!(fisher(&strong) > 0.5);
    }

    /// Only the most telling clues count: hundreds of mildly spammy words (what a newsletter shares with
    /// spam) do not outvote a few dozen strong ham ones.
    #[test]
    fn few_strong_clues_beat_many_weak_ones() {
        let strong: Vec<String> = (0..MAX_CLUES).map(|i| format!("h{i}")).collect();
        let weak: Vec<String> = (0..300).map(|i| format!("w{i}")).collect();
        let mut m = Model::new();
        // The strong words in all ten hams and no spam; the weak ones in 3 of 10 spams and 1 of 10 hams.
        for i in 0..10 {
            let mut ham = strong.clone();
            if i < 1 {
                ham.extend(weak.iter().cloned());
            }
            m.train(&ham, false);
            m.train(if i < 3 { &weak } else { &strong[..0] }, true);
        }
        let mut msg = weak.clone();
        msg.extend(strong.iter().cloned());
        let p = classify(&m, None, &msg);
        assert!(p < 0.1, "{p}");
        let weak_only = classify(&m, None, &weak);
        assert!(weak_only > 0.6, "{weak_only}");
    }

    #[test]
    fn serialises_round_trip_and_rejects_garbage() {
        let mut m = Model::new();
        m.train(&t(&["a b", "zz"]), true);
        m.train(&t(&["zz"]), false);
        let mut text = String::new();
        m.write(&mut text);
        assert_eq!(text, "msgr-spam-model 1\n1 1\n1 0 a b\n1 1 zz\n");
        assert_eq!(Model::read(&text).unwrap(), m);
        assert!(matches!(Model::read("x"), Err(ModelError::Magic)));
        assert!(matches!(
            Model::read("msgr-spam-model 1\n1 1\n1 zz\n"),
            Err(ModelError::Line(3, _))
        ));
        assert!(matches!(
            Model::read("msgr-spam-model 1\n1\n"),
            Err(ModelError::Line(2, _))
        ));
    }
}
