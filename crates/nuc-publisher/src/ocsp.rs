//! OCSP responder (RFC 6960, nonce per RFC 8954), as a library the HTTP server calls.
//!
//! [`respond`] always returns a DER `OCSPResponse` and never panics:
//! - `malformedRequest` (1) for anything that does not decode as one DER `OCSPRequest`
//!   (garbage, truncated, trailing bytes, empty, over [`MAX_REQUEST_BYTES`]), a version other
//!   than v1, no request or more than [`MAX_CERTS`], a nonce of the wrong size or given twice,
//!   an extension marked critical other than the nonce (we cannot honour what we do not know),
//!   a CertID whose serialNumber is longer than [`MAX_SERIAL_OCTETS`] (RFC 5280 §4.1.2.2: no
//!   conforming certificate has one, so the question is malformed, and answering it would
//!   sign and cache whatever an attacker makes up);
//! - `tryLater` (3) when the OCSP signer's HSM sessions are all busy and its queue is full
//!   (`[ocsp] signing_sessions`, `signing_queue`): a flood of nonces is turned away at once
//!   instead of queueing without limit;
//! - `unauthorized` (6) when a CertID names another issuer than our issuing CA. A CertID whose
//!   hashAlgorithm is neither SHA-1 nor SHA-256 also gets `unauthorized`: the request is well
//!   formed, we just cannot tell it is about our CA (RFC 6960 §2.3 allows either answer);
//! - `internalError` (2) when storage or the HSM fails;
//! - `successful` (0) with a BasicOCSPResponse signed in the HSM by the delegated OCSP signer,
//!   its certificate in `certs`, responderID byKey.
//!
//! The status of a serial is read from storage on every call: `revoked` when a revocation row
//! exists, `good` when the certificate is issued, `unknown` when we never issued that serial.
//!
//! Every answer but `successful` is the bare status, unsigned, made without the HSM.
//!
//! The [`OcspCache`] holds signed responses to requests without a nonce, bounded in bytes (key,
//! response and bookkeeping counted), the oldest evicted first. This module must never sign
//! for a request it refuses, cache a refusal, or let the cache grow past its byte cap.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use const_oid::ObjectIdentifier;
use der::asn1::{Any, BitString, GeneralizedTime, Int, Null, OctetString};
use der::{Decode, Encode, Tagged};
use nuc_ca::CaIdentity;

use crate::OcspContext;
use sha2::Digest;
use spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::crl::CrlReason;

/// id-pkix-ocsp-basic.
pub const ID_PKIX_OCSP_BASIC: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");
/// id-pkix-ocsp-nonce.
pub const ID_PKIX_OCSP_NONCE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.2");
/// id-sha1.
pub const ID_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
/// id-sha256.
pub const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");

/// Most certificates asked about in one request.
pub const MAX_CERTS: usize = 32;
/// Largest request accepted (the HTTP server should refuse earlier).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// How long a response is valid: nextUpdate = thisUpdate + this.
pub const DEFAULT_VALIDITY_SECS: i64 = 3600;
/// Longest serialNumber a CertID may carry, in content octets of its INTEGER (RFC 5280
/// §4.1.2.2; our CA's serials are exactly 20).
pub const MAX_SERIAL_OCTETS: usize = 20;
/// Default byte cap of the [`OcspCache`] (`[ocsp] cache_bytes`).
pub const DEFAULT_CACHE_BYTES: usize = 64 * 1024 * 1024;

// ------------------------------------------------------------------------- RFC 6960 types

/// OCSPRequest ::= SEQUENCE { tbsRequest, optionalSignature [0] EXPLICIT Signature OPTIONAL }
#[derive(Clone, Debug, Eq, PartialEq, der::Sequence)]
pub struct OcspRequest {
    pub tbs_request: TbsRequest,
    /// Not checked: requests need not be signed.
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub optional_signature: Option<Any>,
}

/// TBSRequest.
#[derive(Clone, Debug, Eq, PartialEq, der::Sequence)]
pub struct TbsRequest {
    /// DEFAULT v1 (0); accepted when present, anything else is refused.
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub version: Option<u8>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    pub requestor_name: Option<Any>,
    pub request_list: Vec<Request>,
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT", optional = "true")]
    pub request_extensions: Option<Vec<Extension>>,
}

/// Request ::= SEQUENCE { reqCert CertID, singleRequestExtensions [0] EXPLICIT OPTIONAL }
#[derive(Clone, Debug, Eq, PartialEq, der::Sequence)]
pub struct Request {
    pub req_cert: CertId,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub single_request_extensions: Option<Vec<Extension>>,
}

/// CertID.
#[derive(Clone, Debug, Eq, PartialEq, der::Sequence)]
pub struct CertId {
    pub hash_algorithm: AlgorithmIdentifierOwned,
    pub issuer_name_hash: OctetString,
    pub issuer_key_hash: OctetString,
    /// Any INTEGER, so that a foreign (even negative) serial is still a well-formed request.
    pub serial_number: Int,
}

/// OCSPResponseStatus.
#[derive(Clone, Copy, Debug, Eq, PartialEq, der::Enumerated)]
#[repr(u32)]
pub enum OcspResponseStatus {
    Successful = 0,
    MalformedRequest = 1,
    InternalError = 2,
    TryLater = 3,
    SigRequired = 5,
    Unauthorized = 6,
}

/// OCSPResponse.
#[derive(Clone, Debug, Eq, PartialEq, der::Sequence)]
pub struct OcspResponse {
    pub response_status: OcspResponseStatus,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub response_bytes: Option<ResponseBytes>,
}

/// ResponseBytes.
#[derive(Clone, Debug, Eq, PartialEq, der::Sequence)]
pub struct ResponseBytes {
    pub response_type: ObjectIdentifier,
    pub response: OctetString,
}

/// BasicOCSPResponse.
#[derive(Clone, Debug, Eq, PartialEq, der::Sequence)]
pub struct BasicOcspResponse {
    pub tbs_response_data: ResponseData,
    pub signature_algorithm: AlgorithmIdentifierOwned,
    pub signature: BitString,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub certs: Option<Vec<Certificate>>,
}

/// ResponseData (version v1 left out, as DER wants for the DEFAULT).
#[derive(Clone, Debug, Eq, PartialEq, der::Sequence)]
pub struct ResponseData {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub version: Option<u8>,
    pub responder_id: ResponderId,
    pub produced_at: GeneralizedTime,
    pub responses: Vec<SingleResponse>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    pub response_extensions: Option<Vec<Extension>>,
}

/// ResponderID ::= CHOICE { byName [1] Name, byKey [2] KeyHash } (explicit tags).
#[derive(Clone, Debug, Eq, PartialEq, der::Choice)]
pub enum ResponderId {
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", constructed = "true")]
    ByName(x509_cert::name::Name),
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT", constructed = "true")]
    ByKey(OctetString),
}

/// SingleResponse.
#[derive(Clone, Debug, Eq, PartialEq, der::Sequence)]
pub struct SingleResponse {
    pub cert_id: CertId,
    pub cert_status: CertStatus,
    pub this_update: GeneralizedTime,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub next_update: Option<GeneralizedTime>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    pub single_extensions: Option<Vec<Extension>>,
}

/// CertStatus ::= CHOICE { good [0] IMPLICIT NULL, revoked [1] IMPLICIT RevokedInfo,
/// unknown [2] IMPLICIT NULL }
#[derive(Clone, Debug, Eq, PartialEq, der::Choice)]
pub enum CertStatus {
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT")]
    Good(Null),
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", constructed = "true")]
    Revoked(RevokedInfo),
    #[asn1(context_specific = "2", tag_mode = "IMPLICIT")]
    Unknown(Null),
}

/// RevokedInfo.
#[derive(Clone, Debug, Eq, PartialEq, der::Sequence)]
pub struct RevokedInfo {
    pub revocation_time: GeneralizedTime,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub revocation_reason: Option<CrlReason>,
}

// ------------------------------------------------------------------------------- responder

/// An OCSPResponse with no responseBytes, for every status but `successful`.
pub fn status_only(status: OcspResponseStatus) -> Vec<u8> {
    let r = OcspResponse {
        response_status: status,
        response_bytes: None,
    };
    // Encoding an enumerated value alone cannot fail; the constant is its DER all the same.
    r.to_der()
        .unwrap_or_else(|_| vec![0x30, 0x03, 0x0a, 0x01, status as u8])
}

/// What a well-formed request asks.
struct Parsed {
    cert_ids: Vec<CertId>,
    nonce: Option<Extension>,
}

/// What an answer said, as `nuc_ocsp_responses_total` labels it: the certificate's status
/// for a successful answer about one certificate (`good`, `revoked`, `unknown`), `several`
/// for one about more, else the response status of the refusal.
fn outcome_of<'a>(statuses: impl IntoIterator<Item = &'a CertStatus>) -> &'static str {
    let mut statuses = statuses.into_iter();
    match (statuses.next(), statuses.next()) {
        (Some(CertStatus::Good(_)), None) => "good",
        (Some(CertStatus::Revoked(_)), None) => "revoked",
        (Some(CertStatus::Unknown(_)), None) => "unknown",
        _ => "several",
    }
}

fn refusal_name(status: OcspResponseStatus) -> &'static str {
    match status {
        OcspResponseStatus::Successful => "successful",
        OcspResponseStatus::MalformedRequest => "malformedRequest",
        OcspResponseStatus::InternalError => "internalError",
        OcspResponseStatus::TryLater => "tryLater",
        OcspResponseStatus::SigRequired => "sigRequired",
        OcspResponseStatus::Unauthorized => "unauthorized",
    }
}

/// Every label `nuc_ocsp_responses_total` takes: [`outcome_of`]'s, then [`refusal_name`]'s.
const OUTCOMES: [&str; 10] = [
    "good",
    "revoked",
    "unknown",
    "several",
    "successful",
    "malformedRequest",
    "internalError",
    "tryLater",
    "sigRequired",
    "unauthorized",
];

/// Counts one answer given (exactly once per request answered). The counters are taken from
/// the recorder once, on the first answer (the service installs its recorder before it
/// listens): looking one up by name and labels at every answer cost more than the rest of a
/// cached answer's own work (perf, issue 15).
fn answered(outcome: &'static str) {
    static COUNTERS: std::sync::OnceLock<Vec<metrics::Counter>> = std::sync::OnceLock::new();
    let counters = COUNTERS.get_or_init(|| {
        OUTCOMES
            .iter()
            .map(|o| metrics::counter!("nuc_ocsp_responses_total", "status" => *o))
            .collect()
    });
    match OUTCOMES.iter().position(|o| *o == outcome) {
        Some(i) => counters[i].increment(1),
        None => metrics::counter!("nuc_ocsp_responses_total", "status" => outcome).increment(1),
    }
}

/// A refusal answered: counted, then encoded.
fn refused(status: OcspResponseStatus) -> Vec<u8> {
    answered(refusal_name(status));
    status_only(status)
}

/// Counts a look in the response cache by a request without a nonce (counters taken once, as
/// in [`answered`]).
fn cache_lookup(hit: bool) {
    static COUNTERS: std::sync::OnceLock<[metrics::Counter; 2]> = std::sync::OnceLock::new();
    let [hits, misses] = COUNTERS.get_or_init(|| {
        [
            metrics::counter!("nuc_ocsp_cache_lookups_total", "result" => "hit"),
            metrics::counter!("nuc_ocsp_cache_lookups_total", "result" => "miss"),
        ]
    });
    if hit { hits } else { misses }.increment(1);
}

fn parse(request_der: &[u8]) -> Result<Parsed, OcspResponseStatus> {
    use OcspResponseStatus::MalformedRequest as M;
    if request_der.is_empty() || request_der.len() > MAX_REQUEST_BYTES {
        return Err(M);
    }
    let req = OcspRequest::from_der(request_der).map_err(|_| M)?;
    let tbs = req.tbs_request;
    if tbs.version.is_some_and(|v| v != 0) {
        return Err(M);
    }
    if tbs.request_list.is_empty() || tbs.request_list.len() > MAX_CERTS {
        return Err(M);
    }
    // An extension marked critical that we do not understand must not be ignored (RFC 5280
    // §4.2, by which RFC 6960 §4.4 frames its extensions): such a request is refused whole.
    let unknown_critical = |e: &Extension| e.critical && e.extn_id != ID_PKIX_OCSP_NONCE;
    if tbs
        .request_extensions
        .iter()
        .flatten()
        .any(unknown_critical)
        || tbs
            .request_list
            .iter()
            .flat_map(|r| r.single_request_extensions.iter().flatten())
            .any(|e| e.critical)
    {
        return Err(M);
    }
    // No certificate has a longer serial: refused before anything is looked up or signed.
    if tbs
        .request_list
        .iter()
        .any(|r| r.req_cert.serial_number.as_bytes().len() > MAX_SERIAL_OCTETS)
    {
        return Err(M);
    }
    let mut nonce = None;
    for ext in tbs.request_extensions.iter().flatten() {
        if ext.extn_id != ID_PKIX_OCSP_NONCE {
            continue;
        }
        if nonce.is_some() {
            return Err(M);
        }
        // RFC 8954: Nonce ::= OCTET STRING (SIZE(1..32)), inside extnValue.
        let n = OctetString::from_der(ext.extn_value.as_bytes()).map_err(|_| M)?;
        if !(1..=32).contains(&n.as_bytes().len()) {
            return Err(M);
        }
        nonce = Some(Extension {
            extn_id: ID_PKIX_OCSP_NONCE,
            critical: false,
            extn_value: ext.extn_value.clone(),
        });
    }
    Ok(Parsed {
        cert_ids: tbs.request_list.into_iter().map(|r| r.req_cert).collect(),
        nonce,
    })
}

/// The hashes of our issuing CA's name and key that CertIDs carry, for both hash algorithms
/// we accept: computed once, compared on every request.
pub struct IssuerHashes {
    sha1: (Vec<u8>, Vec<u8>),
    sha256: (Vec<u8>, Vec<u8>),
}

impl IssuerHashes {
    pub fn of(issuing: &CaIdentity) -> Self {
        let name = issuing.subject.to_der().unwrap_or_default();
        let key = issuing.spki.subject_public_key.raw_bytes();
        Self {
            sha1: (
                openssl::sha::sha1(&name).to_vec(),
                openssl::sha::sha1(key).to_vec(),
            ),
            sha256: (
                sha2::Sha256::digest(&name).to_vec(),
                sha2::Sha256::digest(key).to_vec(),
            ),
        }
    }

    /// Whether the CertID names our issuing CA (an unknown hash algorithm: no).
    fn names_us(&self, id: &CertId) -> bool {
        let alg = &id.hash_algorithm;
        // Parameters absent or NULL, both seen in the wild.
        let params_ok = alg
            .parameters
            .as_ref()
            .is_none_or(|p| p.tag() == der::Tag::Null && p.value().is_empty());
        let (name, key) = match alg.oid {
            _ if !params_ok => return false,
            o if o == ID_SHA1 => &self.sha1,
            o if o == ID_SHA256 => &self.sha256,
            _ => return false,
        };
        !name.is_empty()
            && name.as_slice() == id.issuer_name_hash.as_bytes()
            && key.as_slice() == id.issuer_key_hash.as_bytes()
    }
}

/// The serial as the store spells it (lowercase hex of the minimal positive encoding), or
/// `None` for a negative or zero INTEGER, which we never issue.
fn serial_hex(serial: &Int) -> Option<String> {
    let b = serial.as_bytes();
    if b.first().is_none_or(|f| f & 0x80 != 0) {
        return None;
    }
    let trimmed = match b {
        [0, rest @ ..] if !rest.is_empty() => rest,
        _ => b,
    };
    if trimmed.iter().all(|x| *x == 0) {
        return None;
    }
    Some(hex::encode(trimmed))
}

fn gtime(unix: i64) -> Result<GeneralizedTime, OcspResponseStatus> {
    let secs = u64::try_from(unix).map_err(|_| OcspResponseStatus::InternalError)?;
    GeneralizedTime::from_unix_duration(Duration::from_secs(secs))
        .map_err(|_| OcspResponseStatus::InternalError)
}

/// The status of one serial, read from storage now.
fn lookup(ca: OcspContext<'_>, serial: &Int) -> Result<CertStatus, OcspResponseStatus> {
    use OcspResponseStatus::InternalError as E;
    let Some(hex) = serial_hex(serial) else {
        return Ok(CertStatus::Unknown(Null));
    };
    // The database away (stopped, failing over): the client should ask again shortly.
    let status = ca.store.serial_status(&hex).map_err(|e| match e {
        nuc_store::StoreError::Unavailable(_) => OcspResponseStatus::TryLater,
        _ => E,
    })?;
    Ok(match status {
        Some(nuc_store::SerialStatus {
            revocation: Some((reason, revoked_at)),
            ..
        }) => CertStatus::Revoked(RevokedInfo {
            revocation_time: gtime(revoked_at)?,
            // RFC 5280: unspecified (0) is better left out.
            revocation_reason: crate::reason::entry_reason(reason).flatten(),
        }),
        Some(st) if st.issued => CertStatus::Good(Null),
        _ => CertStatus::Unknown(Null),
    })
}

/// Signs a BasicOCSPResponse with the delegated OCSP signer and wraps it.
fn sign(
    ca: OcspContext<'_>,
    responses: Vec<SingleResponse>,
    nonce: Option<Extension>,
    now: i64,
) -> Result<Vec<u8>, OcspResponseStatus> {
    use OcspResponseStatus::InternalError as E;
    let signer = ca.ca.responder();
    let key_hash = openssl::sha::sha1(signer.spki.subject_public_key.raw_bytes());
    let data = ResponseData {
        version: None,
        responder_id: ResponderId::ByKey(OctetString::new(key_hash.to_vec()).map_err(|_| E)?),
        produced_at: gtime(now)?,
        responses,
        response_extensions: nonce.map(|n| vec![n]),
    };
    let tbs_der = data.to_der().map_err(|_| E)?;
    let signature = ca.ca.sign_ocsp(&tbs_der).map_err(|e| {
        // Saturation is the bound doing its work: the client is told to come back.
        if e.reason() == nuc_core::ReasonCode::Unavailable {
            tracing::debug!(error = %e, "OCSP signing turned away");
            return OcspResponseStatus::TryLater;
        }
        tracing::error!(error = %e, "OCSP signing failed");
        E
    })?;
    let basic = BasicOcspResponse {
        tbs_response_data: data,
        signature_algorithm: signer.algorithm.signature_algorithm(),
        signature: BitString::from_bytes(&signature).map_err(|_| E)?,
        certs: Some(vec![
            Certificate::from_der(&signer.cert_der).map_err(|_| E)?,
        ]),
    };
    OcspResponse {
        response_status: OcspResponseStatus::Successful,
        response_bytes: Some(ResponseBytes {
            response_type: ID_PKIX_OCSP_BASIC,
            response: OctetString::new(basic.to_der().map_err(|_| E)?).map_err(|_| E)?,
        }),
    }
    .to_der()
    .map_err(|_| E)
}

/// The signed answer and what it said (see [`outcome_of`]).
fn respond_inner(
    ca: OcspContext<'_>,
    issuer: &IssuerHashes,
    parsed: Parsed,
    now: i64,
    validity: i64,
) -> Result<(Vec<u8>, &'static str), OcspResponseStatus> {
    if parsed.cert_ids.iter().any(|id| !issuer.names_us(id)) {
        return Err(OcspResponseStatus::Unauthorized);
    }
    let mut responses = Vec::with_capacity(parsed.cert_ids.len());
    for id in parsed.cert_ids {
        let status = lookup(ca, &id.serial_number)?;
        responses.push(SingleResponse {
            cert_id: id,
            cert_status: status,
            this_update: gtime(now)?,
            next_update: Some(gtime(now.saturating_add(validity))?),
            single_extensions: None,
        });
    }
    let outcome = outcome_of(responses.iter().map(|r| &r.cert_status));
    Ok((sign(ca, responses, parsed.nonce, now)?, outcome))
}

/// Answers one DER OCSPRequest at time `now` (Unix seconds), with responses valid for
/// [`DEFAULT_VALIDITY_SECS`]. Always a DER OCSPResponse; see the module documentation.
pub fn respond(ca: OcspContext<'_>, request_der: &[u8], now: i64) -> Vec<u8> {
    respond_with_validity(ca, request_der, now, DEFAULT_VALIDITY_SECS)
}

/// [`respond`] with nextUpdate = now + `validity` seconds.
pub fn respond_with_validity(
    ca: OcspContext<'_>,
    request_der: &[u8],
    now: i64,
    validity: i64,
) -> Vec<u8> {
    let issuer = IssuerHashes::of(ca.ca.issuing());
    match parse(request_der).and_then(|p| respond_inner(ca, &issuer, p, now, validity)) {
        Ok((der, outcome)) => {
            answered(outcome);
            der
        }
        Err(status) => refused(status),
    }
}

// ----------------------------------------------------------------------------------- cache

/// What one cached response costs beyond its key and DER: the map's slot and its spare room,
/// the allocators' headers of key and response, the time and sequence number.
pub const ENTRY_OVERHEAD_BYTES: usize = 192;
/// What one place in the eviction order costs (a shared key pointer and a sequence number, with
/// the queue's spare room).
pub const SLOT_OVERHEAD_BYTES: usize = 48;

/// Pre-signed responses for requests without a nonce, at most `max_bytes` of them.
///
/// The key is the request's CertIDs *and* the status of each serial as read from storage on
/// this very request (cheap point lookups), so a revocation changes the key at once: a stale
/// `good` can never be served after a revocation. Entries are reused for half their
/// validity, then signed again.
///
/// Attackers choose CertIDs, so the cap counts bytes, not entries: key, DER and
/// [`ENTRY_OVERHEAD_BYTES`] per entry, [`SLOT_OVERHEAD_BYTES`] per place in the eviction
/// order. When a new response would pass the cap, the oldest entries go first; a response
/// larger than the whole cap is served but not kept.
pub struct OcspCache {
    validity: i64,
    max_bytes: usize,
    entries: Mutex<Entries>,
    issuer: std::sync::OnceLock<IssuerHashes>,
}

/// The cached responses and their eviction order.
#[derive(Default)]
struct Entries {
    map: HashMap<Arc<[u8]>, Entry>,
    /// Keys in the order they were (re)signed, oldest first. A key signed again leaves its old
    /// place behind, told apart by its sequence number and dropped when it reaches the front.
    order: VecDeque<(Arc<[u8]>, u64)>,
    /// What `map` and `order` cost, as counted against the cap.
    bytes: usize,
    next_seq: u64,
}

struct Entry {
    /// When it was signed (Unix seconds).
    at: i64,
    /// Shared with every answer that sends it: a hit costs a reference count, not a copy.
    der: Bytes,
    seq: u64,
}

fn entry_cost(key: &[u8], der: &[u8]) -> usize {
    key.len()
        .saturating_add(der.len())
        .saturating_add(ENTRY_OVERHEAD_BYTES)
}

impl Entries {
    /// Keeps `der` under `key`, then evicts the oldest until the total is within `max_bytes`.
    fn insert(&mut self, key: Vec<u8>, at: i64, der: Bytes, max_bytes: usize) {
        let cost = entry_cost(&key, &der).saturating_add(SLOT_OVERHEAD_BYTES);
        if cost > max_bytes {
            return;
        }
        // A key signed again keeps its one shared allocation.
        let key: Arc<[u8]> = match self.map.remove_entry(key.as_slice()) {
            Some((k, old)) => {
                self.bytes = self.bytes.saturating_sub(entry_cost(&k, &old.der));
                k
            }
            None => key.into(),
        };
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.bytes = self.bytes.saturating_add(cost);
        self.order.push_back((key.clone(), seq));
        self.map.insert(key, Entry { at, der, seq });
        while self.bytes > max_bytes {
            let Some((oldest, seq)) = self.order.pop_front() else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(SLOT_OVERHEAD_BYTES);
            if self.map.get(&oldest).is_some_and(|e| e.seq == seq)
                && let Some(e) = self.map.remove(&oldest)
            {
                self.bytes = self.bytes.saturating_sub(entry_cost(&oldest, &e.der));
            }
        }
    }
}

impl OcspCache {
    /// A cache of responses valid `validity` seconds each, holding at most `max_bytes`.
    pub fn new(validity: i64, max_bytes: usize) -> Self {
        Self {
            validity,
            max_bytes,
            entries: Mutex::new(Entries::default()),
            issuer: std::sync::OnceLock::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of responses held.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held, as counted against the cap (see the type's documentation).
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// The byte cap.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    fn issuer(&self, ca: OcspContext<'_>) -> &IssuerHashes {
        self.issuer
            .get_or_init(|| IssuerHashes::of(ca.ca.issuing()))
    }

    fn fresh_for(&self) -> i64 {
        (self.validity / 2).max(0)
    }

    /// The answer to `request_der` when it needs no signature: a fresh cached response for
    /// exactly these serials in exactly their current status, or a refusal (malformed, not
    /// about our CA), which is unsigned. `None` when something must be signed (a nonce, a
    /// miss). It only reads storage (one point lookup per serial), so a server can answer
    /// these at once and send only the rest to where signing may block.
    pub fn cached(&self, ca: OcspContext<'_>, request_der: &[u8], now: i64) -> Option<Bytes> {
        let parsed = match parse(request_der) {
            Ok(p) => p,
            Err(s) => return Some(refused(s).into()),
        };
        if parsed
            .cert_ids
            .iter()
            .any(|id| !self.issuer(ca).names_us(id))
        {
            return Some(refused(OcspResponseStatus::Unauthorized).into());
        }
        if parsed.nonce.is_some() {
            return None;
        }
        // A miss is counted by the `respond` that follows it, not here.
        let (key, outcome) = self.key(ca, &parsed).ok()?;
        let entries = self.lock();
        match entries.map.get(key.as_slice()) {
            Some(e) if e.at <= now && now - e.at < self.fresh_for() => {
                cache_lookup(true);
                answered(outcome);
                Some(e.der.clone())
            }
            _ => None,
        }
    }

    /// [`respond`], served from the cache when the request has no nonce and nothing about
    /// the serials asked changed.
    pub fn respond(&self, ca: OcspContext<'_>, request_der: &[u8], now: i64) -> Bytes {
        let parsed = match parse(request_der) {
            Ok(p) => p,
            Err(s) => return refused(s).into(),
        };
        let issuer = self.issuer(ca);
        if parsed.nonce.is_some() {
            return match respond_inner(ca, issuer, parsed, now, self.validity) {
                Ok((der, outcome)) => {
                    answered(outcome);
                    der.into()
                }
                Err(s) => refused(s).into(),
            };
        }
        let (key, outcome) = match self.key(ca, &parsed) {
            Ok(k) => k,
            Err(s) => return refused(s).into(),
        };
        let fresh_for = self.fresh_for();
        {
            let entries = self.lock();
            if let Some(e) = entries.map.get(key.as_slice())
                && e.at <= now
                && now - e.at < fresh_for
            {
                cache_lookup(true);
                answered(outcome);
                return e.der.clone();
            }
        }
        cache_lookup(false);
        let der = match respond_inner(ca, issuer, parsed, now, self.validity) {
            Ok((d, outcome)) => {
                answered(outcome);
                Bytes::from(d)
            }
            Err(s) => return refused(s).into(),
        };
        self.lock().insert(key, now, der.clone(), self.max_bytes);
        der
    }

    /// CertIDs and current status of each serial, as one byte string.
    /// Also what an answer from it says (see [`outcome_of`]).
    fn key(
        &self,
        ca: OcspContext<'_>,
        parsed: &Parsed,
    ) -> Result<(Vec<u8>, &'static str), OcspResponseStatus> {
        let issuer = self.issuer(ca);
        let mut key = Vec::new();
        // What the answer says, tracked as the key is built: no list on the hot path.
        let mut outcome = "several";
        for id in &parsed.cert_ids {
            let status = if issuer.names_us(id) {
                lookup(ca, &id.serial_number)?
            } else {
                CertStatus::Unknown(Null)
            };
            id.encode_to_vec(&mut key)
                .map_err(|_| OcspResponseStatus::InternalError)?;
            status
                .encode_to_vec(&mut key)
                .map_err(|_| OcspResponseStatus::InternalError)?;
            if parsed.cert_ids.len() == 1 {
                outcome = outcome_of([&status]);
            }
        }
        Ok((key, outcome))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_only_is_der() {
        for s in [
            OcspResponseStatus::MalformedRequest,
            OcspResponseStatus::InternalError,
            OcspResponseStatus::Unauthorized,
        ] {
            let der = status_only(s);
            assert_eq!(der, vec![0x30, 0x03, 0x0a, 0x01, s as u8]);
            assert_eq!(OcspResponse::from_der(&der).unwrap().response_status, s);
        }
    }

    #[test]
    fn garbage_is_malformed() {
        for bytes in [&b""[..], b"\x30", b"\x30\x00", b"hello", &[0u8; 70_000][..]] {
            assert!(matches!(
                parse(bytes),
                Err(OcspResponseStatus::MalformedRequest)
            ));
        }
    }

    #[test]
    fn serial_spelling() {
        let i = |b: &[u8]| Int::new(b).unwrap();
        assert_eq!(serial_hex(&i(&[0x01, 0xab])).as_deref(), Some("01ab"));
        assert_eq!(serial_hex(&i(&[0x00, 0x80])).as_deref(), Some("80"));
        assert_eq!(serial_hex(&i(&[0x80])), None);
        assert_eq!(serial_hex(&i(&[0x00])), None);
    }
}
