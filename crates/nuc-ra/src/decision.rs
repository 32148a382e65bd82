//! F1 steps 4–6 and F4: the operator's signed decision on a request. A confirmation is
//! followed at once by the issuance of the AUTH and SIGN certificates; a refusal needs a
//! reason and tells the applicant.

use nuc_core::{Identification, ReasonCode, RequestState};
use nuc_payloads::{Decision, OperatorDecision};
use nuc_store::{AuditEntry, RequestRow, Transition};

use crate::{Ra, RaError, notices, number, sha256_hex};

impl Ra {
    /// The operator's decision, signed with the operator's own certificate (the operator of
    /// this session), on the request it names.
    pub async fn decide(
        &self,
        caller: &str,
        number_text: &str,
        session_operator: &str,
        signed: &[u8],
    ) -> Result<(RequestRow, Vec<nuc_ca::Issued>), RaError> {
        let request = self.request(number_text)?;
        let now = self.now();
        let s = self.operator_signed::<OperatorDecision>(signed, session_operator, now)?;
        let (operator, decision) = (&s.signer, &s.payload);
        if number::canonical(&decision.request_number) != request.number {
            return Err(RaError::operator_signature(format!(
                "the signed content is for request {:?}, not {}",
                decision.request_number, request.number
            )));
        }
        if !decision
            .operator_serial_hex
            .eq_ignore_ascii_case(&operator.serial_hex)
        {
            return Err(RaError::operator_signature(
                "the signed content names another operator",
            ));
        }
        if decision.nonce.trim().is_empty() {
            return Err(RaError::operator_signature(
                "the signed content has no nonce",
            ));
        }
        // Separation of duties: nobody decides on their own application, to confirm or to
        // refuse it.
        if operator.iin == request.iin {
            return Err(RaError::new(
                ReasonCode::SeparationOfDuties,
                format!(
                    "operator {} may not decide on their own application {}: another operator must",
                    nuc_core::mask_iin(&operator.iin),
                    request.number
                ),
            ));
        }
        let payload_sha256 = sha256_hex(&s.content);
        if request.state == RequestState::Registered && now > request.expires_at {
            self.store.expire_requests(now, "system:expiry")?;
            return Err(RaError::new(
                ReasonCode::RequestExpired,
                format!(
                    "request {} expired (no CON visit within 30 days)",
                    request.number
                ),
            ));
        }
        let actor = format!("operator:{}", operator.serial_hex);
        match Decision::try_from(decision.decision).unwrap_or(Decision::Unspecified) {
            Decision::Refuse => {
                let reason = decision.refusal_reason.trim();
                if reason.is_empty() {
                    return Err(RaError::invalid(
                        "refusal_reason",
                        "a refusal needs a reason",
                    ));
                }
                let row = self.store.transition(&Transition {
                    number: request.number.clone(),
                    from: vec![RequestState::Registered],
                    to: RequestState::Refused,
                    refusal_reason: Some(reason.to_owned()),
                    decided_by: Some(operator.serial_hex.clone()),
                    identification: None,
                    payload_sha256: Some(payload_sha256),
                    notify: request
                        .email
                        .as_deref()
                        .map(|to| notices::refused(to, &request.number, reason))
                        .into_iter()
                        .collect(),
                    audit: AuditEntry {
                        actor: actor.clone(),
                        action: "request.refused".into(),
                        object: format!("request:{}", request.number),
                        details: serde_json::json!({ "reason": reason, "via": caller }),
                    },
                })?;
                Ok((row, vec![]))
            }
            Decision::Confirm if request.state == RequestState::Confirmed => {
                self.resume_issuance(caller, &request, &operator.serial_hex, payload_sha256)
                    .await
            }
            Decision::Confirm => {
                // The confirmation commits with the reservations, the certificates with the
                // request becoming issued: two durable waits, not six.
                let confirm = Transition {
                    number: request.number.clone(),
                    from: vec![RequestState::Registered],
                    to: RequestState::Confirmed,
                    refusal_reason: None,
                    decided_by: Some(operator.serial_hex.clone()),
                    identification: Some(Identification::InPerson),
                    payload_sha256: Some(payload_sha256),
                    notify: vec![],
                    audit: AuditEntry {
                        actor: actor.clone(),
                        action: "request.confirmed".into(),
                        object: format!("request:{}", request.number),
                        details: serde_json::json!({ "via": caller }),
                    },
                };
                let issued = self
                    .issue_for(
                        &request,
                        Identification::InPerson,
                        &actor,
                        Some(confirm),
                        RequestState::Confirmed,
                    )
                    .await?;
                Ok((self.request(&request.number)?, issued))
            }
            Decision::Unspecified => Err(RaError::operator_signature(
                "the signed content names no decision",
            )),
        }
    }

    /// A request confirmed whose certificates were never issued (the HSM failed after the
    /// confirmation, or the process stopped between the two commits): a new confirmation,
    /// signed and checked like the first, issues them now. It is recorded (payload, audit
    /// `request.issuance_resumed`) with the new reservations, in one commit; a request with
    /// certificates already is not issued twice.
    async fn resume_issuance(
        &self,
        caller: &str,
        request: &RequestRow,
        operator_serial: &str,
        payload_sha256: String,
    ) -> Result<(RequestRow, Vec<nuc_ca::Issued>), RaError> {
        if !self.issued_of(&request.number)?.is_empty() {
            return Err(RaError::new(
                ReasonCode::RequestState,
                format!(
                    "request {} is confirmed and already has certificates",
                    request.number
                ),
            ));
        }
        let actor = format!("operator:{operator_serial}");
        let resume = Transition {
            number: request.number.clone(),
            from: vec![RequestState::Confirmed],
            to: RequestState::Confirmed,
            refusal_reason: None,
            decided_by: Some(operator_serial.to_owned()),
            identification: None,
            payload_sha256: Some(payload_sha256),
            notify: vec![],
            audit: AuditEntry {
                actor: actor.clone(),
                action: "request.issuance_resumed".into(),
                object: format!("request:{}", request.number),
                details: serde_json::json!({ "via": caller }),
            },
        };
        let identification = request.identification.unwrap_or(Identification::InPerson);
        tracing::warn!(number = %request.number, "resuming the issuance of a confirmed request");
        let issued = self
            .issue_for(
                request,
                identification,
                &actor,
                Some(resume),
                RequestState::Confirmed,
            )
            .await?;
        Ok((self.request(&request.number)?, issued))
    }
}
