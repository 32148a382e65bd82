//! Publication of what the CA decided, for relying parties: CRLs (full and delta) and OCSP
//! responses, both signed in the HSM; and for auditors, the audit log's signed checkpoints
//! ([`checkpoint`]).
//!
//! This crate owns the encoding and signing of CRLs and OCSP responses and the CRL numbers.
//! It must never change a certificate's status: it reads revocations, it never makes them; and
//! it never signs a CRL that its own lint ([`crl`] through `crl_lint`) has not passed.

//!
//! What it is given, and nothing more: a CA handle that can only sign a CRL
//! ([`nuc_ca::CrlSigner`]) or an OCSP response ([`nuc_ca::OcspSigner`]), and the storage traits
//! it reads and writes ([`PublisherStore`] for CRLs, [`nuc_store::RevocationReader`] for OCSP).

pub mod checkpoint;
pub mod crl;
mod crl_build;
mod crl_entry;
mod crl_lint;
pub mod ocsp;
mod reason;
pub mod status;

use nuc_ca::{CrlSigner, OcspSigner};
use nuc_store::{PublicationStore, RevocationReader};

/// The storage of CRL publication: the revocations it lists and the CRLs (numbers, bytes) it
/// records.
pub trait PublisherStore: RevocationReader + PublicationStore {}

impl<T: RevocationReader + PublicationStore + ?Sized> PublisherStore for T {}

/// What a CRL is made with.
#[derive(Clone, Copy)]
pub struct CrlContext<'a> {
    pub ca: &'a dyn CrlSigner,
    pub store: &'a dyn PublisherStore,
}

/// What an OCSP response is made with.
#[derive(Clone, Copy)]
pub struct OcspContext<'a> {
    pub ca: &'a dyn OcspSigner,
    pub store: &'a dyn RevocationReader,
}
