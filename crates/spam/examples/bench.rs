//! Trains msgr's spam filter on one half of a corpus and scores the other half: precision, recall,
//! false-positive rate and messages scored per second. `scripts/bench-spam.sh` makes the split and runs
//! SpamAssassin on the same halves.
//!
//! `cargo run --release -p msgr-spam --example bench -- TRAIN_HAM TRAIN_SPAM TEST_HAM TEST_SPAM` where
//! each argument is a file listing message files, one path per line.

mod common;

use common::{read_list, train};
use msgr_spam::{Analysis, Filter, DEFAULT_THRESHOLD};
use std::time::Instant;

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [train_ham, train_spam, test_ham, test_spam] = args.as_slice() else {
        return Err(
            "usage: bench TRAIN_HAM TRAIN_SPAM TEST_HAM TEST_SPAM (files listing messages)".into(),
        );
    };
    let (train_ham, train_spam) = (read_list(train_ham)?, read_list(train_spam)?);
    let (test_ham, test_spam) = (read_list(test_ham)?, read_list(test_spam)?);

    let start = Instant::now();
    let model = train(&train_ham, &train_spam);
    let trained = start.elapsed();
    let filter = Filter::new(model, DEFAULT_THRESHOLD);

    // Scoring is timed alone (parse, tokenize, rules, classify): what the server does per message.
    let start = Instant::now();
    let ham_spam: Vec<bool> = test_ham
        .iter()
        .map(|m| filter.check(m, None).is_spam())
        .collect();
    let spam_spam: Vec<bool> = test_spam
        .iter()
        .map(|m| filter.check(m, None).is_spam())
        .collect();
    let scored = start.elapsed();
    if std::env::var_os("BENCH_DEBUG").is_some() {
        // The misses and false alarms with their verdicts, for tuning the rules' points.
        for (label, set, want) in [
            ("missed spam", &test_spam, true),
            ("false positive", &test_ham, false),
        ] {
            for (i, m) in set.iter().enumerate() {
                let v = filter.check(m, None);
                if v.is_spam() != want {
                    println!("{label} #{}: {}", i + 1, v.status_header());
                }
            }
        }
    }
    if let Some(path) = std::env::var_os("BENCH_DUMP") {
        // One line per test message: class, classifier probability, rule points without the band, rule
        // names: enough to try other bands and thresholds without scoring again.
        let mut out = String::new();
        for (class, set) in [("ham", &test_ham), ("spam", &test_spam)] {
            for m in set {
                let v = filter.check(m, None);
                let rules: Vec<_> = v
                    .hits
                    .iter()
                    .filter(|h| !h.name.starts_with("BAYES_"))
                    .collect();
                let points: f64 = rules.iter().map(|h| h.score).sum();
                let names: Vec<&str> = rules.iter().map(|h| h.name).collect();
                out.push_str(&format!(
                    "{class} {:.6} {points:.2} {}\n",
                    v.bayes,
                    names.join(",")
                ));
            }
        }
        std::fs::write(&path, out).map_err(|e| e.to_string())?;
    }
    let bayes_only = |set: &Vec<Vec<u8>>| {
        set.iter()
            .filter(|m| {
                msgr_spam::bayes::classify(&filter.model, None, &Analysis::new(m, None).tokens)
                    >= 0.9
            })
            .count()
    };

    let fp = ham_spam.iter().filter(|&&s| s).count();
    let tp = spam_spam.iter().filter(|&&s| s).count();
    let n = test_ham.len() + test_spam.len();
    report(
        "msgr (rules + Bayes)",
        tp,
        fp,
        test_ham.len(),
        test_spam.len(),
    );
    report(
        "msgr (Bayes only, p >= 0.9)",
        bayes_only(&test_spam),
        bayes_only(&test_ham),
        test_ham.len(),
        test_spam.len(),
    );
    println!(
        "msgr: trained on {} ham + {} spam in {:.2} s; scored {n} messages in {:.3} s: {:.0} messages/s (one thread)",
        train_ham.len(),
        train_spam.len(),
        trained.as_secs_f64(),
        scored.as_secs_f64(),
        n as f64 / scored.as_secs_f64()
    );
    Ok(())
}

fn report(name: &str, tp: usize, fp: usize, hams: usize, spams: usize) {
    let precision = if tp + fp == 0 {
        1.0
    } else {
        tp as f64 / (tp + fp) as f64
    };
    println!(
        "{name}: precision {:.2}% recall {:.2}% ({tp}/{spams}) false positives {:.2}% ({fp}/{hams})",
        100.0 * precision,
        100.0 * tp as f64 / spams.max(1) as f64,
        100.0 * fp as f64 / hams.max(1) as f64,
    );
}
