//! CMS SignedData (RFC 5652) for the decisive requests of the NUC RK.
//!
//! A CON operator confirms, refuses or revokes by signing the exact payload of the request with
//! the operator's own certificate (F1 step 4, F4, F5); an applicant signs a renewal or a
//! revocation with a current certificate of their own (F2, F3); relying parties verify signed
//! documents (F8). This crate owns the CMS itself, and nothing else:
//!
//! - **signer side** ([`sign()`], [`sign_with`]): building a DER `ContentInfo(SignedData)` with
//!   signed attributes (contentType, messageDigest, signingTime), the signer certificate
//!   included, attached or detached. [`sign_with`] takes the signature from a callback, so a key
//!   held on a token (PKCS#11) plugs in without the key ever leaving it; [`sign()`] is the same
//!   path with an OpenSSL key.
//! - **service side** ([`verify()`]): decoding the CMS, finding the signer certificate,
//!   checking that the signed message digest is the digest of the content and that the
//!   signature over the signed attributes verifies with the signer certificate's public key.
//!   [`signer_chains_to`] checks one link of a chain (issuer name and signature).
//!
//! What it must never do:
//!
//! - **decide trust.** A valid [`Verified`] only says "this certificate's key signed these
//!   bytes". Whether the certificate chains to the NUC, is revoked, was valid at signing time,
//!   carries the operator role, belongs to a suspended operator, or is the certificate of the
//!   session's operator is decided by the caller (the RA) with its own database.
//! - **accept content other than what the caller expects.** [`Verified::content`] is what was
//!   signed; the caller must compare it byte for byte with the payload it expects (the request
//!   as registered) and refuse on any difference. For a detached signature the caller passes
//!   the expected payload itself, and [`verify()`] refuses any other bytes with
//!   [`CmsError::DigestMismatch`].
//!
//! One ASN.1 stack: everything is parsed and built with `der` / `x509-cert` / `cms`; OpenSSL
//! is used only for the cryptographic primitives (hashing, signing, verifying with a key
//! rebuilt from its raw parts).

mod alg;
mod error;
pub mod sign;
pub mod verify;

pub use alg::{DigestAlgorithm, SignatureAlgorithm};
pub use error::CmsError;
pub use sign::{SignerFn, ecdsa_signature_from_raw, sign, sign_at, sign_with};
pub use verify::{Verified, signer_chains_to, verify};
