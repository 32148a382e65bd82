//! Publication of what the CA decided, for relying parties: CRLs (full and delta) and OCSP
//! responses, both signed in the HSM.
//!
//! This crate owns the encoding and signing of CRLs and OCSP responses and the CRL numbers.
//! It must never change a certificate's status: it reads revocations, it never makes them; and
//! it never signs a CRL that its own lint ([`crl`] through `crl_lint`) has not passed.

pub mod crl;
mod crl_lint;
pub mod ocsp;
