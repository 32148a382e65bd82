//! The NUC's report signer ("document signer"): a key in the HSM with an end-entity
//! certificate of the issuing CA (profile `report-signer`), which signs the documents the NUC
//! itself hands out — the certificate report of `GetCertificateReport` — with a detached CMS
//! SignedData, so that anyone can check them with the verification service (F8) or with
//! `openssl cms -verify`.
//!
//! This module owns the report signer in force — its certificate and its key, always taken
//! together — and how it comes and changes: [`Ca::ensure_report_signer`] makes the first one
//! (by `nuc init`, or at the start of a service whose store names none), [`Ca::renew_report_signer`]
//! makes a new key and certificate in place of the old one, [`Ca::reload_report_signer`]
//! makes an opened CA adopt whatever the store names now (another instance made or renewed
//! it). Its certificate is issued like any other — PKCS#10 request (signed in the HSM, as
//! proof of possession), lint, reservation, signature, record, each step audited — so it is
//! in the certificates table: F8 knows it as "issued by the NUC", and it is revoked like any
//! other (`nuc cert revoke`). The store's `ca_keys` table names the one in force (role
//! [`REPORT_SIGNER_ROLE`]), as it does the OCSP signer.
//!
//! It must never let the key out of the HSM (it is generated there sensitive and not
//! extractable, like every CA key), never sign with one key while naming another key's
//! certificate, never adopt a certificate that is not our issuing CA's or not valid now, and
//! never sign anything but what [`Ca::sign_report`] is given, as a detached CMS: it is not an
//! oracle for arbitrary signatures (no raw signature, no chosen signed attributes).

use std::cell::RefCell;
use std::sync::Arc;

use der::{Decode, Encode, EncodePem};
use nuc_cms::{CmsError, SignatureAlgorithm};
use nuc_core::{RevocationReason, SubjectInfo};
use nuc_hsm::{HsmError, HsmKey, KeyAlgorithm};
use nuc_store::{
    AuditEntry, AuditLog, CaKeyRow, CaKeyStore, CertificateStore, Issuance, RevocationRow,
    RevocationStore,
};
use x509_cert::Certificate;
use x509_cert::request::{CertReq, CertReqInfo};

use crate::ca::{Ca, CaIdentity, CaSigner, IssueRequest, key_alg};
use crate::error::CaError;
use crate::ocsp_signer::serial_of;

/// The role of the report signer's key in the store's `ca_keys`.
pub const REPORT_SIGNER_ROLE: &str = "report-signer";
/// The certificate profile of the report signer (`ca-policy/profiles.toml`).
pub const REPORT_SIGNER_PROFILE: &str = "report-signer";
/// The start of the HSM labels of report-signer keys: each key gets its own label
/// (`nuc-report-signer-<unix time>-<random>`), so a renewal never touches the key in force.
pub const REPORT_SIGNER_LABEL: &str = "nuc-report-signer";
/// The common name of the report signer's certificate.
pub const REPORT_SIGNER_CN: &str = "NUC RK report signer";

/// A report signed by the NUC.
#[derive(Debug, Clone)]
pub struct SignedReport {
    /// DER ContentInfo(SignedData), detached (the report travels beside it): one SignerInfo
    /// with signed attributes contentType (id-data), messageDigest and signingTime, and the
    /// signer's certificate included.
    pub signature: Vec<u8>,
    /// Serial (lowercase hex) of the report signer's certificate.
    pub signer_serial_hex: String,
    /// The report signer's certificate, DER.
    pub signer_der: Vec<u8>,
}

/// What [`Ca::ensure_report_signer`] and [`Ca::renew_report_signer`] made.
#[derive(Debug, Clone)]
pub struct MadeReportSigner {
    /// Serial (lowercase hex) of the certificate replaced; `None` for the first one.
    pub old_serial: Option<String>,
    /// Serial (lowercase hex) of the new certificate.
    pub serial: String,
    pub hsm_label: String,
    pub algorithm: KeyAlgorithm,
    pub not_after: i64,
    /// The new certificate, DER.
    pub cert_der: Vec<u8>,
}

impl MadeReportSigner {
    /// The new certificate, PEM.
    pub fn pem(&self) -> Result<String, CaError> {
        Ok(Certificate::from_der(&self.cert_der)?.to_pem(der::pem::LineEnding::LF)?)
    }
}

/// The CMS signature algorithm of a key's signatures as [`nuc_hsm::Hsm::sign`] makes them.
fn cms_algorithm(key: KeyAlgorithm) -> SignatureAlgorithm {
    match key {
        KeyAlgorithm::Rsa { .. } => SignatureAlgorithm::RsaPkcs1Sha256,
        KeyAlgorithm::EcdsaP256 => SignatureAlgorithm::EcdsaSha256,
        KeyAlgorithm::EcdsaP384 => SignatureAlgorithm::EcdsaSha384,
    }
}

/// What a store must give for the report signer to be made: the issuance ledger (reservation,
/// record, audit), the CA keys, and revocation (of a certificate made for nothing when another
/// instance made its own first).
pub trait ReportSignerStore: CertificateStore + AuditLog + CaKeyStore + RevocationStore {}

impl<T: CertificateStore + AuditLog + CaKeyStore + RevocationStore + ?Sized> ReportSignerStore
    for T
{
}

impl Ca {
    /// The report signer's certificate in force, if this CA has one.
    pub fn report_signer(&self) -> Option<CaIdentity> {
        self.report_signer_in_force().map(|s| s.id.clone())
    }

    fn report_signer_in_force(&self) -> Option<Arc<CaSigner>> {
        self.report
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn install_report_signer(&self, signer: Arc<CaSigner>) {
        *self.report.write().unwrap_or_else(|p| p.into_inner()) = Some(signer);
    }

    /// Signs `content` (a report, as the caller made it) with the report signer in force:
    /// a detached CMS SignedData (SHA-256, or SHA-384 with a P-384 key), its signed
    /// attributes signed in the HSM, the signer's certificate included.
    ///
    /// [`CaError::NoReportSigner`] when this CA has none (the home's policy lacks the
    /// `report-signer` profile, or the service could not make one at its start); an HSM
    /// failure is [`CaError::Hsm`] as for any signature.
    pub fn sign_report(&self, content: &[u8]) -> Result<SignedReport, CaError> {
        let signer = self.report_signer_in_force().ok_or_else(|| {
            CaError::NoReportSigner(
                "this CA has none in force (`nuc serve` makes one at its start when the \
                 home's policy has the report-signer profile; `nuc report-signer renew` makes \
                 a new one)"
                    .into(),
            )
        })?;
        // The HSM's own error is kept whole (its reason: HSM_FAILURE, or UNAVAILABLE when
        // saturated), not flattened into the CMS builder's message.
        let hsm_failure: RefCell<Option<HsmError>> = RefCell::new(None);
        let signed = nuc_cms::sign_with(
            content,
            &signer.id.cert_der,
            &|signed_attrs| {
                self.hsm.sign(&signer.key, signed_attrs).map_err(|e| {
                    let message = e.to_string();
                    *hsm_failure.borrow_mut() = Some(e);
                    CmsError::Signing(message)
                })
            },
            cms_algorithm(signer.key.algorithm),
            true,
        );
        let signature = match signed {
            Ok(s) => s,
            Err(e) => {
                return Err(match hsm_failure.into_inner() {
                    Some(h) => CaError::Hsm(h),
                    None => CaError::ReportSigning(e.to_string()),
                });
            }
        };
        metrics::counter!("nuc_reports_signed_total").increment(1);
        Ok(SignedReport {
            signature,
            signer_serial_hex: serial_of(&signer.id.cert_der)?,
            signer_der: signer.id.cert_der.clone(),
        })
    }

    /// Makes sure a report signer is in force: adopts the one `store` names, or, when it
    /// names none, makes the first ([`Ca::renew_report_signer`]'s way: a new key, a
    /// certificate issued and recorded like any other) and records it under role
    /// [`REPORT_SIGNER_ROLE`] with an audit record `ca.report_signer.created` by `actor`.
    /// Gives what it made, `None` when the store named one already.
    ///
    /// Several instances of one store may do this at once: the store takes the first record
    /// of the role; an instance that loses revokes the certificate it made for nothing
    /// (superseded, audited) and adopts the winner's, so all of them sign with one.
    pub fn ensure_report_signer<S: ReportSignerStore + ?Sized>(
        &self,
        store: &S,
        actor: &str,
    ) -> Result<Option<MadeReportSigner>, CaError> {
        if store
            .ca_keys()?
            .iter()
            .any(|k| k.role == REPORT_SIGNER_ROLE)
        {
            self.reload_report_signer(store)?;
            return Ok(None);
        }
        let algorithm = self.issuing.key.algorithm;
        let (signer, label) = self.make_report_signer(store, algorithm, None, actor)?;
        let serial = serial_of(&signer.id.cert_der)?;
        let row = CaKeyRow {
            role: REPORT_SIGNER_ROLE.into(),
            hsm_label: label.clone(),
            algorithm: algorithm.to_string(),
            cert_der: signer.id.cert_der.clone(),
        };
        let audit = AuditEntry {
            actor: actor.into(),
            action: "ca.report_signer.created".into(),
            object: format!("serial:{serial}"),
            details: serde_json::json!({
                "serial": serial,
                "hsm_label": label,
                "algorithm": algorithm.to_string(),
                "not_after": signer.id.not_after,
                "sha256": hex::encode(openssl::sha::sha256(&signer.id.cert_der)),
            }),
        };
        if let Err(e) = store.put_ca_keys(std::slice::from_ref(&row), &audit) {
            // Another instance recorded its own first: ours is of no use, and a certificate
            // nobody signs with must not stay valid.
            if store
                .ca_keys()?
                .iter()
                .any(|k| k.role == REPORT_SIGNER_ROLE)
            {
                self.revoke_unused(store, &serial, actor)?;
                self.reload_report_signer(store)?;
                return Ok(None);
            }
            return Err(e.into());
        }
        let made = MadeReportSigner {
            old_serial: None,
            serial,
            hsm_label: label,
            algorithm,
            not_after: signer.id.not_after,
            cert_der: signer.id.cert_der.clone(),
        };
        self.install_report_signer(Arc::new(signer));
        tracing::info!(serial = %made.serial, key = %made.hsm_label, "report signer made");
        Ok(Some(made))
    }

    /// Makes a new report signer in place of the one `store` names: a new key in the HSM
    /// (the old one's algorithm; the issuing CA's for the first), a certificate for it under
    /// profile `report-signer` valid `days` (at most the profile's), issued and recorded like
    /// any other, then named in `store` under role [`REPORT_SIGNER_ROLE`] with an audit record
    /// `ca.report_signer.renewed` by `actor`. This opening of the CA adopts it at once; other
    /// instances at their next [`Ca::reload_report_signer`].
    ///
    /// The old certificate is not revoked: reports it signed stay verifiable, and an instance
    /// that has not adopted the new one yet still signs valid reports with it. Revoke it with
    /// `nuc cert revoke` if its key is to be distrusted. When the store names none, this makes
    /// the first, as [`Ca::ensure_report_signer`] does.
    pub fn renew_report_signer<S: ReportSignerStore + ?Sized>(
        &self,
        store: &S,
        days: Option<u32>,
        actor: &str,
    ) -> Result<MadeReportSigner, CaError> {
        if days == Some(0) {
            return Err(CaError::invalid("days", "must be at least 1"));
        }
        let rows = store.ca_keys()?;
        let Some(old) = rows.iter().find(|k| k.role == REPORT_SIGNER_ROLE) else {
            return self.ensure_report_signer(store, actor)?.ok_or_else(|| {
                CaError::CaState(
                    "another instance made the first report signer meanwhile; renew again".into(),
                )
            });
        };
        let algorithm = key_alg("algorithm", &old.algorithm)?;
        let old_serial = serial_of(&old.cert_der)?;
        let (signer, label) = self.make_report_signer(store, algorithm, days, actor)?;
        let serial = serial_of(&signer.id.cert_der)?;
        store.replace_ca_key(
            &CaKeyRow {
                role: REPORT_SIGNER_ROLE.into(),
                hsm_label: label.clone(),
                algorithm: algorithm.to_string(),
                cert_der: signer.id.cert_der.clone(),
            },
            &AuditEntry {
                actor: actor.into(),
                action: "ca.report_signer.renewed".into(),
                object: format!("serial:{serial}"),
                details: serde_json::json!({
                    "old_serial": old_serial,
                    "serial": serial,
                    "hsm_label": label,
                    "algorithm": algorithm.to_string(),
                    "not_after": signer.id.not_after,
                    "sha256": hex::encode(openssl::sha::sha256(&signer.id.cert_der)),
                }),
            },
        )?;
        let made = MadeReportSigner {
            old_serial: Some(old_serial),
            serial,
            hsm_label: label,
            algorithm,
            not_after: signer.id.not_after,
            cert_der: signer.id.cert_der.clone(),
        };
        self.install_report_signer(Arc::new(signer));
        Ok(made)
    }

    /// Adopts the report signer `store` names now, when it is not the one in force (another
    /// process made or renewed it): its key is looked up in the token and must match its
    /// certificate, which must be our issuing CA's and valid now. Gives the new one's
    /// certificate when it changed, `None` when it is the same or the store names none. On a
    /// refusal the one in force stays.
    pub fn reload_report_signer<S: CaKeyStore + ?Sized>(
        &self,
        store: &S,
    ) -> Result<Option<CaIdentity>, CaError> {
        let rows = store.ca_keys()?;
        let Some(row) = rows.iter().find(|k| k.role == REPORT_SIGNER_ROLE) else {
            return Ok(None);
        };
        if self
            .report_signer_in_force()
            .is_some_and(|s| s.id.cert_der == row.cert_der)
        {
            return Ok(None);
        }
        let signer = self.report_signer_from_row(row)?;
        let id = signer.id.clone();
        self.install_report_signer(Arc::new(signer));
        Ok(Some(id))
    }

    /// The report signer a `ca_keys` row names, checked: key in the token matching the
    /// certificate, issued by our issuing CA, valid now.
    pub(crate) fn report_signer_from_row(&self, row: &CaKeyRow) -> Result<CaSigner, CaError> {
        self.delegated_signer_from_row(
            row,
            REPORT_SIGNER_ROLE,
            " (renew it: `nuc report-signer renew`)",
        )
    }

    /// A new key in the HSM and its certificate, issued through the normal issuance (request
    /// signed in the HSM, lint, reservation, signature, record, audited as by `actor`).
    /// Gives the signer and its HSM label; the store's `ca_keys` is the caller's to change.
    fn make_report_signer<S: ReportSignerStore + ?Sized>(
        &self,
        store: &S,
        algorithm: KeyAlgorithm,
        days: Option<u32>,
        actor: &str,
    ) -> Result<(CaSigner, String), CaError> {
        if self.policy.end_entity(REPORT_SIGNER_PROFILE).is_none() {
            return Err(CaError::NoReportSigner(format!(
                "the home's policy has no profile {REPORT_SIGNER_PROFILE:?}: add it from \
                 ca-policy/profiles.toml of this release to the home's policy file"
            )));
        }
        let now = nuc_core::time::now_unix();
        let mut tag = [0u8; 4];
        getrandom::fill(&mut tag).map_err(|e| CaError::CaState(format!("no randomness: {e}")))?;
        let label = format!("{REPORT_SIGNER_LABEL}-{now}-{}", hex::encode(tag));
        let key = self.hsm.generate_key(&label, algorithm)?;
        let csr = self.request_for(&key)?;
        let order = IssueRequest {
            profile: REPORT_SIGNER_PROFILE.into(),
            csr,
            subject: SubjectInfo {
                iin: None,
                surname: None,
                name: None,
                patronymic: None,
                organization: None,
                email: None,
                common_name: Some(REPORT_SIGNER_CN.into()),
            },
            role: None,
            identification: None,
            dns_names: vec![],
            actor: actor.into(),
            request_number: None,
            key_storage: Default::default(),
        };
        let issued = self
            .issue_unchecked_profile(std::slice::from_ref(&order), &Issuance::alone(store), days)?
            .into_iter()
            .next()
            .ok_or_else(|| CaError::CaState("the issuance gave no certificate".into()))?;
        Ok((CaSigner::new(key, issued.der)?, label))
    }

    /// A PKCS#10 request for `key`, signed by it in the HSM (its proof of possession). Only
    /// its key is used by the issuance; the subject is left empty.
    fn request_for(&self, key: &HsmKey) -> Result<Vec<u8>, CaError> {
        let info = CertReqInfo {
            version: x509_cert::request::Version::V1,
            subject: Default::default(),
            public_key: key.spki.clone(),
            attributes: Default::default(),
        };
        let signature = self.hsm.sign(key, &info.to_der()?)?;
        Ok(CertReq {
            info,
            algorithm: key.algorithm.signature_algorithm(),
            signature: der::asn1::BitString::from_bytes(&signature)?,
        }
        .to_der()?)
    }

    /// Revokes (superseded) a report-signer certificate made for nothing.
    fn revoke_unused<S: ReportSignerStore + ?Sized>(
        &self,
        store: &S,
        serial: &str,
        actor: &str,
    ) -> Result<(), CaError> {
        let row = RevocationRow {
            serial: serial.into(),
            reason: RevocationReason::Superseded,
            revoked_at: nuc_core::time::now_unix(),
            invalidity_date: None,
            revoked_by: actor.into(),
        };
        store.revoke(
            &row,
            None,
            None,
            &AuditEntry {
                actor: actor.into(),
                action: "certificate.revoked".into(),
                object: format!("serial:{serial}"),
                details: serde_json::json!({
                    "reason": RevocationReason::Superseded.code(),
                    "why": "report signer made at the same time as another instance's, never used",
                }),
            },
        )?;
        tracing::info!(%serial, "report signer made for nothing (another instance made one first): revoked");
        Ok(())
    }
}
