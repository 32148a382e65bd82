//! The audit log's checkpoint key: an Ed25519 key generated in the HSM beside the CA's keys,
//! which signs the checkpoints of the audit tree (C2SP signed notes, `nuc-tlog`).
//!
//! It is a key of its own, not the issuing key: a checkpoint is not a certificate, and an
//! auditor who pins this key learns nothing that lets them accept a forged certificate. Like
//! every CA key it never leaves the token; this module only asks the token to sign.

use nuc_hsm::{Ed25519Key, Hsm, HsmError};
use nuc_tlog::note::{NoteSigner, VerifierKey};

use crate::CaError;

/// The token label of the audit key.
pub const AUDIT_LABEL: &str = "nuc-audit-log";

/// The audit key of a token: found, or made when a home initialised before the audit tree
/// is opened for the first time.
pub(crate) fn find_or_make(hsm: &Hsm) -> Result<Ed25519Key, CaError> {
    match hsm.find_ed25519(AUDIT_LABEL) {
        Ok(key) => Ok(key),
        Err(HsmError::KeyNotFound(_)) => {
            let key = hsm.generate_ed25519(AUDIT_LABEL)?;
            tracing::warn!(
                label = AUDIT_LABEL,
                "the token had no audit key (home made before the audit tree): one was generated"
            );
            Ok(key)
        }
        Err(e) => Err(e.into()),
    }
}

/// Signs checkpoints with the audit key, under the log's name (its origin).
pub struct CheckpointSigner<'a> {
    hsm: &'a Hsm,
    key: &'a Ed25519Key,
    verifier: VerifierKey,
}

impl<'a> CheckpointSigner<'a> {
    pub(crate) fn new(hsm: &'a Hsm, key: &'a Ed25519Key, origin: &str) -> Result<Self, CaError> {
        let verifier = VerifierKey::new(origin, nuc_tlog::note::TYPE_ED25519, *key.public_key())
            .map_err(|e| CaError::invalid("[audit] origin", e.to_string()))?;
        Ok(Self { hsm, key, verifier })
    }

    /// The verifier key auditors and witnesses pin (`name+id+base64`).
    pub fn verifier(&self) -> &VerifierKey {
        &self.verifier
    }
}

impl NoteSigner for CheckpointSigner<'_> {
    type Error = CaError;

    fn key_name(&self) -> &str {
        &self.verifier.name
    }

    fn key_id(&self) -> [u8; 4] {
        self.verifier.key_id
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, CaError> {
        Ok(self.hsm.sign_ed25519(self.key, msg)?.to_vec())
    }
}
