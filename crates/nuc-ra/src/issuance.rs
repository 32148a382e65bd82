//! Issuance for a request: the AUTH and SIGN certificates, composed with the request's
//! transitions so that they commit together — the reservations with the decision that
//! allows them, the certificates with the request becoming issued and its notices: the
//! applicant's, and the alert to the holder's address on record, which the applicant cannot
//! choose (a person who did not ask for keys learns that someone got them in their name).

use nuc_ca::{IssueRequest, Issued};
use nuc_core::{
    Bin, Identification, Iin, Notice, ReasonCode, RequestKind, RequestState, SubjectInfo,
};
use nuc_store::{AuditEntry, Issuance, RequestRow, Transition};

use crate::application::{RegisteredSubject, profiles_for};
use crate::{Ra, RaError, notices};

impl Ra {
    /// The certificates a request already produced, as an issuance answers them.
    pub(crate) fn issued_of(&self, number: &str) -> Result<Vec<Issued>, RaError> {
        Ok(self
            .store
            .certificates_of_request(number)?
            .into_iter()
            .map(|(serial_hex, profile, der)| Issued {
                serial_hex,
                der,
                subject: String::new(),
                profile,
            })
            .collect())
    }

    /// The certificates a request produced (F4: what the workstation writes onto the card,
    /// again if the card was pulled out before the write completed).
    pub fn issued_certificates(
        &self,
        number_text: &str,
    ) -> Result<(RequestRow, Vec<Issued>), RaError> {
        let request = self.request(number_text)?;
        let issued = self.issued_of(&request.number)?;
        Ok((request, issued))
    }

    /// Issues the AUTH and SIGN certificates of a request (in the HSM: this blocks), in two
    /// commits: the reservations with `before`, the certificates with the request
    /// moving from `issuing_from` to issued (and its notice).
    pub(crate) async fn issue_for(
        &self,
        request: &RequestRow,
        identification: Identification,
        actor: &str,
        before: Option<Transition>,
        issuing_from: RequestState,
    ) -> Result<Vec<Issued>, RaError> {
        let subject: RegisteredSubject =
            serde_json::from_str(&request.subject_json).map_err(|e| {
                RaError::new(
                    ReasonCode::Internal,
                    format!("stored subject unreadable: {e}"),
                )
            })?;
        let info = SubjectInfo {
            iin: Some(
                Iin::parse(&request.iin)
                    .map_err(|e| RaError::new(ReasonCode::Internal, e.to_string()))?,
            ),
            surname: Some(subject.surname.clone()),
            name: Some(subject.name.clone()),
            patronymic: subject.patronymic.clone(),
            organization: match (&request.bin, &subject.organization) {
                (Some(b), Some(o)) => Some(nuc_core::LegalEntity {
                    bin: Bin::parse(b)
                        .map_err(|e| RaError::new(ReasonCode::Internal, e.to_string()))?,
                    name: o.clone(),
                }),
                _ => None,
            },
            email: request.email.clone(),
            common_name: None,
        };
        let (auth, sign) = profiles_for(request.bin.as_deref());
        let orders: Vec<IssueRequest> = [
            (auth, request.auth_csr.clone()),
            (sign, request.sign_csr.clone()),
        ]
        .into_iter()
        .map(|(profile, csr)| IssueRequest {
            profile: profile.into(),
            csr,
            subject: info.clone(),
            role: subject.role.clone(),
            identification: Some(identification),
            dns_names: vec![],
            actor: actor.into(),
            request_number: Some(request.number.clone()),
            key_storage: request.key_storage,
        })
        .collect();
        let after =
            self.finish_transition(request, &subject, identification, issuing_from, actor)?;
        Ok(self.ca.issue(
            &orders,
            &Issuance::with(self.store.as_ref(), before, Some(after)),
        )?)
    }

    /// The request becoming issued, with the "certificates issued" notice to the applicant and
    /// the alert to the holder's address on record.
    fn finish_transition(
        &self,
        request: &RequestRow,
        subject: &RegisteredSubject,
        identification: Identification,
        from: RequestState,
        actor: &str,
    ) -> Result<Transition, RaError> {
        let link = self
            .config
            .download_url
            .replace("{number}", &request.number);
        let mut notify: Vec<Notice> = request
            .email
            .as_deref()
            .map(|to| notices::issued(to, &request.number, &link))
            .into_iter()
            .collect();
        match self.address_on_record(request, subject)? {
            Some(to) => notify.push(notices::issuance_alert(
                &to,
                &request.number,
                &nuc_core::time::rfc3339(self.now()),
                &channel(request, identification),
                request.email.as_deref().unwrap_or("—"),
            )),
            None => {
                tracing::warn!(
                    request = %request.number,
                    "no address on record for the holder: the issuance alert cannot be sent"
                );
                metrics::counter!("nuc_issuance_alerts_unaddressed_total").increment(1);
            }
        }
        Ok(Transition {
            number: request.number.clone(),
            from: vec![from],
            to: RequestState::Issued,
            refusal_reason: None,
            decided_by: None,
            identification: None,
            payload_sha256: None,
            notify,
            audit: AuditEntry {
                actor: actor.into(),
                action: "request.issued".into(),
                object: format!("request:{}", request.number),
                details: serde_json::json!({ "identification": request.identification.map(|i| i.as_str()) }),
            },
        })
    }

    /// Where the holder hears of an issuance in their name, whatever address the applicant
    /// gave: the registry's e-mail as it stood at registration, else the address of the
    /// holder's latest earlier certificates. `None`: the holder has none on record.
    fn address_on_record(
        &self,
        request: &RequestRow,
        subject: &RegisteredSubject,
    ) -> Result<Option<String>, RaError> {
        if let Some(email) = &subject.registry_email {
            return Ok(Some(email.clone()));
        }
        for earlier in self.store.certificates_of(&request.iin)?.iter().rev() {
            let Some(number) = earlier.request_number.as_deref() else {
                continue;
            };
            if number == request.number {
                continue;
            }
            if let Some(email) = self.store.request(number)?.and_then(|r| r.email) {
                return Ok(Some(email));
            }
        }
        Ok(None)
    }
}

/// How the request came to be issued, in Kazakh and Russian (one value for both templates).
fn channel(request: &RequestRow, identification: Identification) -> String {
    match request.kind {
        RequestKind::First if identification == Identification::Organization => {
            "ұйымның кадр қызметі растаған онлайн өтініш / онлайн-заявление, подтверждённое кадровой службой организации"
                .to_owned()
        }
        RequestKind::First => {
            "ХҚКО операторы растаған онлайн өтініш / онлайн-заявление, подтверждённое оператором ЦОН"
                .to_owned()
        }
        RequestKind::Card => format!(
            "ХҚКО-да, кілттер тасымалдағышта ({0}) / в ЦОН, ключи на носителе ({0})",
            request.key_storage
        ),
        RequestKind::Renewal => format!(
            "қашықтан қайта шығару, {0} куәлігімен қол қойылған / удалённый повторный выпуск, подписанный свидетельством {0}",
            request.renewed_from.as_deref().unwrap_or("—")
        ),
    }
}
