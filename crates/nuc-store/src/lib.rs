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

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::Connection;

pub use audit::{AuditBreak, AuditEntry, AuditRecord, GENESIS_HASH};
pub use certs::{CaKeyRow, CertificateRow, Reservation};

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
}

/// The service's database. Cheap to share behind an `Arc`; writers are serialised.
pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    /// Opens (creating if needed) the database, sets WAL with full durability, and runs the
    /// migrations this build knows.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut conn = Connection::open(path)?;
        // FULL: an acknowledged issuance or audit record survives a power cut (SPEC §5).
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        migrate::run(&mut conn)?;
        Ok(Self { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half transaction: SQLite rolls back an
        // unfinished one when the next statement begins. So a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self.conn().query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }
}
