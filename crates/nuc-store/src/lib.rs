//! SQLite storage of the NUC RK core service.
//!
//! This crate owns the database file: its schema (versioned migrations), the certificates and
//! their serial reservations, the fingerprints of every certified key, and the audit log whose
//! records are chained by hash so that an edit by hand is found by [`Store::verify_audit`].
//!
//! It must never decide policy (that is the CA's and the RA's job) and never hold key material:
//! only public certificates, fingerprints and facts. Every state change it makes is written in
//! the same transaction as its audit record, so an audited fact and its record stand or fall
//! together.

mod audit;
mod certs;
mod migrate;
mod publication;
mod registration;
mod seed;
mod writer;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::Connection;

pub use audit::{AuditBreak, AuditEntry, AuditRecord, GENESIS_HASH};
pub use certs::{CaKeyRow, CertificateRow, Reservation};
pub use publication::{CrlKind, CrlRow};
pub use registration::{
    NewRequest, Notification, OperatorRow, RequestRow, RequestState, RevocationRow, SerialStatus,
    Transition,
};
pub use seed::RevocationSeed;

/// Why storage refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
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
}

/// The service's database. Share it behind an `Arc`: reads go through one connection, every
/// change through the group-commit writer.
pub struct Store {
    conn: Mutex<Connection>,
    writer: writer::Writer,
}

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    // FULL: an acknowledged issuance or audit record survives a power cut (SPEC §5).
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

impl Store {
    /// Opens (creating if needed) the database, sets WAL with full durability, and runs the
    /// migrations this build knows.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut write = connect(path)?;
        migrate::run(&mut write)?;
        let conn = connect(path)?;
        Ok(Self {
            conn: Mutex::new(conn),
            writer: writer::Writer::start(write),
        })
    }

    /// Applies a change durably through the group-commit writer.
    pub(crate) fn write(
        &self,
        change: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<(), StoreError> + Send + 'static,
    ) -> Result<(), StoreError> {
        self.writer.write(Box::new(change))
    }

    /// Like [`Store::write`], for a change that also computes a value.
    pub(crate) fn write_returning<T: Send + 'static>(
        &self,
        change: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let slot = std::sync::Arc::new(Mutex::new(None));
        let out = slot.clone();
        self.write(move |tx| {
            let v = change(tx)?;
            *out.lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
            Ok(())
        })?;
        let v = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        v.ok_or(StoreError::WriterStopped)
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half transaction: SQLite rolls back an
        // unfinished one when the next statement begins. So a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }
}
