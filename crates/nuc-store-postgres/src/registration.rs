//! Requests of the registration authority and what hangs off them: idempotency keys,
//! revocations, operators, used signed payloads and the notification outbox — as in
//! `nuc-store-sqlite`, statement for statement.
//!
//! Every transition is conditional on the state it leaves, and writes its audit record, its
//! used-payload mark and its notice in the same change: all of them or none. A revocation also
//! announces itself with `pg_notify`, which PostgreSQL delivers only if it commits.

use postgres::Row;

use nuc_core::{
    CertificateState, Identification, KeyStorage, Notice, OperatorStatus, RequestKind, RequestState,
};
use nuc_store::{
    AuditEntry, NewRequest, OperatorRow, RequestRow, Revocation, RevocationRow, SerialStatus,
    StoreError, Transition,
};

use crate::audit::append;
use crate::{DbError, PgStore, STATUS_CHANNEL, Sql, reason, spelled, spelled_opt};

type Tx<'a> = Sql<'a, postgres::Client>;

const REQUEST_SELECT: &str = "SELECT number, kind, state, iin, bin, role, email, subject_json, auth_csr, sign_csr, \
     identification, refusal_reason, decided_by, registered_at, expires_at, updated_at, key_storage, \
     renewed_from, remote_renewals FROM requests WHERE number = $1";

fn request_row(r: &Row) -> Result<RequestRow, DbError> {
    let remote: i64 = r.try_get(18)?;
    Ok(RequestRow {
        number: r.try_get(0)?,
        kind: spelled(r, 1, RequestKind::parse)?,
        state: spelled(r, 2, RequestState::parse)?,
        iin: r.try_get(3)?,
        bin: r.try_get(4)?,
        role: r.try_get(5)?,
        email: r.try_get(6)?,
        subject_json: r.try_get(7)?,
        auth_csr: r.try_get(8)?,
        sign_csr: r.try_get(9)?,
        identification: spelled_opt(r, 10, Identification::parse)?,
        refusal_reason: r.try_get(11)?,
        decided_by: r.try_get(12)?,
        registered_at: r.try_get(13)?,
        expires_at: r.try_get(14)?,
        updated_at: r.try_get(15)?,
        key_storage: spelled(r, 16, KeyStorage::parse)?,
        renewed_from: r.try_get(17)?,
        remote_renewals: u32::try_from(remote).map_err(|_| {
            DbError::Store(StoreError::Corrupt(format!(
                "remote_renewals {remote} is out of range"
            )))
        })?,
    })
}

fn operator_row(r: &Row) -> Result<OperatorRow, DbError> {
    Ok(OperatorRow {
        iin: r.try_get(0)?,
        surname: r.try_get(1)?,
        name: r.try_get(2)?,
        role: r.try_get(3)?,
        con: r.try_get(4)?,
        status: spelled(r, 5, OperatorStatus::parse)?,
    })
}

fn use_payload(tx: &mut Tx<'_>, sha256: &str, used_for: &str, now: i64) -> Result<(), DbError> {
    if let Some(r) = tx.query_opt(
        "SELECT used_for FROM used_payloads WHERE sha256 = $1",
        &[&sha256],
    )? {
        return Err(DbError::Store(StoreError::PayloadReplayed {
            used_for: r.try_get(0)?,
        }));
    }
    tx.execute(
        "INSERT INTO used_payloads (sha256, used_at, used_for) VALUES ($1, $2, $3)",
        &[&sha256, &now, &used_for],
    )?;
    Ok(())
}

fn enqueue(
    tx: &mut Tx<'_>,
    n: &Notice,
    request_number: Option<&str>,
    now: i64,
) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO notifications (created_at, kind, recipient, subject, body, request_number) VALUES ($1, $2, $3, $4, $5, $6)",
        &[&now, &n.kind.as_str(), &n.recipient, &n.subject, &n.body, &request_number],
    )?;
    Ok(())
}

pub(crate) fn apply_transition(tx: &mut Tx<'_>, t2: &Transition) -> Result<(), DbError> {
    let now = nuc_core::time::now_unix();
    let current: String = match tx.query_opt(
        "SELECT state FROM requests WHERE number = $1",
        &[&t2.number],
    )? {
        Some(r) => r.try_get(0)?,
        None => {
            return Err(DbError::Store(StoreError::RequestNotFound(
                t2.number.clone(),
            )));
        }
    };
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
    tx.execute(
        "UPDATE requests SET state = $2, updated_at = $3,
             refusal_reason = COALESCE($4, refusal_reason),
             decided_by = COALESCE($5, decided_by),
             identification = COALESCE($6, identification)
         WHERE number = $1",
        &[
            &t2.number,
            &t2.to.as_str(),
            &now,
            &t2.refusal_reason,
            &t2.decided_by,
            &t2.identification.map(|i| i.as_str()),
        ],
    )?;
    for n in &t2.notify {
        enqueue(tx, n, Some(&t2.number), now)?;
    }
    append(tx, &t2.audit, now)?;
    Ok(())
}

impl PgStore {
    pub(crate) fn register_request(
        &self,
        r: &NewRequest,
        idempotency: Option<(String, String)>,
        notify: Option<Notice>,
        audit: &AuditEntry,
    ) -> Result<(RequestRow, bool), DbError> {
        let (r, audit) = (r.clone(), audit.clone());
        let (number, created) = self.write_returning(move |tx| {
            let now = nuc_core::time::now_unix();
            if let Some((caller, key)) = &idempotency
                && let Some(row) = tx.query_opt(
                    "SELECT request_number FROM idempotency_keys WHERE caller = $1 AND key = $2",
                    &[caller, key],
                )?
            {
                return Ok((row.try_get::<_, String>(0)?, false));
            }
            if let Some(h) = &r.payload_sha256 {
                use_payload(tx, h, &format!("request {}", r.number), now)?;
            }
            tx.execute(
                "INSERT INTO requests (number, kind, state, iin, bin, role, email, subject_json, auth_csr, sign_csr, \
                 identification, refusal_reason, decided_by, registered_at, expires_at, updated_at, key_storage, \
                 renewed_from, remote_renewals) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, NULL, $12, $13, $12, $14, $15, $16)",
                &[
                    &r.number,
                    &r.kind.as_str(),
                    &r.state.as_str(),
                    &r.iin,
                    &r.bin,
                    &r.role,
                    &r.email,
                    &r.subject_json,
                    &r.auth_csr,
                    &r.sign_csr,
                    &r.identification.map(|i| i.as_str()),
                    &r.registered_at,
                    &r.expires_at,
                    &r.key_storage.as_str(),
                    &r.renewed_from,
                    &i64::from(r.remote_renewals),
                ],
            )?;
            if let Some((caller, key)) = &idempotency {
                tx.execute(
                    "INSERT INTO idempotency_keys (caller, key, request_number) VALUES ($1, $2, $3)",
                    &[caller, key, &r.number],
                )?;
            }
            if let Some(n) = &notify {
                enqueue(tx, n, Some(&r.number), now)?;
            }
            append(tx, &audit, now)?;
            Ok((r.number.clone(), true))
        })?;
        let row = self
            .request(&number)?
            .ok_or_else(|| DbError::Store(StoreError::RequestNotFound(number.clone())))?;
        Ok((row, created))
    }

    pub(crate) fn request_by_idempotency(
        &self,
        caller: &str,
        key: &str,
    ) -> Result<Option<RequestRow>, DbError> {
        self.read(|s| {
            let Some(n) = s.query_opt(
                "SELECT request_number FROM idempotency_keys WHERE caller = $1 AND key = $2",
                &[&caller, &key],
            )?
            else {
                return Ok(None);
            };
            let number: String = n.try_get(0)?;
            s.query_opt(REQUEST_SELECT, &[&number])?
                .map(|r| request_row(&r))
                .transpose()
        })
    }

    pub(crate) fn request(&self, number: &str) -> Result<Option<RequestRow>, DbError> {
        self.read(|s| {
            s.query_opt(REQUEST_SELECT, &[&number])?
                .map(|r| request_row(&r))
                .transpose()
        })
    }

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
        let sql = REQUEST_SELECT.replace(
            "WHERE number = $1",
            "WHERE iin = $1 AND state = 'registered' AND expires_at > $2 \
             ORDER BY registered_at DESC, number DESC LIMIT $3",
        );
        let limit = i64::from(limit);
        self.read(|s| {
            s.query(sql.as_str(), &[&iin, &now, &limit])?
                .iter()
                .map(request_row)
                .collect()
        })
    }

    pub(crate) fn expire_requests(&self, now: i64, actor: &str) -> Result<Vec<String>, DbError> {
        let due: Vec<String> = self.read(|s| {
            s.query(
                "SELECT number FROM requests WHERE state = 'registered' AND expires_at <= $1 ORDER BY number",
                &[&now],
            )?
            .iter()
            .map(|r| Ok(r.try_get(0)?))
            .collect()
        })?;
        let mut expired = Vec::new();
        for number in due {
            let t = Transition::expiry(&number, now, actor);
            match self.transition(&t) {
                Ok(_) => expired.push(number),
                // Decided meanwhile, perhaps by another instance.
                Err(DbError::Store(StoreError::RequestState { .. })) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(expired)
    }

    pub(crate) fn certificates_of_request(
        &self,
        number: &str,
    ) -> Result<Vec<(String, String, Vec<u8>)>, DbError> {
        self.read(|s| {
            s.query(
                "SELECT serial, profile, der FROM certificates WHERE request_number = $1 AND state = 'issued' ORDER BY issued_at, ord",
                &[&number],
            )?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
        })
    }

    /// Revokes issued certificates (each once) in one transaction, each with its notice and
    /// audit record, the payload marked used once; every instance hears of each after commit.
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

    pub(crate) fn payload_used(&self, sha256: &str) -> Result<Option<String>, DbError> {
        self.read(|s| {
            s.query_opt(
                "SELECT used_for FROM used_payloads WHERE sha256 = $1",
                &[&sha256],
            )?
            .map(|r| Ok(r.try_get(0)?))
            .transpose()
        })
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

    pub(crate) fn revocation(&self, serial: &str) -> Result<Option<RevocationRow>, DbError> {
        self.read(|s| {
            s.query_opt(
                "SELECT serial, reason, revoked_at, invalidity_date, revoked_by FROM revocations WHERE serial = $1",
                &[&serial],
            )?
            .map(|r| {
                Ok(RevocationRow {
                    serial: r.try_get(0)?,
                    reason: reason(&r, 1)?,
                    revoked_at: r.try_get(2)?,
                    invalidity_date: r.try_get(3)?,
                    revoked_by: r.try_get(4)?,
                })
            })
            .transpose()
        })
    }

    pub(crate) fn serial_status(&self, serial: &str) -> Result<Option<SerialStatus>, DbError> {
        self.read(|s| {
            s.query_opt(
                "SELECT c.state, r.reason, r.revoked_at FROM certificates c \
                 LEFT JOIN revocations r ON r.serial = c.serial WHERE c.serial = $1",
                &[&serial],
            )?
            .map(|r| {
                let code: Option<i64> = r.try_get(1)?;
                let revoked_at: Option<i64> = r.try_get(2)?;
                let revocation = match (code, revoked_at) {
                    (Some(_), Some(at)) => Some((reason(&r, 1)?, at)),
                    _ => None,
                };
                let state: &str = r.try_get(0)?;
                Ok(SerialStatus {
                    issued: state == CertificateState::Issued.as_str(),
                    revocation,
                })
            })
            .transpose()
        })
    }

    pub(crate) fn put_operator(&self, o: &OperatorRow, audit: &AuditEntry) -> Result<(), DbError> {
        let (o, audit) = (o.clone(), audit.clone());
        self.write(move |tx| {
            let now = nuc_core::time::now_unix();
            tx.execute(
                "INSERT INTO operators (iin, surname, name, role, con, status, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (iin) DO UPDATE SET surname = $2, name = $3, role = $4, con = $5, status = $6, updated_at = $7",
                &[&o.iin, &o.surname, &o.name, &o.role, &o.con, &o.status.as_str(), &now],
            )?;
            append(tx, &audit, now)?;
            Ok(())
        })
    }

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
                "UPDATE operators SET status = $2, updated_at = $3 WHERE iin = $1",
                &[&iin, &status, &now],
            )?;
            if n != 1 {
                return Err(DbError::Store(StoreError::OperatorNotFound(iin)));
            }
            append(tx, &audit, now)?;
            Ok(())
        })
    }

    pub(crate) fn operator(&self, iin: &str) -> Result<Option<OperatorRow>, DbError> {
        self.read(|s| {
            s.query_opt(
                "SELECT iin, surname, name, role, con, status FROM operators WHERE iin = $1",
                &[&iin],
            )?
            .map(|r| operator_row(&r))
            .transpose()
        })
    }

    pub(crate) fn operators(&self) -> Result<Vec<OperatorRow>, DbError> {
        self.read(|s| {
            s.query(
                "SELECT iin, surname, name, role, con, status FROM operators ORDER BY iin",
                &[],
            )?
            .iter()
            .map(operator_row)
            .collect()
        })
    }

    pub(crate) fn serials_for(&self, iin: &str, profile: &str) -> Result<Vec<String>, DbError> {
        self.read(|s| {
            s.query(
                "SELECT serial FROM certificates WHERE iin = $1 AND profile = $2 AND state = 'issued' ORDER BY issued_at, ord",
                &[&iin, &profile],
            )?
            .iter()
            .map(|r| Ok(r.try_get(0)?))
            .collect()
        })
    }
}

/// One revocation inside the caller's transaction: the certificate must be issued and not yet
/// revoked; its notice and audit record go with it, a request whose certificates are then all
/// revoked becomes revoked, and every instance learns of it once the transaction commits (and
/// only then).
fn revoke_one(
    tx: &mut Tx<'_>,
    r: &RevocationRow,
    notify: Option<&Notice>,
    audit: &AuditEntry,
    now: i64,
) -> Result<(), DbError> {
    let Some(row) = tx.query_opt(
        "SELECT state, request_number FROM certificates WHERE serial = $1",
        &[&r.serial],
    )?
    else {
        return Err(DbError::Store(StoreError::CertificateNotFound(
            r.serial.clone(),
        )));
    };
    let state: String = row.try_get(0)?;
    let request_number: Option<String> = row.try_get(1)?;
    if state != CertificateState::Issued.as_str() {
        return Err(DbError::Store(StoreError::CertificateNotFound(
            r.serial.clone(),
        )));
    }
    if tx
        .query_opt("SELECT 1 FROM revocations WHERE serial = $1", &[&r.serial])?
        .is_some()
    {
        return Err(DbError::Store(StoreError::AlreadyRevoked(r.serial.clone())));
    }
    tx.execute(
        "INSERT INTO revocations (serial, reason, revoked_at, invalidity_date, revoked_by) VALUES ($1, $2, $3, $4, $5)",
        &[&r.serial, &i64::from(r.reason.code()), &r.revoked_at, &r.invalidity_date, &r.revoked_by],
    )?;
    if let Some(n) = notify {
        enqueue(tx, n, request_number.as_deref(), now)?;
    }
    append(tx, audit, now)?;
    if let Some(number) = &request_number {
        let changed = tx.execute(
            "UPDATE requests SET state = 'revoked', updated_at = $2
             WHERE number = $1 AND state = 'issued' AND NOT EXISTS (
                 SELECT 1 FROM certificates c WHERE c.request_number = $1 AND c.state = 'issued'
                 AND NOT EXISTS (SELECT 1 FROM revocations r WHERE r.serial = c.serial))",
            &[number, &now],
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
    let payload = crate::feed::revoked_payload(r);
    tx.execute("SELECT pg_notify($1, $2)", &[&STATUS_CHANNEL, &payload])?;
    Ok(())
}
