//! CRLs (RFC 5280 §5): a complete CRL and a delta CRL, signed in the HSM by the issuing CA.
//!
//! [`publish`] numbers both from the database (one increasing sequence shared by complete and
//! delta CRLs, §5.2.3), builds them from the revocations as the store yields them, has the HSM
//! sign them, and records them (bytes in pieces) with their `crl.published` audit records in
//! one durable change. It serves nothing: the caller reads the pieces from the store.
//!
//! Memory does not grow with the number of revocations: the list is spooled to a temporary
//! file, hashed and linted as it is read back, and the HSM signs the digest (see
//! [`crate::crl_build`]).
//!
//! Delta rule: the delta's base (deltaCRLIndicator) is the complete CRL published before this
//! call, and the delta lists every certificate revoked at or after that CRL's thisUpdate,
//! minus [`DELTA_OVERLAP_SECS`] (a revocation committed while the base was being built must not
//! fall between the two; listing a certificate the base already lists is harmless). A relying
//! party may apply it to that base or to any later complete CRL, including the one published
//! with it (§5.2.4). On the very first publication the base is the new complete CRL itself.

use const_oid::AssociatedOid;
use der::Encode;
use der::asn1::OctetString;

use crate::CrlContext;
use crate::crl_build::{Built, Frame, Plan};
use nuc_store::{CrlKind, CrlRow, NewCrl};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, BaseCrlNumber, CrlNumber, FreshestCrl};

/// How far before its base's thisUpdate a delta CRL starts listing revocations.
pub const DELTA_OVERLAP_SECS: i64 = 300;

/// The CRLs of one publication, signed and recorded (their bytes are in the store:
/// [`nuc_store::PublicationStore::crl_chunk`]).
#[derive(Debug, Clone)]
pub struct Published {
    /// The complete CRL as recorded.
    pub full: CrlRow,
    /// The delta CRL as recorded.
    pub delta: CrlRow,
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
    /// The temporary file the revoked list is spooled to failed (disk full?): nothing signed.
    #[error("spooling the revoked list to a temporary file: {0}")]
    Spool(String),
}

fn ext<T: Encode + AssociatedOid>(value: &T, critical: bool) -> Result<Extension, der::Error> {
    Ok(Extension {
        extn_id: T::OID,
        critical,
        extn_value: OctetString::new(value.to_der()?)?,
    })
}

/// One CRL to build: its number, times, and (for a delta) its base and start.
struct Spec {
    number: i64,
    this_update: i64,
    next_update: i64,
    /// `Some((base number, revoked since))` for a delta.
    delta: Option<(i64, i64)>,
}

/// Builds and signs one CRL.
fn build(ca: CrlContext<'_>, spec: &Spec) -> Result<Built, PublishError> {
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
    let issuing = ca.ca.issuing();
    let algorithm = issuing.algorithm.signature_algorithm();
    let frame = Frame::new(
        &algorithm,
        &issuing.subject,
        spec.this_update,
        spec.next_update,
        exts,
    )?;
    crate::crl_build::build(
        ca,
        Plan {
            frame,
            expected: crate::crl_lint::Expected {
                issuer: &issuing.subject,
                issuer_key_id: &issuing.key_id,
                signature: &algorithm,
                number,
                base: spec.delta.map(|(b, _)| b as u64),
                this_update: spec.this_update,
                next_update: spec.next_update,
                // Counted by the build: the lint checks the list holds as many as were spooled.
                entries: 0,
                freshest_crl: spec.delta.is_none(),
            },
            since: spec.delta.map(|(_, since)| since),
        },
    )
}

/// The CRL handed to the store: its row and its bytes.
fn record(spec: &Spec, built: Built) -> NewCrl {
    NewCrl {
        row: CrlRow {
            crl_number: spec.number,
            kind: if spec.delta.is_some() {
                CrlKind::Delta
            } else {
                CrlKind::Full
            },
            base_crl_number: spec.delta.map(|(b, _)| b),
            this_update: spec.this_update,
            next_update: spec.next_update,
            entries: built.entries,
            size: built.size,
            sha256: built.sha256,
            published_at: 0,
        },
        der: built.der,
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
/// (numbers, bytes, one `crl.published` audit record each, naming `actor`). Returns the rows
/// recorded; the bytes are served from the store.
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
    let full_built = build(ca, &full)?;
    let delta_built = build(ca, &delta)?;
    // The numbers are taken only here: if another publisher recorded them first, the database
    // refuses these CRLs and nothing of this call is published.
    let mut rows = ca
        .store
        .record_crls(
            vec![record(&full, full_built), record(&delta, delta_built)],
            actor,
        )?
        .into_iter();
    let (Some(full_row), Some(delta_row)) = (rows.next(), rows.next()) else {
        return Err(PublishError::Invalid(
            "the store lost a recorded CRL".into(),
        ));
    };
    let (full_entries, delta_entries) = (full_row.entries, delta_row.entries);
    tracing::info!(
        full = full_number,
        delta = delta.number,
        base = base.0,
        entries = full_entries,
        delta_entries,
        bytes = full_row.size,
        %actor,
        "CRLs published"
    );
    Ok(Published {
        full: full_row,
        delta: delta_row,
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
    /// As recorded (its bytes are in the store).
    pub row: CrlRow,
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
    let built = build(ca, &spec)?;
    let row = ca
        .store
        .record_crls(vec![record(&spec, built)], actor)?
        .pop()
        .ok_or_else(|| PublishError::Invalid("the store lost a recorded CRL".into()))?;
    let entries = row.entries;
    tracing::info!(delta = number, base = base.crl_number, entries, %actor, "delta CRL published");
    Ok(Some(PublishedDelta {
        row,
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
    let tbs = Frame::new(
        &algorithm,
        &ca.ca.root().subject,
        this_update,
        next_update,
        exts,
    )?
    .tbs(&[])?;
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
    use crate::crl_entry::encode_entry;
    use crate::crl_lint::{Expected, lint};
    use nuc_core::RevocationReason;
    use spki::AlgorithmIdentifierOwned;
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
        Frame::new(&alg(), &name(), NOW, NOW + 3600, exts)
            .unwrap()
            .tbs(&list)
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
