//! Why the filter judged messages as it did: trains on two lists (as `bench` does), then for each
//! message named on standard input prints its verdict, the rules that fired and the tokens that weighed
//! most either way with their counts. For finding out why a ham is a false positive:
//! `cargo run --release -p msgr-spam --example explain -- TRAIN_HAM TRAIN_SPAM < paths`.

mod common;

use common::{read_list, train};
use msgr_spam::{Analysis, Filter, DEFAULT_THRESHOLD};
use std::io::BufRead;

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [train_ham, train_spam] = args.as_slice() else {
        return Err("usage: explain TRAIN_HAM TRAIN_SPAM < message paths".into());
    };
    let model = train(&read_list(train_ham)?, &read_list(train_spam)?);
    let (ns, nh) = (
        f64::from(model.spam_messages()),
        f64::from(model.ham_messages()),
    );
    let filter = Filter::new(model, DEFAULT_THRESHOLD);
    for path in std::io::stdin().lock().lines() {
        let path = path.map_err(|e| e.to_string())?;
        let raw = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
        let analysis = Analysis::new(&raw, None);
        let v = filter.verdict(&analysis, None, &[]);
        println!("== {path}\n{}", v.status_header());
        // Each token's smoothed probability as the classifier computes it, most telling first.
        let mut clues: Vec<(f64, &str, u32, u32)> = analysis
            .tokens
            .iter()
            .filter_map(|t| {
                let c = filter.model.get(t);
                let n = f64::from(c.spam) + f64::from(c.ham);
                if n == 0.0 {
                    return None;
                }
                let (sr, hr) = (f64::from(c.spam) / ns, f64::from(c.ham) / nh);
                let p = (0.5 + n * sr / (sr + hr)) / (1.0 + n);
                Some((p, t.as_str(), c.spam, c.ham))
            })
            .collect();
        clues.sort_by(|a, b| (b.0 - 0.5).abs().total_cmp(&(a.0 - 0.5).abs()));
        let spammy: Vec<String> = clues
            .iter()
            .filter(|c| c.0 > 0.5)
            .take(25)
            .map(|c| format!("{:?} {:.3} ({}s/{}h)", c.1, c.0, c.2, c.3))
            .collect();
        let hammy: Vec<String> = clues
            .iter()
            .filter(|c| c.0 < 0.5)
            .take(15)
            .map(|c| format!("{:?} {:.3} ({}s/{}h)", c.1, c.0, c.2, c.3))
            .collect();
        let n_spam = clues.iter().filter(|c| c.0 >= 0.6).count();
        let n_ham = clues.iter().filter(|c| c.0 <= 0.4).count();
        println!(
            "clues: {n_spam} spammy, {n_ham} hammy, {} tokens",
            analysis.tokens.len()
        );
        println!("spammy: {}", spammy.join(", "));
        println!("hammy: {}", hammy.join(", "));
    }
    Ok(())
}
