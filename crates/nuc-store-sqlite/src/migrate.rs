//! Versioned migrations: each runs once, in order, inside a transaction, and bumps
//! `PRAGMA user_version`. A database newer than the build is refused rather than guessed at.

use rusqlite::Connection;

use nuc_store::StoreError;

use crate::DbError;

const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_foundation.sql"),
    include_str!("migrations/0002_registration.sql"),
    include_str!("migrations/0003_publication.sql"),
    include_str!("migrations/0004_key_storage.sql"),
];

/// The schema version this build migrates to.
pub(crate) const KNOWN: i64 = MIGRATIONS.len() as i64;

pub(crate) fn run(conn: &mut Connection) -> Result<(), DbError> {
    let known = KNOWN;
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > known {
        return Err(DbError::Store(StoreError::SchemaTooNew { found, known }));
    }
    for (idx, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = idx as i64 + 1;
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!(version, "database migrated");
    }
    Ok(())
}
