//! Storage of the NUC RK core service, as its roles see it.
//!
//! This crate owns the *interface* of storage: one trait per kind of record (requests,
//! certificates, revocations, operators, used payloads, the audit log, CRL publications, the
//! notification outbox, the CA's own keys), the rows they read and write, and the promise each
//! makes. A role (RA, CA, publisher, verifier) is given only the traits it uses, so what it
//! can touch is visible in its type. The implementations live elsewhere: `nuc-store-sqlite`
//! (the embedded default) opens the database; [`memory::MemoryStore`] (feature `memory`) keeps
//! everything in memory for the roles' unit tests.
//!
//! It must never open a database, decide policy, or hold key material. Every implementation
//! must keep the guarantee the traits state: a change and its audit record (and its used-
//! payload mark, its notice, the request transition composed with it) commit together or not
//! at all.

mod audit_tree;
pub mod chunks;
mod cluster;
mod forward;
mod ledger;
#[cfg(feature = "memory")]
pub mod memory;
mod retry;
mod rows;
pub mod seed;
mod traits;

pub use audit_tree::{
    AuditTree, CheckpointRow, CosignatureRow, StoredTree, TreeHead, grow as grow_audit_tree,
    leaf_data, leaf_hash as audit_leaf_hash,
};
pub use cluster::{LocalStatusFeed, PublisherLease, StatusChange, StatusFeed, StatusListener};
pub use ledger::{Issuance, IssuanceLedger};
pub use retry::{
    AfterFailure, AttemptRecorded, DeadLetter, DeliveryAttempt, OutboxStats, RetryPolicy,
    SENDER_ACTOR as OUTBOX_ACTOR, dead_letter_audit, revived_audit,
};
pub use rows::{
    AuditBreak, AuditEntry, AuditRecord, CRL_CHUNK_BYTES, CaKeyRow, CertificateRow, CrlKind,
    CrlRow, NewCrl, NewRequest, Notification, OperatorRow, RequestRow, Reservation, Revocation,
    RevocationEntry, RevocationRow, SerialStatus, Transition,
};
pub use traits::{
    AuditLog, CaKeyStore, CertificateReader, CertificateStore, OperatorStore, Outbox,
    PublicationStore, RequestStore, RevocationReader, RevocationStore, StoreHealth, UsedPayloads,
    read_crl,
};

/// Everything a running instance of the service asks of its store: each role is then handed
/// the narrow traits it uses out of it (see `docs/architecture.md`). Implemented by every
/// store that can back `nuc serve`.
pub trait ServiceStore:
    RequestStore
    + CertificateStore
    + CertificateReader
    + RevocationStore
    + RevocationReader
    + UsedPayloads
    + OperatorStore
    + AuditLog
    + AuditTree
    + PublicationStore
    + Outbox
    + CaKeyStore
    + StoreHealth
    + StatusFeed
    + PublisherLease
{
}

impl<T> ServiceStore for T where
    T: RequestStore
        + CertificateStore
        + CertificateReader
        + RevocationStore
        + RevocationReader
        + UsedPayloads
        + OperatorStore
        + AuditLog
        + AuditTree
        + PublicationStore
        + Outbox
        + CaKeyStore
        + StoreHealth
        + StatusFeed
        + PublisherLease
{
}

/// Why storage refused or failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database failed (I/O, constraint, lock): nothing of this change was stored.
    #[error("database: {0}")]
    Database(String),
    #[error("key already certified (serial {serial})")]
    KeyAlreadyCertified { serial: String },
    #[error("serial {0} already exists")]
    SerialExists(String),
    #[error("serial {0} is not reserved")]
    NotReserved(String),
    #[error("database schema version {found} is newer than this build knows ({known})")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("commit failed, nothing of this change was stored: {0}")]
    CommitFailed(String),
    #[error("the storage writer has stopped")]
    WriterStopped,
    #[error("request {0} not found")]
    RequestNotFound(String),
    #[error("request {number} is {current}, not {expected}")]
    RequestState {
        number: String,
        current: String,
        expected: String,
    },
    #[error("this signed payload was already used ({used_for})")]
    PayloadReplayed { used_for: String },
    #[error("certificate {0} not found")]
    CertificateNotFound(String),
    #[error("certificate {0} is already revoked")]
    AlreadyRevoked(String),
    #[error("operator {0} not found")]
    OperatorNotFound(String),
    /// The database cannot be reached (stopped, network down, failing over): nothing of this
    /// change was stored, and the same call may succeed once it is back.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A stored value that this build cannot read (a state or reason it does not know).
    #[error("stored data unreadable: {0}")]
    Corrupt(String),
}
