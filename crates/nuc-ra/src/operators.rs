//! F6: the NUC's operators. An operator certificate is issued at a CON's request (subject
//! from the registry); an operator absent over 15 days is suspended and resumed; a dismissed
//! operator's certificates are revoked, and dismissal is final.

use nuc_ca::{IssueRequest, Issued};
use nuc_core::{Identification, OperatorStatus, ReasonCode, RevocationReason, SubjectInfo};
use nuc_store::{AuditEntry, Issuance, OperatorRow};

use crate::application::parse_iin;
use crate::revocation::RevocationAsk;
use crate::{Ra, RaError};

impl Ra {
    /// Issues an operator certificate (subject from the registry) and registers the operator;
    /// a suspended operator stays suspended, a dismissed one is refused.
    pub async fn issue_operator(
        &self,
        caller: &str,
        iin_text: &str,
        role: &str,
        con: &str,
        csr_der: Vec<u8>,
    ) -> Result<Issued, RaError> {
        let iin = parse_iin(iin_text)?;
        if con.trim().is_empty() {
            return Err(RaError::invalid(
                "con",
                "the CON the operator works at is required",
            ));
        }
        let before = self.store.operator(iin.as_str())?;
        if before
            .as_ref()
            .is_some_and(|o| o.status == OperatorStatus::Dismissed)
        {
            return Err(RaError::new(
                ReasonCode::OperatorDismissed,
                format!("operator {iin} is dismissed; a new certificate does not reinstate them"),
            ));
        }
        let person = self.registry.person(&iin).await?;
        let order = IssueRequest {
            profile: "operator".into(),
            csr: csr_der,
            subject: SubjectInfo {
                iin: Some(iin.clone()),
                surname: Some(person.surname.clone()),
                name: Some(person.name.clone()),
                patronymic: person.patronymic.clone(),
                organization: None,
                email: None,
                common_name: None,
            },
            role: Some(role.to_owned()),
            identification: Some(Identification::InPerson),
            dns_names: vec![],
            actor: caller.into(),
            request_number: None,
            key_storage: Default::default(),
        };
        let issued = self
            .ca
            .issue(
                std::slice::from_ref(&order),
                &Issuance::alone(self.store.as_ref()),
            )?
            .remove(0);
        let status = match self.store.operator(iin.as_str())? {
            Some(o) if o.status == OperatorStatus::Suspended => OperatorStatus::Suspended,
            _ => OperatorStatus::Active,
        };
        self.store.put_operator(
            &OperatorRow {
                iin: iin.to_string(),
                surname: person.surname,
                name: person.name,
                role: role.to_owned(),
                con: con.trim().to_owned(),
                status,
            },
            &AuditEntry {
                actor: caller.into(),
                action: "operator.registered".into(),
                object: format!("operator:{iin}"),
                details: serde_json::json!({ "role": role, "con": con, "serial": issued.serial_hex }),
            },
        )?;
        Ok(issued)
    }

    /// Suspends (absent over 15 days), resumes, or dismisses an operator (whose certificates
    /// are then revoked, reason cessationOfOperation).
    pub fn set_operator_status(
        &self,
        caller: &str,
        iin_text: &str,
        status: OperatorStatus,
        why: &str,
    ) -> Result<OperatorRow, RaError> {
        let iin = parse_iin(iin_text)?;
        let current = self.store.operator(iin.as_str())?.ok_or_else(|| {
            RaError::new(
                ReasonCode::OperatorNotFound,
                format!("no operator with IIN {iin}"),
            )
        })?;
        if current.status == OperatorStatus::Dismissed {
            return Err(RaError::new(
                ReasonCode::OperatorDismissed,
                format!("operator {iin} is dismissed; dismissal is final"),
            ));
        }
        let action = match status {
            OperatorStatus::Suspended => "operator.suspended",
            OperatorStatus::Active => "operator.resumed",
            OperatorStatus::Dismissed => "operator.dismissed",
        };
        self.store.set_operator_status(
            iin.as_str(),
            status,
            &AuditEntry {
                actor: caller.into(),
                action: action.into(),
                object: format!("operator:{iin}"),
                details: serde_json::json!({ "reason": why, "previous": current.status.as_str() }),
            },
        )?;
        if status == OperatorStatus::Dismissed {
            for serial in self.store.serials_for(iin.as_str(), "operator")? {
                let ask = RevocationAsk {
                    serial: &serial,
                    reason: RevocationReason::CessationOfOperation,
                    invalidity_date: None,
                    why: "operator dismissed",
                };
                match self.revoke(caller, &ask, None) {
                    Ok(_)
                    | Err(RaError {
                        reason: ReasonCode::AlreadyRevoked,
                        ..
                    }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        self.store
            .operator(iin.as_str())?
            .ok_or_else(|| RaError::new(ReasonCode::OperatorNotFound, iin.to_string()))
    }
}
