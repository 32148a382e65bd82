//! Requests of the registration authority and what hangs off them: idempotency keys,
//! revocations, operators, used signed payloads and the notification outbox.
//!
//! Every transition is conditional on the state it leaves (`UPDATE … WHERE state IN …`), so two
//! racing decisions cannot both win, and it writes its audit record, its used-payload mark and
//! its notification in the same change: all of them or none.

use rusqlite::{OptionalExtension, Row, Transaction, params};

use nuc_core::{
    CertificateState, Identification, KeyStorage, Notice, OperatorStatus, RequestKind, RequestState,
};
use nuc_store::{
    AuditEntry, NewRequest, OperatorRow, RequestRow, Revocation, RevocationRow, SerialStatus,
    Transition,
};

use crate::audit::append;
use crate::{DbError, SqliteStore, reason, spelled, spelled_opt};
use nuc_store::StoreError;

const REQUEST_COLUMNS: &str = "number, kind, state, iin, bin, role, email, subject_json, auth_csr, sign_csr, \
     identification, refusal_reason, decided_by, registered_at, expires_at, updated_at, key_storage, \
     renewed_from, remote_renewals";

fn request_row(r: &Row<'_>) -> rusqlite::Result<RequestRow> {
    Ok(RequestRow {
        number: r.get(0)?,
        kind: spelled(r, 1, RequestKind::parse)?,
        state: spelled(r, 2, RequestState::parse)?,
        iin: r.get(3)?,
        bin: r.get(4)?,
        role: r.get(5)?,
        email: r.get(6)?,
        subject_json: r.get(7)?,
        auth_csr: r.get(8)?,
        sign_csr: r.get(9)?,
        identification: spelled_opt(r, 10, Identification::parse)?,
        refusal_reason: r.get(11)?,
        decided_by: r.get(12)?,
        registered_at: r.get(13)?,
        expires_at: r.get(14)?,
        updated_at: r.get(15)?,
        key_storage: spelled(r, 16, KeyStorage::parse)?,
        renewed_from: r.get(17)?,
        remote_renewals: r.get(18)?,
    })
}

fn operator_row(r: &Row<'_>) -> rusqlite::Result<OperatorRow> {
    Ok(OperatorRow {
        iin: r.get(0)?,
        surname: r.get(1)?,
        name: r.get(2)?,
        role: r.get(3)?,
        con: r.get(4)?,
        status: spelled(r, 5, OperatorStatus::parse)?,
    })
}

fn use_payload(
    tx: &Transaction<'_>,
    sha256: &str,
    used_for: &str,
    now: i64,
) -> Result<(), DbError> {
    let existing: Option<String> = tx
        .prepare_cached("SELECT used_for FROM used_payloads WHERE sha256 = ?1")?
        .query_row([sha256], |r| r.get(0))
        .optional()?;
    if let Some(used_for) = existing {
        return Err(DbError::Store(StoreError::PayloadReplayed { used_for }));
    }
    tx.prepare_cached("INSERT INTO used_payloads (sha256, used_at, used_for) VALUES (?1, ?2, ?3)")?
        .execute(params![sha256, now, used_for])?;
    Ok(())
}

fn enqueue(
    tx: &Transaction<'_>,
    n: &Notice,
    request_number: Option<&str>,
    now: i64,
) -> Result<(), DbError> {
    tx.prepare_cached(
        "INSERT INTO notifications (created_at, kind, recipient, subject, body, request_number) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        now,
        n.kind.as_str(),
        n.recipient,
        n.subject,
        n.body,
        request_number
    ])?;
    Ok(())
}

pub(crate) fn apply_transition(tx: &Transaction<'_>, t2: &Transition) -> Result<(), DbError> {
    let now = nuc_core::time::now_unix();
    let current: Option<String> = tx
        .prepare_cached("SELECT state FROM requests WHERE number = ?1")?
        .query_row([&t2.number], |r| r.get(0))
        .optional()?;
    let current =
        current.ok_or_else(|| DbError::Store(StoreError::RequestNotFound(t2.number.clone())))?;
    // A replayed payload is named as such, whatever state the request is in now.
    if let Some(h) = &t2.payload_sha256 {
        use_payload(
            tx,
            h,
            &format!("request {} {}", t2.number, t2.to.as_str()),
            now,
        )?;
    }
    if !t2.from.iter().any(|s| s.as_str() == current) {
        return Err(DbError::Store(StoreError::RequestState {
            number: t2.number.clone(),
            current,
            expected: t2
                .from
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" or "),
        }));
    }
    tx.prepare_cached(
        "UPDATE requests SET state = ?2, updated_at = ?3,
             refusal_reason = COALESCE(?4, refusal_reason),
             decided_by = COALESCE(?5, decided_by),
             identification = COALESCE(?6, identification)
         WHERE number = ?1",
    )?
    .execute(params![
        t2.number,
        t2.to.as_str(),
        now,
        t2.refusal_reason,
        t2.decided_by,
        t2.identification.map(|i| i.as_str())
    ])?;
    for n in &t2.notify {
        enqueue(tx, n, Some(&t2.number), now)?;
    }
    append(tx, &t2.audit, now)?;
    Ok(())
}

impl SqliteStore {
    /// Registers a request. With an idempotency key already used by the same caller, nothing is
    /// written and the request registered the first time is returned instead (`Ok((row, false))`).
    pub(crate) fn register_request(
        &self,
        r: &NewRequest,
        idempotency: Option<(String, String)>,
        notify: Option<Notice>,
        audit: &AuditEntry,
    ) -> Result<(RequestRow, bool), DbError> {
        let (r, audit) = (r.clone(), audit.clone());
        let number = self.write_returning(move |tx| {
            let now = nuc_core::time::now_unix();
            if let Some((caller, key)) = &idempotency {
                let existing: Option<String> = tx
                    .prepare_cached("SELECT request_number FROM idempotency_keys WHERE caller = ?1 AND key = ?2")?
                    .query_row(params![caller, key], |row| row.get(0))
                    .optional()?;
                if let Some(n) = existing {
                    return Ok((n, false));
                }
            }
            if let Some(h) = &r.payload_sha256 {
                use_payload(tx, h, &format!("request {}", r.number), now)?;
            }
            tx.prepare_cached(&format!(
                "INSERT INTO requests ({REQUEST_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, NULL, NULL, ?12, ?13, ?12, ?14, ?15, ?16)"
            ))?
            .execute(params![
                r.number,
                r.kind.as_str(),
                r.state.as_str(),
                r.iin,
                r.bin,
                r.role,
                r.email,
                r.subject_json,
                r.auth_csr,
                r.sign_csr,
                r.identification.map(|i| i.as_str()),
                r.registered_at,
                r.expires_at,
                r.key_storage.as_str(),
                r.renewed_from,
                r.remote_renewals
            ])?;
            if let Some((caller, key)) = &idempotency {
                tx.execute(
                    "INSERT INTO idempotency_keys (caller, key, request_number) VALUES (?1, ?2, ?3)",
                    params![caller, key, r.number],
                )?;
            }
            if let Some(n) = &notify {
                enqueue(tx, n, Some(&r.number), now)?;
            }
            append(tx, &audit, now)?;
            Ok((r.number.clone(), true))
        })?;
        let row = self
            .request(&number.0)?
            .ok_or_else(|| DbError::Store(StoreError::RequestNotFound(number.0.clone())))?;
        Ok((row, number.1))
    }

    /// The request registered under a caller's idempotency key, if any.
    pub(crate) fn request_by_idempotency(
        &self,
        caller: &str,
        key: &str,
    ) -> Result<Option<RequestRow>, DbError> {
        let number: Option<String> = self
            .conn()
            .query_row(
                "SELECT request_number FROM idempotency_keys WHERE caller = ?1 AND key = ?2",
                params![caller, key],
                |r| r.get(0),
            )
            .optional()?;
        match number {
            Some(n) => self.request(&n),
            None => Ok(None),
        }
    }

    /// A request by number.
    pub(crate) fn request(&self, number: &str) -> Result<Option<RequestRow>, DbError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE number = ?1"),
                [number],
                request_row,
            )
            .optional()?)
    }

    /// Moves a request from one of `t.from` to `t.to`, with its payload mark, notification and
    /// audit record; refuses if the request is elsewhere (someone else decided first).
    pub(crate) fn transition(&self, t: &Transition) -> Result<RequestRow, DbError> {
        let t2 = t.clone();
        self.write(move |tx| apply_transition(tx, &t2))?;
        self.request(&t.number)?
            .ok_or_else(|| DbError::Store(StoreError::RequestNotFound(t.number.clone())))
    }

    /// The registered requests of `iin` whose deadline is after `now`, newest first, at most
    /// `limit` (the index `requests_iin` narrows the scan to the one applicant).
    pub(crate) fn pending_requests_of(
        &self,
        iin: &str,
        now: i64,
        limit: u32,
    ) -> Result<Vec<RequestRow>, DbError> {
        let conn = self.conn();
        let mut st = conn.prepare(&format!(
            "SELECT {REQUEST_COLUMNS} FROM requests \
             WHERE iin = ?1 AND state = 'registered' AND expires_at > ?2 \
             ORDER BY registered_at DESC, number DESC LIMIT ?3"
        ))?;
        let rows = st
            .query_map(rusqlite::params![iin, now, i64::from(limit)], request_row)?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// Expires every registered request whose deadline is before `now`; returns their numbers.
    pub(crate) fn expire_requests(&self, now: i64, actor: &str) -> Result<Vec<String>, DbError> {
        let due: Vec<String> = {
            let conn = self.conn();
            let mut st = conn.prepare(
                "SELECT number FROM requests WHERE state = 'registered' AND expires_at <= ?1",
            )?;
            st.query_map([now], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        let mut expired = Vec::new();
        for number in due {
            let t = Transition::expiry(&number, now, actor);
            match self.transition(&t) {
                Ok(_) => expired.push(number),
                Err(DbError::Store(StoreError::RequestState { .. })) => {} // decided meanwhile
                Err(e) => return Err(e),
            }
        }
        Ok(expired)
    }

    /// Certificates a request produced, in issuance order.
    pub(crate) fn certificates_of_request(
        &self,
        number: &str,
    ) -> Result<Vec<(String, String, Vec<u8>)>, DbError> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT serial, profile, der FROM certificates WHERE request_number = ?1 AND state = 'issued' ORDER BY issued_at, rowid",
        )?;
        let rows = st.query_map([number], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Revokes issued certificates (each once), all in one transaction, each with its
    /// notification and audit record, the payload marked used once. Durable when this
    /// returns: CRL and OCSP read the revocations from here.
    pub(crate) fn revoke_all(
        &self,
        batch: &[Revocation],
        payload_sha256: Option<String>,
    ) -> Result<(), DbError> {
        let batch = batch.to_vec();
        self.write(move |tx| {
            let now = nuc_core::time::now_unix();
            if let Some(h) = &payload_sha256 {
                use_payload(tx, h, &Revocation::used_for(&batch), now)?;
            }
            for Revocation {
                row: r,
                notice,
                audit,
            } in &batch
            {
                revoke_one(tx, r, notice.as_ref(), audit, now)?;
            }
            Ok(())
        })
    }

    /// What a signed payload was used for, if it was.
    pub(crate) fn payload_used(&self, sha256: &str) -> Result<Option<String>, DbError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT used_for FROM used_payloads WHERE sha256 = ?1",
                [sha256],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Marks a payload used with its audit record, for an act that changes nothing else.
    pub(crate) fn spend_payload(
        &self,
        sha256: &str,
        used_for: &str,
        audit: &AuditEntry,
    ) -> Result<(), DbError> {
        let (sha256, used_for, audit) = (sha256.to_owned(), used_for.to_owned(), audit.clone());
        self.write(move |tx| {
            let now = nuc_core::time::now_unix();
            use_payload(tx, &sha256, &used_for, now)?;
            append(tx, &audit, now)?;
            Ok(())
        })
    }

    /// The revocation of a certificate, if revoked.
    pub(crate) fn revocation(&self, serial: &str) -> Result<Option<RevocationRow>, DbError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT serial, reason, revoked_at, invalidity_date, revoked_by FROM revocations WHERE serial = ?1",
                [serial],
                |r| {
                    Ok(RevocationRow {
                        serial: r.get(0)?,
                        reason: reason(r, 1)?,
                        revoked_at: r.get(2)?,
                        invalidity_date: r.get(3)?,
                        revoked_by: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }

    /// What OCSP needs to know of a serial, in one cached statement: the certificate's state
    /// and its revocation (reason, time), if any. `None` when we never reserved the serial.
    pub(crate) fn serial_status(&self, serial: &str) -> Result<Option<SerialStatus>, DbError> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(
            "SELECT c.state, r.reason, r.revoked_at FROM certificates c \
             LEFT JOIN revocations r ON r.serial = c.serial WHERE c.serial = ?1",
        )?;
        Ok(st
            .query_row([serial], |r| {
                let code: Option<i64> = r.get(1)?;
                let revoked_at: Option<i64> = r.get(2)?;
                let revocation = match (code, revoked_at) {
                    (Some(_), Some(at)) => Some((reason(r, 1)?, at)),
                    _ => None,
                };
                Ok(SerialStatus {
                    issued: r.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?
                        == CertificateState::Issued.as_str(),
                    revocation,
                })
            })
            .optional()?)
    }

    /// Creates or updates an operator, with its audit record.
    pub(crate) fn put_operator(&self, o: &OperatorRow, audit: &AuditEntry) -> Result<(), DbError> {
        let (o, audit) = (o.clone(), audit.clone());
        self.write(move |tx| {
            let now = nuc_core::time::now_unix();
            tx.execute(
                "INSERT INTO operators (iin, surname, name, role, con, status, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(iin) DO UPDATE SET surname = ?2, name = ?3, role = ?4, con = ?5, status = ?6, updated_at = ?7",
                params![o.iin, o.surname, o.name, o.role, o.con, o.status.as_str(), now],
            )?;
            append(tx, &audit, now)?;
            Ok(())
        })
    }

    /// Sets an operator's status (active | suspended | dismissed), with its audit record.
    pub(crate) fn set_operator_status(
        &self,
        iin: &str,
        status: OperatorStatus,
        audit: &AuditEntry,
    ) -> Result<(), DbError> {
        let (iin, status, audit) = (iin.to_owned(), status.as_str(), audit.clone());
        self.write(move |tx| {
            let now = nuc_core::time::now_unix();
            let n = tx.execute(
                "UPDATE operators SET status = ?2, updated_at = ?3 WHERE iin = ?1",
                params![iin, status, now],
            )?;
            if n != 1 {
                return Err(DbError::Store(StoreError::OperatorNotFound(iin)));
            }
            append(tx, &audit, now)?;
            Ok(())
        })
    }

    /// An operator by IIN.
    pub(crate) fn operator(&self, iin: &str) -> Result<Option<OperatorRow>, DbError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT iin, surname, name, role, con, status FROM operators WHERE iin = ?1",
                [iin],
                operator_row,
            )
            .optional()?)
    }

    /// All operators, by IIN.
    pub(crate) fn operators(&self) -> Result<Vec<OperatorRow>, DbError> {
        let conn = self.conn();
        let mut st = conn
            .prepare("SELECT iin, surname, name, role, con, status FROM operators ORDER BY iin")?;
        let rows = st.query_map([], operator_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Serials of the issued certificates of a profile for an IIN (e.g. an operator's).
    pub(crate) fn serials_for(&self, iin: &str, profile: &str) -> Result<Vec<String>, DbError> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT serial FROM certificates WHERE iin = ?1 AND profile = ?2 AND state = 'issued' ORDER BY issued_at",
        )?;
        let rows = st.query_map(params![iin, profile], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// One revocation inside the caller's transaction: the certificate must be issued and not yet
/// revoked; its notice and audit record go with it, and a request whose certificates are then
/// all revoked becomes revoked.
fn revoke_one(
    tx: &rusqlite::Transaction<'_>,
    r: &RevocationRow,
    notify: Option<&Notice>,
    audit: &AuditEntry,
    now: i64,
) -> Result<(), DbError> {
    let state: Option<(String, Option<String>)> = tx
        .prepare_cached("SELECT state, request_number FROM certificates WHERE serial = ?1")?
        .query_row([&r.serial], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let (state, request_number) =
        state.ok_or_else(|| DbError::Store(StoreError::CertificateNotFound(r.serial.clone())))?;
    if state != "issued" {
        return Err(DbError::Store(StoreError::CertificateNotFound(
            r.serial.clone(),
        )));
    }
    let revoked: bool = tx
        .prepare_cached("SELECT EXISTS(SELECT 1 FROM revocations WHERE serial = ?1)")?
        .query_row([&r.serial], |row| row.get(0))?;
    if revoked {
        return Err(DbError::Store(StoreError::AlreadyRevoked(r.serial.clone())));
    }
    tx.prepare_cached(
        "INSERT INTO revocations (serial, reason, revoked_at, invalidity_date, revoked_by) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![r.serial, r.reason.code(), r.revoked_at, r.invalidity_date, r.revoked_by])?;
    if let Some(n) = notify {
        enqueue(tx, n, request_number.as_deref(), now)?;
    }
    append(tx, audit, now)?;
    if let Some(number) = &request_number {
        let changed = tx.execute(
            "UPDATE requests SET state = 'revoked', updated_at = ?2
             WHERE number = ?1 AND state = 'issued' AND NOT EXISTS (
                 SELECT 1 FROM certificates c WHERE c.request_number = ?1 AND c.state = 'issued'
                 AND NOT EXISTS (SELECT 1 FROM revocations r WHERE r.serial = c.serial))",
            params![number, now],
        )?;
        if changed == 1 {
            append(
                tx,
                &AuditEntry {
                    actor: audit.actor.clone(),
                    action: "request.revoked".into(),
                    object: format!("request:{number}"),
                    details: serde_json::json!({ "last_serial": r.serial }),
                },
                now,
            )?;
        }
    }
    Ok(())
}
