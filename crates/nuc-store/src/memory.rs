//! Every storage trait in memory, for the unit tests of the roles.
//!
//! Each change works on a copy of the whole state and replaces it only when every step
//! succeeded, so the all-or-nothing promise of the traits holds here as in SQLite: a test that
//! makes a step fail sees nothing of the change. Time is the wall clock, like the SQLite store.
//! The audit log keeps the records in order but does not chain them by hash: what is tested
//! against this store is what the roles write, not the tamper evidence of the log.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use nuc_core::{CertificateState, Notice, OperatorStatus, RequestState};

use crate::StoreError;
use crate::audit_tree::{AuditTree, CheckpointRow, CosignatureRow, TreeHead};
use crate::retry::{
    AttemptRecorded, DeadLetter, DeliveryAttempt, OutboxStats, RetryPolicy, dead_letter_audit,
    revived_audit,
};
use crate::rows::{
    AuditBreak, AuditEntry, AuditRecord, CaKeyRow, CertificateRow, CrlKind, CrlRow, NewCrl,
    NewRequest, Notification, OperatorRow, RequestRow, Reservation, RevocationEntry, RevocationRow,
    SerialStatus, Transition,
};
use crate::traits::{
    AuditLog, CaKeyStore, CertificateReader, CertificateStore, OperatorStore, Outbox,
    PublicationStore, RequestStore, RevocationReader, RevocationStore, StoreHealth, UsedPayloads,
};

#[derive(Debug, Clone, Default)]
struct Cert {
    row: Option<CertificateRow>,
    /// The legal entity the certificate was issued for (its holder being an employee).
    bin: Option<String>,
    reserved_at: i64,
    issued_seq: u64,
}

#[derive(Debug, Clone, Default)]
struct State {
    requests: BTreeMap<String, RequestRow>,
    idempotency: HashMap<(String, String), String>,
    certificates: BTreeMap<String, Cert>,
    certified_keys: HashMap<String, String>,
    revocations: BTreeMap<String, RevocationRow>,
    used_payloads: HashMap<String, String>,
    operators: BTreeMap<String, OperatorRow>,
    audit: Vec<AuditRecord>,
    notifications: Vec<Notification>,
    /// Ids of the notifications delivered.
    sent: std::collections::HashSet<i64>,
    /// The retry state of the notifications attempted and not delivered, by id.
    retries: HashMap<i64, Retry>,
    /// The CRLs recorded, each with the pieces of its bytes.
    crls: Vec<(CrlRow, Vec<Vec<u8>>)>,
    crl_number: i64,
    ca_keys: Vec<CaKeyRow>,
    issued_counter: u64,
    tree_nodes: HashMap<(u8, u64), nuc_tlog::Hash>,
    tree_size: u64,
    checkpoints: BTreeMap<u64, CheckpointRow>,
    cosignatures: BTreeMap<(u64, String), CosignatureRow>,
}

/// A notification's retry state (absent: never failed, due at once).
#[derive(Debug, Clone, Default)]
struct Retry {
    next_attempt_at: i64,
    dead_at: Option<i64>,
    last_error: Option<String>,
}

fn now() -> i64 {
    nuc_core::time::now_unix()
}

impl State {
    fn append(&mut self, e: &AuditEntry) {
        let seq = self.audit.len() as i64 + 1;
        self.audit.push(AuditRecord {
            seq,
            at: now(),
            actor: e.actor.clone(),
            action: e.action.clone(),
            object: e.object.clone(),
            details: e.details.to_string(),
            prev_hash: String::new(),
            hash: String::new(),
        });
    }

    fn enqueue(&mut self, n: &Notice, request_number: Option<&str>) {
        let id = self.notifications.len() as i64 + 1;
        self.notifications.push(Notification {
            id,
            kind: n.kind,
            recipient: n.recipient.clone(),
            subject: n.subject.clone(),
            body: n.body.clone(),
            request_number: request_number.map(str::to_owned),
            attempts: 0,
        });
    }

    fn use_payload(&mut self, sha256: &str, used_for: String) -> Result<(), StoreError> {
        if let Some(u) = self.used_payloads.get(sha256) {
            return Err(StoreError::PayloadReplayed {
                used_for: u.clone(),
            });
        }
        self.used_payloads.insert(sha256.to_owned(), used_for);
        Ok(())
    }

    fn apply(&mut self, t: &Transition) -> Result<(), StoreError> {
        let current = self
            .requests
            .get(&t.number)
            .ok_or_else(|| StoreError::RequestNotFound(t.number.clone()))?
            .state;
        if let Some(h) = &t.payload_sha256 {
            self.use_payload(h, format!("request {} {}", t.number, t.to))?;
        }
        if !t.from.contains(&current) {
            return Err(StoreError::RequestState {
                number: t.number.clone(),
                current: current.to_string(),
                expected: t
                    .from
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" or "),
            });
        }
        let r = self.requests.get_mut(&t.number).expect("checked above");
        r.state = t.to;
        r.updated_at = now();
        if t.refusal_reason.is_some() {
            r.refusal_reason = t.refusal_reason.clone();
        }
        if t.decided_by.is_some() {
            r.decided_by = t.decided_by.clone();
        }
        if t.identification.is_some() {
            r.identification = t.identification;
        }
        for n in &t.notify {
            self.enqueue(n, Some(&t.number));
        }
        self.append(&t.audit);
        Ok(())
    }

    fn reserve(&mut self, r: &Reservation, audit: &AuditEntry) -> Result<(), StoreError> {
        if let Some(serial) = self.certified_keys.get(&r.spki_sha256) {
            return Err(StoreError::KeyAlreadyCertified {
                serial: serial.clone(),
            });
        }
        if self.certificates.contains_key(&r.serial) {
            return Err(StoreError::SerialExists(r.serial.clone()));
        }
        self.certificates.insert(
            r.serial.clone(),
            Cert {
                row: Some(CertificateRow {
                    serial: r.serial.clone(),
                    profile: r.profile.clone(),
                    state: CertificateState::Reserved,
                    subject: r.subject.clone(),
                    iin: r.iin.clone(),
                    spki_sha256: r.spki_sha256.clone(),
                    der: None,
                    request_number: r.request_number.clone(),
                }),
                bin: r.bin.clone(),
                reserved_at: now(),
                issued_seq: 0,
            },
        );
        self.certified_keys
            .insert(r.spki_sha256.clone(), r.serial.clone());
        self.append(audit);
        Ok(())
    }

    fn abandon(&mut self, serial: &str, audit: &AuditEntry) -> Result<(), StoreError> {
        let row = self
            .certificates
            .get_mut(serial)
            .and_then(|c| c.row.as_mut())
            .filter(|r| r.state == CertificateState::Reserved)
            .ok_or_else(|| StoreError::NotReserved(serial.to_owned()))?;
        row.state = CertificateState::Abandoned;
        let key = row.spki_sha256.clone();
        self.certified_keys.remove(&key);
        self.append(audit);
        Ok(())
    }

    fn issued_row(&self, serial: &str) -> Option<&CertificateRow> {
        self.certificates
            .get(serial)
            .and_then(|c| c.row.as_ref())
            .filter(|r| r.state == CertificateState::Issued)
    }
}

/// All storage in memory. Share it behind an `Arc`.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    feed: crate::LocalStatusFeed,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Applies `f` to a copy and keeps it only if `f` succeeds: all or nothing.
    fn change<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut copy = guard.clone();
        let out = f(&mut copy)?;
        *guard = copy;
        Ok(out)
    }

    /// Every notice queued, sent or not, oldest first (for tests to read what was announced).
    pub fn notices(&self) -> Vec<Notification> {
        self.read(|s| s.notifications.clone())
    }

    /// Every audit record's action, in order (for tests).
    pub fn audit_actions(&self) -> Vec<String> {
        self.read(|s| s.audit.iter().map(|r| r.action.clone()).collect())
    }

    /// Removes an operator record without a trace (a test of a signer the store does not know).
    pub fn forget_operator(&self, iin: &str) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .operators
            .remove(iin);
    }

    /// Puts a certificate in as issued, as if an issuance had recorded it (test fixtures:
    /// the holder's or operator's certificate a signed payload is checked against).
    pub fn insert_issued(&self, row: CertificateRow) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.issued_counter += 1;
        let seq = s.issued_counter;
        s.certified_keys
            .insert(row.spki_sha256.clone(), row.serial.clone());
        let bin = row
            .request_number
            .as_ref()
            .and_then(|n| s.requests.get(n))
            .and_then(|q| q.bin.clone());
        s.certificates.insert(
            row.serial.clone(),
            Cert {
                row: Some(CertificateRow {
                    state: CertificateState::Issued,
                    ..row
                }),
                bin,
                reserved_at: now(),
                issued_seq: seq,
            },
        );
    }
}

impl RequestStore for MemoryStore {
    fn register_request(
        &self,
        r: &NewRequest,
        idempotency: Option<(String, String)>,
        notice: Option<Notice>,
        audit: &AuditEntry,
    ) -> Result<(RequestRow, bool), StoreError> {
        self.change(|s| {
            if let Some(k) = &idempotency
                && let Some(n) = s.idempotency.get(k)
            {
                return Ok((s.requests[n].clone(), false));
            }
            if let Some(h) = &r.payload_sha256 {
                s.use_payload(h, format!("request {}", r.number))?;
            }
            if s.requests.contains_key(&r.number) {
                return Err(StoreError::Database(format!(
                    "request number {} exists",
                    r.number
                )));
            }
            let row = RequestRow {
                number: r.number.clone(),
                kind: r.kind,
                state: r.state,
                iin: r.iin.clone(),
                bin: r.bin.clone(),
                role: r.role.clone(),
                email: r.email.clone(),
                subject_json: r.subject_json.clone(),
                auth_csr: r.auth_csr.clone(),
                sign_csr: r.sign_csr.clone(),
                identification: r.identification,
                refusal_reason: None,
                decided_by: None,
                registered_at: r.registered_at,
                expires_at: r.expires_at,
                updated_at: r.registered_at,
                key_storage: r.key_storage,
                renewed_from: r.renewed_from.clone(),
                remote_renewals: r.remote_renewals,
            };
            s.requests.insert(r.number.clone(), row.clone());
            if let Some(k) = idempotency {
                s.idempotency.insert(k, r.number.clone());
            }
            if let Some(n) = &notice {
                s.enqueue(n, Some(&r.number));
            }
            s.append(audit);
            Ok((row, true))
        })
    }

    fn request_by_idempotency(
        &self,
        caller: &str,
        key: &str,
    ) -> Result<Option<RequestRow>, StoreError> {
        Ok(self.read(|s| {
            s.idempotency
                .get(&(caller.to_owned(), key.to_owned()))
                .map(|n| s.requests[n].clone())
        }))
    }

    fn request(&self, number: &str) -> Result<Option<RequestRow>, StoreError> {
        Ok(self.read(|s| s.requests.get(number).cloned()))
    }

    fn transition(&self, t: &Transition) -> Result<RequestRow, StoreError> {
        self.change(|s| {
            s.apply(t)?;
            Ok(s.requests[&t.number].clone())
        })
    }

    fn expire_requests(&self, now: i64, actor: &str) -> Result<Vec<String>, StoreError> {
        self.change(|s| {
            let due: Vec<String> = s
                .requests
                .values()
                .filter(|r| r.state == RequestState::Registered && r.expires_at <= now)
                .map(|r| r.number.clone())
                .collect();
            for number in &due {
                s.apply(&Transition::expiry(number, now, actor))?;
            }
            Ok(due)
        })
    }

    fn pending_requests_of(
        &self,
        iin: &str,
        now: i64,
        limit: u32,
    ) -> Result<Vec<RequestRow>, StoreError> {
        Ok(self.read(|s| {
            let mut rows: Vec<RequestRow> = s
                .requests
                .values()
                .filter(|r| {
                    r.iin == iin && r.state == RequestState::Registered && r.expires_at > now
                })
                .cloned()
                .collect();
            // Newest first; the number breaks ties so the order is the databases' own.
            rows.sort_by(|a, b| (b.registered_at, &b.number).cmp(&(a.registered_at, &a.number)));
            rows.truncate(limit as usize);
            rows
        }))
    }
}

impl CertificateStore for MemoryStore {
    fn reserve_batch(
        &self,
        items: &[(Reservation, AuditEntry)],
        before: Option<Transition>,
    ) -> Result<(), StoreError> {
        self.change(|s| {
            if let Some(t) = &before {
                s.apply(t)?;
            }
            for (r, a) in items {
                s.reserve(r, a)?;
            }
            Ok(())
        })
    }

    fn record_batch(
        &self,
        items: &[(String, Vec<u8>, AuditEntry)],
        after: Option<Transition>,
    ) -> Result<(), StoreError> {
        self.change(|s| {
            for (serial, der, audit) in items {
                s.issued_counter += 1;
                let seq = s.issued_counter;
                let cert = s
                    .certificates
                    .get_mut(serial)
                    .filter(|c| {
                        c.row
                            .as_ref()
                            .is_some_and(|r| r.state == CertificateState::Reserved)
                    })
                    .ok_or_else(|| StoreError::NotReserved(serial.clone()))?;
                let row = cert.row.as_mut().expect("filtered");
                row.state = CertificateState::Issued;
                row.der = Some(der.clone());
                cert.issued_seq = seq;
                s.append(audit);
            }
            if let Some(t) = &after {
                s.apply(t)?;
            }
            Ok(())
        })
    }

    fn abandon(&self, serial: &str, audit: &AuditEntry) -> Result<(), StoreError> {
        self.change(|s| s.abandon(serial, audit))
    }

    fn abandon_stale_reservations(
        &self,
        before: i64,
        actor: &str,
    ) -> Result<Vec<String>, StoreError> {
        self.change(|s| {
            let stale: Vec<String> = s
                .certificates
                .values()
                .filter(|c| {
                    c.reserved_at < before
                        && c.row
                            .as_ref()
                            .is_some_and(|r| r.state == CertificateState::Reserved)
                })
                .filter_map(|c| c.row.as_ref().map(|r| r.serial.clone()))
                .collect();
            for serial in &stale {
                s.abandon(
                    serial,
                    &AuditEntry {
                        actor: actor.into(),
                        action: "certificate.abandoned".into(),
                        object: format!("serial:{serial}"),
                        details: serde_json::json!({ "reason": "stale reservation" }),
                    },
                )?;
            }
            Ok(stale)
        })
    }
}

impl CertificateReader for MemoryStore {
    fn key_certified(&self, spki_sha256: &str) -> Result<Option<String>, StoreError> {
        Ok(self.read(|s| s.certified_keys.get(spki_sha256).cloned()))
    }

    fn certificate(&self, serial: &str) -> Result<Option<CertificateRow>, StoreError> {
        Ok(self.read(|s| s.certificates.get(serial).and_then(|c| c.row.clone())))
    }

    fn certificates_of_request(
        &self,
        number: &str,
    ) -> Result<Vec<(String, String, Vec<u8>)>, StoreError> {
        Ok(self.read(|s| {
            let mut certs: Vec<_> = s
                .certificates
                .values()
                .filter_map(|c| Some((c.issued_seq, c.row.as_ref()?)))
                .filter(|(_, r)| {
                    r.state == CertificateState::Issued
                        && r.request_number.as_deref() == Some(number)
                })
                .map(|(seq, r)| {
                    (
                        seq,
                        (
                            r.serial.clone(),
                            r.profile.clone(),
                            r.der.clone().unwrap_or_default(),
                        ),
                    )
                })
                .collect();
            certs.sort_by_key(|(seq, _)| *seq);
            certs.into_iter().map(|(_, c)| c).collect()
        }))
    }

    fn serials_for(&self, iin: &str, profile: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.read(|s| {
            s.certificates
                .values()
                .filter_map(|c| c.row.as_ref())
                .filter(|r| {
                    r.state == CertificateState::Issued
                        && r.iin.as_deref() == Some(iin)
                        && r.profile == profile
                })
                .map(|r| r.serial.clone())
                .collect()
        }))
    }

    fn certificates_of(&self, iin: &str) -> Result<Vec<CertificateRow>, StoreError> {
        Ok(self.read(|s| {
            let mut rows: Vec<(u64, CertificateRow)> = s
                .certificates
                .values()
                .filter_map(|c| c.row.as_ref().map(|r| (c.issued_seq, r)))
                .filter(|(_, r)| {
                    r.state == CertificateState::Issued && r.iin.as_deref() == Some(iin)
                })
                .map(|(seq, r)| (seq, r.clone()))
                .collect();
            rows.sort_by_key(|(seq, _)| *seq);
            rows.into_iter().map(|(_, r)| r).collect()
        }))
    }

    fn certificates_of_bin(&self, bin: &str) -> Result<Vec<CertificateRow>, StoreError> {
        Ok(self.read(|s| {
            let mut rows: Vec<(u64, CertificateRow)> = s
                .certificates
                .values()
                .filter(|c| c.bin.as_deref() == Some(bin))
                .filter_map(|c| c.row.as_ref().map(|r| (c.issued_seq, r)))
                .filter(|(_, r)| r.state == CertificateState::Issued)
                .map(|(seq, r)| (seq, r.clone()))
                .collect();
            rows.sort_by_key(|(seq, _)| *seq);
            rows.into_iter().map(|(_, r)| r).collect()
        }))
    }

    fn certificate_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(self.read(|s| {
            let mut counts: BTreeMap<String, i64> = BTreeMap::new();
            for r in s.certificates.values().filter_map(|c| c.row.as_ref()) {
                *counts.entry(r.state.to_string()).or_default() += 1;
            }
            counts.into_iter().collect()
        }))
    }
}

impl RevocationStore for MemoryStore {
    fn revoke_all(
        &self,
        revocations: &[crate::Revocation],
        payload_sha256: Option<String>,
    ) -> Result<(), StoreError> {
        self.change(|s| {
            if let Some(h) = &payload_sha256 {
                s.use_payload(h, crate::Revocation::used_for(revocations))?;
            }
            for crate::Revocation {
                row: r,
                notice,
                audit,
            } in revocations
            {
                let request_number = s
                    .issued_row(&r.serial)
                    .ok_or_else(|| StoreError::CertificateNotFound(r.serial.clone()))?
                    .request_number
                    .clone();
                if s.revocations.contains_key(&r.serial) {
                    return Err(StoreError::AlreadyRevoked(r.serial.clone()));
                }
                s.revocations.insert(r.serial.clone(), r.clone());
                if let Some(n) = notice {
                    s.enqueue(n, request_number.as_deref());
                }
                s.append(audit);
                if let Some(number) = request_number {
                    let all_revoked = s
                        .certificates
                        .values()
                        .filter_map(|c| c.row.as_ref())
                        .filter(|c| {
                            c.state == CertificateState::Issued
                                && c.request_number.as_deref() == Some(number.as_str())
                        })
                        .all(|c| s.revocations.contains_key(&c.serial));
                    let issued = s
                        .requests
                        .get(&number)
                        .is_some_and(|q| q.state == RequestState::Issued);
                    if all_revoked && issued {
                        let q = s.requests.get_mut(&number).expect("checked");
                        q.state = RequestState::Revoked;
                        q.updated_at = now();
                        s.append(&AuditEntry {
                            actor: audit.actor.clone(),
                            action: "request.revoked".into(),
                            object: format!("request:{number}"),
                            details: serde_json::json!({ "last_serial": r.serial }),
                        });
                    }
                }
            }
            Ok(())
        })?;
        for r in revocations {
            self.feed.publish(&crate::StatusChange::Revoked {
                serial: r.row.serial.clone(),
                reason: r.row.reason,
                revoked_at: r.row.revoked_at,
            });
        }
        Ok(())
    }
}

impl RevocationReader for MemoryStore {
    fn revocation(&self, serial: &str) -> Result<Option<RevocationRow>, StoreError> {
        Ok(self.read(|s| s.revocations.get(serial).cloned()))
    }

    fn serial_status(&self, serial: &str) -> Result<Option<SerialStatus>, StoreError> {
        Ok(self.read(|s| {
            let c = s.certificates.get(serial)?.row.as_ref()?;
            Some(SerialStatus {
                issued: c.state == CertificateState::Issued,
                revocation: s.revocations.get(serial).map(|r| (r.reason, r.revoked_at)),
            })
        }))
    }

    fn for_each_revocation(
        &self,
        since: Option<i64>,
        f: &mut dyn FnMut(RevocationEntry<'_>),
    ) -> Result<(), StoreError> {
        let all: Vec<RevocationRow> = self.read(|s| s.revocations.values().cloned().collect());
        for r in all
            .iter()
            .filter(|r| since.is_none_or(|t| r.revoked_at >= t))
        {
            f(RevocationEntry {
                serial_hex: &r.serial,
                reason: r.reason,
                revoked_at: r.revoked_at,
                invalidity_date: r.invalidity_date,
            });
        }
        Ok(())
    }
}

impl UsedPayloads for MemoryStore {
    fn payload_used(&self, sha256: &str) -> Result<Option<String>, StoreError> {
        Ok(self.read(|s| s.used_payloads.get(sha256).cloned()))
    }

    fn spend_payload(
        &self,
        sha256: &str,
        used_for: &str,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        self.change(|s| {
            s.use_payload(sha256, used_for.to_owned())?;
            s.append(audit);
            Ok(())
        })
    }
}

impl OperatorStore for MemoryStore {
    fn put_operator(&self, o: &OperatorRow, audit: &AuditEntry) -> Result<(), StoreError> {
        self.change(|s| {
            s.operators.insert(o.iin.clone(), o.clone());
            s.append(audit);
            Ok(())
        })
    }

    fn set_operator_status(
        &self,
        iin: &str,
        status: OperatorStatus,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        self.change(|s| {
            s.operators
                .get_mut(iin)
                .ok_or_else(|| StoreError::OperatorNotFound(iin.to_owned()))?
                .status = status;
            s.append(audit);
            Ok(())
        })
    }

    fn operator(&self, iin: &str) -> Result<Option<OperatorRow>, StoreError> {
        Ok(self.read(|s| s.operators.get(iin).cloned()))
    }

    fn operators(&self) -> Result<Vec<OperatorRow>, StoreError> {
        Ok(self.read(|s| s.operators.values().cloned().collect()))
    }
}

impl AuditLog for MemoryStore {
    fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.change(|s| {
            s.append(entry);
            Ok(())
        })
    }

    fn audit_records(&self) -> Result<Vec<AuditRecord>, StoreError> {
        Ok(self.read(|s| s.audit.clone()))
    }

    fn verify_audit(&self) -> Result<Result<u64, AuditBreak>, StoreError> {
        Ok(Ok(self.read(|s| s.audit.len() as u64)))
    }
}

impl PublicationStore for MemoryStore {
    fn next_crl_number(&self) -> Result<i64, StoreError> {
        self.change(|s| {
            s.crl_number += 1;
            Ok(s.crl_number)
        })
    }

    fn record_crls(&self, crls: Vec<NewCrl>, actor: &str) -> Result<Vec<CrlRow>, StoreError> {
        // The bytes are read before the change: a short or long body refuses the whole call.
        let mut read = Vec::new();
        for mut c in crls {
            let mut pieces = Vec::new();
            crate::chunks::store_pieces(&mut c.der, c.row.size, |_, p| {
                pieces.push(p.to_vec());
                Ok::<_, StoreError>(())
            })
            .map_err(|e| match e {
                crate::chunks::PiecesError::Store(e) => e,
                crate::chunks::PiecesError::Body(why) => {
                    StoreError::Database(format!("CRL {}: {why}", c.row.crl_number))
                }
            })?;
            read.push((c.row, pieces));
        }
        self.change(|s| {
            let mut out = Vec::new();
            for (mut c, pieces) in read {
                if c.crl_number <= s.crls.last().map_or(0, |(l, _)| l.crl_number) {
                    return Err(StoreError::Database("CRL number does not increase".into()));
                }
                c.published_at = now();
                s.append(&AuditEntry {
                    actor: actor.into(),
                    action: "crl.published".into(),
                    object: format!("crl:{}", c.crl_number),
                    details: serde_json::json!({ "kind": c.kind.as_str() }),
                });
                s.crls.push((c.clone(), pieces));
                out.push(c);
            }
            Ok(out)
        })
    }

    fn latest_full_crl(&self) -> Result<Option<CrlRow>, StoreError> {
        self.latest_full_crl_info()
    }

    fn latest_delta_crl(&self) -> Result<Option<CrlRow>, StoreError> {
        self.latest_delta_crl_info()
    }

    fn latest_full_crl_info(&self) -> Result<Option<CrlRow>, StoreError> {
        Ok(self.read(|s| {
            s.crls
                .iter()
                .rev()
                .find(|(c, _)| c.kind == CrlKind::Full)
                .map(|(c, _)| c.clone())
        }))
    }

    fn latest_delta_crl_info(&self) -> Result<Option<CrlRow>, StoreError> {
        Ok(self.read(|s| {
            s.crls
                .iter()
                .rev()
                .find(|(c, _)| c.kind == CrlKind::Delta)
                .map(|(c, _)| c.clone())
        }))
    }

    fn crl_chunk(&self, crl_number: i64, seq: i64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.read(|s| {
            let (_, pieces) = s.crls.iter().find(|(c, _)| c.crl_number == crl_number)?;
            pieces.get(usize::try_from(seq).ok()?).cloned()
        }))
    }
}

impl Outbox for MemoryStore {
    fn pending_notifications(&self, limit: i64) -> Result<Vec<Notification>, StoreError> {
        let now = now();
        Ok(self.read(|s| {
            s.notifications
                .iter()
                .filter(|n| !s.sent.contains(&n.id))
                .filter(|n| {
                    s.retries
                        .get(&n.id)
                        .is_none_or(|r| r.dead_at.is_none() && r.next_attempt_at <= now)
                })
                .take(usize::try_from(limit).unwrap_or(0))
                .cloned()
                .collect()
        }))
    }

    fn notifications_attempted(
        &self,
        attempts: &[DeliveryAttempt],
        policy: &RetryPolicy,
    ) -> Result<Vec<AttemptRecorded>, StoreError> {
        self.change(|s| {
            let now = now();
            let mut recorded = Vec::with_capacity(attempts.len());
            for a in attempts {
                let Some(n) = s.notifications.iter_mut().find(|n| n.id == a.id) else {
                    recorded.push(AttemptRecorded::Stale);
                    continue;
                };
                let retry = s.retries.entry(a.id).or_default();
                if s.sent.contains(&a.id) {
                    recorded.push(AttemptRecorded::Stale);
                    continue;
                }
                match &a.error {
                    None => {
                        n.attempts += 1;
                        retry.dead_at = None;
                        retry.last_error = None;
                        s.sent.insert(a.id);
                        recorded.push(AttemptRecorded::Sent);
                    }
                    Some(_) if retry.dead_at.is_some() || n.attempts != a.attempts_before => {
                        recorded.push(AttemptRecorded::Stale);
                    }
                    Some(e) => {
                        let after = policy.after_failure(n.attempts, now);
                        retry.last_error = Some(e.clone());
                        match after {
                            crate::AfterFailure::Retry {
                                attempts,
                                next_attempt_at,
                            } => {
                                n.attempts = attempts;
                                retry.next_attempt_at = next_attempt_at;
                            }
                            crate::AfterFailure::Dead { attempts } => {
                                n.attempts = attempts;
                                retry.dead_at = Some(now);
                                let audit = dead_letter_audit(
                                    n.id,
                                    n.kind.as_str(),
                                    n.request_number.as_deref(),
                                    attempts,
                                );
                                s.append(&audit);
                            }
                        }
                        recorded.push(after.into());
                    }
                }
            }
            Ok(recorded)
        })
    }

    fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        Ok(self.read(|s| {
            let unsent = s.notifications.iter().filter(|n| !s.sent.contains(&n.id));
            let dead = unsent
                .clone()
                .filter(|n| s.retries.get(&n.id).is_some_and(|r| r.dead_at.is_some()))
                .count() as u64;
            OutboxStats {
                pending: unsent.count() as u64 - dead,
                dead,
            }
        }))
    }

    fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        Ok(self.read(|s| {
            s.notifications
                .iter()
                .filter(|n| !s.sent.contains(&n.id))
                .filter_map(|n| {
                    let r = s.retries.get(&n.id)?;
                    Some(DeadLetter {
                        id: n.id,
                        kind: n.kind,
                        recipient: n.recipient.clone(),
                        request_number: n.request_number.clone(),
                        attempts: n.attempts,
                        dead_at: r.dead_at?,
                        last_error: r.last_error.clone(),
                    })
                })
                .collect()
        }))
    }

    fn revive_notifications(
        &self,
        ids: Option<&[i64]>,
        actor: &str,
    ) -> Result<Vec<i64>, StoreError> {
        self.change(|s| {
            let now = now();
            let mut revived = Vec::new();
            for n in s.notifications.iter_mut() {
                if s.sent.contains(&n.id) || ids.is_some_and(|ids| !ids.contains(&n.id)) {
                    continue;
                }
                let Some(r) = s.retries.get_mut(&n.id).filter(|r| r.dead_at.is_some()) else {
                    continue;
                };
                let audit = revived_audit(
                    n.id,
                    n.kind.as_str(),
                    n.request_number.as_deref(),
                    n.attempts,
                    actor,
                );
                r.dead_at = None;
                r.next_attempt_at = now;
                n.attempts = 0;
                revived.push((n.id, audit));
            }
            for (_, audit) in &revived {
                s.append(audit);
            }
            Ok(revived.into_iter().map(|(id, _)| id).collect())
        })
    }
}

impl CaKeyStore for MemoryStore {
    fn put_ca_keys(&self, keys: &[CaKeyRow], audit: &AuditEntry) -> Result<(), StoreError> {
        // As the databases do: the keys are added, one row per role, and a role already
        // recorded refuses the whole batch.
        self.change(|s| {
            for k in keys {
                if s.ca_keys.iter().any(|have| have.role == k.role) {
                    return Err(StoreError::Database(format!(
                        "a CA key of role {} is already recorded",
                        k.role
                    )));
                }
                s.ca_keys.push(k.clone());
            }
            s.append(audit);
            Ok(())
        })
    }

    fn ca_keys(&self) -> Result<Vec<CaKeyRow>, StoreError> {
        Ok(self.read(|s| s.ca_keys.clone()))
    }

    fn replace_ca_key(&self, key: &CaKeyRow, audit: &AuditEntry) -> Result<(), StoreError> {
        self.change(|s| {
            let Some(row) = s.ca_keys.iter_mut().find(|k| k.role == key.role) else {
                return Err(StoreError::Database(format!(
                    "no CA key of role {} to replace",
                    key.role
                )));
            };
            *row = key.clone();
            s.append(audit);
            Ok(())
        })
    }
}

impl StoreHealth for MemoryStore {
    fn ping(&self) -> Result<(), StoreError> {
        self.read(|_| ());
        Ok(())
    }
}

impl crate::StatusFeed for MemoryStore {
    fn subscribe_status(&self, listener: crate::StatusListener) -> Result<(), StoreError> {
        self.feed.subscribe(listener);
        Ok(())
    }
}

/// One process, one publisher.
impl crate::PublisherLease for MemoryStore {
    fn hold_publisher_lease(&self) -> Result<bool, StoreError> {
        Ok(true)
    }
}

/// The memory store's tree, read while its lock is held.
struct MemoryNodes<'a>(&'a HashMap<(u8, u64), nuc_tlog::Hash>);

impl nuc_tlog::tree::NodeSource for MemoryNodes<'_> {
    type Error = StoreError;
    fn node(&self, level: u8, index: u64) -> Result<nuc_tlog::Hash, StoreError> {
        self.0.get(&(level, index)).copied().ok_or_else(|| {
            StoreError::Corrupt(format!(
                "no audit tree node at level {level}, index {index}"
            ))
        })
    }
}

impl AuditTree for MemoryStore {
    fn grow_audit_tree(&self, max: u64) -> Result<TreeHead, StoreError> {
        self.change(|s| {
            let from = usize::try_from(s.tree_size).unwrap_or(usize::MAX);
            let end = s.audit.len().min(from.saturating_add(max as usize));
            let records = s.audit.get(from..end).unwrap_or_default();
            let (nodes, head) =
                crate::audit_tree::grow(s.tree_size, &MemoryNodes(&s.tree_nodes), records)?;
            for n in nodes {
                s.tree_nodes.insert((n.level, n.index), n.hash);
            }
            s.tree_size = head.size;
            Ok(head)
        })
    }

    fn audit_tree_size(&self) -> Result<u64, StoreError> {
        Ok(self.read(|s| s.tree_size))
    }

    fn audit_log_size(&self) -> Result<u64, StoreError> {
        Ok(self.read(|s| s.audit.len() as u64))
    }

    fn audit_node(&self, level: u8, index: u64) -> Result<Option<nuc_tlog::Hash>, StoreError> {
        Ok(self.read(|s| s.tree_nodes.get(&(level, index)).copied()))
    }

    fn audit_records_from(&self, seq: i64, limit: i64) -> Result<Vec<AuditRecord>, StoreError> {
        Ok(self.read(|s| {
            s.audit
                .iter()
                .filter(|r| r.seq >= seq)
                .take(usize::try_from(limit).unwrap_or(0))
                .cloned()
                .collect()
        }))
    }

    fn put_checkpoint(&self, checkpoint: &CheckpointRow) -> Result<bool, StoreError> {
        self.change(|s| {
            if s.checkpoints.contains_key(&checkpoint.size) {
                return Ok(false);
            }
            s.checkpoints.insert(checkpoint.size, checkpoint.clone());
            Ok(true)
        })
    }

    fn checkpoint_at(&self, size: u64) -> Result<Option<CheckpointRow>, StoreError> {
        Ok(self.read(|s| s.checkpoints.get(&size).cloned()))
    }

    fn latest_checkpoint(&self) -> Result<Option<CheckpointRow>, StoreError> {
        Ok(self.read(|s| s.checkpoints.values().next_back().cloned()))
    }

    fn checkpoints(&self) -> Result<Vec<CheckpointRow>, StoreError> {
        Ok(self.read(|s| s.checkpoints.values().cloned().collect()))
    }

    fn put_cosignature(&self, cosignature: &CosignatureRow) -> Result<bool, StoreError> {
        self.change(|s| {
            let key = (cosignature.size, cosignature.witness.clone());
            if s.cosignatures.contains_key(&key) {
                return Ok(false);
            }
            s.cosignatures.insert(key, cosignature.clone());
            Ok(true)
        })
    }

    fn cosignatures(&self, size: u64) -> Result<Vec<CosignatureRow>, StoreError> {
        Ok(self.read(|s| {
            s.cosignatures
                .range((size, String::new())..)
                .take_while(|((n, _), _)| *n == size)
                .map(|(_, c)| c.clone())
                .collect()
        }))
    }
}
