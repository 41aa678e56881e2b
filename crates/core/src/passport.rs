//! Passport names (account e-mail addresses) and friendly (display) names.
//!
//! Every account on the service is named by an e-mail address, the "Passport name". The service compares them
//! without regard to case, so [`Passport`] keeps the lowercased form and two values are equal exactly when the
//! service would treat them as the same account. Friendly names travel URL-encoded on the wire and the protocol
//! caps their length, so [`validate_friendly_name`] checks a decoded name against both limits.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

/// The longest Passport name the service accepts, in bytes (all characters are ASCII).
pub const MAX_PASSPORT_LEN: usize = 129;

/// The most characters (Unicode scalar values) a decoded friendly name may have.
pub const MAX_FRIENDLY_NAME_CHARS: usize = 129;

/// The most bytes a friendly name may take once URL-encoded, as it is sent on the wire.
pub const MAX_FRIENDLY_NAME_ENCODED_BYTES: usize = 387;

/// A validated, lowercased Passport name (`local@domain`).
///
/// The only way to build one is [`Passport::parse`] (or [`FromStr`]), so holding a `Passport` proves the name is
/// well formed and already in the canonical lowercase form used for storage and comparison.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Passport(String);

/// Why a string is not a valid Passport name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PassportError {
    /// The name is empty.
    #[error("passport name is empty")]
    Empty,
    /// The name is longer than [`MAX_PASSPORT_LEN`] bytes.
    #[error("passport name is {len} bytes long, the limit is {MAX_PASSPORT_LEN}")]
    TooLong {
        /// The length of the rejected name in bytes.
        len: usize,
    },
    /// The name contains a character outside ASCII.
    #[error("passport name contains a non-ASCII character")]
    NonAscii,
    /// The name has no `@`.
    #[error("passport name has no '@'")]
    MissingAt,
    /// The name has more than one `@`.
    #[error("passport name has more than one '@'")]
    MultipleAt,
    /// Nothing comes before the `@`.
    #[error("passport name has an empty local part")]
    EmptyLocalPart,
    /// The local part contains a character other than letters, digits and `. _ - +`.
    #[error("passport local part contains invalid character {0:?}")]
    InvalidLocalChar(char),
    /// The local part starts or ends with a dot, or has two dots in a row.
    #[error("passport local part has a misplaced '.'")]
    MisplacedLocalDot,
    /// Nothing comes after the `@`.
    #[error("passport name has an empty domain")]
    EmptyDomain,
    /// The domain contains a character other than letters, digits, `-` and `.`.
    #[error("passport domain contains invalid character {0:?}")]
    InvalidDomainChar(char),
    /// The domain has no dot, so it cannot be a public mail domain.
    #[error("passport domain has no '.'")]
    DomainWithoutDot,
    /// The domain starts or ends with a dot, or has two dots in a row.
    #[error("passport domain has an empty label")]
    EmptyDomainLabel,
    /// A domain label starts or ends with `-`, which DNS does not allow.
    #[error("passport domain label starts or ends with '-'")]
    DomainLabelHyphen,
}

impl Passport {
    /// Validates `s` as a Passport name and returns it lowercased.
    ///
    /// Case is folded before anything is stored or compared, so `Alice@Example.COM` and `alice@example.com` are
    /// the same account.
    ///
    /// ```
    /// use msgr_core::passport::{Passport, PassportError};
    ///
    /// let p = Passport::parse("Alice@Example.COM")?;
    /// assert_eq!(p.as_str(), "alice@example.com");
    /// assert_eq!(Passport::parse("alice@localhost"), Err(PassportError::DomainWithoutDot));
    /// # Ok::<(), PassportError>(())
    /// ```
    pub fn parse(s: &str) -> Result<Passport, PassportError> {
        if s.is_empty() {
            return Err(PassportError::Empty);
        }
        // ASCII is checked before the length so that the byte limit is also a character limit.
        if !s.is_ascii() {
            return Err(PassportError::NonAscii);
        }
        if s.len() > MAX_PASSPORT_LEN {
            return Err(PassportError::TooLong { len: s.len() });
        }
        let (local, domain) = s.split_once('@').ok_or(PassportError::MissingAt)?;
        if domain.contains('@') {
            return Err(PassportError::MultipleAt);
        }
        check_local(local)?;
        check_domain(domain)?;
        Ok(Passport(s.to_ascii_lowercase()))
    }

    /// The lowercased name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The lowercased name as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }

    /// The part before the `@`.
    pub fn local_part(&self) -> &str {
        // Parsing guarantees exactly one '@', so the fallback is never taken; it avoids a panic path anyway.
        self.0.split_once('@').map_or(self.0.as_str(), |(l, _)| l)
    }

    /// The part after the `@`.
    pub fn domain(&self) -> &str {
        self.0.split_once('@').map_or("", |(_, d)| d)
    }
}

fn check_local(local: &str) -> Result<(), PassportError> {
    if local.is_empty() {
        return Err(PassportError::EmptyLocalPart);
    }
    if let Some(c) = local
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+')))
    {
        return Err(PassportError::InvalidLocalChar(c));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(PassportError::MisplacedLocalDot);
    }
    Ok(())
}

fn check_domain(domain: &str) -> Result<(), PassportError> {
    if domain.is_empty() {
        return Err(PassportError::EmptyDomain);
    }
    if let Some(c) = domain
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-')))
    {
        return Err(PassportError::InvalidDomainChar(c));
    }
    if !domain.contains('.') {
        return Err(PassportError::DomainWithoutDot);
    }
    for label in domain.split('.') {
        if label.is_empty() {
            return Err(PassportError::EmptyDomainLabel);
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(PassportError::DomainLabelHyphen);
        }
    }
    Ok(())
}

impl fmt::Display for Passport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Passport {
    type Err = PassportError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Passport::parse(s)
    }
}

impl AsRef<str> for Passport {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

// Sound because the derived Eq/Ord/Hash compare the inner string exactly as `str` does; this lets maps keyed by
// `Passport` be queried with an already-lowercased `&str`.
impl Borrow<str> for Passport {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<Passport> for String {
    fn from(p: Passport) -> String {
        p.0
    }
}

/// Why a friendly name is not acceptable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FriendlyNameError {
    /// The name is empty.
    #[error("friendly name is empty")]
    Empty,
    /// The name has more than [`MAX_FRIENDLY_NAME_CHARS`] characters.
    #[error("friendly name has {chars} characters, the limit is {MAX_FRIENDLY_NAME_CHARS}")]
    TooLong {
        /// The number of characters in the rejected name.
        chars: usize,
    },
    /// The URL-encoded name would exceed [`MAX_FRIENDLY_NAME_ENCODED_BYTES`].
    #[error("friendly name takes {bytes} bytes URL-encoded, the limit is {MAX_FRIENDLY_NAME_ENCODED_BYTES}")]
    EncodedTooLong {
        /// The URL-encoded length of the rejected name.
        bytes: usize,
    },
    /// The name contains a control character (CR, LF, NUL, DEL, C1 controls, …).
    #[error("friendly name contains control character U+{code:04X} at character {index}")]
    ControlCharacter {
        /// The position of the offending character, counted in characters.
        index: usize,
        /// The code point of the offending character.
        code: u32,
    },
}

/// Checks a decoded friendly (display) name against the protocol's limits.
///
/// Control characters are refused outright: even though names are URL-encoded on the wire, a CR or LF that slips
/// through a careless encoder would split a command line, and NUL confuses old clients.
pub fn validate_friendly_name(name: &str) -> Result<(), FriendlyNameError> {
    if name.is_empty() {
        return Err(FriendlyNameError::Empty);
    }
    if let Some((index, c)) = name.chars().enumerate().find(|(_, c)| c.is_control()) {
        return Err(FriendlyNameError::ControlCharacter {
            index,
            code: u32::from(c),
        });
    }
    let chars = name.chars().count();
    if chars > MAX_FRIENDLY_NAME_CHARS {
        return Err(FriendlyNameError::TooLong { chars });
    }
    let bytes = url_encoded_len(name);
    if bytes > MAX_FRIENDLY_NAME_ENCODED_BYTES {
        return Err(FriendlyNameError::EncodedTooLong { bytes });
    }
    Ok(())
}

/// The length of `s` once URL-encoded, counting only RFC 3986 unreserved bytes as literal.
///
/// Encoders differ on which ASCII punctuation they escape, but that never decides the outcome: 129 ASCII
/// characters take at most 387 bytes either way. Only non-ASCII text can exceed the cap, and every encoder
/// escapes each of its UTF-8 bytes as `%XX`.
fn url_encoded_len(s: &str) -> usize {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                1
            } else {
                3
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn valid_passports() {
        let cases = [
            ("alice@example.com", "alice@example.com"),
            ("Alice@Example.COM", "alice@example.com"),
            ("a@b.c", "a@b.c"),
            ("first.last@sub.example.org", "first.last@sub.example.org"),
            ("user+tag@example.com", "user+tag@example.com"),
            (
                "under_score-dash@my-host.example",
                "under_score-dash@my-host.example",
            ),
            ("123@456.789", "123@456.789"),
        ];
        for (input, want) in cases {
            let p = Passport::parse(input).unwrap_or_else(|e| panic!("{input:?} rejected: {e}"));
            assert_eq!(p.as_str(), want, "{input:?}");
            assert_eq!(p.to_string(), want);
            assert_eq!(input.parse::<Passport>().unwrap(), p);
        }
    }

    #[test]
    fn invalid_passports() {
        let long_local = "a".repeat(MAX_PASSPORT_LEN - "@b.cd".len() + 1);
        let long = format!("{long_local}@b.cd");
        let cases: &[(&str, PassportError)] = &[
            ("", PassportError::Empty),
            ("alice", PassportError::MissingAt),
            ("alice@@example.com", PassportError::MultipleAt),
            ("a@b@example.com", PassportError::MultipleAt),
            ("@example.com", PassportError::EmptyLocalPart),
            ("alice@", PassportError::EmptyDomain),
            ("alice@localhost", PassportError::DomainWithoutDot),
            ("alice@.example.com", PassportError::EmptyDomainLabel),
            ("alice@example.com.", PassportError::EmptyDomainLabel),
            ("alice@example..com", PassportError::EmptyDomainLabel),
            ("alice@-example.com", PassportError::DomainLabelHyphen),
            ("alice@example-.com", PassportError::DomainLabelHyphen),
            ("alice@exa_mple.com", PassportError::InvalidDomainChar('_')),
            ("alice@exa+mple.com", PassportError::InvalidDomainChar('+')),
            ("al ice@example.com", PassportError::InvalidLocalChar(' ')),
            (
                "alice\r\n@example.com",
                PassportError::InvalidLocalChar('\r'),
            ),
            ("al\0ice@example.com", PassportError::InvalidLocalChar('\0')),
            ("a%20b@example.com", PassportError::InvalidLocalChar('%')),
            ("\"a\"@example.com", PassportError::InvalidLocalChar('"')),
            (".alice@example.com", PassportError::MisplacedLocalDot),
            ("alice.@example.com", PassportError::MisplacedLocalDot),
            ("al..ice@example.com", PassportError::MisplacedLocalDot),
            ("alice@exämple.com", PassportError::NonAscii),
            ("ålice@example.com", PassportError::NonAscii),
            (
                &long,
                PassportError::TooLong {
                    len: MAX_PASSPORT_LEN + 1,
                },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(Passport::parse(input).as_ref(), Err(want), "{input:?}");
        }
    }

    #[test]
    fn length_limit_is_inclusive() {
        let local = "a".repeat(MAX_PASSPORT_LEN - "@b.cd".len());
        let at_limit = format!("{local}@b.cd");
        assert_eq!(at_limit.len(), MAX_PASSPORT_LEN);
        assert!(Passport::parse(&at_limit).is_ok());
    }

    #[test]
    fn parts_and_borrow() {
        let p = Passport::parse("Bob.Smith@Example.com").unwrap();
        assert_eq!(p.local_part(), "bob.smith");
        assert_eq!(p.domain(), "example.com");
        let mut set = std::collections::HashSet::new();
        set.insert(p.clone());
        assert!(set.contains("bob.smith@example.com"));
        assert_eq!(String::from(p), "bob.smith@example.com");
    }

    #[test]
    fn valid_friendly_names() {
        let max_ascii = "x".repeat(MAX_FRIENDLY_NAME_CHARS);
        // 129 characters that all need escaping: exactly at the encoded cap.
        let max_escaped = " ".repeat(MAX_FRIENDLY_NAME_CHARS);
        // 64 two-byte characters: 128 UTF-8 bytes, 384 encoded bytes.
        let two_byte = "é".repeat(64);
        let cases = [
            "Alice",
            "a",
            "Alice (away) :-)",
            "  spaces  ",
            "100% real",
            "Zoë ♥ 日本",
            "emoji 😀",
            max_ascii.as_str(),
            max_escaped.as_str(),
            two_byte.as_str(),
        ];
        for name in cases {
            assert_eq!(validate_friendly_name(name), Ok(()), "{name:?}");
        }
    }

    #[test]
    fn invalid_friendly_names() {
        let too_many = "x".repeat(MAX_FRIENDLY_NAME_CHARS + 1);
        // 43 three-byte characters encode to 387 bytes; one more tips it over.
        let cjk_ok = "日".repeat(43);
        let cjk_over = "日".repeat(44);
        assert_eq!(validate_friendly_name(&cjk_ok), Ok(()));
        let cases: &[(&str, FriendlyNameError)] = &[
            ("", FriendlyNameError::Empty),
            (&too_many, FriendlyNameError::TooLong { chars: 130 }),
            (&cjk_over, FriendlyNameError::EncodedTooLong { bytes: 396 }),
            (
                "a\rb",
                FriendlyNameError::ControlCharacter {
                    index: 1,
                    code: 0x0D,
                },
            ),
            (
                "a\nb",
                FriendlyNameError::ControlCharacter {
                    index: 1,
                    code: 0x0A,
                },
            ),
            (
                "\0",
                FriendlyNameError::ControlCharacter { index: 0, code: 0 },
            ),
            (
                "tab\there",
                FriendlyNameError::ControlCharacter { index: 3, code: 9 },
            ),
            (
                "del\u{7f}",
                FriendlyNameError::ControlCharacter {
                    index: 3,
                    code: 0x7F,
                },
            ),
            (
                "é\u{85}",
                FriendlyNameError::ControlCharacter {
                    index: 1,
                    code: 0x85,
                },
            ),
        ];
        for (name, want) in cases {
            assert_eq!(validate_friendly_name(name).as_ref(), Err(want), "{name:?}");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_is_canonical(s in "(?s).{0,140}") {
            if let Ok(p) = Passport::parse(&s) {
                prop_assert_eq!(p.as_str(), s.to_ascii_lowercase());
                prop_assert_eq!(Passport::parse(p.as_str()).unwrap(), p);
            }
        }

        #[test]
        fn generated_addresses_parse(
            local in "[a-zA-Z0-9_+-]{1,20}(\\.[a-zA-Z0-9_+-]{1,10}){0,2}",
            labels in proptest::collection::vec("[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?", 2..4),
        ) {
            let addr = format!("{local}@{}", labels.join("."));
            let p = Passport::parse(&addr).unwrap();
            prop_assert_eq!(p.as_str(), addr.to_ascii_lowercase());
        }

        #[test]
        fn friendly_name_never_panics(s in "(?s).{0,200}") {
            let _ = validate_friendly_name(&s);
        }
    }
}
