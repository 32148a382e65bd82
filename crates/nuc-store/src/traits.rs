//! One trait per kind of record. A role is handed only those it uses (see
//! `docs/architecture.md`); each write method commits its change, its audit record and
//! whatever is composed with it in one transaction, or nothing.

use nuc_core::{Notice, OperatorStatus};

use crate::StoreError;
use crate::retry::{AttemptRecorded, DeadLetter, DeliveryAttempt, OutboxStats, RetryPolicy};
use crate::rows::{
    AuditBreak, AuditEntry, AuditRecord, CaKeyRow, CertificateRow, CrlRow, NewCrl, NewRequest,
    Notification, OperatorRow, RequestRow, Reservation, Revocation, RevocationEntry, RevocationRow,
    SerialStatus, Transition,
};

/// Requests and their state machine (the RA's).
pub trait RequestStore: Send + Sync {
    /// Registers a request with its notice and audit record. With an idempotency key
    /// `(caller, key)` already used, nothing is written and the request registered the first
    /// time is returned instead (`Ok((row, false))`). A payload hash already used is refused.
    fn register_request(
        &self,
        request: &NewRequest,
        idempotency: Option<(String, String)>,
        notice: Option<Notice>,
        audit: &AuditEntry,
    ) -> Result<(RequestRow, bool), StoreError>;

    /// The request registered under a caller's idempotency key, if any.
    fn request_by_idempotency(
        &self,
        caller: &str,
        key: &str,
    ) -> Result<Option<RequestRow>, StoreError>;

    /// A request by its canonical number.
    fn request(&self, number: &str) -> Result<Option<RequestRow>, StoreError>;

    /// Moves a request from one of `t.from` to `t.to`, with its payload mark, notice and audit
    /// record; refuses if the request is elsewhere (someone else decided first).
    fn transition(&self, t: &Transition) -> Result<RequestRow, StoreError>;

    /// Expires every registered request whose deadline is at or before `now`, each with its
    /// audit record; gives their numbers.
    fn expire_requests(&self, now: i64, actor: &str) -> Result<Vec<String>, StoreError>;

    /// The requests of `iin` still waiting for a CON operator (registered, deadline after
    /// `now`), newest first, at most `limit` (read through the index on `requests(iin)`).
    fn pending_requests_of(
        &self,
        iin: &str,
        now: i64,
        limit: u32,
    ) -> Result<Vec<RequestRow>, StoreError>;
}

/// The issuance sequence (the CA's, through an [`crate::IssuanceLedger`]): a serial and its
/// key are reserved before the HSM signs, the certificate recorded after.
pub trait CertificateStore: Send + Sync {
    /// Reserves several issuances, after applying `before` (a request's transition that the
    /// issuance follows), in one commit. Refuses a key already certified and a serial used.
    fn reserve_batch(
        &self,
        items: &[(Reservation, AuditEntry)],
        before: Option<Transition>,
    ) -> Result<(), StoreError>;

    /// Records signed certificates under their reserved serials, then applies `after` (e.g.
    /// the request becoming issued, with its notice), in one commit.
    fn record_batch(
        &self,
        items: &[(String, Vec<u8>, AuditEntry)],
        after: Option<Transition>,
    ) -> Result<(), StoreError>;

    /// Gives up a reservation whose signing failed: the serial stays burnt, the key is free.
    fn abandon(&self, serial: &str, audit: &AuditEntry) -> Result<(), StoreError>;

    /// Abandons reservations made before `before` that never got their certificate (the
    /// process stopped between the two commits), each with its audit record; gives the serials.
    fn abandon_stale_reservations(
        &self,
        before: i64,
        actor: &str,
    ) -> Result<Vec<String>, StoreError>;
}

/// Reads of certificates (RA, verifier, status pages).
pub trait CertificateReader: Send + Sync {
    /// The serial of the certificate (or reservation) that already holds this key, if any.
    fn key_certified(&self, spki_sha256: &str) -> Result<Option<String>, StoreError>;

    /// A certificate or reservation by serial (lowercase hex).
    fn certificate(&self, serial: &str) -> Result<Option<CertificateRow>, StoreError>;

    /// `(serial, profile, DER)` of the issued certificates of a request, in issuance order.
    fn certificates_of_request(
        &self,
        number: &str,
    ) -> Result<Vec<(String, String, Vec<u8>)>, StoreError>;

    /// Serials of the issued certificates of a profile for an IIN (e.g. an operator's).
    fn serials_for(&self, iin: &str, profile: &str) -> Result<Vec<String>, StoreError>;

    /// Every issued certificate of an IIN, of any profile, revoked or not, in issuance order.
    fn certificates_of(&self, iin: &str) -> Result<Vec<CertificateRow>, StoreError>;

    /// Every issued certificate of a request made for a legal entity's employee (the request
    /// names the BIN), revoked or not, in issuance order: the entity's report.
    fn certificates_of_bin(&self, bin: &str) -> Result<Vec<CertificateRow>, StoreError>;

    /// How many certificates are in each state, by stored spelling.
    fn certificate_counts(&self) -> Result<Vec<(String, i64)>, StoreError>;
}

/// Revoking (the RA's).
pub trait RevocationStore: Send + Sync {
    /// Revokes an issued certificate, once, with its payload mark, notice and audit record; a
    /// request whose certificates are then all revoked becomes revoked. Durable on return. A
    /// batch of one for [`RevocationStore::revoke_all`].
    fn revoke(
        &self,
        revocation: &RevocationRow,
        payload_sha256: Option<String>,
        notice: Option<Notice>,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        self.revoke_all(
            &[Revocation {
                row: revocation.clone(),
                notice,
                audit: audit.clone(),
            }],
            payload_sha256,
        )
    }

    /// Revokes several issued certificates in one transaction, each with its notice and audit
    /// record, the signed payload that asked for them marked used once: all of them, or none
    /// (one already revoked or not issued refuses the whole batch). Durable on return; every
    /// instance learns of each revocation.
    fn revoke_all(
        &self,
        revocations: &[Revocation],
        payload_sha256: Option<String>,
    ) -> Result<(), StoreError>;
}

/// Reads of revocations (RA, OCSP, CRL, verifier).
pub trait RevocationReader: Send + Sync {
    /// The revocation of a certificate, if revoked.
    fn revocation(&self, serial: &str) -> Result<Option<RevocationRow>, StoreError>;

    /// What OCSP needs of a serial; `None` when it was never reserved.
    fn serial_status(&self, serial: &str) -> Result<Option<SerialStatus>, StoreError>;

    /// Calls `f` for every revocation (with `revoked_at >= since` when given), from one read
    /// snapshot, without collecting them: memory does not grow with their number.
    fn for_each_revocation(
        &self,
        since: Option<i64>,
        f: &mut dyn FnMut(RevocationEntry<'_>),
    ) -> Result<(), StoreError>;
}

/// Signed payloads already acted on: each is accepted once. Marks are written by the changes
/// they cause ([`Transition::payload_sha256`], [`RevocationStore::revoke`]).
pub trait UsedPayloads: Send + Sync {
    /// What a signed payload was used for, if it was.
    fn payload_used(&self, sha256: &str) -> Result<Option<String>, StoreError>;

    /// Marks a signed payload used, with its audit record, for an act that changes nothing
    /// else (a report read): refused with [`StoreError::PayloadReplayed`] if it already was.
    /// Durable on return.
    fn spend_payload(
        &self,
        sha256: &str,
        used_for: &str,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;
}

/// Operators of the CONs (F6).
pub trait OperatorStore: Send + Sync {
    /// Creates or updates an operator, with its audit record.
    fn put_operator(&self, operator: &OperatorRow, audit: &AuditEntry) -> Result<(), StoreError>;

    /// Sets an operator's status, with its audit record.
    fn set_operator_status(
        &self,
        iin: &str,
        status: OperatorStatus,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;

    /// An operator by IIN.
    fn operator(&self, iin: &str) -> Result<Option<OperatorRow>, StoreError>;

    /// All operators, by IIN.
    fn operators(&self) -> Result<Vec<OperatorRow>, StoreError>;
}

/// The audit log: append-only, tamper-evident.
pub trait AuditLog: Send + Sync {
    /// Appends a record of its own (a refusal, an administrator's act).
    fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;

    /// Every record, in order.
    fn audit_records(&self) -> Result<Vec<AuditRecord>, StoreError>;

    /// Checks the chain: the number of records, or the first broken one.
    fn verify_audit(&self) -> Result<Result<u64, AuditBreak>, StoreError>;
}

/// CRL publications (the publisher's).
pub trait PublicationStore: Send + Sync {
    /// The next number of the one monotonic CRL-number sequence (full and delta share it).
    fn next_crl_number(&self) -> Result<i64, StoreError>;

    /// Records signed CRLs with their bytes and their audit records, in one commit; gives
    /// the rows back as stored. The bytes are read from each [`NewCrl`] in pieces of
    /// [`crate::CRL_CHUNK_BYTES`]; a CRL whose bytes are not exactly `size` long is refused, and
    /// then nothing of this call is recorded.
    fn record_crls(&self, crls: Vec<NewCrl>, actor: &str) -> Result<Vec<CrlRow>, StoreError>;

    /// The latest complete CRL as served to relying parties (its row; the bytes through
    /// [`Self::crl_chunk`]). May lag the primary where a store reads from a replica.
    fn latest_full_crl(&self) -> Result<Option<CrlRow>, StoreError>;
    /// The latest complete CRL as the publisher decides by: never lags.
    fn latest_full_crl_info(&self) -> Result<Option<CrlRow>, StoreError>;
    /// The latest delta CRL as served (may lag, like [`Self::latest_full_crl`]).
    fn latest_delta_crl(&self) -> Result<Option<CrlRow>, StoreError>;
    /// The latest delta CRL as the publisher decides by.
    fn latest_delta_crl_info(&self) -> Result<Option<CrlRow>, StoreError>;

    /// Piece `seq` (from 0) of the bytes of CRL `crl_number`; `None` past the last piece or
    /// for an unknown CRL. The pieces, in order, are the CRL's DER; a recorded CRL's pieces
    /// never change, so they may be read from a replica or the primary alike.
    fn crl_chunk(&self, crl_number: i64, seq: i64) -> Result<Option<Vec<u8>>, StoreError>;
}

/// The whole DER of a recorded CRL, checked against its recorded size: for tests,
/// tools and small CRLs; a server streams the pieces instead.
pub fn read_crl(store: &dyn PublicationStore, row: &CrlRow) -> Result<Vec<u8>, StoreError> {
    let mut der = Vec::with_capacity(usize::try_from(row.size).unwrap_or(0));
    let mut seq = 0;
    while let Some(piece) = store.crl_chunk(row.crl_number, seq)? {
        der.extend_from_slice(&piece);
        seq += 1;
    }
    if der.len() as i64 != row.size {
        return Err(StoreError::Corrupt(format!(
            "CRL {} holds {} bytes, {} recorded",
            row.crl_number,
            der.len(),
            row.size
        )));
    }
    Ok(der)
}

/// The notification outbox (the sender's, and `nuc outbox`'s).
pub trait Outbox: Send + Sync {
    /// Notices not yet sent, not given up, and due (their next attempt is now or past),
    /// oldest first.
    fn pending_notifications(&self, limit: i64) -> Result<Vec<Notification>, StoreError>;

    /// Records the outcomes of a pass of delivery attempts, in one commit: a sent message
    /// leaves the outbox; a failed one waits as `policy` says, or becomes a dead letter (with
    /// its audit record) at the attempt limit. An attempt of a message attempted, sent or given
    /// up meanwhile (by another instance) is not recorded ([`AttemptRecorded::Stale`]).
    fn notifications_attempted(
        &self,
        attempts: &[DeliveryAttempt],
        policy: &RetryPolicy,
    ) -> Result<Vec<AttemptRecorded>, StoreError>;

    /// How many messages wait and how many were given up.
    fn outbox_stats(&self) -> Result<OutboxStats, StoreError>;

    /// The dead letters, oldest first.
    fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError>;

    /// Revives dead letters for another round (attempts from zero, due now), each with its
    /// audit record under `actor`: those of `ids`, or every one for `None`. Returns the ids
    /// revived (an id that is no dead letter is left out).
    fn revive_notifications(
        &self,
        ids: Option<&[i64]>,
        actor: &str,
    ) -> Result<Vec<i64>, StoreError>;
}

/// The CA's own keys and certificates (bootstrap and start).
pub trait CaKeyStore: Send + Sync {
    /// Adds the CA's keys with the audit record of their creation, all or none; a role
    /// already recorded refuses the batch (the first instance to record a role wins).
    fn put_ca_keys(&self, keys: &[CaKeyRow], audit: &AuditEntry) -> Result<(), StoreError>;

    /// The CA's keys.
    fn ca_keys(&self) -> Result<Vec<CaKeyRow>, StoreError>;

    /// Puts `key` in place of the CA key of its role (a renewed OCSP signer), with its audit
    /// record, in one commit. A role the store does not hold is refused (nothing stored): a
    /// renewal never adds a role.
    fn replace_ca_key(&self, key: &CaKeyRow, audit: &AuditEntry) -> Result<(), StoreError>;
}

/// Whether the database answers at all (the service's readiness).
pub trait StoreHealth: Send + Sync {
    /// A cheap round trip through what every read and every commit needs; changes nothing.
    fn ping(&self) -> Result<(), StoreError>;
}
