//! An employee's application confirmed by their own organisation: the legal entity's HR
//! officer (role 1.2.398.3.3.4.1.2.4, "empowered to confirm the applications for registration
//! certificates submitted by the entity's employees") signs an `EmployerConfirmation` with
//! their SIGN certificate instead of the employee visiting a CON. The certificates follow at
//! once and record the identification as `organization` (ca-policy names its OID).
//!
//! The officer stands in for an operator, so each of an operator's checks has its counterpart:
//! the signature is the officer's own valid, unrevoked `legal-sign` certificate (nonRepudiation);
//! it carries the HR role and the request's BIN; the registry lists the officer as HR of that
//! BIN at this moment (a certificate outlives a dismissal); nobody confirms their own
//! application; the payload names the request, is fresh and is accepted once.

use der::Decode;
use nuc_core::{Bin, Identification, Iin, ReasonCode, RequestKind, RequestState, mask_iin};
use nuc_payloads::EmployerConfirmation;
use nuc_registry::Role;
use nuc_store::{AuditEntry, RequestRow, Transition};
use x509_cert::Certificate;

use crate::signer::HolderKey;
use crate::{Ra, RaError, sha256_hex};

/// The role OID of a legal entity's HR officer (SPEC §4).
const HR_ROLE: const_oid::ObjectIdentifier =
    const_oid::ObjectIdentifier::new_unwrap("1.2.398.3.3.4.1.2.4");

impl Ra {
    /// Confirms an employee's application on the HR officer's signed confirmation, and issues.
    pub async fn confirm_by_employer(
        &self,
        caller: &str,
        signed: &[u8],
    ) -> Result<(RequestRow, Vec<nuc_ca::Issued>), RaError> {
        let now = self.now();
        let s = self.applicant_signed::<EmployerConfirmation>(signed, HolderKey::Sign, now)?;
        let (officer, confirmation) = (&s.signer, &s.payload);
        if !confirmation
            .hr_serial_hex
            .eq_ignore_ascii_case(&officer.serial_hex)
        {
            return Err(RaError::applicant_signature(
                "the signed confirmation names another HR officer's certificate",
            ));
        }
        if confirmation.nonce.trim().is_empty() {
            return Err(RaError::applicant_signature(
                "the signed confirmation has no nonce",
            ));
        }
        // A replay is named as such before anything else is judged of it.
        let payload_sha256 = sha256_hex(&s.content);
        if let Some(used_for) = self.store.payload_used(&payload_sha256)? {
            return Err(RaError::new(
                ReasonCode::PayloadReplayed,
                format!("this confirmation was already accepted ({used_for})"),
            ));
        }
        let request = self.request(&confirmation.request_number)?;
        let Some(request_bin) = request
            .bin
            .clone()
            .filter(|_| request.kind == RequestKind::First)
        else {
            return Err(RaError::invalid(
                "request_number",
                format!(
                    "request {} is not a legal entity's employee's online application: it is confirmed at a CON",
                    request.number
                ),
            ));
        };
        if confirmation.bin.trim() != request_bin {
            return Err(RaError::new(
                ReasonCode::BinMismatch,
                format!(
                    "the confirmation names BIN {:?}, request {} is for BIN {request_bin}",
                    confirmation.bin.trim(),
                    request.number
                ),
            ));
        }
        // The officer's certificate: of this entity, with the HR role.
        let cert = Certificate::from_der(
            &self
                .store
                .certificate(&officer.serial_hex)?
                .and_then(|c| c.der)
                .unwrap_or_default(),
        )
        .map_err(|e| RaError::applicant_signature(format!("certificate does not decode: {e}")))?;
        if nuc_ca::cert::bin_of(&cert).as_deref() != Some(request_bin.as_str()) {
            return Err(RaError::new(
                ReasonCode::BinMismatch,
                format!(
                    "certificate {} is not a certificate of BIN {request_bin}: only that entity's HR officer confirms its employees",
                    officer.serial_hex
                ),
            ));
        }
        if !nuc_ca::cert::extended_key_usage(&cert).contains(&HR_ROLE) {
            return Err(RaError::new(
                ReasonCode::RoleNotHeld,
                format!(
                    "certificate {} does not carry the HR role ({HR_ROLE})",
                    officer.serial_hex
                ),
            ));
        }
        // Separation of duties, as for operators: nobody confirms their own application.
        if officer.iin == request.iin {
            return Err(RaError::new(
                ReasonCode::SeparationOfDuties,
                format!(
                    "HR officer {} may not confirm their own application {}: a CON or another HR officer must",
                    mask_iin(&officer.iin),
                    request.number
                ),
            ));
        }
        if request.state != RequestState::Registered {
            return Err(RaError::new(
                ReasonCode::RequestState,
                format!(
                    "request {} is {}, not registered: it is decided already",
                    request.number, request.state
                ),
            ));
        }
        if now > request.expires_at {
            self.store.expire_requests(now, "system:expiry")?;
            return Err(RaError::new(
                ReasonCode::RequestExpired,
                format!("request {} expired unconfirmed", request.number),
            ));
        }
        // The role as the registry states it now: a certificate outlives a change of post.
        let bin = Bin::parse(&request_bin).map_err(|e| RaError::invalid("bin", e))?;
        let iin = Iin::parse(&officer.iin)
            .map_err(|e| RaError::new(ReasonCode::Internal, e.to_string()))?;
        let entity = self.registry.legal_entity(&bin).await?;
        match entity.role_of(&iin) {
            Some(Role::Hr) => {}
            held => {
                return Err(RaError::new(
                    ReasonCode::RoleNotHeld,
                    format!(
                        "the registry lists {} in BIN {bin} as {}, not its HR officer",
                        mask_iin(&officer.iin),
                        held.map_or("nobody of it", Role::as_str)
                    ),
                ));
            }
        }

        let actor = format!("hr:{}", officer.serial_hex);
        let confirm = Transition {
            number: request.number.clone(),
            from: vec![RequestState::Registered],
            to: RequestState::Confirmed,
            refusal_reason: None,
            decided_by: Some(officer.serial_hex.clone()),
            identification: Some(Identification::Organization),
            payload_sha256: Some(payload_sha256),
            notify: vec![],
            audit: AuditEntry {
                actor: actor.clone(),
                action: "request.confirmed_by_employer".into(),
                object: format!("request:{}", request.number),
                details: serde_json::json!({ "bin": request_bin, "via": caller }),
            },
        };
        let issued = self
            .issue_for(
                &request,
                Identification::Organization,
                &actor,
                Some(confirm),
                RequestState::Confirmed,
            )
            .await?;
        Ok((self.request(&request.number)?, issued))
    }
}
