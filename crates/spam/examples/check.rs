//! Scores one message from standard input with the model of the bundled corpus and prints its
//! `X-Spam-Status`: `cargo run -p msgr-spam --example check < message.eml`.

use msgr_spam::{corpus, Filter, DEFAULT_THRESHOLD};
use std::io::Read;

fn main() -> std::io::Result<()> {
    let mut raw = Vec::new();
    std::io::stdin().read_to_end(&mut raw)?;
    let filter = Filter::new(corpus::bundled_model(), DEFAULT_THRESHOLD);
    println!("{}", filter.check(&raw, None).status_header());
    Ok(())
}
