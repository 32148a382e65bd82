//! What every new request goes through, whichever flow brings it (F1 online, F2 renewal, F4 at
//! the counter): the checks of its fields and keys, the registry, and its registration.

use nuc_core::{
    Bin, Identification, Iin, KeyStorage, Notice, ReasonCode, RequestKind, RequestState,
};
use nuc_store::{AuditEntry, NewRequest, RequestRow};

use crate::{Ra, RaError};

/// An application as a caller sends it (F1 step 1, F2, F4).
#[derive(Debug, Clone, Default)]
pub struct Application {
    pub idempotency_key: Option<String>,
    pub iin: String,
    pub bin: Option<String>,
    pub email: String,
    pub auth_csr: Vec<u8>,
    pub sign_csr: Vec<u8>,
    /// Where the keys were generated: a file (F1, F2) or a card at a CON (F4).
    pub key_storage: KeyStorage,
    /// The card's own serial (F4), for the audit log.
    pub card_serial: Option<String>,
}

/// An applicant as the registry knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applicant {
    pub iin: String,
    pub bin: Option<String>,
    pub surname: String,
    pub name: String,
    pub patronymic: Option<String>,
    pub organization: Option<String>,
    pub role: Option<String>,
}

/// An application whose fields passed the checks.
pub(crate) struct CheckedApplication {
    pub iin: Iin,
    pub bin: Option<Bin>,
    pub email: String,
}

/// What the registry says about an applicant, kept with the request: the subject is built
/// from this and never from the applicant's own PKCS#10.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct RegisteredSubject {
    pub surname: String,
    pub name: String,
    pub patronymic: Option<String>,
    pub organization: Option<String>,
    pub role: Option<String>,
    /// The person's e-mail in the registry when the request was registered: where the alert of
    /// an issuance in their name goes. Absent in requests registered before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_email: Option<String>,
}

/// A new request about to be registered.
pub(crate) struct Registration<'a> {
    pub caller: &'a str,
    pub checked: &'a CheckedApplication,
    pub app: &'a Application,
    pub subject: RegisteredSubject,
    pub idempotency_key: Option<String>,
    pub number: &'a str,
    pub kind: RequestKind,
    pub state: RequestState,
    pub expires_at: i64,
    pub payload_sha256: Option<String>,
    pub notice: Option<Notice>,
    /// F2: the certificate that signed the renewal, and how many remote renewals in a row the
    /// request ends (0 for a request through a CON).
    pub renewed_from: Option<String>,
    pub remote_renewals: u32,
}

pub(crate) fn idempotency_key(k: Option<&str>) -> Result<Option<String>, RaError> {
    match k.map(str::trim) {
        Some("") | None => Ok(None),
        Some(k) if k.len() > 128 => Err(RaError::invalid(
            "idempotency_key",
            "longer than 128 characters",
        )),
        Some(k) => Ok(Some(k.to_owned())),
    }
}

/// A retry under an idempotency key must be the same application, field for field.
fn same_application(existing: &RequestRow, app: &Application) -> Result<(), RaError> {
    let bin = app.bin.as_deref().map(str::trim).filter(|b| !b.is_empty());
    if existing.iin != app.iin.trim()
        || existing.auth_csr != app.auth_csr
        || existing.sign_csr != app.sign_csr
        || existing.bin.as_deref() != bin
        || existing.email.as_deref() != Some(app.email.trim())
        || existing.key_storage != app.key_storage
    {
        return Err(RaError::invalid(
            "idempotency_key",
            "was already used for a different application",
        ));
    }
    Ok(())
}

/// The AUTH and SIGN profiles of an individual, or of a legal entity's employee.
pub(crate) fn profiles_for(bin: Option<&str>) -> (&'static str, &'static str) {
    if bin.is_some() {
        ("legal-auth", "legal-sign")
    } else {
        ("individual-auth", "individual-sign")
    }
}

pub(crate) fn parse_iin(text: &str) -> Result<Iin, RaError> {
    Iin::parse(text).map_err(|e| RaError::new(ReasonCode::InvalidArgument, e.to_string()))
}

pub(crate) fn parse_bin(text: Option<&str>) -> Result<Option<Bin>, RaError> {
    match text.map(str::trim).filter(|b| !b.is_empty()) {
        Some(b) => Ok(Some(Bin::parse(b).map_err(|e| {
            RaError::new(ReasonCode::InvalidArgument, e.to_string())
        })?)),
        None => Ok(None),
    }
}

impl Ra {
    /// Field checks of an application, before any registry call: IIN/BIN check digits, the
    /// e-mail, both keys (profile rules, proof of possession, not already certified, distinct).
    pub(crate) fn check_application(
        &self,
        app: &Application,
    ) -> Result<CheckedApplication, RaError> {
        let iin = parse_iin(&app.iin)?;
        let bin = parse_bin(app.bin.as_deref())?;
        let email = app.email.trim().to_owned();
        nuc_ca::subject::check_email(&email).map_err(RaError::from)?;
        let (auth_profile, sign_profile) = profiles_for(bin.as_ref().map(|b| b.as_str()));
        let mut fingerprints = Vec::new();
        for (field, der, profile) in [
            ("auth_csr", &app.auth_csr, auth_profile),
            ("sign_csr", &app.sign_csr, sign_profile),
        ] {
            let checked = self.ca.check_key(profile, der).map_err(|e| match e {
                nuc_ca::CaError::CaState(m) => RaError::new(ReasonCode::CaState, m),
                e => RaError::new(ReasonCode::KeyRejected, format!("{field}: {e}")),
            })?;
            if let Some(serial) = self.store.key_certified(&checked.spki_sha256)? {
                return Err(RaError::new(
                    ReasonCode::KeyRejected,
                    format!("{field}: this key is already certified (serial {serial})"),
                ));
            }
            fingerprints.push(checked.spki_sha256);
        }
        if fingerprints[0] == fingerprints[1] {
            return Err(RaError::new(
                ReasonCode::KeyRejected,
                "sign_csr: AUTH and SIGN need two different keys",
            ));
        }
        Ok(CheckedApplication { iin, bin, email })
    }

    /// The request an idempotency key already registered, if this is a retry of it.
    pub(crate) fn replayed_request(
        &self,
        caller: &str,
        key: Option<&str>,
        app: &Application,
    ) -> Result<Option<RequestRow>, RaError> {
        let Some(k) = key else { return Ok(None) };
        let Some(existing) = self.store.request_by_idempotency(caller, k)? else {
            return Ok(None);
        };
        same_application(&existing, app)?;
        Ok(Some(existing))
    }

    /// F1 step 2: the registry, through SHEP. Absent → refusal; down → UNAVAILABLE; either way
    /// nothing is stored.
    pub(crate) async fn registry_subject(
        &self,
        iin: &Iin,
        bin: Option<&Bin>,
    ) -> Result<RegisteredSubject, RaError> {
        let person = self.registry.person(iin).await?;
        let (organization, role) = match bin {
            Some(b) => {
                let (entity, role) =
                    nuc_registry::employee_role(self.registry.as_ref(), b, iin).await?;
                (Some(entity.name), Some(role.as_str().to_owned()))
            }
            None => (None, None),
        };
        Ok(RegisteredSubject {
            surname: person.surname,
            name: person.name,
            patronymic: person.patronymic,
            organization,
            role,
            registry_email: person.email.filter(|e| !e.trim().is_empty()),
        })
    }

    /// Registers a checked application. `Ok((row, false))`: another call with the same
    /// idempotency key registered it first, while this one was checking.
    pub(crate) fn register(&self, r: Registration<'_>) -> Result<(RequestRow, bool), RaError> {
        let Registration {
            caller,
            checked,
            app,
            subject,
            idempotency_key,
            number,
            kind,
            state,
            expires_at,
            payload_sha256,
            notice,
            renewed_from,
            remote_renewals,
        } = r;
        let role = subject.role.clone();
        let (row, created) = self.store.register_request(
            &NewRequest {
                number: number.to_owned(),
                kind,
                state,
                iin: checked.iin.to_string(),
                bin: checked.bin.as_ref().map(|b| b.to_string()),
                role,
                email: Some(checked.email.clone()),
                subject_json: serde_json::to_string(&subject).expect("plain struct serialises"),
                auth_csr: app.auth_csr.clone(),
                sign_csr: app.sign_csr.clone(),
                identification: (state == RequestState::Verified).then_some(Identification::Remote),
                registered_at: self.now(),
                expires_at,
                payload_sha256,
                key_storage: app.key_storage,
                renewed_from: renewed_from.clone(),
                remote_renewals,
            },
            idempotency_key.map(|k| (caller.to_owned(), k)),
            notice,
            &AuditEntry {
                actor: caller.into(),
                action: "request.registered".into(),
                object: format!("request:{number}"),
                details: serde_json::json!({
                    "kind": kind.as_str(),
                    "state": state.as_str(),
                    "iin": checked.iin.as_str(),
                    "bin": checked.bin.as_ref().map(|b| b.as_str()),
                    "key_storage": app.key_storage.as_str(),
                    "card_serial": app.card_serial,
                    "renewed_from": renewed_from,
                    "remote_renewals": remote_renewals,
                }),
            },
        )?;
        if !created {
            same_application(&row, app)?;
        }
        Ok((row, created))
    }
}
