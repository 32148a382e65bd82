//! Versioned migrations: each runs once, in order, inside a transaction, and bumps
//! `PRAGMA user_version`. A database newer than the build is refused rather than guessed at.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use nuc_store::StoreError;

use crate::DbError;

const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_foundation.sql"),
    include_str!("migrations/0002_registration.sql"),
    include_str!("migrations/0003_publication.sql"),
    include_str!("migrations/0004_key_storage.sql"),
    include_str!("migrations/0005_renewal_chain.sql"),
    include_str!("migrations/0006_audit_tree.sql"),
    include_str!("migrations/0007_outbox_retries.sql"),
    include_str!("migrations/0008_crl_chunks.sql"),
];

/// The schema version this build migrates to.
pub const KNOWN: i64 = MIGRATIONS.len() as i64;

/// The schema version the database file at `path` is at, read on a read-only connection of
/// its own: nothing is migrated, created or written. For `nuc check`, which reports a missing
/// migration instead of running it (opening a [`crate::SqliteStore`] would run it).
pub fn stored_version(path: &Path) -> Result<i64, StoreError> {
    let read = || -> Result<i64, DbError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
    };
    Ok(read()?)
}

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

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::MIGRATIONS;

    /// A database made before renewals kept their chain: its renewals count as remote ones
    /// (at least one each), its other requests as CON visits.
    #[test]
    fn renewals_made_before_the_chain_was_kept_count_as_remote() {
        let mut conn = Connection::open_in_memory().unwrap();
        for (idx, sql) in MIGRATIONS.iter().take(4).enumerate() {
            conn.execute_batch(sql).unwrap();
            conn.pragma_update(None, "user_version", idx as i64 + 1)
                .unwrap();
        }
        for (number, kind) in [("R1", "first"), ("R2", "renewal"), ("R3", "card")] {
            conn.execute(
                "INSERT INTO requests (number, kind, state, iin, subject_json, auth_csr, sign_csr, \
                 registered_at, expires_at, updated_at) VALUES (?1, ?2, 'issued', '860908363012', '{}', x'01', x'02', 0, 0, 0)",
                [number, kind],
            )
            .unwrap();
        }
        super::run(&mut conn).unwrap();
        let rows: Vec<(String, Option<String>, i64)> = conn
            .prepare("SELECT number, renewed_from, remote_renewals FROM requests ORDER BY number")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                ("R1".to_owned(), None, 0),
                ("R2".to_owned(), None, 1),
                ("R3".to_owned(), None, 0)
            ]
        );
        assert!(
            conn.execute(
                "UPDATE requests SET remote_renewals = -1 WHERE number = 'R1'",
                []
            )
            .is_err(),
            "a negative count is refused"
        );
    }

    /// A CRL recorded before CRLs were kept in pieces becomes one piece of the same bytes,
    /// with its size.
    #[test]
    fn crls_recorded_whole_become_one_piece() {
        let mut conn = Connection::open_in_memory().unwrap();
        for (idx, sql) in MIGRATIONS.iter().take(7).enumerate() {
            conn.execute_batch(sql).unwrap();
            conn.pragma_update(None, "user_version", idx as i64 + 1)
                .unwrap();
        }
        conn.execute(
            "INSERT INTO crls (crl_number, kind, base_crl_number, this_update, next_update, \
             entries, der, sha256, published_at) VALUES (1, 'full', NULL, 1, 2, 0, x'300100', 'h', 3)",
            [],
        )
        .unwrap();
        super::run(&mut conn).unwrap();
        let size: i64 = conn
            .query_row("SELECT size FROM crls WHERE crl_number = 1", [], |r| {
                r.get(0)
            })
            .unwrap();
        let pieces: Vec<(i64, Vec<u8>)> = conn
            .prepare("SELECT seq, bytes FROM crl_chunks WHERE crl_number = 1")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!((size, pieces), (3, vec![(0, vec![0x30, 0x01, 0x00])]));
    }
}
