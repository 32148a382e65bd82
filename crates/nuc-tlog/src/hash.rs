//! The RFC 9162 §2.1.1 hashes: leaves and interior nodes are domain-separated by a one-byte
//! prefix, so a leaf can never be passed off as an interior node (second-preimage defence).

use sha2::{Digest, Sha256};

/// A SHA-256 value: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; 32];

/// The root of the tree with no leaves: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The hash of one leaf: SHA-256(0x00 || data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// The hash of an interior node over its two children: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_separate_leaves_from_nodes() {
        let a = [7u8; 32];
        let mut both = a.to_vec();
        both.extend_from_slice(&a);
        // The same 64 bytes hashed as a leaf and as a node must differ.
        assert_ne!(leaf_hash(&both), node_hash(&a, &a));
        assert_eq!(leaf_hash(b""), {
            let x: Hash = Sha256::digest([0u8]).into();
            x
        });
    }
}
