//! Certificates, their serial reservations, and the CA's own keys, as in `nuc-store-sqlite`:
//! the serial and key are reserved before the HSM signs, the certificate recorded after, each
//! step its own transaction with its audit record. The primary keys of `certificates` and
//! `certified_keys` make a second issuance of a serial or a key impossible even for a bug.

use nuc_core::CertificateState;
use nuc_store::{AuditEntry, CaKeyRow, CertificateRow, Reservation, StoreError, Transition};

use crate::audit::append;
use crate::registration::apply_transition;
use crate::{DbError, PgStore, Sql, spelled};

type Tx<'a> = Sql<'a, postgres::Client>;

fn reserve_in(tx: &mut Tx<'_>, r: &Reservation, audit: &AuditEntry) -> Result<(), DbError> {
    let now = nuc_core::time::now_unix();
    if let Some(row) = tx.query_opt(
        "SELECT serial FROM certified_keys WHERE spki_sha256 = $1",
        &[&r.spki_sha256],
    )? {
        return Err(DbError::Store(StoreError::KeyAlreadyCertified {
            serial: row.try_get(0)?,
        }));
    }
    let inserted = tx.execute(
        "INSERT INTO certificates
         (serial, profile, state, subject, iin, bin, spki_sha256, not_before, not_after, reserved_at, request_number)
         VALUES ($1, $2, 'reserved', $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (serial) DO NOTHING",
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
        ],
    )?;
    if inserted != 1 {
        return Err(DbError::Store(StoreError::SerialExists(r.serial.clone())));
    }
    tx.execute(
        "INSERT INTO certified_keys (spki_sha256, serial) VALUES ($1, $2)",
        &[&r.spki_sha256, &r.serial],
    )?;
    append(tx, audit, now)?;
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
                let n = tx.execute(
                    "UPDATE certificates SET state = 'issued', der = $2, issued_at = $3
                     WHERE serial = $1 AND state = 'reserved'",
                    &[serial, der, &now],
                )?;
                if n != 1 {
                    return Err(DbError::Store(StoreError::NotReserved(serial.clone())));
                }
                append(tx, audit, now)?;
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
            .map(|r| {
                Ok(CertificateRow {
                    serial: r.try_get(0)?,
                    profile: r.try_get(1)?,
                    state: spelled(&r, 2, CertificateState::parse)?,
                    subject: r.try_get(3)?,
                    iin: r.try_get(4)?,
                    spki_sha256: r.try_get(5)?,
                    der: r.try_get(6)?,
                    request_number: r.try_get(7)?,
                })
            })
            .transpose()
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
