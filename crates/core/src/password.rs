//! Password hashing for stored accounts.
//!
//! Passwords are kept as argon2id PHC strings (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`). The string carries its
//! own parameters, so the cost can be raised later without invalidating existing hashes: [`verify_password`]
//! always uses the parameters recorded in the hash, not the current defaults.

use argon2::password_hash::{Output, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

/// Hashes whose memory cost exceeds this (in KiB) are refused by [`verify_password`] rather than computed.
///
/// A corrupted or tampered row could otherwise ask for gigabytes per login and take the server down.
const MAX_VERIFY_MEMORY_KIB: u32 = 1024 * 1024;

/// The argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PasswordParams {
    /// Memory cost in KiB.
    pub memory_kib: u32,
    /// Number of passes over memory.
    pub iterations: u32,
    /// Degree of parallelism (lanes).
    pub parallelism: u32,
}

impl PasswordParams {
    /// The OWASP Password Storage Cheat Sheet's argon2id recommendation: 19 MiB, 2 passes, 1 lane.
    pub const OWASP: PasswordParams = PasswordParams {
        memory_kib: 19_456,
        iterations: 2,
        parallelism: 1,
    };
}

impl Default for PasswordParams {
    fn default() -> Self {
        PasswordParams::OWASP
    }
}

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Empty passwords are never accepted.
    #[error("password is empty")]
    Empty,
    /// The cost parameters are outside what argon2 allows.
    #[error("invalid argon2 parameters")]
    InvalidParams(#[source] argon2::Error),
    /// Hashing itself failed.
    #[error("password hashing failed")]
    Hash(#[source] argon2::password_hash::Error),
}

/// Hashes `pw` with argon2id, the [`PasswordParams::OWASP`] costs and a fresh random salt; returns a PHC string.
pub fn hash_password(pw: &str) -> Result<String, PasswordError> {
    hash_password_with(pw, PasswordParams::OWASP)
}

/// Hashes `pw` with argon2id and the given costs; returns a PHC string.
///
/// Production code should call [`hash_password`]; this exists so tests elsewhere can use cheap parameters.
pub fn hash_password_with(pw: &str, params: PasswordParams) -> Result<String, PasswordError> {
    if pw.is_empty() {
        return Err(PasswordError::Empty);
    }
    let params = Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        None,
    )
    .map_err(PasswordError::InvalidParams)?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    // A salt only has to be unique, not secret; rand's thread-local CSPRNG (seeded from the OS) is plenty and
    // avoids pulling a second generation of rand_core just for OsRng.
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(PasswordError::Hash)?;
    let hash = argon
        .hash_password(pw.as_bytes(), &salt)
        .map_err(PasswordError::Hash)?;
    Ok(hash.to_string())
}

/// Checks `pw` against a PHC string produced by [`hash_password`].
///
/// Returns `false` for a wrong password and also for a malformed, non-argon2 or absurdly expensive hash: a login
/// cannot succeed against a record we cannot read. The comparison of digests is constant-time. Allocates the
/// hash's working memory for this one call; a server verifying many passwords keeps a [`Verifier`] instead.
pub fn verify_password(pw: &str, phc: &str) -> bool {
    Verifier::new().verify(pw, phc)
}

/// Verifies passwords with one reusable argon2 working area.
///
/// argon2 needs its whole memory cost (19 MiB by default) per hash. Allocating that afresh for every login, on
/// whichever thread happens to run it, leaves the allocator holding many such regions across its per-thread
/// arenas: a server's resident memory then grows by gigabytes under a login burst and never shrinks. A long-lived
/// hashing thread owning one `Verifier` touches the same 19 MiB for every login instead.
#[derive(Default)]
pub struct Verifier {
    /// Kept between calls, sized for the largest cost up to [`Verifier::KEEP_BLOCKS`].
    blocks: Vec<Block>,
}

impl Verifier {
    /// The working area kept between calls, in 1 KiB blocks: enough for [`PasswordParams::OWASP`] with room for a
    /// moderate raise. A costlier hash gets a temporary area, freed after the call.
    pub const KEEP_BLOCKS: usize = 64 * 1024;

    pub fn new() -> Verifier {
        Verifier { blocks: Vec::new() }
    }

    /// Bytes of working memory held between calls.
    pub fn retained_bytes(&self) -> usize {
        self.blocks.len() * Block::SIZE
    }

    /// [`verify_password`], reusing this verifier's working memory.
    pub fn verify(&mut self, pw: &str, phc: &str) -> bool {
        let Ok(hash) = PasswordHash::new(phc) else {
            return false;
        };
        let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
            return false;
        };
        let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else {
            return false;
        };
        let version = match hash.version.map(Version::try_from) {
            None => Version::V0x13,
            Some(Ok(v)) => v,
            Some(Err(_)) => return false,
        };
        let Ok(params) = Params::try_from(&hash) else {
            return false;
        };
        if params.m_cost() > MAX_VERIFY_MEMORY_KIB {
            return false;
        }
        let mut salt_buf = [0u8; 64];
        let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
            return false;
        };
        let needed = params.block_count();
        let argon = Argon2::new(algorithm, version, params);
        let mut out = [0u8; Output::MAX_LENGTH];
        let Some(out) = out.get_mut(..expected.len()) else {
            return false;
        };
        let hashed = if needed <= Self::KEEP_BLOCKS {
            if self.blocks.len() < needed {
                self.blocks.resize(needed, Block::new());
            }
            argon.hash_password_into_with_memory(pw.as_bytes(), salt, out, &mut self.blocks[..])
        } else {
            let mut once = vec![Block::new(); needed];
            argon.hash_password_into_with_memory(pw.as_bytes(), salt, out, &mut once[..])
        };
        if hashed.is_err() {
            return false;
        }
        // `Output`'s equality is constant-time.
        Output::new(out).is_ok_and(|o| o == expected)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Far below any safe cost; only to keep the tests fast.
    const CHEAP: PasswordParams = PasswordParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn default_params_round_trip() {
        let phc = hash_password("hunter2").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password("hunter2", &phc));
        assert!(!verify_password("hunter3", &phc));
    }

    #[test]
    fn cheap_params_verify_and_reject() {
        let phc = hash_password_with("correct horse", CHEAP).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        let cases = [
            ("correct horse", true),
            ("Correct horse", false),
            ("correct horse ", false),
            ("", false),
        ];
        for (pw, want) in cases {
            assert_eq!(verify_password(pw, &phc), want, "{pw:?}");
        }
    }

    #[test]
    fn salts_differ() {
        let a = hash_password_with("same", CHEAP).unwrap();
        let b = hash_password_with("same", CHEAP).unwrap();
        assert_ne!(a, b);
        assert!(verify_password("same", &a));
        assert!(verify_password("same", &b));
    }

    #[test]
    fn non_ascii_password() {
        let phc = hash_password_with("pässwörd 🔑", CHEAP).unwrap();
        assert!(verify_password("pässwörd 🔑", &phc));
        assert!(!verify_password("passwort", &phc));
    }

    #[test]
    fn malformed_hashes_are_false() {
        let good = hash_password_with("pw", CHEAP).unwrap();
        let truncated = &good[..good.len() - 5];
        let cases = [
            "",
            "plaintext",
            "$argon2id$",
            "$argon2id$v=19$m=64,t=1,p=1$",
            "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ",
            "$argon2id$v=19$m=abc,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
            "$argon2id$v=19$m=4294967295,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
            "$2b$12$abcdefghijklmnopqrstuvABCDEFGHIJKLMNOPQRSTUVWXYZ01234",
            "$scrypt$ln=4,r=8,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
            truncated,
        ];
        for phc in cases {
            assert!(!verify_password("pw", phc), "{phc:?}");
        }
    }

    #[test]
    fn one_verifier_checks_many_hashes_and_keeps_its_memory() {
        let mut v = Verifier::new();
        let a = hash_password_with("alpha", CHEAP).unwrap();
        let b = hash_password_with(
            "beta",
            PasswordParams {
                memory_kib: 256,
                ..CHEAP
            },
        )
        .unwrap();
        for _ in 0..3 {
            assert!(v.verify("alpha", &a));
            assert!(!v.verify("beta", &a));
            assert!(v.verify("beta", &b));
            assert!(!v.verify("alpha", &b));
        }
        // Sized for the largest cost seen, not regrown per call.
        assert_eq!(v.retained_bytes(), 256 * 1024);
        assert!(!v.verify("pw", "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ"));
    }

    /// The verifier and the argon2 crate's own `PasswordVerifier` agree, with and without an explicit version
    /// and for argon2i/argon2d hashes.
    #[test]
    fn verifier_agrees_with_the_reference() {
        use argon2::password_hash::PasswordVerifier;
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let mut v = Verifier::new();
        for alg in [Algorithm::Argon2id, Algorithm::Argon2i, Algorithm::Argon2d] {
            for ver in [Version::V0x10, Version::V0x13] {
                let argon = Argon2::new(alg, ver, Params::new(64, 2, 2, Some(24)).unwrap());
                let phc = argon.hash_password(b"secret", &salt).unwrap().to_string();
                for pw in ["secret", "Secret"] {
                    let reference = Argon2::default()
                        .verify_password(pw.as_bytes(), &PasswordHash::new(&phc).unwrap())
                        .is_ok();
                    assert_eq!(v.verify(pw, &phc), reference, "{phc} {pw}");
                    assert_eq!(reference, pw == "secret");
                }
            }
        }
    }

    #[test]
    fn empty_and_invalid_params_are_errors() {
        assert!(matches!(hash_password(""), Err(PasswordError::Empty)));
        let bad = PasswordParams {
            memory_kib: 1,
            ..CHEAP
        };
        assert!(matches!(
            hash_password_with("pw", bad),
            Err(PasswordError::InvalidParams(_))
        ));
    }
}
