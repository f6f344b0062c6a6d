//! Comparing a presented secret with the expected one without telling an observer of
//! timing anything about either.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Whether `presented` equals `expected`, in time that depends on neither their contents
/// nor where they first differ nor whether their lengths match: both are hashed with
/// SHA-256 and the two digests compared in constant time. (Hashing takes time linear in
/// the input, which reveals only the length of what the caller presented.)
pub fn secrets_equal(presented: &[u8], expected: &[u8]) -> bool {
    let presented = Sha256::digest(presented);
    let expected = Sha256::digest(expected);
    presented.ct_eq(&expected).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_bytes_are_equal() {
        let secret = b"a-shared-secret";
        assert!(secrets_equal(secret, secret));
        assert!(secrets_equal(b"", b""));
        assert!(!secrets_equal(b"a-shared-secreT", secret), "last byte");
        assert!(!secrets_equal(b"A-shared-secret", secret), "first byte");
        assert!(!secrets_equal(b"a-shared-secre", secret), "a prefix");
        assert!(!secrets_equal(b"a-shared-secrett", secret), "one byte more");
        assert!(!secrets_equal(b"", secret), "nothing");
    }
}
