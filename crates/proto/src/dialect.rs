//! Protocol dialects (`MSNP2` … `MSNP12`) as negotiated by `VER`.

use std::fmt;

/// One MSNP protocol version. Ordered: a later dialect compares greater.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dialect {
    Msnp2,
    Msnp3,
    Msnp4,
    Msnp5,
    Msnp6,
    Msnp7,
    Msnp8,
    Msnp9,
    Msnp10,
    Msnp11,
    Msnp12,
}

impl Dialect {
    /// Every dialect msgr speaks, oldest first.
    pub const ALL: [Dialect; 11] = [
        Dialect::Msnp2,
        Dialect::Msnp3,
        Dialect::Msnp4,
        Dialect::Msnp5,
        Dialect::Msnp6,
        Dialect::Msnp7,
        Dialect::Msnp8,
        Dialect::Msnp9,
        Dialect::Msnp10,
        Dialect::Msnp11,
        Dialect::Msnp12,
    ];

    /// The version number, e.g. 8 for `MSNP8`.
    pub const fn number(self) -> u8 {
        self as u8 + 2
    }

    pub fn from_number(n: u8) -> Option<Dialect> {
        match n {
            2..=12 => Some(Dialect::ALL[(n - 2) as usize]),
            _ => None,
        }
    }

    /// Parses a `VER` token such as `MSNP9` (case-sensitive, as the official servers were).
    pub fn from_token(token: &str) -> Option<Dialect> {
        let n = token.strip_prefix("MSNP")?;
        if n.is_empty() || n.len() > 2 || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Dialect::from_number(n.parse().ok()?)
    }

    /// The `VER` token, e.g. `"MSNP9"`.
    pub const fn token(self) -> &'static str {
        match self {
            Dialect::Msnp2 => "MSNP2",
            Dialect::Msnp3 => "MSNP3",
            Dialect::Msnp4 => "MSNP4",
            Dialect::Msnp5 => "MSNP5",
            Dialect::Msnp6 => "MSNP6",
            Dialect::Msnp7 => "MSNP7",
            Dialect::Msnp8 => "MSNP8",
            Dialect::Msnp9 => "MSNP9",
            Dialect::Msnp10 => "MSNP10",
            Dialect::Msnp11 => "MSNP11",
            Dialect::Msnp12 => "MSNP12",
        }
    }

    /// How this dialect authenticates: MD5 challenge (MSNP2–7) or Passport TWN (MSNP8+).
    pub const fn auth(self) -> AuthMethod {
        if (self as u8) < (Dialect::Msnp8 as u8) {
            AuthMethod::Md5
        } else {
            AuthMethod::Twn
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.token())
    }
}

/// The `USR` security package a dialect uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// `USR n MD5 I|S`: the server sends a salt, the client answers MD5(salt + password).
    Md5,
    /// `USR n TWN I|S`: Passport 1.4 ticket from the nexus / login2.srf.
    Twn,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for d in Dialect::ALL {
            assert_eq!(Dialect::from_token(d.token()), Some(d));
            assert_eq!(Dialect::from_number(d.number()), Some(d));
        }
        assert_eq!(Dialect::from_token("MSNP13"), None);
        assert_eq!(Dialect::from_token("MSNP1"), None);
        assert_eq!(Dialect::from_token("CVR0"), None);
        assert_eq!(Dialect::from_token("MSNP"), None);
        assert_eq!(Dialect::from_token("MSNP+8"), None);
        assert!(Dialect::Msnp12 > Dialect::Msnp8);
        assert_eq!(Dialect::Msnp7.auth(), AuthMethod::Md5);
        assert_eq!(Dialect::Msnp8.auth(), AuthMethod::Twn);
    }
}
