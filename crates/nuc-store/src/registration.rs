//! Requests of the registration authority and what hangs off them: idempotency keys,
//! revocations, operators, used signed payloads and the notification outbox.
//!
//! Every transition is conditional on the state it leaves (`UPDATE … WHERE state IN …`), so two
//! racing decisions cannot both win, and it writes its audit record, its used-payload mark and
//! its notification in the same change: all of them or none.

use rusqlite::{OptionalExtension, Row, Transaction, params};

use crate::audit::{AuditEntry, append};
use crate::{Store, StoreError};

/// States of a request (SPEC §3), as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    Registered,
    Confirmed,
    Verified,
    Issued,
    Refused,
    Expired,
    Revoked,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::Confirmed => "confirmed",
            Self::Verified => "verified",
            Self::Issued => "issued",
            Self::Refused => "refused",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "registered" => Self::Registered,
            "confirmed" => Self::Confirmed,
            "verified" => Self::Verified,
            "issued" => Self::Issued,
            "refused" => Self::Refused,
            "expired" => Self::Expired,
            "revoked" => Self::Revoked,
            _ => return None,
        })
    }
}

/// A request as registered.
#[derive(Debug, Clone)]
pub struct NewRequest {
    pub number: String,
    pub kind: String,
    pub state: RequestState,
    pub iin: String,
    pub bin: Option<String>,
    pub role: Option<String>,
    pub email: Option<String>,
    pub subject_json: String,
    pub auth_csr: Vec<u8>,
    pub sign_csr: Vec<u8>,
    pub identification: Option<String>,
    pub registered_at: i64,
    pub expires_at: i64,
    /// SHA-256 (hex) of the signed payload the request comes from (renewal); refused if used.
    pub payload_sha256: Option<String>,
    /// `file`, `id-card` or `sim-card`: where the applicant's keys live.
    pub key_storage: String,
}

/// A serial's status for OCSP: issued or not, and its revocation (reason, time) if revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SerialStatus {
    pub issued: bool,
    pub revocation: Option<(i64, i64)>,
}

/// A stored request.
#[derive(Debug, Clone)]
pub struct RequestRow {
    pub number: String,
    pub kind: String,
    pub state: RequestState,
    pub iin: String,
    pub bin: Option<String>,
    pub role: Option<String>,
    pub email: Option<String>,
    pub subject_json: String,
    pub auth_csr: Vec<u8>,
    pub sign_csr: Vec<u8>,
    pub identification: Option<String>,
    pub refusal_reason: Option<String>,
    pub decided_by: Option<String>,
    pub registered_at: i64,
    pub expires_at: i64,
    pub updated_at: i64,
    /// `file`, `id-card` or `sim-card`.
    pub key_storage: String,
}

const REQUEST_COLUMNS: &str = "number, kind, state, iin, bin, role, email, subject_json, auth_csr, sign_csr, \
     identification, refusal_reason, decided_by, registered_at, expires_at, updated_at, key_storage";

fn request_row(r: &Row<'_>) -> rusqlite::Result<RequestRow> {
    let state: String = r.get(2)?;
    Ok(RequestRow {
        number: r.get(0)?,
        kind: r.get(1)?,
        state: RequestState::parse(&state).unwrap_or(RequestState::Refused),
        iin: r.get(3)?,
        bin: r.get(4)?,
        role: r.get(5)?,
        email: r.get(6)?,
        subject_json: r.get(7)?,
        auth_csr: r.get(8)?,
        sign_csr: r.get(9)?,
        identification: r.get(10)?,
        refusal_reason: r.get(11)?,
        decided_by: r.get(12)?,
        registered_at: r.get(13)?,
        expires_at: r.get(14)?,
        updated_at: r.get(15)?,
        key_storage: r.get(16)?,
    })
}

/// A notification to send (the outbox).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub id: i64,
    pub kind: String,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    pub request_number: Option<String>,
    pub attempts: i64,
}

/// A state change of a request, with everything that must commit with it.
#[derive(Debug, Clone)]
pub struct Transition {
    pub number: String,
    pub from: Vec<RequestState>,
    pub to: RequestState,
    pub refusal_reason: Option<String>,
    pub decided_by: Option<String>,
    pub identification: Option<String>,
    /// SHA-256 (hex) of the signed payload that caused it; refused if already used.
    pub payload_sha256: Option<String>,
    /// Notification to enqueue: (kind, recipient, subject, body).
    pub notify: Option<(String, String, String, String)>,
    pub audit: AuditEntry,
}

/// An operator of a CON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRow {
    pub iin: String,
    pub surname: String,
    pub name: String,
    pub role: String,
    pub con: String,
    pub status: String,
}

fn operator_row(r: &Row<'_>) -> rusqlite::Result<OperatorRow> {
    Ok(OperatorRow {
        iin: r.get(0)?,
        surname: r.get(1)?,
        name: r.get(2)?,
        role: r.get(3)?,
        con: r.get(4)?,
        status: r.get(5)?,
    })
}

/// A revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationRow {
    pub serial: String,
    pub reason: i64,
    pub revoked_at: i64,
    pub invalidity_date: Option<i64>,
    pub revoked_by: String,
}

fn use_payload(
    tx: &Transaction<'_>,
    sha256: &str,
    used_for: &str,
    now: i64,
) -> Result<(), StoreError> {
    let existing: Option<String> = tx
        .prepare_cached("SELECT used_for FROM used_payloads WHERE sha256 = ?1")?
        .query_row([sha256], |r| r.get(0))
        .optional()?;
    if let Some(used_for) = existing {
        return Err(StoreError::PayloadReplayed { used_for });
    }
    tx.prepare_cached("INSERT INTO used_payloads (sha256, used_at, used_for) VALUES (?1, ?2, ?3)")?
        .execute(params![sha256, now, used_for])?;
    Ok(())
}

fn enqueue(
    tx: &Transaction<'_>,
    (kind, recipient, subject, body): &(String, String, String, String),
    request_number: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO notifications (created_at, kind, recipient, subject, body, request_number) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![now, kind, recipient, subject, body, request_number])?;
    Ok(())
}

pub(crate) fn apply_transition(tx: &Transaction<'_>, t2: &Transition) -> Result<(), StoreError> {
    let now = nuc_core::time::now_unix();
    let current: Option<String> = tx
        .prepare_cached("SELECT state FROM requests WHERE number = ?1")?
        .query_row([&t2.number], |r| r.get(0))
        .optional()?;
    let current = current.ok_or_else(|| StoreError::RequestNotFound(t2.number.clone()))?;
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
        return Err(StoreError::RequestState {
            number: t2.number.clone(),
            current,
            expected: t2
                .from
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" or "),
        });
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
        t2.identification
    ])?;
    if let Some(n) = &t2.notify {
        enqueue(tx, n, Some(&t2.number), now)?;
    }
    append(tx, &t2.audit, now)?;
    Ok(())
}

impl Store {
    /// Registers a request. With an idempotency key already used by the same caller, nothing is
    /// written and the request registered the first time is returned instead (`Ok((row, false))`).
    pub fn register_request(
        &self,
        r: &NewRequest,
        idempotency: Option<(String, String)>,
        notify: Option<(String, String, String, String)>,
        audit: &AuditEntry,
    ) -> Result<(RequestRow, bool), StoreError> {
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
                "INSERT INTO requests ({REQUEST_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, NULL, NULL, ?12, ?13, ?12, ?14)"
            ))?
            .execute(params![
                r.number,
                r.kind,
                r.state.as_str(),
                r.iin,
                r.bin,
                r.role,
                r.email,
                r.subject_json,
                r.auth_csr,
                r.sign_csr,
                r.identification,
                r.registered_at,
                r.expires_at,
                r.key_storage
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
            .ok_or_else(|| StoreError::RequestNotFound(number.0.clone()))?;
        Ok((row, number.1))
    }

    /// The request registered under a caller's idempotency key, if any.
    pub fn request_by_idempotency(
        &self,
        caller: &str,
        key: &str,
    ) -> Result<Option<RequestRow>, StoreError> {
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
    pub fn request(&self, number: &str) -> Result<Option<RequestRow>, StoreError> {
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
    pub fn transition(&self, t: &Transition) -> Result<RequestRow, StoreError> {
        let t2 = t.clone();
        self.write(move |tx| apply_transition(tx, &t2))?;
        self.request(&t.number)?
            .ok_or_else(|| StoreError::RequestNotFound(t.number.clone()))
    }

    /// Expires every registered request whose deadline is before `now`; returns their numbers.
    pub fn expire_requests(&self, now: i64, actor: &str) -> Result<Vec<String>, StoreError> {
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
            let t = Transition {
                number: number.clone(),
                from: vec![RequestState::Registered],
                to: RequestState::Expired,
                refusal_reason: Some("no CON visit within 30 days".into()),
                decided_by: None,
                identification: None,
                payload_sha256: None,
                notify: None,
                audit: AuditEntry {
                    actor: actor.into(),
                    action: "request.expired".into(),
                    object: format!("request:{number}"),
                    details: serde_json::json!({ "deadline_passed_at": now }),
                },
            };
            match self.transition(&t) {
                Ok(_) => expired.push(number),
                Err(StoreError::RequestState { .. }) => {} // decided meanwhile
                Err(e) => return Err(e),
            }
        }
        Ok(expired)
    }

    /// Certificates a request produced, in issuance order.
    pub fn certificates_of_request(
        &self,
        number: &str,
    ) -> Result<Vec<(String, String, Vec<u8>)>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT serial, profile, der FROM certificates WHERE request_number = ?1 AND state = 'issued' ORDER BY issued_at, rowid",
        )?;
        let rows = st.query_map([number], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Revokes an issued certificate (once), with its payload mark, notification and audit
    /// record. The revocation is durable when this returns: CRL and OCSP read it from here.
    pub fn revoke(
        &self,
        r: &RevocationRow,
        payload_sha256: Option<String>,
        notify: Option<(String, String, String, String)>,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let (r, audit) = (r.clone(), audit.clone());
        self.write(move |tx| {
            let now = nuc_core::time::now_unix();
            let state: Option<(String, Option<String>)> = tx
                .prepare_cached("SELECT state, request_number FROM certificates WHERE serial = ?1")?
                .query_row([&r.serial], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?;
            let (state, request_number) = state.ok_or_else(|| StoreError::CertificateNotFound(r.serial.clone()))?;
            if state != "issued" {
                return Err(StoreError::CertificateNotFound(r.serial.clone()));
            }
            let revoked: bool = tx
                .prepare_cached("SELECT EXISTS(SELECT 1 FROM revocations WHERE serial = ?1)")?
                .query_row([&r.serial], |row| row.get(0))?;
            if revoked {
                return Err(StoreError::AlreadyRevoked(r.serial.clone()));
            }
            if let Some(h) = &payload_sha256 {
                use_payload(tx, h, &format!("revocation of {}", r.serial), now)?;
            }
            tx.prepare_cached(
                "INSERT INTO revocations (serial, reason, revoked_at, invalidity_date, revoked_by) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![r.serial, r.reason, r.revoked_at, r.invalidity_date, r.revoked_by])?;
            if let Some(n) = &notify {
                enqueue(tx, n, request_number.as_deref(), now)?;
            }
            append(tx, &audit, now)?;
            // A request whose certificates are all revoked is itself revoked.
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
        })
    }

    /// What a signed payload was used for, if it was.
    pub fn payload_used(&self, sha256: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT used_for FROM used_payloads WHERE sha256 = ?1",
                [sha256],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The revocation of a certificate, if revoked.
    pub fn revocation(&self, serial: &str) -> Result<Option<RevocationRow>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT serial, reason, revoked_at, invalidity_date, revoked_by FROM revocations WHERE serial = ?1",
                [serial],
                |r| {
                    Ok(RevocationRow {
                        serial: r.get(0)?,
                        reason: r.get(1)?,
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
    pub fn serial_status(&self, serial: &str) -> Result<Option<SerialStatus>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(
            "SELECT c.state, r.reason, r.revoked_at FROM certificates c \
             LEFT JOIN revocations r ON r.serial = c.serial WHERE c.serial = ?1",
        )?;
        Ok(st
            .query_row([serial], |r| {
                let reason: Option<i64> = r.get(1)?;
                let revoked_at: Option<i64> = r.get(2)?;
                Ok(SerialStatus {
                    issued: r.get_ref(0)?.as_str().map_err(rusqlite::Error::from)? == "issued",
                    revocation: reason.zip(revoked_at),
                })
            })
            .optional()?)
    }

    /// Creates or updates an operator, with its audit record.
    pub fn put_operator(&self, o: &OperatorRow, audit: &AuditEntry) -> Result<(), StoreError> {
        let (o, audit) = (o.clone(), audit.clone());
        self.write(move |tx| {
            let now = nuc_core::time::now_unix();
            tx.execute(
                "INSERT INTO operators (iin, surname, name, role, con, status, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(iin) DO UPDATE SET surname = ?2, name = ?3, role = ?4, con = ?5, status = ?6, updated_at = ?7",
                params![o.iin, o.surname, o.name, o.role, o.con, o.status, now],
            )?;
            append(tx, &audit, now)?;
            Ok(())
        })
    }

    /// Sets an operator's status (active | suspended | dismissed), with its audit record.
    pub fn set_operator_status(
        &self,
        iin: &str,
        status: &str,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let (iin, status, audit) = (iin.to_owned(), status.to_owned(), audit.clone());
        self.write(move |tx| {
            let now = nuc_core::time::now_unix();
            let n = tx.execute(
                "UPDATE operators SET status = ?2, updated_at = ?3 WHERE iin = ?1",
                params![iin, status, now],
            )?;
            if n != 1 {
                return Err(StoreError::OperatorNotFound(iin));
            }
            append(tx, &audit, now)?;
            Ok(())
        })
    }

    /// An operator by IIN.
    pub fn operator(&self, iin: &str) -> Result<Option<OperatorRow>, StoreError> {
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
    pub fn operators(&self) -> Result<Vec<OperatorRow>, StoreError> {
        let conn = self.conn();
        let mut st = conn
            .prepare("SELECT iin, surname, name, role, con, status FROM operators ORDER BY iin")?;
        let rows = st.query_map([], operator_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Serials of the issued certificates of a profile for an IIN (e.g. an operator's).
    pub fn serials_for(&self, iin: &str, profile: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT serial FROM certificates WHERE iin = ?1 AND profile = ?2 AND state = 'issued' ORDER BY issued_at",
        )?;
        let rows = st.query_map(params![iin, profile], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Notifications not yet sent, oldest first.
    pub fn pending_notifications(&self, limit: i64) -> Result<Vec<Notification>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT id, kind, recipient, subject, body, request_number, attempts FROM notifications
             WHERE sent_at IS NULL ORDER BY id LIMIT ?1",
        )?;
        let rows = st.query_map([limit], |r| {
            Ok(Notification {
                id: r.get(0)?,
                kind: r.get(1)?,
                recipient: r.get(2)?,
                subject: r.get(3)?,
                body: r.get(4)?,
                request_number: r.get(5)?,
                attempts: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records the outcomes of a pass of delivery attempts, all in one commit.
    pub fn notifications_attempted(
        &self,
        outcomes: &[(i64, Option<String>)],
    ) -> Result<(), StoreError> {
        let outcomes = outcomes.to_vec();
        self.write(move |tx| {
            let now = nuc_core::time::now_unix();
            for (id, error) in &outcomes {
                match error {
                    None => tx
                        .prepare_cached(
                            "UPDATE notifications SET sent_at = ?2, attempts = attempts + 1, last_error = NULL WHERE id = ?1",
                        )?
                        .execute(params![id, now])?,
                    Some(e) => tx
                        .prepare_cached("UPDATE notifications SET attempts = attempts + 1, last_error = ?2 WHERE id = ?1")?
                        .execute(params![id, e])?,
                };
            }
            Ok(())
        })
    }
}
