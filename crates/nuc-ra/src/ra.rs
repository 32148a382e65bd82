//! The flows: application (F1), operator decision (F1 steps 4–6), status and download (F7),
//! operators (F6) and revocations (F5, admin).

use std::sync::Arc;

use nuc_api::v1::{
    OperatorDecision, RenewalApplication, RevocationOrder, operator_decision::Decision,
};
use nuc_ca::csr;
use nuc_ca::{Ca, IssueRequest, Issued};
use nuc_core::{Bin, Iin, KeyStorage, ReasonCode, SubjectInfo};
use nuc_registry::Registry;
use nuc_store::{
    AuditEntry, NewRequest, OperatorRow, RequestRow, RequestState, RevocationRow, Transition,
};
use prost::Message;

use crate::clock::Clock;
use crate::error::RaError;
use crate::signer::{CheckedSigner, check_applicant, check_operator};
use crate::{bundle, number};

/// Settings of the RA.
#[derive(Debug, Clone)]
pub struct RaConfig {
    /// How long a registered application waits for the CON visit (SPEC F1 step 4: 30 days).
    pub request_ttl_secs: i64,
    /// Where applicants download their certificates; `{number}` is replaced.
    pub download_url: String,
}

impl Default for RaConfig {
    fn default() -> Self {
        Self {
            request_ttl_secs: 30 * 86_400,
            download_url: "https://pki.gov.kz/download/{number}".into(),
        }
    }
}

/// What an applicant downloads (F7).
#[derive(Debug, Clone)]
pub struct Download {
    /// (serial hex, profile, DER) of each certificate of the request.
    pub certificates: Vec<(String, String, Vec<u8>)>,
    /// PKCS#7 certs-only: those certificates and the CA chain.
    pub pkcs7_bundle: Vec<u8>,
}

/// An online application (F1 step 1).
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
struct CheckedApplication {
    iin: Iin,
    bin: Option<Bin>,
    email: String,
}

fn idempotency_key(k: Option<&str>) -> Result<Option<String>, RaError> {
    match k.map(str::trim) {
        Some("") | None => Ok(None),
        Some(k) if k.len() > 128 => Err(RaError::invalid(
            "idempotency_key",
            "longer than 128 characters",
        )),
        Some(k) => Ok(Some(k.to_owned())),
    }
}

/// What the registry says about an applicant, kept with the request: the subject is built
/// from this and never from the applicant's own PKCS#10.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct RegisteredSubject {
    surname: String,
    name: String,
    patronymic: Option<String>,
    organization: Option<String>,
    role: Option<String>,
}

/// The registration authority. Cheap to share: hold it in an `Arc`.
pub struct Ra {
    pub ca: Arc<Ca>,
    registry: Arc<dyn Registry>,
    clock: Arc<dyn Clock>,
    config: RaConfig,
    /// Woken after every revocation: the publisher listens to put out a delta CRL at once.
    revoked: Arc<tokio::sync::Notify>,
}

/// `payload_type` of each signed payload (field 15 in common.proto): a signature given for one
/// purpose is never read as another, even where two encodings coincide.
pub const OPERATOR_DECISION: &str = "nuc.v1.OperatorDecision";
pub const REVOCATION_ORDER: &str = "nuc.v1.RevocationOrder";
pub const RENEWAL_APPLICATION: &str = "nuc.v1.RenewalApplication";

fn payload_type_is(found: &str, want: &str) -> Result<(), String> {
    if found == want {
        Ok(())
    } else {
        Err(format!(
            "the signed content is a {:?}, not a {want}",
            if found.is_empty() {
                "payload without a type"
            } else {
                found
            }
        ))
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
        || existing.key_storage != app.key_storage.as_str()
    {
        return Err(RaError::invalid(
            "idempotency_key",
            "was already used for a different application",
        ));
    }
    Ok(())
}

/// Decodes a signed payload and checks that it is of the type this call expects.
fn decode_payload<P: Message + Default>(
    content: &[u8],
    type_name: &str,
    payload_type: impl Fn(&P) -> &str,
    fail: fn(String) -> RaError,
) -> Result<P, RaError> {
    let p = P::decode(content)
        .map_err(|e| fail(format!("the signed content is not a {type_name}: {e}")))?;
    payload_type_is(payload_type(&p), type_name).map_err(fail)?;
    Ok(p)
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(openssl::sha::sha256(b))
}

fn profiles_for(bin: Option<&str>) -> (&'static str, &'static str) {
    if bin.is_some() {
        ("legal-auth", "legal-sign")
    } else {
        ("individual-auth", "individual-sign")
    }
}

impl Ra {
    pub fn new(
        ca: Arc<Ca>,
        registry: Arc<dyn Registry>,
        clock: Arc<dyn Clock>,
        config: RaConfig,
    ) -> Self {
        Self {
            ca,
            registry,
            clock,
            config,
            revoked: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Wakes (once, however many revocations happened meanwhile) after a revocation is
    /// recorded. OCSP needs no such signal: it reads the revocations as they are stored.
    pub fn revocations(&self) -> Arc<tokio::sync::Notify> {
        self.revoked.clone()
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// F1 steps 1–3: check the application, the applicant in the registry, register it under a
    /// number and queue the e-mail with that number. The same idempotency key from the same
    /// caller returns the request registered the first time.
    pub async fn submit_application(
        &self,
        caller: &str,
        app: Application,
    ) -> Result<RequestRow, RaError> {
        let row = self
            .register_new(caller, &app, "first", |number, email, expires_at| {
                Some((
                    "application".into(),
                    email.to_owned(),
                    format!("НУЦ РК: заявление {number}"),
                    format!(
                        "Ваше заявление зарегистрировано под номером {number}.\n\
                         Обратитесь в ЦОН с удостоверением личности до {} (30 дней).\n",
                        nuc_core::time::rfc3339(expires_at)
                    ),
                ))
            })
            .await?;
        tracing::info!(number = %row.number, "application registered");
        Ok(row)
    }

    /// F4 steps 1–5, at a CON: the applicant is at the counter, identified by the operator,
    /// and the keys were generated on the applicant's card. The request is checked and
    /// registered like an online application (registry included), with no e-mail to come to a
    /// CON — the applicant is there; the operator confirms it next with [`Ra::decide`]. The
    /// same idempotency key from the same workstation returns the request registered first.
    pub async fn register_at_counter(
        &self,
        caller: &str,
        app: Application,
    ) -> Result<RequestRow, RaError> {
        if !app.key_storage.on_card() {
            return Err(RaError::invalid(
                "key_storage",
                "a registration at the counter is for keys generated on an ID card or a SIM card",
            ));
        }
        if let Some(serial) = &app.card_serial
            && (serial.len() > 64
                || !serial
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err(RaError::invalid(
                "card_serial",
                "at most 64 letters, digits or dashes",
            ));
        }
        // No e-mail asking to come to a CON: the applicant is at the counter.
        let row = self
            .register_new(caller, &app, "card", |_, _, _| None)
            .await?;
        tracing::info!(number = %row.number, key_storage = %app.key_storage, "registered at a CON counter");
        Ok(row)
    }

    /// F4 step 2: the applicant as the registry knows them (IIN, and BIN for an employee), for
    /// the operator to compare with the identity document. Nothing is stored.
    pub async fn lookup_applicant(
        &self,
        iin: &str,
        bin: Option<&str>,
    ) -> Result<Applicant, RaError> {
        let iin = Iin::parse(iin)
            .map_err(|e| RaError::new(ReasonCode::InvalidArgument, e.to_string()))?;
        let bin = match bin.map(str::trim).filter(|b| !b.is_empty()) {
            Some(b) => Some(
                Bin::parse(b)
                    .map_err(|e| RaError::new(ReasonCode::InvalidArgument, e.to_string()))?,
            ),
            None => None,
        };
        let checked = CheckedApplication {
            iin,
            bin,
            email: String::new(),
        };
        let s = self.registry_subject(&checked).await?;
        Ok(Applicant {
            iin: checked.iin.to_string(),
            bin: checked.bin.map(|b| b.to_string()),
            surname: s.surname,
            name: s.name,
            patronymic: s.patronymic,
            organization: s.organization,
            role: s.role,
        })
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

    /// A new request waiting for a CON's decision (F1 online, F4 at the counter): a retry of
    /// the same idempotency key answers with the request registered first (before any check:
    /// its keys may be certified by now); otherwise the fields, the keys and the registry are
    /// checked, and the request is registered with the e-mail `notify` makes of its number,
    /// address and deadline.
    async fn register_new(
        &self,
        caller: &str,
        app: &Application,
        kind: &str,
        notify: impl FnOnce(&str, &str, i64) -> Option<(String, String, String, String)>,
    ) -> Result<RequestRow, RaError> {
        let key = idempotency_key(app.idempotency_key.as_deref())?;
        if let Some(existing) = self.replayed_request(caller, key.as_deref(), app)? {
            return Ok(existing);
        }
        let checked = self.check_application(app)?;
        let subject = self.registry_subject(&checked).await?;
        let number = number::generate();
        let expires_at = self.now() + self.config.request_ttl_secs;
        let message = notify(&number, &checked.email, expires_at);
        let (row, _) = self.register(
            caller,
            &checked,
            app,
            subject,
            key,
            &number,
            kind,
            RequestState::Registered,
            expires_at,
            None,
            message,
        )?;
        Ok(row)
    }

    /// F2: a renewal signed by the applicant's currently valid certificate. No CON visit: the
    /// request is registered as verified and the certificates are issued at once, with the
    /// identification method "remote".
    pub async fn submit_renewal(
        &self,
        caller: &str,
        idempotency: Option<&str>,
        signed: &[u8],
    ) -> Result<(RequestRow, Vec<Issued>), RaError> {
        let key = idempotency_key(idempotency)?;
        let now = self.now();
        let verified = nuc_cms::verify(signed, None).map_err(RaError::applicant_signature)?;
        let signer = check_applicant(self, &verified.signer_cert_der, now)?;
        let renewal: RenewalApplication = decode_payload(
            &verified.content,
            RENEWAL_APPLICATION,
            |p: &RenewalApplication| &p.payload_type,
            RaError::applicant_signature::<String>,
        )?;
        if renewal.iin.trim() != signer.iin {
            return Err(RaError::new(
                ReasonCode::IinMismatch,
                format!(
                    "the renewal is for IIN {}, the signer's certificate names IIN {}",
                    renewal.iin, signer.iin
                ),
            ));
        }
        if renewal.nonce.trim().is_empty() {
            return Err(RaError::applicant_signature(
                "the signed renewal has no nonce",
            ));
        }
        let app = Application {
            idempotency_key: key.clone(),
            iin: renewal.iin.clone(),
            bin: Some(renewal.bin.clone()),
            email: renewal.email.clone(),
            auth_csr: renewal.auth_csr.clone(),
            sign_csr: renewal.sign_csr.clone(),
            key_storage: KeyStorage::File,
            card_serial: None,
        };
        if let Some(existing) = self.replayed_request(caller, key.as_deref(), &app)? {
            let issued = self.issued_of(&existing.number)?;
            return Ok((existing, issued));
        }
        let checked = self.check_application(&app)?;
        let subject = self.registry_subject(&checked).await?;
        let number = number::generate();
        let (row, created) = self.register(
            caller,
            &checked,
            &app,
            subject,
            key,
            &number,
            "renewal",
            RequestState::Verified,
            now,
            Some(sha256_hex(&verified.content)),
            None,
        )?;
        if !created {
            // A concurrent retry registered it: answer with what that one issues.
            let issued = self.issued_of(&row.number)?;
            return Ok((row, issued));
        }
        let actor = format!("holder:{}", signer.serial_hex);
        let issued = self
            .issue_for(&row, "remote", &actor, None, RequestState::Verified)
            .await?;
        Ok((self.request(&row.number)?, issued))
    }

    /// The certificates a request already produced, as an issuance answers them.
    fn issued_of(&self, number: &str) -> Result<Vec<Issued>, RaError> {
        Ok(self
            .ca
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

    /// Field checks of an application, before any registry call: IIN/BIN check digits, the
    /// e-mail, both keys (profile rules, proof of possession, not already certified, distinct).
    fn check_application(&self, app: &Application) -> Result<CheckedApplication, RaError> {
        let iin = Iin::parse(&app.iin)
            .map_err(|e| RaError::new(ReasonCode::InvalidArgument, e.to_string()))?;
        let bin = match app.bin.as_deref().map(str::trim).filter(|b| !b.is_empty()) {
            Some(b) => Some(
                Bin::parse(b)
                    .map_err(|e| RaError::new(ReasonCode::InvalidArgument, e.to_string()))?,
            ),
            None => None,
        };
        let email = app.email.trim().to_owned();
        nuc_ca::subject::check_email(&email).map_err(RaError::from)?;
        let (auth_profile, sign_profile) = profiles_for(bin.as_ref().map(|b| b.as_str()));
        let mut fingerprints = Vec::new();
        for (field, der, profile) in [
            ("auth_csr", &app.auth_csr, auth_profile),
            ("sign_csr", &app.sign_csr, sign_profile),
        ] {
            let profile = self.ca.policy.end_entity(profile).ok_or_else(|| {
                RaError::new(
                    ReasonCode::CaState,
                    format!("policy has no profile {profile}"),
                )
            })?;
            let checked = csr::check(der, profile)
                .map_err(|e| RaError::new(ReasonCode::KeyRejected, format!("{field}: {e}")))?;
            if let Some(serial) = self.ca.store.key_certified(&checked.spki_sha256)? {
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
    fn replayed_request(
        &self,
        caller: &str,
        key: Option<&str>,
        app: &Application,
    ) -> Result<Option<RequestRow>, RaError> {
        let Some(k) = key else { return Ok(None) };
        let Some(existing) = self.ca.store.request_by_idempotency(caller, k)? else {
            return Ok(None);
        };
        same_application(&existing, app)?;
        Ok(Some(existing))
    }

    /// F1 step 2: the registry, through SHEP. Absent → refusal; down → UNAVAILABLE; either way
    /// nothing is stored.
    async fn registry_subject(
        &self,
        checked: &CheckedApplication,
    ) -> Result<RegisteredSubject, RaError> {
        let person = self.registry.person(&checked.iin).await?;
        let (organization, role) = match &checked.bin {
            Some(b) => {
                let (entity, role) =
                    nuc_registry::employee_role(self.registry.as_ref(), b, &checked.iin).await?;
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
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn register(
        &self,
        caller: &str,
        checked: &CheckedApplication,
        app: &Application,
        subject: RegisteredSubject,
        key: Option<String>,
        number: &str,
        kind: &str,
        state: RequestState,
        expires_at: i64,
        payload_sha256: Option<String>,
        notify: Option<(String, String, String, String)>,
    ) -> Result<(RequestRow, bool), RaError> {
        let role = subject.role.clone();
        let (row, created) = self.ca.store.register_request(
            &NewRequest {
                number: number.to_owned(),
                kind: kind.into(),
                state,
                iin: checked.iin.to_string(),
                bin: checked.bin.as_ref().map(|b| b.to_string()),
                role,
                email: Some(checked.email.clone()),
                subject_json: serde_json::to_string(&subject).expect("plain struct serialises"),
                auth_csr: app.auth_csr.clone(),
                sign_csr: app.sign_csr.clone(),
                identification: (state == RequestState::Verified).then(|| "remote".to_owned()),
                registered_at: self.now(),
                expires_at,
                payload_sha256,
                key_storage: app.key_storage.as_str().to_owned(),
            },
            key.map(|k| (caller.to_owned(), k)),
            notify,
            &AuditEntry {
                actor: caller.into(),
                action: "request.registered".into(),
                object: format!("request:{number}"),
                details: serde_json::json!({
                    "kind": kind,
                    "state": state.as_str(),
                    "iin": checked.iin.as_str(),
                    "bin": checked.bin.as_ref().map(|b| b.as_str()),
                    "key_storage": app.key_storage.as_str(),
                    "card_serial": app.card_serial,
                }),
            },
        )?;
        if !created {
            // Another call with the same key registered first, while this one was checking.
            same_application(&row, app)?;
        }
        Ok((row, created))
    }

    /// A request by number (F7).
    pub fn request(&self, number_text: &str) -> Result<RequestRow, RaError> {
        if !number::is_valid(number_text) {
            return Err(RaError::invalid(
                "request_number",
                format!("{number_text:?} is not a valid request number"),
            ));
        }
        let number = number::canonical(number_text);
        self.ca.store.request(&number)?.ok_or_else(|| {
            RaError::new(ReasonCode::RequestNotFound, format!("no request {number}"))
        })
    }

    /// F1 steps 4–6: the operator's signed decision. A confirmation is followed at once by the
    /// issuance of the AUTH and SIGN certificates.
    pub async fn decide(
        &self,
        caller: &str,
        number_text: &str,
        session_operator: &str,
        signed: &[u8],
    ) -> Result<(RequestRow, Vec<Issued>), RaError> {
        let request = self.request(number_text)?;
        let now = self.now();
        let (operator, decision, content) = self.operator_signed(
            signed,
            session_operator,
            now,
            OPERATOR_DECISION,
            |p: &OperatorDecision| &p.payload_type,
        )?;
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
        let payload_sha256 = sha256_hex(&content);
        if request.state == RequestState::Registered && now > request.expires_at {
            self.ca.store.expire_requests(now, "system:expiry")?;
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
                let row = self.ca.store.transition(&Transition {
                    number: request.number.clone(),
                    from: vec![RequestState::Registered],
                    to: RequestState::Refused,
                    refusal_reason: Some(reason.to_owned()),
                    decided_by: Some(operator.serial_hex.clone()),
                    identification: None,
                    payload_sha256: Some(payload_sha256),
                    notify: request.email.clone().map(|to| {
                        (
                            "refused".into(),
                            to,
                            format!("НУЦ РК: заявление {} отклонено", request.number),
                            format!(
                                "Заявление {} отклонено оператором ЦОН: {reason}\n",
                                request.number
                            ),
                        )
                    }),
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
                    identification: Some("in-person".into()),
                    payload_sha256: Some(payload_sha256),
                    notify: None,
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
                        "in-person",
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
    /// confirmation, or the process stopped between the two commits): a new confirmation, signed
    /// and checked like the first, issues them now. It is recorded (payload, audit
    /// `request.issuance_resumed`) with the new reservations, in one commit; a request with
    /// certificates already is not issued twice.
    async fn resume_issuance(
        &self,
        caller: &str,
        request: &RequestRow,
        operator_serial: &str,
        payload_sha256: String,
    ) -> Result<(RequestRow, Vec<Issued>), RaError> {
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
            notify: None,
            audit: AuditEntry {
                actor: actor.clone(),
                action: "request.issuance_resumed".into(),
                object: format!("request:{}", request.number),
                details: serde_json::json!({ "via": caller }),
            },
        };
        let identification = request
            .identification
            .clone()
            .unwrap_or_else(|| "in-person".into());
        tracing::warn!(number = %request.number, "resuming the issuance of a confirmed request");
        let issued = self
            .issue_for(
                request,
                &identification,
                &actor,
                Some(resume),
                RequestState::Confirmed,
            )
            .await?;
        Ok((self.request(&request.number)?, issued))
    }

    /// Issues the AUTH and SIGN certificates of a request (in the HSM, off the async threads),
    /// in two commits: the reservations with `before`, the certificates with the request
    /// moving from `issuing_from` to issued (and its notification).
    async fn issue_for(
        &self,
        request: &RequestRow,
        identification: &str,
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
        let mut reqs = Vec::new();
        for (profile, csr) in [
            (auth, request.auth_csr.clone()),
            (sign, request.sign_csr.clone()),
        ] {
            reqs.push(IssueRequest {
                profile: profile.into(),
                csr,
                subject: info.clone(),
                role: subject.role.clone(),
                identification: Some(identification.into()),
                dns_names: vec![],
                actor: actor.into(),
                request_number: Some(request.number.clone()),
                key_storage: KeyStorage::parse(&request.key_storage).unwrap_or_default(),
            });
        }
        let after = self.finish_transition(request, issuing_from, actor);
        let ca = self.ca.clone();
        Ok(
            tokio::task::spawn_blocking(move || ca.issue_batch(&reqs, before, Some(after)))
                .await
                .map_err(|e| RaError::new(ReasonCode::Internal, format!("issuance task: {e}")))??,
        )
    }

    /// The request becoming issued, with the "certificates issued" e-mail.
    fn finish_transition(
        &self,
        request: &RequestRow,
        from: RequestState,
        actor: &str,
    ) -> Transition {
        let link = self
            .config
            .download_url
            .replace("{number}", &request.number);
        Transition {
            number: request.number.clone(),
            from: vec![from],
            to: RequestState::Issued,
            refusal_reason: None,
            decided_by: None,
            identification: None,
            payload_sha256: None,
            notify: request.email.clone().map(|to| {
                (
                    "issued".into(),
                    to,
                    format!(
                        "НУЦ РК: регистрационные свидетельства по заявлению {}",
                        request.number
                    ),
                    format!(
                        "Регистрационные свидетельства выпущены. Установите их по ссылке: {link}\n"
                    ),
                )
            }),
            audit: AuditEntry {
                actor: actor.into(),
                action: "request.issued".into(),
                object: format!("request:{}", request.number),
                details: serde_json::json!({ "identification": request.identification }),
            },
        }
    }

    /// F7: the certificates of an issued request, and a PKCS#7 certs-only bundle with the chain.
    pub fn download(&self, number_text: &str) -> Result<Download, RaError> {
        let request = self.request(number_text)?;
        let certs = self.ca.store.certificates_of_request(&request.number)?;
        if certs.is_empty() {
            return Err(RaError::new(
                ReasonCode::RequestState,
                format!(
                    "request {} has no certificates (it is {})",
                    request.number,
                    request.state.as_str()
                ),
            ));
        }
        let mut all: Vec<Vec<u8>> = certs.iter().map(|c| c.2.clone()).collect();
        all.push(self.ca.issuing.cert_der.clone());
        all.push(self.ca.root.cert_der.clone());
        let p7 = bundle::certs_only(&all)
            .map_err(|e| RaError::new(ReasonCode::Internal, format!("PKCS#7 bundle: {e}")))?;
        Ok(Download {
            certificates: certs,
            pkcs7_bundle: p7,
        })
    }

    /// Expires registered requests past their deadline (run by the scheduler and lazily).
    pub fn expire_due(&self) -> Result<Vec<String>, RaError> {
        Ok(self.ca.store.expire_requests(self.now(), "system:expiry")?)
    }

    /// F6: issues an operator certificate (subject from the registry) and registers the operator.
    pub async fn issue_operator(
        &self,
        caller: &str,
        iin_text: &str,
        role: &str,
        con: &str,
        csr_der: Vec<u8>,
    ) -> Result<Issued, RaError> {
        let iin = Iin::parse(iin_text)
            .map_err(|e| RaError::new(ReasonCode::InvalidArgument, e.to_string()))?;
        if con.trim().is_empty() {
            return Err(RaError::invalid(
                "con",
                "the CON the operator works at is required",
            ));
        }
        if let Some(o) = self.ca.store.operator(iin.as_str())?
            && o.status == "dismissed"
        {
            return Err(RaError::new(
                ReasonCode::OperatorDismissed,
                format!("operator {iin} is dismissed; a new certificate does not reinstate them"),
            ));
        }
        let person = self.registry.person(&iin).await?;
        let req = IssueRequest {
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
            identification: Some("in-person".into()),
            dns_names: vec![],
            actor: caller.into(),
            request_number: None,
            key_storage: Default::default(),
        };
        let ca = self.ca.clone();
        let issued = tokio::task::spawn_blocking(move || ca.issue(&req))
            .await
            .map_err(|e| RaError::new(ReasonCode::Internal, format!("issuance task: {e}")))??;
        let status = match self.ca.store.operator(iin.as_str())? {
            Some(o) if o.status == "suspended" => "suspended".to_owned(),
            _ => "active".to_owned(),
        };
        self.ca.store.put_operator(
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

    /// F6: suspend (absent over 15 days), resume, or dismiss (certificates revoked).
    pub fn set_operator_status(
        &self,
        caller: &str,
        iin_text: &str,
        status: &str,
        why: &str,
    ) -> Result<OperatorRow, RaError> {
        let iin = Iin::parse(iin_text)
            .map_err(|e| RaError::new(ReasonCode::InvalidArgument, e.to_string()))?;
        let current = self.ca.store.operator(iin.as_str())?.ok_or_else(|| {
            RaError::new(
                ReasonCode::OperatorNotFound,
                format!("no operator with IIN {iin}"),
            )
        })?;
        if current.status == "dismissed" {
            return Err(RaError::new(
                ReasonCode::OperatorDismissed,
                format!("operator {iin} is dismissed; dismissal is final"),
            ));
        }
        let action = match status {
            "suspended" => "operator.suspended",
            "active" => "operator.resumed",
            "dismissed" => "operator.dismissed",
            other => {
                return Err(RaError::invalid(
                    "status",
                    format!("unknown status {other:?}"),
                ));
            }
        };
        self.ca.store.set_operator_status(
            iin.as_str(),
            status,
            &AuditEntry {
                actor: caller.into(),
                action: action.into(),
                object: format!("operator:{iin}"),
                details: serde_json::json!({ "reason": why, "previous": current.status }),
            },
        )?;
        if status == "dismissed" {
            for serial in self.ca.store.serials_for(iin.as_str(), "operator")? {
                match self.revoke(caller, &serial, 5, None, None, "operator dismissed") {
                    Ok(_)
                    | Err(RaError {
                        reason: ReasonCode::AlreadyRevoked,
                        ..
                    }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        self.ca
            .store
            .operator(iin.as_str())?
            .ok_or_else(|| RaError::new(ReasonCode::OperatorNotFound, iin.to_string()))
    }

    /// Revokes a certificate (administrator, dismissal, or a verified signed order).
    pub fn revoke(
        &self,
        caller: &str,
        serial_text: &str,
        reason: i64,
        invalidity_date: Option<i64>,
        payload_sha256: Option<String>,
        why: &str,
    ) -> Result<RevocationRow, RaError> {
        let serial = serial_text.trim().to_ascii_lowercase();
        if serial.is_empty() || serial.len() > 40 || !serial.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(RaError::invalid(
                "serial",
                format!("{serial_text:?} is not a certificate serial in hex"),
            ));
        }
        if ![0, 1, 3, 4, 5].contains(&reason) {
            return Err(RaError::invalid(
                "reason",
                format!("CRL reason {reason} is not accepted (0, 1, 3, 4, 5)"),
            ));
        }
        let now = self.now();
        if let Some(d) = invalidity_date
            && d < 0
        {
            return Err(RaError::invalid("invalidity_date", "is before 1970"));
        }
        if let Some(d) = invalidity_date
            && d > now
        {
            return Err(RaError::invalid("invalidity_date", "is in the future"));
        }
        let row = RevocationRow {
            serial: serial.clone(),
            reason,
            revoked_at: now,
            invalidity_date,
            revoked_by: caller.into(),
        };
        // The holder is told at the address of the request the certificate answered, if any.
        let holder_email = match self
            .ca
            .store
            .certificate(&serial)?
            .and_then(|c| c.request_number)
        {
            Some(n) => self.ca.store.request(&n)?.and_then(|r| r.email),
            None => None,
        };
        self.ca.store.revoke(
            &row,
            payload_sha256,
            holder_email.map(|to| {
                ("revoked".into(), to, format!("НУЦ РК: свидетельство {serial} отозвано"), format!("Отозвано: {why}\n"))
            }),
            &AuditEntry {
                actor: caller.into(),
                action: "certificate.revoked".into(),
                object: format!("serial:{serial}"),
                details: serde_json::json!({ "reason": reason, "invalidity_date": invalidity_date, "why": why }),
            },
        )?;
        tracing::info!(%serial, reason, "certificate revoked");
        self.revoked.notify_one();
        Ok(row)
    }

    /// F5: a revocation at the counter, signed by the operator of the session.
    pub fn revoke_at_counter(
        &self,
        caller: &str,
        session_operator: &str,
        signed: &[u8],
    ) -> Result<RevocationRow, RaError> {
        let now = self.now();
        let (operator, order, content) = self.operator_signed(
            signed,
            session_operator,
            now,
            REVOCATION_ORDER,
            |p: &RevocationOrder| &p.payload_type,
        )?;
        if !order
            .operator_serial_hex
            .eq_ignore_ascii_case(&operator.serial_hex)
            || order.nonce.trim().is_empty()
        {
            return Err(RaError::operator_signature(
                "the signed order names another operator or has no nonce",
            ));
        }
        self.carry_out_order(
            &order,
            &content,
            &format!("operator:{}", operator.serial_hex),
            &format!("at a CON counter, via {caller}"),
        )
    }

    /// A payload of type `P` in a CMS signed by the operator of this session, with every check
    /// of [`check_operator`] passed; also the signed bytes (for the payload's hash).
    fn operator_signed<P: Message + Default>(
        &self,
        signed: &[u8],
        session_operator: &str,
        now: i64,
        type_name: &str,
        payload_type: impl Fn(&P) -> &str,
    ) -> Result<(CheckedSigner, P, Vec<u8>), RaError> {
        let verified = nuc_cms::verify(signed, None).map_err(RaError::operator_signature)?;
        let operator = check_operator(
            self,
            &verified.signer_cert_der,
            session_operator.trim(),
            now,
        )?;
        let payload = decode_payload(
            &verified.content,
            type_name,
            payload_type,
            RaError::operator_signature::<String>,
        )?;
        Ok((operator, payload, verified.content))
    }

    /// F3: a revocation signed online by the holder's own (valid) certificate.
    pub fn revoke_online(&self, caller: &str, signed: &[u8]) -> Result<RevocationRow, RaError> {
        let now = self.now();
        let verified = nuc_cms::verify(signed, None).map_err(RaError::applicant_signature)?;
        let signer = check_applicant(self, &verified.signer_cert_der, now)?;
        let order: RevocationOrder = decode_payload(
            &verified.content,
            REVOCATION_ORDER,
            |p: &RevocationOrder| &p.payload_type,
            RaError::applicant_signature::<String>,
        )?;
        if order.iin != signer.iin {
            return Err(RaError::new(
                ReasonCode::IinMismatch,
                format!(
                    "the order names IIN {}, the signer is {}",
                    order.iin, signer.iin
                ),
            ));
        }
        if order.nonce.trim().is_empty() {
            return Err(RaError::applicant_signature(
                "the signed order has no nonce",
            ));
        }
        self.carry_out_order(
            &order,
            &verified.content,
            &format!("holder:{}", signer.serial_hex),
            &format!("online by the holder, via {caller}"),
        )
    }

    /// A checked revocation order: a retry of one already carried out gets its revocation
    /// back; otherwise the certificate must be the named holder's, and it is revoked.
    fn carry_out_order(
        &self,
        order: &RevocationOrder,
        signed_content: &[u8],
        actor: &str,
        why: &str,
    ) -> Result<RevocationRow, RaError> {
        let payload_sha256 = sha256_hex(signed_content);
        if let Some(earlier) = self.earlier_revocation(order, &payload_sha256)? {
            return Ok(earlier);
        }
        self.check_holder(order)?;
        self.revoke(
            actor,
            &order.serial_hex,
            i64::from(order.reason),
            None,
            Some(payload_sha256),
            why,
        )
    }

    /// A signed order already carried out answers again with its revocation: the retry of a
    /// call whose answer was lost. Nothing changes.
    fn earlier_revocation(
        &self,
        order: &RevocationOrder,
        payload_sha256: &str,
    ) -> Result<Option<RevocationRow>, RaError> {
        if self.ca.store.payload_used(payload_sha256)?.is_none() {
            return Ok(None);
        }
        Ok(self
            .ca
            .store
            .revocation(&order.serial_hex.trim().to_ascii_lowercase())?)
    }

    /// The certificate named by a revocation order belongs to the IIN the order names.
    fn check_holder(&self, order: &RevocationOrder) -> Result<(), RaError> {
        let serial = order.serial_hex.trim().to_ascii_lowercase();
        let cert = self.ca.store.certificate(&serial)?.ok_or_else(|| {
            RaError::new(
                ReasonCode::CertificateNotFound,
                format!("no certificate {serial}"),
            )
        })?;
        if cert.iin.as_deref() != Some(order.iin.as_str()) {
            return Err(RaError::new(
                ReasonCode::IinMismatch,
                format!("certificate {serial} does not belong to IIN {}", order.iin),
            ));
        }
        Ok(())
    }
}
