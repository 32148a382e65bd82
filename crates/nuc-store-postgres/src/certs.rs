//! Certificates, their serial reservations, and the CA's own keys, as in `nuc-store-sqlite`:
//! the serial and key are reserved before the HSM signs, the certificate recorded after, each
//! step its own transaction with its audit record (written by the same statement where the
//! step is one statement, to spare round trips). The primary keys of `certificates` and
//! `certified_keys` make a second issuance of a serial or a key impossible even for a bug.

use nuc_core::CertificateState;
use nuc_store::{AuditEntry, CaKeyRow, CertificateRow, Reservation, StoreError, Transition};

use crate::audit::{Next, append};
use crate::registration::apply_transition;
use crate::{DbError, PgStore, Sql, spelled};

type Tx<'a> = Sql<'a, postgres::Client>;

/// Reserves the serial and the key and writes the audit record in one statement: nothing is
/// written when the key is already certified or the serial taken, and the refusal names which.
fn reserve_in(tx: &mut Tx<'_>, r: &Reservation, audit: &AuditEntry) -> Result<(), DbError> {
    let now = nuc_core::time::now_unix();
    let next = Next::after(tx, audit, now)?;
    let row = tx.query_one(
        "WITH known AS (SELECT serial FROM certified_keys WHERE spki_sha256 = $6::TEXT),
         cert AS (
             INSERT INTO certificates
             (serial, profile, state, subject, iin, bin, spki_sha256, not_before, not_after, reserved_at, request_number)
             SELECT $1::TEXT, $2::TEXT, 'reserved', $3::TEXT, $4::TEXT, $5::TEXT, $6::TEXT, $7::BIGINT,
                    $8::BIGINT, $9::BIGINT, $10::TEXT
             WHERE NOT EXISTS (SELECT 1 FROM known)
             ON CONFLICT (serial) DO NOTHING
             RETURNING serial, spki_sha256),
         keyed AS (INSERT INTO certified_keys (spki_sha256, serial) SELECT spki_sha256, serial FROM cert),
         logged AS (
             INSERT INTO audit_log (seq, at, actor, action, object, details, prev_hash, hash)
             SELECT $11::BIGINT, $9::BIGINT, $12::TEXT, $13::TEXT, $14::TEXT, $15::TEXT, $16::TEXT, $17::TEXT
             FROM cert)
         SELECT (SELECT serial FROM known), EXISTS (SELECT 1 FROM cert)",
        &[
            &r.serial,
            &r.profile,
            &r.subject,
            &r.iin,
            &r.bin,
            &r.spki_sha256,
            &r.not_before,
            &r.not_after,
            &now,
            &r.request_number,
            &next.seq,
            &audit.actor,
            &audit.action,
            &audit.object,
            &next.details,
            &next.prev_hash,
            &next.hash,
        ],
    )?;
    if let Some(serial) = row.try_get::<_, Option<String>>(0)? {
        return Err(DbError::Store(StoreError::KeyAlreadyCertified { serial }));
    }
    if !row.try_get::<_, bool>(1)? {
        return Err(DbError::Store(StoreError::SerialExists(r.serial.clone())));
    }
    next.written(tx);
    Ok(())
}

fn abandon_in(tx: &mut Tx<'_>, serial: &str) -> Result<u64, DbError> {
    let n = tx.execute(
        "UPDATE certificates SET state = 'abandoned' WHERE serial = $1 AND state = 'reserved'",
        &[&serial],
    )?;
    if n == 1 {
        tx.execute("DELETE FROM certified_keys WHERE serial = $1", &[&serial])?;
    }
    Ok(n)
}

impl PgStore {
    pub(crate) fn key_certified(&self, spki_sha256: &str) -> Result<Option<String>, DbError> {
        self.read(|s| {
            s.query_opt(
                "SELECT serial FROM certified_keys WHERE spki_sha256 = $1",
                &[&spki_sha256],
            )?
            .map(|r| Ok(r.try_get(0)?))
            .transpose()
        })
    }

    pub(crate) fn reserve_batch(
        &self,
        items: &[(Reservation, AuditEntry)],
        before: Option<Transition>,
    ) -> Result<(), DbError> {
        let items = items.to_vec();
        self.write(move |tx| {
            if let Some(t) = &before {
                apply_transition(tx, t)?;
            }
            for (r, audit) in &items {
                reserve_in(tx, r, audit)?;
            }
            Ok(())
        })
    }

    pub(crate) fn record_batch(
        &self,
        items: &[(String, Vec<u8>, AuditEntry)],
        after: Option<Transition>,
    ) -> Result<(), DbError> {
        let items = items.to_vec();
        self.write(move |tx| {
            let now = nuc_core::time::now_unix();
            for (serial, der, audit) in &items {
                // The certificate and its audit record in one statement: the record is written
                // only when the reservation was there to be completed.
                let next = Next::after(tx, audit, now)?;
                let n = tx.execute(
                    "WITH done AS (
                         UPDATE certificates SET state = 'issued', der = $2, issued_at = $3
                         WHERE serial = $1 AND state = 'reserved'
                         RETURNING serial)
                     INSERT INTO audit_log (seq, at, actor, action, object, details, prev_hash, hash)
                     SELECT $4::BIGINT, $3::BIGINT, $5::TEXT, $6::TEXT, $7::TEXT, $8::TEXT, $9::TEXT, $10::TEXT
                     FROM done",
                    &[
                        serial,
                        der,
                        &now,
                        &next.seq,
                        &audit.actor,
                        &audit.action,
                        &audit.object,
                        &next.details,
                        &next.prev_hash,
                        &next.hash,
                    ],
                )?;
                if n != 1 {
                    return Err(DbError::Store(StoreError::NotReserved(serial.clone())));
                }
                next.written(tx);
            }
            if let Some(t) = &after {
                apply_transition(tx, t)?;
            }
            Ok(())
        })
    }

    pub(crate) fn abandon(&self, serial: &str, audit: &AuditEntry) -> Result<(), DbError> {
        let (serial, audit) = (serial.to_owned(), audit.clone());
        self.write(move |tx| {
            let now = nuc_core::time::now_unix();
            if abandon_in(tx, &serial)? != 1 {
                return Err(DbError::Store(StoreError::NotReserved(serial)));
            }
            append(tx, &audit, now)?;
            Ok(())
        })
    }

    pub(crate) fn abandon_stale_reservations(
        &self,
        before: i64,
        actor: &str,
    ) -> Result<Vec<String>, DbError> {
        let actor = actor.to_owned();
        self.write_returning(move |tx| {
            let now = nuc_core::time::now_unix();
            let serials: Vec<String> = tx
                .query(
                    "SELECT serial FROM certificates WHERE state = 'reserved' AND reserved_at < $1 ORDER BY ord",
                    &[&before],
                )?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?;
            for serial in &serials {
                abandon_in(tx, serial)?;
                append(
                    tx,
                    &AuditEntry {
                        actor: actor.clone(),
                        action: "certificate.abandoned".into(),
                        object: format!("serial:{serial}"),
                        details: serde_json::json!({
                            "reason": "stale reservation: the process stopped before the certificate was recorded",
                        }),
                    },
                    now,
                )?;
            }
            Ok(serials)
        })
    }

    pub(crate) fn certificate(&self, serial: &str) -> Result<Option<CertificateRow>, DbError> {
        self.read(|s| {
            s.query_opt(
                "SELECT serial, profile, state, subject, iin, spki_sha256, der, request_number FROM certificates WHERE serial = $1",
                &[&serial],
            )?
            .map(|r| certificate_row(&r))
            .transpose()
        })
    }

    /// Every issued certificate of an IIN, any profile, in issuance order.
    pub(crate) fn certificates_of(&self, iin: &str) -> Result<Vec<CertificateRow>, DbError> {
        self.read(|s| {
            s.query(
                "SELECT serial, profile, state, subject, iin, spki_sha256, der, request_number FROM certificates
                 WHERE iin = $1 AND state = 'issued' ORDER BY issued_at, ord",
                &[&iin],
            )?
            .iter()
            .map(certificate_row)
            .collect()
        })
    }

    pub(crate) fn certificates_of_bin(&self, bin: &str) -> Result<Vec<CertificateRow>, DbError> {
        self.read(|s| {
            s.query(
                "SELECT serial, profile, state, subject, iin, spki_sha256, der, request_number FROM certificates
             WHERE bin = $1 AND state = 'issued' ORDER BY issued_at, ord",
                &[&bin],
            )?
            .iter()
            .map(certificate_row)
            .collect()
        })
    }

    pub(crate) fn certificate_counts(&self) -> Result<Vec<(String, i64)>, DbError> {
        self.read(|s| {
            s.query(
                "SELECT state, COUNT(*) FROM certificates GROUP BY state ORDER BY state",
                &[],
            )?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
        })
    }

    pub(crate) fn put_ca_keys(&self, keys: &[CaKeyRow], audit: &AuditEntry) -> Result<(), DbError> {
        let (keys, audit) = (keys.to_vec(), audit.clone());
        self.write(move |tx| {
            let now = nuc_core::time::now_unix();
            for k in &keys {
                tx.execute(
                    "INSERT INTO ca_keys (role, hsm_label, algorithm, cert_der, created_at) VALUES ($1, $2, $3, $4, $5)",
                    &[&k.role, &k.hsm_label, &k.algorithm, &k.cert_der, &now],
                )?;
            }
            append(tx, &audit, now)?;
            Ok(())
        })
    }

    /// Puts `key` in place of the CA key of its role, with one audit record, or nothing.
    pub(crate) fn replace_ca_key(&self, key: &CaKeyRow, audit: &AuditEntry) -> Result<(), DbError> {
        let (key, audit) = (key.clone(), audit.clone());
        self.write(move |tx| {
            let now = nuc_core::time::now_unix();
            let changed = tx.execute(
                "UPDATE ca_keys SET hsm_label = $2, algorithm = $3, cert_der = $4, created_at = $5 WHERE role = $1",
                &[&key.role, &key.hsm_label, &key.algorithm, &key.cert_der, &now],
            )?;
            if changed != 1 {
                return Err(DbError::Store(StoreError::Database(format!(
                    "no CA key of role {} to replace",
                    key.role
                ))));
            }
            append(tx, &audit, now)?;
            Ok(())
        })
    }

    pub(crate) fn ca_keys(&self) -> Result<Vec<CaKeyRow>, DbError> {
        self.read(|s| {
            s.query(
                "SELECT role, hsm_label, algorithm, cert_der FROM ca_keys ORDER BY role",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(CaKeyRow {
                    role: r.try_get(0)?,
                    hsm_label: r.try_get(1)?,
                    algorithm: r.try_get(2)?,
                    cert_der: r.try_get(3)?,
                })
            })
            .collect()
        })
    }
}

/// A certificate row as the queries above select its columns.
fn certificate_row(r: &postgres::Row) -> Result<CertificateRow, DbError> {
    Ok(CertificateRow {
        serial: r.try_get(0)?,
        profile: r.try_get(1)?,
        state: spelled(r, 2, CertificateState::parse)?,
        subject: r.try_get(3)?,
        iin: r.try_get(4)?,
        spki_sha256: r.try_get(5)?,
        der: r.try_get(6)?,
        request_number: r.try_get(7)?,
    })
}
