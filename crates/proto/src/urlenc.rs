//! URL-encoding of command parameters (friendly names, group names, phone numbers).
//!
//! MSNP separates parameters with single spaces and ends commands with CRLF, so a parameter
//! must not contain a space, a line break or any other control character. Clients escape those
//! bytes as `%XX`; the percent sign itself is escaped so decoding is unambiguous.
//!
//! Choices, and why:
//! - **Only the bytes that would break the line are escaped**: ASCII control characters
//!   (0x00–0x1F), space, DEL (0x7F) and `%`. The official clients escaped spaces and percent
//!   signs in names and sent everything else as typed; escaping more (say `&` or `+`) would
//!   change the bytes other clients see for the same name.
//! - **Non-ASCII text stays raw UTF-8.** The official clients put UTF-8 bytes directly on the
//!   wire (the seed transcripts show raw UTF-8 names in `JOI`/`IRO`/`RNG`), and 7.x clients
//!   count a `%XX` triple as one character against the 129-character name limit, so escaping
//!   multi-byte characters would make long non-Latin names overflow it.
//! - **Decoding is lenient**: a `%` that is not followed by two hex digits is kept as a
//!   literal `%`, because old clients and third-party clients sent such names and the
//!   official server passed them through. Hex digits may be upper or lower case.
//! - Encoding emits upper-case hex (`%20`), as the official clients did.

use std::borrow::Cow;

use thiserror::Error;

/// Why a URL-encoded parameter could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum UrlDecodeError {
    /// The decoded bytes are not UTF-8 (e.g. `%FF`, or a Latin-1 name from a pre-UTF-8 client).
    #[error("URL-decoded parameter is not valid UTF-8 (valid up to byte {valid_up_to})")]
    NotUtf8 {
        /// Length of the longest valid UTF-8 prefix of the decoded bytes.
        valid_up_to: usize,
    },
}

/// Whether `b` must be written as `%XX` inside a parameter.
const fn needs_escape(b: u8) -> bool {
    b <= b' ' || b == 0x7F || b == b'%'
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Encodes `s` for use as one MSNP parameter; borrows when nothing needs escaping.
pub fn encode(s: &str) -> Cow<'_, str> {
    let bytes = s.as_bytes();
    let Some(first) = bytes.iter().position(|&b| needs_escape(b)) else {
        return Cow::Borrowed(s);
    };
    let extra = bytes[first..].iter().filter(|&&b| needs_escape(b)).count() * 2;
    let mut out = String::with_capacity(bytes.len() + extra);
    out.push_str(&s[..first]);
    for ch in s[first..].chars() {
        // Every escaped byte is ASCII, so looking at whole chars never splits a UTF-8 sequence.
        match u8::try_from(ch) {
            Ok(b) if needs_escape(b) => {
                out.push('%');
                out.push(char::from(HEX_UPPER[usize::from(b >> 4)]));
                out.push(char::from(HEX_UPPER[usize::from(b & 0x0F)]));
            }
            _ => out.push(ch),
        }
    }
    Cow::Owned(out)
}

/// Decodes a URL-encoded parameter into text; borrows when it holds no `%`.
pub fn decode(s: &str) -> Result<Cow<'_, str>, UrlDecodeError> {
    match decode_bytes(s.as_bytes()) {
        Cow::Borrowed(_) => Ok(Cow::Borrowed(s)),
        Cow::Owned(bytes) => {
            String::from_utf8(bytes)
                .map(Cow::Owned)
                .map_err(|e| UrlDecodeError::NotUtf8 {
                    valid_up_to: e.utf8_error().valid_up_to(),
                })
        }
    }
}

/// Decodes `%XX` escapes in raw bytes, leniently (see the module docs); never fails.
///
/// Useful where the caller keeps parameters as bytes, or wants to decide itself what to do
/// with text that is not UTF-8.
pub fn decode_bytes(input: &[u8]) -> Cow<'_, [u8]> {
    let Some(first) = input.iter().position(|&b| b == b'%') else {
        return Cow::Borrowed(input);
    };
    let mut out = Vec::with_capacity(input.len());
    out.extend_from_slice(&input[..first]);
    let mut i = first;
    while let Some(&b) = input.get(i) {
        if b == b'%' {
            if let (Some(hi), Some(lo)) = (
                input.get(i + 1).and_then(|&h| hex_value(h)),
                input.get(i + 2).and_then(|&l| hex_value(l)),
            ) {
                out.push((hi << 4) | lo);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    Cow::Owned(out)
}

const fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encodes_the_seed_examples() {
        assert_eq!(encode("MS Sans Serif"), "MS%20Sans%20Serif");
        assert_eq!(encode("Otros Contactos"), "Otros%20Contactos");
        assert_eq!(encode("01 234"), "01%20234");
        assert_eq!(encode("100%"), "100%25");
        assert_eq!(encode("a\r\nb\tc\u{7f}"), "a%0D%0Ab%09c%7F");
    }

    #[test]
    fn borrows_when_nothing_to_do() {
        assert!(matches!(encode("alice@passport.com"), Cow::Borrowed(_)));
        assert!(matches!(decode("Alice").unwrap(), Cow::Borrowed(_)));
        assert!(matches!(decode_bytes(b"Alice"), Cow::Borrowed(_)));
    }

    #[test]
    fn leaves_non_ascii_raw() {
        // The official client sent raw UTF-8, e.g. the Chinese names in the seed transcripts.
        assert_eq!(encode("宅小圓 (how ashame)"), "宅小圓%20(how%20ashame)");
        assert_eq!(encode("éóÖ"), "éóÖ");
    }

    #[test]
    fn decodes_escapes_in_either_case() {
        assert_eq!(decode("isa%20toy%20malita").unwrap(), "isa toy malita");
        assert_eq!(
            decode("http%3A%2F%2Fmessenger%2Emsn%2Ecom").unwrap(),
            "http://messenger.msn.com"
        );
        assert_eq!(decode("%e6%96%b0%E7%B4%B0").unwrap(), "新細");
    }

    #[test]
    fn stray_percent_is_literal() {
        assert_eq!(decode("100%").unwrap(), "100%");
        assert_eq!(decode("%").unwrap(), "%");
        assert_eq!(decode("%2").unwrap(), "%2");
        assert_eq!(decode("%zz%20").unwrap(), "%zz ");
        assert_eq!(decode("%%41").unwrap(), "%A");
        // A multi-byte character right after `%` must not be split.
        assert_eq!(decode("%é%20").unwrap(), "%é ");
    }

    #[test]
    fn non_utf8_result_is_an_error() {
        assert_eq!(
            decode("ab%FF"),
            Err(UrlDecodeError::NotUtf8 { valid_up_to: 2 })
        );
        assert_eq!(decode_bytes(b"ab%FF").as_ref(), b"ab\xFF");
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(s in any::<String>()) {
            let encoded = encode(&s);
            prop_assert_eq!(decode(&encoded).unwrap(), s.as_str());
        }

        #[test]
        fn encoded_text_never_breaks_a_command_line(s in any::<String>()) {
            let e = encode(&s);
            prop_assert!(e.bytes().all(|b| b > b' ' && b != 0x7F));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let decoded = decode_bytes(&bytes);
            prop_assert!(decoded.len() <= bytes.len());
            if let Ok(s) = std::str::from_utf8(&bytes) {
                let _ = decode(s);
            }
        }
    }
}
