//! The report of certificates (pki.gov.kz's "my keys"): every certificate of a holder's IIN,
//! or of a legal entity's employees for its first head, with its state, how it was issued and
//! where its key lives.
//!
//! A report reads personal data, so it is asked for like an act: a signed
//! `CertificateReportRequest`, fresh, naming the signer's own IIN, spent once, with an audit
//! record. An entity's report needs the signer to be the entity's first head in the registry
//! at that moment; an employee (even one with the right to sign) gets only their own.

use der::Decode;
use nuc_core::{Bin, Identification, Iin, KeyStorage, ReasonCode, mask_iin};
use nuc_payloads::CertificateReportRequest;
use nuc_registry::Role;
use nuc_store::{AuditEntry, CertificateRow, RevocationRow};
use x509_cert::Certificate;

use crate::signer::HolderKey;
use crate::{Ra, RaError, sha256_hex};

/// Where a certificate stands at the report's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Valid,
    /// Past its notAfter (and never revoked).
    Expired,
    Revoked,
}

/// How a certificate came to be issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuedHow {
    /// Confirmed by an operator at a CON (F1 with a visit, F4 at the counter).
    AtCon {
        /// The CON of the deciding operator, as the operators' register has it (empty when the
        /// operator is no longer on it).
        con: String,
        /// Serial of the deciding operator's certificate.
        operator_serial: String,
    },
    /// A remote renewal (F2), signed by the holder's earlier certificate.
    RemoteRenewal { renewed_from: String },
    /// Through a request no operator decided on and that is not a renewal.
    Online,
    /// Without a request: by the NUC's administrator (`nuc cert issue`).
    ByAdministrator,
    /// Confirmed by the legal entity's HR officer (identification `organization`).
    ByEmployer {
        /// Serial of the officer's SIGN certificate that signed the confirmation.
        hr_serial: String,
    },
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct ReportedCertificate {
    pub serial: String,
    pub profile: String,
    /// The holder (an employee's, in an entity's report).
    pub holder_iin: Option<String>,
    /// The subject's common name, as the certificate has it.
    pub holder_name: String,
    pub not_before: i64,
    pub not_after: i64,
    pub standing: Standing,
    pub request_number: Option<String>,
    pub issued: IssuedHow,
    pub identification: Option<Identification>,
    pub key_storage: KeyStorage,
    pub revocation: Option<RevocationRow>,
    pub der: Vec<u8>,
}

/// What a report covers and says.
#[derive(Debug, Clone)]
pub struct CertificateReport {
    /// The signer's IIN.
    pub iin: String,
    /// The legal entity, for a first head's report.
    pub bin: Option<String>,
    /// The signer's name (their certificate's common name), or the entity's name.
    pub name: String,
    pub generated_at: i64,
    /// In issuance order.
    pub certificates: Vec<ReportedCertificate>,
}

/// Where a certificate stands at `now`: a revocation outlasts the expiry (a relying party
/// must still learn that a key was compromised); past its notAfter otherwise, it is expired.
fn standing(revoked: bool, not_after: i64, now: i64) -> Standing {
    match (revoked, now > not_after) {
        (true, _) => Standing::Revoked,
        (false, true) => Standing::Expired,
        (false, false) => Standing::Valid,
    }
}

impl Ra {
    /// The report a signed `CertificateReportRequest` asks for. Refused: a request signed by
    /// someone else than the IIN it names (`IIN_MISMATCH`), an entity's report for someone the
    /// registry does not list as its first head (`ROLE_NOT_HELD`), a replay, a stale request.
    /// Nothing is spent unless the report is answered.
    pub async fn certificate_report(
        &self,
        caller: &str,
        signed: &[u8],
    ) -> Result<CertificateReport, RaError> {
        let now = self.now();
        let s = self.applicant_signed::<CertificateReportRequest>(signed, HolderKey::Any, now)?;
        if s.payload.iin.trim() != s.signer.iin {
            return Err(RaError::new(
                ReasonCode::IinMismatch,
                format!(
                    "the report request names IIN {}, the signer is {}: a holder asks only for their own",
                    mask_iin(s.payload.iin.trim()),
                    mask_iin(&s.signer.iin)
                ),
            ));
        }
        if s.payload.nonce.trim().is_empty() {
            return Err(RaError::applicant_signature(
                "the signed report request has no nonce",
            ));
        }
        let signer_cert = self
            .store
            .certificate(&s.signer.serial_hex)?
            .and_then(|c| c.der)
            .and_then(|der| Certificate::from_der(&der).ok());
        let signer_name = signer_cert
            .as_ref()
            .and_then(nuc_ca::cert::common_name)
            .unwrap_or_default();

        let bin_text = s.payload.bin.trim();
        let (bin, name, rows) = if bin_text.is_empty() {
            (
                None,
                signer_name,
                self.store.certificates_of(&s.signer.iin)?,
            )
        } else {
            let bin = Bin::parse(bin_text).map_err(|e| RaError::invalid("bin", e))?;
            let iin = Iin::parse(&s.signer.iin)
                .map_err(|e| RaError::new(ReasonCode::Internal, e.to_string()))?;
            let entity = self.registry.legal_entity(&bin).await?;
            match entity.role_of(&iin) {
                Some(Role::FirstHead) => {}
                held => {
                    return Err(RaError::new(
                        ReasonCode::RoleNotHeld,
                        format!(
                            "the registry lists {} in BIN {bin} as {}, not its first head: an entity's report is its first head's",
                            mask_iin(&s.signer.iin),
                            held.map_or("nobody of it", Role::as_str)
                        ),
                    ));
                }
            }
            (
                Some(bin.to_string()),
                entity.name,
                self.store.certificates_of_bin(bin.as_str())?,
            )
        };
        let certificates = rows
            .into_iter()
            .map(|row| self.reported(row, now))
            .collect::<Result<Vec<_>, RaError>>()?;

        let (object, used_for) = match &bin {
            Some(b) => (format!("bin:{b}"), format!("report:bin:{b}")),
            None => (
                format!("holder:{}", s.signer.serial_hex),
                format!("report:holder:{}", s.signer.serial_hex),
            ),
        };
        self.store.spend_payload(
            &sha256_hex(&s.content),
            &used_for,
            &AuditEntry {
                actor: format!("holder:{}", s.signer.serial_hex),
                action: "certificates.reported".into(),
                object,
                details: serde_json::json!({
                    "certificates": certificates.len(),
                    "via": caller,
                }),
            },
        )?;
        tracing::info!(
            signer = %s.signer.serial_hex,
            bin = bin.as_deref().unwrap_or(""),
            certificates = certificates.len(),
            "certificate report answered"
        );
        Ok(CertificateReport {
            iin: s.signer.iin,
            bin,
            name,
            generated_at: now,
            certificates,
        })
    }

    /// A stored certificate as the report shows it.
    fn reported(&self, row: CertificateRow, now: i64) -> Result<ReportedCertificate, RaError> {
        let der = row.der.ok_or_else(|| {
            RaError::new(
                ReasonCode::Internal,
                format!("certificate {} is issued without its bytes", row.serial),
            )
        })?;
        let cert = Certificate::from_der(&der).map_err(|e| {
            RaError::new(
                ReasonCode::Internal,
                format!("stored certificate {} does not decode: {e}", row.serial),
            )
        })?;
        let validity = cert.tbs_certificate().validity();
        let not_before = validity.not_before.to_unix_duration().as_secs() as i64;
        let not_after = validity.not_after.to_unix_duration().as_secs() as i64;
        let revocation = self.store.revocation(&row.serial)?;
        let standing = standing(revocation.is_some(), not_after, now);
        let request = match &row.request_number {
            Some(n) => self.store.request(n)?,
            None => None,
        };
        let (issued, identification, key_storage) = match &request {
            None => (IssuedHow::ByAdministrator, None, KeyStorage::File),
            Some(r) => {
                let issued = match (&r.decided_by, &r.renewed_from) {
                    (Some(hr_serial), _)
                        if r.identification == Some(Identification::Organization) =>
                    {
                        IssuedHow::ByEmployer {
                            hr_serial: hr_serial.clone(),
                        }
                    }
                    (Some(operator_serial), _) => IssuedHow::AtCon {
                        con: self.con_of(operator_serial)?,
                        operator_serial: operator_serial.clone(),
                    },
                    (None, Some(from)) => IssuedHow::RemoteRenewal {
                        renewed_from: from.clone(),
                    },
                    (None, None) => IssuedHow::Online,
                };
                (issued, r.identification, r.key_storage)
            }
        };
        Ok(ReportedCertificate {
            holder_name: nuc_ca::cert::common_name(&cert).unwrap_or_default(),
            serial: row.serial,
            profile: row.profile,
            holder_iin: row.iin,
            not_before,
            not_after,
            standing,
            request_number: row.request_number,
            issued,
            identification,
            key_storage,
            revocation,
            der,
        })
    }

    /// The CON of the operator whose certificate has this serial, as the register has it now.
    fn con_of(&self, operator_serial: &str) -> Result<String, RaError> {
        let iin = self.store.certificate(operator_serial)?.and_then(|c| c.iin);
        Ok(match iin {
            Some(iin) => self
                .store
                .operator(&iin)?
                .map(|o| o.con)
                .unwrap_or_default(),
            None => String::new(),
        })
    }
}

#[cfg(test)]
mod standing_tests {
    use super::{Standing, standing};

    #[test]
    fn revoked_outlasts_expired_and_the_last_second_is_still_valid() {
        assert_eq!(standing(false, 100, 100), Standing::Valid);
        assert_eq!(standing(false, 100, 101), Standing::Expired);
        assert_eq!(standing(true, 100, 50), Standing::Revoked);
        assert_eq!(standing(true, 100, 500), Standing::Revoked);
    }
}
