//! The records storage keeps, as the roles read and write them. States, statuses and reasons
//! are the enums of nuc-core; their stored spelling is the implementation's business.

use nuc_core::{
    CertificateState, Identification, KeyStorage, Notice, NoticeKind, OperatorStatus, RequestKind,
    RequestState, RevocationReason,
};

/// What happened, as the caller states it; the store adds the sequence, time and hashes.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Who caused it: `cli:<user>`, `operator:<serial>`, `system`…
    pub actor: String,
    /// Dotted verb, e.g. `certificate.issued`, `certificate.refused`, `ca.initialised`.
    pub action: String,
    /// What it happened to, e.g. `serial:…` or `profile:individual-auth`.
    pub object: String,
    pub details: serde_json::Value,
}

/// A stored audit record.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub object: String,
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The first record at which the audit chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit record {seq} is broken: {reason}")]
pub struct AuditBreak {
    pub seq: i64,
    pub reason: String,
}

/// What is known of a certificate before it is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub serial: String,
    pub profile: String,
    pub subject: String,
    pub iin: Option<String>,
    pub bin: Option<String>,
    pub spki_sha256: String,
    pub not_before: i64,
    pub not_after: i64,
    /// The request this certificate answers, if it came through the RA.
    pub request_number: Option<String>,
}

/// A stored certificate (or reservation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRow {
    pub serial: String,
    pub profile: String,
    pub state: CertificateState,
    pub subject: String,
    pub iin: Option<String>,
    pub spki_sha256: String,
    pub der: Option<Vec<u8>>,
    pub request_number: Option<String>,
}

/// One of the CA's own keys: where it lives in the HSM and its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaKeyRow {
    pub role: String,
    pub hsm_label: String,
    pub algorithm: String,
    pub cert_der: Vec<u8>,
}

/// A request as registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRequest {
    pub number: String,
    pub kind: RequestKind,
    pub state: RequestState,
    pub iin: String,
    pub bin: Option<String>,
    pub role: Option<String>,
    pub email: Option<String>,
    pub subject_json: String,
    pub auth_csr: Vec<u8>,
    pub sign_csr: Vec<u8>,
    pub identification: Option<Identification>,
    pub registered_at: i64,
    pub expires_at: i64,
    /// SHA-256 (hex) of the signed payload the request comes from (renewal); refused if used.
    pub payload_sha256: Option<String>,
    /// Where the applicant's keys live.
    pub key_storage: KeyStorage,
    /// F2: the serial (lowercase hex) of the certificate that signed the renewal this request
    /// is; `None` for a request that came through a CON (F1, F4).
    pub renewed_from: Option<String>,
    /// How many remote renewals in a row this request ends: 0 for a request that came through
    /// a CON (F1, F4), one more than its predecessor's for a renewal. The RA bounds it.
    pub remote_renewals: u32,
}

/// A stored request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRow {
    pub number: String,
    pub kind: RequestKind,
    pub state: RequestState,
    pub iin: String,
    pub bin: Option<String>,
    pub role: Option<String>,
    pub email: Option<String>,
    pub subject_json: String,
    pub auth_csr: Vec<u8>,
    pub sign_csr: Vec<u8>,
    pub identification: Option<Identification>,
    pub refusal_reason: Option<String>,
    pub decided_by: Option<String>,
    pub registered_at: i64,
    pub expires_at: i64,
    pub updated_at: i64,
    pub key_storage: KeyStorage,
    /// See [`NewRequest::renewed_from`].
    pub renewed_from: Option<String>,
    /// See [`NewRequest::remote_renewals`].
    pub remote_renewals: u32,
}

/// A state change of a request, with everything that must commit with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub number: String,
    /// The states it may leave; anything else is refused (someone else decided first).
    pub from: Vec<RequestState>,
    pub to: RequestState,
    pub refusal_reason: Option<String>,
    pub decided_by: Option<String>,
    pub identification: Option<Identification>,
    /// SHA-256 (hex) of the signed payload that caused it; refused if already used.
    pub payload_sha256: Option<String>,
    /// The notices to queue with it (the applicant's, and on issuance the alert to the
    /// holder's address on record).
    pub notify: Vec<Notice>,
    pub audit: AuditEntry,
}

impl Transition {
    /// A registered request expiring at `now`: no CON visit within its deadline. Every
    /// implementation expires requests with this one transition.
    pub fn expiry(number: &str, now: i64, actor: &str) -> Self {
        Self {
            number: number.to_owned(),
            from: vec![RequestState::Registered],
            to: RequestState::Expired,
            refusal_reason: Some("no CON visit within 30 days".into()),
            decided_by: None,
            identification: None,
            payload_sha256: None,
            notify: Vec::new(),
            audit: AuditEntry {
                actor: actor.into(),
                action: "request.expired".into(),
                object: format!("request:{number}"),
                details: serde_json::json!({ "deadline_passed_at": now }),
            },
        }
    }
}

/// A notice in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub id: i64,
    pub kind: NoticeKind,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    pub request_number: Option<String>,
    pub attempts: i64,
}

/// An operator of a CON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRow {
    pub iin: String,
    pub surname: String,
    pub name: String,
    pub role: String,
    pub con: String,
    pub status: OperatorStatus,
}

/// A revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationRow {
    pub serial: String,
    pub reason: RevocationReason,
    pub revoked_at: i64,
    pub invalidity_date: Option<i64>,
    pub revoked_by: String,
}

/// One revocation of a batch ([`crate::RevocationStore::revoke_all`]): the row, the holder's
/// notice and the audit record, each its own.
#[derive(Debug, Clone, PartialEq)]
pub struct Revocation {
    pub row: RevocationRow,
    pub notice: Option<Notice>,
    pub audit: AuditEntry,
}

impl Revocation {
    /// What a signed payload was used for when it asked for `batch`, as the used-payloads
    /// record says it.
    pub fn used_for(batch: &[Revocation]) -> String {
        match batch {
            [one] => format!("revocation of {}", one.row.serial),
            many => format!(
                "revocation of {} certificates: {}",
                many.len(),
                many.iter()
                    .map(|r| r.row.serial.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// One revocation as a CRL lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevocationEntry<'a> {
    pub serial_hex: &'a str,
    pub reason: RevocationReason,
    pub revoked_at: i64,
    pub invalidity_date: Option<i64>,
}

/// A serial's status for OCSP: issued or not, and its revocation (reason, time) if revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SerialStatus {
    pub issued: bool,
    pub revocation: Option<(RevocationReason, i64)>,
}

/// Complete CRL or delta CRL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrlKind {
    Full,
    Delta,
}

impl CrlKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Delta => "delta",
        }
    }
}

/// A signed CRL as recorded: what it says about itself, not its bytes. The bytes are kept in
/// pieces of at most [`CRL_CHUNK_BYTES`] ([`PublicationStore::crl_chunk`]), so that neither
/// recording nor serving a CRL of millions of entries holds it whole in memory.
///
/// [`PublicationStore::crl_chunk`]: crate::PublicationStore::crl_chunk
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlRow {
    pub crl_number: i64,
    pub kind: CrlKind,
    /// The deltaCRLIndicator of a delta: the number of the complete CRL it updates.
    pub base_crl_number: Option<i64>,
    pub this_update: i64,
    pub next_update: i64,
    /// How many revoked certificates it lists.
    pub entries: i64,
    /// Length of its DER, in bytes.
    pub size: i64,
    /// Hex SHA-256 of its DER.
    pub sha256: String,
    /// When it was recorded (set by the store; ignored on input).
    pub published_at: i64,
}

/// The largest piece a CRL's bytes are stored in.
pub const CRL_CHUNK_BYTES: usize = 1 << 20;

/// A signed CRL handed to [`PublicationStore::record_crls`]: its row and its DER, read once,
/// in order, exactly `row.size` bytes (a temporary file, for a large CRL).
///
/// [`PublicationStore::record_crls`]: crate::PublicationStore::record_crls
pub struct NewCrl {
    pub row: CrlRow,
    pub der: Box<dyn std::io::Read + Send>,
}

impl NewCrl {
    /// A CRL whose DER is already in memory (a small one, or a test's): `row.size` is set
    /// from it.
    pub fn in_memory(mut row: CrlRow, der: Vec<u8>) -> Self {
        row.size = der.len() as i64;
        Self {
            row,
            der: Box::new(std::io::Cursor::new(der)),
        }
    }
}

impl std::fmt::Debug for NewCrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewCrl")
            .field("row", &self.row)
            .finish_non_exhaustive()
    }
}
