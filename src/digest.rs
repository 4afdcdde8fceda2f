//! SHA-256 digests in lowercase hex: the one place where the program names files by their
//! content (tuning and logits caches), fingerprints weights and data (run states, shards) and
//! checks downloads.

use sha2::{Digest, Sha256};

/// A SHA-256 digest fed piece by piece.
#[derive(Default)]
pub struct Hasher(Sha256);

impl Hasher {
    pub fn new() -> Hasher {
        Hasher::default()
    }

    pub fn update(&mut self, bytes: impl AsRef<[u8]>) -> &mut Hasher {
        self.0.update(bytes);
        self
    }

    /// The digest of what was fed so far, in hex (64 characters).
    pub fn hex(&self) -> String {
        hex::encode(self.0.clone().finalize())
    }

    /// The first `bytes` bytes of the digest in hex, for names that need not be collision-proof
    /// against an adversary (2 * `bytes` characters).
    pub fn short_hex(&self, bytes: usize) -> String {
        hex::encode(&self.0.clone().finalize()[..bytes])
    }
}

/// SHA-256 of `bytes` in hex.
pub fn sha256_hex(bytes: impl AsRef<[u8]>) -> String {
    Hasher::new().update(bytes).hex()
}

/// SHA-256 of weights as loaded (f32, little-endian), in hex.
pub fn weights_digest(weights: &[f32]) -> String {
    sha256_hex(bytemuck::cast_slice::<f32, u8>(weights))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        // FIPS 180-2's "abc".
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let mut h = Hasher::new();
        h.update(b"a").update(b"bc");
        assert_eq!(h.short_hex(4), "ba7816bf");
    }
}
