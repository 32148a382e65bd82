//! The delegated OCSP responder (RFC 6960 §4.2.2.2) and its renewal with rollover.
//!
//! This module owns the responder in force — one [`OcspResponder`], its certificate and its
//! key always taken together — and the two ways it changes: [`Ca::renew_ocsp_signer`] makes a
//! new key in the HSM and a new certificate for it (profile `ocsp-signer`: id-kp-OCSPSigning,
//! id-pkix-ocsp-nocheck, signed by the issuing CA) and records it in the store in place of the
//! old one, with its audit record; [`Ca::reload_ocsp_signer`] makes an opened CA (a running
//! service, every instance of a shared store) adopt whatever the store names now.
//!
//! A renewal always makes a new key: a responder's key signs every answer, so it is the CA
//! key most exposed to use, and a new certificate on the old key would extend that exposure
//! rather than end it. The old key stays in the token: an instance that has not yet adopted
//! the new certificate keeps signing with the old pair, which is still valid.
//!
//! It must never let an answer be signed by one key and carry another key's certificate: a
//! caller takes one [`OcspResponder`] ([`Ca::ocsp`]) and signs and names with it alone; a swap
//! installs a new one, leaving the old one whole to whoever still holds it. It never adopts a
//! certificate whose key is not in the token, that does not name our issuing CA, or that is
//! not valid now.

use std::sync::Arc;

use der::{Decode, EncodePem};
use nuc_hsm::{Hsm, HsmLane};
use nuc_store::{AuditEntry, CaKeyRow, CaKeyStore};
use x509_cert::Certificate;

use crate::ca::{Ca, CaIdentity, CaSigner, OCSP_LABEL, ca_certificate};
use crate::error::CaError;

/// The role of the OCSP signer's key in the store.
pub const OCSP_ROLE: &str = "ocsp-signer";

/// One delegated OCSP responder: its certificate and its key in the HSM, with the issuing CA
/// it answers for. Immutable: a renewal makes another one.
pub struct OcspResponder {
    issuing: CaIdentity,
    signer: CaSigner,
    hsm: Arc<Hsm>,
    lane: Option<Arc<HsmLane>>,
}

impl OcspResponder {
    pub(crate) fn new(
        issuing: CaIdentity,
        signer: CaSigner,
        hsm: Arc<Hsm>,
        lane: Option<Arc<HsmLane>>,
    ) -> Self {
        Self {
            issuing,
            signer,
            hsm,
            lane,
        }
    }

    /// The same responder, signing on `lane` (or the shared pool).
    pub(crate) fn with_lane(&self, lane: Option<Arc<HsmLane>>) -> Self {
        Self {
            issuing: self.issuing.clone(),
            signer: self.signer.clone(),
            hsm: self.hsm.clone(),
            lane,
        }
    }

    /// The issuing CA this responder answers for.
    pub fn issuing(&self) -> &CaIdentity {
        &self.issuing
    }

    /// The responder's own certificate and key names.
    pub fn identity(&self) -> &CaIdentity {
        &self.signer.id
    }

    /// The HSM label of the responder's key.
    pub fn hsm_label(&self) -> &str {
        &self.signer.key.label
    }

    /// A signature by this responder's key, on its own lane when it has one.
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>, CaError> {
        match &self.lane {
            Some(lane) => Ok(lane.sign(&self.signer.key, data)?),
            None => Ok(self.hsm.sign(&self.signer.key, data)?),
        }
    }
}

/// What [`Ca::renew_ocsp_signer`] made.
#[derive(Debug, Clone)]
pub struct RenewedOcspSigner {
    /// Serial (lowercase hex) of the certificate replaced.
    pub old_serial: String,
    /// Serial (lowercase hex) of the new certificate.
    pub serial: String,
    pub hsm_label: String,
    pub not_after: i64,
    /// The new certificate, DER.
    pub cert_der: Vec<u8>,
}

impl RenewedOcspSigner {
    /// The new certificate, PEM.
    pub fn pem(&self) -> Result<String, CaError> {
        Ok(Certificate::from_der(&self.cert_der)?.to_pem(der::pem::LineEnding::LF)?)
    }
}

/// The serial of a certificate, lowercase hex of its INTEGER's content.
pub fn serial_of(cert_der: &[u8]) -> Result<String, CaError> {
    let cert = Certificate::from_der(cert_der)?;
    Ok(hex::encode(
        cert.tbs_certificate().serial_number().as_bytes(),
    ))
}

impl Ca {
    /// The OCSP responder in force: sign an answer and name its signer with this one only.
    pub fn ocsp(&self) -> Arc<OcspResponder> {
        self.ocsp.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn install_ocsp(&self, responder: Arc<OcspResponder>) {
        *self.ocsp.write().unwrap_or_else(|p| p.into_inner()) = responder;
    }

    /// Makes a new OCSP signer: a new key in the HSM (algorithm `[ca] ocsp_key` of the
    /// policy's setting in force, as the old one's), a certificate for it by the issuing CA
    /// under profile `ocsp-signer`, valid `days` (at most the profile's validity, never past
    /// the issuing CA's), recorded in `store` in place of the old one with an audit record
    /// `ca.ocsp_signer.renewed` by `actor`. This opening of the CA adopts it at once.
    pub fn renew_ocsp_signer(
        &self,
        store: &dyn CaKeyStore,
        days: Option<u32>,
        actor: &str,
    ) -> Result<RenewedOcspSigner, CaError> {
        let old = self.ocsp();
        let mut profile = self
            .policy
            .profiles
            .get(OCSP_ROLE)
            .ok_or_else(|| CaError::CaState(format!("policy lacks profile {OCSP_ROLE}")))?
            .clone();
        if let Some(d) = days {
            if d == 0 {
                return Err(CaError::invalid("days", "must be at least 1"));
            }
            profile.validity_days = profile.validity_days.min(d);
        }
        let algorithm = old.signer.key.algorithm;
        let now = nuc_core::time::now_unix();
        let mut tag = [0u8; 4];
        getrandom::fill(&mut tag).map_err(|e| CaError::CaState(format!("no randomness: {e}")))?;
        // A label of its own: the old key stays in the token for whoever still signs with it.
        let label = format!("{OCSP_LABEL}-{now}-{}", hex::encode(tag));
        let key = self.hsm.generate_key(&label, algorithm)?;
        let cert_der = ca_certificate(
            &self.hsm,
            &self.policy,
            self.publication(),
            &profile,
            &key,
            &self.issuing.key,
            Some(&self.issuing),
            now,
        )?;
        let signer = CaSigner::new(key, cert_der.clone())?;
        let (old_serial, serial) = (serial_of(&old.signer.id.cert_der)?, serial_of(&cert_der)?);
        store.replace_ca_key(
            &CaKeyRow {
                role: OCSP_ROLE.into(),
                hsm_label: label.clone(),
                algorithm: algorithm.to_string(),
                cert_der: cert_der.clone(),
            },
            &AuditEntry {
                actor: actor.into(),
                action: "ca.ocsp_signer.renewed".into(),
                object: format!("serial:{serial}"),
                details: serde_json::json!({
                    "old_serial": old_serial,
                    "serial": serial,
                    "hsm_label": label,
                    "algorithm": algorithm.to_string(),
                    "not_after": signer.id.not_after,
                    "sha256": hex::encode(openssl::sha::sha256(&cert_der)),
                }),
            },
        )?;
        let not_after = signer.id.not_after;
        self.install_ocsp(Arc::new(OcspResponder::new(
            self.issuing.id.clone(),
            signer,
            self.hsm.clone(),
            self.ocsp_lane.clone(),
        )));
        Ok(RenewedOcspSigner {
            old_serial,
            serial,
            hsm_label: label,
            not_after,
            cert_der,
        })
    }

    /// Adopts the OCSP signer `store` names now, when it is not the one in force (another
    /// process renewed it): its key is looked up in the token and must match its
    /// certificate, which must name our issuing CA and be valid now. Gives the new responder
    /// when it changed, `None` when it is the same. On a refusal the one in force stays.
    pub fn reload_ocsp_signer(
        &self,
        store: &dyn CaKeyStore,
    ) -> Result<Option<Arc<OcspResponder>>, CaError> {
        let current = self.ocsp();
        let rows = store.ca_keys()?;
        let row = rows
            .iter()
            .find(|k| k.role == OCSP_ROLE)
            .ok_or_else(|| CaError::CaState(format!("the store has no {OCSP_ROLE} CA key")))?;
        if row.cert_der == current.signer.id.cert_der {
            return Ok(None);
        }
        let signer = self.delegated_signer_from_row(row, OCSP_ROLE, "")?;
        let responder = Arc::new(OcspResponder::new(
            self.issuing.id.clone(),
            signer,
            self.hsm.clone(),
            self.ocsp_lane.clone(),
        ));
        self.install_ocsp(responder.clone());
        Ok(Some(responder))
    }
}
