//! The User driver: a particle that is also an agent. Its login token is stored only as
//! a hash, in its `token-hash` property: an argon2id PHC string made by [`token_hash`]
//! (a fresh random salt each time), checked by [`verify_token`] when a gate is shown the
//! token. Users answer the basic commands (see [`crate::container`]) and hold no
//! children.
//!
//! A hash stored before argon2id — 64 hex digits, the unsalted SHA-256 of the token —
//! logs no one in: [`TokenCheck::Outdated`] tells the gate that the right token met
//! such a hash, so it can say how to set a new one. Hashing is slow on purpose (tens of
//! ms): callers on an event loop run it on a blocking thread.

use argon2::password_hash::phc::PasswordHash;
use argon2::{
    ARGON2ID_IDENT, Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version,
};
use async_trait::async_trait;
use hyperverse_core::driver::{Driver, DriverCtx};
use hyperverse_core::particle::ParticleRecord;
use hyperverse_core::registry::content_hash;
use hyperverse_core::security::secrets_equal;
use hyperverse_core::wave::{Ping, Substance};
use hyperverse_core::{BaseKind, Error, Result};

use crate::container::{basic, unsupported};

/// The property that holds a user's token hash.
pub const TOKEN_HASH: &str = "token-hash";

/// The memory of a new token hash, KiB: OWASP's argon2id recommendation (19 MiB).
pub const HASH_MEMORY_KIB: u32 = 19_456;
/// The passes of a new token hash (OWASP: 2 with 19 MiB).
pub const HASH_PASSES: u32 = 2;
/// The lanes of a new token hash (OWASP: 1).
pub const HASH_LANES: u32 = 1;

/// The dearest stored hash a gate computes, so that a User created with a crafted
/// `token-hash` cannot make each of its logins cost gigabytes or seconds: anything
/// dearer is [`TokenCheck::Invalid`] unchecked.
const MAX_MEMORY_KIB: u32 = 64 * 1024;
const MAX_PASSES: u32 = 8;
const MAX_LANES: u32 = 4;

/// What a presented token is worth against a User's stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCheck {
    /// The token is the User's.
    Valid,
    /// It is not, or the stored hash is not one a gate computes.
    Invalid,
    /// It is the token of a hash stored in the old unsalted SHA-256 form, which is no
    /// longer accepted: the User needs a new token.
    Outdated,
    /// The User has no token hash: it cannot log in.
    NoToken,
}

/// The argon2id hasher of new token hashes.
fn hasher() -> Result<Argon2<'static>> {
    let params = Params::new(HASH_MEMORY_KIB, HASH_PASSES, HASH_LANES, None)
        .map_err(|e| Error::internal(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// The hash stored for `token`: `$argon2id$v=19$m=19456,t=2,p=1$SALT$HASH`, with a
/// fresh random salt, so two hashes of one token differ. Fails only when the operating
/// system gives no random bytes.
pub fn token_hash(token: &str) -> Result<String> {
    hasher()?
        .hash_password(token.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| Error::internal(format!("hashing the token: {e}")))
}

/// What `token` is worth against the User in `record` (see [`check_hash`]).
pub fn verify_token(record: &ParticleRecord, token: &str) -> TokenCheck {
    match record.details.properties.get(TOKEN_HASH) {
        Some(stored) => check_hash(&stored.value, token),
        None => TokenCheck::NoToken,
    }
}

/// What `token` is worth against the stored hash `stored`: an argon2id PHC string no
/// dearer than the gate computes, or an old SHA-256 hash (`Outdated` only when it is
/// the token's, compared in constant time, so a wrong guess learns nothing more).
pub fn check_hash(stored: &str, token: &str) -> TokenCheck {
    if is_old_sha256(stored) {
        let old = content_hash(token.as_bytes());
        return if secrets_equal(old.as_bytes(), stored.as_bytes()) {
            TokenCheck::Outdated
        } else {
            TokenCheck::Invalid
        };
    }
    let Ok(hash) = PasswordHash::new(stored) else {
        return TokenCheck::Invalid;
    };
    if hash.algorithm.as_str() != ARGON2ID_IDENT.as_str() {
        return TokenCheck::Invalid;
    }
    let Ok(params) = Params::try_from(&hash) else {
        return TokenCheck::Invalid;
    };
    if params.m_cost() > MAX_MEMORY_KIB || params.t_cost() > MAX_PASSES {
        return TokenCheck::Invalid;
    }
    if params.p_cost() > MAX_LANES {
        return TokenCheck::Invalid;
    }
    // The hash's own parameters, salt and version are used, not the hasher's.
    match Argon2::default().verify_password(token.as_bytes(), &hash) {
        Ok(()) => TokenCheck::Valid,
        Err(_) => TokenCheck::Invalid,
    }
}

/// Whether `stored` is in the form of the old hashes: 64 hex digits.
fn is_old_sha256(stored: &str) -> bool {
    stored.len() == 64 && stored.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Serves `User` particles.
#[derive(Debug, Clone, Copy, Default)]
pub struct UserDriver;

#[async_trait]
impl Driver for UserDriver {
    fn kind(&self) -> BaseKind {
        BaseKind::User
    }

    async fn handle(&self, ctx: DriverCtx<'_>, ping: &Ping) -> Result<Substance> {
        match basic(ctx, ping).await {
            Some(answer) => answer,
            None => Err(unsupported(BaseKind::User, ping)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_is_argon2id_with_the_documented_cost() {
        let hash = token_hash("s3cret").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(!hash.contains("s3cret"));
    }

    #[test]
    fn hashes_are_salted_and_each_verifies() {
        let (one, two) = (token_hash("s3cret").unwrap(), token_hash("s3cret").unwrap());
        assert_ne!(one, two, "a fresh salt each time");
        for hash in [&one, &two] {
            assert_eq!(check_hash(hash, "s3cret"), TokenCheck::Valid);
            assert_eq!(check_hash(hash, "s3cret "), TokenCheck::Invalid);
            assert_eq!(check_hash(hash, "S3cret"), TokenCheck::Invalid);
            assert_eq!(check_hash(hash, ""), TokenCheck::Invalid);
        }
    }

    #[test]
    fn an_old_sha256_hash_is_outdated_for_its_token_only() {
        let old = content_hash(b"s3cret");
        assert_eq!(old.len(), 64);
        assert_eq!(check_hash(&old, "s3cret"), TokenCheck::Outdated);
        assert_eq!(
            check_hash(&old.to_uppercase(), "s3cret"),
            TokenCheck::Invalid
        );
        assert_eq!(check_hash(&old, "guess"), TokenCheck::Invalid);
        // The old hash is not a token either.
        assert_eq!(check_hash(&old, &old), TokenCheck::Invalid);
    }

    /// A true hash of "s3cret" with the given cost.
    fn hash_costing(algorithm: Algorithm, m: u32, t: u32, p: u32) -> String {
        let params = Params::new(m, t, p, None).unwrap();
        let argon2 = Argon2::new(algorithm, Version::V0x13, params);
        argon2.hash_password(b"s3cret").unwrap().to_string()
    }

    #[test]
    fn hashes_a_gate_does_not_compute_are_invalid_even_when_true() {
        let valid = token_hash("s3cret").unwrap();
        let dearer = [
            hash_costing(Algorithm::Argon2id, MAX_MEMORY_KIB + 8, 1, 1),
            hash_costing(Algorithm::Argon2id, 64, MAX_PASSES + 1, 1),
            hash_costing(Algorithm::Argon2id, 64, 1, MAX_LANES + 1),
            hash_costing(Algorithm::Argon2i, 64, 1, 1),
        ];
        let broken = ["", "s3cret", "$argon2id$v=19$", &valid[..valid.len() - 4]];
        for stored in dearer.iter().map(String::as_str).chain(broken) {
            let check = check_hash(stored, "s3cret");
            assert_eq!(check, TokenCheck::Invalid, "{stored}");
        }
        let affordable = hash_costing(Algorithm::Argon2id, 64, MAX_PASSES, MAX_LANES);
        assert_eq!(check_hash(&affordable, "s3cret"), TokenCheck::Valid);
    }
}
