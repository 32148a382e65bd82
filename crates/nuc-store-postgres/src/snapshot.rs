//! What `nuc backup` and `nuc restore` need from the database beside `pg_dump` and
//! `pg_restore`: one exported snapshot that the dump reads and the backup's facts are read
//! from (so the manifest describes exactly the dumped data), the same facts of a restored
//! database, and the tables a restore target already holds.
//!
//! It only reads: it never creates, migrates or locks anything, and never writes the password
//! or the URL's secrets into an error text.

use nuc_store::StoreError;

use crate::{Connector, DbError, PgOptions, drop_off_runtime, off_runtime};

/// What the backup records of a database, read inside one snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// The schema version (0 when no build migrated the database).
    pub schema_version: i64,
    pub audit_records: i64,
    /// The size of the latest signed audit checkpoint, if any.
    pub latest_checkpoint: Option<i64>,
}

/// A read-only, repeatable-read transaction kept open while `pg_dump --snapshot` reads the
/// snapshot it exported: every change committed before it began is in the dump, nothing
/// committed later is, and [`ExportedSnapshot::facts`] describe that same state.
pub struct ExportedSnapshot {
    client: Option<postgres::Client>,
    id: String,
    facts: Facts,
}

impl ExportedSnapshot {
    /// The snapshot's name, for `pg_dump --snapshot`.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn facts(&self) -> Facts {
        self.facts
    }

    /// Ends the transaction once the dump is complete (it only read).
    pub fn end(mut self) -> Result<(), StoreError> {
        let Some(mut client) = self.client.take() else {
            return Ok(());
        };
        let ended = off_runtime(|| Ok(client.batch_execute("COMMIT")?));
        drop_off_runtime(client);
        Ok(ended?)
    }
}

impl Drop for ExportedSnapshot {
    fn drop(&mut self) {
        // The server ends an open transaction with its session.
        if let Some(client) = self.client.take() {
            drop_off_runtime(client);
        }
    }
}

const FACTS: &str = "SELECT
    (SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations),
    (SELECT COUNT(*)::BIGINT FROM audit_log),
    (SELECT MAX(size)::BIGINT FROM audit_checkpoints)";

fn read_facts(client: &mut impl postgres::GenericClient) -> Result<Facts, DbError> {
    let row = client.query_one(FACTS, &[])?;
    Ok(Facts {
        schema_version: row.try_get(0)?,
        audit_records: row.try_get(1)?,
        latest_checkpoint: row.try_get(2)?,
    })
}

/// Opens a snapshot of the database at `url` for a dump, with its facts read in it. A
/// database this service never initialised (no `audit_log`) is refused.
pub fn export_snapshot(url: &str, opts: &PgOptions) -> Result<ExportedSnapshot, StoreError> {
    let open = || -> Result<ExportedSnapshot, DbError> {
        let mut client = Connector::new(url, opts)?.connect()?;
        client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
        let ours: bool = client
            .query_one(
                "SELECT to_regclass('schema_migrations') IS NOT NULL
                    AND to_regclass('audit_log') IS NOT NULL
                    AND to_regclass('audit_checkpoints') IS NOT NULL",
                &[],
            )?
            .try_get(0)?;
        if !ours {
            drop_off_runtime(client);
            return Err(DbError::Store(StoreError::Database(
                "the database holds no NUC store (no schema_migrations, audit_log or audit_checkpoints): nothing to back up"
                    .into(),
            )));
        }
        let id: String = client
            .query_one("SELECT pg_export_snapshot()", &[])?
            .try_get(0)?;
        let facts = read_facts(&mut client)?;
        Ok(ExportedSnapshot {
            client: Some(client),
            id,
            facts,
        })
    };
    Ok(off_runtime(open)?)
}

/// The facts of the database at `url` as it is now (e.g. just restored).
pub fn facts(url: &str, opts: &PgOptions) -> Result<Facts, StoreError> {
    let read = || -> Result<Facts, DbError> {
        let mut client = Connector::new(url, opts)?.connect()?;
        let facts = {
            let mut tx = client.build_transaction().read_only(true).start()?;
            let facts = read_facts(&mut tx)?;
            tx.commit()?;
            facts
        };
        drop_off_runtime(client);
        Ok(facts)
    };
    Ok(off_runtime(read)?)
}

/// The tables (`schema.table`) of the database at `url` outside PostgreSQL's own schemas: a
/// restore goes only into a database where this is empty.
pub fn user_tables(url: &str, opts: &PgOptions) -> Result<Vec<String>, StoreError> {
    let read = || -> Result<Vec<String>, DbError> {
        let mut client = Connector::new(url, opts)?.connect()?;
        let rows = client.query(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables
              WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
                AND table_schema NOT LIKE 'pg\\_toast%'
              ORDER BY 1",
            &[],
        )?;
        let tables = rows
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<Vec<String>, _>>()?;
        drop_off_runtime(client);
        Ok(tables)
    };
    Ok(off_runtime(read)?)
}
