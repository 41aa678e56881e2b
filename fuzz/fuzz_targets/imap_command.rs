//! Arbitrary bytes through msgr-mail's IMAP command framer (`imap::frame::Framer`) in arbitrary chunk
//! sizes, then every whole command through what the session does with it: its own pre-parser
//! (`imap::ext::pre`, the commands and extensions imap-codec lacks) and imap-codec's command parser.
//! Never a panic (imap-codec's included: the session catches one, but it is still a bug), never more
//! kept than the command cap plus one line, every byte consumed when more input is asked for, and the
//! same events and commands however the input is split.
#![no_main]

use imap_codec::decode::Decoder;
use imap_codec::CommandCodec;
use libfuzzer_sys::fuzz_target;
use msgr_mail::imap::ext::{self, Pre};
use msgr_mail::imap::frame::{Event, Framer};

const MAX_LINE: usize = 1024;
const MAX_LITERAL: u64 = 2048;
const MAX_COMMAND: usize = 8192;

/// What the framer gave, in order: events, and each whole or refused command's bytes.
fn frame(data: &[u8], chunk: usize, logged_in: bool) -> Vec<(String, Vec<u8>)> {
    let mut f = Framer::new(MAX_LINE, 64, MAX_COMMAND);
    if logged_in {
        f.set_max_literal(MAX_LITERAL);
    }
    let mut out = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        let mut pos = 0;
        while pos < piece.len() {
            let (used, event) = f.feed(&piece[pos..]);
            assert!(used <= piece.len() - pos, "consumed more than it was given");
            pos += used;
            assert!(
                f.command().len() <= MAX_COMMAND + MAX_LINE,
                "kept past the caps"
            );
            match event {
                Event::Incomplete => assert_eq!(pos, piece.len(), "asked for more with input left"),
                Event::Continue => out.push(("continue".to_owned(), Vec::new())),
                Event::Command => {
                    assert!(f.command().len() <= MAX_COMMAND);
                    out.push(("command".to_owned(), f.command().to_vec()));
                    f.clear();
                }
                Event::LiteralRefused => {
                    let _ = Framer::partial_tag(f.command());
                    out.push(("refused".to_owned(), f.command().to_vec()));
                    f.clear();
                }
                Event::TooLong | Event::LiteralPlusTooBig => {
                    // The session closes here: nothing after it is read.
                    out.push((format!("{event:?}"), Vec::new()));
                    return out;
                }
            }
        }
    }
    out
}

/// A whole command as the session parses it.
fn parse(raw: &[u8]) {
    match ext::pre(raw) {
        Pre::Own { .. } => {}
        Pre::Codec { line, extras: _ } => {
            let input = line.as_deref().unwrap_or(raw);
            let _ = CommandCodec::default().decode(input);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let logged_in = first & 1 == 1;
    let whole = frame(rest, rest.len(), logged_in);
    assert_eq!(frame(rest, usize::from(first >> 1) + 1, logged_in), whole);
    for (what, cmd) in &whole {
        if what == "command" {
            parse(cmd);
        }
    }
});
