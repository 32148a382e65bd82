//! The gRPC API over mutual TLS: who is calling (from the client certificate), what each role
//! may call, and how a refusal becomes a status.
//!
//! Every connection must present a certificate issued by our issuing CA (rustls checks the
//! chain during the handshake: no certificate, no call). The caller's role comes from the
//! role OID in that certificate's EKU (`ca-policy`, profile `system`); each service accepts
//! exactly the roles of the matrix in [`allowed`], everything else is PERMISSION_DENIED.

mod admin;
pub mod observe;
mod operator;
mod portal;
mod publisher;
mod report;
mod verify;

use std::sync::Arc;

use const_oid::ObjectIdentifier;
use der::Decode;
use nuc_core::ReasonCode;
use nuc_ra::{Ra, RaError};
use nuc_store::RevocationReader;
use tonic::{Code, Request, Status};
use x509_cert::Certificate;

pub use admin::AdminApi;
pub use operator::OperatorApi;
pub use portal::PortalApi;
pub use publisher::PublisherApi;
pub use verify::VerificationApi;

/// The role of a calling system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Portal,
    Workstation,
    Scheduler,
    Admin,
    Verifier,
}

impl Role {
    pub fn from_name(s: &str) -> Option<Role> {
        Some(match s {
            "portal" => Role::Portal,
            "workstation" => Role::Workstation,
            "scheduler" => Role::Scheduler,
            "admin" => Role::Admin,
            "verifier" => Role::Verifier,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Portal => "portal",
            Role::Workstation => "workstation",
            Role::Scheduler => "scheduler",
            Role::Admin => "admin",
            Role::Verifier => "verifier",
        }
    }
}

/// The services and the roles allowed to call them: the authorisation matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Portal,
    Operator,
    Admin,
    Publisher,
    Verification,
}

pub fn allowed(service: Service) -> &'static [Role] {
    match service {
        Service::Portal => &[Role::Portal],
        Service::Operator => &[Role::Workstation],
        Service::Admin => &[Role::Admin],
        Service::Publisher => &[Role::Scheduler],
        // Relying parties: the egov portal itself, and services holding the verifier role.
        Service::Verification => &[Role::Portal, Role::Verifier],
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub role: Role,
    /// Serial of its certificate, for the audit log.
    pub serial_hex: String,
}

impl Caller {
    /// `role:serial`, as the audit log names callers.
    pub fn actor(&self) -> String {
        format!("{}:{}", self.role.name(), self.serial_hex)
    }
}

/// What every service shares.
pub struct Api {
    pub ra: Arc<Ra>,
    /// The instance the RA belongs to: the store and the CA, for what handlers read directly
    /// (operators, revocations, CRL status).
    pub inst: Arc<crate::instance::Instance>,
    /// Role OIDs of system certificates, from the policy.
    pub role_oids: Vec<(ObjectIdentifier, Role)>,
    /// Plaintext dev mode: every caller is treated as having every role. Loopback only.
    pub dev_plaintext: bool,
    /// The NUC's report signer (the CA's, through its narrow trait): a detached CMS over a
    /// report the handler made. It signs in the HSM: call it through [`offload`].
    pub reports: Arc<dyn nuc_ca::ReportSigner>,
}

impl Api {
    pub fn new(inst: Arc<crate::instance::Instance>, dev_plaintext: bool) -> Self {
        let role_oids = inst
            .ca
            .policy()
            .profiles
            .get("system")
            .map(|p| {
                p.roles
                    .iter()
                    .filter_map(|(name, oid)| Role::from_name(name).map(|r| (*oid, r)))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            ra: inst.ra.clone(),
            reports: inst.ca.clone(),
            inst,
            role_oids,
            dev_plaintext,
        }
    }

    /// The caller of `req`, if its role may call `service`.
    pub fn authorize<T>(&self, req: &Request<T>, service: Service) -> Result<Caller, Status> {
        let caller = self.caller(req)?;
        observe::note_role(caller.role.name());
        if !allowed(service).contains(&caller.role) {
            return Err(refusal(
                ReasonCode::PermissionDenied,
                &format!(
                    "a {} may not call the {service:?} service",
                    caller.role.name()
                ),
            ));
        }
        Ok(caller)
    }

    fn caller<T>(&self, req: &Request<T>) -> Result<Caller, Status> {
        let Some(certs) = req.peer_certs() else {
            if self.dev_plaintext {
                // Dev only: the role comes from a header, on loopback, never with TLS.
                let role = req
                    .metadata()
                    .get("x-nuc-dev-role")
                    .and_then(|v| v.to_str().ok())
                    .and_then(Role::from_name)
                    .ok_or_else(|| {
                        refusal(
                            ReasonCode::PermissionDenied,
                            "dev mode: send x-nuc-dev-role",
                        )
                    })?;
                return Ok(Caller {
                    role,
                    serial_hex: "dev".into(),
                });
            }
            return Err(Status::unauthenticated(
                "a client certificate issued by the NUC is required",
            ));
        };
        let leaf = certs
            .first()
            .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
        let cert = Certificate::from_der(leaf.as_ref())
            .map_err(|_| Status::unauthenticated("the client certificate does not decode"))?;
        let serial_hex = hex::encode(cert.tbs_certificate().serial_number().as_bytes());
        let ekus = nuc_ca::cert::extended_key_usage(&cert);
        let role = self
            .role_oids
            .iter()
            .find(|(oid, _)| ekus.contains(oid))
            .map(|(_, r)| *r)
            .ok_or_else(|| {
                refusal(
                    ReasonCode::PermissionDenied,
                    "the client certificate carries no caller role",
                )
            })?;
        // A revoked system certificate is refused even though its chain is fine.
        match self.inst.store.revocation(&serial_hex) {
            Ok(None) => {}
            Ok(Some(_)) => {
                return Err(Status::unauthenticated("the client certificate is revoked"));
            }
            Err(e) => return Err(store_refusal(&e)),
        }
        Ok(Caller { role, serial_hex })
    }
}

/// A store failure met before the call reached a role: UNAVAILABLE when the database is away
/// (the caller may retry, e.g. once the instance was pointed at the promoted standby), else
/// STORAGE_FAILURE.
fn store_refusal(e: &nuc_store::StoreError) -> Status {
    let reason = match e {
        nuc_store::StoreError::Unavailable(_) => ReasonCode::Unavailable,
        _ => ReasonCode::StorageFailure,
    };
    refusal(reason, &e.to_string())
}

/// The gRPC code of a reason.
pub fn code_of(reason: ReasonCode) -> Code {
    use ReasonCode::*;
    match reason {
        InvalidArgument | CsrMalformed | KeyRejected | CsrSignatureInvalid
        | KeyAlreadyCertified => Code::InvalidArgument,
        ApplicantNotInRegistry
        | RequestExpired
        | RequestState
        | DocumentsRejected
        | OperatorSuspended
        | AlreadyRevoked
        | OperatorDismissed
        | ConVisitRequired => Code::FailedPrecondition,
        // Verdicts of the verification service travel in its answer, not as a status; should
        // one ever be a status, it is the caller's document that failed.
        SignatureMalformed => Code::InvalidArgument,
        SignatureInvalid | SignerUnknown | SignerNotYetValid | SignerExpired | SignerRevoked
        | BinMismatch | SigningTimeInvalid => Code::FailedPrecondition,
        OperatorSignatureInvalid
        | ApplicantSignatureInvalid
        | IinMismatch
        | PermissionDenied
        | RoleNotHeld
        | SeparationOfDuties
        | SignCertificateRequired => Code::PermissionDenied,
        PayloadReplayed => Code::AlreadyExists,
        PayloadExpired | PayloadFromTheFuture | SigningTimeMismatch => Code::FailedPrecondition,
        RequestNotFound | CertificateNotFound | OperatorNotFound => Code::NotFound,
        Unavailable | HsmFailure => Code::Unavailable,
        StorageFailure | Internal | LintFailed | CaState => Code::Internal,
    }
}

/// A refusal as a status: `CODE: message`, with the code in the `nuc-reason` metadata.
pub fn refusal(reason: ReasonCode, message: &str) -> Status {
    metrics::counter!("nuc_refusals_total", "reason" => reason.as_str()).increment(1);
    let mut s = Status::new(code_of(reason), format!("{reason}: {message}"));
    if let Ok(v) = reason.as_str().parse() {
        s.metadata_mut().insert(nuc_api::REASON_METADATA, v);
    }
    s
}

/// The one place where the async handlers meet blocking work. What a handler asks of a role
/// waits on the HSM, on durable commits (fsync) or on the registry, and an async worker that
/// waits stalls every other connection it serves (TLS, HTTP/2): so it runs here, on the
/// blocking pool. The roles themselves know nothing of threads.
pub async fn offload<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    // The call's span goes along, so what the roles log names the call, role and request.
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(work))
        .await
        .map_err(|e| Status::internal(format!("INTERNAL: request task failed: {e}")))?
}

/// RA work (its methods are async where they ask the registry), through [`offload`].
pub async fn blocking<T: Send + 'static>(
    work: impl Future<Output = Result<T, RaError>> + Send + 'static,
) -> Result<T, Status> {
    let handle = tokio::runtime::Handle::current();
    offload(move || handle.block_on(work).map_err(status)).await
}

pub fn status(e: RaError) -> Status {
    // The caller gets the message whole (it named those people itself); the log gets it with
    // the IINs masked.
    let logged = nuc_core::mask_iins_in(&e.message);
    if e.reason.is_caller_error() {
        tracing::info!(reason = %e.reason, detail = %logged, "refused");
    } else {
        tracing::error!(reason = %e.reason, detail = %logged, "failed");
    }
    refusal(e.reason, &e.message)
}

/// A batch of issued certificates as the API hands them out.
pub fn issued_all(certs: &[nuc_ca::Issued]) -> Vec<nuc_api::v1::IssuedCertificate> {
    certs
        .iter()
        .map(|c| issued(&c.serial_hex, &c.profile, &c.der))
        .collect()
}

/// Certificates as the API hands them out.
pub fn issued(serial_hex: &str, profile: &str, der: &[u8]) -> nuc_api::v1::IssuedCertificate {
    nuc_api::v1::IssuedCertificate {
        serial_hex: serial_hex.into(),
        profile: profile.into(),
        der: der.to_vec(),
        pem: der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, der)
            .unwrap_or_default(),
    }
}
