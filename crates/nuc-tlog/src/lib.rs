//! The tamper-evident audit log's pure core (issue 12).
//!
//! This crate owns three things:
//! - the Merkle tree over the audit records, hashed as in RFC 9162 §2.1 ([`hash`]), read
//!   through stored perfect subtrees and grown by an appender that says which nodes to store
//!   ([`tree`]);
//! - inclusion and consistency proofs, produced and verified per RFC 9162 §2.1.3–2.1.4;
//! - checkpoints (C2SP tlog-checkpoint, [`checkpoint`]) and the signed notes that carry them
//!   with the log's signature and witness cosignatures (C2SP signed-note and
//!   tlog-cosignature, [`note`]).
//!
//! It must never touch storage (the service hands it a [`tree::NodeSource`]), never hold the
//! log's key (signing goes through [`note::NoteSigner`], which the HSM implements; the software
//! key here is for witnesses and tests), and never trust a proof or a note it was given
//! without verifying it. Proofs and notes come from outside, so nothing here panics or
//! allocates without bound on hostile input: it returns a typed error naming the reason.
//!
//! What was taken from the C2SP texts: a note is UTF-8 without control characters other than
//! newline; the text ends in a newline and is followed by one blank line and signature lines
//! `— <name> <base64(key ID || signature)>`; key ID = SHA-256(name || 0x0A || type || public
//! key)[..4]; type 0x01 is Ed25519 over the text; type 0x04 (cosignature/v1) is Ed25519 over
//! `"cosignature/v1\ntime <secs>\n" || text` with `time` as 8 big-endian bytes before the
//! signature. Assumed here, stricter than the texts require: base64 must be canonical, at most
//! 100 signature lines and 1 MiB per note, a known key's failing signature refuses the whole
//! note, and verifier keys of type 0x04 are written in the same `name+id+key` text form as
//! type 0x01.

pub mod checkpoint;
pub mod hash;
pub mod note;
pub mod tree;

pub use hash::{Hash, empty_root, leaf_hash, node_hash};
