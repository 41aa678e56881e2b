//! Log lines that a client cannot forge.
//!
//! Many logged values come from the network: sign-in names, mail addresses, command words,
//! HTTP paths. Written as they are, a value holding a line break starts what looks like a new,
//! server-written log line (`x\n2026-… INFO … passport ticket issued`), and one holding ESC
//! drives the terminal of whoever reads the log. tracing's default field formatter quotes plain
//! string fields but writes the message and `%`-formatted (Display) values raw, so every field is
//! formatted here instead, with control characters escaped wherever they come from.

use std::fmt::{self, Write};
use tracing::field::Field;
use tracing_subscriber::field::delimited::Delimited;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::{self, FieldFn, Writer};

/// How one field is written; a plain function so the formatter has a nameable type.
type FieldWriter = fn(&mut Writer<'_>, &Field, &dyn fmt::Debug) -> fmt::Result;

/// The field formatter `msgr serve` logs with: `name=value` pairs separated by spaces, the
/// message first and bare, every value with its control characters escaped (see [`escape`]).
pub fn fields() -> Delimited<&'static str, FieldFn<FieldWriter>> {
    format::debug_fn(write_field as FieldWriter).delimited(" ")
}

fn write_field(w: &mut Writer<'_>, field: &Field, value: &dyn fmt::Debug) -> fmt::Result {
    let text = format!("{value:?}");
    if field.name() != "message" {
        w.write_str(field.name())?;
        w.write_char('=')?;
    }
    escape(w, &text)
}

/// Writes `text` with every character that could end a line, move the cursor or change the
/// terminal replaced by a visible escape: C0 and C1 controls and DEL as `\n`, `\r`, `\t` or
/// `\u{…}`, and the Unicode bidirectional overrides, which reorder how a line reads.
pub fn escape(w: &mut impl Write, text: &str) -> fmt::Result {
    let mut rest = text;
    while let Some(i) = rest.find(needs_escape) {
        w.write_str(&rest[..i])?;
        let c = rest[i..].chars().next().unwrap_or_default();
        match c {
            '\n' => w.write_str("\\n")?,
            '\r' => w.write_str("\\r")?,
            '\t' => w.write_str("\\t")?,
            c => write!(w, "\\u{{{:x}}}", c as u32)?,
        }
        rest = &rest[i + c.len_utf8()..];
    }
    w.write_str(rest)
}

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn escaped(s: &str) -> String {
        let mut out = String::new();
        escape(&mut out, s).unwrap();
        out
    }

    #[test]
    fn line_breaks_and_terminal_escapes_are_made_visible() {
        assert_eq!(
            escaped("x\n2026-11-29T00:00:00Z  INFO fake\r\x1b[31m\t\u{7f}"),
            "x\\n2026-11-29T00:00:00Z  INFO fake\\r\\u{1b}[31m\\t\\u{7f}"
        );
        assert_eq!(escaped("a\u{85}b\u{202e}c"), "a\\u{85}b\\u{202e}c");
    }

    #[test]
    fn ordinary_text_passes_unchanged() {
        for s in ["", "alice@x.com", "Ünïcödé ✓ 名前", "a=b, c"] {
            assert_eq!(escaped(s), s);
        }
    }
}
