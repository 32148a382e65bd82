//! The issuance ledger: how the CA writes an issuance without knowing what it answers.
//!
//! The CA keeps Boulder's order — reserve the serial and key, sign in the HSM, record the
//! certificate — and talks only to an [`IssuanceLedger`]. The RA builds an [`Issuance`] that
//! commits its own request transitions with the reservation and with the record, so the
//! confirmation, the certificates, the request becoming issued and the notice stand or fall
//! together, and the CA never learns what a request state is.

use crate::StoreError;
use crate::rows::{AuditEntry, Reservation, Transition};
use crate::traits::{AuditLog, CertificateStore};

/// Where an issuance is written, step by step.
pub trait IssuanceLedger {
    /// Before signing: the serials and keys, with whatever the caller commits with them.
    fn reserve(&self, items: &[(Reservation, AuditEntry)]) -> Result<(), StoreError>;
    /// After signing: the certificates, with whatever the caller commits with them.
    fn record(&self, items: &[(String, Vec<u8>, AuditEntry)]) -> Result<(), StoreError>;
    /// Signing failed after the reservation: the serial is burnt, the key free again.
    fn abandon(&self, serial: &str, audit: &AuditEntry) -> Result<(), StoreError>;
    /// The issuance was refused before anything was reserved: only the audit record.
    fn refused(&self, audit: &AuditEntry) -> Result<(), StoreError>;
}

/// An issuance in a store, with the transitions its caller composes with each commit.
pub struct Issuance<'a, S: ?Sized> {
    store: &'a S,
    before: Option<Transition>,
    after: Option<Transition>,
}

impl<'a, S: CertificateStore + AuditLog + ?Sized> Issuance<'a, S> {
    /// An issuance that answers no request (an administrator's, an operator's certificate).
    pub fn alone(store: &'a S) -> Self {
        Self {
            store,
            before: None,
            after: None,
        }
    }

    /// An issuance whose reservation commits with `before` and whose record commits with
    /// `after`.
    pub fn with(store: &'a S, before: Option<Transition>, after: Option<Transition>) -> Self {
        Self {
            store,
            before,
            after,
        }
    }
}

impl<S: CertificateStore + AuditLog + ?Sized> IssuanceLedger for Issuance<'_, S> {
    fn reserve(&self, items: &[(Reservation, AuditEntry)]) -> Result<(), StoreError> {
        self.store.reserve_batch(items, self.before.clone())
    }

    fn record(&self, items: &[(String, Vec<u8>, AuditEntry)]) -> Result<(), StoreError> {
        self.store.record_batch(items, self.after.clone())
    }

    fn abandon(&self, serial: &str, audit: &AuditEntry) -> Result<(), StoreError> {
        self.store.abandon(serial, audit)
    }

    fn refused(&self, audit: &AuditEntry) -> Result<(), StoreError> {
        self.store.audit(audit)
    }
}
