//! Versioned migrations: each runs once, in order, in its own transaction, and is recorded in
//! `schema_migrations`. They run under a session advisory lock, so that instances starting at
//! once do not race; a database newer than the build is refused rather than guessed at.

use nuc_store::StoreError;

use crate::{Connector, DbError, LOCK_CLASS, LOCK_MIGRATE, PgOptions, off_runtime};

const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_schema.sql"),
    include_str!("../migrations/0002_audit_tree.sql"),
    include_str!("../migrations/0003_outbox_retries.sql"),
    include_str!("../migrations/0004_crl_chunks.sql"),
    include_str!("../migrations/0005_token_storage.sql"),
    include_str!("../migrations/0006_certificates_bin.sql"),
];

/// The schema version this build migrates to.
pub const KNOWN: i64 = MIGRATIONS.len() as i64;

/// The schema version the database at `url` is at (0 when no build has migrated it yet),
/// read on a connection of its own: no lock is taken, nothing is created or migrated. For
/// `nuc check`, which reports a missing migration instead of running it (opening a
/// [`crate::PgStore`] would run it).
pub fn stored_version(url: &str, opts: &PgOptions) -> Result<i64, StoreError> {
    let read = || -> Result<i64, DbError> {
        let mut client = Connector::new(url, opts)?.connect()?;
        let recorded: bool = client
            .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])?
            .try_get(0)?;
        if !recorded {
            return Ok(0);
        }
        Ok(client
            .query_one(
                "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations",
                &[],
            )?
            .try_get(0)?)
    };
    Ok(off_runtime(read)?)
}

pub(crate) fn run(client: &mut postgres::Client) -> Result<(), DbError> {
    client.execute(
        "SELECT pg_advisory_lock($1, $2)",
        &[&LOCK_CLASS, &LOCK_MIGRATE],
    )?;
    let outcome = migrate(client);
    // On a broken connection the server frees the lock with the session.
    let _ = client.execute(
        "SELECT pg_advisory_unlock($1, $2)",
        &[&LOCK_CLASS, &LOCK_MIGRATE],
    );
    outcome
}

fn migrate(client: &mut postgres::Client) -> Result<(), DbError> {
    client.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version     BIGINT PRIMARY KEY,
             applied_at  BIGINT NOT NULL
         )",
    )?;
    let found: i64 = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations",
            &[],
        )?
        .try_get(0)?;
    if found > KNOWN {
        return Err(DbError::Store(StoreError::SchemaTooNew {
            found,
            known: KNOWN,
        }));
    }
    for (idx, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = idx as i64 + 1;
        let mut tx = client.transaction()?;
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[&version, &nuc_core::time::now_unix()],
        )?;
        tx.commit()?;
        tracing::info!(version, "database migrated");
    }
    Ok(())
}
