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
    include_str!("migrations/0009_token_storage.sql"),
    include_str!("migrations/0010_certificates_bin.sql"),
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
    if found == known {
        return Ok(());
    }
    // Foreign keys off while migrating, as SQLite's procedure for rebuilding a table asks (a
    // CHECK constraint can only be changed that way): the pragma is a no-op inside a
    // transaction, so it is set around them, and every migration checks all foreign keys
    // before it commits. They are switched back on whatever happened.
    let fk_on: bool = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
    conn.pragma_update(None, "foreign_keys", false)?;
    let outcome = apply(conn, found);
    if fk_on {
        conn.pragma_update(None, "foreign_keys", true)?;
    }
    outcome
}

fn apply(conn: &mut Connection, found: i64) -> Result<(), DbError> {
    for (idx, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = idx as i64 + 1;
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        let broken: i64 =
            tx.query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })?;
        if broken > 0 {
            return Err(DbError::Store(StoreError::Database(format!(
                "migration {version} would leave {broken} rows whose foreign key points nowhere"
            ))));
        }
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

    /// Requests stored before USB tokens keep every row, their rowid order, what points at
    /// them and their indexes; afterwards `token` is a key storage and other spellings are
    /// still refused, and foreign keys are enforced again.
    #[test]
    fn a_token_becomes_a_key_storage_and_no_request_is_lost() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        for (idx, sql) in MIGRATIONS.iter().take(8).enumerate() {
            conn.execute_batch(sql).unwrap();
            conn.pragma_update(None, "user_version", idx as i64 + 1)
                .unwrap();
        }
        for (number, storage) in [("R2", "id-card"), ("R1", "file"), ("R3", "sim-card")] {
            conn.execute(
                "INSERT INTO requests (number, kind, state, iin, subject_json, auth_csr, sign_csr, \
                 registered_at, expires_at, updated_at, key_storage) \
                 VALUES (?1, 'card', 'issued', '860908363012', '{}', x'01', x'02', 0, 0, 0, ?2)",
                [number, storage],
            )
            .unwrap();
        }
        assert!(
            conn.execute(
                "UPDATE requests SET key_storage = 'token' WHERE number = 'R1'",
                []
            )
            .is_err(),
            "before the migration a token is refused"
        );
        conn.execute(
            "INSERT INTO idempotency_keys (caller, key, request_number) VALUES ('ws', 'k', 'R2')",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO certificates (serial, profile, state, subject, spki_sha256, not_before, \
             not_after, der, reserved_at, issued_at, request_number) \
             VALUES ('01', 'individual-auth', 'issued', 'CN=x', 'h', 0, 1, x'30', 0, 0, 'R2')",
            [],
        )
        .unwrap();

        super::run(&mut conn).unwrap();

        let rows: Vec<(String, String)> = conn
            .prepare("SELECT number, key_storage FROM requests ORDER BY rowid")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                ("R2".to_owned(), "id-card".to_owned()),
                ("R1".to_owned(), "file".to_owned()),
                ("R3".to_owned(), "sim-card".to_owned())
            ]
        );
        conn.execute(
            "UPDATE requests SET key_storage = 'token' WHERE number = 'R1'",
            [],
        )
        .unwrap();
        assert!(
            conn.execute(
                "UPDATE requests SET key_storage = 'usb' WHERE number = 'R1'",
                []
            )
            .is_err(),
            "a spelling that is no key storage is still refused"
        );
        let indexes: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'requests' \
                 AND name IN ('requests_state_expiry', 'requests_iin')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexes, 2);
        let fk: bool = conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert!(fk, "foreign keys are on again");
        assert!(
            conn.execute("DELETE FROM requests WHERE number = 'R2'", [])
                .is_err(),
            "a request its certificate points at cannot go"
        );
        assert!(
            conn.execute(
                "INSERT INTO idempotency_keys (caller, key, request_number) VALUES ('ws', 'z', 'R9')",
                []
            )
            .is_err(),
            "the foreign keys point at the new table"
        );
    }
}
