//! SQLite storage of the NUC RK core service.
//!
//! This crate owns the database file: its schema (versioned migrations), the certificates and
//! their serial reservations, the fingerprints of every certified key, and the audit log whose
//! records are chained by hash so that an edit by hand is found by [`SqliteStore::verify_audit`].
//!
//! It must never decide policy (that is the CA's and the RA's job) and never hold key material:
//! only public certificates, fingerprints and facts. Every state change it makes is written in
//! the same transaction as its audit record, so an audited fact and its record stand or fall
//! together.

mod audit;
mod audit_tree;
mod certs;
mod migrate;
mod outbox;
mod publication;
mod registration;
mod seed;
mod traits;
mod writer;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::Connection;

pub use audit::GENESIS_HASH;
pub use migrate::{KNOWN as SCHEMA_VERSION, stored_version};
pub use seed::RevocationSeed;

use nuc_store::StoreError;

/// What went wrong inside this crate: SQLite's own error, or a refusal of the store. Crosses
/// the crate's boundary only as a [`StoreError`] (the traits' error), so that no role ever sees
/// a `rusqlite` type.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DbError {
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<DbError> for StoreError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Sqlite(e) => StoreError::Database(e.to_string()),
            DbError::Store(e) => e,
        }
    }
}

/// The service's database. Share it behind an `Arc`: reads go through one connection, every
/// change through the group-commit writer.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    writer: writer::Writer,
    /// Revocations as they commit: this process is the only writer of its file.
    feed: nuc_store::LocalStatusFeed,
}

fn connect(path: &Path) -> Result<Connection, DbError> {
    let conn = Connection::open(path)?;
    // FULL: an acknowledged issuance or audit record survives a power cut (SPEC §5).
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database, sets WAL with full durability, and runs the
    /// migrations this build knows.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self::open_db(path)?)
    }

    fn open_db(path: &Path) -> Result<Self, DbError> {
        let mut write = connect(path)?;
        migrate::run(&mut write)?;
        let conn = connect(path)?;
        Ok(Self {
            conn: Mutex::new(conn),
            writer: writer::Writer::start(write, connect(path)?)?,
            feed: nuc_store::LocalStatusFeed::default(),
        })
    }

    /// Applies a change durably through the group-commit writer.
    pub(crate) fn write(
        &self,
        change: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<(), DbError> + Send + 'static,
    ) -> Result<(), DbError> {
        self.writer.write(Box::new(change))
    }

    /// Like [`SqliteStore::write`], for a change that also computes a value.
    pub(crate) fn write_returning<T: Send + 'static>(
        &self,
        change: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let slot = std::sync::Arc::new(Mutex::new(None));
        let out = slot.clone();
        self.write(move |tx| {
            let v = change(tx)?;
            *out.lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
            Ok(())
        })?;
        let v = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        v.ok_or(DbError::Store(StoreError::WriterStopped))
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half transaction: SQLite rolls back an
        // unfinished one when the next statement begins. So a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A read on the read connection and an empty change through the group-commit writer:
    /// proves that reads get a snapshot, that the writer thread lives and that the write lock
    /// can be had. An empty transaction writes nothing and costs no fsync.
    pub(crate) fn ping(&self) -> Result<(), DbError> {
        self.conn()
            .query_row("SELECT COUNT(*) FROM sqlite_schema", [], |r| {
                r.get::<_, i64>(0)
            })?;
        self.write(|_| Ok(()))
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(DbError::from)?)
    }
}

/// What a snapshot made by [`snapshot_into`] holds, read from the snapshot itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// `PRAGMA user_version`: the schema version of the copy.
    pub schema_version: i64,
    /// Records of the audit log in the copy.
    pub audit_records: i64,
    /// Size of the latest signed checkpoint of the audit log in the copy, if any.
    pub latest_checkpoint: Option<i64>,
}

/// Copies the database file at `db` into the new file `into` as one consistent snapshot
/// (`VACUUM INTO`, a single read transaction): online, while the service goes on writing. The
/// copy holds every transaction committed before the snapshot began and nothing after.
/// Neither creates nor migrates `db`; `into` must not exist.
pub fn snapshot_into(db: &Path, into: &Path) -> Result<Snapshot, StoreError> {
    let snapshot = || -> Result<Snapshot, DbError> {
        let conn = Connection::open_with_flags(
            db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let target = into
            .to_str()
            .ok_or_else(|| StoreError::Database(format!("{}: not a UTF-8 path", into.display())))?;
        conn.execute("VACUUM INTO ?1", [target])?;
        let copy = Connection::open_with_flags(
            into,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        Ok(Snapshot {
            schema_version: copy.query_row("PRAGMA user_version", [], |r| r.get(0))?,
            audit_records: copy.query_row("SELECT COUNT(*) FROM audit_log", [], |r| r.get(0))?,
            latest_checkpoint: copy.query_row(
                "SELECT MAX(size) FROM audit_checkpoints",
                [],
                |r| r.get(0),
            )?,
        })
    };
    Ok(snapshot()?)
}

/// A stored value this build cannot read, as the conversion error naming its column: never a
/// silent default.
fn unreadable(idx: usize, ty: rusqlite::types::Type, what: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, ty, what.into())
}

/// A stored spelling read back as its domain enum.
pub(crate) fn spelled<T>(
    row: &rusqlite::Row<'_>,
    idx: usize,
    parse: fn(&str) -> Option<T>,
) -> rusqlite::Result<T> {
    spelled_opt(row, idx, parse)?.ok_or(rusqlite::Error::InvalidColumnType(
        idx,
        "NULL where a value is required".into(),
        rusqlite::types::Type::Null,
    ))
}

/// Like [`spelled`], for a nullable column.
pub(crate) fn spelled_opt<T>(
    row: &rusqlite::Row<'_>,
    idx: usize,
    parse: fn(&str) -> Option<T>,
) -> rusqlite::Result<Option<T>> {
    let text: Option<String> = row.get(idx)?;
    text.map(|t| {
        parse(&t).ok_or_else(|| {
            unreadable(
                idx,
                rusqlite::types::Type::Text,
                format!("unknown stored value {t:?}"),
            )
        })
    })
    .transpose()
}

/// A stored CRLReason code read back as its reason.
pub(crate) fn reason(
    row: &rusqlite::Row<'_>,
    idx: usize,
) -> rusqlite::Result<nuc_core::RevocationReason> {
    let code: i64 = row.get(idx)?;
    nuc_core::RevocationReason::from_code(code).ok_or_else(|| {
        unreadable(
            idx,
            rusqlite::types::Type::Integer,
            format!("{code} is not an RFC 5280 CRLReason"),
        )
    })
}
