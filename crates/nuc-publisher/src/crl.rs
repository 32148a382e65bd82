//! CRLs (RFC 5280 §5): a complete CRL and a delta CRL, signed in the HSM by the issuing CA.
//!
//! [`publish`] numbers both from the database (one increasing sequence shared by complete and
//! delta CRLs, §5.2.3), builds them from the revocations as SQLite yields them, has the HSM
//! sign them, and records them with their `crl.published` audit records in one durable
//! change. It writes no file and serves nothing: the caller gets the DER and does that.
//!
//! Memory: the list of revoked certificates is DER-encoded entry by entry into one buffer
//! while the revocations are read (a few dozen bytes per entry, no row is kept), then wrapped
//! into the TBSCertList; nothing else grows with the number of revocations.
//!
//! Delta rule: the delta's base (deltaCRLIndicator) is the complete CRL published before this
//! call, and the delta lists every certificate revoked at or after that CRL's thisUpdate,
//! minus [`DELTA_OVERLAP_SECS`] (a revocation committed while the base was being built must not
//! fall between the two; listing a certificate the base already lists is harmless). A relying
//! party may apply it to that base or to any later complete CRL, including the one published
//! with it (§5.2.4). On the very first publication the base is the new complete CRL itself.

use std::time::{Duration, UNIX_EPOCH};

use const_oid::AssociatedOid;
use const_oid::db::rfc5280::ID_CE_INVALIDITY_DATE;
use der::asn1::{AnyRef, GeneralizedTime, OctetString};
use der::{Encode, Sequence, Tag};
use nuc_core::RevocationReason;

use crate::CrlContext;
use nuc_store::{CrlKind, CrlRow};
use spki::AlgorithmIdentifierOwned;
use x509_cert::Version;
use x509_cert::certificate::Rfc5280;
use x509_cert::crl::RevokedCert;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, BaseCrlNumber, CrlNumber, FreshestCrl};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Time;

/// How far before its base's thisUpdate a delta CRL starts listing revocations.
pub const DELTA_OVERLAP_SECS: i64 = 300;

/// The CRLs of one publication, signed and recorded.
#[derive(Debug, Clone)]
pub struct Published {
    /// The complete CRL (DER).
    pub full: Vec<u8>,
    /// The delta CRL (DER).
    pub delta: Vec<u8>,
    pub full_number: i64,
    pub delta_number: i64,
    /// The complete CRL the delta updates (its deltaCRLIndicator).
    pub base_number: i64,
    /// thisUpdate of both.
    pub this_update: i64,
    pub full_next_update: i64,
    pub delta_next_update: i64,
    pub full_entries: i64,
    pub delta_entries: i64,
}

/// Why a publication failed. Nothing was recorded when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("storage: {0}")]
    Store(#[from] nuc_store::StoreError),
    #[error("HSM: {0}")]
    Hsm(#[from] nuc_ca::CaError),
    #[error("encoding: {0}")]
    Encoding(#[from] der::Error),
    #[error("revocation of {serial}: {detail}")]
    BadRevocation { serial: String, detail: String },
    #[error("{0}")]
    Invalid(String),
    /// The CRL about to be signed does not say what it should (a bug): nothing was signed.
    #[error("pre-signing lint: {0}")]
    LintFailed(String),
}

/// TBSCertList, field for field as RFC 5280 §5.1 lays it out; the revoked list is given as the
/// DER of its SEQUENCE OF, built entry by entry.
#[derive(Sequence)]
struct TbsCertListOut<'a> {
    version: Version,
    signature: AlgorithmIdentifierOwned,
    issuer: Name,
    this_update: Time,
    next_update: Option<Time>,
    revoked_certificates: Option<AnyRef<'a>>,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    crl_extensions: Option<Vec<Extension>>,
}

fn time(unix: i64) -> Result<Time, der::Error> {
    Time::try_from(UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64))
}

fn ext<T: Encode + AssociatedOid>(value: &T, critical: bool) -> Result<Extension, der::Error> {
    Ok(Extension {
        extn_id: T::OID,
        critical,
        extn_value: OctetString::new(value.to_der()?)?,
    })
}

/// Appends the DER of one revokedCertificates entry to `out`.
fn encode_entry(
    out: &mut Vec<u8>,
    serial_hex: &str,
    reason: RevocationReason,
    revoked_at: i64,
    invalidity_date: Option<i64>,
) -> Result<(), PublishError> {
    let bad = |detail: String| PublishError::BadRevocation {
        serial: serial_hex.to_owned(),
        detail,
    };
    let serial = hex::decode(serial_hex).map_err(|e| bad(format!("serial is not hex: {e}")))?;
    let mut exts = Vec::new();
    match crate::reason::entry_reason(reason) {
        // unspecified: RFC 5280 §5.3.1 says to omit the reasonCode rather than send it.
        Some(None) => {}
        Some(Some(r)) => exts.push(ext(&r, false)?),
        None => return Err(bad(format!("{reason} is not a reason to revoke"))),
    }
    if let Some(d) = invalidity_date {
        let t = GeneralizedTime::from_unix_duration(Duration::from_secs(d.max(0) as u64))?;
        exts.push(Extension {
            extn_id: ID_CE_INVALIDITY_DATE,
            critical: false,
            extn_value: OctetString::new(t.to_der()?)?,
        });
    }
    RevokedCert {
        serial_number: SerialNumber::<Rfc5280>::new(&serial)?,
        revocation_date: time(revoked_at)?,
        crl_entry_extensions: (!exts.is_empty()).then_some(exts),
    }
    .encode_to_vec(out)?;
    Ok(())
}

/// One CRL to build: its number, times, and (for a delta) its base and start.
struct Spec {
    number: i64,
    this_update: i64,
    next_update: i64,
    /// `Some((base number, revoked since))` for a delta.
    delta: Option<(i64, i64)>,
}

/// Builds, signs and returns one CRL with its entry count.
fn build(ca: CrlContext<'_>, spec: &Spec) -> Result<(Vec<u8>, i64), PublishError> {
    let mut list = Vec::new();
    let mut entries = 0i64;
    let mut failed = None;
    ca.store
        .for_each_revocation(spec.delta.map(|(_, since)| since), &mut |e| {
            if failed.is_none() {
                match encode_entry(
                    &mut list,
                    e.serial_hex,
                    e.reason,
                    e.revoked_at,
                    e.invalidity_date,
                ) {
                    Ok(()) => entries += 1,
                    Err(e) => failed = Some(e),
                }
            }
        })?;
    if let Some(e) = failed {
        return Err(e);
    }
    let number = u64::try_from(spec.number)
        .map_err(|_| PublishError::Invalid(format!("CRL number {} is negative", spec.number)))?;
    let mut exts = vec![
        ext(
            &AuthorityKeyIdentifier {
                key_identifier: Some(OctetString::new(ca.ca.issuing().key_id.clone())?),
                authority_cert_issuer: None,
                authority_cert_serial_number: None,
            },
            false,
        )?,
        ext(&CrlNumber::try_from(number)?, false)?,
    ];
    match spec.delta {
        Some((base, _)) => {
            let base = u64::try_from(base).map_err(|_| {
                PublishError::Invalid(format!("base CRL number {base} is negative"))
            })?;
            exts.push(ext(&BaseCrlNumber(der::asn1::Uint::try_from(base)?), true)?);
        }
        None => {
            // Where relying parties find the delta that updates this CRL (§5.2.6).
            let url = ca.ca.publication().fill("{crl_delta}");
            exts.push(ext(
                &FreshestCrl(vec![DistributionPoint {
                    distribution_point: Some(DistributionPointName::FullName(vec![
                        GeneralName::UniformResourceIdentifier(der::asn1::Ia5String::new(&url)?),
                    ])),
                    reasons: None,
                    crl_issuer: None,
                }]),
                false,
            )?);
        }
    }
    let algorithm = ca.ca.issuing().algorithm.signature_algorithm();
    let tbs = TbsCertListOut {
        version: Version::V2,
        signature: algorithm.clone(),
        issuer: ca.ca.issuing().subject.clone(),
        this_update: time(spec.this_update)?,
        next_update: Some(time(spec.next_update)?),
        // RFC 5280 §5.1.2.6: no revoked certificates, no list (not an empty one).
        revoked_certificates: if list.is_empty() {
            None
        } else {
            Some(AnyRef::new(Tag::Sequence, &list)?)
        },
        crl_extensions: Some(exts),
    }
    .to_der()?;
    drop(list);
    crate::crl_lint::lint(
        &tbs,
        &crate::crl_lint::Expected {
            issuer: &ca.ca.issuing().subject,
            issuer_key_id: &ca.ca.issuing().key_id,
            signature: &algorithm,
            number,
            base: spec.delta.map(|(b, _)| b as u64),
            this_update: spec.this_update,
            next_update: spec.next_update,
            entries,
            freshest_crl: spec.delta.is_none(),
        },
    )
    .map_err(|f| PublishError::LintFailed(f.join("; ")))?;
    let signature = ca.ca.sign_crl(&tbs)?;
    Ok((nuc_ca::tbs::assemble(&tbs, algorithm, &signature)?, entries))
}

fn row(spec: &Spec, der: Vec<u8>, entries: i64) -> CrlRow {
    CrlRow {
        crl_number: spec.number,
        kind: if spec.delta.is_some() {
            CrlKind::Delta
        } else {
            CrlKind::Full
        },
        base_crl_number: spec.delta.map(|(b, _)| b),
        this_update: spec.this_update,
        next_update: spec.next_update,
        entries,
        sha256: hex::encode(openssl::sha::sha256(&der)),
        der,
        published_at: 0,
    }
}

/// How long the CRLs of a publication are valid. A delta may be given a shorter life than the
/// complete CRL: it is published again after each revocation and with each complete CRL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub full_secs: i64,
    pub delta_secs: i64,
}

impl Validity {
    /// Both CRLs valid for `secs`.
    pub fn same(secs: i64) -> Self {
        Self {
            full_secs: secs,
            delta_secs: secs,
        }
    }
}

fn next_update(now: i64, secs: i64, what: &str) -> Result<i64, PublishError> {
    if secs <= 0 {
        return Err(PublishError::Invalid(format!(
            "{what} validity must be positive, got {secs} s"
        )));
    }
    now.checked_add(secs)
        .ok_or_else(|| PublishError::Invalid(format!("{what} nextUpdate overflows")))
}

/// The delta of a base: every revocation since the base's thisUpdate, less the overlap.
fn delta_spec(number: i64, now: i64, next_update: i64, base: (i64, i64)) -> Spec {
    Spec {
        number,
        this_update: now,
        next_update,
        delta: Some((base.0, base.1 - DELTA_OVERLAP_SECS)),
    }
}

/// Builds and signs a complete CRL and a delta CRL valid from `now` for `validity_secs`, and
/// records both (numbers, bytes, audit) as the built-in publisher. See [`publish_as`].
pub fn publish(
    ca: CrlContext<'_>,
    now: i64,
    validity_secs: i64,
) -> Result<Published, PublishError> {
    publish_as(ca, now, Validity::same(validity_secs), "system:publisher")
}

/// Builds and signs a complete CRL and a delta CRL valid from `now`, and records both
/// (numbers, bytes, one `crl.published` audit record each, naming `actor`). Returns their DER
/// for the caller to publish.
pub fn publish_as(
    ca: CrlContext<'_>,
    now: i64,
    validity: Validity,
    actor: &str,
) -> Result<Published, PublishError> {
    let full_next = next_update(now, validity.full_secs, "CRL")?;
    let delta_next = next_update(now, validity.delta_secs, "delta CRL")?;
    let base = ca.store.latest_full_crl_info()?;
    let full_number = ca.store.next_crl_number()?;
    let full = Spec {
        number: full_number,
        this_update: now,
        next_update: full_next,
        delta: None,
    };
    let base = base
        .map(|b| (b.crl_number, b.this_update))
        .unwrap_or((full_number, now));
    let delta = delta_spec(full_number + 1, now, delta_next, base);
    let (full_der, full_entries) = build(ca, &full)?;
    let (delta_der, delta_entries) = build(ca, &delta)?;
    // The numbers are taken only here: if another publisher recorded them first, the database
    // refuses these CRLs and nothing of this call is published.
    let mut rows = ca
        .store
        .record_crls(
            vec![
                row(&full, full_der, full_entries),
                row(&delta, delta_der, delta_entries),
            ],
            actor,
        )?
        .into_iter();
    let (Some(full_row), Some(delta_row)) = (rows.next(), rows.next()) else {
        return Err(PublishError::Invalid(
            "the store lost a recorded CRL".into(),
        ));
    };
    tracing::info!(
        full = full_number,
        delta = delta.number,
        base = base.0,
        entries = full_entries,
        delta_entries,
        %actor,
        "CRLs published"
    );
    Ok(Published {
        full: full_row.der,
        delta: delta_row.der,
        full_number,
        delta_number: delta.number,
        base_number: base.0,
        this_update: now,
        full_next_update: full_next,
        delta_next_update: delta_next,
        full_entries,
        delta_entries,
    })
}

/// A delta CRL published on its own.
#[derive(Debug, Clone)]
pub struct PublishedDelta {
    pub der: Vec<u8>,
    pub number: i64,
    /// The complete CRL it updates (its deltaCRLIndicator).
    pub base_number: i64,
    pub this_update: i64,
    pub next_update: i64,
    pub entries: i64,
}

/// Builds, signs and records a delta CRL alone, against the latest complete CRL: what the
/// service publishes right after a revocation, so that CRL users learn of it without waiting
/// for the next complete CRL. `None` when no complete CRL exists yet (publish both first).
pub fn publish_delta(
    ca: CrlContext<'_>,
    now: i64,
    delta_validity_secs: i64,
    actor: &str,
) -> Result<Option<PublishedDelta>, PublishError> {
    let next = next_update(now, delta_validity_secs, "delta CRL")?;
    let Some(base) = ca.store.latest_full_crl_info()? else {
        return Ok(None);
    };
    let number = ca.store.next_crl_number()?;
    let spec = delta_spec(number, now, next, (base.crl_number, base.this_update));
    let (der, entries) = build(ca, &spec)?;
    let der = ca
        .store
        .record_crls(vec![row(&spec, der, entries)], actor)?
        .pop()
        .map(|r| r.der)
        .ok_or_else(|| PublishError::Invalid("the store lost a recorded CRL".into()))?;
    tracing::info!(delta = number, base = base.crl_number, entries, %actor, "delta CRL published");
    Ok(Some(PublishedDelta {
        der,
        number,
        base_number: base.crl_number,
        this_update: now,
        next_update: next,
        entries,
    }))
}

/// The root CA's CRL: the root certifies only the issuing CA, and revoking that is a ceremony
/// outside this service, so the list is empty. It is signed by the root key, so it fails with
/// the CA's `RootKeyOffline` when the CA was opened without it. The caller numbers it (the
/// ceremony keeps the numbers increasing; nothing here stores a sequence).
pub fn root_crl(
    ca: CrlContext<'_>,
    number: u64,
    this_update: i64,
    next_update: i64,
) -> Result<Vec<u8>, PublishError> {
    if next_update <= this_update {
        return Err(PublishError::Invalid(
            "root CRL: nextUpdate must follow thisUpdate".into(),
        ));
    }
    if this_update < 0 {
        return Err(PublishError::Invalid(format!(
            "root CRL: thisUpdate {this_update} is before 1970"
        )));
    }
    let exts = vec![
        ext(
            &AuthorityKeyIdentifier {
                key_identifier: Some(OctetString::new(ca.ca.root().key_id.clone())?),
                authority_cert_issuer: None,
                authority_cert_serial_number: None,
            },
            false,
        )?,
        ext(&CrlNumber::try_from(number)?, false)?,
    ];
    let algorithm = ca.ca.root().algorithm.signature_algorithm();
    let tbs = TbsCertListOut {
        version: Version::V2,
        signature: algorithm.clone(),
        issuer: ca.ca.root().subject.clone(),
        this_update: time(this_update)?,
        next_update: Some(time(next_update)?),
        revoked_certificates: None,
        crl_extensions: Some(exts),
    }
    .to_der()?;
    crate::crl_lint::lint(
        &tbs,
        &crate::crl_lint::Expected {
            issuer: &ca.ca.root().subject,
            issuer_key_id: &ca.ca.root().key_id,
            signature: &algorithm,
            number,
            base: None,
            this_update,
            next_update,
            entries: 0,
            freshest_crl: false,
        },
    )
    .map_err(|f| PublishError::LintFailed(f.join("; ")))?;
    let signature = ca.ca.sign_root_crl(&tbs)?;
    Ok(nuc_ca::tbs::assemble(&tbs, algorithm, &signature)?)
}

#[cfg(test)]
mod lint_tests {
    //! The pre-signing lint says no: each test builds a TBSCertList that is wrong in one way.

    use super::*;
    use crate::crl_lint::{Expected, lint};
    use x509_cert::name::Name;

    const NOW: i64 = 1_800_000_000;

    fn name() -> Name {
        use std::str::FromStr;
        Name::from_str("CN=Test CA,C=KZ").unwrap()
    }

    fn alg() -> AlgorithmIdentifierOwned {
        nuc_hsm::KeyAlgorithm::EcdsaP256.signature_algorithm()
    }

    /// A TBSCertList numbered `number` listing `entries` (reason, revoked at).
    fn tbs(number: u64, entries: &[(i64, i64)], delta_base: Option<u64>) -> Vec<u8> {
        let mut list = Vec::new();
        for (i, (reason, at)) in entries.iter().enumerate() {
            let reason = RevocationReason::from_code(*reason).unwrap();
            encode_entry(&mut list, &format!("{:040x}", i + 1), reason, *at, None).unwrap();
        }
        let mut exts = vec![
            ext(
                &AuthorityKeyIdentifier {
                    key_identifier: Some(OctetString::new(vec![7; 20]).unwrap()),
                    authority_cert_issuer: None,
                    authority_cert_serial_number: None,
                },
                false,
            )
            .unwrap(),
            ext(&CrlNumber::try_from(number).unwrap(), false).unwrap(),
        ];
        if let Some(b) = delta_base {
            exts.push(ext(&BaseCrlNumber(der::asn1::Uint::try_from(b).unwrap()), true).unwrap());
        }
        TbsCertListOut {
            version: Version::V2,
            signature: alg(),
            issuer: name(),
            this_update: time(NOW).unwrap(),
            next_update: Some(time(NOW + 3600).unwrap()),
            revoked_certificates: (!list.is_empty())
                .then(|| AnyRef::new(Tag::Sequence, &list).unwrap()),
            crl_extensions: Some(exts),
        }
        .to_der()
        .unwrap()
    }

    fn expected<'a>(
        name: &'a Name,
        alg: &'a AlgorithmIdentifierOwned,
        number: u64,
        entries: i64,
        base: Option<u64>,
    ) -> Expected<'a> {
        Expected {
            issuer: name,
            issuer_key_id: &[7; 20],
            signature: alg,
            number,
            base,
            this_update: NOW,
            next_update: NOW + 3600,
            entries,
            freshest_crl: false,
        }
    }

    #[test]
    fn a_right_crl_passes_also_past_number_127() {
        let (n, a) = (name(), alg());
        for number in [1, 127, 128, 255, 256, 70_000] {
            lint(
                &tbs(number, &[(1, NOW - 5), (4, NOW)], None),
                &expected(&n, &a, number, 2, None),
            )
            .unwrap();
        }
        lint(&tbs(9, &[], Some(8)), &expected(&n, &a, 9, 0, Some(8))).unwrap();
    }

    #[test]
    fn what_it_finds() {
        let (n, a) = (name(), alg());
        let findings = |der: Vec<u8>, want: Expected<'_>| lint(&der, &want).unwrap_err().join("; ");
        assert!(findings(tbs(5, &[], None), expected(&n, &a, 6, 0, None)).contains("cRLNumber"));
        assert!(
            findings(tbs(5, &[(1, NOW)], None), expected(&n, &a, 5, 2, None)).contains("expected")
        );
        assert!(
            findings(tbs(5, &[(1, NOW + 1)], None), expected(&n, &a, 5, 1, None))
                .contains("after the CRL's thisUpdate")
        );
        assert!(
            findings(tbs(5, &[], None), expected(&n, &a, 5, 0, Some(4)))
                .contains("deltaCRLIndicator")
        );
        assert!(
            findings(tbs(5, &[], Some(4)), expected(&n, &a, 5, 0, None))
                .contains("deltaCRLIndicator")
        );
        let other = nuc_hsm::KeyAlgorithm::Rsa { bits: 2048 }.signature_algorithm();
        assert!(
            findings(tbs(5, &[], None), expected(&n, &other, 5, 0, None))
                .contains("signature algorithm")
        );
        assert!(lint(b"garbage", &expected(&n, &a, 5, 0, None)).is_err());
    }
}
