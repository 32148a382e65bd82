//! Moving an embedded installation onto PostgreSQL: every table of a SQLite store copied into
//! an empty PostgreSQL store in ONE transaction, so an interrupted copy leaves nothing and a
//! finished one everything.
//!
//! Rows are copied as they are: the audit chain keeps its hashes (both stores hash records the
//! same way, so it keeps verifying), the notifications their ids, the certificates their order
//! of insertion. The CRL-number sequence is set to continue after the highest number copied.
//! A target that holds anything is refused, inside the copy's transaction and under the write
//! lock, so that two copies (or a copy and a running instance) cannot both pass the check.

use std::path::Path;

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use rusqlite::types::ValueRef;

use nuc_store::StoreError;

use crate::{DbError, LOCK_CLASS, LOCK_WRITE, PgStore};

/// True when no table holds a row (the CA keys included).
pub(crate) const EMPTY_QUERY: &str = "SELECT NOT (
    EXISTS (SELECT 1 FROM ca_keys) OR EXISTS (SELECT 1 FROM requests)
    OR EXISTS (SELECT 1 FROM idempotency_keys) OR EXISTS (SELECT 1 FROM certificates)
    OR EXISTS (SELECT 1 FROM certified_keys) OR EXISTS (SELECT 1 FROM audit_log)
    OR EXISTS (SELECT 1 FROM revocations) OR EXISTS (SELECT 1 FROM operators)
    OR EXISTS (SELECT 1 FROM used_payloads) OR EXISTS (SELECT 1 FROM notifications)
    OR EXISTS (SELECT 1 FROM crls) OR EXISTS (SELECT 1 FROM crl_chunks)
    OR EXISTS (SELECT 1 FROM audit_tree)
    OR EXISTS (SELECT 1 FROM audit_checkpoints) OR EXISTS (SELECT 1 FROM audit_cosignatures))";

/// The SQLite schema version this build copies (that of `nuc-store-sqlite`'s migrations).
pub const SQLITE_SCHEMA_VERSION: i64 = 10;

const T: Type = Type::TEXT;
const I: Type = Type::INT8;
/// A SMALLINT column (the audit tree's levels).
const S: Type = Type::INT2;
const B: Type = Type::BYTEA;

/// A table's name, its columns with their types, and the order of its rows.
type Table = (&'static str, &'static [(&'static str, Type)], &'static str);

/// Each table in an order its foreign keys accept: its name, its columns with their types in
/// PostgreSQL (as read from SQLite: `rowid AS ord` gives the certificates' order), and the order
/// of the rows.
const TABLES: &[Table] = &[
    (
        "ca_keys",
        &[
            ("role", T),
            ("hsm_label", T),
            ("algorithm", T),
            ("cert_der", B),
            ("created_at", I),
        ],
        "role",
    ),
    (
        "requests",
        &[
            ("number", T),
            ("kind", T),
            ("state", T),
            ("iin", T),
            ("bin", T),
            ("role", T),
            ("email", T),
            ("subject_json", T),
            ("auth_csr", B),
            ("sign_csr", B),
            ("identification", T),
            ("refusal_reason", T),
            ("decided_by", T),
            ("registered_at", I),
            ("expires_at", I),
            ("updated_at", I),
            ("key_storage", T),
            ("renewed_from", T),
            ("remote_renewals", I),
        ],
        "rowid",
    ),
    (
        "idempotency_keys",
        &[("caller", T), ("key", T), ("request_number", T)],
        "rowid",
    ),
    (
        "certificates",
        &[
            ("serial", T),
            ("rowid AS ord", I),
            ("profile", T),
            ("state", T),
            ("subject", T),
            ("iin", T),
            ("bin", T),
            ("spki_sha256", T),
            ("not_before", I),
            ("not_after", I),
            ("der", B),
            ("reserved_at", I),
            ("issued_at", I),
            ("request_number", T),
        ],
        "rowid",
    ),
    (
        "certified_keys",
        &[("spki_sha256", T), ("serial", T)],
        "rowid",
    ),
    (
        "revocations",
        &[
            ("serial", T),
            ("reason", I),
            ("revoked_at", I),
            ("invalidity_date", I),
            ("revoked_by", T),
        ],
        "rowid",
    ),
    (
        "operators",
        &[
            ("iin", T),
            ("surname", T),
            ("name", T),
            ("role", T),
            ("con", T),
            ("status", T),
            ("updated_at", I),
        ],
        "iin",
    ),
    (
        "used_payloads",
        &[("sha256", T), ("used_at", I), ("used_for", T)],
        "rowid",
    ),
    (
        "notifications",
        &[
            ("id", I),
            ("created_at", I),
            ("kind", T),
            ("recipient", T),
            ("subject", T),
            ("body", T),
            ("request_number", T),
            ("sent_at", I),
            ("attempts", I),
            ("last_error", T),
            ("next_attempt_at", I),
            ("dead_at", I),
        ],
        "id",
    ),
    (
        "crls",
        &[
            ("crl_number", I),
            ("kind", T),
            ("base_crl_number", I),
            ("this_update", I),
            ("next_update", I),
            ("entries", I),
            ("size", I),
            ("sha256", T),
            ("published_at", I),
        ],
        "crl_number",
    ),
    (
        "crl_chunks",
        &[("crl_number", I), ("seq", I), ("bytes", B)],
        "crl_number, seq",
    ),
    (
        "audit_log",
        &[
            ("seq", I),
            ("at", I),
            ("actor", T),
            ("action", T),
            ("object", T),
            ("details", T),
            ("prev_hash", T),
            ("hash", T),
        ],
        "seq",
    ),
    // The audit tree, its checkpoints and their cosignatures: the checkpoints were signed
    // over these records and must come along; the tree is derived but copied as it is.
    (
        "audit_tree",
        &[("level", S), ("idx", I), ("hash", B)],
        "level, idx",
    ),
    (
        "audit_checkpoints",
        &[("size", I), ("root", B), ("at", I), ("note", T)],
        "size",
    ),
    (
        "audit_cosignatures",
        &[("size", I), ("witness", T), ("line", T), ("at", I)],
        "size, witness",
    ),
];

/// The PostgreSQL name of a column as listed in [`TABLES`].
fn target_name(column: &str) -> &str {
    column.rsplit(' ').next().unwrap_or(column)
}

fn sqlite_error(e: rusqlite::Error) -> StoreError {
    StoreError::Database(format!("reading the SQLite store: {e}"))
}

/// One SQLite value as the PostgreSQL type of its column; a value of another type is refused,
/// naming the table and column (never the value: it may be an IIN).
fn value(
    v: ValueRef<'_>,
    ty: &Type,
    table: &str,
    column: &str,
) -> Result<Box<dyn ToSql + Sync>, StoreError> {
    Ok(match (v, ty) {
        (ValueRef::Null, t) if *t == Type::INT8 => Box::new(None::<i64>),
        (ValueRef::Null, t) if *t == Type::INT2 => Box::new(None::<i16>),
        (ValueRef::Null, t) if *t == Type::BYTEA => Box::new(None::<Vec<u8>>),
        (ValueRef::Null, _) => Box::new(None::<String>),
        (ValueRef::Integer(i), t) if *t == Type::INT8 => Box::new(i),
        (ValueRef::Integer(i), t) if *t == Type::INT2 => {
            Box::new(i16::try_from(i).map_err(|_| {
                StoreError::Corrupt(format!("{table}.{column} holds a number beyond a SMALLINT"))
            })?)
        }
        (ValueRef::Text(s), t) if *t == Type::TEXT => Box::new(
            std::str::from_utf8(s)
                .map_err(|_| {
                    StoreError::Corrupt(format!("{table}.{column} holds text that is not UTF-8"))
                })?
                .to_owned(),
        ),
        (ValueRef::Blob(b), t) if *t == Type::BYTEA => Box::new(b.to_vec()),
        (other, t) => {
            return Err(StoreError::Corrupt(format!(
                "{table}.{column} holds a {:?} where {t} is expected",
                other.data_type()
            )));
        }
    })
}

/// Copies every table of the SQLite store at `sqlite_path` (at schema version
/// [`SQLITE_SCHEMA_VERSION`], read in one snapshot) into `target`, in one transaction. Refuses
/// a target that holds anything. Gives the number of rows copied per table.
pub fn copy_from_sqlite(
    sqlite_path: &Path,
    target: &PgStore,
) -> Result<Vec<(&'static str, u64)>, StoreError> {
    let mut src = rusqlite::Connection::open_with_flags(
        sqlite_path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| {
        StoreError::Database(format!(
            "cannot open the SQLite store {}: {e}",
            sqlite_path.display()
        ))
    })?;
    src.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(sqlite_error)?;
    let snapshot = src.transaction().map_err(sqlite_error)?;
    let version: i64 = snapshot
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sqlite_error)?;
    if version != SQLITE_SCHEMA_VERSION {
        return Err(StoreError::Database(format!(
            "the SQLite store is at schema version {version}, this build copies version {SQLITE_SCHEMA_VERSION}: open it once with this build (it migrates) and copy again"
        )));
    }

    let mut client = target.connector.connect()?;
    let mut tx = client.transaction().map_err(DbError::from)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&LOCK_CLASS, &LOCK_WRITE],
    )
    .map_err(DbError::from)?;
    let empty: bool = tx
        .query_one(EMPTY_QUERY, &[])
        .and_then(|r| r.try_get(0))
        .map_err(DbError::from)?;
    if !empty {
        return Err(StoreError::Database(
            "the target PostgreSQL store is not empty: a copy goes only into a store that holds nothing"
                .into(),
        ));
    }
    let mut copied = Vec::with_capacity(TABLES.len());
    for (table, columns, order) in TABLES {
        let select = format!(
            "SELECT {} FROM {table} ORDER BY {order}",
            columns
                .iter()
                .map(|(c, _)| *c)
                .collect::<Vec<_>>()
                .join(", ")
        );
        let copy = format!(
            "COPY {table} ({}) FROM STDIN (FORMAT binary)",
            columns
                .iter()
                .map(|(c, _)| target_name(c))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let types: Vec<Type> = columns.iter().map(|(_, t)| t.clone()).collect();
        let mut stmt = snapshot.prepare(&select).map_err(sqlite_error)?;
        let mut rows = stmt.query([]).map_err(sqlite_error)?;
        let sink = tx.copy_in(copy.as_str()).map_err(DbError::from)?;
        let mut writer = BinaryCopyInWriter::new(sink, &types);
        while let Some(row) = rows.next().map_err(sqlite_error)? {
            let mut values = Vec::with_capacity(columns.len());
            for (i, (column, ty)) in columns.iter().enumerate() {
                let v = row.get_ref(i).map_err(sqlite_error)?;
                values.push(value(v, ty, table, target_name(column))?);
            }
            let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref()).collect();
            writer.write(&refs).map_err(DbError::from)?;
        }
        let n = writer.finish().map_err(DbError::from)?;
        copied.push((*table, n));
    }
    // Generated numbers continue after the copied ones.
    tx.batch_execute(
        "SELECT setval(pg_get_serial_sequence('notifications', 'id'), MAX(id)) FROM notifications HAVING COUNT(*) > 0;
         SELECT setval(pg_get_serial_sequence('certificates', 'ord'), MAX(ord)) FROM certificates HAVING COUNT(*) > 0;
         SELECT setval('crl_numbers', MAX(crl_number)) FROM crls HAVING COUNT(*) > 0;",
    )
    .map_err(DbError::from)?;
    tx.commit().map_err(DbError::from)?;
    Ok(copied)
}
